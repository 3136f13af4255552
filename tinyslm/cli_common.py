"""What the command modules (cli.py, cli_device.py) share: argument types, the build and its
tokenizer, the prompt's ids, progress on stderr."""
import argparse
import math
import sys
from pathlib import Path

from .errors import TslError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "tiny_llama.onnx"


def _ids(s):
    try:
        ids = [int(x) for x in s.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise TslError(f"--ids: expected comma-separated integers, got {s[:80]!r}") from None
    if not ids:
        raise TslError(f"--ids: no token ids in {s[:80]!r}")
    return ids


def _int_in(lo, hi, what=""):
    """argparse type: an integer in [lo, hi]."""
    def parse(s):
        try:
            v = int(s, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s[:40]!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} out of range: {what or f'{lo} to {hi}'}")
        return v
    return parse


def _finite(lo=-math.inf, hi=math.inf):
    """argparse type: a finite float in [lo, hi] (no nan, no inf)."""
    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {s[:40]!r}") from None
        if not (math.isfinite(v) and lo <= v <= hi):
            raise argparse.ArgumentTypeError(f"{s[:40]} is not a finite number in [{lo:g}, {hi:g}]")
        return v
    return parse


SEED = _int_in(0, 2 ** 64 - 1, "a seed is 0 to 2^64-1")


def _progress(done, total, what="step"):
    if sys.stderr.isatty() or done == total:
        print(f"\r  {what} {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


def _open(out, threads=1):
    from .builddir import load_build
    from .hostsim import HostModel
    man, prog = load_build(out)
    return man, prog, HostModel(out, man, threads)


def _tokenizer(out, required=True):
    p = Path(out) / "tokenizer.json"
    if p.is_file():
        from .tokenizer import Tokenizer
        return Tokenizer.from_file(p)
    if required:
        raise TslError(f"{out}: compiled without a tokenizer; pass --ids, or compile with --tokenizer")
    return None


def _prompt_ids(args, tok, vocab, max_seq=None):
    if args.ids:
        ids = _ids(args.ids)
    else:
        ids = ([tok.bos_id] if tok.bos_id is not None else []) + tok.encode(args.prompt)
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise TslError(f"token id {bad[0]} out of range [0, {vocab})")
    if not ids:
        raise TslError("empty prompt")
    if max_seq is not None and len(ids) > max_seq:
        raise TslError(f"the prompt is {len(ids)} tokens, the build holds {max_seq} positions (--max-seq)")
    return ids
