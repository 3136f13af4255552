"""The commands that reach a board: emulate, flash, identify, run/verify/load over a serial port,
and chat (on the host build or over a port)."""
import sys
import time
from pathlib import Path

from .cli_common import _open, _progress, _prompt_ids, _tokenizer
from .errors import TslError
from .generation import DeviceTokenizer, TokenPrinter
from .units import human_bytes


def cmd_emulate(a):
    from .boards import load_board
    from .firmware import Emulation, build_firmware
    B = load_board(a.board)
    port = _tcp_port(a.serial)
    elf = build_firmware(a.out, B.name, load_buffer=a.load_buffer)["elf"]
    print(f"{B.name}: firmware running under {B.emulator['cmd'][0]}; UART on socket://127.0.0.1:{port} "
          f"(Ctrl-C stops)", flush=True)
    with Emulation(B, elf, port) as emu:
        try:
            rc = emu.wait()
        except KeyboardInterrupt:
            print(f"{B.name}: emulator stopped")
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
    from . import procs
    from .boards import load_board
    from .firmware import build_firmware, flash_plan, write_espidf_project
    B = load_board(a.board)
    if B.target.get("espidf_target"):
        write_espidf_project(a.out, B)            # (re)writes OUT/espidf around the current sources
    image = Path(a.image) if a.image else None
    if image is not None and not image.is_file():
        raise TslError(f"--image {image}: no such file")
    if image is None and B.target.get("startup") and not B.emulated:
        res = build_firmware(a.out, B.name, lambda m: print(m, file=sys.stderr))      # this build's image
        image = res["uf2"] or res["bin"]
    argv, steps = flash_plan(B, a.out, a.port, image, a.tool)
    if argv is None:
        print(f"{B.name}: not flashed: {steps}", file=sys.stderr)
        return 1
    print(" ".join(argv), flush=True)
    if a.dry_run:
        return 0
    rc = procs.wait_any(procs.popen(argv, stdin=None))   # the tool shows its own progress and verifies
    if rc:
        raise TslError(f"{argv[0] if argv[0] != sys.executable else argv[2]} failed with status {rc}; {B.name} is not flashed")
    print(f"{B.name}: flashed" + (f" over {a.port}" if a.port else ""))
    return 0


def _device(a):
    import math
    from .serialio import Device
    if not (math.isfinite(a.timeout) and a.timeout > 0):
        raise TslError(f"--timeout {a.timeout}: must be a positive number of seconds")
    if a.baud <= 0:
        raise TslError(f"--baud {a.baud}: must be positive")
    return Device(a.port, baudrate=a.baud, timeout=a.timeout)


def cmd_identify(a):
    with _device(a) as dev:
        info = dev.identify()
    for k in ("board", "firmware", "model_hash", "weights_source", "weights_bytes", "arena_bytes", "kv_bytes",
              "vocab", "max_seq", "n_ops", "cycles_unit", "tokenizer"):
        print(f"  {k:<16} {info[k]}")


def cmd_run_device(a):
    from .device_run import generate, run_count
    from .sampler import check_args
    from .tokenizer import Tokenizer
    check_args(a.seed, a.temperature, a.top_p, a.max_tokens)
    tok, tok_file = None, None
    if a.out:
        tok = _tokenizer(a.out, required=False)
        tok_file = Path(a.out) / "tokenizer.json"
    elif a.tokenizer:
        tok, tok_file = Tokenizer.from_file(a.tokenizer), Path(a.tokenizer)
    with _device(a) as dev:
        info = dev.identify()
        if tok is None and not a.ids and not info["tok_encode"]:
            raise TslError(f"{a.port}: the firmware has no tokenizer encoder"
                           + (" and the build directory no tokenizer" if a.out else "")
                           + "; pass --ids, or --tokenizer tokenizer.json")
        if tok is not None and info["tokenizer_hash"]:
            from .firmware import tokenizer_hash
            if tokenizer_hash(tok_file.read_bytes()) != info["tokenizer_hash"]:
                raise TslError(f"{tok_file}: not the tokenizer of the device's firmware (its hash is "
                               f"{info['tokenizer']}); drop it to use the device's own")
        dtok = DeviceTokenizer(dev, info) if tok is None and not a.ids else None
        ids = _prompt_ids(a, tok or dtok, info["vocab"])
        run_count(info, len(ids), a.max_tokens)        # refused before the prompt is printed
        emit = TokenPrinter(tok, a, dev if tok is None and info["tok_decode"] else None)
        eos = tok.eos_id if tok else info["eos_id"]
        out, cycles = generate(dev, ids, a.max_tokens, a.temperature, a.top_p, a.seed, emit, eos)
        emit.close()
        run = dev.last_run or {}
    from .report import token_rate
    n = max(1, len(cycles))
    print(f"[{info['board']}: {len(out)} tokens, prefill {run.get('prefill_cycles', '?')} {info['cycles_unit']}; "
          f"{token_rate(sum(cycles) // n, info['cycles_unit'], info['board'])}]", file=sys.stderr)


def cmd_chat(a):
    from .chat import Conversation, DeviceSession, HostSession, Template, chat, load_template, min_slots
    from .firmware import tokenizer_hash
    from .sampler import check_args
    check_args(a.seed, a.temperature, a.top_p, a.max_tokens)
    tok = _tokenizer(a.out, required=True)
    cfg = Path(a.config) if a.config else Path(a.out) / "tokenizer_config.json"
    template = None
    if a.config or cfg.is_file():
        src, bos, eos = load_template(cfg)
        template = Template(src, bos, eos, where=f"{cfg}: chat_template") if src else None
    if template is None:
        print("[no chat template: plain continuation]", file=sys.stderr)
    interactive = sys.stdin.isatty()

    def lines():
        while True:
            if interactive:
                print("> ", end="", file=sys.stderr, flush=True)
            try:
                line = sys.stdin.readline()
            except KeyboardInterrupt:
                return
            if not line:
                return
            yield line

    def write(t):
        print(t, end="", flush=True)

    def note(t):
        print(t, file=sys.stderr, flush=True)
    if a.port:
        from . import protocol as P
        from .builddir import load_build
        slots = min_slots(load_build(a.out)[0])          # where the device's KV cache is a ring
        with _device(a) as dev:
            info = dev.identify()
            if info["vocab"] < tok.vocab_size:
                raise TslError(f"{a.port}: the device's model has {info['vocab']} tokens, the build's tokenizer "
                               f"{tok.vocab_size}: another model")
            if info["tokenizer_hash"] and info["tokenizer_hash"] != tokenizer_hash(
                    (Path(a.out) / "tokenizer.json").read_bytes()):
                raise TslError(f"{a.out}: its tokenizer is not the device's ({info['tokenizer']})")
            # a turn's prompt: at most MAX_IDS ids in one run request (Conversation keeps 16 for the answer)
            limit = min(info["max_seq"], P.MAX_IDS + min(a.max_tokens, 16))
            conv = Conversation(tok, template, limit, a.max_tokens, a.system)
            chat(DeviceSession(dev, slots), conv, lines(), write, a.temperature, a.top_p, a.seed, note)
        return
    man, prog, host = _open(a.out)
    conv = Conversation(tok, template, man["model"]["max_seq"], a.max_tokens, a.system)
    chat(HostSession(host, man["model"]["max_seq"], min_slots(man)), conv, lines(), write, a.temperature, a.top_p, a.seed, note)


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
    from .report import token_rate
    print(f"OK {info['board']}: {steps} steps bit-exact on the device (logits, tokens, KV cache); "
          f"{token_rate(sum(res['cycles']) // max(1, steps), info['cycles_unit'], info['board'])}", flush=True)


def cmd_load(a):
    from .builddir import load_build
    man, _ = load_build(a.out)
    blob = (Path(a.out) / "model" / "tsl_weights.bin").read_bytes()
    with _device(a) as dev:
        info = dev.identify()
        if f"0x{info['arch_hash']:08x}" != man["arch_hash"]:
            raise TslError(f"{a.port}: the device's model has another architecture (0x{info['arch_hash']:08x}, "
                           f"build {man['arch_hash']}); loading needs the same shapes: flash instead")
        if info["load_capacity"] < len(blob):
            raise TslError(f"{a.port}: the firmware's load buffer holds {human_bytes(info['load_capacity'])}, the "
                           f"weights are {human_bytes(len(blob))}; {info['board']} cannot take new weights at run "
                           f"time: flash instead, or build the firmware with --load-buffer")
        t0 = time.time()
        dev.load_weights(blob, progress=lambda d, t: _progress(d, t, "bytes"))
        info = dev.identify()
    print(f"loaded {len(blob)} B in {time.time() - t0:.1f}s; device model {info['model_hash']} ({info['weights_source']})")
