// The virtio devices of one VM: where each sits in the guest's physical address space, its
// interrupt, and its transport and model. `VirtualMachine` routes MMIO accesses and queue
// notifications here; the devices reach real I/O only through the platform's backends.
//
// One array per device type (not an enum of payloads), so that serving a queue mutates the
// device in place: no copies, no allocation on the I/O path.

public struct VirtioDeviceDescription: Equatable {
    public enum Kind: Equatable {
        case block(capacitySectors: UInt64, readOnly: Bool)
        /// `offloads`: checksum and TCP segmentation offload offered (a card on one of the VMM's networks).
        case network(mac: [UInt8], offloads: Bool = false)
        case console
    }
    public let kind: Kind
    public let base: GuestPhysicalAddress
    /// The device's interrupt as an INTID (an SPI: 32 + n).
    public let interrupt: UInt32

    public init(kind: Kind, base: GuestPhysicalAddress, interrupt: UInt32) {
        self.kind = kind
        self.base = base
        self.interrupt = interrupt
    }

    /// QEMU virt's virtio-mmio window: transport n at 0x0a00_0000 + 0x200·n with SPI 16 + n.
    public static func qemuVirtSlot(_ n: Int, _ kind: Kind) -> VirtioDeviceDescription {
        VirtioDeviceDescription(kind: kind, base: GuestPhysicalAddress(0x0a00_0000 + 0x200 * UInt64(n)),
                                interrupt: 48 + UInt32(n))
    }

    /// The guest's device-tree entry for this device.
    public var deviceTreeEntry: GuestDevice {
        .virtioMMIO(base: base.raw, size: VirtioMMIO.windowSize, spi: interrupt - 32)
    }
}

/// A device of type `Model` placed in the guest.
public struct PlacedVirtioDevice<Model: VirtioDeviceModel> {
    public var transport: VirtioMMIOTransport<Model>
    public let interrupt: UInt32
}

public struct VirtioDevices {
    public var blocks: [PlacedVirtioDevice<VirtioBlock>] = []
    public var networks: [PlacedVirtioDevice<VirtioNet>] = []
    public var consoles: [PlacedVirtioDevice<VirtioConsole>] = []
    /// The bus regions these devices claim, in the order given.
    public private(set) var regions: [MMIORegion] = []

    public init(_ descriptions: [VirtioDeviceDescription]) {
        for description in descriptions {
            let device: EmulatedDevice
            switch description.kind {
            case .block(let capacity, let readOnly):
                device = .virtioBlock(blocks.count)
                let model = VirtioBlock(device: blocks.count, capacitySectors: capacity, readOnly: readOnly,
                                        identifier: VirtioDevices.identifier(blocks.count))
                blocks.append(PlacedVirtioDevice(transport: VirtioMMIOTransport(model: model), interrupt: description.interrupt))
            case .network(let mac, let offloads):
                device = .virtioNetwork(networks.count)
                let model = VirtioNet(device: networks.count, mac: mac, offloads: offloads)
                networks.append(PlacedVirtioDevice(transport: VirtioMMIOTransport(model: model), interrupt: description.interrupt))
            case .console:
                device = .virtioConsole(consoles.count)
                consoles.append(PlacedVirtioDevice(transport: VirtioMMIOTransport(model: VirtioConsole(device: consoles.count)),
                                                   interrupt: description.interrupt))
            }
            regions.append(MMIORegion(base: description.base, size: VirtioMMIO.windowSize, device: device))
        }
    }

    /// "vmm-disk-N" as the virtio-blk serial (GET_ID).
    static func identifier(_ n: Int) -> [UInt8] {
        var id: [UInt8] = Array("vmm-disk-".utf8)
        if n >= 10 { id.append(UInt8(ascii: "0") + UInt8((n / 10) % 10)) }
        id.append(UInt8(ascii: "0") + UInt8(n % 10))
        return id
    }
}
