/* TEST DOUBLE -- not a model (see tsl_model.h). Three "ops" per step:
 *   0: arena u32 [0]      = mix(token, pos, weights)
 *   1: kv[pos]            = int8 from arena [0]
 *   2: logits f32 [V] at TSL_LOGITS_OFFSET = (k - 512) / 32, k in [0, 1024) from a hash of kv[0..pos]
 * so logits depend on the weights, the token, the position and the whole history, and are exact
 * in binary32 everywhere. tsl_generate_from is the generated model's loop (codegen_templates). */
#include <string.h>
#include "tsl_model.h"
#include "tsl_proto.h"
#include "tsl_sampler.h"

static uint8_t builtin[TSL_WEIGHTS_BYTES];

static uint32_t mix(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    return h ^ (h >> 16);
}

int32_t tsl_init(tsl_model *m, const uint8_t *blob, uint8_t *arena, int8_t *kv)
{
    if (!m || !arena || !kv) return TSL_ERR_ARG;
    if (!blob) {
        for (uint32_t i = 32; i < TSL_WEIGHTS_BYTES; i++) builtin[i] = (uint8_t)(i * 37u + 11u);
        const uint32_t head[4] = {TSL_WEIGHTS_MAGIC, TSL_WEIGHTS_VERSION, TSL_WEIGHTS_BYTES, TSL_ARCH_HASH};
        for (uint32_t i = 0; i < 4; i++) tsl_wr32(builtin + 4 * i, head[i]);
        tsl_wr32(builtin + 16, tsl_crc32(0, builtin + 32, TSL_WEIGHTS_BYTES - 32));
        blob = builtin;
    }
    if (tsl_rd32le(blob) != TSL_WEIGHTS_MAGIC) return TSL_ERR_MAGIC;
    if (tsl_rd32le(blob + 4) != TSL_WEIGHTS_VERSION) return TSL_ERR_VERSION;
    if (tsl_rd32le(blob + 12) != TSL_ARCH_HASH) return TSL_ERR_ARCH;
    m->weights = blob;
    m->arena = arena;
    m->kv = kv;
    return tsl_reset(m);
}

int32_t tsl_reset(tsl_model *m)
{
    memset(m->kv, 0, TSL_KV_BYTES);
    return TSL_OK;
}

int32_t tsl_run_op(tsl_model *m, int32_t i, int32_t token, int32_t pos)
{
    if (pos < 0 || pos >= TSL_MAX_SEQ) return TSL_ERR_POS;
    if (token < 0 || token >= TSL_VOCAB) return TSL_ERR_TOKEN;
    const uint8_t *w = m->weights;
    uint32_t x = tsl_rd32le(m->arena);
    if (i == 0) {
        tsl_wr32(m->arena, mix((uint32_t)token * 131u + (uint32_t)pos) ^ w[32 + (token * 7 + pos) % 64]);
    } else if (i == 1) {
        m->kv[pos] = (int8_t)(x >> 3);
    } else if (i == 2) {
        const uint32_t h = (uint32_t)tsl_fnv1a64((const uint8_t *)m->kv, (uint32_t)pos + 1u);
        float *lg = (float *)(m->arena + TSL_LOGITS_OFFSET);
        for (uint32_t v = 0; v < TSL_VOCAB; v++)
            lg[v] = (float)((int32_t)(mix(h ^ x ^ (v * 0x9e3779b9u) ^ w[32 + v]) & 1023u) - 512) / 32.0f;
    }
    return TSL_OK;
}

int32_t tsl_forward(tsl_model *m, int32_t token, int32_t pos, const float **logits)
{
    for (int32_t i = 0; i < TSL_N_OPS; i++) {
        const int32_t rc = tsl_run_op(m, i, token, pos);
        if (rc != TSL_OK) return rc;
    }
    if (logits) *logits = (const float *)(m->arena + TSL_LOGITS_OFFSET);
    return TSL_OK;
}

int32_t tsl_generate_from(tsl_model *m, int32_t pos, const int32_t *prompt, int32_t n_prompt,
                          const tsl_generate_cfg *cfg, tsl_token_fn on_token, void *user,
                          const volatile int32_t *cancel, void *scratch, int32_t *n_out)
{
    int32_t made = 0, rc;
    const float *lg = NULL;
    if (n_out) *n_out = 0;
    if (!prompt || !cfg || !scratch || pos < 0 || pos >= TSL_MAX_SEQ || n_prompt < 1 ||
        n_prompt > TSL_MAX_SEQ - pos || cfg->max_tokens < 1) return TSL_ERR_ARG;
    float *probs = (float *)scratch;
    int32_t *idx = (int32_t *)(probs + TSL_VOCAB);
    tsl_sampler s;
    tsl_sampler_init(&s, cfg->seed, cfg->temperature, cfg->top_p);
    for (int32_t i = 0; i < n_prompt; i++, pos++) {
        if (cancel && *cancel) return TSL_ERR_CANCELLED;
        if ((rc = tsl_forward(m, prompt[i], pos, &lg)) != TSL_OK) return rc;
    }
    int32_t next = tsl_sample(&s, lg, TSL_VOCAB, probs, idx);
    for (;;) {
        made++;
        if (n_out) *n_out = made;
        if (on_token && on_token(user, next)) return TSL_ERR_CANCELLED;
        if (made >= cfg->max_tokens || next == cfg->eos || pos >= TSL_MAX_SEQ) return TSL_OK;
        if (cancel && *cancel) return TSL_ERR_CANCELLED;
        if ((rc = tsl_forward(m, next, pos, &lg)) != TSL_OK) return rc;
        pos++;
        next = tsl_sample(&s, lg, TSL_VOCAB, probs, idx);
    }
}
