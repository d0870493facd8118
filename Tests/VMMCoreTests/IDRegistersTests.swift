// The ID registers a guest reads under HCR_EL2.TID3 (Exits/IDRegisters.swift): the hardware's
// values with what the VMM does not give hidden, PARange cut to the IPA size, and the exit that
// delivers them stepping the PC and writing only Rt.
import XCTest
@testable import VMMCore

final class IDRegistersTests: XCTestCase {
    /// A -cpu max-like CPU (QEMU 7.2): every field of every register set to its largest value, so
    /// whatever is not hidden shows.
    static func allFeatures(_ crm: Int, _ op2: Int) -> UInt64 {
        0x1111_1111_1111_1111 &* UInt64(crm * 8 + op2 + 1) | 0x6   // PARange 6 (52 bits) in MMFR0
    }

    /// The trapped MRS of S3_0_C0_C<crm>_<op2> into `rt`.
    static func mrs(crm: Int, op2: Int, rt: Int) -> ExceptionSyndrome {
        let classAndLength: UInt32 = 0x18 << 26 | 1 << 25
        let op0: UInt32 = 3 << 20
        let operands: UInt32 = UInt32(op2) << 17 | UInt32(rt) << 5 | UInt32(crm) << 1
        return ExceptionSyndrome(UInt64(classAndLength | op0 | operands | 1))
    }

    func mrs(crm: Int, op2: Int, rt: Int) -> ExceptionSyndrome { Self.mrs(crm: crm, op2: op2, rt: rt) }

    func field(_ value: UInt64, _ shift: Int) -> UInt64 { (value >> UInt64(shift)) & 0xF }

    func testHiddenFeaturesReadAsAbsentAndTheRestAsTheHardwareHasThem() {
        let guest = GuestIDRegisters(ipaBits: 40, gicVersion: .v2, hardware: Self.allFeatures)
        let pfr0 = guest.value(crm: 4, op2: 0), hardwarePFR0 = Self.allFeatures(4, 0)
        XCTAssertEqual(field(pfr0, 8), 0, "EL2: the guest has no hypervisor")
        XCTAssertEqual(field(pfr0, 24), 0, "GIC system registers: a GICv2 guest")
        XCTAssertEqual(field(pfr0, 36), 0, "SEL2")
        XCTAssertEqual(field(pfr0, 40), 0, "MPAM")
        XCTAssertEqual(field(pfr0, 44), 0, "AMU")
        for shift in [0, 4, 12, 16, 20, 28, 32, 48, 56, 60] {   // EL0, EL1, EL3, FP, AdvSIMD, RAS, SVE, DIT, CSV2, CSV3
            XCTAssertEqual(field(pfr0, shift), field(hardwarePFR0, shift), "PFR0 [\(shift + 3):\(shift)] kept")
        }
        let pfr1 = guest.value(crm: 4, op2: 1)
        XCTAssertEqual(pfr1, Self.allFeatures(4, 1) & 0x0000_000F_0000_F0FF, "PFR1: BT, SSBS, RAS_frac, CSV2_frac only")
        XCTAssertEqual(field(pfr1, 8), 0, "MTE")
        XCTAssertEqual(field(pfr1, 24), 0, "SME")
        XCTAssertEqual(guest.value(crm: 4, op2: 4), Self.allFeatures(4, 4), "ZFR0: SVE's features as they are")
        XCTAssertEqual(guest.value(crm: 4, op2: 5), 0, "SMFR0: no SME")
        let dfr0 = guest.value(crm: 5, op2: 0)
        XCTAssertEqual(dfr0, Self.allFeatures(5, 0) & 0x0000_00F0_F0F0_FF0F, "DFR0: debug, PMU, breakpoints only")
        XCTAssertEqual(guest.value(crm: 5, op2: 1), 0)
        XCTAssertEqual(guest.value(crm: 5, op2: 4), 0)
        XCTAssertEqual(guest.value(crm: 6, op2: 0), Self.allFeatures(6, 0), "ISAR0 as it is")
        XCTAssertEqual(guest.value(crm: 6, op2: 1), Self.allFeatures(6, 1) & ~(0xF << 60), "ISAR1 without LS64")
        XCTAssertEqual(field(guest.value(crm: 6, op2: 1), 4), field(Self.allFeatures(6, 1), 4), "APA kept")
        XCTAssertEqual(guest.value(crm: 6, op2: 2), Self.allFeatures(6, 2) & ~(0xF << 16), "ISAR2 without MOPS")
        let mmfr1 = guest.value(crm: 7, op2: 1)
        for shift in [4, 8, 28, 32, 40] { XCTAssertEqual(field(mmfr1, shift), 0, "MMFR1 [\(shift + 3):\(shift)]") }
        XCTAssertEqual(field(mmfr1, 0), field(Self.allFeatures(7, 1), 0), "HAFDBS kept")
        let mmfr2 = guest.value(crm: 7, op2: 2)
        XCTAssertEqual(field(mmfr2, 24), 0, "NV")
        XCTAssertEqual(field(mmfr2, 56), 0, "EVT")
        for (crm, op2) in [(1, 0), (2, 3), (3, 0), (3, 7), (4, 7), (7, 3), (7, 7)] {
            XCTAssertEqual(guest.value(crm: crm, op2: op2), Self.allFeatures(crm, op2), "C\(crm)_\(op2) as it is")
        }
    }

    func testGICv3GuestsSeeTheSystemRegisterInterface() {
        let guest = GuestIDRegisters(ipaBits: 40, gicVersion: .v3, hardware: { _, _ in 0 })
        XCTAssertEqual(field(guest.value(crm: 4, op2: 0), 24), 1)
    }

    func testPhysicalAddressRangeIsTheIPASizeWhenTheBoardHasMore() {
        let cases: [(ipaBits: Int, hardware: UInt64, guest: UInt64)] = [
            (32, 6, 0), (36, 6, 1), (39, 6, 1), (40, 6, 2), (48, 6, 5), (52, 6, 6), (40, 1, 1), (44, 2, 2),
        ]
        for (ipaBits, hardware, expected) in cases {
            let guest = GuestIDRegisters(ipaBits: ipaBits, gicVersion: .v2, hardware: { crm, op2 in
                crm == 7 && op2 == 0 ? 0x0F00_0000_0000_1120 | hardware : 0
            })
            let mmfr0 = guest.value(crm: 7, op2: 0)
            XCTAssertEqual(mmfr0 & 0xF, expected, "IPA \(ipaBits) bits, board PARange \(hardware)")
            XCTAssertEqual(mmfr0 & ~0xF, 0x0000_0000_0000_1120, "other fields kept, FGT hidden")
        }
    }

    func testOutOfGroupEncodingsAreNotIDRegisters() {
        let guest = GuestIDRegisters(ipaBits: 40, gicVersion: .v2, hardware: Self.allFeatures)
        XCTAssertNil(guest.value(of: SystemRegisterAccess(op0: 3, op1: 0, crn: 0, crm: 0, op2: 0, register: 1, isRead: true)),
                     "MIDR_EL1 is not trapped by TID3")
        XCTAssertNil(guest.value(of: SystemRegisterAccess(op0: 3, op1: 0, crn: 0, crm: 4, op2: 0, register: 1, isRead: false)),
                     "a write")
        XCTAssertNil(guest.value(of: SystemRegisterAccess(op0: 3, op1: 1, crn: 0, crm: 4, op2: 0, register: 1, isRead: true)))
        XCTAssertNil(guest.value(of: SystemRegisterAccess(op0: 3, op1: 0, crn: 1, crm: 4, op2: 0, register: 1, isRead: true)))
        XCTAssertEqual(guest.value(crm: 0, op2: 0), 0)
        XCTAssertEqual(guest.value(crm: 8, op2: 0), 0)
        XCTAssertEqual(guest.value(crm: 4, op2: 8), 0)
    }

    func machine(idRegisters: GuestIDRegisters?) -> (VirtualMachine, UnsafeMutableRawPointer) {
        let host = UnsafeMutableRawPointer.allocate(byteCount: 0x1000, alignment: 4096)
        var vm = VirtualMachine(memory: GuestMemory(base: GuestPhysicalAddress(0x4000_0000), size: 0x1000, host: host),
                                vcpuCount: 1, listRegisterCount: 4, routes: [])
        vm.idRegisters = idRegisters
        return (vm, host)
    }

    func testATrappedReadWritesRtAndStepsThePC() {
        let guest = GuestIDRegisters(ipaBits: 40, gicVersion: .v2, hardware: Self.allFeatures)
        var (vm, host) = machine(idRegisters: guest)
        defer { host.deallocate() }
        var platform = RecordingPlatform()
        for (crm, op2, rt) in [(4, 0, 3), (7, 0, 30), (6, 1, 0), (2, 5, 12)] {
            var registers = RegisterFile()
            for n in 0..<31 { registers.write(n, 0xdead_0000 | UInt64(n)) }
            registers.pc = 0x4000_0100
            let before = registers
            let action = vm.fault(vcpu: 0, syndrome: mrs(crm: crm, op2: op2, rt: rt), address: GuestPhysicalAddress(0),
                                  registers: &registers, platform: &platform)
            XCTAssertEqual(action, .resume)
            XCTAssertEqual(registers.pc, 0x4000_0104)
            for n in 0..<31 {
                XCTAssertEqual(registers.read(n), n == rt ? guest.value(crm: crm, op2: op2) : before.x[n], "x\(n)")
            }
        }
        var registers = RegisterFile()
        XCTAssertEqual(vm.fault(vcpu: 0, syndrome: mrs(crm: 4, op2: 0, rt: 31), address: GuestPhysicalAddress(0),
                                registers: &registers, platform: &platform), .resume, "into xzr: read and dropped")
    }

    func testWithoutIDRegistersOrForOtherSystemRegistersTheGuestStops() {
        var (vm, host) = machine(idRegisters: nil)
        defer { host.deallocate() }
        var platform = RecordingPlatform()
        var registers = RegisterFile()
        registers.pc = 0x4000_0100
        guard case .stop(let report) = vm.fault(vcpu: 0, syndrome: mrs(crm: 4, op2: 0, rt: 1),
                                                address: GuestPhysicalAddress(0), registers: &registers,
                                                platform: &platform) else { return XCTFail("not stopped") }
        XCTAssertEqual(report.reason, .unhandledSystemRegister)
        XCTAssertEqual(report.pc, 0x4000_0100)
        vm.idRegisters = GuestIDRegisters(ipaBits: 40, gicVersion: .v2, hardware: Self.allFeatures)
        // MSR ID_AA64PFR0_EL1 (a write; the registers are read-only) and MRS MIDR_EL1 (not group 3).
        let write = ExceptionSyndrome(mrs(crm: 4, op2: 0, rt: 1).raw & ~1)
        let midr = mrs(crm: 0, op2: 0, rt: 1)
        for syndrome in [write, midr] {
            guard case .stop = vm.fault(vcpu: 0, syndrome: syndrome, address: GuestPhysicalAddress(0),
                                        registers: &registers, platform: &platform) else {
                return XCTFail("not stopped: \(syndrome.raw)")
            }
        }
    }
}
