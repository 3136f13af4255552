/* tsl_gemm_par.h -- tsl_gemm.h's kernels over a tsl_threads.h pool (p NULL: the caller alone). */
#ifndef TSL_GEMM_PAR_H
#define TSL_GEMM_PAR_H
#include "tsl_gemm.h"
#include "tsl_threads.h"

#ifdef __cplusplus
extern "C" {
#endif

void tsl_par_gemm_s8_f32(tsl_pool *p, const int8_t *const *x, const float *sx, const int8_t *w, const float *ws,
                         const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K, int32_t accumulate);
void tsl_par_gemm_s4_f32(tsl_pool *p, const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *gs,
                         const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K,
                         int32_t accumulate);
void tsl_par_gemm_s4nl_f32(tsl_pool *p, const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *kv,
                           const int8_t *gs, const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N,
                           int32_t K, int32_t accumulate);
void tsl_par_gemm_s5nl_f32(tsl_pool *p, const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *kv,
                           const int8_t *gs, const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N,
                           int32_t K, int32_t accumulate);

#ifdef __cplusplus
}
#endif
#endif
