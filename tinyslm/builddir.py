"""The build directory as data: written by `compile`, read back by every other command.

    OUT/.tinyslm/BUILD        marker: "tinyslm build directory", format, generator (written by compile only)
    OUT/manifest.json         versioned JSON: model, memory plan, ops, sources, weight table with sha256s
    OUT/program.json          the IR's structure: meta, buffers, ops and their attributes (plain JSON)
    OUT/model/tsl_weights.bin the IR's arrays, at the manifest's offsets (the same blob the C build links)

Reading a build never runs code: JSON and raw arrays only, and every field is checked (types,
ranges, names, hashes) before anything uses it. `save` writes into a fresh folder that `replace`
swaps in atomically; `replace` only ever removes a folder that carries tinyslm's marker, and the
leftovers of an interrupted compile are removed by the next one.
"""
import hashlib
import json
import os
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np

from . import __version__
from .errors import TslError
from .ir import DTYPES, Buf, Op, Program

FORMAT = 1
MARKER = Path(".tinyslm") / "BUILD"
MARKER_HEAD = "tinyslm build directory"
PROGRAM = "program.json"
MANIFEST = "manifest.json"
BLOB = Path("model") / "tsl_weights.bin"
MAX_JSON = 256 << 20                    # a manifest or program larger than this is not ours
WEIGHT_DTYPES = ("int8", "uint8", "uint16", "int32", "float32")
BUF_KINDS = ("arena", "kv", "out", "scratch")
SOURCE_DIRS = ("model", "runtime", "app")    # what the compilers read: regular files only
PACKAGE_DIRS = ("zephyr", "arduino")          # build-system packages (tinyslm/packages.py)
PARTIAL, OLD = ".partial-", ".old-"     # .OUT.partial-PID-XXXX (being written), .OUT.old-PID-XXXX (being removed)


def _dump(obj):
    return json.dumps(obj, indent=1, default=_json, allow_nan=False)


def _json(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not build-directory data")


# ---- writing ----

class partial_dir:
    """`with partial_dir(out) as tmp:` a fresh, empty folder beside `out` to write a build into (same
    filesystem: the final rename is atomic), removed if the block raises, Ctrl-C and SIGTERM included.
    Signals are held while the folder is made, so none lands between its creation and its cleanup
    being armed. Leftovers of earlier killed compiles of `out` are removed first."""

    def __init__(self, out):
        self.out, self.tmp = Path(out).resolve(), None

    def __enter__(self):
        import signal
        self.out.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(self.out)
        # The name is known before the folder exists, so a signal handled at any point below (other
        # threads do not hold it: onnxruntime's pool may take a process-directed signal, and the
        # main thread then runs the handler at its next bytecode) still finds the folder to remove.
        self.tmp = self.out.parent / f".{self.out.name}{PARTIAL}{os.getpid()}-{os.urandom(6).hex()}"
        held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        try:
            old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
            try:
                os.mkdir(self.tmp, 0o777)           # the umask applies, as for any folder the user makes
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)     # a held signal is raised here
        except BaseException:
            self._remove()
            raise
        return self.tmp

    def __exit__(self, kind, exc, tb):
        if kind is not None:
            self._remove()
        return False

    def _remove(self):
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def save(tmp, man, prog):
    """Write program.json, manifest.json and the marker into `tmp` (codegen has written the rest)."""
    tmp = Path(tmp)
    (tmp / PROGRAM).write_text(_dump(dict(
        format=FORMAT, meta=prog.meta, weights=list(prog.weights),
        bufs=[[b.name, b.dtype, b.size, b.kind] for b in prog.bufs.values()],
        ops=[dict(kind=o.kind, name=o.name, ins=o.ins, outs=o.outs, layer=o.layer, attrs=o.attrs) for o in prog.ops])))
    skip = {tmp / MANIFEST, tmp / BLOB}                  # the blob: weights_sha256 and one sha256 per tensor
    files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*")
                   if p.is_file() and p not in skip and p.relative_to(tmp).parts[0] != ".tinyslm")
    man = dict(man, format=FORMAT, program=PROGRAM,
               files={f: hashlib.sha256((tmp / f).read_bytes()).hexdigest() for f in files})
    (tmp / MANIFEST).write_text(_dump(man))
    (tmp / MARKER).parent.mkdir(exist_ok=True)
    (tmp / MARKER).write_text(f"{MARKER_HEAD}\nformat {FORMAT}\ngenerator tinyslm {__version__}\n")
    return man


def is_build(d):
    """True if folder `d` carries tinyslm's marker (a regular file, not a link)."""
    p = Path(d) / MARKER
    try:
        if p.is_symlink() or not p.is_file() or p.stat().st_size > 4096:
            return False
        return p.read_text(errors="replace").split("\n", 1)[0] == MARKER_HEAD
    except OSError:
        return False


def check_target(out):
    """-> absolute `out` if compile may write there: absent, an empty folder, or a tinyslm build
    (marker). Anything else is refused, and left as it is."""
    out = Path(out).absolute()
    out = out.parent.resolve() / out.name
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise TslError(f"{out}: exists and is not a folder; refusing to replace it")
    if out.exists() and any(out.iterdir()) and not is_build(out):
        raise TslError(f"{out}: exists and is not a tinyslm build directory (no {MARKER}); "
                       f"refusing to overwrite it: choose another -o, or empty it yourself")
    return out


def replace(tmp, out):
    """Move the finished build `tmp` to `out`, which check_target accepts (checked again here)."""
    out = check_target(out)
    if out.exists():
        old = out.with_name(f".{out.name}{OLD}{os.getpid()}-{time.time_ns()}")
        out.rename(old)
        tmp.rename(out)
        _remove_own(old)
    else:
        tmp.rename(out)


def _remove_own(d):
    """Remove a folder tinyslm made: an old build (marker) or a partial one (our name prefix)."""
    shutil.rmtree(d, ignore_errors=True)


def clean_leftovers(out):
    """Remove .OUT.partial-PID-* and .OUT.old-PID-* beside `out` whose process is gone (a killed
    compile's), and only if they are folders tinyslm could have made: real folders, with the marker
    or holding nothing but what a compile writes."""
    out = Path(out)
    pat = re.compile(rf"^\.{re.escape(out.name)}({re.escape(PARTIAL)}|{re.escape(OLD)})(\d+)-")
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return
    for p in entries:
        m = pat.match(p.name)
        if not m or p.is_symlink() or not p.is_dir() or _alive(int(m.group(2))):
            continue
        if is_build(p) or _only_compile_output(p):
            _remove_own(p)


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _only_compile_output(d):
    names = {"model", "runtime", "app", "Makefile", "tokenizer.json", "tokenizer_config.json", "memory.svg", PROGRAM, MANIFEST, ".tinyslm",
             "espidf", "CMakeLists.txt", "idf_component.yml", "library.json", *PACKAGE_DIRS}
    try:
        return all(p.name in names for p in d.iterdir())
    except OSError:
        return False


# ---- reading ----

class _Check:
    """Field checks that end in one line: FILE: FIELD: what is wrong."""

    def __init__(self, where):
        self.where = where

    def fail(self, field, what):
        raise TslError(f"{self.where}: {field}: {what}")

    def typ(self, v, t, field):
        if t is int and isinstance(v, bool) or not isinstance(v, t):
            names = t.__name__ if isinstance(t, type) else "/".join(x.__name__ for x in t)
            self.fail(field, f"expected {names}, got {type(v).__name__}")
        return v

    def int(self, v, field, lo=0, hi=2 ** 40):
        self.typ(v, int, field)
        if not lo <= v <= hi:
            self.fail(field, f"{v} out of range [{lo}, {hi}]")
        return v

    def name(self, v, field):
        self.typ(v, str, field)
        if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,200}", v):
            self.fail(field, f"{v[:60]!r} is not a plain name")
        return v

    def key(self, d, k, t, field):
        if k not in d:
            self.fail(field, f"missing '{k}'")
        return self.typ(d[k], t, f"{field}.{k}")


def _read_json(path, what):
    try:
        if path.is_symlink() or not path.is_file():
            raise TslError(f"{path}: missing (not a complete tinyslm build; compile it again)")
        if path.stat().st_size > MAX_JSON:
            raise TslError(f"{path}: {path.stat().st_size} bytes is too large for a {what}")
        d = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:
        raise TslError(f"{path}: not valid JSON ({str(e).splitlines()[0][:100]}); compile it again") from None
    except OSError as e:
        raise TslError(f"{path}: cannot read: {e.strerror}") from None
    if not isinstance(d, dict):
        raise TslError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


def _format(c, d, field="format"):
    v = d.get("format")
    if v != FORMAT:
        c.fail(field, f"{v!r}; this tinyslm ({__version__}) reads format {FORMAT}: compile the model again")


def inside(out, rel, c, field):
    """OUT/rel for a relative path that stays inside OUT through no symlink: the resolved Path."""
    c.typ(rel, str, field)
    p = Path(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or "\0" in rel:
        c.fail(field, f"{rel[:80]!r} must be a relative path inside the build directory")
    cur = out
    for part in p.parts:
        cur = cur / part
        if cur.is_symlink():
            c.fail(field, f"{rel[:80]!r} goes through a symbolic link")
    if not cur.resolve().is_relative_to(out.resolve()):
        c.fail(field, f"{rel[:80]!r} leaves the build directory")
    return cur


def _check_source_dirs(out, c):
    for d in SOURCE_DIRS + PACKAGE_DIRS:
        root = out / d
        if root.is_symlink():
            c.fail(d, "is a symbolic link")
        if not root.exists():
            continue
        for p in root.rglob("*"):
            if p.is_symlink() or not (p.is_file() or p.is_dir()):
                c.fail(str(p.relative_to(out)), "is not a regular file (links and devices are refused)")


def _check_manifest(out, man, c):
    _format(c, man)
    c.name(c.key(man, "board", str, "manifest"), "board")
    c.key(man, "tinyslm", str, "manifest")
    m = c.key(man, "model", dict, "manifest")
    for k in ("vocab", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden", "max_seq"):
        c.int(c.key(m, k, int, "model"), f"model.{k}", 1, 1 << 24)
    for k in ("family", "weights"):
        c.name(c.key(m, k, str, "model"), f"model.{k}")
    mem = c.key(man, "memory", dict, "manifest")
    for k in ("arena_bytes", "kv_bytes", "arena_lower_bound"):
        c.int(c.key(mem, k, int, "memory"), f"memory.{k}", 0, 1 << 40)
    bufs = c.key(mem, "buffers", dict, "memory")
    for n, b in bufs.items():
        f = f"memory.buffers.{n[:40]}"
        c.name(n, f)
        c.typ(b, dict, f)
        if c.key(b, "kind", str, f) not in BUF_KINDS:
            c.fail(f + ".kind", f"{b['kind'][:20]!r} is not one of {', '.join(BUF_KINDS)}")
        if c.key(b, "dtype", str, f) not in DTYPES:
            c.fail(f + ".dtype", f"{b['dtype'][:20]!r} is not one of {', '.join(DTYPES)}")
        nb = c.int(c.key(b, "bytes", int, f), f + ".bytes", 0, 1 << 40)
        off = b.get("offset")
        if off is not None:
            c.int(off, f + ".offset", 0, 1 << 40)
            cap = mem["kv_bytes"] if b["kind"] == "kv" else mem["arena_bytes"]
            if b["kind"] != "scratch" and off + nb > max(16, cap):
                c.fail(f, f"[{off}, {off + nb}) overflows its {max(16, cap)}-byte region")
    ops = c.key(man, "ops", list, "manifest")
    for i, op in enumerate(ops):
        c.typ(op, dict, f"ops[{i}]")
        for k in ("ins", "outs"):
            for n in c.key(op, k, list, f"ops[{i}]"):
                if n not in bufs:
                    c.fail(f"ops[{i}].{k}", f"names unknown buffer {str(n)[:40]!r}")
        if not op["outs"]:
            c.fail(f"ops[{i}].outs", "empty")
    c.key(man, "arch_hash", str, "manifest")
    if not re.fullmatch(r"0x[0-9a-f]{8}", man["arch_hash"]):
        c.fail("arch_hash", f"{man['arch_hash'][:20]!r} is not 0x followed by 8 hex digits")
    if not re.fullmatch(r"[0-9a-f]{64}", c.key(man, "weights_sha256", str, "manifest")):
        c.fail("weights_sha256", "not a sha256 hex digest")
    w = c.key(man, "weights", dict, "manifest")
    c.int(c.key(w, "bytes", int, "weights"), "weights.bytes", 32, 1 << 40)
    for n, t in c.key(w, "tensors", dict, "weights").items():
        f = f"weights.tensors.{n[:40]}"
        c.name(n, f)
        c.typ(t, dict, f)
        c.int(c.key(t, "offset", int, f), f + ".offset", 32, w["bytes"])
        if c.key(t, "dtype", str, f) not in WEIGHT_DTYPES:
            c.fail(f + ".dtype", f"{t['dtype'][:20]!r} is not one of {', '.join(WEIGHT_DTYPES)}")
        for j, s in enumerate(c.key(t, "shape", list, f)):
            c.int(s, f"{f}.shape[{j}]", 0, 1 << 40)
        if not re.fullmatch(r"[0-9a-f]{64}", c.key(t, "sha256", str, f)):
            c.fail(f + ".sha256", "not a sha256 hex digest")
        if t["offset"] + int(np.prod(t["shape"], dtype=np.int64)) * np.dtype(t["dtype"]).itemsize > w["bytes"]:
            c.fail(f, "extends past the end of the weights blob")
    for i, s in enumerate(c.key(man, "sources", list, "manifest")):
        p = inside(out, s, c, f"sources[{i}]")
        if p.suffix not in (".c", ".S") or p.parts[-2] not in SOURCE_DIRS or not p.is_file():
            c.fail(f"sources[{i}]", f"{s[:80]!r} is not a C or assembly file of the build's model/ or runtime/")
    tok = man.get("tokenizer")
    if tok is not None and tok not in c.key(man, "files", dict, "manifest"):
        c.fail("tokenizer", f"{str(tok)[:80]!r}: not one of the build's files")
    for i, s in enumerate(man["sources"]):
        if s not in c.key(man, "files", dict, "manifest"):
            c.fail(f"sources[{i}]", f"{s[:80]!r}: not one of the build's files")


def _check_files(out, man, c):
    """Every file compile wrote (sources, headers, apps, tokenizer, program) is as it was written."""
    for f, digest in man["files"].items():
        p = inside(out, f, c, f"files.{f[:60]}")
        if not isinstance(digest, str) or not p.is_file():
            c.fail(f"files.{f[:60]}", "missing from the build (compile it again)")
        if p.stat().st_size > 1 << 34 or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            c.fail(f"files.{f[:60]}", "changed since tinyslm wrote it (sha256 differs); compile the model again")


_SCALAR = (type(None), bool, int, float, str)


def _op_kinds():
    from .reference import Reference
    return {n[3:] for n in dir(Reference) if n.startswith("op_")}


def _attr_ok(v, depth=0):
    if isinstance(v, _SCALAR):
        return not isinstance(v, float) or np.isfinite(v)
    if isinstance(v, list) and depth < 3:
        return all(_attr_ok(x, depth + 1) for x in v)
    return False


def _program(out, man, blob, c):
    d = _read_json(out / PROGRAM, "program")
    pc = _Check(out / PROGRAM)
    _format(pc, d)
    meta = pc.key(d, "meta", dict, "program")
    if {k: meta.get(k) for k in man["model"]} != man["model"]:
        pc.fail("meta", "does not match the manifest's model")
    bufs = {}
    for i, b in enumerate(pc.key(d, "bufs", list, "program")):
        if not (isinstance(b, list) and len(b) == 4):
            pc.fail(f"bufs[{i}]", "expected [name, dtype, size, kind]")
        name, dt, size, kind = b
        want = man["memory"]["buffers"].get(name)
        if want is None or (dt, kind) != (want["dtype"], want["kind"]) or \
                not isinstance(size, int) or size * np.dtype(DTYPES[dt]).itemsize != want["bytes"]:
            pc.fail(f"bufs[{i}]", f"{str(name)[:40]!r} does not match the manifest's memory plan")
        bufs[name] = Buf(name, dt, size, kind)
    if set(bufs) != set(man["memory"]["buffers"]):
        pc.fail("bufs", "not the manifest's buffers")
    wnames = pc.key(d, "weights", list, "program")
    if wnames != list(man["weights"]["tensors"]):
        pc.fail("weights", "not the manifest's weight tensors")
    ops = []
    mops = man["ops"]
    pops = pc.key(d, "ops", list, "program")
    if len(pops) != len(mops):
        pc.fail("ops", f"{len(pops)} ops, the manifest lists {len(mops)}")
    for i, (o, mo) in enumerate(zip(pops, mops)):
        f = f"ops[{i}]"
        pc.typ(o, dict, f)
        if any(o.get(k) != mo.get(k) for k in ("kind", "name", "ins", "outs", "layer")):
            pc.fail(f, "does not match the manifest's op")
        if o["kind"] not in _op_kinds():
            pc.fail(f + ".kind", f"unknown op kind {str(o['kind'])[:30]!r}")
        pc.int(o["layer"], f + ".layer", -1, 1 << 16)
        attrs = pc.key(o, "attrs", dict, f)
        for k, v in attrs.items():
            if not _attr_ok(v):
                pc.fail(f"{f}.attrs.{str(k)[:30]}", "not a finite number, string, null or list of them")
            if k.endswith("_w") and v is not None and v not in man["weights"]["tensors"]:
                pc.fail(f"{f}.attrs.{k}", f"names unknown weight {str(v)[:40]!r}")
            if k == "sx" and v is not None and v not in bufs:
                pc.fail(f"{f}.attrs.{k}", f"names unknown buffer {str(v)[:40]!r}")
        ops.append(Op(o["kind"], o["name"], list(o["ins"]), list(o["outs"]), attrs, o["layer"]))
    weights = {}
    for n, t in man["weights"]["tensors"].items():
        dt = np.dtype(t["dtype"])
        n_el = int(np.prod(t["shape"], dtype=np.int64))
        raw = blob[t["offset"]:t["offset"] + n_el * dt.itemsize]
        if hashlib.sha256(raw).hexdigest() != t["sha256"]:
            c.fail(f"weights.tensors.{n}", "sha256 does not match the weights blob")
        arr = np.frombuffer(raw, dt).reshape(t["shape"])
        if dt.kind == "f" and not np.isfinite(arr).all():
            c.fail(f"weights.tensors.{n}", "holds NaN or infinity")
        weights[n] = arr
    return Program(meta, bufs, ops, weights)


def load_build(out):
    """-> (manifest, Program) of a compiled build directory, every field checked; TslError naming
    the file and field otherwise. Reads JSON and raw arrays only."""
    out = Path(out)
    if not out.is_dir():
        raise TslError(f"{out}: no such build directory" + ("" if not out.exists() else " (it is a file)")
                       + "; run `tinyslm compile` first")
    out = out.resolve()
    if not is_build(out):
        raise TslError(f"{out}: not a tinyslm build directory (no {MARKER}); run `tinyslm compile` first")
    marker = (out / MARKER).read_text(errors="replace").splitlines()
    if f"format {FORMAT}" not in marker:
        raise TslError(f"{out / MARKER}: {' '.join(marker[1:2])[:40]!r}; this tinyslm ({__version__}) reads "
                       f"format {FORMAT}: compile the model again")
    c = _Check(out / MANIFEST)
    man = _read_json(out / MANIFEST, "manifest")
    _check_manifest(out, man, c)
    _check_source_dirs(out, _Check(out))
    _check_files(out, man, c)
    bp = inside(out, str(BLOB), c, "weights blob")
    try:
        blob = bp.read_bytes()
    except OSError as e:
        raise TslError(f"{bp}: cannot read: {e.strerror}") from None
    if len(blob) != man["weights"]["bytes"] or hashlib.sha256(blob).hexdigest() != man["weights_sha256"]:
        raise TslError(f"{bp}: {len(blob)} bytes whose sha256 is not the manifest's weights_sha256 "
                       f"({man['weights']['bytes']} bytes): the weights were changed or truncated")
    magic, version, total, arch = struct.unpack_from("<4I", blob)
    if (magic, version, total, f"0x{arch:08x}") != (0x574C5354, 1, len(blob), man["arch_hash"]):
        raise TslError(f"{bp}: header (magic, version, size, arch hash) does not match the manifest")
    return man, _program(out, man, blob, c)


def private_dir(out, *parts):
    """OUT/.tinyslm/PARTS as a real folder chain (no symlinks): where tinyslm writes its own files
    inside a build. Refuses a chain that goes through a link."""
    cur = Path(out).resolve()
    for p in (".tinyslm", *parts):
        cur = cur / p
        if cur.is_symlink() or (cur.exists() and not cur.is_dir()):
            raise TslError(f"{cur}: is a link or a file; tinyslm keeps its own folders here: remove it")
        cur.mkdir(exist_ok=True)
    return cur


def write_private(path, data):
    """Write a file of tinyslm's own (in a private_dir) by rename: a planted link is replaced,
    never written through."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.urandom(8).hex()}")
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path
