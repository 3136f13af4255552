"""Talk to a board running firmware/proto/tsl_serial_app.c over any pyserial URL: /dev/ttyUSB0,
COM3, socket://127.0.0.1:PORT, rfc2217://... Stop-and-wait with retries (docs/protocol.md)."""
import os
import struct
import time
import zlib

from . import protocol as P
from .errors import TslError


class Device:
    """One connection to a device. timeout: seconds to wait for each reply before sending the
    request again, up to `retries` more times; step_timeout: longest silence while a run streams."""

    def __init__(self, url, baudrate=115200, timeout=2.0, retries=4, step_timeout=30.0):
        import serial
        self.url, self.baudrate, self.timeout, self.retries = url, baudrate, timeout, retries
        self.step_timeout = step_timeout
        self.settle = min(timeout, 0.02 + 10 * P.MAX_WIRE / baudrate)   # time for one longest frame
        try:
            self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=min(timeout, 0.05))
        except (serial.SerialException, ValueError, OSError) as e:
            raise TslError(f"cannot open {url}: {e}") from None
        self.decoder, self.queue = P.Decoder(), []
        self.seq = int.from_bytes(os.urandom(2), "little")   # a fresh session never looks like a resend
        self.sync = True
        self.link_errors = 0          # corrupted frames received, over this connection's life
        self.last_run = None          # RUN_DONE of the last run: counts and cycles
        self.info = None              # the last IDENTITY

    def close(self):
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- link ----

    def _recv(self, deadline):
        """The next Frame or link-error code from the device, or None at the deadline."""
        while not self.queue:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except Exception as e:   # pyserial raises several types for a vanished port
                raise TslError(f"{self.url}: connection lost: {e}") from None
            self.queue += self.decoder.feed(data)
        return self.queue.pop(0)

    def _send(self, frame):
        try:
            self.port.write(frame)
            self.port.flush()
        except Exception as e:
            raise TslError(f"{self.url}: cannot write: {e}") from None

    def request(self, type_, payload=b"", expect=(), timeout=None):
        """Send one request and return the first reply Frame with its seq; retries on silence,
        on a corrupted reply and on a link error from the device. Raises TslError on an ERROR
        reply or when every try went unanswered."""
        timeout = timeout or self.timeout
        self.seq = (self.seq + 1) & 0xFFFF
        frame, garbled, t0 = None, 0, time.monotonic()
        for _ in range(self.retries + 1):
            if frame is None:
                frame = P.encode_frame(type_, P.FLAG_SYNC if self.sync else 0, self.seq, payload)
            self._send(frame)
            deadline = time.monotonic() + timeout
            while (r := self._recv(deadline)) is not None:
                if isinstance(r, int) or r.type == P.ERROR and P.parse_error(r.payload)[0] in P.LINK_ERRORS:
                    # our request or its reply was damaged, or this is the wreck of a stale frame:
                    # resend once the line has been quiet for `settle`, unless a valid reply comes
                    if isinstance(r, int):
                        garbled += 1
                        self.link_errors += 1
                    deadline = min(deadline, time.monotonic() + self.settle)
                    continue
                if r.type == P.ERROR:
                    code, req, detail = P.parse_error(r.payload)
                    if r.seq != self.seq:
                        continue
                    if code == P.E_SEQ:               # device lost track (rebooted, other host)
                        self.sync, frame = True, None
                        break
                    raise TslError(f"{self.url}: {P.NAMES.get(type_, type_)} refused: "
                                   f"{P.error_text(code, detail)}")
                if r.seq != self.seq:                 # a stale reply or stream frame
                    continue
                if expect and r.type not in expect:
                    raise TslError(f"{self.url}: protocol error: {r.name} in answer to "
                                   f"{P.NAMES.get(type_, type_)}")
                self.sync = False
                return r
        waited = time.monotonic() - t0
        if garbled:
            raise TslError(f"no valid answer from the device on {self.url} after {waited:.1f} s "
                           f"({garbled} corrupted frames); check the baud rate ({self.baudrate}) and cable")
        raise TslError(f"no answer from the device on {self.url} after {waited:.1f} s; "
                       f"is the firmware running at {self.baudrate} baud?")

    # ---- messages ----

    def identify(self):
        """-> dict: board, firmware, model_hash (arch hash - weights crc), sizes, vocab, max_seq ..."""
        info = P.parse_identity(self.request(P.IDENTIFY, expect=(P.IDENTITY,)).payload)
        self.info = info
        return info

    def generate(self, ids, max_tokens, temperature=0.0, top_p=1.0, seed=0):
        """Start a generation now; -> iterator of (token, cycles) as the device produces them.
        After it ends, self.last_run holds prefill and total cycles."""
        first = self.request(P.GEN_START, P.run_start(ids, max_tokens, temperature, top_p, seed),
                             expect=(P.RUN_ACK, P.ITEM, P.RUN_DONE))
        return ((tok, cyc) for _, tok, cyc, _ in self._stream(first))

    def verify_steps(self, ids, temperature=0.8, top_p=0.9, seed=7):
        """Run len(ids) decode steps on the device (ids[s] at position s), as tinyslm.verify does.
        -> dict(logits=[fnv1a64 per step], tokens=[sampled], cycles=[...], kv=fnv1a64 of the KV cache)."""
        first = self.request(P.VERIFY_START, P.run_start(ids, 0, temperature, top_p, seed),
                             expect=(P.RUN_ACK, P.ITEM, P.RUN_DONE))
        items = list(self._stream(first))
        return dict(logits=[h for _, _, _, h in items], tokens=[t for _, t, _, _ in items],
                    cycles=[c for _, _, c, _ in items], kv=self.last_run["kv_hash"])

    def _stream(self, first):
        """Items of the run started by request `first`'s seq, in order. Items lost or garbled on the
        way are fetched once the stream is over: the device reads nothing while it runs."""
        seq, pending, done, nxt, count, frames = first.seq, {}, None, 0, None, [first]
        try:
            while done is None:
                r = frames.pop() if frames else self._recv(time.monotonic() + self.step_timeout)
                if r is None:
                    break                                       # silence: ask for the status
                if isinstance(r, int) or r.seq != seq:
                    continue
                if r.type == P.RUN_ACK:
                    count = struct.unpack("<BxH", r.payload)[1]
                elif r.type == P.ITEM:
                    item = P.parse_item(r.payload)
                    if item[0] >= nxt:
                        pending[item[0]] = item
                    while nxt in pending:                       # yield in order, as they come
                        yield pending.pop(nxt)
                        nxt += 1
                elif r.type == P.RUN_DONE:
                    done = P.parse_run_done(r.payload)
            if done is None:
                done = P.parse_run_done(self.request(P.RUN_STATUS, expect=(P.RUN_DONE,)).payload)
            if count is not None and done["count"] != count:
                raise TslError(f"{self.url}: the device ran {done['count']} of {count} steps")
            for i in range(nxt, done["count"]):
                item = pending.pop(i, None) or P.parse_item(
                    self.request(P.RUN_FETCH, struct.pack("<H", i), expect=(P.ITEM,)).payload)
                if item[0] != i:
                    raise TslError(f"{self.url}: protocol error: item {item[0]} for {i}")
                yield item
                nxt = i + 1
            self.last_run = done
        except GeneratorExit:
            if done is None:                                    # abandoned: let the run finish
                while (r := self._recv(time.monotonic() + self.step_timeout)) is not None:
                    if not isinstance(r, int) and r.seq == seq and r.type == P.RUN_DONE:
                        break
            raise

    def debug_begin(self, step, full=False):
        """Replay the last verify run up to `step` (full: through it). -> index of the next op."""
        r = self.request(P.DEBUG_BEGIN, struct.pack("<HBx", step, int(full)), expect=(P.DEBUG_ACK,))
        return struct.unpack("<HHH", r.payload)[2]

    def op_hashes(self, step, regions):
        """Run step `step` of the last verify run op by op; after op i hash regions[i] =
        (space, offset, length), space 0 arena, 1 KV cache. -> [fnv1a64] per op."""
        self.debug_begin(step)
        out = []
        for k in range(0, len(regions), P.MAX_REGIONS):
            r = self.request(P.DEBUG_OPS, P.debug_ops(regions[k:k + P.MAX_REGIONS]), expect=(P.OP_HASHES,))
            out += P.parse_op_hashes(r.payload)[1]
        return out

    def read(self, space, offset, length):
        """Raw bytes of a memory space (0 arena, 1 KV cache, 2 active weights), in chunks."""
        out = bytearray()
        while len(out) < length:
            n = min(P.MAX_READ, length - len(out))
            r = self.request(P.READ, P.READ_REQ.pack(space, offset + len(out), n), expect=(P.DATA,))
            head = P.DATA_HEAD.pack(space, offset + len(out))
            if r.payload[:len(head)] != head or len(r.payload) != len(head) + n:
                raise TslError(f"{self.url}: protocol error: DATA does not answer the READ")
            out += r.payload[len(head):]
        return bytes(out)

    def read_logits(self, step):
        """The float32 logits of step `step` of the last verify run, as raw little-endian bytes."""
        info = self.info or self.identify()
        self.debug_begin(step, full=True)
        return self.read(P.SPACE_ARENA, info["logits_offset"], 4 * info["vocab"])

    def load_weights(self, blob, progress=None):
        """Send a weights blob (tsl_weights.bin of the same architecture) into the device's RAM
        buffer; the device checks size, arch hash and CRC before switching to it."""
        blob = bytes(blob)
        if len(blob) < 32 or blob[:4] != b"TSLW":
            raise TslError("not a tinyslm weights blob (no TSLW header)")
        total, arch, crc = struct.unpack_from("<III", blob, 8)
        if total != len(blob) or zlib.crc32(blob[32:]) != crc:
            raise TslError(f"weights blob damaged: header says {total} bytes, crc 0x{crc:08x}; "
                           f"file has {len(blob)} bytes, crc 0x{zlib.crc32(blob[32:]):08x}")
        self.request(P.LOAD_BEGIN, struct.pack("<III", total, arch, crc), expect=(P.LOAD_ACK,))
        for off in range(0, total, P.MAX_LOAD_CHUNK):
            self.request(P.LOAD_DATA, struct.pack("<I", off) + blob[off:off + P.MAX_LOAD_CHUNK],
                         expect=(P.LOAD_ACK,))
            if progress:
                progress(min(off + P.MAX_LOAD_CHUNK, total), total)
        # the device CRCs the whole blob before it answers
        self.request(P.LOAD_COMMIT, expect=(P.LOAD_ACK,), timeout=max(self.timeout, 10.0))
