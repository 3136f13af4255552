"""Reading an ONNX file: the graph, and its weights inline or in external data files, without
reading anything outside the model's folder and without copying weights that need not be copied.

A model over 2 GB (and every current torch export) keeps its weights in a separate file:
each such initializer carries external_data {location, offset, length}. load() checks each one
before any byte is read:
  location  relative, no `..`, no absolute path; resolved (symlinks followed) it must stay inside
            the model's folder and be a regular file
  offset, length  integers that fit the data file; length = the tensor's byte size
and rewrites location to the checked absolute path, so later readers need no base directory.
array() then maps the file (np.memmap, read-only): weights are paged in as they are read, never
copied into the ModelProto. onnxruntime gets them the same way: session() lifts the weights out
of the graph into inputs and feeds the mapped arrays, which onnxruntime reads in place.
"""
import os
import weakref
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import TslError
from .onnx_check import check_tensors

EXTERNAL = onnx.TensorProto.EXTERNAL
LIFT_BYTES = 1 << 16          # inline initializers at least this large are fed, not embedded, too
_maps = weakref.WeakValueDictionary()   # (path, size, mtime) -> np.memmap of the whole file


def load(path):
    """-> ModelProto with external tensors checked and their locations made absolute."""
    path = Path(path)
    if path.is_dir():
        raise TslError(f"{path}: is a directory, not an ONNX file")
    if not path.is_file():
        raise TslError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # protobuf says little; the length and head say more
        raise TslError(f"{path}: not an ONNX model ({len(data)} bytes, cannot parse: {str(e)[:80]})")
    del data
    if not model.graph.node:
        raise TslError(f"{path}: not an ONNX model (no graph nodes; truncated or another format?)")
    check_tensors(model, path)            # sizes against dims, before anything reads a tensor
    folder = path.absolute().parent.resolve()     # locations are relative to the file as named (a link's folder)
    for t in _tensors(model.graph):
        if t.data_location == EXTERNAL:
            _check_external(t, folder, path)
    return model


def _tensors(graph):
    """Every TensorProto of a graph: initializers and Constant attributes, subgraphs included."""
    yield from graph.initializer
    for n in graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t
            elif a.type == onnx.AttributeProto.TENSORS:
                yield from a.tensors
            elif a.type == onnx.AttributeProto.GRAPH:
                yield from _tensors(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _tensors(g)


def nbytes(t):
    """Byte size of a tensor's data, or None for types without a fixed size (strings)."""
    if t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    try:
        dt = helper.tensor_dtype_to_np_dtype(t.data_type)
    except Exception:
        return None
    n = int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1
    if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4, onnx.TensorProto.FLOAT4E2M1):
        return (n + 1) // 2
    if t.data_type in (getattr(onnx.TensorProto, "INT2", -1), getattr(onnx.TensorProto, "UINT2", -1)):
        return (n + 3) // 4
    return n * np.dtype(dt).itemsize


def _check_external(t, folder, path):
    kv = {e.key: e.value for e in t.external_data}
    where = f"{path}: initializer '{t.name}': external data"
    loc = kv.get("location", "")
    p = Path(loc)
    if not loc or p.is_absolute() or loc.startswith(("/", "\\")) or ":" in loc or \
            any(part == ".." for part in p.parts) or "\\.." in loc or "..\\" in loc:
        raise TslError(f"{where} location '{loc}' must be a file name inside the model's folder "
                       "(no absolute path, no '..')")
    full = (folder / p).resolve()
    if folder not in full.parents:
        raise TslError(f"{where} '{loc}' resolves to {full}, outside the model's folder {folder}")
    if not full.is_file():
        raise TslError(f"{where} file '{loc}' is missing next to the model (or not a regular file)")
    size = full.stat().st_size
    try:
        off = int(kv.get("offset", "0"))
        length = int(kv["length"]) if "length" in kv else None
    except ValueError:
        raise TslError(f"{where} offset/length are not integers ({kv.get('offset')!r}, {kv.get('length')!r})")
    need = nbytes(t)
    if need is None:
        raise TslError(f"{where}: element type {t.data_type} cannot be stored externally here")
    if length is None:
        length = need
    if off < 0 or length != need or off + length > size:
        raise TslError(f"{where} '{loc}' offset {off} + length {length} does not fit: the tensor "
                       f"{list(t.dims)} needs {need} B, the file has {size} B")
    t.ClearField("external_data")
    for k, v in (("location", str(full)), ("offset", str(off)), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = k, v


def _mapped(file):
    st = Path(file).stat()
    key = (file, st.st_size, st.st_mtime_ns)
    mm = _maps.get(key)
    if mm is None:
        mm = np.memmap(file, dtype=np.uint8, mode="r")
        _maps[key] = mm
    return mm


def array(t):
    """The tensor's values: a read-only view of the mapped data file for external tensors (checked
    by load()), else numpy_helper's copy of the inline data."""
    if t.data_location != EXTERNAL:
        return numpy_helper.to_array(t)
    kv = {e.key: e.value for e in t.external_data}
    off, length = int(kv["offset"]), int(kv["length"])
    raw = _mapped(kv["location"])[off:off + length] if length else np.zeros(0, np.uint8)
    dt = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
    n = int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1
    if n * dt.itemsize == length and dt.kind in "fiub" and np.little_endian:
        a = raw.view(dt).reshape(tuple(t.dims))
        return a if off % dt.itemsize == 0 else a.copy()   # onnxruntime wants aligned buffers
    inline = onnx.TensorProto()                               # packed or exotic types: numpy_helper unpacks
    inline.CopyFrom(t)
    inline.ClearField("external_data")
    inline.data_location = onnx.TensorProto.DEFAULT
    inline.raw_data = raw.tobytes()
    return numpy_helper.to_array(inline)


def lifted(model):
    """(copy of the model in which the large initializers are graph inputs, [their TensorProtos]).
    The copy holds no weight bytes."""
    g = model.graph
    lift = [t for t in g.initializer if t.data_location == EXTERNAL or nbytes(t) and nbytes(t) >= LIFT_BYTES]
    names = {t.name for t in lift}
    m = onnx.ModelProto()
    for f in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(m, f, getattr(model, f))
    m.opset_import.extend(model.opset_import)
    m.functions.extend(model.functions)
    m.graph.name = g.name
    m.graph.node.extend(g.node)
    m.graph.input.extend([i for i in g.input if i.name not in names])
    m.graph.output.extend(g.output)
    m.graph.value_info.extend(g.value_info)
    m.graph.initializer.extend([t for t in g.initializer if t.name not in names])
    for t in lift:
        m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return m, lift


def check(model, path):
    """onnx.checker on the graph's structure (weights are checked by load())."""
    m, _ = lifted(model)
    try:
        onnx.checker.check_model(m)
    except Exception as e:
        raise TslError(f"{path}: invalid ONNX model: {str(e).splitlines()[0][:160]}")


def options():
    """onnxruntime's session options for tinyslm's runs: its threads sleep between runs instead of
    spinning (a spinning pool takes the core from the compiler or emulator beside it), and there are
    OMP_NUM_THREADS of them where that is set, as numpy's BLAS and torch take."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    n = os.environ.get("OMP_NUM_THREADS", "")
    if n.isdigit() and int(n) > 0:
        so.intra_op_num_threads = int(n)
    return so


def session(model, path, outputs=(), optimize=False):
    """-> (onnxruntime session, {weight name: array} to add to every run's feeds). outputs: extra
    values to expose as graph outputs. The session reads the weights from the feeds in place (no
    copy, no prepacked duplicate)."""
    import onnxruntime as ort
    m, lift = lifted(model)
    weights = {t.name: array(t) for t in lift}
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(onnx.ValueInfoProto(name=o) for o in outputs if o and o not in have and
                          not have.add(o))
    so = options()
    so.log_severity_level = 4          # fatal only: its errors reach the user as our one line
    so.add_session_config_entry("session.disable_prepacking", "1")
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]), weights
    except Exception as e:
        raise TslError(f"{path}: onnxruntime cannot load the graph: {str(e).splitlines()[0][:200]}")
