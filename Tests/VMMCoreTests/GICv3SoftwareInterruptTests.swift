// Tests of SGIs a GICv3 guest sends through ICC_SGI1R_EL1 and its kin (ARM IHI 0069 §12.2): target
// lists with Aff1 (vCPUs past 15), IRM, range selector and Aff2/Aff3 that name nobody, group rules,
// and the trapped MSR as VirtualMachine handles it.

import XCTest
@testable import VMMCore

final class GICv3SoftwareInterruptTests: XCTestCase {
    /// ICC_SGI1R_EL1: INTID [27:24], Aff1 [23:16], TargetList [15:0], IRM [40], RS [47:44], Aff2, Aff3.
    static func sgi1r(_ sgi: UInt64, targets: UInt64, aff1: UInt64 = 0, aff2: UInt64 = 0, aff3: UInt64 = 0,
                      rs: UInt64 = 0, irm: Bool = false) -> UInt64 {
        sgi << 24 | aff1 << 16 | targets | aff2 << 32 | (irm ? 1 << 40 : 0) | rs << 44 | aff3 << 48
    }

    func enabled(vcpus: Int) -> (VGIC, RecordingInterruptSink) {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3(vcpus: vcpus)
        gic.distributor(0x0000, 0x13, &sink)
        return (gic, sink)
    }

    func testTargetListNamesVCPUsByAff0() {
        var (gic, sink) = enabled(vcpus: 4)
        XCTAssertTrue(gic.sendSoftwareInterrupt(from: 0, register: .group1, value: Self.sgi1r(5, targets: 0b0110), sink: &sink))
        XCTAssertEqual(sink.writes.map(\.vcpu), [1, 2])
        XCTAssertEqual(sink.writes.map(\.entry), [ListRegisterEntry(interrupt: 5, priority: 0, group1: true),
                                                  ListRegisterEntry(interrupt: 5, priority: 0, group1: true)])
    }

    func testAff1ReachesVCPUsPastFifteen() {
        var (gic, sink) = enabled(vcpus: 40)
        gic.sendSoftwareInterrupt(from: 0, register: .group1, value: Self.sgi1r(1, targets: 0b1000_0010, aff1: 1), sink: &sink)
        gic.sendSoftwareInterrupt(from: 0, register: .group1, value: Self.sgi1r(2, targets: 1 << 7, aff1: 2), sink: &sink)
        XCTAssertEqual(sink.writes.map(\.vcpu), [17, 23, 39])
        XCTAssertEqual(sink.writes.map(\.entry.interrupt), [1, 1, 2])
    }

    func testIRMSendsToEveryVCPUButTheSender() {
        var (gic, sink) = enabled(vcpus: 18)
        gic.sendSoftwareInterrupt(from: 16, register: .group1, value: Self.sgi1r(0, targets: 0xFFFF, aff1: 7, irm: true),
                                  sink: &sink)
        XCTAssertEqual(sink.writes.map(\.vcpu), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17])
    }

    func testAffinitiesWithNoVCPUBehindThemAreSkipped() {
        var (gic, sink) = enabled(vcpus: 20)
        for value in [Self.sgi1r(1, targets: 0xFFFF, rs: 1), Self.sgi1r(1, targets: 0xFFFF, aff2: 1),
                      Self.sgi1r(1, targets: 0xFFFF, aff3: 1), Self.sgi1r(1, targets: 0xFFFF, aff1: 2),
                      Self.sgi1r(1, targets: 0)] {
            gic.sendSoftwareInterrupt(from: 0, register: .group1, value: value, sink: &sink)
        }
        XCTAssertEqual(sink.writes, [])
        gic.sendSoftwareInterrupt(from: 0, register: .group1, value: Self.sgi1r(1, targets: 0xFFFF, aff1: 1), sink: &sink)
        XCTAssertEqual(sink.writes.map(\.vcpu), [16, 17, 18, 19], "Aff0 0-3 of cluster 1 exist")
    }

    func testAnSGIPendingTwiceOccupiesOneListRegister() {
        var (gic, sink) = enabled(vcpus: 2)
        for _ in 0..<3 { gic.sendSoftwareInterrupt(from: 0, register: .group1, value: Self.sgi1r(4, targets: 0b10), sink: &sink) }
        XCTAssertEqual(sink.writes.count, 1, "no source CPU on GICv3: one pending state per SGI and target")
        XCTAssertEqual(gic.overflowCount(vcpu: 1), 0)
        XCTAssertEqual(gic.listRegisterFreed(vcpu: 1, index: 0, sink: &sink), 4)
        XCTAssertEqual(sink.writes.count, 2, "raised again while held: delivered again once deactivated")
    }

    func testGroup0RegistersRaiseOnlyGroup0SGIs() {
        var (gic, sink) = enabled(vcpus: 2)
        gic.sendSoftwareInterrupt(from: 0, register: .group0, value: Self.sgi1r(2, targets: 0b10), sink: &sink)
        gic.sendSoftwareInterrupt(from: 0, register: .alternateGroup1, value: Self.sgi1r(2, targets: 0b10), sink: &sink)
        XCTAssertEqual(sink.writes, [], "SGI 2 is group 1 at vCPU 1")
        gic.redistributor(0x3_0080, 0xFFFF_FFFB, &sink)   // SGI 2 to group 0
        gic.sendSoftwareInterrupt(from: 0, register: .group0, value: Self.sgi1r(2, targets: 0b10), sink: &sink)
        XCTAssertEqual(sink.writes.map(\.entry), [ListRegisterEntry(interrupt: 2, priority: 0, group1: false)])
    }

    func testADisabledSGIStaysPendingUntilEnabled() {
        var (gic, sink) = enabled(vcpus: 2)
        gic.redistributor(0x3_0180, 1 << 6, &sink)         // ICENABLER0: SGI 6 of vCPU 1
        gic.sendSoftwareInterrupt(from: 0, register: .group1, value: Self.sgi1r(6, targets: 0b10), sink: &sink)
        XCTAssertEqual(sink.writes, [])
        XCTAssertEqual(gic.redistributor(0x3_0200), 1 << 6)
        gic.redistributor(0x3_0100, 1 << 6, &sink)
        XCTAssertEqual(sink.writes.map(\.entry.interrupt), [6])
    }

    func testHostileSendersAndGICv2AreRefused() {
        var (gic, sink) = enabled(vcpus: 2)
        XCTAssertFalse(gic.sendSoftwareInterrupt(from: -1, register: .group1, value: Self.sgi1r(1, targets: 1), sink: &sink))
        XCTAssertFalse(gic.sendSoftwareInterrupt(from: 2, register: .group1, value: UInt64.max, sink: &sink))
        XCTAssertTrue(gic.sendSoftwareInterrupt(from: 1, register: .group1, value: UInt64.max, sink: &sink))
        XCTAssertEqual(sink.writes.map(\.vcpu), [0], "IRM set: everyone but the sender")
        var v2 = VGIC(vcpuCount: 2)
        XCTAssertFalse(v2.sendSoftwareInterrupt(from: 0, register: .group1, value: Self.sgi1r(1, targets: 3), sink: &sink))
    }
}

/// The trapped MSR as the machine handles it.
final class SystemRegisterExitTests: XCTestCase {
    var ram: UnsafeMutableRawPointer!
    var platform = RecordingPlatform()
    var registers = RegisterFile()

    override func setUp() {
        ram = UnsafeMutableRawPointer.allocate(byteCount: 0x10000, alignment: 4096)
        registers = RegisterFile()
        registers.pc = 0xffff_8000_1000_0000
        platform = RecordingPlatform()
    }

    override func tearDown() { ram.deallocate() }

    func machine(_ version: GICVersion, vcpus: Int = 2) -> VirtualMachine {
        let memory = GuestMemory(base: GuestPhysicalAddress(0x4000_0000), size: 0x10000, host: ram)
        return VirtualMachine(memory: memory, vcpuCount: vcpus, listRegisterCount: 4, routes: [], gicVersion: version)
    }

    /// ESR_EL2 of a trapped MSR/MRS (EC 0x18, IL 1): Op0 [21:20], Op2 [19:17], Op1 [16:14],
    /// CRn [13:10], Rt [9:5], CRm [4:1], Direction [0] (1 = MRS).
    static func msr(op0: UInt64 = 3, op1: UInt64 = 0, crn: UInt64 = 12, crm: UInt64 = 11, op2: UInt64,
                    rt: UInt64, read: Bool = false) -> ExceptionSyndrome {
        ExceptionSyndrome(0x18 << 26 | 1 << 25 | op0 << 20 | op2 << 17 | op1 << 14 | crn << 10 | rt << 5 | crm << 1
                          | (read ? 1 : 0))
    }

    func testSGI1RWriteRaisesTheSGIAndStepsOverTheMSR() {
        var vm = machine(.v3)
        vm.vgic.distributorWrite(vcpu: 0, offset: 0, width: 4, value: 0x13, sink: &platform)
        registers.write(2, GICv3SoftwareInterruptTests.sgi1r(3, targets: 0b10))
        let syndrome = Self.msr(op2: 5, rt: 2)
        XCTAssertEqual(GuestExit(syndrome: syndrome, address: GuestPhysicalAddress(0)).highestRegister, 2)
        let action = vm.fault(vcpu: 0, syndrome: syndrome, address: GuestPhysicalAddress(0), registers: &registers,
                              platform: &platform)
        XCTAssertEqual(action, .resume)
        XCTAssertEqual(registers.pc, 0xffff_8000_1000_0004)
        XCTAssertEqual(vm.vgic.listRegister(vcpu: 1, index: 0), ListRegisterEntry(interrupt: 3, priority: 0, group1: true))
    }

    func testSGI0RAndASGI1RAreHandledToo() {
        var vm = machine(.v3)
        for op2: UInt64 in [6, 7] {
            let action = vm.fault(vcpu: 0, syndrome: Self.msr(op2: op2, rt: 31), address: GuestPhysicalAddress(0),
                                  registers: &registers, platform: &platform)
            XCTAssertEqual(action, .resume)
        }
        XCTAssertEqual(registers.pc, 0xffff_8000_1000_0008)
    }

    func testOnGICv2TheSGIRegistersStayUnhandled() {
        var vm = machine(.v2)
        let syndrome = Self.msr(op2: 5, rt: 2)
        let action = vm.fault(vcpu: 0, syndrome: syndrome, address: GuestPhysicalAddress(0), registers: &registers,
                              platform: &platform)
        XCTAssertEqual(action, .stop(GuestStopReport(reason: .unhandledSystemRegister, vcpu: 0, pc: 0xffff_8000_1000_0000,
                                                     syndrome: syndrome.raw, address: 0)))
    }

    func testReadsOfSGI1RAndOtherRegistersStopTheGuest() {
        var vm = machine(.v3)
        for syndrome in [Self.msr(op2: 5, rt: 2, read: true),        // MRS of a write-only register
                         Self.msr(crn: 0, crm: 0, op2: 5, rt: 1, read: true),   // MPIDR_EL1
                         Self.msr(crm: 12, op2: 5, rt: 0)] {         // ICC_SRE_EL1
            guard case .stop(let report) = vm.fault(vcpu: 0, syndrome: syndrome, address: GuestPhysicalAddress(0),
                                                    registers: &registers, platform: &platform)
            else { return XCTFail("not stopped") }
            XCTAssertEqual(report.reason, .unhandledSystemRegister)
        }
        XCTAssertEqual(registers.pc, 0xffff_8000_1000_0000)
    }

    func testRedistributorMMIOReachesTheController() {
        var vm = machine(.v3, vcpus: 2)
        // ldr x3, [GICR frame 1 + GICR_TYPER]
        let syndrome = dataAbortSyndrome(size: 8, register: 3, write: false, sixtyFour: true)
        let action = vm.fault(vcpu: 0, syndrome: syndrome, address: GuestPhysicalAddress(0x080C_0008),
                              registers: &registers, platform: &platform)
        XCTAssertEqual(action, .resume)
        XCTAssertEqual(registers.read(3), 0x0000_0001_0000_0110)
        // Past the last vCPU's frame, still inside QEMU virt's region: zero, not a stop.
        XCTAssertEqual(vm.fault(vcpu: 0, syndrome: syndrome, address: GuestPhysicalAddress(0x08FF_FFF8),
                                registers: &registers, platform: &platform), .resume)
        XCTAssertEqual(registers.read(3), 0)
        // A GICv2 machine has no redistributor region.
        var v2 = machine(.v2)
        guard case .stop = v2.fault(vcpu: 0, syndrome: syndrome, address: GuestPhysicalAddress(0x080C_0008),
                                    registers: &registers, platform: &platform) else { return XCTFail("not stopped") }
    }

    func testAGICv3DistributorIROUTERTakesA64BitStore() {
        var vm = machine(.v3, vcpus: 2)
        registers.write(4, 0x0000_0001_8000_0001)
        let store = dataAbortSyndrome(size: 8, register: 4, write: true, sixtyFour: true)
        XCTAssertEqual(vm.fault(vcpu: 0, syndrome: store, address: GuestPhysicalAddress(0x0800_6100),
                                registers: &registers, platform: &platform), .resume)
        XCTAssertEqual(vm.vgic.distributorRead(vcpu: 0, offset: 0x6100, width: 8), 0x0000_0001_8000_0001)
    }
}
