// Fault messages laid out as libsel4 documents them for AArch64 with MCS and hypervisor support
// (sel4/arch/shared_types.bf: NullFault 0, CapFault 1, UnknownSyscall 2, UserException 3,
// Timeout 5, VMFault 6, VGICMaintenance 7, VCPUFault 8, VPPIEvent 9; sel4_arch/constants.h:
// VMFault IP 0, Addr 1, PrefetchFault 2, FSR 3; VCPUFault HSR 0; VGICMaintenance IDX 0;
// VPPIEvent IRQ 0; UnknownSyscall X0..X7 0–7, FaultIP 8; UserException FaultIP 0).
import XCTest
@testable import VMMCore

let documentedLayout = SeL4FaultLayout(
    vmFault: 6, vcpuFault: 8, vgicMaintenance: 7, vppiEvent: 9, unknownSyscall: 2, userException: 3,
    vmFaultIP: 0, vmFaultAddress: 1, vmFaultPrefetch: 2, vmFaultStatus: 3,
    vcpuFaultSyndrome: 0, vgicMaintenanceIndex: 0, vppiEventInterrupt: 0,
    unknownSyscallX0: 0, unknownSyscallFaultIP: 8, userExceptionFaultIP: 0)

final class SeL4FaultTests: XCTestCase {
    func decode(_ label: UInt64, _ registers: [UInt64]) -> PlatformEvent {
        SeL4Fault.decode(label: label, layout: documentedLayout) { index in
            index < registers.count ? registers[index] : 0xbad
        }
    }

    func testVMFaultOnTheDistributorBecomesADataAbortAtTheIPA() {
        // ldr w1, [x0] at GICD_CTLR: ESR 0x93810007 (EC 0x24, IL, ISV, SAS word, SRT 1, DFSC 7).
        let event = decode(6, [0xffff_8000_1234_5678, 0x0800_0000, 0, 0x9381_0007])
        XCTAssertEqual(event, .guestException(syndrome: ExceptionSyndrome(0x9381_0007),
                                              address: GuestPhysicalAddress(0x0800_0000)))
        guard case .guestException(let syndrome, let address) = event,
              case .dataAbort(let access, _) = GuestExit(syndrome: syndrome, address: address) else {
            return XCTFail("not a data abort: \(event)")
        }
        XCTAssertEqual(access.register, 1)
        XCTAssertFalse(access.isWrite)
    }

    func testVMFaultStatusWithoutExceptionClassIsCompletedFromPrefetchFlag() {
        let data = decode(6, [0, 0x0a00_0000, 0, 0x0181_0047])
        XCTAssertEqual(data, .guestException(syndrome: ExceptionSyndrome((0x24 << 26) | (1 << 25) | 0x0181_0047),
                                             address: GuestPhysicalAddress(0x0a00_0000)))
        let fetch = decode(6, [0, 0x0a00_0000, 1, 0x07])
        guard case .guestException(let syndrome, _) = fetch else { return XCTFail("\(fetch)") }
        XCTAssertEqual(syndrome.exceptionClass, .instructionAbortLower)
    }

    func testVCPUFaultCarriesTheTrappedSMCSyndrome() {
        let esr: UInt64 = (0x17 << 26) | (1 << 25)
        XCTAssertEqual(decode(8, [esr]), .guestException(syndrome: ExceptionSyndrome(esr), address: GuestPhysicalAddress(0)))
    }

    func testMaintenanceNamesTheListRegisterOrNone() {
        XCTAssertEqual(decode(7, [2]), .maintenance(listRegister: 2))
        XCTAssertEqual(decode(7, [UInt64.max]), .spuriousMaintenance)
        XCTAssertEqual(decode(7, [64]), .spuriousMaintenance)
    }

    func testVirtualTimerEventIsAPrivateInterrupt() {
        XCTAssertEqual(decode(9, [27]), .privateInterrupt(27))
        XCTAssertEqual(decode(9, [40]), .unhandled(label: 9, instructionPointer: 0), "a VPPI must be a PPI")
    }

    func testUserExceptionsAndUnknownLabelsAreUnhandledWithTheirPC() {
        XCTAssertEqual(decode(3, [0x4000_2000]), .unhandled(label: 3, instructionPointer: 0x4000_2000))
        XCTAssertEqual(decode(1, []), .unhandled(label: 1, instructionPointer: 0))
    }

    // MARK: A guest's HVC (an unknown system call to seL4)

    func testAnUnknownSyscallIsAHypervisorCallWithX0ToX7AndTheHVCsAddress() {
        let message: [UInt64] = [0x8400_0000, 1, 2, 3, 4, 5, 6, 0, 0x4020_0100, 0xbad, 0xbad, 0xbad, 0]
        var expected = RegisterFile()
        for (n, value) in [0x8400_0000, 1, 2, 3, 4, 5, 6, 0].enumerated() { expected.write(n, UInt64(value)) }
        expected.pc = 0x4020_0104    // past the HVC, as ELR_EL2 has it
        XCTAssertEqual(decode(2, message), .hypervisorCall(expected))
    }

    /// The reply as message registers 0...8, or nil.
    func reply(_ layout: SeL4FaultLayout, _ registers: RegisterFile) -> [UInt64]? {
        var registers = registers
        var message = [UInt64](repeating: 0xbad, count: 9)
        guard let length = SeL4Fault.hypervisorCallReply(layout: layout, registers: &registers,
                                                         store: { message[$0] = $1 }) else {
            XCTAssertEqual(message, [UInt64](repeating: 0xbad, count: 9), "stored nothing")
            return nil
        }
        return Array(message.prefix(length))
    }

    func testAHypervisorCallHandledByTheCoreRepliesWithItsResultAndTheNextInstruction() {
        // What the Microkit platform does: the message's registers into a RegisterFile with the PC
        // after the HVC, the core's PSCI, then the reply: x0-x7 as the core left them, then FaultIP.
        guard case .hypervisorCall(var registers) = decode(2, [0x8400_0000, 0, 0, 0, 0, 0, 0, 0, 0x4020_0100])
        else { return XCTFail("not a hypervisor call") }
        let ram = UnsafeMutableRawPointer.allocate(byteCount: 0x10000, alignment: 4096)
        defer { ram.deallocate() }
        let memory = GuestMemory(base: GuestPhysicalAddress(0x4000_0000), size: 0x10000, host: ram)
        var machine = VirtualMachine(memory: memory, vcpuCount: 1, listRegisterCount: 4, routes: [])
        var platform = RecordingPlatform()
        let action = machine.fault(vcpu: 0, syndrome: ExceptionSyndrome(0x16 << 26 | 1 << 25), address: GuestPhysicalAddress(0),
                                   registers: &registers, platform: &platform)
        XCTAssertEqual(action, .resume)
        XCTAssertEqual(reply(documentedLayout, registers), [0x1_0001, 0, 0, 0, 0, 0, 0, 0, 0x4020_0104], "PSCI 1.1 in x0, the PC past the HVC")
    }

    func testHVCThroughTheReplyEndsAsSMCThroughTheRegistersDoes() {
        // The same PSCI calls by both ways seL4 delivers them: an SMC is a VCPU fault whose registers
        // the platform reads (PC at the SMC), an HVC an unknown syscall answered in the reply (PC
        // after the HVC). Each call must leave x0-x7 and the PC where the guest continues the same.
        let ram = UnsafeMutableRawPointer.allocate(byteCount: 0x10000, alignment: 4096)
        defer { ram.deallocate() }
        let memory = GuestMemory(base: GuestPhysicalAddress(0x4000_0000), size: 0x10000, host: ram)
        var machine = VirtualMachine(memory: memory, vcpuCount: 1, listRegisterCount: 4, routes: [])
        var platform = RecordingPlatform()
        let calls: [[UInt64]] = [[0x8400_0000], [0x8400_000A, 0x8400_0000], [0x8400_000A, 0xC400_0003],
                                 [0xC400_0004, 0, 0], [0x8400_0099], [0xC400_0003, 5, 0x4000_0000, 0]]
        for call in calls {
            let at: UInt64 = 0x4020_0100
            var viaSMC = RegisterFile()
            for (n, value) in call.enumerated() { viaSMC.write(n, value) }
            viaSMC.write(7, 0x77)
            viaSMC.pc = at
            let smc = machine.fault(vcpu: 0, syndrome: ExceptionSyndrome(0x17 << 26 | 1 << 25), address: GuestPhysicalAddress(0),
                                    registers: &viaSMC, platform: &platform)
            var message = (0..<8).map { n in n < call.count ? call[n] : 0 }
            message[7] = 0x77
            guard case .hypervisorCall(var viaHVC) = decode(2, message + [at]) else {
                return XCTFail("not a hypervisor call")
            }
            let hvc = machine.fault(vcpu: 0, syndrome: ExceptionSyndrome(0x16 << 26 | 1 << 25), address: GuestPhysicalAddress(0),
                                    registers: &viaHVC, platform: &platform)
            XCTAssertEqual(smc, hvc, "call \(call)")
            XCTAssertEqual(reply(documentedLayout, viaHVC),
                           (0..<8).map { viaSMC.read($0) } + [viaSMC.pc], "call \(call)")
        }
    }

    func testNoReplyWhenTheLayoutIsNotX0ToX7ThenFaultIP() {
        var shuffled = documentedLayout
        shuffled.unknownSyscallFaultIP = 9
        XCTAssertNil(reply(shuffled, RegisterFile()))
        shuffled = documentedLayout
        shuffled.unknownSyscallX0 = 1
        XCTAssertNil(reply(shuffled, RegisterFile()))
    }

    // MARK: The registers an exit needs (what seL4 is asked to read and write)

    func testHighestRegisterIsTheTransferRegisterOrX3ForPSCI() {
        let address = GuestPhysicalAddress(0x0800_0004)
        // LDR w5, [x1] to the distributor: ISV, SAS word, SRT 5, read.
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x9380_0000 | 5 << 16), address: address).highestRegister, 5)
        // STR wzr: SRT 31 is the zero register, nothing to read.
        XCTAssertNil(GuestExit(syndrome: ExceptionSyndrome(0x9380_0040 | 31 << 16), address: address).highestRegister)
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x16 << 26 | 1 << 25), address: address).highestRegister, 3)
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x17 << 26 | 1 << 25), address: address).highestRegister, 3)
        XCTAssertNil(GuestExit(syndrome: ExceptionSyndrome(0x01 << 26 | 1 << 25), address: address).highestRegister, "WFI")
        XCTAssertNil(GuestExit(syndrome: ExceptionSyndrome(0x24 << 26 | 1 << 25), address: address).highestRegister,
                     "no syndrome: cannot be emulated")
        // MSR ICC_SGI1R_EL1, x7 (Rt [9:5]); MSR of xzr reads nothing.
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x18 << 26 | 1 << 25 | 7 << 5), address: address).highestRegister, 7)
        XCTAssertNil(GuestExit(syndrome: ExceptionSyndrome(0x18 << 26 | 1 << 25 | 31 << 5), address: address).highestRegister)
    }
}
