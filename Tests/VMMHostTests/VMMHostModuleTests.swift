import XCTest
@testable import VMMHost
import VMMCore

final class VMMHostModuleTests: XCTestCase {
    func testHostModuleSeesTheBoardConstantsOfTheCore() {
        XCTAssertEqual(QEMUVirtBoard.guestRAMBase, 0x4000_0000)
        XCTAssertEqual(MicrokitLayout.uartChannel, 1)
    }
}
