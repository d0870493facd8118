// The guest-physical address ranges whose accesses the core emulates, and which device owns each.
//
// Devices are an enum, not protocol existentials (Embedded Swift), so dispatch is a switch in
// `VirtualMachine`. A device sees only an offset into its own range, never the guest address.

public enum EmulatedDevice: Equatable {
    case gicDistributor
    /// GICv3 only: the redistributors, one 128 KiB frame pair per vCPU (offsets from the first).
    case gicRedistributor
    /// The n-th virtio block, network or console device of the VM (`VirtioDevices`).
    case virtioBlock(Int)
    case virtioNetwork(Int)
    case virtioConsole(Int)
    /// The VM's emulated PL011 (`VirtualMachine.uart`), for a VM that does not own the board's.
    case uart
}

public struct MMIORegion: Equatable {
    public let base: GuestPhysicalAddress
    public let size: UInt64
    public let device: EmulatedDevice
    public init(base: GuestPhysicalAddress, size: UInt64, device: EmulatedDevice) {
        self.base = base
        self.size = size
        self.device = device
    }
}

public struct MMIOBus {
    public private(set) var regions: [MMIORegion]

    public init(regions: [MMIORegion]) { self.regions = regions }

    /// Adds regions (devices placed after the bus was made). Overlaps are the caller's mistake to
    /// avoid; `find` answers with the first region that holds the whole access.
    public mutating func add(_ more: [MMIORegion]) { regions.append(contentsOf: more) }

    /// QEMU virt's GICv2 distributor at 0x0800_0000 (64 KiB frame, registers in the first 4 KiB).
    public static var standard: MMIOBus { standard(gic: .v2) }

    /// The emulated frames of QEMU virt's GIC: the distributor, and for GICv3 the whole
    /// redistributor region (frames past the last vCPU's read as zero rather than stop the guest).
    public static func standard(gic: GICVersion) -> MMIOBus {
        var regions = [MMIORegion(base: GuestPhysicalAddress(QEMUVirtBoard.gicDistributor),
                                  size: QEMUVirtBoard.gicDistributorSize, device: .gicDistributor)]
        if gic == .v3 {
            regions.append(MMIORegion(base: GuestPhysicalAddress(QEMUVirtBoard.gicRedistributor),
                                      size: QEMUVirtBoard.gicRedistributorSize, device: .gicRedistributor))
        }
        return MMIOBus(regions: regions)
    }

    /// The device owning all of [address, address + length) and the offset of `address` in it.
    public func find(_ address: GuestPhysicalAddress, length: UInt64) -> (EmulatedDevice, UInt64)? {
        for region in regions where address.raw >= region.base.raw {
            let offset = address.raw - region.base.raw
            if offset < region.size && length <= region.size - offset {
                return (region.device, offset)
            }
        }
        return nil
    }
}
