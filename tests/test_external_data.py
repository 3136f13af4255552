"""Weights in a separate file (model.onnx + model.onnx.data, as torch writes them): compiled from any
working directory; external-data locations that leave the model's folder, or offsets and lengths
that do not fit the data file, are one-line errors before any byte is read."""
import os

import numpy as np
import onnx
import pytest

from conftest import ROOT
from test_errors import check_error, tinyslm

EXAMPLE = ROOT / "examples" / "tiny_llama.onnx"


@pytest.fixture
def external(tmp_path):
    """The bundled example with every initializer of 1 KiB or more in model.onnx.data."""
    d = tmp_path / "model"
    d.mkdir()
    m = onnx.load(str(EXAMPLE))
    onnx.save(m, str(d / "model.onnx"), save_as_external_data=True, location="model.onnx.data", size_threshold=1024)
    return d / "model.onnx"


def edit(path, fn):
    """Apply fn to the first external initializer's {key: entry} and save the graph (data untouched)."""
    m = onnx.load(str(path), load_external_data=False)
    t = next(t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    fn({e.key: e for e in t.external_data}, t)
    path.write_bytes(m.SerializeToString())
    return t.name


def test_compiles_from_any_directory(external, tmp_path):
    assert (external.parent / "model.onnx.data").stat().st_size > 100_000
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = tinyslm("compile", external, "--board", "host", "-o", tmp_path / "b", "--max-seq", 32, cwd=other)
    assert r.returncode == 0, r.stderr
    r2 = tinyslm("compile", EXAMPLE, "--board", "host", "-o", tmp_path / "b2", "--max-seq", 32)
    assert r2.returncode == 0, r2.stderr
    blob = lambda b: (b / "model" / "tsl_weights.bin").read_bytes()
    assert blob(tmp_path / "b") == blob(tmp_path / "b2")
    # relative path from another directory too
    r3 = tinyslm("inspect", os.path.relpath(external, other), cwd=other)
    assert r3.returncode == 0 and "llama" in r3.stdout, r3.stderr


@pytest.mark.parametrize("case,needle", [
    ("absolute", "no absolute path"), ("dotdot", "no absolute path, no '..'"), ("symlink_out", "outside the model's folder"),
    ("missing", "is missing"), ("past_end", "does not fit"), ("short_length", "does not fit"),
    ("bad_offset", "not integers"), ("directory", "not a regular file")])
def test_bad_external_data(external, tmp_path, case, needle):
    d = external.parent
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * (1 << 20))
    if case == "absolute":
        edit(external, lambda e, t: setattr(e["location"], "value", str(secret)))
    elif case == "dotdot":
        edit(external, lambda e, t: setattr(e["location"], "value", "../secret.bin"))
    elif case == "symlink_out":
        (d / "link.data").symlink_to(secret)
        edit(external, lambda e, t: setattr(e["location"], "value", "link.data"))
    elif case == "missing":
        edit(external, lambda e, t: setattr(e["location"], "value", "gone.data"))
    elif case == "past_end":
        size = (d / "model.onnx.data").stat().st_size
        edit(external, lambda e, t: setattr(e["offset"], "value", str(size - 4)))
    elif case == "short_length":
        edit(external, lambda e, t: setattr(e["length"], "value", str(int(e["length"].value) - 4)))
    elif case == "bad_offset":
        edit(external, lambda e, t: setattr(e["offset"], "value", "12abc"))
    elif case == "directory":
        (d / "sub").mkdir()
        edit(external, lambda e, t: setattr(e["location"], "value", "sub"))
    check_error(tinyslm("compile", external, "-o", tmp_path / "out"), str(external), needle)
    check_error(tinyslm("inspect", external), str(external), needle)
    assert not (tmp_path / "out").exists()


def test_mapped_not_copied(external):
    """External weights are read-only views of the mapped data file, not copies."""
    from tinyslm import onnxfile
    m = onnxfile.load(external)
    t = max(m.graph.initializer, key=lambda t: np.prod(t.dims))
    a = onnxfile.array(t)
    assert isinstance(a.base, np.memmap) or isinstance(getattr(a.base, "base", None), np.memmap)
    assert not a.flags.writeable and not t.raw_data
