// Tests of the emulated GICv3 redistributors (ARM IHI 0069 §12.10-12.11): one RD_base + SGI_base
// pair per vCPU, picked by address, the values Linux's redistributor walk and gic_cpu_init read,
// and the banked SGI/PPI state behind SGI_base.

import XCTest
@testable import VMMCore

extension VGIC {
    mutating func redistributor(_ offset: UInt64, width: Int = 4, vcpu: Int = 0) -> UInt64 {
        redistributorRead(vcpu: vcpu, offset: offset, width: width)
    }

    mutating func redistributor(_ offset: UInt64, _ value: UInt64, width: Int = 4, vcpu: Int = 0,
                                _ sink: inout RecordingInterruptSink) {
        redistributorWrite(vcpu: vcpu, offset: offset, width: width, value: value, sink: &sink)
    }
}

final class GICv3RedistributorTests: XCTestCase {
    func testTyperNamesEachFramesVCPUAndMarksTheLast() {
        var gic = VGIC.v3(vcpus: 3)
        // Affinity_Value [63:32], Processor_Number [23:8], Last [4]; no PLPIS.
        XCTAssertEqual(gic.redistributor(0x0_0008, width: 8), 0x0000_0000_0000_0000)
        XCTAssertEqual(gic.redistributor(0x2_0008, width: 8), 0x0000_0001_0000_0100)
        XCTAssertEqual(gic.redistributor(0x4_0008, width: 8), 0x0000_0002_0000_0210)
        XCTAssertEqual(gic.redistributor(0x4_0008), 0x0000_0210, "low half")
        XCTAssertEqual(gic.redistributor(0x4_000C), 0x0000_0002, "high half")
        XCTAssertEqual(gic.redistributor(0x4_0008, width: 8, vcpu: 0), gic.redistributor(0x4_0008, width: 8, vcpu: 2),
                       "the address picks the frame, not the reader")
        XCTAssertEqual(gic.redistributor(0x4_000C, width: 8), 0, "a misaligned 64-bit read")
        XCTAssertEqual(gic.redistributor(0x4_0008, width: 2), 0)
    }

    func testTyperOfAVCPUPastSixteenCarriesAff1() {
        var gic = VGIC.v3(vcpus: 20)
        // vCPU 17: Aff1 1, Aff0 1; Processor_Number 0x11.
        XCTAssertEqual(gic.redistributor(17 * 0x2_0000 + 8, width: 8), 0x0000_0101_0000_1100)
        XCTAssertEqual(gic.redistributor(19 * 0x2_0000 + 8, width: 8), 0x0000_0103_0000_1310)
    }

    func testFramesPastTheLastVCPUReadAsZero() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3(vcpus: 2)
        XCTAssertEqual(gic.redistributor(0x4_0008, width: 8), 0)
        XCTAssertEqual(gic.redistributor(0x4_FFE8), 0)
        gic.redistributor(0x5_0100, 0xFFFF_FFFF, &sink)
        XCTAssertEqual(gic.redistributor(0xF5_FFFC), 0)
        XCTAssertEqual(gic.redistributor(UInt64.max - 7, width: 8), 0)
        gic.redistributor(UInt64.max - 3, 0xFFFF_FFFF, &sink)
        XCTAssertEqual(sink.writes, [])
    }

    func testRDBaseRegisters() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3(vcpus: 2)
        XCTAssertEqual(gic.redistributor(0x2_0000), 0, "GICR_CTLR: no LPIs, RWP 0")
        gic.redistributor(0x2_0000, 0xFFFF_FFFF, &sink)
        XCTAssertEqual(gic.redistributor(0x2_0000), 0, "EnableLPIs is RAZ/WI")
        XCTAssertEqual(gic.redistributor(0x2_0004), 0x43B, "GICR_IIDR")
        XCTAssertEqual(gic.redistributor(0x2_FFE8), 0x3B, "GICR_PIDR2: ArchRev 3")
        XCTAssertEqual(gic.redistributor(0x2_FFE0), 0x93)
        XCTAssertEqual(gic.redistributor(0x2_FFF0), 0x0D)
        for offset: UInt64 in [0x2_0070, 0x2_0078] {      // PROPBASER, PENDBASER
            gic.redistributor(offset, UInt64.max, width: 8, &sink)
            XCTAssertEqual(gic.redistributor(offset, width: 8), 0)
        }
        XCTAssertEqual(gic.redistributor(0x2_00C0), 0, "GICR_SYNCR: never busy")
    }

    func testWakerChildrenAsleepFollowsProcessorSleep() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3(vcpus: 2)
        XCTAssertEqual(gic.redistributor(0x2_0014), 0b110, "asleep at reset")
        gic.redistributor(0x2_0014, 0, &sink)              // Linux's gic_enable_redist
        XCTAssertEqual(gic.redistributor(0x2_0014), 0)
        XCTAssertEqual(gic.redistributor(0x0_0014), 0b110, "vCPU 0's redistributor is its own")
        gic.redistributor(0x2_0014, 0xFFFF_FFF9, &sink)    // ProcessorSleep clear, everything else set
        XCTAssertEqual(gic.redistributor(0x2_0014), 0)
        gic.redistributor(0x2_0014, 0b010, &sink)
        XCTAssertEqual(gic.redistributor(0x2_0014), 0b110)
        gic.redistributor(0x2_0014, 0, width: 8, &sink)
        gic.redistributor(0x2_0014, 0, width: 1, &sink)
        XCTAssertEqual(gic.redistributor(0x2_0014), 0b110, "only 32-bit writes count")
    }

    func testSGIBaseResetValues() {
        var gic = VGIC.v3(vcpus: 2)
        XCTAssertEqual(gic.redistributor(0x3_0080), 0xFFFF_FFFF, "IGROUPR0: group 1")
        XCTAssertEqual(gic.redistributor(0x3_0100), 0x0000_FFFF, "ISENABLER0: SGIs enabled")
        XCTAssertEqual(gic.redistributor(0x3_0200), 0)
        XCTAssertEqual(gic.redistributor(0x3_0300), 0)
        XCTAssertEqual(gic.redistributor(0x3_0C00), 0xAAAA_AAAA, "ICFGR0: SGIs edge")
        XCTAssertEqual(gic.redistributor(0x3_0C04), 0, "ICFGR1: PPIs level")
    }

    func testSGIBaseStateIsBankedPerFrame() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3(vcpus: 2)
        gic.redistributor(0x3_0100, 1 << 27, &sink)        // vCPU 1's PPI 27, written by vCPU 0
        gic.redistributor(0x3_041B, 0x80, width: 1, &sink)
        gic.redistributor(0x3_0C04, 0xFFFF_FFFF, &sink)
        gic.redistributor(0x3_0C00, 0, &sink)
        XCTAssertEqual(gic.redistributor(0x3_0100), 0x0800_FFFF)
        XCTAssertEqual(gic.redistributor(0x1_0100), 0x0000_FFFF)
        XCTAssertEqual(gic.redistributor(0x3_0418), 0x8000_0000)
        XCTAssertEqual(gic.redistributor(0x1_0418), 0)
        XCTAssertEqual(gic.redistributor(0x3_0C04), 0xAAAA_AAAA)
        XCTAssertEqual(gic.redistributor(0x3_0C00), 0xAAAA_AAAA, "SGI configuration is read-only")
        XCTAssertEqual(gic.redistributor(0x3_041C, width: 1), 0, "INTID 28's priority is untouched")
        gic.redistributor(0x3_0180, 0xFFFF_FFFF, &sink)    // ICENABLER0: SGIs too on GICv3
        XCTAssertEqual(gic.redistributor(0x3_0100), 0)
    }

    func testIGRPMODR0AndNSACRAreRAZWI() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3(vcpus: 1)
        for offset: UInt64 in [0x1_0D00, 0x1_0E00, 0x1_0E04, 0x1_0084, 0x1_0104, 0x1_0420, 0x1_0C08] {
            gic.redistributor(offset, 0xFFFF_FFFF, &sink)
            XCTAssertEqual(gic.redistributor(offset), 0, "offset \(offset)")
        }
    }

    func testAPPIEnabledAndPendingThroughTheRedistributorIsDelivered() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3(vcpus: 2)
        gic.distributor(0x0000, 0x13, &sink)
        gic.redistributor(0x3_041B, 0xA0, width: 1, &sink)
        gic.redistributor(0x3_0100, 1 << 27, &sink)
        gic.redistributor(0x3_0200, 1 << 27, &sink)        // ISPENDR0
        XCTAssertEqual(sink.writes, [.init(vcpu: 1, index: 0,
                                           entry: ListRegisterEntry(interrupt: 27, priority: 0xA0, group1: true))])
        XCTAssertEqual(gic.hardwareLinkedEntry(vcpu: 1, interrupt: 27, physical: 27)?.ichValue, 0x70A0_001B_0000_001B)
        XCTAssertNil(gic.hardwareLinkedEntry(vcpu: 0, interrupt: 27, physical: 27), "vCPU 0's PPI 27 is disabled")
    }

    func testSGIPendingSetAndClearedThroughTheRedistributor() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.v3(vcpus: 2)
        gic.redistributor(0x3_0200, 1 << 3, &sink)         // SGI 3 pending at vCPU 1, groups disabled
        XCTAssertEqual(gic.redistributor(0x3_0200), 1 << 3)
        XCTAssertTrue(gic.isPending(vcpu: 1, interrupt: 3))
        gic.redistributor(0x3_0280, 1 << 3, &sink)
        XCTAssertEqual(gic.redistributor(0x3_0200), 0)
        gic.redistributor(0x3_0200, 1 << 3, &sink)
        gic.distributor(0x0000, 0x2, &sink)
        XCTAssertEqual(sink.writes.map(\.entry), [ListRegisterEntry(interrupt: 3, priority: 0, group1: true)])
        XCTAssertEqual(sink.writes.map(\.vcpu), [1])
    }

    func testRedistributorOnAGICv2IsAbsent() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        XCTAssertEqual(gic.redistributor(0x0_0008, width: 8), 0)
        gic.redistributor(0x1_0200, 1 << 27, &sink)
        XCTAssertFalse(gic.isPending(vcpu: 0, interrupt: 27))
    }
}
