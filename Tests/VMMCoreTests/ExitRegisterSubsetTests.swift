// The seL4 platform's fast path moves only the registers an exit uses (TCB_ReadRegisters and
// TCB_WriteRegisters up to `GuestExit.highestRegister`): the registers above it are never read, so
// the core sees whatever the platform's buffer held. These tests play every exit kind twice, once
// with the guest's whole register file (the slow path) and once with everything above
// `highestRegister` replaced by garbage (the fast path), and check that the two end alike: the
// same action, the same PC advance, the same registers up to the highest, and nothing written above
// it (a write there would be lost, since the fast path does not write it back).
import XCTest
@testable import VMMCore

final class ExitRegisterSubsetTests: XCTestCase {
    let gicd = GuestPhysicalAddress(0x0800_0000)
    let virtio = GuestPhysicalAddress(0x0a00_0000)
    let ramBase = GuestPhysicalAddress(0x4000_0000)
    let psciVersion: UInt64 = 0x8400_0000
    let cpuOn64: UInt64 = 0xC400_0003
    let affinityInfo64: UInt64 = 0xC400_0004
    let features: UInt64 = 0x8400_000A
    let hvc = ExceptionSyndrome(0x16 << 26 | 1 << 25)
    let smc = ExceptionSyndrome(0x17 << 26 | 1 << 25)

    /// The guest's registers: every one distinct, so a value read from the wrong register shows.
    func guestRegisters(_ set: [Int: UInt64] = [:]) -> RegisterFile {
        var registers = RegisterFile()
        for n in 0..<31 { registers.write(n, 0x1111_0000_0000_0000 &* UInt64(n + 1) | UInt64(n)) }
        for (n, value) in set { registers.write(n, value) }
        registers.pc = 0xffff_8000_1000_0000
        registers.pstate = 0x3c5
        return registers
    }

    /// Two VMs in the same state (two vCPUs, one virtio-blk device), one for each path.
    func machine() -> (VirtualMachine, UnsafeMutableRawPointer) {
        let host = UnsafeMutableRawPointer.allocate(byteCount: 0x10000, alignment: 4096)
        host.initializeMemory(as: UInt8.self, repeating: 0, count: 0x10000)
        let vm = VirtualMachine(memory: GuestMemory(base: ramBase, size: 0x10000, host: host), vcpuCount: 2,
                                listRegisterCount: 4, routes: [InterruptRoute(physical: 27, virtual: 27)],
                                devices: [.qemuVirtSlot(0, .block(capacitySectors: 16, readOnly: false))])
        return (vm, host)
    }

    /// Plays `syndrome` at `address` on both paths after `prepare` ran on both VMs, and compares.
    func assertFastPathMatches(_ syndrome: ExceptionSyndrome, at address: GuestPhysicalAddress,
                               registers: RegisterFile, vcpu: Int = 0,
                               prepare: (inout VirtualMachine, inout RecordingPlatform) -> Void = { _, _ in },
                               file: StaticString = #filePath, line: UInt = #line) {
        let exit = GuestExit(syndrome: syndrome, address: address)
        let moved = (exit.highestRegister ?? -1) + 1     // registers x0..<moved go to and from seL4
        var (slowVM, slowRAM) = machine()
        var (fastVM, fastRAM) = machine()
        defer { slowRAM.deallocate(); fastRAM.deallocate() }
        var slowPlatform = RecordingPlatform()
        var fastPlatform = RecordingPlatform()
        prepare(&slowVM, &slowPlatform)
        prepare(&fastVM, &fastPlatform)

        var slow = registers
        let slowAction = slowVM.fault(vcpu: vcpu, syndrome: syndrome, address: address,
                                      registers: &slow, platform: &slowPlatform)
        var fast = RegisterFile()        // what seL4_UserContext holds beyond the words read
        for n in 0..<31 { fast.write(n, n < moved ? registers.x[n] : 0xbad0_0000_0000_0000 | UInt64(n)) }
        fast.pc = registers.pc
        fast.pstate = registers.pstate
        let untouched = fast
        let fastAction = fastVM.fault(vcpu: vcpu, syndrome: syndrome, address: address,
                                      registers: &fast, platform: &fastPlatform)

        XCTAssertEqual(fastAction, slowAction, "action", file: file, line: line)
        XCTAssertEqual(fast.pc, slow.pc, "PC", file: file, line: line)
        for n in 0..<moved {
            XCTAssertEqual(fast.read(n), slow.read(n), "x\(n)", file: file, line: line)
        }
        for n in moved..<31 {
            XCTAssertEqual(fast.read(n), untouched.x[n], "x\(n) is above the registers moved: never written",
                           file: file, line: line)
            XCTAssertEqual(slow.read(n), registers.x[n], "x\(n) written by the slow path", file: file, line: line)
        }
        XCTAssertEqual(fastPlatform.listRegisters.map(\.entry), slowPlatform.listRegisters.map(\.entry),
                       "list registers", file: file, line: line)
        XCTAssertEqual(fastVM.vgic.distributorRead(vcpu: 0, offset: 0x100, width: 4),
                       slowVM.vgic.distributorRead(vcpu: 0, offset: 0x100, width: 4), "GICD_ISENABLER0",
                       file: file, line: line)
        XCTAssertEqual(fastVM.psci.affinityState(ofVCPU: 1), slowVM.psci.affinityState(ofVCPU: 1), "vCPU 1's PSCI state",
                       file: file, line: line)
    }

    func testDistributorLoadsOfEveryWidthIntoLowAndHighRegisters() {
        for (size, offset) in [(4, 0x004), (1, 0x421), (2, 0x420), (4, 0x100), (4, 0x800)] {
            for register in [0, 5, 17, 30] {
                assertFastPathMatches(dataAbortSyndrome(size: size, register: register, write: false),
                                      at: gicd.adding(UInt64(offset))!, registers: guestRegisters())
            }
        }
    }

    func testDistributorStoresFromLowHighAndZeroRegisters() {
        for register in [1, 9, 28, 31] {
            // GICD_ISENABLER0 (SGIs 0-15 are always enabled), then an SGI by GICD_SGIR to vCPU 1.
            assertFastPathMatches(dataAbortSyndrome(size: 4, register: register, write: true),
                                  at: gicd.adding(0x100)!, registers: guestRegisters([register: 0x0800_0001]))
            assertFastPathMatches(dataAbortSyndrome(size: 4, register: register, write: true),
                                  at: gicd.adding(0xf00)!, registers: guestRegisters([register: 0x0002_0003]))
        }
    }

    func testVirtioTransportLoadsAndStores() {
        assertFastPathMatches(dataAbortSyndrome(size: 4, register: 2, write: false), at: virtio,
                              registers: guestRegisters())
        assertFastPathMatches(dataAbortSyndrome(size: 4, register: 22, write: false), at: virtio.adding(0x008)!,
                              registers: guestRegisters())
        assertFastPathMatches(dataAbortSyndrome(size: 4, register: 1, write: true), at: virtio.adding(0x070)!,
                              registers: guestRegisters([1: 1]))
    }

    func testPSCICallsOverHVCAndSMC() {
        let inRAM = ramBase.raw + 0x1000
        let calls: [[Int: UInt64]] = [
            [0: psciVersion],
            [0: features, 1: cpuOn64],
            [0: cpuOn64, 1: 1, 2: inRAM, 3: 0xc0ffee],          // starts vCPU 1
            [0: cpuOn64, 1: 7, 2: inRAM, 3: 0],                 // no such vCPU
            [0: cpuOn64, 1: 1, 2: 0x10, 3: 0],                  // entry outside RAM
            [0: affinityInfo64, 1: 1, 2: 0],
            [0: 0x8400_00ff],                                   // not a PSCI function
        ]
        for call in calls {
            for syndrome in [hvc, smc] {
                assertFastPathMatches(syndrome, at: GuestPhysicalAddress(0), registers: guestRegisters(call))
            }
        }
    }

    func testCPUOnOfAVCPUAlreadyOnAndAffinityInfoOfARunningVCPU() {
        let inRAM = ramBase.raw + 0x1000
        let startOne: (inout VirtualMachine, inout RecordingPlatform) -> Void = { vm, platform in
            var registers = self.guestRegisters([0: self.cpuOn64, 1: 1, 2: inRAM, 3: 0])
            _ = vm.fault(vcpu: 0, syndrome: self.smc, address: GuestPhysicalAddress(0), registers: &registers,
                         platform: &platform)
        }
        assertFastPathMatches(smc, at: GuestPhysicalAddress(0),
                              registers: guestRegisters([0: cpuOn64, 1: 1, 2: inRAM, 3: 0]), prepare: startOne)
        assertFastPathMatches(hvc, at: GuestPhysicalAddress(0),
                              registers: guestRegisters([0: affinityInfo64, 1: 1, 2: 0]), prepare: startOne)
    }

    func testWaitsAndAccessesThatStopTheGuestMoveNoRegisters() {
        let wfi = ExceptionSyndrome(0x01 << 26 | 1 << 25)
        let wfe = ExceptionSyndrome(0x01 << 26 | 1 << 25 | 1)
        assertFastPathMatches(wfi, at: GuestPhysicalAddress(0), registers: guestRegisters())
        assertFastPathMatches(wfe, at: GuestPhysicalAddress(0), registers: guestRegisters())
        // Nothing at this address: stopped with a report carrying the PC.
        assertFastPathMatches(dataAbortSyndrome(size: 4, register: 3, write: true),
                              at: GuestPhysicalAddress(0x0c00_0000), registers: guestRegisters())
        // No valid syndrome (ISV 0): cannot be emulated.
        assertFastPathMatches(ExceptionSyndrome(0x24 << 26 | 1 << 25 | 0x07), at: gicd, registers: guestRegisters())
        // A trapped system register access and an exception class nobody handles.
        assertFastPathMatches(ExceptionSyndrome(0x18 << 26 | 1 << 25 | 1), at: GuestPhysicalAddress(0),
                              registers: guestRegisters())
        assertFastPathMatches(ExceptionSyndrome(0x19 << 26 | 1 << 25), at: GuestPhysicalAddress(0),
                              registers: guestRegisters())
    }

    func testIDRegisterReadsIntoLowAndHighRegisters() {
        let withIDRegisters: (inout VirtualMachine, inout RecordingPlatform) -> Void = { vm, _ in
            vm.idRegisters = GuestIDRegisters(ipaBits: 40, gicVersion: .v2, hardware: IDRegistersTests.allFeatures)
        }
        for rt in [0, 7, 30, 31] {
            // MRS ID_AA64PFR0_EL1 / ID_AA64MMFR0_EL1 into x<rt>.
            for (crm, op2) in [(4, 0), (7, 0)] {
                assertFastPathMatches(IDRegistersTests.mrs(crm: crm, op2: op2, rt: rt), at: GuestPhysicalAddress(0), registers: guestRegisters(),
                                      prepare: withIDRegisters)
            }
        }
    }
}
