/* tsl_kernels.h -- the kernel API of tinyslm.
 *
 * One C file per op and dtype. Inside each, the ISA paths sit in one #if chain selected by the
 * feature macros of tsl_arch.h; every path ends in the portable scalar tail and rounds through
 * tsl_numerics.h, so all paths are bit-identical. Operand ranges:
 *   x, w (s8)     [-128, 127]; activations produced by tinyslm are in [-127, 127]
 *   w (s4)        [-8, 7], two per byte, even k in the low nibble
 *   K             any >= 0 (tails of every length are handled by the scalar loop)
 *   accumulators  int32; callers keep K * 128 * 128 (s4: K * 8 * 128 * 127) < 2^31
 */
#ifndef TSL_KERNELS_H
#define TSL_KERNELS_H
#include <stdint.h>
#include "tsl_arch.h"
#include "tsl_numerics.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TSL_S4_GROUP 32

/* dst[n] = sum_k w[n*K + k] * x[k], n in [0, N) */
void tsl_matvec_s8_s32(const int8_t *x, const int8_t *w, int32_t *dst, int32_t N, int32_t K);

/* v_n = ((float)acc_n * sx) * ws[n] (+ bias[n]); dst[n] = accumulate ? dst[n] + v_n : v_n */
void tsl_matvec_s8_f32(const int8_t *x, float sx, const int8_t *w, const float *ws,
                       const float *bias, float *dst, int32_t N, int32_t K, int32_t accumulate);

/* w: s4 [N][K/2] bytes, gs: s8 [N][K/TSL_S4_GROUP] in [-127, 127] (the sign lets a group's
 * extreme sit at -8); K % TSL_S4_GROUP == 0.
 * acc_n = sum_g gs[n][g] * sum_{k in g} w4[n][k] * x[k]; epilogue as tsl_matvec_s8_f32. */
void tsl_matvec_s4_f32(const int8_t *x, float sx, const uint8_t *w, const int8_t *gs,
                       const float *ws, const float *bias, float *dst, int32_t N, int32_t K,
                       int32_t accumulate);

/* dst[n] = acc_n of tsl_matvec_s4_f32 (the same int32 sums on every ISA path), n in [0, N) */
void tsl_matvec_s4_s32(const int8_t *x, const uint8_t *w, const int8_t *gs, int32_t *dst, int32_t N, int32_t K);

/* The non-linear int4 grid (tinyslm/int4nl.py): w codes [N][K/2] (unsigned nibbles, even k low),
 * kv the tensor's 16 int8 levels, gs as tsl_matvec_s4_f32; callers keep K * max|gs| * 127 * 128 < 2^31.
 * acc_n = sum_g gs[n][g] * sum_{k in g} kv[w4[n][k]] * x[k]; epilogue as tsl_matvec_s8_f32. */
void tsl_matvec_s4nl_f32(const int8_t *x, float sx, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                         const float *ws, const float *bias, float *dst, int32_t N, int32_t K, int32_t accumulate);
void tsl_matvec_s4nl_s32(const int8_t *x, const uint8_t *w, const int8_t *kv, const int8_t *gs, int32_t *dst,
                         int32_t N, int32_t K);
/* 5-bit codes on the same kind of grid (s5nl, tsl_matvec_s5nl.c): w [N][K/32][20] (per group 16 bytes
 * of nibbles as s4nl's, then bit 4 of each code as a little-endian uint32), kv 32 int8 levels. */
void tsl_matvec_s5nl_f32(const int8_t *x, float sx, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                         const float *ws, const float *bias, float *dst, int32_t N, int32_t K, int32_t accumulate);
void tsl_matvec_s5nl_s32(const int8_t *x, const uint8_t *w, const int8_t *kv, const int8_t *gs, int32_t *dst,
                         int32_t N, int32_t K);

/* q[i] = tsl_quant_f32(x[i] * (127 / amax)), amax = max |x|; returns amax / 127 (0 if amax == 0). */
float tsl_quant_dynamic_f32(const float *x, int8_t *q, int32_t n);

/* Its two steps, for callers that split them (the pool): the largest |x[i]| (0 if n == 0; the same
 * whatever the order), and q[i] = tsl_quant_f32(x[i] * s). */
float tsl_absmax_f32(const float *x, int32_t n);
void tsl_quant_mul_f32(const float *x, float s, int8_t *q, int32_t n);

/* x[i] = x[i] - (float)q[i] * (*s): what tsl_quant_dynamic_f32 left over */
void tsl_dequant_sub_f32(float *x, const int8_t *q, const float *s, int32_t n);

/* y = x / rms(x) * g, sums in index order. */
void tsl_rmsnorm_f32(const float *x, const float *g, float eps, float *y, int32_t n);
/* y = (x - mean) / std * g + b, sums in index order. Both norms may run in place (y == x). */
void tsl_layernorm_f32(const float *x, const float *g, const float *b, float eps, float *y, int32_t n);
/* In place over n_heads slices of hs values (QK-norm): each normalized by itself, g, b [hs];
 * layer: LayerNorm, else RMSNorm (b unused). */
void tsl_headnorm_f32(float *x, const float *g, const float *b, float eps, int32_t n_heads, int32_t hs,
                      int32_t layer);

/* dst[i] = (accumulate ? dst[i] : 0) + (float)table[row * n + i] * scale[row] */
void tsl_embed_s8(const int8_t *table, const float *scale, int32_t row, float *dst, int32_t n,
                  int32_t accumulate);

/* In place over n_heads heads of hs values; the first rot dims of each head rotate by the
 * angles of one position: cs, sn [rot / 2]. interleaved: pairs (2i, 2i+1); else (i, i + rot/2). */
void tsl_rope_f32(float *v, int32_t n_heads, int32_t hs, int32_t rot, const float *cs,
                  const float *sn, int32_t interleaved);

/* tsl_rope_f32 at position p = j * S + r from split tables (tinyslm/model.py rope_split_tables):
 * cos_hi, sin_hi the rows of angle j * S (times the model's mscale), cos_lo, sin_lo of angle r
 * [rot / 2] each; the angle sum in float32, cos = ch * cl - sh * sl, sin = sh * cl + ch * sl,
 * in blocks of 32 pairs on the stack. */
void tsl_rope_split_f32(float *v, int32_t n_heads, int32_t hs, int32_t rot, const float *cos_hi,
                        const float *sin_hi, const float *cos_lo, const float *sin_lo, int32_t interleaved);

/* Per head h, slot t = pos % max_seq: cache[h][t][:], scale[h][t] = tsl_quant_dynamic_f32(x[h*hs : (h+1)*hs]).
 * cache s8 [n_heads][max_seq][hs], scale f32 [n_heads][max_seq]: a ring when a sliding window
 * shorter than the sequence sets max_seq. */
void tsl_kv_store_s8(const float *x, int8_t *cache, float *scale, int32_t n_heads, int32_t hs,
                     int32_t max_seq, int32_t pos);

/* Causal attention of one query position over the cached positions; returns the scale of out.
 * q f32 [n_heads][hs]; kc, vc s8 [n_kv][max_seq][hs]; ks, vs f32 [n_kv][max_seq]; out s8 [n_heads][hs].
 * The cache is a ring of max_seq slots (position t in slot t % max_seq, see tsl_kv_store_s8); the
 * last T = min(pos + 1, max_seq) positions are visible, in slots [0, T). Per head h, kv head
 * g = h / (n_heads / n_kv), every float sum in position order (from slot (pos + 1 - T) % max_seq):
 *   qq, sq = tsl_quant_dynamic_f32(q[h])
 *   s_t    = ((float)(qq . kc[g][t]) * ks[g][t]) * (sq * scale)
 *   s_t    = softcap * tsl_tanh(s_t / softcap)                 (if softcap > 0)
 *   s_t    = s_t + alibi[h] * (float)(position of t - pos)      (if alibi != NULL)
 *   e_t    = tsl_exp_neg(s_t - max s);  E = sum e_t;  w_t = e_t * vs[g][t];  Wh = sum w_t
 *   p_t    = tsl_round_f32(w_t * (32768 / Wh))               (Q15, sum ~ 32768; 0 if Wh == 0)
 *   acc[h] = sum_t p_t * vc[g][t]                             (int32, |acc| < 2^23)
 *   c_h    = Wh / (32768 * E)                                 (acc * c_h is the attention output)
 * Then one scale for all heads: s = max_h(max|acc[h]| * c_h) / 127, and
 *   out[h] = tsl_requant_s8(acc[h], tsl_multiplier((c_h * 127) / amax)).
 * scratch: qq s8 [hs], sc f32 [max_seq], pw int32 [max_seq], acc int32 [n_heads * hs], ch f32 [n_heads]. */
float tsl_attention_s8(const float *q, const int8_t *kc, const float *ks, const int8_t *vc,
                       const float *vs, int8_t *out, int32_t n_heads, int32_t n_kv, int32_t hs,
                       int32_t max_seq, int32_t pos, float scale, float softcap, const float *alibi,
                       int8_t *qq, float *sc, int32_t *pw, int32_t *acc, float *ch);
/* The two halves of tsl_attention_s8 (what tsl_par_attention_s8 splits over threads): heads
 * [h0, h1) -> acc[h], ch[h], returning max over them of max|acc[h]| * ch[h] (0 for none; scratch
 * qq, sc, pw as above, one set per concurrent range); then out[h] for h in [h0, h1) at the scale
 * amax / 127 (amax: the max over all heads). */
float tsl_attention_heads_s8(const float *q, const int8_t *kc, const float *ks, const int8_t *vc, const float *vs,
                             int32_t n_heads, int32_t n_kv, int32_t hs, int32_t max_seq, int32_t pos, float scale,
                             float softcap, const float *alibi, int32_t h0, int32_t h1, int8_t *qq, float *sc,
                             int32_t *pw, int32_t *acc, float *ch);
void tsl_attention_out_s8(const int32_t *acc, const float *ch, float amax, int8_t *out, int32_t hs, int32_t h0,
                          int32_t h1);
/* tsl_attention_s8 with a float output (the attention output rotated before its int8 quantizer,
 * quantize's fwht): out f32 [n_heads][hs], out[h][i] = (float)acc[h][i] * c_h; heads as above. */
void tsl_attention_f32(const float *q, const int8_t *kc, const float *ks, const int8_t *vc,
                       const float *vs, float *out, int32_t n_heads, int32_t n_kv, int32_t hs,
                       int32_t max_seq, int32_t pos, float scale, float softcap, const float *alibi,
                       int8_t *qq, float *sc, int32_t *pw, int32_t *acc, float *ch);
void tsl_attention_out_f32(const int32_t *acc, const float *ch, float *out, int32_t hs, int32_t h0, int32_t h1);

/* x[i] = x[i] + y[i] (a post-normed branch joining the stream) */
void tsl_add_f32(float *x, const float *y, int32_t n);
/* x[i] = cap * tsl_tanh(x[i] / cap) (soft-capped logits) */
void tsl_softcap_f32(float *x, int32_t n, float cap);

/* act: TSL_ACT_SILU, TSL_ACT_GELU_TANH, TSL_ACT_GELU_ERF or TSL_ACT_RELU */
#define TSL_ACT_SILU 0
#define TSL_ACT_GELU_TANH 1
#define TSL_ACT_GELU_ERF 2
#define TSL_ACT_RELU 3
/* y[i] = act(x[i]) */
void tsl_act_f32(const float *x, float *y, int32_t n, int32_t act);
/* h[i] = act(g[i]) * u[i]  (SwiGLU, GeGLU) */
void tsl_glu_f32(const float *g, const float *u, float *h, int32_t n, int32_t act);

#ifdef __cplusplus
}
#endif
#endif
