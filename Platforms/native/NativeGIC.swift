// The board's GIC as the native platform uses it: a GICv2 (ARM IHI 0048B) or a GICv3 (IHI 0069),
// whichever the board has (`version`, from ID_AA64PFR0_EL1.GIC at boot). Either way the physical
// distributor and CPU interface take the interrupts that belong to the guests, and the hypervisor's
// list registers carry virtual interrupts to them.
//
// - GICv2: the CPU interface (GICC) and the hypervisor control interface (GICH) are MMIO frames,
//   banked per CPU; the guest's own CPU interface is the hardware GICV, mapped into its IPA space by
//   stage 2. SPIs go to a CPU by GICD_ITARGETSR; SGIs are sent through GICD_SGIR.
// - GICv3: the CPU interface is the ICC_* system registers (at EL2 the physical one), the list
//   registers ICH_LR<n>_EL2, the guest's CPU interface the virtual one behind ICV_* (its ICC_*
//   accesses at EL1 with HCR_EL2.IMO). Each CPU's SGIs and PPIs are configured in its own
//   redistributor (QEMU virt: 128 KiB each from 0x080A_0000, in CPU order); affinity routing, SPIs
//   go to a CPU by GICD_IROUTER; SGIs are sent through ICC_SGI1R_EL1. Everything is group 1 (the
//   board's GIC has one security state: GICD_CTLR.DS).
//
// On both, an interrupt's end is split in two (EOImode = 1): the EOI drops the running priority, a
// DIR deactivates. That is what lets the guest's timer go to the guest linked to the hardware
// (`CPUSlot.timerListRegister`): the VMM drops the priority and the guest's own deactivation of the
// virtual interrupt deactivates the physical one.
import NativeHardware
import VMMCore

struct NativeGIC {
    static let distributor: UInt = 0x0800_0000
    static let cpuInterface: UInt = 0x0801_0000
    static let hypervisorInterface: UInt = 0x0803_0000
    static let redistributors = UInt(QEMUVirtBoard.gicRedistributor)

    /// PPI 9 (INTID 25): the maintenance interrupt on QEMU virt (either version).
    static let maintenanceInterrupt: UInt32 = QEMUVirtBoard.gicMaintenanceInterrupt

    /// The board's GIC is a GICv3: the CPU has its system register interface (ID_AA64PFR0_EL1.GIC).
    /// Set by CPU 0 in `initialize`, before any other CPU starts (a plain stored flag: every GIC
    /// access on the exit path reads it).
    nonisolated(unsafe) static var isVersion3 = false

    /// The GIC version the core emulates for guests on this board (each guest gets the board's).
    static var guestVersion: GICVersion { isVersion3 ? .v3 : .v2 }

    static func distributorWrite(_ offset: UInt, _ value: UInt32) { mmio_write32(distributor + offset, value) }

    /// This CPU's redistributor (GICv3): RD_base; its SGI_base is 64 KiB above.
    static var redistributor: UInt { redistributors + UInt(current_cpu()) * UInt(QEMUVirtBoard.gicRedistributorFrameSize) }
    static var sgiBase: UInt { redistributor + 0x1_0000 }

    /// Waits while GICD_CTLR.RWP says a register write is still taking effect (GICv3).
    static func waitForDistributor() {
        while mmio_read32(distributor) & (1 << 31) != 0 {}
    }

    /// Enables the distributor (and every SPI into group 1 on GICv3), then CPU 0's interfaces
    /// (`initializeThisCPU`).
    static func initialize() {
        isVersion3 = (read_id_register(4, 0) >> 24) & 0xF != 0
        if isVersion3 {
            distributorWrite(0x000, 0)
            waitForDistributor()
            let words = UInt(mmio_read32(distributor + 0x004) & 0x1f) + 1   // GICD_TYPER.ITLinesNumber
            for word in 1..<words { distributorWrite(0x080 + word * 4, ~0) }   // GICD_IGROUPR: group 1
            distributorWrite(0x000, 1 << 4 | 1 << 1)          // GICD_CTLR: ARE | EnableGrp1
            waitForDistributor()
        } else {
            distributorWrite(0x000, 0b11)                    // GICD_CTLR.EnableGrp0 | EnableGrp1
        }
        initializeThisCPU()
    }

    /// This CPU's banked parts: its CPU interface, its virtual CPU interface, and its maintenance PPI,
    /// the kick SGI (NativeCPUs.kickInterrupt) and the guest's timer PPI.
    ///
    /// GICv2: QEMU's GIC forwards the guest's deactivation of a hardware-linked interrupt only for a
    /// group 1 interrupt, so the timer PPI is group 1 (and the interface acknowledges group 1
    /// interrupts too: AckCtl); everything else stays group 0.
    static func initializeThisCPU() {
        if isVersion3 {
            // The redistributor wakes up (GICR_WAKER.ProcessorSleep = 0; ChildrenAsleep follows).
            mmio_write32(redistributor + 0x014, mmio_read32(redistributor + 0x014) & ~UInt32(1 << 1))
            while mmio_read32(redistributor + 0x014) & (1 << 2) != 0 {}
            mmio_write32(sgiBase + 0x080, ~0)                // GICR_IGROUPR0: SGIs and PPIs in group 1
            // ICC_SRE_EL2: SRE, DFB, DIB, and Enable (EL1 may use its system registers: the guest's
            // are the virtual interface's).
            write_icc_sre_el2(0xf)
            isb()
            write_icc_pmr_el1(0xff)                          // let every priority through
            write_icc_ctlr_el1(1 << 1)                       // EOImode 1: EOIR drops priority, DIR deactivates
            write_icc_igrpen1_el1(1)
            write_ich_vmcr_el2(0)
            write_ich_hcr_el2(1)                             // ICH_HCR_EL2.En: virtual CPU interface on
            isb()
        } else {
            mmio_write32(cpuInterface + 0x004, 0xff)         // GICC_PMR: let every priority through
            distributorWrite(0x080, 1 << QEMUVirtBoard.virtualTimerInterrupt)   // GICD_IGROUPR0 (banked)
            // GICC_CTLR: EnableGrp0 | EnableGrp1 | AckCtl | EOImode.
            mmio_write32(cpuInterface + 0x000, 0b111 | 1 << 9)
            mmio_write32(hypervisorInterface + 0x000, 1)     // GICH_HCR.En: virtual CPU interface on
        }
        enable(maintenanceInterrupt)
        enable(NativeCPUs.kickInterrupt)
        enable(QEMUVirtBoard.virtualTimerInterrupt)
    }

    /// This CPU takes no more interrupts: its CPU interface and its virtual CPU interface off.
    static func disableThisCPU() {
        if isVersion3 {
            write_icc_igrpen1_el1(0)
            write_ich_hcr_el2(0)
            isb()
        } else {
            mmio_write32(cpuInterface + 0x000, 0)            // GICC_CTLR
            mmio_write32(hypervisorInterface + 0x000, 0)     // GICH_HCR
        }
    }

    /// The affinity of board CPU `cpu` (MPIDR_EL1's Aff1.Aff0): QEMU virt puts 16 CPUs in a cluster
    /// on a GICv3 board, 8 on a GICv2 one.
    static func affinity(ofCPU cpu: Int) -> UInt64 {
        let cluster = isVersion3 ? 16 : 8
        return UInt64(cpu / cluster) << 8 | UInt64(cpu % cluster)
    }

    /// SGI `interrupt` to the one CPU `cpu`: GICD_SGIR's CPUTargetList (GICv2, §4.3.11), or
    /// ICC_SGI1R_EL1's Aff1 and TargetList (GICv3).
    static func sendSoftwareInterrupt(_ interrupt: UInt32, toCPU cpu: Int) {
        dsb_sy()   // what the kicked CPU will read is visible before the SGI reaches it
        if isVersion3 {
            let affinity = affinity(ofCPU: cpu)
            write_icc_sgi1r_el1((affinity >> 8 & 0xff) << 16 | UInt64(interrupt & 0xf) << 24 | 1 << (affinity & 0xf))
            isb()
        } else {
            distributorWrite(0xf00, (UInt32(1) << UInt32(cpu & 7)) << 16 | (interrupt & 0xf))
        }
    }

    /// The number of list registers (ICH_VTR_EL2.ListRegs + 1, GICH_VTR.ListRegs + 1).
    static var listRegisterCount: Int {
        isVersion3 ? Int(read_ich_vtr_el2() & 0x1f) + 1 : Int(mmio_read32(hypervisorInterface + 0x004) & 0x3f) + 1
    }

    /// The list registers the core places interrupts in: all but the last, which is the platform's,
    /// for the guest's timer linked to the hardware (`CPUSlot.timerListRegister`).
    static var coreListRegisterCount: Int { listRegisterCount - 1 }

    /// Enables `interrupt`; an SPI goes to CPU `cpu` (its VM's first CPU), a PPI or SGI is this CPU's.
    static func enable(_ interrupt: UInt32, toCPU cpu: Int = 0) {
        let word = UInt(interrupt / 32) * 4, bit = UInt32(1) << (interrupt % 32)
        if interrupt >= 32 {
            if isVersion3 {
                mmio_write64(distributor + 0x6000 + UInt(interrupt) * 8, affinity(ofCPU: cpu))   // GICD_IROUTER
            } else {
                mmio_write8(distributor + 0x800 + UInt(interrupt), UInt8(1) << UInt8(cpu & 7))  // GICD_ITARGETSR
            }
            mmio_write8(distributor + 0x400 + UInt(interrupt), 0xa0)   // GICD_IPRIORITYR
            distributorWrite(0x100 + word, bit)              // GICD_ISENABLER
        } else if isVersion3 {
            mmio_write32(sgiBase + 0x100, bit)               // GICR_ISENABLER0
        } else {
            distributorWrite(0x100, bit)                     // GICD_ISENABLER0 (banked)
        }
    }

    static func disable(_ interrupt: UInt32) {
        let bit = UInt32(1) << (interrupt % 32)
        if interrupt < 32 && isVersion3 {
            mmio_write32(sgiBase + 0x180, bit)               // GICR_ICENABLER0
        } else {
            distributorWrite(0x180 + UInt(interrupt / 32) * 4, bit)   // GICD_ICENABLER
        }
    }

    /// The raw acknowledge value (INTID in bits [9:0] for every interrupt the VMM uses; 1020–1023
    /// mean none): ICC_IAR1_EL1 or GICC_IAR.
    static func acknowledge() -> UInt32 {
        isVersion3 ? UInt32(truncatingIfNeeded: read_icc_iar1_el1()) : mmio_read32(cpuInterface + 0x00c)
    }

    /// Drops the running priority; the interrupt stays active (EOImode 1).
    static func dropPriority(_ iar: UInt32) {
        if isVersion3 { write_icc_eoir1_el1(UInt64(iar)) } else { mmio_write32(cpuInterface + 0x010, iar) }
    }

    /// Deactivates an interrupt whose priority was dropped.
    static func deactivate(_ iar: UInt32) {
        if isVersion3 { write_icc_dir_el1(UInt64(iar)) } else { mmio_write32(cpuInterface + 0x1000, iar) }
    }

    /// True while this CPU's `interrupt` (an SGI or PPI) is active (GICR_ISACTIVER0 or the banked
    /// GICD_ISACTIVER0).
    static func isActive(_ interrupt: UInt32) -> Bool {
        let active = isVersion3 ? mmio_read32(sgiBase + 0x300) : mmio_read32(distributor + 0x300)
        return active & (1 << (interrupt % 32)) != 0
    }

    /// What list register `index` is to hold for `entry`: its ICH_LR or GICH_LR encoding.
    static func listRegisterValue(_ entry: ListRegisterEntry) -> UInt64 {
        isVersion3 ? entry.ichValue : UInt64(entry.gichValue)
    }

    static func writeListRegister(_ index: Int, _ value: UInt64) {
        if isVersion3 {
            write_ich_lr(UInt32(index), value)
        } else {
            mmio_write32(hypervisorInterface + 0x100 + UInt(index) * 4, UInt32(truncatingIfNeeded: value))
        }
    }

    /// List registers whose interrupt the guest has deactivated (EOI maintenance): ICH_EISR_EL2 or
    /// GICH_EISR0.
    static var endOfInterruptStatus: UInt32 {
        isVersion3 ? UInt32(truncatingIfNeeded: read_ich_eisr_el2()) : mmio_read32(hypervisorInterface + 0x020)
    }
}
