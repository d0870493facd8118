// Tests of the emulated GICv3 distributor, played as a Linux guest would program it: register
// values from ARM IHI 0069 §12.9 (and this model's stated choices), affinity routing through
// GICD_IROUTER, and the list-register entries that enabling or raising an SPI causes.

import XCTest
@testable import VMMCore

extension VGIC {
    /// A GICv3 with `vcpus` vCPUs, 64 SPIs and four list registers.
    static func v3(vcpus: Int = 2, spis: Int = 64) -> VGIC {
        VGIC(version: .v3, vcpuCount: vcpus, spiCount: spis, listRegisterCount: 4)
    }

    mutating func distributor(_ offset: UInt64, width: Int = 4, vcpu: Int = 0) -> UInt64 {
        distributorRead(vcpu: vcpu, offset: offset, width: width)
    }

    mutating func distributor(_ offset: UInt64, _ value: UInt64, width: Int = 4, vcpu: Int = 0,
                              _ sink: inout RecordingInterruptSink) {
        distributorWrite(vcpu: vcpu, offset: offset, width: width, value: value, sink: &sink)
    }

    /// Linux's gic_dist_init, reduced: groups enabled with ARE_NS | EnableGrp1A | EnableGrp1, and
    /// SPIs `irqs` enabled at priority 0xA0 (the IROUTERs keep their reset value, vCPU 0).
    static func v3Enabled(vcpus: Int = 2, spis irqs: [UInt32], _ sink: inout RecordingInterruptSink) -> VGIC {
        var gic = VGIC.v3(vcpus: vcpus)
        gic.distributor(0x0000, 0x13, &sink)
        for irq in irqs {
            gic.distributor(0x0400 + UInt64(irq), 0xA0, width: 1, &sink)
            gic.distributor(0x0100 + UInt64(irq / 32) * 4, UInt64(1) << UInt64(irq % 32), &sink)
        }
        return gic
    }
}

final class GICv3DistributorTests: XCTestCase {
    func testResetAndIdentificationValues() {
        var gic = VGIC.v3(vcpus: 4)
        XCTAssertEqual(gic.distributor(0x0000), 0x50, "GICD_CTLR: groups disabled, ARE [4] and DS [6] read 1")
        // ITLinesNumber 2 (96 INTIDs), CPUNumber 3, IDbits 9 [23:19], A3V [24]; no LPIs, no MBIS.
        XCTAssertEqual(gic.distributor(0x0004), 0x0148_0062)
        XCTAssertEqual(gic.distributor(0x0008), 0x43B, "GICD_IIDR: implementer ARM")
        XCTAssertEqual(gic.distributor(0x000C), 0, "GICD_TYPER2")
        XCTAssertEqual(gic.distributor(0xFFE8), 0x3B, "PIDR2: ArchRev 3")
        XCTAssertEqual([0xFFD0, 0xFFE0, 0xFFE4, 0xFFEC].map { gic.distributor($0) }, [0x44, 0x92, 0xB4, 0x00])
        XCTAssertEqual([0xFFF0, 0xFFF4, 0xFFF8, 0xFFFC].map { gic.distributor($0) }, [0x0D, 0xF0, 0x05, 0xB1])
        XCTAssertEqual(gic.distributor(0x0084), 0xFFFF_FFFF, "SPIs reset to group 1")
        XCTAssertEqual(gic.distributor(0x0104), 0, "SPIs reset disabled")
        XCTAssertEqual(gic.distributor(0x6100, width: 8), 0, "IROUTER32 resets to affinity 0.0.0.0")
    }

    func testTyperCountsLargeMachinesWithoutOverflowingCPUNumber() {
        var gic = VGIC.v3(vcpus: 64, spis: 988)
        XCTAssertEqual(gic.vcpuCount, 64)
        XCTAssertEqual(gic.distributor(0x0004) & 0xFF, 0xFF, "ITLinesNumber 31, CPUNumber 7")
        var clamped = VGIC(version: .v3, vcpuCount: 10_000)
        XCTAssertEqual(clamped.vcpuCount, PSCI.maximumVCPUs)
        XCTAssertEqual(clamped.distributor(0xFFE8), 0x3B)
    }

    func testControlKeepsTheGroupEnablesAndAREReadsAsOne() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3()
        gic.distributor(0x0000, 0xFFFF_FFFF, &sink)
        XCTAssertEqual(gic.distributor(0x0000), 0x53, "RWP [31] reads 0: writes take effect at once")
        gic.distributor(0x0000, 0, &sink)
        XCTAssertEqual(gic.distributor(0x0000), 0x50, "ARE cannot be cleared")
    }

    func testPrivateInterruptWordsAreRAZWIWithAffinityRouting() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3()
        for offset: UInt64 in [0x0080, 0x0100, 0x0180, 0x0200, 0x0280, 0x0300, 0x0380, 0x0400, 0x041C, 0x0C00, 0x0C04] {
            gic.distributor(offset, 0xFFFF_FFFF, &sink)
            XCTAssertEqual(gic.distributor(offset), 0, "offset \(offset)")
        }
        XCTAssertEqual(gic.distributor(0x041B, width: 1), 0)
        XCTAssertEqual(gic.redistributor(0x1_0100), 0x0000_FFFF, "the redistributor's enables are untouched")
        XCTAssertEqual(gic.redistributor(0x1_0080), 0xFFFF_FFFF, "and its groups")
        XCTAssertEqual(sink.writes, [])
    }

    func testLegacyAndSecureOnlyRegistersAreRAZWI() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3Enabled(spis: [33], &sink)
        // STATUSR, SETSPI_NSR, ITARGETSR8, SGIR, CPENDSGIR, SPENDSGIR, IGRPMODR1, NSACR2, INMIR, reserved.
        for offset: UInt64 in [0x0010, 0x0040, 0x0820, 0x0F00, 0x0F10, 0x0F20, 0x0D04, 0x0E08, 0x0F80, 0x1000, 0x6000, 0x8000] {
            gic.distributor(offset, 0xFFFF_FFFF, &sink)
            XCTAssertEqual(gic.distributor(offset), 0, "offset \(offset)")
        }
        XCTAssertEqual(sink.writes, [], "GICD_SGIR raises nothing with ARE = 1")
        XCTAssertEqual(gic.distributor(0x0000), 0x53)
    }

    func testAnEnabledPendingSPIReachesAListRegisterAsGroup1() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3Enabled(spis: [33], &sink)
        gic.distributor(0x0204, 1 << 1, &sink)             // ISPENDR1: INTID 33
        let entry = ListRegisterEntry(interrupt: 33, priority: 0xA0, group1: true)
        XCTAssertEqual(sink.writes, [.init(vcpu: 0, index: 0, entry: entry)])
        XCTAssertEqual(entry.ichValue, 0x50A0_0200_0000_0021)
        XCTAssertEqual(gic.distributor(0x0204), 0, "its pending state now lives in the list register")
    }

    func testAGroup0SPIWaitsForEnableGrp0() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3()
        gic.distributor(0x0084, ~UInt64(1 << 1) & 0xFFFF_FFFF, &sink)   // INTID 33 to group 0
        XCTAssertEqual(gic.distributor(0x0084), 0xFFFF_FFFD)
        gic.distributor(0x0000, 0x2, &sink)                // EnableGrp1 only
        gic.distributor(0x0104, 1 << 1, &sink)
        gic.distributor(0x0204, 1 << 1, &sink)
        XCTAssertEqual(sink.writes, [])
        gic.distributor(0x0000, 0x3, &sink)
        XCTAssertEqual(sink.writes.map(\.entry), [ListRegisterEntry(interrupt: 33, priority: 0, group1: false)])
    }

    func testMovingAQueuedSPIToADisabledGroupSendsItBackToPending() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3Enabled(spis: [33, 34, 35, 36, 37], &sink)
        gic.distributor(0x0204, 0b11_1110, &sink)          // five pending, four list registers
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 1)
        gic.distributor(0x0000, 0x2, &sink)                // EnableGrp1 only
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 1)
        gic.distributor(0x0084, 0, &sink)                  // all SPIs to group 0, which is disabled
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 0)
        XCTAssertTrue(gic.isPending(vcpu: 0, interrupt: 37))
    }

    func testAccessWidths() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3()
        gic.distributor(0x0421, 0xFF, width: 1, &sink)     // IPRIORITYR byte of INTID 33
        XCTAssertEqual(gic.distributor(0x0420), 0x0000_F800, "five priority bits implemented")
        XCTAssertEqual(gic.distributor(0x0421, width: 1), 0xF8)
        // Halfwords, misaligned words and 64-bit accesses to 32-bit registers are RAZ/WI.
        gic.distributor(0x0104, 0xFFFF, width: 2, &sink)
        gic.distributor(0x0106, 0xFFFF_FFFF, &sink)
        gic.distributor(0x0104, 0xFFFF_FFFF_FFFF_FFFF, width: 8, &sink)
        XCTAssertEqual(gic.distributor(0x0104), 0)
        XCTAssertEqual(gic.distributor(0x0004, width: 8), 0)
        XCTAssertEqual(gic.distributor(0x0004, width: 2), 0)
        XCTAssertEqual(gic.distributor(0x0000, width: 1), 0)
        // IROUTER: 64-bit, or either 32-bit half; never misaligned, never bytes.
        gic.distributor(0x6108, 0x0000_0001_0000_0203, width: 8, &sink)
        XCTAssertEqual(gic.distributor(0x6108, width: 8), 0x0000_0001_0000_0203)
        XCTAssertEqual(gic.distributor(0x6108), 0x0000_0203)
        XCTAssertEqual(gic.distributor(0x610C), 0x0000_0001)
        gic.distributor(0x610C, 0, &sink)
        XCTAssertEqual(gic.distributor(0x6108, width: 8), 0x0000_0203, "the high half alone")
        gic.distributor(0x6108, 0x0001, &sink)
        XCTAssertEqual(gic.distributor(0x6108, width: 8), 0x0001, "the low half alone")
        gic.distributor(0x610C, 0xFFFF_FFFF_FFFF, width: 8, &sink)
        gic.distributor(0x6109, 0xFF, width: 1, &sink)
        XCTAssertEqual(gic.distributor(0x610C, width: 8), 0)
        XCTAssertEqual(gic.distributor(0x6108, width: 8), 0x0001)
    }

    func testRouterKeepsOnlyItsFieldsAndExistsOnlyForImplementedSPIs() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3()                                 // INTIDs 0..<96
        gic.distributor(0x6100, UInt64.max, width: 8, &sink)
        XCTAssertEqual(gic.distributor(0x6100, width: 8), 0x0000_00FF_80FF_FFFF, "Aff3, IRM, Aff2..Aff0; the rest RES0")
        let past = 0x6000 + 8 * UInt64(96)
        gic.distributor(past, 0x1, width: 8, &sink)
        XCTAssertEqual(gic.distributor(past, width: 8), 0)
        XCTAssertEqual(gic.distributor(0x6000 + 8 * 1019, width: 8), 0, "INTID 1019 does not exist here")
        XCTAssertEqual(gic.distributor(0x6000 + 8 * 1020, width: 8), 0, "INTIDs 1020-1023 have no router")
        XCTAssertEqual(gic.distributor(0x60F8, width: 8), 0, "SGIs and PPIs have no router")
    }

    func testRouterSendsAnSPIToTheVCPUWithThatAffinity() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3Enabled(vcpus: 20, spis: [40], &sink)
        gic.distributor(0x6000 + 8 * 40, 0x0102, width: 8, &sink)   // Aff1 1, Aff0 2: vCPU 18
        XCTAssertTrue(gic.inject(vcpu: 0, interrupt: 40, sink: &sink))
        XCTAssertEqual(sink.writes.map(\.vcpu), [18])
        XCTAssertEqual(gic.listRegister(vcpu: 18, index: 0)?.interrupt, 40)
    }

    func testAnSPIRoutedNowhereStaysPendingUntilReRouted() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3Enabled(vcpus: 2, spis: [40], &sink)
        gic.distributor(0x6000 + 8 * 40, 0x05, width: 8, &sink)     // Aff0 5: no such vCPU
        gic.inject(vcpu: 0, interrupt: 40, sink: &sink)
        gic.distributor(0x6000 + 8 * 40 + 4, 0x1, &sink)            // Aff3 1, Aff0 5: none either
        XCTAssertEqual(sink.writes, [])
        XCTAssertEqual(gic.distributor(0x0204), 1 << 8, "GICD_ISPENDR1 shows INTID 40")
        gic.distributor(0x6000 + 8 * 40, 0x01, width: 8, &sink)     // vCPU 1
        XCTAssertEqual(sink.writes.map(\.vcpu), [1])
        XCTAssertEqual(sink.writes.map(\.entry.interrupt), [40])
    }

    func testAnyVCPURoutingPicksAnAwakeRedistributor() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3Enabled(vcpus: 3, spis: [40], &sink)
        gic.distributor(0x6000 + 8 * 40, 1 << 31, width: 8, &sink)  // Interrupt_Routing_Mode 1
        gic.inject(vcpu: 0, interrupt: 40, sink: &sink)
        XCTAssertEqual(sink.writes, [], "every redistributor is asleep at reset")
        gic.redistributor(0x4_0014, 0, &sink)                       // vCPU 2 wakes (GICR_WAKER)
        XCTAssertEqual(sink.writes.map(\.vcpu), [2])
        // Once vCPU 1 is awake too, the lowest-numbered awake vCPU takes the next one.
        gic.redistributor(0x2_0014, 0, &sink)
        gic.listRegisterFreed(vcpu: 2, index: 0, sink: &sink)
        gic.inject(vcpu: 0, interrupt: 40, sink: &sink)
        XCTAssertEqual(sink.writes.map(\.vcpu), [2, 1])
    }

    func testAStoppedVCPUsSPIGoesToAnotherAwakeVCPUWhenRoutedToAny() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3Enabled(vcpus: 2, spis: [40], &sink)
        gic.redistributor(0x0_0014, 0, &sink)
        gic.redistributor(0x2_0014, 0, &sink)
        gic.distributor(0x6000 + 8 * 40, 1 << 31, width: 8, &sink)
        gic.inject(vcpu: 0, interrupt: 40, sink: &sink)
        XCTAssertEqual(sink.writes.map(\.vcpu), [0])
        XCTAssertEqual(gic.vcpuStopped(vcpu: 0, sink: &sink), [40])
        XCTAssertEqual(sink.writes.map(\.vcpu), [0, 1])
    }

    func testSPIConfigurationAndPriorityWordsWork() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3()
        gic.distributor(0x0C08, 0xFFFF_FFFF, &sink)        // ICFGR2: INTIDs 32-47
        XCTAssertEqual(gic.distributor(0x0C08), 0xAAAA_AAAA)
        gic.distributor(0x0C18, 0xFFFF_FFFF, &sink)        // ICFGR6: INTIDs 96-111 do not exist
        XCTAssertEqual(gic.distributor(0x0C18), 0)
        gic.distributor(0x0420, 0x0102_0380, &sink)
        XCTAssertEqual(gic.distributor(0x0420), 0x0000_0080)
    }

    func testHostileAccessesReadZeroAndChangeNothing() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3Enabled(spis: [33], &sink)
        for vcpu in [-1, 2, Int.max, Int.min] {
            XCTAssertEqual(gic.distributorRead(vcpu: vcpu, offset: 0x0000, width: 4), 0)
            gic.distributorWrite(vcpu: vcpu, offset: 0x0204, width: 4, value: 2, sink: &sink)
        }
        for offset: UInt64 in [0x1_0000, 0xFFFF_FFFF, UInt64.max, UInt64.max - 3] {
            XCTAssertEqual(gic.distributor(offset), 0)
            gic.distributor(offset, 2, &sink)
        }
        for width in [0, 3, 5, 16, -1, Int.max] {
            XCTAssertEqual(gic.distributor(0x0000, width: width), 0)
            gic.distributor(0x0204, 2, width: width, &sink)
        }
        XCTAssertEqual(sink.writes, [])
        XCTAssertFalse(gic.inject(vcpu: 0, interrupt: 1020, sink: &sink))
        XCTAssertFalse(gic.inject(vcpu: 0, interrupt: UInt32.max, sink: &sink))
        XCTAssertFalse(gic.inject(vcpu: 5, interrupt: 27, sink: &sink))
    }
}
