/* tsl_attention_s8.c -- causal attention over the int8 KV cache with per-position scales. */
#include "tsl_kernels.h"

float tsl_attention_s8(const float *q, const int8_t *kc, const float *ks, const int8_t *vc,
                       const float *vs, int8_t *out, int32_t n_heads, int32_t n_kv, int32_t hs,
                       int32_t max_seq, int32_t pos, float scale, int8_t *qq, float *sc, int32_t *pw,
                       int32_t *acc, float *ch)
{
    const int32_t group = n_heads / n_kv;
    const int32_t T = pos + 1;
    float amax = 0.0f;
    for (int32_t h = 0; h < n_heads; h++) {
        const intptr_t g = h / group;
        const int8_t *k = kc + g * max_seq * hs;
        const int8_t *v = vc + g * max_seq * hs;
        const float *kss = ks + g * max_seq, *vss = vs + g * max_seq;
        const float sq = tsl_quant_dynamic_f32(q + h * hs, qq, hs) * scale;

        /* Scores: one int8 matvec over the cached keys, then their float scale. */
        tsl_matvec_s8_s32(qq, k, pw, T, hs);
        float mx = 0.0f;
        for (int32_t t = 0; t < T; t++) {
            sc[t] = ((float)pw[t] * kss[t]) * sq;
            mx = (t == 0 || sc[t] > mx) ? sc[t] : mx;
        }
        /* Softmax numerators; the value scales folded in; Q15 weights. */
        float E = 0.0f, W = 0.0f;
        for (int32_t t = 0; t < T; t++) {
            const float e = tsl_exp_neg(sc[t] - mx);
            E = E + e;
            sc[t] = e * vss[t];
            W = W + sc[t];
        }
        const float inv = W > 0.0f ? 32768.0f / W : 0.0f;
        for (int32_t t = 0; t < T; t++) pw[t] = tsl_round_f32(sc[t] * inv);

        /* Weighted values, accumulated in position order. */
        int32_t *a = acc + h * hs;
        int32_t amx = 0;
        for (int32_t i = 0; i < hs; i++) a[i] = 0;
        for (int32_t t = 0; t < T; t++) {
            const int8_t *vt = v + (intptr_t)t * hs;
            const int32_t p = pw[t];
            for (int32_t i = 0; i < hs; i++) a[i] += p * (int32_t)vt[i];
        }
        for (int32_t i = 0; i < hs; i++) amx = (a[i] > amx ? a[i] : (-a[i] > amx ? -a[i] : amx));
        ch[h] = W / (32768.0f * E);
        const float m = (float)amx * ch[h];
        amax = m > amax ? m : amax;
    }
    /* Requantize all heads to one int8 scale. */
    for (int32_t h = 0; h < n_heads; h++) {
        int32_t mult = 0, shift = 0;
        if (amax > 0.0f) tsl_multiplier((ch[h] * 127.0f) / amax, &mult, &shift);
        for (int32_t i = 0; i < hs; i++) out[h * hs + i] = tsl_requant_s8(acc[h * hs + i], mult, shift);
    }
    return amax / 127.0f;
}
