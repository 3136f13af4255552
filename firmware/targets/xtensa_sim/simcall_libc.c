/* simcall_libc.c -- the little libc the kernel tests, the verify app and the benchmarks need on the
 * Xtensa sim (no Xtensa C library here): ../tsl_mini_libc.h over qemu's simcalls, printf reading the
 * windowed ABI's argument words, stdin/stdout as FILEs (fgetc, fwrite: the serial protocol's byte
 * pipe), getenv (no environment), __divsf3 (float division: the ESP32's FPU has no divide; LLVM calls this) and __muldi3
 * (64-bit products, called where the build leaves out MUL32_HIGH: qemu's de233_fpu core lacks it).
 * Output and exit through qemu's Xtensa simcall semihosting (SIMCALL, a2 = call, a3.. = arguments). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYS_EXIT 1
#define SYS_READ 3
#define SYS_WRITE 4

static int simcall(int nr, int a, int b, int c)
{
    register int a2 __asm("a2") = nr;
    register int a3 __asm("a3") = a;
    register int a4 __asm("a4") = b;
    register int a5 __asm("a5") = c;
    __asm volatile(".byte 0x00, 0x51, 0x00" : "+r"(a2), "+r"(a3) : "r"(a4), "r"(a5) : "memory");  /* simcall */
    return a2;
}

static void tsl_mini_write(const char *s, unsigned n) { simcall(SYS_WRITE, 1, (int)(uintptr_t)s, (int)n); }
static void tsl_mini_stop(int status) { simcall(SYS_EXIT, status, 0, 0); }

#include "../tsl_mini_libc.h"

struct tsl_file { int fd; };
static struct tsl_file files[2] = {{0}, {1}};
FILE *const stdin = &files[0], *const stdout = &files[1];

FILE *fopen(const char *path, const char *mode) { (void)path; (void)mode; return NULL; }
int setvbuf(FILE *f, char *buf, int mode, size_t size) { (void)f; (void)buf; (void)mode; (void)size; return 0; }
char *getenv(const char *name) { (void)name; return NULL; }

int fflush(FILE *f)
{
    (void)f;
    tsl_flush();
    return 0;
}

int fgetc(FILE *f)
{
    tsl_flush();
    unsigned char c;
    return simcall(SYS_READ, f->fd, (int)(uintptr_t)&c, 1) == 1 ? c : EOF;
}

size_t fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    tsl_flush();
    const char *b = p;
    size_t left = size * n;
    while (left) {
        const int w = simcall(SYS_WRITE, f->fd, (int)(uintptr_t)b, (int)left);
        if (w <= 0) return (size * n - left) / size;
        b += w;
        left -= (size_t)w;
    }
    return n;
}

/* printf's variadic arguments are read straight from the windowed ABI, not through <stdarg.h>: LLVM 22's
 * Xtensa va_start points its register save area one word too far (the first variadic argument in a
 * register is skipped, and those on the stack are read from the wrong offset). The entry stub stores
 * a2-a7 (fmt and the first five argument words) in a row and passes that and the caller's stack
 * arguments (at the caller's sp, our sp + frame size; the frame's top 32 bytes are the window spill
 * areas of our caller's caller and of our own a4-a7) to printf_words (through a literal: GNU ld's
 * lx106 configuration cannot relocate a CALL8). A 64-bit argument takes an
 * even-numbered pair of words (a2/a3, a4/a5, a6/a7; 8-byte aligned on the stack). */
__asm__(
    "    .section .literal.printf, \"ax\"\n"
    "    .balign 4\n"
    ".Lprintf_words: .long printf_words\n"
    "    .section .text.printf, \"ax\"\n"
    "    .global printf\n"
    "    .type printf, @function\n"
    "    .balign 4\n"
    "printf:\n"
    "    entry a1, 64\n"
    "    s32i a2, a1, 0\n"
    "    s32i a3, a1, 4\n"
    "    s32i a4, a1, 8\n"
    "    s32i a5, a1, 12\n"
    "    s32i a6, a1, 16\n"
    "    s32i a7, a1, 20\n"
    "    mov a10, a1\n"
    "    addi a11, a1, 64\n"
    "    l32r a8, .Lprintf_words\n"
    "    callx8 a8\n"
    "    mov a2, a10\n"
    "    retw\n"
    "    .size printf, . - printf\n");

struct words {
    const uint32_t *reg, *stk;      /* a2..a7 as stored, the caller's stack arguments */
    unsigned i;                     /* next word: 0..5 in reg, 6.. on the stack */
};

static uint32_t next32(struct words *w)
{
    const unsigned i = w->i++;
    return i < 6 ? w->reg[i] : w->stk[i - 6];
}

static uint64_t next64(struct words *w)
{
    w->i += w->i & 1u;
    const uint32_t lo = next32(w);
    return (uint64_t)next32(w) << 32 | lo;
}

static uint64_t fetch(void *ctx, unsigned bits)     /* ILP32: int, long and size_t are one word, long long two */
{
    return bits == 64 ? next64(ctx) : next32(ctx);
}

__attribute__((used)) int printf_words(const uint32_t *reg, const uint32_t *stk)
{
    struct words w = {reg, stk, 1};
    return tsl_mini_format((const char *)(uintptr_t)reg[0], fetch, &w);
}

/* IEEE 754 binary32 division, round to nearest even, subnormals in and out: what the ESP32's
 * toolchains compute for a / b (libgcc's __divsf3, or their DIV0.S/DIVN.S sequence). */
float __divsf3(float a, float b)
{
    uint32_t ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    const uint32_t sign = (ua ^ ub) & 0x80000000u;
    int ea = (int)(ua >> 23 & 0xff), eb = (int)(ub >> 23 & 0xff);
    uint32_t ma = ua & 0x7fffffu, mb = ub & 0x7fffffu, r;
    if ((ea == 255 && ma) || (eb == 255 && mb)) {
        r = (ea == 255 && ma ? ua : ub) | 0x400000u;                 /* NaN in: that NaN, quieted */
    } else if (ea == 255) {
        r = eb == 255 ? 0x7fc00000u : sign | 0x7f800000u;            /* inf / inf, inf / x */
    } else if (eb == 255) {
        r = sign;                                                    /* x / inf */
    } else if (!ea && !ma) {
        r = !eb && !mb ? 0x7fc00000u : sign;                         /* 0 / 0, 0 / x */
    } else if (!eb && !mb) {
        r = sign | 0x7f800000u;                                      /* x / 0 */
    } else {
        /* significands into [2^23, 2^24), subnormals normalized with a lower exponent */
        if (ea) ma |= 0x800000u; else { ea = 1; while (!(ma & 0x800000u)) { ma <<= 1; ea--; } }
        if (eb) mb |= 0x800000u; else { eb = 1; while (!(mb & 0x800000u)) { mb <<= 1; eb--; } }
        int e = ea - eb + 127;                                       /* biased exponent of the result */
        if (ma < mb) { ma <<= 1; e--; }                              /* ma / mb in [1, 2) */
        uint32_t q = 0, rem = ma;                                    /* q = floor(ma / mb * 2^25) */
        for (int i = 0; i < 26; i++) {
            q <<= 1;
            if (rem >= mb) { rem -= mb; q |= 1; }
            rem <<= 1;
        }
        uint32_t sticky = rem != 0;
        const int shift = e <= 0 ? 1 - e : 0;                        /* subnormal result: fewer bits */
        if (shift > 26) {
            sticky |= q != 0;
            q = 0;
        } else if (shift) {
            sticky |= (q & ((1u << shift) - 1)) != 0;
            q >>= shift;
        }
        uint32_t m = q >> 2;                                         /* 24 bits (normal) or fewer */
        const uint32_t half = q >> 1 & 1;
        sticky |= q & 1;
        if (half && (sticky || (m & 1))) m++;                        /* a carry renormalizes by itself */
        if (shift) r = sign | m;                                     /* exponent field 0, or 1 after a carry */
        else {
            r = ((uint32_t)e << 23) + (m - 0x800000u);
            r = r >= 0x7f800000u ? sign | 0x7f800000u : sign | r;    /* overflow: inf */
        }
    }
    float f;
    memcpy(&f, &r, 4);
    return f;
}

/* High word of a 32 x 32 -> 64 bit unsigned product, from 16-bit halves (MULL only). The empty asm
 * hides the halves from LLVM, which otherwise recognizes the whole as a 64-bit product: __muldi3. */
static uint32_t mulhu32(uint32_t a, uint32_t b)
{
    uint32_t al = a & 0xffffu, ah = a >> 16, bl = b & 0xffffu, bh = b >> 16;
    __asm("" : "+r"(al), "+r"(ah), "+r"(bl), "+r"(bh));
    const uint32_t ll = al * bl, lh = al * bh, hl = ah * bl;
    const uint32_t mid = (ll >> 16) + (lh & 0xffffu) + (hl & 0xffffu);
    return ah * bh + (lh >> 16) + (hl >> 16) + (mid >> 16);
}

/* a * b mod 2^64 (signed and unsigned alike). */
long long __muldi3(long long a, long long b)
{
    const uint32_t al = (uint32_t)a, ah = (uint32_t)((unsigned long long)a >> 32);
    const uint32_t bl = (uint32_t)b, bh = (uint32_t)((unsigned long long)b >> 32);
    const uint32_t hi = mulhu32(al, bl) + al * bh + ah * bl;
    return (long long)((unsigned long long)hi << 32 | (uint32_t)(al * bl));
}
