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
from onnx import helper

from . import onnxfile, qgraph
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


def recognize(model, path, max_pos_hint=0, qinfo=None):
    """ONNX model -> ModelSpec (tinyslm/recognizer.py), checked against the graph's own output."""
    from .recognizer import recognize as rec
    return rec(model, path, max_pos_hint, qinfo)


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
    _static_masks(model, spec, path, log)
    log(f"recognized {spec.family}, {spec.n_layers} layers from a probe run ({time.time() - t0:.1f}s)")
    check_against_onnx(model, spec, path)
    log(f"float model reproduces the ONNX logits ({time.time() - t0:.1f}s)")
    return spec


def _static_masks(model, spec, path, log):
    """A graph with a fixed input length shows its masks only that long: no window longer than that
    can be seen in it. Positions beyond are taken when no layer shows a window and a config.json beside
    the model (if any) declares none; a sliding-window model keeps the limit (export it with dynamic
    shapes to compile longer contexts)."""
    T = probe_len(model, 0, path)
    if not T or not spec.mask_checked or spec.mask_checked > T or any(L.window for L in spec.layers):
        return
    from .hf_export import read_config
    cfg = {}
    if Path(path).with_name("config.json").is_file():
        try:
            cfg = read_config(Path(path).parent)
        except TslError:
            cfg = {}
    if cfg.get("sliding_window") or cfg.get("attention_layers") or cfg.get("window_size"):
        log(f"note: {Path(path).name} is a sliding-window model exported at a fixed {T} positions: at most {T}")
        return
    spec.mask_checked = 0
    log(f"note: {Path(path).name} fixes its input at {T} tokens, so its masks show no window longer than that; "
        "taken as global attention" + (" (config.json declares no sliding window)" if cfg else ""))


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
