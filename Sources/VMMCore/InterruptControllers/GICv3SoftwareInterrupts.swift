// SGIs a GICv3 guest sends: a write of ICC_SGI1R_EL1, ICC_ASGI1R_EL1 or ICC_SGI0R_EL1 (IHI 0069
// §12.2), which the hardware traps to EL2 for a virtual CPU interface (EC 0x18); VirtualMachine
// decodes the trap and hands the value here. The distributor state it changes is `VGIC`'s.
//
// Choices: with one security state (GICD_CTLR.DS = 1), ICC_SGI1R_EL1 raises the SGI whatever its
// group at the target, ICC_SGI0R_EL1 only where it is group 0, and ICC_ASGI1R_EL1, having no other
// security state's group 1 to name, acts as ICC_SGI0R_EL1 (IHI 0069 "Forwarding an SGI to a target
// PE"; KVM decides the same). A target affinity with no vCPU behind it is skipped.

/// The ICC register through which a guest sent an SGI.
public enum SGIRegister: UInt8, Equatable {
    case group1 = 5              // ICC_SGI1R_EL1: S3_0_C12_C11_5
    case alternateGroup1 = 6     // ICC_ASGI1R_EL1: S3_0_C12_C11_6
    case group0 = 7              // ICC_SGI0R_EL1: S3_0_C12_C11_7
}

/// A decoded ICC_SGI1R_EL1 value (the other two have the same layout): TargetList [15:0], Aff1
/// [23:16], INTID [27:24], Aff2 [39:32], IRM [40], RS [47:44], Aff3 [55:48].
public struct SGIRequest: Equatable {
    public let interrupt: Int
    /// IRM = 1: every vCPU but the sender; the target fields are then ignored.
    public let allButSelf: Bool
    public let targetList: UInt16
    public let rangeSelector: UInt8
    public let aff1: UInt8
    public let aff2: UInt8
    public let aff3: UInt8

    public init(_ value: UInt64) {
        interrupt = Int((value >> 24) & 0xF)
        allButSelf = value & (1 << 40) != 0
        targetList = UInt16(truncatingIfNeeded: value)
        rangeSelector = UInt8((value >> 44) & 0xF)
        aff1 = UInt8(truncatingIfNeeded: value >> 16)
        aff2 = UInt8(truncatingIfNeeded: value >> 32)
        aff3 = UInt8(truncatingIfNeeded: value >> 48)
    }

    /// The vCPU that bit `bit` of the target list names among `count`: Aff0 = RS × 16 + bit.
    func target(bit: Int, count: Int) -> Int? {
        var affinity = MPIDRAffinity(vcpu: 0)
        affinity.aff0 = UInt8(truncatingIfNeeded: Int(rangeSelector) * 16 + bit)
        affinity.aff1 = aff1
        affinity.aff2 = aff2
        affinity.aff3 = aff3
        return affinity.vcpu(count: count)
    }
}

extension VGIC {
    /// `vcpu` wrote `value` to the SGI register `register`: raises the SGI at every target it names.
    /// False (and nothing raised) on GICv2, which has no such register, or for a vCPU that does not
    /// exist.
    @discardableResult
    public mutating func sendSoftwareInterrupt<S: VirtualInterruptSink>(from vcpu: Int, register: SGIRegister,
                                                                        value: UInt64, sink: inout S) -> Bool {
        guard version == .v3, vcpu >= 0, vcpu < vcpuCount else { return false }
        let request = SGIRequest(value)
        if request.allButSelf {
            for target in 0..<vcpuCount where target != vcpu {
                raiseSoftwareInterrupt(request.interrupt, at: target, register: register, sink: &sink)
            }
            return true
        }
        for bit in 0..<16 where request.targetList & (1 << UInt16(bit)) != 0 {
            guard let target = request.target(bit: bit, count: vcpuCount) else { continue }
            raiseSoftwareInterrupt(request.interrupt, at: target, register: register, sink: &sink)
        }
        return true
    }

    private mutating func raiseSoftwareInterrupt<S: VirtualInterruptSink>(_ sgi: Int, at target: Int,
                                                                         register: SGIRegister, sink: inout S) {
        if register != .group1 && isGroup1(vcpu: target, irq: sgi) { return }
        sgiSources[target * 16 + sgi] |= 1
        offer(vcpu: target, irq: sgi, sourceCPU: 0, drain: true, sink: &sink)
    }
}
