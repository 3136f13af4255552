/* string.h -- what tinyslm's firmware uses on the Xtensa sim (simcall_libc.c). */
#ifndef TSL_XT_STRING_H
#define TSL_XT_STRING_H
#include <stddef.h>
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
#endif
