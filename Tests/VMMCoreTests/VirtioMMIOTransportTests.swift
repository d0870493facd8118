// Tests of the virtio-mmio transport, played as the guest's driver would: 32-bit register accesses at
// the offsets of virtio 1.2 §4.2.2, the §3.1.1 initialization sequence, and the hostile cases — bad
// selectors, bad queue sizes, rings outside RAM, notifications too early, features without
// VERSION_1, wrong widths and misaligned offsets. A tiny fake block-like model records what the
// transport asks of it.

import XCTest
@testable import VMMCore

/// A device model with two queues of at most 256 entries and a 16-byte configuration space.
struct FakeMMIODeviceModel: VirtioDeviceModel {
    var deviceType: VirtioDeviceType { .block }
    var deviceFeatures: UInt64 { 1 << 5 | 1 << 9 }          // two device-specific bits
    var queueCount: Int { 2 }
    var maximumQueueSize: UInt16 { 256 }
    var configuration: [UInt8] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                  0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00]
    var refusesFeatures = false
    var negotiated: [UInt64] = []
    var configurationWrites: [(offset: UInt64, width: Int, value: UInt32)] = []
    var resets = 0

    func configurationRead(offset: UInt64, width: Int) -> UInt32? {
        guard offset + UInt64(width) <= UInt64(configuration.count) else { return nil }
        var value: UInt32 = 0
        for i in 0..<width { value |= UInt32(configuration[Int(offset) + i]) << (8 * i) }
        return value
    }
    mutating func configurationWrite(offset: UInt64, width: Int, value: UInt32) {
        configurationWrites.append((offset, width, value))
    }
    mutating func negotiate(features: UInt64) -> Bool {
        negotiated.append(features)
        return !refusesFeatures
    }
    mutating func reset() { resets += 1 }
}

typealias FakeMMIOTransport = VirtioMMIOTransport<FakeMMIODeviceModel>

final class VirtioMMIOTransportTests: XCTestCase {
    static let ramBase: UInt64 = 0x4000_0000
    static let ramSize: UInt64 = 0x10000
    var host: UnsafeMutableRawPointer!
    var memory: GuestMemory!

    override func setUp() {
        host = UnsafeMutableRawPointer.allocate(byteCount: Int(Self.ramSize), alignment: 16)
        host.initializeMemory(as: UInt8.self, repeating: 0, count: Int(Self.ramSize))
        memory = GuestMemory(base: GuestPhysicalAddress(Self.ramBase), size: Self.ramSize, host: host)
    }

    override func tearDown() { host.deallocate() }

    // MARK: Playing the driver

    @discardableResult
    func write(_ t: inout FakeMMIOTransport, _ register: VirtioMMIORegister, _ value: UInt32) -> VirtioMMIOEffect {
        t.write(offset: register.rawValue, width: 4, value: value, memory: memory)
    }

    func read(_ t: FakeMMIOTransport, _ register: VirtioMMIORegister) -> UInt32 {
        t.read(offset: register.rawValue, width: 4)
    }

    /// Areas of queue n inside RAM, sized for 256 entries: descriptors 4 KiB, driver and device area
    /// one page each.
    func areas(queue n: UInt64) -> (UInt64, UInt64, UInt64) {
        let base = Self.ramBase + 0x1000 + n * 0x3000
        return (base, base + 0x1000, base + 0x2000)
    }

    func setAreas(_ t: inout FakeMMIOTransport, _ a: (UInt64, UInt64, UInt64)) {
        write(&t, .queueDescriptorLow, UInt32(truncatingIfNeeded: a.0))
        write(&t, .queueDescriptorHigh, UInt32(truncatingIfNeeded: a.0 >> 32))
        write(&t, .queueDriverLow, UInt32(truncatingIfNeeded: a.1))
        write(&t, .queueDriverHigh, UInt32(truncatingIfNeeded: a.1 >> 32))
        write(&t, .queueDeviceLow, UInt32(truncatingIfNeeded: a.2))
        write(&t, .queueDeviceHigh, UInt32(truncatingIfNeeded: a.2 >> 32))
    }

    func writeDriverFeatures(_ t: inout FakeMMIOTransport, _ features: UInt64) {
        write(&t, .driverFeaturesSelector, 1)
        write(&t, .driverFeatures, UInt32(truncatingIfNeeded: features >> 32))
        write(&t, .driverFeaturesSelector, 0)
        write(&t, .driverFeatures, UInt32(truncatingIfNeeded: features))
    }

    /// §3.1.1 steps 1–6 with `features`; returns the status read back after FEATURES_OK.
    @discardableResult
    func negotiate(_ t: inout FakeMMIOTransport, _ features: UInt64) -> UInt32 {
        write(&t, .status, 0)
        write(&t, .status, VirtioStatus.acknowledge)
        write(&t, .status, VirtioStatus.acknowledge | VirtioStatus.driver)
        writeDriverFeatures(&t, features)
        write(&t, .status, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)
        return read(t, .status)
    }

    func setUpQueue(_ t: inout FakeMMIOTransport, _ n: UInt32, size: UInt32 = 256) -> VirtioMMIOEffect {
        write(&t, .queueSelector, n)
        write(&t, .queueSize, size)
        setAreas(&t, areas(queue: UInt64(n)))
        return write(&t, .queueReady, 1)
    }

    let features: UInt64 = VirtioFeature.version1 | VirtioFeature.ringEventIndex | 1 << 9

    /// A device that went through the whole initialization sequence with both queues ready.
    func liveTransport() -> FakeMMIOTransport {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        negotiate(&t, features)
        _ = setUpQueue(&t, 0)
        _ = setUpQueue(&t, 1)
        write(&t, .status, 0x0F)
        return t
    }

    // MARK: Identification and features

    func testIdentificationRegistersHaveVersion2Values() {
        let t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        XCTAssertEqual(read(t, .magicValue), 0x7472_6976, "\"virt\" little-endian")
        XCTAssertEqual(read(t, .version), 2, "modern virtio-mmio")
        XCTAssertEqual(read(t, .deviceID), 2, "virtio-blk")
        XCTAssertEqual(read(t, .vendorID), 0x534D_4D56)
        XCTAssertEqual(read(t, .configurationGeneration), 0)
    }

    func testDeviceFeaturesOfferModelAndRingFeaturesInTwoWords() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        XCTAssertEqual(read(t, .deviceFeatures), 1 << 5 | 1 << 9 | 1 << 28 | 1 << 29)
        write(&t, .deviceFeaturesSelector, 1)
        XCTAssertEqual(read(t, .deviceFeatures), 1, "VIRTIO_F_VERSION_1 is bit 32")
        for selector: UInt32 in [2, 3, 0xFFFF_FFFF] {
            write(&t, .deviceFeaturesSelector, selector)
            XCTAssertEqual(read(t, .deviceFeatures), 0, "no feature bits past 63")
        }
    }

    // MARK: §3.1.1 initialization

    func testWholeInitializationSequenceMakesTheDeviceLive() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        XCTAssertEqual(write(&t, .status, 0), .reset)
        XCTAssertEqual(write(&t, .status, VirtioStatus.acknowledge), .statusChanged)
        XCTAssertEqual(write(&t, .status, VirtioStatus.acknowledge | VirtioStatus.driver), .statusChanged)
        writeDriverFeatures(&t, features)
        XCTAssertEqual(write(&t, .status, 0x0B), .statusChanged)
        XCTAssertEqual(read(t, .status), 0x0B, "FEATURES_OK accepted and still set on re-read")
        XCTAssertEqual(t.negotiatedFeatures, features)
        XCTAssertEqual(t.model.negotiated, [features])

        for n: UInt32 in 0..<2 {
            write(&t, .queueSelector, n)
            XCTAssertEqual(read(t, .queueReady), 0, "queue not in use yet")
            XCTAssertEqual(read(t, .queueSizeMaximum), 256)
            XCTAssertEqual(setUpQueue(&t, n, size: n == 0 ? 256 : 64), .none)
            XCTAssertEqual(read(t, .queueReady), 1)
        }
        XCTAssertFalse(t.isLive, "not live before DRIVER_OK")
        XCTAssertEqual(write(&t, .status, 0x0F), .statusChanged)
        XCTAssertEqual(read(t, .status), 0x0F)
        XCTAssertTrue(t.isLive)

        let (desc, driver, device) = areas(queue: 1)
        XCTAssertEqual(t.withQueue(1) { $0.configuration },
                       VirtqueueConfiguration(size: 64, descriptorTable: GuestPhysicalAddress(desc),
                                              availableRing: GuestPhysicalAddress(driver),
                                              usedRing: GuestPhysicalAddress(device)))
        XCTAssertEqual(t.withQueue(0) { $0.configuration.size }, 256)
        XCTAssertEqual(write(&t, .queueNotify, 1), .queueNotify(1))
        XCTAssertEqual(write(&t, .queueNotify, 0), .queueNotify(0))
    }

    func testQueueAreasAboveFourGiBUseBothAddressWords() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        negotiate(&t, features)
        write(&t, .queueSelector, 0)
        setAreas(&t, (Self.ramBase + 0x1000 + (1 << 32), Self.ramBase + 0x2000, Self.ramBase + 0x3000))
        XCTAssertEqual(write(&t, .queueReady, 1), .statusChanged, "high word puts the table outside RAM")
        XCTAssertNotEqual(read(t, .status) & VirtioStatus.deviceNeedsReset, 0)
    }

    // MARK: Feature negotiation (§2.2)

    func testFeaturesWithoutVersion1AreRefused() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        let status = negotiate(&t, VirtioFeature.ringEventIndex | 1 << 9)
        XCTAssertEqual(status, 0x03, "FEATURES_OK left clear for the driver to see")
        XCTAssertEqual(t.negotiatedFeatures, 0)
        XCTAssertEqual(t.model.negotiated, [], "the model is not asked about a legacy driver")
        write(&t, .status, 0x07)
        XCTAssertEqual(read(t, .status), 0x03, "DRIVER_OK ignored without FEATURES_OK")
        XCTAssertFalse(t.isLive)
    }

    func testFeaturesNotOfferedAreRefused() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        XCTAssertEqual(negotiate(&t, VirtioFeature.version1 | 1 << 0), 0x03, "bit 0 is not offered")
        XCTAssertEqual(negotiate(&t, VirtioFeature.version1 | 1 << 34), 0x03, "VIRTIO_F_RING_PACKED not offered")
        XCTAssertEqual(negotiate(&t, VirtioFeature.version1 | VirtioFeature.ringIndirectDescriptors), 0x0B)
    }

    func testModelCanRefuseFeatures() {
        var model = FakeMMIODeviceModel()
        model.refusesFeatures = true
        var t = FakeMMIOTransport(model: model)
        XCTAssertEqual(negotiate(&t, features), 0x03)
        XCTAssertEqual(t.model.negotiated, [features])
        XCTAssertEqual(t.negotiatedFeatures, 0)
    }

    func testDriverFeaturesAreFixedOnceFeaturesOKIsSet() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        negotiate(&t, features)
        writeDriverFeatures(&t, VirtioFeature.version1 | VirtioFeature.ringIndirectDescriptors)
        write(&t, .status, 0x0B)
        XCTAssertEqual(t.negotiatedFeatures, features)
        XCTAssertEqual(t.model.negotiated.count, 1, "FEATURES_OK negotiates once")
    }

    func testDriverFeaturesPastBit63AreIgnored() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        write(&t, .status, 0x03)
        writeDriverFeatures(&t, VirtioFeature.version1)
        write(&t, .driverFeaturesSelector, 2)
        write(&t, .driverFeatures, 0xFFFF_FFFF)
        write(&t, .status, 0x0B)
        XCTAssertEqual(t.negotiatedFeatures, VirtioFeature.version1)
    }

    // MARK: Status (§2.1)

    func testDriverCannotClearStatusBitsOrSetNeedsReset() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        write(&t, .status, 0x03)
        XCTAssertEqual(write(&t, .status, 0x01), .none)
        XCTAssertEqual(read(t, .status), 0x03)
        write(&t, .status, 0x03 | VirtioStatus.deviceNeedsReset | 0x30)
        XCTAssertEqual(read(t, .status), 0x03, "bit 6 is the device's; bits 4 and 5 are reserved")
    }

    func testFailedStatusStopsTheDevice() {
        var t = liveTransport()
        write(&t, .status, 0x0F | VirtioStatus.failed)
        XCTAssertFalse(t.isLive)
        XCTAssertNil(t.withQueue(0) { _ in true })
        XCTAssertEqual(write(&t, .queueNotify, 0), .none)
    }

    func testWritingZeroToStatusResetsTransportAndModel() {
        var t = liveTransport()
        t.raiseUsedBufferInterrupt()
        write(&t, .queueSelector, 1)
        write(&t, .deviceFeaturesSelector, 1)
        let resetsBefore = t.model.resets
        XCTAssertEqual(write(&t, .status, 0), .reset)
        XCTAssertEqual(t.model.resets, resetsBefore + 1)
        XCTAssertEqual(read(t, .status), 0)
        XCTAssertEqual(read(t, .interruptStatus), 0, "§4.2.2.1: reset clears InterruptStatus")
        XCTAssertEqual(t.negotiatedFeatures, 0)
        XCTAssertEqual(t.queues.count, 2)
        XCTAssertTrue(t.queues.allSatisfy { $0 == nil })
        XCTAssertEqual(read(t, .deviceFeatures), 1 << 5 | 1 << 9 | 1 << 28 | 1 << 29, "selector back to 0")
        XCTAssertEqual(read(t, .queueReady), 0, "queue 0 selected, not ready")
        // The old areas are forgotten: address 0 is outside RAM.
        negotiate(&t, features)
        XCTAssertEqual(write(&t, .queueReady, 1), .statusChanged)
        XCTAssertNotEqual(read(t, .status) & VirtioStatus.deviceNeedsReset, 0)
    }

    // MARK: Interrupts and needs-reset

    func testInterruptStatusIsSetByEventsAndClearedByAcknowledge() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        t.raiseUsedBufferInterrupt()
        XCTAssertEqual(read(t, .interruptStatus), 0, "§3.1.2: no used buffer notification before DRIVER_OK")
        t = liveTransport()
        t.raiseUsedBufferInterrupt()
        XCTAssertEqual(read(t, .interruptStatus), 1)
        t.raiseConfigurationChange()
        XCTAssertEqual(read(t, .interruptStatus), 3)
        XCTAssertEqual(read(t, .configurationGeneration), 1)
        XCTAssertEqual(write(&t, .interruptAcknowledge, 1), .interruptAcknowledged)
        XCTAssertEqual(read(t, .interruptStatus), 2)
        XCTAssertEqual(write(&t, .interruptAcknowledge, 0xFFFF_FFFF), .interruptAcknowledged)
        XCTAssertEqual(t.interruptStatus, 0)
        t.raiseConfigurationChange()
        XCTAssertEqual(read(t, .configurationGeneration), 2)
        XCTAssertEqual(write(&t, .interruptStatus, 0), .none, "InterruptStatus is read-only")
        XCTAssertEqual(t.interruptStatus, 2)
    }

    func testMarkNeedsResetStopsQueuesUntilReset() {
        var t = liveTransport()
        t.markNeedsReset()
        XCTAssertEqual(read(t, .status), 0x0F | VirtioStatus.deviceNeedsReset)
        XCTAssertEqual(read(t, .interruptStatus), 2)
        XCTAssertFalse(t.isLive)
        XCTAssertNil(t.withQueue(0) { _ in true })
        XCTAssertEqual(write(&t, .queueNotify, 0), .none)
        write(&t, .queueSelector, 1)
        write(&t, .queueReady, 0)
        XCTAssertEqual(write(&t, .queueReady, 1), .none, "nothing restarts on a broken device")
        XCTAssertNil(t.queues[1])
        // Recovery is a reset and a fresh initialization.
        write(&t, .status, 0)
        negotiate(&t, features)
        XCTAssertEqual(setUpQueue(&t, 0), .none)
        write(&t, .status, 0x0F)
        XCTAssertTrue(t.isLive)
        XCTAssertEqual(t.withQueue(0) { $0.configuration.size }, 256)
    }

    // MARK: Device configuration space (§4.2.2.2)

    func testConfigurationSpaceReadsAtEachWidth() {
        let t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        XCTAssertEqual(t.read(offset: 0x100, width: 1), 0x11)
        XCTAssertEqual(t.read(offset: 0x103, width: 1), 0x44)
        XCTAssertEqual(t.read(offset: 0x102, width: 2), 0x4433)
        XCTAssertEqual(t.read(offset: 0x104, width: 4), 0x8877_6655)
        XCTAssertEqual(t.read(offset: 0x10C, width: 4), 0x00FF_EEDD)
        XCTAssertEqual(t.read(offset: 0x101, width: 2), 0, "misaligned halfword")
        XCTAssertEqual(t.read(offset: 0x102, width: 4), 0, "misaligned word")
        XCTAssertEqual(t.read(offset: 0x100, width: 8), 0, "64-bit fields are two word reads")
        XCTAssertEqual(t.read(offset: 0x100, width: 3), 0)
        XCTAssertEqual(t.read(offset: 0x110, width: 4), 0, "past the model's configuration")
        XCTAssertEqual(t.read(offset: 0x1FC, width: 4), 0)
        XCTAssertEqual(t.read(offset: 0x200, width: 1), 0, "past the window")
    }

    func testConfigurationWritesReachTheModelOnlyWhenAligned() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        XCTAssertEqual(t.write(offset: 0x108, width: 4, value: 0xCAFE_F00D, memory: memory), .none)
        XCTAssertEqual(t.write(offset: 0x10A, width: 2, value: 0xFFFF_1234, memory: memory), .none)
        XCTAssertEqual(t.write(offset: 0x10B, width: 1, value: 0x1FF, memory: memory), .none)
        XCTAssertEqual(t.write(offset: 0x109, width: 2, value: 1, memory: memory), .none)       // misaligned
        XCTAssertEqual(t.write(offset: 0x100, width: 8, value: 1, memory: memory), .none)       // no 64-bit access
        XCTAssertEqual(t.write(offset: 0x200, width: 4, value: 1, memory: memory), .none)       // past the window
        XCTAssertEqual(t.write(offset: 0x30C, width: 4, value: 1, memory: memory), .none)
        let writes = t.model.configurationWrites
        XCTAssertEqual(writes.map { $0.offset }, [8, 10, 11])
        XCTAssertEqual(writes.map { $0.width }, [4, 2, 1])
        XCTAssertEqual(writes.map { $0.value }, [0xCAFE_F00D, 0x1234, 0xFF], "values cut to the access width")
    }

    // MARK: Widths, alignment, reserved offsets

    func testControlRegistersReadZeroAtAnyWidthButFour() {
        var t = liveTransport()
        t.raiseUsedBufferInterrupt()
        for offset: UInt64 in stride(from: 0, to: 0x100, by: 1) {
            for width in [1, 2, 8] {
                XCTAssertEqual(t.read(offset: offset, width: width), 0, "offset \(offset) width \(width)")
            }
            if offset % 4 != 0 {
                XCTAssertEqual(t.read(offset: offset, width: 4), 0, "misaligned offset \(offset)")
            }
        }
    }

    func testWriteOnlyAndReservedRegistersReadZero() {
        var t = liveTransport()
        write(&t, .deviceFeaturesSelector, 1)
        let writeOnly: [VirtioMMIORegister] = [
            .deviceFeaturesSelector, .driverFeatures, .driverFeaturesSelector, .queueSelector, .queueSize,
            .queueNotify, .interruptAcknowledge, .queueDescriptorLow, .queueDescriptorHigh, .queueDriverLow,
            .queueDriverHigh, .queueDeviceLow, .queueDeviceHigh, .sharedMemorySelector,
            .sharedMemoryBaseLow, .sharedMemoryBaseHigh, .queueReset,
        ]
        for register in writeOnly { XCTAssertEqual(read(t, register), 0, "\(register)") }
        for offset: UInt64 in [0x018, 0x01C, 0x028, 0x03C, 0x040, 0x048, 0x054, 0x068, 0x074, 0x088, 0x0A8, 0x0C4, 0x0F8] {
            XCTAssertEqual(t.read(offset: offset, width: 4), 0, "reserved offset \(offset)")
        }
        XCTAssertEqual(read(t, .sharedMemoryLengthLow), 0xFFFF_FFFF, "§4.2.2: length -1, no such region")
        XCTAssertEqual(read(t, .sharedMemoryLengthHigh), 0xFFFF_FFFF)
    }

    func testWritesOfWrongWidthOrAtMisalignedOffsetsAreIgnored() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        for width in [1, 2, 8] {
            XCTAssertEqual(t.write(offset: 0x070, width: width, value: 0x01, memory: memory), .none)
        }
        for offset: UInt64 in [0x071, 0x072, 0x073, 0x06F] {
            XCTAssertEqual(t.write(offset: offset, width: 4, value: 0x01, memory: memory), .none)
        }
        XCTAssertEqual(read(t, .status), 0)
        XCTAssertEqual(t.write(offset: 0x030, width: 2, value: 1, memory: memory), .none)       // QueueSel as a halfword
        XCTAssertEqual(read(t, .queueSizeMaximum), 256, "queue 0 still selected")
        XCTAssertEqual(t.model.resets, 0, "a halfword zero to Status is no reset")
        XCTAssertEqual(t.write(offset: 0x070, width: 2, value: 0, memory: memory), .none)
        XCTAssertEqual(t.model.resets, 0)
    }

    func testReadOnlyRegistersIgnoreWrites() {
        var t = FakeMMIOTransport(model: FakeMMIODeviceModel())
        let readOnly: [VirtioMMIORegister] = [
            .magicValue, .version, .deviceID, .vendorID, .deviceFeatures, .queueSizeMaximum,
            .interruptStatus, .sharedMemoryLengthLow, .configurationGeneration,
        ]
        for register in readOnly { XCTAssertEqual(write(&t, register, 0xDEAD_BEEF), .none) }
        XCTAssertEqual(read(t, .magicValue), 0x7472_6976)
        XCTAssertEqual(read(t, .version), 2)
        XCTAssertEqual(read(t, .deviceID), 2)
        XCTAssertEqual(read(t, .deviceFeatures), 1 << 5 | 1 << 9 | 1 << 28 | 1 << 29)
        XCTAssertEqual(read(t, .queueSizeMaximum), 256)
        XCTAssertEqual(read(t, .configurationGeneration), 0)
    }
}
