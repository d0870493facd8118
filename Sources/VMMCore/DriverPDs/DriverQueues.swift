// The memory a VMM protection domain shares with a driver protection domain on the Microkit platform
// (MicrokitDriverLayout.swift says which regions, where, how big), and the queues laid out in it. This
// file owns every index, offset and length that crosses from one PD to the other: the peer's half of a
// queue is never trusted, every load and store is bounds-checked, and a queue whose indices or entries
// make no sense is marked `broken` for its owner to see instead of being acted on. What an entry asks
// for (a block transfer, a frame) is the business of the clients (DriverClients.swift, VMM side) and
// servers (DriverServers.swift, driver side).
//
// Layouts, byte for byte those of the seL4 Device Driver Framework (github.com/au-ts/sddf):
//   block:   include/sddf/blk/queue.h and include/sddf/blk/storage_info.h
//            at commit 01f3020bdc6a51be6806e1400ab67553d8867540 (DriverBlockQueues.swift)
//   network: include/sddf/network/queue.h at commit 006784f1ac30c65a192e33edce172c6b3260f7ef (below)
//   console: include/sddf/serial/queue.h at commit feb5bb11580ed5cf8301925a7381b5e9b6b60470
//            (DriverSerialQueues.swift)
// As on sDDF's client side, a queue entry's io_or_offset carries an offset into the data region; a
// driver turns it into a physical address itself.
//
// Indices are free-running (entry = index % capacity), the producer writes tail, the consumer head, and
// both are read from shared memory at each operation, as sDDF does (so the side that fills a free queue
// at start-up need not be the one that later produces into it). Capacities are powers of two so that
// `index % capacity` stays continuous when an index wraps. Ordering follows sDDF's
// THREAD_MEMORY_RELEASE/ACQUIRE: an entry is written before the tail that publishes it, read after the
// tail that announced it, and read before the head that gives its slot back.

import Synchronization

/// A region of memory shared with another protection domain: its base in this PD and its size. Every
/// access is checked against the size, and integers are little-endian.
public struct SharedRegion {
    public let base: UnsafeMutableRawPointer
    public let size: Int

    /// `base` must map `size` bytes for the life of this value. A region mapped read-only (the block
    /// info and rx data in the VMM, console tx data in the driver) is given only to the queue end or
    /// client that reads it, and they never store into it.
    public init(base: UnsafeMutableRawPointer, size: Int) {
        self.base = base
        self.size = max(size, 0)
    }

    /// Whether [offset, offset + length) lies inside the region; the one place peer offsets are checked.
    public func contains(offset: UInt64, length: UInt64) -> Bool {
        offset <= UInt64(size) && length <= UInt64(size) - offset
    }

    /// The little-endian integer at `offset`, or nil when it does not lie inside the region.
    public func load<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T? {
        guard offset >= 0, contains(offset: UInt64(offset), length: UInt64(MemoryLayout<T>.size)) else { return nil }
        // SAFETY: offset + size of T <= size was checked above; loadUnaligned needs no alignment.
        return T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Stores `value` little-endian at `offset`; false (nothing written) when it does not fit.
    @discardableResult
    public func store<T: FixedWidthInteger>(_ value: T, at offset: Int) -> Bool {
        guard offset >= 0, contains(offset: UInt64(offset), length: UInt64(MemoryLayout<T>.size)) else { return false }
        // SAFETY: offset + size of T <= size was checked above.
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
        return true
    }

    /// Runs `body` on [offset, offset + length), or returns nil when the range leaves the region.
    public func withBytes<R>(offset: UInt64, length: UInt64, _ body: (UnsafeMutableRawBufferPointer) -> R) -> R? {
        guard contains(offset: offset, length: length) else { return nil }
        // SAFETY: offset + length <= size (an Int) was checked above, so both convert.
        return body(UnsafeMutableRawBufferPointer(start: base + Int(offset), count: Int(length)))
    }

    /// Copies `bytes` into the region at `offset`; false (nothing written) when they do not fit.
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) -> Bool {
        withBytes(offset: offset, length: UInt64(bytes.count)) { destination in
            if let source = bytes.baseAddress, bytes.count > 0 {
                destination.baseAddress!.copyMemory(from: source, byteCount: bytes.count)
            }
            return true
        } ?? false
    }

    /// Fills `destination` from the region at `offset`; false (nothing read) when the range leaves it.
    @discardableResult
    public func read(at offset: UInt64, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        withBytes(offset: offset, length: UInt64(destination.count)) { source in
            if let target = destination.baseAddress, destination.count > 0 {
                target.copyMemory(from: UnsafeRawPointer(source.baseAddress!), byteCount: destination.count)
            }
            return true
        } ?? false
    }
}

/// sDDF's signalling flags (`consumer_signalled`, `producer_signalled`): 0 means "the side that reads
/// this flag should signal me", 1 that no signal is wanted (or one was already sent).
public struct SignalFlag {
    let region: SharedRegion
    let offset: Int

    /// net_request_signal_* / serial_request_*_signal: asks to be signalled, then a full fence so that the
    /// caller's re-check of its queue cannot be ordered before the request (else a signal could be lost).
    public func request() {
        region.store(UInt32(0), at: offset)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
    }

    /// net_cancel_signal_*: no signal wanted.
    public func cancel() {
        region.store(UInt32(1), at: offset)
    }

    /// The other side asked to be signalled (net_require_signal_*): clears the request and returns true,
    /// once; the caller then notifies. The fence orders the caller's publication of new entries first.
    public func takeRequest() -> Bool {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        guard region.load(UInt32.self, at: offset) == 0 else { return false }
        cancel()
        return true
    }

    /// Whether a signal is asked for now (for tests and diagnostics; does not clear it).
    public var isRequested: Bool { region.load(UInt32.self, at: offset) == 0 }
}

/// Where a queue keeps its indices and entries, and how one entry is encoded.
public protocol SharedQueueLayout {
    associatedtype Entry
    /// The width of head and tail (u32 for block, u16 for network).
    associatedtype Index: FixedWidthInteger & UnsignedInteger
    static var tailOffset: Int { get }
    static var headOffset: Int { get }
    static var entriesOffset: Int { get }
    static var entrySize: Int { get }
    /// Decodes the entry at `offset` (which lies inside `region`, `entrySize` bytes); no validation of
    /// what it asks for, that is the reader's job.
    static func load(from region: SharedRegion, at offset: Int) -> Entry?
    static func store(_ entry: Entry, to region: SharedRegion, at offset: Int) -> Bool
}

/// What both ends of a queue share: the region, the capacity and the check of the two indices.
public struct SharedQueue<Layout: SharedQueueLayout> {
    public let region: SharedRegion
    public let capacity: Int
    /// Set once the indices or the geometry made no sense; the queue then does nothing, for good.
    public private(set) var broken: Bool

    /// A queue of `capacity` entries in `region`: broken at once unless the capacity is a power of two
    /// the index type can count and every entry fits in the region.
    public init(region: SharedRegion, capacity: UInt32) {
        self.region = region
        self.capacity = Int(capacity)
        let indexSize = UInt64(MemoryLayout<Layout.Index>.size)
        func inside(_ offset: Int, _ length: UInt64) -> Bool { offset >= 0 && region.contains(offset: UInt64(offset), length: length) }
        // Cannot overflow: a u32 capacity times a small entry size.
        let fits = capacity > 0 && capacity & (capacity &- 1) == 0 && UInt64(capacity) <= UInt64(Layout.Index.max)
            && Layout.entrySize > 0 && Layout.entrySize <= 4096
            && inside(Layout.entriesOffset, UInt64(capacity) * UInt64(Layout.entrySize))
            && inside(Layout.tailOffset, indexSize) && inside(Layout.headOffset, indexSize)
        broken = !fits
    }

    /// Head and tail as they are now, or nil (and broken) when the tail is more than a capacity past the
    /// head: either side's index is then corrupt, and no slot number derived from them can be believed.
    mutating func indices() -> (head: Layout.Index, tail: Layout.Index)? {
        guard !broken,
              let tail = region.load(Layout.Index.self, at: Layout.tailOffset),
              let head = region.load(Layout.Index.self, at: Layout.headOffset) else { broken = true; return nil }
        // Cannot truncate: capacity <= Index.max was checked at init.
        guard tail &- head <= Layout.Index(capacity) else { broken = true; return nil }
        return (head, tail)
    }

    /// Entries queued now; 0 when broken.
    public mutating func length() -> Int {
        guard let (head, tail) = indices() else { return 0 }
        return Int(tail &- head)
    }

    /// Byte offset of the entry that `index` names.
    func entryOffset(_ index: Layout.Index) -> Int {
        // Cannot overflow: slot < capacity, and capacity × entrySize fitted in the region at init.
        Layout.entriesOffset + Int(index % Layout.Index(capacity)) * Layout.entrySize
    }

    mutating func markBroken() { broken = true }
}

/// The producing end of a queue: writes entries and the tail.
public struct QueueProducer<Layout: SharedQueueLayout> {
    public private(set) var queue: SharedQueue<Layout>

    public init(region: SharedRegion, capacity: UInt32) {
        queue = SharedQueue(region: region, capacity: capacity)
    }

    public var broken: Bool { queue.broken }
    public var capacity: Int { queue.capacity }
    public mutating func length() -> Int { queue.length() }

    /// Room for one more entry (false when broken).
    public mutating func hasRoom() -> Bool {
        guard let (head, tail) = queue.indices() else { return false }
        return Int(tail &- head) < queue.capacity
    }

    /// Appends `entry`; false when the queue is full or broken.
    public mutating func enqueue(_ entry: Layout.Entry) -> Bool {
        guard let (head, tail) = queue.indices(), Int(tail &- head) < queue.capacity else { return false }
        // The consumer's reads of this slot, done before it moved head, come before our write.
        atomicMemoryFence(ordering: .acquiring)
        guard Layout.store(entry, to: queue.region, at: queue.entryOffset(tail)) else { queue.markBroken(); return false }
        // THREAD_MEMORY_RELEASE: the entry is visible before the tail that publishes it.
        atomicMemoryFence(ordering: .releasing)
        queue.region.store(tail &+ 1, at: Layout.tailOffset)
        return true
    }
}

/// The consuming end of a queue: reads entries and writes the head.
public struct QueueConsumer<Layout: SharedQueueLayout> {
    public private(set) var queue: SharedQueue<Layout>

    public init(region: SharedRegion, capacity: UInt32) {
        queue = SharedQueue(region: region, capacity: capacity)
    }

    public var broken: Bool { queue.broken }
    public var capacity: Int { queue.capacity }
    public mutating func length() -> Int { queue.length() }
    public mutating func isEmpty() -> Bool { queue.length() == 0 }

    /// The oldest entry, left in the queue; nil when empty or broken.
    public mutating func peek() -> Layout.Entry? {
        guard let (head, tail) = queue.indices(), head != tail else { return nil }
        // THREAD_MEMORY_ACQUIRE: the entry is read after the tail that announced it.
        atomicMemoryFence(ordering: .acquiring)
        return Layout.load(from: queue.region, at: queue.entryOffset(head))
    }

    /// Removes and returns the oldest entry if `accept` (called once, on a private copy) returns true;
    /// otherwise leaves it queued and returns nil. Nil too when empty or broken.
    public mutating func dequeue(if accept: (Layout.Entry) -> Bool) -> Layout.Entry? {
        guard let (head, tail) = queue.indices(), head != tail else { return nil }
        atomicMemoryFence(ordering: .acquiring)
        guard let entry = Layout.load(from: queue.region, at: queue.entryOffset(head)) else {
            queue.markBroken()
            return nil
        }
        guard accept(entry) else { return nil }
        // The entry (and whatever `accept` read through it) is read before the slot is given back.
        atomicMemoryFence(ordering: .releasing)
        queue.region.store(head &+ 1, at: Layout.headOffset)
        return entry
    }

    public mutating func dequeue() -> Layout.Entry? { dequeue(if: { _ in true }) }

    /// Marks the queue broken: for an owner that found an entry asking for something impossible.
    public mutating func markBroken() { queue.markBroken() }
}

// MARK: - Network (sDDF include/sddf/network/queue.h, commit 006784f1ac30c65a192e33edce172c6b3260f7ef)

/// net_buff_desc_t: a buffer by offset into the data region and the bytes of data in it.
public struct NetBuffer: Equatable {
    public var offset: UInt64
    public var length: UInt16
    public init(offset: UInt64, length: UInt16) {
        self.offset = offset
        self.length = length
    }
}

/// net_queue_t { u16 tail @0; u16 head @2; u32 consumer_signalled @4; net_buff_desc_t buffers[] @8 },
/// net_buff_desc_t { u64 io_or_offset @0; u16 len @8 } padded to 16 bytes.
public enum NetQueueLayout: SharedQueueLayout {
    public typealias Index = UInt16
    public static var tailOffset: Int { 0 }
    public static var headOffset: Int { 2 }
    public static var consumerSignalledOffset: Int { 4 }
    public static var entriesOffset: Int { 8 }
    public static var entrySize: Int { 16 }

    public static func load(from region: SharedRegion, at offset: Int) -> NetBuffer? {
        guard let io = region.load(UInt64.self, at: offset),
              let length = region.load(UInt16.self, at: offset + 8) else { return nil }
        return NetBuffer(offset: io, length: length)
    }

    public static func store(_ entry: NetBuffer, to region: SharedRegion, at offset: Int) -> Bool {
        region.store(entry.offset, at: offset) && region.store(entry.length, at: offset + 8)
    }
}

extension QueueProducer where Layout == NetQueueLayout {
    /// The consumer's `consumer_signalled` flag.
    public var consumerSignal: SignalFlag { SignalFlag(region: queue.region, offset: NetQueueLayout.consumerSignalledOffset) }
}

extension QueueConsumer where Layout == NetQueueLayout {
    public var consumerSignal: SignalFlag { SignalFlag(region: queue.region, offset: NetQueueLayout.consumerSignalledOffset) }
}
