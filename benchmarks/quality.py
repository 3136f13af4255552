"""Issue 13's table in one run: quality per byte of tinyslm's formats (and llama.cpp's, when built)
on the bundled example, measured the way llama.cpp's `perplexity --kl-divergence` measures.

    python benchmarks/quality.py [--tokens 20000] [--llamacpp build/llamacpp]

Table 1 (every position): the first --tokens held-out tokens in chunks of BOS + 255, teacher-forced;
KLD from the float model run by onnxruntime, per position; tinyslm's host builds (bit-exact with the
reference and the boards). Calibration reads the example's training text, never the held-out text.
Table 2 (llama.cpp's protocol, only with a llama.cpp build from benchmarks/build_llamacpp.sh): the
float model's log-probabilities written as a --kl-divergence-base file (same chunks), scored by
llama-perplexity for llama.cpp's GGUF quantizations and by `tinyslm eval --against` for tinyslm;
both score the second half of each chunk. Without a build, llama.cpp's rows are the figures stored
in issue 13 (measured there on every position), marked "stored".
"""
import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import llamacpp_gguf  # noqa: E402
from tinyslm.errors import TslError  # noqa: E402
from tinyslm.evaluate import (evaluate_against_llamacpp, host_logits, log_softmax, next_token_nll,  # noqa: E402
                              onnx_logits, text_chunks, write_llamacpp_base)

EXAMPLE = ROOT / "examples" / "tiny_llama.onnx"
STORED = [   # issue 13, llama.cpp from the llama-cpp-python sdist, every position of BOS + 255 chunks
    ("llama.cpp Q8_0 (stored)", 1.067, 10.9312, 0.000240, 0.00163, 0.9872),
    ("llama.cpp Q4_0 (stored)", 0.608, 11.0469, 0.01574, 0.1245, 0.9097),
    ("llama.cpp Q4_K_M (stored)", 0.773, 10.9579, 0.00334, 0.0272, 0.9586),
]
VARIANTS = [   # row, compile options. rotate (Hadamard rotations before int8): auto (not given) rotates the attention
               # output always and the MLP product with 1 pass, True both, False neither ("not rotated");
               # passes: 2 for int8 and mixed, 1 for int4
    ("tinyslm int8, MLP 2 passes", dict(weights="int8")),
    ("tinyslm int8, MLP 1 pass, not rotated", dict(weights="int8", mlp_residual=False, rotate=False)),
    ("tinyslm int8, MLP 1 pass, rotated", dict(weights="int8", mlp_residual=False, rotate=True)),
    ("tinyslm int8, MLP 2 passes, rotated", dict(weights="int8", rotate=True)),
    ("tinyslm int8, MLP 2 passes, calibrated", dict(weights="int8", calibrate="default")),
    ("tinyslm int8, MLP 2 passes, calibrated, not rotated", dict(weights="int8", calibrate="default", rotate=False)),
    ("tinyslm int8, MLP 1 pass, calibrated, not rotated", dict(weights="int8", calibrate="default", mlp_residual=False,
                                                               rotate=False)),
    ("tinyslm int8, MLP 1 pass, rotated, calibrated", dict(weights="int8", calibrate="default", mlp_residual=False,
                                                            rotate=True)),
    ("tinyslm int8, MLP 2 passes, rotated, calibrated", dict(weights="int8", calibrate="default", rotate=True)),
    ("tinyslm int4 (MLP 1 pass, rotated: int4's default)", dict(weights="int4")),
    ("tinyslm int4, MLP 2 passes", dict(weights="int4", mlp_residual=True)),
    ("tinyslm int4, calibrated", dict(weights="int4", calibrate="default")),
    ("tinyslm int4, calibrated, not rotated", dict(weights="int4", calibrate="default", rotate=False)),
    ("tinyslm int4, MLP 2 passes, calibrated", dict(weights="int4", calibrate="default", mlp_residual=True)),
    ("tinyslm int4 size: mixed at 0.62 B/w, calibrated", dict(weights="mixed", calibrate="default",
                                                              bytes_per_weight=0.62)),
    ("tinyslm mixed, calibrated", dict(weights="mixed", calibrate="default")),
    ("tinyslm mixed, rotated, calibrated", dict(weights="mixed", calibrate="default", rotate=True)),
    ("tinyslm int4, calibrated, non-linear grid", dict(weights="int4", calibrate="default", int4="nl")),
    ("tinyslm int4 size: mixed at 0.62 B/w, calibrated, non-linear grid",
     dict(weights="mixed", calibrate="default", bytes_per_weight=0.62, int4="nl")),
    ("tinyslm mixed, calibrated, non-linear grid", dict(weights="mixed", calibrate="default", int4="nl")),
    ("tinyslm int5, calibrated", dict(weights="int5", calibrate="default")),
    ("tinyslm mixed with int5, calibrated, non-linear grid", dict(weights="mixed", calibrate="default", int4="nl",
                                                                  int5=True)),
    ("tinyslm int4 size: mixed at 0.62 B/w with int5, calibrated, non-linear grid",
     dict(weights="mixed", calibrate="default", bytes_per_weight=0.62, int4="nl", int5=True)),
]
QUANTS = ["Q8_0", "Q4_0", "Q4_K_M"]     # llama-quantize types, default (no importance matrix)
GOALS = {"int8": (0.00012, 1.07), "int4": (0.0079, 0.62), "mixed": (0.0033, 0.70)}


def build(tmp, name, opts):
    from tinyslm.pipeline import compile_model
    out = Path(tmp) / re.sub(r"\W+", "_", name)
    compile_model(EXAMPLE, out, "host", 256, tokenizer=EXAMPLE.with_name("tokenizer.json"), quiet=True, **opts)
    return out


def score(out, chunks, refs):
    """-> row dict of one tinyslm build on all positions of the chunks, against onnxruntime's log-probs."""
    from tinyslm.hostsim import HostModel
    from tinyslm.pipeline import load_build
    man, prog = load_build(out)
    host = HostModel(out, man, 1)
    r = metrics([host_logits(host, ids) for ids in chunks], chunks, refs)
    macs = sum(o.attrs["N"] * o.attrs["K"] for o in prog.ops if o.kind == "matvec")
    return dict(r, bpw=man["weights"]["bytes"] / man["model"]["n_params"], macs=macs)


def metrics(logits, chunks, refs):
    """perplexity, KLD from refs (mean, p99) and same top-1 over every position of the chunks."""
    nll, top, kld, n = 0.0, 0, [], 0
    for lg, ids, ref in zip(logits, chunks, refs):
        lp = log_softmax(lg)
        nll += next_token_nll(lp, ids)
        kld.append((np.exp(ref) * (ref - lp)).sum(1))
        top += int((lp.argmax(1) == ref.argmax(1)).sum())
        n += len(ids) - 1
    k = np.maximum(np.concatenate(kld), 0)
    return dict(ppl=math.exp(nll / n), kld=k.mean(), p99=np.percentile(k, 99), top1=top / len(k))


def print_table(title, rows, own_macs):
    print(f"\n{title}\n")
    print("| format | bytes/weight | MACs vs model | perplexity | mean KLD | p99 KLD | same top-1 |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        mac = f"{100 * (r['macs'] / own_macs - 1):+.0f} %" if r.get("macs") else ""
        print(f"| {name} | {r['bpw']:.3f} | {mac} | {r['ppl']:.4f} | {r['kld']:.6f} | {r['p99']:.5f} | "
              f"{100 * r['top1']:.2f} % |")


def goals(rows, own_macs):
    print("\nGoals (issue 13):")
    for key, (kld, bpw) in GOALS.items():
        cand = [(n, r) for n, r in rows if n.startswith(f"tinyslm {key}") and "calibrated" in n
                and (key != "int8" or r["macs"] <= 1.05 * own_macs)]
        for n, r in cand:
            ok = r["kld"] <= kld and r["bpw"] <= bpw
            print(f"  {key}: mean KLD <= {kld} at <= {bpw} B/w" + (" and <= +5 % MACs" if key == "int8" else "")
                  + f": {'met' if ok else 'NOT met'} by {n} ({r['kld']:.6f} at {r['bpw']:.3f} B/w)")


# ------------------------------------------------------------------ llama.cpp side

def llamacpp_ggufs(llama, spec, tmp):
    """-> (host bin folder, {F32, Q8_0, Q4_0, Q4_K_M: GGUF path}) of the example."""
    bindir, conv = llamacpp_gguf.find(llama)
    if not (bindir / "llamacpp_decode").is_file() or not (bindir / "llama-perplexity").is_file():
        raise TslError(f"{llama}: llamacpp_decode or llama-perplexity missing (sh benchmarks/build_llamacpp.sh {llama})")
    hf = llamacpp_gguf.hf_checkpoint(spec, Path(tmp) / "example")
    return bindir, llamacpp_gguf.to_gguf(conv, bindir, hf, tmp, QUANTS)


def llamacpp_every_position(bindir, ggufs, chunks, refs, tmp, n_params):
    """-> rows of llama.cpp's formats on every position, scored like tinyslm's (metrics): each
    chunk's logits from one batch of llamacpp_decode."""
    S, V = len(chunks[0]), refs[0].shape[1]
    ids = Path(tmp) / "chunks.i32"
    # a short last chunk is padded: causal attention keeps the padding out of the positions before it
    np.asarray([c + [0] * (S - len(c)) for c in chunks], "<i4").tofile(ids)
    rows = []
    for q, g in ggufs.items():
        lg = Path(tmp) / f"{q}.f32"
        r = subprocess.run([str(bindir / "llamacpp_decode"), str(g), str(S), str(ids), str(lg)],
                           capture_output=True, text=True)
        if r.returncode:
            raise TslError(f"llamacpp_decode {q} failed: {r.stderr.strip()[-400:]}")
        lgs = np.fromfile(lg, "<f4").reshape(len(chunks), S, V)
        rows.append((f"llama.cpp {q}", dict(metrics([x[:len(c)] for x, c in zip(lgs, chunks)], chunks, refs),
                                            bpw=llamacpp_gguf.weight_bytes(g) / n_params)))
        lg.unlink()
    return rows


def llamacpp_protocol(bindir, ggufs, chunks, raw, tmp, n_params):
    """-> rows measured by llama-perplexity --kl-divergence against the float model's log-probs
    (second halves of the chunks), and the path of the base file."""
    S = len(chunks[0])
    full = [c for c in chunks if len(c) == S]
    base = Path(tmp) / "float.kld"
    write_llamacpp_base(base, S, full, np.stack(raw[:len(full)]))
    rows = []
    for q, g in ggufs.items():
        # llama.cpp's logger thread may lose the last lines at exit (its common_log_main leaks the
        # logger unflushed): run again until the statistics are there
        for _ in range(4):
            r = subprocess.run([str(bindir / "llama-perplexity"), "-m", str(g), "--kl-divergence-base", str(base),
                                "--kl-divergence", "-c", str(S), "-b", str(S), "-t", "2"], capture_output=True,
                               text=True)
            txt = r.stdout + r.stderr
            if r.returncode:
                raise TslError(f"llama-perplexity {q} failed: {txt.strip()[-400:]}")
            if "Same top p:" in txt:
                break
        else:
            raise TslError(f"llama-perplexity {q}: four runs ended without their statistics")

        def num(pat):
            return float(re.search(pat, txt).group(1))
        rows.append((f"llama.cpp {q}", dict(bpw=llamacpp_gguf.weight_bytes(g) / n_params,
                                            ppl=num(r"Mean PPL\(Q\)\s*:\s*([\d.]+)"),
                                            kld=num(r"Mean\s+KLD:\s*([-\d.e]+)"),
                                            p99=num(r"99\.0%\s+KLD:\s*([-\d.e]+)"),
                                            top1=num(r"Same top p:\s*([\d.]+)") / 100)))
    return rows, base


def main():
    import onnxruntime as ort

    from tinyslm import frontend
    from tinyslm.tokenizer import Tokenizer
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--llamacpp", default=str(ROOT / "build" / "llamacpp"), help="benchmarks/build_llamacpp.sh's DIR")
    ap.add_argument("--only", metavar="TEXT", help="only tinyslm's rows whose name contains TEXT (llama.cpp's always)")
    a = ap.parse_args()
    tok = Tokenizer.from_file(EXAMPLE.with_name("tokenizer.json"))
    chunks = text_chunks(tok.encode((ROOT / "examples" / "data" / "heldout.txt").read_text())[:a.tokens], 256, tok.bos_id)
    sess = ort.InferenceSession(str(EXAMPLE), providers=["CPUExecutionProvider"])
    raw = [onnx_logits(sess, EXAMPLE, c).astype(np.float32) for c in chunks]
    refs = [log_softmax(r) for r in raw]
    spec = frontend.frontend(str(EXAMPLE), log=lambda m: None)
    own = spec.n_params()
    own_macs = sum(w.size for L in spec.layers for w in (L.wq, L.wk, L.wv, L.wo, L.w_up, L.w_gate, L.w_down)) + spec.tok_emb.size
    n = sum(len(c) for c in chunks)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"bundled example ({own} weights), the first {a.tokens} held-out tokens in {len(chunks)} chunks of BOS + 255, "
          f"{n} positions; KLD from the float model in onnxruntime")
    rows, builds = [], {}
    with tempfile.TemporaryDirectory(prefix="tinyslm-quality-") as tmp:
        for name, opts in [v for v in VARIANTS if not a.only or a.only in v[0]]:
            builds[name] = build(tmp, name, opts)
            rows.append((name, score(builds[name], chunks, refs)))
            print(f"  measured {name}", flush=True)
        try:
            bindir, ggufs = llamacpp_ggufs(a.llamacpp, spec, tmp)
            lrows = llamacpp_every_position(bindir, ggufs, chunks, refs, tmp, own)
        except TslError as e:
            bindir = None
            print(f"llama.cpp: {e}; its rows below are the figures stored in issue 13")
            lrows = [(k, dict(bpw=b, ppl=p, kld=m, p99=q, top1=t)) for k, b, p, m, q, t in STORED]
        print_table("Table 1: every position (llama.cpp's rows " + ("measured now, F32 = the GGUF conversion itself"
                                                                   if bindir else "STORED from issue 13") + ")",
                    rows + lrows, own_macs)
        goals(rows, own_macs)
        if not bindir:
            return
        lrows, base = llamacpp_protocol(bindir, ggufs, chunks, raw, tmp, own)
        for name, out in builds.items():
            r = evaluate_against_llamacpp(out, base, quiet=True)
            k = next(x for x in r if "tinyslm" in x)
            lrows.append((name, dict(bpw=r[k]["bytes_per_weight"], ppl=r[k]["ppl"], kld=r[k]["kld_mean"],
                                     p99=r[k]["kld_p99"], top1=r[k]["top1"], macs=r[k]["macs"])))
        print_table("Table 2: llama.cpp's protocol (second half of each full chunk, llama-perplexity --kl-divergence "
                    "and tinyslm eval --against llama.cpp on one base file of the float model)", lrows, own_macs)


if __name__ == "__main__":
    main()
