"""tinyslm command line. Every user error ends in one line on stderr and exit status 2."""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import __version__
from .errors import TslError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "tiny_llama.onnx"


def _ids(s):
    try:
        return [int(x) for x in s.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise TslError(f"--ids: expected comma-separated integers, got {s!r}")


def _progress(done, total, what="step"):
    if sys.stderr.isatty() or done == total:
        print(f"\r  {what} {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


def _open(out):
    from .hostsim import HostModel
    from .pipeline import load_build
    man, prog = load_build(out)
    return man, prog, HostModel(out)


def _tokenizer(out, required=True):
    p = Path(out) / "tokenizer.json"
    if p.is_file():
        from .tokenizer import Tokenizer
        return Tokenizer.from_file(p)
    if required:
        raise TslError(f"{out}: compiled without a tokenizer; pass --ids, or compile with --tokenizer")
    return None


def _prompt_ids(args, tok, vocab):
    if args.ids:
        ids = _ids(args.ids)
    else:
        ids = ([tok.bos_id] if tok.bos_id is not None else []) + tok.encode(args.prompt)
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise TslError(f"token id {bad[0]} out of range [0, {vocab})")
    if not ids:
        raise TslError("empty prompt")
    return ids


# ---- commands ----

def cmd_compile(a):
    from .pipeline import compile_model
    print(f"tinyslm {__version__}: compiling {a.model} for {a.board}", flush=True)
    compile_model(a.model, a.out, a.board, a.max_seq, a.weights, a.tokenizer)


def cmd_verify(a):
    from .verify import Mismatch, verify_host, verify_target
    man, prog, host = _open(a.out)
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
        if getattr(a, "board", None):
            from .boards import load_board
            B = load_board(a.board)
            if not B.emulated:
                raise TslError(f"board {B.name} cannot run here (no emulator); verify on the device with --port, "
                               f"or use its stand-in --board {B.extra.get('stand_in', '?')}")
            t0 = time.time()
            verify_target(a.out, man, prog, B, prompt[:steps], steps, log=print)
            print(f"OK {B.name}: {steps} steps bit-exact on the emulated target (logits, tokens, KV cache) "
                  f"in {time.time() - t0:.1f}s", flush=True)
    except Mismatch as e:
        print(f"MISMATCH: {e}", flush=True)
        return 1
    return 0


def generate(host, ids, max_tokens, temperature, top_p, seed, max_seq, on_token, eos=None):
    """Prompt ids, then up to max_tokens sampled ids; on_token(id) for each generated one."""
    host.reset()
    smp = host.sampler(seed, temperature, top_p)
    out, pos, nxt = [], 0, None
    for pos, t in enumerate(ids[:max_seq]):
        lg = host.step(t, pos)
    nxt = host.sample(smp, lg)
    pos = len(ids[:max_seq])
    while len(out) < max_tokens:
        out.append(nxt)
        on_token(nxt)
        if nxt == eos or pos >= max_seq:
            break
        lg = host.step(nxt, pos)
        pos += 1
        nxt = host.sample(smp, lg)
    return out


def cmd_run(a):
    man, prog, host = _open(a.out)
    tok = _tokenizer(a.out, required=not a.ids)
    ids = _prompt_ids(a, tok, man["model"]["vocab"])
    pending = bytearray()

    def emit(t):
        if a.print_ids:
            print(t, end=",", flush=True)
            return
        pending.extend(tok.token_bytes(t) if tok else b"")
        try:
            text = pending.decode("utf-8")
            pending.clear()
            print(text, end="", flush=True)
        except UnicodeDecodeError:
            pass  # a multi-byte character continues in the next token

    if not a.print_ids and tok and a.prompt:
        print(a.prompt, end="", flush=True)
    t0 = time.time()
    out = generate(host, ids, a.max_tokens, a.temperature, a.top_p, a.seed, man["model"]["max_seq"], emit,
                   tok.eos_id if tok else None)
    print(pending.decode("utf-8", "replace"))
    dt = time.time() - t0
    print(f"[{len(out)} tokens, {len(out) / max(dt, 1e-9):.1f} tok/s on the host build]", file=sys.stderr)


def cmd_logits(a):
    src = Path(a.model)
    ids = _ids(a.ids)
    with tempfile.TemporaryDirectory() as td:
        if src.is_file():
            from .pipeline import compile_model
            out = Path(td) / "build"
            compile_model(src, out, "host", max(len(ids), a.max_seq or 0) or None, a.weights, quiet=True)
        else:
            out = src
        man, prog, host = _open(out)
        if len(ids) > man["model"]["max_seq"]:
            raise TslError(f"{len(ids)} ids exceed the build's --max-seq {man['model']['max_seq']}")
        if any(not 0 <= i < man["model"]["vocab"] for i in ids):
            raise TslError(f"--ids: token ids must be in [0, {man['model']['vocab']})")
        host.reset()
        logits = np.stack([host.step(t, p) for p, t in enumerate(ids)])
    np.save(a.out, logits)
    print(f"wrote {a.out}: float32 {list(logits.shape)}")


def cmd_info(a):
    from .pipeline import load_build
    man, prog = load_build(a.out)
    m, mem = man["model"], man["memory"]
    print(f"{a.out}: {m['family']} model from {Path(man['source']).name}, board {man['board']}")
    print(f"  {m['n_layers']} layers, dim {m['dim']}, heads {m['n_heads']} (kv {m['n_kv_heads']}) x {m['head_dim']}, "
          f"ffn {m['hidden']}, vocab {m['vocab']}, max_seq {m['max_seq']}, weights {m['weights']}, {m['n_params']} params")
    print("\nFlash (read-only data)")
    tensors = sorted(man["weights"]["tensors"].items(), key=lambda kv: kv[1]["offset"])
    rows = [(n, t["dtype"], "x".join(map(str, t["shape"])), int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize)
            for n, t in tensors]
    if not a.all:
        big = sorted(rows, key=lambda r: -r[3])[:12]
        rows = [r for r in rows if r in big]
    for n, dt, shp, nb in rows:
        print(f"  {n:<28} {dt:<8} {shp:<12} {nb:>10}")
    print(f"  {'weights blob (all ' + str(len(tensors)) + ' tensors, aligned)':<50} {man['weights']['bytes']:>10}")
    code = _code_size(a.out)
    if code is not None:
        print(f"  {'code (host build, .text)':<50} {code:>10}")
    print("\nRAM")
    bufs = sorted(((n, b) for n, b in mem["buffers"].items() if b["kind"] != "kv"), key=lambda kv: -kv[1]["bytes"])
    for n, b in (bufs if a.all else bufs[:10]):
        print(f"  {n:<28} {b['dtype']:<4} {b['bytes']:>8} B at {b['offset']:>7}  ops {b['life']}")
    print(f"  {'activation arena':<50} {mem['arena_bytes']:>10}  (lower bound {mem['arena_lower_bound']})")
    print(f"  {'KV cache (int8)':<50} {mem['kv_bytes']:>10}")
    print(f"  {'sampler scratch (probs + indices)':<50} {8 * m['vocab']:>10}")
    total = mem["arena_bytes"] + mem["kv_bytes"] + 8 * m["vocab"]
    print(f"  {'total RAM':<50} {total:>10}")
    _fit_table(man["weights"]["bytes"], total)


def _fit_table(flash_need, ram_need):
    from .boards import list_boards, load_board
    print(f"\nFit per board (flash {flash_need} B, RAM {ram_need} B)")
    print(f"  {'board':<18} {'flash':>12} {'RAM (+PSRAM)':>14}  {'fits':<5} runs here")
    for name in list_boards():
        b = load_board(name)
        if not b.flash_bytes and not b.ram_bytes:
            print(f"  {name:<18} {'-':>12} {'-':>14}  {'yes':<5} native")
            continue
        ram = b.ram_bytes + b.psram_bytes
        need_ram = ram_need + (0 if b.flash_bytes else flash_need)     # no flash: weights load into RAM
        bad = [x for x, over in (("flash", b.flash_bytes and flash_need > b.flash_bytes), ("RAM", need_ram > ram)) if over]
        fits = not bad
        why = f" (too little {' and '.join(bad)})" if bad else ""
        run = "qemu" if b.emulated else "device only" + (f"; stand-in {b.extra['stand_in']}" if b.extra.get("stand_in") else "")
        print(f"  {name:<18} {b.flash_bytes:>12} {ram:>14}  {('yes' if fits else 'no'):<5} {run}{why}")


def _code_size(out):
    import subprocess
    lib = Path(out) / ".tinyslm" / "host" / "libtsl.so"
    if not lib.exists():
        return None
    r = subprocess.run(["size", "-A", str(lib)], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith(".text"):
            return int(line.split()[1])
    return None


def cmd_eval(a):
    from .evaluate import evaluate
    evaluate(a.out, a.text, a.max_tokens)


def cmd_inspect(a):
    from . import frontend
    from . import qgraph
    model, _, notes = qgraph.float_view(frontend.load_onnx(a.model))
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    print(f"{a.model}: {len(model.graph.node)} nodes, opsets {opsets}, producer {model.producer_name or '?'}")
    bad = frontend.unsupported_nodes(model)
    if bad:
        print(f"cannot compile: {len(bad)} unsupported node(s)")
        for name, op, dom, ver, hint in bad:
            print(f"  {name or '?':<40} {dom + '.' + op:<36} opset {ver:<3} {hint}")
        return 2
    bad = frontend.unsupported_nodes(model, frontend.Graph(model, a.model, [0, 1, 2, 3]).live)
    if bad:
        print(f"cannot compile: {len(bad)} unsupported node(s) on the token path")
        for name, op, dom, ver, hint in bad:
            print(f"  {name or '?':<40} {dom + '.' + op:<36} opset {ver:<3} {hint}")
        return 2
    spec = frontend.recognize(model, a.model)
    frontend.check_against_onnx(model, spec, a.model)
    rows = [("family", spec.family), ("layers", spec.n_layers), ("dim", spec.dim), ("heads", spec.n_heads),
            ("kv heads", spec.n_kv_heads), ("head size", spec.head_dim), ("ffn hidden", spec.hidden),
            ("vocab", spec.vocab), ("norm", f"{spec.layers[0].attn_norm.kind}norm eps {spec.layers[0].attn_norm.eps:g}"),
            ("activation", ({"silu": "SwiGLU", "gelu_tanh": "GeGLU (tanh)", "gelu_erf": "GeGLU (erf)"}
                            if spec.layers[0].w_gate is not None else {}).get(spec.act, spec.act)),
            ("positions", f"RoPE {'interleaved' if spec.rope_interleaved else 'rotate-half'} on {spec.rotary_dim} dims"
             if spec.pos == "rope" else f"learned table of {spec.max_pos}"),
            ("attention scale", f"{spec.attn_scale:.6g}"), ("tied embeddings", spec.tied),
            ("biases", ", ".join(sorted(spec.layers[0].bias)) or "none"),
            ("quantization found", "; ".join(notes) or "none (float32 weights)"), ("parameters", f"{spec.n_params():,}"),
            ("check", "float model reproduces the ONNX logits (onnxruntime)")]
    for k, v in rows:
        print(f"  {k:<20} {v}")
    return 0


def cmd_demo(a):
    from .pipeline import compile_model
    from .tokenizer import Tokenizer
    out = Path(a.out)
    print(f"tinyslm {__version__} demo: {EXAMPLE.relative_to(ROOT)} -> {out} (board host)", flush=True)
    compile_model(EXAMPLE, out, "host", 256, "int8", EXAMPLE.with_name("tokenizer.json"))
    rc = cmd_verify(argparse.Namespace(out=out, steps=64))
    if rc:
        return rc
    print("\ngenerate (greedy):", flush=True)
    cmd_run(argparse.Namespace(out=out, prompt="Once upon a time", ids=None, max_tokens=60, temperature=0.0,
                               top_p=1.0, seed=0, print_ids=False))
    print()
    cmd_info(argparse.Namespace(out=out, all=False))
    return 0


def parser():
    p = argparse.ArgumentParser(prog="tinyslm", description="Compile tiny language models from ONNX to bit-exact C "
                                "for microcontrollers and edge boards.")
    p.add_argument("--version", action="version", version=f"tinyslm {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("demo", help="compile, verify and run the bundled example model on the host")
    s.add_argument("-o", "--out", default="build/demo", help="build directory (default: build/demo)")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("compile", help="compile an ONNX decoder LM into a C project")
    s.add_argument("model", help="ONNX file (float32 decoder-only LM)")
    s.add_argument("--board", default="host", help="target board, see boards/*.toml (default: host)")
    s.add_argument("-o", "--out", default="build/model", help="output directory (default: build/model)")
    s.add_argument("--max-seq", type=int, default=None, help="KV cache length (default: 256 or the model's limit)")
    s.add_argument("--weights", choices=["int8", "int4"], default=None,
                   help="weight format (default: int4 if the graph carries int4 weights, else int8)")
    s.add_argument("--tokenizer", help="tokenizer.json (default: next to the model, if present)")
    s.set_defaults(fn=cmd_compile)

    s = sub.add_parser("verify", help="check reference == host build bit for bit over decode steps")
    s.add_argument("out", help="build directory")
    s.add_argument("--steps", type=int, default=64, help="decode steps (default: 64, at most --max-seq)")
    s.add_argument("--board", help="also build for this board and run it under its emulator")
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("run", help="generate text with the host build")
    s.add_argument("out", help="build directory")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", help="prompt text")
    g.add_argument("--ids", help="prompt as comma-separated token ids")
    s.add_argument("--max-tokens", type=int, default=64)
    s.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--print-ids", action="store_true", help="print token ids instead of text")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("logits", help="teacher-forced logits [T, vocab] of the compiled host build, as .npy")
    s.add_argument("model", help="ONNX file (compiled for the host on the fly) or build directory")
    s.add_argument("--ids", required=True, help="comma-separated token ids")
    s.add_argument("--out", required=True, help="output .npy file")
    s.add_argument("--weights", choices=["int8", "int4"], default=None)
    s.add_argument("--max-seq", type=int, default=None)
    s.set_defaults(fn=cmd_logits)

    s = sub.add_parser("inspect", help="what the frontend recognizes in an ONNX model, or every node it cannot take")
    s.add_argument("model", help="ONNX file")
    s.set_defaults(fn=cmd_inspect)

    s = sub.add_parser("info", help="flash and RAM use of a build, per tensor and in total")
    s.add_argument("out", help="build directory")
    s.add_argument("--all", action="store_true", help="list every tensor and buffer")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("eval", help="perplexity of int8 and int4 builds next to the float model (onnxruntime)")
    s.add_argument("out", help="build directory")
    s.add_argument("--text", required=True, help="held-out text file")
    s.add_argument("--max-tokens", type=int, default=4096, help="tokens of the text to score (default: 4096)")
    s.set_defaults(fn=cmd_eval)
    return p


def main(argv=None):
    p = parser()
    a = p.parse_args(argv)
    if not getattr(a, "fn", None):
        p.print_help()
        return 2
    try:
        return a.fn(a) or 0
    except TslError as e:
        print(f"tinyslm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyslm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
