"""ONNX graph -> ModelSpec: identify each block by what it computes (see frontend.py's docstring).

This module walks the stream: embedding, per layer [attention in, o, MLP in, down], LM head, and
how each branch joins the stream (post-norms, residual multipliers, parallel blocks). The
attention side (q/k/v, QK-norm, RoPE, scale, caps, windows, ALiBi) is rec_attention.py.
"""
import itertools

import numpy as np
import onnx

from . import rec_attention as ra
from .errors import TslError
from .model import Layer, ModelSpec
from .rec_norm import SHAPE_ONLY, close, flat, read_norm, same_value

LINEAR = ("MatMul", "Gemm")


def _linear(g, n):
    """(weight [N, K], bias or None, live input name) of a linear node, or None."""
    if n.op_type not in LINEAR:
        return None
    a, b = n.input[0], n.input[1]
    if n.op_type == "MatMul":
        if a in g.live and g.const(b) is not None and np.ndim(g.const(b)) == 2:
            return _weight(g.const(b)).T, None, a
        return None
    at = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
    if at.get("transA", 0) or a not in g.live or g.const(b) is None:
        return None
    w = _weight(g.const(b))
    w = w * at["alpha"] if at.get("alpha", 1.0) != 1.0 else w
    w = w if at.get("transB", 0) else w.T
    c = g.const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
    return w, (None if c is None else np.asarray(c, np.float64).reshape(-1) * at.get("beta", 1.0)), a


def _weight(a):
    """A weight as it is in the graph (float32 stays float32: a view of the mapped file, not a
    float64 copy, which would double a large model's memory); other types as float64. Every reader
    computes in float64 (numpy promotes; quantize casts a block of rows at a time)."""
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _qinfo(g, n, shape):
    """The graph's own integer weights of a linear, as [N, K] with per-row or per-block scales."""
    qi = g.qinfo.get(n.input[1])
    if qi is None or n.op_type != "MatMul":
        return None
    if qi["kind"] == "int8" and "block" in qi:      # MatMulNBits 8-bit blocks: [N, K] already
        return qi if qi["q"].shape == tuple(shape) else None
    if qi["kind"] == "int8":
        if qi["q"].shape[::-1] != tuple(shape) or (qi["scale"].size > 1 and qi["axis"] not in (1, -1)):
            return None
        s = np.broadcast_to(qi["scale"].reshape(-1), (shape[0],)).astype(np.float64)
        return dict(kind="int8", q=qi["q"].T, scale=s)
    return qi if qi["q"].shape == tuple(shape) else None


def _with_bias(g, out, N):
    """Follow shape-only ops and an Add of a constant [N] after a linear: -> (bias or None, output)."""
    bias = None
    while True:
        cons = g.consumers.get(out, [])
        if len(cons) != 1:
            return bias, out
        n = cons[0]
        other = [i for i in n.input if i != out]
        c = g.const(other[0]) if n.op_type == "Add" and other else None
        if n.op_type in SHAPE_ONLY:
            out = n.output[0]
        elif bias is None and c is not None and np.size(c) == N:
            bias, out = np.asarray(c, np.float64).reshape(-1), n.output[0]
        else:
            return bias, out


# ---- how a branch joins the stream ----

def _branch(g, a, limit=300):
    """The first Add (in graph order) that puts what branch output a becomes onto a value a does not
    reach: -> (that other value, the Add's output, its input reached from a), or None."""
    desc, seen, todo, nodes = {a}, set(), [a], []
    while todo and len(nodes) < limit:
        v = todo.pop(0)
        for n in g.consumers.get(v, []):
            if id(n) in seen or n.op_type in ("Shape", "Size"):
                continue
            seen.add(id(n))
            nodes.append(n)
            desc.update(n.output)
            todo.extend(n.output)
    for n in sorted(nodes, key=lambda n: g.order[id(n)]):
        ins = [i for i in n.input if i in g.live]
        if n.op_type == "Add" and len(ins) == 2:
            inside = [i for i in ins if i in desc]
            if len(inside) == 1:
                other = ins[1 - ins.index(inside[0])]
                return same_value(g, other), n.output[0], inside[0]
    return None


def _transform(g, a, y, D, where):
    """What the branch does between its output a and the Add: -> (post-norm or None, multiplier)."""
    if same_value(g, y) == a:
        return None, 1.0
    av, yv = flat(g.val(a)), flat(g.val(y))
    if av.shape == yv.shape:
        m = np.abs(av) > 1e-6
        s = float(np.median(yv[m] / av[m])) if m.any() else 1.0
        if close(av * s, yv, 1e-4):
            return None, s
    return read_norm(g, a, y, D, where), 1.0


def _block(g, a, m, D, where):
    """How a block adds its attention output a and MLP output m to the stream:
    sequential  x_mid = x_in + A(a), x_out = x_mid + M(m)
    parallel    x_out = (x_in + A(a)) + M(m), or (A(a) + M(m)) + x_in   (x_mid None in the second form)
    A, M: identity, a multiplier or a post-norm. -> (x_in, x_mid, x_out, (post-norm, mul) of a, of m)."""
    ba, bm = _branch(g, a), _branch(g, m)
    if ba is None:
        raise g.err(f"{where}: node '{g.producer[a].name}': attention output is not added to a residual stream")
    if bm is None:
        raise g.err(f"{where}: the MLP output is not added to a residual stream")
    ta = _transform(g, a, ba[2], D, where + " attention output")
    tm = _transform(g, m, bm[2], D, where + " MLP output")
    if ba[1] == bm[1]:                       # A(a) + M(m) first, then the stream
        s2 = _add_of(g, ba[1])
        if s2 is None:
            raise g.err(f"{where}: attention + MLP output is not added to a residual stream")
        return s2[0], None, s2[1], ta, tm
    if bm[0] != ba[1]:
        raise g.err(f"{where}: the MLP output is not added to the stream after the attention output")
    return ba[0], ba[1], bm[1], ta, tm


def _add_of(g, v):
    """(other live input, output) of the Add that consumes v, or None; the other input is named
    by its source value (see same_value)."""
    for n in g.consumers.get(v, []):
        if n.op_type == "Add":
            other = [i for i in n.input if i != v]
            if other and other[0] in g.live:
                return same_value(g, other[0]), n.output[0]
    return None


def _input_norm(g, stream, x, D, where):
    """The norm from the stream to a projection input x, or None when x is the stream itself."""
    if same_value(g, x) == stream:
        return None
    return read_norm(g, stream, x, D, where)


# ---- MLP, embeddings, head ----

def _act(g, up, gate, m):
    """-> (activation, gate is None or which input is the gate) reproducing the MLP product m: the
    closest fit within tolerance (GELU's tanh and erf forms differ by ~1e-3 at the inputs random
    weights give, less than the tolerance, so the first fit would not tell them apart)."""
    from .model import _act as act
    probe = lambda kind, x: act(type("S", (), {"act": kind})(), x)
    if np.shape(up) != np.shape(m) or (gate is not None and np.shape(gate) != np.shape(m)):
        return None, False
    err = lambda y: np.abs(np.asarray(y, np.float64) - m).max()
    if gate is None:
        cands = [(err(probe(kind, up)), kind, False) for kind in ("gelu_tanh", "gelu_erf", "silu", "relu")]
    else:
        cands = [(err(probe(kind, a) * b), kind, swap) for kind in ("silu", "gelu_tanh", "gelu_erf")
                 for swap, (a, b) in ((False, (gate, up)), (True, (up, gate)))]
    e, kind, swap = min(cands, key=lambda c: c[0])
    if e <= 2e-3 * max(1.0, np.abs(m).max()):
        return kind, swap
    return None, False


def _mlp(g, up, down, where):
    """-> (act, gate part or None, up part) of the MLP."""
    xm = flat(g.val(up[0]["x"]))
    m = flat(g.val(down[0]["x"]))
    if len(up) == 2:
        a, b = (xm @ L["w"].T + (0 if L["b"] is None else L["b"]) for L in up)
        act, swap = _act(g, b, a, m)
        gate_L, up_L = (up[1], up[0]) if swap else (up[0], up[1])
    elif len(up) == 1 and up[0]["w"].shape[0] == 2 * down[0]["w"].shape[1]:
        W, B = up[0]["w"], up[0]["b"]
        F = W.shape[0] // 2
        y = xm @ W.T + (0 if B is None else B)
        act, swap = _act(g, y[:, F:], y[:, :F], m)
        gi, ui = (slice(F, None), slice(0, F)) if swap else (slice(0, F), slice(F, None))
        gate_L = dict(w=W[gi], b=None if B is None else B[gi], qi=ra._qslice(up[0]["qi"], gi))
        up_L = dict(w=W[ui], b=None if B is None else B[ui], qi=ra._qslice(up[0]["qi"], ui))
    else:
        y = xm @ up[0]["w"].T + (0 if up[0]["b"] is None else up[0]["b"])
        act, _ = _act(g, y, None, m)
        gate_L, up_L = None, up[0]
    if act is None:
        raise g.err(f"{where}: MLP activation not recognized (supported: SwiGLU, GeGLU, GELU tanh/erf, ReLU)")
    return act, gate_L, up_L


def _emb_scale(g, x0, tok_emb, pos_emb, T):
    """The constant the token embedding is multiplied by before layer 0 (1.0 for most models)."""
    ids = g.val(g.ids_name).reshape(-1)
    x = flat(g.val(x0)) - (0 if pos_emb is None else pos_emb[:T])
    e = tok_emb[ids]
    m = np.abs(e) > 1e-6
    scale = float(np.median(x[m] / e[m])) if m.any() else 1.0
    if abs(scale - 1) < 1e-6:
        scale = 1.0
    if not close(e * scale, x, 1e-4):
        raise g.err("layer 0 input is not the token embedding (times a constant) plus positions")
    return scale


def _pos_table(g, tok_gather, D, T):
    """A learned position table: a constant [P, D] Gather whose rows are added to the embedding,
    from its first row read (OPT reads rows 2..T+1: its table starts at an offset)."""
    for n in g.nodes:
        if n is tok_gather or n.op_type != "Gather":
            continue
        t = g.const(n.input[0])
        if t is not None and np.ndim(t) == 2 and np.shape(t)[1] == D and n.input[1] not in g.live:
            idx = np.asarray(g.values.get(n.input[1])).reshape(-1)
            off = int(idx[0]) if idx.size == T and np.array_equal(idx, idx[0] + np.arange(T)) else 0
            return np.asarray(t, np.float64)[off:]
    return None


def _logit_transform(g, out):
    """logits = softcap(scale * y) between the head's output y and the graph's logits:
    -> (scale, softcap or 0)."""
    outs = {o.name for o in g.model.graph.output}
    z_name, v, tanh = None, out, None
    while v not in outs:
        cons = [n for n in g.consumers.get(v, []) if n.op_type not in ("Shape", "Size")]
        if len(cons) != 1 or len([i for i in cons[0].input if i in g.live]) != 1:
            raise g.err(f"the logits are not the LM head output times constants (node after '{v}')")
        n = cons[0]
        if n.op_type == "Tanh":
            tanh = n
        v = n.output[0]
    z_name = v
    y, z = flat(g.val(out)), flat(g.val(z_name))
    if tanh is None:
        m = np.abs(y) > 1e-6
        s = float(np.median(z[m] / y[m])) if m.any() else 1.0
        s = 1.0 if abs(s - 1) < 1e-6 else s
        cap = 0.0
    else:
        u, o = flat(g.val(tanh.input[0])), flat(g.val(tanh.output[0]))
        m, mo = np.abs(y) > 1e-6, np.abs(o) > 1e-4
        cap = float(np.median(z[mo] / o[mo]))
        s = float(np.median(u[m] / y[m])) * cap
        s = 1.0 if abs(s - 1) < 1e-6 else s
    if not close(cap * np.tanh(s * y / cap) if cap else s * y, z, 1e-4):
        raise g.err("the logits are not the LM head output times a constant, soft-capped or not")
    return s, cap


def _max_pos(pos_emb, hint, mask_T):
    """Positions the model supports: its learned table, else the config's hint; a graph whose masks
    come from a fixed table (it does not run longer than mask_T) supports no more than that."""
    n = pos_emb.shape[0] if pos_emb is not None else hint
    if ra.MASK_T[-1] <= mask_T < ra.MASK_T[0]:
        n = min(n or mask_T, mask_T)
    return n


def recognize(model, path, max_pos_hint=0, qinfo=None):
    """ONNX model -> ModelSpec, checked against the graph's own output."""
    from .frontend import T_PROBE, Graph, _raise_unsupported, probe_len, unsupported_nodes
    inits = {i.name: i for i in model.graph.initializer}
    rows = [int(inits[n.input[0]].dims[0]) for n in model.graph.node
            if n.op_type == "Gather" and n.input[0] in inits and len(inits[n.input[0]].dims) == 2]
    T = probe_len(model, T_PROBE, path)                  # the graph's own length if its input shape is fixed
    ids = np.random.default_rng(1234).integers(0, max(1, min(rows + [50])), T)
    g = Graph(model, path, ids)
    g.qinfo = qinfo or {}
    bad = unsupported_nodes(model, g.live)
    if bad:
        _raise_unsupported(path, bad)

    emb = [n for n in g.nodes if n.op_type == "Gather" and n.input[1] in g.live and g.const(n.input[0]) is not None
           and np.ndim(g.const(n.input[0])) == 2]
    if not emb:
        raise g.err("not a decoder LM: no token embedding (Gather of a constant table by the token ids)")
    tok_emb = _weight(g.const(emb[0].input[0]))
    V, D = tok_emb.shape

    lins = []
    for n in g.nodes:
        L = _linear(g, n)
        if L is not None:
            w, b, x = L
            b2, out = _with_bias(g, n.output[0], w.shape[0])
            lins.append(dict(node=n, w=w, b=b if b is not None else b2, x=x, out=out, qi=_qinfo(g, n, w.shape)))
    groups = []
    for L in lins:
        if groups and groups[-1][0]["x"] == L["x"]:
            groups[-1].append(L)
        else:
            groups.append([L])
    if len(groups) < 5 or (len(groups) - 1) % 4:
        raise g.err(f"not a decoder LM: found {len(lins)} projections in {len(groups)} groups; "
                    "expected [qkv, o, mlp-in, down] per layer and an LM head")
    head = groups[-1]
    if len(head) != 1 or head[0]["w"].shape[0] != V:
        raise g.err(f"not a decoder LM: the last projection has {head[0]['w'].shape[0]} outputs, vocab is {V}")
    softmaxes = [n for n in g.nodes if n.op_type == "Softmax" and n.input[0] in g.live]
    n_layers = (len(groups) - 1) // 4
    if len(softmaxes) != n_layers:
        raise g.err(f"attention: found {len(softmaxes)} Softmax nodes for {n_layers} layers "
                    "(fused attention ops are not supported yet)")

    masks, mask_T = ra.layer_masks(g, softmaxes, T)
    ropes = ra.rope_tables(g, T, D)
    layers, shared, stream = [], {}, None
    for li in range(n_layers):
        qkv, o, up, down = groups[4 * li: 4 * li + 4]
        where = f"layer {li}"
        if len(o) != 1 or len(down) != 1:
            raise g.err(f"{where}: expected one output projection and one down projection")
        x_in, x_mid, x_out, (post_a, mul_a), (post_m, mul_m) = _block(g, o[0]["out"], down[0]["out"], D, where)
        if li == 0:
            layer0_in = x_in
        if stream is not None and x_in != stream:
            raise g.err(f"{where}: residual stream does not continue from the previous layer")
        stream = x_out
        attn_norm = _input_norm(g, x_in, qkv[0]["x"], D, where + " attention norm")
        try:                                   # sequential: the MLP reads x + attention
            if x_mid is None:
                raise TslError("no x + attention value")
            ffn_norm, parallel = _input_norm(g, x_mid, up[0]["x"], D, where + " MLP norm"), False
        except TslError:                       # parallel (GPT-J, NeoX): the MLP reads the block input
            ffn_norm, parallel = _input_norm(g, x_in, up[0]["x"], D, where + " MLP norm"), True
        at = ra.recognize_attention(g, qkv, o[0]["x"], softmaxes[li], masks[li], ropes, where)
        H, Hk, hs, rope = at["H"], at["Hk"], at["hs"], at["rope"]
        act, gate_L, up_L = _mlp(g, up, down, where)
        for key, val in (("act", act), ("parallel", parallel), ("heads", (H, Hk, hs)),
                         ("rope", None if rope is None else (rope[0], rope[2], rope[3]))):
            if key not in shared or (key == "rope" and shared[key] is None):
                shared[key] = val
            elif val is not None and shared[key] != val:
                raise g.err(f"{where}: {key} differs from an earlier layer ({val} vs {shared[key]})")
        Q, K, Vp = at["q"], at["k"], at["v"]
        bias = {k: v for k, v in (("q", Q["b"]), ("k", K["b"]), ("v", Vp["b"]), ("o", o[0]["b"]), ("up", up_L["b"]),
                                   ("down", down[0]["b"]), ("gate", None if gate_L is None else gate_L["b"]))
                if v is not None}
        qw = {"q": Q["qi"], "k": K["qi"], "v": Vp["qi"], "o": o[0]["qi"],
              "up": up_L["qi"], "down": down[0]["qi"], "gate": None if gate_L is None else gate_L["qi"]}
        sl = masks[li]["slopes"]
        layers.append(Layer(
            attn_norm, Q["w"], K["w"], Vp["w"], o[0]["w"], ffn_norm, up_L["w"], down[0]["w"],
            None if gate_L is None else gate_L["w"], bias, {k: v for k, v in qw.items() if v is not None},
            q_norm=Q["norm"], k_norm=K["norm"], post_attn_norm=post_a, post_ffn_norm=post_m,
            attn_mul=mul_a, mlp_mul=mul_m, attn_scale=at["scale"], nope=rope is None,
            inv_freq=None if rope is None else rope[1], window=masks[li]["window"], softcap=at["softcap"],
            alibi=None if sl is None else np.broadcast_to(sl, (H,)).astype(np.float64)))
    final_norm = read_norm(g, stream, head[0]["x"], D, "final norm")
    lm = head[0]["w"]
    tied = lm.shape == tok_emb.shape and np.array_equal(lm, tok_emb)
    pos_emb = _pos_table(g, emb[0], D, T)
    try:
        emb_scale, emb_norm = _emb_scale(g, layer0_in, tok_emb, pos_emb, T), None
    except TslError:                        # Bloom: a norm on the embedding
        if pos_emb is not None:
            raise
        emb_scale, emb_norm = 1.0, read_norm(g, emb[0].output[0], layer0_in, D, "embedding norm")
    logit_scale, logit_cap = _logit_transform(g, head[0]["out"])
    rope = shared["rope"]
    H, Hk, hs = shared["heads"]
    if rope is None and pos_emb is None and not any(L.alibi is not None for L in layers):
        raise g.err("no position encoding found (neither RoPE tables, a learned position table nor ALiBi)")
    inv_freq, scaling = (None, "")
    if rope:
        ang0 = next(L for L in layers if not L.nope).inv_freq
        inv_freq, scaling = ra.standard_freqs(g, ang0, rope[1])
        for L in layers:
            if not L.nope:
                L.inv_freq = None if np.allclose(L.inv_freq, ang0, rtol=1e-6, atol=1e-9) else \
                    ra.standard_freqs(g, L.inv_freq, rope[1])[0]
    long_after, long_pairs = ra.rope_long(g, ropes, T) if rope else (0, [])
    rope_long = []
    cuts = (lambda a: a, lambda a: a[:len(a) // 2], lambda a: a[0::2])   # a table row holds [f], [f, f] or [f0 f0 ..]
    for (short, far), cut in itertools.product(long_pairs, cuts):
        for f in [inv_freq] + [L.inv_freq for L in layers if L.inv_freq is not None]:
            if len(f) == len(cut(short)) and np.allclose(f, cut(short), rtol=1e-4, atol=1e-8) and \
                    not any(f is a for a, _ in rope_long):
                rope_long.append((f, ra.standard_freqs(g, cut(far), rope[1])[0]))
    scales = {L.attn_scale for L in layers}
    spec = ModelSpec(
        family=("gptj" if rope[0] == "interleaved" else "neox") if rope and shared["parallel"] else
        ("llama" if rope else "gpt2"), vocab=V, dim=D, n_heads=H, n_kv_heads=Hk, head_dim=hs,
        hidden=layers[0].w_up.shape[0], act=shared["act"],
        pos="rope" if rope else ("learned" if pos_emb is not None else "alibi"),
        tok_emb=tok_emb, layers=layers, final_norm=final_norm, lm_head=tok_emb if tied else lm, tied=tied,
        lm_head_bias=head[0]["b"], pos_emb=pos_emb, inv_freq=inv_freq,
        rope_interleaved=bool(rope and rope[0] == "interleaved"), rotary_dim=rope[1] if rope else 0,
        attn_scale=layers[0].attn_scale, emb_scale=emb_scale, parallel=shared["parallel"],
        max_pos=_max_pos(pos_emb, max_pos_hint, mask_T), source=str(path),
        emb_norm=emb_norm, rope_mscale=rope[2] if rope else 1.0, rope_scaling=scaling, logit_scale=logit_scale,
        logit_softcap=logit_cap, mask_checked=mask_T,
        rope_long_after=long_after, rope_long=rope_long)
    if len(scales) == 1:
        for L in layers:
            L.attn_scale = None
    return spec
