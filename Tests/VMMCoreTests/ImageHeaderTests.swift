import XCTest
@testable import VMMCore

/// Builds arm64 Image headers for the boot tests (ImageHeaderTests, BootLayoutTests).
enum ImageHeaderFixture {
    /// A 64-byte arm64 Image header laid out as booting.rst specifies (little-endian fields).
    static func bytes(textOffset: UInt64 = 0, imageSize: UInt64 = 0x200_0000, flags: UInt64 = 0xa,
                      magic: UInt32 = 0x644d_5241) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 64)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { raw in
                for (i, byte) in raw.enumerated() { bytes[offset + i] = byte }
            }
        }
        put(UInt32(0xfa40_5a4d), at: 0)   // "MZ" + ccmp: the code0 of an EFI-stub kernel
        put(UInt32(0x1452_0000), at: 4)   // b to the real entry
        put(textOffset, at: 8)
        put(imageSize, at: 16)
        put(flags, at: 24)
        put(magic, at: 56)
        put(UInt32(0x40), at: 60)         // PE header offset
        return bytes
    }

    static func parse(_ bytes: [UInt8]) throws(ImageHeaderError) -> ImageHeader {
        // withUnsafeBytes rethrows untyped errors; Result keeps the typed one.
        try bytes.withUnsafeBytes { raw in Result { () throws(ImageHeaderError) in try ImageHeader(bytes: raw) } }.get()
    }
}

final class ImageHeaderTests: XCTestCase {
    func testFieldsAreReadFromTheirBootingRstOffsets() throws {
        let header = try ImageHeaderFixture.parse(
            ImageHeaderFixture.bytes(textOffset: 0x1000, imageSize: 0x2a1_0000, flags: 0xa))
        XCTAssertEqual(header.code0, 0xfa40_5a4d)
        XCTAssertEqual(header.code1, 0x1452_0000)
        XCTAssertEqual(header.textOffset, 0x1000)
        XCTAssertEqual(header.imageSize, 0x2a1_0000)
        XCTAssertEqual(header.flags, 0xa)
        // 0xa = bit 1 (page size 4K = 1 in bits 1-2) | bit 3 (anywhere).
        XCTAssertEqual(header.pageSize, .size4K)
        XCTAssertEqual(header.placement, .anywhere)
    }

    func testPageSizeAndPlacementFlagsDecodeEveryValue() throws {
        XCTAssertEqual(try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(flags: 0 << 1)).pageSize, .unspecified)
        XCTAssertEqual(try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(flags: 2 << 1)).pageSize, .size16K)
        XCTAssertEqual(try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(flags: 3 << 1)).pageSize, .size64K)
        XCTAssertEqual(try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(flags: 1 << 1)).placement, .nearStartOfDRAM)
        XCTAssertEqual(try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(flags: 1 << 3)).placement, .anywhere)
    }

    func testHeaderIsReadFromAnUnalignedBuffer() throws {
        let bytes = [0xee] + ImageHeaderFixture.bytes(textOffset: 0x8_0000, imageSize: 0x123_4000)
        let header = try bytes.withUnsafeBytes { raw in
            try ImageHeader(bytes: UnsafeRawBufferPointer(rebasing: raw[1...]))
        }
        XCTAssertEqual(header.textOffset, 0x8_0000)
        XCTAssertEqual(header.imageSize, 0x123_4000)
    }

    func testBufferShorterThanTheHeaderIsTooShort() {
        let bytes = Array(ImageHeaderFixture.bytes().prefix(63))
        XCTAssertThrowsError(try ImageHeaderFixture.parse(bytes)) { XCTAssertEqual($0 as? ImageHeaderError, .tooShort) }
        XCTAssertThrowsError(try ImageHeaderFixture.parse([])) { XCTAssertEqual($0 as? ImageHeaderError, .tooShort) }
    }

    func testWrongMagicIsReportedWithTheValueFound() {
        // A 32-bit arm zImage or an ELF file has something else at offset 56.
        XCTAssertThrowsError(try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(magic: 0x016f_2818))) {
            XCTAssertEqual($0 as? ImageHeaderError, .badMagic(found: 0x016f_2818))
        }
        // The magic is little-endian: "ARM\x64" byte-swapped is not accepted.
        XCTAssertThrowsError(try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(magic: 0x4152_4d64))) {
            XCTAssertEqual($0 as? ImageHeaderError, .badMagic(found: 0x4152_4d64))
        }
    }

    func testBigEndianKernelIsRefused() {
        XCTAssertThrowsError(try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(flags: 0xb))) {
            XCTAssertEqual($0 as? ImageHeaderError, .bigEndian)
        }
    }

    func testPre317HeaderWithZeroImageSizeAssumesTextOffset0x80000() throws {
        // booting.rst: where image_size is zero, text_offset can be assumed to be 0x80000,
        // whatever the field holds (its endianness was unspecified then).
        let bytes = ImageHeaderFixture.bytes(textOffset: 0x0000_0800_0000_0000, imageSize: 0, flags: 0)
        let header = try ImageHeaderFixture.parse(bytes)
        XCTAssertEqual(header.textOffset, 0x8_0000)
        XCTAssertNil(header.imageSize)
        XCTAssertEqual(header.reservedSize(fileSize: 0xa0_0000), 0xa0_0000 + 0x80_0000)
        XCTAssertEqual(header.reservedSize(fileSize: UInt64.max - 1), UInt64.max)
    }

    func testReservedSizeIsImageSizeButNeverLessThanTheFile() throws {
        let header = try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(imageSize: 0x200_0000))
        XCTAssertEqual(header.reservedSize(fileSize: 0x180_0000), 0x200_0000)
        XCTAssertEqual(header.reservedSize(fileSize: 0x300_0000), 0x300_0000)
    }
}
