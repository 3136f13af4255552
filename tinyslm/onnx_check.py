"""Checks of an ONNX file's tensors before anything reads them: what onnx.checker leaves to the
reader (initializer sizes against their dims and type), as one-line errors."""
import numpy as np
from onnx import TensorProto, helper

from .errors import TslError

MAX_ELEMENTS = 1 << 36           # no decoder LM tinyslm compiles has a tensor this large


def check_tensors(model, path):
    """Every initializer and Constant value: dims non-negative, sizes that fit, data of the length
    its dims and type say. Raises TslError naming the tensor."""
    tensors = [(t, f"initializer '{t.name}'") for t in model.graph.initializer]
    for n in model.graph.node:
        for a in n.attribute:
            if a.type == a.TENSOR:
                tensors.append((a.t, f"node '{n.name}' ({n.op_type}) attribute '{a.name}'"))
            elif a.type == a.TENSORS:
                tensors += [(t, f"node '{n.name}' ({n.op_type}) attribute '{a.name}'") for t in a.tensors]
    for t, what in tensors:
        _check(t, what, path)


def _check(t, what, path):
    if any(d < 0 for d in t.dims):
        raise TslError(f"{path}: {what}: negative dimension in {list(t.dims)}")
    n = int(np.prod([int(d) for d in t.dims], dtype=object)) if t.dims else 1
    if n > MAX_ELEMENTS:
        raise TslError(f"{path}: {what}: {list(t.dims)} is {n:,} elements, beyond any model tinyslm compiles")
    if t.data_location == TensorProto.EXTERNAL:
        return                                  # its file and range are checked where the data is read
    try:
        np_dtype = helper.tensor_dtype_to_np_dtype(t.data_type)
    except (KeyError, ValueError):
        raise TslError(f"{path}: {what}: unknown tensor data type {t.data_type}") from None
    if t.HasField("raw_data") or t.raw_data:
        bits = {TensorProto.INT4: 4, TensorProto.UINT4: 4}.get(t.data_type, 8 * np.dtype(np_dtype).itemsize)
        want = (n * bits + 7) // 8
        if len(t.raw_data) != want:
            raise TslError(f"{path}: {what}: dims {list(t.dims)} need {want} bytes of "
                           f"{TensorProto.DataType.Name(t.data_type)}, the file holds {len(t.raw_data)}")
        return
    field = helper.tensor_dtype_to_field(t.data_type) if t.data_type != TensorProto.UNDEFINED else None
    have = len(getattr(t, field)) if field else 0
    if t.data_type == TensorProto.STRING:
        have = len(t.string_data)
    want = n
    if t.data_type in (TensorProto.COMPLEX64, TensorProto.COMPLEX128):
        want = 2 * n
    if t.data_type in (TensorProto.INT4, TensorProto.UINT4):
        want = (n + 1) // 2
    if have != want:
        raise TslError(f"{path}: {what}: dims {list(t.dims)} need {want} values, the file holds {have}")
