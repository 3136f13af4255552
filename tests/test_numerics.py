"""firmware/tsl_numerics.h and tinyslm/numerics.py compute the same bits, on edge cases too."""
import subprocess

import cffi
import numpy as np
import pytest

from conftest import ROOT
from tinyslm import numerics as nx

C = r"""
#include "tsl_numerics.h"
#define MAP(name, expr) void name(const float *x, float *y, int n) { for (int i = 0; i < n; i++) y[i] = expr; }
MAP(t_rsqrt, tsl_rsqrt(x[i]))
MAP(t_exp, tsl_exp_neg(x[i]))
MAP(t_silu, tsl_silu(x[i]))
MAP(t_gelu_tanh, tsl_gelu_tanh(x[i]))
MAP(t_gelu_erf, tsl_gelu_erf(x[i]))
void t_quant(const float *x, int8_t *y, int n) { for (int i = 0; i < n; i++) y[i] = tsl_quant_f32(x[i]); }
void t_requant(const int32_t *x, int32_t m, int32_t s, int32_t *y, int n) { for (int i = 0; i < n; i++) y[i] = tsl_requant(x[i], m, s); }
void t_multiplier(float r, int32_t *m, int32_t *s) { tsl_multiplier(r, m, s); }
"""
DEFS = """
void t_rsqrt(const float *x, float *y, int n); void t_exp(const float *x, float *y, int n);
void t_silu(const float *x, float *y, int n); void t_gelu_tanh(const float *x, float *y, int n);
void t_gelu_erf(const float *x, float *y, int n); void t_quant(const float *x, int8_t *y, int n);
void t_requant(const int32_t *x, int32_t m, int32_t s, int32_t *y, int n);
void t_multiplier(float r, int32_t *m, int32_t *s);
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("nx")
    (d / "t.c").write_text(C)
    so = d / "t.so"
    subprocess.run(["cc", "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-I", str(ROOT / "firmware"),
                    "-o", str(so), str(d / "t.c")], check=True)
    ffi = cffi.FFI()
    ffi.cdef(DEFS)
    return ffi, ffi.dlopen(str(so))


def _map(lib, fn, x, out_dtype=np.float32):
    ffi, L = lib
    x = np.ascontiguousarray(x, np.float32)
    y = np.zeros(x.shape, out_dtype)
    getattr(L, fn)(ffi.cast("float *", ffi.from_buffer(x)), ffi.cast("void *", ffi.from_buffer(y)), len(x))
    return y


rng = np.random.default_rng(0)
WIDE = np.concatenate([rng.standard_normal(20000) * 4, rng.standard_normal(5000) * 40,
                       [0.0, -0.0, 1e-30, -1e-30, 86.9, -86.9, -87.0, -87.00001, -100, 100, 1e-8, 0.5, -0.5]])


@pytest.mark.parametrize("fn,ref,x", [
    ("t_exp", nx.exp_neg, -np.abs(WIDE)),
    ("t_silu", nx.silu, WIDE),
    ("t_gelu_tanh", nx.gelu_tanh, WIDE),
    ("t_gelu_erf", nx.gelu_erf, WIDE),
    ("t_rsqrt", nx.rsqrt, np.abs(WIDE) + np.float32(1e-6)),
])
def test_float_functions_bit_exact(lib, fn, ref, x):
    got = _map(lib, fn, x)
    want = ref(np.asarray(x, np.float32))
    assert got.tobytes() == want.astype(np.float32).tobytes()


def test_float_functions_accurate():
    x = np.linspace(-20, 0, 4001).astype(np.float32)
    assert np.max(np.abs(nx.exp_neg(x) - np.exp(x.astype(np.float64))) / np.exp(x.astype(np.float64))) < 2e-5
    y = np.linspace(1e-3, 1e3, 1001).astype(np.float32)
    assert np.max(np.abs(nx.rsqrt(y) * np.sqrt(y.astype(np.float64)) - 1)) < 1e-6


def test_quant_round_half_away(lib):
    x = np.array([0.5, -0.5, 1.5, -1.5, 2.4999998, 126.5, 127.4, 300, -300, -127.5, 0.49999997], np.float32)
    got = _map(lib, "t_quant", x, np.int8)
    assert got.tolist() == nx.quant_f32(x).tolist() == [1, -1, 2, -2, 2, 127, 127, 127, -127, -127, 0]
    r = (rng.standard_normal(50000) * 200).astype(np.float32)
    assert _map(lib, "t_quant", r, np.int8).tobytes() == nx.quant_f32(r).tobytes()


@pytest.mark.parametrize("real", [1.0, 0.5, 0.999999, 1e-3, 3.7e-7, 1.9, 1e-12, 127.0, 3e5])
def test_multiplier_and_requant(lib, real):
    ffi, L = lib
    m, s = nx.multiplier(np.float32(real))
    cm, cs = ffi.new("int32_t *"), ffi.new("int32_t *")
    L.t_multiplier(float(np.float32(real)), cm, cs)
    assert (cm[0], cs[0]) == (m, s)
    if m:
        assert m * 2.0 ** (s - 31) == float(np.float32(real))          # exact: a float has 24 mantissa bits
    x = np.concatenate([rng.integers(-2**23, 2**23, 20000), [0, 1, -1, 2**23 - 1, -2**23, 3, -3]]).astype(np.int32)
    y = np.zeros_like(x)
    L.t_requant(ffi.cast("int32_t *", ffi.from_buffer(x)), m, s, ffi.cast("int32_t *", ffi.from_buffer(y)), len(x))
    want = nx.requant(x, m, s)
    assert y.tolist() == want.astype(np.int32).tolist()
    if m:
        assert np.abs(want - x.astype(np.float64) * m * 2.0 ** (s - 31)).max() <= 0.5
