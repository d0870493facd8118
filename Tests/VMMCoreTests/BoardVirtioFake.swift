// Test helper: a fake of one of QEMU's virtio-mmio devices (version 2 register layout, virtio 1.2 §4.2.2)
// for the tests of the VMM's own virtio driver (VirtioDriver*.swift). It is a `DeviceRegisterWindow`, logs
// every register write and barrier in order, and plays the device side of the split rings in the same
// host memory the driver writes (the driver's DMA region and a "guest RAM" region, each at a physical
// address). Behaviour per device is a closure: given a queue and a chain, complete it now with a written
// length, or hold it (e.g. receive buffers waiting for a frame). `completionDelay` defers servicing a
// notification by that many barrier calls, the way QEMU finishes I/O on another thread while the driver polls.
//
//   let fake = BoardVirtioFake(deviceID: 2, features: VirtioFeature.version1)
//   let memory = BoardTestMemory()                 // DMA at 0x4800_0000, guest RAM at 0x4000_0000
//   fake.memory = memory
//   fake.behaviour = { fake, queue, chain in .complete(written: 0) }

import XCTest
@testable import VMMCore

/// Two host buffers standing for physical memory: the driver's DMA region and guest RAM.
final class BoardTestMemory {
    static let dmaPhysical: UInt64 = 0x4800_0000
    static let guestPhysical: UInt64 = 0x4000_0000
    let dmaHost: UnsafeMutableRawPointer
    let guestHost: UnsafeMutableRawPointer
    let dmaSize: Int
    let guestSize: Int

    init(dmaSize: Int = 1 << 20, guestSize: Int = 1 << 20) {
        self.dmaSize = dmaSize
        self.guestSize = guestSize
        dmaHost = UnsafeMutableRawPointer.allocate(byteCount: dmaSize, alignment: 4096)
        guestHost = UnsafeMutableRawPointer.allocate(byteCount: guestSize, alignment: 4096)
        dmaHost.initializeMemory(as: UInt8.self, repeating: 0xa5, count: dmaSize)   // not zero: proves zeroing
        guestHost.initializeMemory(as: UInt8.self, repeating: 0, count: guestSize)
    }
    deinit {
        dmaHost.deallocate()
        guestHost.deallocate()
    }

    var dma: DMARegion { DMARegion(host: dmaHost, physical: Self.dmaPhysical, size: dmaSize) }

    /// The host address of [physical, physical + length), or nil when it is in neither region.
    func host(_ physical: UInt64, length: Int = 1) -> UnsafeMutableRawPointer? {
        for (base, host, size) in [(Self.dmaPhysical, dmaHost, dmaSize), (Self.guestPhysical, guestHost, guestSize)]
        where physical >= base && physical - base + UInt64(length) <= UInt64(size) {
            return host + Int(physical - base)
        }
        return nil
    }

    func guestBytes(_ offset: Int, _ count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: guestHost + offset, count: count))
    }
    func setGuestBytes(_ offset: Int, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { (guestHost + offset).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    }
}

/// What the fake records, in order.
enum BoardEvent: Equatable {
    case write(UInt64, UInt32)
    case barrier
}

/// One descriptor chain as the fake device walked it.
struct BoardChain {
    var head: UInt16
    var buffers: [DeviceBuffer]
}

enum BoardCompletion { case complete(written: UInt32), hold }

final class BoardVirtioFake: DeviceRegisterWindow {
    struct QueueState {
        var maximum: UInt32 = 256
        var size: UInt32 = 0
        var descriptors: UInt64 = 0
        var driverArea: UInt64 = 0
        var deviceArea: UInt64 = 0
        var ready: UInt32 = 0
        var lastAvailable: UInt16 = 0
        var nextUsed: UInt16 = 0
        var held: [BoardChain] = []
    }

    var magic: UInt32 = 0x7472_6976
    var version: UInt32 = 2
    var deviceID: UInt32
    var offeredFeatures: UInt64
    /// FEATURES_OK does not stick (§3.1.1 step 6).
    var refusesFeatures = false
    /// Status reads back with these bits added once DRIVER_OK is written.
    var statusAfterDriverOK: UInt32 = 0
    /// Status never reads back 0 after a reset.
    var neverResets = false
    /// A reset leaves the queues' registers as they were (a broken device).
    var keepsQueuesOnReset = false
    var config: [UInt8] = []
    var configGeneration: UInt32 = 0
    /// Bumps ConfigGeneration on this many config-space reads (a device changing config under the driver).
    var generationChangesOnConfigRead = 0

    var status: UInt32 = 0
    var driverFeatures: UInt64 = 0
    var featuresSelect: UInt32 = 0
    var driverFeaturesSelect: UInt32 = 0
    var queueSelect: Int = 0
    var queues: [QueueState]
    var interruptStatus: UInt32 = 0
    var events: [BoardEvent] = []
    var notifications: [Int] = []

    var memory: BoardTestMemory?
    var behaviour: (BoardVirtioFake, Int, BoardChain) -> BoardCompletion = { _, _, _ in .complete(written: 0) }
    var completionDelay = 0
    /// Queues the device services at every barrier, without waiting for a notification (QEMU's thread racing the driver).
    var servicesOnBarrier: [Int] = []
    var pending: [(queue: Int, countdown: Int)] = []

    init(deviceID: UInt32, features: UInt64, queueCount: Int = 2) {
        self.deviceID = deviceID
        offeredFeatures = features
        queues = Array(repeating: QueueState(), count: queueCount)
    }

    var writes: [BoardEvent] { events.filter { $0 != .barrier } }
    var statusWrites: [UInt32] {
        events.compactMap { if case .write(0x070, let value) = $0 { value } else { nil } }
    }

    // MARK: DeviceRegisterWindow

    func read32(_ offset: UInt64) -> UInt32 {
        switch offset {
        case 0x000: return magic
        case 0x004: return version
        case 0x008: return deviceID
        case 0x00c: return 0x554d_4551                                   // "QEMU"
        case 0x010:
            switch featuresSelect {
            case 0: return UInt32(truncatingIfNeeded: offeredFeatures)
            case 1: return UInt32(truncatingIfNeeded: offeredFeatures >> 32)
            default: return 0
            }
        case 0x034: return queueSelect < queues.count ? queues[queueSelect].maximum : 0
        case 0x044: return queueSelect < queues.count ? queues[queueSelect].ready : 0
        case 0x060: return interruptStatus
        case 0x070: return neverResets && status == 0 ? VirtioStatus.acknowledge : status
        case 0x0fc: return configGeneration
        case 0x100...: return UInt32(configByte(offset, 4))
        default: return 0
        }
    }

    func read8(_ offset: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: configByte(offset, 1)) }
    func read16(_ offset: UInt64) -> UInt16 { UInt16(truncatingIfNeeded: configByte(offset, 2)) }

    private func configByte(_ offset: UInt64, _ width: Int) -> UInt64 {
        if generationChangesOnConfigRead > 0 {
            generationChangesOnConfigRead -= 1
            configGeneration += 1
        }
        let start = Int(offset) - 0x100
        // QEMU: an access past the end of config space reads all-ones.
        guard start >= 0, start + width <= config.count else { return UInt64.max }
        var value: UInt64 = 0
        for index in (0..<width).reversed() { value = value << 8 | UInt64(config[start + index]) }
        return value
    }

    func write32(_ offset: UInt64, _ value: UInt32) {
        events.append(.write(offset, value))
        switch offset {
        case 0x014: featuresSelect = value
        case 0x024: driverFeaturesSelect = value
        case 0x020:
            let shift = UInt64(driverFeaturesSelect) * 32
            if driverFeaturesSelect < 2 {
                driverFeatures = driverFeatures & ~(0xffff_ffff << shift) | UInt64(value) << shift
            }
        case 0x030: queueSelect = Int(value)
        case 0x038: queues[queueSelect].size = value
        case 0x044: queues[queueSelect].ready = value
        case 0x050: notified(Int(value))
        case 0x064: interruptStatus &= ~value
        case 0x070: writeStatus(value)
        case 0x080: queues[queueSelect].descriptors = queues[queueSelect].descriptors & ~0xffff_ffff | UInt64(value)
        case 0x084: queues[queueSelect].descriptors = queues[queueSelect].descriptors & 0xffff_ffff | UInt64(value) << 32
        case 0x090: queues[queueSelect].driverArea = queues[queueSelect].driverArea & ~0xffff_ffff | UInt64(value)
        case 0x094: queues[queueSelect].driverArea = queues[queueSelect].driverArea & 0xffff_ffff | UInt64(value) << 32
        case 0x0a0: queues[queueSelect].deviceArea = queues[queueSelect].deviceArea & ~0xffff_ffff | UInt64(value)
        case 0x0a4: queues[queueSelect].deviceArea = queues[queueSelect].deviceArea & 0xffff_ffff | UInt64(value) << 32
        default: break
        }
    }

    private func writeStatus(_ value: UInt32) {
        if value == 0 {
            status = 0
            if keepsQueuesOnReset { return }
            for index in queues.indices { queues[index] = QueueState(maximum: queues[index].maximum) }
            return
        }
        status = value
        if refusesFeatures { status &= ~VirtioStatus.featuresOK }
        if value & VirtioStatus.driverOK != 0 { status |= statusAfterDriverOK }
    }

    func memoryBarrier() {
        events.append(.barrier)
        for queue in servicesOnBarrier { service(queue) }
        guard !pending.isEmpty else { return }
        for index in pending.indices { pending[index].countdown -= 1 }
        let due = pending.filter { $0.countdown <= 0 }
        pending.removeAll { $0.countdown <= 0 }
        for item in due { service(item.queue) }
    }

    private func notified(_ queue: Int) {
        notifications.append(queue)
        if completionDelay == 0 { service(queue) } else { pending.append((queue, completionDelay)) }
    }

    // MARK: The device side of the split rings (§2.7)

    /// Pops every newly available chain of `queue` and completes or holds it as `behaviour` says.
    func service(_ queue: Int) {
        guard let memory, queues[queue].ready == 1, queues[queue].size > 0 else { return }
        let size = UInt16(queues[queue].size)
        let available = memory.host(queues[queue].driverArea, length: 4 + 2 * Int(size))!
        let index = UInt16(littleEndian: available.load(fromByteOffset: 2, as: UInt16.self))
        while queues[queue].lastAvailable != index {
            let slot = Int(queues[queue].lastAvailable % size)
            queues[queue].lastAvailable &+= 1
            let head = UInt16(littleEndian: available.load(fromByteOffset: 4 + 2 * slot, as: UInt16.self))
            let chain = walk(queue, head: head)
            switch behaviour(self, queue, chain) {
            case .complete(let written): complete(queue, head: head, written: written)
            case .hold: queues[queue].held.append(chain)
            }
        }
    }

    func walk(_ queue: Int, head: UInt16) -> BoardChain {
        let table = memory!.host(queues[queue].descriptors, length: 16 * Int(queues[queue].size))!
        var buffers: [DeviceBuffer] = []
        var index = head
        for _ in 0..<queues[queue].size {
            let entry = table + 16 * Int(index)
            let flags = UInt16(littleEndian: entry.load(fromByteOffset: 12, as: UInt16.self))
            buffers.append(DeviceBuffer(physical: UInt64(littleEndian: entry.load(as: UInt64.self)),
                                        length: UInt32(littleEndian: entry.load(fromByteOffset: 8, as: UInt32.self)),
                                        deviceWritable: flags & 2 != 0))
            guard flags & 1 != 0 else { break }
            index = UInt16(littleEndian: entry.load(fromByteOffset: 14, as: UInt16.self))
        }
        return BoardChain(head: head, buffers: buffers)
    }

    /// Writes a used element {head, written} and moves used.idx (§2.7.8), and raises the interrupt.
    func complete(_ queue: Int, head: UInt16, written: UInt32) {
        let size = Int(queues[queue].size)
        let used = memory!.host(queues[queue].deviceArea, length: 4 + 8 * size)!
        let slot = Int(queues[queue].nextUsed) % size
        used.storeBytes(of: UInt32(head).littleEndian, toByteOffset: 4 + 8 * slot, as: UInt32.self)
        used.storeBytes(of: written.littleEndian, toByteOffset: 8 + 8 * slot, as: UInt32.self)
        queues[queue].nextUsed &+= 1
        used.storeBytes(of: queues[queue].nextUsed.littleEndian, toByteOffset: 2, as: UInt16.self)
        interruptStatus |= 1
    }

    /// Completes the oldest held chain of `queue` after filling its writable part with `bytes`.
    @discardableResult
    func completeHeld(_ queue: Int, filling bytes: [UInt8] = []) -> Bool {
        guard !queues[queue].held.isEmpty else { return false }
        let chain = queues[queue].held.removeFirst()
        complete(queue, head: chain.head, written: fill(chain, with: bytes))
        return true
    }

    /// The device-readable bytes of `chain`, in order.
    func readable(_ chain: BoardChain) -> [UInt8] {
        var bytes: [UInt8] = []
        for buffer in chain.buffers where !buffer.deviceWritable {
            let host = memory!.host(buffer.physical, length: Int(buffer.length))!
            bytes += UnsafeRawBufferPointer(start: host, count: Int(buffer.length))
        }
        return bytes
    }

    /// Copies `bytes` into the device-writable buffers of `chain`; returns how many fitted.
    func fill(_ chain: BoardChain, with bytes: [UInt8]) -> UInt32 {
        var copied = 0
        for buffer in chain.buffers where buffer.deviceWritable && copied < bytes.count {
            let host = memory!.host(buffer.physical, length: Int(buffer.length))!
            let count = min(Int(buffer.length), bytes.count - copied)
            bytes[copied..<copied + count].withUnsafeBytes { host.copyMemory(from: $0.baseAddress!, byteCount: count) }
            copied += count
        }
        return UInt32(copied)
    }
}
