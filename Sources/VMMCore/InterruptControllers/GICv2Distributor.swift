// The GICv2 distributor (GICD) as the guest sees it, register by register per ARM IHI 0048B §4.3.
//
// The guest's GICD frame is left out of stage 2, so every access traps and arrives here as
// (vCPU, offset, width, value). This file is the GICv2 register map in front of the state `VGIC`
// keeps (VGIC.swift): it decodes the offset (GICv2DistributorRegister.swift), reads or changes the
// shared state, and implements what only GICv2 has: CPU-targeted SPIs (ITARGETSR), GICD_SGIR and
// SGIs pending per source CPU (CPENDSGIR/SPENDSGIR). The CPU interface is the hardware GICV frame
// and is not emulated.
//
// Choices the spec leaves open, and what this model does:
// - No Security Extensions; IGROUPR is RAZ/WI: every interrupt is group 0, which Linux uses on GICv2.
// - SGIs are always enabled (ISENABLER0[15:0] read 1, writes ignored), as QEMU's GIC does.
// - ICFGR: SGIs read 0b10 (edge) and ignore writes; PPIs are writable per vCPU, as SPIs (bit 1 of
//   each field; bit 0 is reserved, RAZ/WI). Linux reprograms the timer PPIs' trigger and checks.
// - ISPENDR0/ICPENDR0 SGI bits are read-only; SGI pending state is per source and is set/cleared
//   through SPENDSGIR/CPENDSGIR, which are implemented (§4.3.14, §4.3.15).
// - An SPI is forwarded to the lowest-numbered vCPU its ITARGETSR byte names.
// - Registers beyond the implemented interrupts, reserved offsets, halfword accesses, misaligned
//   word accesses, accesses wider than a word and byte accesses to word-only registers read as zero
//   and ignore writes.

extension VGIC {
    /// Bit n set for every vCPU n that exists (GICv2: at most 8).
    var vcpuMask: UInt8 { UInt8(truncatingIfNeeded: (1 << vcpuCount) - 1) }

    /// GICD_TYPER (§4.3.2): ITLinesNumber [4:0], CPUNumber [7:5], SecurityExtn [10] = 0, LSPI = 0.
    var gicv2Typer: UInt32 {
        UInt32((interruptCount + 31) / 32 - 1) | UInt32(vcpuCount - 1) << 5
    }

    /// Distributor register read (§4.3). Width 4 must be word-aligned; width 1 only where §4.1.4
    /// allows byte access; anything else reads as zero.
    mutating func gicv2DistributorRead(vcpu: Int, offset: UInt64, width: Int) -> UInt32 {
        guard vcpu >= 0, vcpu < vcpuCount, offset < 0x1000 else { return 0 }
        let byteOffset = Int(offset)
        let register = GICv2DistributorRegister(offset: byteOffset)
        if width == 1 {
            return register.allowsByteAccess ? UInt32(readByte(register, vcpu: vcpu)) : 0
        }
        guard width == 4, byteOffset & 3 == 0 else { return 0 }
        switch register {
        case .control: return control
        case .type: return gicv2Typer
        case .implementer: return GICv2DistributorRegister.implementerValue
        case .identification(let index): return GICv2DistributorRegister.identificationValue(index: index)
        case .setEnable(let n), .clearEnable(let n): return enableWord(vcpu: vcpu, n)
        case .setPending(let n), .clearPending(let n): return pendingWord(vcpu: vcpu, n)
        case .setActive(let n), .clearActive(let n): return activeWord(vcpu: vcpu, n)
        case .configuration(let n): return configurationWord(vcpu: vcpu, n)
        case .priority, .targets, .clearSGIPending, .setSGIPending:
            var word: UInt32 = 0
            for lane in 0..<4 {
                word |= UInt32(readByte(register.byte(lane), vcpu: vcpu)) << UInt32(8 * lane)
            }
            return word
        case .group, .softwareInterrupt, .reserved:
            return 0
        }
    }

    func readByte(_ register: GICv2DistributorRegister, vcpu: Int) -> UInt8 {
        switch register {
        case .priority(let irq):
            return irq < interruptCount ? priority(vcpu: vcpu, irq: irq) : 0
        case .targets(let irq):
            // §4.3.12: the private interrupts' bytes read as the accessing CPU's own bit.
            if irq < 32 { return 1 << UInt8(vcpu) }
            return irq < interruptCount ? UInt8(truncatingIfNeeded: spiRouting[irq - 32]) : 0
        case .clearSGIPending(let sgi), .setSGIPending(let sgi):
            return sgiSources[vcpu * 16 + sgi]
        default:
            return 0
        }
    }

    /// Distributor register write (§4.3); may deliver interrupts through `sink`.
    mutating func gicv2DistributorWrite<S: VirtualInterruptSink>(vcpu: Int, offset: UInt64, width: Int,
                                                                value: UInt32, sink: inout S) {
        guard vcpu >= 0, vcpu < vcpuCount, offset < 0x1000 else { return }
        writes &+= 1
        let byteOffset = Int(offset)
        let register = GICv2DistributorRegister(offset: byteOffset)
        if width == 1 {
            if register.allowsByteAccess { writeByte(register, vcpu: vcpu, UInt8(truncatingIfNeeded: value), sink: &sink) }
            return
        }
        guard width == 4, byteOffset & 3 == 0 else { return }
        switch register {
        case .control: writeControl(value, sink: &sink)
        case .setEnable(let n): setEnable(vcpu: vcpu, word: n, value, sink: &sink)
        case .clearEnable(let n): clearEnable(vcpu: vcpu, word: n, value)
        case .setPending(let n): setPending(vcpu: vcpu, word: n, value, sink: &sink)
        case .clearPending(let n): clearPending(vcpu: vcpu, word: n, value)
        case .setActive(let n): changeActive(vcpu: vcpu, word: n, value, set: true)
        case .clearActive(let n): changeActive(vcpu: vcpu, word: n, value, set: false)
        case .configuration(let n): writeConfiguration(vcpu: vcpu, word: n, value)
        case .softwareInterrupt: sendSoftwareInterrupt(from: vcpu, value, sink: &sink)
        case .priority, .targets, .clearSGIPending, .setSGIPending:
            for lane in 0..<4 {
                writeByte(register.byte(lane), vcpu: vcpu, UInt8(truncatingIfNeeded: value >> UInt32(8 * lane)),
                          sink: &sink)
            }
        case .type, .implementer, .identification, .group, .reserved:
            return
        }
    }

    mutating func writeByte<S: VirtualInterruptSink>(_ register: GICv2DistributorRegister, vcpu: Int, _ value: UInt8,
                                                    sink: inout S) {
        switch register {
        case .priority(let irq) where irq < interruptCount:
            writePriority(vcpu: vcpu, irq: irq, value)
        case .targets(let irq) where irq >= 32 && irq < interruptCount:
            // A pending SPI that gains a target is forwarded now (§4.3.12).
            writeRouting(spi: irq, UInt64(value & vcpuMask), sink: &sink)
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
