// The Microkit entry points of a driver protection domain, forwarded to Swift (DriverMain.swift),
// and this PD's side of the shared runtime (Platforms/common/runtime.c). One program serves every
// kind of driver: `vmm build` links it once per driver PD and tells it, through absolute symbols
// given to the linker (--defsym), which kind it is and which board transport it drives. The physical
// addresses of its DMA memory and of the shared data its device moves are patched in by the
// Microkit tool (<setvar region_paddr=…>).
#include "../include/microkit_bridge.h"

uintptr_t driver_dma_paddr;
uintptr_t driver_data_paddr;
extern char driver_kind[], driver_device_slot[];

void driver_start(uintptr_t kind, uintptr_t slot, uint64_t dma_physical, uint64_t data_physical);
void driver_notified(microkit_channel channel);

void init(void) {
    driver_start((uintptr_t)driver_kind, (uintptr_t)driver_device_slot, driver_dma_paddr, driver_data_paddr);
}

void notified(microkit_channel channel) { driver_notified(channel); }

static uint8_t heap[256 << 10] __attribute__((aligned(4096)));

void platform_heap(uintptr_t *start, uintptr_t *end) {
    *start = (uintptr_t)heap;
    *end = (uintptr_t)heap + sizeof heap;
}

_Noreturn void platform_fatal(const char *message) {
    microkit_dbg_puts(message);
    for (;;) seL4_Yield();
}

uint64_t platform_entropy(void) { return 0x13198a2e03707344ull; }
