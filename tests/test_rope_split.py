"""RoPE from split tables (model.rope_split_tables; firmware tsl_rope_split_f32, tsl_irope_split).

Position p = j * S + r rotates by the angle sum of hi row j and lo row r. Float: every build (host
portable, AVX2, NEON on SIMDe, rpi5 under qemu) == numerics.rope_row + numerics.rope bit for bit, and
the combined cos, sin within 2^-22 of float64 (measured 1.1e-7 .. 1.3e-7; the direct float32 table
was 3.0e-8, its own rounding). Q15: C == numerics_int bit for bit, within 3 * 2^-15 of float64. mscale
(LongRoPE) is carried once, by the hi rows.
"""
import subprocess

import cffi
import numpy as np
import pytest

import kernel_cases as kc
from conftest import ROOT
from tinyslm import numerics as nx
from tinyslm import numerics_int as ni
from tinyslm.codegen import MATVEC_S4, MATVEC_S4NL
from tinyslm.model import rope_split_tables, rope_step

f32 = np.float32
FIRMWARE = ROOT / "firmware"
rng = np.random.default_rng(7)
SHAPES = [(1, 2, 2), (2, 8, 6), (3, 20, 18), (2, 16, 16), (1, 64, 64), (2, 40, 34), (1, 130, 128), (1, 200, 160)]


def freqs(half, theta=10000.0):
    return 1.0 / theta ** (np.arange(half) * 2 / (2 * half))


def split_rows(tabs, p):
    S, ch, sh, cl, sl = tabs
    return ch[p // S], sh[p // S], cl[p % S], sl[p % S]


@pytest.mark.parametrize("n_pos,half,theta,mscale", [(256, 16, 1e4, 1.0), (4096, 64, 1e4, 1.0),
                                                     (4096, 64, 5e5, 1.0), (300, 48, 1e4, 1.1902)])
def test_combined_rows_against_float64(n_pos, half, theta, mscale):
    f = freqs(half, theta)
    tabs = rope_split_tables(f, n_pos, mscale)
    S = tabs[0]
    assert S == rope_step(n_pos) and S * S >= n_pos and tabs[1].shape == (-(-n_pos // S), half)
    p = np.arange(n_pos)
    cs, sn = nx.rope_row(*split_rows(tabs, p))
    ang = p[:, None] * f[None, :]
    assert cs.dtype == f32 and np.abs(cs - mscale * np.cos(ang)).max() <= 2 ** -22 * mscale
    assert np.abs(sn - mscale * np.sin(ang)).max() <= 2 ** -22 * mscale
    q15 = lambda t, m: np.clip(np.round(t.astype(np.float64) * 32768), -m, m)     # noqa: E731 (lower_int's)
    S, ch, sh, cl, sl = tabs
    ci, si = ni.rope_row(*split_rows((S, q15(ch, 2 ** 31 - 1), q15(sh, 2 ** 31 - 1), q15(cl, 32767),
                                      q15(sl, 32767)), p))
    assert np.abs(ci / 32768 - mscale * np.cos(ang)).max() <= 3 * 2 ** -15 * mscale
    assert np.abs(si / 32768 - mscale * np.sin(ang)).max() <= 3 * 2 ** -15 * mscale


def make_cases():
    B = kc.Builder()
    for H, hs, rot in SHAPES:
        for inter in (0, 1):
            v = (rng.standard_normal(H * hs) * 10).astype(f32)
            tabs = rope_split_tables(freqs(rot // 2), 97, 1.25)
            p = int(rng.integers(0, 97))
            rows = split_rows(tabs, p)
            B.add(f"rope_split H={H} hs={hs} rot={rot} inter={inter} p={p}",
                  nx.rope(v, H, hs, rot, *nx.rope_row(*rows), inter).astype(f32),
                  build=lambda A, H=H, hs=hs, rot=rot, rows=rows, inter=inter:
                  f"tsl_rope_split_f32((float *)out, {H}, {hs}, {rot}, "
                  + ", ".join(A(r, "float") for r in rows) + f", {inter});", init=v)
    return B.cases


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    cases = make_cases()
    return cases, kc.write_program(cases, tmp_path_factory.mktemp("rope") / "rope_cases.c", seed=3)


@pytest.mark.parametrize("name", kc.FLOAT_BUILDS)
def test_split_float_bit_exact(name, program, tmp_path, monkeypatch):
    bad = kc.run_build(name, program[0], program[1], ["tsl_elementwise_f32.c", "tsl_norm_f32.c", "tsl_matvec_s8.c"],
                       tmp_path, monkeypatch)
    assert not bad, "\n".join(bad[:20])


def test_split_q15_c_equals_mirror(tmp_path):
    (tmp_path / "shim.c").write_text('#include "tsl_int_ops.c"\n')
    so = tmp_path / "t.so"
    subprocess.run(["cc", "-O2", "-fPIC", "-shared", "-std=c99", "-Wall", "-Werror", "-ffp-contract=off",
                    "-I", str(FIRMWARE), "-o", str(so), str(tmp_path / "shim.c"), str(FIRMWARE / "tsl_matvec_s8.c"),
                    *[str(FIRMWARE / f) for f in MATVEC_S4 + MATVEC_S4NL if f.endswith(".c")]], check=True)
    ffi = cffi.FFI()
    ffi.cdef("void tsl_irope_split(int32_t *v, int32_t n_heads, int32_t hs, int32_t rot, const int32_t *cos_hi, "
             "const int32_t *sin_hi, const int16_t *cos_lo, const int16_t *sin_lo, int32_t interleaved);")
    L = ffi.dlopen(str(so))
    ptr = lambda a, t: ffi.cast(t + " *", ffi.from_buffer(a))                       # noqa: E731
    for H, hs, rot in SHAPES:
        for inter in (0, 1):
            ch, sh = (rng.integers(-39000, 39001, rot // 2).astype(np.int32) for _ in range(2))   # mscale 1.19
            cl, sl = (rng.integers(-32767, 32768, rot // 2).astype(np.int16) for _ in range(2))
            v = rng.integers(-2 ** 31 + 1, 2 ** 31, H * hs).astype(np.int32)
            v[:2] = [2 ** 31 - 1, -2 ** 31 + 1]                                     # saturating ends
            y = v.copy()
            L.tsl_irope_split(ptr(y, "int32_t"), H, hs, rot, ptr(ch, "int32_t"), ptr(sh, "int32_t"),
                              ptr(cl, "int16_t"), ptr(sl, "int16_t"), inter)
            assert np.array_equal(y, ni.rope(v, H, hs, rot, *ni.rope_row(ch, sh, cl, sl), inter)), (H, hs, rot, inter)
