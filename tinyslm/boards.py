"""Boards as data: boards/<name>.toml -> Board. The Python code never branches on a board's name."""
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TslError

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "boards"


@dataclass
class Board:
    name: str
    description: str
    cpu: str
    arch: str
    kind: str                       # host | linux | baremetal | espidf
    cores: int = 1                  # > 1: the generated code has a pthreads pool (host and linux only)
    features: list = field(default_factory=list)
    clock_hz: int = 0
    flash_bytes: int = 0            # 0: not checked
    ram_bytes: int = 0
    psram_bytes: int = 0
    emulated: bool = False          # this exact config runs here (natively or under qemu)
    toolchain: dict = field(default_factory=dict)   # cc, ar, cflags, ldflags, objcopy, objdump, simd_mnemonics
    target: dict = field(default_factory=dict)      # startup (folder), linker_script
    emulator: dict = field(default_factory=dict)    # cmd, icount_cmd; "{elf}" is the executable
    flash: dict = field(default_factory=dict)       # tool, notes
    extra: dict = field(default_factory=dict)       # the other top-level keys, e.g. stand_in
    path: Path = None

    @property
    def stand_in(self):
        """For a real board: the emulated board that shares its kernels and flags."""
        return self.extra.get("stand_in", "")

    @property
    def bench_stand_in(self):
        """An emulated board that counts instructions, where this board's emulator cannot."""
        return self.extra.get("bench_stand_in", "")


def list_boards():
    """Names of all boards, sorted."""
    return sorted(p.stem for p in BOARDS.glob("*.toml"))


def load_board(name):
    if isinstance(name, Board):
        return name
    p = BOARDS / f"{name}.toml"
    if not p.is_file():
        raise TslError(f"unknown board '{name}'; known: {', '.join(list_boards())}")
    try:
        d = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TslError(f"{p}: {e}") from None
    known = set(Board.__dataclass_fields__) - {"path", "extra"}
    extra = {k: d.pop(k) for k in list(d) if k not in known}
    missing = {"name", "description", "cpu", "arch", "kind", "toolchain"} - set(d)
    if missing:
        raise TslError(f"{p}: missing keys {sorted(missing)}")
    if d["name"] != name:
        raise TslError(f"{p}: name is '{d['name']}', expected '{name}'")
    cores = d.get("cores", 1)
    if not isinstance(cores, int) or isinstance(cores, bool) or not 1 <= cores <= 64:
        raise TslError(f"{p}: cores = {cores!r}: an integer in [1, 64]")
    if cores > 1 and d["kind"] not in ("host", "linux"):
        raise TslError(f"{p}: cores = {cores} needs pthreads: kind host or linux, not {d['kind']}")
    cc = d["toolchain"].get("cc", "")
    if "/" in cc and not cc.startswith("/"):      # a driver shipped in this repository, named from its root
        d["toolchain"]["cc"] = str(ROOT / cc)
    return Board(**d, extra=extra, path=p)
