/* stm32_start.c -- bare-metal start of STM32F4/F7/H7 parts: vector table, reset (FPU on, .data and
 * .bss, clock tree of stm32_clock.c, Cortex-M7 L1 caches, cycle counter, USART), SysTick, faults.
 * The linker script (stm32*.ld, which INCLUDEs ../cortexm/sections.ld) places the vectors at the
 * start of flash (0x08000000) and the stack at the top of SRAM.
 *
 * Cycle counter (TSL_CYCLES_TARGET in targets/tsl_platform.h): DWT CYCCNT where it counts, widened
 * to 64 bits by the SysTick interrupt every 2^24 cycles; otherwise (qemu models no DWT) SysTick on
 * the CPU clock, widened the same way. Its unit string says which, at what clock, and, when the
 * chip did not reach its rated clock, why ("HSE did not start").
 *
 * TSL_STM32_SEMIHOSTING (emulated stand-ins only): exit status and the test programs' output go
 * through semihosting (newlib's rdimon); on a chip, main() never returns and a fault stops in place. */
#include <stdint.h>
#include "stm32.h"
#ifdef TSL_STM32_SEMIHOSTING
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
void _init(void) {}   /* no crti.o: C only, nothing to construct */
void _fini(void) {}
#endif

extern uint32_t __stack_top[], __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern int main(void);
void tsl_uart_init(uint32_t clock_hz) __attribute__((weak));   /* firmware/uart/tsl_uart.c, if linked */
void tsl_cycles_init(void);
uint64_t tsl_cycles(void);

#define SCB_CPACR TSL_REG(0xE000ED88u)
#define SCB_VTOR TSL_REG(0xE000ED08u)
#define SCB_CCR TSL_REG(0xE000ED14u)
#define SCB_CCSIDR TSL_REG(0xE000ED80u)
#define SCB_CSSELR TSL_REG(0xE000ED84u)
#define SCB_ICIALLU TSL_REG(0xE000EF50u)
#define SCB_DCISW TSL_REG(0xE000EF60u)

static tsl_stm32_clocks clocks;
static const char *clock_problem;   /* 0: at the rated clock */
#define TSL_CM_DWT_UNLOCK                                  /* the Cortex-M7's DWT software lock */
#include "../tsl_cortexm_cycles.h"

void Reset_Handler(void);
void SysTick_Handler(void);
static void Fault_Handler(void)
{
#ifdef TSL_STM32_SEMIHOSTING
    fputs("tsl: fault\n", stdout);
    _exit(120);
#else
    for (;;) {
    }
#endif
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler, 0, 0, 0, Fault_Handler, Fault_Handler, 0,
    Fault_Handler, SysTick_Handler,
};

#if TSL_STM32_L1_CACHE
/* Cortex-M7 L1: invalidate, then enable (ARMv7-M ARM B2.2.7; 32-byte lines, set at bit 5, way at 30) */
static void caches_on(void)
{
    __asm volatile("dsb\n isb" ::: "memory");
    SCB_ICIALLU = 0;
    __asm volatile("dsb\n isb" ::: "memory");
    SCB_CCR |= 1u << 17;                                   /* IC */
    SCB_CSSELR = 0;                                        /* level 1 data */
    __asm volatile("dsb" ::: "memory");
    const uint32_t ccsidr = SCB_CCSIDR, sets = (ccsidr >> 13) & 0x7FFFu, ways = (ccsidr >> 3) & 0x3FFu;
    for (uint32_t s = 0; s <= sets; s++)
        for (uint32_t w = 0; w <= ways; w++) SCB_DCISW = (s << 5) | (w << 30);
    __asm volatile("dsb" ::: "memory");
    SCB_CCR |= 1u << 16;                                   /* DC */
    __asm volatile("dsb\n isb" ::: "memory");
}
#endif

void Reset_Handler(void)
{
    SCB_VTOR = (uint32_t)vectors;
#if defined(__ARM_FP)
    SCB_CPACR |= 0xFu << 20;                               /* CP10, CP11: FPU, full access */
    __asm volatile("dsb\n isb" ::: "memory");
#endif
    for (uint32_t *s = __data_load, *d = __data_start; d < __data_end;) *d++ = *s++;
    for (uint32_t *d = __bss_start; d < __bss_end;) *d++ = 0;
    /* the USART first, on HSI: a host that talks during the clock set-up waits in the line (qemu
     * holds bytes while RXNE is set) instead of being dropped by a disabled USART */
    tsl_stm32_clock_hsi(&clocks);
    const uint32_t hsi_hz = tsl_stm32_uart_setup(&clocks);
    if (tsl_uart_init) tsl_uart_init(hsi_hz);
    clock_problem = tsl_stm32_clock_init(&clocks);
    const uint32_t uart_hz = tsl_stm32_uart_setup(&clocks);
    if (tsl_uart_init && uart_hz != hsi_hz) tsl_uart_init(uart_hz);
#if TSL_STM32_L1_CACHE
    caches_on();
#endif
    tsl_cycles_init();
#ifdef TSL_STM32_SEMIHOSTING
    initialise_monitor_handles();
    __libc_init_array();
    exit(main());
#else
    (void)main();
    for (;;) __asm volatile("wfi");
#endif
}

void tsl_cycles_init(void) { tsl_cm_cycles_start(clocks.sysclk, " (HSI: ", clock_problem); }
