// Tests of list-register delivery: the GICH_LR encoding, filling free LRs, the overflow queue and its
// refill order when the guest deactivates an interrupt, and the guards against bad indices.

import XCTest
@testable import VMMCore

/// Records every list-register write the core asks for, in order.
struct RecordingInterruptSink: VirtualInterruptSink {
    struct Write: Equatable {
        var vcpu: Int
        var index: Int
        var entry: ListRegisterEntry
    }
    var writes: [Write] = []

    mutating func writeListRegister(vcpu: Int, index: Int, entry: ListRegisterEntry) {
        writes.append(Write(vcpu: vcpu, index: index, entry: entry))
    }
}

extension VGIC {
    /// Word write as the guest's `str w` would do it.
    mutating func write(vcpu: Int = 0, _ offset: UInt64, _ value: UInt32, _ sink: inout RecordingInterruptSink) {
        distributorWrite(vcpu: vcpu, offset: offset, width: 4, value: UInt64(value), sink: &sink)
    }

    mutating func read(vcpu: Int = 0, _ offset: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: distributorRead(vcpu: vcpu, offset: offset, width: 4))
    }

    /// Sets one interrupt's priority byte through GICD_IPRIORITYR (§4.3.11).
    mutating func setPriority(_ irq: UInt32, _ priority: UInt8, vcpu: Int = 0, _ sink: inout RecordingInterruptSink) {
        distributorWrite(vcpu: vcpu, offset: 0x400 + UInt64(irq), width: 1, value: UInt64(priority), sink: &sink)
    }

    /// A GIC with the distributor enabled and SPIs `irqs` enabled, all at priority 0xA0.
    static func enabled(vcpus: Int = 1, spis irqs: [UInt32], _ sink: inout RecordingInterruptSink) -> VGIC {
        var gic = VGIC(vcpuCount: vcpus)
        gic.write(0x000, 1, &sink)
        for irq in irqs {
            gic.setPriority(irq, 0xA0, &sink)
            gic.write(0x100 + UInt64(irq / 32) * 4, 1 << (irq % 32), &sink)
        }
        return gic
    }
}

final class ListRegistersTests: XCTestCase {
    func testGichValueEncodesEveryFieldAtItsSpecPosition() {
        // GICv2 §5.3.8: 27 | EOI (1 << 19) | (0xA0 >> 3 = 20) << 23 | pending (0b01 << 28).
        XCTAssertEqual(ListRegisterEntry(interrupt: 27, priority: 0xA0).gichValue, 0x1A08_001B)
        // 1019 (0x3FB) | CPUID 5 << 10 | EOI | 31 << 23 | pending | Grp1 (1 << 30); HW stays 0.
        let sgiLike = ListRegisterEntry(interrupt: 1019, priority: 0xF8, group1: true, sourceCPU: 5)
        XCTAssertEqual(sgiLike.gichValue, 0x5F88_17FB)
        // The LR holds only priority bits [7:3]; lower bits cannot appear.
        XCTAssertEqual(ListRegisterEntry(interrupt: 0, priority: 0x07).gichValue, 0x1008_0000)
    }

    func testIchValueEncodesEveryFieldAtItsSpecPosition() {
        // ICH_LR<n>_EL2: vINTID 27 | EOI [41] | priority 0xA0 in [55:48] | Group [60] | pending 0b01 [63:62].
        XCTAssertEqual(ListRegisterEntry(interrupt: 27, priority: 0xA0, group1: true).ichValue, 0x50A0_0200_0000_001B)
        // HW = 1 [61]: pINTID 27 in [41:32] and no EOI; priority 0xFF keeps its five implemented bits.
        XCTAssertEqual(ListRegisterEntry(interrupt: 27, priority: 0xFF, group1: true, physical: 27).ichValue,
                       0x70F8_001B_0000_001B)
        // Group 0, INTID 1019, priority 0x07 (no implemented bits); a GICv2 source CPU has no field.
        XCTAssertEqual(ListRegisterEntry(interrupt: 1019, priority: 0x07, sourceCPU: 5).ichValue, 0x4000_0200_0000_03FB)
    }

    func testInjectingAnEnabledInterruptWritesTheFirstFreeListRegister() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [33, 34], &sink)
        XCTAssertTrue(gic.inject(vcpu: 0, interrupt: 33, sink: &sink))
        XCTAssertTrue(gic.inject(vcpu: 0, interrupt: 34, sink: &sink))
        XCTAssertEqual(sink.writes, [
            .init(vcpu: 0, index: 0, entry: ListRegisterEntry(interrupt: 33, priority: 0xA0)),
            .init(vcpu: 0, index: 1, entry: ListRegisterEntry(interrupt: 34, priority: 0xA0)),
        ])
        XCTAssertEqual(gic.listRegister(vcpu: 0, index: 1)?.interrupt, 34)
        XCTAssertNil(gic.listRegister(vcpu: 0, index: 2))
    }

    func testFifthInterruptWaitsInOverflowAndRefillsTheFreedRegisterByPriority() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [33, 34, 35, 36, 37, 38, 39], &sink)
        gic.setPriority(37, 0x80, &sink)
        gic.setPriority(38, 0x40, &sink)
        gic.setPriority(39, 0x80, &sink)
        for irq: UInt32 in 33...39 { gic.inject(vcpu: 0, interrupt: irq, sink: &sink) }
        XCTAssertEqual(sink.writes.map(\.entry.interrupt), [33, 34, 35, 36])
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 3)

        sink.writes = []
        XCTAssertEqual(gic.listRegisterFreed(vcpu: 0, index: 2, sink: &sink), 35)
        XCTAssertEqual(sink.writes, [.init(vcpu: 0, index: 2, entry: ListRegisterEntry(interrupt: 38, priority: 0x40))])
        // 37 and 39 share priority 0x80: the earlier arrival goes first.
        XCTAssertEqual(gic.listRegisterFreed(vcpu: 0, index: 0, sink: &sink), 33)
        XCTAssertEqual(gic.listRegister(vcpu: 0, index: 0)?.interrupt, 37)
        XCTAssertEqual(gic.listRegisterFreed(vcpu: 0, index: 3, sink: &sink), 36)
        XCTAssertEqual(gic.listRegister(vcpu: 0, index: 3)?.interrupt, 39)
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 0)
        XCTAssertEqual(gic.listRegisterFreed(vcpu: 0, index: 1, sink: &sink), 34)
        XCTAssertNil(gic.listRegister(vcpu: 0, index: 1), "nothing left to refill with")
    }

    func testFreeingABadOrEmptyListRegisterReturnsNilAndWritesNothing() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [33], &sink)
        gic.inject(vcpu: 0, interrupt: 33, sink: &sink)
        sink.writes = []
        XCTAssertNil(gic.listRegisterFreed(vcpu: 0, index: 4, sink: &sink))
        XCTAssertNil(gic.listRegisterFreed(vcpu: 0, index: -1, sink: &sink))
        XCTAssertNil(gic.listRegisterFreed(vcpu: 1, index: 0, sink: &sink))
        XCTAssertNil(gic.listRegisterFreed(vcpu: -3, index: 0, sink: &sink))
        XCTAssertNil(gic.listRegisterFreed(vcpu: 0, index: 1, sink: &sink))
        XCTAssertEqual(sink.writes, [])
        XCTAssertEqual(gic.listRegister(vcpu: 0, index: 0)?.interrupt, 33)
        XCTAssertEqual(gic.listRegisterFreed(vcpu: 0, index: 0, sink: &sink), 33)
        XCTAssertNil(gic.listRegisterFreed(vcpu: 0, index: 0, sink: &sink), "already free")
    }

    func testInjectingTwiceIsNotDuplicated() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [33, 34, 35, 36, 40], &sink)
        gic.inject(vcpu: 0, interrupt: 33, sink: &sink)
        gic.inject(vcpu: 0, interrupt: 33, sink: &sink)
        XCTAssertEqual(sink.writes.count, 1)
        for irq: UInt32 in [34, 35, 36, 40, 40] { gic.inject(vcpu: 0, interrupt: irq, sink: &sink) }
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 1, "40 is queued once")
    }

    func testRaisedAgainWhileInAListRegisterIsDeliveredOnceMoreAfterDeactivation() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [33], &sink)
        gic.inject(vcpu: 0, interrupt: 33, sink: &sink)
        gic.inject(vcpu: 0, interrupt: 33, sink: &sink)
        XCTAssertTrue(gic.isPending(vcpu: 0, interrupt: 33), "active-and-pending, §3.2.4")
        XCTAssertEqual(gic.listRegisterFreed(vcpu: 0, index: 0, sink: &sink), 33)
        XCTAssertEqual(sink.writes.map(\.entry.interrupt), [33, 33])
        XCTAssertFalse(gic.isPending(vcpu: 0, interrupt: 33))
        XCTAssertEqual(gic.listRegisterFreed(vcpu: 0, index: 0, sink: &sink), 33)
        XCTAssertEqual(sink.writes.count, 2, "a single raise is delivered once")
    }

    func testOutOfRangeInjectionsAreDropped() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [], &sink)
        XCTAssertFalse(gic.inject(vcpu: 0, interrupt: 96, sink: &sink), "spiCount 64: INTIDs stop at 95")
        XCTAssertFalse(gic.inject(vcpu: 0, interrupt: 1023, sink: &sink))
        XCTAssertFalse(gic.inject(vcpu: 1, interrupt: 27, sink: &sink), "no vCPU 1")
        XCTAssertFalse(gic.inject(vcpu: -1, interrupt: 3, sink: &sink))
        XCTAssertEqual(sink.writes, [])
    }

    func testInjectedPPIGoesToTheCallersVCPU() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        gic.write(0x000, 1, &sink)
        gic.write(vcpu: 1, 0x100, 1 << 27, &sink)
        gic.inject(vcpu: 0, interrupt: 27, sink: &sink)
        XCTAssertEqual(sink.writes, [], "27 is disabled on vCPU 0")
        gic.inject(vcpu: 1, interrupt: 27, sink: &sink)
        XCTAssertEqual(sink.writes, [.init(vcpu: 1, index: 0, entry: ListRegisterEntry(interrupt: 27, priority: 0))])
    }

    func testAStoppedVCPULetsGoOfItsInterruptsAndItsSPIMovesToAnotherTarget() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(vcpus: 2, spis: [40], &sink)
        gic.write(vcpu: 1, 0x100, 1 << 27, &sink)
        gic.distributorWrite(vcpu: 0, offset: 0x800 + 40, width: 1, value: 0b11, sink: &sink)  // SPI 40 to vCPUs 0 and 1
        gic.distributorWrite(vcpu: 0, offset: 0x800 + 40, width: 1, value: 0b10, sink: &sink)  // then to vCPU 1 only
        gic.inject(vcpu: 1, interrupt: 27, sink: &sink)
        gic.inject(vcpu: 0, interrupt: 40, sink: &sink)
        gic.write(vcpu: 0, 0xF00, (0b10 << 16) | 3, &sink)                                    // SGI 3 from 0 to 1
        XCTAssertEqual(gic.listRegister(vcpu: 1, index: 0)?.interrupt, 27)
        XCTAssertEqual(gic.listRegister(vcpu: 1, index: 1)?.interrupt, 40)
        XCTAssertEqual(gic.listRegister(vcpu: 1, index: 2)?.interrupt, 3)
        gic.distributorWrite(vcpu: 0, offset: 0x800 + 40, width: 1, value: 0b11, sink: &sink)  // the guest moves it back
        sink.writes = []
        XCTAssertEqual(gic.vcpuStopped(vcpu: 1, sink: &sink), [27, 40, 3])
        for index in 0..<4 { XCTAssertNil(gic.listRegister(vcpu: 1, index: index)) }
        XCTAssertEqual(sink.writes, [.init(vcpu: 0, index: 0, entry: ListRegisterEntry(interrupt: 40, priority: 0xA0))],
                       "the SPI it held goes to its other target, never back to the stopped vCPU")
        XCTAssertEqual(gic.vcpuStopped(vcpu: 2, sink: &sink), [], "no such vCPU")
        // Started again, the vCPU takes interrupts as before.
        sink.writes = []
        gic.inject(vcpu: 1, interrupt: 27, sink: &sink)
        XCTAssertEqual(sink.writes, [.init(vcpu: 1, index: 0, entry: ListRegisterEntry(interrupt: 27, priority: 0))])
    }

    func testDisablingAQueuedInterruptWithdrawsItUntilReenabled() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [33, 34, 35, 36, 37], &sink)
        for irq: UInt32 in 33...37 { gic.inject(vcpu: 0, interrupt: irq, sink: &sink) }
        gic.write(0x184, 1 << 5, &sink)     // ICENABLER1: 37
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 0)
        XCTAssertTrue(gic.isPending(vcpu: 0, interrupt: 37))
        sink.writes = []
        _ = gic.listRegisterFreed(vcpu: 0, index: 0, sink: &sink)
        XCTAssertEqual(sink.writes, [], "a disabled interrupt is not forwarded")
        gic.write(0x104, 1 << 5, &sink)     // ISENABLER1: 37
        XCTAssertEqual(sink.writes.map(\.entry.interrupt), [37])
        XCTAssertEqual(sink.writes.first?.index, 0)
    }

    func testPriorityChangeWhileQueuedChangesRefillOrder() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [33, 34, 35, 36, 37, 38], &sink)
        for irq: UInt32 in 33...38 { gic.inject(vcpu: 0, interrupt: irq, sink: &sink) }
        gic.setPriority(38, 0x10, &sink)
        sink.writes = []
        _ = gic.listRegisterFreed(vcpu: 0, index: 1, sink: &sink)
        XCTAssertEqual(sink.writes, [.init(vcpu: 0, index: 1, entry: ListRegisterEntry(interrupt: 38, priority: 0x10))])
    }

    func testEnablingTheDistributorGivesTheListRegistersToTheHighestPriorities() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        let priorities: [UInt8] = [0xF0, 0x10, 0xE0, 0x20, 0x30, 0x40]   // for 33...38
        for (offset, priority) in priorities.enumerated() {
            let irq = UInt32(33 + offset)
            gic.setPriority(irq, priority, &sink)
            gic.inject(vcpu: 0, interrupt: irq, sink: &sink)
        }
        gic.write(0x104, 0x7E, &sink)       // ISENABLER1: 33...38, distributor still off
        XCTAssertEqual(sink.writes, [])
        gic.write(0x000, 1, &sink)
        XCTAssertEqual(sink.writes.map(\.entry.interrupt), [34, 36, 37, 38])
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 2)
    }

    func testDisablingTheDistributorReturnsQueuedInterruptsToPending() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [33, 34, 35, 36, 37], &sink)
        for irq: UInt32 in 33...37 { gic.inject(vcpu: 0, interrupt: irq, sink: &sink) }
        gic.write(0x000, 0, &sink)
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 0)
        XCTAssertEqual(gic.read(0x204), 1 << 5, "only 37 is still pending in the distributor")
        sink.writes = []
        gic.write(0x000, 1, &sink)
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 1, "LRs are still full")
        XCTAssertEqual(gic.listRegisterFreed(vcpu: 0, index: 3, sink: &sink), 36)
        XCTAssertEqual(sink.writes.map(\.entry.interrupt), [37])
    }

    // MARK: Hardware-linked entries (a platform's own LR for the vCPU's timer)

    func testHardwareLinkedEntryEncodesThePhysicalIDAndNoMaintenance() {
        // 27 | PhysicalID 27 << 10 | (0xA0 >> 3) << 23 | pending | HW (1 << 31); no EOI bit, no CPUID.
        let entry = ListRegisterEntry(interrupt: 27, priority: 0xA0, sourceCPU: 5, physical: 27)
        XCTAssertEqual(entry.gichValue, 0x9A00_6C1B)
        XCTAssertEqual(entry.gichValue & (1 << 19), 0, "bit 19 is the PhysicalID's top bit here, not EOI")
        // The PhysicalID keeps ten bits.
        XCTAssertEqual(ListRegisterEntry(interrupt: 40, priority: 0, physical: 0x7FF).gichValue >> 10 & 0x3FF, 0x3FF)
    }

    func testHardwareLinkedEntryFollowsTheGuestsDistributor() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        XCTAssertNil(gic.hardwareLinkedEntry(vcpu: 1, interrupt: 27, physical: 27), "distributor off")
        gic.write(0x000, 1, &sink)
        XCTAssertNil(gic.hardwareLinkedEntry(vcpu: 1, interrupt: 27, physical: 27), "PPI 27 not enabled")
        gic.setPriority(27, 0x40, vcpu: 1, &sink)
        gic.write(vcpu: 1, 0x100, 1 << 27, &sink)
        XCTAssertEqual(gic.hardwareLinkedEntry(vcpu: 1, interrupt: 27, physical: 27),
                       ListRegisterEntry(interrupt: 27, priority: 0x40, physical: 27))
        XCTAssertNil(gic.hardwareLinkedEntry(vcpu: 0, interrupt: 27, physical: 27), "banked: vCPU 0 did not enable it")
        XCTAssertTrue(sink.writes.isEmpty, "asking writes no list register")
        gic.write(vcpu: 1, 0x180, 1 << 27, &sink)
        XCTAssertNil(gic.hardwareLinkedEntry(vcpu: 1, interrupt: 27, physical: 27), "disabled again")
    }

    /// The native timer fast path (the entry written without the VM lock) gives the guest what the
    /// slow path (inject through the distributor) gives it: the same interrupt, priority, group and
    /// GICH_LR fields, only linked to the physical PPI instead of asking for EOI maintenance.
    func testHardwareLinkedEntryIsTheInjectedEntryLinkedToTheTimer() {
        for (vcpu, priority) in [(0, UInt8(0xA0)), (1, UInt8(0x08))] {
            var sink = RecordingInterruptSink()
            var gic = VGIC(vcpuCount: 2)
            gic.write(0x000, 1, &sink)
            gic.setPriority(27, priority, vcpu: vcpu, &sink)
            gic.write(vcpu: vcpu, 0x100, 1 << 27, &sink)
            let fast = gic.hardwareLinkedEntry(vcpu: vcpu, interrupt: 27, physical: 27)
            XCTAssertTrue(gic.inject(vcpu: vcpu, interrupt: 27, sink: &sink))
            guard let slow = sink.writes.last?.entry, let fast else { return XCTFail("no entry on one of the paths") }
            XCTAssertEqual(sink.writes.last?.vcpu, vcpu)
            var unlinked = fast
            unlinked.physical = nil
            XCTAssertEqual(unlinked, slow)
            let eoiAndCPU: UInt32 = 1 << 19 | 0x7 << 10, hwAndPhysical: UInt32 = 1 << 31 | 0x3FF << 10
            XCTAssertEqual(fast.gichValue & ~hwAndPhysical, slow.gichValue & ~eoiAndCPU)
        }
    }

    func testHardwareLinkedEntryIsOnlyForAVCPUsOwnPPIs() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(vcpus: 2, spis: [40], &sink)
        gic.write(0x100, 0xFFFF_FFFF, &sink)
        XCTAssertNil(gic.hardwareLinkedEntry(vcpu: 0, interrupt: 40, physical: 40), "an SPI")
        XCTAssertNil(gic.hardwareLinkedEntry(vcpu: 0, interrupt: 1, physical: 1), "an SGI")
        XCTAssertNil(gic.hardwareLinkedEntry(vcpu: 2, interrupt: 27, physical: 27), "no such vCPU")
        XCTAssertNil(gic.hardwareLinkedEntry(vcpu: -1, interrupt: 27, physical: 27))
        XCTAssertNotNil(gic.hardwareLinkedEntry(vcpu: 0, interrupt: 27, physical: 27))
    }

    func testControlChangesCountsOnlyWritesThatChangeGICDCTLR() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        XCTAssertEqual(gic.controlChanges, 0)
        gic.write(0x000, 1, &sink)
        gic.write(0x000, 1, &sink)
        XCTAssertEqual(gic.controlChanges, 1, "the same value again changes nothing")
        gic.write(0x000, 0, &sink)
        XCTAssertEqual(gic.controlChanges, 2)
        gic.write(0x000, 0xFFFF_FFFC, &sink)
        XCTAssertEqual(gic.controlChanges, 2, "bits above EnableGrp1 are not kept")
    }
}
