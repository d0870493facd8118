// The core's exit handling played from the guest's side: syndromes built from the Arm ARM's
// field positions, a register file, and a platform that records what the core asked of it.
import XCTest
@testable import VMMCore

/// Records list-register writes and physical-interrupt acknowledgements.
struct RecordingPlatform: VMMPlatform {
    var listRegisters: [(index: Int, entry: ListRegisterEntry)] = []
    var acknowledged: [UInt32] = []
    mutating func writeListRegister(vcpu: Int, index: Int, entry: ListRegisterEntry) {
        listRegisters.append((index, entry))
    }
    mutating func acknowledgeInterrupt(_ interrupt: UInt32, vcpu: Int) { acknowledged.append(interrupt) }
    var uartBytes: [UInt8] = []
    mutating func uartWrite(_ byte: UInt8) { uartBytes.append(byte) }
}

/// ESR_EL2 for a stage-2 data abort from a lower EL with a valid syndrome (EC 0x24, IL 1, ISV 1).
func dataAbortSyndrome(size: Int, register: Int, write: Bool, signExtend: Bool = false,
                       sixtyFour: Bool = false) -> ExceptionSyndrome {
    let sas: UInt64 = size == 1 ? 0 : size == 2 ? 1 : size == 4 ? 2 : 3
    var esr: UInt64 = (0x24 << 26) | (1 << 25) | (1 << 24) | (sas << 22) | (UInt64(register) << 16) | 0x07
    if signExtend { esr |= 1 << 21 }
    if sixtyFour { esr |= 1 << 15 }
    if write { esr |= 1 << 6 }
    return ExceptionSyndrome(esr)
}

final class VirtualMachineTests: XCTestCase {
    var ram: UnsafeMutableRawPointer!
    var vm: VirtualMachine!
    var platform = RecordingPlatform()
    var registers = RegisterFile()
    let gicd = GuestPhysicalAddress(0x0800_0000)

    override func setUp() {
        ram = UnsafeMutableRawPointer.allocate(byteCount: 0x10000, alignment: 4096)
        let memory = GuestMemory(base: GuestPhysicalAddress(0x4000_0000), size: 0x10000, host: ram)
        vm = VirtualMachine(memory: memory, vcpuCount: 1, listRegisterCount: 4,
                            routes: [InterruptRoute(physical: 27, virtual: 27), InterruptRoute(physical: 33, virtual: 33)])
        registers = RegisterFile()
        registers.pc = 0xffff_8000_1000_0000
        platform = RecordingPlatform()
    }

    override func tearDown() { ram.deallocate() }

    func fault(_ syndrome: ExceptionSyndrome, at address: GuestPhysicalAddress) -> VCPUAction {
        vm.fault(vcpu: 0, syndrome: syndrome, address: address, registers: &registers, platform: &platform)
    }

    func testDistributorReadLandsInTheTargetRegisterAndStepsOverTheLoad() {
        // ldr w5, [x0, #4]  (GICD_TYPER): ITLinesNumber 2 for 96 interrupts, CPUNumber 0.
        registers.write(5, 0xdead_beef_dead_beef)
        XCTAssertEqual(fault(dataAbortSyndrome(size: 4, register: 5, write: false), at: gicd.adding(4)!), .resume)
        XCTAssertEqual(registers.read(5), 0x2)
        XCTAssertEqual(registers.pc, 0xffff_8000_1000_0004)
    }

    func testDistributorWriteFromTheZeroRegisterWritesZero() {
        // str w1, [x0, #0x100]: enable SPI... then str wzr to GICD_CTLR disables the distributor.
        registers.write(1, 1)
        XCTAssertEqual(fault(dataAbortSyndrome(size: 4, register: 1, write: true), at: gicd), .resume)
        XCTAssertEqual(vm.vgic.distributorRead(vcpu: 0, offset: 0, width: 4), 1)
        XCTAssertEqual(fault(dataAbortSyndrome(size: 4, register: 31, write: true), at: gicd), .resume)
        XCTAssertEqual(vm.vgic.distributorRead(vcpu: 0, offset: 0, width: 4), 0)
    }

    func testByteWriteToPriorityRegisterIsTruncatedToTheAccessSize() {
        // strb w2, [x0, #0x421]: IPRIORITYR byte of INTID 33; only the low byte of w2 is stored.
        registers.write(2, 0xffff_ffa0)
        _ = fault(dataAbortSyndrome(size: 1, register: 2, write: true), at: gicd.adding(0x421)!)
        XCTAssertEqual(vm.vgic.distributorRead(vcpu: 0, offset: 0x420, width: 4), 0x0000_a000)
    }

    func testAccessNobodyEmulatesStopsTheGuestWithPCSyndromeAndAddress() {
        let syndrome = dataAbortSyndrome(size: 4, register: 0, write: false)
        let action = fault(syndrome, at: GuestPhysicalAddress(0x0a00_0000))
        XCTAssertEqual(action, .stop(GuestStopReport(reason: .unhandledMemoryAccess, vcpu: 0,
                                                      pc: 0xffff_8000_1000_0000, syndrome: syndrome.raw,
                                                      address: 0x0a00_0000)))
        XCTAssertEqual(registers.pc, 0xffff_8000_1000_0000, "a stopped guest's PC is not advanced")
    }

    func testAccessStraddlingTheEndOfTheDistributorIsRefused() {
        let action = fault(dataAbortSyndrome(size: 8, register: 0, write: false), at: gicd.adding(0xfffc)!)
        guard case .stop(let report) = action else { return XCTFail("expected a stop, got \(action)") }
        XCTAssertEqual(report.reason, .unhandledMemoryAccess)
    }

    func testAbortWithoutSyndromeStopsTheGuest() {
        // ISV = 0 (e.g. a load pair): the VMM cannot know the register, so it refuses.
        let action = fault(ExceptionSyndrome((0x24 << 26) | (1 << 25) | 0x07), at: gicd)
        guard case .stop(let report) = action else { return XCTFail("expected a stop, got \(action)") }
        XCTAssertEqual(report.reason, .accessWithoutSyndrome)
    }

    func testPSCIVersionOverHVCRepliesInX0WithoutMovingThePC() {
        registers.write(0, 0x8400_0000)
        XCTAssertEqual(fault(ExceptionSyndrome((0x16 << 26) | (1 << 25)), at: GuestPhysicalAddress(0)), .resume)
        XCTAssertEqual(registers.read(0), 0x0001_0001)
        XCTAssertEqual(registers.pc, 0xffff_8000_1000_0000)
    }

    func testUnknownFunctionOverSMCIsNotSupportedAndStepsOverTheSMC() {
        registers.write(0, 0xc200_0042)
        XCTAssertEqual(fault(ExceptionSyndrome((0x17 << 26) | (1 << 25)), at: GuestPhysicalAddress(0)), .resume)
        XCTAssertEqual(registers.read(0), UInt64(bitPattern: -1))
        XCTAssertEqual(registers.pc, 0xffff_8000_1000_0004)
    }

    func testCPUOnStartsAVCPUOnlyInsideGuestRAMAndCPUOffLetsGoOfItsInterrupts() {
        let memory = GuestMemory(base: GuestPhysicalAddress(0x4000_0000), size: 0x10000, host: ram)
        vm = VirtualMachine(memory: memory, vcpuCount: 2, listRegisterCount: 4,
                            routes: [InterruptRoute(physical: 27, virtual: 27)])
        let hvc = ExceptionSyndrome((0x16 << 26) | (1 << 25))
        registers.write(0, 0xC400_0003); registers.write(1, 1); registers.write(2, 0x4001_0000); registers.write(3, 5)
        XCTAssertEqual(fault(hvc, at: GuestPhysicalAddress(0)), .resume, "the entry is one past guest RAM")
        XCTAssertEqual(registers.read(0), PSCIReturn.invalidAddress.registerValue)
        registers.write(0, 0xC400_0003); registers.write(2, 0x4000_fffc)
        XCTAssertEqual(fault(hvc, at: GuestPhysicalAddress(0)), .startVCPU(target: 1, entry: 0x4000_fffc, context: 5))
        XCTAssertEqual(registers.read(0), 0)
        // vCPU 1's timer is in one of its list registers when it turns itself off.
        vm.vgic.distributorWrite(vcpu: 0, offset: 0, width: 4, value: 1, sink: &platform)
        vm.vgic.distributorWrite(vcpu: 1, offset: 0x100, width: 4, value: 1 << 27, sink: &platform)
        vm.notified(interrupt: 27, vcpu: 1, platform: &platform)
        XCTAssertEqual(vm.vgic.listRegister(vcpu: 1, index: 0)?.interrupt, 27)
        var off = RegisterFile()
        off.write(0, 0x8400_0002)
        XCTAssertEqual(vm.fault(vcpu: 1, syndrome: hvc, address: GuestPhysicalAddress(0), registers: &off,
                                platform: &platform), .stopVCPU)
        vm.vcpuStopped(vcpu: 1, platform: &platform)
        XCTAssertNil(vm.vgic.listRegister(vcpu: 1, index: 0))
        XCTAssertEqual(platform.acknowledged, [27], "its physical timer line is let through again")
        XCTAssertEqual(vm.psci.affinityState(ofVCPU: 1), .off)
    }

    func testAVMWithoutTheBoardsUARTTalksThroughItsEmulatedPL011() {
        let memory = GuestMemory(base: GuestPhysicalAddress(0x4000_0000), size: 0x10000, host: ram)
        vm = VirtualMachine(memory: memory, vcpuCount: 1, listRegisterCount: 4,
                            routes: [InterruptRoute(physical: 27, virtual: 27)], emulatedUART: true)
        let uart = GuestPhysicalAddress(QEMUVirtBoard.uart)
        func store(_ offset: UInt64, _ value: UInt64) {
            registers.write(1, value)
            XCTAssertEqual(fault(dataAbortSyndrome(size: 4, register: 1, write: true), at: GuestPhysicalAddress(uart.raw + offset)), .resume)
        }
        func load(_ offset: UInt64) -> UInt64 {
            XCTAssertEqual(fault(dataAbortSyndrome(size: 4, register: 2, write: false), at: GuestPhysicalAddress(uart.raw + offset)), .resume)
            return registers.read(2)
        }
        XCTAssertEqual(load(0xFE0), 0x11, "PeriphID0: an AMBA PL011")
        store(0x000, 0x68)
        store(0x000, 0x69)
        XCTAssertEqual(platform.uartBytes, [0x68, 0x69])
        // The guest enables the distributor, SPI 1 and the receive interrupt; a byte arrives.
        vm.vgic.distributorWrite(vcpu: 0, offset: 0, width: 4, value: 1, sink: &platform)
        vm.vgic.distributorWrite(vcpu: 0, offset: 0x104, width: 4, value: 1 << 1, sink: &platform)
        store(0x038, 1 << 4)                                                  // IMSC.RXIM
        XCTAssertTrue(platform.listRegisters.isEmpty)
        let taken = [UInt8(0x61)].withUnsafeBytes { vm.uartReceived(input: $0, platform: &platform) }
        XCTAssertEqual(taken, 1)
        XCTAssertEqual(platform.listRegisters.map(\.entry.interrupt), [33])
        // Its handler runs but leaves the byte unread: at EOI the level is still high, so it comes again.
        vm.maintenance(vcpu: 0, listRegister: 0, platform: &platform)
        XCTAssertEqual(platform.listRegisters.map(\.entry.interrupt), [33, 33])
        XCTAssertEqual(load(0x000) & 0xFF, 0x61)
        vm.maintenance(vcpu: 0, listRegister: 0, platform: &platform)
        XCTAssertEqual(platform.listRegisters.count, 2, "read: the line is low, nothing more")
    }

    func testInputLongerThanThePL011sFIFOWaitsAndArrivesWhole() {
        let memory = GuestMemory(base: GuestPhysicalAddress(0x4000_0000), size: 0x10000, host: ram)
        vm = VirtualMachine(memory: memory, vcpuCount: 1, listRegisterCount: 4, routes: [], emulatedUART: true)
        let uart = QEMUVirtBoard.uart
        func access(_ offset: UInt64, write: Bool, _ value: UInt64 = 0) -> UInt64 {
            registers.write(3, value)
            XCTAssertEqual(fault(dataAbortSyndrome(size: 4, register: 3, write: write), at: GuestPhysicalAddress(uart + offset)), .resume)
            return registers.read(3)
        }
        _ = access(0x02C, write: true, 1 << 4)                                // LCR_H.FEN: the 32-byte FIFO
        let line = Array("ip addr add 10.0.9.2/24 dev eth0 && ip link set eth0 up\n".utf8)
        XCTAssertEqual(line.withUnsafeBytes { vm.uartReceived(input: $0, platform: &platform) }, line.count)
        var read: [UInt8] = []
        while access(0x018, write: false) & (1 << 4) == 0 {                   // FR.RXFE clear
            read.append(UInt8(truncatingIfNeeded: access(0x000, write: false)))
        }
        XCTAssertEqual(read, line)
        let flood = [UInt8](repeating: 0x41, count: VirtualMachine.uartBacklogLimit + 100)
        XCTAssertEqual(flood.withUnsafeBytes { vm.uartReceived(input: $0, platform: &platform) },
                       VirtualMachine.uartBacklogLimit, "what does not fit is dropped, not held without bound")
    }

    func testAVMThatOwnsTheBoardsUARTHasNoEmulatedOne() {
        XCTAssertNil(vm.uart)
        registers.write(1, 0x41)
        guard case .stop(let report) = fault(dataAbortSyndrome(size: 4, register: 1, write: true),
                                             at: GuestPhysicalAddress(QEMUVirtBoard.uart)) else {
            return XCTFail("a trapped UART access with no emulated UART stops the guest")
        }
        XCTAssertEqual(report.reason, .unhandledMemoryAccess)
    }

    func testSystemOffAndResetBecomeActions() {
        registers.write(0, 0x8400_0008)
        XCTAssertEqual(fault(ExceptionSyndrome((0x16 << 26) | (1 << 25)), at: GuestPhysicalAddress(0)), .powerOff)
        registers.write(0, 0x8400_0009)
        XCTAssertEqual(fault(ExceptionSyndrome((0x16 << 26) | (1 << 25)), at: GuestPhysicalAddress(0)), .reset)
    }

    func testTrappedWFIWaitsAndStepsOverTheInstruction() {
        XCTAssertEqual(fault(ExceptionSyndrome((0x01 << 26) | (1 << 25)), at: GuestPhysicalAddress(0)), .waitForInterrupt)
        XCTAssertEqual(registers.pc, 0xffff_8000_1000_0004)
        XCTAssertEqual(fault(ExceptionSyndrome((0x01 << 26) | (1 << 25) | 1), at: GuestPhysicalAddress(0)), .resume)
    }

    func testUnknownExceptionClassStopsTheGuest() {
        let action = fault(ExceptionSyndrome(0x3f << 26), at: GuestPhysicalAddress(0))
        guard case .stop(let report) = action else { return XCTFail("expected a stop, got \(action)") }
        XCTAssertEqual(report.reason, .unknownException)
    }

    /// Guest enables the distributor and the timer PPI, as Linux's GIC driver does.
    func enableDistributorAndTimer() {
        vm.vgic.distributorWrite(vcpu: 0, offset: 0x000, width: 4, value: 1, sink: &platform)
        vm.vgic.distributorWrite(vcpu: 0, offset: 0x100, width: 4, value: 1 << 27, sink: &platform)
    }

    func testPhysicalTimerInterruptIsInjectedAndAcknowledgedOnlyAfterTheGuestDeactivatesIt() {
        enableDistributorAndTimer()
        vm.notified(interrupt: 27, vcpu: 0, platform: &platform)
        XCTAssertEqual(platform.listRegisters.count, 1)
        XCTAssertEqual(platform.listRegisters.first?.entry.interrupt, 27)
        XCTAssertEqual(platform.acknowledged, [], "the physical line stays masked while the guest handles it")
        vm.maintenance(vcpu: 0, listRegister: platform.listRegisters[0].index, platform: &platform)
        XCTAssertEqual(platform.acknowledged, [27])
    }

    func testInterruptWithoutRouteIsAcknowledgedAndDropped() {
        enableDistributorAndTimer()
        vm.notified(interrupt: 40, vcpu: 0, platform: &platform)
        XCTAssertEqual(platform.listRegisters.count, 0)
        XCTAssertEqual(platform.acknowledged, [40])
    }

    func testMaintenanceForAnEmptyOrBogusListRegisterDoesNothing() {
        vm.maintenance(vcpu: 0, listRegister: 3, platform: &platform)
        vm.maintenance(vcpu: 0, listRegister: 99, platform: &platform)
        vm.maintenance(vcpu: 7, listRegister: 0, platform: &platform)
        XCTAssertEqual(platform.acknowledged, [])
        XCTAssertEqual(platform.listRegisters.count, 0)
    }
}
