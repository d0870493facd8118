// The guest's configuration as the VMM learns it at boot: RAM, vCPUs, interrupt controller, kernel
// command line, the virtio devices and the board devices passed through to it, in a small binary blob ("VMMC") that the host tool builds from the system file and
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
    /// A network card on one of the VMM's own networks (a virtual switch joining VMs), not the board's:
    /// `network` is the switch's number in the system (0...15), the MAC as for `network`.
    case switchedNetwork(mac: [UInt8], network: Int)
    case console

    /// The MAC of a network card of either kind.
    public var mac: [UInt8]? {
        switch self {
        case .network(let mac), .switchedNetwork(let mac, _): return mac
        case .block, .console: return nil
        }
    }
}

/// A board device region given to the guest 1:1 (guest-physical = physical), with its interrupt:
/// the platform maps the region and routes the SPI; the guest's device tree gets a node for it.
public struct PassthroughDevice: Equatable {
    /// The node name before "@": 1...31 bytes of [a-z0-9_-] (a subset of DT spec §2.2.1's characters).
    public var name: [UInt8]
    /// 4 KiB aligned: stage 2 maps whole pages.
    public var address: UInt64
    /// A multiple of 4 KiB, > 0.
    public var size: UInt64
    /// GIC INTID, an SPI (32...1019); nil when the device's interrupt is not given to the guest.
    public var interrupt: UInt32?
    /// The node's `compatible` list, most specific first: at least one non-empty string, no NUL.
    public var compatible: [[UInt8]]

    public init(name: [UInt8], address: UInt64, size: UInt64, interrupt: UInt32?, compatible: [[UInt8]]) {
        self.name = name
        self.address = address
        self.size = size
        self.interrupt = interrupt
        self.compatible = compatible
    }

    /// The guest's device-tree entry for this device.
    public var deviceTreeEntry: GuestDevice {
        .passthrough(name: name, base: address, size: size, spi: interrupt.map { $0 - 32 }, compatible: compatible)
    }

    /// Bytes of `compatible` as a DT stringlist: each string followed by its NUL.
    var compatibleListLength: Int { compatible.reduce(0) { $0 + $1.count + 1 } }
}

/// Why a configuration (decoded or built by the host tool) cannot run. Each case names what is wrong.
public enum GuestConfigurationError: Error, Equatable {
    /// Fewer bytes than the header, or than the blob length the header declares.
    case tooShort
    /// The first word is not "VMMC": this is not a configuration blob.
    case badMagic(found: UInt32)
    case unsupportedVersion(UInt32)
    /// The declared blob length is not header + device records + passthrough records + bootargs.
    case badLength(declared: UInt32, computed: UInt32)
    case tooManyDevices(count: Int)
    case bootargsTooLong(length: Int)
    case bootargsContainNul
    /// GICv2 serves 1...8 CPU interfaces; QEMU virt's GICv3 redistributor region 1...123 vCPUs.
    case badVCPUCount(Int)
    /// The GIC version is neither 2 nor 3.
    case badGICVersion(UInt32)
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
    /// More than 8 passthrough devices.
    case tooManyPassthrough(count: Int)
    /// Passthrough device `index` has a bad name, an address or size that is not whole 4 KiB pages,
    /// a region wrapping past 2^64, an interrupt that is not a free SPI, or a bad compatible list;
    /// or its record is malformed (nonzero reserved byte, lengths running past its area).
    case badPassthrough(index: Int)
    /// Passthrough device `index` overlaps RAM, the GIC, the UART, a configured virtio transport
    /// or an earlier passthrough device.
    case passthroughOverlaps(index: Int)

    public var message: StaticString {
        switch self {
        case .tooShort: return "configuration: blob is truncated"
        case .badMagic: return "configuration: not a VMM configuration blob (bad magic)"
        case .unsupportedVersion: return "configuration: blob version not supported by this VMM"
        case .badLength: return "configuration: blob length does not match its contents"
        case .tooManyDevices: return "configuration: more than 32 devices"
        case .bootargsTooLong: return "configuration: bootargs longer than 2048 bytes"
        case .bootargsContainNul: return "configuration: bootargs contain a NUL byte"
        case .badVCPUCount: return "configuration: vCPU count must be 1...8 with a GICv2, 1...123 with a GICv3"
        case .badGICVersion: return "configuration: GIC version must be 2 or 3"
        case .ramNotAligned: return "configuration: RAM base and size must be multiples of 2 MiB"
        case .ramEmpty: return "configuration: RAM size is zero"
        case .ramEndsPastAddressSpace: return "configuration: RAM ends past the 64-bit address space"
        case .ramOverlapsDevices: return "configuration: RAM overlaps the board's devices"
        case .badDevice: return "configuration: a device entry is malformed"
        case .badMAC: return "configuration: a network MAC is not a 6-byte unicast address"
        case .tooManyPassthrough: return "configuration: more than 8 passthrough devices"
        case .badPassthrough: return "configuration: a passthrough device is malformed"
        case .passthroughOverlaps: return "configuration: a passthrough device overlaps RAM, a device or another passthrough"
        }
    }
}

/// Blob layout, version 3, and version 2, which it extends (version 1 had a 40-byte header and no
/// passthrough). All integers little-endian, none aligned; offsets in bytes from the blob's start.
/// A version 3 header is version 2's with one word more, `gic_version`; everything after the header
/// is the same, `header` bytes further on. The encoder writes version 2 for a GICv2 guest (the bytes
/// every VMM so far reads) and version 3 only for a GICv3 guest; the decoder reads both.
///
///     u32 magic          @0    0x434d4d56, the bytes "VMMC"
///     u32 version        @4    2 or 3
///     u32 blob_length    @8    header + 8·device_count + passthrough_length + bootargs_length,
///                              header = 48 (version 2) or 52 (version 3)
///     u32 vcpu_count     @12   1...8 (GICv2), 1...123 (GICv3)
///     u64 ram_base       @16   guest-physical, 2 MiB aligned
///     u64 ram_size       @24   > 0, 2 MiB aligned
///     u32 bootargs_length @32  ≤ 2048
///     u32 device_count   @36   ≤ 32
///     u32 passthrough_count @40  ≤ 8
///     u32 passthrough_length @44  bytes of all passthrough records together
///     u32 gic_version    @48   version 3 only: 2 or 3 (version 2: always a GICv2)
///     device[device_count] @header, 8 bytes each, in slot order:
///         u8 kind        +0    the virtio device ID (virtio v1.2 §5): 1 network, 2 block, 3 console
///         u8 flags       +1    block: bit 0 read-only; network: bit 0 on a VMM network, whose number
///                              is bits [7:4]; console: 0
///         u8 mac[6]      +2    network: the MAC; other kinds: zeros
///     passthrough[passthrough_count] @header + 8·device_count, back to back, 24 + n + c bytes each:
///         u64 address    +0    4 KiB aligned
///         u64 size       +8    4 KiB multiple, > 0
///         u32 interrupt  +16   GIC INTID 32...1019, or 0: none (INTID 0 is an SGI, never passed through)
///         u8 name_length +20   n, 1...31
///         u8 reserved    +21   0
///         u16 compatible_length +22  c, 2...256
///         u8 name[n]     +24   [a-z0-9_-]
///         u8 compatible[c] +24 + n  the strings, each followed by a NUL (the DT stringlist form)
///     u8 bootargs[bootargs_length] @header + 8·device_count + passthrough_length, no NUL, no terminator
///
/// Bytes past blob_length are ignored: the linker may pad the section the blob lives in.
public struct GuestConfiguration: Equatable {
    public var ramBase: UInt64
    public var ramSize: UInt64
    public var vcpuCount: Int
    /// The interrupt controller the guest sees (and its device tree describes).
    public var gicVersion: GICVersion
    /// The kernel command line, without a terminating NUL (and containing none).
    public var bootargs: [UInt8]
    /// In guest slot order: device n sits at 0x0a00_0000 + 0x200·n with SPI 16 + n.
    public var devices: [ConfiguredDevice]
    /// Board devices given to the guest; their device-tree nodes follow the virtio devices'.
    public var passthrough: [PassthroughDevice]

    public static let magic: UInt32 = 0x434d_4d56          // "VMMC" read little-endian
    /// The newest layout; `encoded` writes `versionGICv2` when that says everything.
    public static let version: UInt32 = 3
    public static let versionGICv2: UInt32 = 2
    public static let headerSize = 48
    public static let headerSizeVersion3 = 52
    public static let deviceRecordSize = 8
    /// A passthrough record's fixed part; its name and compatible list follow it.
    public static let passthroughRecordSize = 24
    public static let maxPassthrough = 8
    public static let maxPassthroughNameLength = 31
    /// The compatible list's bytes as a DT stringlist, NULs included.
    public static let maxCompatibleLength = 256
    static let pageSize: UInt64 = 0x1000
    /// QEMU virt has 32 virtio-mmio transports (hw/arm/virt.c NUM_VIRTIO_TRANSPORTS).
    public static let maxDevices = 32
    public static let maxBootargsLength = 2048
    /// GICv2: at most 8 CPU interfaces, and the PPI CPU mask in the device tree has 8 bits.
    public static let maxVCPUs = 8
    /// GICv3: as many redistributor frames as QEMU virt's redistributor region holds (123).
    public static let maxVCPUsGICv3 = Int(QEMUVirtBoard.gicRedistributorSize / QEMUVirtBoard.gicRedistributorFrameSize)

    /// The vCPU limit of a guest with `gic`.
    public static func maximumVCPUs(_ gic: GICVersion) -> Int { gic == .v2 ? maxVCPUs : maxVCPUsGICv3 }
    /// Linux booting.rst: the kernel's base is 2 MiB aligned; BootLayout puts it at the start of RAM.
    public static let ramAlignment: UInt64 = 0x20_0000

    static let kindNetwork: UInt8 = 1
    static let kindBlock: UInt8 = 2
    static let kindConsole: UInt8 = 3
    static let flagReadOnly: UInt8 = 1
    static let flagSwitched: UInt8 = 1
    /// The VMM's networks a system may have (a nibble of the flags).
    public static let maxSwitchedNetworks = 16

    /// The guest's MMIO, from the GIC distributor up to the end of the last virtio-mmio transport:
    /// guest RAM must stay clear of it, or RAM would shadow the devices in stage 2.
    static let deviceWindowStart: UInt64 = QEMUVirtBoard.gicDistributor
    static let deviceWindowEnd: UInt64 = 0x0a00_0000 + 0x200 * UInt64(maxDevices)
    /// The GIC's guest-physical frames, which no passthrough device may overlap: on GICv2 hw/arm/virt.c
    /// VIRT_GIC_DIST..VIRT_GIC_VCPU (distributor, CPU interface, GICH and GICV); on GICv3 the
    /// distributor and the whole redistributor region (the core emulates all of it).
    static func gicFrames(_ gic: GICVersion) -> [(start: UInt64, end: UInt64)] {
        switch gic {
        case .v2: return [(QEMUVirtBoard.gicDistributor, QEMUVirtBoard.gicV2FramesEnd)]
        case .v3: return [(QEMUVirtBoard.gicDistributor, QEMUVirtBoard.gicDistributor + QEMUVirtBoard.gicDistributorSize),
                          (QEMUVirtBoard.gicRedistributor, QEMUVirtBoard.gicRedistributor + QEMUVirtBoard.gicRedistributorSize)]
        }
    }

    /// QEMU virt's guest: 512 MiB at 0x4000_0000, one vCPU, a GICv2, the default command line, no devices.
    public init(ramBase: UInt64 = QEMUVirtBoard.guestRAMBase, ramSize: UInt64 = QEMUVirtBoard.guestRAMSize,
                vcpuCount: Int = 1, gicVersion: GICVersion = .v2, bootargs: [UInt8] = GuestConfiguration.defaultBootargs,
                devices: [ConfiguredDevice] = [], passthrough: [PassthroughDevice] = []) {
        self.ramBase = ramBase
        self.ramSize = ramSize
        self.vcpuCount = vcpuCount
        self.gicVersion = gicVersion
        self.bootargs = bootargs
        self.devices = devices
        self.passthrough = passthrough
    }

    /// QEMUVirtBoard.bootargs as bytes.
    public static var defaultBootargs: [UInt8] {
        var bytes: [UInt8] = []
        QEMUVirtBoard.bootargs.withUTF8Buffer { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// The rules of a runnable configuration; the decoder applies them too, after the layout checks.
    public func validate() throws(GuestConfigurationError) {
        guard vcpuCount >= 1 && vcpuCount <= Self.maximumVCPUs(gicVersion) else { throw .badVCPUCount(vcpuCount) }
        guard ramSize != 0 else { throw .ramEmpty }
        guard ramBase % Self.ramAlignment == 0 && ramSize % Self.ramAlignment == 0 else { throw .ramNotAligned }
        let (ramEnd, wraps) = ramBase.addingReportingOverflow(ramSize)
        guard !wraps else { throw .ramEndsPastAddressSpace }
        guard ramEnd <= Self.deviceWindowStart || ramBase >= Self.deviceWindowEnd else { throw .ramOverlapsDevices }
        guard bootargs.count <= Self.maxBootargsLength else { throw .bootargsTooLong(length: bootargs.count) }
        guard !bootargs.contains(0) else { throw .bootargsContainNul }
        guard devices.count <= Self.maxDevices else { throw .tooManyDevices(count: devices.count) }
        for (index, device) in devices.enumerated() {
            if let mac = device.mac {
                // Bit 0 of the first octet is the group (multicast) bit (IEEE 802-2014 §8.2).
                guard mac.count == 6, mac[0] & 1 == 0, mac.contains(where: { $0 != 0 }) else {
                    throw .badMAC(index: index)
                }
            }
            if case .switchedNetwork(_, let network) = device,
               !(network >= 0 && network < Self.maxSwitchedNetworks) { throw .badDevice(index: index) }
        }
        guard passthrough.count <= Self.maxPassthrough else { throw .tooManyPassthrough(count: passthrough.count) }
        for index in passthrough.indices {
            try validatePassthrough(index, ramEnd: ramEnd)
        }
    }

    private func validatePassthrough(_ index: Int, ramEnd: UInt64) throws(GuestConfigurationError) {
        let device = passthrough[index]
        guard device.name.count >= 1 && device.name.count <= Self.maxPassthroughNameLength,
              device.name.allSatisfy(Self.isPassthroughNameCharacter) else { throw .badPassthrough(index: index) }
        guard device.size != 0, device.address % Self.pageSize == 0, device.size % Self.pageSize == 0
        else { throw .badPassthrough(index: index) }
        let (end, wraps) = device.address.addingReportingOverflow(device.size)
        guard !wraps else { throw .badPassthrough(index: index) }
        if let intid = device.interrupt {
            // GICv2 §2.2.1: SPIs are INTIDs 32...1019 (so never the timer's PPI 27). The UART's SPI and the virtio transports' SPIs
            // are the VMM's; a line shared with another passthrough device could not be routed to both.
            guard intid >= 32 && intid <= 1019, intid != QEMUVirtBoard.uartInterrupt,
                  !(intid >= 48 && intid < 48 + UInt32(devices.count)),
                  !passthrough[..<index].contains(where: { $0.interrupt == intid })
            else { throw .badPassthrough(index: index) }
        }
        guard !device.compatible.isEmpty, device.compatibleListLength <= Self.maxCompatibleLength,
              device.compatible.allSatisfy({ !$0.isEmpty && !$0.contains(0) })
        else { throw .badPassthrough(index: index) }

        func overlaps(_ start: UInt64, _ limit: UInt64) -> Bool { device.address < limit && start < end }
        let virtioEnd = 0x0a00_0000 + 0x200 * UInt64(devices.count)
        guard !overlaps(ramBase, ramEnd), !Self.gicFrames(gicVersion).contains(where: { overlaps($0.start, $0.end) }),
              !overlaps(QEMUVirtBoard.uart, QEMUVirtBoard.uart + QEMUVirtBoard.uartSize),
              !overlaps(0x0a00_0000, virtioEnd),
              // Earlier regions passed the wrap check, so address + size is their exact end.
              !passthrough[..<index].contains(where: { overlaps($0.address, $0.address + $0.size) })
        else { throw .passthroughOverlaps(index: index) }
    }

    static func isPassthroughNameCharacter(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// The blob for this configuration. Validate first: an invalid configuration encodes to a blob
    /// that the decoder rejects (or, for a MAC that is not 6 bytes, decodes to a different MAC).
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        func put16(_ value: UInt16) { for i in 0..<2 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt16(i)))) } }
        func put32(_ value: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) } }
        func put64(_ value: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) } }
        let passthroughLength = passthrough.reduce(0) {
            $0 + Self.passthroughRecordSize + $1.name.count + $1.compatibleListLength
        }
        let layout = gicVersion == .v2 ? Self.versionGICv2 : Self.version
        let header = layout == Self.versionGICv2 ? Self.headerSize : Self.headerSizeVersion3
        let length = header + Self.deviceRecordSize * devices.count + passthroughLength + bootargs.count
        bytes.reserveCapacity(length)

        put32(Self.magic)
        put32(layout)
        put32(UInt32(truncatingIfNeeded: length))
        put32(UInt32(truncatingIfNeeded: vcpuCount))
        put64(ramBase)
        put64(ramSize)
        put32(UInt32(truncatingIfNeeded: bootargs.count))
        put32(UInt32(truncatingIfNeeded: devices.count))
        put32(UInt32(truncatingIfNeeded: passthrough.count))
        put32(UInt32(truncatingIfNeeded: passthroughLength))
        if layout != Self.versionGICv2 { put32(UInt32(gicVersion.rawValue)) }
        for device in devices {
            switch device {
            case .block(let readOnly):
                bytes += [Self.kindBlock, readOnly ? Self.flagReadOnly : 0, 0, 0, 0, 0, 0, 0]
            case .network(let mac):
                bytes += [Self.kindNetwork, 0]
                for i in 0..<6 { bytes.append(i < mac.count ? mac[i] : 0) }
            case .switchedNetwork(let mac, let network):
                bytes += [Self.kindNetwork, Self.flagSwitched | UInt8(truncatingIfNeeded: network << 4)]
                for i in 0..<6 { bytes.append(i < mac.count ? mac[i] : 0) }
            case .console:
                bytes += [Self.kindConsole, 0, 0, 0, 0, 0, 0, 0]
            }
        }
        for device in passthrough {
            put64(device.address)
            put64(device.size)
            put32(device.interrupt ?? 0)
            bytes += [UInt8(truncatingIfNeeded: device.name.count), 0]
            put16(UInt16(truncatingIfNeeded: device.compatibleListLength))
            bytes += device.name
            for string in device.compatible { bytes += string; bytes.append(0) }
        }
        bytes += bootargs
        return bytes
    }

    /// Decodes and validates a blob. `bytes` may be unaligned and longer than the blob.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(GuestConfigurationError) {
        guard bytes.count >= Self.headerSize else { throw .tooShort }
        // SAFETY (header reads): offset + width ≤ headerSize ≤ bytes.count, checked above (the
        // version 3 word at 48 only after its own check against headerSizeVersion3); record
        // reads: offset + width ≤ length ≤ bytes.count, checked below before the records are read.
        func u16(_ offset: Int) -> UInt16 {
            UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        }
        func u32(_ offset: Int) -> UInt32 {
            UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        }
        func u64(_ offset: Int) -> UInt64 {
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        let magic = u32(0)
        guard magic == Self.magic else { throw .badMagic(found: magic) }
        let version = u32(4)
        guard version == Self.version || version == Self.versionGICv2 else { throw .unsupportedVersion(version) }
        let header = version == Self.versionGICv2 ? Self.headerSize : Self.headerSizeVersion3
        guard bytes.count >= header else { throw .tooShort }
        let gicVersion: GICVersion
        if version == Self.versionGICv2 {
            gicVersion = .v2
        } else {
            let raw = u32(48)
            guard raw <= 0xFF, let decoded = GICVersion(rawValue: UInt8(raw)) else { throw .badGICVersion(raw) }
            gicVersion = decoded
        }
        let declaredLength = u32(8)
        let deviceCount = Int(u32(36))
        guard deviceCount <= Self.maxDevices else { throw .tooManyDevices(count: deviceCount) }
        let bootargsLength = Int(u32(32))
        guard bootargsLength <= Self.maxBootargsLength else { throw .bootargsTooLong(length: bootargsLength) }
        let passthroughCount = Int(u32(40))
        guard passthroughCount <= Self.maxPassthrough else { throw .tooManyPassthrough(count: passthroughCount) }
        // Cannot overflow: the counts were just bounded, and a u32 fits in Int (64-bit on every target).
        let passthroughOffset = header + Self.deviceRecordSize * deviceCount
        let bootargsOffset = passthroughOffset + Int(u32(44))
        let length = bootargsOffset + bootargsLength
        guard Int(declaredLength) == length else {
            throw .badLength(declared: declaredLength, computed: UInt32(truncatingIfNeeded: length))
        }
        // Every read below lies inside [0, length), so this one check covers them all: the passthrough
        // records are read only inside [passthroughOffset, bootargsOffset), each length checked first.
        guard length <= bytes.count else { throw .tooShort }

        var devices: [ConfiguredDevice] = []
        devices.reserveCapacity(deviceCount)
        for index in 0..<deviceCount {
            let record = header + Self.deviceRecordSize * index
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
                if flags == 0 {
                    devices.append(.network(mac: mac))
                } else {
                    guard flags & 0x0F == Self.flagSwitched else { throw .badDevice(index: index) }
                    devices.append(.switchedNetwork(mac: mac, network: Int(flags >> 4)))
                }
            case Self.kindConsole:
                guard flags == 0, macIsZero else { throw .badDevice(index: index) }
                devices.append(.console)
            default:
                throw .badDevice(index: index)
            }
        }
        var passthrough: [PassthroughDevice] = []
        passthrough.reserveCapacity(passthroughCount)
        var record = passthroughOffset
        for index in 0..<passthroughCount {
            guard bootargsOffset - record >= Self.passthroughRecordSize else { throw .badPassthrough(index: index) }
            let nameLength = Int(bytes[record + 20])
            let compatibleLength = Int(u16(record + 22))
            let nameOffset = record + Self.passthroughRecordSize
            let compatibleOffset = nameOffset + nameLength
            let next = compatibleOffset + compatibleLength
            guard bytes[record + 21] == 0, next <= bootargsOffset else { throw .badPassthrough(index: index) }
            let name = Array(UnsafeRawBufferPointer(rebasing: bytes[nameOffset..<compatibleOffset]))
            // A stringlist ends with its last string's NUL; splitting at NULs then loses nothing,
            // and an empty string (two NULs in a row) survives the split for validate() to refuse.
            guard compatibleLength > 0, bytes[next - 1] == 0 else { throw .badPassthrough(index: index) }
            var compatible: [[UInt8]] = [[]]
            for offset in compatibleOffset..<(next - 1) {
                if bytes[offset] == 0 { compatible.append([]) } else { compatible[compatible.count - 1].append(bytes[offset]) }
            }
            let intid = u32(record + 16)
            passthrough.append(PassthroughDevice(name: name, address: u64(record), size: u64(record + 8),
                                                 interrupt: intid == 0 ? nil : intid, compatible: compatible))
            record = next
        }
        // The records must fill their area exactly, or the bootargs would not start where declared.
        guard record == bootargsOffset else {
            throw .badLength(declared: declaredLength, computed: UInt32(truncatingIfNeeded: record + bootargsLength))
        }
        let bootargs = Array(UnsafeRawBufferPointer(rebasing: bytes[bootargsOffset..<length]))

        self.init(ramBase: u64(16), ramSize: u64(24), vcpuCount: Int(u32(12)), gicVersion: gicVersion,
                  bootargs: bootargs, devices: devices, passthrough: passthrough)
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
            case .network(let mac), .switchedNetwork(let mac, _):
                placed.append(.qemuVirtSlot(slot, .network(mac: mac)))
            case .console:
                placed.append(.qemuVirtSlot(slot, .console))
            }
        }
        return placed
    }
}
