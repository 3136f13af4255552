/* semihost_libc.c -- the little libc the kernel tests and benchmarks need on AArch64 bare metal (no
 * newlib for aarch64 here): ../tsl_mini_libc.h over Arm semihosting (HLT #0xF000), and printf
 * through <stdarg.h>. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

static uint64_t semihost(uint64_t op, const void *arg)
{
    register uint64_t x0 __asm("x0") = op;
    register const void *x1 __asm("x1") = arg;
    __asm volatile("hlt #0xf000" : "+r"(x0) : "r"(x1) : "memory");
    return x0;
}

static void tsl_mini_write(const char *s, unsigned n)   /* n <= 256 (the shared buffer) */
{
    char z[257];
    for (unsigned i = 0; i < n; i++) z[i] = s[i];
    z[n] = 0;
    semihost(0x04, z);      /* SYS_WRITE0 to the console */
}

static void tsl_mini_stop(int status)
{
    const uint64_t blk[2] = {0x20026, (uint64_t)(int64_t)status};   /* ADP_Stopped_ApplicationExit */
    semihost(0x18, blk);
}

#include "../tsl_mini_libc.h"

struct va { va_list ap; };

static uint64_t fetch(void *ctx, unsigned bits)
{
    struct va *v = ctx;
    return bits == 64 ? va_arg(v->ap, uint64_t) : va_arg(v->ap, unsigned);
}

int printf(const char *fmt, ...)
{
    struct va v;
    va_start(v.ap, fmt);
    const int r = tsl_mini_format(fmt, fetch, &v);
    va_end(v.ap);
    return r;
}
