/* start.S -- AArch64 bare metal on qemu -M virt (EL1): stack, FP/SIMD on, .bss cleared, main, exit. */
    .section .text.start, "ax"
    .global _start
_start:
    ldr x0, =__stack_top
    mov sp, x0
    mrs x0, cpacr_el1
    orr x0, x0, #(3 << 20)          /* FPEN: no FP/SIMD traps at EL0/EL1 */
    msr cpacr_el1, x0
    isb
    ldr x0, =__bss_start
    ldr x1, =__bss_end
1:  cmp x0, x1
    b.hs 2f
    str xzr, [x0], #8
    b 1b
2:  bl main
    bl exit
3:  b 3b
