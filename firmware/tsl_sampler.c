/* tsl_sampler.c -- see tsl_sampler.h. */
#include <stdlib.h>
#include "tsl_sampler.h"
#include "tsl_numerics.h"

void tsl_sampler_init(tsl_sampler *s, uint64_t seed, float temperature, float top_p)
{
    s->state = seed ^ 0x9E3779B97F4A7C15ull;
    if (s->state == 0) s->state = 1;
    s->temperature = temperature;
    s->top_p = top_p;
}

uint32_t tsl_rng_u32(tsl_sampler *s)
{
    uint64_t x = s->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

static const float *tsl_cmp_probs;
/* probability descending, then index ascending: a total order, so every qsort agrees */
static int tsl_cmp(const void *a, const void *b)
{
    const int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    const float pi = tsl_cmp_probs[i], pj = tsl_cmp_probs[j];
    if (pi != pj) return pi > pj ? -1 : 1;
    return i < j ? -1 : (i > j);
}

int32_t tsl_sample(tsl_sampler *s, const float *logits, int32_t V, float *probs, int32_t *idx)
{
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++) best = logits[i] > logits[best] ? i : best;
    if (s->temperature <= 0.0f) return best;

    const float mx = logits[best];
    float sum = 0.0f;
    for (int32_t i = 0; i < V; i++) {
        probs[i] = tsl_exp_neg((logits[i] - mx) / s->temperature);
        sum = sum + probs[i];
    }
    const float r = (float)(tsl_rng_u32(s) >> 8) * (1.0f / 16777216.0f);

    int32_t n = 0;
    if (s->top_p > 0.0f && s->top_p < 1.0f) {
        for (int32_t i = 0; i < V; i++) if (probs[i] > 0.0f) idx[n++] = i;
        tsl_cmp_probs = probs;
        qsort(idx, (size_t)n, sizeof(int32_t), tsl_cmp);
        const float target = s->top_p * sum;
        float c = 0.0f;
        int32_t k = 0;
        while (k < n) { c = c + probs[idx[k]]; k++; if (c >= target) break; }
        n = k;
        sum = c;
    } else {
        for (int32_t i = 0; i < V; i++) idx[n++] = i;
    }
    const float thr = r * sum;
    float c = 0.0f;
    for (int32_t k = 0; k < n; k++) {
        c = c + probs[idx[k]];
        if (thr < c) return idx[k];
    }
    return idx[n - 1];
}
