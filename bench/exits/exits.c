// The exit benchmark's guest: times round trips that each cost a guest one exit into a VMM.
//
// scripts/bench-exits.py boots this image (build/exits/exits.img, `make build/exits/exits.img`) on
// plain QEMU and under the VMM and compares what it prints. Freestanding C (no libc, no FP/SIMD:
// built with -mgeneral-regs-only) on top of start.S, for QEMU's `virt` board and the VMM's guest,
// which share the addresses used here: GIC distributor 0x08000000, GICv2 CPU interface 0x08010000,
// GICv3 redistributors from 0x080a0000 (128 KiB each), PL011 0x09000000, virtio-mmio transports at
// 0x0a000000 + 0x200 n, RAM from 0x40000000.
//
// The GIC: a GICv2 or a GICv3, whichever ID_AA64PFR0_EL1.GIC says (nonzero: the GICv3 system
// register CPU interface; the VMM traps that read and answers for its guest's GIC). On a GICv2 the
// memory-mapped CPU interface (GICC_IAR, GICC_EOIR, ...) and GICD_SGIR; on a GICv3 affinity routing
// (GICD_CTLR.ARE), everything in group 1, each CPU's redistributor (the frame whose GICR_TYPER
// affinity is the CPU's MPIDR) woken and holding its SGIs and PPIs, ICC_IAR1_EL1/ICC_EOIR1_EL1 and
// ICC_SGI1R_EL1. The banner line says which (`GICv2` or `GICv3`).
//
// Memory: the MMU is on with an identity map of 1 GiB blocks: [0, 1 GiB) Device-nGnRnE (every
// device above), [1 GiB, 2 GiB) Normal write-back cacheable (RAM: the loops, the stacks and the
// virtqueue run from cached memory, so a round trip measures the exit, not uncached instruction
// fetches), the rest unmapped. Both CPUs use the same table.
//
// Output, one line per kind (scripts/bench-exits.py parses the `exit ` lines, nothing else):
//   exit <kind> ns/op <mean, one decimal> n <round trips>
//   exit <kind> skipped (<why>)          the kind cannot run here
//   exit <kind> timeout (<what>)         a round trip did not complete within a second (or CPU 1
//                                        did not come up within five): the kind is abandoned
// then `exits done`, then PSCI SYSTEM_OFF (QEMU exits). Lines starting `exits: ` are information
// (where the guest found its devices, the PSCI version, the virtio-blk id, ...).
//
// The kinds, N round trips each (N from `exits.n=` on the kernel command line, default 20000;
// `exits.skip=KIND,KIND` skips kinds, a PSCI conduit without even probing it):
//   gicd-read         32-bit read of GICD_TYPER (the same register on a GICv2 and a GICv3)
//   gicd-write        32-bit write of the GICD_IPRIORITYR word of the last four INTIDs the
//                     distributor implements (SPIs nobody uses), always the same value
//   psci-hvc          PSCI_VERSION over HVC; psci-smc: the same over SMC. Each conduit is probed
//                     first: UNDEFINED there (plain QEMU at EL1 has no EL2 or EL3: SMC is
//                     undefined) or answered with NOT_SUPPORTED means `skipped`
//   virtio-blk-getid  the virtio-blk device's GET_ID request (type 8: header, 20-byte id buffer,
//                     status byte) through one virtqueue of 8 entries, notify, poll the used
//                     ring's idx (no interrupts: the driver asks for none). virtio-mmio version 2
//                     (modern) and version 1 (legacy) transports; the transports are the device
//                     tree's virtio,mmio nodes (an empty slot of plain QEMU answers DeviceID 0;
//                     the VMM has no slot beyond its guest's devices: touching one stops the guest)
//   vtimer-irq        from the virtual timer's deadline to the guest's IRQ handler: CVAL = now +
//                     20 us, WFI, the handler reads CNTVCT first; the figure is the mean of
//                     (handler's count - CVAL). M round trips (`exits.irq_n=`, default N / 10)
//   sgi-ipi           CPU 0 sends SGI 1 to CPU 1 (GICD_SGIR on a GICv2, ICC_SGI1R_EL1 on a GICv3)
//                     and spins on a counter that CPU 1's IRQ handler sets: one IPI delivery and
//                     handling per round trip. CPU 1 is started with PSCI CPU_ON; M round trips
// The PSCI conduit for CPU_ON and SYSTEM_OFF is the device tree's /psci `method` ("hvc" on plain
// QEMU without virtualization, "smc" under the VMM, which answers both), if that conduit answers.

typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long uint64_t;
typedef long int64_t;
typedef int int32_t;
typedef unsigned long size_t;

#define UART_BASE        0x09000000UL
#define GICD_BASE        0x08000000UL
#define GICC_BASE        0x08010000UL
#define VIRTIO_MMIO_BASE 0x0a000000UL
#define VIRTIO_MMIO_SLOTS 32

#define GICD_CTLR        0x000
#define GICD_TYPER       0x004
#define GICD_ISENABLER   0x100
#define GICD_IPRIORITYR  0x400
#define GICD_SGIR        0xf00
#define GICC_CTLR        0x000
#define GICC_PMR         0x004
#define GICC_IAR         0x00c
#define GICC_EOIR        0x010
#define GICD_CTLR_V2_ENABLE 0x01                // GICv2: Enable (group 0, all we use)
#define GICD_CTLR_V3_ENABLE 0x13                // GICv3, one security state: ARE | EnableGrp1 | EnableGrp0
#define GICD_CTLR_RWP    (1u << 31)

#define GICR_BASE        0x080a0000UL           // QEMU virt's redistributors, one frame pair per CPU
#define GICR_FRAME       0x20000UL              // RD_base, then SGI_base (IHI 0069 §12.10)
#define GICR_FRAMES_MAX  32
#define GICR_TYPER       0x008                  // 64-bit, read as words: Last [4]; affinity [63:32]
#define GICR_TYPER_LAST  (1u << 4)
#define GICR_WAKER       0x014
#define GICR_WAKER_PROCESSOR_SLEEP (1u << 1)
#define GICR_WAKER_CHILDREN_ASLEEP (1u << 2)
#define GICR_SGI_BASE    0x10000UL              // SGI_base: the distributor's layout for INTIDs 0-31
#define GICR_IGROUPR0    0x080

#define VTIMER_INTID     27
#define IPI_SGI          1

#define PSCI_VERSION     0x84000000UL
#define PSCI_CPU_ON      0xc4000003UL
#define PSCI_SYSTEM_OFF  0x84000008UL
#define PSCI_NOT_SUPPORTED 0xffffffffUL      // -1, compared as 32 bits (SMC32 return)

#define DEFAULT_N        20000UL

// ---- registers and MMIO (MMIO only through single ldr/str: a trapped access needs a syndrome
// the hypervisor can decode, which load/store pairs and writeback addressing do not give) ----

static inline uint32_t mmio_read32(uint64_t address) {
    uint32_t value;
    __asm__ volatile("ldr %w0, [%1]" : "=r"(value) : "r"(address) : "memory");
    return value;
}

static inline void mmio_write32(uint64_t address, uint32_t value) {
    __asm__ volatile("str %w0, [%1]" : : "rZ"(value), "r"(address) : "memory");
}

#define READ_SYSREG(name) ({ uint64_t v_; __asm__ volatile("mrs %0, " #name : "=r"(v_)); v_; })
#define WRITE_SYSREG(name, v) __asm__ volatile("msr " #name ", %0" : : "rZ"((uint64_t)(v)) : "memory")

static inline uint64_t counter(void) {
    __asm__ volatile("isb" : : : "memory");
    return READ_SYSREG(cntvct_el0);
}

static inline void irqs_on(void) { __asm__ volatile("msr daifclr, #2\n\tisb" : : : "memory"); }
static inline void irqs_off(void) { __asm__ volatile("msr daifset, #2" : : : "memory"); }
static inline void dsb_ish(void) { __asm__ volatile("dsb ish" : : : "memory"); }
static inline void dmb_ish(void) { __asm__ volatile("dmb ish" : : : "memory"); }
static inline void wfi(void) { __asm__ volatile("wfi" : : : "memory"); }

static uint64_t cpu_index(void) { return READ_SYSREG(mpidr_el1) & 0xff; }

// The C compiler may emit calls to these even with -fno-builtin.
void *memset(void *dst, int c, size_t n) {
    uint8_t *d = dst;
    while (n--) *d++ = (uint8_t)c;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

// ---- console (the PL011; QEMU and the VMM both leave it set up) ----

static void put_char(char c) {
    // Bounded: a UART that never drains must not hang the benchmark before its timeouts.
    for (int spins = 0; spins < 1000000 && (mmio_read32(UART_BASE + 0x18) & (1 << 5)); spins++) {}
    mmio_write32(UART_BASE, (uint8_t)c);
}

static void put_str(const char *s) {
    while (*s) {
        if (*s == '\n') put_char('\r');
        put_char(*s++);
    }
}

static void put_dec(uint64_t v) {
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    put_str(&buf[i]);
}

static void put_int(int64_t v) {
    if (v < 0) { put_char('-'); put_dec((uint64_t)-v); } else put_dec((uint64_t)v);
}

static void put_hex(uint64_t v) {
    char buf[19];
    int i = 18;
    buf[i] = 0;
    do { buf[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    buf[--i] = 'x';
    buf[--i] = '0';
    put_str(&buf[i]);
}

// ---- time ----

static uint64_t frequency;          // CNTFRQ_EL0, ticks per second

// Tenths of a nanosecond per item for `ticks` spent on `count` items (count > 0).
static uint64_t tenth_ns(uint64_t ticks, uint64_t count) {
    uint64_t milliticks = ticks * 1000 / count;         // < 2^64 for any run shorter than days
    return milliticks * 10000000UL / frequency;         // ticks * 10^10 / (count * frequency)
}

static void report(const char *kind, uint64_t ticks, uint64_t count) {
    uint64_t t = tenth_ns(ticks, count);
    put_str("exit "); put_str(kind); put_str(" ns/op "); put_dec(t / 10); put_char('.'); put_dec(t % 10);
    put_str(" n "); put_dec(count); put_str("\n");
}

static void skipped(const char *kind, const char *why) {
    put_str("exit "); put_str(kind); put_str(" skipped ("); put_str(why); put_str(")\n");
}

static void timed_out(const char *kind, const char *what, uint64_t done) {
    put_str("exit "); put_str(kind); put_str(" timeout ("); put_str(what); put_str(" after "); put_dec(done);
    put_str(" round trips)\n");
}

// ---- the GIC (see the top of the file) ----

static int gic_version;             // 2 or 3, from ID_AA64PFR0_EL1.GIC

static void gic_detect(void) {
    gic_version = (READ_SYSREG(id_aa64pfr0_el1) >> 24) & 0xf ? 3 : 2;
}

// RD_base of the redistributor whose GICR_TYPER affinity is this CPU's MPIDR, or 0. Reads stop at
// the frame marked Last: past it there may be nothing (and under the VMM, nothing of this guest's).
static uint64_t gic_redistributor(void) {
    uint64_t mpidr = READ_SYSREG(mpidr_el1);
    uint32_t affinity = (uint32_t)(mpidr & 0xffffff) | (uint32_t)((mpidr >> 32) & 0xff) << 24;
    for (uint64_t i = 0; i < GICR_FRAMES_MAX; i++) {
        uint64_t rd = GICR_BASE + i * GICR_FRAME;
        uint32_t low = mmio_read32(rd + GICR_TYPER);
        if (mmio_read32(rd + GICR_TYPER + 4) == affinity) return rd;
        if (low & GICR_TYPER_LAST) break;
    }
    return 0;
}

// The distributor on, before any CPU sets up its interface.
static void gic_enable_distributor(void) {
    if (gic_version == 2) {
        mmio_write32(GICD_BASE + GICD_CTLR, GICD_CTLR_V2_ENABLE);
        return;
    }
    mmio_write32(GICD_BASE + GICD_CTLR, GICD_CTLR_V3_ENABLE);
    for (int spins = 0; spins < 1000000 && (mmio_read32(GICD_BASE + GICD_CTLR) & GICD_CTLR_RWP); spins++) {}
}

// This CPU's interrupts: the SGI and, on CPU 0, the timer PPI with priority 0xa0 (the byte of INTID
// 27 in IPRIORITYR word 6), enabled; its CPU interface on with no priority mask. These are banked
// per CPU in the GICv2 distributor and live in a GICv3's redistributor, whose SGI_base frame has the
// same offsets. Returns 0 (and says why) when a GICv3 has no redistributor for this CPU.
static int gic_cpu_setup(void) {
    uint64_t cpu = cpu_index();
    uint64_t private = GICD_BASE;
    if (gic_version == 3) {
        uint64_t rd = gic_redistributor();
        if (!rd) {
            put_str("exits: no GICv3 redistributor frame has CPU "); put_dec(cpu); put_str("'s affinity\n");
            return 0;
        }
        mmio_write32(rd + GICR_WAKER, mmio_read32(rd + GICR_WAKER) & ~GICR_WAKER_PROCESSOR_SLEEP);
        for (int spins = 0; spins < 1000000 && (mmio_read32(rd + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP); spins++) {}
        private = rd + GICR_SGI_BASE;
        mmio_write32(private + GICR_IGROUPR0, 0xffffffff);     // every SGI and PPI in group 1
    }
    if (cpu == 0) {
        uint64_t word = private + GICD_IPRIORITYR + (VTIMER_INTID & ~3);
        uint32_t shift = 8 * (VTIMER_INTID & 3);
        mmio_write32(word, (mmio_read32(word) & ~(0xffu << shift)) | 0xa0u << shift);
        mmio_write32(private + GICD_ISENABLER, 1u << VTIMER_INTID | 1u << IPI_SGI);
    } else {
        mmio_write32(private + GICD_ISENABLER, 1u << IPI_SGI);   // always enabled on many GICs; harmless
    }
    if (gic_version == 2) {
        mmio_write32(GICC_BASE + GICC_PMR, 0xff);
        mmio_write32(GICC_BASE + GICC_CTLR, 1);
        return 1;
    }
    WRITE_SYSREG(icc_sre_el1, READ_SYSREG(icc_sre_el1) | 1);      // SRE: the system register interface
    __asm__ volatile("isb");
    WRITE_SYSREG(icc_pmr_el1, 0xff);
    WRITE_SYSREG(icc_igrpen1_el1, 1);
    __asm__ volatile("isb");
    return 1;
}

// The interrupt the CPU interface hands this CPU (its IAR value; the INTID is gic_intid of it).
static uint32_t gic_acknowledge(void) {
    return gic_version == 3 ? (uint32_t)READ_SYSREG(icc_iar1_el1) : mmio_read32(GICC_BASE + GICC_IAR);
}

static uint32_t gic_intid(uint32_t iar) { return gic_version == 3 ? iar & 0xffffff : iar & 0x3ff; }

static void gic_end(uint32_t iar) {
    if (gic_version == 3) WRITE_SYSREG(icc_eoir1_el1, iar);
    else mmio_write32(GICC_BASE + GICC_EOIR, iar);
}

// SGI `intid` to the CPU with affinity `mpidr` (its GICv2 CPU interface number `gicv2_target`).
static void gic_send_sgi(uint32_t intid, uint64_t mpidr, uint32_t gicv2_target) {
    if (gic_version == 2) {
        mmio_write32(GICD_BASE + GICD_SGIR, (1u << (16 + gicv2_target)) | intid);
        return;
    }
    // ICC_SGI1R_EL1: Aff3 [55:48], Aff2 [39:32], INTID [27:24], Aff1 [23:16], TargetList [15:0]
    // (one bit per Aff0 below 16).
    uint64_t value = ((mpidr >> 32) & 0xff) << 48 | ((mpidr >> 16) & 0xff) << 32 | (uint64_t)(intid & 0xf) << 24
                   | ((mpidr >> 8) & 0xff) << 16 | 1UL << (mpidr & 0xf);
    WRITE_SYSREG(icc_sgi1r_el1, value);
    __asm__ volatile("isb");
}

// ---- exceptions ----

static volatile int probing;        // a firmware-call probe is running: UNDEFINED is expected
static volatile int probe_undefined;

static void power_off(void);

uint64_t exits_sync(uint64_t esr, uint64_t elr, uint64_t far) {
    uint64_t ec = esr >> 26;
    if (probing && ec == 0) {       // EC 0: unknown reason, i.e. an UNDEFINED HVC or SMC
        probe_undefined = 1;
        return elr + 4;
    }
    put_str("\nexits: unexpected synchronous exception on CPU "); put_dec(cpu_index());
    put_str(": ESR "); put_hex(esr); put_str(" ELR "); put_hex(elr); put_str(" FAR "); put_hex(far); put_str("\n");
    power_off();
    for (;;) wfi();
}

void exits_unexpected(uint64_t esr, uint64_t elr, uint64_t far) {
    put_str("\nexits: unexpected exception vector on CPU "); put_dec(cpu_index());
    put_str(": ESR "); put_hex(esr); put_str(" ELR "); put_hex(elr); put_str(" FAR "); put_hex(far); put_str("\n");
    power_off();
    for (;;) wfi();
}

static volatile uint64_t timer_fired;       // CPU 0: the handler's CNTVCT, 0 until it ran
static volatile uint64_t ping;              // CPU 0 -> CPU 1: the round trip's number
static volatile uint64_t pong;              // CPU 1's handler copies ping here
static volatile uint64_t cpu1_ready;
static volatile uint64_t cpu1_other_irqs;

void exits_irq(void) {
    uint64_t now = counter();
    uint32_t iar = gic_acknowledge();
    uint32_t id = gic_intid(iar);
    if (id >= 1020) return;                 // special (spurious): nothing to end; no LPIs here
    if (id == VTIMER_INTID) {
        WRITE_SYSREG(cntv_ctl_el0, 0);      // off before EOI, or the level fires again
        __asm__ volatile("isb");
        timer_fired = now;
    } else if (id == IPI_SGI && cpu_index() != 0) {
        pong = ping;
    } else if (cpu_index() != 0) {
        cpu1_other_irqs++;
    }
    gic_end(iar);
}

// ---- PSCI ----

extern uint64_t firmware_hvc(uint64_t function, uint64_t a1, uint64_t a2, uint64_t a3);
extern uint64_t firmware_smc(uint64_t function, uint64_t a1, uint64_t a2, uint64_t a3);

enum conduit { HVC = 0, SMC = 1, NONE = 2 };
static const char *conduit_names[] = {"hvc", "smc", "none"};
static enum conduit psci_conduit = NONE;

static uint64_t firmware(enum conduit c, uint64_t function, uint64_t a1, uint64_t a2, uint64_t a3) {
    return c == SMC ? firmware_smc(function, a1, a2, a3) : firmware_hvc(function, a1, a2, a3);
}

// PSCI_VERSION over `c`; 0 when the instruction is UNDEFINED here (`*why` says so) or the call is
// not supported.
static uint64_t probe_psci(enum conduit c, const char **why) {
    probe_undefined = 0;
    probing = 1;
    uint64_t version = firmware(c, PSCI_VERSION, 0, 0, 0);
    probing = 0;
    if (probe_undefined) {
        *why = c == SMC ? "SMC is UNDEFINED here: no EL3 or hypervisor to answer it"
                        : "HVC is UNDEFINED here: no EL2, and no PSCI firmware answers it";
        return 0;
    }
    if ((version & 0xffffffffUL) == PSCI_NOT_SUPPORTED) {
        *why = c == SMC ? "PSCI_VERSION over SMC returned NOT_SUPPORTED"
                        : "PSCI_VERSION over HVC returned NOT_SUPPORTED";
        return 0;
    }
    return version;
}

static void power_off(void) {
    if (psci_conduit != NONE) firmware(psci_conduit, PSCI_SYSTEM_OFF, 0, 0, 0);
}

// ---- the device tree (a flattened device tree: header, structure block, strings block) ----

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int streq(const char *a, const char *b) {
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}

static int starts_with(const char *s, const char *prefix) {
    while (*prefix) if (*s++ != *prefix++) return 0;
    return 1;
}

// "a\0b\0" property values: does `list` of `len` bytes contain `want`?
static int string_list_has(const char *list, uint32_t len, const char *want) {
    uint32_t at = 0;
    while (at < len) {
        if (streq(list + at, want)) return 1;
        while (at < len && list[at]) at++;
        at++;
    }
    return 0;
}

static struct {
    int valid;
    char psci_method[8];
    int cpus;
    uint64_t cpu_mpidr[8];
    int transports;
    uint64_t transport[VIRTIO_MMIO_SLOTS];
    const char *bootargs;
} dt;

static void parse_dtb(const uint8_t *fdt) {
    if (!fdt || be32(fdt) != 0xd00dfeed) return;
    uint32_t total = be32(fdt + 4);
    const uint8_t *structure = fdt + be32(fdt + 8);
    const char *strings = (const char *)fdt + be32(fdt + 12);
    uint32_t structure_size = be32(fdt + 36);
    const uint8_t *end = structure + structure_size;
    if (be32(fdt + 8) + structure_size > total) return;
    int depth = 0;
    uint32_t address_cells = 2;         // the root's #address-cells (the default until it says)
    // The node being read at depth 2 (a child of the root) and at depth 3 (a child of /cpus).
    const char *node2 = "", *node3 = "";
    int is_virtio = 0, is_cpu = 0;
    uint64_t reg2 = 0, reg3 = 0;
    int has_reg2 = 0, has_reg3 = 0;
    const uint8_t *p = structure;
    while (p + 4 <= end) {
        uint32_t token = be32(p);
        p += 4;
        if (token == 1) {                                   // FDT_BEGIN_NODE, name, padded
            const char *name = (const char *)p;
            uint32_t len = 0;
            while (p + len < end && p[len]) len++;
            p += (len + 4) & ~3u;
            depth++;
            if (depth == 2) { node2 = name; is_virtio = 0; has_reg2 = 0; }
            if (depth == 3) { node3 = name; is_cpu = 0; has_reg3 = 0; }
        } else if (token == 2) {                            // FDT_END_NODE
            if (depth == 2 && is_virtio && has_reg2 && dt.transports < VIRTIO_MMIO_SLOTS)
                dt.transport[dt.transports++] = reg2;
            if (depth == 3 && streq(node2, "cpus") && (is_cpu || starts_with(node3, "cpu@"))) {
                if (dt.cpus < 8) dt.cpu_mpidr[dt.cpus] = has_reg3 ? reg3 : (uint64_t)dt.cpus;
                dt.cpus++;
            }
            depth--;
        } else if (token == 3) {                            // FDT_PROP: len, nameoff, value
            uint32_t len = be32(p);
            const char *name = strings + be32(p + 4);
            const uint8_t *value = p + 8;
            p += 8 + ((len + 3) & ~3u);
            if (depth == 1 && streq(name, "#address-cells") && len == 4) address_cells = be32(value);
            if (depth == 2) {
                if (starts_with(node2, "psci") && streq(name, "method") && len <= sizeof dt.psci_method)
                    memcpy(dt.psci_method, value, len);
                if (streq(node2, "chosen") && streq(name, "bootargs") && len > 0)
                    dt.bootargs = (const char *)value;
                if (streq(name, "compatible") && string_list_has((const char *)value, len, "virtio,mmio"))
                    is_virtio = 1;
                if (streq(name, "reg") && len >= 4 * address_cells) {
                    reg2 = address_cells == 2 ? (uint64_t)be32(value) << 32 | be32(value + 4) : be32(value);
                    has_reg2 = 1;
                }
            }
            if (depth == 3 && streq(node2, "cpus")) {
                if (streq(name, "device_type") && streq((const char *)value, "cpu")) is_cpu = 1;
                if (streq(name, "reg") && len >= 4) {       // /cpus has #address-cells 1 or 2
                    reg3 = len >= 8 ? (uint64_t)be32(value) << 32 | be32(value + 4) : be32(value);
                    has_reg3 = 1;
                }
            }
        } else if (token == 4) {                            // FDT_NOP
        } else {                                            // FDT_END or garbage
            break;
        }
    }
    dt.valid = 1;
}

// The value of `key=value` on the kernel command line (up to the next space), or 0.
static const char *bootarg(const char *key) {
    const char *s = dt.bootargs;
    if (!s) return 0;
    while (*s) {
        while (*s == ' ') s++;
        const char *k = key, *t = s;
        while (*k && *t == *k) { k++; t++; }
        if (!*k && *t == '=') return t + 1;
        while (*s && *s != ' ') s++;
    }
    return 0;
}

// `key=<decimal>` (non-zero) on the kernel command line, or `fallback`.
static uint64_t bootarg_number(const char *key, uint64_t fallback) {
    const char *t = bootarg(key);
    if (!t) return fallback;
    uint64_t v = 0;
    int digits = 0;
    for (; *t >= '0' && *t <= '9'; t++, digits++) v = v * 10 + (uint64_t)(*t - '0');
    return digits && v ? v : fallback;
}

// Is `kind` in the comma-separated list of `exits.skip=` on the command line?
static int skip_requested(const char *kind) {
    const char *t = bootarg("exits.skip");
    while (t && *t && *t != ' ') {
        const char *k = kind;
        while (*k && *t == *k) { k++; t++; }
        if (!*k && (*t == ',' || *t == ' ' || !*t)) return 1;
        while (*t && *t != ',' && *t != ' ') t++;
        if (*t == ',') t++;
    }
    return 0;
}

static const char *const skip_reason = "exits.skip on the kernel command line";

// ---- the identity map (see the top of the file) ----

__attribute__((section(".bss.page_table"), aligned(4096))) uint64_t page_table[512];
extern void enable_mmu(void);

static void build_page_table(void) {
    const uint64_t block = 1, af = 1UL << 10, inner_shareable = 3UL << 8;
    const uint64_t device = 0UL << 2, normal = 1UL << 2, xn = 3UL << 53;   // AttrIndx, UXN | PXN
    page_table[0] = 0x00000000UL | device | af | xn | block;
    page_table[1] = 0x40000000UL | normal | af | inner_shareable | block;
    page_table[2] = 0;
    page_table[3] = 0;
    // Written with the MMU and caches off: make sure no stale cache line hides it from the walker.
    for (uint64_t a = (uint64_t)page_table; a < (uint64_t)page_table + sizeof page_table; a += 64)
        __asm__ volatile("dc ivac, %0" : : "r"(a) : "memory");
    __asm__ volatile("dsb sy" : : : "memory");
}

// ---- the kinds ----

static uint64_t timeout_ticks(void) { return frequency; }     // one second per round trip

static void gicd_read(uint64_t n) {
    uint64_t start = counter();
    for (uint64_t i = 0; i < n; i++) (void)mmio_read32(GICD_BASE + GICD_TYPER);
    report("gicd-read", counter() - start, n);
}

static void gicd_write(uint64_t n, uint64_t word) {
    uint64_t start = counter();
    for (uint64_t i = 0; i < n; i++) mmio_write32(word, 0xa0a0a0a0);
    report("gicd-write", counter() - start, n);
}

static void psci_round_trips(enum conduit c, uint64_t version, const char *why, uint64_t n) {
    const char *kind = c == SMC ? "psci-smc" : "psci-hvc";
    if (!version) { skipped(kind, why); return; }
    uint64_t start = counter();
    for (uint64_t i = 0; i < n; i++) {
        if (firmware(c, PSCI_VERSION, 0, 0, 0) != version) {
            put_str("exit "); put_str(kind); put_str(" skipped (PSCI_VERSION changed its answer)\n");
            return;
        }
    }
    report(kind, counter() - start, n);
}

// virtio (virtio 1.2 §2.7 split virtqueues, §4.2 virtio-mmio, §5.2 block device)
#define VIRTIO_MAGIC        0x000
#define VIRTIO_VERSION      0x004
#define VIRTIO_DEVICE_ID    0x008
#define VIRTIO_DEV_FEATURES 0x010
#define VIRTIO_DEV_FEAT_SEL 0x014
#define VIRTIO_DRV_FEATURES 0x020
#define VIRTIO_DRV_FEAT_SEL 0x024
#define VIRTIO_GUEST_PAGE_SIZE 0x028            // legacy
#define VIRTIO_QUEUE_SEL    0x030
#define VIRTIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_QUEUE_NUM    0x038
#define VIRTIO_QUEUE_ALIGN  0x03c               // legacy
#define VIRTIO_QUEUE_PFN    0x040               // legacy
#define VIRTIO_QUEUE_READY  0x044
#define VIRTIO_QUEUE_NOTIFY 0x050
#define VIRTIO_STATUS       0x070
#define VIRTIO_QUEUE_DESC   0x080
#define VIRTIO_QUEUE_DRIVER 0x090
#define VIRTIO_QUEUE_DEVICE 0x0a0
#define STATUS_ACKNOWLEDGE  1
#define STATUS_DRIVER       2
#define STATUS_DRIVER_OK    4
#define STATUS_FEATURES_OK  8
#define STATUS_NEEDS_RESET  0x40
#define QUEUE_SIZE          8
#define DESC_NEXT           1
#define DESC_WRITE          2
#define AVAIL_NO_INTERRUPT  1

struct descriptor { uint64_t address; uint32_t length; uint16_t flags; uint16_t next; };

// One queue in the legacy layout (which a version 2 device accepts too): descriptors, then the
// available ring, then the used ring at the next 4 KiB boundary.
static struct {
    struct descriptor desc[QUEUE_SIZE];
    uint16_t avail_flags, avail_idx, avail_ring[QUEUE_SIZE], used_event;
    uint8_t pad[4096 - 16 * QUEUE_SIZE - 6 - 2 * QUEUE_SIZE];
    uint16_t used_flags, used_idx;
    struct { uint32_t id, length; } used_ring[QUEUE_SIZE];
    uint16_t avail_event;
} __attribute__((aligned(4096))) queue;

static struct {
    uint32_t type, reserved;
    uint64_t sector;
    char id[24];
    uint8_t status;
} __attribute__((aligned(64))) request;

static void virtio_blk_getid(uint64_t n) {
    const char *kind = "virtio-blk-getid";
    uint64_t base = 0;
    uint32_t version = 0;
    // The device tree's transports (QEMU lists its 32, the VMM its guest's devices); without a
    // device tree, QEMU virt's 32 slots.
    int count = dt.transports ? dt.transports : (dt.valid ? 0 : VIRTIO_MMIO_SLOTS);
    for (int i = 0; i < count && !base; i++) {
        uint64_t t = dt.transports ? dt.transport[i] : VIRTIO_MMIO_BASE + 0x200UL * (uint64_t)i;
        if (mmio_read32(t + VIRTIO_MAGIC) == 0x74726976 && mmio_read32(t + VIRTIO_DEVICE_ID) == 2) {
            base = t;
            version = mmio_read32(t + VIRTIO_VERSION);
        }
    }
    if (!base) { skipped(kind, "no virtio-blk device among the device tree's virtio-mmio transports"); return; }
    if (version != 1 && version != 2) { skipped(kind, "virtio-mmio version neither 1 nor 2"); return; }
    put_str("exits: virtio-blk at "); put_hex(base); put_str(version == 2 ? " (virtio-mmio version 2, modern)\n"
                                                              : " (virtio-mmio version 1, legacy)\n");

    mmio_write32(base + VIRTIO_STATUS, 0);
    for (int spins = 0; spins < 1000000 && mmio_read32(base + VIRTIO_STATUS); spins++) {}
    mmio_write32(base + VIRTIO_STATUS, STATUS_ACKNOWLEDGE);
    mmio_write32(base + VIRTIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    uint32_t status = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
    if (version == 2) {
        mmio_write32(base + VIRTIO_DEV_FEAT_SEL, 1);
        if (!(mmio_read32(base + VIRTIO_DEV_FEATURES) & 1)) {     // VIRTIO_F_VERSION_1 (bit 32)
            skipped(kind, "the device does not offer VIRTIO_F_VERSION_1");
            return;
        }
        mmio_write32(base + VIRTIO_DRV_FEAT_SEL, 1);
        mmio_write32(base + VIRTIO_DRV_FEATURES, 1);
        mmio_write32(base + VIRTIO_DRV_FEAT_SEL, 0);
        mmio_write32(base + VIRTIO_DRV_FEATURES, 0);
        status |= STATUS_FEATURES_OK;
        mmio_write32(base + VIRTIO_STATUS, status);
        if (!(mmio_read32(base + VIRTIO_STATUS) & STATUS_FEATURES_OK)) {
            skipped(kind, "the device did not accept FEATURES_OK");
            return;
        }
    } else {
        mmio_write32(base + VIRTIO_DRV_FEAT_SEL, 0);
        mmio_write32(base + VIRTIO_DRV_FEATURES, 0);
        mmio_write32(base + VIRTIO_GUEST_PAGE_SIZE, 4096);
    }
    mmio_write32(base + VIRTIO_QUEUE_SEL, 0);
    uint32_t maximum = mmio_read32(base + VIRTIO_QUEUE_NUM_MAX);
    if (maximum < 3) { skipped(kind, "queue 0 takes fewer than the 3 descriptors of a request"); return; }
    uint32_t size = maximum < QUEUE_SIZE ? maximum : QUEUE_SIZE;
    if (size != QUEUE_SIZE) { skipped(kind, "queue 0 is smaller than 8 entries"); return; }
    mmio_write32(base + VIRTIO_QUEUE_NUM, size);
    uint64_t q = (uint64_t)&queue;
    if (version == 2) {
        uint64_t areas[3] = {q, (uint64_t)&queue.avail_flags, (uint64_t)&queue.used_flags};
        for (int i = 0; i < 3; i++) {
            mmio_write32(base + VIRTIO_QUEUE_DESC + 0x10 * (uint64_t)i, (uint32_t)areas[i]);
            mmio_write32(base + VIRTIO_QUEUE_DESC + 0x10 * (uint64_t)i + 4, (uint32_t)(areas[i] >> 32));
        }
        mmio_write32(base + VIRTIO_QUEUE_READY, 1);
    } else {
        mmio_write32(base + VIRTIO_QUEUE_ALIGN, 4096);
        mmio_write32(base + VIRTIO_QUEUE_PFN, (uint32_t)(q >> 12));
    }
    status |= STATUS_DRIVER_OK;
    mmio_write32(base + VIRTIO_STATUS, status);
    if (mmio_read32(base + VIRTIO_STATUS) & STATUS_NEEDS_RESET) {
        skipped(kind, "the device set DEVICE_NEEDS_RESET during set-up");
        return;
    }

    // One request, the same three descriptors every time.
    request.type = 8;                   // VIRTIO_BLK_T_GET_ID
    request.reserved = 0;
    request.sector = 0;
    queue.desc[0] = (struct descriptor){(uint64_t)&request, 16, DESC_NEXT, 1};
    queue.desc[1] = (struct descriptor){(uint64_t)&request.id, 20, DESC_NEXT | DESC_WRITE, 2};
    queue.desc[2] = (struct descriptor){(uint64_t)&request.status, 1, DESC_WRITE, 0};
    queue.avail_flags = AVAIL_NO_INTERRUPT;
    uint16_t next = queue.avail_idx;
    uint64_t start = counter(), limit = timeout_ticks();
    for (uint64_t i = 0; i < n; i++) {
        request.status = 0xff;
        queue.avail_ring[next % QUEUE_SIZE] = 0;
        dmb_ish();
        queue.avail_idx = ++next;
        dsb_ish();                      // the ring before the notification (a Device write)
        mmio_write32(base + VIRTIO_QUEUE_NOTIFY, 0);
        uint64_t asked = counter();
        while (*(volatile uint16_t *)&queue.used_idx != next) {
            if (counter() - asked > limit) {
                timed_out(kind, "the used ring did not advance within 1 s", i);
                mmio_write32(base + VIRTIO_STATUS, 0);
                return;
            }
        }
        dmb_ish();
        if (request.status != 0) {
            put_str("exit "); put_str(kind); put_str(" skipped (GET_ID completed with status ");
            put_dec(request.status); put_str(")\n");
            mmio_write32(base + VIRTIO_STATUS, 0);
            return;
        }
    }
    uint64_t ticks = counter() - start;
    request.id[20] = 0;
    put_str("exits: virtio-blk id '"); put_str(request.id); put_str("'\n");
    report(kind, ticks, n);
    mmio_write32(base + VIRTIO_STATUS, 0);      // reset: leave the device as we found it
}

// One timer interrupt: IRQs masked, arm the timer `delta` ticks ahead, then WFI (which a pending
// interrupt ends even while masked) and unmask to take it. `spin` (the first round trip): spin with
// IRQs unmasked instead of WFI, bounded, to learn whether the interrupt comes at all before relying
// on WFI. Returns the handler's count - CVAL, or -1 after a timeout.
static int64_t one_timer_interrupt(uint64_t delta, int spin) {
    irqs_off();
    timer_fired = 0;
    uint64_t deadline = counter() + delta;
    WRITE_SYSREG(cntv_cval_el0, deadline);
    WRITE_SYSREG(cntv_ctl_el0, 1);          // ENABLE, IMASK clear
    __asm__ volatile("isb");
    if (spin) {
        irqs_on();
        while (!timer_fired) {
            if ((int64_t)(counter() - deadline) > (int64_t)timeout_ticks()) {
                irqs_off();
                WRITE_SYSREG(cntv_ctl_el0, 0);
                return -1;
            }
        }
    } else {
        while (!timer_fired) {
            wfi();
            irqs_on();
            irqs_off();
        }
    }
    irqs_off();
    return (int64_t)(timer_fired - deadline);
}

static void vtimer_irq(uint64_t n) {
    const char *kind = "vtimer-irq";
    uint64_t delta = frequency / 50000;         // 20 us: far more than arming it and reaching WFI
    if (delta == 0) delta = 1;
    if (one_timer_interrupt(delta, 1) < 0) {
        timed_out(kind, "no virtual timer interrupt (PPI 27) within 1 s of its deadline", 0);
        return;
    }
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        int64_t late = one_timer_interrupt(delta, 0);
        total += late > 0 ? (uint64_t)late : 0;
    }
    report(kind, total, n);
}

extern char secondary_entry[];

void exits_secondary(uint64_t context) {
    (void)context;
    cpu1_ready = gic_cpu_setup() ? 1 : 2;
    dsb_ish();
    irqs_on();
    for (;;) wfi();
}

static void sgi_ipi(uint64_t n) {
    const char *kind = "sgi-ipi";
    if (dt.cpus < 2) {
        skipped(kind, dt.valid ? "the device tree lists 1 CPU" : "no device tree: cannot tell how many CPUs");
        return;
    }
    if (psci_conduit == NONE) { skipped(kind, "no PSCI conduit to start CPU 1 with"); return; }
    int64_t result = (int64_t)(int32_t)firmware(psci_conduit, PSCI_CPU_ON, dt.cpu_mpidr[1],
                                                (uint64_t)secondary_entry, 1);
    if (result != 0) {
        put_str("exit sgi-ipi skipped (PSCI CPU_ON of CPU 1 returned "); put_int(result); put_str(")\n");
        return;
    }
    uint64_t asked = counter();
    while (!cpu1_ready) {
        if (counter() - asked > 5 * frequency) { timed_out(kind, "CPU 1 did not come up within 5 s", 0); return; }
    }
    if (cpu1_ready != 1) { skipped(kind, "CPU 1 found no GICv3 redistributor of its own"); return; }
    uint64_t start = counter(), limit = timeout_ticks();
    for (uint64_t i = 1; i <= n; i++) {
        ping = i;
        dsb_ish();                                  // ping before the SGI
        gic_send_sgi(IPI_SGI, dt.cpu_mpidr[1], 1);
        uint64_t sent = counter();
        while (pong != i) {
            if (counter() - sent > limit) { timed_out(kind, "CPU 1 did not answer the SGI within 1 s", i - 1); return; }
        }
    }
    report(kind, counter() - start, n);
}

// ---- main ----

void exits_main(const uint8_t *dtb, uint64_t entry_el) {
    frequency = READ_SYSREG(cntfrq_el0);
    gic_detect();
    build_page_table();
    enable_mmu();
    parse_dtb(dtb);
    uint64_t n = bootarg_number("exits.n", DEFAULT_N);
    uint64_t irq_n = bootarg_number("exits.irq_n", n / 10 ? n / 10 : 1);

    put_str("\nexits: the exit benchmark's guest, entered at EL"); put_dec(entry_el);
    put_str(entry_el == 2 ? " (dropped to EL1)" : ""); put_str(", GICv"); put_dec((uint64_t)gic_version);
    put_str(", counter "); put_dec(frequency);
    put_str(" Hz, MMU on (identity map, RAM write-back cached, devices nGnRnE)\n");
    if (!frequency) { put_str("exits: CNTFRQ_EL0 is 0: cannot time anything\n"); return; }
    put_str("exits: device tree at "); put_hex((uint64_t)dtb);
    if (dt.valid) {
        put_str(": "); put_dec((uint64_t)dt.cpus); put_str(" CPUs, PSCI method '"); put_str(dt.psci_method);
        put_str("', "); put_dec((uint64_t)dt.transports); put_str(" virtio-mmio transports\n");
    } else {
        put_str(": none or not a flattened device tree (no FDT magic)\n");
    }
    put_str("exits: "); put_dec(n); put_str(" round trips per kind, "); put_dec(irq_n); put_str(" for vtimer-irq and sgi-ipi\n");

    // A conduit named in exits.skip is not even probed (its calls may be what stops the guest).
    const char *why_hvc = skip_reason, *why_smc = skip_reason;
    uint64_t hvc = skip_requested("psci-hvc") ? 0 : probe_psci(HVC, &why_hvc);
    uint64_t smc = skip_requested("psci-smc") ? 0 : probe_psci(SMC, &why_smc);
    if (entry_el == 2 && !hvc && !skip_requested("psci-hvc"))
        why_hvc = "entered at EL2: an HVC reaches only this guest's own EL2 stub";
    if (streq(dt.psci_method, "smc") && smc) psci_conduit = SMC;
    else if (streq(dt.psci_method, "hvc") && hvc) psci_conduit = HVC;
    else psci_conduit = hvc ? HVC : smc ? SMC : NONE;
    uint64_t version = psci_conduit == SMC ? smc : hvc;
    put_str("exits: PSCI conduit "); put_str(conduit_names[psci_conduit]);
    if (psci_conduit != NONE) {
        put_str(", version "); put_dec(version >> 16); put_char('.'); put_dec(version & 0xffff);
    }
    put_str("\n");

    uint32_t typer = mmio_read32(GICD_BASE + GICD_TYPER);
    uint64_t interrupts = 32 * ((typer & 0x1f) + 1);
    uint64_t word = GICD_BASE + GICD_IPRIORITYR + interrupts - 4;
    put_str("exits: GICD_TYPER "); put_hex(typer); put_str(": "); put_dec(interrupts);
    put_str(" INTIDs; gicd-write writes GICD_IPRIORITYR at "); put_hex(word); put_str(" (INTIDs ");
    put_dec(interrupts - 4); put_char('-'); put_dec(interrupts - 1); put_str(")\n");

    if (skip_requested("gicd-read")) skipped("gicd-read", skip_reason); else gicd_read(n);
    if (skip_requested("gicd-write")) skipped("gicd-write", skip_reason); else gicd_write(n, word);
    psci_round_trips(HVC, hvc, why_hvc, n);
    psci_round_trips(SMC, smc, why_smc, n);
    if (skip_requested("virtio-blk-getid")) skipped("virtio-blk-getid", skip_reason); else virtio_blk_getid(n);
    gic_enable_distributor();
    const char *why_irq = gic_cpu_setup() ? 0 : "CPU 0 found no GICv3 redistributor of its own";
    if (skip_requested("vtimer-irq") || why_irq) skipped("vtimer-irq", why_irq ? why_irq : skip_reason);
    else vtimer_irq(irq_n);
    if (skip_requested("sgi-ipi") || why_irq) skipped("sgi-ipi", why_irq ? why_irq : skip_reason);
    else sgi_ipi(irq_n);
    put_str("exits done\n");
    if (psci_conduit == NONE) {
        put_str("exits: no PSCI conduit for SYSTEM_OFF; stopping here\n");
        return;
    }
    power_off();
    put_str("exits: PSCI SYSTEM_OFF returned; stopping here\n");
}
