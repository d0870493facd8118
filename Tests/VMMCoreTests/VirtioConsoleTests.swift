import XCTest
@testable import VMMCore

/// Records the bytes written to the port, and how they were split into calls.
private struct ConsoleRecorder: ConsoleBackend {
    var bytes: [UInt8] = []
    var calls = 0

    mutating func consoleWrite(device: Int, _ bytes: UnsafeRawBufferPointer) {
        self.bytes += bytes
        calls += 1
    }
}

final class VirtioConsoleTests: XCTestCase, PlaysTheDriver {
    var ram: TestGuestRAM!
    private var memory: GuestMemory { ram.memory }
    var driver: DriverSideQueue!
    private var queue: SplitVirtqueue!
    private var recorder = ConsoleRecorder()
    private var console = VirtioConsole(device: 0)

    override func setUp() {
        ram = TestGuestRAM()
        driver = DriverSideQueue(ram: ram, size: 64)
        queue = SplitVirtqueue(configuration: driver.configuration, indirectDescriptors: true, eventIndex: false)
    }

    private func deliver(_ text: String) throws -> Int {
        try Array(text.utf8).withUnsafeBytes { try console.deliver(input: $0, to: &queue, memory: memory) }
    }

    // MARK: Features and configuration space (virtio 1.2 §5.3.3, §5.3.4)

    func testOffersNoFeaturesAndRefusesSizeAndMultiport() {
        XCTAssertEqual(console.deviceFeatures, 0)
        XCTAssertEqual(console.deviceType, .console)
        XCTAssertEqual(console.queueCount, 2)
        XCTAssertTrue(console.negotiate(features: VirtioFeature.version1 | VirtioFeature.ringEventIndex))
        XCTAssertFalse(console.negotiate(features: VirtioFeature.version1 | (1 << 0)))   // SIZE
        XCTAssertFalse(console.negotiate(features: VirtioFeature.version1 | (1 << 1)))   // MULTIPORT
        XCTAssertFalse(console.negotiate(features: VirtioFeature.version1 | (1 << 2)))   // EMERG_WRITE
    }

    func testConfigurationReadsZeroAtEveryWidthInsideTheStructure() {
        for offset in UInt64(0)..<12 {
            XCTAssertEqual(console.configurationRead(offset: offset, width: 1), 0, "offset \(offset)")
        }
        for offset in UInt64(0)...10 { XCTAssertEqual(console.configurationRead(offset: offset, width: 2), 0) }
        for offset in UInt64(0)...8 { XCTAssertEqual(console.configurationRead(offset: offset, width: 4), 0) }
        console.configurationWrite(offset: 8, width: 4, value: 0x41)   // emerg_wr without EMERG_WRITE
        XCTAssertEqual(console.configurationRead(offset: 8, width: 4), 0)
    }

    func testConfigurationReadsPastTheEndAreNil() {
        XCTAssertNil(console.configurationRead(offset: 12, width: 1))
        XCTAssertNil(console.configurationRead(offset: 11, width: 2))
        XCTAssertNil(console.configurationRead(offset: 9, width: 4))
        XCTAssertNil(console.configurationRead(offset: 0, width: 8))
    }

    // MARK: Transmit (§5.3.6)

    func testTransmitHandsReadableBytesToTheBackendInOrder() throws {
        let first = post([readable(Array("hello, ".utf8)), readable(Array("world".utf8))])
        let second = post([readable(Array("\r\n".utf8))])
        XCTAssertTrue(try console.processTransmit(&queue, memory: memory, backend: &recorder))
        XCTAssertEqual(String(decoding: recorder.bytes, as: UTF8.self), "hello, world\r\n")
        XCTAssertEqual(recorder.calls, 3)
        XCTAssertEqual(driver.usedIndex, 2)
        XCTAssertEqual(driver.usedElement(0).id, UInt32(first))
        XCTAssertEqual(driver.usedElement(1).id, UInt32(second))
        XCTAssertEqual(driver.usedElement(0).length, 0)
        XCTAssertEqual(driver.usedElement(1).length, 0)
    }

    func testTransmitSkipsWritableBuffersAndEmptyChainsStillGoBackUsed() throws {
        let stray = writable(8)
        post([readable(Array("ok".utf8)), stray])
        post([readable([])])
        XCTAssertTrue(try console.processTransmit(&queue, memory: memory, backend: &recorder))
        XCTAssertEqual(recorder.bytes, Array("ok".utf8))
        XCTAssertEqual(contents(stray), [UInt8](repeating: 0xEE, count: 8))
        XCTAssertEqual(driver.usedIndex, 2)
    }

    func testTransmitWithNothingQueuedAddsNothing() throws {
        XCTAssertFalse(try console.processTransmit(&queue, memory: memory, backend: &recorder))
        XCTAssertEqual(recorder.calls, 0)
    }

    // MARK: Receive (§5.3.6)

    func testReceiveFillsOneChainAndReportsTheBytesWritten() throws {
        let buffer = writable(16)
        let head = post([buffer])
        XCTAssertEqual(try deliver("ls\r"), 3)
        XCTAssertEqual(Array(contents(buffer)[0..<4]), Array("ls\r".utf8) + [0xEE])
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertEqual(driver.usedElement(0).id, UInt32(head))
        XCTAssertEqual(driver.usedElement(0).length, 3)
    }

    func testReceiveSpillsIntoFurtherChainsAcrossTheirBuffers() throws {
        let a = writable(2), b = writable(3), c = writable(4)
        post([a, b])
        post([c])
        XCTAssertEqual(try deliver("abcdefg"), 7)
        XCTAssertEqual(contents(a) + contents(b), Array("abcde".utf8))
        XCTAssertEqual(contents(c), Array("fg".utf8) + [0xEE, 0xEE])
        XCTAssertEqual(driver.usedIndex, 2)
        XCTAssertEqual(driver.usedElement(0).length, 5)
        XCTAssertEqual(driver.usedElement(1).length, 2)
    }

    func testReceiveTakesOnlyWhatFitsAndLeavesTheRestToTheCaller() throws {
        post([writable(4)])
        XCTAssertEqual(try deliver("0123456789"), 4)
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertEqual(driver.usedElement(0).length, 4)
    }

    func testReceiveWithoutPostedBuffersTakesNothing() throws {
        XCTAssertEqual(try deliver("x"), 0)
        XCTAssertEqual(driver.usedIndex, 0)
    }

    func testReceiveOfNothingConsumesNoChain() throws {
        post([writable(4)])
        XCTAssertEqual(try deliver(""), 0)
        XCTAssertEqual(driver.usedIndex, 0)
        XCTAssertEqual(try deliver("y"), 1)
    }
}
