"""Build, run and disassemble programs for a board, from the facts in boards/<name>.toml.

    build(board, sources, include_dirs, out_dir)   cc + cflags + ldflags (+ the board's start-up folder
                                                   and linker script) -> one executable
    run(board, exe)                                 under the board's emulator (host: directly), with
                                                   semihosting output on stdout -> (returncode, stdout)
    disassemble(board, exe)                         the board's objdump
Nothing here branches on a board's name: kinds differ only by what their TOML lists.
"""
import os
import shutil
import tempfile
from pathlib import Path

from . import procs
from .boards import ROOT, load_board
from .errors import TslError
from .objcache import compile_objects

PLATFORM_INCLUDE = ROOT / "firmware" / "targets"     # tsl_platform.h


def _need(tool, install):
    path = shutil.which(tool)
    if not path:
        raise TslError(f"{tool} not found: install {install or 'it'} (see README)")
    return path


def _startup(board):
    """-> (start-up sources, linker flags, -D flags) of the board's [target] section; [target.defines]
    holds the start-up code's facts (clocks, PLL, wait states, UART pins), one macro each."""
    t = board.target
    srcs, ld = [], []
    defs = [f"-D{k}={v}" for k, v in t.get("defines", {}).items()]
    if t.get("startup"):
        d = ROOT / t["startup"]
        srcs = sorted(p for p in d.iterdir() if p.suffix in (".c", ".S"))
    if t.get("linker_script"):
        ls = ROOT / t["linker_script"]
        ld = [f"-L{ls.parent}", f"-T{ls}"]
    return srcs, ld, defs


def build(board, sources, include_dirs, out_dir, defines=None, name="app", extra_cflags=()):
    """Compile and link `sources` (.c, .S) into OUT_DIR/NAME[.elf] for `board`; returns its path.
    defines: {NAME: value or None}. Bare-metal boards get their start-up code and linker script,
    linux boards a static binary, the host a native executable."""
    board = load_board(board)
    tc = board.toolchain
    if board.kind == "espidf":
        raise TslError(f"board {board.name}: ESP-IDF builds go through idf.py ({board.flash.get('notes', '')})")
    cc = _need(tc["cc"], tc.get("install"))
    for t in tc.get("tools", []):       # what a driver script runs
        _need(t, tc.get("install"))
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [Path(s).resolve() for s in sources]
    exe = out_dir / (name + (".elf" if board.kind == "baremetal" else ""))
    st_srcs, st_ld, defs = _startup(board)
    defs += [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in (defines or {}).items()]
    incs = [f"-I{Path(d).resolve()}" for d in [*include_dirs, PLATFORM_INCLUDE]]
    tmp = out_dir / f".{exe.name}.tmp-{os.urandom(8).hex()}"
    work = Path(tempfile.mkdtemp(prefix=f".{exe.name}.objs-", dir=out_dir))
    # cwd: the sources' common folder, against which .incbin paths in assembly sources resolve
    cwd = os.path.commonpath([str(s.parent) for s in sources]) if sources else out_dir
    flags = [*tc.get("cflags", []), *extra_cflags]
    try:
        objs = compile_objects(cc, [*flags, *incs, *defs], [*st_srcs, *sources], work, cwd,
                               what=f"{board.name}: build of {exe.name}")
        cmd = [cc, *flags, *map(str, objs), *st_ld, *tc.get("ldflags", []), "-o", str(tmp)]
        r = procs.run(cmd, cwd=cwd, timeout=1800)
        if r.returncode:
            raise TslError(f"{board.name}: link of {exe.name} failed:\n{' '.join(cmd)}\n"
                           f"{r.stderr.decode(errors='replace').strip()[:3000]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.replace(tmp, exe)     # replaces a planted link, never writes through it
    return exe


def emulator_cmd(board, exe, icount=False):
    board = load_board(board)
    if not board.emulated:
        alt = f"; run its stand-in '{board.stand_in}'" if board.stand_in else ""
        raise TslError(f"board {board.name} cannot run here (emulated = false){alt}")
    key = "icount_cmd" if icount else "cmd"
    cmd = board.emulator.get(key)
    if not cmd:
        alt = f"; use '{board.bench_stand_in}'" if icount and board.bench_stand_in else ""
        raise TslError(f"board {board.name}: no [emulator] {key} in {board.path.name}{alt}")
    if cmd[0] != "{elf}":
        _need(cmd[0], board.emulator.get("install"))
    return [str(exe) if a == "{elf}" else a for a in cmd]


def run(board, exe, timeout=120, icount=False):
    """Run `exe` for `board` -> (returncode, stdout bytes). Raises TslError on a timeout."""
    board = load_board(board)
    cmd = emulator_cmd(board, exe, icount)
    try:
        r = procs.run(cmd, timeout=timeout)
    except procs.Timeout:
        raise TslError(f"{board.name}: {Path(exe).name} timed out after {timeout} s under {cmd[0]}") from None
    return r.returncode, r.stdout


def disassemble(board, exe):
    board = load_board(board)
    od = board.toolchain["objdump"]
    _need(od[0], board.toolchain.get("install"))
    r = procs.run([*od, str(exe)], timeout=600)
    if r.returncode:
        raise TslError(f"{board.name}: {od[0]} failed on {exe}: {r.stderr.decode(errors='replace').strip()[:500]}")
    return r.stdout.decode(errors="replace")
