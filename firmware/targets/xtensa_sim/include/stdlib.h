/* stdlib.h -- what tinyslm's firmware uses on the Xtensa sim (simcall_libc.c). */
#ifndef TSL_XT_STDLIB_H
#define TSL_XT_STDLIB_H
#include <stddef.h>
void exit(int status) __attribute__((noreturn));
void abort(void) __attribute__((noreturn));
char *getenv(const char *name);
void qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));
#endif
