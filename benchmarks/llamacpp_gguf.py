"""The bundled example (or any recognized plain Llama) in llama.cpp's format, for the comparisons of
benchmarks/quality.py and benchmarks/bench_llamacpp.py. Benchmarks only: tinyslm never imports it.

    bindir, conv = find(DIR)                      # DIR: benchmarks/build_llamacpp.sh's DIR
    hf_checkpoint(spec, out)                      # ModelSpec -> Hugging Face Llama folder (safetensors)
    to_gguf(conv, bindir, hf, out, ["Q8_0"])      # -> {"F32": path, "Q8_0": path}

convert_hf_to_gguf.py is run with two patches, both about the tokenizer only (decode sees ids):
the example's byte-level BPE has no pre-tokenizer hash llama.cpp knows, so it is declared gpt-2;
and sentencepiece is not installed, so the Llama converter's sentencepiece attempt is skipped (as
it would be with no tokenizer.model) and it falls through to the BPE tokenizer.json.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from tinyslm.errors import TslError

ROOT = Path(__file__).resolve().parent.parent

CONVERT = r"""
import sys
root = sys.argv[1]
sys.path[:0] = [root, root + "/gguf-py"]
import conversion.base as base
def no_sentencepiece(self, *a, **k):
    raise FileNotFoundError("no tokenizer.model")
base.TextModel._set_vocab_sentencepiece = no_sentencepiece
base.TextModel._set_vocab_llama_hf = no_sentencepiece
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
import convert_hf_to_gguf as c
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[2:]
c.main()
"""


def find(d):
    """-> (host bin folder, convert_hf_to_gguf.py) of a build_llamacpp.sh DIR, or raise TslError."""
    d = Path(d)
    bindir = d / "build" / "bin"
    conv = sorted(d.glob("llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    if not conv or not (bindir / "llama-quantize").is_file():
        raise TslError(f"{d}: no llama.cpp build (sh benchmarks/build_llamacpp.sh {d})")
    if str(conv[-1].parent / "gguf-py") not in sys.path:
        sys.path.append(str(conv[-1].parent / "gguf-py"))
    return bindir, conv[-1]


def hf_checkpoint(spec, out, tokenizer=ROOT / "examples" / "tokenizer.json", max_pos=256):
    """The float ModelSpec as a Hugging Face Llama folder (model.safetensors, config.json, the
    tokenizer) for convert_hf_to_gguf.py."""
    from safetensors.numpy import save_file
    if spec.family != "llama" or spec.rope_interleaved or spec.rotary_dim != spec.head_dim:
        raise TslError("llama.cpp comparison: not a plain Llama (rotate-half RoPE over whole heads)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = {"model.embed_tokens.weight": spec.tok_emb, "model.norm.weight": spec.final_norm.g}
    if not spec.tied:
        t["lm_head.weight"] = spec.lm_head
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
               rope_theta=round(theta, 3), max_position_embeddings=max_pos, tie_word_embeddings=bool(spec.tied),
               hidden_act="silu", bos_token_id=0, eos_token_id=1, torch_dtype="float32")
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    shutil.copy(tokenizer, out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(json.dumps(dict(
        bos_token="<|bos|>", eos_token="<|eos|>", add_bos_token=True, tokenizer_class="PreTrainedTokenizerFast")))
    return out


def weight_bytes(gguf):
    """Bytes of a GGUF file's tensor data (its metadata, the tokenizer among it, left out), from the
    sdist's own gguf-py reader (find() puts it on sys.path): what bytes per weight counts on
    tinyslm's side too."""
    from gguf import GGUFReader
    return int(sum(t.n_bytes for t in GGUFReader(str(gguf)).tensors))


def to_gguf(conv, bindir, hf, out, quants):
    """HF folder -> {"F32": f32 GGUF, q: GGUF for each llama-quantize type q} in folder out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hf = Path(hf)
    if not (hf / "tokenizer.json").is_file():
        shutil.copy(ROOT / "examples" / "tokenizer.json", hf / "tokenizer.json")
    res = {"F32": out / f"{hf.name}-F32.gguf"}
    env = dict(os.environ, PYTHONPATH=str(Path(conv).parent / "gguf-py"))
    r = subprocess.run([sys.executable, "-c", CONVERT, str(Path(conv).parent), str(hf), "--outtype", "f32",
                        "--outfile", str(res["F32"])], capture_output=True, text=True, env=env)
    if r.returncode:
        raise TslError(f"convert_hf_to_gguf.py failed: {r.stderr.strip()[-600:]}")
    for q in quants:
        res[q] = out / f"{hf.name}-{q}.gguf"
        r = subprocess.run([str(Path(bindir) / "llama-quantize"), str(res["F32"]), str(res[q]), q],
                           capture_output=True, text=True)
        if r.returncode:
            raise TslError(f"llama-quantize {q} failed: {(r.stderr or r.stdout).strip()[-400:]}")
    return res
