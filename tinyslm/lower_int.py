"""Lower the float ops of a Program to the integer-only decode step (boards without an FPU).

lower_int(prog) -> a new Program whose every op is an i_* kernel of firmware/tsl_int_ops.c
(numpy mirror: numerics_int.py). What changes, per the IR produced by quantize.py:
  buffers     every f32 activation becomes int32 Q16 (real = v * 2^-16); every f32 scale (per-token
              activation scales, the KV cache's per-row scales) becomes one int32 word, the amax of
              what was quantized; `logits` stays float32, written from its Q16 twin `logits.q` by
              the last op (float bits made from integers: no float arithmetic)
  weights     int8 tables, int8 and int4 matrices and int4 group scales as they are; each float
              scale array (int4: the per-channel scale above the int8 group scales) becomes (mult, shift)
              pairs [N][2]; gains int32 at a per-norm power of two (attr gq), biases Q16; RoPE
              tables Q15 (hi rows int32, lo rows int16); activations a Q15 gate table (act(x) / x on [-16, 16), step 1/32)
  ops         one i_* op per float op, same buffers and order: the planner and the verifier see
              the same program shape
Rotation (quantize's fwht): tsl_ifwht halves each butterfly, so its output is H D x / block, not
H D x; the row scales of the matvecs reading it (through quant, and dequant_sub's residual) are
multiplied by block (exact: a power of two) to read the same product.
Soft caps: cap * tanh(x / cap) = cap * (2 sigma(2x / cap) - 1) through the SiLU gate table (sigma).
int4 matvecs: the int32 sums sum_g gs[n][g] * (w4[n][g] . x[g]) of tsl_matvec_s4_s32 (s4nl: kv[w4] of
tsl_matvec_s4nl_s32; every ISA path the same), then the int8 epilogue with (mult, shift) of the
per-channel scale.
Not lowered (TslError naming the op): a constant activation scale.
"""
import math

import numpy as np

from . import numerics_int as ni
from .errors import TslError
from .ir import Buf, Program
from .numerics import fx_const

GATES = {0: lambda x: 1.0 / (1.0 + np.exp(-x)),
         1: lambda x: 0.5 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
         2: lambda x: 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))}     # TSL_ACT_* -> act(x) / x


def gate_table(act):
    """Q15 table of act(x) / x at x = -16 + i / 32, i <= 1024 (None for ReLU: exact in C)."""
    if act == 3:
        return None
    x = ni.GATE_LO + np.arange(ni.GATE_N + 1, dtype=np.float64) / (1 << ni.GATE_LOG2_STEP)
    return np.clip(np.round(GATES[act](x) * 32768), 0, 32768).astype(np.uint16)


def fx_rows(r):
    """float scales [N] -> int32 [N, 2] (mult, shift)"""
    return np.array([fx_const(v) for v in np.asarray(r, np.float64).reshape(-1)], np.int32).reshape(-1, 2)


def q16(v, where):
    v = np.asarray(v, np.float64) * (1 << ni.Q)
    if v.size and np.abs(v).max() >= 2 ** 31 - 1:
        raise TslError(f"{where}: values beyond +-32768 do not fit the integer path's Q16")
    return np.round(v).astype(np.int32)


class _Lower:
    def __init__(self, prog):
        self.src = prog
        self.P = Program(meta=dict(prog.meta, numerics="int", int_q=ni.Q), bufs={}, ops=[], weights={})
        self.made = {}
        self.rot = {}        # buffer -> block: an f32 activation rotated by i_fwht, or its int8 quantization

    def w(self, name, make):
        """a derived weight, made once per name"""
        if name not in self.made:
            self.made[name] = self.P.weight(name, make())
        return self.made[name]

    def keep(self, name):
        return self.w(name, lambda: self.src.weights[name])

    def buf(self, name):
        return "logits.q" if name == "logits" else name

    def emit(self, op, kind, ins=None, outs=None, **attrs):
        self.P.op(kind, op.name, [self.buf(n) for n in (op.ins if ins is None else ins)],
                  [self.buf(n) for n in (op.outs if outs is None else outs)], op.layer, **attrs)

    def norm_w(self, op, a):
        g = np.asarray(self.src.weights[a["g_w"]], np.float64)
        gmax = float(np.abs(g).max()) if g.size else 0.0
        gq = 30 if gmax == 0 else min(30, math.floor(30 - math.log2(gmax)))
        if gq < ni.Q - ni.QZ + 1:
            raise TslError(f"op {op.name}: a gain of {gmax:g} does not fit the integer norm")
        if not 0 <= a["eps"] < 1:
            raise TslError(f"op {op.name}: eps {a['eps']} outside [0, 1) for the integer norm")
        gw = self.w(a["g_w"] + ".q", lambda: np.clip(np.round(g * 2.0 ** gq), -2 ** 31 + 1, 2 ** 31 - 1).astype(np.int32))
        bw = None
        if a.get("b_w") is not None:
            bw = self.w(a["b_w"] + ".q", lambda: q16(self.src.weights[a["b_w"]], f"op {op.name} bias"))
        return dict(g_w=gw, gq=gq, b_w=bw, eps_q=int(round(a["eps"] * 2 ** 32)))

    # ---- one method per float op kind ----
    def embed(self, op, a):
        scale = np.asarray(self.src.weights[a["scale_w"]], np.float64)
        fx = self.w(a["scale_w"] + ".fx16", lambda: fx_rows(scale * (1 << ni.Q)))
        self.emit(op, "i_embed", table_w=self.keep(a["table_w"]), fx_w=fx, n=a["n"], src=a["src"],
                  accumulate=a["accumulate"])

    def dequant_sub(self, op, a):
        self.emit(op, "i_dequant_sub", n=a["n"])

    def rmsnorm(self, op, a):
        self.emit(op, "i_norm", n=a["n"], layernorm=0, **self.norm_w(op, dict(a, b_w=None)))

    def layernorm(self, op, a):
        self.emit(op, "i_norm", n=a["n"], layernorm=1, **self.norm_w(op, a))

    def headnorm(self, op, a):
        self.emit(op, "i_headnorm", n_heads=a["n_heads"], hs=a["hs"], layernorm=a["layernorm"],
                  **self.norm_w(op, a if a["layernorm"] else dict(a, b_w=None)))

    def add(self, op, a):
        self.emit(op, "i_add", n=a["n"])

    def quant(self, op, a):
        if op.ins[0] in self.rot:
            self.rot[op.outs[0]] = self.rot[op.ins[0]]
        self.emit(op, "i_quant", n=a["n"])

    def fwht(self, op, a):
        self.rot[op.outs[0]] = a["block"]
        self.emit(op, "i_fwht", n=a["n"], block=a["block"], signs_w=self.keep(a["signs_w"]))

    def matvec(self, op, a):
        if a["fmt"] not in ("s8", "s4", "s4nl", "s5nl"):
            raise TslError(f"op {op.name}: weight format {a['fmt']} has no integer lowering")
        if a["sx"] is None:
            raise TslError(f"op {op.name}: a constant activation scale has no integer lowering")
        bias = None
        if a["bias_w"] is not None:
            bias = self.w(a["bias_w"] + ".q", lambda: q16(self.src.weights[a["bias_w"]], f"op {op.name} bias"))
        s4 = {k: self.keep(a[k]) for k in ("kv_w", "gs_w") if a.get(k)}
        blk = self.rot.get(op.ins[0], 1)                # the input's halved rotation: rows read block times it
        wfx = self.w(a["ws_w"] + (f".fx{blk}" if blk > 1 else ".fx"),
                     lambda: fx_rows(np.asarray(self.src.weights[a["ws_w"]], np.float64) * blk))
        self.emit(op, "i_matvec", N=a["N"], K=a["K"], accumulate=a["accumulate"], sx=a["sx"], fmt=a["fmt"],
                  w_w=self.keep(a["w_w"]), wfx_w=wfx, bias_w=bias, **s4)

    def rope(self, op, a):
        def q15(name, dtype):
            t = np.round(np.asarray(self.src.weights[name], np.float64) * 32768)
            m = np.iinfo(dtype).max
            return lambda: np.clip(t, -m, m).astype(dtype)
        # hi rows int32 (they carry mscale, above 1 with LongRoPE), lo rows int16 (|cos|, |sin| <= 1)
        tabs = {k: self.w(a[k] + ".q15", q15(a[k], np.int32 if "_hi" in k else np.int16))
                for k in ("cos_hi_w", "sin_hi_w", "cos_lo_w", "sin_lo_w")}
        self.emit(op, "i_rope", n_heads=a["n_heads"], hs=a["hs"], rot=a["rot"], interleaved=a["interleaved"],
                  step=a["step"], **tabs)

    def kv_store(self, op, a):
        self.emit(op, "i_kv_store", n_heads=a["n_heads"], hs=a["hs"], max_seq=a["max_seq"])

    def attention(self, op, a):
        ch = op.outs[6]
        self.P.bufs[ch] = Buf(ch, "s32", 2 * a["n_heads"], self.P.bufs[ch].kind)
        sc = fx_const(a["scale"] * 2.0 ** (ni.QS - 2 * ni.Q) / 127 ** 2)
        cap = sig = alibi = None
        if a["softcap"]:
            cap, sig = self._cap(a["softcap"], ni.QS), self._gate(0)
        if a["alibi_w"] is not None:
            alibi = self.w(a["alibi_w"] + ".q20", lambda: np.round(
                np.asarray(self.src.weights[a["alibi_w"]], np.float64) * (1 << ni.QS)).astype(np.int32))
        self.emit(op, "i_attention", n_heads=a["n_heads"], n_kv=a["n_kv"], hs=a["hs"], max_seq=a["max_seq"],
                  sc_m=sc[0], sc_s=sc[1], cap_w=cap, sig_w=sig, alibi_w=alibi)

    def _cap(self, cap, frac):
        """tsl_isoftcap's parameters for values with `frac` fractional bits"""
        return self.w(f"softcap{cap!r}.q{frac}", lambda: np.array(
            [*fx_const(2.0 / cap * 2.0 ** (ni.Q - frac)), *fx_const(cap * 2.0 ** (frac - 15))], np.int32))

    def glu(self, op, a):
        self.emit(op, "i_glu", n=a["n"], act=a["act"], gate_w=self._gate(a["act"]))

    def act(self, op, a):
        self.emit(op, "i_act", n=a["n"], act=a["act"], gate_w=self._gate(a["act"]))

    def _gate(self, act):
        t = gate_table(act)
        return None if t is None else self.w(f"gate{act}", lambda: t)

    def softcap(self, op, a):
        self.emit(op, "i_softcap", n=a["n"], cap_w=self._cap(a["cap"], ni.Q), sig_w=self._gate(0))


FPU_FEATURES = {"fpu-sp", "fpu-dp"}


def numerics_for(board):
    """The board's default numerics: float with a hardware FPU among its features, else int."""
    return "float" if FPU_FEATURES & set(board.features) else "int"


def lower_int(prog):
    """Program (float activations, quantize.py) -> Program of i_* ops (integer-only)."""
    L = _Lower(prog)
    for n, b in prog.bufs.items():
        L.P.bufs[n] = Buf(n, "s32" if b.dtype == "f32" and n != "logits" else b.dtype, b.size, b.kind)
    L.P.bufs["logits.q"] = Buf("logits.q", "s32", prog.bufs["logits"].size, "arena")
    for op in prog.ops:
        fn = getattr(L, op.kind, None)
        if fn is None:
            raise TslError(f"op {op.name}: kind {op.kind} has no integer lowering")
        fn(op, op.attrs)
    L.P.op("i_to_f32", "logits.to_f32", ["logits.q"], ["logits"], -1, n=prog.bufs["logits"].size)
    return L.P
