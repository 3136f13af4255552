/* rp2350.h -- what rp2350_start.c and rp2350_clock.c share. The board's facts (crystal, PLL, UART
 * pins and function) arrive as -D macros from [target.defines] in boards/rp2350.toml. Register
 * addresses are the RP2350 datasheet's (chapter 2.2 address map; 7.5 RESETS, 8.1 CLOCKS, 8.2 XOSC,
 * 8.6 PLL, 9.11 IO_BANK0 and PADS_BANK0). */
#ifndef TSL_RP2350_H
#define TSL_RP2350_H
#include <stdint.h>

#ifndef TSL_REG   /* (a host test may point it at simulated registers) */
#define TSL_REG(a) (*(volatile uint32_t *)(uintptr_t)(a))
#endif
/* every peripheral has atomic aliases 0x1000 (XOR), 0x2000 (SET), 0x3000 (CLR) above its registers */
#define TSL_SET(a) TSL_REG((a) + 0x2000u)
#define TSL_CLR(a) TSL_REG((a) + 0x3000u)

#define RP_CLOCKS 0x40010000u
#define RP_RESETS 0x40020000u
#define RP_IO_BANK0 0x40028000u
#define RP_PADS_BANK0 0x40038000u
#define RP_XOSC 0x40048000u
#define RP_PLL_SYS 0x40050000u

/* RESETS.RESET / RESET_DONE bits */
#define RP_RESET_IO_BANK0 (1u << 6)
#define RP_RESET_PADS_BANK0 (1u << 9)
#define RP_RESET_PLL_SYS (1u << 14)
#define RP_RESET_UART0 (1u << 26)

typedef struct {
    uint32_t ref, sys, peri;   /* Hz running: clk_ref, clk_sys (the CPU), clk_peri (the UART) */
} tsl_rp2350_clocks;

/* XOSC -> clk_ref, PLL_SYS -> clk_sys at the rated clock, clk_peri = clk_sys. On failure the chip
 * stays on the ring oscillator and the result names the step that failed (0: all done). Every
 * wait is bounded. */
const char *tsl_rp2350_clock_init(tsl_rp2350_clocks *c);
/* UART0 out of reset, its pins (pads and function select) -> its clock in Hz (clk_peri) */
uint32_t tsl_rp2350_uart_setup(const tsl_rp2350_clocks *c);

#endif
