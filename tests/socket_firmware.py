"""A compiled project's serial firmware (firmware/proto/tsl_serial_app.c) built for this machine,
its UART a TCP server on 127.0.0.1 (host_uart_socket.c): a device reachable as
socket://127.0.0.1:PORT, as qemu's UART is, at native speed. For tests and benchmarks. Also the
firmware under a board's emulator (emulated), and a proxy that records the host's requests."""
import json
import socket
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(out, exe, board="host-socket", tokenizer=False):
    """gcc the project `out` (its model, runtime and app/) with the socket UART into `exe`;
    tokenizer: with the build's tokenizer tables (ENCODE, DECODE, text in ITEMs, the console)."""
    from tinyslm.firmware import _tokenizer_sources
    out = Path(out).resolve()
    man = json.loads((out / "manifest.json").read_text())
    tok_srcs, tok_defs = _tokenizer_sources(out, man, Path(exe).parent) if tokenizer else ([], {})
    cmd = ["gcc", "-O2", "-std=c99", "-ffp-contract=off", "-I", out / "runtime", "-I", out / "model",
           "-I", out / "app", "-I", Path(exe).parent, *[out / s for s in man["sources"]], *tok_srcs,
           *[f"-D{k}" if v is None else f"-D{k}={v}" for k, v in tok_defs.items()], out / "app" / "tsl_proto.c",
           out / "app" / "tsl_serial_app.c", out / "app" / "tsl_console.c",
           ROOT / "firmware" / "proto" / "host_uart_socket.c", f'-DTSL_BOARD_NAME="{board}"', "-DTSL_NO_DEFAULT_MODEL",
           '-DTSL_CYCLES_UNIT="ns"',                                  # host_uart_socket.c counts nanoseconds
           "-o", exe]
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=out)   # .incbin paths
    if r.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))}\n{r.stderr}")
    return exe


@contextmanager
def running(exe):
    """-> the TCP port of the running firmware; stopped on exit."""
    proc = subprocess.Popen([str(exe), "0", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"{exe}: {line!r}")
        yield int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def emulated(build_dir, board="mps2-an386"):
    """The serial firmware of build_dir for `board` under its emulator (the test is skipped, or
    fails under TSL_REQUIRE_TOOLCHAINS, without the toolchain or emulator); -> the UART's TCP port."""
    from conftest_tools import require_tool, require_toolchain
    from tinyslm.boards import load_board
    from tinyslm.firmware import Emulation, build_firmware, free_port
    B = load_board(board)
    require_toolchain(B)
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    elf = build_firmware(build_dir, B.name)["elf"]
    port = free_port()
    with Emulation(B, elf, port):
        yield port


class Recorder:
    """A TCP proxy on 127.0.0.1 to the device at `target`: the bytes pass unchanged both ways, and
    the type names of the frames are kept in order: the host's in `requests`, the device's in `replies`."""

    def __init__(self, target):
        from tinyslm import protocol as P
        self.P, self.target, self.requests, self.replies, self.stopped = P, target, [], [], threading.Event()
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.srv.settimeout(0.1)
        self.url = f"socket://127.0.0.1:{self.srv.getsockname()[1]}"
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        for s in [self.srv, *self.socks]:
            s.close()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                client, _ = self.srv.accept()
            except (socket.timeout, OSError):
                continue
            up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            up.settimeout(None)
            self.socks += [client, up]
            threading.Thread(target=self._pump, args=(client, up, self.requests), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, self.replies), daemon=True).start()

    def _pump(self, src, dst, names):
        dec = self.P.Decoder()
        try:
            while (data := src.recv(4096)):
                names += [f.name for f in dec.feed(data) if isinstance(f, self.P.Frame)]
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
