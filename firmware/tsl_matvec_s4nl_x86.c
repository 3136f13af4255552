/* tsl_matvec_s4nl_x86.c -- the x86-64 paths of tsl_matvec_s4nl.c: AVX2 and AVX-512 VNNI, compiled
 * with target attributes and chosen at run time (tsl_x86_level).
 *
 * Layout: w [N][K/2] bytes, byte j of a row holds the codes of k = 2j (low nibble) and 2j + 1 (high);
 * a group is 16 bytes. x is taken in chunks of TSL_X86_S4NL_KC k and rearranged on the stack: xe[j] =
 * x[2j], xo[j] = x[2j+1] (so that the low and high nibble lanes of a weight vector meet their x), and
 * per path the operands below. A nibble becomes its level with one PSHUFB (kv in every 128-bit lane).
 * AVX2 (the sign trick): VPMADDUBSW(|x|, sign(x) * L), |x| <= 128 unsigned (x = -128 included), |L|
 *   <= 127: an int16 lane is 2 products, <= 2 * 128 * 127 = 32512 < 2^15, never saturated. The low and
 *   high nibble halves go to int32 separately (together 4 * 128 * 127 > 2^15) by VPMADDWD with the
 *   group scales. Per 2 groups: 2 AND, 1 shift, 2 PSHUFB, 2 VPSIGNB, 2 VPMADDUBSW, 2 VPMADDWD, 2 adds,
 *   3 to spread the scales.
 * VNNI: VPDPBUSD(L + 128 unsigned in [1, 255], x signed) sums 4 products into int32 (no saturation);
 *   starting from c32 = -128 * sum x over the lane's 8 k removes the bias, leaving the 8 products
 *   (|.| <= 8 * 127 * 128 < 2^17); VPMULLD by the group scale. Per 4 groups: 2 AND, 1 shift, 2
 *   PSHUFB, 2 VPDPBUSD, 1 VPMULLD, 1 add, 2 to spread the scales; 4 rows per pass share the x loads.
 * Row sums stay within K * max|gs| * 127 * 128 < 2^31 (the compiler's bound), so int32 is exact in any
 * order. */
#include "tsl_matvec_s4nl_isa.h"

#if defined(TSL_X86)
#define TSL_X86_S4NL_KC 2048   /* x chunk, rearranged on the stack: about 2.6 * KC bytes */
#define TSL_X86_S4NL_PAD 128   /* k of zeros after it, for the part blocks of the last groups */

/* x[0:kc] (kc % 32 == 0) -> xe, xo (signed), ae = |xe|, ao = |xo| (unsigned; AVX2), c32[i] = -128 *
 * sum x[8i..8i+7] (VNNI); zeros after them, TSL_X86_S4NL_PAD k. */
TSL_TARGET_AVX2 static void tsl_x86_s4nl_prep(const int8_t *x, int32_t kc, int8_t *xe, int8_t *xo, uint8_t *ae,
                                              uint8_t *ao, int32_t *c32)
{
    const __m256i ones = _mm256_set1_epi16(1);
    for (int32_t k = 0; k < kc; k += 32) {   /* 32 x -> 16 xe, xo, ae, ao, 4 c32 */
        const __m256i v = _mm256_loadu_si256((const __m256i *)(x + k));
        const __m256i ev = _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8), od = _mm256_srai_epi16(v, 8);
        /* the packs work per 128-bit lane: 0x08 gathers the two lanes' low halves */
        const __m128i e = _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packs_epi16(ev, ev), 0x08));
        const __m128i o = _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packs_epi16(od, od), 0x08));
        _mm_storeu_si128((__m128i *)(xe + k / 2), e);
        _mm_storeu_si128((__m128i *)(xo + k / 2), o);
        _mm_storeu_si128((__m128i *)(ae + k / 2), _mm_abs_epi8(e));   /* |-128| = 128 as uint8 */
        _mm_storeu_si128((__m128i *)(ao + k / 2), _mm_abs_epi8(o));
        const __m256i q = _mm256_madd_epi16(_mm256_add_epi16(ev, od), ones);   /* int32: sum x[4m..4m+3] */
        const __m256i h = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_hadd_epi32(q, q), 7));
        _mm_storeu_si128((__m128i *)(c32 + k / 8), _mm256_castsi256_si128(_mm256_permute4x64_epi64(h, 0x08)));
    }
    memset(xe + kc / 2, 0, TSL_X86_S4NL_PAD / 2);
    memset(xo + kc / 2, 0, TSL_X86_S4NL_PAD / 2);
    memset(ae + kc / 2, 0, TSL_X86_S4NL_PAD / 2);
    memset(ao + kc / 2, 0, TSL_X86_S4NL_PAD / 2);
    memset(c32 + kc / 8, 0, TSL_X86_S4NL_PAD / 8 * sizeof(int32_t));
}

/* One block of 2 groups (bytes 0-15 group g, 16-31 group g+1; g2: their two s8 scales): int32
 * lanes 0-3 group g, 4-7 group g+1, each times its scale. */
TSL_TARGET_AVX2 static inline __m256i tsl_avx2_s4nl_block(__m256i wv, __m256i kvt, uint16_t g2, const int8_t *xe,
                                                          const int8_t *xo, const uint8_t *ae, const uint8_t *ao)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_shuffle_epi8(kvt, _mm256_and_si256(wv, m4));
    const __m256i hi = _mm256_shuffle_epi8(kvt, _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4));
    const __m256i plo = _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)ae),
                                             _mm256_sign_epi8(lo, _mm256_loadu_si256((const __m256i *)xe)));
    const __m256i phi = _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)ao),
                                             _mm256_sign_epi8(hi, _mm256_loadu_si256((const __m256i *)xo)));
    __m128i g = _mm_cvtepi8_epi16(_mm_cvtsi32_si128(g2));   /* int16 [gs0, gs1, 0, ...] */
    g = _mm_unpacklo_epi16(g, g);                            /* int32 lanes [gs0|gs0, gs1|gs1, ...] */
    const __m256i gv = _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(g), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    return _mm256_add_epi32(_mm256_madd_epi16(plo, gv), _mm256_madd_epi16(phi, gv));
}

/* sum_g gs[g] * (kv[w4[g]] . x[g]) over ng groups of one row (x prepared): blocks of 2 groups, an
 * odd last group as a half block (its partner's bytes and scale 0, its x the zeros after the chunk). */
TSL_TARGET_AVX2 static int32_t tsl_avx2_s4nl_row(const uint8_t *w, const int8_t *kv, const int8_t *gs,
                                                 const int8_t *xe, const int8_t *xo, const uint8_t *ae,
                                                 const uint8_t *ao, int32_t ng)
{
    const __m256i kvt = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kv));
    __m256i a = _mm256_setzero_si256();
    int32_t b = 0;
    for (; 2 * b + 2 <= ng; b++) {
        uint16_t g2;
        memcpy(&g2, gs + 2 * b, 2);
        a = _mm256_add_epi32(a, tsl_avx2_s4nl_block(_mm256_loadu_si256((const __m256i *)(w + 32 * b)), kvt, g2,
                                                    xe + 32 * b, xo + 32 * b, ae + 32 * b, ao + 32 * b));
    }
    if (ng & 1) {
        const __m256i wv = _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_loadu_si128((const __m128i *)(w + 32 * b)), 0);
        a = _mm256_add_epi32(a, tsl_avx2_s4nl_block(wv, kvt, (uint8_t)gs[2 * b], xe + 32 * b, xo + 32 * b,
                                                    ae + 32 * b, ao + 32 * b));
    }
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(r, _mm_shuffle_epi32(r, 0xB1)));
}

/* the first n (1..4) group scales at g as the bytes of a word, 0 above them */
static inline int32_t tsl_s4nl_scales(const int8_t *g, int32_t n)
{
    uint32_t v = 0;
    if (n == 4) memcpy(&v, g, 4);
    else for (int32_t i = 0; i < n; i++) v |= (uint32_t)(uint8_t)g[i] << (8 * i);
    return (int32_t)v;
}

/* One block of 4 groups (16 bytes each; kvu: kv + 128 in every lane): int32 lanes 4q..4q+3 group
 * g+q, each times its scale (g4: the four s8 scales). */
TSL_TARGET_VNNI static inline __m512i tsl_vnni_s4nl_block(__m512i wv, __m512i kvu, int32_t g4, __m512i xe,
                                                          __m512i xo, __m512i c32)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i lo = _mm512_shuffle_epi8(kvu, _mm512_and_si512(wv, m4));
    const __m512i hi = _mm512_shuffle_epi8(kvu, _mm512_and_si512(_mm512_srli_epi16(wv, 4), m4));
    const __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(c32, lo, xe), hi, xo);
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_mullo_epi32(d, _mm512_permutexvar_epi32(idx, _mm512_cvtepi8_epi32(_mm_cvtsi32_si128(g4))));
}

/* out[j] = that sum for the 4 rows w + j * ws, gs + j * gss (ws = gss = 0 repeats one row): blocks
 * of 4 groups, a last block of ng % 4 by a masked load (no byte past the row is read), the missing
 * groups' scales 0, their x and c32 the zeros after the chunk. */
TSL_TARGET_VNNI static void tsl_vnni_s4nl_rows4(const uint8_t *w, intptr_t ws, const int8_t *kv, const int8_t *gs,
                                                intptr_t gss, const int8_t *xe, const int8_t *xo,
                                                const int32_t *c32, int32_t ng, int32_t *out)
{
#define TSL_VNNI_S4NL_STEP(LOAD, G4)                                                                 \
    {                                                                                                \
        const __m512i xev = _mm512_loadu_si512((const void *)(xe + 64 * b));                          \
        const __m512i xov = _mm512_loadu_si512((const void *)(xo + 64 * b));                          \
        const __m512i cv = _mm512_loadu_si512((const void *)(c32 + 16 * b));                          \
        const uint8_t *wb = w + 64 * b;                                                              \
        const int8_t *gb = gs + 4 * b;                                                               \
        a0 = _mm512_add_epi32(a0, tsl_vnni_s4nl_block(LOAD(wb), kvu, G4(gb), xev, xov, cv));         \
        a1 = _mm512_add_epi32(a1, tsl_vnni_s4nl_block(LOAD(wb + ws), kvu, G4(gb + gss), xev, xov, cv)); \
        a2 = _mm512_add_epi32(a2, tsl_vnni_s4nl_block(LOAD(wb + 2 * ws), kvu, G4(gb + 2 * gss), xev, xov, cv)); \
        a3 = _mm512_add_epi32(a3, tsl_vnni_s4nl_block(LOAD(wb + 3 * ws), kvu, G4(gb + 3 * gss), xev, xov, cv)); \
    }
#define TSL_LOAD_FULL(p) _mm512_loadu_si512((const void *)(p))
#define TSL_LOAD_PART(p) _mm512_maskz_loadu_epi8(m, (const void *)(p))
#define TSL_G4_FULL(p) tsl_s4nl_scales(p, 4)
#define TSL_G4_PART(p) tsl_s4nl_scales(p, left)
    const __m512i kvu = _mm512_xor_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kv)),
                                         _mm512_set1_epi8((char)0x80));   /* kv + 128, unsigned */
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int32_t b = 0;
    for (; 4 * b + 4 <= ng; b++) TSL_VNNI_S4NL_STEP(TSL_LOAD_FULL, TSL_G4_FULL)
    if (ng & 3) {
        const int32_t left = ng & 3;
        const __mmask64 m = ((__mmask64)1 << (16 * left)) - 1;
        TSL_VNNI_S4NL_STEP(TSL_LOAD_PART, TSL_G4_PART)
    }
    out[0] = _mm512_reduce_add_epi32(a0); out[1] = _mm512_reduce_add_epi32(a1);
    out[2] = _mm512_reduce_add_epi32(a2); out[3] = _mm512_reduce_add_epi32(a3);
#undef TSL_VNNI_S4NL_STEP
#undef TSL_LOAD_FULL
#undef TSL_LOAD_PART
#undef TSL_G4_FULL
#undef TSL_G4_PART
}

int32_t tsl_s4nl_acc_x86(TSL_S4NL_ACC_ARGS)
{
    const int32_t G = K / TSL_S4_GROUP;
    const int level = tsl_x86_level();
    if (level == TSL_X86_PORTABLE) return 0;
    int8_t xe[(TSL_X86_S4NL_KC + TSL_X86_S4NL_PAD) / 2], xo[(TSL_X86_S4NL_KC + TSL_X86_S4NL_PAD) / 2];
    uint8_t ae[(TSL_X86_S4NL_KC + TSL_X86_S4NL_PAD) / 2], ao[(TSL_X86_S4NL_KC + TSL_X86_S4NL_PAD) / 2];
    int32_t c32[(TSL_X86_S4NL_KC + TSL_X86_S4NL_PAD) / 8];
    for (int32_t c = 0; c < K; c += TSL_X86_S4NL_KC) {
        const int32_t kc = K - c < TSL_X86_S4NL_KC ? K - c : TSL_X86_S4NL_KC, ng = kc / TSL_S4_GROUP;
        tsl_x86_s4nl_prep(x + c, kc, xe, xo, ae, ao, c32);
        int32_t n = 0, part[4];
        if (level == TSL_X86_VNNI) {
            for (; n + 4 <= N; n += 4) {
                tsl_vnni_s4nl_rows4(w + (intptr_t)n * (K / 2) + c / 2, K / 2, kv, gs + (intptr_t)n * G + c / TSL_S4_GROUP,
                                    G, xe, xo, c32, ng, part);
                for (int32_t j = 0; j < 4; j++) acc[n + j] = (c ? acc[n + j] : 0) + part[j];
            }
            for (; n < N; n++) {   /* one row four times, three sums dropped */
                tsl_vnni_s4nl_rows4(w + (intptr_t)n * (K / 2) + c / 2, 0, kv, gs + (intptr_t)n * G + c / TSL_S4_GROUP,
                                    0, xe, xo, c32, ng, part);
                acc[n] = (c ? acc[n] : 0) + part[0];
            }
        }
        for (; n < N; n++)
            acc[n] = (c ? acc[n] : 0) + tsl_avx2_s4nl_row(w + (intptr_t)n * (K / 2) + c / 2, kv,
                                                          gs + (intptr_t)n * G + c / TSL_S4_GROUP, xe, xo, ae, ao, ng);
    }
    return G;
}
#else
typedef int tsl_matvec_s4nl_x86_unused;   /* ISO C: no empty translation unit */
#endif
