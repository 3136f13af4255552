/* TEST DOUBLE -- not a model. A deterministic stand-in for a generated tsl_model.h, so the serial
 * protocol can be tested on the host without compiling a network. Used by tests/test_protocol.py
 * and the fuzz harnesses only. */
#ifndef TSL_MODEL_H
#define TSL_MODEL_H
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

int32_t tsl_model_init(const uint8_t *blob);
void tsl_model_reset(void);
void tsl_model_op(int32_t i, int32_t token, int32_t pos);
const float *tsl_model_forward(int32_t token, int32_t pos);
uint8_t *tsl_model_arena(void);
int8_t *tsl_model_kv(void);
const uint8_t *tsl_model_weights(void);

#endif
