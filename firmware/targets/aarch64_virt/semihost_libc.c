/* semihost_libc.c -- the little libc the kernel tests and benchmarks need on AArch64 bare metal
 * (no newlib for aarch64 here): printf (d i u x s c, l/ll/z, width, 0-pad), puts, putchar, exit,
 * memcpy, memset, memmove, memcmp, qsort (heapsort: callers pass a total order, so any sort agrees). Output and exit through Arm semihosting (HLT #0xF000). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Keep GCC from turning the byte loops below back into calls to themselves. */
#define TSL_NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))

static uint64_t semihost(uint64_t op, const void *arg)
{
    register uint64_t x0 __asm("x0") = op;
    register const void *x1 __asm("x1") = arg;
    __asm volatile("hlt #0xf000" : "+r"(x0) : "r"(x1) : "memory");
    return x0;
}

static char obuf[257];
static unsigned olen;

static void flush(void)
{
    if (!olen) return;
    obuf[olen] = 0;
    semihost(0x04, obuf);   /* SYS_WRITE0 to the console */
    olen = 0;
}

int putchar(int c)
{
    obuf[olen++] = (char)c;
    if (olen == sizeof obuf - 1 || c == '\n') flush();
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
    flush();
    const uint64_t blk[2] = {0x20026, (uint64_t)(int64_t)status};   /* ADP_Stopped_ApplicationExit */
    semihost(0x18, blk);
    for (;;) {}
}

void abort(void) { exit(134); }

static void put_num(uint64_t v, unsigned base, int neg, int width, char pad)
{
    char b[24];
    int n = 0;
    do { b[n++] = "0123456789abcdef"[v % base]; v /= base; } while (v);
    if (neg) {
        if (pad == '0') { putchar('-'); width--; } else b[n++] = '-';
    }
    for (; width > n; width--) putchar(pad);
    while (n) putchar(b[--n]);
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') { putchar(*fmt); continue; }
        char pad = ' ';
        int width = 0, lng = 0;
        if (*++fmt == '0') { pad = '0'; fmt++; }
        while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') { lng++; fmt++; }
        switch (*fmt) {
        case 'd': case 'i': {
            const int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            put_num(v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, 10, v < 0, width, pad);
            break;
        }
        case 'u': case 'x': {
            const uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            put_num(v, *fmt == 'u' ? 10 : 16, 0, width, pad);
            break;
        }
        case 's': for (const char *s = va_arg(ap, const char *); *s; s++) putchar(*s); break;
        case 'c': putchar(va_arg(ap, int)); break;
        default: putchar(*fmt); break;
        }
    }
    va_end(ap);
    return 0;
}

TSL_NO_LIBCALL void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *a = d;
    const uint8_t *b = s;
    while (n--) *a++ = *b++;
    return d;
}

TSL_NO_LIBCALL void *memmove(void *d, const void *s, size_t n)
{
    uint8_t *a = d;
    const uint8_t *b = s;
    if (a < b) while (n--) *a++ = *b++;
    else while (n--) a[n] = b[n];
    return d;
}

TSL_NO_LIBCALL void *memset(void *d, int c, size_t n)
{
    uint8_t *a = d;
    while (n--) *a++ = (uint8_t)c;
    return d;
}

TSL_NO_LIBCALL int memcmp(const void *x, const void *y, size_t n)
{
    const uint8_t *a = x, *b = y;
    for (; n; n--, a++, b++)
        if (*a != *b) return *a - *b;
    return 0;
}

static void swap_bytes(uint8_t *a, uint8_t *b, size_t n)
{
    while (n--) { const uint8_t t = *a; *a++ = *b; *b++ = t; }
}

static void sift(uint8_t *base, size_t root, size_t n, size_t sz, int (*cmp)(const void *, const void *))
{
    for (size_t c; (c = 2 * root + 1) < n; root = c) {
        if (c + 1 < n && cmp(base + c * sz, base + (c + 1) * sz) < 0) c++;
        if (cmp(base + root * sz, base + c * sz) >= 0) return;
        swap_bytes(base + root * sz, base + c * sz, sz);
    }
}

void qsort(void *base, size_t n, size_t sz, int (*cmp)(const void *, const void *))
{
    uint8_t *b = base;
    for (size_t i = n / 2; i-- > 0;) sift(b, i, n, sz, cmp);
    for (size_t end = n; end-- > 1;) {
        swap_bytes(b, b + end * sz, sz);
        sift(b, 0, end, sz, cmp);
    }
}
