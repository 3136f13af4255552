/* tsl_threads.h -- a persistent pool of worker threads for one tsl_model (targets with pthreads:
 * boards whose toml declares cores > 1). Created once (tsl_pool_create), it runs each matvec of a
 * decode step as row ranges [n0, n1) on its threads: every row is one integer sum and one float
 * epilogue whatever thread computes it, so the results are bit-identical for every thread count.
 * No call but tsl_pool_create allocates; a pool is used by one caller thread at a time.
 * The pool is compiled where the compiler targets a POSIX system (TSL_THREADS 1: __unix__ or
 * __APPLE__, unless TSL_NO_THREADS or TSL_BAREMETAL -- a Linux compiler used freestanding, as for
 * virt-a76 -- is defined); elsewhere (a generic host build compiled for a
 * bare-metal board) tsl_pool_create refuses n > 1 and the tsl_par_* calls are the plain kernels. */
#ifndef TSL_THREADS_H
#define TSL_THREADS_H
#include <stdint.h>

#if (defined(__unix__) || defined(__APPLE__)) && !defined(TSL_NO_THREADS) && !defined(TSL_BAREMETAL)
#define TSL_THREADS 1
#else
#define TSL_THREADS 0
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define TSL_POOL_MAX_THREADS 64     /* threads of a pool, the caller included */
#define TSL_POOL_ROW_ALIGN 16       /* row and element ranges start at multiples of this */
#ifndef TSL_POOL_MIN_MACS
#define TSL_POOL_MIN_MACS 4096      /* a matvec of fewer than 2x this N*K MACs stays on one thread */
#endif
#ifndef TSL_POOL_MIN_ELEMS
#define TSL_POOL_MIN_ELEMS 256      /* an elementwise op of fewer than 2x this elements too */
#endif

typedef struct tsl_pool tsl_pool;

/* *p = a pool of n threads (the caller is thread 0, n - 1 workers); n == 1: *p = NULL (no pool).
 * Returns 0, -1 for n outside [1, TSL_POOL_MAX_THREADS], -2 if memory or a thread could not be had. */
int32_t tsl_pool_create(tsl_pool **p, int32_t n);
/* Joins the workers and frees the pool; NULL is a no-op. */
void tsl_pool_destroy(tsl_pool *p);
/* Threads of the pool, the caller included (1 for NULL). */
int32_t tsl_pool_threads(const tsl_pool *p);

/* The split of N rows of cost `cost` each over n threads: one part if the job is under two of
 * TSL_POOL_MIN_MACS (matvec: cost K MACs) or of TSL_POOL_MIN_ELEMS (elementwise: cost 0), else n
 * parts as the row alignment allows (a job wakes every worker anyway): -> parts in [1, n],
 * *rows = rows per part (a multiple of TSL_POOL_ROW_ALIGN, or N when parts == 1); part i runs rows
 * [i*rows, min(N, (i+1)*rows)), so part 0 is the longest. */
int32_t tsl_pool_split(int32_t N, int32_t cost, int32_t n, int32_t *rows);

/* fn(ctx, part) for part in [0, parts) on the pool's threads (parts capped at its thread count; part
 * 0 on the caller), returning when all have run. Without threads, as every job there: part 0 only
 * (parts > 1 only in the TSL_POOL_LONGEST_PART measurement mode). */
void tsl_pool_run(tsl_pool *p, void (*fn)(void *ctx, int32_t part), void *ctx, int32_t parts);

/* tsl_matvec_s8_f32 / tsl_matvec_s4_f32 / tsl_matvec_s4nl_f32 over the pool's threads (p NULL: the caller alone). */
void tsl_par_matvec_s8_f32(tsl_pool *p, const int8_t *x, float sx, const int8_t *w, const float *ws,
                           const float *bias, float *dst, int32_t N, int32_t K, int32_t accumulate);
void tsl_par_matvec_s4_f32(tsl_pool *p, const int8_t *x, float sx, const uint8_t *w, const int8_t *gs,
                           const float *ws, const float *bias, float *dst, int32_t N, int32_t K,
                           int32_t accumulate);
void tsl_par_matvec_s4nl_f32(tsl_pool *p, const int8_t *x, float sx, const uint8_t *w, const int8_t *kv,
                             const int8_t *gs, const float *ws, const float *bias, float *dst, int32_t N, int32_t K,
                             int32_t accumulate);
void tsl_par_matvec_s5nl_f32(tsl_pool *p, const int8_t *x, float sx, const uint8_t *w, const int8_t *kv,
                             const int8_t *gs, const float *ws, const float *bias, float *dst, int32_t N, int32_t K,
                             int32_t accumulate);

/* tsl_attention_s8 over the pool: ranges of heads, part i on scratch slice i (qq [slices][hs],
 * sc and pw [slices][max_seq]; acc and ch are per head already), at most `slices` parts (one if under
 * two of TSL_POOL_MIN_MACS of q.K and p.V MACs); amax is the max of the parts' maxima (exact), then each
 * part requantizes its heads. Every head is the serial kernel's, so the bytes are the same. */
float tsl_par_attention_s8(tsl_pool *p, const float *q, const int8_t *kc, const float *ks, const int8_t *vc,
                           const float *vs, int8_t *out, int32_t n_heads, int32_t n_kv, int32_t hs, int32_t max_seq,
                           int32_t pos, float scale, float softcap, const float *alibi, int8_t *qq, float *sc,
                           int32_t *pw, int32_t *acc, float *ch, int32_t slices);
/* tsl_attention_f32 over the pool, split as tsl_par_attention_s8 (each part writes its heads' floats). */
void tsl_par_attention_f32(tsl_pool *p, const float *q, const int8_t *kc, const float *ks, const int8_t *vc,
                           const float *vs, float *out, int32_t n_heads, int32_t n_kv, int32_t hs, int32_t max_seq,
                           int32_t pos, float scale, float softcap, const float *alibi, int8_t *qq, float *sc,
                           int32_t *pw, int32_t *acc, float *ch, int32_t slices);

/* The elementwise ops of tsl_kernels.h over the pool: ranges of elements; the quantizer's amax is a
 * max over the parts' maxima (exact: the same value as one pass), then each part rounds its range. */
float tsl_par_quant_dynamic_f32(tsl_pool *p, const float *x, int8_t *q, int32_t n);
void tsl_par_dequant_sub_f32(tsl_pool *p, float *x, const int8_t *q, const float *s, int32_t n);
void tsl_par_act_f32(tsl_pool *p, const float *x, float *y, int32_t n, int32_t act);
void tsl_par_glu_f32(tsl_pool *p, const float *g, const float *u, float *h, int32_t n, int32_t act);

#ifdef __cplusplus
}
#endif
#endif
