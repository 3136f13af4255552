"""The serial protocol's framing and messages, byte for byte as firmware/proto/tsl_proto.[ch]
(layouts and rules: docs/protocol.md). Pure functions and one stream decoder; no I/O."""
import struct
import zlib
from dataclasses import dataclass

VERSION = 3                                      # 3: GEN_CONTINUE, E_CONTEXT, token bytes in ITEM
MAX_PAYLOAD = 1024
HEADER = struct.Struct("<BBHH")                  # type, flags, seq, len
MAX_RAW = HEADER.size + MAX_PAYLOAD + 4          # 1034
MAX_WIRE = MAX_RAW + MAX_RAW // 254 + 2          # COBS worst case + delimiter: 1040

# message types (requests 0x01..0x0E, replies and stream 0x81..0x91, ERROR 0xFF)
IDENTIFY, GEN_START, VERIFY_START, RUN_FETCH, RUN_STATUS = 0x01, 0x02, 0x03, 0x04, 0x05
DEBUG_BEGIN, DEBUG_OPS, READ, LOAD_BEGIN, LOAD_DATA, LOAD_COMMIT = 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B
ENCODE, DECODE, GEN_CONTINUE = 0x0C, 0x0D, 0x0E
IDENTITY, RUN_ACK, DEBUG_ACK, OP_HASHES, DATA, LOAD_ACK = 0x81, 0x82, 0x86, 0x87, 0x88, 0x89
IDS, TEXT = 0x8C, 0x8D
ITEM, RUN_DONE, ERROR = 0x90, 0x91, 0xFF
NAMES = {globals()[k]: k for k in (
    "IDENTIFY GEN_START VERIFY_START RUN_FETCH RUN_STATUS DEBUG_BEGIN DEBUG_OPS READ LOAD_BEGIN LOAD_DATA "
    "LOAD_COMMIT ENCODE DECODE GEN_CONTINUE IDENTITY RUN_ACK DEBUG_ACK OP_HASHES DATA LOAD_ACK IDS TEXT ITEM RUN_DONE "
    "ERROR").split()}

FLAG_SYNC = 0x01

# ERROR codes; 1..3 are link errors: the frame did not arrive intact, send it again
E_CRC, E_FRAME, E_TOO_LONG = 1, 2, 3
E_TYPE, E_LENGTH, E_SEQ, E_STATE, E_RANGE = 4, 5, 6, 7, 8
E_TOO_BIG, E_ARCH, E_WEIGHTS_CRC, E_INCOMPLETE, E_MODEL = 9, 10, 11, 12, 13
E_TOKENIZER, E_CONTEXT = 14, 15
LINK_ERRORS = (E_CRC, E_FRAME, E_TOO_LONG)
ERROR_TEXT = {
    E_CRC: "frame CRC mismatch", E_FRAME: "malformed frame", E_TOO_LONG: "frame too long",
    E_TYPE: "unknown message type {detail}", E_LENGTH: "wrong payload length (expected {detail})",
    E_SEQ: "out-of-order sequence number (expected {detail})",
    E_STATE: "not valid in the device's current state",
    E_RANGE: "value out of range (limit {detail})",
    E_TOO_BIG: "weights larger than the device's load buffer ({detail} bytes)",
    E_ARCH: "weights built for another architecture (the firmware's arch hash is 0x{detail:08x})",
    E_WEIGHTS_CRC: "weights CRC mismatch (the device computed 0x{detail:08x})",
    E_INCOMPLETE: "commit before all bytes arrived ({detail} received)",
    E_MODEL: "tsl_init() refused the weights (code {sdetail}; -1 magic, -2 version, "
             "-3 architecture, -4 header size)",
    E_TOKENIZER: "the device's tokenizer refused the text (code {sdetail}; -4 not UTF-8, -5 not NFC, "
                 "-6 contains an added token's text)",
    E_CONTEXT: "the device's KV cache does not hold that conversation (it holds {detail} positions)",
}

RUN_GEN, RUN_VERIFY = 1, 2
SPACE_ARENA, SPACE_KV, SPACE_WEIGHTS = 0, 1, 2
RUN_HEAD = struct.Struct("<HHffQ")               # n_ids, max_tokens, temperature, top_p, seed
MAX_IDS = (MAX_PAYLOAD - RUN_HEAD.size) // 4     # 251
CONT_HEAD = struct.Struct("<HxxQ")               # GEN_CONTINUE: start, fnv1a64 of ids[0:start]; then a run request
MAX_CONT_IDS = (MAX_PAYLOAD - CONT_HEAD.size - RUN_HEAD.size) // 4   # 248
REGION = struct.Struct("<BII")                   # space, offset, length
MAX_REGIONS = (MAX_PAYLOAD - 2) // REGION.size   # 113
READ_REQ = struct.Struct("<BxIH")                # space, offset, length
DATA_HEAD = struct.Struct("<BxI")                # space, offset; the bytes follow
MAX_READ = MAX_PAYLOAD - DATA_HEAD.size - 2      # 1016
MAX_LOAD_CHUNK = MAX_PAYLOAD - 4                 # 1020
MAX_ENCODE = 256                                 # text bytes per ENCODE
MAX_OUT_IDS = (MAX_PAYLOAD - 2) // 4             # 255 ids per IDS reply / DECODE request
TOK_CAP_ENCODE, TOK_CAP_DECODE = 1, 2


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    seq: int
    payload: bytes
    crc: int = 0

    @property
    def name(self):
        return NAMES.get(self.type, f"0x{self.type:02x}")


def cobs_encode(data):
    out, block = bytearray(), bytearray()
    for b in data:
        if b:
            block.append(b)
        if not b or len(block) == 254:
            out += bytes([len(block) + 1]) + block
            block.clear()
    return bytes(out + bytes([len(block) + 1]) + block)


def encode_frame(type_, flags, seq, payload=b""):
    """-> the wire bytes of one frame: COBS(header + payload + crc32) + 0x00."""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes > {MAX_PAYLOAD}")
    raw = HEADER.pack(type_, flags, seq & 0xFFFF, len(payload)) + payload
    return cobs_encode(raw + struct.pack("<I", zlib.crc32(raw))) + b"\0"


def _finish(chunk):
    """The parser's verdict on the bytes between two delimiters: None, a Frame or an error code.
    Same decisions, in the same order, as tsl_proto_end()."""
    if not chunk:
        return None
    raw, i, code, left = bytearray(), 0, 0, 0
    while i < len(chunk):
        if code and code != 0xFF:
            raw.append(0)
        code = chunk[i]
        block = chunk[i + 1:i + code]
        raw += block
        left = code - 1 - len(block)
        i += code
    if len(raw) > MAX_RAW:
        return E_TOO_LONG
    if left or len(raw) < HEADER.size + 4:
        return E_FRAME
    crc = struct.unpack_from("<I", raw, len(raw) - 4)[0]
    if zlib.crc32(raw[:-4]) != crc:
        return E_CRC
    type_, flags, seq, n = HEADER.unpack_from(raw)
    if n != len(raw) - HEADER.size - 4:
        return E_FRAME
    return Frame(type_, flags, seq, bytes(raw[HEADER.size:-4]), crc)


class Decoder:
    """Stream decoder: feed() any bytes, get the Frames and link-error codes (ints) they complete."""
    # Past this many bytes without a delimiter the frame decodes to more than MAX_RAW bytes
    # whatever they are (COBS expands at most 255/254); keep counting, stop storing.
    KEEP = 2 * MAX_WIRE

    def __init__(self):
        self.buf, self.over = bytearray(), False

    def feed(self, data):
        out, data, start = [], bytes(data), 0
        while True:
            end = data.find(0, start)
            part = data[start:] if end < 0 else data[start:end]
            if len(self.buf) + len(part) > self.KEEP:
                self.over = True
            else:
                self.buf += part
            if end < 0:
                return out
            r = E_TOO_LONG if self.over else _finish(self.buf)
            if r is not None:
                out.append(r)
            self.buf, self.over, start = bytearray(), False, end + 1


# ---- payloads: one encoder per request, one decoder per reply ----

def run_start(ids, max_tokens=0, temperature=0.0, top_p=1.0, seed=0):
    """GEN_START / VERIFY_START payload (verify: max_tokens 0)."""
    ids = [int(i) for i in ids]
    if not 1 <= len(ids) <= MAX_IDS:
        raise ValueError(f"{len(ids)} token ids: 1 to {MAX_IDS} fit in one request")
    if not 0 <= max_tokens <= 0xFFFF:
        raise ValueError(f"max_tokens {max_tokens} out of range [0, 65535]")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed {seed} out of range [0, 2^64)")
    return RUN_HEAD.pack(len(ids), max_tokens, temperature, top_p, seed) + \
        struct.pack(f"<{len(ids)}I", *(i & 0xFFFFFFFF for i in ids))


def ids_hash(ids):
    """FNV-1a 64 of token ids as u32 little endian: GEN_CONTINUE's prefix."""
    h = 0xCBF29CE484222325
    for b in struct.pack(f"<{len(ids)}I", *(int(i) & 0xFFFFFFFF for i in ids)):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def run_continue(start, prefix, ids, max_tokens, temperature=0.0, top_p=1.0, seed=0):
    """GEN_CONTINUE payload: the prompt `ids` at positions start.., the KV cache of positions < start
    (which ran `prefix`) kept."""
    if len(prefix) != start or not 0 <= start <= 0xFFFF:
        raise ValueError(f"a prefix of {len(prefix)} ids for a start at position {start}")
    if len(ids) > MAX_CONT_IDS:
        raise ValueError(f"{len(ids)} token ids: 1 to {MAX_CONT_IDS} fit in one GEN_CONTINUE")
    return CONT_HEAD.pack(start, ids_hash(prefix)) + run_start(ids, max_tokens, temperature, top_p, seed)


def debug_ops(regions):
    """DEBUG_OPS payload: regions = [(space, offset, length)], at most MAX_REGIONS."""
    return struct.pack("<H", len(regions)) + b"".join(REGION.pack(*r) for r in regions)


class BadPayload(ValueError):
    """A frame that arrived intact (its CRC holds) but whose payload does not fit its type: the
    device's fault, not the link's. The message names the type and what is wrong."""


# IDENTITY bounds: what a tinyslm firmware can report. A value outside them is a broken or
# hostile device, refused before the host sizes anything by it.
MAX_VOCAB = 1 << 20                              # sampler scratch is 8 * vocab bytes of device RAM
MAX_SEQ = 1 << 20
MAX_ITEMS = 0xFFFF                               # ITEM index and counts are u16
MAX_STR = 64
IDENTITY_HEAD = struct.Struct("<BBH11Ii")        # 52 bytes, then three u8-length strings, then IDENTITY_TOK
IDENTITY_TOK = struct.Struct("<IiiI")            # tokenizer hash (0: none), bos, eos (-1: none), caps
IDENTITY_KEYS = ("arch_hash", "weights_crc", "weights_bytes", "arena_bytes", "kv_bytes", "vocab", "max_seq",
                 "n_ops", "logits_offset", "load_capacity", "max_items", "model_status")
ITEM_P = struct.Struct("<HiIQB")                 # index, token, cycles, logits fnv1a, n_text; text[n_text]
TEXT_NOT_CARRIED = 255                           # n_text: the token's bytes are longer (DECODE them)
RUN_ACK_P = struct.Struct("<BxH")                # kind, count
RUN_DONE_P = struct.Struct("<BxHIIQ")            # kind, count, prefill, total, kv fnv1a
DEBUG_ACK_P = struct.Struct("<HHH")              # step, n_ops, next_op
LOAD_ACK_P = struct.Struct("<II")                # received, capacity
ERROR_P = struct.Struct("<BBxxI")                # code, request type, detail


def _exact(name, p, st):
    if len(p) != st.size:
        raise BadPayload(f"{name} of {len(p)} bytes, expected {st.size}")
    return st.unpack(p)


def parse_identity(p):
    """IDENTITY -> dict, every field checked against what a firmware can report."""
    if len(p) < IDENTITY_HEAD.size + 3:
        raise BadPayload(f"IDENTITY of {len(p)} bytes, expected at least {IDENTITY_HEAD.size + 3}")
    ver, loaded, max_payload, *vals = IDENTITY_HEAD.unpack_from(p)
    info = dict(zip(IDENTITY_KEYS, vals), proto_version=ver, max_payload=max_payload)
    if ver != VERSION:                           # the version byte leads IDENTITY in every version
        raise BadPayload(f"IDENTITY: the firmware speaks serial protocol version {ver}, this tinyslm version "
                         f"{VERSION}: build and flash the firmware with this tinyslm, or use the tinyslm that built it")
    if max_payload != MAX_PAYLOAD:
        raise BadPayload(f"IDENTITY: max_payload {max_payload}, protocol version {VERSION} has {MAX_PAYLOAD}")
    if loaded not in (0, 1):
        raise BadPayload(f"IDENTITY: weights_source {loaded} is neither 0 (built-in) nor 1 (loaded)")
    info["weights_source"] = "loaded" if loaded else "built-in"
    for key, lo, hi in (("vocab", 1, MAX_VOCAB), ("max_seq", 1, MAX_SEQ), ("n_ops", 1, 0xFFFF),
                        ("max_items", 1, MAX_ITEMS), ("weights_bytes", 32, 2**32 - 1)):
        if not lo <= info[key] <= hi:
            raise BadPayload(f"IDENTITY: {key} {info[key]} outside [{lo}, {hi}]")
    if info["logits_offset"] + 4 * info["vocab"] > info["arena_bytes"]:
        raise BadPayload(f"IDENTITY: logits at {info['logits_offset']} + 4 x vocab {info['vocab']} pass the "
                         f"arena's {info['arena_bytes']} bytes")
    if info["load_capacity"] and info["load_capacity"] < 32:
        raise BadPayload(f"IDENTITY: load_capacity {info['load_capacity']} is below a weights header (32)")
    off = IDENTITY_HEAD.size
    for key in ("board", "firmware", "cycles_unit"):
        n = p[off] if off < len(p) else None
        if n is None or n > MAX_STR or off + 1 + n > len(p):
            raise BadPayload(f"IDENTITY: {key} string " + ("missing" if n is None else
                             f"of {n} bytes does not fit (at most {MAX_STR}, {len(p) - off - 1} left)"))
        try:
            s = p[off + 1:off + 1 + n].decode("utf-8")
        except UnicodeDecodeError:
            s = None
        if s is None or not s.isprintable():
            raise BadPayload(f"IDENTITY: {key} string {p[off + 1:off + 1 + n]!r} is not printable text")
        info[key] = s
        off += 1 + n
    if len(p) - off != IDENTITY_TOK.size:
        raise BadPayload(f"IDENTITY: {len(p) - off} bytes after the last string, expected {IDENTITY_TOK.size}")
    h, bos, eos, caps = IDENTITY_TOK.unpack_from(p, off)
    if caps & ~(TOK_CAP_ENCODE | TOK_CAP_DECODE) or (h == 0) != (caps == 0):
        raise BadPayload(f"IDENTITY: tokenizer hash 0x{h:08x} with capabilities {caps}")
    for key, v in (("bos", bos), ("eos", eos)):
        if not -1 <= v < info["vocab"] or (caps == 0 and v != -1):
            raise BadPayload(f"IDENTITY: tokenizer {key} id {v} outside [-1, {info['vocab']})")
    info.update(tokenizer_hash=h, bos_id=None if bos < 0 else bos, eos_id=None if eos < 0 else eos,
                tok_encode=bool(caps & TOK_CAP_ENCODE), tok_decode=bool(caps & TOK_CAP_DECODE),
                tokenizer=f"{h:08x}" if h else "none")
    info["model_hash"] = f"{info['arch_hash']:08x}-{info['weights_crc']:08x}"
    return info


def parse_item(p, count=None, vocab=None):
    """ITEM -> (index, token, cycles, logits_hash, text); index < count, 0 <= token < vocab when
    given; text: the token's bytes as the device decodes them (b"" from a device without a
    tokenizer, or in a verify run), None when they were too long to carry."""
    if len(p) < ITEM_P.size or len(p) != ITEM_P.size + (p[ITEM_P.size - 1] % TEXT_NOT_CARRIED):
        raise BadPayload(f"ITEM of {len(p)} bytes" + (f", expected at least {ITEM_P.size}" if len(p) < ITEM_P.size
                         else f" does not hold the {p[ITEM_P.size - 1] % TEXT_NOT_CARRIED} text bytes it announces"))
    index, token, cycles, h, n = ITEM_P.unpack_from(p)
    text = None if n == TEXT_NOT_CARRIED else bytes(p[ITEM_P.size:])
    if count is not None and index >= count:
        raise BadPayload(f"ITEM index {index} of a run of {count}")
    if vocab is not None and not 0 <= token < vocab:
        raise BadPayload(f"ITEM {index}: token {token} outside the vocabulary [0, {vocab})")
    return index, token, cycles, h, text


def parse_run_ack(p):
    """RUN_ACK -> (kind, count)."""
    return _exact("RUN_ACK", p, RUN_ACK_P)


def parse_run_done(p):
    kind, count, prefill, total, kv = _exact("RUN_DONE", p, RUN_DONE_P)
    return dict(kind=kind, count=count, prefill_cycles=prefill, total_cycles=total, kv_hash=kv)


def parse_debug_ack(p):
    """DEBUG_ACK -> (step, n_ops, next_op)."""
    return _exact("DEBUG_ACK", p, DEBUG_ACK_P)


def parse_op_hashes(p):
    """OP_HASHES -> (first_op, [fnv1a64] * n)."""
    if len(p) < 4 or len(p) != 4 + 8 * struct.unpack_from("<H", p, 2)[0]:
        raise BadPayload(f"OP_HASHES of {len(p)} bytes does not hold the count it announces")
    first, n = struct.unpack_from("<HH", p)
    return first, list(struct.unpack_from(f"<{n}Q", p, 4))


def parse_ids(p, vocab=None):
    """IDS -> [token id], each in [0, vocab) when given."""
    if len(p) < 2 or len(p) != 2 + 4 * struct.unpack_from("<H", p)[0]:
        raise BadPayload(f"IDS of {len(p)} bytes does not hold the count it announces")
    ids = list(struct.unpack_from(f"<{(len(p) - 2) // 4}i", p, 2))
    bad = [i for i in ids if vocab is not None and not 0 <= i < vocab]
    if bad:
        raise BadPayload(f"IDS: token {bad[0]} outside the vocabulary [0, {vocab})")
    return ids


def parse_text(p, n=None):
    """TEXT -> (done, bytes): the bytes of the first `done` ids of the DECODE, 1 <= done <= n."""
    if len(p) < 2:
        raise BadPayload(f"TEXT of {len(p)} bytes, expected at least 2")
    done = struct.unpack_from("<H", p)[0]
    if n is not None and not (1 <= done <= n or done == n == 0):
        raise BadPayload(f"TEXT for {done} ids of a DECODE of {n}")
    return done, bytes(p[2:])


def decode_req(ids):
    """DECODE payload: ids, at most MAX_OUT_IDS."""
    ids = [int(i) for i in ids]
    if len(ids) > MAX_OUT_IDS:
        raise ValueError(f"{len(ids)} ids: at most {MAX_OUT_IDS} fit in one DECODE")
    return struct.pack(f"<H{len(ids)}I", len(ids), *(i & 0xFFFFFFFF for i in ids))


def parse_load_ack(p):
    """LOAD_ACK -> (received, capacity)."""
    return _exact("LOAD_ACK", p, LOAD_ACK_P)


def parse_error(p):
    """-> (code, request type, detail as u32)."""
    return _exact("ERROR", p, ERROR_P)


def error_text(code, detail=0):
    sdetail = detail - (1 << 32) if detail & 0x80000000 else detail
    return ERROR_TEXT.get(code, f"error code {code}").format(detail=detail, sdetail=sdetail)
