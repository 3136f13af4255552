"""Where the int8 logit error of a model comes from: a numpy simulation with quantize-dequantize
at each point tinyslm quantizes, one scheme per row, against onnxruntime's float logits.

    python benchmarks/quant_error.py [model.onnx] [--tokens 8000]

Rows switch weight and activation precision independently, so the table says which of them sets
the floor of the logit cosine (issue 2's bar is 0.999 at every position) and of the mean KLD from
the float model (issue 13's metric). The simulation is float64
with round-to-nearest quantizers; the compiled build (`tinyslm eval`) lands near the "tinyslm" row.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyslm import frontend  # noqa: E402
from tinyslm.evaluate import cosine, log_softmax, onnx_logits, text_chunks  # noqa: E402
from tinyslm.model import forward  # noqa: E402


def q_rows(bits, group=None):
    """Symmetric quantize-dequantize along the last axis, max-scaled, per row or per group."""
    m = 2 ** (bits - 1) - 1

    def f(x):
        shp = x.shape
        g = x.reshape(*shp[:-1], -1, group or shp[-1])
        s = np.abs(g).max(-1, keepdims=True) / m
        s = np.where(s == 0, 1, s)
        return (np.round(g / s) * s).reshape(shp)
    return f


def identity(x):
    return x


SCHEMES = [   # name, weights, matvec inputs, q/k/v per head, MLP product
    ("float32 everywhere", identity, identity, identity, identity),
    ("int8 weights per channel, float activations", q_rows(8), identity, identity, identity),
    ("int8 weights in groups of 32, float activations", q_rows(8, 32), identity, identity, identity),
    ("int8 weights in groups of 32, int16 activations, int16 K/V", q_rows(8, 32), q_rows(16), q_rows(16), q_rows(16)),
    ("int8 weights, int16 activations, int16 K/V", q_rows(8), q_rows(16), q_rows(16), q_rows(16)),
    ("int8 weights, int16 activations, int8 K/V", q_rows(8), q_rows(16), q_rows(8), q_rows(16)),
    ("tinyslm int8: int8 activations and K/V, MLP product 16-bit", q_rows(8), q_rows(8), q_rows(8), q_rows(16)),
    ("all int8, MLP product 8-bit too", q_rows(8), q_rows(8), q_rows(8), q_rows(8)),
    ("int8 matvec inputs only (norm outputs, attention output)", identity, q_rows(8), identity, identity),
    ("int8 K/V (and q) only", identity, identity, q_rows(8), identity),
    ("int8 MLP product only", identity, identity, identity, q_rows(8)),
]


def main():
    import onnxruntime as ort

    from tinyslm.tokenizer import Tokenizer
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default=str(ROOT / "examples" / "tiny_llama.onnx"))
    ap.add_argument("--tokenizer", default=str(ROOT / "examples" / "tokenizer.json"))
    ap.add_argument("--text", default=str(ROOT / "examples" / "data" / "heldout.txt"))
    ap.add_argument("--tokens", type=int, default=8000)
    ap.add_argument("--max-seq", type=int, default=256)
    a = ap.parse_args()
    spec = frontend.frontend(a.model)
    tok = Tokenizer.from_file(a.tokenizer)
    chunks = text_chunks(tok.encode(Path(a.text).read_text())[:a.tokens], a.max_seq, tok.bos_id)
    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    refs = [onnx_logits(sess, a.model, c) for c in chunks]
    n = sum(len(c) for c in chunks)
    print(f"{a.model}: logit cosine against onnxruntime at {n} positions ({len(chunks)} chunks)\n")
    print(f"{'scheme':<60} {'median':>9} {'>= 0.999':>9} {'below':>6} {'minimum':>8} {'mean KLD':>9}")
    for name, W, A, KV, MID in SCHEMES:
        outs = [forward(spec, ids, (W, A, KV, MID)) for ids in chunks]
        c = np.concatenate([cosine(o, r) for o, r in zip(outs, refs)])
        k = np.concatenate([(np.exp(lr) * (lr - log_softmax(o))).sum(1)
                            for o, lr in zip(outs, (log_softmax(r) for r in refs))])
        print(f"{name:<60} {np.median(c):9.6f} {100 * (c >= 0.999).mean():8.2f}% {(c < 0.999).sum():6d} {c.min():8.5f} "
              f"{max(k.mean(), 0):9.6f}")


if __name__ == "__main__":
    main()
