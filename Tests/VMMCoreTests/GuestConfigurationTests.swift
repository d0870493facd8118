import XCTest
@testable import VMMCore

/// The configuration blob: its byte layout, every corruption the VMM must refuse, where devices go,
/// and the guest GuestBoot loads from a configuration.
final class GuestConfigurationTests: XCTestCase {
    static let mac: [UInt8] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]

    /// 128 MiB at 0x4000_0000, 2 vCPUs, "quiet", a read-only disk, a network card and a console.
    static var small: GuestConfiguration {
        GuestConfiguration(ramBase: 0x4000_0000, ramSize: 0x800_0000, vcpuCount: 2, bootargs: Array("quiet".utf8),
                           devices: [.block(readOnly: true), .network(mac: mac), .console])
    }

    /// `small`, byte by byte, as the layout comment in GuestConfiguration.swift specifies.
    static let smallBlob: [UInt8] = [
        0x56, 0x4d, 0x4d, 0x43,                           // @0  magic "VMMC"
        0x01, 0x00, 0x00, 0x00,                           // @4  version 1
        0x45, 0x00, 0x00, 0x00,                           // @8  blob length 69 = 40 + 3·8 + 5
        0x02, 0x00, 0x00, 0x00,                           // @12 vcpu count 2
        0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,   // @16 ram base 0x4000_0000
        0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,   // @24 ram size 0x800_0000
        0x05, 0x00, 0x00, 0x00,                           // @32 bootargs length 5
        0x03, 0x00, 0x00, 0x00,                           // @36 device count 3
        0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   // @40 device 0: block (2), read-only
        0x01, 0x00, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,   // @48 device 1: network (1), MAC @50
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   // @56 device 2: console (3)
        0x71, 0x75, 0x69, 0x65, 0x74,                     // @64 bootargs "quiet"
    ]

    static func decode(_ bytes: [UInt8]) throws(GuestConfigurationError) -> GuestConfiguration {
        // withUnsafeBytes rethrows untyped errors; Result keeps the typed one.
        try bytes.withUnsafeBytes { raw in
            Result { () throws(GuestConfigurationError) in try GuestConfiguration(decoding: raw) }
        }.get()
    }

    /// The error decoding `bytes` throws, or nil when it decodes.
    static func decodeError(_ bytes: [UInt8]) -> GuestConfigurationError? {
        do { _ = try decode(bytes); return nil } catch { return error }
    }

    static func validationError(_ configuration: GuestConfiguration) -> GuestConfigurationError? {
        do { try configuration.validate(); return nil } catch { return error }
    }

    /// `smallBlob` with a little-endian value written at `offset`.
    static func patched<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: [UInt8] = smallBlob) -> [UInt8] {
        var bytes = bytes
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, byte) in raw.enumerated() { bytes[offset + i] = byte }
        }
        return bytes
    }

    // MARK: - Layout

    func testDefaultsAreTheQEMUVirtGuest() {
        let defaults = GuestConfiguration()
        XCTAssertEqual(defaults.ramBase, 0x4000_0000)
        XCTAssertEqual(defaults.ramSize, 0x2000_0000)
        XCTAssertEqual(defaults.vcpuCount, 1)
        XCTAssertEqual(defaults.bootargs, Array("console=ttyAMA0 rdinit=/init".utf8))
        XCTAssertEqual(defaults.devices, [])
    }

    func testMagicIsVMMCInLittleEndian() {
        XCTAssertEqual(Array(GuestConfiguration().encoded().prefix(4)), Array("VMMC".utf8))
        XCTAssertEqual(GuestConfiguration.magic, 0x434d_4d56)
    }

    func testSmallConfigurationEncodesToTheGoldenBytes() {
        XCTAssertEqual(Self.small.encoded(), Self.smallBlob)
    }

    func testGoldenBytesDecodeToTheSmallConfiguration() throws {
        XCTAssertEqual(try Self.decode(Self.smallBlob), Self.small)
    }

    func testDefaultsRoundTrip() throws {
        let defaults = GuestConfiguration()
        let blob = defaults.encoded()
        XCTAssertEqual(blob.count, 40 + 28)
        XCTAssertEqual(try Self.decode(blob), defaults)
    }

    func testFullConfigurationRoundTrips() throws {
        var devices: [ConfiguredDevice] = []
        for n in 0..<32 {
            switch n % 4 {
            case 0: devices.append(.block(readOnly: false))
            case 1: devices.append(.block(readOnly: true))
            case 2: devices.append(.network(mac: [0x02, 0, 0, 0, 0, UInt8(n)]))
            default: devices.append(.console)
            }
        }
        let full = GuestConfiguration(ramBase: 0x1_0000_0000, ramSize: 0x4_0000_0000, vcpuCount: 8,
                                      bootargs: [UInt8](repeating: UInt8(ascii: "x"), count: 2048), devices: devices)
        let blob = full.encoded()
        XCTAssertEqual(blob.count, 40 + 32 * 8 + 2048)
        XCTAssertEqual(try Self.decode(blob), full)
    }

    func testBlobIsReadFromAnUnalignedBufferWithTrailingPadding() throws {
        let bytes = [0xee] + Self.smallBlob + [0, 0, 0]
        let decoded = try bytes.withUnsafeBytes { raw in
            try GuestConfiguration(decoding: UnsafeRawBufferPointer(rebasing: raw[1...]))
        }
        XCTAssertEqual(decoded, Self.small)
    }

    // MARK: - Corrupt blobs

    func testEveryTruncationIsRejectedAsTooShort() {
        for length in 0..<Self.smallBlob.count {
            XCTAssertEqual(Self.decodeError(Array(Self.smallBlob.prefix(length))), .tooShort, "cut at \(length)")
        }
    }

    func testEveryTruncationOfAFullBlobThrows() {
        let blob = GuestConfiguration(devices: [.console, .network(mac: Self.mac), .block(readOnly: false)]).encoded()
        for length in 0..<blob.count {
            XCTAssertNotNil(Self.decodeError(Array(blob.prefix(length))), "cut at \(length)")
        }
    }

    func testWrongMagicIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(ascii: "W"), at: 0)), .badMagic(found: 0x434d_4d57))
    }

    func testOtherVersionIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(2), at: 4)), .unsupportedVersion(2))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(0), at: 4)), .unsupportedVersion(0))
    }

    func testBlobLengthDisagreeingWithItsContentsIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(70), at: 8) + [0]), .badLength(declared: 70, computed: 69))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(68), at: 8)), .badLength(declared: 68, computed: 69))
        // A bootargs length one larger than written: the blob's own length no longer adds up.
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(6), at: 32)), .badLength(declared: 69, computed: 70))
    }

    func testDeviceCountPastThirtyTwoIsRejectedBeforeAnyRecordIsRead() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(33), at: 36)), .tooManyDevices(count: 33))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32.max, at: 36)), .tooManyDevices(count: Int(UInt32.max)))
    }

    func testBootargsLengthPast2048IsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(2049), at: 32)), .bootargsTooLong(length: 2049))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32.max, at: 32)), .bootargsTooLong(length: Int(UInt32.max)))
    }

    func testVCPUCountOutside1To8IsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(0), at: 12)), .badVCPUCount(0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(9), at: 12)), .badVCPUCount(9))
        XCTAssertNil(Self.decodeError(Self.patched(UInt32(8), at: 12)))
    }

    func testRAMNotOn2MiBBoundariesIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt64(0x4010_0000), at: 16)), .ramNotAligned)
        XCTAssertEqual(Self.decodeError(Self.patched(UInt64(0x800_1000), at: 24)), .ramNotAligned)
    }

    func testEmptyRAMIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt64(0), at: 24)), .ramEmpty)
    }

    func testRAMWrappingPastTheAddressSpaceIsRejected() {
        let base = Self.patched(UInt64(0xffff_ffff_ffe0_0000), at: 16)
        XCTAssertEqual(Self.decodeError(Self.patched(UInt64(0x40_0000), at: 24, in: base)), .ramEndsPastAddressSpace)
    }

    func testRAMOverTheBoardsDevicesIsRejected() {
        // 128 MiB from the GIC distributor's address covers the GIC, the UART and the virtio window.
        XCTAssertEqual(Self.decodeError(Self.patched(UInt64(0x0800_0000), at: 16)), .ramOverlapsDevices)
        // Ending exactly at the GIC distributor, or starting right after the virtio window, is fine.
        let below = GuestConfiguration(ramBase: 0, ramSize: 0x0800_0000)
        XCTAssertNil(Self.validationError(below))
        let above = GuestConfiguration(ramBase: 0x0a20_0000, ramSize: 0x20_0000)
        XCTAssertNil(Self.validationError(above))
        let touching = GuestConfiguration(ramBase: 0x0a00_0000, ramSize: 0x20_0000)
        XCTAssertEqual(Self.validationError(touching), .ramOverlapsDevices)
    }

    func testUnknownDeviceKindIsRejectedWithItsIndex() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0), at: 56)), .badDevice(index: 2))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(4), at: 40)), .badDevice(index: 0))
    }

    func testUnknownFlagBitsAreRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x03), at: 41)), .badDevice(index: 0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x01), at: 49)), .badDevice(index: 1))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x01), at: 57)), .badDevice(index: 2))
    }

    func testMACBytesOnADeviceThatIsNotANetworkCardAreRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x02), at: 47)), .badDevice(index: 0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x02), at: 58)), .badDevice(index: 2))
    }

    func testMulticastOrZeroMACIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x53), at: 50)), .badMAC(index: 1))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(0), at: 52, in: Self.patched(UInt16(0), at: 50))),
                       .badMAC(index: 1))
    }

    func testNulInBootargsIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0), at: 66)), .bootargsContainNul)
    }

    // MARK: - Validation of configurations built by the host tool

    func testValidationAppliesTheLimitsToABuiltConfiguration() {
        XCTAssertNil(Self.validationError(Self.small))
        XCTAssertEqual(Self.validationError(GuestConfiguration(devices: [.console, .network(mac: [0x02, 0, 0, 0, 1])])),
                       .badMAC(index: 1))
        XCTAssertEqual(Self.validationError(GuestConfiguration(devices: Array(repeating: .console, count: 33))),
                       .tooManyDevices(count: 33))
        XCTAssertEqual(Self.validationError(GuestConfiguration(bootargs: Array(repeating: 0x41, count: 2049))),
                       .bootargsTooLong(length: 2049))
        XCTAssertEqual(Self.validationError(GuestConfiguration(vcpuCount: 9)), .badVCPUCount(9))
    }

    // MARK: - Placements

    func testDeviceNSitsInSlotNWithSPI16PlusN() {
        let placed = Self.small.placements { _ in 2048 }
        XCTAssertEqual(placed.map(\.base.raw), [0x0a00_0000, 0x0a00_0200, 0x0a00_0400])
        XCTAssertEqual(placed.map(\.interrupt), [48, 49, 50])
        XCTAssertEqual(placed.map(\.kind), [.block(capacitySectors: 2048, readOnly: true),
                                            .network(mac: Self.mac), .console])
    }

    func testBlockCapacityIsAskedByBlockIndexAndMissingBackendIsAnEmptyDisk() {
        let configuration = GuestConfiguration(devices: [.console, .block(readOnly: false), .network(mac: Self.mac),
                                                         .block(readOnly: true)])
        var asked: [Int] = []
        let placed = configuration.placements { index in
            asked.append(index)
            return index == 0 ? 100 : nil
        }
        XCTAssertEqual(asked, [0, 1])
        XCTAssertEqual(placed.count, 4)
        XCTAssertEqual(placed[1].kind, .block(capacitySectors: 100, readOnly: false))
        XCTAssertEqual(placed[3].kind, .block(capacitySectors: 0, readOnly: true))
        XCTAssertEqual(placed[3].base.raw, 0x0a00_0600)
        XCTAssertEqual(placed[3].interrupt, 51)
    }

    // MARK: - Booting from a configuration

    /// 8 MiB of guest RAM at 0x4000_0000 and a 1 MiB kernel.
    func withGuest(ramSize: UInt64 = 0x80_0000,
                   _ body: (GuestMemory, UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        let host = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(ramSize), alignment: 4096)
        defer { host.deallocate() }
        host.initializeMemory(as: UInt8.self, repeating: 0)
        let memory = GuestMemory(base: GuestPhysicalAddress(0x4000_0000), size: ramSize, host: host.baseAddress!)
        let kernel = ImageHeaderFixture.bytes(imageSize: 0x10_0000)
        try kernel.withUnsafeBytes { try body(memory, $0, host) }
    }

    static func contains(_ haystack: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<start + needle.count]) == needle { return true }
        }
        return false
    }

    func testLoadTakesBootargsVCPUsAndDevicesFromTheConfiguration() throws {
        let configuration = GuestConfiguration(ramSize: 0x80_0000, vcpuCount: 2, bootargs: Array("quiet loglevel=3".utf8),
                                               devices: [.console, .console])
        try withGuest { memory, kernel, host in
            let guest = try Result { () throws(GuestBootError) in
                try GuestBoot.load(into: memory, kernel: kernel, initrd: nil, configuration: configuration,
                                   devices: configuration.placements { _ in nil })
            }.get()
            // booting.rst: x0 holds the DTB's address; the DTB starts at the next 2 MiB after the kernel.
            XCTAssertEqual(guest.registers.read(0), 0x4020_0000)
            let dtb = UnsafeRawBufferPointer(rebasing: host[0x20_0000..<0x20_0000 + Int(guest.deviceTreeSize)])
            XCTAssertTrue(Self.contains(dtb, Array("quiet loglevel=3\0".utf8)))
            XCTAssertTrue(Self.contains(dtb, Array("cpu@1\0".utf8)))
            XCTAssertFalse(Self.contains(dtb, Array("cpu@2\0".utf8)))
            XCTAssertTrue(Self.contains(dtb, Array("virtio_mmio@a000200\0".utf8)))
            XCTAssertFalse(Self.contains(dtb, Array("virtio_mmio@a000400\0".utf8)))
        }
    }

    func testLoadRefusesMemoryThatIsNotTheConfiguredRAM() throws {
        try withGuest { memory, kernel, _ in
            let configuration = GuestConfiguration(ramSize: 0x100_0000)
            XCTAssertThrowsError(try GuestBoot.load(into: memory, kernel: kernel, initrd: nil,
                                                    configuration: configuration, devices: [])) { error in
                XCTAssertEqual(error as? GuestBootError, .memoryDisagreesWithConfiguration)
            }
        }
    }

    func testLoadRefusesAnInvalidConfigurationInsteadOfTrapping() throws {
        try withGuest { memory, kernel, _ in
            let configuration = GuestConfiguration(ramSize: 0x80_0000, vcpuCount: 0)
            XCTAssertThrowsError(try GuestBoot.load(into: memory, kernel: kernel, initrd: nil,
                                                    configuration: configuration, devices: [])) { error in
                XCTAssertEqual(error as? GuestBootError, .configuration(.badVCPUCount(0)))
            }
        }
    }
}
