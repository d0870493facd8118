// The virtio-mmio transport, device side: the 0x200-byte register window of one virtio device
// (virtio 1.2 §4.2, the modern layout, Version 2).
//
// This file owns what the driver sees through that window: identification, feature negotiation, the
// device status state machine (§2.1, §3.1), the per-queue setup registers, the interrupt status and
// the configuration generation, and it forwards the device-specific configuration space (0x100 on)
// to the device model. A queue becomes a `SplitVirtqueue` only when the driver sets QueueReady and
// its three areas lie inside guest RAM. It does not process queues and does not raise interrupts:
// a write returns a `VirtioMMIOEffect` telling the VMM what to do, the VMM drives the queues through
// `withQueue`, and it raises or lowers the device's interrupt line from `interruptStatus`.
//
// Choices the spec leaves open, and what this transport does:
// - VendorID is 0x534D_4D56, "VMMS" in memory order (the way QEMU's 0x554D_4551 reads "QEMU").
// - Offered features: the model's, plus VIRTIO_F_VERSION_1, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX.
// - Control registers (below 0x100) take only aligned 32-bit accesses; anything else reads as zero
//   and ignores writes, as do reserved offsets, write-only registers on read, read-only registers on
//   write, and everything past 0x200. Configuration space takes naturally aligned 1, 2 and 4 byte
//   accesses (§4.2.2.2); an 8-byte field is the driver's two 4-byte accesses.
// - No shared memory regions: SHMLenLow/High read 0xFFFF_FFFF, "no such region" (§4.2.2).
// - The driver can only set status bits; only a write of 0 (reset) clears them. DEVICE_NEEDS_RESET
//   is the device's bit and is ignored in driver writes; DRIVER_OK is ignored until FEATURES_OK holds.
// - QueueSel takes any value; a selector with no queue behind it reads QueueNumMax 0 (§4.2.2) and
//   ignores the other queue registers. QueueNum and the area addresses are frozen while the queue
//   is ready. An invalid QueueNum is remembered and makes the next QueueReady fail.
// - A guest mistake the device cannot work around (QueueReady with a bad size, before FEATURES_OK,
//   or with rings outside RAM) marks the device DEVICE_NEEDS_RESET (§2.1.2) rather than going on.

/// Register offsets of the virtio-mmio window (virtio 1.2 §4.2.2, "MMIO Device Register Layout").
public enum VirtioMMIORegister: UInt64 {
    case magicValue = 0x000
    case version = 0x004
    case deviceID = 0x008
    case vendorID = 0x00C
    case deviceFeatures = 0x010
    case deviceFeaturesSelector = 0x014
    case driverFeatures = 0x020
    case driverFeaturesSelector = 0x024
    case queueSelector = 0x030
    case queueSizeMaximum = 0x034
    case queueSize = 0x038
    case queueReady = 0x044
    case queueNotify = 0x050
    case interruptStatus = 0x060
    case interruptAcknowledge = 0x064
    case status = 0x070
    case queueDescriptorLow = 0x080
    case queueDescriptorHigh = 0x084
    case queueDriverLow = 0x090
    case queueDriverHigh = 0x094
    case queueDeviceLow = 0x0A0
    case queueDeviceHigh = 0x0A4
    case sharedMemorySelector = 0x0AC
    case sharedMemoryLengthLow = 0x0B0
    case sharedMemoryLengthHigh = 0x0B4
    case sharedMemoryBaseLow = 0x0B8
    case sharedMemoryBaseHigh = 0x0BC
    case queueReset = 0x0C0
    case configurationGeneration = 0x0FC
}

/// Constants of the virtio-mmio transport (virtio 1.2 §4.2.2).
public enum VirtioMMIO {
    public static let magicValue: UInt32 = 0x7472_6976          // "virt"
    public static let version: UInt32 = 2                       // the modern (non-legacy) layout
    public static let vendorID: UInt32 = 0x534D_4D56            // "VMMS"
    public static let configurationOffset: UInt64 = 0x100
    public static let windowSize: UInt64 = 0x200
    /// InterruptStatus bits: a used buffer notification, a configuration change notification.
    public static let usedBufferInterrupt: UInt32 = 1 << 0
    public static let configurationChangeInterrupt: UInt32 = 1 << 1
}

/// What the VMM must do after a register write.
/// `.statusChanged` also covers the device marking itself DEVICE_NEEDS_RESET, which sets an
/// InterruptStatus bit: after any effect the VMM drives the device's line from `interruptStatus != 0`.
public enum VirtioMMIOEffect: Equatable { case none, queueNotify(Int), statusChanged, reset, interruptAcknowledged }

public struct VirtioMMIOTransport<Model: VirtioDeviceModel> {
    public var model: Model
    /// nil until the driver sets QueueReady with valid areas.
    public private(set) var queues: [SplitVirtqueue?]
    public private(set) var status: UInt32 = 0
    /// Bit 0 used buffer, bit 1 configuration change.
    public private(set) var interruptStatus: UInt32 = 0
    /// The driver's features, latched when FEATURES_OK was accepted; 0 before that.
    public private(set) var negotiatedFeatures: UInt64 = 0
    /// ConfigGeneration (§4.2.2): changes whenever the configuration space may have changed.
    public private(set) var configurationGeneration: UInt32 = 0

    /// The driver's writes to one queue's setup registers (§4.2.3.2).
    struct QueueSetup {
        var size: UInt16
        var sizeIsValid = true
        var descriptorTable: UInt64 = 0
        var driverArea: UInt64 = 0
        var deviceArea: UInt64 = 0
        var ready = false
    }

    var queueSetups: [QueueSetup]
    var deviceFeaturesSelector: UInt32 = 0
    var driverFeaturesSelector: UInt32 = 0
    var driverFeatures: UInt64 = 0
    var queueSelector: UInt32 = 0

    public init(model: Model) {
        self.model = model
        queues = [SplitVirtqueue?](repeating: nil, count: max(model.queueCount, 0))
        queueSetups = [QueueSetup](repeating: QueueSetup(size: model.maximumQueueSize),
                                   count: max(model.queueCount, 0))
    }

    public var offeredFeatures: UInt64 {
        model.deviceFeatures | VirtioFeature.version1 | VirtioFeature.ringIndirectDescriptors
            | VirtioFeature.ringEventIndex
    }

    /// DRIVER_OK set and neither DEVICE_NEEDS_RESET nor FAILED (§2.1).
    public var isLive: Bool {
        status & VirtioStatus.driverOK != 0
            && status & (VirtioStatus.deviceNeedsReset | VirtioStatus.failed) == 0
    }

    /// The queue QueueSel names, or nil when the device has no such queue.
    var selectedQueue: Int? {
        queueSelector < UInt32(queueSetups.count) ? Int(queueSelector) : nil
    }

    // MARK: Register access

    /// `offset` is within the 0x200 window.
    public func read(offset: UInt64, width: Int) -> UInt32 {
        if offset >= VirtioMMIO.configurationOffset { return configurationRead(offset: offset, width: width) }
        guard width == 4, let register = VirtioMMIORegister(rawValue: offset) else { return 0 }
        switch register {
        case .magicValue: return VirtioMMIO.magicValue
        case .version: return VirtioMMIO.version
        case .deviceID: return model.deviceType.rawValue
        case .vendorID: return VirtioMMIO.vendorID
        case .deviceFeatures:
            // Selector n shows feature bits 32n ..< 32n + 32; all bits past 63 are zero.
            switch deviceFeaturesSelector {
            case 0: return UInt32(truncatingIfNeeded: offeredFeatures)
            case 1: return UInt32(truncatingIfNeeded: offeredFeatures >> 32)
            default: return 0
            }
        case .queueSizeMaximum:
            return selectedQueue == nil ? 0 : UInt32(model.maximumQueueSize)
        case .queueReady:
            guard let index = selectedQueue else { return 0 }
            return queueSetups[index].ready ? 1 : 0
        case .interruptStatus: return interruptStatus
        case .status: return status
        case .sharedMemoryLengthLow, .sharedMemoryLengthHigh: return 0xFFFF_FFFF
        case .configurationGeneration: return configurationGeneration
        default: return 0   // write-only registers; QueueReset without VIRTIO_F_RING_RESET
        }
    }

    public mutating func write(offset: UInt64, width: Int, value: UInt32, memory: GuestMemory) -> VirtioMMIOEffect {
        if offset >= VirtioMMIO.configurationOffset {
            configurationWrite(offset: offset, width: width, value: value)
            return .none
        }
        guard width == 4, let register = VirtioMMIORegister(rawValue: offset) else { return .none }
        switch register {
        case .deviceFeaturesSelector: deviceFeaturesSelector = value
        case .driverFeaturesSelector: driverFeaturesSelector = value
        case .driverFeatures:
            // §3.1.1: features are fixed once FEATURES_OK is accepted; bits past 63 do not exist.
            guard status & VirtioStatus.featuresOK == 0 else { break }
            switch driverFeaturesSelector {
            case 0: driverFeatures = driverFeatures & 0xFFFF_FFFF_0000_0000 | UInt64(value)
            case 1: driverFeatures = driverFeatures & 0x0000_0000_FFFF_FFFF | UInt64(value) << 32
            default: break
            }
        case .queueSelector: queueSelector = value
        case .queueSize:
            guard let index = selectedQueue, !queueSetups[index].ready else { break }
            // §2.7: a split queue's size is a power of two; §4.2.2: at most QueueNumMax.
            let valid = value != 0 && value & (value &- 1) == 0 && value <= UInt32(model.maximumQueueSize)
            queueSetups[index].sizeIsValid = valid
            if valid { queueSetups[index].size = UInt16(value) }   // cannot trap: value <= a UInt16
        case .queueReady: return writeQueueReady(value, memory: memory)
        case .queueNotify:
            // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index (§4.2.3.3).
            guard isLive, value < UInt32(queues.count), queues[Int(value)] != nil else { break }
            return .queueNotify(Int(value))
        case .interruptAcknowledge:
            interruptStatus &= ~value
            return .interruptAcknowledged
        case .status: return writeStatus(value)
        case .queueDescriptorLow, .queueDescriptorHigh, .queueDriverLow, .queueDriverHigh,
             .queueDeviceLow, .queueDeviceHigh:
            writeQueueAddress(register, value)
        default: break      // read-only registers, shared memory selector, QueueReset
        }
        return .none
    }

    // MARK: Device status (§2.1, §3.1)

    mutating func writeStatus(_ value: UInt32) -> VirtioMMIOEffect {
        if value == 0 {
            reset()
            return .reset
        }
        let driverBits = VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK
            | VirtioStatus.driverOK | VirtioStatus.failed
        var added = value & driverBits & ~status
        // §2.2.2: a device refusing the driver's features leaves FEATURES_OK clear; the driver sees
        // that when it re-reads the status (§3.1.1 step 6).
        if added & VirtioStatus.featuresOK != 0 && !acceptDriverFeatures() {
            added &= ~VirtioStatus.featuresOK
        }
        // §3.1.1: DRIVER_OK comes after FEATURES_OK; a device without negotiated features is not live.
        if added & VirtioStatus.driverOK != 0 && (status | added) & VirtioStatus.featuresOK == 0 {
            added &= ~VirtioStatus.driverOK
        }
        status |= added
        return added == 0 ? .none : .statusChanged
    }

    /// §2.2, §6: only offered features, VIRTIO_F_VERSION_1 required (a version 2 device is not
    /// legacy), and the model's own consent.
    mutating func acceptDriverFeatures() -> Bool {
        guard driverFeatures & ~offeredFeatures == 0,
              driverFeatures & VirtioFeature.version1 != 0,
              model.negotiate(features: driverFeatures) else { return false }
        negotiatedFeatures = driverFeatures
        return true
    }

    /// §2.4: back to the state after power-on. §4.2.2.1: InterruptStatus and every QueueReady clear.
    mutating func reset() {
        model.reset()
        status = 0
        interruptStatus = 0
        negotiatedFeatures = 0
        driverFeatures = 0
        deviceFeaturesSelector = 0
        driverFeaturesSelector = 0
        queueSelector = 0
        let count = max(model.queueCount, 0)
        queues = [SplitVirtqueue?](repeating: nil, count: count)
        queueSetups = [QueueSetup](repeating: QueueSetup(size: model.maximumQueueSize), count: count)
    }

    /// Marks the device broken: status |= DEVICE_NEEDS_RESET, interruptStatus |= 2 (config change),
    /// queues stop (§2.1.2). Only a reset (status 0) brings it back.
    public mutating func markNeedsReset() {
        status |= VirtioStatus.deviceNeedsReset
        interruptStatus |= VirtioMMIO.configurationChangeInterrupt
    }

    // MARK: Queues (§4.2.3.2)

    mutating func writeQueueAddress(_ register: VirtioMMIORegister, _ value: UInt32) {
        guard let index = selectedQueue, !queueSetups[index].ready else { return }
        func low(_ field: inout UInt64) { field = field & 0xFFFF_FFFF_0000_0000 | UInt64(value) }
        func high(_ field: inout UInt64) { field = field & 0x0000_0000_FFFF_FFFF | UInt64(value) << 32 }
        switch register {
        case .queueDescriptorLow: low(&queueSetups[index].descriptorTable)
        case .queueDescriptorHigh: high(&queueSetups[index].descriptorTable)
        case .queueDriverLow: low(&queueSetups[index].driverArea)
        case .queueDriverHigh: high(&queueSetups[index].driverArea)
        case .queueDeviceLow: low(&queueSetups[index].deviceArea)
        case .queueDeviceHigh: high(&queueSetups[index].deviceArea)
        default: break
        }
    }

    mutating func writeQueueReady(_ value: UInt32, memory: GuestMemory) -> VirtioMMIOEffect {
        guard let index = selectedQueue else { return .none }
        if value == 0 {
            queueSetups[index].ready = false
            queues[index] = nil
            return .none
        }
        // Only 1 means ready; a broken device starts nothing until it is reset.
        guard value == 1, !queueSetups[index].ready,
              status & VirtioStatus.deviceNeedsReset == 0 else { return .none }
        let setup = queueSetups[index]
        // §3.1.1: queues are set up after FEATURES_OK, which decides the ring features they use.
        guard status & VirtioStatus.featuresOK != 0, setup.sizeIsValid else {
            markNeedsReset()
            return .statusChanged
        }
        let configuration = VirtqueueConfiguration(
            size: setup.size, descriptorTable: GuestPhysicalAddress(setup.descriptorTable),
            availableRing: GuestPhysicalAddress(setup.driverArea), usedRing: GuestPhysicalAddress(setup.deviceArea))
        let queue = SplitVirtqueue(
            configuration: configuration,
            indirectDescriptors: negotiatedFeatures & VirtioFeature.ringIndirectDescriptors != 0,
            eventIndex: negotiatedFeatures & VirtioFeature.ringEventIndex != 0)
        do {
            try queue.validate(memory: memory)
        } catch {
            markNeedsReset()
            return .statusChanged
        }
        queueSetups[index].ready = true
        queues[index] = queue
        return .none
    }

    /// Access to a ready queue for the device model / VMM (returns nil if not ready or the device is broken).
    public mutating func withQueue<R>(_ index: Int, _ body: (inout SplitVirtqueue) -> R) -> R? {
        guard isLive, index >= 0, index < queues.count, queues[index] != nil else { return nil }
        return body(&queues[index]!)
    }

    /// Runs `body` on the device model and ready queue `index` together (a device serving its queue).
    /// A queue error means the guest broke the ring: the device is marked DEVICE_NEEDS_RESET (§2.1.2)
    /// and nil is returned, as it is when the queue is not ready or the device not live.
    public mutating func serve<R>(queue index: Int,
                                  _ body: (inout Model, inout SplitVirtqueue) throws(VirtqueueError) -> R) -> R? {
        guard isLive, index >= 0, index < queues.count, queues[index] != nil else { return nil }
        do {
            return try body(&model, &queues[index]!)
        } catch {
            markNeedsReset()
            return nil
        }
    }

    // MARK: Notifications to the driver (§2.3, §4.2.3.4)

    /// Sets interruptStatus bit 0 (the VMM then raises the virq). §3.1.2: no used buffer
    /// notifications before DRIVER_OK, so this does nothing unless the device is live.
    public mutating func raiseUsedBufferInterrupt() {
        guard isLive else { return }
        interruptStatus |= VirtioMMIO.usedBufferInterrupt
    }

    /// The model changed its configuration space: new generation (§2.5.1), interruptStatus bit 1.
    public mutating func raiseConfigurationChange() {
        configurationGeneration &+= 1
        interruptStatus |= VirtioMMIO.configurationChangeInterrupt
    }

    // MARK: Device configuration space (§4.2.2.2)

    static func isConfigurationAccess(offset: UInt64, width: Int) -> Bool {
        guard offset >= VirtioMMIO.configurationOffset, offset < VirtioMMIO.windowSize,
              width == 1 || width == 2 || width == 4 else { return false }
        return offset & UInt64(width - 1) == 0   // naturally aligned, hence inside the window
    }

    static func mask(width: Int) -> UInt32 {
        width == 4 ? 0xFFFF_FFFF : (1 << UInt32(width * 8)) - 1
    }

    func configurationRead(offset: UInt64, width: Int) -> UInt32 {
        guard Self.isConfigurationAccess(offset: offset, width: width) else { return 0 }
        let value = model.configurationRead(offset: offset - VirtioMMIO.configurationOffset, width: width) ?? 0
        return value & Self.mask(width: width)
    }

    mutating func configurationWrite(offset: UInt64, width: Int, value: UInt32) {
        guard Self.isConfigurationAccess(offset: offset, width: width) else { return }
        model.configurationWrite(offset: offset - VirtioMMIO.configurationOffset, width: width,
                                 value: value & Self.mask(width: width))
    }
}
