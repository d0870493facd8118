// A driver protection domain's side (Microkit platform): servers that take what the VMM queued in the
// shared regions (DriverQueues.swift) and carry it out on the board's virtio device through the core's
// own drivers (VirtioBlockDriver, VirtioNetDriver, VirtioConsoleDriver), then queue the answers. The VMM
// is not trusted here either: every entry is checked (offset and length inside the data region, a
// count above zero, blocks inside the disk, a known code) before it turns into a device buffer, and a
// bad one gets an error response or is skipped. Each entry point returns whether to notify the VMM;
// the driver PD's `notified` calls them (the VMM's channel: serve/transmit; the device's: deviceInterrupt).

import Synchronization

// MARK: - Block

/// Serves sDDF blk requests synchronously through a `VirtioBlockDriver`. Nothing the device moves is
/// mapped in the driver: offsets below `dataSize` name the data region, which the board device reaches by
/// DMA at `dataPhysical + offset`; with a guest RAM window, offsets inside it name guest RAM (zero copy).
/// A run of queued reads (or writes) of consecutive blocks goes to the device as one request of several
/// segments.
public struct BlockDriverServer<Registers: DeviceRegisterWindow> {
    public private(set) var driver: VirtioBlockDriver<Registers>
    var requests: QueueConsumer<BlockRequestLayout>
    var responses: QueueProducer<BlockResponseLayout>
    /// The data region (request offsets from 0) and, for zero copy, guest RAM.
    let data: DMAWindow
    let guestRAM: DMAWindow?
    /// The disk in 4096-byte blocks (a partial last block is not offered).
    public let capacityBlocks: UInt64
    /// Requests answered with ERR_INVALID_PARAM (diagnostics).
    public private(set) var rejectedRequests = 0

    static var blockSize: UInt64 { MicrokitDriverLayout.blockTransferSize }
    static var sectorsPerBlock: UInt64 { blockSize / VirtioBlockDriverConstant.sectorSize }

    /// Publishes the storage information (capacity from the device, read-only, 512-byte sectors,
    /// block_size 1 = one 4096-byte unit, ready). Call in the driver PD's init, before the VMM runs.
    public init(driver: VirtioBlockDriver<Registers>, requests: SharedRegion, responses: SharedRegion,
                info: SharedRegion, dataPhysical: UInt64, dataSize: UInt64, guestRAM: DMAWindow? = nil) {
        self.driver = driver
        self.requests = QueueConsumer(region: requests, capacity: MicrokitDriverLayout.blockQueueCapacity)
        self.responses = QueueProducer(region: responses, capacity: MicrokitDriverLayout.blockQueueCapacity)
        // A region that would wrap the physical address space holds nothing usable.
        let data = DMAWindow(offset: 0, physical: dataPhysical, size: dataSize)
        self.data = data.isUsable ? data : DMAWindow(offset: 0, physical: dataPhysical, size: 0)
        self.guestRAM = guestRAM?.isUsable == true ? guestRAM : nil
        capacityBlocks = driver.capacity / Self.sectorsPerBlock
        // Cannot truncate: the queue capacity is a small constant.
        BlockStorageInfo(readOnly: driver.readOnly, sectorSize: UInt16(VirtioBlockDriverConstant.sectorSize),
                         blockSize: 1, queueDepth: UInt16(MicrokitDriverLayout.blockQueueCapacity),
                         capacity: capacityBlocks).publish(to: info)
    }

    /// A queue is broken (the VMM wrote impossible indices).
    public var broken: Bool { requests.broken || responses.broken }

    /// Serves every queued request (at most one queue's worth), each answered on the response queue;
    /// stops early while the queue is plugged or the response queue has no room for what is pending.
    /// True: notify the VMM.
    public mutating func serve() -> Bool {
        var answered = false
        var run: [BlockRequest] = []
        var buffers: [DeviceBuffer] = []
        var served = 0
        while served < requests.capacity, !requests.plugged, responses.capacity - responses.length() > run.count,
              let request = requests.dequeue() {
            served += 1
            guard let buffer = transferBuffer(request) else {
                if finish(&run, &buffers) { answered = true }
                if responses.enqueue(execute(request)) { answered = true }
                continue
            }
            // Cannot overflow: both requests were checked against the disk.
            if let last = run.last, last.code == request.code, last.blockNumber + UInt64(last.count) == request.blockNumber {
                run.append(request)
                buffers.append(buffer)
                continue
            }
            if finish(&run, &buffers) { answered = true }
            run.append(request)
            buffers.append(buffer)
        }
        if finish(&run, &buffers) { answered = true }
        return answered
    }

    /// Carries out a run of reads or writes of consecutive blocks as one device transfer and answers each.
    mutating func finish(_ run: inout [BlockRequest], _ buffers: inout [DeviceBuffer]) -> Bool {
        guard let first = run.first else { return false }
        let sector = first.blockNumber * Self.sectorsPerBlock
        let done = first.code == BlockRequestCode.read.rawValue
            ? driver.read(sector: sector, into: buffers) : driver.write(sector: sector, from: buffers)
        var answered = false
        for request in run {
            if responses.enqueue(BlockResponse(done ? .ok : .ioError, successCount: done ? request.count : 0, id: request.id)) {
                answered = true
            }
        }
        run.removeAll(keepingCapacity: true)
        buffers.removeAll(keepingCapacity: true)
        return answered
    }

    /// The device buffer of a read or write that is valid (blocks inside the disk, data inside the data
    /// region or guest RAM, no write to a read-only disk); nil for anything else.
    func transferBuffer(_ request: BlockRequest) -> DeviceBuffer? {
        let code = BlockRequestCode(rawValue: request.code)
        guard code == .read || code == .write else { return nil }
        let count = UInt64(request.count)
        // Cannot overflow: a u16 count times 4096.
        let bytes = count * Self.blockSize
        guard count > 0, request.blockNumber <= capacityBlocks, count <= capacityBlocks - request.blockNumber,
              !(code == .write && driver.readOnly) else { return nil }
        guard let physical = data.physical(offset: request.offset, length: bytes)
                ?? guestRAM?.physical(offset: request.offset, length: bytes) else { return nil }
        // Cannot truncate: bytes < 2^28.
        return DeviceBuffer(physical: physical, length: UInt32(bytes), deviceWritable: code == .read)
    }

    /// A request that is not a valid read or write: a barrier or flush, or an error response.
    mutating func execute(_ request: BlockRequest) -> BlockResponse {
        let invalid = BlockResponse(.invalidParameter, successCount: 0, id: request.id)
        switch BlockRequestCode(rawValue: request.code) {
        case .barrier:
            // Requests are served one by one to completion: everything before it is already done.
            return BlockResponse(.ok, successCount: 0, id: request.id)
        case .flush:
            return BlockResponse(driver.flush() ? .ok : .ioError, successCount: 0, id: request.id)
        case .read, .write, nil:
            rejectedRequests += 1
            return invalid
        }
    }
}

/// Memory a driver's device reaches by DMA without the driver mapping it: request offsets from `offset`
/// to `offset + size` name physical addresses from `physical` on.
public struct DMAWindow: Equatable, Sendable {
    public let offset: UInt64
    public let physical: UInt64
    public let size: UInt64

    public init(offset: UInt64, physical: UInt64, size: UInt64) {
        self.offset = offset
        self.physical = physical
        self.size = size
    }

    /// Neither end wraps the 64-bit space.
    var isUsable: Bool {
        !offset.addingReportingOverflow(size).overflow && !physical.addingReportingOverflow(size).overflow
    }

    /// The physical address of `length` bytes at request offset `at`, or nil unless all of them are inside.
    /// Cannot overflow in a usable window: physical + size does not wrap.
    func physical(offset at: UInt64, length: UInt64) -> UInt64? {
        guard at >= offset, length <= size, at - offset <= size - length else { return nil }
        return physical + (at - offset)
    }
}

// MARK: - Network

/// Moves frames between sDDF net queues and a `VirtioNetDriver`. Transmitted frames leave by DMA straight
/// from tx_data (not mapped in the driver) behind a zeroed virtio_net_hdr in the driver's own DMA
/// memory; received frames are copied, without their virtio header, into rx buffers from rx free.
///
/// The device returns transmit chains in the order they were sent (QEMU's virtio-net does;
/// VirtioNetDriver reports only how many finished), so tx buffers go back to tx free oldest first.
public struct NetDriverServer<Registers: DeviceRegisterWindow> {
    public private(set) var driver: VirtioNetDriver<Registers>
    var rxFree: QueueConsumer<NetQueueLayout>
    var rxActive: QueueProducer<NetQueueLayout>
    var txFree: QueueProducer<NetQueueLayout>
    var txActive: QueueConsumer<NetQueueLayout>
    let rxData: SharedRegion
    let txDataPhysical: UInt64
    let txDataSize: UInt64
    let header: DeviceBuffer
    /// Tx buffers the device holds, oldest first.
    var transmitting: [NetBuffer] = []
    /// Received frames dropped for want of a free rx buffer or room on rx active.
    public private(set) var droppedFrames = 0
    /// Queue entries skipped because they name bytes outside a data region (or an empty or oversized frame).
    public private(set) var rejectedEntries = 0

    static var headerLength: Int { VirtioNetDriverConstant.headerLength }
    static var bufferSize: UInt64 { MicrokitDriverLayout.netBufferSize }

    /// Takes 12 zeroed bytes of `dma` for the transmit header (throws `outOfDMAMemory` when it has none).
    /// Asks to be signalled when frames are queued to send, not when rx buffers come back. Touches no
    /// index: the VMM fills both free queues.
    public init(driver: VirtioNetDriver<Registers>, rxFree: SharedRegion, rxActive: SharedRegion,
                txFree: SharedRegion, txActive: SharedRegion, rxData: SharedRegion, txDataPhysical: UInt64,
                txDataSize: UInt64, dma: inout DMARegion) throws(VirtioDriverError) {
        guard let header = dma.allocate(size: Self.headerLength, alignment: 16) else { throw .outOfDMAMemory }
        self.header = DeviceBuffer(physical: header.physical, length: UInt32(Self.headerLength), deviceWritable: false)
        self.driver = driver
        let capacity = MicrokitDriverLayout.netQueueCapacity
        self.rxFree = QueueConsumer(region: rxFree, capacity: capacity)
        self.rxActive = QueueProducer(region: rxActive, capacity: capacity)
        self.txFree = QueueProducer(region: txFree, capacity: capacity)
        self.txActive = QueueConsumer(region: txActive, capacity: capacity)
        self.rxData = rxData
        self.txDataPhysical = txDataPhysical
        self.txDataSize = txDataPhysical.addingReportingOverflow(txDataSize).overflow ? 0 : txDataSize
        transmitting.reserveCapacity(Int(capacity))
        self.txActive.consumerSignal.request()
        self.rxFree.consumerSignal.cancel()
    }

    public var broken: Bool { rxFree.broken || rxActive.broken || txFree.broken || txActive.broken }

    /// Sends what the VMM queued on tx active (each entry checked first) and gives finished buffers back on
    /// tx free. A frame the device has no room for stays queued until its next interrupt. True: notify the VMM.
    public mutating func transmit() -> Bool {
        var returned = reclaim()
        var handled = 0
        while handled < 2 * txActive.capacity, transmitting.count < txActive.capacity {
            guard let buffer = txActive.peek() else {
                if txActive.broken { break }
                // Drained: ask for a signal, then look again (a frame queued in between brings none).
                txActive.consumerSignal.request()
                if txActive.isEmpty() { break }
                continue
            }
            handled += 1
            let length = UInt64(buffer.length)
            guard length > 0, length <= Self.bufferSize, buffer.offset <= txDataSize,
                  length <= txDataSize - buffer.offset else {
                _ = txActive.dequeue()
                rejectedEntries += 1
                continue
            }
            // Cannot overflow: offset < txDataSize, and txDataPhysical + txDataSize was checked at init.
            let frame = DeviceBuffer(physical: txDataPhysical + buffer.offset, length: UInt32(length), deviceWritable: false)
            guard driver.transmit([header, frame]) else { break }
            _ = txActive.dequeue()
            transmitting.append(buffer)
            if reconcile() { returned = true }
        }
        return returned && txFree.consumerSignal.takeRequest()
    }

    /// Acknowledges the device's interrupt, copies each received frame into a buffer from rx free and
    /// queues it on rx active (dropping it when there is none), reclaims finished transmissions and sends
    /// what waited for room. True: notify the VMM.
    public mutating func deviceInterrupt() -> Bool {
        _ = driver.device.acknowledgeInterrupt()
        // The closure fills the queues while `driver` is busy receiving: work on copies, put them back.
        var rxFree = self.rxFree
        var rxActive = self.rxActive
        let rxData = self.rxData
        var dropped = 0
        var rejected = 0
        var produced = false
        _ = driver.receive { frame in
            guard frame.count > Self.headerLength, UInt64(frame.count - Self.headerLength) <= Self.bufferSize,
                  rxActive.hasRoom() else { dropped += 1; return }
            let payload = UnsafeRawBufferPointer(rebasing: frame[Self.headerLength...])
            // Skip (and lose) free entries that name bytes outside rx_data; bounded by the queue.
            for _ in 0..<rxFree.capacity {
                var fits = false
                guard let buffer = rxFree.dequeue(if: { buffer in
                    fits = rxData.contains(offset: buffer.offset, length: UInt64(payload.count))
                    return true
                }) else {
                    rxFree.consumerSignal.request()
                    break
                }
                guard fits else { rejected += 1; continue }
                rxData.write(payload, at: buffer.offset)
                // Cannot truncate: payload.count <= bufferSize (2048).
                if rxActive.enqueue(NetBuffer(offset: buffer.offset, length: UInt16(payload.count))) { produced = true }
                return
            }
            dropped += 1
        }
        self.rxFree = rxFree
        self.rxActive = rxActive
        droppedFrames += dropped
        rejectedEntries += rejected
        var notify = produced && self.rxActive.consumerSignal.takeRequest()
        if reclaim() && txFree.consumerSignal.takeRequest() { notify = true }
        if transmit() { notify = true }
        return notify
    }

    /// Takes back finished transmissions; true when a buffer went back on tx free.
    mutating func reclaim() -> Bool {
        _ = driver.reclaimTransmitted()
        return reconcile()
    }

    /// The driver reclaims inside `transmit` too: whatever it no longer counts as pending is finished.
    mutating func reconcile() -> Bool {
        let finished = transmitting.count - driver.pendingTransmissions
        guard finished > 0 else { return false }
        for buffer in transmitting.prefix(finished) {
            _ = txFree.enqueue(NetBuffer(offset: buffer.offset, length: 0))
        }
        transmitting.removeFirst(finished)
        return true
    }
}

// MARK: - Console

/// Moves bytes between sDDF serial queues and a `VirtioConsoleDriver` (whose bounce buffers copy them).
public struct ConsoleDriverServer<Registers: DeviceRegisterWindow> {
    public private(set) var driver: VirtioConsoleDriver<Registers>
    var rx: ByteQueueProducer
    var tx: ByteQueueConsumer
    /// Input bytes dropped because the rx queue was full.
    public private(set) var droppedBytes = 0

    /// Asks to be signalled when output is queued; wants no signal when input space frees up.
    public init(driver: VirtioConsoleDriver<Registers>, rxQueue: SharedRegion, txQueue: SharedRegion,
                rxData: SharedRegion, txData: SharedRegion) {
        self.driver = driver
        let capacity = MicrokitDriverLayout.consoleDataCapacity
        rx = ByteQueueProducer(header: rxQueue, data: rxData, capacity: capacity)
        tx = ByteQueueConsumer(header: txQueue, data: txData, capacity: capacity)
        tx.queue.consumerSignal.request()
        rx.queue.producerSignal.cancel()
    }

    public var broken: Bool { rx.broken || tx.broken }

    /// Hands queued output to the device; what its bounce buffers cannot take now stays queued until its
    /// next interrupt. True: notify the VMM (it asked to hear of freed space).
    public mutating func transmit() -> Bool {
        var consumed = 0
        var tx = self.tx
        for _ in 0..<2 {
            consumed += tx.dequeue { bytes in driver.write(bytes) }
            if tx.length() > 0 { break }
            tx.queue.consumerSignal.request()
            if tx.length() == 0 { break }
        }
        self.tx = tx
        return consumed > 0 && tx.queue.producerSignal.takeRequest()
    }

    /// Acknowledges the device's interrupt, queues its input for the VMM (dropping what does not fit) and
    /// sends output that waited for bounce buffers. True: notify the VMM.
    public mutating func deviceInterrupt() -> Bool {
        _ = driver.device.acknowledgeInterrupt()
        var rx = self.rx
        var produced = 0
        var dropped = 0
        _ = driver.receive { bytes in
            let queued = rx.enqueue(bytes)
            produced += queued
            dropped += bytes.count - queued
        }
        self.rx = rx
        droppedBytes += dropped
        var notify = produced > 0 && rx.queue.consumerSignal.takeRequest()
        if transmit() { notify = true }
        return notify
    }
}
