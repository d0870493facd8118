import XCTest
@testable import VMMCore

final class VirtualSwitchTests: XCTestCase {
    private let broadcast: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
    private let ipv4Multicast: [UInt8] = [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB]    // 224.0.0.251 (mDNS)

    /// A locally administered unicast address ending in `n` (and `high` before it, for many addresses).
    private func station(_ n: UInt8, _ high: UInt8 = 0) -> [UInt8] { [0x52, 0x54, 0x00, 0x00, high, n] }

    /// An Ethernet frame of `length` bytes: header, then a payload counting from `seed`.
    private func frame(to destination: [UInt8], from source: [UInt8], etherType: UInt16 = 0x0800,
                       length: Int = 64, seed: UInt8 = 0) -> [UInt8] {
        let header = destination + source + [UInt8(etherType >> 8), UInt8(etherType & 0xFF)]
        let payload = (0..<max(0, length - 14)).map { UInt8(truncatingIfNeeded: $0) &+ seed }
        return Array((header + payload).prefix(length))
    }

    /// Sends `bytes` behind a plain virtio_net_hdr (or `header`).
    private func send(_ s: inout VirtualSwitch, from port: Int, _ bytes: [UInt8],
                      header: [UInt8] = [UInt8](repeating: 0, count: 12)) -> UInt32 {
        var packet = header + bytes
        return packet.withUnsafeMutableBytes { s.send(from: port, packet: $0) }
    }

    /// Takes every packet waiting at `port`: its frames, without their headers.
    private func drain(_ s: inout VirtualSwitch, at port: Int) -> [[UInt8]] {
        drainPackets(&s, at: port).map { Array($0.dropFirst(12)) }
    }

    /// Takes every packet waiting at `port`, headers included.
    private func drainPackets(_ s: inout VirtualSwitch, at port: Int) -> [[UInt8]] {
        var packets: [[UInt8]] = []
        while s.receive(at: port, { packets.append(Array($0)); return true }) {}
        return packets
    }

    /// A virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers.
    private func header(flags: UInt8 = 0, gsoType: UInt8 = 0, gsoSize: UInt16 = 0, checksumStart: UInt16 = 0,
                        checksumOffset: UInt16 = 0, buffers: UInt16 = 0) -> [UInt8] {
        func le(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
        return [flags, gsoType] + le(54) + le(gsoSize) + le(checksumStart) + le(checksumOffset) + le(buffers)
    }

    private func mac(_ bytes: [UInt8]) -> UInt64 { bytes.reduce(0) { $0 << 8 | UInt64($1) } }

    // MARK: Learning and forwarding

    func testLearnsSourceAndForwardsKnownUnicastToThatPortOnly() {
        var s = VirtualSwitch(portCount: 4)
        // Port 1's station is unknown at first: its first frame floods, and teaches the switch where it is.
        XCTAssertEqual(send(&s, from: 1, frame(to: broadcast, from: station(1))), 0b1101)
        XCTAssertEqual(s.learnedPort(for: mac(station(1))), 1)
        for port in [0, 2, 3] { _ = drain(&s, at: port) }

        let reply = frame(to: station(1), from: station(3), length: 98)
        XCTAssertEqual(send(&s, from: 3, reply), 0b0010)
        XCTAssertEqual(drain(&s, at: 1), [reply])
        for port in [0, 2, 3] { XCTAssertEqual(s.queued(at: port), 0) }
        XCTAssertEqual(s.dropped, SwitchDrops())
    }

    func testFloodsBroadcastMulticastAndUnknownUnicastToEveryOtherPort() {
        var s = VirtualSwitch(portCount: 4)
        _ = send(&s, from: 0, frame(to: station(9), from: station(1)))   // learn station 1 at port 0
        for port in 1..<4 { _ = drain(&s, at: port) }

        for destination in [broadcast, ipv4Multicast, station(7)] {
            let bytes = frame(to: destination, from: station(2), etherType: 0x0806, length: 42)
            XCTAssertEqual(send(&s, from: 2, bytes), 0b1011)
            for port in [0, 1, 3] { XCTAssertEqual(drain(&s, at: port), [bytes]) }
            XCTAssertEqual(s.queued(at: 2), 0)
        }
    }

    func testNeverSendsAFrameBackToItsOwnPort() {
        var s = VirtualSwitch(portCount: 3)
        _ = send(&s, from: 0, frame(to: broadcast, from: station(1)))
        _ = send(&s, from: 0, frame(to: broadcast, from: station(2)))   // two stations behind port 0
        for port in 1..<3 { _ = drain(&s, at: port) }

        XCTAssertEqual(send(&s, from: 0, frame(to: station(2), from: station(1))), 0)
        XCTAssertEqual(send(&s, from: 0, frame(to: station(1), from: station(1))), 0)   // to itself
        XCTAssertEqual(s.dropped.hairpin, 2)
        for port in 0..<3 { XCTAssertEqual(s.queued(at: port), 0) }
    }

    func testFollowsAStationThatMovesToAnotherPort() {
        var s = VirtualSwitch(portCount: 3)
        _ = send(&s, from: 0, frame(to: broadcast, from: station(1)))
        XCTAssertEqual(send(&s, from: 2, frame(to: station(1), from: station(2))), 0b001)

        _ = send(&s, from: 1, frame(to: broadcast, from: station(1)))   // station 1 now answers at port 1
        XCTAssertEqual(s.learnedPort(for: mac(station(1))), 1)
        XCTAssertEqual(send(&s, from: 2, frame(to: station(1), from: station(2))), 0b010)
        // And a frame from its old port to it is no longer a hairpin.
        XCTAssertEqual(send(&s, from: 0, frame(to: station(1), from: station(3))), 0b010)
        XCTAssertEqual(s.dropped.hairpin, 0)
    }

    func testFullTableReplacesTheLeastRecentlySeenAddress() {
        var s = VirtualSwitch(portCount: 3, queueCapacity: 1024)
        for n in 0..<VirtualSwitch.addressTableCapacity {
            _ = send(&s, from: 0, frame(to: broadcast, from: station(UInt8(n))))
        }
        _ = send(&s, from: 0, frame(to: broadcast, from: station(0)))     // station 0 seen again: 1 is now oldest
        _ = send(&s, from: 0, frame(to: broadcast, from: station(200)))   // table full: replaces station 1

        XCTAssertEqual(s.table.count, VirtualSwitch.addressTableCapacity)
        XCTAssertNil(s.learnedPort(for: mac(station(1))))
        XCTAssertEqual(s.learnedPort(for: mac(station(0))), 0)
        XCTAssertEqual(s.learnedPort(for: mac(station(2))), 0)
        XCTAssertEqual(s.learnedPort(for: mac(station(200))), 0)
        // Station 1 is unknown again, so a frame for it floods. (Learning its sender, station 99, replaced
        // the next oldest, station 2; station 3 is still known.)
        XCTAssertEqual(send(&s, from: 1, frame(to: station(1), from: station(99))), 0b101)
        XCTAssertNil(s.learnedPort(for: mac(station(2))))
        XCTAssertEqual(send(&s, from: 1, frame(to: station(3), from: station(99))), 0b001)
    }

    func testSpoofingPortReplacesItsOwnAddressesNotItsNeighbours() {
        var s = VirtualSwitch(portCount: 3, queueCapacity: 1)
        _ = send(&s, from: 1, frame(to: broadcast, from: station(1)))
        _ = send(&s, from: 2, frame(to: broadcast, from: station(2)))
        // Port 0 sends from 1000 made-up addresses, far more than the table holds.
        for n in 0..<1000 {
            _ = send(&s, from: 0, frame(to: broadcast, from: station(UInt8(n & 0xFF), UInt8(0x10 + n >> 8))))
        }
        XCTAssertEqual(s.learnedPort(for: mac(station(1))), 1)
        XCTAssertEqual(s.learnedPort(for: mac(station(2))), 2)
        XCTAssertEqual(s.table.count, VirtualSwitch.addressTableCapacity)
        XCTAssertEqual(s.entriesPerPort, [62, 1, 1])
        // Its newest address is remembered, its oldest ones are gone.
        XCTAssertEqual(s.learnedPort(for: mac(station(UInt8(999 & 0xFF), UInt8(0x10 + 999 >> 8)))), 0)
        XCTAssertNil(s.learnedPort(for: mac(station(0, 0x10))))
    }

    func testSpoofedAddressesTakeNoMoreThanAnEvenShareFromABusyNeighbour() {
        var s = VirtualSwitch(portCount: 2, queueCapacity: 1)
        for n in 0..<64 { _ = send(&s, from: 1, frame(to: broadcast, from: station(UInt8(n), 1))) }
        for n in 0..<1000 {
            _ = send(&s, from: 0, frame(to: broadcast, from: station(UInt8(n & 0xFF), UInt8(2 + n >> 8))))
        }
        XCTAssertEqual(s.entriesPerPort, [32, 32])
        // Port 1 kept its most recently seen addresses.
        XCTAssertEqual(s.learnedPort(for: mac(station(63, 1))), 1)
        XCTAssertNil(s.learnedPort(for: mac(station(0, 1))))
    }

    // MARK: Queues

    func testFullQueueDropsOnlyThatCopy() {
        var s = VirtualSwitch(portCount: 3, queueCapacity: 2)
        _ = send(&s, from: 0, frame(to: broadcast, from: station(1), seed: 1))
        _ = send(&s, from: 0, frame(to: broadcast, from: station(1), seed: 2))
        XCTAssertEqual(s.queued(at: 1), 2)
        _ = drain(&s, at: 2)                                        // port 2's guest keeps up, port 1's not

        let third = frame(to: broadcast, from: station(1), seed: 3)
        XCTAssertEqual(send(&s, from: 0, third), 0b100)
        XCTAssertEqual(s.dropped.queueFull, 1)
        XCTAssertEqual(drain(&s, at: 2), [third])
        XCTAssertEqual(drain(&s, at: 1).map { $0[14] }, [1, 2])    // the two older frames, not the third

        // A full queue at the only destination drops the frame altogether.
        _ = send(&s, from: 2, frame(to: broadcast, from: station(2)))
        _ = send(&s, from: 2, frame(to: broadcast, from: station(2)))
        XCTAssertEqual(send(&s, from: 2, frame(to: station(1), from: station(2))), 0)
        XCTAssertEqual(s.dropped.queueFull, 2)
    }

    func testReceiveKeepsAFrameTheGuestCannotTakeAndDeliversInOrder() {
        var s = VirtualSwitch(portCount: 2, queueCapacity: 4)
        let frames = (1...3).map { frame(to: broadcast, from: station(1), seed: UInt8($0)) }
        for bytes in frames { XCTAssertEqual(send(&s, from: 0, bytes), 0b10) }

        var offered: [[UInt8]] = []
        XCTAssertFalse(s.receive(at: 1) { offered.append(Array($0.dropFirst(12))); return false })   // no buffer posted
        XCTAssertFalse(s.receive(at: 1) { offered.append(Array($0.dropFirst(12))); return false })
        XCTAssertEqual(offered, [frames[0], frames[0]])
        XCTAssertEqual(s.queued(at: 1), 3)
        XCTAssertEqual(drain(&s, at: 1), frames)
        XCTAssertEqual(s.queued(at: 1), 0)
    }

    func testQueueStaysInOrderAcrossTheEndOfItsRing() {
        var s = VirtualSwitch(portCount: 2, queueCapacity: 3)
        var received: [[UInt8]] = []
        var sent: [[UInt8]] = []
        for round in 0..<10 {
            for k in 0..<2 {
                let bytes = frame(to: broadcast, from: station(1), length: 60 + round * 2 + k,
                                  seed: UInt8(round * 2 + k))
                sent.append(bytes)
                XCTAssertEqual(send(&s, from: 0, bytes), 0b10)
            }
            XCTAssertTrue(s.receive(at: 1) { received.append(Array($0.dropFirst(12))); return true })
            if round % 2 == 1 { received += drain(&s, at: 1) }
        }
        received += drain(&s, at: 1)
        XCTAssertEqual(received, sent)
    }

    func testReceiveFromAnEmptyOrMissingPortFindsNothing() {
        var s = VirtualSwitch(portCount: 2)
        var called = false
        for port in [0, 1, -1, 2, Int.max, Int.min] {
            XCTAssertFalse(s.receive(at: port) { _ in called = true; return true })
            XCTAssertEqual(s.queued(at: port), 0)
        }
        XCTAssertFalse(called)
    }

    func testQueuedFrameIsACopyOfTheSendersBytes() {
        var s = VirtualSwitch(portCount: 2)
        var bytes = [UInt8](repeating: 0, count: 12) + frame(to: broadcast, from: station(1), length: 1514, seed: 7)
        let original = Array(bytes.dropFirst(12))
        XCTAssertEqual(bytes.withUnsafeMutableBytes { s.send(from: 0, packet: $0) }, 0b10)
        for i in bytes.indices { bytes[i] = 0xEE }                   // the guest reuses its transmit buffer
        XCTAssertEqual(drain(&s, at: 1), [original])
    }

    // MARK: Frame sizes and hostile frames

    func testAcceptsFramesFromHeaderOnlyToFullSize() {
        var s = VirtualSwitch(portCount: 2)
        let accepted = [
            frame(to: broadcast, from: station(1), length: 14),                         // header only
            frame(to: broadcast, from: station(1), etherType: 0x0806, length: 42),      // unpadded ARP
            frame(to: broadcast, from: station(1), length: 1514),
            frame(to: broadcast, from: station(1), etherType: 0x8100, length: 1518),    // 802.1Q tagged
        ]
        for bytes in accepted { XCTAssertEqual(send(&s, from: 0, bytes), 0b10) }
        XCTAssertEqual(drain(&s, at: 1), accepted)
        XCTAssertEqual(s.dropped, SwitchDrops())
    }

    func testHostileFramesAreCountedAndNeverDelivered() {
        var s = VirtualSwitch(portCount: 3)
        _ = send(&s, from: 1, frame(to: broadcast, from: station(2)))
        _ = drain(&s, at: 0)
        _ = drain(&s, at: 2)

        XCTAssertEqual(send(&s, from: 0, []), 0)
        XCTAssertEqual(s.send(from: 0, packet: UnsafeMutableRawBufferPointer(start: nil, count: 0)), 0)
        XCTAssertEqual(send(&s, from: 0, frame(to: station(2), from: station(1), length: 13)), 0)
        XCTAssertEqual(send(&s, from: 0, frame(to: station(2), from: station(1), length: 1515)), 0)
        XCTAssertEqual(send(&s, from: 0, frame(to: station(2), from: station(1), etherType: 0x8100, length: 1519)), 0)
        XCTAssertEqual(send(&s, from: 0, frame(to: station(2), from: station(1), length: 65_549)), 0)
        XCTAssertEqual(send(&s, from: 0, frame(to: station(2), from: broadcast)), 0)
        XCTAssertEqual(send(&s, from: 0, frame(to: station(2), from: ipv4Multicast)), 0)
        XCTAssertEqual(send(&s, from: 0, frame(to: station(2), from: [0, 0, 0, 0, 0, 0])), 0)
        for port in [-1, 3, Int.max, Int.min] {
            XCTAssertEqual(send(&s, from: port, frame(to: station(2), from: station(1))), 0)
        }

        var expected = SwitchDrops()
        expected.runt = 2
        expected.badHeader = 1
        expected.oversized = 3
        expected.badSource = 3
        expected.badPort = 4
        XCTAssertEqual(s.dropped, expected)
        for port in 0..<3 { XCTAssertEqual(s.queued(at: port), 0) }
        // None of them taught the switch anything.
        XCTAssertEqual(s.table.count, 1)
        XCTAssertNil(s.learnedPort(for: mac(station(1))))
    }

    func testSinglePortSwitchHasNowhereToFlood() {
        var s = VirtualSwitch(portCount: 1)
        XCTAssertEqual(send(&s, from: 0, frame(to: broadcast, from: station(1))), 0)
        XCTAssertEqual(s.queued(at: 0), 0)
        XCTAssertEqual(s.dropped, SwitchDrops())
    }

    // MARK: The virtio_net_hdr that travels with each frame

    func testHeaderKeepsOffloadFieldsAndLosesWhatOnlyTheDeviceSets() {
        var s = VirtualSwitch(portCount: 2)
        let bytes = frame(to: broadcast, from: station(1), length: 1514)
        // NEEDS_CSUM | DATA_VALID | an unknown flag, num_buffers 5: the device's fields are cleared.
        let sent = header(flags: 0x83, checksumStart: 34, checksumOffset: 16, buffers: 5)
        XCTAssertEqual(send(&s, from: 0, bytes, header: sent), 0b10)
        XCTAssertEqual(drainPackets(&s, at: 1), [header(flags: 1, checksumStart: 34, checksumOffset: 16) + bytes])
    }

    func testTCPSegmentationFramesUpTo64KiBPassWhole() {
        var s = VirtualSwitch(portCount: 2)
        for (gso, length) in [(UInt8(1), 65_549), (UInt8(4), 20_000), (UInt8(1), 18 + 65_535)] {
            let bytes = frame(to: broadcast, from: station(1), etherType: gso == 1 ? 0x0800 : 0x86DD, length: length)
            let tso = header(flags: 1, gsoType: gso, gsoSize: 1448, checksumStart: 34, checksumOffset: 16)
            XCTAssertEqual(send(&s, from: 0, bytes, header: tso), 0b10)
            XCTAssertEqual(drainPackets(&s, at: 1), [tso + bytes])
        }
        XCTAssertEqual(s.dropped, SwitchDrops())
    }

    func testHeadersThatDoNotDescribeTheirFrameAreDropped() {
        var s = VirtualSwitch(portCount: 2)
        let bytes = frame(to: broadcast, from: station(1), length: 1000)
        let bad = [
            header(flags: 1, checksumStart: 990, checksumOffset: 9),             // field ends past the frame
            header(flags: 1, checksumStart: 10, checksumOffset: 6),              // starts in the Ethernet header
            header(flags: 1, checksumStart: 0xFFFF, checksumOffset: 0xFFFF),
            header(gsoType: 1, gsoSize: 1448),                                   // TSO without NEEDS_CSUM
            header(flags: 1, gsoType: 4, gsoSize: 0, checksumStart: 54, checksumOffset: 16),
            header(flags: 1, gsoType: 3, gsoSize: 1448, checksumStart: 34, checksumOffset: 6),   // UDP fragmentation
            header(flags: 1, gsoType: 0x81, gsoSize: 1448, checksumStart: 34, checksumOffset: 16), // ECN: not offered
        ]
        for h in bad { XCTAssertEqual(send(&s, from: 0, bytes, header: h), 0) }
        // Too big even for segmentation, and a plain frame over the MTU with a valid GSO-less header.
        let tso = header(flags: 1, gsoType: 1, gsoSize: 1448, checksumStart: 34, checksumOffset: 16)
        XCTAssertEqual(send(&s, from: 0, frame(to: broadcast, from: station(1), length: 18 + 65_536), header: tso), 0)
        XCTAssertEqual(send(&s, from: 0, frame(to: broadcast, from: station(1), length: 1515),
                            header: header(flags: 1, checksumStart: 34, checksumOffset: 16)), 0)
        var short = [UInt8](repeating: 0, count: 11)
        XCTAssertEqual(short.withUnsafeMutableBytes { s.send(from: 0, packet: $0) }, 0)

        var expected = SwitchDrops()
        expected.badHeader = UInt64(bad.count + 1)
        expected.oversized = 2
        XCTAssertEqual(s.dropped, expected)
        XCTAssertEqual(s.queued(at: 1), 0)
        XCTAssertEqual(s.table.count, 0)
    }

    // MARK: The byte ring behind each port

    func testPortHoldsNoMoreBytesThanItsRing() {
        var s = VirtualSwitch(portCount: 2, queueBytes: VirtualSwitch.maximumPacketSize)
        let tso = header(flags: 1, gsoType: 1, gsoSize: 1448, checksumStart: 34, checksumOffset: 16)
        let big = frame(to: broadcast, from: station(1), length: 40_000, seed: 1)
        let second = frame(to: broadcast, from: station(1), length: 40_000, seed: 2)
        XCTAssertEqual(send(&s, from: 0, big, header: tso), 0b10)
        XCTAssertEqual(send(&s, from: 0, second, header: tso), 0)          // 80 KB do not fit 64 KiB
        XCTAssertEqual(s.dropped.queueFull, 1)
        XCTAssertEqual(send(&s, from: 0, frame(to: broadcast, from: station(1), length: 1514)), 0b10)
        XCTAssertEqual(drain(&s, at: 1).map(\.count), [40_000, 1514])
        XCTAssertEqual(send(&s, from: 0, second, header: tso), 0b10)       // room again, from the ring's start
        XCTAssertEqual(drain(&s, at: 1), [second])
    }

    func testRingOfMixedSizesStaysInOrderAndNeverOverlaps() {
        // A model queue checks every packet that comes out against what went in, over many wraps.
        var s = VirtualSwitch(portCount: 2, queueCapacity: 64, queueBytes: VirtualSwitch.maximumPacketSize + 5_000)
        var model: [[UInt8]] = []
        var generator = SystemRandomNumberGenerator()
        var accepted = 0
        let tso = header(flags: 1, gsoType: 1, gsoSize: 1448, checksumStart: 34, checksumOffset: 16)
        for round in 0..<2_000 {
            if Int.random(in: 0..<3, using: &generator) > 0 {
                let length = [60, 1514, 9_000, 30_000, 65_000].randomElement(using: &generator)!
                let bytes = frame(to: broadcast, from: station(1), length: length, seed: UInt8(truncatingIfNeeded: round))
                if send(&s, from: 0, bytes, header: length > 1514 ? tso : header()) == 0b10 {
                    model.append(bytes)
                    accepted += 1
                }
            } else {
                var got: [UInt8]? = nil
                _ = s.receive(at: 1) { got = Array($0.dropFirst(12)); return true }
                XCTAssertEqual(got, model.first)
                if !model.isEmpty { model.removeFirst() }
            }
            XCTAssertEqual(s.queued(at: 1), model.count)
        }
        XCTAssertEqual(drain(&s, at: 1), model)
        XCTAssertGreaterThan(accepted, 300)
        XCTAssertGreaterThan(s.dropped.queueFull, 0)
    }
}
