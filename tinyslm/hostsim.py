"""Build a compiled project for the host and drive it through cffi: the host simulation."""
import hashlib
import hmac
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import cffi
import numpy as np

from . import __version__, procs
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


def _compiler():
    """-> (path, version text) of the host C compiler; the version is part of the cache key."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise TslError("no host C compiler (cc/gcc) found: apt-get install gcc")
    if cc not in _CC_VERSION:
        r = subprocess.run([cc, "--version"], capture_output=True, text=True)
        _CC_VERSION[cc] = r.stdout
    return cc, _CC_VERSION[cc]


_CC_VERSION = {}


def _secret():
    """32 random bytes kept in the user's cache folder (mode 0600): what makes a cached library's
    tag unforgeable by whoever wrote the build directory. None if there is no such folder."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tinyslm"
    p = base / "host-library-key"
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
        except FileExistsError:
            pass
        key = p.read_bytes()
        return key if len(key) == 32 and not p.is_symlink() else None
    except OSError:
        return None


def _inputs_digest(out, man, cc, version, cflags):
    """sha256 of everything the host library is made from: compiler, flags, every source and header
    the build holds, and the weights blob its assembly includes."""
    h = hashlib.sha256()
    for part in (__version__, cc, version, *cflags):
        h.update(part.encode() + b"\0")
    files = sorted({*man["sources"], *(str(p.relative_to(out)) for d in ("runtime", "model")
                                       for p in (out / d).glob("*") if p.is_file())})
    for rel in files:
        h.update(rel.encode() + b"\0" + hashlib.sha256((out / rel).read_bytes()).digest())
    return h.hexdigest()


def build_host_lib(out, man, cflags=None, tag="host"):
    """The host shared library of a checked build (manifest `man` from builddir.load_build), built
    from the build's own sources with this machine's compiler and tinyslm's flags; -> its path.
    A library is reused only when its tag file holds an HMAC, under the user's secret key, of the
    library's bytes and of the inputs' digest: a library shipped inside a build is never loaded."""
    from .builddir import private_dir
    out = Path(out).resolve()
    cc, version = _compiler()
    cflags = list(cflags or HOST_CFLAGS)
    digest = _inputs_digest(out, man, cc, version, cflags)
    bdir = private_dir(out, tag)
    lib, tagf = bdir / f"libtsl-{digest[:16]}.so", bdir / f"libtsl-{digest[:16]}.hmac"
    key = _secret()

    def mac(data):
        return hmac.new(key, digest.encode() + hashlib.sha256(data).digest(), "sha256").hexdigest()
    try:
        if key and lib.is_file() and not lib.is_symlink() and not tagf.is_symlink() and \
                hmac.compare_digest(tagf.read_text().strip(), mac(lib.read_bytes())):
            return lib
    except (OSError, UnicodeDecodeError):
        pass
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=bdir))
    try:
        cmd = [cc, *cflags, "-shared", "-I", str(out / "runtime"), "-I", str(out / "model"),
               "-o", str(tmp / "libtsl.so"), *(str(out / s) for s in man["sources"])]
        r = procs.run(cmd, cwd=out, timeout=1800)
        if r.returncode:
            raise TslError(f"{out}: host build failed:\n{r.stderr.decode(errors='replace').strip()[:2000]}")
        os.replace(tmp / "libtsl.so", lib)                 # replaces a link, never writes through one
        if key:
            (tmp / "tag").write_text(mac(lib.read_bytes()) + "\n")
            os.replace(tmp / "tag", tagf)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return lib


class HostModel:
    """The compiled C model, loaded with cffi; mirrors reference.Reference's interface."""

    def __init__(self, out, man=None):
        from .builddir import load_build
        self.out = Path(out)
        self.man = man or load_build(out)[0]
        self.ffi = cffi.FFI()
        self.ffi.cdef(CDEF)
        self.lib = self.ffi.dlopen(str(build_host_lib(out, self.man)))
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
