"""Multi-threaded decode (boards with cores > 1): the matvecs split into row ranges over a pthreads
pool must give the reference's bytes (logits, KV cache, sampled tokens) for every thread count, on
the host and under qemu-aarch64; bare-metal boards get no pool at all."""
import subprocess
import sys

import pytest

from conftest import ROOT
from conftest_tools import require_tool, require_toolchain
from tinyslm.boards import load_board

STEPS = 24


@pytest.fixture(scope="module")
def builds(example, tmp_path_factory):
    from tinyslm.pipeline import compile_model
    d = tmp_path_factory.mktemp("threads")
    out = {}
    for board, fmt in (("host", "int8"), ("rpi5", "int8"), ("rpi5", "int4")):
        out[board, fmt] = d / f"{board}-{fmt}"
        compile_model(example, out[board, fmt], board, 64, fmt, quiet=True)
    return out


# the pool's thresholds lowered so that every pooled op of the example splits into 4 parts
FINE = ["-DTSL_POOL_MIN_MACS=64", "-DTSL_POOL_MIN_ELEMS=16"]


@pytest.mark.parametrize("fine", [False, True], ids=["default", "fine"])
@pytest.mark.parametrize("key", [("host", "int8"), ("rpi5", "int8"), ("rpi5", "int4")])
def test_host_bit_exact_for_every_thread_count(builds, key, fine):
    from tinyslm.builddir import load_build
    from tinyslm.hostsim import HOST_CFLAGS, HostModel
    from tinyslm.verify import verify_host
    man, prog = load_build(builds[key])
    for n in (1, 2, 3, 4):
        h = HostModel(builds[key], man, threads=n, cflags=HOST_CFLAGS + FINE if fine else None)
        assert h.lib.tsl_threads(h.model) == n
        rep = verify_host(prog, h, [1, 2, 3], STEPS)         # raises Mismatch on any differing byte
        assert rep["steps"] == STEPS
        h.close()
        assert h.lib.tsl_threads(h.model) == 1


def test_split_is_exercised(builds):
    """The example's matvecs are big enough to be split: part sizes of the pool's rule."""
    from tinyslm.builddir import load_build
    _, prog = load_build(builds["rpi5", "int8"])
    split = [o for o in prog.ops if o.kind == "matvec" and o.attrs["N"] * o.attrs["K"] // 4096 >= 2
             and o.attrs["N"] > 16]
    assert len(split) >= len([o for o in prog.ops if o.kind == "matvec"]) // 2


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_rpi5_under_qemu_bit_exact_for_every_thread_count(builds, fmt):
    B = load_board("rpi5")
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    for n in (1, 2, 3, 4):
        r = subprocess.run([sys.executable, "-m", "tinyslm", "verify", str(builds["rpi5", fmt]), "--steps", "24",
                            "--board", "rpi5", "--threads", str(n)], capture_output=True, text=True, cwd=ROOT,
                           timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "OK rpi5: 24 steps bit-exact" in r.stdout
        assert (f", {n} threads" in r.stdout) == (n > 1)


def test_bare_metal_build_has_no_pool(example, tmp_path):
    from tinyslm.pipeline import compile_model
    out = tmp_path / "m4"
    compile_model(example, out, "mps2-an386", 64, "int8", quiet=True)
    assert not (out / "runtime" / "tsl_threads.c").exists()
    src = (out / "model" / "tsl_model.c").read_text() + (out / "model" / "tsl_model.h").read_text()
    assert "pool" not in src and "tsl_par_" not in src and "tsl_set_threads" not in src
    r = subprocess.run([sys.executable, "-m", "tinyslm", "run", str(out), "--ids", "1,2", "--max-tokens", "2",
                        "--threads", "2"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and "no thread pool" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_run_same_tokens_for_any_thread_count(builds):
    outs = []
    for n in ("1", "4"):
        r = subprocess.run([sys.executable, "-m", "tinyslm", "run", str(builds["host", "int8"]), "--ids", "1,2,3",
                            "--max-tokens", "12", "--temperature", "0.8", "--seed", "5", "--print-ids", "-t", n],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1] and outs[0].count(",") == 12


def test_cores_need_pthreads(tmp_path, monkeypatch):
    """A bare-metal board cannot declare more than one core: the pool needs pthreads."""
    import tinyslm.boards as boards
    from tinyslm.errors import TslError
    src = (boards.BOARDS / "mps2-an386.toml").read_text().replace("cores = 1", "cores = 2")
    (tmp_path / "mps2-an386.toml").write_text(src)
    monkeypatch.setattr(boards, "BOARDS", tmp_path)
    with pytest.raises(TslError, match="cores = 2 needs pthreads"):
        boards.load_board("mps2-an386")
