/* tsl_attention_s8.c -- causal attention over the int8 KV cache with per-position scales. */
#include "tsl_kernels.h"

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

/* a[i] = sum_t p[t] * v[t * hs + i], i < hs, t < T: v int8 [T][hs], p the Q15 weights (int32).
 * The ISA paths cover lanes i < i0 (several lanes at once, positions in the inner loop); the
 * portable loop does the rest. Integer sums: exact in any order. */
static void tsl_pv_s32(const int32_t *p, const int8_t *v, int32_t T, int32_t hs, int32_t *a)
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
    /* 32 lanes: int8 values widened to int16, SMLAL by the weight as int16; a weight outside int16
     * (p = 32768) is applied as two halves */
    i0 = hs & ~31;
    for (int32_t i = 0; i < i0; i += 32) {
        int32x4_t c[8];
        for (int32_t j = 0; j < 8; j++) c[j] = vdupq_n_s32(0);
        const int8_t *vt = v + i;
        for (int32_t t = 0; t < T; t++, vt += hs) {
            const int16x8_t w0 = vmovl_s8(vld1_s8(vt)), w1 = vmovl_s8(vld1_s8(vt + 8));
            const int16x8_t w2 = vmovl_s8(vld1_s8(vt + 16)), w3 = vmovl_s8(vld1_s8(vt + 24));
            for (int32_t pt = p[t]; pt != 0;) {
                const int16_t ph = (int16_t)(pt > 32767 ? 32767 : pt < -32768 ? -32768 : pt);
                c[0] = vmlal_n_s16(c[0], vget_low_s16(w0), ph); c[1] = vmlal_high_n_s16(c[1], w0, ph);
                c[2] = vmlal_n_s16(c[2], vget_low_s16(w1), ph); c[3] = vmlal_high_n_s16(c[3], w1, ph);
                c[4] = vmlal_n_s16(c[4], vget_low_s16(w2), ph); c[5] = vmlal_high_n_s16(c[5], w2, ph);
                c[6] = vmlal_n_s16(c[6], vget_low_s16(w3), ph); c[7] = vmlal_high_n_s16(c[7], w3, ph);
                pt -= ph;
            }
        }
        for (int32_t j = 0; j < 8; j++) vst1q_s32(a + i + 4 * j, c[j]);
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
        for (int32_t t = 0; t < T; t++) {
            sc[t] = ((float)pw[t] * kss[t]) * sq;
            if (softcap > 0.0f) sc[t] = softcap * tsl_tanh(sc[t] / softcap);
            if (alibi) sc[t] = sc[t] + alibi[h] * (float)(-((pos - t) % max_seq));
            mx = (t == 0 || sc[t] > mx) ? sc[t] : mx;
        }
        /* Softmax numerators; the value scales folded in; Q15 weights. */
        float E = 0.0f, W = 0.0f;
        for (int32_t j = 0, t = t0; j < T; j++, t = (t + 1 == max_seq) ? 0 : t + 1) {
            const float e = tsl_exp_neg(sc[t] - mx);
            E = E + e;
            sc[t] = e * vss[t];
            W = W + sc[t];
        }
        const float inv = W > 0.0f ? 32768.0f / W : 0.0f;
        for (int32_t t = 0; t < T; t++) pw[t] = tsl_round_f32(sc[t] * inv);

        /* Weighted values, accumulated in position order. */
        int32_t *a = acc + h * hs;
        int32_t amx = 0;
        tsl_pv_s32(pw, v, T, hs, a);
        for (int32_t i = 0; i < hs; i++) amx = (a[i] > amx ? a[i] : (-a[i] > amx ? -a[i] : amx));
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
