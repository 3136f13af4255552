"""Talk to a board running firmware/proto/tsl_serial_app.c over any pyserial URL: /dev/ttyUSB0,
COM3, socket://127.0.0.1:PORT, rfc2217://... Stop-and-wait with retries (docs/protocol.md).

Nothing the device sends is trusted: every reply is checked against the request it answers and
the device's IDENTITY (lengths, counts, indices, token ids), and a reply that does not fit ends in
one TslError naming it, never in wrong output or a traceback."""
import os
import struct
import time
import zlib

from . import protocol as P
from .errors import TslError


class Refused(TslError):
    """The device answered a request with an ERROR: code (protocol.E_*) and detail say why."""

    def __init__(self, msg, code, detail):
        super().__init__(msg)
        self.code, self.detail = code, detail


class _Tally:
    """What arrived instead of a valid answer, for the failure message."""

    def __init__(self):
        self.crc = self.malformed = self.reported = self.stale = self.seq = 0

    def heard(self):
        return self.crc + self.malformed + self.reported + self.stale + self.seq > 0

    def text(self):
        parts = [f"{self.crc} frames failed their CRC" if self.crc else "",
                 f"{self.malformed} frames were malformed" if self.malformed else "",
                 f"the device got {self.reported} of our frames damaged" if self.reported else "",
                 f"{self.stale} frames answered other requests" if self.stale else "",
                 f"it refused our sequence number {self.seq} times" if self.seq else ""]
        return ", ".join(p for p in parts if p)


class Device:
    """One connection to a device.

    timeout: seconds of silence from the device (no frame, not even a damaged one) after which a
      request gives up: "no answer from the device". 5 s by default: qemu boards on a loaded
      machine stall for up to 2 s now and then. A request lost on the way is resent sooner, after `resend`
      seconds without a reply (or the round trip measured for its type, see _interval), and after
      a damaged frame as soon as the line is quiet (`settle`).
    retries: resends per request, whatever their cause; when they run out although the device
      answered, the message says how its frames failed.
    step_timeout: longest time the host waits for the first item of a run (the device's prefill);
      after that the silence that ends a stream is derived from the observed time per step."""

    def __init__(self, url, baudrate=115200, timeout=5.0, retries=40, step_timeout=30.0):
        import serial
        self.url, self.baudrate, self.timeout, self.retries = url, baudrate, timeout, retries
        self.step_timeout = step_timeout
        # a line quiet this long carries no frame (20 byte times and scheduling slack): after a damaged
        # frame the host resends once the line is quiet; without any answer it resends after `resend`
        # (two longest frames at the baud rate, at least 0.25 s)
        self.settle = min(timeout, 0.02 + 200 / baudrate)
        self.resend = min(timeout, max(0.25, 0.05 + 20 * P.MAX_WIRE / baudrate))
        try:
            self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=min(timeout, 0.01))
        except (serial.SerialException, ValueError, OSError) as e:
            raise TslError(f"cannot open {url}: {e}") from None
        self.decoder, self.queue = P.Decoder(), []
        self.last_rx = 0.0            # when the last byte arrived
        self.seq = int.from_bytes(os.urandom(2), "little")   # a fresh session never looks like a resend
        self.sync = True
        self.link_errors = 0          # corrupted frames received, over this connection's life
        self.last_run = None          # RUN_DONE of the last run: counts and cycles
        self.step_seconds = None      # wall time per step of the last run, as observed
        self.info = None              # the last IDENTITY
        self.sent_at = 0.0            # when the last request went out
        self.rtt = {}                 # request type -> (smoothed round trip, its variation), RFC 6298
        self.backoff = {}             # request type -> resend interval multiplier after silent tries

    def close(self):
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- link ----

    def _recv(self, deadline, quiet=None):
        """The next Frame or link-error code from the device; None at the deadline, or (quiet) once
        no byte has arrived for `quiet` seconds."""
        while not self.queue:
            now = time.monotonic()
            if now >= deadline or quiet is not None and now - self.last_rx >= quiet:
                return None
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except Exception as e:   # pyserial raises several types for a vanished port
                raise TslError(f"{self.url}: connection lost: {e}") from None
            if data:
                self.last_rx = time.monotonic()
                self.queue += self.decoder.feed(data)
        return self.queue.pop(0)

    def _send(self, frame):
        try:
            self.port.write(b"\0" + frame)   # lead-in: the firmware's console takes a printable first byte
            self.port.flush()
        except Exception as e:
            raise TslError(f"{self.url}: cannot write: {e}") from None
        self.sent_at = time.monotonic()

    def _bad(self, what):
        return TslError(f"{self.url}: protocol error: {what}")

    def _garbled(self, r, tally):
        """True (and counted) if r is the wreck of a frame: a decoder verdict, or a link error the
        device reports (those carry seq 0, never the request's)."""
        if isinstance(r, int):
            self.link_errors += 1
            if r == P.E_CRC:
                tally.crc += 1
            else:
                tally.malformed += 1
            return True
        if r.type == P.ERROR and r.seq == 0 and len(r.payload) == P.ERROR_P.size and \
                P.parse_error(r.payload)[0] in P.LINK_ERRORS:
            tally.reported += 1
            return True
        return False

    def _interval(self, type_):
        """Seconds to wait for a reply before resending: the round trip measured on this link for
        this request type (slow emulated UARTs, big frames) with TCP's margin, at least `resend`,
        doubled after each silent try until a clean exchange: resends never pile up faster than
        the device can read them."""
        s = self.rtt.get(type_)
        base = self.resend if s is None else max(self.resend, s[0] + 4 * s[1])
        return min(self.timeout, base * self.backoff.get(type_, 1))

    def _measured(self, type_, r):
        """A clean exchange (one send, its reply) took r seconds: update the estimate (Karn: only
        these, a resent request's reply could answer either copy)."""
        s = self.rtt.get(type_)
        self.rtt[type_] = (r, r / 2) if s is None else (0.875 * s[0] + 0.125 * r, 0.75 * s[1] + 0.25 * abs(s[0] - r))
        self.backoff[type_] = 1

    def request(self, type_, payload=b"", expect=(), wait=None, aside=None):
        """Send one request and return the first reply Frame with its seq. Resent after a damaged
        frame, a link error from the device, an E_SEQ, or _interval() s without a reply; gives up
        after `retries` resends or `timeout` s of silence. wait: seconds the device may take to
        answer (slow requests): no resend before it. aside(frame): offered every intact frame of
        another seq; if it returns True the request is abandoned and None returned. Raises
        TslError on an ERROR reply, a reply that does not fit, or when no valid reply came."""
        name = P.NAMES.get(type_, type_)
        self.seq = (self.seq + 1) & 0xFFFF
        quiet = wait + self.timeout if wait else self.timeout
        tally, frame, sends = _Tally(), None, 0
        t0 = heard = time.monotonic()
        while True:
            if frame is None:
                frame = P.encode_frame(type_, P.FLAG_SYNC if self.sync else 0, self.seq, payload)
            self._send(frame)
            sends += 1
            deadline, quiet_line, silent = time.monotonic() + (wait or self._interval(type_)), None, True
            while (r := self._recv(deadline, quiet_line)) is not None:
                if self._garbled(r, tally):
                    # our request or its reply was damaged: resend once the line has been quiet
                    # for `settle`, unless a valid reply comes first
                    quiet_line, silent, heard = self.settle, False, time.monotonic()
                    continue
                if r.seq != self.seq:                 # a stale reply, a stream frame, a stray ERROR:
                    if aside is not None and aside(r):  # no answer, so the silence clock runs on
                        return None
                    tally.stale += 1
                    continue
                heard = time.monotonic()
                if r.type == P.ERROR:
                    try:
                        code, _, detail = P.parse_error(r.payload)
                    except P.BadPayload as e:
                        raise self._bad(f"{e}, in answer to {name}") from None
                    if code == P.E_SEQ:               # device lost track (rebooted, other host)
                        self.sync, frame, silent = True, None, False
                        tally.seq += 1
                        break
                    if code in P.LINK_ERRORS:         # not ours: link errors carry seq 0
                        tally.stale += 1
                        continue
                    raise Refused(f"{self.url}: {name} refused: {P.error_text(code, detail)}", code, detail)
                if expect and r.type not in expect:
                    raise self._bad(f"{r.name} in answer to {name}")
                self.sync = False
                if sends == 1 and not wait:
                    self._measured(type_, time.monotonic() - self.sent_at)
                return r
            if silent and not wait:
                self.backoff[type_] = min(64, 2 * self.backoff.get(type_, 1))
            now = time.monotonic()
            if sends > self.retries or now - heard >= quiet:
                break
        waited = time.monotonic() - t0
        if tally.heard():
            raise TslError(f"the device on {self.url} answered, but {tally.text()}: no valid answer to {name} "
                           f"in {sends} tries ({waited:.1f} s); check the baud rate ({self.baudrate}) and cable")
        raise TslError(f"no answer from the device on {self.url} after {waited:.1f} s; "
                       f"is the firmware running at {self.baudrate} baud?")

    def _parse(self, fn, r, *args):
        try:
            return fn(r.payload, *args)
        except P.BadPayload as e:
            raise self._bad(str(e)) from None

    # ---- messages ----

    def identify(self):
        """-> dict: board, firmware, model_hash (arch hash - weights crc), sizes, vocab, max_seq ..."""
        self.info = self._parse(P.parse_identity, self.request(P.IDENTIFY, expect=(P.IDENTITY,)))
        return self.info

    def _tokenizer(self, cap, what):
        info = self.info or self.identify()
        if not info[cap]:
            raise TslError(f"{self.url}: the firmware on {info['board']} has no tokenizer" +
                           (" encoder (its tokenizer.json has rules the C encoder does not do)"
                            if info["tokenizer_hash"] else "") + f"; {what}")
        return info

    def encode(self, text):
        """-> token ids of `text` from the device's C encoder (no BOS), each in its vocabulary."""
        info = self._tokenizer("tok_encode", "pass --ids, or a build directory with its tokenizer")
        data = text.encode("utf-8")
        if len(data) > P.MAX_ENCODE:
            raise TslError(f"a text of {len(data)} bytes: the device encodes at most {P.MAX_ENCODE} bytes at once")
        return self._parse(P.parse_ids, self.request(P.ENCODE, data, expect=(P.IDS,)), info["vocab"])

    def token_bytes(self, ids):
        """-> the bytes of ids, concatenated, from the device's token table (as Tokenizer.token_bytes)."""
        info = self._tokenizer("tok_decode", "pass --print-ids, or a build directory with its tokenizer")
        ids, out = [int(i) for i in ids], bytearray()
        bad = [i for i in ids if not 0 <= i < info["vocab"]]
        if bad:
            raise TslError(f"token id {bad[0]} out of range [0, {info['vocab']}) of the device's model")
        while ids:
            part = ids[:P.MAX_OUT_IDS]
            done, data = self._parse(P.parse_text, self.request(P.DECODE, P.decode_req(part), expect=(P.TEXT,)),
                                     len(part))
            out += data
            ids = ids[done:]
        return bytes(out)

    def check_run(self, ids, count, kind, start=0):
        """TslError unless a run of `count` items over prompt `ids` at positions start.. fits the
        protocol and the device."""
        info = self.info or self.identify()
        n, most = len(ids), P.MAX_CONT_IDS if start else P.MAX_IDS
        if not 1 <= n <= most:
            raise TslError(f"a prompt of {n} token ids: one request carries 1 to {most}")
        if not 0 <= start < info["max_seq"]:
            raise TslError(f"a start at position {start}: the device's max_seq is {info['max_seq']}")
        if start + n > info["max_seq"]:
            raise TslError(f"a prompt of {n} token ids" + (f" at position {start}" if start else "") +
                           f": the device's max_seq is {info['max_seq']}")
        bad = [i for i in ids if not 0 <= i < info["vocab"]]
        if bad:
            raise TslError(f"token id {bad[0]} out of range [0, {info['vocab']}) of the device's model")
        if not 0 <= count <= min(P.MAX_ITEMS, info["max_items"]):
            raise TslError(f"{count} tokens in one run: the device takes at most "
                           f"{min(P.MAX_ITEMS, info['max_items'])}")
        if kind == P.RUN_GEN and count and start + n + count - 1 > info["max_seq"]:
            raise TslError(f"{start + n} prompt ids + {count} tokens pass the device's max_seq {info['max_seq']} "
                           f"(at most {info['max_seq'] + 1 - start - n} tokens after this prompt)")

    def generate(self, ids, max_tokens, temperature=0.0, top_p=1.0, seed=0, start=0, prefix=(), text=False):
        """Start a generation now; -> iterator of (token, cycles) as the device produces them, exactly
        max_tokens of them (text: (token, cycles, bytes) -- the token's bytes from the device's
        tokenizer, None when it has none or they were too long to carry). start > 0: the prompt
        continues at that position the conversation `prefix` (start ids) whose KV cache the device
        holds (GEN_CONTINUE); the device refuses with E_CONTEXT (Refused) when it does not hold it.
        After it ends, self.last_run holds prefill and total cycles."""
        ids, prefix = [int(i) for i in ids], [int(i) for i in prefix]
        self.check_run(ids, max_tokens, P.RUN_GEN, start)
        if len(prefix) != start:
            raise TslError(f"a continuation at position {start} needs the {start} ids before it, not {len(prefix)}")
        if start:
            first = self._start(P.GEN_CONTINUE, ids, max_tokens, temperature, top_p, seed, prefix)
        else:
            first = self._start(P.GEN_START, ids, max_tokens, temperature, top_p, seed)
        decoder = self.info["tok_decode"]
        items = self._stream(first, P.RUN_GEN, max_tokens, len(ids))
        if text:
            return ((tok, cyc, txt if decoder else None) for _, tok, cyc, _, txt in items)
        return ((tok, cyc) for _, tok, cyc, _, _ in items)

    def verify_steps(self, ids, temperature=0.8, top_p=0.9, seed=7):
        """Run len(ids) decode steps on the device (ids[s] at position s), as tinyslm.verify does.
        -> dict(logits=[fnv1a64 per step], tokens=[sampled], cycles=[...], kv=fnv1a64 of the KV cache)."""
        ids = [int(i) for i in ids]
        self.check_run(ids, len(ids), P.RUN_VERIFY)
        first = self._start(P.VERIFY_START, ids, 0, temperature, top_p, seed)
        items = list(self._stream(first, P.RUN_VERIFY, len(ids), 1))
        return dict(logits=[h for _, _, _, h, _ in items], tokens=[t for _, t, _, _, _ in items],
                    cycles=[c for _, _, c, _, _ in items], kv=self.last_run["kv_hash"])

    def _start(self, type_, ids, max_tokens, temperature, top_p, seed, prefix=None):
        if temperature != temperature or top_p != top_p:
            raise TslError("temperature and top_p must be numbers, not NaN")
        try:
            payload = P.run_start(ids, max_tokens, temperature, top_p, seed) if prefix is None else \
                P.run_continue(len(prefix), prefix, ids, max_tokens, temperature, top_p, seed)
        except (ValueError, OverflowError, struct.error) as e:
            raise TslError(f"{P.NAMES[type_]}: {e}") from None
        return self.request(type_, payload, expect=(P.RUN_ACK, P.ITEM, P.RUN_DONE))

    def _silence(self, per_step):
        """Seconds without a new stream frame after which the run should be over: derived from the
        time per step once items came, else step_timeout (the prefill's length is unknown)."""
        if per_step is None:
            return self.step_timeout
        return min(self.step_timeout, 0.2 + 2 * self.settle + 4 * per_step)

    def _stream(self, first, kind, count, steps_to_first):
        """Items 0..count-1 of the run that request `first` started, in order. Items lost or garbled
        on the way are fetched once the stream is over: the device reads nothing while it runs.
        A silence longer than the run should take is answered with RUN_STATUS, which a finished
        device answers with RUN_DONE; stream frames arriving meanwhile are taken as they come."""
        seq, vocab = first.seq, (self.info or {}).get("vocab")
        st = dict(items={}, done=None, status=set(), last=None, per_step=None, t=time.monotonic())
        t_start = self.sent_at

        def take(r):
            """A frame of this run (or a RUN_DONE answering one of our RUN_STATUS): True if it is one."""
            now = time.monotonic()
            if r.seq != seq and not (r.seq in st["status"] and r.type == P.RUN_DONE):
                return False
            if r.type == P.RUN_ACK:
                k, n = self._parse(P.parse_run_ack, r)
                if (k, n) != (kind, count):
                    raise self._bad(f"RUN_ACK for {n} items of kind {k}; asked for {count} of kind {kind}")
            elif r.type == P.ITEM:
                item = self._parse(P.parse_item, r, count, vocab)
                old = st["items"].get(item[0])
                if old is not None and old != item:
                    raise self._bad(f"two different ITEMs {item[0]}")
                if old is None:
                    st["items"][item[0]] = item
                    last = st["last"] or (-steps_to_first, t_start)
                    if item[0] > last[0]:
                        gap = (now - last[1]) / (item[0] - last[0])
                        st["per_step"] = max(st["per_step"] or 0.0, gap)
                        st["last"] = (item[0], now)
                    st["t"] = now                      # progress: only new items move the clock
            elif r.type == P.RUN_DONE:
                done = self._parse(P.parse_run_done, r)
                if (done["kind"], done["count"]) != (kind, count):
                    raise self._bad(f"RUN_DONE after {done['count']} items of kind {done['kind']}; "
                                    f"asked for {count} of kind {kind}")
                st["done"] = done
            else:
                raise self._bad(f"{r.name} in the stream of a run")
            return True

        nxt, tally = 0, _Tally()
        try:
            if not take(first):
                raise self._bad(f"{first.name} in answer to the run's start")
            while True:
                while nxt in st["items"]:                   # yield in order, as they come
                    yield st["items"][nxt]
                    nxt += 1
                if st["done"] is not None:
                    break
                r = self._recv(st["t"] + self._silence(st["per_step"]))
                if r is None:                               # silence: the run should be over
                    per = st["per_step"]
                    wait = self._silence(per) if per is not None else self.step_timeout
                    reply = self.request(P.RUN_STATUS, expect=(P.RUN_DONE,), wait=wait, aside=take)
                    st["status"].add(self.seq)
                    if reply is not None:
                        take(reply)
                    else:
                        st["t"] = time.monotonic()
                elif not self._garbled(r, tally) and not take(r):
                    continue                                # stale frames: dropped
            self.step_seconds = st["per_step"]
            for i in range(nxt, count):                     # lost on the way: from the device's history
                item = st["items"].get(i)
                if item is None:
                    r = self.request(P.RUN_FETCH, struct.pack("<H", i), expect=(P.ITEM,))
                    item = self._parse(P.parse_item, r, count, vocab)
                    if item[0] != i:
                        raise self._bad(f"ITEM {item[0]} in answer to RUN_FETCH {i}")
                yield item
            self.last_run = st["done"]
        except GeneratorExit:
            while st["done"] is None:                       # abandoned: let the run finish
                r = self._recv(st["t"] + self._silence(st["per_step"]))
                if r is None:
                    break
                if not self._garbled(r, tally):
                    take(r)
            self.last_run = st["done"]
            raise

    def debug_begin(self, step, full=False):
        """Replay the last verify run up to `step` (full: through it). -> index of the next op."""
        per = self.step_seconds or self.step_timeout
        r = self.request(P.DEBUG_BEGIN, struct.pack("<HBx", step, int(full)), expect=(P.DEBUG_ACK,),
                         wait=self.timeout + 2 * (step + 1) * per)
        got = self._parse(P.parse_debug_ack, r)
        n_ops = (self.info or {}).get("n_ops", got[1])
        want = (step, n_ops, n_ops if full else 0)
        if got != want:
            raise self._bad(f"DEBUG_ACK (step, n_ops, next_op) = {got}, expected {want}")
        return got[2]

    def op_hashes(self, step, regions):
        """Run step `step` of the last verify run op by op; after op i hash regions[i] =
        (space, offset, length), space 0 arena, 1 KV cache. -> [fnv1a64] per op."""
        self.debug_begin(step)
        out = []
        for k in range(0, len(regions), P.MAX_REGIONS):
            chunk = regions[k:k + P.MAX_REGIONS]
            r = self.request(P.DEBUG_OPS, P.debug_ops(chunk), expect=(P.OP_HASHES,),
                             wait=self.timeout + 2 * (self.step_seconds or self.step_timeout))
            first, hashes = self._parse(P.parse_op_hashes, r)
            if (first, len(hashes)) != (k, len(chunk)):
                raise self._bad(f"OP_HASHES for ops {first}..{first + len(hashes) - 1}, asked for "
                                f"{k}..{k + len(chunk) - 1}")
            out += hashes
        return out

    def read(self, space, offset, length):
        """Raw bytes of a memory space (0 arena, 1 KV cache, 2 active weights), in chunks."""
        out = bytearray()
        while len(out) < length:
            n = min(P.MAX_READ, length - len(out))
            r = self.request(P.READ, P.READ_REQ.pack(space, offset + len(out), n), expect=(P.DATA,))
            head = P.DATA_HEAD.pack(space, offset + len(out))
            if r.payload[:len(head)] != head or len(r.payload) != len(head) + n:
                raise self._bad(f"DATA of {len(r.payload)} bytes does not answer READ of {n} bytes "
                                f"at {offset + len(out)} in space {space}")
            out += r.payload[len(head):]
        return bytes(out)

    def read_logits(self, step):
        """The float32 logits of step `step` of the last verify run, as raw little-endian bytes."""
        info = self.info or self.identify()
        self.debug_begin(step, full=True)
        return self.read(P.SPACE_ARENA, info["logits_offset"], 4 * info["vocab"])

    def _load(self, type_, payload, received, wait=None):
        r = self.request(type_, payload, expect=(P.LOAD_ACK,), wait=wait)
        got, cap = self._parse(P.parse_load_ack, r)
        want_cap = (self.info or {}).get("load_capacity", cap)
        if (got, cap) != (received, want_cap):
            raise self._bad(f"LOAD_ACK (received, capacity) = ({got}, {cap}) in answer to "
                            f"{P.NAMES[type_]}, expected ({received}, {want_cap})")

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
        self._load(P.LOAD_BEGIN, struct.pack("<III", total, arch, crc), 0)
        for off in range(0, total, P.MAX_LOAD_CHUNK):
            end = min(off + P.MAX_LOAD_CHUNK, total)
            self._load(P.LOAD_DATA, struct.pack("<I", off) + blob[off:end], end)
            if progress:
                progress(end, total)
        # the device CRCs the whole blob before it answers
        self._load(P.LOAD_COMMIT, b"", total, wait=max(self.timeout, 10.0))
