/* tsl_serial_app.c -- the firmware side of the serial protocol (docs/protocol.md): identify,
 * generate (from position 0, or continuing a conversation whose KV cache it keeps), verify (with
 * per-op hashes and raw reads), load weights; and, with a tokenizer, encode, decode and the text
 * console (tsl_console.c) on the same UART. Built on the context API of tsl_model.h with
 * TSL_NO_DEFAULT_MODEL: the model, its arena and KV cache are this file's (the platform: tsl_device.h).
 *
 * Build options: TSL_LOAD_BYTES (RAM load buffer, default TSL_WEIGHTS_BYTES, 0: no loading),
 * TSL_PROTO_MAX_ITEMS (run history, default TSL_MAX_SEQ), TSL_ARENA_SECTION / TSL_KV_SECTION.
 * With TSL_HAS_TOKENIZER the firmware links `const tsl_tokenizer tsl_tok` (tinyslm.tokenizer_c),
 * answers ENCODE / DECODE and puts each generated token's bytes in its ITEM; TSL_TOKENIZER_HASH
 * (CRC-32 of the build's tokenizer.json), TSL_TOK_BOS and TSL_TOK_EOS (-1: none) go into IDENTITY.
 *
 * Link rules (stop-and-wait): a request whose seq and CRC equal the last one's is a resend and
 * gets the cached reply again, without running anything twice; otherwise its seq must be the
 * last + 1, or carry TSL_FLAG_SYNC. Only replies to accepted requests are cached; link errors
 * and E_SEQ are not. While a run streams, the device reads nothing. */
#include <string.h>
#include "tsl_model.h"
#include "tsl_sampler.h"
#include "tsl_proto.h"
#include "tsl_device.h"

#ifndef TSL_LOAD_BYTES
#define TSL_LOAD_BYTES TSL_WEIGHTS_BYTES
#endif
#ifndef TSL_PROTO_MAX_ITEMS
#define TSL_PROTO_MAX_ITEMS TSL_MAX_SEQ
#endif
#define TSL_RUN_HEAD 20u                                        /* run request before the ids */
#define TSL_CONT_HEAD 12u                                       /* GEN_CONTINUE before the run request */
#define TSL_REGION 9u              /* DEBUG_OPS: u8 space, u32 off, u32 len; <= 113 a message */
#define TSL_READ_HEAD 6u
#define TSL_MAX_READ (TSL_PROTO_MAX_PAYLOAD - TSL_READ_HEAD - 2u) /* 1016 */
#define TSL_RUN_GEN 1u
#define TSL_RUN_VERIFY 2u
#define TSL_ENCODE_MAX 256u                                     /* text bytes per ENCODE */
#define TSL_MAX_OUT_IDS ((TSL_PROTO_MAX_PAYLOAD - 2u) / 4u)    /* 255 ids per IDS / DECODE */
#define TSL_ITEM_HEAD 19u                                       /* ITEM before the token's bytes */
#define TSL_ITEM_TEXT_MAX 254u                                  /* longer: n_text 255, not carried */
#ifndef TSL_TOKENIZER_HASH
#define TSL_TOKENIZER_HASH 0u
#endif
#ifdef TSL_HAS_TOKENIZER
#include "tsl_tokenizer.h"
#include "tsl_console.h"
extern const tsl_tokenizer tsl_tok;
static int32_t enc_ids[TSL_TOK_MAX_IDS(TSL_ENCODE_MAX)];          /* 3 KB, shared with the console */
static uint32_t enc_work[TSL_TOK_WORK_WORDS(TSL_ENCODE_MAX)];     /* 1 KB, shared with the console */
static tsl_console con;
#endif

static tsl_model model;
static int32_t model_status;                           /* tsl_init's status: nonzero, the model does not run */
static uint8_t tsl_arena[TSL_ARENA_BYTES] TSL_ALIGNED TSL_ARENA_PLACE;
static int8_t tsl_kv[TSL_KV_BYTES] TSL_ALIGNED TSL_KV_PLACE;
static uint32_t tsl_sampler_scratch[TSL_SAMPLER_SCRATCH_BYTES / 4u];   /* float probs[V], int32 idx[V] */
#if TSL_LOAD_BYTES > 0
static uint8_t load_buf[TSL_LOAD_BYTES] TSL_ALIGNED;
#else
static uint8_t *const load_buf = 0;
#endif

static tsl_proto_parser rx;
static uint8_t reply[TSL_PROTO_MAX_PAYLOAD];           /* payload of the reply being built; a run's stream frames */
static uint8_t cache[TSL_PROTO_MAX_WIRE];              /* the last reply, encoded */
static uint32_t cache_n;
static uint8_t tx[48];                                 /* uncached errors and RUN_DONE */
static struct { uint16_t seq; uint32_t crc; uint8_t valid; } last;

static struct {
    uint8_t kind, pending;           /* pending: accepted, ACK sent, not run yet */
    uint16_t seq, start, n_ids, count, planned;       /* prompt ids: ctx.ids[start, start + n_ids) */
    float temperature, top_p;
    uint64_t seed, kv_hash;
    uint32_t prefill, total, t;      /* t: cycle count when the current item's step began */
} run;
/* The conversation in the KV cache: positions [0, len) ran ids[0:len] since the last reset, and
 * no later position ran (what tsl_kv_keeps needs). A verify run's ids stay for DEBUG_BEGIN. */
static struct { uint32_t len; int32_t ids[TSL_MAX_SEQ]; } ctx;
static struct { int32_t token; uint32_t cycles; uint64_t hash; } items[TSL_PROTO_MAX_ITEMS];
static struct { uint8_t active; uint16_t step, next_op; } dbg;
static struct { uint8_t active, loaded; uint32_t total, arch, crc, received; } load;

static void send_tx(uint8_t type, uint16_t seq, const uint8_t *p, uint32_t n)
{
    tsl_uart_write(tx, tsl_proto_encode(tx, sizeof tx, type, 0, seq, p, n));
}

static void send_error_tx(uint8_t code, uint8_t req, uint16_t seq, uint32_t detail)
{
    uint8_t e[8] = {code, req, 0, 0};
    tsl_wr32(e + 4, detail);
    send_tx(TSL_MSG_ERROR, seq, e, sizeof e);
}

/* Handlers fill reply[] and return its length; *type is the reply type. */
static uint32_t fail(uint8_t *type, uint8_t code, uint8_t req, uint32_t detail)
{
    *type = TSL_MSG_ERROR;
    reply[0] = code;
    reply[1] = req;
    reply[2] = reply[3] = 0;
    tsl_wr32(reply + 4, detail);
    return 8;
}

static uint32_t weights_total(const uint8_t *w) { return tsl_rd32le(w + 8); }

static int32_t bind_weights(const uint8_t *w)          /* NULL: the blob linked in */
{
    ctx.len = 0;
    return tsl_init(&model, w, tsl_arena, tsl_kv);
}

static uint32_t put_str(uint8_t *p, const char *s)
{
    const uint32_t n = (uint32_t)strlen(s) > 64u ? 64u : (uint32_t)strlen(s);
    p[0] = (uint8_t)n;
    memcpy(p + 1, s, n);
    return 1u + n;
}

static uint32_t on_identify(uint8_t *type)
{
    const uint8_t *w = model.weights;
    const uint32_t v[12] = {TSL_ARCH_HASH, tsl_rd32le(w + 16), weights_total(w), TSL_ARENA_BYTES,
                            TSL_KV_BYTES, TSL_VOCAB, TSL_MAX_SEQ, TSL_N_OPS, TSL_LOGITS_OFFSET,
                            TSL_LOAD_BYTES, TSL_PROTO_MAX_ITEMS, (uint32_t)model_status};
    reply[0] = TSL_PROTO_VERSION;
    reply[1] = load.loaded;
    tsl_wr16(reply + 2, TSL_PROTO_MAX_PAYLOAD);
    for (uint32_t i = 0; i < 12u; i++) tsl_wr32(reply + 4 + 4 * i, v[i]);
    uint32_t n = 52;
    n += put_str(reply + n, TSL_BOARD_NAME);
    n += put_str(reply + n, TSL_FW_VERSION);
    n += put_str(reply + n, TSL_CYCLES_UNIT);
    /* tokenizer: u32 hash (0: none), i32 bos, i32 eos, u32 caps (bit 0 encoder, bit 1 decoder) */
#ifdef TSL_HAS_TOKENIZER
    const uint32_t caps = (tsl_tok.byte_to_id ? 1u : 0u) | 2u;
#else
    const uint32_t caps = 0;
#endif
    tsl_wr32(reply + n, TSL_TOKENIZER_HASH);
    tsl_wr32(reply + n + 4, (uint32_t)(int32_t)TSL_TOK_BOS);
    tsl_wr32(reply + n + 8, (uint32_t)(int32_t)TSL_TOK_EOS);
    tsl_wr32(reply + n + 12, caps);
    n += 16;
    *type = TSL_MSG_IDENTITY;
    return n;
}

static float rd_f32(const uint8_t *p)
{
    const uint32_t u = tsl_rd32le(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t ids_hash(const int32_t *ids, uint32_t n)   /* FNV-1a 64 of the ids as u32 LE */
{
    uint8_t b[4];
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < n; i++) {
        tsl_wr32(b, (uint32_t)ids[i]);
        for (uint32_t k = 0; k < 4; k++) h = (h ^ b[k]) * 0x100000001b3ull;
    }
    return h;
}

/* The run request at p[0:len] (u16 n_ids, u16 max_tokens, f32 temperature, f32 top_p, u64 seed,
 * i32 ids[n_ids]) with its prompt at positions start.. (GEN_CONTINUE; 0 otherwise). Checks
 * everything, then arms the run; it starts after the ACK is sent. GEN_CONTINUE's prefix (u64
 * hash of ids[0:start]) must be what the KV cache holds, by tsl_kv_keeps: else E_CONTEXT. */
static uint32_t on_run_start(uint8_t *type, const tsl_frame *f, const uint8_t *p, uint32_t len, uint8_t kind,
                             uint32_t start, const uint8_t *prefix)
{
    const uint8_t req = f->type;
    const uint32_t head = prefix ? TSL_CONT_HEAD : 0u;
    if (len < TSL_RUN_HEAD) return fail(type, TSL_PROTO_E_LENGTH, req, head + TSL_RUN_HEAD);
    const uint32_t n = tsl_rd16(p), max_tokens = tsl_rd16(p + 2);
    const float t = rd_f32(p + 4), top_p = rd_f32(p + 8);
    if (len != TSL_RUN_HEAD + 4u * n) return fail(type, TSL_PROTO_E_LENGTH, req, head + TSL_RUN_HEAD + 4u * n);
    if (model_status != 0) return fail(type, TSL_PROTO_E_MODEL, req, (uint32_t)model_status);
    if (t != t || top_p != top_p) return fail(type, TSL_PROTO_E_RANGE, req, 0);   /* NaN */
    if (start >= TSL_MAX_SEQ) return fail(type, TSL_PROTO_E_RANGE, req, TSL_MAX_SEQ - 1u);
    if (n < 1u || n > TSL_MAX_SEQ - start) return fail(type, TSL_PROTO_E_RANGE, req, TSL_MAX_SEQ - start);
    const uint32_t count = kind == TSL_RUN_GEN ? max_tokens : n;
    if (kind == TSL_RUN_VERIFY && max_tokens != 0) return fail(type, TSL_PROTO_E_RANGE, req, 0);
    if (count > TSL_PROTO_MAX_ITEMS) return fail(type, TSL_PROTO_E_RANGE, req, TSL_PROTO_MAX_ITEMS);
    if (kind == TSL_RUN_GEN && count > 0 && start + n + count - 1u > TSL_MAX_SEQ)   /* last position: start+n+count-2 */
        return fail(type, TSL_PROTO_E_RANGE, req, TSL_MAX_SEQ + 1u - start - n);
    for (uint32_t i = 0; i < n; i++)
        if (tsl_rd32le(p + TSL_RUN_HEAD + 4 * i) >= (uint32_t)TSL_VOCAB)
            return fail(type, TSL_PROTO_E_RANGE, req, TSL_VOCAB);
    if (prefix && start > 0 && (!tsl_kv_keeps((int32_t)ctx.len, (int32_t)start) ||
                   ids_hash(ctx.ids, start) != ((uint64_t)tsl_rd32le(prefix) | ((uint64_t)tsl_rd32le(prefix + 4) << 32))))
        return fail(type, TSL_PROTO_E_CONTEXT, req, ctx.len);
    for (uint32_t i = 0; i < n; i++) ctx.ids[start + i] = (int32_t)tsl_rd32le(p + TSL_RUN_HEAD + 4 * i);
    ctx.len = 0;                     /* until the run is over */
    run.kind = kind;
    run.pending = 1;
    run.seq = f->seq;
    run.start = (uint16_t)start;
    run.n_ids = (uint16_t)n;
    run.planned = (uint16_t)count;
    run.count = 0;
    run.temperature = t;
    run.top_p = top_p;
    run.seed = (uint64_t)tsl_rd32le(p + 12) | ((uint64_t)tsl_rd32le(p + 16) << 32);
    run.prefill = run.total = 0;
    run.kv_hash = 0;
    dbg.active = 0;
    reply[0] = kind;
    reply[1] = 0;
    tsl_wr16(reply + 2, count);
    *type = TSL_MSG_RUN_ACK;
    return 4;
}

/* GEN_CONTINUE: u16 start, u16 0, u64 FNV-1a 64 of ids[0:start] (as u32 LE), then a run request. */
static uint32_t on_continue(uint8_t *type, const tsl_frame *f)
{
    if (f->len < TSL_CONT_HEAD) return fail(type, TSL_PROTO_E_LENGTH, f->type, TSL_CONT_HEAD + TSL_RUN_HEAD);
    return on_run_start(type, f, f->payload + TSL_CONT_HEAD, f->len - TSL_CONT_HEAD, TSL_RUN_GEN,
                        tsl_rd16(f->payload), f->payload + 4);
}

/* ITEM: u16 index, i32 token, u32 cycles, u64 logits hash, u8 n_text, the token's bytes[n_text]
 * (generate with a tokenizer; 255: longer than TSL_ITEM_TEXT_MAX, not carried). */
static uint32_t put_item(uint8_t *p, uint32_t i)
{
    tsl_wr16(p, i);
    tsl_wr32(p + 2, (uint32_t)items[i].token);
    tsl_wr32(p + 6, items[i].cycles);
    tsl_wr64(p + 10, items[i].hash);
    p[18] = 0;
#ifdef TSL_HAS_TOKENIZER
    const uint8_t *b;
    const int32_t k = run.kind == TSL_RUN_GEN ? tsl_token_decode(&tsl_tok, items[i].token, &b) : 0;
    if (k > (int32_t)TSL_ITEM_TEXT_MAX) {
        p[18] = 255u;
    } else if (k > 0) {
        p[18] = (uint8_t)k;
        memcpy(p + TSL_ITEM_HEAD, b, (uint32_t)k);
        return TSL_ITEM_HEAD + (uint32_t)k;
    }
#endif
    return TSL_ITEM_HEAD;
}

static uint32_t put_done(uint8_t *p)
{
    p[0] = run.kind;
    p[1] = 0;
    tsl_wr16(p + 2, run.count);
    tsl_wr32(p + 4, run.prefill);
    tsl_wr32(p + 8, run.total);
    tsl_wr64(p + 12, run.kv_hash);
    return 20;
}

/* One item of the running stream, its frame encoded into reply[] (free while a run streams:
 * the RUN_ACK is already in cache[]). */
static void send_item(uint32_t i)
{
    uint8_t p[TSL_ITEM_HEAD + TSL_ITEM_TEXT_MAX];
    const uint32_t n = put_item(p, i);
    tsl_uart_write(reply, tsl_proto_encode(reply, sizeof reply, TSL_MSG_ITEM, 0, run.seq, p, n));
}

/* tsl_generate_from's callback: item i = the token; its cycles cover its step and the sampling. */
static int32_t on_gen_token(void *user, int32_t tok)
{
    (void)user;
    const uint32_t i = run.count;
    items[i].cycles = TSL_NOW() - run.t;
    items[i].token = tok;
    items[i].hash = 0;
    if (i + 1u < run.planned) ctx.ids[run.start + run.n_ids + i] = tok;   /* fed back at the next position */
    run.count = (uint16_t)(i + 1u);
    send_item(i);
    run.t = TSL_NOW();
    return 0;
}

/* The run armed by on_run_start(), streaming one ITEM per token or step, then RUN_DONE.
 * generate: prompt ids at positions start..start+n-1, item i = the token sampled after position
 *   start+n-1+i, fed back at position start+n+i; its cycles cover that step and the sampling.
 * verify: step s runs ids[s] at position s; item s = its logits hash and sampled token. */
static void do_run(void)
{
    uint8_t p[20];
    const uint32_t t0 = TSL_NOW();
    run.pending = 0;
    const uint32_t s = run.start, n = run.n_ids;
    float *probs = (float *)tsl_sampler_scratch;
    int32_t *idx = (int32_t *)(probs + TSL_VOCAB);
    if (s == 0) tsl_reset(&model);
    if (run.kind == TSL_RUN_GEN) {
        if (run.planned > 0) {
            for (uint32_t pos = s; pos + 1u < s + n; pos++) tsl_forward(&model, ctx.ids[pos], (int32_t)pos, 0);
            run.prefill = TSL_NOW() - t0;
            const tsl_generate_cfg cfg = {(int32_t)run.planned, run.temperature, run.top_p, run.seed, -1};
            run.t = TSL_NOW();
            tsl_generate_from(&model, (int32_t)(s + n - 1u), ctx.ids + s + n - 1u, 1, &cfg, on_gen_token, 0, 0,
                              tsl_sampler_scratch, 0);
            ctx.len = run.count == run.planned ? s + n + run.planned - 1u : 0u;
        } else {
            run.prefill = TSL_NOW() - t0;
            ctx.len = s;
        }
    } else {
        tsl_sampler smp;
        tsl_sampler_init(&smp, run.seed, run.temperature, run.top_p);
        run.prefill = TSL_NOW() - t0;
        for (uint32_t i = 0; i < run.planned; i++) {
            const float *lg = 0;
            const uint32_t c0 = TSL_NOW();
            tsl_forward(&model, ctx.ids[i], (int32_t)i, &lg);
            const int32_t t = tsl_sample(&smp, lg, TSL_VOCAB, probs, idx);
            items[i].cycles = TSL_NOW() - c0;
            items[i].token = t;
            items[i].hash = tsl_fnv1a64((const uint8_t *)lg, 4u * TSL_VOCAB);
            run.count = (uint16_t)(i + 1u);
            send_item(i);
        }
        run.kv_hash = tsl_fnv1a64((const uint8_t *)model.kv, TSL_KV_BYTES);
        ctx.len = n;
    }
    run.total = TSL_NOW() - t0;
    send_tx(TSL_MSG_RUN_DONE, run.seq, p, put_done(p));
}

static uint32_t on_fetch(uint8_t *type, const tsl_frame *f)
{
    if (f->len != 2) return fail(type, TSL_PROTO_E_LENGTH, f->type, 2);
    if (run.kind == 0) return fail(type, TSL_PROTO_E_STATE, f->type, 0);
    const uint32_t i = tsl_rd16(f->payload);
    if (i >= run.count) return fail(type, TSL_PROTO_E_RANGE, f->type, run.count);
    *type = TSL_MSG_ITEM;
    return put_item(reply, i);
}

static uint32_t on_status(uint8_t *type, const tsl_frame *f)
{
    if (f->len != 0) return fail(type, TSL_PROTO_E_LENGTH, f->type, 0);
    if (run.kind == 0) return fail(type, TSL_PROTO_E_STATE, f->type, 0);
    *type = TSL_MSG_RUN_DONE;
    return put_done(reply);
}

static uint32_t debug_ack(uint8_t *type)
{
    tsl_wr16(reply, dbg.step);
    tsl_wr16(reply + 2, TSL_N_OPS);
    tsl_wr16(reply + 4, dbg.next_op);
    *type = TSL_MSG_DEBUG_ACK;
    return 6;
}

/* DEBUG_BEGIN: u16 step, u8 full, u8 0. Replays the last verify run's steps 0..step-1, then
 * stands before op 0 of `step` (full: after its last op, logits in the arena). */
static uint32_t on_debug_begin(uint8_t *type, const tsl_frame *f)
{
    if (f->len != 4) return fail(type, TSL_PROTO_E_LENGTH, f->type, 4);
    if (run.kind != TSL_RUN_VERIFY) return fail(type, TSL_PROTO_E_STATE, f->type, 0);
    const uint32_t step = tsl_rd16(f->payload);
    if (step >= run.n_ids) return fail(type, TSL_PROTO_E_RANGE, f->type, run.n_ids);
    ctx.len = 0;                     /* replayed, then run op by op: no longer a conversation */
    tsl_reset(&model);
    for (uint32_t pos = 0; pos < step; pos++) tsl_forward(&model, ctx.ids[pos], (int32_t)pos, 0);
    dbg.active = 1;
    dbg.step = (uint16_t)step;
    dbg.next_op = 0;
    if (f->payload[2]) {
        tsl_forward(&model, ctx.ids[step], (int32_t)step, 0);
        dbg.next_op = TSL_N_OPS;
    }
    return debug_ack(type);
}

/* Region of a memory space, or 0 when [off, off+len) is not inside it.
 * space 0: arena, 1: KV cache, 2: active weights (read only). */
static const uint8_t *region(uint32_t space, uint32_t off, uint32_t len)
{
    const uint8_t *base;
    uint32_t size;
    if (space == 0) {
        base = model.arena;
        size = TSL_ARENA_BYTES;
    } else if (space == 1) {
        base = (const uint8_t *)model.kv;
        size = TSL_KV_BYTES;
    } else if (space == 2) {
        base = model.weights;
        size = weights_total(base);
    } else {
        return 0;
    }
    return off <= size && len <= size - off ? base + off : 0;
}

/* DEBUG_OPS: u16 n, n x {u8 space, u32 offset, u32 length}: runs the next n ops of the debug
 * step, hashing the given region after each. Regions are checked before any op runs. */
static uint32_t on_debug_ops(uint8_t *type, const tsl_frame *f)
{
    const uint8_t *p = f->payload;
    if (f->len < 2) return fail(type, TSL_PROTO_E_LENGTH, f->type, 2);
    const uint32_t n = tsl_rd16(p);
    if (f->len != 2u + TSL_REGION * n) return fail(type, TSL_PROTO_E_LENGTH, f->type, 2u + TSL_REGION * n);
    if (!dbg.active) return fail(type, TSL_PROTO_E_STATE, f->type, 0);
    const uint32_t ops_left = (uint32_t)TSL_N_OPS - dbg.next_op;
    if (n > ops_left) return fail(type, TSL_PROTO_E_RANGE, f->type, ops_left);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = p + 2 + TSL_REGION * i;
        if (!region(r[0], tsl_rd32le(r + 1), tsl_rd32le(r + 5)))
            return fail(type, TSL_PROTO_E_RANGE, f->type, i);
    }
    tsl_wr16(reply, dbg.next_op);
    tsl_wr16(reply + 2, n);
    const int32_t pos = (int32_t)dbg.step;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = p + 2 + TSL_REGION * i;
        const uint32_t len = tsl_rd32le(r + 5);
        tsl_run_op(&model, dbg.next_op++, ctx.ids[dbg.step], pos);
        tsl_wr64(reply + 4 + 8 * i, tsl_fnv1a64(region(r[0], tsl_rd32le(r + 1), len), len));
    }
    *type = TSL_MSG_OP_HASHES;
    return 4u + 8u * n;
}

/* READ: u8 space, u8 0, u32 offset, u16 length <= 1016 -> DATA: u8 space, u8 0, u32 offset, bytes */
static uint32_t on_read(uint8_t *type, const tsl_frame *f)
{
    const uint8_t *p = f->payload;
    if (f->len != 8) return fail(type, TSL_PROTO_E_LENGTH, f->type, 8);
    const uint32_t off = tsl_rd32le(p + 2), len = tsl_rd16(p + 6);
    const uint8_t *src = region(p[0], off, len);
    if (len > TSL_MAX_READ || !src) return fail(type, TSL_PROTO_E_RANGE, f->type, TSL_MAX_READ);
    memcpy(reply, p, TSL_READ_HEAD);
    memcpy(reply + TSL_READ_HEAD, src, len);
    *type = TSL_MSG_DATA;
    return TSL_READ_HEAD + len;
}

static uint32_t load_ack(uint8_t *type)
{
    tsl_wr32(reply, load.received);
    tsl_wr32(reply + 4, TSL_LOAD_BYTES);
    *type = TSL_MSG_LOAD_ACK;
    return 8;
}

/* LOAD_BEGIN: u32 total, u32 arch hash, u32 crc32 of bytes [32:total]. Falls back to the built-in
 * weights first when the load buffer is the active one: the model never runs from a buffer
 * being written. */
static uint32_t on_load_begin(uint8_t *type, const tsl_frame *f)
{
    if (f->len != 12) return fail(type, TSL_PROTO_E_LENGTH, f->type, 12);
    const uint32_t total = tsl_rd32le(f->payload), arch = tsl_rd32le(f->payload + 4);
    if (total > TSL_LOAD_BYTES) return fail(type, TSL_PROTO_E_TOO_BIG, f->type, TSL_LOAD_BYTES);
    if (total < 32u) return fail(type, TSL_PROTO_E_RANGE, f->type, 32);
    if (arch != TSL_ARCH_HASH) return fail(type, TSL_PROTO_E_ARCH, f->type, TSL_ARCH_HASH);
    if (load.loaded) {
        model_status = bind_weights(0);
        load.loaded = 0;
        dbg.active = 0;
    }
    load.active = 1;
    load.total = total;
    load.arch = arch;
    load.crc = tsl_rd32le(f->payload + 8);
    load.received = 0;
    return load_ack(type);
}

/* LOAD_DATA: u32 offset, bytes. offset <= received (a resent chunk is harmless), end <= total. */
static uint32_t on_load_data(uint8_t *type, const tsl_frame *f)
{
    if (f->len < 5) return fail(type, TSL_PROTO_E_LENGTH, f->type, 5);
    if (!load.active) return fail(type, TSL_PROTO_E_STATE, f->type, 0);
    const uint32_t off = tsl_rd32le(f->payload), n = f->len - 4u;
    if (off > load.received || n > load.total - off) return fail(type, TSL_PROTO_E_RANGE, f->type, load.received);
    memcpy(load_buf + off, f->payload + 4, n);
    if (off + n > load.received) load.received = off + n;
    return load_ack(type);
}

static uint32_t on_load_commit(uint8_t *type, const tsl_frame *f)
{
    if (f->len != 0) return fail(type, TSL_PROTO_E_LENGTH, f->type, 0);
    if (!load.active) return fail(type, TSL_PROTO_E_STATE, f->type, 0);
    if (load.received != load.total) return fail(type, TSL_PROTO_E_INCOMPLETE, f->type, load.received);
    load.active = 0;
    if (weights_total(load_buf) != load.total) return fail(type, TSL_PROTO_E_MODEL, f->type, (uint32_t)-4);
    if (tsl_rd32le(load_buf + 12) != TSL_ARCH_HASH) return fail(type, TSL_PROTO_E_ARCH, f->type, TSL_ARCH_HASH);
    const uint32_t crc = tsl_crc32(0, load_buf + 32, load.total - 32u);
    if (crc != tsl_rd32le(load_buf + 16) || crc != load.crc) return fail(type, TSL_PROTO_E_WEIGHTS_CRC, f->type, crc);
    const int32_t rc = bind_weights(load_buf);
    if (rc != 0) return fail(type, TSL_PROTO_E_MODEL, f->type, (uint32_t)rc);
    model_status = 0;
    load.loaded = 1;
    dbg.active = 0;
    return load_ack(type);
}

/* ENCODE: UTF-8 text[0..256) -> IDS: u16 n, i32 ids[n] (the C encoder; no BOS added). */
static uint32_t on_encode(uint8_t *type, const tsl_frame *f)
{
#ifdef TSL_HAS_TOKENIZER
    if (!tsl_tok.byte_to_id) return fail(type, TSL_PROTO_E_STATE, f->type, 0);
    if (f->len > TSL_ENCODE_MAX) return fail(type, TSL_PROTO_E_RANGE, f->type, TSL_ENCODE_MAX);
    const int32_t n = tsl_tokenizer_encode(&tsl_tok, f->payload, (int32_t)f->len, enc_ids,
                                           (int32_t)(sizeof enc_ids / 4), enc_work, (int32_t)(sizeof enc_work / 4));
    if (n < 0) return fail(type, TSL_PROTO_E_TOKENIZER, f->type, (uint32_t)n);
    if ((uint32_t)n > TSL_MAX_OUT_IDS) return fail(type, TSL_PROTO_E_RANGE, f->type, TSL_MAX_OUT_IDS);
    tsl_wr16(reply, (uint32_t)n);
    for (int32_t i = 0; i < n; i++) tsl_wr32(reply + 2 + 4 * i, (uint32_t)enc_ids[i]);
    *type = TSL_MSG_IDS;
    return 2u + 4u * (uint32_t)n;
#else
    return fail(type, TSL_PROTO_E_STATE, f->type, 0);
#endif
}

/* DECODE: u16 n, i32 ids[n] -> TEXT: u16 done, the bytes of ids[0..done) concatenated (special
 * tokens and ids past the tokenizer's vocabulary: none); done < n when the next would not fit. */
static uint32_t on_decode(uint8_t *type, const tsl_frame *f)
{
    if (f->len < 2) return fail(type, TSL_PROTO_E_LENGTH, f->type, 2);
    const uint32_t n = tsl_rd16(f->payload);
    if (f->len != 2u + 4u * n) return fail(type, TSL_PROTO_E_LENGTH, f->type, 2u + 4u * n);
#ifdef TSL_HAS_TOKENIZER
    uint32_t done = 0, len = 2;
    for (uint32_t i = 0; i < n; i++)
        if (tsl_rd32le(f->payload + 2 + 4 * i) >= (uint32_t)TSL_VOCAB)
            return fail(type, TSL_PROTO_E_RANGE, f->type, TSL_VOCAB);
    for (; done < n; done++) {
        const uint8_t *b;
        const int32_t k = tsl_token_decode(&tsl_tok, (int32_t)tsl_rd32le(f->payload + 2 + 4 * done), &b);
        const uint32_t m = k > 0 ? (uint32_t)k : 0u;
        if (m > TSL_PROTO_MAX_PAYLOAD - len) break;
        memcpy(reply + len, b, m);
        len += m;
    }
    if (done == 0 && n > 0) return fail(type, TSL_PROTO_E_RANGE, f->type, TSL_PROTO_MAX_PAYLOAD - 2u);
    tsl_wr16(reply, done);
    *type = TSL_MSG_TEXT;
    return len;
#else
    return fail(type, TSL_PROTO_E_STATE, f->type, 0);
#endif
}

static uint32_t dispatch(uint8_t *type, const tsl_frame *f)
{
    switch (f->type) {
    case TSL_MSG_IDENTIFY: return f->len ? fail(type, TSL_PROTO_E_LENGTH, f->type, 0) : on_identify(type);
    case TSL_MSG_GEN_START: return on_run_start(type, f, f->payload, f->len, TSL_RUN_GEN, 0, 0);
    case TSL_MSG_VERIFY_START: return on_run_start(type, f, f->payload, f->len, TSL_RUN_VERIFY, 0, 0);
    case TSL_MSG_GEN_CONTINUE: return on_continue(type, f);
    case TSL_MSG_RUN_FETCH: return on_fetch(type, f);
    case TSL_MSG_RUN_STATUS: return on_status(type, f);
    case TSL_MSG_DEBUG_BEGIN: return on_debug_begin(type, f);
    case TSL_MSG_DEBUG_OPS: return on_debug_ops(type, f);
    case TSL_MSG_READ: return on_read(type, f);
    case TSL_MSG_LOAD_BEGIN: return on_load_begin(type, f);
    case TSL_MSG_LOAD_DATA: return on_load_data(type, f);
    case TSL_MSG_LOAD_COMMIT: return on_load_commit(type, f);
    case TSL_MSG_ENCODE: return on_encode(type, f);
    case TSL_MSG_DECODE: return on_decode(type, f);
    default: return fail(type, TSL_PROTO_E_TYPE, f->type, f->type);
    }
}

static void on_frame(const tsl_frame *f)
{
    if (last.valid && f->seq == last.seq && f->crc == last.crc) {
        tsl_uart_write(cache, cache_n);
        return;
    }
    if (last.valid && !(f->flags & TSL_FLAG_SYNC) && f->seq != (uint16_t)(last.seq + 1u)) {
        send_error_tx(TSL_PROTO_E_SEQ, f->type, f->seq, (uint16_t)(last.seq + 1u));
        return;
    }
    last.valid = 1;
    last.seq = f->seq;
    last.crc = f->crc;
#ifdef TSL_HAS_TOKENIZER
    tsl_console_reset(&con);          /* binary requests may reset or replace the model */
    if (con.touched) ctx.len = 0;     /* the console ran the model since: not the conversation held here */
    con.touched = 0;
#endif
    uint8_t type;
    const uint32_t n = dispatch(&type, f);
    cache_n = tsl_proto_encode(cache, sizeof cache, type, 0, f->seq, reply, n);
    tsl_uart_write(cache, cache_n);
    if (run.pending) do_run();
}

int tsl_serial_main(void)
{
    tsl_cycles_init();
    tsl_proto_init(&rx);
    memset(&last, 0, sizeof last);
    memset(&run, 0, sizeof run);
    memset(&dbg, 0, sizeof dbg);
    memset(&load, 0, sizeof load);
    memset(&ctx, 0, sizeof ctx);
    model_status = bind_weights(0);
#ifdef TSL_HAS_TOKENIZER
    tsl_console_init(&con, &model, &model_status, &tsl_tok, enc_ids, (int32_t)(sizeof enc_ids / 4), enc_work,
                     (int32_t)(sizeof enc_work / 4), tsl_sampler_scratch);
    uint8_t link = 0;                 /* 0 at a frame boundary, 1 after the host's 0x00 lead-in, 2 in a frame */
#endif
    for (;;) {
        const int c = tsl_uart_getc();
        if (c < 0) return 0;
#ifdef TSL_HAS_TOKENIZER
        /* at a boundary a printable byte, CR, LF or backspace is the console's, any other byte
         * (a COBS code) starts a frame; after the lead-in every byte is the frame's. */
        if (c == 0) {
            link = link == 2 ? 0 : 1;
            con.len = 0;
        } else if (link == 0 && (c >= 0x20 || c == '\r' || c == '\n' || c == 8)) {
            tsl_console_key(&con, (uint8_t)c);
            continue;
        } else {
            link = 2;
        }
#endif
        const int32_t r = tsl_proto_feed(&rx, (uint8_t)c);
        if (r == TSL_PROTO_FRAME) on_frame(&rx.frame);
        else if (r < 0) send_error_tx((uint8_t)-r, 0, 0, 0);
    }
}
