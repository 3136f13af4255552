"""Codegen: Program + Plan -> a self-contained C project in a directory.

Everything C needs is computed here as plain data (offsets, argument lists, defines); the
templates in codegen_templates/ only loop and print.
"""
import hashlib
import json
import shutil
import struct
import zlib
from pathlib import Path

import jinja2
import numpy as np

from . import __version__
from .ir import C_TYPES

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "codegen_templates"
FIRMWARE = ROOT / "firmware"
MAGIC, VERSION, HEADER = 0x574C5354, 1, 32      # "TSLW"
NP_C = {np.dtype(np.int8): "int8_t", np.dtype(np.uint8): "uint8_t", np.dtype(np.uint16): "uint16_t", np.dtype(np.int16): "int16_t",
        np.dtype(np.int32): "int32_t", np.dtype(np.float32): "float"}
MATVEC_S4 = ["tsl_matvec_s4_isa.h", "tsl_matvec_s4.c", "tsl_matvec_s4_arm.c", "tsl_matvec_s4_neon.c",
             "tsl_matvec_s4_x86.c", "tsl_matvec_s4_swar.c"]   # the int4 matvec: dispatch + one file per ISA family
MATVEC_S4NL = ["tsl_matvec_s4nl_isa.h", "tsl_matvec_s4nl.c", "tsl_matvec_s4nl_arm.c", "tsl_matvec_s4nl_neon.c",
               "tsl_matvec_s4nl_x86.c",           # int4 on a non-linear grid (int4nl.py), the same layout
               "tsl_matvec_s5nl.c"]               # int5 on a non-linear grid (portable and NEON paths)
RUNTIME = ["tsl_numerics.h", "tsl_arch.h", "tsl_kernels.h", "tsl_vec_f32.h", "tsl_epilogue.h", "tsl_matvec_s8.c", *MATVEC_S4, *MATVEC_S4NL,
           "tsl_attention_s8.c", "tsl_norm_f32.c", "tsl_elementwise_f32.c", "tsl_sampler.h",
           "tsl_sampler.c"]
INT_OPS = ["tsl_int_ops.h", "tsl_int_ops.c"]      # programs lowered by lower_int: the integer-only step
FWHT = ["tsl_fwht.h", "tsl_fwht_f32.c"]          # float programs with fwht ops (quantize's rotate)
THREADS = ["tsl_threads.h", "tsl_threads.c"]     # boards with cores > 1: the worker pool
GEMM = ["tsl_gemm.h", "tsl_gemm_s8.c", "tsl_gemm_s4.c"]   # boards with a prefill_tile: tsl_prefill
GEMM_PAR = ["tsl_gemm_par.h", "tsl_gemm_par.c"]        # both: the prefill kernels on the pool
POOL_OPS = {"tsl_matvec_s8_f32", "tsl_matvec_s4_f32", "tsl_matvec_s4nl_f32", "tsl_matvec_s5nl_f32", "tsl_quant_dynamic_f32", "tsl_dequant_sub_f32", "tsl_act_f32",
            "tsl_glu_f32", "tsl_attention_s8", "tsl_attention_f32"}      # what the pool splits (tsl_par_*: same bytes)
APPS = ["tsl_app_verify.c", "proto/tsl_proto.h", "proto/tsl_proto.c", "proto/tsl_serial_app.c",
        "proto/tsl_device.h", "proto/tsl_console.h", "proto/tsl_console.c", "uart/tsl_uart.c", "uart/tsl_app_serial.c"]


def arch_hash(meta):
    """What a weight blob must agree with to be loadable: every shape of the architecture."""
    keys = ("family", "vocab", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden",
            "max_seq", "weights", "act", "pos")
    arch = {k: meta[k] for k in keys}
    if meta.get("numerics", "float") != "float":     # another blob layout (float builds: hash as before)
        arch["numerics"] = meta["numerics"]
    if meta.get("int4_grid"):                # the non-linear int4 grid's levels: another blob layout
        arch["int4_grid"] = meta["int4_grid"]
    if meta.get("rotate"):                   # the rotation's sign tables: another blob layout
        arch["rotate"] = meta["rotate"]
    rings = [kv["slots"] for kv in meta.get("kv_layers", []) if kv["slots"] != meta["max_seq"]]
    if rings:                               # sliding windows: the cache layout per layer
        arch["kv_slots"] = [kv["slots"] for kv in meta["kv_layers"]]
    return zlib.crc32(json.dumps(arch, sort_keys=True).encode())


def pack_weights(prog):
    """-> (blob, {name: offset}). Header: magic, version, bytes, arch hash, payload crc32. The
    tensors are copied once, into the blob (a bytearray: no second copy for bytes)."""
    offsets, off = {}, HEADER
    for name, arr in prog.weights.items():
        off = (off + 15) // 16 * 16
        offsets[name] = off
        off += arr.nbytes
    total = (off + 15) // 16 * 16
    blob = bytearray(total)
    with memoryview(blob) as mv:
        for name, arr in prog.weights.items():
            a = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
            mv[offsets[name]:offsets[name] + a.size] = a
        crc = zlib.crc32(mv[HEADER:])
    blob[:20] = struct.pack("<5I", MAGIC, VERSION, total, arch_hash(prog.meta), crc)
    return blob, offsets


def _calls(prog, plan, woff, threads=False):
    """One (lhs, fn, args) per op: the C call that runs it. threads: POOL_OPS run on the model's pool."""
    def a(name, ctype=None):
        b = prog.bufs[name]
        if b.kind == "kv":
            return f"(({ctype or C_TYPES[b.dtype]} *)KV({plan.kv_offsets[name]}))"
        return f"A({ctype or C_TYPES[b.dtype]}, {plan.offsets[name]})"

    def w(name, suffix=""):
        if name is None:
            return "NULL"
        return f"W({NP_C[prog.weights[name].dtype]}, {woff[name]}){suffix}"

    out = []
    for op in prog.ops:
        t, lhs = op.attrs, ""
        k = op.kind
        if k == "embed":
            fn, args = "tsl_embed_s8", [w(t["table_w"]), w(t["scale_w"]), "token" if t["src"] == "token" else "pos",
                                        a(op.outs[0]), t["n"], t["accumulate"]]
        elif k == "dequant_sub":
            fn, args = "tsl_dequant_sub_f32", [a(op.ins[0]), a(op.ins[1]), a(op.ins[2]), t["n"]]
        elif k == "rmsnorm":
            fn, args = "tsl_rmsnorm_f32", [a(op.ins[0]), w(t["g_w"]), _f(t["eps"]), a(op.outs[0]), t["n"]]
        elif k == "headnorm":
            fn, args = "tsl_headnorm_f32", [a(op.ins[0]), w(t["g_w"]), w(t["b_w"]), _f(t["eps"]), t["n_heads"], t["hs"],
                                            t["layernorm"]]
        elif k == "add":
            fn, args = "tsl_add_f32", [a(op.ins[0]), a(op.ins[1]), t["n"]]
        elif k == "softcap":
            fn, args = "tsl_softcap_f32", [a(op.ins[0]), t["n"], _f(t["cap"])]
        elif k == "layernorm":
            fn, args = "tsl_layernorm_f32", [a(op.ins[0]), w(t["g_w"]), w(t["b_w"]), _f(t["eps"]), a(op.outs[0]), t["n"]]
        elif k == "quant":
            lhs = f"*{a(op.outs[1])} = "
            fn, args = "tsl_quant_dynamic_f32", [a(op.ins[0]), a(op.outs[0]), t["n"]]
        elif k == "matvec":
            sx = _f(t["sx_const"]) if t["sx"] is None else f"*{a(t['sx'])}"
            fn, args = f"tsl_matvec_{t['fmt']}_f32", [a(op.ins[0]), sx, *_wargs(t, w), w(t["ws_w"])]
            args += [w(t["bias_w"]), a(op.outs[0]), t["N"], t["K"], t["accumulate"]]
        elif k == "rope":
            fn, args = "tsl_rope_split_f32", [a(op.outs[0]), t["n_heads"], t["hs"], t["rot"], *_rope_rows(t, w),
                                              t["interleaved"]]
        elif k == "kv_store":
            fn, args = "tsl_kv_store_s8", [a(op.ins[0]), a(op.outs[0]), a(op.outs[1], "float"), t["n_heads"],
                                           t["hs"], t["max_seq"], "pos"]
        elif k == "attention":
            lhs = f"*{a(op.outs[1])} = "
            fn, args = "tsl_attention_s8", [a(op.ins[0]), a(op.ins[1]), a(op.ins[2], "float"), a(op.ins[3]),
                                            a(op.ins[4], "float"), a(op.outs[0]), t["n_heads"], t["n_kv"], t["hs"],
                                            t["max_seq"], "pos", _f(t["scale"]), _f(t["softcap"]), w(t["alibi_w"])] + \
                [a(n) for n in op.outs[2:]] + ([t.get("slices", 1)] if threads else [])
        elif k == "attention_f32":
            fn, args = "tsl_attention_f32", [a(op.ins[0]), a(op.ins[1]), a(op.ins[2], "float"), a(op.ins[3]),
                                             a(op.ins[4], "float"), a(op.outs[0]), t["n_heads"], t["n_kv"], t["hs"],
                                             t["max_seq"], "pos", _f(t["scale"]), _f(t["softcap"]), w(t["alibi_w"])] + \
                [a(n) for n in op.outs[1:]] + ([t.get("slices", 1)] if threads else [])
        elif k.startswith("i_"):
            lhs, fn, args = _int_call(op, t, a, w)
        elif k == "glu":
            fn, args = "tsl_glu_f32", [a(op.ins[0]), a(op.ins[1]), a(op.outs[0]), t["n"], t["act"]]
        elif k == "act":
            fn, args = "tsl_act_f32", [a(op.ins[0]), a(op.outs[0]), t["n"], t["act"]]
        elif k == "fwht":
            fn, args = "tsl_fwht_f32", [a(op.outs[0]), t["n"], t["block"], w(t["signs_w"])]
        else:
            raise AssertionError(k)
        if threads and fn in POOL_OPS:
            fn, args = fn.replace("tsl_", "tsl_par_", 1), ["m->pool"] + args
        out.append(dict(name=op.name, lhs=lhs, fn=fn, args=[str(x) for x in args]))
    return out


def _rope_rows(t, w):
    """the hi rows (pos / step) and lo rows (pos % step) of a rope op's split tables: cos_hi, sin_hi, cos_lo, sin_lo"""
    half, S = t["rot"] // 2, t["step"]
    return [w(t[k + "_hi_w"], f" + (pos / {S}) * {half}") for k in ("cos", "sin")] + \
        [w(t[k + "_lo_w"], f" + (pos % {S}) * {half}") for k in ("cos", "sin")]


def _int_call(op, t, a, w):
    """(lhs, fn, args) of an i_* op (lower_int.py, firmware/tsl_int_ops.h)"""
    k, lhs = op.kind, ""
    if k == "i_embed":
        fn, args = "tsl_iembed_s8", [w(t["table_w"]), w(t["fx_w"]), "token" if t["src"] == "token" else "pos",
                                     a(op.outs[0]), t["n"], t["accumulate"]]
    elif k == "i_dequant_sub":
        fn, args = "tsl_idequant_sub", [a(op.ins[0]), a(op.ins[1]), a(op.ins[2]), t["n"]]
    elif k == "i_norm":
        fn, args = "tsl_inorm", [a(op.ins[0]), w(t["g_w"]), t["gq"], w(t["b_w"]), f"{t['eps_q']}u", a(op.outs[0]),
                                 t["n"], t["layernorm"]]
    elif k == "i_headnorm":
        fn, args = "tsl_iheadnorm", [a(op.ins[0]), w(t["g_w"]), t["gq"], w(t["b_w"]), f"{t['eps_q']}u", t["n_heads"],
                                     t["hs"], t["layernorm"]]
    elif k == "i_add":
        fn, args = "tsl_iadd", [a(op.ins[0]), a(op.ins[1]), t["n"]]
    elif k == "i_quant":
        lhs = f"*{a(op.outs[1])} = "
        fn, args = "tsl_iquant_s8", [a(op.ins[0]), a(op.outs[0]), t["n"]]
    elif k == "i_matvec":
        fn, args = f"tsl_imatvec_{t.get('fmt', 's8')}", [a(op.ins[0]), a(t["sx"]), *_wargs(t, w), w(t["wfx_w"]),
                                                         w(t["bias_w"]), a(op.outs[0]), t["N"], t["K"], t["accumulate"]]
    elif k == "i_rope":
        fn, args = "tsl_irope_split", [a(op.outs[0]), t["n_heads"], t["hs"], t["rot"], *_rope_rows(t, w),
                                       t["interleaved"]]
    elif k == "i_kv_store":
        fn, args = "tsl_ikv_store_s8", [a(op.ins[0]), a(op.outs[0]), a(op.outs[1]), t["n_heads"], t["hs"],
                                        t["max_seq"], "pos"]
    elif k == "i_attention":
        lhs = f"*{a(op.outs[1])} = "
        fn, args = "tsl_iattention_s8", [a(n) for n in op.ins] + [a(op.outs[0]), t["n_heads"], t["n_kv"], t["hs"],
                                                                 t["max_seq"], "pos", t["sc_m"], t["sc_s"], w(t["cap_w"]),
                                                                 w(t["sig_w"]), w(t["alibi_w"])] + [a(n) for n in op.outs[2:]]
    elif k == "i_softcap":
        fn, args = "tsl_isoftcap", [a(op.outs[0]), t["n"], w(t["cap_w"]), w(t["sig_w"])]
    elif k == "i_glu":
        fn, args = "tsl_iglu", [a(op.ins[0]), a(op.ins[1]), a(op.outs[0]), t["n"], w(t["gate_w"])]
    elif k == "i_act":
        fn, args = "tsl_iact", [a(op.ins[0]), a(op.outs[0]), t["n"], w(t["gate_w"])]
    elif k == "i_fwht":
        fn, args = "tsl_ifwht", [a(op.outs[0]), t["n"], t["block"], w(t["signs_w"])]
    elif k == "i_to_f32":
        fn, args = "tsl_ito_f32", [a(op.ins[0]), a(op.outs[0], "uint32_t"), t["n"]]
    else:
        raise AssertionError(k)
    return lhs, fn, args


def _wargs(t, w):
    """a matvec's weight arguments ahead of its scales, by format: values; s4 + group scales; s4nl +
    levels and group scales"""
    return [w(t["w_w"])] + [w(t[k]) for k in ("kv_w", "gs_w") if t.get(k)]


def _f(v):
    return repr(float(np.float32(v))) + "f"


def _kv_needed(prog):
    """[bool] per op: does the KV cache of later positions depend on it? Walked backwards from the
    kv_store ops, each needed op's inputs (and, conservatively, its outputs: in-place and
    accumulating ops read them) become needed. The others (the head, the last layer's attention
    output and MLP) matter only for the logits: prefill runs them for its last token alone."""
    live, need = set(), [False] * len(prog.ops)
    for i in range(len(prog.ops) - 1, -1, -1):
        op = prog.ops[i]
        if op.kind == "kv_store" or live & set(op.outs):
            need[i] = True
            live |= set(op.ins) | set(op.outs) | ({op.attrs["sx"]} if op.kind == "matvec" and op.attrs["sx"] else set())
    return need


def _prefill(prog, plan, woff, threads):
    """The steps of tsl_prefill over a tile of tokens, each token in its own arena (slice sl[t]):
    gemm (a needed matvec: one call for the tile), seq (a run of other needed ops, each split over
    the tile's tokens, op by op, when no ring slot written in the tile is read by an earlier token
    of it -- ring = the fewest slots of its kv ops, None without any -- else token by token) and last (an op only the logits need: the
    tile's last token, in the last tile)."""
    def sl(name, ctype=None):
        return f"(({ctype or C_TYPES[prog.bufs[name].dtype]} *)(sl[t] + {plan.offsets[name]}))"

    def w(name):
        return "NULL" if name is None else f"W({NP_C[prog.weights[name].dtype]}, {woff[name]})"

    steps = []
    for i, (op, need) in enumerate(zip(prog.ops, _kv_needed(prog))):
        t = op.attrs
        if not need:
            steps.append(dict(kind="last", i=i, name=op.name))
        elif op.kind == "matvec":
            pre = ("tsl_par_" if threads else "tsl_") + f"gemm_{t['fmt']}_f32"
            args = (["m->pool"] if threads else []) + ["xs", "sx", *_wargs(t, w), w(t["ws_w"]), w(t["bias_w"]), "ds",
                                                       "nt", t["N"], t["K"], t["accumulate"]]
            steps.append(dict(kind="gemm", i=i, name=op.name, x=sl(op.ins[0]), dst=sl(op.outs[0]),
                              sx=_f(t["sx_const"]) if t["sx"] is None else "*" + sl(t["sx"], "float"),
                              call=f"{pre}({', '.join(map(str, args))})"))
        else:
            if not steps or steps[-1]["kind"] != "seq":
                steps.append(dict(kind="seq", i0=i, ops=[], ring=None))
            st = steps[-1]
            st["i1"] = i + 1
            st["ops"].append(dict(i=i, name=op.name))
            if op.kind in ("kv_store", "attention", "attention_f32"):
                st["ring"] = min(st["ring"] or t["max_seq"], t["max_seq"])
    return steps


def generate(prog, plan, out, board, cc, cflags, ar="ar", source="", tokenizer=None, cores=1, prefill_tile=0):
    """Write the C project into `out` (an existing, empty directory). Returns the manifest.
    cores > 1: the model carries a pthreads pool (tsl_set_threads) that runs its matvecs.
    prefill_tile > 0: tsl_prefill runs prompts in tiles of this many tokens (GEMM kernels)."""
    out = Path(out)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    blob, woff = pack_weights(prog)
    (out / "model").mkdir()
    (out / "runtime").mkdir()
    (out / "model" / "tsl_weights.bin").write_bytes(blob)
    ahash = arch_hash(prog.meta)
    threads = cores > 1
    int_ops = prog.meta.get("numerics") == "int"
    if int_ops:
        prefill_tile = 0     # _prefill knows the float step's ops only: integer programs decode their prompts
    fwht = any(op.kind == "fwht" for op in prog.ops)
    runtime = RUNTIME + (INT_OPS if int_ops else []) + (FWHT if fwht else []) + (THREADS if threads else []) + \
        (GEMM if prefill_tile else []) + (GEMM_PAR if prefill_tile and threads else [])
    defines = [("TSL_VOCAB", prog.meta["vocab"]), ("TSL_DIM", prog.meta["dim"]),
               ("TSL_N_LAYERS", prog.meta["n_layers"]), ("TSL_MAX_SEQ", prog.meta["max_seq"]),
               ("TSL_N_OPS", len(prog.ops)), ("TSL_ARENA_BYTES", max(plan.arena_bytes, 16)),
               ("TSL_KV_BYTES", max(plan.kv_bytes, 16)), ("TSL_LOGITS_OFFSET", plan.offsets["logits"]),
               ("TSL_WEIGHTS_BYTES", len(blob)), ("TSL_WEIGHTS_MAGIC", f"0x{MAGIC:08x}u"),
               ("TSL_WEIGHTS_VERSION", VERSION), ("TSL_ARCH_HASH", f"0x{ahash:08x}u"),
               ("TSL_KV_MIN_SLOTS", min([kv["slots"] for kv in prog.meta.get("kv_layers", [])] or
                                        [prog.meta["max_seq"]]))]   # the smallest sliding-window ring
    if prefill_tile:
        stride = (max(plan.arena_bytes, 16) + 15) // 16 * 16
        defines += [("TSL_PREFILL_TILE", prefill_tile), ("TSL_PREFILL_STRIDE", stride),
                    ("TSL_PREFILL_WORK_BYTES", prefill_tile * stride)]
    ctx = dict(version=__version__, source=Path(source).name, board=board, defines=defines,
               ops=_calls(prog, plan, woff, threads), threads=threads, int_ops=int_ops, fwht=fwht,
               prefill=_prefill(prog, plan, woff, threads) if prefill_tile else None, arena_bytes=plan.arena_bytes, lower_bound=plan.lower_bound,
               kv_bytes=plan.kv_bytes, nbytes=len(blob), blob="tsl_weights.bin",
               note_gnu_stack=cc in ("cc", "gcc", "clang") or "linux" in cc)
    for tpl, dst in (("tsl_model.h.j2", "model/tsl_model.h"), ("tsl_model.c.j2", "model/tsl_model.c"),
                     ("tsl_weights.S.j2", "model/tsl_weights.S")):
        (out / dst).write_text(env.get_template(tpl).render(**ctx))
    for f in runtime:
        shutil.copy(FIRMWARE / f, out / "runtime" / f)
    (out / "app").mkdir()
    for f in APPS:
        shutil.copy(FIRMWARE / f, out / "app" / Path(f).name)
    sources = ["model/tsl_model.c", "model/tsl_weights.S"] + [f"runtime/{f}" for f in runtime if f.endswith(".c")]
    (out / "Makefile").write_text(env.get_template("Makefile.j2").render(
        version=__version__, board=board, cc=cc, ar=ar, cflags=cflags, sources=sources))
    manifest = dict(
        tinyslm=__version__, board=board, source=str(source), model=prog.meta,
        arch_hash=f"0x{ahash:08x}", weights_sha256=hashlib.sha256(blob).hexdigest(),
        weights=dict(bytes=len(blob), tensors={n: dict(offset=woff[n], dtype=str(a.dtype), shape=list(a.shape),
                                                       sha256=hashlib.sha256(np.ascontiguousarray(a)).hexdigest())
                                                for n, a in prog.weights.items()}),
        memory=dict(arena_bytes=plan.arena_bytes, arena_lower_bound=plan.lower_bound, kv_bytes=plan.kv_bytes,
                    buffers={n: dict(offset=plan.offsets.get(n, plan.kv_offsets.get(n)), bytes=b.nbytes,
                                     dtype=b.dtype, kind=b.kind, life=plan.lifetimes.get(n))
                             for n, b in prog.bufs.items()}),
        ops=[dict(name=op.name, kind=op.kind, layer=op.layer, ins=op.ins, outs=op.outs) for op in prog.ops],
        sources=sources, cflags=cflags, cc=cc)
    return manifest
