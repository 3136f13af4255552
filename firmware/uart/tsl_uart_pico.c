/* tsl_uart_pico.c -- the serial protocol under pico-sdk (the project tinyslm writes into OUT/pico):
 * pico-sdk's stdio as the byte pipe, over USB CDC or UART0 as the project's CMakeLists.txt enables
 * (pico_enable_stdio_usb / pico_enable_stdio_uart), built with PICO_STDIO_DEFAULT_CRLF=0 so that no
 * byte is translated; the Cortex-M33's DWT CYCCNT for timing. Not built here (no pico-sdk in Debian). */
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

uint32_t tsl_cycles(void)
{
    return DWT_CYCCNT;
}

int main(void)
{
    stdio_init_all();
    DEMCR |= 1u << 24;   /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;      /* CYCCNTENA */
    return tsl_serial_main();
}
