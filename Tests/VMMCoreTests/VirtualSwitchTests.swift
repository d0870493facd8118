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

    private func send(_ s: inout VirtualSwitch, from port: Int, _ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { s.send(from: port, frame: $0) }
    }

    /// Takes every frame waiting at `port`.
    private func drain(_ s: inout VirtualSwitch, at port: Int) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        while s.receive(at: port, { frames.append(Array($0)); return true }) {}
        return frames
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
        XCTAssertFalse(s.receive(at: 1) { offered.append(Array($0)); return false })   // no buffer posted
        XCTAssertFalse(s.receive(at: 1) { offered.append(Array($0)); return false })
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
            XCTAssertTrue(s.receive(at: 1) { received.append(Array($0)); return true })
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
        var bytes = frame(to: broadcast, from: station(1), length: 1514, seed: 7)
        let original = bytes
        XCTAssertEqual(bytes.withUnsafeMutableBytes { s.send(from: 0, frame: UnsafeRawBufferPointer($0)) }, 0b10)
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
        XCTAssertEqual(s.send(from: 0, frame: UnsafeRawBufferPointer(start: nil, count: 0)), 0)
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
        expected.runt = 3
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
}
