"""The object cache: an object is reused only for the same preprocessed text and code-generation
flags, and only when its tag verifies under the user's key."""
import ctypes
import shutil
import subprocess

import pytest

from tinyslm import objcache
from tinyslm.errors import TslError

CC = shutil.which("cc")
pytestmark = pytest.mark.skipif(not CC, reason="no host C compiler")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYSLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "objects"


def _lib(tmp_path, name, srcs, flags=(), inc=None):
    work = tmp_path / f"w-{name}"
    work.mkdir()
    fl = ["-O2", "-fPIC", *flags, *([f"-I{inc}"] if inc else [])]
    objs = objcache.compile_objects(CC, fl, srcs, work, tmp_path)
    so = tmp_path / f"{name}.so"
    subprocess.run([CC, "-shared", "-o", str(so), *map(str, objs)], check=True)
    return ctypes.CDLL(str(so)).f


def test_reuse_and_key(tmp_path, cache):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "k.h").write_text("#define K 3\n")
    (tmp_path / "b" / "k.h").write_text("#define K 4\n")
    src = tmp_path / "f.c"
    src.write_text('#include "k.h"\nint f(void) { return K + OFF; }\n')
    assert _lib(tmp_path, "1", [src], ["-DOFF=10"], tmp_path / "a")() == 13
    assert len(list(cache.glob("*.o"))) == 1
    (hit,) = cache.glob("*.o")
    other = tmp_path / "g.c"
    other.write_text("int f(void) { return 666; }\n")
    subprocess.run([CC, "-O2", "-fPIC", "-c", str(other), "-o", str(tmp_path / "g.o")], check=True)
    objcache._save(cache, objcache.secret(), hit.stem, tmp_path / "g.o")   # tagged under the user's key
    assert _lib(tmp_path, "2", [src], ["-DOFF=10"], tmp_path / "a")() == 666      # so it is a hit
    hit.unlink()
    assert _lib(tmp_path, "2b", [src], ["-DOFF=10"], tmp_path / "a")() == 13
    assert len(list(cache.glob("*.o"))) == 1
    assert _lib(tmp_path, "3", [src], ["-DOFF=10"], tmp_path / "b")() == 14       # another header
    assert _lib(tmp_path, "4", [src], ["-DOFF=20"], tmp_path / "a")() == 23       # another -D
    assert _lib(tmp_path, "5", [src], ["-DOFF=10", "-O0"], tmp_path / "a")() == 13
    assert len(list(cache.glob("*.o"))) == 4


def test_forged_object_is_not_used(tmp_path, cache):
    src = tmp_path / "f.c"
    src.write_text("int f(void) { return 7; }\n")
    assert _lib(tmp_path, "1", [src])() == 7
    other = tmp_path / "g.c"
    other.write_text("int f(void) { return 666; }\n")
    forged = tmp_path / "g.o"
    subprocess.run([CC, "-O2", "-fPIC", "-c", str(other), "-o", str(forged)], check=True)
    (hit,) = cache.glob("*.o")
    hit.write_bytes(forged.read_bytes())             # the tag no longer matches the bytes
    assert _lib(tmp_path, "2", [src])() == 7
    assert hit.read_bytes() != forged.read_bytes()   # compiled again and stored again
    tag = hit.with_suffix(".hmac")
    tag.write_text("0" * 64 + "\n")
    assert _lib(tmp_path, "3", [src])() == 7


def test_compile_error_names_the_file(tmp_path, cache):
    bad = tmp_path / "bad.c"
    bad.write_text("int f(void) { return undefined_name; }\n")
    with pytest.raises(TslError, match="bad.c"):
        _lib(tmp_path, "1", [bad])
    assert not list(cache.glob("*.o"))


def test_prune_keeps_the_newest(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(objcache, "KEEP", 2)
    for i in range(4):
        src = tmp_path / f"f{i}.c"
        src.write_text(f"int f(void) {{ return {i}; }}\n")
        assert _lib(tmp_path, str(i), [src])() == i
    mine = cache / "notes.txt"
    mine.write_text("not tinyslm's")
    objcache._prune(cache)
    assert len(list(cache.glob("*.o"))) == 2 and mine.exists()
