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
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyslm.evaluate import (host_logits, log_softmax, onnx_logits, text_chunks,  # noqa: E402
                              write_llamacpp_base)

EXAMPLE = ROOT / "examples" / "tiny_llama.onnx"
STORED = [   # issue 13, llama.cpp from the llama-cpp-python sdist, every position of BOS + 255 chunks
    ("llama.cpp Q8_0 (stored)", 1.067, 10.9312, 0.000240, 0.00163, 0.9872),
    ("llama.cpp Q4_0 (stored)", 0.608, 11.0469, 0.01574, 0.1245, 0.9097),
    ("llama.cpp Q4_K_M (stored)", 0.773, 10.9579, 0.00334, 0.0272, 0.9586),
]
VARIANTS = [   # row, compile options (rotate: the MLP product's Hadamard rotation; default: with 1 pass)
    ("tinyslm int8, MLP 2 passes", dict(weights="int8")),
    ("tinyslm int8, MLP 1 pass", dict(weights="int8", mlp_residual=False, rotate=False)),
    ("tinyslm int8, MLP 1 pass, rotated", dict(weights="int8", mlp_residual=False, rotate=True)),
    ("tinyslm int8, MLP 2 passes, rotated", dict(weights="int8", rotate=True)),
    ("tinyslm int8, MLP 2 passes, calibrated", dict(weights="int8", calibrate="default")),
    ("tinyslm int8, MLP 1 pass, calibrated", dict(weights="int8", calibrate="default", mlp_residual=False,
                                                   rotate=False)),
    ("tinyslm int8, MLP 1 pass, rotated, calibrated", dict(weights="int8", calibrate="default", mlp_residual=False,
                                                            rotate=True)),
    ("tinyslm int8, MLP 2 passes, rotated, calibrated", dict(weights="int8", calibrate="default", rotate=True)),
    ("tinyslm int4", dict(weights="int4")),
    ("tinyslm int4, rotated", dict(weights="int4", rotate=True)),
    ("tinyslm int4, calibrated", dict(weights="int4", calibrate="default")),
    ("tinyslm int4, rotated, calibrated", dict(weights="int4", calibrate="default", rotate=True)),
    ("tinyslm mixed, calibrated", dict(weights="mixed", calibrate="default")),
    ("tinyslm mixed, rotated, calibrated", dict(weights="mixed", calibrate="default", rotate=True)),
]
GOALS = {"int8": (0.00012, 1.07), "int4": (0.0079, 0.62), "mixed": (0.0033, 0.70)}


def build(tmp, name, opts):
    from tinyslm.pipeline import compile_model
    out = Path(tmp) / re.sub(r"\W+", "_", name)
    compile_model(EXAMPLE, out, "host", 256, tokenizer=EXAMPLE.with_name("tokenizer.json"), quiet=True, **opts)
    return out


def score(out, chunks, refs):
    """-> row dict of one build on all positions of the chunks, against onnxruntime's log-probs."""
    from tinyslm.hostsim import HostModel
    from tinyslm.pipeline import load_build
    man, prog = load_build(out)
    host = HostModel(out, man, 1)
    nll, top, kld, n = 0.0, 0, [], 0
    for ids, ref in zip(chunks, refs):
        lp = log_softmax(host_logits(host, ids))
        nxt = np.asarray(ids[1:])
        nll -= lp[:-1][np.arange(len(nxt)), nxt].sum()
        kld.append((np.exp(ref) * (ref - lp)).sum(1))
        top += int((lp.argmax(1) == ref.argmax(1)).sum())
        n += len(nxt)
    k = np.maximum(np.concatenate(kld), 0)
    macs = sum(o.attrs["N"] * o.attrs["K"] for o in prog.ops if o.kind == "matvec")
    return dict(bpw=man["weights"]["bytes"] / man["model"]["n_params"], ppl=math.exp(nll / n), kld=k.mean(),
                p99=np.percentile(k, 99), top1=top / len(k), macs=macs)


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

def hf_checkpoint(spec, tok_dir, out):
    """The float ModelSpec as a Hugging Face Llama folder (safetensors, config, tokenizer) for
    llama.cpp's convert_hf_to_gguf.py."""
    import shutil

    from safetensors.numpy import save_file
    out.mkdir(parents=True, exist_ok=True)
    t = {"model.embed_tokens.weight": spec.tok_emb, "model.norm.weight": spec.final_norm.g}
    for i, L in enumerate(spec.layers):
        p = f"model.layers.{i}."
        t.update({p + "self_attn.q_proj.weight": L.wq, p + "self_attn.k_proj.weight": L.wk,
                  p + "self_attn.v_proj.weight": L.wv, p + "self_attn.o_proj.weight": L.wo,
                  p + "mlp.gate_proj.weight": L.w_gate, p + "mlp.up_proj.weight": L.w_up,
                  p + "mlp.down_proj.weight": L.w_down, p + "input_layernorm.weight": L.attn_norm.g,
                  p + "post_attention_layernorm.weight": L.ffn_norm.g})
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}, str(out / "model.safetensors"))
    theta = float(spec.inv_freq[1]) ** (-spec.rotary_dim / 2.0)
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=spec.vocab, hidden_size=spec.dim,
               intermediate_size=spec.hidden, num_hidden_layers=spec.n_layers, num_attention_heads=spec.n_heads,
               num_key_value_heads=spec.n_kv_heads, head_dim=spec.head_dim, rms_norm_eps=float(spec.final_norm.eps),
               rope_theta=round(theta, 3), max_position_embeddings=256, tie_word_embeddings=True, hidden_act="silu",
               bos_token_id=0, eos_token_id=1, torch_dtype="float32")
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    shutil.copy(tok_dir / "tokenizer.json", out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(json.dumps(dict(bos_token="<|bos|>", eos_token="<|eos|>",
                                                               add_bos_token=True, tokenizer_class="PreTrainedTokenizerFast")))
    return out


def llamacpp_rows(llama, spec, chunks, refs, tmp, n_params):
    """-> rows measured by llama-perplexity against the float model's log-probs (second halves), and the
    path of the base file."""
    tmp = Path(tmp)
    bin_ = llama / "build" / "bin"
    conv = next(llama.glob("llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    hf = hf_checkpoint(spec, EXAMPLE.parent, tmp / "hf")
    f32 = tmp / "f32.gguf"
    env = dict(__import__("os").environ, PYTHONPATH=str(conv.parent / "gguf-py"))
    subprocess.run([sys.executable, str(conv), str(hf), "--outtype", "f32", "--outfile", str(f32)], check=True,
                   env=env, capture_output=True, text=True)
    S = len(chunks[0])
    full = [c for c in chunks if len(c) == S]
    base = tmp / "float.kld"
    write_llamacpp_base(base, S, full, np.stack(refs[:len(full)]))
    rows = []
    for q in ("Q8_0", "Q4_0", "Q4_K_M"):
        g = tmp / f"{q}.gguf"
        subprocess.run([str(bin_ / "llama-quantize"), str(f32), str(g), q], check=True, capture_output=True)
        r = subprocess.run([str(bin_ / "llama-perplexity"), "-m", str(g), "--kl-divergence-base", str(base),
                            "--kl-divergence", "-c", str(S), "-b", str(S), "-t", "2"], capture_output=True, text=True)
        txt = r.stdout + r.stderr
        num = lambda pat: float(re.search(pat, txt).group(1))   # noqa: E731
        rows.append((f"llama.cpp {q}", dict(bpw=g.stat().st_size / n_params, ppl=num(r"Mean PPL\(Q\)\s*:\s*([\d.]+)"),
                                            kld=num(r"Mean\s+KLD:\s*([-\d.e]+)"), p99=num(r"99\.0%\s+KLD:\s*([-\d.e]+)"),
                                            top1=num(r"Same top p:\s*([\d.]+)") / 100)))
    return rows, base


def main():
    import onnxruntime as ort

    from tinyslm import frontend
    from tinyslm.tokenizer import Tokenizer
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--llamacpp", default=str(ROOT / "build" / "llamacpp"), help="benchmarks/build_llamacpp.sh's DIR")
    a = ap.parse_args()
    tok = Tokenizer.from_file(EXAMPLE.with_name("tokenizer.json"))
    chunks = text_chunks(tok.encode((ROOT / "examples" / "data" / "heldout.txt").read_text())[:a.tokens], 256, tok.bos_id)
    sess = ort.InferenceSession(str(EXAMPLE), providers=["CPUExecutionProvider"])
    raw = [onnx_logits(sess, EXAMPLE, c) for c in chunks]
    refs = [log_softmax(r) for r in raw]
    spec = frontend.frontend(str(EXAMPLE))
    own = spec.n_params()
    own_macs = sum(w.size for L in spec.layers for w in (L.wq, L.wk, L.wv, L.wo, L.w_up, L.w_gate, L.w_down)) + spec.tok_emb.size
    n = sum(len(c) for c in chunks)
    print(f"bundled example ({spec.n_params()} weights), {a.tokens} held-out tokens in {len(chunks)} chunks of BOS + 255, "
          f"{n} positions; KLD from the float model in onnxruntime")
    rows, builds = [], {}
    with tempfile.TemporaryDirectory(prefix="tinyslm-quality-") as tmp:
        for name, opts in VARIANTS:
            builds[name] = build(tmp, name, opts)
            rows.append((name, score(builds[name], chunks, refs)))
            print(f"  measured {name}", flush=True)
        llama = Path(a.llamacpp)
        have = (llama / "build" / "bin" / "llama-perplexity").is_file()
        table1 = list(rows)
        if not have:
            table1 += [(k, dict(bpw=b, ppl=p, kld=m, p99=q, top1=t)) for k, b, p, m, q, t in STORED]
        print_table("Table 1: every position" + ("" if have else " (llama.cpp rows stored from issue 13: no llama.cpp "
                                                  f"build in {llama}; benchmarks/build_llamacpp.sh builds one)"),
                    table1, own_macs)
        goals(rows, own_macs)
        if have:
            from tinyslm.evaluate import evaluate_against_llamacpp
            try:
                lrows, base = llamacpp_rows(llama, spec, chunks, [r.astype(np.float32) for r in raw], tmp, own)
            except (subprocess.CalledProcessError, AttributeError, StopIteration) as e:
                err = getattr(e, "stderr", "") or str(e)
                print(f"\nllama.cpp side failed: {str(err).strip().splitlines()[-1:]}")
                return
            t2 = list(lrows)
            for name, out in builds.items():
                r = evaluate_against_llamacpp(out, base, quiet=True)
                k = next(x for x in r if "tinyslm" in x)
                t2.append((name, dict(bpw=r[k]["bytes_per_weight"], ppl=r[k]["ppl"], kld=r[k]["kld_mean"],
                                      p99=r[k]["kld_p99"], top1=r[k]["top1"], macs=r[k]["macs"])))
            print_table("Table 2: llama.cpp's protocol (second half of each chunk, llama-perplexity --kl-divergence "
                        "and tinyslm eval --against llama.cpp on one base file of the float model)", t2, own_macs)


if __name__ == "__main__":
    main()
