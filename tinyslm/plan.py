"""Static memory plan: one arena for the buffers of a step, one region for the KV cache.

1. A buffer lives from the first op that touches it to the last; `out` buffers (logits) live to
   the end of the step, since the caller reads them after it.
2. Buffers are placed largest first, each at the lowest 16-byte aligned offset that overlaps no
   placed buffer with an intersecting lifetime (greedy by size, as TFLM's planner).
3. The lower bound is the largest sum of live bytes over all ops. Greedy can miss it when
   fragmentation forces a gap; `tinyslm info` prints both.
In place is expressed by the IR itself (an op whose output names its input).
"""
from dataclasses import dataclass

ALIGN = 16


def _al(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Plan:
    offsets: dict        # arena buffer -> byte offset
    arena_bytes: int
    lower_bound: int
    kv_offsets: dict     # kv buffer -> byte offset in the KV region
    kv_bytes: int
    lifetimes: dict      # arena buffer -> (first op, last op)


def plan(prog):
    n_ops = len(prog.ops)
    life = {}
    for i, op in enumerate(prog.ops):
        for name in op.ins + op.outs + [op.attrs.get("sx")]:
            if name and prog.bufs[name].kind != "kv":
                a, b = life.get(name, (i, i))
                life[name] = (min(a, i), max(b, i))
    for name, (a, b) in life.items():
        if prog.bufs[name].kind == "out":
            life[name] = (a, n_ops)
    placed, offsets = [], {}
    for name in sorted(life, key=lambda n: (-prog.bufs[n].nbytes, n)):
        a, b = life[name]
        size = _al(prog.bufs[name].nbytes)
        busy = sorted((o, o + s) for o, s, x, y in placed if x <= b and a <= y)
        off = 0
        for lo, hi in busy:
            if off + size <= lo:
                break
            off = max(off, _al(hi))
        placed.append((off, size, a, b))
        offsets[name] = off
    arena = max((o + s for o, s, _, _ in placed), default=0)
    lower = max((sum(_al(prog.bufs[n].nbytes) for n, (a, b) in life.items() if a <= i <= b)
                 for i in range(n_ops + 1)), default=0)
    kv_offsets, kv = {}, 0
    for name, b in prog.bufs.items():
        if b.kind == "kv":
            kv_offsets[name] = kv
            kv += _al(b.nbytes)
    return Plan(offsets, arena, lower, kv_offsets, kv, life)
