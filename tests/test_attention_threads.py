"""Decode attention split over heads on the thread pool (tsl_par_attention_s8): 9 query heads in 3
KV groups (GQA) of head size 64 behind a 16-slot sliding window, decoded past the window so that
the ring wraps, must give the reference's logits and KV cache bytes on 1, 2, 3 and 4 threads: on the
host (this CPU's x86 path, the pool's thresholds lowered so that every step splits) and on the rpi5
build under qemu-aarch64 (NEON dotprod, the default thresholds)."""
import pytest

from conftest_tools import require_tool, require_toolchain
from tinyslm.boards import load_board

WINDOW, STEPS = 16, 34
SHAPE = dict(num_attention_heads=9, num_key_value_heads=3, head_dim=64, sliding_window=WINDOW)   # on mistral_window
FINE = ["-DTSL_POOL_MIN_MACS=64", "-DTSL_POOL_MIN_ELEMS=16"]


@pytest.fixture(scope="module")
def builds(request, tmp_path_factory):
    pytest.importorskip("torch")
    import hf_models
    from test_hf_models import cached
    from tinyslm.pipeline import compile_model
    d = tmp_path_factory.mktemp("att_threads")
    onnx = cached(request, "mistral_window-h9-kv3-hs64-w16",
                  lambda p: hf_models.export_full("mistral_window", p, SHAPE, max_t=64))
    out = {b: d / b for b in ("host", "rpi5")}
    for b, o in out.items():
        compile_model(onnx, o, b, 48, "int8", quiet=True)
    return out


def test_scratch_has_a_slice_per_core(builds):
    """The attention scratch holds one qq/sc/pw slice per core (4) and the window is a ring shorter
    than the steps; the default thresholds split the 9 heads once T >= 8 (part sizes 3, 3, 3 at 3
    and 4 threads, 5 and 4 at 2)."""
    from tinyslm.builddir import load_build
    _, prog = load_build(builds["host"])
    att = [o for o in prog.ops if o.kind == "attention"]
    assert att and all(o.attrs["slices"] == 4 and o.attrs["n_heads"] == 9 and o.attrs["n_kv"] == 3 and
                       o.attrs["hs"] == 64 and o.attrs["max_seq"] == WINDOW for o in att)
    for o in att:
        qq, sc, pw = (prog.bufs[n] for n in o.outs[2:5])
        assert (qq.nbytes, sc.nbytes, pw.nbytes) == (4 * 64, 4 * 4 * WINDOW, 4 * 4 * WINDOW)
    assert 9 * 8 * 2 * 64 // 4096 >= 2 and STEPS > 2 * WINDOW


def test_host_bit_exact_for_every_thread_count(builds):
    """thresholds lowered: every step splits, from T = 1 (the rpi5 test below keeps the defaults)"""
    from tinyslm.builddir import load_build
    from tinyslm.hostsim import HOST_CFLAGS, HostModel
    from tinyslm.verify import verify_host
    man, prog = load_build(builds["host"])
    for n in (1, 2, 3, 4):
        h = HostModel(builds["host"], man, threads=n, cflags=HOST_CFLAGS + FINE)
        rep = verify_host(prog, h, [5, 6, 7], STEPS)          # logits and KV cache: raises Mismatch
        assert rep["steps"] == STEPS and rep["kv_bytes"] > 0
        h.close()


def test_rpi5_under_qemu_bit_exact_for_every_thread_count(builds):
    from tinyslm.builddir import load_build
    from tinyslm.verify import verify_target
    B = load_board("rpi5")
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    man, prog = load_build(builds["rpi5"])
    for n in (1, 2, 3, 4):
        rep = verify_target(builds["rpi5"], man, prog, B, [5, 6, 7], STEPS, log=lambda *a: None, threads=n)
        assert rep["steps"] == STEPS


def test_each_part_runs_on_its_own_slice(builds):
    """Scratch poisoned before one attention op at T = 16: on n threads the 9 heads run as
    ceil(9 / ceil(9 / n)) parts, and part i leaves its last head's Q15 weights in pw slice i alone
    (a race on a shared slice need not show in the bytes above; this shows deterministically)."""
    import numpy as np

    from tinyslm.builddir import load_build
    from tinyslm.hostsim import HOST_CFLAGS, HostModel
    man, prog = load_build(builds["host"])
    i = next(k for k, o in enumerate(prog.ops) if o.kind == "attention")
    pw = man["memory"]["buffers"][prog.ops[i].outs[4]]
    poison = np.full(pw["bytes"] // 4, -0x12345678, np.int32)
    for n, parts in ((1, 1), (2, 2), (3, 3), (4, 3)):
        h = HostModel(builds["host"], man, threads=n, cflags=HOST_CFLAGS + FINE)
        h.reset()
        pos = WINDOW + 3
        for p in range(pos):
            h.step(p % 7 + 1, p)
        for k in range(i):
            h.run_op(k, 9, pos)
        h.arena[pw["offset"]:pw["offset"] + pw["bytes"]] = poison.tobytes()
        h.run_op(i, 9, pos)
        got = h.buffer(prog.ops[i].outs[4]).reshape(4, WINDOW)
        assert [bool((s != poison[0]).all()) for s in got] == [j < parts for j in range(4)], n
        assert ((got[:parts] >= 0) & (got[:parts] <= 32768)).all()
        h.close()
