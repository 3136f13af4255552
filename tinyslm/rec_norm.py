"""Recognizer helpers shared by recognizer.py and rec_attention.py: value comparisons, graph walks,
and reading a norm (RMSNorm / LayerNorm, decomposed or fused) between two live values."""
import numpy as np
import onnx

from .model import Norm
from .model import _norm as apply_norm

SHAPE_ONLY = ("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity")
FUSED_NORMS = ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization",
               "SkipSimplifiedLayerNormalization", "SkipLayerNormalization")


def flat(v):
    v = np.asarray(v, np.float64)
    return v.reshape(-1, v.shape[-1])


def close(a, b, tol=1e-3):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.abs(a - b).max() <= tol * max(1.0, np.abs(b).max())


def ancestors(g, name, stop):
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


def same_value(g, v):
    """v with value-preserving nodes in front of it stripped: Identity and Cast to the same dtype
    (TorchScript exports cast the stream to float32 before each norm, and add to the cast), and
    reshapes (OPT flattens the stream to [T, D] around its MLP)."""
    while v in g.producer:
        n = g.producer[v]
        if not n.input or n.input[0] not in g.live:
            return v
        a, b = np.asarray(g.values.get(n.input[0])), np.asarray(g.values.get(v))
        if not (n.op_type in ("Identity", "Cast") + SHAPE_ONLY and a.dtype == b.dtype and a.size == b.size):
            return v
        v = n.input[0]
    return v


def read_norm(g, x, y, D, where):
    """The norm mapping live value x [.., D] to y: its parameters read from the graph, then checked."""
    nodes = ancestors(g, y, x)
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
    xv, yv = flat(g.val(x)), flat(g.val(y))
    if xv.shape[-1] != D or not close(apply_norm(N, xv), yv, 1e-3):
        raise g.err(f"{where}: the subgraph is not a recognized RMSNorm/LayerNorm")
    return N
