import XCTest
@testable import VMMCore

/// The configuration blob: its byte layout, every corruption the VMM must refuse, where devices go,
/// the passthrough rules, and the guest GuestBoot loads from a configuration.
final class GuestConfigurationTests: XCTestCase {
    static let mac: [UInt8] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]

    /// QEMU virt's PL031 RTC: one page at 0x0901_0000, SPI 2 (INTID 34).
    static var rtc: PassthroughDevice {
        PassthroughDevice(name: Array("pl031".utf8), address: 0x0901_0000, size: 0x1000, interrupt: 34,
                          compatible: [Array("arm,pl031".utf8), Array("arm,primecell".utf8)])
    }

    /// 128 MiB at 0x4000_0000, 2 vCPUs, "quiet", a read-only disk, a network card, a console and the RTC.
    static var small: GuestConfiguration {
        GuestConfiguration(ramBase: 0x4000_0000, ramSize: 0x800_0000, vcpuCount: 2, bootargs: Array("quiet".utf8),
                           devices: [.block(readOnly: true), .network(mac: mac), .console], passthrough: [rtc])
    }

    /// `small`, byte by byte, as the layout comment in GuestConfiguration.swift specifies.
    static let smallBlob: [UInt8] = [
        0x56, 0x4d, 0x4d, 0x43,                           // @0  magic "VMMC"
        0x02, 0x00, 0x00, 0x00,                           // @4  version 2
        0x82, 0x00, 0x00, 0x00,                           // @8  blob length 130 = 48 + 3·8 + 53 + 5
        0x02, 0x00, 0x00, 0x00,                           // @12 vcpu count 2
        0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,   // @16 ram base 0x4000_0000
        0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,   // @24 ram size 0x800_0000
        0x05, 0x00, 0x00, 0x00,                           // @32 bootargs length 5
        0x03, 0x00, 0x00, 0x00,                           // @36 device count 3
        0x01, 0x00, 0x00, 0x00,                           // @40 passthrough count 1
        0x35, 0x00, 0x00, 0x00,                           // @44 passthrough length 53 = 24 + 5 + 24
        0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   // @48 device 0: block (2), read-only
        0x01, 0x00, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,   // @56 device 1: network (1), MAC @58
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   // @64 device 2: console (3)
        0x00, 0x00, 0x01, 0x09, 0x00, 0x00, 0x00, 0x00,   // @72 passthrough 0: address 0x0901_0000
        0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   // @80   size 0x1000
        0x22, 0x00, 0x00, 0x00,                           // @88   interrupt: INTID 34
        0x05, 0x00, 0x18, 0x00,                           // @92   name length 5, reserved, compatible length 24
        0x70, 0x6c, 0x30, 0x33, 0x31,                     // @96   name "pl031"
        0x61, 0x72, 0x6d, 0x2c, 0x70, 0x6c, 0x30, 0x33, 0x31, 0x00,                   // @101 "arm,pl031\0"
        0x61, 0x72, 0x6d, 0x2c, 0x70, 0x72, 0x69, 0x6d, 0x65, 0x63, 0x65, 0x6c, 0x6c, 0x00, // @111 "arm,primecell\0"
        0x71, 0x75, 0x69, 0x65, 0x74,                     // @125 bootargs "quiet"
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
        XCTAssertEqual(defaults.gicVersion, .v2)
        XCTAssertEqual(defaults.bootargs, Array("console=ttyAMA0 rdinit=/init".utf8))
        XCTAssertEqual(defaults.devices, [])
        XCTAssertEqual(defaults.passthrough, [])
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

    /// `small` with a GICv3 and 20 vCPUs: version 3, whose header has gic_version at 48.
    static var smallGICv3: GuestConfiguration {
        var configuration = small
        configuration.gicVersion = .v3
        configuration.vcpuCount = 20
        return configuration
    }

    static var smallGICv3Blob: [UInt8] {
        var bytes = patched(UInt32(3), at: 4)
        bytes = patched(UInt32(134), at: 8, in: bytes)     // 52 + 3·8 + 53 + 5
        bytes = patched(UInt32(20), at: 12, in: bytes)
        bytes.insert(contentsOf: [0x03, 0x00, 0x00, 0x00], at: 48)
        return bytes
    }

    func testAGICv3ConfigurationEncodesAsVersion3() throws {
        XCTAssertEqual(Self.smallGICv3.encoded(), Self.smallGICv3Blob)
        XCTAssertEqual(try Self.decode(Self.smallGICv3Blob), Self.smallGICv3)
        XCTAssertEqual(try Self.decode(Self.smallBlob).gicVersion, .v2, "a version 2 blob is a GICv2 guest")
    }

    func testVersion3WithGICv2DecodesAndReencodesAsVersion2() throws {
        var blob = Self.smallGICv3Blob
        blob[48] = 2
        blob = Self.patched(UInt32(2), at: 12, in: blob)
        XCTAssertEqual(try Self.decode(blob), Self.small)
        XCTAssertEqual(try Self.decode(blob).encoded(), Self.smallBlob)
    }

    func testVersion3BlobsAreCheckedLikeVersion2() {
        for bad: UInt32 in [0, 1, 4, 0x103, UInt32.max] {
            XCTAssertEqual(Self.decodeError(Self.patched(bad, at: 48, in: Self.smallGICv3Blob)), .badGICVersion(bad))
        }
        for length in 0..<Self.smallGICv3Blob.count {
            XCTAssertEqual(Self.decodeError(Array(Self.smallGICv3Blob.prefix(length))), .tooShort, "cut at \(length)")
        }
        XCTAssertNil(Self.decodeError(Self.patched(UInt32(123), at: 12, in: Self.smallGICv3Blob)))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(124), at: 12, in: Self.smallGICv3Blob)), .badVCPUCount(124))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(0), at: 12, in: Self.smallGICv3Blob)), .badVCPUCount(0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(135), at: 8, in: Self.smallGICv3Blob) + [0]),
                       .badLength(declared: 135, computed: 134))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(4), at: 52, in: Self.smallGICv3Blob)), .badDevice(index: 0))
    }

    func testVCPULimitFollowsTheGIC() {
        XCTAssertEqual(GuestConfiguration.maxVCPUsGICv3, 123)
        XCTAssertNil(Self.validationError(GuestConfiguration(vcpuCount: 64, gicVersion: .v3)))
        XCTAssertEqual(Self.validationError(GuestConfiguration(vcpuCount: 9, gicVersion: .v2)), .badVCPUCount(9))
        XCTAssertEqual(Self.validationError(GuestConfiguration(vcpuCount: 124, gicVersion: .v3)), .badVCPUCount(124))
    }

    func testDefaultsRoundTrip() throws {
        let defaults = GuestConfiguration()
        let blob = defaults.encoded()
        XCTAssertEqual(blob.count, 48 + 28)
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
        // Eight passthrough devices with the longest name and compatible list: 255 bytes and its NUL.
        var passthrough: [PassthroughDevice] = []
        for n in 0..<8 {
            passthrough.append(PassthroughDevice(name: [UInt8](repeating: UInt8(ascii: "a") + UInt8(n), count: 31),
                                                 address: 0x1000_0000 + 0x1_0000 * UInt64(n), size: 0x1_0000,
                                                 interrupt: n == 3 ? nil : 1019 - UInt32(n),
                                                 compatible: [[UInt8](repeating: UInt8(ascii: "c"), count: 255)]))
        }
        let full = GuestConfiguration(ramBase: 0x1_0000_0000, ramSize: 0x4_0000_0000, vcpuCount: 8,
                                      bootargs: [UInt8](repeating: UInt8(ascii: "x"), count: 2048), devices: devices,
                                      passthrough: passthrough)
        let blob = full.encoded()
        XCTAssertEqual(blob.count, 48 + 32 * 8 + 8 * (24 + 31 + 256) + 2048)
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
        // Version 1 had a 40-byte header: read as version 2, its device records would be misread.
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(1), at: 4)), .unsupportedVersion(1))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(4), at: 4)), .unsupportedVersion(4))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(0), at: 4)), .unsupportedVersion(0))
    }

    func testBlobLengthDisagreeingWithItsContentsIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(131), at: 8) + [0]), .badLength(declared: 131, computed: 130))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(129), at: 8)), .badLength(declared: 129, computed: 130))
        // A bootargs or passthrough length one larger than written: the blob's own length no longer adds up.
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(6), at: 32)), .badLength(declared: 130, computed: 131))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(54), at: 44)), .badLength(declared: 130, computed: 131))
    }

    func testDeviceCountPastThirtyTwoIsRejectedBeforeAnyRecordIsRead() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(33), at: 36)), .tooManyDevices(count: 33))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(9), at: 40)), .tooManyPassthrough(count: 9))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32.max, at: 40)), .tooManyPassthrough(count: Int(UInt32.max)))
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
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0), at: 64)), .badDevice(index: 2))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(4), at: 48)), .badDevice(index: 0))
    }

    func testUnknownFlagBitsAreRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x03), at: 49)), .badDevice(index: 0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x02), at: 57)), .badDevice(index: 1))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x13), at: 57)), .badDevice(index: 1))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x01), at: 65)), .badDevice(index: 2))
    }

    func testANetworkCardOnAVMMNetworkKeepsItsNetworkThroughTheEncoding() throws {
        let configuration = GuestConfiguration(devices: [.switchedNetwork(mac: Self.mac, network: 15), .network(mac: [2, 0, 0, 0, 0, 9]),
                                                         .switchedNetwork(mac: [2, 0, 0, 0, 0, 7], network: 0)])
        let decoded = try configuration.encoded().withUnsafeBytes { try GuestConfiguration(decoding: $0) }
        XCTAssertEqual(decoded.devices, configuration.devices)
        XCTAssertEqual(decoded.devices.map { $0.mac }, [Self.mac, [2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 7]])
        XCTAssertEqual(Self.validationError(GuestConfiguration(devices: [.switchedNetwork(mac: Self.mac, network: 16)])),
                       .badDevice(index: 0))
        XCTAssertEqual(Self.validationError(GuestConfiguration(devices: [.switchedNetwork(mac: [1, 0, 0, 0, 0, 1], network: 0)])),
                       .badMAC(index: 0))
    }

    func testMACBytesOnADeviceThatIsNotANetworkCardAreRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x02), at: 55)), .badDevice(index: 0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x02), at: 66)), .badDevice(index: 2))
    }

    func testMulticastOrZeroMACIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0x53), at: 58)), .badMAC(index: 1))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(0), at: 60, in: Self.patched(UInt16(0), at: 58))),
                       .badMAC(index: 1))
    }

    func testNulInBootargsIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0), at: 127)), .bootargsContainNul)
    }

    // MARK: - Corrupt passthrough records

    func testNonzeroReservedByteInAPassthroughRecordIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(1), at: 93)), .badPassthrough(index: 0))
    }

    func testPassthroughLengthsRunningPastTheirAreaAreRejected() {
        // A name or compatible list one byte longer than written would end inside the bootargs.
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(6), at: 92)), .badPassthrough(index: 0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt16(25), at: 94)), .badPassthrough(index: 0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt16(0xffff), at: 94)), .badPassthrough(index: 0))
        // Two records declared, room for one: the second's fixed part is not there.
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(2), at: 40)), .badPassthrough(index: 1))
    }

    func testPassthroughAreaLongerThanItsRecordsIsRejected() {
        // Area and blob one byte longer, the spare byte after the record: bootargs would start late.
        var blob = Self.patched(UInt32(131), at: 8, in: Self.patched(UInt32(54), at: 44))
        blob.insert(0, at: 125)
        XCTAssertEqual(Self.decodeError(blob), .badLength(declared: 131, computed: 130))
        // No records but a nonzero area.
        let none = Self.patched(UInt32(0), at: 40)
        XCTAssertEqual(Self.decodeError(none), .badLength(declared: 130, computed: 77))
    }

    func testCompatibleListNotEndingInNulOrWithAnEmptyStringIsRejected() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(ascii: "x"), at: 124)), .badPassthrough(index: 0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(0), at: 111)), .badPassthrough(index: 0))
    }

    func testZeroInterruptDecodesAsNoInterrupt() throws {
        var expected = Self.small
        expected.passthrough[0].interrupt = nil
        XCTAssertEqual(try Self.decode(Self.patched(UInt32(0), at: 88)), expected)
        XCTAssertEqual(expected.encoded(), Self.patched(UInt32(0), at: 88))
    }

    func testDecoderAppliesThePassthroughRules() {
        XCTAssertEqual(Self.decodeError(Self.patched(UInt32(33), at: 88)), .badPassthrough(index: 0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt8(ascii: "L"), at: 97)), .badPassthrough(index: 0))
        XCTAssertEqual(Self.decodeError(Self.patched(UInt64(0x0900_0000), at: 72)), .passthroughOverlaps(index: 0))
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
                                               devices: [.console, .console], passthrough: [Self.rtc])
        try withGuest { memory, kernel, host in
            let guest = try Result { () throws(GuestBootError) in
                try GuestBoot.load(into: memory, kernel: kernel, initrd: nil, configuration: configuration,
                                   devices: configuration.placements { _ in nil })
            }.get()
            // booting.rst: x0 holds the DTB's address; the DTB starts at the next 2 MiB after the kernel.
            XCTAssertEqual(guest.registers.x[0], 0x4020_0000)
            let dtb = UnsafeRawBufferPointer(rebasing: host[0x20_0000..<0x20_0000 + Int(guest.deviceTreeSize)])
            XCTAssertTrue(Self.contains(dtb, Array("quiet loglevel=3\0".utf8)))
            XCTAssertTrue(Self.contains(dtb, Array("cpu@1\0".utf8)))
            XCTAssertFalse(Self.contains(dtb, Array("cpu@2\0".utf8)))
            XCTAssertTrue(Self.contains(dtb, Array("virtio_mmio@a000200\0".utf8)))
            XCTAssertFalse(Self.contains(dtb, Array("virtio_mmio@a000400\0".utf8)))
            XCTAssertTrue(Self.contains(dtb, Array("pl031@9010000\0".utf8)))
            XCTAssertTrue(Self.contains(dtb, Array("arm,pl031\0arm,primecell\0".utf8)))
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
