"""ModelSpec: the float decoder LM the frontend recognized, and its float numpy forward.

The float forward is the compiler's view of the ONNX model: the frontend checks it against
onnxruntime before anything is compiled, and quality is measured against it.
"""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Norm:
    kind: str                 # rms | layer
    g: np.ndarray             # [D]
    b: np.ndarray = None      # [D] (layer only, may be None)
    eps: float = 1e-5


@dataclass
class Layer:
    attn_norm: Norm
    wq: np.ndarray            # [H*hs, D]
    wk: np.ndarray            # [Hk*hs, D]
    wv: np.ndarray            # [Hk*hs, D]
    wo: np.ndarray            # [D, H*hs]
    ffn_norm: Norm
    w_up: np.ndarray          # [F, D]   (gpt2: c_fc)
    w_down: np.ndarray        # [D, F]
    w_gate: np.ndarray = None  # [F, D]  (gated MLP only)
    bias: dict = field(default_factory=dict)  # q k v o up down gate -> [N]
    qw: dict = field(default_factory=dict)    # same keys -> the graph's own integer weights (qgraph)


@dataclass
class ModelSpec:
    family: str               # llama | gpt2
    vocab: int
    dim: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden: int
    act: str                  # silu | gelu_tanh | gelu_erf; gated (GLU) when layers have w_gate
    pos: str                  # rope | learned
    tok_emb: np.ndarray       # [V, D]
    layers: list
    final_norm: Norm
    lm_head: np.ndarray       # [V, D]
    tied: bool = False
    lm_head_bias: np.ndarray = None
    pos_emb: np.ndarray = None        # [P, D] (learned)
    emb_scale: float = 1.0            # x0 = tok_emb[id] * emb_scale (Gemma: sqrt(D))
    parallel: bool = False            # x + attn(norm1 x) + mlp(norm2 x) (GPT-J, NeoX), else sequential
    inv_freq: np.ndarray = None       # [rot/2] (rope)
    rope_interleaved: bool = False
    rotary_dim: int = 0
    attn_scale: float = 0.0
    max_pos: int = 0                  # positions the model supports (learned table / config)
    source: str = ""
    quantization: list = field(default_factory=list)   # what the ONNX graph carried (qgraph notes)

    @property
    def n_layers(self):
        return len(self.layers)

    def n_params(self):
        n = self.tok_emb.size + (0 if self.tied else self.lm_head.size)
        n += 0 if self.pos_emb is None else self.pos_emb.size
        for L in self.layers:
            n += sum(w.size for w in (L.wq, L.wk, L.wv, L.wo, L.w_up, L.w_down) if w is not None)
            n += 0 if L.w_gate is None else L.w_gate.size
        return int(n)


def rope_tables(inv_freq, n_pos):
    """cos, sin [n_pos, rot/2] float32 (angles in float64, then rounded once)."""
    ang = np.arange(n_pos, dtype=np.float64)[:, None] * np.asarray(inv_freq, np.float64)[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def _norm(N, x):
    x = x.astype(np.float64)
    if N.kind == "rms":
        y = x / np.sqrt((x * x).mean(-1, keepdims=True) + N.eps) * N.g
    else:
        m = x.mean(-1, keepdims=True)
        y = (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + N.eps) * N.g
        if N.b is not None:
            y = y + N.b
    return y


def _rope(spec, x, cos, sin):
    """x [T, H, hs]"""
    r = spec.rotary_dim
    half = r // 2
    x = x.copy()
    if spec.rope_interleaved:
        a, b = x[..., 0:r:2].copy(), x[..., 1:r:2].copy()
        x[..., 0:r:2] = a * cos[:, None] - b * sin[:, None]
        x[..., 1:r:2] = b * cos[:, None] + a * sin[:, None]
    else:
        a, b = x[..., :half].copy(), x[..., half:r].copy()
        x[..., :half] = a * cos[:, None] - b * sin[:, None]
        x[..., half:r] = b * cos[:, None] + a * sin[:, None]
    return x


def _act(spec, g):
    if spec.act == "silu":
        return g / (1 + np.exp(-g))
    if spec.act == "gelu_tanh":
        return 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g ** 3)))
    from math import erf
    return 0.5 * g * (1 + np.vectorize(erf)(g / np.sqrt(2)))


def forward(spec, ids, sim=None):
    """Full-sequence float64 forward: ids [T] -> logits [T, V]. sim: optional quantize-dequantize
    callables (W, A, KV, MID) applied where tinyslm quantizes: weights (embedding rows too), matvec
    inputs, q/k/v rows per head, the MLP product (benchmarks/quant_error.py)."""
    W, A, KV, MID = sim or (lambda v: v,) * 4
    ids = np.asarray(ids, np.int64)
    T, H, Hk, hs = len(ids), spec.n_heads, spec.n_kv_heads, spec.head_dim
    b = lambda L, k: L.bias.get(k, 0.0)
    emb = W(spec.tok_emb)
    x = emb[ids].astype(np.float64) * spec.emb_scale
    if spec.pos_emb is not None:
        x = x + W(spec.pos_emb[:T])
    if spec.pos == "rope":
        cos, sin = (t.astype(np.float64) for t in rope_tables(spec.inv_freq, T))
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for li, L in enumerate(spec.layers):
        h = A(_norm(L.attn_norm, x))
        q = (h @ W(L.wq).T + b(L, "q")).reshape(T, H, hs)
        k = (h @ W(L.wk).T + b(L, "k")).reshape(T, Hk, hs)
        v = (h @ W(L.wv).T + b(L, "v")).reshape(T, Hk, hs)
        if spec.pos == "rope":
            q, k = _rope(spec, q, cos, sin), _rope(spec, k, cos, sin)
        q, k, v = KV(q), KV(k), KV(v)
        kk, vv = np.repeat(k, H // Hk, axis=1), np.repeat(v, H // Hk, axis=1)
        s = np.einsum("thd,uhd->htu", q, kk) * spec.attn_scale + mask
        p = np.exp(s - s.max(-1, keepdims=True))
        p = p / p.sum(-1, keepdims=True)
        a = A(np.einsum("htu,uhd->thd", p, vv).reshape(T, H * hs))
        x_attn = x + a @ W(L.wo).T + b(L, "o")
        h = A(_norm(L.ffn_norm, x if spec.parallel else x_attn))
        x = x_attn
        up = h @ W(L.w_up).T + b(L, "up")
        if L.w_gate is not None:
            m = _act(spec, h @ W(L.w_gate).T + b(L, "gate")) * up
        else:
            m = _act(spec, up)
        x = x + MID(m) @ W(L.w_down).T + b(L, "down")
    h = A(_norm(spec.final_norm, x))
    logits = h @ (emb if spec.tied else W(spec.lm_head)).T
    if spec.lm_head_bias is not None:
        logits = logits + spec.lm_head_bias
    return logits
