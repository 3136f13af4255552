/* tsl_elementwise_f32.c -- quantize, embed, RoPE, KV store, adds, caps and the MLP nonlinearities.
 * Each kernel: a vector loop over whole vectors of tsl_vec_f32.h (NEON, AVX2) where TSL_VEC_F32,
 * then the scalar loop for the rest (all of n elsewhere), with the same tsl_numerics.h helper. */
#include "tsl_kernels.h"
#include "tsl_vec_f32.h"

#define TSL_ROPE_SPAN 32            /* pairs whose cos, sin rows sit on the stack at a time */

#if defined(TSL_VEC_F32)
/* max |x[i]| over i < the returned count (a multiple of TSL_VW), in *amax; the largest magnitude
 * is the same whatever the order */
TSL_VEC_FN int32_t tsl_quant_amax_vec(const float *x, int32_t n, float *amax)
{
    int32_t i = 0;
    tsl_vf m0 = tsl_vf_set(0.0f), m1 = m0, m2 = m0, m3 = m0;
    for (; i + 4 * TSL_VW <= n; i += 4 * TSL_VW) {
        m0 = tsl_vf_max(m0, tsl_vf_abs(tsl_vf_ld(x + i)));
        m1 = tsl_vf_max(m1, tsl_vf_abs(tsl_vf_ld(x + i + TSL_VW)));
        m2 = tsl_vf_max(m2, tsl_vf_abs(tsl_vf_ld(x + i + 2 * TSL_VW)));
        m3 = tsl_vf_max(m3, tsl_vf_abs(tsl_vf_ld(x + i + 3 * TSL_VW)));
    }
    for (; i + TSL_VW <= n; i += TSL_VW) m0 = tsl_vf_max(m0, tsl_vf_abs(tsl_vf_ld(x + i)));
    *amax = tsl_vf_hmax(tsl_vf_max(tsl_vf_max(m0, m1), tsl_vf_max(m2, m3)));
    return i;
}

/* q[i] = tsl_quant_f32(x[i] * inv) for i < the returned count */
TSL_VEC_FN int32_t tsl_quant_vec(const float *x, int8_t *q, int32_t n, float inv)
{
    const tsl_vf s = tsl_vf_set(inv);
    int32_t i = 0;
    for (; i + 4 * TSL_VW <= n; i += 4 * TSL_VW)
        tsl_vi_st4_s8(q + i, tsl_vf_quant(tsl_vf_mul(tsl_vf_ld(x + i), s)),
                      tsl_vf_quant(tsl_vf_mul(tsl_vf_ld(x + i + TSL_VW), s)),
                      tsl_vf_quant(tsl_vf_mul(tsl_vf_ld(x + i + 2 * TSL_VW), s)),
                      tsl_vf_quant(tsl_vf_mul(tsl_vf_ld(x + i + 3 * TSL_VW), s)));
    for (; i + TSL_VW <= n; i += TSL_VW) tsl_vi_st_s8(q + i, tsl_vf_quant(tsl_vf_mul(tsl_vf_ld(x + i), s)));
    return i;
}

TSL_VEC_FN int32_t tsl_dequant_sub_vec(float *x, const int8_t *q, float sc, int32_t n)
{
    const tsl_vf s = tsl_vf_set(sc);
    int32_t i = 0;
    for (; i + TSL_VW <= n; i += TSL_VW)
        tsl_vf_st(x + i, tsl_vf_sub(tsl_vf_ld(x + i), tsl_vf_mul(tsl_vf_ld_s8(q + i), s)));
    return i;
}

TSL_VEC_FN int32_t tsl_embed_vec(const int8_t *r, float s, float *dst, int32_t n, int32_t accumulate)
{
    const tsl_vf sv = tsl_vf_set(s);
    int32_t i = 0;
    if (accumulate)
        for (; i + TSL_VW <= n; i += TSL_VW)
            tsl_vf_st(dst + i, tsl_vf_add(tsl_vf_ld(dst + i), tsl_vf_mul(tsl_vf_ld_s8(r + i), sv)));
    else
        for (; i + TSL_VW <= n; i += TSL_VW) tsl_vf_st(dst + i, tsl_vf_mul(tsl_vf_ld_s8(r + i), sv));
    return i;
}

/* one head, rotate-half pairs (pa[i], pb[i]), i < the returned count (<= n) */
TSL_VEC_FN int32_t tsl_rope_half_vec(float *pa, float *pb, int32_t n, const float *cs, const float *sn)
{
    int32_t i = 0;
    for (; i + TSL_VW <= n; i += TSL_VW) {
        const tsl_vf a = tsl_vf_ld(pa + i), b = tsl_vf_ld(pb + i), c = tsl_vf_ld(cs + i), s = tsl_vf_ld(sn + i);
        tsl_vf_st(pa + i, tsl_vf_sub(tsl_vf_mul(a, c), tsl_vf_mul(b, s)));
        tsl_vf_st(pb + i, tsl_vf_add(tsl_vf_mul(b, c), tsl_vf_mul(a, s)));
    }
    return i;
}

/* one head, interleaved pairs (p[2i], p[2i + 1]), i < the returned count (<= n) */
TSL_VEC_FN int32_t tsl_rope_pairs_vec(float *p, int32_t n, const float *cs, const float *sn)
{
    int32_t i = 0;
    for (; i + TSL_VW <= n; i += TSL_VW) {
        tsl_vf a, b;
        tsl_vf_ld2(p + 2 * i, &a, &b);
        const tsl_vf c = tsl_vf_ld(cs + i), s = tsl_vf_ld(sn + i);
        tsl_vf_st2(p + 2 * i, tsl_vf_sub(tsl_vf_mul(a, c), tsl_vf_mul(b, s)),
                   tsl_vf_add(tsl_vf_mul(b, c), tsl_vf_mul(a, s)));
    }
    return i;
}

TSL_VEC_FN int32_t tsl_add_vec(float *x, const float *y, int32_t n)
{
    int32_t i = 0;
    for (; i + TSL_VW <= n; i += TSL_VW) tsl_vf_st(x + i, tsl_vf_add(tsl_vf_ld(x + i), tsl_vf_ld(y + i)));
    return i;
}

TSL_VEC_FN int32_t tsl_softcap_vec(float *x, int32_t n, float cap)
{
    const tsl_vf c = tsl_vf_set(cap);
    int32_t i = 0;
    for (; i + TSL_VW <= n; i += TSL_VW) tsl_vf_st(x + i, tsl_vf_mul(c, tsl_vf_tanh(tsl_vf_div(tsl_vf_ld(x + i), c))));
    return i;
}

/* y[i] = act(x[i]) (* u[i] where u), i < the returned count */
TSL_VEC_FN int32_t tsl_act_vec(const float *x, const float *u, float *y, int32_t n, int32_t act)
{
    int32_t i = 0;
#define TSL_VEC_ACT_LOOP(f)                                                                               \
    if (u) for (; i + TSL_VW <= n; i += TSL_VW) tsl_vf_st(y + i, tsl_vf_mul(f(tsl_vf_ld(x + i)), tsl_vf_ld(u + i))); \
    else for (; i + TSL_VW <= n; i += TSL_VW) tsl_vf_st(y + i, f(tsl_vf_ld(x + i)))
    if (act == TSL_ACT_SILU) TSL_VEC_ACT_LOOP(tsl_vf_silu);
    else if (act == TSL_ACT_GELU_TANH) TSL_VEC_ACT_LOOP(tsl_vf_gelu_tanh);
    else if (act == TSL_ACT_RELU) TSL_VEC_ACT_LOOP(tsl_vf_relu);
    else TSL_VEC_ACT_LOOP(tsl_vf_gelu_erf);
#undef TSL_VEC_ACT_LOOP
    return i;
}
#endif

float tsl_absmax_f32(const float *x, int32_t n)
{
    float amax = 0.0f;
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_quant_amax_vec(x, n, &amax);
#endif
    for (; i < n; i++) {
        const float a = x[i] >= 0.0f ? x[i] : -x[i];
        amax = a > amax ? a : amax;
    }
    return amax;
}

void tsl_quant_mul_f32(const float *x, float s, int8_t *q, int32_t n)
{
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_quant_vec(x, q, n, s);
#endif
    for (; i < n; i++) q[i] = tsl_quant_f32(x[i] * s);
}

float tsl_quant_dynamic_f32(const float *x, int8_t *q, int32_t n)
{
    const float amax = tsl_absmax_f32(x, n);
    if (amax == 0.0f) {
        for (int32_t i = 0; i < n; i++) q[i] = 0;
        return 0.0f;
    }
    tsl_quant_mul_f32(x, 127.0f / amax, q, n);
    return amax / 127.0f;
}

void tsl_dequant_sub_f32(float *x, const int8_t *q, const float *s, int32_t n)
{
    const float sc = *s;
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_dequant_sub_vec(x, q, sc, n);
#endif
    for (; i < n; i++) x[i] = x[i] - (float)q[i] * sc;
}

void tsl_embed_s8(const int8_t *table, const float *scale, int32_t row, float *dst, int32_t n,
                  int32_t accumulate)
{
    const int8_t *r = table + (intptr_t)row * n;
    const float s = scale[row];
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_embed_vec(r, s, dst, n, accumulate);
#endif
    for (; i < n; i++) {
        const float v = (float)r[i] * s;
        dst[i] = accumulate ? dst[i] + v : v;
    }
}

/* (pa[i], pb[i]) <- (pa[i] * c[i] - pb[i] * s[i], pb[i] * c[i] + pa[i] * s[i]), i < n: a rotate-half
 * head's pairs, and the split tables' angle addition (cos, sin of hi rotated by lo) */
static void tsl_rotate_f32(float *pa, float *pb, int32_t n, const float *c, const float *s)
{
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_rope_half_vec(pa, pb, n, c, s);
#endif
    for (; i < n; i++) {
        const float a = pa[i], b = pb[i];
        pa[i] = a * c[i] - b * s[i];
        pb[i] = b * c[i] + a * s[i];
    }
}

/* pairs j0 .. j0 + n - 1 of every head (of rot / 2 = half) rotated by cs, sn [n] */
static void tsl_rope_span(float *v, int32_t n_heads, int32_t hs, int32_t half, int32_t j0, int32_t n,
                          const float *cs, const float *sn, int32_t interleaved)
{
    for (int32_t h = 0; h < n_heads; h++) {
        float *p = v + h * hs + (interleaved ? 2 * j0 : j0);
        if (!interleaved) {
            tsl_rotate_f32(p, p + half, n, cs, sn);
            continue;
        }
        int32_t i = 0;
#if defined(TSL_VEC_F32)
        if (TSL_VEC_ON) i = tsl_rope_pairs_vec(p, n, cs, sn);
#endif
        for (; i < n; i++) {
            const float a = p[2 * i], b = p[2 * i + 1];
            p[2 * i] = a * cs[i] - b * sn[i];
            p[2 * i + 1] = b * cs[i] + a * sn[i];
        }
    }
}

void tsl_rope_f32(float *v, int32_t n_heads, int32_t hs, int32_t rot, const float *cs,
                  const float *sn, int32_t interleaved)
{
    tsl_rope_span(v, n_heads, hs, rot / 2, 0, rot / 2, cs, sn, interleaved);
}

void tsl_rope_split_f32(float *v, int32_t n_heads, int32_t hs, int32_t rot, const float *cos_hi,
                        const float *sin_hi, const float *cos_lo, const float *sin_lo, int32_t interleaved)
{
    float cs[TSL_ROPE_SPAN], sn[TSL_ROPE_SPAN];
    const int32_t half = rot / 2;
    for (int32_t j0 = 0; j0 < half; j0 += TSL_ROPE_SPAN) {
        const int32_t n = half - j0 < TSL_ROPE_SPAN ? half - j0 : TSL_ROPE_SPAN;
        for (int32_t i = 0; i < n; i++) {
            cs[i] = cos_hi[j0 + i];
            sn[i] = sin_hi[j0 + i];
        }
        /* cs = ch * cl - sh * sl, sn = sh * cl + ch * sl */
        tsl_rotate_f32(cs, sn, n, cos_lo + j0, sin_lo + j0);
        tsl_rope_span(v, n_heads, hs, half, j0, n, cs, sn, interleaved);
    }
}

void tsl_kv_store_s8(const float *x, int8_t *cache, float *scale, int32_t n_heads, int32_t hs,
                     int32_t max_seq, int32_t pos)
{
    for (int32_t h = 0; h < n_heads; h++) {
        const intptr_t row = (intptr_t)h * max_seq + pos % max_seq;
        scale[row] = tsl_quant_dynamic_f32(x + h * hs, cache + row * hs, hs);
    }
}

static float tsl_act(float x, int32_t act)
{
    return act == TSL_ACT_SILU ? tsl_silu(x) : act == TSL_ACT_GELU_TANH ? tsl_gelu_tanh(x) :
           act == TSL_ACT_RELU ? (x > 0.0f ? x : 0.0f) : tsl_gelu_erf(x);
}

void tsl_add_f32(float *x, const float *y, int32_t n)
{
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_add_vec(x, y, n);
#endif
    for (; i < n; i++) x[i] = x[i] + y[i];
}

void tsl_softcap_f32(float *x, int32_t n, float cap)
{
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_softcap_vec(x, n, cap);
#endif
    for (; i < n; i++) x[i] = cap * tsl_tanh(x[i] / cap);
}

void tsl_act_f32(const float *x, float *y, int32_t n, int32_t act)
{
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_act_vec(x, 0, y, n, act);
#endif
    for (; i < n; i++) y[i] = tsl_act(x[i], act);
}

void tsl_glu_f32(const float *g, const float *u, float *h, int32_t n, int32_t act)
{
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_act_vec(g, u, h, n, act);
#endif
    for (; i < n; i++) h[i] = tsl_act(g[i], act) * u[i];
}
