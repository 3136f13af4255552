"""Quantized ONNX graphs -> their float view, for the frontend to recognize.

onnxruntime's quantizers leave three shapes behind; each is rewritten to the float MatMul (or
Gather) it stands for, with the weight dequantized exactly as the graph defines it:
  QDQ (quantize_static)        DequantizeLinear(int8 W) feeding MatMul/Gather; Q->DQ pairs on
                               activations (fake quantization) are dropped
  dynamic (quantize_dynamic)   DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(scales)
  MatMulNBits (com.microsoft)  int4/int8 blocks with per-block scales (and zero points)
The integer weights and their scales are kept in `qinfo` (by float weight name) so the quantizer
can reuse them instead of choosing its own.
"""
from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import onnxfile


def _attrs(n):
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


QUANT_OPS = ("DequantizeLinear", "QuantizeLinear", "MatMulInteger", "MatMulNBits")


class _G:
    def __init__(self, model):
        self.m = model
        self.init = {i.name: onnxfile.array(i) for i in model.graph.initializer}

    def refresh(self):
        self.prod = {o: n for n in self.m.graph.node for o in n.output}
        self.cons = defaultdict(list)
        for n in self.m.graph.node:
            for i in n.input:
                self.cons[i].append(n)

    def add_init(self, name, arr):
        self.m.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        self.init[name] = arr
        return name


def _dq(q, scale, zp, axis):
    """DequantizeLinear of a constant: (q - zp) * scale along `axis`."""
    q = q.astype(np.float64)
    scale = np.asarray(scale, np.float64)
    zp = np.zeros_like(scale) if zp is None else np.asarray(zp, np.float64)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (q - zp) * scale, q - zp


def float_view(model):
    """-> (float model, qinfo {weight name: dict}, notes [str]). The input model is not changed
    (and is returned itself when it holds no quantized op)."""
    if not any(n.op_type in QUANT_OPS for n in model.graph.node):
        return model, {}, []
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = _G(m)
    g.refresh()
    qinfo, notes, drop, new = {}, set(), set(), defaultdict(list)   # new: emitted at the node with this id

    for n in list(m.graph.node):
        if n.op_type == "DequantizeLinear" and n.input[0] in g.init:
            # constant weight: fold now, remember its integers
            a = _attrs(n)
            zp = g.init.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            w, q = _dq(g.init[n.input[0]], g.init[n.input[1]], zp, a.get("axis", 1))
            g.add_init(n.output[0], w.astype(np.float32))
            s = np.asarray(g.init[n.input[1]], np.float64)
            qinfo[n.output[0]] = dict(kind="int8", q=q.astype(np.int32), scale=s, axis=a.get("axis", 1))
            notes.add("QDQ int8 weights (" + ("per-channel" if s.size > 1 else "per-tensor") + ")")
            drop.add(id(n))
        elif n.op_type == "DequantizeLinear" and n.input[0] in g.prod and g.prod[n.input[0]].op_type == "Gather" \
                and g.prod[n.input[0]].input[0] in g.init:
            # quantized embedding rows: dequantize the table, then gather
            gat = g.prod[n.input[0]]
            zp = g.init.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            w, _ = _dq(g.init[gat.input[0]], g.init[n.input[1]], zp, 0)
            tname = g.add_init(gat.input[0] + "_float", w.astype(np.float32))
            new[id(n)].append(helper.make_node("Gather", [tname, gat.input[1]], [n.output[0]], name=gat.name + "_float",
                                               axis=_attrs(gat).get("axis", 0)))
            drop.update((id(n), id(gat)))
            notes.add("int8 embedding table")
        elif n.op_type == "QuantizeLinear" and n.input[0] not in g.init:
            dqs = g.cons[n.output[0]]
            if dqs and all(d.op_type == "DequantizeLinear" for d in dqs):
                for d in dqs:
                    for c in g.cons[d.output[0]]:
                        c.input[:] = [n.input[0] if i == d.output[0] else i for i in c.input]
                    for o in m.graph.output:
                        if o.name == d.output[0]:
                            new[id(d)].append(helper.make_node("Identity", [n.input[0]], [d.output[0]]))
                    drop.add(id(d))
                drop.add(id(n))
                notes.add("QDQ activations (fake quantization removed)")
        elif n.op_type == "MatMulInteger" and n.input[1] in g.init:
            dql = g.prod.get(n.input[0])
            cast = g.cons[n.output[0]][0] if len(g.cons[n.output[0]]) == 1 else None
            mul = g.cons[cast.output[0]][0] if cast is not None and len(g.cons[cast.output[0]]) == 1 else None
            if dql is None or dql.op_type != "DynamicQuantizeLinear" or mul is None or mul.op_type != "Mul":
                continue
            sname = [i for i in mul.input if i != cast.output[0]][0]
            smul = g.prod.get(sname)
            ws = [g.init[i] for i in (smul.input if smul is not None else []) if i in g.init]
            if not ws:
                continue
            zp = g.init.get(n.input[3]) if len(n.input) > 3 and n.input[3] else None
            w, q = _dq(g.init[n.input[1]], ws[0], zp, 1)
            wname = g.add_init(n.name + "_float_w", w.astype(np.float32))
            new[id(mul)].append(helper.make_node("MatMul", [dql.input[0], wname], [mul.output[0]], name=n.name + "_float"))
            qinfo[wname] = dict(kind="int8", q=q.astype(np.int32), scale=np.asarray(ws[0], np.float64), axis=1)
            drop.update((id(n), id(cast), id(mul)))
            notes.add("dynamic int8 (MatMulInteger)")
        elif n.op_type == "MatMulNBits" and n.domain == "com.microsoft":
            a = _attrs(n)
            K, N, bits, bs = a["K"], a["N"], a.get("bits", 4), a["block_size"]
            nb = (K + bs - 1) // bs
            raw = g.init[n.input[1]].reshape(N, nb, -1).astype(np.uint8)
            if bits == 4:
                vals = np.stack([raw & 0xF, raw >> 4], -1).reshape(N, nb, -1)[:, :, :bs]
            elif bits == 8:
                vals = raw[:, :, :bs]
            else:
                continue
            scale = np.asarray(g.init[n.input[2]], np.float64).reshape(N, nb)
            zp = np.full((N, nb), 2 ** (bits - 1), np.float64)
            if len(n.input) > 3 and n.input[3]:
                z = g.init[n.input[3]]
                if z.dtype == np.uint8 and bits == 4:
                    z = np.stack([z & 0xF, z >> 4], -1).reshape(N, -1)[:, :nb]
                zp = np.asarray(z, np.float64).reshape(N, nb)
            qb = vals.astype(np.float64) - zp[:, :, None]                      # [N, nb, bs]
            q = qb.reshape(N, nb * bs)[:, :K]
            w = (qb * scale[:, :, None]).reshape(N, nb * bs)[:, :K]
            wname = g.add_init(n.name + "_float_w", w.T.astype(np.float32))
            out = n.output[0]
            if len(n.input) > 5 and n.input[5]:
                mm = out + "_nobias"
                new[id(n)] += [helper.make_node("MatMul", [n.input[0], wname], [mm], name=n.name + "_float"),
                               helper.make_node("Add", [mm, n.input[5]], [out], name=n.name + "_bias")]
            else:
                new[id(n)].append(helper.make_node("MatMul", [n.input[0], wname], [out], name=n.name + "_float"))
            qinfo[wname] = dict(kind=f"int{bits}", q=q.astype(np.int32), block_scale=scale, block=bs)
            drop.add(id(n))
            notes.add(f"MatMulNBits int{bits}, blocks of {bs}")

    nodes = [x for n in m.graph.node for x in new[id(n)] + ([] if id(n) in drop else [n])]
    m.graph.ClearField("node")
    m.graph.node.extend(_topo(nodes, m))
    _prune(m)
    return m, qinfo, sorted(notes)


def _topo(nodes, m):
    known = {i.name for i in m.graph.input} | {i.name for i in m.graph.initializer} | {""}
    out, todo = [], list(nodes)
    while todo:
        rest = []
        for n in todo:
            if all(i in known for i in n.input):
                out.append(n)
                known.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(todo):
            out.extend(rest)   # leave the checker to report a broken graph
            break
        todo = rest
    return out


def _prune(m):
    """Drop nodes whose outputs nobody reads, and unused initializers."""
    while True:
        used = {i for n in m.graph.node for i in n.input} | {o.name for o in m.graph.output}
        keep = [n for n in m.graph.node if any(o in used for o in n.output)]
        if len(keep) == len(m.graph.node):
            break
        m.graph.ClearField("node")
        m.graph.node.extend(keep)
    used = {i for n in m.graph.node for i in n.input}
    inits = [i for i in m.graph.initializer if i.name in used]
    m.graph.ClearField("initializer")
    m.graph.initializer.extend(inits)
