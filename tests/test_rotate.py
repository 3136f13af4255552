"""compile --rotate: the randomized block Walsh-Hadamard rotation of the MLP product (issue 13).

The fwht op's float32 and integer kernels: numpy mirror == C bit for bit (the float kernel in every
build that has a path of its own: host portable, AVX2, NEON on SIMDe, rpi5 under qemu), the mirror
against the float64 matrix H D within rounding; the folding W D H / block reads the rotated product
as W reads the plain one; rotated builds (float and integer numerics, calibrated) == reference on the host and
on emulated boards; the manifest and `tinyslm info` say it. Its quality is guarded in test_quality.py.
Calibrated float builds also rotate the attention output in the layers calibration chooses
(attention_f32, fwht, quant; wo on rotated columns): bit-exact on the host (decode, prefill, threads)
and on a Cortex-M4F and NEON aarch64; never on the integer-only step.
"""
import subprocess
import sys

import cffi
import numpy as np
import pytest

import kernel_cases as kc
from conftest import ROOT
from conftest_tools import require_tool, require_toolchain
from tinyslm import numerics as nx
from tinyslm import numerics_int as ni
from tinyslm.boards import load_board
from tinyslm.codegen import MATVEC_S4, MATVEC_S4NL
from tinyslm.quantize import rot_block, rot_signs, rotate_cols, rotate_rows

rng = np.random.default_rng(13)


def hadamard_dense(K, block, bits):
    """the float64 matrix H D [K, K] of the rotation, built from the Sylvester recursion"""
    H = np.ones((1, 1))
    while len(H) < block:
        H = np.block([[H, H], [H, -H]])
    return np.kron(np.eye(K // block), H) * np.where(nx.sign_bits(bits, K), -1.0, 1.0)[None, :]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("fwht")
    so = d / "t.so"
    fw = ROOT / "firmware"
    subprocess.run(["cc", "-O2", "-fPIC", "-shared", "-std=c99", "-Wall", "-Werror", "-ffp-contract=off", "-I", str(fw),
                    "-o", str(so), str(fw / "tsl_fwht_f32.c"), str(fw / "tsl_int_ops.c"), str(fw / "tsl_matvec_s8.c"),
                    *[str(fw / f) for f in MATVEC_S4 + MATVEC_S4NL if f.endswith(".c")]], check=True)
    ffi = cffi.FFI()
    ffi.cdef("void tsl_fwht_f32(float *x, int32_t n, int32_t block, const uint8_t *signs);"
             "void tsl_ifwht(int32_t *x, int32_t n, int32_t block, const uint8_t *signs);")
    return ffi, ffi.dlopen(str(so))


def test_blocks_and_signs():
    assert [rot_block(k) for k in (352, 128, 4096 * 3, 8192, 12, 7)] == [32, 128, 4096, 4096, 0, 0]
    s = rot_signs(352)
    assert s.dtype == np.uint8 and s.shape == (44,)
    bits = nx.sign_bits(s, 352)
    assert 0.4 < bits.mean() < 0.6 and (rot_signs(352) == s).all() and (rot_signs(352, 14) != s).any()
    assert (rot_signs(128) == np.packbits(nx.sign_bits(s, 128), bitorder="little")).all()   # one sequence per seed


@pytest.mark.parametrize("K", [32, 352, 128])
def test_fwht_is_h_d_and_the_fold_undoes_it(K):
    block, bits = rot_block(K), rot_signs(K)
    x = (rng.standard_normal(K) * np.exp(rng.standard_normal(K) * 2)).astype(np.float32)
    M = hadamard_dense(K, block, bits)
    y = nx.fwht(x, block, bits)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, M @ x.astype(np.float64), rtol=0, atol=1e-5 * np.abs(x).sum())
    np.testing.assert_allclose(rotate_rows(x[None], block, bits)[0], M @ x, rtol=1e-12, atol=1e-9)
    w = rng.standard_normal((5, K))
    np.testing.assert_allclose(rotate_cols(w, block, bits) @ (M @ x), w @ x, rtol=1e-9, atol=1e-9)
    assert np.abs(y).max() < 0.5 * np.abs(x).max() * np.sqrt(block)   # not a no-op: an outlier is spread


def _vectors(K):
    out = [(rng.standard_normal(K) * s).astype(np.float32) for s in (1.0, 1e-3, 300.0)]
    spike = np.zeros(K, np.float32)
    spike[3] = 7.5
    return out + [spike, np.zeros(K, np.float32)]


@pytest.mark.parametrize("K", [352, 128, 64])
def test_fwht_f32_c_equals_mirror(lib, K):
    ffi, L = lib
    block, bits = rot_block(K), rot_signs(K)
    for x in _vectors(K):
        c = x.copy()
        L.tsl_fwht_f32(ffi.cast("float *", ffi.from_buffer(c)), K, block, ffi.from_buffer(bits))
        assert c.tobytes() == nx.fwht(x, block, bits).tobytes()


@pytest.mark.parametrize("K", [352, 128])
def test_ifwht_c_equals_mirror_in_range(lib, K):
    """bit for bit with numerics_int.fwht; within half a Q16 unit per stage of H D x / block (each
    halving rounds by at most 1/2 and halves the error it receives), never beyond max |x| (the
    extremes saturated both ways)"""
    ffi, L = lib
    block, bits = rot_block(K), rot_signs(K)
    M = hadamard_dense(K, block, bits)
    xs = [np.clip(np.round(v.astype(np.float64) * 65536), -2 ** 31 + 1, 2 ** 31 - 1).astype(np.int32) for v in _vectors(K)]
    xs += [np.full(K, 2 ** 31 - 1, np.int32), np.where(nx.sign_bits(bits, K), 2 ** 31 - 1, -2 ** 31 + 1).astype(np.int32)]
    for x in xs:
        c = x.copy()
        L.tsl_ifwht(ffi.cast("int32_t *", ffi.from_buffer(c)), K, block, ffi.from_buffer(bits))
        m = ni.fwht(x, block, bits)
        assert (c == m).all()
        assert np.abs(m).max() <= np.abs(x.astype(np.int64)).max()
        assert np.abs(m - M @ x.astype(np.float64) / block).max() <= 0.5 * np.log2(block)


# (n, block): every vector path's stage pattern (NEON: LD4 stages 1-2, pairs, a last single stage;
# AVX2: scalar stages below 8), n not a multiple of the vector width or of 16, blocks of 8 .. 512
SIZES = [(8, 8), (24, 8), (16, 16), (352, 32), (96, 32), (128, 64), (192, 64), (128, 128), (1536, 512), (40, 8),
         (12, 4), (6, 2)]


@pytest.fixture(scope="module")
def fwht_program(tmp_path_factory):
    B = kc.Builder()
    for n, block in SIZES:
        bits = rot_signs(n, seed=n)
        for x in _vectors(n)[:4]:
            B.add(f"fwht n={n} block={block} |x|={np.abs(x).max():.3g}", nx.fwht(x, block, bits).astype(np.float32),
                  build=lambda A, n=n, block=block, bits=bits:
                  f"tsl_fwht_f32((float *)out, {n}, {block}, {A(bits, 'uint8_t')});", init=x)
    src = kc.write_program(B.cases, tmp_path_factory.mktemp("fwht_cases") / "fwht_cases.c", seed=13)
    src.write_text(src.read_text().replace('#include "tsl_kernels.h"', '#include "tsl_kernels.h"\n#include "tsl_fwht.h"', 1))
    return B.cases, src


@pytest.mark.parametrize("name", kc.FLOAT_BUILDS)
def test_fwht_f32_every_path_equals_mirror(name, fwht_program, tmp_path, monkeypatch):
    bad = kc.run_build(name, fwht_program[0], fwht_program[1], ["tsl_fwht_f32.c", "tsl_matvec_s8.c"], tmp_path,
                       monkeypatch)
    assert not bad, "\n".join(bad[:20])


# ---- whole builds ----

@pytest.fixture(scope="module")
def builds(example, tmp_path_factory):
    from tinyslm.pipeline import compile_model
    d = tmp_path_factory.mktemp("rot")
    out = {}
    for name, opts in (("float", dict(numerics="float")), ("int", dict(numerics="int")),
                       ("float2", dict(numerics="float", mlp_residual=True)), ("int2", dict(numerics="int", mlp_residual=True))):
        out[name] = d / name
        compile_model(example, out[name], "host", 64, "int8", quiet=True, rotate=True,
                      mlp_residual=opts.pop("mlp_residual", False), **opts)
    return out


def _verify_host(build, steps=12):
    from tinyslm.hostsim import HostModel
    from tinyslm.pipeline import load_build
    from tinyslm.verify import verify_host
    man, prog = load_build(build)
    return man, prog, verify_host(prog, HostModel(build, man), [1, 2, 3], steps)


@pytest.mark.parametrize("name, kind", [("float", "fwht"), ("int", "i_fwht"), ("float2", "fwht"), ("int2", "i_fwht")])
def test_rotated_build_equals_reference(builds, name, kind):
    man, prog, rep = _verify_host(builds[name])
    assert rep["steps"] == 12
    rot = [o for o in prog.ops if o.kind == kind]
    assert len(rot) == man["model"]["n_layers"] and all(o.attrs["block"] == 32 for o in rot)
    assert man["model"]["rotate"]["sites"][0] == dict(layer=0, site="mid", block=32)
    src = (builds[name] / "model" / "tsl_model.c").read_text()
    assert ("tsl_fwht_f32(" in src) == (kind == "fwht") and ("tsl_ifwht(" in src) == (kind == "i_fwht")
    if kind == "i_fwht":        # the halved rotation: w_down's row scales (both passes) times the block, exactly
        from tinyslm.lower_int import fx_rows
        from tinyslm.pipeline import load_build
        down = [o for o in prog.ops if o.kind == "i_matvec" and o.name.startswith("l0.w_down")]
        assert len(down) == (2 if name == "int2" else 1)
        _, fprog = load_build(builds["float2" if name == "int2" else "float"])
        ws = fprog.weights["l0.w_down.ws"].astype(np.float64)
        for o in down:
            assert o.attrs["wfx_w"] == "l0.w_down.ws.fx32" and (prog.weights[o.attrs["wfx_w"]] == fx_rows(ws * 32)).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_rotated_prefill_equals_reference(builds, threads):
    """tsl_prefill's tiles (the fwht op run token by token inside them) and the worker pool"""
    from tinyslm.hostsim import HostModel
    from tinyslm.pipeline import load_build
    from tinyslm.reference import Reference
    man, prog = load_build(builds["float"])
    host = HostModel(builds["float"], man, threads)
    toks = [0, 5, 9, 77, 3, 12, 200, 41, 8, 19, 6, 300, 2]
    assert host.prefill(toks).tobytes() == Reference(prog).prefill(toks).tobytes()


def test_rotation_changes_only_what_it_says(example, builds, tmp_path):
    """off: no fwht op, no sign table, no tsl_fwht_f32.c; on: the same program plus one fwht per
    layer, one sign table, and w_down's weights (only those) different"""
    from tinyslm.pipeline import compile_model, load_build
    compile_model(example, tmp_path / "off", "host", 64, "int8", quiet=True, mlp_residual=False, rotate=False)
    man0, p0 = load_build(tmp_path / "off")
    man1, p1 = load_build(builds["float"])
    assert man0["model"]["rotate"] is None and not (tmp_path / "off" / "runtime" / "tsl_fwht_f32.c").exists()
    assert (builds["float"] / "runtime" / "tsl_fwht_f32.c").exists()
    assert [o.name for o in p1.ops if o.kind != "fwht"] == [o.name for o in p0.ops]
    assert set(p1.weights) - set(p0.weights) == {"rot352.signs"}
    changed = {n for n in p0.weights if p0.weights[n].tobytes() != p1.weights[n].tobytes()}
    assert changed and all(".w_down." in n for n in changed), changed
    assert man0["arch_hash"] != man1["arch_hash"]


def test_calibrated_rotated_build_equals_reference(example, tmp_path, monkeypatch):
    """GPTQ on the rotated columns: still only weight values, bit-exact"""
    from tinyslm import calibrate
    from tinyslm.pipeline import compile_model
    monkeypatch.setattr(calibrate, "CAL_TOKENS", 256)
    compile_model(example, tmp_path / "c", "host", 64, "int8", quiet=True, rotate=True, mlp_residual=False,
                  calibrate="default")
    man, prog, rep = _verify_host(tmp_path / "c", 8)
    assert rep["steps"] == 8 and man["model"]["rotate"]


@pytest.mark.parametrize("args, on", [(["--mlp-passes", "1"], True), ([], False), (["--rotate", "on"], True),
                                      (["--mlp-passes", "1", "--rotate", "off"], False)])
def test_cli_rotate_and_info(example, tmp_path, args, on):
    """--rotate auto (the default): on where the MLP product is quantized once"""
    r = subprocess.run([sys.executable, "-m", "tinyslm", "compile", str(example), "-o", str(tmp_path / "b"),
                        "--max-seq", "32", *args], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "tinyslm", "info", str(tmp_path / "b")], capture_output=True, text=True,
                       cwd=ROOT)
    assert ("rotation: on" in r.stdout and "the MLP product of 4 layers (blocks of 32)" in r.stdout) == on
    assert ("rotation: off" in r.stdout) != on


def test_cli_rotate_refused(example, tmp_path):
    r = subprocess.run([sys.executable, "-m", "tinyslm", "compile", str(example), "-o", str(tmp_path / "c"),
                        "--rotate", "sideways"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "--rotate" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("board, build", [("mps2-an386", "float"), ("virt-a76", "float"), ("esp32c3", "int"),
                                          ("mps2-an385", "int")])
def test_rotated_build_bit_exact_on_board(builds, board, build):
    """the same C cross-compiled: tsl_fwht_f32 on a Cortex-M4F and NEON aarch64, tsl_ifwht on an
    FPU-less RISC-V and Cortex-M3"""
    B = load_board(board)
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    r = subprocess.run([sys.executable, "-m", "tinyslm", "verify", str(builds[build]), "--board", board, "--steps", "24"],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"OK {board}: 24 steps bit-exact" in r.stdout


def test_default_passes_follow_the_weights(example, tmp_path):
    """int4 by default: one MLP pass, rotated (the weights' error dwarfs the product's rounding: the
    second pass is +22 % MACs for no lower a KLD, 0.010684 against 0.010590 on the example); int8:
    two passes, not rotated; an explicit --mlp-passes wins"""
    from tinyslm.pipeline import compile_model, load_build
    got = {}
    for name, w, kw in (("i4", "int4", {}), ("i8", "int8", {}), ("i4x2", "int4", dict(mlp_residual=True))):
        compile_model(example, tmp_path / name, "host", 32, w, quiet=True, **kw)
        man, prog = load_build(tmp_path / name)
        downs = sum(o.kind.endswith("matvec") and o.name.startswith("l0.w_down") for o in prog.ops)
        got[name] = (downs, bool(man["model"]["rotate"]))
    assert got == {"i4": (1, True), "i8": (2, False), "i4x2": (2, False)}, got


# ---- the attention output's rotation (calibrated builds, float numerics) ----

@pytest.fixture(scope="module")
def att_build(example, tmp_path_factory):
    """int4, calibrated on 512 tokens: calibration rotates the attention output where wo's simulated
    error is lower (measured on the example: layers 0, 1 and 3 of 4 at 8,192 tokens)"""
    from tinyslm import calibrate
    from tinyslm.pipeline import compile_model
    d = tmp_path_factory.mktemp("att")
    mp = pytest.MonkeyPatch()
    mp.setattr(calibrate, "CAL_TOKENS", 512)
    try:
        compile_model(example, d / "b", "host", 64, "int4", quiet=True, calibrate="default")
        compile_model(example, d / "int", "host", 64, "int4", quiet=True, calibrate="default", numerics="int")
    finally:
        mp.undo()
    return d


def test_attention_rotation_build_equals_reference(att_build):
    """attention_f32 -> fwht (one block of heads x head size, 128) -> quant -> wo on rotated columns,
    in exactly the layers the manifest lists; the host build == reference, decode and prefill on 1 and 2 threads"""
    from tinyslm.hostsim import HostModel
    from tinyslm.reference import Reference
    man, prog, rep = _verify_host(att_build / "b", 10)
    assert rep["steps"] == 10
    att = sorted(s["layer"] for s in man["model"]["rotate"]["sites"] if s["site"] == "att")
    assert att and all(s["block"] == 128 for s in man["model"]["rotate"]["sites"] if s["site"] == "att")
    assert sorted(o.layer for o in prog.ops if o.kind == "attention_f32") == att
    assert sorted(o.layer for o in prog.ops if o.name.endswith("att.fwht")) == att
    assert sorted(o.layer for o in prog.ops if o.kind == "attention") == [i for i in range(4) if i not in att]
    assert "rot128.signs" in prog.weights
    toks = [0, 5, 9, 77, 3, 12, 200, 41, 8, 19, 6, 300, 2]
    want = Reference(prog).prefill(toks).tobytes()
    for threads in (1, 2):
        host = HostModel(att_build / "b", man, threads)
        assert host.prefill(toks).tobytes() == want, threads
        host.close()
    r = subprocess.run([sys.executable, "-m", "tinyslm", "info", str(att_build / "b")], capture_output=True, text=True,
                       cwd=ROOT)
    assert f"the attention output of {len(att)} layers (blocks of 128)" in r.stdout, r.stdout


def test_attention_rotation_not_on_the_integer_step(att_build, example):
    """the integer-only step has no lowering of attention_f32: calibration there keeps int8 attention
    outputs, and lower_int names the op it cannot lower"""
    from tinyslm.errors import TslError
    from tinyslm.frontend import frontend
    from tinyslm.lower_int import lower_int
    from tinyslm.quantize import quantize
    man, prog, rep = _verify_host(att_build / "int", 6)
    assert not any(s["site"] == "att" for s in man["model"]["rotate"]["sites"])
    assert not any(o.kind == "attention_f32" for o in prog.ops)
    with pytest.raises(TslError, match="l0.attn: kind attention_f32 has no integer lowering"):
        lower_int(quantize(frontend(example), 32, "int8", rotate_att=(0,)))


@pytest.mark.parametrize("board", ["mps2-an386", "virt-a76"])
def test_attention_rotation_bit_exact_on_board(att_build, board):
    """tsl_attention_f32 and the 128-point fwht cross-compiled: Cortex-M4F, NEON aarch64"""
    B = load_board(board)
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    r = subprocess.run([sys.executable, "-m", "tinyslm", "verify", str(att_build / "b"), "--board", board, "--steps", "16"],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"OK {board}: 16 steps bit-exact" in r.stdout
