// PSCI 1.1 and SMCCC 1.1 as a VMM offers them to its guest: pure decisions, no effects.
//
// The guest calls with HVC #0 (its device tree says `method = "hvc"`): function ID in w0, arguments
// in x1..x3, result in x0 (Arm DEN0028 "SMC Calling Convention", DEN0022 "Power State Coordination
// Interface"). This file owns the function IDs, the return codes, and which vCPUs are on; it turns
// one call into a `PSCIOutcome`. Reading and writing the registers, starting or stopping a vCPU,
// powering the VM off and stepping the PC (HVC needs no step, see `GuestExit.advancesPCOnReturn`)
// are the exit loop's job.

/// Function IDs (DEN0022 "Function prototypes"; DEN0028 "Arm Architecture Calls").
/// Bit 31 = fast call, bit 30 = SMC64/HVC64 convention, bits [29:24] = owning entity
/// (0 Arm architecture, 4 standard secure service = PSCI).
public enum PSCIFunction: UInt32, Equatable {
    case version = 0x8400_0000
    case cpuSuspend32 = 0x8400_0001
    case cpuOff = 0x8400_0002
    case cpuOn32 = 0x8400_0003
    case affinityInfo32 = 0x8400_0004
    case migrateInfoType = 0x8400_0006
    case systemOff = 0x8400_0008
    case systemReset = 0x8400_0009
    case features = 0x8400_000A
    case cpuSuspend64 = 0xC400_0001
    case cpuOn64 = 0xC400_0003
    case affinityInfo64 = 0xC400_0004
    case smcccVersion = 0x8000_0000
    case smcccArchFeatures = 0x8000_0001

    /// Bit 30 clear: the SMC32/HVC32 convention, where only W registers carry arguments
    /// (DEN0028 "SMC32/HVC32 argument passing").
    public var uses32BitArguments: Bool { rawValue & (1 << 30) == 0 }

    /// Whether PSCI_FEATURES reports this ID as present. DEN0022 "PSCI_FEATURES" covers PSCI
    /// functions and SMCCC_VERSION (the discovery path for SMCCC 1.1); SMCCC_ARCH_FEATURES is
    /// discovered through SMCCC_VERSION instead, as KVM reports it.
    public var reportedByFeatures: Bool { self != .smcccArchFeatures }
}

/// PSCI return codes (DEN0022 "Return error codes"); SMCCC's NOT_SUPPORTED is the same -1.
public enum PSCIReturn: Int32, Equatable {
    case success = 0
    case notSupported = -1
    case invalidParameters = -2
    case denied = -3
    case alreadyOn = -4
    case onPending = -5
    case internalFailure = -6
    case notPresent = -7
    case disabled = -8
    case invalidAddress = -9

    /// The x0 value: the Int32 sign-extended to 64 bits (NOT_SUPPORTED = 0xFFFF_FFFF_FFFF_FFFF).
    public var registerValue: UInt64 { UInt64(bitPattern: Int64(rawValue)) }
}

/// What the VMM must do after a PSCI call; the core's exit loop carries it out.
public enum PSCIOutcome: Equatable {
    /// Write x0 (error codes already sign-extended) and resume the caller.
    case reply(UInt64)
    /// CPU_ON of an off vCPU: reply SUCCESS (0) to the caller, and start `target` at `entry` with
    /// x0 = `context`, MMU and caches off, in the caller's execution state (DEN0022 "CPU_ON").
    case startCPU(target: Int, entry: UInt64, context: UInt64)
    /// CPU_OFF: the caller never returns; stop it until a later CPU_ON.
    case stopCurrentCPU
    case systemOff
    case systemReset

    public static func status(_ code: PSCIReturn) -> PSCIOutcome { .reply(code.registerValue) }
}

/// AFFINITY_INFO's answer for one vCPU (DEN0022 "AFFINITY_INFO").
public enum AffinityState: UInt64, Equatable {
    case on = 0
    case off = 1
    case onPending = 2
}

/// The MPIDR_EL1 affinity of a vCPU: the one numbering that PSCI, the GICv3 (GICR_TYPER, GICD_IROUTER,
/// ICC_SGI1R_EL1) and the guest's device tree (cpu@ reg) share. vCPU n has Aff0 = n % 16 and
/// Aff1 = n / 16, Aff2 = Aff3 = 0, as QEMU's virt board numbers its CPUs with a GICv3: an
/// ICC_SGI1R_EL1 TargetList names 16 Aff0 values, so 16 CPUs per cluster need no range selector.
/// (For n < 16 this is Aff0 = n, the numbering GICv2 guests always had.)
public struct MPIDRAffinity: Equatable {
    public var aff0: UInt8
    public var aff1: UInt8
    public var aff2: UInt8 = 0
    public var aff3: UInt8 = 0

    public init(vcpu index: Int) {
        aff0 = UInt8(truncatingIfNeeded: index % 16)
        aff1 = UInt8(truncatingIfNeeded: index / 16)
    }

    /// The fields of an MPIDR-shaped value: Aff0 [7:0], Aff1 [15:8], Aff2 [23:16], Aff3 [39:32]
    /// (MPIDR_EL1, PSCI target_cpu, GICD_IROUTER); other bits are ignored.
    public init(mpidr: UInt64) {
        aff0 = UInt8(truncatingIfNeeded: mpidr)
        aff1 = UInt8(truncatingIfNeeded: mpidr >> 8)
        aff2 = UInt8(truncatingIfNeeded: mpidr >> 16)
        aff3 = UInt8(truncatingIfNeeded: mpidr >> 32)
    }

    /// The affinity fields in MPIDR_EL1's positions.
    public var mpidrBits: UInt64 {
        UInt64(aff3) << 32 | UInt64(aff2) << 16 | UInt64(aff1) << 8 | UInt64(aff0)
    }

    /// Aff3.Aff2.Aff1.Aff0 in 32 bits: GICR_TYPER.Affinity_Value, and Linux's cpu@ `reg` below Aff3.
    public var packed: UInt32 {
        UInt32(aff3) << 24 | UInt32(aff2) << 16 | UInt32(aff1) << 8 | UInt32(aff0)
    }

    /// The vCPU with this affinity when the VM has `count` of them; nil when none has it.
    public func vcpu(count: Int) -> Int? {
        guard aff0 < 16, aff2 == 0, aff3 == 0 else { return nil }
        let index = Int(aff1) * 16 + Int(aff0)
        return index < count ? index : nil
    }
}

/// The PSCI state of one VM: which of its vCPUs are on.
///
/// vCPU i has the affinity `MPIDRAffinity(vcpu: i)`; the guest sees MPIDR_EL1 = 0x8000_0000 | its
/// fields (bit 31 is RES1). The guest's device tree must give cpu@ nodes the same `reg`.
public struct PSCI {
    /// PSCI 1.1: major in bits [31:16], minor in [15:0] (DEN0022 "PSCI_VERSION").
    public static let version: UInt32 = 0x0001_0001
    /// SMCCC 1.1, same encoding (DEN0028 "SMCCC_VERSION").
    public static let smcccVersion: UInt32 = 0x0001_0001
    /// MPIDR_EL1 affinity fields Aff3 [39:32], Aff2 [23:16], Aff1 [15:8], Aff0 [7:0]. DEN0022
    /// "CPU_ON" requires every other bit of target_cpu to be zero.
    public static let affinityMask: UInt64 = 0xFF_00FF_FFFF
    /// Aff0 0...15 and Aff1 0...15 (`MPIDRAffinity`).
    public static let maximumVCPUs = 256

    public let vcpuCount: Int
    /// `online[i]`: vCPU i is running (or has been started). vCPU 0 is the boot vCPU and starts on.
    /// The exit loop may clear an entry when it fails to start a vCPU that `.startCPU` named.
    public var online: [Bool]
    /// Where CPU_ON may start a vCPU (the VM's RAM; nil: anywhere). An entry point outside it gets
    /// INVALID_ADDRESS (DEN0022 "CPU_ON") and the vCPU stays off.
    public var entryPoints: ClosedRange<UInt64>? = nil

    public init(vcpuCount: Int) {
        precondition(vcpuCount >= 1 && vcpuCount <= PSCI.maximumVCPUs, "PSCI: vCPU count out of range")
        self.vcpuCount = vcpuCount
        online = [Bool](repeating: false, count: vcpuCount)
        online[0] = true
    }

    /// The registers CPU_ON gives a vCPU: x0 = the context id, PC = the entry point, EL1h with every
    /// exception masked (DEN0022 "CPU_ON"); the platforms also reset its SCTLR_EL1 and virtual timer.
    public static func cpuOnRegisters(entry: UInt64, context: UInt64) -> RegisterFile {
        var registers = RegisterFile()
        registers.write(0, context)
        registers.pc = entry
        registers.pstate = 0x3c5
        return registers
    }

    /// MPIDR_EL1 value the platform gives vCPU `index` (VMPIDR_EL2 on native).
    public static func mpidr(ofVCPU index: Int) -> UInt64 { 0x8000_0000 | MPIDRAffinity(vcpu: index).mpidrBits }

    /// The vCPU a PSCI target_cpu names, or nil when it has bits outside the affinity fields or an
    /// affinity with no vCPU behind it.
    public func vcpu(forAffinity target: UInt64) -> Int? {
        guard target & ~PSCI.affinityMask == 0 else { return nil }
        return MPIDRAffinity(mpidr: target).vcpu(count: vcpuCount)
    }

    public func affinityState(ofVCPU index: Int) -> AffinityState {
        online[index] ? .on : .off
    }

    /// Handles one call. `function` is x0 (only w0 counts, DEN0028 "Function Identifier"),
    /// `arguments` are x1..x3, `caller` is the calling vCPU's index.
    public mutating func handle(function: UInt64, arguments: (UInt64, UInt64, UInt64),
                                caller: Int) -> PSCIOutcome {
        guard let call = PSCIFunction(rawValue: UInt32(truncatingIfNeeded: function)) else {
            // DEN0028 "Unknown Function Identifier": every unimplemented ID returns -1.
            return .status(.notSupported)
        }
        var (a1, a2, a3) = arguments
        if call.uses32BitArguments {
            // DEN0028: for SMC32/HVC32 the upper 32 bits of x1..x7 are ignored.
            a1 &= 0xFFFF_FFFF; a2 &= 0xFFFF_FFFF; a3 &= 0xFFFF_FFFF
        }
        switch call {
        case .version:
            return .reply(UInt64(PSCI.version))
        case .features:
            guard let queried = PSCIFunction(rawValue: UInt32(truncatingIfNeeded: a1)),
                  queried.reportedByFeatures else { return .status(.notSupported) }
            // 0 for every implemented ID. For CPU_SUSPEND 0 also means: original power_state
            // format, platform-coordinated mode (DEN0022 "PSCI_FEATURES" flags).
            return .status(.success)
        case .cpuSuspend32, .cpuSuspend64:
            // SUCCESS at once, as if a wake-up event were already pending: DEN0022 lets an
            // implementation enter a shallower state than requested, and a standby state ends on
            // any wake-up event. (KVM instead waits as for WFI; Linux only calls this when the
            // device tree lists idle states, which ours does not.)
            return .status(.success)
        case .cpuOff:
            if caller >= 0 && caller < vcpuCount { online[caller] = false }
            return .stopCurrentCPU
        case .cpuOn32, .cpuOn64:
            guard let target = vcpu(forAffinity: a1) else { return .status(.invalidParameters) }
            guard !online[target] else { return .status(.alreadyOn) }
            if let range = entryPoints, !range.contains(a2) { return .status(.invalidAddress) }
            online[target] = true
            return .startCPU(target: target, entry: a2, context: a3)
        case .affinityInfo32, .affinityInfo64:
            // From PSCI 1.0 only lowest_affinity_level 0 is required; higher levels are refused.
            guard a2 == 0, let target = vcpu(forAffinity: a1) else { return .status(.invalidParameters) }
            return .reply(affinityState(ofVCPU: target).rawValue)
        case .migrateInfoType:
            // 2: no Trusted OS that needs migration (DEN0022 "MIGRATE_INFO_TYPE").
            return .reply(2)
        case .systemOff:
            return .systemOff
        case .systemReset:
            return .systemReset
        case .smcccVersion:
            return .reply(UInt64(PSCI.smcccVersion))
        case .smcccArchFeatures:
            // No SMCCC_ARCH_WORKAROUND_* and no SOC_ID are offered.
            return .status(.notSupported)
        }
    }
}
