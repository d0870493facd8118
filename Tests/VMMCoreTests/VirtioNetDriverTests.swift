// Tests of VirtioNetDriver against a fake virtio-net device (§5.1) that holds the posted receive buffers
// and loops every transmitted frame back into the next one, the way a QEMU netdev in loopback would.

import XCTest
@testable import VMMCore

final class VirtioNetDriverTests: XCTestCase {
    let memory = BoardTestMemory()
    let mac: [UInt8] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]

    /// A net device whose transmit queue (1) feeds its receive queue (0); `loopback` false holds TX chains.
    func netDevice(queueMaximum: UInt32 = 256, loopback: Bool = true,
                   features: UInt64 = VirtioNetDriverConstant.featureMAC) -> BoardVirtioFake {
        let fake = BoardVirtioFake(deviceID: 1, features: VirtioFeature.version1 | features)
        fake.memory = memory
        fake.queues[0].maximum = queueMaximum
        fake.queues[1].maximum = queueMaximum
        fake.config = mac + [1, 0]                                 // mac[6], status le16 (§5.1.4)
        fake.behaviour = { fake, queue, chain in
            guard queue == 1, loopback else { return .hold }
            fake.completeHeld(0, filling: fake.readable(chain))
            return .complete(written: 0)
        }
        return fake
    }

    func frame(_ length: Int, seed: UInt8) -> [UInt8] {
        [UInt8](repeating: 0, count: VirtioNetDriverConstant.headerLength)
            + (0..<length).map { UInt8(truncatingIfNeeded: $0) &+ seed }
    }

    func testInitialisationPostsTheReceiveBuffersAndReadsTheMAC() throws {
        var dma = memory.dma
        let fake = netDevice()
        let driver = try VirtioNetDriver(registers: fake, dma: &dma, receiveBuffers: 32)
        XCTAssertEqual(driver.mac, mac)
        XCTAssertEqual(fake.driverFeatures, VirtioFeature.version1 | VirtioNetDriverConstant.featureMAC)
        XCTAssertEqual(fake.notifications, [0])
        XCTAssertEqual(fake.queues[0].held.count, 32)
        for chain in fake.queues[0].held {
            XCTAssertEqual(chain.buffers.count, 1)
            XCTAssertTrue(chain.buffers[0].deviceWritable)
            XCTAssertGreaterThanOrEqual(chain.buffers[0].length, 1526, "§5.1.6.3.1 without MRG_RXBUF")
        }
        XCTAssertEqual(Set(fake.queues[0].held.map(\.buffers[0].physical)).count, 32, "32 distinct buffers")
        let unnamed = try VirtioNetDriver(registers: netDevice(features: 0), dma: &dma)
        XCTAssertNil(unnamed.mac)
    }

    func testReceiveBuffersAreCappedAtTheQueueSize() throws {
        var dma = memory.dma
        let fake = netDevice(queueMaximum: 8)
        _ = try VirtioNetDriver(registers: fake, dma: &dma, receiveBuffers: 32)
        XCTAssertEqual(fake.queues[0].held.count, 8)
    }

    func testTransmittedFrameLoopsBackToReceiveWithItsHeader() throws {
        var dma = memory.dma
        let fake = netDevice()
        var driver = try VirtioNetDriver(registers: fake, dma: &dma, receiveBuffers: 4)
        let sent = frame(60, seed: 9)
        memory.setGuestBytes(0x100, sent)
        // Zero copy: the header and the frame as two guest segments.
        XCTAssertTrue(driver.transmit([
            DeviceBuffer(physical: BoardTestMemory.guestPhysical + 0x100, length: 12, deviceWritable: true),
            DeviceBuffer(physical: BoardTestMemory.guestPhysical + 0x10c, length: 60, deviceWritable: false)]))
        XCTAssertEqual(fake.notifications, [0, 1])
        var received: [[UInt8]] = []
        XCTAssertEqual(driver.receive { received.append(Array($0)) }, 1)
        XCTAssertEqual(received, [sent])
        XCTAssertEqual(fake.queues[0].held.count, 4, "the buffer was posted again")
        XCTAssertEqual(fake.notifications, [0, 1, 0])
        XCTAssertEqual(driver.receive { _ in XCTFail("nothing more arrived") }, 0)
        XCTAssertEqual(driver.reclaimTransmitted(), 1)
        XCTAssertEqual(driver.pendingTransmissions, 0)
    }

    func testManyFramesCycleThroughFewReceiveBuffers() throws {
        var dma = memory.dma
        let fake = netDevice(queueMaximum: 4)
        var driver = try VirtioNetDriver(registers: fake, dma: &dma, receiveBuffers: 2)
        for round in 0..<300 {
            let sent = frame(40 + round % 1400, seed: UInt8(truncatingIfNeeded: round))
            memory.setGuestBytes(0, sent)
            XCTAssertTrue(driver.transmit([DeviceBuffer(physical: BoardTestMemory.guestPhysical,
                                                        length: UInt32(sent.count), deviceWritable: false)]))
            var received: [UInt8] = []
            XCTAssertEqual(driver.receive { received = Array($0) }, 1, "round \(round)")
            if received != sent { XCTFail("round \(round): frame differs"); break }
        }
        XCTAssertEqual(driver.pendingTransmissions, 1, "the last frame is reclaimed on a later call")
    }

    func testTransmitReportsAFullQueueAndRecoversOnceTheDeviceFinishes() throws {
        var dma = memory.dma
        let fake = netDevice(queueMaximum: 4, loopback: false)
        var driver = try VirtioNetDriver(registers: fake, dma: &dma)
        let segment = DeviceBuffer(physical: BoardTestMemory.guestPhysical, length: 72, deviceWritable: false)
        for _ in 0..<4 { XCTAssertTrue(driver.transmit([segment])) }
        XCTAssertEqual(driver.pendingTransmissions, 4)
        XCTAssertFalse(driver.transmit([segment]))
        XCTAssertFalse(driver.transmit([segment, segment]))
        XCTAssertEqual(fake.notifications.filter { $0 == 1 }.count, 4)
        fake.completeHeld(1)
        fake.completeHeld(1)
        XCTAssertTrue(driver.transmit([segment, segment]), "two chains reclaimed, two descriptors free")
        XCTAssertEqual(driver.pendingTransmissions, 3)
    }

    func testReceiveHandsOverAtMostOneQueueOfFramesPerCall() throws {
        var dma = memory.dma
        let fake = netDevice(queueMaximum: 4)
        var driver = try VirtioNetDriver(registers: fake, dma: &dma, receiveBuffers: 4)
        // A device that fills every re-posted buffer at once (QEMU's thread racing the driver).
        fake.behaviour = { fake, queue, chain in
            queue == 0 ? .complete(written: fake.fill(chain, with: [1, 2, 3])) : .hold
        }
        fake.servicesOnBarrier = [0]
        for _ in 0..<4 { fake.completeHeld(0, filling: [9]) }
        var frames = 0
        XCTAssertEqual(driver.receive { _ in frames += 1 }, 4)
        XCTAssertEqual(frames, 4)
        XCTAssertEqual(driver.receive { _ in }, 4, "the device kept filling: the next call takes more")
    }
}
