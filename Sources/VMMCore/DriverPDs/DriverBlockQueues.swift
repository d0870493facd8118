// The block queues and storage information shared by the VMM and a block driver PD, laid out as sDDF's
// include/sddf/blk/queue.h and include/sddf/blk/storage_info.h at au-ts/sddf commit
// 01f3020bdc6a51be6806e1400ab67553d8867540. The generic queue ends and their checks are in
// DriverQueues.swift; what a request means is the block client's and server's business.

import Synchronization

/// blk_req_code_t.
public enum BlockRequestCode: UInt32, Equatable {
    case read = 0
    case write = 1
    case flush = 2
    case barrier = 3
}

/// blk_resp_status_t.
public enum BlockResponseStatus: UInt32, Equatable {
    case ok = 0
    case unspecifiedError = 1
    case invalidParameter = 2
    case ioError = 3
    case noDevice = 4
}

/// blk_req_t as read from the queue: `code` stays raw, since the other side may write anything there.
public struct BlockRequest: Equatable {
    public var code: UInt32
    /// Offset of the data in the data region (io_or_offset).
    public var offset: UInt64
    /// First block, in `MicrokitDriverLayout.blockTransferSize` units.
    public var blockNumber: UInt64
    /// Blocks to transfer (same units).
    public var count: UInt16
    public var id: UInt32

    public init(code: UInt32, offset: UInt64, blockNumber: UInt64, count: UInt16, id: UInt32) {
        self.code = code
        self.offset = offset
        self.blockNumber = blockNumber
        self.count = count
        self.id = id
    }

    public init(_ code: BlockRequestCode, offset: UInt64, blockNumber: UInt64, count: UInt16, id: UInt32) {
        self.init(code: code.rawValue, offset: offset, blockNumber: blockNumber, count: count, id: id)
    }
}

/// blk_resp_t; `status` raw for the same reason.
public struct BlockResponse: Equatable {
    public var status: UInt32
    public var successCount: UInt16
    public var id: UInt32

    public init(status: UInt32, successCount: UInt16, id: UInt32) {
        self.status = status
        self.successCount = successCount
        self.id = id
    }

    public init(_ status: BlockResponseStatus, successCount: UInt16, id: UInt32) {
        self.init(status: status.rawValue, successCount: successCount, id: id)
    }
}

/// blk_req_queue_t { u32 head @0; u32 tail @4; bool plugged @8; blk_req_t buffers[] @16 }, and
/// blk_req_t { u32 code @0; u64 io_or_offset @8; u64 block_number @16; u16 count @24; u32 id @28 }, 32 bytes.
public enum BlockRequestLayout: SharedQueueLayout {
    public typealias Index = UInt32
    public static var headOffset: Int { 0 }
    public static var tailOffset: Int { 4 }
    public static var pluggedOffset: Int { 8 }
    public static var entriesOffset: Int { 16 }
    public static var entrySize: Int { 32 }

    public static func load(from region: SharedRegion, at offset: Int) -> BlockRequest? {
        guard let code = region.load(UInt32.self, at: offset),
              let io = region.load(UInt64.self, at: offset + 8),
              let block = region.load(UInt64.self, at: offset + 16),
              let count = region.load(UInt16.self, at: offset + 24),
              let id = region.load(UInt32.self, at: offset + 28) else { return nil }
        return BlockRequest(code: code, offset: io, blockNumber: block, count: count, id: id)
    }

    public static func store(_ entry: BlockRequest, to region: SharedRegion, at offset: Int) -> Bool {
        region.store(entry.code, at: offset) && region.store(entry.offset, at: offset + 8)
            && region.store(entry.blockNumber, at: offset + 16) && region.store(entry.count, at: offset + 24)
            && region.store(entry.id, at: offset + 28)
    }
}

/// blk_resp_queue_t { u32 head @0; u32 tail @4; blk_resp_t buffers[] @8 }, and
/// blk_resp_t { u32 status @0; u16 success_count @4; u32 id @8 }, 12 bytes.
public enum BlockResponseLayout: SharedQueueLayout {
    public typealias Index = UInt32
    public static var headOffset: Int { 0 }
    public static var tailOffset: Int { 4 }
    public static var entriesOffset: Int { 8 }
    public static var entrySize: Int { 12 }

    public static func load(from region: SharedRegion, at offset: Int) -> BlockResponse? {
        guard let status = region.load(UInt32.self, at: offset),
              let count = region.load(UInt16.self, at: offset + 4),
              let id = region.load(UInt32.self, at: offset + 8) else { return nil }
        return BlockResponse(status: status, successCount: count, id: id)
    }

    public static func store(_ entry: BlockResponse, to region: SharedRegion, at offset: Int) -> Bool {
        region.store(entry.status, at: offset) && region.store(entry.successCount, at: offset + 4)
            && region.store(entry.id, at: offset + 8)
    }
}

extension QueueProducer where Layout == BlockRequestLayout {
    /// blk_queue_plugged_req: the consumer must not dequeue while set (this VMM never plugs).
    public func setPlugged(_ plugged: Bool) {
        queue.region.store(UInt8(plugged ? 1 : 0), at: BlockRequestLayout.pluggedOffset)
    }
}

extension QueueConsumer where Layout == BlockRequestLayout {
    public var plugged: Bool { (queue.region.load(UInt8.self, at: BlockRequestLayout.pluggedOffset) ?? 0) != 0 }
}

/// blk_storage_info_t { char serial_number[64] @0; bool read_only @64; bool ready @65; u16 sector_size @66;
/// u16 block_size @68; u16 queue_depth @70; u16 cylinders @72, heads @74, blocks @76; u64 capacity @80 },
/// 88 bytes. `capacity` and `block_size` count BLK_TRANSFER_SIZE (4096-byte) units.
public struct BlockStorageInfo: Equatable {
    public var readOnly: Bool
    public var sectorSize: UInt16
    public var blockSize: UInt16
    public var queueDepth: UInt16
    public var capacity: UInt64

    public init(readOnly: Bool, sectorSize: UInt16, blockSize: UInt16, queueDepth: UInt16, capacity: UInt64) {
        self.readOnly = readOnly
        self.sectorSize = sectorSize
        self.blockSize = blockSize
        self.queueDepth = queueDepth
        self.capacity = capacity
    }

    static var readOnlyOffset: Int { 64 }
    static var readyOffset: Int { 65 }
    static var sectorSizeOffset: Int { 66 }
    static var blockSizeOffset: Int { 68 }
    static var queueDepthOffset: Int { 70 }
    static var geometryOffset: Int { 72 }
    static var capacityOffset: Int { 80 }
    public static var size: Int { 88 }

    /// blk_storage_is_ready: an acquire load, so the fields read after it are the published ones.
    public static func isReady(_ region: SharedRegion) -> Bool {
        let ready = (region.load(UInt8.self, at: readyOffset) ?? 0) != 0
        atomicMemoryFence(ordering: .acquiring)
        return ready
    }

    /// The published information, or nil while `ready` is not set (or the region is too small).
    public static func load(from region: SharedRegion) -> BlockStorageInfo? {
        guard isReady(region),
              let readOnly = region.load(UInt8.self, at: readOnlyOffset),
              let sectorSize = region.load(UInt16.self, at: sectorSizeOffset),
              let blockSize = region.load(UInt16.self, at: blockSizeOffset),
              let queueDepth = region.load(UInt16.self, at: queueDepthOffset),
              let capacity = region.load(UInt64.self, at: capacityOffset) else { return nil }
        return BlockStorageInfo(readOnly: readOnly != 0, sectorSize: sectorSize, blockSize: blockSize,
                                queueDepth: queueDepth, capacity: capacity)
    }

    /// Writes every field (no serial number, no geometry: zeros), then sets `ready` with release
    /// ordering (blk_storage_set_ready). False when the region is smaller than the structure.
    @discardableResult
    public func publish(to region: SharedRegion) -> Bool {
        guard region.size >= Self.size else { return false }
        region.store(UInt8(0), at: Self.readyOffset)
        atomicMemoryFence(ordering: .releasing)
        for offset in 0..<Self.readOnlyOffset { region.store(UInt8(0), at: offset) }
        for offset in stride(from: Self.geometryOffset, to: Self.capacityOffset, by: 2) { region.store(UInt16(0), at: offset) }
        region.store(UInt8(readOnly ? 1 : 0), at: Self.readOnlyOffset)
        region.store(sectorSize, at: Self.sectorSizeOffset)
        region.store(blockSize, at: Self.blockSizeOffset)
        region.store(queueDepth, at: Self.queueDepthOffset)
        region.store(capacity, at: Self.capacityOffset)
        atomicMemoryFence(ordering: .releasing)
        region.store(UInt8(1), at: Self.readyOffset)
        return true
    }
}
