"""Build-system packages written beside the Makefile, so the model drops into a project as a library:
CMake (add_subdirectory and install/find_package, target tinyslm::model; the same CMakeLists.txt is an
ESP-IDF component), idf_component.yml, a Zephyr module (zephyr/), a PlatformIO library.json and an
Arduino library (arduino/tinyslm_model: library.properties and src/, the one layout Arduino builds).
Each compiles the same sources with the numerics flags that bit-exactness needs; the board's own
flags are an option, since the kernels pick their ISA path from the compiler's macros."""
import json
import os
import shutil
from pathlib import Path

import jinja2

from . import __version__
from .units import human_bytes

TEMPLATES = Path(__file__).resolve().parent.parent / "codegen_templates" / "packages"
NUMERICS_FLAGS = ["-ffp-contract=off", "-fno-fast-math"]
ARCH_PREFIXES = ("-mcpu=", "-march=", "-mtune=", "-mfpu=", "-mfloat-abi=", "-mabi=", "-mthumb", "-mlongcalls")
COMPONENT = "tinyslm_model"
ARDUINO = Path("arduino") / COMPONENT
URL = "https://pypi.org/project/tinyslm/"
PUBLIC_HEADERS = ["model/tsl_model.h", "runtime/tsl_sampler.h"]


def write(out, man, board):
    """Write every package file into the build folder `out` (being compiled); -> their paths."""
    out = Path(out)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    m = man["model"]
    ctx = dict(version=__version__, board=board.name, component=COMPONENT, sources=man["sources"],
               numerics_flags=NUMERICS_FLAGS, public_headers=PUBLIC_HEADERS, url=URL,
               arch_flags=[f for f in board.toolchain.get("cflags", []) if f.startswith(ARCH_PREFIXES)],
               description=f"{m['family']} language model, {m['n_params'] / 1e6:.2f} M parameters, {m['weights']} "
                           f"weights, compiled by tinyslm",
               idf_targets=[board.target["espidf_target"]] if board.target.get("espidf_target") else [],
               source=Path(man["source"]).name, params=f"{m['n_params']:,}",
               weights_kib=f"{man['weights']['bytes'] / 1024:.0f}", arena_bytes=man["memory"]["arena_bytes"],
               kv_bytes=man["memory"]["kv_bytes"], arduino_name=COMPONENT)
    written = []
    for tpl, dst in (("CMakeLists.txt.j2", "CMakeLists.txt"), ("idf_component.yml.j2", "idf_component.yml"),
                     ("zephyr/module.yml.j2", "zephyr/module.yml"), ("zephyr/CMakeLists.txt.j2", "zephyr/CMakeLists.txt"),
                     ("zephyr/Kconfig.j2", "zephyr/Kconfig"), ("library.properties.j2", str(ARDUINO / "library.properties"))):
        (out / dst).parent.mkdir(parents=True, exist_ok=True)
        (out / dst).write_text(env.get_template(tpl).render(**ctx))
        written.append(out / dst)
    (out / "library.json").write_text(json.dumps(platformio_manifest(ctx), indent=2) + "\n")
    written.append(out / "library.json")
    written += _arduino_sources(out, man)
    return written


def platformio_manifest(ctx):
    return {
        "name": "tinyslm-model", "version": ctx["version"], "description": ctx["description"],
        "keywords": "tinyslm, language model, llm, int8, onnx", "authors": [{"name": "tinyslm"}],
        "license": "Apache-2.0", "homepage": ctx["url"], "frameworks": "*", "platforms": "*",
        "build": {"srcDir": ".", "includeDir": "model",
                  "srcFilter": ["-<*>", "+<model/*.c>", "+<model/*.S>", "+<runtime/*.c>"],
                  "flags": ["-I model", "-I runtime", *ctx["numerics_flags"]]},
        "export": {"exclude": [".tinyslm", "app", "arduino", "zephyr", "espidf", "pico"]},
    }


def _arduino_sources(out, man):
    """arduino/tinyslm_model/src: the model's sources and headers, flat (the blob hard-linked where the
    filesystem allows, not copied); the Arduino builder compiles every file of src/."""
    src = out / ARDUINO / "src"
    src.mkdir(parents=True, exist_ok=True)
    files = [p for d in ("model", "runtime") for p in sorted((out / d).iterdir()) if p.is_file()]
    made = []
    for p in files:
        dst = src / p.name
        try:
            os.link(p, dst)
        except OSError:
            shutil.copyfile(p, dst)
        made.append(dst)
    (src / "tinyslm_numerics_flags.txt").write_text(
        "Compile this library with " + " ".join(NUMERICS_FLAGS) + " (Arduino: add them to compiler.c.extra_flags "
        "in platform.local.txt), or its results differ from tinyslm's reference.\n"
        f"Weights: {human_bytes(man['weights']['bytes'])} in tsl_weights.bin, included by tsl_weights.S.\n")
    return made + [src / "tinyslm_numerics_flags.txt"]
