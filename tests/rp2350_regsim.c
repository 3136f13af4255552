/* rp2350_regsim.c -- firmware/targets/rp2350/rp2350_clock.c and the PL011 branch of
 * firmware/uart/tsl_uart.c on the host, against simulated registers. Before every access the
 * "hardware" answers the last writes as the RP2350 datasheet describes: atomic SET/CLR/XOR aliases
 * land on their register, RESET_DONE follows RESET, XOSC STATUS.STABLE follows its enable,
 * PLL CS.LOCK follows power-up with a feedback divider, SELECTED follows each CTRL.SRC, clk_peri
 * ENABLED follows ENABLE. -DSIM_NO_XOSC: the crystal never starts. Prints the result, the clocks,
 * every register touched, then the UART's registers after tsl_uart_init(clk_peri). */
#include <stdint.h>
#include <stdio.h>

static struct { uint32_t addr, val; } regs[256];
static int n_regs;

static uint32_t *slot(uint32_t a)
{
    for (int i = 0; i < n_regs; i++)
        if (regs[i].addr == a) return &regs[i].val;
    regs[n_regs].addr = a;
    /* out of reset: every block in reset, pads isolated with IE clear, clk_sys on clk_ref */
    regs[n_regs].val = a == 0x40020000u ? 0x1FFFFFFFu : (a >= 0x40038004u && a < 0x40038080u) ? 0x116u
                     : a == 0x40050004u ? 0x2Du : a == 0x40010038u || a == 0x40010044u ? 1u : 0;
    return &regs[n_regs++].val;
}

static void hardware(void)
{
    for (int i = 0; i < n_regs; i++) {               /* the atomic aliases of each 4 KiB register block */
        const uint32_t a = regs[i].addr, kind = (a >> 12) & 3u, v = regs[i].val;
        if (a < 0x40000000u || kind == 0 || v == 0) continue;
        uint32_t *r = slot(a & ~0x3000u);
        *r = kind == 1 ? *r ^ v : kind == 2 ? *r | v : *r & ~v;
        regs[i].val = 0;
    }
    *slot(0x40020008u) = ~*slot(0x40020000u) & 0x1FFFFFFFu;                  /* RESET_DONE */
#ifndef SIM_NO_XOSC
    if ((*slot(0x40048000u) >> 12) == 0xFABu) *slot(0x40048004u) |= 1u << 31;   /* XOSC stable */
#endif
    uint32_t *cs = slot(0x40050000u);
    if (!(*slot(0x40050004u) & 0x21u) && *slot(0x40050008u) && !(*slot(0x40020000u) & (1u << 14)))
        *cs |= 1u << 31;                                                      /* PLL lock */
    const uint32_t ref = *slot(0x40010030u) & 3u, sys = *slot(0x4001003Cu) & 1u;
    *slot(0x40010038u) = ref == 2u && !(*slot(0x40048004u) >> 31) ? 0u : 1u << ref;   /* no XOSC: never selected */
    *slot(0x40010044u) = sys == 1u && !(*cs >> 31) ? 0u : 1u << sys;
    uint32_t *peri = slot(0x40010048u);
    *peri = (*peri & ~(1u << 28)) | ((*peri >> 11 & 1u) << 28);
}

static uint32_t *sim(uint32_t a)
{
    hardware();
    return slot(a);
}

#define TSL_REG(a) (*sim(a))
#include "rp2350_clock.c"

static uint32_t uart[0x40 / 4];
#define TSL_UART_BASE ((uintptr_t)uart)
#include "tsl_uart.c"

int main(void)
{
    tsl_rp2350_clocks c;
    const char *problem = tsl_rp2350_clock_init(&c);
    const uint32_t uart_hz = tsl_rp2350_uart_setup(&c);
    hardware();
    printf("problem %s\n", problem ? problem : "-");
    printf("clocks %u %u %u %u\n", (unsigned)c.ref, (unsigned)c.sys, (unsigned)c.peri, (unsigned)uart_hz);
    for (int i = 0; i < n_regs; i++)
        if (!(regs[i].addr & 0x3000u)) printf("reg %08x %08x\n", (unsigned)regs[i].addr, (unsigned)regs[i].val);
    tsl_uart_init(uart_hz);
    uart[0] = 0x5A;                                  /* DR: a byte waiting, FR.RXFE clear */
    printf("got %d\n", tsl_uart_getc());
    uart[0x18 / 4] = 0;
    tsl_uart_write((const uint8_t *)"\x22", 1);
    for (int o = 0; o < 0x34; o += 4) printf("uart %02x %08x\n", o, (unsigned)uart[o / 4]);
    return 0;
}
