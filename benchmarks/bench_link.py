"""The serial host over a damaged link: sessions that give exactly the clean answers, and their
wall time, per damage level and host setting.

    python benchmarks/bench_link.py [sessions]

The bundled example's firmware built for this machine (tests/socket_firmware.py), behind
tests/fault_proxy.py (bytes flipped and dropped at random, both directions, a new seed per
session). A session: identify, then a 20-token generation (temperature 0.8). Prints one table;
every row is measured in this run. Timings are wall-clock on this machine; compare rows, not runs.
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import socket_firmware  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402
from tinyslm.errors import TslError  # noqa: E402
from tinyslm.pipeline import compile_model  # noqa: E402
from tinyslm.serialio import Device  # noqa: E402

IDS, N, SAMPLING = [0, 48, 79, 317], 20, (0.8, 0.9, 5)
SETTINGS = {"defaults (the command line's)": {}, "retries=4": dict(retries=4)}
DAMAGE = [(0.005, 0.0025), (0.01, 0.005), (0.02, 0.01)]


def session(port, seed, flip, drop, want, kw):
    t0 = time.monotonic()
    with FaultProxy(port, seed=seed, drop=drop, flip=flip, max_seconds=300) as px:
        try:
            with Device(f"socket://127.0.0.1:{px.port}", **kw) as d:
                d.identify()
                got = [t for t, _ in d.generate(IDS, N, *SAMPLING)]
        except TslError:
            got = None
    if got is not None and got != want:
        raise SystemExit(f"seed {seed}: WRONG tokens {got} != {want}")     # never allowed
    return got == want, time.monotonic() - t0


def main():
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    tmp = Path(tempfile.mkdtemp())
    compile_model(ROOT / "examples" / "tiny_llama.onnx", tmp / "b", "host", 96, "int8", quiet=True)
    with socket_firmware.running(socket_firmware.build(tmp / "b", tmp / "fw")) as port:
        with Device(f"socket://127.0.0.1:{port}") as d:
            want = [t for t, _ in d.generate(IDS, N, *SAMPLING)]
        print(f"{sessions} sessions per row: identify + {N} tokens, example firmware on this machine")
        print(f"{'host setting':<32} {'flip':>6} {'drop':>6} {'identical':>10} {'median s':>9} {'p95 s':>7} {'max s':>7}")
        for name, kw in SETTINGS.items():
            for flip, drop in DAMAGE:
                res = [session(port, s, flip, drop, want, kw) for s in range(sessions)]
                t = sorted(dt for _, dt in res)
                print(f"{name:<32} {flip:>6.2%} {drop:>6.2%} {sum(ok for ok, _ in res):>10} "
                      f"{statistics.median(t):>9.2f} {t[int(0.95 * (len(t) - 1))]:>7.2f} {t[-1]:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
