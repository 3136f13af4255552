"""Small random-weight PyTorch LMs exported to ONNX, for tests.

The model code lives in examples/models.py (plain PyTorch, no tinyslm import);
this module only picks small seeded configs and exports them.

    path, config = build_llama_onnx(tmp_path / "llama.onnx", dim=48, hidden=96)
    path, config = build_gpt2_onnx(tmp_path / "gpt2.onnx", dynamo=False)

Keyword arguments are config overrides (see LLAMA_TEST_CONFIG / GPT2_TEST_CONFIG;
``hidden`` is accepted as an alias of ``hidden_dim``), plus these export options:

* ``dynamo``  - True (default): torch.onnx dynamo exporter; False: TorchScript exporter.
* ``seq_len`` - example sequence length used for tracing (default 16).
* ``dynamic`` - dynamic sequence axis (default True).
* ``seed``    - torch seed for the random weights (default 0).
* ``init_std`` - std of the random weights (default 0.08; a trained-looking spread
  rather than the tiny 0.02 init, so that numerical tests are not trivially easy).
  Norm weights are 1 + 0.1*N(0,1), biases 0.02*N(0,1).  None keeps the model's own init.

The returned config includes ``arch`` ("llama" / "gpt2") and ``exporter``
("dynamo" / "torchscript", the exporter actually used).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(_EXAMPLES) not in sys.path:
    sys.path.insert(0, str(_EXAMPLES))

import torch  # noqa: E402

import models as _models  # noqa: E402  (examples/models.py)

LLAMA_TEST_CONFIG = {
    "vocab_size": 96,
    "dim": 64,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 2,
    "hidden_dim": 128,
    "max_seq_len": 128,
    "norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_embeddings": True,
    "attn_impl": "sdpa",
}

GPT2_TEST_CONFIG = {
    "vocab_size": 96,
    "dim": 64,
    "n_layers": 2,
    "n_heads": 4,
    "max_seq_len": 128,
    "norm_eps": 1e-5,
    "attn_impl": "sdpa",
}

_EXPORT_KEYS = ("dynamo", "seq_len", "dynamic", "seed", "init_std")


def _randomize(model: torch.nn.Module, std: float) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and name.endswith("weight"):  # RMSNorm / LayerNorm scale
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:  # biases
                p.copy_(0.02 * torch.randn_like(p))
            else:
                p.normal_(0.0, std)


def _build(arch: str, defaults: dict, path, overrides: dict):
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    opts = {"dynamo": True, "seq_len": 16, "dynamic": True, "seed": 0, "init_std": 0.08}
    for k in _EXPORT_KEYS:
        if k in overrides:
            opts[k] = overrides.pop(k)
    if "hidden" in overrides:
        overrides["hidden_dim"] = overrides.pop("hidden")
    config = dict(defaults)
    config.update(overrides)
    torch.manual_seed(opts["seed"])
    model = _models.MODEL_CLASSES[arch](config).eval()
    if opts["init_std"] is not None:
        _randomize(model, opts["init_std"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    used = _models.export_onnx(model, str(path), seq_len=opts["seq_len"], dynamo=opts["dynamo"],
                               dynamic=opts["dynamic"])
    out = dict(model.config)
    out["arch"] = arch
    out["exporter"] = used
    return path, out


def build_llama_onnx(path, **config_overrides):
    """Export a seeded random LlamaLM (RMSNorm, RoPE, GQA, SwiGLU) to ``path``. Returns (path, config)."""
    return _build("llama", LLAMA_TEST_CONFIG, path, dict(config_overrides))


def build_gpt2_onnx(path, **config_overrides):
    """Export a seeded random GPT2LM (LayerNorm, learned positions, GELU-tanh) to ``path``. Returns (path, config)."""
    return _build("gpt2", GPT2_TEST_CONFIG, path, dict(config_overrides))


def build_llama_model(**config_overrides) -> torch.nn.Module:
    """The same seeded random LlamaLM as build_llama_onnx, without exporting (for torch-side references)."""
    opts = {"seed": config_overrides.pop("seed", 0), "init_std": config_overrides.pop("init_std", 0.08)}
    if "hidden" in config_overrides:
        config_overrides["hidden_dim"] = config_overrides.pop("hidden")
    config = dict(LLAMA_TEST_CONFIG)
    config.update(config_overrides)
    torch.manual_seed(opts["seed"])
    model = _models.LlamaLM(config).eval()
    if opts["init_std"] is not None:
        _randomize(model, opts["init_std"])
    return model
