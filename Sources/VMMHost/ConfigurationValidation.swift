// The checks of a parsed configuration that need more than one key: what the platform can run
// (VMs, vCPUs, RAM, each VM's and all VMs' together), where guest RAM may sit on the board, which
// guest-physical regions and interrupts collide, whether the files exist, whether kernel + DTB +
// initrd fit in RAM (VMMCore's BootLayout.check, the same code the VMM runs), what must be unique
// across the system (names, MACs, host ports, sockets, disks), and what of the board only one
// owner may have (passthrough regions and interrupts, QEMU's 32 virtio-mmio transports). Each check
// skips keys that already have an error, so a mistake is reported once, at the key that holds it.
//
// Several VMs (native): static partitioning, so the VMs share out the board: each vCPU on a board
// CPU of its own (at most 8 in all, GICv2), the ones a VM's `cpus` pins, else the lowest no VM pins
// in file order (without any `cpus`: VM 0's vCPUs on board CPUs 0..<vcpus, the next VM's on the
// next ones; SystemConfiguration.boardCPUs); each VM's RAM from the host RAM the VMM has for guests
// (255 GiB less the VMM's 128 MiB, in all); its virtio devices backed by board devices of its own, except network cards
// on one of the VMM's networks (virtual switches between VMs, checked in checkNetworks), which
// have no board device. Each VM has its own
// guest-physical address space, so guest addresses (RAM, virtio windows) are checked per VM and may
// repeat across VMs; physical things may not.

import Foundation
import VMMCore

struct ConfigurationValidator {
    let system: SystemConfiguration
    let diagnostics: ConfigurationDiagnostics

    /// Where a guest's RAM may sit in its physical address space: from qemu-virt's RAM base
    /// (hw/arm/virt.c; everything the board maps below it is devices) to the top of the IPA space
    /// the platform gives a guest: 40 bits on native (Platforms/native/Stage2Translation.swift,
    /// which every CPU model here can output), the low 4 GiB on Microkit.
    static func ramWindow(_ platform: SystemConfiguration.Platform) -> Range<UInt64> {
        switch platform {
        case .native: ramStart..<(1 << 40)
        case .microkit: ramStart..<0x1_0000_0000
        }
    }
    static let ramStart: UInt64 = 0x4000_0000
    static let deviceArea: Range<UInt64> = 0..<0x4000_0000
    /// The native platform's host RAM for guests: from 0x4800_0000 (the VMM's 128 MiB at the start of
    /// board RAM below it, Platforms/native/linker.ld) to the end of the board's RAM, which QEMU's -m
    /// sets (SystemBuilder.qemuArguments) and the VMM reads from QEMU's device tree. qemu-virt has at
    /// most 255 GiB of RAM (it ends at 256 GiB, where the board's high MMIO starts; the VMM's EL2
    /// identity map covers that much): 255 GiB less 128 MiB, for one VM or shared out among several
    /// in file order. (The host running QEMU must have the memory too: TCG backs every guest page
    /// that is touched with host memory.)
    static let nativeGuestRAMHost: UInt64 = 0x4800_0000
    static let nativeGuestRAM: UInt64 = 0x40_0000_0000 - nativeGuestRAMHost
    /// The Microkit platform (QEMU -m 2G) keeps room for seL4, the VMM's PD and the drivers' memory.
    static let microkitGuestRAM: UInt64 = 512 << 20
    /// The most RAM one VM may have on `platform` (on native also the most all VMs have together).
    static func maxGuestRAM(_ platform: SystemConfiguration.Platform) -> UInt64 {
        switch platform {
        case .native: nativeGuestRAM
        case .microkit: microkitGuestRAM
        }
    }
    /// The board CPUs there are to share out between VMs: GICv2 serves 8 CPU interfaces; with GICv3
    /// the native platform runs up to 32 (its EL2 stacks, Platforms/native/linker.ld, and the sleeper
    /// bits of its locks; QEMU virt's redistributor region would hold 123).
    static func maxBoardCPUs(_ gic: SystemConfiguration.GICVersion) -> Int { gic == .v2 ? 8 : 32 }
    /// Why that is the limit, for the messages.
    static func cpuLimitReason(_ gic: SystemConfiguration.GICVersion) -> String {
        gic == .v2 ? "GICv2 serves at most 8 CPUs" : "the native platform runs at most 32 CPUs with GICv3"
    }
    /// QEMU virt's virtio-mmio transports (hw/arm/virt.c NUM_VIRTIO_TRANSPORTS).
    static let boardTransports = 32
    /// sockaddr_un.sun_path holds 108 bytes on Linux, NUL included.
    static let maxSocketPathBytes = 107

    func validate() {
        for (index, vm) in system.vms.enumerated() where !diagnostics.isPlaceholder("vm[\(index)]") {
            validate(vm, at: "vm[\(index)]", first: index == 0)
        }
        checkNetworks()
        checkUniqueness()
        if system.platform == .native { checkSharedOut() } else { checkMicrokitSharedOut() }
        checkBoardDevices()
        // Last, so that the extra VMs are still checked like the first (isPlaceholder would skip them).
        // Native runs several VMs: at most 8 follows from the vCPUs (each VM has one at least).
        if system.platform == .microkit, system.gic != .v2 {
            diagnostics.report("system.gic", "the microkit platform runs on GICv2 (the SDK's qemu_virt_aarch64 board), found \(system.gic.rawValue)")
        }
        if system.platform == .microkit, system.cpu != .cortexA53 {
            diagnostics.report("system.cpu", "the microkit platform runs on cortex-a53 (the SDK's qemu_virt_aarch64 board), found \(system.cpu.rawValue)")
        }
    }

    private func validate(_ vm: VMConfiguration, at path: String, first: Bool) {
        let platform = system.platform.rawValue
        // Native: each vCPU owns one board CPU (QEMU gets `-smp vcpus`), so the parser's 1...8 is the
        // rule. Microkit: the SDK's qemu_virt_aarch64 kernel is single-core, so all of a VM's vCPUs
        // (the parser's 1...8, GICv2) share that core, scheduled by seL4 at the guest's priority.
        // Native: one board CPU for each vCPU, in vCPU order; no CPU twice is checkSharedOut's (it
        // needs the other VMs). Microkit: seL4 places the VMM's vCPU, the file cannot.
        if let cpus = vm.cpus, !diagnostics.hasError(at: "\(path).cpus") {
            if system.platform != .native {
                diagnostics.report("\(path).cpus", "vCPU pinning needs the native platform")
            } else if !diagnostics.hasError(at: "\(path).vcpus"), cpus.count != vm.vcpus {
                diagnostics.report("\(path).cpus", "`cpus` names \(Self.count(cpus.count, "CPU")), the VM has "
                                   + "\(Self.count(vm.vcpus, "vCPU")) (expected one board CPU for each vCPU)")
            }
        }
        let maxRAM = Self.maxGuestRAM(system.platform)
        if !diagnostics.hasError(at: "\(path).ram"), vm.ramSize > maxRAM {
            diagnostics.report("\(path).ram", "\(sizeText(vm.ramSize)) is more than the \(platform) platform gives a guest "
                               + "(expected at most \(sizeText(maxRAM)))")
        }
        // Cannot overflow once both keys are good: ram_base < 2^63 (a TOML integer), ram < 256G.
        var ramRange: Range<UInt64>? = nil
        if !diagnostics.hasError(at: "\(path).ram"), !diagnostics.hasError(at: "\(path).ram_base") {
            let range = vm.ramBase..<vm.ramBase + vm.ramSize
            let window = Self.ramWindow(system.platform)
            if range.lowerBound >= window.lowerBound, range.upperBound <= window.upperBound {
                ramRange = range
            } else {
                diagnostics.report("\(path).ram_base", "guest RAM \(Self.text(range)) is outside the qemu-virt RAM window "
                                   + "\(Self.text(window))")
            }
        }

        // The Image header is checked on its own, so that a kernel that is not an arm64 Image is
        // reported whatever else is wrong; the RAM-fit check below then needs a good header too.
        let kernel = fileProblem(vm.kernel, at: "\(path).kernel").flatMap { checkImageHeader($0, of: vm, at: path) }
        let initrd = vm.initrd.map { fileProblem($0, at: "\(path).initrd") }
        for (n, block) in vm.blocks.enumerated() {
            let blockPath = "\(path).block[\(n)]"
            guard !diagnostics.isPlaceholder(blockPath), !diagnostics.hasError(at: "\(blockPath).file") else { continue }
            let creatable = block.size != nil || diagnostics.hasError(at: "\(blockPath).size")
            if FileManager.default.fileExists(atPath: block.file) || !creatable {
                _ = fileProblem(block.file, at: "\(blockPath).file", creatable: true)
            }
        }
        for (n, console) in vm.consoles.enumerated() {
            checkSocket(console.socket, entry: "\(path).console[\(n)]", keyPath: "\(path).console[\(n)].socket")
        }
        if let serial = vm.serial {
            if first {
                diagnostics.report("\(path).serial", "the first VM's console is the board's PL011 on the terminal "
                                   + "(only the VMs after it have a serial socket)")
            } else {
                checkSocket(serial, entry: path, keyPath: "\(path).serial")
            }
        }
        if ramRange != nil, let kernel, initrd.map({ $0 != nil }) ?? true {
            checkBootFit(vm, at: path, kernel: kernel, initrdSize: initrd??.size)
        }
        checkRegions(vm, at: path, ram: ramRange)
    }

    /// The file's size and first 64 bytes, or nil after reporting why it cannot be used.
    private func fileProblem(_ file: String, at keyPath: String, creatable: Bool = false) -> (size: UInt64, start: Data)? {
        guard !diagnostics.hasError(at: keyPath) else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else {
            diagnostics.report(keyPath, "no such file '\(file)'" + (creatable ? " (give a size to have `vmm build` create it)" : ""))
            return nil
        }
        guard !isDirectory.boolValue else {
            diagnostics.report(keyPath, "'\(file)' is a directory, not a file")
            return nil
        }
        guard let handle = FileHandle(forReadingAtPath: file) else {
            diagnostics.report(keyPath, "cannot read '\(file)' (permission denied?)")
            return nil
        }
        defer { try? handle.close() }
        do {
            // An empty file reads as nil: BootLayout.check then reports it shorter than a header.
            let start = try handle.read(upToCount: ImageHeader.size) ?? Data()
            return (try handle.seekToEnd(), start)
        } catch {
            diagnostics.report(keyPath, "cannot read '\(file)' (\(error.localizedDescription))")
            return nil
        }
    }

    /// The kernel file when its first bytes are an arm64 Image header; nil after reporting why not.
    private func checkImageHeader(_ kernel: (size: UInt64, start: Data), of vm: VMConfiguration, at path: String)
        -> (size: UInt64, start: Data)? {
        let result = kernel.start.withUnsafeBytes { raw in
            Result { () throws(ImageHeaderError) in try ImageHeader(bytes: raw) }
        }
        guard case .failure(let error) = result else { return kernel }
        let message = BootCheckError.kernel(error).message(kernelName: Array(vm.kernel.utf8), initrdName: [])
        diagnostics.report("\(path).kernel", String(decoding: message, as: UTF8.self))
        return nil
    }

    /// The socket's directory need not exist yet: `vmm build` makes its output directories.
    private func checkSocket(_ socket: String, entry: String, keyPath: String) {
        guard !diagnostics.isPlaceholder(entry), !diagnostics.hasError(at: keyPath) else { return }
        if socket.utf8.count > Self.maxSocketPathBytes {
            diagnostics.report(keyPath, "'\(socket)' is \(socket.utf8.count) bytes long; a unix socket path holds at most "
                               + "\(Self.maxSocketPathBytes)")
        }
    }

    /// BootLayout.check, as the VMM will run it at boot, with its message for the key to change.
    private func checkBootFit(_ vm: VMConfiguration, at path: String, kernel: (size: UInt64, start: Data), initrdSize: UInt64?) {
        let result = kernel.start.withUnsafeBytes { raw in
            Result { () throws(BootCheckError) in
                try BootLayout.check(kernelStart: raw, kernelFileSize: kernel.size, initrdSize: initrdSize,
                                     ramBase: vm.ramBase, ramSize: vm.ramSize)
            }
        }
        guard case .failure(let error) = result else { return }
        let key = switch error {
        case .kernel: "kernel"
        case .layout(.initrdDoesNotFit): "initrd"
        case .layout(.ramNotAligned), .layout(.ramEndsPastAddressSpace): "ram_base"
        case .layout(.kernelDoesNotFit), .layout(.dtbDoesNotFit), .layout(.dtbTooLarge): "ram"
        }
        let message = error.message(kernelName: Array(vm.kernel.utf8), initrdName: Array((vm.initrd ?? "").utf8))
        diagnostics.report("\(path).\(key)", String(decoding: message, as: UTF8.self))
    }

    /// A guest-physical region and who owns it; `keyPath` is nil for the board's fixed devices.
    private struct Region {
        var name: String
        var range: Range<UInt64>
        var keyPath: String?
    }

    /// No two guest-physical regions may overlap; the later one (in the order below) gets the error.
    /// Passthrough regions stay in the board's device area and keep off the VMM's interrupts.
    private func checkRegions(_ vm: VMConfiguration, at path: String, ram: Range<UInt64>?) {
        let board = QEMUVirtBoard.self
        var regions = [
            Region(name: "the GIC distributor", range: board.gicDistributor..<board.gicDistributor + board.gicDistributorSize),
            Region(name: "the GIC CPU interface", range: board.gicCPUInterface..<board.gicCPUInterface + board.gicCPUInterfaceSize),
            // hw/arm/virt.c VIRT_GIC_HYP and VIRT_GIC_VCPU: the host's, never the guest's.
            Region(name: "the GIC hypervisor interface", range: 0x0803_0000..<0x0804_0000),
            Region(name: "the GIC virtual CPU interface", range: board.gicVirtualCPUInterface..<board.gicVirtualCPUInterface + 0x1_0000),
            Region(name: "the board's UART", range: board.uart..<board.uart + board.uartSize),
        ]
        if system.gic == .v3 {
            regions.append(Region(name: "the GIC redistributors",
                                  range: board.gicRedistributor..<board.gicRedistributor + board.gicRedistributorSize))
        }
        var interrupts: [(intid: UInt32, owner: String)] = [
            (board.virtualTimerInterrupt, "the virtual timer"), (board.uartInterrupt, "the board's UART"),
        ]
        let devices = vm.blocks.indices.map { "\(path).block[\($0)]" } + vm.networks.indices.map { "\(path).net[\($0)]" }
            + vm.consoles.indices.map { "\(path).console[\($0)]" }
        for (n, device) in devices.enumerated() {
            let slot = VirtioDeviceDescription.qemuVirtSlot(n, .console)
            regions.append(Region(name: "the virtio-mmio window of \(device)",
                                  range: slot.base.raw..<slot.base.raw + VirtioMMIO.windowSize, keyPath: device))
            interrupts.append((slot.interrupt, device))
        }
        if let ram { regions.append(Region(name: "guest RAM", range: ram, keyPath: "\(path).ram_base")) }

        for (n, region) in vm.passthrough.enumerated() {
            let entry = "\(path).passthrough[\(n)]"
            guard !diagnostics.isPlaceholder(entry) else { continue }
            if let irq = region.irq, !diagnostics.hasError(at: "\(entry).irq") {
                if let owner = interrupts.first(where: { $0.intid == irq })?.owner {
                    diagnostics.report("\(entry).irq", "INTID \(irq) is already the interrupt of \(owner) (expected another SPI)")
                } else {
                    interrupts.append((irq, entry))
                }
            }
            guard !diagnostics.hasError(at: "\(entry).address"), !diagnostics.hasError(at: "\(entry).size") else { continue }
            let keyPath = "\(entry).address"
            guard let range = Self.range(region.address, region.size),
                  range.lowerBound >= Self.deviceArea.lowerBound, range.upperBound <= Self.deviceArea.upperBound else {
                diagnostics.report(keyPath, "\(hex(region.address)) + \(hex(region.size)) is outside the qemu-virt device area "
                                   + "\(Self.text(Self.deviceArea)) (passthrough gives the guest a board device, never RAM)")
                continue
            }
            regions.append(Region(name: "\(entry) '\(region.name)'", range: range, keyPath: keyPath))
        }

        for (n, region) in regions.enumerated() {
            guard let keyPath = region.keyPath else { continue }
            for other in regions[..<n] where other.range.overlaps(region.range) {
                diagnostics.report(keyPath, "\(Self.text(region.range)) overlaps \(other.name) \(Self.text(other.range))")
            }
        }
    }

    /// What two devices or VMs cannot share: checked across the whole system, the later one reported
    /// at `keyPath` and the first one named by its table (`owner`).
    private func checkUniqueness() {
        var names: [String: String] = [:], macs: [String: String] = [:], ports: [String: String] = [:]
        var sockets: [String: String] = [:], disks: [String: String] = [:]
        func claim(_ table: inout [String: String], _ value: String, owner: String, keyPath: String,
                   _ message: (String) -> String) {
            guard !diagnostics.isPlaceholder(owner), !diagnostics.hasError(at: keyPath) else { return }
            if let first = table[value] { diagnostics.report(keyPath, message(first)) } else { table[value] = owner }
        }
        for (index, vm) in system.vms.enumerated() where !diagnostics.isPlaceholder("vm[\(index)]") {
            let path = "vm[\(index)]"
            claim(&names, vm.name, owner: path, keyPath: "\(path).name") { "'\(vm.name)' is already the name of \($0)" }
            for (n, block) in vm.blocks.enumerated() {
                let owner = "\(path).block[\(n)]"
                claim(&disks, block.file, owner: owner, keyPath: "\(owner).file") { "'\(block.file)' is already the disk of \($0)" }
            }
            for (n, network) in vm.networks.enumerated() {
                let owner = "\(path).net[\(n)]"
                let mac = ConfigurationParser.macText(network.mac)
                claim(&macs, mac, owner: owner, keyPath: "\(owner).mac") { "\(mac) is already the MAC of \($0)" }
                // A card on a VMM network has no forwards to claim (checkNetworks refused them).
                guard network.network == nil else { continue }
                // The model holds the forwards that parsed; the ones that failed are errors at their index.
                let indices = Array((0...).lazy.filter { !diagnostics.isPlaceholder("\(owner).forward[\($0)]") }
                    .prefix(network.forwards.count))
                for (f, forward) in zip(indices, network.forwards) {
                    let port = "\(forward.protocol.rawValue):\(forward.host)"
                    let keyPath = "\(owner).forward[\(f)]"
                    claim(&ports, port, owner: keyPath, keyPath: keyPath) { "host port \(port) is already forwarded by \($0)" }
                }
            }
            if index > 0, let serial = vm.serial {
                claim(&sockets, serial, owner: "\(path).serial", keyPath: "\(path).serial") { "'\(serial)' is already the socket of \($0)" }
            }
            for (n, console) in vm.consoles.enumerated() {
                let owner = "\(path).console[\(n)]"
                claim(&sockets, console.socket, owner: owner, keyPath: "\(owner).socket") {
                    "'\(console.socket)' is already the socket of \($0)"
                }
            }
            var regionNames: [String: String] = [:]
            for (n, region) in vm.passthrough.enumerated() {
                let owner = "\(path).passthrough[\(n)]"
                claim(&regionNames, region.name, owner: owner, keyPath: "\(owner).name") { "'\(region.name)' is already the name of \($0)" }
            }
        }
    }

    /// The VMM's networks: a card that names one joins it instead of a QEMU user network, so it has
    /// no board device and no host port to forward. The VMM runs them on the native platform only;
    /// a network joins cards of two VMs at least and one card of each (the VMM switches frames
    /// between VMs, never inside one), and the system has at most `maxSwitchedNetworks` of them,
    /// numbered in order of first appearance (`SystemConfiguration.vmmNetworks`). A network's
    /// errors go to the card that breaks the rule: a VM's later card on it, the first card of one
    /// network too many, a lone card.
    private func checkNetworks() {
        var members: [String: [(vm: Int, card: Int)]] = [:], names: [String] = []
        // A name that failed (`network = "LAN"`) may be the partner a lone card is waiting for.
        let misnamed = system.vms.indices.contains { index in
            system.vms[index].networks.indices.contains { diagnostics.hasError(at: "vm[\(index)].net[\($0)].network") }
        }
        for (index, vm) in system.vms.enumerated() where !diagnostics.isPlaceholder("vm[\(index)]") {
            for (n, card) in vm.networks.enumerated() {
                let entry = "vm[\(index)].net[\(n)]"
                guard let name = card.network, !diagnostics.isPlaceholder(entry) else { continue }
                if !card.forwards.isEmpty, !diagnostics.hasError(at: "\(entry).forward") {
                    diagnostics.report("\(entry).forward", "a card on a VMM network has no host port forwarding; "
                                       + "forwards belong to a card without `network`")
                }
                if let same = members[name]?.first(where: { $0.vm == index }) {
                    diagnostics.report("\(entry).network", "this VM is already on network '\(name)' with "
                                       + "vm[\(index)].net[\(same.card)] (a VM joins a network with one card)")
                    continue
                }
                if members[name] == nil {
                    names.append(name)
                    if names.count == GuestConfiguration.maxSwitchedNetworks + 1 {
                        diagnostics.report("\(entry).network", "network '\(name)' makes \(names.count) networks in the system; "
                                           + "the VMM has at most \(GuestConfiguration.maxSwitchedNetworks)")
                    }
                }
                members[name, default: []].append((index, n))
            }
        }
        for name in names where !misnamed {
            guard let cards = members[name], cards.count == 1, let card = cards.first else { continue }
            diagnostics.report("vm[\(card.vm)].net[\(card.card)].network",
                               "network '\(name)' joins only this card; a network needs cards of at least two VMs")
        }
    }

    /// What of the board one owner only may have. QEMU's virtio-mmio transports back the guests'
    /// devices, taken from slot 31 down in the order of `boardDevices`; past the 32nd there is none.
    /// A passthrough region or interrupt goes to one VM and never to a transport the VMM drives (a
    /// VM's own passthrough regions and interrupts are checked against each other in checkRegions).
    private func checkBoardDevices() {
        var transports: [(range: Range<UInt64>, interrupt: UInt32, slot: Int, owner: String)] = []
        for (k, owner) in boardDevices().enumerated() {
            guard k < Self.boardTransports else {
                diagnostics.report(owner.keyPath, "needs board virtio device \(k + 1), and QEMU virt has \(Self.boardTransports) "
                                   + "virtio-mmio transports (one for each disk, network and console of every VM, and one "
                                   + "for the serial console of each VM after the first)")
                break
            }
            let slot = Self.boardTransports - 1 - k
            let board = VirtioDeviceDescription.qemuVirtSlot(slot, .console)
            transports.append((board.base.raw..<board.base.raw + VirtioMMIO.windowSize, board.interrupt, slot, owner.name))
        }

        var given: [(vm: Int, entry: String, name: String, range: Range<UInt64>?, irq: UInt32?)] = []
        for (index, vm) in system.vms.enumerated() where !diagnostics.isPlaceholder("vm[\(index)]") {
            for (n, region) in vm.passthrough.enumerated() {
                let entry = "vm[\(index)].passthrough[\(n)]"
                guard !diagnostics.isPlaceholder(entry) else { continue }
                var irq: UInt32? = nil
                if let wanted = region.irq, !diagnostics.hasError(at: "\(entry).irq") {
                    if let transport = transports.first(where: { $0.interrupt == wanted }) {
                        diagnostics.report("\(entry).irq", "INTID \(wanted) is already the interrupt of the board's virtio-mmio "
                                           + "transport \(transport.slot) behind \(transport.owner) (expected another SPI)")
                    } else if let other = given.first(where: { $0.vm != index && $0.irq == wanted }) {
                        diagnostics.report("\(entry).irq", "INTID \(wanted) is already the interrupt of \(other.entry) "
                                           + "(a board interrupt goes to one VM only)")
                    } else {
                        irq = wanted
                    }
                }
                var range: Range<UInt64>? = nil
                // checkRegions reported an address outside the device area, or overlapping this VM's own regions.
                if !diagnostics.hasError(at: "\(entry).address"), !diagnostics.hasError(at: "\(entry).size"),
                   let wanted = Self.range(region.address, region.size) {
                    range = wanted
                    for transport in transports where transport.range.overlaps(wanted) {
                        diagnostics.report("\(entry).address", "\(Self.text(wanted)) overlaps the board's virtio-mmio transport "
                                           + "\(transport.slot) behind \(transport.owner) \(Self.text(transport.range))")
                        range = nil
                    }
                    for other in given where other.vm != index {
                        guard let taken = other.range, taken.overlaps(wanted) else { continue }
                        diagnostics.report("\(entry).address", "\(Self.text(wanted)) overlaps \(other.entry) '\(other.name)' "
                                           + "\(Self.text(taken)) (a board device goes to one VM only)")
                        range = nil
                    }
                }
                given.append((index, entry, region.name, range, irq))
            }
        }
    }

    /// The board devices behind the guests' devices, in QEMU's order (SystemBuilder.qemuArguments):
    /// VM by VM its disks, networks (not the cards on a VMM network, which have none) and consoles,
    /// then for each VM after the first the board device behind its serial console. `name` says
    /// which in messages; `keyPath` is where an error about it goes.
    private func boardDevices() -> [(name: String, keyPath: String)] {
        system.vms.enumerated().flatMap { index, vm -> [(name: String, keyPath: String)] in
            let path = "vm[\(index)]"
            var devices = vm.blocks.indices.map { ("\(path).block[\($0)]", "\(path).block[\($0)]") }
                + vm.networks.indices.filter { vm.networks[$0].network == nil || system.platform == .microkit }
                    .map { ("\(path).net[\($0)]", "\(path).net[\($0)]") }
                + vm.consoles.indices.map { ("\(path).console[\($0)]", "\(path).console[\($0)]") }
            if index > 0 { devices.append(("the serial console of \(path)", "\(path).serial")) }
            return devices
        }
    }

    /// [start, start + size), or nil when the end does not fit in 64 bits.
    static func range(_ start: UInt64, _ size: UInt64) -> Range<UInt64>? {
        let (end, overflow) = start.addingReportingOverflow(size)
        return overflow ? nil : start..<end
    }

    /// "1 CPU", "2 vCPUs".
    static func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

    static func text(_ range: Range<UInt64>) -> String { "[\(hex(range.lowerBound))..\(hex(range.upperBound)))" }
}
