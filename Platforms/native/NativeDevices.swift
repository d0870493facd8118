// The board's own virtio devices, which back the guest's: the native platform finds them in QEMU
// virt's virtio-mmio window, drives them with the core's virtio drivers, and serves the guest's
// block, network and console requests with them. Guest buffers are handed to the board's devices
// by their host-physical address (guest RAM is host RAM at a fixed offset): no copies for block and
// transmit; received frames and console input are copied into the guest's receive buffers.
//
// The guest's configuration lists its devices in order; the n-th guest device of a type is backed
// by the n-th board device of that type in QEMU command-line order. QEMU plugs the first
// `-device virtio-…-device` into the highest-numbered transport, so command-line order is
// descending slot order. The guest's devices take the low slots' addresses (0x0a000000 + 0x200·n, only
// in its IPA space) and the board's the high ones, counted down from 31: the documented maximum of
// 16 devices (8 disks, 4 networks, 4 consoles; each console its own virtio-serial device) fills QEMU's
// 32 transports exactly. Network and console interrupts (INTID 48 + slot) are enabled and served in
// `handleInterrupts`; block requests are polled to completion, so their lines stay disabled.
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

/// A board device driver and the physical interrupt its transport raises.
struct BoardDevice<Driver> {
    var driver: Driver
    let interrupt: UInt32
    /// The guest's device of that type it backs (for networks: the guest's network index).
    var guestDevice = 0
}

/// A guest network card on one of the VMM's networks: its switch and its port there.
struct SwitchAttachment {
    let guestDevice: Int
    let network: Int
    var port = 0
}

/// The board's devices that back the guest's, indexed like the guest's devices of each type.
struct BoardDevices {
    static let window: UInt = 0x0a00_0000
    static let slots = 32
    static let slotSize: UInt = 0x200

    var blocks: [BoardDevice<VirtioBlockDriver<BoardRegisterWindow>>] = []
    var networks: [BoardDevice<VirtioNetDriver<BoardRegisterWindow>>] = []
    var consoles: [BoardDevice<VirtioConsoleDriver<BoardRegisterWindow>>] = []
    /// The board console behind the VM's emulated PL011 (every VM but the first).
    var serial: BoardDevice<VirtioConsoleDriver<BoardRegisterWindow>>? = nil
    /// The guest's network cards on the VMM's networks (ports numbered when every VM is up).
    var switched: [SwitchAttachment] = []

    /// How many board devices of each type earlier VMs took (VMs take them in the system file's order).
    struct Taken {
        var blocks = 0, networks = 0, consoles = 0
    }

    /// The board's transports holding a device of `type`, in QEMU command-line order.
    static func slots(of type: VirtioDeviceType) -> [Int] {
        var found: [Int] = []
        var slot = slots - 1
        while slot >= 0 {
            if VirtioMMIODriver.probe(registers(slot)) == type { found.append(slot) }
            slot -= 1
        }
        return found
    }

    static func registers(_ slot: Int) -> BoardRegisterWindow {
        BoardRegisterWindow(base: window + UInt(slot) * slotSize)
    }

    /// Brings up one board device for each device the VM is configured with, after those `taken` by
    /// earlier VMs, and with `serial` one more console for its emulated PL011; their interrupts go to
    /// `interruptCPU`. A guest device without a board device to back it is left out of the guest
    /// (and said so on the console).
    static func bringUp(_ configured: [ConfiguredDevice], taken: inout Taken, serial: Bool,
                        interruptCPU: Int) -> (BoardDevices, [VirtioDeviceDescription]) {
        var board = BoardDevices()
        var dma = DMARegion.allocate(size: BoardDriverMemory.size)
        var guest: [VirtioDeviceDescription] = []
        var guestNetworks = 0
        let blockSlots = slots(of: .block), networkSlots = slots(of: .network), consoleSlots = slots(of: .console)
        for device in configured {
            switch device {
            case .block(let readOnly):
                let n = taken.blocks + board.blocks.count
                guard n < blockSlots.count,
                      let driver = try? VirtioBlockDriver(registers: registers(blockSlots[n]), dma: &dma) else {
                    NativeConsole.write("vmm: no board virtio-blk device for a configured disk; left out\n")
                    continue
                }
                board.blocks.append(BoardDevice(driver: driver, interrupt: 48 + UInt32(blockSlots[n])))
                guest.append(.qemuVirtSlot(guest.count, .block(capacitySectors: driver.capacity,
                                                               readOnly: readOnly || driver.readOnly)))
            case .switchedNetwork(let mac, let network):
                board.switched.append(SwitchAttachment(guestDevice: guestNetworks, network: network))
                guestNetworks += 1
                // No wire between VMs: checksum and TCP segmentation offloads pass through the switch.
                guest.append(.qemuVirtSlot(guest.count, .network(mac: mac, offloads: true)))
            case .network(let mac):
                let n = taken.networks + board.networks.count
                guard n < networkSlots.count,
                      let driver = try? VirtioNetDriver(registers: registers(networkSlots[n]), dma: &dma) else {
                    NativeConsole.write("vmm: no board virtio-net device for a configured network; left out\n")
                    continue
                }
                let interrupt = 48 + UInt32(networkSlots[n])
                board.networks.append(BoardDevice(driver: driver, interrupt: interrupt, guestDevice: guestNetworks))
                guestNetworks += 1
                guest.append(.qemuVirtSlot(guest.count, .network(mac: mac)))
                NativeGIC.enable(interrupt, toCPU: interruptCPU)
            case .console:
                let n = taken.consoles + board.consoles.count
                guard n < consoleSlots.count,
                      let driver = try? VirtioConsoleDriver(registers: registers(consoleSlots[n]), dma: &dma) else {
                    NativeConsole.write("vmm: no board virtio-console device for a configured console; left out\n")
                    continue
                }
                let interrupt = 48 + UInt32(consoleSlots[n])
                board.consoles.append(BoardDevice(driver: driver, interrupt: interrupt))
                guest.append(.qemuVirtSlot(guest.count, .console))
                NativeGIC.enable(interrupt, toCPU: interruptCPU)
            }
        }
        taken.blocks += board.blocks.count
        taken.networks += board.networks.count
        taken.consoles += board.consoles.count
        if serial {
            if taken.consoles < consoleSlots.count,
               let driver = try? VirtioConsoleDriver(registers: registers(consoleSlots[taken.consoles]), dma: &dma) {
                let interrupt = 48 + UInt32(consoleSlots[taken.consoles])
                board.serial = BoardDevice(driver: driver, interrupt: interrupt)
                NativeGIC.enable(interrupt, toCPU: interruptCPU)
                taken.consoles += 1
            } else {
                NativeConsole.write("vmm: no board virtio-console device for a VM's serial line; its output is lost\n")
            }
        }
        NativeConsole.write("vmm: devices: ")
        writeCount(board.blocks.count, " disk", " disks")
        NativeConsole.write(", ")
        writeCount(board.networks.count, " network", " networks")
        NativeConsole.write(", ")
        writeCount(board.consoles.count, " console", " consoles")
        NativeConsole.write("\n")
        return (board, guest)
    }

    /// "1 disk", "0 disks", "2 disks".
    static func writeCount(_ count: Int, _ singular: StaticString, _ plural: StaticString) {
        NativeConsole.decimal(UInt64(count))
        NativeConsole.write(count == 1 ? singular : plural)
    }

    /// A guest buffer as the board's device sees it: guest RAM sits at a fixed offset in host RAM.
    static func deviceBuffers(_ segments: [VirtqueueBuffer], guestRAMBase: UInt64, guestRAMHost: UInt64) -> [DeviceBuffer] {
        var buffers: [DeviceBuffer] = []
        buffers.reserveCapacity(segments.count)
        for segment in segments {
            let physical = segment.address.raw - guestRAMBase + guestRAMHost
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
