// The system registers the core emulates when a guest's MSR or MRS traps (EC 0x18), named by their
// encoding (op0, op1, CRn, CRm, op2; Arm ARM "System register encoding"). Decoding the syndrome is
// ExceptionSyndrome.swift's (`SystemRegisterAccess`); what an access does is the machine's
// (`VirtualMachine.systemRegister`). A register the core does not name here stops the guest.

public enum TrappedSystemRegister: Equatable {
    /// ICC_SGI1R_EL1, ICC_ASGI1R_EL1, ICC_SGI0R_EL1 (S3_0_C12_C11_5/6/7): a GICv3 guest sends an SGI.
    case softwareInterrupt(SGIRegister)

    public init?(_ access: SystemRegisterAccess) {
        switch (access.op0, access.op1, access.crn, access.crm, access.op2) {
        case (3, 0, 12, 11, 5): self = .softwareInterrupt(.group1)
        case (3, 0, 12, 11, 6): self = .softwareInterrupt(.alternateGroup1)
        case (3, 0, 12, 11, 7): self = .softwareInterrupt(.group0)
        default: return nil
        }
    }
}
