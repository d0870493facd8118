// The driver protection domains of the Microkit system: for each of the guest's devices, one PD that
// drives the board's virtio-mmio device, and the regions and the channel it shares with the VMM PD.
// This file turns the device list into those elements (`addDrivers(for:)`), writes them as XML and
// checks the rules that span several protection domains (names, priorities, interrupts, channels,
// regions that maps and setvars name). Every address, size, right, symbol and id comes from VMMCore's
// `MicrokitDriverLayout`, the contract the VMM PD and the drivers are built against; MicrokitSystem.swift
// owns the VMM's side, the regions' own rules and the rest of the XML.
//
// One PD per device, not one per kind of device: a driver maps only its own device's queues and data,
// so a fault or a bug in one driver cannot reach another device's requests. The exception is the board
// itself: see `boardPageRegion(slot:)`.

import VMMCore

/// One of the guest's devices as the system sees it: its kind, its index `n` among the devices of its
/// kind (disk0, disk1, net0, …) and its index `k` in the guest configuration's device list (blocks,
/// then networks, then consoles), which fixes its window and channel in its VMM. In a system of
/// several VMs, `owner` ("a_") starts the names of its PD and regions, and `boardPosition` counts the
/// board devices of every VM before it (SystemBuilder.microkitDevices); alone, both are k's.
public struct DriverDevice: Equatable, Sendable {
    public var kind: DriverKind
    public var index: Int
    public var position: Int
    public var boardPosition: Int
    public var owner: String

    public init(kind: DriverKind, index: Int, position: Int, boardPosition: Int? = nil, owner: String = "") {
        self.kind = kind
        self.index = index
        self.position = position
        self.boardPosition = boardPosition ?? position
        self.owner = owner
    }

    /// The board's virtio-mmio transport this device's driver drives.
    public var slot: Int { MicrokitDriverLayout.boardSlot(boardPosition) }
    /// "disk0" ("a_disk0" with an owner): the start of its PD's and its shared regions' names.
    public var prefix: String { owner + kind.namePrefix.description + String(index) }
    public var domainName: String { prefix + "_driver" }
    public var programImage: String { domainName + ".elf" }

    /// The devices of a configuration's device list, numbered within their kind and overall; the
    /// first on board transport `boardStart` (counted as `boardPosition`).
    public static func list(_ kinds: [DriverKind], boardStart: Int = 0, owner: String = "") -> [DriverDevice] {
        kinds.enumerated().map { k, kind in
            DriverDevice(kind: kind, index: kinds[..<k].count { $0 == kind }, position: k, boardPosition: boardStart + k,
                         owner: owner)
        }
    }
}

extension MicrokitSystem {
    /// A `setvar` of a protection domain: `symbol` is patched with the physical address of `regionPaddr`.
    public struct Setvar: Equatable, Sendable {
        public var symbol: String
        public var regionPaddr: String

        public init(symbol: String, regionPaddr: String) {
            self.symbol = symbol
            self.regionPaddr = regionPaddr
        }
    }

    /// A driver's protection domain: a root PD of its own, for the device it drives.
    public struct DriverDomain: Equatable, Sendable {
        public var device: DriverDevice
        public var name: String
        public var priority: UInt8
        public var stackSize: UInt64
        public var programImage: String
        public var mappings: [Mapping]
        public var interrupts: [Interrupt]
        public var setvars: [Setvar]
    }

    /// A `channel` between two protection domains, each end naming its PD and its id there.
    public struct Channel: Equatable, Sendable {
        public struct End: Equatable, Sendable {
            public var pd: String
            public var id: UInt32
            /// This end may make a protected procedure call to the other (whose priority must be higher).
            public var pp: Bool

            public init(pd: String, id: UInt32, pp: Bool = false) {
                self.pd = pd
                self.id = id
                self.pp = pp
            }
        }

        public var a: End
        public var b: End

        public init(_ a: End, _ b: End) {
            self.a = a
            self.b = b
        }

        var text: String { "channel ('\(a.pd)' \(a.id), '\(b.pd)' \(b.id))" }
    }

    /// Swift code needs more than Microkit's default single page of stack, as in the VMM.
    public static let driverStackSize: UInt64 = 0x1_0000

    /// The board page holding transport `slot`, mapped into every driver whose transport is in it.
    /// A transport is 0x200 bytes, so one 4 KiB page holds 8 of them and seL4 can map no less: the
    /// drivers of devices k = 0...7 (slots 31...24) share one page and can each reach the others'
    /// transports. Only drivers map it, never the VMM.
    public static func boardPageRegion(slot: Int) -> MemoryRegion {
        let page = MicrokitDriverLayout.boardPage(slot: slot)
        let index = (page - MicrokitDriverLayout.boardWindow) / PageSize.small.rawValue
        return MemoryRegion(name: "virtio_mmio_\(index)", size: PageSize.small.rawValue, physAddr: page)
    }

    /// Adds the driver PD of each device, with its board page, its DMA memory, the regions of its kind
    /// (mapped into the VMM at its window and into the driver with the contract's rights), its
    /// device's interrupt and its channel to the VMM.
    public mutating func addDrivers(for devices: [DriverDevice]) {
        let layout = MicrokitDriverLayout.self
        for device in devices {
            let page = Self.boardPageRegion(slot: device.slot)
            if !driverRegions.contains(where: { $0.name == page.name }) { driverRegions.append(page) }
            let dma = MemoryRegion(name: device.domainName + "_dma", size: layout.driverDMASize)
            driverRegions.append(dma)
            var mappings = [Mapping(region: page, vaddr: layout.driverRegisters, perms: .readWrite, cached: false),
                            Mapping(region: dma, vaddr: layout.driverDMA, perms: .readWrite, cached: true)]
            var setvars = [Setvar(symbol: layout.dmaPhysicalSymbol.description, regionPaddr: dma.name)]
            if device.kind == .block {
                // Zero copy: the device reaches this VM's RAM (and no other) by DMA at its physical address.
                setvars.append(Setvar(symbol: layout.guestRAMPhysicalSymbol.description, regionPaddr: guestRAM.region.name))
            }
            for shared in device.kind.sharedRegions {
                let region = MemoryRegion(name: device.prefix + "_" + shared.name.description, size: shared.size,
                                          pageSize: Self.pageSize(of: shared))
                driverRegions.append(region)
                if let perms = Permissions(shared.vmm) {
                    vmmDriverMappings.append(Mapping(region: region, vaddr: layout.vmmWindow(device.position) + shared.offset,
                                                     perms: perms, cached: true))
                }
                if let perms = Permissions(shared.driver) {
                    mappings.append(Mapping(region: region, vaddr: layout.driverWindow + shared.offset, perms: perms,
                                            cached: true))
                }
                if let symbol = shared.driverPhysicalSymbol {
                    setvars.append(Setvar(symbol: symbol.description, regionPaddr: region.name))
                }
            }
            drivers.append(DriverDomain(
                device: device, name: device.domainName, priority: layout.driverPriority, stackSize: Self.driverStackSize,
                programImage: device.programImage, mappings: mappings,
                // A block driver polls each request to completion (as on native): its line stays masked.
                interrupts: device.kind == .block ? []
                    : [Interrupt(irq: layout.boardInterrupt(slot: device.slot), channel: layout.driverDeviceChannel)],
                setvars: setvars))
            channels.append(Channel(.init(pd: vmmName, id: layout.vmmChannel(device.position)),
                                    .init(pd: device.domainName, id: layout.driverVMMChannel)))
        }
    }

    /// 2 MiB pages where the region's size and offset allow them (a block device's data), 4 KiB
    /// elsewhere. Every window starts on a 2 MiB boundary, so the offset decides the alignment.
    static func pageSize(of shared: DriverSharedRegion) -> PageSize {
        let large = PageSize.large.rawValue
        return shared.size.isMultiple(of: large) && shared.offset.isMultiple(of: large) ? .large : .small
    }
}

extension MicrokitSystem.Permissions {
    /// The contract's rights as `perms`; nil for `.none`: not mapped at all.
    init?(_ access: RegionAccess) {
        switch access {
        case .none: return nil
        case .read: self = .read
        case .readWrite: self = .readWrite
        }
    }
}

// MARK: - XML

extension MicrokitSystem.Interrupt {
    /// `trigger` is written only when it differs from Microkit's default (level).
    var attributes: [(String, String)] {
        var attributes = [("irq", String(irq)), ("id", String(channel))]
        if trigger != .level { attributes.append(("trigger", trigger.rawValue)) }
        return attributes
    }
}

extension MicrokitSystem.DriverDomain {
    func write(to xml: inout SDFWriter) {
        xml.open("protection_domain", [("name", name), ("priority", String(priority)), ("stack_size", hex(stackSize))])
        xml.empty("program_image", [("path", programImage)])
        for mapping in mappings { xml.empty("map", mapping.attributes) }
        for interrupt in interrupts { xml.empty("irq", interrupt.attributes) }
        for setvar in setvars { xml.empty("setvar", [("symbol", setvar.symbol), ("region_paddr", setvar.regionPaddr)]) }
        xml.close("protection_domain")
    }
}

extension MicrokitSystem.Channel {
    func write(to xml: inout SDFWriter) {
        xml.open("channel")
        for end in [a, b] {
            xml.empty("end", [("pd", end.pd), ("id", String(end.id))] + (end.pp ? [("pp", "true")] : []))
        }
        xml.close("channel")
    }
}

// MARK: - Validation

extension MicrokitSystem {
    /// The drivers' own rules and those that span protection domains, in the messages' usual form.
    func driverErrors() -> [String] {
        var errors: [String] = []
        if drivers.count > MicrokitDriverLayout.maxDevices {
            errors.append("system: \(drivers.count) driver protection domains, more than the"
                          + " \(MicrokitDriverLayout.maxDevices) devices the layout has windows and channels for")
        }
        let names = [vmmName] + drivers.map(\.name)
        var reported: [String] = []
        for name in names where !reported.contains(name) {
            let uses = names.count { $0 == name }
            guard uses > 1 else { continue }
            reported.append(name)
            errors.append("protection_domain '\(name)': name is used by \(uses) protection domains")
        }

        let vmmElement = "protection_domain '\(vmmName)'"
        for driver in drivers {
            let pd = "protection_domain '\(driver.name)'"
            checkName(driver.name, element: pd, into: &errors)
            checkName(driver.programImage, element: pd, field: "program_image path", into: &errors)
            if driver.priority > Self.maxPriority {
                errors.append("\(pd): priority \(driver.priority) is above the maximum \(Self.maxPriority)")
            } else if driver.priority <= vmmPriority {
                // A request the VMM hands over is served before the VMM runs again (MicrokitDriverLayout).
                errors.append("\(pd): priority \(driver.priority) is not above the priority \(vmmPriority) of \(vmmElement)")
            }
            errors += Self.stackSizeErrors(driver.stackSize, owner: pd)
            errors += Self.mappingErrors(driver.mappings, owner: pd)
            errors += Self.interruptErrors(driver.interrupts, owner: pd)
            errors += setvarErrors(driver, owner: pd)
        }
        errors += unknownRegionErrors()
        errors += sharedInterruptErrors()
        errors += channelErrors()
        return errors
    }

    /// Symbols are C names, set once per PD (its maps' setvars included), from regions that exist.
    private func setvarErrors(_ driver: DriverDomain, owner: String) -> [String] {
        var errors: [String] = []
        var symbols = driver.mappings.flatMap { [$0.setvarVaddr, $0.setvarSize].compactMap { $0 } }
        let regions = memoryRegions.map(\.name)
        for setvar in driver.setvars {
            let element = "\(owner): setvar '\(setvar.symbol)'"
            if !Self.isSymbolName(setvar.symbol) {
                errors.append("\(element): symbol is not a C symbol name")
            } else if symbols.contains(setvar.symbol) {
                errors.append("\(element): symbol is already set by another setvar")
            }
            symbols.append(setvar.symbol)
            if !regions.contains(setvar.regionPaddr) {
                errors.append("\(element): region_paddr '\(setvar.regionPaddr)' is not a memory_region")
            }
        }
        return errors
    }

    /// Every `map` names a `memory_region` of the system (Microkit: check_maps).
    private func unknownRegionErrors() -> [String] {
        let regions = memoryRegions.map(\.name)
        let owners = [("protection_domain '\(vmmName)'", vmmMappings), ("virtual_machine '\(vmName)'", vmMappings)]
            + drivers.map { ("protection_domain '\($0.name)'", $0.mappings) }
        return owners.flatMap { owner, mappings in
            mappings.filter { !regions.contains($0.region.name) }.map {
                "\(owner): map '\($0.region.name)': no memory_region is named '\($0.region.name)'"
            }
        }
    }

    /// A hardware interrupt goes to one protection domain only (Microkit: "duplicate irq").
    private func sharedInterruptErrors() -> [String] {
        var errors: [String] = []
        var owners: [(irq: UInt32, pd: String)] = interrupts.map { ($0.irq, vmmName) }
        for driver in drivers {
            for interrupt in driver.interrupts {
                if let first = owners.first(where: { $0.irq == interrupt.irq && $0.pd != driver.name }) {
                    errors.append("protection_domain '\(driver.name)': irq \(interrupt.irq): irq \(interrupt.irq) is"
                                  + " already an irq of protection_domain '\(first.pd)'")
                }
                owners.append((interrupt.irq, driver.name))
            }
        }
        return errors
    }

    /// Each end names an existing PD and an id in 0...61 that no irq or other channel end of that PD uses.
    private func channelErrors() -> [String] {
        var errors: [String] = []
        var used: [String: [(id: UInt32, user: String)]] = [:]
        used[vmmName] = interrupts.map { ($0.channel, "irq \($0.irq)") }
        for driver in drivers where used[driver.name] == nil {
            used[driver.name] = driver.interrupts.map { ($0.channel, "irq \($0.irq)") }
        }
        for name in externalDomains where used[name] == nil { used[name] = [] }
        for channel in channels {
            for end in [channel.a, channel.b] {
                let element = "\(channel.text): end '\(end.pd)'"
                guard let ids = used[end.pd] else {
                    errors.append("\(element): no protection_domain is named '\(end.pd)'")
                    continue
                }
                if end.id > Self.maxChannelID {
                    errors.append("\(element): id \(end.id) is not a channel id (0...\(Self.maxChannelID))")
                } else if let first = ids.first(where: { $0.id == end.id }) {
                    errors.append("\(element): id \(end.id) is already used by \(first.user)")
                }
                used[end.pd, default: []].append((end.id, channel.text))
            }
        }
        return errors
    }
}
