// Tests of the driver side of a split virtqueue (virtio 1.2 §2.7), the DMA bump allocator and the
// buffer pool: descriptor layout, barriers around the index updates, queue-full handling, descriptor
// recycling, 16-bit index wrap-around and a device that returns what it never got.

import XCTest
@testable import VMMCore

final class VirtioDriverQueueTests: XCTestCase {
    let memory = BoardTestMemory()

    /// A fake device whose queue 0 is `queue`, as if the transport had set it up.
    func device(for queue: VirtioDriverQueue) -> BoardVirtioFake {
        let fake = BoardVirtioFake(deviceID: 2, features: VirtioFeature.version1, queueCount: 1)
        fake.memory = memory
        fake.queues[0].size = UInt32(queue.size)
        fake.queues[0].descriptors = queue.descriptorTable
        fake.queues[0].driverArea = queue.availableRing
        fake.queues[0].deviceArea = queue.usedRing
        fake.queues[0].ready = 1
        return fake
    }

    func buffer(_ offset: UInt64, _ length: UInt32, writable: Bool = false) -> DeviceBuffer {
        DeviceBuffer(physical: BoardTestMemory.guestPhysical + offset, length: length, deviceWritable: writable)
    }

    func testDMARegionAlignsOnThePhysicalAddressAndZeroes() throws {
        var dma = DMARegion(host: memory.dmaHost + 8, physical: BoardTestMemory.dmaPhysical + 8, size: 256)
        let first = try XCTUnwrap(dma.allocate(size: 3, alignment: 1))
        XCTAssertEqual(first.physical, BoardTestMemory.dmaPhysical + 8)
        let second = try XCTUnwrap(dma.allocate(size: 16, alignment: 64))
        XCTAssertEqual(second.physical, BoardTestMemory.dmaPhysical + 64)
        XCTAssertEqual(second.host, memory.dmaHost + 64)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: second.host, count: 16)), [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(dma.used, 56 + 16)
        XCTAssertNil(dma.allocate(size: 8, alignment: 3), "alignment must be a power of two")
        XCTAssertNil(dma.allocate(size: 256, alignment: 1), "does not fit")
        XCTAssertNotNil(dma.allocate(size: 256 - 72, alignment: 1), "exactly fills the rest")
        XCTAssertNil(dma.allocate(size: 1, alignment: 1))
    }

    func testQueueSizeMustBeAPowerOfTwoUpTo32768() {
        var dma = memory.dma
        XCTAssertNil(VirtioDriverQueue(index: 0, size: 0, dma: &dma))
        XCTAssertNil(VirtioDriverQueue(index: 0, size: 12, dma: &dma))
        XCTAssertNil(VirtioDriverQueue(index: 0, size: 65535, dma: &dma))
        XCTAssertEqual(dma.used, 0)
        XCTAssertNotNil(VirtioDriverQueue(index: 0, size: 1, dma: &dma))
    }

    func testSubmitWritesTheChainThenTheRingEntryThenTheIndexAfterABarrier() throws {
        var dma = memory.dma
        var queue = try XCTUnwrap(VirtioDriverQueue(index: 0, size: 8, dma: &dma))
        let table = memory.dmaHost
        let available = memory.dmaHost + 128                     // after 8 descriptors of 16 bytes
        XCTAssertEqual(queue.submit([buffer(0, 1)], barrier: {}), 0)
        var indexAtBarrier: [UInt16] = []
        var entryAtBarrier: [UInt16] = []
        let head = queue.submit([buffer(0x100, 16), buffer(0x200, 512, writable: true), buffer(0x400, 1, writable: true)],
                                barrier: {
            indexAtBarrier.append(available.load(fromByteOffset: 2, as: UInt16.self))
            entryAtBarrier.append(available.load(fromByteOffset: 4 + 2, as: UInt16.self))
        })
        XCTAssertEqual(head, 1)
        XCTAssertEqual(indexAtBarrier, [1], "avail.idx moves only after the barrier")
        XCTAssertEqual(entryAtBarrier, [1], "ring[1] names the head before the barrier")
        XCTAssertEqual(available.load(fromByteOffset: 2, as: UInt16.self), 2)
        // Descriptor 1: addr, len, flags NEXT, next 2; descriptor 2: WRITE|NEXT → 3; descriptor 3: WRITE, last.
        XCTAssertEqual(table.load(fromByteOffset: 16, as: UInt64.self), BoardTestMemory.guestPhysical + 0x100)
        XCTAssertEqual(table.load(fromByteOffset: 16 + 8, as: UInt32.self), 16)
        XCTAssertEqual(table.load(fromByteOffset: 16 + 12, as: UInt16.self), 1)
        XCTAssertEqual(table.load(fromByteOffset: 16 + 14, as: UInt16.self), 2)
        XCTAssertEqual(table.load(fromByteOffset: 32 + 8, as: UInt32.self), 512)
        XCTAssertEqual(table.load(fromByteOffset: 32 + 12, as: UInt16.self), 3)
        XCTAssertEqual(table.load(fromByteOffset: 32 + 14, as: UInt16.self), 3)
        XCTAssertEqual(table.load(fromByteOffset: 48, as: UInt64.self), BoardTestMemory.guestPhysical + 0x400)
        XCTAssertEqual(table.load(fromByteOffset: 48 + 12, as: UInt16.self), 2)
        XCTAssertEqual(queue.freeCount, 4)
        XCTAssertEqual(queue.inFlight, 4)
    }

    func testSubmitRefusesAnEmptyChainAndOneLongerThanTheFreeDescriptors() throws {
        var dma = memory.dma
        var queue = try XCTUnwrap(VirtioDriverQueue(index: 0, size: 4, dma: &dma))
        XCTAssertNil(queue.submit([], barrier: {}))
        XCTAssertNotNil(queue.submit([buffer(0, 1), buffer(1, 1), buffer(2, 1)], barrier: {}))
        XCTAssertNil(queue.submit([buffer(0, 1), buffer(1, 1)], barrier: {}), "one descriptor left")
        XCTAssertEqual(memory.dmaHost.load(fromByteOffset: 64 + 2, as: UInt16.self), 1, "nothing published")
        XCTAssertNotNil(queue.submit([buffer(3, 1)], barrier: {}))
        XCTAssertNil(queue.submit([buffer(4, 1)], barrier: {}), "queue full")
    }

    func testDescriptorsAreRecycledAfterOutOfOrderCompletion() throws {
        var dma = memory.dma
        var queue = try XCTUnwrap(VirtioDriverQueue(index: 0, size: 4, dma: &dma))
        let fake = device(for: queue)
        fake.behaviour = { _, _, _ in .hold }
        let first = try XCTUnwrap(queue.submit([buffer(0, 8), buffer(8, 8, writable: true)], barrier: {}))
        let second = try XCTUnwrap(queue.submit([buffer(16, 8), buffer(24, 8, writable: true)], barrier: {}))
        fake.service(0)
        XCTAssertEqual(fake.queues[0].held.map(\.buffers), [
            [buffer(0, 8), buffer(8, 8, writable: true)], [buffer(16, 8), buffer(24, 8, writable: true)]])
        XCTAssertNil(queue.submit([buffer(32, 8)], barrier: {}), "all four descriptors in flight")

        fake.complete(0, head: second, written: 8)                 // the device finishes the second first
        let used = try XCTUnwrap(queue.takeUsed(barrier: {}))
        XCTAssertEqual(used.head, second)
        XCTAssertEqual(used.length, 8)
        XCTAssertEqual(queue.freeCount, 2)
        XCTAssertNil(queue.takeUsed(barrier: {}))

        let third = try XCTUnwrap(queue.submit([buffer(40, 4), buffer(44, 4, writable: true)], barrier: {}))
        XCTAssertEqual(third, second, "the freed chain's descriptors are reused")
        fake.service(0)
        XCTAssertEqual(fake.queues[0].held.last?.buffers, [buffer(40, 4), buffer(44, 4, writable: true)])
        fake.complete(0, head: first, written: 0)
        fake.complete(0, head: third, written: 4)
        XCTAssertEqual(queue.takeUsed(barrier: {})?.head, first)
        XCTAssertEqual(queue.takeUsed(barrier: {})?.head, third)
        XCTAssertEqual(queue.freeCount, 4)
    }

    func testIndicesWrapAroundSixteenBits() throws {
        var dma = memory.dma
        var queue = try XCTUnwrap(VirtioDriverQueue(index: 0, size: 4, dma: &dma))
        let fake = device(for: queue)
        fake.behaviour = { _, _, chain in .complete(written: chain.buffers[0].length) }
        let rounds = 70_000                                      // past 65535 in both rings
        for round in 0..<rounds {
            let length = UInt32(round % 1000 + 1)
            let head = try XCTUnwrap(queue.submit([buffer(0, length, writable: true)], barrier: {}), "round \(round)")
            fake.service(0)
            let used = try XCTUnwrap(queue.takeUsed(barrier: {}), "round \(round)")
            XCTAssertEqual(used.head, head)
            if used.length != length { XCTFail("round \(round): length \(used.length)"); break }
        }
        XCTAssertEqual(queue.nextAvailable, UInt16(rounds % 65536))
        XCTAssertEqual(queue.lastUsed, UInt16(rounds % 65536))
        XCTAssertEqual(memory.dmaHost.load(fromByteOffset: 64 + 2, as: UInt16.self), UInt16(rounds % 65536))
        XCTAssertEqual(queue.freeCount, 4)
        XCTAssertFalse(queue.deviceMisbehaved)
    }

    func testTakeUsedReadsTheUsedIndexOnlyAfterABarrier() throws {
        var dma = memory.dma
        var queue = try XCTUnwrap(VirtioDriverQueue(index: 0, size: 4, dma: &dma))
        let fake = device(for: queue)
        fake.behaviour = { _, _, _ in .hold }
        let head = try XCTUnwrap(queue.submit([buffer(0, 8, writable: true)], barrier: {}))
        fake.service(0)
        // The device completes "on another thread" between the driver's polls: inside the barrier.
        let used = queue.takeUsed(barrier: { fake.completeHeld(0) })
        XCTAssertEqual(used?.head, head)
    }

    func testUsedEntryNamingAChainNotInFlightMarksTheDeviceMisbehaving() throws {
        var dma = memory.dma
        var queue = try XCTUnwrap(VirtioDriverQueue(index: 0, size: 4, dma: &dma))
        let fake = device(for: queue)
        fake.behaviour = { _, _, _ in .hold }
        _ = try XCTUnwrap(queue.submit([buffer(0, 8)], barrier: {}))
        fake.service(0)
        fake.complete(0, head: 3, written: 0)                      // descriptor 3 was never given out
        XCTAssertNil(queue.takeUsed(barrier: {}))
        XCTAssertTrue(queue.deviceMisbehaved)
        XCTAssertNil(queue.submit([buffer(0, 8)], barrier: {}), "a misbehaving device gets nothing more")
    }

    func testUsedIndexRunningAheadOfWhatTheDeviceHoldsMarksTheDeviceMisbehaving() throws {
        var dma = memory.dma
        var queue = try XCTUnwrap(VirtioDriverQueue(index: 0, size: 4, dma: &dma))
        let used = memory.dmaHost + Int(queue.usedRing - BoardTestMemory.dmaPhysical)
        used.storeBytes(of: UInt16(0x8000), toByteOffset: 2, as: UInt16.self)
        XCTAssertNil(queue.takeUsed(barrier: {}))
        XCTAssertTrue(queue.deviceMisbehaved)
    }

    func testBufferPoolFindsTheLentBufferByHead() throws {
        let fake = BoardVirtioFake(deviceID: 1, features: VirtioFeature.version1)
        fake.memory = memory
        fake.behaviour = { _, _, _ in .hold }
        var dma = memory.dma
        var driver = try VirtioMMIODriver(registers: fake, expecting: .network, wantedFeatures: 0,
                                          queueSizes: [4, 4], dma: &dma)
        _ = driver.submit([buffer(0, 1), buffer(1, 1)], queue: 0)  // heads 0 and 1 taken by someone else
        var pool = try XCTUnwrap(DriverBufferPool(count: 2, bufferSize: 100, queueSize: 4, dma: &dma))
        XCTAssertEqual(pool.physical % 64, 0)
        XCTAssertTrue(pool.lend(1, length: 100, deviceWritable: true, queue: 0, device: &driver))
        XCTAssertTrue(pool.lend(0, length: 50, deviceWritable: false, queue: 0, device: &driver))
        XCTAssertFalse(pool.lend(0, length: 50, deviceWritable: false, queue: 0, device: &driver), "queue full")
        driver.notify(queue: 0)
        XCTAssertEqual(fake.queues[0].held.map(\.head), [0, 2, 3])
        XCTAssertEqual(fake.queues[0].held[1].buffers,
                       [DeviceBuffer(physical: pool.physical + 100, length: 100, deviceWritable: true)])
        XCTAssertEqual(pool.returned(head: 3), 0)
        XCTAssertEqual(pool.returned(head: 2), 1)
        XCTAssertNil(pool.returned(head: 2), "already returned")
        XCTAssertNil(pool.returned(head: 0), "not the pool's chain")
        XCTAssertNil(DriverBufferPool(count: 1, bufferSize: 1 << 30, queueSize: 4, dma: &dma))
    }
}
