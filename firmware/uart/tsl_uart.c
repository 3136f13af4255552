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

#elif defined(TSL_UART_STM32_SR) || defined(TSL_UART_STM32_ISR)
/* STM32 USART, 8N1 at TSL_UART_BAUD. Two register layouts:
 *   stm32_sr  (F1/F2/F4)        SR 0x00 (RXNE b5, TXE b7), DR 0x04, BRR 0x08, CR1 0x0C (UE b13, TE b3, RE b2)
 *   stm32_isr (F0/F3/F7/H7/L4)  CR1 0x00 (UE b0, RE b2, TE b3), CR3 0x08 (OVRDIS b12), BRR 0x0C,
 *                               ISR 0x1C (RXNE b5, TXE b7), RDR 0x24, TDR 0x28
 * The start-up code (targets/stm32) turns on the USART's bus clock and pins and calls
 * tsl_uart_init() with that clock, before main(). BRR = clock / baud (16x oversampling). Bytes that
 * arrive while the device computes are dropped by the hardware (overrun): the protocol is stop-and-wait. */
#define UART_REG(o) (*(volatile uint32_t *)((uintptr_t)(TSL_UART_BASE) + (o)))
#ifndef TSL_UART_BAUD
#define TSL_UART_BAUD 115200u
#endif
#if defined(TSL_UART_STM32_SR)
enum { U_STATUS = 0x00, U_RX = 0x04, U_TX = 0x04, U_BRR = 0x08, U_CR1 = 0x0C };
#define U_CR1_ON ((1u << 13) | (1u << 3) | (1u << 2))
#else
enum { U_CR1 = 0x00, U_CR3 = 0x08, U_BRR = 0x0C, U_STATUS = 0x1C, U_RX = 0x24, U_TX = 0x28 };
#define U_CR1_ON ((1u << 0) | (1u << 3) | (1u << 2))
#endif

void tsl_uart_init(uint32_t clock_hz);

/* again after a clock change: the F4 layout takes the new BRR with the USART on (a byte waiting
 * in DR stays); the ISR layout wants UE off to write BRR and CR3 */
void tsl_uart_init(uint32_t clock_hz)
{
#if defined(TSL_UART_STM32_ISR)
    UART_REG(U_CR1) = 0;
    UART_REG(U_CR3) = 1u << 12;        /* OVRDIS: an overrun loses the byte, never stops reception */
#endif
    UART_REG(U_BRR) = (clock_hz + TSL_UART_BAUD / 2u) / TSL_UART_BAUD;
    UART_REG(U_CR1) = U_CR1_ON;
}

int tsl_uart_getc(void)
{
    while (!(UART_REG(U_STATUS) & (1u << 5))) {
    }
    return (int)(UART_REG(U_RX) & 0xFF);   /* (F4: the SR-then-DR read also clears an overrun) */
}

void tsl_uart_write(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        while (!(UART_REG(U_STATUS) & (1u << 7))) {
        }
        UART_REG(U_TX) = p[i];
    }
}

#elif defined(TSL_UART_PL011)
/* Arm PL011 (RP2040/RP2350 UART0/1), 8N1 at TSL_UART_BAUD: DR 0x000, FR 0x018 (BUSY b3, RXFE b4,
 * TXFF b5), IBRD 0x024, FBRD 0x028, LCR_H 0x02C (FEN b4, WLEN b6:5), CR 0x030 (UARTEN b0, TXE b8,
 * RXE b9). The start-up code (targets/rp2350) clocks the UART, takes it out of reset, routes its
 * pins and calls tsl_uart_init() with clk_peri. Divisor = clock / (16 baud) in 16.6 fixed point,
 * rounded; the LCR_H write after IBRD/FBRD latches them (PL011 TRM 3.3.6). */
#define UART_REG(o) (*(volatile uint32_t *)((uintptr_t)(TSL_UART_BASE) + (o)))
#ifndef TSL_UART_BAUD
#define TSL_UART_BAUD 115200u
#endif

void tsl_uart_init(uint32_t clock_hz);

void tsl_uart_init(uint32_t clock_hz)
{
    const uint32_t div = (uint32_t)((4ull * clock_hz + TSL_UART_BAUD / 2u) / TSL_UART_BAUD);   /* 64 x clock / (16 baud) */
    uint32_t ibrd = div >> 6, fbrd = div & 0x3Fu;
    if (ibrd == 0) ibrd = 1, fbrd = 0;
    if (ibrd >= 0xFFFFu) ibrd = 0xFFFFu, fbrd = 0;
    UART_REG(0x030) = 0;
    UART_REG(0x024) = ibrd;
    UART_REG(0x028) = fbrd;
    UART_REG(0x02C) = (3u << 5) | (1u << 4);                /* 8 bits, FIFOs on */
    UART_REG(0x030) = (1u << 0) | (1u << 8) | (1u << 9);
}

int tsl_uart_getc(void)
{
    while (UART_REG(0x018) & (1u << 4)) {
    }
    return (int)(UART_REG(0x000) & 0xFF);
}

void tsl_uart_write(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        while (UART_REG(0x018) & (1u << 5)) {
        }
        UART_REG(0x000) = p[i];
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
