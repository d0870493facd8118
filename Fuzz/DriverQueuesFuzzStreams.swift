// The "driverqueues" fuzz target, continued (DriverQueuesFuzz.swift has the hostile driver, guest RAM and
// the operation script): the net, console and raw-queue operations, each checking what the VMM's side
// hands on against the regions it came from.

// MARK: - Net

/// The driver queues up to 8 frames on rx active: each in one of the rx buffers (or one past them, or at
/// any offset), of a fuzzed length, with some input bytes as its start.
func queueFrames(_ driver: Driver) {
    let active = driver[.rxActive]
    let data = driver[.netRxData]
    let count = driver.input.u8() % 9
    for _ in 0..<count {
        let selector = driver.input.u8()
        let offset = selector & 0x80 != 0 ? driver.input.u64()
            : UInt64(Int(selector) % (data.size / bufferSize + 1) * bufferSize)
        let length = driver.input.u16() % 2100
        let bytes = driver.input.take(Int(driver.input.u8()))
        if offset < UInt64(data.size) {
            let room = UInt64(data.size) - offset
            data.write(UnsafeRawBufferPointer(rebasing: bytes[0..<Int(min(UInt64(bytes.count), room))]), at: offset)
        }
        guard let tail = active.load(UInt16.self, at: NetQueueLayout.tailOffset) else { return }
        let slot = NetQueueLayout.entriesOffset + Int(tail % UInt16(netQueueCapacity)) * NetQueueLayout.entrySize
        _ = NetQueueLayout.store(NetBuffer(offset: offset, length: length), to: active, at: slot)
        active.store(tail &+ 1, at: NetQueueLayout.tailOffset)
    }
}

/// NetClient.receive: the frames delivered are, in order, a prefix of the entries on rx active up to the
/// first that is not a whole rx buffer of the VMM's, skipping empty ones, each behind a zeroed header.
func receiveFrames(_ driver: Driver, _ client: inout NetClient<FuzzDriverLink>) {
    let active = driver[.rxActive]
    let data = driver[.netRxData]
    var expected: [NetBuffer] = []
    if let tail = active.load(UInt16.self, at: NetQueueLayout.tailOffset),
       let head = active.load(UInt16.self, at: NetQueueLayout.headOffset), Int(tail &- head) <= netQueueCapacity {
        for index in 0..<(tail &- head) {
            let slot = NetQueueLayout.entriesOffset + Int((head &+ index) % UInt16(netQueueCapacity)) * NetQueueLayout.entrySize
            guard let entry = NetQueueLayout.load(from: active, at: slot), entry.offset % UInt64(bufferSize) == 0,
                  data.contains(offset: entry.offset, length: UInt64(bufferSize)), entry.length <= UInt16(bufferSize)
            else { break }
            if entry.length > 0 { expected.append(entry) }
        }
    }
    var next = 0
    let header = VirtioNetDriverConstant.headerLength
    let delivered = client.receive { frame in
        fuzzCheck(next < expected.count, "delivered a frame rx active did not hold")
        let entry = expected[next]
        next += 1
        fuzzCheck(frame.count == header + Int(entry.length), "delivered frame of the wrong length")
        fuzzCheck(frame[0..<header].allSatisfy { $0 == 0 }, "delivered frame's virtio_net_hdr is not zeroed")
        let same = data.withBytes(offset: entry.offset, length: UInt64(entry.length)) { bytes in
            frame[header...].elementsEqual(bytes)
        }
        fuzzCheck(same == true, "delivered frame differs from its rx buffer")
        return driver.input.u8() & 1 == 0
    }
    fuzzCheck(delivered <= next, "receive counted more frames than it delivered")
}

/// NetClient.transmit: a frame it reports sent is on tx active in a whole tx buffer, its exact bytes.
func transmit(_ driver: Driver, _ client: inout NetClient<FuzzDriverLink>, memory: GuestMemory) {
    let given = segments(&driver.input, maximum: 0x900, writable: false)
    let notifications = driver.notifications
    let sent = client.transmit(from: given, memory: memory)
    GuestRAM.check(writable: [], "a transmit changed guest RAM")
    // A driver that ran on the notification may have rewritten tx active already.
    guard sent, driver.notifications == notifications else { return }
    let active = driver[.txActive]
    let data = driver[.netTxData]
    let header = VirtioNetDriverConstant.headerLength
    let total = given.reduce(0) { $0 + Int($1.length) }
    guard let tail = active.load(UInt16.self, at: NetQueueLayout.tailOffset),
          let entry = NetQueueLayout.load(from: active, at: NetQueueLayout.entriesOffset
                                          + Int((tail &- 1) % UInt16(netQueueCapacity)) * NetQueueLayout.entrySize) else {
        fuzzCheck(false, "transmit reported a frame it did not queue")
        return
    }
    fuzzCheck(entry.offset % UInt64(bufferSize) == 0 && data.contains(offset: entry.offset, length: UInt64(bufferSize)),
              "transmitted frame is not in a whole tx buffer")
    fuzzCheck(Int(entry.length) == total - header, "transmitted frame has the wrong length")
    let frame = GuestRAM.gather(given, skip: header, count: total - header, memory: memory)
    let same = data.withBytes(offset: entry.offset, length: UInt64(entry.length)) { $0.elementsEqual(frame) }
    fuzzCheck(same == true, "transmitted frame differs from the guest's")
}

// MARK: - Console

/// How many bytes of a piece a consumer takes: all of it on 0 (and when the input is exhausted),
/// otherwise a signed multiple of 64 (negative and past the piece too).
func taking(_ driver: Driver, _ piece: UnsafeRawBufferPointer) -> Int {
    let choice = driver.input.u8()
    return choice == 0 ? piece.count : Int(Int8(bitPattern: choice)) * 64
}

/// A piece a byte-queue consumer was handed lies inside the data ring, where head (or the wrap) says.
func checkPiece(_ piece: UnsafeRawBufferPointer, header: SharedRegion, data: SharedRegion, capacity: Int) {
    guard let start = piece.baseAddress else {
        fuzzCheck(false, "empty console piece")
        return
    }
    let offset = UnsafeRawPointer(start) - UnsafeRawPointer(data.base)
    fuzzCheck(offset >= 0 && piece.count > 0 && offset + piece.count <= min(capacity, data.size),
              "byte queue piece outside its data ring")
    let head = header.load(UInt32.self, at: 4) ?? 0
    let tail = header.load(UInt32.self, at: 0) ?? 0
    fuzzCheck(offset == 0 || offset == Int(head % UInt32(capacity)), "byte queue piece not at head")
    fuzzCheck(piece.count <= Int(tail &- head), "byte queue piece longer than what is queued")
}

/// The driver queues console input (its own producer over the shared rx queue), then
/// ConsoleClient.receive hands it over.
func consoleReceive(_ driver: Driver, _ client: inout ConsoleClient<FuzzDriverLink>) {
    let header = driver[.consoleRxQueue]
    let data = driver[.consoleRxData]
    var producer = ByteQueueProducer(header: header, data: data, capacity: MicrokitDriverLayout.consoleDataCapacity)
    _ = producer.enqueue(driver.input.take(Int(driver.input.u16() % 5000)))
    let taken = client.receive { piece in
        checkPiece(piece, header: header, data: data, capacity: consoleCapacity)
        return taking(driver, piece)
    }
    fuzzCheck(taken >= 0 && taken <= 2 * consoleCapacity, "console receive took more than two rings")
}

// MARK: - Raw queue ends

/// Operations on both ends of one queue over any region, at any capacity, as either side would make them.
func rawQueue<Layout: SharedQueueLayout>(_: Layout.Type, _ region: SharedRegion, _ driver: Driver) {
    let capacity = queueCapacity(&driver.input)
    var consumer = QueueConsumer<Layout>(region: region, capacity: capacity)
    var producer = QueueProducer<Layout>(region: region, capacity: capacity)
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: Layout.entrySize, alignment: 16)
    defer { scratch.deallocate() }
    func index(_ offset: Int) -> Layout.Index? { region.load(Layout.Index.self, at: offset) }
    for _ in 0..<Int(driver.input.u8() % 16) {
        let head = index(Layout.headOffset)
        let tail = index(Layout.tailOffset)
        switch driver.input.u8() % 6 {
        case 0:
            if consumer.dequeue() != nil {
                fuzzCheck(head.map { $0 &+ 1 } == index(Layout.headOffset), "dequeue did not move head by one")
            }
        case 1:
            fuzzCheck(consumer.dequeue(if: { _ in false }) == nil, "a refused entry was dequeued")
            fuzzCheck(head == index(Layout.headOffset), "a refused entry moved head")
        case 2:
            _ = consumer.peek()
            fuzzCheck(head == index(Layout.headOffset), "peek moved head")
        case 3:
            // An entry decoded from input bytes.
            let bytes = driver.input.take(Layout.entrySize)
            scratch.initializeMemory(as: UInt8.self, repeating: 0, count: Layout.entrySize)
            if let source = bytes.baseAddress { scratch.copyMemory(from: source, byteCount: bytes.count) }
            guard let entry = Layout.load(from: SharedRegion(base: scratch, size: Layout.entrySize), at: 0) else {
                fuzzCheck(false, "an entry-sized region did not decode")
                return
            }
            if producer.enqueue(entry) {
                fuzzCheck(tail.map { $0 &+ 1 } == index(Layout.tailOffset), "enqueue did not move tail by one")
            }
        case 4:
            let queued = consumer.length()
            fuzzCheck(queued >= 0 && queued <= Int(capacity), "consumer length outside its capacity")
            fuzzCheck(consumer.isEmpty() == (consumer.length() == 0), "isEmpty disagrees with length")
            let produced = producer.length()
            fuzzCheck(produced >= 0 && produced <= Int(capacity), "producer length outside its capacity")
            if producer.hasRoom() { fuzzCheck(producer.length() < Int(capacity), "room in a full queue") }
        default:
            // The signalling flag and plug of each layout, read and set from either side.
            let flag = SignalFlag(region: region, offset: Int(driver.input.u8() % 16))
            switch driver.input.u8() % 4 {
            case 0: flag.request()
            case 1: flag.cancel()
            case 2: if flag.takeRequest() { fuzzCheck(!flag.isRequested, "takeRequest left the request") }
            default:
                let plug = QueueProducer<BlockRequestLayout>(region: region, capacity: capacity)
                plug.setPlugged(driver.input.bool())
                _ = QueueConsumer<BlockRequestLayout>(region: region, capacity: capacity).plugged
            }
        }
        if consumer.broken { fuzzCheck(consumer.length() == 0 && consumer.peek() == nil, "a broken queue holds entries") }
    }
}

/// Operations on both ends of a byte queue over any two regions (the same one too), at any capacity.
func rawByteQueue(_ driver: Driver) {
    let header = driver.region(driver.input.u8())
    let data = driver.region(driver.input.u8())
    let capacity = queueCapacity(&driver.input)
    var consumer = ByteQueueConsumer(header: header, data: data, capacity: capacity)
    var producer = ByteQueueProducer(header: header, data: data, capacity: capacity)
    for _ in 0..<Int(driver.input.u8() % 16) {
        let head = header.load(UInt32.self, at: 4)
        let tail = header.load(UInt32.self, at: 0)
        switch driver.input.u8() % 4 {
        case 0:
            var handed = 0
            let taken = consumer.dequeue { piece in
                checkPiece(piece, header: header, data: data, capacity: Int(capacity))
                handed += piece.count
                return taking(driver, piece)
            }
            fuzzCheck(taken >= 0 && taken <= handed && taken <= Int(capacity), "dequeue took more than it was handed")
            if taken > 0 { fuzzCheck(head.map { $0 &+ UInt32(taken) } == header.load(UInt32.self, at: 4), "dequeue moved head wrongly") }
        case 1:
            let bytes = driver.input.take(Int(driver.input.u16() % 5000))
            let queued = producer.enqueue(bytes)
            fuzzCheck(queued >= 0 && queued <= bytes.count && queued <= Int(capacity), "enqueue queued more than it had")
            // The header may lie inside the data ring it just wrote (one region for both): tail last.
            if queued > 0 { fuzzCheck(tail.map { $0 &+ UInt32(queued) } == header.load(UInt32.self, at: 0), "enqueue moved tail wrongly") }
        case 2:
            let free = producer.freeSpace()
            let queued = consumer.length()
            fuzzCheck(free >= 0 && free <= Int(capacity) && queued >= 0 && queued <= Int(capacity),
                      "byte queue counts outside its capacity")
        default:
            let flag = driver.input.bool() ? producer.queue.consumerSignal : consumer.queue.producerSignal
            if driver.input.bool() { flag.request() } else { _ = flag.takeRequest() }
        }
    }
}
