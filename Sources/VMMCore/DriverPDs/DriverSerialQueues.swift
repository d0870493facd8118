// The console's byte queues shared by the VMM and a console driver PD, laid out as sDDF's
// include/sddf/serial/queue.h at au-ts/sddf commit feb5bb11580ed5cf8301925a7381b5e9b6b60470: a header
// { u32 tail @0; u32 head @4; u32 consumer_signalled @8; u32 producer_signalled @12 } in one region and
// the bytes, a ring of `capacity` bytes, in another. As with every queue of DriverQueues.swift, both
// indices are read from shared memory at each operation and checked before any byte moves.

import Synchronization

/// What both ends of a byte queue share.
public struct ByteQueue {
    public let header: SharedRegion
    public let data: SharedRegion
    public let capacity: Int
    /// Set once the indices made no sense (tail more than a capacity past head), or at init when the
    /// geometry does not fit; the queue then moves no byte, for good.
    public private(set) var broken: Bool

    static var tailOffset: Int { 0 }
    static var headOffset: Int { 4 }
    static var consumerSignalledOffset: Int { 8 }
    static var producerSignalledOffset: Int { 12 }
    public static var headerSize: Int { 16 }

    /// A ring of `capacity` bytes (a power of two, at most the data region's size).
    public init(header: SharedRegion, data: SharedRegion, capacity: UInt32) {
        self.header = header
        self.data = data
        self.capacity = Int(capacity)
        broken = !(capacity > 0 && capacity & (capacity &- 1) == 0 && Int(capacity) <= data.size
                   && header.size >= Self.headerSize)
    }

    /// consumer_signalled: the consumer asks the producer for a signal when bytes arrive.
    public var consumerSignal: SignalFlag { SignalFlag(region: header, offset: Self.consumerSignalledOffset) }
    /// producer_signalled: the producer asks the consumer for a signal when space frees up.
    public var producerSignal: SignalFlag { SignalFlag(region: header, offset: Self.producerSignalledOffset) }

    mutating func indices() -> (head: UInt32, tail: UInt32)? {
        guard !broken, let tail = header.load(UInt32.self, at: Self.tailOffset),
              let head = header.load(UInt32.self, at: Self.headOffset) else { broken = true; return nil }
        // Cannot truncate: capacity <= data.size, and a u32 capacity was given.
        guard tail &- head <= UInt32(capacity) else { broken = true; return nil }
        return (head, tail)
    }

    /// Bytes queued now; 0 when broken.
    public mutating func length() -> Int {
        guard let (head, tail) = indices() else { return 0 }
        return Int(tail &- head)
    }

    /// Where index `index` falls in the data ring.
    func position(_ index: UInt32) -> Int { Int(index % UInt32(capacity)) }
}

/// The producing end: copies bytes into the ring and moves the tail.
public struct ByteQueueProducer {
    public private(set) var queue: ByteQueue

    public init(header: SharedRegion, data: SharedRegion, capacity: UInt32) {
        queue = ByteQueue(header: header, data: data, capacity: capacity)
    }

    public var broken: Bool { queue.broken }

    /// Bytes that fit now.
    public mutating func freeSpace() -> Int {
        guard let (head, tail) = queue.indices() else { return 0 }
        return queue.capacity - Int(tail &- head)
    }

    /// serial_enqueue_batch: queues as many of `bytes` as fit; returns how many.
    public mutating func enqueue(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let (head, tail) = queue.indices() else { return 0 }
        let count = min(bytes.count, queue.capacity - Int(tail &- head))
        guard count > 0, let source = bytes.baseAddress else { return 0 }
        // The consumer's reads of the slots it gave back come before our writes.
        atomicMemoryFence(ordering: .acquiring)
        let start = queue.position(tail)
        let first = min(count, queue.capacity - start)
        // Both pieces lie inside [0, capacity), and capacity <= data.size: the stores cannot fail.
        queue.data.write(UnsafeRawBufferPointer(start: source, count: first), at: UInt64(start))
        if count > first {
            queue.data.write(UnsafeRawBufferPointer(start: source + first, count: count - first), at: 0)
        }
        atomicMemoryFence(ordering: .releasing)
        // Cannot truncate: count <= capacity, a u32.
        queue.header.store(tail &+ UInt32(count), at: ByteQueue.tailOffset)
        return count
    }
}

/// The consuming end: hands queued bytes to its owner and moves the head past those it took.
public struct ByteQueueConsumer {
    public private(set) var queue: ByteQueue

    public init(header: SharedRegion, data: SharedRegion, capacity: UInt32) {
        queue = ByteQueue(header: header, data: data, capacity: capacity)
    }

    public var broken: Bool { queue.broken }
    public mutating func length() -> Int { queue.length() }

    /// Calls `body` with the queued bytes in at most two contiguous pieces (the ring may wrap); `body`
    /// returns how many of them it took (clamped to the piece), and the head moves past those only.
    /// Stops at the first piece not taken whole. Returns the bytes taken. The pieces point into shared
    /// memory: the producer cannot overwrite them before the head moves, but a hostile one could.
    public mutating func dequeue(_ body: (UnsafeRawBufferPointer) -> Int) -> Int {
        guard let (head, tail) = queue.indices() else { return 0 }
        var remaining = Int(tail &- head)
        guard remaining > 0 else { return 0 }
        atomicMemoryFence(ordering: .acquiring)
        var taken = 0
        var position = queue.position(head)
        while remaining > 0 {
            let piece = min(remaining, queue.capacity - position)
            let took = queue.data.withBytes(offset: UInt64(position), length: UInt64(piece)) { bytes in
                min(max(body(UnsafeRawBufferPointer(bytes)), 0), piece)
            } ?? 0
            taken += took
            remaining -= took
            guard took == piece else { break }
            position = 0
        }
        guard taken > 0 else { return 0 }
        atomicMemoryFence(ordering: .releasing)
        // Cannot truncate: taken <= capacity, a u32.
        queue.header.store(head &+ UInt32(taken), at: ByteQueue.headOffset)
        return taken
    }
}
