"""Executed instructions per guest function under qemu, from the TCG plugin tsl_tcg_count.c.

    so = build_plugin(workdir)                       # gcc -shared -fPIC, once per run
    c = count(cmd, so, mark=addr)                    # cmd: a qemu command line (system or user mode)
    c.total, c.per_vcpu, c.per_pc                    # instructions; {vcpu: n}; {pc: n}
    funcs = symbols(elf)                             # [(start, end, name)] of the ELF's FUNC symbols
    by_function(c.per_pc, funcs) -> {name: n}        # each PC in the function that holds it ("?" if none)
    count_elf(board, exe, mark_symbol=...)           # the three above for a board's emulator command
    call_sites(board, exe) -> {pc: callee}           # direct calls and jumps to a function's start

Works where -icount does not count (qemu-user: qemu-aarch64, qemu-riscv32). The ELF's symbols are
read here (no nm, nothing executed); Thumb function addresses lose their low bit. Under qemu-user a
vcpu is a live thread: the index of a thread that has exited is given to the next one (a persistent
pool keeps one index per thread; threads of 200k, 400k and 600k instructions started together
were counted as 600k and 600k under two indices).
"""
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tinyslm.errors import TslError

PLUGIN_SRC = Path(__file__).resolve().parent / "tsl_tcg_count.c"
API_VERSION = 1


def build_plugin(workdir, cc="gcc"):
    """Compile the plugin into WORKDIR/tsl_tcg_count.so; returns its path."""
    if not shutil.which(cc):
        raise TslError(f"{cc} not found: the TCG plugin is built with the host compiler")
    so = Path(workdir).resolve() / "tsl_tcg_count.so"
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(so), str(PLUGIN_SRC)],
                       capture_output=True, text=True)
    if r.returncode:
        raise TslError(f"building {PLUGIN_SRC.name} failed:\n{r.stderr.strip()[:2000]}")
    return so


@dataclass
class Counts:
    total: int = 0
    per_vcpu: dict = field(default_factory=dict)   # vcpu (user mode: thread) -> instructions
    per_pc: dict = field(default_factory=dict)     # guest pc -> instructions, all vcpus
    per_vcpu_pc: dict = field(default_factory=dict)   # (vcpu, pc) -> instructions
    returncode: int = 0
    stdout: bytes = b""


def parse(text):
    """The plugin's out= file -> Counts (checks its version line and total)."""
    lines = text.splitlines()
    if not lines or lines[0] != f"version {API_VERSION}":
        raise TslError(f"TCG plugin output: first line {lines[:1]}, want 'version {API_VERSION}'")
    c = Counts()
    for line in lines[1:-1]:
        pc, vcpu, n = line.split()
        pc, vcpu, n = int(pc, 16), int(vcpu), int(n)
        c.per_pc[pc] = c.per_pc.get(pc, 0) + n
        c.per_vcpu[vcpu] = c.per_vcpu.get(vcpu, 0) + n
        c.per_vcpu_pc[vcpu, pc] = n
        c.total += n
    if not lines[-1].startswith("total ") or int(lines[-1].split()[1]) != c.total:
        raise TslError("TCG plugin output: truncated (no matching total line)")
    return c


def count(cmd, so, mark=None, timeout=900):
    """Run qemu command `cmd` (its first word the qemu binary) with the plugin -> Counts.
    mark: a guest address; counting runs only between executions of the block there."""
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "counts.txt"
        arg = f"{so},out={out}" + (f",mark={mark:#x}" if mark is not None else "")
        try:
            r = subprocess.run([cmd[0], "-plugin", arg, *cmd[1:]], capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TslError(f"{Path(cmd[0]).name} with the TCG plugin timed out after {timeout} s") from None
        if not out.exists():
            raise TslError(f"{Path(cmd[0]).name} -plugin wrote no counts (exit {r.returncode}): "
                           f"{r.stderr.decode(errors='replace').strip()[:500]}")
        c = parse(out.read_text())
    c.returncode, c.stdout = r.returncode, r.stdout
    return c


def symbols(elf):
    """[(start, end, name)] of the FUNC symbols with a size in ELF file `elf`, sorted by start."""
    b = Path(elf).read_bytes()
    if b[:4] != b"\x7fELF" or b[5] != 1:
        raise TslError(f"{elf}: not a little-endian ELF file")
    is64 = b[4] == 2
    if is64:
        shoff, = struct.unpack_from("<Q", b, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", b, 0x3A)
    else:
        shoff, = struct.unpack_from("<I", b, 0x20)
        shentsize, shnum = struct.unpack_from("<HH", b, 0x2E)
    secs = []
    for i in range(shnum):
        o = shoff + i * shentsize
        if is64:
            _, typ, _, _, off, size, link, _, _, entsize = struct.unpack_from("<IIQQQQIIQQ", b, o)
        else:
            _, typ, _, _, off, size, link, _, _, entsize = struct.unpack_from("<IIIIIIIIII", b, o)
        secs.append((typ, off, size, link, entsize))
    out = []
    for typ, off, size, link, entsize in secs:
        if typ != 2:            # SHT_SYMTAB
            continue
        stroff = secs[link][1]
        for j in range(size // entsize):
            o = off + j * entsize
            if is64:
                name, info, _, _, value, sz = struct.unpack_from("<IBBHQQ", b, o)
            else:
                name, value, sz, info, _, _ = struct.unpack_from("<IIIBBH", b, o)
            if info & 0xF != 2 or sz == 0:     # STT_FUNC
                continue
            end = b.index(b"\0", stroff + name)
            start = value & ~1                  # Thumb: the low bit marks the instruction set
            out.append((start, start + sz, b[stroff + name:end].decode(errors="replace")))
    return sorted(set(out))


def by_function(per_pc, funcs):
    """{pc: n} -> {function name: n}; PCs outside every function count under '?'."""
    starts = [f[0] for f in funcs]
    res = {}
    for pc, n in per_pc.items():
        name = _holder(funcs, starts, pc)
        res[name] = res.get(name, 0) + n
    return res


def count_elf(board, exe, so, mark_symbol=None, timeout=900):
    """Counts of `exe` under `board`'s emulator (the plain command: no -icount needed), and its
    per-function split. mark_symbol: count only between calls of that function."""
    from tinyslm import targets
    funcs = symbols(exe)
    mark = None
    if mark_symbol:
        hits = [f[0] for f in funcs if f[2] == mark_symbol]
        if not hits:
            raise TslError(f"{exe}: no function {mark_symbol}")
        mark = hits[0]
    c = count(targets.emulator_cmd(board, exe), so, mark, timeout)
    return c, by_function(c.per_pc, funcs)


_BRANCH = re.compile(r"^\s*([0-9a-f]+):\s.*?\t(bl|blx|b|b\.w|b\.n|jal|j|call|tail|call0|call4|call8|call12|j\.l)\t"
                     r"(?:ra,)?\s*([0-9a-f]+) <([^>+]+)>\s*$")


def _holder(funcs, starts, pc):
    """The name by_function gives pc (aliases such as __aeabi_fmul / __mulsf3 share one)."""
    import bisect
    i = bisect.bisect_right(starts, pc) - 1
    return funcs[i][2] if i >= 0 and pc < funcs[i][1] else "?"


def call_sites(board, exe):
    """{pc: callee name} of the direct branches in `exe` (calls and tail jumps) that land on a
    function's first instruction, from the board's objdump; the callee named as by_function names
    the instructions there."""
    from tinyslm import targets
    funcs = symbols(exe)
    starts = [f[0] for f in funcs]
    heads = set(starts)
    out = {}
    for line in targets.disassemble(board, exe).splitlines():
        m = _BRANCH.match(line)
        if m and int(m.group(3), 16) in heads:
            out[int(m.group(1), 16)] = _holder(funcs, starts, int(m.group(3), 16))
    return out


def charge_callees(per_pc, funcs, sites, is_callee):
    """Own instructions per function, with the functions for which is_callee(name) holds (e.g. the
    soft-float routines, which call each other) charged to the functions outside them that call
    them: each call of routine r from outside costs r's own instructions per call of r, and the
    group's total is spread in proportion (an estimate: a routine's cost varies with its operands).
    -> {name: instructions}; the group's names are gone."""
    own = by_function(per_pc, funcs)
    group = sum(n for f, n in own.items() if is_callee(f))
    calls_to = {}
    for pc, callee in sites.items():
        calls_to[callee] = calls_to.get(callee, 0) + per_pc.get(pc, 0)
    starts = [f[0] for f in funcs]
    charge = {}
    for pc, callee in sites.items():
        n = per_pc.get(pc, 0)
        if not n or not is_callee(callee) or not calls_to.get(callee):
            continue
        caller = _holder(funcs, starts, pc)
        if is_callee(caller):
            continue
        charge[caller] = charge.get(caller, 0) + n * own.get(callee, 0) / calls_to[callee]
    total = sum(charge.values())
    res = {f: n for f, n in own.items() if not is_callee(f)}
    for f, c in charge.items():
        res[f] = res.get(f, 0) + (group * c / total if total else 0)
    if not total and group:
        res["(uncharged callees)"] = group
    return res
