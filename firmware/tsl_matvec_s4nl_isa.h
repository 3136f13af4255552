/* tsl_matvec_s4nl_isa.h -- the ISA paths of tsl_matvec_s4nl.c, one file per family (private).
 *
 * tsl_s4nl_acc_<isa>(x, w, kv, gs, acc, N, K) sets acc[n] = sum_{g < g0} gs[n][g] * (kv[w4[n][g]] . x[g])
 * for n < N and returns g0 (the groups it covered: G = K / TSL_S4_GROUP, or 0); tsl_matvec_s4nl.c
 * adds the groups g0..G-1 in its portable scalar tail. Each is defined only where its macro holds.
 * Bounds: a group's dot is within 32 * 127 * 128 < 2^19; the row sum within K * max|gs| * 127 * 128
 * < 2^31, which the compiler keeps (tinyslm/int4nl.py, gmax). */
#ifndef TSL_MATVEC_S4NL_ISA_H
#define TSL_MATVEC_S4NL_ISA_H
#include "tsl_kernels.h"

#define TSL_S4NL_ACC_ARGS const int8_t *x, const uint8_t *w, const int8_t *kv, const int8_t *gs, int32_t *acc, \
    int32_t N, int32_t K

#if defined(TSL_ARM_MVE) || defined(TSL_ARM_DSP)
int32_t tsl_s4nl_acc_arm(TSL_S4NL_ACC_ARGS);      /* tsl_matvec_s4nl_arm.c */
#endif
#if defined(TSL_NEON_ANY)
int32_t tsl_s4nl_acc_neon(TSL_S4NL_ACC_ARGS);     /* tsl_matvec_s4nl_neon.c */
#endif
#if defined(TSL_X86)
int32_t tsl_s4nl_acc_x86(TSL_S4NL_ACC_ARGS);      /* tsl_matvec_s4nl_x86.c */
#endif
#endif
