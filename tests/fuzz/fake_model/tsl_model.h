/* TEST DOUBLE -- not a model. A deterministic stand-in for a generated tsl_model.h (the context
 * API the serial app is built on), so the serial protocol can be tested on the host without
 * compiling a network. Used by tests/test_protocol.py and the fuzz harnesses only. */
#ifndef TSL_MODEL_H
#define TSL_MODEL_H
#include <stddef.h>
#include <stdint.h>

#define TSL_VOCAB 40
#define TSL_DIM 8
#define TSL_N_LAYERS 1
#define TSL_MAX_SEQ 48
#define TSL_N_OPS 3
#define TSL_ARENA_BYTES 256
#define TSL_KV_BYTES 64
#define TSL_LOGITS_OFFSET 64
#define TSL_WEIGHTS_BYTES 96
#define TSL_WEIGHTS_MAGIC 0x574c5354u
#define TSL_WEIGHTS_VERSION 1
#define TSL_ARCH_HASH 0x5eed0001u
#define TSL_KV_MIN_SLOTS TSL_MAX_SEQ
#define TSL_SAMPLER_SCRATCH_BYTES (8u * TSL_VOCAB)
#define TSL_ALIGNED __attribute__((aligned(16)))
#define TSL_ARENA_PLACE
#define TSL_KV_PLACE

enum { TSL_OK = 0, TSL_ERR_MAGIC = -1, TSL_ERR_VERSION = -2, TSL_ERR_ARCH = -3, TSL_ERR_POS = -6,
       TSL_ERR_TOKEN = -7, TSL_ERR_ARG = -8, TSL_ERR_CANCELLED = -9 };

typedef struct tsl_model { const uint8_t *weights; uint8_t *arena; int8_t *kv; } tsl_model;
typedef int32_t (*tsl_token_fn)(void *user, int32_t token);
typedef struct { int32_t max_tokens; float temperature; float top_p; uint64_t seed; int32_t eos; } tsl_generate_cfg;

/* weights NULL: a valid built-in blob (header CRC included), made here */
int32_t tsl_init(tsl_model *m, const uint8_t *weights, uint8_t *arena, int8_t *kv);
int32_t tsl_reset(tsl_model *m);
int32_t tsl_run_op(tsl_model *m, int32_t i, int32_t token, int32_t pos);
int32_t tsl_forward(tsl_model *m, int32_t token, int32_t pos, const float **logits);
int32_t tsl_generate_from(tsl_model *m, int32_t pos, const int32_t *prompt, int32_t n_prompt,
                          const tsl_generate_cfg *cfg, tsl_token_fn on_token, void *user,
                          const volatile int32_t *cancel, void *scratch, int32_t *n_out);
static inline int32_t tsl_kv_keeps(int32_t ran, int32_t pos)
{
    return pos == 0 || (pos > 0 && pos <= ran && (ran <= pos + 1 || ran <= TSL_KV_MIN_SLOTS));
}

#endif
