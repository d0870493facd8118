// The virtio-mmio transport's queue setup against a hostile driver (virtio 1.2 §4.2.3.2): bad
// selectors and sizes, rings outside RAM or misaligned, notifications before the device is live.
// The fake model and the driver's moves are in VirtioMMIOTransportTests.swift.

import XCTest
@testable import VMMCore

extension VirtioMMIOTransportTests {
    // MARK: Queue setup, hostile cases (§4.2.3.2)

    func testQueueSelectorOutOfRangeSelectsNoQueue() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        negotiate(&t, features)
        for selector: UInt32 in [2, 0x8000, 0xFFFF_FFFF] {
            write(&t, .queueSelector, selector)
            XCTAssertEqual(read(t, .queueSizeMaximum), 0, "§4.2.2: 0 for an unavailable queue")
            write(&t, .queueSize, 128)
            setAreas(&t, areas(queue: 0))
            XCTAssertEqual(write(&t, .queueReady, 1), .none)
            XCTAssertEqual(read(t, .queueReady), 0)
        }
        XCTAssertEqual(read(t, .status), 0x0B, "nothing marked broken")
        // Queue 0 kept its defaults: no areas were written to it, so readying it fails.
        write(&t, .queueSelector, 0)
        XCTAssertEqual(write(&t, .queueReady, 1), .statusChanged)
    }

    func testQueueSizeMustBeAPowerOfTwoNoLargerThanTheMaximum() {
        for size: UInt32 in [0, 3, 100, 255, 512, 0x1_0000, 0xFFFF_FFFF] {
            var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
            negotiate(&t, features)
            XCTAssertEqual(setUpQueue(&t, 0, size: size), .statusChanged, "size \(size)")
            XCTAssertEqual(read(t, .status) & VirtioStatus.deviceNeedsReset, VirtioStatus.deviceNeedsReset)
            XCTAssertEqual(read(t, .queueReady), 0)
            XCTAssertNil(t.queues[0])
        }
        for size: UInt32 in [1, 2, 128, 256] {
            var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
            negotiate(&t, features)
            XCTAssertEqual(setUpQueue(&t, 0, size: size), .none, "size \(size)")
            XCTAssertEqual(t.queues[0]?.configuration.size, UInt16(size))
        }
    }

    func testValidQueueSizeAfterAnInvalidOneIsAccepted() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        negotiate(&t, features)
        write(&t, .queueSize, 6)
        XCTAssertEqual(setUpQueue(&t, 0, size: 32), .none)
        XCTAssertEqual(t.queues[0]?.configuration.size, 32)
    }

    func testRingsOutsideRAMMarkTheDeviceNeedsReset() {
        let end = Self.ramBase + Self.ramSize
        let bad: [(UInt64, UInt64, UInt64)] = [
            (0x1000, Self.ramBase + 0x2000, Self.ramBase + 0x3000),            // below RAM
            (Self.ramBase + 0x1000, end, Self.ramBase + 0x3000),               // just past RAM
            (Self.ramBase + 0x1000, Self.ramBase + 0x2000, end - 0x800),       // used ring straddles the end
            (Self.ramBase + 0x1000, Self.ramBase + 0x2000, 0xFFFF_FFFF_FFFF_FFF0),   // wraps the address space
        ]
        for (i, a) in bad.enumerated() {
            var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
            negotiate(&t, features)
            write(&t, .queueSelector, 0)
            setAreas(&t, a)
            XCTAssertEqual(write(&t, .queueReady, 1), .statusChanged, "case \(i)")
            XCTAssertEqual(read(t, .status), 0x0B | VirtioStatus.deviceNeedsReset, "case \(i)")
            XCTAssertEqual(read(t, .interruptStatus), 2, "§2.1.2: configuration change notification")
            XCTAssertEqual(read(t, .queueReady), 0)
            XCTAssertNil(t.queues[0])
            write(&t, .status, 0x0F)
            XCTAssertFalse(t.isLive, "a broken device never becomes live")
            XCTAssertEqual(write(&t, .queueNotify, 0), .none)
        }
    }

    func testQueueReadyBeforeFeaturesOKMarksNeedsReset() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        write(&t, .status, 0x03)
        XCTAssertEqual(setUpQueue(&t, 0), .statusChanged)
        XCTAssertNil(t.queues[0])
        XCTAssertEqual(read(t, .status), 0x03 | VirtioStatus.deviceNeedsReset)
    }

    func testQueueSettingsAreFrozenWhileReady() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        negotiate(&t, features)
        XCTAssertEqual(setUpQueue(&t, 0, size: 128), .none)
        let before = t.queues[0]?.configuration
        write(&t, .queueSize, 16)
        setAreas(&t, (0x10, 0x20, 0x30))
        XCTAssertEqual(write(&t, .queueReady, 1), .none, "already ready: nothing revalidated")
        XCTAssertEqual(t.queues[0]?.configuration, before)
        XCTAssertEqual(read(t, .status), 0x0B)
    }

    func testQueueReadyZeroStopsTheQueue() {
        var t = liveTransport()
        write(&t, .queueSelector, 1)
        XCTAssertEqual(write(&t, .queueReady, 0), .none)
        XCTAssertEqual(read(t, .queueReady), 0)
        XCTAssertNil(t.withQueue(1) { _ in true })
        XCTAssertEqual(write(&t, .queueNotify, 1), .none)
        XCTAssertEqual(write(&t, .queueNotify, 0), .queueNotify(0), "the other queue keeps running")
    }

    func testQueueReadyTakesOnlyOneOrZero() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        negotiate(&t, features)
        write(&t, .queueSelector, 0)
        setAreas(&t, areas(queue: 0))
        for value: UInt32 in [2, 3, 0x8000_0001] {
            XCTAssertEqual(write(&t, .queueReady, value), .none)
            XCTAssertEqual(read(t, .queueReady), 0, "value \(value)")
        }
        XCTAssertEqual(write(&t, .queueReady, 1), .none)
        XCTAssertEqual(read(t, .queueReady), 1)
    }

    func testNotifyOnlyReachesReadyQueuesOfALiveDevice() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        XCTAssertEqual(write(&t, .queueNotify, 0), .none, "before anything")
        negotiate(&t, features)
        _ = setUpQueue(&t, 0)
        XCTAssertEqual(write(&t, .queueNotify, 0), .none, "ready but before DRIVER_OK")
        write(&t, .status, 0x0F)
        XCTAssertEqual(write(&t, .queueNotify, 0), .queueNotify(0))
        XCTAssertEqual(write(&t, .queueNotify, 1), .none, "queue 1 never readied")
        XCTAssertEqual(write(&t, .queueNotify, 2), .none, "no queue 2")
        XCTAssertEqual(write(&t, .queueNotify, 0xFFFF_FFFF), .none)
        XCTAssertNil(t.withQueue(-1) { _ in true })
        XCTAssertNil(t.withQueue(2) { _ in true })
    }
}
