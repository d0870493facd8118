// The native platform's only window on the hardware: system registers, MMIO, barriers, cache
// maintenance and the symbols of the start-up code. Each helper is one instruction or one access;
// all policy lives in Swift. Imported into Swift as the module NativeHardware.
#pragma once
#include <stdint.h>
#include <stddef.h>

#define SYSREG_RW(name)                                                             \
    static inline uint64_t read_##name(void) {                                     \
        uint64_t v; __asm__ volatile("mrs %0, " #name : "=r"(v)); return v;        \
    }                                                                               \
    static inline void write_##name(uint64_t v) {                                  \
        __asm__ volatile("msr " #name ", %0" :: "r"(v) : "memory");                \
    }

SYSREG_RW(esr_el2)
SYSREG_RW(far_el2)
SYSREG_RW(hpfar_el2)
SYSREG_RW(hcr_el2)
SYSREG_RW(vtcr_el2)
SYSREG_RW(vttbr_el2)
SYSREG_RW(vpidr_el2)
SYSREG_RW(vmpidr_el2)
SYSREG_RW(cptr_el2)
SYSREG_RW(hstr_el2)
SYSREG_RW(mdcr_el2)
SYSREG_RW(cnthctl_el2)
SYSREG_RW(cntvoff_el2)
SYSREG_RW(sctlr_el1)
SYSREG_RW(sctlr_el2)
SYSREG_RW(tcr_el2)
SYSREG_RW(mair_el2)
SYSREG_RW(ttbr0_el2)
SYSREG_RW(midr_el1)
SYSREG_RW(mpidr_el1)
SYSREG_RW(currentel)
SYSREG_RW(cntfrq_el0)
SYSREG_RW(cntpct_el0)
SYSREG_RW(tpidr_el2)
SYSREG_RW(cntv_ctl_el0)
// GICv3 (IHI 0069): the physical CPU interface the VMM uses at EL2, and the hypervisor's control of
// the guest's virtual CPU interface.
SYSREG_RW(icc_sre_el2)
SYSREG_RW(icc_pmr_el1)
SYSREG_RW(icc_ctlr_el1)
SYSREG_RW(icc_igrpen1_el1)
SYSREG_RW(icc_iar1_el1)
SYSREG_RW(icc_eoir1_el1)
SYSREG_RW(icc_dir_el1)
SYSREG_RW(icc_sgi1r_el1)
SYSREG_RW(ich_hcr_el2)
SYSREG_RW(ich_vtr_el2)
SYSREG_RW(ich_vmcr_el2)
SYSREG_RW(ich_eisr_el2)

static inline void dsb_sy(void) { __asm__ volatile("dsb sy" ::: "memory"); }
static inline void dsb_ish(void) { __asm__ volatile("dsb ish" ::: "memory"); }
static inline void isb(void) { __asm__ volatile("isb" ::: "memory"); }
static inline void wfi(void) { __asm__ volatile("wfi" ::: "memory"); }
static inline void wfe(void) { __asm__ volatile("wfe" ::: "memory"); }
static inline void sev(void) { __asm__ volatile("dsb ish\n sev" ::: "memory"); }

/// The index of the CPU running this code (start.S keeps it in TPIDR_EL2).
static inline unsigned current_cpu(void) { return (unsigned)read_tpidr_el2(); }

/// Atomic read-modify-write of one word (sequentially consistent: the VMM's locks, NativeLock.swift,
/// build on them); each returns the word's value before.
static inline uint32_t atomic_fetch_or32(uint32_t *word, uint32_t bits) {
    return __atomic_fetch_or(word, bits, __ATOMIC_SEQ_CST);
}
static inline uint32_t atomic_fetch_and32(uint32_t *word, uint32_t bits) {
    return __atomic_fetch_and(word, bits, __ATOMIC_SEQ_CST);
}
static inline uint32_t atomic_load32(uint32_t *word) { return __atomic_load_n(word, __ATOMIC_RELAXED); }
static inline uint64_t atomic_fetch_or64(uint64_t *word, uint64_t bits) {
    return __atomic_fetch_or(word, bits, __ATOMIC_SEQ_CST);
}
static inline uint64_t atomic_fetch_and64(uint64_t *word, uint64_t bits) {
    return __atomic_fetch_and(word, bits, __ATOMIC_SEQ_CST);
}
static inline uint64_t atomic_load64(uint64_t *word) { return __atomic_load_n(word, __ATOMIC_RELAXED); }

/// Where secondary CPUs start (start.S): their PSCI CPU_ON entry point.
void secondary_entry(void);
static inline uint64_t secondary_entry_address(void) { return (uint64_t)(uintptr_t)&secondary_entry; }

static inline void tlbi_alle2(void) { __asm__ volatile("tlbi alle2\n dsb ish\n isb" ::: "memory"); }
static inline void tlbi_vmalls12e1(void) { __asm__ volatile("tlbi vmalls12e1\n dsb ish\n isb" ::: "memory"); }
static inline void ic_iallu(void) { __asm__ volatile("ic iallu\n dsb ish\n isb" ::: "memory"); }

static inline uint32_t mmio_read32(uintptr_t address) { return *(volatile uint32_t *)address; }
static inline void mmio_write32(uintptr_t address, uint32_t value) { *(volatile uint32_t *)address = value; }
static inline uint8_t mmio_read8(uintptr_t address) { return *(volatile uint8_t *)address; }
static inline void mmio_write8(uintptr_t address, uint8_t value) { *(volatile uint8_t *)address = value; }

/// Cleans and invalidates [start, start + length) to the point of coherency, so that a guest
/// running with its caches off sees what the VMM wrote (Linux arm64 booting.rst).
void clean_dcache_range(uintptr_t start, size_t length);

/// ICH_LR<index>_EL2 (index 0...15; anything else reads 0 and ignores the write).
uint64_t read_ich_lr(unsigned index);
void write_ich_lr(unsigned index, uint64_t value);
static inline uint64_t mmio_read64(uintptr_t address) { return *(volatile uint64_t *)address; }
static inline void mmio_write64(uintptr_t address, uint64_t value) { *(volatile uint64_t *)address = value; }

/// The board CPU's ID register S3_0_C0_C<crm>_<op2> (crm 1...7, op2 0...7; anything else reads 0).
uint64_t read_id_register(unsigned crm, unsigned op2);

/// ZCR_EL2 (SVE's vector length for EL1 and EL0; S3_4_C1_C2_0, named by encoding so that the
/// assembler needs no SVE option). Only on a CPU with SVE, after CPTR_EL2.TZ is cleared.
static inline void write_zcr_el2(uint64_t v) { __asm__ volatile("msr S3_4_C1_C2_0, %0" :: "r"(v) : "memory"); }

/// Calls the board's firmware (QEMU's PSCI at EL3/firmware level) with SMC #0; returns x0.
uint64_t firmware_call(uint64_t function, uint64_t a1, uint64_t a2, uint64_t a3);

/// Restores the register frame and enters the guest with ERET; returns on the next exit.
/// The frame layout is x0..x30, ELR, SPSR (see start.S).
uint64_t enter_guest(uint64_t *frame);

extern uint8_t heap_start[], heap_end[];

/// The guests linked into the VMM (the guest_images.S `vmm build` writes): a u64 count, then for
/// each VM nine words: kernel start and end, initrd start and end, configuration start and end,
/// its board CPUs (addresses; the CPUs are bytes: byte i the CPU of vCPU i, 0xFF after the last),
/// and its seed's start and end (GuestEntropy).
extern const uint64_t guest_table[];
static inline uint64_t guest_count(void) { return guest_table[0]; }
/// Part `part` (0 kernel, 1 initrd, 2 configuration) of VM `vm`: its address and its size.
static inline const uint8_t *guest_part(uint64_t vm, uint64_t part) {
    return (const uint8_t *)(uintptr_t)guest_table[1 + vm * 9 + part * 2];
}
static inline size_t guest_part_size(uint64_t vm, uint64_t part) {
    return (size_t)(guest_table[2 + vm * 9 + part * 2] - guest_table[1 + vm * 9 + part * 2]);
}
static inline const uint8_t *guest_cpus(uint64_t vm) { return (const uint8_t *)(uintptr_t)guest_table[7 + vm * 9]; }
static inline const uint8_t *guest_seed(uint64_t vm) { return (const uint8_t *)(uintptr_t)guest_table[8 + vm * 9]; }
static inline size_t guest_seed_size(uint64_t vm) { return (size_t)(guest_table[9 + vm * 9] - guest_table[8 + vm * 9]); }
/// vCPUs the CPU bytes name (the bytes before the first 0xFF).
static inline uint64_t guest_vcpu_count(uint64_t vm) {
    const uint8_t *cpus = guest_cpus(vm);
    uint64_t n = 0;
    while (n < 255 && cpus[n] != 0xFF) n++;
    return n;
}
/// The board CPU of vCPU `vcpu` of VM `vm`.
static inline uint64_t guest_cpu(uint64_t vm, uint64_t vcpu) { return guest_cpus(vm)[vcpu]; }

static inline uint16_t mmio_read16(uintptr_t address) { return *(volatile uint16_t *)address; }
