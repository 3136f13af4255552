"""The bundled example, end to end on every emulated board: the same C, cross-compiled, must
reproduce the reference bit for bit (logits, sampled tokens, KV cache) over 64 decode steps."""
import subprocess
import sys

import pytest

from conftest import ROOT
from conftest_tools import require_tool, require_toolchain
from tinyslm.boards import load_board

BOARDS = ["mps2-an386", "mps3-an547", "rpi5", "rpi4", "esp32c3", "esp32", "mps2-an505", "mps2-an500", "mps2-an385"]


def require_board_tools(board):
    B = load_board(board)
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))


@pytest.fixture(scope="module")
def example_build(example, tmp_path_factory):
    from tinyslm.pipeline import compile_model
    out = tmp_path_factory.mktemp("tgt") / "build"
    compile_model(example, out, "host", 128, "int8", quiet=True)
    return out


@pytest.mark.parametrize("board", BOARDS)
def test_example_bit_exact_on_board(example_build, board):
    require_board_tools(board)
    r = subprocess.run([sys.executable, "-m", "tinyslm", "verify", str(example_build), "--board", board],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"OK {board}: 64 steps bit-exact" in r.stdout


def test_board_that_does_not_fit(tmp_path):
    """A model too big for the board is refused with what would make it fit."""
    from tinyslm.errors import TslError
    from tinyslm.pipeline import compile_model
    big = ROOT / "examples" / "tiny_llama.onnx"
    with pytest.raises(TslError, match=r"nucleo-f446re.*(int4|--max-seq)"):
        compile_model(big, tmp_path / "b", "nucleo-f446re", 256, "int8", quiet=True)
    assert not (tmp_path / "b").exists()
