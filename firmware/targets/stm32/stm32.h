/* stm32.h -- what stm32_start.c and stm32_clock.c share. The board's facts arrive as -D macros from
 * [target.defines] in boards/<name>.toml (clock tree, wait states, USART bus, pins). */
#ifndef TSL_STM32_H
#define TSL_STM32_H
#include <stdint.h>

#ifndef TSL_REG   /* (tests/test_stm32.py runs stm32_clock.c on the host against simulated registers) */
#define TSL_REG(a) (*(volatile uint32_t *)(uintptr_t)(a))
#endif

typedef struct {
    uint32_t sysclk, hclk, pclk1, pclk2;   /* Hz actually running */
} tsl_stm32_clocks;

/* the clocks out of reset: everything on HSI */
void tsl_stm32_clock_hsi(tsl_stm32_clocks *c);
/* HSE -> PLL -> SYSCLK at the rated clock; on failure the chip stays on HSI and the result names
 * the step that failed (0: all done). Every wait is bounded. */
const char *tsl_stm32_clock_init(tsl_stm32_clocks *c);
/* bus clock and pins of the USART ([target] uart_base); -> the USART's kernel clock in Hz */
uint32_t tsl_stm32_uart_setup(const tsl_stm32_clocks *c);

#endif
