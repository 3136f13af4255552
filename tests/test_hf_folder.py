"""A Hugging Face model folder (config.json, model.safetensors, tokenizer.json) wherever an ONNX file
goes: compile, inspect, logits. tinyslm exports it itself (once per content, into its cache, never
into the folder); the compiled build agrees with transformers running the folder."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from test_errors import check_error

pytest.importorskip("transformers")


def tinyslm(*args, env, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tinyslm", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **env}, timeout=600)


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    """A random-weight Llama saved by save_pretrained, with the example's tokenizer (512 tokens)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.manual_seed(0)
    cfg = AutoConfig.for_model("llama", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                               tie_word_embeddings=True)
    d = tmp_path_factory.mktemp("hf") / "TinyLlama-0.1M"
    AutoModelForCausalLM.from_config(cfg).save_pretrained(d, safe_serialization=True)
    shutil.copy(ROOT / "examples" / "tokenizer.json", d)
    return d


@pytest.fixture(scope="session")
def cache(request):
    """tinyslm's export cache under pytest's: the same folder bytes export once across runs."""
    return {"TINYSLM_CACHE": str(request.config.cache.mkdir("tinyslm-hf-folder-cache"))}


def test_compile_inspect_logits(folder, cache, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    r = tinyslm("compile", folder, "--board", "host", "-o", tmp_path / "b", env=cache, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert man["tokenizer"] == "tokenizer.json" and man["model"]["max_seq"] == 128   # config's position limit
    r = tinyslm("inspect", folder, env=cache)
    assert r.returncode == 0 and "exported before" in r.stdout and "llama" in r.stdout, r.stdout + r.stderr
    ids = [1, 5, 77, 300, 12, 9, 511, 2]
    r = tinyslm("logits", folder, "--ids", ",".join(map(str, ids)), "--out", tmp_path / "l.npy", env=cache)
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "l.npy").astype(np.float64)
    m = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, local_files_only=True).eval()
    with torch.no_grad():
        ref = m(input_ids=torch.tensor([ids]), use_cache=False).logits[0].double().numpy()
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999, cos
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before     # nothing written there


def _copy(folder, tmp_path, drop=(), files=None):
    d = tmp_path / "m"
    shutil.copytree(folder, d)
    for f in drop:
        (d / f).unlink()
    for name, text in (files or {}).items():
        (d / name).write_text(text)
    return d


@pytest.mark.parametrize("case,needle", [
    ("pickle", "pickle files, which tinyslm does not load"),
    ("bad_json", "config.json: not valid JSON"),
    ("no_model_type", "no \"model_type\" string"),
    ("unknown_type", "is not a transformers model"),
])
def test_bad_folders(folder, cache, tmp_path, case, needle):
    if case == "pickle":
        d = _copy(folder, tmp_path, drop=["model.safetensors"], files={"pytorch_model.bin": "not really"})
    elif case == "bad_json":
        d = _copy(folder, tmp_path, files={"config.json": "{nope"})
    elif case == "no_model_type":
        d = _copy(folder, tmp_path, files={"config.json": json.dumps({"hidden_size": 64})})
    else:
        cfg = json.loads((folder / "config.json").read_text())
        d = _copy(folder, tmp_path, files={"config.json": json.dumps({**cfg, "model_type": "evil_remote_code",
                                                                      "auto_map": {"AutoConfig": "x.Y"}})})
    check_error(tinyslm("compile", d, "-o", tmp_path / "out", env=cache), str(d), needle)
    assert not (tmp_path / "out").exists()


def test_missing_extra(folder, tmp_path):
    """Without torch/transformers (the [export] extra) a folder is one line naming the extra."""
    code = ("import sys; sys.modules['transformers'] = None; from tinyslm.cli import main; "
            f"sys.exit(main(['compile', {str(folder)!r}, '-o', {str(tmp_path / 'out')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    check_error(r, str(folder), "transformers", "pip install 'tinyslm[export]'")
