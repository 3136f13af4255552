"""numpy mirror of firmware/tsl_int_ops.c: the integer-only decode step's kernels, bit for bit.

Activations are int32 fixed point with Q = 16 fractional bits (real = v * 2^-16), saturated to
+-(2^31 - 1). A quantized vector carries one scale word, amax = max |v|: its int8 step is amax / 127.
Scales are (mult, shift) pairs (numerics.fx_*), applied by numerics.requant_sat: one rounding rule.
Per-element work is numpy int64 (every product stays below 2^63); per-vector scalars are Python ints.
"""
import math

import numpy as np

from .numerics import I32, fx_mul, fx_mul_rows, fx_norm, fx_recip, requant_sat, sign_bits

Q = 16                                   # TSL_IQ: fractional bits of every int32 activation
QS = 20                                  # TSL_IQS: fractional bits of the attention scores
QZ = 22                                  # fractional bits of a normalized value inside the norms
NX = 4                                   # extra fractional bits of the norms' deviations (mean in Q20)
FX127 = (2130706432, 7)                  # fx_const(127)
FX_INV127 = (1082196484, -6)             # fx_const(1 / 127)
LOG2E_Q30 = 1549082005                   # round(log2(e) * 2^30)
EXP2_Q30 = (14693065, 55531496, 259438920, 744070390, 1073745686)   # 2^f on [0, 1), degree 4, Horner (|err| < 4e-6)
GATE_LO, GATE_LOG2_STEP, GATE_N = -16, 5, 1024    # gate tables: x in [-16, 16) in steps of 1/32, 1025 entries
S4_GROUP = 32                            # TSL_S4_GROUP: int4 weights per int8 group scale (quantize.GROUP)
EXP_FLOOR = -(32 << QS)                  # scores below max - 32 weigh e^-32: 0 in Q15


def sat32(v):
    return np.clip(np.asarray(v, np.int64), -I32, I32)


def sat127(v):
    return np.clip(np.asarray(v, np.int64), -127, 127).astype(np.int8)


def step(amax):
    """the int8 step of a vector quantized with this amax, in Q16 units: amax / 127"""
    return fx_mul(fx_norm(amax), FX_INV127)


def quant(x):
    """tsl_iquant_s8: x int32 -> (q int8 = round(x * 127 / amax), amax)."""
    x = np.asarray(x, np.int64)
    amax = int(np.abs(x).max()) if x.size else 0
    if amax == 0:
        return np.zeros(x.shape, np.int8), 0
    r = fx_mul(FX127, fx_recip(fx_norm(amax)))
    return sat127(requant_sat(x, *r)), amax


def dequant_sub(x, q, amax):
    """tsl_idequant_sub: x - q * step(amax)"""
    return sat32(np.asarray(x, np.int64) - requant_sat(q, *step(amax)))


def fwht(x, block, bits):
    """tsl_ifwht: the rotation of numerics.fwht on Q16 words, each butterfly halved and rounded half
    up, (a + b + 1) >> 1 and (a - b + 1) >> 1 (int64 sums): y ~= H D x / block, and |y| <= max |x|,
    so the words never overflow. quantize's weights read H D x / block, as they do here."""
    x = np.asarray(x, np.int64)
    v = np.where(sign_bits(bits, x.shape[-1]), -x, x)
    h = 1
    while h < block:
        v = v.reshape(-1, 2, h)
        v = np.stack([(v[:, 0] + v[:, 1] + 1) >> 1, (v[:, 0] - v[:, 1] + 1) >> 1], axis=1)
        h *= 2
    return v.reshape(x.shape)


def embed(table_row, fx_row):
    """tsl_iembed_s8: one row of int8 times its scale (fx_row: scale * 2^Q)"""
    return requant_sat(table_row, *fx_row)


def norm(x, g, gq, b, eps_q, layer):
    """tsl_inorm: RMSNorm (layer = 0) or LayerNorm of x int32 [n]. g int32 = round(gain * 2^gq);
    b int32 Q16 or None; eps_q = round(eps * 2^32). The deviation (Q20) is scaled to 15 bits, its mean
    square (plus eps at that scale) to [2^60, 2^62) by 4^j, floor-square-rooted (math.isqrt) and
    inverted: z = u / rms in Q22, y = z * g."""
    x = np.asarray(x, np.int64)
    n = x.shape[0]
    mean = 0
    if layer:
        s = int(x.sum()) << NX
        mean = abs(s) // n * (1 if s >= 0 else -1)        # C: truncation toward zero
    d = (x << NX) - mean
    bl = int(np.abs(d).max()).bit_length()
    sh = max(0, bl - 15)
    u = (d + ((1 << (sh - 1)) if sh else 0)) >> sh
    ms = int((u * u).sum()) // n + ((eps_q << (2 * NX)) >> (2 * sh))
    y = np.zeros(n, np.int64)
    if ms:
        j = (62 - ms.bit_length()) // 2
        inv = ((1 << 62) - 1) // math.isqrt(ms << (2 * j))
        rz = 62 - QZ - j
        z = (u * inv + (1 << (rz - 1))) >> rz
        rg = QZ + gq - Q
        y = sat32((z * np.asarray(g, np.int64) + (1 << (rg - 1))) >> rg)
    return y if b is None else sat32(y + np.asarray(b, np.int64))


def rope_row(ch, sh, cl, sl):
    """tsl_irope_split's Q15 cos, sin [rot/2] from hi row j (int32 Q15, may exceed 1: mscale) and lo
    row r (int16 Q15): (ch cl - sh sl + 2^14) >> 15 and (sh cl + ch sl + 2^14) >> 15 in int64."""
    ch, sh, cl, sl = (np.asarray(t, np.int64) for t in (ch, sh, cl, sl))
    return (ch * cl - sh * sl + (1 << 14)) >> 15, (sh * cl + ch * sl + (1 << 14)) >> 15


def rope(v, n_heads, hs, rot, cs, sn, interleaved):
    """tsl_irope: cs, sn Q15 [rot / 2] (int16, or rope_row's int64)"""
    v = np.asarray(v, np.int64).reshape(n_heads, hs).copy()
    half = rot // 2
    i0 = np.arange(half) * 2 if interleaved else np.arange(half)
    i1 = i0 + 1 if interleaved else i0 + half
    a, b = v[:, i0], v[:, i1]
    c, s = np.asarray(cs, np.int64), np.asarray(sn, np.int64)
    v[:, i0] = sat32((a * c - b * s + (1 << 14)) >> 15)
    v[:, i1] = sat32((b * c + a * s + (1 << 14)) >> 15)
    return v.reshape(-1)


def gate_q15(x, gate):
    """tsl_gate_q15: gate(x) in Q15 for x in Q16 from a Q15 table (uint16, GATE_N + 1 entries),
    linear in between; 0 below the table, 32768 above."""
    x = np.asarray(x, np.int64)
    lo, hi = GATE_LO << Q, -GATE_LO << Q
    sh = Q - GATE_LOG2_STEP
    t = np.clip(x - lo, 0, hi - lo - 1)
    i, fr = t >> sh, t & ((1 << sh) - 1)
    g = np.asarray(gate, np.int64)
    gi = g[i] + (((g[i + 1] - g[i]) * fr + (1 << (sh - 1))) >> sh)
    return np.where(x < lo, 0, np.where(x >= hi, 32768, gi))


def gate_apply(x, gate):
    """tsl_igate: x * gate(x); above the table x; gate None: ReLU."""
    x = np.asarray(x, np.int64)
    if gate is None:
        return np.where(x > 0, x, 0)
    y = (x * gate_q15(x, gate) + (1 << 14)) >> 15
    return np.where(x >= -GATE_LO << Q, x, y)


def softcap(x, cap, sig):
    """tsl_isoftcap: cap * tanh(x / cap) = cap * (2 sigma(2x / cap) - 1); cap = (m, s) of 2 / cap into
    Q16 and (m, s) of cap out of Q15, for the units of x; sig the sigmoid gate table."""
    t = 2 * gate_q15(requant_sat(x, cap[0], cap[1]), sig) - 32768
    return requant_sat(t, cap[2], cap[3])


def glu(g, u, gate):
    """tsl_iglu: act(g) * u, Q16"""
    return sat32((gate_apply(g, gate) * np.asarray(u, np.int64) + (1 << (Q - 1))) >> Q)


def exp_q15(d):
    """tsl_iexp: e^d in Q15 for d <= 0 in Q20 (int64): 2^(d log2 e) = 2^n * 2^f, 2^f by EXP2_Q30."""
    d = np.maximum(np.asarray(d, np.int64), EXP_FLOOR)
    t = (d * LOG2E_Q30) >> 30
    n = t >> QS
    f = (t - (n << QS)) << (30 - QS)
    p = np.full(d.shape, EXP2_Q30[0], np.int64)
    for c in EXP2_Q30[1:]:
        p = ((p * f) >> 30) + c
    rs = 15 - n
    return (p + (np.int64(1) << (rs - 1))) >> rs


def attention(q, kc, ks, vc, vs, pos, sc_fx, cap=None, sig=None, alibi=None):
    """tsl_iattention_s8 -> (out int8 [H*hs], amax). kc, vc [n_kv, S, hs] int8; ks, vs [n_kv, S]
    int32 amax words; sc_fx: fx of scale * 2^(QS - 2Q) / 127^2; cap, sig: softcap's for Q20 scores;
    alibi: slopes Q20 [H]. Integer sums: any order."""
    n_kv, S, hs = kc.shape
    H = q.shape[0] // hs
    group = H // n_kv
    T = min(pos + 1, S)
    accs, chs = [], []
    for h in range(H):
        g = h // group
        qq, aq = quant(q[h * hs:(h + 1) * hs])
        pw = kc[g, :T].astype(np.int64) @ qq.astype(np.int64)
        cs = fx_mul(fx_norm(aq), sc_fx)
        s = requant_sat(pw, *fx_mul_rows(cs, [fx_norm(int(a)) for a in ks[g, :T]]))
        if cap is not None:
            s = softcap(s, cap, sig)
        if alibi is not None:
            s = sat32(s - np.int64(alibi[h]) * ((pos - np.arange(T)) % S))
        e = exp_q15(s - s.max())
        w = e * vs[g, :T].astype(np.int64)
        E, W = int(e.sum()), int(w.sum())
        p = np.zeros(T, np.int64)
        ch = (0, 0)
        if W > 0:
            sh = max(0, W.bit_length() - 31)
            r = fx_recip(fx_norm(W >> sh))
            p = requant_sat(w >> sh, r[0], r[1] + 15)
            ch = fx_mul(fx_mul(fx_norm(W, -15), fx_recip(fx_norm(E))), FX_INV127)
        accs.append(p @ vc[g, :T].astype(np.int64))
        chs.append(ch)
    amax = max(int(requant_sat(int(np.abs(a).max()), *c)) for a, c in zip(accs, chs))
    out = np.zeros(H * hs, np.int8)
    if amax > 0:
        r = fx_mul(FX127, fx_recip(fx_norm(amax)))
        for h in range(H):
            out[h * hs:(h + 1) * hs] = sat127(requant_sat(accs[h], *fx_mul(chs[h], r)))
    return out, amax


def to_f32(x, frac=Q):
    """tsl_ito_f32: x * 2^-frac as float32, rounded to nearest even (built from integer bits in C)."""
    return (np.asarray(x, np.float64) * 2.0 ** -frac).astype(np.float32)
