"""Firmware: a compiled project + the serial protocol app -> an image for a board, and the board
run under its emulator with its UART on a local TCP port (the same bytes a USB serial adapter
carries). The UART's kind and address are board facts ([target] uart, uart_base)."""
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import __version__, targets
from .boards import load_board
from .errors import TslError

APP = ["app/tsl_proto.c", "app/tsl_serial_app.c", "app/tsl_uart.c", "app/tsl_app_serial.c"]


def build_firmware(out, board, log=print):
    """-> {elf, bin, sizes}: the serial firmware of project `out` for `board`."""
    out = Path(out).resolve()
    man = json.loads((out / "manifest.json").read_text())
    B = load_board(board)
    uart = B.target.get("uart")
    if not uart:
        raise TslError(f"board {B.name}: no [target] uart in its toml; the serial firmware needs one")
    defines = {"TSL_PROTO_PLATFORM_CYCLES": None, f"TSL_UART_{uart.upper()}": None,
               "TSL_BOARD_NAME": f'"{B.name}"', "TSL_FW_VERSION": f'"tinyslm-{__version__}"'}
    if B.target.get("uart_base"):
        defines["TSL_UART_BASE"] = B.target["uart_base"]
    # `tinyslm load` needs a RAM buffer as large as the weights; boards without room go without
    mem = man["memory"]
    room = B.ram_bytes + B.psram_bytes - mem["arena_bytes"] - mem["kv_bytes"] - 8 * man["model"]["vocab"] - 65536
    if B.ram_bytes and man["weights"]["bytes"] > room:
        defines["TSL_LOAD_BYTES"] = 0
        log(f"  note: {B.name} has no RAM for a second copy of the weights: `tinyslm load` is off in this image")
    srcs = [out / s for s in man["sources"]] + [out / s for s in APP]
    bdir = out / ".tinyslm" / f"fw-{B.name}"
    elf = targets.build(B, srcs, [out / "runtime", out / "model", out / "app"], bdir, defines, name="tinyslm")
    res = dict(elf=elf, bin=None, sizes=_sizes(B, elf))
    objcopy = B.toolchain.get("objcopy")
    if B.kind == "baremetal" and objcopy and shutil.which(objcopy):
        res["bin"] = elf.with_suffix(".bin")
        subprocess.run([objcopy, "-O", "binary", str(elf), str(res["bin"])], check=True)
    return res


def _sizes(B, elf):
    """text / data / bss bytes of an image, from the toolchain's size (or None)."""
    size = B.toolchain.get("objcopy", "").replace("objcopy", "size") or "size"
    if not shutil.which(size):
        return None
    r = subprocess.run([size, "-B", str(elf)], capture_output=True, text=True)
    try:
        text, data, bss = map(int, r.stdout.splitlines()[1].split()[:3])
    except (IndexError, ValueError):
        return None
    return dict(text=text, data=data, bss=bss)


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
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
            self.bridge = None
        else:   # stdio UART: bridge one TCP client to the emulated process
            self.proc = subprocess.Popen(targets.emulator_cmd(B, elf), stdin=subprocess.PIPE,
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
        return self.proc.wait()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
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


def flash_plan(B, image, port):
    """How the family's own tool writes `image` to `B` over `port`: (argv or None, steps text)."""
    tool = B.flash.get("tool", "none")
    notes = B.flash.get("notes", "")
    if tool == "esptool":
        chip = B.flash.get("chip", B.name)
        offset = B.flash.get("offset", "0x0")
        argv = [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud",
                str(B.flash.get("baud", 460800)), "write-flash", "--flash-mode", "dio", offset, str(image)]
        return argv, notes
    if tool == "stm32loader":
        argv = [sys.executable, "-m", "stm32loader", "-p", port, "-b", str(B.flash.get("baud", 115200)),
                "-e", "-w", "-v", "-a", B.flash.get("address", "0x08000000"), str(image)]
        return argv, notes
    return None, notes or f"board {B.name}: no flashing tool (flash tool = {tool!r})"
