// The device side of a split virtqueue (virtio 1.2 §2.7): reading the chains the driver made
// available and returning them through the used ring, with notification suppression.
//
// This file owns every guest-controlled index, length and address of the ring: each is checked
// (index < queue size, buffer inside RAM through `GuestMemory.offset(of:length:)`, chain length
// capped) before a `DescriptorChain` reaches a device model, so device models only see buffers
// that lie inside guest RAM. What a chain's bytes mean is the device model's business; when to
// reset a device after a `VirtqueueError` is the transport's.

import Synchronization

/// Where the driver put the three parts of one queue (virtio-mmio QueueDesc/QueueDriver/QueueDevice).
public struct VirtqueueConfiguration: Equatable {
    public var size: UInt16                              // power of 2, 1...32768 (validated by the transport)
    public var descriptorTable: GuestPhysicalAddress     // 16 bytes per entry, 16-aligned
    public var availableRing: GuestPhysicalAddress       // "driver area": flags, idx, ring[size], used_event (u16 each)
    public var usedRing: GuestPhysicalAddress            // "device area": flags, idx, ring[size] {id u32, len u32}, avail_event

    public init(size: UInt16, descriptorTable: GuestPhysicalAddress, availableRing: GuestPhysicalAddress,
                usedRing: GuestPhysicalAddress) {
        self.size = size
        self.descriptorTable = descriptorTable
        self.availableRing = availableRing
        self.usedRing = usedRing
    }
}

/// The split ring's wire format (virtio 1.2 §2.7.5, §2.7.6, §2.7.8); shared with the tests' driver side.
enum SplitRingLayout {
    static let descriptorSize: UInt64 = 16                // struct virtq_desc
    static let descriptorNext: UInt16 = 1                 // VIRTQ_DESC_F_NEXT
    static let descriptorWrite: UInt16 = 2                // VIRTQ_DESC_F_WRITE
    static let descriptorIndirect: UInt16 = 4             // VIRTQ_DESC_F_INDIRECT
    static let availableNoInterrupt: UInt16 = 1           // VIRTQ_AVAIL_F_NO_INTERRUPT
    static let usedElementSize: UInt64 = 8                // struct virtq_used_elem
    /// The largest queue size (§2.7); also our bound on an indirect table's entries.
    static let maximumQueueSize: UInt64 = 32768

    // Cannot overflow: a u16 queue size times at most 16, plus 6.
    static func descriptorTableBytes(_ size: UInt16) -> UInt64 { descriptorSize * UInt64(size) }
    static func availableRingBytes(_ size: UInt16) -> UInt64 { 6 + 2 * UInt64(size) }
    static func usedRingBytes(_ size: UInt16) -> UInt64 { 6 + usedElementSize * UInt64(size) }
}

/// One chain the driver made available, already walked and checked: buffers in chain order,
/// every device-readable one before every device-writable one (§2.7.4.2).
///
/// Zero-length descriptors are skipped: they name no byte, so they are neither address-checked nor
/// listed in `buffers`, and they do not take part in the readable-before-writable rule; they still
/// count towards the chain-length cap.
public struct DescriptorChain: Equatable {
    public let head: UInt16
    public let buffers: [VirtqueueBuffer]

    public init(head: UInt16, buffers: [VirtqueueBuffer]) {
        self.head = head
        self.buffers = buffers
    }

    public var readableLength: UInt64 { length(writable: false) }
    public var writableLength: UInt64 { length(writable: true) }

    /// Copies readable bytes starting `offset` bytes into the readable part into `destination`; returns count.
    public func read(from memory: GuestMemory, offset: UInt64, into destination: UnsafeMutableRawBufferPointer) -> Int {
        var copied = 0
        for piece in segments(writable: false, offset: offset, length: UInt64(destination.count)) {
            let done: Bool? = memory.withBytes(at: piece.address, length: UInt64(piece.length)) { source in
                // SAFETY: the segments cover at most destination.count bytes in total.
                UnsafeMutableRawBufferPointer(rebasing: destination[copied..<(copied + source.count)])
                    .copyMemory(from: UnsafeRawBufferPointer(source))
                return true
            }
            guard done != nil else { break }
            copied += Int(piece.length)
        }
        return copied
    }

    /// Copies `source` into the writable part starting `offset` bytes into it; returns count written.
    public func write(to memory: GuestMemory, offset: UInt64, from source: UnsafeRawBufferPointer) -> Int {
        var written = 0
        for piece in segments(writable: true, offset: offset, length: UInt64(source.count)) {
            let count = Int(piece.length)
            // SAFETY: the segments cover at most source.count bytes in total.
            guard memory.write(UnsafeRawBufferPointer(rebasing: source[written..<(written + count)]),
                               at: piece.address) else { break }
            written += count
        }
        return written
    }

    /// The buffers covering [offset, offset+length) of the readable part, split at the boundaries;
    /// shorter than `length` in total when the readable part ends first.
    public func readableSegments(offset: UInt64, length: UInt64) -> [VirtqueueBuffer] {
        segments(writable: false, offset: offset, length: length)
    }

    /// The buffers covering [offset, offset+length) of the writable part, split at the boundaries;
    /// shorter than `length` in total when the writable part ends first.
    public func writableSegments(offset: UInt64, length: UInt64) -> [VirtqueueBuffer] {
        segments(writable: true, offset: offset, length: length)
    }

    private func length(writable: Bool) -> UInt64 {
        var total: UInt64 = 0
        for buffer in buffers where buffer.deviceWritable == writable { total += UInt64(buffer.length) }
        return total
    }

    private func segments(writable: Bool, offset: UInt64, length: UInt64) -> [VirtqueueBuffer] {
        var result: [VirtqueueBuffer] = []
        var skip = offset
        var remaining = length
        for buffer in buffers where buffer.deviceWritable == writable && remaining > 0 {
            let size = UInt64(buffer.length)
            if skip >= size { skip -= size; continue }
            let take = min(size - skip, remaining)
            // Cannot overflow: [address, address + length) was checked to lie inside RAM when popped.
            guard let start = buffer.address.adding(skip) else { break }
            result.append(VirtqueueBuffer(address: start, length: UInt32(take), deviceWritable: writable))
            remaining -= take
            skip = 0
        }
        return result
    }
}

/// The device's view of one split virtqueue. The rings live in guest memory; this value holds only
/// the device's private indices, so it never caches anything the driver can change.
public struct SplitVirtqueue {
    public private(set) var configuration: VirtqueueConfiguration
    public private(set) var lastAvailableIndex: UInt16
    public private(set) var usedIndex: UInt16
    private let indirectDescriptors: Bool
    private let eventIndex: Bool
    /// used.idx when `needsInterrupt` last ran: the "old" of vring_need_event.
    private var signalledUsedIndex: UInt16 = 0

    public init(configuration: VirtqueueConfiguration, indirectDescriptors: Bool, eventIndex: Bool) {
        self.configuration = configuration
        self.indirectDescriptors = indirectDescriptors
        self.eventIndex = eventIndex
        self.lastAvailableIndex = 0
        self.usedIndex = 0
    }

    /// Checks that the three areas lie inside guest RAM (call when the driver sets QueueReady).
    /// Alignment (§2.7.1) is the driver's duty and is not checked: every access here is unaligned-safe.
    public func validate(memory: GuestMemory) throws(VirtqueueError) {
        let size = configuration.size
        guard memory.contains(configuration.descriptorTable, length: SplitRingLayout.descriptorTableBytes(size)),
              memory.contains(configuration.availableRing, length: SplitRingLayout.availableRingBytes(size)),
              memory.contains(configuration.usedRing, length: SplitRingLayout.usedRingBytes(size))
        else { throw .ringOutsideMemory }
    }

    /// The next chain the driver made available, or nil when there is none. After an error the
    /// entry counts as consumed; the device is expected to be reset (DEVICE_NEEDS_RESET).
    public mutating func popAvailable(memory: GuestMemory) throws(VirtqueueError) -> DescriptorChain? {
        guard var availableIndex = memory.load(UInt16.self, at: try address(configuration.availableRing, 2))
        else { throw .ringOutsideMemory }
        // §2.7.13.3: idx wraps naturally at 65536, so the distance is a wrapping difference; the driver
        // can never be more than a queue's worth ahead (§2.7.13: "the ring buffer is the same size as
        // the descriptor table"), and §2.7.6.1 forbids moving idx backwards, which looks the same.
        var pending = availableIndex &- lastAvailableIndex
        if pending == 0 {
            // §2.7.10: with VIRTIO_F_EVENT_IDX the driver notifies only when it passes avail_event, so
            // the device asks for the next entry before it goes idle, then looks once more for an
            // entry the driver published before it could see the request.
            guard eventIndex else { return nil }
            enableNotifications(memory: memory)
            guard let again = memory.load(UInt16.self, at: try address(configuration.availableRing, 2))
            else { throw .ringOutsideMemory }
            availableIndex = again
            pending = availableIndex &- lastAvailableIndex
            if pending == 0 { return nil }
        }
        guard pending <= configuration.size else { throw .availableIndexTooFar }
        // §2.7.13.3.1: the driver's barrier before its idx update pairs with this one: the ring entry
        // and the descriptors are read only after idx.
        atomicMemoryFence(ordering: .acquiring)
        // Cannot divide by zero: pending <= size and pending != 0.
        let slot = UInt64(lastAvailableIndex % configuration.size)
        guard let head = memory.load(UInt16.self, at: try address(configuration.availableRing, 4 + 2 * slot))
        else { throw .ringOutsideMemory }
        lastAvailableIndex &+= 1
        return try walkChain(head: head, memory: memory)
    }

    /// Puts back the last popped chain (a device that cannot process it now, e.g. net RX with no
    /// room): the next `popAvailable` returns it again. Call at most once per pop.
    public mutating func undoPop() {
        lastAvailableIndex &-= 1
    }

    /// Returns a used element for `head` with `writtenLength` bytes written and publishes used.idx.
    public mutating func pushUsed(head: UInt16, writtenLength: UInt32, memory: GuestMemory) throws(VirtqueueError) {
        guard head < configuration.size else { throw .descriptorIndexOutOfRange }
        let slot = UInt64(usedIndex % configuration.size)
        let element = try address(configuration.usedRing, 4 + SplitRingLayout.usedElementSize * slot)
        // struct virtq_used_elem { le32 id; le32 len; } in one little-endian store.
        guard memory.store(UInt64(head) | UInt64(writtenLength) << 32, at: element) else { throw .ringOutsideMemory }
        // §2.7.8.2: "The device MUST set len prior to updating the used idx" — the element (and the
        // buffer contents the device model wrote) become visible before the new idx.
        atomicMemoryFence(ordering: .releasing)
        guard memory.store(usedIndex &+ 1, at: try address(configuration.usedRing, 2)) else { throw .ringOutsideMemory }
        usedIndex &+= 1
    }

    /// Whether to interrupt the driver after one or more pushUsed since the last call (§2.7.7.2).
    /// Without VIRTIO_F_EVENT_IDX: unless avail.flags has VIRTQ_AVAIL_F_NO_INTERRUPT. With it: when
    /// used.idx moved past used_event since the last call (vring_need_event, §2.7.7.2 and §2.7.10).
    public mutating func needsInterrupt(memory: GuestMemory) -> Bool {
        // The new used.idx must be visible before we read the driver's suppression state; otherwise
        // a driver re-enabling interrupts and re-checking used.idx could miss both (§2.7.14 note).
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let new = usedIndex
        let old = signalledUsedIndex
        signalledUsedIndex = new
        if new == old { return false }
        if eventIndex {
            // §2.7.7.2: the device MUST ignore the flags and notify when it wrote the entry with index
            // used_event, i.e. when used_event lies in [old, new) on the 16-bit circle.
            guard let usedEventAddress = configuration.availableRing.adding(4 + 2 * UInt64(configuration.size)),
                  let usedEvent = memory.load(UInt16.self, at: usedEventAddress)
            else { return true }
            return new &- usedEvent &- 1 < new &- old
        }
        guard let flags = memory.load(UInt16.self, at: configuration.availableRing) else { return true }
        return flags & SplitRingLayout.availableNoInterrupt == 0
    }

    /// With event index, writes avail_event so the driver notifies again once it makes available the
    /// entry at `lastAvailableIndex` (§2.7.10). Without it there is nothing to do: this device never
    /// sets VIRTQ_USED_F_NO_NOTIFY. Callers re-check `popAvailable` afterwards: an entry published
    /// before the driver saw avail_event brings no notification.
    public mutating func enableNotifications(memory: GuestMemory) {
        guard eventIndex,
              let availEvent = configuration.usedRing.adding(4 + SplitRingLayout.usedElementSize * UInt64(configuration.size))
        else { return }
        memory.store(lastAvailableIndex, at: availEvent)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
    }

    // MARK: - Walking a chain

    private func address(_ base: GuestPhysicalAddress, _ offset: UInt64) throws(VirtqueueError) -> GuestPhysicalAddress {
        guard let result = base.adding(offset) else { throw .ringOutsideMemory }
        return result
    }

    /// Reads descriptor `index` of the table at `table`; the caller has checked index < entries.
    private func descriptor(_ table: GuestPhysicalAddress, _ index: UInt16, memory: GuestMemory)
        throws(VirtqueueError) -> (address: UInt64, length: UInt32, flags: UInt16, next: UInt16) {
        // Cannot overflow: a u16 index times 16.
        let at = try address(table, UInt64(index) * SplitRingLayout.descriptorSize)
        let fields = memory.withBytes(at: at, length: SplitRingLayout.descriptorSize) { bytes in
            (UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
             UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt16.self)),
             UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 14, as: UInt16.self)))
        }
        guard let fields else { throw .ringOutsideMemory }
        return fields
    }

    private func walkChain(head: UInt16, memory: GuestMemory) throws(VirtqueueError) -> DescriptorChain {
        // §2.7.6: the ring names a descriptor table entry; anything past the table is the guest's error.
        guard head < configuration.size else { throw .descriptorIndexOutOfRange }
        var table = configuration.descriptorTable
        var entries = UInt32(configuration.size)
        // §2.7.5.2/§2.7.5.3.1: a chain is no longer than the table it lives in, so a loop runs out of
        // time-to-live (the TTL of rust-vmm's virtio-queue chain.rs) instead of running forever.
        var timeToLive = entries
        var index = head
        var inIndirectTable = false
        var sawWritable = false
        var total: UInt64 = 0
        var buffers: [VirtqueueBuffer] = []
        while true {
            guard timeToLive > 0 else { throw .chainTooLong }
            timeToLive -= 1
            let d = try descriptor(table, index, memory: memory)

            if d.flags & SplitRingLayout.descriptorIndirect != 0 {
                // §2.7.5.3.1: only when VIRTIO_F_INDIRECT_DESC was negotiated, and never within an
                // indirect table.
                guard indirectDescriptors else { throw .indirectNotNegotiated }
                guard !inIndirectTable else { throw .nestedIndirectTable }
                // §2.7.5.3: the table is desc[len / 16]; a partial or empty table is malformed, and one
                // longer than the largest queue could never hold a legal chain (§2.7.5.3.1).
                let length = UInt64(d.length)
                guard length != 0, length % SplitRingLayout.descriptorSize == 0,
                      length / SplitRingLayout.descriptorSize <= SplitRingLayout.maximumQueueSize
                else { throw .badIndirectTable }
                guard memory.contains(GuestPhysicalAddress(d.address), length: length) else { throw .bufferOutsideMemory }
                // §2.7.5.3.2: the WRITE flag of this descriptor is ignored. NEXT alongside INDIRECT is
                // forbidden to the driver (§2.7.5.3.1); it is ignored here too: the table ends the chain.
                table = GuestPhysicalAddress(d.address)
                entries = UInt32(length / SplitRingLayout.descriptorSize)
                timeToLive = entries
                inIndirectTable = true
                index = 0      // §2.7.5.3: the first indirect descriptor is at index 0.
                continue
            }

            if d.length != 0 {
                let address = GuestPhysicalAddress(d.address)
                // Rejects addr + len overflowing 64 bits and any byte outside guest RAM.
                guard memory.offset(of: address, length: UInt64(d.length)) != nil else { throw .bufferOutsideMemory }
                let writable = d.flags & SplitRingLayout.descriptorWrite != 0
                // §2.7.4.2: device-writable elements come after all device-readable ones.
                guard writable || !sawWritable else { throw .readableAfterWritable }
                sawWritable = sawWritable || writable
                // §2.7.5.2: "Drivers MUST NOT add a descriptor chain longer than 2^32 bytes in total";
                // the used element's len is a u32, so the total must fit one.
                total += UInt64(d.length)          // cannot overflow: total < 2^32 before adding a u32
                guard total <= UInt64(UInt32.max) else { throw .chainTooLong }
                buffers.append(VirtqueueBuffer(address: address, length: d.length, deviceWritable: writable))
            }

            guard d.flags & SplitRingLayout.descriptorNext != 0 else { break }
            // §2.7.5: next names an entry of the same table (the indirect table's len / 16 entries).
            guard UInt32(d.next) < entries else { throw .descriptorIndexOutOfRange }
            index = d.next
        }
        return DescriptorChain(head: head, buffers: buffers)
    }
}
