/* tsl_matvec_s4_x86.c -- the x86-64 paths of tsl_matvec_s4.c: AVX2 and AVX-512 VNNI, compiled
 * with target attributes and chosen at run time (tsl_x86_level). */
#include "tsl_matvec_s4_isa.h"

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

int32_t tsl_s4_acc_x86(TSL_S4_ACC_ARGS)
{
    const int32_t G = K / TSL_S4_GROUP;
    const int level = tsl_x86_level();
    if (level == TSL_X86_PORTABLE) return 0;
    int8_t xe[(TSL_X86_S4_KC + TSL_X86_S4_PAD) / 2], xo[(TSL_X86_S4_KC + TSL_X86_S4_PAD) / 2];
    int16_t c16[(TSL_X86_S4_KC + TSL_X86_S4_PAD) / 4];
    int32_t c32[(TSL_X86_S4_KC + TSL_X86_S4_PAD) / 8];
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
    return G;
}
#else
typedef int tsl_matvec_s4_x86_unused;   /* ISO C: no empty translation unit */
#endif
