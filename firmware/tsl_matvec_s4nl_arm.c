/* tsl_matvec_s4nl_arm.c -- the Cortex-M SIMD paths of tsl_matvec_s4nl.c: MVE (Helium) and the
 * Armv7E-M DSP extension (SMLAD), with its host emulation (TSL_EMULATE_DSP). Both cover every group.
 *
 * DSP: a code byte b (k = 2j low nibble, 2j + 1 high) becomes the word T[b] of its two levels as
 * int16 lanes, from a 256-entry table built per call (1 KiB on the stack); x is expanded per chunk of
 * TSL_S4NL_KC k into int16 pairs X[j] = (x[2j], x[2j+1]) (1 KiB). Then per byte LDRB, LDR T[b], SMLAD
 * with X[j]: 2 products of |.| <= 127 * 128 per SMLAD, a group's int32 dot < 2^19, exact. Two rows
 * per pass share the X loads (an odd last row goes as a pair with itself). Per pair of rows and group
 * (64 MACs): 8 LDRD of X + 32 x (LDRB, LDR, SMLAD) + 7 for the scales and the loop = 111, i.e. 1.73
 * per MAC (the uniform grid's loop: 1.66); measured 1.76-1.78 on the M4 at 128..576 x 256..1536.
 * MVE: per group, one VLDRB of the 16 code bytes, whose nibbles (VAND, VSHR) index kv by two byte
 * gathers (VLDRB gather: MVE has no VTBL), and two VMLADAV with x split by VLD2 into even and odd k;
 * two rows per pass share the VLD2: 21 instructions per pair of rows and group. */
#include "tsl_matvec_s4nl_isa.h"

#if defined(TSL_ARM_MVE) || defined(TSL_ARM_DSP)
#if defined(TSL_ARM_MVE)
/* the dot of one group: 16 code bytes w, x split into even and odd k */
static inline __attribute__((always_inline)) int32_t tsl_mve_s4nl_dot(const uint8_t *w, const int8x16x2_t xv,
                                                                      const int8_t *kv)
{
    const uint8x16_t c = vldrbq_u8(w);
    const int32_t d = vmladavq_s8(vldrbq_gather_offset_s8(kv, vandq_u8(c, vdupq_n_u8(15))), xv.val[0]);
    return vmladavaq_s8(d, vldrbq_gather_offset_s8(kv, vshrq_n_u8(c, 4)), xv.val[1]);
}
#elif defined(TSL_ARM_DSP)
#define TSL_S4NL_KC 512     /* x chunk expanded on the stack: 2 * KC bytes */

static uint32_t tsl_pair16(int32_t lo, int32_t hi)
{
    return (uint32_t)(uint16_t)(int16_t)lo | ((uint32_t)(uint16_t)(int16_t)hi << 16);
}

/* T[b] = (kv[b & 15], kv[b >> 4]) as int16 lanes */
static void tsl_s4nl_table(const int8_t *kv, uint32_t *T)
{
    uint32_t lo[16];
    for (int32_t i = 0; i < 16; i++) lo[i] = tsl_pair16(kv[i], 0);
    for (int32_t hi = 0; hi < 16; hi++, T += 16) {
        const uint32_t h = tsl_pair16(0, kv[hi]);
        _Pragma("GCC unroll 16") for (int32_t i = 0; i < 16; i++) T[i] = h | lo[i];
    }
}

/* PKHBT (low half of a, low half of b on top) and PKHTB (high half of a, high half of b below) */
#if defined(TSL_EMULATE_DSP)
static inline uint32_t tsl_pkhbt16(uint32_t a, uint32_t b) { return (a & 0xFFFFu) | b << 16; }
static inline uint32_t tsl_pkhtb16(uint32_t a, uint32_t b) { return (a & 0xFFFF0000u) | b >> 16; }
#else
static inline __attribute__((always_inline)) uint32_t tsl_pkhbt16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline __attribute__((always_inline)) uint32_t tsl_pkhtb16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#endif

/* xb[j] = (x[2j], x[2j+1]) as int16 lanes, j < 2 * n4 */
static void tsl_s4nl_expand(const int8_t *x, uint32_t *xb, int32_t n4)
{
    for (int32_t i = 0; i < n4; i++, x += 4, xb += 2) {
        const uint32_t v = *(const tsl_u32u *)x, e = tsl_sxtb16(v), o = tsl_sxtb16_ror8(v);   /* x0 x2, x1 x3 */
        xb[0] = tsl_pkhbt16(e, o);
        xb[1] = tsl_pkhtb16(o, e);
    }
}

#if !defined(TSL_EMULATE_DSP)
/* The hot loop of the DSP path. For each of np pairs of rows (w, w + ws; ws = K / 2 bytes, the next
 * pair 2 ws on, the scales gs and gs + ws / 16, 2 ws / 16 on), acc[0..1] += the sums over the ng
 * groups of the chunk, acc 2 on; ng, np >= 1. Registers: xp r0, w r1, ws r2, T r3, X words r4 r5,
 * group sums r6 r7 (row 0, 1), codes and levels r8 r9, gs r10, row sums r11 r12, lr the group count;
 * the stack: xb and ng, the steps of w and gs from the end of a pair to the next, the arguments acc
 * and np. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static void tsl_dsp_s4nl_rows2(const uint32_t *xb, const uint8_t *w, int32_t ws,
                                                                const uint32_t *T, const int8_t *gs, int32_t ng,
                                                                int32_t *acc, int32_t np)
{
#define TSL_S4NL_LOAD "ldrb r8, [r1, r2]\n ldrb r9, [r1], #1\n ldr r8, [r3, r8, lsl #2]\n ldr r9, [r3, r9, lsl #2]\n"
#define TSL_S4NL_MAC(x) TSL_S4NL_LOAD "smlad r7, r8, " x ", r7\n smlad r6, r9, " x ", r6\n"
#define TSL_S4NL_X "ldrd r4, r5, [r0], #8\n" TSL_S4NL_MAC("r4") TSL_S4NL_MAC("r5")
    __asm volatile(
        "push {r4-r11, lr}\n"
        "sub sp, sp, #16\n"                                  /* gs, ng, acc, np at sp + 52.. 64 */
        "ldr r10, [sp, #52]\n ldr lr, [sp, #56]\n strd r0, lr, [sp]\n"
        "lsl r4, r2, #1\n sub r4, r4, lr, lsl #4\n lsr r5, r2, #3\n sub r5, r5, lr\n strd r4, r5, [sp, #8]\n"
        "0:\n"
        "ldr r8, [sp, #60]\n ldrd r11, r12, [r8]\n"
        "1:\n"
        "ldrd r4, r5, [r0], #8\n" TSL_S4NL_LOAD "smuad r7, r8, r4\n smuad r6, r9, r4\n" TSL_S4NL_MAC("r5")
        TSL_S4NL_X TSL_S4NL_X TSL_S4NL_X TSL_S4NL_X TSL_S4NL_X TSL_S4NL_X TSL_S4NL_X
        "add r8, r10, r2, lsr #4\n ldrsb r8, [r8]\n ldrsb r9, [r10], #1\n"
        "mla r12, r8, r7, r12\n mla r11, r9, r6, r11\n"
        "subs lr, lr, #1\n bne 1b\n"
        "ldr r8, [sp, #60]\n strd r11, r12, [r8], #8\n str r8, [sp, #60]\n"
        "ldrd r8, r9, [sp, #8]\n add r1, r1, r8\n add r10, r10, r9\n ldrd r0, lr, [sp]\n"
        "ldr r8, [sp, #64]\n subs r8, r8, #1\n str r8, [sp, #64]\n bne 0b\n"
        "add sp, sp, #16\n"
        "pop {r4-r11, pc}\n");
#undef TSL_S4NL_X
#undef TSL_S4NL_MAC
#undef TSL_S4NL_LOAD
}
#pragma GCC diagnostic pop
#else
/* tsl_dsp_s4nl_rows2 on the emulated instructions, in the same order */
static void tsl_dsp_s4nl_rows2(const uint32_t *xb, const uint8_t *w, int32_t ws, const uint32_t *T,
                               const int8_t *gs, int32_t ng, int32_t *acc, int32_t np)
{
    for (int32_t p = 0; p < np; p++, w += 2 * ws, gs += ws / 8, acc += 2) {
        const uint32_t *xp = xb;
        const uint8_t *wp = w;
        int32_t a0 = acc[0], a1 = acc[1];
        for (int32_t g = 0; g < ng; g++) {
            int32_t d0 = 0, d1 = 0;
            for (int32_t j = 0; j < TSL_S4_GROUP / 2; j++, wp++, xp++) {
                d1 = tsl_smlad(T[wp[ws]], *xp, d1);
                d0 = tsl_smlad(T[wp[0]], *xp, d0);
            }
            a1 += (int32_t)gs[ws / 16 + g] * d1;
            a0 += (int32_t)gs[g] * d0;
        }
        acc[0] = a0;
        acc[1] = a1;
    }
}
#endif
#endif

int32_t tsl_s4nl_acc_arm(TSL_S4NL_ACC_ARGS)
{
    const int32_t G = K / TSL_S4_GROUP;
#if defined(TSL_ARM_MVE)
    for (int32_t n = 0; n < N; n += 2) {
        const int32_t r1 = n + 1 < N ? K / 2 : 0;   /* an odd last row pairs with itself */
        const uint8_t *wr = w + (intptr_t)n * (K / 2);
        const int8_t *gr = gs + (intptr_t)n * G;
        int32_t a0 = 0, a1 = 0;
        for (int32_t g = 0; g < G; g++) {
            const int8x16x2_t xv = vld2q_s8(x + 32 * g);   /* even k, odd k */
            a0 += (int32_t)gr[g] * tsl_mve_s4nl_dot(wr + 16 * g, xv, kv);
            a1 += (int32_t)gr[r1 / 16 + g] * tsl_mve_s4nl_dot(wr + r1 + 16 * g, xv, kv);
        }
        acc[n] = a0;
        if (r1) acc[n + 1] = a1;
    }
#else
    uint32_t T[256], xb[TSL_S4NL_KC / 2];
    tsl_s4nl_table(kv, T);
    for (int32_t n = 0; n < N; n++) acc[n] = 0;
    for (int32_t c = 0; c < K; c += TSL_S4NL_KC) {
        const int32_t kc = K - c < TSL_S4NL_KC ? K - c : TSL_S4NL_KC;
        tsl_s4nl_expand(x + c, xb, kc / 4);
        if (N >= 2)
            tsl_dsp_s4nl_rows2(xb, w + c / 2, K / 2, T, gs + c / TSL_S4_GROUP, kc / TSL_S4_GROUP, acc, N / 2);
        if (N % 2) {   /* the last row, as a pair with itself */
            int32_t a[2] = {acc[N - 1], 0};
            tsl_dsp_s4nl_rows2(xb, w + (intptr_t)(N - 1) * (K / 2) + c / 2, 0, T,
                               gs + (intptr_t)(N - 1) * G + c / TSL_S4_GROUP, kc / TSL_S4_GROUP, a, 1);
            acc[N - 1] = a[0];
        }
    }
#endif
    return G;
}
#else
typedef int tsl_matvec_s4nl_arm_unused;   /* ISO C: no empty translation unit */
#endif
