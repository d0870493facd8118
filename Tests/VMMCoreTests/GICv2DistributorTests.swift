// Tests of the emulated GICv2 distributor, played as the guest would: register writes and reads at
// the offsets of ARM IHI 0048B §4.3, checking the values the spec (and this model's stated choices)
// require, and the list-register writes that enabling or raising an interrupt causes.

import XCTest
@testable import VMMCore

final class GICv2DistributorTests: XCTestCase {
    func testIdentificationRegistersHaveGICv2Values() {
        var gic = VGIC(vcpuCount: 2, spiCount: 64)
        XCTAssertEqual(gic.read(0x000), 0, "GICD_CTLR resets disabled")
        // ITLinesNumber = 96 / 32 - 1 = 2, CPUNumber = 1, SecurityExtn = 0.
        XCTAssertEqual(gic.read(0x004), 0x0000_0022)
        XCTAssertEqual(gic.read(0x008), 0x0200_043B)
        XCTAssertEqual(gic.read(0xFE8), 0x2B, "PIDR2: ArchRev 2")
        XCTAssertEqual([0xFF0, 0xFF4, 0xFF8, 0xFFC].map { gic.read($0) }, [0x0D, 0xF0, 0x05, 0xB1])
        XCTAssertEqual([0xFE0, 0xFE4, 0xFEC, 0xFD0].map { gic.read($0) }, [0x90, 0xB4, 0x00, 0x04])
    }

    func testTyperFollowsTheConfiguredSizes() {
        var oneCPU = VGIC(vcpuCount: 1, spiCount: 32)
        XCTAssertEqual(oneCPU.read(0x004), 0x01)
        var rounded = VGIC(vcpuCount: 4, spiCount: 40)     // rounds up to 64 SPIs
        XCTAssertEqual(rounded.interruptCount, 96)
        XCTAssertEqual(rounded.read(0x004), 0x62)
        var largest = VGIC(vcpuCount: 12, spiCount: 5000)  // 8 CPUs, INTIDs below 1020
        XCTAssertEqual(largest.interruptCount, 1020)
        XCTAssertEqual(largest.read(0x004), 0xFF)
    }

    func testControlKeepsOnlyTheGroupEnableBits() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        gic.write(0x000, 0xFFFF_FFFF, &sink)
        XCTAssertEqual(gic.read(0x000), 0x3)
        gic.write(0x000, 0, &sink)
        XCTAssertEqual(gic.read(0x000), 0)
    }

    func testReadOnlyRegistersIgnoreWrites() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        for offset: UInt64 in [0x004, 0x008, 0xFE8, 0xFF0] { gic.write(offset, 0xDEAD_BEEF, &sink) }
        XCTAssertEqual(gic.read(0x004), 0x22)
        XCTAssertEqual(gic.read(0x008), 0x0200_043B)
        XCTAssertEqual(gic.read(0xFE8), 0x2B)
        XCTAssertEqual(gic.read(0xFF0), 0x0D)
    }

    func testReservedOffsetsReadAsZeroAndIgnoreWrites() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        for offset: UInt64 in [0x00C, 0x040, 0x080, 0x0FC, 0xD00, 0xE00, 0xF04, 0xF30, 0xFCC] {
            gic.write(offset, 0xFFFF_FFFF, &sink)
            XCTAssertEqual(gic.read(offset), 0, "offset \(offset)")
        }
        XCTAssertEqual(gic.read(0x000), 0, "no write leaked into GICD_CTLR")
        XCTAssertEqual(gic.distributorRead(vcpu: 0, offset: 0x1000, width: 4), 0)
        XCTAssertEqual(sink.writes, [])
    }

    func testWordRegistersRejectByteHalfwordAndMisalignedAccesses() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        XCTAssertEqual(gic.distributorRead(vcpu: 0, offset: 0x100, width: 1), 0)
        XCTAssertEqual(gic.distributorRead(vcpu: 0, offset: 0x100, width: 2), 0)
        XCTAssertEqual(gic.distributorRead(vcpu: 0, offset: 0x102, width: 4), 0)
        XCTAssertEqual(gic.distributorRead(vcpu: 0, offset: 0x004, width: 8), 0)
        gic.distributorWrite(vcpu: 0, offset: 0x000, width: 1, value: 1, sink: &sink)
        gic.distributorWrite(vcpu: 0, offset: 0x000, width: 2, value: 1, sink: &sink)
        gic.distributorWrite(vcpu: 0, offset: 0x402, width: 2, value: 0xFFFF, sink: &sink)
        XCTAssertEqual(gic.read(0x000), 0)
        XCTAssertEqual(gic.read(0x400), 0)
        XCTAssertEqual(gic.read(0x100), 0x0000_FFFF, "the word itself reads normally")
    }

    func testSetEnableThenClearEnableAreVisibleThroughBothRegisters() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        gic.write(0x104, 0x0000_0006, &sink)        // ISENABLER1: INTIDs 33, 34
        XCTAssertEqual(gic.read(0x104), 0x6)
        XCTAssertEqual(gic.read(0x184), 0x6)
        gic.write(0x184, 0x0000_0002, &sink)        // ICENABLER1: INTID 33
        XCTAssertEqual(gic.read(0x104), 0x4)
        XCTAssertEqual(gic.read(0x184), 0x4)
        gic.write(0x104, 0, &sink)
        XCTAssertEqual(gic.read(0x104), 0x4, "writing 0 to a set-enable bit has no effect")
    }

    func testSGIsAreAlwaysEnabledAndPPIEnablesAreBankedPerVCPU() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        XCTAssertEqual(gic.read(0x100), 0x0000_FFFF)
        gic.write(0x180, 0xFFFF_FFFF, &sink)
        XCTAssertEqual(gic.read(0x100), 0x0000_FFFF, "SGIs cannot be disabled")
        gic.write(0x100, 1 << 27, &sink)
        XCTAssertEqual(gic.read(0x100), 0x0800_FFFF)
        XCTAssertEqual(gic.read(vcpu: 1, 0x100), 0x0000_FFFF, "vCPU 1 has its own PPI enables")
    }

    func testSetPendingOnAnEnabledInterruptWritesAListRegister() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [33], &sink)
        gic.write(0x204, 1 << 1, &sink)             // ISPENDR1: INTID 33
        XCTAssertEqual(sink.writes, [.init(vcpu: 0, index: 0, entry: ListRegisterEntry(interrupt: 33, priority: 0xA0))])
        XCTAssertEqual(sink.writes.first?.entry.gichValue, 0x1A08_0021)
        XCTAssertEqual(gic.read(0x204), 0, "its pending state now lives in the list register")
    }

    func testPendingWhileDisabledIsDeliveredWhenEnabled() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        gic.write(0x000, 1, &sink)
        gic.write(0x204, 1 << 1, &sink)             // pending, but 33 is disabled
        XCTAssertEqual(sink.writes, [])
        XCTAssertEqual(gic.read(0x204), 0x2)
        XCTAssertEqual(gic.read(0x284), 0x2, "ICPENDR reads the same state")
        gic.write(0x104, 1 << 1, &sink)
        XCTAssertEqual(sink.writes.map(\.entry.interrupt), [33])
    }

    func testPendingWhileTheDistributorIsDisabledIsDeliveredWhenItIsEnabled() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        gic.write(0x100, 1 << 27, &sink)
        XCTAssertTrue(gic.inject(vcpu: 0, interrupt: 27, sink: &sink))
        XCTAssertEqual(sink.writes, [])
        XCTAssertEqual(gic.read(0x200), 1 << 27)
        gic.write(0x000, 1, &sink)
        XCTAssertEqual(sink.writes.map(\.entry.interrupt), [27])
    }

    func testClearPendingDropsAQueuedInterrupt() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(spis: [33, 34, 35, 36, 37], &sink)
        for irq: UInt32 in 33...37 { gic.inject(vcpu: 0, interrupt: irq, sink: &sink) }
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 1)
        gic.write(0x284, 1 << 5, &sink)             // ICPENDR1: INTID 37
        XCTAssertEqual(gic.overflowCount(vcpu: 0), 0)
        XCTAssertEqual(gic.read(0x204), 0)
        sink.writes = []
        _ = gic.listRegisterFreed(vcpu: 0, index: 0, sink: &sink)
        XCTAssertEqual(sink.writes, [])
    }

    func testSGIPendingBitsOfISPENDR0AreReadOnly() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        gic.write(0x200, 0xFFFF_FFFF, &sink)
        XCTAssertEqual(gic.read(0x200), 0xFFFF_0000, "PPIs latch, SGIs use SPENDSGIR")
    }

    func testActiveBitsAreSetAndClearedAsWritten() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        gic.write(0x300, 0x0800_0001, &sink)
        gic.write(0x304, 0x8000_0002, &sink)
        XCTAssertEqual(gic.read(0x300), 0x0800_0001)
        XCTAssertEqual(gic.read(vcpu: 1, 0x300), 0, "banked per vCPU")
        XCTAssertEqual(gic.read(vcpu: 1, 0x384), 0x8000_0002, "SPIs are shared")
        gic.write(0x384, 0x0000_0002, &sink)
        XCTAssertEqual(gic.read(0x304), 0x8000_0000)
    }

    func testPriorityByteWritesReadBackInTheWord() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        for (lane, priority) in [0x10, 0x20, 0x30, 0xF0].enumerated() {
            gic.distributorWrite(vcpu: 0, offset: 0x420 + UInt64(lane), width: 1, value: UInt64(priority), sink: &sink)
        }
        XCTAssertEqual(gic.read(0x420), 0xF030_2010)
        XCTAssertEqual(gic.distributorRead(vcpu: 0, offset: 0x422, width: 1), 0x30)
        gic.write(0x424, 0xA0A0_A0A0, &sink)
        XCTAssertEqual(gic.distributorRead(vcpu: 0, offset: 0x427, width: 1), 0xA0)
        gic.distributorWrite(vcpu: 0, offset: 0x428, width: 1, value: 0xFF, sink: &sink)
        XCTAssertEqual(gic.read(0x428), 0xF8, "the low three priority bits are not implemented")
    }

    func testPrivatePrioritiesAreBankedPerVCPU() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        gic.write(0x418, 0x8000_0000, &sink)        // INTID 27 on vCPU 0
        XCTAssertEqual(gic.read(0x418), 0x8000_0000)
        XCTAssertEqual(gic.read(vcpu: 1, 0x418), 0)
    }

    func testPrivateTargetsAreReadOnlyAndNameTheReader() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        XCTAssertEqual(gic.read(0x800), 0x0101_0101)
        XCTAssertEqual(gic.read(vcpu: 1, 0x81C), 0x0202_0202)
        gic.write(vcpu: 1, 0x81C, 0x0101_0101, &sink)
        gic.distributorWrite(vcpu: 1, offset: 0x81B, width: 1, value: 0x3, sink: &sink)
        XCTAssertEqual(gic.read(vcpu: 1, 0x818), 0x0202_0202)
        XCTAssertEqual(gic.distributorRead(vcpu: 1, offset: 0x81B, width: 1), 0x02)
    }

    func testSPITargetsAreWritableAndMaskedToExistingVCPUs() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        XCTAssertEqual(gic.read(0x820), 0x0101_0101, "SPIs reset to vCPU 0")
        gic.distributorWrite(vcpu: 0, offset: 0x821, width: 1, value: 0xFF, sink: &sink)
        gic.distributorWrite(vcpu: 0, offset: 0x822, width: 1, value: 0x02, sink: &sink)
        XCTAssertEqual(gic.read(0x820), 0x0102_0301)
        gic.write(0x824, 0x0000_0000, &sink)
        XCTAssertEqual(gic.read(0x824), 0)
    }

    func testSPIIsDeliveredToTheVCPUItTargets() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(vcpus: 2, spis: [33], &sink)
        gic.distributorWrite(vcpu: 0, offset: 0x821, width: 1, value: 0x02, sink: &sink)
        gic.inject(vcpu: 0, interrupt: 33, sink: &sink)
        XCTAssertEqual(sink.writes, [.init(vcpu: 1, index: 0, entry: ListRegisterEntry(interrupt: 33, priority: 0xA0))])
    }

    func testPendingSPIWithoutTargetIsDeliveredOnceTargeted() {
        var sink = RecordingInterruptSink()
        var gic = VGIC.enabled(vcpus: 2, spis: [40], &sink)
        gic.distributorWrite(vcpu: 0, offset: 0x828, width: 1, value: 0, sink: &sink)
        gic.inject(vcpu: 0, interrupt: 40, sink: &sink)
        XCTAssertEqual(sink.writes, [])
        gic.distributorWrite(vcpu: 0, offset: 0x828, width: 1, value: 0x02, sink: &sink)
        XCTAssertEqual(sink.writes.map { [$0.vcpu, Int($0.entry.interrupt)] }, [[1, 40]])
    }

    func testConfigurationRegisters() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        gic.write(0xC00, 0, &sink)
        XCTAssertEqual(gic.read(0xC00), 0xAAAA_AAAA, "SGIs are edge-triggered, read-only")
        gic.write(0xC04, 0xFFFF_FFFF, &sink)
        XCTAssertEqual(gic.read(0xC04), 0xAAAA_AAAA, "PPIs writable, bit 0 of each field reserved")
        XCTAssertEqual(gic.read(vcpu: 1, 0xC04), 0, "PPI configuration is banked")
        gic.write(0xC08, 0x5555_5555, &sink)
        XCTAssertEqual(gic.read(0xC08), 0)
        gic.write(0xC08, 0x0000_0008, &sink)        // INTID 33 edge-triggered
        XCTAssertEqual(gic.read(0xC08), 0x8)
        gic.write(0xC18, 0xFFFF_FFFF, &sink)        // INTIDs 96..111 do not exist
        XCTAssertEqual(gic.read(0xC18), 0)
    }

    func testSGIRTargetListFilters() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 3)
        gic.write(0x000, 1, &sink)
        gic.write(vcpu: 1, 0xF00, 0x0005_0003, &sink)   // filter 0, list {0, 2}, SGI 3
        XCTAssertEqual(sink.writes, [
            .init(vcpu: 0, index: 0, entry: ListRegisterEntry(interrupt: 3, priority: 0, sourceCPU: 1)),
            .init(vcpu: 2, index: 0, entry: ListRegisterEntry(interrupt: 3, priority: 0, sourceCPU: 1)),
        ])
        XCTAssertEqual(sink.writes[0].entry.gichValue, 0x1008_0403, "CPUID 1 in bits [12:10]")
        sink.writes = []
        gic.write(vcpu: 0, 0xF00, 0x01FF_0005, &sink)   // filter 1: all but the writer
        XCTAssertEqual(sink.writes.map { [$0.vcpu, Int($0.entry.interrupt), Int($0.entry.sourceCPU)] },
                       [[1, 5, 0], [2, 5, 0]])
        sink.writes = []
        gic.write(vcpu: 2, 0xF00, 0x0200_0007, &sink)   // filter 2: the writer only
        XCTAssertEqual(sink.writes.map { [$0.vcpu, Int($0.entry.interrupt), Int($0.entry.sourceCPU)] }, [[2, 7, 2]])
        sink.writes = []
        gic.write(vcpu: 0, 0xF00, 0x03FF_0001, &sink)   // filter 3 is reserved
        gic.write(vcpu: 0, 0xF00, 0x00F8_0001, &sink)   // only non-existent CPUs in the list
        XCTAssertEqual(sink.writes, [])
        XCTAssertEqual(gic.read(0xF00), 0, "GICD_SGIR is write-only")
    }

    func testSGIsFromDifferentSourcesAreSeparateInterrupts() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        gic.write(0x000, 1, &sink)
        gic.write(vcpu: 0, 0xF00, 0x0200_0001, &sink)   // SGI 1 to self from 0
        gic.write(vcpu: 1, 0xF00, 0x0001_0001, &sink)   // SGI 1 to 0 from 1
        gic.write(vcpu: 1, 0xF00, 0x0001_0001, &sink)   // again: already in an LR
        XCTAssertEqual(sink.writes.map { [$0.vcpu, $0.index, Int($0.entry.sourceCPU)] }, [[0, 0, 0], [0, 1, 1]])
    }

    func testSetAndClearSGIPendingRegisters() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 2)
        gic.distributorWrite(vcpu: 0, offset: 0xF22, width: 1, value: 0xFF, sink: &sink)  // SGI 2
        XCTAssertEqual(gic.distributorRead(vcpu: 0, offset: 0xF22, width: 1), 0x03, "sources 0 and 1 exist")
        XCTAssertEqual(gic.read(0xF10), 0x0003_0000)
        XCTAssertEqual(gic.read(0x200), 1 << 2)
        gic.distributorWrite(vcpu: 0, offset: 0xF12, width: 1, value: 0x01, sink: &sink)
        XCTAssertEqual(gic.read(0xF20), 0x0002_0000)
        XCTAssertEqual(gic.read(vcpu: 1, 0xF20), 0, "banked per vCPU")
        gic.write(0x000, 1, &sink)
        XCTAssertEqual(sink.writes, [.init(vcpu: 0, index: 0, entry: ListRegisterEntry(interrupt: 2, priority: 0, sourceCPU: 1))])
    }

    func testRegistersBeyondTheImplementedInterruptsAreRAZWI() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1, spiCount: 64)  // INTIDs 0..95
        for offset: UInt64 in [0x10C, 0x20C, 0x30C, 0x460, 0x860] {
            gic.write(offset, 0xFFFF_FFFF, &sink)
            XCTAssertEqual(gic.read(offset), 0, "offset \(offset)")
        }
        XCTAssertEqual(gic.distributorRead(vcpu: 0, offset: 0x45F, width: 1), 0, "INTID 95 exists, priority reset 0")
        gic.distributorWrite(vcpu: 0, offset: 0x45F, width: 1, value: 0x40, sink: &sink)
        XCTAssertEqual(gic.distributorRead(vcpu: 0, offset: 0x45F, width: 1), 0x40)
    }

    func testAccessesFromAnUnknownVCPUAreIgnored() {
        var sink = RecordingInterruptSink()
        var gic = VGIC(vcpuCount: 1)
        gic.write(vcpu: 1, 0x000, 1, &sink)
        gic.write(vcpu: -1, 0x100, 1 << 27, &sink)
        XCTAssertEqual(gic.read(0x000), 0)
        XCTAssertEqual(gic.read(0x100), 0x0000_FFFF)
        XCTAssertEqual(gic.read(vcpu: 1, 0x004), 0)
        XCTAssertEqual(gic.read(vcpu: 5, 0x800), 0)
    }
}
