/* stm32_uartsim.c -- firmware/uart/tsl_uart.c's STM32 USART driver on the host, its registers an
 * array. -DSTATUS_OFF, -DRX_OFF: where the test (from the reference manual) expects the status and
 * receive registers. Prints the received byte and every register word after init, getc, write. */
#include <stdint.h>
#include <stdio.h>

static uint32_t usart[16];
#define TSL_UART_BASE ((uintptr_t)usart)
#include "tsl_uart.c"

int main(void)
{
    tsl_uart_init(CLOCK_HZ);
    usart[STATUS_OFF / 4] = (1u << 5) | (1u << 7);     /* RXNE, TXE */
    usart[RX_OFF / 4] = 0x15Au;
    const int c = tsl_uart_getc();
    const uint8_t out[2] = {0x11, 0x22};
    tsl_uart_write(out, 2);
    printf("got %d\n", c);
    for (int i = 0; i < 16; i++) printf("reg 0x%02x 0x%08x\n", 4 * i, (unsigned)usart[i]);
    return 0;
}
