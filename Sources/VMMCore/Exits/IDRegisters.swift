// The CPU identification registers a guest reads: the hardware's, less what the VMM does not give.
//
// With HCR_EL2.TID3 the guest's reads of the ID register group 3 (op0 = 3, op1 = 0, CRn = 0,
// CRm = 1...7: ID_AA64PFR0_EL1 and friends, the AArch32 ID registers, MVFRn) trap to EL2 as MSR/MRS
// exits (Arm ARM D13.2.48 HCR_EL2.TID3; the register list is "Identification registers" in D23).
// The platform reads every one of them from the hardware once at boot; this file decides what the
// guest sees instead, so that the features it is told of are the ones it can use:
//
// - Features the VMM leaves to the guest are shown as they are: FP/AdvSIMD, SVE (CPTR_EL2.TZ = 0,
//   ZCR_EL2 at the largest length; the VMM's EL2 code touches no FP/SIMD/SVE register, so the
//   guest's vector state stays in the hardware across every exit), pointer authentication
//   (HCR_EL2.API and APK: no trap, the guest's keys stay in the hardware), the ISA extensions of
//   ID_AA64ISAR0-2, the debug and PMU fields.
// - Features that need an EL2 the VMM does not give, or state it does not keep, read as absent:
//   EL2 itself and Secure EL2 (the guest has no hypervisor), AMU, MPAM, MTE, SME (CPTR_EL2.TSM traps
//   it), SPE, trace, BRBE, virtualization-only fields of the memory model registers (VHE, VMID bits,
//   XNX, TWED, HCX, NV, EVT, FGT), LS64 and MOPS (which need HCRX_EL2), and the GIC system register
//   interface on a GICv2 guest.
// - ID_AA64MMFR0_EL1.PARange says the guest's physical address space is the IPA size of its stage 2,
//   not the board's physical address size.
// Encodings in the group that name no register read as zero, as the architecture has them.

/// ID registers of group 3 as the guest reads them. Index: (CRm - 1) * 8 + op2.
public struct GuestIDRegisters: Equatable {
    public static let count = 56
    private var values: [UInt64]

    /// `hardware(crm, op2)` returns the board CPU's own value of S3_0_C0_C<crm>_<op2>.
    /// `ipaBits` is the guest's IPA size (stage 2's input); `gicVersion` .v2 hides the GIC
    /// system-register interface (ID_AA64PFR0_EL1.GIC), .v3 shows it.
    public init(ipaBits: Int, gicVersion: GICVersion, hardware: (_ crm: Int, _ op2: Int) -> UInt64) {
        values = []
        values.reserveCapacity(Self.count)
        for index in 0..<Self.count {
            let crm = index / 8 + 1, op2 = index % 8
            values.append(Self.sanitised(crm: crm, op2: op2, hardware(crm, op2), ipaBits: ipaBits,
                                         gicVersion: gicVersion))
        }
    }

    /// The value the guest reads through `access`, or nil when it is not a read of group 3.
    public func value(of access: SystemRegisterAccess) -> UInt64? {
        guard access.isRead, access.op0 == 3, access.op1 == 0, access.crn == 0,
              access.crm >= 1, access.crm <= 7 else { return nil }
        return values[(Int(access.crm) - 1) * 8 + Int(access.op2)]
    }

    /// The guest's value of S3_0_C0_C<crm>_<op2> (crm 1...7, op2 0...7).
    public func value(crm: Int, op2: Int) -> UInt64 {
        guard crm >= 1, crm <= 7, op2 >= 0, op2 <= 7 else { return 0 }
        return values[(crm - 1) * 8 + op2]
    }

    /// A field of 4 bits at `shift`, as the mask that clears it.
    static func field(_ shift: Int) -> UInt64 { 0xF << UInt64(shift) }

    /// ID_AA64MMFR0_EL1.PARange encoding of an address size in bits (the largest not above it).
    public static func physicalAddressRange(bits: Int) -> UInt64 {
        let sizes = [32, 36, 40, 42, 44, 48, 52]
        var encoding = 0
        for (code, size) in sizes.enumerated() where size <= bits { encoding = code }
        return UInt64(encoding)
    }

    static func sanitised(crm: Int, op2: Int, _ hardware: UInt64, ipaBits: Int, gicVersion: GICVersion) -> UInt64 {
        var value = hardware
        func clear(_ shifts: [Int]) { for shift in shifts { value &= ~field(shift) } }
        switch (crm, op2) {
        case (4, 0):   // ID_AA64PFR0_EL1: EL2 [11:8], GIC [27:24], SEL2 [39:36], MPAM [43:40], AMU [47:44]
            clear([8, 36, 40, 44])
            value &= ~field(24)
            if gicVersion == .v3 { value |= 1 << 24 }
        case (4, 1):   // ID_AA64PFR1_EL1: keep BT [3:0], SSBS [7:4], RAS_frac [15:12], CSV2_frac [35:32]
            value &= field(0) | field(4) | field(12) | field(32)
        case (4, 5):   // ID_AA64SMFR0_EL1: no SME
            value = 0
        case (5, 0):   // ID_AA64DFR0_EL1: keep DebugVer, PMUVer, BRPs, WRPs, CTX_CMPs, DoubleLock
            value &= field(0) | field(8) | field(12) | field(20) | field(28) | field(36)
        case (5, 1), (5, 4), (5, 5):   // ID_AA64DFR1_EL1, ID_AA64AFR0/1_EL1 (implementation defined)
            value = 0
        case (6, 1):   // ID_AA64ISAR1_EL1: LS64 [63:60]
            clear([60])
        case (6, 2):   // ID_AA64ISAR2_EL1: MOPS [19:16]
            clear([16])
        case (7, 0):   // ID_AA64MMFR0_EL1: PARange [3:0] no larger than the IPA; FGT [59:56]
            let range = min(value & 0xF, physicalAddressRange(bits: ipaBits))
            value = value & ~(field(0) | field(56)) | range
        case (7, 1):   // ID_AA64MMFR1_EL1: VMIDBits [7:4], VH [11:8], XNX [31:28], TWED [35:32], HCX [43:40]
            clear([4, 8, 28, 32, 40])
        case (7, 2):   // ID_AA64MMFR2_EL1: NV [27:24], EVT [59:56]
            clear([24, 56])
        default:
            break
        }
        return value
    }
}
