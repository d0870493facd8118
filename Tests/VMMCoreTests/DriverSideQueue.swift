// Test helpers that play the guest's virtio driver (virtio 1.2 §2.7.13, §2.7.14): zeroed guest RAM
// with a bump allocator, and a driver-side split queue that lays out its rings in that RAM, adds
// direct or indirect chains, publishes them and reads the used ring back. Device-model tests use them.
//
//     let ram = TestGuestRAM()                               // 1 MiB at 0x4000_0000, zeroed
//     let driver = DriverSideQueue(ram: ram, size: 16)       // rings allocated from `ram`
//     var device = SplitVirtqueue(configuration: driver.configuration, indirectDescriptors: true, eventIndex: false)
//     let request = ram.allocate(16); ram.write([1, 2, 3], at: request)
//     let reply = ram.allocate(64)
//     let head = driver.addChain([.readable(request, 16), .writable(reply, 64)])   // or addIndirectChain
//     driver.publish(head)                                   // avail.ring[idx % size] = head; idx += 1
//     let chain = try device.popAvailable(memory: ram.memory)
//     ...; try device.pushUsed(head: head, writtenLength: 5, memory: ram.memory)
//     driver.usedIndex == 1; driver.usedElement(0).id == UInt32(head); driver.usedElement(0).length == 5
//
// Hostile tests write raw descriptors with `writeDescriptor` and raw ring fields with the setters.

@testable import VMMCore

/// Zeroed host memory standing in for guest RAM; freed with the last reference.
final class TestGuestRAM {
    let memory: GuestMemory
    private let host: UnsafeMutableRawPointer
    private var next: UInt64

    private let owned: Bool

    init(base: UInt64 = 0x4000_0000, size: Int = 0x10_0000) {
        host = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        host.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        memory = GuestMemory(base: GuestPhysicalAddress(base), size: UInt64(size), host: host)
        next = base
        owned = true
    }

    /// Guest RAM over memory someone else owns (and keeps alive), e.g. where a fake device reaches it.
    init(base: UInt64, host: UnsafeMutableRawPointer, size: Int) {
        self.host = host
        memory = GuestMemory(base: GuestPhysicalAddress(base), size: UInt64(size), host: host)
        next = base
        owned = false
    }

    deinit { if owned { host.deallocate() } }

    /// `length` fresh bytes of guest RAM, aligned to `alignment` (a power of 2); traps when RAM runs out.
    func allocate(_ length: Int, alignment: UInt64 = 16) -> GuestPhysicalAddress {
        let start = (next + alignment - 1) & ~(alignment - 1)
        precondition(memory.contains(GuestPhysicalAddress(start), length: UInt64(max(length, 1))), "test RAM exhausted")
        next = start + UInt64(length)
        return GuestPhysicalAddress(start)
    }

    func write(_ bytes: [UInt8], at address: GuestPhysicalAddress) {
        let ok = bytes.withUnsafeBytes { memory.write($0, at: address) }
        precondition(ok, "test write outside RAM")
    }

    func read(at address: GuestPhysicalAddress, count: Int) -> [UInt8] {
        memory.withBytes(at: address, length: UInt64(count)) { Array($0) } ?? []
    }
}

extension VirtqueueBuffer {
    static func readable(_ address: GuestPhysicalAddress, _ length: UInt32) -> VirtqueueBuffer {
        VirtqueueBuffer(address: address, length: length, deviceWritable: false)
    }
    static func writable(_ address: GuestPhysicalAddress, _ length: UInt32) -> VirtqueueBuffer {
        VirtqueueBuffer(address: address, length: length, deviceWritable: true)
    }
}

/// The driver's half of one split virtqueue, laid out in a `TestGuestRAM`.
final class DriverSideQueue {
    let ram: TestGuestRAM
    let configuration: VirtqueueConfiguration
    var size: UInt16 { configuration.size }
    /// The driver's shadow of avail.idx: what `publish` writes next.
    private(set) var availableIndex: UInt16 = 0
    /// Next descriptor `addChain` uses; wraps to 0 at the end of the table.
    var nextFreeDescriptor: UInt16 = 0

    /// Allocates the descriptor table (16-aligned), available ring (2) and used ring (4) from `ram` (§2.7).
    init(ram: TestGuestRAM, size: UInt16) {
        self.ram = ram
        configuration = VirtqueueConfiguration(
            size: size,
            descriptorTable: ram.allocate(Int(SplitRingLayout.descriptorTableBytes(size)), alignment: 16),
            availableRing: ram.allocate(Int(SplitRingLayout.availableRingBytes(size)), alignment: 2),
            usedRing: ram.allocate(Int(SplitRingLayout.usedRingBytes(size)), alignment: 4))
    }

    /// Writes one raw descriptor (any values, for hostile tests) into the table at `table` (default: the queue's).
    func writeDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16 = 0, next: UInt16 = 0,
                         table: GuestPhysicalAddress? = nil) {
        let at = (table ?? configuration.descriptorTable).raw + UInt64(index) * 16
        let memory = ram.memory
        precondition(memory.store(address, at: GuestPhysicalAddress(at))
                     && memory.store(length, at: GuestPhysicalAddress(at + 8))
                     && memory.store(flags, at: GuestPhysicalAddress(at + 12))
                     && memory.store(next, at: GuestPhysicalAddress(at + 14)), "descriptor outside test RAM")
    }

    /// Puts `buffers` into consecutive free descriptors, chained with NEXT (§2.7.13.1); returns the head.
    @discardableResult
    func addChain(_ buffers: [VirtqueueBuffer]) -> UInt16 {
        let head = nextFreeDescriptor
        for (i, buffer) in buffers.enumerated() {
            let index = nextFreeDescriptor
            nextFreeDescriptor = (nextFreeDescriptor + 1) % size
            let last = i == buffers.count - 1
            writeDescriptor(index, address: buffer.address.raw, length: buffer.length,
                            flags: (buffer.deviceWritable ? SplitRingLayout.descriptorWrite : 0)
                                | (last ? 0 : SplitRingLayout.descriptorNext),
                            next: last ? 0 : nextFreeDescriptor)
        }
        return head
    }

    /// Puts `buffers` into a fresh indirect table (allocated from RAM) referenced by one descriptor
    /// with VIRTQ_DESC_F_INDIRECT (§2.7.5.3); returns the head.
    @discardableResult
    func addIndirectChain(_ buffers: [VirtqueueBuffer]) -> UInt16 {
        let table = ram.allocate(buffers.count * 16, alignment: 16)
        for (i, buffer) in buffers.enumerated() {
            let last = i == buffers.count - 1
            writeDescriptor(UInt16(i), address: buffer.address.raw, length: buffer.length,
                            flags: (buffer.deviceWritable ? SplitRingLayout.descriptorWrite : 0)
                                | (last ? 0 : SplitRingLayout.descriptorNext),
                            next: last ? 0 : UInt16(i + 1), table: table)
        }
        let head = nextFreeDescriptor
        nextFreeDescriptor = (nextFreeDescriptor + 1) % size
        writeDescriptor(head, address: table.raw, length: UInt32(buffers.count * 16),
                        flags: SplitRingLayout.descriptorIndirect)
        return head
    }

    /// Makes `head` available: avail.ring[idx % size] = head, then idx += 1 (§2.7.13.2, §2.7.13.3).
    func publish(_ head: UInt16) {
        let slot = configuration.availableRing.raw + 4 + 2 * UInt64(availableIndex % size)
        ram.memory.store(head, at: GuestPhysicalAddress(slot))
        availableIndex &+= 1
        ram.memory.store(availableIndex, at: GuestPhysicalAddress(configuration.availableRing.raw + 2))
    }

    /// Overwrites avail.idx (and the shadow) — e.g. to start near 65535 or to jump too far.
    func setAvailableIndex(_ value: UInt16) {
        availableIndex = value
        ram.memory.store(value, at: GuestPhysicalAddress(configuration.availableRing.raw + 2))
    }

    /// avail.flags (VIRTQ_AVAIL_F_NO_INTERRUPT = 1).
    func setAvailableFlags(_ flags: UInt16) {
        ram.memory.store(flags, at: configuration.availableRing)
    }

    /// avail.used_event, after the ring (VIRTIO_F_EVENT_IDX).
    func setUsedEvent(_ value: UInt16) {
        ram.memory.store(value, at: GuestPhysicalAddress(configuration.availableRing.raw + 4 + 2 * UInt64(size)))
    }

    var usedIndex: UInt16 {
        ram.memory.load(UInt16.self, at: GuestPhysicalAddress(configuration.usedRing.raw + 2))!
    }

    /// used.ring[position % size].
    func usedElement(_ position: UInt16) -> (id: UInt32, length: UInt32) {
        let at = configuration.usedRing.raw + 4 + 8 * UInt64(position % size)
        return (ram.memory.load(UInt32.self, at: GuestPhysicalAddress(at))!,
                ram.memory.load(UInt32.self, at: GuestPhysicalAddress(at + 4))!)
    }

    /// used.avail_event, after the used ring (VIRTIO_F_EVENT_IDX).
    var availEvent: UInt16 {
        ram.memory.load(UInt16.self, at: GuestPhysicalAddress(configuration.usedRing.raw + 4 + 8 * UInt64(size)))!
    }
}

/// A device-model test that plays the guest's driver over `ram` and `driver`: the buffer and chain
/// helpers the block, net and console tests share.
protocol PlaysTheDriver: AnyObject {
    var ram: TestGuestRAM! { get }
    var driver: DriverSideQueue! { get }
}

extension PlaysTheDriver {
    /// Copies `bytes` into fresh guest memory and returns a device-readable buffer naming them.
    func readable(_ bytes: [UInt8]) -> VirtqueueBuffer {
        let address = ram.allocate(bytes.count)
        ram.write(bytes, at: address)
        return .readable(address, UInt32(bytes.count))
    }

    /// Fresh guest memory of `count` bytes filled with 0xEE, for the device to write.
    func writable(_ count: Int) -> VirtqueueBuffer {
        let address = ram.allocate(count)
        ram.write([UInt8](repeating: 0xEE, count: count), at: address)
        return .writable(address, UInt32(count))
    }

    func contents(_ buffer: VirtqueueBuffer) -> [UInt8] {
        ram.read(at: buffer.address, count: Int(buffer.length))
    }

    /// Adds `buffers` as one chain and makes it available; returns its head.
    @discardableResult
    func post(_ buffers: [VirtqueueBuffer]) -> UInt16 {
        let head = driver.addChain(buffers)
        driver.publish(head)
        return head
    }
}
