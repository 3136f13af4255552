"""The serial protocol (docs/protocol.md): Python framing, the C parser against it byte for byte,
the C side under sanitizers and fuzzers, and the firmware main loop end to end over a TCP "UART",
clean and through a proxy that damages bytes. The device runs a fake model (tests/fuzz/fake_model,
a TEST DOUBLE) with the real sampler."""
import os
import random
import shutil
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from tinyslm import protocol as P
from tinyslm.errors import TslError
from tinyslm.serialio import Device

ROOT = Path(__file__).resolve().parent.parent
PROTO, FW, FUZZ = ROOT / "firmware" / "proto", ROOT / "firmware", ROOT / "tests" / "fuzz"
FAKE = FUZZ / "fake_model"
CFLAGS = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"]
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
INCS = ["-I", str(PROTO), "-I", str(FW), "-I", str(FAKE)]
APP_SRCS = [PROTO / "tsl_serial_app.c", PROTO / "tsl_proto.c", FW / "tsl_sampler.c", FAKE / "tsl_model.c"]   # no tokenizer: no console
VOCAB, MAX_SEQ, N_OPS, ARENA, KV, LOGITS_OFF, ARCH = 40, 48, 3, 256, 64, 64, 0x5EED0001  # fake_model


def require_tool(name, install):
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("TSL_REQUIRE_TOOLCHAINS") == "1":
        pytest.fail(f"{name} not found: install {install} (TSL_REQUIRE_TOOLCHAINS=1)")
    pytest.skip(f"{name} not found: install {install}")


def build(out, srcs, flags=(), cc="gcc"):
    cmd = [require_tool(cc, cc), *CFLAGS, *flags, *INCS, *map(str, srcs), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return out


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in bytes(data):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def payloads(rng, n):
    """Random payloads, with the lengths and bytes where COBS has edges."""
    fixed = [b"", b"\0", b"\0" * 1024, b"\xff" * 1024, bytes(range(1, 255)), bytes(range(1, 256)) * 4]
    lens = [253, 254, 255, 256, 507, 508, 509, 1023, 1024]
    out = fixed + [rng.randbytes(k) for k in lens]
    for _ in range(n):
        k = rng.choice([rng.randrange(16), rng.randrange(P.MAX_PAYLOAD + 1)])
        zeros = rng.random()
        out.append(bytes(0 if rng.random() < zeros else rng.randrange(1, 256) for _ in range(k)))
    return out


def frames(rng, n):
    return [(rng.randrange(256), rng.randrange(256), rng.randrange(65536), p) for p in payloads(rng, n)]


def damaged_stream(rng, n):
    """Valid frames mixed with every kind of damage: flips, drops, truncation, duplicates, garbage,
    runs without a delimiter, and frames whose payload is over the limit."""
    out = bytearray()
    for t, f, s, p in frames(rng, n):
        w = bytearray(P.encode_frame(t, f, s, p))
        k = rng.randrange(9)
        if k == 0 and len(w) > 1:
            w[rng.randrange(len(w) - 1)] ^= 1 << rng.randrange(8)
        elif k == 1:
            del w[rng.randrange(len(w))]
        elif k == 2:
            w = w[:rng.randrange(len(w))]
        elif k == 3:
            w = w + w
        elif k == 4:
            w += rng.randbytes(rng.randrange(40))
        elif k == 5:
            w = bytearray(rng.randrange(1, 256) for _ in range(rng.randrange(1000, 5000))) + b"\0"
        elif k == 6:
            big = rng.randbytes(P.MAX_PAYLOAD + 1 + rng.randrange(300))
            raw = P.HEADER.pack(t, f, s, len(big) & 0xFFFF) + big
            w = bytearray(P.cobs_encode(raw + struct.pack("<I", zlib.crc32(raw))) + b"\0")
        out += w
    return bytes(out)


# ---- (1) Python framing ----

def test_python_round_trip():
    rng = random.Random(1)
    for t, f, s, p in frames(rng, 300):
        w = P.encode_frame(t, f, s, p)
        assert w[-1] == 0 and 0 not in w[:-1] and len(w) <= P.MAX_WIRE
        dec, got = P.Decoder(), []
        cuts = sorted(rng.sample(range(len(w) + 1), min(3, len(w) + 1)))
        for a, b in zip([0] + cuts, cuts + [len(w)]):       # arbitrary read boundaries
            got += dec.feed(w[a:b])
        assert got == [P.Frame(t, f, s, p, zlib.crc32(P.HEADER.pack(t, f, s, len(p)) + p))]
    with pytest.raises(ValueError):
        P.encode_frame(1, 0, 0, bytes(P.MAX_PAYLOAD + 1))


def test_python_never_misreads():
    """A damaged frame is reported as an error or lost, never decoded into a different frame."""
    rng = random.Random(2)
    for t, f, s, p in frames(rng, 300):
        w = bytearray(P.encode_frame(t, f, s, p))
        for _ in range(4):
            d = bytearray(w)
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(d) - 1)
                d[i] = rng.randrange(256) if rng.random() < 0.5 else d[i] ^ (1 << rng.randrange(8))
            if rng.random() < 0.3:
                del d[rng.randrange(len(d) - 1)]
            for r in P.Decoder().feed(d):
                assert isinstance(r, int) or r.payload == p and (r.type, r.flags, r.seq) == (t, f, s)
    assert P.Decoder().feed(b"\x01" * 5000 + b"\0") == [P.E_TOO_LONG]
    assert P.Decoder().feed(b"\0\0\0") == []
    assert P.Decoder().feed(b"\x05ab\0") == [P.E_FRAME]


def test_constants_mirror_the_c_header():
    import re
    h = (PROTO / "tsl_proto.h").read_text()
    defs = {m[1]: int(m[2], 0) for m in re.finditer(r"#define (TSL_\w+) (0x[0-9A-F]+|\d+)u?\b", h)}
    for code, name in P.NAMES.items():
        assert defs[f"TSL_MSG_{name}"] == code, name
    errors = {k: v for k, v in vars(P).items() if k.startswith("E_")}
    assert errors == {k[len("TSL_PROTO_"):]: v for k, v in defs.items() if k.startswith("TSL_PROTO_E_")}
    assert (defs["TSL_PROTO_MAX_PAYLOAD"], defs["TSL_PROTO_VERSION"], defs["TSL_FLAG_SYNC"]) == \
        (P.MAX_PAYLOAD, P.VERSION, P.FLAG_SYNC)
    assert len(P.NAMES) == sum(k.startswith("TSL_MSG_") for k in defs)


def test_reply_parsers_take_only_what_fits():
    """Every reply parser, on payloads of any length and content, returns or raises BadPayload
    (the host's one-line protocol error), never struct.error or IndexError."""
    rng = random.Random(6)
    parsers = [P.parse_identity, P.parse_item, P.parse_run_ack, P.parse_run_done, P.parse_debug_ack,
               P.parse_op_hashes, P.parse_load_ack, P.parse_error,
               lambda p: P.parse_item(p, count=3, vocab=VOCAB), P.parse_ids, lambda p: P.parse_ids(p, VOCAB),
               P.parse_text, lambda p: P.parse_text(p, 3)]
    good = (struct.pack("<BBH11Ii", P.VERSION, 0, 1024, ARCH, 1, 96, ARENA, KV, VOCAB, MAX_SEQ, N_OPS, LOGITS_OFF, 96,
                        MAX_SEQ, 0) + b"\x04test\x01v\x02ns" + struct.pack("<IiiI", 0, -1, -1, 0))
    assert P.parse_identity(good)["board"] == "test"
    for fn in parsers:
        for n in list(range(80)) + [255, 1024]:
            for p in (rng.randbytes(n), bytes(n), good[:n], good + rng.randbytes(n)):
                try:
                    fn(p)
                except P.BadPayload:
                    pass
    with pytest.raises(P.BadPayload, match="vocab 2147483647 outside"):
        P.parse_identity(good[:24] + struct.pack("<I", 2**31 - 1) + good[28:])
    with pytest.raises(P.BadPayload, match="ITEM index 3 of a run of 3"):
        P.parse_item(struct.pack("<HiIQB", 3, 0, 0, 0, 0), count=3, vocab=VOCAB)
    with pytest.raises(P.BadPayload, match=f"token {VOCAB} outside"):
        P.parse_item(struct.pack("<HiIQB", 0, VOCAB, 0, 0, 0), count=3, vocab=VOCAB)
    assert P.parse_item(struct.pack("<HiIQB", 1, 5, 9, 0, 3) + b"a\xc3\xa9", 3, VOCAB)[4] == "aé".encode()
    assert P.parse_item(struct.pack("<HiIQB", 1, 5, 9, 0, 255), 3, VOCAB)[4] is None   # too long to carry
    with pytest.raises(P.BadPayload, match="ITEM of 21 bytes does not hold the 3 text bytes it announces"):
        P.parse_item(struct.pack("<HiIQB", 1, 5, 9, 0, 3) + b"ab", 3, VOCAB)


# ---- (2) the C parser and encoder through cffi ----

CDEF = f"""
typedef struct {{ uint8_t type, flags; uint16_t seq, len; uint32_t crc; const uint8_t *payload; }} tsl_frame;
typedef struct {{ uint8_t buf[{P.MAX_RAW}]; uint32_t n; uint8_t code, left; tsl_frame frame; }} tsl_proto_parser;
void tsl_proto_init(tsl_proto_parser *p);
int32_t tsl_proto_feed(tsl_proto_parser *p, uint8_t byte);
uint32_t tsl_proto_encode(uint8_t *out, uint32_t cap, uint8_t type, uint8_t flags, uint16_t seq,
                          const uint8_t *payload, uint32_t len);
uint32_t tsl_crc32(uint32_t crc, const uint8_t *p, uint32_t n);
uint64_t tsl_fnv1a64(const uint8_t *p, uint32_t n);
extern const uint32_t tsl_test_layout[3];
"""


@pytest.fixture(scope="module")
def cproto(tmp_path_factory):
    cffi = pytest.importorskip("cffi")
    d = tmp_path_factory.mktemp("cproto")
    layout = d / "layout.c"     # the struct layout as the C compiler sees it, checked against CDEF
    layout.write_text('#include <stddef.h>\n#include "tsl_proto.h"\nconst uint32_t tsl_test_layout[3] = '
                      '{sizeof(tsl_proto_parser), offsetof(tsl_proto_parser, frame), sizeof(tsl_frame)};\n')
    so = build(d / "libtslproto.so", [PROTO / "tsl_proto.c", layout], ["-shared", "-fPIC"])
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    lib = ffi.dlopen(str(so))
    assert list(lib.tsl_test_layout) == [ffi.sizeof("tsl_proto_parser"),
                                         ffi.offsetof("tsl_proto_parser", "frame"), ffi.sizeof("tsl_frame")]
    return ffi, lib


def c_feed(ffi, lib, data):
    """The C parser over `data`, results as the Python Decoder gives them."""
    p = ffi.new("tsl_proto_parser *")
    lib.tsl_proto_init(p)
    out = []
    for b in data:
        r = lib.tsl_proto_feed(p, b)
        if r == 1:
            f = p.frame
            out.append(P.Frame(f.type, f.flags, f.seq, bytes(ffi.buffer(f.payload, f.len)), f.crc))
        elif r < 0:
            out.append(-r)
    return out


def test_c_matches_python_encoding(cproto):
    ffi, lib = cproto
    rng = random.Random(3)
    buf = ffi.new(f"uint8_t[{P.MAX_WIRE}]")
    for t, f, s, p in frames(rng, 200):
        n = lib.tsl_proto_encode(buf, P.MAX_WIRE, t, f, s, p, len(p))
        w = P.encode_frame(t, f, s, p)
        assert ffi.buffer(buf, n)[:] == w                     # C encodes what Python encodes
        assert c_feed(ffi, lib, w) == P.Decoder().feed(w)     # and each parses the other's
        assert lib.tsl_crc32(0, p, len(p)) == zlib.crc32(p) and lib.tsl_fnv1a64(p, len(p)) == fnv1a(p)
        assert lib.tsl_proto_encode(buf, len(w) - 1, t, f, s, p, len(p)) in (0, len(w))
    assert lib.tsl_proto_encode(buf, P.MAX_WIRE, 1, 0, 0, bytes(P.MAX_PAYLOAD + 1), P.MAX_PAYLOAD + 1) == 0


def test_c_parser_same_verdicts_as_python(cproto):
    """On damaged streams both parsers report the same frames and the same errors, in order."""
    ffi, lib = cproto
    for seed in range(4):
        data = damaged_stream(random.Random(seed), 60)
        py = P.Decoder().feed(data)
        assert c_feed(ffi, lib, data) == py
        assert {P.E_CRC, P.E_FRAME, P.E_TOO_LONG} <= {r for r in py if isinstance(r, int)}


# ---- (3) the C side under AddressSanitizer + UndefinedBehaviorSanitizer ----

def test_c_under_sanitizers(tmp_path):
    fp = build(tmp_path / "fuzz_parser", [FUZZ / "fuzz_parser.c", PROTO / "tsl_proto.c"], SAN)
    fa = build(tmp_path / "fuzz_app", [FUZZ / "fuzz_app.c", *APP_SRCS], SAN)
    rng = random.Random(4)
    inputs = []
    for i in range(6):
        f = tmp_path / f"stream{i}"
        f.write_bytes(damaged_stream(rng, 40) if i < 4 else rng.randbytes(200_000))
        inputs.append(f)
    scripts = [tmp_path / f"script{i}" for i in range(4)]
    for i, f in enumerate(scripts):
        f.write_bytes(app_script(random.Random(i), 120))
    for exe, args in ((fp, inputs), (fa, inputs + scripts)):
        r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "runtime error" not in r.stderr, r.stderr[-3000:]


def app_script(rng, n):
    """A fuzz_app.c script: valid requests of every type with plausible and wild fields, garbage."""
    seq, out = rng.randrange(65536), bytearray()
    ids = lambda k: [rng.randrange(VOCAB + 2) for _ in range(k)]  # noqa: E731
    for _ in range(n):
        k = rng.randrange(13)
        if k == 0:
            out += bytes([1, 30]) + rng.randbytes(30)
            continue
        if k == 1:
            t, pl = P.GEN_START, P.run_start(ids(rng.randrange(1, 8)), rng.randrange(60), 0.8, 0.9, 5)
        elif k == 2:
            t, pl = P.VERIFY_START, P.run_start(ids(rng.randrange(1, 50)), 0, rng.choice([0.0, 1.0, float("nan")]))
        elif k == 3:
            t, pl = P.RUN_FETCH, struct.pack("<H", rng.randrange(60))
        elif k == 4:
            t, pl = P.DEBUG_BEGIN, struct.pack("<HBx", rng.randrange(50), rng.randrange(2))
        elif k == 5:
            t, pl = P.DEBUG_OPS, P.debug_ops([(rng.randrange(4), rng.randrange(300), rng.randrange(300))
                                              for _ in range(rng.randrange(5))])
        elif k == 6:
            t, pl = P.READ, P.READ_REQ.pack(rng.randrange(4), rng.randrange(2**32), rng.randrange(2000))
        elif k == 7:
            t, pl = P.LOAD_BEGIN, struct.pack("<III", rng.choice([96, 33, 5000]), ARCH, rng.randrange(2**32))
        elif k == 8:
            t, pl = P.LOAD_DATA, struct.pack("<I", rng.randrange(100)) + rng.randbytes(rng.randrange(1, 90))
        elif k == 9:
            start = rng.randrange(50)
            t, pl = P.GEN_CONTINUE, P.run_continue(start, ids(start), ids(rng.randrange(1, 8)), rng.randrange(60))
        else:
            t, pl = rng.choice([P.LOAD_COMMIT, P.RUN_STATUS, P.IDENTIFY, 0x42]), b""
        pl = pl[:rng.randrange(len(pl) + 1)] if rng.random() < 0.1 else pl
        seq = (seq + rng.choice([1, 1, 1, 0, 5])) & 0xFFFF
        out += bytes([(len(pl) % 4) << 1, len(pl) // 4, t, rng.choice([0, 0, 1]), seq & 255, seq >> 8]) + pl
    return bytes(out)


# ---- (4) end to end: tsl_serial_app.c on the host, a TCP socket as its UART ----

REF_CDEF = """
typedef struct tsl_model { const uint8_t *weights; uint8_t *arena; int8_t *kv; } tsl_model;
int32_t tsl_init(tsl_model *m, const uint8_t *weights, uint8_t *arena, int8_t *kv);
int32_t tsl_reset(tsl_model *m);
int32_t tsl_forward(tsl_model *m, int32_t token, int32_t pos, const float **logits);
int32_t tsl_run_op(tsl_model *m, int32_t i, int32_t token, int32_t pos);
typedef struct { uint64_t state; float temperature; float top_p; } tsl_sampler;
void tsl_sampler_init(tsl_sampler *s, uint64_t seed, float temperature, float top_p);
int32_t tsl_sample(tsl_sampler *s, const float *logits, int32_t V, float *probs, int32_t *idx);
"""                                              # the fake model's context API (tests/fuzz/fake_model)


class FakeRef:
    """The fake model and the sampler called directly (no protocol): what the device must answer."""

    def __init__(self, so):
        import cffi
        self.ffi = cffi.FFI()
        self.ffi.cdef(REF_CDEF)
        self.lib = self.ffi.dlopen(str(so))
        self.probs, self.idx = self.ffi.new(f"float[{VOCAB}]"), self.ffi.new(f"int32_t[{VOCAB}]")
        self.m, self.arena, self.kv = self.ffi.new("tsl_model *"), self.ffi.new(f"uint8_t[{ARENA}]"), \
            self.ffi.new(f"int8_t[{KV}]")
        self.lg = self.ffi.new("const float **")
        self.blob = None

    def init(self, blob=None):
        self.blob = self.ffi.from_buffer(blob) if blob else self.ffi.NULL
        assert self.lib.tsl_init(self.m, self.blob, self.arena, self.kv) == 0

    def sampler(self, seed, temperature, top_p):
        s = self.ffi.new("tsl_sampler *")
        self.lib.tsl_sampler_init(s, seed, temperature, top_p)
        return s

    def forward(self, tok, pos):
        assert self.lib.tsl_forward(self.m, tok, pos, self.lg) == 0
        return self.lg[0]

    def logits(self, tok, pos):
        return bytes(self.ffi.buffer(self.forward(tok, pos), 4 * VOCAB))

    def generate(self, ids, max_tokens, temperature, top_p, seed):
        self.lib.tsl_reset(self.m)
        s, out = self.sampler(seed, temperature, top_p), []
        for pos in range(len(ids) - 1):
            self.forward(ids[pos], pos)
        tok = ids[-1]
        for i in range(max_tokens):
            lg = self.forward(tok, len(ids) - 1 + i)
            tok = self.lib.tsl_sample(s, lg, VOCAB, self.probs, self.idx)
            out.append(tok)
        return out

    def verify(self, ids, temperature, top_p, seed):
        self.lib.tsl_reset(self.m)
        s, hashes, tokens = self.sampler(seed, temperature, top_p), [], []
        for pos, t in enumerate(ids):
            lg = self.forward(t, pos)
            hashes.append(fnv1a(self.ffi.buffer(lg, 4 * VOCAB)))
            tokens.append(self.lib.tsl_sample(s, lg, VOCAB, self.probs, self.idx))
        return hashes, tokens, fnv1a(self.ffi.buffer(self.kv, KV))


def fake_blob(fill, arch=ARCH):
    payload = bytes(fill(i) & 0xFF for i in range(32, 96))
    return struct.pack("<5I12x", 0x574C5354, 1, 96, arch, zlib.crc32(payload)) + payload


BUILTIN = fake_blob(lambda i: i * 37 + 11)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    pytest.importorskip("cffi")
    d = tmp_path_factory.mktemp("fakeref")
    return FakeRef(build(d / "libfake.so", APP_SRCS[1:], ["-shared", "-fPIC"]))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The device: serial app + fake model + socket UART, built with ASan/UBSan; -> its TCP port."""
    d = tmp_path_factory.mktemp("app")
    exe = build(d / "tsl_serial_host", [*APP_SRCS, PROTO / "host_uart_socket.c"],
                [*SAN, '-DTSL_BOARD_NAME="host-test"', '-DTSL_FW_VERSION="test-1"', '-DTSL_CYCLES_UNIT="ns"'])
    err = open(d / "stderr.txt", "w+")
    proc = subprocess.Popen([str(exe), "0", "0"], stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("port "), line
        yield int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        err.seek(0)
        report = err.read()
        err.close()
    assert "Sanitizer" not in report and "runtime error" not in report, report[-3000:]


@pytest.fixture
def dev(app):
    with Device(f"socket://127.0.0.1:{app}", timeout=2.0) as d:
        yield d


def test_identify(dev):
    info = dev.identify()
    assert info["board"] == "host-test" and info["firmware"] == "test-1" and info["cycles_unit"] == "ns"
    assert (info["vocab"], info["max_seq"], info["n_ops"], info["arena_bytes"], info["kv_bytes"]) == \
        (VOCAB, MAX_SEQ, N_OPS, ARENA, KV)
    assert info["model_hash"] == f"{ARCH:08x}-{zlib.crc32(BUILTIN[32:]):08x}"
    assert info["logits_offset"] == LOGITS_OFF and info["load_capacity"] == 96 and info["model_status"] == 0
    assert info["proto_version"] == P.VERSION and info["max_payload"] == P.MAX_PAYLOAD


@pytest.mark.parametrize("temperature,top_p,seed", [(0.0, 1.0, 0), (0.8, 0.9, 7), (1.5, 1.0, 123)])
def test_generate(dev, ref, temperature, top_p, seed):
    ref.init()
    ids = [3, 1, 4, 1, 5]
    got = list(dev.generate(ids, 30, temperature, top_p, seed))
    assert [t for t, _ in got] == ref.generate(ids, 30, temperature, top_p, seed)
    assert all(c > 0 for _, c in got) and dev.last_run["count"] == 30
    assert dev.last_run["total_cycles"] >= sum(c for _, c in got)


def test_generate_refusals(dev):
    """The device refuses what does not fit (E_RANGE with the bound), and the host refuses it
    before sending, from the device's IDENTITY."""
    start = lambda *a, **k: dev.request(P.GEN_START, P.run_start(*a, **k))  # noqa: E731
    with pytest.raises(TslError, match=r"GEN_START refused: value out of range \(limit 44\)"):
        start([1, 2, 3, 4, 5], MAX_SEQ)                              # positions 0..51 > 48
    with pytest.raises(TslError, match=f"GEN_START refused: value out of range \\(limit {VOCAB}\\)"):
        start([1, VOCAB], 4)
    with pytest.raises(TslError, match="GEN_START refused: value out of range"):
        start([1], 4, temperature=float("nan"))
    with pytest.raises(TslError, match=r"5 prompt ids \+ 48 tokens pass the device's max_seq 48 \(at most 44"):
        dev.generate([1, 2, 3, 4, 5], MAX_SEQ)
    with pytest.raises(TslError, match=f"token id {VOCAB} out of range"):
        dev.generate([1, VOCAB], 4)
    with pytest.raises(TslError, match="not NaN"):
        dev.generate([1], 4, temperature=float("nan"))
    with pytest.raises(TslError, match="seed -1 out of range"):
        dev.generate([1], 4, seed=-1)
    assert len(list(dev.generate([1, 2, 3], MAX_SEQ - 2))) == MAX_SEQ - 2   # the longest that fits


def test_continue_keeps_the_kv_cache(dev, ref):
    """GEN_CONTINUE: the prompt at position start, the KV cache of the positions before kept, gives
    what the whole conversation from position 0 gives; the device refuses a prefix it does not hold."""
    from tinyslm.serialio import Refused
    ref.init()
    first = [3, 1, 4]
    out = [t for t, _ in dev.generate(first, 6, 0.8, 0.9, 2)]
    held = first + out[:-1]                                     # positions 0..7: the last token is not run
    more = [out[-1], 9, 2]
    got = [t for t, _ in dev.generate(more, 5, 0.8, 0.9, 3, start=len(held), prefix=held)]
    assert got == ref.generate(held + more, 5, 0.8, 0.9, 3)
    whole = held + more + got[:-1]                              # 15 positions
    assert [t for t, _ in dev.generate([7], 4, start=5, prefix=whole[:5])] == ref.generate(whole[:5] + [7], 4, 0, 1, 0)
    with pytest.raises(Refused, match=r"GEN_CONTINUE refused: the device's KV cache does not hold that "
                                      r"conversation \(it holds 9 positions\)") as e:
        dev.generate([7], 4, start=5, prefix=whole[:4] + [8])   # not what ran there
    assert e.value.code == P.E_CONTEXT
    with pytest.raises(Refused, match=r"it holds 9 positions"):
        dev.generate([7], 2, start=10, prefix=whole[:10])       # past what ran
    with pytest.raises(TslError, match=r"46 prompt ids \+ 4 tokens pass the device's max_seq 48"):
        dev.generate([7], 4, start=45, prefix=[1] * 45)         # refused by the host, before sending
    with pytest.raises(TslError, match=r"value out of range \(limit 3\)"):
        dev.request(P.GEN_CONTINUE, P.run_continue(45, [1] * 45, [7], 4))
    vids = [5, 6, 7, 8]
    dev.verify_steps(vids)
    dev.debug_begin(2)                                           # ops run one by one: no conversation held
    with pytest.raises(Refused, match=r"it holds 0 positions"):
        dev.generate([9], 3, start=1, prefix=vids[:1])
    dev.verify_steps(vids)                                       # a verify run leaves its ids in the cache
    assert [t for t, _ in dev.generate([9], 3, start=4, prefix=vids)] == ref.generate(vids + [9], 3, 0, 1, 0)


def test_abandoned_generation_then_next_request(dev, ref):
    it = dev.generate([7], 40, 0.8, 0.9, 1)
    next(it)
    it.close()                                  # the device still streams; the host lets it finish
    ref.init()
    assert [t for t, _ in dev.generate([9], 5)] == ref.generate([9], 5, 0.0, 1.0, 0)


def test_verify_and_debug(dev, ref):
    ref.init()
    ids = [(i * 7 + 3) % VOCAB for i in range(20)]
    res = dev.verify_steps(ids, 0.8, 0.9, 7)
    hashes, tokens, kv = ref.verify(ids, 0.8, 0.9, 7)
    assert (res["logits"], res["tokens"], res["kv"]) == (hashes, tokens, kv)
    # step 11 op by op: op 0 -> arena[0:4], op 1 -> kv, op 2 -> logits
    regions = [(P.SPACE_ARENA, 0, 4), (P.SPACE_KV, 0, KV), (P.SPACE_ARENA, LOGITS_OFF, 4 * VOCAB)]
    got = dev.op_hashes(11, regions)
    ref.lib.tsl_reset(ref.m)
    for pos in range(11):
        ref.forward(ids[pos], pos)
    want = []
    for i, (space, off, n) in enumerate(regions):
        ref.lib.tsl_run_op(ref.m, i, ids[11], 11)
        base = ref.arena if space == P.SPACE_ARENA else ref.kv
        want.append(fnv1a(ref.ffi.buffer(ref.ffi.cast("uint8_t *", base) + off, n)))
    assert got == want and got[2] == hashes[11]
    raw = dev.read_logits(13)
    assert fnv1a(raw) == hashes[13] and len(raw) == 4 * VOCAB
    assert dev.read(P.SPACE_WEIGHTS, 0, 96) == BUILTIN
    with pytest.raises(TslError, match="out of range"):
        dev.read(P.SPACE_KV, KV - 2, 4)
    with pytest.raises(TslError, match="out of range"):
        dev.op_hashes(2, [(P.SPACE_ARENA, 250, 7)])
    dev.debug_begin(4)
    with pytest.raises(TslError, match="limit 3"):
        dev.request(P.DEBUG_OPS, P.debug_ops([(0, 0, 1)] * 4))


def test_load_weights(dev, ref):
    new = fake_blob(lambda i: i * i + 5)
    seen = []
    dev.load_weights(new, progress=lambda a, b: seen.append((a, b)))
    assert seen[-1] == (96, 96)
    info = dev.identify()
    assert info["weights_source"] == "loaded" and info["weights_crc"] == zlib.crc32(new[32:])
    ids = [2, 7, 1]
    ref.init(new)
    want = ref.generate(ids, 12, 0.8, 0.9, 3)
    assert [t for t, _ in dev.generate(ids, 12, 0.8, 0.9, 3)] == want
    ref.init()
    assert ref.generate(ids, 12, 0.8, 0.9, 3) != want          # the new weights do change the output
    # a refused LOAD_BEGIN changes nothing; an accepted one falls back to the built-in weights
    with pytest.raises(TslError, match="another architecture.*0x5eed0001"):
        dev.load_weights(fake_blob(lambda i: i, arch=0x1234))
    assert dev.identify()["weights_source"] == "loaded"
    bad = bytearray(new)
    bad[50] ^= 1
    dev.request(P.LOAD_BEGIN, struct.pack("<III", 96, ARCH, zlib.crc32(new[32:])))
    dev.request(P.LOAD_DATA, struct.pack("<I", 0) + bytes(bad[:60]))
    with pytest.raises(TslError, match="commit before all bytes arrived \\(60 received\\)"):
        dev.request(P.LOAD_COMMIT)
    dev.request(P.LOAD_BEGIN, struct.pack("<III", 96, ARCH, zlib.crc32(new[32:])))
    dev.request(P.LOAD_DATA, struct.pack("<I", 0) + bytes(bad))
    with pytest.raises(TslError, match="weights CRC mismatch"):
        dev.request(P.LOAD_COMMIT)
    with pytest.raises(TslError, match="not valid in the device's current state"):
        dev.request(P.LOAD_COMMIT)
    with pytest.raises(TslError, match="larger than the device's load buffer \\(96 bytes\\)"):
        dev.request(P.LOAD_BEGIN, struct.pack("<III", 97, ARCH, 0))
    dev.request(P.LOAD_BEGIN, struct.pack("<III", 96, ARCH, 0))
    with pytest.raises(TslError, match="limit 0"):                       # a gap in the offsets
        dev.request(P.LOAD_DATA, struct.pack("<I", 8) + b"x")
    info = dev.identify()
    assert info["weights_source"] == "built-in" and info["model_hash"] == f"{ARCH:08x}-{zlib.crc32(BUILTIN[32:]):08x}"


def test_error_replies(dev):
    with pytest.raises(TslError, match="unknown message type 66"):
        dev.request(0x42)
    with pytest.raises(TslError, match="wrong payload length \\(expected 2\\)"):
        dev.request(P.RUN_FETCH, b"\1")
    with pytest.raises(TslError, match="IDENTIFY refused: wrong payload length"):
        dev.request(P.IDENTIFY, b"\1")


class Raw:
    """A bare socket to the device, for what Device would never send."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=2)
        self.dec, self.got = P.Decoder(), []

    def send(self, data):
        self.s.sendall(data)

    def recv(self, n=1, quiet=0.3):
        """At least n frames or link errors; then whatever else comes within `quiet` seconds."""
        end = time.monotonic() + 5
        while time.monotonic() < end:
            self.s.settimeout(quiet if len(self.got) >= n else 0.2)
            try:
                data = self.s.recv(4096)
            except socket.timeout:
                if len(self.got) >= n:
                    break
                continue
            if not data:
                break
            self.got += self.dec.feed(data)
        out, self.got = self.got, []
        return out


def test_link_rules(app):
    raw = Raw(app)
    try:
        ident = P.encode_frame(P.IDENTIFY, P.FLAG_SYNC, 100)
        raw.send(b"\0" + ident)                                  # a stray delimiter is harmless
        (a,) = raw.recv()
        raw.send(ident)                                          # a resend: the cached reply
        assert raw.recv() == [a] and a.type == P.IDENTITY and a.seq == 100
        start = P.encode_frame(P.VERIFY_START, 0, 101, P.run_start([1, 2, 3]))
        raw.send(start)
        first = raw.recv(5)
        assert [f.type for f in first] == [P.RUN_ACK, P.ITEM, P.ITEM, P.ITEM, P.RUN_DONE]
        raw.send(start)                                          # resent: ACK only, no second run
        assert raw.recv() == first[:1]
        raw.send(P.encode_frame(P.RUN_FETCH, 0, 107, b"\0\0"))   # out of order
        e = raw.recv()[0]
        assert (e.type, P.parse_error(e.payload)) == (P.ERROR, (P.E_SEQ, P.RUN_FETCH, 102))
        raw.send(P.encode_frame(P.RUN_FETCH, 0, 102, b"\1\0"))
        assert raw.recv()[0].payload == first[2].payload     # item 1, from the device's history
        bad = bytearray(P.encode_frame(P.IDENTIFY, 0, 103))
        bad[3] ^= 0x10
        raw.send(bytes(bad) + b"\x01" * 1500 + b"\0" + b"\x07abc\0")
        errs = [P.parse_error(f.payload)[0] for f in raw.recv(3)]
        assert errs == [P.E_CRC, P.E_TOO_LONG, P.E_FRAME]
    finally:
        raw.s.close()


def test_new_session_resyncs(app):
    for _ in range(3):                              # each Device starts at a random seq, with SYNC
        with Device(f"socket://127.0.0.1:{app}") as d:
            assert d.identify()["vocab"] == VOCAB
            d.sync = False
            d.seq = (d.seq + 9) & 0xFFFF              # as if the device had rebooted meanwhile
            assert d.identify()["vocab"] == VOCAB      # E_SEQ -> resent with SYNC


def test_no_answer_message():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        url = f"socket://127.0.0.1:{port}"
        t0 = time.monotonic()
        with Device(url, timeout=0.2, retries=2) as d:
            with pytest.raises(TslError, match=rf"no answer from the device on {url} after 0\.\d s; "
                                               r"is the firmware running at 115200 baud\?"):
                d.identify()
        assert time.monotonic() - t0 < 3
    with pytest.raises(TslError, match="cannot open socket://127.0.0.1:1"):
        Device("socket://127.0.0.1:1")


# ---- (5) through a proxy that drops, flips and delays bytes ----

@pytest.mark.parametrize("seed,drop,flip,delay", [(0, 0.003, 0.003, 0.2), (1, 0.005, 0.0, 0.0),
                                                   (2, 0.0, 0.005, 0.1), (3, 0.002, 0.002, 0.5),
                                                   (4, 0.02, 0.02, 0.2), (5, 0.05, 0.0, 0.0)])
def test_through_fault_proxy(app, ref, seed, drop, flip, delay):
    """Damaged in both directions, generate and verify give exactly the clean answers, or (only
    when the damage is heavy, seeds 4-5) a clear TslError: never wrong tokens or hashes."""
    from fault_proxy import FaultProxy
    ref.init()
    ids, want = [5, 6, 7], ref.generate([5, 6, 7], 40, 0.8, 0.9, seed)
    vids = list(range(30))
    vwant = ref.verify(vids, 0.8, 0.9, seed)
    got = vgot = None
    with FaultProxy(app, seed=seed, drop=drop, flip=flip, delay=delay, max_seconds=60) as px:
        try:
            with Device(f"socket://127.0.0.1:{px.port}", timeout=0.3, retries=10, step_timeout=0.5) as d:
                got = [t for t, _ in d.generate(ids, 40, 0.8, 0.9, seed)]
                v = d.verify_steps(vids, 0.8, 0.9, seed)
                vgot = v["logits"], v["tokens"], v["kv"]
        except TslError as e:
            assert seed >= 4 and "device on socket://127.0.0.1" in str(e), e
        assert px.stats["dropped"] + px.stats["flipped"] > 0
    assert got in (None, want) and vgot in (None, vwant)
    if seed < 4:
        assert got == want and vgot == vwant


def test_default_retries_fit_a_damaged_link(app, ref):
    """With the command line's defaults (its parser and _device: timeout, retries, step_timeout), a
    link that flips 1% and drops 0.5% of the bytes both ways: at least 11 of 12 sessions give exactly
    the clean answers (identify, a 20-token generation, a 12-step verify); the others a TslError
    from the device, never other tokens or hashes."""
    from fault_proxy import FaultProxy
    from tinyslm.cli import parser
    from tinyslm.cli_device import _device
    ref.init()
    ids, vids = [5, 6, 7], [(3 * i + 1) % VOCAB for i in range(12)]
    want, vwant = ref.generate(ids, 20, 0.8, 0.9, 11), ref.verify(vids, 0.8, 0.9, 11)
    ok, damaged, failures = 0, 0, []
    for seed in range(12):
        with FaultProxy(app, seed=100 + seed, drop=0.005, flip=0.01, max_seconds=60) as px:
            a = parser().parse_args(["identify", "--port", f"socket://127.0.0.1:{px.port}"])
            try:
                with _device(a) as d:
                    assert d.identify()["vocab"] == VOCAB
                    got = [t for t, _ in d.generate(ids, 20, 0.8, 0.9, 11)]
                    v = d.verify_steps(vids, 0.8, 0.9, 11)
                assert got == want and (v["logits"], v["tokens"], v["kv"]) == vwant
                ok += 1
            except TslError as e:
                assert "device on socket://127.0.0.1" in str(e), e
                failures.append(str(e))
            damaged += px.stats["dropped"] + px.stats["flipped"]
    assert ok >= 11, failures
    assert damaged > 60                                        # the link really was damaged


# ---- (6) libFuzzer, bounded ----

@pytest.mark.parametrize("target", ["fuzz_parser", "fuzz_app"])
def test_libfuzzer(tmp_path, target):
    clang = require_tool("clang", "clang libclang-rt-14-dev")
    probe = tmp_path / "probe.c"
    probe.write_text("#include <stdint.h>\n#include <stddef.h>\n"
                     "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n")
    r = subprocess.run([clang, "-fsanitize=fuzzer", str(probe), "-o", str(tmp_path / "probe")],
                       capture_output=True, text=True)
    if r.returncode:
        if os.environ.get("TSL_REQUIRE_TOOLCHAINS") == "1":
            pytest.fail(f"clang has no libFuzzer runtime: install libclang-rt-14-dev\n{r.stderr}")
        pytest.skip("clang has no libFuzzer runtime: install libclang-rt-14-dev")
    srcs = [FUZZ / f"{target}.c", PROTO / "tsl_proto.c"] + (APP_SRCS[:1] + APP_SRCS[2:] if target == "fuzz_app" else [])
    exe = build(tmp_path / target, srcs, ["-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
                                          "-DTSL_LIBFUZZER"], cc="clang")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = random.Random(5)
    for i in range(16):
        data = app_script(rng, 20) if target == "fuzz_app" else \
            b"".join(P.encode_frame(*f) for f in frames(rng, 3))
        (corpus / f"seed{i}").write_bytes(data)
    r = subprocess.run([str(exe), str(corpus), "-max_total_time=8", "-max_len=8192", "-timeout=10",
                        "-rss_limit_mb=2560", f"-artifact_prefix={tmp_path}/"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Done" in r.stderr


def test_firmware_without_tokenizer_says_so(dev):
    info = dev.identify()
    assert (info["tokenizer"], info["bos_id"], info["eos_id"], info["tok_encode"]) == ("none", None, None, False)
    with pytest.raises(TslError, match="has no tokenizer; pass --ids"):
        dev.encode("hi")
    with pytest.raises(TslError, match="ENCODE refused: not valid in the device's current state"):
        dev.request(P.ENCODE, b"hi")                       # asked anyway: refused
    with pytest.raises(TslError, match="DECODE refused: not valid"):
        dev.request(P.DECODE, P.decode_req([1, 2]))
