// Tests of VirtioConsoleDriver against a fake virtio console (§5.3, port 0 only): output leaves through
// bounce buffers, input arrives in posted receive buffers.

import XCTest
@testable import VMMCore

final class VirtioConsoleDriverTests: XCTestCase {
    let memory = BoardTestMemory()
    var output: [UInt8] = []

    /// A console that records what it is sent; `holdOutput` keeps the transmit chains unconsumed.
    func consoleDevice(holdOutput: Bool = false) -> BoardVirtioFake {
        // VIRTIO_CONSOLE_F_SIZE (0) and F_MULTIPORT (1), as QEMU's virtio-serial offers them.
        let fake = BoardVirtioFake(deviceID: 3, features: VirtioFeature.version1 | 1 << 0 | 1 << 1, queueCount: 4)
        fake.memory = memory
        fake.behaviour = { [unowned self] fake, queue, chain in
            guard queue == 1, !holdOutput else { return .hold }
            output += fake.readable(chain)
            return .complete(written: 0)
        }
        return fake
    }

    func write(_ driver: inout VirtioConsoleDriver<BoardVirtioFake>, _ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { driver.write($0) }
    }

    func testOnlyPortZeroIsUsedAndItsReceiveBuffersArePosted() throws {
        var dma = memory.dma
        let fake = consoleDevice()
        _ = try VirtioConsoleDriver(registers: fake, dma: &dma, receiveBuffers: 3)
        XCTAssertEqual(fake.driverFeatures, VirtioFeature.version1, "no MULTIPORT: no control queue")
        XCTAssertEqual(fake.queues.map(\.ready), [1, 1, 0, 0])
        XCTAssertEqual(fake.queues[0].held.count, 3)
        XCTAssertTrue(fake.queues[0].held.allSatisfy { $0.buffers[0].deviceWritable })
    }

    func testOutputIsCopiedSoTheCallersBytesCanBeReusedAtOnce() throws {
        var dma = memory.dma
        let fake = consoleDevice()
        fake.completionDelay = 3                                   // the device reads the bytes later
        var driver = try VirtioConsoleDriver(registers: fake, dma: &dma)
        var line = Array("login: ".utf8)
        XCTAssertEqual(write(&driver, line), 7)
        for index in line.indices { line[index] = 0 }              // the caller reuses its buffer
        for _ in 0..<3 { fake.memoryBarrier() }
        XCTAssertEqual(output, Array("login: ".utf8))
        let chain = fake.walk(1, head: 0)
        XCTAssertFalse(chain.buffers[0].deviceWritable)
        XCTAssertEqual(chain.buffers[0].length, 7)
    }

    func testLongOutputIsSplitAcrossBounceBuffers() throws {
        var dma = memory.dma
        let fake = consoleDevice()
        var driver = try VirtioConsoleDriver(registers: fake, dma: &dma)
        let text = (0..<1300).map { UInt8(truncatingIfNeeded: $0 % 26 + 97) }
        XCTAssertEqual(write(&driver, text), 1300)
        XCTAssertEqual(output, text)
        XCTAssertEqual(fake.notifications.filter { $0 == 1 }.count, 1, "three chains, one notification")
    }

    func testOutputStopsWhenEveryBounceBufferIsWithTheDevice() throws {
        var dma = memory.dma
        let fake = consoleDevice(holdOutput: true)
        var driver = try VirtioConsoleDriver(registers: fake, dma: &dma, transmitBuffers: 2)
        XCTAssertEqual(driver.transmitCapacity, 1024)
        let text = [UInt8](repeating: 0x41, count: 1500)
        XCTAssertEqual(write(&driver, text), 1024)
        XCTAssertEqual(write(&driver, text), 0)
        XCTAssertEqual(driver.transmitCapacity, 0)
        fake.completeHeld(1)
        XCTAssertEqual(write(&driver, Array(text[1024...])), 476, "the consumed buffer is used again")
    }

    func testInputIsDeliveredAndItsBufferPostedAgain() throws {
        var dma = memory.dma
        let fake = consoleDevice()
        var driver = try VirtioConsoleDriver(registers: fake, dma: &dma, receiveBuffers: 2)
        fake.completeHeld(0, filling: Array("ls\n".utf8))
        fake.completeHeld(0, filling: Array("pwd\n".utf8))
        var input: [UInt8] = []
        XCTAssertEqual(driver.receive { input += $0 }, 2)
        XCTAssertEqual(input, Array("ls\npwd\n".utf8))
        XCTAssertEqual(fake.queues[0].held.count, 2)
        XCTAssertEqual(driver.receive { _ in XCTFail("no more input") }, 0)
    }
}
