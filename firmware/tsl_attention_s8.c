/* tsl_attention_s8.c -- causal attention over the int8 KV cache, integer softmax by table. */
#include "tsl_kernels.h"

void tsl_attention_s8(const float *q, const int8_t *kc, const int8_t *vc, int8_t *out,
                      int32_t n_heads, int32_t n_kv, int32_t hs, int32_t max_seq, int32_t pos,
                      const float *q_inv, const int32_t *sm, const int32_t *ss,
                      const int32_t *om, const int32_t *os, const uint16_t *exp_tab,
                      int32_t exp_len, int8_t *qq, int32_t *sc)
{
    const int32_t group = n_heads / n_kv;
    const int32_t T = pos + 1;
    for (int32_t h = 0; h < n_heads; h++) {
        const int8_t *k = kc + (intptr_t)(h / group) * max_seq * hs;
        const int8_t *v = vc + (intptr_t)(h / group) * max_seq * hs;
        for (int32_t i = 0; i < hs; i++) qq[i] = tsl_quant_f32(q[h * hs + i] * q_inv[h]);

        /* Scores: one int8 matvec over the cached keys. */
        tsl_matvec_s8_s32(qq, k, sc, T, hs);
        int32_t mx = sc[0];
        for (int32_t t = 1; t < T; t++) mx = sc[t] > mx ? sc[t] : mx;

        /* Softmax numerators, Q15, from the table; then normalise in place. */
        uint32_t sum = 0;
        for (int32_t t = 0; t < T; t++) {
            const int32_t idx = tsl_requant(mx - sc[t], sm[h], ss[h]);
            const uint32_t e = idx < exp_len ? exp_tab[idx] : 0u;
            sc[t] = (int32_t)e;
            sum += e;
        }
        for (int32_t t = 0; t < T; t++)
            sc[t] = (int32_t)(((uint32_t)sc[t] * 32768u + sum / 2u) / sum);

        /* Weighted values, accumulated in position order. */
        for (int32_t i = 0; i < hs; i++) {
            int32_t acc = 0;
            for (int32_t t = 0; t < T; t++) acc += sc[t] * (int32_t)v[(intptr_t)t * hs + i];
            out[h * hs + i] = tsl_requant_s8(acc, om[h], os[h]);
        }
    }
}
