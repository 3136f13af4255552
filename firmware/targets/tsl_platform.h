/* tsl_platform.h -- a cycle counter for benchmarks, one per target family.
 *   STM32        (TSL_CYCLES_TARGET) the start-up code's counter (targets/stm32/stm32_start.c): DWT
 *                CYCCNT, or SysTick where the DWT does not count (qemu); its unit string names the
 *                clock the chip reached, and why not the rated one.
 *   Cortex-M     SysTick (24 bit, widened by the SysTick_Handler of targets/cortexm/startup.c),
 *                clocked by the CPU clock. Under qemu -icount shift=0 every instruction takes 1 ns
 *                of virtual time, so one tick = 1e9 / clock_hz instructions (40 on mps2 at 25 MHz).
 *   RISC-V       mcycle; under qemu -icount it counts instructions.
 *   AArch64 bare PMCCNTR_EL0; qemu counts it at 1 GHz of virtual time: 1 per instruction with -icount shift=0.
 *   Xtensa       CCOUNT (32 bit, widened here: read it at least once per wrap); qemu runs it at the core's
 *                clock in virtual time, so under -icount its ticks are a fixed number of instructions.
 *   Linux, host  CLOCK_MONOTONIC in ns.
 * tsl_cycles_init() once, then tsl_cycles() differences. */
#ifndef TSL_PLATFORM_H
#define TSL_PLATFORM_H
#include <stdint.h>

#if defined(TSL_CYCLES_TARGET)
void tsl_cycles_init(void);
uint64_t tsl_cycles(void);
const char *tsl_cycles_unit(void);
#define TSL_CYCLES_UNIT tsl_cycles_unit()
#elif defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M'
#define TSL_CYCLES_UNIT "systick"
extern volatile uint32_t tsl_systick_wraps;
#define TSL_SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define TSL_SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define TSL_SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static inline void tsl_cycles_init(void)
{
    TSL_SYST_RVR = 0xFFFFFFu;
    TSL_SYST_CVR = 0;
    TSL_SYST_CSR = 7u;   /* enable, interrupt on wrap, CPU clock */
}
static inline uint64_t tsl_cycles(void)
{
    uint32_t w, v;
    do { w = tsl_systick_wraps; v = TSL_SYST_CVR; } while (w != tsl_systick_wraps);
    return ((uint64_t)w << 24) + (0xFFFFFFu - v);
}
#elif defined(__riscv)
#define TSL_CYCLES_UNIT "mcycle"
/* csrr rd, csr spelled as an .insn (csrrs rd, csr, x0): -march=rv32imc has no Zicsr mnemonics.
 * The 12-bit CSR number is written as a signed immediate: mcycle 0xB00, mcycleh 0xB80. */
#define TSL_CSRR(v, csr) __asm volatile(".insn i 0x73, 2, %0, x0, " #csr : "=r"(v))
static inline void tsl_cycles_init(void) {}
static inline uint64_t tsl_cycles(void)
{
#if __riscv_xlen == 32
    uint32_t hi, lo, hi2;
    do {
        TSL_CSRR(hi, -1152);
        TSL_CSRR(lo, -1280);
        TSL_CSRR(hi2, -1152);
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
#else
    uint64_t c;
    TSL_CSRR(c, -1280);
    return c;
#endif
}
#elif defined(__aarch64__) && defined(TSL_BAREMETAL)
#define TSL_CYCLES_UNIT "pmccntr"
static inline void tsl_cycles_init(void)
{
    uint64_t r;
    __asm volatile("mrs %0, pmcr_el0" : "=r"(r));
    __asm volatile("msr pmcr_el0, %0\n isb" : : "r"(r | 1u));                 /* E: counters on */
    __asm volatile("msr pmcntenset_el0, %0\n isb" : : "r"((uint64_t)1 << 31));  /* cycle counter */
}
static inline uint64_t tsl_cycles(void)
{
    uint64_t c;
    __asm volatile("isb\n mrs %0, pmccntr_el0" : "=r"(c) : : "memory");
    return c;
}
#elif defined(__XTENSA__)
#define TSL_CYCLES_UNIT "ccount"
static uint32_t tsl_ccount_last, tsl_ccount_wraps;
static inline void tsl_cycles_init(void) {}
static inline uint64_t tsl_cycles(void)
{
    uint32_t c;
    __asm volatile("rsr %0, ccount" : "=r"(c) : : "memory");
    if (c < tsl_ccount_last) tsl_ccount_wraps++;
    tsl_ccount_last = c;
    return ((uint64_t)tsl_ccount_wraps << 32) | c;
}
#else
#define TSL_CYCLES_UNIT "ns"
#include <time.h>
static inline void tsl_cycles_init(void) {}
static inline uint64_t tsl_cycles(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
#endif

#endif
