/* tsl_numerics.h -- the rounding rules of tinyslm, shared by every kernel and every ISA path.
 *
 * The numpy mirror of each function lives in tinyslm/numerics.py; a change here is a change there.
 * Rules:
 *   - integer -> integer: tsl_requant(): x * mult * 2^(shift-31), one rounding: add half, arithmetic
 *     shift right (round half towards +inf). mult in [2^30, 2^31), 31 - shift in [1, 62].
 *   - float -> int8: tsl_quant_f32(): clamp to [-127, 127] first, then round half away from zero
 *     (tsl_round_f32, also the rule for every other float -> int rounding).
 *   - a float ratio becomes a fixed-point multiplier by its bits (tsl_multiplier), exactly.
 *   - float math is plain IEEE-754 binary32 (+, -, *, /), compiled with -ffp-contract=off: no FMA,
 *     no libm. rsqrt and exp are written out below with a fixed order of operations.
 */
#ifndef TSL_NUMERICS_H
#define TSL_NUMERICS_H
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define TSL_INLINE static inline __attribute__((always_inline))
#else
#define TSL_INLINE static inline
#endif

TSL_INLINE int32_t tsl_requant(int32_t x, int32_t mult, int32_t shift)
{
    const int32_t rs = 31 - shift;
    const int64_t p = (int64_t)x * (int64_t)mult;
    return (int32_t)((p + ((int64_t)1 << (rs - 1))) >> rs);
}

TSL_INLINE int8_t tsl_sat_s8(int32_t v)
{
    return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
}

TSL_INLINE int8_t tsl_requant_s8(int32_t x, int32_t mult, int32_t shift)
{
    return tsl_sat_s8(tsl_requant(x, mult, shift));
}

/* Round half away from zero; |v| < 2^23. */
TSL_INLINE int32_t tsl_round_f32(float v)
{
    const int32_t i = (int32_t)v;     /* toward zero */
    const float f = v - (float)i;     /* exact */
    return i + (f >= 0.5f) - (f <= -0.5f);
}

/* v finite. Result in [-127, 127]. */
TSL_INLINE int8_t tsl_quant_f32(float v)
{
    if (v > 127.0f) v = 127.0f;
    if (v < -127.0f) v = -127.0f;
    return (int8_t)tsl_round_f32(v);
}

TSL_INLINE uint32_t tsl_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
TSL_INLINE float tsl_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* r > 0 normal -> (mult, shift) with r == mult * 2^(shift-31) exactly (a float has 24 bits of
 * mantissa); below 2^-32 -> (0, 0), which requantizes everything to 0. */
TSL_INLINE void tsl_multiplier(float r, int32_t *mult, int32_t *shift)
{
    const uint32_t b = tsl_f32_bits(r);
    const int32_t e = (int32_t)((b >> 23) & 0xFFu) - 126;
    *mult = e < -31 ? 0 : (int32_t)(((b & 0x7FFFFFu) | 0x800000u) << 7);
    *shift = e < -31 ? 0 : (e > 30 ? 30 : e);   /* r > 2^30 only ever multiplies zeros */
}

/* 1/sqrt(x), x > 0 normal: bit-trick seed + 3 Newton steps (rel. error < 2e-7). */
TSL_INLINE float tsl_rsqrt(float x)
{
    const float h = 0.5f * x;
    float y = tsl_bits_f32(0x5f375a86u - (tsl_f32_bits(x) >> 1));
    y = y * (1.5f - (h * y) * y);
    y = y * (1.5f - (h * y) * y);
    y = y * (1.5f - (h * y) * y);
    return y;
}

/* e^x for x <= 0 (x > 0 is clamped to 0); 0 below -87. 2^(x log2 e) split into 2^n * 2^f,
 * f in [0, 1) by the degree-6 Taylor polynomial, Horner order. rel. error < 2e-5. */
TSL_INLINE float tsl_exp_neg(float x)
{
    if (x > 0.0f) x = 0.0f;
    if (x < -87.0f) return 0.0f;
    const float t = x * 1.44269504f;
    int32_t n = (int32_t)t;            /* trunc toward 0, t <= 0 */
    if ((float)n > t) n = n - 1;       /* floor */
    const float f = t - (float)n;      /* [0, 1) */
    float p = 1.5403530e-4f;
    p = p * f + 1.3333558e-3f;
    p = p * f + 9.6181291e-3f;
    p = p * f + 5.5504109e-2f;
    p = p * f + 2.4022651e-1f;
    p = p * f + 6.9314718e-1f;
    p = p * f + 1.0f;
    return p * tsl_bits_f32((uint32_t)(n + 127) << 23);
}

/* x * sigmoid(x), evaluated on e^-|x| only. */
TSL_INLINE float tsl_silu(float x)
{
    const float e = tsl_exp_neg(x >= 0.0f ? -x : x);
    return x >= 0.0f ? x / (1.0f + e) : (x * e) / (1.0f + e);
}

/* tanh(z) from e^-2|z|. */
TSL_INLINE float tsl_tanh(float z)
{
    const float a = z >= 0.0f ? z : -z;
    const float e = tsl_exp_neg(-2.0f * a);
    const float t = (1.0f - e) / (1.0f + e);
    return z >= 0.0f ? t : -t;
}

/* GELU, tanh form (GPT-2's gelu_new): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
TSL_INLINE float tsl_gelu_tanh(float x)
{
    const float u = 0.7978845608f * (x + ((0.044715f * x) * x) * x);
    return (0.5f * x) * (1.0f + tsl_tanh(u));
}

/* GELU, erf form: erf by Abramowitz-Stegun 7.1.26 (abs. error < 1.5e-7). */
TSL_INLINE float tsl_gelu_erf(float x)
{
    const float z = x * 0.70710678f;
    const float a = z >= 0.0f ? z : -z;
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t + -1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t + -0.284496736f;
    p = p * t + 0.254829592f;
    const float erf_a = 1.0f - (p * t) * tsl_exp_neg(-(a * a));
    const float erf_z = z >= 0.0f ? erf_a : -erf_a;
    return (0.5f * x) * (1.0f + erf_z);
}

/* ---- The integer path's scale arithmetic (mirror: tinyslm/numerics.py requant_sat, fx_*) ----
 * A scale is a (mult, shift) pair as tsl_multiplier makes them: r = mult * 2^(shift - 31), mult in
 * [2^30, 2^31), or {0, 0} for r == 0. Every shift toward zero inside these helpers truncates; the
 * one rounding of a value is tsl_requant's (add half, arithmetic shift right). */
typedef struct { int32_t m, s; } tsl_fx;

#define TSL_I32_MAX 2147483647

TSL_INLINE int32_t tsl_sat_s32(int64_t v)
{
    return (int32_t)(v < -TSL_I32_MAX ? -TSL_I32_MAX : (v > TSL_I32_MAX ? TSL_I32_MAX : v));
}

/* tsl_requant with 31 - shift clamped to [1, 62] and the result saturated to +-(2^31 - 1). */
TSL_INLINE int32_t tsl_requant_sat(int32_t x, int32_t mult, int32_t shift)
{
    const int32_t rs = 31 - shift < 1 ? 1 : (31 - shift > 62 ? 62 : 31 - shift);
    const int64_t p = (int64_t)x * (int64_t)mult;
    return tsl_sat_s32((p + ((int64_t)1 << (rs - 1))) >> rs);
}

/* Bits in v (0 for 0): the count-leading-zeros instruction where the core has one, else a binary
 * search (rv32imc and Thumb-1 have none; GCC's __clzdi2 there is a table lookup in libgcc). */
TSL_INLINE int32_t tsl_bitlen64(uint64_t v)
{
#if defined(__GNUC__) && (defined(__ARM_FEATURE_CLZ) || defined(__aarch64__) || defined(__x86_64__) || \
                          defined(__riscv_zbb))
    return v ? 64 - __builtin_clzll(v) : 0;
#else
    int32_t b = 0;
    uint32_t w = (uint32_t)(v >> 32);
    if (w) b = 32; else w = (uint32_t)v;
    if (w >> 16) { b += 16; w >>= 16; }
    if (w >> 8) { b += 8; w >>= 8; }
    if (w >> 4) { b += 4; w >>= 4; }
    if (w >> 2) { b += 2; w >>= 2; }
    if (w >> 1) { b += 1; w >>= 1; }
    return b + (int32_t)w;
#endif
}

/* v * 2^e, v < 2^63 */
TSL_INLINE tsl_fx tsl_fx_norm(uint64_t v, int32_t e)
{
    tsl_fx r = {0, 0};
    const int32_t b = tsl_bitlen64(v);
    if (!b) return r;
    r.m = (int32_t)(b > 31 ? v >> (b - 31) : v << (31 - b));
    r.s = e + b;
    return r;
}

/* a * b; a, b normalized (or zero), so the product has 61 or 62 bits: tsl_fx_norm without a bit count */
TSL_INLINE tsl_fx tsl_fx_mul(tsl_fx a, tsl_fx b)
{
    tsl_fx r = {0, 0};
    if (!a.m || !b.m) return r;
    const uint64_t p = (uint64_t)((int64_t)a.m * (int64_t)b.m);
    const int32_t top = (int32_t)(p >> 61);             /* 1: 62 bits, 0: 61 */
    r.m = (int32_t)(p >> (30 + top));
    r.s = a.s + b.s - 1 + top;
    return r;
}

/* 1 / a, a != 0 */
TSL_INLINE tsl_fx tsl_fx_recip(tsl_fx a)
{
    return tsl_fx_norm((((uint64_t)1 << 62) - 1) / (uint64_t)a.m, -31 - a.s);
}

#endif
