import XCTest
@testable import VMMCore

/// Records every frame handed to it, gathered from its segments.
private struct FrameRecorder: NetworkBackend {
    var frames: [[UInt8]] = []
    var segmentLists: [[VirtqueueBuffer]] = []

    mutating func networkTransmit(device: Int, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        segmentLists.append(segments)
        frames.append(segments.flatMap { memory.withBytes(at: $0.address, length: UInt64($0.length)) { Array($0) }! })
        return true
    }
}

final class VirtioNetTests: XCTestCase, PlaysTheDriver {
    private let mac: [UInt8] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]
    var ram: TestGuestRAM!
    private var memory: GuestMemory { ram.memory }
    var driver: DriverSideQueue!
    private var queue: SplitVirtqueue!
    private var recorder = FrameRecorder()
    private var net: VirtioNet!

    override func setUp() {
        ram = TestGuestRAM()
        driver = DriverSideQueue(ram: ram, size: 64)
        queue = SplitVirtqueue(configuration: driver.configuration, indirectDescriptors: true, eventIndex: false)
        net = VirtioNet(device: 0, mac: mac)
    }

    /// A 12-byte virtio_net_hdr followed by an Ethernet frame of `payload` bytes.
    private func frame(payload: Int, numberOfBuffers: UInt16 = 0) -> [UInt8] {
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0] + withUnsafeBytes(of: numberOfBuffers.littleEndian) { Array($0) }
            + (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
    }

    private func deliver(_ bytes: [UInt8]) throws -> NetDelivery {
        try bytes.withUnsafeBytes { try net.deliver(frame: $0, to: &queue, memory: memory) }
    }

    // MARK: Features and configuration space (virtio 1.2 §5.1.3, §5.1.4)

    func testOffersMACAndStatusOnly() {
        XCTAssertEqual(net.deviceFeatures, (1 << 5) | (1 << 16))
        XCTAssertEqual(net.deviceType, .network)
        XCTAssertEqual(net.queueCount, 2)
        XCTAssertTrue(net.negotiate(features: VirtioFeature.version1 | (1 << 5) | (1 << 16)))
        XCTAssertFalse(net.negotiate(features: VirtioFeature.version1 | (1 << 15)))   // MRG_RXBUF
        XCTAssertFalse(net.negotiate(features: VirtioFeature.version1 | (1 << 0)))    // CSUM
    }

    func testConfigurationHoldsMACThenLinkUpStatus() {
        for i in 0..<6 {
            XCTAssertEqual(net.configurationRead(offset: UInt64(i), width: 1), UInt32(mac[i]))
        }
        XCTAssertEqual(net.configurationRead(offset: 0, width: 4), 0x1200_5452)
        XCTAssertEqual(net.configurationRead(offset: 4, width: 2), 0x5634)
        XCTAssertEqual(net.configurationRead(offset: 6, width: 2), 1)                 // VIRTIO_NET_S_LINK_UP
        XCTAssertEqual(net.configurationRead(offset: 4, width: 4), 0x0001_5634)
        XCTAssertEqual(net.configurationRead(offset: 5, width: 2), 0x0156)            // unaligned
        XCTAssertEqual(net.configurationRead(offset: 7, width: 1), 0)
    }

    func testConfigurationReadsPastTheEndAreNil() {
        XCTAssertNil(net.configurationRead(offset: 8, width: 1))
        XCTAssertNil(net.configurationRead(offset: 6, width: 4))
        XCTAssertNil(net.configurationRead(offset: 7, width: 2))
        XCTAssertNil(net.configurationRead(offset: 0, width: 8))
    }

    // MARK: Transmit (§5.1.6.2)

    func testTransmitGathersHeaderAndFrameFromAllReadableBuffers() throws {
        let bytes = frame(payload: 60)
        let first = readable(Array(bytes[0..<12])), second = readable(Array(bytes[12...]))
        let head = post([first, second])
        XCTAssertTrue(try net.processTransmit(&queue, memory: memory, backend: &recorder))
        XCTAssertEqual(recorder.frames, [bytes])
        XCTAssertEqual(recorder.segmentLists[0], [first, second])
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertEqual(driver.usedElement(0).id, UInt32(head))
        XCTAssertEqual(driver.usedElement(0).length, 0)
    }

    func testTransmitSendsFramesInQueueOrder() throws {
        let frames = [frame(payload: 60), frame(payload: 1514), frame(payload: 0)]
        for bytes in frames { post([readable(bytes)]) }
        XCTAssertTrue(try net.processTransmit(&queue, memory: memory, backend: &recorder))
        XCTAssertEqual(recorder.frames, frames)
        XCTAssertEqual(driver.usedIndex, 3)
    }

    func testTransmitChainShorterThanTheHeaderIsDroppedButUsed() throws {
        let head = post([readable([UInt8](repeating: 0, count: 11))])
        XCTAssertTrue(try net.processTransmit(&queue, memory: memory, backend: &recorder))
        XCTAssertTrue(recorder.frames.isEmpty)
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertEqual(driver.usedElement(0).id, UInt32(head))
        XCTAssertEqual(driver.usedElement(0).length, 0)
    }

    func testTransmitIgnoresWritableBuffersAndWritesNothing() throws {
        let bytes = frame(payload: 20)
        let stray = writable(32)
        post([readable(bytes), stray])
        XCTAssertTrue(try net.processTransmit(&queue, memory: memory, backend: &recorder))
        XCTAssertEqual(recorder.frames, [bytes])
        XCTAssertEqual(contents(stray), [UInt8](repeating: 0xEE, count: 32))
    }

    func testTransmitWithNothingQueuedAddsNothing() throws {
        XCTAssertFalse(try net.processTransmit(&queue, memory: memory, backend: &recorder))
    }

    // MARK: Receive (§5.1.6.3, §5.1.6.4)

    func testReceiveWritesFrameAcrossBuffersAndSetsNumBuffersToOne() throws {
        let first = writable(40), second = writable(1486)
        let head = post([first, second])
        let bytes = frame(payload: 60, numberOfBuffers: 0xBBAA)
        XCTAssertEqual(try deliver(bytes), .delivered)
        var expected = bytes
        expected[10] = 1
        expected[11] = 0
        let received = contents(first) + contents(second)
        XCTAssertEqual(Array(received[0..<72]), expected)
        XCTAssertEqual(received[72], 0xEE)                 // nothing written past the frame
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertEqual(driver.usedElement(0).id, UInt32(head))
        XCTAssertEqual(driver.usedElement(0).length, 72)
    }

    func testReceiveWithoutPostedBuffersReportsNoBuffer() throws {
        XCTAssertEqual(try deliver(frame(payload: 60)), .noBuffer)
        XCTAssertEqual(driver.usedIndex, 0)
        // The frame can still be delivered once the driver posts a buffer.
        post([writable(1526)])
        XCTAssertEqual(try deliver(frame(payload: 60)), .delivered)
    }

    func testReceiveFrameLargerThanTheChainIsDroppedAndTheChainReturnedEmpty() throws {
        let small = writable(100)
        let head = post([small])
        XCTAssertEqual(try deliver(frame(payload: 89)), .dropped)   // 101 bytes
        XCTAssertEqual(contents(small), [UInt8](repeating: 0xEE, count: 100))
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertEqual(driver.usedElement(0).id, UInt32(head))
        XCTAssertEqual(driver.usedElement(0).length, 0)
    }

    func testReceiveFrameThatExactlyFillsTheChainIsDelivered() throws {
        post([writable(100)])
        XCTAssertEqual(try deliver(frame(payload: 88)), .delivered)
        XCTAssertEqual(driver.usedElement(0).length, 100)
    }

    func testReceiveFrameShorterThanTheHeaderIsDroppedWithoutTakingABuffer() throws {
        let buffer = writable(1526)
        post([buffer])
        XCTAssertEqual(try deliver([1, 2, 3]), .dropped)
        XCTAssertEqual(driver.usedIndex, 0)
        XCTAssertEqual(try deliver(frame(payload: 60)), .delivered)
        XCTAssertEqual(driver.usedIndex, 1)
    }

    func testReceiveIntoAReadOnlyChainIsDropped() throws {
        post([readable([UInt8](repeating: 0, count: 1526))])
        XCTAssertEqual(try deliver(frame(payload: 60)), .dropped)
        XCTAssertEqual(driver.usedElement(0).length, 0)
    }

    // MARK: Offloads (a card on a VMM network, §5.1.3.1, §5.1.6)

    /// A header with NEEDS_CSUM and the given GSO type, then `payload` bytes of frame.
    private func offloadFrame(gsoType: UInt8, payload: Int) -> [UInt8] {
        [1, gsoType, 54, 0, 0xA8, 0x05, 34, 0, 16, 0, 7, 7] + (0..<payload).map { UInt8(truncatingIfNeeded: $0) }
    }

    func testCardOnAVMMNetworkOffersChecksumAndTCPSegmentationBothWays() {
        let card = VirtioNet(device: 0, mac: mac, offloads: true)
        let expected: UInt64 = 0x1_19A3   // CSUM, GUEST_CSUM, MAC, GUEST_TSO4/6, HOST_TSO4/6, STATUS
        XCTAssertEqual(card.deviceFeatures, expected)
        var linux = card
        XCTAssertTrue(linux.negotiate(features: VirtioFeature.version1 | card.deviceFeatures))
        XCTAssertFalse(linux.negotiate(features: VirtioFeature.version1 | (1 << 10)))   // GUEST_UFO: not offered
    }

    func testAcceptsOnlyTheOffloadsItsDriverNegotiated() {
        var card = VirtioNet(device: 0, mac: mac, offloads: true)
        func header(_ flags: UInt8, _ gso: UInt8) -> VirtioNetHeader {
            var h = VirtioNetHeader()
            h.flags = flags
            h.gsoType = gso
            return h
        }
        XCTAssertTrue(card.accepts(header(0, 0)))
        XCTAssertFalse(card.accepts(header(1, 0)))                   // nothing negotiated yet
        XCTAssertFalse(card.accepts(header(1, 1)))
        XCTAssertTrue(card.negotiate(features: VirtioFeature.version1 | VirtioNet.Feature.guestChecksum
                                     | VirtioNet.Feature.guestTSO4))
        XCTAssertTrue(card.accepts(header(1, 0)))
        XCTAssertTrue(card.accepts(header(1, 1)))
        XCTAssertFalse(card.accepts(header(1, 4)))                   // TCPv6 not negotiated
        XCTAssertFalse(card.accepts(header(1, 3)))                   // UDP: never offered
    }

    func testReceivePassesNegotiatedOffloadsAndSetsOnlyNumBuffers() throws {
        net = VirtioNet(device: 0, mac: mac, offloads: true)
        XCTAssertTrue(net.negotiate(features: VirtioFeature.version1 | VirtioNet.Feature.offloads))
        let buffer = writable(70_000)
        post([buffer])
        let bytes = offloadFrame(gsoType: 1, payload: 65_000)
        XCTAssertEqual(try deliver(bytes), .delivered)
        var expected = bytes
        expected[10] = 1
        expected[11] = 0
        XCTAssertEqual(Array(contents(buffer)[0..<bytes.count]), expected)
    }

    func testReceiveNeverHandsADriverAnOffloadItDidNotNegotiate() throws {
        // The caller completes such frames first; should one slip through, its header says nothing.
        let buffer = writable(1526)
        post([buffer])
        var bytes = offloadFrame(gsoType: 0, payload: 100)
        bytes[0] = 3                                                // NEEDS_CSUM | DATA_VALID
        XCTAssertEqual(try deliver(bytes), .delivered)
        XCTAssertEqual(Array(contents(buffer)[0..<12]), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0])
        XCTAssertEqual(Array(contents(buffer)[12..<112]), Array(bytes[12...]))
    }
}
