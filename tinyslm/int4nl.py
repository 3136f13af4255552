"""The non-linear grids: int4 (--int4 nl, format s4nl), each nibble indexes one of 16 int8 levels of
its tensor; int5 (--weights int5, and a tier of --weights mixed: format s5nl), 5-bit codes into 32.

A weight [N, K] in s4nl: codes uint8 [N, K/2] (unsigned nibbles, even k in the low nibble), levels
int8 [16] (ascending, max |level| = 127), group scales int8 [N, K/32] (signed, nonzero, as s4's) and
a row scale float32 [N]: w[n, k] = levels[code] * gs[n, k / 32] * ws[n]. 16 bytes per tensor more
than s4, the same kernels' layout (firmware/tsl_matvec_s4nl.c).
Levels start from llama.cpp's IQ4_NL table and are refitted per tensor (KV_ROUNDS times, by least
squares on the codes chosen, each tensor keeping its round of least loss).
A weight in s5nl: codes uint8 [N, 5K/8], per group of 32 k 20 bytes: 16 of low nibbles as s4nl's
(k = 2j low, 2j + 1 high), then the 32 fifth bits as a little-endian uint32 (bit k); levels int8
[32]; group scales and row scale as s4nl (firmware/tsl_matvec_s5nl.c). 5/8 + 1/32 bytes per weight.
Accumulator: |level * x| <= 127 * 128, so the int32 row sum needs K * max|gs| * 127 * 128 < 2^31:
the group scales stay within gmax(K) (127 up to K = 1032; K = 8192: 16), the row scale grows instead.
"""
import numpy as np

from .errors import TslError

GROUP = 32
IQ4_NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float64)
# s5nl's starting levels: IQ4_NL's and the midpoints between them, and 127
IQ5_NL = np.sort(np.concatenate([IQ4_NL, np.round((IQ4_NL[1:] + IQ4_NL[:-1]) / 2), [127.0]]))
LEVELS = {"s4nl": IQ4_NL, "s5nl": IQ5_NL}
KV_ROUNDS = 3
RATIOS = np.linspace(0.7, 1.1, 13)     # clipping ratios of the group scale search


def gmax(K):
    """the largest |group scale| whose int32 row sums cannot overflow at K (0: none can)"""
    return min(127, (2 ** 31 - 1) // (max(K, 1) * 127 * 128))


def check(K, where):
    if K % GROUP:
        raise TslError(f"{where}: int4 needs K divisible by {GROUP}, K = {K}; use --weights int8")
    if gmax(K) < 1:
        raise TslError(f"{where}: K = {K} overflows the int4 accumulator; use --weights int8")


def row_scales(W, K):
    """w [N, K] -> float64 row scales (float32 values): amax maps to 127 * gmax(K)"""
    amax = np.abs(W).max(1)
    return np.where(amax > 0, amax / 127.0 / gmax(K), 1.0).astype(np.float32).astype(np.float64)


def nearest(v, kv):
    """v -> the nearest level of ascending kv (the rounding of the grid)"""
    return kv[np.searchsorted((kv[1:] + kv[:-1]) / 2, v)]


def searcher(kv, gm):
    """-> search(cols [N, 32], ws [N]) -> each group's signed int8-valued scale [N], |gs| in [1, gm],
    of least squared error on grid kv (the group's extreme at either end of kv, RATIOS clipping)"""
    def search(cols, ws):
        ext = np.take_along_axis(cols, np.abs(cols).argmax(1)[:, None], 1)[:, 0]
        best = None
        for top in (kv[0], kv[-1]):
            for r in RATIOS:
                g = np.clip(np.round(ext / top * r / ws), -gm, gm)
                g = np.where(g == 0, 1, g)
                f = (g * ws)[:, None]
                err = ((nearest(cols / f, kv) * f - cols) ** 2).sum(1)
                best = (g, err) if best is None else (np.where(err < best[1], g, best[0]), np.minimum(err, best[1]))
        return best[0]
    return search


def refit(kv, Q, T, s, d):
    """levels of least sum_k d_k (T - level(Q) s)^2 for the codes chosen (Q: grid values [N, K], T the
    values they rounded, s the steps [N, K], d [K] column weights), rescaled to max |level| = 127"""
    fit_kv = kv.copy()
    for c, level in enumerate(kv):
        m = Q == level
        den = (d * s * s * m).sum()
        fit_kv[c] = (d * T * s * m).sum() / den if den > 0 else level
    return np.sort(np.round(fit_kv * 127 / np.abs(fit_kv).max()))


def pack(Q, kv, gs, ws):
    """grid values Q [N, K] (levels of kv: 16 or 32) -> (codes uint8 [N, K/2] or [N, 5K/8], levels int8
    [16 | 32], gs int8, ws float32)"""
    c = np.searchsorted(kv, Q).astype(np.uint8)
    nib = (c[:, 0::2] & 15) | ((c[:, 1::2] & 15) << 4)
    if len(kv) == 32:
        N, K = c.shape
        hb = np.packbits((c >> 4).reshape(N, K // GROUP, GROUP), axis=2, bitorder="little")    # [N, G, 4]
        nib = np.concatenate([nib.reshape(N, K // GROUP, GROUP // 2), hb], 2).reshape(N, -1)
    return nib.astype(np.uint8), kv.astype(np.int8), gs.astype(np.int8), ws.astype(np.float32)


def codes(p, nlev):
    """packed codes [N, K/2] (16 levels) or [N, 5K/8] (32) -> int64 codes [N, K]"""
    N = p.shape[0]
    if nlev == 32:
        g = p.reshape(N, -1, 20)
        nib, hb = g[:, :, :16].reshape(N, -1), np.unpackbits(g[:, :, 16:], axis=2, bitorder="little").reshape(N, -1)
    else:
        nib, hb = p, None
    c = np.empty((N, 2 * nib.shape[1]), np.int64)
    c[:, 0::2], c[:, 1::2] = nib & 15, nib >> 4
    return c if hb is None else c | (hb.astype(np.int64) << 4)


def dequant(qw):
    """(codes, levels, gs, ws) -> float64 [N, K]"""
    p, kv, gs, ws = qw
    c = codes(p, len(kv))
    return kv.astype(np.float64)[c] * np.repeat(gs.astype(np.float64), GROUP, 1) * ws.astype(np.float64)[:, None]


def quant_rows(w, where, fmt="s4nl"):
    """w [N, K] -> s4nl (or s5nl) weights rounded to nearest (no calibration): per round each group's scale by
    searcher, codes to the nearest level, then the levels refitted (d = 1); the round of least
    squared error is kept."""
    N, K = w.shape
    check(K, where)
    W = np.asarray(w, np.float64)
    ws = row_scales(W, K)
    kv, best = LEVELS[fmt].copy(), None
    cols = W.reshape(-1, GROUP)
    wsg = np.repeat(ws, K // GROUP)
    for _ in range(KV_ROUNDS + 1):
        gs = searcher(kv, gmax(K))(cols, wsg).reshape(N, -1) if K else np.zeros((N, 0))
        s = np.repeat(gs, GROUP, 1) * ws[:, None]
        Q = nearest(np.divide(W, s, out=np.zeros_like(W), where=s != 0), kv)
        err = ((Q * s - W) ** 2).sum()
        if best is None or err < best[0]:
            best = (err, pack(Q, kv, gs, ws))
        if not K:
            break
        kv = refit(kv, Q, W, s, np.ones(K))
    return best[1]
