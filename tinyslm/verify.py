"""verify: the numpy reference and a C build agree bit for bit, or we say where they part."""
import numpy as np

from .reference import Reference
from .sampler import Sampler


class Mismatch(Exception):
    pass


def token_sequence(prog, prompt_ids, steps, seed=7):
    """Prompt ids, then tokens sampled (temperature 0.8, top-p 0.9) by the reference: the test drive."""
    ref = Reference(prog)
    s = Sampler(seed, 0.8, 0.9)
    ids, logits, tokens = list(prompt_ids), [], []
    for pos in range(steps):
        lg = ref.step(ids[pos], pos)
        logits.append(lg)
        t = s.sample(lg)
        tokens.append(t)
        if pos + 1 >= len(ids):
            ids.append(t)
    kv = {n: ref.buf[n].copy() for n, b in prog.bufs.items() if b.kind == "kv"}
    return ids[:steps], logits, tokens, kv


def verify_host(prog, host, prompt_ids, steps, seed=7, progress=None):
    """Compare reference and host build step by step. Returns a report dict; raises Mismatch."""
    ids, ref_logits, ref_tokens, ref_kv = token_sequence(prog, prompt_ids, steps, seed)
    host.reset()
    smp = host.sampler(seed, 0.8, 0.9)
    for pos in range(steps):
        lg = host.step(ids[pos], pos)
        if lg.tobytes() != ref_logits[pos].tobytes():
            raise Mismatch(locate(prog, host, ids, pos) + f"; logits differ at step {pos}")
        t = host.sample(smp, lg)
        if t != ref_tokens[pos]:
            raise Mismatch(f"step {pos}: sampled token {t} != reference {ref_tokens[pos]}")
        if progress:
            progress(pos + 1, steps)
    for name, want in ref_kv.items():
        got = host.buffer(name)
        if got.tobytes() != want.tobytes():
            i = int(np.argmax(got != want))
            raise Mismatch(f"KV cache {name}: byte {i} is {got[i]}, reference {want[i]}")
    return dict(steps=steps, tokens=ref_tokens, logits_bytes=sum(l.nbytes for l in ref_logits),
                kv_bytes=sum(v.nbytes for v in ref_kv.values()))


def locate(prog, host, ids, step):
    """Replay up to `step` op by op on both sides; name the first op whose output differs."""
    ref = Reference(prog)
    host.reset()
    for pos in range(step + 1):
        for i, op in enumerate(prog.ops):
            ref.run_op(op, ids[pos], pos)
            host.run_op(i, ids[pos], pos)
            for name in op.outs:
                if prog.bufs[name].kind == "scratch":
                    continue
                want, got = ref.buf[name], host.buffer(name)
                if got.tobytes() != want.tobytes():
                    j = int(np.argmax(got.view(np.uint8) != want.view(np.uint8)) // want.itemsize)
                    layer = f"layer {op.layer}, " if op.layer >= 0 else ""
                    return (f"step {pos}, {layer}op '{op.name}' ({op.kind}) -> {name}[{j}] = {got[j]!r}, "
                            f"reference {want[j]!r}")
    return f"step {step}: logits differ but no op output did (nondeterministic build?)"
