/* tsl_matvec_s4_neon.c -- the NEON paths of tsl_matvec_s4.c: AArch64 asm (dotprod and plain),
 * the intrinsics form for SIMDe host builds. */
#include "tsl_matvec_s4_isa.h"

#if defined(TSL_NEON_ANY)
/* Blocks of 4 groups (128 k, 64 weight bytes), the weights read as they are stored: LD4 of 32-bit
 * words gives v_r (r < 4) whose lane i holds bytes 4r..4r+3 of group i, i.e. k = 8r + 2t (low
 * nibbles) and 8r + 2t + 1 (high), t < 4, of group i. So every SDOT lane stays in one group, and
 * a block ends with the 4 group sums in the 4 lanes, scaled by one MLA. x is rearranged to match
 * once per chunk: xr[block][2r + h][4i + t] = x[32i + 8r + 2t + h]. The last G % 4 groups make a
 * part block: their weights and scales loaded alone (lane loads, nothing past the row is read),
 * the missing groups' x zero. */

void tsl_neon_s4_prep(const int8_t *x, int32_t kc, int8_t *xr)
{
    int8_t xp[128];
    for (int32_t c = 0; c < kc; c += 128, x += 128, xr += 128) {
        const int8_t *xb = x;
        if (kc - c < 128) {   /* part block: the missing groups' x are zero */
            memset(xp, 0, sizeof xp);
            memcpy(xp, x, (size_t)(kc - c));
            xb = xp;
        }
        int8_t ev[64], od[64];   /* group i's even k at ev[16i..], odd at od[16i..] */
        const int8x16x2_t v0 = vld2q_s8(xb), v1 = vld2q_s8(xb + 32), v2 = vld2q_s8(xb + 64), v3 = vld2q_s8(xb + 96);
        vst1q_s8(ev, v0.val[0]); vst1q_s8(ev + 16, v1.val[0]); vst1q_s8(ev + 32, v2.val[0]); vst1q_s8(ev + 48, v3.val[0]);
        vst1q_s8(od, v0.val[1]); vst1q_s8(od + 16, v1.val[1]); vst1q_s8(od + 32, v2.val[1]); vst1q_s8(od + 48, v3.val[1]);
        const int32x4x4_t e = vld4q_s32((const int32_t *)(const void *)ev);   /* e_r lane i: word r of group i */
        const int32x4x4_t o = vld4q_s32((const int32_t *)(const void *)od);
        vst1q_s32((int32_t *)(void *)xr, e.val[0]); vst1q_s32((int32_t *)(void *)(xr + 16), o.val[0]);
        vst1q_s32((int32_t *)(void *)(xr + 32), e.val[1]); vst1q_s32((int32_t *)(void *)(xr + 48), o.val[1]);
        vst1q_s32((int32_t *)(void *)(xr + 64), e.val[2]); vst1q_s32((int32_t *)(void *)(xr + 80), o.val[2]);
        vst1q_s32((int32_t *)(void *)(xr + 96), e.val[3]); vst1q_s32((int32_t *)(void *)(xr + 112), o.val[3]);
    }
}

#if !defined(__aarch64__) || defined(TSL_SIMDE_NEON)
/* sum_g gs[g] * (w4[g] . x[g]) over ng groups of one row (x rearranged in xr): the intrinsics form
 * of tsl_a64_s4_rows4 below (SIMDe host builds); a part block is copied next to zeros first.
 * Dotprod: SDOT of 16 * nibbles (a shift or a mask, no sign extension) into 16 * sums, shifted back
 * at the end (exact: multiples of 16; |.| < 2^31 for a chunk of TSL_NEON_S4_KC). Plain NEON:
 * sign-extended nibbles, SMLAL into int16 lanes (8 products of at most 8 * 128), SADDLP + ADDP to
 * the 4 group sums. */
static int32_t tsl_neon_s4_row(const uint8_t *w, const int8_t *gs, const int8_t *xr, int32_t ng)
{
    int32x4_t tot = vdupq_n_s32(0);
    for (int32_t b = 0; 4 * b < ng; b++, w += 64, xr += 128) {
        const int32_t left = ng - 4 * b < 4 ? ng - 4 * b : 4;
        uint8_t wp[64] = {0};
        int8_t gp[4] = {0, 0, 0, 0};
        memcpy(wp, w, (size_t)(16 * left));
        memcpy(gp, gs + 4 * b, (size_t)left);
        const int32x4x4_t v = vld4q_s32((const int32_t *)(const void *)wp);
        int32_t g4;
        memcpy(&g4, gp, 4);
        const int32x4_t gv = vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(g4)))));
#if defined(TSL_NEON_DOTPROD)
        int32x4_t d = vdupq_n_s32(0);
        for (int32_t r = 0; r < 4; r++) {
            const int8x16_t p = vreinterpretq_s8_s32(v.val[r]);
            d = vdotq_s32(d, vshlq_n_s8(p, 4), vld1q_s8(xr + 32 * r));
            d = vdotq_s32(d, vandq_s8(p, vdupq_n_s8((int8_t)0xF0)), vld1q_s8(xr + 32 * r + 16));
        }
#else
        int16x8_t a01 = vdupq_n_s16(0), a23 = a01;   /* int16 lanes: groups 0, 1 | 2, 3 */
        for (int32_t r = 0; r < 4; r++) {
            const int8x16_t p = vreinterpretq_s8_s32(v.val[r]);
            const int8x16_t lo = vshrq_n_s8(vshlq_n_s8(p, 4), 4), hi = vshrq_n_s8(p, 4);
            const int8x16_t xe = vld1q_s8(xr + 32 * r), xo = vld1q_s8(xr + 32 * r + 16);
            a01 = vmlal_s8(vmlal_s8(a01, vget_low_s8(lo), vget_low_s8(xe)), vget_low_s8(hi), vget_low_s8(xo));
            a23 = vmlal_high_s8(vmlal_high_s8(a23, lo, xe), hi, xo);
        }
        const int32x4_t d = vpaddq_s32(vpaddlq_s16(a01), vpaddlq_s16(a23));
#endif
        tot = vmlaq_s32(tot, d, gv);
    }
#if defined(TSL_NEON_DOTPROD)
    return vaddvq_s32(tot) >> 4;
#else
    return vaddvq_s32(tot);
#endif
}
#else
/* Rows in fours, the hot loop of the AArch64 int4 paths: for q < nq, acc[4q + j] = (first ? 0 :
 * acc[4q + j]) + the tsl_neon_s4_row sum of row 4q + j (rows ws weight bytes and gss scales apart;
 * ws = gss = 0 repeats one row), nb full blocks and a part block of left (0..3) groups from w, g.
 * Per block: x in v0-v7 (two 4-register loads for four rows), the four rows' scales, then per row
 * an LD4 of its 64 weight bytes (v16-v19), the 8 nibble vectors each unpacked by one SHL or AND
 * (dotprod: 90 instructions per 4 x 128 MACs, of which 64 are the unpacks and SDOTs) or SHL + SSHR
 * / SSHR and two SMULL/SMLAL (plain NEON) into the block sum v21, times the widened scales (v20)
 * into the row sums v24-v27. A part block loads its groups by lanes (lanes of missing groups meet
 * zero x). What is left above the SDOT floor per row and block: the LD4, the zeroing of v21, the
 * MLA and the scales' SXTL (with 4-row scale loads): the group scales, not the nibbles. */
#if defined(TSL_NEON_DOTPROD)
#define TSL_S4_NIB(p, xe, xo, mul)                                                             \
    "shl v23.16b, " p ".16b, #4\n and " p ".16b, " p ".16b, v31.16b\n"                         \
    "sdot v21.4s, v23.16b, " xe ".16b\n sdot v21.4s, " p ".16b, " xo ".16b\n"
#define TSL_S4_BLOCK_START "movi v21.4s, #0\n"
#define TSL_S4_BLOCK_END ""
#define TSL_S4_BACK "sshr v24.4s, v24.4s, #4\n"
#else
#define TSL_S4_NIB(p, xe, xo, mul)                                                             \
    "shl v23.16b, " p ".16b, #4\n sshr v23.16b, v23.16b, #4\n sshr " p ".16b, " p ".16b, #4\n" \
    mul " v21.8h, v23.8b, " xe ".8b\n " mul "2 v22.8h, v23.16b, " xe ".16b\n"                 \
    "smlal v21.8h, " p ".8b, " xo ".8b\n smlal2 v22.8h, " p ".16b, " xo ".16b\n"
#define TSL_S4_BLOCK_START ""
#define TSL_S4_BLOCK_END "saddlp v21.4s, v21.8h\n saddlp v22.4s, v22.8h\n addp v21.4s, v21.4s, v22.4s\n"
#define TSL_S4_BACK ""
#endif
#define TSL_S4_CORE(t, widen) TSL_S4_BLOCK_START                                               \
    TSL_S4_NIB("v16", "v0", "v1", "smull") TSL_S4_NIB("v17", "v2", "v3", "smlal")               \
    TSL_S4_NIB("v18", "v4", "v5", "smlal") TSL_S4_NIB("v19", "v6", "v7", "smlal")               \
    TSL_S4_BLOCK_END widen "mla " t ".4s, v21.4s, v20.4s\n"
#define TSL_S4_MATH(t) TSL_S4_CORE(t, "sxtl v20.8h, v20.8b\n sxtl v20.4s, v20.4h\n")
/* A full block of four rows: their 16 scales in v29 by lanes, widened twice (v30: rows 0-1, v29:
 * rows 2-3), then each row's four to v20 by one SXTL. */
#define TSL_S4_LD(w) "ld4 {v16.4s-v19.4s}, [%[" w "]], #64\n"
#define TSL_S4_QUAD_FULL "ldr s29, [%[g0]], #4\n ld1 {v29.s}[1], [%[g1]], #4\n ld1 {v29.s}[2], [%[g2]], #4\n"   \
    "ld1 {v29.s}[3], [%[g3]], #4\n sxtl v30.8h, v29.8b\n sxtl2 v29.8h, v29.16b\n"                            \
    TSL_S4_LD("w0") TSL_S4_CORE("v24", "sxtl v20.4s, v30.4h\n") TSL_S4_LD("w1") TSL_S4_CORE("v25", "sxtl2 v20.4s, v30.8h\n") \
    TSL_S4_LD("w2") TSL_S4_CORE("v26", "sxtl v20.4s, v29.4h\n") TSL_S4_LD("w3") TSL_S4_CORE("v27", "sxtl2 v20.4s, v29.8h\n")
#define TSL_S4_ROW1(w, g, t) "ld4 {v16.s-v19.s}[0], [%[" w "]]\n ldr b20, [%[" g "]]\n" TSL_S4_MATH(t)
#if defined(TSL_NEON_DOTPROD)
/* Two groups: the halves of v16 | v17 and v18 | v19 in one register each (x zipped alike, once per
 * four rows), so 4 SDOTs give lanes (g0, g1, g0, g1), scaled by (s0, s1, s0, s1). */
#define TSL_S4_X2 "zip1 v0.2d, v0.2d, v2.2d\n zip1 v1.2d, v1.2d, v3.2d\n zip1 v4.2d, v4.2d, v6.2d\n zip1 v5.2d, v5.2d, v7.2d\n"
#define TSL_S4_ROW2(w, g, t) "ld4 {v16.2s-v19.2s}, [%[" w "]]\n ldr h20, [%[" g "]]\n"                 \
    "zip1 v16.2d, v16.2d, v17.2d\n zip1 v18.2d, v18.2d, v19.2d\n movi v21.4s, #0\n"                     \
    TSL_S4_NIB("v16", "v0", "v1", "") TSL_S4_NIB("v18", "v4", "v5", "")                                    \
    "sxtl v20.8h, v20.8b\n sxtl v20.4s, v20.4h\n dup v20.2d, v20.d[0]\n mla " t ".4s, v21.4s, v20.4s\n"
#else
#define TSL_S4_X2 ""
#define TSL_S4_ROW2(w, g, t) "ld4 {v16.2s-v19.2s}, [%[" w "]]\n ldr h20, [%[" g "]]\n" TSL_S4_MATH(t)
#endif
#define TSL_S4_ROW3(w, g, t) "ld4 {v16.2s-v19.2s}, [%[" w "]], #32\n ld4 {v16.s-v19.s}[2], [%[" w "]]\n" \
    "ldr h20, [%[" g "]], #2\n ld1 {v20.b}[2], [%[" g "]]\n" TSL_S4_MATH(t)
#define TSL_S4_QUAD(ROW) ROW("w0", "g0", "v24") ROW("w1", "g1", "v25") ROW("w2", "g2", "v26") ROW("w3", "g3", "v27")
static void tsl_a64_s4_rows4(const uint8_t *w, const int8_t *g, int64_t ws, int64_t gss, const int8_t *xr,
                             int64_t nb, int64_t left, int32_t *acc, int64_t nq, int64_t first)
{
    const uint8_t *w0, *w1, *w2, *w3;
    const int8_t *g0, *g1, *g2, *g3, *xp;
    int64_t cnt;
    __asm volatile(
        "movi v31.16b, #0xf0\n"
        "1:\n"
        "mov %[w0], %[w]\n add %[w1], %[w0], %[ws]\n add %[w2], %[w1], %[ws]\n add %[w3], %[w2], %[ws]\n"
        "mov %[g0], %[g]\n add %[g1], %[g0], %[gss]\n add %[g2], %[g1], %[gss]\n add %[g3], %[g2], %[gss]\n"
        "add %[w], %[w3], %[ws]\n add %[g], %[g3], %[gss]\n"
        "mov %[xp], %[xr]\n mov %[cnt], %[nb]\n"
        "movi v24.4s, #0\n movi v25.4s, #0\n movi v26.4s, #0\n movi v27.4s, #0\n"
        "cbz %[cnt], 3f\n"
        "2:\n"
        "ld1 {v0.16b-v3.16b}, [%[xp]], #64\n ld1 {v4.16b-v7.16b}, [%[xp]], #64\n"
        TSL_S4_QUAD_FULL
        "subs %[cnt], %[cnt], #1\n b.ne 2b\n"
        "3:\n"
        "cbz %[left], 6f\n"
        "ld1 {v0.16b-v3.16b}, [%[xp]], #64\n ld1 {v4.16b-v7.16b}, [%[xp]]\n"
        "cmp %[left], #2\n b.lt 4f\n b.eq 5f\n"
        TSL_S4_QUAD(TSL_S4_ROW3) "b 6f\n"
        "4:\n" TSL_S4_QUAD(TSL_S4_ROW1) "b 6f\n"
        "5:\n" TSL_S4_X2 TSL_S4_QUAD(TSL_S4_ROW2)
        "6:\n"
        "addp v24.4s, v24.4s, v25.4s\n addp v26.4s, v26.4s, v27.4s\n addp v24.4s, v24.4s, v26.4s\n"
        TSL_S4_BACK
        "cbnz %[first], 7f\n ld1 {v28.4s}, [%[acc]]\n add v24.4s, v24.4s, v28.4s\n"
        "7:\n st1 {v24.4s}, [%[acc]], #16\n"
        "subs %[nq], %[nq], #1\n b.ne 1b\n"
        : [w] "+r"(w), [g] "+r"(g), [acc] "+r"(acc), [nq] "+r"(nq), [w0] "=&r"(w0), [w1] "=&r"(w1),
          [w2] "=&r"(w2), [w3] "=&r"(w3), [g0] "=&r"(g0), [g1] "=&r"(g1), [g2] "=&r"(g2), [g3] "=&r"(g3),
          [xp] "=&r"(xp), [cnt] "=&r"(cnt)
        : [ws] "r"(ws), [gss] "r"(gss), [xr] "r"(xr), [nb] "r"(nb), [left] "r"(left), [first] "r"(first)
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17", "v18", "v19", "v20", "v21", "v22",
          "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31", "cc", "memory");
}
#undef TSL_S4_NIB
#undef TSL_S4_BLOCK_START
#undef TSL_S4_BLOCK_END
#undef TSL_S4_BACK
#undef TSL_S4_MATH
#undef TSL_S4_CORE
#undef TSL_S4_LD
#undef TSL_S4_QUAD_FULL
#undef TSL_S4_X2
#undef TSL_S4_ROW1
#undef TSL_S4_ROW2
#undef TSL_S4_ROW3
#undef TSL_S4_QUAD
#endif

int32_t tsl_s4_acc_neon(TSL_S4_ACC_ARGS)
{
    const int32_t G = K / TSL_S4_GROUP;
    int8_t xr[TSL_NEON_S4_KC];
    for (int32_t c = 0; c < K; c += TSL_NEON_S4_KC) {
        const int32_t kc = K - c < TSL_NEON_S4_KC ? K - c : TSL_NEON_S4_KC;
        tsl_neon_s4_prep(x + c, kc, xr);
#if defined(__aarch64__) && !defined(TSL_SIMDE_NEON)
        const uint8_t *wc = w + c / 2;
        const int8_t *gc = gs + c / TSL_S4_GROUP;
        const int64_t nb = kc / 128, left = (kc % 128) / TSL_S4_GROUP;
        if (N >= 4) tsl_a64_s4_rows4(wc, gc, K / 2, G, xr, nb, left, acc, N / 4, c == 0);
        for (int32_t n = N & ~3; n < N; n++) {   /* one row four times, three sums dropped */
            int32_t part[4];
            tsl_a64_s4_rows4(wc + (intptr_t)n * (K / 2), gc + (intptr_t)n * G, 0, 0, xr, nb, left, part, 1, 1);
            acc[n] = (c ? acc[n] : 0) + part[0];
        }
#else
        for (int32_t n = 0; n < N; n++)
            acc[n] = (c ? acc[n] : 0) + tsl_neon_s4_row(w + (intptr_t)n * (K / 2) + c / 2,
                                                        gs + (intptr_t)n * G + c / TSL_S4_GROUP, xr, kc / TSL_S4_GROUP);
#endif
    }
    return G;
}
#else
typedef int tsl_matvec_s4_neon_unused;   /* ISO C: no empty translation unit */
#endif
