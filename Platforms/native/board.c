// The native platform's side of the shared runtime (Platforms/common/runtime.c): its heap is the
// memory between the VMM's image and guest RAM (linker.ld), its console the PL011.
#include <stdint.h>
#include "include/hardware.h"

void platform_heap(uintptr_t *start, uintptr_t *end) {
    *start = (uintptr_t)heap_start;
    *end = (uintptr_t)heap_end;
}

_Noreturn void platform_fatal(const char *message) {
    for (; *message; message++) {
        if (*message == '\n') mmio_write32(0x09000000, '\r');
        mmio_write32(0x09000000, (uint8_t)*message);
    }
    for (;;) wfi();
}

uint64_t platform_entropy(void) { return read_cntpct_el0(); }

// The ID registers of group 3, S3_0_C0_C<crm>_<op2> for crm 1...7 (an MRS names its register in the
// instruction, so one case per encoding). The architecture has the unassigned ones of this range
// read as zero at EL1 and above.
#define ID_REGISTER(crm, op2) \
    case (crm) * 8 + (op2): __asm__ volatile("mrs %0, S3_0_C0_C" #crm "_" #op2 : "=r"(value)); break;
#define ID_REGISTERS(crm) \
    ID_REGISTER(crm, 0) ID_REGISTER(crm, 1) ID_REGISTER(crm, 2) ID_REGISTER(crm, 3) \
    ID_REGISTER(crm, 4) ID_REGISTER(crm, 5) ID_REGISTER(crm, 6) ID_REGISTER(crm, 7)

uint64_t read_id_register(unsigned crm, unsigned op2) {
    uint64_t value = 0;
    switch (crm * 8 + op2) {
        ID_REGISTERS(1) ID_REGISTERS(2) ID_REGISTERS(3) ID_REGISTERS(4) ID_REGISTERS(5) ID_REGISTERS(6) ID_REGISTERS(7)
        default: break;
    }
    return value;
}

// GICv3 list registers: ICH_LR<n>_EL2 is S3_4_C12_C12_<n> for n < 8 and S3_4_C12_C13_<n - 8> above.
#define LIST_REGISTER(n, crm, op2) \
    case n: if (write) __asm__ volatile("msr S3_4_C12_" #crm "_" #op2 ", %0" :: "r"(value) : "memory"); \
            else __asm__ volatile("mrs %0, S3_4_C12_" #crm "_" #op2 : "=r"(value)); break;

static uint64_t list_register(unsigned index, int write, uint64_t value) {
    switch (index) {
        LIST_REGISTER(0, C12, 0) LIST_REGISTER(1, C12, 1) LIST_REGISTER(2, C12, 2) LIST_REGISTER(3, C12, 3)
        LIST_REGISTER(4, C12, 4) LIST_REGISTER(5, C12, 5) LIST_REGISTER(6, C12, 6) LIST_REGISTER(7, C12, 7)
        LIST_REGISTER(8, C13, 0) LIST_REGISTER(9, C13, 1) LIST_REGISTER(10, C13, 2) LIST_REGISTER(11, C13, 3)
        LIST_REGISTER(12, C13, 4) LIST_REGISTER(13, C13, 5) LIST_REGISTER(14, C13, 6) LIST_REGISTER(15, C13, 7)
        default: value = 0; break;
    }
    return value;
}

uint64_t read_ich_lr(unsigned index) { return list_register(index, 0, 0); }
void write_ich_lr(unsigned index, uint64_t value) { (void)list_register(index, 1, value); }
