// The VMM as a virtio DRIVER of the board's own virtio-mmio devices (virtio 1.2 §4.2, modern version 2
// only): probing a transport slot, the device initialisation sequence of §3.1.1 with feature negotiation,
// queue setup (§4.2.3.2), configuration-space reads, notification and interrupt acknowledgement. On QEMU's
// `virt` board the slots sit at 0x0a00_0000 + 0x200·n (SPI 16+n); the platform maps one and hands this
// type a `DeviceRegisterWindow` over it. Block, net and console drivers (VirtioBlockDriver.swift,
// VirtioNetDriver.swift, VirtioConsoleDriver.swift) build on it; the split rings live in
// VirtioDriverQueue.swift. This is the other side of VirtioMMIOTransport, which the guest drives.

/// The device's register window (the platform implements it with volatile MMIO).
public protocol DeviceRegisterWindow {
    /// Control registers are 32-bit, aligned (§4.2.2.2); config space fields use their natural width.
    func read32(_ offset: UInt64) -> UInt32
    func write32(_ offset: UInt64, _ value: UInt32)
    /// 8- and 16-bit fields of the device configuration space MUST be read with accesses of their own
    /// width (§4.2.2.2); QEMU returns all-ones for a 32-bit read that runs past the end of config space.
    func read8(_ offset: UInt64) -> UInt8
    func read16(_ offset: UInt64) -> UInt16
    /// A full barrier ordering the CPU's memory writes and reads against the device's (native: `dsb sy`
    /// from a C helper; a host test: whatever its fake device needs). It must be an opaque call so the
    /// compiler re-reads ring memory after it. Called before avail.idx moves, before each notify, and
    /// around each read of used.idx.
    func memoryBarrier()
}

public enum VirtioDriverError: Error, Equatable {
    case noDevice           // wrong magic, or DeviceID 0 (an empty slot)
    case legacyDevice       // Version 1 (legacy interface): not supported
    case wrongDeviceType    // a device, but not the one expected
    case featuresRefused    // no VIRTIO_F_VERSION_1 offered, or FEATURES_OK did not stick (§3.1.1 step 6)
    case queueUnavailable   // QueueNumMax 0, the queue already live, or a requested size of 0
    case outOfDMAMemory
    case deviceFailed       // DEVICE_NEEDS_RESET or FAILED after DRIVER_OK, or the device stopped answering
}

/// Register offsets of the virtio-mmio version 2 layout (virtio 1.2 §4.2.2, table 4.1).
enum VirtioMMIODriverRegister {
    static let magic: UInt64 = 0x000
    static let version: UInt64 = 0x004
    static let deviceID: UInt64 = 0x008
    static let deviceFeatures: UInt64 = 0x010
    static let deviceFeaturesSelect: UInt64 = 0x014
    static let driverFeatures: UInt64 = 0x020
    static let driverFeaturesSelect: UInt64 = 0x024
    static let queueSelect: UInt64 = 0x030
    static let queueSizeMaximum: UInt64 = 0x034
    static let queueSize: UInt64 = 0x038
    static let queueReady: UInt64 = 0x044
    static let queueNotify: UInt64 = 0x050
    static let interruptStatus: UInt64 = 0x060
    static let interruptAcknowledge: UInt64 = 0x064
    static let status: UInt64 = 0x070
    static let queueDescriptorLow: UInt64 = 0x080
    static let queueDescriptorHigh: UInt64 = 0x084
    static let queueDriverLow: UInt64 = 0x090
    static let queueDriverHigh: UInt64 = 0x094
    static let queueDeviceLow: UInt64 = 0x0a0
    static let queueDeviceHigh: UInt64 = 0x0a4
    static let configGeneration: UInt64 = 0x0fc
    static let config: UInt64 = 0x100

    /// "virt" in little-endian ASCII.
    static let magicValue: UInt32 = 0x7472_6976
}

public struct VirtioMMIODriver<Registers: DeviceRegisterWindow> {
    public let registers: Registers
    public let deviceType: VirtioDeviceType
    public let negotiatedFeatures: UInt64
    public private(set) var queues: [VirtioDriverQueue]

    /// Feature bits 24–49 belong to the transport and ring (§6); the driver accepts only VERSION_1 and
    /// ACCESS_PLATFORM among them, because its queues use neither indirect descriptors nor event indices.
    static var transportFeatureBits: UInt64 { ((1 << 50) - 1) & ~((1 << 24) - 1) }

    /// Polls of Status after a reset before the device is taken as dead.
    static var resetPolls: Int { 1_000_000 }

    /// The device type behind a transport window, or nil for an empty slot, a legacy (Version 1)
    /// transport or a device type this driver does not know.
    public static func probe(_ registers: Registers) -> VirtioDeviceType? {
        guard case .success(let type) = identify(registers) else { return nil }
        return type
    }

    static func identify(_ registers: Registers) -> Result<VirtioDeviceType, VirtioDriverError> {
        guard registers.read32(VirtioMMIODriverRegister.magic) == VirtioMMIODriverRegister.magicValue
        else { return .failure(.noDevice) }
        let version = registers.read32(VirtioMMIODriverRegister.version)
        let id = registers.read32(VirtioMMIODriverRegister.deviceID)
        guard id != 0 else { return .failure(.noDevice) }
        guard version == 2 else { return .failure(version == 1 ? .legacyDevice : .noDevice) }
        guard let type = VirtioDeviceType(rawValue: id) else { return .failure(.wrongDeviceType) }
        return .success(type)
    }

    /// Runs §3.1.1 to DRIVER_OK: reset, ACKNOWLEDGE, DRIVER, features (those of `wantedFeatures` the
    /// device offers, plus VERSION_1, which it must offer), FEATURES_OK and its read-back, then one queue
    /// per entry of `queueSizes` (each the largest power of two not above the request and QueueNumMax).
    /// On failure after the device was touched it sets FAILED, and `dma` is left as it was.
    public init(registers: Registers, expecting: VirtioDeviceType, wantedFeatures: UInt64,
                queueSizes: [UInt16], dma: inout DMARegion) throws(VirtioDriverError) {
        switch Self.identify(registers) {
        case .failure(let error): throw error
        case .success(let type): guard type == expecting else { throw .wrongDeviceType }
        }
        self.registers = registers
        deviceType = expecting
        var scratch = dma
        let result = Self.initialise(registers, wantedFeatures: wantedFeatures, queueSizes: queueSizes,
                                     dma: &scratch)
        switch result {
        case .failure(let error):
            registers.write32(VirtioMMIODriverRegister.status,
                              registers.read32(VirtioMMIODriverRegister.status) | VirtioStatus.failed)
            throw error
        case .success(let (features, queues)):
            negotiatedFeatures = features
            self.queues = queues
            dma = scratch
        }
    }

    static func initialise(_ registers: Registers, wantedFeatures: UInt64, queueSizes: [UInt16],
                           dma: inout DMARegion) -> Result<(UInt64, [VirtioDriverQueue]), VirtioDriverError> {
        typealias R = VirtioMMIODriverRegister
        // §2.4.2: a driver-initiated reset is complete when Status reads back 0.
        registers.write32(R.status, 0)
        var polls = 0
        while registers.read32(R.status) != 0 {
            polls += 1
            if polls >= resetPolls { return .failure(.deviceFailed) }
        }
        var status = VirtioStatus.acknowledge
        registers.write32(R.status, status)
        status |= VirtioStatus.driver
        registers.write32(R.status, status)

        registers.write32(R.deviceFeaturesSelect, 0)
        let low = registers.read32(R.deviceFeatures)
        registers.write32(R.deviceFeaturesSelect, 1)
        let offered = UInt64(registers.read32(R.deviceFeatures)) << 32 | UInt64(low)
        guard offered & VirtioFeature.version1 != 0 else { return .failure(.featuresRefused) }
        let accepted = offered & ((wantedFeatures & ~transportFeatureBits)
                                  | VirtioFeature.version1 | VirtioFeature.accessPlatform)
        registers.write32(R.driverFeaturesSelect, 0)
        registers.write32(R.driverFeatures, UInt32(truncatingIfNeeded: accepted))
        registers.write32(R.driverFeaturesSelect, 1)
        registers.write32(R.driverFeatures, UInt32(truncatingIfNeeded: accepted >> 32))
        status |= VirtioStatus.featuresOK
        registers.write32(R.status, status)
        guard registers.read32(R.status) & VirtioStatus.featuresOK != 0 else { return .failure(.featuresRefused) }

        var queues: [VirtioDriverQueue] = []
        for (index, requested) in queueSizes.enumerated() {
            // §4.2.3.2: select, check it is not live, read the maximum, size it, place it, make it ready.
            registers.write32(R.queueSelect, UInt32(truncatingIfNeeded: index))
            guard registers.read32(R.queueReady) == 0 else { return .failure(.queueUnavailable) }
            let maximum = registers.read32(R.queueSizeMaximum)
            let limit = min(UInt32(requested), maximum, 32768)
            guard limit > 0 else { return .failure(.queueUnavailable) }
            // §2.7: a split queue's size is a power of two. Cannot truncate: limit <= 32768.
            let size = UInt16(1 << (31 - limit.leadingZeroBitCount))
            guard let queue = VirtioDriverQueue(index: index, size: size, dma: &dma) else {
                return .failure(.outOfDMAMemory)
            }
            registers.write32(R.queueSize, UInt32(size))
            writeAddress(registers, queue.descriptorTable, low: R.queueDescriptorLow, high: R.queueDescriptorHigh)
            writeAddress(registers, queue.availableRing, low: R.queueDriverLow, high: R.queueDriverHigh)
            writeAddress(registers, queue.usedRing, low: R.queueDeviceLow, high: R.queueDeviceHigh)
            registers.write32(R.queueReady, 1)
            queues.append(queue)
        }

        status |= VirtioStatus.driverOK
        registers.write32(R.status, status)
        let after = registers.read32(R.status)
        guard after & (VirtioStatus.deviceNeedsReset | VirtioStatus.failed) == 0 else { return .failure(.deviceFailed) }
        return .success((offered & accepted, queues))
    }

    static func writeAddress(_ registers: Registers, _ address: UInt64, low: UInt64, high: UInt64) {
        registers.write32(low, UInt32(truncatingIfNeeded: address))
        registers.write32(high, UInt32(truncatingIfNeeded: address >> 32))
    }

    public func has(_ feature: UInt64) -> Bool { negotiatedFeatures & feature == feature }

    // Device configuration space (§4.2.2: from offset 0x100), each field read at its own width.
    public func configRead8(_ offset: UInt64) -> UInt8 { registers.read8(VirtioMMIODriverRegister.config + offset) }
    public func configRead16(_ offset: UInt64) -> UInt16 { registers.read16(VirtioMMIODriverRegister.config + offset) }
    public func configRead32(_ offset: UInt64) -> UInt32 { registers.read32(VirtioMMIODriverRegister.config + offset) }

    /// A 64-bit field takes two reads; ConfigGeneration before and after tells whether the device changed
    /// the field in between (§2.5.1), in which case it is read again (a bounded number of times).
    public func configRead64(_ offset: UInt64) -> UInt64 {
        typealias R = VirtioMMIODriverRegister
        var value: UInt64 = 0
        for _ in 0..<16 {
            let before = registers.read32(R.configGeneration)
            let low = registers.read32(R.config + offset)
            let high = registers.read32(R.config + offset + 4)
            value = UInt64(high) << 32 | UInt64(low)
            if registers.read32(R.configGeneration) == before { break }
        }
        return value
    }

    /// Tells the device that queue `queue` has new available buffers (§4.2.3.3), after a barrier so the
    /// device sees the new avail.idx (VIRTIO_F_NOTIFICATION_DATA is never negotiated: the value is the index).
    public func notify(queue: Int) {
        registers.memoryBarrier()
        registers.write32(VirtioMMIODriverRegister.queueNotify, UInt32(truncatingIfNeeded: queue))
    }

    /// Reads InterruptStatus (bit 0 used buffer, bit 1 configuration change) and acknowledges those bits.
    public func acknowledgeInterrupt() -> UInt32 {
        let pending = registers.read32(VirtioMMIODriverRegister.interruptStatus)
        if pending != 0 { registers.write32(VirtioMMIODriverRegister.interruptAcknowledge, pending) }
        return pending
    }

    /// DEVICE_NEEDS_RESET (§2.1.2): the device hit an error it cannot recover from without a reset.
    public var needsReset: Bool {
        registers.read32(VirtioMMIODriverRegister.status) & VirtioStatus.deviceNeedsReset != 0
    }

    /// Writes 0 to Status: the device stops using every queue and the DMA memory may be reused.
    public func reset() { registers.write32(VirtioMMIODriverRegister.status, 0) }

    /// `VirtioDriverQueue.submit` on queue `queue` with this device's barrier; nil also for a bad index.
    public mutating func submit(_ buffers: [DeviceBuffer], queue: Int) -> UInt16? {
        guard queue >= 0, queue < queues.count else { return nil }
        let registers = self.registers
        return queues[queue].submit(buffers, barrier: { registers.memoryBarrier() })
    }

    /// `VirtioDriverQueue.takeUsed` on queue `queue` with this device's barrier.
    public mutating func takeUsed(queue: Int) -> (head: UInt16, length: UInt32)? {
        guard queue >= 0, queue < queues.count else { return nil }
        let registers = self.registers
        return queues[queue].takeUsed(barrier: { registers.memoryBarrier() })
    }
}
