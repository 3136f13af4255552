"""Bad input: one line on stderr naming what is wrong, exit status 2, no traceback, no build dir."""
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import ROOT


def tinyslm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinyslm", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT)


def check_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _save(graph, path):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    onnx.save(m, path)
    return path


def test_not_onnx(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_text("this is not a model\n" * 10)
    check_error(tinyslm("compile", p, "-o", tmp_path / "out"), str(p), "not an ONNX model")
    assert not (tmp_path / "out").exists()


def test_missing_file(tmp_path):
    check_error(tinyslm("compile", tmp_path / "nope.onnx", "-o", tmp_path / "out"), "nope.onnx", "no such file")


def test_truncated(models, tmp_path):
    data = models["llama"].read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    check_error(tinyslm("compile", p, "-o", tmp_path / "out"), "cut.onnx")
    assert not (tmp_path / "out").exists()


def test_unsupported_op(tmp_path):
    x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "T"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "T"])
    nodes = [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT, name="cast0"),
             helper.make_node("Custom", ["f"], ["y"], name="weird_op", domain="com.example")]
    p = _save(helper.make_graph(nodes, "g", [x], [y]), tmp_path / "u.onnx")
    check_error(tinyslm("compile", p, "-o", tmp_path / "out"), "u.onnx", "weird_op", "Custom")


def test_not_a_decoder(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.5] * 16)
    p = _save(helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w]),
              tmp_path / "mlp.onnx")
    check_error(tinyslm("compile", p, "-o", tmp_path / "out"), "mlp.onnx", "not a decoder LM")


def test_max_seq_beyond_model(models, tmp_path):
    check_error(tinyslm("compile", models["gpt2"], "--max-seq", 100000, "-o", tmp_path / "out"),
                "--max-seq 100000", "positions")
    assert not (tmp_path / "out").exists()


def test_int4_group_does_not_divide(tmp_path):
    torch_models = pytest.importorskip("torch_models")
    p, _ = torch_models.build_llama_onnx(tmp_path / "odd.onnx", dim=48, n_heads=4, n_kv_heads=2, hidden=72)
    check_error(tinyslm("compile", p, "--weights", "int4", "-o", tmp_path / "out"), "divisible by 32")


@pytest.mark.parametrize("args, needles", [
    (["--int5"], ["--int5", "--weights mixed", "--weights int5"]),
    (["--bytes-per-weight", "0.62"], ["--bytes-per-weight", "--weights mixed"]),
    (["--weights", "mixed", "--bytes-per-weight", "0.4"], ["--bytes-per-weight", "0.4", "[0.5, 1.2]"]),
    (["--weights", "mixed", "--bytes-per-weight", "0.55"], ["--weights mixed", "all-int4", "0.55 bytes per weight"])])
def test_mixed_budget(args, needles, tmp_path):
    check_error(tinyslm("compile", ROOT / "examples" / "tiny_llama.onnx", *args, "-o", tmp_path / "out"), *needles)
    assert not (tmp_path / "out").exists()


def test_verify_not_a_build(tmp_path):
    check_error(tinyslm("verify", tmp_path), "not a tinyslm build directory")


def test_bad_ids(models, tmp_path):
    check_error(tinyslm("logits", models["llama"], "--ids", "1,x", "--out", tmp_path / "l.npy"), "--ids")


def test_help():
    r = tinyslm("--help")
    assert r.returncode == 0
    for cmd in ("demo", "compile", "verify", "run", "logits", "info", "eval"):
        assert cmd in r.stdout


def test_demo_from_the_readme(tmp_path):
    """The README's first command (after the install)."""
    r = tinyslm("demo", "-o", tmp_path / "demo")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK host: 64 steps bit-exact" in r.stdout and "Once upon a time" in r.stdout
    assert "activation arena" in r.stdout and "Fit per board" in r.stdout


def test_fused_norm_over_another_axis(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])
    g = helper.make_tensor("g", TensorProto.FLOAT, [8], [1.0] * 8)
    n = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], name="norm0", axis=1, epsilon=1e-5)
    p = _save(helper.make_graph([n], "g", [x], [y], [g]), tmp_path / "m.onnx")
    check_error(tinyslm("compile", p, "-o", tmp_path / "out"), str(p), "norm0", "SimplifiedLayerNormalization",
                "axis 1")
    assert not (tmp_path / "out").exists()
