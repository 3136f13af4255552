/* tsl_uart_espidf.c -- the serial protocol on an ESP32 under ESP-IDF: UART0 through the IDF
 * driver, the CPU cycle counter for timing. Not built here (no ESP-IDF in Debian). */
#include <stdint.h>
#include "driver/uart.h"
#include "esp_cpu.h"

int tsl_serial_main(void);

int tsl_uart_getc(void)
{
    uint8_t c;
    while (uart_read_bytes(UART_NUM_0, &c, 1, portMAX_DELAY) != 1) {
    }
    return c;
}

void tsl_uart_write(const uint8_t *p, uint32_t n)
{
    uart_write_bytes(UART_NUM_0, (const char *)p, n);
}

uint32_t tsl_cycles(void)
{
    return (uint32_t)esp_cpu_get_cycle_count();
}

void app_main(void)
{
    const uart_config_t cfg = {.baud_rate = 115200, .data_bits = UART_DATA_8_BITS, .parity = UART_PARITY_DISABLE,
                               .stop_bits = UART_STOP_BITS_1, .flow_ctrl = UART_HW_FLOWCTRL_DISABLE};
    uart_param_config(UART_NUM_0, &cfg);
    uart_driver_install(UART_NUM_0, 4096, 4096, 0, NULL, 0);
    tsl_serial_main();
}
