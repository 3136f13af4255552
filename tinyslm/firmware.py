"""Firmware: a compiled project + the serial protocol app -> an image for a board, and the board
run under its emulator with its UART on a local TCP port (the same bytes a USB serial adapter
carries). The UART's kind and address are board facts ([target] uart, uart_base)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import __version__, procs, targets
from .boards import load_board
from .boards import BOARDS as BOARDS_DIR
from .builddir import load_build, private_dir, write_private
from .units import human_bytes
from .errors import TslError


def app_sources():
    """The serial app's sources in a build (app/NAME.c): every firmware/proto/*.c that compile copies
    into OUT/app (codegen.APPS). The one list the qemu and bare-metal firmware, tinyslm-run, the
    ESP-IDF project and the pico-sdk project all build; each adds only its own UART glue."""
    from .codegen import APPS
    return [f"app/{Path(f).name}" for f in APPS if f.startswith("proto/") and f.endswith(".c")]


# the glue per kind of build: tsl_uart.c (the UART of the board's toml) and main() for an image;
# tsl_uart.c alone for tinyslm-run, which has its own main (stdin/stdout); ESP-IDF and pico-sdk
# projects bring their own (firmware/uart/tsl_uart_espidf.c, tsl_uart_pico.c)
IMAGE_GLUE = ["app/tsl_uart.c", "app/tsl_app_serial.c"]
NATIVE_GLUE = ["app/tsl_uart.c"]
# Linux boards: tinyslm-run (text in and out, chat; the serial protocol with --serial), its tokenizer
# tables written beside it from the build's tokenizer.json
NATIVE_FILES = ["tsl_run_main.c", "tsl_tokenizer.c", "tsl_tokenizer.h"]


def write_native_app(out, bdir):
    """tinyslm-run's own sources in the private folder bdir: the tokenizer's C tables (tsl_run_tok,
    tsl_run_bos, tsl_run_eos; a build without tokenizer.json gets tables with no encoder) and the
    program and tokenizer from tinyslm's firmware/. -> their .c paths."""
    from .codegen import FIRMWARE
    from .tokenizer import Tokenizer
    tokp = out / "tokenizer.json"
    if tokp.is_file():
        tok = Tokenizer.from_file(tokp)
        src = tok.c_source("tsl_run_tok") + "\nconst int32_t tsl_run_bos = {}, tsl_run_eos = {};\n".format(
            -1 if tok.bos_id is None else tok.bos_id, -1 if tok.eos_id is None else tok.eos_id)
    else:
        src = ('#include "tsl_tokenizer.h"\n/* no tokenizer.json in the build: no encoder, no token bytes */\n'
               "const tsl_tokenizer tsl_run_tok = {0};\nconst int32_t tsl_run_bos = -1, tsl_run_eos = -1;\n")
    write_private(bdir / "tsl_run_tokenizer.c", src)
    for f in NATIVE_FILES:
        write_private(bdir / f, (FIRMWARE / f).read_bytes())
    return [bdir / "tsl_run_main.c", bdir / "tsl_tokenizer.c", bdir / "tsl_run_tokenizer.c"]


FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
ESPIDF_GLUE = FIRMWARE / "uart" / "tsl_uart_espidf.c"
PICO_GLUE = FIRMWARE / "uart" / "tsl_uart_pico.c"


def tokenizer_hash(data):
    """The tokenizer's identity on a device: CRC-32 of its tokenizer.json bytes (0 means none)."""
    import zlib
    return zlib.crc32(data) or 1


def _tokenizer_sources(out, man, bdir):
    """-> (sources, defines) that put the build's tokenizer on the device: its tables as C (written
    into bdir) and firmware/tsl_tokenizer.c; ([], {}) for a build without a tokenizer."""
    if not man.get("tokenizer"):
        return [], {}
    from .tokenizer import Tokenizer
    path = out / man["tokenizer"]
    tok = Tokenizer.from_file(path)
    for f in ("tsl_tokenizer.c", "tsl_tokenizer.h"):
        write_private(bdir / f, (FIRMWARE / f).read_bytes())
    write_private(bdir / "tsl_tokenizer_tables.c", tok.c_source("tsl_tok"))
    defs = {"TSL_HAS_TOKENIZER": None, "TSL_TOKENIZER_HASH": f"0x{tokenizer_hash(path.read_bytes()):08x}u",
            "TSL_TOK_BOS": -1 if tok.bos_id is None else tok.bos_id,
            "TSL_TOK_EOS": -1 if tok.eos_id is None else tok.eos_id}
    return [bdir / "tsl_tokenizer.c", bdir / "tsl_tokenizer_tables.c"], defs


def _app_defines(man, B, load_buffer=False):
    """Build options of the serial app: identity strings, and with load_buffer a RAM buffer for a
    second copy of the weights (what `tinyslm load` writes into; it doubles the weights' RAM)."""
    d = {"TSL_BOARD_NAME": f'"{B.name}"', "TSL_FW_VERSION": f'"tinyslm-{__version__}"', "TSL_LOAD_BYTES": 0,
         "TSL_NO_DEFAULT_MODEL": None}           # the app owns the model's buffers (context API)
    if not load_buffer:
        return d
    mem = man["memory"]
    room = B.ram_bytes + B.psram_bytes - mem["arena_bytes"] - mem["kv_bytes"] - 8 * man["model"]["vocab"] - 65536
    if B.ram_bytes and man["weights"]["bytes"] > room:
        raise TslError(f"--load-buffer: {B.name} has no RAM for a second copy of the weights "
                       f"({human_bytes(man['weights']['bytes'])}, {human_bytes(max(0, room))} free)")
    d["TSL_LOAD_BYTES"] = man["weights"]["bytes"]
    return d


def _project_dir(d, what):
    if d.is_symlink() or (d.exists() and not d.is_dir()):
        raise TslError(f"{d}: is a link or a file; tinyslm writes its {what} here: remove it")
    d.mkdir(exist_ok=True)
    return d


def _cmake_defines(defs):
    """{NAME: value or None} -> NAME or NAME=value, quotes escaped for a quoted CMake argument."""
    return [(k if v is None else f"{k}={v}").replace('"', '\\"') for k, v in defs.items()]


def _project_sources(out, man, B, proj, load_buffer):
    """What an SDK project around the build compiles, besides its own glue: the model, the serial
    app (app_sources) and, with a tokenizer, its C tables and firmware/tsl_tokenizer.c written into
    `proj` -> (paths relative to proj, defines)."""
    tok, tok_defs = _tokenizer_sources(out, man, proj)
    rel = [os.path.relpath(out / s, proj) for s in man["sources"] + app_sources()] + [p.name for p in tok]
    return [r.replace(os.sep, "/") for r in rel], {**_app_defines(man, B, load_buffer), **tok_defs,
                                                   "TSL_CYCLES_HZ": B.clock_hz}


def write_espidf_project(out, B, load_buffer=False):
    """OUT/espidf: an ESP-IDF project around the generated sources (idf.py build; not built here)."""
    import jinja2
    from .codegen import TEMPLATES
    out = Path(out).resolve()
    man, _ = load_build(out)
    proj = _project_dir(out / "espidf", "ESP-IDF project")
    main = _project_dir(proj / "main", "ESP-IDF project")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES / "espidf"), undefined=jinja2.StrictUndefined)
    srcs, defs = _project_sources(out, man, B, main, load_buffer)
    ctx = dict(version=__version__, board=B.name, idf_target=B.target["espidf_target"],
               sources=srcs + [ESPIDF_GLUE.name], defines=_cmake_defines(defs))
    write_private(proj / "CMakeLists.txt", env.get_template("CMakeLists.txt.j2").render(**ctx))
    write_private(main / "CMakeLists.txt", env.get_template("main_CMakeLists.txt.j2").render(**ctx))
    for f in ("sdkconfig.defaults", "partitions.csv"):
        write_private(proj / f, (TEMPLATES / "espidf" / f).read_bytes())
    write_private(main / ESPIDF_GLUE.name, ESPIDF_GLUE.read_bytes())
    return proj


def write_pico_project(out, B, load_buffer=False):
    """OUT/pico: a pico-sdk project around the generated sources, the serial app and its stdio glue
    (firmware/uart/tsl_uart_pico.c), for the board's [pico] platform and board, stdio over USB CDC
    or UART0 (TINYSLM_STDIO, default [pico] stdio). Not built here: no pico-sdk in Debian."""
    import jinja2
    from .codegen import TEMPLATES
    out = Path(out).resolve()
    man, _ = load_build(out)
    pico = B.extra["pico"]
    proj = _project_dir(out / "pico", "pico-sdk project")
    srcs, defs = _project_sources(out, man, B, proj, load_buffer)
    cflags = B.toolchain.get("cflags", [])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES / "pico"), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    ctx = dict(version=__version__, board=B.name, platform=pico["platform"], pico_board=pico["board"],
               stdio=pico.get("stdio", "usb"), sources=srcs + [PICO_GLUE.name], defines=_cmake_defines(defs),
               cflags=cflags, hard_float="-mfloat-abi=hard" in cflags, drive=B.flash.get("drive", "UF2"),
               own_image=bool(B.target.get("startup")),
               includes=[os.path.relpath(out / d, proj).replace(os.sep, "/") for d in ("model", "runtime", "app")])
    for tpl in ("CMakeLists.txt", "pico_sdk_import.cmake"):
        write_private(proj / tpl, env.get_template(tpl + ".j2").render(**ctx))
    write_private(proj / PICO_GLUE.name, PICO_GLUE.read_bytes())
    return proj


def build_firmware(out, board, log=print, load_buffer=False):
    """-> {elf, bin, uf2, sizes, espidf, pico}: the serial firmware of project `out` for `board` (an
    image for its emulator or bare-metal target; a UF2 of it where [flash] names a UF2 family), and
    the SDK project around it where the board has one (ESP-IDF for ESP32 chips, pico-sdk for [pico]).
    sizes: flash and RAM part by part (report.image_sizes). load_buffer: room for `tinyslm load`."""
    out = Path(out).resolve()
    man, _ = load_build(out)
    B = load_board(board)
    check_board(man, B)
    espidf = write_espidf_project(out, B, load_buffer) if B.target.get("espidf_target") else None
    pico = write_pico_project(out, B, load_buffer) if B.extra.get("pico") else None
    if B.kind == "espidf":
        return dict(elf=None, bin=None, uf2=None, sizes=None, espidf=espidf, pico=pico)
    if not B.target.get("startup") and B.kind == "baremetal":
        raise TslError(f"board {B.name}: tinyslm has no start-up code for this chip; {B.flash.get('notes', '')} "
                       f"(its stand-in {B.extra.get('stand_in', '?')} runs here)")
    uart = B.target.get("uart")
    if not uart:
        raise TslError(f"board {B.name}: no [target] uart in its toml; the serial firmware needs one")
    defines = {"TSL_PROTO_PLATFORM_CYCLES": None, f"TSL_UART_{uart.upper()}": None, **_app_defines(man, B, load_buffer)}
    if B.target.get("uart_base"):
        defines["TSL_UART_BASE"] = B.target["uart_base"]
    bdir = private_dir(out, f"fw-{B.name}")
    name = "tinyslm"
    if B.kind == "linux":
        srcs = [out / s for s in man["sources"] + app_sources() + NATIVE_GLUE] + write_native_app(out, bdir)
        defines["TSL_RUN_THREADS"] = B.cores
        name = "tinyslm-run"
    else:
        srcs = [out / s for s in man["sources"] + app_sources() + IMAGE_GLUE]
    tok_srcs, tok_defs = _tokenizer_sources(out, man, private_dir(out, f"fw-{B.name}", "tokenizer"))
    defines.update(tok_defs, TSL_CYCLES_HZ=B.clock_hz)
    if B.kind == "baremetal" and B.emulator and (B.emulated or B.target.get("espidf_target")):   # under qemu only
        defines["TSL_CYCLES_EMULATED"] = None
    if B.kind == "linux":                   # tinyslm-run links its own copy of the tokenizer (write_native_app)
        tok_srcs = [s for s in tok_srcs if s.name != "tsl_tokenizer.c"]
    incs = [out / "runtime", out / "model", out / "app", bdir, bdir / "tokenizer"]
    try:
        elf = targets.build(B, srcs + tok_srcs, incs, bdir, defines, name=name)
    except TslError as e:
        if not (tok_srcs and B.kind == "baremetal" and "overflowed" in str(e)):
            raise
        # no room for the tokenizer tables beside the weights: the image goes without them (and the console)
        log(f"  note: {B.name}'s memory has no room for the tokenizer tables; this image encodes nothing: "
            "give `run --port` the build directory (or --tokenizer) for --prompt")
        for k in tok_defs:
            defines.pop(k, None)
        elf = targets.build(B, srcs, incs, bdir, defines, name=name)
    res = dict(elf=elf, bin=None, uf2=None, sizes=_sizes(B, elf, man), espidf=espidf, pico=pico)
    if B.flash.get("uf2_family_id"):
        res["uf2"] = write_uf2(B, elf, bdir / "app.uf2")
    objcopy = B.toolchain.get("objcopy")
    if B.kind == "baremetal" and objcopy and shutil.which(objcopy):
        binf = elf.with_suffix(".bin")
        if procs.run([objcopy, "-O", "binary", str(elf), str(binf)], timeout=600).returncode:
            raise TslError(f"{B.name}: {objcopy} could not write {binf}")
        s = res["sizes"]
        if s and binf.stat().st_size > 2 * s["flash"] + 65536:
            binf.unlink()         # the image spans separate memory regions (qemu's map): a raw file would be mostly gap
            log(f"  note: {B.name}'s image spans separate memory regions; no raw binary, load the ELF")
        else:
            res["bin"] = binf
    return res


def write_uf2(B, elf, path):
    """The image as a UF2 file for the board's boot ROM drive: its loadable bytes (tinyslm.uf2) in
    [flash] uf2_flash, flagged with [flash] uf2_family_id."""
    from . import uf2
    lo, hi = (int(a, 0) for a in B.flash["uf2_flash"])
    data = uf2.write(uf2.loadable(Path(elf).read_bytes(), str(elf)), int(B.flash["uf2_family_id"], 0), [(lo, hi)])
    return write_private(path, data)


def _sizes(B, elf, man):
    """The image's flash and RAM part by part (report.image_sizes), from the toolchain's size and
    nm; None without them."""
    from .report import image_sizes
    size = B.toolchain.get("objcopy", "").replace("objcopy", "size") or "size"
    nm = size[:-4] + "nm" if size.endswith("size") else "nm"
    if not shutil.which(size) or not shutil.which(nm):
        return None
    sections, symbols = {}, {}
    for line in procs.run([size, "-A", str(elf)], timeout=600).stdout.decode(errors="replace").splitlines():
        p = line.split()
        if len(p) >= 2 and p[0].startswith(".") and p[1].isdigit():
            sections[p[0]] = int(p[1])
    for line in procs.run([nm, "-S", str(elf)], timeout=600).stdout.decode(errors="replace").splitlines():
        p = line.split()
        if len(p) == 4:
            try:
                symbols[p[3]] = int(p[1], 16)
            except ValueError:
                pass
    return image_sizes(sections, symbols, man, 0)


def check_board(man, B):
    """A build compiled for one board is built only for that board or, to run it here, for that
    board's emulated stand-in; a host build (generic: no board limits) for any board."""
    own = man["board"]
    if own in ("host", B.name):
        return
    other = load_board(own) if (BOARDS_DIR / f"{own}.toml").is_file() else None
    if other is not None and other.stand_in == B.name:
        return
    raise TslError(f"--board {B.name}: this build was compiled for {own} (its memory checks, fit and kernels "
                   f"assume that board); compile it again with --board {B.name}")


def emulator_with_serial(B, elf, port):
    """The board's emulator command with its first UART on 127.0.0.1:port (qemu-system), or None
    for boards whose UART is the process's stdio (qemu-user)."""
    cmd = targets.emulator_cmd(B, elf)
    if B.target.get("uart") == "stdio":
        return None
    chardev = f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"
    if "-serial" in cmd:
        i = cmd.index("-serial")
        return cmd[:i + 1] + [chardev] + cmd[i + 2:]
    return cmd + ["-serial", chardev]


class Emulation:
    """A board's firmware running under its emulator, its UART on 127.0.0.1:port. Context manager;
    `wait()` blocks until the firmware exits."""

    def __init__(self, B, elf, port):
        self.B, self.port = B, port
        cmd = emulator_with_serial(B, elf, port)
        if cmd is not None:
            self.proc = procs.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.bridge = None
        else:   # stdio UART: bridge one TCP client to the emulated process
            self.proc = procs.popen(targets.emulator_cmd(B, elf) + B.target.get("serial_args", []), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.bridge = _StdioBridge(self.proc, port)

    def wait_ready(self, timeout=10.0):
        """Until the UART port accepts connections (qemu listens before the CPU starts)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise TslError(f"{self.B.name}: emulator exited early: {self.proc.stderr.read().decode()[-300:]}")
            if self.bridge is not None and self.bridge.listening.is_set():
                return self
            if self.bridge is None and _port_open(self.port):
                return self
            time.sleep(0.05)
        raise TslError(f"{self.B.name}: emulator did not open 127.0.0.1:{self.port} within {timeout:.0f} s")

    def wait(self):
        return procs.wait_any(self.proc)

    def close(self):
        procs.stop(self.proc)
        if self.bridge:
            self.bridge.close()

    def __enter__(self):
        return self.wait_ready()

    def __exit__(self, *exc):
        self.close()


def _port_open(port):
    """qemu's wait=on server accepts exactly one client: probing it would consume that. Check the
    listening socket in /proc instead."""
    hexport = f"{port:04X}"
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in Path(f).read_text().splitlines()[1:]:
                p = line.split()
                if p[1].endswith(":" + hexport) and p[3] == "0A":   # LISTEN
                    return True
        except OSError:
            pass
    return False


class _StdioBridge:
    """TCP clients, one after another, <-> a process's stdin/stdout: a serial line that stays up
    between connections (bytes sent while no client is connected are lost, as on a real line)."""

    def __init__(self, proc, port):
        self.proc, self.listening, self.conn = proc, threading.Event(), None
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(1)
        self.listening.set()
        threading.Thread(target=self._down, daemon=True).start()
        threading.Thread(target=self._up, daemon=True).start()

    def _up(self):
        """process stdout -> the current client"""
        while True:
            b = self.proc.stdout.read1(4096)
            if not b:
                break
            conn = self.conn
            if conn is not None:
                try:
                    conn.sendall(b)
                except OSError:
                    pass

    def _down(self):
        """each client in turn -> process stdin"""
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn = conn
            try:
                while (b := conn.recv(4096)):
                    self.proc.stdin.write(b)
                    self.proc.stdin.flush()
            except (OSError, ValueError):
                pass
            self.conn = None
            conn.close()

    def close(self):
        self.srv.close()
        try:
            self.proc.stdin.close()
        except OSError:
            pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# How each flashing tool is found and installed (not board facts: the same on every board).
FLASH_TOOLS = {
    "stm32loader": ("module", "stm32loader", "pip install 'tinyslm[flash]'"),
    "esptool": ("module", "esptool", "pip install 'tinyslm[flash]'"),
    "st-flash": ("program", "st-flash", "apt install stlink-tools"),
    "openocd": ("program", "openocd", "apt install openocd"),
    "uf2": ("program", "picotool", "apt install picotool, or give --port the mounted boot drive"),
}


def _installed(tool):
    import importlib.util
    kind, name, _ = FLASH_TOOLS[tool]
    return importlib.util.find_spec(name) is not None if kind == "module" else shutil.which(name) is not None


def flash_plan(B, out, port, image=None, tool=None):
    """How the family's own tool writes to `B`: (argv, None) to run, or (None, why not) when nothing
    can be flashed (no tool installed, nothing to flash, an emulator-only board). [flash] tools lists
    the board's tools in order of preference; the first installed one is used, or `tool`."""
    notes = B.flash.get("notes", "")
    tools = B.flash.get("tools") or [B.flash.get("tool", "none")]
    if tool is not None and tool not in tools:
        raise TslError(f"--tool {tool}: {B.name} is flashed with {', '.join(tools)}")
    if tools == ["esptool"]:
        args = Path(out).resolve() / "espidf" / "build" / "flasher_args.json"
        if not args.is_file():
            raise TslError(f"{args.parent.parent}: not built yet; run `cd {args.parent.parent} && idf.py set-target "
                           f"{B.target.get('espidf_target', B.name)} && idf.py build`, then flash again")
        fa = json.loads(args.read_text())
        fs = fa.get("flash_settings", {})
        files = sorted(fa["flash_files"].items(), key=lambda kv: int(kv[0], 16))
        argv = [sys.executable, "-m", "esptool", "--chip", fa.get("extra_esptool_args", {}).get("chip", B.name),
                "--port", _need_port(port, "esptool"), "--baud", str(B.flash.get("baud", 460800)), "write-flash",
                "--flash-mode", fs.get("flash_mode", "dio"), "--flash-size", fs.get("flash_size", "detect"),
                "--flash-freq", fs.get("flash_freq", "80m")]
        for off, f in files:
            argv += [off, str(args.parent / f)]
        return argv, None
    if tools == ["uf2"] and image is not None:
        return _uf2_plan(B, Path(image), port)
    if image is None or tools == ["none"]:
        return None, notes or f"board {B.name}: no flashing tool (flash tool = {tools[0]!r})"
    wanted = [t for t in ([tool] if tool else tools) if t in FLASH_TOOLS]
    if not wanted:                # scp and the like: steps only
        return None, notes
    usable = [t for t in wanted if _installed(t)]
    if not usable:
        how = "; ".join(f"{t}: {FLASH_TOOLS[t][2]}" for t in wanted)
        return None, f"no flashing tool installed ({how}). {notes}"
    tool, addr = usable[0], B.flash.get("address", "0x08000000")
    if tool == "stm32loader":     # the chip's UART bootloader: BOOT0 high, reset
        return [sys.executable, "-m", "stm32loader", "-p", _need_port(port, tool), "-b", str(B.flash.get("baud", 115200)),
                "-e", "-w", "-v", "-a", addr, str(image)], None
    if tool == "st-flash":        # ST-LINK over USB
        return ["st-flash", "--reset", "write", str(image), addr], None
    if tool == "openocd":
        return ["openocd", "-f", B.flash.get("openocd_interface", "interface/stlink.cfg"), "-f", B.flash["openocd_target"],
                "-c", f"program {image} {addr} verify reset exit"], None


def _uf2_plan(B, image, port):
    """A UF2 image goes onto the boot ROM's USB drive (--port: where it is mounted, checked by its
    INFO_UF2.TXT) or through picotool (no --port; the chip in BOOTSEL mode, or running a pico-sdk
    program that listens for picotool's reset)."""
    drive = B.flash.get("drive", "the UF2 drive")
    from . import uf2
    if image.suffix != ".uf2":
        raise TslError(f"--image {image}: {B.name} takes a .uf2 file (tinyslm build writes app.uf2)")
    missing = [k for k in ("uf2_family_id", "uf2_flash") if k not in B.flash]
    if missing:
        raise TslError(f"{B.path}: [flash] has no {', '.join(missing)}; a UF2 board needs its family id and flash range")
    fam, pages = uf2.read(image.read_bytes(), str(image))
    lo, hi = (int(a, 0) for a in B.flash["uf2_flash"])
    if fam != int(B.flash["uf2_family_id"], 0):
        raise TslError(f"{image}: UF2 family 0x{fam:08x}; {B.name}'s boot ROM takes {B.flash['uf2_family_id']}")
    if not all(lo <= a and a + uf2.PAGE <= hi for a in pages):
        raise TslError(f"{image}: pages outside {B.name}'s flash 0x{lo:08x}..0x{hi:08x}")
    if port:
        d = Path(port)
        info = d / "INFO_UF2.TXT"
        if not d.is_dir():
            return None, (f"--port {port}: not a mounted drive; give the folder where {drive} is mounted "
                          f"(hold BOOTSEL while plugging the board in), or no --port to use picotool; image: {image}")
        if not info.is_file() or info.stat().st_size > 4096:
            return None, f"--port {port}: no INFO_UF2.TXT, so not a UF2 boot drive ({drive}); image: {image}"
        want = B.flash.get("uf2_board_id")
        ids = [ln.split(":", 1)[1].strip() for ln in info.read_text(errors="replace").splitlines()
               if ln.lower().startswith("board-id:")]
        if want and ids and want not in ids:
            return None, f"--port {port}: the drive is a {ids[0]}, not a {want} ({B.name}); image: {image}"
        return [sys.executable, "-m", "tinyslm.uf2", str(image), str(d)], None
    if not _installed("uf2"):
        return None, (f"no --port and picotool is not installed ({FLASH_TOOLS['uf2'][2]}, e.g. --port "
                      f"/media/$USER/{drive}); image: {image}")
    return ["picotool", "load", "-x", str(image)], None


def _need_port(port, tool):
    if not port:
        raise TslError(f"--port: {tool} needs the serial port of the chip's bootloader, e.g. /dev/ttyUSB0")
    return port
