// AArch64 exit decoding: ESR_EL2 (seL4 calls it HSR) turned once into a `GuestExit`.
//
// This file owns the bit layout of the exception syndrome and of the instruction-specific syndromes
// (ISS) the core acts on: data aborts, WFI/WFE, HVC/SMC and MSR/MRS traps. Each decoder is a pure
// function of the syndrome value; the platform reads ESR_EL2, HPFAR_EL2 and FAR_EL2 (or takes them
// from seL4's fault message) and the core dispatches on the enum. Emulating the access, replying to
// the call and choosing to stop the guest are left to the exit loop and the device models.
// Field positions: Arm ARM (DDI 0487), "ESR_EL2, Exception Syndrome Register (EL2)" and the
// "ISS encoding for an exception from …" sections it links to.

/// ESR_EL2.EC, bits [31:26]: why the exception was taken to EL2.
public enum ExceptionClass: UInt8, Equatable {
    case unknown = 0x00
    case wfx = 0x01
    case coprocessor15Access32 = 0x03     // MCR/MRC to CP15 from AArch32
    case coprocessor15Access64 = 0x04     // MCRR/MRRC to CP15 from AArch32
    case coprocessor14Access32 = 0x05     // MCR/MRC to CP14 from AArch32
    case coprocessor14LoadStore = 0x06    // LDC/STC to CP14 from AArch32
    case floatingPointAccess = 0x07       // SVE, Advanced SIMD or FP access trapped (CPTR_EL2)
    case coprocessor14Access64 = 0x0C     // MRRC to CP14 from AArch32
    case branchTarget = 0x0D
    case illegalExecutionState = 0x0E
    case svc32 = 0x11
    case hvc32 = 0x12
    case smc32 = 0x13
    case svc64 = 0x15
    case hvc64 = 0x16
    case smc64 = 0x17
    case systemRegister = 0x18            // MSR, MRS or System instruction from AArch64
    case sveAccess = 0x19
    case pointerAuthentication = 0x1C
    case instructionAbortLower = 0x20
    case instructionAbortSame = 0x21
    case pcAlignment = 0x22
    case dataAbortLower = 0x24
    case dataAbortSame = 0x25
    case spAlignment = 0x26
    case floatingPointException32 = 0x28
    case floatingPointException64 = 0x2C
    case serror = 0x2F
    case breakpointLower = 0x30
    case breakpointSame = 0x31
    case softwareStepLower = 0x32
    case softwareStepSame = 0x33
    case watchpointLower = 0x34
    case watchpointSame = 0x35
    case breakpointInstruction32 = 0x38   // BKPT
    case vectorCatch32 = 0x3A
    case breakpointInstruction64 = 0x3C   // BRK
}

/// A raw ESR_EL2 value with its architectural fields named.
public struct ExceptionSyndrome: Equatable {
    public let raw: UInt64
    @inlinable public init(_ raw: UInt64) { self.raw = raw }

    /// EC, ESR[31:26].
    @inlinable public var exceptionClassBits: UInt8 { UInt8(truncatingIfNeeded: raw >> 26) & 0x3F }

    /// nil for an EC value this decoder has no name for; the core treats it as unknown.
    @inlinable public var exceptionClass: ExceptionClass? { ExceptionClass(rawValue: exceptionClassBits) }

    /// IL, ESR[25]: 1 for a 32-bit instruction (every A64 instruction), 0 for a 16-bit T32 one.
    /// The Arm ARM makes IL 1 for exceptions not caused by an instruction (e.g. ISV=0 data aborts).
    @inlinable public var instructionLength32: Bool { raw & (1 << 25) != 0 }

    /// Bytes to step over the trapping instruction: 4, or 2 for a 16-bit T32 instruction.
    @inlinable public var instructionLength: UInt64 { instructionLength32 ? 4 : 2 }

    /// ISS, ESR[24:0]: meaning depends on the exception class.
    @inlinable public var iss: UInt32 { UInt32(truncatingIfNeeded: raw) & 0x01FF_FFFF }
}

/// The ISS of a data abort with a valid instruction syndrome: what a load or store did, so that the
/// VMM can emulate it without decoding the guest's instruction.
/// Arm ARM "ISS encoding for an exception from a Data Abort".
public struct DataAbort: Equatable {
    public let syndrome: ExceptionSyndrome
    /// Bytes accessed: 1, 2, 4 or 8 (SAS, ISS[23:22]).
    public let accessSize: Int
    /// SSE, ISS[21]: the load sign-extends the loaded value.
    public let signExtend: Bool
    /// SRT, ISS[20:16]: the transfer register; 31 is xzr/wzr for a load or store.
    public let register: Int
    /// SF, ISS[15]: the transfer register is an X register (else W, upper 32 bits zeroed on a load).
    public let sixtyFourBitRegister: Bool
    /// AR, ISS[14]: the instruction has acquire/release semantics.
    public let acquireRelease: Bool
    /// WnR, ISS[6]: the access was a write.
    public let isWrite: Bool
    /// S1PTW, ISS[7]: the fault hit a stage-1 translation table walk, not the access itself.
    public let s1ptw: Bool
    /// CM, ISS[8]: the fault came from a cache maintenance or address translation instruction.
    public let cacheMaintenance: Bool
    /// EA, ISS[9]: external abort type (implementation defined).
    public let externalAbort: Bool
    /// DFSC, ISS[5:0], e.g. 0x04...0x07 translation fault at level 0...3.
    public let faultStatus: UInt8

    /// nil unless the exception is a data abort and ISV (ISS[24]) is 1: without ISV the syndrome
    /// says nothing about the register or the size and the access cannot be emulated from it.
    public init?(syndrome: ExceptionSyndrome) {
        guard syndrome.exceptionClass == .dataAbortLower || syndrome.exceptionClass == .dataAbortSame
        else { return nil }
        let iss = syndrome.iss
        guard iss & (1 << 24) != 0 else { return nil }
        self.syndrome = syndrome
        accessSize = 1 << Int((iss >> 22) & 0x3)
        signExtend = iss & (1 << 21) != 0
        register = Int((iss >> 16) & 0x1F)
        sixtyFourBitRegister = iss & (1 << 15) != 0
        acquireRelease = iss & (1 << 14) != 0
        externalAbort = iss & (1 << 9) != 0
        cacheMaintenance = iss & (1 << 8) != 0
        s1ptw = iss & (1 << 7) != 0
        isWrite = iss & (1 << 6) != 0
        faultStatus = UInt8(iss & 0x3F)
    }

    /// All-ones in the low `accessSize` bytes.
    @inlinable var accessMask: UInt64 {
        accessSize >= 8 ? UInt64.max : (UInt64(1) << UInt64(accessSize * 8)) &- 1
    }

    /// The value to put in the target register after the device returned `raw` for a read:
    /// truncate to accessSize, sign-extend if SSE, then truncate to 32 bits if !SF (a W register
    /// write zeroes the upper half, Arm ARM "Register size" in the A64 register description).
    public func registerValue(fromRead raw: UInt64) -> UInt64 {
        var value = raw & accessMask
        if signExtend && accessSize < 8 {
            // Shift the access's top bit to bit 63, then arithmetic-shift back: bits above it copy it.
            let unused = UInt64(64 - accessSize * 8)
            value = UInt64(bitPattern: Int64(bitPattern: value << unused) >> unused)
        }
        return sixtyFourBitRegister ? value : value & 0xFFFF_FFFF
    }

    /// The bytes a write carries: the register's value truncated to accessSize.
    public func valueToWrite(fromRegister value: UInt64) -> UInt64 {
        value & accessMask
    }
}

/// What a trapped WFx instruction was waiting for. ISS for EC 0x01: TI, ISS[1:0] is 0 WFI, 1 WFE,
/// 2 WFIT, 3 WFET (FEAT_WFxT); the timeout variants are treated as their plain forms, which the
/// architecture permits because a WFxT may wake early. The raw value is TI[0].
/// (A raw type, because a plain payload-less enum is implicitly Hashable, and its hashValue would
/// pull the stdlib's random hash seed, `arc4random_buf`, into the embedded image.)
public enum WaitKind: UInt8, Equatable { case wfi = 0, wfe = 1 }

/// A trapped MSR/MRS or System instruction from AArch64 (EC 0x18).
/// Arm ARM "ISS encoding for an exception from MSR, MRS, or System instruction execution in AArch64 state":
/// Op0 ISS[21:20], Op2 ISS[19:17], Op1 ISS[16:14], CRn ISS[13:10], Rt ISS[9:5], CRm ISS[4:1],
/// Direction ISS[0] (1 = read, MRS).
public struct SystemRegisterAccess: Equatable {
    public let op0: UInt8
    public let op1: UInt8
    public let crn: UInt8
    public let crm: UInt8
    public let op2: UInt8
    /// Rt: the general-purpose register read or written; 31 is xzr.
    public let register: Int
    /// true for MRS (the guest reads the system register into Rt).
    public let isRead: Bool

    public init(op0: UInt8, op1: UInt8, crn: UInt8, crm: UInt8, op2: UInt8, register: Int, isRead: Bool) {
        self.op0 = op0; self.op1 = op1; self.crn = crn; self.crm = crm; self.op2 = op2
        self.register = register; self.isRead = isRead
    }

    public init(iss: UInt32) {
        op0 = UInt8((iss >> 20) & 0x3)
        op2 = UInt8((iss >> 17) & 0x7)
        op1 = UInt8((iss >> 14) & 0x7)
        crn = UInt8((iss >> 10) & 0xF)
        register = Int((iss >> 5) & 0x1F)
        crm = UInt8((iss >> 1) & 0xF)
        isRead = iss & 1 != 0
    }

    /// True when this names the register S<op0>_<op1>_C<crn>_C<crm>_<op2>, direction aside.
    public func names(op0: UInt8, op1: UInt8, crn: UInt8, crm: UInt8, op2: UInt8) -> Bool {
        self.op0 == op0 && self.op1 == op1 && self.crn == crn && self.crm == crm && self.op2 == op2
    }
}

/// Everything the core handles, decoded once (STYLE.md "Decode an exit once into an enum").
public enum GuestExit: Equatable {
    case dataAbort(DataAbort, address: GuestPhysicalAddress)
    /// ISV=0 (e.g. a load pair, a post-indexed access, or a fault on a stage-1 table walk):
    /// the syndrome does not describe the access, so it cannot be emulated.
    case dataAbortWithoutSyndrome(ExceptionSyndrome, address: GuestPhysicalAddress)
    case instructionAbort(ExceptionSyndrome, address: GuestPhysicalAddress)
    /// HVC #imm, ISS[15:0] ("ISS encoding for an exception from HVC or SVC instruction execution").
    case hypervisorCall(immediate: UInt16)
    /// SMC #imm, ISS[15:0], trapped by HCR_EL2.TSC.
    case secureMonitorCall(immediate: UInt16)
    case wait(WaitKind)
    case systemRegister(SystemRegisterAccess)
    /// Any other class (including exceptions from EL2 itself and from AArch32): the loop stops the
    /// guest and reports the syndrome.
    case unknown(ExceptionSyndrome)

    /// `address` is the faulting IPA (the platform computes it: on native from HPFAR_EL2/FAR_EL2
    /// with `faultingIPA`, on seL4 the VM fault message carries it). Ignored for non-abort classes.
    public init(syndrome: ExceptionSyndrome, address: GuestPhysicalAddress) {
        let iss = syndrome.iss
        switch syndrome.exceptionClass {
        case .dataAbortLower:
            if let access = DataAbort(syndrome: syndrome) {
                self = .dataAbort(access, address: address)
            } else {
                self = .dataAbortWithoutSyndrome(syndrome, address: address)
            }
        case .instructionAbortLower:
            self = .instructionAbort(syndrome, address: address)
        case .hvc64:
            self = .hypervisorCall(immediate: UInt16(truncatingIfNeeded: iss))
        case .smc64:
            self = .secureMonitorCall(immediate: UInt16(truncatingIfNeeded: iss))
        case .wfx:
            self = .wait(iss & 1 == 0 ? .wfi : .wfe)
        case .systemRegister:
            self = .systemRegister(SystemRegisterAccess(iss: iss))
        default:
            self = .unknown(syndrome)
        }
    }

    /// The highest-numbered general-purpose register the core reads or writes to handle this exit
    /// (nil: none, only the PC): the transfer register of an emulated load or store or of a trapped
    /// MSR/MRS, x3 for a PSCI call over HVC or SMC (function and three arguments in x0-x3, the result
    /// in x0). A platform
    /// that pays per register moved (seL4's TCB_ReadRegisters) moves no more than these.
    public var highestRegister: Int? {
        switch self {
        case .dataAbort(let access, _):
            return access.register < 31 ? access.register : nil
        case .systemRegister(let access):
            return access.register < 31 ? access.register : nil
        case .hypervisorCall, .secureMonitorCall:
            return 3
        case .dataAbortWithoutSyndrome, .instructionAbort, .wait, .unknown:
            return nil
        }
    }

    /// Whether the handler must step the PC over the trapping instruction before resuming.
    ///
    /// The exception's "preferred return address" (Arm ARM "Preferred exception return address",
    /// and each exception class's description of it) is what ELR_EL2 holds on entry:
    /// - HVC is an exception-generating instruction: ELR already points at the next instruction,
    ///   so the PC must NOT be advanced.
    /// - A trapped SMC (HCR_EL2.TSC), a trapped WFI/WFE, a trapped MSR/MRS and a data abort are
    ///   reported with ELR at the instruction itself: once emulated, the PC advances by
    ///   `syndrome.instructionLength` (IL).
    /// - Aborts that cannot be emulated and unknown exits stop the guest, so nothing is stepped.
    public var advancesPCOnReturn: Bool {
        switch self {
        case .dataAbort, .secureMonitorCall, .wait, .systemRegister: return true
        case .hypervisorCall, .dataAbortWithoutSyndrome, .instructionAbort, .unknown: return false
        }
    }

    /// The amount to add to the PC after handling this exit: `syndrome.instructionLength` when
    /// `advancesPCOnReturn`, else 0.
    public func pcIncrement(syndrome: ExceptionSyndrome) -> UInt64 {
        advancesPCOnReturn ? syndrome.instructionLength : 0
    }
}

/// IPA of a stage-2 abort. HPFAR_EL2.FIPA (bits [47:4]) holds IPA[55:12] (bits above the
/// implemented IPA size are RES0; bit 63 is NS and is dropped); FAR_EL2 supplies the offset in
/// the 4KB page, whatever the translation granule (Arm ARM "HPFAR_EL2").
public func faultingIPA(hpfar: UInt64, far: UInt64) -> GuestPhysicalAddress {
    let fipa = (hpfar >> 4) & ((UInt64(1) << 44) - 1)
    return GuestPhysicalAddress((fipa << 12) | (far & 0xFFF))
}
