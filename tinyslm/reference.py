"""The reference interpreter of the IR: the specification every C build must match bit for bit."""
import numpy as np

from . import numerics as nx
from . import numerics_int as ni
from .ir import DTYPES

f32 = np.float32


class Reference:
    def __init__(self, prog):
        self.P = prog
        self.W = prog.weights
        self.buf = {n: np.zeros(b.size, DTYPES[b.dtype]) for n, b in prog.bufs.items()}

    def reset(self):
        for n, b in self.P.bufs.items():
            self.buf[n][:] = 0

    def run_op(self, op, token, pos):
        getattr(self, "op_" + op.kind)(op, op.attrs, token, pos)

    def step(self, token, pos, after_op=None):
        """One decode step; after_op(i, op) is called after each op. Returns logits (a copy)."""
        for i, op in enumerate(self.P.ops):
            self.run_op(op, token, pos)
            if after_op:
                after_op(i, op)
        return self.buf["logits"].copy()

    def prefill(self, tokens, pos0=0):
        """tokens at positions pos0, pos0 + 1, ...: by definition the decode loop (what every C
        tsl_prefill must reproduce, KV cache and last logits). Returns the last logits."""
        lg = None
        for i, t in enumerate(tokens):
            lg = self.step(t, pos0 + i)
        return lg

    # ---- one method per op kind, mirroring firmware/tsl_*.c ----
    def op_embed(self, op, a, token, pos):
        row = token if a["src"] == "token" else pos
        n = a["n"]
        v = self.W[a["table_w"]].reshape(-1, n)[row].astype(f32) * self.W[a["scale_w"]][row]
        out = self.buf[op.outs[0]]
        out[:] = out + v if a["accumulate"] else v

    def op_dequant_sub(self, op, a, token, pos):
        x, q, s = (self.buf[n] for n in op.ins)
        x[:] = x - q.astype(f32) * s[0]

    def op_rmsnorm(self, op, a, token, pos):
        self.buf[op.outs[0]][:] = nx.rmsnorm(self.buf[op.ins[0]], self.W[a["g_w"]], a["eps"])

    def op_headnorm(self, op, a, token, pos):
        x, n = self.buf[op.ins[0]], a["hs"]
        y = x.reshape(a["n_heads"], n).copy()
        for h in range(a["n_heads"]):
            y[h] = (nx.layernorm(y[h], self.W[a["g_w"]], self.W[a["b_w"]], a["eps"]) if a["layernorm"] else
                    nx.rmsnorm(y[h], self.W[a["g_w"]], a["eps"]))
        self.buf[op.outs[0]][:] = y.reshape(-1)

    def op_add(self, op, a, token, pos):
        self.buf[op.outs[0]][:] = self.buf[op.ins[0]] + self.buf[op.ins[1]]

    def op_softcap(self, op, a, token, pos):
        self.buf[op.outs[0]][:] = nx.softcap(self.buf[op.ins[0]], a["cap"])

    def op_layernorm(self, op, a, token, pos):
        self.buf[op.outs[0]][:] = nx.layernorm(self.buf[op.ins[0]], self.W[a["g_w"]], self.W[a["b_w"]], a["eps"])

    def op_quant(self, op, a, token, pos):
        q, s = nx.quant_dynamic(self.buf[op.ins[0]])
        self.buf[op.outs[0]][:] = q
        self.buf[op.outs[1]][0] = s

    def op_matvec(self, op, a, token, pos):
        x = self.buf[op.ins[0]]
        sx = f32(a["sx_const"]) if a["sx"] is None else self.buf[a["sx"]][0]
        acc = self._acc(x, a)
        bias = None if a["bias_w"] is None else self.W[a["bias_w"]]
        out = self.buf[op.outs[0]]
        out[:] = nx.epilogue(acc, sx, self.W[a["ws_w"]], bias, out if a["accumulate"] else None)

    def _acc(self, x, a):
        """the int32 sums of a matvec, in its format (s8 | s4 | s4nl | s5nl)"""
        f, w = a.get("fmt", "s8"), self.W[a["w_w"]].reshape(a["N"], -1)
        if f == "s4":
            return nx.matvec_s4_s32(x, w, self.W[a["gs_w"]].reshape(a["N"], -1), 32)
        if f in ("s4nl", "s5nl"):
            return nx.matvec_nl_s32(x, w, self.W[a["kv_w"]], self.W[a["gs_w"]].reshape(a["N"], -1), 32)
        return nx.matvec_s8_s32(x, w)

    def op_rope(self, op, a, token, pos):
        self._rope(op, a, pos, nx)

    def _rope(self, op, a, pos, num):
        """num.rope(v, ...) with the cos/sin row of `pos` combined by num.rope_row from hi row pos / step
        and lo row pos % step of the op's tables: float (numerics) or Q15 (numerics_int)"""
        half, S = a["rot"] // 2, a["step"]
        row = lambda k, i: self.W[a[k]].reshape(-1, half)[i]                    # noqa: E731
        cs, sn = num.rope_row(row("cos_hi_w", pos // S), row("sin_hi_w", pos // S),
                              row("cos_lo_w", pos % S), row("sin_lo_w", pos % S))
        rope = num.rope
        v = self.buf[op.outs[0]]
        v[:] = rope(v, a["n_heads"], a["hs"], a["rot"], cs, sn, a["interleaved"])

    def op_kv_store(self, op, a, token, pos):
        self._kv_store(op, a, pos, nx.quant_dynamic)

    def _kv_store(self, op, a, pos, quant):
        """each head's row through quant -> (int8 row, scale), into ring slot pos % max_seq"""
        H, hs, S = a["n_heads"], a["hs"], a["max_seq"]
        x = self.buf[op.ins[0]].reshape(H, hs)
        cache, scale = self.buf[op.outs[0]].reshape(H, S, hs), self.buf[op.outs[1]].reshape(H, S)
        for h in range(H):
            cache[h, pos % S], scale[h, pos % S] = quant(x[h])

    def op_attention(self, op, a, token, pos):
        Hk, hs, S = a["n_kv"], a["hs"], a["max_seq"]
        q, kc, ks, vc, vs = (self.buf[n] for n in op.ins)
        out, s = nx.attention(q, kc.reshape(Hk, S, hs), ks.reshape(Hk, S), vc.reshape(Hk, S, hs),
                              vs.reshape(Hk, S), pos, a["scale"], a["softcap"],
                              None if a["alibi_w"] is None else self.W[a["alibi_w"]])
        self.buf[op.outs[0]][:] = out
        self.buf[op.outs[1]][0] = s

    def op_attention_f32(self, op, a, token, pos):
        Hk, hs, S = a["n_kv"], a["hs"], a["max_seq"]
        q, kc, ks, vc, vs = (self.buf[n] for n in op.ins)
        self.buf[op.outs[0]][:] = nx.attention_f32(q, kc.reshape(Hk, S, hs), ks.reshape(Hk, S), vc.reshape(Hk, S, hs),
                                                   vs.reshape(Hk, S), pos, a["scale"], a["softcap"],
                                                   None if a["alibi_w"] is None else self.W[a["alibi_w"]])

    def op_glu(self, op, a, token, pos):
        g, u = (self.buf[n] for n in op.ins)
        self.buf[op.outs[0]][:] = nx.act(g, a["act"]) * u

    def op_act(self, op, a, token, pos):
        self.buf[op.outs[0]][:] = nx.act(self.buf[op.ins[0]], a["act"])

    def op_fwht(self, op, a, token, pos):
        x = self.buf[op.outs[0]]
        x[:] = nx.fwht(x, a["block"], self.W[a["signs_w"]])

    # ---- the integer-only step (lower_int.py), mirroring firmware/tsl_int_ops.c ----
    def op_i_embed(self, op, a, token, pos):
        row, n = (token if a["src"] == "token" else pos), a["n"]
        v = ni.embed(self.W[a["table_w"]].reshape(-1, n)[row], self.W[a["fx_w"]].reshape(-1, 2)[row])
        out = self.buf[op.outs[0]]
        out[:] = ni.sat32(out.astype(np.int64) + v) if a["accumulate"] else v

    def op_i_dequant_sub(self, op, a, token, pos):
        x, q, s = (self.buf[n] for n in op.ins)
        x[:] = ni.dequant_sub(x, q, int(s[0]))

    def _i_norm(self, x, a):
        return ni.norm(x, self.W[a["g_w"]], a["gq"], None if a["b_w"] is None else self.W[a["b_w"]],
                       a["eps_q"], a["layernorm"])

    def op_i_norm(self, op, a, token, pos):
        self.buf[op.outs[0]][:] = self._i_norm(self.buf[op.ins[0]], a)

    def op_i_headnorm(self, op, a, token, pos):
        y = self.buf[op.outs[0]].reshape(a["n_heads"], a["hs"])
        for h in range(a["n_heads"]):
            y[h] = self._i_norm(y[h].copy(), a)

    def op_i_add(self, op, a, token, pos):
        self.buf[op.outs[0]][:] = ni.sat32(self.buf[op.ins[0]].astype(np.int64) + self.buf[op.ins[1]])

    def op_i_quant(self, op, a, token, pos):
        q, amax = ni.quant(self.buf[op.ins[0]])
        self.buf[op.outs[0]][:] = q
        self.buf[op.outs[1]][0] = amax

    def op_i_matvec(self, op, a, token, pos):
        x = self.buf[op.ins[0]]
        acc = self._acc(x, a)
        st = ni.step(int(self.buf[a["sx"]][0]))
        v = nx.requant_sat(acc, *nx.fx_mul_rows(st, self.W[a["wfx_w"]].reshape(-1, 2)))
        if a["bias_w"] is not None:
            v = ni.sat32(v + self.W[a["bias_w"]])
        out = self.buf[op.outs[0]]
        out[:] = ni.sat32(out.astype(np.int64) + v) if a["accumulate"] else v

    def op_i_rope(self, op, a, token, pos):
        self._rope(op, a, pos, ni)

    def op_i_kv_store(self, op, a, token, pos):
        self._kv_store(op, a, pos, ni.quant)

    def op_i_attention(self, op, a, token, pos):
        Hk, hs, S = a["n_kv"], a["hs"], a["max_seq"]
        q, kc, ks, vc, vs = (self.buf[n] for n in op.ins)
        out, amax = ni.attention(q, kc.reshape(Hk, S, hs), ks.reshape(Hk, S), vc.reshape(Hk, S, hs),
                                 vs.reshape(Hk, S), pos, (a["sc_m"], a["sc_s"]),
                                 *(None if a[k] is None else self.W[a[k]] for k in ("cap_w", "sig_w", "alibi_w")))
        self.buf[op.outs[0]][:] = out
        self.buf[op.outs[1]][0] = amax

    def op_i_glu(self, op, a, token, pos):
        g, u = (self.buf[n] for n in op.ins)
        self.buf[op.outs[0]][:] = ni.glu(g, u, None if a["gate_w"] is None else self.W[a["gate_w"]])

    def op_i_act(self, op, a, token, pos):
        self.buf[op.outs[0]][:] = ni.gate_apply(self.buf[op.ins[0]], None if a["gate_w"] is None else self.W[a["gate_w"]])

    def op_i_fwht(self, op, a, token, pos):
        x = self.buf[op.outs[0]]
        x[:] = ni.fwht(x, a["block"], self.W[a["signs_w"]])

    def op_i_to_f32(self, op, a, token, pos):
        self.buf[op.outs[0]][:] = ni.to_f32(self.buf[op.ins[0]])

    def op_i_softcap(self, op, a, token, pos):
        x = self.buf[op.outs[0]]
        x[:] = ni.softcap(x, self.W[a["cap_w"]], self.W[a["sig_w"]])
