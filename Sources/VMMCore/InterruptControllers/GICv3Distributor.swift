// The GICv3 distributor (GICD) as the guest sees it, per ARM IHI 0069 §12.9, in front of the state
// `VGIC` keeps (VGIC.swift). Only affinity routing exists: the private interrupts' registers live in
// each vCPU's redistributor (GICv3Redistributor.swift), and an SPI goes where its GICD_IROUTER says.
// Offsets are decoded by GICv3Registers.swift; SGIs from the guest arrive through the ICC system
// registers (GICv3SoftwareInterrupts.swift).
//
// Choices the spec leaves open, and what this model does:
// - One security state (GICD_CTLR.DS = 1, RAO/WI, as KVM presents it): GICD_CTLR has EnableGrp0 [0]
//   and EnableGrp1 [1]; ARE [4] is RAO/WI; RWP [31] reads 0 (writes take effect at once). Linux's
//   non-secure write of ARE_NS | EnableGrp1A | EnableGrp1 (bits 4, 1, 0) enables both groups here.
// - IGROUPR is a real per-interrupt group bit (reset 1: a non-secure guest's interrupts are group
//   1; Linux writes all ones anyway) and goes into the list register's Group bit. IGRPMODR and NSACR
//   are RAZ/WI.
// - GICD_TYPER: ITLinesNumber from the SPI count, CPUNumber min(vCPUs, 8) - 1 (meaningless with
//   affinity routing), IDbits 9 (INTIDs of 10 bits), A3V 1 (IROUTER keeps Aff3, and compares it),
//   no LPIs, no MBIS, no extended SPIs, RSS 0 (Aff0 stays below 16), No1N 0 (1-of-N is routed to
//   the lowest-numbered vCPU whose redistributor is awake).
// - The SGI/PPI words of the 1-bit registers, IPRIORITYR bytes 0–31 and ICFGR0/1 are RAZ/WI with
//   ARE = 1 (IHI 0069 §12.9: they live in the redistributor); so are ITARGETSR, SGIR, CPENDSGIR and
//   SPENDSGIR, which only legacy (ARE = 0) operation uses.
// - Access widths: 32-bit aligned for every register; also bytes for IPRIORITYR; also 64-bit for
//   IROUTER, whose halves may be written separately. Anything else reads as zero and is ignored.

extension VGIC {
    /// GICD_CTLR bits that read as one: ARE [4], DS [6].
    static let gicv3ControlFixedBits: UInt32 = 1 << 4 | 1 << 6

    /// GICD_TYPER (IHI 0069 §12.9.38).
    var gicv3Typer: UInt32 {
        UInt32((interruptCount + 31) / 32 - 1)          // ITLinesNumber [4:0]
            | UInt32(min(vcpuCount, 8) - 1) << 5         // CPUNumber [7:5]
            | 9 << 19                                    // IDbits [23:19]: 10 INTID bits
            | 1 << 24                                    // A3V
    }

    mutating func gicv3DistributorRead(vcpu: Int, offset: UInt64, width: Int) -> UInt64 {
        guard vcpu >= 0, vcpu < vcpuCount, offset < 0x1_0000 else { return 0 }
        let byteOffset = Int(offset)
        let register = GICv3DistributorRegister(offset: byteOffset)
        switch width {
        case 1:
            guard case .priority(let irq) = register else { return 0 }
            return UInt64(sharedPriority(irq))
        case 8:
            guard case .router(let irq, false) = register, byteOffset & 7 == 0, irq < interruptCount else { return 0 }
            return spiRouting[irq - 32]
        case 4 where byteOffset & 3 == 0:
            break
        default:
            return 0
        }
        switch register {
        case .control: return UInt64(control | Self.gicv3ControlFixedBits)
        case .type: return UInt64(gicv3Typer)
        case .implementer: return UInt64(GICv3DistributorRegister.implementerValue)
        case .identification(let index):
            return UInt64(GICv3DistributorRegister.identificationValue(index: index, part: 0x92))
        case .group(let n): return n == 0 ? 0 : UInt64(groupWord(vcpu: vcpu, n))
        case .setEnable(let n), .clearEnable(let n): return n == 0 ? 0 : UInt64(enableWord(vcpu: vcpu, n))
        case .setPending(let n), .clearPending(let n): return n == 0 ? 0 : UInt64(pendingWord(vcpu: vcpu, n))
        case .setActive(let n), .clearActive(let n): return n == 0 ? 0 : UInt64(activeWord(vcpu: vcpu, n))
        case .configuration(let n): return n < 2 ? 0 : UInt64(configurationWord(vcpu: vcpu, n))
        case .priority(let irq):
            var word: UInt64 = 0
            for lane in 0..<4 { word |= UInt64(sharedPriority(irq + lane)) << UInt64(8 * lane) }
            return word
        case .router(let irq, let high):
            guard irq < interruptCount else { return 0 }
            return high ? spiRouting[irq - 32] >> 32 : spiRouting[irq - 32] & 0xFFFF_FFFF
        case .type2, .reserved:
            return 0
        }
    }

    /// An SPI's priority byte; zero for the private interrupts (redistributor) and past the SPIs.
    func sharedPriority(_ irq: Int) -> UInt8 {
        irq >= 32 && irq < interruptCount ? spiPriority[irq - 32] : 0
    }

    mutating func gicv3DistributorWrite<S: VirtualInterruptSink>(vcpu: Int, offset: UInt64, width: Int,
                                                                value: UInt64, sink: inout S) {
        guard vcpu >= 0, vcpu < vcpuCount, offset < 0x1_0000 else { return }
        writes &+= 1
        let byteOffset = Int(offset)
        let register = GICv3DistributorRegister(offset: byteOffset)
        switch width {
        case 1:
            if case .priority(let irq) = register, irq >= 32, irq < interruptCount {
                writePriority(vcpu: vcpu, irq: irq, UInt8(truncatingIfNeeded: value))
            }
            return
        case 8:
            if case .router(let irq, false) = register, byteOffset & 7 == 0, irq < interruptCount {
                writeRouting(spi: irq, value & GICv3Routing.writableBits, sink: &sink)
            }
            return
        case 4 where byteOffset & 3 == 0:
            break
        default:
            return
        }
        let word = UInt32(truncatingIfNeeded: value)
        switch register {
        case .control: writeControl(word, sink: &sink)
        case .group(let n) where n > 0: writeGroup(vcpu: vcpu, word: n, word, sink: &sink)
        case .setEnable(let n) where n > 0: setEnable(vcpu: vcpu, word: n, word, sink: &sink)
        case .clearEnable(let n) where n > 0: clearEnable(vcpu: vcpu, word: n, word)
        case .setPending(let n) where n > 0: setPending(vcpu: vcpu, word: n, word, sink: &sink)
        case .clearPending(let n) where n > 0: clearPending(vcpu: vcpu, word: n, word)
        case .setActive(let n) where n > 0: changeActive(vcpu: vcpu, word: n, word, set: true)
        case .clearActive(let n) where n > 0: changeActive(vcpu: vcpu, word: n, word, set: false)
        case .configuration(let n) where n >= 2: writeConfiguration(vcpu: vcpu, word: n, word)
        case .priority(let irq):
            for lane in 0..<4 where irq + lane >= 32 && irq + lane < interruptCount {
                writePriority(vcpu: vcpu, irq: irq + lane, UInt8(truncatingIfNeeded: word >> UInt32(8 * lane)))
            }
        case .router(let irq, let high) where irq < interruptCount:
            let old = spiRouting[irq - 32]
            let merged = high ? old & 0xFFFF_FFFF | UInt64(word) << 32 : old & ~0xFFFF_FFFF | UInt64(word)
            writeRouting(spi: irq, merged & GICv3Routing.writableBits, sink: &sink)
        default:
            return
        }
    }
}
