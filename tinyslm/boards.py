"""Boards as data: boards/<name>.toml -> Board."""
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TslError

BOARDS = Path(__file__).resolve().parent.parent / "boards"


@dataclass
class Board:
    name: str
    description: str = ""
    cpu: str = ""
    arch: str = ""
    features: list = field(default_factory=list)
    kind: str = "host"
    clock_hz: int = 0
    flash_bytes: int = 0
    ram_bytes: int = 0
    psram_bytes: int = 0
    emulated: bool = False
    toolchain: dict = field(default_factory=dict)
    target: dict = field(default_factory=dict)
    emulator: dict = field(default_factory=dict)
    flash: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def list_boards():
    return sorted(p.stem for p in BOARDS.glob("*.toml"))


def load_board(name):
    p = BOARDS / f"{name}.toml"
    if not p.is_file():
        raise TslError(f"unknown board '{name}'; known: {', '.join(list_boards())}")
    try:
        d = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TslError(f"{p}: {e}")
    known = set(Board.__dataclass_fields__)
    return Board(**{k: v for k, v in d.items() if k in known}, extra={k: v for k, v in d.items() if k not in known})
