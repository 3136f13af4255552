/* tsl_int_ops.h -- the integer-only decode step (boards without an FPU): no float anywhere.
 *
 * Mirror: tinyslm/numerics_int.py (the specification), lowered to by tinyslm/lower_int.py.
 * Operand ranges:
 *   activations   int32 fixed point, TSL_IQ fractional bits (real = v * 2^-16), in +-(2^31 - 1)
 *   scale words   amax = max |v| of a quantized vector (int32 >= 0): its int8 step is amax / 127
 *   row scales    tsl_fx pairs (mult, shift) as int32 [N][2], applied by tsl_requant_sat
 *   gate tables   uint16 Q15 [TSL_GATE_N + 1]: act(x) / x at x = -16 + i / 32
 *   RoPE tables   int16 Q15 [max_seq][rot / 2]
 */
#ifndef TSL_INT_OPS_H
#define TSL_INT_OPS_H
#include <stdint.h>
#include "tsl_numerics.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TSL_IQ 16
#define TSL_IQS 20
#define TSL_GATE_N 1024

/* q[i] = clamp(round(x[i] * 127 / amax), +-127); returns amax (q = 0 if amax == 0). */
int32_t tsl_iquant_s8(const int32_t *x, int8_t *q, int32_t n);
/* x <- H D x / block (tinyslm/numerics_int.py fwht; signs and order as tsl_fwht_f32 in tsl_fwht.h),
 * each butterfly halved, (a + b + 1) >> 1 and (a - b + 1) >> 1 in int64: |result| <= max |x|. */
void tsl_ifwht(int32_t *x, int32_t n, int32_t block, const uint8_t *signs);
/* x[i] -= q[i] * (*amax / 127) */
void tsl_idequant_sub(int32_t *x, const int8_t *q, const int32_t *amax, int32_t n);
/* dst[i] = (accumulate ? dst[i] : 0) + requant(table[row][i], fx[row]), fx: scale * 2^TSL_IQ */
void tsl_iembed_s8(const int8_t *table, const int32_t *fx, int32_t row, int32_t *dst, int32_t n,
                   int32_t accumulate);
/* RMSNorm (layer = 0) or LayerNorm, y may be x: g = round(gain * 2^gq), b Q16 (NULL: none),
 * eps_q = round(eps * 2^32); n <= 2^14. */
void tsl_inorm(const int32_t *x, const int32_t *g, int32_t gq, const int32_t *b, uint32_t eps_q,
               int32_t *y, int32_t n, int32_t layer);
void tsl_iheadnorm(int32_t *x, const int32_t *g, int32_t gq, const int32_t *b, uint32_t eps_q,
                   int32_t n_heads, int32_t hs, int32_t layer);
/* v_n = requant(acc_n, (*amax / 127) * wfx[n]) (+ bias[n]); dst[n] = accumulate ? dst[n] + v_n : v_n
 * (saturating); acc from tsl_matvec_s8_s32. */
void tsl_imatvec_s8(const int8_t *x, const int32_t *amax, const int8_t *w, const int32_t *wfx,
                    const int32_t *bias, int32_t *dst, int32_t N, int32_t K, int32_t accumulate);
/* tsl_imatvec_s8's epilogue on the int4 sums of tsl_matvec_s4nl_s32 (w, kv, gs as tsl_matvec_s4nl_f32) */
void tsl_imatvec_s4nl(const int8_t *x, const int32_t *amax, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                      const int32_t *wfx, const int32_t *bias, int32_t *dst, int32_t N, int32_t K, int32_t accumulate);
/* the same on the sums of tsl_matvec_s5nl_s32 (w, kv, gs as tsl_matvec_s5nl_f32) */
void tsl_imatvec_s5nl(const int8_t *x, const int32_t *amax, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                      const int32_t *wfx, const int32_t *bias, int32_t *dst, int32_t N, int32_t K, int32_t accumulate);
/* tsl_imatvec_s8's epilogue on the int4 sums of tsl_matvec_s4_s32 (w, gs as tsl_matvec_s4_f32) */
void tsl_imatvec_s4(const int8_t *x, const int32_t *amax, const uint8_t *w, const int8_t *gs, const int32_t *wfx,
                    const int32_t *bias, int32_t *dst, int32_t N, int32_t K, int32_t accumulate);
/* tsl_rope_f32 with Q15 tables: (a * c - b * s + 2^14) >> 15 in int64 */
void tsl_irope(int32_t *v, int32_t n_heads, int32_t hs, int32_t rot, const int16_t *cs, const int16_t *sn,
               int32_t interleaved);
/* tsl_rope_split_f32 with Q15 tables: hi rows int32 (they carry mscale, which may exceed 1; |entry| < 2^16),
 * lo rows int16; c = (ch * cl - sh * sl + 2^14) >> 15, s = (sh * cl + ch * sl + 2^14) >> 15 in int64
 * (|c|, |s| < 2^17), then tsl_irope's rotation by (c, s) */
void tsl_irope_split(int32_t *v, int32_t n_heads, int32_t hs, int32_t rot, const int32_t *cos_hi,
                     const int32_t *sin_hi, const int16_t *cos_lo, const int16_t *sin_lo, int32_t interleaved);
/* per head: cache row, scale word = tsl_iquant_s8(x[h]) at slot pos % max_seq */
void tsl_ikv_store_s8(const int32_t *x, int8_t *cache, int32_t *scale, int32_t n_heads, int32_t hs,
                      int32_t max_seq, int32_t pos);
/* tsl_attention_s8 in integers (see numerics_int.attention): scores Q20 via the fx (sc_m, sc_s) of
 * scale * 2^(TSL_IQS - 32) / 127^2, soft-capped (cap != NULL, tsl_isoftcap's cap for Q20), ALiBi
 * (alibi != NULL: slopes Q20 [n_heads]), e^x in Q15 by shifts and a polynomial, weights p_t Q15 of
 * the value-scaled numerators, one int8 scale word for all heads (returned).
 * scratch: qq s8 [hs], sc s32 [max_seq], pw s32 [max_seq], acc s32 [n_heads * hs], ch s32 [2 * n_heads]. */
int32_t tsl_iattention_s8(const int32_t *q, const int8_t *kc, const int32_t *ks, const int8_t *vc,
                          const int32_t *vs, int8_t *out, int32_t n_heads, int32_t n_kv, int32_t hs,
                          int32_t max_seq, int32_t pos, int32_t sc_m, int32_t sc_s, const int32_t *cap,
                          const uint16_t *sig, const int32_t *alibi, int8_t *qq, int32_t *sc, int32_t *pw,
                          int32_t *acc, int32_t *ch);
/* x[i] = cap * tanh(x[i] / cap) through the sigmoid table sig: cap int32 [4] = fx of 2 / cap (into
 * Q16) and fx of cap (out of Q15), for the units of x */
void tsl_isoftcap(int32_t *x, int32_t n, const int32_t *cap, const uint16_t *sig);
/* x[i] += y[i], saturating */
void tsl_iadd(int32_t *x, const int32_t *y, int32_t n);
/* y[i] = x[i] * gate(x[i]) (gate NULL: ReLU) */
void tsl_iact(const int32_t *x, int32_t *y, int32_t n, const uint16_t *gate);
/* h[i] = act(g[i]) * u[i] */
void tsl_iglu(const int32_t *g, const int32_t *u, int32_t *h, int32_t n, const uint16_t *gate);
/* y[i] = the float32 bits of x[i] * 2^-TSL_IQ, rounded to nearest even, from integer operations */
void tsl_ito_f32(const int32_t *x, uint32_t *y, int32_t n);

#ifdef __cplusplus
}
#endif
#endif
