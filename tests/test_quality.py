"""Issue 13: calibrated quantization, --fit, and llama.cpp's --kl-divergence-base files.

Levels reached (the first 1,024 held-out tokens of the bundled example, chunks of BOS + 255, KLD
from onnxruntime's float model, calibration on 512 tokens of the training text, 2,048 for the int4
and mixed levels, to keep this fast; benchmarks/quality.py measures the full table on 20,000 tokens
with the default 8,192 calibration tokens):
guards against regression, not the issue's goals. One MLP pass with the rotation: test_rotated_one_pass_levels."""
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from conftest_tools import require_toolchain

HELDOUT = ROOT / "examples" / "data" / "heldout.txt"


def _cal_tokens(n):
    from tinyslm import calibrate
    old, calibrate.CAL_TOKENS = calibrate.CAL_TOKENS, n
    yield
    calibrate.CAL_TOKENS = old


@pytest.fixture(scope="module")
def small_calibration():
    yield from _cal_tokens(512)


@pytest.fixture(scope="module")
def half_calibration():
    yield from _cal_tokens(2048)


@pytest.fixture(scope="module")
def held(example):
    import onnxruntime as ort

    from tinyslm import onnxfile
    from tinyslm.evaluate import log_softmax, onnx_logits, text_chunks
    from tinyslm.tokenizer import Tokenizer
    tok = Tokenizer.from_file(example.with_name("tokenizer.json"))
    chunks = text_chunks(tok.encode(HELDOUT.read_text())[:1024], 256, tok.bos_id)
    sess = ort.InferenceSession(str(example), onnxfile.options(), providers=["CPUExecutionProvider"])
    raw = [onnx_logits(sess, example, c) for c in chunks]
    return chunks, raw, [log_softmax(r) for r in raw]


def _float_ppl(held):
    from tinyslm.evaluate import next_token_nll
    chunks, _, refs = held
    nll = sum(next_token_nll(ref, ids) for ids, ref in zip(chunks, refs))
    return float(np.exp(nll / sum(len(ids) - 1 for ids in chunks)))


def _score(out, held):
    from tinyslm.evaluate import host_logits, log_softmax, next_token_nll
    from tinyslm.hostsim import HostModel
    from tinyslm.pipeline import load_build
    chunks, _, refs = held
    man, prog = load_build(out)
    host = HostModel(out, man, 1)
    kld, top, nll, n = [], 0, 0.0, 0
    for ids, ref in zip(chunks, refs):
        lp = log_softmax(host_logits(host, ids))
        kld.append((np.exp(ref) * (ref - lp)).sum(1))
        top += int((lp.argmax(1) == ref.argmax(1)).sum())
        nll += next_token_nll(lp, ids)
        n += len(ids) - 1
    k = np.concatenate(kld)
    return dict(kld=float(k.mean()), top1=top / len(k), ppl=float(np.exp(nll / n)), prog=prog, host=host, dir=out)


@pytest.fixture(scope="module")
def int4_pair(example, tmp_path_factory, held, half_calibration):
    from tinyslm.pipeline import compile_model
    d = tmp_path_factory.mktemp("q13")
    out = {}
    for name, cal in (("plain", None), ("calibrated", "default")):
        compile_model(example, d / name, "host", 256, "int4", quiet=True, calibrate=cal)
        out[name] = _score(d / name, held)
    return out


def test_calibrated_int4_levels(int4_pair):
    """int4's default: one MLP pass, rotated. Measured here (GPTQ with the least-squares group-scale
    refit): calibrated mean KLD 0.010727, top-1 93.78 %, perplexity 10.299; rounded to nearest
    0.014055, 93.49 %, 10.317 (two MLP passes: 0.011056 and 0.014059)."""
    c, p = int4_pair["calibrated"], int4_pair["plain"]
    print({k: {m: round(v[m], 6) for m in ("kld", "top1", "ppl")} for k, v in int4_pair.items()})
    assert c["kld"] <= 0.82 * p["kld"], (c["kld"], p["kld"])
    assert c["kld"] <= 0.0115, c["kld"]
    assert c["top1"] >= 0.92, c["top1"]
    assert c["ppl"] <= 1.01 * p["ppl"], (c["ppl"], p["ppl"])


def test_mixed_at_int4_size(example, tmp_path, int4_pair, held, half_calibration):
    """--weights mixed --int5 --bytes-per-weight 0.62: int4's size (issue 13's int4 bar), a few tensors int5 or
    int8. Measured here: 7 of 28 int5 (the v, k and o projections of layers 0 and 2, l3.wv), mean KLD
    0.009035 against int4's 0.010707 (int4 and int8 only: 2 int8, 0.009915)."""
    from tinyslm.pipeline import compile_model, load_build
    compile_model(example, tmp_path / "m", "host", 256, "mixed", quiet=True, calibrate="default", bytes_per_weight=0.62,
                  int5=True)
    man, prog = load_build(tmp_path / "m")
    assert man["weights"]["bytes"] <= 0.62 * man["model"]["n_params"]
    up = {o.name: o.attrs["fmt"] for o in prog.ops if o.kind == "matvec" and o.attrs["fmt"] in ("s8", "s5nl")
          and o.name != "lm_head"}
    m, c = _score(tmp_path / "m", held), int4_pair["calibrated"]
    print(round(m["kld"], 6), sorted(up.items()))
    assert 0 < len(up) <= 12, up
    assert m["kld"] <= 0.9 * c["kld"], (m["kld"], c["kld"])


def test_mixed_at_int4_size_nl(example, tmp_path, int4_pair, held, half_calibration):
    """--weights mixed --int5 --bytes-per-weight 0.62 --int4 nl: the build that meets issue 13's int4 goal on
    20,000 tokens (benchmarks/quality.py; the README's table). Measured here: mean KLD 0.006793 (0.63x
    the uniform int4 build's 0.010707; int4 and int8 only: 0.008236), top-1 95.04 %."""
    from tinyslm.pipeline import compile_model, load_build
    compile_model(example, tmp_path / "m", "host", 256, "mixed", quiet=True, calibrate="default", bytes_per_weight=0.62,
                  int4="nl", int5=True)
    man, prog = load_build(tmp_path / "m")
    assert man["weights"]["bytes"] <= 0.62 * man["model"]["n_params"]
    assert {"s4nl", "s8"} <= {o.attrs["fmt"] for o in prog.ops if o.kind == "matvec"} <= {"s4nl", "s5nl", "s8"}
    m, c = _score(tmp_path / "m", held), int4_pair["calibrated"]
    print(round(m["kld"], 6), round(m["top1"], 4), round(c["kld"], 6))
    assert m["kld"] <= 0.7 * c["kld"], (m["kld"], c["kld"])
    assert m["top1"] >= c["top1"], (m["top1"], c["top1"])


@pytest.fixture(scope="module")
def mixed_build(example, tmp_path_factory, held, half_calibration):
    from tinyslm.pipeline import compile_model
    d = tmp_path_factory.mktemp("q13m") / "mixed"
    compile_model(example, d, "host", 256, "mixed", quiet=True, calibrate="default", int5=True)
    return _score(d, held)


def test_mixed_levels(mixed_build, int4_pair, held):
    """--weights mixed --int5 (calibrated; two MLP passes; int4, int5 and int8 tensors), within 0.70 bytes per
    weight: issue 13's mixed goal. Measured here: mean KLD 0.002730, top-1 96.50 %, perplexity 10.273,
    the float model's 10.253 (+0.19 %) (int4 and int8 only: 0.006047, 94.85 %, +0.71 %). Perplexity is no
    ranking at these gaps: it is held near the float model's."""
    from tinyslm.pipeline import load_build
    m, c = mixed_build, int4_pair["calibrated"]
    print({k: round(m[k], 6) for k in ("kld", "top1", "ppl")})
    man, _ = load_build(m["dir"])
    assert man["weights"]["bytes"] <= 0.70 * man["model"]["n_params"]
    assert m["kld"] <= 0.3 * c["kld"], (m["kld"], c["kld"])
    assert m["kld"] <= 0.0031, m["kld"]
    assert m["top1"] >= 0.96, m["top1"]
    f = _float_ppl(held)
    print("float perplexity", round(f, 6))
    assert abs(m["ppl"] / f - 1) <= 0.004, (m["ppl"], f)


@pytest.fixture(scope="module")
def one_pass(example, tmp_path_factory, held):
    """int8 with the MLP product quantized once: as it is, rotated (the default with one pass), and
    rotated on the integer-only step"""
    from tinyslm.pipeline import compile_model
    d = tmp_path_factory.mktemp("q13r")
    out = {}
    for name, opts in (("plain", dict(rotate=False)), ("rotated", {}), ("rotated-int", dict(numerics="int"))):
        compile_model(example, d / name, "host", 256, "int8", quiet=True, mlp_residual=False, **opts)
        out[name] = _score(d / name, held)
    return out


def test_rotated_one_pass_levels(one_pass):
    """Measured here: mean KLD plain 0.000608, rotated 0.000312, rotated on the integer step 0.000310
    (two passes: 0.000256); 20,000 tokens: 0.000682, 0.000345 (two passes 0.000296)."""
    p, r, ri = one_pass["plain"], one_pass["rotated"], one_pass["rotated-int"]
    print({k: {m: round(v[m], 6) for m in ("kld", "top1", "ppl")} for k, v in one_pass.items()})
    assert r["prog"].meta["rotate"] and not p["prog"].meta["rotate"]
    assert r["kld"] <= 0.6 * p["kld"], (r["kld"], p["kld"])
    for v in (r, ri):
        assert v["kld"] <= 0.00036, v["kld"]
        assert v["top1"] >= 0.986, v["top1"]
        assert v["ppl"] <= 1.002 * p["ppl"], (v["ppl"], p["ppl"])


def test_calibrated_build_is_bit_exact(int4_pair):
    """Calibration only changes weight values: reference and host build still agree bit for bit."""
    from tinyslm.verify import verify_host
    c = int4_pair["calibrated"]
    rep = verify_host(c["prog"], c["host"], [0, 5, 9, 77], 24)
    assert rep["steps"] == 24


def test_fit_nucleo(example, tmp_path, small_calibration):
    """compile --fit nucleo-f446re: a context and formats whose image fits the board's flash and RAM."""
    from tinyslm.boards import load_board
    from tinyslm.firmware import build_firmware
    from tinyslm.pipeline import compile_model
    B = load_board("nucleo-f446re")
    man = compile_model(example, tmp_path / "fit", "nucleo-f446re", None, quiet=True, fit=True)
    assert man["model"]["max_seq"] >= 64
    assert man["weights"]["bytes"] <= B.flash_bytes
    assert man["memory"]["arena_bytes"] + man["memory"]["kv_bytes"] <= B.ram_bytes
    require_toolchain(B)
    sz = build_firmware(tmp_path / "fit", B, log=lambda m: None)["sizes"]
    assert sz["flash"] <= B.flash_bytes, sz
    assert sz["ram"] <= B.ram_bytes, sz


# ---- llama.cpp's --kl-divergence-base files ----

def test_llamacpp_base_roundtrip(tmp_path):
    """Written in llama.cpp's layout (uint16 log-probs within 16 of the top), read back to within its step."""
    from tinyslm.evaluate import kld_llamacpp, log_softmax, read_llamacpp_base, write_llamacpp_base
    rng = np.random.default_rng(1)
    toks = rng.integers(0, 33, (2, 16))
    lg = rng.normal(0, 3, (2, 16, 33)).astype(np.float32)
    write_llamacpp_base(tmp_path / "b.kld", 16, toks, lg)
    b = read_llamacpp_base(tmp_path / "b.kld", 33)
    assert b["n_ctx"] == 16 and b["first"] == 8 and (b["tokens"] == toks).all()
    want = log_softmax(lg[:, 8:15])
    keep = want > want.max(-1, keepdims=True) - 16
    assert np.abs(b["logp"] - want)[keep].max() < 1e-3
    assert kld_llamacpp(b["logp"][0], lg[0, 8:15]).max() < 1e-4
    assert kld_llamacpp(b["logp"][0], lg[1, 8:15]).mean() > 0.1


@pytest.mark.parametrize("damage, msg", [
    (lambda d: b"_logitz_" + d[8:], "magic"),
    (lambda d: d[:-2], "bytes"),
    (lambda d: d[:8] + np.array([16, 34, 2], "<i4").tobytes() + d[20:], "n_vocab 34"),
    (lambda d: d[:20] + np.array([40], "<i4").tobytes() + d[24:], "outside the vocabulary"),
    (lambda d: d[:8] + np.array([2, 33, 2], "<i4").tobytes() + d[20:], "n_ctx"),
])
def test_llamacpp_base_rejected(tmp_path, damage, msg):
    from tinyslm.errors import TslError
    from tinyslm.evaluate import read_llamacpp_base, write_llamacpp_base
    rng = np.random.default_rng(2)
    write_llamacpp_base(tmp_path / "b.kld", 16, rng.integers(0, 33, (2, 16)), rng.normal(0, 3, (2, 16, 33)))
    p = tmp_path / "bad.kld"
    p.write_bytes(damage((tmp_path / "b.kld").read_bytes()))
    with pytest.raises(TslError, match=msg):
        read_llamacpp_base(p, 33)


def test_eval_against_llamacpp_cli(int4_pair, held, tmp_path):
    """eval --against llama.cpp FILE on a base file of the float model: onnxruntime scores ~0 KLD
    against it, the int4 build what it scores against onnxruntime (on the second halves)."""
    from tinyslm.evaluate import evaluate_against_llamacpp, write_llamacpp_base
    chunks, raw, _ = held
    full = [(c, r) for c, r in zip(chunks, raw) if len(c) == 256][:2]
    write_llamacpp_base(tmp_path / "f.kld", 256, [c for c, _ in full], np.stack([r for _, r in full]))
    res = evaluate_against_llamacpp(int4_pair["calibrated"]["dir"], tmp_path / "f.kld", quiet=True)
    assert res["float32 (onnxruntime)"]["kld_mean"] < 1e-4
    k = next(k for k in res if "tinyslm" in k)
    assert 0.002 < res[k]["kld_mean"] < 0.03
    r = subprocess.run([sys.executable, "-m", "tinyslm", "eval", str(int4_pair["calibrated"]["dir"]), "--against", "llama.cpp",
                        str(tmp_path / "nope.kld")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "nope.kld" in r.stderr and "Traceback" not in r.stderr

