// Tests of the VMM's net and console clients (DriverClients.swift), each against its real server and a
// fake board device (part of DriverClientTests; the block ones are in DriverClientTests.swift): frames and
// bytes both ways, byte for byte, running out of buffers, notifications only when asked, and a driver
// that hands back buffers that are not the VMM's.

import XCTest
@testable import VMMCore

/// A net client and server over real memory: queues and rx_data in `shared`, tx_data in the fake board's
/// "guest" area (the fake device reads frames from it by physical address), the guest's RAM in `ram`.
final class NetRig {
    static let dataSize = Int(MicrokitDriverLayout.netQueueCapacity) * Int(MicrokitDriverLayout.netBufferSize)
    let board = BoardTestMemory(dmaSize: 1 << 20, guestSize: NetRig.dataSize)
    let shared = SharedTestMemory(size: 0x4000 + NetRig.dataSize)
    let ram = TestGuestRAM()
    let fake = BoardVirtioFake(deviceID: 1, features: VirtioFeature.version1 | VirtioNetDriverConstant.featureMAC)
    let channel = TestChannel()
    let server: Box<NetDriverServer<BoardVirtioFake>>
    var client: NetClient<TestLink>
    /// What the fake device does with transmitted chains; set before the driver posts its rx buffers.
    final class Wire {
        /// Chains the device sent, as it read them (header included).
        var sent: [[UInt8]] = []
        var loopback = false
        /// Hold transmitted chains instead of completing them (a busy device).
        var holdTransmit = false
    }
    let wire = Wire()
    var sent: [[UInt8]] { wire.sent }
    var loopback: Bool {
        get { wire.loopback }
        set { wire.loopback = newValue }
    }

    init(connected: Bool = true) throws {
        fake.memory = board
        fake.config = [0x52, 0x54, 0, 1, 2, 3, 1, 0]
        let wire = self.wire
        fake.behaviour = { fake, queue, chain in
            guard queue == 1, !wire.holdTransmit else { return .hold }
            wire.sent.append(fake.readable(chain))
            if wire.loopback { fake.completeHeld(0, filling: fake.readable(chain)) }
            return .complete(written: 0)
        }
        var dma = board.dma
        let driver = try VirtioNetDriver(registers: fake, dma: &dma, receiveBuffers: 8)
        server = Box(try NetDriverServer(driver: driver, rxFree: shared.region(0, 0x1000),
                                         rxActive: shared.region(0x1000, 0x1000), txFree: shared.region(0x2000, 0x1000),
                                         txActive: shared.region(0x3000, 0x1000),
                                         rxData: shared.region(0x4000, Self.dataSize),
                                         txDataPhysical: BoardTestMemory.guestPhysical, txDataSize: UInt64(Self.dataSize),
                                         dma: &dma))
        client = NetClient(rxFree: shared.region(0, 0x1000), rxActive: shared.region(0x1000, 0x1000),
                           txFree: shared.region(0x2000, 0x1000), txActive: shared.region(0x3000, 0x1000),
                           rxData: shared.region(0x4000, Self.dataSize),
                           txData: SharedRegion(base: board.guestHost, size: Self.dataSize),
                           link: TestLink(channel: channel))
        if connected {
            let server = self.server
            channel.onNotify = { _ = server.value.transmit() }
        }
    }

    /// The guest's chain for `frame`: its own virtio_net_hdr (not zero, to show it is not passed on),
    /// then the frame, in two segments cut `cut` bytes in.
    func guestChain(_ frame: [UInt8], cut: Int = 20) -> [VirtqueueBuffer] {
        let bytes = [UInt8](repeating: 0xee, count: 12) + frame
        let address = ram.allocate(bytes.count)
        ram.write(bytes, at: address)
        let first = min(cut, bytes.count)
        var chain: [VirtqueueBuffer] = [.readable(address, UInt32(first))]
        if bytes.count > first {
            chain.append(.readable(GuestPhysicalAddress(address.raw + UInt64(first)), UInt32(bytes.count - first)))
        }
        return chain
    }

    func transmit(_ frame: [UInt8]) -> Bool {
        client.transmit(from: guestChain(frame), memory: ram.memory)
    }

    /// A frame arrives on the wire, behind the device's own virtio_net_hdr.
    func arrive(_ frame: [UInt8]) {
        XCTAssertTrue(fake.completeHeld(0, filling: [UInt8](repeating: 0x77, count: 12) + frame), "a posted buffer")
    }

    func received() -> [[UInt8]] {
        var frames: [[UInt8]] = []
        _ = client.receive { frames.append(Array($0)); return true }
        return frames
    }

    func length(ofQueueAt offset: Int) -> Int {
        var queue = QueueConsumer<NetQueueLayout>(region: shared.region(offset, 0x1000), capacity: 128)
        return queue.length()
    }
}

func testFrame(_ length: Int, seed: UInt8) -> [UInt8] {
    (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) &+ seed }
}

/// A console client and server over real memory, the server driving a fake virtio console.
final class ConsoleRig {
    let board = BoardTestMemory()
    let shared = SharedTestMemory()
    let fake = BoardVirtioFake(deviceID: 3, features: VirtioFeature.version1, queueCount: 2)
    let channel = TestChannel()
    let server: Box<ConsoleDriverServer<BoardVirtioFake>>
    var client: ConsoleClient<TestLink>
    /// What the fake console does with output; set before the driver posts its rx buffers.
    final class Terminal {
        var output: [UInt8] = []
        var holdOutput = false
    }
    let terminal = Terminal()
    var output: [UInt8] { terminal.output }
    var holdOutput: Bool {
        get { terminal.holdOutput }
        set { terminal.holdOutput = newValue }
    }

    init(connected: Bool = true) throws {
        fake.memory = board
        let terminal = self.terminal
        fake.behaviour = { fake, queue, chain in
            guard queue == 1, !terminal.holdOutput else { return .hold }
            terminal.output += fake.readable(chain)
            return .complete(written: 0)
        }
        var dma = board.dma
        let driver = try VirtioConsoleDriver(registers: fake, dma: &dma)
        server = Box(ConsoleDriverServer(driver: driver, rxQueue: shared.region(0, 0x1000), txQueue: shared.region(0x1000, 0x1000),
                                         rxData: shared.region(0x2000, 0x1000), txData: shared.region(0x3000, 0x1000)))
        client = ConsoleClient(rxQueue: shared.region(0, 0x1000), txQueue: shared.region(0x1000, 0x1000),
                               rxData: shared.region(0x2000, 0x1000), txData: shared.region(0x3000, 0x1000),
                               link: TestLink(channel: channel))
        if connected {
            let server = self.server
            channel.onNotify = { _ = server.value.transmit() }
        }
    }

    func write(_ bytes: [UInt8]) -> Int { bytes.withUnsafeBytes { client.write($0) } }

    func type(_ bytes: [UInt8]) { XCTAssertTrue(fake.completeHeld(0, filling: bytes)) }
}

extension DriverClientTests {

    // MARK: Network

    func testFramesTravelBothWaysByteForByte() throws {
        let rig = try NetRig()
        let outgoing = testFrame(60, seed: 1)
        XCTAssertTrue(rig.transmit(outgoing))
        XCTAssertEqual(rig.sent, [[UInt8](repeating: 0, count: 12) + outgoing], "a zeroed header of the driver's own")
        XCTAssertEqual(rig.channel.notifications, 1)
        let incoming = testFrame(1514, seed: 9)
        rig.arrive(incoming)
        XCTAssertTrue(rig.server.value.deviceInterrupt(), "the VMM asked to hear of received frames")
        XCTAssertEqual(rig.received(), [[UInt8](repeating: 0, count: 12) + incoming])
        XCTAssertEqual(rig.length(ofQueueAt: 0x0000), 128, "the rx buffer went back to rx free")
        XCTAssertEqual(rig.length(ofQueueAt: 0x2000), 128, "the tx buffer came back on tx free")
        XCTAssertEqual(rig.received(), [])
        XCTAssertFalse(rig.client.broken || rig.server.value.broken)
    }

    func testManyFramesCycleThroughTheBuffersInLoopback() throws {
        let rig = try NetRig()
        rig.loopback = true
        for index in 0..<300 {
            let frame = testFrame(60 + index % 1400, seed: UInt8(truncatingIfNeeded: index))
            XCTAssertTrue(rig.transmit(frame))
            _ = rig.server.value.deviceInterrupt()
            XCTAssertEqual(rig.received(), [[UInt8](repeating: 0, count: 12) + frame])
        }
        XCTAssertEqual(rig.server.value.droppedFrames, 0)
    }

    func testTransmitFailsOnceEveryTxBufferIsWithTheDriver() throws {
        let rig = try NetRig(connected: false)
        for index in 0..<128 { XCTAssertTrue(rig.transmit(testFrame(64, seed: UInt8(index)))) }
        XCTAssertFalse(rig.transmit(testFrame(64, seed: 0)), "no free tx buffer")
        XCTAssertEqual(rig.channel.notifications, 1, "the driver asked once, then was busy")
        XCTAssertFalse(rig.server.value.transmit(), "the VMM did not ask to hear of returned buffers")
        XCTAssertEqual(rig.sent.count, 128)
        XCTAssertEqual(rig.sent.last, [UInt8](repeating: 0, count: 12) + testFrame(64, seed: 127))
        _ = rig.server.value.deviceInterrupt()
        XCTAssertEqual(rig.length(ofQueueAt: 0x2000), 128)
        XCTAssertTrue(rig.transmit(testFrame(64, seed: 0)))
        XCTAssertEqual(rig.channel.notifications, 2, "the drained driver asked again")
    }

    func testFramesWithoutHeaderEmptyOrLargerThanABufferAreRefused() throws {
        let rig = try NetRig()
        let ram = rig.ram
        let short = ram.allocate(8)
        XCTAssertFalse(rig.client.transmit(from: [.readable(short, 8)], memory: ram.memory))
        XCTAssertFalse(rig.transmit([]), "a header and no frame")
        XCTAssertFalse(rig.transmit(testFrame(2049, seed: 0)))
        XCTAssertTrue(rig.transmit(testFrame(2048, seed: 5)))
        XCTAssertEqual(rig.sent, [[UInt8](repeating: 0, count: 12) + testFrame(2048, seed: 5)])
    }

    func testDriverBuffersOutsideTheDataRegionBreakTheClientUntouched() throws {
        // An rx frame "in" a buffer past the end of rx_data.
        let rig = try NetRig()
        var rxActive = QueueProducer<NetQueueLayout>(region: rig.shared.region(0x1000, 0x1000), capacity: 128)
        XCTAssertTrue(rxActive.enqueue(NetBuffer(offset: UInt64(NetRig.dataSize), length: 60)))
        XCTAssertEqual(rig.client.receive { _ in XCTFail("delivered"); return true }, 0)
        XCTAssertTrue(rig.client.broken)

        // A length over the buffer size, at a valid offset.
        let long = try NetRig()
        var longActive = QueueProducer<NetQueueLayout>(region: long.shared.region(0x1000, 0x1000), capacity: 128)
        XCTAssertTrue(longActive.enqueue(NetBuffer(offset: 0, length: 2049)))
        XCTAssertEqual(long.client.receive { _ in XCTFail("delivered"); return true }, 0)
        XCTAssertTrue(long.client.broken)

        // A tx buffer that is not one of the VMM's: mid-buffer, then far outside.
        for foreign: UInt64 in [100, 1 << 40] {
            let tx = try NetRig(connected: false)
            tx.shared.set(foreign, at: 0x2000 + 8)                    // tx free's head entry
            XCTAssertFalse(tx.transmit(testFrame(60, seed: 1)))
            XCTAssertTrue(tx.client.broken)
            XCTAssertEqual(tx.length(ofQueueAt: 0x3000), 0, "nothing queued to send")
            XCTAssertEqual(tx.channel.notifications, 0)
        }
    }

    // MARK: Console

    func testConsoleBytesTravelBothWays() throws {
        let rig = try ConsoleRig()
        XCTAssertEqual(rig.write(Array("hello\n".utf8)), 6)
        XCTAssertEqual(rig.output, Array("hello\n".utf8))
        XCTAssertEqual(rig.channel.notifications, 1)
        rig.type(Array("login".utf8))
        XCTAssertTrue(rig.server.value.deviceInterrupt(), "the VMM asked to hear of input")
        var input: [UInt8] = []
        XCTAssertEqual(rig.client.receive { input += $0; return $0.count }, 5)
        XCTAssertEqual(input, Array("login".utf8))
        XCTAssertEqual(rig.client.receive { _ in XCTFail("nothing more"); return 0 }, 0)
    }

    func testInputTheGuestDoesNotTakeStaysQueued() throws {
        let rig = try ConsoleRig()
        rig.type(Array("abcdef".utf8))
        _ = rig.server.value.deviceInterrupt()
        var input: [UInt8] = []
        XCTAssertEqual(rig.client.receive { bytes in input += bytes.prefix(2); return 2 }, 2)
        XCTAssertEqual(input, Array("ab".utf8))
        XCTAssertEqual(rig.client.receive { _ in 0 }, 0, "a guest with no room takes nothing")
        XCTAssertEqual(rig.client.receive { input += $0; return $0.count }, 4)
        XCTAssertEqual(input, Array("abcdef".utf8))
    }

    func testOutputWrapsTheRingAndWhatDoesNotFitIsRefused() throws {
        let rig = try ConsoleRig()
        var expected: [UInt8] = []
        for round in 0..<10 {
            let text = testFrame(1000, seed: UInt8(round))
            XCTAssertEqual(rig.write(text), 1000)
            expected += text
        }
        XCTAssertEqual(rig.output, expected, "10000 bytes through a 4096-byte ring")

        let stuck = try ConsoleRig(connected: false)
        XCTAssertEqual(stuck.write(testFrame(5000, seed: 0)), 4096)
        XCTAssertEqual(stuck.write([1]), 0)
        XCTAssertEqual(stuck.channel.notifications, 1)
        _ = stuck.server.value.transmit()
        XCTAssertEqual(stuck.output, testFrame(4096, seed: 0))
    }

    func testOutputWaitsInTheQueueWhileTheDeviceIsBusy() throws {
        let rig = try ConsoleRig()
        rig.holdOutput = true
        XCTAssertEqual(rig.write(testFrame(4096, seed: 3)), 4096, "into the device's 8 bounce buffers")
        XCTAssertEqual(rig.fake.queues[1].held.count, 8)
        XCTAssertEqual(rig.write(testFrame(100, seed: 4)), 100)
        XCTAssertEqual(rig.fake.queues[1].held.count, 8, "no bounce buffer free: the bytes stay queued")
        rig.holdOutput = false
        for _ in 0..<8 { rig.fake.completeHeld(1) }
        _ = rig.server.value.deviceInterrupt()
        XCTAssertEqual(rig.output, testFrame(100, seed: 4))
    }

    func testConsoleIndicesFromAHostileDriverBreakTheClient() throws {
        let rig = try ConsoleRig()
        rig.shared.set(UInt32(5000), at: 0)                             // rx tail past a whole ring
        XCTAssertEqual(rig.client.receive { _ in XCTFail("delivered"); return 0 }, 0)
        XCTAssertTrue(rig.client.broken)
    }
}
