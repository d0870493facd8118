import XCTest
@testable import VMMCore

private let MiB: UInt64 = 0x10_0000
private let ramBase: UInt64 = 0x4000_0000   // QEMU virt

private func header(textOffset: UInt64 = 0, imageSize: UInt64) throws -> ImageHeader {
    try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(textOffset: textOffset, imageSize: imageSize))
}

private func plan(ramSize: UInt64, textOffset: UInt64 = 0, imageSize: UInt64, fileSize: UInt64? = nil,
                  initrdSize: UInt64?, ramBase: UInt64 = ramBase) throws -> BootLayout {
    try BootLayout.plan(ramBase: ramBase, ramSize: ramSize,
                        header: header(textOffset: textOffset, imageSize: imageSize),
                        kernelFileSize: fileSize ?? imageSize / 2, initrdSize: initrdSize)
}

private func assertLayoutError(_ expected: BootLayoutError, file: StaticString = #filePath, line: UInt = #line,
                               _ body: () throws -> BootLayout) {
    XCTAssertThrowsError(try body(), file: file, line: line) {
        XCTAssertEqual($0 as? BootLayoutError, expected, file: file, line: line)
    }
}

final class BootLayoutTests: XCTestCase {
    func testKernelAtRAMBaseDTBAtNext2MiBAndInitrdAtTopOfRAM() throws {
        // image_size 0x2a1_0000 (42.06 MiB) ends at 0x42a1_0000; the next 2 MiB boundary is
        // 0x42c0_0000; RAM is 256 MiB, so it ends at 0x5000_0000 and a 5 MiB initrd starts 5 MiB below.
        let layout = try plan(ramSize: 256 * MiB, imageSize: 0x2a1_0000, fileSize: 0x1e0_0000, initrdSize: 5 * MiB)
        XCTAssertEqual(layout.kernel, GuestPhysicalAddress(0x4000_0000))
        XCTAssertEqual(layout.kernelEntry, GuestPhysicalAddress(0x4000_0000))
        XCTAssertEqual(layout.kernelSize, 0x2a1_0000)
        XCTAssertEqual(layout.dtb, GuestPhysicalAddress(0x42c0_0000))
        XCTAssertEqual(layout.dtbMaxSize, 0x10_0000)
        XCTAssertEqual(layout.initrd, GuestPhysicalAddress(0x4fb0_0000))
        XCTAssertEqual(layout.initrdSize, 5 * MiB)
        XCTAssertEqual(layout.initrdEnd, GuestPhysicalAddress(0x5000_0000))
    }

    func testTextOffsetIsAddedToThe2MiBAlignedBase() throws {
        let layout = try plan(ramSize: 128 * MiB, textOffset: 0x8_0000, imageSize: 0x1f8_0000, initrdSize: nil)
        XCTAssertEqual(layout.kernel, GuestPhysicalAddress(0x4008_0000))
        XCTAssertEqual(layout.kernelEntry, GuestPhysicalAddress(0x4008_0000))
        // 0x8_0000 + 0x1f8_0000 = exactly 32 MiB: the DTB goes right there.
        XCTAssertEqual(layout.dtb, GuestPhysicalAddress(0x4200_0000))
        XCTAssertNil(layout.initrd)
        XCTAssertNil(layout.initrdEnd)
        XCTAssertEqual(layout.initrdSize, 0)
    }

    func testInitrdOfOddSizeStartsOnAPageBoundaryAndEndsInsideRAM() throws {
        let layout = try plan(ramSize: 256 * MiB, imageSize: 0x200_0000, initrdSize: 0x12345)
        // 0x5000_0000 - 0x12345 = 0x4ffe_dcbb, rounded down to the 4 KiB page.
        XCTAssertEqual(layout.initrd, GuestPhysicalAddress(0x4ffe_d000))
        XCTAssertEqual(layout.initrdEnd, GuestPhysicalAddress(0x4fff_f345))
    }

    func testEmptyInitrdIsNoInitrdEvenWithNoRoomAboveTheDeviceTree() throws {
        // Found by fuzzing: a 0-byte initrd used to be "placed" below the DTB, inside the kernel's area.
        let header = try ImageHeaderFixture.parse(ImageHeaderFixture.bytes(textOffset: 0, imageSize: 0x8_0200_0000))
        let layout = try BootLayout.plan(ramBase: 0, ramSize: 0x1F_8000_0000, header: header,
                                         kernelFileSize: 0x1000, initrdSize: 0)
        XCTAssertNil(layout.initrd)
        XCTAssertEqual(layout.initrdSize, 0)
    }

    func testKernelLargerThanRAMDoesNotFit() {
        assertLayoutError(.kernelDoesNotFit(needed: 40 * MiB, available: 32 * MiB)) {
            try plan(ramSize: 32 * MiB, imageSize: 40 * MiB, initrdSize: nil)
        }
        // text_offset counts: 0x8_0000 + 32 MiB does not fit in 32 MiB.
        assertLayoutError(.kernelDoesNotFit(needed: 32 * MiB + 0x8_0000, available: 32 * MiB)) {
            try plan(ramSize: 32 * MiB, textOffset: 0x8_0000, imageSize: 32 * MiB, initrdSize: nil)
        }
    }

    func testKernelFileLargerThanImageSizeIsWhatMustFit() {
        assertLayoutError(.kernelDoesNotFit(needed: 33 * MiB, available: 32 * MiB)) {
            try plan(ramSize: 32 * MiB, imageSize: 16 * MiB, fileSize: 33 * MiB, initrdSize: nil)
        }
    }

    func testHugeImageSizeSaturatesInsteadOfWrapping() {
        assertLayoutError(.kernelDoesNotFit(needed: UInt64.max, available: 32 * MiB)) {
            try plan(ramSize: 32 * MiB, textOffset: 0x1000, imageSize: UInt64.max - 0x10, initrdSize: nil)
        }
    }

    func testKernelFillingRAMLeavesNoRoomForTheDTB() {
        // 30 MiB + 1 rounds up to 32 MiB; the 1 MiB DTB slot would end at 33 MiB.
        assertLayoutError(.dtbDoesNotFit(needed: 33 * MiB, available: 32 * MiB)) {
            try plan(ramSize: 32 * MiB, imageSize: 30 * MiB + 1, initrdSize: nil)
        }
    }

    func testKernelAndDTBExactlyFillingRAMFit() throws {
        let layout = try plan(ramSize: 33 * MiB, imageSize: 32 * MiB, initrdSize: nil)
        XCTAssertEqual(layout.dtb, GuestPhysicalAddress(ramBase + 32 * MiB))
    }

    func testInitrdExactlyFillingTheRestOfRAMFitsAndOneByteMoreDoesNot() throws {
        // Kernel 16 MiB, DTB [16, 17) MiB, RAM 64 MiB: 47 MiB are left for the initrd.
        let layout = try plan(ramSize: 64 * MiB, imageSize: 16 * MiB, initrdSize: 47 * MiB)
        XCTAssertEqual(layout.initrd, GuestPhysicalAddress(ramBase + 17 * MiB))
        XCTAssertEqual(layout.initrdEnd, GuestPhysicalAddress(ramBase + 64 * MiB))
        assertLayoutError(.initrdDoesNotFit(size: 47 * MiB + 1, available: 47 * MiB)) {
            try plan(ramSize: 64 * MiB, imageSize: 16 * MiB, initrdSize: 47 * MiB + 1)
        }
    }

    func testInitrdLargerThanFreeRAMDoesNotFit() {
        assertLayoutError(.initrdDoesNotFit(size: 40 * MiB, available: 31 * MiB)) {
            try plan(ramSize: 64 * MiB, imageSize: 32 * MiB, initrdSize: 40 * MiB)
        }
    }

    func testInitrdStaysInsideThe32GiBWindowThatCoversTheKernel() throws {
        // booting.rst: the initrd must lie in a 1 GB aligned window of up to 32 GB that also covers
        // the kernel; with 64 GiB of RAM from 1 GiB, that window ends at 1 GiB + 32 GiB.
        let layout = try plan(ramSize: 64 * 1024 * MiB, imageSize: 32 * MiB, initrdSize: 8 * MiB)
        XCTAssertEqual(layout.initrdEnd, GuestPhysicalAddress(0x8_4000_0000))
    }

    func testRAMBaseMustBe2MiBAligned() {
        assertLayoutError(.ramNotAligned(base: 0x4010_0000)) {
            try plan(ramSize: 256 * MiB, imageSize: 16 * MiB, initrdSize: nil, ramBase: 0x4010_0000)
        }
    }

    func testRAMWrappingPastTheAddressSpaceIsRefused() {
        assertLayoutError(.ramEndsPastAddressSpace) {
            try plan(ramSize: 4 * MiB, imageSize: 1 * MiB, initrdSize: nil, ramBase: 0xffff_ffff_ffe0_0000)
        }
    }

    func testDTBSlotLargerThan2MiBIsRefused() throws {
        let h = try header(imageSize: 16 * MiB)
        XCTAssertThrowsError(try BootLayout.plan(ramBase: ramBase, ramSize: 256 * MiB, header: h, kernelFileSize: MiB,
                                                 initrdSize: nil, dtbMaxSize: 2 * MiB + 8)) {
            XCTAssertEqual($0 as? BootLayoutError, .dtbTooLarge(maxSize: 2 * MiB + 8))
        }
        XCTAssertNoThrow(try BootLayout.plan(ramBase: ramBase, ramSize: 256 * MiB, header: h, kernelFileSize: MiB,
                                             initrdSize: nil, dtbMaxSize: 2 * MiB))
    }
}

/// The checks and one-line messages the host tool prints ("vmm: " + message).
final class BootCheckTests: XCTestCase {
    private func message(kernel: [UInt8], fileSize: UInt64? = nil, initrdSize: UInt64?, ramBase: UInt64 = ramBase,
                         ramSize: UInt64) -> String? {
        do {
            _ = try kernel.withUnsafeBytes { raw in
                Result { () throws(BootCheckError) in
                    try BootLayout.check(kernelStart: raw, kernelFileSize: fileSize ?? UInt64(kernel.count),
                                         initrdSize: initrdSize, ramBase: ramBase, ramSize: ramSize)
                }
            }.get()
            return nil
        } catch {
            let bytes = error.message(kernelName: Array("build/guest/Image".utf8), initrdName: Array("initrd.cpio".utf8))
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    func testGoodImagesPassAndReturnTheHeaderAndLayout() throws {
        let kernel = ImageHeaderFixture.bytes(imageSize: 16 * MiB)
        let result = try kernel.withUnsafeBytes { raw in
            try BootLayout.check(kernelStart: raw, kernelFileSize: 12 * MiB, initrdSize: MiB,
                                 ramBase: ramBase, ramSize: 128 * MiB)
        }
        XCTAssertEqual(result.header.imageSize, 16 * MiB)
        XCTAssertEqual(result.layout.dtb, GuestPhysicalAddress(ramBase + 16 * MiB))
        XCTAssertEqual(result.layout.initrd, GuestPhysicalAddress(ramBase + 127 * MiB))
    }

    func testNotAnImageNamesTheKernelAndBothMagicValues() {
        XCTAssertEqual(message(kernel: [UInt8](repeating: 0, count: 4096), initrdSize: nil, ramSize: 128 * MiB),
                       "kernel 'build/guest/Image': not an arm64 Linux Image (bad magic 0x00000000; expected 0x644d5241)")
        XCTAssertEqual(message(kernel: [0x7f, 0x45, 0x4c, 0x46], initrdSize: nil, ramSize: 128 * MiB),
                       "kernel 'build/guest/Image': not an arm64 Linux Image (shorter than its 64-byte header)")
    }

    func testBigEndianKernelIsNamed() {
        XCTAssertEqual(message(kernel: ImageHeaderFixture.bytes(flags: 0xb), initrdSize: nil, ramSize: 128 * MiB),
                       "kernel 'build/guest/Image': big-endian arm64 Image (header flags bit 0); "
                       + "only little-endian guests are supported")
    }

    func testKernelTooLargeForRAMSaysHowMuchItNeeds() {
        XCTAssertEqual(message(kernel: ImageHeaderFixture.bytes(imageSize: 40 * MiB), initrdSize: nil, ramSize: 32 * MiB),
                       "kernel 'build/guest/Image': needs 40 MiB of guest RAM (text_offset + image_size) "
                       + "but there are only 32 MiB")
    }

    func testNoRoomForTheDeviceTreeBlamesTheKernel() {
        XCTAssertEqual(message(kernel: ImageHeaderFixture.bytes(imageSize: 32 * MiB), initrdSize: nil, ramSize: 32 * MiB),
                       "kernel 'build/guest/Image': leaves no room for the device tree (kernel and device tree "
                       + "need 33 MiB of guest RAM; there are only 32 MiB)")
    }

    func testInitrdTooLargeNamesTheInitrdAndTheFreeSpace() {
        // Kernel 32 MiB, DTB to 33 MiB, RAM 63 MiB: 30 MiB free.
        let kernel = ImageHeaderFixture.bytes(imageSize: 32 * MiB)
        XCTAssertEqual(message(kernel: kernel, initrdSize: 40 * MiB, ramSize: 63 * MiB),
                       "initrd 'initrd.cpio': 40 MiB does not fit in guest RAM (30 MiB free above the kernel)")
        // Sizes that are not whole MiB: what is needed rounds up, what is free rounds down.
        XCTAssertEqual(message(kernel: kernel, initrdSize: 40 * MiB + 1, ramSize: 63 * MiB + 0x1_8000),
                       "initrd 'initrd.cpio': 40.01 MiB does not fit in guest RAM (30.09 MiB free above the kernel)")
    }

    func testUnalignedRAMBaseIsReportedInHex() {
        XCTAssertEqual(message(kernel: ImageHeaderFixture.bytes(), initrdSize: nil, ramBase: 0x4010_0000, ramSize: 128 * MiB),
                       "guest RAM base 0x40100000 is not 2 MiB aligned (arm64 kernels need a 2 MiB-aligned base)")
    }

    func testSizesBelowOneMiBAreGivenInKiB() {
        var text = ASCIIBuffer()
        text.putSize(0x8_0000, roundingUp: true)
        text.put(", ")
        text.putSize(0x180, roundingUp: false)
        text.put(", ")
        text.putSize(0, roundingUp: false)
        XCTAssertEqual(String(decoding: text.bytes, as: UTF8.self), "512 KiB, 0.37 KiB, 0 KiB")
    }
}
