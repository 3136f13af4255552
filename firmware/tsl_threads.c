/* tsl_threads.c -- the worker pool of tsl_threads.h (POSIX threads). One job at a time: the caller
 * publishes it under the mutex with a new generation number, runs part 0 itself, and waits until
 * the n - 1 workers have run parts 1..n-1. Without TSL_THREADS: no pool, the kernels called as they are. */
#define _POSIX_C_SOURCE 200809L
#include "tsl_threads.h"
#include "tsl_kernels.h"

typedef struct {
    const int8_t *x;
    float sx;
    const void *w;              /* s8 [N][K] or s4 [N][K/2] */
    const int8_t *gs;           /* s4 only: [N][K/TSL_S4_GROUP] */
    const float *ws, *bias;
    float *dst;
    int32_t N, K, accumulate, s4, rows;   /* rows: per part, a multiple of TSL_POOL_ROW_ALIGN */
} tsl_job;

#if TSL_THREADS
#include <pthread.h>
#include <stdlib.h>

typedef struct {
    tsl_pool *pool;
    int32_t part;
} tsl_worker;

struct tsl_pool {
    int32_t n;                  /* threads, the caller included */
    int32_t parts;              /* parts of the current job (<= n) */
    int32_t pending;            /* workers still running the current job */
    int32_t quit;
    uint32_t gen;               /* bumped for each job */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    tsl_job job;
    pthread_t th[TSL_POOL_MAX_THREADS - 1];
    tsl_worker arg[TSL_POOL_MAX_THREADS - 1];
};

/* Rows [part * rows, min(N, (part + 1) * rows)) of the job. */
static void run_part(const tsl_job *j, int32_t part)
{
    int32_t n0 = part * j->rows, n1 = n0 + j->rows;
    if (n1 > j->N) n1 = j->N;
    if (n0 >= n1) return;
    const float *bias = j->bias ? j->bias + n0 : NULL;
    if (j->s4)
        tsl_matvec_s4_f32(j->x, j->sx, (const uint8_t *)j->w + (size_t)n0 * (size_t)(j->K / 2),
                          j->gs + (size_t)n0 * (size_t)(j->K / TSL_S4_GROUP), j->ws + n0, bias, j->dst + n0,
                          n1 - n0, j->K, j->accumulate);
    else
        tsl_matvec_s8_f32(j->x, j->sx, (const int8_t *)j->w + (size_t)n0 * (size_t)j->K, j->ws + n0, bias,
                          j->dst + n0, n1 - n0, j->K, j->accumulate);
}

static void *worker_main(void *arg)
{
    tsl_worker *me = (tsl_worker *)arg;
    tsl_pool *p = me->pool;
    uint32_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        tsl_job job = p->job;
        int32_t parts = p->parts;
        pthread_mutex_unlock(&p->mu);
        if (me->part < parts) run_part(&job, me->part);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int32_t tsl_pool_create(tsl_pool **out, int32_t n)
{
    if (!out) return -1;
    *out = NULL;
    if (n < 1 || n > TSL_POOL_MAX_THREADS) return -1;
    if (n == 1) return 0;
    tsl_pool *p = (tsl_pool *)calloc(1, sizeof *p);
    if (!p) return -2;
    if (pthread_mutex_init(&p->mu, NULL)) {
        free(p);
        return -2;
    }
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->n = 1;
    for (int32_t i = 0; i < n - 1; i++) {
        p->arg[i].pool = p;
        p->arg[i].part = i + 1;
        if (pthread_create(&p->th[i], NULL, worker_main, &p->arg[i])) {
            tsl_pool_destroy(p);
            return -2;
        }
        p->n++;
    }
    *out = p;
    return 0;
}

void tsl_pool_destroy(tsl_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int32_t i = 0; i < p->n - 1; i++) pthread_join(p->th[i], NULL);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int32_t tsl_pool_threads(const tsl_pool *p) { return p ? p->n : 1; }

static void run_job(tsl_pool *p, tsl_job *j)
{
    int32_t parts = tsl_pool_split(j->N, j->K, p ? p->n : 1, &j->rows);
    if (parts <= 1) {
        run_part(j, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->job = *j;
    p->parts = parts;
    p->pending = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    run_part(j, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

#else
int32_t tsl_pool_create(tsl_pool **out, int32_t n)
{
    if (out) *out = NULL;
    return !out || n < 1 || n > TSL_POOL_MAX_THREADS ? -1 : n == 1 ? 0 : -2;
}

void tsl_pool_destroy(tsl_pool *p) { (void)p; }
int32_t tsl_pool_threads(const tsl_pool *p) { (void)p; return 1; }

static void run_job(tsl_pool *p, tsl_job *j)
{
    (void)p;
    if (j->s4)
        tsl_matvec_s4_f32(j->x, j->sx, (const uint8_t *)j->w, j->gs, j->ws, j->bias, j->dst, j->N, j->K, j->accumulate);
    else
        tsl_matvec_s8_f32(j->x, j->sx, (const int8_t *)j->w, j->ws, j->bias, j->dst, j->N, j->K, j->accumulate);
}
#endif

int32_t tsl_pool_split(int32_t N, int32_t K, int32_t n, int32_t *rows)
{
    int64_t most = (int64_t)N * K / TSL_POOL_MIN_MACS;
    int32_t parts = most < n ? (int32_t)most : n;
    if (parts <= 1 || N <= TSL_POOL_ROW_ALIGN) {
        *rows = N;
        return 1;
    }
    int32_t r = (N + parts - 1) / parts;
    r = (r + TSL_POOL_ROW_ALIGN - 1) / TSL_POOL_ROW_ALIGN * TSL_POOL_ROW_ALIGN;
    *rows = r;
    return (N + r - 1) / r;
}

void tsl_par_matvec_s8_f32(tsl_pool *p, const int8_t *x, float sx, const int8_t *w, const float *ws,
                           const float *bias, float *dst, int32_t N, int32_t K, int32_t accumulate)
{
    tsl_job j = {x, sx, w, NULL, ws, bias, dst, N, K, accumulate, 0, 0};
    run_job(p, &j);
}

void tsl_par_matvec_s4_f32(tsl_pool *p, const int8_t *x, float sx, const uint8_t *w, const int8_t *gs,
                           const float *ws, const float *bias, float *dst, int32_t N, int32_t K,
                           int32_t accumulate)
{
    tsl_job j = {x, sx, w, gs, ws, bias, dst, N, K, accumulate, 1, 0};
    run_job(p, &j);
}
