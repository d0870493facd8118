// A synchronous driver of the board's virtio-blk device (virtio 1.2 §5.2), the real disk behind the
// block device the VMM emulates for its guest. One request at a time: the 16-byte request header and the
// status byte live in the driver's DMA memory, the data segments are whatever the caller names by
// physical address (on the native platform, the guest's own buffers: zero copy). Each request is
// submitted, notified and then polled to completion, because QEMU completes I/O on another thread.
// What to do when a request fails is the caller's decision; this type only reports it.

/// virtio-blk feature bits and request types (virtio 1.2 §5.2.3, §5.2.6).
public enum VirtioBlockDriverConstant {
    public static let featureSegmentMaximum: UInt64 = 1 << 2   // VIRTIO_BLK_F_SEG_MAX
    public static let featureReadOnly: UInt64 = 1 << 5         // VIRTIO_BLK_F_RO
    public static let featureFlush: UInt64 = 1 << 9            // VIRTIO_BLK_F_FLUSH
    static let typeIn: UInt32 = 0
    static let typeOut: UInt32 = 1
    static let typeFlush: UInt32 = 4
    static let statusOK: UInt8 = 0
    public static let sectorSize: UInt64 = 512
}

public struct VirtioBlockDriver<Registers: DeviceRegisterWindow> {
    public private(set) var device: VirtioMMIODriver<Registers>
    /// Capacity in 512-byte sectors, whatever the device's logical block size (§5.2.4).
    public let capacity: UInt64
    /// VIRTIO_BLK_F_RO negotiated: writes are refused here, before reaching the device.
    public let readOnly: Bool
    /// Data segments one device request may carry: the queue minus header and status, and at most
    /// seg_max. `read` and `write` take more and send them as several requests.
    public let maximumSegments: Int
    /// Set when a request did not complete within `pollLimit`: the device still owns the header, so
    /// no further request is sent (the owner resets the device or gives up on it).
    public private(set) var stalled = false
    /// Spins of the used-ring poll per request; large, since the device finishes on another host thread.
    public var pollLimit = 200_000_000

    let header: (host: UnsafeMutableRawPointer, physical: UInt64)
    let status: (host: UnsafeMutableRawPointer, physical: UInt64)

    public init(registers: Registers, dma: inout DMARegion, queueSize: UInt16 = 256) throws(VirtioDriverError) {
        var scratch = dma
        guard let header = scratch.allocate(size: 16, alignment: 16),
              let status = scratch.allocate(size: 1, alignment: 1) else { throw .outOfDMAMemory }
        let wanted = VirtioBlockDriverConstant.featureReadOnly | VirtioBlockDriverConstant.featureFlush
            | VirtioBlockDriverConstant.featureSegmentMaximum
        device = try VirtioMMIODriver(registers: registers, expecting: .block, wantedFeatures: wanted,
                                      queueSizes: [queueSize], dma: &scratch)
        dma = scratch
        self.header = header
        self.status = status
        // §5.2.4: capacity at offset 0 (le64), seg_max at offset 12 (le32) when SEG_MAX is negotiated.
        capacity = device.configRead64(0)
        readOnly = device.has(VirtioBlockDriverConstant.featureReadOnly)
        var segments = Int(device.queues[0].size) - 2
        if device.has(VirtioBlockDriverConstant.featureSegmentMaximum) {
            let segmentMaximum = device.configRead32(12)
            if segmentMaximum > 0 { segments = min(segments, Int(segmentMaximum)) }
        }
        maximumSegments = max(segments, 0)
    }

    /// Reads whole sectors starting at `sector` into `segments` (their `deviceWritable` is forced on).
    public mutating func read(sector: UInt64, into segments: [DeviceBuffer]) -> Bool {
        transfer(type: VirtioBlockDriverConstant.typeIn, sector: sector, segments: segments, deviceWritable: true)
    }

    /// Writes `segments` to whole sectors starting at `sector`; false at once on a read-only device.
    public mutating func write(sector: UInt64, from segments: [DeviceBuffer]) -> Bool {
        guard !readOnly else { return false }
        return transfer(type: VirtioBlockDriverConstant.typeOut, sector: sector, segments: segments, deviceWritable: false)
    }

    /// VIRTIO_BLK_T_FLUSH (§5.2.6). Without VIRTIO_BLK_F_FLUSH the device writes through, so there is
    /// nothing to flush.
    public mutating func flush() -> Bool {
        guard device.has(VirtioBlockDriverConstant.featureFlush) else { return true }
        return request(type: VirtioBlockDriverConstant.typeFlush, sector: 0, data: [])
    }

    mutating func transfer(type: UInt32, sector: UInt64, segments: [DeviceBuffer], deviceWritable: Bool) -> Bool {
        guard !segments.isEmpty, maximumSegments > 0 else { return false }
        var total: UInt64 = 0
        for segment in segments { total += UInt64(segment.length) }   // cannot overflow: < 2^32 lengths below 2^32
        // §5.2.6.2: the data of a read or write is a whole number of 512-byte sectors, inside the disk.
        let sectors = total / VirtioBlockDriverConstant.sectorSize
        guard total % VirtioBlockDriverConstant.sectorSize == 0,
              sector <= capacity, sectors <= capacity - sector else { return false }
        // More segments than the device takes in one request: consecutive requests of at most
        // maximumSegments segments, each cut where the bytes so far are whole sectors.
        var start = 0
        var position = sector
        while start < segments.count {
            var end = start
            var bytes: UInt64 = 0
            var cut = start, cutBytes: UInt64 = 0
            while end < segments.count && end - start < maximumSegments {
                bytes += UInt64(segments[end].length)
                end += 1
                if bytes % VirtioBlockDriverConstant.sectorSize == 0 { cut = end; cutBytes = bytes }
            }
            guard cut > start else { return false }      // no whole sector within maximumSegments segments
            var data = Array(segments[start..<cut])
            for index in data.indices { data[index].deviceWritable = deviceWritable }
            guard request(type: type, sector: position, data: data) else { return false }
            position += cutBytes / VirtioBlockDriverConstant.sectorSize
            start = cut
        }
        return true
    }

    /// Builds [header][data…][status], submits it, notifies and polls until the device returns it.
    mutating func request(type: UInt32, sector: UInt64, data: [DeviceBuffer]) -> Bool {
        guard !stalled else { return false }
        // §5.2.6: struct virtio_blk_req { le32 type; le32 reserved; le64 sector; … u8 status; }
        header.host.storeBytes(of: type.littleEndian, as: UInt32.self)
        header.host.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        header.host.storeBytes(of: sector.littleEndian, toByteOffset: 8, as: UInt64.self)
        status.host.storeBytes(of: UInt8(0xff), as: UInt8.self)     // not a status the device writes
        var chain = [DeviceBuffer(physical: header.physical, length: 16, deviceWritable: false)]
        chain.append(contentsOf: data)
        chain.append(DeviceBuffer(physical: status.physical, length: 1, deviceWritable: true))
        guard let head = device.submit(chain, queue: 0) else { return false }
        device.notify(queue: 0)
        var spins = 0
        while true {
            if let used = device.takeUsed(queue: 0) {
                // Only one request is ever in flight, so the first completion is this one.
                guard used.head == head else { stalled = true; return false }
                break
            }
            spins += 1
            if spins >= pollLimit || device.queues[0].deviceMisbehaved { stalled = true; return false }
        }
        return status.host.load(as: UInt8.self) == VirtioBlockDriverConstant.statusOK
    }
}
