// The board's own virtio devices, which back the guest's: the native platform finds them in QEMU
// virt's virtio-mmio window, drives them with the core's virtio drivers, and serves the guest's
// block, network and console requests with them. Guest buffers are handed to the board's devices
// by their host-physical address (guest RAM is host RAM, identity mapped): no copies for block and
// transmit; received frames and console input are copied into the guest's receive buffers.
import NativeHardware
import VMMCore

/// One virtio-mmio transport of the board, reached through volatile MMIO.
struct BoardRegisterWindow: DeviceRegisterWindow {
    let base: UInt
    func read32(_ offset: UInt64) -> UInt32 { mmio_read32(base + UInt(offset)) }
    func write32(_ offset: UInt64, _ value: UInt32) { mmio_write32(base + UInt(offset), value) }
    func read8(_ offset: UInt64) -> UInt8 { mmio_read8(base + UInt(offset)) }
    func read16(_ offset: UInt64) -> UInt16 { mmio_read16(base + UInt(offset)) }
    func memoryBarrier() { dsb_sy() }
}

/// The board's devices the VMM found, and the guest devices they back.
struct BoardDevices {
    static let window: UInt = 0x0a00_0000
    static let slots = 32
    static let slotSize: UInt = 0x200

    var block: VirtioBlockDriver<BoardRegisterWindow>?
    var network: VirtioNetDriver<BoardRegisterWindow>?
    var console: VirtioConsoleDriver<BoardRegisterWindow>?
    var networkInterrupt: UInt32 = 0
    var consoleInterrupt: UInt32 = 0

    /// Probes every slot, brings up the first block, network and console device found, and says
    /// which guest devices they allow. Guest devices take QEMU's slot numbering from 0 upwards.
    static func discover(mac: [UInt8]) -> (BoardDevices, [VirtioDeviceDescription]) {
        var devices = BoardDevices()
        var dma = DMARegion.allocate(size: 2 << 20)
        var guest: [VirtioDeviceDescription] = []
        var slot = 0
        while slot < slots {
            let registers = BoardRegisterWindow(base: window + UInt(slot) * slotSize)
            let interrupt = 48 + UInt32(slot)
            switch VirtioMMIODriver.probe(registers) {
            case .block where devices.block == nil:
                if let driver = try? VirtioBlockDriver(registers: registers, dma: &dma) {
                    devices.block = driver
                    guest.append(.qemuVirtSlot(guest.count, .block(capacitySectors: driver.capacity, readOnly: driver.readOnly)))
                    NativeConsole.write("vmm: disk: board virtio-blk, ")
                    NativeConsole.decimal(driver.capacity / 2048)
                    NativeConsole.write(" MiB\n")
                }
            case .network where devices.network == nil:
                if let driver = try? VirtioNetDriver(registers: registers, dma: &dma) {
                    devices.network = driver
                    devices.networkInterrupt = interrupt
                    guest.append(.qemuVirtSlot(guest.count, .network(mac: driver.mac ?? mac)))
                    NativeGIC.enable(interrupt)
                    NativeConsole.write("vmm: network: board virtio-net\n")
                }
            case .console where devices.console == nil:
                if let driver = try? VirtioConsoleDriver(registers: registers, dma: &dma) {
                    devices.console = driver
                    devices.consoleInterrupt = interrupt
                    guest.append(.qemuVirtSlot(guest.count, .console))
                    NativeGIC.enable(interrupt)
                    NativeConsole.write("vmm: console: board virtio-console as the guest's hvc0\n")
                }
            default:
                break
            }
            slot += 1
        }
        return (devices, guest)
    }

    /// A guest buffer as the board's device sees it: guest RAM sits at a fixed offset in host RAM.
    static func deviceBuffers(_ segments: [VirtqueueBuffer]) -> [DeviceBuffer] {
        var buffers: [DeviceBuffer] = []
        buffers.reserveCapacity(segments.count)
        for segment in segments {
            let physical = segment.address.raw - NativeBoard.guestRAMBase + NativeBoard.guestRAMHost
            buffers.append(DeviceBuffer(physical: physical, length: segment.length, deviceWritable: segment.deviceWritable))
        }
        return buffers
    }
}

extension DMARegion {
    /// Identity-mapped host memory for the drivers' rings and buffers.
    static func allocate(size: Int) -> DMARegion {
        let host = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        host.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        return DMARegion(host: host, physical: UInt64(UInt(bitPattern: host)), size: size)
    }
}
