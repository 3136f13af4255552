"""--int4 nl: int4 codes on a non-linear grid of 16 int8 levels per tensor (tinyslm/int4nl.py,
firmware/tsl_matvec_s4nl.c), and --weights int5: 5-bit codes into 32 levels (s5nl,
firmware/tsl_matvec_s5nl.c). The quantizer keeps the accumulator bound and beats the uniform grid's
error on Gaussian rows; calibrated GPTQ never does worse than its first run; builds are bit-exact
against the reference on the host (threads, prefill tiles), the integer step and emulated boards.
Every ISA path of the kernel itself: tests/kernel_cases.py (test_kernels_targets)."""
import numpy as np
import pytest

from conftest_tools import require_tool, require_toolchain
from tinyslm import calibrate, int4nl, numerics
from tinyslm.boards import load_board
from tinyslm.quantize import quant_rows_s4

STEPS = 12


@pytest.mark.parametrize("K", [32, 256, 1024, 2048, 8192])
def test_s5nl_rows_keep_the_bound_and_the_format(K):
    w = np.random.default_rng(K).standard_normal((6, K))
    p, kv, gs, ws = int4nl.quant_rows(w, "t", "s5nl")
    assert p.dtype == np.uint8 and p.shape == (6, K * 5 // 8) and kv.shape == (32,) and kv.dtype == np.int8
    assert np.all(np.diff(kv.astype(int)) >= 0) and np.abs(kv.astype(int)).max() == 127
    assert np.abs(gs.astype(int)).max() <= int4nl.gmax(K) and np.all(gs != 0)
    c = int4nl.codes(p, 32)
    assert c.min() >= 0 and c.max() <= 31 and len(np.unique(c)) > 16      # the fifth bit is used
    # the layout by hand: group g's 20 bytes, nibbles then the fifth bits as a little-endian uint32
    g0 = K // 32 - 1
    g = p[0, 20 * g0:20 * g0 + 20]
    hb = int.from_bytes(g[16:].tobytes(), "little")
    assert [(g[k // 2] >> 4 * (k % 2) & 15) | (hb >> k & 1) << 4 for k in range(32)] == list(c[0, 32 * g0:32 * g0 + 32])
    worst = (np.abs(kv.astype(np.int64)[c]) * np.repeat(np.abs(gs.astype(np.int64)), 32, 1)).sum(1) * 128
    assert worst.max() < 2 ** 31
    x = np.random.default_rng(0).integers(-128, 128, K).astype(np.int8)
    exact = (kv.astype(np.int64)[c] * np.repeat(gs.astype(np.int64), 32, 1)) @ x.astype(np.int64)
    assert np.array_equal(numerics.matvec_nl_s32(x, p, kv, gs, 32).astype(np.int64), exact)
    e5 = ((int4nl.dequant((p, kv, gs, ws)) - w) ** 2).mean()
    e4 = ((int4nl.dequant(int4nl.quant_rows(w, "t")) - w) ** 2).mean()
    assert e5 < 0.4 * e4, (e5, e4)                                      # about a quarter: one bit more


@pytest.mark.parametrize("K", [32, 256, 1024, 2048, 8192])
def test_quant_rows_keep_the_bound_and_the_format(K):
    w = np.random.default_rng(K).standard_normal((12, K))
    p, kv, gs, ws = int4nl.quant_rows(w, "t")
    assert p.dtype == np.uint8 and p.shape == (12, K // 2) and kv.dtype == gs.dtype == np.int8
    assert np.all(np.diff(kv.astype(int)) >= 0) and np.abs(kv.astype(int)).max() == 127
    assert gs.shape == (12, K // 32) and np.all(gs != 0) and np.abs(gs.astype(int)).max() <= int4nl.gmax(K)
    # the int32 row sum at its worst (every x -128 against the row's own levels and scales)
    codes = np.empty((12, K), int)
    codes[:, 0::2], codes[:, 1::2] = p & 15, p >> 4
    worst = (np.abs(kv.astype(np.int64)[codes]) * np.repeat(np.abs(gs.astype(np.int64)), 32, 1)).sum(1) * 128
    assert worst.max() < 2 ** 31
    x = np.full(K, -128, np.int8)
    acc = numerics.matvec_s4nl_s32(x, p, kv, gs, 32).astype(np.int64)
    exact = (kv.astype(np.int64)[codes] * np.repeat(gs.astype(np.int64), 32, 1)) @ x.astype(np.int64)
    assert np.array_equal(acc, exact)


def test_nl_grid_beats_uniform_on_gaussian_rows():
    w = np.random.default_rng(1).standard_normal((64, 512))
    e_nl = ((int4nl.dequant(int4nl.quant_rows(w, "t")) - w) ** 2).mean()
    e_u = ((calibrate.dequant(quant_rows_s4(w, "t")) - w) ** 2).mean()
    print(e_nl, e_u)
    assert e_nl < 0.9 * e_u


def test_gptq_nl_is_no_worse_than_rounding_to_nearest():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2048, 128)) @ rng.standard_normal((128, 128)) * 0.3   # correlated inputs
    w = rng.standard_normal((48, 128))
    U, H, _ = calibrate.inverse_factor(X.T @ X)
    q = calibrate.gptq(w, (U, H, np.zeros(128, bool)), "s4nl")
    assert len(q) == 4 and q[1].dtype == np.int8

    def loss(wq):
        d = wq - w
        return np.einsum("nk,kj,nj->", d, H, d)
    assert loss(calibrate.dequant(q)) < loss(int4nl.dequant(int4nl.quant_rows(w, "t")))


@pytest.fixture(scope="module")
def builds(example, tmp_path_factory):
    from tinyslm.pipeline import compile_model
    d = tmp_path_factory.mktemp("int4nl")
    out = {}
    for board, weights, cal in (("host", "int4", None), ("rpi5", "mixed", "default"), ("esp32c3", "int4", None),
                                ("mps2-an386", "int4", None), ("host", "int5", None), ("rpi5", "int5", None),
                                ("esp32c3", "int5", None), ("mps2-an386", "int5", None)):
        key = board + ("-int5" if weights == "int5" else "")
        out[key] = d / key
        compile_model(example, out[key], board, 64, weights, quiet=True, calibrate=cal, int4="nl",
                      bytes_per_weight=0.62 if weights == "mixed" else None)
    return out


def test_builds_say_their_grid(builds):
    from tinyslm.builddir import load_build
    from tinyslm.codegen import arch_hash
    man, prog = load_build(builds["host"])
    mv = [o for o in prog.ops if o.kind == "matvec"]
    assert {o.attrs["fmt"] for o in mv} == {"s4nl", "s8"}      # the tied head stays int8
    assert prog.meta["int4_grid"] == "nl"
    assert arch_hash(prog.meta) != arch_hash({**prog.meta, "int4_grid": None})
    _, mixed = load_build(builds["rpi5"])
    assert {"s4nl", "s8"} <= {o.attrs["fmt"] for o in mixed.ops if o.kind == "matvec"} <= {"s4nl", "s5nl", "s8"}
    _, p5 = load_build(builds["host-int5"])
    assert {o.attrs["fmt"] for o in p5.ops if o.kind == "matvec"} == {"s5nl", "s8"}


@pytest.mark.parametrize("board", ["host", "rpi5", "host-int5", "rpi5-int5"])
def test_host_bit_exact_threads(builds, board):
    from tinyslm.builddir import load_build
    from tinyslm.hostsim import HostModel
    from tinyslm.verify import verify_host
    man, prog = load_build(builds[board])
    for n in ((1,) if board.startswith("host") else (1, 2, 4)):
        h = HostModel(builds[board], man, threads=n)
        assert verify_host(prog, h, [1, 2, 3], STEPS)["steps"] == STEPS
        h.close()


@pytest.mark.parametrize("board", ["rpi5", "rpi5-int5"])
def test_rpi5_prefill_bit_exact(builds, board):
    """tsl_par_gemm_s4nl_f32 / _s5nl_f32 over a tile against the reference's decode loop"""
    from tinyslm.builddir import load_build
    from tinyslm.hostsim import HostModel
    from tinyslm.reference import Reference
    man, prog = load_build(builds[board])
    ids = [int(t) for t in np.random.default_rng(0).integers(0, prog.meta["vocab"], 19)]
    ref = Reference(prog)
    want = ref.prefill(ids)
    for threads in (1, 3):
        h = HostModel(builds[board], man, threads=threads)
        assert h.prefill(ids).tobytes() == want.tobytes()
        h.close()


@pytest.mark.parametrize("board", ["esp32c3", "mps2-an386", "rpi5", "esp32c3-int5", "mps2-an386-int5", "rpi5-int5"])
def test_emulated_board_bit_exact(builds, board):
    """esp32c3: the integer step (tsl_imatvec_s4nl / _s5nl); mps2-an386: Cortex-M4; rpi5: its pool under qemu"""
    from tinyslm.builddir import load_build
    from tinyslm.verify import verify_target
    B = load_board(board.removesuffix("-int5"))
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    man, prog = load_build(builds[board])
    rep = verify_target(builds[board], man, prog, B, [1, 2, 3], 6, log=lambda m: None, threads=2 if B.name == "rpi5" else 1)
    assert rep["steps"] == 6
