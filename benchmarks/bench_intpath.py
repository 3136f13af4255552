"""The integer-only decode step (lower_int.py) against the float one: quality and instructions.

    python benchmarks/bench_intpath.py [--tokens N] [board ...]   (default: esp32c3 mps2-an385 mps2-an386)

1. Quality: the bundled example, float and integer host builds (max_seq 128, int8 weights), run
   teacher-forced over examples/data/heldout.txt (chunks of 128 from BOS); mean / p99 / max of
   KL(onnxruntime float32 || build) per position, and top-1 agreement with onnxruntime.
2. Instructions per token: both builds' decode step 32 times under qemu -icount shift=0 on each
   board (bench_tokens.measure: counter calibrated to instructions in the same run). The board's
   clock / instructions is an upper bound on tokens per second (one instruction per cycle, no
   memory stalls), not a measured rate.
3. Where the integer step's instructions go (bench_tokens.split, the TCG plugin of benchmarks/tcg),
   with the integer kernels named into the same parts; soft-float is what remains of libgcc's
   float routines (none in the model path: tests/test_intpath.py checks the call graph).
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "tcg"))

import re  # noqa: E402

import bench_tokens  # noqa: E402
import tcgcount  # noqa: E402
from bench_tokens import STEPS, measure  # noqa: E402
from tinyslm.boards import load_board  # noqa: E402
from tinyslm.errors import TslError  # noqa: E402
from tinyslm.pipeline import compile_model  # noqa: E402

EXAMPLE = ROOT / "examples" / "tiny_llama.onnx"
INT_PARTS = [("epilogue", r"tsl_imatvec|tsl_epilogue"), ("quantize", r"tsl_iquant|tsl_idequant|tsl_ikv_store"),
             ("norms", r"tsl_i(head)?norm|tsl_isqrt"), ("attention+softmax", r"tsl_iattention|tsl_iexp"),
             ("activations", r"tsl_iact|tsl_iglu|tsl_igate|tsl_gate_q15|tsl_isoftcap"), ("RoPE", r"tsl_irope"),
             ("logits", r"tsl_ito_f32")]
TEXT = ROOT / "examples" / "data" / "heldout.txt"


def kld_table(builds, max_tokens):
    import onnxruntime as ort

    from tinyslm.evaluate import host_logits, log_softmax, onnx_logits, text_chunks
    from tinyslm.hostsim import HostModel
    from tinyslm.tokenizer import Tokenizer
    tok = Tokenizer.from_file(EXAMPLE.with_name("tokenizer.json"))
    chunks = text_chunks(tok.encode(TEXT.read_text())[:max_tokens], 128, tok.bos_id)
    sess = ort.InferenceSession(str(EXAMPLE), providers=["CPUExecutionProvider"])
    hosts = {k: HostModel(b) for k, b in builds.items()}
    kld, top1 = {k: [] for k in hosts}, {k: 0 for k in hosts}
    for ids in chunks:
        ref = onnx_logits(sess, EXAMPLE, ids)
        ref_lp = log_softmax(ref)
        for k, h in hosts.items():
            lg = host_logits(h, ids)
            kld[k].append(np.maximum((np.exp(ref_lp) * (ref_lp - log_softmax(lg))).sum(1), 0))
            top1[k] += int((lg.argmax(1) == ref.argmax(1)).sum())
    n = sum(len(c) for c in chunks)
    print(f"quality: {TEXT.name}, {n} positions in {len(chunks)} chunks of <= 128, KL(onnxruntime || build)")
    print(f"  {'build':<10}{'mean KLD':>11}{'p99 KLD':>10}{'max KLD':>10}{'same top-1':>12}")
    res = {}
    for k in hosts:
        v = np.concatenate(kld[k])
        res[k] = float(v.mean())
        print(f"  {k:<10}{v.mean():11.6f}{np.percentile(v, 99):10.5f}{v.max():10.4f}{100 * top1[k] / n:11.2f}%")
    print(f"  integer / float mean KLD: {res['int'] / res['float']:.2f}x (goal: at most 1.5x)\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1 << 20, help="held-out tokens for the KLD (default: all)")
    ap.add_argument("boards", nargs="*", default=["esp32c3", "mps2-an385", "mps2-an386"])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        builds = {}
        for num in ("float", "int"):
            builds[num] = Path(td) / f"ex-{num}"
            compile_model(EXAMPLE, builds[num], "host", 128, "int8", quiet=True, numerics=num)
        kld_table(builds, a.tokens)
        print(f"instructions per token, bundled example (int8), positions 0..{STEPS - 1}, qemu -icount shift=0")
        hdr = f"  {'board':<14}{'float':>12}{'int':>12}{'int/float':>10}{'clock MHz':>11}{'tok/s bound (int)':>19}"
        print(hdr)
        for name in a.boards:
            B = load_board(name)
            try:
                n = {k: measure(B, b, Path(td) / f"{name}-{k}", False)[0] for k, b in builds.items()}
            except TslError as e:
                print(f"  {name:<14}skipped: {str(e).splitlines()[0][:70]}")
                continue
            print(f"  {name:<14}{n['float']:>12,.0f}{n['int']:>12,.0f}{n['int'] / n['float']:>9.2f}x"
                  f"{B.clock_hz / 1e6:>11.0f}{B.clock_hz / n['int']:>19.1f}")
        print("\ntok/s bound = board clock / instructions per token: an upper bound (1 instruction per cycle).")
        so = tcgcount.build_plugin(td)
        print("\nthe integer step's instructions per token by part (TCG plugin, own instructions per function)")
        for name in a.boards:
            try:
                _, _, funcs = bench_tokens.split(load_board(name), builds["int"], Path(td) / f"{name}-tcg", so)
            except TslError as e:
                print(f"  {name:<14}no split: {str(e).splitlines()[0][:70]}")
                continue
            parts = {}
            for f, v in funcs.items():
                part = next((p for p, pat in INT_PARTS if re.match(pat, f)), None) or bench_tokens.part_of(f)
                parts[part] = parts.get(part, 0) + v
            tot = sum(parts.values())
            print(f"  {name:<14}{tot:>12,.0f}  " + ", ".join(f"{p} {100 * v / tot:.1f}%" for p, v in
                                                            sorted(parts.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
