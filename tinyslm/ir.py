"""The integer IR: one decode step as a flat list of kernel calls over named buffers.

A Program is what every later stage reads: the reference interpreter (reference.py) executes it,
the planner (plan.py) gives its arena buffers offsets, codegen (codegen.py) prints one kernel
call per op. Quantization parameters are explicit: in op attrs (numbers) and in weights (arrays).
"""
from dataclasses import dataclass, field

import numpy as np

DTYPES = {"f32": np.float32, "s8": np.int8, "s32": np.int32}
C_TYPES = {"f32": "float", "s8": "int8_t", "s32": "int32_t", "u8": "uint8_t", "u16": "uint16_t"}


@dataclass
class Buf:
    name: str
    dtype: str          # f32 | s8 | s32
    size: int           # elements
    kind: str = "arena"  # arena: lives within one step; kv: persists across steps; out: logits

    @property
    def nbytes(self):
        return self.size * np.dtype(DTYPES[self.dtype]).itemsize


@dataclass
class Op:
    kind: str                  # kernel: embed rmsnorm layernorm quant dequant_sub matvec rope kv_store attention glu act
    name: str                  # e.g. "l0.attn.q"
    ins: list                  # buffer names read
    outs: list                 # buffer names written (may repeat an input: in place)
    attrs: dict = field(default_factory=dict)    # ints, floats, and weight names (keys ending in _w)
    layer: int = -1


@dataclass
class Program:
    meta: dict                 # dims and quantization summary, copied into manifest.json
    bufs: dict                 # name -> Buf
    ops: list                  # [Op], in execution order
    weights: dict              # name -> np.ndarray (int8, uint8, uint16, int32, float32), read-only data

    def buf(self, name, dtype, size, kind="arena"):
        if name in self.bufs:
            b = self.bufs[name]
            assert (b.dtype, b.size) == (dtype, size), name
            return name
        self.bufs[name] = Buf(name, dtype, int(size), kind)
        return name

    def weight(self, name, arr):
        assert name not in self.weights, name
        self.weights[name] = np.ascontiguousarray(arr)
        return name

    def op(self, kind, name, ins, outs, layer=-1, **attrs):
        self.ops.append(Op(kind, name, list(ins), list(outs), attrs, layer))
