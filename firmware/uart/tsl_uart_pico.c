/* tsl_uart_pico.c -- the serial protocol under pico-sdk (the project tinyslm writes into OUT/pico):
 * pico-sdk's stdio as the byte pipe, over USB CDC or UART0 as the project's CMakeLists.txt enables
 * (pico_enable_stdio_usb / pico_enable_stdio_uart), built with PICO_STDIO_DEFAULT_CRLF=0 so that no
 * byte is translated. Timing: the DWT cycle counter where the core has one (Armv7-M and Armv8-M
 * Mainline: the RP2350's M33); on the RP2040's M0+ (Armv6-M, no DWT counter) the SDK's microsecond
 * timer scaled to CPU cycles (TSL_CYCLES_HZ), which wraps mod 2^32 like a counter. Built here only
 * against stand-in SDK headers (tests/test_rp2350.py), not against pico-sdk. */
#include <stdint.h>
#include "pico/stdlib.h"

int tsl_serial_main(void);

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)

int tsl_uart_getc(void)
{
    int c;
    while ((c = getchar_timeout_us(1000000u)) < 0) {   /* PICO_ERROR_TIMEOUT: keep waiting */
    }
    return c & 0xFF;
}

void tsl_uart_write(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) putchar_raw(p[i]);
    stdio_flush();
}

#if defined(__ARM_ARCH_6M__)
uint32_t tsl_cycles(void)
{
    return time_us_32() * (uint32_t)(TSL_CYCLES_HZ / 1000000u);
}
#define CYCLES_ON() ((void)0)
#else
uint32_t tsl_cycles(void)
{
    return DWT_CYCCNT;
}
#define CYCLES_ON() (DEMCR |= 1u << 24, DWT_CYCCNT = 0, DWT_CTRL |= 1u)   /* TRCENA, CYCCNTENA */
#endif

int main(void)
{
    stdio_init_all();
    CYCLES_ON();
    return tsl_serial_main();
}
