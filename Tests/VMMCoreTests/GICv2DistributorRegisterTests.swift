// Tests of the GICD offset decoder against the register map of GICv2 Table 4-1.

import XCTest
@testable import VMMCore

final class GICv2DistributorRegisterTests: XCTestCase {
    func testOffsetsDecodeToTheRegistersOfTable4_1() {
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x000), .control)
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x004), .type)
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x008), .implementer)
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x084), .group(word: 1))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x104), .setEnable(word: 1))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x180), .clearEnable(word: 0))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x27C), .setPending(word: 31))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x288), .clearPending(word: 2))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x300), .setActive(word: 0))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x3FC), .clearActive(word: 31))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x41B), .priority(interrupt: 27))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0x821), .targets(interrupt: 33))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0xC08), .configuration(word: 2))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0xF00), .softwareInterrupt)
        XCTAssertEqual(GICv2DistributorRegister(offset: 0xF13), .clearSGIPending(sgi: 3))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0xF2F), .setSGIPending(sgi: 15))
        XCTAssertEqual(GICv2DistributorRegister(offset: 0xFE8), .identification(index: 6))
    }

    func testGapsInTheMapAreReserved() {
        for offset in [0x00C, 0x010, 0x07C, 0x7FC, 0xBFC, 0xD00, 0xE00, 0xF04, 0xF0C, 0xF30, 0xFCC] {
            XCTAssertEqual(GICv2DistributorRegister(offset: offset), .reserved, "offset \(offset)")
        }
    }

    func testOnlyPriorityTargetAndSGIPendingRegistersAllowByteAccess() {
        XCTAssertTrue(GICv2DistributorRegister(offset: 0x401).allowsByteAccess)
        XCTAssertTrue(GICv2DistributorRegister(offset: 0x802).allowsByteAccess)
        XCTAssertTrue(GICv2DistributorRegister(offset: 0xF11).allowsByteAccess)
        XCTAssertTrue(GICv2DistributorRegister(offset: 0xF22).allowsByteAccess)
        XCTAssertFalse(GICv2DistributorRegister(offset: 0x000).allowsByteAccess)
        XCTAssertFalse(GICv2DistributorRegister(offset: 0x100).allowsByteAccess)
        XCTAssertFalse(GICv2DistributorRegister(offset: 0xC00).allowsByteAccess)
        XCTAssertFalse(GICv2DistributorRegister(offset: 0xF00).allowsByteAccess)
    }

    func testTheBytesOfAWordAreTheRegistersAtTheNextThreeOffsets() {
        // Every word-aligned offset of a byte-accessible register: lane k names what offset + k names.
        for offset in stride(from: 0, to: 0x1000, by: 4) {
            let register = GICv2DistributorRegister(offset: offset)
            guard register.allowsByteAccess else { continue }
            for lane in 0..<4 {
                XCTAssertEqual(register.byte(lane), GICv2DistributorRegister(offset: offset + lane), "offset \(offset) + \(lane)")
            }
        }
    }
}
