import XCTest
@testable import VMMCore

// Function IDs and return codes are the literal numbers of Arm DEN0022 (PSCI) and DEN0028 (SMCCC).
final class PSCITests: XCTestCase {
    let notSupported: UInt64 = 0xFFFF_FFFF_FFFF_FFFF      // -1
    let invalidParameters: UInt64 = 0xFFFF_FFFF_FFFF_FFFE // -2
    let alreadyOn: UInt64 = 0xFFFF_FFFF_FFFF_FFFC         // -4

    func call(_ psci: inout PSCI, _ function: UInt64, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0,
              caller: Int = 0) -> PSCIOutcome {
        psci.handle(function: function, arguments: (a1, a2, a3), caller: caller)
    }

    func testReturnCodesAreSignExtendedToSixtyFourBits() {
        XCTAssertEqual(PSCIReturn.success.registerValue, 0)
        XCTAssertEqual(PSCIReturn.notSupported.registerValue, notSupported)
        XCTAssertEqual(PSCIReturn.invalidParameters.registerValue, invalidParameters)
        XCTAssertEqual(PSCIReturn.alreadyOn.registerValue, alreadyOn)
        XCTAssertEqual(PSCIReturn.invalidAddress.registerValue, 0xFFFF_FFFF_FFFF_FFF7)
    }

    func testVersionIsPSCI11() {
        var psci = PSCI(vcpuCount: 1)
        XCTAssertEqual(call(&psci, 0x8400_0000), .reply(0x0001_0001))
        // Only w0 names the function (SMCCC): junk in the upper half of x0 is ignored.
        XCTAssertEqual(call(&psci, 0xFFFF_FFFF_8400_0000), .reply(0x0001_0001))
    }

    func testFeaturesReportsExactlyTheImplementedFunctions() {
        var psci = PSCI(vcpuCount: 1)
        let implemented: [UInt64] = [0x8400_0000, 0x8400_0001, 0x8400_0002, 0x8400_0003, 0x8400_0004,
                                     0x8400_0006, 0x8400_0008, 0x8400_0009, 0x8400_000A, 0xC400_0001,
                                     0xC400_0003, 0xC400_0004, 0x8000_0000]
        for id in implemented {
            XCTAssertEqual(call(&psci, 0x8400_000A, id), .reply(0), "PSCI_FEATURES(\(id))")
        }
        let absent: [UInt64] = [0x8400_0005,   // MIGRATE
                                0x8400_0007,   // MIGRATE_INFO_UP_CPU
                                0xC400_000E,   // SYSTEM_SUSPEND (SMC64)
                                0x8400_0012,   // SYSTEM_RESET2
                                0x8000_0001,   // SMCCC_ARCH_FEATURES: discovered via SMCCC_VERSION
                                0x8000_8000,   // SMCCC_ARCH_WORKAROUND_1
                                0x1234_5678]
        for id in absent {
            XCTAssertEqual(call(&psci, 0x8400_000A, id), .reply(notSupported), "PSCI_FEATURES(\(id))")
        }
        // PSCI_FEATURES is an SMC32 call: the upper half of x1 is not part of the queried ID.
        XCTAssertEqual(call(&psci, 0x8400_000A, 0xFFFF_FFFF_8400_0003), .reply(0))
    }

    func testCPUOnWithOneVCPU() {
        var psci = PSCI(vcpuCount: 1)
        XCTAssertEqual(call(&psci, 0xC400_0003, 0, 0x4008_0000, 0), .reply(alreadyOn))
        XCTAssertEqual(call(&psci, 0xC400_0003, 1, 0x4008_0000, 0), .reply(invalidParameters))
    }

    func testCPUOnStartsAnOffVCPUOnce() {
        var psci = PSCI(vcpuCount: 4)
        XCTAssertEqual(psci.online, [true, false, false, false])
        XCTAssertEqual(call(&psci, 0xC400_0003, 1, 0x4008_0000, 0xABCD),
                       .startCPU(target: 1, entry: 0x4008_0000, context: 0xABCD))
        XCTAssertEqual(psci.online, [true, true, false, false])
        XCTAssertEqual(call(&psci, 0xC400_0003, 1, 0x4008_0000, 0), .reply(alreadyOn))
        // SMC64: a 64-bit entry point and context pass through whole.
        XCTAssertEqual(call(&psci, 0xC400_0003, 3, 0x1_4000_0000, 0xFFFF_0000_0000_0001),
                       .startCPU(target: 3, entry: 0x1_4000_0000, context: 0xFFFF_0000_0000_0001))
    }

    func testCPUOnRefusesAffinitiesWithoutAVCPU() {
        var psci = PSCI(vcpuCount: 4)
        XCTAssertEqual(call(&psci, 0xC400_0003, 4, 0x4008_0000), .reply(invalidParameters))          // Aff0 too big
        XCTAssertEqual(call(&psci, 0xC400_0003, 0x101, 0x4008_0000), .reply(invalidParameters))      // Aff1 = 1
        XCTAssertEqual(call(&psci, 0xC400_0003, 0x1_0000_0001, 0x4008_0000), .reply(invalidParameters)) // Aff3 = 1
        XCTAssertEqual(call(&psci, 0xC400_0003, 0x8000_0001, 0x4008_0000), .reply(invalidParameters)) // bit 31: MBZ
        XCTAssertEqual(psci.online, [true, false, false, false])
    }

    func testCPUOnOutsideTheEntryPointsIsAnInvalidAddressAndLeavesTheVCPUOff() {
        var psci = PSCI(vcpuCount: 2)
        psci.entryPoints = 0x4000_0000...0x5FFF_FFFF
        let invalidAddress = PSCIReturn.invalidAddress.registerValue
        XCTAssertEqual(call(&psci, 0xC400_0003, 1, 0x3FFF_FFFC, 0), .reply(invalidAddress))
        XCTAssertEqual(call(&psci, 0xC400_0003, 1, 0x6000_0000, 0), .reply(invalidAddress))
        XCTAssertEqual(call(&psci, 0xC400_0003, 1, UInt64.max, 0), .reply(invalidAddress))
        XCTAssertEqual(psci.online, [true, false])
        XCTAssertEqual(call(&psci, 0xC400_0003, 1, 0x5FFF_FFFC, 9), .startCPU(target: 1, entry: 0x5FFF_FFFC, context: 9))
    }

    func testCPUOn32UsesOnlyTheLowHalfOfEachArgument() {
        var psci = PSCI(vcpuCount: 4)
        XCTAssertEqual(call(&psci, 0x8400_0003, 0xFFFF_FFFF_0000_0002, 0xDEAD_0000_4008_0000, 0x1_0000_0005),
                       .startCPU(target: 2, entry: 0x4008_0000, context: 5))
    }

    func testAffinityInfoReportsOnAndOff() {
        var psci = PSCI(vcpuCount: 2)
        XCTAssertEqual(call(&psci, 0xC400_0004, 0, 0), .reply(0))     // ON
        XCTAssertEqual(call(&psci, 0xC400_0004, 1, 0), .reply(1))     // OFF
        XCTAssertEqual(call(&psci, 0x8400_0004, 1, 0), .reply(1))
        _ = call(&psci, 0xC400_0003, 1, 0x4008_0000)
        XCTAssertEqual(call(&psci, 0xC400_0004, 1, 0), .reply(0))
        XCTAssertEqual(call(&psci, 0xC400_0004, 2, 0), .reply(invalidParameters))
        XCTAssertEqual(call(&psci, 0xC400_0004, 0, 1), .reply(invalidParameters)) // lowest level 1
    }

    func testCPUOffStopsTheCallerAndAllowsALaterCPUOn() {
        var psci = PSCI(vcpuCount: 2)
        _ = call(&psci, 0xC400_0003, 1, 0x4008_0000)
        XCTAssertEqual(call(&psci, 0x8400_0002, caller: 1), .stopCurrentCPU)
        XCTAssertEqual(psci.online, [true, false])
        XCTAssertEqual(call(&psci, 0xC400_0004, 1, 0), .reply(1))
        XCTAssertEqual(call(&psci, 0xC400_0003, 1, 0x4010_0000, 7),
                       .startCPU(target: 1, entry: 0x4010_0000, context: 7))
    }

    func testCPUSuspendReturnsSuccess() {
        var psci = PSCI(vcpuCount: 1)
        XCTAssertEqual(call(&psci, 0xC400_0001, 0x0001_0000, 0x4008_0000, 0), .reply(0))
        XCTAssertEqual(call(&psci, 0x8400_0001, 0), .reply(0))
    }

    func testMigrateInfoTypeSaysNoTrustedOS() {
        var psci = PSCI(vcpuCount: 1)
        XCTAssertEqual(call(&psci, 0x8400_0006), .reply(2))
    }

    func testSystemOffAndResetAreOutcomes() {
        var psci = PSCI(vcpuCount: 1)
        XCTAssertEqual(call(&psci, 0x8400_0008), .systemOff)
        XCTAssertEqual(call(&psci, 0x8400_0009), .systemReset)
    }

    func testSMCCCVersionIs11AndNoArchFeatures() {
        var psci = PSCI(vcpuCount: 1)
        XCTAssertEqual(call(&psci, 0x8000_0000), .reply(0x0001_0001))
        XCTAssertEqual(call(&psci, 0x8000_0001, 0x8000_8000), .reply(notSupported)) // ARCH_WORKAROUND_1
        XCTAssertEqual(call(&psci, 0x8000_0001, 0x8000_0002), .reply(notSupported)) // ARCH_SOC_ID
    }

    func testUnknownFunctionsAreNotSupported() {
        var psci = PSCI(vcpuCount: 1)
        for id: UInt64 in [0x8400_0005, 0xC400_000E, 0x8400_0012, 0x8400_00FF,
                           0x0400_0000,   // yielding call
                           0x8600_FF01,   // SiP service call
                           0xC400_0002] { // CPU_OFF has no SMC64 form
            XCTAssertEqual(call(&psci, id), .reply(notSupported), "function \(id)")
        }
    }

    func testGuestVisibleMPIDRHasRES1BitAndAff0() {
        XCTAssertEqual(PSCI.mpidr(ofVCPU: 0), 0x8000_0000)
        XCTAssertEqual(PSCI.mpidr(ofVCPU: 3), 0x8000_0003)
        // Linux passes the MPIDR with bit 31 masked off (MPIDR_HWID_BITMASK) as target_cpu.
        XCTAssertEqual(PSCI(vcpuCount: 4).vcpu(forAffinity: PSCI.mpidr(ofVCPU: 3) & PSCI.affinityMask), 3)
    }

    func testVCPUsPastFifteenTakeAff1AsOnQEMUVirtWithGICv3() {
        XCTAssertEqual(PSCI.mpidr(ofVCPU: 15), 0x8000_000F)
        XCTAssertEqual(PSCI.mpidr(ofVCPU: 16), 0x8000_0100)
        XCTAssertEqual(PSCI.mpidr(ofVCPU: 63), 0x8000_030F)
        let psci = PSCI(vcpuCount: 64)
        for n in 0..<64 { XCTAssertEqual(psci.vcpu(forAffinity: PSCI.mpidr(ofVCPU: n) & PSCI.affinityMask), n) }
        XCTAssertNil(psci.vcpu(forAffinity: 0x0010), "Aff0 16 does not exist: each cluster has 16")
        XCTAssertNil(psci.vcpu(forAffinity: 0x0400), "vCPU 64")
        XCTAssertNil(psci.vcpu(forAffinity: 0x01_0000), "Aff2 1")
        XCTAssertNil(psci.vcpu(forAffinity: 0x01_0000_0000), "Aff3 1")
        var on = PSCI(vcpuCount: 20)
        XCTAssertEqual(on.handle(function: 0xC400_0003, arguments: (0x0103, 0x4000_0000, 7), caller: 0),
                       .startCPU(target: 19, entry: 0x4000_0000, context: 7))
    }

    func testCPUOnRegistersStartAtTheEntryInEL1hMaskedWithTheContextInX0() {
        var registers = PSCI.cpuOnRegisters(entry: 0x4008_0000, context: 0xc0ffee)
        XCTAssertEqual(registers.pc, 0x4008_0000)
        XCTAssertEqual(registers.pstate, 0x3c5, "EL1h, D, A, I and F masked")
        XCTAssertEqual(registers.read(0), 0xc0ffee)
        for n in 1..<31 { XCTAssertEqual(registers.read(n), 0, "x\(n)") }
    }
}
