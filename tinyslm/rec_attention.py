"""Recognizing a layer's attention: which projection is q, k and v (separate, fused [q; k; v] with
grouped or multi-query heads, or fused per head), QK-norm, RoPE (per layer: NoPE layers, a local
base, scaled frequencies and LongRoPE's magnitude), the scale, soft-capping, and from the masks
sliding windows and ALiBi slopes.

The scores are read where the graph computes them: the chain of nodes from the q.k MatMul to the
Softmax. Its constant inputs are the masks (added, or as Where conditions) and ALiBi's biases;
they are evaluated again at MASK_T positions (only the subgraph that computes them), so a window
shorter than that is seen even though the probe is only T_PROBE tokens long.
"""
import itertools

import numpy as np
import onnx

from .errors import TslError
from .model import _norm as apply_norm
from .rec_norm import FUSED_NORMS, SHAPE_ONLY, close, flat, read_norm

MASK_T = (4160, 2048, 1024, 512, 256, 128, 64)   # lengths to read the masks at, longest that runs first
STOP = ("MatMul", "Gemm", "Einsum", "Softmax", "Shape", "Size")


# ---- heads ----

def fused_head_layout(g, out, N):
    """(groups, c, head size) if a fused QKV output is split per group of heads: each group's rows are
    c - 2 q heads, then one k and one v head. Reshaped to [.., heads, 3 * hs] (NeoX, c = 3),
    [.., heads, 3, hs] (Bloom, c = 3) or [.., kv heads, q heads per kv head + 2, hs] (Falcon's new
    decoder architecture, grouped heads)."""
    for n in g.consumers.get(out, []):
        if n.op_type == "Reshape":
            # the reshaped value's shape at the probe (a computed or -1 shape too: TorchScript, static
            # exports); only its trailing head dims are read, which do not change with the length
            shp = np.shape(g.values[n.output[0]]) if n.output[0] in g.values else None
            if shp is not None and len(shp) >= 4 and int(shp[-2]) >= 3 and \
                    int(shp[-3]) * int(shp[-2]) * int(shp[-1]) == N and int(shp[-3]) > 0:
                return int(shp[-3]), int(shp[-2]), int(shp[-1])
            if shp is not None and len(shp) >= 3:
                c = int(shp[-1])
                if 0 < c < N and N % c == 0 and c % 3 == 0:
                    return N // c, 3, c // 3
        if n.op_type in SHAPE_ONLY + ("Add",):
            r = fused_head_layout(g, n.output[0], N)
            if r:
                return r
    return None


def head_size(g, qkv, where):
    """Head size from the Reshape that splits a projection into heads."""
    if len(qkv) == 1:
        hc = fused_head_layout(g, qkv[0]["node"].output[0], qkv[0]["w"].shape[0])
        if hc:
            return hc[2]
    for L in qkv:
        hs = _split_size(g, L["node"].output[0], L["w"].shape[0])
        if hs:
            return hs
    raise g.err(f"{where}: cannot find how the q projection is split into heads")


def _split_size(g, out, N):
    todo, seen = [out], set()
    while todo:
        v = todo.pop(0)
        if v in seen:
            continue
        seen.add(v)
        for n in g.consumers.get(v, []):
            if n.op_type == "Reshape":
                shp = g.const(n.input[1])
                if shp is not None and len(shp) >= 3 and 0 < int(shp[-1]) < N and N % int(shp[-1]) == 0:
                    return int(shp[-1])
            if n.op_type in ("Split", "Slice", "Add", "Cast") + SHAPE_ONLY:
                todo.extend(n.output)
    return None


def _qslice(qi, rows):
    if qi is None:
        return None
    return {k: (v[rows] if isinstance(v, np.ndarray) else v) for k, v in qi.items()}


def _part(w, b, qi, norm=None):
    return dict(w=w, b=b, qi=qi, norm=norm)


def qkv_hypotheses(g, qkv, hs, where):
    """[(q, k, v)] of parts dict(w [N, D], b, qi, norm) to try: the permutations of three projections,
    or the splits of one fused projection."""
    if len(qkv) == 3:
        parts = [_part(L["w"], L["b"], L["qi"], proj_norm(g, L["out"], where)) for L in qkv]
        return list(itertools.permutations(parts))
    if len(qkv) != 1:
        raise g.err(f"{where}: {len(qkv)} projections read the attention input; expected 3 or 1")
    W, B, qi = qkv[0]["w"], qkv[0]["b"], qkv[0]["qi"]
    N = W.shape[0]
    hc = fused_head_layout(g, qkv[0]["node"].output[0], N)
    if hc:                                  # rows [group][q heads | k | v][hs]: regroup as [q; k; v]
        G, c, hs_ = hc
        rows = np.arange(N).reshape(G, c, hs_)
        order = np.concatenate([rows[:, :c - 2].reshape(-1), rows[:, c - 2].reshape(-1), rows[:, c - 1].reshape(-1)])
        W, B, qi = W[order], (None if B is None else B[order]), _qslice(qi, order)
    sl = lambda a, b: _part(W[a:b], None if B is None else B[a:b], _qslice(qi, slice(a, b)))
    if hc and hc[1] > 3:                    # grouped: G * (c - 2) q heads, G k and G v heads
        nq, nk = G * (c - 2) * hs_, G * hs_
        return [(sl(0, nq), sl(nq, nq + nk), sl(nq + nk, N))]
    hyps = []
    if N % 3 == 0:
        s = N // 3
        hyps += list(itertools.permutations([sl(0, s), sl(s, 2 * s), sl(2 * s, N)]))
    if not hc:                              # [q; k; v] with fewer k/v heads (Phi-3 GQA, Falcon, GPTBigCode MQA)
        for nk in range(hs, N // 3, hs):
            nq = N - 2 * nk
            if nq % nk == 0:
                hyps.append((sl(0, nq), sl(nq, nq + nk), sl(nq + nk, N)))
    return hyps


def proj_norm(g, out, where):
    """The norm on a projection's output before it meets the other side of the scores (QK-norm), or
    None: per head (gain [hs]) or over the whole projection (gain [H * hs], OLMo2)."""
    todo, seen, found = [out], set(), None
    while todo and found is None and len(seen) < 60:
        v = todo.pop(0)
        for n in g.consumers.get(v, []):
            if id(n) in seen or n.op_type in STOP:
                continue
            seen.add(id(n))
            if n.op_type in FUSED_NORMS or n.op_type == "ReduceMean":
                found = n
                break
            todo.extend(n.output)
    if found is None:
        return None
    if found.op_type in FUSED_NORMS:
        x, y = found.input[0], found.output[0]
    else:
        p = g.producer.get(found.input[0])
        sq = p is not None and (p.op_type == "Pow" or (p.op_type == "Mul" and p.input[0] == p.input[1]))
        x = p.input[0] if sq else found.input[0]
        D = np.shape(g.val(x))[-1]
        y, todo, seen = None, [found.output[0]], set()
        while todo and y is None and len(seen) < 30:
            v = todo.pop(0)
            for n in g.consumers.get(v, []):
                if id(n) in seen or n.op_type in STOP:
                    continue
                seen.add(id(n))
                c = [g.const(i) for i in n.input if g.const(i) is not None]
                if n.op_type == "Mul" and c and np.size(c[0]) == D:
                    y = n.output[0]
                    break
                todo.extend(n.output)
        if y is None:
            raise g.err(f"{where}: QK-norm without a gain is not supported")
    return read_norm(g, x, y, np.shape(g.val(x))[-1], where + " QK-norm")


# ---- RoPE ----

def rope_tables(g, T, hs):
    """[(angles at position 1 [w], w, magnitude, sin name, cos name)] of every constant sin table [T, w] with its cos
    partner: sin row 0 is 0, cos row 0 is the magnitude m (1, or LongRoPE's attention factor)."""
    out = []
    floats = [(n, np.squeeze(v)) for n, v in g.values.items()
              if n not in g.live and isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size > 1]
    for name, s in floats:
        if s.ndim != 2 or s.shape[0] != T or s.shape[1] > hs or s.shape[1] % 2 or s.shape[1] < 2:
            continue
        if np.abs(s[0]).max() >= 1e-6 or np.abs(s[1]).max() == 0:
            continue
        for cname, c in floats:
            if c.shape != s.shape or c[0, 0] <= 0 or not np.allclose(c[0], c[0, 0]):
                continue
            m = float(c[0, 0])
            if np.allclose(c ** 2 + s ** 2, m * m, atol=1e-4 * m * m):
                ang = np.arctan2(s[1].astype(np.float64), c[1].astype(np.float64))
                m = 1.0 if abs(m - 1) < 1e-6 else m
                if not any(w == s.shape[1] and abs(mm - m) < 1e-6 and np.allclose(a, ang, rtol=1e-6, atol=1e-9)
                           for a, w, mm, *_ in out):
                    out.append((ang, s.shape[1], m, name, cname))
                break
    return out


def rope_long(g, ropes, T):
    """Tables whose frequencies change with the sequence length (LongRoPE's long factors, switched
    on for sequences longer than original_max_position_embeddings): -> (the longest length that
    keeps the probe's angles, [(probe angles, angles beyond)]), or (0, []) when none change."""
    names = [n for r in ropes for n in r[3:5]]

    def angles(Tx):
        vals = eval_values(g, names, Tx) if names else None
        if vals is None:
            return None
        return [np.arctan2(np.squeeze(vals[sn])[1].astype(np.float64), np.squeeze(vals[cn])[1].astype(np.float64))
                for _, _, _, sn, cn in ropes]
    same = lambda a, b: all(np.allclose(x, y, rtol=1e-6, atol=1e-9) for x, y in zip(a, b))
    base = [r[0] for r in ropes]
    far = next(((a, Tl) for Tl in MASK_T if (a := angles(Tl)) is not None), (None, 0))
    if far[0] is None or same(base, far[0]):
        return 0, []
    lo, hi = T, far[1]                      # angles at lo as probed, at hi changed
    while hi - lo > 1:
        mid = (lo + hi) // 2
        a = angles(mid)
        if a is None:
            raise g.err(f"RoPE tables cannot be recomputed for {mid} positions")
        lo, hi = (mid, hi) if same(base, a) else (lo, mid)
    if not same(angles(hi), far[0]):
        raise g.err(f"RoPE frequencies change more than once with the sequence length (at {hi} and later)")
    return lo, list(zip(base, far[0]))


def standard_freqs(g, ang, r):
    """ang [r/2] recomputed exactly: theta^(-2i/r) in float64 if it is that for some theta, else the
    graph's own float32 frequency vector if it carries one (scaled RoPE), else ang as read."""
    half = len(ang)
    if half >= 2 and ang[1] > 0:
        theta = ang[1] ** (-r / 2.0)
        std = theta ** (-np.arange(half) * 2.0 / r)
        if np.allclose(std, ang, rtol=1e-4, atol=1e-7):
            return std, ""
    for name, v in g.values.items():
        if name not in g.live and isinstance(v, np.ndarray) and v.dtype == np.float32 and v.size == half:
            f = v.reshape(-1).astype(np.float64)
            if np.allclose(f, ang, rtol=1e-5, atol=1e-8):
                return f, _describe_scaling(f, r)
    return ang, _describe_scaling(ang, r)


def _describe_scaling(f, r):
    """What a non-standard frequency vector looks like against theta^(-2i/r) fitted to its first entries."""
    half = len(f)
    if half < 3 or f[0] <= 0 or f[1] <= 0:
        return "frequencies as read off the tables"
    theta = (f[0] / f[1]) ** (r / 2.0)
    std = theta ** (-np.arange(half) * 2.0 / r)
    ratio = std / f
    if np.allclose(ratio, ratio[0], rtol=1e-4):
        return f"linear (factor {ratio[0]:.4g})"
    return f"scaled per frequency (not theta^(-2i/d) for any theta: {f.max():.4g} .. {f.min():.4g} rad/position)"


def apply_rope(x, ang, interleaved, r, m=1.0):
    """x [T, H, hs], ang [r/2] -> rotated copy (positions 0..T-1), tables times m."""
    T = x.shape[0]
    th = np.arange(T)[:, None] * ang[None, :]
    c, s = m * np.cos(th)[:, None, :], m * np.sin(th)[:, None, :]
    y = x.copy()
    if interleaved:
        a, b = x[..., 0:r:2], x[..., 1:r:2]
        y[..., 0:r:2], y[..., 1:r:2] = a * c - b * s, b * c + a * s
    else:
        a, b = x[..., :r // 2], x[..., r // 2:r]
        y[..., :r // 2], y[..., r // 2:r] = a * c - b * s, b * c + a * s
    return y


def _rope_hypotheses(ropes, hs):
    """[(kind, ang, r, magnitude)] that the tables allow: a table w wide holds [f, f] (rotate-half),
    [f0 f0 f1 f1 ..] (interleaved) or [f] alone."""
    out = []
    for row, w, m, *_ in ropes:
        out += [("interleaved" if il else "half", row, 2 * w, m) for il in (False, True) if 2 * w <= hs]
        if w % 2 == 0 and np.allclose(row[:w // 2], row[w // 2:]):
            out.append(("half", row[:w // 2], w, m))
        if w % 2 == 0 and np.allclose(row[0::2], row[1::2]):
            out.append(("interleaved", row[0::2], w, m))
    return out


# ---- scores: chain, masks, windows, ALiBi ----

def score_chain(g, softmax):
    """(q.k value, nodes from it to the softmax input, input names of the masks on the way).
    A mask term is (kind, name, scores-in-then-branch): "add" for an added constant (masks, ALiBi),
    "where" for a Where condition."""
    chain, v, terms = [], softmax.input[0], []
    while v in g.producer:
        n = g.producer[v]
        live = [i for i in n.input if i in g.live]
        if n.op_type in ("MatMul", "Einsum") and len(live) == 2:
            break
        if len(live) != 1:
            raise g.err(f"node '{n.name}' ({n.op_type}): attention scores combine two live values")
        chain.append(n)
        if n.op_type == "Add":
            c = [i for i in n.input if i not in g.live]
            if c and np.size(g.values.get(c[0])) > 1:
                terms.append(("add", c[0], None))
        elif n.op_type == "Where" and n.input[0] not in g.live:
            terms.append(("where", n.input[0], n.input[1] == live[0]))
        v = live[0]
    return v, chain, terms


def _mask(values, terms, T):
    """-> (allowed bool [Hm, T, T], additive bias float32 [Hm, T, T] or None) of the mask terms' values."""
    allowed, bias = None, None
    for kind, name, then in terms:
        v = np.asarray(values[name])
        v = v.reshape((-1,) + v.shape[-2:]) if v.ndim >= 2 else v.reshape(1, 1, -1)
        if kind == "add":
            ok = v > -1e9
            if np.any(np.where(ok, v, 0)):
                b = np.where(ok, v, 0).astype(np.float32)
                bias = b if bias is None else bias + b
        else:
            ok = v.astype(bool) if then else ~v.astype(bool)
        allowed = ok if allowed is None else allowed & ok
    allowed = np.ones((1, T, T), bool) if allowed is None else np.broadcast_to(allowed, (allowed.shape[0], T, T))
    return allowed, (None if bias is None else np.broadcast_to(bias, (bias.shape[0], T, T)))


def eval_values(g, names, T):
    """The constant values `names` recomputed for T token ids: only the subgraph computing them is
    run. -> {name: array}, or None if the graph does not run at that length."""
    import onnxruntime as ort
    from .frontend import make_feeds
    nodes, seen, todo = [], set(), list(names)
    while todo:
        v = todo.pop()
        if v in seen or v not in g.producer:
            continue
        seen.add(v)
        n = g.producer[v]
        if id(n) not in {id(x) for x in nodes}:
            nodes.append(n)
            todo.extend(i for i in n.input if i)
    used = {i for n in nodes for i in n.input}
    inits = [i for i in g.model.graph.initializer if i.name in used]
    init_names = {i.name for i in inits}
    inputs = [i for i in g.model.graph.input if i.name in used and i.name not in init_names]
    nodes.sort(key=lambda n: g.order[id(n)])
    graph = onnx.helper.make_graph(nodes, "masks", inputs, [onnx.ValueInfoProto(name=n) for n in names], inits)
    m = onnx.helper.make_model(graph, opset_imports=g.model.opset_import, ir_version=g.model.ir_version)
    infos = [(i.name, onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type),
              [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim])
             for i in inputs]
    so, ro = ort.SessionOptions(), ort.RunOptions()
    so.log_severity_level = ro.log_severity_level = 4
    try:
        feeds, _ = make_feeds(infos + [(g.ids_name, np.int64, [1, None])] if not any(i[0] == g.ids_name for i in infos)
                              else infos, np.zeros(T, np.int64), g.path)
        feeds = {k: v for k, v in feeds.items() if k in {i.name for i in inputs}}
        from . import onnxfile
        sess, weights = onnxfile.session(m, g.path)      # external weights fed in place, as the probe run does
        return dict(zip(names, sess.run(names, {**feeds, **weights}, ro)))
    except Exception:
        return None


def layer_masks(g, softmaxes, T):
    """Per layer dict(chain, terms, allowed, bias, tanh) at the probe length, and (window, ALiBi
    slopes [Hm] or None) read at MASK_T positions -> ([dict], positions read, 0 if no masks)."""
    out = []
    for n in softmaxes:
        scores, chain, terms = score_chain(g, n)
        allowed, bias = _mask(g.values, terms, T)
        out.append(dict(chain=chain, terms=terms, allowed=allowed, bias=np.zeros((1, T, T)) if bias is None else bias,
                        tanh=next((c for c in chain if c.op_type == "Tanh"), None)))
    for li, m in enumerate(out):
        if not m["terms"]:
            raise g.err(f"layer {li}: attention scores without a causal mask (node '{softmaxes[li].name}')")
    names = sorted({t[1] for m in out for t in m["terms"]})
    for Tm in MASK_T + (T,):
        vals = g.values if Tm == T else eval_values(g, names, Tm)
        try:
            masks = {tuple(m["terms"]): _mask(vals, m["terms"], Tm) for m in out} if vals is not None else None
        except ValueError:                  # a mask sliced from a table shorter than Tm
            masks = None
        if masks is not None:
            break
    seen = {}
    for li, m in enumerate(out):
        key = tuple(m["terms"])
        if key not in seen:
            allowed, bias = masks[key]
            seen[key] = _window(g, allowed, Tm, f"layer {li}"), _alibi(g, allowed, bias, Tm, f"layer {li}")
        m["window"], m["slopes"] = seen[key]
    return out, Tm


def _window(g, allowed, T, where):
    """0 for plain causal attention, w for a sliding window (keys i-w+1..i); anything else refused."""
    if allowed.shape[0] > 1 and not (allowed == allowed[:1]).all():
        raise g.err(f"{where}: attention masks differ between heads")
    a = allowed[0]
    r = np.arange(T)
    count = a.sum(1)
    w = int(count[-1])
    first, last = a.argmax(1), T - 1 - a[:, ::-1].argmax(1)
    want = np.minimum(r + 1, w)
    # as many keys as the band holds, the first and last of them where the band starts and ends
    if w < 1 or not (np.array_equal(count, want) and np.array_equal(last, r) and np.array_equal(first, r - want + 1)):
        raise g.err(f"{where}: attention mask is neither causal nor a causal sliding window")
    return 0 if w >= T else w


def _alibi(g, allowed, bias, T, where):
    """ALiBi slopes [Hm] if the added bias is slope_h * (key position - query position) plus a
    constant per row, else None (no bias)."""
    if bias is None:
        return None
    n = min(T, 256)                          # a slope per head from the last row, checked on the last n rows
    b, a = np.asarray(bias[:, -n:, :], np.float64), allowed[:, -n:, :]
    i = np.arange(T - n, T)
    rel = np.where(a, b - b[:, np.arange(n), i][:, :, None], 0.0)
    j0 = int(np.argmax(a[0, -1]))
    slopes = (b[:, -1, -1] - b[:, -1, j0]) / max(1, T - 1 - j0)
    want = np.where(a, slopes[:, None, None] * (np.arange(T)[None, :] - i[:, None])[None], 0.0)
    if not close(rel, want, 1e-4):
        raise g.err(f"{where}: attention bias is not ALiBi (slope times key distance)")
    return slopes


# ---- the attention of one layer ----

def _fit_scores(g, q, k, hs, H, Hk, T, sm, ropes, where):
    """-> (rope (kind, ang, r, magnitude) or None, scale, softcap) reproducing the softmax input."""
    qv, kv = q.reshape(T, H, hs), k.reshape(T, Hk, hs)
    if g.val(sm["scores_out"]).size % (H * T * T):
        raise TslError(f"{where}: scores are not [{H}, {T}, {T}]")
    S = np.asarray(g.val(sm["scores_out"]), np.float64).reshape(-1, H, T, T)[0]
    allowed = np.broadcast_to(sm["allowed"], (H, T, T)) if sm["allowed"].shape[0] in (1, H) else None
    if allowed is None:
        raise g.err(f"{where}: attention mask has {sm['allowed'].shape[0]} heads, the model {H}")
    Y = S - np.broadcast_to(sm["bias"], (H, T, T))
    tanh = sm["tanh"]
    if tanh is not None:
        u = np.asarray(g.val(tanh.input[0]), np.float64).reshape(H, T, T)
        o = np.asarray(g.val(tanh.output[0]), np.float64).reshape(H, T, T)
        mo = allowed & (np.abs(o) > 1e-4)
        cap = float(np.median(Y[mo] / o[mo])) if mo.any() else 0.0
    for rope in [None] + _rope_hypotheses(ropes, hs):
        qr, kr = (qv, kv) if rope is None else (apply_rope(x, rope[1], rope[0] == "interleaved", rope[2], rope[3])
                                                for x in (qv, kv))
        raw = np.einsum("thd,uhd->htu", qr, np.repeat(kr, H // Hk, axis=1))
        m = allowed & (np.abs(raw) > 1e-6)
        if not m.any():
            continue
        if tanh is None:
            scale, cap_ = float(np.median(Y[m] / raw[m])), 0.0
            fit = raw * scale
        else:
            if not cap > 0:
                continue
            scale, cap_ = float(np.median(u[m] / raw[m])) * cap, cap
            fit = cap * np.tanh(raw * scale / cap)
        if np.abs(fit[allowed] - Y[allowed]).max() <= 2e-3 * np.abs(Y[allowed]).max():
            std = 1.0 / np.sqrt(hs)
            return rope, float(std if abs(scale / std - 1) < 1e-5 else scale), cap_
    raise TslError(f"{where}: attention scores are not q.k^T (with or without RoPE) times a constant")


def recognize_attention(g, qkv, o_in, softmax, sm, ropes, where):
    """-> dict(q, k, v parts, H, Hk, hs, rope, scale, softcap) of the one assignment of the
    projections that reproduces the scores and the attention output."""
    hs = head_size(g, qkv, where)
    xa = flat(g.val(qkv[0]["x"]))
    T = xa.shape[0]
    sm = dict(sm, scores_out=softmax.input[0])
    P = np.asarray(g.val(softmax.output[0]), np.float64)
    tried = []
    for Q, K, V in qkv_hypotheses(g, qkv, hs, where):
        nq, nk = Q["w"].shape[0], K["w"].shape[0]
        tried.append(f"{nq}/{nk}/{V['w'].shape[0]}")
        if nq % hs or nk % hs or nk != V["w"].shape[0] or (nq // hs) % (nk // hs) or V["norm"] is not None:
            continue
        H, Hk = nq // hs, nk // hs
        proj = lambda X: xa @ X["w"].T + (0 if X["b"] is None else X["b"])
        q, k, v = proj(Q), proj(K), proj(V)
        if Q["norm"] is not None or K["norm"] is not None:
            if any(X["norm"] is not None and X["norm"].g.size not in (hs, X["w"].shape[0]) for X in (Q, K)):
                continue
            q, k = (x if X["norm"] is None else apply_norm(X["norm"], x.reshape(-1, X["norm"].g.size)).reshape(T, -1)
                    for x, X in ((q, Q), (k, K)))
        try:
            rope, scale, cap = _fit_scores(g, q, k, hs, H, Hk, T, sm, ropes, where)
        except TslError:
            continue
        if P.size != H * T * T:
            continue
        att = np.einsum("htu,uhd->thd", P.reshape(H, T, T), np.repeat(v.reshape(T, Hk, hs), H // Hk, axis=1))
        if close(att.reshape(T, -1), flat(g.val(o_in)), 2e-3):
            return dict(q=Q, k=K, v=V, H=H, Hk=Hk, hs=hs, rope=rope, scale=scale, softcap=cap)
    raise g.err(f"{where}: no assignment of the {len(qkv) if len(qkv) > 1 else 'fused'} projections to "
                f"q/k/v (sizes tried {', '.join(dict.fromkeys(tried)) or 'none'}, head size {hs}) reproduces the "
                "attention; heads do not divide or attention form unsupported")
