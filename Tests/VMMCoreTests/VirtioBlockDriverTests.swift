// Tests of VirtioBlockDriver against a fake virtio-blk device that behaves like QEMU's (§5.2.6): it
// parses the 16-byte header, reads or writes its disk through the data buffers, writes the status byte.

import XCTest
@testable import VMMCore

/// The disk behind the fake device, and what the driver asked of it.
final class BoardFakeDisk {
    var bytes: [UInt8]
    var headers: [(type: UInt32, sector: UInt64)] = []
    var statusToReport: UInt8 = 0
    init(sectors: Int) { bytes = (0..<sectors * 512).map { UInt8(truncatingIfNeeded: $0 / 512 &* 7 &+ $0) } }

    /// QEMU's handling of one request: header, data, status byte last.
    func serve(_ fake: BoardVirtioFake, _ chain: BoardChain) -> BoardCompletion {
        let header = fake.readable(BoardChain(head: chain.head, buffers: [chain.buffers[0]]))
        let type = header[0..<4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let sector = header[8..<16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        headers.append((type, sector))
        let data = BoardChain(head: chain.head, buffers: Array(chain.buffers.dropFirst().dropLast()))
        var written: UInt32 = 0
        switch type {
        case 0: written = fake.fill(data, with: Array(bytes[(Int(sector) * 512)...]))
        case 1:
            let incoming = fake.readable(data)
            bytes.replaceSubrange(Int(sector) * 512..<Int(sector) * 512 + incoming.count, with: incoming)
        default: break
        }
        _ = fake.fill(BoardChain(head: chain.head, buffers: [chain.buffers.last!]), with: [statusToReport])
        return .complete(written: written + 1)
    }
}

final class VirtioBlockDriverTests: XCTestCase {
    let memory = BoardTestMemory()
    let disk = BoardFakeDisk(sectors: 64)

    func blockDevice(features: UInt64 = VirtioBlockDriverConstant.featureFlush, segmentMaximum: UInt32 = 0,
                     queueMaximum: UInt32 = 256) -> BoardVirtioFake {
        let fake = BoardVirtioFake(deviceID: 2, features: VirtioFeature.version1 | features, queueCount: 1)
        fake.memory = memory
        fake.queues[0].maximum = queueMaximum
        // struct virtio_blk_config: capacity le64 at 0, size_max le32 at 8, seg_max le32 at 12.
        fake.config = [UInt8](repeating: 0, count: 24)
        fake.config[0] = 64
        withUnsafeBytes(of: segmentMaximum.littleEndian) { fake.config.replaceSubrange(12..<16, with: $0) }
        let disk = self.disk
        fake.behaviour = { fake, _, chain in disk.serve(fake, chain) }
        return fake
    }

    func guest(_ offset: UInt64, _ length: UInt32) -> DeviceBuffer {
        DeviceBuffer(physical: BoardTestMemory.guestPhysical + offset, length: length, deviceWritable: false)
    }

    func testCapacityReadOnlyAndSegmentLimitComeFromTheDevice() throws {
        var dma = memory.dma
        let fake = blockDevice(features: VirtioBlockDriverConstant.featureReadOnly
                               | VirtioBlockDriverConstant.featureSegmentMaximum, segmentMaximum: 3)
        let driver = try VirtioBlockDriver(registers: fake, dma: &dma)
        XCTAssertEqual(driver.capacity, 64)
        XCTAssertTrue(driver.readOnly)
        XCTAssertEqual(driver.maximumSegments, 3)
        XCTAssertEqual(fake.driverFeatures, VirtioFeature.version1 | VirtioBlockDriverConstant.featureReadOnly
                       | VirtioBlockDriverConstant.featureSegmentMaximum)
        let unlimited = try VirtioBlockDriver(registers: blockDevice(queueMaximum: 16), dma: &dma)
        XCTAssertFalse(unlimited.readOnly)
        XCTAssertEqual(unlimited.maximumSegments, 14, "queue size minus header and status")
    }

    func testReadFillsTheGuestSegmentsDirectlyFromTheDisk() throws {
        var dma = memory.dma
        let fake = blockDevice()
        var driver = try VirtioBlockDriver(registers: fake, dma: &dma)
        XCTAssertTrue(driver.read(sector: 3, into: [guest(0x1000, 512), guest(0x3000, 1024)]))
        XCTAssertEqual(disk.headers.map(\.type), [0])
        XCTAssertEqual(disk.headers.map(\.sector), [3])
        XCTAssertEqual(memory.guestBytes(0x1000, 512), Array(disk.bytes[3 * 512..<4 * 512]))
        XCTAssertEqual(memory.guestBytes(0x3000, 1024), Array(disk.bytes[4 * 512..<6 * 512]))
        XCTAssertEqual(fake.notifications, [0])
    }

    func testWriteSendsTheGuestSegmentsToTheDisk() throws {
        var dma = memory.dma
        var driver = try VirtioBlockDriver(registers: blockDevice(), dma: &dma)
        let data = (0..<1024).map { UInt8(truncatingIfNeeded: $0 * 3 + 1) }
        memory.setGuestBytes(0x2000, data)
        var segments = [guest(0x2000, 512), guest(0x2200, 512)]
        segments[1].deviceWritable = true                         // the driver decides the direction
        XCTAssertTrue(driver.write(sector: 10, from: segments))
        XCTAssertEqual(disk.headers.map(\.type), [1])
        XCTAssertEqual(Array(disk.bytes[10 * 512..<12 * 512]), data)
    }

    func testFlushIsSentOnlyWhenTheDeviceCachesWrites() throws {
        var dma = memory.dma
        var caching = try VirtioBlockDriver(registers: blockDevice(), dma: &dma)
        XCTAssertTrue(caching.flush())
        XCTAssertEqual(disk.headers.map(\.type), [4])
        let writeThrough = blockDevice(features: 0)
        var plain = try VirtioBlockDriver(registers: writeThrough, dma: &dma)
        XCTAssertTrue(plain.flush())
        XCTAssertEqual(writeThrough.notifications, [], "nothing to flush without VIRTIO_BLK_F_FLUSH")
    }

    func testReadOnlyDeviceRefusesWritesBeforeTheDeviceSeesThem() throws {
        var dma = memory.dma
        let fake = blockDevice(features: VirtioBlockDriverConstant.featureReadOnly)
        var driver = try VirtioBlockDriver(registers: fake, dma: &dma)
        XCTAssertFalse(driver.write(sector: 0, from: [guest(0, 512)]))
        XCTAssertEqual(fake.notifications, [])
        XCTAssertTrue(driver.read(sector: 0, into: [guest(0, 512)]))
    }

    func testDeviceErrorStatusFailsTheRequest() throws {
        var dma = memory.dma
        var driver = try VirtioBlockDriver(registers: blockDevice(), dma: &dma)
        disk.statusToReport = 1                                    // VIRTIO_BLK_S_IOERR
        XCTAssertFalse(driver.read(sector: 0, into: [guest(0, 512)]))
        disk.statusToReport = 0
        XCTAssertTrue(driver.read(sector: 0, into: [guest(0, 512)]), "the next request is unaffected")
    }

    func testRequestsOutsideTheDiskOrOfPartialSectorsAreRefused() throws {
        var dma = memory.dma
        let fake = blockDevice(features: VirtioBlockDriverConstant.featureSegmentMaximum, segmentMaximum: 2)
        var driver = try VirtioBlockDriver(registers: fake, dma: &dma)
        XCTAssertFalse(driver.read(sector: 63, into: [guest(0, 1024)]), "runs past the last sector")
        XCTAssertFalse(driver.read(sector: UInt64.max, into: [guest(0, 512)]))
        XCTAssertFalse(driver.read(sector: 0, into: [guest(0, 500)]), "not whole sectors")
        XCTAssertFalse(driver.read(sector: 0, into: []))
        XCTAssertFalse(driver.read(sector: 0, into: [guest(0, 256), guest(256, 128), guest(384, 128)]),
                       "no whole sector within the first seg_max segments")
        XCTAssertEqual(fake.notifications, [])
        XCTAssertTrue(driver.read(sector: 63, into: [guest(0, 256), guest(256, 256)]), "the last sector, two segments")
    }

    func testMoreSegmentsThanTheDeviceTakesGoAsSeveralRequestsCutOnSectors() throws {
        var dma = memory.dma
        let fake = blockDevice(features: VirtioBlockDriverConstant.featureSegmentMaximum, segmentMaximum: 2)
        var driver = try VirtioBlockDriver(registers: fake, dma: &dma)
        // Sectors 4-7: three segments, then a sector split 256 + 256 across the first cut's reach.
        XCTAssertTrue(driver.read(sector: 4, into: [guest(0, 512), guest(512, 512), guest(1024, 768), guest(1792, 256)]))
        XCTAssertEqual(memory.guestBytes(0, 2048), Array(disk.bytes[2048..<4096]))
        XCTAssertEqual(disk.headers.map { $0.sector }, [4, 6], "two segments, then the remaining 1024 bytes")
        let pattern = (0..<1536).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        memory.setGuestBytes(4096, pattern)
        XCTAssertTrue(driver.write(sector: 10, from: [guest(4096, 512), guest(4608, 512), guest(5120, 512)]))
        XCTAssertEqual(Array(disk.bytes[5120..<6656]), pattern)
        XCTAssertEqual(disk.headers.map { $0.sector }, [4, 6, 10, 12])
    }

    func testCompletionOnAnotherThreadIsAwaitedByPolling() throws {
        var dma = memory.dma
        let fake = blockDevice()
        fake.completionDelay = 5_000                               // barrier calls until the device answers
        var driver = try VirtioBlockDriver(registers: fake, dma: &dma)
        XCTAssertTrue(driver.read(sector: 1, into: [guest(0, 512)]))
        XCTAssertEqual(memory.guestBytes(0, 512), Array(disk.bytes[512..<1024]))
        XCTAssertFalse(driver.stalled)
    }

    func testRequestThatNeverCompletesStallsTheDriver() throws {
        var dma = memory.dma
        let fake = blockDevice()
        fake.behaviour = { _, _, _ in .hold }
        var driver = try VirtioBlockDriver(registers: fake, dma: &dma)
        driver.pollLimit = 1_000
        XCTAssertFalse(driver.read(sector: 0, into: [guest(0, 512)]))
        XCTAssertTrue(driver.stalled)
        fake.completeHeld(0, filling: [])
        XCTAssertFalse(driver.read(sector: 0, into: [guest(0, 512)]), "the header may still be the device's")
        XCTAssertEqual(fake.notifications, [0])
    }

    func testManyRequestsReuseTheQueuesDescriptors() throws {
        var dma = memory.dma
        var driver = try VirtioBlockDriver(registers: blockDevice(queueMaximum: 4), dma: &dma)
        for round in 0..<1_000 {
            let sector = UInt64(round % 60)
            XCTAssertTrue(driver.read(sector: sector, into: [guest(0, 512), guest(512, 512)]), "round \(round)")
        }
        XCTAssertEqual(memory.guestBytes(0, 1024), Array(disk.bytes[Int(999 % 60) * 512..<Int(999 % 60 + 2) * 512]))
        XCTAssertEqual(driver.device.queues[0].freeCount, 4)
    }
}
