// A driver of the board's virtio-net device (virtio 1.2 §5.1), the real network behind the net device
// the VMM emulates for its guest. Queue 0 receives, queue 1 transmits (no multiqueue, no control queue).
// Frames in both directions start with the 12-byte `virtio_net_hdr` of VIRTIO_F_VERSION_1 (§5.1.6), which
// the guest's own frames already carry, so they pass through unchanged. No offloads are negotiated, so
// every received frame fits one receive buffer (§5.1.6.3.1: at least 1526 bytes without MRG_RXBUF).

public enum VirtioNetDriverConstant {
    public static let featureMAC: UInt64 = 1 << 5            // VIRTIO_NET_F_MAC
    /// struct virtio_net_hdr with num_buffers, as VERSION_1 devices always use it (§5.1.6).
    public static let headerLength = 12
    /// One Ethernet frame with a VLAN tag (1518) plus the header, rounded up.
    public static let receiveBufferSize = 2048
}

public struct VirtioNetDriver<Registers: DeviceRegisterWindow> {
    static var receiveQueue: Int { 0 }
    static var transmitQueue: Int { 1 }

    public private(set) var device: VirtioMMIODriver<Registers>
    /// The device's MAC address (config offset 0, §5.1.4), or nil when it offers none.
    public let mac: [UInt8]?
    /// Transmitted chains the device has not returned yet. Zero-copy callers must leave those frames'
    /// memory alone until this drops (see `transmit`).
    public private(set) var pendingTransmissions = 0
    var receiveBuffers: DriverBufferPool

    /// Negotiates, sets up both queues and posts `receiveBuffers` receive buffers (at most the queue size).
    public init(registers: Registers, dma: inout DMARegion, receiveBuffers: Int = 32,
                queueSize: UInt16 = 256) throws(VirtioDriverError) {
        var scratch = dma
        device = try VirtioMMIODriver(registers: registers, expecting: .network,
                                      wantedFeatures: VirtioNetDriverConstant.featureMAC,
                                      queueSizes: [queueSize, queueSize], dma: &scratch)
        if device.has(VirtioNetDriverConstant.featureMAC) {
            let configured = device
            mac = (0..<6).map { configured.configRead8(UInt64($0)) }
        } else {
            mac = nil
        }
        let posted = min(max(receiveBuffers, 1), Int(device.queues[Self.receiveQueue].size))
        guard let pool = DriverBufferPool(count: posted, bufferSize: VirtioNetDriverConstant.receiveBufferSize,
                                          queueSize: device.queues[Self.receiveQueue].size, dma: &scratch) else {
            device.reset()
            throw .outOfDMAMemory
        }
        self.receiveBuffers = pool
        // §5.1.5 step 5: fill the receive queue before the device has anywhere to put a frame.
        for index in 0..<posted {
            _ = self.receiveBuffers.lend(index, length: VirtioNetDriverConstant.receiveBufferSize,
                                         deviceWritable: true, queue: Self.receiveQueue, device: &device)
        }
        device.notify(queue: Self.receiveQueue)
        dma = scratch
    }

    /// Sends one frame (its first 12 bytes the virtio_net_hdr) and returns without waiting; chains the
    /// device finished are reclaimed first. False when the transmit queue has no room for the segments.
    /// The device reads the segments after this returns, on its own thread.
    public mutating func transmit(_ segments: [DeviceBuffer]) -> Bool {
        _ = reclaimTransmitted()
        var frame = segments
        for index in frame.indices { frame[index].deviceWritable = false }
        guard device.submit(frame, queue: Self.transmitQueue) != nil else { return false }
        pendingTransmissions += 1
        device.notify(queue: Self.transmitQueue)
        return true
    }

    /// Takes back every transmitted chain the device has finished with; returns how many.
    public mutating func reclaimTransmitted() -> Int {
        var reclaimed = 0
        while device.takeUsed(queue: Self.transmitQueue) != nil { reclaimed += 1 }
        pendingTransmissions -= reclaimed
        return reclaimed
    }

    /// Calls `body` on each received frame (header included), then posts its buffer again; returns how
    /// many frames. At most one queue's worth per call, so a device that keeps delivering cannot hold
    /// the caller here forever.
    public mutating func receive(_ body: (UnsafeRawBufferPointer) -> Void) -> Int {
        var frames = 0
        var taken = 0
        while taken < Int(device.queues[Self.receiveQueue].size),
              let used = device.takeUsed(queue: Self.receiveQueue) {
            taken += 1
            guard let index = receiveBuffers.returned(head: used.head) else { continue }
            let length = min(Int(used.length), receiveBuffers.bufferSize)
            body(UnsafeRawBufferPointer(start: receiveBuffers.bytes(index), count: length))
            frames += 1
            _ = receiveBuffers.lend(index, length: VirtioNetDriverConstant.receiveBufferSize,
                                    deviceWritable: true, queue: Self.receiveQueue, device: &device)
        }
        if taken > 0 { device.notify(queue: Self.receiveQueue) }
        return frames
    }
}
