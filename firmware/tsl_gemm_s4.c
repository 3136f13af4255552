/* tsl_gemm_s4.c -- int4 (group-scaled) x int8 over a tile of tokens (prefill): each weight load
 * and each nibble unpack serves up to four tokens.
 *
 * Sums per row and token are tsl_matvec_s4_f32's (sum_g gs[g] * (w4[g] . x[g]), exact integers);
 * the dotprod path keeps the matvec's layout trick (LD4 puts 4 groups in the 4 lanes, x rearranged
 * to match, 16 * nibbles shifted back per chunk of TSL_GEMM_S4_KC k) and unpacks each block's
 * nibbles once for all tokens; the portable path unpacks a group once for all tokens. The cores
 * with an int4 matvec path of their own and no tiled one here run that matvec per token. */
#include "tsl_gemm.h"
#include "tsl_epilogue.h"

#define TSL_GEMM_S4_RB 32   /* rows per block: int32 acc [TSL_GEMM_MAX_T][RB] on the stack */

#if defined(TSL_NEON_DOTPROD) || !(defined(TSL_ARM_DSP) || defined(TSL_ARM_MVE) || defined(TSL_NEON) || \
                                   defined(TSL_X86) || defined(TSL_RISCV_SCALAR4))
#define TSL_GEMM_S4_TILED 1   /* dotprod, portable */
#endif

#if defined(TSL_GEMM_S4_TILED)
#if defined(TSL_NEON_DOTPROD)
#define TSL_GEMM_S4_KC 1024   /* x chunk per token, rearranged on the stack; keeps 16 * sums < 2^31 */

/* x[0:kc] (kc % 32 == 0) -> xr, ceil(kc / 128) blocks: xr[block][2r + h][4i + t] = x[32i + 8r + 2t + h]
 * (the layout of tsl_matvec_s4.c's NEON path), the missing groups of a part block zero. */
static void tsl_gemm_s4_prep(const int8_t *x, int32_t kc, int8_t *xr)
{
    int8_t xp[128];
    for (int32_t c = 0; c < kc; c += 128, x += 128, xr += 128) {
        const int8_t *xb = x;
        if (kc - c < 128) {
            memset(xp, 0, sizeof xp);
            memcpy(xp, x, (size_t)(kc - c));
            xb = xp;
        }
        int8_t ev[64], od[64];   /* group i's even k at ev[16i..], odd at od[16i..] */
        const int8x16x2_t v0 = vld2q_s8(xb), v1 = vld2q_s8(xb + 32), v2 = vld2q_s8(xb + 64), v3 = vld2q_s8(xb + 96);
        vst1q_s8(ev, v0.val[0]); vst1q_s8(ev + 16, v1.val[0]); vst1q_s8(ev + 32, v2.val[0]); vst1q_s8(ev + 48, v3.val[0]);
        vst1q_s8(od, v0.val[1]); vst1q_s8(od + 16, v1.val[1]); vst1q_s8(od + 32, v2.val[1]); vst1q_s8(od + 48, v3.val[1]);
        const int32x4x4_t e = vld4q_s32((const int32_t *)(const void *)ev);
        const int32x4x4_t o = vld4q_s32((const int32_t *)(const void *)od);
        for (int32_t r = 0; r < 4; r++) {
            vst1q_s32((int32_t *)(void *)(xr + 32 * r), e.val[r]);
            vst1q_s32((int32_t *)(void *)(xr + 32 * r + 16), o.val[r]);
        }
    }
}

/* acc[j * RB] (j < nt <= 4) = (first ? 0 : acc) + the group sums of one row over ng groups of the
 * chunk, for the nt tokens' rearranged x (xr + j * KC). Per block of 4 groups: one LD4 of the 64
 * weight bytes and 8 unpacks (SHL / AND: 16 * nibbles), then per token 8 SDOT and one MLA by the
 * scales. A part block is copied next to zeros first. */
static void tsl_gemm_s4_row(const uint8_t *w, const int8_t *gs, const int8_t *xr, int32_t ng, int32_t nt,
                            int32_t first, int32_t *acc)
{
    int32x4_t tot[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    const int8x16_t mhi = vdupq_n_s8((int8_t)0xF0);
    for (int32_t b = 0; 4 * b < ng; b++, w += 64) {
        int32x4x4_t v;
        int32_t g4;
        if (ng - 4 * b >= 4) {
            v = vld4q_s32((const int32_t *)(const void *)w);
            memcpy(&g4, gs + 4 * b, 4);
        } else {
            uint8_t wp[64] = {0};
            int8_t gp[4] = {0, 0, 0, 0};
            memcpy(wp, w, (size_t)(16 * (ng - 4 * b)));
            memcpy(gp, gs + 4 * b, (size_t)(ng - 4 * b));
            v = vld4q_s32((const int32_t *)(const void *)wp);
            memcpy(&g4, gp, 4);
        }
        const int32x4_t gv = vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(g4)))));
        int8x16_t lo[4], hi[4];
        for (int32_t r = 0; r < 4; r++) {
            lo[r] = vshlq_n_s8(vreinterpretq_s8_s32(v.val[r]), 4);
            hi[r] = vandq_s8(vreinterpretq_s8_s32(v.val[r]), mhi);
        }
        for (int32_t j = 0; j < nt; j++) {
            const int8_t *xb = xr + (intptr_t)j * TSL_GEMM_S4_KC + 128 * b;
            int32x4_t d = vdupq_n_s32(0);
            for (int32_t r = 0; r < 4; r++) {
                d = vdotq_s32(d, lo[r], vld1q_s8(xb + 32 * r));
                d = vdotq_s32(d, hi[r], vld1q_s8(xb + 32 * r + 16));
            }
            tot[j] = vmlaq_s32(tot[j], d, gv);
        }
    }
    for (int32_t j = 0; j < nt; j++)
        acc[j * TSL_GEMM_S4_RB] = (first ? 0 : acc[j * TSL_GEMM_S4_RB]) + (vaddvq_s32(tot[j]) >> 4);
}
#endif

/* acc[t * RB + n] = sum_g gs[n][g] * (w4[n][g] . x[t][g]), n < N <= RB, t < T.
 * dotprod: T <= 4; xr holds the tokens' x rearranged (TSL_GEMM_S4_KC bytes each) when K fits one
 * chunk (prepared once by the caller for all row blocks), else is scratch for each chunk. */
static void tsl_gemm_s4_acc(const uint8_t *w, const int8_t *gs, const int8_t *const *x, int32_t T, int32_t N,
                            int32_t K, int32_t *acc, int8_t *xr)
{
    const int32_t G = K / TSL_S4_GROUP;
    int32_t g0 = 0;   /* the ISA path covers groups g < g0 of every row and token */
#if defined(TSL_NEON_DOTPROD)
    g0 = G;
    if (G == 0) for (int32_t j = 0; j < T; j++) for (int32_t n = 0; n < N; n++) acc[j * TSL_GEMM_S4_RB + n] = 0;
    for (int32_t c = 0; c < K; c += TSL_GEMM_S4_KC) {
        const int32_t kc = K - c < TSL_GEMM_S4_KC ? K - c : TSL_GEMM_S4_KC;
        if (K > TSL_GEMM_S4_KC) for (int32_t j = 0; j < T; j++) tsl_gemm_s4_prep(x[j] + c, kc, xr + j * TSL_GEMM_S4_KC);
        for (int32_t n = 0; n < N; n++)
            tsl_gemm_s4_row(w + (intptr_t)n * (K / 2) + c / 2, gs + (intptr_t)n * G + c / TSL_S4_GROUP, xr,
                            kc / TSL_S4_GROUP, T, c == 0, acc + n);
    }
#else
    (void)xr;
    for (int32_t t = 0; t < T; t++) for (int32_t n = 0; n < N; n++) acc[t * TSL_GEMM_S4_RB + n] = 0;
#endif
    /* Portable scalar tail (every group on the portable path): a group's nibbles unpacked once. */
    if (g0 < G) for (int32_t n = 0; n < N; n++) {
        const uint8_t *wr = w + (intptr_t)n * (K / 2);
        const int8_t *gr = gs + (intptr_t)n * G;
        for (int32_t g = g0; g < G; g++) {
            int8_t w8[TSL_S4_GROUP];
            for (int32_t j = 0; j < TSL_S4_GROUP / 2; j++) {
                const uint8_t b = wr[g * (TSL_S4_GROUP / 2) + j];
                w8[2 * j] = (int8_t)((int8_t)(b << 4) >> 4);
                w8[2 * j + 1] = (int8_t)((int8_t)b >> 4);
            }
            for (int32_t t = 0; t < T; t++) {
                const int8_t *xg = x[t] + g * TSL_S4_GROUP;
                int32_t d = 0;
                for (int32_t k = 0; k < TSL_S4_GROUP; k++) d += (int32_t)w8[k] * (int32_t)xg[k];
                acc[t * TSL_GEMM_S4_RB + n] += (int32_t)gr[g] * d;
            }
        }
    }
}
#endif

void tsl_gemm_s4_f32(const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *gs,
                     const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K,
                     int32_t accumulate)
{
#if defined(TSL_GEMM_S4_TILED) && defined(TSL_NEON_DOTPROD)
    /* four tokens at a time, so that their rearranged x stay prepared over all row blocks */
    int32_t acc[4 * TSL_GEMM_S4_RB];
    int8_t xr[4 * TSL_GEMM_S4_KC];
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t t0 = 0; t0 < T; t0 += 4) {
        const int32_t nt = T - t0 < 4 ? T - t0 : 4;
        if (K <= TSL_GEMM_S4_KC) for (int32_t j = 0; j < nt; j++) tsl_gemm_s4_prep(x[t0 + j], K, xr + j * TSL_GEMM_S4_KC);
        for (int32_t n0 = 0; n0 < N; n0 += TSL_GEMM_S4_RB) {
            const int32_t nb = N - n0 < TSL_GEMM_S4_RB ? N - n0 : TSL_GEMM_S4_RB;
            tsl_gemm_s4_acc(w + (intptr_t)n0 * (K / 2), gs + (intptr_t)n0 * G, x + t0, nt, nb, K, acc, xr);
            for (int32_t j = 0; j < nt; j++)
                tsl_epilogue(acc + j * TSL_GEMM_S4_RB, sx[t0 + j], ws + n0, bias ? bias + n0 : 0, dst[t0 + j] + n0, nb,
                             accumulate);
        }
    }
#elif defined(TSL_GEMM_S4_TILED)
    int32_t acc[TSL_GEMM_MAX_T * TSL_GEMM_S4_RB];
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t n0 = 0; n0 < N; n0 += TSL_GEMM_S4_RB) {
        const int32_t nb = N - n0 < TSL_GEMM_S4_RB ? N - n0 : TSL_GEMM_S4_RB;
        tsl_gemm_s4_acc(w + (intptr_t)n0 * (K / 2), gs + (intptr_t)n0 * G, x, T, nb, K, acc, NULL);
        for (int32_t t = 0; t < T; t++)
            tsl_epilogue(acc + t * TSL_GEMM_S4_RB, sx[t], ws + n0, bias ? bias + n0 : 0, dst[t] + n0, nb, accumulate);
    }
#else
    for (int32_t t = 0; t < T; t++) tsl_matvec_s4_f32(x[t], sx[t], w, gs, ws, bias, dst[t], N, K, accumulate);
#endif
}
