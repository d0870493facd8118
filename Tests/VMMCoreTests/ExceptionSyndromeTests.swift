import XCTest
@testable import VMMCore

// ESR_EL2 values built by hand from the Arm ARM field positions:
// EC [31:26], IL [25], and for a data abort ISV [24], SAS [23:22], SSE [21], SRT [20:16], SF [15],
// AR [14], CM [8], S1PTW [7], WnR [6], DFSC [5:0]. DFSC 0x07 = translation fault, level 3.
final class ExceptionSyndromeTests: XCTestCase {
    let mmio = GuestPhysicalAddress(0x0900_0000)

    func testSyndromeFieldsComeFromTheirBitPositions() {
        // ISS2 (ESR[55:32]) must not leak into ISS.
        let esr = ExceptionSyndrome(0x0000_00AB_9381_0007)
        XCTAssertEqual(esr.exceptionClassBits, 0x24)
        XCTAssertEqual(esr.exceptionClass, .dataAbortLower)
        XCTAssertTrue(esr.instructionLength32)
        XCTAssertEqual(esr.instructionLength, 4)
        XCTAssertEqual(esr.iss, 0x0181_0007)
        // EC 0x01 with IL=0: a 16-bit T32 WFI.
        let t32 = ExceptionSyndrome(0x0400_0000)
        XCTAssertEqual(t32.exceptionClass, .wfx)
        XCTAssertFalse(t32.instructionLength32)
        XCTAssertEqual(t32.instructionLength, 2)
    }

    func testWordLoadDecodesSizeRegisterAndFaultStatus() throws {
        // ldr w1, [x0]: EC=0x24 IL=1 ISV=1 SAS=0b10 SSE=0 SRT=1 SF=0 WnR=0 DFSC=0x07
        let esr = ExceptionSyndrome(0x9381_0007)
        let access = try XCTUnwrap(DataAbort(syndrome: esr))
        XCTAssertEqual(access.accessSize, 4)
        XCTAssertFalse(access.signExtend)
        XCTAssertEqual(access.register, 1)
        XCTAssertFalse(access.sixtyFourBitRegister)
        XCTAssertFalse(access.acquireRelease)
        XCTAssertFalse(access.isWrite)
        XCTAssertFalse(access.s1ptw)
        XCTAssertFalse(access.cacheMaintenance)
        XCTAssertEqual(access.faultStatus, 0x07)
        // A word load into a W register keeps the low 32 bits of whatever the device returned.
        XCTAssertEqual(access.registerValue(fromRead: 0xDEAD_BEEF_8765_4321), 0x8765_4321)
        XCTAssertEqual(GuestExit(syndrome: esr, address: mmio), .dataAbort(access, address: mmio))
    }

    func testByteStoreOfZeroRegisterTruncatesTheValue() throws {
        // strb wzr, [x0]: SAS=0b00 SRT=31 WnR=1 DFSC=0x07
        let access = try XCTUnwrap(DataAbort(syndrome: ExceptionSyndrome(0x931F_0047)))
        XCTAssertEqual(access.accessSize, 1)
        XCTAssertEqual(access.register, 31)
        XCTAssertTrue(access.isWrite)
        XCTAssertEqual(access.valueToWrite(fromRegister: 0x1234_5678_9ABC_DEF0), 0xF0)
        var regs = RegisterFile()
        regs.write(30, 0xFFFF)
        XCTAssertEqual(access.valueToWrite(fromRegister: regs.read(access.register)), 0)
    }

    func testHalfwordSignedLoadIntoXRegisterSignExtendsTo64Bits() throws {
        // ldrsh x2, [x3]: SAS=0b01 SSE=1 SRT=2 SF=1
        let access = try XCTUnwrap(DataAbort(syndrome: ExceptionSyndrome(0x9362_8007)))
        XCTAssertEqual(access.accessSize, 2)
        XCTAssertTrue(access.signExtend)
        XCTAssertEqual(access.register, 2)
        XCTAssertTrue(access.sixtyFourBitRegister)
        XCTAssertEqual(access.registerValue(fromRead: 0x8001), 0xFFFF_FFFF_FFFF_8001)
        XCTAssertEqual(access.registerValue(fromRead: 0x7FFF), 0x7FFF)
        // Bytes beyond the access size are not the guest's and must not reach the register.
        XCTAssertEqual(access.registerValue(fromRead: 0xFFFF_FFFF_FFFF_7FFF), 0x7FFF)
    }

    func testHalfwordSignedLoadIntoWRegisterClearsTheUpperHalf() throws {
        // ldrsh w2, [x3]: SAS=0b01 SSE=1 SRT=2 SF=0
        let access = try XCTUnwrap(DataAbort(syndrome: ExceptionSyndrome(0x9362_0007)))
        XCTAssertFalse(access.sixtyFourBitRegister)
        XCTAssertEqual(access.registerValue(fromRead: 0x8001), 0xFFFF_8001)
    }

    func testWordSignedAndDoublewordLoads() throws {
        // ldrsw x4, [x0]: SAS=0b10 SSE=1 SRT=4 SF=1
        let ldrsw = try XCTUnwrap(DataAbort(syndrome: ExceptionSyndrome(0x93A4_8007)))
        XCTAssertEqual(ldrsw.accessSize, 4)
        XCTAssertEqual(ldrsw.registerValue(fromRead: 0x8000_0000), 0xFFFF_FFFF_8000_0000)
        // ldr x5, [x0]: SAS=0b11 SRT=5 SF=1
        let ldr = try XCTUnwrap(DataAbort(syndrome: ExceptionSyndrome(0x93C5_8007)))
        XCTAssertEqual(ldr.accessSize, 8)
        XCTAssertEqual(ldr.registerValue(fromRead: 0xFEDC_BA98_7654_3210), 0xFEDC_BA98_7654_3210)
        XCTAssertEqual(ldr.valueToWrite(fromRegister: 0xFEDC_BA98_7654_3210), 0xFEDC_BA98_7654_3210)
        // ldrb w6, [x0]: SAS=0b00 SRT=6
        let ldrb = try XCTUnwrap(DataAbort(syndrome: ExceptionSyndrome(0x9306_0007)))
        XCTAssertEqual(ldrb.registerValue(fromRead: 0x1FF), 0xFF)
    }

    func testStoreReleaseSetsAcquireRelease() throws {
        // stlr w3, [x0]: SAS=0b10 SRT=3 AR=1 WnR=1
        let access = try XCTUnwrap(DataAbort(syndrome: ExceptionSyndrome(0x9383_4047)))
        XCTAssertTrue(access.acquireRelease)
        XCTAssertTrue(access.isWrite)
        XCTAssertEqual(access.valueToWrite(fromRegister: 0xAAAA_BBBB_CCCC_DDDD), 0xCCCC_DDDD)
    }

    func testAbortWithoutValidSyndromeCannotBeEmulated() {
        // ldp x0, x1, [x2]: ISV=0, only WnR/DFSC meaningful.
        let ldp = ExceptionSyndrome(0x9200_0007)
        XCTAssertNil(DataAbort(syndrome: ldp))
        XCTAssertEqual(GuestExit(syndrome: ldp, address: mmio), .dataAbortWithoutSyndrome(ldp, address: mmio))
        // Stage-2 fault on a stage-1 table walk: S1PTW=1, ISV=0.
        let walk = ExceptionSyndrome(0x9200_0087)
        XCTAssertNil(DataAbort(syndrome: walk))
        XCTAssertFalse(GuestExit(syndrome: walk, address: mmio).advancesPCOnReturn)
    }

    func testOnlyDataAbortsYieldAnAccess() {
        // Instruction abort from a lower EL (EC 0x20) with bit 24 set must not be read as ISV.
        let fetch = ExceptionSyndrome(0x8300_0007)
        XCTAssertNil(DataAbort(syndrome: fetch))
        XCTAssertEqual(GuestExit(syndrome: fetch, address: mmio), .instructionAbort(fetch, address: mmio))
    }

    func testHypervisorAndSecureMonitorCallsCarryTheirImmediate() {
        // HVC #0: EC=0x16 IL=1; HVC #0x1234; SMC #0: EC=0x17 IL=1.
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x5A00_0000), address: mmio),
                       .hypervisorCall(immediate: 0))
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x5A00_1234), address: mmio),
                       .hypervisorCall(immediate: 0x1234))
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x5E00_0000), address: mmio),
                       .secureMonitorCall(immediate: 0))
    }

    func testWaitInstructionsDecodeTrappedInstructionField() {
        // EC=0x01 IL=1, TI = 0 WFI, 1 WFE, 2 WFIT, 3 WFET.
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x0600_0000), address: mmio), .wait(.wfi))
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x0600_0001), address: mmio), .wait(.wfe))
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x0600_0002), address: mmio), .wait(.wfi))
        XCTAssertEqual(GuestExit(syndrome: ExceptionSyndrome(0x0600_0003), address: mmio), .wait(.wfe))
    }

    func testSystemRegisterTrapsDecodeEncodingRegisterAndDirection() {
        // mrs x3, cntpct_el0 (S3_3_C14_C0_1): Op0=3 Op2=1 Op1=3 CRn=14 Rt=3 CRm=0 read
        let read = GuestExit(syndrome: ExceptionSyndrome(0x6232_F861), address: mmio)
        XCTAssertEqual(read, .systemRegister(SystemRegisterAccess(
            op0: 3, op1: 3, crn: 14, crm: 0, op2: 1, register: 3, isRead: true)))
        // msr icc_sgi1r_el1, x5 (S3_0_C12_C11_5): Op0=3 Op2=5 Op1=0 CRn=12 Rt=5 CRm=11 write
        guard case .systemRegister(let write) = GuestExit(syndrome: ExceptionSyndrome(0x623A_30B6), address: mmio)
        else { return XCTFail("MSR trap not decoded as a system register access") }
        XCTAssertTrue(write.names(op0: 3, op1: 0, crn: 12, crm: 11, op2: 5))
        XCTAssertEqual(write.register, 5)
        XCTAssertFalse(write.isRead)
    }

    func testUnknownAndUnhandledClassesStopAsUnknown() {
        let reserved = ExceptionSyndrome(0xFE00_0000)   // EC 0x3F is not allocated
        XCTAssertEqual(reserved.exceptionClassBits, 0x3F)
        XCTAssertNil(reserved.exceptionClass)
        XCTAssertEqual(GuestExit(syndrome: reserved, address: mmio), .unknown(reserved))
        let undefined = ExceptionSyndrome(0x0200_0000)  // EC 0x00: unknown reason
        XCTAssertEqual(GuestExit(syndrome: undefined, address: mmio), .unknown(undefined))
        // A data abort taken from EL2 itself (EC 0x25) is the VMM's fault, not the guest's.
        let own = ExceptionSyndrome(0x9781_0007)
        XCTAssertEqual(own.exceptionClass, .dataAbortSame)
        XCTAssertEqual(GuestExit(syndrome: own, address: mmio), .unknown(own))
    }

    func testOnlyHVCReturnsPastTheInstructionOnItsOwn() {
        // HVC's preferred return address is the next instruction; a trapped SMC, WFx, MSR/MRS or
        // data abort returns to the instruction itself and must be stepped over.
        func increment(_ raw: UInt64) -> UInt64 {
            let esr = ExceptionSyndrome(raw)
            return GuestExit(syndrome: esr, address: mmio).pcIncrement(syndrome: esr)
        }
        XCTAssertEqual(increment(0x5A00_0000), 0)   // HVC
        XCTAssertEqual(increment(0x5E00_0000), 4)   // SMC
        XCTAssertEqual(increment(0x0600_0000), 4)   // WFI
        XCTAssertEqual(increment(0x0400_0000), 2)   // 16-bit T32 WFI
        XCTAssertEqual(increment(0x6232_F861), 4)   // MRS
        XCTAssertEqual(increment(0x9381_0007), 4)   // emulated load
        XCTAssertEqual(increment(0x8200_0007), 0)   // instruction abort
        XCTAssertEqual(increment(0xFE00_0000), 0)   // unknown
    }

    func testFaultingIPAJoinsHPFARPageAndFAROffset() {
        // HPFAR for IPA 0x0800_0000 is 0x0800_0000 >> 12 << 4 = 0x0008_0000; FAR holds the guest
        // VA, of which only the page offset [11:0] counts.
        XCTAssertEqual(faultingIPA(hpfar: 0x0008_0000, far: 0xFFFF_0000_1234_5004), GuestPhysicalAddress(0x0800_0004))
        // NS (bit 63) and the RES0 bits [3:0] are not part of the address.
        XCTAssertEqual(faultingIPA(hpfar: 0x8000_0000_0008_000F, far: 0xFFF), GuestPhysicalAddress(0x0800_0FFF))
        // HPFAR bit 23 is IPA bit 31.
        XCTAssertEqual(faultingIPA(hpfar: 0x0080_0000, far: 0), GuestPhysicalAddress(0x8000_0000))
        // A 48-bit IPA: FIPA = 0xFFFF_FFFF_F (IPA[47:12]) in HPFAR[39:4].
        XCTAssertEqual(faultingIPA(hpfar: 0xFF_FFFF_FFF0, far: 0x10), GuestPhysicalAddress(0xFFFF_FFFF_F010))
    }
}
