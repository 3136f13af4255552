/* tsl_attention_s8.c -- causal attention over the int8 KV cache with per-position scales. */
#include "tsl_kernels.h"
#include "tsl_vec_f32.h"     /* tsl_vf_exp_neg, tsl_vf_round: the softmax on vectors */

#if defined(TSL_ARM_DSP)
/* p if it fits int16, else 0 */
static inline int32_t tsl_p16(int32_t p) { return p >= -32768 && p <= 32767 ? p : 0; }
#endif

#if defined(TSL_X86)
/* AVX2, lanes i < i0 = hs & ~7: per position, 8 int8 values widened to int32 (VPMOVSXBD) times the
 * broadcast weight (VPMULLD: |p * v| <= 32768 * 128, exact), 32 lanes per pass where they fit. */
TSL_TARGET_AVX2 static int32_t tsl_avx2_pv(const int32_t *p, const int8_t *v, int32_t T, int32_t hs, int32_t *a)
{
#define TSL_AVX2_LD8(q) _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q)))
    const int32_t i0 = hs & ~7;
    int32_t i = 0;
    for (; i + 32 <= i0; i += 32) {
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        const int8_t *vt = v + i;
        for (int32_t t = 0; t < T; t++, vt += hs) {
            const __m256i pt = _mm256_set1_epi32(p[t]);
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(TSL_AVX2_LD8(vt), pt));
            a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(TSL_AVX2_LD8(vt + 8), pt));
            a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(TSL_AVX2_LD8(vt + 16), pt));
            a3 = _mm256_add_epi32(a3, _mm256_mullo_epi32(TSL_AVX2_LD8(vt + 24), pt));
        }
        _mm256_storeu_si256((__m256i *)(a + i), a0);
        _mm256_storeu_si256((__m256i *)(a + i + 8), a1);
        _mm256_storeu_si256((__m256i *)(a + i + 16), a2);
        _mm256_storeu_si256((__m256i *)(a + i + 24), a3);
    }
    for (; i < i0; i += 8) {
        __m256i a0 = _mm256_setzero_si256();
        const int8_t *vt = v + i;
        for (int32_t t = 0; t < T; t++, vt += hs)
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(TSL_AVX2_LD8(vt), _mm256_set1_epi32(p[t])));
        _mm256_storeu_si256((__m256i *)(a + i), a0);
    }
#undef TSL_AVX2_LD8
    return i0;
}
#endif

#if defined(TSL_NEON_ANY)
/* c[4j..4j+3] += w * the 16 int8 values at x + 16j, widened to int16 (SMLAL by element: lane r of w) */
#define TSL_PV_BLK(x, j, w, r)                                                                          \
    do {                                                                                                \
        const int8x16_t b_ = vld1q_s8((x) + 16 * (j));                                                  \
        const int16x8_t lo_ = vmovl_s8(vget_low_s8(b_)), hi_ = vmovl_s8(vget_high_s8(b_));             \
        c[4 * (j)] = vmlal_lane_s16(c[4 * (j)], vget_low_s16(lo_), w, r);                               \
        c[4 * (j) + 1] = vmlal_lane_s16(c[4 * (j) + 1], vget_high_s16(lo_), w, r);                      \
        c[4 * (j) + 2] = vmlal_lane_s16(c[4 * (j) + 2], vget_low_s16(hi_), w, r);                       \
        c[4 * (j) + 3] = vmlal_lane_s16(c[4 * (j) + 3], vget_high_s16(hi_), w, r);                      \
    } while (0)
#define TSL_PV_ROW(x, w, r)                                                                             \
    do {                                                                                                \
        TSL_PV_BLK(x, 0, w, r);                                                                         \
        if (nb == 4) {                                                                                  \
            TSL_PV_BLK(x, 1, w, r); TSL_PV_BLK(x, 2, w, r); TSL_PV_BLK(x, 3, w, r);                     \
        }                                                                                               \
    } while (0)
/* a[16j + l] = sum_t sat16(p[t]) * v[t * hs + 16j + l], j < nb (4 or 1, a constant after inlining),
 * l < 16; positions 4 at a time (one SQXTN of 4 weights), the last T % 4 one by one. */
static inline __attribute__((always_inline)) void tsl_neon_pv_pass(const int32_t *p, const int8_t *v, int32_t T,
                                                                   int32_t hs, int32_t *a, const int32_t nb)
{
    int32x4_t c[16];
    for (int32_t j = 0; j < 16; j++) c[j] = vdupq_n_s32(0);
    int32_t t = 0;
    for (; t + 4 <= T; t += 4) {
        const int16x4_t w = vqmovn_s32(vld1q_s32(p + t));
        const int8_t *vt = v + (intptr_t)t * hs;
        TSL_PV_ROW(vt, w, 0);
        TSL_PV_ROW(vt + hs, w, 1);
        TSL_PV_ROW(vt + 2 * hs, w, 2);
        TSL_PV_ROW(vt + 3 * hs, w, 3);
    }
    for (; t < T; t++) {
        const int16x4_t w = vqmovn_s32(vdupq_n_s32(p[t]));
        TSL_PV_ROW(v + (intptr_t)t * hs, w, 0);
    }
    vst1q_s32(a, c[0]); vst1q_s32(a + 4, c[1]); vst1q_s32(a + 8, c[2]); vst1q_s32(a + 12, c[3]);
    if (nb == 4)
        for (int32_t j = 4; j < 16; j++) vst1q_s32(a + 4 * j, c[j]);
}
#undef TSL_PV_ROW
#undef TSL_PV_BLK
#endif

#if defined(TSL_X86)
/* The float steps of a head on 8 slots at a time (AVX2, no FMA in the target: the same operations
 * in the same order per slot as the scalar code); each returns the slots it covered, a multiple of 8. */
TSL_TARGET_AVX2 static int32_t tsl_avx2_scores(const int32_t *pw, const float *kss, float sq, float *sc, int32_t T,
                                               float *mx)
{
    const __m256 sq8 = _mm256_set1_ps(sq);
    __m256 m8 = _mm256_setzero_ps();
    int32_t t = 0;
    for (; t + 8 <= T; t += 8) {
        const __m256 s8 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(pw + t))),
                                                      _mm256_loadu_ps(kss + t)), sq8);
        _mm256_storeu_ps(sc + t, s8);
        m8 = t == 0 ? s8 : _mm256_blendv_ps(m8, s8, _mm256_cmp_ps(s8, m8, _CMP_GT_OQ));
    }
    float ml[8];
    _mm256_storeu_ps(ml, m8);
    *mx = ml[0];
    for (int32_t l = 1; l < 8; l++) *mx = ml[l] > *mx ? ml[l] : *mx;
    return t;
}

/* e_t = tsl_exp_neg(sc[t] - mx) (its bits into pw[t]), sc[t] = e_t * vs[t] */
TSL_TARGET_AVX2 static int32_t tsl_avx2_numerators(float *sc, const float *vss, float mx, int32_t *pw, int32_t T)
{
    const __m256 mx8 = _mm256_set1_ps(mx);
    int32_t t = 0;
    for (; t + 8 <= T; t += 8) {
        const __m256 e8 = tsl_vf_exp_neg(_mm256_sub_ps(_mm256_loadu_ps(sc + t), mx8));
        _mm256_storeu_si256((__m256i *)(pw + t), _mm256_castps_si256(e8));
        _mm256_storeu_ps(sc + t, _mm256_mul_ps(e8, _mm256_loadu_ps(vss + t)));
    }
    return t;
}

/* pw[t] = tsl_round_f32(sc[t] * inv) */
TSL_TARGET_AVX2 static int32_t tsl_avx2_round(const float *sc, float inv, int32_t *pw, int32_t T)
{
    const __m256 inv8 = _mm256_set1_ps(inv);
    int32_t t = 0;
    for (; t + 8 <= T; t += 8) {
        _mm256_storeu_si256((__m256i *)(pw + t), tsl_vf_round(_mm256_mul_ps(_mm256_loadu_ps(sc + t), inv8)));
    }
    return t;
}

/* max |a[i]| over i < hs & ~7 (|a| < 2^23) */
TSL_TARGET_AVX2 static int32_t tsl_avx2_absmax(const int32_t *a, int32_t hs, int32_t *amx)
{
    __m256i m8 = _mm256_setzero_si256();
    int32_t i = 0;
    for (; i + 8 <= hs; i += 8) m8 = _mm256_max_epi32(m8, _mm256_abs_epi32(_mm256_loadu_si256((const __m256i *)(a + i))));
    __m128i m4 = _mm_max_epi32(_mm256_castsi256_si128(m8), _mm256_extracti128_si256(m8, 1));
    m4 = _mm_max_epi32(m4, _mm_shuffle_epi32(m4, 0x4E));
    m4 = _mm_max_epi32(m4, _mm_shuffle_epi32(m4, 0xB1));
    *amx = _mm_cvtsi128_si32(m4);
    return i;
}
#endif

/* a[i] = sum_t p[t] * v[t * hs + i], i < hs, t < T: v int8 [T][hs], p the Q15 weights (int32).
 * The ISA paths cover lanes i < i0 (several lanes at once, positions in the inner loop); the
 * portable loop does the rest. Integer sums: exact in any order. */
static void tsl_attention_pv_s32(const int32_t *p, const int8_t *v, int32_t T, int32_t hs, int32_t *a)
{
    int32_t i0 = 0;
#if defined(TSL_ARM_MVE)
    /* 16 lanes: VLDRB.S32 widens 4 int8 to int32 lanes, VMLA by the scalar weight */
    i0 = hs & ~15;
    for (int32_t i = 0; i < i0; i += 16) {
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
        const int8_t *vt = v + i;
        for (int32_t t = 0; t < T; t++, vt += hs) {
            const int32_t pt = p[t];
            a0 = vmlaq_n_s32(a0, vldrbq_s32(vt), pt);
            a1 = vmlaq_n_s32(a1, vldrbq_s32(vt + 4), pt);
            a2 = vmlaq_n_s32(a2, vldrbq_s32(vt + 8), pt);
            a3 = vmlaq_n_s32(a3, vldrbq_s32(vt + 12), pt);
        }
        vst1q_s32(a + i, a0); vst1q_s32(a + i + 4, a1); vst1q_s32(a + i + 8, a2); vst1q_s32(a + i + 12, a3);
    }
#elif defined(TSL_ARM_DSP)
    /* 4 lanes x 2 positions per step: SMLAD of the weight pair [p(t+1) | p(t)] with the value pairs
     * [v(t+1)[i] | v(t)[i]] (SXTB16 + PKHBT/PKHTB). A weight outside int16 (p = 32768: one position
     * holds all the weight) enters the pairs as 0 and is added afterwards, lane by lane. */
    i0 = hs & ~3;
    const int32_t T2 = T & ~1;
    for (int32_t i = 0; i < i0; i += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        const int8_t *vt = v + i;
        for (int32_t t = 0; t < T2; t += 2, vt += 2 * hs) {
            const uint32_t pp = (uint32_t)(uint16_t)tsl_p16(p[t]) | ((uint32_t)(uint16_t)tsl_p16(p[t + 1]) << 16);
            const uint32_t r0 = *(const tsl_u32u *)vt, r1 = *(const tsl_u32u *)(vt + hs);
            const uint32_t e0 = tsl_sxtb16(r0), e1 = tsl_sxtb16(r1);            /* lanes 0, 2 */
            const uint32_t o0 = tsl_sxtb16_ror8(r0), o1 = tsl_sxtb16_ror8(r1);  /* lanes 1, 3 */
            a0 = tsl_smlad((e0 & 0xFFFFu) | (e1 << 16), pp, a0);
            a2 = tsl_smlad((e1 & 0xFFFF0000u) | (e0 >> 16), pp, a2);
            a1 = tsl_smlad((o0 & 0xFFFFu) | (o1 << 16), pp, a1);
            a3 = tsl_smlad((o1 & 0xFFFF0000u) | (o0 >> 16), pp, a3);
        }
        if (T & 1) {
            const int32_t pt = tsl_p16(p[T - 1]);
            a0 += pt * vt[0]; a1 += pt * vt[1]; a2 += pt * vt[2]; a3 += pt * vt[3];
        }
        a[i] = a0; a[i + 1] = a1; a[i + 2] = a2; a[i + 3] = a3;
    }
    for (int32_t t = 0; t < T; t++)
        if (tsl_p16(p[t]) != p[t])
            for (int32_t i = 0; i < i0; i++) a[i] += p[t] * (int32_t)v[(intptr_t)t * hs + i];
#elif defined(TSL_NEON_ANY)
    /* 16 lanes per block, 4 blocks per pass where they fit; 4 positions per step, their weights
     * saturated to int16 (SQXTN) and applied by SMLAL by element to the values widened to int16. A
     * weight outside int16 (p = 32768: one position holds all the weight) adds the rest afterwards. */
    i0 = hs & ~15;
    for (int32_t i = 0; i < i0;) {
        const int32_t nb = i0 - i >= 64 ? 4 : 1;
        if (nb == 4) tsl_neon_pv_pass(p, v + i, T, hs, a + i, 4);
        else tsl_neon_pv_pass(p, v + i, T, hs, a + i, 1);
        i += 16 * nb;
    }
    int32x4_t lo = vdupq_n_s32(0), hi = lo;
    int32_t t4 = 0;
    for (; t4 + 4 <= T; t4 += 4) {
        lo = vminq_s32(lo, vld1q_s32(p + t4));
        hi = vmaxq_s32(hi, vld1q_s32(p + t4));
    }
    int32_t outside = vminvq_s32(lo) < -32768 || vmaxvq_s32(hi) > 32767;
    for (; t4 < T; t4++) outside |= p[t4] < -32768 || p[t4] > 32767;
    if (i0 > 0 && outside)
        for (int32_t t = 0; t < T; t++) {
            const int32_t r = p[t] - (p[t] > 32767 ? 32767 : p[t] < -32768 ? -32768 : p[t]);
            if (r)
                for (int32_t i = 0; i < i0; i++) a[i] += r * (int32_t)v[(intptr_t)t * hs + i];
        }
#elif defined(TSL_X86)
    if (tsl_x86_level() >= TSL_X86_AVX2) i0 = tsl_avx2_pv(p, v, T, hs, a);
#endif
    /* Portable loop over the remaining lanes (all of them on the portable path). */
    if (i0 < hs) {
        for (int32_t i = i0; i < hs; i++) a[i] = 0;
        for (int32_t t = 0; t < T; t++) {
            const int8_t *vt = v + (intptr_t)t * hs;
            const int32_t pt = p[t];
            for (int32_t i = i0; i < hs; i++) a[i] += pt * (int32_t)vt[i];
        }
    }
}

float tsl_attention_heads_s8(const float *q, const int8_t *kc, const float *ks, const int8_t *vc, const float *vs,
                             int32_t n_heads, int32_t n_kv, int32_t hs, int32_t max_seq, int32_t pos, float scale,
                             float softcap, const float *alibi, int32_t h0, int32_t h1, int8_t *qq, float *sc,
                             int32_t *pw, int32_t *acc, float *ch)
{
    const int32_t group = n_heads / n_kv;
    /* A ring of max_seq slots, position t in slot t % max_seq: the last T positions are visible,
     * all in slots [0, T); float sums run in position order from slot t0. */
    const int32_t T = pos + 1 < max_seq ? pos + 1 : max_seq;
    const int32_t t0 = (pos + 1 - T) % max_seq;
    float amax = 0.0f;
    for (int32_t h = h0; h < h1; h++) {
        const intptr_t g = h / group;
        const int8_t *k = kc + g * max_seq * hs;
        const int8_t *v = vc + g * max_seq * hs;
        const float *kss = ks + g * max_seq, *vss = vs + g * max_seq;
        const float sq = tsl_quant_dynamic_f32(q + h * hs, qq, hs) * scale;

        /* Scores: one int8 matvec over the cached keys, then their float scale, cap and bias. */
        tsl_matvec_s8_s32(qq, k, pw, T, hs);
        float mx = 0.0f;
        int32_t t = 0;
#if defined(TSL_NEON_ANY)
        /* 4 slots at a time, the same two products per slot; per lane the max kept unless a score is
         * strictly greater, as below (the max is then the same value; only the sign of a zero maximum
         * can differ, and e = exp(s - mx) is the same for either sign). */
        if (!(softcap > 0.0f) && !alibi && T >= 4) {
            const float32x4_t sq4 = vdupq_n_f32(sq);
            float32x4_t m4 = vdupq_n_f32(0.0f);
            for (; t + 4 <= T; t += 4) {
                const float32x4_t s4 = vmulq_f32(vmulq_f32(vcvtq_f32_s32(vld1q_s32(pw + t)), vld1q_f32(kss + t)), sq4);
                vst1q_f32(sc + t, s4);
                m4 = t == 0 ? s4 : vbslq_f32(vcgtq_f32(s4, m4), s4, m4);
            }
            float ml[4];
            vst1q_f32(ml, m4);
            mx = ml[0];
            for (int32_t l = 1; l < 4; l++) mx = ml[l] > mx ? ml[l] : mx;
        }
#elif defined(TSL_X86)
        const int avx2 = tsl_x86_level() >= TSL_X86_AVX2;
        if (avx2 && !(softcap > 0.0f) && !alibi && T >= 8) t = tsl_avx2_scores(pw, kss, sq, sc, T, &mx);
#endif
        for (; t < T; t++) {
            sc[t] = ((float)pw[t] * kss[t]) * sq;
            if (softcap > 0.0f) sc[t] = softcap * tsl_tanh(sc[t] / softcap);
            if (alibi) sc[t] = sc[t] + alibi[h] * (float)(-((pos - t) % max_seq));
            mx = (t == 0 || sc[t] > mx) ? sc[t] : mx;
        }
        /* Softmax numerators; the value scales folded in; Q15 weights. */
        float E = 0.0f, W = 0.0f;
#if defined(TSL_NEON_ANY) || defined(TSL_X86)
        /* per slot, 4 or 8 at a time: e_t (its bits in pw[t]) and w_t = e_t * vs[t] (in sc[t]); then
         * the sums in position order */
        t = 0;
#if defined(TSL_NEON_ANY)
        for (const float32x4_t mx4 = vdupq_n_f32(mx); t + 4 <= T; t += 4) {
            const float32x4_t e4 = tsl_vf_exp_neg(vsubq_f32(vld1q_f32(sc + t), mx4));
            vst1q_s32(pw + t, vreinterpretq_s32_f32(e4));
            vst1q_f32(sc + t, vmulq_f32(e4, vld1q_f32(vss + t)));
        }
#else
        if (avx2) t = tsl_avx2_numerators(sc, vss, mx, pw, T);
#endif
        for (; t < T; t++) {
            const float e = tsl_exp_neg(sc[t] - mx);
            pw[t] = (int32_t)tsl_f32_bits(e);
            sc[t] = e * vss[t];
        }
        for (int32_t j = 0, t = t0; j < T; j++, t = (t + 1 == max_seq) ? 0 : t + 1) {
            E = E + tsl_bits_f32((uint32_t)pw[t]);
            W = W + sc[t];
        }
#else
        for (int32_t j = 0, t = t0; j < T; j++, t = (t + 1 == max_seq) ? 0 : t + 1) {
            const float e = tsl_exp_neg(sc[t] - mx);
            E = E + e;
            sc[t] = e * vss[t];
            W = W + sc[t];
        }
#endif
        const float inv = W > 0.0f ? 32768.0f / W : 0.0f;
        t = 0;
#if defined(TSL_NEON_ANY)
        for (const float32x4_t inv4 = vdupq_n_f32(inv); t + 4 <= T; t += 4)
            vst1q_s32(pw + t, tsl_vf_round(vmulq_f32(vld1q_f32(sc + t), inv4)));
#elif defined(TSL_X86)
        if (avx2) t = tsl_avx2_round(sc, inv, pw, T);
#endif
        for (; t < T; t++) pw[t] = tsl_round_f32(sc[t] * inv);

        /* Weighted values, accumulated in position order. */
        int32_t *a = acc + h * hs;
        int32_t amx = 0;
        tsl_attention_pv_s32(pw, v, T, hs, a);
        int32_t i = 0;
#if defined(TSL_NEON_ANY)
        if (hs >= 4) {                  /* |a| < 2^23: no overflow in the absolute value */
            int32x4_t m4 = vdupq_n_s32(0);
            for (; i + 4 <= hs; i += 4) m4 = vmaxq_s32(m4, vabsq_s32(vld1q_s32(a + i)));
            amx = vmaxvq_s32(m4);
        }
#elif defined(TSL_X86)
        if (avx2) i = tsl_avx2_absmax(a, hs, &amx);
#endif
        for (; i < hs; i++) amx = (a[i] > amx ? a[i] : (-a[i] > amx ? -a[i] : amx));
        ch[h] = W / (32768.0f * E);
        const float m = (float)amx * ch[h];
        amax = m > amax ? m : amax;
    }
    return amax;
}

void tsl_attention_out_s8(const int32_t *acc, const float *ch, float amax, int8_t *out, int32_t hs, int32_t h0,
                          int32_t h1)
{
    for (int32_t h = h0; h < h1; h++) {
        int32_t mult = 0, shift = 0;
        if (amax > 0.0f) tsl_multiplier((ch[h] * 127.0f) / amax, &mult, &shift);
        for (int32_t i = 0; i < hs; i++) out[h * hs + i] = tsl_requant_s8(acc[h * hs + i], mult, shift);
    }
}

float tsl_attention_s8(const float *q, const int8_t *kc, const float *ks, const int8_t *vc,
                       const float *vs, int8_t *out, int32_t n_heads, int32_t n_kv, int32_t hs,
                       int32_t max_seq, int32_t pos, float scale, float softcap, const float *alibi,
                       int8_t *qq, float *sc, int32_t *pw, int32_t *acc, float *ch)
{
    const float amax = tsl_attention_heads_s8(q, kc, ks, vc, vs, n_heads, n_kv, hs, max_seq, pos, scale, softcap,
                                              alibi, 0, n_heads, qq, sc, pw, acc, ch);
    /* Requantize all heads to one int8 scale. */
    tsl_attention_out_s8(acc, ch, amax, out, hs, 0, n_heads);
    return amax / 127.0f;
}

void tsl_attention_out_f32(const int32_t *acc, const float *ch, float *out, int32_t hs, int32_t h0, int32_t h1)
{
    for (int32_t h = h0; h < h1; h++)
        for (int32_t i = 0; i < hs; i++) out[h * hs + i] = (float)acc[h * hs + i] * ch[h];
}

void tsl_attention_f32(const float *q, const int8_t *kc, const float *ks, const int8_t *vc,
                       const float *vs, float *out, int32_t n_heads, int32_t n_kv, int32_t hs,
                       int32_t max_seq, int32_t pos, float scale, float softcap, const float *alibi,
                       int8_t *qq, float *sc, int32_t *pw, int32_t *acc, float *ch)
{
    (void)tsl_attention_heads_s8(q, kc, ks, vc, vs, n_heads, n_kv, hs, max_seq, pos, scale, softcap, alibi, 0, n_heads,
                                 qq, sc, pw, acc, ch);
    tsl_attention_out_f32(acc, ch, out, hs, 0, n_heads);
}
