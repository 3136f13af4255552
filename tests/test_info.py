"""`tinyslm info`'s per-token figures: the weights a decoded token streams and the bound that puts
on tokens/s at the board's DRAM bandwidth (issue 15: a reader works out the memory bound)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "tiny_llama.onnx"


def _info(tmp_path, name, *opts):
    out = tmp_path / name
    subprocess.run([sys.executable, "-m", "tinyslm", "compile", EXAMPLE, "-o", out, "--board", "rpi5", *opts],
                   check=True, capture_output=True, cwd=ROOT)
    r = subprocess.run([sys.executable, "-m", "tinyslm", "info", out], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _kib(text, what):
    m = re.search(re.escape(what) + r"[^\n]*?([\d.]+) (KiB|MiB)\n", text)
    return float(m.group(1)) * (1024 if m.group(2) == "MiB" else 1)


def test_info_streamed_bytes_count_the_residual_pass(tmp_path):
    one = _info(tmp_path, "one", "--mlp-passes", "1")
    two = _info(tmp_path, "two")
    a, b = _kib(one, "matvec weights streamed"), _kib(two, "matvec weights streamed")
    # the second pass reads each w_down again: 4 layers x (128 x 352 int8 + 128 float32 row scales)
    assert abs((b - a) - 4 * (128 * 352 + 4 * 128) / 1024) < 1.5, (a, b)
    m = re.search(r"at 17 GB/s peak DRAM bandwidth \(rpi5\): at most [\d,]+ tokens/s at the last position, ([\d,]+) "
                  r"with an empty cache", one)
    assert m and abs(int(m.group(1).replace(",", "")) - 17e9 / (a * 1024)) / (17e9 / (a * 1024)) < 0.01, one
