"""The ways users export: every family of tests/hf_models.py by the dynamo exporter with static
input shapes, at opset 23 (RMSNormalization, RotaryEmbedding; Attention with sdpa attention) and
with its weights in a separate file; and onnxruntime's quantizers on Llama and GPT-2 (Gemm
projections). Each compiled int8 host build is checked as in test_hf_models.check, plus the same
argmax as onnxruntime at every position. Exports are cached under the pytest cache, keyed by the
torch, transformers, onnx and onnxruntime versions and by tests/hf_models.py itself."""
import hashlib
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("transformers")
import hf_models  # noqa: E402
from test_hf_models import IDS, check, ort_logits  # noqa: E402

MODES = {
    "static": dict(static=True),
    "opset23": dict(opset=23),
    "external": dict(external=True),
}


@pytest.fixture(scope="session")
def exports(request):
    """exports(name, fn) -> path of name/model.onnx, made by fn(path) once per library versions."""
    import onnx
    import onnxruntime
    import torch
    import transformers
    src = (request.config.rootpath / "tests" / "hf_models.py").read_bytes()
    key = hashlib.sha256(repr((torch.__version__, transformers.__version__, onnx.__version__,
                               onnxruntime.__version__)).encode() + src).hexdigest()[:16]
    root = request.config.cache.mkdir(f"tinyslm-hf-exports-{key}")

    def get(name, fn):
        d = root / name
        if not (d / "model.onnx").is_file():
            tmp = root / f".{name}.{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            fn(tmp / "model.onnx")
            try:
                tmp.rename(d)            # atomic: a parallel worker's copy of the same export wins or loses whole
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        return d / "model.onnx"
    return get


def check_argmax(path, tmp_path, weights="int8", bar=0.999, ids=IDS, tie=0.05):
    """check(), and the argmax of onnxruntime's logits at every position: exactly for the float model
    tinyslm recognized (positions whose top two logits lie within 1e-4 of the row's spread aside:
    float noise), and for the int8 build where the top two are 0.05 of the spread apart (with random
    weights about one position in twenty is a near tie that int8 rounding may flip)."""
    from tinyslm.frontend import frontend
    from tinyslm.model import forward
    man, got = check(path, tmp_path, weights, bar, ids)
    ref = ort_logits(path, ids)
    top2 = np.sort(ref, 1)[:, -2:]
    gap = (top2[:, 1] - top2[:, 0]) / ref.std(1)
    fl = forward(frontend(path), ids)
    float_tie = 1e-4 if tie <= 0.05 else tie      # onnxruntime's own run quantizes activations: not float noise
    assert (ref.argmax(1) == fl.argmax(1))[gap > float_tie].all(), np.nonzero(ref.argmax(1) != fl.argmax(1))
    assert (ref.argmax(1) == got.argmax(1))[gap > tie].all(), (np.nonzero(ref.argmax(1) != got.argmax(1)), gap)
    return man, got


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("family", sorted(hf_models.FAMILIES))
def test_export_mode(family, mode, exports, tmp_path):
    import onnx
    p = exports(f"{family}-{mode}", lambda p: hf_models.export_full(family, p, **MODES[mode]))
    m = onnx.load(str(p), load_external_data=False)
    if mode == "external":
        assert (p.parent / "model.onnx.data").is_file()
        assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    if mode == "static":
        assert m.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 16
    if mode == "opset23":
        assert {"RMSNormalization", "RotaryEmbedding"} & {n.op_type for n in m.graph.node} or family.startswith("gpt")
    man, _ = check_argmax(p, tmp_path, ids=IDS[:16] if mode == "static" else IDS)
    if mode == "static":          # positions from the weights (learned table) or 256 (RoPE), not the probe's 16
        assert man["model"]["max_seq"] == 64


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_opset23_attention_op(family, exports, tmp_path):
    """sdpa attention at opset 23: one Attention node per layer (its boolean mask from the graph)."""
    import onnx
    p = exports(f"{family}-opset23-sdpa", lambda p: hf_models.export_full(family, p, opset=23, attn="sdpa"))
    assert sum(n.op_type == "Attention" for n in onnx.load(str(p)).graph.node) == 2
    check_argmax(p, tmp_path)


# (how, --weights tinyslm picks, projections whose integer weights are kept) for llama, gpt2
QUANT = {"dynamic": ("int8", 14, 12), "dynamic_pc": ("int8", 14, 12), "qdq_mm": ("int8", 14, 0),
         "nbits": ("int4", 14, 0), "nbits128": ("int4", 14, 0), "nbits8": ("int8", 0, 0)}


@pytest.mark.parametrize("how", sorted(QUANT))
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_quantized(family, how, exports, tmp_path):
    """onnxruntime's quantizers on a dynamo export: integer weights kept where tinyslm's formats hold
    them. GPT-2's projections are Gemm nodes: quantize_dynamic turns them into MatMulInteger (kept);
    MatMulNBits leaves them float and takes only the LM head (compiled int8 here: an int4 build would
    requantize every float projection); QDQ Gemm weights are requantized by tinyslm. QDQ's static
    per-tensor activation scales move onnxruntime's own run away from the float model, so tinyslm is
    checked against the float export there."""
    weights, kept = QUANT[how][0], QUANT[how][1 if family == "llama" else 2]
    if family == "gpt2" and how.startswith("nbits"):
        weights = "int8"
    src = exports(f"{family}-dynamo", lambda p: hf_models.export_full(family, p))
    q = exports(f"{family}-{how}", lambda p: hf_models.quantize(src, p, how))
    compile_as = "int8" if family == "gpt2" and how.startswith("nbits") else None
    if how.startswith("qdq"):
        from tinyslm.evaluate import cosine
        man, got = check(q, tmp_path, compile_as, 0.99)
        assert cosine(ort_logits(src, IDS), got).min() >= 0.999
    else:
        # quantize_dynamic: onnxruntime scales the activations per tensor over the whole sequence, tinyslm per
        # token, so onnxruntime's own run moves further from the float model than the int8 build's near ties
        man, _ = check_argmax(q, tmp_path, compile_as, tie=0.25 if how.startswith("dynamic") else 0.05)
    assert man["model"]["weights"] == weights
    assert man["model"]["graph_weights"]["kept"] == kept, man["model"]["graph_weights"]
