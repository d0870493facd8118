// The guest's configuration as the VMM learns it at boot: RAM, vCPUs, kernel command line and the
// virtio devices, in a small binary blob ("VMMC") that the host tool builds from the system file and
// links into the VMM's image next to the kernel and initrd.
//
// This file owns the blob's layout (encode and decode) and the rules every configuration must obey,
// so the host tool (which validates before encoding, with messages naming the TOML field) and the VMM
// (which decodes what may be a corrupt or mismatched blob) check the same things. Decoding checks
// every length against the buffer before reading, so no blob can make it trap. Turning the devices
// into guest placements is `placements`; loading the guest is GuestBoot's, mapping RAM the platform's.

/// One virtio device the guest is given; its slot is its position in `GuestConfiguration.devices`.
public enum ConfiguredDevice: Equatable {
    case block(readOnly: Bool)
    /// Six bytes, unicast and not all zero (a MAC Linux accepts: is_valid_ether_addr).
    case network(mac: [UInt8])
    case console
}

/// Why a configuration (decoded or built by the host tool) cannot run. Each case names what is wrong.
public enum GuestConfigurationError: Error, Equatable {
    /// Fewer bytes than the header, or than the blob length the header declares.
    case tooShort
    /// The first word is not "VMMC": this is not a configuration blob.
    case badMagic(found: UInt32)
    case unsupportedVersion(UInt32)
    /// The declared blob length is not header + device records + bootargs.
    case badLength(declared: UInt32, computed: UInt32)
    case tooManyDevices(count: Int)
    case bootargsTooLong(length: Int)
    case bootargsContainNul
    /// GICv2 serves 1...8 CPU interfaces.
    case badVCPUCount(Int)
    /// RAM base or size is not a multiple of 2 MiB.
    case ramNotAligned
    case ramEmpty
    /// ramBase + ramSize wraps past 2^64.
    case ramEndsPastAddressSpace
    /// RAM covers part of the board's device window (GIC, UART, virtio-mmio transports).
    case ramOverlapsDevices
    /// Unknown device kind, unknown flag bits, or a MAC on a device that is not a network card.
    case badDevice(index: Int)
    /// The MAC of network device `index` is not 6 bytes, is multicast, or is all zeros.
    case badMAC(index: Int)

    public var message: StaticString {
        switch self {
        case .tooShort: return "configuration: blob is truncated"
        case .badMagic: return "configuration: not a VMM configuration blob (bad magic)"
        case .unsupportedVersion: return "configuration: blob version not supported by this VMM"
        case .badLength: return "configuration: blob length does not match its contents"
        case .tooManyDevices: return "configuration: more than 32 devices"
        case .bootargsTooLong: return "configuration: bootargs longer than 2048 bytes"
        case .bootargsContainNul: return "configuration: bootargs contain a NUL byte"
        case .badVCPUCount: return "configuration: vCPU count must be 1...8"
        case .ramNotAligned: return "configuration: RAM base and size must be multiples of 2 MiB"
        case .ramEmpty: return "configuration: RAM size is zero"
        case .ramEndsPastAddressSpace: return "configuration: RAM ends past the 64-bit address space"
        case .ramOverlapsDevices: return "configuration: RAM overlaps the board's devices"
        case .badDevice: return "configuration: a device entry is malformed"
        case .badMAC: return "configuration: a network MAC is not a 6-byte unicast address"
        }
    }
}

/// Blob layout, version 1. All integers little-endian; offsets in bytes from the blob's start.
///
///     u32 magic          @0    0x434d4d56, the bytes "VMMC"
///     u32 version        @4    1
///     u32 blob_length    @8    40 + 8·device_count + bootargs_length: the whole blob
///     u32 vcpu_count     @12   1...8
///     u64 ram_base       @16   guest-physical, 2 MiB aligned
///     u64 ram_size       @24   > 0, 2 MiB aligned
///     u32 bootargs_length @32  ≤ 2048
///     u32 device_count   @36   ≤ 32
///     device[device_count] @40, 8 bytes each, in slot order:
///         u8 kind        +0    the virtio device ID (virtio v1.2 §5): 1 network, 2 block, 3 console
///         u8 flags       +1    block: bit 0 read-only; other kinds: 0
///         u8 mac[6]      +2    network: the MAC; other kinds: zeros
///     u8 bootargs[bootargs_length] @40 + 8·device_count, no NUL and no terminator
///
/// Bytes past blob_length are ignored: the linker may pad the section the blob lives in.
public struct GuestConfiguration: Equatable {
    public var ramBase: UInt64
    public var ramSize: UInt64
    public var vcpuCount: Int
    /// The kernel command line, without a terminating NUL (and containing none).
    public var bootargs: [UInt8]
    /// In guest slot order: device n sits at 0x0a00_0000 + 0x200·n with SPI 16 + n.
    public var devices: [ConfiguredDevice]

    public static let magic: UInt32 = 0x434d_4d56          // "VMMC" read little-endian
    public static let version: UInt32 = 1
    public static let headerSize = 40
    public static let deviceRecordSize = 8
    /// QEMU virt has 32 virtio-mmio transports (hw/arm/virt.c NUM_VIRTIO_TRANSPORTS).
    public static let maxDevices = 32
    public static let maxBootargsLength = 2048
    /// GICv2: at most 8 CPU interfaces, and the PPI CPU mask in the device tree has 8 bits.
    public static let maxVCPUs = 8
    /// Linux booting.rst: the kernel's base is 2 MiB aligned; BootLayout puts it at the start of RAM.
    public static let ramAlignment: UInt64 = 0x20_0000

    static let kindNetwork: UInt8 = 1
    static let kindBlock: UInt8 = 2
    static let kindConsole: UInt8 = 3
    static let flagReadOnly: UInt8 = 1

    /// The guest's MMIO, from the GIC distributor up to the end of the last virtio-mmio transport:
    /// guest RAM must stay clear of it, or RAM would shadow the devices in stage 2.
    static let deviceWindowStart: UInt64 = QEMUVirtBoard.gicDistributor
    static let deviceWindowEnd: UInt64 = 0x0a00_0000 + 0x200 * UInt64(maxDevices)

    /// QEMU virt's guest: 512 MiB at 0x4000_0000, one vCPU, the default command line, no devices.
    public init(ramBase: UInt64 = QEMUVirtBoard.guestRAMBase, ramSize: UInt64 = QEMUVirtBoard.guestRAMSize,
                vcpuCount: Int = 1, bootargs: [UInt8] = GuestConfiguration.defaultBootargs,
                devices: [ConfiguredDevice] = []) {
        self.ramBase = ramBase
        self.ramSize = ramSize
        self.vcpuCount = vcpuCount
        self.bootargs = bootargs
        self.devices = devices
    }

    /// QEMUVirtBoard.bootargs as bytes.
    public static var defaultBootargs: [UInt8] {
        var bytes: [UInt8] = []
        QEMUVirtBoard.bootargs.withUTF8Buffer { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// The rules of a runnable configuration; the decoder applies them too, after the layout checks.
    public func validate() throws(GuestConfigurationError) {
        guard vcpuCount >= 1 && vcpuCount <= Self.maxVCPUs else { throw .badVCPUCount(vcpuCount) }
        guard ramSize != 0 else { throw .ramEmpty }
        guard ramBase % Self.ramAlignment == 0 && ramSize % Self.ramAlignment == 0 else { throw .ramNotAligned }
        let (ramEnd, wraps) = ramBase.addingReportingOverflow(ramSize)
        guard !wraps else { throw .ramEndsPastAddressSpace }
        guard ramEnd <= Self.deviceWindowStart || ramBase >= Self.deviceWindowEnd else { throw .ramOverlapsDevices }
        guard bootargs.count <= Self.maxBootargsLength else { throw .bootargsTooLong(length: bootargs.count) }
        guard !bootargs.contains(0) else { throw .bootargsContainNul }
        guard devices.count <= Self.maxDevices else { throw .tooManyDevices(count: devices.count) }
        for (index, device) in devices.enumerated() {
            if case .network(let mac) = device {
                // Bit 0 of the first octet is the group (multicast) bit (IEEE 802-2014 §8.2).
                guard mac.count == 6, mac[0] & 1 == 0, mac.contains(where: { $0 != 0 }) else {
                    throw .badMAC(index: index)
                }
            }
        }
    }

    /// The blob for this configuration. Validate first: an invalid configuration encodes to a blob
    /// that the decoder rejects (or, for a MAC that is not 6 bytes, decodes to a different MAC).
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.headerSize + Self.deviceRecordSize * devices.count + bootargs.count)
        func put32(_ value: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) } }
        func put64(_ value: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) } }
        let length = Self.headerSize + Self.deviceRecordSize * devices.count + bootargs.count

        put32(Self.magic)
        put32(Self.version)
        put32(UInt32(truncatingIfNeeded: length))
        put32(UInt32(truncatingIfNeeded: vcpuCount))
        put64(ramBase)
        put64(ramSize)
        put32(UInt32(truncatingIfNeeded: bootargs.count))
        put32(UInt32(truncatingIfNeeded: devices.count))
        for device in devices {
            switch device {
            case .block(let readOnly):
                bytes += [Self.kindBlock, readOnly ? Self.flagReadOnly : 0, 0, 0, 0, 0, 0, 0]
            case .network(let mac):
                bytes += [Self.kindNetwork, 0]
                for i in 0..<6 { bytes.append(i < mac.count ? mac[i] : 0) }
            case .console:
                bytes += [Self.kindConsole, 0, 0, 0, 0, 0, 0, 0]
            }
        }
        bytes += bootargs
        return bytes
    }

    /// Decodes and validates a blob. `bytes` may be unaligned and longer than the blob.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(GuestConfigurationError) {
        guard bytes.count >= Self.headerSize else { throw .tooShort }
        // SAFETY (all header reads): offset + width ≤ headerSize ≤ bytes.count, checked above.
        func u32(_ offset: Int) -> UInt32 {
            UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        }
        func u64(_ offset: Int) -> UInt64 {
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        let magic = u32(0)
        guard magic == Self.magic else { throw .badMagic(found: magic) }
        let version = u32(4)
        guard version == Self.version else { throw .unsupportedVersion(version) }
        let declaredLength = u32(8)
        let deviceCount = Int(u32(36))
        guard deviceCount <= Self.maxDevices else { throw .tooManyDevices(count: deviceCount) }
        let bootargsLength = Int(u32(32))
        guard bootargsLength <= Self.maxBootargsLength else { throw .bootargsTooLong(length: bootargsLength) }
        // Cannot overflow: both counts were just bounded (40 + 8·32 + 2048).
        let bootargsOffset = Self.headerSize + Self.deviceRecordSize * deviceCount
        let length = bootargsOffset + bootargsLength
        guard Int(declaredLength) == length else {
            throw .badLength(declared: declaredLength, computed: UInt32(length))
        }
        // Every read below lies inside [0, length), so this one check covers them all.
        guard length <= bytes.count else { throw .tooShort }

        var devices: [ConfiguredDevice] = []
        devices.reserveCapacity(deviceCount)
        for index in 0..<deviceCount {
            let record = Self.headerSize + Self.deviceRecordSize * index
            let kind = bytes[record]
            let flags = bytes[record + 1]
            var mac: [UInt8] = []
            for i in 0..<6 { mac.append(bytes[record + 2 + i]) }
            let macIsZero = !mac.contains(where: { $0 != 0 })
            switch kind {
            case Self.kindBlock:
                guard flags & ~Self.flagReadOnly == 0, macIsZero else { throw .badDevice(index: index) }
                devices.append(.block(readOnly: flags & Self.flagReadOnly != 0))
            case Self.kindNetwork:
                guard flags == 0 else { throw .badDevice(index: index) }
                devices.append(.network(mac: mac))
            case Self.kindConsole:
                guard flags == 0, macIsZero else { throw .badDevice(index: index) }
                devices.append(.console)
            default:
                throw .badDevice(index: index)
            }
        }
        let bootargs = Array(UnsafeRawBufferPointer(rebasing: bytes[bootargsOffset..<length]))

        self.init(ramBase: u64(16), ramSize: u64(24), vcpuCount: Int(u32(12)), bootargs: bootargs, devices: devices)
        try validate()
    }

    /// Where each device goes: device n in QEMU virt's virtio-mmio slot n (`qemuVirtSlot`).
    /// `blockCapacity(i)` gives the capacity in 512-byte sectors of the i-th *block* device (counting
    /// block devices only, as VirtioDevices and the platform's block backends number them). A block
    /// device without a backend (nil) is still placed, with capacity 0: the guest sees an empty disk
    /// whose I/O fails, and every other device keeps its slot, address, interrupt and backend index.
    public func placements(blockCapacity: (Int) -> UInt64?) -> [VirtioDeviceDescription] {
        var placed: [VirtioDeviceDescription] = []
        placed.reserveCapacity(devices.count)
        var blocks = 0
        for (slot, device) in devices.enumerated() {
            switch device {
            case .block(let readOnly):
                let capacity = blockCapacity(blocks) ?? 0
                blocks += 1
                placed.append(.qemuVirtSlot(slot, .block(capacitySectors: capacity, readOnly: readOnly)))
            case .network(let mac):
                placed.append(.qemuVirtSlot(slot, .network(mac: mac)))
            case .console:
                placed.append(.qemuVirtSlot(slot, .console))
            }
        }
        return placed
    }
}
