// The virtio block device model (virtio 1.2 §5.2): its feature bits, its configuration space, and the
// serving of request-queue chains. It parses each request header, checks the request against the chain
// and the disk (never trusting a guest length), hands the data segments to a `BlockBackend` and writes
// the status byte. Walking and validating the descriptor rings is the virtqueue's job (Virtqueue.swift);
// registers, interrupts and device status are the transport's.

/// Request types and status values of virtio 1.2 §5.2.6.
public enum VirtioBlockRequest {
    public static let typeIn: UInt32 = 0
    public static let typeOut: UInt32 = 1
    public static let typeFlush: UInt32 = 4
    public static let typeGetID: UInt32 = 8
    public static let statusOK: UInt8 = 0
    public static let statusIOError: UInt8 = 1
    public static let statusUnsupported: UInt8 = 2
    /// `struct virtio_blk_req` up to the data: type u32, reserved u32, sector u64.
    public static let headerSize: UInt64 = 16
    /// The protocol's unit, whatever blk_size says (§5.2.5).
    public static let sectorSize: UInt64 = 512
    /// VIRTIO_BLK_ID_BYTES.
    public static let identifierSize = 20
}

public struct VirtioBlock: VirtioDeviceModel {
    /// Feature bits of §5.2.3.
    public enum Feature {
        public static let segmentMaximum: UInt64 = 1 << 2     // VIRTIO_BLK_F_SEG_MAX
        public static let readOnly: UInt64 = 1 << 5           // VIRTIO_BLK_F_RO
        public static let blockSize: UInt64 = 1 << 6          // VIRTIO_BLK_F_BLK_SIZE
        public static let flush: UInt64 = 1 << 9              // VIRTIO_BLK_F_FLUSH
    }

    /// The VM's block device number, passed to every backend call.
    public let device: Int
    public let capacitySectors: UInt64
    public let readOnly: Bool
    /// The GET_ID answer, NUL-padded to exactly 20 bytes (no terminator when the id is 20 long).
    public let identifier: [UInt8]
    public private(set) var negotiatedFeatures: UInt64 = 0

    public var deviceType: VirtioDeviceType { .block }
    public var queueCount: Int { 1 }
    /// 512: seg_max 510 lets Linux send a 1 MiB transfer (max_sectors_kb 1280) as one request even from
    /// a buffer that is not page-aligned (257 pages), which halves the requests of large I/O. Backends
    /// split what their own device cannot take in one (VirtioBlockDriver, BlockClient).
    public var maximumQueueSize: UInt16 { 512 }
    public var deviceFeatures: UInt64 {
        Feature.segmentMaximum | Feature.blockSize | Feature.flush | (readOnly ? Feature.readOnly : 0)
    }

    /// `identifier` is at most 20 bytes (a serial number); shorter ones are NUL-padded.
    public init(device: Int, capacitySectors: UInt64, readOnly: Bool, identifier: [UInt8]) {
        precondition(identifier.count <= VirtioBlockRequest.identifierSize, "virtio-blk identifier longer than 20 bytes")
        self.device = device
        self.capacitySectors = capacitySectors
        self.readOnly = readOnly
        var padded = identifier
        while padded.count < VirtioBlockRequest.identifierSize { padded.append(0) }
        self.identifier = padded
    }

    // MARK: Configuration space (§5.2.4)

    /// capacity @0 (u64), size_max @8, seg_max @12, geometry @16, blk_size @20; we stop there because
    /// none of the features that give meaning to later fields (TOPOLOGY, CONFIG_WCE, MQ, …) is offered.
    static let configurationSize = 24

    /// A descriptor each for the header and the status byte leaves the rest of a full chain for data
    /// (Linux and QEMU use the same queue size - 2).
    var segmentMaximum: UInt32 { UInt32(maximumQueueSize) - 2 }

    public func configurationRead(offset: UInt64, width: Int) -> UInt32? {
        virtioConfigurationRead(offset: offset, width: width, size: Self.configurationSize) { i in
            switch i {
            case 0..<8: return UInt8(truncatingIfNeeded: capacitySectors >> (8 * UInt64(i)))
            case 12..<16: return UInt8(truncatingIfNeeded: segmentMaximum >> (8 * UInt32(i - 12)))
            case 20..<24: return UInt8(truncatingIfNeeded: UInt32(VirtioBlockRequest.sectorSize) >> (8 * UInt32(i - 20)))
            default: return 0   // size_max (SIZE_MAX not offered) and geometry (GEOMETRY not offered)
            }
        }
    }

    /// Every field we expose is read-only for the driver (writeback needs CONFIG_WCE): writes are ignored.
    public mutating func configurationWrite(offset: UInt64, width: Int, value: UInt32) {}

    public mutating func negotiate(features: UInt64) -> Bool {
        guard virtioAcceptsFeatures(features, offered: deviceFeatures) else { return false }
        negotiatedFeatures = features
        return true
    }

    public mutating func reset() {
        negotiatedFeatures = 0
    }

    // MARK: Requests (§5.2.6)

    /// Serves every available request of the request queue; returns true if any used buffer was added
    /// (the caller then asks the queue whether to interrupt). A queue error stops the loop: requests
    /// already completed stay in the used ring, and the caller marks the device DEVICE_NEEDS_RESET.
    public mutating func processRequests<B: BlockBackend>(_ queue: inout SplitVirtqueue, memory: GuestMemory,
                                                          backend: inout B) throws(VirtqueueError) -> Bool {
        var addedUsed = false
        while let chain = try queue.popAvailable(memory: memory) {
            let written = serve(chain, memory: memory, backend: &backend)
            try queue.pushUsed(head: chain.head, writtenLength: written, memory: memory)
            addedUsed = true
        }
        return addedUsed
    }

    /// Carries out one request and returns the used length: the bytes written to the writable part,
    /// status byte included (§2.7.8: never more than was written).
    func serve<B: BlockBackend>(_ chain: DescriptorChain, memory: GuestMemory, backend: inout B) -> UInt32 {
        // §5.2.6: the status byte is the last writable byte. A chain with no writable byte cannot be
        // answered at all; it goes back used with length 0.
        let writable = chain.writableLength
        guard writable > 0 else { return 0 }
        let statusOffset = writable - 1
        let (status, dataWritten) = execute(chain, writableData: statusOffset, memory: memory, backend: &backend)
        var statusByte = status
        let stored = withUnsafeBytes(of: &statusByte) { chain.write(to: memory, offset: statusOffset, from: $0) }
        guard stored == 1 else { return 0 }
        // Cannot overflow in a meaningful way: dataWritten <= statusOffset < writableLength; clamping
        // only matters for a chain the virtqueue would already have refused (> 4 GiB).
        return UInt32(clamping: dataWritten + 1)
    }

    /// The status of one request and how many data bytes it wrote before the status byte.
    private func execute<B: BlockBackend>(_ chain: DescriptorChain, writableData: UInt64, memory: GuestMemory,
                                          backend: inout B) -> (UInt8, UInt64) {
        let failed = (VirtioBlockRequest.statusIOError, UInt64(0))
        // The header is the first 16 readable bytes; fewer and there is no request to speak of.
        var words: (UInt64, UInt64) = (0, 0)
        let headerRead = withUnsafeMutableBytes(of: &words) { chain.read(from: memory, offset: 0, into: $0) }
        guard UInt64(headerRead) == VirtioBlockRequest.headerSize else { return failed }
        let type = UInt32(truncatingIfNeeded: UInt64(littleEndian: words.0))
        let sector = UInt64(littleEndian: words.1)

        switch type {
        case VirtioBlockRequest.typeIn:
            guard fitsOnDisk(sector: sector, bytes: writableData) else { return failed }
            if writableData == 0 { return (VirtioBlockRequest.statusOK, 0) }
            let segments = chain.writableSegments(offset: 0, length: writableData)
            guard backend.blockRead(device: device, sector: sector, into: segments, memory: memory) else { return failed }
            return (VirtioBlockRequest.statusOK, writableData)

        case VirtioBlockRequest.typeOut:
            // §5.2.6.2: "A device MUST set the status byte to VIRTIO_BLK_S_IOERR for a write request if
            // the VIRTIO_BLK_F_RO feature if offered, and MUST NOT write any data."
            guard !readOnly else { return failed }
            // Cannot underflow: the 16-byte header was read from the readable part above.
            let data = chain.readableLength - VirtioBlockRequest.headerSize
            guard fitsOnDisk(sector: sector, bytes: data) else { return failed }
            if data == 0 { return (VirtioBlockRequest.statusOK, 0) }
            let segments = chain.readableSegments(offset: VirtioBlockRequest.headerSize, length: data)
            guard backend.blockWrite(device: device, sector: sector, from: segments, memory: memory) else { return failed }
            return (VirtioBlockRequest.statusOK, 0)

        case VirtioBlockRequest.typeFlush:
            // A read-only disk holds nothing the guest wrote, so there is nothing to make durable.
            if readOnly { return (VirtioBlockRequest.statusOK, 0) }
            return (backend.blockFlush(device: device) ? VirtioBlockRequest.statusOK : VirtioBlockRequest.statusIOError, 0)

        case VirtioBlockRequest.typeGetID:
            // §5.2.6: the id is 20 bytes, NUL-padded; a shorter data buffer gets what fits (as QEMU).
            let count = Int(min(UInt64(VirtioBlockRequest.identifierSize), writableData))
            let written = identifier.withUnsafeBytes { id in
                chain.write(to: memory, offset: 0, from: UnsafeRawBufferPointer(rebasing: id[0..<count]))
            }
            return (VirtioBlockRequest.statusOK, UInt64(written))

        default:
            // §5.2.6.2: unknown or not negotiated (DISCARD, WRITE_ZEROES, GET_LIFETIME, …).
            return (VirtioBlockRequest.statusUnsupported, 0)
        }
    }

    /// Whether `bytes` of data is a whole number of sectors lying inside the disk from `sector` on
    /// (§5.2.6.1: the driver must not reach past capacity; we check rather than trust it).
    private func fitsOnDisk(sector: UInt64, bytes: UInt64) -> Bool {
        guard bytes % VirtioBlockRequest.sectorSize == 0 else { return false }
        let (end, overflow) = sector.addingReportingOverflow(bytes / VirtioBlockRequest.sectorSize)
        return !overflow && end <= capacitySectors
    }
}
