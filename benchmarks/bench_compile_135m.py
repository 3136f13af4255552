"""Compile time and memory at scale: a SmolLM-135M-shaped Llama (random weights, built here from a
config; nothing downloaded), exported by torch.onnx, compiled for a board, run on the host build.

    python benchmarks/bench_compile_135m.py [--board rpi5] [--tokens 8]

Prints one table: export, compile (by stage total), host build, tokens/s, peak RSS.
"""
import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMOLLM_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                   num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                   rope_theta=10000.0, tie_word_embeddings=True, rms_norm_eps=1e-5)


def export(path):
    """The model is built and exported by tests/hf_models.py (the same code the tests use)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import hf_models
    hf_models.export_full("llama", path, SMOLLM_135M, max_t=2048)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--board", default="rpi5")
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--max-seq", type=int, default=512)
    a = ap.parse_args()
    from tinyslm.hostsim import HostModel
    from tinyslm.pipeline import compile_model
    with tempfile.TemporaryDirectory() as td:
        onnx_path = Path(td) / "smollm135m.onnx"
        t0 = time.perf_counter()
        export(onnx_path)
        t_export = time.perf_counter() - t0
        out = Path(td) / "build"
        t0 = time.perf_counter()
        man = compile_model(onnx_path, out, a.board, a.max_seq, "int8", quiet=False)
        t_compile = time.perf_counter() - t0
        # the same sources, built for this machine: the host simulation of the board's build
        t0 = time.perf_counter()
        host = HostModel(out)
        t_build = time.perf_counter() - t0
        host.reset()
        t0 = time.perf_counter()
        for pos in range(a.tokens):
            host.step(pos + 1, pos)
        tps = a.tokens / (time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [("parameters", f"{man['model']['n_params'] / 1e6:.1f} M"), ("export (torch.onnx, dynamo)", f"{t_export:.1f} s"),
            (f"tinyslm compile --board {a.board}", f"{t_compile:.1f} s"),
            ("host build (cc -O2, cffi)", f"{t_build:.1f} s"), ("weights blob", f"{man['weights']['bytes'] / 2**20:.1f} MiB"),
            ("arena / KV cache", f"{man['memory']['arena_bytes'] / 1024:.0f} KiB / {man['memory']['kv_bytes'] / 2**20:.1f} MiB"),
            ("host build tokens/s", f"{tps:.1f}"), ("peak RSS of this process", f"{rss:.0f} MiB")]
    for k, v in rows:
        print(f"{k:<36} {v:>14}")


if __name__ == "__main__":
    main()
