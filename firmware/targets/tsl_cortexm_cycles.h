/* tsl_cortexm_cycles.h -- the cycle counter of the bare-metal Cortex-M start files (stm32_start.c,
 * rp2350_start.c): TSL_CYCLES_TARGET's tsl_cycles(), tsl_cycles_unit() and the SysTick handler.
 * DWT CYCCNT where it counts, widened to 64 bits by the SysTick interrupt every 2^24 cycles;
 * otherwise (qemu models no DWT) SysTick on the CPU clock, widened the same way. The unit string
 * says which, at what clock, and why the chip is short of its rated clock ("dwt cycles@180MHz",
 * "systick cycles@16MHz (HSI: HSE did not start)").
 *
 * Included once by the start file, after TSL_REG; TSL_CM_DWT_UNLOCK: write DWT_LAR first (the
 * Cortex-M7's software lock; Armv8-M has none). Its tsl_cycles_init() calls tsl_cm_cycles_start. */
#ifndef TSL_CORTEXM_CYCLES_H
#define TSL_CORTEXM_CYCLES_H
#include <stdint.h>

#define TSL_CM_ICSR TSL_REG(0xE000ED04u)
#define TSL_CM_DEMCR TSL_REG(0xE000EDFCu)
#define TSL_CM_DWT_CTRL TSL_REG(0xE0001000u)
#define TSL_CM_DWT_CYCCNT TSL_REG(0xE0001004u)
#define TSL_CM_DWT_LAR TSL_REG(0xE0001FB0u)
#define TSL_CM_SYST_CSR TSL_REG(0xE000E010u)
#define TSL_CM_SYST_RVR TSL_REG(0xE000E014u)
#define TSL_CM_SYST_CVR TSL_REG(0xE000E018u)

static char tsl_cm_unit[64];
static uint8_t tsl_cm_on, tsl_cm_dwt;
static volatile uint32_t tsl_cm_wraps;
static uint32_t tsl_cm_dwt_last, tsl_cm_dwt_high;

static char *tsl_cm_put(char *p, const char *s)
{
    while (*s && p < tsl_cm_unit + sizeof tsl_cm_unit - 1) *p++ = *s++;
    return p;
}

static char *tsl_cm_put_u(char *p, uint32_t v)
{
    char d[10];
    int n = 0;
    do d[n++] = (char)('0' + v % 10u); while ((v /= 10u) && n < 10);
    while (n && p < tsl_cm_unit + sizeof tsl_cm_unit - 1) *p++ = d[--n];
    return p;
}

/* cpu_hz: the clock reached; problem (0: none) follows `why` in the unit string */
static void tsl_cm_cycles_start(uint32_t cpu_hz, const char *why, const char *problem)
{
    if (tsl_cm_on) return;
    TSL_CM_DEMCR |= 1u << 24;                              /* TRCENA */
#ifdef TSL_CM_DWT_UNLOCK
    TSL_CM_DWT_LAR = 0xC5ACCE55u;
#endif
    TSL_CM_DWT_CYCCNT = 0;
    TSL_CM_DWT_CTRL |= 1u;                                 /* CYCCNTENA */
    const uint32_t a = TSL_CM_DWT_CYCCNT;
    for (volatile int i = 0; i < 16; i++) {
    }
    tsl_cm_dwt = !(TSL_CM_DWT_CTRL & (1u << 25)) && TSL_CM_DWT_CYCCNT != a;   /* NOCYCCNT clear, and it moved */
    TSL_CM_SYST_RVR = 0xFFFFFFu;
    TSL_CM_SYST_CVR = 0;
    TSL_CM_SYST_CSR = 7u;                                  /* enable, interrupt on wrap, CPU clock */
    char *p = tsl_cm_put(tsl_cm_unit, tsl_cm_dwt ? "dwt cycles@" : "systick cycles@");
    p = tsl_cm_put(tsl_cm_put_u(p, cpu_hz / 1000000u), "MHz");
    if (problem) p = tsl_cm_put(tsl_cm_put(tsl_cm_put(p, why), problem), ")");
    *p = 0;
    tsl_cm_on = 1;
}

const char *tsl_cycles_unit(void) { return tsl_cm_unit; }

uint64_t tsl_cycles(void)
{
    if (tsl_cm_dwt) {
        uint32_t primask;
        __asm volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
        const uint32_t now = TSL_CM_DWT_CYCCNT;
        if (now < tsl_cm_dwt_last) tsl_cm_dwt_high++;
        tsl_cm_dwt_last = now;
        const uint64_t r = ((uint64_t)tsl_cm_dwt_high << 32) | now;
        __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
        return r;
    }
    uint32_t w, v, pending;
    do {
        w = tsl_cm_wraps;
        v = TSL_CM_SYST_CVR;
        pending = TSL_CM_ICSR & (1u << 26);                /* PENDSTSET: a wrap not yet counted */
    } while (w != tsl_cm_wraps);
    if (pending && v >= 0x800000u) w++;                    /* it came before v was read */
    return ((uint64_t)w << 24) + (0xFFFFFFu - v);
}

void SysTick_Handler(void)
{
    tsl_cm_wraps++;
    if (tsl_cm_dwt) (void)tsl_cycles();                    /* sees every 2^32 wrap of CYCCNT */
}

#endif
