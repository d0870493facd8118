// From TOML text to a `SystemConfiguration`, one key at a time: unknown keys, wrong types, values
// out of their own range (a size, a MAC, a port forward, a name) and missing required keys. Every
// error is reported and parsing goes on with a placeholder, so one run lists them all; checks that
// need several keys, the board or the file system are ConfigurationValidation.swift's.
//
// TOMLKit (toml++) does the TOML; it keeps a table's keys sorted, not in file order, which is why
// errors are sorted by the schema's key order at the end (ConfigurationSchema.sortKey).

import Foundation
import TOMLKit
import VMMCore

/// The keys each table accepts, in the documented order; the order also sorts errors.
enum ConfigurationSchema {
    static let tables: [String: [String]] = [
        "": ["system", "vm"],
        "system": ["board", "gic", "cpu", "platform"],
        "vm": ["name", "kernel", "initrd", "cmdline", "ram", "ram_base", "vcpus", "cpus", "serial", "block", "net", "console", "passthrough"],
        "block": ["file", "size", "readonly"],
        "net": ["mac", "network", "forward"],
        "console": ["socket"],
        "passthrough": ["name", "address", "size", "irq", "compatible"],
    ]

    /// The known key `key` was most likely meant to be: the nearest by edit distance (an adjacent
    /// swap counts one edit; case and '-' for '_' count none), if at most 1 edit away for keys of up
    /// to 4 characters and 2 for longer ones. Further than that a suggestion is more often wrong
    /// than helpful, and the message lists the table's keys instead.
    static func closestKey(to key: String, in known: [String]) -> String? {
        func normal(_ text: String) -> [Character] { Array(text.lowercased().map { $0 == "-" ? "_" : $0 }) }
        let typed = normal(key), limit = typed.count <= 4 ? 1 : 2
        var best: (key: String, distance: Int)? = nil
        for candidate in known {
            let distance = editDistance(typed, normal(candidate))
            if distance <= limit, distance < (best?.distance ?? Int.max) { best = (candidate, distance) }
        }
        return best?.key
    }

    /// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
    /// adjacent characters each cost 1.
    static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
            }
        }
        return d[a.count][b.count]
    }

    /// Most devices of each kind a VM may have.
    static let maxBlocks = 8, maxNetworks = 4, maxConsoles = 4, maxPassthrough = 8

    struct Component: Comparable {
        var rank: Int
        var name: String
        var index: Int      // -1: the table itself, before its entries

        static func < (a: Component, b: Component) -> Bool { (a.rank, a.name, a.index) < (b.rank, b.name, b.index) }
    }

    /// `vm[0].net[1].mac` as (rank of "vm" at the root, 0), (rank of "net" in a vm, 1), (rank of "mac" in a net);
    /// keys outside the schema rank after the known ones, by name.
    static func sortKey(_ keyPath: String) -> [Component] {
        var context = ""
        return keyPath.split(separator: ".").map { part in
            var name = String(part), index = -1
            if let open = part.firstIndex(of: "["), part.last == "]",
               let number = Int(part[part.index(after: open)..<part.index(before: part.endIndex)]) {
                name = String(part[..<open])
                index = number
            }
            let rank = tables[context]?.firstIndex(of: name) ?? Int.max
            context = name
            return Component(rank: rank, name: name, index: index)
        }
    }
}

struct ConfigurationParser {
    let diagnostics: ConfigurationDiagnostics
    let baseDirectory: String
    /// The board keys given on the command line, in place of the file's (`vmm … --gic --cpu`).
    var overrides = BoardOverrides()

    static let sizeExpectation = "a size (integer bytes, or a string with a K, M or G suffix such as \"512M\")"
    static let addressExpectation = "an address (a non-negative integer such as 0x40000000)"
    static let nameExpectation = "1 to 32 characters from a-z, 0-9, '_' and '-'"
    static let macExpectation = "a MAC address such as \"52:54:00:12:34:56\""
    static let forwardExpectation = "\"tcp:HOSTPORT:GUESTPORT\" or \"udp:HOSTPORT:GUESTPORT\" with ports 1 to 65535"
    /// arm64 COMMAND_LINE_SIZE is 2048 bytes, NUL included.
    static let maxCmdlineBytes = 2047

    /// The system, or nil when the text is not TOML (one "(syntax)" error).
    func parse(text: String) -> SystemConfiguration? {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let at = ConfigurationSyntax.location(in: text, line: Int(error.source.begin.line),
                                                  column: Int(error.source.begin.column))
            diagnostics.report("(syntax)", ConfigurationSyntax.plainMessage(error.description, at: at), at: at)
            return nil
        } catch {
            diagnostics.report("(syntax)", "\(error)")
            return nil
        }
        let reader = TableReader(root, path: "", schema: "", diagnostics: diagnostics)
        var system = SystemConfiguration(vms: [])
        if let table = reader.table("system") { parseSystem(table, into: &system) }
        if let gic = overrides.gic { system.gic = gic }
        if let cpu = overrides.cpu { system.cpu = cpu }

        let vms = reader.tables("vm", header: "[[vm]]") ?? []
        if vms.isEmpty, !diagnostics.hasError(at: "vm") {
            diagnostics.report("vm", "no virtual machine (expected a [[vm]] table with at least kernel = \"PATH\")")
        }
        // Default MACs count the interfaces of the whole system, so that two VMs' defaults differ.
        var interfaces = 0
        system.vms = vms.map { table in
            let vm = parseVM(table, firstInterface: interfaces, gic: system.gic)
            interfaces += vm.networks.count
            return vm
        }
        return system
    }

    private func parseSystem(_ table: TableReader, into system: inout SystemConfiguration) {
        if let board = table.string("board").value {
            if let known = SystemConfiguration.Board(rawValue: board) { system.board = known } else {
                diagnostics.report(table.keyPath("board"), "unknown board '\(board)' (expected qemu-virt)")
            }
        }
        if let gic = table.integer("gic").value {
            if let known = SystemConfiguration.GICVersion(rawValue: gic) { system.gic = known } else {
                diagnostics.report(table.keyPath("gic"), "expected 2 (GICv2) or 3 (GICv3), found \(gic)")
            }
        }
        if let cpu = table.string("cpu").value {
            if let known = SystemConfiguration.CPU(rawValue: cpu) { system.cpu = known } else {
                let names = SystemConfiguration.CPU.allCases.map(\.rawValue).joined(separator: ", ")
                diagnostics.report(table.keyPath("cpu"), "unknown CPU '\(cpu)' (expected one of \(names))")
            }
        }
        if let platform = table.string("platform").value {
            if let known = SystemConfiguration.Platform(rawValue: platform) { system.platform = known } else {
                diagnostics.report(table.keyPath("platform"), "unknown platform '\(platform)' (expected native or microkit)")
            }
        }
    }

    /// `table` is nil for an entry that is not a table (already reported): a placeholder keeps the indices.
    /// `firstInterface` is the number of network interfaces of the VMs before this one.
    private func parseVM(_ table: TableReader?, firstInterface: Int, gic: SystemConfiguration.GICVersion) -> VMConfiguration {
        guard let table else { return VMConfiguration(kernel: "") }
        var vm = VMConfiguration(kernel: "")
        if let name = table.string("name").value, checkName(name, at: table.keyPath("name")) { vm.name = name }
        vm.kernel = table.path("kernel", relativeTo: baseDirectory, required: "the path of an arm64 Linux Image") ?? ""
        vm.initrd = table.path("initrd", relativeTo: baseDirectory, required: nil)
        if let cmdline = table.string("cmdline").value {
            let keyPath = table.keyPath("cmdline")
            if cmdline.utf8.contains(0) {
                diagnostics.report(keyPath, "contains a NUL character (the kernel command line is a C string)")
            } else if cmdline.utf8.count > Self.maxCmdlineBytes {
                diagnostics.report(keyPath, "is \(cmdline.utf8.count) bytes long; arm64 Linux takes at most "
                                   + "\(Self.maxCmdlineBytes) (COMMAND_LINE_SIZE 2048 with its NUL)")
            } else {
                vm.cmdline = cmdline
            }
        }
        if let ram = table.size("ram").value {
            let keyPath = table.keyPath("ram")
            if ram < 16 << 20 {
                diagnostics.report(keyPath, "\(sizeText(ram)) is too small (expected at least 16M)")
            } else if !ram.isMultiple(of: BootLayout.kernelAlignment) {
                diagnostics.report(keyPath, "\(sizeText(ram)) is not a multiple of 2M (guest RAM is mapped in 2 MiB blocks)")
            } else {
                vm.ramSize = ram
            }
        }
        if let base = table.address("ram_base").value {
            if base.isMultiple(of: BootLayout.kernelAlignment) { vm.ramBase = base } else {
                diagnostics.report(table.keyPath("ram_base"),
                                   "\(hex(base)) is not 2 MiB aligned (arm64 kernels need a 2 MiB-aligned base)")
            }
        }
        let maxCPUs = ConfigurationValidator.maxBoardCPUs(gic)
        if let vcpus = table.integer("vcpus").value {
            // GICv2 has 8 CPU interfaces (GIC architecture spec v2, 1.3: "up to eight processors");
            // with GICv3 the limit is the native platform's (ConfigurationValidator.maxBoardCPUs).
            if (1...maxCPUs).contains(vcpus) { vm.vcpus = vcpus } else {
                diagnostics.report(table.keyPath("vcpus"), "expected 1 to \(maxCPUs) (\(ConfigurationValidator.cpuLimitReason(gic))), found \(vcpus)")
            }
        }
        // Whether the list fits the VM's vCPUs, the platform and the other VMs' is the validator's.
        if let cpus = table.integerArray("cpus") {
            var pinned: [Int] = []
            for (n, cpu) in cpus.enumerated() {
                guard let cpu else { continue }
                if (0..<maxCPUs).contains(cpu) { pinned.append(cpu) } else {
                    diagnostics.report("\(table.keyPath("cpus"))[\(n)]", "expected a board CPU from 0 to "
                                       + "\(maxCPUs - 1) (\(ConfigurationValidator.cpuLimitReason(gic))), found \(cpu)")
                }
            }
            vm.cpus = pinned
        }
        // Whether this VM may have one (not the first) is the validator's: it knows the VM's place.
        vm.serial = table.path("serial", relativeTo: baseDirectory, required: nil)
        vm.blocks = entries(table, "block", header: "[[vm.block]]", limit: ConfigurationSchema.maxBlocks,
                            kind: "virtio-blk devices").map { parseBlock($0) }
        vm.networks = entries(table, "net", header: "[[vm.net]]", limit: ConfigurationSchema.maxNetworks,
                              kind: "virtio-net devices").enumerated().map { parseNetwork($1, index: firstInterface + $0) }
        vm.consoles = entries(table, "console", header: "[[vm.console]]", limit: ConfigurationSchema.maxConsoles,
                              kind: "virtio-console devices").map { parseConsole($0) }
        vm.passthrough = entries(table, "passthrough", header: "[[vm.passthrough]]",
                                 limit: ConfigurationSchema.maxPassthrough, kind: "passthrough regions")
            .map { parsePassthrough($0) }
        return vm
    }

    /// The entries of an array of tables; the ones past `limit` are reported (and kept as entries).
    private func entries(_ table: TableReader, _ key: String, header: String, limit: Int, kind: String) -> [TableReader?] {
        let found = table.tables(key, header: header) ?? []
        if found.count > limit {
            diagnostics.report("\(table.keyPath(key))[\(limit)]", "too many \(kind) (expected at most \(limit), found \(found.count))")
        }
        return found
    }

    private func parseBlock(_ table: TableReader?) -> VMConfiguration.BlockDevice {
        guard let table else { return VMConfiguration.BlockDevice(file: "") }
        var block = VMConfiguration.BlockDevice(file: table.path("file", relativeTo: baseDirectory,
                                                                 required: "the path of a raw disk image") ?? "")
        if let size = table.size("size").value {
            // virtio-blk counts in 512-byte sectors (virtio v1.2, 5.2.4 "capacity").
            if size > 0, size.isMultiple(of: 512) { block.size = size } else {
                diagnostics.report(table.keyPath("size"), "expected a positive multiple of 512 bytes (virtio-blk sectors), found \(sizeText(size))")
            }
        }
        block.readOnly = table.bool("readonly").or(false)
        return block
    }

    private func parseNetwork(_ table: TableReader?, index: Int) -> VMConfiguration.NetworkDevice {
        var network = VMConfiguration.NetworkDevice(mac: VMConfiguration.NetworkDevice.defaultMAC(index: index))
        guard let table else { return network }
        if let text = table.string("mac").value {
            let keyPath = table.keyPath("mac")
            if let mac = Self.parseMAC(text) {
                if mac.allSatisfy({ $0 == 0 }) {
                    diagnostics.report(keyPath, "\(text) is not a usable MAC (expected a non-zero unicast address)")
                } else if mac[0] & 1 != 0 {
                    // IEEE 802: bit 0 of the first octet is the individual/group bit.
                    diagnostics.report(keyPath, "\(Self.macText(mac)) is a multicast address (bit 0 of the first "
                                       + "byte is set); expected a unicast MAC")
                } else {
                    network.mac = mac
                }
            } else {
                diagnostics.report(keyPath, "expected \(Self.macExpectation), found '\(text)'")
            }
        }
        // Like a VM's name: the network's name is the same word in every VM that joins it.
        if let name = table.string("network").value, checkName(name, at: table.keyPath("network")) {
            network.network = name
        }
        if let forwards = table.stringArray("forward") {
            for (n, text) in forwards.enumerated() {
                guard let text else { continue }
                if let forward = Self.parseForward(text) { network.forwards.append(forward) } else {
                    diagnostics.report("\(table.keyPath("forward"))[\(n)]", "expected \(Self.forwardExpectation), found '\(text)'")
                }
            }
        }
        return network
    }

    private func parseConsole(_ table: TableReader?) -> VMConfiguration.ConsoleDevice {
        VMConfiguration.ConsoleDevice(socket: table?.path("socket", relativeTo: baseDirectory,
                                                          required: "the path of a unix socket") ?? "")
    }

    private func parsePassthrough(_ table: TableReader?) -> VMConfiguration.PassthroughRegion {
        var region = VMConfiguration.PassthroughRegion(name: "", address: 0, size: 0)
        guard let table else { return region }
        switch table.string("name") {
        case .absent: table.reportMissing("name", expected: "a name such as \"rtc\"")
        case .present(let name): if checkName(name, at: table.keyPath("name")) { region.name = name }
        case .invalid: break
        }
        let page = BootLayout.pageSize
        switch table.address("address") {
        case .absent: table.reportMissing("address", expected: "the device's physical address")
        case .present(let address):
            if address.isMultiple(of: page) { region.address = address } else {
                diagnostics.report(table.keyPath("address"), "\(hex(address)) is not page aligned (expected a multiple of \(hex(page)))")
            }
        case .invalid: break
        }
        switch table.size("size") {
        case .absent: table.reportMissing("size", expected: "the region's size, a multiple of \(hex(page))")
        case .present(let size):
            if size > 0, size.isMultiple(of: page) { region.size = size } else {
                diagnostics.report(table.keyPath("size"), "\(hex(size)) is not a positive multiple of the page size \(hex(page))")
            }
        case .invalid: break
        }
        if let compatible = table.stringArray("compatible") {
            for (n, text) in compatible.enumerated() {
                guard let text else { continue }
                if text.isEmpty || text.utf8.count > 127 || text.contains("\0") {
                    diagnostics.report("\(table.keyPath("compatible"))[\(n)]",
                                       "expected a device-tree compatible string such as \"arm,pl031\"")
                } else {
                    region.compatible.append(text)
                }
            }
        }
        if let irq = table.integer("irq").value {
            // GIC v2 architecture, 2.2.1: INTIDs 32-1019 are SPIs; below are the CPUs' own SGIs and PPIs.
            if (32...1019).contains(irq) { region.irq = UInt32(irq) } else {
                diagnostics.report(table.keyPath("irq"), "expected an SPI INTID from 32 to 1019, found \(irq)")
            }
        }
        return region
    }

    /// VM and device names end up in generated file and Microkit region names.
    private func checkName(_ name: String, at keyPath: String) -> Bool {
        let allowed = name.utf8.allSatisfy { (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5f || $0 == 0x2d }
        if allowed, (1...32).contains(name.utf8.count) { return true }
        diagnostics.report(keyPath, "expected \(Self.nameExpectation), found '\(name)'")
        return false
    }

    static func parseMAC(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        return bytes.count == 6 ? bytes : nil
    }

    static func macText(_ mac: [UInt8]) -> String {
        mac.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined(separator: ":")
    }

    static func parseForward(_ text: String) -> VMConfiguration.PortForward? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let proto = VMConfiguration.PortForward.TransportProtocol(rawValue: String(parts[0])),
              let host = port(parts[1]), let guest = port(parts[2]) else { return nil }
        return VMConfiguration.PortForward(protocol: proto, host: host, guest: guest)
    }

    private static func port(_ text: Substring) -> UInt16? {
        guard !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let port = UInt16(text), port > 0
        else { return nil }
        return port
    }

    /// Decimal digits with an optional K, M or G suffix (either case, powers of 1024); nil for
    /// anything else, and for sizes past 2^64.
    static func parseSize(_ text: String) -> UInt64? {
        var digits = Substring(text), shift: UInt64 = 0
        switch text.last {
        case "K", "k": shift = 10
        case "M", "m": shift = 20
        case "G", "g": shift = 30
        default: break
        }
        if shift != 0 { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let value = UInt64(digits),
              value <= UInt64.max >> shift else { return nil }
        return value << shift
    }
}

/// "512M", "1G", "4K" when exact; bytes otherwise.
func sizeText(_ bytes: UInt64) -> String {
    for (shift, suffix) in [(30, "G"), (20, "M"), (10, "K")] where bytes != 0 && bytes.isMultiple(of: 1 << shift) {
        return "\(bytes >> shift)\(suffix)"
    }
    return "\(bytes) bytes"
}

