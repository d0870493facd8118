// The virtio network device model (virtio 1.2 §5.1), one queue pair: its feature bits, its configuration
// space (MAC address, link status), frames the guest transmits (handed whole, header first, to a
// `NetworkBackend`) and frames the platform received (written into the guest's receive chains). Frames
// carry the VERSION_1 `virtio_net_hdr` of 12 bytes (`VirtioNetHeader`). A device on a board NIC offers no
// offloads (the board's device is driven without them). A device on one of the VMM's own networks, whose
// frames never touch a wire, offers checksum and TCP segmentation offload both ways (`offloads`): a
// guest then hands over 64 KiB TCP frames with their checksum left to do, and takes such frames in; a
// receiver that did not negotiate them gets them completed or cut up in software (VirtualMachine's
// `networkReceived`, NetworkSegmentation.swift). The rings are the virtqueue's business (Virtqueue.swift),
// where frames come from and go to is the backend's.

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
        public static let checksum: UInt64 = 1 << 0        // VIRTIO_NET_F_CSUM: the driver may send partial checksums
        public static let guestChecksum: UInt64 = 1 << 1   // VIRTIO_NET_F_GUEST_CSUM: ... and take them
        public static let guestTSO4: UInt64 = 1 << 7       // VIRTIO_NET_F_GUEST_TSO4: takes TCP/IPv4 GSO frames
        public static let guestTSO6: UInt64 = 1 << 8       // VIRTIO_NET_F_GUEST_TSO6
        public static let hostTSO4: UInt64 = 1 << 11       // VIRTIO_NET_F_HOST_TSO4: sends them
        public static let hostTSO6: UInt64 = 1 << 12       // VIRTIO_NET_F_HOST_TSO6
        public static let mac: UInt64 = 1 << 5             // VIRTIO_NET_F_MAC
        public static let status: UInt64 = 1 << 16         // VIRTIO_NET_F_STATUS
        /// What a device on a VMM network offers besides MAC and STATUS (§5.1.3.1: each TSO bit with
        /// the checksum bit it depends on).
        public static let offloads: UInt64 = checksum | guestChecksum | guestTSO4 | guestTSO6 | hostTSO4 | hostTSO6
    }

    public static let receiveQueue = 0
    public static let transmitQueue = 1
    /// `struct virtio_net_hdr` with VIRTIO_F_VERSION_1 (§5.1.6): flags, gso_type, hdr_len, gso_size,
    /// csum_start, csum_offset, num_buffers.
    public static let headerSize: UInt64 = 12
    /// VIRTIO_NET_S_LINK_UP (§5.1.4).
    static let linkUp: UInt16 = 1
    /// The largest frame we pass on: header + Ethernet header with a VLAN tag + the largest MTU Linux
    /// allows (ETH_MAX_MTU). Without GSO no honest driver comes near it (§5.1.6.2); a chain that does is
    /// refused before a backend has to size a copy by it.
    public static let maximumTransmitLength: UInt64 = headerSize + 18 + 65_535

    public let device: Int
    /// The MAC address offered in the configuration space (6 bytes).
    public let mac: [UInt8]
    /// Checksum and segmentation offloads are offered (a device on one of the VMM's own networks).
    public let offloads: Bool
    public private(set) var negotiatedFeatures: UInt64 = 0

    public var deviceType: VirtioDeviceType { .network }
    public var deviceFeatures: UInt64 { Feature.mac | Feature.status | (offloads ? Feature.offloads : 0) }
    public var queueCount: Int { 2 }
    public var maximumQueueSize: UInt16 { 256 }

    public init(device: Int, mac: [UInt8], offloads: Bool = false) {
        precondition(mac.count == 6, "virtio-net MAC address is not 6 bytes")
        self.device = device
        self.mac = mac
        self.offloads = offloads
    }

    /// The driver takes frames with this header as they are: a partial checksum only with GUEST_CSUM,
    /// a TCP GSO frame only with the GUEST_TSO bit of its IP version (§5.1.6.4: the device must not
    /// send what was not negotiated).
    public func accepts(_ header: VirtioNetHeader) -> Bool {
        if header.needsChecksum && negotiatedFeatures & Feature.guestChecksum == 0 { return false }
        switch header.gsoType {
        case VirtioNetHeader.gsoNone: return true
        case VirtioNetHeader.gsoTCPv4: return negotiatedFeatures & Feature.guestTSO4 != 0
        case VirtioNetHeader.gsoTCPv6: return negotiatedFeatures & Feature.guestTSO6 != 0
        default: return false
        }
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
        // num_buffers to 1." (The backend's header may say anything there.) DATA_VALID is never
        // claimed, and a flag or GSO type the driver did not negotiate never reaches it (the caller
        // completes or cuts such frames first, see `accepts`; what is left is cleared here).
        var header = VirtioNetHeader(frame)
        if !accepts(header) { header = VirtioNetHeader() }
        header.flags &= VirtioNetHeader.needsChecksumFlag
        header.numberOfBuffers = 1
        _ = header.withBytes { chain.write(to: memory, offset: 0, from: $0) }
        // Cannot truncate: written <= frame.count <= writableLength, which the virtqueue caps at 4 GiB.
        try queue.pushUsed(head: chain.head, writtenLength: UInt32(clamping: written), memory: memory)
        return .delivered
    }
}

/// `struct virtio_net_hdr` with VIRTIO_F_VERSION_1 (virtio 1.2 §5.1.6), little-endian: flags u8,
/// gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16, num_buffers u16.
public struct VirtioNetHeader: Equatable {
    public static let size = 12
    /// VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum at csum_start + csum_offset is to be completed over
    /// the bytes from csum_start on. (DATA_VALID, 2, is for the device to set; we never do.)
    public static let needsChecksumFlag: UInt8 = 1
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoTCPv6: UInt8 = 4

    public var flags: UInt8 = 0
    public var gsoType: UInt8 = 0
    public var headerLength: UInt16 = 0
    public var gsoSize: UInt16 = 0
    public var checksumStart: UInt16 = 0
    public var checksumOffset: UInt16 = 0
    public var numberOfBuffers: UInt16 = 0

    public init() {}

    /// The header at the start of `packet`; all zero when `packet` is shorter than one.
    public init(_ packet: UnsafeRawBufferPointer) {
        guard packet.count >= Self.size else { return }
        func u16(_ at: Int) -> UInt16 { UInt16(packet[at]) | UInt16(packet[at + 1]) << 8 }
        flags = packet[0]
        gsoType = packet[1]
        headerLength = u16(2)
        gsoSize = u16(4)
        checksumStart = u16(6)
        checksumOffset = u16(8)
        numberOfBuffers = u16(10)
    }

    public var needsChecksum: Bool { flags & Self.needsChecksumFlag != 0 }
    public var isSegmentation: Bool { gsoType != Self.gsoNone }

    /// The 12 bytes, little-endian.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        let bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (
            flags, gsoType, UInt8(truncatingIfNeeded: headerLength), UInt8(truncatingIfNeeded: headerLength >> 8),
            UInt8(truncatingIfNeeded: gsoSize), UInt8(truncatingIfNeeded: gsoSize >> 8),
            UInt8(truncatingIfNeeded: checksumStart), UInt8(truncatingIfNeeded: checksumStart >> 8),
            UInt8(truncatingIfNeeded: checksumOffset), UInt8(truncatingIfNeeded: checksumOffset >> 8),
            UInt8(truncatingIfNeeded: numberOfBuffers), UInt8(truncatingIfNeeded: numberOfBuffers >> 8))
        return withUnsafeBytes(of: bytes) { body($0) }
    }

    /// Writes the 12 bytes at the start of `packet` (at least `size` bytes).
    public func store(into packet: UnsafeMutableRawBufferPointer) {
        guard packet.count >= Self.size else { return }
        withBytes { bytes in for i in 0..<Self.size { packet[i] = bytes[i] } }
    }
}
