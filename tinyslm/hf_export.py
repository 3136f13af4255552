"""A Hugging Face model folder (config.json, *.safetensors, tokenizer.json) -> an ONNX file, for
every command that takes one.

The folder is exported once per content: the key is the sha256 of config.json and of every
safetensors file (with the torch and transformers versions); the export lands in tinyslm's cache
($TINYSLM_CACHE, else $XDG_CACHE_HOME/tinyslm, else ~/.cache/tinyslm), never in the user's folder.
It runs in a child process (`python -m tinyslm.hf_export FOLDER OUT`), so the torch model's memory
is gone before the compile starts, with the choices that export transformers 5 models cleanly:
  config      read as JSON and handed to AutoConfig.for_model: no trust_remote_code, no auto_map
  weights     safetensors only (a pytorch_model.bin is a pickle: refused), float32, offline
  graph       eager attention, use_cache=False (DynamicCache does not export), input_ids [1, T]
              with T dynamic, dynamo exporter at opset 18, weights as external data
The folder's config.json is copied beside the ONNX file (the frontend reads the position limit
from it) and its tokenizer.json is used when --tokenizer is not given.
"""
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import TslError
from .objcache import cache_base

EXTRA = "pip install 'tinyslm[export]'"
DROP = ("auto_map", "transformers_version", "_name_or_path", "torch_dtype", "dtype")


def is_folder(path):
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def read_config(folder):
    """config.json as a dict, checked: a JSON object with a model_type string. Nothing is executed."""
    p = Path(folder) / "config.json"
    if p.stat().st_size > 1 << 20:
        raise TslError(f"{p}: {p.stat().st_size} B is too large for a model config")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise TslError(f"{p}: not valid JSON ({str(e)[:80]})")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
        raise TslError(f"{p}: no \"model_type\" string; not a transformers model config")
    return cfg


def _weights(folder):
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in Path(folder).glob("*.bin"))
        raise TslError(f"{folder}: no *.safetensors weights" + (f" ({', '.join(pickles)}: pickle files, which tinyslm "
                                                                 "does not load; convert them to safetensors)" if pickles else ""))
    for f in files:
        if not f.resolve().is_relative_to(Path(folder).resolve()) or not f.is_file():
            raise TslError(f"{f}: not a regular file inside the model folder")
    return files


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check_extra(folder):
    missing = []
    for name in ("torch", "transformers", "onnxscript"):
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    if missing:
        raise TslError(f"{folder}: exporting a Hugging Face folder to ONNX needs {', '.join(missing)}: {EXTRA} "
                       "(or export it yourself, see README 'Exporting')")


def cache_root():
    return cache_base() / "hf-onnx"


def _key(folder, files, log):
    h = hashlib.sha256()
    h.update(repr((_version("torch"), _version("transformers"), _version("onnxscript"), 1)).encode())
    h.update((Path(folder) / "config.json").read_bytes())
    total = sum(f.stat().st_size for f in files)
    if total > 1 << 28:
        log(f"hashing {total / 2**30:.1f} GiB of safetensors (the export cache's key)")
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:24]


def as_onnx(path, tokenizer=None, quiet=False):
    """-> (ONNX file, tokenizer): `path` itself unless it is a Hugging Face folder, which is exported
    (or found in the cache); its tokenizer.json is used unless `tokenizer` is given."""
    if not Path(path).is_dir() or not is_folder(path):
        return path, tokenizer
    log = (lambda m: None) if quiet else (lambda m: print(f"  {m}", flush=True))
    folder = Path(path)
    read_config(folder)
    files = _weights(folder)
    if tokenizer is None and (folder / "tokenizer.json").is_file():
        tokenizer = folder / "tokenizer.json"
    _check_extra(folder)
    d = cache_root() / _key(folder, files, log)
    onnx_path = d / "model.onnx"
    if onnx_path.is_file():
        log(f"{folder}: exported before, {onnx_path}")
        return onnx_path, tokenizer
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = d.with_name(f".{d.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    log(f"{folder}: exporting to ONNX with torch {_version('torch')}, transformers {_version('transformers')} "
        f"(once; cached in {d})")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    try:
        r = subprocess.run([sys.executable, "-m", "tinyslm.hf_export", str(folder), str(tmp)], env=env,
                           stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0 or not (tmp / "model.onnx").is_file():
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            raise TslError(f"{folder}: export to ONNX failed: {lines[-1][:300] if lines else f'exit {r.returncode}'}")
        try:
            tmp.rename(d)
        except OSError:             # a parallel export of the same folder finished first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return onnx_path, tokenizer


def export(folder, out):
    """The child's job: folder -> out/model.onnx (+ model.onnx.data) and out/config.json."""
    import warnings

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg_dict = read_config(folder)
    try:
        cfg = AutoConfig.for_model(cfg_dict["model_type"], **{k: v for k, v in cfg_dict.items()
                                                              if k not in DROP + ("model_type",)})
    except (ValueError, KeyError) as e:
        raise TslError(f"{folder}/config.json: model_type '{cfg_dict['model_type']}' is not a transformers "
                       f"model ({str(e).splitlines()[0][:100]})")
    print(f"  loading {cfg_dict['model_type']} weights (float32)", flush=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(folder), config=cfg, dtype=torch.float32, use_safetensors=True, local_files_only=True,
        trust_remote_code=False, attn_implementation="eager").eval()
    limit = next((int(cfg_dict[k]) for k in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")
                  if isinstance(cfg_dict.get(k), int) and cfg_dict[k] > 2), 4096)

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False).logits

    print("  exporting (torch.onnx dynamo, opset 18, external data)", flush=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits(model), (torch.zeros((1, 8), dtype=torch.int64),), str(Path(out) / "model.onnx"),
                          input_names=["input_ids"], output_names=["logits"],
                          dynamic_shapes=({1: torch.export.Dim("T", min=2, max=max(8, min(limit, 8192)))},),
                          opset_version=18, dynamo=True, external_data=True, verbose=False)
    (Path(out) / "config.json").write_text(json.dumps(cfg_dict, indent=1))


def config_max_positions(onnx_path):
    """The position limit from a config.json beside an ONNX file (optimum exports and tinyslm's
    own exports put one there), or 0."""
    p = Path(onnx_path).with_name("config.json")
    if not p.is_file():
        return 0
    try:
        cfg = read_config(p.parent)
    except TslError:
        return 0
    for k in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        if isinstance(cfg.get(k), int) and cfg[k] > 0:
            return cfg[k]
    return 0


def _main(argv):
    try:
        export(Path(argv[0]), Path(argv[1]))
    except TslError as e:
        print(f"tinyslm: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # torch/transformers errors: their last line names the problem
        msg = " ".join(str(e).split())[:300]
        print(f"{type(e).__name__}: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
