"""Safe by construction: a build directory is data (reading one runs nothing tinyslm did not build
from it), compile never deletes what it did not make, bad input is one line and exit 2, and what
tinyslm starts it stops. Each test that could run planted code checks that its marker file was
never created."""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, compiled_example, tinyslm
from conftest_tools import require_tool
from tinyslm import cli


@pytest.fixture(scope="module")
def good(example, tmp_path_factory):
    return compiled_example(tmp_path_factory, 64, "good")


@pytest.fixture
def build(good, tmp_path):
    """A private copy of a good build to tamper with."""
    d = tmp_path / "b"
    shutil.copytree(good, d, symlinks=True)
    return d


def one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])


def main(capfd, *args):
    """cli.main in this process -> (exit code, stdout, stderr); any exception escaping main fails the test."""
    rc = cli.main([str(a) for a in args])
    out, err = capfd.readouterr()
    return rc, out, err


def assert_main_ok_or_one_line(capfd, *args):
    rc, out, err = main(capfd, *args)
    assert rc in (0, 2), (rc, args, err)
    if rc == 2:
        assert len(err.strip().splitlines()) == 1, (args, err)
    return rc, out, err


class Payload:
    """A pickle that, when loaded, creates MARKER."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---- reading a build runs no code ----

def test_pickle_payload_is_never_loaded(build, tmp_path, capfd):
    marker = tmp_path / "PWNED"
    (build / "program.pkl").write_bytes(pickle.dumps(Payload(marker)))
    for args in (["info", build], ["verify", build, "--steps", 4], ["run", build, "--ids", "1,2", "--max-tokens", 2]):
        rc, out, err = main(capfd, *args)
        assert rc == 0, (args, err)
    assert not marker.exists()


def _evil_lib(tmp_path, marker):
    src = tmp_path / "evil.c"
    src.write_text('#include <stdlib.h>\n__attribute__((constructor)) static void pwn(void) '
                   f'{{ system("touch {marker}"); }}\n')
    lib = tmp_path / "evil.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", lib, src], check=True)
    return src, lib


def test_shipped_library_is_never_loaded(build, tmp_path, capfd):
    """A library planted where tinyslm caches its own, under the right name and with a forged tag,
    is rebuilt from the sources, not loaded."""
    from tinyslm.builddir import load_build
    from tinyslm.hostsim import HOST_CFLAGS, _compiler, _inputs_digest
    marker = tmp_path / "PWNED"
    _, lib = _evil_lib(tmp_path, marker)
    man, _ = load_build(build)
    digest = _inputs_digest(build.resolve(), man, *_compiler(), HOST_CFLAGS)
    host = build / ".tinyslm" / "host"
    shutil.rmtree(host, ignore_errors=True)
    host.mkdir(parents=True)
    for name in ("libtsl.so", f"libtsl-{digest[:16]}.so"):
        shutil.copy(lib, host / name)
    (host / f"libtsl-{digest[:16]}.hmac").write_text("0" * 64 + "\n")
    os.utime(host / "libtsl.so", (time.time() + 3600,) * 2)           # "newer than the sources"
    rc, out, err = main(capfd, "verify", build, "--steps", 8)
    assert rc == 0 and "OK host: 8 steps bit-exact" in out, err
    assert not marker.exists()


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink", "symlinked-header"])
def test_sources_outside_the_build_are_refused(build, tmp_path, where, capfd):
    marker = tmp_path / "PWNED"
    src, _ = _evil_lib(tmp_path, marker)
    man = json.loads((build / "manifest.json").read_text())
    if where == "absolute":
        man["sources"].append(str(src))
    elif where == "dotdot":
        man["sources"].append("../evil.c")
    elif where == "symlink":
        (build / "model" / "evil.c").symlink_to(src)
        man["sources"].append("model/evil.c")
    else:
        h = build / "runtime" / "tsl_numerics.h"
        h.unlink()
        h.symlink_to(src)
    (build / "manifest.json").write_text(json.dumps(man))
    for args in (["verify", build], ["run", build, "--ids", "1", "--max-tokens", 1], ["info", build]):
        rc, out, err = main(capfd, *args)
        assert rc == 2 and len(err.strip().splitlines()) == 1, (args, err)
    assert not marker.exists()


def _string_fields(obj, path=()):
    """Paths to the string values of a JSON tree; for lists and maps of many like entries, the first."""
    if isinstance(obj, str):
        yield path
    elif isinstance(obj, dict):
        seen = set()
        for k, v in obj.items():
            shape = tuple(sorted(v)) if isinstance(v, dict) else type(v).__name__
            if len(obj) > 8 and isinstance(v, (dict, list)) and shape in seen:
                continue                                    # one of many like entries (buffers, tensors)
            seen.add(shape)
            yield from _string_fields(v, path + (k,))
    elif isinstance(obj, list) and obj:
        yield from _string_fields(obj[0], path + (0,))


def test_shell_metacharacters_in_every_manifest_field(build, tmp_path, capfd):
    marker = tmp_path / "PWNED"
    evil = f"$(touch {marker})`touch {marker}`;touch {marker}|touch {marker}&& touch {marker}\n-o{marker}"
    clean = (build / "manifest.json").read_text()
    fields = list(_string_fields(json.loads(clean)))
    assert len(fields) > 20
    for path in fields:
        man = json.loads(clean)
        node = man
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = evil
        (build / "manifest.json").write_text(json.dumps(man))
        for args in (["info", build], ["verify", build, "--steps", 2], ["run", build, "--ids", "1", "--max-tokens", 1]):
            assert_main_ok_or_one_line(capfd, *args)
    assert not marker.exists()
    assert not (Path.cwd() / marker.name).exists()


@pytest.mark.parametrize("what", ["manifest.json", "program.json", "model/tsl_weights.bin", ".tinyslm/BUILD"])
@pytest.mark.parametrize("how", ["missing", "truncated", "garbage", "empty-object", "changed"])
def test_damaged_build_is_one_line(build, what, how, capfd):
    p = build / what
    data = p.read_bytes()
    if how == "missing":
        p.unlink()
    elif how == "truncated":
        p.write_bytes(data[:len(data) // 2])
    elif how == "garbage":
        p.write_bytes(os.urandom(len(data)))
    elif how == "empty-object":
        p.write_bytes(b"{}")
    elif what == ".tinyslm/BUILD":
        p.write_bytes(data.replace(b"format 1", b"format 9"))
    else:                          # one digit of the model's fields (not the source path, which names the checkout)
        i = data.find(b'"model"') + 1 if what == "manifest.json" else 0
        p.write_bytes(data[:i] + data[i:].replace(b"4", b"5", 1))
    for args in (["info", build], ["verify", build], ["run", build, "--ids", "1,2"],
                 ["load", build, "--port", "socket://127.0.0.1:9"], ["emulate", build, "--board", "mps2-an386"],
                 ["build", build, "--board", "mps2-an386"]):
        rc, out, err = main(capfd, *args)
        assert rc == 2, (args, rc, out, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)


def test_info_compiles_and_loads_nothing(build, capfd):
    shutil.rmtree(build / ".tinyslm" / "host", ignore_errors=True)
    rc, out, err = main(capfd, "info", build)
    assert rc == 0 and "Fit per board" in out, err
    assert not (build / ".tinyslm" / "host").exists()


def test_missing_build_directory(tmp_path, capfd):
    for args in (["emulate", tmp_path / "nope", "--board", "mps2-an386"], ["info", tmp_path / "nope"],
                 ["verify", tmp_path / "nope"], ["run", tmp_path / "nope", "--ids", "1"]):
        rc, out, err = main(capfd, *args)
        assert rc == 2 and "no such build directory" in err and len(err.strip().splitlines()) == 1, (args, err)


# ---- compile never deletes what it did not make ----

def test_compile_refuses_a_folder_it_did_not_make(example, tmp_path):
    app = tmp_path / "webapp"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my web app", "version": "1.0"}')
    (app / "index.html").write_text("<h1>mine</h1>")
    r = tinyslm("compile", example, "-o", app)
    one_line_error(r, str(app), "not a tinyslm build directory")
    assert (app / "index.html").read_text() == "<h1>mine</h1>" and (app / "manifest.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["webapp"]       # nothing left beside it


def test_compile_replaces_its_own_build_and_keeps_nothing_else(example, good, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(good, out)
    r = tinyslm("compile", example, "-o", out, "--max-seq", 32)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "manifest.json").read_text())["model"]["max_seq"] == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_killed_compile_leaves_nothing_that_looks_complete(example, tmp_path):
    """SIGTERM and SIGINT mid-compile clean up; a SIGKILLed compile's leftovers go with the next compile."""
    out = tmp_path / "b"
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        p = subprocess.Popen([sys.executable, "-m", "tinyslm", "compile", example, "-o", out], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not [q for q in tmp_path.iterdir() if ".partial-" in q.name] and time.time() < deadline \
                and p.poll() is None:
            time.sleep(0.005)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        if sig != signal.SIGKILL:
            assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
            left = [q.name for q in tmp_path.iterdir()]
            assert left == [] or (left == ["b"] and (out / ".tinyslm" / "BUILD").exists()), left
    r = tinyslm("compile", example, "-o", out)
    assert r.returncode == 0, r.stderr
    assert sorted(q.name for q in tmp_path.iterdir()) == ["b"]


def test_leftovers_of_other_programs_are_not_removed(example, tmp_path):
    """Only folders named like tinyslm's leftovers, of a dead process, holding what a compile writes."""
    out = tmp_path / "b"
    mine = tmp_path / ".b.partial-999999999-x"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    r = tinyslm("compile", example, "-o", out)
    assert r.returncode == 0, r.stderr
    assert (mine / "notes.txt").read_text() == "a user's file"


# ---- bad input: one line, exit 2 ----

@pytest.mark.parametrize("args,needle", [
    (["run", "{b}", "--ids", "1", "--seed", "-1"], "seed"),
    (["run", "{b}", "--ids", "1", "--seed", str(2 ** 64)], "seed"),
    (["run", "{b}", "--ids", "1", "--temperature", "nan"], "temperature"),
    (["run", "{b}", "--ids", "1", "--top-p", "inf"], "top-p"),
    (["run", "{b}", "--ids", "1", "--max-tokens", "-1"], "max-tokens"),
    (["run", "{b}", "--ids", ",".join(["1"] * 300)], "300 tokens"),
    (["verify", "{b}", "--steps", "-3"], "steps"),
    (["logits", "{b}", "--ids", ",", "--out", "{t}/l.npy"], "--ids"),
    (["logits", "{b}", "--ids", "1,2", "--out", "{t}/missing/l.npy"], "does not exist"),
    (["compile", "{e}", "--max-seq", "99999999999", "-o", "{t}/o"], "--max-seq 99999999999"),
    (["compile", "{t}", "-o", "{t}/o"], "is a directory"),
])
def test_one_line_errors(good, example, tmp_path, args, needle):
    args = [a.format(b=good, t=tmp_path, e=example) for a in args]
    r = tinyslm(*args)
    one_line_error(r, needle)
    assert "OK" not in r.stdout


def test_deeply_nested_tokenizer(example, tmp_path):
    tok = tmp_path / "tokenizer.json"
    tok.write_text("[" * 100000 + "]" * 100000)
    one_line_error(tinyslm("compile", example, "--tokenizer", tok, "-o", tmp_path / "o"), str(tok), "nested")
    tok.write_text('{"model": ' * 200 + "1" + "}" * 200)
    one_line_error(tinyslm("compile", example, "--tokenizer", tok, "-o", tmp_path / "o"), str(tok), "nested")
    assert not (tmp_path / "o").exists()


def test_initializer_dims_do_not_match_data(example, tmp_path):
    import onnx
    m = onnx.load(example)
    init = max(m.graph.initializer, key=lambda t: len(t.raw_data))
    init.dims[0] += 1
    p = tmp_path / "bad.onnx"
    onnx.save(m, p)
    one_line_error(tinyslm("compile", p, "-o", tmp_path / "o"), init.name)


@pytest.fixture(scope="module")
def python_start():
    """Seconds this machine takes to start a bare interpreter now: a Ctrl-C before that is Python's own."""
    t = []
    for _ in range(3):
        t0 = time.time()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        t.append(time.time() - t0)
    return max(t)


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_ctrl_c_at_start_up(good, delay, python_start):
    """SIGINT while tinyslm imports its libraries and reads the build: one line, no traceback."""
    delay += python_start
    p = subprocess.Popen([sys.executable, "-m", "tinyslm", "verify", str(good), "--steps", "64"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert p.returncode in (0, 130, -signal.SIGINT), (p.returncode, err)


# ---- what tinyslm starts, it stops ----

def _procs_mentioning(needle):
    """pids of processes whose command line contains `needle` (this test's unique build path)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle.encode() in (d / "cmdline").read_bytes():
                found.append(int(d.name))
        except OSError:
            pass
    return found


def _wait_for(cond, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def an386(good, tmp_path_factory):
    from tinyslm.boards import load_board
    from tinyslm.firmware import build_firmware
    B = load_board("mps2-an386")
    require_tool(B.toolchain["cc"], B.toolchain.get("install", ""))
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    d = tmp_path_factory.mktemp("an386") / "build"
    shutil.copytree(good, d)
    build_firmware(d, B.name, log=lambda m: None)
    return d


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("cmd", ["emulate", "verify"])
def test_children_end_with_tinyslm(an386, sig, cmd):
    from tinyslm.firmware import free_port
    elf_dir = str(an386 / ".tinyslm")
    args = ["emulate", an386, "--board", "mps2-an386", "--serial", f"tcp:{free_port()}"] if cmd == "emulate" \
        else ["verify", an386, "--board", "mps2-an386", "--steps", 64]
    p = subprocess.Popen([sys.executable, "-m", "tinyslm", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: any(pid != p.pid for pid in _procs_mentioning(elf_dir)) or p.poll() is not None)
        assert p.poll() is None, p.communicate()
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        assert "Traceback" not in err, err                   # stderr: progress lines, then the one-line reason
        assert p.returncode in (130, 143), (p.returncode, err)
        assert err.strip().splitlines()[-1] in ("tinyslm: interrupted", "tinyslm: terminated"), err
        assert _wait_for(lambda: not _procs_mentioning(elf_dir), 10), _procs_mentioning(elf_dir)
    finally:
        if p.poll() is None:
            p.kill()


def test_run_port_ends_on_sigterm(an386):
    """run --port against a live emulated board, ended mid-stream: one line, no process left."""
    from tinyslm.boards import load_board
    from tinyslm.firmware import Emulation, free_port
    B = load_board("mps2-an386")
    port = free_port()
    with Emulation(B, an386 / ".tinyslm" / "fw-mps2-an386" / "tinyslm.elf", port):
        p = subprocess.Popen([sys.executable, "-m", "tinyslm", "run", "--port", f"socket://127.0.0.1:{port}",
                              "--ids", "1,2,3", "--max-tokens", "60"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        first = p.stdout.read(1)          # the first token is out: handlers are in, 59 tokens to go
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert first and "Traceback" not in err and p.returncode == 143, (first, p.returncode, err)
    assert err.strip().splitlines()[-1] == "tinyslm: terminated", err
    assert not _procs_mentioning(str(an386 / ".tinyslm")), _procs_mentioning(str(an386 / ".tinyslm"))
