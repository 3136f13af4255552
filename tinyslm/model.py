"""ModelSpec: the float decoder LM the frontend recognized, and its float numpy forward.

The float forward is the compiler's view of the ONNX model: the frontend checks it against
onnxruntime before anything is compiled, and quality is measured against it.
"""
import math
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
    attn_norm: Norm           # None: the attention reads the stream itself (OLMo2)
    wq: np.ndarray            # [H*hs, D]
    wk: np.ndarray            # [Hk*hs, D]
    wv: np.ndarray            # [Hk*hs, D]
    wo: np.ndarray            # [D, H*hs]
    ffn_norm: Norm            # None: the MLP reads the stream itself (OLMo2)
    w_up: np.ndarray          # [F, D]   (gpt2: c_fc)
    w_down: np.ndarray        # [D, F]
    w_gate: np.ndarray = None  # [F, D]  (gated MLP only)
    bias: dict = field(default_factory=dict)  # q k v o up down gate -> [N]
    qw: dict = field(default_factory=dict)    # same keys -> the graph's own integer weights (qgraph)
    q_norm: Norm = None       # on q before RoPE: g [hs] per head (Qwen3, Gemma 3) or [H*hs] whole (OLMo2)
    k_norm: Norm = None       # same for k: [hs] or [Hk*hs]
    post_attn_norm: Norm = None   # on the attention output before it joins the stream (Gemma 2/3, OLMo2)
    post_ffn_norm: Norm = None    # on the MLP output before it joins the stream
    attn_mul: float = 1.0     # x + attn_mul * attention (Granite's residual_multiplier)
    mlp_mul: float = 1.0      # x + mlp_mul * MLP
    attn_scale: float = None  # scores scale (None: spec.attn_scale)
    nope: bool = False        # no rotary embedding in this layer (SmolLM3)
    inv_freq: np.ndarray = None   # [rot/2] this layer's RoPE frequencies (None: spec.inv_freq; Gemma 3 local layers)
    window: int = 0           # sliding window: keys at positions pos-window+1..pos (0: all positions)
    softcap: float = 0.0      # scores -> softcap * tanh(scores / softcap) (Gemma 2; 0: none)
    alibi: np.ndarray = None  # [H] ALiBi slopes: scores + slope_h * (t - pos) (Bloom)


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
    emb_norm: Norm = None             # x0 = norm(tok_emb[id] ...) (Bloom's word_embeddings_layernorm)
    parallel: bool = False            # x + attn(norm1 x) + mlp(norm2 x) (GPT-J, NeoX), else sequential
    inv_freq: np.ndarray = None       # [rot/2] (rope)
    rope_interleaved: bool = False
    rotary_dim: int = 0
    attn_scale: float = 0.0
    max_pos: int = 0                  # positions the model supports (learned table / config)
    rope_mscale: float = 1.0          # cos, sin tables times this (LongRoPE's attention factor)
    rope_scaling: str = ""            # what the frontend read off the frequencies (inspect)
    logit_scale: float = 1.0          # logits = logit_scale * (head . x + bias) (Granite 1/logits_scaling, Cohere)
    logit_softcap: float = 0.0        # logits -> softcap * tanh(logits / softcap) (Gemma 2; 0: none)
    mask_checked: int = 0             # positions up to which the attention masks were read (windows)
    rope_long_after: int = 0          # sequences longer than this use rope_long's frequencies (LongRoPE)
    rope_long: list = field(default_factory=list)   # [(frequencies, their long-sequence replacement)]
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


def rope_tables(inv_freq, n_pos, mscale=1.0):
    """cos, sin [n_pos, rot/2] float32 (angles in float64, then rounded once), times mscale."""
    ang = np.arange(n_pos, dtype=np.float64)[:, None] * np.asarray(inv_freq, np.float64)[None, :]
    return (np.cos(ang) * mscale).astype(np.float32), (np.sin(ang) * mscale).astype(np.float32)


def rope_step(n_pos):
    """S of the split tables: the power of two nearest above sqrt(n_pos) (256 positions: 16)."""
    return 1 << max(0, math.ceil(math.log2(math.sqrt(max(n_pos, 1)))))


def rope_split_tables(inv_freq, n_pos, mscale=1.0):
    """-> (S, cos_hi, sin_hi [ceil(n_pos / S), rot/2], cos_lo, sin_lo [S, rot/2]) float32 (angles in
    float64, each entry rounded once): hi rows the angles of positions j * S, times mscale (applied
    once, here); lo rows the angles of 0 .. S - 1. Position p = j * S + r is rotated by their sum:
    numerics.rope_row (float32) and numerics_int.rope_row (Q15) combine rows j and r."""
    S = rope_step(n_pos)
    f = np.asarray(inv_freq, np.float64)[None, :]
    hi = np.arange(-(-n_pos // S), dtype=np.float64)[:, None] * S * f
    lo = np.arange(S, dtype=np.float64)[:, None] * f
    return (S, (np.cos(hi) * mscale).astype(np.float32), (np.sin(hi) * mscale).astype(np.float32),
            np.cos(lo).astype(np.float32), np.sin(lo).astype(np.float32))


def layer_freqs(spec, L, T):
    """The RoPE frequencies of layer L for sequences of T positions, or None (NoPE layer, learned
    positions). LongRoPE switches every position to its long factors once T passes the original
    context: what the graph computes for a sequence of T tokens."""
    if spec.pos != "rope" or L.nope:
        return None
    f = spec.inv_freq if L.inv_freq is None else L.inv_freq
    if spec.rope_long_after and T > spec.rope_long_after:
        f = next((long for short, long in spec.rope_long if np.array_equal(short, f)), f)
    return f


def kv_slots(L, max_seq):
    """KV-cache positions layer L keeps: its window (a ring buffer) if shorter than max_seq."""
    return min(L.window, max_seq) if L.window else max_seq


def softcap(x, cap):
    return cap * np.tanh(x / cap) if cap else x


def _norm(N, x):
    if N is None:
        return x
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
    if spec.act == "relu":
        return np.maximum(g, 0)
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
    x = _norm(spec.emb_norm, x)
    t = np.arange(T)
    rel = t[None, :] - t[:, None]                      # key position - query position [T, T]
    for li, L in enumerate(spec.layers):
        h = A(_norm(L.attn_norm, x))
        q = h @ W(L.wq).T + b(L, "q")
        k = h @ W(L.wk).T + b(L, "k")
        v = (h @ W(L.wv).T + b(L, "v")).reshape(T, Hk, hs)
        q = _norm(L.q_norm, q.reshape(-1, L.q_norm.g.size) if L.q_norm else q).reshape(T, H, hs)
        k = _norm(L.k_norm, k.reshape(-1, L.k_norm.g.size) if L.k_norm else k).reshape(T, Hk, hs)
        freqs = layer_freqs(spec, L, T)
        if freqs is not None:
            cos, sin = (c.astype(np.float64) for c in rope_tables(freqs, T, spec.rope_mscale))
            q, k = _rope(spec, q, cos, sin), _rope(spec, k, cos, sin)
        q, k, v = KV(q), KV(k), KV(v)
        kk, vv = np.repeat(k, H // Hk, axis=1), np.repeat(v, H // Hk, axis=1)
        s = np.einsum("thd,uhd->htu", q, kk) * (spec.attn_scale if L.attn_scale is None else L.attn_scale)
        s = softcap(s, L.softcap)
        if L.alibi is not None:
            s = s + L.alibi[:, None, None] * rel[None]
        s = np.where((rel > 0) | ((rel <= -L.window) if L.window else False), -np.inf, s)
        p = np.exp(s - s.max(-1, keepdims=True))
        p = p / p.sum(-1, keepdims=True)
        a = A(np.einsum("htu,uhd->thd", p, vv).reshape(T, H * hs))
        x_attn = x + L.attn_mul * _norm(L.post_attn_norm, a @ W(L.wo).T + b(L, "o"))
        h = A(_norm(L.ffn_norm, x if spec.parallel else x_attn))
        x = x_attn
        up = h @ W(L.w_up).T + b(L, "up")
        if L.w_gate is not None:
            m = _act(spec, h @ W(L.w_gate).T + b(L, "gate")) * up
        else:
            m = _act(spec, up)
        x = x + L.mlp_mul * _norm(L.post_ffn_norm, MID(m) @ W(L.w_down).T + b(L, "down"))
    h = A(_norm(spec.final_norm, x))
    logits = h @ (emb if spec.tied else W(spec.lm_head)).T
    if spec.lm_head_bias is not None:
        logits = logits + spec.lm_head_bias
    return softcap(logits * spec.logit_scale, spec.logit_softcap)


def _base(f, r):
    """theta of frequencies theta^(-2i/r), read off the second one"""
    return float(f[1]) ** (-r / 2.0) if len(f) > 1 and f[1] > 0 else float("nan")


def _layers_str(idx):
    return ", ".join(map(str, idx))


def describe(spec):
    """[(what, value)] of the recognized model features, for `tinyslm inspect`."""
    Ls, rows = spec.layers, []
    hs = spec.head_dim

    def per_layer(f):
        """'all: v' when every layer agrees, else 'v0 | v1 | ..' per layer; None when nothing to say"""
        vals = [f(L) for L in Ls]
        if all(v is None for v in vals):
            return None
        return f"all layers: {vals[0]}" if len(set(vals)) == 1 else " | ".join(f"{i}: {v or '-'}" for i, v in enumerate(vals))

    def qk(N, n):
        return None if N is None else f"{N.kind}norm " + ("per head" if N.g.size == hs else f"over the whole projection ({n})")
    rows.append(("QK-norm", per_layer(lambda L: qk(L.q_norm, L.wq.shape[0]) and
                                      f"q {qk(L.q_norm, L.wq.shape[0])}, k {qk(L.k_norm, L.wk.shape[0])}")))
    rows.append(("pre-norms", per_layer(lambda L: "attention " + ("yes" if L.attn_norm else "no (reads the stream)") +
                                        ", MLP " + ("yes" if L.ffn_norm else "no (reads the stream)")
                                        if L.attn_norm is None or L.ffn_norm is None else None)))
    rows.append(("post-norms", per_layer(lambda L: ", ".join(n for n, N in (("attention", L.post_attn_norm),
                                                                             ("MLP", L.post_ffn_norm)) if N) or None)))
    rows.append(("residual multipliers", per_layer(lambda L: None if L.attn_mul == 1 and L.mlp_mul == 1 else
                                                   f"attention x{L.attn_mul:.6g}, MLP x{L.mlp_mul:.6g}")))
    rows.append(("attention soft-cap", per_layer(lambda L: f"{L.softcap:.6g} * tanh(s / {L.softcap:.6g})" if L.softcap else None)))
    rows.append(("attention windows", per_layer(lambda L: f"local, {L.window} positions" if L.window else "global")
                 if any(L.window for L in Ls) else "all layers global" + (f" (masks read to {spec.mask_checked} positions)"
                                                                          if spec.mask_checked else "")))
    if spec.pos == "rope":
        bases = {}
        for i, L in enumerate(Ls):
            f = layer_freqs(spec, L, 0)
            if f is not None:
                bases.setdefault(np.asarray(f).tobytes(), []).append(i)
        rows.append(("RoPE layers", "all" if not any(L.nope for L in Ls) and len(bases) == 1 else
                     "; ".join(f"base {_base(np.frombuffer(k), spec.rotary_dim):.5g} in layers {_layers_str(v)}"
                               for k, v in bases.items()) +
                     (f"; NoPE layers {_layers_str([i for i, L in enumerate(Ls) if L.nope])}" if any(L.nope for L in Ls) else "")))
        rows.append(("RoPE scaling", (spec.rope_scaling or "none (theta^(-2i/d))") +
                     (f", tables times {spec.rope_mscale:.6g}" if spec.rope_mscale != 1 else "") +
                     (f"; sequences longer than {spec.rope_long_after}: {spec.rope_long[0][0][0] / spec.rope_long[0][1][0]:.4g}"
                      f" .. {(spec.rope_long[0][0] / spec.rope_long[0][1]).max():.4g} times slower (long factors; "
                      f"--max-seq above {spec.rope_long_after} uses them at every position)" if spec.rope_long_after else "")))
    rows.append(("ALiBi", per_layer(lambda L: None if L.alibi is None else
                                    "slopes " + " ".join(f"{v:.4g}" for v in L.alibi))))
    rows.append(("embedding", f"x{spec.emb_scale:.6g}" + (f", then {spec.emb_norm.kind}norm" if spec.emb_norm else "")))
    rows.append(("logits", f"x{spec.logit_scale:.6g}" + (f", soft-cap {spec.logit_softcap:.6g}" if spec.logit_softcap else "")))
    per_pos = lambda L: 2 * spec.n_kv_heads * (hs + 4)
    rows.append(("KV cache per layer", per_layer(lambda L: f"{per_pos(L)} B/position, " +
                                                 (f"ring of {L.window} positions" if L.window else "every position"))))
    return [(k, v) for k, v in rows if v is not None]
