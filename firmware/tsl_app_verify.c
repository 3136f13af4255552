/* tsl_app_verify.c -- the on-target half of `tinyslm verify --board`: runs the decode steps of
 * tsl_verify_data.h on a tsl_model instance whose buffers it owns, and prints a 64-bit FNV-1a hash
 * of every logit vector, the sampled tokens and the KV cache. With TSL_DUMP_STEP = k it also prints
 * the hash of every op's outputs at step k. With TSL_VERIFY_THREADS = n (builds with a thread pool)
 * the steps run on n threads. */
#include <stdio.h>
#include <stdint.h>
#include "tsl_model.h"
#include "tsl_sampler.h"
#include "tsl_verify_data.h"

static uint64_t fnv1a(const void *p, uint32_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static void put_hash(const char *tag, int32_t a, uint64_t h)
{
    printf("%s %ld %08lx%08lx\n", tag, (long)a, (unsigned long)(h >> 32), (unsigned long)(h & 0xffffffffu));
}

static uint8_t arena[TSL_ARENA_BYTES] TSL_ALIGNED;
static int8_t kv[TSL_KV_BYTES] TSL_ALIGNED;
static float probs[TSL_VOCAB];
static int32_t idx[TSL_VOCAB];

int main(void)
{
    tsl_model m;
    int32_t rc = tsl_init(&m, NULL, arena, kv);
    if (rc != TSL_OK) {
        printf("error init %ld\n", (long)rc);
        return 3;
    }
#ifdef TSL_VERIFY_THREADS
    if ((rc = tsl_set_threads(&m, TSL_VERIFY_THREADS)) != TSL_OK) {
        printf("error threads %ld\n", (long)rc);
        return 3;
    }
#endif
    tsl_sampler s;
    tsl_sampler_init(&s, TSL_VERIFY_SEED, TSL_VERIFY_TEMPERATURE, TSL_VERIFY_TOP_P);
    for (int32_t pos = 0; pos < TSL_VERIFY_STEPS; pos++) {
        const float *lg = NULL;
#ifdef TSL_DUMP_STEP
        if (pos == TSL_DUMP_STEP) {
            for (int32_t i = 0; i < TSL_N_OPS; i++) {
                tsl_run_op(&m, i, tsl_verify_ids[pos], pos);
                const uint8_t *base = tsl_dump[i].kv ? (const uint8_t *)kv : arena;
                put_hash("op", i, fnv1a(base + tsl_dump[i].off, tsl_dump[i].len));
            }
            lg = (const float *)(arena + TSL_LOGITS_OFFSET);
        } else
#endif
        if ((rc = tsl_forward(&m, tsl_verify_ids[pos], pos, &lg)) != TSL_OK) {
            printf("error forward %ld\n", (long)rc);
            return 3;
        }
        put_hash("logits", pos, fnv1a(lg, 4u * TSL_VOCAB));
        printf("token %ld %ld\n", (long)pos, (long)tsl_sample(&s, lg, TSL_VOCAB, probs, idx));
    }
    put_hash("kv", 0, fnv1a(kv, TSL_KV_BYTES));
#ifdef TSL_VERIFY_THREADS
    tsl_set_threads(&m, 1);
#endif
    printf("done\n");
    return 0;
}
