// Tests of the core's register file: the zero register, and the layout a platform's trap frame may share.

import XCTest
@testable import VMMCore

final class RegisterFileTests: XCTestCase {
    func testRegister31IsTheZeroRegister() {
        var registers = RegisterFile()
        registers.write(31, 0xDEAD)
        XCTAssertEqual(registers.read(31), 0)
        registers.write(30, 0xBEEF)
        XCTAssertEqual(registers.read(30), 0xBEEF)
        XCTAssertEqual(registers.read(-1), 0)
        registers.write(-1, 1)
        registers.write(32, 1)
        XCTAssertEqual((0..<31).map { registers.read($0) }.filter { $0 != 0 }, [0xBEEF])
    }

    func testTheLayoutIsThatOfTheNativeTrapFrame() {
        // start.S's frame: x0..x30 in words 0-30, ELR_EL2 in 31, SPSR_EL2 in 32; NativeVCPU lets the
        // core work on it in place only because a RegisterFile is those words in that order.
        XCTAssertTrue(RegisterFile.isFrameLayout)
        XCTAssertEqual(MemoryLayout<RegisterFile>.size, 264)
        var words = [UInt64](repeating: 0, count: 33)
        words[0] = 7; words[30] = 9; words[31] = 0x4020_0000; words[32] = 0x3C5
        var registers = words.withUnsafeBytes { $0.load(as: RegisterFile.self) }
        XCTAssertEqual(registers.read(0), 7)
        XCTAssertEqual(registers.read(30), 9)
        XCTAssertEqual(registers.pc, 0x4020_0000)
        XCTAssertEqual(registers.pstate, 0x3C5)
    }
}
