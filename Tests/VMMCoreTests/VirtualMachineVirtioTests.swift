// A guest's virtio-blk driver played through the VM's own exit path: every register access is a
// trapped store or load (a data-abort syndrome), as Linux's virtio_mmio driver would make them.
// Proves the routing MMIO → transport → device model → platform backend → virtual interrupt, and
// that a hostile ring marks the device DEVICE_NEEDS_RESET without stopping the VMM.
import XCTest
@testable import VMMCore

/// A platform whose block device is a RAM disk of 16 sectors filled with the sector number.
struct RAMDiskPlatform: VMMPlatform {
    var injected: [UInt32] = []
    var reads: [UInt64] = []
    mutating func writeListRegister(vcpu: Int, index: Int, entry: ListRegisterEntry) { injected.append(entry.interrupt) }
    mutating func acknowledgeInterrupt(_ interrupt: UInt32, vcpu: Int) {}
    func blockCapacity(device: Int) -> UInt64? { 16 }
    mutating func blockRead(device: Int, sector: UInt64, into segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        reads.append(sector)
        var current = sector
        for segment in segments {
            var offset: UInt64 = 0
            while offset < UInt64(segment.length) {
                memory.store(UInt8(truncatingIfNeeded: current + offset / 512), at: segment.address.adding(offset)!)
                offset += 1
            }
            current += UInt64(segment.length) / 512
        }
        return true
    }
}

/// A guest's virtio-mmio driver whose register accesses are trapped loads and stores through the VM's
/// exit path, at the device window at `base` (register x1 for stores, x2 for loads).
protocol PlaysAVirtioDriver: AnyObject {
    var base: UInt64 { get }
    var vm: VirtualMachine! { get set }
    var platform: RAMDiskPlatform { get set }
    var registers: RegisterFile { get set }
}

extension PlaysAVirtioDriver {
    func write(_ offset: UInt64, _ value: UInt32) {
        registers.write(1, UInt64(value))
        let action = vm.fault(vcpu: 0, syndrome: dataAbortSyndrome(size: 4, register: 1, write: true),
                              address: GuestPhysicalAddress(base + offset), registers: &registers, platform: &platform)
        XCTAssertEqual(action, .resume)
    }

    func read(_ offset: UInt64) -> UInt32 {
        let action = vm.fault(vcpu: 0, syndrome: dataAbortSyndrome(size: 4, register: 2, write: false),
                              address: GuestPhysicalAddress(base + offset), registers: &registers, platform: &platform)
        XCTAssertEqual(action, .resume)
        return UInt32(truncatingIfNeeded: registers.read(2))
    }

    /// §3.1.1 as Linux does it: the device-specific `features` (low 32 bits) and VERSION_1, then queue 0
    /// at `driver`'s rings.
    func initialize(_ driver: DriverSideQueue, deviceID: UInt32, features: UInt64 = 0) {
        XCTAssertEqual(read(0x000), 0x7472_6976)
        XCTAssertEqual(read(0x008), deviceID, "DeviceID")
        write(0x070, 0)
        write(0x070, 1)
        write(0x070, 3)
        write(0x024, 1); write(0x020, 1)          // VIRTIO_F_VERSION_1 (bit 32)
        write(0x024, 0); write(0x020, UInt32(truncatingIfNeeded: features))
        write(0x070, 11)
        XCTAssertEqual(read(0x070) & 8, 8, "FEATURES_OK accepted")
        write(0x030, 0)
        write(0x038, UInt32(driver.configuration.size))
        write(0x080, UInt32(driver.configuration.descriptorTable.raw)); write(0x084, 0)
        write(0x090, UInt32(driver.configuration.availableRing.raw)); write(0x094, 0)
        write(0x0a0, UInt32(driver.configuration.usedRing.raw)); write(0x0a4, 0)
        write(0x044, 1)
        write(0x070, 15)
    }
}

final class VirtualMachineVirtioTests: XCTestCase, PlaysAVirtioDriver {
    let base: UInt64 = 0x0a00_0000
    var ram: TestGuestRAM!
    var vm: VirtualMachine!
    var platform = RAMDiskPlatform()
    var registers = RegisterFile()

    override func setUp() {
        ram = TestGuestRAM()
        vm = VirtualMachine(memory: ram.memory, vcpuCount: 1, listRegisterCount: 4, routes: [],
                            devices: [.qemuVirtSlot(0, .block(capacitySectors: 16, readOnly: false))])
        platform = RAMDiskPlatform()
        // The guest's GIC driver enables the distributor and the device's SPI (INTID 48).
        vm.vgic.distributorWrite(vcpu: 0, offset: 0, width: 4, value: 1, sink: &platform)
        vm.vgic.distributorWrite(vcpu: 0, offset: 0x104, width: 4, value: 1 << 16, sink: &platform)
    }

    func testReadRequestReachesTheBackendAndRaisesTheDeviceInterrupt() {
        let driver = DriverSideQueue(ram: ram, size: 16)
        initialize(driver, deviceID: 2)
        let header = ram.allocate(16), data = ram.allocate(1024), status = ram.allocate(1)
        ram.memory.store(UInt32(0), at: header)                       // VIRTIO_BLK_T_IN
        ram.memory.store(UInt64(3), at: header.adding(8)!)            // sector 3
        ram.memory.store(UInt8(0xff), at: status)
        driver.publish(driver.addChain([.readable(header, 16), .writable(data, 1024), .writable(status, 1)]))
        write(0x050, 0)                                               // QueueNotify
        XCTAssertEqual(platform.reads, [3])
        XCTAssertEqual(ram.memory.load(UInt8.self, at: status), 0, "VIRTIO_BLK_S_OK")
        XCTAssertEqual(ram.memory.load(UInt8.self, at: data.adding(512)!), 4, "second sector read is sector 4")
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertEqual(driver.usedElement(0).length, 1025)
        XCTAssertEqual(platform.injected, [48], "the device's SPI goes to the guest")
        XCTAssertEqual(read(0x060) & 1, 1, "InterruptStatus: used buffer")
    }

    func testLoopingChainMarksTheDeviceNeedsResetAndTheVMMGoesOn() {
        let driver = DriverSideQueue(ram: ram, size: 16)
        initialize(driver, deviceID: 2)
        let buffer = ram.allocate(16)
        // Descriptor 0 points to itself: a chain that never ends (§2.7.5.2 forbids loops).
        driver.writeDescriptor(0, address: buffer.raw, length: 16, flags: 1, next: 0)
        driver.publish(0)
        write(0x050, 0)
        XCTAssertEqual(read(0x070) & 0x40, 0x40, "DEVICE_NEEDS_RESET")
        XCTAssertEqual(read(0x060) & 2, 2, "configuration change interrupt")
        XCTAssertEqual(platform.reads, [])
        XCTAssertEqual(platform.injected, [48])
        // The driver resets the device and it works again.
        write(0x070, 0)
        XCTAssertEqual(read(0x070), 0)
    }

    func testRingsOutsideGuestRAMAreRefusedAtQueueReady() {
        write(0x070, 1); write(0x070, 3)
        write(0x024, 1); write(0x020, 1); write(0x070, 11)
        write(0x030, 0); write(0x038, 16)
        write(0x080, 0xffff_f000); write(0x084, 0xffff_ffff)        // far outside RAM
        write(0x090, 0x4000_1000); write(0x0a0, 0x4000_2000)
        write(0x044, 1)
        XCTAssertEqual(read(0x070) & 0x40, 0x40)
        XCTAssertEqual(read(0x044), 0, "the queue did not become ready")
    }
}
