"""The model as a library in the user's own project: the C API (caller-owned buffers, error codes,
several instances, the C generate loop), its CMake package linked into a user's main.c and main.cpp
with the cross toolchains and run under qemu bit-exact, and the ESP-IDF, Zephyr, Arduino and
PlatformIO manifests checked against the fields their documentation defines."""
import json
import re
import shutil
import subprocess
import textwrap

import numpy as np
import pytest

from conftest import compiled_example
from conftest_tools import require_tool
from tinyslm import targets
from tinyslm.boards import load_board
from tinyslm.builddir import load_build
from tinyslm.verify import fnv1a, kv_region, token_sequence

IDS = [1, 50, 60, 70, 80, 90, 100, 110]
MAIN = r"""
#include <stdio.h>
#include <stdint.h>
#include "tsl_model.h"

static uint8_t arena[TSL_ARENA_BYTES] TSL_ALIGNED;
static int8_t kv[TSL_KV_BYTES] TSL_ALIGNED;
static uint32_t scratch[TSL_SAMPLER_SCRATCH_BYTES / 4];
static const int32_t ids[8] = {1, 50, 60, 70, 80, 90, 100, 110};

static uint64_t fnv(const void *p, uint32_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static void hash(const char *tag, int i, uint64_t h)
{
    printf("%s %d %08lx%08lx\n", tag, i, (unsigned long)(h >> 32), (unsigned long)(h & 0xffffffffu));
}

%(callback)s

int main(void)
{
    tsl_model m;
    const float *lg = 0;
    int32_t n = 0;
    if (tsl_init(&m, 0, arena, kv) != TSL_OK) { printf("init failed\n"); return 1; }
    for (int pos = 0; pos < 8; pos++) {
        if (tsl_forward(&m, ids[pos], pos, &lg) != TSL_OK) { printf("forward failed\n"); return 1; }
        hash("logits", pos, fnv(lg, 4u * TSL_VOCAB));
    }
    hash("kv", 0, fnv(kv, TSL_KV_BYTES));
    tsl_generate_cfg cfg = {16, 0.8f, 0.9f, 7u, -1};
    int32_t rc = tsl_generate(&m, ids, 4, &cfg, on_token, 0, 0, scratch, &n);
    printf("generate %ld %ld\n", (long)rc, (long)n);
    printf("errors %ld %ld %ld\n", (long)tsl_forward(&m, 0, TSL_MAX_SEQ, &lg), (long)tsl_forward(&m, TSL_VOCAB, 0, &lg),
           (long)tsl_init(&m, 0, arena + 1, kv));
    printf("done\n");
    return 0;
}
"""
C_CALLBACK = "static int32_t on_token(void *user, int32_t t) { (void)user; printf(\"token %ld\\n\", (long)t); return 0; }"
CPP_CALLBACK = ("namespace { struct Printer { static int32_t cb(void *, int32_t t) "
                "{ printf(\"token %ld\\n\", (long)t); return 0; } }; }\n"
                "static const tsl_token_fn on_token = &Printer::cb;")


@pytest.fixture(scope="module")
def build(example, tmp_path_factory):
    return compiled_example(tmp_path_factory, 64, "pkg")


def expected(build):
    """What the user's program must print: logits and KV hashes from the reference, tokens from
    the host build's C generate loop (itself checked against the Python one below)."""
    from tinyslm.hostsim import HostModel
    man, prog = load_build(build)
    ids, logits, _, kv = token_sequence(prog, IDS, 8)
    kv_off = {n: b["offset"] for n, b in man["memory"]["buffers"].items() if b["kind"] == "kv"}
    lines = [f"logits {p} {fnv1a(lg.tobytes()):016x}" for p, lg in enumerate(logits)]
    lines.append(f"kv 0 {fnv1a(kv_region(prog, kv_off, man['memory']['kv_bytes'], kv)):016x}")
    rc, toks = HostModel(build, man).generate(IDS[:4], 16, 0.8, 0.9, 7)
    return lines + [f"token {t}" for t in toks] + [f"generate {rc} {len(toks)}", "errors -6 -7 -8", "done"]


# ---- the C API on the host ----

def test_c_generate_loop_equals_python(build):
    from tinyslm.generation import generate
    from tinyslm.hostsim import HostModel
    host = HostModel(build)
    for mt, temp, top_p, seed in ((20, 0.0, 1.0, 0), (30, 0.9, 0.95, 4), (500, 1.0, 1.0, 3)):
        rc, toks = host.generate([1, 50, 60], mt, temp, top_p, seed)
        assert rc == 0
        assert toks == generate(host, [1, 50, 60], mt, temp, top_p, seed, 64, lambda t: None)
    assert len(toks) == 64 - 3 + 1                   # stops when the cache is full


def test_c_api_errors_and_instances(build):
    """Status codes for bad positions, tokens, buffers and weights; two instances share nothing."""
    from tinyslm.hostsim import HostModel
    a, b = HostModel(build), HostModel(build)
    ffi, lib = a.ffi, a.lib
    lg = ffi.new("const float **")
    assert lib.tsl_forward(a.model, 0, 64, lg) == -6 and lib.tsl_forward(a.model, -1, 0, lg) == -7
    assert lib.tsl_forward(a.model, 512, 0, lg) == -7 and lib.tsl_run_op(a.model, 10 ** 6, 0, 0) == -8
    blob = bytearray((build / "model" / "tsl_weights.bin").read_bytes())
    buf = ffi.from_buffer(blob)
    assert lib.tsl_check_weights(buf, len(blob)) == 0
    blob[1000] ^= 1
    assert lib.tsl_check_weights(buf, len(blob)) == -5                   # CRC
    assert lib.tsl_check_weights(buf, 100) == -4
    blob[12] ^= 1
    assert lib.tsl_init(ffi.new("tsl_model *"), buf, a.model.arena, a.model.kv) == -3   # arch hash
    blob[0] ^= 1
    assert lib.tsl_init(ffi.new("tsl_model *"), buf, a.model.arena, a.model.kv) == -1   # magic
    # interleaved instances give what each gives alone
    alone = [b.step(t, p) for p, t in enumerate(IDS)]
    a.reset()
    b.reset()
    for p, t in enumerate(IDS):
        a.step(999 % 512, p)
        assert b.step(t, p).tobytes() == alone[p].tobytes()


def test_position_past_the_cache_under_asan(build, tmp_path):
    """pos == TSL_MAX_SEQ is refused, not written past the KV cache (AddressSanitizer watches)."""
    cc = require_tool("gcc", "gcc")
    man, _ = load_build(build)
    drv = tmp_path / "drv.c"
    drv.write_text(textwrap.dedent("""
        #include <stdio.h>
        #include <stdlib.h>
        #include "tsl_model.h"
        int main(void) {
            tsl_model m; const float *lg;
            uint8_t *arena = aligned_alloc(16, TSL_ARENA_BYTES); int8_t *kv = aligned_alloc(16, TSL_KV_BYTES);
            if (tsl_init(&m, 0, arena, kv)) return 1;
            for (int p = 0; p < TSL_MAX_SEQ; p++) if (tsl_forward(&m, p % TSL_VOCAB, p, &lg)) return 2;
            printf("%d %d\\n", tsl_forward(&m, 1, TSL_MAX_SEQ, &lg), tsl_forward(&m, 1, -1, &lg));
            free(arena); free(kv); return 0;
        }"""))
    exe = tmp_path / "drv"
    r = subprocess.run([cc, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                        "-ffp-contract=off", "-I", build / "model", "-I", build / "runtime", drv,
                        *(build / s for s in man["sources"]), "-o", exe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([exe], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["-6", "-6"], (r.stdout, r.stderr[-3000:])


# ---- CMake in the user's project, cross-compiled, run under qemu ----

TOOLCHAIN = """
set(CMAKE_SYSTEM_NAME {system})
set(CMAKE_SYSTEM_PROCESSOR {proc})
set(CMAKE_C_COMPILER {cc})
set(CMAKE_CXX_COMPILER {cxx})
set(CMAKE_ASM_COMPILER {cc})
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_C_FLAGS_INIT "{cflags}")
set(CMAKE_CXX_FLAGS_INIT "{cflags} -fno-exceptions -fno-rtti")
set(CMAKE_ASM_FLAGS_INIT "{cflags}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "{ldflags}")
"""
PROJECT = """
cmake_minimum_required(VERSION 3.13)
project(user_app C CXX ASM)
add_subdirectory({model} tinyslm)
add_executable(app_c main.c {startup})
target_link_libraries(app_c PRIVATE tinyslm::model)
add_executable(app_cpp main.cpp {startup})
target_link_libraries(app_cpp PRIVATE tinyslm::model)
set_target_properties(app_cpp PROPERTIES LINKER_LANGUAGE C)   # no C++ runtime needed
"""


@pytest.mark.parametrize("board", ["mps2-an386", "rpi5"])
def test_cmake_package_in_a_user_project(build, tmp_path, board):
    B = load_board(board)
    cc = require_tool(B.toolchain["cc"], B.toolchain.get("install", ""))
    cxx = require_tool(B.toolchain["cc"].replace("gcc", "g++"), B.toolchain.get("install", "").replace(
        "gcc-", "g++-") or "g++")
    require_tool("cmake", "cmake")
    require_tool(targets.emulator_cmd(B, "x")[0], B.emulator.get("install", ""))
    st_srcs, st_ld, st_defs = targets._startup(B)
    flags = [f for f in B.toolchain["cflags"]] + [f"-I{targets.PLATFORM_INCLUDE}"] + st_defs
    proj = tmp_path / "user"
    proj.mkdir()
    (proj / "toolchain.cmake").write_text(TOOLCHAIN.format(
        system="Generic" if B.kind == "baremetal" else "Linux", proc=B.arch, cc=cc, cxx=cxx,
        cflags=" ".join(flags), ldflags=" ".join(st_ld + B.toolchain.get("ldflags", []))))
    (proj / "CMakeLists.txt").write_text(PROJECT.format(model=build, startup=" ".join(map(str, st_srcs))))
    (proj / "main.c").write_text(MAIN.replace("%(callback)s", C_CALLBACK))
    (proj / "main.cpp").write_text(MAIN.replace("%(callback)s", CPP_CALLBACK))
    bdir = tmp_path / "b"
    for cmd in (["cmake", "-S", proj, "-B", bdir, f"-DCMAKE_TOOLCHAIN_FILE={proj / 'toolchain.cmake'}"],
                ["cmake", "--build", bdir, "-j", "2"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    want = expected(build)
    for app in ("app_c", "app_cpp"):
        rc, out = targets.run(B, bdir / app, timeout=300)
        got = [l.strip() for l in out.decode().splitlines() if l.strip()]
        assert rc == 0 and got == want, (app, got[:12], want[:12])
    # installable: cmake --install gives a find_package(tinyslm) tree
    r = subprocess.run(["cmake", "--install", bdir / "tinyslm", "--prefix", tmp_path / "inst"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "inst" / "include" / "tinyslm" / "tsl_model.h").is_file()
    assert list((tmp_path / "inst").rglob("tinyslmConfig.cmake")) and list((tmp_path / "inst").rglob("*.a"))


# ---- manifests, against the fields each project's documentation defines ----

def _props(text):
    d = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            d[k.strip()] = v.strip()
    return d


# Arduino library specification (1.5 format, rev 2.2): library.properties fields
ARDUINO_REQUIRED = {"name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url",
                    "architectures"}
ARDUINO_KNOWN = ARDUINO_REQUIRED | {"email", "depends", "dot_a_linkage", "includes", "precompiled", "ldflags",
                                    "license"}
ARDUINO_CATEGORIES = {"Display", "Communication", "Signal Input/Output", "Sensors", "Device Control", "Timing",
                      "Data Storage", "Data Processing", "Other"}
# ESP-IDF component manager: idf_component.yml
IDF_KNOWN = {"version", "description", "url", "repository", "documentation", "issues", "discussion", "license",
             "maintainers", "tags", "targets", "dependencies", "files", "examples", "rules"}
IDF_TARGETS = {"esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32c61", "esp32h2",
               "esp32p4", "linux"}
# PlatformIO library.json
PIO_REQUIRED = {"name", "version", "description", "keywords", "authors"}
PIO_KNOWN = PIO_REQUIRED | {"repository", "homepage", "license", "frameworks", "platforms", "headers", "examples",
                            "dependencies", "export", "build", "dependencies", "downloadUrl", "include", "exclude"}
PIO_BUILD = {"flags", "unflags", "includeDir", "srcDir", "srcFilter", "extraScript", "libArchive", "libLDFMode",
             "libCompatMode", "builder"}
# Zephyr module.yml
ZEPHYR_KNOWN = {"name", "build", "samples", "boards", "tests", "security", "package-managers", "blobs"}
ZEPHYR_BUILD = {"cmake", "kconfig", "cmake-ext", "kconfig-ext", "depends", "settings", "sysbuild-cmake",
                "sysbuild-kconfig"}


def check_arduino(d):
    missing = ARDUINO_REQUIRED - set(d)
    unknown = set(d) - ARDUINO_KNOWN
    errs = [f"missing {sorted(missing)}"] * bool(missing) + [f"unknown {sorted(unknown)}"] * bool(unknown)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,62}", d.get("name", "")) or d.get("name", "").lower() \
            .startswith("arduino"):
        errs.append("bad name")
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", d.get("version", "")):
        errs.append("version is not semver")
    if d.get("category") not in ARDUINO_CATEGORIES:
        errs.append("bad category")
    return errs


def check_idf(d):
    errs = [f"unknown {sorted(set(d) - IDF_KNOWN)}"] * bool(set(d) - IDF_KNOWN)
    if not isinstance(d.get("version"), str) or not re.fullmatch(r"\d+\.\d+\.\d+.*", d["version"]):
        errs.append("version")
    if not set(d.get("targets", [])) <= IDF_TARGETS:
        errs.append("targets")
    if "idf" not in d.get("dependencies", {}):
        errs.append("dependencies.idf")
    return errs


def check_pio(d):
    errs = [f"missing {sorted(PIO_REQUIRED - set(d))}"] * bool(PIO_REQUIRED - set(d))
    errs += [f"unknown {sorted(set(d) - PIO_KNOWN)}"] * bool(set(d) - PIO_KNOWN)
    errs += [f"unknown build {sorted(set(d.get('build', {})) - PIO_BUILD)}"] * bool(set(d.get("build", {})) - PIO_BUILD)
    if not re.fullmatch(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*", d.get("name", "")) or len(d.get("name", "")) > 50:
        errs.append("bad name")
    return errs


def check_zephyr(d, root):
    errs = [f"unknown {sorted(set(d) - ZEPHYR_KNOWN)}"] * bool(set(d) - ZEPHYR_KNOWN)
    b = d.get("build", {})
    errs += [f"unknown build {sorted(set(b) - ZEPHYR_BUILD)}"] * bool(set(b) - ZEPHYR_BUILD)
    if not (root / b.get("cmake", "?") / "CMakeLists.txt").is_file():
        errs.append("build.cmake has no CMakeLists.txt")
    if not (root / b.get("kconfig", "?")).is_file():
        errs.append("build.kconfig missing")
    return errs


def test_manifests(build):
    import yaml
    assert check_arduino(_props((build / "arduino" / "tinyslm_model" / "library.properties").read_text())) == []
    assert check_idf(yaml.safe_load((build / "idf_component.yml").read_text())) == []
    assert check_pio(json.loads((build / "library.json").read_text())) == []
    assert check_zephyr(yaml.safe_load((build / "zephyr" / "module.yml").read_text()), build) == []
    kconfig = (build / "zephyr" / "Kconfig").read_text()
    assert "config TINYSLM_MODEL" in kconfig and "CONFIG_TINYSLM_MODEL" in (build / "zephyr" / "CMakeLists.txt").read_text()
    assert "idf_component_register(" in (build / "CMakeLists.txt").read_text()
    src = build / "arduino" / "tinyslm_model" / "src"
    assert {"tsl_model.h", "tsl_model.c", "tsl_weights.S", "tsl_weights.bin"} <= {p.name for p in src.iterdir()}


@pytest.mark.parametrize("checker,good,bad", [
    (check_arduino, dict(name="x", version="1.0.0", author="a", maintainer="m", sentence="s", paragraph="p",
                         category="Other", url="u", architectures="*"), [("sentense", "s"), ("category", "Misc")]),
    (check_pio, dict(name="x-y", version="1.0.0", description="d", keywords="k", authors=[{"name": "a"}]),
     [("buld", {}), ("name", "bad name!")]),
    (check_idf, dict(version="1.0.0", dependencies={"idf": {"version": ">=5.0"}}),
     [("target", ["esp32"]), ("targets", ["esp64"])]),
])
def test_manifest_checkers_catch_misspellings(checker, good, bad):
    assert checker(good) == []
    for k, v in bad:
        assert checker({**good, k: v}) != [], k
    if checker is not check_idf:
        assert checker({k: v for k, v in good.items() if k != "version"}) != []


def test_weights_blob_assembles_from_any_folder(build, tmp_path):
    """tsl_weights.S finds its blob through -I, wherever the compiler runs."""
    cc = shutil.which("cc") or require_tool("gcc", "gcc")
    r = subprocess.run([cc, "-c", build / "model" / "tsl_weights.S", "-I", build / "model", "-o", tmp_path / "w.o"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["nm", "-S", tmp_path / "w.o"], capture_output=True, text=True)
    size = int(next(l.split()[1] for l in r.stdout.splitlines() if l.endswith("tsl_weights_blob")), 16)
    assert size == load_build(build)[0]["weights"]["bytes"]
    assert np.frombuffer((build / "model" / "tsl_weights.bin").read_bytes()[:4], "<u4")[0] == 0x574C5354
