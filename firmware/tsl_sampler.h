/* tsl_sampler.h -- deterministic token sampling: greedy, temperature, top-p.
 * Mirrored by tinyslm/sampler.py; same seed, same tokens on every target. */
#ifndef TSL_SAMPLER_H
#define TSL_SAMPLER_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t state;     /* xorshift64* */
    float temperature;  /* <= 0: greedy */
    float top_p;        /* (0, 1): nucleus; otherwise the full distribution */
} tsl_sampler;

void tsl_sampler_init(tsl_sampler *s, uint64_t seed, float temperature, float top_p);
/* probs f32 [V] and idx int32 [V] are scratch. */
int32_t tsl_sample(tsl_sampler *s, const float *logits, int32_t V, float *probs, int32_t *idx);
uint32_t tsl_rng_u32(tsl_sampler *s);

#ifdef __cplusplus
}
#endif
#endif
