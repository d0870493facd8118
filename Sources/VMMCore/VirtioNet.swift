// The virtio network device model (virtio 1.2 §5.1), one queue pair and no offloads: its feature bits,
// its configuration space (MAC address, link status), frames the guest transmits (handed whole, header
// first, to a `NetworkBackend`) and frames the platform received (written into the guest's receive
// chains). Frames carry the VERSION_1 `virtio_net_hdr` of 12 bytes; with no offload negotiated its only
// field the device sets is num_buffers. The rings are the virtqueue's business (Virtqueue.swift), where
// frames come from and go to is the backend's.

/// What became of a frame offered to the guest's receive queue.
public enum NetDelivery: Equatable {
    /// Written into the next receive chain, which is now used.
    case delivered
    /// The driver has posted no receive buffer: nothing consumed; the caller drops or retries later.
    case noBuffer
    /// Not deliverable: larger than the next receive chain (that chain goes back used, empty) or
    /// shorter than the header (no chain consumed).
    case dropped
}

public struct VirtioNet: VirtioDeviceModel {
    /// Feature bits of §5.1.3.
    public enum Feature {
        public static let mac: UInt64 = 1 << 5        // VIRTIO_NET_F_MAC
        public static let status: UInt64 = 1 << 16    // VIRTIO_NET_F_STATUS
    }

    public static let receiveQueue = 0
    public static let transmitQueue = 1
    /// `struct virtio_net_hdr` with VIRTIO_F_VERSION_1 (§5.1.6): flags, gso_type, hdr_len, gso_size,
    /// csum_start, csum_offset, num_buffers.
    public static let headerSize: UInt64 = 12
    static let numberOfBuffersOffset: UInt64 = 10
    /// VIRTIO_NET_S_LINK_UP (§5.1.4).
    static let linkUp: UInt16 = 1
    /// The largest frame we pass on: header + Ethernet header with a VLAN tag + the largest MTU Linux
    /// allows (ETH_MAX_MTU). Without GSO no honest driver comes near it (§5.1.6.2); a chain that does is
    /// refused before a backend has to size a copy by it.
    public static let maximumTransmitLength: UInt64 = headerSize + 18 + 65_535

    public let device: Int
    /// The MAC address offered in the configuration space (6 bytes).
    public let mac: [UInt8]
    public private(set) var negotiatedFeatures: UInt64 = 0

    public var deviceType: VirtioDeviceType { .network }
    public var deviceFeatures: UInt64 { Feature.mac | Feature.status }
    public var queueCount: Int { 2 }
    public var maximumQueueSize: UInt16 { 256 }

    public init(device: Int, mac: [UInt8]) {
        precondition(mac.count == 6, "virtio-net MAC address is not 6 bytes")
        self.device = device
        self.mac = mac
    }

    // MARK: Configuration space (§5.1.4)

    /// mac[6] @0, status u16 @6. max_virtqueue_pairs, mtu and the rest need MQ, MTU, SPEED_DUPLEX…,
    /// none of which is offered, so the space ends at 8.
    static let configurationSize = 8

    public func configurationRead(offset: UInt64, width: Int) -> UInt32? {
        virtioConfigurationRead(offset: offset, width: width, size: Self.configurationSize) { i in
            switch i {
            case 0..<6: return mac[i]
            case 6: return UInt8(truncatingIfNeeded: Self.linkUp)
            default: return UInt8(truncatingIfNeeded: Self.linkUp >> 8)
            }
        }
    }

    /// §5.1.4: mac is driver-writable only for legacy devices; status is read-only. Writes are ignored.
    public mutating func configurationWrite(offset: UInt64, width: Int, value: UInt32) {}

    public mutating func negotiate(features: UInt64) -> Bool {
        guard virtioAcceptsFeatures(features, offered: deviceFeatures) else { return false }
        negotiatedFeatures = features
        return true
    }

    public mutating func reset() {
        negotiatedFeatures = 0
    }

    // MARK: Transmit (§5.1.6.2)

    /// Sends every frame the driver queued on the transmit queue; returns true if any used buffer was
    /// added. Each chain's readable part (header + frame) goes out as one frame; a chain shorter than
    /// the header or longer than `maximumTransmitLength` is dropped. Either way the chain goes back used
    /// with length 0: the device writes nothing into a transmit buffer.
    public mutating func processTransmit<N: NetworkBackend>(_ queue: inout SplitVirtqueue, memory: GuestMemory,
                                                            backend: inout N) throws(VirtqueueError) -> Bool {
        var addedUsed = false
        while let chain = try queue.popAvailable(memory: memory) {
            let length = chain.readableLength
            if length >= Self.headerSize && length <= Self.maximumTransmitLength {
                // A backend that cannot send (link down, queue full) loses the frame, as a NIC would.
                _ = backend.networkTransmit(device: device, from: chain.readableSegments(offset: 0, length: length),
                                            memory: memory)
            }
            try queue.pushUsed(head: chain.head, writtenLength: 0, memory: memory)
            addedUsed = true
        }
        return addedUsed
    }

    // MARK: Receive (§5.1.6.3, §5.1.6.4)

    /// Puts one received frame (it begins with a 12-byte virtio_net_hdr) into the next receive chain.
    public mutating func deliver(frame: UnsafeRawBufferPointer, to queue: inout SplitVirtqueue,
                                 memory: GuestMemory) throws(VirtqueueError) -> NetDelivery {
        guard UInt64(frame.count) >= Self.headerSize else { return .dropped }
        guard let chain = try queue.popAvailable(memory: memory) else { return .noBuffer }
        // §5.1.6.4.1: without VIRTIO_NET_F_MRG_RXBUF a frame must fit one chain. One that does not is
        // dropped, and the chain returned empty so the driver reposts it rather than losing it for good
        // (Linux counts a short receive as a length error and refills).
        guard UInt64(frame.count) <= chain.writableLength else {
            try queue.pushUsed(head: chain.head, writtenLength: 0, memory: memory)
            return .dropped
        }
        let written = chain.write(to: memory, offset: 0, from: frame)
        // §5.1.6.4.1: "If VIRTIO_NET_F_MRG_RXBUF has not been negotiated, the device MUST set
        // num_buffers to 1." (The backend's header may say anything there.)
        var oneBuffer = UInt16(1).littleEndian
        _ = withUnsafeBytes(of: &oneBuffer) { chain.write(to: memory, offset: Self.numberOfBuffersOffset, from: $0) }
        // Cannot truncate: written <= frame.count <= writableLength, which the virtqueue caps at 4 GiB.
        try queue.pushUsed(head: chain.head, writtenLength: UInt32(clamping: written), memory: memory)
        return .delivered
    }
}
