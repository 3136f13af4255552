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

from . import onnxfile
from .errors import TslError


def log_softmax(lg):
    lg = np.asarray(lg, np.float64)
    m = lg.max(-1, keepdims=True)
    return lg - m - np.log(np.exp(lg - m).sum(-1, keepdims=True))


def next_token_nll(lp, ids):
    """-sum of log p(ids[t + 1]) over positions t < T - 1 of log-probs lp [T, V] (teacher-forced ids [T])"""
    return -lp[:-1][np.arange(len(ids) - 1), np.asarray(ids[1:])].sum()


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
    int8 and int4 host builds of the model behind the build directory `out` (the build itself, and the
    format it is not in compiled from its source with default options: not calibrated; a mixed build
    adds its own row). progress(done, total)
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
    own = man["model"]["weights"]
    for fmt in ("int8", "int4") + (() if own in ("int8", "int4") else (own,)):   # a mixed build: its own row too
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
    sess = ort.InferenceSession(str(src), onnxfile.options(), providers=["CPUExecutionProvider"])
    base = "float32 (onnxruntime)"
    acc = {k: dict(nll=0.0, top1=0, cos=[], kld=[]) for k in [base, *hosts]}
    n, positions = sum(len(c) - 1 for c in chunks), sum(len(c) for c in chunks)
    if not quiet:
        print(f"eval on {Path(text).name}: {n} predicted tokens, {positions} positions in {len(chunks)} chunks "
              f"of <= {S}{' (BOS first)' if tok.bos_id is not None else ''}", flush=True)
    for i, ids in enumerate(chunks):
        ref = onnx_logits(sess, src, ids)
        ref_lp = log_softmax(ref)
        for name, lg in [(base, ref)] + [(k, host_logits(h, ids)) for k, h in hosts.items()]:
            a = acc[name]
            lp = log_softmax(lg)
            a["nll"] += next_token_nll(lp, ids)
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


def table(res, base, cosine=True):
    """-> lines: llama.cpp's `perplexity --kl-divergence` figures per format, plus size and work."""
    L = [f"  {'':<28} {'bytes/w':>7} {'MMAC/tok':>8} {'perplexity':>10} {'vs base':>9} {'mean KLD':>9} "
         f"{'p99 KLD':>8} {'max KLD':>8} {'same top-1':>10}" + (f" {'cos min':>8} {'cos >= 0.999':>12}" if cosine else "")]
    for name, r in res.items():
        rel = 100 * (r["ppl"] / res[base]["ppl"] - 1)
        bpw = f"{r['bytes_per_weight']:.3f}" if "bytes_per_weight" in r else "4" if "onnxruntime" in name else ""
        mac = f"{r['macs'] / 1e6:.2f}" if "macs" in r else ""
        L.append(f"  {name:<28} {bpw:>7} {mac:>8} {r['ppl']:10.4f} {rel:+8.2f}% {r['kld_mean']:9.6f} "
                 f"{r['kld_p99']:8.5f} {r['kld_max']:8.4f} {100 * r['top1']:9.2f}%"
                 + (f" {r['cos_min']:8.4f} {100 * r['cos_999']:11.2f}%" if cosine else ""))
    return L


# ------------------------------------------------------------------ llama.cpp's --kl-divergence-base file

LLAMACPP_MAGIC = b"_logits_"


def read_llamacpp_base(path, vocab):
    """The file `llama-perplexity --kl-divergence-base FILE` writes (examples/perplexity/perplexity.cpp),
    little-endian, validated in full before anything is used:
        char[8] "_logits_"; int32 n_ctx; int32 n_vocab; int32 n_chunk;
        int32 tokens[n_chunk * n_ctx]                       (the first of each chunk is BOS at run time
                                                             when the model adds one)
        per chunk, per scored position j = n_ctx/2 .. n_ctx - 2 (predicting token j + 1):
            uint16[nv], nv = 2 * ((n_vocab + 1) / 2) + 4:   float32 scale, float32 min_log_prob, then
                                                             log p[i] = scale * u[i] + min_log_prob
    -> dict(n_ctx, n_vocab, tokens [n_chunk, n_ctx] int64, logp [n_chunk, n_scored, n_vocab] float32, first)."""
    p = Path(path)
    if not p.is_file():
        raise TslError(f"{path}: no such llama.cpp logits file")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(20)
        if len(head) < 20 or head[:8] != LLAMACPP_MAGIC:
            raise TslError(f"{path}: not a llama.cpp --kl-divergence-base file (no '_logits_' magic)")
        n_ctx, n_vocab, n_chunk = (int(v) for v in np.frombuffer(head[8:], "<i4"))
        if not 4 <= n_ctx <= 1 << 20:
            raise TslError(f"{path}: n_ctx {n_ctx} out of range [4, 2^20]")
        if n_vocab != vocab:
            raise TslError(f"{path}: n_vocab {n_vocab}, the model's vocabulary is {vocab}: not this model's logits")
        if not 1 <= n_chunk <= 1 << 20:
            raise TslError(f"{path}: n_chunk {n_chunk} out of range [1, 2^20]")
        first, nv = n_ctx // 2, 2 * ((n_vocab + 1) // 2) + 4
        n_scored = n_ctx - 1 - first
        want = 20 + 4 * n_chunk * n_ctx + 2 * n_chunk * n_scored * nv
        if size != want:
            raise TslError(f"{path}: {size} bytes, a file of {n_chunk} chunks of {n_ctx} tokens, vocabulary "
                           f"{n_vocab}, has {want}")
        tokens = np.frombuffer(f.read(4 * n_chunk * n_ctx), "<i4").astype(np.int64).reshape(n_chunk, n_ctx)
        raw = np.frombuffer(f.read(), "<u2").reshape(n_chunk, n_scored, nv)
    bad = (tokens < 0) | (tokens >= vocab)
    if bad.any():
        c, j = np.argwhere(bad)[0]
        raise TslError(f"{path}: token {tokens[c, j]} at chunk {c}, position {j} is outside the vocabulary [0, {vocab})")
    hdr = raw[:, :, :4].copy().view("<f4")                      # [n_chunk, n_scored, 2]: scale, min_log_prob
    if not np.isfinite(hdr).all() or (hdr[..., 0] < 0).any() or (hdr[..., 1] > 0).any():
        raise TslError(f"{path}: a position's scale or minimum log-probability is not finite / out of range")
    logp = hdr[..., :1] * raw[:, :, 4:4 + n_vocab].astype(np.float32) + hdr[..., 1:2]
    return dict(n_ctx=n_ctx, n_vocab=n_vocab, tokens=tokens, logp=logp, first=first)


def kld_llamacpp(base_logp, lg):
    """llama.cpp's KL(base || this) per position: base log-probs below -16 are left out of the sum."""
    lp = log_softmax(lg)
    b = np.asarray(base_logp, np.float64)
    return np.where(b > -16, np.exp(b) * (b - lp), 0.0).sum(1)


def evaluate_against_llamacpp(out, path, quiet=False, progress=None, threads=1):
    """Print and return {format: {...}} for the build `out` (and onnxruntime's float model) scored
    against the log-probabilities llama.cpp stored in `path`, on its own tokens and positions (the
    second half of each chunk, BOS first when the tokenizer has one), with llama.cpp's KLD formula."""
    import onnxruntime as ort

    from .hostsim import HostModel
    from .pipeline import load_build
    man, prog = load_build(out)
    base = read_llamacpp_base(path, man["model"]["vocab"])
    n_ctx, first = base["n_ctx"], base["first"]
    if n_ctx > man["model"]["max_seq"]:
        raise TslError(f"{path}: chunks of {n_ctx} tokens, the build {out} holds {man['model']['max_seq']}; "
                       f"compile with --max-seq {n_ctx}")
    bos = None
    tokp = Path(out) / "tokenizer.json"
    if tokp.is_file():
        from .tokenizer import Tokenizer
        bos = Tokenizer.from_file(tokp).bos_id
    src = Path(man["source"])
    runs = {f"{man['model']['weights']} (tinyslm host build)": HostModel(out, man, threads)}
    sess = ort.InferenceSession(str(src), onnxfile.options(), providers=["CPUExecutionProvider"]) if src.is_file() else None
    acc = {k: dict(nll=0.0, top1=0, kld=[]) for k in (["float32 (onnxruntime)"] if sess else []) + list(runs)}
    n = 0
    for c, toks in enumerate(base["tokens"]):
        ids = [int(t) for t in toks]
        if bos is not None:
            ids[0] = bos
        b = base["logp"][c]
        nxt = np.asarray(ids[first + 1:])
        outs = [(k, host_logits(h, ids)) for k, h in runs.items()]
        if sess:
            outs.insert(0, ("float32 (onnxruntime)", onnx_logits(sess, src, ids)))
        for k, lg in outs:
            lg = lg[first:n_ctx - 1]
            a = acc[k]
            a["nll"] -= log_softmax(lg)[np.arange(len(nxt)), nxt].sum()
            a["kld"].append(kld_llamacpp(b, lg))
            a["top1"] += int((lg.argmax(1) == b.argmax(1)).sum())
        n += len(nxt)
        if progress:
            progress(c + 1, len(base["tokens"]))
    res = {}
    nll_base = -sum(b[np.arange(n_ctx - 1 - first), t[first + 1:]].sum() for b, t in zip(base["logp"], base["tokens"]))
    res["llama.cpp (the file)"] = dict(ppl=math.exp(nll_base / n), top1=1.0, kld_mean=0.0, kld_p99=0.0, kld_max=0.0, n=n)
    for k, a in acc.items():
        kld = np.maximum(np.concatenate(a["kld"]), 0.0)
        res[k] = dict(ppl=math.exp(a["nll"] / n), top1=a["top1"] / n, kld_mean=float(kld.mean()),
                      kld_p99=float(np.percentile(kld, 99)), kld_max=float(kld.max()), n=n)
    w = man["weights"]["bytes"] / man["model"]["n_params"]
    res[next(iter(runs))].update(bytes_per_weight=w, macs=sum(o.attrs["N"] * o.attrs["K"] for o in prog.ops if o.kind == "matvec"))
    if not quiet:
        print(f"against {Path(path).name}: {len(base['tokens'])} chunks of {n_ctx} tokens, {n} scored positions "
              f"(llama.cpp scores the second half of each chunk); KLD from llama.cpp's distribution")
        print("\n".join(table(res, "llama.cpp (the file)", cosine=False)))
    return res


def write_llamacpp_base(path, n_ctx, tokens, logits):
    """Write logits [n_chunk, n_ctx, V] of chunks tokens [n_chunk, n_ctx] as llama.cpp's
    --kl-divergence-base file (read_llamacpp_base's layout; the log-probabilities compressed to
    uint16 as llama.cpp compresses them, within 16 of the top one)."""
    tokens = np.asarray(tokens, np.int64)
    n_chunk, V = len(tokens), logits.shape[-1]
    first, nv = n_ctx // 2, 2 * ((V + 1) // 2) + 4
    with open(path, "wb") as f:
        f.write(LLAMACPP_MAGIC + np.array([n_ctx, V, n_chunk], "<i4").tobytes() + tokens.astype("<i4").tobytes())
        for lg in logits:
            lg = np.asarray(lg[first:n_ctx - 1], np.float32)
            mx = lg.max(1, keepdims=True)
            mn = np.maximum(lg.min(1, keepdims=True), mx - 16)
            lse = np.log(np.exp(lg - mx).astype(np.float64).sum(1, keepdims=True)).astype(np.float32)
            scale = ((mx - mn) / np.float32(65535)).astype(np.float32)
            u = np.where(lg > mn, np.round((lg - mn) / np.where(scale > 0, scale, 1)), 0).astype("<u2")
            rec = np.zeros((len(lg), nv), "<u2")
            rec[:, :4] = np.concatenate([scale, mn - mx - lse], 1).astype("<f4").view("<u2")
            rec[:, 4:4 + V] = u
            f.write(rec.tobytes())
