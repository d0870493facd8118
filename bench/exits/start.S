// Entry, arm64 Image header, exception vectors and firmware calls of the exit benchmark's guest.
//
// The guest (bench/exits/, driven by scripts/bench-exits.py) is a raw binary with the 64-byte arm64
// Linux Image header (Linux Documentation/arch/arm64/booting.rst), because QEMU's -kernel and the
// VMM's loader both boot it as they boot Linux: at EL1 (or EL2 on a plain QEMU board with
// virtualization=on), MMU and caches off, x0 = the physical address of the device tree.
//
// Where it runs: linked at 0x40200000 with text_offset 0x200000. The VMM loads an Image at RAM base
// + text_offset; QEMU too, except that it adds 2 MiB to a text_offset smaller than its boot stub
// (which owns the bottom of RAM). 0x200000 gives 0x40200000 both ways, which the entry code checks
// before it relies on any absolute address (a wrong place prints one line on the PL011 and stops).
//
// What the entry code does, on CPU 0: drop from EL2 to EL1 if entered at EL2 (EL1 is AArch64,
// nothing trapped; an HVC from EL1 then gets NOT_SUPPORTED from a small EL2 stub), take the
// stack, clear .bss (a device tree that QEMU or the VMM placed inside .bss is ignored), install the
// EL1 vectors, allow FP/SIMD (the C code is built without it anyway), then exits_main(dtb, entry
// EL) in C, which builds the page table and calls enable_mmu itself. A CPU started with PSCI CPU_ON
// enters at secondary_entry with x0 = its context id and goes to exits_secondary.
//
// Exceptions: synchronous ones call exits_sync(ESR, ELR, FAR), which returns where to resume (the
// PSCI probes rely on it to skip an HVC or SMC that is UNDEFINED here); IRQs call exits_irq().
// Both save the caller-saved registers; nothing nests (IRQs stay masked inside a handler).

#define STACK_SIZE      0x4000
#define SCTLR_EL1_RESET 0x30d00800          // RES1 bits; MMU, caches and alignment checks off
#define SPSR_EL1H_MASKED 0x3c5              // EL1 with SP_EL1, D, A, I and F masked

    .section .text.head, "ax"
    .global _start
_start:
    b       entry                           // code0
    .long   0                               // code1
    .quad   0x200000                        // text_offset
    .quad   _image_size                     // image_size: the file, .bss and the stacks (exits.ld)
    .quad   0xa                             // flags: little-endian, 4 KiB pages, anywhere in RAM
    .quad   0, 0, 0                         // res2..res4
    .long   0x644d5241                      // magic "ARM\x64"
    .long   0                               // res5: no PE header

entry:
    mov     x19, x0                         // the device tree
    adr     x1, _start
    ldr     x2, =_start
    cmp     x1, x2
    b.ne    misplaced
    mrs     x20, CurrentEL
    lsr     x20, x20, #2                    // the EL we were entered at, for the banner
    cmp     x20, #2
    b.ne    1f
    bl      drop_to_el1
1:  ldr     x0, =stack0_top
    mov     sp, x0
    // A device tree inside our own .bss would be cleared below: forget it instead.
    ldr     x0, =__bss_start
    ldr     x1, =_end
    cmp     x19, x0
    b.lo    2f
    cmp     x19, x1
    b.hs    2f
    mov     x19, #0
2:  ldr     x0, =__bss_start
    ldr     x1, =__bss_end
3:  cmp     x0, x1
    b.hs    4f
    str     xzr, [x0], #8
    b       3b
4:  bl      el1_setup
    mov     x0, x19
    mov     x1, x20
    bl      exits_main
halt:
    wfi
    b       halt

// PSCI CPU_ON's entry point: x0 = the context id exits.c passed (the CPU's index), MMU off.
    .global secondary_entry
secondary_entry:
    mov     x19, x0
    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    cmp     x1, #2
    b.ne    1f
    bl      drop_to_el1
1:  ldr     x0, =stack1_top
    mov     sp, x0
    bl      el1_setup
    bl      enable_mmu                      // CPU 0 built the page table before CPU_ON
    mov     x0, x19
    bl      exits_secondary
    b       halt

// The EL1 vectors and FP/SIMD access (CPACR_EL1.FPEN = 0b11), on the current CPU.
el1_setup:
    adr     x0, el1_vectors
    msr     vbar_el1, x0
    mov     x0, #(3 << 20)
    msr     cpacr_el1, x0
    isb
    ret

// Called at EL2, returns at EL1 (to the caller's x30), with x19/x20 intact. EL1 is AArch64
// (HCR_EL2.RW) and nothing else is trapped or routed to EL2: interrupts go to EL1, the timers and
// counters are EL1's own (CNTHCTL_EL2 EL1PCTEN/EL1PCEN, CNTVOFF_EL2 = 0), FP/SIMD is not trapped.
drop_to_el1:
    adr     x0, el2_vectors
    msr     vbar_el2, x0
    mov     x0, #(1 << 31)
    msr     hcr_el2, x0
    mov     x0, #3
    msr     cnthctl_el2, x0
    msr     cntvoff_el2, xzr
    mov     x0, #0x33ff
    msr     cptr_el2, x0
    msr     hstr_el2, xzr
    mrs     x0, midr_el1
    msr     vpidr_el2, x0
    mrs     x0, mpidr_el1
    msr     vmpidr_el2, x0
    ldr     x0, =SCTLR_EL1_RESET
    msr     sctlr_el1, x0
    mov     x0, #SPSR_EL1H_MASKED
    msr     spsr_el2, x0
    msr     elr_el2, x30
    isb
    eret

// enable_mmu(): MAIR, TCR and TTBR0 for the identity map exits.c built in page_table (4 KiB
// granule, 32-bit VA space, level 1 tables of 1 GiB blocks), then SCTLR_EL1.M, C and I.
//   MAIR attr0 = 0x00 Device-nGnRnE, attr1 = 0xff Normal, inner/outer write-back, read/write-allocate.
//   TCR: T0SZ = 32, IRGN0 = ORGN0 = write-back, SH0 = inner shareable, TG0 = 4 KiB, EPD1 (no
//   TTBR1 walks), IPS = 32 bits.
    .global enable_mmu
enable_mmu:
    ldr     x0, =0xff00
    msr     mair_el1, x0
    ldr     x0, =((32 << 0) | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23))
    msr     tcr_el1, x0
    ldr     x0, =page_table
    msr     ttbr0_el1, x0
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    mrs     x0, sctlr_el1
    orr     x0, x0, #(1 << 0)               // M
    orr     x0, x0, #(1 << 2)               // C
    orr     x0, x0, #(1 << 12)              // I
    msr     sctlr_el1, x0
    isb
    ret

// firmware_hvc(function, a1, a2, a3) and firmware_smc(...): one SMCCC call, x0..x3 in, x0 out.
// Being ordinary calls, they let the callee clobber x4..x17 (SMCCC 1.0) without the C code caring.
// x4..x7 are zeroed first so that the call does not depend on what the compiler left there (seL4,
// for one, takes a guest's HVC as a system call numbered by x7). When the instruction is
// UNDEFINED here, exits_sync resumes at the `ret` with x0 unchanged.
    .global firmware_hvc
firmware_hvc:
    mov     x4, xzr
    mov     x5, xzr
    mov     x6, xzr
    mov     x7, xzr
    hvc     #0
    ret
    .global firmware_smc
firmware_smc:
    mov     x4, xzr
    mov     x5, xzr
    mov     x6, xzr
    mov     x7, xzr
    smc     #0
    ret

// Loaded somewhere else than linked: say so on the PL011 (position-independent code) and stop.
misplaced:
    adr     x1, misplaced_text
    mov     x2, #0x09000000
1:  ldrb    w3, [x1], #1
    cbz     w3, halt
2:  ldr     w4, [x2, #0x18]                 // UARTFR: wait while TXFF
    tbnz    w4, #5, 2b
    str     w3, [x2]
    b       1b
misplaced_text:
    .asciz  "exits: loaded at the wrong address (linked at 0x40200000: text_offset 0x200000 from RAM at 0x40000000)\r\n"

// EL2 stub, only when we dropped from EL2 ourselves: an HVC from EL1 returns NOT_SUPPORTED (-1);
// anything else stops the CPU.
    .balign 2048
el2_vectors:
    .rept 8
    .balign 128
    b       .
    .endr
    .balign 128                             // 0x400: lower EL, AArch64, synchronous
    mrs     x0, esr_el2
    lsr     x0, x0, #26
    cmp     x0, #0x16                       // EC: HVC from AArch64
    b.ne    .
    mov     x0, #-1
    eret
    .rept 7
    .balign 128
    b       .
    .endr

// EL1 vectors: only "current EL with SP_ELx" is used (we run at EL1h).
.macro SAVE
    sub     sp, sp, #176
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x29, [sp, #144]
    str     x30, [sp, #160]
.endm
.macro RESTORE
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x29, [sp, #144]
    ldr     x30, [sp, #160]
    add     sp, sp, #176
.endm

    .balign 2048
el1_vectors:
    .rept 4                                 // current EL with SP_EL0: never used
    .balign 128
    b       unexpected_vector
    .endr
    .balign 128                             // 0x200: current EL with SP_ELx, synchronous
    b       el1_sync
    .balign 128                             // 0x280: IRQ
    b       el1_irq
    .balign 128                             // 0x300: FIQ
    b       unexpected_vector
    .balign 128                             // 0x380: SError
    b       unexpected_vector
    .rept 8                                 // lower ELs: there are none
    .balign 128
    b       unexpected_vector
    .endr

el1_sync:
    SAVE
    mrs     x0, esr_el1
    mrs     x1, elr_el1
    mrs     x2, far_el1
    bl      exits_sync
    msr     elr_el1, x0
    RESTORE
    eret

el1_irq:
    SAVE
    bl      exits_irq
    RESTORE
    eret

unexpected_vector:
    SAVE
    mrs     x0, esr_el1
    mrs     x1, elr_el1
    mrs     x2, far_el1
    bl      exits_unexpected                // does not return
    b       halt

    .ltorg

    .section .bss.stacks, "aw", %nobits
    .balign 16
    .space  STACK_SIZE
stack0_top:
    .space  STACK_SIZE
stack1_top:
