import XCTest
@testable import VMMCore

/// The configuration blob's passthrough rules (GuestConfiguration.validatePassthrough) and the device
/// tree entry of a passthrough device; the blob's layout and corruptions are in GuestConfigurationTests.swift.
extension GuestConfigurationTests {
    // MARK: - Passthrough rules

    /// `small` with `device` as its only passthrough device (after `others`).
    static func withPassthrough(_ device: PassthroughDevice, after others: [PassthroughDevice] = [],
                                devices: [ConfiguredDevice] = small.devices) -> GuestConfigurationError? {
        var configuration = small
        configuration.devices = devices
        configuration.passthrough = others + [device]
        return validationError(configuration)
    }

    static func rtc(_ change: (inout PassthroughDevice) -> Void) -> PassthroughDevice {
        var device = rtc
        change(&device)
        return device
    }

    func testPassthroughNameIs1To31LowercaseDigitsUnderscoreOrDash() {
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.name = Array("rtc_0-a9".utf8) }))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.name = [UInt8](repeating: 0x61, count: 31) }))
        for bad in ["", "RTC", "rtc@1", "rtc.0", "rtc,0", "rtc 0"] {
            XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.name = Array(bad.utf8) }), .badPassthrough(index: 0), bad)
        }
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.name = [UInt8](repeating: 0x61, count: 32) }),
                       .badPassthrough(index: 0))
    }

    func testPassthroughRegionIsWholePagesAndDoesNotWrap() {
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x0901_0800 }), .badPassthrough(index: 0))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.size = 0x800 }), .badPassthrough(index: 0))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.size = 0 }), .badPassthrough(index: 0))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0xffff_ffff_ffff_f000; $0.size = 0x2000 }),
                       .badPassthrough(index: 0))
        // The end must be representable, as RAM's must: the last page itself is refused.
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0xffff_ffff_ffff_f000 }), .badPassthrough(index: 0))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.address = 0xffff_ffff_ffff_e000 }))
    }

    func testPassthroughInterruptIsAnSPINotTakenByTheUARTOrAVirtioDevice() {
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.interrupt = nil }))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.interrupt = 32 }))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.interrupt = 1019 }))
        // `small` has three virtio devices: INTIDs 48, 49, 50 are theirs, 51 is free.
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.interrupt = 51 }))
        for bad: UInt32 in [0, 27, 31, 33, 48, 50, 1020, 1023] {
            XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.interrupt = bad }), .badPassthrough(index: 0), "\(bad)")
        }
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.interrupt = 48 }, devices: []))
    }

    func testTwoPassthroughDevicesCannotShareAnInterrupt() {
        let gpio = PassthroughDevice(name: Array("pl061".utf8), address: 0x0903_0000, size: 0x1000, interrupt: 34,
                                     compatible: [Array("arm,pl061".utf8)])
        XCTAssertEqual(Self.withPassthrough(gpio, after: [Self.rtc]), .badPassthrough(index: 1))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.interrupt = nil }, after: [Self.rtc { $0.address = 0x0903_0000 }]))
    }

    func testCompatibleIsNonEmptyStringsWithoutNulOfAtMost256BytesInAll() {
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.compatible = [] }), .badPassthrough(index: 0))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.compatible = [[]] }), .badPassthrough(index: 0))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.compatible = [Array("arm,pl031".utf8), []] }),
                       .badPassthrough(index: 0))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.compatible = [Array("arm\0pl031".utf8)] }),
                       .badPassthrough(index: 0))
        // 128 + 127 bytes and their two NULs make 257.
        let long = [[UInt8](repeating: 0x61, count: 128), [UInt8](repeating: 0x62, count: 127)]
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.compatible = long }), .badPassthrough(index: 0))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.compatible = [long[0], Array(long[1].dropLast())] }))
    }

    func testPassthroughMustNotOverlapRAMTheGICTheUARTOrTheConfiguredVirtioTransports() {
        // `small`'s RAM is [0x4000_0000, 0x4800_0000).
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x47ff_f000 }), .passthroughOverlaps(index: 0))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x3fff_f000; $0.size = 0x2000 }),
                       .passthroughOverlaps(index: 0))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.address = 0x4800_0000 }))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.address = 0x3fff_f000 }))
        // GIC distributor, CPU interface, GICH and GICV: [0x0800_0000, 0x0805_0000).
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x0800_0000 }), .passthroughOverlaps(index: 0))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x0804_f000 }), .passthroughOverlaps(index: 0))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x07ff_f000; $0.size = 0x2000 }),
                       .passthroughOverlaps(index: 0))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.address = 0x0805_0000 }))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x0900_0000 }), .passthroughOverlaps(index: 0))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x08ff_f000; $0.size = 0x2000 }),
                       .passthroughOverlaps(index: 0))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.address = 0x0900_1000 }))
        // GICv3: the distributor [0x0800_0000, 0x0801_0000) and the redistributor region
        // [0x080A_0000, 0x0900_0000), whatever the vCPU count; nothing in between.
        func withGICv3(_ device: PassthroughDevice) -> GuestConfigurationError? {
            var configuration = Self.small
            configuration.gicVersion = .v3
            configuration.passthrough = [device]
            return Self.validationError(configuration)
        }
        XCTAssertEqual(withGICv3(Self.rtc { $0.address = 0x0800_f000 }), .passthroughOverlaps(index: 0))
        XCTAssertNil(withGICv3(Self.rtc { $0.address = 0x0801_0000 }))
        XCTAssertNil(withGICv3(Self.rtc { $0.address = 0x0809_f000 }))
        XCTAssertEqual(withGICv3(Self.rtc { $0.address = 0x080A_0000 }), .passthroughOverlaps(index: 0))
        XCTAssertEqual(withGICv3(Self.rtc { $0.address = 0x08ff_f000 }), .passthroughOverlaps(index: 0))
        XCTAssertNil(withGICv3(Self.rtc { $0.address = 0x0900_1000 }))
        // Three transports end at 0x0a00_0600, inside the first page; nine reach into the second.
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x0a00_0000 }), .passthroughOverlaps(index: 0))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.address = 0x0a00_0000 }, devices: []))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.address = 0x0a00_1000 }, devices: Array(repeating: .console, count: 8)))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x0a00_1000 }, devices: Array(repeating: .console, count: 9)),
                       .passthroughOverlaps(index: 0))
    }

    func testPassthroughRegionsMustNotOverlapEachOther() {
        let wide = Self.rtc { $0.address = 0x0c00_0000; $0.size = 0x4000; $0.interrupt = 40 }
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x0c00_3000 }, after: [wide]), .passthroughOverlaps(index: 1))
        XCTAssertEqual(Self.withPassthrough(Self.rtc { $0.address = 0x0bff_f000; $0.size = 0x2000 }, after: [wide]),
                       .passthroughOverlaps(index: 1))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.address = 0x0c00_4000 }, after: [wide]))
        XCTAssertNil(Self.withPassthrough(Self.rtc { $0.address = 0x0bff_f000 }, after: [wide]))
    }

    func testAtMostEightPassthroughDevices() {
        var configuration = GuestConfiguration()
        for n in 0..<9 {
            configuration.passthrough.append(Self.rtc { $0.address = 0x0c00_0000 + 0x1000 * UInt64(n); $0.interrupt = nil })
        }
        XCTAssertEqual(Self.validationError(configuration), .tooManyPassthrough(count: 9))
        configuration.passthrough.removeLast()
        XCTAssertNil(Self.validationError(configuration))
    }

    func testPassthroughDeviceTreeEntryUsesTheSPINumber() {
        XCTAssertEqual(Self.rtc.deviceTreeEntry,
                       .passthrough(name: Array("pl031".utf8), base: 0x0901_0000, size: 0x1000, spi: 2,
                                    compatible: [Array("arm,pl031".utf8), Array("arm,primecell".utf8)]))
        XCTAssertFalse(Self.rtc { $0.interrupt = nil }.deviceTreeEntry.hasInterrupt)
    }
}
