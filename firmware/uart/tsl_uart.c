/* tsl_uart.c -- the byte pipe of the serial protocol: tsl_uart_getc / tsl_uart_write.
 * The peripheral and its address come from the board's toml ([target] uart, uart_base), passed
 * as TSL_UART_<KIND> and TSL_UART_BASE. Polled, blocking, no interrupts. */
#include <stdint.h>

int tsl_uart_getc(void);
void tsl_uart_write(const uint8_t *p, uint32_t n);

#if defined(TSL_UART_CMSDK)
/* Arm CMSDK APB UART (MPS2/MPS3): DATA, STATE (bit0 TX full, bit1 RX full), CTRL, BAUDDIV */
#define UART_REG(o) (*(volatile uint32_t *)((uintptr_t)(TSL_UART_BASE) + (o)))
static int tsl_uart_ready;

static void tsl_uart_init(void)
{
    UART_REG(0x10) = 16;          /* BAUDDIV: any value >= 16; qemu ignores the rate */
    UART_REG(0x08) = 0x3;         /* TX and RX enable */
    (void)UART_REG(0x00);         /* a first read of DATA clears a stale RX state under qemu */
    tsl_uart_ready = 1;
}

int tsl_uart_getc(void)
{
    if (!tsl_uart_ready) tsl_uart_init();
    while (!(UART_REG(0x04) & 0x2)) {
    }
    return (int)(UART_REG(0x00) & 0xFF);
}

void tsl_uart_write(const uint8_t *p, uint32_t n)
{
    if (!tsl_uart_ready) tsl_uart_init();
    for (uint32_t i = 0; i < n; i++) {
        while (UART_REG(0x04) & 0x1) {
        }
        UART_REG(0x00) = p[i];
    }
}

#elif defined(TSL_UART_NS16550)
/* NS16550A (qemu riscv virt; ESP32-C3 boards use their own UART through ESP-IDF instead):
 * RBR/THR at 0, LSR at 5 (bit0 data ready, bit5 THR empty) */
#define UART_REG(o) (*(volatile uint8_t *)((uintptr_t)(TSL_UART_BASE) + (o)))

int tsl_uart_getc(void)
{
    while (!(UART_REG(5) & 0x01)) {
    }
    return (int)UART_REG(0);
}

void tsl_uart_write(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        while (!(UART_REG(5) & 0x20)) {
        }
        UART_REG(0) = p[i];
    }
}

#elif defined(TSL_UART_STDIO)
/* Linux boards (Raspberry Pi): the protocol runs over stdin/stdout, or over a serial device
 * given as TSL_SERIAL_DEV in the environment. */
#include <stdio.h>
#include <stdlib.h>

static FILE *tsl_in, *tsl_out;

static void tsl_uart_open(void)
{
    const char *dev = getenv("TSL_SERIAL_DEV");
    tsl_in = dev ? fopen(dev, "rb") : stdin;
    tsl_out = dev ? fopen(dev, "wb") : stdout;
    if (!tsl_in || !tsl_out) exit(3);
    setvbuf(tsl_out, NULL, _IONBF, 0);
}

int tsl_uart_getc(void)
{
    if (!tsl_in) tsl_uart_open();
    const int c = fgetc(tsl_in);
    if (c == EOF) exit(0);
    return c;
}

void tsl_uart_write(const uint8_t *p, uint32_t n)
{
    if (!tsl_out) tsl_uart_open();
    fwrite(p, 1, n, tsl_out);
}

#else
#error "no UART selected: the board's toml needs [target] uart"
#endif
