/* rp2350_start.c -- bare-metal start of the RP2350 (Arm, Secure): the vector table and the boot
 * ROM's IMAGE_DEF block at the start of flash, reset (FPU on, .data and .bss, clocks of
 * rp2350_clock.c, UART0), the cycle counter, faults.
 *
 * The boot ROM (datasheet 5.9) takes a flash image only if a valid IMAGE_DEF block lies in its
 * first 4 KiB; with no VECTOR_TABLE item it enters an Arm image through the vector table at the
 * start of the image: 0x10000000 (XIP), where the linker script (rp2350_flash4m.ld) puts .vectors.
 * No boot2 stage: the boot ROM sets up XIP itself. tests/test_rp2350.py parses this block out of
 * the built image.
 *
 * Cycle counter: ../tsl_cortexm_cycles.h (the Cortex-M33's DWT CYCCNT, widened by SysTick); its unit
 * string names the clock reached and, short of the PLL, why ("dwt cycles@11MHz (XOSC did not start)"). */
#include <stdint.h>
#include "rp2350.h"

extern uint32_t __stack_top[], __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern int main(void);
void tsl_uart_init(uint32_t clock_hz) __attribute__((weak));   /* firmware/uart/tsl_uart.c, if linked */
void tsl_cycles_init(void);
uint64_t tsl_cycles(void);

#define SCB_CPACR TSL_REG(0xE000ED88u)
#define SCB_VTOR TSL_REG(0xE000ED08u)

/* PICOBIN block items (datasheet 5.9.3, "minimum viable image metadata" 5.9.5.1) */
#define PICOBIN_BLOCK_MARKER_START 0xFFFFDED3u
#define PICOBIN_BLOCK_MARKER_END 0xAB123579u
#define ITEM_1BS_IMAGE_TYPE 0x42u                          /* one-byte size, IMAGE_TYPE */
#define ITEM_2BS_LAST 0xFFu                                /* two-byte size, LAST */
#define IMAGE_TYPE_EXE 0x1u                                /* bits 3:0 */
#define EXE_SECURITY_S (0x2u << 4)
#define EXE_CPU_ARM (0x0u << 8)
#define EXE_CHIP_RP2350 (0x1u << 12)

void Reset_Handler(void);
void SysTick_Handler(void);
static void Fault_Handler(void)
{
    for (;;) {
    }
}

/* vectors, then the IMAGE_DEF: one object, so nothing can land between them and the block sits at
 * 0x10000040, well inside the first 4 KiB */
__attribute__((section(".vectors"), used)) static const struct {
    void (*vectors[16])(void);
    uint32_t image_def[5];
} boot = {
    {(void (*)(void))__stack_top, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
     Fault_Handler, Fault_Handler, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, SysTick_Handler},
    {PICOBIN_BLOCK_MARKER_START,
     ITEM_1BS_IMAGE_TYPE | 1u << 8 | (IMAGE_TYPE_EXE | EXE_SECURITY_S | EXE_CPU_ARM | EXE_CHIP_RP2350) << 16,
     ITEM_2BS_LAST | 1u << 8,                              /* the items before it: 1 word */
     0u,                                                   /* next block: itself (a loop of one) */
     PICOBIN_BLOCK_MARKER_END},
};

static tsl_rp2350_clocks clocks;
static const char *clock_problem;   /* 0: at the rated clock */
#include "../tsl_cortexm_cycles.h"

void Reset_Handler(void)
{
    SCB_VTOR = (uint32_t)&boot;
#if defined(__ARM_FP)
    SCB_CPACR |= 0xFu << 20;                               /* CP10, CP11: FPU, full access */
    __asm volatile("dsb\n isb" ::: "memory");
#endif
    for (uint32_t *s = __data_load, *d = __data_start; d < __data_end;) *d++ = *s++;
    for (uint32_t *d = __bss_start; d < __bss_end;) *d++ = 0;
    clock_problem = tsl_rp2350_clock_init(&clocks);
    const uint32_t uart_hz = tsl_rp2350_uart_setup(&clocks);
    if (tsl_uart_init) tsl_uart_init(uart_hz);
    tsl_cycles_init();
    (void)main();
    for (;;) __asm volatile("wfi");
}

void tsl_cycles_init(void) { tsl_cm_cycles_start(clocks.sys, " (", clock_problem); }
