// The driver side of one split virtqueue (virtio 1.2 §2.7), used when the VMM itself drives one of the
// board's own virtio-mmio devices (VirtioDriver.swift). It owns the descriptor table and both rings in
// memory the driver allocated from a `DMARegion`, hands out descriptors from a free list, publishes chains
// on the available ring and takes completed chains off the used ring. It never touches device registers:
// notifying the device is the transport's job. The device is the board's (QEMU's), not the guest, yet
// every index it writes is still range-checked so that a confused device cannot make the VMM crash.
// It also holds `DMARegion`, the driver's memory, and `DriverBufferPool`, buffers in it that the net and
// console drivers lend to their device.
//
// Memory ordering: the device reads the rings concurrently (QEMU runs I/O on other host threads), so
// `submit` and `takeUsed` call a barrier the platform provides (native: `dsb sy`; host tests: the fake
// device). The barrier must also be opaque to the compiler: it is what stops a polling loop from caching
// the used index in a register.

/// Memory the driver owns and the device reaches by physical address (rings, request headers, RX buffers).
/// A bump allocator: nothing is freed, a failed driver initialisation restores its own copy.
public struct DMARegion {
    public let host: UnsafeMutableRawPointer
    public let physical: UInt64
    public let size: Int
    public private(set) var used: Int = 0

    /// `host` must map the `size` bytes at `physical` for the life of every driver allocating from it,
    /// and the device must see them coherently (on the native platform: normal memory, identity-mapped).
    public init(host: UnsafeMutableRawPointer, physical: UInt64, size: Int) {
        self.host = host
        self.physical = physical
        self.size = size
    }

    /// `size` zeroed bytes whose physical address is a multiple of `alignment` (a power of two), or nil.
    public mutating func allocate(size: Int, alignment: Int) -> (host: UnsafeMutableRawPointer, physical: UInt64)? {
        guard size > 0, alignment > 0, alignment & (alignment - 1) == 0 else { return nil }
        let mask = UInt64(alignment - 1)
        let cursor = physical &+ UInt64(used)
        let aligned = (cursor &+ mask) & ~mask
        guard aligned >= cursor else { return nil }                  // wrapped past 2^64
        let padding = aligned - cursor
        guard padding <= UInt64(self.size - used), size <= self.size - used - Int(padding) else { return nil }
        let offset = used + Int(padding)
        used = offset + size
        // SAFETY: offset + size <= self.size was checked above, and `host` covers `self.size` bytes.
        let start = host + offset
        start.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        return (start, aligned)
    }
}

/// The DMA memory a platform gives its board drivers, all of them together. What the documented maximum
/// (8 disks, 4 networks, 4 consoles) takes with the drivers' default queue and buffer sizes is about 410 KiB
/// (VirtioDriverLimitTests), so this leaves room for larger queues or more receive buffers.
public enum BoardDriverMemory {
    public static let size = 4 << 20
}

/// One buffer given to the board's device, by physical address.
public struct DeviceBuffer: Equatable {
    public var physical: UInt64
    public var length: UInt32
    /// VIRTQ_DESC_F_WRITE: the device writes this buffer.
    public var deviceWritable: Bool
    public init(physical: UInt64, length: UInt32, deviceWritable: Bool) {
        self.physical = physical
        self.length = length
        self.deviceWritable = deviceWritable
    }
}

/// Descriptor flags (virtio 1.2 §2.7.5).
enum DriverDescriptorFlag {
    static let next: UInt16 = 1
    static let write: UInt16 = 2
}

public struct VirtioDriverQueue {
    public let index: Int
    /// Queue Size: a power of two (§2.7), at most 32768.
    public let size: UInt16
    public let descriptorTable: UInt64
    public let availableRing: UInt64
    public let usedRing: UInt64

    let descriptors: UnsafeMutableRawPointer
    let available: UnsafeMutableRawPointer
    let usedRingHost: UnsafeMutableRawPointer
    /// The driver's own copy of each descriptor's `next`: the free list and chain walks use it, never
    /// what sits in shared memory.
    var nextDescriptor: [UInt16]
    /// Descriptors in the chain headed by each index while the device owns it; 0 when not in flight.
    var chainLength: [UInt16]
    var freeHead: UInt16
    public private(set) var freeCount: Int
    /// Free-running 16-bit indices (§2.7.6, §2.7.8): ring slots are `index % size`, and size divides 2^16.
    public private(set) var nextAvailable: UInt16 = 0
    public private(set) var lastUsed: UInt16 = 0
    /// Set once the device wrote a used entry naming a chain that is not in flight, or moved used.idx
    /// further than the chains it holds; the queue then stops taking used entries.
    public private(set) var deviceMisbehaved = false

    /// Bytes of each area for `size` entries (§2.7: 16-byte descriptors; flags, idx, ring, used_event/avail_event).
    static func tableBytes(_ size: Int) -> Int { 16 * size }
    static func availableBytes(_ size: Int) -> Int { 6 + 2 * size }
    static func usedBytes(_ size: Int) -> Int { 6 + 8 * size }

    /// Lays out the three areas in `dma` with the alignments of §2.7 (16, 2, 4), zeroed. Nil when `size`
    /// is not a power of two in 1...32768 or `dma` is too small (then `dma` is unchanged).
    public init?(index: Int, size: UInt16, dma: inout DMARegion) {
        guard size > 0, size <= 32768, size & (size - 1) == 0 else { return nil }
        let count = Int(size)
        var scratch = dma
        guard let table = scratch.allocate(size: Self.tableBytes(count), alignment: 16),
              let avail = scratch.allocate(size: Self.availableBytes(count), alignment: 2),
              let used = scratch.allocate(size: Self.usedBytes(count), alignment: 4) else { return nil }
        dma = scratch
        self.index = index
        self.size = size
        descriptorTable = table.physical
        availableRing = avail.physical
        usedRing = used.physical
        descriptors = table.host
        available = avail.host
        usedRingHost = used.host
        // Free list 0 → 1 → … → size-1; cannot overflow: count <= 32768.
        nextDescriptor = (0..<count).map { UInt16(truncatingIfNeeded: $0 + 1) }
        chainLength = [UInt16](repeating: 0, count: count)
        freeHead = 0
        freeCount = count
    }

    /// Chains the device holds and has not yet returned.
    public var inFlight: Int { Int(size) - freeCount }

    /// VIRTQ_AVAIL_F_NO_INTERRUPT (§2.7.7): a hint that the driver polls and wants no used-buffer interrupts.
    public func suppressInterrupts(_ suppress: Bool) {
        available.storeBytes(of: (suppress ? UInt16(1) : 0).littleEndian, as: UInt16.self)
    }

    /// Writes `buffers` as one descriptor chain and publishes its head on the available ring (§2.7.13).
    /// Returns the head, or nil (nothing written) when the list is empty or too few descriptors are free.
    /// `barrier` runs before avail.idx moves (§2.7.13.3.1: the device must see the ring entry first).
    /// The caller then notifies the device, after another barrier.
    public mutating func submit(_ buffers: [DeviceBuffer], barrier: () -> Void) -> UInt16? {
        guard !deviceMisbehaved, !buffers.isEmpty, buffers.count <= freeCount else { return nil }
        let head = freeHead
        var current = head
        for (position, buffer) in buffers.enumerated() {
            let isLast = position == buffers.count - 1
            let following = nextDescriptor[Int(current)]
            var flags: UInt16 = buffer.deviceWritable ? DriverDescriptorFlag.write : 0
            if !isLast { flags |= DriverDescriptorFlag.next }
            // SAFETY: current < size (free-list links are written only by this type), 16 bytes per entry.
            let entry = descriptors + 16 * Int(current)
            entry.storeBytes(of: buffer.physical.littleEndian, as: UInt64.self)
            entry.storeBytes(of: buffer.length.littleEndian, toByteOffset: 8, as: UInt32.self)
            entry.storeBytes(of: flags.littleEndian, toByteOffset: 12, as: UInt16.self)
            entry.storeBytes(of: (isLast ? 0 : following).littleEndian, toByteOffset: 14, as: UInt16.self)
            if isLast { freeHead = following } else { current = following }
        }
        freeCount -= buffers.count
        // Cannot truncate: buffers.count <= freeCount <= size <= 32768.
        chainLength[Int(head)] = UInt16(buffers.count)
        let slot = Int(nextAvailable % size)
        // SAFETY: slot < size; the ring entries start 4 bytes into the available area.
        available.storeBytes(of: head.littleEndian, toByteOffset: 4 + 2 * slot, as: UInt16.self)
        barrier()
        nextAvailable &+= 1
        available.storeBytes(of: nextAvailable.littleEndian, toByteOffset: 2, as: UInt16.self)
        return head
    }

    /// The next chain the device completed and the bytes it wrote into it (§2.7.8), its descriptors
    /// returned to the free list; nil when there is none. `barrier` runs before used.idx is read (so a
    /// polling loop re-reads memory) and after (the entry and the buffers are read only once idx says so).
    public mutating func takeUsed(barrier: () -> Void) -> (head: UInt16, length: UInt32)? {
        guard !deviceMisbehaved else { return nil }
        barrier()
        let deviceIndex = UInt16(littleEndian: usedRingHost.load(fromByteOffset: 2, as: UInt16.self))
        guard deviceIndex != lastUsed else { return nil }
        // The device cannot have returned more chains than it holds descriptors.
        guard Int(deviceIndex &- lastUsed) <= inFlight else { deviceMisbehaved = true; return nil }
        barrier()
        let slot = Int(lastUsed % size)
        // SAFETY: slot < size; used elements are 8 bytes starting 4 bytes into the used area.
        let id = UInt32(littleEndian: usedRingHost.load(fromByteOffset: 4 + 8 * slot, as: UInt32.self))
        let length = UInt32(littleEndian: usedRingHost.load(fromByteOffset: 8 + 8 * slot, as: UInt32.self))
        guard id < UInt32(size), chainLength[Int(id)] > 0 else { deviceMisbehaved = true; return nil }
        let head = UInt16(id)
        lastUsed &+= 1
        // Walk the driver's own links to the chain's tail, then splice the chain onto the free list.
        var tail = head
        for _ in 1..<Int(chainLength[Int(head)]) { tail = nextDescriptor[Int(tail)] }
        nextDescriptor[Int(tail)] = freeHead
        freeHead = head
        freeCount += Int(chainLength[Int(head)])
        chainLength[Int(head)] = 0
        return (head, length)
    }
}

// MARK: - Fixed-size buffers lent to a device
//
// The net and console drivers lend buffers in their DMA memory to a board device: receive buffers posted
// on a receive queue, bounce buffers for console output. A chain's head is whatever descriptor the free
// list gave out, so the pool finds a returned buffer by head, not by position.
struct DriverBufferPool {
    let host: UnsafeMutableRawPointer
    let physical: UInt64
    let bufferSize: Int
    let count: Int
    /// Per descriptor head of the queue: the buffer that chain carries, or -1.
    var bufferForHead: [Int]
    /// Buffers not lent to the device.
    var idle: [Int]

    /// `count` buffers of `bufferSize` bytes, each 64-byte aligned, for a queue of `queueSize` entries.
    init?(count: Int, bufferSize: Int, queueSize: UInt16, dma: inout DMARegion) {
        guard count > 0, bufferSize > 0, bufferSize <= Int(UInt32.max) else { return nil }
        // Cannot overflow for any count the caller asks: both are bounded by the DMA region's size first.
        guard count <= dma.size / bufferSize,
              let area = dma.allocate(size: count * bufferSize, alignment: 64) else { return nil }
        host = area.host
        physical = area.physical
        self.bufferSize = bufferSize
        self.count = count
        bufferForHead = [Int](repeating: -1, count: Int(queueSize))
        idle = Array((0..<count).reversed())
    }

    /// Host address of buffer `index` (< count).
    func bytes(_ index: Int) -> UnsafeMutableRawPointer {
        // SAFETY: index < count, and the area holds count * bufferSize bytes.
        host + index * bufferSize
    }

    /// Lends buffer `index` (its first `length` bytes) to the device on `queue` as a one-descriptor
    /// chain; false when the queue is full.
    mutating func lend<R: DeviceRegisterWindow>(_ index: Int, length: Int, deviceWritable: Bool, queue: Int,
                                                 device: inout VirtioMMIODriver<R>) -> Bool {
        let buffer = DeviceBuffer(physical: physical + UInt64(index * bufferSize),
                                  length: UInt32(min(length, bufferSize)), deviceWritable: deviceWritable)
        guard let head = device.submit([buffer], queue: queue), Int(head) < bufferForHead.count else { return false }
        bufferForHead[Int(head)] = index
        return true
    }

    /// The buffer the completed chain `head` carried, no longer lent; nil if it carried none of ours.
    mutating func returned(head: UInt16) -> Int? {
        guard Int(head) < bufferForHead.count else { return nil }
        let index = bufferForHead[Int(head)]
        guard index >= 0 else { return nil }
        bufferForHead[Int(head)] = -1
        return index
    }
}
