"""What the esp32 board brings of its own (firmware/targets/xtensa_sim), on the emulated ESP32:
__divsf3 (every float division: the ESP32's FPU has no divide) against numpy's IEEE division,
__muldi3 (64-bit products without MUL32_HIGH) against Python's integers, and printf's own reading
of variadic arguments (LLVM 22's va_start is wrong on Xtensa) with arguments in registers, on the
stack and 64-bit pairs. The kernels and the example model are checked in test_kernels_targets.py,
test_targets_e2e.py and test_device_e2e.py like every emulated board's."""
import numpy as np

from conftest_tools import require_tool, require_toolchain
from tinyslm import targets
from tinyslm.boards import load_board

SPECIAL = [0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x00400000, 0x3f800000,
           0xbf800000, 0x3f800001, 0x3fffffff, 0x40000000, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000,
           0x7fc00000, 0x7f800001, 0x34000000, 0x4b000000, 0x0b000000, 0x74000000, 0x3eaaaaab, 0x00000003]


def operands(seed=0, n=3000):
    """uint32 bit patterns (a, b): every pair of SPECIAL, random finite values over the whole range,
    and quotients that land in or near the subnormals and near overflow."""
    rng = np.random.default_rng(seed)
    s = np.array(SPECIAL, dtype=np.uint32)
    a, b = np.meshgrid(s, s)
    pairs = [a.ravel(), b.ravel()]
    r = rng.integers(0, 2**32, size=(2, n), dtype=np.uint64).astype(np.uint32)
    near = (rng.integers(0, 2**23, size=(2, n)) | (rng.integers(0, 2, size=(2, n)) << 31)).astype(np.uint32)
    lo = near.copy()
    lo[0] |= (rng.integers(1, 40, size=n) << 23).astype(np.uint32)          # tiny / big -> subnormal results
    lo[1] |= (rng.integers(140, 200, size=n) << 23).astype(np.uint32)
    hi = near.copy()
    hi[0] |= (rng.integers(200, 255, size=n) << 23).astype(np.uint32)        # big / small -> near overflow
    hi[1] |= (rng.integers(60, 127, size=n) << 23).astype(np.uint32)
    a = np.concatenate([pairs[0], r[0], lo[0], hi[0]])
    b = np.concatenate([pairs[1], r[1], lo[1], hi[1]])
    return a, b


PROGRAM = r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>
static const uint32_t A[%(n)d] = {%(a)s};
static const uint32_t B[%(n)d] = {%(b)s};
static const uint64_t X[%(m)d] = {%(x)s};
static const uint64_t Y[%(m)d] = {%(y)s};
int main(void)
{
    for (int i = 0; i < %(n)d; i++) {
        volatile float fa, fb;
        float q;
        uint32_t u;
        memcpy((void *)&fa, &A[i], 4);
        memcpy((void *)&fb, &B[i], 4);
        q = fa / fb;
        memcpy(&u, &q, 4);
        printf("d %%08lx\n", (unsigned long)u);
    }
    for (int i = 0; i < %(m)d; i++) {
        volatile uint64_t x = X[i], y = Y[i];
        const uint64_t p = x * y;
        printf("m %%08lx%%08lx\n", (unsigned long)(p >> 32), (unsigned long)p);
    }
    printf("v %%d %%s %%lld %%c %%d %%d %%lld %%u %%x %%d\n", -7, "s", (long long)-1234567890123LL, 'z', 5, 6,
           (long long)1 << 40, 4000000000u, 0xbeefu, -11);
    return 0;
}
"""


def test_divsf3_muldi3_printf(tmp_path):
    board = load_board("esp32")
    require_toolchain(board)
    require_tool(board.emulator["cmd"][0], board.emulator.get("install", ""))
    a, b = operands()
    rng = np.random.default_rng(1)
    x = [int(v) for v in rng.integers(0, 2**64, size=300, dtype=np.uint64)] + [0, 1, 2**64 - 1, 2**63, 2**32 - 1]
    y = [int(v) for v in rng.integers(0, 2**64, size=300, dtype=np.uint64)] + [2**64 - 1, 2**64 - 1, 2**64 - 1, 3, 2**32 + 1]
    src = tmp_path / "arith.c"
    src.write_text(PROGRAM % dict(n=len(a), m=len(x), a=",".join(f"{v:#x}u" for v in a), b=",".join(f"{v:#x}u" for v in b),
                                  x=",".join(f"{v:#x}ull" for v in x), y=",".join(f"{v:#x}ull" for v in y)))
    exe = targets.build(board, [src], [], tmp_path / "b", name="arith", extra_cflags=["-Wall", "-Werror"])
    rc, out = targets.run(board, exe, timeout=120)
    lines = out.decode().splitlines()
    assert rc == 0, out.decode()[-500:]
    got_d = np.array([int(l[2:], 16) for l in lines if l.startswith("d ")], dtype=np.uint32)
    with np.errstate(all="ignore"):
        want = (a.view(np.float32) / b.view(np.float32)).view(np.uint32)
    assert len(got_d) == len(a)
    nan_w, nan_g = np.isnan(want.view(np.float32)), np.isnan(got_d.view(np.float32))
    assert (nan_w == nan_g).all(), f"NaN where numpy has none or back: {np.flatnonzero(nan_w != nan_g)[:5]}"
    bad = np.flatnonzero((got_d != want) & ~nan_w)
    assert not len(bad), "a / b differs from IEEE: " + ", ".join(
        f"{a[i]:08x}/{b[i]:08x}: {got_d[i]:08x} != {want[i]:08x}" for i in bad[:8])
    got_m = [int(l[2:], 16) for l in lines if l.startswith("m ")]
    assert got_m == [(p * q) % 2**64 for p, q in zip(x, y)]
    assert f"v -7 s -1234567890123 z 5 6 {1 << 40} 4000000000 beef -11" in lines
