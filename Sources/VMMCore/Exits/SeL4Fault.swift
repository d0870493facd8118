// seL4 fault messages, as the Microkit delivers them to a VMM's `fault` entry point, turned into
// the same events the native platform produces from hardware.
//
// seL4 (MCS, AArch64, hypervisor build) reports a vCPU's exits as faults with a label and message
// registers (libsel4 `sel4/arch/shared_types.bf`, `sel4_arch/constants.h`): a stage-2 abort is a
// VMFault (IP, Addr = faulting IPA, PrefetchFault, FSR = ESR_EL2), a trapped SMC or WFx a VCPUFault
// (HSR = ESR_EL2), an EOI of a list register a VGICMaintenance (IDX, or -1 when none), a virtual
// timer tick a VPPIEvent (IRQ). The numbers themselves come from the SDK's headers at build time
// (`SeL4FaultLayout` is filled by the Microkit platform), never from copies in this repository;
// the unit tests spell them out from the libsel4 documentation.

/// Labels and message-register indices of the fault messages, from the SDK being built against.
public struct SeL4FaultLayout: Sendable {
    public var vmFault: UInt64
    public var vcpuFault: UInt64
    public var vgicMaintenance: UInt64
    public var vppiEvent: UInt64
    public var unknownSyscall: UInt64
    public var userException: UInt64

    public var vmFaultIP: Int
    public var vmFaultAddress: Int
    public var vmFaultPrefetch: Int
    public var vmFaultStatus: Int
    public var vcpuFaultSyndrome: Int
    public var vgicMaintenanceIndex: Int
    public var vppiEventInterrupt: Int
    public var unknownSyscallX0: Int          // x1-x7 follow it
    public var unknownSyscallFaultIP: Int
    public var userExceptionFaultIP: Int

    public init(vmFault: UInt64, vcpuFault: UInt64, vgicMaintenance: UInt64, vppiEvent: UInt64,
                unknownSyscall: UInt64, userException: UInt64,
                vmFaultIP: Int, vmFaultAddress: Int, vmFaultPrefetch: Int, vmFaultStatus: Int,
                vcpuFaultSyndrome: Int, vgicMaintenanceIndex: Int, vppiEventInterrupt: Int,
                unknownSyscallX0: Int, unknownSyscallFaultIP: Int, userExceptionFaultIP: Int) {
        self.vmFault = vmFault
        self.vcpuFault = vcpuFault
        self.vgicMaintenance = vgicMaintenance
        self.vppiEvent = vppiEvent
        self.unknownSyscall = unknownSyscall
        self.userException = userException
        self.vmFaultIP = vmFaultIP
        self.vmFaultAddress = vmFaultAddress
        self.vmFaultPrefetch = vmFaultPrefetch
        self.vmFaultStatus = vmFaultStatus
        self.vcpuFaultSyndrome = vcpuFaultSyndrome
        self.vgicMaintenanceIndex = vgicMaintenanceIndex
        self.vppiEventInterrupt = vppiEventInterrupt
        self.unknownSyscallX0 = unknownSyscallX0
        self.unknownSyscallFaultIP = unknownSyscallFaultIP
        self.userExceptionFaultIP = userExceptionFaultIP
    }
}

/// A vCPU exit as the core handles it, whichever platform produced it.
public enum PlatformEvent: Equatable {
    /// A synchronous exit: hand to `VirtualMachine.fault` with this syndrome and IPA.
    case guestException(syndrome: ExceptionSyndrome, address: GuestPhysicalAddress)
    /// The guest deactivated the interrupt in this list register.
    case maintenance(listRegister: Int)
    /// A maintenance fault that names no list register (seL4 sends IDX = -1): nothing to do.
    case spuriousMaintenance
    /// A private peripheral interrupt of the vCPU (the virtual timer) fired; seL4 has masked it.
    case privateInterrupt(UInt32)
    /// A guest HVC. seL4 takes a vCPU's HVC as a system call, numbered by x7; one with no seL4
    /// number reaches the VMM as an unknown-syscall fault whose message holds x0-x7 and the HVC's
    /// own address. `registers` has x0-x7 from the message (the others zero) and the PC at the
    /// instruction after the HVC, as ELR_EL2 has it for an HVC: ready for `VirtualMachine.fault`
    /// with an HVC syndrome. The reply can write x0-x7 and the PC back (seL4's copyMRsFaultReply for
    /// UnknownSyscall; `hypervisorCallReply`), so the call costs no register read or write.
    case hypervisorCall(RegisterFile)
    /// A fault the VMM does not handle (an unknown label, a user exception from the guest).
    case unhandled(label: UInt64, instructionPointer: UInt64)
}

public enum SeL4Fault {
    /// Decodes one fault message. `register(i)` reads message register i (`microkit_mr_get`); it is
    /// called only for indices the layout names for this label.
    public static func decode(label: UInt64, layout: SeL4FaultLayout,
                              register: (Int) -> UInt64) -> PlatformEvent {
        switch label {
        case layout.vmFault:
            let prefetch = register(layout.vmFaultPrefetch) != 0
            return .guestException(syndrome: abortSyndrome(register(layout.vmFaultStatus), prefetch: prefetch),
                                   address: GuestPhysicalAddress(register(layout.vmFaultAddress)))
        case layout.vcpuFault:
            return .guestException(syndrome: ExceptionSyndrome(register(layout.vcpuFaultSyndrome)),
                                   address: GuestPhysicalAddress(0))
        case layout.vgicMaintenance:
            let index = register(layout.vgicMaintenanceIndex)
            // IDX is a list-register number, or -1 (all ones) when the kernel found none.
            guard index < 64 else { return .spuriousMaintenance }
            return .maintenance(listRegister: Int(index))
        case layout.vppiEvent:
            let interrupt = register(layout.vppiEventInterrupt)
            guard interrupt < 32 else { return .unhandled(label: label, instructionPointer: 0) }
            return .privateInterrupt(UInt32(interrupt))
        case layout.unknownSyscall:
            var registers = RegisterFile()
            for n in 0..<8 { registers.write(n, register(layout.unknownSyscallX0 + n)) }
            registers.pc = register(layout.unknownSyscallFaultIP) &+ 4
            return .hypervisorCall(registers)
        case layout.userException:
            return .unhandled(label: label, instructionPointer: register(layout.userExceptionFaultIP))
        default:
            return .unhandled(label: label, instructionPointer: 0)
        }
    }

    /// The reply to a `hypervisorCall` once the core has handled it: `store(i, value)` sets message
    /// register i to x0...x7, then FaultIP (the registers' PC: where the guest goes on), and the
    /// reply's length comes back; nil, with nothing stored, unless the layout has them contiguous
    /// (X0 first, FaultIP right after X7, as libsel4 has them), since seL4 copies a reply's first
    /// registers in order. Allocates nothing: it is on the exit path.
    public static func hypervisorCallReply(layout: SeL4FaultLayout, registers: inout RegisterFile,
                                           store: (Int, UInt64) -> Void) -> Int? {
        guard layout.unknownSyscallX0 == 0, layout.unknownSyscallFaultIP == 8 else { return nil }
        for n in 0..<8 { store(n, registers.read(n)) }
        store(8, registers.pc)
        return 9
    }

    /// seL4 reports ESR_EL2 as the FSR of a VM fault. Should an SDK hand over the ISS alone (no
    /// exception class), the class is restored from PrefetchFault so the core decodes it the same way.
    static func abortSyndrome(_ status: UInt64, prefetch: Bool) -> ExceptionSyndrome {
        guard status >> 26 == 0 else { return ExceptionSyndrome(status) }
        let exceptionClass: UInt64 = prefetch ? 0x20 : 0x24   // instruction / data abort from a lower EL
        return ExceptionSyndrome((exceptionClass << 26) | (1 << 25) | (status & 0x1ff_ffff))
    }
}
