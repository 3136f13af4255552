"""eval: perplexity of the compiled int8 and int4 builds next to the float model in onnxruntime."""
import math
import tempfile
from pathlib import Path

import numpy as np

from .errors import TslError


def nll_host(host, chunks):
    """Sum of -log p(next id) over chunks, teacher-forced through a C build; float64 log-softmax."""
    tot, n = 0.0, 0
    for ids in chunks:
        host.reset()
        for pos in range(len(ids) - 1):
            lg = host.step(ids[pos], pos).astype(np.float64)
            m = lg.max()
            tot += m + math.log(np.exp(lg - m).sum()) - lg[ids[pos + 1]]
            n += 1
    return tot, n


def nll_onnx(model_path, chunks):
    import onnxruntime as ort

    from .frontend import make_feeds, ort_infos
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    tot, n = 0.0, 0
    for ids in chunks:
        feeds, _ = make_feeds(ort_infos(sess), ids, model_path)
        lg = np.asarray(sess.run(None, feeds)[0], np.float64).reshape(len(ids), -1)
        for pos in range(len(ids) - 1):
            m = lg[pos].max()
            tot += m + math.log(np.exp(lg[pos] - m).sum()) - lg[pos, ids[pos + 1]]
            n += 1
    return tot, n


def evaluate(out, text, max_tokens=4096, quiet=False):
    """Print and return {format: perplexity} for float (onnxruntime), int8 and int4 host builds."""
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
    ids = tok.encode(Path(text).read_text())[:max_tokens]
    S = man["model"]["max_seq"]
    chunks = [ids[i:i + S] for i in range(0, len(ids), S) if len(ids[i:i + S]) > 1]
    res = {}
    tot, n = nll_onnx(src, chunks)
    res["float32 (onnxruntime)"] = math.exp(tot / n)
    for fmt in ("int8", "int4"):
        if man["model"]["weights"] == fmt:
            build = Path(out)
        else:
            build = Path(tempfile.mkdtemp(prefix="tinyslm-eval-")) / "build"
            compile_model(src, build, "host", S, fmt, tokp, quiet=True)
        tot, n = nll_host(HostModel(build), chunks)
        res[f"{fmt} (tinyslm host build)"] = math.exp(tot / n)
    base = res["float32 (onnxruntime)"]
    if not quiet:
        print(f"perplexity on {Path(text).name}: {n} predicted tokens in {len(chunks)} chunks of <= {S}")
        for k, v in res.items():
            print(f"  {k:<28} {v:9.3f}  {100 * (v / base - 1):+6.2f}%")
    return res
