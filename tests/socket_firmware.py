"""A compiled project's serial firmware (firmware/proto/tsl_serial_app.c) built for this machine,
its UART a TCP server on 127.0.0.1 (host_uart_socket.c): a device reachable as
socket://127.0.0.1:PORT, as qemu's UART is, at native speed. For tests and benchmarks."""
import json
import subprocess
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(out, exe, board="host-socket"):
    """gcc the project `out` (its model, runtime and app/) with the socket UART into `exe`."""
    out = Path(out).resolve()
    man = json.loads((out / "manifest.json").read_text())
    cmd = ["gcc", "-O2", "-std=c99", "-ffp-contract=off", "-I", out / "runtime", "-I", out / "model",
           "-I", out / "app", *[out / s for s in man["sources"]], out / "app" / "tsl_proto.c",
           out / "app" / "tsl_serial_app.c", ROOT / "firmware" / "proto" / "host_uart_socket.c",
           f'-DTSL_BOARD_NAME="{board}"', "-o", exe]
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
