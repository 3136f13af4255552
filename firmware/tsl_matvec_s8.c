/* tsl_matvec_s8.c -- int8 x int8 matrix-vector products, the decode hot path.
 *
 * tsl_matvec_acc() is the one place with ISA paths. Each path computes acc[n] over k < k0 for
 * several rows at once (they share the x loads), then the portable scalar loop adds k in [k0, K).
 * Integer sums are exact in any order (callers keep |acc| < 2^31), so every path is bit-identical. */
#include "tsl_kernels.h"
#include "tsl_epilogue.h"

#define TSL_ROW_BLOCK 128   /* tsl_matvec_s8_f32: int32 accumulators on the stack, per block of rows */

#if defined(TSL_ARM_DSP)
#define TSL_DSP_KC 512      /* x chunk, sign-extended to int16 pairs on the stack: 2 * KC bytes */

/* Expand: per 8 k, words [x2|x0] [x3|x1] [x6|x4] [x7|x5] (int16 lanes), the lane order
 * SXTB16 gives the weights. n8 blocks of 8. */
static void tsl_dsp_expand(const int8_t *x, uint32_t *xb, int32_t n8)
{
    for (int32_t i = 0; i < 2 * n8; i++) {
        const uint32_t v = *(const tsl_u32u *)(x + 4 * i);
        xb[2 * i] = tsl_sxtb16(v);
        xb[2 * i + 1] = tsl_sxtb16_ror8(v);
    }
}

/* r0 (= 0 if first) += w0[0:8*n8] . x, r1 likewise (x expanded in xb): the general case (any
 * alignment, any n8); tsl_dsp_rows2 below is the fast one. */
static void tsl_dsp_dot2(const uint32_t *xb, const int8_t *w0, const int8_t *w1, int32_t n8,
                         int32_t *r0, int32_t *r1, int first)
{
    int32_t a0 = first ? 0 : *r0, a1 = first ? 0 : *r1;
    for (int32_t i = 0; i < 2 * n8; i++) {
        const uint32_t u = *(const tsl_u32u *)(w0 + 4 * i), v = *(const tsl_u32u *)(w1 + 4 * i);
        a0 = tsl_smlad(tsl_sxtb16(u), xb[2 * i], a0);
        a0 = tsl_smlad(tsl_sxtb16_ror8(u), xb[2 * i + 1], a0);
        a1 = tsl_smlad(tsl_sxtb16(v), xb[2 * i], a1);
        a1 = tsl_smlad(tsl_sxtb16_ror8(v), xb[2 * i + 1], a1);
    }
    *r0 = a0; *r1 = a1;
}

#if !defined(TSL_EMULATE_DSP)
/* Rows in pairs, the hot loop of the DSP path: for p < np, acc[2p..2p+1] += w[2p..2p+1][0:kc] . x,
 * rows K apart and 4-aligned, kc = 32 * cfg->n32 > 0 (x expanded in xb). 78 instructions per 64 MACs.
 * Registers: xp r0, row pointers r1 r2, sums r3 r7, x words r4 r5 r6 r8, weights r9 r10, r11 temp,
 * r12 count, lr the acc pointer; xb, np, K and the row skip K - kc live on the stack. */
typedef struct { int32_t K, n32; } tsl_dsp_cfg;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static void tsl_dsp_rows2(const uint32_t *xb, const int8_t *w, int32_t *acc,
                                                           int32_t np, const tsl_dsp_cfg *cfg)
{
#define TSL_DSP_ROW8S(p, a) "ldrd r9, r10, [" p "], #8\n"                                       \
    "sxtb16 r11, r9\n smlad " a ", r11, r4, " a "\n sxtb16 r9, r9, ror #8\n smlad " a ", r9, r5, " a "\n" \
    "sxtb16 r11, r10\n smlad " a ", r11, r6, " a "\n sxtb16 r10, r10, ror #8\n smlad " a ", r10, r8, " a "\n"
#define TSL_DSP_STEP8S "ldm r0!, {r4, r5, r6, r8}\n" TSL_DSP_ROW8S("r1", "r3") TSL_DSP_ROW8S("r2", "r7")
    __asm volatile(
        "push {r4-r11, lr}\n"
        "ldr r12, [sp, #36]\n"            /* cfg */
        "ldr r4, [r12, #0]\n"             /* K */
        "ldr r5, [r12, #4]\n"             /* n32 */
        "sub r6, r4, r5, lsl #5\n"        /* K - kc */
        "sub sp, sp, #16\n"
        "str r0, [sp, #0]\n str r3, [sp, #4]\n str r4, [sp, #8]\n str r6, [sp, #12]\n"
        "mov lr, r2\n"
        "1:\n"
        "ldr r0, [sp, #0]\n"
        "ldr r9, [sp, #8]\n add r2, r1, r9\n"
        "ldr r12, [sp, #36 + 16]\n ldr r12, [r12, #4]\n"
        "ldrd r3, r7, [lr]\n"
        "2:\n" TSL_DSP_STEP8S TSL_DSP_STEP8S TSL_DSP_STEP8S TSL_DSP_STEP8S
        "subs r12, r12, #1\n bne 2b\n"
        "strd r3, r7, [lr], #8\n"
        "ldr r9, [sp, #12]\n add r1, r2, r9\n"
        "ldr r9, [sp, #4]\n subs r9, r9, #1\n str r9, [sp, #4]\n bne 1b\n"
        "add sp, sp, #16\n"
        "pop {r4-r11, pc}\n");
#undef TSL_DSP_ROW8S
#undef TSL_DSP_STEP8S
}
#pragma GCC diagnostic pop

#endif
#endif

#if defined(TSL_ARM_MVE)
/* Rows in blocks of four, the hot loop of the MVE path: acc[4b + r] = w[4b + r] . x for b < nb,
 * K % 64 == 0, K > 0. Per 16 k: one x load, then per row a load and a VMLADAVA (16 MACs); the
 * first 16 k of a block use VMLADAV (no accumulate) instead of zeroing. 37 instructions per 256
 * MACs in the low-overhead loop (DLS/LE), 11 more per block of 4 rows.
 * Registers: x r0, row pointers r1 r5 r9 r10, sums r2 r4 r6 r8 (even, for VMLADAV; ascending,
 * for STM), acc pointer r7, blocks left r3, K r11, xp r12, lr the loop count. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static void tsl_mve_rows4(const int8_t *x, const int8_t *w, int32_t *acc,
                                                           int32_t nb, int32_t K)
{
#define TSL_MVE_ROW(q, p, a, op) "vldrb.8 " q ", [" p "], #16\n " op ".s8 " a ", " q ", q0\n"
#define TSL_MVE_STEP(op) "vldrb.8 q0, [r12], #16\n" TSL_MVE_ROW("q1", "r1", "r2", op) \
    TSL_MVE_ROW("q2", "r5", "r4", op) TSL_MVE_ROW("q3", "r9", "r6", op) TSL_MVE_ROW("q4", "r10", "r8", op)
    __asm volatile(
        "push {r4-r11, lr}\n"
        "vpush {d8-d9}\n"
        "ldr r11, [sp, #36 + 16]\n"       /* K */
        "mov r7, r2\n"
        "1:\n"
        "mov r12, r0\n add r5, r1, r11\n add r9, r5, r11\n add r10, r9, r11\n"
        TSL_MVE_STEP("vmladav") TSL_MVE_STEP("vmladava") TSL_MVE_STEP("vmladava") TSL_MVE_STEP("vmladava")
        "lsr lr, r11, #6\n subs lr, lr, #1\n"
        "wls lr, lr, 3f\n"
        "2:\n" TSL_MVE_STEP("vmladava") TSL_MVE_STEP("vmladava") TSL_MVE_STEP("vmladava") TSL_MVE_STEP("vmladava")
        "le lr, 2b\n"
        "3:\n"
        "stm r7!, {r2, r4, r6, r8}\n"
        "mov r1, r10\n"                   /* K % 64 == 0: row 3 ends where the next block starts */
        "subs r3, r3, #1\n bne 1b\n"
        "vpop {d8-d9}\n"
        "pop {r4-r11, pc}\n");
#undef TSL_MVE_ROW
#undef TSL_MVE_STEP
}
#pragma GCC diagnostic pop
#endif

#if defined(TSL_NEON_ANY) && defined(__aarch64__) && !defined(TSL_SIMDE_NEON)
/* Rows in blocks of four, the hot loop of the AArch64 paths: acc[4b + r] = w[4b + r] . x for
 * b < nb, K % 64 == 0, K > 0. Per 64 k: one 4-register x load, then per row a 4-register load and
 * 4 SDOT (dotprod: 23 instructions per 256 MACs), or SMULL/SMULL2 + 2 SADALP per 16 k (plain NEON:
 * products fit int16, pairs of them only int32). Sums v16-v19 are reduced by ADDP into one vector. */
#if defined(TSL_NEON_DOTPROD)
#define TSL_A64_MAC16(a, wv, xv) "sdot " a ".4s, " wv ".16b, " xv ".16b\n"
#else
#define TSL_A64_MAC16(a, wv, xv) "smull v20.8h, " wv ".8b, " xv ".8b\n smull2 v21.8h, " wv ".16b, " xv ".16b\n" \
    "sadalp " a ".4s, v20.8h\n sadalp " a ".4s, v21.8h\n"
#endif
#define TSL_A64_ROW64(p, a) "ld1 {v4.16b-v7.16b}, [%[" p "]], #64\n" TSL_A64_MAC16(a, "v4", "v0") \
    TSL_A64_MAC16(a, "v5", "v1") TSL_A64_MAC16(a, "v6", "v2") TSL_A64_MAC16(a, "v7", "v3")
static void tsl_a64_rows4(const int8_t *x, const int8_t *w, int32_t *acc, int64_t nb, int64_t K)
{
    const int8_t *xp, *w1, *w2, *w3;
    int64_t cnt;
    __asm volatile(
        "1:\n"
        "mov %[xp], %[x]\n add %[w1], %[w0], %[K]\n add %[w2], %[w1], %[K]\n add %[w3], %[w2], %[K]\n"
        "movi v16.4s, #0\n movi v17.4s, #0\n movi v18.4s, #0\n movi v19.4s, #0\n"
        "lsr %[cnt], %[K], #6\n"
        "2:\n"
        "ld1 {v0.16b-v3.16b}, [%[xp]], #64\n"
        TSL_A64_ROW64("w0", "v16") TSL_A64_ROW64("w1", "v17") TSL_A64_ROW64("w2", "v18") TSL_A64_ROW64("w3", "v19")
        "subs %[cnt], %[cnt], #1\n b.ne 2b\n"
        "addp v16.4s, v16.4s, v17.4s\n addp v18.4s, v18.4s, v19.4s\n addp v16.4s, v16.4s, v18.4s\n"
        "st1 {v16.4s}, [%[acc]], #16\n"
        "mov %[w0], %[w3]\n"              /* K % 64 == 0: row 3 ends where the next block starts */
        "subs %[nb], %[nb], #1\n b.ne 1b\n"
        : [w0] "+r"(w), [acc] "+r"(acc), [nb] "+r"(nb), [xp] "=&r"(xp), [w1] "=&r"(w1), [w2] "=&r"(w2),
          [w3] "=&r"(w3), [cnt] "=&r"(cnt)
        : [x] "r"(x), [K] "r"(K)
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17", "v18", "v19", "v20", "v21", "cc", "memory");
}
#undef TSL_A64_MAC16
#undef TSL_A64_ROW64
#endif

#if defined(TSL_NEON_ANY)
/* acc += the 16 products w[j] * x[j], spread over 4 lanes */
static inline int32x4_t tsl_neon_dot16(int32x4_t acc, int8x16_t w, int8x16_t x)
{
#if defined(TSL_NEON_DOTPROD)
    return vdotq_s32(acc, w, x);
#else
    /* int8 * int8 products fit int16; pairs of them only int32 (16384 + 16384) */
    return vpadalq_s16(vpadalq_s16(acc, vmull_s8(vget_low_s8(w), vget_low_s8(x))), vmull_high_s8(w, x));
#endif
}
#endif

#if defined(TSL_X86)
/* tsl_avx2_rows prefetches the weights this many bytes past the next block of 4 rows. Four
 * interleaved streams of K bytes each (576 on SmolLM-135M) are too short for the hardware
 * prefetcher to catch: on an AVX2 EPYC VM the 135M model's int8 decode went from 27-34 to 13-15 ms
 * per token with it (0.68x to 1.19x llama.cpp Q8_0's rate, benchmarks/bench_llamacpp.py). */
#define TSL_PF_AHEAD 8192
TSL_TARGET_AVX2 static inline int32_t tsl_avx2_hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1)));
}

/* AVX2: acc[n] = w[n][0:k0] . x, k0 % 16 == 0, rows in blocks of four sharing the x loads. Per 16 k
 * and row: sign-extend to int16 (VPMOVSXBW), VPMADDWD (pairs of int8 products are exact in int32).
 * Per 16 k, one cache line prefetched TSL_PF_AHEAD bytes past the next block: the 64 bytes this
 * step reads, one block and a distance later (an address past the matrix: a prefetch does not fault). */
TSL_TARGET_AVX2 static void tsl_avx2_rows(const int8_t *x, const int8_t *w, int32_t *acc, int32_t N,
                                          int32_t K, int32_t k0)
{
#define TSL_AVX2_LD16(p) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(p)))
    int32_t n = 0;
    for (; n + 4 <= N; n += 4) {
        const int8_t *w0 = w + (intptr_t)n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        const uintptr_t pf = (uintptr_t)w3 + (uintptr_t)K + TSL_PF_AHEAD;   /* may lie past w */
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t k = 0; k < k0; k += 16) {
            _mm_prefetch((const char *)(pf + 4 * (uintptr_t)k), _MM_HINT_T0);
            const __m256i xv = TSL_AVX2_LD16(x + k);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(TSL_AVX2_LD16(w0 + k), xv));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(TSL_AVX2_LD16(w1 + k), xv));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(TSL_AVX2_LD16(w2 + k), xv));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(TSL_AVX2_LD16(w3 + k), xv));
        }
        acc[n] = tsl_avx2_hsum(a0); acc[n + 1] = tsl_avx2_hsum(a1);
        acc[n + 2] = tsl_avx2_hsum(a2); acc[n + 3] = tsl_avx2_hsum(a3);
    }
    for (; n < N; n++) {
        const int8_t *w0 = w + (intptr_t)n * K;
        __m256i a0 = _mm256_setzero_si256();
        for (int32_t k = 0; k < k0; k += 16)
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(TSL_AVX2_LD16(w0 + k), TSL_AVX2_LD16(x + k)));
        acc[n] = tsl_avx2_hsum(a0);
    }
#undef TSL_AVX2_LD16
}

/* AVX-512 VNNI: acc[n] = w[n] . x over all K, four rows per pass, the last K % 64 by masked loads
 * (masked-out bytes are 0 in x, so they add nothing). VPDPBUSD multiplies unsigned by signed bytes,
 * so each row enters as w + 128 (w ^ 0x80) and the 128 * sum(x) that adds is taken off once per row;
 * all sums wrap mod 2^32, so the result is exact. */
TSL_TARGET_VNNI static void tsl_vnni_rows(const int8_t *x, const int8_t *w, int32_t *acc, int32_t N, int32_t K)
{
#define TSL_VNNI_LD(p) _mm512_xor_si512(_mm512_loadu_si512((const void *)(p)), flip)
#define TSL_VNNI_LDM(p) _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, (const void *)(p)), flip)
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const int32_t k0 = K & ~63;
    const __mmask64 m = ((__mmask64)1 << (K & 63)) - 1;
    uint32_t xsum = 0;
    for (int32_t k = 0; k < K; k++) xsum += (uint32_t)(int32_t)x[k];
    const uint32_t corr = xsum << 7;
    const __m512i xt = _mm512_maskz_loadu_epi8(m, (const void *)(x + k0));
    int32_t n = 0;
    for (; n + 4 <= N; n += 4) {
        const int8_t *w0 = w + (intptr_t)n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t k = 0; k < k0; k += 64) {
            const __m512i xv = _mm512_loadu_si512((const void *)(x + k));
            a0 = _mm512_dpbusd_epi32(a0, TSL_VNNI_LD(w0 + k), xv);
            a1 = _mm512_dpbusd_epi32(a1, TSL_VNNI_LD(w1 + k), xv);
            a2 = _mm512_dpbusd_epi32(a2, TSL_VNNI_LD(w2 + k), xv);
            a3 = _mm512_dpbusd_epi32(a3, TSL_VNNI_LD(w3 + k), xv);
        }
        if (m) {
            a0 = _mm512_dpbusd_epi32(a0, TSL_VNNI_LDM(w0 + k0), xt);
            a1 = _mm512_dpbusd_epi32(a1, TSL_VNNI_LDM(w1 + k0), xt);
            a2 = _mm512_dpbusd_epi32(a2, TSL_VNNI_LDM(w2 + k0), xt);
            a3 = _mm512_dpbusd_epi32(a3, TSL_VNNI_LDM(w3 + k0), xt);
        }
        acc[n] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(a0) - corr);
        acc[n + 1] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(a1) - corr);
        acc[n + 2] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(a2) - corr);
        acc[n + 3] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(a3) - corr);
    }
    for (; n < N; n++) {
        const int8_t *w0 = w + (intptr_t)n * K;
        __m512i a0 = _mm512_setzero_si512();
        for (int32_t k = 0; k < k0; k += 64)
            a0 = _mm512_dpbusd_epi32(a0, TSL_VNNI_LD(w0 + k), _mm512_loadu_si512((const void *)(x + k)));
        if (m) a0 = _mm512_dpbusd_epi32(a0, TSL_VNNI_LDM(w0 + k0), xt);
        acc[n] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(a0) - corr);
    }
#undef TSL_VNNI_LD
#undef TSL_VNNI_LDM
}
#endif

#if defined(TSL_ARM_NODSP)
#define TSL_NODSP_KC 256    /* x chunk, sign-extended to int32 on the stack: 4 * KC bytes */

/* The four int8 of a little-endian word, sign-extended: SXTB / SBFX on the M3, shifts on the M0+. */
#define TSL_B0(u) ((int32_t)(int8_t)(u))
#define TSL_B1(u) ((int32_t)(int8_t)((u) >> 8))
#define TSL_B2(u) ((int32_t)(int8_t)((u) >> 16))
#define TSL_B3(u) ((int32_t)(u) >> 24)

#if defined(__ARM_ARCH_6M__) && !defined(TSL_EMULATE_NODSP)
/* w[0:kc] . x for one row, the hot loop of the M0+ path: w 4-aligned, kc % 8 == 0, kc > 0 (x
 * sign-extended in xb). Per 4 k: one LDR of the weights, two LDM of 2 x words, SXTB or a shift pair
 * per byte, 4 MULS and 4 ADDS: 37 instructions per 8 MACs. Registers (all low: Thumb-1): xp r0,
 * w r1, sum r2, weight word r3, product r4, x words r5 r6, x end r7. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static int32_t tsl_m0_row(const int32_t *xb, const int8_t *w, int32_t kc)
{
#define TSL_M0_WORD(off) "ldr r3, [r1, #" #off "]\n ldm r0!, {r5, r6}\n"                             \
    "sxtb r4, r3\n muls r4, r5, r4\n adds r2, r2, r4\n"                                             \
    "lsls r4, r3, #16\n asrs r4, r4, #24\n muls r4, r6, r4\n adds r2, r2, r4\n ldm r0!, {r5, r6}\n" \
    "lsls r4, r3, #8\n asrs r4, r4, #24\n muls r4, r5, r4\n adds r2, r2, r4\n"                      \
    "asrs r4, r3, #24\n muls r4, r6, r4\n adds r2, r2, r4\n"
    __asm volatile(
        ".syntax unified\n"
        "push {r4, r5, r6, r7, lr}\n"
        "lsls r2, r2, #2\n adds r7, r0, r2\n movs r2, #0\n"
        "1:\n" TSL_M0_WORD(0) TSL_M0_WORD(4)
        "adds r1, #8\n cmp r0, r7\n bne 1b\n"
        "movs r0, r2\n"
        "pop {r4, r5, r6, r7, pc}\n");
#undef TSL_M0_WORD
}
#pragma GCC diagnostic pop
#endif

/* acc[n] (+)= w[n][0:kc] . x for n < N, two rows per pass sharing the x words of xb (x sign-extended;
 * one row per pass on Thumb-1, by tsl_m0_row where kc % 8 == 0); kc % 4 == 0, rows K apart, words at
 * w + n*K + 4i loadable (tsl_nodsp_words). Per 4 k and row: one word load, 4 extracts, 4 MLA. */
static void tsl_nodsp_rows(const int32_t *xb, const int8_t *w, int32_t *acc, int32_t N, int32_t K,
                           int32_t kc, int first)
{
    int32_t n = 0;
#if !defined(__ARM_ARCH_6M__)   /* Thumb-1 has 8 low registers: one row at a time there */
    for (; n + 2 <= N; n += 2) {
        const int8_t *w0 = w + (intptr_t)n * K, *w1 = w0 + K;
        int32_t a0 = first ? 0 : acc[n], a1 = first ? 0 : acc[n + 1];
        for (int32_t k = 0; k < kc; k += 4) {
            const uint32_t u = *(const tsl_u32u *)(w0 + k), v = *(const tsl_u32u *)(w1 + k);
            const int32_t x0 = xb[k], x1 = xb[k + 1], x2 = xb[k + 2], x3 = xb[k + 3];
            a0 += TSL_B0(u) * x0 + TSL_B1(u) * x1 + TSL_B2(u) * x2 + TSL_B3(u) * x3;
            a1 += TSL_B0(v) * x0 + TSL_B1(v) * x1 + TSL_B2(v) * x2 + TSL_B3(v) * x3;
        }
        acc[n] = a0; acc[n + 1] = a1;
    }
#endif
    for (; n < N; n++) {
        const int8_t *w0 = w + (intptr_t)n * K;
        int32_t a0 = first ? 0 : acc[n];
#if defined(__ARM_ARCH_6M__) && !defined(TSL_EMULATE_NODSP)
        if ((kc & 7) == 0) {
            acc[n] = a0 + tsl_m0_row(xb, w0, kc);
            continue;
        }
#endif
        for (int32_t k = 0; k < kc; k += 4) {
            const uint32_t u = *(const tsl_u32u *)(w0 + k);
            a0 += TSL_B0(u) * xb[k] + TSL_B1(u) * xb[k + 1] + TSL_B2(u) * xb[k + 2] + TSL_B3(u) * xb[k + 3];
        }
        acc[n] = a0;
    }
}

#if defined(__ARM_ARCH_7M__) && !defined(TSL_EMULATE_NODSP)
/* Rows in pairs, the hot loop of the M3 path: for p < np, acc[2p..2p+1] (+)= w[2p..2p+1][0:kc] . x,
 * rows K apart, kc = 16 * cfg->n16 > 0 (x sign-extended in xb). Per 4 k: one LDM of 4 x words, per
 * row one LDR, 4 SBFX/ASR and 4 MLA: 19 instructions per 8 MACs. Registers: xp r0, row pointers r1
 * r2, sums r3 r7, x words r4 r5 r6 r8, weight words r9 r10, r11 the extracted weight, r12 count,
 * lr the acc pointer; xb, np, K and the row skip K - kc live on the stack. */
typedef struct { int32_t K, n16, first; } tsl_nodsp_cfg;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static void tsl_m3_rows2(const int32_t *xb, const int8_t *w, int32_t *acc,
                                                          int32_t np, const tsl_nodsp_cfg *cfg)
{
#define TSL_M3_ROW4(wr, a) "sxtb r11, " wr "\n mla " a ", r11, r4, " a "\n sbfx r11, " wr ", #8, #8\n"  \
    "mla " a ", r11, r5, " a "\n sbfx r11, " wr ", #16, #8\n mla " a ", r11, r6, " a "\n"               \
    "asr r11, " wr ", #24\n mla " a ", r11, r8, " a "\n"
#define TSL_M3_STEP4 "ldm r0!, {r4, r5, r6, r8}\n ldr r9, [r1], #4\n ldr r10, [r2], #4\n" \
    TSL_M3_ROW4("r9", "r3") TSL_M3_ROW4("r10", "r7")
    __asm volatile(
        "push {r4-r11, lr}\n"
        "ldr r12, [sp, #36]\n"            /* cfg */
        "ldr r4, [r12, #0]\n"             /* K */
        "ldr r5, [r12, #4]\n"             /* n16 */
        "sub r6, r4, r5, lsl #4\n"        /* K - kc */
        "sub sp, sp, #16\n"
        "str r0, [sp, #0]\n str r3, [sp, #4]\n str r4, [sp, #8]\n str r6, [sp, #12]\n"
        "mov lr, r2\n"
        "1:\n"
        "ldr r0, [sp, #0]\n"
        "ldr r9, [sp, #8]\n add r2, r1, r9\n"
        "ldr r12, [sp, #36 + 16]\n ldr r3, [r12, #8]\n ldr r12, [r12, #4]\n"
        "cbz r3, 4f\n"
        "movs r3, #0\n movs r7, #0\n b 2f\n"
        "4:\n ldrd r3, r7, [lr]\n"
        "2:\n" TSL_M3_STEP4 TSL_M3_STEP4 TSL_M3_STEP4 TSL_M3_STEP4
        "subs r12, r12, #1\n bne 2b\n"
        "strd r3, r7, [lr], #8\n"
        "ldr r9, [sp, #12]\n add r1, r2, r9\n"
        "ldr r9, [sp, #4]\n subs r9, r9, #1\n str r9, [sp, #4]\n bne 1b\n"
        "add sp, sp, #16\n"
        "pop {r4-r11, pc}\n");
#undef TSL_M3_ROW4
#undef TSL_M3_STEP4
}
#pragma GCC diagnostic pop
#endif

/* Word loads of every row allowed: any address where the core has unaligned loads, else 4-aligned rows. */
static inline int tsl_nodsp_words(const int8_t *w, int32_t K)
{
#if defined(TSL_UNALIGNED_WORDS)
    (void)w; (void)K;
    return 1;
#else
    return (((uintptr_t)w | (uintptr_t)K) & 3) == 0;
#endif
}
#endif

#if defined(TSL_RISCV_SCALAR4) && defined(__riscv) && __riscv_xlen == 32 && defined(__riscv_mul)
/* Rows in blocks of eight, the hot loop of the rv32 path: acc[8b + r] = w[8b + r][0:k0] . x for b < nb,
 * rows K apart, k0 % 8 == 0, k0 > 0. Per 8 k: 8 LB of x, then per row 8 x (LB, MUL, ADD) and one
 * pointer step: 210 instructions per 64 MACs. (LB, not word loads: the ESP32-C3 traps on unaligned
 * words, and a byte costs two shifts out of a word. Two int8 products per 32-bit MUL do not fit:
 * a sum of two of them needs 17 bits, more than the 16 that SWAR lanes of a 32-bit product leave.)
 * Registers: xp a0, x end a1, row pointers a2-a7 t0 t1, sums s0-s7, x s8-s11 ra t2 t3 t4, temps t5 t6;
 * x, acc, nb, K, k0 and the next block's row 0 live on the stack. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static void tsl_rv32_rows8(const int8_t *x, const int8_t *w, int32_t *acc,
                                                            int32_t nb, int32_t K, int32_t k0)
{
#define TSL_RV_MAC(i, xr, p, a) "lb t5, " #i "(" p ")\n mul t5, t5, " xr "\n add " a ", " a ", t5\n"
#define TSL_RV_ROW(p, a) TSL_RV_MAC(0, "s8", p, a) TSL_RV_MAC(1, "s9", p, a) TSL_RV_MAC(2, "s10", p, a) \
    TSL_RV_MAC(3, "s11", p, a) TSL_RV_MAC(4, "ra", p, a) TSL_RV_MAC(5, "t2", p, a) TSL_RV_MAC(6, "t3", p, a) \
    TSL_RV_MAC(7, "t4", p, a) "addi " p ", " p ", 8\n"
    __asm volatile(
        "addi sp, sp, -80\n"
        "sw ra, 0(sp)\n sw s0, 4(sp)\n sw s1, 8(sp)\n sw s2, 12(sp)\n sw s3, 16(sp)\n sw s4, 20(sp)\n"
        "sw s5, 24(sp)\n sw s6, 28(sp)\n sw s7, 32(sp)\n sw s8, 36(sp)\n sw s9, 40(sp)\n sw s10, 44(sp)\n"
        "sw s11, 48(sp)\n"
        "sw a0, 52(sp)\n sw a2, 56(sp)\n sw a3, 60(sp)\n sw a4, 64(sp)\n sw a5, 68(sp)\n sw a1, 72(sp)\n"
        "1:\n"
        "lw a2, 72(sp)\n lw t5, 64(sp)\n"
        "add a3, a2, t5\n add a4, a3, t5\n add a5, a4, t5\n add a6, a5, t5\n add a7, a6, t5\n"
        "add t0, a7, t5\n add t1, t0, t5\n add t6, t1, t5\n sw t6, 72(sp)\n"
        "lw a0, 52(sp)\n lw t6, 68(sp)\n add a1, a0, t6\n"
        "li s0, 0\n li s1, 0\n li s2, 0\n li s3, 0\n li s4, 0\n li s5, 0\n li s6, 0\n li s7, 0\n"
        "2:\n"
        "lb s8, 0(a0)\n lb s9, 1(a0)\n lb s10, 2(a0)\n lb s11, 3(a0)\n"
        "lb ra, 4(a0)\n lb t2, 5(a0)\n lb t3, 6(a0)\n lb t4, 7(a0)\n"
        TSL_RV_ROW("a2", "s0") TSL_RV_ROW("a3", "s1") TSL_RV_ROW("a4", "s2") TSL_RV_ROW("a5", "s3")
        TSL_RV_ROW("a6", "s4") TSL_RV_ROW("a7", "s5") TSL_RV_ROW("t0", "s6") TSL_RV_ROW("t1", "s7")
        "addi a0, a0, 8\n bne a0, a1, 2b\n"
        "lw t5, 56(sp)\n"
        "sw s0, 0(t5)\n sw s1, 4(t5)\n sw s2, 8(t5)\n sw s3, 12(t5)\n"
        "sw s4, 16(t5)\n sw s5, 20(t5)\n sw s6, 24(t5)\n sw s7, 28(t5)\n"
        "addi t5, t5, 32\n sw t5, 56(sp)\n"
        "lw t6, 60(sp)\n addi t6, t6, -1\n sw t6, 60(sp)\n bnez t6, 1b\n"
        "lw ra, 0(sp)\n lw s0, 4(sp)\n lw s1, 8(sp)\n lw s2, 12(sp)\n lw s3, 16(sp)\n lw s4, 20(sp)\n"
        "lw s5, 24(sp)\n lw s6, 28(sp)\n lw s7, 32(sp)\n lw s8, 36(sp)\n lw s9, 40(sp)\n lw s10, 44(sp)\n"
        "lw s11, 48(sp)\n"
        "addi sp, sp, 80\n"
        "ret\n");
#undef TSL_RV_MAC
#undef TSL_RV_ROW
}
#pragma GCC diagnostic pop
#define TSL_RV32_ROWS8 1
#endif

/* acc[n] = sum_k w[n*K + k] * x[k], n in [0, N): w row-major int8 [N][K]. Out of line, so that
 * instruction profiles (benchmarks/tcg) tell it from the epilogue. */
__attribute__((noinline)) static void tsl_matvec_acc(const int8_t *x, const int8_t *w, int32_t *acc, int32_t N,
                                                     int32_t K)
{
    int32_t k0 = 0;   /* the ISA path covers k < k0 of every row */
#if defined(TSL_ARM_MVE)
    k0 = K & ~15;
    int32_t n = 0;
    if ((K & 63) == 0 && K > 0 && N >= 4) {
        tsl_mve_rows4(x, w, acc, N / 4, K);
        n = N & ~3;
    }
    for (; n + 4 <= N; n += 4) {
        const int8_t *w0 = w + (intptr_t)n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (int32_t k = 0; k < k0; k += 16) {
            const int8x16_t xv = vldrbq_s8(x + k);
            a0 = vmladavaq_s8(a0, vldrbq_s8(w0 + k), xv);
            a1 = vmladavaq_s8(a1, vldrbq_s8(w1 + k), xv);
            a2 = vmladavaq_s8(a2, vldrbq_s8(w2 + k), xv);
            a3 = vmladavaq_s8(a3, vldrbq_s8(w3 + k), xv);
        }
        acc[n] = a0; acc[n + 1] = a1; acc[n + 2] = a2; acc[n + 3] = a3;
    }
    for (; n < N; n++) {
        const int8_t *w0 = w + (intptr_t)n * K;
        int32_t a0 = 0;
        for (int32_t k = 0; k < k0; k += 16) a0 = vmladavaq_s8(a0, vldrbq_s8(w0 + k), vldrbq_s8(x + k));
        acc[n] = a0;
    }
#elif defined(TSL_ARM_DSP)
    k0 = K & ~7;
    uint32_t xb[TSL_DSP_KC / 2];
    if (k0 == 0) for (int32_t n = 0; n < N; n++) acc[n] = 0;
    for (int32_t c = 0; c < k0; c += TSL_DSP_KC) {
        const int32_t n8 = (k0 - c < TSL_DSP_KC ? k0 - c : TSL_DSP_KC) / 8;
        tsl_dsp_expand(x + c, xb, n8);
        int32_t n = 0;
#if !defined(TSL_EMULATE_DSP)
        if ((((uintptr_t)w | (uintptr_t)K) & 3) == 0 && (n8 & 3) == 0 && N >= 2) {   /* rows 4-aligned */
            const tsl_dsp_cfg cfg = {K, n8 / 4};
            if (c == 0) for (int32_t i = 0; i < (N & ~1); i++) acc[i] = 0;
            tsl_dsp_rows2(xb, w + c, acc, N / 2, &cfg);
            n = N & ~1;
        }
#endif
        for (; n + 2 <= N; n += 2) {
            const int8_t *w0 = w + (intptr_t)n * K + c;
            tsl_dsp_dot2(xb, w0, w0 + K, n8, acc + n, acc + n + 1, c == 0);
        }
        if (n < N) {   /* odd row: paired with itself, the second sum discarded */
            int32_t dummy = 0;
            const int8_t *w0 = w + (intptr_t)n * K + c;
            tsl_dsp_dot2(xb, w0, w0, n8, acc + n, &dummy, c == 0);
        }
    }
#elif defined(TSL_ARM_NODSP)
    if (tsl_nodsp_words(w, K)) k0 = K & ~7;
    int32_t xb[TSL_NODSP_KC];
    if (k0 == 0) for (int32_t n = 0; n < N; n++) acc[n] = 0;
    for (int32_t c = 0; c < k0; c += TSL_NODSP_KC) {
        const int32_t kc = k0 - c < TSL_NODSP_KC ? k0 - c : TSL_NODSP_KC;
        for (int32_t i = 0; i < kc; i++) xb[i] = x[c + i];
        int32_t n = 0;
#if defined(__ARM_ARCH_7M__) && !defined(TSL_EMULATE_NODSP)
        if ((kc & 15) == 0 && N >= 2) {
            const tsl_nodsp_cfg cfg = {K, kc / 16, c == 0};
            tsl_m3_rows2(xb, w + c, acc, N / 2, &cfg);
            n = N & ~1;
        }
#endif
        tsl_nodsp_rows(xb, w + (intptr_t)n * K + c, acc + n, N - n, K, kc, c == 0);
    }
#elif defined(TSL_NEON_ANY)
    k0 = K & ~15;
    int32_t n = 0;
#if defined(__aarch64__) && !defined(TSL_SIMDE_NEON)
    if ((K & 63) == 0 && K > 0 && N >= 4) {
        tsl_a64_rows4(x, w, acc, N / 4, K);
        n = N & ~3;
    }
#endif
    for (; n + 4 <= N; n += 4) {
        const int8_t *w0 = w + (intptr_t)n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t k = 0; k < k0; k += 16) {
            const int8x16_t xv = vld1q_s8(x + k);
            a0 = tsl_neon_dot16(a0, vld1q_s8(w0 + k), xv);
            a1 = tsl_neon_dot16(a1, vld1q_s8(w1 + k), xv);
            a2 = tsl_neon_dot16(a2, vld1q_s8(w2 + k), xv);
            a3 = tsl_neon_dot16(a3, vld1q_s8(w3 + k), xv);
        }
        acc[n] = vaddvq_s32(a0); acc[n + 1] = vaddvq_s32(a1);
        acc[n + 2] = vaddvq_s32(a2); acc[n + 3] = vaddvq_s32(a3);
    }
    for (; n < N; n++) {
        const int8_t *w0 = w + (intptr_t)n * K;
        int32x4_t a0 = vdupq_n_s32(0);
        for (int32_t k = 0; k < k0; k += 16) a0 = tsl_neon_dot16(a0, vld1q_s8(w0 + k), vld1q_s8(x + k));
        acc[n] = vaddvq_s32(a0);
    }
#elif defined(TSL_RISCV_SCALAR4)
    k0 = K & ~3;
    int32_t n = 0;
#if defined(TSL_RV32_ROWS8)
    if ((K & ~7) > 0 && N >= 8) {
        k0 = K & ~7;
        tsl_rv32_rows8(x, w, acc, N / 8, K, k0);
        n = N & ~7;
    }
#endif
    for (; n + 4 <= N; n += 4) {
        const int8_t *p0 = w + (intptr_t)n * K, *p1 = p0 + K, *p2 = p1 + K, *p3 = p2 + K, *xp = x;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (int32_t k = 0; k < k0; k += 4, xp += 4, p0 += 4, p1 += 4, p2 += 4, p3 += 4) {
            const int32_t x0 = xp[0], x1 = xp[1], x2 = xp[2], x3 = xp[3];
            a0 += p0[0] * x0 + p0[1] * x1 + p0[2] * x2 + p0[3] * x3;
            a1 += p1[0] * x0 + p1[1] * x1 + p1[2] * x2 + p1[3] * x3;
            a2 += p2[0] * x0 + p2[1] * x1 + p2[2] * x2 + p2[3] * x3;
            a3 += p3[0] * x0 + p3[1] * x1 + p3[2] * x2 + p3[3] * x3;
        }
        acc[n] = a0; acc[n + 1] = a1; acc[n + 2] = a2; acc[n + 3] = a3;
    }
    for (; n < N; n++) {
        const int8_t *w0 = w + (intptr_t)n * K;
        int32_t a0 = 0;
        for (int32_t k = 0; k < k0; k++) a0 += w0[k] * x[k];
        acc[n] = a0;
    }
#elif defined(TSL_X86)
    const int level = tsl_x86_level();
    if (level == TSL_X86_VNNI) {
        k0 = K;
        tsl_vnni_rows(x, w, acc, N, K);
    } else if (level >= TSL_X86_AVX2) {
        k0 = K & ~15;
        tsl_avx2_rows(x, w, acc, N, K, k0);
    } else {
        for (int32_t n = 0; n < N; n++) acc[n] = 0;
    }
#else
    for (int32_t n = 0; n < N; n++) acc[n] = 0;
    if (K == 0) return;
#endif
    /* Portable scalar tail (all of K on the portable path). */
    if (k0 < K) for (int32_t n = 0; n < N; n++) {
        const int8_t *wr = w + (intptr_t)n * K;
        int32_t a = acc[n];
        for (int32_t k = k0; k < K; k++) a += (int32_t)wr[k] * (int32_t)x[k];
        acc[n] = a;
    }
}


void tsl_matvec_s8_s32(const int8_t *x, const int8_t *w, int32_t *dst, int32_t N, int32_t K)
{
    tsl_matvec_acc(x, w, dst, N, K);
}

void tsl_matvec_s8_f32(const int8_t *x, float sx, const int8_t *w, const float *ws,
                       const float *bias, float *dst, int32_t N, int32_t K, int32_t accumulate)
{
    int32_t acc[TSL_ROW_BLOCK];
    for (int32_t n0 = 0; n0 < N; n0 += TSL_ROW_BLOCK) {
        const int32_t nb = N - n0 < TSL_ROW_BLOCK ? N - n0 : TSL_ROW_BLOCK;
        tsl_matvec_acc(x, w + (intptr_t)n0 * K, acc, nb, K);
        tsl_epilogue(acc, sx, ws + n0, bias ? bias + n0 : 0, dst + n0, nb, accumulate);
    }
}
