"""Quantize a float ModelSpec and lower it to the integer IR (one decode step).

Scheme (all symmetric, zero point 0):
  weights     int8 per output channel, or int4 with signed int8 group scales (groups of 32 along K)
              under one float scale per output channel; embeddings and LM head stay int8. Integer
              weights that the ONNX graph already carries are kept as they are.
  activations int8 with a scale chosen per token at run time (max |x| / 127): matvec inputs, q,
              and each K and V row entering the cache (one scale per head and position). The MLP
              product feeds the down projection twice: int8, then its int8 rounding error
              (mlp_residual; +22% MACs on the example; without it the MLP product is the largest
              activation error, see benchmarks/quant_error.py). With rotate (compile's default with one
              pass) it is rotated first, x -> H D x (randomized block Walsh-Hadamard, fwht op),
              which spreads its heavy tails over each block: example KLD 0.000682 -> 0.000345 in
              one pass (two passes: 0.000296). w_down reads it as W D H / block.
  attention   int8 q.K, float softmax (tsl_exp_neg), Q15 weights times int8 V, requantized to
              one int8 scale for all heads (tsl_multiplier + tsl_requant)
  residual    float32, norms float32, RoPE float32 with compiler-computed tables
Scales are chosen at run time, so no calibration data is needed. Measured on the test models,
per-position K/V scales lose ~10x less than per-head static ones (logit cosine 0.99986 vs 0.9984).
"""
import itertools

import numpy as np

from . import int4nl
from .errors import TslError
from .ir import Program
from .model import kv_slots, layer_freqs, rope_split_tables
from .numerics import ACTS, butterflies, sign_bits

GROUP = 32            # int4 group length along K
EXTRAS = {"s8": 0, "s4": 1, "s4nl": 2, "s5nl": 2}   # arrays between a format's values and its row scales (prequant tuples)
ROT_SEED = 13         # the rotation's sign table: rot_signs(K, ROT_SEED), stored with the weights
ROT_MAX_BLOCK = 1 << 12
ROT_MIN_BLOCK = 8     # K with a smaller power-of-two factor: not rotated


def rot_block(K):
    """The rotation's block at an input of K: the largest power of two dividing K (at most
    ROT_MAX_BLOCK), or 0 below ROT_MIN_BLOCK (no rotation there)."""
    b = min(K & -K, ROT_MAX_BLOCK)
    return b if b >= ROT_MIN_BLOCK else 0


def rot_signs(K, seed=ROT_SEED):
    """The sign table of D at an input of K: uint8 [ceil(K / 8)], bit i (LSB first) = the low bit of a
    splitmix32-style hash of (seed, i). Pure integer arithmetic: the same bits on every numpy."""
    z = (np.uint64(seed) * np.uint64(0x9E3779B9) + np.arange(K, dtype=np.uint64) * np.uint64(0x85EBCA6B)) & np.uint64(0xFFFFFFFF)
    for sh, m in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        z = ((z ^ (z >> np.uint64(sh))) * np.uint64(m)) & np.uint64(0xFFFFFFFF)
    z ^= z >> np.uint64(16)
    return np.packbits((z & np.uint64(1)).astype(np.uint8), bitorder="little")


def rotate_rows(x, block, bits):
    """float64 rows x [..., K] -> H D x per row (what the fwht op computes, in float64)"""
    x = np.asarray(x, np.float64)
    return butterflies(np.where(sign_bits(bits, x.shape[-1]), -x, x), block)


def rotate_cols(w, block, bits):
    """w [N, K] reading x -> W D H / block [N, K] (float64), reading H D x: the same product, since
    D = D^-1, H = H^T and H H^T = block * I."""
    return rotate_rows(w, block, bits) / block


ROW_BLOCK = 1 << 22    # elements per block of rows quantized at once: float64 temporaries stay ~32 MiB


def _row_blocks(w):
    step = max(1, ROW_BLOCK // max(1, w.shape[1]))
    return range(0, w.shape[0], step), step


def quant_rows_s8(w):
    """w [N, K] (float32 or float64, read in float64 a block of rows at a time) -> (int8 [N, K], float32 scale [N])"""
    q, s = np.empty(w.shape, np.int8), np.empty(w.shape[0], np.float32)
    starts, step = _row_blocks(w)
    for i in starts:
        wb = np.array(w[i:i + step], np.float64)
        amax = np.maximum(wb.max(1), -wb.min(1))                      # max |w|, without a temporary
        sb = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        np.divide(wb, sb[:, None].astype(np.float64), out=wb)
        np.clip(np.round(wb, out=wb), -127, 127, out=wb)
        q[i:i + step] = wb
        s[i:i + step] = sb
    return q, s


def _pack_s4(q):
    """int8 [N, K] in [-8, 7] -> uint8 [N, K/2], even k in the low nibble"""
    return ((q[:, 0::2] & 0xF) | ((q[:, 1::2] & 0xF) << 4)).astype(np.uint8)


def quant_rows_s4(w, where):
    """w [N, K] -> (packed uint8 [N, K/2], group scales int8 [N, K/32], float32 scale [N]), a block
    of rows at a time (every choice is per row).
    A group's scale is signed: its extreme value may map to -8, the one int4 level without a
    positive twin, or to the +7 side; sign and magnitude (9 clipping ratios each) are searched for
    the least squared error after the scale itself is rounded to its int8 multiple of the row scale."""
    N, K = w.shape
    if K % GROUP:
        raise TslError(f"{where}: int4 needs K divisible by {GROUP}, K = {K}; use --weights int8")
    if K * 8 * 128 * 127 >= 2 ** 31:
        raise TslError(f"{where}: K = {K} overflows the int4 accumulator; use --weights int8")
    starts, step = _row_blocks(w)
    parts = [_s4_block(w[i:i + step]) for i in starts]
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))


def _s4_block(w):
    N, K = w.shape
    wg = w.reshape(N, K // GROUP, GROUP).astype(np.float64)
    amax = np.abs(wg).max((1, 2))
    ws = np.where(amax > 0, amax / 8 / 127.0, 1.0)
    q, gs = s4_search(wg, ws)
    return _pack_s4(q.astype(np.int8).reshape(N, K)), gs.astype(np.int8), ws.astype(np.float32)


def s4_search(wg, ws):
    """wg [N, G, 32] float64 groups, ws [N] row scales -> (q [N, G, 32] in [-8, 7], gs [N, G] signed
    int8-valued group scales) with the least squared error per group."""
    ext = np.take_along_axis(wg, np.abs(wg).argmax(2)[:, :, None], 2)[:, :, 0]    # signed extreme [N, G]
    sign = np.where(ext > 0, -1.0, 1.0)
    best_q = best_gs = best_err = None
    for (sg, top), r in itertools.product(((sign, 8.0), (-sign, 7.5)), np.linspace(0.6, 1.0, 9)):
        gs = sg * np.clip(np.round(np.abs(ext) / top * r / ws[:, None]), 1, 127)
        f = (gs * ws[:, None])[:, :, None]
        q = np.clip(np.round(wg / f), -8, 7)
        err = ((q * f - wg) ** 2).sum(2)
        if best_err is None:
            best_q, best_gs, best_err = q, gs, err
        else:
            m = err < best_err
            best_q, best_gs, best_err = np.where(m[:, :, None], q, best_q), np.where(m, gs, best_gs), np.minimum(err, best_err)
    return best_q, best_gs


def s4_group_scales(wg, ws):
    """wg [N, 32], ws [N] -> the group's signed int8-valued scale [N] (s4_search on one group)."""
    return s4_search(np.asarray(wg, np.float64)[:, None, :], ws)[1][:, 0]


def unpack_s4(p):
    """packed uint8 [N, K/2] -> int8 [N, K] (inverse of _pack_s4)"""
    lo, hi = (p & 0xF).astype(np.int8), (p >> 4).astype(np.int8)
    out = np.empty((p.shape[0], 2 * p.shape[1]), np.int8)
    out[:, 0::2], out[:, 1::2] = np.where(lo > 7, lo - 16, lo), np.where(hi > 7, hi - 16, hi)
    return out


def honour_s4(qi):
    """MatMulNBits int4 weights as they are, or None where tinyslm's format cannot hold them
    (zero points, blocks not a multiple of 32). Block scales (signed: onnxruntime's symmetric int4
    puts each block's extreme at -8) become int8 multiples of a row scale, one per 32 k."""
    q, bs, scale = qi["q"], qi["block"], qi["block_scale"]
    K = q.shape[1]
    if bs % GROUP or K % GROUP or q.min() < -8 or q.max() > 7:
        return None
    scale = np.repeat(scale, bs // GROUP, axis=1)[:, :K // GROUP]
    sc = np.abs(scale).max(1)
    ws = np.where(sc > 0, sc / 127.0, 1.0)
    gs = np.round(scale / ws[:, None])
    gs = np.where(gs == 0, np.where(scale < 0, -1, 1), gs)
    return _pack_s4(q.astype(np.int8)), gs.astype(np.int8), ws.astype(np.float32)


def quantize(spec, max_seq, weights="int8", activations="int8", mlp_residual=True, formats=None, prequant=None,
             threads=1, rotate=False, rotate_att=(), int4="s4"):
    """-> Program for one decode step of `spec` with a static KV cache of max_seq positions.
    activations: int8, or int8x2 (every norm output also sent a second time as its int8
    rounding error, as the MLP product always is with mlp_residual). formats: matvec name ->
    s8 | s4 | s4nl | s5nl, overriding `weights` per tensor (mixed); int4: the format of --weights int4, s4 or
    s4nl (int4nl.py; the graph's own int4 weights stay s4); prequant: matvec name -> its quantized
    weights in that format, (int8, scale), (packed int4, group scales, scale) or (codes, levels, group
    scales, scale) (calibrate.py; with
    rotate, w_down's made from calibrate's rotated columns).
    threads: the cores decode may split attention over (heads); its scratch qq, sc, pw holds one
    slice per thread, min(threads, heads) of them (attr slices). rotate: the MLP product goes through
    the fwht op (H D x, numerics.fwht) before its int8 quantizer, and w_down reads it rotated. rotate_att:
    the layers whose attention output goes likewise through the fwht op (attention_f32, fwht, quant),
    wo reading it rotated (calibrate.py chooses them)."""
    formats, prequant = formats or {}, prequant or {}
    D, H, Hk, hs, F, V = spec.dim, spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.hidden, spec.vocab
    if spec.mask_checked and max_seq > spec.mask_checked:
        raise TslError(f"--max-seq {max_seq}: the attention masks could only be read up to {spec.mask_checked} "
                       "positions (the graph does not run longer)")
    P = Program(meta={}, bufs={}, ops=[], weights={})
    graph_weights = dict(kept=[], requantized=[])   # the graph's integer weights: kept as they are, or not

    def act_in(name, y, n, layer, twice):
        """The int8 input of the matvecs reading float activation y [n]; with `twice`, its rounding
        error is quantized as well (by the first matvec that reads it) and sent through each of them."""
        q, s = P.buf(name + ".q", "s8", n), P.buf(name + ".s", "f32", 1)
        P.op("quant", name + ".quant", [y], [q, s], layer, n=n)
        return dict(name=name, y=y, n=n, q=q, s=s, twice=twice, r=None)

    def matvec(name, w, xin, out, layer, bias=None, accumulate=0, fmt="s8", qi=None, shared=None, mul=1.0):
        """out (+)= mul * (W . xin + bias); shared: the (int8, scale) weight names of an already
        quantized W (tied). mul (residual and logit multipliers) is folded into the row scales."""
        N, K = w.shape
        fmt = formats.get(name, fmt)
        attrs = dict(N=N, K=K, accumulate=accumulate, fmt=fmt, sx=xin["s"], sx_const=None)
        kept = None
        if bias is not None and mul != 1.0:
            bias = bias * mul
        if shared:
            attrs["w_w"], attrs["ws_w"] = shared
            if mul != 1.0:
                attrs["ws_w"] = P.weight(name + ".ws", (P.weights[shared[1]] * np.float32(mul)).astype(np.float32))
        elif name in prequant:
            q, *gs, s = prequant[name]
            if len(gs) != EXTRAS[fmt] or q.shape != {"s8": (N, K), "s5nl": (N, K * 5 // 8)}.get(fmt, (N, K // 2)):
                raise AssertionError(f"{name}: prequantized weights are not {fmt} [{N}, {K}]")
            if len(gs) == 2:
                attrs["kv_w"] = P.weight(name + ".kv", gs[0])
            if gs:
                attrs["gs_w"] = P.weight(name + ".gs", gs[-1])
            s = s if mul == 1.0 else (s * np.float32(mul)).astype(np.float32)
            attrs["w_w"], attrs["ws_w"] = P.weight(name + ".w", q), P.weight(name + ".ws", s)
        else:
            kept = honour_s4(qi) if fmt in ("s4", "s4nl") and qi and qi["kind"] == "int4" else None
            if kept:                                    # the graph's int4 grid, as it is
                attrs["fmt"] = fmt = "s4"
            if fmt in ("s4nl", "s5nl"):
                q, kv, gs, s = int4nl.quant_rows(w, name, fmt)
                attrs["kv_w"], attrs["gs_w"] = P.weight(name + ".kv", kv), P.weight(name + ".gs", gs)
            elif fmt == "s4":
                q, gs, s = kept or quant_rows_s4(w, name)
                attrs["gs_w"] = P.weight(name + ".gs", gs)
            elif qi and qi["kind"] == "int8" and "scale" in qi and np.abs(qi["q"]).max() <= 128:
                kept = qi["q"].astype(np.int8), qi["scale"].astype(np.float32)   # the graph's own int8 grid
                q, s = kept
            else:
                q, s = quant_rows_s8(w)
            if qi:
                graph_weights["kept" if kept else "requantized"].append(name)
            s = s if mul == 1.0 else (s * np.float32(mul)).astype(np.float32)
            attrs["w_w"], attrs["ws_w"] = P.weight(name + ".w", q), P.weight(name + ".ws", s)
        attrs["bias_w"] = None if bias is None else P.weight(name + ".b", bias.astype(np.float32))
        P.buf(out, "f32", N, "out" if out == "logits" else "arena")
        P.op("matvec", name, [xin["q"], xin["s"]] + ([out] if accumulate else []), [out], layer, **attrs)
        if xin["twice"]:
            if xin["r"] is None:
                a = xin["name"]
                xin["r"] = P.buf(a + ".rq", "s8", xin["n"]), P.buf(a + ".rs", "f32", 1)
                P.op("dequant_sub", a + ".residual", [xin["y"], xin["q"], xin["s"]], [xin["y"]], layer, n=xin["n"])
                P.op("quant", a + ".rquant", [xin["y"]], list(xin["r"]), layer, n=xin["n"])
            rq, rs = xin["r"]
            P.op("matvec", name + ".residual", [rq, rs, out], [out], layer,
                 **{**attrs, "sx": rs, "bias_w": None, "accumulate": 1})

    def norm_op(name, N, x, y, layer, mul=1.0):
        """y = mul * norm(x) (the multiplier folded into the gain and bias)"""
        attrs = dict(n=D, eps=float(N.eps), g_w=P.weight(name + ".g", (N.g * mul).astype(np.float32)))
        if N.kind == "layer":
            b = N.b * mul if N.b is not None else np.zeros(D)
            attrs["b_w"] = P.weight(name + ".b", b.astype(np.float32))
        P.op("rmsnorm" if N.kind == "rms" else "layernorm", name, [x], [y], layer, **attrs)
        return y

    def norm(name, N, x, layer):
        if N is None:                       # the matvecs read the stream itself (OLMo2)
            return act_in(name, x, D, layer, False)
        y = norm_op(name, N, x, P.buf(name + ".y", "f32", D), layer)
        return act_in(name, y, D, layer, activations == "int8x2")

    def head_norm(name, N, v, n_heads, layer):
        n = N.g.size
        attrs = dict(n_heads=n_heads * hs // n, hs=n, eps=float(N.eps), layernorm=int(N.kind == "layer"),
                     g_w=P.weight(name + ".g", N.g.astype(np.float32)),
                     b_w=P.weight(name + ".b", (N.b if N.b is not None else np.zeros(n)).astype(np.float32)))
        P.op("headnorm", name, [v], [v], layer, **attrs)

    def branch_out(name, wname, w, xin, layer, bias, post, mul, fmt, qi):
        """x += mul * post(W . xin + bias): straight into the stream, or through a post-norm."""
        if post is None:
            matvec(wname, w, xin, x, layer, bias, accumulate=1, fmt=fmt, qi=qi, mul=mul)
            return
        o = P.buf(name + ".o", "f32", D)
        matvec(wname, w, xin, o, layer, bias, fmt=fmt, qi=qi)
        y = norm_op(name + "_norm", post, o, P.buf(name + "_norm.y", "f32", D), layer, mul)
        P.op("add", name + ".add", [x, y], [x], layer, n=D)

    x = P.buf("x", "f32", D)
    etq, ets = quant_rows_s8(spec.tok_emb)
    emb_w, emb_s = P.weight("tok_emb.w", etq), P.weight("tok_emb.ws", ets)
    in_s = emb_s if spec.emb_scale == 1.0 else P.weight("tok_emb.in_ws", (ets * np.float32(spec.emb_scale)).astype(np.float32))
    P.op("embed", "tok_emb", [], [x], table_w=emb_w, scale_w=in_s, n=D, src="token", accumulate=0)
    if spec.pos_emb is not None:
        if max_seq > spec.pos_emb.shape[0]:
            raise TslError(f"--max-seq {max_seq} exceeds the model's {spec.pos_emb.shape[0]} learned positions")
        pq, ps = quant_rows_s8(spec.pos_emb[:max_seq])
        P.op("embed", "pos_emb", [x], [x], table_w=P.weight("pos_emb.w", pq),
             scale_w=P.weight("pos_emb.ws", ps), n=D, src="pos", accumulate=1)
    if spec.emb_norm is not None:
        norm_op("emb_norm", spec.emb_norm, x, x, -1)
    tables = {}                             # RoPE frequencies -> table weights (Gemma 3: local and global)

    def rope_w(freqs):
        key = np.asarray(freqs, np.float64).tobytes()
        if key not in tables:
            S, ch, sh, cl, sl = rope_split_tables(freqs, max_seq, spec.rope_mscale)
            t = f"rope{len(tables) or ''}"
            tables[key] = dict(cos_hi_w=P.weight(t + ".cos_hi", ch), sin_hi_w=P.weight(t + ".sin_hi", sh),
                               cos_lo_w=P.weight(t + ".cos_lo", cl), sin_lo_w=P.weight(t + ".sin_lo", sl), step=S,
                               rot=spec.rotary_dim, hs=hs, interleaved=int(spec.rope_interleaved))
        return tables[key]
    first = [f for L in spec.layers if (f := layer_freqs(spec, L, max_seq)) is not None][:1]
    for f in first:                         # the first table ahead of the layers (weight order as before)
        rope_w(f)
    wfmt = int4 if weights == "int4" else "s5nl" if weights == "int5" else "s8"
    kv_layers, rotated = [], []

    def rot_signs_w(n):
        """the weight name of rot_signs(n), added once"""
        return f"rot{n}.signs" if f"rot{n}.signs" in P.weights else P.weight(f"rot{n}.signs", rot_signs(n))
    for li, L in enumerate(spec.layers):
        p = f"l{li}."
        b = L.bias.get
        xin = norm(p + "attn_norm", L.attn_norm, x, li)
        q, k, v = p + "q", p + "k", p + "v"
        qw = L.qw.get
        matvec(p + "wq", L.wq, xin, q, li, b("q"), fmt=wfmt, qi=qw("q"))
        matvec(p + "wk", L.wk, xin, k, li, b("k"), fmt=wfmt, qi=qw("k"))
        matvec(p + "wv", L.wv, xin, v, li, b("v"), fmt=wfmt, qi=qw("v"))
        if L.q_norm is not None:
            head_norm(p + "q_norm", L.q_norm, q, H, li)
        if L.k_norm is not None:
            head_norm(p + "k_norm", L.k_norm, k, Hk, li)
        freqs = layer_freqs(spec, L, max_seq)
        if freqs is not None:
            P.op("rope", p + "rope_q", [q], [q], li, n_heads=H, **rope_w(freqs))
            P.op("rope", p + "rope_k", [k], [k], li, n_heads=Hk, **rope_w(freqs))
        S = kv_slots(L, max_seq)            # a sliding window keeps only its last S positions: a ring
        kc, ks = P.buf(p + "kcache", "s8", Hk * S * hs, "kv"), P.buf(p + "kscale", "f32", Hk * S, "kv")
        vc, vs = P.buf(p + "vcache", "s8", Hk * S * hs, "kv"), P.buf(p + "vscale", "f32", Hk * S, "kv")
        kv_layers.append(dict(layer=li, slots=S, window=L.window, bytes=2 * (Hk * S * hs + 4 * Hk * S)))
        P.op("kv_store", p + "store_k", [k], [kc, ks], li, n_heads=Hk, hs=hs, max_seq=S)
        P.op("kv_store", p + "store_v", [v], [vc, vs], li, n_heads=Hk, hs=hs, max_seq=S)
        sl = min(threads, H)               # scratch slices: one per thread of tsl_par_attention_s8
        scratch = [P.buf(p + n, t, sz, "scratch") for n, t, sz in
                   (("att.qq", "s8", sl * hs), ("att.sc", "f32", sl * S), ("att.pw", "s32", sl * S),
                    ("att.acc", "s32", H * hs), ("att.ch", "f32", H))]
        scale = spec.attn_scale if L.attn_scale is None else L.attn_scale
        att_attrs = dict(n_heads=H, n_kv=Hk, hs=hs, max_seq=S, slices=sl, scale=float(np.float32(scale)),
                         softcap=float(np.float32(L.softcap)),
                         alibi_w=None if L.alibi is None else P.weight(p + "alibi", L.alibi.astype(np.float32)))
        w_o, nb = L.wo, rot_block(H * hs)
        if li in rotate_att and nb and not qw("o"):     # float output, rotated, then one int8 scale
            att_f = P.buf(p + "att.f", "f32", H * hs)
            P.op("attention_f32", p + "attn", [q, kc, ks, vc, vs], [att_f] + scratch, li, **att_attrs)
            signs = rot_signs_w(H * hs)
            P.op("fwht", p + "att.fwht", [att_f], [att_f], li, n=H * hs, block=nb, signs_w=signs)
            rotated.append(dict(layer=li, site="att", block=nb))
            w_o = L.wo if p + "wo" in prequant else rotate_cols(L.wo, nb, P.weights[signs])
            att_in = act_in(p + "att", att_f, H * hs, li, False)
        else:                                     # int8 output straight from the heads' accumulators
            att, att_s = P.buf(p + "att", "s8", H * hs), P.buf(p + "att.s", "f32", 1)
            P.op("attention", p + "attn", [q, kc, ks, vc, vs], [att, att_s] + scratch, li, **att_attrs)
            att_in = dict(q=att, s=att_s, twice=False)
        if spec.parallel:       # the MLP reads the block input: normalize it before wo adds to x
            hin = norm(p + "ffn_norm", L.ffn_norm, x, li)
        branch_out(p + "attn_out", p + "wo", w_o, att_in, li, b("o"),
                   L.post_attn_norm, L.attn_mul, wfmt, qw("o"))
        if not spec.parallel:
            hin = norm(p + "ffn_norm", L.ffn_norm, x, li)
        up, mid = p + "up", p + "mid"
        matvec(p + "w_up", L.w_up, hin, up, li, b("up"), fmt=wfmt, qi=qw("up"))
        P.buf(mid, "f32", F)
        if L.w_gate is not None:
            gate = p + "gate"
            matvec(p + "w_gate", L.w_gate, hin, gate, li, b("gate"), fmt=wfmt, qi=qw("gate"))
            P.op("glu", p + "glu", [gate, up], [mid], li, n=F, act=ACTS[spec.act])
        else:
            P.op("act", p + "act", [up], [mid], li, n=F, act=ACTS[spec.act])
        # The MLP product is the one activation with heavy tails: with rotate, a randomized Hadamard
        # rotation spreads them over its blocks before the int8 quantizer; with mlp_residual its int8
        # rounding error is quantized again and sent through the same weights (about 16 bits).
        w_down = L.w_down
        if rotate and rot_block(F) and not qw("down"):        # the graph's int8 w_down is honoured as it is
            nb = rot_block(F)
            signs = rot_signs_w(F)
            P.op("fwht", p + "mid.fwht", [mid], [mid], li, n=F, block=nb, signs_w=signs)
            rotated.append(dict(layer=li, site="mid", block=nb))
            if p + "w_down" not in prequant:
                w_down = rotate_cols(w_down, nb, P.weights[signs])
        branch_out(p + "mlp_out", p + "w_down", w_down, act_in(p + "mid", mid, F, li, mlp_residual), li, b("down"),
                   L.post_ffn_norm, L.mlp_mul, wfmt, qw("down"))
    fin = norm("final_norm", spec.final_norm, x, -1)
    matvec("lm_head", spec.tok_emb if spec.tied else spec.lm_head, fin, "logits", -1, spec.lm_head_bias,
           shared=(emb_w, emb_s) if spec.tied else None, mul=spec.logit_scale)
    if spec.logit_softcap:
        P.op("softcap", "logit_softcap", ["logits"], ["logits"], -1, n=V, cap=float(np.float32(spec.logit_softcap)))
    P.meta = dict(graph_weights={k: len(v) for k, v in graph_weights.items()},
                  family=spec.family, vocab=V, dim=D, n_layers=spec.n_layers, n_heads=H,
                  n_kv_heads=Hk, head_dim=hs, hidden=F, max_seq=max_seq, weights=weights, activations=activations,
                  act=spec.act, pos=spec.pos, n_params=spec.n_params(), kv_layers=kv_layers,
                  rotate=dict(seed=ROT_SEED, sites=rotated) if rotated else None, int4_group=GROUP,
                  int4_grid="nl" if any(o.attrs.get("fmt") in ("s4nl", "s5nl") for o in P.ops) else None, weight_layout="row-major [N][K]; int4: two per byte, even k low nibble")
    return P
