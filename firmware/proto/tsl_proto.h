/* tsl_proto.h -- framing of the host <-> device serial protocol (docs/protocol.md).
 * Mirrored byte for byte by tinyslm/protocol.py; a change here is a change there.
 *
 * A raw frame is   u8 type | u8 flags | u16 seq | u16 len | payload[len] | u32 crc32
 * (little endian; crc32 = zlib's, over header + payload; len <= TSL_PROTO_MAX_PAYLOAD).
 * On the wire it is COBS-encoded and followed by one 0x00 delimiter.
 *
 * The parser takes one byte at a time into fixed buffers: no input, however long or corrupt,
 * writes past them. At each delimiter it reports exactly one of: nothing (empty frame), a
 * validated frame, or one error, checked in this order:
 *   TSL_PROTO_E_TOO_LONG  more than TSL_PROTO_MAX_RAW decoded bytes
 *   TSL_PROTO_E_FRAME     truncated COBS block, fewer than 10 bytes, or len != decoded length - 10
 *                         (the len check comes after the CRC check)
 *   TSL_PROTO_E_CRC       CRC mismatch */
#ifndef TSL_PROTO_H
#define TSL_PROTO_H
#include <stdint.h>

#define TSL_PROTO_VERSION 3u       /* 3: GEN_CONTINUE, E_CONTEXT, the token's bytes in ITEM */
#define TSL_PROTO_MAX_PAYLOAD 1024u
#define TSL_PROTO_HEADER 6u
#define TSL_PROTO_MAX_RAW (TSL_PROTO_HEADER + TSL_PROTO_MAX_PAYLOAD + 4u)            /* 1034 */
/* COBS adds one code byte per started 254-byte run, plus the delimiter. */
#define TSL_PROTO_MAX_WIRE (TSL_PROTO_MAX_RAW + TSL_PROTO_MAX_RAW / 254u + 2u)        /* 1040 */

#define TSL_PROTO_NONE 0
#define TSL_PROTO_FRAME 1

/* Message types: requests 0x01..0x0E (host -> device), replies and stream 0x81..0x91, 0xFF.
 * Payload layouts: docs/protocol.md. */
#define TSL_MSG_IDENTIFY 0x01u     /* -> IDENTITY */
#define TSL_MSG_GEN_START 0x02u    /* -> RUN_ACK, then ITEM x count, RUN_DONE (streamed) */
#define TSL_MSG_VERIFY_START 0x03u /* -> RUN_ACK, then ITEM x count, RUN_DONE (streamed) */
#define TSL_MSG_RUN_FETCH 0x04u    /* -> ITEM */
#define TSL_MSG_RUN_STATUS 0x05u   /* -> RUN_DONE */
#define TSL_MSG_DEBUG_BEGIN 0x06u  /* -> DEBUG_ACK */
#define TSL_MSG_DEBUG_OPS 0x07u    /* -> OP_HASHES */
#define TSL_MSG_READ 0x08u         /* -> DATA */
#define TSL_MSG_LOAD_BEGIN 0x09u   /* -> LOAD_ACK */
#define TSL_MSG_LOAD_DATA 0x0Au    /* -> LOAD_ACK */
#define TSL_MSG_LOAD_COMMIT 0x0Bu  /* -> LOAD_ACK */
#define TSL_MSG_ENCODE 0x0Cu       /* -> IDS */
#define TSL_MSG_DECODE 0x0Du       /* -> TEXT */
#define TSL_MSG_GEN_CONTINUE 0x0Eu /* -> as GEN_START, the KV cache of positions < start kept */
#define TSL_MSG_IDENTITY 0x81u
#define TSL_MSG_RUN_ACK 0x82u
#define TSL_MSG_DEBUG_ACK 0x86u
#define TSL_MSG_OP_HASHES 0x87u
#define TSL_MSG_DATA 0x88u
#define TSL_MSG_LOAD_ACK 0x89u
#define TSL_MSG_IDS 0x8Cu
#define TSL_MSG_TEXT 0x8Du
#define TSL_MSG_ITEM 0x90u
#define TSL_MSG_RUN_DONE 0x91u
#define TSL_MSG_ERROR 0xFFu

#define TSL_FLAG_SYNC 0x01u        /* request: take this seq as the start of a new sequence */

/* ERROR codes. 1..3 are link errors (the frame did not arrive intact: resend it); tsl_proto_feed()
 * returns them negated. */
#define TSL_PROTO_E_CRC 1
#define TSL_PROTO_E_FRAME 2
#define TSL_PROTO_E_TOO_LONG 3
#define TSL_PROTO_E_TYPE 4          /* unknown request type */
#define TSL_PROTO_E_LENGTH 5        /* payload length wrong for the type; detail: expected */
#define TSL_PROTO_E_SEQ 6           /* seq neither a resend nor the next one; detail: expected */
#define TSL_PROTO_E_STATE 7         /* not valid now (no run, no debug step, no load begun) */
#define TSL_PROTO_E_RANGE 8         /* a value out of range; detail: the bound */
#define TSL_PROTO_E_TOO_BIG 9       /* weights larger than the load buffer; detail: its size */
#define TSL_PROTO_E_ARCH 10         /* weights for another architecture; detail: ours */
#define TSL_PROTO_E_WEIGHTS_CRC 11  /* weights CRC differs; detail: the CRC computed */
#define TSL_PROTO_E_INCOMPLETE 12   /* commit before all bytes arrived; detail: bytes received */
#define TSL_PROTO_E_MODEL 13        /* tsl_init() refused; detail: its code (-4: header size) */
#define TSL_PROTO_E_TOKENIZER 14    /* the encoder refused the text; detail: its TSL_TOK_ERR_* code */
#define TSL_PROTO_E_CONTEXT 15      /* GEN_CONTINUE: the KV cache does not hold that prefix; detail: positions it holds */

typedef struct {
    uint8_t type, flags;
    uint16_t seq, len;
    uint32_t crc;              /* the frame's own CRC: with seq, what tells a retransmission */
    const uint8_t *payload;    /* points into the parser's buffer until the next feed */
} tsl_frame;

typedef struct {
    uint8_t buf[TSL_PROTO_MAX_RAW];
    uint32_t n;                /* decoded bytes, may exceed sizeof buf: then only counted */
    uint8_t code;              /* code byte of the current COBS block; 0 before the first */
    uint8_t left;              /* data bytes still due in the current block */
    tsl_frame frame;           /* valid after tsl_proto_feed() returned TSL_PROTO_FRAME */
} tsl_proto_parser;

void tsl_proto_init(tsl_proto_parser *p);
/* TSL_PROTO_NONE, TSL_PROTO_FRAME (p->frame is set) or -TSL_PROTO_E_*. */
int32_t tsl_proto_feed(tsl_proto_parser *p, uint8_t byte);

/* Encodes one frame, delimiter included, into out[cap]. Returns its length, or 0 when
 * len > TSL_PROTO_MAX_PAYLOAD or it does not fit in cap (cap >= TSL_PROTO_MAX_WIRE always fits). */
uint32_t tsl_proto_encode(uint8_t *out, uint32_t cap, uint8_t type, uint8_t flags, uint16_t seq,
                          const uint8_t *payload, uint32_t len);

uint32_t tsl_crc32(uint32_t crc, const uint8_t *p, uint32_t n);   /* zlib.crc32(p, crc) */
uint64_t tsl_fnv1a64(const uint8_t *p, uint32_t n);               /* FNV-1a 64 of p[0:n] */

static inline uint32_t tsl_rd16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
static inline uint32_t tsl_rd32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline void tsl_wr16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void tsl_wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void tsl_wr64(uint8_t *p, uint64_t v)
{
    tsl_wr32(p, (uint32_t)v);
    tsl_wr32(p + 4, (uint32_t)(v >> 32));
}

#endif
