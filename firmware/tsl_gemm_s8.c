/* tsl_gemm_s8.c -- int8 x int8 over a tile of tokens (prefill): each weight load serves up to
 * four tokens.
 *
 * tsl_gemm_acc() is the one place with ISA paths: each computes acc[t][n] over k < k0 for blocks
 * of rows x tokens, then the portable scalar loop adds k in [k0, K) (all of K on the portable
 * path, four tokens per weight load). Integer sums are exact in any order, so each token's acc is
 * the one tsl_matvec_s8_f32 computes; tsl_epilogue makes the floats. The cores whose matvec gains
 * nothing from a shared weight load here (DSP, MVE, the 4-row C path) run the matvec per token. */
#include "tsl_gemm.h"
#include "tsl_epilogue.h"

#define TSL_GEMM_RB 32      /* rows per block: int32 acc [TSL_GEMM_MAX_T][TSL_GEMM_RB] on the stack */

#if !(defined(TSL_ARM_DSP) || defined(TSL_ARM_MVE) || defined(TSL_RISCV_SCALAR4))
#define TSL_GEMM_S8_TILED 1   /* NEON, x86, portable */
#endif

#if defined(TSL_GEMM_S8_TILED)
#if defined(TSL_NEON_DOTPROD) && defined(__aarch64__) && !defined(TSL_SIMDE_NEON)
/* 2 rows x 4 tokens, the hot loop of the dotprod path: out[4r + t] = w[r] . x[t] (rows K apart),
 * K % 64 == 0, K > 0. Per 64 k: the two rows in v0-v7 (one 4-register load each), then per token
 * a 4-register x load (v24-v27) and 8 SDOT: 40 instructions per 512 MACs (the matvec's 23 per 256).
 * Sums v16-v19 (row 0) and v20-v23 (row 1), reduced by ADDP into one vector per row. */
static void tsl_a64_gemm_2x4(const int8_t *w, int64_t K, const int8_t *x0, const int8_t *x1, const int8_t *x2,
                             const int8_t *x3, int32_t *out)
{
    const int8_t *w1 = w + K;
    int64_t cnt = K >> 6;
#define TSL_G_TOK(xp, a0, a1) "ld1 {v24.16b-v27.16b}, [%[" xp "]], #64\n"                             \
    "sdot " a0 ".4s, v0.16b, v24.16b\n sdot " a0 ".4s, v1.16b, v25.16b\n"                              \
    "sdot " a0 ".4s, v2.16b, v26.16b\n sdot " a0 ".4s, v3.16b, v27.16b\n"                              \
    "sdot " a1 ".4s, v4.16b, v24.16b\n sdot " a1 ".4s, v5.16b, v25.16b\n"                              \
    "sdot " a1 ".4s, v6.16b, v26.16b\n sdot " a1 ".4s, v7.16b, v27.16b\n"
    __asm volatile(
        "movi v16.4s, #0\n movi v17.4s, #0\n movi v18.4s, #0\n movi v19.4s, #0\n"
        "movi v20.4s, #0\n movi v21.4s, #0\n movi v22.4s, #0\n movi v23.4s, #0\n"
        "1:\n"
        "ld1 {v0.16b-v3.16b}, [%[w0]], #64\n ld1 {v4.16b-v7.16b}, [%[w1]], #64\n"
        TSL_G_TOK("x0", "v16", "v20") TSL_G_TOK("x1", "v17", "v21") TSL_G_TOK("x2", "v18", "v22")
        TSL_G_TOK("x3", "v19", "v23")
        "subs %[cnt], %[cnt], #1\n b.ne 1b\n"
        "addp v16.4s, v16.4s, v17.4s\n addp v18.4s, v18.4s, v19.4s\n addp v16.4s, v16.4s, v18.4s\n"
        "addp v20.4s, v20.4s, v21.4s\n addp v22.4s, v22.4s, v23.4s\n addp v20.4s, v20.4s, v22.4s\n"
        "st1 {v16.4s}, [%[out]], #16\n st1 {v20.4s}, [%[out]]\n"
        : [w0] "+r"(w), [w1] "+r"(w1), [x0] "+r"(x0), [x1] "+r"(x1), [x2] "+r"(x2), [x3] "+r"(x3),
          [cnt] "+r"(cnt), [out] "+r"(out)
        :
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17", "v18", "v19", "v20", "v21", "v22",
          "v23", "v24", "v25", "v26", "v27", "cc", "memory");
#undef TSL_G_TOK
}
#endif

#if defined(TSL_NEON_ANY)
/* acc += the 16 products w[j] * x[j], spread over 4 lanes (tsl_matvec_s8.c's step) */
static inline int32x4_t tsl_gemm_dot16(int32x4_t acc, int8x16_t w, int8x16_t x)
{
#if defined(TSL_NEON_DOTPROD)
    return vdotq_s32(acc, w, x);
#else
    return vpadalq_s16(vpadalq_s16(acc, vmull_s8(vget_low_s8(w), vget_low_s8(x))), vmull_high_s8(w, x));
#endif
}

/* acc[t * RB + n] over k < k0 (k0 % 16 == 0) for one row and up to 4 tokens, one weight load each 16 k */
static void tsl_neon_gemm_row(const int8_t *wr, const int8_t *const *x, int32_t nt, int32_t k0, int32_t *acc)
{
    int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
    const int8_t *x0 = x[0], *x1 = x[nt > 1 ? 1 : 0], *x2 = x[nt > 2 ? 2 : 0], *x3 = x[nt > 3 ? 3 : 0];
    for (int32_t k = 0; k < k0; k += 16) {
        const int8x16_t wv = vld1q_s8(wr + k);
        a0 = tsl_gemm_dot16(a0, wv, vld1q_s8(x0 + k));
        if (nt > 1) a1 = tsl_gemm_dot16(a1, wv, vld1q_s8(x1 + k));
        if (nt > 2) a2 = tsl_gemm_dot16(a2, wv, vld1q_s8(x2 + k));
        if (nt > 3) a3 = tsl_gemm_dot16(a3, wv, vld1q_s8(x3 + k));
    }
    acc[0] = vaddvq_s32(a0);
    if (nt > 1) acc[TSL_GEMM_RB] = vaddvq_s32(a1);
    if (nt > 2) acc[2 * TSL_GEMM_RB] = vaddvq_s32(a2);
    if (nt > 3) acc[3 * TSL_GEMM_RB] = vaddvq_s32(a3);
}
#endif

#if defined(TSL_X86)
TSL_TARGET_AVX2 static inline int32_t tsl_gemm_hsum8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1)));
}

/* AVX2: acc[t * RB + n] over k < k0 (k0 % 16 == 0), one row x up to 4 tokens per pass: the row's
 * 16 k sign-extended once (VPMOVSXBW), VPMADDWD with each token's. */
TSL_TARGET_AVX2 static void tsl_avx2_gemm(const int8_t *w, const int8_t *const *x, int32_t T, int32_t N, int32_t K,
                                          int32_t k0, int32_t *acc)
{
#define TSL_AVX2_LD16(p) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(p)))
    for (int32_t t0 = 0; t0 < T; t0 += 4) {
        const int32_t nt = T - t0 < 4 ? T - t0 : 4;
        const int8_t *x0 = x[t0], *x1 = x[t0 + (nt > 1)], *x2 = x[t0 + (nt > 2 ? 2 : 0)], *x3 = x[t0 + (nt > 3 ? 3 : 0)];
        for (int32_t n = 0; n < N; n++) {
            const int8_t *wr = w + (intptr_t)n * K;
            __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
            for (int32_t k = 0; k < k0; k += 16) {
                const __m256i wv = TSL_AVX2_LD16(wr + k);
                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(wv, TSL_AVX2_LD16(x0 + k)));
                a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(wv, TSL_AVX2_LD16(x1 + k)));
                a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(wv, TSL_AVX2_LD16(x2 + k)));
                a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(wv, TSL_AVX2_LD16(x3 + k)));
            }
            int32_t *a = acc + t0 * TSL_GEMM_RB + n;
            a[0] = tsl_gemm_hsum8(a0);
            if (nt > 1) a[TSL_GEMM_RB] = tsl_gemm_hsum8(a1);
            if (nt > 2) a[2 * TSL_GEMM_RB] = tsl_gemm_hsum8(a2);
            if (nt > 3) a[3 * TSL_GEMM_RB] = tsl_gemm_hsum8(a3);
        }
    }
#undef TSL_AVX2_LD16
}

/* AVX-512 VNNI: acc[t * RB + n] over all K, one row x up to 4 tokens per pass. As the matvec:
 * the row enters VPDPBUSD as w ^ 0x80 (w + 128, unsigned), so each token's sum carries
 * 128 * sum(x[t]), taken off once (mod 2^32: exact); the last K % 64 by masked loads. */
TSL_TARGET_VNNI static void tsl_vnni_gemm(const int8_t *w, const int8_t *const *x, int32_t T, int32_t N, int32_t K,
                                          int32_t *acc)
{
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const int32_t k0 = K & ~63;
    const __mmask64 m = ((__mmask64)1 << (K & 63)) - 1;
    for (int32_t t0 = 0; t0 < T; t0 += 4) {
        const int32_t nt = T - t0 < 4 ? T - t0 : 4;
        const int8_t *xs[4];
        uint32_t corr[4];
        for (int32_t j = 0; j < 4; j++) {
            xs[j] = x[t0 + (j < nt ? j : 0)];
            uint32_t s = 0;
            for (int32_t k = 0; k < K; k++) s += (uint32_t)(int32_t)xs[j][k];
            corr[j] = s << 7;
        }
        const __m512i xt0 = _mm512_maskz_loadu_epi8(m, xs[0] + k0), xt1 = _mm512_maskz_loadu_epi8(m, xs[1] + k0);
        const __m512i xt2 = _mm512_maskz_loadu_epi8(m, xs[2] + k0), xt3 = _mm512_maskz_loadu_epi8(m, xs[3] + k0);
        for (int32_t n = 0; n < N; n++) {
            const int8_t *wr = w + (intptr_t)n * K;
            __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
            for (int32_t k = 0; k < k0; k += 64) {
                const __m512i wv = _mm512_xor_si512(_mm512_loadu_si512((const void *)(wr + k)), flip);
                a0 = _mm512_dpbusd_epi32(a0, wv, _mm512_loadu_si512((const void *)(xs[0] + k)));
                a1 = _mm512_dpbusd_epi32(a1, wv, _mm512_loadu_si512((const void *)(xs[1] + k)));
                a2 = _mm512_dpbusd_epi32(a2, wv, _mm512_loadu_si512((const void *)(xs[2] + k)));
                a3 = _mm512_dpbusd_epi32(a3, wv, _mm512_loadu_si512((const void *)(xs[3] + k)));
            }
            if (m) {
                const __m512i wv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, wr + k0), flip);
                a0 = _mm512_dpbusd_epi32(a0, wv, xt0);
                a1 = _mm512_dpbusd_epi32(a1, wv, xt1);
                a2 = _mm512_dpbusd_epi32(a2, wv, xt2);
                a3 = _mm512_dpbusd_epi32(a3, wv, xt3);
            }
            int32_t *a = acc + t0 * TSL_GEMM_RB + n;
            a[0] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(a0) - corr[0]);
            if (nt > 1) a[TSL_GEMM_RB] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(a1) - corr[1]);
            if (nt > 2) a[2 * TSL_GEMM_RB] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(a2) - corr[2]);
            if (nt > 3) a[3 * TSL_GEMM_RB] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(a3) - corr[3]);
        }
    }
}
#endif

/* acc[t * TSL_GEMM_RB + n] = w[n] . x[t], n < N <= TSL_GEMM_RB, t < T */
static void tsl_gemm_acc(const int8_t *w, const int8_t *const *x, int32_t T, int32_t N, int32_t K, int32_t *acc)
{
    int32_t k0 = 0;   /* the ISA path covers k < k0 of every row and token */
#if defined(TSL_NEON_ANY)
    k0 = K & ~15;
    for (int32_t t0 = 0; t0 < T; t0 += 4) {
        const int32_t nt = T - t0 < 4 ? T - t0 : 4;
        int32_t n = 0;
#if defined(TSL_NEON_DOTPROD) && defined(__aarch64__) && !defined(TSL_SIMDE_NEON)
        if (nt == 4 && (K & 63) == 0 && K > 0) {
            int32_t out[8];
            for (; n + 2 <= N; n += 2) {
                tsl_a64_gemm_2x4(w + (intptr_t)n * K, K, x[t0], x[t0 + 1], x[t0 + 2], x[t0 + 3], out);
                for (int32_t j = 0; j < 4; j++) {
                    acc[(t0 + j) * TSL_GEMM_RB + n] = out[j];
                    acc[(t0 + j) * TSL_GEMM_RB + n + 1] = out[4 + j];
                }
            }
        }
#endif
        for (; n < N; n++) tsl_neon_gemm_row(w + (intptr_t)n * K, x + t0, nt, k0, acc + t0 * TSL_GEMM_RB + n);
    }
#elif defined(TSL_X86)
    const int level = tsl_x86_level();
    if (level == TSL_X86_VNNI) {
        k0 = K;
        tsl_vnni_gemm(w, x, T, N, K, acc);
    } else if (level >= TSL_X86_AVX2) {
        k0 = K & ~15;
        tsl_avx2_gemm(w, x, T, N, K, k0, acc);
    } else {
        for (int32_t t = 0; t < T; t++) for (int32_t n = 0; n < N; n++) acc[t * TSL_GEMM_RB + n] = 0;
    }
#else
    for (int32_t t = 0; t < T; t++) for (int32_t n = 0; n < N; n++) acc[t * TSL_GEMM_RB + n] = 0;
#endif
    /* Portable scalar tail (all of K on the portable path): four tokens per weight load. */
    if (k0 < K) for (int32_t n = 0; n < N; n++) {
        const int8_t *wr = w + (intptr_t)n * K;
        for (int32_t t0 = 0; t0 < T; t0 += 4) {
            const int32_t nt = T - t0 < 4 ? T - t0 : 4;
            const int8_t *x0 = x[t0], *x1 = x[t0 + (nt > 1)], *x2 = x[t0 + (nt > 2 ? 2 : 0)], *x3 = x[t0 + (nt > 3 ? 3 : 0)];
            int32_t *a = acc + t0 * TSL_GEMM_RB + n;
            int32_t a0 = a[0], a1 = nt > 1 ? a[TSL_GEMM_RB] : 0, a2 = nt > 2 ? a[2 * TSL_GEMM_RB] : 0;
            int32_t a3 = nt > 3 ? a[3 * TSL_GEMM_RB] : 0;
            for (int32_t k = k0; k < K; k++) {
                const int32_t wk = wr[k];
                a0 += wk * x0[k]; a1 += wk * x1[k]; a2 += wk * x2[k]; a3 += wk * x3[k];
            }
            a[0] = a0;
            if (nt > 1) a[TSL_GEMM_RB] = a1;
            if (nt > 2) a[2 * TSL_GEMM_RB] = a2;
            if (nt > 3) a[3 * TSL_GEMM_RB] = a3;
        }
    }
}
#endif

void tsl_gemm_s8_f32(const int8_t *const *x, const float *sx, const int8_t *w, const float *ws,
                     const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K, int32_t accumulate)
{
#if defined(TSL_GEMM_S8_TILED)
    int32_t acc[TSL_GEMM_MAX_T * TSL_GEMM_RB];
    for (int32_t n0 = 0; n0 < N; n0 += TSL_GEMM_RB) {
        const int32_t nb = N - n0 < TSL_GEMM_RB ? N - n0 : TSL_GEMM_RB;
        tsl_gemm_acc(w + (intptr_t)n0 * K, x, T, nb, K, acc);
        for (int32_t t = 0; t < T; t++)
            tsl_epilogue(acc + t * TSL_GEMM_RB, sx[t], ws + n0, bias ? bias + n0 : 0, dst[t] + n0, nb, accumulate);
    }
#else
    for (int32_t t = 0; t < T; t++) tsl_matvec_s8_f32(x[t], sx[t], w, ws, bias, dst[t], N, K, accumulate);
#endif
}
