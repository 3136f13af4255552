"""Calibration from text: float ModelSpec + token chunks -> an equivalent ModelSpec whose weights
quantize better, and the integer weights themselves (GPTQ), in the formats the kernels already take.

1. Statistics. The float forward (model.forward) runs over the calibration chunks; at each point
   where tinyslm quantizes a matvec input (norm outputs, the attention output, the MLP product) it
   records per-channel max |x| and the Gram matrix X^T X [K, K] of the rows (float64).
2. Smoothing (SmoothQuant / AWQ style) of the MLP product, exact in float: its channel j is
   divided by s_j, folded into row j of w_up (silu(gate) * up is linear in up; a whole row scaled
   keeps its int8 grid), and column j of w_down multiplied by s_j. The exponent alpha of
   s_j = amax_x^alpha / amax_w^(1 - alpha) is chosen per layer from ALPHAS by the squared output
   error of the simulated quantized product on calibration rows. The same folding into the norm
   gains ahead of q/k/v and up/gate was measured and chose alpha 0 everywhere on the example
   (the norm outputs have no channel outliers to move), so it is not done.
3. GPTQ: each matvec weight is quantized column by column along K, the rounding error of a column
   fed back into the columns still to come through the inverse Hessian (damped by DAMP). int8 keeps
   its per-row scale (max |w| / 127 after a clipping search); int4 picks each 32-group's signed int8
   scale when the group is reached, with the same search as quantize.quant_rows_s4; then the group
   scales are refit by least squares for the codes chosen and GPTQ reruns with them fixed
   (LS_ROUNDS times, each row keeping its pass of least loss). The non-linear grid (s4nl, int4nl.py)
   rounds to the tensor's levels instead, and refits the levels after each full GPTQ run on the codes
   it chose, weighted like the scales (int4nl.KV_ROUNDS times, the run of least loss kept).
   Measured and not kept: act-order with static groups (int4 KLD 0.01166 vs 0.01162 in order).
4. With rotate (quantize.py's fwht of the MLP product), the smoothing search simulates the rotated
   product, and GPTQ quantizes w_down's rotated columns W D H / n (quantize.rotate_cols) under the
   rotated Gram matrix (H D) X^T X (H D)^T: what the build computes. The sites record the unrotated
   product; rotation is applied to their statistics where they are read.
The embedding (and the LM head tied to it) stays plain int8 per row. Weights the ONNX graph carries
as integers (qgraph) are neither smoothed nor re-quantized.
"""
import copy
from pathlib import Path

import numpy as np

from .errors import TslError
from .model import forward

ALPHAS = (0.0, 0.25, 0.5)
DAMP = 0.1               # of the mean Hessian diagonal (same simulation: int4 KLD 0.0116, 0.0120 with 0.01)
LS_ROUNDS = 2             # int4 group-scale refits after the first GPTQ pass (gptq); simulated int4 KLD on
                          # 4,096 held-out tokens: 0 rounds 0.011414, 1 0.010803, 2 0.010759, 3 0.010884
MAX_ROWS = 1024           # calibration rows kept per site for the smoothing search


class _Site:
    """Statistics of one matvec input: per-channel max |x| [K], Gram X^T X [K, K], a row sample."""
    def __init__(self):
        self.amax, self.gram, self.rows, self.n = None, None, [], 0

    def add(self, x):
        x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
        a = np.abs(x).max(0)
        self.amax = a if self.amax is None else np.maximum(self.amax, a)
        g = x.T @ x
        self.gram = g if self.gram is None else self.gram + g
        self.n += len(x)
        if sum(len(r) for r in self.rows) < MAX_ROWS:
            self.rows.append(x[::4])

    @property
    def sample(self):
        return np.concatenate(self.rows)[:MAX_ROWS]


def collect(spec, chunks):
    """-> [{attn, att, ffn, mid: _Site}] per layer, from the float forward over token chunks."""
    sites = [dict(attn=_Site(), att=_Site(), ffn=_Site(), mid=_Site()) for _ in spec.layers]
    order = ("attn", "att", "ffn")
    for ids in chunks:
        calls = {"A": 0, "M": 0}

        def rec_a(x):
            i = calls["A"]
            calls["A"] += 1
            if i < 3 * len(spec.layers):
                sites[i // 3][order[i % 3]].add(x)
            return x

        def rec_m(x):
            sites[calls["M"]]["mid"].add(x)
            calls["M"] += 1
            return x
        forward(spec, ids, (lambda v: v, rec_a, lambda v: v, rec_m))
    return sites


CAL_TOKENS = 8192        # calibration tokens (32 chunks of BOS + 255); int4 KLD with the scale refit, numpy
                         # simulation on 4,096 held-out tokens of the example: 4,096 tokens 0.010759, 8,192
                         # 0.010617 (calibration 43 s -> 51 s on the loaded 2-core machine)
MATVECS = (("wq", "q"), ("wk", "k"), ("wv", "v"), ("wo", "o"), ("w_up", "up"), ("w_gate", "gate"), ("w_down", "down"))


def default_text(model_path):
    """The default calibration text: the model's training text beside it, data/train.txt (the bundled example's)."""
    return Path(model_path).resolve().parent / "data" / "train.txt"


def load_chunks(path, model_path, tok, max_seq, max_tokens=None):
    """Calibration chunks from a text file ("default" or None: default_text): BOS + consecutive
    pieces of its first max_tokens tokens, at most max_seq (and 256) long."""
    from .evaluate import text_chunks
    max_tokens = max_tokens or CAL_TOKENS
    if tok is None:
        raise TslError(f"{model_path}: calibration reads text, and the model has no tokenizer; give --tokenizer")
    p = default_text(model_path) if path in (None, "default") else Path(path)
    if not p.is_file():
        raise TslError(f"{p}: no such calibration text file" + (" (the default, the model's data/train.txt); "
                                                                "give --calibrate FILE" if path in (None, "default") else ""))
    try:
        text = p.read_bytes()[:max_tokens * 16].decode("utf-8", "replace")
    except OSError as e:
        raise TslError(f"{p}: cannot read: {e.strerror}") from None
    chunks = text_chunks(tok.encode(text)[:max_tokens], min(max_seq, 256), tok.bos_id)
    if not chunks:
        raise TslError(f"{p}: no text to calibrate on")
    return chunks


def formats_for(spec, weights, s4="s4"):
    """matvec name -> s8 | s5nl | s4 (s4: the int4 format, s4 or s4nl) for --weights int8 | int5 | int4 (mixed:
    fit.mixed)."""
    f = {"int4": s4, "int5": "s5nl"}.get(weights, "s8")
    return {f"l{li}.{n}": f for li, L in enumerate(spec.layers)
            for n, _ in MATVECS if getattr(L, n) is not None}


# ---------------------------------------------------------------------------------- quantizers

def qdq_rows(x, bits=8):
    """Symmetric max-scaled quantize-dequantize per row (what the kernels do to activations)."""
    m = 2 ** (bits - 1) - 1
    s = np.abs(x).max(-1, keepdims=True) / m
    s = np.where(s == 0, 1, s)
    return np.round(x / s) * s


def _s8_row_scales(w, h_diag):
    """Per-row int8 scale: max |w| / 127 times a clipping ratio chosen for the least
    Hessian-diagonal-weighted squared error (plain rounding, before GPTQ)."""
    amax = np.abs(w).max(1)
    best, best_err = None, None
    for r in (1.0, 0.98, 0.96, 0.94, 0.92, 0.9):
        s = np.where(amax > 0, amax * r / 127.0, 1.0)
        err = (((np.clip(np.round(w / s[:, None]), -127, 127) * s[:, None] - w) ** 2) * h_diag).sum(1)
        if best is None:
            best, best_err = s, err
        else:
            m = err < best_err
            best, best_err = np.where(m, s, best), np.minimum(err, best_err)
    return best.astype(np.float32).astype(np.float64)


def inverse_factor(gram):
    """-> (U, damped H, dead columns): U upper triangular with H^-1 = U^T U, H = gram damped by DAMP."""
    H = np.array(gram, np.float64)
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    H += DAMP * np.mean(np.diag(H)) * np.eye(len(H))
    return np.linalg.cholesky(np.linalg.inv(H)).T, H, dead


def _grid(lo, hi):
    """the rounding of a uniform grid: v -> the nearest integer in [lo, hi]"""
    return lambda v: np.clip(np.round(v), lo, hi)


def _gptq_pass(w, U, f, rnd, group_scales=None, group=32):
    """One GPTQ pass over the columns of w [N, K] with step f [N, K] (group_scales(W cols, g) -> [N]
    sets f's groups as they are reached, else f is fixed), each column rounded to its grid by rnd
    (v / f -> the grid's value, e.g. _grid) -> (codes Q, the columns W' they rounded [N, K], loss [N]
    = sum_i ((W'_i - Q_i f_i) / U_ii)^2, which is (w - Q f) H (w - Q f)^T per row)."""
    W = np.array(w, np.float64)
    N, K = W.shape
    Q, T, loss = np.zeros((N, K)), np.zeros((N, K)), np.zeros(N)
    for i in range(K):
        if group_scales is not None and i % group == 0:
            f[:, i:i + group] = group_scales(W[:, i:i + group], i // group)[:, None]
        T[:, i] = W[:, i]
        q = rnd(W[:, i] / f[:, i])
        Q[:, i] = q
        err = (W[:, i] - q * f[:, i]) / U[i, i]
        loss += err * err
        W[:, i + 1:] -= np.outer(err, U[i, i + 1:])
    return Q, T, loss


def ls_group_scales(T, Q, d, ws, gs, group=32, gm=127):
    """Least-squares refit of int4 group scales: per group, s = sum(d t q) / sum(d q q) (the step that
    minimizes sum d (t - s q)^2 for fixed codes q), as the kernels' signed int8 multiple of the row
    scale ws, |gs| in [1, gm]. T [N, K] targets, Q codes, d [K] weights; groups whose codes are all
    zero keep gs."""
    N, K = T.shape
    t, q = T.reshape(N, -1, group), Q.reshape(N, -1, group)
    dg = d.reshape(1, -1, group)
    num, den = (dg * t * q).sum(2), (dg * q * q).sum(2)
    s = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    new = np.clip(np.round(s / ws[:, None]), -gm, gm)
    new = np.where(new == 0, np.where(s < 0, -1.0, 1.0), new)
    return np.where(den > 0, new, gs)


def gptq(w, factor, fmt, group=32):
    """w [N, K] float, inverse_factor(X^T X) -> quantized weights in the kernels' format:
    s8: (int8 [N, K], float32 [N]); s4: (packed uint8 [N, K/2], int8 group scales [N, K/32], float32 [N]);
    s4nl: (codes uint8 [N, K/2], int8 levels [16], int8 group scales, float32 [N]) (gptq_nl); s5nl
    the same with codes [N, 5K/8] and 32 levels (int4nl.py).
    int4: the first pass picks each group's scale when it is reached (quantize.s4_group_scales); then
    LS_ROUNDS times the scales are refit by least squares (ls_group_scales) on the columns the codes
    rounded, weighted by 1 / U_ii^2 (each column's share of the loss), and GPTQ reruns with them fixed;
    each row keeps the pass of least loss, so the refit never raises a row's (w - w_q) H (w - w_q)^T."""
    from .quantize import _pack_s4, s4_group_scales
    U, H, dead = factor
    W = np.array(w, np.float64)
    K = W.shape[1]
    W[:, dead] = 0.0
    if fmt == "s8":
        ws = _s8_row_scales(W, np.diag(H)[None, :])
        Q, _, _ = _gptq_pass(W, U, np.repeat(ws[:, None], K, 1), _grid(-127, 127))
        return Q.astype(np.int8), ws.astype(np.float32)
    if fmt in ("s4nl", "s5nl"):
        return gptq_nl(W, U, group, fmt)
    amax = np.abs(W).max(1)
    ws = np.where(amax > 0, amax / 8 / 127.0, 1.0).astype(np.float32).astype(np.float64)
    Q, _, _, gs = gptq_groups(W, U, ws, s4_group_scales, _grid(-8, 7), group)
    return _pack_s4(Q.astype(np.int8)), gs.astype(np.int8), ws.astype(np.float32)


def gptq_nl(W, U, group=32, fmt="s4nl"):
    """gptq_groups on the non-linear grid, from IQ4_NL's levels; after each run the levels are refit
    (int4nl.refit, columns weighted by 1 / U_ii^2) for the next; the run of least loss is kept."""
    from . import int4nl
    K = W.shape[1]
    gm, ws = int4nl.gmax(K), int4nl.row_scales(W, K)
    d = 1.0 / np.diag(U) ** 2
    kv, best = int4nl.LEVELS[fmt].copy(), None
    for _ in range(int4nl.KV_ROUNDS + 1):
        Q, T, loss, gs = gptq_groups(W, U, ws, int4nl.searcher(kv, gm), lambda v, kv=kv: int4nl.nearest(v, kv),
                                     group, gm)
        if best is None or loss.sum() < best[0]:
            best = (loss.sum(), int4nl.pack(Q, kv, gs, ws))
        kv = int4nl.refit(kv, Q, T, np.repeat(gs, group, 1) * ws[:, None], d)
    return best[1]


def gptq_groups(W, U, ws, search, rnd, group=32, gm=127):
    """gptq's group-scaled passes: the first picks each group's scale when it is reached (search(cols,
    ws) -> signed int8-valued [N]), then LS_ROUNDS least-squares refits with GPTQ rerun on them, each
    row keeping its pass of least loss; rnd: as _gptq_pass's -> (grid values Q, rounded columns T,
    loss [N], gs [N, K / group]); gm: the largest |gs| of the refits."""
    N, K = W.shape
    gs = np.zeros((N, K // group))

    def first(cols, g):
        gs[:, g] = search(cols, ws)
        return gs[:, g] * ws
    Q, T, loss = _gptq_pass(W, U, np.zeros((N, K)), rnd, first, group)
    d = 1.0 / np.diag(U) ** 2
    for _ in range(LS_ROUNDS):
        gs2 = ls_group_scales(T, Q, d, ws, gs, group, gm)
        Q2, T2, loss2 = _gptq_pass(W, U, np.repeat(gs2 * ws[:, None], group, 1), rnd)
        m = loss2 < loss
        gs, Q, T = (np.where(m[:, None], a, b) for a, b in ((gs2, gs), (Q2, Q), (T2, T)))
        loss = np.minimum(loss2, loss)
    return Q, T, loss, gs


# ---------------------------------------------------------------------------------- smoothing

def _smooth_scales(site, ws, alpha):
    """s [K] = amax_x^alpha / amax_w^(1-alpha), normalized to geometric mean 1; ws: weights reading x."""
    ax = np.maximum(site.amax, 1e-8)
    aw = np.maximum(np.abs(np.concatenate(ws, 0)).max(0), 1e-8)
    s = ax ** alpha / aw ** (1 - alpha)
    return s / np.exp(np.log(s).mean())


def _rotation(rotate, K):
    """-> (block, sign bits) of quantize's rotation at an input of K, or None (not rotated)"""
    from .quantize import rot_block, rot_signs
    return (rot_block(K), rot_signs(K)) if rotate and rot_block(K) else None


def _site_error(site, ws, s, fmt, rot=None):
    """Squared output error of Q(R x / s) . Q(W * s R^-1)^T against x . W^T on the site's row sample
    (R: the rotation, or none)."""
    from .quantize import rotate_cols, rotate_rows
    x = site.sample
    err = 0.0
    xq = qdq_rows(x / s if rot is None else rotate_rows(x / s, *rot))
    for w in ws:
        ww = w * s[None, :] if rot is None else rotate_cols(w * s[None, :], *rot)
        wq = rtn_dequant(ww, fmt, "calibrate")
        err += ((xq @ wq.T - x @ w.T) ** 2).sum()
    return err


def _choose(site, ws, fmt, rot=None):
    best = None
    for a in ALPHAS:
        s = np.ones_like(site.amax) if a == 0 else _smooth_scales(site, ws, a)
        e = _site_error(site, ws, s, fmt, rot)
        if best is None or e < best[0]:
            best = (e, a, s)
    return best[1], best[2]


def calibrate(spec, chunks, formats, log=None, rotate=False, rotate_att=False):
    """-> (spec', {matvec name: quantized weights}, att_layers): spec' is spec with the smoothing folded
    in (float-equivalent, unrotated); formats: matvec name -> s8 | s4 | s4nl (what quantize will emit);
    rotate: as quantize's (w_down's quantized weights are then of its rotated columns); rotate_att:
    rotate the attention output of the layers where that lowers the simulated output error of wo on
    calibration rows (_site_error, weights rounded to nearest), att_layers, as quantize's rotate_att
    (wo's quantized weights of its rotated columns there)."""
    from .quantize import rotate_cols, rotate_rows
    spec = copy.deepcopy(spec)
    from . import int4nl
    for n, f in formats.items():
        K = _weight(spec, n).shape[1]
        if f == "s4" and (K % 32 or K * 8 * 128 * 127 >= 2 ** 31):
            raise TslError(f"{n}: int4 needs K divisible by 32 and small enough for the int32 accumulator, "
                           f"K = {K}; use --weights int8")
        if f in ("s4nl", "s5nl"):
            int4nl.check(K, n)
    sites = collect(spec, chunks)
    notes = []
    for li, (L, S) in enumerate(zip(spec.layers, sites)):
        p = f"l{li}."
        fmt = lambda n: formats.get(p + n, "s8")        # noqa: E731
        graph = set(L.qw)
        if L.w_gate is not None and not graph & {"up", "down"}:
            a, s = _choose(S["mid"], [L.w_down], fmt("w_down"), _rotation(rotate, L.w_down.shape[1]))
            L.w_up = L.w_up / s[:, None]
            if "up" in L.bias:
                L.bias["up"] = L.bias["up"] / s
            L.w_down = L.w_down * s[None, :]
            _rescale_site(S["mid"], s)
            notes.append((p + "mid", a))
    att_layers = []
    for li, (L, S) in enumerate(zip(spec.layers, sites)):
        rot = _rotation(rotate_att and "o" not in L.qw, L.wo.shape[1])
        if rot is not None:
            one, f = np.ones(L.wo.shape[1]), formats.get(f"l{li}.wo", "s8")
            if _site_error(S["att"], [L.wo], one, f, rot) < _site_error(S["att"], [L.wo], one, f):
                att_layers.append(li)
    quant = {}
    for li, (L, S) in enumerate(zip(spec.layers, sites)):
        p = f"l{li}."
        factors = {}                                    # one inverse per input, shared by q/k/v and up/gate
        for (name, key), site in zip(MATVECS, ("attn", "attn", "attn", "att", "ffn", "ffn", "mid")):
            w = getattr(L, name)
            if w is None or key in L.qw:
                continue
            rot = _rotation((rotate and site == "mid") or (li in att_layers and site == "att"), w.shape[1])
            if site not in factors:
                g = S[site].gram
                if rot is not None:                     # (H D) G (H D)^T: G symmetric, rows then columns
                    g = rotate_rows(rotate_rows(g, *rot).T, *rot)
                factors[site] = inverse_factor(g)
            quant[p + name] = gptq(w if rot is None else rotate_cols(w, *rot), factors[site], formats.get(p + name, "s8"))
    if log:
        log(f"calibrated on {sum(len(c) for c in chunks)} tokens: GPTQ on {len(quant)} matvecs, MLP product "
            "smoothing exponents " + ", ".join(f"{n} {a:g}" for n, a in notes)
            + (f"; attention output rotated in layers {', '.join(map(str, att_layers)) or 'none'}" if rotate_att else ""))
    return spec, quant, tuple(att_layers)


def dequant(qw):
    """quantized weights (as quantize takes them: s8, s4 or s4nl tuples) -> float64 [N, K]"""
    from . import int4nl
    from .quantize import unpack_s4
    if len(qw) == 2:
        return qw[0].astype(np.float64) * qw[1].astype(np.float64)[:, None]
    if len(qw) == 4:
        return int4nl.dequant(qw)
    q, gs, ws = qw
    return unpack_s4(q).astype(np.float64) * np.repeat(gs.astype(np.float64), 32, 1) * ws.astype(np.float64)[:, None]


def rtn_dequant(w, fmt, where):
    """w [N, K] rounded to nearest in fmt (s8 per row, s4, s4nl), dequantized: float64"""
    from . import int4nl
    from .quantize import quant_rows_s4
    if fmt == "s4":
        return dequant(quant_rows_s4(w, where))
    if fmt in ("s4nl", "s5nl"):
        return int4nl.dequant(int4nl.quant_rows(w, where, fmt))
    return qdq_rows(np.asarray(w, np.float64))


def kld_sim(ref_spec, spec, chunks, formats, prequant=None, float_rest=False, mlp_residual=True, refs=None,
            rotate=False, rotate_att=()):
    """Mean KL(float || quantized) per position over the chunks, both sides model.forward in float64:
    ref_spec as it is (or refs, its log-probabilities per chunk); spec with its matvec weights in
    `formats` (prequant's, else rounded to nearest) and the embedding int8 per row, activations int8
    per token (the MLP product about 16-bit with mlp_residual). float_rest: only the `formats`
    tensors are quantized, nothing else. rotate: as quantize's (w_down rotated, the MLP product too);
    rotate_att: the layers whose wo and attention output are rotated likewise.
    A numpy simulation of the build, not the build itself."""
    from .evaluate import log_softmax
    from .quantize import rotate_cols, rotate_rows
    prequant = prequant or {}
    deq = {}
    rots = [None if "down" in L.qw or L.w_down is None else _rotation(rotate, L.w_down.shape[1]) for L in spec.layers]
    rots_o = [None if "o" in L.qw else _rotation(li in rotate_att, L.wo.shape[1]) for li, L in enumerate(spec.layers)]
    for name, f in formats.items():
        w = _weight(spec, name)
        li = int(name.split(".")[0][1:])
        rot = rots[li] if name.endswith(".w_down") else rots_o[li] if name.endswith(".wo") else None
        wr = w if rot is None else rotate_cols(w, *rot)
        deq[id(w)] = dequant(prequant[name]) if name in prequant else rtn_dequant(wr, f, name)
    for L, rot, rot_o in zip(spec.layers, rots, rots_o):
        for w, r in ((L.w_down, rot), (L.wo, rot_o)):
            if r is not None and id(w) not in deq:
                deq[id(w)] = rotate_cols(w, *r) if float_rest else qdq_rows(rotate_cols(w, *r))
    same = lambda v: v                                              # noqa: E731
    W = (lambda w: deq.get(id(w), w)) if float_rest else (lambda w: deq[id(w)] if id(w) in deq else qdq_rows(w))
    a_calls = [0]

    def A(v):                                                       # norm outputs, attention outputs (rotated), head input
        i = a_calls[0] % (3 * len(rots_o) + 1)
        a_calls[0] += 1
        rot = rots_o[i // 3] if i % 3 == 1 and i < 3 * len(rots_o) else None
        v = v if rot is None else rotate_rows(v, *rot)
        return v if float_rest else qdq_rows(v)
    mq = same if float_rest else (lambda v: qdq_rows(v, 16 if mlp_residual else 8))
    calls = [0]

    def M(v):                                                       # layer by layer, the MLP product as quantized
        rot = rots[calls[0] % len(rots)]
        calls[0] += 1
        return mq(v if rot is None else rotate_rows(v, *rot))
    refs = refs or float_logprobs(ref_spec, chunks)
    k = []
    for ids, ref in zip(chunks, refs):
        lp = log_softmax(forward(spec, ids, (W, A, same if float_rest else qdq_rows, M)))
        k.append((np.exp(ref) * (ref - lp)).sum(1))
    return float(np.maximum(np.concatenate(k), 0).mean())


def float_logprobs(spec, chunks):
    from .evaluate import log_softmax
    return [log_softmax(forward(spec, ids)) for ids in chunks]


def _weight(spec, name):
    li, n = name.split(".")
    return getattr(spec.layers[int(li[1:])], n)


def _rescale_site(site, s):
    """The site's statistics for the input x / s."""
    site.amax = site.amax / s
    site.gram = site.gram / np.outer(s, s)
    site.rows = [r / s for r in site.rows]
