"""Build a compiled project for the host and drive it through cffi: the host simulation."""
import json
import shutil
import subprocess
from pathlib import Path

import cffi
import numpy as np

from .errors import TslError

HOST_CFLAGS = ["-O2", "-fPIC", "-std=c99", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Werror"]
CDEF = """
int32_t tsl_model_init(const uint8_t *blob);
void tsl_model_reset(void);
void tsl_model_op(int32_t i, int32_t token, int32_t pos);
const float *tsl_model_forward(int32_t token, int32_t pos);
uint8_t *tsl_model_arena(void);
int8_t *tsl_model_kv(void);
typedef struct { uint64_t state; float temperature; float top_p; } tsl_sampler;
void tsl_sampler_init(tsl_sampler *s, uint64_t seed, float temperature, float top_p);
int32_t tsl_sample(tsl_sampler *s, const float *logits, int32_t V, float *probs, int32_t *idx);
"""


def build_host_lib(out, cflags=None, tag="host"):
    """Compile the project's sources into OUT/.tinyslm/<tag>/libtsl.so; returns its path."""
    out = Path(out).resolve()
    man = json.loads((out / "manifest.json").read_text())
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise TslError("no host C compiler (cc/gcc) found: apt-get install gcc")
    bdir = out / ".tinyslm" / tag
    bdir.mkdir(parents=True, exist_ok=True)
    lib = bdir / "libtsl.so"
    srcs = [out / s for s in man["sources"]]
    deps = srcs + [out / "model" / "tsl_weights.bin"]
    if lib.exists() and all(lib.stat().st_mtime >= s.stat().st_mtime for s in deps):
        return lib
    cmd = [cc, *(cflags or HOST_CFLAGS), "-shared", "-I", str(out / "runtime"), "-I", str(out / "model"),
           "-o", str(lib), *map(str, srcs)]
    r = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    if r.returncode:
        raise TslError(f"{out}: host build failed:\n{r.stderr.strip()[:2000]}")
    return lib


class HostModel:
    """The compiled C model, loaded with cffi; mirrors reference.Reference's interface."""

    def __init__(self, out, lib=None):
        self.out = Path(out)
        self.man = json.loads((self.out / "manifest.json").read_text())
        self.ffi = cffi.FFI()
        self.ffi.cdef(CDEF)
        self.lib = self.ffi.dlopen(str(lib or build_host_lib(out)))
        rc = self.lib.tsl_model_init(self.ffi.NULL)
        if rc:
            raise TslError(f"{out}: weights rejected by the model (code {rc})")
        m = self.man["model"]
        self.vocab = m["vocab"]
        self.n_ops = len(self.man["ops"])
        self.arena = self.ffi.buffer(self.lib.tsl_model_arena(), max(16, self.man["memory"]["arena_bytes"]))
        self.kvbuf = self.ffi.buffer(self.lib.tsl_model_kv(), max(16, self.man["memory"]["kv_bytes"]))
        self._probs = self.ffi.new("float[]", self.vocab)
        self._idx = self.ffi.new("int32_t[]", self.vocab)

    def reset(self):
        self.lib.tsl_model_reset()

    def step(self, token, pos):
        p = self.lib.tsl_model_forward(int(token), int(pos))
        return np.frombuffer(self.ffi.buffer(p, 4 * self.vocab), np.float32).copy()

    def run_op(self, i, token, pos):
        self.lib.tsl_model_op(i, int(token), int(pos))

    def buffer(self, name):
        """Current contents of an arena or KV buffer, as numpy."""
        b = self.man["memory"]["buffers"][name]
        src = self.kvbuf if b["kind"] == "kv" else self.arena
        dt = {"f32": np.float32, "s8": np.int8, "s32": np.int32}[b["dtype"]]
        return np.frombuffer(src[b["offset"]:b["offset"] + b["bytes"]], dt).copy()

    def kv(self):
        return bytes(self.kvbuf)

    def sampler(self, seed, temperature, top_p):
        s = self.ffi.new("tsl_sampler *")
        self.lib.tsl_sampler_init(s, seed, temperature, top_p)
        return s

    def sample(self, s, logits):
        arr = np.ascontiguousarray(logits, np.float32)
        buf = self.ffi.cast("const float *", self.ffi.from_buffer(arr))
        return int(self.lib.tsl_sample(s, buf, self.vocab, self._probs, self._idx))
