"""Small decoder-only language models in plain PyTorch, plus an ONNX export helper.

This file does not import tinyslm: it is ordinary PyTorch code of the kind one
finds in nanoGPT / Llama reference implementations, so that the ONNX graphs that
tinyslm has to compile look like the graphs users will really feed it.

Two model families, each built from a plain config dict:

* ``LlamaLM``  - RMSNorm, rotary position embeddings (rotate-half form),
  grouped-query attention, SwiGLU MLP, no biases, optional tied LM head.
* ``GPT2LM``   - learned position embeddings, LayerNorm, multi-head attention
  with biases, GELU (tanh approximation) MLP with biases, tied LM head.

Both take ``input_ids`` of shape [1, T] (int64) and return ``logits`` of shape
[1, T, vocab_size] (float32) for the whole sequence, with causal attention.

Config keys (defaults in ``LLAMA_DEFAULTS`` / ``GPT2_DEFAULTS``):

* ``attn_impl``: ``"sdpa"`` (default, uses ``F.scaled_dot_product_attention``
  with ``is_causal=True``) or ``"manual"`` (explicit ``q @ k^T``, a
  ``torch.triu`` causal mask applied with ``masked_fill(-inf)``, softmax).
  Both are common in real code; they export to different ONNX op sequences.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

LLAMA_DEFAULTS: Dict[str, Any] = {
    "vocab_size": 512,
    "dim": 128,
    "n_layers": 4,
    "n_heads": 4,
    "n_kv_heads": 2,
    "hidden_dim": 352,
    "max_seq_len": 256,
    "norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_embeddings": True,
    "attn_impl": "sdpa",
}

GPT2_DEFAULTS: Dict[str, Any] = {
    "vocab_size": 512,
    "dim": 128,
    "n_layers": 4,
    "n_heads": 4,
    "max_seq_len": 256,
    "norm_eps": 1e-5,
    "attn_impl": "sdpa",
}


def _full_config(defaults: Dict[str, Any], config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    cfg = dict(defaults)
    if config:
        unknown = set(config) - set(defaults) - {"arch"}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        cfg.update(config)
    return cfg


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, impl: str) -> torch.Tensor:
    """q, k, v: [B, H, T, D] -> [B, H, T, D], causal."""
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if impl == "manual":
        T = q.size(-2)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=q.device), diagonal=1)
        scores = scores.masked_fill(mask, float("-inf"))
        return F.softmax(scores, dim=-1) @ v
    raise ValueError(f"unknown attn_impl {impl!r}")


# --------------------------------------------------------------------------
# Llama-style model
# --------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


def precompute_rope(head_dim: int, max_seq_len: int, theta: float):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    t = torch.arange(max_seq_len, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)  # [S, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [S, D]
    return emb.cos(), emb.sin()


class LlamaAttention(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        self.n_heads = cfg["n_heads"]
        self.n_kv_heads = cfg["n_kv_heads"]
        assert cfg["dim"] % self.n_heads == 0 and self.n_heads % self.n_kv_heads == 0
        self.head_dim = cfg["dim"] // self.n_heads
        self.attn_impl = cfg["attn_impl"]
        self.wq = nn.Linear(cfg["dim"], self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(cfg["dim"], self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(cfg["dim"], self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, cfg["dim"], bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = apply_rotary_emb(q, cos, sin)
        k = apply_rotary_emb(k, cos, sin)
        n_rep = self.n_heads // self.n_kv_heads
        if n_rep > 1:
            k = k.repeat_interleave(n_rep, dim=1)
            v = v.repeat_interleave(n_rep, dim=1)
        y = causal_attention(q, k, v, self.attn_impl)
        y = y.transpose(1, 2).contiguous().view(B, T, -1)
        return self.wo(y)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)  # gate
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)  # up
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class LlamaBlock(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        self.attention_norm = RMSNorm(cfg["dim"], cfg["norm_eps"])
        self.attention = LlamaAttention(cfg)
        self.ffn_norm = RMSNorm(cfg["dim"], cfg["norm_eps"])
        self.feed_forward = SwiGLU(cfg["dim"], cfg["hidden_dim"])

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin)
        x = x + self.feed_forward(self.ffn_norm(x))
        return x


class LlamaLM(nn.Module):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__()
        cfg = _full_config(LLAMA_DEFAULTS, config)
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg["vocab_size"], cfg["dim"])
        self.layers = nn.ModuleList([LlamaBlock(cfg) for _ in range(cfg["n_layers"])])
        self.norm = RMSNorm(cfg["dim"], cfg["norm_eps"])
        self.output = nn.Linear(cfg["dim"], cfg["vocab_size"], bias=False)
        if cfg["tie_embeddings"]:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = precompute_rope(cfg["dim"] // cfg["n_heads"], cfg["max_seq_len"], cfg["rope_theta"])
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.size(1)
        h = self.tok_embeddings(input_ids)
        cos = self.rope_cos[:T]
        sin = self.rope_sin[:T]
        for layer in self.layers:
            h = layer(h, cos, sin)
        return self.output(self.norm(h)).float()


# --------------------------------------------------------------------------
# GPT-2-style model
# --------------------------------------------------------------------------


class GPT2Attention(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        assert cfg["dim"] % cfg["n_heads"] == 0
        self.n_heads = cfg["n_heads"]
        self.attn_impl = cfg["attn_impl"]
        self.c_attn = nn.Linear(cfg["dim"], 3 * cfg["dim"])
        self.c_proj = nn.Linear(cfg["dim"], cfg["dim"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        y = causal_attention(q, k, v, self.attn_impl)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class GPT2MLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg["dim"], eps=cfg["norm_eps"])
        self.attn = GPT2Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg["dim"], eps=cfg["norm_eps"])
        self.mlp = GPT2MLP(cfg["dim"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT2LM(nn.Module):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__()
        cfg = _full_config(GPT2_DEFAULTS, config)
        self.config = cfg
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["dim"])
        self.wpe = nn.Embedding(cfg["max_seq_len"], cfg["dim"])
        self.h = nn.ModuleList([GPT2Block(cfg) for _ in range(cfg["n_layers"])])
        self.ln_f = nn.LayerNorm(cfg["dim"], eps=cfg["norm_eps"])
        self.lm_head = nn.Linear(cfg["dim"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.size(1)
        pos = torch.arange(T, dtype=torch.long, device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x)).float()


MODEL_CLASSES = {"llama": LlamaLM, "gpt2": GPT2LM}


def build_model(config: Dict[str, Any]) -> nn.Module:
    """Build a model from a config dict with an ``arch`` key ("llama" or "gpt2")."""
    cfg = dict(config)
    arch = cfg.pop("arch", "llama")
    return MODEL_CLASSES[arch](cfg)


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------


def _onnx_single_file(path: str) -> None:
    """Re-save ``path`` so that all weights live inside the one .onnx file."""
    import os

    import onnx

    model = onnx.load(path, load_external_data=True)
    ext = [
        e.value
        for init in model.graph.initializer
        for e in init.external_data
        if e.key == "location"
    ]
    onnx.save(model, path, save_as_external_data=False)
    base = os.path.dirname(os.path.abspath(path))
    for loc in set(ext):
        p = os.path.join(base, loc)
        if os.path.exists(p):
            os.remove(p)
    if os.path.exists(path + ".data"):
        os.remove(path + ".data")


def export_onnx(
    model: nn.Module,
    path: str,
    seq_len: int = 16,
    dynamo: bool = True,
    dynamic: bool = True,
    opset: int = 18,
    verify: bool = True,
    atol: float = 1e-4,
) -> str:
    """Export ``model`` to a self-contained ONNX file: input_ids [1, T] -> logits [1, T, V].

    The sequence axis is dynamic (named "seq") when ``dynamic`` is true.  Returns the
    exporter actually used: "dynamo" or "torchscript" (the TorchScript exporter is
    used as a fallback when the dynamo exporter raises).  With ``verify`` the file is
    run with onnxruntime and compared with PyTorch (max abs diff < atol).
    """
    import warnings

    model = model.eval()
    vocab = model.config["vocab_size"]
    gen = torch.Generator().manual_seed(1234)
    example = torch.randint(0, vocab, (1, seq_len), dtype=torch.long, generator=gen)
    used = None
    if dynamo:
        try:
            kwargs: Dict[str, Any] = {}
            if dynamic:
                seq = torch.export.Dim("seq", min=1, max=model.config["max_seq_len"])
                kwargs["dynamic_shapes"] = {"input_ids": {1: seq}}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    (example,),
                    path,
                    input_names=["input_ids"],
                    output_names=["logits"],
                    opset_version=opset,
                    dynamo=True,
                    external_data=False,
                    optimize=True,
                    verbose=False,
                    **kwargs,
                )
            used = "dynamo"
        except Exception as exc:  # pragma: no cover - depends on torch version
            warnings.warn(f"dynamo ONNX export failed ({exc!r}); falling back to TorchScript exporter")
    if used is None:
        kwargs = {}
        if dynamic:
            kwargs["dynamic_axes"] = {"input_ids": {1: "seq"}, "logits": {1: "seq"}}
        torch.onnx.export(
            model,
            (example,),
            path,
            input_names=["input_ids"],
            output_names=["logits"],
            opset_version=opset,
            dynamo=False,
            **kwargs,
        )
        used = "torchscript"
    _onnx_single_file(path)
    if verify:
        verify_onnx(model, path, seq_lens=(seq_len, 1, 5) if dynamic else (seq_len,), atol=atol)
    return used


def verify_onnx(model: nn.Module, path: str, seq_lens=(16,), atol: float = 1e-4) -> float:
    """Run ``path`` in onnxruntime and compare with ``model``; returns the max abs diff."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    vocab = model.config["vocab_size"]
    gen = torch.Generator().manual_seed(99)
    worst = 0.0
    for T in seq_lens:
        ids = torch.randint(0, vocab, (1, T), dtype=torch.long, generator=gen)
        with torch.no_grad():
            ref = model(ids).numpy()
        (out,) = sess.run(["logits"], {"input_ids": ids.numpy()})
        if out.shape != ref.shape:
            raise AssertionError(f"ONNX output shape {out.shape} != torch {ref.shape} (T={T})")
        diff = float(np.max(np.abs(out - ref)))
        worst = max(worst, diff)
        if not diff < atol:
            raise AssertionError(f"ONNX vs torch max abs diff {diff:.3g} >= {atol} (T={T})")
    return worst
