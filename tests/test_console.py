"""The text console on the serial firmware's UART (what `screen /dev/ttyACM0 115200` shows), driven
under qemu through the emulator's socket: banner, prompt, echo, an answer streaming back equal to
the host build's text, the commands, a full context, and the binary protocol on the same port."""
import socket
import time

import pytest

import socket_firmware
from conftest import compiled_example, tinyslm
from tinyslm.serialio import Device


class Console:
    """A person at a terminal: types a line, reads until the next prompt."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s.settimeout(0.2)

    def line(self, text, timeout=60.0):
        self.s.sendall(text.encode() + b"\r")
        out, t0 = b"", time.monotonic()
        while not out.endswith(b"\r\n> ") and time.monotonic() - t0 < timeout:
            try:
                out += self.s.recv(4096)
            except socket.timeout:
                pass
        assert out.endswith(b"\r\n> "), out
        return out.decode("utf-8")

    def close(self):
        self.s.close()


@pytest.fixture(scope="module")
def build(example, tmp_path_factory):
    return compiled_example(tmp_path_factory, 96, "console")


@pytest.fixture(scope="module")
def device(build):
    with socket_firmware.emulated(build, "mps2-an386") as port:
        yield port


def test_console_session(build, device):
    args = ["--prompt", "Once upon a time", "--max-tokens", 20, "--seed", 3, "--temperature", 0.7]
    host = tinyslm("run", build, *args)
    assert host.returncode == 0, host.stderr
    answer = host.stdout[len("Once upon a time"):].rstrip("\n").replace("\n", "\r\n")
    con = Console(device)
    banner = con.line("")
    assert "tinyslm" in banner and "on mps2-an386" in banner and "vocab 512, context 96 tokens" in banner
    assert "memory: weights" in banner and "/stats" in banner
    assert "temperature 0.70" in con.line("/temp 0.7")
    assert "seed 3" in con.line("/seed 3")
    assert "at most 20 tokens" in con.line("/tokens 20")
    out = con.line("Once upon a time")
    assert out == "Once upon a time" + answer + "\r\n> ", out              # echo, then the model's text
    stats = con.line("/stats")
    assert "last answer: 20 tokens" in stats and " systick/token" in stats and "tokens/s at 25 MHz" in stats, stats
    assert "an emulator" in stats
    assert "commands:" in con.line("/nonsense")
    more = con.line(" And then")                                  # continues the conversation
    assert more.startswith(" And then") and len(more) > len(" And then\r\n> ")
    # the whole context: the answer stops at max_seq, then the console says so until /reset
    assert "at most 96 tokens" in con.line("/tokens 96")
    assert "[context full; /reset to start again]" in con.line(" The")
    assert "[context full: 96 tokens; /reset to start again]" in con.line(" Again")
    assert "context cleared" in con.line("/reset")
    assert "temperature 0.00 (greedy)" in con.line("/temp 0")
    assert con.line("Once upon a time").startswith("Once upon a time")
    con.close()
    # the binary protocol on the same port, and the console after it
    with Device(f"socket://127.0.0.1:{device}") as dev:
        assert dev.identify()["board"] == "mps2-an386"
        assert len(list(dev.generate([0, 48, 79], 5))) == 5
    con = Console(device)
    out = con.line("/stats")
    assert "last answer" in out or "no answer yet" in out
    con.close()
