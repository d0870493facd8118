// How the VMM protection domain and the driver protection domains meet on the Microkit platform:
// for each of the guest's devices, one driver PD drives the board's virtio device, and the two PDs
// share a few memory regions (queues and data) and one channel. Everything here is the contract
// between three parties that are built apart: the generated system description (the host tool's
// MicrokitSystem), the VMM PD and the driver PDs. None of them may hard-code a number of its own.
//
// Device k is the k-th entry of the guest configuration's device list (blocks, then networks, then
// consoles: SystemBuilder's order, which is also QEMU's command-line order, so it sits on the board's
// virtio-mmio transport 31 - k). Its shared regions appear at the same offsets inside a window of
// `windowSize` bytes in both PDs: at `vmmWindow(k)` in the VMM, at `driverWindow` in its driver.

/// The three kinds of driver protection domain.
public enum DriverKind: UInt32, Equatable, Sendable {
    case block = 1
    case network = 2
    case console = 3

    /// The prefix of this kind's PD and region names: disk0_driver, disk0_requests, net1_rx_free.
    public var namePrefix: StaticString {
        switch self {
        case .block: return "disk"
        case .network: return "net"
        case .console: return "console"
        }
    }

    /// The regions one device of this kind shares between the VMM and its driver.
    public var sharedRegions: [DriverSharedRegion] {
        switch self {
        case .block: return DriverSharedRegion.block
        case .network: return DriverSharedRegion.network
        case .console: return DriverSharedRegion.console
        }
    }
}

/// How a protection domain may touch a shared region: not mapped at all, read-only or read-write.
public enum RegionAccess: Equatable, Sendable {
    case none
    case read
    case readWrite
}

/// One region shared by the VMM and a driver: its name (after the device's prefix), where it sits in
/// the device's window, its size and each side's rights. A driver whose board device reads or writes
/// the region by DMA learns its physical address through `driverPhysicalSymbol` (Microkit's
/// `<setvar region_paddr=…>`); it needs no mapping for that.
public struct DriverSharedRegion: Equatable, Sendable {
    public let name: StaticString
    public let offset: UInt64
    public let size: UInt64
    public let vmm: RegionAccess
    public let driver: RegionAccess
    public let driverPhysicalSymbol: StaticString?

    public static func == (a: DriverSharedRegion, b: DriverSharedRegion) -> Bool {
        a.offset == b.offset && a.size == b.size && a.vmm == b.vmm && a.driver == b.driver
            && a.name.utf8Start == b.name.utf8Start
    }

    init(_ name: StaticString, offset: UInt64, size: UInt64, vmm: RegionAccess, driver: RegionAccess,
         driverPhysicalSymbol: StaticString? = nil) {
        self.name = name
        self.offset = offset
        self.size = size
        self.vmm = vmm
        self.driver = driver
        self.driverPhysicalSymbol = driverPhysicalSymbol
    }

    /// Block (sDDF's blk queues): requests and responses, the storage information the driver
    /// publishes, and the data the board device reads and writes by DMA (the driver never touches it).
    public static let block: [DriverSharedRegion] = [
        DriverSharedRegion("requests", offset: 0x0, size: 0x5000, vmm: .readWrite, driver: .readWrite),
        DriverSharedRegion("responses", offset: 0x5000, size: 0x2000, vmm: .readWrite, driver: .readWrite),
        DriverSharedRegion("info", offset: 0x7000, size: 0x1000, vmm: .read, driver: .readWrite),
        DriverSharedRegion("data", offset: 0x20_0000, size: 0x20_0000, vmm: .readWrite, driver: .none,
                           driverPhysicalSymbol: MicrokitDriverLayout.dataPhysicalSymbol),
    ]

    /// Network (sDDF's net queues): free and active queues for each direction; received frames are
    /// copied in by the driver, transmitted ones leave by DMA straight from `tx_data`.
    public static let network: [DriverSharedRegion] = [
        DriverSharedRegion("rx_free", offset: 0x0, size: 0x1000, vmm: .readWrite, driver: .readWrite),
        DriverSharedRegion("rx_active", offset: 0x1000, size: 0x1000, vmm: .readWrite, driver: .readWrite),
        DriverSharedRegion("tx_free", offset: 0x2000, size: 0x1000, vmm: .readWrite, driver: .readWrite),
        DriverSharedRegion("tx_active", offset: 0x3000, size: 0x1000, vmm: .readWrite, driver: .readWrite),
        DriverSharedRegion("rx_data", offset: 0x10_0000, size: 0x4_0000, vmm: .read, driver: .readWrite),
        DriverSharedRegion("tx_data", offset: 0x20_0000, size: 0x4_0000, vmm: .readWrite, driver: .none,
                           driverPhysicalSymbol: MicrokitDriverLayout.dataPhysicalSymbol),
    ]

    /// Console (sDDF's serial queues): one byte queue and its data for each direction.
    public static let console: [DriverSharedRegion] = [
        DriverSharedRegion("rx_queue", offset: 0x0, size: 0x1000, vmm: .readWrite, driver: .readWrite),
        DriverSharedRegion("tx_queue", offset: 0x1000, size: 0x1000, vmm: .readWrite, driver: .readWrite),
        DriverSharedRegion("rx_data", offset: 0x2000, size: 0x1000, vmm: .read, driver: .readWrite),
        DriverSharedRegion("tx_data", offset: 0x3000, size: 0x1000, vmm: .readWrite, driver: .read),
    ]
}

public enum MicrokitDriverLayout {
    /// At most this many devices have drivers (the native platform's limit too: 8 + 4 + 4).
    public static let maxDevices = 16

    // MARK: The VMM protection domain's side

    /// Device k's window in the VMM's address space (above guest RAM at 0x2000_0000 + 512 MiB).
    public static func vmmWindow(_ k: Int) -> UInt64 { 0x6000_0000 + UInt64(k) * windowSize }
    public static let windowSize: UInt64 = 0x40_0000
    /// The VMM's channel to device k's driver.
    public static func vmmChannel(_ k: Int) -> UInt32 { 16 + UInt32(k) }
    /// The EL1 physical timer (PPI 30, exported to user level by the SDK's kernel), which the VMM
    /// arms to wake a vCPU that waits in WFI at its guest's timer deadline, on this channel.
    public static let timerChannel: UInt32 = 10
    public static let timerInterrupt: UInt32 = 30

    // MARK: A driver protection domain's side

    /// A driver's channel to the VMM, and the one on which its board device's interrupt arrives.
    public static let driverVMMChannel: UInt32 = 0
    public static let driverDeviceChannel: UInt32 = 1
    /// The page of QEMU virt's virtio-mmio window that holds the driver's transport (uncached).
    public static let driverRegisters: UInt64 = 0x1000_0000
    /// The driver's own DMA memory (its virtqueues and buffers), not shared with anyone.
    public static let driverDMA: UInt64 = 0x1100_0000
    public static let driverDMASize: UInt64 = 0x8_0000
    /// The shared regions' window in the driver's address space.
    public static let driverWindow: UInt64 = 0x2000_0000

    /// Symbols of a driver's program image, patched per driver PD: the physical addresses of its
    /// DMA memory and of the shared data its device moves by DMA (Microkit `setvar region_paddr`),
    /// and, given to the linker (`--defsym`), its kind (DriverKind) and board transport slot.
    public static let dmaPhysicalSymbol: StaticString = "driver_dma_paddr"
    public static let dataPhysicalSymbol: StaticString = "driver_data_paddr"
    public static let kindSymbol: StaticString = "driver_kind"
    public static let slotSymbol: StaticString = "driver_device_slot"
    /// A block driver's view of its VM's guest RAM (blockGuestRAMWindow(physical:size:)): the RAM
    /// region's physical address, patched by `<setvar symbol=… region_paddr=…/>` of the VM's guest RAM
    /// region, and its size in bytes, given to the linker (`--defsym`). A driver without either serves
    /// its disk with no guest RAM window.
    public static let guestRAMPhysicalSymbol: StaticString = "driver_guest_ram_paddr"
    public static let guestRAMSizeSymbol: StaticString = "driver_guest_ram_size"

    /// Drivers run above the VMM (a request the VMM hands over is served before the VMM runs
    /// again), the VMM above its guest.
    public static let driverPriority: UInt8 = 254

    // MARK: The board

    /// Device k's transport on QEMU virt: QEMU plugs the first `-device virtio-…-device` of the command
    /// line into the highest transport, and SystemBuilder lists devices in configuration order.
    public static func boardSlot(_ k: Int) -> Int { 31 - k }
    public static let boardWindow: UInt64 = 0x0a00_0000
    public static let boardSlotSize: UInt64 = 0x200
    /// The physical page holding transport `slot`, and the transport's offset in it.
    public static func boardPage(slot: Int) -> UInt64 { boardWindow + (UInt64(slot) * boardSlotSize) & ~0xfff }
    public static func boardOffsetInPage(slot: Int) -> UInt64 { (UInt64(slot) * boardSlotSize) & 0xfff }
    /// The transport's interrupt (SPI 16 + slot).
    public static func boardInterrupt(slot: Int) -> UInt32 { 48 + UInt32(slot) }

    // MARK: Queue geometry, fixed for both sides

    /// Entries of each block request and response queue: enough for the largest guest request in one
    /// batch (virtio-blk's seg_max of 510 segments, each at least one entry), so a request costs one
    /// round trip to the driver (16 KiB of requests, 6 KiB of responses).
    public static let blockQueueCapacity: UInt32 = 512
    /// Zero copy: block request offsets from the end of the `data` region on name guest RAM, so a block
    /// driver hands the guest's own buffers to its device without mapping them. The VMM offsets guest
    /// RAM by `blockGuestRAMOffset`; each driver reaches its VM's RAM at the physical address and for
    /// the size it was built with (guestRAMPhysicalSymbol, guestRAMSizeSymbol).
    public static let blockGuestRAMOffset: UInt64 = 0x20_0000
    public static func blockGuestRAMWindow(physical: UInt64, size: UInt64) -> DMAWindow {
        DMAWindow(offset: blockGuestRAMOffset, physical: physical, size: size)
    }
    /// Bytes of one block transfer unit (sDDF's BLK_TRANSFER_SIZE).
    public static let blockTransferSize: UInt64 = 4096
    /// Entries of each net queue, and the bytes of one net buffer (rx_data and tx_data hold
    /// capacity × buffer size).
    public static let netQueueCapacity: UInt32 = 128
    public static let netBufferSize: UInt64 = 2048
    /// Bytes of each console data region used as a byte ring.
    public static let consoleDataCapacity: UInt32 = 0x1000
    /// How long the VMM waits for a driver's answer before failing the guest's request.
    public static let driverTimeoutMilliseconds: UInt64 = 5000
}
