/* tsl_mini_libc.h -- the shared body of the little C libraries of the bare-metal targets that have
 * none (aarch64_virt over Arm semihosting, xtensa_sim over qemu's simcalls): putchar, puts, exit,
 * abort, the printf core (d i u x s c, l/ll/z, width, 0-pad), memcpy, memmove, memset, memcmp,
 * strlen and qsort (heapsort: callers pass a total order, so any sort agrees).
 *
 * Included once, by the target's libc file, which first defines
 *   static void tsl_mini_write(const char *s, unsigned n);   n bytes to the console
 *   static void tsl_mini_stop(int status);                   ends the program, never returns
 * and then its printf over tsl_mini_format, with a fetcher of the next variadic argument (each
 * target reaches its variadic arguments its own way). No 64-bit division: put_num divides by shifts. */
#ifndef TSL_MINI_LIBC_H
#define TSL_MINI_LIBC_H
#include <stddef.h>
#include <stdint.h>

/* The byte loops below must not be turned back into calls to themselves. */
#if defined(__clang__)
#define TSL_NO_BUILTIN __attribute__((no_builtin))
#else
#define TSL_NO_BUILTIN __attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif

static char tsl_obuf[256];
static unsigned tsl_olen;

static void tsl_flush(void)
{
    if (tsl_olen) tsl_mini_write(tsl_obuf, tsl_olen);
    tsl_olen = 0;
}

int putchar(int c)
{
    tsl_obuf[tsl_olen++] = (char)c;
    if (tsl_olen == sizeof tsl_obuf || c == '\n') tsl_flush();
    return c;
}

int puts(const char *s)
{
    while (*s) putchar(*s++);
    putchar('\n');
    return 0;
}

void exit(int status)
{
    tsl_flush();
    tsl_mini_stop(status);
    for (;;) {}
}

void abort(void) { exit(134); }

/* v / base by shift-and-subtract: keeps 64-bit division (a libgcc call on 32-bit cores) out. */
static uint64_t tsl_divmod_small(uint64_t v, unsigned base, unsigned *rem)
{
    uint64_t q = 0;
    uint32_t r = 0;
    for (int i = 63; i >= 0; i--) {
        r = (r << 1) | (uint32_t)((v >> i) & 1u);
        q <<= 1;
        if (r >= base) { r -= base; q |= 1; }
    }
    *rem = r;
    return q;
}

static void tsl_put_num(uint64_t v, unsigned base, int neg, int width, char pad)
{
    char b[24];
    int n = 0;
    do { unsigned d; v = tsl_divmod_small(v, base, &d); b[n++] = "0123456789abcdef"[d]; } while (v);
    if (neg) {
        if (pad == '0') { putchar('-'); width--; } else b[n++] = '-';
    }
    for (; width > n; width--) putchar(pad);
    while (n) putchar(b[--n]);
}

/* fetch(ctx, bits): the next variadic argument of 32 or 64 bits, zero-extended */
typedef uint64_t (*tsl_mini_fetch)(void *ctx, unsigned bits);

static int tsl_mini_format(const char *fmt, tsl_mini_fetch fetch, void *ctx)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') { putchar(*fmt); continue; }
        char pad = ' ';
        int width = 0, longs = 0, z = 0;
        if (*++fmt == '0') { pad = '0'; fmt++; }
        while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') { longs += *fmt == 'l'; z |= *fmt == 'z'; fmt++; }
        const unsigned bits = longs > 1 || (longs && sizeof(long) == 8) || (z && sizeof(size_t) == 8) ? 64 : 32;
        switch (*fmt) {
        case 'd': case 'i': {
            const uint64_t raw = fetch(ctx, bits);
            const int64_t v = bits == 64 ? (int64_t)raw : (int64_t)(int32_t)(uint32_t)raw;
            tsl_put_num(v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, 10, v < 0, width, pad);
            break;
        }
        case 'u': case 'x': tsl_put_num(fetch(ctx, bits), *fmt == 'u' ? 10 : 16, 0, width, pad); break;
        case 's':
            for (const char *s = (const char *)(uintptr_t)fetch(ctx, 8 * sizeof(void *)); *s; s++) putchar(*s);
            break;
        case 'c': putchar((int)fetch(ctx, 32)); break;
        default: putchar(*fmt); break;
        }
    }
    return 0;
}

TSL_NO_BUILTIN void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *a = d;
    const uint8_t *b = s;
    while (n--) *a++ = *b++;
    return d;
}

TSL_NO_BUILTIN void *memmove(void *d, const void *s, size_t n)
{
    uint8_t *a = d;
    const uint8_t *b = s;
    if (a < b) while (n--) *a++ = *b++;
    else while (n--) a[n] = b[n];
    return d;
}

TSL_NO_BUILTIN void *memset(void *d, int c, size_t n)
{
    uint8_t *a = d;
    while (n--) *a++ = (uint8_t)c;
    return d;
}

TSL_NO_BUILTIN int memcmp(const void *x, const void *y, size_t n)
{
    const uint8_t *a = x, *b = y;
    for (; n; n--, a++, b++)
        if (*a != *b) return *a - *b;
    return 0;
}

TSL_NO_BUILTIN size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

static void tsl_swap_bytes(uint8_t *a, uint8_t *b, size_t n)
{
    while (n--) { const uint8_t t = *a; *a++ = *b; *b++ = t; }
}

static void tsl_sift(uint8_t *base, size_t root, size_t n, size_t sz, int (*cmp)(const void *, const void *))
{
    for (size_t c; (c = 2 * root + 1) < n; root = c) {
        if (c + 1 < n && cmp(base + c * sz, base + (c + 1) * sz) < 0) c++;
        if (cmp(base + root * sz, base + c * sz) >= 0) return;
        tsl_swap_bytes(base + root * sz, base + c * sz, sz);
    }
}

void qsort(void *base, size_t n, size_t sz, int (*cmp)(const void *, const void *))
{
    uint8_t *b = base;
    for (size_t i = n / 2; i-- > 0;) tsl_sift(b, i, n, sz, cmp);
    for (size_t end = n; end-- > 1;) {
        tsl_swap_bytes(b, b + end * sz, sz);
        tsl_sift(b, 0, end, sz, cmp);
    }
}

#endif
