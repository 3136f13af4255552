/* tsl_arch.h -- ISA feature macros, derived once from the compiler's own macros.
 * Kernels test only these. Define TSL_PORTABLE to force the portable C paths.
 * Host test builds: TSL_SIMDE_NEON (+ TSL_SIMDE_DOTPROD) runs the NEON paths through SIMDe,
 * TSL_EMULATE_DSP runs the Armv7E-M DSP path on portable emulations of its instructions,
 * TSL_EMULATE_SCALAR4 the RISC-V path (plain C, also taken on Xtensa) on the host,
 * TSL_EMULATE_NODSP the C of the Cortex-M path without DSP (M0/M0+/M3/M23) on the host.
 * x86-64 (GCC/Clang, any -march): AVX2 and AVX-512 VNNI paths compiled with target attributes and
 * chosen at run time (tsl_x86_level); TSL_HOST_SIMD=portable|avx2|avx512vnni caps the choice. */
#ifndef TSL_ARCH_H
#define TSL_ARCH_H
#include <stdint.h>

#if !defined(TSL_PORTABLE)
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define TSL_ARM_MVE 1
#elif (defined(__ARM_FEATURE_DSP) && defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M') || \
    defined(TSL_EMULATE_DSP)
#define TSL_ARM_DSP 1
#elif (defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M') || defined(TSL_EMULATE_NODSP)
#define TSL_ARM_NODSP 1       /* Armv6-M (M0, M0+), Armv7-M (M3), Armv8-M Baseline (M23): MUL/MLA, no SMLAD */
#elif (defined(__aarch64__) && defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)) || \
    (defined(TSL_SIMDE_NEON) && defined(TSL_SIMDE_DOTPROD))
#define TSL_NEON_DOTPROD 1
#elif (defined(__aarch64__) && defined(__ARM_NEON)) || defined(TSL_SIMDE_NEON)
#define TSL_NEON 1
#elif defined(__riscv) || defined(__XTENSA__) || defined(TSL_EMULATE_SCALAR4)
#define TSL_RISCV_SCALAR4 1   /* no SIMD (rv32imc, Xtensa LX6): 4 rows per pass sharing the x loads */
#elif defined(__x86_64__) && defined(__GNUC__)
#define TSL_X86 1
#endif
#endif

#if defined(TSL_NEON_DOTPROD) || defined(TSL_NEON)
#define TSL_NEON_ANY 1
#endif

/* Cores with a 32-bit multiplier and no SIMD: the int4 matvec packs two products into one MUL
 * (tsl_matvec_s4.c). */
#if defined(TSL_ARM_NODSP) || defined(TSL_RISCV_SCALAR4)
#define TSL_SWAR_MUL 1
#endif

/* Word loads of int8 data at any address: Armv7-M (M3) and the hosts have them; Armv6-M (M0+)
 * faults and the ESP32-C3 traps, so there the word paths need 4-aligned rows. */
#if defined(__ARM_FEATURE_UNALIGNED) || defined(__x86_64__) || defined(__aarch64__)
#define TSL_UNALIGNED_WORDS 1
#endif

#if defined(TSL_ARM_MVE)
#include <arm_mve.h>
#elif defined(TSL_NEON_ANY) && defined(TSL_SIMDE_NEON)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/arm/neon.h>
#elif defined(TSL_NEON_ANY)
#include <arm_neon.h>
#endif

#if defined(TSL_X86)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#define TSL_X86_PORTABLE 0
#define TSL_X86_AVX2 1
#define TSL_X86_VNNI 2   /* AVX-512 F + BW + VNNI (never AMX: it is not used anywhere) */

/* The path for a CPU with these features, capped by `cap` (the value of TSL_HOST_SIMD: "portable",
 * "avx2", "avx512vnni"; unset or anything else: no cap). Never above what the CPU has. */
static inline int tsl_x86_choose(int has_avx2, int has_vnni, const char *cap)
{
    const int best = has_avx2 ? (has_vnni ? TSL_X86_VNNI : TSL_X86_AVX2) : TSL_X86_PORTABLE;
    const int lim = !cap ? TSL_X86_VNNI : !strcmp(cap, "portable") ? TSL_X86_PORTABLE
                  : !strcmp(cap, "avx2") ? TSL_X86_AVX2 : TSL_X86_VNNI;
    return best < lim ? best : lim;
}

/* This CPU's path, decided once per kernel file (the environment is read once). */
static inline int tsl_x86_level(void)
{
    static int level = -1;
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) {
        __builtin_cpu_init();
        l = tsl_x86_choose(__builtin_cpu_supports("avx2"),
                           __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vnni"), getenv("TSL_HOST_SIMD"));
        __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    }
    return l;
}
#define TSL_TARGET_AVX2 __attribute__((target("avx2")))
#define TSL_TARGET_VNNI __attribute__((target("avx2,avx512f,avx512bw,avx512vnni")))
#endif

/* An unaligned 32-bit word of int8 data (LDR on Armv7-M and later). */
typedef uint32_t __attribute__((may_alias, aligned(1))) tsl_u32u;

#if defined(TSL_ARM_DSP)
/* The Armv7E-M DSP instructions used by the kernels: lanes are int16 halves of a word. */
#if defined(TSL_EMULATE_DSP)
static inline uint32_t tsl_sxtb16(uint32_t x)
{
    return (uint32_t)(uint16_t)(int16_t)(int8_t)x | ((uint32_t)(uint16_t)(int16_t)(int8_t)(x >> 16) << 16);
}
static inline uint32_t tsl_sxtb16_ror8(uint32_t x) { return tsl_sxtb16((x >> 8) | (x << 24)); }
static inline int32_t tsl_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    const int32_t lo = (int32_t)(int16_t)a * (int32_t)(int16_t)b;
    const int32_t hi = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi);   /* wraps like SMLAD */
}
#else
static inline __attribute__((always_inline)) uint32_t tsl_sxtb16(uint32_t x)
{
    uint32_t r;
    __asm("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
}
static inline __attribute__((always_inline)) uint32_t tsl_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline __attribute__((always_inline)) int32_t tsl_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t r;
    __asm("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
#endif
#endif

#endif
