"""eval: quality of the compiled int8 and int4 builds against the float model in onnxruntime,
measured as llama.cpp's `perplexity --kl-divergence` measures it (mean, 99th percentile and max of
KL(float || quantized) per position, same top-1), with bytes per weight and matvec MACs per token.

The text is cut into chunks the way a prompt reaches the model (the tokenizer's BOS, if it has
one, then up to max_seq - 1 tokens); every chunk is run teacher-forced through onnxruntime and
through each host build. Per format: perplexity, top-1 agreement with the float model, and the
cosine similarity of the logit vectors at every position (minimum, median, and the share of
positions at 0.999 or more).
"""
import math
import tempfile
from pathlib import Path

import numpy as np

from .errors import TslError


def log_softmax(lg):
    lg = np.asarray(lg, np.float64)
    m = lg.max(-1, keepdims=True)
    return lg - m - np.log(np.exp(lg - m).sum(-1, keepdims=True))


def host_logits(host, ids):
    """[T, V] float64 logits of a C build, one decode step per id."""
    host.reset()
    return np.stack([host.step(t, p) for p, t in enumerate(ids)]).astype(np.float64)


def onnx_logits(sess, model_path, ids):
    from .frontend import make_feeds, ort_infos
    feeds, _ = make_feeds(ort_infos(sess), ids, model_path)
    return np.asarray(sess.run(None, feeds)[0], np.float64).reshape(len(ids), -1)


def cosine(a, b):
    """Row-wise cosine similarity of [T, V] arrays."""
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)


def text_chunks(ids, S, bos):
    """BOS (if any) + consecutive pieces of the text, each chunk at most S ids, at least 2."""
    head = [] if bos is None else [bos]
    step = S - len(head)
    return [head + ids[i:i + step] for i in range(0, len(ids), step) if len(head + ids[i:i + step]) > 1]


def evaluate(out, text, max_tokens=4096, quiet=False, progress=None, threads=1):
    """Print and return {format: {ppl, top1, cos_min, cos_median, cos_999, n}} for float (onnxruntime),
    int8 and int4 host builds of the model behind the build directory `out`. progress(done, total)
    is called after each chunk. threads: of each host build's matvecs."""
    import onnxruntime as ort

    from .hostsim import HostModel
    from .pipeline import compile_model, load_build
    from .tokenizer import Tokenizer
    man, _ = load_build(out)
    tokp = Path(out) / "tokenizer.json"
    if not tokp.is_file():
        raise TslError(f"{out}: eval needs a tokenizer; compile with --tokenizer")
    if not Path(text).is_file():
        raise TslError(f"{text}: no such text file")
    src = Path(man["source"])
    if not src.is_file():
        raise TslError(f"{out}: source model {src} is gone; eval compares against it in onnxruntime")
    tok = Tokenizer.from_file(tokp)
    S = man["model"]["max_seq"]
    chunks = text_chunks(tok.encode(Path(text).read_text())[:max_tokens], S, tok.bos_id)
    hosts, formats = {}, {}
    for fmt in ("int8", "int4"):
        build = Path(out)
        if man["model"]["weights"] != fmt:
            build = Path(tempfile.mkdtemp(prefix="tinyslm-eval-")) / "build"
            compile_model(src, build, "host", S, fmt, tokp, quiet=True,
                          activations=man["model"].get("activations", "int8"))
        bman, bprog = load_build(build)
        hosts[f"{fmt} (tinyslm host build)"] = HostModel(build, bman, threads)
        formats[f"{fmt} (tinyslm host build)"] = dict(
            bytes_per_weight=bman["weights"]["bytes"] / bman["model"]["n_params"],
            macs=sum(o.attrs["N"] * o.attrs["K"] for o in bprog.ops if o.kind == "matvec"))
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    base = "float32 (onnxruntime)"
    acc = {k: dict(nll=0.0, top1=0, cos=[], kld=[]) for k in [base, *hosts]}
    n, positions = sum(len(c) - 1 for c in chunks), sum(len(c) for c in chunks)
    if not quiet:
        print(f"eval on {Path(text).name}: {n} predicted tokens, {positions} positions in {len(chunks)} chunks "
              f"of <= {S}{' (BOS first)' if tok.bos_id is not None else ''}", flush=True)
    for i, ids in enumerate(chunks):
        nxt = np.asarray(ids[1:])
        ref = onnx_logits(sess, src, ids)
        ref_lp = log_softmax(ref)
        for name, lg in [(base, ref)] + [(k, host_logits(h, ids)) for k, h in hosts.items()]:
            a = acc[name]
            lp = log_softmax(lg)
            a["nll"] -= lp[:-1][np.arange(len(nxt)), nxt].sum()
            a["kld"].append((np.exp(ref_lp) * (ref_lp - lp)).sum(1))          # KL(float || this), per position
            a["top1"] += int((lg.argmax(1) == ref.argmax(1)).sum())
            a["cos"].append(cosine(lg, ref))
        if progress:
            progress(i + 1, len(chunks))
    res = {}
    for name, a in acc.items():
        c, kld = np.concatenate(a["cos"]), np.maximum(np.concatenate(a["kld"]), 0.0)
        res[name] = dict(ppl=math.exp(a["nll"] / n), top1=a["top1"] / positions, cos_min=float(c.min()),
                         cos_median=float(np.median(c)), cos_999=float((c >= 0.999).mean()), n=positions,
                         kld_mean=float(kld.mean()), kld_p99=float(np.percentile(kld, 99)), kld_max=float(kld.max()))
        res[name].update(formats.get(name, {}))
    if not quiet:
        print("\n".join(table(res, base)))
    return res


def table(res, base):
    """-> lines: llama.cpp's `perplexity --kl-divergence` figures per format, plus size and work."""
    L = [f"  {'':<28} {'bytes/w':>7} {'MMAC/tok':>8} {'perplexity':>10} {'vs float':>9} {'mean KLD':>9} "
         f"{'p99 KLD':>8} {'max KLD':>8} {'same top-1':>10} {'cos min':>8} {'cos >= 0.999':>12}"]
    for name, r in res.items():
        rel = 100 * (r["ppl"] / res[base]["ppl"] - 1)
        bpw = f"{r['bytes_per_weight']:.3f}" if "bytes_per_weight" in r else "4"
        mac = f"{r['macs'] / 1e6:.2f}" if "macs" in r else ""
        L.append(f"  {name:<28} {bpw:>7} {mac:>8} {r['ppl']:10.4f} {rel:+8.2f}% {r['kld_mean']:9.6f} "
                 f"{r['kld_p99']:8.5f} {r['kld_max']:8.4f} {100 * r['top1']:9.2f}% {r['cos_min']:8.4f} "
                 f"{100 * r['cos_999']:11.2f}%")
    return L
