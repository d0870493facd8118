// The VMM protection domain's side of the driver PDs (Microkit platform): clients that turn what the
// core's BlockBackend, NetworkBackend and ConsoleBackend are asked into entries of the queues shared with
// each device's driver PD (DriverQueues.swift), and bring the answers back into guest memory. They copy
// guest bytes only through `GuestMemory` and shared bytes only through `SharedRegion`, and trust nothing
// the driver writes: a driver that breaks the protocol or stops answering fails the requests, it cannot
// make the VMM read or write outside its regions. The platform provides the `DriverLink` (the channel and
// a clock); when to call `receive` is its decision too (on the driver's notification).

import Synchronization

/// What a client needs of the platform to talk to one driver PD.
public protocol DriverLink {
    /// Signals the driver PD (microkit_notify on its channel).
    mutating func notifyDriver()
    /// A monotonic clock for timeouts.
    func ticks() -> UInt64
    var ticksPerMillisecond: UInt64 { get }
}

/// Copies `count` bytes between the guest's `segments` (starting `skip` bytes into them, in chain order)
/// and `region` at `regionOffset`: into the guest when `toGuest`, out of it otherwise. False when the
/// segments hold fewer bytes or a range leaves guest RAM or the region (bytes before it are copied).
func copyGuestSegments(_ segments: [VirtqueueBuffer], skip: UInt64, count: UInt64, memory: GuestMemory,
                       region: SharedRegion, regionOffset: UInt64, toGuest: Bool) -> Bool {
    guard region.contains(offset: regionOffset, length: count) else { return false }
    var skip = skip
    var remaining = count
    var cursor = regionOffset
    for segment in segments where remaining > 0 {
        let length = UInt64(segment.length)
        if skip >= length { skip -= length; continue }
        let piece = min(length - skip, remaining)
        guard let address = segment.address.adding(skip) else { return false }
        let copied = memory.withBytes(at: address, length: piece) { guest in
            region.withBytes(offset: cursor, length: piece) { shared in
                if toGuest { guest.copyMemory(from: UnsafeRawBufferPointer(shared)) }
                else { shared.copyMemory(from: UnsafeRawBufferPointer(guest)) }
                return true
            } ?? false
        } ?? false
        guard copied else { return false }
        skip = 0
        // Cannot overflow: cursor + remaining stays inside the region, checked on entry.
        remaining -= piece
        cursor += piece
    }
    return remaining == 0
}

/// Sum of the segments' lengths; cannot overflow: fewer than 2^32 segments of under 2^32 bytes each.
func totalLength(_ segments: [VirtqueueBuffer]) -> UInt64 {
    var total: UInt64 = 0
    for segment in segments { total &+= UInt64(segment.length) }
    return total
}

// MARK: - Block

/// A guest block device served by a block driver PD (sDDF's blk protocol). The guest speaks 512-byte
/// sectors, the queue 4096-byte blocks: reads fetch the covering blocks into the data region and copy
/// the wanted bytes out; writes that do not start and end on a block boundary read the partial end
/// blocks first (read-modify-write); requests larger than the data region are split. One request is in
/// flight at a time: the driver runs above the VMM, so it has usually answered when `notifyDriver`
/// returns; otherwise the response queue is polled until `driverTimeoutMilliseconds` pass.
///
/// Zero copy: with a guest RAM window (`guestRAMOffset`), a request that starts on a block boundary and
/// whose every segment is whole blocks is carried out on the guest's own buffers, one queue entry per
/// run of guest-contiguous blocks (offsets past the data region name guest RAM, which the driver's
/// device reaches by DMA); all of them are queued before one notification. Only the other requests
/// are copied through the data region.
public struct BlockClient<Link: DriverLink> {
    var requests: QueueProducer<BlockRequestLayout>
    var responses: QueueConsumer<BlockResponseLayout>
    let info: SharedRegion
    let data: SharedRegion
    public private(set) var link: Link
    /// The driver timed out or broke the protocol (queue indices, a response to a request not in
    /// flight, an unknown status): every later request fails at once.
    public private(set) var failed = false
    var nextID: UInt32 = 1
    /// Where guest RAM starts in the offsets of this client's requests, or nil (copy everything).
    let guestRAMOffset: UInt64?

    static var blockSize: UInt64 { MicrokitDriverLayout.blockTransferSize }
    static var sectorSize: UInt64 { VirtioBlockRequest.sectorSize }

    /// The four block regions as mapped in the VMM (`info` may be read-only). Writes nothing: the driver
    /// publishes the storage information, and the queues start empty (zeroed regions). `guestRAMOffset`:
    /// the offset at which the driver takes guest RAM (the byte at the guest memory's base), or nil.
    public init(requests: SharedRegion, responses: SharedRegion, info: SharedRegion, data: SharedRegion, link: Link,
                guestRAMOffset: UInt64? = nil) {
        self.guestRAMOffset = guestRAMOffset
        self.requests = QueueProducer(region: requests, capacity: MicrokitDriverLayout.blockQueueCapacity)
        self.responses = QueueConsumer(region: responses, capacity: MicrokitDriverLayout.blockQueueCapacity)
        self.info = info
        self.data = data
        self.link = link
        failed = self.requests.broken || self.responses.broken
    }

    /// The driver published its storage information as ready.
    public var isReady: Bool { BlockStorageInfo.isReady(info) }

    /// The disk in 512-byte sectors for the guest's virtio-blk (0 while not ready, or for a capacity
    /// that does not fit 64 bits in sectors).
    public var capacitySectors: UInt64 {
        guard let storage = BlockStorageInfo.load(from: info) else { return 0 }
        let (sectors, overflow) = storage.capacity.multipliedReportingOverflow(by: Self.blockSize / Self.sectorSize)
        return overflow ? 0 : sectors
    }

    /// The driver refuses writes (true while not ready).
    public var readOnly: Bool { BlockStorageInfo.load(from: info)?.readOnly ?? true }

    /// Reads the bytes from `sector` on into `segments` (guest buffers, already checked against RAM).
    public mutating func read(sector: UInt64, into segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        transfer(sector: sector, segments: segments, memory: memory, write: false)
    }

    /// Writes `segments` to the disk from `sector` on; false at once on a read-only disk.
    public mutating func write(sector: UInt64, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        transfer(sector: sector, segments: segments, memory: memory, write: true)
    }

    /// BLK_REQ_FLUSH: everything written before is durable when it succeeds.
    public mutating func flush() -> Bool {
        guard isReady else { return false }
        return perform(.flush, offset: 0, block: 0, count: 0)
    }

    mutating func transfer(sector: UInt64, segments: [VirtqueueBuffer], memory: GuestMemory, write: Bool) -> Bool {
        guard !failed, let storage = BlockStorageInfo.load(from: info), !(write && storage.readOnly) else { return false }
        let total = totalLength(segments)
        let (start, startOverflow) = sector.multipliedReportingOverflow(by: Self.sectorSize)
        let (end, endOverflow) = start.addingReportingOverflow(total)
        let (diskBytes, diskOverflow) = storage.capacity.multipliedReportingOverflow(by: Self.blockSize)
        guard !startOverflow, !endOverflow, end <= (diskOverflow ? UInt64.max : diskBytes) else { return false }
        if let done = transferInPlace(sector: sector, segments: segments, memory: memory, write: write) { return done }
        // A request's count is a u16; the data region bounds how many blocks one request can carry.
        let chunkBlocks = min(UInt64(data.size) / Self.blockSize, UInt64(UInt16.max))
        guard chunkBlocks > 0 else { return false }
        var position = start
        while position < end {
            let block = position / Self.blockSize
            let within = position % Self.blockSize
            // Cannot overflow: within <= position, so within + (end - position) <= end.
            let span = within + (end - position)
            let blocks = min(chunkBlocks, (span + Self.blockSize - 1) / Self.blockSize)
            let chunk = min(end - position, blocks * Self.blockSize - within)
            let done = write
                ? writeChunk(block: block, blocks: blocks, within: within, chunk: chunk, segments: segments,
                             skip: position - start, memory: memory)
                : perform(.read, offset: 0, block: block, count: UInt16(blocks))
                    && copyGuestSegments(segments, skip: position - start, count: chunk, memory: memory,
                                         region: data, regionOffset: within, toGuest: true)
            guard done else { return false }
            position += chunk
        }
        return true
    }

    /// One chunk of a write: `chunk` guest bytes at byte `within` of `blocks` blocks from `block`. A partial
    /// first or last block is read into the data region first, so the write carries its other bytes back.
    mutating func writeChunk(block: UInt64, blocks: UInt64, within: UInt64, chunk: UInt64,
                             segments: [VirtqueueBuffer], skip: UInt64, memory: GuestMemory) -> Bool {
        let headPartial = within != 0
        let tailPartial = (within + chunk) % Self.blockSize != 0
        if headPartial {
            guard perform(.read, offset: 0, block: block, count: 1) else { return false }
        }
        if tailPartial && !(headPartial && blocks == 1) {
            let last = blocks - 1
            guard perform(.read, offset: last * Self.blockSize, block: block + last, count: 1) else { return false }
        }
        guard copyGuestSegments(segments, skip: skip, count: chunk, memory: memory, region: data,
                                regionOffset: within, toGuest: false) else { return false }
        // Cannot truncate: blocks <= UInt16.max (chunkBlocks).
        return perform(.write, offset: 0, block: block, count: UInt16(blocks))
    }

    /// Blocks of one zero-copy queue entry at most (1 MiB), so that a count always fits its u16.
    static var entryBlocks: UInt64 { 256 }

    /// The zero-copy path; nil when the request does not qualify (no guest RAM window, a start inside a
    /// block, a segment of part of a block), and the caller copies instead.
    mutating func transferInPlace(sector: UInt64, segments: [VirtqueueBuffer], memory: GuestMemory, write: Bool) -> Bool? {
        guard let ramOffset = guestRAMOffset, sector % (Self.blockSize / Self.sectorSize) == 0 else { return nil }
        for segment in segments where UInt64(segment.length) % Self.blockSize != 0 { return nil }
        var entries: [BlockEntry] = []
        for segment in segments {
            guard let inRAM = memory.offset(of: segment.address, length: UInt64(segment.length)) else { return false }
            // Cannot overflow: guest RAM offsets are far below 2^63, and so is the window's start.
            var offset = ramOffset + inRAM
            var blocks = UInt64(segment.length) / Self.blockSize
            while blocks > 0 {
                // Grow the last entry while it ends where this segment goes on, else start one.
                let taken: UInt64
                if let last = entries.last, last.offset + UInt64(last.count) * Self.blockSize == offset,
                   UInt64(last.count) < Self.entryBlocks {
                    taken = min(blocks, Self.entryBlocks - UInt64(last.count))
                    entries[entries.count - 1].count += UInt16(taken)
                } else {
                    taken = min(blocks, Self.entryBlocks)
                    entries.append(BlockEntry(offset: offset, count: UInt16(taken)))
                }
                offset += taken * Self.blockSize
                blocks -= taken
            }
        }
        var block = sector / (Self.blockSize / Self.sectorSize)
        var index = 0
        while index < entries.count {
            let window = entries[index..<min(entries.count, index + requests.capacity)]
            guard performBatch(write ? .write : .read, window, firstBlock: block) else { return false }
            for entry in window { block += UInt64(entry.count) }
            index += window.count
        }
        return true
    }

    /// Queues one request, notifies the driver and waits for the response with its id.
    mutating func perform(_ code: BlockRequestCode, offset: UInt64, block: UInt64, count: UInt16) -> Bool {
        performBatch(code, [BlockEntry(offset: offset, count: count)][...], firstBlock: block)
    }

    /// Queues one request per entry (consecutive blocks from `firstBlock`, consecutive ids), notifies the
    /// driver once and waits until each id has been answered once. True when every one succeeded whole.
    mutating func performBatch(_ code: BlockRequestCode, _ entries: ArraySlice<BlockEntry>, firstBlock: UInt64) -> Bool {
        guard !failed else { return false }
        let firstID = nextID
        var block = firstBlock
        for entry in entries {
            // The queue is empty between batches and a batch is at most its capacity: a full queue means
            // the driver stopped taking requests.
            guard requests.enqueue(BlockRequest(code, offset: entry.offset, blockNumber: block, count: entry.count,
                                                id: nextID)) else {
                failed = true
                return false
            }
            nextID &+= 1
            block += UInt64(entry.count)
        }
        link.notifyDriver()
        let start = link.ticks()
        let (limit, overflow) = MicrokitDriverLayout.driverTimeoutMilliseconds
            .multipliedReportingOverflow(by: link.ticksPerMillisecond)
        let timeout = overflow ? UInt64.max : limit
        var answered = [Bool](repeating: false, count: entries.count)
        var remaining = entries.count
        var succeeded = true
        while remaining > 0 {
            if let response = responses.dequeue() {
                // Only this batch's ids are in flight, each answered once.
                let index = Int(response.id &- firstID)
                guard index < entries.count, !answered[index], let status = BlockResponseStatus(rawValue: response.status),
                      response.successCount <= entries[entries.startIndex + index].count else {
                    failed = true
                    return false
                }
                answered[index] = true
                remaining -= 1
                if status != .ok || response.successCount != entries[entries.startIndex + index].count { succeeded = false }
                continue
            }
            if responses.broken { failed = true; return false }
            if link.ticks() &- start >= timeout { failed = true; return false }
        }
        return succeeded
    }
}

/// One block queue entry of a batch: where its data is and how many blocks.
struct BlockEntry {
    var offset: UInt64
    var count: UInt16
}

// MARK: - Network

/// A guest network device served by a net driver PD (sDDF's net protocol): frames leave through the tx
/// queues, the driver copies received ones into rx buffers. Every buffer of both directions belongs to
/// the VMM (offsets into rx_data and tx_data); the driver lends them back through the free queues.
public struct NetClient<Link: DriverLink> {
    var rxFree: QueueProducer<NetQueueLayout>
    var rxActive: QueueConsumer<NetQueueLayout>
    var txFree: QueueConsumer<NetQueueLayout>
    var txActive: QueueProducer<NetQueueLayout>
    let rxData: SharedRegion
    let txData: SharedRegion
    public private(set) var link: Link

    static var headerLength: Int { VirtioNetDriverConstant.headerLength }
    static var bufferSize: UInt64 { MicrokitDriverLayout.netBufferSize }

    /// Fills both free queues with every buffer (capacity × netBufferSize, or fewer if a data region is
    /// smaller), asks to be signalled when frames arrive on rx active, and not when tx buffers come
    /// back. Call once, after the driver PD's init (it runs first: higher priority) and before the guest runs.
    public init(rxFree: SharedRegion, rxActive: SharedRegion, txFree: SharedRegion, txActive: SharedRegion,
                rxData: SharedRegion, txData: SharedRegion, link: Link) {
        let capacity = MicrokitDriverLayout.netQueueCapacity
        self.rxFree = QueueProducer(region: rxFree, capacity: capacity)
        self.rxActive = QueueConsumer(region: rxActive, capacity: capacity)
        self.txFree = QueueConsumer(region: txFree, capacity: capacity)
        self.txActive = QueueProducer(region: txActive, capacity: capacity)
        self.rxData = rxData
        self.txData = txData
        self.link = link
        for index in 0..<min(UInt64(capacity), UInt64(rxData.size) / Self.bufferSize) {
            _ = self.rxFree.enqueue(NetBuffer(offset: index * Self.bufferSize, length: 0))
        }
        // The VMM produces into tx free this once, as sDDF's clients do (net_buffers_init); afterwards
        // only the driver does.
        var txFiller = QueueProducer<NetQueueLayout>(region: txFree, capacity: capacity)
        for index in 0..<min(UInt64(capacity), UInt64(txData.size) / Self.bufferSize) {
            _ = txFiller.enqueue(NetBuffer(offset: index * Self.bufferSize, length: 0))
        }
        self.rxActive.consumerSignal.request()
        self.txFree.consumerSignal.cancel()
    }

    /// A queue is broken (the driver wrote impossible indices or a buffer that is not one of ours).
    public var broken: Bool { rxFree.broken || rxActive.broken || txFree.broken || txActive.broken }

    /// A buffer the driver handed back is one of ours: a whole buffer inside `region`, at a buffer boundary.
    static func isOurs(_ buffer: NetBuffer, in region: SharedRegion) -> Bool {
        buffer.offset % bufferSize == 0 && region.contains(offset: buffer.offset, length: bufferSize)
    }

    /// Sends one frame: `segments` (the readable part of the guest's chain) start with the 12-byte
    /// virtio_net_hdr, which is dropped; the Ethernet frame is copied into a free tx buffer and queued on
    /// tx active, and the driver notified if it asked. False (frame dropped) when there is no free
    /// buffer, the frame is empty or larger than a buffer, or a queue is broken.
    public mutating func transmit(from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        let total = totalLength(segments)
        let header = UInt64(Self.headerLength)
        guard total > header, total - header <= Self.bufferSize, txActive.hasRoom() else { return false }
        let frameLength = total - header
        let txData = self.txData
        var foreign = false
        let taken = txFree.dequeue(if: { buffer in
            guard Self.isOurs(buffer, in: txData) else { foreign = true; return false }
            return copyGuestSegments(segments, skip: header, count: frameLength, memory: memory, region: txData,
                                     regionOffset: buffer.offset, toGuest: false)
        })
        if foreign { txFree.markBroken() }
        guard let buffer = taken else { return false }
        // Cannot truncate: frameLength <= bufferSize (2048).
        guard txActive.enqueue(NetBuffer(offset: buffer.offset, length: UInt16(frameLength))) else { return false }
        if txActive.consumerSignal.takeRequest() { link.notifyDriver() }
        return true
    }

    /// Hands each frame on rx active to `deliver`, with a zeroed 12-byte virtio_net_hdr in front (what
    /// `VirtualMachine.networkReceived` expects), from a private copy; `deliver` returns whether the guest
    /// took it (a frame it did not take is dropped, as a NIC would). Each buffer goes back to rx free, and
    /// the driver is notified if it asked for free buffers. Returns the frames delivered. Asks to be
    /// signalled again once rx active is empty; call on the driver's notification.
    public mutating func receive(_ deliver: (UnsafeRawBufferPointer) -> Bool) -> Int {
        let header = Self.headerLength
        let rxData = self.rxData
        var delivered = 0
        var returned = false
        withUnsafeTemporaryAllocation(byteCount: header + Int(Self.bufferSize), alignment: 16) { scratch in
            scratch.initializeMemory(as: UInt8.self, repeating: 0)
            // At most two queues' worth per call: a driver that keeps producing cannot hold the VMM here.
            var handled = 0
            while handled < 2 * rxActive.capacity {
                var foreign = false
                var length = 0
                let buffer = rxActive.dequeue(if: { buffer in
                    guard Self.isOurs(buffer, in: rxData), UInt64(buffer.length) <= Self.bufferSize else {
                        foreign = true
                        return false
                    }
                    length = Int(buffer.length)
                    return rxData.read(at: buffer.offset,
                                       into: UnsafeMutableRawBufferPointer(rebasing: scratch[header..<header + length]))
                })
                if foreign { rxActive.markBroken() }
                guard let buffer else {
                    if rxActive.broken { break }
                    // net_request_signal_active, then look again: a frame queued in between brings no signal.
                    rxActive.consumerSignal.request()
                    if rxActive.isEmpty() { break }
                    continue
                }
                handled += 1
                if length > 0, deliver(UnsafeRawBufferPointer(rebasing: scratch[0..<header + length])) { delivered += 1 }
                guard rxFree.enqueue(NetBuffer(offset: buffer.offset, length: 0)) else { break }
                returned = true
            }
        }
        if returned && rxFree.consumerSignal.takeRequest() { link.notifyDriver() }
        return delivered
    }
}

// MARK: - Console

/// A guest console served by a console driver PD (sDDF's serial protocol): one byte queue per direction.
public struct ConsoleClient<Link: DriverLink> {
    var rx: ByteQueueConsumer
    var tx: ByteQueueProducer
    public private(set) var link: Link

    /// Asks to be signalled when input arrives; wants no signal when output space frees up.
    public init(rxQueue: SharedRegion, txQueue: SharedRegion, rxData: SharedRegion, txData: SharedRegion, link: Link) {
        let capacity = MicrokitDriverLayout.consoleDataCapacity
        rx = ByteQueueConsumer(header: rxQueue, data: rxData, capacity: capacity)
        tx = ByteQueueProducer(header: txQueue, data: txData, capacity: capacity)
        self.link = link
        rx.queue.consumerSignal.request()
        tx.queue.producerSignal.cancel()
    }

    public var broken: Bool { rx.broken || tx.broken }

    /// Queues as many of `bytes` as fit for the driver (the rest is the caller's to drop or retry) and
    /// notifies the driver if it asked. Returns the bytes queued.
    public mutating func write(_ bytes: UnsafeRawBufferPointer) -> Int {
        let queued = tx.enqueue(bytes)
        if queued > 0 && tx.queue.consumerSignal.takeRequest() { link.notifyDriver() }
        return queued
    }

    /// Hands queued input to `deliver`, which returns how many bytes it took; bytes not taken stay queued
    /// (call again when the guest has room). Returns the bytes taken. Asks to be signalled when more arrives.
    public mutating func receive(_ deliver: (UnsafeRawBufferPointer) -> Int) -> Int {
        var taken = 0
        // Two rounds: the second catches input that arrived while the signal was being re-armed.
        for _ in 0..<2 {
            let before = rx.length()
            let took = rx.dequeue(deliver)
            taken += took
            rx.queue.consumerSignal.request()
            if took < before || rx.length() == 0 { break }
        }
        if taken > 0 && rx.queue.producerSignal.takeRequest() { link.notifyDriver() }
        return taken
    }
}
