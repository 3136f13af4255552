"""memory.svg: a picture of a build's memory plan, written by compile beside the manifest.

Left, the activation arena over the ops of one decode step: x is the op index, y the byte
offset, each buffer a box from its first to its last op (boxes never overlap: that is the plan's
invariant, and the picture shows the reuse). Right, three columns to scale with each other: the
weights blob in flash (one band per tensor), the KV cache and the arena in RAM.
"""
from html import escape

from .units import human_bytes as hb

W, H, PAD = 1140, 620, 50
COLORS = {"f32": "#4e79a7", "s8": "#f28e2b", "s32": "#59a14f", "kv": "#e15759", "out": "#b07aa1",
          "weights": "#76b7b2", "scratch": "#9c755f"}


def svg(man):
    mem, ops = man["memory"], man["ops"]
    n_ops = max(1, len(ops))
    arena = max(16, mem["arena_bytes"])
    ax0, ay0, aw, ah = PAD + 40, PAD + 30, 600, H - 2 * PAD - 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="12"><rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{PAD}" y="{PAD - 20}" font-size="16" font-weight="bold">{escape(man["model"]["family"])} '
           f'for {escape(man["board"])}: memory plan of one decode step</text>',
           f'<text x="{ax0}" y="{ay0 - 10}">activation arena {hb(mem["arena_bytes"])} (lower bound '
           f'{hb(mem["arena_lower_bound"])}), over {len(ops)} ops</text>',
           f'<rect x="{ax0}" y="{ay0}" width="{aw}" height="{ah}" fill="#f4f4f4" stroke="#888"/>']
    for name, b in sorted(mem["buffers"].items(), key=lambda kv: kv[0]):
        if b["kind"] == "kv" or b.get("offset") is None or not b.get("life"):
            continue
        a, z = b["life"]
        x, w = ax0 + aw * a / (n_ops + 1), max(1.0, aw * (z - a + 1) / (n_ops + 1))
        y, h = ay0 + ah * b["offset"] / arena, max(1.0, ah * b["bytes"] / arena)
        col = COLORS.get(b["kind"], COLORS.get(b["dtype"], "#bab0ac"))
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{col}" '
                   f'fill-opacity="0.8" stroke="white" stroke-width="0.5"><title>{escape(name)}: {b["dtype"]} '
                   f'{hb(b["bytes"])} at {b["offset"]}, ops {a}-{z}</title></rect>')
    for frac in (0, 0.25, 0.5, 0.75, 1):                              # axes
        out.append(f'<text x="{ax0 - 6}" y="{ay0 + ah * frac + 4:.0f}" text-anchor="end">'
                   f'{hb(arena * frac)}</text>')
        out.append(f'<text x="{ax0 + aw * frac:.0f}" y="{ay0 + ah + 16}" text-anchor="middle">'
                   f'{round((n_ops + 1) * frac)}</text>')
    out.append(f'<text x="{ax0 + aw / 2}" y="{ay0 + ah + 34}" text-anchor="middle">op index '
               f'(a box: a buffer, from the op that writes it to the last that reads it)</text>')
    for i, (k, c) in enumerate((("float32", "f32"), ("int8", "s8"), ("int32", "s32"), ("logits", "out"),
                                ("attention scratch", "scratch"))):
        out.append(f'<rect x="{ax0 + 110 * i}" y="{ay0 + ah + 44}" width="12" height="12" fill="{COLORS[c]}"/>'
                   f'<text x="{ax0 + 110 * i + 16}" y="{ay0 + ah + 54}">{k}</text>')
    # to-scale columns: flash (weights), KV cache, arena
    cols = [("flash: weights", man["weights"]["bytes"], _weight_bands(man), COLORS["weights"]),
            ("RAM: KV cache", mem["kv_bytes"], _kv_bands(mem), COLORS["kv"]),
            ("RAM: arena", mem["arena_bytes"], [], COLORS["f32"])]
    biggest = max(1, max(c[1] for c in cols))
    cx0, cw = ax0 + aw + 50, 80
    for i, (label, total, bands, col) in enumerate(cols):
        x = cx0 + i * (cw + 35)
        h = max(2.0, ah * total / biggest)
        out.append(f'<text x="{x + cw / 2}" y="{ay0 - 10}" text-anchor="middle">{label}</text>')
        out.append(f'<rect x="{x}" y="{ay0}" width="{cw}" height="{h:.1f}" fill="{col}" fill-opacity="0.35" '
                   f'stroke="#888"/>')
        for name, off, n in bands:
            out.append(f'<rect x="{x}" y="{ay0 + h * off / max(1, total):.1f}" width="{cw}" '
                       f'height="{max(0.5, h * n / max(1, total)):.1f}" fill="{col}" stroke="white" '
                       f'stroke-width="0.3"><title>{escape(name)}: {hb(n)}</title></rect>')
        out.append(f'<text x="{x + cw / 2}" y="{ay0 + h + 16:.0f}" text-anchor="middle">{hb(total)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _weight_bands(man):
    import numpy as np
    return [(n, t["offset"], int(np.prod(t["shape"], dtype=np.int64)) * np.dtype(t["dtype"]).itemsize)
            for n, t in man["weights"]["tensors"].items()]


def _kv_bands(mem):
    return [(n, b["offset"] or 0, b["bytes"]) for n, b in mem["buffers"].items() if b["kind"] == "kv"]
