"""tinyslm-run, the native program `tinyslm build --board rpi5` makes: under qemu-aarch64 (user mode)
it must print the same text as `tinyslm run` on the host build with the same settings, at any
thread count; chat mode continues one KV cache over stdin lines; --serial is the serial firmware."""
import subprocess
import sys

import pytest

from conftest import ROOT
from conftest_tools import require_tool, require_toolchain
from tinyslm.boards import load_board

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def native(example, tmp_path_factory):
    from tinyslm.firmware import build_firmware
    from tinyslm.pipeline import compile_model
    B = load_board("rpi5")
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    out = tmp_path_factory.mktemp("native") / "build"
    compile_model(example, out, "rpi5", 256, "int8", example.with_name("tokenizer.json"), quiet=True)
    exe = build_firmware(out, "rpi5")["elf"]
    assert exe.name == "tinyslm-run"
    from tinyslm import targets
    return out, targets.emulator_cmd(B, exe)


def run_native(cmd, *args, stdin=None):
    return subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("sampling", [[], ["--temp", "0.8", "--top-p", "0.9", "--seed", "5"]])
def test_same_text_as_tinyslm_run(native, sampling):
    out, cmd = native
    py_args = [a.replace("--temp", "--temperature") for a in sampling]
    ref = subprocess.run([sys.executable, "-m", "tinyslm", "run", str(out), "--prompt", PROMPT, "--max-tokens", "40",
                          *py_args], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert ref.returncode == 0, ref.stderr
    for t in ("1", "4"):
        r = run_native(cmd, "-p", PROMPT, "-n", "40", "-t", t, *sampling)
        assert r.returncode == 0, r.stderr
        assert r.stdout == ref.stdout
        assert "tok/s" in r.stderr and "ms/token" in r.stderr and f"{t} threads" in r.stderr
    assert len(ref.stdout) > len(PROMPT) + 20


def test_chat_continues_the_cache(native):
    """Turn 2 sees turn 1: the same line after a different first turn gives a different continuation
    (greedy), and each turn prints its line then the tokens."""
    _, cmd = native
    a = run_native(cmd, "--chat", "-p", PROMPT, "-n", "12", stdin="She said\n")
    b = run_native(cmd, "--chat", "-p", "It was", "-n", "12", stdin="She said\n")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    la, lb = a.stdout.splitlines(), b.stdout.splitlines()
    assert len(la) == 2 and la[0].startswith(PROMPT) and la[1].startswith("She said")
    assert lb[1].startswith("She said") and la[1] != lb[1]


def test_bad_options(native):
    _, cmd = native
    for args in (["-n", "0"], ["--bogus", "1"], ["-t", "65"], ["-p"]):
        r = run_native(cmd, *args)
        assert r.returncode == 2 and r.stderr.startswith("tinyslm-run: ") and len(r.stderr.splitlines()) == 1, args


def test_serial_mode_identifies(native):
    from tinyslm.firmware import Emulation, free_port
    from tinyslm.serialio import Device
    out, _ = native
    B = load_board("rpi5")
    port = free_port()
    exe = out / ".tinyslm" / "fw-rpi5" / "tinyslm-run"
    with Emulation(B, exe, port):
        with Device(f"socket://127.0.0.1:{port}") as dev:
            assert dev.identify()["board"] == "rpi5"
