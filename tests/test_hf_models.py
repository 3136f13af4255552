"""Models users arrive with: transformers' families exported by torch.onnx, with past_key_values,
and quantized by onnxruntime. The compiled int8 host build must agree with onnxruntime running the
same file (logit cosine >= 0.999 at every position) and with its own reference bit for bit."""
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from conftest import ROOT

pytest.importorskip("transformers")
import hf_models  # noqa: E402

from tinyslm.evaluate import cosine, host_logits, onnx_logits  # noqa: E402
from tinyslm.hostsim import HostModel  # noqa: E402
from tinyslm.pipeline import compile_model, load_build  # noqa: E402
from tinyslm.verify import verify_host  # noqa: E402

IDS = list(np.random.default_rng(11).integers(0, 128, 40))


def ort_logits(path, ids):
    return onnx_logits(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), path, ids)


def check(path, tmp_path, weights="int8", bar=0.999, ids=IDS):
    """-> (manifest, logits of the compiled host build [T, V]) for ids"""
    out = tmp_path / "build"
    compile_model(path, out, "host", 64, weights, quiet=True)
    man, prog = load_build(out)
    host = HostModel(out)
    verify_host(prog, host, ids[:4], 20)
    got = host_logits(host, ids)
    cos = cosine(ort_logits(path, ids), got)
    assert cos.min() >= bar, (cos.min(), int(cos.argmin()))
    return man, got


@pytest.mark.parametrize("family", sorted(hf_models.FAMILIES))
def test_family_dynamo(family, tmp_path):
    check(hf_models.export_full(family, tmp_path / f"{family}.onnx"), tmp_path)


@pytest.mark.parametrize("family", sorted(hf_models.FAMILIES))
def test_family_torchscript(family, tmp_path):
    """The older TorchScript exporter: Gemm projections (GPT-2), float casts between the stream and its norms."""
    check(hf_models.export_full(family, tmp_path / f"{family}_ts.onnx", dynamo=False), tmp_path)


@pytest.mark.parametrize("family,dynamo,opset,model_type,fused", [
    ("llama", True, None, "bert", ["SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"]),
    ("gpt2", False, None, "gpt2", ["SkipLayerNormalization", "FastGelu"]),
    ("gpt2", False, 14, "gpt2", ["LayerNormalization"]),        # onnxruntime's own, below opset 17
    ("gpt2", True, None, "bert", ["SkipLayerNormalization", "FastGelu"])])
def test_onnxruntime_fused_norms(family, dynamo, opset, model_type, fused, tmp_path):
    import onnx
    src = hf_models.export_full(family, tmp_path / f"{family}.onnx", dynamo=dynamo, opset=opset)
    opt = hf_models.optimize(src, tmp_path / f"{family}_opt.onnx", model_type)
    ops = {n.op_type for n in onnx.load(str(opt)).graph.node}
    assert set(fused) <= ops, ops
    check(opt, tmp_path)


@pytest.mark.parametrize("family", sorted(hf_models.FAMILIES))
def test_past_key_values_layout(family, tmp_path):
    check(hf_models.export_with_past(family, tmp_path / f"{family}_past.onnx"), tmp_path)


@pytest.mark.parametrize("how,weights,bar,kept", [
    ("dynamic", "int8", 0.999, 14), ("qdq", "int8", 0.995, 14), ("qdq_pc", "int8", 0.995, 14),
    ("nbits", "int4", 0.999, 14), ("nbits128", "int4", 0.999, 14), ("nbits_asym", "int4", 0.995, 0),
    ("nbits8", "int8", 0.999, 0)])
def test_onnxruntime_quantized(how, weights, bar, kept, tmp_path):
    """The graph's integer weights are kept as they are where tinyslm's formats hold them (int4
    blocks of any multiple of 32, signed scales); zero points and 8-bit blocks are requantized
    from their float values. quantize_static's QDQ graphs also fake-
    quantize about a hundred activations (the residual stream, norm internals, RoPE halves, softmax)
    with static per-tensor scales; tinyslm keeps its per-token scales instead, so it lands closer to
    the float model than onnxruntime's own run of the QDQ file, and further from that run."""
    src = hf_models.export_full("llama", tmp_path / "llama.onnx")
    q = hf_models.quantize(src, tmp_path / f"llama_{how}.onnx", how)
    man, got = check(q, tmp_path, None, bar)
    assert man["model"]["weights"] == weights
    assert man["model"]["graph_weights"] == {"kept": kept, "requantized": 14 - kept}
    if how.startswith("qdq"):
        fl = ort_logits(src, IDS)
        ours, theirs = cosine(fl, got).min(), cosine(fl, ort_logits(q, IDS)).min()
        assert ours >= 0.999 and ours > theirs, (ours, theirs)


def test_per_channel_int8_weights_kept_exactly(tmp_path):
    import onnx
    from onnx import numpy_helper
    src = hf_models.export_full("llama", tmp_path / "llama.onnx")
    q = hf_models.quantize(src, tmp_path / "q.onnx", "qdq_pc")
    out = tmp_path / "build"
    compile_model(q, out, "host", 32, "int8", quiet=True)
    _, prog = load_build(out)
    graph_ints = [numpy_helper.to_array(i) for i in onnx.load(str(q)).graph.initializer if i.data_type == 3]
    ours = prog.weights["l0.wq.w"]
    assert any(g.shape[::-1] == ours.shape and np.array_equal(g.T, ours) for g in graph_ints)


def test_inspect_lists_every_unsupported_node(tmp_path):
    import onnx
    src = hf_models.export_full("llama", tmp_path / "llama.onnx")
    m = onnx.load(str(src))
    for n in m.graph.node:
        if n.op_type == "Softmax":
            n.domain, n.op_type = "com.example", "FancySoftmax"
    m.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    onnx.save(m, str(tmp_path / "bad.onnx"))
    r = subprocess.run([sys.executable, "-m", "tinyslm", "inspect", str(tmp_path / "bad.onnx")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert r.stdout.count("com.example.FancySoftmax") == 2   # both layers, listed at once
