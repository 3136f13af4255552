/* tsl_matvec_s4.c -- int4 (group-scaled) x int8 matrix-vector product.
 *
 * ISA paths unpack nibbles to 16 * w4 (the nibble in the high half of a byte: a shift or a mask,
 * no sign extension), so each group dot product comes out as 16 * dot, shifted right by 4 (exact)
 * before it is multiplied by its signed group scale. Bounds: |16 * dot| <= 32 * 128 * 128 per
 * group; the row sum is within the callers' K * 8 * 128 * 127 < 2^31. */
#include "tsl_kernels.h"
#include "tsl_epilogue.h"

/* sum over one group of TSL_S4_GROUP weights: w4 packed two per byte, even k low nibble */
static int32_t tsl_dot_s4_group(const uint8_t *w, const int8_t *x)
{
    int32_t acc = 0;
    for (int32_t j = 0; j < TSL_S4_GROUP / 2; j++) {
        const int32_t lo = (int32_t)((int8_t)(w[j] << 4) >> 4);
        const int32_t hi = (int32_t)((int8_t)w[j] >> 4);
        acc += lo * (int32_t)x[2 * j] + hi * (int32_t)x[2 * j + 1];
    }
    return acc;
}

#if defined(TSL_ARM_DSP)
#define TSL_S4_KC 512       /* x chunk expanded on the stack: 2 * KC bytes */

static uint32_t tsl_pair16(int8_t lo, int8_t hi)
{
    return (uint32_t)(uint16_t)(int16_t)lo | ((uint32_t)(uint16_t)(int16_t)hi << 16);
}

#if !defined(TSL_EMULATE_DSP)
/* sum_g gs[g] * (w4[g] . x[g]) over G groups of one row, the hot loop of the DSP path (x expanded
 * in xb). Per weight word (8 k): the two nibble masks, 4 SXTB16, 4 SMLAD with the 4 x words of LDM;
 * 53 instructions per group of 32 MACs. Registers: xp r0, w r1, gs r2, row sum r3, x words r4 r5 r6
 * r8, group sum r7 (16 * dot), weight word r9, nibble halves r10 r11, mask r12, lr the group count. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static int32_t tsl_dsp_s4_row(const uint32_t *xb, const uint8_t *w,
                                                               const int8_t *gs, int32_t G)
{
#define TSL_S4_WORD(op) "ldm r0!, {r4, r5, r6, r8}\n ldr r9, [r1], #4\n"                               \
    "and r11, r9, r12\n and r10, r12, r9, lsl #4\n"                                                    \
    "sxtb16 r9, r10\n " op "\n sxtb16 r10, r10, ror #8\n smlad r7, r10, r5, r7\n"                     \
    "sxtb16 r9, r11\n smlad r7, r9, r6, r7\n sxtb16 r11, r11, ror #8\n smlad r7, r11, r8, r7\n"
    __asm volatile(
        "push {r4-r11, lr}\n"
        "mov lr, r3\n movs r3, #0\n"
        "mov r12, #0xF0F0F0F0\n"
        "1:\n"
        TSL_S4_WORD("smuad r7, r9, r4") TSL_S4_WORD("smlad r7, r9, r4, r7")
        TSL_S4_WORD("smlad r7, r9, r4, r7") TSL_S4_WORD("smlad r7, r9, r4, r7")
        "ldrsb r9, [r2], #1\n asr r7, r7, #4\n mla r3, r9, r7, r3\n"
        "subs lr, lr, #1\n bne 1b\n"
        "mov r0, r3\n"
        "pop {r4-r11, pc}\n");
#undef TSL_S4_WORD
}
#pragma GCC diagnostic pop
#endif

/* Per 8 k, the lane pairs one weight word yields: [x4|x0] [x6|x2] [x5|x1] [x7|x3]. */
static void tsl_s4_expand(const int8_t *x, uint32_t *xb, int32_t n8)
{
    for (int32_t i = 0; i < n8; i++, x += 8, xb += 4) {
        xb[0] = tsl_pair16(x[0], x[4]);
        xb[1] = tsl_pair16(x[2], x[6]);
        xb[2] = tsl_pair16(x[1], x[5]);
        xb[3] = tsl_pair16(x[3], x[7]);
    }
}
#endif

#if defined(TSL_NEON_ANY)
/* Blocks of 4 groups (128 k, 64 weight bytes), the weights read as they are stored: LD4 of 32-bit
 * words gives v_r (r < 4) whose lane i holds bytes 4r..4r+3 of group i, i.e. k = 8r + 2t (low
 * nibbles) and 8r + 2t + 1 (high), t < 4, of group i. So every SDOT lane stays in one group, and
 * a block ends with the 4 group sums in the 4 lanes, scaled by one MLA. x is rearranged to match
 * once per chunk: xr[block][2r + h][4i + t] = x[32i + 8r + 2t + h]. The last G % 4 groups make a
 * part block: their weights and scales loaded alone (lane loads, nothing past the row is read),
 * the missing groups' x zero. */
#define TSL_NEON_S4_KC 1024   /* x chunk rearranged on the stack (KC bytes); also keeps 16 * sums < 2^31 */

/* x[0:kc] (kc % 32 == 0) -> xr, ceil(kc / 128) blocks */
static void tsl_neon_s4_prep(const int8_t *x, int32_t kc, int8_t *xr)
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
 * Per block: x in v0-v7 (two 4-register loads for four rows), then per row an LD4 of its 64 weight
 * bytes (v16-v19), its 4 scales (s20), the 8 nibble vectors each unpacked by one SHL or AND
 * (dotprod: 22 instructions per 128 MACs) or SHL + SSHR / SSHR and two SMULL/SMLAL (plain NEON)
 * into the block sum v21, times the widened scales into the row sums v24-v27. A part block loads
 * its groups by lanes (lanes of missing groups meet zero x). */
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
#define TSL_S4_MATH(t) TSL_S4_BLOCK_START                                                      \
    TSL_S4_NIB("v16", "v0", "v1", "smull") TSL_S4_NIB("v17", "v2", "v3", "smlal")               \
    TSL_S4_NIB("v18", "v4", "v5", "smlal") TSL_S4_NIB("v19", "v6", "v7", "smlal")               \
    TSL_S4_BLOCK_END "sxtl v20.8h, v20.8b\n sxtl v20.4s, v20.4h\n mla " t ".4s, v21.4s, v20.4s\n"
#define TSL_S4_ROW(w, g, t) "ld4 {v16.4s-v19.4s}, [%[" w "]], #64\n ldr s20, [%[" g "]], #4\n" TSL_S4_MATH(t)
#define TSL_S4_ROW1(w, g, t) "ld4 {v16.s-v19.s}[0], [%[" w "]]\n ldr b20, [%[" g "]]\n" TSL_S4_MATH(t)
#define TSL_S4_ROW2(w, g, t) "ld4 {v16.2s-v19.2s}, [%[" w "]]\n ldr h20, [%[" g "]]\n" TSL_S4_MATH(t)
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
        TSL_S4_QUAD(TSL_S4_ROW)
        "subs %[cnt], %[cnt], #1\n b.ne 2b\n"
        "3:\n"
        "cbz %[left], 6f\n"
        "ld1 {v0.16b-v3.16b}, [%[xp]], #64\n ld1 {v4.16b-v7.16b}, [%[xp]]\n"
        "cmp %[left], #2\n b.lt 4f\n b.eq 5f\n"
        TSL_S4_QUAD(TSL_S4_ROW3) "b 6f\n"
        "4:\n" TSL_S4_QUAD(TSL_S4_ROW1) "b 6f\n"
        "5:\n" TSL_S4_QUAD(TSL_S4_ROW2)
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
          "v23", "v24", "v25", "v26", "v27", "v28", "v31", "cc", "memory");
}
#undef TSL_S4_NIB
#undef TSL_S4_BLOCK_START
#undef TSL_S4_BLOCK_END
#undef TSL_S4_BACK
#undef TSL_S4_MATH
#undef TSL_S4_ROW
#undef TSL_S4_ROW1
#undef TSL_S4_ROW2
#undef TSL_S4_ROW3
#undef TSL_S4_QUAD
#endif
#endif

#if defined(TSL_X86)
#define TSL_X86_S4_KC 2048   /* x chunk, rearranged on the stack: about 3 * KC bytes */
#define TSL_X86_S4_PAD 128   /* k of zeros after it */

/* x[0:kc] (kc % 32 == 0) -> xe[j] = x[2j], xo[j] = x[2j+1] (the k of the low and high nibbles of
 * weight byte j), and what the nibble bias (w4 + 8, unsigned) adds: c16[m] = 8 * sum x[4m..4m+3]
 * (AVX2 int16 lanes), c32[i] = -8 * sum x[8i..8i+7] (VNNI int32 lanes). Zeros after them up to a
 * whole block (TSL_X86_S4_PAD k), for the part blocks of the last groups. */
TSL_TARGET_AVX2 static void tsl_x86_s4_prep(const int8_t *x, int32_t kc, int8_t *xe, int8_t *xo, int16_t *c16,
                                            int32_t *c32)
{
    const __m256i ones = _mm256_set1_epi16(1);
    for (int32_t k = 0; k < kc; k += 32) {   /* 32 x -> 16 xe, 16 xo, 8 c16, 4 c32 */
        const __m256i v = _mm256_loadu_si256((const __m256i *)(x + k));
        const __m256i ev = _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8), od = _mm256_srai_epi16(v, 8);
        const __m256i q = _mm256_madd_epi16(_mm256_add_epi16(ev, od), ones);   /* int32: sum x[4m..4m+3] */
        /* the packs work per 128-bit lane: 0x08 gathers the two lanes' low halves */
        _mm_storeu_si128((__m128i *)(xe + k / 2), _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packs_epi16(ev, ev), 0x08)));
        _mm_storeu_si128((__m128i *)(xo + k / 2), _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packs_epi16(od, od), 0x08)));
        const __m256i q8 = _mm256_slli_epi32(q, 3);
        _mm_storeu_si128((__m128i *)(c16 + k / 4), _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packs_epi32(q8, q8), 0x08)));
        const __m256i h = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_hadd_epi32(q8, q8));
        _mm_storeu_si128((__m128i *)(c32 + k / 8), _mm256_castsi256_si128(_mm256_permute4x64_epi64(h, 0x08)));
    }
    memset(xe + kc / 2, 0, TSL_X86_S4_PAD / 2);
    memset(xo + kc / 2, 0, TSL_X86_S4_PAD / 2);
    memset(c16 + kc / 4, 0, TSL_X86_S4_PAD / 4 * sizeof(int16_t));
    memset(c32 + kc / 8, 0, TSL_X86_S4_PAD / 8 * sizeof(int32_t));
}

/* One block of 2 groups: the 32 weight bytes biased to unsigned nibbles (w ^ 0x88, masks),
 * VPMADDUBSW with the even and odd x (pairs <= 2 * 15 * 128: no saturation), minus c16: int16 lanes
 * of 4 products (|.| <= 4096), lanes 0-7 group g, 8-15 group g+1; VPMADDWD by the group scales
 * (g2: two s8) sums their pairs into int32. */
TSL_TARGET_AVX2 static inline __m256i tsl_avx2_s4_block(__m256i wv, uint16_t g2, const int8_t *xe,
                                                        const int8_t *xo, const int16_t *c16)
{
    const __m256i u = _mm256_xor_si256(wv, _mm256_set1_epi8((char)0x88)), m4 = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(u, m4), hi = _mm256_and_si256(_mm256_srli_epi16(u, 4), m4);
    __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)xe)),
                                 _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)xo)));
    s = _mm256_sub_epi16(s, _mm256_loadu_si256((const __m256i *)c16));
    __m128i g = _mm_cvtepi8_epi16(_mm_cvtsi32_si128(g2));   /* int16 [gs0, gs1, 0, ...] */
    g = _mm_unpacklo_epi16(g, g);                            /* int32 lanes [gs0|gs0, gs1|gs1, ...] */
    return _mm256_madd_epi16(s, _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(g),
                                                            _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1)));
}

/* sum_g gs[g] * (w4[g] . x[g]) over ng groups of one row (x prepared): blocks of 2 groups, an odd
 * last group as a half block (its partner's scale 0). */
TSL_TARGET_AVX2 static int32_t tsl_avx2_s4_row(const uint8_t *w, const int8_t *gs, const int8_t *xe,
                                               const int8_t *xo, const int16_t *c16, int32_t ng)
{
    __m256i a = _mm256_setzero_si256();
    int32_t b = 0;
    for (; 2 * b + 2 <= ng; b++) {
        uint16_t g2;
        memcpy(&g2, gs + 2 * b, 2);
        a = _mm256_add_epi32(a, tsl_avx2_s4_block(_mm256_loadu_si256((const __m256i *)(w + 32 * b)), g2,
                                                  xe + 32 * b, xo + 32 * b, c16 + 16 * b));
    }
    if (ng & 1) {
        const __m256i wv = _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_loadu_si128((const __m128i *)(w + 32 * b)), 0);
        a = _mm256_add_epi32(a, tsl_avx2_s4_block(wv, (uint8_t)gs[2 * b], xe + 32 * b, xo + 32 * b, c16 + 16 * b));
    }
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(r, _mm_shuffle_epi32(r, 0xB1)));
}

/* As tsl_avx2_s4_row, blocks of 4 groups: VPDPBUSD of the biased nibbles with the even and odd x,
 * starting from c32, gives int32 lanes of 8 products (lanes 4q..4q+3 group g+q), times the group
 * scales (VPMULLD). A last block of ng % 4 groups: a masked load (no byte past the row is read),
 * the missing groups' scales 0 and their x, c32 the zeros after the chunk. */
/* the first n (1..4) group scales at g as the bytes of a word, 0 above them */
static inline int32_t tsl_s4_scales(const int8_t *g, int32_t n)
{
    uint32_t v = 0;
    if (n == 4) memcpy(&v, g, 4);
    else for (int32_t i = 0; i < n; i++) v |= (uint32_t)(uint8_t)g[i] << (8 * i);
    return (int32_t)v;
}

TSL_TARGET_VNNI static inline __m512i tsl_vnni_s4_block(__m512i wv, int32_t g4, __m512i xe, __m512i xo, __m512i c32)
{
    const __m512i u = _mm512_xor_si512(wv, _mm512_set1_epi8((char)0x88)), m4 = _mm512_set1_epi8(0x0F);
    const __m512i lo = _mm512_and_si512(u, m4), hi = _mm512_and_si512(_mm512_srli_epi16(u, 4), m4);
    const __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(c32, lo, xe), hi, xo);
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_mullo_epi32(d, _mm512_permutexvar_epi32(idx, _mm512_cvtepi8_epi32(_mm_cvtsi32_si128(g4))));
}

/* out[j] = that sum for the 4 rows w + j * ws, gs + j * gss (ws = gss = 0 repeats one row); x is
 * loaded once per block for the four. */
TSL_TARGET_VNNI static void tsl_vnni_s4_rows4(const uint8_t *w, intptr_t ws, const int8_t *gs, intptr_t gss,
                                              const int8_t *xe, const int8_t *xo, const int32_t *c32, int32_t ng,
                                              int32_t *out)
{
#define TSL_VNNI_S4_STEP(LOAD, G4)                                                                   \
    {                                                                                                \
        const __m512i xev = _mm512_loadu_si512((const void *)(xe + 64 * b));                          \
        const __m512i xov = _mm512_loadu_si512((const void *)(xo + 64 * b));                          \
        const __m512i cv = _mm512_loadu_si512((const void *)(c32 + 16 * b));                          \
        const uint8_t *wb = w + 64 * b;                                                              \
        const int8_t *gb = gs + 4 * b;                                                               \
        a0 = _mm512_add_epi32(a0, tsl_vnni_s4_block(LOAD(wb), G4(gb), xev, xov, cv));                \
        a1 = _mm512_add_epi32(a1, tsl_vnni_s4_block(LOAD(wb + ws), G4(gb + gss), xev, xov, cv));     \
        a2 = _mm512_add_epi32(a2, tsl_vnni_s4_block(LOAD(wb + 2 * ws), G4(gb + 2 * gss), xev, xov, cv)); \
        a3 = _mm512_add_epi32(a3, tsl_vnni_s4_block(LOAD(wb + 3 * ws), G4(gb + 3 * gss), xev, xov, cv)); \
    }
#define TSL_LOAD_FULL(p) _mm512_loadu_si512((const void *)(p))
#define TSL_LOAD_PART(p) _mm512_maskz_loadu_epi8(m, (const void *)(p))
#define TSL_G4_FULL(p) tsl_s4_scales(p, 4)
#define TSL_G4_PART(p) tsl_s4_scales(p, left)
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int32_t b = 0;
    for (; 4 * b + 4 <= ng; b++) TSL_VNNI_S4_STEP(TSL_LOAD_FULL, TSL_G4_FULL)
    if (ng & 3) {
        const int32_t left = ng & 3;
        const __mmask64 m = ((__mmask64)1 << (16 * left)) - 1;
        TSL_VNNI_S4_STEP(TSL_LOAD_PART, TSL_G4_PART)
    }
    out[0] = _mm512_reduce_add_epi32(a0); out[1] = _mm512_reduce_add_epi32(a1);
    out[2] = _mm512_reduce_add_epi32(a2); out[3] = _mm512_reduce_add_epi32(a3);
#undef TSL_VNNI_S4_STEP
#undef TSL_LOAD_FULL
#undef TSL_LOAD_PART
#undef TSL_G4_FULL
#undef TSL_G4_PART
}
#endif

#if defined(TSL_SWAR_MUL)
/* Two products per 32-bit MUL (no SIMD: M0+/M3, rv32imc, Xtensa). Per weight word t of a group
 * (k = 8t + j, nibble j, j < 8), biased by XOR 0x88888888 to b_j = w_j + 8 in [0, 15]:
 *   p_j = b_j + b_{j+4} 2^16              (one AND, or a shift and an AND), j < 4
 *   X_j = x_{8t+j+4} + x_{8t+j} 2^16       (prepared once per x chunk, shared by all rows)
 * and with s_j = p_j - 8 (1 + 2^16) the signed lanes w_j + w_{j+4} 2^16, mod 2^32:
 *   s_j X_j = L + M 2^16,  L = w_j x_{8t+j+4},  M = w_j x_{8t+j} + w_{j+4} x_{8t+j+4}.
 * Ranges (w in [-8, 7], x in [-128, 127]: a product is in [-1016, 1024]): over the 16 MULs of a
 * group, sum L in [-16256, 16384] and the group dot sum M in [-32512, 32768]. So with
 *   A = c_g + sum_j p_j X_j (mod 2^32),  c_g = 2^15 - 256 * 2^16 - 8 (1 + 2^16) sum X_j
 * A = 2^15 + sum L + (sum M - 256) 2^16 exactly as an int32 (2^15 + sum L in [0, 2^16), sum M - 256
 * in [-2^15, 2^15)), and (A >> 16) + 256 is the group's dot product: no flush inside a group. */
#define TSL_SWAR_KC 256                   /* x chunk: 17 words per group on the stack (544 bytes) */
#define TSL_SWAR_GW (TSL_S4_GROUP / 2)    /* words per group: 16 X_j, then c_g */
#define TSL_SWAR_M 0x000F000Fu

/* x[0:kc] (kc % 32 == 0) -> per group 16 X_j (word t: X_{4t+j}) and c_g, 17 words */
static void tsl_swar_prep(const int8_t *x, int32_t kc, uint32_t *xp)
{
    for (int32_t g = 0; g < kc / TSL_S4_GROUP; g++, x += TSL_S4_GROUP, xp += TSL_SWAR_GW + 1) {
        uint32_t sx = 0;
        for (int32_t t = 0; t < 4; t++)
            for (int32_t j = 0; j < 4; j++) {
                const uint32_t v = (uint32_t)(int32_t)x[8 * t + j + 4] + ((uint32_t)(int32_t)x[8 * t + j] << 16);
                xp[4 * t + j] = v;
                sx += v;
            }
        xp[TSL_SWAR_GW] = 0x8000u - (256u << 16) - 8u * 0x10001u * sx;
    }
}

/* The weight word at p: a word load where allowed (tsl_swar_words), else composed from bytes. */
static inline uint32_t tsl_swar_word(const uint8_t *p)
{
#if defined(TSL_UNALIGNED_WORDS)
    return *(const tsl_u32u *)p;
#else
    return *(const uint32_t *)(const void *)p;
#endif
}

/* A += the 4 MULs of weight word u (group word t: X at xg[4t..4t+3]) */
#define TSL_SWAR_WORD(A, u, xg)                                                                    \
    do {                                                                                           \
        const uint32_t b_ = (u) ^ 0x88888888u;                                                     \
        A += (b_ & TSL_SWAR_M) * (xg)[0] + ((b_ >> 4) & TSL_SWAR_M) * (xg)[1] +                    \
             ((b_ >> 8) & TSL_SWAR_M) * (xg)[2] + ((b_ >> 12) & TSL_SWAR_M) * (xg)[3];             \
    } while (0)

#if defined(__ARM_ARCH_7M__) && !defined(TSL_EMULATE_NODSP)
/* sum_g gs[g] * (w4[g] . x[g]) over ng > 0 groups of one row (x prepared by tsl_swar_prep), the hot
 * loop of the M3 path. Per weight word: LDR, EOR, one LDM of its 4 X_j, 4 x (AND with a shifted
 * operand, MLA); per group c_g first, then ASR, ADD, LDRSB and MLA: 52 instructions per 32 MACs.
 * Registers: xp r0, w r1, gs r2, groups left r3, X r4-r7, A r8, weight word r9, pair r10,
 * mask r11, bias r12, row sum lr. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static int32_t tsl_m3_s4_row(const uint32_t *xp, const uint8_t *w,
                                                              const int8_t *gs, int32_t ng)
{
#define TSL_M3_S4_WORD "ldr r9, [r1], #4\n eor r9, r9, r12\n ldm r0!, {r4, r5, r6, r7}\n"                   \
    "and r10, r11, r9\n mla r8, r10, r4, r8\n and r10, r11, r9, lsr #4\n mla r8, r10, r5, r8\n"            \
    "and r10, r11, r9, lsr #8\n mla r8, r10, r6, r8\n and r10, r11, r9, lsr #12\n mla r8, r10, r7, r8\n"
    __asm volatile(
        "push {r4-r11, lr}\n"
        "mov r11, #0x000F000F\n mov r12, #0x88888888\n movs lr, #0\n"
        "1:\n"
        "ldr r8, [r0, #64]\n"
        TSL_M3_S4_WORD TSL_M3_S4_WORD TSL_M3_S4_WORD TSL_M3_S4_WORD
        "adds r0, r0, #4\n"
        "asr r8, r8, #16\n add r8, r8, #256\n ldrsb r9, [r2], #1\n mla lr, r9, r8, lr\n"
        "subs r3, r3, #1\n bne 1b\n"
        "mov r0, lr\n"
        "pop {r4-r11, pc}\n");
#undef TSL_M3_S4_WORD
}
#pragma GCC diagnostic pop
#endif

#if defined(__riscv) && __riscv_xlen == 32 && defined(__riscv_mul)
/* out[j] = sum_g gs_j[g] * (w4_j[g] . x[g]) over ng > 0 groups of rows j = 0, 1 (w + j * ws, gs + j * gss;
 * ws = gss = 0 repeats one row), x prepared by tsl_swar_prep: the hot loop of the rv32 path. Per
 * weight word: the 4 X_j by LW (shared by the two rows), per row LW, XOR, then 4 x (SRLI, AND, MUL,
 * ADD); per group c_g, then per row SRAI, ADDI, LB, MUL, ADD: 171 instructions per 64 MACs.
 * Registers: xp a0, w a1 a3, gs a2 a4, groups left a5, out a6, X t0-t3, A t4 t5, weight word t6,
 * pairs a7 s4, row sums s0 s1, mask s2, bias s3. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static void tsl_rv32_s4_rows2(const uint32_t *xp, const uint8_t *w, const int8_t *gs,
                                                               int32_t ws, int32_t gss, int32_t ng, int32_t *out)
{
#define TSL_RV_S4_ROW(off, p, A) "lw t6, " #off "(" p ")\n xor t6, t6, s3\n"                                   \
    "and a7, t6, s2\n mul a7, a7, t0\n add " A ", " A ", a7\n srli s4, t6, 4\n and s4, s4, s2\n mul s4, s4, t1\n" \
    "add " A ", " A ", s4\n srli a7, t6, 8\n and a7, a7, s2\n mul a7, a7, t2\n add " A ", " A ", a7\n"         \
    "srli s4, t6, 12\n and s4, s4, s2\n mul s4, s4, t3\n add " A ", " A ", s4\n"
#define TSL_RV_S4_WORD(t, off) "lw t0, " #t "+0(a0)\n lw t1, " #t "+4(a0)\n lw t2, " #t "+8(a0)\n lw t3, " #t "+12(a0)\n" \
    TSL_RV_S4_ROW(off, "a1", "t4") TSL_RV_S4_ROW(off, "a3", "t5")
    __asm volatile(
        "addi sp, sp, -32\n"
        "sw s0, 0(sp)\n sw s1, 4(sp)\n sw s2, 8(sp)\n sw s3, 12(sp)\n sw s4, 16(sp)\n"
        "add a3, a1, a3\n add a4, a2, a4\n"
        "li s0, 0\n li s1, 0\n li s2, 0x000F000F\n li s3, 0x88888888\n"
        "1:\n"
        "lw t4, 64(a0)\n mv t5, t4\n"
        TSL_RV_S4_WORD(0, 0) TSL_RV_S4_WORD(16, 4) TSL_RV_S4_WORD(32, 8) TSL_RV_S4_WORD(48, 12)
        "srai t4, t4, 16\n addi t4, t4, 256\n lb t6, 0(a2)\n mul t4, t4, t6\n add s0, s0, t4\n"
        "srai t5, t5, 16\n addi t5, t5, 256\n lb t6, 0(a4)\n mul t5, t5, t6\n add s1, s1, t5\n"
        "addi a0, a0, 68\n addi a1, a1, 16\n addi a3, a3, 16\n addi a2, a2, 1\n addi a4, a4, 1\n"
        "addi a5, a5, -1\n bnez a5, 1b\n"
        "sw s0, 0(a6)\n sw s1, 4(a6)\n"
        "lw s0, 0(sp)\n lw s1, 4(sp)\n lw s2, 8(sp)\n lw s3, 12(sp)\n lw s4, 16(sp)\n"
        "addi sp, sp, 32\n"
        "ret\n");
#undef TSL_RV_S4_ROW
#undef TSL_RV_S4_WORD
}
#pragma GCC diagnostic pop
#endif

#if defined(__ARM_ARCH_6M__) && !defined(TSL_EMULATE_NODSP)
/* As tsl_m3_s4_row, in Thumb-1 for the M0+ (w 4-aligned): per weight word LDM of it, the bias by
 * EOR, two LDM of 2 X_j, 4 x (copy or shift, AND, MULS, ADDS); 101 instructions per 32 MACs.
 * Registers: xp r0, w r1, A r2, weight word r3, pair r4, mask r5, X r6 r7 (all low: Thumb-1 ALU);
 * row sum r8, gs r9, groups left r10, bias r11, 256 r12. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static int32_t tsl_m0_s4_row(const uint32_t *xp, const uint8_t *w,
                                                              const int8_t *gs, int32_t ng)
{
#define TSL_M0_S4_PAIR(first, shift, xr) first " r4, r3" shift "\n ands r4, r5\n muls r4, " xr ", r4\n adds r2, r2, r4\n"
#define TSL_M0_S4_WORD "ldm r1!, {r3}\n mov r4, r11\n eors r3, r4\n ldm r0!, {r6, r7}\n"                  \
    TSL_M0_S4_PAIR("movs", "", "r6") TSL_M0_S4_PAIR("lsrs", ", #4", "r7") "ldm r0!, {r6, r7}\n"          \
    TSL_M0_S4_PAIR("lsrs", ", #8", "r6") TSL_M0_S4_PAIR("lsrs", ", #12", "r7")
    __asm volatile(
        ".syntax unified\n"
        "push {r4, r5, r6, r7, lr}\n"
        "mov r4, r8\n mov r5, r9\n mov r6, r10\n mov r7, r11\n push {r4, r5, r6, r7}\n"
        "mov r9, r2\n mov r10, r3\n movs r4, #0\n mov r8, r4\n"
        "ldr r4, =0x88888888\n mov r11, r4\n ldr r5, =0x000F000F\n movs r4, #1\n lsls r4, r4, #8\n mov r12, r4\n"
        "1:\n"
        "ldr r2, [r0, #64]\n"
        TSL_M0_S4_WORD TSL_M0_S4_WORD TSL_M0_S4_WORD TSL_M0_S4_WORD
        "adds r0, #4\n asrs r2, r2, #16\n add r2, r12\n"
        "mov r4, r9\n ldrb r6, [r4]\n sxtb r6, r6\n adds r4, #1\n mov r9, r4\n"
        "muls r2, r6, r2\n mov r4, r8\n adds r4, r4, r2\n mov r8, r4\n"
        "mov r4, r10\n subs r4, #1\n mov r10, r4\n bne 1b\n"
        "mov r0, r8\n"
        "pop {r4, r5, r6, r7}\n mov r8, r4\n mov r9, r5\n mov r10, r6\n mov r11, r7\n"
        "pop {r4, r5, r6, r7, pc}\n"
        ".ltorg\n");
#undef TSL_M0_S4_PAIR
#undef TSL_M0_S4_WORD
}
#pragma GCC diagnostic pop
#endif

/* acc[n] (+)= sum_g gs[n][g] * (w4[n][g] . x[g]) over the ng groups of one chunk, rows in pairs
 * sharing the X loads; w, gs the chunk's start in row 0, rows ws bytes and gss scales apart. */
static void tsl_swar_rows(const uint32_t *xp, const uint8_t *w, const int8_t *gs, int32_t ws, int32_t gss,
                          int32_t *acc, int32_t N, int32_t ng, int first)
{
    int32_t n = 0;
#if defined(__riscv) && __riscv_xlen == 32 && defined(__riscv_mul)
    if (ng > 0 && (((uintptr_t)w | (uintptr_t)ws) & 3) == 0) {   /* LW: the ESP32-C3 traps on unaligned words */
        int32_t part[2];
        for (; n < N; n += 2) {
            const int two = n + 1 < N;
            tsl_rv32_s4_rows2(xp, w + (intptr_t)n * ws, gs + (intptr_t)n * gss, two ? ws : 0, two ? gss : 0, ng, part);
            acc[n] = (first ? 0 : acc[n]) + part[0];
            if (two) acc[n + 1] = (first ? 0 : acc[n + 1]) + part[1];
        }
        return;
    }
#endif
#if defined(__ARM_ARCH_7M__) && !defined(TSL_EMULATE_NODSP)
    if (ng > 0) {
        for (; n < N; n++)
            acc[n] = (first ? 0 : acc[n]) + tsl_m3_s4_row(xp, w + (intptr_t)n * ws, gs + (intptr_t)n * gss, ng);
        return;
    }
#elif defined(__ARM_ARCH_6M__) && !defined(TSL_EMULATE_NODSP)
    if (ng > 0) {   /* rows 4-aligned: tsl_swar_words */
        for (; n < N; n++)
            acc[n] = (first ? 0 : acc[n]) + tsl_m0_s4_row(xp, w + (intptr_t)n * ws, gs + (intptr_t)n * gss, ng);
        return;
    }
#endif
    for (; n + 2 <= N; n += 2) {
        const uint8_t *w0 = w + (intptr_t)n * ws, *w1 = w0 + ws;
        const int8_t *g0 = gs + (intptr_t)n * gss, *g1 = g0 + gss;
        int32_t a0 = first ? 0 : acc[n], a1 = first ? 0 : acc[n + 1];
        const uint32_t *xg = xp;
        for (int32_t g = 0; g < ng; g++, xg += TSL_SWAR_GW + 1, w0 += 16, w1 += 16) {
            uint32_t A0 = xg[TSL_SWAR_GW], A1 = A0;
            for (int32_t t = 0; t < 4; t++) {
                TSL_SWAR_WORD(A0, tsl_swar_word(w0 + 4 * t), xg + 4 * t);
                TSL_SWAR_WORD(A1, tsl_swar_word(w1 + 4 * t), xg + 4 * t);
            }
            a0 += (int32_t)g0[g] * (((int32_t)A0 >> 16) + 256);
            a1 += (int32_t)g1[g] * (((int32_t)A1 >> 16) + 256);
        }
        acc[n] = a0; acc[n + 1] = a1;
    }
    if (n < N) {
        const uint8_t *w0 = w + (intptr_t)n * ws;
        const int8_t *g0 = gs + (intptr_t)n * gss;
        int32_t a0 = first ? 0 : acc[n];
        const uint32_t *xg = xp;
        for (int32_t g = 0; g < ng; g++, xg += TSL_SWAR_GW + 1, w0 += 16) {
            uint32_t A0 = xg[TSL_SWAR_GW];
            for (int32_t t = 0; t < 4; t++) TSL_SWAR_WORD(A0, tsl_swar_word(w0 + 4 * t), xg + 4 * t);
            a0 += (int32_t)g0[g] * (((int32_t)A0 >> 16) + 256);
        }
        acc[n] = a0;
    }
}
#undef TSL_SWAR_WORD

/* Word loads of every row's weights allowed (rows are K / 2 = 16 * G bytes apart). */
static inline int tsl_swar_words(const uint8_t *w)
{
#if defined(TSL_UNALIGNED_WORDS)
    (void)w;
    return 1;
#else
    return ((uintptr_t)w & 3) == 0;
#endif
}
#endif

/* acc[n] = sum_g gs[n][g] * (w4[n][g] . x[g]). Out of line, so that instruction profiles
 * (benchmarks/tcg) tell it from the epilogue. */
__attribute__((noinline)) static void tsl_matvec_s4_acc(const int8_t *x, const uint8_t *w, const int8_t *gs,
                                                        int32_t *acc, int32_t N, int32_t K)
{
    const int32_t G = K / TSL_S4_GROUP;
    int32_t g0 = 0;   /* the ISA path covers groups g < g0 of every row */
#if defined(TSL_ARM_MVE)
    g0 = G;
    const int8x16_t hi_mask = vdupq_n_s8((int8_t)0xF0);
    for (int32_t n = 0; n < N; n++) {
        const int8_t *wr = (const int8_t *)w + (intptr_t)n * (K / 2);
        const int8_t *gr = gs + (intptr_t)n * G;
        int32_t a = 0;
        for (int32_t g = 0; g < G; g++) {
            const int8x16_t wv = vldrbq_s8(wr + 16 * g);
            const int8x16x2_t xv = vld2q_s8(x + 32 * g);              /* even k, odd k */
            int32_t d = vmladavq_s8(vshlq_n_s8(wv, 4), xv.val[0]);    /* 16 * low nibbles */
            d = vmladavaq_s8(d, vandq_s8(wv, hi_mask), xv.val[1]);    /* 16 * high nibbles */
            a += (int32_t)gr[g] * (d >> 4);
        }
        acc[n] = a;
    }
#elif defined(TSL_ARM_DSP)
    uint32_t xb[TSL_S4_KC / 2];
    for (int32_t n = 0; n < N; n++) acc[n] = 0;
    for (int32_t c = 0; c < K; c += TSL_S4_KC) {
        const int32_t kc = K - c < TSL_S4_KC ? K - c : TSL_S4_KC;
        tsl_s4_expand(x + c, xb, kc / 8);
        for (int32_t n = 0; n < N; n++) {
            const uint8_t *wr = w + (intptr_t)n * (K / 2) + c / 2;
            const int8_t *gr = gs + (intptr_t)n * G + c / TSL_S4_GROUP;
#if !defined(TSL_EMULATE_DSP)
            acc[n] += tsl_dsp_s4_row(xb, wr, gr, kc / TSL_S4_GROUP);
#else
            const uint32_t *xp = xb;
            int32_t a = 0;
            for (int32_t g = 0; g < kc / TSL_S4_GROUP; g++) {
                int32_t d = 0;
                for (int32_t j = 0; j < 4; j++, xp += 4) {
                    const uint32_t v = *(const tsl_u32u *)(wr + 16 * g + 4 * j);
                    const uint32_t lo = (v << 4) & 0xF0F0F0F0u, hi = v & 0xF0F0F0F0u;   /* 16 * nibbles */
                    d = tsl_smlad(tsl_sxtb16(lo), xp[0], d);
                    d = tsl_smlad(tsl_sxtb16_ror8(lo), xp[1], d);
                    d = tsl_smlad(tsl_sxtb16(hi), xp[2], d);
                    d = tsl_smlad(tsl_sxtb16_ror8(hi), xp[3], d);
                }
                a += (int32_t)gr[g] * (d >> 4);
            }
            acc[n] += a;
#endif
        }
    }
    g0 = G;
#elif defined(TSL_NEON_ANY)
    g0 = G;
    int8_t xr[TSL_NEON_S4_KC];
    if (G == 0) for (int32_t n = 0; n < N; n++) acc[n] = 0;   /* else the first chunk stores */
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
#elif defined(TSL_X86)
    const int level = tsl_x86_level();
    if (level != TSL_X86_PORTABLE) {
        g0 = G;
        int8_t xe[(TSL_X86_S4_KC + TSL_X86_S4_PAD) / 2], xo[(TSL_X86_S4_KC + TSL_X86_S4_PAD) / 2];
        int16_t c16[(TSL_X86_S4_KC + TSL_X86_S4_PAD) / 4];
        int32_t c32[(TSL_X86_S4_KC + TSL_X86_S4_PAD) / 8];
        if (G == 0) for (int32_t n = 0; n < N; n++) acc[n] = 0;
        for (int32_t c = 0; c < K; c += TSL_X86_S4_KC) {
            const int32_t kc = K - c < TSL_X86_S4_KC ? K - c : TSL_X86_S4_KC;
            tsl_x86_s4_prep(x + c, kc, xe, xo, c16, c32);
            int32_t n = 0, part[4];
            if (level == TSL_X86_VNNI) {
                for (; n + 4 <= N; n += 4) {
                    tsl_vnni_s4_rows4(w + (intptr_t)n * (K / 2) + c / 2, K / 2, gs + (intptr_t)n * G + c / TSL_S4_GROUP,
                                      G, xe, xo, c32, kc / TSL_S4_GROUP, part);
                    for (int32_t j = 0; j < 4; j++) acc[n + j] = (c ? acc[n + j] : 0) + part[j];
                }
                for (; n < N; n++) {   /* one row four times, three sums dropped */
                    tsl_vnni_s4_rows4(w + (intptr_t)n * (K / 2) + c / 2, 0, gs + (intptr_t)n * G + c / TSL_S4_GROUP,
                                      0, xe, xo, c32, kc / TSL_S4_GROUP, part);
                    acc[n] = (c ? acc[n] : 0) + part[0];
                }
            }
            for (; n < N; n++)
                acc[n] = (c ? acc[n] : 0) + tsl_avx2_s4_row(w + (intptr_t)n * (K / 2) + c / 2,
                                                            gs + (intptr_t)n * G + c / TSL_S4_GROUP, xe, xo, c16,
                                                            kc / TSL_S4_GROUP);
        }
    } else {
        for (int32_t n = 0; n < N; n++) acc[n] = 0;
    }
#elif defined(TSL_SWAR_MUL)
    if (tsl_swar_words(w)) g0 = G;
    uint32_t xp[TSL_SWAR_KC / TSL_S4_GROUP * (TSL_SWAR_GW + 1)];
    if (g0 == 0) for (int32_t n = 0; n < N; n++) acc[n] = 0;
    for (int32_t c = 0; c < 32 * g0; c += TSL_SWAR_KC) {
        const int32_t kc = K - c < TSL_SWAR_KC ? K - c : TSL_SWAR_KC;
        tsl_swar_prep(x + c, kc, xp);
        tsl_swar_rows(xp, w + c / 2, gs + c / TSL_S4_GROUP, K / 2, G, acc, N, kc / TSL_S4_GROUP, c == 0);
    }
#else
    for (int32_t n = 0; n < N; n++) acc[n] = 0;
#endif
    /* Portable scalar tail (every group on the portable path). */
    if (g0 < G) for (int32_t n = 0; n < N; n++) {
        const uint8_t *wr = w + (intptr_t)n * (K / 2);
        const int8_t *gr = gs + (intptr_t)n * G;
        int32_t a = acc[n];
        for (int32_t g = g0; g < G; g++)
            a += (int32_t)gr[g] * tsl_dot_s4_group(wr + g * (TSL_S4_GROUP / 2), x + g * TSL_S4_GROUP);
        acc[n] = a;
    }
}


void tsl_matvec_s4_s32(const int8_t *x, const uint8_t *w, const int8_t *gs, int32_t *dst, int32_t N, int32_t K)
{
    tsl_matvec_s4_acc(x, w, gs, dst, N, K);
}

#if defined(TSL_X86) || defined(TSL_NEON_ANY)
#define TSL_ROW_BLOCK 512   /* int32 accumulators on the stack, per block of rows (x is rearranged per block) */
#else
#define TSL_ROW_BLOCK 128
#endif

void tsl_matvec_s4_f32(const int8_t *x, float sx, const uint8_t *w, const int8_t *gs,
                       const float *ws, const float *bias, float *dst, int32_t N, int32_t K,
                       int32_t accumulate)
{
    int32_t acc[TSL_ROW_BLOCK];
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t n0 = 0; n0 < N; n0 += TSL_ROW_BLOCK) {
        const int32_t nb = N - n0 < TSL_ROW_BLOCK ? N - n0 : TSL_ROW_BLOCK;
        tsl_matvec_s4_acc(x, w + (intptr_t)n0 * (K / 2), gs + (intptr_t)n0 * G, acc, nb, K);
        tsl_epilogue(acc, sx, ws + n0, bias ? bias + n0 : 0, dst + n0, nb, accumulate);
    }
}
