"""A seeded mutation fuzz of the bundled example ONNX, and hand-made hostile models: every outcome
of `tinyslm compile` is exit 0 with a model that matches onnxruntime on the same file, or exit 2
with one line on stderr and no build directory. Never a traceback, never wrong code."""
import random

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tinyslm import cli, onnxfile

N_CHUNKS, PER_CHUNK = 8, 20          # 160 mutations
IDS = [1, 17, 42, 300, 7, 99, 5, 256]


@pytest.fixture(scope="module")
def base(example):
    return onnx.load(example)


def _weights(m):
    return [t for t in m.graph.initializer if len(t.dims) == 2 and min(t.dims) > 1]


def mutate(m, rng):
    """-> (bytes of a mutated copy of model m, what was done)."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    g = m.graph
    kind = rng.choice(["flip", "truncate", "op_type", "drop_node", "attr", "dims", "dtype", "values", "nonfinite",
                       "rename_input", "swap_inputs", "input_shape", "input_dtype", "opset", "dup_output", "cycle",
                       "scale_weights", "drop_init", "output_name"])
    nodes = list(g.node)
    n = rng.choice(nodes)
    if kind in ("flip", "truncate"):
        data = bytearray(m.SerializeToString())
        if kind == "flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            data = data[:rng.randrange(len(data))]
        return bytes(data), kind
    if kind == "op_type":
        n.op_type = rng.choice(["Add", "Mul", "Relu", "Softmax", "Transpose", "MatMul", "Gemm", "Sigmoid", "Identity",
                                "Conv", "NoSuchOp", "Reshape", "Concat"])
    elif kind == "drop_node":
        g.node.remove(n)
    elif kind == "attr" and n.attribute:
        a = rng.choice(list(n.attribute))
        if a.type == a.INT:
            a.i = rng.choice([-1, 0, 2, 3, 10 ** 9, -(2 ** 62)])
        elif a.type == a.FLOAT:
            a.f = rng.choice([float("nan"), float("inf"), -1.0, 0.0, 1e30])
        elif a.type == a.INTS:
            a.ints[:] = [rng.choice([-1, 0, 1, 2, 99]) for _ in a.ints]
        elif a.type == a.TENSOR:
            a.t.dims[:] = [d + 1 for d in a.t.dims] or [2]
    elif kind == "dims":
        t = rng.choice(list(g.initializer))
        if t.dims:
            t.dims[rng.randrange(len(t.dims))] = rng.choice([0, 1, -1, 3, 10 ** 12])
        else:
            t.dims.append(7)
    elif kind == "dtype":
        t = rng.choice(list(g.initializer))
        t.data_type = rng.choice([TensorProto.FLOAT16, TensorProto.INT8, TensorProto.DOUBLE, TensorProto.STRING,
                                  TensorProto.INT64, 999])
    elif kind in ("values", "nonfinite", "scale_weights"):
        t = rng.choice(_weights(m))
        a = numpy_helper.to_array(t).copy()
        r = np.random.default_rng(rng.randrange(2 ** 32))
        if kind == "values":
            a = r.normal(0, float(a.std()) + 1e-3, a.shape).astype(a.dtype)
        elif kind == "scale_weights":
            a = a * np.float32(rng.choice([1e-6, 0.0, 30.0]))
        else:
            a.flat[r.integers(0, a.size, 3)] = rng.choice([np.nan, np.inf, -np.inf])
        t.CopyFrom(numpy_helper.from_array(a.astype(np.float32), t.name))
    elif kind == "rename_input" and n.input:
        n.input[rng.randrange(len(n.input))] = rng.choice(["", "nope", g.input[0].name, n.output[0]])
    elif kind == "swap_inputs" and len(n.input) > 1:
        n.input[0], n.input[1] = n.input[1], n.input[0]
    elif kind == "input_shape":
        d = g.input[0].type.tensor_type.shape.dim
        d[rng.randrange(len(d))].dim_value = rng.choice([0, 1, 3, 100000])
    elif kind == "input_dtype":
        g.input[0].type.tensor_type.elem_type = rng.choice([TensorProto.FLOAT, TensorProto.INT32, TensorProto.STRING])
    elif kind == "opset":
        m.opset_import[0].version = rng.choice([1, 7, 13, 99])
    elif kind == "dup_output":
        other = rng.choice(nodes)
        if other is not n:
            n.output[0] = other.output[0]
    elif kind == "cycle":
        a, b = rng.sample(nodes, 2)
        if a.input and b.output:
            a.input[0] = b.output[0]
            if b.input and a.output:
                b.input[0] = a.output[0]
    elif kind == "drop_init":
        g.initializer.remove(rng.choice(list(g.initializer)))
    elif kind == "output_name":
        g.output[0].name = rng.choice(["nope", g.input[0].name, nodes[0].output[0]])
    return m.SerializeToString(), kind


def check_outcome(path, out, capfd, what):
    rc = cli.main(["compile", str(path), "-o", str(out), "--max-seq", "16"])
    _, err = capfd.readouterr()
    lines = err.strip().splitlines()
    if rc == 2:
        assert len(lines) == 1 and lines[0].startswith("tinyslm"), (what, err[-2000:])
        assert not out.exists(), what
        return "refused"
    assert rc == 0 and not lines, (what, rc, err[-2000:])
    # compiled: the int8 program must follow onnxruntime on this very file
    import onnxruntime as ort

    from tinyslm.builddir import load_build
    from tinyslm.evaluate import cosine, onnx_logits
    from tinyslm.reference import Reference
    _, prog = load_build(out)
    so = onnxfile.options()
    so.log_severity_level = 3
    ref = onnx_logits(ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]), path, IDS)
    r = Reference(prog)
    ours = np.stack([r.step(t, p) for p, t in enumerate(IDS)]).astype(np.float64)
    assert np.isfinite(ours).all(), what
    flat = np.ptp(ref, axis=1) < 1e-6                      # e.g. an all-zero head: any output is the argmax
    cos = cosine(ours, ref)
    assert (flat | (cos > 0.99)).all(), (what, cos)
    return "compiled"


@pytest.mark.parametrize("chunk", range(N_CHUNKS))
def test_mutation_fuzz(base, tmp_path, capfd, chunk):
    rng = random.Random(1000 + chunk)
    seen = {}
    for i in range(PER_CHUNK):
        data, kind = mutate(base, rng)
        p = tmp_path / f"m{i}.onnx"
        p.write_bytes(data)
        res = check_outcome(p, tmp_path / f"out{i}", capfd, f"mutation {chunk}.{i}: {kind}")
        seen[res] = seen.get(res, 0) + 1
    assert seen.get("refused"), seen           # the fuzz reaches the error paths


def _tiny(nodes, inits, inputs=None, outputs=None, opset=18):
    g = helper.make_graph(nodes, "hostile", inputs or [helper.make_tensor_value_info("input_ids", TensorProto.INT64,
                                                                                      [1, "T"])],
                          outputs or [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "T", 8])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def hostile_models():
    emb = numpy_helper.from_array(np.ones((8, 4), np.float32), "emb")
    yield "empty graph", helper.make_model(helper.make_graph([], "g", [], []))
    huge = onnx.TensorProto(name="emb", data_type=TensorProto.FLOAT, dims=[2 ** 40, 2 ** 30])
    yield "huge dims", _tiny([helper.make_node("Gather", ["emb", "input_ids"], ["logits"])], [huge])
    yield "external data outside the folder", _tiny(
        [helper.make_node("Gather", ["emb", "input_ids"], ["logits"])],
        [_external("emb", "/etc/passwd")])
    yield "external data with ..", _tiny(
        [helper.make_node("Gather", ["emb", "input_ids"], ["logits"])], [_external("emb", "../../secret.bin")])
    yield "gather only", _tiny([helper.make_node("Gather", ["emb", "input_ids"], ["logits"])], [emb])
    yield "loop", _tiny([helper.make_node("Loop", ["", ""], ["logits"], body=helper.make_graph([], "b", [], []))], [])
    yield "self loop", _tiny([helper.make_node("Add", ["logits", "logits"], ["logits"])], [])
    yield "10000 inputs", _tiny([helper.make_node("Sum", ["emb"] * 10000, ["logits"])], [emb])
    yield "unknown domain", _tiny([helper.make_node("Evil", ["input_ids"], ["logits"], domain="com.evil")], [])
    yield "float input", _tiny([helper.make_node("Identity", ["x"], ["logits"])], [],
                               inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])])
    yield "no inputs", _tiny([helper.make_node("Constant", [], ["logits"], value=emb)], [], inputs=[])


def _external(name, location):
    t = onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[8, 4])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "128")):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


@pytest.mark.parametrize("name,model", list(hostile_models()), ids=[n for n, _ in hostile_models()])
def test_hostile_model(tmp_path, capfd, name, model):
    p = tmp_path / "sub" / "model.onnx"
    p.parent.mkdir()
    p.write_bytes(model.SerializeToString())
    assert check_outcome(p, tmp_path / "out", capfd, name) == "refused"
    for cmd in (["inspect", str(p)], ["logits", str(p), "--ids", "1,2", "--out", str(tmp_path / "l.npy")]):
        rc = cli.main(cmd)
        _, err = capfd.readouterr()
        assert rc == 2 and len(err.strip().splitlines()) == 1, (name, cmd, err[-2000:])


def test_mutations_that_keep_the_model_valid_still_compile(base, tmp_path, capfd):
    """New random weights in place of old ones: a valid model, which must compile and match."""
    rng = random.Random(5)
    m = onnx.ModelProto.FromString(base.SerializeToString())
    for t in rng.sample(_weights(m), 3):
        a = numpy_helper.to_array(t)
        t.CopyFrom(numpy_helper.from_array(
            np.random.default_rng(rng.randrange(2 ** 32)).normal(0, float(a.std()), a.shape).astype(np.float32),
            t.name))
    p = tmp_path / "m.onnx"
    p.write_bytes(m.SerializeToString())
    assert check_outcome(p, tmp_path / "out", capfd, "new weights") == "compiled"
