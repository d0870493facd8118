// The guest's GICv2 distributor (GICD), emulated register by register per ARM IHI 0048B §4.3.
//
// The guest's GICD frame is left out of stage 2, so every access traps and arrives here as
// (vCPU, offset, width, value). This file owns the distributor state the guest can see: the enable,
// pending, active, priority, target and configuration state of every interrupt, banked per vCPU for
// INTIDs 0–31, and turns register writes that make an interrupt ready (CTLR enable, ISENABLER,
// ISPENDR, SGIR, SPENDSGIR) into deliveries through the list registers (ListRegisters.swift). The
// CPU interface is the hardware GICV frame and is not emulated. Register offsets and the ID values
// live in DistributorRegister.swift.
//
// Choices the spec leaves open, and what this model does:
// - No Security Extensions; IGROUPR is RAZ/WI: every interrupt is group 0, which Linux uses on GICv2.
// - SGIs are always enabled (ISENABLER0[15:0] read 1, writes ignored), as QEMU's GIC does.
// - Priority fields implement the top five bits, the same five a list register carries (§3.3: the
//   unimplemented low bits are RAZ/WI).
// - ICFGR: SGIs read 0b10 (edge) and ignore writes; PPIs are writable per vCPU, as SPIs (bit 1 of
//   each field; bit 0 is reserved, RAZ/WI). Linux reprograms the timer PPIs' trigger and checks.
// - ISPENDR0/ICPENDR0 SGI bits are read-only; SGI pending state is per source and is set/cleared
//   through SPENDSGIR/CPENDSGIR, which are implemented (§4.3.14, §4.3.15).
// - SPI targets reset to vCPU 0 so a guest that never programs them still gets its SPIs; an SPI is
//   forwarded to the lowest-numbered vCPU it targets.
// - ISACTIVER/ICACTIVER only record what the guest writes: the active state of a delivered
//   interrupt lives in the hardware list register, not here.
// - Registers beyond the implemented interrupts, reserved offsets, halfword accesses, misaligned
//   word accesses and byte accesses to word-only registers read as zero and ignore writes.

public struct VGIC {
    public let vcpuCount: Int
    /// INTIDs 0..<interruptCount exist: 32 private ones and the SPIs, a multiple of 32 up to 1020.
    public let interruptCount: Int

    var control: UInt32 = 0
    /// How many guest writes of GICD_CTLR changed it (see `hardwareLinkedEntry`).
    public private(set) var controlChanges = 0
    /// How many distributor writes the guest made, of any register: a platform that keeps what it
    /// derived from the distributor (`hardwareLinkedEntry`) asks again only when this moved.
    public private(set) var writes = 0
    // Banked per vCPU (INTIDs 0–31). PPI bits only in the enable/latch words: SGIs are always
    // enabled and their pending state is per source, in `sgiSources`.
    var privateEnabled: [UInt32]
    var privateLatched: [UInt32]
    var privateActive: [UInt32]
    var privateConfig: [UInt32]          // ICFGR1 of each vCPU
    var privatePriority: [UInt8]         // vcpu * 32 + INTID
    var sgiSources: [UInt8]              // vcpu * 16 + SGI: bit n = pending from CPU n
    // Shared (SPIs); word n of a bit array covers INTIDs 32 + 32n ..< 64 + 32n.
    var spiEnabled: [UInt32]
    var spiLatched: [UInt32]
    var spiActive: [UInt32]
    var spiConfig: [UInt32]              // ICFGR2 onwards
    var spiPriority: [UInt8]             // INTID - 32
    var spiTargets: [UInt8]              // INTID - 32
    var lists: ListRegisters

    /// `vcpuCount` is clamped to 1...8 (GICv2's CPU limit), `spiCount` rounded up to a multiple of 32
    /// and capped so INTIDs stay below 1020, `listRegisterCount` clamped to 1...64 (GICH_VTR).
    public init(vcpuCount: Int, spiCount: Int = 64, listRegisterCount: Int = 4) {
        self.vcpuCount = min(max(vcpuCount, 1), 8)
        let roundedSPIs = (max(spiCount, 0) + 31) / 32 * 32
        interruptCount = min(32 + roundedSPIs, 1020)
        let spis = interruptCount - 32
        privateEnabled = [UInt32](repeating: 0, count: self.vcpuCount)
        privateLatched = privateEnabled
        privateActive = privateEnabled
        privateConfig = privateEnabled
        privatePriority = [UInt8](repeating: 0, count: self.vcpuCount * 32)
        sgiSources = [UInt8](repeating: 0, count: self.vcpuCount * 16)
        spiEnabled = [UInt32](repeating: 0, count: (spis + 31) / 32)
        spiLatched = spiEnabled
        spiActive = spiEnabled
        spiConfig = [UInt32](repeating: 0, count: (spis + 15) / 16)
        spiPriority = [UInt8](repeating: 0, count: spis)
        spiTargets = [UInt8](repeating: 0x01, count: spis)
        lists = ListRegisters(vcpuCount: self.vcpuCount, count: min(max(listRegisterCount, 1), 64))
    }

    /// Bit n set for every vCPU n that exists.
    var vcpuMask: UInt8 { UInt8(truncatingIfNeeded: (1 << vcpuCount) - 1) }

    /// GICD_TYPER (§4.3.2): ITLinesNumber [4:0], CPUNumber [7:5], SecurityExtn [10] = 0, LSPI = 0.
    var typer: UInt32 {
        UInt32((interruptCount + 31) / 32 - 1) | UInt32(vcpuCount - 1) << 5
    }

    // MARK: Per-interrupt state

    func isEnabled(vcpu: Int, irq: Int) -> Bool {
        if irq < 16 { return true }
        if irq < 32 { return privateEnabled[vcpu] & (1 << UInt32(irq)) != 0 }
        return spiEnabled[(irq - 32) / 32] & (1 << UInt32(irq % 32)) != 0
    }

    /// The distributor forwards an interrupt only when it and the distributor are enabled (§3.2.1).
    func isForwardable(vcpu: Int, irq: Int) -> Bool {
        control & 1 != 0 && isEnabled(vcpu: vcpu, irq: irq)
    }

    /// The entry through which a platform may forward physical `physical` straight to `vcpu` as
    /// `interrupt` (a PPI of its own, such as its virtual timer), linked to the hardware: the guest's
    /// deactivation deactivates the physical interrupt, so neither a maintenance interrupt nor the
    /// core's list registers take part. Nil while the guest's distributor would not forward it
    /// (distributor or interrupt disabled): the platform then hands the interrupt to
    /// `VirtualMachine.notified`, which latches it here. The entry carries the guest's priority for it.
    /// What it depends on changes only through this vCPU's own banked registers or GICD_CTLR; the
    /// latter counts in `controlChanges`, so a platform that keeps entries per CPU knows when all of
    /// them must be asked again.
    public func hardwareLinkedEntry(vcpu: Int, interrupt: UInt32, physical: UInt32) -> ListRegisterEntry? {
        guard vcpu >= 0, vcpu < vcpuCount, interrupt >= 16, interrupt < 32,
              isForwardable(vcpu: vcpu, irq: Int(interrupt)) else { return nil }
        return ListRegisterEntry(interrupt: interrupt, priority: priority(vcpu: vcpu, irq: Int(interrupt)),
                                 physical: physical)
    }

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

    /// True when the guest sees `interrupt` pending for `vcpu` in GICD_ISPENDR (SGIs: from any source).
    public func isPending(vcpu: Int, interrupt: UInt32) -> Bool {
        guard vcpu >= 0, vcpu < vcpuCount, interrupt < UInt32(interruptCount) else { return false }
        let irq = Int(interrupt)
        return irq < 16 ? sgiSources[vcpu * 16 + irq] != 0 : isLatched(vcpu: vcpu, irq: irq, sourceCPU: 0)
    }

    /// The implemented bits of word `n` of a 1-bit-per-interrupt register (n ≥ 1 covers SPIs).
    func implementedBits(word n: Int) -> UInt32 {
        let remaining = interruptCount - 32 * n
        if remaining <= 0 { return 0 }
        return remaining >= 32 ? ~0 : (1 << UInt32(remaining)) - 1
    }

    // MARK: Register access

    /// Distributor register read (§4.3). Width 4 must be word-aligned; width 1 only where §4.1.4
    /// allows byte access; anything else reads as zero.
    public mutating func distributorRead(vcpu: Int, offset: UInt64, width: Int) -> UInt32 {
        guard vcpu >= 0, vcpu < vcpuCount, offset < 0x1000 else { return 0 }
        let byteOffset = Int(offset)
        let register = DistributorRegister(offset: byteOffset)
        if width == 1 {
            return register.allowsByteAccess ? UInt32(readByte(register, vcpu: vcpu)) : 0
        }
        guard width == 4, byteOffset & 3 == 0 else { return 0 }
        switch register {
        case .control: return control
        case .type: return typer
        case .implementer: return DistributorRegister.implementerValue
        case .identification(let index): return DistributorRegister.identificationValue(index: index)
        case .setEnable(let n), .clearEnable(let n):
            if n == 0 { return 0x0000_FFFF | privateEnabled[vcpu] }
            return implementedBits(word: n) == 0 ? 0 : spiEnabled[n - 1]
        case .setPending(let n), .clearPending(let n):
            if n == 0 {
                var sgis: UInt32 = 0
                for sgi in 0..<16 where sgiSources[vcpu * 16 + sgi] != 0 { sgis |= 1 << UInt32(sgi) }
                return sgis | privateLatched[vcpu]
            }
            return implementedBits(word: n) == 0 ? 0 : spiLatched[n - 1]
        case .setActive(let n), .clearActive(let n):
            if n == 0 { return privateActive[vcpu] }
            return implementedBits(word: n) == 0 ? 0 : spiActive[n - 1]
        case .configuration(let n):
            if n == 0 { return 0xAAAA_AAAA }
            if n == 1 { return privateConfig[vcpu] }
            return 16 * n < interruptCount ? spiConfig[n - 2] : 0
        case .priority, .targets, .clearSGIPending, .setSGIPending:
            var word: UInt32 = 0
            for lane in 0..<4 {
                let byte = readByte(DistributorRegister(offset: byteOffset + lane), vcpu: vcpu)
                word |= UInt32(byte) << UInt32(8 * lane)
            }
            return word
        case .group, .softwareInterrupt, .reserved:
            return 0
        }
    }

    func readByte(_ register: DistributorRegister, vcpu: Int) -> UInt8 {
        switch register {
        case .priority(let irq):
            return irq < interruptCount ? priority(vcpu: vcpu, irq: irq) : 0
        case .targets(let irq):
            // §4.3.12: the private interrupts' bytes read as the accessing CPU's own bit.
            if irq < 32 { return 1 << UInt8(vcpu) }
            return irq < interruptCount ? spiTargets[irq - 32] : 0
        case .clearSGIPending(let sgi), .setSGIPending(let sgi):
            return sgiSources[vcpu * 16 + sgi]
        default:
            return 0
        }
    }

    /// Distributor register write (§4.3); may deliver interrupts through `sink`.
    public mutating func distributorWrite<S: VirtualInterruptSink>(vcpu: Int, offset: UInt64, width: Int,
                                                                  value: UInt32, sink: inout S) {
        guard vcpu >= 0, vcpu < vcpuCount, offset < 0x1000 else { return }
        writes &+= 1
        let byteOffset = Int(offset)
        let register = DistributorRegister(offset: byteOffset)
        if width == 1 {
            if register.allowsByteAccess { writeByte(register, vcpu: vcpu, UInt8(truncatingIfNeeded: value), sink: &sink) }
            return
        }
        guard width == 4, byteOffset & 3 == 0 else { return }
        switch register {
        case .control:
            writeControl(value, sink: &sink)
        case .setEnable(let n):
            setEnable(vcpu: vcpu, word: n, value, sink: &sink)
        case .clearEnable(let n):
            clearEnable(vcpu: vcpu, word: n, value)
        case .setPending(let n):
            setPending(vcpu: vcpu, word: n, value, sink: &sink)
        case .clearPending(let n):
            clearPending(vcpu: vcpu, word: n, value)
        case .setActive(let n):
            if n == 0 { privateActive[vcpu] |= value } else if implementedBits(word: n) != 0 {
                spiActive[n - 1] |= value & implementedBits(word: n)
            }
        case .clearActive(let n):
            if n == 0 { privateActive[vcpu] &= ~value } else if implementedBits(word: n) != 0 {
                spiActive[n - 1] &= ~value
            }
        case .configuration(let n):
            // §4.3.13: Int_config[0] of each field is reserved; SGIs are fixed edge-triggered.
            if n == 1 { privateConfig[vcpu] = value & 0xAAAA_AAAA }
            if n >= 2 && 16 * n < interruptCount {
                let remaining = interruptCount - 16 * n
                let fields: UInt32 = remaining >= 16 ? ~0 : (1 << UInt32(2 * remaining)) - 1
                spiConfig[n - 2] = value & 0xAAAA_AAAA & fields
            }
        case .softwareInterrupt:
            sendSoftwareInterrupt(from: vcpu, value, sink: &sink)
        case .priority, .targets, .clearSGIPending, .setSGIPending:
            for lane in 0..<4 {
                writeByte(register.byte(lane), vcpu: vcpu, UInt8(truncatingIfNeeded: value >> UInt32(8 * lane)),
                          sink: &sink)
            }
        case .type, .implementer, .identification, .group, .reserved:
            return
        }
    }

    mutating func writeByte<S: VirtualInterruptSink>(_ register: DistributorRegister, vcpu: Int, _ value: UInt8,
                                                    sink: inout S) {
        switch register {
        case .priority(let irq) where irq < interruptCount:
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
        case .targets(let irq) where irq >= 32 && irq < interruptCount:
            spiTargets[irq - 32] = value & vcpuMask
            // A pending SPI that gains a target is forwarded now (§4.3.12).
            deliverShared(irq: irq, drain: true, sink: &sink)
        case .setSGIPending(let sgi):
            let added = value & vcpuMask & ~sgiSources[vcpu * 16 + sgi]
            sgiSources[vcpu * 16 + sgi] |= added
            for source in 0..<UInt8(vcpuCount) where added & (1 << source) != 0 {
                offer(vcpu: vcpu, irq: sgi, sourceCPU: source, drain: true, sink: &sink)
            }
        case .clearSGIPending(let sgi):
            sgiSources[vcpu * 16 + sgi] &= ~value
            lists.removeQueued(vcpu: vcpu, interrupt: UInt32(sgi), sourceMask: value)
        default:
            return
        }
    }

    // MARK: Writes that change what can be delivered

    mutating func writeControl<S: VirtualInterruptSink>(_ value: UInt32, sink: inout S) {
        let wasEnabled = control & 1 != 0
        if value & 0b11 != control { controlChanges &+= 1 }
        // Without Security Extensions GICD_CTLR has EnableGrp0 [0] and EnableGrp1 [1] (§4.3.1);
        // every interrupt is group 0 here, so bit 0 gates forwarding.
        control = value & 0b11
        if !wasEnabled && control & 1 != 0 {
            flushPending(sink: &sink)
        } else if wasEnabled && control & 1 == 0 {
            // Queued interrupts go back to plain pending; those already in LRs stay with the guest.
            for target in 0..<vcpuCount { lists.removeAllQueued(vcpu: target) }
        }
    }

    mutating func setEnable<S: VirtualInterruptSink>(vcpu: Int, word n: Int, _ value: UInt32, sink: inout S) {
        if n == 0 {
            let added = value & 0xFFFF_0000 & ~privateEnabled[vcpu]
            privateEnabled[vcpu] |= added
            for irq in 16..<32 where added & (1 << UInt32(irq)) != 0 {
                offer(vcpu: vcpu, irq: irq, sourceCPU: 0, drain: false, sink: &sink)
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

    /// A disabled interrupt keeps its pending state but leaves the queues (§3.2.1: not forwarded).
    mutating func clearEnable(vcpu: Int, word n: Int, _ value: UInt32) {
        if n == 0 {
            let removed = value & 0xFFFF_0000 & privateEnabled[vcpu]
            privateEnabled[vcpu] &= ~removed
            for irq in 16..<32 where removed & (1 << UInt32(irq)) != 0 {
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

    /// ISPENDR (§4.3.7); Linux uses it to retrigger interrupts. SGI bits are read-only here.
    mutating func setPending<S: VirtualInterruptSink>(vcpu: Int, word n: Int, _ value: UInt32, sink: inout S) {
        if n == 0 {
            let added = value & 0xFFFF_0000
            privateLatched[vcpu] |= added
            for irq in 16..<32 where added & (1 << UInt32(irq)) != 0 {
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

    /// ICPENDR (§4.3.8): clears distributor pending state, including queued copies. An interrupt
    /// already in a list register belongs to the guest's CPU interface and is left there.
    mutating func clearPending(vcpu: Int, word n: Int, _ value: UInt32) {
        if n == 0 {
            let removed = value & 0xFFFF_0000
            privateLatched[vcpu] &= ~removed
            for irq in 16..<32 where removed & (1 << UInt32(irq)) != 0 {
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

    /// GICD_SGIR (§4.3.11): SGIINTID [3:0], CPUTargetList [23:16], TargetListFilter [25:24]
    /// (0 = the list, 1 = all but the writer, 2 = the writer only, 3 = reserved: ignored).
    mutating func sendSoftwareInterrupt<S: VirtualInterruptSink>(from writer: Int, _ value: UInt32, sink: inout S) {
        let sgi = Int(value & 0xF)
        let me: UInt8 = 1 << UInt8(writer)
        var targets: UInt8
        switch (value >> 24) & 0b11 {
        case 0: targets = UInt8(truncatingIfNeeded: value >> 16)
        case 1: targets = ~me
        case 2: targets = me
        default: return
        }
        targets &= vcpuMask
        for target in 0..<vcpuCount where targets & (1 << UInt8(target)) != 0 {
            sgiSources[target * 16 + sgi] |= me
            offer(vcpu: target, irq: sgi, sourceCPU: UInt8(writer), drain: true, sink: &sink)
        }
    }
}
