// The Microkit system description (the `.system` XML given to the `microkit` tool) for the VMM:
// one protection domain running the VMM, with one child virtual machine whose RAM and passed-through
// devices are memory regions, and the hardware interrupts the VMM forwards to the guest; beside it,
// one driver protection domain per guest device, joined to the VMM by shared regions and a channel
// (MicrokitDrivers.swift). This file owns the model, its validation against Microkit 2.0.1's rules,
// and the XML text; the addresses come from VMMCore's `QEMUVirtBoard`/`MicrokitLayout`/
// `MicrokitDriverLayout`, and writing the file is the `vmm` tool's job.
//
// Syntax: the Microkit 2.0.1 manual, "System Description File". Where the manual and the 2.0.1 tool
// disagree, the tool wins, because it is what rejects the file (tool/microkit/src/sdf.rs at tag 2.0.1):
// channel and vCPU ids go up to 61 (PD_MAX_ID; the manual says "less than 63"), and `irq`, `id` and
// vCPU `id` are parsed as decimal only, so those are written in decimal and only addresses/sizes in hex.

import VMMCore

public enum MicrokitSystemError: Error, Equatable, Sendable {
    /// Every problem found, one line each, naming the element and the field.
    case invalid([String])
}

public struct MicrokitSystem: Equatable, Sendable {
    /// The page sizes Microkit supports on AArch64 ("Page sizes by architecture").
    public enum PageSize: UInt64, Sendable {
        case small = 0x1000
        case large = 0x20_0000
    }

    /// `perms` of a `map`: a combination of r, w, x.
    public struct Permissions: OptionSet, Equatable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let read = Permissions(rawValue: 1)
        public static let write = Permissions(rawValue: 2)
        public static let execute = Permissions(rawValue: 4)
        public static let readWrite: Permissions = [.read, .write]
        public static let readWriteExecute: Permissions = [.read, .write, .execute]

        var text: String {
            (contains(.read) ? "r" : "") + (contains(.write) ? "w" : "") + (contains(.execute) ? "x" : "")
        }
    }

    /// A `memory_region`: a fixed physical range when `physAddr` is set, else allocated by the tool.
    public struct MemoryRegion: Equatable, Sendable {
        public var name: String
        public var size: UInt64
        public var pageSize: PageSize
        public var physAddr: UInt64?

        public init(name: String, size: UInt64, pageSize: PageSize = .small, physAddr: UInt64? = nil) {
            self.name = name
            self.size = size
            self.pageSize = pageSize
            self.physAddr = physAddr
        }
    }

    /// A `map` of a region into the VMM's address space or the guest's (where vaddr is an IPA).
    public struct Mapping: Equatable, Sendable {
        public var region: MemoryRegion
        public var vaddr: UInt64
        public var perms: Permissions
        public var cached: Bool
        public var setvarVaddr: String?
        public var setvarSize: String?
    }

    /// Guest RAM: one region mapped into the guest at `guestAddress` and into the VMM at `vmmAddress`,
    /// where the VMM learns its address and size through the two patched symbols.
    public struct GuestRAM: Equatable, Sendable {
        public var region: MemoryRegion
        public var guestAddress: UInt64
        public var vmmAddress: UInt64
        public var addressSymbol: String
        public var sizeSymbol: String

        public init(region: MemoryRegion, guestAddress: UInt64, vmmAddress: UInt64,
                    addressSymbol: String, sizeSymbol: String) {
            self.region = region
            self.guestAddress = guestAddress
            self.vmmAddress = vmmAddress
            self.addressSymbol = addressSymbol
            self.sizeSymbol = sizeSymbol
        }

        /// Identity-mapped (IPA == PA), so a device doing DMA for the guest needs no translation. seL4
        /// keeps 0x4000_0000-0x6000_0000 free for this on qemu-arm-virt with hypervisor support
        /// (seL4 src/plat/qemu-arm-virt/overlay-reserve-vm-memory.dts), which is exactly guestRAMSize.
        public static let qemuVirt = GuestRAM(
            region: MemoryRegion(name: "guest_ram", size: QEMUVirtBoard.guestRAMSize, pageSize: .large,
                                 physAddr: QEMUVirtBoard.guestRAMBase),
            guestAddress: QEMUVirtBoard.guestRAMBase, vmmAddress: MicrokitLayout.guestRAMVMMAddress,
            addressSymbol: MicrokitLayout.guestRAMAddressSymbol.description,
            sizeSymbol: MicrokitLayout.guestRAMSizeSymbol.description)
    }

    /// A device frame passed through to the guest: the guest touches it without a VMM exit.
    public struct DeviceRegion: Equatable, Sendable {
        public var region: MemoryRegion
        public var guestAddress: UInt64
        public var perms: Permissions
        public var cached: Bool

        public init(name: String, physAddr: UInt64, size: UInt64, guestAddress: UInt64,
                    perms: Permissions = .readWrite, cached: Bool = false) {
            region = MemoryRegion(name: name, size: size, pageSize: .small, physAddr: physAddr)
            self.guestAddress = guestAddress
            self.perms = perms
            self.cached = cached
        }

        public static let uart = DeviceRegion(name: "uart", physAddr: QEMUVirtBoard.uart,
                                              size: QEMUVirtBoard.uartSize, guestAddress: QEMUVirtBoard.uart)
        /// The hardware's virtual CPU interface (GICV) appears where the guest expects its GICC; both
        /// pages, because GICC_DIR sits at offset 0x1000 (GICv2 spec, 4.1.3, Table 4-2).
        public static let gicVirtualCPU = DeviceRegion(
            name: "gic_vcpu", physAddr: QEMUVirtBoard.gicVirtualCPUInterface,
            size: QEMUVirtBoard.gicCPUInterfaceSize, guestAddress: QEMUVirtBoard.gicCPUInterface)
        public static let qemuVirt: [DeviceRegion] = [.uart, .gicVirtualCPU]
    }

    public enum Trigger: String, Sendable { case level, edge }

    /// An `irq` of the VMM's protection domain: hardware interrupt `irq` arrives on channel `channel`.
    public struct Interrupt: Equatable, Sendable {
        public var irq: UInt32
        public var channel: UInt32
        public var trigger: Trigger

        public init(irq: UInt32, channel: UInt32, trigger: Trigger = .level) {
            self.irq = irq
            self.channel = channel
            self.trigger = trigger
        }

        public static let uart = Interrupt(irq: QEMUVirtBoard.uartInterrupt, channel: MicrokitLayout.uartChannel)
        /// The EL1 physical timer, which the VMM arms to wake a vCPU waiting in WFI at its guest's
        /// timer deadline: there with or without devices.
        public static let timer = Interrupt(irq: MicrokitDriverLayout.timerInterrupt,
                                            channel: MicrokitDriverLayout.timerChannel)
        public static let qemuVirt: [Interrupt] = [.uart, .timer]
    }

    /// Microkit 2.0.1 limits (sdf.rs: PD_MAX_PRIORITY, PD_MAX_ID, PD_MIN/MAX_STACK_SIZE).
    public static let maxPriority: UInt8 = 254
    public static let maxChannelID: UInt32 = 61
    public static let maxVCPUCount = 62
    public static let stackSizeRange: ClosedRange<UInt64> = 0x1000...0x100_0000

    public var vmmName: String
    public var programImage: String
    public var vmmPriority: UInt8
    public var stackSize: UInt64
    public var vmName: String
    public var vmPriority: UInt8
    public var vcpuCount: Int
    public var guestRAM: GuestRAM
    public var deviceRegions: [DeviceRegion]
    public var interrupts: [Interrupt]
    /// The driver protection domains, the regions only they and the VMM use (board pages, DMA memory,
    /// shared queues and data), the VMM's maps of the shared ones, and the channels: empty without
    /// devices, filled by `addDrivers(for:)`.
    public var drivers: [DriverDomain] = []
    public var driverRegions: [MemoryRegion] = []
    public var vmmDriverMappings: [Mapping] = []
    public var channels: [Channel] = []
    /// Protection domains outside this description that its channels may name (the timer PD of a
    /// system of several VMs, MicrokitPartitionedSystem).
    public var externalDomains: [String] = []

    /// The defaults describe the QEMU virt system; `stackSize` is 64 KiB because Swift code needs more
    /// than Microkit's default single page.
    public init(vmmName: String = "vmm", programImage: String, vmmPriority: UInt8 = MicrokitLayout.vmmPriority,
                stackSize: UInt64 = 0x1_0000, vmName: String = "linux",
                vmPriority: UInt8 = MicrokitLayout.guestPriority, vcpuCount: Int = 1,
                guestRAM: GuestRAM = .qemuVirt, deviceRegions: [DeviceRegion] = DeviceRegion.qemuVirt,
                interrupts: [Interrupt] = Interrupt.qemuVirt) {
        self.vmmName = vmmName
        self.programImage = programImage
        self.vmmPriority = vmmPriority
        self.stackSize = stackSize
        self.vmName = vmName
        self.vmPriority = vmPriority
        self.vcpuCount = vcpuCount
        self.guestRAM = guestRAM
        self.deviceRegions = deviceRegions
        self.interrupts = interrupts
    }

    /// Every `memory_region`, in the order they are written.
    public var memoryRegions: [MemoryRegion] { [guestRAM.region] + deviceRegions.map(\.region) + driverRegions }

    /// The `map`s of the VMM protection domain.
    public var vmmMappings: [Mapping] {
        [Mapping(region: guestRAM.region, vaddr: guestRAM.vmmAddress, perms: .readWrite, cached: true,
                 setvarVaddr: guestRAM.addressSymbol, setvarSize: guestRAM.sizeSymbol)] + vmmDriverMappings
    }

    /// The `map`s of the virtual machine (vaddr is the guest physical address).
    public var vmMappings: [Mapping] {
        [Mapping(region: guestRAM.region, vaddr: guestRAM.guestAddress, perms: .readWriteExecute, cached: true)]
            + deviceRegions.map {
                Mapping(region: $0.region, vaddr: $0.guestAddress, perms: $0.perms, cached: $0.cached)
            }
    }

    /// The XML text, or every validation error at once.
    public func render() throws(MicrokitSystemError) -> String {
        let errors = validationErrors()
        guard errors.isEmpty else { throw .invalid(errors) }

        return SDFWriter.system(regions: memoryRegions, channels: channels) { writeDomains(to: &$0) }
    }

    /// The VMM's protection domain with its virtual machine, then the drivers'.
    func writeDomains(to xml: inout SDFWriter) {
        xml.open("protection_domain", [("name", vmmName), ("priority", String(vmmPriority)),
                                       ("stack_size", hex(stackSize))])
        xml.empty("program_image", [("path", programImage)])
        for mapping in vmmMappings { xml.empty("map", mapping.attributes) }
        for interrupt in interrupts { xml.empty("irq", interrupt.attributes) }
        xml.open("virtual_machine", [("name", vmName), ("priority", String(vmPriority))])
        for id in 0..<vcpuCount { xml.empty("vcpu", [("id", String(id))]) }
        for mapping in vmMappings { xml.empty("map", mapping.attributes) }
        xml.close("virtual_machine")
        xml.close("protection_domain")
        for driver in drivers { driver.write(to: &xml) }
    }
}

extension MicrokitSystem.MemoryRegion {
    func write(to xml: inout SDFWriter) {
        var attributes = [("name", name), ("size", hex(size)), ("page_size", hex(pageSize.rawValue))]
        if let physAddr { attributes.append(("phys_addr", hex(physAddr))) }
        xml.empty("memory_region", attributes)
    }
}

extension MicrokitSystem.Mapping {
    init(region: MicrokitSystem.MemoryRegion, vaddr: UInt64, perms: MicrokitSystem.Permissions, cached: Bool) {
        self.init(region: region, vaddr: vaddr, perms: perms, cached: cached, setvarVaddr: nil, setvarSize: nil)
    }

    /// `cached` is written only when it differs from Microkit's default (true).
    var attributes: [(String, String)] {
        var attributes = [("mr", region.name), ("vaddr", hex(vaddr)), ("perms", perms.text)]
        if !cached { attributes.append(("cached", "false")) }
        if let setvarVaddr { attributes.append(("setvar_vaddr", setvarVaddr)) }
        if let setvarSize { attributes.append(("setvar_size", setvarSize)) }
        return attributes
    }
}

/// Lowercase hex with a `0x` prefix, the form Microkit's sdf_parse_number reads.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// Indented XML with escaped attribute values; elements are opened and closed in order by the caller.
struct SDFWriter {
    private(set) var text = ""
    private var depth = 0

    /// A whole system description: the header, the regions, what `domains` writes, the channels.
    static func system(regions: [MicrokitSystem.MemoryRegion], channels: [MicrokitSystem.Channel],
                       domains: (inout SDFWriter) -> Void) -> String {
        var xml = SDFWriter()
        xml.line("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        xml.line("<!-- Generated by `vmm build`. Do not edit: change the system file and build again. -->")
        xml.open("system")
        for region in regions { region.write(to: &xml) }
        domains(&xml)
        for channel in channels { channel.write(to: &xml) }
        xml.close("system")
        return xml.text
    }

    mutating func line(_ content: String) {
        text += String(repeating: "    ", count: depth) + content + "\n"
    }

    mutating func open(_ element: String, _ attributes: [(String, String)] = []) {
        line("<" + element + Self.render(attributes) + ">")
        depth += 1
    }

    mutating func close(_ element: String) {
        depth -= 1
        line("</" + element + ">")
    }

    mutating func empty(_ element: String, _ attributes: [(String, String)]) {
        line("<" + element + Self.render(attributes) + " />")
    }

    private static func render(_ attributes: [(String, String)]) -> String {
        attributes.map { " " + $0.0 + "=\"" + escape($0.1) + "\"" }.joined()
    }

    /// XML 1.0, 2.4 "Character Data and Markup": `<` and `&` never appear raw in an attribute value,
    /// and the quote that delimits it is escaped; `>` and `'` are escaped for symmetry.
    static func escape(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&apos;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}

// MARK: - Validation

extension MicrokitSystem {
    /// Every rule the `microkit` tool or the VMM would trip over later, as messages of the form
    /// "<element> '<name>': <field> <value> <problem>". Empty when the system can be rendered.
    public func validationErrors() -> [String] {
        var errors: [String] = []
        let pd = "protection_domain '\(vmmName)'"
        let vm = "virtual_machine '\(vmName)'"

        checkName(vmmName, element: pd, into: &errors)
        checkName(vmName, element: vm, into: &errors)
        checkMemoryRegions(into: &errors)

        checkName(programImage, element: pd, field: "program_image path", into: &errors)
        if vmmPriority > Self.maxPriority {
            errors.append("\(pd): priority \(vmmPriority) is above the maximum \(Self.maxPriority)")
        }
        errors += Self.stackSizeErrors(stackSize, owner: pd)
        errors += Self.mappingErrors(vmmMappings, owner: pd)
        errors += Self.interruptErrors(interrupts, owner: pd)

        if vmPriority > Self.maxPriority {
            errors.append("\(vm): priority \(vmPriority) is above the maximum \(Self.maxPriority)")
        } else if vmPriority >= vmmPriority {
            // The VMM must preempt its guest, or a guest spinning on a vCPU starves the interrupts it waits for.
            errors.append("\(vm): priority \(vmPriority) is not below the priority \(vmmPriority) of \(pd)")
        }
        if vcpuCount < 1 {
            errors.append("\(vm): vcpu count \(vcpuCount) is less than 1; a virtual machine needs at least one vcpu")
        } else if vcpuCount > Self.maxVCPUCount {
            errors.append("\(vm): vcpu count \(vcpuCount) is more than \(Self.maxVCPUCount)"
                          + " (vcpu ids are 0...\(Self.maxVCPUCount - 1))")
        }
        errors += Self.mappingErrors(vmMappings, owner: vm)
        errors += driverErrors()
        return errors
    }

    private func checkMemoryRegions(into errors: inout [String]) {
        let regions = memoryRegions
        var reported: [String] = []
        for (index, region) in regions.enumerated() {
            let element = "memory_region '\(region.name)'"
            checkName(region.name, element: element, into: &errors)
            let uses = regions.count { $0.name == region.name }
            if uses > 1, !reported.contains(region.name) {
                reported.append(region.name)
                errors.append("\(element): name is used by \(uses) memory regions")
            }
            let page = region.pageSize.rawValue
            if region.size == 0 {
                errors.append("\(element): size 0x0 is empty; a region is at least one page (\(hex(page)))")
            } else if !region.size.isMultiple(of: page) {
                errors.append("\(element): size \(hex(region.size)) is not a multiple of the page size \(hex(page))")
            }
            guard let physAddr = region.physAddr else { continue }
            if !physAddr.isMultiple(of: page) {
                errors.append("\(element): phys_addr \(hex(physAddr)) is not a multiple of the page size \(hex(page))")
            }
            guard let range = Self.range(physAddr, region.size) else {
                errors.append("\(element): phys_addr \(hex(physAddr)) + size \(hex(region.size)) is past 2^64")
                continue
            }
            // Microkit refuses two regions claiming the same physical memory (sdf.rs, "overlaps with another").
            for other in regions[..<index] {
                guard let otherAddr = other.physAddr, let otherRange = Self.range(otherAddr, other.size),
                      range.overlaps(otherRange) else { continue }
                errors.append("\(element): phys_addr range \(Self.text(range)) overlaps memory_region"
                              + " '\(other.name)' at \(Self.text(otherRange))")
            }
        }
    }

    static func stackSizeErrors(_ stackSize: UInt64, owner: String) -> [String] {
        if !Self.stackSizeRange.contains(stackSize) {
            return ["\(owner): stack_size \(hex(stackSize)) is not between \(hex(Self.stackSizeRange.lowerBound))"
                    + " and \(hex(Self.stackSizeRange.upperBound))"]
        } else if !stackSize.isMultiple(of: PageSize.small.rawValue) {
            return ["\(owner): stack_size \(hex(stackSize)) is not a multiple of the page size"
                    + " \(hex(PageSize.small.rawValue))"]
        }
        return []
    }

    /// The rules for the `map`s of one protection domain or virtual machine (`owner`).
    static func mappingErrors(_ mappings: [Mapping], owner: String) -> [String] {
        var errors: [String] = []
        var symbols: [String] = []
        for (index, mapping) in mappings.enumerated() {
            let element = "\(owner): map '\(mapping.region.name)'"
            let page = mapping.region.pageSize.rawValue
            if !mapping.vaddr.isMultiple(of: page) {
                errors.append("\(element): vaddr \(hex(mapping.vaddr)) is not a multiple of the page size \(hex(page))")
            }
            if mapping.perms.isEmpty {
                errors.append("\(element): perms is empty; it needs at least 'r'")
            } else if mapping.perms == .write {
                // seL4 has no write-only mappings on any architecture (sdf.rs, SysMap::from_xml).
                errors.append("\(element): perms 'w' is write-only, which seL4 cannot map")
            }
            for (field, symbol) in [("setvar_vaddr", mapping.setvarVaddr), ("setvar_size", mapping.setvarSize)] {
                guard let symbol else { continue }
                if !Self.isSymbolName(symbol) {
                    errors.append("\(element): \(field) '\(symbol)' is not a C symbol name")
                } else if symbols.contains(symbol) {
                    errors.append("\(element): \(field) '\(symbol)' is already set by another setvar")
                }
                symbols.append(symbol)
            }
            guard let range = Self.range(mapping.vaddr, mapping.region.size) else {
                errors.append("\(element): vaddr \(hex(mapping.vaddr)) + size \(hex(mapping.region.size)) is past 2^64")
                continue
            }
            for other in mappings[..<index] {
                guard let otherRange = Self.range(other.vaddr, other.region.size), range.overlaps(otherRange)
                else { continue }
                errors.append("\(element): vaddr range \(Self.text(range)) overlaps map '\(other.region.name)'"
                              + " at \(Self.text(otherRange))")
            }
        }
        return errors
    }

    /// The rules for the `irq`s of one protection domain (`owner`).
    static func interruptErrors(_ interrupts: [Interrupt], owner: String) -> [String] {
        var errors: [String] = []
        for (index, interrupt) in interrupts.enumerated() {
            let element = "\(owner): irq \(interrupt.irq)"
            if interrupt.channel > Self.maxChannelID {
                errors.append("\(element): id \(interrupt.channel) is not a channel id (0...\(Self.maxChannelID))")
            }
            let earlier = interrupts[..<index]
            if earlier.contains(where: { $0.irq == interrupt.irq }) {
                errors.append("\(element): irq \(interrupt.irq) is listed more than once")
            }
            if let first = earlier.first(where: { $0.channel == interrupt.channel }) {
                errors.append("\(element): id \(interrupt.channel) is already the channel of irq \(first.irq)")
            }
        }
        return errors
    }

    /// Names and paths end up in attribute values and in the monitor's tables: they must be non-empty,
    /// and XML 1.0 (2.2 "Characters") cannot carry control characters even escaped.
    func checkName(_ value: String, element: String, field: String = "name",
                           into errors: inout [String]) {
        if value.isEmpty {
            errors.append("\(element): \(field) is empty")
        } else if value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            errors.append("\(element): \(field) contains a control character")
        }
    }

    /// The Microkit tool looks setvar symbols up in the program image's ELF symbol table.
    static func isSymbolName(_ symbol: String) -> Bool {
        guard let first = symbol.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic)
        else { return false }
        return symbol.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && $0.properties.isAlphabetic)
            || ("0"..."9").contains($0) }
    }

    /// [start, start + size), or nil when the end does not fit in 64 bits.
    static func range(_ start: UInt64, _ size: UInt64) -> Range<UInt64>? {
        let (end, overflow) = start.addingReportingOverflow(size)
        return overflow ? nil : start..<end
    }

    static func text(_ range: Range<UInt64>) -> String { "[\(hex(range.lowerBound))..\(hex(range.upperBound)))" }
}
