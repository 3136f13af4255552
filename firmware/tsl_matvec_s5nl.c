/* tsl_matvec_s5nl.c -- 5-bit codes on a non-linear grid x int8: each code indexes one of the
 * tensor's 32 int8 levels kv (tinyslm/int4nl.py, s5nl); group scales and row scales as
 * tsl_matvec_s4nl.c. Layout: w [N][G][20], per group of 32 k the 16 bytes of low nibbles as s4nl's
 * (k = 2j low, 2j + 1 high), then the fifth bits as a little-endian uint32 (bit k).
 * Paths: NEON (AArch64, and SIMDe host builds): a whole row per call, every group (K % 32 == 0: no
 * tail); the portable loop everywhere else (no DSP, Helium, x86 or RISC-V path yet). */
#include <string.h>
#include "tsl_kernels.h"
#include "tsl_epilogue.h"

#define TSL_S5_GROUP_BYTES 20

/* sum over one group: |dot| <= 32 * 127 * 128 < 2^19 */
static int32_t tsl_dot_s5nl_group(const uint8_t *w, const int8_t *kv, const int8_t *x)
{
    const uint32_t hb = (uint32_t)w[16] | (uint32_t)w[17] << 8 | (uint32_t)w[18] << 16 | (uint32_t)w[19] << 24;
    int32_t acc = 0;
    for (int32_t j = 0; j < TSL_S4_GROUP / 2; j++) {
        const uint32_t c0 = (w[j] & 15u) | ((hb >> (2 * j)) & 1u) << 4;
        const uint32_t c1 = (uint32_t)(w[j] >> 4) | ((hb >> (2 * j + 1)) & 1u) << 4;
        acc += (int32_t)kv[c0] * (int32_t)x[2 * j] + (int32_t)kv[c1] * (int32_t)x[2 * j + 1];
    }
    return acc;
}

#if defined(TSL_NEON_ANY)
/* One row, group by group: the 16 nibble bytes (AND 0x0F, USHR 4: the codes of even and odd k), the
 * fifth bits spread to the lanes by TBL (lane j reads byte j / 4) and tested against bits 2 (j % 4)
 * and 2 (j % 4) + 1, the 32 levels by a two-register TBL, x de-interleaved by LD2. dotprod: 2 SDOT
 * per group; plain NEON: SMULL/SMLAL pairs (|.| <= 2 * 127 * 128 < 2^15) and SADALP. Each lane adds
 * its share times the group scale (MLA); a lane's sum is within the row's bound (< 2^31). */
static int32_t tsl_s5nl_row_neon(const uint8_t *w, const int8_t *gs, const int8x16x2_t kt, const int8_t *x,
                                 int32_t G)
{
    static const uint8_t spread[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    static const uint8_t even[16] = {1, 4, 16, 64, 1, 4, 16, 64, 1, 4, 16, 64, 1, 4, 16, 64};
    const uint8x16_t sp = vld1q_u8(spread), me = vld1q_u8(even), mo = vshlq_n_u8(me, 1);
    const uint8x16_t m15 = vdupq_n_u8(15), m16 = vdupq_n_u8(16);
    int32x4_t acc = vdupq_n_s32(0);
    for (int32_t g = 0; g < G; g++, w += TSL_S5_GROUP_BYTES, x += TSL_S4_GROUP) {
        uint32_t h;
        memcpy(&h, w + 16, 4);                      /* little-endian: byte b holds bits 8b..8b+7 */
        const uint8x16_t b = vqtbl1q_u8(vreinterpretq_u8_u32(vdupq_n_u32(h)), sp);
        const uint8x16_t p = vld1q_u8(w);
        const uint8x16_t ce = vorrq_u8(vandq_u8(p, m15), vandq_u8(vtstq_u8(b, me), m16));
        const uint8x16_t co = vorrq_u8(vshrq_n_u8(p, 4), vandq_u8(vtstq_u8(b, mo), m16));
        const int8x16_t le = vqtbl2q_s8(kt, ce), lo = vqtbl2q_s8(kt, co);
        const int8x16x2_t xv = vld2q_s8(x);
#if defined(TSL_NEON_DOTPROD)
        const int32x4_t d = vdotq_s32(vdotq_s32(vdupq_n_s32(0), le, xv.val[0]), lo, xv.val[1]);
#else
        const int16x8_t s0 = vmlal_s8(vmull_s8(vget_low_s8(le), vget_low_s8(xv.val[0])), vget_low_s8(lo),
                                      vget_low_s8(xv.val[1]));
        const int16x8_t s1 = vmlal_high_s8(vmull_high_s8(le, xv.val[0]), lo, xv.val[1]);
        const int32x4_t d = vpadalq_s16(vpaddlq_s16(s0), s1);
#endif
        acc = vmlaq_n_s32(acc, d, (int32_t)gs[g]);
    }
    return vaddvq_s32(acc);
}
#endif

/* dst[n] = sum_g gs[n][g] * (kv[w5[n][g]] . x[g]); the row sums stay < 2^31 by the compiler's gmax */
void tsl_matvec_s5nl_s32(const int8_t *x, const uint8_t *w, const int8_t *kv, const int8_t *gs, int32_t *dst,
                         int32_t N, int32_t K)
{
    const int32_t G = K / TSL_S4_GROUP;
#if defined(TSL_NEON_ANY)
    const int8x16x2_t kt = {{vld1q_s8(kv), vld1q_s8(kv + 16)}};
    for (int32_t n = 0; n < N; n++)
        dst[n] = tsl_s5nl_row_neon(w + (intptr_t)n * G * TSL_S5_GROUP_BYTES, gs + (intptr_t)n * G, kt, x, G);
    return;
#endif
    for (int32_t n = 0; n < N; n++) {
        const uint8_t *wr = w + (intptr_t)n * G * TSL_S5_GROUP_BYTES;
        const int8_t *gr = gs + (intptr_t)n * G;
        int32_t a = 0;
        for (int32_t g = 0; g < G; g++)
            a += (int32_t)gr[g] * tsl_dot_s5nl_group(wr + g * TSL_S5_GROUP_BYTES, kv, x + g * TSL_S4_GROUP);
        dst[n] = a;
    }
}

#define TSL_S5_ROW_BLOCK 128

void tsl_matvec_s5nl_f32(const int8_t *x, float sx, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                         const float *ws, const float *bias, float *dst, int32_t N, int32_t K, int32_t accumulate)
{
    int32_t acc[TSL_S5_ROW_BLOCK];
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t n0 = 0; n0 < N; n0 += TSL_S5_ROW_BLOCK) {
        const int32_t nb = N - n0 < TSL_S5_ROW_BLOCK ? N - n0 : TSL_S5_ROW_BLOCK;
        tsl_matvec_s5nl_s32(x, w + (intptr_t)n0 * G * TSL_S5_GROUP_BYTES, kv, gs + (intptr_t)n0 * G, acc, nb, K);
        tsl_epilogue(acc, sx, ws + n0, bias ? bias + n0 : 0, dst + n0, nb, accumulate);
    }
}
