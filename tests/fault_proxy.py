"""A TCP proxy on 127.0.0.1 that damages a byte stream on purpose: drops, flips and delays bytes,
from a seeded RNG, so a failure replays. Loopback only, threads only, bounded run time: it stops
by itself after `max_seconds` (or on stop()/exit from a with-block). Each direction draws from
its own RNG per byte, so the damage a given byte stream gets does not depend on how the OS
chunks it; only the pauses (drawn per chunk) do.

    with FaultProxy(target_port, seed=3, drop=0.002, flip=0.002) as px:
        Device(f"socket://127.0.0.1:{px.port}")
"""
import random
import socket
import threading
import time


class FaultProxy:
    def __init__(self, target_port, seed=0, drop=0.0, flip=0.0, delay=0.0, max_delay=0.02,
                 max_seconds=60.0):
        """drop, flip: probability per byte; delay: probability per chunk of a pause up to max_delay s."""
        self.target = ("127.0.0.1", target_port)
        self.drop, self.flip, self.delay, self.max_delay = drop, flip, delay, max_delay
        self.seed = seed
        self.lock = threading.Lock()          # guards stats
        self.stats = dict(dropped=0, flipped=0, delayed=0, bytes=0)
        self.deadline = time.monotonic() + max_seconds
        self.stopped = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.socks = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stopped.set()
        for s in [self.server, *self.socks]:
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(timeout=2)

    def _alive(self):
        return not self.stopped.is_set() and time.monotonic() < self.deadline

    def _accept(self):
        while self._alive():
            try:
                client, _ = self.server.accept()
            except (socket.timeout, OSError):
                continue
            upstream = socket.create_connection(self.target, timeout=2)
            for s in (client, upstream):
                s.settimeout(0.1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks += [client, upstream]
            for k, (a, b) in enumerate(((client, upstream), (upstream, client))):
                rngs = random.Random(f"{self.seed}/{k}"), random.Random(f"{self.seed}/{k}/pause")
                t = threading.Thread(target=self._pump, args=(a, b, *rngs), daemon=True)
                self.threads.append(t)
                t.start()
        self.stopped.set()

    def _damage(self, data, rng, prng):
        out, dropped, flipped = bytearray(), 0, 0
        for b in data:
            r = rng.random()
            if r < self.drop:
                dropped += 1
                continue
            if r < self.drop + self.flip:
                b ^= 1 << rng.randrange(8)
                flipped += 1
            out.append(b)
        pause = prng.random() * self.max_delay if prng.random() < self.delay else 0.0
        with self.lock:
            for k, v in (("dropped", dropped), ("flipped", flipped), ("bytes", len(data)), ("delayed", pause > 0)):
                self.stats[k] += v
        return bytes(out), pause

    def _pump(self, src, dst, rng, prng):
        while self._alive():
            try:
                data = src.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            data, pause = self._damage(data, rng, prng)
            if pause:
                time.sleep(pause)
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
