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

/// The guest images linked into the VMM (Platforms/common/guest_images.S).
extern uint8_t guest_kernel_start[], guest_kernel_end[];
extern uint8_t guest_initrd_start[], guest_initrd_end[];
static inline const uint8_t *guest_kernel(void) { return guest_kernel_start; }
static inline size_t guest_kernel_size(void) { return (size_t)(guest_kernel_end - guest_kernel_start); }
static inline const uint8_t *guest_initrd(void) { return guest_initrd_start; }
static inline size_t guest_initrd_size(void) { return (size_t)(guest_initrd_end - guest_initrd_start); }
extern uint8_t guest_config_start[], guest_config_end[];
static inline const uint8_t *guest_config(void) { return guest_config_start; }
static inline size_t guest_config_size(void) { return (size_t)(guest_config_end - guest_config_start); }

/// Message register `index` of the fault being handled.
static inline seL4_Word vmm_message_register(seL4_Uint8 index) { return seL4_GetMR(index); }

/// The general-purpose registers of vCPU `vcpu`'s thread (seL4_TCB_ReadRegisters / WriteRegisters
/// on the VM's TCB capability).
static inline seL4_Error vmm_read_vcpu_registers(microkit_child vcpu, seL4_UserContext *context) {
    return seL4_TCB_ReadRegisters(BASE_VM_TCB_CAP + vcpu, seL4_False, 0, sizeof(seL4_UserContext) / sizeof(seL4_Word), context);
}
static inline seL4_Error vmm_write_vcpu_registers(microkit_child vcpu, seL4_UserContext *context) {
    return seL4_TCB_WriteRegisters(BASE_VM_TCB_CAP + vcpu, seL4_False, 0, sizeof(seL4_UserContext) / sizeof(seL4_Word), context);
}
