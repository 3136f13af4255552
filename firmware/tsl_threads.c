/* tsl_threads.c -- the worker pool of tsl_threads.h (POSIX threads). One job at a time: the caller
 * publishes it (a part function and its arguments) under the mutex with a new generation number,
 * runs part 0 itself, and waits until the n - 1 workers have run parts 1..n-1. Without TSL_THREADS
 * there is no pool: every job runs as one part on the caller. */
#define _POSIX_C_SOURCE 200809L
#include "tsl_threads.h"
#include "tsl_kernels.h"

typedef struct tsl_job tsl_job;
struct tsl_job {
    void (*run)(const tsl_job *j, int32_t n0, int32_t n1);    /* rows or elements [n0, n1) */
    const void *a, *b, *c, *d, *e;  /* the op's pointers, in its argument order */
    void *dst;
    float sx;
    int32_t N, K, flag;             /* flag: accumulate, or act */
    int32_t rows;                   /* per part (tsl_pool_split) */
    float *amax;                    /* quant: each part's max |x| [parts], on the caller's stack
                                     * (the job stays small: set up per op with no memset) */
    void (*fn)(void *ctx, int32_t part);    /* tsl_pool_run: the caller's function (ctx in a) */
    const void *kv;                 /* s4nl, s5nl: the tensor's levels */
};

int32_t tsl_pool_split(int32_t N, int32_t cost, int32_t n, int32_t *rows)
{
    /* a job handed to the pool wakes every worker (one broadcast), so once it is worth two parts
     * it takes all n: part 0 as close to N / n as the row alignment allows */
    int64_t most = cost > 0 ? (int64_t)N * cost / TSL_POOL_MIN_MACS : (int64_t)N / TSL_POOL_MIN_ELEMS;
    int32_t parts = most < 2 ? 1 : n;
    if (parts <= 1 || N <= TSL_POOL_ROW_ALIGN) {
        *rows = N;
        return 1;
    }
    int32_t r = (N + parts - 1) / parts;
    r = (r + TSL_POOL_ROW_ALIGN - 1) / TSL_POOL_ROW_ALIGN * TSL_POOL_ROW_ALIGN;
    *rows = r;
    return (N + r - 1) / r;
}

static void run_part(const tsl_job *j, int32_t part)
{
    int32_t n0 = part * j->rows, n1 = n0 + j->rows;
    if (n1 > j->N) n1 = j->N;
    if (n0 < n1) j->run(j, n0, n1);
}

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
    tsl_job *job;               /* the caller's, valid until pending == 0 */
    pthread_t th[TSL_POOL_MAX_THREADS - 1];
    tsl_worker arg[TSL_POOL_MAX_THREADS - 1];
};

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
        const tsl_job *job = p->job;
        int32_t parts = p->parts;
        pthread_mutex_unlock(&p->mu);
        if (me->part < parts) run_part(job, me->part);
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

/* Runs parts [0, parts) of j, parts <= the pool's threads; part 0 on the caller. */
static void run_parts(tsl_pool *p, tsl_job *j, int32_t parts)
{
    if (parts <= 1 || !p) {
        run_part(j, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->job = j;
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

/* -> the parts the job ran in (j->rows set) */
static int32_t run_job(tsl_pool *p, tsl_job *j, int32_t cost)
{
    int32_t parts = tsl_pool_split(j->N, cost, p ? p->n : 1, &j->rows);
    run_parts(p, j, parts);
    return parts;
}
#else
int32_t tsl_pool_create(tsl_pool **out, int32_t n)
{
    if (out) *out = NULL;
    return !out || n < 1 || n > TSL_POOL_MAX_THREADS ? -1 : n == 1 ? 0 : -2;
}

void tsl_pool_destroy(tsl_pool *p) { (void)p; }

#ifdef TSL_POOL_LONGEST_PART
/* Measurement (benchmarks/bench_threads.py, on one core): every job runs only its part 0 of a split
 * over this many threads, the work of the longest thread; the results are not the model's. */
int32_t tsl_pool_longest_part = 1;
int32_t tsl_pool_threads(const tsl_pool *p) { (void)p; return tsl_pool_longest_part; }
#else
int32_t tsl_pool_threads(const tsl_pool *p) { (void)p; return 1; }
#endif

static void run_parts(tsl_pool *p, tsl_job *j, int32_t parts)
{
    (void)p;
    (void)parts;
    run_part(j, 0);
}

static int32_t run_job(tsl_pool *p, tsl_job *j, int32_t cost)
{
    int32_t parts = tsl_pool_split(j->N, cost, tsl_pool_threads(p), &j->rows);
    run_part(j, 0);
    return parts;
}
#endif

static void part_fn(const tsl_job *j, int32_t n0, int32_t n1)
{
    (void)n1;
    j->fn((void *)j->a, n0);
}

void tsl_pool_run(tsl_pool *p, void (*fn)(void *ctx, int32_t part), void *ctx, int32_t parts)
{
    tsl_job j = {part_fn, ctx, NULL, NULL, NULL, NULL, NULL, 0.0f, parts, 0, 0, 1, NULL, fn};
    if (parts < 1) return;
    if (parts > tsl_pool_threads(p)) parts = tsl_pool_threads(p);
    j.N = parts;
    run_parts(p, &j, parts);
}

/* ---- the ops, as ranges ---- */

static void part_mv_s8(const tsl_job *j, int32_t n0, int32_t n1)
{
    const float *bias = (const float *)j->c;
    tsl_matvec_s8_f32((const int8_t *)j->a, j->sx, (const int8_t *)j->b + (size_t)n0 * (size_t)j->K,
                      (const float *)j->e + n0, bias ? bias + n0 : NULL, (float *)j->dst + n0, n1 - n0, j->K,
                      j->flag);
}

static void part_mv_s4(const tsl_job *j, int32_t n0, int32_t n1)
{
    const float *bias = (const float *)j->c;
    tsl_matvec_s4_f32((const int8_t *)j->a, j->sx, (const uint8_t *)j->b + (size_t)n0 * (size_t)(j->K / 2),
                      (const int8_t *)j->d + (size_t)n0 * (size_t)(j->K / TSL_S4_GROUP), (const float *)j->e + n0,
                      bias ? bias + n0 : NULL, (float *)j->dst + n0, n1 - n0, j->K, j->flag);
}

void tsl_par_matvec_s8_f32(tsl_pool *p, const int8_t *x, float sx, const int8_t *w, const float *ws,
                           const float *bias, float *dst, int32_t N, int32_t K, int32_t accumulate)
{
    tsl_job j = {part_mv_s8, x, w, bias, NULL, ws, dst, sx, N, K, accumulate, 0, NULL, NULL};
    run_job(p, &j, K > 0 ? K : 1);
}

void tsl_par_matvec_s4_f32(tsl_pool *p, const int8_t *x, float sx, const uint8_t *w, const int8_t *gs,
                           const float *ws, const float *bias, float *dst, int32_t N, int32_t K,
                           int32_t accumulate)
{
    tsl_job j = {part_mv_s4, x, w, bias, gs, ws, dst, sx, N, K, accumulate, 0, NULL, NULL};
    run_job(p, &j, K > 0 ? K : 1);
}

static void part_mv_s5nl(const tsl_job *j, int32_t n0, int32_t n1)
{
    const float *bias = (const float *)j->c;
    tsl_matvec_s5nl_f32((const int8_t *)j->a, j->sx, (const uint8_t *)j->b + (size_t)n0 * (size_t)(j->K / 32 * 20),
                        (const int8_t *)j->kv, (const int8_t *)j->d + (size_t)n0 * (size_t)(j->K / TSL_S4_GROUP),
                        (const float *)j->e + n0, bias ? bias + n0 : NULL, (float *)j->dst + n0, n1 - n0, j->K, j->flag);
}

void tsl_par_matvec_s5nl_f32(tsl_pool *p, const int8_t *x, float sx, const uint8_t *w, const int8_t *kv,
                             const int8_t *gs, const float *ws, const float *bias, float *dst, int32_t N, int32_t K,
                             int32_t accumulate)
{
    tsl_job j = {part_mv_s5nl, x, w, bias, gs, ws, dst, sx, N, K, accumulate, 0, NULL, NULL, kv};
    run_job(p, &j, K > 0 ? K : 1);
}

static void part_mv_s4nl(const tsl_job *j, int32_t n0, int32_t n1)
{
    const float *bias = (const float *)j->c;
    tsl_matvec_s4nl_f32((const int8_t *)j->a, j->sx, (const uint8_t *)j->b + (size_t)n0 * (size_t)(j->K / 2),
                        (const int8_t *)j->kv, (const int8_t *)j->d + (size_t)n0 * (size_t)(j->K / TSL_S4_GROUP),
                        (const float *)j->e + n0, bias ? bias + n0 : NULL, (float *)j->dst + n0, n1 - n0, j->K, j->flag);
}

void tsl_par_matvec_s4nl_f32(tsl_pool *p, const int8_t *x, float sx, const uint8_t *w, const int8_t *kv,
                             const int8_t *gs, const float *ws, const float *bias, float *dst, int32_t N, int32_t K,
                             int32_t accumulate)
{
    tsl_job j = {part_mv_s4nl, x, w, bias, gs, ws, dst, sx, N, K, accumulate, 0, NULL, NULL, kv};
    run_job(p, &j, K > 0 ? K : 1);
}

/* amax of part n0 / rows: the first step of tsl_quant_dynamic_f32 over [n0, n1) */
static void part_amax(const tsl_job *j, int32_t n0, int32_t n1)
{
    j->amax[n0 / j->rows] = tsl_absmax_f32((const float *)j->a + n0, n1 - n0);
}

static void part_quant(const tsl_job *j, int32_t n0, int32_t n1)
{
    int8_t *q = (int8_t *)j->dst;
    if (j->flag)                    /* amax == 0 */
        for (int32_t i = n0; i < n1; i++) q[i] = 0;
    else
        tsl_quant_mul_f32((const float *)j->a + n0, j->sx, q + n0, n1 - n0);
}

float tsl_par_quant_dynamic_f32(tsl_pool *p, const float *x, int8_t *q, int32_t n)
{
    int32_t rows;
    if (tsl_pool_split(n, 0, tsl_pool_threads(p), &rows) <= 1) return tsl_quant_dynamic_f32(x, q, n);
    float part_max[TSL_POOL_MAX_THREADS];
    tsl_job j = {part_amax, x, NULL, NULL, NULL, NULL, q, 0.0f, n, 0, 0, 0, part_max, NULL};
    int32_t parts = run_job(p, &j, 0);
    float amax = 0.0f;
    for (int32_t i = 0; i < parts; i++) amax = j.amax[i] > amax ? j.amax[i] : amax;
    j.run = part_quant;
    j.flag = amax == 0.0f;
    j.sx = j.flag ? 0.0f : 127.0f / amax;
    run_job(p, &j, 0);
    return amax == 0.0f ? 0.0f : amax / 127.0f;
}

static void part_dequant_sub(const tsl_job *j, int32_t n0, int32_t n1)
{
    tsl_dequant_sub_f32((float *)j->dst + n0, (const int8_t *)j->a + n0, (const float *)j->b, n1 - n0);
}

void tsl_par_dequant_sub_f32(tsl_pool *p, float *x, const int8_t *q, const float *s, int32_t n)
{
    tsl_job j = {part_dequant_sub, q, s, NULL, NULL, NULL, x, 0.0f, n, 0, 0, 0, NULL, NULL};
    run_job(p, &j, 0);
}

static void part_act(const tsl_job *j, int32_t n0, int32_t n1)
{
    tsl_act_f32((const float *)j->a + n0, (float *)j->dst + n0, n1 - n0, j->flag);
}

void tsl_par_act_f32(tsl_pool *p, const float *x, float *y, int32_t n, int32_t act)
{
    tsl_job j = {part_act, x, NULL, NULL, NULL, NULL, y, 0.0f, n, 0, act, 0, NULL, NULL};
    run_job(p, &j, 0);
}

static void part_glu(const tsl_job *j, int32_t n0, int32_t n1)
{
    tsl_glu_f32((const float *)j->a + n0, (const float *)j->b + n0, (float *)j->dst + n0, n1 - n0, j->flag);
}

void tsl_par_glu_f32(tsl_pool *p, const float *g, const float *u, float *h, int32_t n, int32_t act)
{
    tsl_job j = {part_glu, g, u, NULL, NULL, NULL, h, 0.0f, n, 0, act, 0, NULL, NULL};
    run_job(p, &j, 0);
}

/* ---- attention, as ranges of heads ---- */

typedef struct {
    const float *q, *ks, *vs, *alibi;
    const int8_t *kc, *vc;
    int8_t *out, *qq;
    float *outf;                    /* the float output (tsl_attention_f32) instead of out, or NULL */
    float *sc, *ch;
    int32_t *pw, *acc;
    int32_t n_heads, n_kv, hs, max_seq, pos, hp;    /* hp: heads per part */
    float scale, softcap, amax;
    float *part_amax;               /* [parts], the caller's */
} tsl_att_job;

static void part_att_heads(void *ctx, int32_t part)
{
    tsl_att_job *j = (tsl_att_job *)ctx;
    const int32_t h0 = part * j->hp, h1 = h0 + j->hp < j->n_heads ? h0 + j->hp : j->n_heads;
    if (h0 < h1)
        j->part_amax[part] = tsl_attention_heads_s8(j->q, j->kc, j->ks, j->vc, j->vs, j->n_heads, j->n_kv, j->hs,
                                                    j->max_seq, j->pos, j->scale, j->softcap, j->alibi, h0, h1,
                                                    j->qq + (size_t)part * (size_t)j->hs,
                                                    j->sc + (size_t)part * (size_t)j->max_seq,
                                                    j->pw + (size_t)part * (size_t)j->max_seq, j->acc, j->ch);
}

static void part_att_out(void *ctx, int32_t part)
{
    tsl_att_job *j = (tsl_att_job *)ctx;
    const int32_t h0 = part * j->hp, h1 = h0 + j->hp < j->n_heads ? h0 + j->hp : j->n_heads;
    if (h0 < h1 && j->outf) tsl_attention_out_f32(j->acc, j->ch, j->outf, j->hs, h0, h1);
    else if (h0 < h1) tsl_attention_out_s8(j->acc, j->ch, j->amax, j->out, j->hs, h0, h1);
}

/* -> parts (0: one part is enough, the caller runs the serial kernel); j filled in */
static int32_t par_attention(tsl_pool *p, tsl_att_job *j, int32_t slices)
{
    const int32_t T = j->pos + 1 < j->max_seq ? j->pos + 1 : j->max_seq;
    const int64_t most = (int64_t)j->n_heads * T * 2 * j->hs / TSL_POOL_MIN_MACS;
    int32_t n = tsl_pool_threads(p);
    n = slices < n ? slices : n;
    n = j->n_heads < n ? j->n_heads : n;
    n = most < 2 ? 1 : n;           /* as tsl_pool_split: worth two parts, then all of them */
    if (n <= 1) return 0;
    j->hp = (j->n_heads + n - 1) / n;
    const int32_t parts = (j->n_heads + j->hp - 1) / j->hp;
    tsl_pool_run(p, part_att_heads, j, parts);
    for (int32_t i = 0; i < parts; i++) j->amax = j->part_amax[i] > j->amax ? j->part_amax[i] : j->amax;
    tsl_pool_run(p, part_att_out, j, parts);
    return parts;
}

float tsl_par_attention_s8(tsl_pool *p, const float *q, const int8_t *kc, const float *ks, const int8_t *vc,
                           const float *vs, int8_t *out, int32_t n_heads, int32_t n_kv, int32_t hs, int32_t max_seq,
                           int32_t pos, float scale, float softcap, const float *alibi, int8_t *qq, float *sc,
                           int32_t *pw, int32_t *acc, float *ch, int32_t slices)
{
    float part_max[TSL_POOL_MAX_THREADS];
    tsl_att_job j = {q, ks, vs, alibi, kc, vc, out, qq, NULL, sc, ch, pw, acc, n_heads, n_kv, hs, max_seq, pos, 0,
                     scale, softcap, 0.0f, part_max};
    if (!par_attention(p, &j, slices))
        return tsl_attention_s8(q, kc, ks, vc, vs, out, n_heads, n_kv, hs, max_seq, pos, scale, softcap, alibi, qq, sc,
                                pw, acc, ch);
    return j.amax / 127.0f;
}

void tsl_par_attention_f32(tsl_pool *p, const float *q, const int8_t *kc, const float *ks, const int8_t *vc,
                           const float *vs, float *out, int32_t n_heads, int32_t n_kv, int32_t hs, int32_t max_seq,
                           int32_t pos, float scale, float softcap, const float *alibi, int8_t *qq, float *sc,
                           int32_t *pw, int32_t *acc, float *ch, int32_t slices)
{
    float part_max[TSL_POOL_MAX_THREADS];
    tsl_att_job j = {q, ks, vs, alibi, kc, vc, NULL, qq, out, sc, ch, pw, acc, n_heads, n_kv, hs, max_seq, pos, 0,
                     scale, softcap, 0.0f, part_max};
    if (!par_attention(p, &j, slices))
        tsl_attention_f32(q, kc, ks, vc, vs, out, n_heads, n_kv, hs, max_seq, pos, scale, softcap, alibi, qq, sc, pw,
                          acc, ch);
}
