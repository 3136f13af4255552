"""--fit BOARD: the context length and the per-tensor weight formats that fit a board's flash and RAM.

1. Context: the longest of CONTEXTS (up to the model's limit, or exactly --max-seq if given) whose
   arena + KV cache fit the board's RAM, and whose all-int4 weights fit its flash (RoPE tables grow
   with the context). The image's own code, stack and buffers are set aside as FLASH_RESERVE and
   RAM_RESERVE (measured on the nucleo-f446re image of the bundled example: code 17.4 KiB, stack
   16 KiB, sampler 4 KiB, other bss 5.8 KiB).
2. Formats: every matvec starts in int4 and may move up a ladder, int4 -> int5 (s5nl, int4nl.py) ->
   int8. Each tensor's KLD contribution in each format of its ladder is measured on calibration text
   (the float forward with only that tensor quantized, rounded to nearest, against the float
   forward); then, while the weights still fit, the move of most KLD saved per flash byte is taken,
   one tensor one or two steps up at a time.
The embedding (and a tied LM head) is int8 in every choice. Greedy, not optimal: contributions are
measured one tensor at a time, and they do not add exactly.
"""
from .calibrate import MATVECS, float_logprobs, kld_sim
from .errors import TslError
from .units import human_bytes

FLASH_RESERVE = 24 << 10
RAM_RESERVE = 32 << 10
CONTEXTS = (4096, 2048, 1024, 768, 512, 384, 256, 224, 192, 160, 128, 96, 64, 48, 32, 16)
MIXED_BPW = 0.70         # --weights mixed: bytes of the weights blob per parameter (issue 13's bar)
CONTRIB_TOKENS = 160     # of the first calibration chunk, for the per-tensor contributions
ALIGN = 16               # codegen aligns each weight tensor in the blob
LEVELS = {"s4nl": 16, "s5nl": 32}                                  # the non-linear grids' level tables
BITS = {"s8": "int8", "s5nl": "int5", "s4": "int4", "s4nl": "int4"}


def _al(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def tensor_bytes(N, K, fmt):
    """Blob bytes of one matvec weight: values, levels (s4nl, s5nl), group scales (int4, int5), row scales."""
    if fmt == "s8":
        return _al(N * K) + _al(4 * N)
    values = N * K * 5 // 8 if fmt == "s5nl" else N * K // 2
    return _al(values) + _al(LEVELS.get(fmt, 0)) + _al(N * K // 32) + _al(4 * N)


def contributions(spec, chunks, ladders):
    """{matvec name: {format: mean KLD (calibration text) with that tensor alone in it, rounded to
    nearest, the rest float}} for every format of each tensor's ladder"""
    refs = float_logprobs(spec, chunks)
    return {name: {f: kld_sim(spec, spec, chunks, {name: f}, float_rest=True, refs=refs) for f in fs}
            for name, fs in ladders.items()}


def choose(spec, chunks, weights, s4_ok, cap, int5=False):
    """-> (formats, bytes): all int4 (where int4 can hold the tensor), then up the ladder int4 -> int5
    (with int5) -> int8 by measured KLD saved per byte while the matvec weights stay within cap bytes
    (0: no limit, all int8)."""
    formats = {n: "s8" for n in weights}
    if not cap:
        return formats, sum(tensor_bytes(*w.shape, "s8") for w in weights.values())
    formats.update(s4_ok)
    size = lambda n, f: tensor_bytes(*weights[n].shape, f)     # noqa: E731
    used = sum(size(n, f) for n, f in formats.items())
    if s4_ok:
        ladders = {n: [f] + (["s5nl"] if int5 and w_ok(weights[n], "s5nl") else []) + ["s8"] for n, f in s4_ok.items()}
        contrib = contributions(spec, [c[:CONTRIB_TOKENS] for c in chunks[:1]], ladders)
        while True:
            moves = [((contrib[n][formats[n]] - contrib[n][f]) / (size(n, f) - size(n, formats[n])), n, f)
                     for n, fs in ladders.items() for f in fs[fs.index(formats[n]) + 1:]
                     if used + size(n, f) - size(n, formats[n]) <= cap and contrib[n][f] < contrib[n][formats[n]]]
            if not moves:
                break
            _, n, f = max(moves)
            used += size(n, f) - size(n, formats[n])
            formats[n] = f
    return formats, used


def matvec_weights(spec):
    return {f"l{li}.{n}": getattr(L, n) for li, L in enumerate(spec.layers) for n, _ in MATVECS
            if getattr(L, n) is not None}


def mixed(spec, chunks, max_seq, mlp_residual, bytes_per_weight=MIXED_BPW, s4="s4", int5=False):
    """--weights mixed: choose() within bytes_per_weight of the whole weights blob per parameter; s4: the
    int4 format (s4 | s4nl); int5: whether int5 is a step of the ladder."""
    from .quantize import quantize
    weights = matvec_weights(spec)
    prog = quantize(spec, max_seq, "int8", mlp_residual=mlp_residual)
    other = sum(_al(a.nbytes) for k, a in prog.weights.items() if k.rsplit(".", 1)[0] not in weights)
    cap = int(bytes_per_weight * spec.n_params()) - other
    s4_ok = {n: s4 for n, w in weights.items() if w_ok(w, s4)}
    if cap < sum(tensor_bytes(*weights[n].shape, s4_ok.get(n, "s8")) for n in weights):
        raise TslError(f"--weights mixed: even all-int4 weights exceed {bytes_per_weight} bytes per weight")
    return choose(spec, chunks, weights, s4_ok, cap, int5)[0]


def fit(spec, board, chunks, asked_seq, limit, mlp_residual, log, rotate_att=(), s4="s4", int5=False):
    """-> (max_seq, "mixed" | "int8" | "int5" | "int4", formats); rotate_att: as quantize's (its float buffers);
    s4: the int4 format (s4 | s4nl); int5: as choose()'s"""
    from .plan import plan
    from .quantize import quantize
    weights = matvec_weights(spec)
    flash = board.flash_bytes - FLASH_RESERVE if board.flash_bytes else 0
    ram = board.ram_bytes + board.psram_bytes - RAM_RESERVE if board.ram_bytes else 0
    s4_all = {n: s4 for n in weights if w_ok(weights[n], s4)}
    contexts = [asked_seq] if asked_seq else [c for c in CONTEXTS if c <= limit] or [limit]
    chosen = None
    for S in contexts:
        prog = quantize(spec, S, "int8", mlp_residual=mlp_residual, rotate_att=rotate_att)
        pl = plan(prog)
        other = sum(_al(a.nbytes) for k, a in prog.weights.items() if k.rsplit(".", 1)[0] not in weights)
        need_flash = other + sum(tensor_bytes(*weights[n].shape, s4_all.get(n, "s8")) for n in weights)
        model_ram = pl.arena_bytes + pl.kv_bytes
        need_ram = model_ram + (0 if board.flash_bytes else need_flash)     # no flash: the weights load into RAM
        if (not flash or need_flash <= flash) and (not ram or need_ram <= ram):
            chosen = S, other, model_ram
            break
    if chosen is None:
        raise TslError(f"--fit {board.name}: even all-int4 weights at a context of {contexts[-1]} do not fit "
                       f"its {human_bytes(board.flash_bytes)} of flash and {human_bytes(board.ram_bytes)} of RAM "
                       f"(reserving {human_bytes(FLASH_RESERVE)} and {human_bytes(RAM_RESERVE)} for the image)")
    S, other, model_ram = chosen
    cap = flash or (ram - model_ram if ram else 0)          # bytes the weights may take; 0: no limit
    formats, used = choose(spec, chunks, weights, s4_all, cap - other if cap else 0, int5)
    used += other
    n = {b: sum(BITS[f] == b for f in formats.values()) for b in ("int8", "int5", "int4")}
    label = next((b for b, k in n.items() if k == len(formats)), "mixed")
    log(f"fit {board.name}: context {S}, " + ", ".join(f"{k} matvecs {b}" for b, k in n.items() if k)
        + (f" (int8: {', '.join(n for n, f in formats.items() if f == 's8')})" if label == "mixed" and n["int8"] else "")
        + f"; weights {human_bytes(used)}" + (f" of {human_bytes(flash)} flash" if flash else "")
        + f", arena + KV cache {human_bytes(model_ram)}" + (f" of {human_bytes(ram)} RAM" if ram else "")
        + f" (after {human_bytes(FLASH_RESERVE)} / {human_bytes(RAM_RESERVE)} kept for the image)")
    return S, label, formats


def w_ok(w, s4="s4"):
    """Whether int4 (s4 | s4nl) or int5 (s5nl) can hold a weight [N, K]: K a multiple of 32, the int32
    accumulator safe."""
    from .int4nl import gmax
    K = w.shape[1]
    return K % 32 == 0 and (gmax(K) >= 1 if s4 in ("s4nl", "s5nl") else K * 8 * 128 * 127 < 2 ** 31)

