// The virtio console device model (virtio 1.2 §5.3) with a single port and no features: no SIZE, no
// MULTIPORT, no EMERG_WRITE, so there is no control queue and the configuration space reads as zeros.
// Bytes the guest writes on transmitq0 go to a `ConsoleBackend`; bytes the platform has for the guest
// are copied into the chains the driver posted on receiveq0. The rings are the virtqueue's business
// (Virtqueue.swift), the terminal behind the port is the backend's.

public struct VirtioConsole: VirtioDeviceModel {
    /// §5.3.2: without VIRTIO_CONSOLE_F_MULTIPORT only port 0's pair exists.
    public static let receiveQueue = 0
    public static let transmitQueue = 1

    public let device: Int
    public private(set) var negotiatedFeatures: UInt64 = 0

    public var deviceType: VirtioDeviceType { .console }
    public var deviceFeatures: UInt64 { 0 }
    public var queueCount: Int { 2 }
    public var maximumQueueSize: UInt16 { 64 }

    public init(device: Int) {
        self.device = device
    }

    // MARK: Configuration space (§5.3.4)

    /// cols u16 @0, rows u16 @2, max_nr_ports u32 @4, emerg_wr u32 @8. Each is valid only with a feature
    /// we do not offer (SIZE, MULTIPORT, EMERG_WRITE), so the whole structure reads as zero.
    static let configurationSize = 12

    public func configurationRead(offset: UInt64, width: Int) -> UInt32? {
        virtioConfigurationRead(offset: offset, width: width, size: Self.configurationSize) { _ in 0 }
    }

    /// emerg_wr is the one driver-writable field, and only with VIRTIO_CONSOLE_F_EMERG_WRITE: ignored.
    public mutating func configurationWrite(offset: UInt64, width: Int, value: UInt32) {}

    public mutating func negotiate(features: UInt64) -> Bool {
        guard virtioAcceptsFeatures(features, offered: deviceFeatures) else { return false }
        negotiatedFeatures = features
        return true
    }

    public mutating func reset() {
        negotiatedFeatures = 0
    }

    // MARK: Transmit (§5.3.6: output is a buffer of characters placed in the port's transmitq)

    /// Hands the readable bytes of every chain on the transmit queue to the backend, in order, straight
    /// from guest memory; returns true if any used buffer was added. The device writes nothing into a
    /// transmit chain, so each goes back used with length 0.
    public mutating func processTransmit<C: ConsoleBackend>(_ queue: inout SplitVirtqueue, memory: GuestMemory,
                                                            backend: inout C) throws(VirtqueueError) -> Bool {
        var addedUsed = false
        while let chain = try queue.popAvailable(memory: memory) {
            for segment in chain.readableSegments(offset: 0, length: chain.readableLength) where segment.length > 0 {
                // The virtqueue checked every buffer against guest RAM; withBytes checks again and
                // yields nil rather than touching memory outside it.
                _ = memory.withBytes(at: segment.address, length: UInt64(segment.length)) { bytes in
                    backend.consoleWrite(device: device, UnsafeRawBufferPointer(bytes))
                }
            }
            try queue.pushUsed(head: chain.head, writtenLength: 0, memory: memory)
            addedUsed = true
        }
        return addedUsed
    }

    // MARK: Receive (§5.3.6: a used receiveq buffer's contents are input to the port)

    /// Copies as much of `input` as the driver has room for into the receive chains, filling each chain
    /// before taking the next, and returns how many bytes were taken; the caller keeps the rest for
    /// when the driver posts more buffers. Empty input consumes no chain.
    public mutating func deliver(input: UnsafeRawBufferPointer, to queue: inout SplitVirtqueue,
                                 memory: GuestMemory) throws(VirtqueueError) -> Int {
        var taken = 0
        while taken < input.count, let chain = try queue.popAvailable(memory: memory) {
            let rest = UnsafeRawBufferPointer(rebasing: input[taken...])
            // A chain with no writable byte takes nothing; it goes back used, empty, like any other.
            let written = chain.write(to: memory, offset: 0, from: rest)
            // Cannot truncate: written <= writableLength, which the virtqueue caps at 4 GiB.
            try queue.pushUsed(head: chain.head, writtenLength: UInt32(clamping: written), memory: memory)
            taken += written
        }
        return taken
    }
}
