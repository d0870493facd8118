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
