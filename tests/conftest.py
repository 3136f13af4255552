import os
import subprocess
import sys
from pathlib import Path

import pytest

# `-n 2` on 2 cores gives each worker a core: numpy's BLAS, torch and OpenMP keep to one thread each
# (two BLAS threads per worker made a 352x352 inverse 20x slower), here and in the CLI's children.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Small random-weight models exported by torch.onnx from tests/torch_models.py, built once."""
    torch_models = pytest.importorskip("torch_models")
    d = tmp_path_factory.mktemp("models")
    return {
        "llama": torch_models.build_llama_onnx(d / "llama.onnx")[0],
        "llama_ts": torch_models.build_llama_onnx(d / "llama_ts.onnx", dynamo=False)[0],
        "gpt2": torch_models.build_gpt2_onnx(d / "gpt2.onnx")[0],
    }


@pytest.fixture(scope="session")
def example():
    p = ROOT / "examples" / "tiny_llama.onnx"
    if not p.exists():
        pytest.fail("examples/tiny_llama.onnx is missing")
    return p


def tinyslm(*args, timeout=600):
    """Run the command line as a user does: `python -m tinyslm ARGS` from the checkout."""
    return subprocess.run([sys.executable, "-m", "tinyslm", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def compiled_example(tmp_path_factory, max_seq, tag):
    """The bundled example compiled for the host into a fresh directory."""
    from tinyslm.pipeline import compile_model
    out = tmp_path_factory.mktemp(tag) / "build"
    compile_model(ROOT / "examples" / "tiny_llama.onnx", out, "host", max_seq, "int8", quiet=True)
    return out
