"""The host trusts nothing a device sends (issue 9). The bundled example runs as firmware on this
machine (tsl_serial_app.c + host_uart_socket.c: a TCP "UART"); a man in the middle on 127.0.0.1
rewrites the frames it sends, re-encoded with valid CRCs: malformed, oversized, stale, duplicated,
reordered and out-of-range. The real command line (`python -m tinyslm`) talks to it through a
pyserial socket:// URL, as to qemu's UART. Each case ends in exit 2 with one stderr line and no
traceback, or in exactly the clean output; never in more tokens than asked."""
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import pytest

import socket_firmware
from conftest import ROOT, compiled_example, tinyslm
from conftest_tools import require_tool
from tinyslm import protocol as P

# cases run through `python -m tinyslm`; the others through cli.main in this process (same code, no
# interpreter start: the suite stays within its time)
SUBPROCESS = {"short", "CRC, always", "silent", "stale ERRORs first", "RUN_ACK for 65535", "65535 items streamed",
              "token out of the vocabulary", "RUN_DONE lost", "every frame twice"}
RUN = ["--ids", "0,48,79,317", "--max-tokens", 20, "--temperature", 0.8, "--seed", 5, "--print-ids"]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return compiled_example(tmp_path_factory, 96, "hostile")


@pytest.fixture(scope="module")
def device(build, tmp_path_factory):
    """The example's serial firmware built for this machine, its UART a TCP port; -> the port."""
    require_tool("gcc", "gcc")
    with socket_firmware.running(socket_firmware.build(build, tmp_path_factory.mktemp("fw") / "fw")) as port:
        yield port


def wire(type_, seq, payload, flags=0, crc_xor=0):
    """Any frame with a valid CRC (crc_xor != 0: a CRC off by those bits, the COBS framing still
    valid), payload over MAX_PAYLOAD included."""
    raw = P.HEADER.pack(type_, flags, seq, len(payload) & 0xFFFF) + bytes(payload)
    return P.cobs_encode(raw + struct.pack("<I", zlib.crc32(raw) ^ crc_xor)) + b"\0"


def again(f, payload=None, seq=None, type_=None):
    return wire(f.type if type_ is None else type_, f.seq if seq is None else seq,
                f.payload if payload is None else payload)


class Hostile:
    """A man in the middle: host -> device bytes pass unchanged; each frame from the device goes
    through rewrite(frame) -> list of wire bytes to send instead (a decoder verdict passes as is)."""

    def __init__(self, target, rewrite, rate=None):
        """rate: bytes per second host -> device (a device that reads slowly), None: as fast as TCP."""
        self.target, self.rewrite, self.stopped = target, rewrite, threading.Event()
        self.rate, self.sent = rate, 0
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
        deadline = time.monotonic() + 120
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                client, _ = self.srv.accept()
            except (socket.timeout, OSError):
                continue
            up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            up.settimeout(None)                    # a silent device is a case, not a broken pipe
            self.socks += [client, up]
            threading.Thread(target=self._pump, args=(client, up, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, P.Decoder()), daemon=True).start()

    def _pump(self, src, dst, dec):
        try:
            while (data := src.recv(4096)):
                if dec is None:
                    self.sent += len(data)
                    for i in range(0, len(data), 16 if self.rate else len(data)):
                        dst.sendall(data[i:i + 16] if self.rate else data)
                        if self.rate:
                            time.sleep(16 / self.rate)
                    continue
                for f in dec.feed(data):
                    dst.sendall(b"".join(self.rewrite(f)) if isinstance(f, P.Frame) else b"\x03\x01\x01\0")
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def passthru(f):
    return [again(f)]


def once(when, then):
    """rewrite: `then(frame)` for the first frame where when(frame), every other frame unchanged."""
    left = [1]

    def rw(f):
        if left[0] and when(f):
            left[0] = 0
            return then(f)
        return [again(f)]
    return rw


def each(when, then):
    return lambda f: then(f) if when(f) else [again(f)]


def is_(t):
    return lambda f: f.type == t


def patch(p, fmt, off, value):
    p = bytearray(p)
    struct.pack_into(fmt, p, off, value)
    return bytes(p)


def cli(*args):
    """tinyslm.cli.main in this process (what `python -m tinyslm` runs, without the interpreter's
    start), for the many cheap cases; an exception escaping main shows as a traceback on stderr."""
    import io
    import subprocess
    import traceback
    from contextlib import redirect_stderr, redirect_stdout
    from tinyslm.cli import main
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code
        except Exception:
            traceback.print_exc(file=err)
            rc = 1
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def one_error_line(r, pattern):
    """Exit 2, one line on stderr (besides verify's progress line for the host part), no traceback."""
    lines = [s for s in r.stderr.strip().splitlines() if not re.fullmatch(r"\s*step \d+/\d+", s)]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert re.search(pattern, lines[0]), lines[0]


def ids_printed(r):
    return [int(x) for x in r.stdout.strip().strip(",").split(",") if x.strip()]


@pytest.fixture(scope="module")
def clean(build, device):
    """The clean answers, straight from the device: identify, and the RUN generation."""
    ident = tinyslm("identify", "--port", f"socket://127.0.0.1:{device}")
    run = tinyslm("run", "--port", f"socket://127.0.0.1:{device}", *RUN)
    host = tinyslm("run", build, *RUN)
    assert ident.returncode == 0 and run.returncode == 0, ident.stderr + run.stderr
    assert run.stdout == host.stdout and len(ids_printed(run)) == 20     # the device is honest
    return ident.stdout, run.stdout


IDENTITY_OFF = {k: 4 + 4 * i for i, k in enumerate(P.IDENTITY_KEYS)}
BAD_IDENTITY = {
    "short": (lambda p: p[:10], r"protocol error: IDENTITY of 10 bytes, expected at least 55"),
    "vocab 2^31-1": (lambda p: patch(p, "<I", IDENTITY_OFF["vocab"], 2**31 - 1), r"vocab 2147483647 outside"),
    "max_seq 0": (lambda p: patch(p, "<I", IDENTITY_OFF["max_seq"], 0), r"max_seq 0 outside"),
    "max_items 2^20": (lambda p: patch(p, "<I", IDENTITY_OFF["max_items"], 1 << 20), r"max_items 1048576 outside"),
    "logits past arena": (lambda p: patch(p, "<I", IDENTITY_OFF["logits_offset"], 2**32 - 8), r"pass the arena"),
    "version 2": (lambda p: patch(p, "<B", 0, 2), r"the firmware speaks serial protocol version 2, this tinyslm "
                                                   r"version 3: build and flash the firmware with this tinyslm"),
    "max_payload": (lambda p: patch(p, "<H", 2, 4096), r"max_payload 4096"),
    "string past end": (lambda p: patch(p, "<B", 52, 200), r"board string of 200 bytes does not fit"),
    "control characters": (lambda p: p[:52] + b"\x05\x1b[2J!" + p[52 + 1 + p[52]:], r"not printable"),
    "trailing bytes": (lambda p: p + b"xyz", r"19 bytes after the last string, expected 16"),
    "eos past vocab": (lambda p: patch(p, "<i", len(p) - 8, 1 << 19), r"tokenizer eos id 524288 outside"),
    "caps without hash": (lambda p: patch(p, "<I", len(p) - 4, 1), r"tokenizer hash 0x00000000 with capabilities 1"),
}


@pytest.mark.parametrize("case", list(BAD_IDENTITY))
def test_identify_refuses_a_bad_identity(device, case):
    fn, pattern = BAD_IDENTITY[case]
    run = tinyslm if case in SUBPROCESS else cli
    with Hostile(device, each(is_(P.IDENTITY), lambda f: [again(f, fn(f.payload))])) as h:
        one_error_line(run("identify", "--port", h.url), pattern)


@pytest.mark.parametrize("case,rewrite,pattern", [
    ("short ERROR", each(is_(P.IDENTITY), lambda f: [again(f, b"\x08\x01\x00", type_=P.ERROR)]),
     r"protocol error: ERROR of 3 bytes, expected 8, in answer to IDENTIFY"),
    ("wrong type", each(is_(P.IDENTITY), lambda f: [again(f, b"\0" * 18, type_=P.ITEM)]),
     r"protocol error: ITEM in answer to IDENTIFY"),
    ("oversized, always", each(is_(P.IDENTITY), lambda f: [wire(P.IDENTITY, f.seq, f.payload * 30)]),
     r"the device on socket://127\.0\.0\.1:\d+ answered, but \d+ frames were malformed"),
    ("CRC, always", each(lambda f: True, lambda f: [wire(f.type, f.seq, f.payload, crc_xor=0x40)]),
     r"the device on socket://127\.0\.0\.1:\d+ answered, but \d+ frames failed their CRC"),
    ("silent", lambda f: [], r"no answer from the device on socket://127\.0\.0\.1:\d+ after 1\.\d s"),
])
def test_identify_fails_in_one_line(device, case, rewrite, pattern):
    with Hostile(device, rewrite) as h:
        one_error_line((tinyslm if case in SUBPROCESS else cli)("identify", "--port", h.url, "--timeout", 1), pattern)


@pytest.mark.parametrize("case,rewrite", [
    ("stale ERRORs first", each(is_(P.IDENTITY), lambda f: [
        wire(P.ERROR, f.seq - 1, struct.pack("<BBxxI", P.E_RANGE, P.IDENTIFY, 3)),
        wire(P.ERROR, f.seq + 5, struct.pack("<BBxxI", P.E_CRC, 0, 0)), again(f)])),
    ("oversized once", once(is_(P.IDENTITY), lambda f: [wire(P.IDENTITY, f.seq, bytes(3000))])),
    ("garbage without a delimiter once", once(is_(P.IDENTITY), lambda f: [b"\x07" * 5000])),
    ("duplicated", lambda f: [again(f), again(f)]),
])
def test_identify_survives(device, clean, case, rewrite):
    with Hostile(device, rewrite) as h:
        r = (tinyslm if case in SUBPROCESS else cli)("identify", "--port", h.url)
    assert r.returncode == 0 and r.stdout == clean[0], r.stderr


class Fetch:
    """rewrite: drop stream item `lost`, so the host fetches it; answer the fetch with item `answer`."""

    def __init__(self, lost, answer):
        self.lost, self.answer, self.stream = lost, answer, None

    def __call__(self, f):
        if f.type != P.ITEM:
            return [again(f)]
        self.stream = f.seq if self.stream is None else self.stream
        if f.seq == self.stream and item_index(f) == self.lost:
            return []
        if f.seq != self.stream:
            return [again(f, patch(f.payload, "<H", 0, self.answer))]
        return [again(f)]


def in_stream(t, pred=lambda f: True):
    """Frames of type t inside a run (ITEM, RUN_DONE, RUN_ACK)."""
    return lambda f: f.type == t and pred(f)


def item_index(f):
    return struct.unpack_from("<H", f.payload)[0]


@pytest.mark.parametrize("case,rewrite,pattern", [
    ("RUN_ACK for 65535", each(is_(P.RUN_ACK), lambda f: [again(f, patch(f.payload, "<H", 2, 65535))]),
     r"RUN_ACK for 65535 items of kind 1; asked for 20"),
    ("65535 items streamed", once(in_stream(P.ITEM), lambda f: [
        again(f, patch(f.payload, "<H", 0, i)) for i in range(0, 400)]),
     r"ITEM index 20 of a run of 20"),
    ("token out of the vocabulary", once(in_stream(P.ITEM, lambda f: item_index(f) == 3),
                                         lambda f: [again(f, patch(f.payload, "<i", 2, 100000))]),
     r"ITEM 3: token 100000 outside the vocabulary \[0, 512\)"),
    ("negative token", once(in_stream(P.ITEM), lambda f: [again(f, patch(f.payload, "<i", 2, -1))]),
     r"token -1 outside the vocabulary"),
    ("short ITEM", once(in_stream(P.ITEM), lambda f: [again(f, f.payload[:10])]),
     r"ITEM of 10 bytes, expected at least 19"),
    ("ITEM text past its end", once(in_stream(P.ITEM), lambda f: [again(f, patch(f.payload, "<B", 18, 7))]),
     r"ITEM of 19 bytes does not hold the 7 text bytes it announces"),
    ("long RUN_DONE", each(is_(P.RUN_DONE), lambda f: [again(f, f.payload + b"\0")]),
     r"RUN_DONE of 21 bytes, expected 20"),
    ("RUN_DONE short of the count", each(is_(P.RUN_DONE), lambda f: [again(f, patch(f.payload, "<H", 2, 19))]),
     r"RUN_DONE after 19 items of kind 1; asked for 20"),
    ("two different item 4", once(in_stream(P.ITEM, lambda f: item_index(f) == 4),
                                  lambda f: [again(f), again(f, patch(f.payload, "<i", 2, 1))]),
     r"two different ITEMs 4"),
    ("RUN_FETCH answered by another item", Fetch(6, 7), r"ITEM 7 in answer to RUN_FETCH 6"),
    ("65535 items announced by RUN_DONE", each(is_(P.RUN_DONE), lambda f: [again(f, patch(f.payload, "<H", 2, 65535))]),
     r"RUN_DONE after 65535 items"),
])
def test_run_refuses_bad_frames(device, case, rewrite, pattern):
    with Hostile(device, rewrite) as h:
        r = (tinyslm if case in SUBPROCESS else cli)("run", "--port", h.url, *RUN)
    one_error_line(r, pattern)
    assert len(ids_printed(r)) <= 20



class Reorder:
    """rewrite: the stream's items in swapped pairs (1 0 3 2 ...)."""

    def __init__(self):
        self.held = None

    def __call__(self, f):
        if f.type != P.ITEM:
            out, self.held = ([self.held] if self.held else []) + [again(f)], None
            return out
        if self.held is None and item_index(f) % 2 == 0:
            self.held = again(f)
            return []
        out, self.held = [again(f)] + ([self.held] if self.held else []), None
        return out


class Lose:
    """rewrite: the run's stream (the frames with the seq of its first one) loses the ITEMs
    `items`, and its RUN_ACK / RUN_DONE if asked; replies to RUN_FETCH and RUN_STATUS pass."""

    def __init__(self, items=(), ack=False, done=False):
        self.items, self.ack, self.done, self.stream = set(items), ack, done, None

    def __call__(self, f):
        if self.stream is None and f.type in (P.RUN_ACK, P.ITEM, P.RUN_DONE):
            self.stream = f.seq
        if f.seq == self.stream and (f.type == P.ITEM and item_index(f) in self.items or
                                     f.type == P.RUN_ACK and self.ack or f.type == P.RUN_DONE and self.done):
            return []
        return [again(f)]


@pytest.mark.parametrize("case,rewrite,max_s", [
    ("every frame twice", lambda f: [again(f), again(f)], None),
    ("items in swapped pairs", Reorder(), None),
    ("RUN_ACK lost", once(is_(P.RUN_ACK), lambda f: []), None),
    ("RUN_DONE lost", once(is_(P.RUN_DONE), lambda f: []), 8),
    ("last item and RUN_DONE lost", Lose(items=[19], done=True), 8),
    ("RUN_ACK, items 2-9 and RUN_DONE lost", Lose(items=range(2, 10), ack=True, done=True), 8),
    ("every item lost", Lose(items=range(20)), None),
    ("stale frames in the stream", each(in_stream(P.ITEM, lambda f: item_index(f) in (3, 11)), lambda f: [
        wire(P.ERROR, f.seq - 1, struct.pack("<BBxxI", P.E_RANGE, P.GEN_START, 3)),
        again(f, patch(f.payload, "<i", 2, 1), seq=f.seq + 7), wire(P.ERROR, 0, b"\1"), again(f)]), None),
])
def test_run_survives(device, clean, case, rewrite, max_s):
    t0 = time.monotonic()
    with Hostile(device, rewrite) as h:
        r = (tinyslm if case in SUBPROCESS else cli)("run", "--port", h.url, *RUN)
    assert r.returncode == 0 and r.stdout == clean[1], r.stdout + r.stderr
    assert "[host-socket: 20 tokens" in r.stderr
    if max_s:
        assert time.monotonic() - t0 < max_s          # a lost final frame costs seconds, not step_timeout


@pytest.mark.parametrize("args,pattern", [
    (["--max-tokens", 70000], r"argument --max-tokens: 70000 out of range: 1 to 65535"),
    (["--max-tokens", -1], r"argument --max-tokens: -1 out of range: 1 to 65535"),
    (["--ids", ",".join(["1"] * 300)], r"a prompt of 300 token ids: the protocol carries at most 251 ids"),
    (["--ids", ",".join(["1"] * 120)], r"a prompt of 120 token ids is longer than the device's max_seq 96"),
    (["--ids", "1,512"], r"token id 512 out of range \[0, 512\)"),
    (["--seed", -1], r"argument --seed: -1 out of range: a seed is 0 to 2\^64-1"),
    (["--seed", 2**64], r"argument --seed: 18446744073709551616 out of range"),
    (["--temperature", "nan"], r"argument --temperature: nan is not a finite number"),
    (["--top-p", "nan"], r"argument --top-p: nan is not a finite number in \[0, 1\]"),
    (["--timeout", 0], r"--timeout 0.0: must be a positive number"),
])
def test_run_refuses_bad_arguments(device, args, pattern):
    """Through cli.main in this process; --max-tokens 70000 also through `python -m tinyslm`."""
    a = [*RUN[:2], *RUN[2:]]
    for k in range(0, len(args), 2):
        if args[k] in a:
            a[a.index(args[k]) + 1] = args[k + 1]
        else:
            a += args[k:k + 2]
    for run in (cli, tinyslm) if args[1] == 70000 else (cli,):
        r = run("run", "--port", f"socket://127.0.0.1:{device}", *a)
        one_error_line(r, pattern)
        assert r.stdout == ""


def test_run_clips_at_max_seq_as_the_host_build_does(build, device):
    args = ["--ids", ",".join(["3"] * 90), "--max-tokens", 200, "--print-ids"]
    dev = tinyslm("run", "--port", f"socket://127.0.0.1:{device}", *args)
    host = tinyslm("run", build, *args)
    assert dev.returncode == 0 and dev.stdout == host.stdout, dev.stderr + host.stderr
    assert len(ids_printed(dev)) == 96 + 1 - 90


VERIFY = ["--steps", 8]


def verify(build, url):
    return tinyslm("verify", build, "--port", url, *VERIFY)


def test_verify_survives_duplicates_and_stale_frames(build, device):
    def rw(f):
        out = [again(f), again(f)]
        if f.type == P.ITEM:
            out.insert(1, again(f, patch(f.payload, "<Q", 10, 1), seq=f.seq - 3))
        return out
    with Hostile(device, rw) as h:
        r = verify(build, h.url)
    assert r.returncode == 0 and "OK host-socket: 8 steps bit-exact on the device" in r.stdout, r.stdout + r.stderr


class Debug:
    """rewrite: verify stream item 2 with another logits hash, so verify asks the device op by op;
    then DEBUG_ACK for step 3 (or, ops=True, OP_HASHES that start at op 5)."""

    def __init__(self, ops=False):
        self.ops, self.stream = ops, None

    def __call__(self, f):
        if self.stream is None and f.type in (P.RUN_ACK, P.ITEM):
            self.stream = f.seq
        if f.type == P.ITEM and f.seq == self.stream and item_index(f) == 2:
            return [again(f, patch(f.payload, "<Q", 10, 12345))]
        if f.type == P.DEBUG_ACK and not self.ops:
            return [again(f, patch(f.payload, "<H", 0, 3))]
        if f.type == P.OP_HASHES and self.ops:
            return [again(f, patch(f.payload, "<H", 0, 5))]
        return [again(f)]


@pytest.mark.parametrize("case,rewrite,pattern", [
    ("ITEM index past the run", once(is_(P.ITEM), lambda f: [again(f, patch(f.payload, "<H", 0, 8))]),
     r"ITEM index 8 of a run of 8"),
    ("RUN_ACK of another kind", each(is_(P.RUN_ACK), lambda f: [again(f, patch(f.payload, "<B", 0, 1))]),
     r"RUN_ACK for 8 items of kind 1; asked for 8 of kind 2"),
    ("DEBUG_ACK for another step", Debug(), r"DEBUG_ACK \(step, n_ops, next_op\) = \(3, "),
    ("OP_HASHES for other ops", Debug(ops=True), r"OP_HASHES for ops 5\.\."),
])
def test_verify_refuses_bad_frames(build, device, case, rewrite, pattern):
    with Hostile(device, rewrite) as h:
        r = verify(build, h.url)
    one_error_line(r, pattern)


def test_run_stops_after_the_end_of_sequence_token(build, device, clean):
    """As on the host build: the device's run ends, for the user, after EOS (the tokenizer's id 1;
    here item 5 is made EOS on the way); the rest of the stream is read and dropped."""
    rw = each(in_stream(P.ITEM, lambda f: item_index(f) == 5), lambda f: [again(f, patch(f.payload, "<i", 2, 1))])
    with Hostile(device, rw) as h:
        r = tinyslm("run", build, "--port", h.url, *RUN)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().strip(",").split(",") == clean[1].strip().strip(",").split(",")[:5] + ["1"]
    assert re.search(r"\[host-socket: 6 tokens, prefill \d+ ns; [0-9.]+ ms/token, [0-9.]+ tokens/s", r.stderr), r.stderr


@pytest.mark.parametrize("case,rewrite,pattern", [
    ("LOAD_ACK for other bytes", once(lambda f: f.type == P.LOAD_ACK and f.payload[:4] != bytes(4),
                                      lambda f: [again(f, patch(f.payload, "<I", 0, 7))]),
     r"LOAD_ACK \(received, capacity\) = \(7, \d+\) in answer to LOAD_DATA, expected \(\d+, \d+\)"),
    ("short LOAD_ACK", each(is_(P.LOAD_ACK), lambda f: [again(f, f.payload[:6])]), r"LOAD_ACK of 6 bytes, expected 8"),
])
def test_load_refuses_bad_acks(build, device, case, rewrite, pattern):
    with Hostile(device, rewrite) as h:
        one_error_line(tinyslm("load", build, "--port", h.url), pattern)


def test_a_slow_reader_gets_no_pile_of_resends(build, device):
    """A device that reads 3,000 bytes/s (a LOAD_DATA frame takes 0.35 s, longer than the first
    resend interval): resends adapt to the measured round trip instead of queueing copies the
    device must read whole before the next request, which would stall the link for good."""
    from tinyslm.serialio import Device
    blob = (build / "model" / "tsl_weights.bin").read_bytes()
    total, arch, crc = struct.unpack_from("<III", blob, 8)
    with Hostile(device, passthru, rate=3000) as h, Device(h.url) as d:
        d.identify()
        d.request(P.LOAD_BEGIN, struct.pack("<III", total, arch, crc))
        for off in range(0, 10 * 1020, 1020):
            d.request(P.LOAD_DATA, struct.pack("<I", off) + blob[off:off + 1020])
        sent = h.sent
    assert sent < 1.4 * 10 * 1040, sent                  # a few early copies, then none


@pytest.fixture(scope="module")
def text_device(build, tmp_path_factory):
    """The same firmware with the build's tokenizer: it encodes, decodes, and sends each token's bytes."""
    require_tool("gcc", "gcc")
    exe = socket_firmware.build(build, tmp_path_factory.mktemp("fwtok") / "fw", tokenizer=True)
    with socket_firmware.running(exe) as port:
        yield port


def test_run_streams_text_before_run_done(build, text_device):
    """`run --port --prompt` with no build directory: the text arrives with the ITEMs, while the
    run's RUN_DONE is still held back, and it is the host build's text."""
    args = ["--prompt", "Once upon a time", "--max-tokens", 12, "--temperature", 0.7, "--seed", 3]
    host = tinyslm("run", build, *args)
    assert host.returncode == 0 and len(host.stdout) > len("Once upon a time") + 5, host.stderr
    released = threading.Event()

    def hold_done(f):
        if f.type == P.RUN_DONE:
            released.wait(30)
        return [again(f)]
    with Hostile(text_device, hold_done) as h:
        proc = subprocess.Popen([sys.executable, "-m", "tinyslm", "run", "--port", h.url, *map(str, args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        early, t0 = b"", time.monotonic()
        while len(early) <= len("Once upon a time") + 2 and time.monotonic() - t0 < 20:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                early += os.read(proc.stdout.fileno(), 4096)
        released.set()
        rest, err = proc.communicate(timeout=60)
    assert len(early) > len("Once upon a time") + 2, early          # text before RUN_DONE came through
    assert proc.returncode == 0 and (early + rest).decode() == host.stdout, err.decode()
    assert "ms/token" in err.decode() and "tokens/s" in err.decode(), err.decode()


def test_token_printer_joins_a_character_split_across_tokens(capsys):
    from types import SimpleNamespace
    from tinyslm.generation import TokenPrinter as _TokenPrinter
    dev = SimpleNamespace(token_bytes=lambda ids: b"<%d>" % len(ids))
    emit = _TokenPrinter(None, SimpleNamespace(print_ids=False, prompt="x"), dev)
    emit(1, "aé".encode()[:2])
    assert capsys.readouterr().out == "x"                        # a\xc3 waits for the character's second byte
    emit(2, "éb".encode()[1:])
    assert capsys.readouterr().out == "aéb"
    emit(3, None)                                                # too long for an ITEM: decoded after the run
    emit(4, b"z")
    emit.close()
    assert capsys.readouterr().out == "<2>\n"
