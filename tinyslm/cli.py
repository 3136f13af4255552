"""tinyslm command line. Every user error ends in one line on stderr and exit status 2."""
import argparse
import sys
import tempfile
import time
from pathlib import Path

from . import __version__
from .cli_common import EXAMPLE, ROOT, SEED, _finite, _ids, _int_in, _open, _progress, _prompt_ids, _tokenizer
from .cli_device import (cmd_chat, cmd_emulate, cmd_flash, cmd_identify, cmd_load, cmd_run_device,
                         cmd_verify_device)
from .errors import TslError
from .generation import TokenPrinter, generate
from .units import MAX_SEQ, human_bytes


# ---- commands ----

def cmd_compile(a):
    from .pipeline import compile_model
    board = a.board or a.fit or "host"
    if a.fit and board != a.fit:
        raise TslError(f"--fit {a.fit} and --board {a.board}: give one board")
    if a.weights == "mixed" and a.fit:
        raise TslError("--weights mixed and --fit: --fit chooses the formats itself")
    if a.int5 and a.weights != "mixed" and not a.fit:
        raise TslError("--int5: it widens the choice of --weights mixed and --fit (for int5 everywhere: --weights int5)")
    if a.bytes_per_weight is not None and a.weights != "mixed":
        raise TslError("--bytes-per-weight: it is the budget of --weights mixed (give both)")
    print(f"tinyslm {__version__}: compiling {a.model} for {board}", flush=True)
    compile_model(a.model, a.out, board, a.max_seq, a.weights, a.tokenizer, activations=a.activations,
                  calibrate=a.calibrate or (a.weights == "mixed" and "default") or None, fit=bool(a.fit),
                  mlp_residual=None if a.mlp_passes is None else a.mlp_passes == 2, numerics=a.numerics,
                  rotate=None if a.rotate == "auto" else a.rotate == "on", bytes_per_weight=a.bytes_per_weight,
                  int4=a.int4, int5=a.int5)


def cmd_verify(a):
    from .verify import Mismatch, verify_host, verify_target
    man, prog, host = _open(a.out, a.threads)
    steps = min(a.steps, man["model"]["max_seq"])
    if steps < a.steps:
        print(f"note: the build's --max-seq {steps} limits the run to {steps} steps", flush=True)
    tok = _tokenizer(a.out, required=False)
    prompt = ([tok.bos_id] if tok and tok.bos_id is not None else []) + (tok.encode("Once upon a time") if tok else [1, 2, 3])
    print(f"verify {a.out}: reference vs host build, {steps} decode steps", flush=True)
    try:
        rep = verify_host(prog, host, prompt[:steps], steps, progress=_progress)
        print(f"OK host: {rep['steps']} steps bit-exact: logits ({rep['logits_bytes']} B), KV cache "
              f"({rep['kv_bytes']} B), {len(rep['tokens'])} sampled tokens", flush=True)
        if getattr(a, "port", None):
            cmd_verify_device(a, man, prog, prompt[:steps], steps)
        if getattr(a, "board", None):
            from .boards import load_board
            B = load_board(a.board)
            if not B.emulated:
                raise TslError(f"board {B.name} cannot run here (no emulator); verify on the device with --port, "
                               f"or use its stand-in --board {B.extra.get('stand_in', '?')}")
            t0 = time.time()
            verify_target(a.out, man, prog, B, prompt[:steps], steps, log=print, threads=a.threads)
            print(f"OK {B.name}: {steps} steps bit-exact on the emulated target (logits, tokens, KV cache) "
                  f"in {time.time() - t0:.1f}s", flush=True)
    except Mismatch as e:
        print(f"MISMATCH: {e}", flush=True)
        return 1
    return 0


def cmd_run(a):
    if getattr(a, "port", None):
        return cmd_run_device(a)
    if not a.out:
        raise TslError("run: give the build directory (host build) or --port URL (a device)")
    man, prog, host = _open(a.out, a.threads)
    tok = _tokenizer(a.out, required=not a.ids)
    ids = _prompt_ids(a, tok, man["model"]["vocab"], man["model"]["max_seq"])
    emit = TokenPrinter(tok, a)
    t0 = time.time()
    out = generate(host, ids, a.max_tokens, a.temperature, a.top_p, a.seed, man["model"]["max_seq"], emit,
                   tok.eos_id if tok else None)
    emit.close()
    dt = time.time() - t0
    print(f"[{len(out)} tokens, {len(out) / max(dt, 1e-9):.1f} tok/s on the host build]", file=sys.stderr)


def cmd_logits(a):
    import numpy as np
    from . import hf_export
    from .evaluate import host_logits
    src = Path(a.model)
    ids = _ids(a.ids)
    dst = Path(a.out)
    if not dst.parent.is_dir():
        raise TslError(f"--out {dst}: folder {dst.parent} does not exist")
    if dst.is_dir():
        raise TslError(f"--out {dst}: is a folder; give a file name such as logits.npy")
    with tempfile.TemporaryDirectory() as td:
        if src.is_file() or hf_export.is_folder(src):
            from .pipeline import compile_model
            out = Path(td) / "build"
            compile_model(src, out, "host", max(len(ids), a.max_seq or 0) or None, a.weights, quiet=True,
                          activations=a.activations)
        else:
            out = src
        man, prog, host = _open(out, a.threads)
        if len(ids) > man["model"]["max_seq"]:
            raise TslError(f"{len(ids)} ids exceed the build's --max-seq {man['model']['max_seq']}")
        if any(not 0 <= i < man["model"]["vocab"] for i in ids):
            raise TslError(f"--ids: token ids must be in [0, {man['model']['vocab']})")
        logits = host_logits(host, ids).astype(np.float32)
    np.save(a.out, logits)
    print(f"wrote {a.out}: float32 {list(logits.shape)}")


def cmd_info(a):
    from .boards import list_boards, load_board
    from .builddir import load_build
    from .report import build_info, fit_table, per_token, ram_need
    man, prog = load_build(a.out)
    print("\n".join(build_info(man, a.all)))
    print()
    board = load_board(man["board"]) if man["board"] in list_boards() else None
    print("\n".join(per_token(prog, board)))
    print()
    print("\n".join(fit_table(man["weights"]["bytes"], ram_need(man), [load_board(n) for n in list_boards()])))
    print(f"\npicture of the memory plan: {Path(a.out).resolve() / 'memory.svg'}")


def cmd_eval(a):
    from .evaluate import evaluate, evaluate_against_llamacpp
    if a.against:
        tool, path = a.against
        if tool != "llama.cpp":
            raise TslError(f"--against {tool}: only llama.cpp's --kl-divergence-base files are read")
        evaluate_against_llamacpp(a.out, path, progress=lambda d, t: _progress(d, t, "chunk"), threads=a.threads)
        return
    if not a.text:
        raise TslError("eval: give --text FILE (held-out text), or --against llama.cpp FILE")
    evaluate(a.out, a.text, a.max_tokens, progress=lambda d, t: _progress(d, t, "chunk"), threads=a.threads)


def cmd_inspect(a):
    from . import frontend
    from .model import describe
    from . import qgraph
    from .hf_export import as_onnx
    a.model = as_onnx(a.model)[0]
    model, _, notes = qgraph.float_view(frontend.load_onnx(a.model))
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    print(f"{a.model}: {len(model.graph.node)} nodes, opsets {opsets}, producer {model.producer_name or '?'}")
    bad = frontend.unsupported_nodes(model)
    if bad:
        print(f"cannot compile: {len(bad)} unsupported node(s)")
        for name, op, dom, ver, hint in bad:
            print(f"  {name or '?':<40} {dom + '.' + op:<36} opset {ver:<3} {hint}")
        return 2
    ids = [i % 4 for i in range(frontend.probe_len(model, 4, a.model))]
    bad = frontend.unsupported_nodes(model, frontend.Graph(model, a.model, ids).live)
    if bad:
        print(f"cannot compile: {len(bad)} unsupported node(s) on the token path")
        for name, op, dom, ver, hint in bad:
            print(f"  {name or '?':<40} {dom + '.' + op:<36} opset {ver:<3} {hint}")
        return 2
    spec = frontend.recognize(model, a.model)
    frontend.check_against_onnx(model, spec, a.model)
    rows = [("family", spec.family), ("layers", spec.n_layers), ("dim", spec.dim), ("heads", spec.n_heads),
            ("kv heads", spec.n_kv_heads), ("head size", spec.head_dim), ("ffn hidden", spec.hidden),
            ("vocab", spec.vocab), ("norm", f"{spec.final_norm.kind}norm eps {spec.final_norm.eps:g}"),
            ("activation", ({"silu": "SwiGLU", "gelu_tanh": "GeGLU (tanh)", "gelu_erf": "GeGLU (erf)", "relu": "ReGLU"}
                            if spec.layers[0].w_gate is not None else {}).get(spec.act, spec.act)),
            ("positions", f"RoPE {'interleaved' if spec.rope_interleaved else 'rotate-half'} on {spec.rotary_dim} dims"
             if spec.pos == "rope" else f"learned table of {spec.max_pos}" if spec.pos == "learned" else "ALiBi"),
            ("attention scale", f"{spec.attn_scale:.6g}"), ("tied embeddings", spec.tied),
            ("blocks", "parallel attention + MLP" if spec.parallel else "sequential attention, MLP"),
            ("biases", ", ".join(sorted(spec.layers[0].bias)) or "none")] + describe(spec) + [
            ("quantization found", "; ".join(notes) or "none (float32 weights)"), ("parameters", f"{spec.n_params():,}"),
            ("check", "float model reproduces the ONNX logits (onnxruntime)")]
    for k, v in rows:
        print(f"  {k:<20} {v}")
    return 0


# ---- firmware and devices (issue 4) ----

def cmd_build(a):
    from .boards import load_board
    from .firmware import build_firmware
    from .report import image_report
    B = load_board(a.board)
    print(f"build {a.out} for {B.name} ({B.cpu}, {B.kind})", flush=True)
    res = build_firmware(a.out, B.name, load_buffer=a.load_buffer)
    if res["espidf"]:
        print(f"  ESP-IDF project for the chip: {res['espidf']} (idf.py set-target {B.target['espidf_target']} "
              f"&& idf.py build; not buildable here)")
    if res["pico"]:
        print(f"  pico-sdk project: {res['pico']} (PICO_SDK_PATH=... cmake -S {res['pico']} -B build "
              f"[-DTINYSLM_STDIO=uart]; not buildable here)")
    if res["elf"] is None:
        return
    print(f"  {'ELF' if B.kind == 'baremetal' else 'program'}: {res['elf']}")
    if res["bin"]:
        print(f"  raw binary: {res['bin']} ({human_bytes(res['bin'].stat().st_size)})")
    if res["uf2"]:
        drive = B.flash.get("drive", "UF2")
        print(f"  UF2: {res['uf2']} ({human_bytes(res['uf2'].stat().st_size)}); hold BOOTSEL while plugging the "
              f"board in, then copy it onto the {drive} drive: tinyslm flash {a.out} --board {B.name} --port "
              f"/media/$USER/{drive} (or picotool load -x {res['uf2']})")
    if res["sizes"]:
        print("\n".join(image_report(res["sizes"], B)))


def cmd_demo(a):
    from .pipeline import compile_model
    out = Path(a.out)
    print(f"tinyslm {__version__} demo: {EXAMPLE.relative_to(ROOT)} -> {out} (board host)", flush=True)
    compile_model(EXAMPLE, out, "host", 256, "int8", EXAMPLE.with_name("tokenizer.json"))
    rc = cmd_verify(argparse.Namespace(out=out, steps=64, threads=1))
    if rc:
        return rc
    print("\ngenerate (greedy):", flush=True)
    cmd_run(argparse.Namespace(out=out, prompt="Once upon a time", ids=None, max_tokens=60, temperature=0.0,
                               top_p=1.0, seed=0, print_ids=False, threads=1))
    print()
    cmd_info(argparse.Namespace(out=out, all=False))
    return 0


def _device_args(s, required=True, what="pyserial URL of the device: /dev/ttyUSB0, COM3, socket://127.0.0.1:5555"):
    s.add_argument("--port", required=required, help=what)
    s.add_argument("--baud", type=int, default=115200)
    s.add_argument("--timeout", type=float, default=5.0,
                   help="seconds of silence from the device before giving up (default 5); lost frames are resent sooner")


def _sampler_args(s, max_tokens, tokens_help, seed_help):
    """--max-tokens, --temperature, --top-p, --seed: the sampler's options, checked by type."""
    s.add_argument("--max-tokens", type=_int_in(1, 65535), default=max_tokens, help=tokens_help)
    s.add_argument("--temperature", type=_finite(0.0, 100.0), default=0.0, help="0 = greedy (default)")
    s.add_argument("--top-p", type=_finite(0.0, 1.0), default=1.0, help="nucleus sampling, in (0, 1]; 1 = off (default)")
    s.add_argument("--seed", type=SEED, default=0, help=seed_help)


LOAD_HELP = ("reserve RAM for a second copy of the weights, so that `tinyslm load` can replace them without "
             "reflashing (doubles the weights' RAM; off by default)")
BOARD_HELP = "target board (`tinyslm --help` lists them)"
ACT_HELP = ("int8 (default), or int8x2: every norm output also goes through its matvecs a second time as its "
            "int8 rounding error, as the MLP product always does (about 15-bit inputs; +57%% MACs on the example)")


def parser():
    p = _Parser(prog="tinyslm", description="Compile tiny language models from ONNX to bit-exact C "
                "for microcontrollers and edge boards.", epilog=_boards_epilog(),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"tinyslm {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("demo", help="compile, verify and run the bundled example model on the host")
    s.add_argument("-o", "--out", default="build/demo", help="build directory (default: build/demo)")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("compile", help="compile an ONNX decoder LM into a C project")
    s.add_argument("model", help="ONNX file (decoder-only LM) or Hugging Face model folder (config.json, *.safetensors)")
    s.add_argument("--board", default=None, help="target board (default: host; `tinyslm --help` lists them)")
    s.add_argument("-o", "--out", default="build/model", help="output directory (default: build/model)")
    s.add_argument("--max-seq", type=_int_in(1, 2 ** 63), default=None,
                   help=f"KV cache length, 1 to {MAX_SEQ} (default: 256 or the model's limit)")
    s.add_argument("--weights", choices=["int8", "int5", "int4", "mixed"], default=None,
                   help="weight format (default: int4 if the graph carries int4 weights, else int8); int5: 5-bit "
                        "codes into 32 int8 levels per tensor (0.66 bytes per weight; NEON and portable kernels so far); "
                        "mixed: each tensor int4 or int8 (int5 too with --int5) by its measured KLD per byte "
                        "(calibrated)")
    s.add_argument("--bytes-per-weight", type=_finite(0.5, 1.2), default=None, metavar="B",
                   help="--weights mixed: the weights blob's bytes per parameter that the int8 tensors may fill "
                        "(default 0.70; 0.62: int4's size, example KLD 0.0096 against all-int4's 0.0106)")
    s.add_argument("--int4", choices=["uniform", "nl"], default="uniform",
                   help="the grid of int4 weights (--weights int4, mixed, --fit): uniform (default: the levels -8..7 "
                        "times the group scale) or nl (each tensor's 16 int8 levels, from llama.cpp's IQ4_NL and "
                        "refitted: 16 bytes more per tensor, example calibrated KLD about 0.8x uniform's); the "
                        "graph's own int4 weights keep their grid")
    s.add_argument("--int5", action="store_true",
                   help="--weights mixed and --fit may also choose int5 for a tensor (5-bit codes into 32 levels: "
                        "example mixed KLD 0.0026 against 0.0047 without; int5 has a NEON path, elsewhere the "
                        "portable loop, about 6x the instructions of int4's DSP path on Cortex-M4)")
    s.add_argument("--tokenizer", help="tokenizer.json (default: next to the model, if present)")
    s.add_argument("--activations", choices=["int8", "int8x2"], default="int8", help=ACT_HELP)
    s.add_argument("--calibrate", nargs="?", const="default", metavar="FILE",
                   help="calibrate the weights on this text (GPTQ, smoothing folded into the norms); without FILE: "
                        "the model's data/train.txt (the bundled example's training text). Default: no calibration, "
                        "weights rounded to nearest")
    s.add_argument("--fit", metavar="BOARD", help="choose the context length and per-tensor int8/int4 formats that "
                   "fit BOARD's flash and RAM (calibrated; prints its choice and the expected KLD)")
    s.add_argument("--mlp-passes", type=int, choices=[1, 2], default=None,
                   help="2: the MLP product also goes through the down projection as its int8 rounding error "
                        "(+22%% MACs on the example); 1: once. Default: 2 with int8 and mixed weights and --fit, "
                        "1 with int4 (where the weights' error dwarfs the product's rounding)")
    s.add_argument("--rotate", choices=["auto", "on", "off"], default="auto",
                   help="on: the MLP product goes through a randomized Walsh-Hadamard rotation (blocks of the largest "
                        "power of two dividing the hidden size, signs stored with the weights) before its int8 "
                        "quantizer, and the down projection reads it rotated (folded into its weights): about half "
                        "the KLD of one MLP pass; with --calibrate the attention output too, where it measures better "
                        "(float boards), wo reading it rotated; off: both quantized as they are; auto (default): the "
                        "MLP product's with one MLP pass")
    s.add_argument("--numerics", choices=["float", "int"], default=None,
                   help="float32 activations, or the integer-only step (default: int where the board lists no fpu-sp/fpu-dp)")
    s.set_defaults(fn=cmd_compile)

    s = sub.add_parser("verify", help="check reference == host build bit for bit over decode steps")
    s.add_argument("out", help="build directory")
    s.add_argument("--steps", type=_int_in(1, MAX_SEQ), default=64, help="decode steps (default: 64, at most --max-seq)")
    s.add_argument("--board", help="also build for this board and run it under its emulator (see `tinyslm --help`)")
    _device_args(s, required=False, what="also verify on the device at this pyserial URL")
    _threads_arg(s)
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("run", help="generate text with the host build, or on a device with --port")
    s.add_argument("out", nargs="?", help="build directory (host build; with --port: its tokenizer)")
    _device_args(s, required=False)
    s.add_argument("--tokenizer", help="tokenizer.json, with --port and no build directory")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", help="prompt text")
    g.add_argument("--ids", help="prompt as comma-separated token ids")
    _sampler_args(s, 64, "tokens to generate, 1 to 65535 (default 64)", "sampler seed, 0 to 2^64-1 (default 0)")
    s.add_argument("--print-ids", action="store_true", help="print token ids instead of text")
    _threads_arg(s)
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("logits", help="teacher-forced logits [T, vocab] of the compiled host build, as .npy")
    s.add_argument("model", help="ONNX file or Hugging Face folder (compiled for the host on the fly) or build directory")
    s.add_argument("--ids", required=True, help="comma-separated token ids")
    s.add_argument("--out", required=True, help="output .npy file")
    s.add_argument("--weights", choices=["int8", "int4"], default=None)
    s.add_argument("--max-seq", type=_int_in(1, 2 ** 63), default=None)
    s.add_argument("--activations", choices=["int8", "int8x2"], default="int8", help=ACT_HELP)
    _threads_arg(s)
    s.set_defaults(fn=cmd_logits)

    s = sub.add_parser("inspect", help="what the frontend recognizes in an ONNX model, or every node it cannot take")
    s.add_argument("model", help="ONNX file or Hugging Face model folder")
    s.set_defaults(fn=cmd_inspect)

    s = sub.add_parser("build", help="firmware image for a board (ELF + raw binary, or a Linux program)")
    s.add_argument("out", help="build directory")
    s.add_argument("--board", required=True, help=BOARD_HELP)
    s.add_argument("--load-buffer", action="store_true", help=LOAD_HELP)
    s.set_defaults(fn=cmd_build)

    s = sub.add_parser("emulate", help="run the board's firmware under qemu, its UART on 127.0.0.1:PORT")
    s.add_argument("out", help="build directory")
    s.add_argument("--board", required=True, help=BOARD_HELP)
    s.add_argument("--load-buffer", action="store_true", help=LOAD_HELP)
    s.add_argument("--serial", default="tcp:5555", help="tcp:PORT (default tcp:5555)")
    s.set_defaults(fn=cmd_emulate)

    s = sub.add_parser("flash", help="write the firmware with the family's tool (esptool, stm32loader, st-flash, openocd), or say why not")
    s.add_argument("out", help="build directory")
    s.add_argument("--board", required=True, help=BOARD_HELP)
    s.add_argument("--port", help="serial port of the bootloader, e.g. /dev/ttyUSB0 (esptool, stm32loader), or the "
                   "mounted UF2 drive, e.g. /media/$USER/RPI-RP2350")
    s.add_argument("--image", help="an image you built yourself (default: `tinyslm build`'s, where tinyslm has start-up code)")
    s.add_argument("--tool", help="one of the board's [flash] tools (default: the first one installed)")
    s.add_argument("--dry-run", action="store_true", help="print the command only")
    s.set_defaults(fn=cmd_flash)

    s = sub.add_parser("load", help="send new weights (same architecture) into the running firmware's RAM")
    s.add_argument("out", help="build directory whose weights to send")
    _device_args(s)
    s.set_defaults(fn=cmd_load)

    s = sub.add_parser("chat", help="a conversation (chat template if the build has one) on the host build or a device")
    s.add_argument("out", help="build directory (its tokenizer; the host build without --port)")
    _device_args(s, required=False, what="chat with the device at this pyserial URL")
    s.add_argument("--config", help="tokenizer_config.json with the chat_template (default: OUT/tokenizer_config.json)")
    s.add_argument("--system", help="a system message first")
    _sampler_args(s, 128, "most tokens an answer (default 128)", "sampler seed of each answer (default 0)")
    s.set_defaults(fn=cmd_chat)

    s = sub.add_parser("identify", help="the device's board, firmware, model hash, memory sizes")
    _device_args(s)
    s.set_defaults(fn=cmd_identify)

    s = sub.add_parser("info", help="flash and RAM use of a build, per tensor and in total")
    s.add_argument("out", help="build directory")
    s.add_argument("--all", action="store_true", help="list every tensor and buffer")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("eval", help="perplexity, top-1 agreement and logit cosine of int8 and int4 builds "
                       "against the float model (onnxruntime)")
    s.add_argument("out", help="build directory")
    s.add_argument("--text", help="held-out text file (never the calibration text)")
    s.add_argument("--against", nargs=2, metavar=("llama.cpp", "FILE"),
                   help="score the build against the logits llama.cpp stored with `llama-perplexity "
                        "--kl-divergence-base FILE` (its tokens, its scored positions, its KLD formula)")
    s.add_argument("--max-tokens", type=_int_in(2, 1 << 24), default=4096, help="tokens of the text to score (default: 4096)")
    _threads_arg(s)
    s.set_defaults(fn=cmd_eval)
    return p


def _threads_arg(s):
    s.add_argument("-t", "--threads", type=_int_in(1, 64), default=1,
                   help="threads of the model's matvecs, 1 to 64 (default 1; builds for boards with cores > 1: "
                        "host, Linux boards); every count gives the same bytes")


def _boards_epilog():
    from .boards import list_boards, load_board
    rows = []
    for n in list_boards():
        try:
            b = load_board(n)
        except TslError:
            continue
        rows.append(f"  {n:<18} {'runs here ' if b.emulated else 'device    '} {b.description}")
    return "boards (--board):\n" + "\n".join(rows)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, as every other error: `tinyslm CMD: error: ...`, exit 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def main(argv=None):
    """The command line: each user error is one line on stderr and exit 2; Ctrl-C is 130, SIGTERM
    143. Whatever tinyslm started (compilers, emulators, flashers) ends with it."""
    try:
        return _main(argv)
    except KeyboardInterrupt:                    # also while the modules below are still loading
        print("tinyslm: interrupted", file=sys.stderr)
        return 130
    finally:
        procs = sys.modules.get(__package__ + ".procs")
        if procs is not None:
            procs.stop_all()


def _main(argv):
    from . import procs
    try:
        procs.install_signal_handlers()
        import warnings
        warnings.simplefilter("ignore")          # numpy/onnxruntime noise must not precede the one-line error
        p = parser()
        a = p.parse_args(argv)
        if not getattr(a, "fn", None):
            p.print_help()
            return 2
        return a.fn(a) or 0
    except TslError as e:
        print(f"tinyslm: error: {' '.join(str(e).split()) if _one_line(e) else e}", file=sys.stderr)
        return 2
    except procs.Terminated as t:
        print("tinyslm: terminated", file=sys.stderr)
        return 128 + t.signum
    except BrokenPipeError:                      # `tinyslm run ... | head`
        return 0


def _one_line(e):
    """Errors are one line, except a compiler's own diagnostics, which are kept as they are."""
    return "build failed" not in str(e)


if __name__ == "__main__":
    sys.exit(main())
