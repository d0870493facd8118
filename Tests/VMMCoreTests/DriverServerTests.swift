// Tests of the driver PDs' side (DriverServers.swift) against a VMM that breaks the protocol: the test
// writes the VMM's queue entries and indices itself (offsets past the data region, lengths over a buffer,
// counts of zero, blocks past the disk, unknown codes) and checks that none of them reaches the fake
// board device, that each gets its error response or is skipped, and that good entries around them are
// still served. The rigs (BlockRig, NetRig, ConsoleRig) are those of the client tests.

import XCTest
@testable import VMMCore

final class DriverServerTests: XCTestCase {

    // MARK: Block

    /// The VMM's ends of the block queues of `rig`.
    func vmmQueues(_ rig: BlockRig) -> (QueueProducer<BlockRequestLayout>, QueueConsumer<BlockResponseLayout>) {
        (QueueProducer(region: blockRegion(rig.shared, 0), capacity: MicrokitDriverLayout.blockQueueCapacity),
         QueueConsumer(region: blockRegion(rig.shared, 1), capacity: MicrokitDriverLayout.blockQueueCapacity))
    }

    /// Where the block responses and the storage information sit in the rig's shared memory.
    let responsesAt = Int(DriverSharedRegion.block[1].offset), infoAt = Int(DriverSharedRegion.block[2].offset)

    func testTheServerPublishesTheDisksStorageInfo() throws {
        let rig = try BlockRig(diskSectors: 260, connected: false)
        XCTAssertEqual(rig.shared.bytes(infoAt + 0x40, 2), [0, 1], "read_only 0, ready 1")
        XCTAssertEqual(rig.shared.u16(infoAt + 0x42), 512, "sector_size")
        XCTAssertEqual(rig.shared.u16(infoAt + 0x44), 1, "block_size: one 4096-byte unit")
        XCTAssertEqual(rig.shared.u16(infoAt + 0x46), UInt16(MicrokitDriverLayout.blockQueueCapacity), "queue_depth")
        XCTAssertEqual(rig.shared.u64(infoAt + 0x50), 32, "260 sectors hold 32 whole blocks")
        XCTAssertEqual(rig.server.value.capacityBlocks, 32)
        let readOnly = try BlockRig(features: VirtioBlockDriverConstant.featureReadOnly, connected: false)
        XCTAssertEqual(readOnly.shared.bytes(infoAt + 0x40, 2), [1, 1])
    }

    func testBadRequestsGetInvalidParamAndNeverReachTheDevice() throws {
        let rig = try BlockRig(dataBlocks: 8, connected: false)
        let dataSize: UInt64 = 8 * 4096
        var (requests, responses) = vmmQueues(rig)
        let bad: [BlockRequest] = [
            BlockRequest(.read, offset: dataSize, blockNumber: 0, count: 1, id: 1),           // past the region
            BlockRequest(.read, offset: dataSize - 4095, blockNumber: 0, count: 1, id: 2),    // runs past its end
            BlockRequest(.write, offset: UInt64.max, blockNumber: 0, count: 1, id: 3),
            BlockRequest(.read, offset: 0, blockNumber: 0, count: 0, id: 4),                  // nothing to do
            BlockRequest(.read, offset: 0, blockNumber: 32, count: 1, id: 5),                 // past the disk
            BlockRequest(.write, offset: 0, blockNumber: 31, count: 2, id: 6),                // runs past its end
            BlockRequest(.read, offset: 0, blockNumber: UInt64.max, count: 1, id: 7),
            BlockRequest(.read, offset: 0, blockNumber: 0, count: 9, id: 8),                  // more than the region
            BlockRequest(code: 7, offset: 0, blockNumber: 0, count: 1, id: 9),                // unknown code
        ]
        for request in bad { XCTAssertTrue(requests.enqueue(request)) }
        XCTAssertTrue(requests.enqueue(BlockRequest(.read, offset: 4096, blockNumber: 1, count: 1, id: 100)))
        XCTAssertTrue(rig.server.value.serve())
        var answers: [BlockResponse] = []
        while let response = responses.dequeue() { answers.append(response) }
        XCTAssertEqual(answers, (1...9).map { BlockResponse(.invalidParameter, successCount: 0, id: $0) }
                       + [BlockResponse(.ok, successCount: 1, id: 100)])
        XCTAssertEqual(rig.deviceRequests, [[0, 8]], "only the good request reached the device")
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: rig.board.guestHost + 4096, count: 4096)),
                       Array(rig.disk.bytes[4096..<8192]), "block 1 at offset 4096 of the data region")
        XCTAssertEqual(rig.server.value.rejectedRequests, 9)
        XCTAssertFalse(rig.server.value.broken)
    }

    func testWritesToAReadOnlyDiskAreRefused() throws {
        let rig = try BlockRig(features: VirtioBlockDriverConstant.featureReadOnly, connected: false)
        var (requests, responses) = vmmQueues(rig)
        let before = rig.disk.bytes
        XCTAssertTrue(requests.enqueue(BlockRequest(.write, offset: 0, blockNumber: 0, count: 1, id: 5)))
        XCTAssertTrue(rig.server.value.serve())
        XCTAssertEqual(responses.dequeue(), BlockResponse(.invalidParameter, successCount: 0, id: 5))
        XCTAssertEqual(rig.disk.bytes, before)
        XCTAssertEqual(rig.deviceRequests, [])
    }

    func testADeviceErrorIsAnIOErrorAndFlushAndBarrierAreAnswered() throws {
        let rig = try BlockRig(connected: false)
        var (requests, responses) = vmmQueues(rig)
        rig.disk.statusToReport = 1                                     // VIRTIO_BLK_S_IOERR
        XCTAssertTrue(requests.enqueue(BlockRequest(.read, offset: 0, blockNumber: 0, count: 2, id: 1)))
        XCTAssertTrue(requests.enqueue(BlockRequest(.flush, offset: 0, blockNumber: 0, count: 0, id: 2)))
        XCTAssertTrue(requests.enqueue(BlockRequest(.barrier, offset: 0, blockNumber: 0, count: 0, id: 3)))
        XCTAssertTrue(rig.server.value.serve())
        XCTAssertEqual(responses.dequeue(), BlockResponse(.ioError, successCount: 0, id: 1))
        XCTAssertEqual(responses.dequeue(), BlockResponse(.ioError, successCount: 0, id: 2))
        XCTAssertEqual(responses.dequeue(), BlockResponse(.ok, successCount: 0, id: 3))
        XCTAssertEqual(rig.deviceRequests.map { $0[0] }, [0, 4], "the barrier needs no device request")
    }

    func testImpossibleRequestIndicesAreNotServed() throws {
        let rig = try BlockRig(connected: false)
        var (_, responses) = vmmQueues(rig)
        rig.shared.set(UInt32(1000), at: 4)                             // request tail far past head
        XCTAssertFalse(rig.server.value.serve())
        XCTAssertTrue(rig.server.value.broken)
        XCTAssertEqual(rig.deviceRequests, [])
        XCTAssertNil(responses.dequeue())
    }

    func testAPluggedQueueOrAFullResponseQueueWaits() throws {
        let rig = try BlockRig(connected: false)
        var (requests, responses) = vmmQueues(rig)
        requests.setPlugged(true)
        XCTAssertTrue(requests.enqueue(BlockRequest(.read, offset: 0, blockNumber: 0, count: 1, id: 1)))
        XCTAssertFalse(rig.server.value.serve())
        XCTAssertEqual(requests.length(), 1)
        requests.setPlugged(false)
        let capacity = MicrokitDriverLayout.blockQueueCapacity
        rig.shared.set(capacity, at: responsesAt + 4)                   // a queue of responses nobody took
        XCTAssertFalse(rig.server.value.serve())
        XCTAssertEqual(requests.length(), 1, "not taken: there is nowhere to answer")
        XCTAssertEqual(rig.deviceRequests, [])
        rig.shared.set(capacity, at: responsesAt)                       // the VMM took them
        XCTAssertTrue(rig.server.value.serve())
        XCTAssertEqual(responses.dequeue(), BlockResponse(.ok, successCount: 1, id: 1))
    }

    func testWithoutAGuestRAMWindowOnlyTheDataRegionIsServed() throws {
        // A driver built without its VM's guest RAM (address or size 0) serves with no window.
        let rig = try BlockRig(dataBlocks: 8, connected: false, zeroCopy: false)
        var (requests, responses) = vmmQueues(rig)
        let guestRAM = MicrokitDriverLayout.blockGuestRAMOffset
        let offsets: [UInt64] = [guestRAM, guestRAM + 0x10_0000, BlockRig.ramWindowOffset, 8 * 4096]
        for (n, offset) in offsets.enumerated() {
            XCTAssertTrue(requests.enqueue(BlockRequest(.write, offset: offset, blockNumber: 0, count: 1,
                                                        id: UInt32(n))))
        }
        XCTAssertTrue(requests.enqueue(BlockRequest(.read, offset: 0, blockNumber: 2, count: 1, id: 9)))
        XCTAssertTrue(rig.server.value.serve())
        var answers: [BlockResponse] = []
        while let response = responses.dequeue() { answers.append(response) }
        XCTAssertEqual(answers, (0..<4).map { BlockResponse(.invalidParameter, successCount: 0, id: UInt32($0)) }
                       + [BlockResponse(.ok, successCount: 1, id: 9)])
        XCTAssertEqual(rig.deviceRequests, [[0, 16]], "only the read into the data region reached the device")
    }

    func testEachDriversGuestRAMWindowStartsAfterTheDataRegionAndEndsWithItsVMsRAM() {
        let data = DriverSharedRegion.block[3]
        let window = MicrokitDriverLayout.blockGuestRAMWindow(physical: 0x8000_0000, size: 0x1000_0000)
        XCTAssertEqual(window.offset, data.size, "request offsets from 0 name the data region, then guest RAM")
        XCTAssertEqual(window.offset, MicrokitDriverLayout.blockGuestRAMOffset)
        let start = MicrokitDriverLayout.blockGuestRAMOffset
        XCTAssertEqual(window.physical(offset: start, length: 4096), 0x8000_0000)
        XCTAssertEqual(window.physical(offset: start + 0x1000_0000 - 4096, length: 4096), 0x8fff_f000)
        XCTAssertNil(window.physical(offset: start + 0x1000_0000 - 4095, length: 4096), "past the VM's RAM")
        XCTAssertNil(window.physical(offset: start - 4096, length: 4096))
        let empty = MicrokitDriverLayout.blockGuestRAMWindow(physical: 0x8000_0000, size: 0)
        XCTAssertNil(empty.physical(offset: start, length: 4096))
    }

    // MARK: Network

    func testBadTxEntriesAreSkippedAndNeverReachTheDevice() throws {
        let rig = try NetRig(connected: false)
        let size = UInt64(NetRig.dataSize)
        var txActive = QueueProducer<NetQueueLayout>(region: rig.shared.region(0x3000, 0x1000), capacity: 128)
        for bad in [NetBuffer(offset: size, length: 60), NetBuffer(offset: size - 10, length: 60),
                    NetBuffer(offset: 0, length: 0), NetBuffer(offset: 0, length: 2049),
                    NetBuffer(offset: UInt64.max, length: 60)] {
            XCTAssertTrue(txActive.enqueue(bad))
        }
        let frame = testFrame(60, seed: 4)
        frame.withUnsafeBytes { (rig.board.guestHost + 2048).copyMemory(from: $0.baseAddress!, byteCount: 60) }
        XCTAssertTrue(txActive.enqueue(NetBuffer(offset: 2048, length: 60)))
        _ = rig.server.value.transmit()
        XCTAssertEqual(rig.sent, [[UInt8](repeating: 0, count: 12) + frame])
        XCTAssertEqual(rig.server.value.rejectedEntries, 5)
        XCTAssertEqual(rig.length(ofQueueAt: 0x3000), 0)
    }

    func testReceivedFramesGoOnlyIntoBuffersInsideRxData() throws {
        let rig = try NetRig()
        // The VMM's first two free buffers, rewritten: far outside, then too near the end for the frame.
        rig.shared.set(UInt64(1) << 40, at: 0x0000 + 8)
        rig.shared.set(UInt64(NetRig.dataSize - 10), at: 0x0000 + 8 + 16)
        let frame = testFrame(60, seed: 8)
        rig.arrive(frame)
        XCTAssertTrue(rig.server.value.deviceInterrupt())
        XCTAssertEqual(rig.server.value.rejectedEntries, 2)
        XCTAssertEqual(rig.shared.u64(0x1000 + 8), 2 * 2048, "the third buffer carries it")
        XCTAssertEqual(rig.shared.bytes(0x4000 + 2 * 2048, 60), frame)
        XCTAssertEqual(rig.received(), [[UInt8](repeating: 0, count: 12) + frame])
    }

    func testReceivedFramesAreDroppedWhenTheVMMHasNoFreeBuffer() throws {
        let rig = try NetRig()
        var rxFree = QueueConsumer<NetQueueLayout>(region: rig.shared.region(0, 0x1000), capacity: 128)
        while rxFree.dequeue() != nil {}
        XCTAssertEqual(rig.shared.u32(4), 1, "the driver wants no signal while it has buffers")
        rig.arrive(testFrame(60, seed: 1))
        XCTAssertFalse(rig.server.value.deviceInterrupt())
        XCTAssertEqual(rig.server.value.droppedFrames, 1)
        XCTAssertEqual(rig.length(ofQueueAt: 0x1000), 0)
        XCTAssertEqual(rig.shared.u32(4), 0, "out of buffers: it asks to hear when some come back")
    }

    func testTxBuffersGoBackInTheOrderTheyWereSent() throws {
        let rig = try NetRig()
        rig.wire.holdTransmit = true
        for seed: UInt8 in 1...3 { XCTAssertTrue(rig.transmit(testFrame(60, seed: seed))) }
        XCTAssertEqual(rig.fake.queues[1].held.count, 3)
        XCTAssertEqual(rig.server.value.transmitting.map(\.offset), [0, 2048, 4096])
        XCTAssertEqual(rig.length(ofQueueAt: 0x2000), 125)
        rig.fake.completeHeld(1)
        rig.fake.completeHeld(1)
        _ = rig.server.value.deviceInterrupt()
        XCTAssertEqual(rig.server.value.transmitting.map(\.offset), [4096])
        XCTAssertEqual(rig.length(ofQueueAt: 0x2000), 127)
        XCTAssertEqual(rig.shared.u64(0x2000 + 8 + 16 * 0), 0, "slot 128 % 128: the first frame's buffer")
        XCTAssertEqual(rig.shared.u64(0x2000 + 8 + 16 * 1), 2048)
    }

    func testImpossibleTxIndicesBreakTheServer() throws {
        let rig = try NetRig(connected: false)
        rig.shared.set(UInt16(500), at: 0x3000)                         // tx active tail far past head
        XCTAssertFalse(rig.server.value.transmit())
        XCTAssertTrue(rig.server.value.broken)
        XCTAssertEqual(rig.sent, [])
    }

    // MARK: Console

    func testImpossibleConsoleIndicesSendNothing() throws {
        let rig = try ConsoleRig(connected: false)
        rig.shared.set(UInt32(5000), at: 0x1000)                        // tx tail past a whole ring
        XCTAssertFalse(rig.server.value.transmit())
        XCTAssertTrue(rig.server.value.broken)
        XCTAssertEqual(rig.output, [])
    }

    func testInputBeyondTheRxQueueIsDropped() throws {
        let rig = try ConsoleRig()
        var typed: [UInt8] = []
        for round in 0..<9 {
            let chunk = testFrame(512, seed: UInt8(round))
            typed += chunk
            rig.type(chunk)
            _ = rig.server.value.deviceInterrupt()
        }
        XCTAssertEqual(rig.server.value.droppedBytes, 512)
        var input: [UInt8] = []
        XCTAssertEqual(rig.client.receive { input += $0; return $0.count }, 4096)
        XCTAssertEqual(input, Array(typed.prefix(4096)))
    }
}
