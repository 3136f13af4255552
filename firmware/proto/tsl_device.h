/* tsl_device.h -- what the serial firmware's parts (tsl_serial_app.c, tsl_console.c) take from the
 * platform, and the identity strings they print. The platform provides:
 *   int tsl_uart_getc(void)                          blocking, 0..255; < 0 ends tsl_serial_main()
 *   void tsl_uart_write(const uint8_t *p, uint32_t n)
 *   uint32_t tsl_cycles(void)                        free-running counter; differences wrap mod 2^32
 *     (or build with -DTSL_PROTO_PLATFORM_CYCLES to take it from targets/tsl_platform.h)
 * Build options: TSL_BOARD_NAME, TSL_FW_VERSION, TSL_CYCLES_UNIT (strings; the unit may be a
 * function's string, STM32), TSL_CYCLES_HZ (the counter's rate, 0: unknown), TSL_CYCLES_EMULATED
 * (the counter is qemu's virtual clock). */
#ifndef TSL_DEVICE_H
#define TSL_DEVICE_H
#include <stdint.h>

extern int tsl_uart_getc(void);
extern void tsl_uart_write(const uint8_t *p, uint32_t n);
#ifdef TSL_PROTO_PLATFORM_CYCLES
#include "tsl_platform.h"
#define TSL_NOW() ((uint32_t)tsl_cycles())
#else
extern uint32_t tsl_cycles(void);
#define TSL_NOW() tsl_cycles()
#define tsl_cycles_init() ((void)0)
#endif

#ifndef TSL_BOARD_NAME
#define TSL_BOARD_NAME "unknown"
#endif
#ifndef TSL_FW_VERSION
#define TSL_FW_VERSION "dev"
#endif
#ifndef TSL_CYCLES_UNIT
#define TSL_CYCLES_UNIT "cycles"
#endif
#ifndef TSL_CYCLES_HZ
#define TSL_CYCLES_HZ 0
#endif
#ifndef TSL_TOK_BOS
#define TSL_TOK_BOS (-1)
#endif
#ifndef TSL_TOK_EOS
#define TSL_TOK_EOS (-1)
#endif

#endif
