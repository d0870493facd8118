import XCTest
@testable import VMMCore

final class GuestMemoryTests: XCTestCase {
    func testRangesOutsideRAMAreRefused() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        let ram = GuestMemory(base: GuestPhysicalAddress(0x4000_0000), size: 4096, host: buffer)
        XCTAssertEqual(ram.offset(of: GuestPhysicalAddress(0x4000_0000), length: 4096), 0)
        XCTAssertNil(ram.offset(of: GuestPhysicalAddress(0x4000_0001), length: 4096))
        XCTAssertNil(ram.offset(of: GuestPhysicalAddress(0x3fff_ffff), length: 1))
        XCTAssertNil(ram.offset(of: GuestPhysicalAddress(0x4000_0ff0), length: UInt64.max))
        XCTAssertNil(ram.offset(of: GuestPhysicalAddress(UInt64.max), length: 2))
        XCTAssertTrue(ram.store(UInt32(0xdead_beef), at: GuestPhysicalAddress(0x4000_0ffc)))
        XCTAssertEqual(ram.load(UInt32.self, at: GuestPhysicalAddress(0x4000_0ffc)), 0xdead_beef)
        XCTAssertFalse(ram.store(UInt64(1), at: GuestPhysicalAddress(0x4000_0ffc)))
    }

    func testZeroRegisterReadsZeroAndDropsWrites() {
        var regs = RegisterFile()
        regs.write(31, 7)
        XCTAssertEqual(regs.read(31), 0)
        regs.write(30, 7)
        XCTAssertEqual(regs.read(30), 7)
    }
}
