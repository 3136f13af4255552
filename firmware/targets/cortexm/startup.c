/* startup.c -- Cortex-M (v7-M, v8-M) bare-metal start: vector table, reset, SysTick, faults.
 * I/O and exit go through newlib's rdimon (semihosting); the linker script of the machine
 * (<machine>.ld, which INCLUDEs sections.ld) provides the symbols used here. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern uint32_t __stack_top[], __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);

volatile uint32_t tsl_systick_wraps;   /* SysTick reloads since tsl_cycles_init() */

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)

void Reset_Handler(void);
static void Fault_Handler(void) { fputs("tsl: fault\n", stdout); _exit(120); }
void SysTick_Handler(void) { tsl_systick_wraps++; }
void _init(void) {}   /* no crti.o: C only, nothing to construct */
void _fini(void) {}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler, 0, 0, 0, Fault_Handler, Fault_Handler, 0,
    Fault_Handler, SysTick_Handler,
};

void Reset_Handler(void)
{
    SCB_VTOR = (uint32_t)vectors;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    SCB_CPACR |= 0xFu << 20;           /* CP10, CP11: FPU and MVE, full access */
    __asm volatile("dsb\n isb" ::: "memory");
#endif
    for (uint32_t *s = __data_load, *d = __data_start; d < __data_end;) *d++ = *s++;
    for (uint32_t *d = __bss_start; d < __bss_end;) *d++ = 0;
    initialise_monitor_handles();
    __libc_init_array();
    exit(main());
}
