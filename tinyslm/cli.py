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
    compile_model(a.model, a.out, a.board, a.max_seq, a.weights, a.tokenizer, activations=a.activations)


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
        if getattr(a, "port", None):
            cmd_verify_device(a, man, prog, prompt[:steps], steps)
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


class _TokenPrinter:
    """Streams generated tokens: text as soon as it is valid UTF-8 (after the prompt), or ids."""

    def __init__(self, tok, a):
        self.tok, self.ids_only, self.pending = tok, a.print_ids or tok is None, bytearray()
        if not self.ids_only and a.prompt:
            print(a.prompt, end="", flush=True)

    def __call__(self, t):
        if self.ids_only:
            print(t, end=",", flush=True)
            return
        self.pending.extend(self.tok.token_bytes(t))
        try:
            print(self.pending.decode("utf-8"), end="", flush=True)
            self.pending.clear()
        except UnicodeDecodeError:
            pass                    # a multi-byte character continues in the next token

    def close(self):
        print(self.pending.decode("utf-8", "replace"))


def cmd_run(a):
    if getattr(a, "port", None):
        return cmd_run_device(a)
    if not a.out:
        raise TslError("run: give the build directory (host build) or --port URL (a device)")
    man, prog, host = _open(a.out)
    tok = _tokenizer(a.out, required=not a.ids)
    ids = _prompt_ids(a, tok, man["model"]["vocab"])
    emit = _TokenPrinter(tok, a)
    t0 = time.time()
    out = generate(host, ids, a.max_tokens, a.temperature, a.top_p, a.seed, man["model"]["max_seq"], emit,
                   tok.eos_id if tok else None)
    emit.close()
    dt = time.time() - t0
    print(f"[{len(out)} tokens, {len(out) / max(dt, 1e-9):.1f} tok/s on the host build]", file=sys.stderr)


def cmd_logits(a):
    from .evaluate import host_logits
    src = Path(a.model)
    ids = _ids(a.ids)
    with tempfile.TemporaryDirectory() as td:
        if src.is_file():
            from .pipeline import compile_model
            out = Path(td) / "build"
            compile_model(src, out, "host", max(len(ids), a.max_seq or 0) or None, a.weights, quiet=True,
                          activations=a.activations)
        else:
            out = src
        man, prog, host = _open(out)
        if len(ids) > man["model"]["max_seq"]:
            raise TslError(f"{len(ids)} ids exceed the build's --max-seq {man['model']['max_seq']}")
        if any(not 0 <= i < man["model"]["vocab"] for i in ids):
            raise TslError(f"--ids: token ids must be in [0, {man['model']['vocab']})")
        logits = host_logits(host, ids).astype(np.float32)
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
    kvl = m.get("kv_layers", [])
    if any(kv["window"] for kv in kvl):     # sliding windows: a local layer keeps only its window (a ring)
        for kv in kvl:
            what = f"ring of {kv['slots']} (window {kv['window']})" if kv["window"] and kv["slots"] < m["max_seq"] else \
                f"{kv['slots']} positions"
            print(f"    {'layer ' + str(kv['layer']) + ': ' + what:<48} {kv['bytes']:>10}")
        full = sum(kv["bytes"] * m["max_seq"] // kv["slots"] for kv in kvl)
        print(f"    {'(every layer at max_seq: ' + str(full) + ' B)':<48}")
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
    evaluate(a.out, a.text, a.max_tokens, progress=lambda d, t: _progress(d, t, "chunk"))


def cmd_inspect(a):
    from . import frontend
    from .model import describe
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
    B = load_board(a.board)
    print(f"build {a.out} for {B.name} ({B.cpu}, {B.kind})", flush=True)
    res = build_firmware(a.out, B.name)
    if res["espidf"]:
        print(f"  ESP-IDF project for the chip: {res['espidf']} (idf.py set-target {B.target['espidf_target']} "
              f"&& idf.py build; not buildable here)")
    if res["elf"] is None:
        return
    print(f"  {'ELF' if B.kind == 'baremetal' else 'program'}: {res['elf']}")
    if res["bin"]:
        print(f"  raw binary: {res['bin']} ({res['bin'].stat().st_size} B)")
    s = res["sizes"]
    if s:
        print(f"  text {s['text']} B + data {s['data']} B (flash {s['text'] + s['data']} of {B.flash_bytes or '-'}), "
              f"bss {s['bss']} B (RAM {s['data'] + s['bss']} of {B.ram_bytes + B.psram_bytes or '-'})")


def cmd_emulate(a):
    from .boards import load_board
    from .firmware import Emulation, build_firmware
    B = load_board(a.board)
    port = _tcp_port(a.serial)
    elf = build_firmware(a.out, B.name)["elf"]
    print(f"{B.name}: firmware running under {B.emulator['cmd'][0]}; UART on socket://127.0.0.1:{port} "
          f"(Ctrl-C stops)", flush=True)
    with Emulation(B, elf, port) as emu:
        try:
            rc = emu.wait()
        except KeyboardInterrupt:
            return 0
    print(f"{B.name}: firmware exited with status {rc}")
    return 0 if rc == 0 else 1


def _tcp_port(spec):
    s = spec[4:] if spec.startswith("tcp:") else spec
    try:
        port = int(s.rsplit(":", 1)[-1])
    except ValueError:
        raise TslError(f"--serial: expected tcp:PORT, got {spec!r}")
    if not 0 < port < 65536:
        raise TslError(f"--serial: port {port} out of range")
    return port


def cmd_flash(a):
    import subprocess
    from .boards import load_board
    from .firmware import flash_plan, write_espidf_project
    B = load_board(a.board)
    if B.target.get("espidf_target"):
        write_espidf_project(a.out, B)            # (re)writes OUT/espidf around the current sources
    image = Path(a.image) if a.image else None
    if image is not None and not image.is_file():
        raise TslError(f"--image {image}: no such file")
    argv, steps = flash_plan(B, a.out, a.port, image)
    if argv is None:
        print(f"{B.name}: {steps}")
        return 0
    print(" ".join(argv), flush=True)
    if a.dry_run:
        return 0
    r = subprocess.run(argv)                      # the tool shows its own progress and verifies
    if r.returncode:
        raise TslError(f"{B.flash.get('tool')} failed with status {r.returncode} writing to {a.port}")
    print(f"{B.name}: flashed over {a.port}")
    return 0


def _device(a):
    from .serialio import Device
    return Device(a.port, baudrate=a.baud, timeout=a.timeout)


def cmd_identify(a):
    with _device(a) as dev:
        info = dev.identify()
    for k in ("board", "firmware", "model_hash", "weights_source", "weights_bytes", "arena_bytes", "kv_bytes",
              "vocab", "max_seq", "n_ops", "cycles_unit"):
        print(f"  {k:<16} {info[k]}")


def cmd_run_device(a):
    from .tokenizer import Tokenizer
    tok = None
    if a.out:
        tok = _tokenizer(a.out, required=not a.ids)
    elif a.tokenizer:
        tok = Tokenizer.from_file(a.tokenizer)
    elif not a.ids:
        raise TslError("--prompt needs the build directory (or --tokenizer) to encode the text; or pass --ids")
    with _device(a) as dev:
        info = dev.identify()
        ids = _prompt_ids(a, tok, info["vocab"])
        emit, cycles = _TokenPrinter(tok, a), []
        for t, cyc in dev.generate(ids, a.max_tokens, a.temperature, a.top_p, a.seed):
            cycles.append(cyc)
            emit(t)
        emit.close()
        run = dev.last_run
    n = max(1, len(cycles))
    print(f"[{info['board']}: {len(cycles)} tokens, prefill {run['prefill_cycles']} {info['cycles_unit']}, "
          f"{sum(cycles) // n} {info['cycles_unit']}/token on the device]", file=sys.stderr)


def cmd_verify_device(a, man, prog, prompt, steps):
    from .verify import compare_hashes, op_regions, token_sequence
    ref = token_sequence(prog, prompt, steps)
    with _device(a) as dev:
        info = dev.identify()
        if f"0x{info['arch_hash']:08x}" != man["arch_hash"]:
            raise TslError(f"{a.port}: the device runs another model (arch hash 0x{info['arch_hash']:08x}, "
                           f"build {man['arch_hash']}); flash or `tinyslm load` this build first")
        print(f"  running {steps} steps on {info['board']} over {a.port}", flush=True)
        res = dev.verify_steps(ref[0])
        regions = op_regions(man, prog)
        compare_hashes(prog, man, ref[0], ref[1:], res["logits"], res["tokens"], res["kv"],
                       lambda step: dict(enumerate(dev.op_hashes(step, regions))), " on the device")
    print(f"OK {info['board']}: {steps} steps bit-exact on the device (logits, tokens, KV cache); "
          f"{sum(res['cycles']) // steps} {info['cycles_unit']}/step", flush=True)


def cmd_load(a):
    from .pipeline import load_build
    man, _ = load_build(a.out)
    blob = (Path(a.out) / "model" / "tsl_weights.bin").read_bytes()
    with _device(a) as dev:
        info = dev.identify()
        if f"0x{info['arch_hash']:08x}" != man["arch_hash"]:
            raise TslError(f"{a.port}: the device's model has another architecture (0x{info['arch_hash']:08x}, "
                           f"build {man['arch_hash']}); loading needs the same shapes: flash instead")
        if info["load_capacity"] < len(blob):
            raise TslError(f"{a.port}: the firmware's load buffer holds {info['load_capacity']} B, the weights "
                           f"are {len(blob)} B; {info['board']} cannot take new weights at run time: flash instead")
        t0 = time.time()
        dev.load_weights(blob, progress=lambda d, t: _progress(d, t, "bytes"))
        info = dev.identify()
    print(f"loaded {len(blob)} B in {time.time() - t0:.1f}s; device model {info['model_hash']} ({info['weights_source']})")


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


def _device_args(s, required=True, what="pyserial URL of the device: /dev/ttyUSB0, COM3, socket://127.0.0.1:5555"):
    s.add_argument("--port", required=required, help=what)
    s.add_argument("--baud", type=int, default=115200)
    s.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer (default 2)")


ACT_HELP = ("int8 (default), or int8x2: every norm output also goes through its matvecs a second time as its "
            "int8 rounding error, as the MLP product always does (about 15-bit inputs; +57%% MACs on the example)")


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
    s.add_argument("--activations", choices=["int8", "int8x2"], default="int8", help=ACT_HELP)
    s.set_defaults(fn=cmd_compile)

    s = sub.add_parser("verify", help="check reference == host build bit for bit over decode steps")
    s.add_argument("out", help="build directory")
    s.add_argument("--steps", type=int, default=64, help="decode steps (default: 64, at most --max-seq)")
    s.add_argument("--board", help="also build for this board and run it under its emulator")
    _device_args(s, required=False, what="also verify on the device at this pyserial URL")
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("run", help="generate text with the host build, or on a device with --port")
    s.add_argument("out", nargs="?", help="build directory (host build; with --port: its tokenizer)")
    _device_args(s, required=False)
    s.add_argument("--tokenizer", help="tokenizer.json, with --port and no build directory")
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
    s.add_argument("--activations", choices=["int8", "int8x2"], default="int8", help=ACT_HELP)
    s.set_defaults(fn=cmd_logits)

    s = sub.add_parser("inspect", help="what the frontend recognizes in an ONNX model, or every node it cannot take")
    s.add_argument("model", help="ONNX file")
    s.set_defaults(fn=cmd_inspect)

    s = sub.add_parser("build", help="firmware image for a board (ELF + raw binary, or a Linux program)")
    s.add_argument("out", help="build directory")
    s.add_argument("--board", required=True)
    s.set_defaults(fn=cmd_build)

    s = sub.add_parser("emulate", help="run the board's firmware under qemu, its UART on 127.0.0.1:PORT")
    s.add_argument("out", help="build directory")
    s.add_argument("--board", required=True)
    s.add_argument("--serial", default="tcp:5555", help="tcp:PORT (default tcp:5555)")
    s.set_defaults(fn=cmd_emulate)

    s = sub.add_parser("flash", help="write the firmware with the family's tool (esptool, stm32loader), or print the steps")
    s.add_argument("out", help="build directory")
    s.add_argument("--board", required=True)
    s.add_argument("--port", required=True, help="serial port of the bootloader, e.g. /dev/ttyUSB0")
    s.add_argument("--image", help="an image you built yourself for boards without tinyslm start-up code (STM32, RP2350)")
    s.add_argument("--dry-run", action="store_true", help="print the command only")
    s.set_defaults(fn=cmd_flash)

    s = sub.add_parser("load", help="send new weights (same architecture) into the running firmware's RAM")
    s.add_argument("out", help="build directory whose weights to send")
    _device_args(s)
    s.set_defaults(fn=cmd_load)

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
