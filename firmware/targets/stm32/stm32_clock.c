/* stm32_clock.c -- clock tree of STM32F4/F7 (TSL_STM32_RCC_F4: RM0090, RM0383, RM0390, RM0385) and
 * STM32H7 (TSL_STM32_RCC_H7: RM0433): voltage scale (and over-drive), HSE, PLL, flash wait states,
 * bus prescalers, switch to the PLL; then the USART's bus clock and pins.
 *
 * Every wait polls at most TSL_STM32_TRIES times. One poll is a peripheral read plus a branch,
 * >= 4 cycles, so 2^19 polls last >= 130 ms on the F4/F7's 16 MHz HSI (>= 33 ms on the H7's 64 MHz),
 * longer than any HSE or PLL start-up in the datasheets (HAL waits 100 ms). A step that does not
 * finish in time leaves the chip on HSI, which always runs: qemu's STM32F405 (netduinoplus2), which
 * models no RCC, takes that path and answers over the UART all the same. */
#include "stm32.h"

#ifndef TSL_STM32_TRIES
#define TSL_STM32_TRIES (1u << 19)
#endif
#ifndef TSL_STM32_HSE_BYPASS
#define TSL_STM32_HSE_BYPASS 0                             /* 1: external clock on OSC_IN (ST-LINK MCO), no crystal */
#endif
#ifndef TSL_STM32_OVERDRIVE
#define TSL_STM32_OVERDRIVE 0
#endif
#ifndef TSL_STM32_APB3_DIV
#define TSL_STM32_APB3_DIV TSL_STM32_APB1_DIV
#endif
#ifndef TSL_STM32_APB4_DIV
#define TSL_STM32_APB4_DIV TSL_STM32_APB1_DIV
#endif

#define REF_HZ (TSL_STM32_HSE_HZ / TSL_STM32_PLL_M)
#define VCO_HZ (REF_HZ * TSL_STM32_PLL_N)
#define SYSCLK_HZ (VCO_HZ / TSL_STM32_PLL_P)
#define HCLK_HZ (SYSCLK_HZ / TSL_STM32_AHB_DIV)
/* prescaler fields: AHB 1 -> 0, 2..512 -> 8 + log2(div) - 1; APB 1 -> 0, 2..16 -> 4 + log2(div) - 1 */
#define LOG2(d) ((d) >= 512 ? 9 : (d) >= 256 ? 8 : (d) >= 128 ? 7 : (d) >= 64 ? 6 : (d) >= 16 ? 4 : (d) >= 8 ? 3 : (d) >= 4 ? 2 : (d) >= 2 ? 1 : 0)
#define HPRE(d) ((d) == 1 ? 0u : (d) >= 64 ? 6u + LOG2(d) : 7u + LOG2(d))   /* no /32 */
#define PPRE(d) ((d) == 1 ? 0u : 3u + LOG2(d))

_Static_assert(TSL_STM32_HSE_HZ % TSL_STM32_PLL_M == 0 && VCO_HZ % TSL_STM32_PLL_P == 0, "PLL: not a whole clock");
_Static_assert(TSL_STM32_AHB_DIV != 32 && (TSL_STM32_AHB_DIV & (TSL_STM32_AHB_DIV - 1)) == 0, "AHB prescaler");
_Static_assert(TSL_STM32_APB1_DIV <= 16 && TSL_STM32_APB2_DIV <= 16, "APB prescaler");

static int wait_for(uint32_t reg, uint32_t mask, uint32_t want)
{
    for (uint32_t i = 0; i < TSL_STM32_TRIES; i++)
        if ((TSL_REG(reg) & mask) == want) return 1;
    return 0;
}

/* both families: RCC_CR bit 16 HSEON, 17 HSERDY, 18 HSEBYP (defined after the family's registers) */
static const char *hse_on(void);
static void pll_clocks(tsl_stm32_clocks *c);

static void pin_af(uint32_t gpio, uint32_t pin, uint32_t pupd)
{
    const uint32_t s2 = 2u * pin, s4 = 4u * (pin & 7u), afr = gpio + 0x20u + 4u * (pin / 8u);
    TSL_REG(afr) = (TSL_REG(afr) & ~(0xFu << s4)) | ((uint32_t)TSL_STM32_UART_AF << s4);
    TSL_REG(gpio + 0x08u) = (TSL_REG(gpio + 0x08u) & ~(3u << s2)) | (2u << s2);   /* OSPEEDR: high */
    TSL_REG(gpio + 0x0Cu) = (TSL_REG(gpio + 0x0Cu) & ~(3u << s2)) | (pupd << s2);  /* PUPDR */
    TSL_REG(gpio + 0x00u) = (TSL_REG(gpio + 0x00u) & ~(3u << s2)) | (2u << s2);   /* MODER: alternate function */
}

#if defined(TSL_STM32_RCC_F4)
/* ---- STM32F4 / STM32F7: RCC at 0x40023800, PWR at 0x40007000, FLASH at 0x40023C00 ---- */
#define RCC_BASE 0x40023800u
#define PWR_BASE 0x40007000u
#define RCC(o) TSL_REG(RCC_BASE + (o))
#define PWR(o) TSL_REG(PWR_BASE + (o))
#define FLASH_ACR TSL_REG(0x40023C00u)
#define GPIO(port) (0x40020000u + 0x400u * (port))
#define RCC_GPIOEN 0x30u                                   /* AHB1ENR: bit n = GPIO port n */
#define HSI_HZ 16000000u
enum { CR = 0x00, PLLCFGR = 0x04, CFGR = 0x08, APB1ENR = 0x40 };
enum { PWR_CR = 0x00, PWR_CSR = 0x04 };

_Static_assert(REF_HZ >= 950000 && REF_HZ <= 2100000, "PLL input (HSE / M) must be 1-2 MHz");
_Static_assert(VCO_HZ >= 100000000 && VCO_HZ <= 432000000, "VCO (HSE / M * N) must be 100-432 MHz");
_Static_assert(TSL_STM32_PLL_P % 2 == 0 && TSL_STM32_PLL_P <= 8 && TSL_STM32_PLL_Q >= 2 && TSL_STM32_PLL_Q <= 15, "PLL P, Q");

const char *tsl_stm32_clock_init(tsl_stm32_clocks *c)
{
    tsl_stm32_clock_hsi(c);
    RCC(APB1ENR) |= 1u << 28;                              /* PWREN */
    (void)RCC(APB1ENR);
    PWR(PWR_CR) = (PWR(PWR_CR) & ~(3u << 14)) | ((uint32_t)TSL_STM32_VOS << 14);
    const char *hse = hse_on();
    if (hse) return hse;
    RCC(PLLCFGR) = (RCC(PLLCFGR) & 0xF0000000u) | ((uint32_t)TSL_STM32_PLL_Q << 24) | (1u << 22) /* HSE */
                 | ((uint32_t)(TSL_STM32_PLL_P / 2 - 1) << 16) | ((uint32_t)TSL_STM32_PLL_N << 6) | TSL_STM32_PLL_M;
    RCC(CR) |= 1u << 24;                                   /* PLLON */
    if (!wait_for(RCC_BASE + CR, 1u << 25, 1u << 25)) return "PLL did not lock";
#if TSL_STM32_OVERDRIVE
    PWR(PWR_CR) |= 1u << 16;                               /* ODEN */
    if (!wait_for(PWR_BASE + PWR_CSR, 1u << 16, 1u << 16)) return "over-drive did not start";
    PWR(PWR_CR) |= 1u << 17;                               /* ODSWEN */
    if (!wait_for(PWR_BASE + PWR_CSR, 1u << 17, 1u << 17)) return "over-drive switch failed";
#endif
    FLASH_ACR = TSL_STM32_FLASH_ACR;                       /* wait states (+ prefetch, caches / ART) */
    if ((FLASH_ACR & 0xFu) != (TSL_STM32_FLASH_ACR & 0xFu)) return "flash wait states not taken";
    const uint32_t cfgr = RCC(CFGR) & ~0xFCF3u;            /* PPRE2 15:13, PPRE1 12:10, HPRE 7:4, SW 1:0 */
    RCC(CFGR) = cfgr | (PPRE(TSL_STM32_APB2_DIV) << 13) | (PPRE(TSL_STM32_APB1_DIV) << 10)
              | (HPRE(TSL_STM32_AHB_DIV) << 4) | 2u;       /* SW = PLL */
    if (!wait_for(RCC_BASE + CFGR, 0xCu, 0x8u)) {          /* SWS = PLL */
        RCC(CFGR) = cfgr;
        return "switch to the PLL failed";
    }
    pll_clocks(c);
    return 0;
}

#elif defined(TSL_STM32_RCC_H7)
/* ---- STM32H7: RCC at 0x58024400, PWR at 0x58024800, FLASH at 0x52002000, SYSCFG at 0x58000400 ---- */
#define RCC_BASE 0x58024400u
#define PWR_BASE 0x58024800u
#define RCC(o) TSL_REG(RCC_BASE + (o))
#define PWR(o) TSL_REG(PWR_BASE + (o))
#define FLASH_ACR TSL_REG(0x52002000u)
#define SYSCFG_PWRCR TSL_REG(0x5800042Cu)
#define GPIO(port) (0x58020000u + 0x400u * (port))
#define RCC_GPIOEN 0xE0u                                   /* AHB4ENR: bit n = GPIO port n */
#define HSI_HZ 64000000u
enum { CR = 0x00, CFGR = 0x10, D1CFGR = 0x18, D2CFGR = 0x1C, D3CFGR = 0x20, PLLCKSELR = 0x28,
       PLLCFGR = 0x2C, PLL1DIVR = 0x30, APB4ENR = 0xF4 };
enum { PWR_CSR1 = 0x04, PWR_CR3 = 0x0C, PWR_D3CR = 0x18 };
#ifndef TSL_STM32_PLL_R
#define TSL_STM32_PLL_R 2
#endif
/* PLL1RGE: input range 1-2, 2-4, 4-8, 8-16 MHz; the wide VCO (192-960 MHz) wants >= 2 MHz in */
#define PLL_RGE (REF_HZ >= 8000000 ? 3u : REF_HZ >= 4000000 ? 2u : REF_HZ >= 2000000 ? 1u : 0u)
_Static_assert(REF_HZ >= 2000000 && REF_HZ <= 16000000, "PLL1 input (HSE / M) must be 2-16 MHz");
_Static_assert(VCO_HZ >= 192000000 && VCO_HZ <= 960000000, "PLL1 VCO (HSE / M * N) must be 192-960 MHz");
_Static_assert(TSL_STM32_PLL_P % 2 == 0 && TSL_STM32_PLL_P <= 128 && TSL_STM32_PLL_Q <= 128, "PLL1 P (even), Q");

const char *tsl_stm32_clock_init(tsl_stm32_clocks *c)
{
    tsl_stm32_clock_hsi(c);
    PWR(PWR_CR3) = (PWR(PWR_CR3) & ~7u) | 2u;              /* supply from the LDO (SCUEN, BYPASS off) */
    if (!wait_for(PWR_BASE + PWR_CSR1, 1u << 13, 1u << 13)) return "supply (ACTVOSRDY) not ready";
    PWR(PWR_D3CR) = (PWR(PWR_D3CR) & ~(3u << 14)) | ((uint32_t)TSL_STM32_VOS << 14);
    if (!wait_for(PWR_BASE + PWR_D3CR, 1u << 13, 1u << 13)) return "voltage scale not reached";
#if TSL_STM32_OVERDRIVE
    RCC(APB4ENR) |= 1u << 1;                               /* SYSCFGEN */
    (void)RCC(APB4ENR);
    SYSCFG_PWRCR |= 1u;                                    /* ODEN: VOS1 -> VOS0 */
    if (!wait_for(PWR_BASE + PWR_D3CR, 1u << 13, 1u << 13)) return "VOS0 (over-drive) not reached";
#endif
    const char *hse = hse_on();
    if (hse) return hse;
    RCC(PLLCKSELR) = (RCC(PLLCKSELR) & ~0x3F3u) | ((uint32_t)TSL_STM32_PLL_M << 4) | 2u;   /* DIVM1, HSE */
    RCC(PLLCFGR) = (RCC(PLLCFGR) & ~0x7000Fu) | (7u << 16) | (PLL_RGE << 2);   /* P, Q, R out; wide VCO; integer */
    RCC(PLL1DIVR) = ((uint32_t)(TSL_STM32_PLL_R - 1) << 24) | ((uint32_t)(TSL_STM32_PLL_Q - 1) << 16)
                  | ((uint32_t)(TSL_STM32_PLL_P - 1) << 9) | (uint32_t)(TSL_STM32_PLL_N - 1);
    RCC(CR) |= 1u << 24;                                   /* PLL1ON */
    if (!wait_for(RCC_BASE + CR, 1u << 25, 1u << 25)) return "PLL did not lock";
    FLASH_ACR = TSL_STM32_FLASH_ACR;                       /* LATENCY 3:0, WRHIGHFREQ 5:4 */
    if ((FLASH_ACR & 0x3Fu) != (TSL_STM32_FLASH_ACR & 0x3Fu)) return "flash wait states not taken";
    /* D1CPRE /1; HPRE (AXI, AHB); D1PPRE (APB3); D2PPRE1, D2PPRE2 (APB1, APB2); D3PPRE (APB4) */
    RCC(D1CFGR) = (PPRE(TSL_STM32_APB3_DIV) << 4) | HPRE(TSL_STM32_AHB_DIV);
    RCC(D2CFGR) = (PPRE(TSL_STM32_APB2_DIV) << 8) | (PPRE(TSL_STM32_APB1_DIV) << 4);
    RCC(D3CFGR) = PPRE(TSL_STM32_APB4_DIV) << 4;
    RCC(CFGR) = (RCC(CFGR) & ~7u) | 3u;                    /* SW = PLL1 */
    if (!wait_for(RCC_BASE + CFGR, 7u << 3, 3u << 3)) {    /* SWS */
        RCC(D1CFGR) = RCC(D2CFGR) = RCC(D3CFGR) = 0;
        return "switch to the PLL failed";
    }
    pll_clocks(c);
    return 0;
}

#else
#error "board's [target.defines] needs TSL_STM32_RCC_F4 or TSL_STM32_RCC_H7"
#endif

static const char *hse_on(void)
{
    if (TSL_STM32_HSE_BYPASS) RCC(CR) |= 1u << 18;         /* HSEBYP, before HSEON */
    RCC(CR) |= 1u << 16;                                   /* HSEON */
    if (!wait_for(RCC_BASE + CR, 1u << 17, 1u << 17)) {    /* HSERDY */
        RCC(CR) &= ~((1u << 16) | (1u << 18));
        return "HSE did not start";
    }
    return 0;
}

static void pll_clocks(tsl_stm32_clocks *c)
{
    c->sysclk = SYSCLK_HZ;
    c->hclk = HCLK_HZ;
    c->pclk1 = HCLK_HZ / TSL_STM32_APB1_DIV;
    c->pclk2 = HCLK_HZ / TSL_STM32_APB2_DIV;
}

void tsl_stm32_clock_hsi(tsl_stm32_clocks *c) { c->sysclk = c->hclk = c->pclk1 = c->pclk2 = HSI_HZ; }

uint32_t tsl_stm32_uart_setup(const tsl_stm32_clocks *c)
{
    RCC(RCC_GPIOEN) |= (1u << TSL_STM32_TX_PORT) | (1u << TSL_STM32_RX_PORT);
    RCC(TSL_STM32_UART_EN_REG) |= 1u << TSL_STM32_UART_EN_BIT;
    (void)RCC(TSL_STM32_UART_EN_REG);                      /* two cycles before the USART answers */
    pin_af(GPIO(TSL_STM32_TX_PORT), TSL_STM32_TX_PIN, 0u);
    pin_af(GPIO(TSL_STM32_RX_PORT), TSL_STM32_RX_PIN, 1u); /* pull-up: idle high without a cable */
    return TSL_STM32_UART_BUS == 2 ? c->pclk2 : c->pclk1;
}
