// Tests of the VMM's side of the driver PDs (DriverClients.swift). Most run a client against the real
// server (DriverServers.swift) over real memory, the server driving the fake board device of the virtio
// driver tests (BoardVirtioFake), and check the bytes that reach the fake disk, wire or console against
// the guest's; the test link runs the server when the client notifies, as the higher-priority driver PD
// would. The others play a driver that breaks the protocol.

import XCTest
@testable import VMMCore

/// Block shared region `index` (requests, responses, info) where the Microkit layout puts it.
func blockRegion(_ shared: SharedTestMemory, _ index: Int) -> SharedRegion {
    let region = DriverSharedRegion.block[index]
    return shared.region(Int(region.offset), Int(region.size))
}

/// A block client and server over real memory: queues in `shared`, the data region in the fake board's
/// "guest" area (where the fake device reaches it by physical address), the guest's RAM in `ram`.
final class BlockRig {
    static let dataPhysical = BoardTestMemory.guestPhysical
    /// With `zeroCopy`, guest RAM sits in the fake board's memory right after the data region, and
    /// request offsets from `ramWindowOffset` on name it.
    static let ramWindowOffset: UInt64 = 0x10_0000
    static let zeroCopyRAMSize = 8 << 20
    let board: BoardTestMemory
    let shared = SharedTestMemory()
    let ram: TestGuestRAM
    let disk: BoardFakeDisk
    let fake: BoardVirtioFake
    let channel = TestChannel()
    let clock = TestClock()
    let server: Box<BlockDriverServer<BoardVirtioFake>>
    var client: BlockClient<TestLink>

    init(dataBlocks: Int = 8, diskSectors: Int = 256, features: UInt64 = VirtioBlockDriverConstant.featureFlush,
         connected: Bool = true, zeroCopy: Bool = false) throws {
        let dataSize = dataBlocks * 4096
        board = BoardTestMemory(dmaSize: 1 << 20, guestSize: dataSize + (zeroCopy ? Self.zeroCopyRAMSize : 0))
        ram = zeroCopy ? TestGuestRAM(base: 0x4000_0000, host: board.guestHost + dataSize, size: Self.zeroCopyRAMSize)
                       : TestGuestRAM()
        let window = DMAWindow(offset: Self.ramWindowOffset, physical: BoardTestMemory.guestPhysical + UInt64(dataSize),
                               size: UInt64(Self.zeroCopyRAMSize))
        let disk = BoardFakeDisk(sectors: diskSectors)
        // A pattern that differs at every byte of every block, so a misplaced copy shows.
        var seed: UInt32 = 0x1234_5678
        for index in disk.bytes.indices {
            seed = seed &* 1_664_525 &+ 1_013_904_223
            disk.bytes[index] = UInt8(truncatingIfNeeded: seed >> 24)
        }
        self.disk = disk
        let fake = BoardVirtioFake(deviceID: 2, features: VirtioFeature.version1 | features, queueCount: 1)
        self.fake = fake
        fake.memory = board
        fake.config = [UInt8](repeating: 0, count: 24)
        withUnsafeBytes(of: UInt64(diskSectors).littleEndian) { fake.config.replaceSubrange(0..<8, with: $0) }
        fake.behaviour = { fake, _, chain in disk.serve(fake, chain) }
        var dma = board.dma
        let driver = try VirtioBlockDriver(registers: fake, dma: &dma)
        server = Box(BlockDriverServer(driver: driver, requests: blockRegion(shared, 0),
                                       responses: blockRegion(shared, 1), info: blockRegion(shared, 2),
                                       dataPhysical: Self.dataPhysical, dataSize: UInt64(dataSize),
                                       guestRAM: zeroCopy ? window : nil))
        client = BlockClient(requests: blockRegion(shared, 0), responses: blockRegion(shared, 1),
                             info: blockRegion(shared, 2),
                             data: SharedRegion(base: board.guestHost, size: dataSize),
                             link: TestLink(channel: channel, clock: clock),
                             guestRAMOffset: zeroCopy ? Self.ramWindowOffset : nil)
        if connected {
            let server = self.server
            channel.onNotify = { _ = server.value.serve() }
        }
    }

    /// Guest buffers of these lengths, scattered through RAM (a gap after each).
    func segments(_ lengths: [Int], writable: Bool) -> [VirtqueueBuffer] {
        lengths.map { length in
            let address = ram.allocate(length, alignment: 8)
            _ = ram.allocate(24)
            return VirtqueueBuffer(address: address, length: UInt32(length), deviceWritable: writable)
        }
    }

    func bytes(of segments: [VirtqueueBuffer]) -> [UInt8] {
        segments.flatMap { ram.read(at: $0.address, count: Int($0.length)) }
    }

    func fill(_ segments: [VirtqueueBuffer], seed: UInt8) -> [UInt8] {
        var written: [UInt8] = []
        for segment in segments {
            let bytes = (0..<Int(segment.length)).map { UInt8(truncatingIfNeeded: $0 &* 13) &+ seed &+ UInt8(written.count & 0xff) }
            ram.write(bytes, at: segment.address)
            written += bytes
        }
        return written
    }

    /// What the driver asked of the device: (virtio type, sector).
    var deviceRequests: [[UInt64]] { disk.headers.map { [UInt64($0.type), $0.sector] } }
}

final class DriverClientTests: XCTestCase {

    // MARK: Block, against the server and a fake disk

    func testTheClientSeesTheStorageInfoTheServerPublished() throws {
        let rig = try BlockRig(diskSectors: 260)
        XCTAssertTrue(rig.client.isReady)
        XCTAssertEqual(rig.client.capacitySectors, 256, "whole 4096-byte blocks only")
        XCTAssertFalse(rig.client.readOnly)
    }

    func testAlignedReadFetchesWholeBlocksByteForByte() throws {
        let rig = try BlockRig()
        let segments = rig.segments([4096, 1024, 3072], writable: true)
        XCTAssertTrue(rig.client.read(sector: 8, into: segments, memory: rig.ram.memory))
        XCTAssertEqual(rig.bytes(of: segments), Array(rig.disk.bytes[4096..<12288]))
        XCTAssertEqual(rig.deviceRequests, [[0, 8]], "one read of two blocks from block 1")
        XCTAssertEqual(rig.channel.notifications, 1)
    }

    func testUnalignedReadCopiesOnlyTheWantedSectors() throws {
        let rig = try BlockRig()
        // Sectors 7...9 straddle blocks 0 and 1.
        let segments = rig.segments([512, 1024], writable: true)
        XCTAssertTrue(rig.client.read(sector: 7, into: segments, memory: rig.ram.memory))
        XCTAssertEqual(rig.bytes(of: segments), Array(rig.disk.bytes[7 * 512..<10 * 512]))
        XCTAssertEqual(rig.deviceRequests, [[0, 0]])
        XCTAssertEqual(rig.fake.queues[0].nextUsed, 1)
    }

    func testAlignedWriteSendsWholeBlocksWithoutReadingFirst() throws {
        let rig = try BlockRig()
        let segments = rig.segments([2048, 6144], writable: false)
        let data = rig.fill(segments, seed: 3)
        var expected = rig.disk.bytes
        expected.replaceSubrange(16 * 512..<16 * 512 + 8192, with: data)
        XCTAssertTrue(rig.client.write(sector: 16, from: segments, memory: rig.ram.memory))
        XCTAssertEqual(rig.disk.bytes, expected)
        XCTAssertEqual(rig.deviceRequests, [[1, 16]])
    }

    func testUnalignedWriteReadsThePartialEndBlocksFirst() throws {
        let rig = try BlockRig()
        // Sectors 5...14: the tail of block 0 and most of block 1.
        let segments = rig.segments([1000, 4120], writable: false)
        let data = rig.fill(segments, seed: 77)
        var expected = rig.disk.bytes
        expected.replaceSubrange(5 * 512..<15 * 512, with: data)
        XCTAssertTrue(rig.client.write(sector: 5, from: segments, memory: rig.ram.memory))
        XCTAssertEqual(rig.disk.bytes, expected, "the rest of both blocks survives")
        XCTAssertEqual(rig.deviceRequests, [[0, 0], [0, 8], [1, 0]], "read block 0, read block 1, write both")
    }

    func testAWriteInsideOneBlockReadsThatBlockOnce() throws {
        let rig = try BlockRig()
        let segments = rig.segments([512], writable: false)
        let data = rig.fill(segments, seed: 200)
        var expected = rig.disk.bytes
        expected.replaceSubrange(3 * 4096 + 512..<3 * 4096 + 1024, with: data)
        XCTAssertTrue(rig.client.write(sector: 25, from: segments, memory: rig.ram.memory))
        XCTAssertEqual(rig.disk.bytes, expected)
        XCTAssertEqual(rig.deviceRequests, [[0, 24], [1, 24]])
    }

    func testRequestsLargerThanTheDataRegionAreSplit() throws {
        let rig = try BlockRig(dataBlocks: 4)
        let readInto = rig.segments([40960], writable: true)
        XCTAssertTrue(rig.client.read(sector: 0, into: readInto, memory: rig.ram.memory))
        XCTAssertEqual(rig.bytes(of: readInto), Array(rig.disk.bytes[0..<40960]))
        XCTAssertEqual(rig.deviceRequests, [[0, 0], [0, 32], [0, 64]], "4 + 4 + 2 blocks")

        rig.disk.headers.removeAll()
        // From sector 30 (inside block 3) to inside block 8; the region carries 4 blocks at a time.
        let writeFrom = rig.segments([9 * 512 + 16384], writable: false)
        let data = rig.fill(writeFrom, seed: 9)
        var expected = rig.disk.bytes
        expected.replaceSubrange(30 * 512..<30 * 512 + data.count, with: data)
        XCTAssertTrue(rig.client.write(sector: 30, from: writeFrom, memory: rig.ram.memory))
        XCTAssertEqual(rig.disk.bytes, expected)
        XCTAssertEqual(rig.deviceRequests, [[0, 24], [1, 24], [0, 64], [1, 56]],
                       "blocks 3-6 (block 3 partial), then blocks 7-8 (block 8 partial)")
    }

    func testFlushReachesTheDevice() throws {
        let rig = try BlockRig()
        XCTAssertTrue(rig.client.flush())
        XCTAssertEqual(rig.fake.queues[0].nextUsed, 1)
        XCTAssertEqual(rig.deviceRequests.map { $0[0] }, [4], "VIRTIO_BLK_T_FLUSH")
    }

    func testAReadOnlyDiskRefusesWritesBeforeAskingTheDriver() throws {
        let rig = try BlockRig(features: VirtioBlockDriverConstant.featureReadOnly)
        XCTAssertTrue(rig.client.readOnly)
        let segments = rig.segments([4096], writable: false)
        _ = rig.fill(segments, seed: 1)
        let before = rig.disk.bytes
        XCTAssertFalse(rig.client.write(sector: 0, from: segments, memory: rig.ram.memory))
        XCTAssertEqual(rig.channel.notifications, 0)
        XCTAssertEqual(rig.disk.bytes, before)
        XCTAssertFalse(rig.client.failed)
        XCTAssertTrue(rig.client.read(sector: 0, into: rig.segments([512], writable: true), memory: rig.ram.memory))
    }

    func testRequestsPastTheEndOfTheDiskFailWithoutReachingTheDriver() throws {
        let rig = try BlockRig()
        XCTAssertFalse(rig.client.read(sector: 255, into: rig.segments([1024], writable: true), memory: rig.ram.memory))
        XCTAssertFalse(rig.client.read(sector: UInt64.max / 256, into: rig.segments([512], writable: true),
                                       memory: rig.ram.memory), "sector × 512 overflows")
        XCTAssertEqual(rig.channel.notifications, 0)
        XCTAssertFalse(rig.client.failed)
        XCTAssertTrue(rig.client.read(sector: 255, into: rig.segments([512], writable: true), memory: rig.ram.memory))
    }

    func testADriverThatNeverAnswersFailsAfterTheTimeoutAndFromThenOn() throws {
        let rig = try BlockRig(connected: false)
        rig.clock.step = 100_000                                       // 100 ms per reading of the clock
        XCTAssertFalse(rig.client.read(sector: 0, into: rig.segments([512], writable: true), memory: rig.ram.memory))
        XCTAssertTrue(rig.client.failed)
        XCTAssertGreaterThanOrEqual(rig.clock.now, MicrokitDriverLayout.driverTimeoutMilliseconds * 1000)
        XCTAssertLessThan(rig.clock.now, (MicrokitDriverLayout.driverTimeoutMilliseconds + 200) * 1000)
        XCTAssertEqual(rig.channel.notifications, 1)
        // A late answer changes nothing: the client has given up on this driver.
        _ = rig.server.value.serve()
        XCTAssertFalse(rig.client.flush())
        XCTAssertFalse(rig.client.read(sector: 0, into: rig.segments([512], writable: true), memory: rig.ram.memory))
        XCTAssertEqual(rig.channel.notifications, 1, "no request is sent any more")
    }

    // MARK: Block, zero copy

    /// Page-aligned guest buffers of these lengths, a page apart (never contiguous with each other).
    func pages(_ rig: BlockRig, _ lengths: [Int], writable: Bool) -> [VirtqueueBuffer] {
        lengths.map { length in
            let address = rig.ram.allocate(length, alignment: 4096)
            _ = rig.ram.allocate(4096)
            return VirtqueueBuffer(address: address, length: UInt32(length), deviceWritable: writable)
        }
    }

    func dataRegion(_ rig: BlockRig) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: rig.board.guestHost, count: 8 * 4096))
    }

    func testWholeBlockReadsFillTheGuestsBuffersWithoutTheDataRegion() throws {
        let rig = try BlockRig(zeroCopy: true)
        rig.board.guestHost.initializeMemory(as: UInt8.self, repeating: 0xee, count: 8 * 4096)
        let segments = pages(rig, [4096, 8192, 4096], writable: true)
        XCTAssertTrue(rig.client.read(sector: 16, into: segments, memory: rig.ram.memory))
        XCTAssertEqual(rig.bytes(of: segments), Array(rig.disk.bytes[8192..<8192 + 16384]))
        XCTAssertEqual(rig.deviceRequests, [[0, 16]], "three queue entries of consecutive blocks, one device request")
        XCTAssertEqual(rig.channel.notifications, 1)
        XCTAssertEqual(dataRegion(rig), [UInt8](repeating: 0xee, count: 8 * 4096), "nothing went through the data region")
    }

    func testWholeBlockWritesLeaveFromTheGuestsBuffers() throws {
        let rig = try BlockRig(zeroCopy: true)
        let segments = pages(rig, [12288, 4096], writable: false)
        let data = rig.fill(segments, seed: 9)
        var expected = rig.disk.bytes
        expected.replaceSubrange(8 * 512..<8 * 512 + 16384, with: data)
        XCTAssertTrue(rig.client.write(sector: 8, from: segments, memory: rig.ram.memory))
        XCTAssertEqual(rig.disk.bytes, expected)
        XCTAssertEqual(rig.deviceRequests, [[1, 8]])
        XCTAssertEqual(dataRegion(rig), [UInt8](repeating: 0, count: 8 * 4096))
    }

    func testPartBlocksStillGoThroughTheDataRegion() throws {
        let rig = try BlockRig(zeroCopy: true)
        let segments = pages(rig, [4096, 1024, 3072], writable: true)
        XCTAssertTrue(rig.client.read(sector: 8, into: segments, memory: rig.ram.memory))
        XCTAssertEqual(rig.bytes(of: segments), Array(rig.disk.bytes[4096..<12288]))
        XCTAssertEqual(Array(dataRegion(rig)[0..<8192]), Array(rig.disk.bytes[4096..<12288]), "copied via the data region")
        let unaligned = pages(rig, [4096], writable: true)
        XCTAssertTrue(rig.client.read(sector: 9, into: unaligned, memory: rig.ram.memory))
        XCTAssertEqual(rig.bytes(of: unaligned), Array(rig.disk.bytes[9 * 512..<9 * 512 + 4096]))
    }

    func testMoreBuffersThanQueueEntriesGoInSeveralBatches() throws {
        let capacity = Int(MicrokitDriverLayout.blockQueueCapacity), count = capacity + 6
        let rig = try BlockRig(diskSectors: count * 8, zeroCopy: true)
        let segments = pages(rig, [Int](repeating: 4096, count: count), writable: true)
        XCTAssertTrue(rig.client.read(sector: 0, into: segments, memory: rig.ram.memory))
        XCTAssertEqual(rig.bytes(of: segments), Array(rig.disk.bytes[0..<count * 4096]))
        XCTAssertEqual(rig.channel.notifications, 2, "a queue's worth of entries, then 6")
    }

    func testTheServerRefusesOffsetsOutsideTheDataRegionAndTheGuestRAMWindow() throws {
        let rig = try BlockRig(connected: false, zeroCopy: true)
        var requests = QueueProducer<BlockRequestLayout>(region: blockRegion(rig.shared, 0), capacity: MicrokitDriverLayout.blockQueueCapacity)
        var responses = QueueConsumer<BlockResponseLayout>(region: blockRegion(rig.shared, 1), capacity: MicrokitDriverLayout.blockQueueCapacity)
        let window = BlockRig.ramWindowOffset, ramEnd = window + UInt64(BlockRig.zeroCopyRAMSize)
        let offsets: [UInt64] = [8 * 4096 - 4096 + 512,     // straddles the data region's end
                                 window - 4096,             // between the two
                                 ramEnd - 4096 + 1,         // runs past the end of guest RAM
                                 UInt64.max - 4095,         // wraps
                                 ramEnd - 4096]             // the last block of guest RAM: fine
        for (n, offset) in offsets.enumerated() {
            XCTAssertTrue(requests.enqueue(BlockRequest(.read, offset: offset, blockNumber: 0, count: 1, id: UInt32(n))))
        }
        XCTAssertTrue(rig.server.value.serve())
        var statuses: [UInt32] = []
        while let response = responses.dequeue() { statuses.append(response.status) }
        let invalid = BlockResponseStatus.invalidParameter.rawValue, ok = BlockResponseStatus.ok.rawValue
        XCTAssertEqual(statuses, [invalid, invalid, invalid, invalid, ok])
        XCTAssertEqual(rig.server.value.rejectedRequests, 4)
        XCTAssertEqual(rig.ram.read(at: GuestPhysicalAddress(0x4000_0000 + UInt64(BlockRig.zeroCopyRAMSize) - 4096), count: 4096),
                       Array(rig.disk.bytes[0..<4096]))
    }

    // MARK: Block, against a driver that breaks the protocol

    /// A client whose driver is `answer`, given each request as the driver PD would dequeue it.
    func scriptedBlockClient(_ shared: SharedTestMemory, ready: Bool = true,
                             answer: @escaping (BlockRequest, inout QueueProducer<BlockResponseLayout>) -> Void)
        -> (BlockClient<TestLink>, TestChannel) {
        if ready {
            BlockStorageInfo(readOnly: false, sectorSize: 512, blockSize: 1, queueDepth: 64, capacity: 16)
                .publish(to: blockRegion(shared, 2))
        }
        let channel = TestChannel()
        let requests = Box(QueueConsumer<BlockRequestLayout>(region: blockRegion(shared, 0), capacity: MicrokitDriverLayout.blockQueueCapacity))
        let responses = Box(QueueProducer<BlockResponseLayout>(region: blockRegion(shared, 1), capacity: MicrokitDriverLayout.blockQueueCapacity))
        // The closure keeps `shared` alive as long as the client's link: callers pass a temporary.
        channel.onNotify = {
            withExtendedLifetime(shared) {
                while let request = requests.value.dequeue() { answer(request, &responses.value) }
            }
        }
        let clock = TestClock()
        clock.step = 1_000_000
        let client = BlockClient(requests: blockRegion(shared, 0), responses: blockRegion(shared, 1),
                                 info: blockRegion(shared, 2), data: shared.region(0x8000, 0x8000),
                                 link: TestLink(channel: channel, clock: clock))
        return (client, channel)
    }

    func testAResponseWithAnIdNeverIssuedFailsTheClient() {
        let shared = SharedTestMemory()
        let ram = TestGuestRAM()
        var (client, _) = scriptedBlockClient(shared) { request, responses in
            _ = responses.enqueue(BlockResponse(.ok, successCount: request.count, id: request.id &+ 1))
        }
        XCTAssertFalse(client.read(sector: 0, into: [.writable(ram.allocate(512), 512)], memory: ram.memory))
        XCTAssertTrue(client.failed)
    }

    func testAnUnknownStatusOrAnImpossibleCountFailsTheClient() {
        let ram = TestGuestRAM()
        var (unknown, _) = scriptedBlockClient(SharedTestMemory()) { request, responses in
            _ = responses.enqueue(BlockResponse(status: 99, successCount: request.count, id: request.id))
        }
        XCTAssertFalse(unknown.read(sector: 0, into: [.writable(ram.allocate(512), 512)], memory: ram.memory))
        XCTAssertTrue(unknown.failed)
        var (overcounted, _) = scriptedBlockClient(SharedTestMemory()) { request, responses in
            _ = responses.enqueue(BlockResponse(.ok, successCount: request.count + 1, id: request.id))
        }
        XCTAssertFalse(overcounted.read(sector: 0, into: [.writable(ram.allocate(512), 512)], memory: ram.memory))
        XCTAssertTrue(overcounted.failed)
    }

    func testAnErrorResponseFailsOnlyThatRequest() {
        let ram = TestGuestRAM()
        var answers: [BlockResponseStatus] = [.ioError, .ok]
        var partial = true
        var (client, channel) = scriptedBlockClient(SharedTestMemory()) { request, responses in
            let status = answers.removeFirst()
            _ = responses.enqueue(BlockResponse(status, successCount: request.count, id: request.id))
        }
        XCTAssertFalse(client.read(sector: 0, into: [.writable(ram.allocate(512), 512)], memory: ram.memory))
        XCTAssertFalse(client.failed)
        XCTAssertTrue(client.read(sector: 0, into: [.writable(ram.allocate(512), 512)], memory: ram.memory))
        XCTAssertEqual(channel.notifications, 2)
        // OK, but fewer blocks than asked: that request failed, the driver is still believed.
        var (short, _) = scriptedBlockClient(SharedTestMemory()) { request, responses in
            _ = responses.enqueue(BlockResponse(.ok, successCount: partial ? request.count - 1 : request.count, id: request.id))
            partial = false
        }
        XCTAssertFalse(short.read(sector: 0, into: [.writable(ram.allocate(512), 512)], memory: ram.memory))
        XCTAssertFalse(short.failed)
        XCTAssertTrue(short.read(sector: 0, into: [.writable(ram.allocate(512), 512)], memory: ram.memory))
    }

    func testAResponseQueueWithImpossibleIndicesFailsTheClient() {
        let shared = SharedTestMemory()
        let ram = TestGuestRAM()
        var (client, _) = scriptedBlockClient(shared) { _, _ in
            shared.set(UInt32(1000), at: 0x1004)                        // tail far past head
        }
        XCTAssertFalse(client.read(sector: 0, into: [.writable(ram.allocate(512), 512)], memory: ram.memory))
        XCTAssertTrue(client.failed)
    }

    func testNothingIsAskedOfADriverThatIsNotReady() {
        let ram = TestGuestRAM()
        var (client, channel) = scriptedBlockClient(SharedTestMemory(), ready: false) { _, _ in XCTFail("asked") }
        XCTAssertFalse(client.isReady)
        XCTAssertEqual(client.capacitySectors, 0)
        XCTAssertTrue(client.readOnly)
        XCTAssertFalse(client.read(sector: 0, into: [.writable(ram.allocate(512), 512)], memory: ram.memory))
        XCTAssertFalse(client.flush())
        XCTAssertEqual(channel.notifications, 0)
    }
}
