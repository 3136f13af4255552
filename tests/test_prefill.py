"""Batched prefill (tsl_prefill, boards with a prefill_tile): T prompt tokens in tiles, the matvecs
as GEMMs over the tile, must leave the KV cache and the last logits byte for byte as T decode steps
do: the reference's prefill is the decode loop by definition; the host build (every x86 path, 1, 3
and 4 threads, tile-sized and ragged T, a continued prompt, a sliding-window ring that wraps inside
a tile) and the rpi5 build under qemu-aarch64 (NEON dotprod GEMMs) are checked against it."""
import zlib

import numpy as np
import pytest

from conftest_tools import require_tool, require_toolchain
from tinyslm.boards import load_board

TILE = load_board("host").extra["prefill_tile"]
LENGTHS = (1, 3, TILE, TILE + 1, 37)


@pytest.fixture(scope="module")
def builds(example, tmp_path_factory):
    from tinyslm.pipeline import compile_model
    d = tmp_path_factory.mktemp("prefill")
    out = {}
    for board, fmt in (("host", "int8"), ("host", "int4"), ("rpi5", "int8"), ("rpi5", "int4")):
        out[board, fmt] = d / f"{board}-{fmt}"
        compile_model(example, out[board, fmt], board, 64, fmt, quiet=True)
    return out


_LOADED = {}


def _loaded(build):
    from tinyslm.builddir import load_build
    if build not in _LOADED:
        _LOADED[build] = load_build(build)
    return _LOADED[build]


def _ids(vocab, n, seed=0):
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, n)]


_STATES = {}


def _ref_state(prog, ids):
    """(last logits, {kv buffer: bytes}) of the decode loop in the reference; one loop per program
    and id sequence, its state kept after every step"""
    from tinyslm.reference import Reference
    key = (id(prog), tuple(ids))
    if key not in _STATES:
        ref, states = Reference(prog), {}
        full = _FULL.get(id(prog), ids)
        for pos, t in enumerate(full):
            lg = ref.step(t, pos)
            states[tuple(full[:pos + 1])] = (lg, {n: ref.buf[n].tobytes() for n, b in prog.bufs.items() if b.kind == "kv"})
        for k, v in states.items():
            _STATES[id(prog), k] = v
    return _STATES[key]


_FULL = {}      # id(prog) -> the longest id sequence a test will ask about (one reference loop)


def test_reference_prefill_is_the_decode_loop(builds):
    from tinyslm.builddir import load_build
    from tinyslm.reference import Reference
    _, prog = load_build(builds["host", "int8"])
    ids = _ids(prog.meta["vocab"], 20)
    lg, kv = _ref_state(prog, ids)
    ref = Reference(prog)
    a = ref.prefill(ids[:7])
    b = ref.prefill(ids[7:], 7)
    assert a.shape == b.shape == lg.shape and not np.array_equal(a, b)
    assert b.tobytes() == lg.tobytes()
    assert all(ref.buf[n].tobytes() == v for n, v in kv.items())


@pytest.mark.parametrize("simd", ["", "avx2", "portable"])
@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_host_prefill_bit_exact(builds, fmt, simd, monkeypatch):
    from tinyslm.hostsim import HostModel
    if simd:
        monkeypatch.setenv("TSL_HOST_SIMD", simd)
    man, prog = _loaded(builds["host", fmt])
    ids = _ids(prog.meta["vocab"], max(LENGTHS) + 5)
    _FULL[id(prog)] = ids
    for threads in ((1, 4) if not simd else (3,)):
        h = HostModel(builds["host", fmt], man, threads=threads)
        for T in LENGTHS:
            lg, kv = _ref_state(prog, ids[:T])
            h.reset()
            got = h.prefill(ids[:T])
            assert got.tobytes() == lg.tobytes(), (threads, T, "logits")
            for n, v in kv.items():
                assert h.buffer(n).tobytes() == v, (threads, T, n)
        # a prompt continued: prefill from pos0 > 0 on the cache the first part left
        lg, kv = _ref_state(prog, ids[:TILE + 5])
        h.reset()
        h.prefill(ids[:TILE - 2])
        assert h.prefill(ids[TILE - 2:TILE + 5], TILE - 2).tobytes() == lg.tobytes()
        assert all(h.buffer(n).tobytes() == v for n, v in kv.items())
        h.close()


def test_ring_wrapping_inside_a_tile(tmp_path):
    """A sliding window of 8 KV slots: tiles of 16 tokens wrap it, token by token."""
    pytest.importorskip("torch")
    import hf_models
    from tinyslm.builddir import load_build
    from tinyslm.hostsim import HostModel
    from tinyslm.pipeline import compile_model
    onnx = hf_models.export_full("mistral_window", tmp_path / "m.onnx", max_t=64)
    compile_model(onnx, tmp_path / "b", "host", 48, "int8", quiet=True)
    man, prog = load_build(tmp_path / "b")
    assert any(b.kind == "kv" for b in prog.bufs.values())
    assert min(op.attrs["max_seq"] for op in prog.ops if op.kind == "kv_store") < TILE
    ids = _ids(prog.meta["vocab"], 40, seed=3)
    _FULL[id(prog)] = ids
    h = HostModel(tmp_path / "b", man, threads=2)
    for T in (5, TILE + 3, 40):
        lg, kv = _ref_state(prog, ids[:T])
        h.reset()
        assert h.prefill(ids[:T]).tobytes() == lg.tobytes(), T
        assert all(h.buffer(n).tobytes() == v for n, v in kv.items()), T
    h.close()


def test_prefill_refuses_bad_arguments(builds):
    from tinyslm.errors import TslError
    from tinyslm.hostsim import HostModel
    h = HostModel(builds["host", "int8"])
    with pytest.raises(TslError, match="status -6"):
        h.prefill([1, 2, 3], 62)                 # positions 62..64 of 64
    with pytest.raises(TslError, match="status -7"):
        h.prefill([1, 10 ** 6])
    assert h.lib.tsl_prefill_work_size() >= TILE * h.lib.tsl_arena_size()


MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tsl_model.h"
static uint8_t arena[TSL_ARENA_BYTES] TSL_ALIGNED, work[TSL_PREFILL_WORK_BYTES] TSL_ALIGNED;
static int8_t kv[TSL_KV_BYTES] TSL_ALIGNED;
static const int32_t ids[] = {%(IDS)s};
static uint32_t crc(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int b = 0; b < 8; b++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}
int main(int argc, char **argv)
{
    static const int32_t lens[] = {%(LENS)s};
    tsl_model m;
    const float *lg;
    if (tsl_init(&m, NULL, arena, kv) != TSL_OK || tsl_set_threads(&m, atoi(argv[1])) != TSL_OK) return 1;
    for (unsigned i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        tsl_reset(&m);
        if (tsl_prefill(&m, ids, lens[i], 0, work, &lg) != TSL_OK) return 2;
        printf("T %%d %%08x %%08x\n", (int)lens[i], (unsigned)crc((const uint8_t *)lg, 4 * TSL_VOCAB),
               (unsigned)crc((const uint8_t *)kv, TSL_KV_BYTES));
    }
    tsl_set_threads(&m, 1);
    (void)argc;
    return 0;
}
"""


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_rpi5_under_qemu_prefill_bit_exact(builds, fmt, tmp_path):
    import json
    from tinyslm import targets
    from tinyslm.builddir import load_build
    from tinyslm.hostsim import HostModel
    B = load_board("rpi5")
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    build = builds["rpi5", fmt]
    man, prog = load_build(build)
    ids = _ids(prog.meta["vocab"], max(LENGTHS))
    src = build / "app" / "prefill_main.c"
    src.write_text(MAIN % dict(IDS=", ".join(map(str, ids)), LENS=", ".join(map(str, LENGTHS))))
    srcs = [build / s for s in json.loads((build / "manifest.json").read_text())["sources"]] + [src]
    exe = targets.build(B, srcs, [build / "runtime", build / "model"], tmp_path, name="prefill")
    h = HostModel(build, man)               # the same build's decode loop on this machine (== reference)
    want = []
    for T in LENGTHS:
        h.reset()
        for pos, t in enumerate(ids[:T]):
            lg = h.step(t, pos)
        want.append(f"T {T} {zlib.crc32(lg.tobytes()):08x} {zlib.crc32(h.kv()):08x}")
    for threads in (4,):
        exe_cmd = targets.emulator_cmd(B, exe, False) + [str(threads)]
        from tinyslm import procs
        r = procs.run(exe_cmd, timeout=600)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().split("\n")[:len(LENGTHS)] == want, threads
