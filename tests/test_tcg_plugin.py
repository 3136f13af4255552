"""The TCG plugin (benchmarks/tcg) builds, loads into qemu, and counts exactly: a loop of known
length under qemu-riscv32 (user mode, where -icount does not count) and qemu-system-arm
(mps2-an385), with and without a marker function, and per function from the ELF's symbols."""
import subprocess
import sys

import pytest

from conftest import ROOT
from conftest_tools import require_tool
from tinyslm.boards import load_board

sys.path.insert(0, str(ROOT / "benchmarks" / "tcg"))
import tcgcount  # noqa: E402

N = 1000
# _start calls mark, loops N times (li + N x (addi, bnez)), calls mark again, exits. Blocks:
# [jal] [li addi bnez] N-1 x [addi bnez] [jal] [li li ecall], mark [ret] twice.
RV = f"""
    .globl _start
    .type _start, %function
_start:
    jal ra, mark
    li t0, {N}
1:  addi t0, t0, -1
    bnez t0, 1b
    jal ra, mark
    li a0, 0
    li a7, 93
    ecall
    .size _start, .-_start
    .type mark, %function
mark:
    ret
    .size mark, .-mark
"""
RV_TOTAL = 1 + 3 + 2 * (N - 1) + 1 + 3 + 2
RV_MARKED = 1 + 3 + 2 * (N - 1) + 1          # from the first mark's block to the second's (excluded)

M3 = f"""
    .syntax unified
    .thumb
    .section .vectors, "a"
    .word 0x20001000
    .word _start + 1
    .text
    .thumb_func
    .globl _start
    .type _start, %function
_start:
    movw r2, #{N}
1:  subs r2, r2, #1
    bne 1b
    movs r0, #0x18              /* semihosting SYS_EXIT, ADP_Stopped_ApplicationExit */
    ldr r1, =0x20026
    bkpt 0xab
    b .
    .size _start, .-_start
"""
M3_TOTAL = 1 + 2 * N + 3


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    require_tool("gcc", "gcc")
    return tcgcount.build_plugin(tmp_path_factory.mktemp("tcg"))


def test_user_mode_loop(plugin, tmp_path):
    cc = require_tool("riscv64-unknown-elf-gcc", "gcc-riscv64-unknown-elf")
    qemu = require_tool("qemu-riscv32", "qemu-user")
    (tmp_path / "loop.S").write_text(RV)
    exe = tmp_path / "loop"
    subprocess.run([cc, "-march=rv32i", "-mabi=ilp32", "-nostdlib", "-static", "-o", str(exe),
                    str(tmp_path / "loop.S")], check=True)
    c = tcgcount.count([qemu, str(exe)], plugin)
    assert c.returncode == 0
    assert c.total == RV_TOTAL, f"counted {c.total}, the loop executes {RV_TOTAL}"
    assert list(c.per_pc.values()).count(N) == 2, "the loop's addi and bnez, N times each"
    funcs = tcgcount.symbols(exe)
    mark = next(f[0] for f in funcs if f[2] == "mark")
    assert tcgcount.by_function(c.per_pc, funcs) == {"_start": RV_TOTAL - 2, "mark": 2}
    m = tcgcount.count([qemu, str(exe)], plugin, mark=mark)
    assert m.total == RV_MARKED
    assert tcgcount.by_function(m.per_pc, funcs) == {"_start": RV_MARKED - 1, "mark": 1}
    # the two calls of mark, found in the disassembly; mark's instructions charged to its caller
    sites = tcgcount.call_sites(load_board("esp32c3"), exe)
    assert sorted(sites.values()) == ["mark", "mark"]
    assert tcgcount.charge_callees(c.per_pc, funcs, sites, lambda f: f == "mark") == {"_start": RV_TOTAL}


def test_charge_callees_by_calls():
    """A routine's instructions go to its callers in proportion to their calls of it."""
    funcs = [(0, 10, "a"), (10, 20, "b"), (100, 110, "f")]
    per_pc = {2: 3, 5: 7, 12: 1, 15: 4, 100: 4, 101: 4, 102: 4, 103: 4}   # f runs 4 times, 4 instructions each
    sites = {2: "f", 12: "f"}                                           # a calls f 3 times, b once
    assert tcgcount.charge_callees(per_pc, funcs, sites, lambda n: n == "f") == {"a": 10 + 12, "b": 5 + 4}


def test_system_mode_loop(plugin, tmp_path):
    cc = require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    qemu = require_tool("qemu-system-arm", "qemu-system-arm")
    (tmp_path / "loop.S").write_text(M3)
    (tmp_path / "loop.ld").write_text("SECTIONS { . = 0; .vectors : { KEEP(*(.vectors)) } .text : { *(.text*) } }\n")
    exe = tmp_path / "loop.elf"
    subprocess.run([cc, "-mcpu=cortex-m3", "-mthumb", "-nostdlib", "-nostartfiles", "-T", str(tmp_path / "loop.ld"),
                    "-o", str(exe), str(tmp_path / "loop.S")], check=True)
    c = tcgcount.count([qemu, "-M", "mps2-an385", "-display", "none", "-serial", "none", "-monitor", "none",
                        "-semihosting-config", "enable=on,target=native", "-kernel", str(exe)], plugin, timeout=60)
    assert c.returncode == 0
    assert c.total == M3_TOTAL, f"counted {c.total}, the loop executes {M3_TOTAL}"
    assert tcgcount.by_function(c.per_pc, tcgcount.symbols(exe)) == {"_start": M3_TOTAL}


def test_bad_arguments_refused(plugin, tmp_path):
    qemu = require_tool("qemu-riscv32", "qemu-user")
    r = subprocess.run([qemu, "-plugin", f"{plugin},bogus=1", "/nonexistent"], capture_output=True, text=True)
    assert r.returncode != 0 and "arguments are out=FILE" in r.stdout + r.stderr
