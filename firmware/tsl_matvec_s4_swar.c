/* tsl_matvec_s4_swar.c -- the no-SIMD paths of tsl_matvec_s4.c: two products per 32-bit MUL in C,
 * with asm hot loops for the Cortex-M3, the M0+ and rv32imc. */
#include "tsl_matvec_s4_isa.h"

#if defined(TSL_SWAR_MUL)
/* Two products per 32-bit MUL (no SIMD: M0+/M3, rv32imc, Xtensa). Per weight word t of a group
 * (k = 8t + j, nibble j, j < 8), biased by XOR 0x88888888 to b_j = w_j + 8 in [0, 15]:
 *   p_j = b_j + b_{j+4} 2^16              (one AND, or a shift and an AND), j < 4
 *   X_j = x_{8t+j+4} + x_{8t+j} 2^16       (prepared once per x chunk, shared by all rows)
 * and with s_j = p_j - 8 (1 + 2^16) the signed lanes w_j + w_{j+4} 2^16, mod 2^32:
 *   s_j X_j = L + M 2^16,  L = w_j x_{8t+j+4},  M = w_j x_{8t+j} + w_{j+4} x_{8t+j+4}.
 * Ranges (w in [-8, 7], x in [-128, 127]: a product is in [-1016, 1024]): over the 16 MULs of a
 * group, sum L in [-16256, 16384] and the group dot sum M in [-32512, 32768]. So with
 *   A = c_g + sum_j p_j X_j (mod 2^32),  c_g = 2^15 - 256 * 2^16 - 8 (1 + 2^16) sum X_j
 * A = 2^15 + sum L + (sum M - 256) 2^16 exactly as an int32 (2^15 + sum L in [0, 2^16), sum M - 256
 * in [-2^15, 2^15)), and (A >> 16) + 256 is the group's dot product: no flush inside a group. */
#define TSL_SWAR_KC 256                   /* x chunk: 17 words per group on the stack (544 bytes) */
#define TSL_SWAR_GW (TSL_S4_GROUP / 2)    /* words per group: 16 X_j, then c_g */
#define TSL_SWAR_M 0x000F000Fu

/* x[0:kc] (kc % 32 == 0) -> per group 16 X_j (word t: X_{4t+j}) and c_g, 17 words */
static void tsl_swar_prep(const int8_t *x, int32_t kc, uint32_t *xp)
{
    for (int32_t g = 0; g < kc / TSL_S4_GROUP; g++, x += TSL_S4_GROUP, xp += TSL_SWAR_GW + 1) {
        uint32_t sx = 0;
        for (int32_t t = 0; t < 4; t++)
            for (int32_t j = 0; j < 4; j++) {
                const uint32_t v = (uint32_t)(int32_t)x[8 * t + j + 4] + ((uint32_t)(int32_t)x[8 * t + j] << 16);
                xp[4 * t + j] = v;
                sx += v;
            }
        xp[TSL_SWAR_GW] = 0x8000u - (256u << 16) - 8u * 0x10001u * sx;
    }
}

/* The weight word at p: a word load where allowed (tsl_swar_words), else composed from bytes. */
static inline uint32_t tsl_swar_word(const uint8_t *p)
{
#if defined(TSL_UNALIGNED_WORDS)
    return *(const tsl_u32u *)p;
#else
    return *(const uint32_t *)(const void *)p;
#endif
}

/* A += the 4 MULs of weight word u (group word t: X at xg[4t..4t+3]) */
#define TSL_SWAR_WORD(A, u, xg)                                                                    \
    do {                                                                                           \
        const uint32_t b_ = (u) ^ 0x88888888u;                                                     \
        A += (b_ & TSL_SWAR_M) * (xg)[0] + ((b_ >> 4) & TSL_SWAR_M) * (xg)[1] +                    \
             ((b_ >> 8) & TSL_SWAR_M) * (xg)[2] + ((b_ >> 12) & TSL_SWAR_M) * (xg)[3];             \
    } while (0)

#if defined(__ARM_ARCH_7M__) && !defined(TSL_EMULATE_NODSP)
/* sum_g gs[g] * (w4[g] . x[g]) over ng > 0 groups of one row (x prepared by tsl_swar_prep), the hot
 * loop of the M3 path. Per weight word: LDR, EOR, one LDM of its 4 X_j, 4 x (AND with a shifted
 * operand, MLA); per group c_g first, then ASR, ADD, LDRSB and MLA: 52 instructions per 32 MACs.
 * Registers: xp r0, w r1, gs r2, groups left r3, X r4-r7, A r8, weight word r9, pair r10,
 * mask r11, bias r12, row sum lr. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static int32_t tsl_m3_s4_row(const uint32_t *xp, const uint8_t *w,
                                                              const int8_t *gs, int32_t ng)
{
#define TSL_M3_S4_WORD "ldr r9, [r1], #4\n eor r9, r9, r12\n ldm r0!, {r4, r5, r6, r7}\n"                   \
    "and r10, r11, r9\n mla r8, r10, r4, r8\n and r10, r11, r9, lsr #4\n mla r8, r10, r5, r8\n"            \
    "and r10, r11, r9, lsr #8\n mla r8, r10, r6, r8\n and r10, r11, r9, lsr #12\n mla r8, r10, r7, r8\n"
    __asm volatile(
        "push {r4-r11, lr}\n"
        "mov r11, #0x000F000F\n mov r12, #0x88888888\n movs lr, #0\n"
        "1:\n"
        "ldr r8, [r0, #64]\n"
        TSL_M3_S4_WORD TSL_M3_S4_WORD TSL_M3_S4_WORD TSL_M3_S4_WORD
        "adds r0, r0, #4\n"
        "asr r8, r8, #16\n add r8, r8, #256\n ldrsb r9, [r2], #1\n mla lr, r9, r8, lr\n"
        "subs r3, r3, #1\n bne 1b\n"
        "mov r0, lr\n"
        "pop {r4-r11, pc}\n");
#undef TSL_M3_S4_WORD
}
#pragma GCC diagnostic pop
#endif

#if defined(__riscv) && __riscv_xlen == 32 && defined(__riscv_mul)
/* out[j] = sum_g gs_j[g] * (w4_j[g] . x[g]) over ng > 0 groups of rows j = 0, 1 (w + j * ws, gs + j * gss;
 * ws = gss = 0 repeats one row), x prepared by tsl_swar_prep: the hot loop of the rv32 path. Per
 * weight word: the 4 X_j by LW (shared by the two rows), per row LW, XOR, then 4 x (SRLI, AND, MUL,
 * ADD); per group c_g, then per row SRAI, ADDI, LB, MUL, ADD: 171 instructions per 64 MACs.
 * Registers: xp a0, w a1 a3, gs a2 a4, groups left a5, out a6, X t0-t3, A t4 t5, weight word t6,
 * pairs a7 s4, row sums s0 s1, mask s2, bias s3. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static void tsl_rv32_s4_rows2(const uint32_t *xp, const uint8_t *w, const int8_t *gs,
                                                               int32_t ws, int32_t gss, int32_t ng, int32_t *out)
{
#define TSL_RV_S4_ROW(off, p, A) "lw t6, " #off "(" p ")\n xor t6, t6, s3\n"                                   \
    "and a7, t6, s2\n mul a7, a7, t0\n add " A ", " A ", a7\n srli s4, t6, 4\n and s4, s4, s2\n mul s4, s4, t1\n" \
    "add " A ", " A ", s4\n srli a7, t6, 8\n and a7, a7, s2\n mul a7, a7, t2\n add " A ", " A ", a7\n"         \
    "srli s4, t6, 12\n and s4, s4, s2\n mul s4, s4, t3\n add " A ", " A ", s4\n"
#define TSL_RV_S4_WORD(t, off) "lw t0, " #t "+0(a0)\n lw t1, " #t "+4(a0)\n lw t2, " #t "+8(a0)\n lw t3, " #t "+12(a0)\n" \
    TSL_RV_S4_ROW(off, "a1", "t4") TSL_RV_S4_ROW(off, "a3", "t5")
    __asm volatile(
        "addi sp, sp, -32\n"
        "sw s0, 0(sp)\n sw s1, 4(sp)\n sw s2, 8(sp)\n sw s3, 12(sp)\n sw s4, 16(sp)\n"
        "add a3, a1, a3\n add a4, a2, a4\n"
        "li s0, 0\n li s1, 0\n li s2, 0x000F000F\n li s3, 0x88888888\n"
        "1:\n"
        "lw t4, 64(a0)\n mv t5, t4\n"
        TSL_RV_S4_WORD(0, 0) TSL_RV_S4_WORD(16, 4) TSL_RV_S4_WORD(32, 8) TSL_RV_S4_WORD(48, 12)
        "srai t4, t4, 16\n addi t4, t4, 256\n lb t6, 0(a2)\n mul t4, t4, t6\n add s0, s0, t4\n"
        "srai t5, t5, 16\n addi t5, t5, 256\n lb t6, 0(a4)\n mul t5, t5, t6\n add s1, s1, t5\n"
        "addi a0, a0, 68\n addi a1, a1, 16\n addi a3, a3, 16\n addi a2, a2, 1\n addi a4, a4, 1\n"
        "addi a5, a5, -1\n bnez a5, 1b\n"
        "sw s0, 0(a6)\n sw s1, 4(a6)\n"
        "lw s0, 0(sp)\n lw s1, 4(sp)\n lw s2, 8(sp)\n lw s3, 12(sp)\n lw s4, 16(sp)\n"
        "addi sp, sp, 32\n"
        "ret\n");
#undef TSL_RV_S4_ROW
#undef TSL_RV_S4_WORD
}
#pragma GCC diagnostic pop
#endif

#if defined(__ARM_ARCH_6M__) && !defined(TSL_EMULATE_NODSP)
/* As tsl_m3_s4_row, in Thumb-1 for the M0+ (w 4-aligned): per weight word LDM of it, the bias by
 * EOR, two LDM of 2 X_j, 4 x (copy or shift, AND, MULS, ADDS); 101 instructions per 32 MACs.
 * Registers: xp r0, w r1, A r2, weight word r3, pair r4, mask r5, X r6 r7 (all low: Thumb-1 ALU);
 * row sum r8, gs r9, groups left r10, bias r11, 256 r12. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* naked: the asm reads them */
__attribute__((naked, noinline)) static int32_t tsl_m0_s4_row(const uint32_t *xp, const uint8_t *w,
                                                              const int8_t *gs, int32_t ng)
{
#define TSL_M0_S4_PAIR(first, shift, xr) first " r4, r3" shift "\n ands r4, r5\n muls r4, " xr ", r4\n adds r2, r2, r4\n"
#define TSL_M0_S4_WORD "ldm r1!, {r3}\n mov r4, r11\n eors r3, r4\n ldm r0!, {r6, r7}\n"                  \
    TSL_M0_S4_PAIR("movs", "", "r6") TSL_M0_S4_PAIR("lsrs", ", #4", "r7") "ldm r0!, {r6, r7}\n"          \
    TSL_M0_S4_PAIR("lsrs", ", #8", "r6") TSL_M0_S4_PAIR("lsrs", ", #12", "r7")
    __asm volatile(
        ".syntax unified\n"
        "push {r4, r5, r6, r7, lr}\n"
        "mov r4, r8\n mov r5, r9\n mov r6, r10\n mov r7, r11\n push {r4, r5, r6, r7}\n"
        "mov r9, r2\n mov r10, r3\n movs r4, #0\n mov r8, r4\n"
        "ldr r4, =0x88888888\n mov r11, r4\n ldr r5, =0x000F000F\n movs r4, #1\n lsls r4, r4, #8\n mov r12, r4\n"
        "1:\n"
        "ldr r2, [r0, #64]\n"
        TSL_M0_S4_WORD TSL_M0_S4_WORD TSL_M0_S4_WORD TSL_M0_S4_WORD
        "adds r0, #4\n asrs r2, r2, #16\n add r2, r12\n"
        "mov r4, r9\n ldrb r6, [r4]\n sxtb r6, r6\n adds r4, #1\n mov r9, r4\n"
        "muls r2, r6, r2\n mov r4, r8\n adds r4, r4, r2\n mov r8, r4\n"
        "mov r4, r10\n subs r4, #1\n mov r10, r4\n bne 1b\n"
        "mov r0, r8\n"
        "pop {r4, r5, r6, r7}\n mov r8, r4\n mov r9, r5\n mov r10, r6\n mov r11, r7\n"
        "pop {r4, r5, r6, r7, pc}\n"
        ".ltorg\n");
#undef TSL_M0_S4_PAIR
#undef TSL_M0_S4_WORD
}
#pragma GCC diagnostic pop
#endif

/* acc[n] (+)= sum_g gs[n][g] * (w4[n][g] . x[g]) over the ng groups of one chunk, rows in pairs
 * sharing the X loads; w, gs the chunk's start in row 0, rows ws bytes and gss scales apart. */
static void tsl_swar_rows(const uint32_t *xp, const uint8_t *w, const int8_t *gs, int32_t ws, int32_t gss,
                          int32_t *acc, int32_t N, int32_t ng, int first)
{
    int32_t n = 0;
#if defined(__riscv) && __riscv_xlen == 32 && defined(__riscv_mul)
    if (ng > 0 && (((uintptr_t)w | (uintptr_t)ws) & 3) == 0) {   /* LW: the ESP32-C3 traps on unaligned words */
        int32_t part[2];
        for (; n < N; n += 2) {
            const int two = n + 1 < N;
            tsl_rv32_s4_rows2(xp, w + (intptr_t)n * ws, gs + (intptr_t)n * gss, two ? ws : 0, two ? gss : 0, ng, part);
            acc[n] = (first ? 0 : acc[n]) + part[0];
            if (two) acc[n + 1] = (first ? 0 : acc[n + 1]) + part[1];
        }
        return;
    }
#endif
#if defined(__ARM_ARCH_7M__) && !defined(TSL_EMULATE_NODSP)
    if (ng > 0) {
        for (; n < N; n++)
            acc[n] = (first ? 0 : acc[n]) + tsl_m3_s4_row(xp, w + (intptr_t)n * ws, gs + (intptr_t)n * gss, ng);
        return;
    }
#elif defined(__ARM_ARCH_6M__) && !defined(TSL_EMULATE_NODSP)
    if (ng > 0) {   /* rows 4-aligned: tsl_swar_words */
        for (; n < N; n++)
            acc[n] = (first ? 0 : acc[n]) + tsl_m0_s4_row(xp, w + (intptr_t)n * ws, gs + (intptr_t)n * gss, ng);
        return;
    }
#endif
    for (; n + 2 <= N; n += 2) {
        const uint8_t *w0 = w + (intptr_t)n * ws, *w1 = w0 + ws;
        const int8_t *g0 = gs + (intptr_t)n * gss, *g1 = g0 + gss;
        int32_t a0 = first ? 0 : acc[n], a1 = first ? 0 : acc[n + 1];
        const uint32_t *xg = xp;
        for (int32_t g = 0; g < ng; g++, xg += TSL_SWAR_GW + 1, w0 += 16, w1 += 16) {
            uint32_t A0 = xg[TSL_SWAR_GW], A1 = A0;
            for (int32_t t = 0; t < 4; t++) {
                TSL_SWAR_WORD(A0, tsl_swar_word(w0 + 4 * t), xg + 4 * t);
                TSL_SWAR_WORD(A1, tsl_swar_word(w1 + 4 * t), xg + 4 * t);
            }
            a0 += (int32_t)g0[g] * (((int32_t)A0 >> 16) + 256);
            a1 += (int32_t)g1[g] * (((int32_t)A1 >> 16) + 256);
        }
        acc[n] = a0; acc[n + 1] = a1;
    }
    if (n < N) {
        const uint8_t *w0 = w + (intptr_t)n * ws;
        const int8_t *g0 = gs + (intptr_t)n * gss;
        int32_t a0 = first ? 0 : acc[n];
        const uint32_t *xg = xp;
        for (int32_t g = 0; g < ng; g++, xg += TSL_SWAR_GW + 1, w0 += 16) {
            uint32_t A0 = xg[TSL_SWAR_GW];
            for (int32_t t = 0; t < 4; t++) TSL_SWAR_WORD(A0, tsl_swar_word(w0 + 4 * t), xg + 4 * t);
            a0 += (int32_t)g0[g] * (((int32_t)A0 >> 16) + 256);
        }
        acc[n] = a0;
    }
}
#undef TSL_SWAR_WORD

/* Word loads of every row's weights allowed (rows are K / 2 = 16 * G bytes apart). */
static inline int tsl_swar_words(const uint8_t *w)
{
#if defined(TSL_UNALIGNED_WORDS)
    (void)w;
    return 1;
#else
    return ((uintptr_t)w & 3) == 0;
#endif
}

int32_t tsl_s4_acc_swar(TSL_S4_ACC_ARGS)
{
    const int32_t G = K / TSL_S4_GROUP;
    int32_t g0 = 0;
    if (tsl_swar_words(w)) g0 = G;
    uint32_t xp[TSL_SWAR_KC / TSL_S4_GROUP * (TSL_SWAR_GW + 1)];
    for (int32_t c = 0; c < 32 * g0; c += TSL_SWAR_KC) {
        const int32_t kc = K - c < TSL_SWAR_KC ? K - c : TSL_SWAR_KC;
        tsl_swar_prep(x + c, kc, xp);
        tsl_swar_rows(xp, w + c / 2, gs + c / TSL_S4_GROUP, K / 2, G, acc, N, kc / TSL_S4_GROUP, c == 0);
    }
    return g0;
}
#else
typedef int tsl_matvec_s4_swar_unused;   /* ISO C: no empty translation unit */
#endif
