"""Kernel test cases: inputs and the expected outputs of tinyslm/numerics.py, as one C program.

    cases = make_cases(seed)           # list of Case: C arguments, expected output bytes
    write_program(cases, path, seed)   # kernel_cases.c: the inputs as arrays, one call per case
    check(cases, stdout) -> [problems] # the program prints a 64-bit FNV-1a hash per case (and the
                                       # bytes of small outputs); [] means bit-exact everywhere
Shapes cover every tail length of the SIMD paths (K = 0..257 around multiples of 4, 8, 16, 32, 64;
K > 512 for the chunked DSP path; N = 1..9 around blocks of 2 and 4 rows), unaligned rows, and
saturating values (all -128, all 127, mixed). On x86-64 the program also prints the path the kernels
take ("x86 level L") and tsl_x86_choose() for X86_CHOOSE (check_x86).
"""
from dataclasses import dataclass, field

import numpy as np

from tinyslm import numerics as nx

f32 = np.float32
S4_GROUP = 32
MATVEC_K = [0, 1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 257, 320]
MATVEC_K_BIG = [512, 544, 1056]
PATTERNS = ["random", "min", "max", "mixed"]
IQ4_NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113])


@dataclass
class Case:
    name: str
    call: str                                   # C statements; write the output to `out`
    out_bytes: bytes                            # expected contents of out[0:len]
    arrays: list = field(default_factory=list)  # (C name, C type, numpy array, byte offset)
    init: bytes = b""                           # initial contents of out (accumulating kernels)


def _s8(rng, shape, pattern, which):
    """int8 inputs: random, all -128, all 127, or mixed (x all -128, w alternating -128/127)."""
    if pattern == "random":
        return rng.integers(-128, 128, shape, dtype=np.int8)
    if pattern == "min":
        return np.full(shape, -128, np.int8)
    if pattern == "max":
        return np.full(shape, 127, np.int8)
    if which == "x":
        return np.full(shape, -128, np.int8)
    return np.where(np.arange(int(np.prod(shape))).reshape(shape) % 2 == 0, -128, 127).astype(np.int8)


def _f(rng, n, scale=1.0):
    return (rng.standard_normal(n) * scale).astype(f32)


class Builder:
    def __init__(self):
        self.cases = []

    def arr(self, case, a, ctype, off=0):
        name = f"c{len(self.cases)}_{len(case.arrays)}"
        case.arrays.append((name, ctype, np.ascontiguousarray(a), off))
        return f"({ctype} *)(((const uint8_t *){name}.b) + {off})" if off else f"{name}.v"

    def add(self, name, expected, init=None, build=None):
        c = Case(name, "", np.ascontiguousarray(expected).tobytes(), init=b"" if init is None else init.tobytes())
        c.call = build(lambda a, t, off=0: self.arr(c, a, t, off))
        self.cases.append(c)


def make_cases(seed=0):
    rng = np.random.default_rng(seed)
    B = Builder()
    # int8 matvec, raw accumulators: every (K, N), patterns in rotation, rows unaligned on odd cases
    shapes = [(K, N) for K in MATVEC_K for N in range(1, 10)] + [(K, N) for K in MATVEC_K_BIG for N in (1, 4, 5, 9)]
    for i, (K, N) in enumerate(shapes):
        pat = PATTERNS[i % 4]
        x, w = _s8(rng, K, pat, "x"), _s8(rng, (N, K), pat, "w")
        off = (0, 1, 0, 3)[i % 4] if i % 8 >= 4 else 0
        B.add(f"matvec_s8_s32 K={K} N={N} {pat} off={off}", nx.matvec_s8_s32(x, w),
              build=lambda A, x=x, w=w, N=N, K=K, off=off:
              f"tsl_matvec_s8_s32({A(x, 'int8_t')}, {A(w, 'int8_t', off)}, (int32_t *)out, {N}, {K});")
    # int8 matvec with the float epilogue: bias, accumulate, a row count past one row block
    for K, N, bias, accum in [(64, 8, False, False), (33, 5, True, False), (256, 9, True, True),
                              (96, 130, False, True), (17, 3, False, False)]:
        x, w = _s8(rng, K, "random", "x"), _s8(rng, (N, K), "random", "w")
        sx, ws = f32(rng.uniform(0.001, 0.1)), rng.uniform(0.001, 0.02, N).astype(f32)
        b = _f(rng, N) if bias else None
        d = _f(rng, N) if accum else None
        exp = nx.epilogue(nx.matvec_s8_s32(x, w), sx, ws, b, d).astype(f32)
        B.add(f"matvec_s8_f32 K={K} N={N} bias={bias} acc={accum}", exp, init=d,
              build=lambda A, x=x, w=w, sx=sx, ws=ws, b=b, N=N, K=K, accum=accum:
              f"tsl_matvec_s8_f32({A(x, 'int8_t')}, {_cf(sx)}, {A(w, 'int8_t')}, {A(ws, 'float')}, "
              f"{A(b, 'float') if b is not None else '0'}, (float *)out, {N}, {K}, {int(accum)});")
    # int4 matvec: packed nibbles, s8 group scales; extremes -8 / 7 and scales -127 / 127; K = 2048
    # would overflow a row sum of 16 * dot (the ISA paths shift each group's sum back first)
    # groups past blocks of 4 (G = 5, 7, 9, 11, 18), a second chunk of the NEON and x86 paths (K = 1536, 2240),
    # N past a row block (128 on MCUs, 512 on x86 and NEON)
    for i, (K, N) in enumerate([(32, 1), (32, 4), (64, 3), (96, 5), (128, 8), (256, 9), (512, 4), (64, 2),
                                (2048, 2), (2048, 3), (0, 3), (160, 7), (224, 5), (2240, 3), (384, 6), (1024, 11),
                                (576, 6), (288, 4), (352, 3), (160, 4), (1536, 5), (64, 515), (32, 130)]):
        pat = PATTERNS[i % 4]
        x = _s8(rng, K, pat, "x")
        w4 = {"random": rng.integers(0, 256, (N, K // 2)), "min": np.full((N, K // 2), 0x88),
              "max": np.full((N, K // 2), 0x77), "mixed": np.full((N, K // 2), 0x78)}[pat].astype(np.uint8)
        gs = (rng.integers(1, 128, (N, K // S4_GROUP)) * rng.choice([-1, 1], (N, K // S4_GROUP)) if pat == "random"
              else np.full((N, K // S4_GROUP), -127 if i % 2 else 127)).astype(np.int8)
        sx, ws = f32(0.01), rng.uniform(0.001, 0.02, N).astype(f32)
        b = _f(rng, N) if i % 2 else None
        exp = nx.epilogue(nx.matvec_s4_s32(x, w4, gs, S4_GROUP), sx, ws, b).astype(f32)
        B.add(f"matvec_s4_f32 K={K} N={N} {pat}", exp,
              build=lambda A, x=x, w4=w4, gs=gs, sx=sx, ws=ws, b=b, N=N, K=K:
              f"tsl_matvec_s4_f32({A(x, 'int8_t')}, {_cf(sx)}, {A(w4, 'uint8_t')}, {A(gs, 'int8_t')}, "
              f"{A(ws, 'float')}, {A(b, 'float') if b is not None else '0'}, (float *)out, {N}, {K}, 0);")
    # int4 on a non-linear grid: the same shapes and patterns over levels of both signs and the
    # extremes -127 / 127 (IQ4_NL's table, then random sorted levels), group scales within gmax(K)
    for i, (K, N) in enumerate([(32, 1), (32, 4), (64, 3), (96, 5), (128, 8), (256, 9), (512, 4), (64, 2),
                                (2048, 2), (2048, 3), (0, 3), (160, 7), (224, 5), (2240, 3), (384, 6), (1024, 11),
                                (576, 6), (288, 4), (352, 3), (160, 4), (1536, 5), (64, 515), (32, 130), (8192, 2)]):
        pat = PATTERNS[i % 4]
        x = _s8(rng, K, pat, "x")
        w4 = {"random": rng.integers(0, 256, (N, K // 2)), "min": np.full((N, K // 2), 0x00),
              "max": np.full((N, K // 2), 0xFF), "mixed": np.full((N, K // 2), 0xF0)}[pat].astype(np.uint8)
        kv = (IQ4_NL if i % 2 else np.sort(rng.integers(-127, 128, 16))).astype(np.int8)
        kv[0], kv[-1] = (-127, 127) if pat != "random" else (kv[0], kv[-1])
        gm = max(1, min(127, (2 ** 31 - 1) // (max(K, 1) * 127 * 128)))
        gs = (rng.integers(1, gm + 1, (N, K // S4_GROUP)) * rng.choice([-1, 1], (N, K // S4_GROUP)) if pat == "random"
              else np.full((N, K // S4_GROUP), -gm if i % 2 else gm)).astype(np.int8)
        sx, ws = f32(0.01), rng.uniform(0.001, 0.02, N).astype(f32)
        b = _f(rng, N) if i % 2 else None
        acc = nx.matvec_s4nl_s32(x, w4, kv, gs, S4_GROUP)
        exp = nx.epilogue(acc, sx, ws, b).astype(f32)
        B.add(f"matvec_s4nl_f32 K={K} N={N} {pat}", exp,
              build=lambda A, x=x, w4=w4, kv=kv, gs=gs, sx=sx, ws=ws, b=b, N=N, K=K:
              f"tsl_matvec_s4nl_f32({A(x, 'int8_t')}, {_cf(sx)}, {A(w4, 'uint8_t')}, {A(kv, 'int8_t')}, "
              f"{A(gs, 'int8_t')}, {A(ws, 'float')}, {A(b, 'float') if b is not None else '0'}, (float *)out, "
              f"{N}, {K}, 0);")
        if i % 3 == 0:
            B.add(f"matvec_s4nl_s32 K={K} N={N} {pat}", acc,
                  build=lambda A, x=x, w4=w4, kv=kv, gs=gs, N=N, K=K:
                  f"tsl_matvec_s4nl_s32({A(x, 'int8_t')}, {A(w4, 'uint8_t')}, {A(kv, 'int8_t')}, {A(gs, 'int8_t')}, "
                  f"(int32_t *)out, {N}, {K});")
    # int5 (s5nl): 20 bytes per group (nibbles, then the fifth bits), 32 levels with both extremes
    for i, (K, N) in enumerate([(32, 1), (64, 3), (96, 5), (0, 2), (160, 7), (352, 3), (1024, 4), (64, 130), (8192, 2)]):
        pat = PATTERNS[i % 4]
        x = _s8(rng, K, pat, "x")
        w5 = {"random": rng.integers(0, 256, (N, K * 5 // 8)), "min": np.full((N, K * 5 // 8), 0x00),
              "max": np.full((N, K * 5 // 8), 0xFF), "mixed": np.full((N, K * 5 // 8), 0xF0)}[pat].astype(np.uint8)
        kv = np.sort(rng.integers(-127, 128, 32)).astype(np.int8)
        kv[0], kv[-1] = -127, 127
        gm = max(1, min(127, (2 ** 31 - 1) // (max(K, 1) * 127 * 128)))
        gs = (rng.integers(1, gm + 1, (N, K // S4_GROUP)) * rng.choice([-1, 1], (N, K // S4_GROUP)) if pat == "random"
              else np.full((N, K // S4_GROUP), -gm if i % 2 else gm)).astype(np.int8)
        sx, ws = f32(0.01), rng.uniform(0.001, 0.02, N).astype(f32)
        b = _f(rng, N) if i % 2 else None
        acc = nx.matvec_nl_s32(x, w5, kv, gs, S4_GROUP)
        B.add(f"matvec_s5nl_f32 K={K} N={N} {pat}", nx.epilogue(acc, sx, ws, b).astype(f32),
              build=lambda A, x=x, w5=w5, kv=kv, gs=gs, sx=sx, ws=ws, b=b, N=N, K=K:
              f"tsl_matvec_s5nl_f32({A(x, 'int8_t')}, {_cf(sx)}, {A(w5, 'uint8_t')}, {A(kv, 'int8_t')}, "
              f"{A(gs, 'int8_t')}, {A(ws, 'float')}, {A(b, 'float') if b is not None else '0'}, (float *)out, "
              f"{N}, {K}, 0);")
        if i % 3 == 0:
            B.add(f"matvec_s5nl_s32 K={K} N={N} {pat}", acc,
                  build=lambda A, x=x, w5=w5, kv=kv, gs=gs, N=N, K=K:
                  f"tsl_matvec_s5nl_s32({A(x, 'int8_t')}, {A(w5, 'uint8_t')}, {A(kv, 'int8_t')}, {A(gs, 'int8_t')}, "
                  f"(int32_t *)out, {N}, {K});")
    # attention: GQA groups, head sizes around the vector widths, first and last positions; rings
    # (pos beyond the S slots: a sliding window), soft-capped scores, ALiBi biases
    for H, n_kv, hs, S, pos, sat, cap, alibi in [
            (1, 1, 16, 4, 0, False, 0, False), (2, 1, 32, 8, 5, False, 0, False), (4, 2, 64, 16, 15, False, 0, False),
            (4, 4, 64, 40, 39, True, 0, False), (3, 3, 17, 9, 8, False, 0, False), (2, 2, 8, 70, 66, False, 0, False),
            (2, 1, 64, 4, 0, False, 0, False), (2, 2, 32, 9, 8, True, 0, False), (2, 1, 48, 33, 32, False, 0, False),
            (2, 1, 32, 8, 8, False, 0, False), (2, 2, 16, 5, 23, False, 0, False), (4, 2, 64, 16, 100, True, 0, False),
            (2, 1, 32, 12, 11, False, 0.5, False), (2, 2, 16, 6, 17, False, 2.0, True), (4, 4, 32, 20, 19, False, 0, True)]:
        q = _f(rng, H * hs, 3.0)
        kc = _s8(rng, (n_kv, S, hs), "random", "w")
        if sat:   # position 2 takes all the weight: p = 32768 there, 0 elsewhere
            kc[:, 2] = np.where(q.reshape(H, hs)[::H // n_kv] >= 0, 127, -127)
        vc = np.full((n_kv, S, hs), -128, np.int8) if sat else _s8(rng, (n_kv, S, hs), "random", "w")
        ks = rng.uniform(0.005, 0.05, (n_kv, S)).astype(f32)
        if sat:
            ks[:, 2] = 10.0
        vs = rng.uniform(0.005, 0.05, (n_kv, S)).astype(f32)
        scale = f32(1 / np.sqrt(hs))
        sl = rng.uniform(0.01, 0.5, H).astype(f32) if alibi else None
        o, osc = nx.attention(q, kc, ks, vc, vs, pos, scale, cap, sl)
        exp = np.concatenate([o.view(np.uint8), np.frombuffer(f32(osc).tobytes(), np.uint8)])
        B.add(f"attention H={H} kv={n_kv} hs={hs} S={S} pos={pos}{' sat' if sat else ''} cap={cap} alibi={alibi}", exp,
              build=lambda A, q=q, kc=kc, ks=ks, vc=vc, vs=vs, H=H, n_kv=n_kv, hs=hs, S=S, pos=pos, scale=scale, cap=cap, sl=sl:
              f"{{ float r = tsl_attention_s8({A(q, 'float')}, {A(kc, 'int8_t')}, {A(ks, 'float')}, {A(vc, 'int8_t')}, "
              f"{A(vs, 'float')}, (int8_t *)out, {H}, {n_kv}, {hs}, {S}, {pos}, {_cf(scale)}, {_cf(cap)}, "
              f"{A(sl, 'float') if sl is not None else '0'}, s_qq, s_sc, s_pw, s_acc, s_ch); "
              f"memcpy(out + {H * hs}, &r, 4); }}")
    # float kernels
    for n in (1, 7, 64, 257):
        x = _f(rng, n, 4.0)
        if n == 7:
            x[:] = 0
        q, s = nx.quant_dynamic(x)
        B.add(f"quant_dynamic n={n}", np.concatenate([q.view(np.uint8), np.frombuffer(f32(s).tobytes(), np.uint8)]),
              build=lambda A, x=x, n=n: f"{{ float s = tsl_quant_dynamic_f32({A(x, 'float')}, (int8_t *)out, {n}); "
              f"memcpy(out + {n}, &s, 4); }}")
        g, b = _f(rng, n), _f(rng, n)
        B.add(f"rmsnorm n={n}", nx.rmsnorm(x + f32(1), g, 1e-5).astype(f32),
              build=lambda A, x=x + f32(1), g=g, n=n: f"tsl_rmsnorm_f32({A(x, 'float')}, {A(g, 'float')}, {_cf(1e-5)}, (float *)out, {n});")
        B.add(f"layernorm n={n}", nx.layernorm(x + f32(1), g, b, 1e-5).astype(f32),
              build=lambda A, x=x + f32(1), g=g, b=b, n=n:
              f"tsl_layernorm_f32({A(x, 'float')}, {A(g, 'float')}, {A(b, 'float')}, {_cf(1e-5)}, (float *)out, {n});")
    for H, hs, layer in [(4, 16, 0), (2, 16, 1), (1, 64, 0), (3, 17, 1)]:
        x = _f(rng, H * hs, 3.0)
        g, b = _f(rng, hs), _f(rng, hs)
        exp = np.concatenate([(nx.layernorm(h, g, b, 1e-6) if layer else nx.rmsnorm(h, g, 1e-6)).astype(f32)
                              for h in x.reshape(H, hs)])
        B.add(f"headnorm H={H} hs={hs} layer={layer}", exp, init=x,
              build=lambda A, H=H, hs=hs, g=g, b=b, layer=layer:
              f"tsl_headnorm_f32((float *)out, {A(g, 'float')}, {A(b, 'float')}, {_cf(1e-6)}, {H}, {hs}, {layer});")
    for n, cap in ((7, 30.0), (64, 0.75)):
        x, y = _f(rng, n, 50.0), _f(rng, n)
        B.add(f"add n={n}", (x + y).astype(f32), init=x,
              build=lambda A, y=y, n=n: f"tsl_add_f32((float *)out, {A(y, 'float')}, {n});")
        B.add(f"softcap n={n} cap={cap}", nx.softcap(x, cap), init=x,
              build=lambda A, n=n, cap=cap: f"tsl_softcap_f32((float *)out, {n}, {_cf(cap)});")
    for H, hs, rot, inter in [(2, 8, 8, 0), (2, 8, 8, 1), (3, 16, 8, 0), (1, 64, 32, 1)]:
        v = _f(rng, H * hs)
        ang = rng.uniform(-3, 3, rot // 2)
        cs, sn = np.cos(ang).astype(f32), np.sin(ang).astype(f32)
        B.add(f"rope H={H} hs={hs} rot={rot} inter={inter}", nx.rope(v, H, hs, rot, cs, sn, inter).astype(f32), init=v,
              build=lambda A, H=H, hs=hs, rot=rot, cs=cs, sn=sn, inter=inter:
              f"tsl_rope_f32((float *)out, {H}, {hs}, {rot}, {A(cs, 'float')}, {A(sn, 'float')}, {inter});")
    xs = np.concatenate([_f(rng, 60, 3.0), np.array([0, -0.0, 1e-8, -1e-8, 20, -20, 88, -88, -100, 100], f32)])
    for code in (0, 1, 2, 3):
        B.add(f"act {code}", nx.act(xs, code).astype(f32),
              build=lambda A, code=code: f"tsl_act_f32({A(xs, 'float')}, (float *)out, {len(xs)}, {code});")
        u = _f(rng, len(xs))
        B.add(f"glu {code}", (nx.act(xs, code) * u).astype(f32),
              build=lambda A, code=code, u=u: f"tsl_glu_f32({A(xs, 'float')}, {A(u, 'float')}, (float *)out, {len(xs)}, {code});")
    table, sc = _s8(rng, (5, 24), "random", "w"), rng.uniform(0.01, 0.1, 5).astype(f32)
    for accum in (0, 1):
        d = _f(rng, 24)
        exp = table[3].astype(f32) * sc[3]
        B.add(f"embed acc={accum}", (d + exp if accum else exp).astype(f32), init=d,
              build=lambda A, accum=accum: f"tsl_embed_s8({A(table, 'int8_t')}, {A(sc, 'float')}, 3, (float *)out, 24, {accum});")
    for H, hs, S, pos in ((3, 16, 6, 4), (2, 8, 4, 9)):       # the second a ring: slot pos % S
        x = _f(rng, H * hs, 2.0)
        cache, scl = np.zeros((H, S, hs), np.int8), np.zeros((H, S), f32)
        for h in range(H):
            cache[h, pos % S], scl[h, pos % S] = nx.quant_dynamic(x[h * hs:(h + 1) * hs])
        B.add(f"kv_store S={S} pos={pos}", np.concatenate([cache.view(np.uint8).ravel(), scl.view(np.uint8).ravel()]),
              init=np.zeros(H * S * hs + 4 * H * S, np.uint8),
              build=lambda A, x=x, H=H, hs=hs, S=S, pos=pos:
              f"tsl_kv_store_s8({A(x, 'float')}, (int8_t *)out, (float *)(out + {H * S * hs}), {H}, {hs}, {S}, {pos});")
    return B.cases


def _cf(v):
    """A float32 as an exact C literal."""
    return f"{float(f32(v)).hex()}f" if np.isfinite(v) else "0.0f"


_CT = {"int8_t": np.int8, "uint8_t": np.uint8, "float": f32, "int32_t": np.int32}


def _c_array(name, ctype, a, off):
    """A union of the values and their bytes; `off` bytes of padding before them (unaligned rows)."""
    a = np.asarray(a).astype(_CT[ctype]).ravel()
    n = max(1, a.size)
    if ctype == "float":
        if off:
            return _padded(name, a.view(np.uint8), off)
        body = ",".join(f"0x{u:08x}u" for u in a.view(np.uint32)) or "0"
        return f"static const union {{ uint32_t u[{n}]; float v[{n}]; }} {name} {ALIGN} = {{{{{body}}}}};\n"
    if off:
        return _padded(name, a.view(np.uint8), off)
    body = ",".join(str(int(v)) for v in a) or "0"
    return f"static const union {{ {ctype} v[{n}]; uint8_t b[1]; }} {name} {ALIGN} = {{{{{body}}}}};\n"


ALIGN = "__attribute__((aligned(16)))"

# tsl_x86_choose(has_avx2, has_vnni, TSL_HOST_SIMD) -> level (0 portable, 1 AVX2, 2 AVX-512 VNNI)
X86_CHOOSE = [((1, 1, None), 2), ((1, 0, None), 1), ((0, 0, None), 0), ((0, 1, None), 0),
              ((1, 1, "avx2"), 1), ((1, 1, "portable"), 0), ((1, 0, "avx512vnni"), 1), ((0, 0, "avx2"), 0),
              ((1, 1, "avx512vnni"), 2), ((1, 1, "other"), 2)]   # the aligned fast paths run unless a case asks for an offset


def _padded(name, b, off):
    body = ",".join(str(int(v)) for v in [0] * off + list(b))
    return f"static const struct {{ uint8_t b[{off + len(b)}]; }} {name} {ALIGN} = {{{{{body}}}}};\n"


HEADER = r"""/* kernel_cases.c -- generated by tests/kernel_cases.py (seed %(seed)d) from tinyslm/numerics.py.
 * Do not edit. Prints "case <i> <fnv1a64>" per case, "data <i> <hex>" for outputs up to 64 bytes. */
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include "tsl_kernels.h"

static uint8_t out[%(maxout)d] __attribute__((aligned(16)));
static int8_t s_qq[256];
static float s_sc[256], s_ch[16];
static int32_t s_pw[256], s_acc[1024];

static void emit(int id, uint32_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < n; i++) h = (h ^ out[i]) * 0x100000001b3ull;
    printf("case %%d %%08lx%%08lx\n", id, (unsigned long)(h >> 32), (unsigned long)(h & 0xffffffffu));
    if (n <= 64) {
        printf("data %%d ", id);
        for (uint32_t i = 0; i < n; i++) printf("%%02x", (unsigned)out[i]);
        printf("\n");
    }
}
"""


def write_program(cases, path, seed=0):
    parts = [HEADER % dict(seed=seed, maxout=max(max(len(c.out_bytes), len(c.init)) for c in cases) + 16)]
    for c in cases:
        for name, ctype, a, off in c.arrays:
            parts.append(_c_array(name, ctype, a, off))
        if c.init:
            parts.append(_c_array(f"init{cases.index(c)}", "uint8_t", np.frombuffer(c.init, np.uint8), 0))
    parts.append("int main(void)\n{")
    parts.append("#if defined(TSL_X86)")
    parts.append('    printf("x86 level %d\\n", tsl_x86_level());')
    for i, ((a, v, cap), _) in enumerate(X86_CHOOSE):
        c = "0" if cap is None else f'"{cap}"'
        parts.append(f'    printf("x86 choose {i} %d\\n", tsl_x86_choose({a}, {v}, {c}));')
    parts.append("#endif")
    for i, c in enumerate(cases):
        parts.append(f"    /* {c.name} */")
        parts.append(f"    memcpy(out, init{i}.v, {len(c.init)});" if c.init else f"    memset(out, 0xA5, {len(c.out_bytes) + 16});")
        parts.append(f"    {c.call}")
        parts.append(f"    emit({i}, {len(c.out_bytes)});")
    parts.append(f'    printf("done %d\\n", {len(cases)});\n    return 0;\n}}\n')
    path.write_text("\n".join(parts))
    return path


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def check_x86(text):
    """-> (the level the kernels took, list of problems with tsl_x86_choose)."""
    level, got = None, {}
    for line in text.splitlines():
        p = line.split()
        if p[:2] == ["x86", "level"]:
            level = int(p[2])
        elif p[:2] == ["x86", "choose"]:
            got[int(p[2])] = int(p[3])
    bad = [f"tsl_x86_choose{args} = {got.get(i)}, want {want}" for i, (args, want) in enumerate(X86_CHOOSE)
           if got.get(i) != want]
    return level, bad


def check(cases, text):
    """-> list of problems (empty: every case bit-exact)."""
    got, data, done = {}, {}, False
    for line in text.splitlines():
        p = line.split()
        if len(p) == 3 and p[0] == "case":
            got[int(p[1])] = int(p[2], 16)
        elif len(p) == 3 and p[0] == "data":
            data[int(p[1])] = bytes.fromhex(p[2])
        elif len(p) == 2 and p[0] == "done":
            done = int(p[1]) == len(cases)
    bad = []
    for i, c in enumerate(cases):
        if got.get(i) != fnv1a64(c.out_bytes):
            msg = f"case {i} ({c.name}): " + ("missing" if i not in got else "hash differs")
            if i in data:
                msg += f"; got {data[i].hex()} want {c.out_bytes.hex()}"
            bad.append(msg)
    if not done:
        bad.append("program did not finish (no 'done' line)")
    return bad


# Builds that each have float paths of their own: name -> (board, defines, TSL_HOST_SIMD cap)
FLOAT_BUILDS = {"host-portable": ("host", {"TSL_PORTABLE": None}, None), "host-x86-avx2": ("host", None, "avx2"),
                "host-neon-simde": ("host", {"TSL_SIMDE_NEON": None}, None), "rpi5": ("rpi5", None, None)}


def run_build(name, cases, program, sources, out, monkeypatch, builds=FLOAT_BUILDS):
    """Build `program` with `sources` (firmware/ on the include path) for builds[name], run it there
    (skipping only for a missing AVX2 CPU; a missing toolchain or emulator per require_*), and
    -> check()'s problems; on x86 with the AVX2 cap, also that the AVX2 path was taken."""
    import platform

    import pytest

    from conftest import ROOT
    from conftest_tools import require_tool, require_toolchain
    from tinyslm import targets
    from tinyslm.boards import load_board
    board_name, defines, cap = builds[name]
    if cap and (platform.machine() != "x86_64" or "avx2" not in open("/proc/cpuinfo").read()):
        pytest.skip("no AVX2 here")
    if "simde" in name:
        require_tool("/usr/include/simde/arm/neon.h", "libsimde-dev")
    board = load_board(board_name)
    require_toolchain(board)
    if board.emulator["cmd"][0] != "{elf}":
        require_tool(board.emulator["cmd"][0], board.emulator.get("install", ""))
    if cap:
        monkeypatch.setenv("TSL_HOST_SIMD", cap)
    else:
        monkeypatch.delenv("TSL_HOST_SIMD", raising=False)
    exe = targets.build(board, [program] + [ROOT / "firmware" / s for s in sources], [ROOT / "firmware"], out / name,
                        defines=defines, name=program.stem, extra_cflags=["-Wall", "-Werror", "-Wno-unused-variable"])
    rc, text = targets.run(board, exe, timeout=300)
    text = text.decode("utf-8", "replace")
    assert rc == 0, text[-500:]
    if cap:
        assert check_x86(text)[0] == 1, "the AVX2 path was not taken"
    return check(cases, text)

