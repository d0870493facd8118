import XCTest
@testable import VMMCore

/// A disk in host memory that records what the device model asked of it.
private struct RAMDisk: BlockBackend {
    var bytes: [UInt8]
    var reads: [(sector: UInt64, segments: [VirtqueueBuffer])] = []
    var writes: [(sector: UInt64, segments: [VirtqueueBuffer])] = []
    var flushes = 0
    var failing = false

    init(sectors: Int) {
        bytes = (0..<(sectors * 512)).map { UInt8(truncatingIfNeeded: $0 / 512 &* 31 &+ $0 % 251) }
    }

    func blockCapacity(device: Int) -> UInt64? { UInt64(bytes.count / 512) }

    mutating func blockRead(device: Int, sector: UInt64, into segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        reads.append((sector, segments))
        if failing { return false }
        var position = Int(sector) * 512
        for segment in segments {
            let copied: Void? = memory.withBytes(at: segment.address, length: UInt64(segment.length)) { guest in
                bytes.withUnsafeBytes { disk in
                    guest.copyMemory(from: UnsafeRawBufferPointer(rebasing: disk[position..<(position + guest.count)]))
                }
            }
            XCTAssertNotNil(copied)
            position += Int(segment.length)
        }
        return true
    }

    mutating func blockWrite(device: Int, sector: UInt64, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        writes.append((sector, segments))
        if failing { return false }
        var position = Int(sector) * 512
        for segment in segments {
            let chunk = memory.withBytes(at: segment.address, length: UInt64(segment.length)) { Array($0) }!
            bytes.replaceSubrange(position..<(position + chunk.count), with: chunk)
            position += chunk.count
        }
        return true
    }

    mutating func blockFlush(device: Int) -> Bool {
        flushes += 1
        return !failing
    }
}

final class VirtioBlockTests: XCTestCase, PlaysTheDriver {
    var ram: TestGuestRAM!
    private var memory: GuestMemory { ram.memory }
    var driver: DriverSideQueue!
    private var queue: SplitVirtqueue!
    private var disk = RAMDisk(sectors: 16)
    private var block = VirtioBlock(device: 0, capacitySectors: 16, readOnly: false, identifier: Array("vmm-disk-0".utf8))

    override func setUp() {
        ram = TestGuestRAM()
        driver = DriverSideQueue(ram: ram, size: 64)
        queue = SplitVirtqueue(configuration: driver.configuration, indirectDescriptors: true, eventIndex: false)
    }

    // MARK: Helpers playing the driver

    private func header(type: UInt32, sector: UInt64) -> [UInt8] {
        withUnsafeBytes(of: type.littleEndian) { Array($0) } + [0xAA, 0xBB, 0xCC, 0xDD]
            + withUnsafeBytes(of: sector.littleEndian) { Array($0) }
    }

    /// Publishes one chain, runs the device, and returns the (single) used element.
    private func submit(_ buffers: [VirtqueueBuffer], line: UInt = #line) throws -> (id: UInt32, length: UInt32) {
        let head = post(buffers)
        let before = driver.usedIndex
        XCTAssertTrue(try block.processRequests(&queue, memory: memory, backend: &disk), line: line)
        XCTAssertEqual(driver.usedIndex, before &+ 1, line: line)
        let element = driver.usedElement(before)
        XCTAssertEqual(element.id, UInt32(head), line: line)
        return element
    }

    private func sectorBytes(_ sector: Int, count: Int = 1) -> [UInt8] {
        Array(disk.bytes[(sector * 512)..<((sector + count) * 512)])
    }

    // MARK: Requests (virtio 1.2 §5.2.6)

    func testReadFillsScatteredDataBuffersAndReportsDataPlusStatusLength() throws {
        let first = writable(700), second = writable(324), status = writable(1)
        let used = try submit([readable(header(type: 0, sector: 3)), first, second, status])
        XCTAssertEqual(contents(first) + contents(second), sectorBytes(3, count: 2))
        XCTAssertEqual(contents(status), [0])
        XCTAssertEqual(used.length, 1024 + 1)
        XCTAssertEqual(disk.reads.count, 1)
        XCTAssertEqual(disk.reads[0].sector, 3)
        XCTAssertEqual(disk.reads[0].segments, [first, second])
    }

    func testRequestInAnIndirectTableIsServedTheSame() throws {
        let data = writable(512), status = writable(1)
        let head = driver.addIndirectChain([readable(header(type: 0, sector: 7)), data, status])
        driver.publish(head)
        XCTAssertTrue(try block.processRequests(&queue, memory: memory, backend: &disk))
        XCTAssertEqual(contents(data), sectorBytes(7))
        XCTAssertEqual(contents(status), [0])
        XCTAssertEqual(driver.usedElement(0).id, UInt32(head))
        XCTAssertEqual(driver.usedElement(0).length, 513)
    }

    func testStatusIsTheLastWritableByteEvenInsideADataBuffer() throws {
        let dataAndStatus = writable(513)
        let used = try submit([readable(header(type: 0, sector: 15)), dataAndStatus])
        let bytes = contents(dataAndStatus)
        XCTAssertEqual(Array(bytes[0..<512]), sectorBytes(15))
        XCTAssertEqual(bytes[512], 0)
        XCTAssertEqual(used.length, 513)
        XCTAssertEqual(disk.reads[0].segments.map(\.length), [512])
    }

    func testWriteStoresReadableDataAfterTheSixteenByteHeader() throws {
        let payload = (0..<1024).map { UInt8(truncatingIfNeeded: $0 * 7 + 1) }
        // Header and the first 100 data bytes share a descriptor: the data segments must start 16 bytes in.
        let headerAndData = readable(header(type: 1, sector: 5) + payload[0..<100])
        let rest = readable(Array(payload[100...]))
        let status = writable(1)
        let used = try submit([headerAndData, rest, status])
        XCTAssertEqual(contents(status), [0])
        XCTAssertEqual(used.length, 1)
        XCTAssertEqual(sectorBytes(5, count: 2), payload)
        XCTAssertEqual(disk.writes[0].segments.first?.address, headerAndData.address.adding(16))
        XCTAssertEqual(disk.writes[0].segments.map(\.length), [100, 924])
    }

    func testFlushReachesTheBackend() throws {
        let status = writable(1)
        let used = try submit([readable(header(type: 4, sector: 0)), status])
        XCTAssertEqual(disk.flushes, 1)
        XCTAssertEqual(contents(status), [0])
        XCTAssertEqual(used.length, 1)
    }

    func testBackendFailureIsAnIOError() throws {
        disk.failing = true
        let data = writable(512), status = writable(1)
        let read = try submit([readable(header(type: 0, sector: 0)), data, status])
        XCTAssertEqual(contents(status), [1])
        XCTAssertEqual(read.length, 1)
        let flushStatus = writable(1)
        _ = try submit([readable(header(type: 4, sector: 0)), flushStatus])
        XCTAssertEqual(contents(flushStatus), [1])
    }

    func testGetIDWritesTheIdentifierNulPaddedToTwentyBytes() throws {
        let id = writable(20), status = writable(1)
        let used = try submit([readable(header(type: 8, sector: 0)), id, status])
        XCTAssertEqual(contents(id), Array("vmm-disk-0".utf8) + [UInt8](repeating: 0, count: 10))
        XCTAssertEqual(contents(status), [0])
        XCTAssertEqual(used.length, 21)
    }

    func testTwentyByteIdentifierHasNoTerminator() throws {
        block = VirtioBlock(device: 0, capacitySectors: 16, readOnly: false, identifier: Array("ABCDEFGHIJKLMNOPQRST".utf8))
        let id = writable(24)
        let used = try submit([readable(header(type: 8, sector: 0)), id])
        // 20 id bytes, 3 untouched, then the status byte.
        XCTAssertEqual(contents(id), Array("ABCDEFGHIJKLMNOPQRST".utf8) + [0xEE, 0xEE, 0xEE, 0])
        XCTAssertEqual(used.length, 21)
    }

    func testUnknownRequestTypeIsUnsupported() throws {
        for type: UInt32 in [2, 11, 13, 0xFFFF_FFFF] {
            let data = writable(512), status = writable(1)
            let used = try submit([readable(header(type: type, sector: 0)), data, status])
            XCTAssertEqual(contents(status), [2], "type \(type)")
            XCTAssertEqual(used.length, 1)
            XCTAssertEqual(contents(data), [UInt8](repeating: 0xEE, count: 512))
        }
        XCTAssertTrue(disk.reads.isEmpty && disk.writes.isEmpty && disk.flushes == 0)
    }

    // MARK: Malformed requests: answered, never trusted

    func testChainWithoutWritableByteGoesBackUsedWithLengthZero() throws {
        let used = try submit([readable(header(type: 0, sector: 0) + [UInt8](repeating: 0, count: 512))])
        XCTAssertEqual(used.length, 0)
        XCTAssertTrue(disk.reads.isEmpty)
    }

    func testShortHeaderIsAnIOError() throws {
        let status = writable(1)
        let used = try submit([readable(Array(header(type: 1, sector: 0)[0..<12])), status])
        XCTAssertEqual(contents(status), [1])
        XCTAssertEqual(used.length, 1)
        let bare = writable(1)
        _ = try submit([bare])   // no readable part at all
        XCTAssertEqual(contents(bare), [1])
    }

    func testDataThatIsNotWholeSectorsIsAnIOError() throws {
        let readData = writable(511), readStatus = writable(1)
        _ = try submit([readable(header(type: 0, sector: 0)), readData, readStatus])
        XCTAssertEqual(contents(readStatus), [1])
        XCTAssertEqual(contents(readData), [UInt8](repeating: 0xEE, count: 511))
        let writeStatus = writable(1)
        _ = try submit([readable(header(type: 1, sector: 0) + [UInt8](repeating: 9, count: 600)), writeStatus])
        XCTAssertEqual(contents(writeStatus), [1])
        XCTAssertTrue(disk.reads.isEmpty && disk.writes.isEmpty)
    }

    func testRequestsReachingPastCapacityAreIOErrors() throws {
        // Sector 15 is the last one: two sectors from there, one from 16, and a sector number that
        // wraps the 64-bit sum must all fail without touching the disk.
        for (type, sector) in [(UInt32(0), UInt64(15)), (1, 15), (0, 16), (1, UInt64.max)] {
            let status = writable(1)
            var chain = [readable(header(type: type, sector: sector) + (type == 1 ? [UInt8](repeating: 1, count: 1024) : []))]
            if type == 0 { chain.append(writable(sector == 16 ? 512 : 1024)) }
            chain.append(status)
            let used = try submit(chain)
            XCTAssertEqual(contents(status), [1], "type \(type) sector \(sector)")
            XCTAssertEqual(used.length, 1)
        }
        XCTAssertTrue(disk.reads.isEmpty && disk.writes.isEmpty)
    }

    func testLastSectorIsReachable() throws {
        let data = writable(512), status = writable(1)
        _ = try submit([readable(header(type: 0, sector: 15)), data, status])
        XCTAssertEqual(contents(status), [0])
        XCTAssertEqual(contents(data), sectorBytes(15))
    }

    // MARK: Read-only device

    func testReadOnlyDeviceOffersROAndRefusesWritesWithIOError() throws {
        block = VirtioBlock(device: 0, capacitySectors: 16, readOnly: true, identifier: [])
        XCTAssertEqual(block.deviceFeatures & (1 << 5), 1 << 5)
        let before = disk.bytes
        let status = writable(1)
        let used = try submit([readable(header(type: 1, sector: 0) + [UInt8](repeating: 0x55, count: 512)), status])
        // §5.2.6.2: IOERR for a write when VIRTIO_BLK_F_RO is offered, and no data written.
        XCTAssertEqual(contents(status), [1])
        XCTAssertEqual(used.length, 1)
        XCTAssertTrue(disk.writes.isEmpty)
        XCTAssertTrue(disk.bytes == before, "the read-only disk changed")
        let data = writable(512), readStatus = writable(1)
        _ = try submit([readable(header(type: 0, sector: 2)), data, readStatus])
        XCTAssertEqual(contents(readStatus), [0])
        XCTAssertEqual(contents(data), sectorBytes(2))
    }

    // MARK: Queue handling

    func testProcessingAnEmptyQueueAddsNothing() throws {
        XCTAssertFalse(try block.processRequests(&queue, memory: memory, backend: &disk))
        XCTAssertEqual(driver.usedIndex, 0)
    }

    func testEveryAvailableRequestIsServedInOneCall() throws {
        let statuses = [writable(1), writable(1), writable(1)]
        for status in statuses {
            post([readable(header(type: 4, sector: 0)), status])
        }
        XCTAssertTrue(try block.processRequests(&queue, memory: memory, backend: &disk))
        XCTAssertEqual(driver.usedIndex, 3)
        XCTAssertEqual(disk.flushes, 3)
        XCTAssertEqual(statuses.map(contents), [[0], [0], [0]])
    }

    func testQueueErrorsPropagate() {
        let outside = VirtqueueBuffer(address: GuestPhysicalAddress(memory.end), length: 1, deviceWritable: true)
        post([readable(header(type: 0, sector: 0)), outside])
        XCTAssertThrowsError(try block.processRequests(&queue, memory: memory, backend: &disk)) { error in
            XCTAssertEqual(error as? VirtqueueError, .bufferOutsideMemory)
        }
    }

    // MARK: Features and configuration space (§5.2.3, §5.2.4)

    func testWritableDeviceOffersSegMaxBlkSizeAndFlushButNotRO() {
        XCTAssertEqual(block.deviceFeatures, (1 << 2) | (1 << 6) | (1 << 9))
        XCTAssertEqual(block.deviceType, .block)
        XCTAssertEqual(block.queueCount, 1)
    }

    func testNegotiationRefusesDeviceBitsThatWereNotOffered() {
        XCTAssertTrue(block.negotiate(features: VirtioFeature.version1 | (1 << 9) | (1 << 2)))
        XCTAssertFalse(block.negotiate(features: VirtioFeature.version1 | (1 << 1)))    // SIZE_MAX
        XCTAssertFalse(block.negotiate(features: VirtioFeature.version1 | (1 << 5)))    // RO, not offered here
    }

    func testConfigurationReadsEachFieldLittleEndian() {
        block = VirtioBlock(device: 0, capacitySectors: 0x1122_3344_5566_7788, readOnly: false, identifier: [])
        XCTAssertEqual(block.configurationRead(offset: 0, width: 4), 0x5566_7788)
        XCTAssertEqual(block.configurationRead(offset: 4, width: 4), 0x1122_3344)
        XCTAssertEqual(block.configurationRead(offset: 2, width: 2), 0x5566)
        XCTAssertEqual(block.configurationRead(offset: 7, width: 1), 0x11)
        XCTAssertEqual(block.configurationRead(offset: 8, width: 4), 0)                              // size_max
        XCTAssertEqual(block.configurationRead(offset: 12, width: 4), UInt32(block.maximumQueueSize) - 2)
        XCTAssertEqual(block.configurationRead(offset: 16, width: 4), 0)                             // geometry
        XCTAssertEqual(block.configurationRead(offset: 20, width: 4), 512)
        XCTAssertEqual(block.configurationRead(offset: 20, width: 2), 512)
        XCTAssertEqual(block.configurationRead(offset: 21, width: 1), 2)
        // Unaligned, straddling geometry.sectors and blk_size.
        XCTAssertEqual(block.configurationRead(offset: 19, width: 2), 0x0000)
        XCTAssertEqual(block.configurationRead(offset: 19, width: 4), 0x0002_0000)
    }

    func testConfigurationReadsPastTheEndOrOfOddWidthAreNil() {
        XCTAssertEqual(block.configurationRead(offset: 23, width: 1), 0)
        XCTAssertNil(block.configurationRead(offset: 24, width: 1))
        XCTAssertNil(block.configurationRead(offset: 22, width: 4))
        XCTAssertNil(block.configurationRead(offset: 0, width: 8))
        XCTAssertNil(block.configurationRead(offset: 0, width: 3))
        XCTAssertNil(block.configurationRead(offset: UInt64.max, width: 4))
    }
}
