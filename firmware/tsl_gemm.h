/* tsl_gemm.h -- the prefill kernels: one weight matrix against a tile of tokens (T int8 vectors).
 *
 * Each token t has its own x[t] (int8 [K]), its own activation scale sx[t] and its own output
 * dst[t] (float [N]): the tokens live in separate arenas, so the vectors are passed by pointer.
 * For every t the result is the bytes tsl_matvec_s8_f32 / tsl_matvec_s4_f32 gives for
 * (x[t], sx[t], dst[t]): the integer sums are exact in any order, and every token's sums go
 * through the one epilogue (tsl_epilogue.h). The ISA paths differ only in how many weight loads
 * (and, for int4, nibble unpacks) one pass shares between tokens. */
#ifndef TSL_GEMM_H
#define TSL_GEMM_H
#include <stdint.h>
#include "tsl_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TSL_GEMM_MAX_T 64   /* tokens of one call, T in [1, TSL_GEMM_MAX_T] */

/* dst[t][n] = (accumulate ? dst[t][n] : 0) + ((float)(w[n] . x[t]) * sx[t]) * ws[n] (+ bias[n]) */
void tsl_gemm_s8_f32(const int8_t *const *x, const float *sx, const int8_t *w, const float *ws,
                     const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K, int32_t accumulate);

/* The same over int4 weights in groups (layout of tsl_matvec_s4_f32); s4nl: of tsl_matvec_s4nl_f32
 * (tsl_gemm_s4.c: the matvec per token, on every core). */
void tsl_gemm_s4nl_f32(const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                       const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K,
                       int32_t accumulate);
void tsl_gemm_s5nl_f32(const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                       const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K,
                       int32_t accumulate);
void tsl_gemm_s4_f32(const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *gs,
                     const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K,
                     int32_t accumulate);

#ifdef __cplusplus
}
#endif
#endif
