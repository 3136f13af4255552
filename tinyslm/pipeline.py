"""The compiler, top to bottom: one stage per line."""
import shutil
import time
from pathlib import Path

from . import builddir, codegen, firmware, frontend, hf_export, lower_int, memmap, packages, plan, quantize
from .builddir import load_build  # noqa: F401  (the reader of what compile writes)
from .errors import TslError
from .units import MAX_SEQ, human_bytes


def log(msg, quiet=False):
    if not quiet:
        print(f"  {msg}", flush=True)


def compile_model(model_path, out, board="host", max_seq=None, weights=None, tokenizer=None, quiet=False,
                  activations="int8", calibrate=None, fit=False, mlp_residual=None, numerics=None, rotate=None,
                  bytes_per_weight=None, int4="uniform", int5=False):
    """ONNX file (or Hugging Face folder) -> C project in `out`; returns the manifest. weights: int8 | int5 | int4 | mixed | None
    (int4 if the graph carries int4 weights, else int8); activations: int8 | int8x2 (see quantize); calibrate: a text
    file to calibrate the weights on (calibrate.py; "default": the model's data/train.txt); fit: choose the per-tensor
    formats and the context length for the board (fit.py, calibrated); mlp_residual: the MLP product's second pass
    (None: with int8 and mixed weights and --fit; not with int4, whose weight error dwarfs the MLP product's
    rounding: example int4 calibrated KLD 0.010590 in one rotated pass against 0.010684 in two, at 18 % fewer
    MACs); numerics: float | int | None (the board's: int without an FPU feature, see lower_int); rotate: the MLP product
    through a randomized Hadamard rotation before its int8 quantizer (quantize.py); None: where it is quantized
    once (not mlp_residual: example KLD 0.000345 vs 0.000682; with the second pass it changes little); calibrated and
    unless rotate is False, the attention output is rotated too in the layers where calibration measures that it
    helps, on float numerics (the integer step has no lowering of it; see calibrate.calibrate);
    bytes_per_weight: the budget of weights="mixed" (fit.MIXED_BPW if None); int4: the grid of every int4 tensor
    (int4, mixed, fit): uniform (levels -8..7) or nl (16 int8 levels per tensor, int4nl.py); the graph's own int4
    weights keep their grid; int5: whether mixed and fit may choose int5 (s5nl: 32 int8 levels per tensor)."""
    from .boards import load_board
    t0 = time.time()
    B = load_board(board)                                                     # target facts, from boards/*.toml
    out = builddir.check_target(out)                                          # refuse a folder tinyslm did not make
    model_path, tokenizer = hf_export.as_onnx(model_path, tokenizer, quiet)   # a Hugging Face folder: its ONNX export (cached)
    spec = frontend.frontend(model_path, log=lambda m: log(m, quiet))         # ONNX -> float model, checked against onnxruntime
    log(f"frontend: {spec.family}, {spec.n_layers} layers, dim {spec.dim}, heads {spec.n_heads}/{spec.n_kv_heads}, "
        f"vocab {spec.vocab}, {spec.n_params() / 1e6:.2f}M params ({time.time() - t0:.1f}s)", quiet)
    asked_seq, max_seq = max_seq, _max_seq(spec, max_seq, model_path)
    weights = weights or ("int4" if any("int4" in n for n in spec.quantization) else "int8")
    tok = load_tokenizer(model_path, tokenizer, spec.vocab)
    mlp_residual = (fit or weights != "int4") if mlp_residual is None else mlp_residual
    numerics = numerics or lower_int.numerics_for(B)
    rotate_att = rotate is not False and numerics == "float"     # where calibration measures it helps (no int lowering)
    rotate = not mlp_residual if rotate is None else rotate
    formats = prequant = None
    s4 = "s4nl" if int4 == "nl" else "s4"
    att_layers = ()                                                           # calibration chooses them
    if calibrate or fit:                                                      # weights calibrated on text (GPTQ, smoothing)
        from . import calibrate as calib
        from . import fit as fitting
        chunks = calib.load_chunks(calibrate, model_path, tok, max_seq)
        if fit:
            max_seq, weights, formats = fitting.fit(spec, B, chunks, asked_seq, max_seq, mlp_residual, log=lambda m: log(m, quiet),
                                                    rotate_att=range(spec.n_layers) if rotate_att else (), s4=s4,
                                                    int5=int5)
        elif weights == "mixed":
            formats = fitting.mixed(spec, chunks, max_seq, mlp_residual, bytes_per_weight or fitting.MIXED_BPW, s4, int5)
            n8, n5 = (sum(f == k for f in formats.values()) for k in ("s8", "s5nl"))
            log(f"mixed: of {len(formats)} matvecs {n8} int8 ({', '.join(n for n, f in formats.items() if f == 's8')}), "
                f"{n5} int5, the rest int4", quiet)
        formats = formats or calib.formats_for(spec, weights, s4)
        fspec, (spec, prequant, att_layers) = spec, calib.calibrate(spec, chunks, formats, log=lambda m: log(m, quiet),
                                                             rotate=rotate, rotate_att=rotate_att)
        kld = calib.kld_sim(fspec, spec, chunks[:4], formats, prequant, mlp_residual=mlp_residual, rotate=rotate,
                            rotate_att=att_layers)
        log(f"expected mean KLD from the float model {kld:.6f} (numpy simulation on "
            f"{sum(len(c) for c in chunks[:4])} calibration tokens)", quiet)
        del fspec
    prog = quantize.quantize(spec, max_seq, weights, activations, mlp_residual, formats, prequant,
                             B.cores, rotate, att_layers, s4)                 # float model -> integer IR
    del spec                                                                  # its float weights: no longer needed
    if numerics == "int":
        prog = lower_int.lower_int(prog)                                      # float ops -> integer-only ops (no FPU)
    log(f"quantized to {weights}{' (non-linear grids)' if prog.meta.get('int4_grid') else ''} "
        f"({time.time() - t0:.1f}s)", quiet)
    gw = prog.meta["graph_weights"]
    if gw["kept"] or gw["requantized"]:
        log(f"graph's integer weights: {gw['kept']} projections kept as they are"
            + (f", {gw['requantized']} requantized from their float values (zero points, block sizes or "
               f"a --weights format tinyslm's {weights} cannot hold as they are)" if gw["requantized"] else ""), quiet)
    pl = plan.plan(prog)                                                      # arena offsets, KV cache layout
    check_fit(B, prog, pl, model_path, weights, max_seq)                      # refuse what the board cannot hold
    with builddir.partial_dir(out) as tmp:                                    # .OUT.partial-*, removed on any failure
        man = codegen.generate(prog, pl, tmp, board, B.toolchain["cc"], B.toolchain["cflags"],
                               B.toolchain.get("ar", "ar"), Path(model_path).resolve(), cores=B.cores,
                               prefill_tile=B.extra.get("prefill_tile", 0))  # IR + plan -> C, weights blob, Makefile
        if tok is not None:
            shutil.copy(tok.source_path, tmp / "tokenizer.json")
            cfg = Path(tok.source_path).with_name("tokenizer_config.json")        # its chat template, for `chat`
            if cfg.is_file() and not cfg.is_symlink() and cfg.stat().st_size <= 4 << 20:
                shutil.copy(cfg, tmp / "tokenizer_config.json")
        man.update(tokenizer="tokenizer.json" if tok is not None else None, compile_seconds=round(time.time() - t0, 2))
        packages.write(tmp, man, B)                                           # CMake, ESP-IDF, Zephyr, PlatformIO, Arduino
        (tmp / "memory.svg").write_text(memmap.svg(man))                     # the plan as a picture
        man = builddir.save(tmp, man, prog)                                   # IR as JSON, manifest, marker
        builddir.replace(tmp, out)                                            # atomic swap; only a tinyslm build is replaced
    if B.extra.get("pico"):
        firmware.write_pico_project(out, B)                                   # OUT/pico: the pico-sdk project
    log(f"wrote {out} in {time.time() - t0:.1f}s: weights {human_bytes(man['weights']['bytes'])}, arena "
        f"{human_bytes(pl.arena_bytes)} (lower bound {human_bytes(pl.lower_bound)}), KV cache {human_bytes(pl.kv_bytes)}; "
        f"picture: {out / 'memory.svg'}", quiet)
    return man


def _max_seq(spec, max_seq, path):
    limit = spec.max_pos or None
    if max_seq is None:
        return min(256, limit) if limit else 256
    if max_seq < 1:
        raise TslError(f"--max-seq must be positive, got {max_seq}")
    if limit and max_seq > limit:
        raise TslError(f"{path}: --max-seq {max_seq} exceeds the {limit} positions the model supports")
    if max_seq > MAX_SEQ:
        kv = spec.n_layers * 2 * spec.n_kv_heads * (spec.head_dim + 4) * max_seq    # int8 rows + a float scale each
        raise TslError(f"{path}: --max-seq {max_seq}: its KV cache alone would need {human_bytes(kv)}; "
                       f"tinyslm takes at most {MAX_SEQ} positions")
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
        raise TslError(f"{cand}: tokenizer has {tok.vocab_size} tokens, the model only {vocab}: "
                       f"not this model's tokenizer")
    if tok.vocab_size < vocab:
        log(f"note: {cand.name} has {tok.vocab_size} tokens, the model's vocabulary {vocab}: ids "
            f"{tok.vocab_size}..{vocab - 1} never come from the tokenizer (padded vocabularies are common; "
            f"a much smaller tokenizer is probably not this model's)")
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
