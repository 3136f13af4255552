/* stdio.h -- what tinyslm's firmware uses on the Xtensa sim (simcall_libc.c). */
#ifndef TSL_XT_STDIO_H
#define TSL_XT_STDIO_H
#include <stddef.h>
#define EOF (-1)
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int puts(const char *s);
int putchar(int c);
#endif
