/* stdio.h -- what tinyslm's firmware uses on the Xtensa sim (simcall_libc.c). */
#ifndef TSL_XT_STDIO_H
#define TSL_XT_STDIO_H
#include <stddef.h>
#define EOF (-1)
#define _IONBF 2
typedef struct tsl_file FILE;       /* stdin and stdout only: qemu's own, through simcalls */
extern FILE *const stdin, *const stdout;
FILE *fopen(const char *path, const char *mode);
int setvbuf(FILE *f, char *buf, int mode, size_t size);
int fgetc(FILE *f);
size_t fwrite(const void *p, size_t size, size_t n, FILE *f);
int fflush(FILE *f);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int puts(const char *s);
int putchar(int c);
#endif
