"""int4 GPTQ with the least-squares group-scale refit (calibrate.gptq, calibrate.ls_group_scales).

On a random matrix under a random SPD Hessian: the refit lowers (w - w_q) H (w - w_q)^T against
the unrefitted scales (LS_ROUNDS = 0), never raises a row's, and its output is the kernels' int4
format (packed codes in [-8, 7], int8 group scales with |gs| in [1, 127], float32 row scales) that
tsl_matvec_s4_s32 reads as numerics.matvec_s4_s32 does.
"""
import subprocess

import cffi
import numpy as np
import pytest

from conftest import ROOT
from tinyslm import calibrate
from tinyslm import numerics as nx
from tinyslm.codegen import MATVEC_S4, MATVEC_S4NL
from tinyslm.quantize import quant_rows_s4, unpack_s4

rng = np.random.default_rng(11)
N, K = 24, 160


def problem():
    """w [N, K] with heavy-tailed rows, one zero group, and the factor of a correlated SPD X^T X"""
    w = rng.standard_normal((N, K)) * rng.uniform(0.2, 2.0, (N, 1))
    w[::5] *= rng.standard_t(3, (1, K))
    w[3, 32:64] = 0.0
    x = rng.standard_normal((4 * K, K)) @ (np.eye(K) + 0.3 * rng.standard_normal((K, K)))
    x *= rng.uniform(0.1, 3.0, K)
    return w, calibrate.inverse_factor(x.T @ x)


def row_loss(w, qw, H):
    e = w - calibrate.dequant(qw)
    return np.einsum("nk,kj,nj->n", e, H, e)


def test_refit_lowers_the_weighted_error(monkeypatch):
    w, factor = problem()
    H = factor[1]
    monkeypatch.setattr(calibrate, "LS_ROUNDS", 0)
    plain = calibrate.gptq(w, factor, "s4")
    monkeypatch.undo()
    assert calibrate.LS_ROUNDS >= 1
    refit = calibrate.gptq(w, factor, "s4")
    l0, l1 = row_loss(w, plain, H), row_loss(w, refit, H)
    assert (l1 <= l0 * (1 + 1e-9)).all()
    assert l1.sum() < 0.97 * l0.sum(), (l1.sum(), l0.sum())
    assert not np.array_equal(plain[1], refit[1])                  # the scales did move
    assert np.array_equal(plain[2], refit[2])                      # the row scales are kept


def test_ls_scale_is_the_least_squares_step():
    t = rng.standard_normal((5, 64))
    q = np.clip(np.round(t / 0.3), -8, 7)
    q[2, :32] = 0.0                                                # a group of zero codes keeps its scale
    d = rng.uniform(0.5, 2.0, 64)
    ws = np.full(5, 0.3 / 50)
    gs = np.full((5, 2), 50.0)
    new = calibrate.ls_group_scales(t, q, d, ws, gs)
    assert new[2, 0] == 50.0
    for n, g in [(0, 0), (1, 1), (4, 0)]:
        sl = slice(32 * g, 32 * g + 32)
        err = lambda s: (d[sl] * (t[n, sl] - s * q[n, sl]) ** 2).sum()     # noqa: E731
        s = new[n, g] * ws[n]
        assert err(s) <= min(err(s - ws[n]), err(s + ws[n]))        # the best int8 multiple of ws
    assert (np.abs(new) >= 1).all() and (np.abs(new) <= 127).all()


@pytest.fixture(scope="module")
def s4_lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("s4")
    so = d / "t.so"
    subprocess.run(["cc", "-O2", "-fPIC", "-shared", "-std=c99", "-Wall", "-Werror", "-ffp-contract=off", "-I",
                    str(ROOT / "firmware"), "-o", str(so), *[str(ROOT / "firmware" / f) for f in MATVEC_S4 + MATVEC_S4NL
                                                             if f.endswith(".c")]], check=True)
    ffi = cffi.FFI()
    ffi.cdef("void tsl_matvec_s4_s32(const int8_t *x, const uint8_t *w, const int8_t *gs, int32_t *dst, "
             "int32_t N, int32_t K);")
    return ffi, ffi.dlopen(str(so))


def test_format_is_the_kernels(s4_lib):
    ffi, L = s4_lib
    w, factor = problem()
    packed, gs, ws = calibrate.gptq(w, factor, "s4")
    ref = quant_rows_s4(w, "test")
    assert [(a.dtype, a.shape) for a in (packed, gs, ws)] == [(a.dtype, a.shape) for a in ref]
    codes = unpack_s4(packed)
    assert codes.min() >= -8 and codes.max() <= 7
    assert (np.abs(gs.astype(np.int32)) >= 1).all() and (np.abs(gs.astype(np.int32)) <= 127).all()
    x = rng.integers(-127, 128, K).astype(np.int8)
    acc = np.zeros(N, np.int32)
    p = lambda a, t: ffi.cast(t + " *", ffi.from_buffer(a))        # noqa: E731
    L.tsl_matvec_s4_s32(p(x, "int8_t"), p(packed, "uint8_t"), p(gs, "int8_t"), p(acc, "int32_t"), N, K)
    want = (codes.astype(np.int64).reshape(N, -1, 32) * x.astype(np.int64).reshape(-1, 32)).sum(2)
    assert np.array_equal(acc, nx.matvec_s4_s32(x, packed, gs, 32))
    assert np.array_equal(acc, (want * gs).sum(1))
