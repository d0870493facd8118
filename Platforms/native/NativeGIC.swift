// The board's GICv2 as the native platform uses it (ARM IHI 0048B): the physical distributor and
// CPU interface take the interrupts that belong to the guest, and the hypervisor control
// interface (GICH) holds the list registers through which virtual interrupts reach the guest.
// The guest's own CPU interface is the hardware GICV, mapped into its IPA space by stage 2.
import NativeHardware
import VMMCore

struct NativeGIC {
    static let distributor: UInt = 0x0800_0000
    static let cpuInterface: UInt = 0x0801_0000
    static let hypervisorInterface: UInt = 0x0803_0000

    /// PPI 9 (INTID 25): the GICv2 maintenance interrupt on QEMU virt.
    static let maintenanceInterrupt: UInt32 = 25

    static func distributorWrite(_ offset: UInt, _ value: UInt32) { mmio_write32(distributor + offset, value) }

    /// Enables the distributor for both groups, then CPU 0's interfaces (`initializeThisCPU`).
    static func initialize() {
        distributorWrite(0x000, 0b11)                        // GICD_CTLR.EnableGrp0 | EnableGrp1
        initializeThisCPU()
    }

    /// This CPU's banked parts: its CPU interface, its virtual CPU interface, and its maintenance PPI,
    /// the kick SGI (NativeCPUs.kickInterrupt) and the guest's timer PPI.
    ///
    /// The CPU interface splits an interrupt's end in two (GICC_CTLR.EOImode = 1): the EOIR write
    /// drops the running priority, a GICC_DIR write deactivates. That is what lets the guest's timer
    /// go to the guest linked to the hardware (`CPUSlot.timerListRegister`): the VMM drops the priority and
    /// the guest's own deactivation of the virtual interrupt deactivates the physical one. QEMU's GIC
    /// forwards that deactivation only for a group 1 interrupt, so the timer PPI is group 1 (and the
    /// interface acknowledges group 1 interrupts too: AckCtl); everything else stays group 0.
    static func initializeThisCPU() {
        mmio_write32(cpuInterface + 0x004, 0xff)             // GICC_PMR: let every priority through
        distributorWrite(0x080, 1 << QEMUVirtBoard.virtualTimerInterrupt)   // GICD_IGROUPR0 (banked)
        // GICC_CTLR: EnableGrp0 | EnableGrp1 | AckCtl | EOImode.
        mmio_write32(cpuInterface + 0x000, 0b111 | 1 << 9)
        mmio_write32(hypervisorInterface + 0x000, 1)         // GICH_HCR.En: virtual CPU interface on
        enable(maintenanceInterrupt)
        enable(NativeCPUs.kickInterrupt)
        enable(QEMUVirtBoard.virtualTimerInterrupt)
    }

    /// This CPU takes no more interrupts: its CPU interface and its virtual CPU interface off.
    static func disableThisCPU() {
        mmio_write32(cpuInterface + 0x000, 0)                // GICC_CTLR
        mmio_write32(hypervisorInterface + 0x000, 0)         // GICH_HCR
    }

    /// GICD_SGIR (§4.3.11): SGI `interrupt` to the one CPU `cpu` (TargetListFilter 0, CPUTargetList).
    static func sendSoftwareInterrupt(_ interrupt: UInt32, toCPU cpu: Int) {
        sendSoftwareInterrupt(interrupt, toCPUs: UInt32(1) << UInt32(cpu & 7))
    }

    /// The same to every CPU whose bit is set in `cpus` (GICD_SGIR's target list, bits 0-7).
    static func sendSoftwareInterrupt(_ interrupt: UInt32, toCPUs cpus: UInt32) {
        dsb_sy()   // what the kicked CPU will read is visible before the SGI reaches it
        distributorWrite(0xf00, ((cpus & 0xff) << 16) | (interrupt & 0xf))
    }

    /// The number of list registers (GICH_VTR.ListRegs + 1).
    static var listRegisterCount: Int {
        Int(mmio_read32(hypervisorInterface + 0x004) & 0x3f) + 1
    }

    /// The list registers the core places interrupts in: all but the last, which is the platform's,
    /// for the guest's timer linked to the hardware (`CPUSlot.timerListRegister`).
    static var coreListRegisterCount: Int { listRegisterCount - 1 }

    /// Enables `interrupt`; an SPI goes to CPU `cpu` (its VM's first CPU), a PPI or SGI is this CPU's.
    static func enable(_ interrupt: UInt32, toCPU cpu: Int = 0) {
        let word = UInt(interrupt / 32) * 4, bit = UInt32(1) << (interrupt % 32)
        if interrupt >= 32 {
            mmio_write8(distributor + 0x800 + UInt(interrupt), UInt8(1) << UInt8(cpu & 7))   // GICD_ITARGETSR
            mmio_write8(distributor + 0x400 + UInt(interrupt), 0xa0) // GICD_IPRIORITYR
        }
        distributorWrite(0x100 + word, bit)                  // GICD_ISENABLER
    }

    static func disable(_ interrupt: UInt32) {
        distributorWrite(0x180 + UInt(interrupt / 32) * 4, UInt32(1) << (interrupt % 32))  // GICD_ICENABLER
    }

    /// GICC_IAR: the raw acknowledge value (INTID in bits [9:0]; 1020–1023 mean none).
    static func acknowledge() -> UInt32 { mmio_read32(cpuInterface + 0x00c) }
    /// GICC_EOIR: drops the running priority; the interrupt stays active (EOImode 1).
    static func dropPriority(_ iar: UInt32) { mmio_write32(cpuInterface + 0x010, iar) }
    /// GICC_DIR: deactivates an interrupt whose priority was dropped.
    static func deactivate(_ iar: UInt32) { mmio_write32(cpuInterface + 0x1000, iar) }

    /// True while this CPU's `interrupt` (an SGI or PPI) is active (GICD_ISACTIVER0, banked).
    static func isActive(_ interrupt: UInt32) -> Bool {
        mmio_read32(distributor + 0x300) & (1 << (interrupt % 32)) != 0
    }

    static func readListRegister(_ index: Int) -> UInt32 {
        mmio_read32(hypervisorInterface + 0x100 + UInt(index) * 4)
    }

    static func writeListRegister(_ index: Int, _ value: UInt32) {
        mmio_write32(hypervisorInterface + 0x100 + UInt(index) * 4, value)
    }

    /// GICH_EISR0: list registers whose interrupt the guest has deactivated (EOI maintenance).
    static var endOfInterruptStatus: UInt32 { mmio_read32(hypervisorInterface + 0x020) }
}
