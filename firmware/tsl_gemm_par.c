/* tsl_gemm_par.c -- the prefill kernels over the pool of tsl_threads.h: row ranges of
 * tsl_pool_split (each row one integer sum per token and one epilogue, whatever thread runs it),
 * so every thread count gives the same bytes. */
#include "tsl_gemm_par.h"

typedef struct {
    const int8_t *const *x;
    const float *sx;
    const void *w;              /* int8 [N][K] or int4 [N][K/2] (s4 values or s4nl codes) */
    const int8_t *gs;           /* int4 group scales [N][K/32]; NULL: int8 */
    const float *ws, *bias;
    float *const *dst;
    int32_t T, N, K, accumulate, rows;
    const int8_t *kv;           /* s4nl, s5nl: the tensor's levels; NULL: s4 or int8 */
    int32_t nl5;                /* kv's codes are s5nl's (w [N][K/32][20]) */
} tsl_gemm_job;

static void gemm_part(void *ctx, int32_t part)
{
    const tsl_gemm_job *j = (const tsl_gemm_job *)ctx;
    const int32_t n0 = part * j->rows, n1 = n0 + j->rows < j->N ? n0 + j->rows : j->N;
    if (n0 >= n1) return;
    float *d[TSL_GEMM_MAX_T];
    for (int32_t t = 0; t < j->T; t++) d[t] = j->dst[t] + n0;
    const float *bias = j->bias ? j->bias + n0 : NULL;
    if (j->kv && j->nl5)
        tsl_gemm_s5nl_f32(j->x, j->sx, (const uint8_t *)j->w + (size_t)n0 * (size_t)(j->K / 32 * 20), j->kv,
                          j->gs + (size_t)n0 * (size_t)(j->K / TSL_S4_GROUP), j->ws + n0, bias, d, j->T, n1 - n0,
                          j->K, j->accumulate);
    else if (j->kv)
        tsl_gemm_s4nl_f32(j->x, j->sx, (const uint8_t *)j->w + (size_t)n0 * (size_t)(j->K / 2), j->kv,
                          j->gs + (size_t)n0 * (size_t)(j->K / TSL_S4_GROUP), j->ws + n0, bias, d, j->T, n1 - n0,
                          j->K, j->accumulate);
    else if (j->gs)
        tsl_gemm_s4_f32(j->x, j->sx, (const uint8_t *)j->w + (size_t)n0 * (size_t)(j->K / 2),
                        j->gs + (size_t)n0 * (size_t)(j->K / TSL_S4_GROUP), j->ws + n0, bias, d, j->T, n1 - n0, j->K,
                        j->accumulate);
    else
        tsl_gemm_s8_f32(j->x, j->sx, (const int8_t *)j->w + (size_t)n0 * (size_t)j->K, j->ws + n0, bias, d, j->T,
                        n1 - n0, j->K, j->accumulate);
}

static void run(tsl_pool *p, tsl_gemm_job *j)
{
    const int32_t parts = tsl_pool_split(j->N, j->K > 0 ? j->K * j->T : 1, tsl_pool_threads(p), &j->rows);
    tsl_pool_run(p, gemm_part, j, parts);
}

void tsl_par_gemm_s8_f32(tsl_pool *p, const int8_t *const *x, const float *sx, const int8_t *w, const float *ws,
                         const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K, int32_t accumulate)
{
    tsl_gemm_job j = {x, sx, w, NULL, ws, bias, dst, T, N, K, accumulate, 0};
    run(p, &j);
}

void tsl_par_gemm_s4_f32(tsl_pool *p, const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *gs,
                         const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K,
                         int32_t accumulate)
{
    tsl_gemm_job j = {x, sx, w, gs, ws, bias, dst, T, N, K, accumulate, 0};
    run(p, &j);
}

void tsl_par_gemm_s4nl_f32(tsl_pool *p, const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *kv,
                           const int8_t *gs, const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N,
                           int32_t K, int32_t accumulate)
{
    tsl_gemm_job j = {x, sx, w, gs, ws, bias, dst, T, N, K, accumulate, 0, kv, 0};
    run(p, &j);
}

void tsl_par_gemm_s5nl_f32(tsl_pool *p, const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *kv,
                           const int8_t *gs, const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N,
                           int32_t K, int32_t accumulate)
{
    tsl_gemm_job j = {x, sx, w, gs, ws, bias, dst, T, N, K, accumulate, 0, kv, 1};
    run(p, &j);
}
