/* rp2350_clock.c -- RP2350 clock tree (datasheet 8.1 CLOCKS, 8.2 XOSC, 8.6 PLL) and UART0's pins.
 *
 * Out of the boot ROM clk_ref and clk_sys run from the ring oscillator (ROSC, about 11 MHz, not
 * exact). Here, in the order the datasheet and pico-sdk's clocks_init use:
 *   1. clk_sys and clk_ref onto their glitchless ROSC/clk_ref sources (away from any aux source);
 *   2. XOSC (the board's crystal) started, clk_ref = XOSC;
 *   3. PLL_SYS: reset, REFDIV, FBDIV, power up, lock, post dividers;
 *   4. clk_sys aux = PLL_SYS, clk_sys = aux;
 *   5. clk_peri (UART, SPI) = clk_sys.
 * Every wait polls at most TSL_RP2350_TRIES times (one poll >= 4 cycles: 2^19 polls last >= 190 ms
 * on the ROSC, far past the crystal's start-up and the PLL's lock time). A step that does not finish
 * leaves the chip on the ROSC, which always runs; the result names the step.
 * XIP keeps the boot ROM's QMI set-up (its SCK divider is read off clk_sys; pico-sdk also runs from
 * flash at 150 MHz without changing it). None of this has run on a chip here: no RP2350 emulator. */
#include "rp2350.h"

#ifndef TSL_RP2350_TRIES
#define TSL_RP2350_TRIES (1u << 19)
#endif
#define ROSC_HZ 11000000u

/* CLOCKS: CTRL, DIV, SELECTED per clock, 12 bytes apart */
#define CLK_REF_CTRL (RP_CLOCKS + 0x30u)
#define CLK_REF_DIV (RP_CLOCKS + 0x34u)
#define CLK_REF_SELECTED (RP_CLOCKS + 0x38u)
#define CLK_SYS_CTRL (RP_CLOCKS + 0x3Cu)
#define CLK_SYS_DIV (RP_CLOCKS + 0x40u)
#define CLK_SYS_SELECTED (RP_CLOCKS + 0x44u)
#define CLK_PERI_CTRL (RP_CLOCKS + 0x48u)
#define CLK_PERI_DIV (RP_CLOCKS + 0x4Cu)
#define CLK_SYS_RESUS_CTRL (RP_CLOCKS + 0x84u)
#define CTRL_ENABLE (1u << 11)
#define CTRL_ENABLED (1u << 28)
#define DIV_1 (1u << 16)                                   /* INT = 1, FRAC = 0 */
#define REF_SRC_ROSC 0u
#define REF_SRC_XOSC 2u
#define SYS_SRC_REF 0u
#define SYS_SRC_AUX 1u
#define SYS_AUX_PLL_SYS (0u << 5)
#define PERI_AUX_CLK_SYS (0u << 5)

#define XOSC_CTRL (RP_XOSC + 0x00u)
#define XOSC_STATUS (RP_XOSC + 0x04u)
#define XOSC_STARTUP (RP_XOSC + 0x0Cu)
#define XOSC_ENABLE (0xFABu << 12)
#define XOSC_RANGE_1_15MHZ 0xAA0u
#define XOSC_STABLE (1u << 31)

#define PLL_CS (RP_PLL_SYS + 0x0u)
#define PLL_PWR (RP_PLL_SYS + 0x4u)
#define PLL_FBDIV_INT (RP_PLL_SYS + 0x8u)
#define PLL_PRIM (RP_PLL_SYS + 0xCu)
#define PLL_LOCK (1u << 31)
#define PLL_PWR_PD (1u << 0)
#define PLL_PWR_POSTDIVPD (1u << 3)
#define PLL_PWR_VCOPD (1u << 5)

#define RESETS_RESET (RP_RESETS + 0x0u)
#define RESETS_DONE (RP_RESETS + 0x8u)

#define XOSC_KHZ (TSL_RP2350_XOSC_HZ / 1000u)
#define VCO_HZ ((TSL_RP2350_XOSC_HZ / TSL_RP2350_PLL_REFDIV) * TSL_RP2350_PLL_FBDIV)
#define SYS_HZ (VCO_HZ / (TSL_RP2350_PLL_POSTDIV1 * TSL_RP2350_PLL_POSTDIV2))

/* datasheet 8.6.3: FBDIV 16..320, VCO 750..1600 MHz, REFDIV 1..63 with ref >= 5 MHz, post dividers 1..7 */
_Static_assert(TSL_RP2350_PLL_FBDIV >= 16 && TSL_RP2350_PLL_FBDIV <= 320, "PLL FBDIV out of range");
_Static_assert(VCO_HZ >= 750000000u && VCO_HZ <= 1600000000u, "PLL VCO out of range");
_Static_assert(TSL_RP2350_XOSC_HZ / TSL_RP2350_PLL_REFDIV >= 5000000u, "PLL reference below 5 MHz");
_Static_assert(TSL_RP2350_PLL_POSTDIV1 >= 1 && TSL_RP2350_PLL_POSTDIV1 <= 7 && TSL_RP2350_PLL_POSTDIV2 >= 1 &&
                   TSL_RP2350_PLL_POSTDIV2 <= 7, "PLL post divider out of range");
_Static_assert(VCO_HZ % (TSL_RP2350_PLL_POSTDIV1 * TSL_RP2350_PLL_POSTDIV2) == 0, "PLL: not a whole clock");

static int wait_for(uint32_t reg, uint32_t mask, uint32_t want)
{
    for (uint32_t i = 0; i < TSL_RP2350_TRIES; i++)
        if ((TSL_REG(reg) & mask) == want) return 1;
    return 0;
}

/* take `bits` of RESETS out of reset and wait for them */
static int unreset(uint32_t bits)
{
    TSL_SET(RESETS_RESET) = bits;
    TSL_CLR(RESETS_RESET) = bits;
    return wait_for(RESETS_DONE, bits, bits);
}

const char *tsl_rp2350_clock_init(tsl_rp2350_clocks *c)
{
    c->ref = c->sys = c->peri = ROSC_HZ;
    TSL_REG(CLK_SYS_RESUS_CTRL) = 0;
    /* 1. glitchless sources first: clk_sys = clk_ref, clk_ref = ROSC */
    TSL_CLR(CLK_SYS_CTRL) = 1u;
    if (!wait_for(CLK_SYS_SELECTED, 0x3u, 1u << SYS_SRC_REF)) return "clk_sys did not take clk_ref";
    TSL_CLR(CLK_REF_CTRL) = 3u;
    if (!wait_for(CLK_REF_SELECTED, 0xFu, 1u << REF_SRC_ROSC)) return "clk_ref did not take the ROSC";
    /* 2. the crystal; STARTUP counts 256 crystal periods, here about 1 ms x 64 (pico-sdk's board margin) */
    TSL_REG(XOSC_STARTUP) = ((XOSC_KHZ + 128u) / 256u) * 64u;
    TSL_REG(XOSC_CTRL) = XOSC_ENABLE | XOSC_RANGE_1_15MHZ;
    if (!wait_for(XOSC_STATUS, XOSC_STABLE, XOSC_STABLE)) return "XOSC did not start";
    TSL_REG(CLK_REF_DIV) = DIV_1;
    TSL_REG(CLK_REF_CTRL) = REF_SRC_XOSC;
    if (!wait_for(CLK_REF_SELECTED, 0xFu, 1u << REF_SRC_XOSC)) return "clk_ref did not take the XOSC";
    c->ref = TSL_RP2350_XOSC_HZ;
    /* 3. PLL_SYS */
    if (!unreset(RP_RESET_PLL_SYS)) return "PLL_SYS did not leave reset";
    TSL_REG(PLL_CS) = TSL_RP2350_PLL_REFDIV;
    TSL_REG(PLL_FBDIV_INT) = TSL_RP2350_PLL_FBDIV;
    TSL_CLR(PLL_PWR) = PLL_PWR_PD | PLL_PWR_VCOPD;
    if (!wait_for(PLL_CS, PLL_LOCK, PLL_LOCK)) return "PLL_SYS did not lock";
    TSL_REG(PLL_PRIM) = ((uint32_t)TSL_RP2350_PLL_POSTDIV1 << 16) | ((uint32_t)TSL_RP2350_PLL_POSTDIV2 << 12);
    TSL_CLR(PLL_PWR) = PLL_PWR_POSTDIVPD;
    /* 4. clk_sys = PLL_SYS through its aux mux (changed only while clk_sys runs from clk_ref) */
    TSL_REG(CLK_SYS_DIV) = DIV_1;
    TSL_REG(CLK_SYS_CTRL) = SYS_AUX_PLL_SYS | SYS_SRC_REF;
    TSL_REG(CLK_SYS_CTRL) = SYS_AUX_PLL_SYS | SYS_SRC_AUX;
    if (!wait_for(CLK_SYS_SELECTED, 0x3u, 1u << SYS_SRC_AUX)) {
        TSL_REG(CLK_SYS_CTRL) = SYS_SRC_REF;                /* back to the crystal */
        c->sys = c->peri = TSL_RP2350_XOSC_HZ;
        return "clk_sys did not take PLL_SYS";
    }
    c->sys = SYS_HZ;
    c->peri = SYS_HZ;
    return 0;
}

/* a pad for UART use: input enabled, output enabled (OD clear), isolation off (RP2350 pads come
 * out of reset isolated); then the pin's function select */
static void pin_uart(uint32_t pin)
{
    const uint32_t pad = RP_PADS_BANK0 + 0x04u + 4u * pin;
    TSL_REG(pad) = (TSL_REG(pad) & ~(1u << 7)) | (1u << 6);   /* OD clear, IE set */
    TSL_REG(RP_IO_BANK0 + 0x04u + 8u * pin) = TSL_RP2350_UART_FUNCSEL;
    TSL_CLR(pad) = 1u << 8;                                   /* ISO clear */
}

uint32_t tsl_rp2350_uart_setup(const tsl_rp2350_clocks *c)
{
    /* clk_peri off while its source changes, then on from clk_sys */
    TSL_REG(CLK_PERI_CTRL) = 0;
    TSL_REG(CLK_PERI_DIV) = DIV_1;
    TSL_REG(CLK_PERI_CTRL) = CTRL_ENABLE | PERI_AUX_CLK_SYS;
    (void)wait_for(CLK_PERI_CTRL, CTRL_ENABLED, CTRL_ENABLED);
    (void)unreset(RP_RESET_IO_BANK0 | RP_RESET_PADS_BANK0 | RP_RESET_UART0);
    pin_uart(TSL_RP2350_UART_TX_PIN);
    pin_uart(TSL_RP2350_UART_RX_PIN);
    return c->peri;
}
