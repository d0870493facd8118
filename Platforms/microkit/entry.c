// The Microkit entry points of the VMM protection domain, forwarded to Swift (MicrokitVMM.swift),
// and this platform's side of the shared runtime (Platforms/common/runtime.c): a heap in .bss and
// the debug console. The symbols the Microkit tool patches live here, in C, as the SDK expects.
#include "include/microkit_bridge.h"

uintptr_t guest_ram_vaddr;
uintptr_t guest_ram_size;

void vmm_init(void);
void vmm_notified(microkit_channel channel);
seL4_Bool vmm_fault(microkit_child child, seL4_Word label, seL4_Word *reply_length);

void init(void) { vmm_init(); }

void notified(microkit_channel channel) { vmm_notified(channel); }

seL4_Bool fault(microkit_child child, microkit_msginfo msginfo, microkit_msginfo *reply_msginfo) {
    seL4_Word reply_length = 0;     // message registers the reply carries (label 0), set by vmm_fault
    seL4_Bool reply = vmm_fault(child, microkit_msginfo_get_label(msginfo), &reply_length);
    *reply_msginfo = microkit_msginfo_new(0, reply_length);
    return reply;
}

microkit_msginfo protected(microkit_channel channel, microkit_msginfo msginfo) {
    (void)channel; (void)msginfo;
    return microkit_msginfo_new(0, 0);
}

static uint8_t heap[2 << 20] __attribute__((aligned(4096)));

void platform_heap(uintptr_t *start, uintptr_t *end) {
    *start = (uintptr_t)heap;
    *end = (uintptr_t)heap + sizeof heap;
}

_Noreturn void platform_fatal(const char *message) {
    microkit_dbg_puts(message);
    for (;;) seL4_Yield();
}

uint64_t platform_entropy(void) { return 0x243f6a8885a308d3ull; }
