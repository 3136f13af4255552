"""The compiler, top to bottom: one stage per line."""
import json
import pickle
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import codegen, frontend, plan, quantize
from .errors import TslError

PROGRAM = "program.pkl"     # the IR with its weights: what `verify` replays as the reference


def log(msg, quiet=False):
    if not quiet:
        print(f"  {msg}", flush=True)


def compile_model(model_path, out, board="host", max_seq=None, weights=None, tokenizer=None, quiet=False,
                  activations="int8"):
    """ONNX file -> C project in `out`; returns the manifest. weights: int8 | int4 | None (int4 if
    the graph carries int4 weights, else int8); activations: int8 | int8x2 (see quantize)."""
    from .boards import load_board
    t0 = time.time()
    B = load_board(board)                                                     # target facts, from boards/*.toml
    spec = frontend.frontend(model_path)                                      # ONNX -> float model, checked against onnxruntime
    log(f"frontend: {spec.family}, {spec.n_layers} layers, dim {spec.dim}, heads {spec.n_heads}/{spec.n_kv_heads}, "
        f"vocab {spec.vocab}, {spec.n_params() / 1e6:.2f}M params ({time.time() - t0:.1f}s)", quiet)
    max_seq = _max_seq(spec, max_seq, model_path)
    weights = weights or ("int4" if any("int4" in n for n in spec.quantization) else "int8")
    tok = load_tokenizer(model_path, tokenizer, spec.vocab)
    prog = quantize.quantize(spec, max_seq, weights, activations)             # float model -> integer IR (one decode step)
    gw = prog.meta["graph_weights"]
    if gw["kept"] or gw["requantized"]:
        log(f"graph's integer weights: {gw['kept']} projections kept as they are"
            + (f", {gw['requantized']} requantized from their float values (zero points, block sizes or "
               f"a --weights format tinyslm's {weights} cannot hold as they are)" if gw["requantized"] else ""), quiet)
    pl = plan.plan(prog)                                                      # arena offsets, KV cache layout
    check_fit(B, prog, pl, model_path, weights, max_seq)                      # refuse what the board cannot hold
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))   # same filesystem: rename is atomic
    try:
        man = codegen.generate(prog, pl, tmp, board, B.toolchain["cc"], B.toolchain["cflags"],
                               B.toolchain.get("ar", "ar"), model_path)      # IR + plan -> C sources, weights blob, Makefile
        if tok is not None:
            shutil.copy(tok.source_path, tmp / "tokenizer.json")
        with open(tmp / PROGRAM, "wb") as f:
            pickle.dump(prog, f, protocol=4)
        man.update(tokenizer="tokenizer.json" if tok is not None else None, compile_seconds=round(time.time() - t0, 2))
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=_json))  # written last: marks OUT complete
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out} in {time.time() - t0:.1f}s: weights {man['weights']['bytes']} B, arena {pl.arena_bytes} B "
        f"(lower bound {pl.lower_bound}), KV cache {pl.kv_bytes} B", quiet)
    return man


def _json(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(type(o))


def _replace_dir(tmp, out):
    if out.exists():
        if not (out / "manifest.json").exists() and any(out.iterdir()):
            raise TslError(f"{out}: exists and is not a tinyslm build directory; refusing to overwrite")
        old = out.with_name(f".{out.name}.old-{int(time.time() * 1e6)}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def _max_seq(spec, max_seq, path):
    limit = spec.max_pos or None
    if max_seq is None:
        return min(256, limit) if limit else 256
    if max_seq < 1:
        raise TslError(f"--max-seq must be positive, got {max_seq}")
    if limit and max_seq > limit:
        raise TslError(f"{path}: --max-seq {max_seq} exceeds the {limit} positions the model supports")
    return max_seq


def load_tokenizer(model_path, tokenizer, vocab):
    """--tokenizer, else tokenizer.json next to the model, else None (token ids only)."""
    cand = Path(tokenizer) if tokenizer else Path(model_path).with_name("tokenizer.json")
    if tokenizer and not cand.is_file():
        raise TslError(f"{cand}: no such tokenizer file")
    if not cand.is_file():
        return None
    from .tokenizer import Tokenizer
    tok = Tokenizer.from_file(cand)
    tok.source_path = cand
    if tok.vocab_size > vocab:
        raise TslError(f"{cand}: tokenizer has {tok.vocab_size} tokens, the model only {vocab}")
    return tok


def check_fit(board, prog, pl, path, weights, max_seq):
    wbytes = sum(a.nbytes for a in prog.weights.values())
    ram = pl.arena_bytes + pl.kv_bytes
    flash, ram_cap = board.flash_bytes, board.ram_bytes + board.psram_bytes
    if flash and wbytes > flash:
        hint = "use --weights int4, " if weights == "int8" else ""
        raise TslError(f"{path}: weights need {wbytes} B, board {board.name} has {flash} B of flash; "
                       f"{hint}a smaller model or a board with more flash")
    if not flash:
        ram += wbytes          # no flash: the weights are loaded into RAM
    if ram_cap and ram > ram_cap:
        raise TslError(f"{path}: arena {pl.arena_bytes} B + KV cache {pl.kv_bytes} B exceed the {ram_cap} B of RAM "
                       f"on {board.name}; try --max-seq {max(16, max_seq // 2)} or a board with PSRAM")


def load_build(out):
    """-> (manifest, Program) of a compiled project, with clear errors for anything else."""
    out = Path(out)
    if not (out / "manifest.json").is_file():
        raise TslError(f"{out}: not a tinyslm build directory (no manifest.json); run `tinyslm compile` first")
    man = json.loads((out / "manifest.json").read_text())
    with open(out / PROGRAM, "rb") as f:
        prog = pickle.load(f)
    return man, prog
