"""onnxruntime's fused norms and activations -> standard ONNX ops, before the graph is checked
and recognized.

onnxruntime's transformer optimizer (and exporters that target it) fuse these in a decoder:
  SimplifiedLayerNormalization      (ai.onnx domain, onnxruntime only)  RMSNorm
  SkipSimplifiedLayerNormalization  (com.microsoft)                     residual Add + RMSNorm
  SkipLayerNormalization            (com.microsoft)                     residual Add + LayerNorm
  LayerNormalization below opset 17 (onnxruntime's own)                 LayerNorm
  FastGelu, Gelu, BiasGelu          (com.microsoft)                     bias Add + GELU (tanh, erf)
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


def _opset(model):
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def expand_fused(model, path):
    """-> model with fused norms and activations expanded (a copy), or `model` itself if it has none."""
    opset = _opset(model)
    fused = lambda n: (n.op_type == RMS and n.domain in ("", "ai.onnx")) or \
        (n.op_type in (SKIP_RMS, SKIP_LN) + GELUS and n.domain == "com.microsoft") or \
        (n.op_type == LN and n.domain in ("", "ai.onnx") and opset < 17)
    if not any(fused(n) for n in model.graph.node):
        return model
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
        c = lambda name, v: inits.append(numpy_helper.from_array(np.asarray(v), p + name)) or p + name
        mk = lambda op, ins, out, **kw: nodes.append(helper.make_node(op, ins, [out], name=out, **kw)) or out
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
        if n.op_type in (RMS, SKIP_RMS):
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
