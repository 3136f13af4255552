/* fuzz_parser.c -- fuzz target for the frame parser and encoder of firmware/proto/tsl_proto.c.
 *   libFuzzer:  clang -fsanitize=fuzzer,address,undefined -DTSL_LIBFUZZER ...
 *   otherwise:  a driver, `fuzz_parser FILE...`, each file one input (for gcc's sanitizers).
 * Invariants checked (abort on failure): every input byte is consumed without touching memory
 * outside the parser; a frame it returns re-encodes to bytes that parse back to the same frame;
 * the encoder never writes past `cap` (exact-size heap buffers) and refuses what does not fit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tsl_proto.h"

static tsl_proto_parser p, q;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_parser: %s\n", what);
        abort();
    }
}

static void reencode(const tsl_frame *f)
{
    const uint32_t need = TSL_PROTO_HEADER + f->len + 4u;
    const uint32_t cap = need + need / 254u + 2u;
    uint8_t *small = malloc(cap - 1u), *out = malloc(cap);
    check(tsl_proto_encode(small, cap - 1u, f->type, f->flags, f->seq, f->payload, f->len) == 0, "encode past cap");
    const uint32_t n = tsl_proto_encode(out, cap, f->type, f->flags, f->seq, f->payload, f->len);
    check(n > 0 && n <= cap && n <= TSL_PROTO_MAX_WIRE, "encode size");
    tsl_proto_init(&q);
    for (uint32_t i = 0; i + 1 < n; i++) check(out[i] != 0 && tsl_proto_feed(&q, out[i]) == TSL_PROTO_NONE, "zero inside");
    check(tsl_proto_feed(&q, out[n - 1]) == TSL_PROTO_FRAME, "re-parse");
    check(q.frame.type == f->type && q.frame.flags == f->flags && q.frame.seq == f->seq && q.frame.len == f->len &&
          q.frame.crc == f->crc && memcmp(q.frame.payload, f->payload, f->len) == 0, "round trip");
    free(small);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tsl_proto_init(&p);
    for (size_t i = 0; i < size; i++) {
        const int32_t r = tsl_proto_feed(&p, data[i]);
        check(r >= -TSL_PROTO_E_TOO_LONG && r <= TSL_PROTO_FRAME, "result");
        if (r == TSL_PROTO_FRAME) {
            check(p.frame.len <= TSL_PROTO_MAX_PAYLOAD, "len");
            reencode(&p.frame);
        }
    }
    /* the encoder on arbitrary payloads, with the input as payload */
    const uint32_t len = (uint32_t)(size > TSL_PROTO_MAX_PAYLOAD + 8u ? TSL_PROTO_MAX_PAYLOAD + 8u : size);
    uint8_t *out = malloc(TSL_PROTO_MAX_WIRE);
    const uint32_t n = tsl_proto_encode(out, TSL_PROTO_MAX_WIRE, size ? data[0] : 0, 0, (uint16_t)size, data, len);
    check(len > TSL_PROTO_MAX_PAYLOAD ? n == 0 : n > 0, "encode refusal");
    free(out);
    return 0;
}

#ifndef TSL_LIBFUZZER
int main(int argc, char **argv)
{
    for (int a = 1; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        check(f != 0, "open");
        fseek(f, 0, SEEK_END);
        const long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *d = malloc(n > 0 ? (size_t)n : 1u);
        check(fread(d, 1, (size_t)n, f) == (size_t)n, "read");
        fclose(f);
        LLVMFuzzerTestOneInput(d, (size_t)n);
        free(d);
    }
    printf("ok %d inputs\n", argc - 1);
    return 0;
}
#endif
