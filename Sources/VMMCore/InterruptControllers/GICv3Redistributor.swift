// The GICv3 redistributors (GICR) as the guest sees them, per ARM IHI 0069 §12.10–12.11: one per
// vCPU, each a 128 KiB pair of frames, RD_base (control, identification, power) and SGI_base (the
// vCPU's SGIs and PPIs, in the distributor's layout), laid out back to back from the region's base
// in vCPU order. The address alone picks the frame, whoever accesses it: Linux reads every frame's
// GICR_TYPER to find the one whose affinity is its own. The state behind the SGI_base registers is
// the banked private state `VGIC` keeps (VGIC.swift).
//
// Choices the spec leaves open, and what this model does:
// - No LPIs: GICR_CTLR reads 0 (EnableLPIs RAZ/WI, RWP 0), GICR_TYPER.PLPIS = 0, PROPBASER,
//   PENDBASER and the LPI registers are RAZ/WI.
// - GICR_TYPER (64-bit): Affinity_Value [63:32] = the vCPU's affinity (MPIDRAffinity),
//   Processor_Number [23:8] = its index, Last [4] on the last vCPU's frame, PPInum 0 (PPIs 16–31).
// - GICR_WAKER: ProcessorSleep [1] resets to 1 and is writable; ChildrenAsleep [2] follows it at
//   once (Linux's gic_enable_redist clears the first and waits for the second to clear). An asleep
//   redistributor still takes its own interrupts; it only takes no part in 1-of-N SPI routing.
// - SGIs: ISENABLER0/ICENABLER0 SGI bits are writable (reset 1); ISPENDR0/ICPENDR0 set and clear SGI
//   pending state, which has no source on GICv3. ICFGR0 (SGIs) reads all edge and ignores writes.
// - IGRPMODR0 and NSACR are RAZ/WI (one security state).
// - Access widths: 32-bit aligned everywhere, bytes for IPRIORITYR, 64-bit (or either 32-bit half)
//   for GICR_TYPER. Offsets past the last vCPU's frame, and any other access, read as zero and
//   ignore writes.

extension VGIC {
    /// GICR_TYPER of `owner`'s redistributor.
    func redistributorType(_ owner: Int) -> UInt64 {
        var value = UInt64(MPIDRAffinity(vcpu: owner).packed) << 32 | UInt64(owner & 0xFFFF) << 8
        if owner == vcpuCount - 1 { value |= 1 << 4 }
        return value
    }

    /// The vCPU whose frame holds `offset`, and the offset inside that 128 KiB frame.
    func redistributorFrame(_ offset: UInt64) -> (owner: Int, within: Int)? {
        let frameSize = GICv3RedistributorRegister.frameSize
        guard offset / frameSize < UInt64(vcpuCount) else { return nil }
        return (Int(offset / frameSize), Int(offset % frameSize))
    }

    mutating func gicv3RedistributorRead(vcpu: Int, offset: UInt64, width: Int) -> UInt64 {
        guard vcpu >= 0, vcpu < vcpuCount, let (owner, within) = redistributorFrame(offset) else { return 0 }
        if within >= GICv3RedistributorRegister.sgiBase {
            return privateRead(owner, within - GICv3RedistributorRegister.sgiBase, width: width)
        }
        let register = GICv3RedistributorRegister(offset: within)
        if width == 8 {
            guard case .type(false) = register, within & 7 == 0 else { return 0 }
            return redistributorType(owner)
        }
        guard width == 4, within & 3 == 0 else { return 0 }
        switch register {
        case .implementer: return UInt64(GICv3DistributorRegister.implementerValue)
        case .type(let high):
            return high ? redistributorType(owner) >> 32 : redistributorType(owner) & 0xFFFF_FFFF
        case .waker:
            return redistributorAsleep[owner]
                ? UInt64(GICv3RedistributorRegister.processorSleep | GICv3RedistributorRegister.childrenAsleep) : 0
        case .identification(let index):
            return UInt64(GICv3DistributorRegister.identificationValue(index: index, part: 0x93))
        case .control, .reserved:
            return 0
        }
    }

    mutating func gicv3RedistributorWrite<S: VirtualInterruptSink>(vcpu: Int, offset: UInt64, width: Int,
                                                                  value: UInt64, sink: inout S) {
        guard vcpu >= 0, vcpu < vcpuCount, let (owner, within) = redistributorFrame(offset) else { return }
        writes &+= 1
        if within >= GICv3RedistributorRegister.sgiBase {
            privateWrite(owner, within - GICv3RedistributorRegister.sgiBase, width: width,
                         value: UInt32(truncatingIfNeeded: value), sink: &sink)
            return
        }
        guard width == 4, within & 3 == 0, GICv3RedistributorRegister(offset: within) == .waker else { return }
        let asleep = UInt32(truncatingIfNeeded: value) & GICv3RedistributorRegister.processorSleep != 0
        let woke = redistributorAsleep[owner] && !asleep
        redistributorAsleep[owner] = asleep
        if woke { deliverAnyTargetSPIs(sink: &sink) }
    }

    /// SPIs routed to "any vCPU" that waited for an awake redistributor go now.
    mutating func deliverAnyTargetSPIs<S: VirtualInterruptSink>(sink: inout S) {
        for irq in 32..<interruptCount where spiRouting[irq - 32] & GICv3Routing.routingModeAny != 0 {
            if isLatched(vcpu: 0, irq: irq, sourceCPU: 0) { deliverShared(irq: irq, drain: false, sink: &sink) }
        }
        for target in 0..<vcpuCount { drain(vcpu: target, sink: &sink) }
    }

    /// A read of `owner`'s SGI_base frame at `offset`: the distributor's layout for INTIDs 0–31.
    mutating func privateRead(_ owner: Int, _ offset: Int, width: Int) -> UInt64 {
        let register = GICv3DistributorRegister(offset: offset)
        if width == 1 {
            guard case .priority(let irq) = register, irq < 32 else { return 0 }
            return UInt64(privatePriority[owner * 32 + irq])
        }
        guard width == 4, offset & 3 == 0 else { return 0 }
        switch register {
        case .group(0): return UInt64(groupWord(vcpu: owner, 0))
        case .setEnable(0), .clearEnable(0): return UInt64(enableWord(vcpu: owner, 0))
        case .setPending(0), .clearPending(0): return UInt64(pendingWord(vcpu: owner, 0))
        case .setActive(0), .clearActive(0): return UInt64(activeWord(vcpu: owner, 0))
        case .configuration(let n) where n < 2: return UInt64(configurationWord(vcpu: owner, n))
        case .priority(let irq) where irq < 32:
            var word: UInt64 = 0
            for lane in 0..<4 { word |= UInt64(privatePriority[owner * 32 + irq + lane]) << UInt64(8 * lane) }
            return word
        default:
            return 0
        }
    }

    mutating func privateWrite<S: VirtualInterruptSink>(_ owner: Int, _ offset: Int, width: Int, value: UInt32,
                                                       sink: inout S) {
        let register = GICv3DistributorRegister(offset: offset)
        if width == 1 {
            if case .priority(let irq) = register, irq < 32 {
                writePriority(vcpu: owner, irq: irq, UInt8(truncatingIfNeeded: value))
            }
            return
        }
        guard width == 4, offset & 3 == 0 else { return }
        switch register {
        case .group(0): writeGroup(vcpu: owner, word: 0, value, sink: &sink)
        case .setEnable(0): setEnable(vcpu: owner, word: 0, value, sink: &sink)
        case .clearEnable(0): clearEnable(vcpu: owner, word: 0, value)
        case .setPending(0): setPending(vcpu: owner, word: 0, value, sink: &sink)
        case .clearPending(0): clearPending(vcpu: owner, word: 0, value)
        case .setActive(0): changeActive(vcpu: owner, word: 0, value, set: true)
        case .clearActive(0): changeActive(vcpu: owner, word: 0, value, set: false)
        case .configuration(1): writeConfiguration(vcpu: owner, word: 1, value)
        case .priority(let irq) where irq < 32:
            for lane in 0..<4 {
                writePriority(vcpu: owner, irq: irq + lane, UInt8(truncatingIfNeeded: value >> UInt32(8 * lane)))
            }
        default:
            return
        }
    }
}
