// A Microkit system of several VMs: one partition per VM, each a `MicrokitSystem` (the VMM PD that
// owns the VM, the VM with its vCPUs and RAM, the VM's driver PDs and their channels), whose names
// all start with the VM's name ("a_vmm", "a_disk0_driver", "a_guest_ram"), and one timer PD.
//
// Why a timer PD: a VMM wakes a vCPU that waits in WFI at its guest's timer deadline with the EL1
// physical timer, and a hardware interrupt belongs to one PD. With several VMMs, the timer PD owns
// it (PPI 30) and keeps each VMM's deadline: a VMM sets its own with a protected procedure call, and
// is notified when it passes (VMMCore's MicrokitTimerLayout and TimerMultiplexer). A one-VM system
// has no timer PD: its VMM owns the timer, one call less per WFI.
//
// Isolation is the partitions': a VM's RAM is mapped into that VM and its own VMM only, a driver
// maps its own device's queues only, and a VMM has channels to its own drivers and the timer PD
// only. What partitions share: the timer PD, and the board pages of QEMU's virtio-mmio window
// (8 transports to a 4 KiB page, which seL4 cannot split: see boardPageRegion), which are mapped
// into drivers only.

import VMMCore

public struct MicrokitPartitionedSystem: Equatable, Sendable {
    public var partitions: [MicrokitSystem]
    public var timer: TimerDomain?

    /// The PD that owns the EL1 physical timer for every VMM.
    public struct TimerDomain: Equatable, Sendable {
        public var name = "timer"
        public var priority = MicrokitTimerLayout.priority
        public var stackSize = MicrokitSystem.driverStackSize
        public var programImage = "timer.elf"
        public var interrupt = MicrokitSystem.Interrupt(irq: MicrokitTimerLayout.interrupt,
                                                        channel: MicrokitTimerLayout.interruptChannel)

        public init() {}
    }

    /// Partitions side by side; with more than one, the timer PD and a channel from each VMM to it
    /// (VMM end `MicrokitTimerLayout.vmmChannel`, which may call it; timer end the VM's index), and
    /// no VMM owns the timer's interrupt.
    public init(_ partitions: [MicrokitSystem]) {
        self.partitions = partitions
        guard partitions.count > 1 else { return }
        let timer = TimerDomain()
        self.timer = timer
        for index in self.partitions.indices {
            self.partitions[index].interrupts.removeAll { $0.irq == MicrokitTimerLayout.interrupt }
            self.partitions[index].externalDomains.append(timer.name)
            self.partitions[index].channels.append(MicrokitSystem.Channel(
                .init(pd: partitions[index].vmmName, id: MicrokitTimerLayout.vmmChannel, pp: true),
                .init(pd: timer.name, id: MicrokitTimerLayout.clientChannel(index))))
        }
    }

    /// Every `memory_region` once: a board page that drivers of several VMs map is one region.
    public var memoryRegions: [MicrokitSystem.MemoryRegion] {
        var regions: [MicrokitSystem.MemoryRegion] = []
        for region in partitions.flatMap(\.memoryRegions) where !regions.contains(region) { regions.append(region) }
        return regions
    }

    /// The XML text, or every validation error at once. One partition renders as MicrokitSystem does.
    public func render() throws(MicrokitSystemError) -> String {
        guard partitions.count > 1 else {
            guard let only = partitions.first else { throw .invalid(["system: no virtual machine"]) }
            return try only.render()
        }
        let errors = validationErrors()
        guard errors.isEmpty else { throw .invalid(errors) }
        return SDFWriter.system(regions: memoryRegions, channels: partitions.flatMap(\.channels)) { xml in
            for partition in partitions { partition.writeDomains(to: &xml) }
            if let timer {
                xml.open("protection_domain", [("name", timer.name), ("priority", String(timer.priority)),
                                               ("stack_size", hex(timer.stackSize))])
                xml.empty("program_image", [("path", timer.programImage)])
                xml.empty("irq", timer.interrupt.attributes)
                xml.close("protection_domain")
            }
        }
    }

    /// Each partition's own rules, then what spans partitions: unique PD and region names (a shared
    /// board page aside), no physical memory claimed twice, an interrupt owned by one PD, the timer PD
    /// above every VMM (they call it) and its channel ids.
    public func validationErrors() -> [String] {
        var errors = partitions.flatMap { $0.validationErrors() }
        let domains = partitions.flatMap { [$0.vmmName] + $0.drivers.map(\.name) } + (timer.map { [$0.name] } ?? [])
        errors += Self.repeated(domains).map { "protection_domain '\($0.name)': name is used by \($0.uses) protection domains" }
        errors += Self.repeated(partitions.map(\.vmName))
            .map { "virtual_machine '\($0.name)': name is used by \($0.uses) virtual machines" }
        let regions = memoryRegions
        errors += Self.repeated(regions.map(\.name)).map { "memory_region '\($0.name)': name is used by \($0.uses) memory regions" }
        for (index, region) in regions.enumerated() {
            guard let start = region.physAddr, let range = MicrokitSystem.range(start, region.size) else { continue }
            for other in regions[..<index] {
                guard let otherStart = other.physAddr, let otherRange = MicrokitSystem.range(otherStart, other.size),
                      range.overlaps(otherRange) else { continue }
                errors.append("memory_region '\(region.name)': phys_addr range \(MicrokitSystem.text(range)) overlaps"
                              + " memory_region '\(other.name)' at \(MicrokitSystem.text(otherRange))")
            }
        }
        var owners: [(irq: UInt32, pd: String)] = []
        let interrupts = partitions.flatMap { partition in
            partition.interrupts.map { ($0.irq, partition.vmmName) }
                + partition.drivers.flatMap { driver in driver.interrupts.map { ($0.irq, driver.name) } }
        } + (timer.map { [($0.interrupt.irq, $0.name)] } ?? [])
        for (irq, pd) in interrupts {
            if let first = owners.first(where: { $0.irq == irq && $0.pd != pd }) {
                errors.append("protection_domain '\(pd)': irq \(irq): irq \(irq) is already an irq of protection_domain '\(first.pd)'")
            }
            owners.append((irq, pd))
        }
        if let timer {
            let pd = "protection_domain '\(timer.name)'"
            errors += MicrokitSystem.stackSizeErrors(timer.stackSize, owner: pd)
            errors += MicrokitSystem.interruptErrors([timer.interrupt], owner: pd)
            if partitions.count > MicrokitTimerLayout.maxClients {
                errors.append("\(pd): \(partitions.count) virtual machine monitors, more than the"
                              + " \(MicrokitTimerLayout.maxClients) clients it serves")
            }
            for partition in partitions where timer.priority <= partition.vmmPriority {
                errors.append("\(pd): priority \(timer.priority) is not above the priority \(partition.vmmPriority) of"
                              + " protection_domain '\(partition.vmmName)', which calls it")
            }
        }
        return errors
    }

    /// Names that appear more than once, each once, with how often.
    static func repeated(_ names: [String]) -> [(name: String, uses: Int)] {
        var seen: [String] = []
        return names.compactMap { name in
            guard !seen.contains(name) else { return nil }
            seen.append(name)
            let uses = names.count { $0 == name }
            return uses > 1 ? (name, uses) : nil
        }
    }
}
