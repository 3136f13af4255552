/* tsl_int_ops.c -- the integer-only decode step: quantize, norms, embed, RoPE, KV store, attention,
 * activations, the matvec epilogue and the logits' float bits, all in integers (tsl_int_ops.h). */
#include "tsl_int_ops.h"
#include "tsl_kernels.h"
#include "tsl_epilogue.h"

#define TSL_IROW_BLOCK 128      /* tsl_imatvec_s8/_s4: int32 accumulators on the stack, per block of rows */
#define TSL_IQZ 22              /* fractional bits of a normalized value inside the norms */
#define TSL_INX 4               /* extra fractional bits of the norms' deviations (x << 4, mean in Q20) */

static const tsl_fx TSL_FX127 = {2130706432, 7};         /* 127 */
static const tsl_fx TSL_FX_INV127 = {1082196484, -6};    /* 1 / 127 */

static int8_t tsl_sat127(int32_t v) { return (int8_t)(v < -127 ? -127 : (v > 127 ? 127 : v)); }

/* the int8 step amax / 127, in Q16 units */
static tsl_fx tsl_istep(int32_t amax) { return tsl_fx_mul(tsl_fx_norm((uint64_t)amax, 0), TSL_FX_INV127); }

static int32_t tsl_iamax(const int32_t *x, int32_t n)
{
    int32_t amax = 0;
    for (int32_t i = 0; i < n; i++) {
        const int32_t a = x[i] >= 0 ? x[i] : -x[i];
        amax = a > amax ? a : amax;
    }
    return amax;
}

int32_t tsl_iquant_s8(const int32_t *x, int8_t *q, int32_t n)
{
    const int32_t amax = tsl_iamax(x, n);
    if (amax == 0) {
        for (int32_t i = 0; i < n; i++) q[i] = 0;
        return 0;
    }
    const tsl_fx r = tsl_fx_mul(TSL_FX127, tsl_fx_recip(tsl_fx_norm((uint64_t)amax, 0)));
    for (int32_t i = 0; i < n; i++) q[i] = tsl_sat127(tsl_requant_sat(x[i], r.m, r.s));
    return amax;
}

void tsl_ifwht(int32_t *x, int32_t n, int32_t block, const uint8_t *signs)
{
    for (int32_t i = 0; i < n; i++)
        if ((signs[i >> 3] >> (i & 7)) & 1) x[i] = -x[i];
    for (int32_t h = 1; h < block; h <<= 1)
        for (int32_t j0 = 0; j0 < n; j0 += 2 * h)
            for (int32_t j = j0; j < j0 + h; j++) {
                const int64_t a = x[j], b = x[j + h];
                x[j] = (int32_t)((a + b + 1) >> 1);
                x[j + h] = (int32_t)((a - b + 1) >> 1);
            }
}

void tsl_idequant_sub(int32_t *x, const int8_t *q, const int32_t *amax, int32_t n)
{
    const tsl_fx st = tsl_istep(*amax);
    for (int32_t i = 0; i < n; i++) x[i] = tsl_sat_s32((int64_t)x[i] - tsl_requant_sat(q[i], st.m, st.s));
}

void tsl_iembed_s8(const int8_t *table, const int32_t *fx, int32_t row, int32_t *dst, int32_t n,
                   int32_t accumulate)
{
    const int8_t *r = table + (intptr_t)row * n;
    const int32_t m = fx[2 * row], s = fx[2 * row + 1];
    for (int32_t i = 0; i < n; i++) {
        const int32_t v = tsl_requant_sat(r[i], m, s);
        dst[i] = accumulate ? tsl_sat_s32((int64_t)dst[i] + v) : v;
    }
}

/* floor(sqrt(v)), digit by digit */
static uint32_t tsl_isqrt64(uint64_t v)
{
    uint64_t r = 0, bit = (uint64_t)1 << 62;
    while (bit > v) bit >>= 2;
    while (bit) {
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)r;
}

void tsl_inorm(const int32_t *x, const int32_t *g, int32_t gq, const int32_t *b, uint32_t eps_q,
               int32_t *y, int32_t n, int32_t layer)
{
    /* Mean (LayerNorm) in Q20, deviation scaled to 15 bits. */
    int64_t mean = 0;
    if (layer) {
        int64_t s = 0;
        for (int32_t i = 0; i < n; i++) s += x[i];
        mean = s * (1 << TSL_INX) / n;
    }
    uint64_t amax = 0;
    for (int32_t i = 0; i < n; i++) {
        const int64_t d = (int64_t)x[i] * (1 << TSL_INX) - mean;
        const uint64_t a = (uint64_t)(d >= 0 ? d : -d);
        amax = a > amax ? a : amax;
    }
    const int32_t bl = tsl_bitlen64(amax), sh = bl > 15 ? bl - 15 : 0;
    const int64_t half = sh ? (int64_t)1 << (sh - 1) : 0;
    uint64_t ss = 0;
    for (int32_t i = 0; i < n; i++) {
        const int64_t u = ((int64_t)x[i] * (1 << TSL_INX) - mean + half) >> sh;
        ss += (uint64_t)(u * u);
    }
    /* Mean square + eps at the same scale, to [2^60, 2^62) by 4^j: 1 / rms = 2^j / isqrt. */
    const uint64_t ms = ss / (uint64_t)n + (((uint64_t)eps_q << (2 * TSL_INX)) >> (2 * sh));
    if (ms == 0) {
        for (int32_t i = 0; i < n; i++) y[i] = b ? b[i] : 0;
        return;
    }
    const int32_t j = (62 - tsl_bitlen64(ms)) / 2;
    const int64_t inv = (int64_t)((((uint64_t)1 << 62) - 1) / tsl_isqrt64(ms << (2 * j)));
    const int32_t rz = 62 - TSL_IQZ - j, rg = TSL_IQZ + gq - TSL_IQ;
    for (int32_t i = 0; i < n; i++) {
        const int64_t u = ((int64_t)x[i] * (1 << TSL_INX) - mean + half) >> sh;
        const int64_t z = (u * inv + ((int64_t)1 << (rz - 1))) >> rz;
        int64_t v = tsl_sat_s32((z * g[i] + ((int64_t)1 << (rg - 1))) >> rg);
        if (b) v = tsl_sat_s32(v + b[i]);
        y[i] = (int32_t)v;
    }
}

void tsl_iheadnorm(int32_t *x, const int32_t *g, int32_t gq, const int32_t *b, uint32_t eps_q,
                   int32_t n_heads, int32_t hs, int32_t layer)
{
    for (int32_t h = 0; h < n_heads; h++) {
        int32_t *xh = x + (intptr_t)h * hs;
        tsl_inorm(xh, g, gq, layer ? b : 0, eps_q, xh, hs, layer);
    }
}

void tsl_imatvec_s8(const int8_t *x, const int32_t *amax, const int8_t *w, const int32_t *wfx,
                    const int32_t *bias, int32_t *dst, int32_t N, int32_t K, int32_t accumulate)
{
    int32_t acc[TSL_IROW_BLOCK];
    const tsl_fx sx = tsl_istep(*amax);
    for (int32_t n0 = 0; n0 < N; n0 += TSL_IROW_BLOCK) {
        const int32_t nb = N - n0 < TSL_IROW_BLOCK ? N - n0 : TSL_IROW_BLOCK;
        tsl_matvec_s8_s32(x, w + (intptr_t)n0 * K, acc, nb, K);
        tsl_epilogue_q(acc, sx, wfx + 2 * n0, bias ? bias + n0 : 0, dst + n0, nb, accumulate);
    }
}

void tsl_imatvec_s4(const int8_t *x, const int32_t *amax, const uint8_t *w, const int8_t *gs, const int32_t *wfx,
                    const int32_t *bias, int32_t *dst, int32_t N, int32_t K, int32_t accumulate)
{
    int32_t acc[TSL_IROW_BLOCK];
    const tsl_fx sx = tsl_istep(*amax);
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t n0 = 0; n0 < N; n0 += TSL_IROW_BLOCK) {
        const int32_t nb = N - n0 < TSL_IROW_BLOCK ? N - n0 : TSL_IROW_BLOCK;
        tsl_matvec_s4_s32(x, w + (intptr_t)n0 * (K / 2), gs + (intptr_t)n0 * G, acc, nb, K);
        tsl_epilogue_q(acc, sx, wfx + 2 * n0, bias ? bias + n0 : 0, dst + n0, nb, accumulate);
    }
}

void tsl_imatvec_s4nl(const int8_t *x, const int32_t *amax, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                      const int32_t *wfx, const int32_t *bias, int32_t *dst, int32_t N, int32_t K, int32_t accumulate)
{
    int32_t acc[TSL_IROW_BLOCK];
    const tsl_fx sx = tsl_istep(*amax);
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t n0 = 0; n0 < N; n0 += TSL_IROW_BLOCK) {
        const int32_t nb = N - n0 < TSL_IROW_BLOCK ? N - n0 : TSL_IROW_BLOCK;
        tsl_matvec_s4nl_s32(x, w + (intptr_t)n0 * (K / 2), kv, gs + (intptr_t)n0 * G, acc, nb, K);
        tsl_epilogue_q(acc, sx, wfx + 2 * n0, bias ? bias + n0 : 0, dst + n0, nb, accumulate);
    }
}

void tsl_imatvec_s5nl(const int8_t *x, const int32_t *amax, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                      const int32_t *wfx, const int32_t *bias, int32_t *dst, int32_t N, int32_t K, int32_t accumulate)
{
    int32_t acc[TSL_IROW_BLOCK];
    const tsl_fx sx = tsl_istep(*amax);
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t n0 = 0; n0 < N; n0 += TSL_IROW_BLOCK) {
        const int32_t nb = N - n0 < TSL_IROW_BLOCK ? N - n0 : TSL_IROW_BLOCK;
        tsl_matvec_s5nl_s32(x, w + (intptr_t)n0 * G * 20, kv, gs + (intptr_t)n0 * G, acc, nb, K);
        tsl_epilogue_q(acc, sx, wfx + 2 * n0, bias ? bias + n0 : 0, dst + n0, nb, accumulate);
    }
}

#define TSL_ROPE_SPAN 32            /* pairs whose cos, sin rows sit on the stack at a time */

/* pairs j0 .. j0 + n - 1 of every head (of rot / 2 = half) rotated by Q15 cs, sn [n] */
static void tsl_irope_span(int32_t *v, int32_t n_heads, int32_t hs, int32_t half, int32_t j0, int32_t n,
                           const int32_t *cs, const int32_t *sn, int32_t interleaved)
{
    for (int32_t h = 0; h < n_heads; h++) {
        int32_t *p = v + h * hs;
        for (int32_t k = 0; k < n; k++) {
            const int32_t i = j0 + k;
            const int32_t i0 = interleaved ? 2 * i : i;
            const int32_t i1 = interleaved ? 2 * i + 1 : i + half;
            const int64_t a = p[i0], b = p[i1], c = cs[k], s = sn[k];
            p[i0] = tsl_sat_s32((a * c - b * s + (1 << 14)) >> 15);
            p[i1] = tsl_sat_s32((b * c + a * s + (1 << 14)) >> 15);
        }
    }
}

void tsl_irope(int32_t *v, int32_t n_heads, int32_t hs, int32_t rot, const int16_t *cs, const int16_t *sn,
               int32_t interleaved)
{
    int32_t c[TSL_ROPE_SPAN], s[TSL_ROPE_SPAN];
    const int32_t half = rot / 2;
    for (int32_t j0 = 0; j0 < half; j0 += TSL_ROPE_SPAN) {
        const int32_t n = half - j0 < TSL_ROPE_SPAN ? half - j0 : TSL_ROPE_SPAN;
        for (int32_t k = 0; k < n; k++) c[k] = cs[j0 + k], s[k] = sn[j0 + k];
        tsl_irope_span(v, n_heads, hs, half, j0, n, c, s, interleaved);
    }
}

void tsl_irope_split(int32_t *v, int32_t n_heads, int32_t hs, int32_t rot, const int32_t *cos_hi,
                     const int32_t *sin_hi, const int16_t *cos_lo, const int16_t *sin_lo, int32_t interleaved)
{
    int32_t cs[TSL_ROPE_SPAN], sn[TSL_ROPE_SPAN];
    const int32_t half = rot / 2;
    for (int32_t j0 = 0; j0 < half; j0 += TSL_ROPE_SPAN) {
        const int32_t n = half - j0 < TSL_ROPE_SPAN ? half - j0 : TSL_ROPE_SPAN;
        for (int32_t k = 0; k < n; k++) {
            const int64_t ch = cos_hi[j0 + k], sh = sin_hi[j0 + k], cl = cos_lo[j0 + k], sl = sin_lo[j0 + k];
            cs[k] = (int32_t)((ch * cl - sh * sl + (1 << 14)) >> 15);
            sn[k] = (int32_t)((sh * cl + ch * sl + (1 << 14)) >> 15);
        }
        tsl_irope_span(v, n_heads, hs, half, j0, n, cs, sn, interleaved);
    }
}

void tsl_ikv_store_s8(const int32_t *x, int8_t *cache, int32_t *scale, int32_t n_heads, int32_t hs,
                      int32_t max_seq, int32_t pos)
{
    for (int32_t h = 0; h < n_heads; h++) {
        const intptr_t row = (intptr_t)h * max_seq + pos % max_seq;
        scale[row] = tsl_iquant_s8(x + h * hs, cache + row * hs, hs);
    }
}

/* e^d in Q15, d <= 0 in Q20: 2^(d log2 e) = 2^n * 2^f, 2^f by a degree-4 polynomial in Q30. */
static int32_t tsl_iexp(int64_t d)
{
    if (d < -((int64_t)32 << TSL_IQS)) d = -((int64_t)32 << TSL_IQS);
    const int64_t t = (d * 1549082005) >> 30;
    const int64_t n = t >> TSL_IQS;
    const int64_t f = (t - (n << TSL_IQS)) << (30 - TSL_IQS);
    int64_t p = 14693065;
    p = ((p * f) >> 30) + 55531496;
    p = ((p * f) >> 30) + 259438920;
    p = ((p * f) >> 30) + 744070390;
    p = ((p * f) >> 30) + 1073745686;
    const int32_t rs = (int32_t)(15 - n);
    return (int32_t)((p + ((int64_t)1 << (rs - 1))) >> rs);
}

/* gate(x) in Q15 for x in Q16: the table, linear in between; 0 below it, 32768 above */
static int32_t tsl_gate_q15(int32_t x, const uint16_t *gate)
{
    const int32_t lo = -(16 << TSL_IQ), sh = TSL_IQ - 5;
    if (x < lo) return 0;
    if (x >= (16 << TSL_IQ)) return 32768;
    const int32_t t = x - lo, i = t >> sh, fr = t & ((1 << sh) - 1);
    return gate[i] + ((((int32_t)gate[i + 1] - (int32_t)gate[i]) * fr + (1 << (sh - 1))) >> sh);
}

/* x * gate(x), Q16; gate NULL: ReLU */
static int64_t tsl_igate(int32_t x, const uint16_t *gate)
{
    if (!gate) return x > 0 ? x : 0;
    if (x >= (16 << TSL_IQ)) return x;
    return ((int64_t)x * tsl_gate_q15(x, gate) + (1 << 14)) >> 15;
}

/* cap * tanh(x / cap) = cap * (2 sigma(2 x / cap) - 1); cap: {m, s} of 2 / cap (to Q16), {m, s} of
 * cap (from Q15), sig the sigmoid table */
static int32_t tsl_isoftcap1(int32_t x, const int32_t *cap, const uint16_t *sig)
{
    const int32_t t = 2 * tsl_gate_q15(tsl_requant_sat(x, cap[0], cap[1]), sig) - 32768;
    return tsl_requant_sat(t, cap[2], cap[3]);
}

void tsl_isoftcap(int32_t *x, int32_t n, const int32_t *cap, const uint16_t *sig)
{
    for (int32_t i = 0; i < n; i++) x[i] = tsl_isoftcap1(x[i], cap, sig);
}

int32_t tsl_iattention_s8(const int32_t *q, const int8_t *kc, const int32_t *ks, const int8_t *vc,
                          const int32_t *vs, int8_t *out, int32_t n_heads, int32_t n_kv, int32_t hs,
                          int32_t max_seq, int32_t pos, int32_t sc_m, int32_t sc_s, const int32_t *cap,
                          const uint16_t *sig, const int32_t *alibi, int8_t *qq, int32_t *sc, int32_t *pw,
                          int32_t *acc, int32_t *ch)
{
    const int32_t group = n_heads / n_kv;
    const int32_t T = pos + 1 < max_seq ? pos + 1 : max_seq;      /* visible slots [0, T) */
    const tsl_fx scf = {sc_m, sc_s};
    int32_t amax = 0;
    for (int32_t h = 0; h < n_heads; h++) {
        const intptr_t g = h / group;
        const int8_t *k = kc + g * max_seq * hs;
        const int8_t *v = vc + g * max_seq * hs;
        const int32_t *kss = ks + g * max_seq, *vss = vs + g * max_seq;

        /* Scores in Q20: the int8 matvec over the cached keys, each by its key's step. */
        const int32_t aq = tsl_iquant_s8(q + h * hs, qq, hs);
        const tsl_fx cs = tsl_fx_mul(tsl_fx_norm((uint64_t)aq, 0), scf);
        tsl_matvec_s8_s32(qq, k, pw, T, hs);
        int32_t mx = 0;
        for (int32_t t = 0; t < T; t++) {
            const tsl_fx f = tsl_fx_mul(cs, tsl_fx_norm((uint64_t)kss[t], 0));
            sc[t] = tsl_requant_sat(pw[t], f.m, f.s);
            if (cap) sc[t] = tsl_isoftcap1(sc[t], cap, sig);
            if (alibi) sc[t] = tsl_sat_s32((int64_t)sc[t] - (int64_t)alibi[h] * ((pos - t) % max_seq));
            mx = (t == 0 || sc[t] > mx) ? sc[t] : mx;
        }
        /* Numerators e_t (Q15) and their sums, with the value scales folded in. */
        int64_t E = 0, W = 0;
        for (int32_t t = 0; t < T; t++) {
            sc[t] = tsl_iexp((int64_t)sc[t] - mx);
            E += sc[t];
            W += (int64_t)sc[t] * vss[t];
        }
        /* Q15 weights p_t = w_t * 32768 / W. */
        int32_t *a = acc + h * hs;
        tsl_fx c = {0, 0};
        if (W > 0) {
            const int32_t bw = tsl_bitlen64((uint64_t)W), sh = bw > 31 ? bw - 31 : 0;
            const tsl_fx r = tsl_fx_recip(tsl_fx_norm((uint64_t)(W >> sh), 0));
            for (int32_t t = 0; t < T; t++)
                pw[t] = tsl_requant_sat((int32_t)(((int64_t)sc[t] * vss[t]) >> sh), r.m, r.s + 15);
            c = tsl_fx_mul(tsl_fx_mul(tsl_fx_norm((uint64_t)W, -15), tsl_fx_recip(tsl_fx_norm((uint64_t)E, 0))),
                           TSL_FX_INV127);
        } else {
            for (int32_t t = 0; t < T; t++) pw[t] = 0;
        }
        /* Weighted values (exact integer sums). */
        for (int32_t i = 0; i < hs; i++) a[i] = 0;
        for (int32_t t = 0; t < T; t++) {
            const int8_t *vt = v + (intptr_t)t * hs;
            const int32_t pt = pw[t];
            for (int32_t i = 0; i < hs; i++) a[i] += pt * (int32_t)vt[i];
        }
        ch[2 * h] = c.m;
        ch[2 * h + 1] = c.s;
        const int32_t m = tsl_requant_sat(tsl_iamax(a, hs), c.m, c.s);
        amax = m > amax ? m : amax;
    }
    /* Requantize all heads to one int8 scale word. */
    tsl_fx r = {0, 0};
    if (amax > 0) r = tsl_fx_mul(TSL_FX127, tsl_fx_recip(tsl_fx_norm((uint64_t)amax, 0)));
    for (int32_t h = 0; h < n_heads; h++) {
        const tsl_fx c = {ch[2 * h], ch[2 * h + 1]};
        const tsl_fx f = tsl_fx_mul(c, r);
        for (int32_t i = 0; i < hs; i++)
            out[h * hs + i] = amax > 0 ? tsl_sat127(tsl_requant_sat(acc[h * hs + i], f.m, f.s)) : 0;
    }
    return amax;
}

void tsl_iadd(int32_t *x, const int32_t *y, int32_t n)
{
    for (int32_t i = 0; i < n; i++) x[i] = tsl_sat_s32((int64_t)x[i] + y[i]);
}


void tsl_iact(const int32_t *x, int32_t *y, int32_t n, const uint16_t *gate)
{
    for (int32_t i = 0; i < n; i++) y[i] = (int32_t)tsl_igate(x[i], gate);
}

void tsl_iglu(const int32_t *g, const int32_t *u, int32_t *h, int32_t n, const uint16_t *gate)
{
    for (int32_t i = 0; i < n; i++)
        h[i] = tsl_sat_s32((tsl_igate(g[i], gate) * u[i] + (1 << (TSL_IQ - 1))) >> TSL_IQ);
}

void tsl_ito_f32(const int32_t *x, uint32_t *y, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        const uint32_t sign = x[i] < 0 ? 0x80000000u : 0u;
        uint32_t a = (uint32_t)(x[i] < 0 ? -(int64_t)x[i] : x[i]);
        if (!a) { y[i] = 0; continue; }
        int32_t bl = tsl_bitlen64(a);
        uint32_t m;
        if (bl <= 24) {
            m = a << (24 - bl);
        } else {           /* round to 24 bits, half to even */
            const int32_t s = bl - 24;
            const uint32_t rem = a & ((1u << s) - 1u), half = 1u << (s - 1);
            m = a >> s;
            if (rem > half || (rem == half && (m & 1u))) m++;
            if (m == (1u << 24)) { m >>= 1; bl++; }
        }
        y[i] = sign | ((uint32_t)(bl - 1 - TSL_IQ + 127) << 23) | (m & 0x7FFFFFu);
    }
}
