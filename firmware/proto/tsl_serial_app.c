/* tsl_serial_app.c -- the firmware side of the serial protocol (docs/protocol.md): identify,
 * generate, verify (with per-op hashes and raw reads), load weights.
 *
 * The platform provides:
 *   int tsl_uart_getc(void)                          blocking, 0..255; < 0 ends tsl_serial_main()
 *   void tsl_uart_write(const uint8_t *p, uint32_t n)
 *   uint32_t tsl_cycles(void)                        free-running counter; differences wrap mod 2^32
 *     (or build with -DTSL_PROTO_PLATFORM_CYCLES to take it from targets/tsl_platform.h)
 * Build options: TSL_BOARD_NAME, TSL_FW_VERSION (strings), TSL_LOAD_BYTES (RAM load buffer,
 * default TSL_WEIGHTS_BYTES, 0: no loading), TSL_PROTO_MAX_ITEMS (run history, default TSL_MAX_SEQ).
 * With TSL_HAS_TOKENIZER the firmware links `const tsl_tokenizer tsl_tok` (tinyslm.tokenizer_c) and
 * answers ENCODE / DECODE; TSL_TOKENIZER_HASH (CRC-32 of the build's tokenizer.json), TSL_TOK_BOS and
 * TSL_TOK_EOS (-1: none) go into IDENTITY.
 *
 * Link rules (stop-and-wait): a request whose seq and CRC equal the last one's is a resend and
 * gets the cached reply again, without running anything twice; otherwise its seq must be the
 * last + 1, or carry TSL_FLAG_SYNC. Only replies to accepted requests are cached; link errors
 * and E_SEQ are not. While a run streams, the device reads nothing. */
#include <string.h>
#include "tsl_model.h"
#include "tsl_sampler.h"
#include "tsl_proto.h"

extern int tsl_uart_getc(void);
extern void tsl_uart_write(const uint8_t *p, uint32_t n);
#ifdef TSL_PROTO_PLATFORM_CYCLES
#include "tsl_platform.h"
#define TSL_NOW() ((uint32_t)tsl_cycles())
#else
extern uint32_t tsl_cycles(void);
#define TSL_NOW() tsl_cycles()
#define tsl_cycles_init() ((void)0)
#endif

#ifndef TSL_BOARD_NAME
#define TSL_BOARD_NAME "unknown"
#endif
#ifndef TSL_FW_VERSION
#define TSL_FW_VERSION "dev"
#endif
#ifndef TSL_CYCLES_UNIT
#define TSL_CYCLES_UNIT "cycles"
#endif
#ifndef TSL_LOAD_BYTES
#define TSL_LOAD_BYTES TSL_WEIGHTS_BYTES
#endif
#ifndef TSL_PROTO_MAX_ITEMS
#define TSL_PROTO_MAX_ITEMS TSL_MAX_SEQ
#endif
#define TSL_RUN_HEAD 20u                                        /* run request before the ids */
#define TSL_MAX_IDS ((TSL_PROTO_MAX_PAYLOAD - TSL_RUN_HEAD) / 4u) /* 251 */
#define TSL_REGION 9u              /* DEBUG_OPS: u8 space, u32 off, u32 len; <= 113 a message */
#define TSL_READ_HEAD 6u
#define TSL_MAX_READ (TSL_PROTO_MAX_PAYLOAD - TSL_READ_HEAD - 2u) /* 1016 */
#define TSL_RUN_GEN 1u
#define TSL_RUN_VERIFY 2u
#define TSL_ENCODE_MAX 256u                                     /* text bytes per ENCODE */
#define TSL_MAX_OUT_IDS ((TSL_PROTO_MAX_PAYLOAD - 2u) / 4u)    /* 255 ids per IDS / DECODE */
#ifndef TSL_TOKENIZER_HASH
#define TSL_TOKENIZER_HASH 0u
#endif
#ifndef TSL_TOK_BOS
#define TSL_TOK_BOS (-1)
#endif
#ifndef TSL_TOK_EOS
#define TSL_TOK_EOS (-1)
#endif
#ifdef TSL_HAS_TOKENIZER
#include "tsl_tokenizer.h"
extern const tsl_tokenizer tsl_tok;
static int32_t enc_ids[TSL_TOK_MAX_IDS(TSL_ENCODE_MAX)];          /* 3 KB */
static uint32_t enc_work[TSL_TOK_WORK_WORDS(TSL_ENCODE_MAX)];     /* 1 KB */
#endif

#if defined(__GNUC__)
#define TSL_ALIGN16 __attribute__((aligned(16)))
#else
#define TSL_ALIGN16
#endif

static tsl_proto_parser rx;
static uint8_t reply[TSL_PROTO_MAX_PAYLOAD];           /* payload of the reply being built */
static uint8_t cache[TSL_PROTO_MAX_WIRE];              /* the last reply, encoded */
static uint32_t cache_n;
static uint8_t tx[48];                                 /* stream frames and uncached errors */
static struct { uint16_t seq; uint32_t crc; uint8_t valid; } last;

static struct {
    uint8_t kind, pending;           /* pending: accepted, ACK sent, not run yet */
    uint16_t seq, n_ids, count, planned;
    float temperature, top_p;
    uint64_t seed, kv_hash;
    uint32_t prefill, total;
    int32_t ids[TSL_MAX_IDS];
} run;
static struct { int32_t token; uint32_t cycles; uint64_t hash; } items[TSL_PROTO_MAX_ITEMS];
static struct { uint8_t active; uint16_t step, next_op; } dbg;
static struct { uint8_t active, loaded; uint32_t total, arch, crc, received; } load;
static int32_t model_status;
static tsl_sampler smp;
static float probs[TSL_VOCAB];
static int32_t idx[TSL_VOCAB];
#if TSL_LOAD_BYTES > 0
static uint8_t load_buf[TSL_LOAD_BYTES] TSL_ALIGN16;
#else
static uint8_t *const load_buf = 0;
#endif

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

static uint32_t put_str(uint8_t *p, const char *s)
{
    const uint32_t n = (uint32_t)strlen(s) > 64u ? 64u : (uint32_t)strlen(s);
    p[0] = (uint8_t)n;
    memcpy(p + 1, s, n);
    return 1u + n;
}

static uint32_t on_identify(uint8_t *type)
{
    const uint8_t *w = tsl_model_weights();
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

/* GEN_START / VERIFY_START: u16 n_ids, u16 max_tokens, f32 temperature, f32 top_p, u64 seed,
 * i32 ids[n_ids]. Checks everything, then arms the run; it starts after the ACK is sent. */
static uint32_t on_run_start(uint8_t *type, const tsl_frame *f, uint8_t kind)
{
    const uint8_t *p = f->payload;
    if (f->len < TSL_RUN_HEAD) return fail(type, TSL_PROTO_E_LENGTH, f->type, TSL_RUN_HEAD);
    const uint32_t n = tsl_rd16(p), max_tokens = tsl_rd16(p + 2);
    const float t = rd_f32(p + 4), top_p = rd_f32(p + 8);
    if (f->len != TSL_RUN_HEAD + 4u * n) return fail(type, TSL_PROTO_E_LENGTH, f->type, TSL_RUN_HEAD + 4u * n);
    if (model_status != 0) return fail(type, TSL_PROTO_E_MODEL, f->type, (uint32_t)model_status);
    if (t != t || top_p != top_p) return fail(type, TSL_PROTO_E_RANGE, f->type, 0);   /* NaN */
    if (n < 1u || n > TSL_MAX_SEQ) return fail(type, TSL_PROTO_E_RANGE, f->type, TSL_MAX_SEQ);
    const uint32_t count = kind == TSL_RUN_GEN ? max_tokens : n;
    if (kind == TSL_RUN_VERIFY && max_tokens != 0) return fail(type, TSL_PROTO_E_RANGE, f->type, 0);
    if (count > TSL_PROTO_MAX_ITEMS) return fail(type, TSL_PROTO_E_RANGE, f->type, TSL_PROTO_MAX_ITEMS);
    if (kind == TSL_RUN_GEN && count > 0 && n + count - 1u > TSL_MAX_SEQ)   /* last position: n+count-2 */
        return fail(type, TSL_PROTO_E_RANGE, f->type, TSL_MAX_SEQ + 1u - n);
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t id = tsl_rd32le(p + TSL_RUN_HEAD + 4 * i);
        if (id >= (uint32_t)TSL_VOCAB) return fail(type, TSL_PROTO_E_RANGE, f->type, TSL_VOCAB);
        run.ids[i] = (int32_t)id;
    }
    run.kind = kind;
    run.pending = 1;
    run.seq = f->seq;
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

static uint32_t put_item(uint8_t *p, uint32_t i)
{
    tsl_wr16(p, i);
    tsl_wr32(p + 2, (uint32_t)items[i].token);
    tsl_wr32(p + 6, items[i].cycles);
    tsl_wr64(p + 10, items[i].hash);
    return 18;
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

/* The run armed by on_run_start(), streaming one ITEM per token or step, then RUN_DONE.
 * generate: prompt ids[0:n] at positions 0..n-1, item i = the token sampled after position
 *   n-1+i, fed back at position n+i; its cycles cover that forward and the sampling.
 * verify: step s runs ids[s] at position s; item s = its logits hash and sampled token. */
static void do_run(void)
{
    uint8_t p[20];
    const uint32_t t0 = TSL_NOW();
    run.pending = 0;
    tsl_model_reset();
    tsl_sampler_init(&smp, run.seed, run.temperature, run.top_p);
    const uint32_t n = run.n_ids, gen = run.kind == TSL_RUN_GEN;
    const uint32_t prefill = gen ? n - 1u : 0u;
    for (uint32_t pos = 0; pos < prefill && run.planned > 0; pos++) tsl_model_forward(run.ids[pos], (int32_t)pos);
    run.prefill = TSL_NOW() - t0;
    int32_t tok = run.ids[prefill];
    for (uint32_t i = 0; i < run.planned; i++) {
        const uint32_t pos = prefill + i;
        const uint32_t c0 = TSL_NOW();
        const float *lg = tsl_model_forward(gen ? tok : run.ids[pos], (int32_t)pos);
        const int32_t t = tsl_sample(&smp, lg, TSL_VOCAB, probs, idx);
        items[i].cycles = TSL_NOW() - c0;
        items[i].token = tok = t;
        items[i].hash = gen ? 0 : tsl_fnv1a64((const uint8_t *)lg, 4u * TSL_VOCAB);
        run.count = (uint16_t)(i + 1u);
        send_tx(TSL_MSG_ITEM, run.seq, p, put_item(p, i));
    }
    if (!gen) run.kv_hash = tsl_fnv1a64((const uint8_t *)tsl_model_kv(), TSL_KV_BYTES);
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
    tsl_model_reset();
    for (uint32_t pos = 0; pos < step; pos++) tsl_model_forward(run.ids[pos], (int32_t)pos);
    dbg.active = 1;
    dbg.step = (uint16_t)step;
    dbg.next_op = 0;
    if (f->payload[2]) {
        tsl_model_forward(run.ids[step], (int32_t)step);
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
        base = tsl_model_arena();
        size = TSL_ARENA_BYTES;
    } else if (space == 1) {
        base = (const uint8_t *)tsl_model_kv();
        size = TSL_KV_BYTES;
    } else if (space == 2) {
        base = tsl_model_weights();
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
        tsl_model_op(dbg.next_op++, run.ids[dbg.step], pos);
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
        model_status = tsl_model_init(0);
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
    const int32_t rc = tsl_model_init(load_buf);
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

#ifdef TSL_HAS_TOKENIZER
/* ---- the text console (screen, minicom, idf.py monitor, Arduino serial monitor) ----
 * A line typed at a frame boundary is a console line: its text is encoded on the device and
 * continued by the model, streaming, with the KV cache kept across lines until /reset or the
 * context is full. The binary protocol shares the port: the host sends a 0x00 before every frame
 * (an empty frame), and a first byte that is a control character (a COBS code) also starts one.
 * Any accepted binary request resets the model, so it ends the console's conversation. */
#define TSL_CON_LINE 200u
#ifndef TSL_CYCLES_HZ
#define TSL_CYCLES_HZ 0
#endif
static struct {
    uint8_t line[TSL_CON_LINE];
    uint32_t len, pos, max_tokens, n, n_prefill, prefill, gen;
    uint8_t shown, last_cr;
    int32_t pending;                 /* the last sampled token, not yet run (-1: none) */
    float temperature, top_p;
    uint64_t seed;
} con;

static void con_write(const uint8_t *p, uint32_t n) { tsl_uart_write(p, n); }
static void con_puts(const char *s) { con_write((const uint8_t *)s, (uint32_t)strlen(s)); }

/* v /= 10, -> v % 10, in 32-bit operations (some targets have no 64-bit division) */
static uint32_t con_div10(uint64_t *v)
{
    const uint32_t hi = (uint32_t)(*v >> 32), lo = (uint32_t)*v;
    uint32_t x = ((hi % 10u) << 16) | (lo >> 16);
    const uint32_t q1 = x / 10u;
    x = ((x % 10u) << 16) | (lo & 0xFFFFu);
    *v = ((uint64_t)(hi / 10u) << 32) | ((uint64_t)q1 << 16) | (x / 10u);
    return x % 10u;
}

static void con_putu(uint64_t v)
{
    char b[21];
    int i = 20;
    b[20] = 0;
    do { b[--i] = (char)('0' + con_div10(&v)); } while (v);
    con_puts(b + i);
}

static void con_putf(float f)        /* two decimals */
{
    if (f < 0) { con_puts("-"); f = -f; }
    const uint32_t c = f < 2.0e7f ? (uint32_t)(int32_t)(f * 100.0f + 0.5f) : 2000000000u;  /* int32 conversions only */
    con_putu(c / 100u);
    con_puts(c % 100u < 10u ? ".0" : ".");
    con_putu(c % 100u);
}

/* Token bytes to the terminal, '\n' as "\r\n". */
static void con_text(const uint8_t *p, int32_t n)
{
    int32_t s = 0;
    for (int32_t i = 0; i < n; i++)
        if (p[i] == '\n') {
            con_write(p + s, (uint32_t)(i - s));
            con_puts("\r\n");
            s = i + 1;
        }
    con_write(p + s, (uint32_t)(n - s));
}

static void con_defaults(void)
{
    con.temperature = 0.0f;
    con.top_p = 1.0f;
    con.seed = 0;
    con.max_tokens = 64;
}

static void con_banner(void)
{
    const uint8_t *w = tsl_model_weights();
    con_puts("\r\ntinyslm " TSL_FW_VERSION " on " TSL_BOARD_NAME "\r\nmodel ");
    static const char hex[] = "0123456789abcdef";
    char h[18];
    const uint32_t v[2] = {TSL_ARCH_HASH, tsl_rd32le(w + 16)};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 8; i++) h[9 * k + i] = hex[(v[k] >> (28 - 4 * i)) & 15u];
    h[8] = '-';
    h[17] = 0;
    con_puts(h);
    con_puts(", vocab ");
    con_putu(TSL_VOCAB);
    con_puts(", context ");
    con_putu(TSL_MAX_SEQ);
    con_puts(" tokens\r\nmemory: weights ");
    con_putu(weights_total(w));
    con_puts(" B, arena ");
    con_putu(TSL_ARENA_BYTES);
    con_puts(" B, KV cache ");
    con_putu(TSL_KV_BYTES);
    con_puts(" B\r\ntype text and Enter; /reset /temp T /topp P /seed S /tokens N /stats /help\r\n");
    if (model_status != 0) {
        con_puts("model not ready: tsl_model_init returned ");
        con_putu((uint32_t)-model_status);
        con_puts(" (negated)\r\n");
    }
}

static int con_same(const char *a, const char *b)     /* strcmp() == 0; some targets' libc lacks it */
{
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

static void con_stats(void)
{
    if (!con.n) { con_puts("no answer yet\r\n"); return; }
    con_puts("last answer: ");
    con_putu(con.n);
    con_puts(" tokens, ");
    con_putu(con.gen / con.n);
    con_puts(" ");
    con_puts(TSL_CYCLES_UNIT);                   /* a string literal, or a function's string (STM32) */
    con_puts("/token; prompt ");
    con_putu(con.n_prefill);
    con_puts(" tokens in ");
    con_putu(con.prefill);
    con_puts(" ");
    con_puts(TSL_CYCLES_UNIT);
    const uint32_t hz = con_same(TSL_CYCLES_UNIT, "ns") ? 1000000000u : (uint32_t)TSL_CYCLES_HZ;
    if (hz && con.gen) {
        con_puts("; ");
        /* tokens/s = n * hz / gen, in float from int32 values (no 64-bit or unsigned conversions) */
        con_putf((float)(int32_t)(hz / 1000u) * 1000.0f * (float)(int32_t)con.n /
                 ((float)(int32_t)(con.gen >> 1) * 2.0f));
        con_puts(" tokens/s");
        if (!con_same(TSL_CYCLES_UNIT, "ns")) {
            con_puts(" at ");
            con_putu(hz / 1000000u);
            con_puts(" MHz");
        }
    }
    con_puts("\r\n");
#ifdef TSL_CYCLES_EMULATED
    con_puts("(an emulator: the counter runs on qemu's virtual clock, one tick per instruction with "
             "-icount, not at the chip's speed)\r\n");
#endif
}

static uint32_t con_number(const uint8_t *p, uint32_t n, uint64_t *v, float *f)
{
    uint64_t a = 0, frac = 0, scale = 1;
    uint32_t i = 0, digits = 0, dot = 0;
    while (i < n && p[i] == ' ') i++;
    for (; i < n && p[i] != ' '; i++) {
        if (p[i] == '.' && !dot) { dot = 1; continue; }
        if (p[i] < '0' || p[i] > '9' || a > 1000000000000000000ull) return 0;
        if (dot) { if (scale < 1000000u) { frac = frac * 10u + (p[i] - '0'); scale *= 10u; } }
        else a = a * 10u + (p[i] - '0');
        digits++;
    }
    if (!digits) return 0;
    *v = a;
    if (a > 1000000u && dot) return 0;
    *f = (float)(uint32_t)(a > 1000000u ? 1000000u : a) + (float)(uint32_t)frac / (float)(uint32_t)scale;
    return dot ? 2u : 1u;
}

static int con_is(const uint8_t *p, uint32_t n, const char *cmd, uint32_t *arg)
{
    const uint32_t k = (uint32_t)strlen(cmd);
    if (n < k || memcmp(p, cmd, k) != 0 || (n > k && p[k] != ' ')) return 0;
    *arg = k;
    return 1;
}

static void con_reset(void)
{
    con.pos = 0;
    con.pending = -1;
}

static void con_command(const uint8_t *p, uint32_t n)
{
    uint32_t k;
    uint64_t v = 0;
    float f = 0;
    con_puts("\r\n");
    if (con_is(p, n, "/reset", &k)) {
        con_reset();
        con_puts("context cleared\r\n");
    } else if (con_is(p, n, "/temp", &k) && con_number(p + k, n - k, &v, &f) && f <= 100.0f) {
        con.temperature = f;
        con_puts("temperature ");
        con_putf(f);
        con_puts(f == 0.0f ? " (greedy)\r\n" : "\r\n");
    } else if (con_is(p, n, "/topp", &k) && con_number(p + k, n - k, &v, &f) && f <= 1.0f) {
        con.top_p = f;
        con_puts("top-p ");
        con_putf(f);
        con_puts("\r\n");
    } else if (con_is(p, n, "/seed", &k) && con_number(p + k, n - k, &v, &f) == 1) {
        con.seed = v;
        con_puts("seed ");
        con_putu(v);
        con_puts("\r\n");
    } else if (con_is(p, n, "/tokens", &k) && con_number(p + k, n - k, &v, &f) == 1 && v >= 1 && v <= TSL_MAX_SEQ) {
        con.max_tokens = (uint32_t)v;
        con_puts("at most ");
        con_putu(v);
        con_puts(" tokens an answer\r\n");
    } else if (con_is(p, n, "/stats", &k)) {
        con_stats();
    } else if (con_is(p, n, "/help", &k)) {
        con_banner();
    } else {
        con_puts("commands: /reset, /temp T (0: greedy), /topp P (0..1), /seed S, /tokens N (1.." );
        con_putu(TSL_MAX_SEQ);
        con_puts("), /stats, /help\r\n");
    }
}

/* The line's text continues the conversation: at position 0 after BOS, else after the last
 * sampled token; the answer streams until EOS, /tokens or the end of the context. */
static void con_generate(const uint8_t *p, uint32_t len)
{
    if (model_status != 0) { con_puts("\r\nmodel not ready\r\n"); return; }
    int32_t *ids = enc_ids;
    const int32_t first = con.pos == 0 ? (int32_t)TSL_TOK_BOS : con.pending;
    const uint32_t lead = first >= 0 ? 1u : 0u;
    const int32_t n = tsl_tokenizer_encode(&tsl_tok, p, (int32_t)len, ids + lead,
                                           (int32_t)(sizeof enc_ids / 4) - 1, enc_work, (int32_t)(sizeof enc_work / 4));
    if (n < 0) {
        con_puts(n == TSL_TOK_ERR_ADDED_TOKEN ? "\r\n[the text holds a special token's name]\r\n"
                                              : "\r\n[the tokenizer cannot encode this text]\r\n");
        return;
    }
    ids[0] = first;
    const uint32_t total = lead + (uint32_t)n;
    if (total == 0) return;
    if (con.pos + total > TSL_MAX_SEQ) {
        con_puts("\r\n[context full: ");
        con_putu(TSL_MAX_SEQ);
        con_puts(" tokens; /reset to start again]\r\n");
        return;
    }
    tsl_sampler_init(&smp, con.seed, con.temperature, con.top_p);
    const uint32_t t0 = TSL_NOW();
    for (uint32_t k = 0; k + 1u < total; k++) tsl_model_forward(ids[k], (int32_t)con.pos++);
    con.prefill = TSL_NOW() - t0;
    con.n_prefill = total - 1u;
    con.n = con.gen = 0;
    int32_t tok = ids[total - 1u];
    while (con.n < con.max_tokens && con.pos < TSL_MAX_SEQ) {
        const uint32_t c0 = TSL_NOW();
        const float *lg = tsl_model_forward(tok, (int32_t)con.pos++);
        tok = tsl_sample(&smp, lg, TSL_VOCAB, probs, idx);
        con.gen += TSL_NOW() - c0;
        con.n++;
        const uint8_t *b;
        const int32_t k = tsl_token_decode(&tsl_tok, tok, &b);
        if (k > 0) con_text(b, k);
        if (tok == (int32_t)TSL_TOK_EOS) break;
    }
    con.pending = tok;
    con_puts("\r\n");
    if (con.pos >= TSL_MAX_SEQ) con_puts("[context full; /reset to start again]\r\n");
}

/* One console byte: echo, edit, and on Enter run the line. */
static void con_key(uint8_t c)
{
    if (!con.shown) {
        con.shown = 1;
        con_banner();
        if (c == '\r' || c == '\n') { con.last_cr = c == '\r'; con_puts("> "); return; }
        con_puts("> ");
    }
    const uint8_t cr = c == '\r';
    if (c == '\n' && con.last_cr) { con.last_cr = 0; return; }
    con.last_cr = cr;
    if (c == '\r' || c == '\n') {
        if (con.len && con.line[0] == '/') con_command(con.line, con.len);
        else if (con.len) con_generate(con.line, con.len);
        else con_puts("\r\n");
        con.len = 0;
        con_puts("> ");
    } else if (c == 8 || c == 127) {
        if (con.len) {
            do con.len--; while (con.len && (con.line[con.len] & 0xC0u) == 0x80u);   /* a whole UTF-8 character */
            con_puts("\b \b");
        }
    } else if (c >= 0x20 && con.len < TSL_CON_LINE) {
        con.line[con.len++] = c;
        con_write(&c, 1);
    }
}
#endif

static uint32_t dispatch(uint8_t *type, const tsl_frame *f)
{
    switch (f->type) {
    case TSL_MSG_IDENTIFY: return f->len ? fail(type, TSL_PROTO_E_LENGTH, f->type, 0) : on_identify(type);
    case TSL_MSG_GEN_START: return on_run_start(type, f, TSL_RUN_GEN);
    case TSL_MSG_VERIFY_START: return on_run_start(type, f, TSL_RUN_VERIFY);
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
    con_reset();                      /* binary requests may reset or replace the model */
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
    model_status = tsl_model_init(0);
#ifdef TSL_HAS_TOKENIZER
    memset(&con, 0, sizeof con);
    con_defaults();
    con_reset();
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
            con_key((uint8_t)c);
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
