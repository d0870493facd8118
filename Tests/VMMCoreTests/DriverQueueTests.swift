// Tests of the shared-memory queues between the VMM and its driver PDs (DriverQueues.swift and the
// block and serial layouts): byte offsets as sDDF lays them out, both ends of each ring, free-running
// indices across their wrap, full and empty, and a peer that writes impossible indices.
// Also the helpers the client and server tests share: zeroed "shared" memory, a link and a clock.

import XCTest
@testable import VMMCore

/// Zeroed host memory standing in for the regions two PDs share; freed with the last reference.
final class SharedTestMemory {
    let base: UnsafeMutableRawPointer
    let size: Int
    init(size: Int = 0x1_0000) {
        self.size = size
        base = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    }
    deinit { base.deallocate() }

    func region(_ offset: Int, _ length: Int) -> SharedRegion {
        precondition(offset + length <= size)
        return SharedRegion(base: base + offset, size: length)
    }
    func bytes(_ offset: Int, _ count: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(start: base + offset, count: count)) }
    func u16(_ offset: Int) -> UInt16 { UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
    func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    func u64(_ offset: Int) -> UInt64 { UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    func set<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}

/// A clock that moves `step` ticks each time it is read.
final class TestClock {
    var now: UInt64 = 0
    var step: UInt64 = 0
}

/// The other end of a link: counts notifications and runs `onNotify` (e.g. the driver PD's server).
final class TestChannel {
    var notifications = 0
    var onNotify: () -> Void = {}
}

struct TestLink: DriverLink {
    let channel: TestChannel
    let clock: TestClock
    init(channel: TestChannel = TestChannel(), clock: TestClock = TestClock()) {
        self.channel = channel
        self.clock = clock
    }
    mutating func notifyDriver() {
        channel.notifications += 1
        channel.onNotify()
    }
    func ticks() -> UInt64 {
        clock.now &+= clock.step
        return clock.now
    }
    var ticksPerMillisecond: UInt64 { 1000 }
}

/// A value a closure can reach and change (a server the test link runs).
final class Box<Value> {
    var value: Value
    init(_ value: Value) { self.value = value }
}

final class DriverQueueTests: XCTestCase {
    let shared = SharedTestMemory()

    // MARK: SharedRegion

    func testRegionAccessStaysInsideTheRegionAndIsLittleEndian() {
        let region = shared.region(0x100, 16)
        XCTAssertTrue(region.store(UInt32(0x1122_3344), at: 12))
        XCTAssertEqual(shared.bytes(0x10c, 4), [0x44, 0x33, 0x22, 0x11])
        XCTAssertEqual(region.load(UInt32.self, at: 12), 0x1122_3344)
        XCTAssertFalse(region.store(UInt32(1), at: 13), "one byte past the end")
        XCTAssertFalse(region.store(UInt8(1), at: -1))
        XCTAssertNil(region.load(UInt64.self, at: 9))
        XCTAssertNil(region.load(UInt8.self, at: Int.max))
        XCTAssertEqual(shared.bytes(0x110, 4), [0, 0, 0, 0], "nothing written past the region")
        XCTAssertNil(region.withBytes(offset: UInt64.max, length: 2) { _ in true })
        XCTAssertNil(region.withBytes(offset: 8, length: UInt64.max - 4) { _ in true }, "offset + length wraps")
        XCTAssertNil(region.withBytes(offset: 17, length: 0) { _ in true })
        XCTAssertEqual(region.withBytes(offset: 16, length: 0) { $0.count }, 0)
        XCTAssertTrue(region.contains(offset: 0, length: 16))
        XCTAssertFalse(region.contains(offset: 1, length: 16))
        var out = [UInt8](repeating: 0, count: 4)
        XCTAssertFalse(out.withUnsafeMutableBytes { region.read(at: 14, into: $0) })
        XCTAssertTrue(out.withUnsafeMutableBytes { region.read(at: 12, into: $0) })
        XCTAssertEqual(out, [0x44, 0x33, 0x22, 0x11])
        XCTAssertFalse(([1, 2, 3] as [UInt8]).withUnsafeBytes { region.write($0, at: 14) })
        XCTAssertEqual(SharedRegion(base: shared.base, size: -5).size, 0)
    }

    // MARK: Layouts (sDDF)

    func testBlockQueuesUseSDDFsByteOffsets() {
        var requests = QueueProducer<BlockRequestLayout>(region: shared.region(0, 0x1000), capacity: 64)
        XCTAssertTrue(requests.enqueue(BlockRequest(.write, offset: 0x1122_3344_5566, blockNumber: 0x0102_0304_0506,
                                                    count: 0x0708, id: 0xdead_beef)))
        XCTAssertTrue(requests.enqueue(BlockRequest(.flush, offset: 0, blockNumber: 0, count: 0, id: 2)))
        XCTAssertEqual(shared.u32(0), 0, "head @0")
        XCTAssertEqual(shared.u32(4), 2, "tail @4")
        XCTAssertEqual(shared.u32(16), 1, "code @16+0 (WRITE)")
        XCTAssertEqual(shared.u64(24), 0x1122_3344_5566, "io_or_offset @16+8")
        XCTAssertEqual(shared.u64(32), 0x0102_0304_0506, "block_number @16+16")
        XCTAssertEqual(shared.u16(40), 0x0708, "count @16+24")
        XCTAssertEqual(shared.u32(44), 0xdead_beef, "id @16+28")
        XCTAssertEqual(shared.u32(48), 2, "second entry 32 bytes on: FLUSH")
        requests.setPlugged(true)
        XCTAssertEqual(shared.bytes(8, 1), [1], "plugged @8")

        var responses = QueueProducer<BlockResponseLayout>(region: shared.region(0x1000, 0x1000), capacity: 64)
        XCTAssertTrue(responses.enqueue(BlockResponse(.ioError, successCount: 0x0102, id: 0x0a0b_0c0d)))
        XCTAssertTrue(responses.enqueue(BlockResponse(.ok, successCount: 1, id: 9)))
        XCTAssertEqual(shared.u32(0x1004), 2, "tail @4")
        XCTAssertEqual(shared.u32(0x1008), 3, "status @8+0")
        XCTAssertEqual(shared.u16(0x100c), 0x0102, "success_count @8+4")
        XCTAssertEqual(shared.u32(0x1010), 0x0a0b_0c0d, "id @8+8")
        XCTAssertEqual(shared.u32(0x1014 + 8), 9, "second entry 12 bytes on")

        var consumer = QueueConsumer<BlockRequestLayout>(region: shared.region(0, 0x1000), capacity: 64)
        XCTAssertTrue(consumer.plugged)
        XCTAssertEqual(consumer.dequeue(), BlockRequest(.write, offset: 0x1122_3344_5566, blockNumber: 0x0102_0304_0506,
                                                        count: 0x0708, id: 0xdead_beef))
        XCTAssertEqual(shared.u32(0), 1, "the consumer writes head")
    }

    func testStorageInfoMatchesSDDFsStruct() {
        let region = shared.region(0x2000, 0x1000)
        XCTAssertNil(BlockStorageInfo.load(from: region), "not ready yet")
        for offset in 0..<64 { shared.set(UInt8(0x55), at: 0x2000 + offset) }   // stale serial number
        let info = BlockStorageInfo(readOnly: true, sectorSize: 512, blockSize: 1, queueDepth: 64,
                                    capacity: 0x1_0000_0002)
        XCTAssertTrue(info.publish(to: region))
        XCTAssertEqual(shared.bytes(0x2000, 64), [UInt8](repeating: 0, count: 64), "serial_number[64] @0")
        XCTAssertEqual(shared.bytes(0x2040, 2), [1, 1], "read_only @64, ready @65")
        XCTAssertEqual(shared.u16(0x2042), 512, "sector_size @66")
        XCTAssertEqual(shared.u16(0x2044), 1, "block_size @68")
        XCTAssertEqual(shared.u16(0x2046), 64, "queue_depth @70")
        XCTAssertEqual(shared.u64(0x2050), 0x1_0000_0002, "capacity @80")
        XCTAssertEqual(BlockStorageInfo.load(from: region), info)
        XCTAssertFalse(info.publish(to: shared.region(0x3000, 87)), "smaller than the structure")
    }

    func testNetQueueUsesSDDFsByteOffsets() {
        var queue = QueueProducer<NetQueueLayout>(region: shared.region(0, 0x1000), capacity: 128)
        XCTAssertTrue(queue.enqueue(NetBuffer(offset: 0x1_0000_0800, length: 1514)))
        XCTAssertEqual(shared.u16(0), 1, "tail @0")
        XCTAssertEqual(shared.u16(2), 0, "head @2")
        XCTAssertEqual(shared.u64(8), 0x1_0000_0800, "io_or_offset @8+0")
        XCTAssertEqual(shared.u16(16), 1514, "len @8+8")
        XCTAssertTrue(queue.enqueue(NetBuffer(offset: 7, length: 1)))
        XCTAssertEqual(shared.u64(24), 7, "entries are 16 bytes")
        XCTAssertTrue(queue.consumerSignal.isRequested, "consumer_signalled @4 starts 0: signal wanted")
        XCTAssertTrue(queue.consumerSignal.takeRequest())
        XCTAssertEqual(shared.u32(4), 1)
        XCTAssertFalse(queue.consumerSignal.takeRequest(), "only once per request")
        var consumer = QueueConsumer<NetQueueLayout>(region: shared.region(0, 0x1000), capacity: 128)
        consumer.consumerSignal.request()
        XCTAssertEqual(shared.u32(4), 0)
        XCTAssertEqual(consumer.dequeue(), NetBuffer(offset: 0x1_0000_0800, length: 1514))
        XCTAssertEqual(shared.u16(2), 1)
    }

    func testSerialQueueUsesSDDFsHeaderAndARingOfBytes() {
        var producer = ByteQueueProducer(header: shared.region(0, 16), data: shared.region(0x1000, 8), capacity: 8)
        XCTAssertEqual(([1, 2, 3] as [UInt8]).withUnsafeBytes { producer.enqueue($0) }, 3)
        XCTAssertEqual(shared.u32(0), 3, "tail @0")
        XCTAssertEqual(shared.u32(4), 0, "head @4")
        XCTAssertEqual(shared.bytes(0x1000, 3), [1, 2, 3], "bytes in the data region")
        producer.queue.consumerSignal.cancel()
        producer.queue.producerSignal.cancel()
        XCTAssertEqual(shared.u32(8), 1, "consumer_signalled @8")
        XCTAssertEqual(shared.u32(12), 1, "producer_signalled @12")
    }

    // MARK: Both ends of a ring

    func testIndicesRunFreeAcrossTheirWrap() {
        // Block indices are u32: start just below 2^32.
        shared.set(UInt32.max - 2, at: 0)
        shared.set(UInt32.max - 2, at: 4)
        var producer = QueueProducer<BlockRequestLayout>(region: shared.region(0, 0x1000), capacity: 64)
        var consumer = QueueConsumer<BlockRequestLayout>(region: shared.region(0, 0x1000), capacity: 64)
        for id in UInt32(0)..<10 {
            XCTAssertTrue(producer.enqueue(BlockRequest(.read, offset: 0, blockNumber: 0, count: 1, id: id)))
            if id % 3 == 2 { _ = consumer.dequeue() }
        }
        XCTAssertEqual(shared.u32(4), 7, "tail wrapped past 2^32")
        XCTAssertEqual(producer.length(), 7)
        // (2^32 - 3) % 64 = 61: the first entry sat in slot 61, the fourth in slot 0.
        XCTAssertEqual(shared.u32(16 + 32 * 61 + 28), 0)
        XCTAssertEqual(shared.u32(16 + 32 * 0 + 28), 3)
        XCTAssertEqual((0..<7).compactMap { _ in consumer.dequeue()?.id }, [3, 4, 5, 6, 7, 8, 9])
        XCTAssertNil(consumer.dequeue())

        // Net indices are u16.
        shared.set(UInt16.max, at: 0x1000)
        shared.set(UInt16.max, at: 0x1002)
        var netProducer = QueueProducer<NetQueueLayout>(region: shared.region(0x1000, 0x1000), capacity: 128)
        var netConsumer = QueueConsumer<NetQueueLayout>(region: shared.region(0x1000, 0x1000), capacity: 128)
        for length in UInt16(1)...3 { XCTAssertTrue(netProducer.enqueue(NetBuffer(offset: 0, length: length))) }
        XCTAssertEqual(shared.u16(0x1000), 2)
        XCTAssertEqual((0..<3).compactMap { _ in netConsumer.dequeue()?.length }, [1, 2, 3])
        XCTAssertFalse(netConsumer.broken)
    }

    func testAFullQueueRefusesAndAnEmptyOneYieldsNothing() {
        var producer = QueueProducer<NetQueueLayout>(region: shared.region(0, 0x1000), capacity: 128)
        var consumer = QueueConsumer<NetQueueLayout>(region: shared.region(0, 0x1000), capacity: 128)
        XCTAssertNil(consumer.dequeue())
        XCTAssertTrue(consumer.isEmpty())
        for index in 0..<128 { XCTAssertTrue(producer.enqueue(NetBuffer(offset: UInt64(index), length: 0))) }
        XCTAssertFalse(producer.hasRoom())
        XCTAssertFalse(producer.enqueue(NetBuffer(offset: 999, length: 0)), "capacity entries, no more")
        XCTAssertEqual(producer.length(), 128)
        XCTAssertEqual(consumer.dequeue()?.offset, 0)
        XCTAssertTrue(producer.enqueue(NetBuffer(offset: 128, length: 0)), "one slot free again")
        var offsets: [UInt64] = []
        while let buffer = consumer.dequeue() { offsets.append(buffer.offset) }
        XCTAssertEqual(offsets, Array(1...128))
        XCTAssertFalse(producer.broken || consumer.broken)
    }

    func testARefusedEntryStaysQueuedAndPeekDoesNotConsume() {
        var producer = QueueProducer<NetQueueLayout>(region: shared.region(0, 0x1000), capacity: 128)
        var consumer = QueueConsumer<NetQueueLayout>(region: shared.region(0, 0x1000), capacity: 128)
        XCTAssertTrue(producer.enqueue(NetBuffer(offset: 5, length: 6)))
        XCTAssertEqual(consumer.peek(), NetBuffer(offset: 5, length: 6))
        XCTAssertNil(consumer.dequeue(if: { _ in false }))
        XCTAssertEqual(consumer.length(), 1)
        XCTAssertEqual(consumer.dequeue(if: { $0.length == 6 }), NetBuffer(offset: 5, length: 6))
        XCTAssertEqual(consumer.length(), 0)
    }

    func testACapacityThatIsNotAPowerOfTwoOrDoesNotFitIsBrokenFromTheStart() {
        XCTAssertTrue(QueueProducer<BlockRequestLayout>(region: shared.region(0, 0x1000), capacity: 48).broken)
        XCTAssertTrue(QueueProducer<BlockRequestLayout>(region: shared.region(0, 0x1000), capacity: 0).broken)
        // 16 + 128 × 32 = 4112 bytes do not fit a page.
        var tooMany = QueueProducer<BlockRequestLayout>(region: shared.region(0, 0x1000), capacity: 128)
        XCTAssertTrue(tooMany.broken)
        XCTAssertFalse(tooMany.enqueue(BlockRequest(.read, offset: 0, blockNumber: 0, count: 1, id: 1)))
        XCTAssertEqual(shared.u32(4), 0, "a broken queue writes nothing")
        XCTAssertTrue(QueueConsumer<NetQueueLayout>(region: shared.region(0, 0x1000), capacity: 1 << 16).broken,
                      "more entries than a u16 index counts")
        XCTAssertFalse(QueueProducer<BlockRequestLayout>(region: shared.region(0, 0x1000), capacity: 64).broken)
        XCTAssertTrue(ByteQueueProducer(header: shared.region(0, 16), data: shared.region(0x1000, 100), capacity: 128).broken)
        XCTAssertTrue(ByteQueueProducer(header: shared.region(0, 12), data: shared.region(0x1000, 128), capacity: 128).broken)
    }

    // MARK: A hostile peer

    func testATailFarAheadOfTheHeadBreaksTheConsumerForGood() {
        var consumer = QueueConsumer<BlockRequestLayout>(region: shared.region(0, 0x1000), capacity: 64)
        shared.set(UInt32(65), at: 4)                                  // tail: 65 entries past head 0
        XCTAssertNil(consumer.dequeue())
        XCTAssertTrue(consumer.broken)
        XCTAssertEqual(shared.u32(0), 0, "head untouched")
        shared.set(UInt32(1), at: 4)                                   // a peer "fixing" it is not believed
        XCTAssertNil(consumer.dequeue())
        XCTAssertEqual(consumer.length(), 0)

        // A head "ahead" of the tail is the same thing seen from the other side: tail - head wraps.
        var producer = QueueProducer<NetQueueLayout>(region: shared.region(0x1000, 0x1000), capacity: 128)
        shared.set(UInt16(3), at: 0x1002)
        XCTAssertFalse(producer.enqueue(NetBuffer(offset: 0, length: 0)))
        XCTAssertTrue(producer.broken)
        XCTAssertEqual(shared.u16(0x1000), 0)
        XCTAssertEqual(shared.bytes(0x1008, 16), [UInt8](repeating: 0, count: 16), "no entry written")

        // Exactly a capacity ahead is a full queue, not a broken one.
        var full = QueueConsumer<NetQueueLayout>(region: shared.region(0x2000, 0x1000), capacity: 128)
        shared.set(UInt16(100), at: 0x2002)
        shared.set(UInt16(100 &+ 128), at: 0x2000)
        XCTAssertEqual(full.length(), 128)
        XCTAssertNotNil(full.dequeue())
        XCTAssertFalse(full.broken)
    }

    func testHostileByteQueueIndicesMoveNoByte() {
        var consumer = ByteQueueConsumer(header: shared.region(0, 16), data: shared.region(0x1000, 4096), capacity: 4096)
        shared.set(UInt32(0x8000_0000), at: 0)                         // tail 2^31 past head
        var called = false
        XCTAssertEqual(consumer.dequeue { called = true; return $0.count }, 0)
        XCTAssertFalse(called)
        XCTAssertTrue(consumer.broken)
        var producer = ByteQueueProducer(header: shared.region(0x100, 16), data: shared.region(0x2000, 4096), capacity: 4096)
        shared.set(UInt32(5), at: 0x104)                               // head past tail 0
        XCTAssertEqual(([1, 2] as [UInt8]).withUnsafeBytes { producer.enqueue($0) }, 0)
        XCTAssertTrue(producer.broken)
        XCTAssertEqual(producer.freeSpace(), 0)
    }

    // MARK: Byte queues

    func testBytesWrapAroundTheRingAndPartialTakesStayQueued() {
        let header = shared.region(0, 16)
        let data = shared.region(0x1000, 8)
        var producer = ByteQueueProducer(header: header, data: data, capacity: 8)
        var consumer = ByteQueueConsumer(header: header, data: data, capacity: 8)
        XCTAssertEqual(([1, 2, 3, 4, 5, 6] as [UInt8]).withUnsafeBytes { producer.enqueue($0) }, 6)
        XCTAssertEqual(consumer.dequeue { _ in 4 }, 4)
        XCTAssertEqual(producer.freeSpace(), 6)
        XCTAssertEqual(([7, 8, 9, 10, 11, 12, 13] as [UInt8]).withUnsafeBytes { producer.enqueue($0) }, 6, "only what fits")
        XCTAssertEqual(shared.bytes(0x1000, 8), [9, 10, 11, 12, 5, 6, 7, 8], "wrapped to the start of the ring")
        var pieces: [[UInt8]] = []
        XCTAssertEqual(consumer.dequeue { pieces.append(Array($0)); return pieces.count == 1 ? $0.count : 1 }, 5)
        XCTAssertEqual(pieces, [[5, 6, 7, 8], [9, 10, 11, 12]], "two pieces: up to the end, then from the start")
        XCTAssertEqual(consumer.length(), 3)
        // A body claiming more than it was given, or less than nothing, is clamped.
        XCTAssertEqual(consumer.dequeue { _ in 1000 }, 3)
        XCTAssertEqual(([1] as [UInt8]).withUnsafeBytes { producer.enqueue($0) }, 1)
        XCTAssertEqual(consumer.dequeue { _ in -5 }, 0)
        XCTAssertEqual(consumer.length(), 1)
        XCTAssertEqual(shared.u32(0), 13)
        XCTAssertEqual(shared.u32(4), 12)
    }

    func testByteIndicesRunFreeAcrossTheirWrap() {
        let header = shared.region(0, 16)
        let data = shared.region(0x1000, 4096)
        shared.set(UInt32.max - 1, at: 0)
        shared.set(UInt32.max - 1, at: 4)
        var producer = ByteQueueProducer(header: header, data: data, capacity: 4096)
        var consumer = ByteQueueConsumer(header: header, data: data, capacity: 4096)
        XCTAssertEqual(([1, 2, 3, 4] as [UInt8]).withUnsafeBytes { producer.enqueue($0) }, 4)
        XCTAssertEqual(shared.u32(0), 2)
        var received: [UInt8] = []
        XCTAssertEqual(consumer.dequeue { received += $0; return $0.count }, 4)
        XCTAssertEqual(received, [1, 2, 3, 4])
        XCTAssertFalse(consumer.broken)
    }
}
