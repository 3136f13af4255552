"""onnxruntime's fused norms and activations -> standard ONNX ops, before the graph is checked
and recognized.

onnxruntime's transformer optimizer (and exporters that target it) fuse these in a decoder:
  SimplifiedLayerNormalization      (ai.onnx domain, onnxruntime only)  RMSNorm
  SkipSimplifiedLayerNormalization  (com.microsoft)                     residual Add + RMSNorm
  SkipLayerNormalization            (com.microsoft)                     residual Add + LayerNorm
  LayerNormalization below opset 17 (onnxruntime's own)                 LayerNorm
  FastGelu, Gelu, BiasGelu          (com.microsoft)                     bias Add + GELU (tanh, erf)
GatherND with constant indices along the first axis (Falcon's dynamo export splits its fused QKV
so) becomes a Gather; and the LLM ops of ONNX opset 23, which torch's dynamo exporter emits at opset_version=23:
  RMSNormalization                                                      RMSNorm
  RotaryEmbedding                   (cos/sin caches, optional position ids; rotate-half or interleaved)
  Attention                         (scale, causal and/or given mask, GQA, past K/V, softcap)
Each is rewritten to the plain ops it stands for (Mul, ReduceMean, Add, Sqrt, Div, Sub, Tanh,
Erf), so the residual stream and the biases are ordinary Adds again and the norm and activation
are read like unfused ones. The graph's values do not change.
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import TslError

RMS, SKIP_RMS, SKIP_LN, LN = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization",
                              "SkipLayerNormalization", "LayerNormalization")
GELUS = ("FastGelu", "Gelu", "BiasGelu")
RMSN, ROPE, ATTN = "RMSNormalization", "RotaryEmbedding", "Attention"
BIG = np.iinfo(np.int64).max


def _opset(model):
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def expand_fused(model, path):
    """-> model with fused norms and activations expanded (a copy), or `model` itself if it has none."""
    opset = _opset(model)
    fused = lambda n: (n.op_type == RMS and n.domain in ("", "ai.onnx")) or \
        (n.op_type in (SKIP_RMS, SKIP_LN) + GELUS and n.domain == "com.microsoft") or \
        (n.op_type == LN and n.domain in ("", "ai.onnx") and opset < 17) or \
        (n.op_type in (RMSN, ROPE, ATTN) and n.domain in ("", "ai.onnx")) or \
        (n.op_type == "GatherND" and n.domain in ("", "ai.onnx") and _gather_nd_index(model, n) is not None)
    if not any(fused(n) for n in model.graph.node):
        return model
    types = _types(model) if any(n.op_type in (ROPE, ATTN) for n in model.graph.node) else {}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    used = {i for n in m.graph.node for i in n.input} | {o.name for o in m.graph.output}
    producer = {o: n.op_type for n in m.graph.node for o in n.output}
    inits, nodes = [], []
    for n in m.graph.node:
        if not fused(n):
            nodes.append(n)
            continue
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        p = f"{n.name or n.output[0]}__"
        c = _consts(inits, p)
        mk = lambda op, ins, out, **kw: nodes.append(helper.make_node(op, ins, [out], name=out, **kw)) or out
        if n.op_type == ROPE:
            _rope(n, at, types, c, mk, p)
            continue
        if n.op_type == "GatherND":
            mk("Gather", [n.input[0], c("index", _gather_nd_index(model, n))], n.output[0], axis=0)
            continue
        if n.op_type == ATTN:
            _attention(n, at, types, c, mk, p, used, path)
            continue
        if n.op_type in GELUS:
            x = mk("Add", n.input[:2], p + "biased") if len(n.input) > 1 and n.input[1] else n.input[0]
            if n.op_type == "FastGelu":     # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
                x3 = mk("Mul", [mk("Mul", [x, x], p + "x2"), x], p + "x3")
                u = mk("Mul", [mk("Add", [x, mk("Mul", [x3, c("c3", np.float32(0.044715))], p + "cx3")], p + "inner"),
                               c("k", np.float32(np.sqrt(2 / np.pi)))], p + "u")
                t = mk("Tanh", [u], p + "t")
            else:                           # 0.5 x (1 + erf(x / sqrt(2)))
                t = mk("Erf", [mk("Mul", [x, c("r2", np.float32(1 / np.sqrt(2)))], p + "xs")], p + "t")
            mk("Mul", [mk("Mul", [x, c("half", np.float32(0.5))], p + "hx"),
                       mk("Add", [t, c("one", np.float32(1))], p + "t1")], n.output[0])
            continue
        if at.get("axis", -1) != -1:
            raise TslError(f"{path}: node '{n.name}' ({n.op_type}): norm over axis {at['axis']}; "
                           "tinyslm takes norms over the last axis")
        stats = [o for o in n.output[1:3] if o and o in used] if n.op_type in (SKIP_RMS, SKIP_LN) else \
            [o for o in n.output[1:] if o and o in used]
        if stats:
            raise TslError(f"{path}: node '{n.name}' ({n.op_type}): its mean / inverse-std outputs are used "
                           f"({', '.join(stats)}); tinyslm takes only the normalized output")
        x = n.input[0]
        if n.op_type in (SKIP_RMS, SKIP_LN):
            bi = 4 if n.op_type == SKIP_LN else 3
            a, b = n.input[0], n.input[1]
            if len(n.input) > bi and n.input[bi]:      # the bias belongs to whichever side a projection made
                if producer.get(a) in ("MatMul", "Gemm") and producer.get(b) not in ("MatMul", "Gemm"):
                    a, b = b, a
                b = mk("Add", [b, n.input[bi]], p + "biased")
            x = mk("Add", [a, b], n.output[3] if len(n.output) > 3 and n.output[3] else p + "sum")
        eps = c("eps", np.float32(at.get("epsilon", 1e-5)))
        axes = c("axes", np.array([-1], np.int64)) if opset >= 18 else None
        mean = (lambda v, out: mk("ReduceMean", [v, axes], out, keepdims=1)) if axes else \
            (lambda v, out: mk("ReduceMean", [v], out, axes=[-1], keepdims=1))
        if n.op_type in (RMS, SKIP_RMS, RMSN):
            d = x
        else:
            d = mk("Sub", [x, mean(x, p + "mean")], p + "centered")
        var = mean(mk("Mul", [d, d], p + "sq"), p + "var")
        y = mk("Div", [d, mk("Sqrt", [mk("Add", [var, eps], p + "var_eps")], p + "std")], p + "normed")
        beta = n.input[3] if n.op_type == SKIP_LN and len(n.input) > 3 else \
            (n.input[2] if n.op_type == LN and len(n.input) > 2 else "")
        mk("Mul", [y, n.input[2] if n.op_type in (SKIP_RMS, SKIP_LN) else n.input[1]],
           n.output[0] if not beta else p + "scaled")
        if beta:
            mk("Add", [p + "scaled", beta], n.output[0])
    m.graph.ClearField("node")
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(inits)
    return m


def _consts(inits, prefix):
    """c(name, value) -> the name of a constant initializer prefix + name (added once)."""
    seen = set()

    def c(name, v):
        if prefix + name not in seen:
            seen.add(prefix + name)
            inits.append(numpy_helper.from_array(np.asarray(v), prefix + name))
        return prefix + name
    return c


def _gather_nd_index(model, n):
    """GatherND(data, constant indices [..., 1]) with batch_dims 0 picks along axis 0: the indices
    for Gather(data, ., axis=0), or None for any other GatherND (kept as it is: fine on the constant
    side, refused on the token path)."""
    from . import onnxfile
    if any(a.name == "batch_dims" and a.i for a in n.attribute):
        return None
    t = next((t for t in model.graph.initializer if t.name == n.input[1]), None)
    if t is None:
        t = next((a.t for m in model.graph.node if m.op_type == "Constant" and m.output[0] == n.input[1]
                  for a in m.attribute if a.name == "value"), None)
    if t is None or not t.dims or t.dims[-1] != 1 or np.prod(t.dims) > 4096:
        return None
    return np.asarray(onnxfile.array(t), np.int64)[..., 0]


def _types(model):
    """{value name: (rank, element type)} from the graph's value_info, completed by ONNX shape inference."""
    from . import onnxfile

    def collect(m):
        vs = list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)
        return {v.name: (len(v.type.tensor_type.shape.dim) if v.type.tensor_type.HasField("shape") else None,
                         v.type.tensor_type.elem_type) for v in vs}
    r = collect(model)
    try:
        r = {**collect(onnx.shape_inference.infer_shapes(onnxfile.lifted(model)[0])), **r}
    except Exception:
        pass
    return r


def _rope(n, at, types, c, mk, p):
    """RotaryEmbedding(X, cos_cache, sin_cache[, position_ids]) -> standard ops.
    X [B, H, S, hs], or [B, S, H * hs] with num_heads; caches [B, S, r/2], or [P, r/2] indexed by
    position ids; the first r = rotary_embedding_dim (default hs) of each head rotate."""
    x, cos, sin = n.input[:3]
    if len(n.input) > 3 and n.input[3]:
        cos = mk("Gather", [cos, n.input[3]], p + "cos", axis=0)
        sin = mk("Gather", [sin, n.input[3]], p + "sin", axis=0)
    three = types.get(x, (4,))[0] == 3
    if three:
        xs = mk("Reshape", [x, c("heads", np.array([0, 0, at["num_heads"], -1], np.int64))], p + "x4")
    else:
        xs = x
    ax = c("hax", np.array([2 if three else 1], np.int64))
    cos, sin = mk("Unsqueeze", [cos, ax], p + "cos_h"), mk("Unsqueeze", [sin, ax], p + "sin_h")
    last = c("last", np.array([-1], np.int64))
    r = int(at.get("rotary_embedding_dim", 0))
    sl = lambda v, a, b, out, step=1: mk("Slice", [v, c(out + "_s", np.array([a], np.int64)), c(out + "_e", np.array([b], np.int64)),
                                                   last, c(out + "_st", np.array([step], np.int64))], p + out)
    xr = sl(xs, 0, r, "xr") if r else xs
    if at.get("interleaved", 0):
        x1, x2 = sl(xr, 0, BIG, "x1", 2), sl(xr, 1, BIG, "x2", 2)
    else:
        half = mk("Div", [mk("Shape", [xr], p + "shape_r", start=-1), c("two", np.array([2], np.int64))], p + "half")
        x1 = mk("Slice", [xr, c("zero", np.array([0], np.int64)), half, last], p + "x1")
        x2 = mk("Slice", [xr, half, c("big", np.array([BIG], np.int64)), last], p + "x2")
    real = mk("Sub", [mk("Mul", [cos, x1], p + "cx1"), mk("Mul", [sin, x2], p + "sx2")], p + "real")
    imag = mk("Add", [mk("Mul", [sin, x1], p + "sx1"), mk("Mul", [cos, x2], p + "cx2")], p + "imag")
    full = not r and not three
    if at.get("interleaved", 0):
        pair = mk("Concat", [mk("Unsqueeze", [real, last], p + "real_u"), mk("Unsqueeze", [imag, last], p + "imag_u")],
                  p + "pairs", axis=-1)
        rot = mk("Reshape", [pair, mk("Shape", [xr], p + "shape_xr")], n.output[0] if full else p + "rot")
    else:
        rot = mk("Concat", [real, imag], n.output[0] if full else p + "rot", axis=-1)
    if r:
        rot = mk("Concat", [rot, sl(xs, r, BIG, "xpass")], p + "rot_all" if three else n.output[0], axis=-1)
    if three:
        mk("Reshape", [rot, mk("Shape", [x], p + "shape_x")], n.output[0])


def _attention(n, at, types, c, mk, p, used, path):
    """Attention(Q, K, V[, attn_mask, past_key, past_value]) -> MatMul, Softmax, MatMul.
    Q [B, Hq, S, hs], K/V [B, Hk, P + S, hs] (or 3-D [B, S, H * hs] with q_num_heads,
    kv_num_heads); K/V heads repeated for GQA as [h0, h0, h1, h1, ...]; scores = Q.K^T * scale
    (default 1/sqrt(hs)), softcapped, plus the mask (boolean: False is -inf; float: added) and,
    with is_causal, -inf above the diagonal shifted by the past length."""
    ins = list(n.input) + [""] * (7 - len(n.input))
    q, k, v, mask, pk, pv, nonpad = ins[:7]
    where = f"{path}: node '{n.name}' (Attention)"
    if nonpad:
        raise TslError(f"{where}: nonpad_kv_seqlen (padded batches) is not supported")
    if len(n.output) > 3 and n.output[3] and n.output[3] in used:
        raise TslError(f"{where}: its qk_matmul_output is used; tinyslm takes only the attention output")
    three = types.get(q, (4,))[0] == 3
    if three:
        heads = lambda t, h, name: mk("Transpose", [mk("Reshape", [t, c(name + "_hs", np.array([0, 0, h, -1], np.int64))],
                                                        p + name + "_4")], p + name + "_bhsd", perm=[0, 2, 1, 3])
        q, k, v = heads(q, at["q_num_heads"], "q"), heads(k, at["kv_num_heads"], "k"), heads(v, at["kv_num_heads"], "v")
    if pk:
        k = mk("Concat", [pk, k], p + "k_all", axis=2)
    if pv:
        v = mk("Concat", [pv, v], p + "v_all", axis=2)
    for o, t in zip(n.output[1:3], (k, v)):
        if o:
            mk("Identity", [t], o)
    i64 = lambda name, *vals: c(name, np.array(vals, np.int64))
    sq, sk = mk("Shape", [q], p + "shape_q"), mk("Shape", [k], p + "shape_k")
    rep = mk("Div", [mk("Gather", [sq, i64("one", 1)], p + "hq", axis=0), mk("Gather", [sk, i64("one", 1)], p + "hk", axis=0)],
             p + "rep")
    b_h = mk("Slice", [sk, i64("s0", 0), i64("s2", 2)], p + "bh")
    s_d = mk("Slice", [sk, i64("s2", 2), i64("s4", 4)], p + "sd")
    grow = mk("Concat", [b_h, rep, s_d], p + "grow", axis=0)
    flat = mk("Concat", [i64("b0", 0), i64("m1", -1), s_d], p + "flat", axis=0)
    rpt = lambda t, name: mk("Reshape", [mk("Expand", [mk("Unsqueeze", [t, i64("ax2", 2)], p + name + "_u"), grow],
                                            p + name + "_e"), flat], p + name + "_rep")
    k, v = rpt(k, "k"), rpt(v, "v")
    s = mk("MatMul", [q, mk("Transpose", [k], p + "kt", perm=[0, 1, 3, 2])], p + "qk")
    if "scale" in at:
        scale = c("scale", np.float32(at["scale"]))
    else:
        hs = mk("Cast", [mk("Shape", [q], p + "shape_hs", start=-1)], p + "hs", to=onnx.TensorProto.FLOAT)
        scale = mk("Reciprocal", [mk("Sqrt", [hs], p + "sqrt_hs")], p + "scale")
    s = mk("Mul", [s, scale], p + "scores")
    cap = float(at.get("softcap", 0.0))
    if cap > 0:
        capc = c("cap", np.float32(cap))
        s = mk("Mul", [mk("Tanh", [mk("Div", [s, capc], p + "s_cap")], p + "s_tanh"), capc], p + "scores_capped")
    zero, ninf = c("zero_f", np.float32(0)), c("ninf", np.float32(-np.inf))
    if mask:
        if types.get(mask, (None, 0))[1] == onnx.TensorProto.BOOL:
            mask = mk("Where", [mask, zero, ninf], p + "mask_bias")
        s = mk("Add", [s, mask], p + "masked")
    if at.get("is_causal", 0):
        lens = mk("Concat", [mk("Slice", [sq, i64("m2", -2), i64("m1", -1)], p + "len_q"),
                             mk("Slice", [sk, i64("m2", -2), i64("m1", -1)], p + "len_k")], p + "lens", axis=0)
        ones = mk("ConstantOfShape", [lens], p + "ones", value=numpy_helper.from_array(np.ones(1, np.float32)))
        past = mk("Squeeze", [mk("Sub", [mk("Slice", [lens, i64("one", 1), i64("s2", 2)], p + "lk"),
                                         mk("Slice", [lens, i64("s0", 0), i64("one", 1)], p + "lq")], p + "past_len")],
                  p + "past")
        tril = mk("Cast", [mk("Trilu", [ones, past], p + "tril", upper=0)], p + "tril_b", to=onnx.TensorProto.BOOL)
        s = mk("Add", [s, mk("Where", [tril, zero, ninf], p + "causal")], p + "causal_scores")
    y = mk("MatMul", [mk("Softmax", [s], p + "probs", axis=-1), v], p + "y" if three else n.output[0])
    if three:
        mk("Reshape", [mk("Transpose", [y], p + "y_bshd", perm=[0, 2, 1, 3]), i64("bsh", 0, 0, -1)], n.output[0])

