"""numpy mirror of firmware/tsl_numerics.h and the float kernels: the numerics specification.

Every function here computes the same bits as its C twin. Elementwise float32 ops are IEEE-exact
in both; reductions are sequential (np.add.accumulate), never numpy's pairwise sum.
"""
import numpy as np

f32 = np.float32


def seqsum(x, axis=-1):
    """Sum in index order, float32, like a C loop `s = s + x[i]` starting from 0."""
    x = np.asarray(x, dtype=f32)
    if x.shape[axis] == 0:
        return np.zeros(np.delete(x.shape, axis), f32)
    return np.add.accumulate(x, axis=axis, dtype=f32).take(-1, axis=axis)


def requant(x, mult, shift):
    """tsl_requant: round(x * mult * 2^(shift-31)), half towards +inf. Returns int64."""
    rs = 31 - np.asarray(shift, np.int64)
    p = np.asarray(x, np.int64) * np.asarray(mult, np.int64)
    return (p + (np.int64(1) << (rs - 1))) >> rs


def sat_s8(v):
    return np.clip(v, -128, 127).astype(np.int8)


def requant_s8(x, mult, shift):
    return sat_s8(requant(x, mult, shift))


def round_f32(v):
    """tsl_round_f32: half away from zero, |v| < 2^23. Returns int32."""
    v = np.asarray(v, f32)
    i = v.astype(np.int32)
    f = v - i.astype(f32)
    return (i + (f >= f32(0.5)) - (f <= f32(-0.5))).astype(np.int32)


def quant_f32(v):
    """tsl_quant_f32: clamp to [-127, 127], round half away from zero."""
    return round_f32(np.clip(np.asarray(v, f32), f32(-127), f32(127))).astype(np.int8)


def multiplier(r):
    """tsl_multiplier: float32 r > 0 -> (mult, shift) read off its bits, exact."""
    b = int(np.asarray(r, f32).view(np.uint32))
    e = ((b >> 23) & 0xFF) - 126
    if e < -31:
        return 0, 0
    return ((b & 0x7FFFFF) | 0x800000) << 7, min(e, 30)


def rsqrt(x):
    x = np.asarray(x, f32)
    h = f32(0.5) * x
    y = (np.uint32(0x5F375A86) - (x.view(np.uint32) >> np.uint32(1))).astype(np.uint32).view(f32)
    for _ in range(3):
        y = y * (f32(1.5) - (h * y) * y)
    return y


_EXP_POLY = [1.5403530e-4, 1.3333558e-3, 9.6181291e-3, 5.5504109e-2, 2.4022651e-1, 6.9314718e-1, 1.0]


def exp_neg(x):
    x = np.minimum(np.asarray(x, f32), f32(0))
    t = x * f32(1.44269504)
    n = t.astype(np.int32)
    n = np.where(n.astype(f32) > t, n - 1, n)
    f = t - n.astype(f32)
    p = np.full_like(f, f32(_EXP_POLY[0]))
    for c in _EXP_POLY[1:]:
        p = p * f + f32(c)
    scale = (np.clip(n + 127, 1, 254).astype(np.uint32) << np.uint32(23)).view(f32)
    return np.where(x < f32(-87), f32(0), p * scale).astype(f32)


def silu(x):
    x = np.asarray(x, f32)
    e = exp_neg(np.where(x >= 0, -x, x))
    return np.where(x >= 0, x / (f32(1) + e), (x * e) / (f32(1) + e)).astype(f32)


def tanh(z):
    z = np.asarray(z, f32)
    a = np.abs(z)
    e = exp_neg(f32(-2) * a)
    t = (f32(1) - e) / (f32(1) + e)
    return np.where(z >= 0, t, -t).astype(f32)


def gelu_tanh(x):
    x = np.asarray(x, f32)
    u = f32(0.7978845608) * (x + ((f32(0.044715) * x) * x) * x)
    return (f32(0.5) * x) * (f32(1) + tanh(u))


def gelu_erf(x):
    x = np.asarray(x, f32)
    z = x * f32(0.70710678)
    a = np.abs(z)
    t = f32(1) / (f32(1) + f32(0.3275911) * a)
    p = np.full_like(t, f32(1.061405429))
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        p = p * t + f32(c)
    erf_a = f32(1) - (p * t) * exp_neg(-(a * a))
    erf_z = np.where(z >= 0, erf_a, -erf_a)
    return (f32(0.5) * x) * (f32(1) + erf_z)


def relu(x):
    x = np.asarray(x, f32)
    return np.where(x > 0, x, f32(0)).astype(f32)


ACTS = {"silu": 0, "gelu_tanh": 1, "gelu_erf": 2, "relu": 3}     # TSL_ACT_* codes


def act(x, code):
    return (silu, gelu_tanh, gelu_erf, relu)[code](x)


def softcap(x, cap):
    """tsl_softcap_f32: cap * tanh(x / cap)"""
    return (f32(cap) * tanh(np.asarray(x, f32) / f32(cap))).astype(f32)


# ---- the randomized block Walsh-Hadamard rotation (firmware/tsl_fwht_f32.c) ----
# y = H D x: D the signs of a stored bit table (bit i of byte i / 8, least significant first: 1 negates
# x_i), H block-diagonal Sylvester Hadamard matrices of `block` (a power of two) entries, unnormalized.
# H = H^T and H H^T = block * I, so a weight W reading x reads y as W D H / block (quantize.rotate_cols).

def sign_bits(bits, n):
    """packed sign table uint8 [ceil(n / 8)] -> bool [n], True: negated"""
    return np.unpackbits(np.asarray(bits, np.uint8), bitorder="little")[:n].astype(bool)


def butterflies(v, block):
    """Unnormalized Walsh-Hadamard butterflies along the last axis, in blocks of `block`, in the
    order of tsl_fwht_f32: stages h = 1, 2, 4, ..., block / 2; at each, x[j], x[j + h] <-
    x[j] + x[j + h], x[j] - x[j + h] for j with bit h clear. One add or subtract per element and
    stage, in v's dtype (float32: the spec's bits; float64: the compiler's folding)."""
    sh = v.shape
    h = 1
    while h < block:
        v = v.reshape(-1, 2, h)
        v = np.stack([v[:, 0] + v[:, 1], v[:, 0] - v[:, 1]], axis=1)
        h *= 2
    return v.reshape(sh)


def fwht(x, block, bits):
    """tsl_fwht_f32: x float32 [n] -> H D x, float32 add/sub only (n a multiple of block)."""
    x = np.asarray(x, f32)
    return butterflies(np.where(sign_bits(bits, x.shape[-1]), -x, x).astype(f32), block)


# ---- float kernels (tsl_norm_f32.c, tsl_elementwise_f32.c) ----

def quant_dynamic(x):
    """-> (q int8, scale float32); tsl_quant_dynamic_f32."""
    x = np.asarray(x, f32)
    amax = np.max(np.abs(x)) if x.size else f32(0)
    if amax == 0:
        return np.zeros(x.shape, np.int8), f32(0)
    return quant_f32(x * (f32(127) / amax)), f32(amax / f32(127))


def rmsnorm(x, g, eps):
    ss = seqsum(x * x)
    r = rsqrt(ss / f32(x.shape[-1]) + f32(eps))
    return (x * r) * g


def layernorm(x, g, b, eps):
    n = f32(x.shape[-1])
    mean = seqsum(x) / n
    d = x - mean
    r = rsqrt(seqsum(d * d) / n + f32(eps))
    return ((d * r) * g) + b


def rope_row(ch, sh, cl, sl):
    """tsl_rope_split_f32's cos, sin [rot/2] of position j * S + r from hi row j and lo row r
    (model.rope_split_tables), float32 in this order: cos = ch cl - sh sl, sin = sh cl + ch sl."""
    ch, sh, cl, sl = (np.asarray(t, f32) for t in (ch, sh, cl, sl))
    return ch * cl - sh * sl, sh * cl + ch * sl


def rope(v, n_heads, hs, rot, cs, sn, interleaved):
    v = v.reshape(n_heads, hs).copy()
    half = rot // 2
    i0 = np.arange(half) * 2 if interleaved else np.arange(half)
    i1 = i0 + 1 if interleaved else i0 + half
    a, b = v[:, i0], v[:, i1]
    v[:, i0] = a * cs - b * sn
    v[:, i1] = b * cs + a * sn
    return v.reshape(-1)


def epilogue(acc, sx, ws, bias=None, dst=None):
    """tsl_matvec_*_f32 epilogue: ((float)acc * sx) * ws (+ bias) (+ dst)."""
    v = (np.asarray(acc, np.int32).astype(f32) * f32(sx)) * ws
    if bias is not None:
        v = v + bias
    return v if dst is None else dst + v


def matvec_s8_s32(x, w):
    """w [N, K] int8, x [K] int8 -> int32 [N]; exact in int64."""
    return (w.astype(np.int64) @ x.astype(np.int64)).astype(np.int32)


def unpack_s4(w4, K):
    """[N, K/2] bytes, even k in the low nibble -> int8 [N, K]."""
    lo = (w4.astype(np.int8) << 4).astype(np.int8) >> 4
    hi = w4.astype(np.int8) >> 4
    out = np.empty((w4.shape[0], K), np.int8)
    out[:, 0::2], out[:, 1::2] = lo, hi
    return out


def matvec_s4_s32(x, w4, gs, group):
    """acc_n = sum_g gs[n, g] * (w4[n, g] . x[g])."""
    w = unpack_s4(w4, x.shape[0]).astype(np.int64).reshape(w4.shape[0], -1, group)
    part = np.einsum("ngk,gk->ng", w, x.astype(np.int64).reshape(-1, group))
    return (part * gs.astype(np.int64)).sum(1).astype(np.int32)


def matvec_s4nl_s32(x, w4, kv, gs, group):
    """acc_n = sum_g gs[n, g] * (kv[c[n, g]] . x[g]), c the unsigned nibbles of w4 (even k low), kv
    the tensor's 16 int8 levels (tinyslm/int4nl.py)."""
    return matvec_nl_s32(x, w4, kv, gs, group)


def matvec_nl_s32(x, wc, kv, gs, group):
    """acc_n = sum_g gs[n, g] * (kv[c[n, g]] . x[g]): s4nl (kv 16 levels, wc the nibbles [N, K/2]) or
    s5nl (32 levels, wc [N, 5K/8]: per group 16 nibble bytes and the fifth bits, int4nl.codes)."""
    from .int4nl import codes
    w = kv.astype(np.int64)[codes(wc, len(kv))].reshape(wc.shape[0], -1, group)
    part = np.einsum("ngk,gk->ng", w, x.astype(np.int64).reshape(-1, group))
    return (part * gs.astype(np.int64)).sum(1).astype(np.int32)


def attention(q, kc, ks, vc, vs, pos, scale, softcap_=0.0, alibi=None):
    """tsl_attention_s8 -> (out int8 [H*hs], out scale). kc, vc [n_kv, S, hs] int8; ks, vs [n_kv, S]:
    a ring of S slots, position t in slot t % S; the last min(pos + 1, S) positions are visible."""
    accs, chs, amax = _attention_heads(q, kc, ks, vc, vs, pos, scale, softcap_, alibi)
    hs = kc.shape[2]
    out = np.zeros(len(accs) * hs, np.int8)
    for h in range(len(accs)):
        if amax > 0:
            m, s = multiplier(f32(chs[h] * f32(127)) / amax)
            out[h * hs:(h + 1) * hs] = requant_s8(accs[h], m, s)
    return out, f32(amax / f32(127))


def attention_f32(q, kc, ks, vc, vs, pos, scale, softcap_=0.0, alibi=None):
    """tsl_attention_f32 -> out float32 [H*hs], head h's acc * c_h (as attention, unquantized)"""
    accs, chs, _ = _attention_heads(q, kc, ks, vc, vs, pos, scale, softcap_, alibi)
    return np.concatenate([a.astype(f32) * c for a, c in zip(accs, chs)]).astype(f32)


def _attention_heads(q, kc, ks, vc, vs, pos, scale, softcap_, alibi):
    """-> (acc int32 [hs] per head, c_h float32 per head, max_h max|acc| c_h): tsl_attention_heads_s8"""
    n_kv, S, hs = kc.shape
    H = q.shape[0] // hs
    group = H // n_kv
    T = min(pos + 1, S)
    order = ((pos + 1 - T) + np.arange(T)) % S           # slots in position order
    rel = (-((pos - np.arange(T)) % S)).astype(f32)       # key position - pos, per slot
    accs, chs, amax = [], [], f32(0)
    for h in range(H):
        g = h // group
        qq, sq = quant_dynamic(q[h * hs:(h + 1) * hs])
        sq = f32(sq * f32(scale))
        a = matvec_s8_s32(qq, kc[g, :T])
        sc = (a.astype(f32) * ks[g, :T]) * sq
        if softcap_:
            sc = softcap(sc, softcap_)
        if alibi is not None:
            sc = (sc + f32(alibi[h]) * rel).astype(f32)
        e = exp_neg(sc - sc.max())
        E = seqsum(e[order])
        w = e * vs[g, :T]
        W = seqsum(w[order])
        inv = f32(32768) / W if W > 0 else f32(0)
        p = round_f32(w * inv).astype(np.int64)
        acc = (p @ vc[g, :T].astype(np.int64)).astype(np.int32)
        ch = f32(W / (f32(32768) * E))
        amax = max(amax, f32(f32(np.abs(acc).max()) * ch))
        accs.append(acc)
        chs.append(ch)
    return accs, chs, amax


# ---- the integer path's scale arithmetic (tsl_numerics.h, tsl_fx_*): Python ints, exact ----
# A scale is a (mult, shift) pair as tsl_multiplier makes them: r = mult * 2^(shift - 31), mult in
# [2^30, 2^31), or (0, 0) for r == 0. Applied by requant_sat; every shift toward zero truncates.

I32 = (1 << 31) - 1


def requant_sat(x, mult, shift):
    """tsl_requant_sat: tsl_requant's rounding with 31 - shift clamped to [1, 62], saturated to
    [-(2^31 - 1), 2^31 - 1]. x, mult, shift broadcast; returns int64."""
    rs = np.clip(31 - np.asarray(shift, np.int64), 1, 62)
    p = np.asarray(x, np.int64) * np.asarray(mult, np.int64)
    return np.clip((p + (np.int64(1) << (rs - 1))) >> rs, -I32, I32)


def fx_norm(v, e=0):
    """tsl_fx_norm: v * 2^e, v an integer in [0, 2^63) -> (mult, shift), mult truncated to 31 bits."""
    v = int(v)
    if v <= 0:
        return 0, 0
    b = v.bit_length()
    return (v >> (b - 31) if b > 31 else v << (31 - b)), e + b


def fx_mul(a, b):
    """tsl_fx_mul: a * b, a and b normalized (or zero): the product has 61 or 62 bits"""
    if a[0] == 0 or b[0] == 0:
        return 0, 0
    p = a[0] * b[0]
    top = p >> 61
    return p >> (30 + top), a[1] + b[1] - 1 + top


def fx_recip(a):
    """tsl_fx_recip: 1 / a (a != 0): floor((2^62 - 1) / mult), normalized"""
    return fx_norm(((1 << 62) - 1) // a[0], -31 - a[1])


def fx_const(r):
    """A compile-time scale from a float r >= 0 (float64): mult = floor(f * 2^31), r = f * 2^e."""
    f, e = np.frexp(np.float64(r))
    return (0, 0) if f == 0 else (int(np.floor(f * 2.0 ** 31)), int(e))


def fx_mul_rows(a, fx):
    """fx_mul(a, (m, s)) for each row of fx int [N, 2] -> (mult int64 [N], shift int64 [N])"""
    m, s = np.asarray(fx, np.int64)[:, 0], np.asarray(fx, np.int64)[:, 1]
    if a[0] == 0:
        return np.zeros_like(m), np.zeros_like(m)
    p = np.int64(a[0]) * m                      # both in [2^30, 2^31): p in [2^60, 2^62), or 0
    b = np.where(p >= np.int64(1) << 61, 62, 61)
    return np.where(m > 0, p >> (b - 31), 0), np.where(m > 0, a[1] + s - 62 + b, 0)
