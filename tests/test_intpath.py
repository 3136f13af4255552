"""The integer-only decode step (lower_int.py, firmware/tsl_int_ops.c, numerics_int.py).

Each integer kernel: C == numpy mirror bit for bit, and the mirror against a float64 oracle within
the bound stated in its test. Whole models: reference == host build (the example, a GPT-2 with
LayerNorm, GELU, biases and learned positions, a Gemma 2 with soft caps and sliding windows),
== esp32c3 under qemu; the
esp32c3 model path calls no soft-float routine; the KLD from onnxruntime stays within 1.5x the
float path's.
"""
import math
import re
import subprocess

import cffi
import numpy as np
import pytest

from conftest import ROOT, tinyslm
from conftest_tools import require_tool, require_toolchain
from tinyslm import lower_int, onnxfile
from tinyslm import numerics as nx
from tinyslm import numerics_int as ni
from tinyslm.boards import list_boards, load_board
from tinyslm.codegen import MATVEC_S4, MATVEC_S4NL

SHIM = r"""
#include "tsl_int_ops.c"
int32_t t_iexp(int64_t d) { return tsl_iexp(d); }
void t_fx(int64_t v, int32_t e, int32_t am, int32_t as, int32_t *out)
{
    const tsl_fx a = tsl_fx_norm((uint64_t)v, e), b = {am, as};
    const tsl_fx p = tsl_fx_mul(a, b), r = tsl_fx_recip(a);
    out[0] = a.m; out[1] = a.s; out[2] = p.m; out[3] = p.s; out[4] = r.m; out[5] = r.s;
}
"""
CDEF = """
int32_t tsl_iquant_s8(const int32_t *x, int8_t *q, int32_t n);
void tsl_idequant_sub(int32_t *x, const int8_t *q, const int32_t *amax, int32_t n);
void tsl_inorm(const int32_t *x, const int32_t *g, int32_t gq, const int32_t *b, uint32_t eps_q,
               int32_t *y, int32_t n, int32_t layer);
void tsl_imatvec_s8(const int8_t *x, const int32_t *amax, const int8_t *w, const int32_t *wfx,
                    const int32_t *bias, int32_t *dst, int32_t N, int32_t K, int32_t accumulate);
void tsl_imatvec_s4(const int8_t *x, const int32_t *amax, const uint8_t *w, const int8_t *gs, const int32_t *wfx,
                    const int32_t *bias, int32_t *dst, int32_t N, int32_t K, int32_t accumulate);
void tsl_irope(int32_t *v, int32_t n_heads, int32_t hs, int32_t rot, const int16_t *cs, const int16_t *sn,
               int32_t interleaved);
int32_t tsl_iattention_s8(const int32_t *q, const int8_t *kc, const int32_t *ks, const int8_t *vc,
                          const int32_t *vs, int8_t *out, int32_t n_heads, int32_t n_kv, int32_t hs,
                          int32_t max_seq, int32_t pos, int32_t sc_m, int32_t sc_s, const int32_t *cap,
                          const uint16_t *sig, const int32_t *alibi, int8_t *qq, int32_t *sc, int32_t *pw,
                          int32_t *acc, int32_t *ch);
void tsl_isoftcap(int32_t *x, int32_t n, const int32_t *cap, const uint16_t *sig);
void tsl_iact(const int32_t *x, int32_t *y, int32_t n, const uint16_t *gate);
void tsl_iglu(const int32_t *g, const int32_t *u, int32_t *h, int32_t n, const uint16_t *gate);
void tsl_ito_f32(const int32_t *x, uint32_t *y, int32_t n);
int32_t t_iexp(int64_t d);
void t_fx(int64_t v, int32_t e, int32_t am, int32_t as, int32_t *out);
"""
rng = np.random.default_rng(14)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("intops")
    (d / "shim.c").write_text(SHIM)
    so = d / "t.so"
    subprocess.run(["cc", "-O2", "-fPIC", "-shared", "-std=c99", "-Wall", "-Werror", "-ffp-contract=off",
                    "-I", str(ROOT / "firmware"), "-o", str(so), str(d / "shim.c"),
                    str(ROOT / "firmware" / "tsl_matvec_s8.c"),
                    *[str(ROOT / "firmware" / f) for f in MATVEC_S4 + MATVEC_S4NL if f.endswith(".c")]], check=True)
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    L = ffi.dlopen(str(so))

    def p(arr, t):
        return ffi.cast(t + " *", ffi.from_buffer(arr)) if arr is not None else ffi.NULL
    return ffi, L, p


def q16(v):
    return np.clip(np.round(np.asarray(v, np.float64) * 65536), -2 ** 31 + 1, 2 ** 31 - 1).astype(np.int32)


def vectors():
    """int32 Q16 test vectors over many magnitudes, with zeros, saturated and one-hot ones"""
    out = [q16(rng.standard_normal(n) * s) for n, s in ((64, 1.0), (128, 0.01), (33, 300.0), (256, 5e-4),
                                                      (17, 20000.0))]
    out += [np.zeros(8, np.int32), np.full(5, 2 ** 31 - 1, np.int32), np.array([0, 0, -7, 0], np.int32)]
    return out


def test_fx_helpers_c_equals_python(lib):
    ffi, L, p = lib
    o = np.zeros(6, np.int32)
    for v in [1, 2, 3, 127, 2 ** 31 - 1, 2 ** 40 + 12345, 2 ** 62 + 7, *rng.integers(1, 2 ** 62, 50)]:
        b = nx.fx_const(float(rng.uniform(1e-9, 1e3)))
        e = int(rng.integers(-40, 20))
        L.t_fx(int(v), e, b[0], b[1], p(o, "int32_t"))
        a = nx.fx_norm(int(v), e)
        assert list(o) == [*a, *nx.fx_mul(a, b), *nx.fx_recip(a)], v
        assert math.isclose(a[0] * 2.0 ** (a[1] - 31), v * 2.0 ** e, rel_tol=2 ** -30)
        r = nx.fx_recip(a)
        assert math.isclose(r[0] * 2.0 ** (r[1] - 31), 1 / (a[0] * 2.0 ** (a[1] - 31)), rel_tol=2 ** -29)
        assert nx.fx_mul_rows(a, np.array([b])) == ([nx.fx_mul(a, b)[0]], [nx.fx_mul(a, b)[1]])


def test_quant_within_half_a_step(lib):
    """|q - x * 127 / amax| <= 0.5 + 2^-20 (the multiplier has 30 bits); C == mirror"""
    ffi, L, p = lib
    for x in vectors():
        q = np.zeros(x.size, np.int8)
        amax = L.tsl_iquant_s8(p(x, "int32_t"), p(q, "int8_t"), x.size)
        rq, ramax = ni.quant(x)
        assert amax == ramax and np.array_equal(q, rq)
        if amax:
            exact = x.astype(np.float64) * 127 / amax
            assert np.abs(q - exact).max() <= 0.5 + 2 ** -20
            y = x.copy()
            L.tsl_idequant_sub(p(y, "int32_t"), p(q, "int8_t"), p(np.array([amax], np.int32), "int32_t"), x.size)
            assert np.array_equal(y, ni.dequant_sub(x, q, amax))
            assert np.abs(y.astype(np.float64)).max() <= amax / 127 * (0.5 + 2 ** -20) + 1


@pytest.mark.parametrize("layer", [0, 1])
def test_norm_against_float(lib, layer):
    """|y - norm(x) g (+ b)| <= max|g| (2^-12 + 2^-20 / rms) + 2^-15 against the float64 norm of the same
    Q16 input (rms = sqrt(var + eps): the mean is kept in Q20); C == mirror"""
    ffi, L, p = lib
    for x in vectors()[:6]:
        n = x.size
        g = rng.uniform(0.5, 3.0, n)
        gq = math.floor(30 - math.log2(g.max()))
        gi = np.round(g * 2.0 ** gq).astype(np.int32)
        b = q16(rng.standard_normal(n)) if layer else None
        eps = 1e-5
        eps_q = int(round(eps * 2 ** 32))
        y = np.zeros(n, np.int32)
        L.tsl_inorm(p(x, "int32_t"), p(gi, "int32_t"), gq, p(b, "int32_t"), eps_q, p(y, "int32_t"), n, layer)
        ry = ni.norm(x, gi, gq, b, eps_q, layer)
        assert np.array_equal(y, ry)
        xf = x.astype(np.float64) / 65536
        d = xf - (xf.mean() if layer else 0)
        ref = d / np.sqrt((d * d).mean() + eps) * g + (0 if b is None else b / 65536)
        err = np.abs(y / 65536 - ref).max()
        assert err <= g.max() * (2 ** -12 + 2 ** -20 / np.sqrt((d * d).mean() + eps)) + 2 ** -15, (n, err)


def test_exp_against_float(lib):
    """|e - 32768 e^d| <= 1 for d in [-32, 0] (Q20 in, Q15 out); C == mirror"""
    ffi, L, p = lib
    d = np.concatenate([-rng.uniform(0, 32, 3000), [0, -1, -(1 << 20), -(32 << 20) / (1 << 20), -40, -1e4]])
    dq = np.round(d * (1 << 20)).astype(np.int64)
    e = ni.exp_q15(dq)
    assert [L.t_iexp(int(v)) for v in dq[:400]] + [L.t_iexp(int(v)) for v in dq[-6:]] == list(e[:400]) + list(e[-6:])
    assert np.abs(e - 32768 * np.exp(dq / 2.0 ** 20)).max() <= 1.0
    assert e[dq.size - 6] == 32768


@pytest.mark.parametrize("act", [0, 1, 2, 3])
def test_gates_against_float(lib, act):
    """act(x) through the Q15 gate table: |y - act(x)| <= 6e-5 |x| + 2^-15 on [-40, 40]; ReLU exact;
    glu = act(g) u within the same bound times |u|; C == mirror"""
    ffi, L, p = lib
    xf = np.concatenate([rng.uniform(-40, 40, 4000), rng.standard_normal(4000) * 3, [-16, 16, 15.99, 0]])
    x = q16(xf)
    t = lower_int.gate_table(act)
    y = np.zeros(x.size, np.int32)
    L.tsl_iact(p(x, "int32_t"), p(y, "int32_t"), x.size, p(t, "uint16_t"))
    assert np.array_equal(y, ni.gate_apply(x, t))
    xd = x / 65536.0
    ref = {0: lambda v: v / (1 + np.exp(-v)), 3: lambda v: np.maximum(v, 0),
           1: lambda v: 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))}.get(
        act, lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2))))(xd)
    err = np.abs(y / 65536.0 - ref)
    assert (err <= 6e-5 * np.abs(xd) + 2 ** -15).all(), err.max()
    if act == 3:
        assert np.array_equal(y, np.maximum(x, 0))
    u = q16(rng.standard_normal(x.size) * 4)
    h = np.zeros(x.size, np.int32)
    L.tsl_iglu(p(x, "int32_t"), p(u, "int32_t"), p(h, "int32_t"), x.size, p(t, "uint16_t"))
    assert np.array_equal(h, ni.glu(x, u, t))
    assert (np.abs(h / 65536.0 - ref * u / 65536.0) <= (6e-5 * np.abs(xd) + 2 ** -15) * np.abs(u / 65536.0) + 2 ** -15).all()


@pytest.mark.parametrize("interleaved", [0, 1])
def test_rope_against_float(lib, interleaved):
    """Q15 tables: |v' - rot(v)| <= 2^-14 |v| + 2^-16 per component; C == mirror"""
    ffi, L, p = lib
    H, hs, rot = 3, 16, 12
    ang = rng.uniform(0, 2 * np.pi, rot // 2)
    cs = np.clip(np.round(np.cos(ang) * 32768), -32767, 32767).astype(np.int16)
    sn = np.clip(np.round(np.sin(ang) * 32768), -32767, 32767).astype(np.int16)
    v = q16(rng.standard_normal(H * hs) * 10)
    y = v.copy()
    L.tsl_irope(p(y, "int32_t"), H, hs, rot, p(cs, "int16_t"), p(sn, "int16_t"), interleaved)
    assert np.array_equal(y, ni.rope(v, H, hs, rot, cs, sn, interleaved))
    ref = nx.rope(v.astype(np.float64) / 65536, H, hs, rot, np.cos(ang), np.sin(ang), interleaved)
    assert (np.abs(y / 65536 - ref) <= 2 ** -14 * np.abs(v / 65536).max() + 2 ** -16).all()


def test_logits_float_bits_round_to_nearest_even(lib):
    """tsl_ito_f32 builds IEEE bits from integers: equal to float64 -> float32 conversion"""
    ffi, L, p = lib
    x = np.concatenate([rng.integers(-2 ** 31 + 1, 2 ** 31 - 1, 5000), [0, 1, -1, 2 ** 24 + 1, 2 ** 24 + 3, 2 ** 25 + 2,
                                                                          2 ** 25 + 6, 2 ** 31 - 1, -2 ** 31 + 1, 16777215]]).astype(np.int32)
    y = np.zeros(x.size, np.uint32)
    L.tsl_ito_f32(p(x, "int32_t"), p(y, "uint32_t"), x.size)
    assert np.array_equal(y.view(np.float32), ni.to_f32(x))
    assert np.array_equal(y.view(np.float32), (x.astype(np.float64) / 65536).astype(np.float32))


def test_matvec_epilogue_against_float(lib):
    """(acc * step * ws) requantized once: |y - float| <= 2^-20 |y| + 1 (Q16 units); C == mirror"""
    ffi, L, p = lib
    N, K = 300, 96
    w = rng.integers(-127, 128, (N, K)).astype(np.int8)
    ws = rng.uniform(1e-4, 1e-1, N)
    wfx = lower_int.fx_rows(ws)
    x = rng.integers(-127, 128, K).astype(np.int8)
    amax = np.array([123456], np.int32)
    bias = q16(rng.standard_normal(N))
    for acc_mode in (0, 1):
        d0 = q16(rng.standard_normal(N))
        d = d0.copy()
        L.tsl_imatvec_s8(p(x, "int8_t"), p(amax, "int32_t"), p(w, "int8_t"), p(wfx, "int32_t"), p(bias, "int32_t"),
                         p(d, "int32_t"), N, K, acc_mode)
        st = ni.step(int(amax[0]))
        v = nx.requant_sat(nx.matvec_s8_s32(x, w), *nx.fx_mul_rows(st, wfx)) + bias
        assert np.array_equal(d, v + (d0 if acc_mode else 0))
        ref = (w.astype(np.float64) @ x) * (amax[0] / 127) * ws + bias
        assert (np.abs(v - ref) <= 2 ** -20 * np.abs(ref) + 1.5).all()


def test_matvec_s4_epilogue_c_equals_mirror(lib):
    """int4 groups (nibbles at -8 and 7, group scales at +-127) then the integer epilogue: C (the host's
    ISA path of tsl_matvec_s4_s32) == mirror; K = 256 + 32 reaches every path's chunk tail"""
    from tinyslm.quantize import _pack_s4
    ffi, L, p = lib
    N, K = 300, 288
    w4 = rng.integers(-8, 8, (N, K)).astype(np.int8)
    w4[0], w4[1] = -8, 7
    w = _pack_s4(w4)
    gs = rng.integers(-127, 128, (N, K // 32)).astype(np.int8)
    gs[0], gs[1] = -127, 127
    wfx = lower_int.fx_rows(rng.uniform(1e-5, 1e-2, N))
    x = rng.integers(-127, 128, K).astype(np.int8)
    x[:32] = 127
    amax = np.array([987654], np.int32)
    bias = q16(rng.standard_normal(N))
    acc = nx.matvec_s4_s32(x, w, gs, 32).astype(np.int64)
    assert acc[0] == 8 * 127 * int(x.astype(np.int64).sum()) and acc[1] == 7 * 127 * int(x.astype(np.int64).sum())
    st = ni.step(int(amax[0]))
    for acc_mode, b in ((0, None), (1, bias)):
        d0 = q16(rng.standard_normal(N))
        d = d0.copy()
        L.tsl_imatvec_s4(p(x, "int8_t"), p(amax, "int32_t"), p(w, "uint8_t"), p(gs, "int8_t"), p(wfx, "int32_t"),
                         p(b, "int32_t"), p(d, "int32_t"), N, K, acc_mode)
        v = nx.requant_sat(acc, *nx.fx_mul_rows(st, wfx)) + (0 if b is None else b)
        assert np.array_equal(d, ni.sat32(v + (d0 if acc_mode else 0)))


def test_softcap_against_float(lib):
    """cap * tanh(x / cap) through the sigmoid table: |y - float| <= 1e-4 cap + 2^-15; C == mirror"""
    ffi, L, p = lib
    sig = lower_int.gate_table(0)
    for cap in (3.0, 30.0):
        c = np.array([*nx.fx_const(2.0 / cap), *nx.fx_const(cap * 2.0)], np.int32)
        x = q16(np.concatenate([rng.uniform(-10 * cap, 10 * cap, 3000), [0, cap, -cap, 1e-4]]))
        y = x.copy()
        L.tsl_isoftcap(p(y, "int32_t"), x.size, p(c, "int32_t"), p(sig, "uint16_t"))
        assert np.array_equal(y, ni.softcap(x, c, sig))
        assert np.abs(y / 65536 - cap * np.tanh(x / 65536 / cap)).max() <= 1e-4 * cap + 2 ** -15


@pytest.mark.parametrize("extras", [False, True])
def test_attention_against_float(lib, extras):
    """Integer softmax attention over an int8 cache (ring, grouped heads; with extras: soft-capped
    scores and ALiBi) against float64 softmax of the same int8 values (q quantized as the kernel
    does): output within 1% of its max |.| per head plus one output step; C == mirror"""
    ffi, L, p = lib
    H, Hk, hs, S = 4, 2, 16, 12
    capv, slopes = 5.0, np.array([0.5, 0.25, 0.125, 0.0625])
    cap = np.array([*nx.fx_const(2.0 / capv / 16), *nx.fx_const(capv * 32)], np.int32) if extras else None
    sig = lower_int.gate_table(0) if extras else None
    alibi = np.round(slopes * 2 ** 20).astype(np.int32) if extras else None
    kc = rng.integers(-127, 128, (Hk, S, hs)).astype(np.int8)
    vc = rng.integers(-127, 128, (Hk, S, hs)).astype(np.int8)
    ks = rng.integers(1, 1 << 20, (Hk, S)).astype(np.int32)
    vs = rng.integers(1, 1 << 20, (Hk, S)).astype(np.int32)
    scale = 1 / math.sqrt(hs)
    scfx = nx.fx_const(scale * 2.0 ** (ni.QS - 2 * ni.Q) / 127 ** 2)
    for pos in (0, 5, 20):
        q = q16(rng.standard_normal(H * hs) * 2)
        out = np.zeros(H * hs, np.int8)
        qq, sc, pw, acc, ch = (np.zeros(n, t) for n, t in ((hs, np.int8), (S, np.int32), (S, np.int32),
                                                            (H * hs, np.int32), (2 * H, np.int32)))
        amax = L.tsl_iattention_s8(p(q, "int32_t"), p(kc, "int8_t"), p(ks, "int32_t"), p(vc, "int8_t"), p(vs, "int32_t"),
                                   p(out, "int8_t"), H, Hk, hs, S, pos, scfx[0], scfx[1], p(cap, "int32_t"),
                                   p(sig, "uint16_t"), p(alibi, "int32_t"), p(qq, "int8_t"),
                                   p(sc, "int32_t"), p(pw, "int32_t"), p(acc, "int32_t"), p(ch, "int32_t"))
        rout, ramax = ni.attention(q, kc, ks, vc, vs, pos, scfx, cap, sig, alibi)
        assert amax == ramax and np.array_equal(out, rout)
        T = min(pos + 1, S)
        got = out.astype(np.float64) * amax / 127 / 65536
        for h in range(H):
            g = h // (H // Hk)
            qq8, aq = ni.quant(q[h * hs:(h + 1) * hs])
            qf = qq8 * (aq / 127 / 65536)
            kf = kc[g, :T] * (ks[g, :T, None] / 127 / 65536)
            vf = vc[g, :T] * (vs[g, :T, None] / 127 / 65536)
            s = kf @ qf * scale
            if extras:
                s = capv * np.tanh(s / capv) - slopes[h] * ((pos - np.arange(T)) % S)
            pr = np.exp(s - s.max())
            ref = (pr / pr.sum()) @ vf
            assert np.abs(got[h * hs:(h + 1) * hs] - ref).max() <= 0.01 * np.abs(ref).max() + amax / 127 / 65536


def test_board_features_select_the_numerics():
    """no fpu-sp / fpu-dp in a board's features: the integer step (boards are data)"""
    for n in list_boards():
        B = load_board(n)
        want = "float" if {"fpu-sp", "fpu-dp"} & set(B.features) else "int"
        assert lower_int.numerics_for(B) == want
    assert lower_int.numerics_for(load_board("esp32c3")) == "int"
    assert lower_int.numerics_for(load_board("host")) == "float"


# ---- whole models ----

@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    from tinyslm.pipeline import compile_model
    d = tmp_path_factory.mktemp("intpath")
    out = {}
    for num in ("float", "int"):
        out[num] = d / f"ex-{num}"
        compile_model(ROOT / "examples" / "tiny_llama.onnx", out[num], "host", 128, "int8", quiet=True, numerics=num)
    out["c3"] = d / "ex-c3"                        # the board's own choice: integer
    compile_model(ROOT / "examples" / "tiny_llama.onnx", out["c3"], "esp32c3", 32, "int8", quiet=True)
    for num in ("float", "int"):
        out[f"int4-{num}"] = d / f"ex4-{num}"
        compile_model(ROOT / "examples" / "tiny_llama.onnx", out[f"int4-{num}"], "host", 128, "int4", quiet=True,
                      numerics=num)
    out["c3-int4"] = d / "ex4-c3"
    compile_model(ROOT / "examples" / "tiny_llama.onnx", out["c3-int4"], "esp32c3", 32, "int4", quiet=True)
    return out


def _verify_host(build, steps):
    from tinyslm.hostsim import HostModel
    from tinyslm.pipeline import load_build
    from tinyslm.verify import verify_host
    man, prog = load_build(build)
    rep = verify_host(prog, HostModel(build, man), [1, 2, 3], steps)
    return man, prog, rep


def test_example_reference_equals_host(builds):
    man, prog, rep = _verify_host(builds["int"], 12)
    assert rep["steps"] == 12
    assert {o.kind for o in prog.ops} == {"i_embed", "i_norm", "i_quant", "i_matvec", "i_rope", "i_kv_store",
                                          "i_attention", "i_glu", "i_dequant_sub", "i_to_f32"}
    assert man["model"]["numerics"] == "int"
    assert all(b.dtype != "f32" for n, b in prog.bufs.items() if n != "logits")


def test_example_int4_reference_equals_host(builds):
    """int4 weights on the integer step: tsl_matvec_s4_s32's sums, the int8 epilogue"""
    man, prog, rep = _verify_host(builds["int4-int"], 12)
    assert rep["steps"] == 12 and man["model"]["numerics"] == "int"
    fmts = {o.attrs["fmt"] for o in prog.ops if o.kind == "i_matvec"}
    assert "s4" in fmts and all(o.attrs["gs_w"] for o in prog.ops if o.kind == "i_matvec" and o.attrs["fmt"] == "s4")


def test_gpt2_reference_equals_host(models, tmp_path):
    """GPT-2 (the session's test model): LayerNorm with bias, GELU, biases, learned positions"""
    from tinyslm.pipeline import compile_model
    compile_model(models["gpt2"], tmp_path / "b", "host", 32, "int8", quiet=True, numerics="int")
    man, prog, rep = _verify_host(tmp_path / "b", 10)
    assert {"i_norm", "i_act", "i_embed"} <= {o.kind for o in prog.ops}
    assert any(o.attrs.get("layernorm") for o in prog.ops if o.kind == "i_norm")


def test_gemma2_reference_equals_host(tmp_path):
    """Gemma 2 (transformers config, random weights): soft-capped scores and logits, sliding-window
    rings (window 8, 10 steps), post-norms. ALiBi: test_attention_against_float[True]."""
    import hf_models
    from tinyslm.pipeline import compile_model
    src = tmp_path / "gemma2.onnx"
    hf_models.export_full("gemma2", src, dynamo=False)
    compile_model(src, tmp_path / "b", "host", 24, "int8", quiet=True, numerics="int")
    man, prog, rep = _verify_host(tmp_path / "b", 10)
    att = [o for o in prog.ops if o.kind == "i_attention"]
    assert att and all(o.attrs["cap_w"] for o in att) and any(o.kind == "i_softcap" for o in prog.ops)


def _reachable(disasm, root):
    """function names reachable from `root` by direct calls and jumps in an objdump -d listing
    (objdump's address comments after '#' or ';' are not calls)"""
    funcs, cur = {}, None
    for line in disasm.splitlines():
        m = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if m:
            cur = funcs.setdefault(m.group(1), set())
        elif cur is not None:
            cur.update(re.findall(r"<([^>+]+)>", re.split(r"[#;]", line, maxsplit=1)[0]))
    seen, todo = set(), [root]
    while todo:
        f = todo.pop()
        if f not in seen and f in funcs:
            seen.add(f)
            todo += funcs[f]
    return seen


SOFT_FLOAT = re.compile(r"^__(aeabi_[fd]\w*|\w+[sd]f[23i]?\d?|\w+[sd]i[sd]f)$")


def test_esp32c3_bit_exact_and_no_soft_float(builds, tmp_path):
    """verify under qemu-system-riscv32; tsl_forward's call graph in the linked ELF holds no
    soft-float routine, where the float build's does"""
    from tinyslm import targets
    from tinyslm.pipeline import load_build
    from tinyslm.verify import verify_target
    B = load_board("esp32c3")
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    man, prog = load_build(builds["c3"])
    assert man["model"]["numerics"] == "int"
    verify_target(builds["c3"], man, prog, B, [1, 2, 3], 6, log=lambda m: None)
    elf = next((builds["c3"] / ".tinyslm").rglob("verify.elf"))
    int_calls = _reachable(targets.disassemble(B, elf), "tsl_forward")
    assert "tsl_imatvec_s8" in int_calls and "tsl_iattention_s8" in int_calls
    assert not {f for f in int_calls if SOFT_FLOAT.match(f)}, sorted(f for f in int_calls if SOFT_FLOAT.match(f))
    fman, _ = load_build(builds["float"])
    srcs = [builds["float"] / s for s in fman["sources"]] + [builds["float"] / "app" / "tsl_app_verify.c",
                                                               tmp_path / "tsl_verify_data.h"]
    (tmp_path / "tsl_verify_data.h").write_text((elf.parent.parent / "tsl_verify_data.h").read_text())
    felf = targets.build(B, srcs[:-1], [builds["float"] / "runtime", builds["float"] / "model", tmp_path], tmp_path / "f",
                         defines={"TSL_NO_DEFAULT_MODEL": None}, name="verify")
    float_calls = _reachable(targets.disassemble(B, felf), "tsl_forward")
    assert {"__mulsf3", "__addsf3"} <= float_calls          # the check can fail: the float step needs them


def test_esp32c3_int4_bit_exact(builds):
    """the board's own numerics (integer) with int4 weights: bit-exact under qemu, tsl_imatvec_s4 on
    the path and no soft-float routine reachable from tsl_forward"""
    from tinyslm import targets
    from tinyslm.pipeline import load_build
    from tinyslm.verify import verify_target
    B = load_board("esp32c3")
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    man, prog = load_build(builds["c3-int4"])
    assert man["model"]["numerics"] == "int"
    verify_target(builds["c3-int4"], man, prog, B, [1, 2, 3], 6, log=lambda m: None)
    elf = next((builds["c3-int4"] / ".tinyslm").rglob("verify.elf"))
    calls = _reachable(targets.disassemble(B, elf), "tsl_forward")
    assert "tsl_imatvec_s4" in calls and "tsl_matvec_s4_s32" in calls
    assert not {f for f in calls if SOFT_FLOAT.match(f)}, sorted(f for f in calls if SOFT_FLOAT.match(f))


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_kld_guard(builds, weights):
    """mean KL(onnxruntime || build) of the integer step at most 1.5x the float step's with the same
    weights, first 2 chunks of heldout.txt (the full table: benchmarks/bench_intpath.py)"""
    import onnxruntime as ort

    from tinyslm.evaluate import host_logits, log_softmax, onnx_logits, text_chunks
    from tinyslm.hostsim import HostModel
    from tinyslm.tokenizer import Tokenizer
    src = ROOT / "examples" / "tiny_llama.onnx"
    tok = Tokenizer.from_file(src.with_name("tokenizer.json"))
    chunks = text_chunks(tok.encode((ROOT / "examples" / "data" / "heldout.txt").read_text())[:254], 128, tok.bos_id)
    sess = ort.InferenceSession(str(src), onnxfile.options(), providers=["CPUExecutionProvider"])
    kld = {}
    for num in ("float", "int"):
        h = HostModel(builds[num if weights == "int8" else f"int4-{num}"])
        ks = []
        for ids in chunks:
            ref = log_softmax(onnx_logits(sess, src, ids))
            ks.append(np.maximum((np.exp(ref) * (ref - log_softmax(host_logits(h, ids)))).sum(1), 0))
        kld[num] = float(np.concatenate(ks).mean())
    assert 0 < kld["int"] <= 1.5 * kld["float"], kld


def test_int4_compiles_for_a_board_without_fpu(tmp_path):
    """the command that worked before the integer step: int4 weights, the board's integer numerics"""
    r = tinyslm("compile", ROOT / "examples" / "tiny_llama.onnx", "-o", tmp_path / "b", "--board", "esp32c3",
                "--weights", "int4")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "tsl_imatvec_s4(" in "".join(f.read_text() for f in (tmp_path / "b" / "model").glob("*.c"))
