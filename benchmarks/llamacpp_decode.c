/* llama.cpp's side of benchmarks/bench_llamacpp.py: decode N tokens one at a time, one thread,
 * on the ids tinyslm decodes ((p * 37) % vocab at position p), through llama.h only.
 *
 *   llamacpp_decode MODEL.gguf N      -> stdout "decode N CPU_SECONDS" (the loop's process CPU time)
 *   llamacpp_decode MODEL.gguf S IDS OUT
 *       IDS: int32 [n_chunk, S] (little-endian); OUT: float32 logits [n_chunk, S, vocab] of every
 *       position, each chunk one batch from an empty KV cache (benchmarks/quality.py's rows)
 *
 * Built against the static libraries of benchmarks/build_llamacpp.sh (x86) or its --aarch64 cross
 * build (run under qemu-aarch64 with benchmarks/tcg's plugin, which counts between the two calls
 * of tsl_bench_mark). The first decode also reserves llama.cpp's graph: count at two N and take
 * the difference to leave that out. Weights are repacked at load (use_extra_bufts, the default).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "llama.h"

__attribute__((noinline)) void tsl_bench_mark(void) { __asm volatile(""); }

static bool no_progress(float done, void *user)
{
    (void)done;
    (void)user;
    return true;
}

static void quiet(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

/* every position's logits of S-token chunks of IDS into OUT -> exit status */
static int logits(struct llama_context *ctx, int S, int32_t vocab, const char *ids_path, const char *out_path)
{
    FILE *in = fopen(ids_path, "rb"), *out = fopen(out_path, "wb");
    if (!in || !out) {
        fprintf(stderr, "%s: cannot open\n", in ? out_path : ids_path);
        return 1;
    }
    struct llama_batch b = llama_batch_init(S, 0, 1);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)S);
    while (fread(ids, sizeof(int32_t), (size_t)S, in) == (size_t)S) {
        llama_memory_clear(llama_get_memory(ctx), true);
        b.n_tokens = S;
        for (int i = 0; i < S; i++) {
            if (ids[i] < 0 || ids[i] >= vocab) {
                fprintf(stderr, "%s: id %d out of the vocabulary (%d)\n", ids_path, ids[i], vocab);
                return 1;
            }
            b.token[i] = ids[i];
            b.pos[i] = i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        if (llama_decode(ctx, b)) {
            fprintf(stderr, "llama_decode failed\n");
            return 1;
        }
        for (int i = 0; i < S; i++)
            if (fwrite(llama_get_logits_ith(ctx, i), sizeof(float), (size_t)vocab, out) != (size_t)vocab) {
                fprintf(stderr, "%s: write failed\n", out_path);
                return 1;
            }
    }
    free(ids);
    llama_batch_free(b);
    fclose(in);
    return fclose(out) != 0;
}

int main(int argc, char **argv)
{
    if ((argc != 3 && argc != 5) || atoi(argv[2]) < 1) {
        fprintf(stderr, "usage: %s MODEL.gguf N | MODEL.gguf S IDS OUT\n", argv[0]);
        return 2;
    }
    const int n = atoi(argv[2]);
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.progress_callback = no_progress;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "%s: cannot load\n", argv[1]);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n + 16 > 256 ? n + 16 : 256);
    cp.n_batch = cp.n_ubatch = argc == 5 ? (uint32_t)n : 1;
    cp.n_threads = cp.n_threads_batch = argc == 5 ? 2 : 1;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "%s: cannot create a context\n", argv[1]);
        return 1;
    }
    const int32_t vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    int rc = 0;
    if (argc == 5) return logits(ctx, n, vocab, argv[3], argv[4]);
    tsl_bench_mark();
    clock_t t0 = clock();
    for (int p = 0; p < n && rc == 0; p++) {
        llama_token id = (llama_token)((p * 37) % vocab);
        rc = llama_decode(ctx, llama_batch_get_one(&id, 1));
    }
    clock_t t1 = clock();
    tsl_bench_mark();
    if (rc) {
        fprintf(stderr, "llama_decode failed (%d)\n", rc);
        return 1;
    }
    printf("decode %d %.6f\n", n, (double)(t1 - t0) / CLOCKS_PER_SEC);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
