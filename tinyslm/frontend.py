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
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from . import qgraph
from .fused import expand_fused
from .errors import TslError
from .model import forward

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
    path = Path(path)
    if not path.is_file():
        raise TslError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # protobuf says little; the length and head say more
        raise TslError(f"{path}: not an ONNX model ({len(data)} bytes, cannot parse: {str(e)[:80]})")
    if not model.graph.node:
        raise TslError(f"{path}: not an ONNX model (no graph nodes; truncated or another format?)")
    model = expand_fused(model, path)     # onnxruntime's fused norms and GELUs are not ONNX ops
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise TslError(f"{path}: invalid ONNX model: {str(e).splitlines()[0][:160]}")
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
            self.values.setdefault(init.name, numpy_helper.to_array(init))
        self.live = {self.ids_name}
        for n in self.nodes:
            if n.op_type not in ("Shape", "Size") and any(i in self.live for i in n.input):
                self.live.update(n.output)

    def _feeds(self, ids):
        inits = {i.name for i in self.model.graph.initializer}
        infos = []
        for i in self.model.graph.input:
            if i.name in inits:
                continue
            tt = i.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            infos.append((i.name, onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type), shape))
        feeds, tok = make_feeds(infos, ids, self.path)
        return tok, feeds

    def const(self, name):
        return None if (not name or name in self.live) else self.values.get(name)

    def val(self, name):
        return np.asarray(self.values[name])

    def err(self, what):
        return TslError(f"{self.path}: {what}")


def evaluate_all(model, feeds, path):
    """Every value of the graph for `feeds`: onnxruntime, unoptimized, with each node output
    exposed as a graph output."""
    import onnxruntime as ort
    m = onnx.ModelProto()
    m.CopyFrom(model)
    names = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in names:
                m.graph.output.append(onnx.ValueInfoProto(name=o))
                names.add(o)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        res = sess.run(None, feeds)
    except Exception as e:
        raise TslError(f"{path}: onnxruntime cannot run the graph: {str(e).splitlines()[0][:200]}")
    values = {o.name: v for o, v in zip(sess.get_outputs(), res)}
    values.update(feeds)
    return values


def make_feeds(infos, ids, path):
    """Inputs for a probe run: token ids, and the usual companions of a decoder LM at their
    neutral values (positions 0..T-1, an all-ones mask, empty past KV). infos: (name, dtype, shape)."""
    T = len(ids)
    ints = [x for x in infos if np.dtype(x[1]).kind in "iu"]
    toks = [x for x in ints if "input_ids" in x[0] or "tokens" in x[0]] or \
        [x for x in ints if "mask" not in x[0] and "position" not in x[0]]
    if not toks:
        raise TslError(f"{path}: not a decoder LM: no integer token-id input "
                       f"(inputs: {', '.join(x[0] for x in infos) or 'none'})")
    tok = toks[0][0]
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


def recognize(model, path, max_pos_hint=0, qinfo=None):
    """ONNX model -> ModelSpec (tinyslm/recognizer.py), checked against the graph's own output."""
    from .recognizer import recognize as rec
    return rec(model, path, max_pos_hint, qinfo)


def frontend(path, max_seq=None):
    """Load, recognize and check an ONNX decoder LM -> ModelSpec."""
    model, qinfo, notes = qgraph.float_view(load_onnx(path))
    bad = unsupported_nodes(model)
    if bad:
        _raise_unsupported(path, bad)
    spec = recognize(model, path, qinfo=qinfo)
    spec.quantization = notes
    check_against_onnx(model, spec, path)
    return spec


def ort_infos(sess):
    """(name, dtype, shape) of an onnxruntime session's inputs."""
    dt = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
          "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
    return [(i.name, dt.get(i.type, np.float32), [d if isinstance(d, int) else None for d in i.shape])
            for i in sess.get_inputs()]


def check_against_onnx(model, spec, path, T=12):
    """The recognized float model must reproduce the graph's logits on fresh ids."""
    import onnxruntime as ort
    ids = np.random.default_rng(99).integers(0, spec.vocab, T)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds, _ = make_feeds(ort_infos(sess), ids, path)
    ref = np.asarray(sess.run(None, feeds)[0], np.float64).reshape(T, -1)
    ours = forward(spec, ids)
    err = np.abs(ours - ref).max() / max(1e-6, np.abs(ref).max())
    if not err < 1e-3:
        raise TslError(f"{path}: recognized model does not reproduce the ONNX logits "
                       f"(max rel. diff {err:.2e}); this graph shape is not supported")
