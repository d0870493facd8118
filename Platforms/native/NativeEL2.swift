// What a board CPU runs its vCPU under: the EL2 controls (HCR_EL2 and friends, Arm ARM D13.2.48)
// that make its EL1 the guest's, and what of the CPU the guest may use as it is (SVE, pointer
// authentication) or only through the core (the ID registers, HCR_EL2.TID3: GuestIDRegisters).
// Every CPU sets these for itself when its vCPU starts; nothing here is switched at an exit.
import NativeHardware
import VMMCore

/// What the board CPU has that the guest may use as it is (read from its ID registers once).
enum BoardCPU {
    /// ID_AA64PFR0_EL1.SVE [35:32].
    static let hasSVE = (read_id_register(4, 0) >> 32) & 0xF != 0
    /// Any of ID_AA64ISAR1_EL1's APA [7:4], API [11:8], GPA [27:24], GPI [31:28] or ID_AA64ISAR2_EL1's
    /// GPA3 [11:8], APA3 [15:12]: the CPU has pointer authentication.
    static let hasPointerAuthentication = read_id_register(6, 1) & 0xFF00_0FF0 != 0
        || read_id_register(6, 2) & 0xFF00 != 0

    /// The ID registers a guest of the given IPA size and GIC version reads (core: GuestIDRegisters).
    static func guestIDRegisters(ipaBits: Int, gicVersion: GICVersion) -> GuestIDRegisters {
        GuestIDRegisters(ipaBits: ipaBits, gicVersion: gicVersion) { crm, op2 in
            read_id_register(UInt32(crm), UInt32(op2))
        }
    }
}

/// The EL2 controls that make this CPU's EL1 the vCPU `vcpu` of the VM whose stage 2 is `vttbr`
/// (Arm ARM D13.2.48 HCR_EL2 and friends); every CPU runs this for itself.
func configureEL2(vttbr: UInt64, vcpu: Int) {
    write_vtcr_el2(Stage2Translation.vtcr)
    write_vttbr_el2(vttbr)
    write_vpidr_el2(read_midr_el1())
    write_vmpidr_el2(PSCI.mpidr(ofVCPU: vcpu))    // Aff0 = the vCPU's index in its VM, RES1 bit 31
    // RES1 bits [13:12] and [9:0]: FP/SIMD not trapped (TFP [10] = 0), SME trapped (TSM [12], and the
    // guest is told it has none). SVE [8] (TZ) is not trapped either where the CPU has it, at the
    // largest vector length the CPU gives (ZCR_EL2.LEN; EL1 narrows it as it likes). The VMM's EL2
    // code uses no FP/SIMD/SVE register, so the guest's vector state stays in the hardware.
    if BoardCPU.hasSVE {
        write_cptr_el2(0x32ff)
        isb()
        write_zcr_el2(0xf)
    } else {
        write_cptr_el2(0x33ff)
    }
    write_hstr_el2(0)
    write_cnthctl_el2(3)                          // EL1 may read the physical counter and timer
    write_cntvoff_el2(0)                          // one virtual counter for every vCPU
    write_sctlr_el1(0x30d0_0800)                  // architectural reset value: MMU and caches off
    // VM | SWIO | FMO | IMO | AMO | FB | BSU inner | TSC | TID3 | RW: stage 2 on, physical
    // interrupts to EL2 and virtual ones to the guest, SMC trapped, the ID registers read through
    // the core (GuestIDRegisters), EL1 is AArch64. WFI/WFE are not trapped: a waiting guest sleeps
    // in hardware until an interrupt (physical ones come to EL2). APK | API where the CPU has
    // pointer authentication: the guest's keys and PAC instructions are its own, not trapped (the
    // VMM's EL2 code does not sign pointers, so it never uses the keys).
    var hcr: UInt64 = (1 << 31) | (1 << 19) | (1 << 18) | (1 << 10) | (1 << 9) | (1 << 5) | (1 << 4) | (1 << 3)
        | (1 << 1) | 1
    if BoardCPU.hasPointerAuthentication { hcr |= (1 << 41) | (1 << 40) }
    write_hcr_el2(hcr)
    isb()
    tlbi_vmalls12e1()
}
