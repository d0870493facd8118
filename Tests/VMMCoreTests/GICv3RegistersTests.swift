// Tests of the GICv3 offset decoders against the register maps of ARM IHI 0069 §12.8 (GICD) and
// §12.10 (GICR RD_base), and of the bus regions a GICv3 machine emulates.

import XCTest
@testable import VMMCore

final class GICv3RegistersTests: XCTestCase {
    func testDistributorOffsetsDecodeToTheirRegisters() {
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x0000), .control)
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x0004), .type)
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x0008), .implementer)
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x000C), .type2)
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x0084), .group(word: 1))
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x017C), .setEnable(word: 31))
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x07FB), .priority(interrupt: 1019))
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x0CFC), .configuration(word: 63))
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x6100), .router(interrupt: 32, high: false))
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x6104), .router(interrupt: 32, high: true))
        XCTAssertEqual(GICv3DistributorRegister(offset: 0x7FD8), .router(interrupt: 1019, high: false))
        XCTAssertEqual(GICv3DistributorRegister(offset: 0xFFE8), .identification(index: 6))
        // ITARGETSR, SGIR, CPENDSGIR, SPENDSGIR, IGRPMODR, NSACR, the SGI/PPI routers, INTIDs 1020+.
        for offset in [0x0800, 0x0F00, 0x0F10, 0x0F20, 0x0D00, 0x0E00, 0x6000, 0x60FC, 0x7FE0, 0x8000, 0xFFCC] {
            XCTAssertEqual(GICv3DistributorRegister(offset: offset), .reserved, "offset \(offset)")
        }
    }

    func testRedistributorOffsetsDecodeToTheirRegisters() {
        XCTAssertEqual(GICv3RedistributorRegister(offset: 0x0000), .control)
        XCTAssertEqual(GICv3RedistributorRegister(offset: 0x0004), .implementer)
        XCTAssertEqual(GICv3RedistributorRegister(offset: 0x0008), .type(high: false))
        XCTAssertEqual(GICv3RedistributorRegister(offset: 0x000C), .type(high: true))
        XCTAssertEqual(GICv3RedistributorRegister(offset: 0x0014), .waker)
        XCTAssertEqual(GICv3RedistributorRegister(offset: 0xFFFC), .identification(index: 11))
        for offset in [0x0010, 0x0040, 0x0070, 0x0078, 0x00A0, 0x00C0, 0x1000] {
            XCTAssertEqual(GICv3RedistributorRegister(offset: offset), .reserved, "offset \(offset)")
        }
    }

    func testAGICv3BusHasTheRedistributorRegion() {
        let bus = MMIOBus.standard(gic: .v3)
        XCTAssertEqual(bus.find(GuestPhysicalAddress(0x0800_6100), length: 8)?.0, .gicDistributor)
        XCTAssertEqual(bus.find(GuestPhysicalAddress(0x080A_0000), length: 8)?.1, 0)
        XCTAssertEqual(bus.find(GuestPhysicalAddress(0x080C_0008), length: 8)?.1, 0x2_0008)
        XCTAssertEqual(bus.find(GuestPhysicalAddress(0x08FF_FFFC), length: 4)?.0, .gicRedistributor)
        XCTAssertNil(bus.find(GuestPhysicalAddress(0x08FF_FFFC), length: 8), "past the region's end")
        XCTAssertNil(bus.find(GuestPhysicalAddress(0x0801_0000), length: 4), "no GICv2 CPU interface")
        XCTAssertNil(MMIOBus.standard.find(GuestPhysicalAddress(0x080A_0000), length: 4))
    }
}
