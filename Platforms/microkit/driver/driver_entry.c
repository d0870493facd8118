// The Microkit entry points of a driver protection domain, forwarded to Swift (DriverMain.swift),
// and this PD's side of the shared runtime (Platforms/common/runtime.c). One program serves every
// kind of driver, and the timer PD (MicrokitTimerLayout.kind): `vmm build` links it once per PD and
// tells it, through absolute symbols given to the linker (--defsym), which kind it is, which board
// transport it drives and, for a block driver, the size of its VM's guest RAM. The physical
// addresses of its DMA memory, of the shared data its device moves and of its VM's guest RAM are
// patched in by the Microkit tool (<setvar region_paddr=…>).
#include "../include/microkit_bridge.h"

uintptr_t driver_dma_paddr;
uintptr_t driver_data_paddr;
uintptr_t driver_guest_ram_paddr;
extern char driver_kind[], driver_device_slot[];
/// Weak: an image linked without it (a driver that is not a block driver, or a build that predates
/// it) sees 0 and serves no guest RAM.
extern char driver_guest_ram_size[] __attribute__((weak));

void driver_start(uintptr_t kind, uintptr_t slot, uint64_t dma_physical, uint64_t data_physical,
                  uint64_t guest_ram_physical, uint64_t guest_ram_size);
void driver_notified(microkit_channel channel);
uint64_t driver_protected(microkit_channel channel, uint64_t label, uint64_t count, uint64_t message);

void init(void) {
    driver_start((uintptr_t)driver_kind, (uintptr_t)driver_device_slot, driver_dma_paddr, driver_data_paddr,
                 driver_guest_ram_paddr, (uintptr_t)driver_guest_ram_size);
}

void notified(microkit_channel channel) { driver_notified(channel); }

/// A protected procedure call (the timer PD's set-deadline call): MR0 and the label go to Swift, whose
/// answer is the reply's label; the reply carries no message registers.
microkit_msginfo protected(microkit_channel channel, microkit_msginfo message) {
    uint64_t label = driver_protected(channel, microkit_msginfo_get_label(message),
                                      microkit_msginfo_get_count(message), microkit_mr_get(0));
    return microkit_msginfo_new(label, 0);
}

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
