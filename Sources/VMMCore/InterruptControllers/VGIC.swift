// The guest's interrupt controller: one GIC, version 2 or 3, chosen when the VM is made.
//
// Why one struct and not a protocol with two implementations: the state a guest programs is the same
// in both architectures (enable, pending, active, priority, group and trigger of every interrupt,
// banked per vCPU for INTIDs 0–31, and the list registers that deliver them), and only the register
// maps in front of it differ. Embedded Swift has no existentials of plain protocols, and an enum
// holding a GICv2 or a GICv3 value would copy its arrays on each mutation through a `switch`; so
// `VGIC` holds the state once, with `version` saying which register maps the guest sees:
// - GICv2Distributor.swift (+ GICv2DistributorRegister.swift): the GICv2 GICD frame, IHI 0048B;
// - GICv3Distributor.swift, GICv3Redistributor.swift (+ GICv3Registers.swift): GICD with affinity
//   routing and one GICR per vCPU, IHI 0069; GICv3SoftwareInterrupts.swift: ICC_SGI1R_EL1 and kin;
// - ListRegisters.swift: delivery into list registers, both encodings (GICH_LR and ICH_LR<n>_EL2).
// This file owns the shared state, the operations both register maps use, and the public entry
// points, which dispatch on `version` (a compare per access, no copies).
//
// Shared choices (each front end lists its own):
// - Priority fields implement the top five bits, the same five a list register carries; the
//   unimplemented low bits are RAZ/WI.
// - SPI routing is one 64-bit word per SPI: on GICv2 the ITARGETSR byte (bit n = vCPU n), on GICv3
//   the GICD_IROUTER value (Aff3.Aff2.Aff1.Aff0, IRM). Both reset to "vCPU 0", so a guest that never
//   programs them still gets its SPIs. An SPI goes to one vCPU (`routedVCPU`).
// - SGIs: on GICv2 their pending state is per source CPU (a bit per source in `sgiSources`); GICv3
//   has no source (ICH_LR has no CPUID field), so every SGI is pending from "source 0".
// - ISACTIVER/ICACTIVER only record what the guest writes: the active state of a delivered
//   interrupt lives in the hardware list register, not here.

/// Which GIC architecture the guest sees.
public enum GICVersion: UInt8, Equatable, Sendable {
    case v2 = 2
    case v3 = 3

    /// vCPUs the controller can serve: GICv2's eight CPU interfaces; GICv3 as many as PSCI numbers.
    public var maximumVCPUs: Int { self == .v2 ? 8 : PSCI.maximumVCPUs }
}

public struct VGIC {
    public let version: GICVersion
    public let vcpuCount: Int
    /// INTIDs 0..<interruptCount exist: 32 private ones and the SPIs, a multiple of 32 up to 1020.
    public let interruptCount: Int

    /// The distributor's group enables: EnableGrp0 [0], EnableGrp1 [1] (GICv2 §4.3.1; GICv3 GICD_CTLR
    /// with DS = 1). The read-only bits GICv3 adds are the front end's.
    var control: UInt32 = 0
    /// How many guest writes of GICD_CTLR changed it (see `hardwareLinkedEntry`).
    public private(set) var controlChanges = 0
    /// How many distributor and redistributor writes the guest made, of any register: a platform
    /// that keeps what it derived from them (`hardwareLinkedEntry`) asks again only when this moved.
    public internal(set) var writes = 0
    // Banked per vCPU (INTIDs 0–31). SGI pending state is in `sgiSources`, not in `privateLatched`.
    var privateEnabled: [UInt32]
    var privateLatched: [UInt32]
    var privateActive: [UInt32]
    var privateGroup: [UInt32]
    var privateConfig: [UInt32]          // ICFGR1 of each vCPU
    var privatePriority: [UInt8]         // vcpu * 32 + INTID
    var sgiSources: [UInt8]              // vcpu * 16 + SGI: bit n = pending from source n (GICv3: bit 0)
    // Shared (SPIs); word n of a bit array covers INTIDs 32 + 32n ..< 64 + 32n.
    var spiEnabled: [UInt32]
    var spiLatched: [UInt32]
    var spiActive: [UInt32]
    var spiGroup: [UInt32]
    var spiConfig: [UInt32]              // ICFGR2 onwards
    var spiPriority: [UInt8]             // INTID - 32
    var spiRouting: [UInt64]             // INTID - 32: ITARGETSR byte (GICv2) or GICD_IROUTER (GICv3)
    /// GICv3 GICR_WAKER.ProcessorSleep of each vCPU's redistributor (true at reset).
    var redistributorAsleep: [Bool]
    var lists: ListRegisters

    /// `vcpuCount` is clamped to 1...version.maximumVCPUs, `spiCount` rounded up to a multiple of 32
    /// and capped so INTIDs stay below 1020, `listRegisterCount` clamped to 1...64 (GICH_VTR,
    /// ICH_VTR_EL2.ListRegs + 1 ≤ 16 on GICv3).
    public init(version: GICVersion = .v2, vcpuCount: Int, spiCount: Int = 64, listRegisterCount: Int = 4) {
        self.version = version
        self.vcpuCount = min(max(vcpuCount, 1), version.maximumVCPUs)
        let roundedSPIs = (max(spiCount, 0) + 31) / 32 * 32
        interruptCount = min(32 + roundedSPIs, 1020)
        let spis = interruptCount - 32
        let vcpus = self.vcpuCount
        // SGIs start enabled on both: fixed so on GICv2, a reset value the guest may change on GICv3.
        privateEnabled = [UInt32](repeating: 0x0000_FFFF, count: vcpus)
        privateLatched = [UInt32](repeating: 0, count: vcpus)
        privateActive = privateLatched
        privateConfig = privateLatched
        // GICv2 has no groups here (all group 0); a GICv3 guest is non-secure: group 1 from reset.
        privateGroup = [UInt32](repeating: version == .v3 ? ~0 : 0, count: vcpus)
        privatePriority = [UInt8](repeating: 0, count: vcpus * 32)
        sgiSources = [UInt8](repeating: 0, count: vcpus * 16)
        spiEnabled = [UInt32](repeating: 0, count: (spis + 31) / 32)
        spiLatched = spiEnabled
        spiActive = spiEnabled
        spiGroup = [UInt32](repeating: version == .v3 ? ~0 : 0, count: (spis + 31) / 32)
        spiConfig = [UInt32](repeating: 0, count: (spis + 15) / 16)
        spiPriority = [UInt8](repeating: 0, count: spis)
        spiRouting = [UInt64](repeating: version == .v2 ? 0x01 : 0, count: spis)
        redistributorAsleep = [Bool](repeating: true, count: version == .v3 ? vcpus : 0)
        lists = ListRegisters(vcpuCount: vcpus, count: min(max(listRegisterCount, 1), 64))
    }

    // MARK: The interface the machine and the platforms use

    /// A load from the distributor frame (GICD) at `offset`, `width` bytes wide, by `vcpu`. Accesses
    /// the register map does not allow read as zero.
    public mutating func distributorRead(vcpu: Int, offset: UInt64, width: Int) -> UInt64 {
        switch version {
        case .v2: return UInt64(gicv2DistributorRead(vcpu: vcpu, offset: offset, width: width))
        case .v3: return gicv3DistributorRead(vcpu: vcpu, offset: offset, width: width)
        }
    }

    /// A store to the distributor frame; may deliver interrupts through `sink`.
    public mutating func distributorWrite<S: VirtualInterruptSink>(vcpu: Int, offset: UInt64, width: Int,
                                                                  value: UInt64, sink: inout S) {
        switch version {
        case .v2:
            // GICv2's registers are 32 bits wide; a wider store is refused by the front end.
            gicv2DistributorWrite(vcpu: vcpu, offset: offset, width: width,
                                  value: UInt32(truncatingIfNeeded: value), sink: &sink)
        case .v3:
            gicv3DistributorWrite(vcpu: vcpu, offset: offset, width: width, value: value, sink: &sink)
        }
    }

    /// A load from the redistributor region (GICv3 only; zero on GICv2): `offset` is from the first
    /// vCPU's frame, and the address alone picks the frame, whoever reads it.
    public mutating func redistributorRead(vcpu: Int, offset: UInt64, width: Int) -> UInt64 {
        version == .v3 ? gicv3RedistributorRead(vcpu: vcpu, offset: offset, width: width) : 0
    }

    /// A store to the redistributor region (GICv3 only; ignored on GICv2).
    public mutating func redistributorWrite<S: VirtualInterruptSink>(vcpu: Int, offset: UInt64, width: Int,
                                                                    value: UInt64, sink: inout S) {
        guard version == .v3 else { return }
        gicv3RedistributorWrite(vcpu: vcpu, offset: offset, width: width, value: value, sink: &sink)
    }

    /// The entry through which a platform may forward physical `physical` straight to `vcpu` as
    /// `interrupt` (a PPI of its own, such as its virtual timer), linked to the hardware: the guest's
    /// deactivation deactivates the physical interrupt, so neither a maintenance interrupt nor the
    /// core's list registers take part. Nil while the guest's distributor would not forward it
    /// (distributor, group or interrupt disabled): the platform then hands the interrupt to
    /// `VirtualMachine.notified`, which latches it here. The entry carries the guest's priority and
    /// group for it. What it depends on changes only through this vCPU's own banked registers or
    /// GICD_CTLR; the latter counts in `controlChanges`, so a platform that keeps entries per CPU
    /// knows when all of them must be asked again.
    public func hardwareLinkedEntry(vcpu: Int, interrupt: UInt32, physical: UInt32) -> ListRegisterEntry? {
        guard vcpu >= 0, vcpu < vcpuCount, interrupt >= 16, interrupt < 32,
              isForwardable(vcpu: vcpu, irq: Int(interrupt)) else { return nil }
        return ListRegisterEntry(interrupt: interrupt, priority: priority(vcpu: vcpu, irq: Int(interrupt)),
                                 group1: isGroup1(vcpu: vcpu, irq: Int(interrupt)), physical: physical)
    }

    /// True when the guest sees `interrupt` pending for `vcpu` in ISPENDR (SGIs: from any source).
    public func isPending(vcpu: Int, interrupt: UInt32) -> Bool {
        guard vcpu >= 0, vcpu < vcpuCount, interrupt < UInt32(interruptCount) else { return false }
        let irq = Int(interrupt)
        return irq < 16 ? sgiSources[vcpu * 16 + irq] != 0 : isLatched(vcpu: vcpu, irq: irq, sourceCPU: 0)
    }

    // MARK: Per-interrupt state

    func isEnabled(vcpu: Int, irq: Int) -> Bool {
        if irq < 32 { return privateEnabled[vcpu] & (1 << UInt32(irq)) != 0 }
        return spiEnabled[(irq - 32) / 32] & (1 << UInt32(irq % 32)) != 0
    }

    func isGroup1(vcpu: Int, irq: Int) -> Bool {
        if irq < 32 { return privateGroup[vcpu] & (1 << UInt32(irq)) != 0 }
        return spiGroup[(irq - 32) / 32] & (1 << UInt32(irq % 32)) != 0
    }

    /// The distributor forwards an interrupt only when it is enabled and so is its group (GICv2
    /// §3.2.1; GICv3 §4.1: GICD_CTLR.EnableGrp0/EnableGrp1).
    func isForwardable(vcpu: Int, irq: Int) -> Bool {
        control & (isGroup1(vcpu: vcpu, irq: irq) ? 0b10 : 0b01) != 0 && isEnabled(vcpu: vcpu, irq: irq)
    }

    /// The source number an SGI raised by `vcpu` carries: the CPU on GICv2, none (0) on GICv3.
    func sgiSource(of vcpu: Int) -> UInt8 { version == .v2 ? UInt8(truncatingIfNeeded: vcpu) : 0 }

    /// How many sources an SGI can be pending from at once.
    var sgiSourceCount: Int { version == .v2 ? vcpuCount : 1 }

    /// Pending in the distributor, i.e. raised and not yet handed to a list register.
    func isLatched(vcpu: Int, irq: Int, sourceCPU: UInt8) -> Bool {
        if irq < 16 { return sgiSources[vcpu * 16 + irq] & (1 << (sourceCPU & 7)) != 0 }
        if irq < 32 { return privateLatched[vcpu] & (1 << UInt32(irq)) != 0 }
        return spiLatched[(irq - 32) / 32] & (1 << UInt32(irq % 32)) != 0
    }

    /// For PPIs and SPIs only (SGIs latch per source in `sgiSources`); `vcpu` is ignored for SPIs.
    mutating func setLatched(vcpu: Int, irq: Int, _ latched: Bool) {
        let bit: UInt32 = 1 << UInt32(irq % 32)
        if irq < 32 {
            if latched { privateLatched[vcpu] |= bit } else { privateLatched[vcpu] &= ~bit }
        } else {
            if latched { spiLatched[(irq - 32) / 32] |= bit } else { spiLatched[(irq - 32) / 32] &= ~bit }
        }
    }

    func priority(vcpu: Int, irq: Int) -> UInt8 {
        irq < 32 ? privatePriority[vcpu * 32 + irq] : spiPriority[irq - 32]
    }

    /// The implemented bits of word `n` of a 1-bit-per-interrupt register (n ≥ 1 covers SPIs).
    func implementedBits(word n: Int) -> UInt32 {
        let remaining = interruptCount - 32 * n
        if remaining <= 0 { return 0 }
        return remaining >= 32 ? ~0 : (1 << UInt32(remaining)) - 1
    }

    /// The vCPU SPI `irq` goes to now, never `avoiding`; nil when its routing names no vCPU that can
    /// take it (it stays pending until re-routed).
    func routedVCPU(spi irq: Int, avoiding: Int = -1) -> Int? {
        let route = spiRouting[irq - 32]
        switch version {
        case .v2:
            // GICv2 §3.1.1 lets the distributor pick any one target: the lowest-numbered.
            for vcpu in 0..<vcpuCount where route & (1 << UInt64(vcpu)) != 0 && vcpu != avoiding { return vcpu }
            return nil
        case .v3:
            if route & GICv3Routing.routingModeAny != 0 {
                // Interrupt_Routing_Mode 1: any participating PE; one whose redistributor is awake.
                for vcpu in 0..<vcpuCount where !redistributorAsleep[vcpu] && vcpu != avoiding { return vcpu }
                return nil
            }
            guard let vcpu = MPIDRAffinity(mpidr: route).vcpu(count: vcpuCount), vcpu != avoiding else { return nil }
            return vcpu
        }
    }

    // MARK: Register operations both maps share

    /// GICD_CTLR's group enables. Enabling a group forwards what became forwardable, highest priority
    /// first; disabling one sends its queued interrupts back to plain pending (those already in LRs
    /// stay with the guest).
    mutating func writeControl<S: VirtualInterruptSink>(_ value: UInt32, sink: inout S) {
        let old = control
        control = value & 0b11
        if control != old { controlChanges &+= 1 }
        if old & ~control != 0 {
            for vcpu in 0..<vcpuCount { dropUnforwardableQueued(vcpu: vcpu) }
        }
        if control & ~old != 0 { flushPending(sink: &sink) }
    }

    /// ISENABLER word `n`: word 0 is `vcpu`'s own (its SGI bits fixed on GICv2).
    mutating func setEnable<S: VirtualInterruptSink>(vcpu: Int, word n: Int, _ value: UInt32, sink: inout S) {
        if n == 0 {
            let added = value & privateWritableEnables & ~privateEnabled[vcpu]
            privateEnabled[vcpu] |= added
            for irq in 0..<32 where added & (1 << UInt32(irq)) != 0 {
                offerAllSources(vcpu: vcpu, irq: irq, sink: &sink)
            }
            drain(vcpu: vcpu, sink: &sink)
            return
        }
        guard implementedBits(word: n) != 0 else { return }
        let added = value & implementedBits(word: n) & ~spiEnabled[n - 1]
        spiEnabled[n - 1] |= added
        for bit in 0..<32 where added & (1 << UInt32(bit)) != 0 {
            deliverShared(irq: 32 * n + bit, drain: false, sink: &sink)
        }
        for target in 0..<vcpuCount { drain(vcpu: target, sink: &sink) }
    }

    /// Bits of ISENABLER0/ICENABLER0 a guest may change: PPIs, and on GICv3 SGIs too.
    var privateWritableEnables: UInt32 { version == .v2 ? 0xFFFF_0000 : ~0 }

    /// A disabled interrupt keeps its pending state but leaves the queues (not forwarded).
    mutating func clearEnable(vcpu: Int, word n: Int, _ value: UInt32) {
        if n == 0 {
            let removed = value & privateWritableEnables & privateEnabled[vcpu]
            privateEnabled[vcpu] &= ~removed
            for irq in 0..<32 where removed & (1 << UInt32(irq)) != 0 {
                lists.removeQueued(vcpu: vcpu, interrupt: UInt32(irq), sourceMask: 0xFF)
            }
            return
        }
        guard implementedBits(word: n) != 0 else { return }
        let removed = value & spiEnabled[n - 1]
        spiEnabled[n - 1] &= ~removed
        for bit in 0..<32 where removed & (1 << UInt32(bit)) != 0 {
            for target in 0..<vcpuCount {
                lists.removeQueued(vcpu: target, interrupt: UInt32(32 * n + bit), sourceMask: 0xFF)
            }
        }
    }

    /// ISPENDR; Linux uses it to retrigger interrupts. SGI bits are read-only on GICv2 (pending per
    /// source, set through GICD_SPENDSGIR); on GICv3 they set the SGI pending.
    mutating func setPending<S: VirtualInterruptSink>(vcpu: Int, word n: Int, _ value: UInt32, sink: inout S) {
        if n == 0 {
            let added = value & (version == .v2 ? 0xFFFF_0000 : ~0)
            for sgi in 0..<16 where added & (1 << UInt32(sgi)) != 0 { sgiSources[vcpu * 16 + sgi] |= 1 }
            privateLatched[vcpu] |= added & 0xFFFF_0000
            for irq in 0..<32 where added & (1 << UInt32(irq)) != 0 {
                offer(vcpu: vcpu, irq: irq, sourceCPU: 0, drain: false, sink: &sink)
            }
            drain(vcpu: vcpu, sink: &sink)
            return
        }
        guard implementedBits(word: n) != 0 else { return }
        let added = value & implementedBits(word: n)
        spiLatched[n - 1] |= added
        for bit in 0..<32 where added & (1 << UInt32(bit)) != 0 {
            deliverShared(irq: 32 * n + bit, drain: false, sink: &sink)
        }
        for target in 0..<vcpuCount { drain(vcpu: target, sink: &sink) }
    }

    /// ICPENDR: clears distributor pending state, including queued copies. An interrupt already in a
    /// list register belongs to the guest's CPU interface and is left there.
    mutating func clearPending(vcpu: Int, word n: Int, _ value: UInt32) {
        if n == 0 {
            let removed = value & (version == .v2 ? 0xFFFF_0000 : ~0)
            for sgi in 0..<16 where removed & (1 << UInt32(sgi)) != 0 { sgiSources[vcpu * 16 + sgi] = 0 }
            privateLatched[vcpu] &= ~removed
            for irq in 0..<32 where removed & (1 << UInt32(irq)) != 0 {
                lists.removeQueued(vcpu: vcpu, interrupt: UInt32(irq), sourceMask: 0xFF)
            }
            return
        }
        guard implementedBits(word: n) != 0 else { return }
        spiLatched[n - 1] &= ~value
        for bit in 0..<32 where value & (1 << UInt32(bit)) != 0 {
            for target in 0..<vcpuCount {
                lists.removeQueued(vcpu: target, interrupt: UInt32(32 * n + bit), sourceMask: 0xFF)
            }
        }
    }

    /// ISACTIVER (`set`) or ICACTIVER word `n`.
    mutating func changeActive(vcpu: Int, word n: Int, _ value: UInt32, set: Bool) {
        if n == 0 {
            if set { privateActive[vcpu] |= value } else { privateActive[vcpu] &= ~value }
        } else if implementedBits(word: n) != 0 {
            if set { spiActive[n - 1] |= value & implementedBits(word: n) } else { spiActive[n - 1] &= ~value }
        }
    }

    /// The ISACTIVER/ICACTIVER, ISENABLER/ICENABLER or ISPENDR/ICPENDR word `n` as the guest reads it.
    func enableWord(vcpu: Int, _ n: Int) -> UInt32 {
        n == 0 ? privateEnabled[vcpu] : (implementedBits(word: n) == 0 ? 0 : spiEnabled[n - 1])
    }

    func pendingWord(vcpu: Int, _ n: Int) -> UInt32 {
        if n == 0 {
            var sgis: UInt32 = 0
            for sgi in 0..<16 where sgiSources[vcpu * 16 + sgi] != 0 { sgis |= 1 << UInt32(sgi) }
            return sgis | privateLatched[vcpu]
        }
        return implementedBits(word: n) == 0 ? 0 : spiLatched[n - 1]
    }

    func activeWord(vcpu: Int, _ n: Int) -> UInt32 {
        n == 0 ? privateActive[vcpu] : (implementedBits(word: n) == 0 ? 0 : spiActive[n - 1])
    }

    /// IGROUPR word `n` (GICv3 only: GICv2 keeps every interrupt in group 0). A group change can make
    /// an interrupt forwardable or not: the queues follow.
    mutating func writeGroup<S: VirtualInterruptSink>(vcpu: Int, word n: Int, _ value: UInt32, sink: inout S) {
        if n == 0 {
            privateGroup[vcpu] = value
            dropUnforwardableQueued(vcpu: vcpu)
            for irq in 0..<32 { offerAllSources(vcpu: vcpu, irq: irq, sink: &sink) }
            drain(vcpu: vcpu, sink: &sink)
            return
        }
        guard implementedBits(word: n) != 0 else { return }
        spiGroup[n - 1] = value & implementedBits(word: n)
        for target in 0..<vcpuCount { dropUnforwardableQueued(vcpu: target) }
        for bit in 0..<32 where implementedBits(word: n) & (1 << UInt32(bit)) != 0 {
            deliverShared(irq: 32 * n + bit, drain: false, sink: &sink)
        }
        for target in 0..<vcpuCount { drain(vcpu: target, sink: &sink) }
    }

    func groupWord(vcpu: Int, _ n: Int) -> UInt32 {
        n == 0 ? privateGroup[vcpu] : (implementedBits(word: n) == 0 ? 0 : spiGroup[n - 1])
    }

    /// ICFGR word `n` (two bits per INTID, IHI 0048B §4.3.13, IHI 0069 GICD_ICFGR): Int_config[0] of
    /// each field is reserved; SGIs (word 0) are fixed edge-triggered; PPIs are writable per vCPU.
    mutating func writeConfiguration(vcpu: Int, word n: Int, _ value: UInt32) {
        if n == 1 { privateConfig[vcpu] = value & 0xAAAA_AAAA }
        if n >= 2 && 16 * n < interruptCount {
            let remaining = interruptCount - 16 * n
            let fields: UInt32 = remaining >= 16 ? ~0 : (1 << UInt32(2 * remaining)) - 1
            spiConfig[n - 2] = value & 0xAAAA_AAAA & fields
        }
    }

    func configurationWord(vcpu: Int, _ n: Int) -> UInt32 {
        if n == 0 { return 0xAAAA_AAAA }
        if n == 1 { return privateConfig[vcpu] }
        return 16 * n < interruptCount ? spiConfig[n - 2] : 0
    }

    /// IPRIORITYR byte for `irq` (< interruptCount); a queued copy takes the new priority at once.
    mutating func writePriority(vcpu: Int, irq: Int, _ value: UInt8) {
        let implemented = value & 0xF8
        if irq < 32 {
            privatePriority[vcpu * 32 + irq] = implemented
            lists.updatePriority(vcpu: vcpu, interrupt: UInt32(irq), priority: implemented)
        } else {
            spiPriority[irq - 32] = implemented
            for target in 0..<vcpuCount {
                lists.updatePriority(vcpu: target, interrupt: UInt32(irq), priority: implemented)
            }
        }
    }

    /// Sends `vcpu`'s queued interrupts that may no longer be forwarded back to plain pending.
    mutating func dropUnforwardableQueued(vcpu: Int) {
        var position = 0
        while position < lists.overflow[vcpu].count {
            if isForwardable(vcpu: vcpu, irq: Int(lists.overflow[vcpu][position].interrupt)) {
                position += 1
            } else {
                lists.overflow[vcpu].remove(at: position)
            }
        }
    }

    /// The new routing word of SPI `irq`; a pending SPI that can now go somewhere is forwarded.
    mutating func writeRouting<S: VirtualInterruptSink>(spi irq: Int, _ route: UInt64, sink: inout S) {
        spiRouting[irq - 32] = route
        deliverShared(irq: irq, drain: true, sink: &sink)
    }
}
