"""tinyslm flash against the real flashing tools' behaviour, without hardware: the arguments it
builds are accepted by esptool and stm32loader themselves (they get as far as opening the port),
offsets and files come from ESP-IDF's flasher_args.json, and boards without a tool get steps."""
import json
import subprocess

import pytest

from conftest import compiled_example, tinyslm

NO_PORT = "/dev/ttyTSL-does-not-exist"




@pytest.fixture(scope="module")
def build(example, tmp_path_factory):
    return compiled_example(tmp_path_factory, 64, "fl")


def fake_idf_build(out, chip):
    """What `idf.py build` leaves behind: images and flasher_args.json (ESP-IDF's own layout)."""
    b = out / "espidf" / "build"
    (b / "bootloader").mkdir(parents=True, exist_ok=True)
    (b / "partition_table").mkdir(exist_ok=True)
    for f in ("bootloader/bootloader.bin", "partition_table/partition-table.bin", "tinyslm.bin"):
        (b / f).write_bytes(b"\xe9" + bytes(255))
    (b / "flasher_args.json").write_text(json.dumps({
        "write_flash_args": ["--flash_mode", "dio", "--flash_size", "4MB", "--flash_freq", "80m"],
        "flash_settings": {"flash_mode": "dio", "flash_size": "4MB", "flash_freq": "80m"},
        "flash_files": {"0x10000": "tinyslm.bin", "0x0": "bootloader/bootloader.bin",
                        "0x8000": "partition_table/partition-table.bin"},
        "extra_esptool_args": {"after": "hard_reset", "before": "default_reset", "chip": chip}}))


@pytest.mark.parametrize("board", ["esp32c3", "esp32s3", "esp32"])
def test_esptool(build, board, tmp_path):
    import shutil
    pytest.importorskip("esptool")
    build = shutil.copytree(build, tmp_path / "build")
    r = tinyslm("flash", build, "--board", board, "--port", NO_PORT)
    assert r.returncode == 2 and "idf.py set-target " + board in r.stderr          # not built: the steps
    assert (build / "espidf" / "main" / "CMakeLists.txt").is_file()
    fake_idf_build(build, board)
    r = tinyslm("flash", build, "--board", board, "--port", NO_PORT, "--dry-run")
    assert r.returncode == 0, r.stderr
    argv = r.stdout.split()
    assert argv[1:3] == ["-m", "esptool"] and argv[argv.index("--chip") + 1] == board
    i = argv.index("write-flash")
    pairs = argv[i + 7:]
    assert pairs[0::2] == ["0x0", "0x8000", "0x10000"] and pairs[1::2][2].endswith("tinyslm.bin")
    # the real esptool takes these arguments and stops only at the missing port
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    err = (r.stdout + r.stderr).lower()
    assert NO_PORT.lower() in err and "usage:" not in err and "invalid" not in err, err


def test_stm32loader(build, tmp_path):
    pytest.importorskip("stm32loader")
    image = tmp_path / "app.bin"
    image.write_bytes(bytes(1024))
    r = tinyslm("flash", build, "--board", "nucleo-f446re", "--port", NO_PORT, "--image", image, "--dry-run",
                "--tool", "stm32loader")
    argv = r.stdout.split()
    assert argv[1:3] == ["-m", "stm32loader"] and argv[argv.index("-a") + 1] == "0x08000000"
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    err = r.stdout + r.stderr
    assert NO_PORT in err and "usage:" not in err.lower(), err


def test_uf2_prints_steps(build):
    r = tinyslm("flash", build, "--board", "rp2350", "--port", NO_PORT)
    assert r.returncode == 1 and "not flashed" in r.stderr and ".uf2" in r.stderr    # not flashed: non-zero
