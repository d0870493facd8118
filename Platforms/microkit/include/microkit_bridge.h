// What the Microkit platform's Swift code sees of the SDK: libmicrokit's API (microkit.h, and
// through it libsel4's types, fault labels and message-register numbers, all from the SDK given at
// build time) plus a few one-call helpers that name the VM's capabilities. No policy here.
#pragma once
#include <stdint.h>
#include <stddef.h>
#include <microkit.h>

/// Guest RAM as mapped into this protection domain; patched by the Microkit tool (setvar_vaddr,
/// setvar_size in the generated system description).
extern uintptr_t guest_ram_vaddr;
extern uintptr_t guest_ram_size;

/// The guest images linked into the VMM (VM 0 of the guest_images.S `vmm build` writes).
extern uint8_t guest_kernel_start[], guest_kernel_end[];
extern uint8_t guest_initrd_start[], guest_initrd_end[];
static inline const uint8_t *guest_kernel(void) { return guest_kernel_start; }
static inline size_t guest_kernel_size(void) { return (size_t)(guest_kernel_end - guest_kernel_start); }
static inline const uint8_t *guest_initrd(void) { return guest_initrd_start; }
static inline size_t guest_initrd_size(void) { return (size_t)(guest_initrd_end - guest_initrd_start); }
extern uint8_t guest_config_start[], guest_config_end[];
static inline const uint8_t *guest_config(void) { return guest_config_start; }
static inline size_t guest_config_size(void) { return (size_t)(guest_config_end - guest_config_start); }
extern uint8_t guest_seed_start[], guest_seed_end[];
static inline const uint8_t *guest_seed(void) { return guest_seed_start; }
static inline size_t guest_seed_size(void) { return (size_t)(guest_seed_end - guest_seed_start); }

/// Message register `index` of the fault being handled.
static inline seL4_Word vmm_message_register(seL4_Uint8 index) { return seL4_GetMR(index); }

/// Sets message register `index` of the reply being built.
static inline void vmm_set_message_register(seL4_Uint8 index, seL4_Word value) { seL4_SetMR(index, value); }

/// The first `count` words of vCPU `vcpu`'s thread registers in seL4_UserContext order (pc, sp,
/// spsr, x0-x8, x16-x18, x29, x30, x9-x15, x19-x28, ...; seL4_TCB_ReadRegisters / WriteRegisters on
/// the VM's TCB capability). The kernel copies each word, so an exit moves only those it needs.
static inline seL4_Error vmm_read_vcpu_registers(microkit_child vcpu, seL4_UserContext *context, seL4_Word count) {
    return seL4_TCB_ReadRegisters(BASE_VM_TCB_CAP + vcpu, seL4_False, 0, count, context);
}
static inline seL4_Error vmm_write_vcpu_registers(microkit_child vcpu, seL4_UserContext *context, seL4_Word count) {
    return seL4_TCB_WriteRegisters(BASE_VM_TCB_CAP + vcpu, seL4_False, 0, count, context);
}
/// All of them.
static inline seL4_Word vmm_vcpu_register_count(void) { return sizeof(seL4_UserContext) / sizeof(seL4_Word); }

/// The system counter (CNTPCT_EL0, readable at EL0: the SDK's kernel sets KernelArmExportPCNTUser)
/// and its frequency.
static inline uint64_t vmm_counter(void) {
    uint64_t value;
    __asm__ volatile("isb; mrs %0, cntpct_el0" : "=r"(value));
    return value;
}
static inline uint64_t vmm_counter_frequency(void) {
    uint64_t value;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(value));
    return value;
}

/// The EL1 physical timer (exported to user level: KernelArmExportPTMRUser), whose PPI 30 reaches
/// its owner on a channel (a VMM alone, or the timer PD for several): armed to fire when the counter
/// reaches `deadline` (at once for one already passed), or disarmed.
static inline void vmm_timer_arm(uint64_t deadline) {
    __asm__ volatile("msr cntp_cval_el0, %0; msr cntp_ctl_el0, %1; isb" :: "r"(deadline), "r"((uint64_t)1));
}
static inline void vmm_timer_disarm(void) {
    __asm__ volatile("msr cntp_ctl_el0, %0; isb" :: "r"((uint64_t)0));
}

/// Which VM this VMM PD runs in a system of several (0: the first, or the only one) and whether the
/// timer PD keeps its timer deadline (a system of several VMs) rather than this PD arming the timer
/// itself: absolute symbols `vmm build` gives the linker (SystemBuilder.vmmLinkArguments), weak so
/// that an image linked without them reads 0.
extern char vmm_vm_index[] __attribute__((weak));
extern char vmm_timer_server[] __attribute__((weak));
static inline uintptr_t vmm_vm_number(void) { return (uintptr_t)vmm_vm_index; }
static inline _Bool vmm_has_timer_server(void) { return (uintptr_t)vmm_timer_server != 0; }
/// Tests only (MicrokitLayout.testHooksSymbol): the image may fault on purpose.
extern char vmm_test_hooks[] __attribute__((weak));
static inline _Bool vmm_has_test_hooks(void) { return (uintptr_t)vmm_test_hooks != 0; }
/// A store to an address this PD does not map: the fault a bug would make, which seL4 reports to the
/// monitor. Never returns.
static inline void vmm_fault_on_purpose(void) { *(volatile uint64_t *)(uintptr_t)0x10 = 0; }

/// Asks the timer PD (a protected procedure call on `channel`) to notify this PD when the counter
/// reaches `deadline` (0: never); returns the reply's label (0: done).
static inline seL4_Word vmm_timer_server_call(microkit_channel channel, seL4_Word label, uint64_t deadline) {
    microkit_mr_set(0, deadline);
    return microkit_msginfo_get_label(microkit_ppcall(channel, microkit_msginfo_new(label, 1)));
}

/// Device registers, for the driver PDs: volatile accesses the compiler neither merges nor elides.
static inline uint32_t mmio_read32(uintptr_t address) { return *(volatile uint32_t *)address; }
static inline uint16_t mmio_read16(uintptr_t address) { return *(volatile uint16_t *)address; }
static inline uint8_t mmio_read8(uintptr_t address) { return *(volatile uint8_t *)address; }
static inline void mmio_write32(uintptr_t address, uint32_t value) { *(volatile uint32_t *)address = value; }
static inline void memory_barrier(void) { __asm__ volatile("dsb sy" ::: "memory"); }
