"""The int4 grid, uniform or non-linear: a numpy simulation of calibrated int4 builds (issue 13).

    python benchmarks/int4_grid.py [--tokens 4096]

tinyslm's int4 codes are the uniform levels -8..7 times a signed int8 group scale (32 k) and a row
scale. A non-linear grid (llama.cpp's IQ4_NL) keeps the bytes and the scales, and reads each nibble
as one of 16 int8 levels: here llama.cpp's table, or that table refitted per tensor by weighted
least squares on the codes GPTQ chose (KV_ROUNDS refits, each tensor keeping its round of least
loss). Every row is the same calibration (GPTQ with the scale refit, smoothing, both rotations) and
kld_sim on the first --tokens held-out tokens of the example; only the grid GPTQ rounds to changes.
A simulation, not a build: no kernel reads the non-linear grid yet. Its accumulator bound differs:
|level| <= 127 instead of 8, so the int32 row sum needs sum_k |gs * level| * 128 < 2^31 per row,
which rows of K >~ 1024 meet only with a larger row scale (a kernel would check it per row).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tinyslm import calibrate as C  # noqa: E402
from tinyslm import fit, frontend  # noqa: E402
from tinyslm.evaluate import text_chunks  # noqa: E402
from tinyslm.tokenizer import Tokenizer  # noqa: E402

IQ4_NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float64)
KV_ROUNDS = 3
RATIOS = np.linspace(0.7, 1.1, 13)     # clipping ratios of the group scale search


def _nearest(v, kv):
    return kv[np.searchsorted((kv[1:] + kv[:-1]) / 2, v)]


def _search(kv):
    """-> search(cols [N, 32], ws [N]) -> each group's signed int8-valued scale [N] of least squared
    error on grid kv (quantize.s4_search's, with the group's extreme at either end of kv)"""
    def search(cols, ws):
        ext = np.take_along_axis(cols, np.abs(cols).argmax(1)[:, None], 1)[:, 0]
        best = None
        for top in (kv[0], kv[-1]):
            for r in RATIOS:
                g = np.clip(np.round(ext / top * r / ws), -127, 127)
                g = np.where(g == 0, 1, g)
                err = ((_nearest(cols / (g * ws)[:, None], kv) * (g * ws)[:, None] - cols) ** 2).sum(1)
                best = (g, err) if best is None else (np.where(err < best[1], g, best[0]), np.minimum(err, best[1]))
        return best[0]
    return search


def gptq_grid(w, factor, kv, learn, group=32):
    """calibrate.gptq's int4 (calibrate.gptq_groups) on grid kv; learn: refit kv itself KV_ROUNDS
    times, keeping the round of least loss -> dequantized float64 weights [N, K]"""
    U, _, dead = factor
    W = np.array(w, np.float64)
    W[:, dead] = 0.0
    ws = np.abs(W).max(1) / 127.0 / 127.0
    ws = np.where(ws > 0, ws, 1.0).astype(np.float32).astype(np.float64)
    d = 1.0 / np.diag(U) ** 2
    best = None
    for _ in range(KV_ROUNDS + 1 if learn else 1):
        Q, T, loss, gs = C.gptq_groups(W, U, ws, _search(kv), lambda v, kv=kv: _nearest(v, kv), group)
        s = np.repeat(gs, group, 1) * ws[:, None]
        if best is None or loss.sum() < best[0]:
            best = (loss.sum(), Q * s)
        fit_kv = kv.copy()
        for c, level in enumerate(kv):                    # weighted least squares per level: sum d (t - l s)^2
            m = Q == level
            den = (d * s * s * m).sum()
            fit_kv[c] = (d * T * s * m).sum() / den if den > 0 else level
        kv = np.sort(np.round(fit_kv * 127 / np.abs(fit_kv).max()))
    return best[1]


def run(spec, cal, held, refs, formats, grid):
    """-> (mean KLD, seconds) of one calibrated build simulated with int4 grid uniform | nl | nl learned"""
    gptq, dequant = C.gptq, C.dequant
    if grid != "uniform":
        C.gptq = lambda w, factor, fmt, group=32: gptq(w, factor, fmt, group) if fmt == "s8" else \
            ("grid", gptq_grid(w, factor, IQ4_NL.copy(), grid == "nl learned", group))
        C.dequant = lambda qw: qw[1] if isinstance(qw[0], str) else dequant(qw)
    try:
        t = time.time()
        spec2, quant, att = C.calibrate(spec, cal, formats, rotate=True, rotate_att=True)
        return C.kld_sim(spec, spec2, held, formats, prequant=quant, refs=refs, rotate=True, rotate_att=att), time.time() - t
    finally:
        C.gptq, C.dequant = gptq, dequant


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=4096, help="held-out tokens (default 4096)")
    a = ap.parse_args()
    model = ROOT / "examples" / "tiny_llama.onnx"
    spec = frontend.frontend(str(model))
    tok = Tokenizer.from_file(str(ROOT / "examples" / "tokenizer.json"))
    held = text_chunks(tok.encode((ROOT / "examples" / "data" / "heldout.txt").read_text())[:a.tokens], 256, tok.bos_id)
    cal = C.load_chunks(None, str(model), tok, 256)
    refs = C.float_logprobs(spec, held)
    builds = [("int4", C.formats_for(spec, "int4"))] + \
        [(f"mixed at {b} B/w", fit.mixed(spec, cal, 256, True, b)) for b in (0.62, fit.MIXED_BPW)]
    print(f"{model.name}: calibrated int4 builds simulated in numpy, mean KLD on {sum(map(len, held))} held-out positions\n")
    print("| build | grid | mean KLD | vs uniform | calibration + simulation |\n|---|---|---|---|---|")
    for name, formats in builds:
        base = None
        for grid in ("uniform", "nl", "nl learned"):
            kld, sec = run(spec, cal, held, refs, formats, grid)
            base = base or kld
            print(f"| {name} | {grid} | {kld:.6f} | {kld / base:.3f}x | {sec:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
