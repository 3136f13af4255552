"""Every kernel on every ISA path, bit-exact against tinyslm/numerics.py.

One generated C program (tests/kernel_cases.py) runs (a) natively with the portable paths, (b) natively
with the NEON paths on SIMDe and the DSP path on emulated instructions, (c) natively on x86-64 once per
run-time path (TSL_HOST_SIMD: portable, AVX2, AVX-512 VNNI; a path this CPU lacks skips), (d) on every emulated board
under its emulator. The disassembly of each SIMD board's kernels must show its SIMD instructions.
Missing toolchains skip, or fail with TSL_REQUIRE_TOOLCHAINS=1 (tests/conftest_tools.py).
"""
import dataclasses
import platform
import re
from pathlib import Path

import pytest

import kernel_cases as kc
from conftest_tools import require_tool, require_toolchain
from tinyslm import targets
from tinyslm.boards import ROOT, list_boards, load_board
from tinyslm.codegen import MATVEC_S4, MATVEC_S4NL

FIRMWARE = ROOT / "firmware"
KERNELS = [FIRMWARE / f for f in ("tsl_matvec_s8.c", *[s for s in MATVEC_S4 + MATVEC_S4NL if s.endswith(".c")],
                                  "tsl_attention_s8.c",
                                  "tsl_elementwise_f32.c", "tsl_norm_f32.c")]
SIMDE = "/usr/include/simde/arm/neon.h"
HOST_PATHS = {
    "portable": {"TSL_PORTABLE": None},
    "dsp-emulated": {"TSL_EMULATE_DSP": None},
    "riscv-scalar4": {"TSL_EMULATE_SCALAR4": None},
    "arm-nodsp-emulated": {"TSL_EMULATE_NODSP": None},
    "neon-simde": {"TSL_SIMDE_NEON": None},
    "dotprod-simde": {"TSL_SIMDE_NEON": None, "TSL_SIMDE_DOTPROD": None},
}
# TSL_HOST_SIMD value -> (level the kernels must report, /proc/cpuinfo flags that level needs)
X86_PATHS = {"portable": (0, set()), "avx2": (1, {"avx2"}),
             "avx512vnni": (2, {"avx2", "avx512f", "avx512bw", "avx512_vnni"})}
EMULATED = [n for n in list_boards() if load_board(n).emulated]
SIMD_BOARDS = [n for n in EMULATED if load_board(n).toolchain.get("simd_mnemonics")]
# Real boards whose stand-in is a different, bigger core (rp2040: Cortex-M0+ code, Thumb-1, runs on
# the M3 of mps2-an385): their kernels are built with their own flags and run on the stand-in.
SUBSET_BOARDS = [n for n in list_boards() if not load_board(n).emulated and load_board(n).stand_in
                 and load_board(n).cpu != load_board(load_board(n).stand_in).cpu]


def on_stand_in(name):
    """The stand-in board, compiling with `name`'s cflags (its start-up code, linker script and
    emulator stay the stand-in's)."""
    board = load_board(name)
    stand = load_board(board.stand_in)
    return dataclasses.replace(stand, name=f"{name}-on-{stand.name}",
                               toolchain={**stand.toolchain, "cflags": board.toolchain["cflags"]})


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    cases = kc.make_cases(seed=0)
    return cases, kc.write_program(cases, tmp_path_factory.mktemp("kernels") / "kernel_cases.c", seed=0)


@pytest.fixture(scope="module")
def built(program, tmp_path_factory):
    """(board, path) -> executable, built once per module."""
    cache, root = {}, tmp_path_factory.mktemp("builds")

    def get(board, path="default"):
        if (board.name, path) not in cache:
            require_toolchain(board)
            cache[board.name, path] = targets.build(board, [program[1], *KERNELS], [FIRMWARE],
                                                    root / f"{board.name}-{path}", defines=HOST_PATHS.get(path),
                                                    name="kernel_cases", extra_cflags=["-Wall", "-Werror"])
        return cache[board.name, path]
    return get


def run_and_check(board, exe, cases):
    cmd = board.emulator["cmd"][0]
    if cmd != "{elf}":
        require_tool(cmd, board.emulator.get("install", ""))
    rc, out = targets.run(board, exe, timeout=120)
    text = out.decode("utf-8", "replace")
    assert rc == 0, f"{board.name}: exit {rc}: {text[-500:]}"
    bad = kc.check(cases, text)
    assert not bad, f"{board.name}: {len(bad)} of {len(cases)} cases differ from numpy:\n" + "\n".join(bad[:20])
    return text


@pytest.mark.parametrize("path", HOST_PATHS)
def test_host_path(path, program, built):
    if "simde" in path:
        require_tool(SIMDE, "libsimde-dev")
    host = load_board("host")
    run_and_check(host, built(host, path), program[0])


def cpu_flags():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.parametrize("cap", X86_PATHS)
def test_host_x86_path(cap, program, built, monkeypatch):
    """The default host build on x86-64, each run-time path forced by TSL_HOST_SIMD."""
    if platform.machine() != "x86_64":
        pytest.skip(f"x86-64 paths: this machine is {platform.machine()}")
    level, need = X86_PATHS[cap]
    if need - cpu_flags():
        pytest.skip(f"this CPU lacks {sorted(need - cpu_flags())} for the {cap} path")
    monkeypatch.setenv("TSL_HOST_SIMD", cap)
    host = load_board("host")
    text = run_and_check(host, built(host), program[0])
    took, bad = kc.check_x86(text)
    assert took == level, f"TSL_HOST_SIMD={cap}: the kernels took path {took}, want {level}"
    assert not bad, "\n".join(bad)


def test_host_x86_instructions(built):
    """The default host build holds the AVX2 and VNNI kernels (chosen at run time)."""
    if platform.machine() != "x86_64":
        pytest.skip(f"x86-64 paths: this machine is {platform.machine()}")
    host = load_board("host")
    asm = kernel_disassembly(targets.disassemble(host, built(host)))
    mnem = set(re.findall(r"\t([a-z][a-z0-9]*)", asm))
    for m in ("vpmaddwd", "vpmaddubsw", "vpdpbusd"):
        assert m in mnem, f"host: no {m} in the kernels' disassembly"


@pytest.mark.parametrize("name", EMULATED)
def test_board(name, program, built):
    board = load_board(name)
    run_and_check(board, built(board), program[0])


@pytest.mark.parametrize("name", SUBSET_BOARDS)
def test_board_on_stand_in(name, program, built):
    """The kernels as built for the real core, bit-exact on the stand-in's emulator, and free of the
    stand-in's instructions that the real core lacks (simd_forbidden)."""
    board = on_stand_in(name)
    exe = built(board)
    run_and_check(board, exe, program[0])
    require_tool(board.toolchain["objdump"][0], board.toolchain.get("install", ""))
    mnem = {w.split(".")[0] for w in re.findall(r"\t([a-z][a-z0-9.]*)", kernel_disassembly(targets.disassemble(board, exe)))}
    tc = load_board(name).toolchain
    assert set(tc["simd_mnemonics"]) <= mnem, f"{name}: no {sorted(set(tc['simd_mnemonics']) - mnem)} in the kernels"
    bad = mnem & set(tc.get("simd_forbidden", []))
    assert not bad, f"{name}: {sorted(bad)} in kernels built for {load_board(name).cpu}"


def kernel_disassembly(text):
    """The disassembly of the tsl_* functions only (not libc)."""
    blocks = re.split(r"\n(?=[0-9a-f]+ <)", text)
    return "\n".join(b for b in blocks if re.match(r"[0-9a-f]+ <tsl_", b))


@pytest.mark.parametrize("name", SIMD_BOARDS)
def test_simd_instructions(name, built):
    board = load_board(name)
    require_tool(board.toolchain["objdump"][0], board.toolchain.get("install", ""))
    asm = kernel_disassembly(targets.disassemble(board, built(board)))
    words = set(re.findall(r"\t([a-z][a-z0-9.]*)", asm))
    mnem = {w.split(".")[0] for w in words}
    for m in board.toolchain["simd_mnemonics"]:
        assert m in mnem, f"{name}: no {m} in the kernels' disassembly"
    for m in board.toolchain.get("simd_forbidden", []):
        assert m not in mnem, f"{name}: {m} in the kernels' disassembly, but the CPU lacks it"


def test_portable_build_has_no_simd(built):
    """-DTSL_PORTABLE really takes the portable paths (checked on the M4: no SMLAD)."""
    board = load_board("mps2-an386")
    require_tool(board.toolchain["cc"], board.toolchain.get("install", ""))
    exe = built(board, "portable")
    asm = kernel_disassembly(targets.disassemble(board, exe))
    assert "smlad" not in asm
