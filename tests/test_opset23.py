"""ONNX opset 23's RMSNormalization, RotaryEmbedding and Attention, and GatherND along the first
axis, as tinyslm.fused expands them to standard ops, against onnxruntime running the op itself (and
the ONNX reference evaluator), one node at a time over their attribute and input variants."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from tinyslm import onnxfile
from tinyslm.fused import expand_fused

F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def one_node(op, inputs, attrs, n_out=1):
    """-> (model of one opset-23 node, feeds). inputs: [(name, array)]."""
    vi = [helper.make_tensor_value_info(n, {np.float32: F, np.int64: I64, np.bool_: BOOL}[a.dtype.type], list(a.shape))
          for n, a in inputs]
    outs = [f"y{i}" for i in range(n_out)]
    g = helper.make_graph([helper.make_node(op, [n for n, _ in inputs], outs, **attrs)], "g", vi,
                          [onnx.ValueInfoProto(name=o) for o in outs])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)]), dict(inputs)


def run(m, feeds):
    s = ort.InferenceSession(m.SerializeToString(), onnxfile.options(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def check(m, feeds, op):
    ex = expand_fused(m, "test.onnx")
    assert op not in {n.op_type for n in ex.graph.node}
    onnx.checker.check_model(onnx.shape_inference.infer_shapes(ex))
    want, got = run(m, feeds), run(ex, feeds)
    ref = ReferenceEvaluator(m).run(None, feeds)
    for w, g, r in zip(want, got, ref):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(g, r, rtol=2e-5, atol=2e-5)


rng = np.random.default_rng(0)
f32 = lambda *s: rng.standard_normal(s).astype(np.float32)


def test_rms_normalization():
    m, feeds = one_node("RMSNormalization", [("x", f32(1, 5, 16)), ("w", f32(16))], dict(epsilon=1e-6))
    check(m, feeds, "RMSNormalization")


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("layout,rot,pos", [("bhsd", 0, False), ("bsh", 0, False), ("bhsd", 8, True), ("bsh", 8, True)])
def test_rotary_embedding(layout, rot, pos, interleaved):
    B, H, S, hs = 1, 3, 5, 16
    r = rot or hs
    ang = np.arange(20)[:, None] * (10000.0 ** (-np.arange(r // 2) * 2 / r))[None]
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    x = f32(B, H, S, hs) if layout == "bhsd" else f32(B, S, H * hs)
    attrs = dict(interleaved=interleaved, **({"rotary_embedding_dim": rot} if rot else {}),
                 **({"num_heads": H} if layout == "bsh" else {}))
    if pos:
        ins = [("x", x), ("cos", cos), ("sin", sin), ("pos", np.arange(2, 2 + S, dtype=np.int64)[None])]
    else:
        ins = [("x", x), ("cos", cos[None, :S]), ("sin", sin[None, :S])]
    m, feeds = one_node("RotaryEmbedding", ins, attrs)
    check(m, feeds, "RotaryEmbedding")


@pytest.mark.parametrize("case", ["causal", "bool_mask", "float_mask_scale", "gqa_3d", "past_causal", "softcap"])
def test_attention(case):
    B, Hq, Hk, S, hs = 1, 4, 2, 5, 8
    attrs, n_out = {}, 1
    if case == "gqa_3d":
        ins = [("q", f32(B, S, Hq * hs)), ("k", f32(B, S, Hk * hs)), ("v", f32(B, S, Hk * hs))]
        attrs = dict(q_num_heads=Hq, kv_num_heads=Hk, is_causal=1)
    else:
        ins = [("q", f32(B, Hq, S, hs)), ("k", f32(B, Hk, S, hs)), ("v", f32(B, Hk, S, hs))]
    if case == "causal":
        attrs = dict(is_causal=1)
    elif case == "bool_mask":
        ins.append(("mask", np.tril(np.ones((S, S), bool))[None, None]))
    elif case == "float_mask_scale":
        ins.append(("mask", f32(1, 1, S, S)))
        attrs = dict(scale=0.3)
    elif case == "past_causal":
        P = 3
        ins += [("mask", np.zeros((1, 1, S, S + P), np.float32)), ("pk", f32(B, Hk, P, hs)), ("pv", f32(B, Hk, P, hs))]
        attrs, n_out = dict(is_causal=1), 3
    elif case == "softcap":
        attrs = dict(is_causal=1, softcap=2.0)
    m, feeds = one_node("Attention", ins, attrs, n_out)
    check(m, feeds, "Attention")


@pytest.mark.parametrize("index", [[[-2]], [[0], [3]], [[[1]], [[-1]]]])
def test_gather_nd_along_first_axis(index):
    """Falcon's dynamo export picks k and v out of its fused [heads + 2, B, T, hs] by GatherND with
    constant indices: a Gather along axis 0."""
    idx = np.array(index, np.int64)
    x = f32(6, 1, 5, 16)
    g = helper.make_graph([helper.make_node("GatherND", ["x", "idx"], ["y0"])], "g",
                          [helper.make_tensor_value_info("x", F, list(x.shape))], [onnx.ValueInfoProto(name="y0")],
                          [onnx.numpy_helper.from_array(idx, "idx")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    ex = expand_fused(m, "test.onnx")
    assert [n.op_type for n in ex.graph.node] == ["Gather"]
    np.testing.assert_array_equal(run(ex, {"x": x})[0], run(m, {"x": x})[0])
