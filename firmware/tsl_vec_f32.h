/* tsl_vec_f32.h -- tsl_numerics.h's float functions on a vector of lanes, for the elementwise float
 * kernels (tsl_elementwise_f32.c, tsl_norm_f32.c) and the matvec epilogue (tsl_epilogue.h).
 *
 * TSL_VEC_F32 is defined where a path exists, from tsl_arch.h's macros:
 *   TSL_NEON_ANY (aarch64 NEON, or SIMDe on the host)  4 lanes, always taken
 *   TSL_X86 (x86-64, GCC/Clang)                        8 lanes of AVX2, compiled with a target attribute
 *                                                      and taken where TSL_VEC_ON (tsl_x86_level() >= AVX2)
 * Everything else (Cortex-M, Helium, RISC-V, Xtensa, TSL_PORTABLE) has no TSL_VEC_F32: the kernels
 * run their scalar loops only.
 *
 * Bit-exactness: each tsl_vf_* function performs, per lane, the IEEE binary32 operations of its
 * scalar twin in the same order (mul, add, sub, div, compare; never a fused multiply-add intrinsic,
 * and -ffp-contract=off keeps the compiler from fusing a mul and an add). A scalar branch becomes
 * a select between both sides, each computed as the scalar computes it; a lane that the scalar
 * would leave early (exp below -87) is computed with garbage and replaced by the scalar's result.
 * Both ISAs' loops are written once over these functions; every loop stops at the last whole
 * vector and the caller's scalar loop (the same tsl_numerics.h helper) does the rest.
 *
 *   tsl_vf  float lanes     tsl_vi  int32 lanes     tsl_vm  lane masks (all ones: true)     TSL_VW  lanes
 *   TSL_VFN     the attributes of these helpers (always inlined; on x86 the AVX2 target)
 *   TSL_VEC_FN  those of a kernel's vector loop, which the kernel calls only if TSL_VEC_ON
 */
#ifndef TSL_VEC_F32_H
#define TSL_VEC_F32_H
#include "tsl_kernels.h"

#if defined(TSL_NEON_ANY)
#define TSL_VEC_F32 1
#define TSL_VW 4
#define TSL_VFN static inline __attribute__((always_inline))
#define TSL_VEC_FN static inline              /* a loop over vectors */
#define TSL_VEC_ON 1
typedef float32x4_t tsl_vf;
typedef int32x4_t tsl_vi;
typedef uint32x4_t tsl_vm;

TSL_VFN tsl_vf tsl_vf_ld(const float *p) { return vld1q_f32(p); }
TSL_VFN void tsl_vf_st(float *p, tsl_vf v) { vst1q_f32(p, v); }
TSL_VFN tsl_vf tsl_vf_set(float c) { return vdupq_n_f32(c); }
TSL_VFN tsl_vf tsl_vf_add(tsl_vf a, tsl_vf b) { return vaddq_f32(a, b); }
TSL_VFN tsl_vf tsl_vf_sub(tsl_vf a, tsl_vf b) { return vsubq_f32(a, b); }
TSL_VFN tsl_vf tsl_vf_mul(tsl_vf a, tsl_vf b) { return vmulq_f32(a, b); }
#if defined(TSL_SIMDE_NEON)   /* SIMDe 0.7 has no vdivq_f32: one IEEE division per lane */
TSL_VFN tsl_vf tsl_vf_div(tsl_vf a, tsl_vf b)
{
    float x[4], y[4];
    vst1q_f32(x, a);
    vst1q_f32(y, b);
    for (int i = 0; i < 4; i++) x[i] = x[i] / y[i];
    return vld1q_f32(x);
}
#else
TSL_VFN tsl_vf tsl_vf_div(tsl_vf a, tsl_vf b) { return vdivq_f32(a, b); }
#endif
TSL_VFN tsl_vf tsl_vf_neg(tsl_vf a) { return vnegq_f32(a); }                 /* sign flip, as C's -a */
TSL_VFN tsl_vm tsl_vf_gt(tsl_vf a, tsl_vf b) { return vcgtq_f32(a, b); }
TSL_VFN tsl_vm tsl_vf_ge(tsl_vf a, tsl_vf b) { return vcgeq_f32(a, b); }
TSL_VFN tsl_vm tsl_vf_lt(tsl_vf a, tsl_vf b) { return vcltq_f32(a, b); }
TSL_VFN tsl_vm tsl_vf_le(tsl_vf a, tsl_vf b) { return vcleq_f32(a, b); }
TSL_VFN tsl_vf tsl_vf_sel(tsl_vm m, tsl_vf a, tsl_vf b) { return vbslq_f32(m, a, b); }   /* m ? a : b */
/* a > c ? c : a (c not -0) and a < c ? c : a (c not +0): FMIN/FMAX order -0 below +0, the scalar
 * forms keep a when a == c, so they differ only on a zero a and the excluded zero c; a NaN stays NaN */
TSL_VFN tsl_vf tsl_vf_min_c(tsl_vf a, tsl_vf c) { return vminq_f32(a, c); }
TSL_VFN tsl_vf tsl_vf_max_c(tsl_vf a, tsl_vf c) { return vmaxq_f32(a, c); }
TSL_VFN tsl_vf tsl_vf_max(tsl_vf a, tsl_vf b) { return vmaxq_f32(a, b); }   /* reductions that take any order */
TSL_VFN tsl_vf tsl_vf_abs(tsl_vf a) { return vabsq_f32(a); }
TSL_VFN float tsl_vf_hmax(tsl_vf a) { return vmaxvq_f32(a); }
TSL_VFN tsl_vi tsl_vi_ld(const int32_t *p) { return vld1q_s32(p); }
TSL_VFN tsl_vi tsl_vf_trunc(tsl_vf a) { return vcvtq_s32_f32(a); }          /* (int32_t)a, |a| < 2^31 */
TSL_VFN tsl_vf tsl_vi_to_f(tsl_vi a) { return vcvtq_f32_s32(a); }           /* (float)a */
TSL_VFN tsl_vi tsl_vi_add(tsl_vi a, tsl_vi b) { return vaddq_s32(a, b); }
TSL_VFN tsl_vi tsl_vi_sub(tsl_vi a, tsl_vi b) { return vsubq_s32(a, b); }
TSL_VFN tsl_vi tsl_vi_set(int32_t c) { return vdupq_n_s32(c); }
TSL_VFN tsl_vi tsl_vm_to_i(tsl_vm m) { return vreinterpretq_s32_u32(m); }   /* true: -1, false: 0 */
TSL_VFN tsl_vf tsl_vi_exp2(tsl_vi e) { return vreinterpretq_f32_s32(vshlq_n_s32(e, 23)); }   /* bits e << 23 */
/* *a = p[0, 2, 4, ...], *b = p[1, 3, 5, ...] of p[0..2 * TSL_VW); st2 the inverse */
TSL_VFN void tsl_vf_ld2(const float *p, tsl_vf *a, tsl_vf *b)
{
    const float32x4x2_t v = vld2q_f32(p);
    *a = v.val[0];
    *b = v.val[1];
}
TSL_VFN void tsl_vf_st2(float *p, tsl_vf a, tsl_vf b)
{
    const float32x4x2_t v = {{a, b}};
    vst2q_f32(p, v);
}
/* a with lane l negated where bit l of bits is set (C's -a: the sign bit flipped) */
TSL_VFN tsl_vf tsl_vf_neg_bits(tsl_vf a, uint32_t bits)
{
    static const uint32_t lane[4] = {1, 2, 4, 8};
    const uint32x4_t m = vandq_u32(vtstq_u32(vdupq_n_u32(bits), vld1q_u32(lane)), vdupq_n_u32(0x80000000u));
    return vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(a), m));
}
/* TSL_VF_LD4: *a..*d = p[0, 4, 8, 12], p[1, 5, 9, 13], ... of p[0..4 * TSL_VW); st4 the inverse */
#define TSL_VF_LD4 1
TSL_VFN void tsl_vf_ld4(const float *p, tsl_vf *a, tsl_vf *b, tsl_vf *c, tsl_vf *d)
{
    const float32x4x4_t v = vld4q_f32(p);
    *a = v.val[0];
    *b = v.val[1];
    *c = v.val[2];
    *d = v.val[3];
}
TSL_VFN void tsl_vf_st4(float *p, tsl_vf a, tsl_vf b, tsl_vf c, tsl_vf d)
{
    const float32x4x4_t v = {{a, b, c, d}};
    vst4q_f32(p, v);
}
/* TSL_VW floats from int8 p[0..TSL_VW) */
TSL_VFN tsl_vf tsl_vf_ld_s8(const int8_t *p)
{
    int32_t w;
    memcpy(&w, p, 4);
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(w))))));
}
/* the low byte of each lane of a (XTN truncates, as an (int8_t) cast) to q[0..TSL_VW) */
TSL_VFN void tsl_vi_st_s8(int8_t *q, tsl_vi a)
{
    const int16x4_t h = vmovn_s32(a);
    const int32_t w = vget_lane_s32(vreinterpret_s32_s8(vmovn_s16(vcombine_s16(h, h))), 0);
    memcpy(q, &w, 4);
}
/* the same for a, b, c, d to q[0..4 * TSL_VW), in that order */
TSL_VFN void tsl_vi_st4_s8(int8_t *q, tsl_vi a, tsl_vi b, tsl_vi c, tsl_vi d)
{
    const int16x8_t ab = vcombine_s16(vmovn_s32(a), vmovn_s32(b)), cd = vcombine_s16(vmovn_s32(c), vmovn_s32(d));
    vst1q_s8(q, vcombine_s8(vmovn_s16(ab), vmovn_s16(cd)));
}

#elif defined(TSL_X86)
#define TSL_VEC_F32 1
#define TSL_VW 8
#define TSL_VFN static inline __attribute__((always_inline)) TSL_TARGET_AVX2
#define TSL_VEC_FN TSL_TARGET_AVX2 static inline
#define TSL_VEC_ON (tsl_x86_level() >= TSL_X86_AVX2)
typedef __m256 tsl_vf;
typedef __m256i tsl_vi;
typedef __m256 tsl_vm;

TSL_VFN tsl_vf tsl_vf_ld(const float *p) { return _mm256_loadu_ps(p); }
TSL_VFN void tsl_vf_st(float *p, tsl_vf v) { _mm256_storeu_ps(p, v); }
TSL_VFN tsl_vf tsl_vf_set(float c) { return _mm256_set1_ps(c); }
TSL_VFN tsl_vf tsl_vf_add(tsl_vf a, tsl_vf b) { return _mm256_add_ps(a, b); }
TSL_VFN tsl_vf tsl_vf_sub(tsl_vf a, tsl_vf b) { return _mm256_sub_ps(a, b); }
TSL_VFN tsl_vf tsl_vf_mul(tsl_vf a, tsl_vf b) { return _mm256_mul_ps(a, b); }
TSL_VFN tsl_vf tsl_vf_div(tsl_vf a, tsl_vf b) { return _mm256_div_ps(a, b); }
TSL_VFN tsl_vf tsl_vf_neg(tsl_vf a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }   /* sign flip, as C's -a */
TSL_VFN tsl_vm tsl_vf_gt(tsl_vf a, tsl_vf b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
TSL_VFN tsl_vm tsl_vf_ge(tsl_vf a, tsl_vf b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
TSL_VFN tsl_vm tsl_vf_lt(tsl_vf a, tsl_vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
TSL_VFN tsl_vm tsl_vf_le(tsl_vf a, tsl_vf b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
TSL_VFN tsl_vf tsl_vf_sel(tsl_vm m, tsl_vf a, tsl_vf b) { return _mm256_blendv_ps(b, a, m); }   /* m ? a : b */
/* MINPS(c, a) is (c < a ? c : a), MAXPS(c, a) is (c > a ? c : a): exactly the scalar forms */
TSL_VFN tsl_vf tsl_vf_min_c(tsl_vf a, tsl_vf c) { return _mm256_min_ps(c, a); }
TSL_VFN tsl_vf tsl_vf_max_c(tsl_vf a, tsl_vf c) { return _mm256_max_ps(c, a); }
TSL_VFN tsl_vf tsl_vf_max(tsl_vf a, tsl_vf b) { return _mm256_max_ps(a, b); }   /* reductions that take any order */
TSL_VFN tsl_vf tsl_vf_abs(tsl_vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
TSL_VFN float tsl_vf_hmax(tsl_vf a)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}
TSL_VFN tsl_vi tsl_vi_ld(const int32_t *p) { return _mm256_loadu_si256((const __m256i *)(const void *)p); }
TSL_VFN tsl_vi tsl_vf_trunc(tsl_vf a) { return _mm256_cvttps_epi32(a); }    /* (int32_t)a, |a| < 2^31 */
TSL_VFN tsl_vf tsl_vi_to_f(tsl_vi a) { return _mm256_cvtepi32_ps(a); }      /* (float)a */
TSL_VFN tsl_vi tsl_vi_add(tsl_vi a, tsl_vi b) { return _mm256_add_epi32(a, b); }
TSL_VFN tsl_vi tsl_vi_sub(tsl_vi a, tsl_vi b) { return _mm256_sub_epi32(a, b); }
TSL_VFN tsl_vi tsl_vi_set(int32_t c) { return _mm256_set1_epi32(c); }
TSL_VFN tsl_vi tsl_vm_to_i(tsl_vm m) { return _mm256_castps_si256(m); }      /* true: -1, false: 0 */
TSL_VFN tsl_vf tsl_vi_exp2(tsl_vi e) { return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)); }   /* bits e << 23 */
TSL_VFN void tsl_vf_ld2(const float *p, tsl_vf *a, tsl_vf *b)
{
    const __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8);
    /* SHUFPS within 128-bit halves, then the 64-bit quarters back in order */
    *a = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(v0, v1, 0x88)), 0xD8));
    *b = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(v0, v1, 0xDD)), 0xD8));
}
TSL_VFN void tsl_vf_st2(float *p, tsl_vf a, tsl_vf b)
{
    const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}
/* a with lane l negated where bit l of bits is set (C's -a: the sign bit flipped) */
TSL_VFN tsl_vf tsl_vf_neg_bits(tsl_vf a, uint32_t bits)
{
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i m = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int32_t)bits), lane), lane);
    return _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_slli_epi32(m, 31)));
}
TSL_VFN tsl_vf tsl_vf_ld_s8(const int8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
/* the low byte of each lane, as (int8_t) casts and NEON's XTN keep it (a lane of a NaN's
 * conversion holds INT32_MIN, whose cast is 0): masked to [0, 255], so the packs never saturate */
TSL_VFN void tsl_vi_st_s8(int8_t *q, tsl_vi a)
{
    a = _mm256_and_si256(a, _mm256_set1_epi32(0xFF));
    const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    _mm_storel_epi64((__m128i *)(void *)q, _mm_packus_epi16(h, h));
}
TSL_VFN void tsl_vi_st4_s8(int8_t *q, tsl_vi a, tsl_vi b, tsl_vi c, tsl_vi d)
{
    const __m256i m = _mm256_set1_epi32(0xFF);
    const __m256i ab = _mm256_packus_epi32(_mm256_and_si256(a, m), _mm256_and_si256(b, m));
    const __m256i cd = _mm256_packus_epi32(_mm256_and_si256(c, m), _mm256_and_si256(d, m));
    /* PACKUS works within 128-bit halves: 4-byte groups a[0:4] b[0:4] c[0:4] d[0:4] a[4:8] b[4:8] ... */
    _mm256_storeu_si256((__m256i *)(void *)q, _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd),
                                                                         _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}
#endif

#if defined(TSL_VEC_F32)
/* tsl_round_f32 (|v| < 2^31): truncate, compare the fraction with +-0.5 */
TSL_VFN tsl_vi tsl_vf_round(tsl_vf v)
{
    const tsl_vi i = tsl_vf_trunc(v);
    const tsl_vf f = tsl_vf_sub(v, tsl_vi_to_f(i));
    return tsl_vi_add(tsl_vi_sub(i, tsl_vm_to_i(tsl_vf_ge(f, tsl_vf_set(0.5f)))),
                      tsl_vm_to_i(tsl_vf_le(f, tsl_vf_set(-0.5f))));
}

/* tsl_quant_f32 without the cast to int8: clamp, then tsl_vf_round */
TSL_VFN tsl_vi tsl_vf_quant(tsl_vf v)
{
    return tsl_vf_round(tsl_vf_max_c(tsl_vf_min_c(v, tsl_vf_set(127.0f)), tsl_vf_set(-127.0f)));
}

/* tsl_exp_neg */
TSL_VFN tsl_vf tsl_vf_exp_neg(tsl_vf x)
{
    x = tsl_vf_min_c(x, tsl_vf_set(0.0f));   /* x > 0 ? 0 : x (a zero of either sign gives 1.0f) */
    const tsl_vm below = tsl_vf_lt(x, tsl_vf_set(-87.0f));
    const tsl_vf t = tsl_vf_mul(x, tsl_vf_set(1.44269504f));
    tsl_vi n = tsl_vf_trunc(t);
    n = tsl_vi_add(n, tsl_vm_to_i(tsl_vf_gt(tsl_vi_to_f(n), t)));
    const tsl_vf f = tsl_vf_sub(t, tsl_vi_to_f(n));
    tsl_vf p = tsl_vf_set(1.5403530e-4f);
    p = tsl_vf_add(tsl_vf_mul(p, f), tsl_vf_set(1.3333558e-3f));
    p = tsl_vf_add(tsl_vf_mul(p, f), tsl_vf_set(9.6181291e-3f));
    p = tsl_vf_add(tsl_vf_mul(p, f), tsl_vf_set(5.5504109e-2f));
    p = tsl_vf_add(tsl_vf_mul(p, f), tsl_vf_set(2.4022651e-1f));
    p = tsl_vf_add(tsl_vf_mul(p, f), tsl_vf_set(6.9314718e-1f));
    p = tsl_vf_add(tsl_vf_mul(p, f), tsl_vf_set(1.0f));
    return tsl_vf_sel(below, tsl_vf_set(0.0f), tsl_vf_mul(p, tsl_vi_exp2(tsl_vi_add(n, tsl_vi_set(127)))));
}

/* tsl_silu */
TSL_VFN tsl_vf tsl_vf_silu(tsl_vf x)
{
    const tsl_vm pos = tsl_vf_ge(x, tsl_vf_set(0.0f));
    const tsl_vf e = tsl_vf_exp_neg(tsl_vf_sel(pos, tsl_vf_neg(x), x));
    const tsl_vf d = tsl_vf_add(tsl_vf_set(1.0f), e);
    return tsl_vf_sel(pos, tsl_vf_div(x, d), tsl_vf_div(tsl_vf_mul(x, e), d));
}

/* tsl_tanh */
TSL_VFN tsl_vf tsl_vf_tanh(tsl_vf z)
{
    const tsl_vm pos = tsl_vf_ge(z, tsl_vf_set(0.0f));
    const tsl_vf a = tsl_vf_sel(pos, z, tsl_vf_neg(z));
    const tsl_vf e = tsl_vf_exp_neg(tsl_vf_mul(tsl_vf_set(-2.0f), a));
    const tsl_vf t = tsl_vf_div(tsl_vf_sub(tsl_vf_set(1.0f), e), tsl_vf_add(tsl_vf_set(1.0f), e));
    return tsl_vf_sel(pos, t, tsl_vf_neg(t));
}

/* tsl_gelu_tanh */
TSL_VFN tsl_vf tsl_vf_gelu_tanh(tsl_vf x)
{
    const tsl_vf c3 = tsl_vf_mul(tsl_vf_mul(tsl_vf_mul(tsl_vf_set(0.044715f), x), x), x);
    const tsl_vf u = tsl_vf_mul(tsl_vf_set(0.7978845608f), tsl_vf_add(x, c3));
    return tsl_vf_mul(tsl_vf_mul(tsl_vf_set(0.5f), x), tsl_vf_add(tsl_vf_set(1.0f), tsl_vf_tanh(u)));
}

/* tsl_gelu_erf */
TSL_VFN tsl_vf tsl_vf_gelu_erf(tsl_vf x)
{
    const tsl_vf z = tsl_vf_mul(x, tsl_vf_set(0.70710678f));
    const tsl_vm pos = tsl_vf_ge(z, tsl_vf_set(0.0f));
    const tsl_vf a = tsl_vf_sel(pos, z, tsl_vf_neg(z));
    const tsl_vf t = tsl_vf_div(tsl_vf_set(1.0f), tsl_vf_add(tsl_vf_set(1.0f), tsl_vf_mul(tsl_vf_set(0.3275911f), a)));
    tsl_vf p = tsl_vf_set(1.061405429f);
    p = tsl_vf_add(tsl_vf_mul(p, t), tsl_vf_set(-1.453152027f));
    p = tsl_vf_add(tsl_vf_mul(p, t), tsl_vf_set(1.421413741f));
    p = tsl_vf_add(tsl_vf_mul(p, t), tsl_vf_set(-0.284496736f));
    p = tsl_vf_add(tsl_vf_mul(p, t), tsl_vf_set(0.254829592f));
    const tsl_vf erf_a = tsl_vf_sub(tsl_vf_set(1.0f),
                                    tsl_vf_mul(tsl_vf_mul(p, t), tsl_vf_exp_neg(tsl_vf_neg(tsl_vf_mul(a, a)))));
    const tsl_vf erf_z = tsl_vf_sel(pos, erf_a, tsl_vf_neg(erf_a));
    return tsl_vf_mul(tsl_vf_mul(tsl_vf_set(0.5f), x), tsl_vf_add(tsl_vf_set(1.0f), erf_z));
}

/* x > 0 ? x : 0 */
TSL_VFN tsl_vf tsl_vf_relu(tsl_vf x)
{
    return tsl_vf_sel(tsl_vf_gt(x, tsl_vf_set(0.0f)), x, tsl_vf_set(0.0f));
}
#endif

#endif
