/* tsl_run_main.c -- tinyslm-run, the native program of a Linux board (and of the host): text in,
 * text out, no Python. In the style of llama2.c's run and llama-cli:
 *
 *   ./tinyslm-run -p "Once upon a time" -n 64 -t 4 [--temp T] [--top-p P] [--seed S]
 *   ./tinyslm-run --chat [-n 64] ...      each stdin line continues the conversation
 *   ./tinyslm-run --serial                the serial protocol over stdin/stdout (tinyslm run --port)
 *
 * Generation is tinyslm run's on the host build: BOS (if the tokenizer has one) + the prompt's ids,
 * then up to n sampled tokens, each fed back, stopping after EOS or when the KV cache is full; the
 * prompt's text and each token's bytes stream to stdout, timings go to stderr (time to first token:
 * the prompt's steps, in tiles through tsl_prefill where the build has it, and the first sample). Tables of the
 * tokenizer: tsl_run_tok, tsl_run_bos, tsl_run_eos (written by tinyslm build). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tsl_model.h"
#include "tsl_sampler.h"
#include "tsl_tokenizer.h"

#ifndef TSL_RUN_THREADS
#define TSL_RUN_THREADS 1           /* the default of -t: the board's cores */
#endif

int tsl_serial_main(void);
extern const tsl_tokenizer tsl_run_tok;
extern const int32_t tsl_run_bos, tsl_run_eos;

static uint8_t arena[TSL_ARENA_BYTES] TSL_ALIGNED;
static int8_t kv[TSL_KV_BYTES] TSL_ALIGNED;
static float probs[TSL_VOCAB];
static int32_t idx[TSL_VOCAB];

typedef struct {
    tsl_model m;
    tsl_sampler s;
    int32_t pos;                /* next position of the KV cache */
    int32_t max_new;
    double ms_prompt, ms_gen;   /* wall time of the prompt steps and of the generated tokens' steps */
    double ms_first;            /* time to the first token of the first turn (prompt + first sample) */
    uint8_t *work;              /* TSL_PREFILL_WORK_BYTES (builds with tsl_prefill), 16-byte aligned */
    int32_t n_prompt, n_gen;
} run_state;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: tinyslm-run [-p PROMPT] [-n TOKENS] [-t THREADS] [--temp T] [--top-p P] [--seed S]\n"
               "                   [--chat] [--serial]\n"
               "  -p, --prompt  text to continue (default: empty, BOS only)\n"
               "  -n            tokens to generate per turn, 1 to 65535 (default 64)\n"
               "  -t            threads, 1 to 64 (default %d)\n"
               "  --temp        0 = greedy (default); --top-p in (0, 1], 1 = off; --seed 0 to 2^64-1 (default 0)\n"
               "  --chat        read a line from stdin, continue the conversation with it, repeat until EOF\n"
               "  --serial      the serial protocol on stdin/stdout instead (tinyslm run --port)\n",
            TSL_RUN_THREADS);
}

static int bad(const char *opt, const char *what)
{
    fprintf(stderr, "tinyslm-run: %s: %s\n", opt, what);
    return 2;
}

/* Runs ids[0..n) at the next positions; *lg: the last logits. 0, or 1 if the cache is full. */
static int feed(run_state *r, const int32_t *ids, int32_t n, const float **lg)
{
#ifdef TSL_PREFILL_TILE
    if (n > 1 && r->work) {
        if (n > TSL_MAX_SEQ - r->pos) return 1;
        if (tsl_prefill(&r->m, ids, n, r->pos, r->work, lg) != TSL_OK) return 1;
        r->pos += n;
        return 0;
    }
#endif
    for (int32_t i = 0; i < n; i++) {
        if (r->pos >= TSL_MAX_SEQ) return 1;
        if (tsl_forward(&r->m, ids[i], r->pos, lg) != TSL_OK) return 1;
        r->pos++;
    }
    return 0;
}

static void put_token(int32_t id)
{
    const uint8_t *b;
    int32_t n = tsl_token_decode(&tsl_run_tok, id, &b);
    if (n > 0) fwrite(b, 1, (size_t)n, stdout);
    fflush(stdout);
}

/* One turn: text's ids (after BOS on the first turn), then up to max_new tokens. Returns 0, 1 when
 * the cache is full, 2 on text the tokenizer refuses. */
static int turn(run_state *r, const char *text, int first)
{
    int32_t len = (int32_t)strlen(text);
    int32_t cap = TSL_TOK_MAX_IDS(len) + 1;
    int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)cap);
    uint32_t *work = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)TSL_TOK_WORK_WORDS(len));
    if (!ids || !work) {
        free(ids);
        free(work);
        return bad("prompt", "out of memory");
    }
    int32_t n = 0;
    if (first && tsl_run_bos >= 0) ids[n++] = tsl_run_bos;
    int32_t k = tsl_tokenizer_encode(&tsl_run_tok, (const uint8_t *)text, len, ids + n, cap - n, work,
                                     TSL_TOK_WORK_WORDS(len));
    free(work);
    if (k < 0) {
        free(ids);
        fprintf(stderr, "tinyslm-run: prompt: the tokenizer refuses this text (code %ld)\n", (long)k);
        return 2;
    }
    n += k;
    const float *lg = NULL;
    double t0 = now_ms();
    int full = n == 0 ? (r->pos == 0) : feed(r, ids, n, &lg);
    free(ids);
    r->ms_prompt += now_ms() - t0;
    r->n_prompt += n;
    if (full || !lg) {
        fprintf(stderr, "tinyslm-run: the prompt does not fit the KV cache (%d positions)\n", TSL_MAX_SEQ);
        return 1;
    }
    fputs(text, stdout);
    double t1 = now_ms();
    int32_t next = tsl_sample(&r->s, lg, TSL_VOCAB, probs, idx);
    if (first) r->ms_first = r->ms_prompt + (now_ms() - t1);
    t0 = t1;
    for (int32_t made = 1;; made++) {
        put_token(next);
        r->n_gen++;
        if (made >= r->max_new || next == tsl_run_eos || r->pos >= TSL_MAX_SEQ) break;
        if (feed(r, &next, 1, &lg)) break;
        next = tsl_sample(&r->s, lg, TSL_VOCAB, probs, idx);
    }
    r->ms_gen += now_ms() - t0;
    fputc('\n', stdout);
    fflush(stdout);
    return r->pos >= TSL_MAX_SEQ;
}

int main(int argc, char **argv)
{
    const char *prompt = "";
    long n_tokens = 64, threads = TSL_RUN_THREADS;
    double temp = 0.0, top_p = 1.0;
    unsigned long long seed = 0;
    int chat = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--serial")) return tsl_serial_main();
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--chat")) {
            chat = 1;
            continue;
        }
        if (!v) return bad(a, "needs a value (or unknown option; see --help)");
        i++;
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "-n")) {
            n_tokens = strtol(v, &end, 10);
            if (*end || n_tokens < 1 || n_tokens > 65535) return bad(a, "an integer, 1 to 65535");
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            threads = strtol(v, &end, 10);
            if (*end || threads < 1 || threads > 64) return bad(a, "an integer, 1 to 64");
        } else if (!strcmp(a, "--temp")) {
            temp = strtod(v, &end);
            if (*end || !(temp >= 0.0 && temp <= 100.0)) return bad(a, "a number, 0 to 100");
        } else if (!strcmp(a, "--top-p")) {
            top_p = strtod(v, &end);
            if (*end || !(top_p > 0.0 && top_p <= 1.0)) return bad(a, "a number in (0, 1]");
        } else if (!strcmp(a, "--seed")) {
            seed = strtoull(v, &end, 10);
            if (*end || *v == '-') return bad(a, "an integer, 0 to 2^64-1");
        } else
            return bad(a, "unknown option (see --help)");
    }
    run_state r;
    memset(&r, 0, sizeof r);
    if (tsl_init(&r.m, NULL, arena, kv) != TSL_OK) return bad("weights", "rejected by the model");
#ifdef TSL_ERR_THREADS
    if (tsl_set_threads(&r.m, (int32_t)threads) != TSL_OK) return bad("-t", "could not start the threads");
#else
    if (threads > 1) return bad("-t", "this build has no thread pool (its board has one core)");
#endif
#ifdef TSL_PREFILL_TILE
    r.work = (uint8_t *)aligned_alloc(16, (TSL_PREFILL_WORK_BYTES + 15) / 16 * 16);   /* NULL: step by step */
#endif
    tsl_sampler_init(&r.s, (uint64_t)seed, (float)temp, (float)top_p);
    r.max_new = (int32_t)n_tokens;
    int rc = turn(&r, prompt, 1);
    char line[4096];
    while (chat && rc == 0) {
        fputs("> ", stderr);
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\r\n")] = 0;
        rc = turn(&r, line, 0);
    }
    if (r.n_gen)
        fprintf(stderr, "[prompt %ld tokens in %.1f ms (%.2f ms/token%s); time to first token %.1f ms; "
                        "%ld tokens in %.1f ms: %.2f tok/s, %.2f ms/token; %ld threads]\n",
                (long)r.n_prompt, r.ms_prompt, r.n_prompt ? r.ms_prompt / r.n_prompt : 0.0,
                r.work ? ", prefill" : "", r.ms_first, (long)r.n_gen,
                r.ms_gen, r.ms_gen > 0 ? 1e3 * r.n_gen / r.ms_gen : 0.0, r.ms_gen / r.n_gen, threads);
#ifdef TSL_ERR_THREADS
    tsl_set_threads(&r.m, 1);
#endif
    free(r.work);
    return rc == 2 ? 2 : 0;
}
