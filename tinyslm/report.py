"""Reports a person reads at a glance: what a build needs (flash, RAM per buffer), where it fits,
and what a firmware image takes. Plain functions from checked data to lines of text."""
from .units import human_bytes as hb


def _pct(part, whole):
    return f" ({100 * part / whole:.1f}%)" if whole else ""


def build_info(man, show_all=False):
    """-> lines: model, flash per tensor, RAM per buffer, totals."""
    import numpy as np
    m, mem = man["model"], man["memory"]
    L = [f"{man.get('source_name') or man['source'].rsplit('/', 1)[-1]}: {m['family']} model for board {man['board']}",
         f"  {m['n_layers']} layers, dim {m['dim']}, heads {m['n_heads']} (kv {m['n_kv_heads']}) x {m['head_dim']}, "
         f"ffn {m['hidden']}, vocab {m['vocab']}, max_seq {m['max_seq']}, weights {m['weights']}, "
         f"{m['n_params'] / 1e6:.2f} M params", rotation_line(m), "", "Flash (read-only data)"]
    tensors = sorted(man["weights"]["tensors"].items(), key=lambda kv: kv[1]["offset"])
    rows = [(n, t["dtype"], "x".join(map(str, t["shape"])),
             int(np.prod(t["shape"], dtype=np.int64)) * np.dtype(t["dtype"]).itemsize) for n, t in tensors]
    if not show_all:
        big = sorted(rows, key=lambda r: -r[3])[:12]
        rows = [r for r in rows if r in big]
    L += [f"  {n:<28} {dt:<8} {shp:<12} {hb(nb):>10}" for n, dt, shp, nb in rows]
    L.append(f"  {'weights blob (' + str(len(tensors)) + ' tensors, aligned)':<50} {hb(man['weights']['bytes']):>10}")
    L += ["", "RAM (one decode step reuses the arena; see memory.svg)"]
    bufs = sorted(((n, b) for n, b in mem["buffers"].items() if b["kind"] != "kv"), key=lambda kv: -kv[1]["bytes"])
    for n, b in (bufs if show_all else bufs[:10]):
        life = b.get("life") or ["-", "-"]
        L.append(f"  {n:<28} {b['dtype']:<4} {hb(b['bytes']):>10} at {b['offset'] or 0:>8}  ops {life[0]}-{life[1]}")
    need = ram_need(man)
    L += [f"  {'activation arena':<50} {hb(mem['arena_bytes']):>10}  (lower bound {hb(mem['arena_lower_bound'])})",
          f"  {'KV cache (int8 rows + a float scale each)':<50} {hb(mem['kv_bytes']):>10}",
          *kv_rows(m),
          f"  {'sampler scratch (probs + indices)':<50} {hb(8 * m['vocab']):>10}",
          f"  {'total RAM for the model':<50} {hb(need):>10}"]
    return L


def per_token(prog, board=None):
    """-> lines: what one decoded token reads and computes: the matvec weights it streams (each
    matvec op reads its weights, row and group scales and bias once; the MLP's residual pass reads
    them again), their MACs, and the KV cache read at full context; with the board's peak DRAM
    bandwidth (boards/<name>.toml dram_bytes_per_s), the bound that streaming puts on tokens/s."""
    mv = [o for o in prog.ops if o.kind == "matvec"]
    wbytes = sum(prog.weights[o.attrs[k]].nbytes for o in mv for k in ("w_w", "ws_w", "gs_w", "kv_w", "bias_w")
                 if o.attrs.get(k))
    macs = sum(o.attrs["N"] * o.attrs["K"] for o in mv)
    kv = sum(b.nbytes for b in prog.bufs.values() if b.kind == "kv")
    L = ["Per decoded token",
         f"  {'matvec weights streamed (' + str(len(mv)) + ' matvec ops)':<50} {hb(wbytes):>10}",
         f"  {'matvec MACs':<50} {macs / 1e6:>8.2f} M",
         f"  {'KV cache read at the last position':<50} {hb(kv):>10}"]
    bw = board.extra.get("dram_bytes_per_s", 0) if board is not None else 0
    if bw:
        L.append(f"  at {bw / 1e9:g} GB/s peak DRAM bandwidth ({board.name}): at most "
                 f"{bw / (wbytes + kv):,.0f} tokens/s at the last position, {bw / wbytes:,.0f} with an empty cache")
    return L


def rotation_line(m):
    """compile --rotate, as the manifest records it"""
    r = m.get("rotate")
    if not r:
        return "  rotation: off (the MLP product and the attention output are quantized as they are)"
    parts = []
    for site, what in (("mid", "the MLP product"), ("att", "the attention output")):
        s = [x for x in r["sites"] if x["site"] == site]
        if s:
            parts.append(f"{what} of {len(s)} layers (blocks of {', '.join(map(str, sorted({x['block'] for x in s})))})")
    return (f"  rotation: on, a randomized Walsh-Hadamard rotation before int8 of {' and '.join(parts)}, "
            f"sign seed {r['seed']}")


def kv_rows(m):
    """Lines per layer when sliding windows make some layers' KV caches rings of their window."""
    kvl = m.get("kv_layers", [])
    if not any(kv["window"] for kv in kvl):
        return []
    L = []
    for kv in kvl:
        what = f"ring of {kv['slots']} (window {kv['window']})" if kv["window"] and kv["slots"] < m["max_seq"] \
            else f"{kv['slots']} positions"
        L.append(f"    {'layer ' + str(kv['layer']) + ': ' + what:<48} {hb(kv['bytes']):>10}")
    full = sum(kv["bytes"] * m["max_seq"] // kv["slots"] for kv in kvl)
    L.append(f"    {'(every layer at max_seq: ' + hb(full) + ')':<48}")
    return L


def ram_need(man):
    mem = man["memory"]
    return mem["arena_bytes"] + mem["kv_bytes"] + 8 * man["model"]["vocab"]


def fit_table(flash_need, ram_need, boards):
    """-> lines: for each Board, whether the weights fit its flash and the buffers its RAM."""
    L = [f"Fit per board (flash {hb(flash_need)}, RAM {hb(ram_need)})",
         f"  {'board':<18} {'flash':>10} {'RAM (+PSRAM)':>13}  {'fits':<5} runs here"]
    for b in boards:
        if not b.flash_bytes and not b.ram_bytes:
            L.append(f"  {b.name:<18} {'-':>10} {'-':>13}  {'yes':<5} native")
            continue
        ram = b.ram_bytes + b.psram_bytes
        need_ram = ram_need + (0 if b.flash_bytes else flash_need)     # no flash: weights load into RAM
        bad = [x for x, over in (("flash", b.flash_bytes and flash_need > b.flash_bytes), ("RAM", need_ram > ram))
               if over]
        why = f" (too little {' and '.join(bad)})" if bad else ""
        run = "qemu" if b.emulated else "device only" + (f"; stand-in {b.stand_in}" if b.stand_in else "")
        L.append(f"  {b.name:<18} {hb(b.flash_bytes) if b.flash_bytes else '-':>10} {hb(ram):>13}  "
                 f"{('no' if bad else 'yes'):<5} {run}{why}")
    return L


def image_sizes(sections, symbols, man, load_bytes):
    """-> dict of an image's flash and RAM parts, from `size -A` sections and `nm -S` symbol sizes."""
    s = lambda k: sections.get(k, 0)                              # noqa: E731
    weights = symbols.get("tsl_weights_blob", man["weights"]["bytes"])
    flash_total = s(".text") + s(".rodata") + s(".data") + s(".ARM.exidx") + s(".ARM.extab") + s(".srodata") \
        + s(".sdata")
    model_ram = sum(symbols.get(k, 0) for k in ("tsl_arena", "tsl_kv"))
    sampler = sum(symbols.get(k, 0) for k in ("probs", "idx", "tsl_sampler_scratch"))
    load = symbols.get("load_buf", 0)
    bss = s(".bss") + s(".sbss")
    return dict(flash=flash_total, code=flash_total - weights - s(".data") - s(".sdata"), weights=weights,
                data=s(".data") + s(".sdata"), bss=bss, model_ram=model_ram, sampler=sampler, load_buffer=load,
                other_bss=max(0, bss - model_ram - sampler - load), heap=s(".heap"), stack=s(".stack"),
                ram=s(".data") + s(".sdata") + bss + s(".heap") + s(".stack"))


def image_report(sz, board):
    """-> lines: the image's flash and RAM, part by part, against the board's."""
    L = [f"  {'flash' if board.kind == 'baremetal' else 'file '} {hb(sz['flash'])}{' of ' + hb(board.flash_bytes) + _pct(sz['flash'], board.flash_bytes) if board.flash_bytes else ''}:"
         f" code {hb(sz['code'])}, weights {hb(sz['weights'])}, initialized data {hb(sz['data'])}"]
    cap = board.ram_bytes + board.psram_bytes
    used = sz["data"] + sz["bss"] + sz["stack"]
    parts = [("model arena + KV cache", sz["model_ram"]), ("sampler", sz["sampler"]),
             ("load buffer (--load-buffer)", sz["load_buffer"]), ("other bss", sz["other_bss"]),
             ("data", sz["data"]), ("stack", sz["stack"])]
    L.append(f"  RAM   {hb(used)}{' of ' + hb(cap) + _pct(used, cap) if cap else ''}: "
             + ", ".join(f"{k} {hb(v)}" for k, v in parts if v)
             + (f"; the heap gets the rest ({hb(sz['heap'])})" if sz["heap"] else ""))
    return L


def token_rate(cycles, unit, board_name):
    """'12.3 ms/token, 81.3 tokens/s ...' for a device's cycle count per token, at the board's clock
    (boards/<name>.toml, or an '@NNMHz' in the unit string); marked as an estimate when the count
    comes from an emulator."""
    import re

    from .boards import list_boards, load_board
    if cycles <= 0:
        return f"{cycles} {unit}/token"
    if unit == "ns":
        return f"{cycles / 1e6:.2f} ms/token, {1e9 / cycles:.1f} tokens/s"
    m = re.search(r"@\s*(\d+(?:\.\d+)?)\s*MHz", unit)
    board = load_board(board_name) if board_name in list_boards() else None
    clock = float(m.group(1)) * 1e6 if m else (board.clock_hz if board else 0)
    if not clock:
        return f"{cycles} {unit}/token (no clock known for {board_name})"
    est = f", estimated from the emulator's count at {clock / 1e6:g} MHz" if board is not None and board.emulated \
        else f" at {clock / 1e6:g} MHz"
    return f"{1e3 * cycles / clock:.2f} ms/token, {clock / cycles:.1f} tokens/s{est} ({cycles} {unit.split('@')[0].strip()})"
