// Native platform entry, EL2 exception vectors and the world switch into the guest.
//
// QEMU's virt board (virtualization=on) starts this ELF at EL2 with the MMU off. The entry code
// gives the VMM a stack, clears .bss, installs the vectors, turns on the EL2 MMU with an identity
// map (so Swift code runs on Normal cacheable memory), then calls native_main in Swift.
//
// enter_guest(frame) is a call that returns at the guest's next exit: it saves the VMM's
// callee-saved registers on the EL2 stack, loads the guest's registers from the frame and ERETs.
// A lower-EL exception stores the guest's registers back into the frame, unwinds that stack
// and returns the exit kind (0 sync, 1 IRQ, 2 FIQ, 3 SError) to the caller of enter_guest.
//
// Frame layout, in 64-bit words: x0..x30 [0..30], ELR_EL2 [31], SPSR_EL2 [32], pad [33].
// The guest's FP/SIMD registers (q0-q31, FPSR, FPCR) are neither saved nor restored: nothing at
// EL2 touches them (the Swift and C code is compiled with -mgeneral-regs-only, which
// tests/integration/test_el2_code.py checks), and each vCPU owns its CPU, so they simply stay
// in the hardware, the guest's, across every exit.

#define FRAME_ELR   (31 * 8)
#define FRAME_SPSR  (32 * 8)
#define HOST_SAVE   112          // x19..x30 (96 bytes) + frame pointer + pad
#define HOST_FRAME  96
#define STACK_SIZE  0x10000      // each CPU's EL2 stack (linker.ld reserves MAX_CPUS of them)

    .section .text.boot, "ax"
    .global _start
_start:
    mrs     x0, CurrentEL
    cmp     x0, #(2 << 2)
    b.ne    not_el2
    ldr     x0, =stack_top
    mov     sp, x0
    msr     tpidr_el2, xzr               // this is CPU 0
    ldr     x0, =__bss_start
    ldr     x1, =__bss_end
1:  cmp     x0, x1
    b.hs    2f
    str     xzr, [x0], #8
    b       1b
2:  adr     x0, el2_vectors
    msr     vbar_el2, x0
    bl      build_el2_page_table
    bl      enable_el2_mmu
    bl      native_main
3:  wfi
    b       3b

// A secondary CPU, started by native_main through the board's PSCI CPU_ON with its index as the
// context id in x0: its own stack (STACK_SIZE below CPU 0's for each index), the vectors, the
// page table CPU 0 built, then native_secondary_main(index).
    .global secondary_entry
secondary_entry:
    ldr     x1, =stack_top
    mov     x2, #STACK_SIZE
    msub    x1, x0, x2, x1
    mov     sp, x1
    msr     tpidr_el2, x0
    adr     x1, el2_vectors
    msr     vbar_el2, x1
    mov     x19, x0
    bl      enable_el2_mmu
    mov     x0, x19
    bl      native_secondary_main
    b       3b

not_el2:                         // print "vmm: not started at EL2" on the PL011 and stop
    ldr     x1, =0x09000000
    adr     x2, not_el2_message
4:  ldrb    w3, [x2], #1
    cbz     w3, 3b
    str     w3, [x1]
    b       4b
not_el2_message:
    .asciz  "vmm: not started at EL2; run QEMU with -machine virt,virtualization=on\r\n"
    .balign 4

// Identity map of the low 256 GiB with 1 GiB blocks: [0, 1 GiB) Device-nGnRnE and execute-never
// (the board's MMIO), [1 GiB, 256 GiB) Normal write-back (QEMU virt's RAM, 255 GiB at most; its
// high MMIO above is left unmapped). 4 KiB granule, T0SZ = 25 (a 512 GiB space starting at level 1,
// one table), PS 40 bits. Built once by CPU 0; every CPU turns its MMU on with it.
build_el2_page_table:
    ldr     x0, =el2_page_table
    ldr     x1, =0x0040000000000441      // XN | AF | AP[1] (RES1 at EL2) | AttrIndx 0 | block
    str     x1, [x0]
    ldr     x2, =0x0000000000000745      // AF | SH inner | AP[1] | AttrIndx 1 | block
    mov     x3, #1
5:  lsl     x4, x3, #30
    orr     x4, x4, x2
    str     x4, [x0, x3, lsl #3]
    add     x3, x3, #1
    cmp     x3, #256
    b.lo    5b
    ret

enable_el2_mmu:
    ldr     x0, =el2_page_table
    ldr     x1, =0xff00                  // Attr0 Device-nGnRnE, Attr1 Normal WB RA/WA
    msr     mair_el2, x1
    ldr     x1, =0x80823519              // RES1 bits 31, 23 | PS 40 bits | TG0 4K | SH0 inner | WB/WB | T0SZ 25
    msr     tcr_el2, x1
    msr     ttbr0_el2, x0
    dsb     sy
    tlbi    alle2
    dsb     sy
    isb
    ldr     x1, =0x30c5183d              // RES1 bits | I | SA | C | M; A (alignment check) clear
    msr     sctlr_el2, x1
    isb
    ret

// --------------------------------------------------------------------------------------------
    .text
    .global enter_guest
enter_guest:
    sub     sp, sp, #HOST_SAVE
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    str     x0, [sp, #HOST_FRAME]
    ldr     x2, [x0, #FRAME_ELR]
    msr     elr_el2, x2
    ldr     x2, [x0, #FRAME_SPSR]
    msr     spsr_el2, x2
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret

// Saves the guest into the frame named on the stack and returns `kind` from enter_guest.
.macro guest_exit kind
    stp     x0, x1, [sp, #-16]!
    ldr     x0, [sp, #(16 + HOST_FRAME)]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mov     x1, #\kind
    b       save_guest_state
.endm

save_guest_state:                  // x0 = frame, x1 = exit kind
    mrs     x2, elr_el2
    str     x2, [x0, #FRAME_ELR]
    mrs     x2, spsr_el2
    str     x2, [x0, #FRAME_SPSR]
    mov     x0, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    add     sp, sp, #HOST_SAVE
    ret

// An exception taken while the VMM itself runs at EL2 is a VMM bug: report and stop.
.macro hypervisor_fault kind
    mov     x0, #\kind
    mrs     x1, esr_el2
    mrs     x2, elr_el2
    mrs     x3, far_el2
    bl      hypervisor_panic
    b       .
.endm

    .balign 2048
el2_vectors:
    .balign 128                        // current EL with SP_EL0
    hypervisor_fault 0
    .balign 128
    hypervisor_fault 1
    .balign 128
    hypervisor_fault 2
    .balign 128
    hypervisor_fault 3
    .balign 128                        // current EL with SP_ELx
    hypervisor_fault 4
    .balign 128
    hypervisor_fault 5
    .balign 128
    hypervisor_fault 6
    .balign 128
    hypervisor_fault 7
    .balign 128                        // lower EL, AArch64
    guest_exit 0
    .balign 128
    guest_exit 1
    .balign 128
    guest_exit 2
    .balign 128
    guest_exit 3
    .balign 128                        // lower EL, AArch32: the guest is AArch64 only (HCR_EL2.RW)
    hypervisor_fault 12
    .balign 128
    hypervisor_fault 13
    .balign 128
    hypervisor_fault 14
    .balign 128
    hypervisor_fault 15

// --------------------------------------------------------------------------------------------
    .global firmware_call
firmware_call:
    smc     #0
    ret

    .global clean_dcache_range      // x0 = start, x1 = length; 64-byte lines (Cortex-A53)
clean_dcache_range:
    add     x1, x0, x1
    bic     x0, x0, #63
6:  cmp     x0, x1
    b.hs    7f
    dc      civac, x0
    add     x0, x0, #64
    b       6b
7:  dsb     sy
    ret

    .section .bss.page_table, "aw", %nobits
    .balign 4096
el2_page_table:
    .space  4096
