"""ONNX frontend: a decoder-only LM graph -> ModelSpec (float weights and hyperparameters).

How it recognizes a model, independent of node names and of the exporter's spelling:
1. Run the graph once on a probe sequence (T_PROBE tokens) with every intermediate kept. A value
   that does not depend on the token ids (weights, shape arithmetic, masks, RoPE tables) is a
   constant for that T; everything else is "live".
2. Linear layers are MatMul/Gemm nodes with one live input and one constant 2-D operand. Those
   sharing an input form a group; a decoder repeats [attention in, o, MLP in, down] per layer,
   then the LM head.
3. Each piece is then identified by what it computes, checked on the probe values: norms (their
   weights, bias and eps read from the graph), RoPE (frequencies read off the cos/sin tables,
   rotate-half or interleaved by which reproduces the softmax input), the attention scale, the MLP
   activation.
4. Finally the float model of model.py must reproduce the graph's logits on fresh token ids, or
   the compile stops: nothing is compiled from a guess.
"""
import itertools
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from . import onnxfile, qgraph
from .fused import expand_fused
from .errors import TslError
from .model import Layer, ModelSpec, Norm, forward

T_PROBE = 6
LINEAR = ("MatMul", "Gemm")
FUSED_NORMS = ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization",
               "SkipSimplifiedLayerNormalization", "SkipLayerNormalization")
SUPPORTED_OPS = {
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "ReduceMean", "ReduceSum", "MatMul", "Gemm",
    "Gather", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Concat", "Slice", "Split", "Shape", "Size",
    "Cast", "CastLike", "Constant", "ConstantOfShape", "Range", "Expand", "Where", "Equal", "Less",
    "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Trilu", "IsNaN", "IsInf", "Softmax",
    "Neg", "Sin", "Cos", "Sigmoid", "Tanh", "Erf", "Gelu", "Relu", "Max", "Min", "Identity", "Flatten",
    "Tile", "LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization", "Abs", "Exp", "Log",
    "Mod", "Floor", "Ceil", "Clip", "ScatterND", "GatherElements", "ArgMax", "ReduceMax", "Dropout",
    "Einsum", "Sign", "Round", "Not", "Xor", "HardSigmoid",
}


def load_onnx(path):
    """ONNX file (weights inline or in external data files next to it) -> ModelProto with
    onnxruntime's fused ops expanded; external weights stay in their files (see onnxfile)."""
    model = onnxfile.load(path)
    model = expand_fused(model, path)     # onnxruntime's fused norms and GELUs are not ONNX ops
    onnxfile.check(model, path)
    return model


HINTS = {
    "Attention": "fused attention op: export without attention fusion (plain MatMul/Softmax attention)",
    "MultiHeadAttention": "fused attention op: export without onnxruntime's transformer optimizer",
    "GroupQueryAttention": "fused attention op: export without onnxruntime's transformer optimizer",
    "RotaryEmbedding": "fused RoPE op: export without onnxruntime's transformer optimizer",
    "If": "control flow: export with a fixed graph (no data-dependent branches)",
    "Loop": "control flow: export the single-step graph, not a generate loop",
    "Conv": "convolutions are not part of a decoder LM",
}


def unsupported_nodes(model, live=None):
    """[(name, op_type, domain, opset, hint)] of every node the frontend cannot take: any op outside
    the standard domain, and (given the live values of a probe run) any op on the token path
    that the recognizer does not know. Constant subgraphs (masks, tables) may use any standard op."""
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    bad = []
    for n in model.graph.node:
        std = n.domain in ("", "ai.onnx")
        on_path = live is not None and any(o in live for o in n.output)
        if not std or (on_path and n.op_type not in SUPPORTED_OPS):
            bad.append((n.name, n.op_type, n.domain or "ai.onnx", opsets.get(n.domain or "ai.onnx", 0),
                        HINTS.get(n.op_type, "op not supported by the tinyslm frontend" +
                                  (" on the token path" if std else ""))))
    return bad


def _raise_unsupported(path, bad):
    lst = "; ".join(f"{n or '?'} ({op}, {dom} opset {v})" for n, op, dom, v, _ in bad[:8])
    raise TslError(f"{path}: {len(bad)} unsupported node(s): {lst}{' ...' if len(bad) > 8 else ''} "
                   "(`tinyslm inspect` lists all)")


class Graph:
    """The graph with every value of one probe run, and which values depend on the token ids."""

    def __init__(self, model, path, ids):
        self.path = path
        self.model = model
        self.nodes = list(model.graph.node)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers = defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                self.consumers[i].append(n)
        self.order = {id(n): k for k, n in enumerate(self.nodes)}
        self.ids_name, feeds = self._feeds(ids)
        self.values = evaluate_all(model, feeds, path)
        for init in model.graph.initializer:
            if init.name not in self.values:
                self.values[init.name] = onnxfile.array(init)
        self.live = {self.ids_name}
        for n in self.nodes:
            if n.op_type not in ("Shape", "Size") and any(i in self.live for i in n.input):
                self.live.update(n.output)

    def _feeds(self, ids):
        feeds, tok = make_feeds(input_infos(self.model), ids, self.path)
        return tok, feeds

    def const(self, name):
        return None if (not name or name in self.live) else self.values.get(name)

    def val(self, name):
        return np.asarray(self.values[name])

    def err(self, what):
        return TslError(f"{self.path}: {what}")


def evaluate_all(model, feeds, path):
    """Every value of the graph for `feeds`: onnxruntime, unoptimized, with each node output
    exposed as a graph output (weights included, as the arrays onnxruntime read)."""
    sess, weights = onnxfile.session(model, path, [o for n in model.graph.node for o in n.output])
    try:
        res = sess.run(None, {**feeds, **weights})
    except Exception as e:
        raise TslError(f"{path}: onnxruntime cannot run the graph: {str(e).splitlines()[0][:200]}")
    values = {o.name: v for o, v in zip(sess.get_outputs(), res)}
    values.update(feeds)
    values.update(weights)
    return values


def input_infos(model):
    """(name, dtype, shape) of the graph's inputs that are not initializers; None for a free dim."""
    inits = {i.name for i in model.graph.initializer}
    infos = []
    for i in model.graph.input:
        if i.name in inits:
            continue
        tt = i.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        infos.append((i.name, helper.tensor_dtype_to_np_dtype(tt.elem_type), shape))
    return infos


def _token_input(infos, path):
    ints = [x for x in infos if np.dtype(x[1]).kind in "iu"]
    toks = [x for x in ints if "input_ids" in x[0] or "tokens" in x[0]] or \
        [x for x in ints if "mask" not in x[0] and "position" not in x[0]]
    if not toks:
        raise TslError(f"{path}: not a decoder LM: no integer token-id input "
                       f"(inputs: {', '.join(x[0] for x in infos) or 'none'})")
    return toks[0]


def probe_len(model, T, path="model"):
    """T, or the token input's length if the graph fixes it (an export without dynamic shapes):
    onnxruntime runs such a graph at that length only."""
    name, _, shape = _token_input(input_infos(model), path)
    fixed = shape[-1] if shape else None
    if fixed is None:
        return T
    if fixed < 3:
        raise TslError(f"{path}: input '{name}' has a fixed length of {fixed} tokens; the frontend needs "
                       "at least 3 to read the attention (export with dynamic_shapes or a longer example)")
    return fixed


def make_feeds(infos, ids, path):
    """Inputs for a probe run: token ids, and the usual companions of a decoder LM at their
    neutral values (positions 0..T-1, an all-ones mask, empty past KV). infos: (name, dtype, shape)."""
    T = len(ids)
    tok, _, tshape = _token_input(infos, path)
    if tshape and tshape[-1] is not None and tshape[-1] != T:
        raise TslError(f"{path}: input '{tok}' has a fixed length of {tshape[-1]} tokens, not {T} "
                       "(exported without dynamic_shapes)")
    feeds = {}
    for name, dt, shape in infos:
        if name == tok:
            feeds[name] = np.asarray(ids, dt).reshape((1, T) if len(shape) == 2 else (T,))
        elif "position" in name:
            feeds[name] = np.arange(T, dtype=dt).reshape(1, T)
        elif "mask" in name:
            feeds[name] = np.ones((1, T), dt)
        elif "past" in name and len(shape) == 4:
            feeds[name] = np.zeros([1, shape[1] or 1, 0, shape[3] or 1], dt)
        else:
            raise TslError(f"{path}: input '{name}' is not supported "
                           f"(expected input_ids, and optionally attention_mask, position_ids, past_key_values)")
    return feeds, tok


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


SHAPE_ONLY = ("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity")


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


def _qslice(qi, rows):
    if qi is None:
        return None
    return {k: (v[rows] if isinstance(v, np.ndarray) else v) for k, v in qi.items()}


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


def _flat(v):
    v = np.asarray(v, np.float64)
    return v.reshape(-1, v.shape[-1])


def _close(a, b, tol=1e-3):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.abs(a - b).max() <= tol * max(1.0, np.abs(b).max())


def _ancestors(g, name, stop):
    """Nodes between `stop` (exclusive) and `name`, walking live inputs only."""
    seen, out, todo = set(), [], [name]
    while todo:
        v = todo.pop()
        if v == stop or v in seen or v not in g.producer:
            continue
        seen.add(v)
        n = g.producer[v]
        out.append(n)
        todo.extend(i for i in n.input if i in g.live)
    return out


def _norm(g, x, y, D, where):
    """The norm mapping live value x to y: read its parameters from the graph, check them."""
    nodes = _ancestors(g, y, x)
    fused = [n for n in nodes if n.op_type in FUSED_NORMS]
    consts = [(n, g.const(i)) for n in nodes for i in n.input if g.const(i) is not None]
    vec = lambda op: [np.asarray(c, np.float64).reshape(-1) for n, c in consts
                      if n.op_type == op and np.size(c) == D and np.ndim(c) >= 1]
    if fused:
        f = fused[0]
        at = {a.name: onnx.helper.get_attribute_value(a) for a in f.attribute}
        kind = "layer" if f.op_type in ("LayerNormalization", "SkipLayerNormalization") else "rms"
        gw = np.asarray(g.const(f.input[1]), np.float64).reshape(-1)
        bw = g.const(f.input[2]) if kind == "layer" and len(f.input) > 2 and f.input[2] else None
        N = Norm(kind, gw, None if bw is None else np.asarray(bw, np.float64).reshape(-1), float(at.get("epsilon", 1e-5)))
    else:
        n_mean = sum(n.op_type in ("ReduceMean",) for n in nodes)
        kind = "layer" if n_mean >= 2 or any(n.op_type == "Sub" for n in nodes) else "rms"
        eps = [float(np.asarray(c).reshape(-1)[0]) for n, c in consts
               if n.op_type == "Add" and np.size(c) == 1 and 0 < float(np.asarray(c).reshape(-1)[0]) < 1e-2]
        gs, bs = vec("Mul"), vec("Add")
        if not eps:
            raise g.err(f"{where}: norm without an epsilon constant is not supported")
        N = Norm(kind, gs[0] if gs else np.ones(D), (bs[0] if bs else None) if kind == "layer" else None, eps[0])
    xv, yv = _flat(g.val(x)), _flat(g.val(y))
    from .model import _norm as apply_norm
    if not _close(apply_norm(N, xv), yv, 1e-3):
        raise g.err(f"{where}: the subgraph before the projection is not a recognized RMSNorm/LayerNorm")
    return N


def _rope_freqs(g, T, hs):
    """inv_freq [r/2] read off a constant sin table [T, r] (angles of position 1), or None."""
    for name, v in g.values.items():
        if name in g.live or not isinstance(v, np.ndarray) or v.dtype.kind != "f":
            continue
        s = np.squeeze(v)
        if s.ndim != 2 or s.shape[0] != T or s.shape[1] > hs or s.shape[1] % 2 or s.shape[1] < 2:
            continue
        if np.abs(s[0]).max() < 1e-6 and np.abs(s).max() <= 1.0 and np.abs(s[1]).max() > 0:
            c = None
            for name2, v2 in g.values.items():
                s2 = np.squeeze(v2) if isinstance(v2, np.ndarray) and v2.dtype.kind == "f" else None
                if s2 is not None and s2.shape == s.shape and np.allclose(s2[0], 1.0) and np.allclose(s2 ** 2 + s ** 2, 1, atol=1e-4):
                    c = s2
                    break
            if c is None:
                continue
            ang = np.arctan2(s[1].astype(np.float64), c[1].astype(np.float64))
            return ang, s.shape[1]
    return None


def _standard_freqs(ang, r):
    """If ang[i] is theta^(-2i/r) for some theta, recompute it exactly in float64."""
    half = len(ang)
    if half < 2 or ang[1] <= 0:
        return ang
    theta = ang[1] ** (-r / 2.0)
    std = theta ** (-np.arange(half) * 2.0 / r)
    return std if np.allclose(std, ang, rtol=1e-4, atol=1e-7) else ang


def _apply_rope(x, ang, interleaved, r):
    """x [T, H, hs], ang [r/2] -> rotated copy (positions 0..T-1)."""
    T = x.shape[0]
    th = np.arange(T)[:, None] * ang[None, :]
    c, s = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
    y = x.copy()
    if interleaved:
        a, b = x[..., 0:r:2], x[..., 1:r:2]
        y[..., 0:r:2], y[..., 1:r:2] = a * c - b * s, b * c + a * s
    else:
        a, b = x[..., :r // 2], x[..., r // 2:r]
        y[..., :r // 2], y[..., r // 2:r] = a * c - b * s, b * c + a * s
    return y


def _attention(g, q, k, hs, H, Hk, T, softmax_in, ang_r, where):
    """-> (rope kind or None, attn scale) reproducing the softmax input from q, k."""
    qv, kv = q.reshape(T, H, hs), k.reshape(T, Hk, hs)
    S = np.asarray(g.val(softmax_in), np.float64).reshape(-1, H, T, T)[0]
    tri = np.tril(np.ones((T, T), bool))
    hyps = [(None, qv, kv)]
    if ang_r is not None:
        row, w = ang_r     # angles at position 1 of a table w wide: [f, f] (half), [f0 f0 f1 f1..] or [f] alone
        cands = [(il, row, 2 * w) for il in (False, True) if 2 * w <= hs]
        if w % 2 == 0 and np.allclose(row[:w // 2], row[w // 2:]):
            cands.append((False, row[:w // 2], w))
        if w % 2 == 0 and np.allclose(row[0::2], row[1::2]):
            cands.append((True, row[0::2], w))
        for il, ang, r in cands:
            hyps.append((("interleaved" if il else "half", ang, r), _apply_rope(qv, ang, il, r), _apply_rope(kv, ang, il, r)))
    for rope, qr, kr in hyps:
        kk = np.repeat(kr, H // Hk, axis=1)
        raw = np.einsum("thd,uhd->htu", qr, kk)
        m = tri[None] & (np.abs(raw) > 1e-6)
        if not m.any():
            continue
        scale = np.median(S[m] / raw[m])
        if _close(raw[:, tri] * scale, S[:, tri], 2e-3):
            std = 1.0 / np.sqrt(hs)
            return rope, float(std if abs(scale / std - 1) < 1e-5 else scale)
    raise g.err(f"{where}: attention scores are not q.k^T (with or without RoPE) times a constant")


def _act(g, up, gate, m):
    """-> (activation, gate is None or which input is the gate) reproducing the MLP product m."""
    from .model import _act as act
    probe = lambda kind, x: act(type("S", (), {"act": kind})(), x)
    if gate is None:
        for kind in ("gelu_tanh", "gelu_erf", "silu"):
            if _close(probe(kind, up), m, 2e-3):
                return kind, False
        return None, False
    for kind in ("silu", "gelu_tanh", "gelu_erf"):
        for swap in (False, True):
            a, b = (up, gate) if swap else (gate, up)
            if _close(probe(kind, a) * b, m, 2e-3):
                return kind, swap
    return None, False


def recognize(model, path, max_pos_hint=0, qinfo=None):
    """ONNX model -> ModelSpec, checked against the graph's own output."""
    inits = {i.name: i for i in model.graph.initializer}
    rows = [int(inits[n.input[0]].dims[0]) for n in model.graph.node
            if n.op_type == "Gather" and n.input[0] in inits and len(inits[n.input[0]].dims) == 2]
    T = probe_len(model, T_PROBE, path)
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

    layers, spec_kw, qmap = [], dict(act=None, rope=None, scale=None, parallel=False), {}
    ang_r = _rope_freqs(g, T, D)
    stream = None
    for li in range(n_layers):
        qkv, o, up, down = groups[4 * li: 4 * li + 4]
        where = f"layer {li}"
        if len(o) != 1 or len(down) != 1:
            raise g.err(f"{where}: expected one output projection and one down projection")
        x_in, x_mid, x_out = _block_sums(g, o[0]["out"], down[0]["out"], where)
        if li == 0:
            layer0_in = x_in
        if stream is not None and x_in != stream:
            raise g.err(f"{where}: residual stream does not continue from the previous layer")
        stream = x_out
        attn_norm = _norm(g, x_in, qkv[0]["x"], D, where + " attention norm")
        try:                                   # sequential: the MLP reads x + attention
            if x_mid is None:
                raise TslError("no x + attention value")
            ffn_norm, parallel = _norm(g, x_mid, up[0]["x"], D, where + " MLP norm"), False
        except TslError:                       # parallel (GPT-J, NeoX): the MLP reads the block input
            ffn_norm, parallel = _norm(g, x_in, up[0]["x"], D, where + " MLP norm"), True

        # q, k, v: three projections, or one fused [q; k; v]
        if len(qkv) == 3:
            (wq, bq), (wk, bk), (wv, bv) = ((L["w"], L["b"]) for L in qkv)
            for L in qkv:
                qmap[id(L["w"])] = L["qi"]
        elif len(qkv) == 1:
            W, B = qkv[0]["w"], qkv[0]["b"]
            if W.shape[0] % 3:
                raise g.err(f"{where}: fused QKV projection with {W.shape[0]} outputs (only equal q, k, v sizes)")
            s = W.shape[0] // 3
            hc = _fused_head_layout(g, qkv[0]["node"].output[0], W.shape[0])
            if hc:                              # NeoX: rows are [head][q | k | v][hs]: regroup as [q; k; v]
                order = np.arange(W.shape[0]).reshape(hc[0], 3, hc[1] // 3).transpose(1, 0, 2).reshape(-1)
                W, B = W[order], (None if B is None else B[order])
                qkv[0]["qi"] = _qslice(qkv[0]["qi"], order)
            wq, wk, wv = W[:s], W[s:2 * s], W[2 * s:]
            for i, w in enumerate((wq, wk, wv)):
                qmap[id(w)] = _qslice(qkv[0]["qi"], slice(i * s, (i + 1) * s))
            bq, bk, bv = (None, None, None) if B is None else (B[:s], B[s:2 * s], B[2 * s:])
        else:
            raise g.err(f"{where}: {len(qkv)} projections read the attention input; expected 3 or 1")
        xa = _flat(g.val(qkv[0]["x"]))
        hs = _head_size(g, qkv, where)
        found = None
        # which projection is q, k, v: the one pairing that reproduces the scores and the output
        for (wq, bq), (wk, bk), (wv, bv) in itertools.permutations([(wq, bq), (wk, bk), (wv, bv)]):
            if wq.shape[0] % hs or wk.shape[0] % hs or wk.shape[0] != wv.shape[0] or \
                    (wq.shape[0] // hs) % (wk.shape[0] // hs):
                continue
            H, Hk = wq.shape[0] // hs, wk.shape[0] // hs
            q = xa @ wq.T + (0 if bq is None else bq)
            k = xa @ wk.T + (0 if bk is None else bk)
            v = xa @ wv.T + (0 if bv is None else bv)
            try:
                rope, scale = _attention(g, q, k, hs, H, Hk, T, softmaxes[li].input[0], ang_r, where)
            except TslError:
                continue
            P = np.asarray(g.val(softmaxes[li].output[0]), np.float64).reshape(H, T, T)
            att = np.einsum("htu,uhd->thd", P, np.repeat(v.reshape(T, Hk, hs), H // Hk, axis=1)).reshape(T, -1)
            if _close(att, _flat(g.val(o[0]["x"])), 2e-3):
                found = (wq, bq, wk, bk, wv, bv, H, Hk, rope, scale)
                break
        if found is None:
            raise g.err(f"{where}: no assignment of the {len(qkv) if len(qkv) > 1 else 'fused'} projections to "
                        f"q/k/v (sizes {wq.shape[0]}/{wk.shape[0]}/{wv.shape[0]}, head size {hs}) "
                        "reproduces the attention; heads do not divide or attention form unsupported")
        wq, bq, wk, bk, wv, bv, H, Hk, rope, scale = found
        # MLP
        xm = _flat(g.val(up[0]["x"]))
        m = _flat(g.val(down[0]["x"]))
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
            gate_L = dict(w=W[gi], b=None if B is None else B[gi], qi=_qslice(up[0]["qi"], gi))
            up_L = dict(w=W[ui], b=None if B is None else B[ui], qi=_qslice(up[0]["qi"], ui))
        else:
            y = xm @ up[0]["w"].T + (0 if up[0]["b"] is None else up[0]["b"])
            act, _ = _act(g, y, None, m)
            gate_L, up_L = None, up[0]
        if act is None:
            raise g.err(f"{where}: MLP activation not recognized (supported: SwiGLU, GELU tanh/erf)")
        for key, val in (("act", act), ("rope", rope), ("scale", scale), ("parallel", parallel)):
            if li == 0:
                spec_kw[key] = val
            elif key != "scale" and str(spec_kw[key]) != str(val):
                raise g.err(f"{where}: {key} differs from layer 0 ({val} vs {spec_kw[key]})")
        bias = {k: v for k, v in (("q", bq), ("k", bk), ("v", bv), ("o", o[0]["b"]), ("up", up_L["b"]),
                                   ("down", down[0]["b"]), ("gate", None if gate_L is None else gate_L["b"]))
                if v is not None}
        qw = {"q": qmap.get(id(wq)), "k": qmap.get(id(wk)), "v": qmap.get(id(wv)), "o": o[0]["qi"],
              "up": up_L["qi"], "down": down[0]["qi"], "gate": None if gate_L is None else gate_L["qi"]}
        layers.append(Layer(attn_norm, wq, wk, wv, o[0]["w"], ffn_norm, up_L["w"], down[0]["w"],
                            None if gate_L is None else gate_L["w"], bias,
                            {k: v for k, v in qw.items() if v is not None}))
    final_norm = _norm(g, stream, head[0]["x"], D, "final norm")
    lm = head[0]["w"]
    tied = lm.shape == tok_emb.shape and np.array_equal(lm, tok_emb)
    pos_emb = _pos_table(g, emb[0], D)
    emb_scale = _emb_scale(g, layer0_in, tok_emb, pos_emb, T)
    rope = spec_kw["rope"]
    spec = ModelSpec(
        family=("gptj" if rope[0] == "interleaved" else "neox") if rope and spec_kw["parallel"] else
        ("llama" if rope else "gpt2"), vocab=V, dim=D, n_heads=H, n_kv_heads=Hk, head_dim=hs,
        hidden=layers[0].w_up.shape[0], act=spec_kw["act"], pos="rope" if rope else "learned",
        tok_emb=tok_emb, layers=layers, final_norm=final_norm, lm_head=tok_emb if tied else lm, tied=tied,
        lm_head_bias=head[0]["b"], pos_emb=pos_emb,
        inv_freq=_standard_freqs(rope[1], rope[2]) if rope else None,
        rope_interleaved=bool(rope and rope[0] == "interleaved"), rotary_dim=rope[2] if rope else 0,
        attn_scale=spec_kw["scale"], emb_scale=emb_scale, parallel=spec_kw["parallel"], max_pos=(pos_emb.shape[0] if pos_emb is not None else max_pos_hint),
        source=str(path))
    if rope is None and pos_emb is None:
        raise g.err("no position encoding found (neither RoPE tables nor a learned position table)")
    return spec


def _same_value(g, v):
    """v with value-preserving Identity and Cast nodes in front of it stripped (TorchScript
    exports cast the stream to float32 before each norm, and add to the cast)."""
    while v in g.producer:
        n = g.producer[v]
        if n.op_type not in ("Identity", "Cast") or not n.input or \
                np.asarray(g.values.get(n.input[0])).dtype != np.asarray(g.values.get(v)).dtype:
            return v
        v = n.input[0]
    return v


def _add_of(g, v):
    """(other live input, output) of the Add that consumes v, or None; the other input is named
    by its source value (see _same_value)."""
    for n in g.consumers.get(v, []):
        if n.op_type == "Add":
            other = [i for i in n.input if i != v]
            if other and other[0] in g.live:
                return _same_value(g, other[0]), n.output[0]
    return None


def _block_sums(g, a, m, where):
    """How a block adds its attention output a and MLP output m to the stream:
    sequential  x_mid = x_in + a, x_out = x_mid + m
    parallel    x_out = (x_in + a) + m, or (a + m) + x_in   (x_mid None in the second form)
    -> (x_in, x_mid, x_out)."""
    s = _add_of(g, a)
    if s is None:
        raise g.err(f"{where}: node '{g.producer[a].name}': attention output is not added to a residual stream")
    other, out = s
    if other == m:                             # a + m first, then the stream
        s2 = _add_of(g, out)
        if s2 is None:
            raise g.err(f"{where}: attention + MLP output is not added to a residual stream")
        return s2[0], None, s2[1]
    s2 = _add_of(g, m)
    if s2 is None or s2[0] != out:
        raise g.err(f"{where}: the MLP output is not added to the stream after the attention output")
    return other, out, s2[1]


def _fused_head_layout(g, out, N):
    """(heads, 3 * head size) if a fused QKV output is reshaped to [.., heads, 3 * hs] (NeoX)."""
    for n in g.consumers.get(out, []):
        if n.op_type == "Reshape":
            shp = g.const(n.input[1])
            if shp is not None and len(shp) >= 3:
                c = int(shp[-1])
                if 0 < c < N and N % c == 0 and c % 3 == 0:
                    return N // c, c
        if n.op_type in SHAPE_ONLY + ("Add",):
            r = _fused_head_layout(g, n.output[0], N)
            if r:
                return r
    return None


def _head_size(g, qkv, where):
    """Head size from the Reshape that splits a projection into heads."""
    if len(qkv) == 1:
        hc = _fused_head_layout(g, qkv[0]["node"].output[0], qkv[0]["w"].shape[0])
        if hc:
            return hc[1] // 3
    for L in qkv:
        hs = _split_size(g, L["node"].output[0], L["w"].shape[0] // (3 if len(qkv) == 1 else 1))
        if hs:
            return hs
    raise g.err(f"{where}: cannot find how the q projection is split into heads")


def _split_size(g, out, Nq):
    todo, seen = [out], set()
    while todo:
        v = todo.pop(0)
        if v in seen:
            continue
        seen.add(v)
        for n in g.consumers.get(v, []):
            if n.op_type == "Reshape":
                shp = g.const(n.input[1])
                if shp is not None and len(shp) >= 3 and 0 < int(shp[-1]) < Nq and Nq % int(shp[-1]) == 0:
                    return int(shp[-1])
            if n.op_type in ("Split", "Slice", "Add", "Cast") + SHAPE_ONLY:
                todo.extend(n.output)
    return None


def _emb_scale(g, x0, tok_emb, pos_emb, T):
    """The constant the token embedding is multiplied by before layer 0 (1.0 for most models)."""
    ids = g.val(g.ids_name).reshape(-1)
    x = _flat(g.val(x0)) - (0 if pos_emb is None else pos_emb[:T])
    e = tok_emb[ids]
    m = np.abs(e) > 1e-6
    scale = float(np.median(x[m] / e[m])) if m.any() else 1.0
    if abs(scale - 1) < 1e-6:
        scale = 1.0
    if not _close(e * scale, x, 1e-4):
        raise g.err("layer 0 input is not the token embedding (times a constant) plus positions")
    return scale


def _pos_table(g, tok_gather, D):
    """A learned position table: a constant [P, D] Gather whose rows are added to the embedding."""
    for n in g.nodes:
        if n is tok_gather or n.op_type != "Gather":
            continue
        t = g.const(n.input[0])
        if t is not None and np.ndim(t) == 2 and np.shape(t)[1] == D and n.input[1] not in g.live:
            return np.asarray(t, np.float64)
    return None


def frontend(path, max_seq=None, log=None):
    """Load, recognize and check an ONNX decoder LM -> ModelSpec. log(str): progress, if given."""
    import time
    t0, log = time.time(), log or (lambda m: None)
    model, qinfo, notes = qgraph.float_view(load_onnx(path))
    log(f"loaded {path}: {len(model.graph.node)} nodes, {_weight_bytes(model) / 2**20:.0f} MiB of weights "
        f"({time.time() - t0:.1f}s)")
    bad = unsupported_nodes(model)
    if bad:
        _raise_unsupported(path, bad)
    from .hf_export import config_max_positions
    spec = recognize(model, path, max_pos_hint=config_max_positions(path), qinfo=qinfo)
    spec.quantization = notes
    log(f"recognized {spec.family}, {spec.n_layers} layers from a probe run ({time.time() - t0:.1f}s)")
    check_against_onnx(model, spec, path)
    log(f"float model reproduces the ONNX logits ({time.time() - t0:.1f}s)")
    return spec


def _weight_bytes(model):
    return sum(onnxfile.nbytes(t) or 0 for t in model.graph.initializer)


def ort_infos(sess):
    """(name, dtype, shape) of an onnxruntime session's inputs."""
    dt = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
          "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
    return [(i.name, dt.get(i.type, np.float32), [d if isinstance(d, int) else None for d in i.shape])
            for i in sess.get_inputs()]


def check_against_onnx(model, spec, path, T=12):
    """The recognized float model must reproduce the graph's logits on fresh ids."""
    T = probe_len(model, T, path)
    ids = np.random.default_rng(99).integers(0, spec.vocab, T)
    sess, weights = onnxfile.session(model, path)
    feeds, _ = make_feeds([x for x in ort_infos(sess) if x[0] not in weights], ids, path)
    ref = np.asarray(sess.run(None, {**feeds, **weights})[0], np.float64).reshape(T, -1)
    del sess, weights
    f64 = lambda w: np.asarray(w, np.float64)     # one weight at a time: numpy's float64 x float32 matmul has no BLAS
    ours = forward(spec, ids, sim=(f64, lambda v: v, lambda v: v, lambda v: v))
    err = np.abs(ours - ref).max() / max(1e-6, np.abs(ref).max())
    if not err < 1e-3:
        raise TslError(f"{path}: recognized model does not reproduce the ONNX logits "
                       f"(max rel. diff {err:.2e}); this graph shape is not supported")
