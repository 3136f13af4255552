/* tsl_arch.h -- ISA feature macros, derived once from the compiler's own macros.
 * Kernels test only these. Define TSL_PORTABLE to force the portable C paths. */
#ifndef TSL_ARCH_H
#define TSL_ARCH_H

#if !defined(TSL_PORTABLE)
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define TSL_ARM_MVE 1
#elif defined(__ARM_FEATURE_DSP) && !defined(__aarch64__)
#define TSL_ARM_DSP 1
#elif defined(__aarch64__) && defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)
#define TSL_NEON_DOTPROD 1
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define TSL_NEON 1
#endif
#endif

#endif
