// A driver of the board's virtio console (virtio 1.2 §5.3: QEMU's `virtio-serial-device` with a
// `virtconsole` on port 0), a byte stream behind the console the VMM emulates for its guest. Only port 0
// is used: VIRTIO_CONSOLE_F_MULTIPORT is not negotiated, so queue 0 receives and queue 1 transmits and
// there is no control queue (QEMU then treats port 0 as open as soon as DRIVER_OK is set). Output is
// copied into bounce buffers in the driver's DMA memory, so the caller's bytes may be reused at once.

public enum VirtioConsoleDriverConstant {
    public static let bufferSize = 512
}

public struct VirtioConsoleDriver<Registers: DeviceRegisterWindow> {
    static var receiveQueue: Int { 0 }
    static var transmitQueue: Int { 1 }

    public private(set) var device: VirtioMMIODriver<Registers>
    var receiveBuffers: DriverBufferPool
    var transmitBuffers: DriverBufferPool

    /// Negotiates, sets up port 0's two queues and posts `receiveBuffers` receive buffers; output goes
    /// through `transmitBuffers` bounce buffers (both at most the queue size).
    public init(registers: Registers, dma: inout DMARegion, receiveBuffers: Int = 8, transmitBuffers: Int = 8,
                queueSize: UInt16 = 64) throws(VirtioDriverError) {
        var scratch = dma
        device = try VirtioMMIODriver(registers: registers, expecting: .console, wantedFeatures: 0,
                                      queueSizes: [queueSize, queueSize], dma: &scratch)
        let receiveSize = device.queues[Self.receiveQueue].size
        let transmitSize = device.queues[Self.transmitQueue].size
        guard let receive = DriverBufferPool(count: min(max(receiveBuffers, 1), Int(receiveSize)),
                                             bufferSize: VirtioConsoleDriverConstant.bufferSize,
                                             queueSize: receiveSize, dma: &scratch),
              let transmit = DriverBufferPool(count: min(max(transmitBuffers, 1), Int(transmitSize)),
                                              bufferSize: VirtioConsoleDriverConstant.bufferSize,
                                              queueSize: transmitSize, dma: &scratch) else {
            device.reset()
            throw .outOfDMAMemory
        }
        self.receiveBuffers = receive
        self.transmitBuffers = transmit
        for index in 0..<receive.count {
            _ = self.receiveBuffers.lend(index, length: VirtioConsoleDriverConstant.bufferSize,
                                         deviceWritable: true, queue: Self.receiveQueue, device: &device)
        }
        device.notify(queue: Self.receiveQueue)
        dma = scratch
    }

    /// Bounce buffers free for output right now.
    public var transmitCapacity: Int { transmitBuffers.idle.count * VirtioConsoleDriverConstant.bufferSize }

    /// Copies `bytes` into free bounce buffers and hands them to the device without waiting; returns how
    /// many bytes were taken (fewer than offered when every bounce buffer is still with the device).
    public mutating func write(_ bytes: UnsafeRawBufferPointer) -> Int {
        reclaimTransmitted()
        var written = 0
        var submitted = false
        while written < bytes.count, let index = transmitBuffers.idle.last {
            let chunk = min(bytes.count - written, VirtioConsoleDriverConstant.bufferSize)
            // SAFETY: written + chunk <= bytes.count, and a bounce buffer holds bufferSize >= chunk bytes.
            transmitBuffers.bytes(index).copyMemory(from: bytes.baseAddress! + written, byteCount: chunk)
            guard transmitBuffers.lend(index, length: chunk, deviceWritable: false,
                                       queue: Self.transmitQueue, device: &device) else { break }
            transmitBuffers.idle.removeLast()
            written += chunk
            submitted = true
        }
        if submitted { device.notify(queue: Self.transmitQueue) }
        return written
    }

    /// Takes back the bounce buffers of output the device has consumed.
    mutating func reclaimTransmitted() {
        while let used = device.takeUsed(queue: Self.transmitQueue) {
            if let index = transmitBuffers.returned(head: used.head) { transmitBuffers.idle.append(index) }
        }
    }

    /// Calls `body` on each chunk of input the device delivered, then posts its buffer again; returns how
    /// many chunks (at most one queue's worth per call).
    public mutating func receive(_ body: (UnsafeRawBufferPointer) -> Void) -> Int {
        var chunks = 0
        var taken = 0
        while taken < Int(device.queues[Self.receiveQueue].size),
              let used = device.takeUsed(queue: Self.receiveQueue) {
            taken += 1
            guard let index = receiveBuffers.returned(head: used.head) else { continue }
            let length = min(Int(used.length), receiveBuffers.bufferSize)
            if length > 0 {
                body(UnsafeRawBufferPointer(start: receiveBuffers.bytes(index), count: length))
                chunks += 1
            }
            _ = receiveBuffers.lend(index, length: VirtioConsoleDriverConstant.bufferSize,
                                    deviceWritable: true, queue: Self.receiveQueue, device: &device)
        }
        if taken > 0 { device.notify(queue: Self.receiveQueue) }
        return chunks
    }
}
