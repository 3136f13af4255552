"""The vector paths of the float kernels (firmware/tsl_vec_f32.h: NEON, AVX2) on adversarial inputs,
bit-exact against tinyslm/numerics.py.

Inputs: products at k + 0.5 and one ulp either side (the rounding rule), a maximum whose x * (127 /
amax) lands above 127 (the clamp), zeros of both signs, denormals, vectors so small that 127 / amax
is inf, exp arguments around -87, at exact integers of x * log2(e) and far out of range, huge GELU
inputs whose cubes overflow, and lengths around every multiple of 4, 8, 16 and 32 lanes (the vector,
the 4-vector loop, the scalar tail). One program (tests/kernel_cases.py's format) runs on the host's
portable C, the NEON path on SIMDe, each x86 run-time path (TSL_HOST_SIMD), and the rpi5 and rpi4
builds under qemu-aarch64 (plus mps2-an386, whose float kernels stay scalar). The disassembly shows
that the vector paths are compiled in and that no fused multiply-add is.
"""
import platform
import re

import numpy as np
import pytest

import kernel_cases as kc
from conftest_tools import require_tool, require_toolchain
from tinyslm import numerics as nx
from tinyslm import targets
from tinyslm.boards import ROOT, load_board

f32 = np.float32
FIRMWARE = ROOT / "firmware"
SOURCES = [FIRMWARE / f for f in ("tsl_elementwise_f32.c", "tsl_norm_f32.c", "tsl_matvec_s8.c")]
LENGTHS = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100, 257]
CF = kc._cf
BUILDS = {  # name -> (board, defines, TSL_HOST_SIMD)
    "host-portable": ("host", {"TSL_PORTABLE": None}, None),
    "host-neon-simde": ("host", {"TSL_SIMDE_NEON": None}, None),
    "host-x86-portable": ("host", None, "portable"),
    "host-x86-avx2": ("host", None, "avx2"),
    "host-x86-best": ("host", None, None),
    "rpi5": ("rpi5", None, None),
    "rpi4": ("rpi4", None, None),
    "mps2-an386": ("mps2-an386", None, None),
}
FMA = re.compile(r"\t(v?f(n)?m(la|ls|add|sub)[a-z0-9.]*|vf(n)?m(add|sub)[0-9a-z]*)\s")


def tie_inputs(rng, n):
    """x with x * (127 / max|x|) at the rounding rule's edges, for a few kinds of amax."""
    kind = n % 3
    amax = {0: f32(127), 1: f32(254), 2: f32(rng.uniform(0.01, 50))}[kind]
    inv = f32(127) / amax
    k = rng.integers(-126, 127, n).astype(f32)
    t = (k + f32(0.5)) if kind == 0 else k
    x = (t * (f32(2) if kind == 1 else f32(1)) + (f32(1) if kind == 1 else f32(0))).astype(f32)  # kind 1: odd -> .5
    if kind == 2:
        x = (rng.uniform(-1, 1, n) * amax).astype(f32)
        y = (np.round(x * inv * 2) / 2).astype(f32)            # nearest multiple of 0.5 ...
        x = (y / inv).astype(f32)                               # ... pulled back: products within an ulp of it
    step = rng.integers(-1, 2, n)
    x = np.where(step > 0, np.nextafter(x, f32(np.inf)), np.where(step < 0, np.nextafter(x, f32(-np.inf)), x)).astype(f32)
    x = np.clip(x, -amax, amax).astype(f32)
    if n:
        x[rng.integers(0, n)] = amax if rng.integers(0, 2) else -amax
    return x


def exp_args(rng, n):
    """Arguments around the edges of tsl_exp_neg and of the activations built on it."""
    special = np.array([0, -0.0, 1e-40, -1e-40, 1e-45, -87, -87.00001, -86.99999, -88, 87, 88, -100, 100, 1e30, -1e30,
                        3e12, -3e12, 1e20, -1e20, 0.5, -0.5, 20, -20, 44, -44, 9.7, -9.7], f32)
    ints = -(np.arange(1, 126) / 1.44269504).astype(f32)        # x * log2(e) at or next to an integer
    pool = np.concatenate([special, ints, np.nextafter(ints, f32(0)), np.nextafter(ints, f32(-np.inf)),
                           (rng.standard_normal(200) * 6).astype(f32)])
    return rng.choice(pool, n).astype(f32)


def make_cases(seed=1):
    rng = np.random.default_rng(seed)
    B = kc.Builder()

    def add(name, exp, call, init=None):
        B.add(name, exp, init=init, build=call)

    def quant(name, x):
        q, s = nx.quant_dynamic(x)
        n = len(x)
        add(f"quant_dynamic {name} n={n}", np.concatenate([q.view(np.uint8), np.frombuffer(f32(s).tobytes(), np.uint8)]),
            lambda A, x=x, n=n: f"{{ float s = tsl_quant_dynamic_f32({A(x, 'float')}, (int8_t *)out, {n}); "
            f"memcpy(out + {n}, &s, 4); }}")

    for n in LENGTHS:
        quant("ties", tie_inputs(rng, n))
        if n:
            z = np.zeros(n, f32)
            z[::2] = -0.0
            quant("zeros", z)
            d = (np.where(rng.integers(0, 2, n) > 0, f32(1e-41), f32(-3e-39)) * rng.integers(0, 3, n)).astype(f32)
            quant("denormals", d)                                   # 127 / amax overflows to inf
            m = (rng.standard_normal(n) * 1e-3).astype(f32)
            m[n // 2] = f32(rng.uniform(1e-38, 1e-30))
            m[-1] = f32(5e-41)
            quant("mixed scales", (m * f32(1e6) if n % 2 else m).astype(f32))
            amax = f32(rng.uniform(1e-3, 1e3))
            c = (rng.uniform(-1, 1, n) * amax).astype(f32)
            c[rng.integers(0, n, 1 + n // 8)] = -amax                # several maxima: x * inv above 127 when it rounds up
            quant("clamp", c)
            x = (c * f32(rng.uniform(0.5, 2.0))).astype(f32)
            sc = f32(rng.choice([0.37, 127 / 3.1, 1e38]))      # 1e38: products overflow to +-inf, then clamp
            add(f"quant_mul s={sc} n={n}", nx.quant_f32(x * sc).view(np.uint8),
                lambda A, x=x, sc=sc, n=n: f"tsl_quant_mul_f32({A(x, 'float')}, {CF(sc)}, (int8_t *)out, {n});")
            add(f"absmax n={n}", np.frombuffer(f32(np.max(np.abs(d))).tobytes(), np.uint8),
                lambda A, d=d, n=n: f"{{ float a = tsl_absmax_f32({A(d, 'float')}, {n}); memcpy(out, &a, 4); }}")
        x = exp_args(rng, n)
        for code in range(4):
            add(f"act {code} n={n}", nx.act(x, code).astype(f32),
                lambda A, x=x, n=n, code=code: f"tsl_act_f32({A(x, 'float')}, (float *)out, {n}, {code});")
            u = (rng.standard_normal(n) * 3).astype(f32)
            add(f"glu {code} n={n}", (nx.act(x, code) * u).astype(f32),
                lambda A, x=x, u=u, n=n, code=code:
                f"tsl_glu_f32({A(x, 'float')}, {A(u, 'float')}, (float *)out, {n}, {code});")
        # in place: h == u (the pool's and the model's buffers may alias elementwise)
        u = (rng.standard_normal(n)).astype(f32)
        add(f"glu in place n={n}", (nx.act(x, 0) * u).astype(f32),
            lambda A, x=x, n=n: f"tsl_glu_f32({A(x, 'float')}, (float *)out, (float *)out, {n}, 0);", init=u)
        cap = f32(rng.choice([0.5, 30.0, 50.0]))
        s = exp_args(rng, n) * f32(2)
        add(f"softcap n={n} cap={cap}", nx.softcap(s, cap), lambda A, n=n, cap=cap: f"tsl_softcap_f32((float *)out, {n}, {CF(cap)});",
            init=s)
        a, b = (rng.standard_normal(n) * 1e3).astype(f32), (rng.standard_normal(n) * 1e-3).astype(f32)
        if n:
            a[0], b[0] = f32(1e-40), f32(-1e-40)
        add(f"add n={n}", (a + b).astype(f32), lambda A, b=b, n=n: f"tsl_add_f32((float *)out, {A(b, 'float')}, {n});", init=a)
        q = rng.integers(-127, 128, n).astype(np.int8)
        sc = f32(rng.uniform(1e-4, 1.0))
        r = (rng.standard_normal(n)).astype(f32)
        add(f"dequant_sub n={n}", (r - q.astype(f32) * sc).astype(f32),
            lambda A, q=q, sc=sc, n=n: f"tsl_dequant_sub_f32((float *)out, {A(q, 'int8_t')}, {A(np.array([sc]), 'float')}, {n});",
            init=r)
        if n:
            table = rng.integers(-128, 128, (3, n)).astype(np.int8)
            tsc = rng.uniform(1e-3, 0.1, 3).astype(f32)
            for acc in (0, 1):
                d = (rng.standard_normal(n)).astype(f32)
                e = (table[2].astype(f32) * tsc[2]).astype(f32)
                add(f"embed acc={acc} n={n}", (d + e if acc else e).astype(f32),
                    lambda A, table=table, tsc=tsc, n=n, acc=acc:
                    f"tsl_embed_s8({A(table, 'int8_t')}, {A(tsc, 'float')}, 2, (float *)out, {n}, {acc});", init=d)
            xs = (rng.standard_normal(n) * rng.choice([1e-20, 1.0, 1e15])).astype(f32)
            g, bb = (rng.standard_normal(n)).astype(f32), (rng.standard_normal(n)).astype(f32)
            add(f"rmsnorm n={n}", nx.rmsnorm(xs, g, 1e-5).astype(f32),
                lambda A, xs=xs, g=g, n=n: f"tsl_rmsnorm_f32({A(xs, 'float')}, {A(g, 'float')}, {CF(1e-5)}, (float *)out, {n});")
            add(f"layernorm n={n}", nx.layernorm(xs, g, bb, 1e-5).astype(f32),
                lambda A, xs=xs, g=g, bb=bb, n=n:
                f"tsl_layernorm_f32({A(xs, 'float')}, {A(g, 'float')}, {A(bb, 'float')}, {CF(1e-5)}, (float *)out, {n});")
            add(f"rmsnorm in place n={n}", nx.rmsnorm(xs, g, 1e-6).astype(f32),
                lambda A, g=g, n=n: f"tsl_rmsnorm_f32((float *)out, {A(g, 'float')}, {CF(1e-6)}, (float *)out, {n});", init=xs)
        # the matvec epilogue: every (bias, accumulate), rows around the vector widths
        K = 40
        xq, w = rng.integers(-127, 128, K).astype(np.int8), rng.integers(-128, 128, (n, K)).astype(np.int8)
        sx, ws = f32(rng.uniform(1e-3, 0.1)), rng.uniform(1e-3, 0.02, n).astype(f32)
        bias = (rng.standard_normal(n)).astype(f32) if n % 2 else None
        dst = (rng.standard_normal(n)).astype(f32) if n % 4 >= 2 else None
        add(f"matvec_s8_f32 epilogue N={n} bias={bias is not None} acc={dst is not None}",
            nx.epilogue(nx.matvec_s8_s32(xq, w), sx, ws, bias, dst).astype(f32),
            lambda A, xq=xq, w=w, sx=sx, ws=ws, bias=bias, n=n, acc=dst is not None:
            f"tsl_matvec_s8_f32({A(xq, 'int8_t')}, {CF(sx)}, {A(w, 'int8_t')}, {A(ws, 'float')}, "
            f"{A(bias, 'float') if bias is not None else '0'}, (float *)out, {n}, {K}, {int(acc)});", init=dst)
    # RoPE: rotated halves of every width around the vector lengths, partial rotation, several heads
    for H, hs, rot in [(1, 2, 2), (2, 8, 6), (3, 20, 18), (2, 16, 16), (1, 64, 64), (2, 40, 34), (3, 80, 66), (1, 130, 128)]:
        for inter in (0, 1):
            v = (rng.standard_normal(H * hs) * 10).astype(f32)
            ang = rng.uniform(-3, 3, rot // 2)
            cs, sn = np.cos(ang).astype(f32), np.sin(ang).astype(f32)
            add(f"rope H={H} hs={hs} rot={rot} inter={inter}", nx.rope(v, H, hs, rot, cs, sn, inter).astype(f32),
                lambda A, H=H, hs=hs, rot=rot, cs=cs, sn=sn, inter=inter:
                f"tsl_rope_f32((float *)out, {H}, {hs}, {rot}, {A(cs, 'float')}, {A(sn, 'float')}, {inter});", init=v)
    # the KV store: heads of 64 (16-lane blocks) and 33 (a tail), one ring slot
    for H, hs, S, pos in ((3, 64, 5, 7), (2, 33, 4, 2)):
        x = np.concatenate([tie_inputs(rng, hs) * f32(0.01) for _ in range(H)]).astype(f32)
        cache, scl = np.zeros((H, S, hs), np.int8), np.zeros((H, S), f32)
        for h in range(H):
            cache[h, pos % S], scl[h, pos % S] = nx.quant_dynamic(x[h * hs:(h + 1) * hs])
        add(f"kv_store H={H} hs={hs} S={S} pos={pos}",
            np.concatenate([cache.view(np.uint8).ravel(), scl.view(np.uint8).ravel()]),
            lambda A, x=x, H=H, hs=hs, S=S, pos=pos:
            f"tsl_kv_store_s8({A(x, 'float')}, (int8_t *)out, (float *)(out + {H * S * hs}), {H}, {hs}, {S}, {pos});",
            init=np.zeros(H * S * hs + 4 * H * S, np.uint8))
    return B.cases


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    with np.errstate(all="ignore"):          # the reference on inf / NaN lanes, as the kernels compute them
        cases = make_cases()
    return cases, kc.write_program(cases, tmp_path_factory.mktemp("vec") / "vec_cases.c", seed=1)


@pytest.fixture(scope="module")
def built(program, tmp_path_factory):
    cache, root = {}, tmp_path_factory.mktemp("vecbuilds")

    def get(name):
        if name not in cache:
            board, defines, _ = BUILDS[name]
            board = load_board(board)
            require_toolchain(board)
            cache[name] = board, targets.build(board, [program[1], *SOURCES], [FIRMWARE], root / name, defines=defines,
                                               name="vec_cases",
                                               extra_cflags=["-Wall", "-Werror", "-Wno-unused-variable"])
        return cache[name]
    return get


def cpu_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.parametrize("name", BUILDS)
def test_vector_paths_bit_exact(name, program, built, monkeypatch):
    board_name, defines, cap = BUILDS[name]
    if name.startswith("host-x86") and platform.machine() != "x86_64":
        pytest.skip(f"x86-64 paths: this machine is {platform.machine()}")
    if cap == "avx2" and "avx2" not in cpu_flags():
        pytest.skip("this CPU has no AVX2")
    if "simde" in name:
        require_tool("/usr/include/simde/arm/neon.h", "libsimde-dev")
    if cap:
        monkeypatch.setenv("TSL_HOST_SIMD", cap)
    else:
        monkeypatch.delenv("TSL_HOST_SIMD", raising=False)
    board, exe = built(name)
    if board.emulator["cmd"][0] != "{elf}":
        require_tool(board.emulator["cmd"][0], board.emulator.get("install", ""))
    rc, out = targets.run(board, exe, timeout=300)
    text = out.decode("utf-8", "replace")
    assert rc == 0, f"{name}: exit {rc}: {text[-500:]}"
    if cap:
        took, _ = kc.check_x86(text)
        assert took == {"portable": 0, "avx2": 1}[cap], f"{name}: the kernels took x86 path {took}"
    bad = kc.check(program[0], text)
    assert not bad, f"{name}: {len(bad)} of {len(program[0])} cases differ from numpy:\n" + "\n".join(bad[:20])


def functions(asm, names):
    """The disassembly of the functions whose name starts with one of `names`."""
    blocks = re.split(r"\n(?=[0-9a-f]+ <)", asm)
    return "\n".join(b for b in blocks if re.match(r"[0-9a-f]+ <(%s)" % "|".join(names), b))


FLOAT_KERNELS = ["tsl_quant", "tsl_dequant", "tsl_embed", "tsl_rope", "tsl_add", "tsl_softcap", "tsl_act", "tsl_glu",
                 "tsl_rmsnorm", "tsl_layernorm", "tsl_epilogue", "tsl_matvec_s8_f32"]   # name prefixes
# per build: instructions that show the vector path of each kind of op (quantize, divide, select)
VECTOR_MNEMONICS = {"rpi5": [r"fcvtzs\s+v", r"fdiv\s+v", r"(bsl|bit|bif)\s+v", r"xtn\s+v"],
                    "host-x86-best": [r"vcvttps2dq\s+%ymm", r"vdivps\s+%ymm", r"vblendvps\s+%ymm", r"vpermd\s+%ymm"]}


@pytest.mark.parametrize("name", ["rpi5", "rpi4", "host-x86-best"])
def test_vector_code_and_no_fma(name, built):
    if name.startswith("host") and platform.machine() != "x86_64":
        pytest.skip(f"x86-64 paths: this machine is {platform.machine()}")
    board, exe = built(name)
    require_tool(board.toolchain["objdump"][0], board.toolchain.get("install", ""))
    asm = functions(targets.disassemble(board, exe), FLOAT_KERNELS)
    assert asm, f"{name}: none of the float kernels in the disassembly"
    for m in VECTOR_MNEMONICS.get(name, []):
        assert re.search(m, asm), f"{name}: no {m!r} in the float kernels: the vector paths are not compiled in"
    fused = sorted(set(m.group(1) for m in FMA.finditer(asm)))
    assert not fused, f"{name}: fused multiply-add in the float kernels: {fused}"
