/* tsl_matvec_s4_arm.c -- the Cortex-M SIMD paths of tsl_matvec_s4.c: MVE (Helium) and the
 * Armv7E-M DSP extension (SMLAD), with its host emulation (TSL_EMULATE_DSP). */
#include "tsl_matvec_s4_isa.h"

#if defined(TSL_ARM_MVE) || defined(TSL_ARM_DSP)
#if defined(TSL_ARM_DSP)
#define TSL_S4_KC 512       /* x chunk expanded on the stack: 2 * KC bytes */

static uint32_t tsl_pair16(int8_t lo, int8_t hi)
{
    return (uint32_t)(uint16_t)(int16_t)lo | ((uint32_t)(uint16_t)(int16_t)hi << 16);
}

#if !defined(TSL_EMULATE_DSP)
/* sum_g gs[g] * (w4[g] . x[g]) over G groups of one row, the hot loop of the DSP path (x expanded
 * in xb). Per weight word (8 k): the two nibble masks, 4 SXTB16, 4 SMLAD with the 4 x words of LDM;
 * 53 instructions per group of 32 MACs. Registers: xp r0, w r1, gs r2, row sum r3, x words r4 r5 r6
 * r8, group sum r7 (16 * dot), weight word r9, nibble halves r10 r11, mask r12, lr the group count. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static int32_t tsl_dsp_s4_row(const uint32_t *xb, const uint8_t *w,
                                                               const int8_t *gs, int32_t G)
{
#define TSL_S4_WORD(op) "ldm r0!, {r4, r5, r6, r8}\n ldr r9, [r1], #4\n"                               \
    "and r11, r9, r12\n and r10, r12, r9, lsl #4\n"                                                    \
    "sxtb16 r9, r10\n " op "\n sxtb16 r10, r10, ror #8\n smlad r7, r10, r5, r7\n"                     \
    "sxtb16 r9, r11\n smlad r7, r9, r6, r7\n sxtb16 r11, r11, ror #8\n smlad r7, r11, r8, r7\n"
    __asm volatile(
        "push {r4-r11, lr}\n"
        "mov lr, r3\n movs r3, #0\n"
        "mov r12, #0xF0F0F0F0\n"
        "1:\n"
        TSL_S4_WORD("smuad r7, r9, r4") TSL_S4_WORD("smlad r7, r9, r4, r7")
        TSL_S4_WORD("smlad r7, r9, r4, r7") TSL_S4_WORD("smlad r7, r9, r4, r7")
        "ldrsb r9, [r2], #1\n asr r7, r7, #4\n mla r3, r9, r7, r3\n"
        "subs lr, lr, #1\n bne 1b\n"
        "mov r0, r3\n"
        "pop {r4-r11, pc}\n");
#undef TSL_S4_WORD
}
#pragma GCC diagnostic pop
#endif

/* Per 8 k, the lane pairs one weight word yields: [x4|x0] [x6|x2] [x5|x1] [x7|x3]. */
static void tsl_s4_expand(const int8_t *x, uint32_t *xb, int32_t n8)
{
    for (int32_t i = 0; i < n8; i++, x += 8, xb += 4) {
        xb[0] = tsl_pair16(x[0], x[4]);
        xb[1] = tsl_pair16(x[2], x[6]);
        xb[2] = tsl_pair16(x[1], x[5]);
        xb[3] = tsl_pair16(x[3], x[7]);
    }
}
#endif

int32_t tsl_s4_acc_arm(TSL_S4_ACC_ARGS)
{
    const int32_t G = K / TSL_S4_GROUP;
#if defined(TSL_ARM_MVE)
    const int8x16_t hi_mask = vdupq_n_s8((int8_t)0xF0);
    for (int32_t n = 0; n < N; n++) {
        const int8_t *wr = (const int8_t *)w + (intptr_t)n * (K / 2);
        const int8_t *gr = gs + (intptr_t)n * G;
        int32_t a = 0;
        for (int32_t g = 0; g < G; g++) {
            const int8x16_t wv = vldrbq_s8(wr + 16 * g);
            const int8x16x2_t xv = vld2q_s8(x + 32 * g);              /* even k, odd k */
            int32_t d = vmladavq_s8(vshlq_n_s8(wv, 4), xv.val[0]);    /* 16 * low nibbles */
            d = vmladavaq_s8(d, vandq_s8(wv, hi_mask), xv.val[1]);    /* 16 * high nibbles */
            a += (int32_t)gr[g] * (d >> 4);
        }
        acc[n] = a;
    }
#else
    uint32_t xb[TSL_S4_KC / 2];
    for (int32_t n = 0; n < N; n++) acc[n] = 0;
    for (int32_t c = 0; c < K; c += TSL_S4_KC) {
        const int32_t kc = K - c < TSL_S4_KC ? K - c : TSL_S4_KC;
        tsl_s4_expand(x + c, xb, kc / 8);
        for (int32_t n = 0; n < N; n++) {
            const uint8_t *wr = w + (intptr_t)n * (K / 2) + c / 2;
            const int8_t *gr = gs + (intptr_t)n * G + c / TSL_S4_GROUP;
#if !defined(TSL_EMULATE_DSP)
            acc[n] += tsl_dsp_s4_row(xb, wr, gr, kc / TSL_S4_GROUP);
#else
            const uint32_t *xp = xb;
            int32_t a = 0;
            for (int32_t g = 0; g < kc / TSL_S4_GROUP; g++) {
                int32_t d = 0;
                for (int32_t j = 0; j < 4; j++, xp += 4) {
                    const uint32_t v = *(const tsl_u32u *)(wr + 16 * g + 4 * j);
                    const uint32_t lo = (v << 4) & 0xF0F0F0F0u, hi = v & 0xF0F0F0F0u;   /* 16 * nibbles */
                    d = tsl_smlad(tsl_sxtb16(lo), xp[0], d);
                    d = tsl_smlad(tsl_sxtb16_ror8(lo), xp[1], d);
                    d = tsl_smlad(tsl_sxtb16(hi), xp[2], d);
                    d = tsl_smlad(tsl_sxtb16_ror8(hi), xp[3], d);
                }
                a += (int32_t)gr[g] * (d >> 4);
            }
            acc[n] += a;
#endif
        }
    }
#endif
    return G;
}
#else
typedef int tsl_matvec_s4_arm_unused;   /* ISO C: no empty translation unit */
#endif
