import XCTest
@testable import VMMCore

/// The split virtqueue against the virtio 1.2 §2.7 rules, with the driver played by DriverSideQueue.
final class VirtqueueTests: XCTestCase {
    private func makeQueue(size: UInt16 = 16, indirect: Bool = true, eventIndex: Bool = false,
                           ram: TestGuestRAM = TestGuestRAM()) -> (TestGuestRAM, DriverSideQueue, SplitVirtqueue) {
        let driver = DriverSideQueue(ram: ram, size: size)
        let device = SplitVirtqueue(configuration: driver.configuration, indirectDescriptors: indirect,
                                    eventIndex: eventIndex)
        return (ram, driver, device)
    }

    private func assertPopThrows(_ expected: VirtqueueError, _ device: inout SplitVirtqueue, _ ram: TestGuestRAM,
                                 file: StaticString = #filePath, line: UInt = #line) {
        do {
            let chain = try device.popAvailable(memory: ram.memory)
            XCTFail("expected \(expected), got a chain of \(chain?.buffers.count ?? -1) buffers", file: file, line: line)
        } catch {
            XCTAssertEqual(error, expected, file: file, line: line)
        }
    }

    // MARK: - Well-formed chains

    func testNormalChainListsReadableThenWritableBuffersAndIsReturnedThroughTheUsedRing() throws {
        var (ram, driver, device) = makeQueue()
        try device.validate(memory: ram.memory)
        XCTAssertNil(try device.popAvailable(memory: ram.memory), "avail.idx 0: nothing available")
        let header = ram.allocate(16), data = ram.allocate(512), status = ram.allocate(1)
        ram.write(Array(0..<16), at: header)
        driver.nextFreeDescriptor = 5
        let head = driver.addChain([.readable(header, 16), .writable(data, 512), .writable(status, 1)])
        driver.publish(head)

        let chain = try XCTUnwrap(try device.popAvailable(memory: ram.memory))
        XCTAssertEqual(chain.head, 5)
        XCTAssertEqual(chain.buffers, [.readable(header, 16), .writable(data, 512), .writable(status, 1)])
        XCTAssertEqual(chain.readableLength, 16)
        XCTAssertEqual(chain.writableLength, 513)
        XCTAssertEqual(device.lastAvailableIndex, 1)
        XCTAssertNil(try device.popAvailable(memory: ram.memory), "only one chain was published")

        var bytes = [UInt8](repeating: 0, count: 8)
        XCTAssertEqual(bytes.withUnsafeMutableBytes { chain.read(from: ram.memory, offset: 4, into: $0) }, 8)
        XCTAssertEqual(bytes, Array(4..<12))
        XCTAssertEqual(bytes.withUnsafeMutableBytes { chain.read(from: ram.memory, offset: 12, into: $0) }, 4,
                       "the readable part ends after 16 bytes")

        try device.pushUsed(head: chain.head, writtenLength: 513, memory: ram.memory)
        XCTAssertEqual(device.usedIndex, 1)
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertEqual(driver.usedElement(0).id, 5)
        XCTAssertEqual(driver.usedElement(0).length, 513)
    }

    func testWritesAndSegmentsCrossBufferBoundaries() throws {
        var (ram, driver, device) = makeQueue()
        let a = ram.allocate(16), b = ram.allocate(32), w1 = ram.allocate(4), w2 = ram.allocate(8)
        driver.publish(driver.addChain([.readable(a, 16), .readable(b, 32), .writable(w1, 4), .writable(w2, 8)]))
        let chain = try XCTUnwrap(try device.popAvailable(memory: ram.memory))

        // A block backend skipping a 16-byte request header sees only the second readable buffer.
        XCTAssertEqual(chain.readableSegments(offset: 16, length: 1000), [.readable(b, 32)])
        XCTAssertEqual(chain.readableSegments(offset: 10, length: 10),
                       [.readable(GuestPhysicalAddress(a.raw + 10), 6), .readable(b, 4)])
        XCTAssertEqual(chain.writableSegments(offset: 2, length: 5),
                       [.writable(GuestPhysicalAddress(w1.raw + 2), 2), .writable(w2, 3)])
        XCTAssertEqual(chain.writableSegments(offset: 12, length: 1), [], "past the writable part")

        let source: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        XCTAssertEqual(source.withUnsafeBytes { chain.write(to: ram.memory, offset: 3, from: $0) }, 9,
                       "12 writable bytes, starting at 3")
        XCTAssertEqual(ram.read(at: w1, count: 4), [0, 0, 0, 1])
        XCTAssertEqual(ram.read(at: w2, count: 8), [2, 3, 4, 5, 6, 7, 8, 9])
        XCTAssertEqual(ram.read(at: a, count: 4), [0, 0, 0, 0], "readable buffers are never written (§2.7.5.1)")
    }

    func testChainFillingTheWholeTableIsAccepted() throws {
        var (ram, driver, device) = makeQueue(size: 16)
        let buffers = (0..<16).map { _ in VirtqueueBuffer.readable(ram.allocate(8), 8) }
        driver.publish(driver.addChain(buffers))
        let chain = try XCTUnwrap(try device.popAvailable(memory: ram.memory))
        XCTAssertEqual(chain.buffers.count, 16)
        XCTAssertEqual(chain.readableLength, 128)
    }

    func testZeroLengthDescriptorsAreSkippedButFollowed() throws {
        var (ram, driver, device) = makeQueue()
        let r = ram.allocate(8), w = ram.allocate(8)
        // A zero-length descriptor names no byte: its address (even far outside RAM) and its direction
        // do not matter, but its NEXT link does.
        driver.writeDescriptor(0, address: r.raw, length: 8, flags: SplitRingLayout.descriptorNext, next: 3)
        driver.writeDescriptor(3, address: 0xdead_0000_0000, length: 0,
                               flags: SplitRingLayout.descriptorNext | SplitRingLayout.descriptorWrite, next: 7)
        driver.writeDescriptor(7, address: w.raw, length: 8, flags: SplitRingLayout.descriptorWrite)
        driver.publish(0)
        let chain = try XCTUnwrap(try device.popAvailable(memory: ram.memory))
        XCTAssertEqual(chain.buffers, [.readable(r, 8), .writable(w, 8)])
    }

    // MARK: - Hostile indices and addresses

    func testHeadIndexPastTheQueueIsRejected() {
        var (ram, driver, device) = makeQueue(size: 16)
        driver.publish(16)
        assertPopThrows(.descriptorIndexOutOfRange, &device, ram)
    }

    func testNextIndexPastTheQueueIsRejected() {
        var (ram, driver, device) = makeQueue(size: 16)
        let buffer = ram.allocate(64)
        driver.writeDescriptor(0, address: buffer.raw, length: 64, flags: SplitRingLayout.descriptorNext, next: 16)
        driver.publish(0)
        assertPopThrows(.descriptorIndexOutOfRange, &device, ram)
    }

    func testDescriptorTableFarOutsideMemoryIsRejected() {
        let ram = TestGuestRAM()
        let driver = DriverSideQueue(ram: ram, size: 16)
        var configuration = driver.configuration
        configuration.descriptorTable = GuestPhysicalAddress(0x00ff_ffff_ffff)
        var device = SplitVirtqueue(configuration: configuration, indirectDescriptors: false, eventIndex: false)
        XCTAssertThrowsError(try device.validate(memory: ram.memory)) {
            XCTAssertEqual($0 as? VirtqueueError, .ringOutsideMemory)
        }
        driver.publish(0)
        assertPopThrows(.ringOutsideMemory, &device, ram)

        // A table at the top of the 64-bit space: entry addresses must not wrap around to RAM.
        configuration.descriptorTable = GuestPhysicalAddress(UInt64.max - 15)
        device = SplitVirtqueue(configuration: configuration, indirectDescriptors: false, eventIndex: false)
        driver.publish(1)
        _ = try? device.popAvailable(memory: ram.memory)        // head 0 at UInt64.max - 15: outside
        assertPopThrows(.ringOutsideMemory, &device, ram)       // head 1 would wrap to 0
    }

    func testValidateRejectsRingsCrossingTheEndOfRAM() throws {
        let ram = TestGuestRAM(size: 0x1_0000)
        let driver = DriverSideQueue(ram: ram, size: 16)
        try SplitVirtqueue(configuration: driver.configuration, indirectDescriptors: false, eventIndex: false)
            .validate(memory: ram.memory)
        var configuration = driver.configuration
        // The used ring is 6 + 8 * 16 = 134 bytes: starting 133 bytes before the end leaves one outside.
        configuration.usedRing = GuestPhysicalAddress(ram.memory.end - 133)
        XCTAssertThrowsError(try SplitVirtqueue(configuration: configuration, indirectDescriptors: false,
                                                eventIndex: false).validate(memory: ram.memory))
        configuration.usedRing = GuestPhysicalAddress(ram.memory.end - 134)
        configuration.availableRing = GuestPhysicalAddress(ram.memory.base.raw - 2)
        XCTAssertThrowsError(try SplitVirtqueue(configuration: configuration, indirectDescriptors: false,
                                                eventIndex: false).validate(memory: ram.memory))
    }

    func testBuffersOutsideRAMAreRejected() {
        let cases: [(UInt64, UInt32)] = [
            (0x3fff_fff0, 16),                      // below RAM
            (0x4000_0000 + 0x10_0000 - 8, 16),      // straddles the end
            (UInt64.max - 3, 8),                    // addr + len overflows 64 bits
            (0x7_0000_0000, 1),                     // far above
        ]
        for (address, length) in cases {
            var (ram, driver, device) = makeQueue()
            driver.writeDescriptor(0, address: address, length: length)
            driver.publish(0)
            assertPopThrows(.bufferOutsideMemory, &device, ram)
        }
    }

    func testLoopingChainIsCutAtQueueSize() {
        var (ram, driver, device) = makeQueue(size: 16)
        let buffer = ram.allocate(8)
        driver.writeDescriptor(0, address: buffer.raw, length: 8, flags: SplitRingLayout.descriptorNext, next: 1)
        driver.writeDescriptor(1, address: buffer.raw, length: 8, flags: SplitRingLayout.descriptorNext, next: 0)
        driver.publish(0)
        assertPopThrows(.chainTooLong, &device, ram)

        // 17 distinct-looking descriptors in a 16-entry table is a loop too: one longer than the table.
        let driver2 = DriverSideQueue(ram: ram, size: 16)
        device = SplitVirtqueue(configuration: driver2.configuration, indirectDescriptors: false, eventIndex: false)
        for i in UInt16(0)..<16 {
            driver2.writeDescriptor(i, address: buffer.raw, length: 8, flags: SplitRingLayout.descriptorNext,
                                    next: (i + 1) % 16)
        }
        driver2.publish(0)
        assertPopThrows(.chainTooLong, &device, ram)
    }

    func testReadableAfterWritableIsRejected() {
        var (ram, driver, device) = makeQueue()
        let w = ram.allocate(8), r = ram.allocate(8)
        driver.publish(driver.addChain([.writable(w, 8), .readable(r, 8)]))
        assertPopThrows(.readableAfterWritable, &device, ram)

        (ram, driver, device) = makeQueue()
        driver.publish(driver.addIndirectChain([.readable(r, 8), .writable(w, 8), .readable(r, 8)]))
        assertPopThrows(.readableAfterWritable, &device, ram)
    }

    func testChainOf4GiBIsRejectedAndOneByteLessAccepted() throws {
        // Every descriptor names all of a 1 MiB RAM (overlap is the driver's business, not a safety issue).
        let ram = TestGuestRAM(size: 0x10_0000)
        let whole = VirtqueueBuffer.readable(ram.memory.base, 0x10_0000)
        var (_, driver, device) = makeQueue(size: 8192, ram: ram)
        driver.publish(driver.addChain(Array(repeating: whole, count: 4095) + [.readable(ram.memory.base, 0xf_ffff)]))
        let chain = try XCTUnwrap(try device.popAvailable(memory: ram.memory))
        XCTAssertEqual(chain.readableLength, UInt64(UInt32.max), "2^32 - 1 bytes fit a used element's len")

        driver.publish(driver.addChain(Array(repeating: whole, count: 4096)))
        assertPopThrows(.chainTooLong, &device, ram)
    }

    func testAvailableIndexMoreThanAQueueAheadIsRejected() throws {
        var (ram, driver, device) = makeQueue(size: 16)
        let buffer = ram.allocate(8)
        for _ in 0..<16 { driver.publish(driver.addChain([.readable(buffer, 8)])) }
        XCTAssertNotNil(try device.popAvailable(memory: ram.memory), "a full ring (16 ahead) is fine")
        driver.setAvailableIndex(18)        // 18 - 1 = 17 > 16
        assertPopThrows(.availableIndexTooFar, &device, ram)
        driver.setAvailableIndex(0)         // moved backwards: looks like 65535 ahead
        assertPopThrows(.availableIndexTooFar, &device, ram)
    }

    // MARK: - Indirect tables

    func testIndirectChainAfterDirectDescriptorsIsAccepted() throws {
        var (ram, driver, device) = makeQueue()
        let h = ram.allocate(16), d = ram.allocate(4096), s = ram.allocate(1)
        driver.publish(driver.addIndirectChain([.readable(h, 16), .writable(d, 4096), .writable(s, 1)]))
        var chain = try XCTUnwrap(try device.popAvailable(memory: ram.memory))
        XCTAssertEqual(chain.head, 0)
        XCTAssertEqual(chain.buffers, [.readable(h, 16), .writable(d, 4096), .writable(s, 1)])

        // §2.7.5.3.2: normal descriptors followed by one indirect one; its WRITE and NEXT flags are ignored.
        let table = ram.allocate(32)
        driver.writeDescriptor(0, address: d.raw, length: 100, flags: SplitRingLayout.descriptorNext, next: 1,
                               table: table)
        driver.writeDescriptor(1, address: s.raw, length: 1, flags: SplitRingLayout.descriptorWrite, table: table)
        driver.writeDescriptor(4, address: h.raw, length: 16, flags: SplitRingLayout.descriptorNext, next: 9)
        driver.writeDescriptor(9, address: table.raw, length: 32, flags: SplitRingLayout.descriptorIndirect
                               | SplitRingLayout.descriptorWrite | SplitRingLayout.descriptorNext, next: 4)
        driver.publish(4)
        chain = try XCTUnwrap(try device.popAvailable(memory: ram.memory))
        XCTAssertEqual(chain.buffers, [.readable(h, 16), .readable(d, 100), .writable(s, 1)])
    }

    func testIndirectTableInsideIndirectTableIsRejected() {
        var (ram, driver, device) = makeQueue()
        let inner = ram.allocate(16)
        driver.publish(driver.addIndirectChain([VirtqueueBuffer.readable(inner, 16)]))
        // Turn the indirect table's only entry into another indirect descriptor.
        let table = GuestPhysicalAddress(ram.memory.load(UInt64.self, at: driver.configuration.descriptorTable)!)
        driver.writeDescriptor(0, address: inner.raw, length: 16, flags: SplitRingLayout.descriptorIndirect,
                               table: table)
        assertPopThrows(.nestedIndirectTable, &device, ram)
    }

    func testIndirectTableWithBadLengthIsRejected() {
        for length: UInt32 in [0, 24, 15, 16 * 32769] {
            var (ram, driver, device) = makeQueue()
            let table = ram.allocate(64)
            driver.writeDescriptor(0, address: table.raw, length: length, flags: SplitRingLayout.descriptorIndirect)
            driver.publish(0)
            assertPopThrows(.badIndirectTable, &device, ram)
        }
    }

    func testIndirectTableOutsideRAMIsRejected() {
        var (ram, driver, device) = makeQueue()
        driver.writeDescriptor(0, address: ram.memory.end - 16, length: 32, flags: SplitRingLayout.descriptorIndirect)
        driver.publish(0)
        assertPopThrows(.bufferOutsideMemory, &device, ram)
    }

    func testIndirectDescriptorWithoutTheFeatureIsRejected() {
        var (ram, driver, device) = makeQueue(indirect: false)
        driver.publish(driver.addIndirectChain([.readable(ram.allocate(8), 8)]))
        assertPopThrows(.indirectNotNegotiated, &device, ram)
    }

    func testIndirectNextPastTheTableOrLoopingIsRejected() {
        var (ram, driver, device) = makeQueue(size: 256)
        let buffer = ram.allocate(8), table = ram.allocate(64)
        // A 4-entry table (len 64): next = 4 is past it although it is inside the 256-entry queue.
        driver.writeDescriptor(0, address: buffer.raw, length: 8, flags: SplitRingLayout.descriptorNext, next: 4,
                               table: table)
        driver.writeDescriptor(0, address: table.raw, length: 64, flags: SplitRingLayout.descriptorIndirect)
        driver.publish(0)
        assertPopThrows(.descriptorIndexOutOfRange, &device, ram)

        // A loop inside the table ends after the table's 4 entries, not the queue's 256.
        driver.writeDescriptor(0, address: buffer.raw, length: 8, flags: SplitRingLayout.descriptorNext, next: 1,
                               table: table)
        driver.writeDescriptor(1, address: buffer.raw, length: 8, flags: SplitRingLayout.descriptorNext, next: 0,
                               table: table)
        driver.publish(0)
        assertPopThrows(.chainTooLong, &device, ram)
    }

    // MARK: - Index wrap-around and the used ring

    func testIndicesWrapAroundAt65536() throws {
        var (ram, driver, device) = makeQueue(size: 4)
        let buffer = ram.allocate(8)
        // Walk both sides to 65533 one chain at a time.
        for _ in 0..<65533 {
            driver.nextFreeDescriptor = 0
            driver.publish(driver.addChain([.readable(buffer, 8)]))
            let chain = try XCTUnwrap(try device.popAvailable(memory: ram.memory))
            try device.pushUsed(head: chain.head, writtenLength: 0, memory: ram.memory)
        }
        XCTAssertEqual(device.lastAvailableIndex, 65533)
        XCTAssertEqual(device.usedIndex, 65533)

        // Four chains published at once straddle 65535 -> 0: avail.idx ends at 1.
        driver.nextFreeDescriptor = 0
        for _ in 0..<4 { driver.publish(driver.addChain([.readable(buffer, 8)])) }
        XCTAssertEqual(driver.availableIndex, 1)
        var heads: [UInt16] = []
        while let chain = try device.popAvailable(memory: ram.memory) {
            heads.append(chain.head)
            try device.pushUsed(head: chain.head, writtenLength: UInt32(chain.head) + 100, memory: ram.memory)
        }
        XCTAssertEqual(heads, [0, 1, 2, 3])
        XCTAssertEqual(device.lastAvailableIndex, 1)
        XCTAssertEqual(driver.usedIndex, 1)
        // 65533 % 4 = 1: the four elements landed in slots 1, 2, 3, 0.
        XCTAssertEqual(driver.usedElement(65533).id, 0)
        XCTAssertEqual(driver.usedElement(0).id, 3)
        XCTAssertEqual(driver.usedElement(0).length, 103)
    }

    func testUndoPopReturnsTheSameChainAgain() throws {
        var (ram, driver, device) = makeQueue()
        driver.publish(driver.addChain([.writable(ram.allocate(8), 8)]))
        let first = try XCTUnwrap(try device.popAvailable(memory: ram.memory))
        device.undoPop()
        XCTAssertEqual(device.lastAvailableIndex, 0)
        XCTAssertEqual(try device.popAvailable(memory: ram.memory), first)
    }

    func testPushUsedOutsideRAMOrForABadHeadIsRejected() throws {
        let ram = TestGuestRAM()
        let driver = DriverSideQueue(ram: ram, size: 16)
        var configuration = driver.configuration
        // used.flags and used.idx inside RAM, ring[0] outside: the element must be written before idx,
        // so nothing is published (§2.7.8.2).
        configuration.usedRing = GuestPhysicalAddress(ram.memory.end - 4)
        var device = SplitVirtqueue(configuration: configuration, indirectDescriptors: false, eventIndex: false)
        XCTAssertThrowsError(try device.pushUsed(head: 0, writtenLength: 1, memory: ram.memory)) {
            XCTAssertEqual($0 as? VirtqueueError, .ringOutsideMemory)
        }
        XCTAssertEqual(ram.memory.load(UInt16.self, at: GuestPhysicalAddress(ram.memory.end - 2)), 0)
        XCTAssertEqual(device.usedIndex, 0)

        configuration.usedRing = GuestPhysicalAddress(0x10_0000_0000)
        device = SplitVirtqueue(configuration: configuration, indirectDescriptors: false, eventIndex: false)
        XCTAssertThrowsError(try device.pushUsed(head: 0, writtenLength: 1, memory: ram.memory))

        device = SplitVirtqueue(configuration: driver.configuration, indirectDescriptors: false, eventIndex: false)
        XCTAssertThrowsError(try device.pushUsed(head: 16, writtenLength: 1, memory: ram.memory)) {
            XCTAssertEqual($0 as? VirtqueueError, .descriptorIndexOutOfRange)
        }
        XCTAssertEqual(driver.usedIndex, 0)
    }

    // MARK: - Notification suppression (§2.7.7, §2.7.10)

    func testNoInterruptFlagSuppressesInterrupts() throws {
        var (ram, driver, device) = makeQueue()
        XCTAssertFalse(device.needsInterrupt(memory: ram.memory), "nothing used yet")
        try device.pushUsed(head: 0, writtenLength: 0, memory: ram.memory)
        XCTAssertTrue(device.needsInterrupt(memory: ram.memory), "flags 0: the device MUST notify")
        XCTAssertFalse(device.needsInterrupt(memory: ram.memory), "no used entry since the last call")

        driver.setAvailableFlags(SplitRingLayout.availableNoInterrupt)
        try device.pushUsed(head: 1, writtenLength: 0, memory: ram.memory)
        XCTAssertFalse(device.needsInterrupt(memory: ram.memory))
        driver.setAvailableFlags(0)
        try device.pushUsed(head: 2, writtenLength: 0, memory: ram.memory)
        XCTAssertTrue(device.needsInterrupt(memory: ram.memory))
    }

    func testEventIndexInterruptsOnlyWhenUsedEventIsWritten() throws {
        var (ram, driver, device) = makeQueue(eventIndex: true)
        // §2.7.7.2: with EVENT_IDX the flags are ignored ...
        driver.setAvailableFlags(SplitRingLayout.availableNoInterrupt)
        driver.setUsedEvent(2)
        // ... and the device notifies after writing the used entry at index used_event (the third).
        try device.pushUsed(head: 0, writtenLength: 0, memory: ram.memory)
        XCTAssertFalse(device.needsInterrupt(memory: ram.memory))
        try device.pushUsed(head: 1, writtenLength: 0, memory: ram.memory)
        XCTAssertFalse(device.needsInterrupt(memory: ram.memory))
        try device.pushUsed(head: 2, writtenLength: 0, memory: ram.memory)
        XCTAssertTrue(device.needsInterrupt(memory: ram.memory))
        try device.pushUsed(head: 3, writtenLength: 0, memory: ram.memory)
        XCTAssertFalse(device.needsInterrupt(memory: ram.memory), "used_event 2 was already passed")

        // A batch that passes used_event in the middle still notifies once.
        driver.setUsedEvent(5)
        for head in UInt16(4)..<8 { try device.pushUsed(head: head, writtenLength: 0, memory: ram.memory) }
        XCTAssertTrue(device.needsInterrupt(memory: ram.memory))

        // used_event wrapping: the driver asks for the entry at 65535 (far ahead): no interrupt now.
        driver.setUsedEvent(65535)
        try device.pushUsed(head: 8, writtenLength: 0, memory: ram.memory)
        XCTAssertFalse(device.needsInterrupt(memory: ram.memory))
    }

    func testEnableNotificationsPublishesAvailEventOnlyWithEventIndex() throws {
        var (ram, driver, device) = makeQueue(eventIndex: true)
        let buffer = ram.allocate(8)
        for _ in 0..<3 { driver.publish(driver.addChain([.readable(buffer, 8)])) }
        _ = try device.popAvailable(memory: ram.memory)
        _ = try device.popAvailable(memory: ram.memory)
        device.enableNotifications(memory: ram.memory)
        XCTAssertEqual(driver.availEvent, 2, "notify once the entry at index 2 is made available (§2.7.10)")

        var plain: SplitVirtqueue
        (_, driver, plain) = makeQueue(eventIndex: false, ram: ram)
        let availEvent = GuestPhysicalAddress(driver.configuration.usedRing.raw + 4 + 8 * 16)
        ram.memory.store(UInt16(0x1234), at: availEvent)
        driver.publish(driver.addChain([.readable(buffer, 8)]))
        _ = try plain.popAvailable(memory: ram.memory)
        plain.enableNotifications(memory: ram.memory)
        XCTAssertEqual(driver.availEvent, 0x1234, "without EVENT_IDX avail_event is not the device's to write")
    }

    func testDrainingTheQueueWithEventIndexAsksForTheNextNotification() throws {
        // Without this a Linux driver with EVENT_IDX notifies for its first request only (§2.7.10).
        var (ram, driver, device) = makeQueue(eventIndex: true)
        let buffer = ram.allocate(8)
        for _ in 0..<2 { driver.publish(driver.addChain([.readable(buffer, 8)])) }
        XCTAssertNotNil(try device.popAvailable(memory: ram.memory))
        XCTAssertNotNil(try device.popAvailable(memory: ram.memory))
        XCTAssertNil(try device.popAvailable(memory: ram.memory))
        XCTAssertEqual(driver.availEvent, 2, "the device must ask to be notified for entry 2")
        driver.publish(driver.addChain([.readable(buffer, 8)]))
        XCTAssertNotNil(try device.popAvailable(memory: ram.memory))
        XCTAssertNil(try device.popAvailable(memory: ram.memory))
        XCTAssertEqual(driver.availEvent, 3)
    }
}
