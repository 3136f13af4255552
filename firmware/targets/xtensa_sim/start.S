/* start.S -- Xtensa LX (windowed ABI, XEA2) bare metal on qemu-system-xtensa -M sim: the window
 * overflow/underflow vectors, a stop on any other exception, then _start: VECBASE, stack, PS (user
 * vector mode, window overflow on, interrupts masked), the FPU (coprocessor 0) on, .bss cleared,
 * main via call4 (its return value comes back in a6), exit.
 * Vector offsets from VECBASE are the XEA2 ones of the ESP32 and of qemu's LX cores: window
 * vectors 0x000-0x17f, kernel 0x300, user 0x340, double 0x3c0. */
#define PS_WOE    0x40000
#define PS_UM     0x20
#define PS_INTLVL 0x0f

    .section .vectors, "ax"
    .balign 4096
    .global _vector_table
_vector_table:
    .org 0x000                  /* WindowOverflow4: the caller's a0-a3 below its callee's sp (a5) */
    s32e a0, a5, -16
    s32e a1, a5, -12
    s32e a2, a5, -8
    s32e a3, a5, -4
    rfwo
    .org 0x040                  /* WindowUnderflow4 */
    l32e a0, a5, -16
    l32e a1, a5, -12
    l32e a2, a5, -8
    l32e a3, a5, -4
    rfwu
    .org 0x080                  /* WindowOverflow8: a0-a3 below the callee's sp (a9), a4-a7 below the
                                   caller's caller's sp (read at a1 - 12) */
    s32e a0, a9, -16
    l32e a0, a1, -12
    s32e a1, a9, -12
    s32e a2, a9, -8
    s32e a3, a9, -4
    s32e a4, a0, -32
    s32e a5, a0, -28
    s32e a6, a0, -24
    s32e a7, a0, -20
    rfwo
    .org 0x0c0                  /* WindowUnderflow8 */
    l32e a1, a9, -12
    l32e a0, a9, -16
    l32e a7, a1, -12
    l32e a2, a9, -8
    l32e a4, a7, -32
    l32e a3, a9, -4
    l32e a5, a7, -28
    l32e a6, a7, -24
    l32e a7, a7, -20
    rfwu
    .org 0x100                  /* WindowOverflow12 */
    s32e a0, a13, -16
    l32e a0, a1, -12
    s32e a1, a13, -12
    s32e a2, a13, -8
    s32e a3, a13, -4
    s32e a4, a0, -48
    s32e a5, a0, -44
    s32e a6, a0, -40
    s32e a7, a0, -36
    s32e a8, a0, -32
    s32e a9, a0, -28
    s32e a10, a0, -24
    s32e a11, a0, -20
    rfwo
    .org 0x140                  /* WindowUnderflow12 */
    l32e a1, a13, -12
    l32e a0, a13, -16
    l32e a11, a1, -12
    l32e a2, a13, -8
    l32e a4, a11, -48
    l32e a8, a11, -32
    l32e a3, a13, -4
    l32e a5, a11, -44
    l32e a6, a11, -40
    l32e a7, a11, -36
    l32e a9, a11, -28
    l32e a10, a11, -24
    l32e a11, a11, -20
    rfwu
    .org 0x300                  /* KernelException */
    j _tsl_fault
    .org 0x340                  /* UserException */
    j _tsl_fault
    .org 0x3c0                  /* DoubleException */
    j _tsl_fault
    .org 0x400

/* qemu's sim machine starts at the core's reset vector (its ROM at 0xfe000000), not at the ELF entry. */
    .section .reset, "ax"
    j 1f
    .balign 4
.Lstart:    .long _start
1:  l32r a0, .Lstart
    jx a0

    .section .literal.start, "ax"
    .balign 4
.Lvecbase: .long _vector_table
.Lstack: .long __stack_top
.Lbss0: .long __bss_start
.Lbss1: .long __bss_end
.Lmain: .long main
.Lexit: .long exit

    .section .text.start, "ax"
    .global _start
    .balign 4
_start:
    l32r a2, .Lvecbase
    wsr a2, vecbase
    l32r a1, .Lstack
    movi a0, 0
    movi a2, PS_WOE | PS_UM | PS_INTLVL
    wsr a2, ps
    movi a2, 1                  /* CPENABLE: coprocessor 0 is the FPU */
    wsr a2, cpenable
    rsync
    l32r a2, .Lbss0
    l32r a3, .Lbss1
    movi a4, 0
1:  bgeu a2, a3, 2f
    s32i a4, a2, 0
    addi a2, a2, 4
    j 1b
2:  movi a6, 0                  /* main(0, 0) */
    movi a7, 0
    l32r a8, .Lmain
    callx4 a8
    l32r a8, .Lexit
    callx4 a8                   /* exit(a6), a6 = main's result */
3:  j 3b

/* Any exception other than a window spill: exit status 0x80 + EXCCAUSE (see the Xtensa ISA's
 * EXCCAUSE table: 0 illegal instruction, 3 load/store error, 9 unaligned, 32+n coprocessor n off),
 * the faulting pc in EPC1 for a debugger. */
    .balign 4
_tsl_fault:
    rsr a3, exccause
    movi a4, 0x80
    add a3, a3, a4
    movi a2, 1                  /* SYS_exit */
    .byte 0x00, 0x51, 0x00      /* simcall (no mnemonic in LLVM's assembler) */
4:  j 4b
