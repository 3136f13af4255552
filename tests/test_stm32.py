"""STM32 boards, from their TOML: every image builds for its chip (vectors at 0x08000000, stack at the
top of SRAM, fits the flash); the clock code writes the registers the reference manuals ask for
(on the host, against simulated registers, with and without an oscillator); the nucleo-f446re image
boots under qemu's STM32F405 (netduinoplus2, which models no RCC: the start-up must give up on the
HSE and say so) and answers identify, run and verify --port bit-exact with an int4 model in the
chip's 512 KiB / 128 KiB; tinyslm flash runs the board's tool or names what to install, and exits
non-zero whenever it did not flash."""
import os
import re
import struct
import subprocess
import sys
import time

import pytest

from conftest import ROOT, tinyslm
from conftest_tools import require_tool
from tinyslm import procs
from tinyslm.boards import list_boards, load_board
from tinyslm.firmware import Emulation, _port_open, build_firmware, emulator_with_serial, free_port
from tinyslm.hostsim import HostModel
from tinyslm.serialio import Device

STARTUP = "firmware/targets/stm32"
STM32 = [n for n in list_boards() if load_board(n).target.get("startup") == STARTUP]
NO_PORT = "/dev/ttyTSL-does-not-exist"
HSI = {"TSL_STM32_RCC_F4": 16_000_000, "TSL_STM32_RCC_H7": 64_000_000}   # HSI out of reset: RM0090, RM0433


def test_the_boards_exist():
    assert {"nucleo-f446re", "stm32f746-disco", "stm32h743", "stm32f4-discovery", "blackpill-f411ce",
            "netduinoplus2"} <= set(STM32)


@pytest.fixture(scope="module")
def build(example, tmp_path_factory):
    """The bundled example in int4 with a 64-token context (491,552 B of weights, for 512 KiB of
    flash), compiled for nucleo-f446re: it builds for that board and its stand-in netduinoplus2."""
    from tinyslm.pipeline import compile_model
    out = tmp_path_factory.mktemp("stm32") / "build"
    compile_model(example, out, "nucleo-f446re", 64, "int4", quiet=True)
    return out


@pytest.fixture(scope="module")
def host_build(example, tmp_path_factory):
    """The same, compiled for the host: it builds for any board."""
    from tinyslm.pipeline import compile_model
    out = tmp_path_factory.mktemp("stm32h") / "build"
    compile_model(example, out, "host", 64, "int4", quiet=True)
    return out


# ---- the clock tree, register by register ----

def _field(v, lo, width):
    return (v >> lo) & ((1 << width) - 1)


def _expected_f4(d, hz):
    """RM0390, RM0385 (RCC, PWR, FLASH): what RCC, PWR, FLASH and GPIO hold after the switch to the PLL."""
    ppre = {1: 0, 2: 4, 4: 5, 8: 6, 16: 7}
    hpre = {1: 0, 2: 8, 4: 9, 8: 10, 16: 11}
    pll = (d["TSL_STM32_PLL_M"] | d["TSL_STM32_PLL_N"] << 6 | (d["TSL_STM32_PLL_P"] // 2 - 1) << 16 | 1 << 22
           | d["TSL_STM32_PLL_Q"] << 24 | 0x20000000)                    # PLLR/reserved bits kept from reset
    cfgr = 2 | 2 << 2 | hpre[d["TSL_STM32_AHB_DIV"]] << 4 | ppre[d["TSL_STM32_APB1_DIV"]] << 10 \
        | ppre[d["TSL_STM32_APB2_DIV"]] << 13
    pwr = d["TSL_STM32_VOS"] << 14 | (3 << 16 if d.get("TSL_STM32_OVERDRIVE") else 0)
    return {0x40023804: pll, 0x40023808: cfgr, 0x40007000: pwr, 0x40023C00: int(str(d["TSL_STM32_FLASH_ACR"]), 0)}, \
        0x40020000, 0x40023830


def _expected_h7(d, hz):
    """RM0433 (RCC): PLL1 from HSE, dividers, D1/D2/D3 prescalers, flash latency."""
    ppre = {1: 0, 2: 4, 4: 5, 8: 6, 16: 7}
    hpre = {1: 0, 2: 8, 4: 9, 8: 10, 16: 11}
    ref = d["TSL_STM32_HSE_HZ"] // d["TSL_STM32_PLL_M"]
    rge = 3 if ref >= 8e6 else 2 if ref >= 4e6 else 1 if ref >= 2e6 else 0
    divr = (d["TSL_STM32_PLL_N"] - 1) | (d["TSL_STM32_PLL_P"] - 1) << 9 | (d["TSL_STM32_PLL_Q"] - 1) << 16 \
        | (d.get("TSL_STM32_PLL_R", 2) - 1) << 24
    apb1, apb2 = ppre[d["TSL_STM32_APB1_DIV"]], ppre[d["TSL_STM32_APB2_DIV"]]
    return {0x58024428: 2 | d["TSL_STM32_PLL_M"] << 4, 0x5802442C: 0x01FF0000 | rge << 2, 0x58024430: divr,
            0x58024410: 3 | 3 << 3, 0x58024418: hpre[d["TSL_STM32_AHB_DIV"]] | apb1 << 4,
            0x5802441C: apb1 << 4 | apb2 << 8, 0x58024420: apb1 << 4,
            0x52002000: int(str(d["TSL_STM32_FLASH_ACR"]), 0)}, 0x58020000, 0x580244E0


def _regsim(B, tmp_path, no_hse):
    cc = require_tool("cc", "gcc")
    d = B.target["defines"]
    exe = tmp_path / "regsim"
    r = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", f"-I{ROOT / STARTUP}", *[f"-D{k}={v}" for k, v in d.items()],
                        *(["-DSIM_NO_HSE"] if no_hse else []), str(ROOT / "tests" / "stm32_regsim.c"), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60).stdout
    problem = re.search(r"^problem (.*)$", out, re.M).group(1)
    clocks = list(map(int, re.search(r"^clocks (.*)$", out, re.M).group(1).split()))
    regs = {int(a, 16): int(v, 16) for a, v in re.findall(r"^reg (\S+) (\S+)$", out, re.M)}
    return problem, clocks, regs


@pytest.mark.parametrize("name", STM32)
@pytest.mark.parametrize("no_hse", [False, True], ids=["hse", "no-hse"])
def test_clock_registers(name, no_hse, tmp_path):
    B = load_board(name)
    d = {k: (int(v, 0) if isinstance(v, str) else v) for k, v in B.target["defines"].items()}
    layout = next(k for k in HSI if k in d)
    problem, (sysclk, hclk, pclk1, pclk2, uart_hz), regs = _regsim(B, tmp_path, no_hse)
    if no_hse:
        assert problem == "HSE did not start" and {sysclk, hclk, pclk1, pclk2, uart_hz} == {HSI[layout]}
    else:
        assert problem == "-" and sysclk == B.clock_hz, (problem, sysclk)
        assert hclk == sysclk // d["TSL_STM32_AHB_DIV"]
        assert (pclk1, pclk2) == (hclk // d["TSL_STM32_APB1_DIV"], hclk // d["TSL_STM32_APB2_DIV"])
        want, _, _ = (_expected_f4 if layout == "TSL_STM32_RCC_F4" else _expected_h7)(d, B.clock_hz)
        for addr, v in want.items():
            assert regs.get(addr) == v, f"{name}: register 0x{addr:08x} is 0x{regs.get(addr, 0):08x}, RM says 0x{v:08x}"
    assert uart_hz == (pclk2 if d["TSL_STM32_UART_BUS"] == 2 else pclk1)
    # the USART's clock and pins, on either path: AF mode, AF number, RX pulled up
    _, gpio0, gpioen = (_expected_f4 if layout == "TSL_STM32_RCC_F4" else _expected_h7)(d, 0)
    rcc = gpioen - (0x30 if layout == "TSL_STM32_RCC_F4" else 0xE0)
    assert _field(regs[rcc + d["TSL_STM32_UART_EN_REG"]], d["TSL_STM32_UART_EN_BIT"], 1) == 1
    for port, pin, pull in ((d["TSL_STM32_TX_PORT"], d["TSL_STM32_TX_PIN"], 0), (d["TSL_STM32_RX_PORT"], d["TSL_STM32_RX_PIN"], 1)):
        g = gpio0 + 0x400 * port
        assert _field(regs[gpioen], port, 1) == 1
        assert _field(regs[g], 2 * pin, 2) == 2 and _field(regs[g + 0x0C], 2 * pin, 2) == pull
        assert _field(regs[g + 0x20 + 4 * (pin // 8)], 4 * (pin % 8), 4) == d["TSL_STM32_UART_AF"]


# USART register maps: RM0390 (F446: SR, DR, BRR, CR1), RM0385 and RM0433 (F7, H7: CR1, CR3, BRR, ISR, RDR, TDR)
USART = {"stm32_sr": dict(status=0x00, rx=0x04, tx=0x04, brr=0x08, cr1=0x0C, on=1 << 13 | 1 << 3 | 1 << 2),
         "stm32_isr": dict(status=0x1C, rx=0x24, tx=0x28, brr=0x0C, cr1=0x00, on=1 << 0 | 1 << 3 | 1 << 2,
                           cr3=(0x08, 1 << 12))}


@pytest.mark.parametrize("name", STM32)
def test_usart_registers(name, tmp_path):
    B = load_board(name)
    cc = require_tool("cc", "gcc")
    u, d = USART[B.target["uart"]], B.target["defines"]
    _, (*_, clock), _ = _regsim(B, tmp_path, False)
    exe = tmp_path / "uartsim"
    r = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", f"-I{ROOT / 'firmware' / 'uart'}",
                        f"-DTSL_UART_{B.target['uart'].upper()}", f"-DTSL_UART_BAUD={d['TSL_UART_BAUD']}",
                        f"-DCLOCK_HZ={clock}", f"-DSTATUS_OFF={u['status']}", f"-DRX_OFF={u['rx']}",
                        str(ROOT / "tests" / "stm32_uartsim.c"), "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60).stdout
    regs = {int(a, 16): int(v, 16) for a, v in re.findall(r"^reg (\S+) (\S+)$", out, re.M)}
    assert re.search(r"^got 90$", out, re.M), out                           # 0x5A, the 8 data bits
    assert regs[u["brr"]] == round(clock / d["TSL_UART_BAUD"])               # 16x oversampling
    assert regs[u["cr1"]] == u["on"] and regs[u["tx"]] == 0x22
    if "cr3" in u:
        assert regs[u["cr3"][0]] == u["cr3"][1]


# ---- images for the chips ----

def _ram_top(B):
    ld = (ROOT / B.target["linker_script"]).read_text()
    m = re.search(r"SRAM \(rwx\) : ORIGIN = (0x[0-9A-Fa-f]+), LENGTH = (\d+)([KM])", ld)
    return int(m.group(1), 16) + int(m.group(2)) * {"K": 1024, "M": 1 << 20}[m.group(3)]


@pytest.mark.parametrize("name", STM32)
def test_image_for_the_chip(host_build, name):
    B, build = load_board(name), host_build
    require_tool(B.toolchain["cc"], B.toolchain.get("install", ""))
    res = build_firmware(build, name, log=lambda m: None)
    binf = res["bin"]
    assert res["elf"].is_file() and binf is not None and binf.is_file()
    img = binf.read_bytes()
    assert len(img) <= B.flash_bytes
    sp, reset = struct.unpack_from("<2I", img)                  # the vector table at 0x08000000
    assert sp == _ram_top(B) and reset & 1 and 0x08000000 < reset < 0x08000000 + len(img)
    # the model's weights are in the image (flash), with their header
    blob = (build / "model" / "tsl_weights.bin").read_bytes()
    assert img.find(blob[:4096]) > 0


def test_cli_build_for_the_chip(build):
    r = tinyslm("build", build, "--board", "nucleo-f446re")
    assert r.returncode == 0, r.stderr
    m = re.search(r"flash ([\d.]+) KiB of 512 KiB .*weights 474 KiB", r.stdout)
    assert m and float(m.group(1)) <= 512 and "raw binary" in r.stdout, r.stdout


# ---- under qemu's STM32F405 ----

def host_tokens(build, ids, n, temperature, top_p, seed):
    from tinyslm.generation import generate
    return generate(HostModel(build), ids, n, temperature, top_p, seed, 64, lambda t: None)


def _require_qemu():
    E = load_board("netduinoplus2")
    require_tool(E.toolchain["cc"], E.toolchain.get("install", ""))
    require_tool(E.emulator["cmd"][0], E.emulator.get("install", ""))
    return E


def test_stand_in_answers_over_its_uart(build):
    E = _require_qemu()
    elf = build_firmware(build, E.name, log=lambda m: None)["elf"]
    port = free_port()
    with Emulation(E, elf, port):
        url = f"socket://127.0.0.1:{port}"
        with Device(url) as dev:
            info = dev.identify()
            assert info["board"] == E.name and info["model_status"] == 0
            assert info["cycles_unit"] == "systick cycles@16MHz (HSI: HSE did not start)"   # qemu has no RCC
            ids = [0, 48, 79, 317]
            got = list(dev.generate(ids, 16, 0.8, 0.9, 7))
        want = host_tokens(build, ids, 16, 0.8, 0.9, 7)
        assert [t for t, _ in got] == want, (got, want)
        assert all(c > 0 for _, c in got), got
        r = tinyslm("verify", build, "--port", url, "--steps", 64)
    assert r.returncode == 0 and f"OK {E.name}: 64 steps bit-exact on the device" in r.stdout, r.stdout + r.stderr


def test_nucleo_image_boots_under_qemu(build):
    """The nucleo-f446re image itself, unchanged: qemu's second USART (USART2, the Nucleo's VCP)
    on the socket, the first one idle."""
    E = _require_qemu()
    elf = build_firmware(build, "nucleo-f446re", log=lambda m: None)["elf"]
    port = free_port()
    cmd = emulator_with_serial(E, elf, port)
    i = cmd.index("-serial")
    p = procs.popen(cmd[:i] + ["-serial", "null"] + cmd[i:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t0 = time.time()
        while not _port_open(port):
            assert p.poll() is None and time.time() - t0 < 10, p.stderr.read().decode()[-300:]
            time.sleep(0.05)
        url = f"socket://127.0.0.1:{port}"
        r = tinyslm("identify", "--port", url)
        assert r.returncode == 0 and re.search(r"board\s+nucleo-f446re", r.stdout), r.stdout + r.stderr
        assert "HSE did not start" in r.stdout
        r = tinyslm("verify", build, "--port", url, "--steps", 64)
        assert r.returncode == 0 and "OK nucleo-f446re: 64 steps bit-exact on the device" in r.stdout, r.stdout + r.stderr
    finally:
        procs.stop(p)


# ---- tinyslm flash ----

def _fake_tool(d, name, status):
    """A stand-in for a flashing program: records its arguments, exits with `status`."""
    d.mkdir(exist_ok=True)
    f = d / name
    f.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {d / (name + '.args')}\nexit {status}\n")
    f.chmod(0o755)
    return d / (name + ".args")


def _flash(*args, path):
    env = dict(os.environ, PATH=path)
    return subprocess.run([sys.executable, "-m", "tinyslm", "flash", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, env=env)


def test_flash_stm32loader_takes_the_built_image(build):
    pytest.importorskip("stm32loader")
    require_tool(load_board("nucleo-f446re").toolchain["cc"])
    r = tinyslm("flash", build, "--board", "nucleo-f446re", "--tool", "stm32loader", "--port", NO_PORT, "--dry-run")
    assert r.returncode == 0, r.stderr
    argv = r.stdout.split()
    assert argv[1:3] == ["-m", "stm32loader"] and argv[argv.index("-a") + 1] == "0x08000000"
    assert argv[-1].endswith("fw-nucleo-f446re/tinyslm.bin")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)   # the real tool, stopped by the port
    assert r.returncode != 0 and NO_PORT in r.stdout + r.stderr and "usage:" not in (r.stdout + r.stderr).lower()
    r = tinyslm("flash", build, "--board", "nucleo-f446re", "--tool", "stm32loader", "--port", NO_PORT)
    assert r.returncode != 0 and "not flashed" in r.stderr, r.stderr


def test_flash_st_flash_and_openocd(build, tmp_path):
    bindir = tmp_path / "bin"
    image = tmp_path / "app.bin"
    image.write_bytes(bytes(64))
    path = f"{bindir}{os.pathsep}{os.environ['PATH']}"
    args = _fake_tool(bindir, "st-flash", 0)
    r = _flash(build, "--board", "nucleo-f446re", "--image", image, "--tool", "st-flash", path=path)
    assert r.returncode == 0 and "nucleo-f446re: flashed" in r.stdout, r.stderr
    assert args.read_text().split() == ["--reset", "write", str(image), "0x08000000"]
    _fake_tool(bindir, "st-flash", 1)                            # the tool fails: so does tinyslm
    r = _flash(build, "--board", "nucleo-f446re", "--image", image, "--tool", "st-flash", path=path)
    assert r.returncode == 2 and "st-flash failed with status 1" in r.stderr and "not flashed" in r.stderr
    args = _fake_tool(bindir, "openocd", 0)
    r = _flash(build, "--board", "stm32h743", "--image", image, "--tool", "openocd", path=path)
    assert r.returncode == 0, r.stderr
    assert args.read_text().splitlines() == ["-f", "interface/stlink.cfg", "-f", "target/stm32h7x.cfg", "-c",
                                            f"program {image} 0x08000000 verify reset exit"]


def test_flash_names_what_to_install(build, tmp_path):
    image = tmp_path / "app.bin"
    image.write_bytes(bytes(64))
    empty = tmp_path / "empty"
    empty.mkdir()
    for tool, how in (("st-flash", "apt install stlink-tools"), ("openocd", "apt install openocd")):
        r = _flash(build, "--board", "stm32f746-disco", "--image", image, "--tool", tool, path=str(empty))
        assert r.returncode == 1 and "not flashed" in r.stderr and how in r.stderr, r.stderr
    r = _flash(build, "--board", "nucleo-f446re", "--image", image, "--tool", "esptool", path=str(empty))
    assert r.returncode == 2 and "--tool esptool" in r.stderr
    r = _flash(build, "--board", "netduinoplus2", "--image", image, path=str(empty))   # emulator only
    assert r.returncode == 1 and "not flashed" in r.stderr


def test_flash_picks_the_first_installed_tool(build, tmp_path):
    """The Black Pill lists the ROM bootloader first, the Nucleo its ST-LINK (when installed)."""
    pytest.importorskip("stm32loader")
    image = tmp_path / "app.bin"
    image.write_bytes(bytes(64))
    bindir = tmp_path / "bin"
    _fake_tool(bindir, "st-flash", 0)
    for board, first in (("blackpill-f411ce", "stm32loader"), ("nucleo-f446re", "st-flash")):
        r = _flash(build, "--board", board, "--image", image, "--port", NO_PORT, "--dry-run", path=str(bindir))
        assert r.returncode == 0 and first in r.stdout.split()[:3], r.stdout + r.stderr
