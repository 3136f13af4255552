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


def check(path, tmp_path, weights="int8", bar=0.999, ids=IDS, steps=20):
    """-> (manifest, logits of the compiled host build [T, V]) for ids"""
    out = tmp_path / "build"
    compile_model(path, out, "host", 64, weights, quiet=True)
    man, prog = load_build(out)
    host = HostModel(out)
    verify_host(prog, host, ids[:4], steps)
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


# ---- issue 10: model features (tests/hf_models.py FEATURES) ----

def cached_export(request, family, dynamo=True):
    """export_full of a FEATURES family, kept in the pytest cache under a key of the exporter, the
    library versions and the source of tests/hf_models.py (which holds the configs and perturbations)."""
    import hashlib
    import json

    import torch
    import transformers
    src = (ROOT / "tests" / "hf_models.py").read_bytes()
    key = hashlib.sha256(json.dumps([family, dynamo, torch.__version__, transformers.__version__, ort.__version__],
                                    default=str).encode() + src).hexdigest()[:16]
    d = request.config.cache.mkdir("tinyslm-hf-exports")
    p = d / f"{family}-{key}.onnx"
    if not p.exists():
        tmp = d / f"{family}-{key}.part.onnx"
        hf_models.export_full(family, tmp, dynamo=dynamo)
        tmp.replace(p)
    return p


# What `tinyslm inspect` must print for each family (substrings of its rows).
SEES = {
    "qwen3": ["QK-norm              all layers: q rmsnorm per head, k rmsnorm per head"],
    "gemma2": ["post-norms           all layers: attention, MLP", "attention soft-cap   all layers: 4 * tanh(s / 4)",
               "attention windows    0: local, 8 positions | 1: global", "soft-cap 3",
               "KV cache per layer   0: 80 B/position, ring of 8 positions | 1: 80 B/position, every position"],
    "gemma3_text": ["q rmsnorm per head", "0: local, 8 positions | 1: global", "base 100 in layers 0; base 1e+06 in layers 1"],
    "smollm3": ["RoPE layers          base 2e+06 in layers 0; NoPE layers 1"],
    "phi3_gqa": ["kv heads             2"],
    "phi4_mini": ["kv heads             2", "RoPE rotate-half on 12 dims"],
    "gpt_bigcode": ["kv heads             1"],
    "granite": ["residual multipliers all layers: attention x0.22, MLP x0.22", "embedding            x12",
                "logits               x0.125", "attention scale      0.06"],
    "llama3_rope": ["RoPE scaling         scaled per frequency"],
    "linear_rope": ["RoPE scaling         linear (factor 4)"],
    "phi3_longrope": ["sequences longer than 16: 2 .. 3.235 times slower"],
    "opt": ["activation           relu", "learned table of"],
    "cohere": ["parallel attention + MLP", "logits               x0.25", "RoPE interleaved"],
    "olmo2": ["pre-norms            all layers: attention no (reads the stream), MLP no (reads the stream)",
              "QK-norm              all layers: q rmsnorm over the whole projection (64), k rmsnorm over the whole projection (32)",
              "post-norms           all layers: attention, MLP"],
    "mistral_window": ["attention windows    all layers: local, 8 positions", "ring of 8 positions"],
    "gpt_neo": ["attention windows    0: global | 1: local, 8 positions", "attention scale      1"],
    "bloom": ["positions            ALiBi", "ALiBi                all layers: slopes 0.25 0.0625 0.01562 0.003906",
              "embedding            x1, then layernorm"],
}


@pytest.mark.parametrize("family", sorted(hf_models.FEATURES))
def test_feature_family(family, request, tmp_path, capsys):
    """Each feature family: inspect names the feature, the compiled host build is bit-exact with the
    reference over 64 steps (rings wrap 7 times) and agrees with onnxruntime at 40 positions."""
    from tinyslm.cli import main
    path = cached_export(request, family)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    for want in SEES[family]:
        assert want in out, (want, out)
    check(path, tmp_path, steps=64)


@pytest.mark.parametrize("family", ["qwen3", "gemma2", "smollm3", "bloom"])
def test_feature_family_torchscript(family, request, tmp_path):
    """The TorchScript exporter's spelling of QK-norm, caps and windows (Where on a mask buffer),
    NoPE, ALiBi. It exports every FEATURES family but Cohere, whose graph then fails in onnxruntime
    at any other length than the export's (a rotary Mul with a shape fixed at export)."""
    check(cached_export(request, family, dynamo=False), tmp_path)


def test_softcaps_bite(request):
    """With the test's weight scaling, Gemma 2's caps change the scores and logits by a lot."""
    from tinyslm.frontend import frontend
    from tinyslm.model import forward
    spec = frontend(cached_export(request, "gemma2"))
    capped = forward(spec, IDS)
    spec.logit_softcap = 0.0
    for L in spec.layers:
        L.softcap = 0.0
    assert np.abs(forward(spec, IDS) - capped).max() > 0.5 * np.abs(capped).max()


@pytest.mark.parametrize("family", ["gemma2", "gemma3_text", "bloom", "opt", "olmo2"])
def test_feature_family_on_board(family, request, tmp_path):
    """The new kernels and rings (soft-caps, adds of post-norms, QK-norm, two RoPE tables, ALiBi,
    ReLU) bit-exact on an emulated Cortex-M4 over 64 steps."""
    from conftest_tools import require_tool
    from tinyslm.boards import load_board
    B = load_board("mps2-an386")
    require_tool(B.toolchain["cc"], B.toolchain.get("install", ""))
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    out = tmp_path / "build"
    compile_model(cached_export(request, family), out, "host", 64, "int8", quiet=True)
    r = subprocess.run([sys.executable, "-m", "tinyslm", "verify", str(out), "--board", "mps2-an386"],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK mps2-an386: 64 steps bit-exact" in r.stdout


def test_window_ring_memory(request, tmp_path):
    """A local layer's KV cache holds only its window: the plan and `tinyslm info` show the ring."""
    out = tmp_path / "build"
    compile_model(cached_export(request, "mistral_window"), out, "host", 64, "int8", quiet=True)
    man, prog = load_build(out)
    assert [kv["slots"] for kv in man["model"]["kv_layers"]] == [8, 8]
    assert man["memory"]["kv_bytes"] == 2 * 2 * (2 * 8 * 16 + 4 * 2 * 8)
    r = subprocess.run([sys.executable, "-m", "tinyslm", "info", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert "layer 0: ring of 8 (window 8)" in r.stdout and "(every layer at max_seq: 10 KiB)" in r.stdout, r.stdout
