/* tsl_matvec_s4nl_neon.c -- the NEON paths of tsl_matvec_s4nl.c (intrinsics: AArch64, and SIMDe
 * host builds), dotprod and plain.
 *
 * The layout of tsl_matvec_s4_neon.c: blocks of 4 groups (128 k, 64 weight bytes) read by an LD4
 * of 32-bit words, v_r (r < 4) lane i = bytes 4r..4r+3 of group i, i.e. k = 32i + 8r + 2t (low
 * nibbles) and + 1 (high), t < 4; x rearranged to match once per chunk by tsl_neon_s4_prep,
 * xr[block][2r + h][4i + t] = x[32i + 8r + 2t + h]. The nibbles (AND 0x0F, USHR 4) index kv in one
 * register by TBL, so each lane stays in one group and a block ends with its 4 group dots in the
 * 4 lanes, times the 4 widened scales by one MLA into the row's int32 sums. Four rows per pass
 * share the x loads; the N % 4 rows go one by one. The last G % 4 groups make a part block,
 * weights and scales copied next to zeros (x of the missing groups is zero: their levels kv[0]
 * meet zero x).
 * Per row and block of 4 x 32 MACs (GCC 12 -O2): dotprod 32 instructions, 1 LD4 + 4 x (AND, USHR,
 * 2 TBL, 2 SDOT) + a zeroing + MLA, then the scales' share (LD1 lanes, SXTL) and the loop (the
 * uniform grid's asm: 22.5). Plain NEON 51: per v_r AND, USHR, 2 TBL, SMULL, SMULL2, SMLAL, SMLAL2
 * (int16 lanes of 2 products, |.| <= 2 * 127 * 128 < 2^15) and 2 SADALP into int32; ADDP + MLA per
 * block; GCC spills an accumulator or two. Whole calls, N = 512..1536, K = 512 (qemu TCG count):
 * 0.27 instructions per MAC on dotprod (uniform grid 0.19), 0.42 on plain NEON (0.30).
 * Bounds: a lane holds one group's partial dot (< 2^19); the row sums < 2^31 by the compiler's
 * gmax (tsl_matvec_s4nl_isa.h), so the chunking (TSL_NEON_S4_KC, x on the stack) adds exactly. */
#include "tsl_matvec_s4nl_isa.h"
#include "tsl_matvec_s4_isa.h"

#if defined(TSL_NEON_ANY)
#define TSL_INLINE static inline __attribute__((always_inline))
#define TSL_UNROLL _Pragma("GCC unroll 8")   /* the constant loops below: registers, not arrays */

TSL_INLINE int32x4x4_t tsl_s4nl_ld4(const uint8_t *w)
{
#if defined(TSL_SIMDE_NEON)
    int32_t t[16];   /* SIMDe reads int32 elements: aligned copy */
    memcpy(t, w, sizeof t);
    return vld4q_s32(t);
#else
    return vld4q_s32((const int32_t *)(const void *)w);   /* LD4 has no alignment need */
#endif
}

/* a block's rearranged x, xv[2r + h] */
TSL_INLINE void tsl_s4nl_x(const int8_t *xr, int8x16_t *xv)
{
    const int8x16x4_t a = vld1q_s8_x4(xr), b = vld1q_s8_x4(xr + 64);
    TSL_UNROLL for (int i = 0; i < 4; i++) { xv[i] = a.val[i]; xv[4 + i] = b.val[i]; }
}

#if !defined(TSL_NEON_DOTPROD)
/* the levels of 16 code bytes p times x (xe even k, xo odd), lane by lane in int16: a low and a high
 * nibble's products per lane, |.| <= 2 * 127 * 128 < 2^15 (a third could overflow) */
TSL_INLINE void tsl_s4nl_mul(const uint8x16_t p, const int8x16_t xe, const int8x16_t xo, const int8x16_t kt,
                             int16x8_t *s01, int16x8_t *s23)
{
    const int8x16_t lo = vqtbl1q_s8(kt, vandq_u8(p, vdupq_n_u8(15))), hi = vqtbl1q_s8(kt, vshrq_n_u8(p, 4));
    *s01 = vmlal_s8(vmull_s8(vget_low_s8(lo), vget_low_s8(xe)), vget_low_s8(hi), vget_low_s8(xo));
    *s23 = vmlal_high_s8(vmull_high_s8(lo, xe), hi, xo);
}
#endif

/* the 4 group dots of one block (v from tsl_s4nl_ld4, xv its 8 rearranged x vectors, kt = kv) */
TSL_INLINE int32x4_t tsl_s4nl_dot4(const int32x4x4_t v, const int8x16_t *xv, const int8x16_t kt)
{
#if defined(TSL_NEON_DOTPROD)
    const uint8x16_t m = vdupq_n_u8(15);
    int32x4_t d = vdupq_n_s32(0);
    TSL_UNROLL for (int r = 0; r < 4; r++) {
        const uint8x16_t p = vreinterpretq_u8_s32(v.val[r]);
        d = vdotq_s32(d, vqtbl1q_s8(kt, vandq_u8(p, m)), xv[2 * r]);
        d = vdotq_s32(d, vqtbl1q_s8(kt, vshrq_n_u8(p, 4)), xv[2 * r + 1]);
    }
    return d;
#else
    int16x8_t s01, s23;   /* int16 lanes: g0 x 4, g1 x 4 | g2, g3 */
    tsl_s4nl_mul(vreinterpretq_u8_s32(v.val[0]), xv[0], xv[1], kt, &s01, &s23);
    int32x4_t a01 = vpaddlq_s16(s01), a23 = vpaddlq_s16(s23);   /* lanes: g0 g0 g1 g1 | g2 g2 g3 g3 */
    TSL_UNROLL for (int r = 1; r < 4; r++) {
        tsl_s4nl_mul(vreinterpretq_u8_s32(v.val[r]), xv[2 * r], xv[2 * r + 1], kt, &s01, &s23);
        a01 = vpadalq_s16(a01, s01);
        a23 = vpadalq_s16(a23, s23);
    }
    return vpaddq_s32(a01, a23);
#endif
}

/* R rows' (R = 4 or 1) 4 group scales from g[j], widened to int16: h.val[j / 2] lanes 4 (j % 2) + i
 * = g[j][i] */
TSL_INLINE int16x8x2_t tsl_s4nl_scales(const int8_t *const *g, int R)
{
#if defined(TSL_SIMDE_NEON)
    int32_t q[4] = {0, 0, 0, 0};
    TSL_UNROLL for (int j = 0; j < R; j++) memcpy(&q[j], g[j], 4);
    const int8x16_t b = vreinterpretq_s8_s32(vld1q_s32(q));
#else
    int32x4_t s = vld1q_dup_s32((const int32_t *)(const void *)g[0]);   /* LD1: no alignment need */
    if (R > 1) {
        s = vld1q_lane_s32((const int32_t *)(const void *)g[1], s, 1);
        s = vld1q_lane_s32((const int32_t *)(const void *)g[2], s, 2);
        s = vld1q_lane_s32((const int32_t *)(const void *)g[3], s, 3);
    }
    const int8x16_t b = vreinterpretq_s8_s32(s);
#endif
    const int16x8x2_t h = {{vmovl_s8(vget_low_s8(b)), vmovl_high_s8(b)}};
    return h;
}

/* row j's scales (from tsl_s4nl_scales) to int32 */
TSL_INLINE int32x4_t tsl_s4nl_scale(const int16x8x2_t h, int j)
{
    return j & 1 ? vmovl_high_s16(h.val[j >> 1]) : vmovl_s16(vget_low_s16(h.val[j >> 1]));
}

/* acc[j] = (first ? 0 : acc[j]) + sum_g gs[g] * (kv[w4[g]] . x[g]) over the chunk's groups (nb full
 * blocks, then left < 4), rows j < R ws weight bytes and gss scales apart */
TSL_INLINE void tsl_s4nl_rows(const uint8_t *w, const int8_t *g, intptr_t ws, intptr_t gss, const int8_t *xr,
                              int32_t nb, int32_t left, int8x16_t kt, int32_t *acc, int R, int first)
{
    const uint8_t *wr[4];
    const int8_t *gr[4];
    int32x4_t t[4];
    int8x16_t xv[8];
    TSL_UNROLL for (int j = 0; j < R; j++) { wr[j] = w + j * ws; gr[j] = g + j * gss; t[j] = vdupq_n_s32(0); }
    for (int32_t b = 0; b < nb; b++, xr += 128) {
        tsl_s4nl_x(xr, xv);
        const int16x8x2_t h = tsl_s4nl_scales(gr, R);
        TSL_UNROLL for (int j = 0; j < R; j++) {
            t[j] = vmlaq_s32(t[j], tsl_s4nl_dot4(tsl_s4nl_ld4(wr[j]), xv, kt), tsl_s4nl_scale(h, j));
            wr[j] += 64;
            gr[j] += 4;
            __asm volatile("" ::: "memory");   /* row by row: GCC's schedule would spill */
        }
    }
    if (left) {   /* part block: its groups next to zeros */
        uint8_t wp[64] = {0};
        int8_t gp[4] = {0, 0, 0, 0};
        const int8_t *gq[1] = {gp};
        tsl_s4nl_x(xr, xv);
        TSL_UNROLL for (int j = 0; j < R; j++) {
            memcpy(wp, wr[j], (size_t)(16 * left));
            memcpy(gp, gr[j], (size_t)left);
            t[j] = vmlaq_s32(t[j], tsl_s4nl_dot4(tsl_s4nl_ld4(wp), xv, kt), tsl_s4nl_scale(tsl_s4nl_scales(gq, 1), 0));
        }
    }
    if (R == 4) {
        int32x4_t s = vpaddq_s32(vpaddq_s32(t[0], t[1]), vpaddq_s32(t[2], t[3]));
        if (!first) s = vaddq_s32(s, vld1q_s32(acc));
        vst1q_s32(acc, s);
    } else {
        acc[0] = (first ? 0 : acc[0]) + vaddvq_s32(t[0]);
    }
}

int32_t tsl_s4nl_acc_neon(TSL_S4NL_ACC_ARGS)
{
    const int32_t G = K / TSL_S4_GROUP;
    const int8x16_t kt = vld1q_s8(kv);
    int8_t xr[TSL_NEON_S4_KC];
    for (int32_t c = 0; c < K; c += TSL_NEON_S4_KC) {
        const int32_t kc = K - c < TSL_NEON_S4_KC ? K - c : TSL_NEON_S4_KC;
        const int32_t nb = kc / 128, left = (kc % 128) / TSL_S4_GROUP;
        tsl_neon_s4_prep(x + c, kc, xr);
        int32_t n = 0;
        for (; n + 4 <= N; n += 4)
            tsl_s4nl_rows(w + (intptr_t)n * (K / 2) + c / 2, gs + (intptr_t)n * G + c / TSL_S4_GROUP, K / 2, G, xr,
                          nb, left, kt, acc + n, 4, c == 0);
        for (; n < N; n++)
            tsl_s4nl_rows(w + (intptr_t)n * (K / 2) + c / 2, gs + (intptr_t)n * G + c / TSL_S4_GROUP, 0, 0, xr,
                          nb, left, kt, acc + n, 1, c == 0);
    }
    return G;
}
#else
typedef int tsl_matvec_s4nl_neon_unused;   /* ISO C: no empty translation unit */
#endif
