"""RP2350 (Pico 2) and the SDK projects, without the chip (no RP2350 emulator here): tinyslm's own
UF2 writer against the UF2 spec (blocks re-assemble to the ELF's loadable bytes at their addresses),
the bare-metal image's vector table at 0x10000000 and its IMAGE_DEF block in the first 4 KiB, read
field by field as the RP2350 datasheet (5.9) defines it; the pico-sdk project checked against the
SDK's CMake functions (names and arguments) and configured by cmake against a strict stand-in SDK;
tinyslm flash onto a UF2 drive or through picotool; the ESP-IDF project's sources, tokenizer
included, built into the esp32c3 firmware under qemu and answering ENCODE. The rp2350's kernels run
under its stand-in mps2-an505 in test_kernels_targets.py and test_targets_e2e.py."""
import os
import re
import struct
import subprocess
import sys

import pytest

from conftest import ROOT, compiled_example, tinyslm
from conftest_tools import require_tool
from tinyslm import uf2
from tinyslm.boards import load_board
from tinyslm.errors import TslError

FLASH = [(0x10000000, 0x10400000)]
FAMILY = 0xE48BFF59


# ---- the UF2 writer and reader ----

def test_uf2_blocks_reassemble_to_the_segments():
    segs = [(0x10000000, bytes(range(256)) * 3 + b"\x01\x02"),       # 3 pages + 2 bytes
            (0x10000402, b"\xAA" * 10),                               # same page as none before: a gap below it
            (0x10001FF0, bytes(range(40)))]                           # across a page boundary
    data = uf2.write(segs, FAMILY, FLASH)
    assert len(data) % 512 == 0
    n = len(data) // 512
    for i in range(n):                                                # the spec's layout, read by hand
        b = data[i * 512:(i + 1) * 512]
        m0, m1, flags, addr, size, no, count, fid = struct.unpack_from("<8I", b)
        assert (m0, m1, struct.unpack_from("<I", b, 508)[0]) == (0x0A324655, 0x9E5D5157, 0x0AB16F30)
        assert flags == 0x00002000 and size == 256 and (no, count) == (i, n) and fid == FAMILY
        assert addr % 256 == 0 and b[32 + 256:508] == bytes(476 - 256)
    fam, pages = uf2.read(data)
    assert fam == FAMILY and sorted(pages) == [0x10000000, 0x10000100, 0x10000200, 0x10000300, 0x10000400,
                                               0x10001F00, 0x10002000]
    mem = {}
    for a, p in pages.items():
        mem.update({a + i: v for i, v in enumerate(p)})
    for a, d in segs:
        assert bytes(mem[a + i] for i in range(len(d))) == d
    assert mem[0x10000302] == 0 and mem[0x10000401] == 0 and mem[0x10000402 + 10] == 0   # gaps are zero


def test_uf2_refuses_what_it_cannot_write_or_read():
    with pytest.raises(TslError, match="outside the flash"):
        uf2.write([(0x20000000, b"x")], FAMILY, FLASH)
    with pytest.raises(TslError, match="outside the flash"):
        uf2.write([(0x103FFFFF, b"xy")], FAMILY, FLASH)
    with pytest.raises(TslError, match="overlap"):
        uf2.write([(0x10000000, b"abcd"), (0x10000002, b"x")], FAMILY, FLASH)
    good = bytearray(uf2.write([(0x10000000, bytes(600))], FAMILY, FLASH))
    for off, val, msg in ((0, 0, "magic"), (508, 0, "magic"), (8, 0, "flags"), (16, 128, "payload"),
                          (20, 5, "numbered"), (512 + 28, 0xE48BFF56, "family"), (512 + 12, 0x10000000, "twice")):
        bad = bytearray(good)
        struct.pack_into("<I", bad, off, val)
        with pytest.raises(TslError, match=msg):
            uf2.read(bytes(bad))
    with pytest.raises(TslError, match="whole number"):
        uf2.read(bytes(good[:-1]))
    with pytest.raises(TslError, match="ELF"):
        uf2.loadable(b"not an elf")


# ---- the bare-metal image ----

@pytest.fixture(scope="module")
def build(example, tmp_path_factory):
    """The bundled example compiled for rp2350 (its tokenizer included)."""
    from tinyslm.pipeline import compile_model
    out = tmp_path_factory.mktemp("rp2350") / "build"
    compile_model(example, out, "rp2350", 64, "int8", quiet=True)
    return out


@pytest.fixture(scope="module")
def image(build):
    """`tinyslm build --board rp2350` as a user runs it: what it wrote, and what it printed."""
    B = load_board("rp2350")
    require_tool(B.toolchain["cc"], B.toolchain.get("install", ""))
    r = tinyslm("build", build, "--board", "rp2350")
    assert r.returncode == 0, r.stderr
    fw = build / ".tinyslm" / "fw-rp2350"
    return dict(elf=fw / "tinyslm.elf", bin=fw / "tinyslm.bin", uf2=fw / "app.uf2", stdout=r.stdout)


def image_def(img):
    """The first PICOBIN block in the first 4 KiB of a flash image, decoded as the RP2350 datasheet
    (5.9.3, 5.9.5.1) defines it -> (offset, {item type: (size in words, payload words)}, link)."""
    for off in range(0, 4096 - 20, 4):
        if struct.unpack_from("<I", img, off)[0] != 0xFFFFDED3:
            continue
        items, p = {}, off + 4
        while True:
            hdr, = struct.unpack_from("<I", img, p)
            kind = hdr & 0x7F
            size = (hdr >> 8) & 0xFF if not hdr & 0x80 else (hdr >> 8) & 0xFFFF
            if hdr & 0xFF == 0xFF:                     # LAST (two-byte size): the words of the items before it
                assert size == (p - off - 4) // 4
                link, end = struct.unpack_from("<iI", img, p + 4)
                assert end == 0xAB123579
                return off, items, link
            items[kind] = (size, struct.unpack_from(f"<{size}I", img, p))
            p += 4 * size
    return None


def test_image_boots_from_flash(build, image):
    B = load_board("rp2350")
    img = image["bin"].read_bytes()
    assert len(img) <= B.flash_bytes
    sp, reset = struct.unpack_from("<2I", img)                   # the vector table at 0x10000000
    assert sp == 0x20000000 + 520 * 1024 and reset & 1 and 0x10000000 < reset < 0x10000000 + len(img)
    found = image_def(img)
    assert found, "no PICOBIN block in the first 4 KiB"
    off, items, link = found
    assert link == 0                                             # a loop of one block
    size, (word,) = items[0x42]                                  # IMAGE_TYPE, one word
    flags = word >> 16
    assert size == 1 and flags & 0xF == 1                        # EXE
    assert (flags >> 4) & 3 == 2 and (flags >> 8) & 7 == 0 and (flags >> 12) & 7 == 1   # Secure, Arm, RP2350
    assert img[off:off + 20] == struct.pack("<5I", 0xFFFFDED3, 0x10210142, 0x000001FF, 0, 0xAB123579)
    blob = (build / "model" / "tsl_weights.bin").read_bytes()
    assert img.find(blob[:4096]) > 0                             # the weights execute in place


def test_uf2_is_the_elf(image):
    B = load_board("rp2350")
    fam, pages = uf2.read(image["uf2"].read_bytes())
    assert fam == int(B.flash["uf2_family_id"], 0) == FAMILY
    segs = uf2.loadable(image["elf"].read_bytes())
    assert segs[0][0] == 0x10000000 and min(pages) == 0x10000000
    covered = set()
    for addr, data in segs:                                      # every loadable byte, at its load address
        for a in range(addr & ~255, addr + len(data), 256):
            lo, hi = max(a, addr), min(a + 256, addr + len(data))
            assert pages[a][lo - a:hi - a] == data[lo - addr:hi - addr], hex(a)
            covered.add(a)
    assert covered == set(pages)                                 # and nothing else
    assert all(0x10000000 <= a < 0x10400000 for a in pages)
    # initialized data, if any (the context API leaves the serial app none), is loaded from its
    # image in flash, where the start-up code copies it from: every loaded byte comes from flash
    assert all(0x10000000 <= a and a + len(d) <= 0x10400000 for a, d in segs)


def test_cli_build_says_how_to_copy_it(image):
    out = image["stdout"]
    assert f"UF2: {image['uf2']}" in out and "RPI-RP2350" in out and "picotool load" in out, out
    assert "pico-sdk project" in out and re.search(r"flash [\d.]+ KiB of 4 MiB", out), out


# ---- the pico-sdk project ----

# pico-sdk 2.x: the CMake functions a project calls, with their arguments (pico_sdk_init.cmake,
# src/rp2_common/pico_stdio_*/CMakeLists.txt, tools/CMakeLists.txt), the platforms
# (cmake/preload/platforms/*.cmake) and some boards (src/boards/include/boards/*.h)
PICO_FUNCTIONS = {"pico_sdk_init": 0, "pico_enable_stdio_usb": 2, "pico_enable_stdio_uart": 2,
                  "pico_add_extra_outputs": 1, "pico_set_program_name": 2, "pico_set_program_version": 2}
PICO_PLATFORMS = {"rp2040", "rp2350", "rp2350-arm-s", "rp2350-riscv", "host"}
PICO_BOARDS = {"pico", "pico_w", "pico2", "pico2_w"}
PICO_LIBRARIES = {"pico_stdlib"}


def _calls(text):
    text = re.sub(r"#[^\n]*", "", text)
    return [(m.group(1), m.group(2).split()) for m in re.finditer(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(([^()]*)\)", text)]


def check_pico(text):
    """What pico-sdk asks of a project's CMakeLists.txt: PICO_PLATFORM and PICO_BOARD set and
    pico_sdk_import.cmake included before project(), pico_sdk_init() after it, only functions the
    SDK defines (with their arguments), pico_stdlib linked, stdio enabled on USB or UART."""
    calls, errs = _calls(text), []
    names = [c for c, _ in calls]
    for c, args in calls:
        if c.startswith("pico_") and c not in PICO_FUNCTIONS:
            errs.append(f"unknown pico-sdk function {c}")
        elif c in PICO_FUNCTIONS and len(args) != PICO_FUNCTIONS[c] and c not in ("pico_set_program_name",
                                                                                  "pico_set_program_version"):
            errs.append(f"{c}: {len(args)} arguments, takes {PICO_FUNCTIONS[c]}")
    sets = {a[0]: a[1] for c, a in calls if c == "set" and len(a) >= 2}
    if sets.get("PICO_PLATFORM") not in PICO_PLATFORMS:
        errs.append(f"PICO_PLATFORM {sets.get('PICO_PLATFORM')}")
    if sets.get("PICO_BOARD") not in PICO_BOARDS:
        errs.append(f"PICO_BOARD {sets.get('PICO_BOARD')}")
    try:
        imp = next(i for i, (c, a) in enumerate(calls) if c == "include" and a == ["pico_sdk_import.cmake"])
        proj = names.index("project")
        init = names.index("pico_sdk_init")
        plat = next(i for i, (c, a) in enumerate(calls) if c == "set" and a[:1] == ["PICO_PLATFORM"])
        if not plat < imp < proj < init:
            errs.append("order: PICO_PLATFORM, include(pico_sdk_import.cmake), project(), pico_sdk_init()")
    except (StopIteration, ValueError):
        errs.append("missing include(pico_sdk_import.cmake), project() or pico_sdk_init()")
    links = [a for c, a in calls if c == "target_link_libraries"]
    if not links or not PICO_LIBRARIES <= set(links[0]):
        errs.append("pico_stdlib not linked")
    for f in ("pico_enable_stdio_usb", "pico_enable_stdio_uart", "pico_add_extra_outputs"):
        if f not in names:
            errs.append(f"missing {f}")
    return errs


GOOD = """set(PICO_PLATFORM rp2350-arm-s)
set(PICO_BOARD pico2)
include(pico_sdk_import.cmake)
project(x C CXX ASM)
pico_sdk_init()
add_executable(x a.c)
target_link_libraries(x PRIVATE pico_stdlib)
pico_enable_stdio_usb(x 1)
pico_enable_stdio_uart(x 0)
pico_add_extra_outputs(x)
"""


@pytest.mark.parametrize("bad", [
    ("pico_enable_stdio_usb(x 1)", "pico_enable_stdio_usbc(x 1)"),
    ("pico_enable_stdio_uart(x 0)", "pico_enable_stdio_uart(x)"),
    ("pico_add_extra_outputs(x)", "pico_add_extra_output(x)"),
    ("rp2350-arm-s", "rp2350-arm"),
    ("PICO_BOARD pico2", "PICO_BOARD pico_2"),
    ("PRIVATE pico_stdlib", "PRIVATE pico_stdlibs"),
    ("include(pico_sdk_import.cmake)\nproject(x C CXX ASM)", "project(x C CXX ASM)\ninclude(pico_sdk_import.cmake)"),
])
def test_pico_checker_catches_misspellings(bad):
    assert check_pico(GOOD) == []
    assert check_pico(GOOD.replace(*bad)) != [], bad


MOCK_SDK = r"""# a strict stand-in for pico-sdk's pico_sdk_init.cmake: the SDK's functions with their arguments
if(CMAKE_PROJECT_NAME)
    message(FATAL_ERROR "mock: pico_sdk_import.cmake must be included before project()")
endif()
set(_platforms rp2040 rp2350 rp2350-arm-s rp2350-riscv host)
set(_boards pico pico_w pico2 pico2_w)
if(NOT PICO_PLATFORM IN_LIST _platforms)
    message(FATAL_ERROR "mock: PICO_PLATFORM ${PICO_PLATFORM}")
endif()
if(NOT PICO_BOARD IN_LIST _boards)
    message(FATAL_ERROR "mock: PICO_BOARD ${PICO_BOARD}")
endif()
set(MOCK_LOG ${CMAKE_BINARY_DIR}/mock.log)
file(WRITE ${MOCK_LOG} "platform ${PICO_PLATFORM} board ${PICO_BOARD} hard_float ${PICO_HARD_FLOAT_ABI}\n")
function(pico_sdk_init)
    if(ARGC OR NOT CMAKE_PROJECT_NAME)
        message(FATAL_ERROR "mock: pico_sdk_init() takes nothing, after project()")
    endif()
    add_library(pico_stdlib INTERFACE)
endfunction()
function(_mock_target t)
    if(NOT TARGET ${t})
        message(FATAL_ERROR "mock: ${t} is not a target")
    endif()
endfunction()
function(pico_enable_stdio_usb TARGET ENABLED)
    _mock_target(${TARGET})
    if(NOT ARGC EQUAL 2 OR NOT ENABLED MATCHES "^[01]$")
        message(FATAL_ERROR "mock: pico_enable_stdio_usb(TARGET 0|1)")
    endif()
    file(APPEND ${MOCK_LOG} "usb ${ENABLED}\n")
endfunction()
function(pico_enable_stdio_uart TARGET ENABLED)
    _mock_target(${TARGET})
    if(NOT ARGC EQUAL 2 OR NOT ENABLED MATCHES "^[01]$")
        message(FATAL_ERROR "mock: pico_enable_stdio_uart(TARGET 0|1)")
    endif()
    file(APPEND ${MOCK_LOG} "uart ${ENABLED}\n")
endfunction()
function(pico_set_program_name TARGET NAME)
    _mock_target(${TARGET})
endfunction()
function(pico_set_program_version TARGET VERSION)
    _mock_target(${TARGET})
endfunction()
function(pico_add_extra_outputs TARGET)
    _mock_target(${TARGET})
    get_target_property(libs ${TARGET} LINK_LIBRARIES)
    get_target_property(srcs ${TARGET} SOURCES)
    file(APPEND ${MOCK_LOG} "libs ${libs}\nsources ${srcs}\n")
endfunction()
"""


def test_pico_project(build, tmp_path):
    proj = build / "pico"
    text = (proj / "CMakeLists.txt").read_text()
    assert check_pico(text) == []
    srcs = [s for c, a in _calls(text) if c == "add_executable" for s in a[1:]]
    assert {"tsl_tokenizer.c", "tsl_tokenizer_tables.c", "tsl_uart_pico.c", "../app/tsl_proto.c",
            "../app/tsl_serial_app.c", "../model/tsl_weights.S"} <= set(srcs)
    assert all((proj / s).is_file() for s in srcs), [s for s in srcs if not (proj / s).is_file()]
    B = load_board("rp2350")
    opts = next(a for c, a in _calls(text) if c == "target_compile_options")
    assert opts[2:] == B.toolchain["cflags"]                     # the board's flags, -ffp-contract=off included
    assert "PICO_STDIO_DEFAULT_CRLF=0" in text and "TSL_HAS_TOKENIZER" in text
    cmake = require_tool("cmake", "cmake")
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    (sdk / "pico_sdk_init.cmake").write_text(MOCK_SDK)
    for stdio, want in (("usb", "usb 1\nuart 0"), ("uart", "usb 0\nuart 1")):
        bdir = tmp_path / f"b-{stdio}"
        r = subprocess.run([cmake, "-S", str(proj), "-B", str(bdir), f"-DPICO_SDK_PATH={sdk}", f"-DTINYSLM_STDIO={stdio}"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        log = (bdir / "mock.log").read_text()
        assert "platform rp2350-arm-s board pico2 hard_float 1" in log and want in log and "libs pico_stdlib" in log, log
    r = subprocess.run([cmake, "-S", str(proj), "-B", str(tmp_path / "b-none")], capture_output=True, text=True,
                       timeout=300, env={k: v for k, v in os.environ.items() if k != "PICO_SDK_PATH"})
    assert r.returncode != 0 and "PICO_SDK_PATH is not set" in r.stderr


# ---- tinyslm flash ----

def _flash(*args, path=None):
    env = dict(os.environ, PATH=path) if path is not None else None
    return subprocess.run([sys.executable, "-m", "tinyslm", "flash", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, env=env)


def test_flash_onto_the_drive(build, image, tmp_path):
    app = image["uf2"]
    drive = tmp_path / "RPI-RP2350"
    drive.mkdir()
    from tinyslm.firmware import flash_plan
    B = load_board("rp2350")
    argv, why = flash_plan(B, build, str(drive), app)
    assert argv is None and "INFO_UF2.TXT" in why, why                  # a folder, not a UF2 drive
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v1.0\nModel: Raspberry Pi RP2040\nBoard-ID: RPI-RP2\n")
    argv, why = flash_plan(B, build, str(drive), app)
    assert argv is None and "RPI-RP2, not a RP2350" in why, why         # another chip's drive
    other = tmp_path / "rp2040.uf2"
    other.write_bytes(uf2.write([(0x10000000, b"x" * 300)], 0xE48BFF56, FLASH))
    with pytest.raises(TslError, match="family 0xe48bff56"):            # another chip's image
        flash_plan(B, build, str(drive), other)
    other.write_bytes(app.read_bytes()[:-1])
    with pytest.raises(TslError, match="whole number"):
        flash_plan(B, build, str(drive), other)
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v1.0\nModel: Raspberry Pi RP2350\nBoard-ID: RP2350\n")
    r = _flash(build, "--board", "rp2350", "--image", app, "--port", drive)
    assert r.returncode == 0 and "rp2350: flashed" in r.stdout, r.stdout + r.stderr
    assert (drive / "app.uf2").read_bytes() == app.read_bytes()
    r = _flash(build, "--board", "rp2350", "--image", image["bin"], "--port", drive)   # not a UF2
    assert r.returncode == 2 and ".uf2" in r.stderr


def test_flash_with_picotool_or_name_it(build, image, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _flash(build, "--board", "rp2350", "--image", image["uf2"], path=str(empty))
    assert r.returncode == 1 and "not flashed" in r.stderr and "picotool" in r.stderr, r.stderr
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "picotool").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {bindir / 'args'}\nexit 0\n")
    (bindir / "picotool").chmod(0o755)
    r = _flash(build, "--board", "rp2350", "--image", image["uf2"], path=str(bindir))
    assert r.returncode == 0, r.stderr
    assert (bindir / "args").read_text().split() == ["load", "-x", str(image["uf2"])]


# ---- the ESP-IDF project ----

@pytest.fixture(scope="module")
def host_build(example, tmp_path_factory):
    return compiled_example(tmp_path_factory, 64, "idf")


def test_espidf_project_carries_the_tokenizer(host_build):
    """The ESP-IDF project's SRCS, less its IDF glue, plus the qemu glue, are the esp32c3 firmware:
    built with the esp32c3 toolchain and run under qemu, it encodes and decodes on the device."""
    from tinyslm import firmware, targets
    from tinyslm.serialio import Device
    from tinyslm.tokenizer import Tokenizer
    B = load_board("esp32c3")
    proj = firmware.write_espidf_project(host_build, B)
    main = proj / "main"
    text = (main / "CMakeLists.txt").read_text()
    srcs = re.findall(r'"([^"]+)"', text.split("SRCS", 1)[1].split("INCLUDE_DIRS", 1)[0])
    assert {"tsl_tokenizer.c", "tsl_tokenizer_tables.c", "tsl_uart_espidf.c", "../../app/tsl_proto.c",
            "../../app/tsl_serial_app.c"} <= set(srcs)
    assert all((main / s).is_file() for s in srcs)
    assert '"TSL_HAS_TOKENIZER"' in text and '"."' in text
    require_tool(B.toolchain["cc"], B.toolchain.get("install", ""))
    require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    defs = dict(d.replace('\\"', '"').split("=", 1) if "=" in d else (d, None)
                for d in re.findall(r'"((?:[^"\\]|\\.)+)"', text.split("target_compile_definitions", 1)[1].split("\n")[0]))
    defs.update({"TSL_PROTO_PLATFORM_CYCLES": None, "TSL_UART_NS16550": None, "TSL_UART_BASE": B.target["uart_base"],
                 "TSL_CYCLES_EMULATED": None})
    files = [main / s for s in srcs if s != "tsl_uart_espidf.c"] + [host_build / s for s in firmware.IMAGE_GLUE]
    elf = targets.build(B, files, [host_build / d for d in ("runtime", "model", "app")] + [main],
                        host_build / ".tinyslm" / "idf-equivalent", defs, name="tinyslm")
    tok = Tokenizer.from_file(host_build / "tokenizer.json")
    port = firmware.free_port()
    with firmware.Emulation(B, elf, port):
        with Device(f"socket://127.0.0.1:{port}") as dev:
            info = dev.identify()
            assert info["tok_encode"] and info["board"] == "esp32c3"
            text = "Once upon a time, Elizabeth"
            ids = dev.encode(text)
            assert ids == tok.encode(text)
            assert dev.token_bytes(ids) == text.encode()


# ---- clocks and UART0, register by register (on the host, against simulated registers) ----

def _regsim(tmp_path, no_xosc):
    cc = require_tool("cc", "gcc")
    d = load_board("rp2350").target["defines"]
    exe = tmp_path / ("regsim-noxosc" if no_xosc else "regsim")
    r = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", f"-I{ROOT / 'firmware' / 'targets' / 'rp2350'}",
                        f"-I{ROOT / 'firmware' / 'uart'}", "-DTSL_UART_PL011", *[f"-D{k}={v}" for k, v in d.items()],
                        *(["-DSIM_NO_XOSC"] if no_xosc else []), str(ROOT / "tests" / "rp2350_regsim.c"), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60).stdout
    regs = {int(a, 16): int(v, 16) for a, v in re.findall(r"^reg (\S+) (\S+)$", out, re.M)}
    uartr = {int(a, 16): int(v, 16) for a, v in re.findall(r"^uart (\S+) (\S+)$", out, re.M)}
    return re.search(r"^problem (.*)$", out, re.M).group(1), list(map(int, re.search(r"^clocks (.*)$", out, re.M)
                                                                   .group(1).split())), regs, uartr, out


@pytest.mark.parametrize("no_xosc", [False, True], ids=["xosc", "no-xosc"])
def test_clock_and_uart_registers(tmp_path, no_xosc):
    """RP2350 datasheet: XOSC_CTRL (8.2), PLL CS/PWR/FBDIV_INT/PRIM (8.6), CLK_REF/SYS/PERI_CTRL (8.1),
    RESETS (7.5), PADS_BANK0 and IO_BANK0 GPIO0/1 (9.11), PL011 UARTIBRD/FBRD/LCR_H/CR."""
    B = load_board("rp2350")
    d = B.target["defines"]
    problem, (ref, sys_hz, peri, uart_hz), regs, u, out = _regsim(tmp_path, no_xosc)
    if no_xosc:
        assert problem == "XOSC did not start" and sys_hz == peri == uart_hz == 11_000_000   # left on the ROSC
        assert regs[0x40010030] & 3 == 0 and regs[0x4001003C] & 1 == 0
    else:
        assert problem == "-" and sys_hz == B.clock_hz == peri == uart_hz and ref == d["TSL_RP2350_XOSC_HZ"]
        assert regs[0x40048000] == 0xFAB << 12 | 0xAA0                      # enabled, 1-15 MHz range
        assert regs[0x4004800C] == (12000 + 128) // 256 * 64
        assert regs[0x40050000] & 0x3F == d["TSL_RP2350_PLL_REFDIV"] and regs[0x40050008] == d["TSL_RP2350_PLL_FBDIV"]
        assert regs[0x4005000C] == d["TSL_RP2350_PLL_POSTDIV1"] << 16 | d["TSL_RP2350_PLL_POSTDIV2"] << 12
        assert regs[0x40050004] & (1 | 1 << 3 | 1 << 5) == 0              # PD, POSTDIVPD, VCOPD off
        assert d["TSL_RP2350_XOSC_HZ"] // d["TSL_RP2350_PLL_REFDIV"] * d["TSL_RP2350_PLL_FBDIV"] // (
            d["TSL_RP2350_PLL_POSTDIV1"] * d["TSL_RP2350_PLL_POSTDIV2"]) == B.clock_hz
        assert regs[0x40010030] == 2 and regs[0x4001003C] == 1            # clk_ref = XOSC, clk_sys = aux (PLL_SYS)
        assert regs[0x40010040] == 1 << 16                                # clk_sys divider 1
    assert regs[0x40010048] & (1 << 11 | 7 << 5) == 1 << 11               # clk_peri on, from clk_sys
    assert regs[0x40020000] & (1 << 26 | 1 << 6 | 1 << 9) == 0            # UART0, IO_BANK0, PADS_BANK0 out of reset
    for pin in (d["TSL_RP2350_UART_TX_PIN"], d["TSL_RP2350_UART_RX_PIN"]):
        pad = regs[0x40038004 + 4 * pin]
        assert pad & (1 << 8) == 0 and pad & (1 << 7) == 0 and pad & (1 << 6)   # not isolated, output on, input on
        assert regs[0x40028004 + 8 * pin] & 0x1F == d["TSL_RP2350_UART_FUNCSEL"]
    div64 = round(4 * uart_hz / d["TSL_UART_BAUD"])                        # 64 x clock / (16 baud)
    assert (u[0x24], u[0x28]) == (div64 >> 6, div64 & 63) and u[0x2C] == 0x70 and u[0x30] == 0x301
    assert "got 90" in out and u[0x00] == 0x22


# the pico-sdk stdio API tsl_uart_pico.c uses, declared as pico-sdk 2.x declares it (pico/stdio.h),
# and defined over the stand-in's CMSDK UART (DATA 0x0, STATE 0x4: b0 TX full, b1 RX full; CTRL 0x8)
PICO_STDLIB_H = """#pragma once
#include <stdbool.h>
#include <stdint.h>
#define PICO_ERROR_TIMEOUT (-1)
bool stdio_init_all(void);
void stdio_flush(void);
int getchar_timeout_us(uint32_t timeout_us);
int putchar_raw(int c);
uint32_t time_us_32(void);
"""
PICO_STDIO_STAND_IN = """#include "pico/stdlib.h"
#define U(o) (*(volatile uint32_t *)(%(base)s + (o)))
bool stdio_init_all(void) { U(0x10) = 16; U(0x08) = 3; (void)U(0x00); return true; }
void stdio_flush(void) {}
int getchar_timeout_us(uint32_t timeout_us)
{
    for (uint32_t i = 0; i <= timeout_us; i++)
        if (U(0x04) & 2u) return (int)(U(0x00) & 0xFF);
    return PICO_ERROR_TIMEOUT;
}
int putchar_raw(int c) { while (U(0x04) & 1u) {} U(0x00) = (uint32_t)(c & 0xFF); return c; }
uint32_t time_us_32(void) { return 0; }
"""


def test_pico_project_sources_answer_under_the_stand_in(build, tmp_path):
    """The pico project's own source list and glue (tsl_uart_pico.c), built with its defines for the
    rp2350's stand-in mps2-an505, pico-sdk's stdio functions mapped onto the stand-in's UART: the
    firmware identifies itself as rp2350 and encodes and decodes with its own tokenizer."""
    from tinyslm import firmware, targets
    from tinyslm.serialio import Device
    from tinyslm.tokenizer import Tokenizer
    E = load_board("mps2-an505")
    require_tool(E.toolchain["cc"], E.toolchain.get("install", ""))
    require_tool(E.emulator["cmd"][0], E.emulator.get("install", ""))
    proj = build / "pico"
    text = (proj / "CMakeLists.txt").read_text()
    srcs = [proj / s for c, a in _calls(text) if c == "add_executable" for s in a[1:]]
    defs = dict(d.replace('\\"', '"').split("=", 1) if "=" in d else (d, None)
                for d in re.findall(r'"((?:[^"\\]|\\.)+)"', text.split("target_compile_definitions", 1)[1].split("\n")[0]))
    (tmp_path / "pico").mkdir()
    (tmp_path / "pico" / "stdlib.h").write_text(PICO_STDLIB_H)
    (tmp_path / "pico_stdio.c").write_text(PICO_STDIO_STAND_IN % dict(base=E.target["uart_base"]))
    incs = [proj / d for c, a in _calls(text) if c == "target_include_directories" for d in a[2:-1]] + [proj, tmp_path]
    elf = targets.build(E, srcs + [tmp_path / "pico_stdio.c"], incs, tmp_path / "fw", defs, name="pico",
                        extra_cflags=["-Werror=implicit-function-declaration"])
    tok = Tokenizer.from_file(build / "tokenizer.json")
    port = firmware.free_port()
    with firmware.Emulation(E, elf, port):
        with Device(f"socket://127.0.0.1:{port}") as dev:
            info = dev.identify()
            assert info["board"] == "rp2350" and info["tok_encode"] and info["model_status"] == 0
            ids = dev.encode("It is a truth universally acknowledged")
            assert ids == tok.encode("It is a truth universally acknowledged")
            assert dev.token_bytes(ids) == b"It is a truth universally acknowledged"


def test_rp2040_is_data_too(host_build, tmp_path):
    """The RP2040 board file gives the same project and UF2 checks its own facts: platform rp2040,
    soft float (no PICO_HARD_FLOAT_ABI), family 0xe48bff56, and the M0+ path of the glue (no DWT)
    compiles against pico-sdk's declarations."""
    from tinyslm.firmware import flash_plan, write_pico_project
    B = load_board("rp2040")
    proj = write_pico_project(host_build, B)
    text = (proj / "CMakeLists.txt").read_text()
    assert check_pico(text) == [] and "set(PICO_PLATFORM rp2040 " in text and "PICO_HARD_FLOAT_ABI" not in text
    img = tmp_path / "tinyslm.uf2"
    img.write_bytes(uf2.write([(0x10000000, bytes(1000))], FAMILY, FLASH))
    with pytest.raises(TslError, match="family 0xe48bff59"):
        flash_plan(B, host_build, None, img)
    img.write_bytes(uf2.write([(0x10000000, bytes(1000))], 0xE48BFF56, FLASH))
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n")
    argv, why = flash_plan(B, host_build, str(drive), img)
    assert argv[1:] == ["-m", "tinyslm.uf2", str(img), str(drive)], why
    cc = require_tool(B.toolchain["cc"], B.toolchain.get("install", ""))
    (tmp_path / "pico").mkdir()
    (tmp_path / "pico" / "stdlib.h").write_text(PICO_STDLIB_H)
    r = subprocess.run([cc, *B.toolchain["cflags"], "-Werror", "-Wall", f"-I{tmp_path}", "-DTSL_CYCLES_HZ=133000000",
                        "-c", str(proj / "tsl_uart_pico.c"), "-o", str(tmp_path / "glue.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    syms = subprocess.run([B.toolchain["objcopy"].replace("objcopy", "nm"), str(tmp_path / "glue.o")],
                          capture_output=True, text=True).stdout
    assert " U time_us_32" in syms
