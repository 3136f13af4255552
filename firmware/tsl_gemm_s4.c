/* tsl_gemm_s4.c -- int4 (group-scaled) x int8 over a tile of tokens (prefill).
 *
 * Sums per row and token are tsl_matvec_s4_f32's (sum_g gs[g] * (w4[g] . x[g]), exact integers).
 * The portable path unpacks each group's nibbles once for all the tile's tokens. AArch64 dotprod:
 * tokens in fours, each weight block loaded and unpacked once for the four (tsl_a64_s4_tok4); a
 * tile's last 1 or 2 tokens run the matvec. Every other core with an int4 matvec path of its own
 * runs that matvec per token. */
#include "tsl_gemm.h"
#include "tsl_epilogue.h"
#include "tsl_matvec_s4_isa.h"

#define TSL_GEMM_S4_RB 32   /* rows per block: int32 acc [TSL_GEMM_MAX_T][RB] on the stack */

#if !(defined(TSL_ARM_DSP) || defined(TSL_ARM_MVE) || defined(TSL_NEON_ANY) || defined(TSL_X86) || \
      defined(TSL_RISCV_SCALAR4))
#define TSL_GEMM_S4_TILED 1   /* portable only */
#endif

#if defined(TSL_NEON_DOTPROD) && defined(__aarch64__) && !defined(TSL_SIMDE_NEON)
#define TSL_GEMM_S4_TOK4 1
#define TSL_GEMM_S4_RB4 128   /* rows per block of four tokens: acc, out and x chunks, about 8 KB of stack */
/* For n < nrows: out[4n + t] = the tsl_a64_s4_rows4 sum of row n (rows ws bytes and gss scales
 * apart) against the chunk of token t prepared at xr + t * xs (tsl_neon_s4_prep), nb full blocks
 * and a part block of left (0..3) groups, already shifted back (>> 4, exact). Per block: one LD4 of
 * the row's 64 weight bytes and its 4 scales, the 8 nibble vectors each unpacked once (SHL / AND)
 * into v21 / v22 for the 4 tokens' SDOTs (block sums v24-v27, x of two r at a time in v0-v15),
 * then the widened scales into the token sums v28-v31: 60 instructions per 512 MACs. A part block
 * of 2 groups (K % 128 == 64) zips the halves of v16 | v17 and v18 | v19, its x zipped alike by
 * tsl_s4_zip2: 4 x 8 SDOTs with lanes (g0, g1, g0, g1), scaled by (s0, s1, s0, s1). */
#define TSL_T4_HALF(p, q)                                                                     \
    "shl v21.16b, " p ".16b, #4\n and v22.16b, " p ".16b, v23.16b\n"                           \
    "sdot v24.4s, v21.16b, v0.16b\n sdot v24.4s, v22.16b, v1.16b\n"                           \
    "sdot v25.4s, v21.16b, v4.16b\n sdot v25.4s, v22.16b, v5.16b\n"                           \
    "sdot v26.4s, v21.16b, v8.16b\n sdot v26.4s, v22.16b, v9.16b\n"                           \
    "sdot v27.4s, v21.16b, v12.16b\n sdot v27.4s, v22.16b, v13.16b\n"                         \
    "shl v21.16b, " q ".16b, #4\n and v22.16b, " q ".16b, v23.16b\n"                           \
    "sdot v24.4s, v21.16b, v2.16b\n sdot v24.4s, v22.16b, v3.16b\n"                           \
    "sdot v25.4s, v21.16b, v6.16b\n sdot v25.4s, v22.16b, v7.16b\n"                           \
    "sdot v26.4s, v21.16b, v10.16b\n sdot v26.4s, v22.16b, v11.16b\n"                         \
    "sdot v27.4s, v21.16b, v14.16b\n sdot v27.4s, v22.16b, v15.16b\n"
#define TSL_T4_X "ld1 {v0.16b-v3.16b}, [%[p0]], #64\n ld1 {v4.16b-v7.16b}, [%[p1]], #64\n"            \
    "ld1 {v8.16b-v11.16b}, [%[p2]], #64\n ld1 {v12.16b-v15.16b}, [%[p3]], #64\n"
#define TSL_T4_MLA "mla v28.4s, v24.4s, v20.4s\n mla v29.4s, v25.4s, v20.4s\n"                         \
    "mla v30.4s, v26.4s, v20.4s\n mla v31.4s, v27.4s, v20.4s\n"
#define TSL_T4_BLOCK "movi v24.4s, #0\n movi v25.4s, #0\n movi v26.4s, #0\n movi v27.4s, #0\n"        \
    TSL_T4_X TSL_T4_HALF("v16", "v17") TSL_T4_X TSL_T4_HALF("v18", "v19")                      \
    "sxtl v20.8h, v20.8b\n sxtl v20.4s, v20.4h\n" TSL_T4_MLA
static void tsl_a64_s4_tok4(const uint8_t *w, const int8_t *g, int64_t ws, int64_t gss, const int8_t *xr,
                            int64_t xs, int64_t nb, int64_t left, int32_t *out, int64_t nrows)
{
    const uint8_t *wp;
    const int8_t *gp, *p0, *p1, *p2, *p3;
    int64_t cnt;
    __asm volatile(
        "movi v23.16b, #0xf0\n"
        "1:\n"
        "mov %[wp], %[w]\n add %[w], %[w], %[ws]\n mov %[gp], %[g]\n add %[g], %[g], %[gss]\n"
        "mov %[p0], %[xr]\n add %[p1], %[p0], %[xs]\n add %[p2], %[p1], %[xs]\n add %[p3], %[p2], %[xs]\n"
        "movi v28.4s, #0\n movi v29.4s, #0\n movi v30.4s, #0\n movi v31.4s, #0\n"
        "mov %[cnt], %[nb]\n cbz %[cnt], 3f\n"
        "2:\n"
        "ld4 {v16.4s-v19.4s}, [%[wp]], #64\n ldr s20, [%[gp]], #4\n"
        TSL_T4_BLOCK
        "subs %[cnt], %[cnt], #1\n b.ne 2b\n"
        "3:\n"
        "cbz %[left], 6f\n"
        "cmp %[left], #2\n b.lt 4f\n b.eq 5f\n"
        "ld4 {v16.2s-v19.2s}, [%[wp]], #32\n ld4 {v16.s-v19.s}[2], [%[wp]]\n"
        "ldr h20, [%[gp]], #2\n ld1 {v20.b}[2], [%[gp]]\n b 7f\n"
        "4:\n ld4 {v16.s-v19.s}[0], [%[wp]]\n ldr b20, [%[gp]]\n b 7f\n"
        "5:\n ld4 {v16.2s-v19.2s}, [%[wp]]\n ldr h20, [%[gp]]\n"
        "zip1 v16.2d, v16.2d, v17.2d\n zip1 v17.2d, v18.2d, v19.2d\n"
        "movi v24.4s, #0\n movi v25.4s, #0\n movi v26.4s, #0\n movi v27.4s, #0\n"
        TSL_T4_X TSL_T4_HALF("v16", "v17")
        "sxtl v20.8h, v20.8b\n sxtl v20.4s, v20.4h\n dup v20.2d, v20.d[0]\n" TSL_T4_MLA "b 6f\n"
        "7:\n"
        TSL_T4_BLOCK
        "6:\n"
        "addp v28.4s, v28.4s, v29.4s\n addp v30.4s, v30.4s, v31.4s\n addp v28.4s, v28.4s, v30.4s\n"
        "sshr v28.4s, v28.4s, #4\n st1 {v28.4s}, [%[out]], #16\n"
        "subs %[nrows], %[nrows], #1\n b.ne 1b\n"
        : [w] "+r"(w), [g] "+r"(g), [out] "+r"(out), [nrows] "+r"(nrows), [wp] "=&r"(wp), [gp] "=&r"(gp),
          [p0] "=&r"(p0), [p1] "=&r"(p1), [p2] "=&r"(p2), [p3] "=&r"(p3), [cnt] "=&r"(cnt)
        : [ws] "r"(ws), [gss] "r"(gss), [xr] "r"(xr), [xs] "r"(xs), [nb] "r"(nb), [left] "r"(left)
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15",
          "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29",
          "v30", "v31", "cc", "memory");
}
#undef TSL_T4_HALF
#undef TSL_T4_X
#undef TSL_T4_BLOCK
#undef TSL_T4_MLA

/* The part block of 2 groups at xr (e0 o0 e1 o1 e2 o2 e3 o3, 16 bytes each, lanes 0-1 used) ->
 * the low halves paired: (e0|e1) (o0|o1) (e2|e3) (o2|o3), 64 bytes. */
static void tsl_s4_zip2(int8_t *xr)
{
    int8x16_t v[8];
    for (int32_t i = 0; i < 8; i++) v[i] = vld1q_s8(xr + 16 * i);
    vst1q_s8(xr, vcombine_s8(vget_low_s8(v[0]), vget_low_s8(v[2])));
    vst1q_s8(xr + 16, vcombine_s8(vget_low_s8(v[1]), vget_low_s8(v[3])));
    vst1q_s8(xr + 32, vcombine_s8(vget_low_s8(v[4]), vget_low_s8(v[6])));
    vst1q_s8(xr + 48, vcombine_s8(vget_low_s8(v[5]), vget_low_s8(v[7])));
}

/* acc[t * RB4 + n] = sum_g gs[n][g] * (w4[n][g] . x[t][g]), n < N <= RB4, t < 4 (x[t] may repeat) */
static void tsl_gemm_s4_tok4(const uint8_t *w, const int8_t *gs, const int8_t *const *x, int32_t N, int32_t K,
                             int32_t *acc)
{
    int8_t xr[4][TSL_NEON_S4_KC];
    int32_t out[4 * TSL_GEMM_S4_RB4];
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t t = 0; t < 4; t++) for (int32_t n = 0; n < N; n++) acc[t * TSL_GEMM_S4_RB4 + n] = 0;
    for (int32_t c = 0; c < K; c += TSL_NEON_S4_KC) {
        const int32_t kc = K - c < TSL_NEON_S4_KC ? K - c : TSL_NEON_S4_KC;
        for (int32_t t = 0; t < 4; t++) {
            tsl_neon_s4_prep(x[t] + c, kc, xr[t]);
            if (kc % 128 == 2 * TSL_S4_GROUP) tsl_s4_zip2(xr[t] + kc / 128 * 128);
        }
        if (N > 0) tsl_a64_s4_tok4(w + c / 2, gs + c / TSL_S4_GROUP, K / 2, G, xr[0], TSL_NEON_S4_KC, kc / 128,
                        (kc % 128) / TSL_S4_GROUP, out, N);
        for (int32_t n = 0; n < N; n++)
            for (int32_t t = 0; t < 4; t++) acc[t * TSL_GEMM_S4_RB4 + n] += out[4 * n + t];
    }
}
#endif

#if defined(TSL_GEMM_S4_TILED)
/* acc[t * RB + n] = sum_g gs[n][g] * (w4[n][g] . x[t][g]), n < N <= RB, t < T */
static void tsl_gemm_s4_acc(const uint8_t *w, const int8_t *gs, const int8_t *const *x, int32_t T, int32_t N,
                            int32_t K, int32_t *acc)
{
    const int32_t G = K / TSL_S4_GROUP;
    const int32_t g0 = 0;   /* no ISA path: the portable loop covers every group */
    for (int32_t t = 0; t < T; t++) for (int32_t n = 0; n < N; n++) acc[t * TSL_GEMM_S4_RB + n] = 0;
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
#if defined(TSL_GEMM_S4_TILED)
    int32_t acc[TSL_GEMM_MAX_T * TSL_GEMM_S4_RB];
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t n0 = 0; n0 < N; n0 += TSL_GEMM_S4_RB) {
        const int32_t nb = N - n0 < TSL_GEMM_S4_RB ? N - n0 : TSL_GEMM_S4_RB;
        tsl_gemm_s4_acc(w + (intptr_t)n0 * (K / 2), gs + (intptr_t)n0 * G, x, T, nb, K, acc);
        for (int32_t t = 0; t < T; t++)
            tsl_epilogue(acc + t * TSL_GEMM_S4_RB, sx[t], ws + n0, bias ? bias + n0 : 0, dst[t] + n0, nb, accumulate);
    }
#elif defined(TSL_GEMM_S4_TOK4)
    int32_t acc[4 * TSL_GEMM_S4_RB4];
    const int32_t G = K / TSL_S4_GROUP;
    int32_t t0 = 0;
    for (; T - t0 >= 3; t0 += 4) {   /* three tokens: the fourth repeats the third, its sums dropped */
        const int32_t nt = T - t0 < 4 ? T - t0 : 4;
        const int8_t *xt[4] = {x[t0], x[t0 + 1], x[t0 + 2], x[t0 + (nt == 4 ? 3 : 2)]};
        for (int32_t n0 = 0; n0 < N; n0 += TSL_GEMM_S4_RB4) {
            const int32_t nb = N - n0 < TSL_GEMM_S4_RB4 ? N - n0 : TSL_GEMM_S4_RB4;
            tsl_gemm_s4_tok4(w + (intptr_t)n0 * (K / 2), gs + (intptr_t)n0 * G, xt, nb, K, acc);
            for (int32_t t = 0; t < nt; t++)
                tsl_epilogue(acc + t * TSL_GEMM_S4_RB4, sx[t0 + t], ws + n0, bias ? bias + n0 : 0, dst[t0 + t] + n0, nb,
                             accumulate);
        }
    }
    for (; t0 < T; t0++) tsl_matvec_s4_f32(x[t0], sx[t0], w, gs, ws, bias, dst[t0], N, K, accumulate);
#else
    for (int32_t t = 0; t < T; t++) tsl_matvec_s4_f32(x[t], sx[t], w, gs, ws, bias, dst[t], N, K, accumulate);
#endif
}

void tsl_gemm_s4nl_f32(const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                       const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K,
                       int32_t accumulate)
{
    for (int32_t t = 0; t < T; t++) tsl_matvec_s4nl_f32(x[t], sx[t], w, kv, gs, ws, bias, dst[t], N, K, accumulate);
}

void tsl_gemm_s5nl_f32(const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                       const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K,
                       int32_t accumulate)
{
    for (int32_t t = 0; t < T; t++) tsl_matvec_s5nl_f32(x[t], sx[t], w, kv, gs, ws, bias, dst[t], N, K, accumulate);
}
