"""Compile C sources to objects, reusing objects compiled before from the same preprocessed text.

Key of one object: sha256 of (tinyslm's version, the compiler's path and `--version` text, the flags
less -I/-D/-U, the source's preprocessed text without its line markers). The preprocessor has
resolved every include, macro and -D by then, so two sources with one key compile to one object;
a miss compiles that text itself, so each source is preprocessed once.
Objects live in cache_base()/objects, each with a tag: mac() of its key and bytes under the user's
secret key; an object whose tag does not verify is compiled again. Assembly sources (.S: .incbin reads files
the preprocessor does not see) are always compiled."""
import hashlib
import hmac
import os
import re
import subprocess
from pathlib import Path

from . import __version__, procs
from .errors import TslError

KEEP = 4000                                  # objects kept; the oldest go first
_OBJ = re.compile(r"^[0-9a-f]{64}\.o$")
_LINEMARK = re.compile(rb"^#( [0-9]+| line) .*$", re.M)
_VERSION = {}


def cache_base():
    """$TINYSLM_CACHE, else $XDG_CACHE_HOME/tinyslm, else ~/.cache/tinyslm."""
    return Path(os.environ.get("TINYSLM_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tinyslm")


def secret():
    """32 random bytes kept in the user's cache folder (mode 0600): what makes a cached object's or
    library's tag unforgeable by whoever wrote a build directory. None if there is no such folder."""
    base = cache_base()
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


def compiler_version(cc):
    """`cc --version`'s text ('' if it gives none): part of every key."""
    if cc not in _VERSION:
        try:
            r = subprocess.run([cc, "--version"], capture_output=True, timeout=60)
            _VERSION[cc] = r.stdout.decode(errors="replace") if r.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            _VERSION[cc] = ""
    return _VERSION[cc]


def _fail(what, cmd, err):
    return TslError(f"{what} failed:\n{' '.join(map(str, cmd))}\n{err.decode(errors='replace').strip()[:3000]}")


def _run_all(cmds, cwd, work, timeout):
    """Runs `cmds`, at most cpu-count at once, all started from this thread (procs.popen's
    preexec_fn is not for threads) -> [(returncode, stderr bytes)] in their order."""
    jobs, res, running, todo = max(1, os.cpu_count() or 1), [None] * len(cmds), [], list(enumerate(cmds))
    try:
        while todo or running:
            while todo and len(running) < jobs:
                i, cmd = todo.pop(0)
                err = open(work / f".stderr-{i}", "w+b")
                running.append((i, procs.popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err), err))
            i, p, err = running.pop(0)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                running.append((i, p, err))
                raise TslError(f"{cmds[i][0]} did not finish within {timeout} s") from None
            procs.stop(p, grace=0.5)               # reaps; ends any grandchild left in its group
            err.seek(0)
            res[i] = (p.returncode, err.read())
            err.close()
            os.unlink(err.name)
    finally:
        for _, p, err in running:
            procs.stop(p, grace=0.5)
            err.close()
    return res


_PRE = ("-I", "-D", "-U", "-isystem", "-iquote", "-idirafter", "-include", "-imacros")


def _codegen_flags(flags):
    """flags less the preprocessor's (-I/-D/-U and the like), whose whole effect is on the
    preprocessed text (already in the key): a build folder's path is then no part of it, and a miss
    compiles that text with these flags alone (clang's -Werror rejects an include path left unused)."""
    out, skip = [], False
    for f in flags:
        if skip:
            skip = False
        elif f in _PRE:
            skip = True
        elif not f.startswith(_PRE):
            out.append(f)
    return out


def _key(cc, flags, text):
    h = hashlib.sha256()
    for part in (__version__, cc, compiler_version(cc), *_codegen_flags(flags)):
        h.update(part.encode() + b"\0")
    h.update(_LINEMARK.sub(b"", text))
    return h.hexdigest()


def _load(store, key, digest, obj):
    """Copies the cached object of `digest` to obj if its tag verifies -> True."""
    hit, tag = store / f"{digest}.o", store / f"{digest}.hmac"
    try:
        if hit.is_symlink() or tag.is_symlink():
            return False
        data = hit.read_bytes()
        if not hmac.compare_digest(tag.read_text().strip(), mac(key, digest, data)):
            return False
        obj.write_bytes(data)
        os.utime(hit)                          # recently used: kept by the pruning
        return True
    except (OSError, UnicodeDecodeError):
        return False


def _save(store, key, digest, obj):
    data = obj.read_bytes()
    tmp = store / f".{digest}.{os.urandom(6).hex()}"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, store / f"{digest}.o")
        tmp.write_text(mac(key, digest, data) + "\n")
        os.replace(tmp, store / f"{digest}.hmac")
    except OSError:
        tmp.unlink(missing_ok=True)


def mac(key, digest, data):
    """The tag of a cached file: HMAC-SHA256 under `key` of its inputs' digest and its bytes' sha256."""
    return hmac.new(key, digest.encode() + hashlib.sha256(data).digest(), "sha256").hexdigest()


def _prune(store):
    """Keeps the KEEP most recently used objects; touches only files named as this module names them."""
    try:
        objs = [p for p in store.iterdir() if _OBJ.match(p.name)]
        if len(objs) <= KEEP:
            return
        objs.sort(key=lambda p: p.stat().st_mtime)
        for p in objs[:len(objs) - KEEP]:
            p.unlink(missing_ok=True)
            p.with_suffix(".hmac").unlink(missing_ok=True)
    except OSError:
        pass


def compile_objects(cc, flags, sources, work, cwd, what="build"):
    """Compile each of `sources` (paths, or names relative to cwd) with `cc flags -c` into the
    private folder `work`, several at once; -> the object paths, in the sources' order. Raises
    TslError with the compiler's message when one fails."""
    work, flags = Path(work), list(flags)
    key, store = secret(), cache_base() / "objects"
    try:
        store.mkdir(parents=True, exist_ok=True, mode=0o700)
        if store.is_symlink():
            key = None
    except OSError:
        key = None
    objs = [work / f"{i:03d}-{Path(s).stem}.o" for i, s in enumerate(sources)]
    cached = [i for i, s in enumerate(sources)
              if key and compiler_version(cc) and not str(s).endswith((".S", ".s"))]
    pre = [[cc, *flags, "-E", str(sources[i]), "-o", str(objs[i]) + ".i"] for i in cached]
    digests = {}
    for i, cmd, (rc, err) in zip(cached, pre, _run_all(pre, cwd, work, 600)):
        if rc:
            raise _fail(what, cmd, err)
        digests[i] = _key(cc, flags, Path(cmd[-1]).read_bytes())
    todo = [i for i in range(len(sources)) if not (i in digests and _load(store, key, digests[i], objs[i]))]
    # a miss compiles the text it was keyed by (its line markers keep file names and system headers)
    cmds = [[cc, *_codegen_flags(flags), "-c", f"{objs[i]}.i", "-o", str(objs[i])] if i in digests else
            [cc, *flags, "-c", str(sources[i]), "-o", str(objs[i])] for i in todo]
    try:
        for i, cmd, (rc, err) in zip(todo, cmds, _run_all(cmds, cwd, work, 1800)):
            if rc:
                raise _fail(what, cmd, err)
            if i in digests:
                _save(store, key, digests[i], objs[i])
    finally:
        for i in digests:
            Path(f"{objs[i]}.i").unlink(missing_ok=True)
    if key:
        _prune(store)
    return objs
