/* TEST DOUBLE -- not a model (see tsl_model.h). Three "ops" per step:
 *   0: arena u32 [0]      = mix(token, pos, weights)
 *   1: kv[pos]            = int8 from arena [0]
 *   2: logits f32 [V] at TSL_LOGITS_OFFSET = (k - 512) / 32, k in [0, 1024) from a hash of kv[0..pos]
 * so logits depend on the weights, the token, the position and the whole history, and are exact
 * in binary32 everywhere. Built-in weights: a valid TSLW blob (header CRC included) made at init. */
#include <string.h>
#include "tsl_model.h"
#include "tsl_proto.h"

static uint8_t builtin[TSL_WEIGHTS_BYTES];
static uint8_t arena[TSL_ARENA_BYTES];
static int8_t kv[TSL_KV_BYTES];
static const uint8_t *w = builtin;

static uint32_t mix(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    return h ^ (h >> 16);
}

int32_t tsl_model_init(const uint8_t *blob)
{
    if (!blob) {
        for (uint32_t i = 32; i < TSL_WEIGHTS_BYTES; i++) builtin[i] = (uint8_t)(i * 37u + 11u);
        const uint32_t head[4] = {TSL_WEIGHTS_MAGIC, TSL_WEIGHTS_VERSION, TSL_WEIGHTS_BYTES, TSL_ARCH_HASH};
        for (uint32_t i = 0; i < 4; i++) tsl_wr32(builtin + 4 * i, head[i]);
        tsl_wr32(builtin + 16, tsl_crc32(0, builtin + 32, TSL_WEIGHTS_BYTES - 32));
        blob = builtin;
    }
    if (tsl_rd32le(blob) != TSL_WEIGHTS_MAGIC) return -1;
    if (tsl_rd32le(blob + 4) != TSL_WEIGHTS_VERSION) return -2;
    if (tsl_rd32le(blob + 12) != TSL_ARCH_HASH) return -3;
    w = blob;
    tsl_model_reset();
    return 0;
}

void tsl_model_reset(void) { memset(kv, 0, sizeof kv); }

void tsl_model_op(int32_t i, int32_t token, int32_t pos)
{
    uint32_t x = tsl_rd32le(arena);
    if (i == 0) {
        tsl_wr32(arena, mix((uint32_t)token * 131u + (uint32_t)pos) ^ w[32 + (token * 7 + pos) % 64]);
    } else if (i == 1) {
        kv[pos] = (int8_t)(x >> 3);
    } else if (i == 2) {
        const uint32_t h = (uint32_t)tsl_fnv1a64((const uint8_t *)kv, (uint32_t)pos + 1u);
        float *lg = (float *)(arena + TSL_LOGITS_OFFSET);
        for (uint32_t v = 0; v < TSL_VOCAB; v++)
            lg[v] = (float)((int32_t)(mix(h ^ x ^ (v * 0x9e3779b9u) ^ w[32 + v]) & 1023u) - 512) / 32.0f;
    }
}

const float *tsl_model_forward(int32_t token, int32_t pos)
{
    for (int32_t i = 0; i < TSL_N_OPS; i++) tsl_model_op(i, token, pos);
    return (const float *)(arena + TSL_LOGITS_OFFSET);
}

uint8_t *tsl_model_arena(void) { return arena; }
int8_t *tsl_model_kv(void) { return kv; }
const uint8_t *tsl_model_weights(void) { return w; }
