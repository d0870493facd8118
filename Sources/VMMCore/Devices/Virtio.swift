// Shared vocabulary of the virtio devices (virtio 1.2, "Virtual I/O Device (VIRTIO) Version 1.2"):
// device types, feature bits, status bits, the buffers a descriptor chain names, and the
// interfaces between the pieces — the virtqueue (Virtqueue.swift), the virtio-mmio transport
// (VirtioMMIOTransport.swift), the device models (VirtioBlock/Net/Console.swift) and the
// platform's backends that do the real I/O. Device models never see the platform, only a backend.

public enum VirtioDeviceType: UInt32, Equatable {
    case network = 1
    case block = 2
    case console = 3
}

/// Device-independent feature bits (virtio 1.2 §6).
public enum VirtioFeature {
    public static let ringIndirectDescriptors: UInt64 = 1 << 28   // VIRTIO_F_INDIRECT_DESC
    public static let ringEventIndex: UInt64 = 1 << 29            // VIRTIO_F_EVENT_IDX
    public static let version1: UInt64 = 1 << 32                  // VIRTIO_F_VERSION_1
    public static let accessPlatform: UInt64 = 1 << 33
}

/// Device status field bits (virtio 1.2 §2.1).
public enum VirtioStatus {
    public static let acknowledge: UInt32 = 1
    public static let driver: UInt32 = 2
    public static let driverOK: UInt32 = 4
    public static let featuresOK: UInt32 = 8
    public static let deviceNeedsReset: UInt32 = 64
    public static let failed: UInt32 = 128
}

/// One buffer of a descriptor chain, already checked to lie entirely inside guest RAM.
public struct VirtqueueBuffer: Equatable {
    public let address: GuestPhysicalAddress
    public let length: UInt32
    /// VIRTQ_DESC_F_WRITE: the device writes this buffer (the driver reads it back).
    public let deviceWritable: Bool
    public init(address: GuestPhysicalAddress, length: UInt32, deviceWritable: Bool) {
        self.address = address
        self.length = length
        self.deviceWritable = deviceWritable
    }
}

/// What a guest did wrong with a virtqueue. Any of these marks the device DEVICE_NEEDS_RESET.
public enum VirtqueueError: Error, Equatable {
    case ringOutsideMemory              // descriptor table, available or used ring not inside guest RAM
    case descriptorIndexOutOfRange      // a head or next index >= queue size
    case bufferOutsideMemory            // a descriptor's [addr, addr+len) leaves guest RAM
    case chainTooLong                   // more descriptors than the queue size (a loop), or > 2^32 bytes
    case nestedIndirectTable            // VIRTQ_DESC_F_INDIRECT inside an indirect table (§2.7.5.3.1)
    case badIndirectTable               // indirect table length zero or not a multiple of 16
    case indirectNotNegotiated          // VIRTQ_DESC_F_INDIRECT without VIRTIO_F_INDIRECT_DESC
    case readableAfterWritable          // a device-readable buffer after a writable one (§2.7.4.2)
    case availableIndexTooFar           // avail.idx moved more than the queue size past what we consumed
}

/// The platform's real I/O for block devices. `device` numbers the VM's block devices from 0.
/// Segments name guest memory (checked); a backend reads or fills them through `memory` or, on
/// the native platform, hands their host-physical addresses to the board's own device.
public protocol BlockBackend {
    /// Capacity in 512-byte sectors, or nil when there is no such device.
    func blockCapacity(device: Int) -> UInt64?
    mutating func blockRead(device: Int, sector: UInt64, into segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool
    mutating func blockWrite(device: Int, sector: UInt64, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool
    mutating func blockFlush(device: Int) -> Bool
}

/// The platform's real I/O for network devices: frames go out whole (virtio-net header first).
public protocol NetworkBackend {
    /// Sends one frame: the segments hold a `virtio_net_hdr` (12 bytes) followed by the Ethernet frame.
    mutating func networkTransmit(device: Int, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool
}

/// The platform's side of a virtio console port: bytes the guest wrote.
public protocol ConsoleBackend {
    mutating func consoleWrite(device: Int, _ bytes: UnsafeRawBufferPointer)
}

/// A device model on the virtio-mmio transport: what the transport asks of block, net and console.
public protocol VirtioDeviceModel {
    var deviceType: VirtioDeviceType { get }
    /// Device-specific feature bits offered (the transport adds VIRTIO_F_VERSION_1 and the ring features).
    var deviceFeatures: UInt64 { get }
    var queueCount: Int { get }
    var maximumQueueSize: UInt16 { get }
    /// Reads `width` bytes (1, 2, 4) of the device configuration space at `offset`; nil past its end.
    func configurationRead(offset: UInt64, width: Int) -> UInt32?
    mutating func configurationWrite(offset: UInt64, width: Int, value: UInt32)
    /// The driver set FEATURES_OK with these features; false refuses them.
    mutating func negotiate(features: UInt64) -> Bool
    mutating func reset()
}

// MARK: Shared by the device models

/// Little-endian read of `width` (1, 2 or 4) bytes at `offset` of a configuration space `size` bytes
/// long whose byte `i` is `byte(i)`. Any offset inside the space is accepted, aligned or not; a read
/// that runs past its end, or of another width, is nil (the transport then reads as zero).
func virtioConfigurationRead(offset: UInt64, width: Int, size: Int, byte: (Int) -> UInt8) -> UInt32? {
    guard width == 1 || width == 2 || width == 4 else { return nil }
    guard offset <= UInt64(size), UInt64(width) <= UInt64(size) - offset else { return nil }
    // Cannot overflow: offset + width <= size, a small Int, was checked above.
    let start = Int(offset)
    var value: UInt32 = 0
    for i in 0..<width {
        value |= UInt32(byte(start + i)) << (8 * UInt32(i))
    }
    return value
}

/// Feature bits whose meaning belongs to the device type: 0–23 and 50–127 (virtio 1.2 §6). A driver
/// may accept only those of them that the device offered.
var virtioDeviceSpecificFeatures: UInt64 { ((1 << 24) - 1) | ~((1 << 50) - 1) }

/// The negotiation every device model does: the driver may accept any transport feature, but of the
/// device-specific ones only those the device offered.
func virtioAcceptsFeatures(_ features: UInt64, offered: UInt64) -> Bool {
    features & virtioDeviceSpecificFeatures & ~offered == 0
}
