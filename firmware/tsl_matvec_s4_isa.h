/* tsl_matvec_s4_isa.h -- the ISA paths of tsl_matvec_s4.c, one file per family (private).
 *
 * tsl_s4_acc_<isa>(x, w, gs, acc, N, K) sets acc[n] = sum_{g < g0} gs[n][g] * (w4[n][g] . x[g]) for
 * n < N and returns g0 (the groups it covered, G = K / TSL_S4_GROUP or 0); tsl_matvec_s4.c adds
 * the groups g0..G-1 in its portable scalar tail. Each is defined only where its macro holds.
 * ISA paths unpack nibbles to 16 * w4 (the nibble in the high half of a byte: a shift or a mask,
 * no sign extension), so each group dot product comes out as 16 * dot, shifted right by 4 (exact)
 * before it is multiplied by its signed group scale. Bounds: |16 * dot| <= 32 * 128 * 128 per
 * group; the row sum is within the callers' K * 8 * 128 * 127 < 2^31. */
#ifndef TSL_MATVEC_S4_ISA_H
#define TSL_MATVEC_S4_ISA_H
#include "tsl_kernels.h"

#define TSL_S4_ACC_ARGS const int8_t *x, const uint8_t *w, const int8_t *gs, int32_t *acc, int32_t N, int32_t K

#if defined(TSL_ARM_MVE) || defined(TSL_ARM_DSP)
int32_t tsl_s4_acc_arm(TSL_S4_ACC_ARGS);          /* tsl_matvec_s4_arm.c */
#endif
#if defined(TSL_NEON_ANY)
int32_t tsl_s4_acc_neon(TSL_S4_ACC_ARGS);         /* tsl_matvec_s4_neon.c */
#define TSL_NEON_S4_KC 1024   /* x chunk rearranged on the stack (KC bytes); also keeps 16 * sums < 2^31 */
/* x[0:kc] (kc % 32 == 0) -> xr, ceil(kc / 128) blocks of 128 bytes (the layout of the comment in
 * tsl_matvec_s4_neon.c; also read by tsl_gemm_s4.c) */
void tsl_neon_s4_prep(const int8_t *x, int32_t kc, int8_t *xr);
#endif
#if defined(TSL_X86)
int32_t tsl_s4_acc_x86(TSL_S4_ACC_ARGS);          /* tsl_matvec_s4_x86.c */
#endif
#if defined(TSL_SWAR_MUL)
int32_t tsl_s4_acc_swar(TSL_S4_ACC_ARGS);         /* tsl_matvec_s4_swar.c */
#endif
#endif
