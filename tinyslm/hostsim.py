"""Build a compiled project for the host and drive it through cffi: the host simulation."""
import hashlib
import hmac
import os
import shutil
import tempfile
from pathlib import Path

import cffi
import numpy as np

from . import __version__, procs
from .errors import TslError
from .objcache import compile_objects, compiler_version, mac, secret

HOST_CFLAGS = ["-O2", "-fPIC", "-pthread", "-std=c99", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Werror"]
CDEF = """
typedef struct tsl_model { const uint8_t *weights; uint8_t *arena; int8_t *kv; void *pool; } tsl_model;
int32_t tsl_set_threads(tsl_model *m, int32_t n);
int32_t tsl_threads(const tsl_model *m);
size_t tsl_arena_size(void);
size_t tsl_kv_size(void);
int32_t tsl_init(tsl_model *m, const uint8_t *weights, uint8_t *arena, int8_t *kv);
int32_t tsl_check_weights(const uint8_t *weights, uint32_t n_bytes);
int32_t tsl_reset(tsl_model *m);
int32_t tsl_forward(tsl_model *m, int32_t token, int32_t pos, const float **logits);
int32_t tsl_run_op(tsl_model *m, int32_t i, int32_t token, int32_t pos);
int32_t tsl_prefill(tsl_model *m, const int32_t *tokens, int32_t n, int32_t pos0, uint8_t *work, const float **logits);
size_t tsl_prefill_work_size(void);
typedef int32_t (*tsl_token_fn)(void *user, int32_t token);
typedef struct { int32_t max_tokens; float temperature; float top_p; uint64_t seed; int32_t eos; } tsl_generate_cfg;
int32_t tsl_generate(tsl_model *m, const int32_t *prompt, int32_t n_prompt, const tsl_generate_cfg *cfg,
                     tsl_token_fn on_token, void *user, const volatile int32_t *cancel, void *scratch,
                     int32_t *n_out);
typedef struct { uint64_t state; float temperature; float top_p; } tsl_sampler;
void tsl_sampler_init(tsl_sampler *s, uint64_t seed, float temperature, float top_p);
int32_t tsl_sample(tsl_sampler *s, const float *logits, int32_t V, float *probs, int32_t *idx);
"""


def _compiler():
    """-> (path, version text) of the host C compiler; the version is part of the cache key."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise TslError("no host C compiler (cc/gcc) found: apt-get install gcc")
    return cc, compiler_version(cc)


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
    key = secret()
    try:
        if key and lib.is_file() and not lib.is_symlink() and not tagf.is_symlink() and \
                hmac.compare_digest(tagf.read_text().strip(), mac(key, digest, lib.read_bytes())):
            return lib
    except (OSError, UnicodeDecodeError):
        pass
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=bdir))
    try:
        # relative to cwd = out: the flags, part of each object's key, are then the same for every build
        objs = compile_objects(cc, [*cflags, "-Iruntime", "-Imodel"], man["sources"], tmp, out,
                               what=f"{out}: host build")
        cmd = [cc, *cflags, "-shared", "-o", str(tmp / "libtsl.so"), *map(str, objs)]
        r = procs.run(cmd, cwd=out, timeout=1800)
        if r.returncode:
            raise TslError(f"{out}: host build failed:\n{r.stderr.decode(errors='replace').strip()[:2000]}")
        os.replace(tmp / "libtsl.so", lib)                 # replaces a link, never writes through one
        if key:
            (tmp / "tag").write_text(mac(key, digest, lib.read_bytes()) + "\n")
            os.replace(tmp / "tag", tagf)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return lib


class HostModel:
    """The compiled C model, loaded with cffi, on buffers Python owns (the C API's caller-owned
    arena and KV cache); mirrors reference.Reference's interface."""

    def __init__(self, out, man=None, threads=1, cflags=None):
        from .builddir import load_build
        self.out = Path(out)
        self.man = man or load_build(out)[0]
        self.ffi = cffi.FFI()
        self.ffi.cdef(CDEF)
        self.lib = self.ffi.dlopen(str(build_host_lib(out, self.man, cflags)))
        mem, m = self.man["memory"], self.man["model"]
        if (self.lib.tsl_arena_size(), self.lib.tsl_kv_size()) != (max(16, mem["arena_bytes"]), max(16, mem["kv_bytes"])):
            raise TslError(f"{out}: the host library's buffer sizes are not the manifest's")
        self._arena_mem, arena = self._aligned(self.lib.tsl_arena_size(), "uint8_t")
        self._kv_mem, kv = self._aligned(self.lib.tsl_kv_size(), "int8_t")
        self.model = self.ffi.new("tsl_model *")
        rc = self.lib.tsl_init(self.model, self.ffi.NULL, arena, kv)
        if rc:
            raise TslError(f"{out}: weights rejected by the model (code {rc})")
        self.set_threads(threads)
        self.vocab = m["vocab"]
        self.n_ops = len(self.man["ops"])
        self.arena = self.ffi.buffer(arena, self.lib.tsl_arena_size())
        self.kvbuf = self.ffi.buffer(kv, self.lib.tsl_kv_size())
        self._probs = self.ffi.new("float[]", self.vocab)
        self._idx = self.ffi.new("int32_t[]", self.vocab)
        self._lg = self.ffi.new("const float **")

    def set_threads(self, n):
        """Run the matvecs on n threads (a build for a board with cores > 1; the CDEF's tsl_model
        has room for the pool pointer whether or not the build has one)."""
        try:
            fn = self.lib.tsl_set_threads
        except AttributeError:
            if n == 1:
                return
            raise TslError(f"{self.out}: --threads {n}: this build has no thread pool (its board "
                           f"{self.man['board']} declares cores = 1); compile it for host or a Linux board") from None
        self._check(fn(self.model, int(n)), f"tsl_set_threads({n})")

    def close(self):
        """Joins the worker threads (if any)."""
        if getattr(self, "model", None) is not None and hasattr(self.lib, "tsl_set_threads"):
            self.lib.tsl_set_threads(self.model, 1)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _aligned(self, n, ctype):
        """(owner, 16-byte aligned ctype* into it) of n bytes."""
        mem = self.ffi.new("uint8_t[]", n + 16)
        addr = int(self.ffi.cast("uintptr_t", mem))
        return mem, self.ffi.cast(ctype + " *", mem + (-addr % 16))

    def _check(self, rc, what):
        if rc:
            raise TslError(f"{self.out}: {what} failed with tsl_status {rc}")

    def reset(self):
        self._check(self.lib.tsl_reset(self.model), "tsl_reset")

    def step(self, token, pos):
        self._check(self.lib.tsl_forward(self.model, int(token), int(pos), self._lg), f"tsl_forward({token}, {pos})")
        return np.frombuffer(self.ffi.buffer(self._lg[0], 4 * self.vocab), np.float32).copy()

    def prefill(self, tokens, pos0=0):
        """tokens at positions pos0.. through tsl_prefill (GEMM tiles; the decode loop where the
        build has none): -> the last token's logits (a copy), as the last step's."""
        tokens = [int(t) for t in tokens]
        try:
            fn = self.lib.tsl_prefill
        except AttributeError:
            fn = None
        if fn is None or not tokens:
            lg = None
            for i, t in enumerate(tokens):
                lg = self.step(t, pos0 + i)
            return lg
        if getattr(self, "_work", None) is None:
            self._work_mem, self._work = self._aligned(self.lib.tsl_prefill_work_size(), "uint8_t")
        ids = self.ffi.new("int32_t[]", tokens)
        self._check(fn(self.model, ids, len(tokens), int(pos0), self._work, self._lg),
                    f"tsl_prefill({len(tokens)} tokens at {pos0})")
        return np.frombuffer(self.ffi.buffer(self._lg[0], 4 * self.vocab), np.float32).copy()

    def run_op(self, i, token, pos):
        self._check(self.lib.tsl_run_op(self.model, i, int(token), int(pos)), f"tsl_run_op({i})")

    def generate(self, ids, max_tokens, temperature, top_p, seed, eos=None, on_token=None):
        """The C generate loop (tsl_generate): -> (status, [tokens])."""
        out = []

        @self.ffi.callback("int32_t(void *, int32_t)")
        def cb(user, t):
            out.append(int(t))
            if on_token:
                on_token(int(t))
            return 0
        cfg = self.ffi.new("tsl_generate_cfg *", dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                                       seed=seed, eos=-1 if eos is None else eos))
        prompt = self.ffi.new("int32_t[]", [int(i) for i in ids])
        scratch = self.ffi.new("float[]", 2 * self.vocab)
        n = self.ffi.new("int32_t *")
        rc = self.lib.tsl_generate(self.model, prompt, len(ids), cfg, cb, self.ffi.NULL, self.ffi.NULL, scratch, n)
        return rc, out

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
