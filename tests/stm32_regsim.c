/* stm32_regsim.c -- firmware/targets/stm32/stm32_clock.c on the host, against simulated registers.
 * Every register access goes through sim(): before it, the "hardware" answers the last writes
 * (ready flags follow their enable bits, SWS follows SW), as RM0090/RM0390/RM0385 (F4/F7) and
 * RM0433 (H7) describe. -DSIM_NO_HSE: the oscillator never starts (qemu's case).
 * Prints the clock_init result, the clocks, the USART clock and every register touched. */
#include <stdint.h>
#include <stdio.h>

static struct { uint32_t addr, val; } regs[128];
static int n_regs;

static uint32_t *slot(uint32_t a)
{
    for (int i = 0; i < n_regs; i++)
        if (regs[i].addr == a) return &regs[i].val;
    regs[n_regs].addr = a;
#if defined(TSL_STM32_RCC_F4)
    regs[n_regs].val = a == 0x40023804u ? 0x24003010u : a == 0x40023800u ? 0x83u : 0;   /* PLLCFGR, CR reset */
#else
    regs[n_regs].val = a == 0x58024400u ? 0x25u : a == 0x5802442Cu ? 0x01FF0000u : a == 0x5802440Cu ? 6u : 0;
#endif
    return &regs[n_regs++].val;
}

static void hardware(void)
{
#if defined(TSL_STM32_RCC_F4)
    uint32_t *cr = slot(0x40023800u), *cfgr = slot(0x40023808u), *pwr_cr = slot(0x40007000u), *csr = slot(0x40007004u);
#ifndef SIM_NO_HSE
    if (*cr & (1u << 16)) *cr |= 1u << 17;
#endif
    if (*cr & (1u << 24) && *cr & (1u << 17)) *cr |= 1u << 25;
    *cfgr = (*cfgr & ~0xCu) | ((*cfgr & 3u) << 2);
    *csr = (*csr & ~(3u << 16)) | (*pwr_cr & (3u << 16));
#else
    uint32_t *cr = slot(0x58024400u), *cfgr = slot(0x58024410u), *csr1 = slot(0x58024804u), *d3cr = slot(0x58024818u);
#ifndef SIM_NO_HSE
    if (*cr & (1u << 16)) *cr |= 1u << 17;
#endif
    if (*cr & (1u << 24) && *cr & (1u << 17)) *cr |= 1u << 25;
    *cfgr = (*cfgr & ~(7u << 3)) | ((*cfgr & 7u) << 3);
    *csr1 |= 1u << 13;
    *d3cr |= 1u << 13;
#endif
}

static volatile uint32_t *sim(uint32_t a)
{
    hardware();
    return slot(a);
}

#define TSL_REG(a) (*sim(a))
#include "stm32_clock.c"

int main(void)
{
    tsl_stm32_clocks c;
    const char *problem = tsl_stm32_clock_init(&c);
    const uint32_t uart = tsl_stm32_uart_setup(&c);
    hardware();
    printf("problem %s\n", problem ? problem : "-");
    printf("clocks %u %u %u %u %u\n", (unsigned)c.sysclk, (unsigned)c.hclk, (unsigned)c.pclk1, (unsigned)c.pclk2, (unsigned)uart);
    for (int i = 0; i < n_regs; i++) printf("reg 0x%08x 0x%08x\n", (unsigned)regs[i].addr, (unsigned)regs[i].val);
    return 0;
}
