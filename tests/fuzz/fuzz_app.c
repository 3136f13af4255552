/* fuzz_app.c -- fuzz target for the whole device side: tsl_serial_app.c + tsl_proto.c, linked with
 * the fake model (tests/fuzz/fake_model, a TEST DOUBLE) and the real sampler.
 * The input is a script, so that most of it reaches the handlers through valid CRCs:
 *   repeated { u8 op; u8 n; ... }  op & 1: n raw bytes go on the wire as they are
 *                                  else:   a frame: u8 type, u8 flags, u16 seq, payload[n * 4 + (op >> 1) % 4]
 * Invariant checked besides the sanitizers: everything the device writes parses as valid frames.
 *   libFuzzer: -DTSL_LIBFUZZER; otherwise a driver `fuzz_app FILE...` (each file one input). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tsl_proto.h"

int tsl_serial_main(void);

static uint8_t wire[1 << 16];
static uint32_t wire_n, wire_at;
static tsl_proto_parser out_parser;

int tsl_uart_getc(void) { return wire_at < wire_n ? wire[wire_at++] : -1; }
uint32_t tsl_cycles(void) { return wire_at; }

void tsl_uart_write(const uint8_t *p, uint32_t n)
{
    if (n == 0) abort();               /* the app never sends an empty write: encode failed */
    for (uint32_t i = 0; i < n; i++) {
        const int32_t r = tsl_proto_feed(&out_parser, p[i]);
        if (r < 0 || (r == TSL_PROTO_NONE && i + 1 == n)) {
            fprintf(stderr, "fuzz_app: the device sent a malformed frame (%d)\n", (int)r);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t size)
{
    size_t i = 0;
    wire_n = wire_at = 0;
    while (i + 2 <= size) {
        const uint8_t op = d[i], n = d[i + 1];
        i += 2;
        if (op & 1) {
            for (uint32_t k = 0; k < n && i < size && wire_n < sizeof wire; k++) wire[wire_n++] = d[i++];
        } else {
            if (i + 4 > size) break;
            const uint32_t len = (uint32_t)n * 4u + (op >> 1) % 4u;
            const uint32_t avail = (uint32_t)(size - i - 4u) < len ? (uint32_t)(size - i - 4u) : len;
            if (sizeof wire - wire_n < TSL_PROTO_MAX_WIRE) break;
            wire_n += tsl_proto_encode(wire + wire_n, TSL_PROTO_MAX_WIRE, d[i], d[i + 1],
                                       (uint16_t)(d[i + 2] | (d[i + 3] << 8)), d + i + 4, avail);
            i += 4u + avail;
        }
    }
    tsl_proto_init(&out_parser);
    tsl_serial_main();
    return 0;
}

#ifndef TSL_LIBFUZZER
int main(int argc, char **argv)
{
    for (int a = 1; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        if (!f) return 2;
        static uint8_t d[1 << 17];
        const size_t n = fread(d, 1, sizeof d, f);
        fclose(f);
        LLVMFuzzerTestOneInput(d, n);
    }
    printf("ok %d inputs\n", argc - 1);
    return 0;
}
#endif
