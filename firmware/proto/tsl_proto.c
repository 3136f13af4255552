/* tsl_proto.c -- see tsl_proto.h. */
#include "tsl_proto.h"

/* CRC-32 (reflected, polynomial 0xEDB88320, as zlib), 4 bits per step: 64 bytes of table. */
static const uint32_t tsl_crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t tsl_crc32(uint32_t crc, const uint8_t *p, uint32_t n)
{
    crc = ~crc;
    for (uint32_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ tsl_crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ tsl_crc_nibble[crc & 15u];
    }
    return ~crc;
}

uint64_t tsl_fnv1a64(const uint8_t *p, uint32_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void tsl_proto_init(tsl_proto_parser *p)
{
    p->n = 0;
    p->code = 0;
    p->left = 0;
}

static void tsl_proto_put(tsl_proto_parser *p, uint8_t b)
{
    if (p->n < TSL_PROTO_MAX_RAW) p->buf[p->n] = b;
    if (p->n <= TSL_PROTO_MAX_RAW) p->n++;   /* saturates at MAX_RAW + 1: "too long" */
}

static int32_t tsl_proto_end(tsl_proto_parser *p)
{
    const uint32_t n = p->n;
    const uint8_t started = p->code != 0, left = p->left;
    tsl_proto_init(p);
    if (!started) return TSL_PROTO_NONE;
    if (n > TSL_PROTO_MAX_RAW) return -TSL_PROTO_E_TOO_LONG;
    if (left != 0 || n < TSL_PROTO_HEADER + 4u) return -TSL_PROTO_E_FRAME;
    const uint32_t crc = tsl_rd32le(p->buf + n - 4u);
    if (tsl_crc32(0, p->buf, n - 4u) != crc) return -TSL_PROTO_E_CRC;
    if (tsl_rd16(p->buf + 4) != n - TSL_PROTO_HEADER - 4u) return -TSL_PROTO_E_FRAME;
    p->frame.type = p->buf[0];
    p->frame.flags = p->buf[1];
    p->frame.seq = (uint16_t)tsl_rd16(p->buf + 2);
    p->frame.len = (uint16_t)tsl_rd16(p->buf + 4);
    p->frame.crc = crc;
    p->frame.payload = p->buf + TSL_PROTO_HEADER;
    return TSL_PROTO_FRAME;
}

int32_t tsl_proto_feed(tsl_proto_parser *p, uint8_t byte)
{
    if (byte == 0) return tsl_proto_end(p);
    if (p->left == 0) {                       /* a code byte opens the next block */
        if (p->code != 0 && p->code != 0xFF) tsl_proto_put(p, 0);
        p->code = byte;
        p->left = (uint8_t)(byte - 1u);
    } else {
        tsl_proto_put(p, byte);
        p->left--;
    }
    return TSL_PROTO_NONE;
}

uint32_t tsl_proto_encode(uint8_t *out, uint32_t cap, uint8_t type, uint8_t flags, uint16_t seq,
                          const uint8_t *payload, uint32_t len)
{
    if (len > TSL_PROTO_MAX_PAYLOAD) return 0;
    uint8_t head[TSL_PROTO_HEADER], tail[4];
    head[0] = type;
    head[1] = flags;
    tsl_wr16(head + 2, seq);
    tsl_wr16(head + 4, len);
    tsl_wr32(tail, tsl_crc32(tsl_crc32(0, head, sizeof head), payload, len));
    const uint32_t raw = TSL_PROTO_HEADER + len + 4u;
    if (cap < raw + raw / 254u + 2u) return 0;   /* worst case, so the loop needs no checks */
    uint32_t o = 1, code_at = 0;
    uint8_t code = 1;
    for (uint32_t i = 0; i < raw; i++) {
        const uint8_t b = i < TSL_PROTO_HEADER ? head[i] : i < TSL_PROTO_HEADER + len
                        ? payload[i - TSL_PROTO_HEADER] : tail[i - TSL_PROTO_HEADER - len];
        if (b != 0) {
            out[o++] = b;
            code++;
        }
        if (b == 0 || code == 0xFF) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        }
    }
    out[code_at] = code;
    out[o++] = 0;
    return o;
}
