// The system configuration file: one short TOML file that describes the board and its virtual
// machines, read by `vmm check`, `vmm build` and `vmm run`. This file owns the model, the error
// types and the two entry points (`load`, `parse`); turning TOML into the model with per-key
// errors is ConfigurationParser.swift, and the checks that need several keys, the file system or
// the board (overlaps, RAM fit, duplicates, platform limits) are ConfigurationValidation.swift;
// TOML syntax errors in plain words are ConfigurationSyntax.swift, and what the tool prints for a
// good file (summary, console sockets, forwarded ports) is ConfigurationReport.swift.
// Board facts come from VMMCore (`QEMUVirtBoard`, `BootLayout`, `VirtioDeviceDescription`) so the
// tool and the VMM cannot disagree. docs/configuration.md carries the same schema as a table.
//
// The schema, every key with its default (a key path names a key as `vm[0].net[1].mac`):
//
//     [system]                         optional
//     board = "qemu-virt"              the only board
//     gic = 2                          2 (GICv2) or 3 (GICv3: native only; up to 32 vCPUs)
//     cpu = "cortex-a53"               the board's CPU model: cortex-a53, cortex-a72, cortex-a76,
//                                      neoverse-n1 or max (QEMU's, with pauth-impdef=on); microkit:
//                                      cortex-a53 only
//     platform = "native"              "native" (EL2 on the board) or "microkit" (seL4 Microkit)
//
//     [[vm]]                           native: one or more (all VMs' vCPUs at most 8, their RAM at most
//                                      255G less 128M in all: QEMU -m is 128M + that, at least 1G); microkit:
//                                      one or more (at most 32), their RAM at most 512M in all, one VMM PD
//                                      each (SystemBuilder.microkitSystem)
//     name = "linux"                   1–32 of a-z 0-9 _ -, unique
//     kernel = "Image"                 REQUIRED: an arm64 Linux Image
//     initrd = "initramfs.cpio.gz"     optional
//     cmdline = "console=ttyAMA0 rdinit=/init"   QEMUVirtBoard.bootargs; no NUL, at most 2047 bytes
//     ram = "512M"                     bytes, or a string with a K/M/G suffix; a multiple of 2M, at least 16M,
//                                      at most 255G less 128M (native) or 512M (microkit)
//     ram_base = 0x40000000            2 MiB aligned; RAM inside [0x40000000, 0x10000000000) (native: a
//                                      40-bit guest physical address space) or [0x40000000, 0x100000000) (microkit).
//                                      Guest-physical: where the RAM really is, the VMM decides (microkit: one
//                                      VM at ram_base, several side by side from 0x40000000 in file order)
//     vcpus = 1                        1–8 (GICv2) or 1–32 (GICv3); native: one board CPU each, all VMs' at
//                                      most 8 (GICv2) or 32 (GICv3); microkit: 1–8, on one core, and with
//                                      several VMs only the last one more than 1 (Microkit 2.0.1's tool)
//     cpus = [2, 3]                    native only: the board CPU of each vCPU (vCPU i on cpus[i]), 0–7, as
//                                      many as vcpus, no CPU twice in the system; none: the lowest board CPUs
//                                      no VM pins, in file order (without any `cpus`: VM 0 on CPUs 0..<vcpus,
//                                      the next VM on the next ones). QEMU -smp: the highest CPU in use + 1
//                                      (SystemConfiguration.boardCPUs)
//     serial = "b.serial.sock"         VMs after the first only: the unix socket of the VM's own PL011
//                                      (ttyAMA0); none: "<name>.serial.sock" in the build's output
//                                      directory (SystemBuilder.serialSockets). The first VM's PL011 is
//                                      the board's, on the terminal.
//
//     [[vm.block]]                     virtio-blk, up to 8
//     file = "disk.img"                REQUIRED: must exist unless `size` is given; unique in the system
//     size = "256M"                    none: `vmm build` creates a missing file of this size
//     readonly = false
//
//     [[vm.net]]                       virtio-net, up to 4
//     mac = "52:54:00:12:34:56"        52:54:00:12:34:5N for the Nth interface of the system (counting every
//                                      VM's, from 0; 0x50 + N past 9); unicast, unique in the system
//     network = "lan"                  none: a board NIC on a QEMU user network of its own; given: the card
//                                      joins the VMM's network of that name (1–32 of a-z 0-9 _ -) instead,
//                                      with no board device (microkit: a board NIC each, joined in a QEMU hub,
//                                      each behind its own VM's driver PD). A network joins cards of two VMs
//                                      at least, one card of each; at most 16 networks, numbered in order of
//                                      first appearance in the file (SystemConfiguration.vmmNetworks)
//     forward = ["tcp:8080:80"]        none; "tcp|udp:HOSTPORT:GUESTPORT", host ports unique per protocol;
//                                      not with `network`
//
//     [[vm.console]]                   virtio-console (hvc0, hvc1, …), up to 4
//     socket = "hvc0.sock"             REQUIRED: the unix socket the host connects to; unique
//
//     [[vm.passthrough]]               a board device given to the guest, up to 8
//     name = "rtc"                     REQUIRED: 1–32 of a-z 0-9 _ -, unique in the VM
//     address = 0x09010000             REQUIRED: page aligned, guest-physical = physical, below RAM;
//                                      given to one VM only
//     size = 0x1000                    REQUIRED: a multiple of the page size
//     irq = 34                         none; an SPI INTID 32–1019, not the UART's 33 or a virtio SPI;
//                                      given to one VM only
//
// Paths (kernel, initrd, file, socket, serial) are relative to the configuration file's directory
// and are absolute in the model. Virtio devices take virtio-mmio slots in the order block, net,
// console. The board's devices behind them (QEMU's virtio-mmio transports, 32 in all) are, in file
// order, VM by VM: its blocks, networks (native: not those on a VMM network) and consoles, then (VMs
// after the first) its serial console.

import Foundation
import VMMCore

/// One problem in a configuration file: `file: keyPath: message`, or for TOML that does not parse
/// `file:line:column: syntax error: message` followed by the line and a caret under the column.
public struct ConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    public let file: String
    /// `vm[0].net[1].mac`; "(syntax)" for TOML that does not parse, "(file)" when it cannot be read.
    public let keyPath: String
    /// What is wrong and what is expected, one line, no trailing period.
    public let message: String
    /// Where a syntax error is; nil for every other error.
    public let location: SourceLocation?

    public init(file: String, keyPath: String, message: String, location: SourceLocation? = nil) {
        self.file = file
        self.keyPath = keyPath
        self.message = message
        self.location = location
    }

    /// The lines to print: one, or three for a syntax error (the message, the line, the caret).
    public var lines: [String] {
        guard let location else { return ["\(file): \(keyPath): \(message)"] }
        return ["\(file):\(location.line):\(location.column): syntax error: \(message)"] + location.excerpt
    }

    public var description: String { lines.joined(separator: "\n") }
}

/// Every problem found in one file, in the schema's key order.
public struct ConfigurationErrors: Error, Equatable, Sendable, CustomStringConvertible {
    public let errors: [ConfigurationError]

    public init(errors: [ConfigurationError]) { self.errors = errors }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// A validated system: the board and the virtual machines the VMM runs on it.
public struct SystemConfiguration: Equatable, Sendable {
    public enum Board: String, Equatable, Sendable { case qemuVirt = "qemu-virt" }
    public enum GICVersion: Int, Equatable, Sendable {
        case v2 = 2, v3 = 3

        /// The controller the VMM's core gives each guest (GuestConfiguration.gicVersion).
        public var guestController: VMMCore.GICVersion {
            switch self {
            case .v2: return .v2
            case .v3: return .v3
            }
        }
    }
    /// The board CPU (QEMU's -cpu). The guest runs on it as it is: the VMM does not trap SVE or
    /// pointer authentication, and hides from the guest's ID registers what it does not give.
    public enum CPU: String, Equatable, Sendable, CaseIterable {
        case cortexA53 = "cortex-a53", cortexA72 = "cortex-a72", cortexA76 = "cortex-a76"
        case neoverseN1 = "neoverse-n1", max

        /// QEMU's -cpu value: `max` with QEMU's own pointer authentication algorithm, which TCG
        /// runs many times faster than the architected QARMA.
        public var qemuName: String { self == .max ? "max,pauth-impdef=on" : rawValue }
    }
    public enum Platform: String, Equatable, Sendable { case native, microkit }

    public var board: Board
    public var gic: GICVersion
    public var cpu: CPU
    public var platform: Platform
    public var vms: [VMConfiguration]

    public init(board: Board = .qemuVirt, gic: GICVersion = .v2, cpu: CPU = .cortexA53, platform: Platform = .native,
                vms: [VMConfiguration]) {
        self.board = board
        self.gic = gic
        self.cpu = cpu
        self.platform = platform
        self.vms = vms
    }

    /// The VMM's networks, each named once in order of first appearance (VM by VM, card by card):
    /// a network's number (`ConfiguredDevice.switchedNetwork`) is its index here.
    public var vmmNetworks: [String] {
        var names: [String] = []
        for vm in vms {
            for case let name? in vm.networks.map(\.network) where !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// The board CPU of each vCPU, VM by VM (`boardCPUs[n][i]`: vCPU i of VM n), as the VMM runs them on
    /// the native platform: a VM's `cpus`, or for a VM without, the lowest board CPUs no VM pins, taken
    /// in file order (so a system without `cpus` has VM 0 on CPUs 0..<vcpus, the next VM on the next ones).
    public var boardCPUs: [[Int]] { Self.boardCPUs(vms.map { ($0.vcpus, $0.cpus) }) }

    static func boardCPUs(_ vms: [(vcpus: Int, cpus: [Int]?)]) -> [[Int]] {
        let pinned = Set(vms.flatMap { $0.cpus ?? [] })
        var next = 0
        return vms.map { vm in
            if let cpus = vm.cpus { return cpus }
            return (0..<max(0, vm.vcpus)).map { _ in
                while pinned.contains(next) { next += 1 }
                defer { next += 1 }
                return next
            }
        }
    }

    /// Reads, parses and validates the file at `path`; relative paths in it are relative to its directory.
    public static func load(path: String, overrides: BoardOverrides = BoardOverrides()) throws(ConfigurationErrors)
        -> SystemConfiguration {
        func fail(_ message: String) -> ConfigurationErrors {
            ConfigurationErrors(errors: [ConfigurationError(file: path, keyPath: "(file)", message: message)])
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw fail("no such file") }
        guard !isDirectory.boolValue else { throw fail("is a directory, not a configuration file") }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot be read (permission denied?)") }
        guard let text = String(data: data, encoding: .utf8) else { throw fail("is not UTF-8 text (TOML files are UTF-8)") }
        let absolute = ConfigurationPaths.resolve(path, against: FileManager.default.currentDirectoryPath)
        return try parse(text: text, file: path, baseDirectory: ConfigurationPaths.directory(of: absolute),
                         overrides: overrides)
    }

    /// Parses and validates `text`; `file` only names it in errors, `baseDirectory` anchors relative paths.
    /// `overrides` replace the file's `[system]` keys before validation, as if the file said so.
    public static func parse(text: String, file: String, baseDirectory: String,
                             overrides: BoardOverrides = BoardOverrides()) throws(ConfigurationErrors) -> SystemConfiguration {
        let diagnostics = ConfigurationDiagnostics(file: file)
        // Validation runs even after key errors, so that one run reports everything; the model then
        // holds placeholders where keys failed, and checks skip any key that already has an error.
        if let system = ConfigurationParser(diagnostics: diagnostics, baseDirectory: baseDirectory,
                                            overrides: overrides).parse(text: text) {
            ConfigurationValidator(system: system, diagnostics: diagnostics).validate()
            if diagnostics.errors.isEmpty { return system }
        }
        throw ConfigurationErrors(errors: diagnostics.sorted())
    }
}

/// The board a system file's `[system]` table chooses, replaced for one run (`vmm check/build/run
/// --gic N --cpu MODEL`): the same system on another GIC or CPU without editing the file.
public struct BoardOverrides: Equatable, Sendable {
    public var gic: SystemConfiguration.GICVersion?
    public var cpu: SystemConfiguration.CPU?

    public init(gic: SystemConfiguration.GICVersion? = nil, cpu: SystemConfiguration.CPU? = nil) {
        self.gic = gic
        self.cpu = cpu
    }
}

/// One virtual machine. Paths are absolute.
public struct VMConfiguration: Equatable, Sendable {
    public struct BlockDevice: Equatable, Sendable {
        public var file: String
        /// Given: `vmm build` creates a missing file of this many bytes.
        public var size: UInt64?
        public var readOnly: Bool

        public init(file: String, size: UInt64? = nil, readOnly: Bool = false) {
            self.file = file
            self.size = size
            self.readOnly = readOnly
        }
    }

    public struct PortForward: Equatable, Sendable {
        public enum TransportProtocol: String, Equatable, Sendable { case tcp, udp }
        public var `protocol`: TransportProtocol
        public var host: UInt16
        public var guest: UInt16

        public init(protocol: TransportProtocol, host: UInt16, guest: UInt16) {
            self.protocol = `protocol`
            self.host = host
            self.guest = guest
        }
    }

    public struct NetworkDevice: Equatable, Sendable {
        /// Six bytes, unicast.
        public var mac: [UInt8]
        /// The VMM network the card joins (a virtual switch between VMs); nil: a board NIC on a QEMU
        /// user network of its own.
        public var network: String?
        /// Board NICs only.
        public var forwards: [PortForward]

        public init(mac: [UInt8], network: String? = nil, forwards: [PortForward] = []) {
            self.mac = mac
            self.network = network
            self.forwards = forwards
        }

        /// QEMU's locally administered prefix 52:54:00 and 12:34:5N, as QEMU numbers its own NICs;
        /// `index` counts the interfaces of the whole system, so that each VM's defaults differ.
        public static func defaultMAC(index: Int) -> [UInt8] {
            [0x52, 0x54, 0x00, 0x12, 0x34, UInt8(truncatingIfNeeded: 0x50 + index)]
        }
    }

    public struct ConsoleDevice: Equatable, Sendable {
        public var socket: String

        public init(socket: String) { self.socket = socket }
    }

    public struct PassthroughRegion: Equatable, Sendable {
        public var name: String
        /// Physical and guest-physical: the guest sees the device where the board has it.
        public var address: UInt64
        public var size: UInt64
        public var irq: UInt32?
        /// Device-tree compatible strings: the guest's device tree gets a node for the device with them.
        public var compatible: [String]

        public init(name: String, address: UInt64, size: UInt64, irq: UInt32? = nil, compatible: [String] = []) {
            self.name = name
            self.address = address
            self.size = size
            self.irq = irq
            self.compatible = compatible
        }
    }

    public static let defaultName = "linux"
    public static let defaultCmdline = QEMUVirtBoard.bootargs.description

    public var name: String
    public var kernel: String
    public var initrd: String?
    public var cmdline: String
    public var ramBase: UInt64
    public var ramSize: UInt64
    public var vcpus: Int
    /// The board CPU of each vCPU (native: vCPU i runs on `cpus[i]`); nil: the lowest free ones
    /// (`SystemConfiguration.boardCPUs`).
    public var cpus: [Int]?
    /// The unix socket of the VM's own PL011 (VMs after the first); nil: the default,
    /// "<name>.serial.sock" in the build's output directory (`SystemBuilder.serialSockets`).
    public var serial: String?
    public var blocks: [BlockDevice]
    public var networks: [NetworkDevice]
    public var consoles: [ConsoleDevice]
    public var passthrough: [PassthroughRegion]

    public init(name: String = VMConfiguration.defaultName, kernel: String, initrd: String? = nil,
                cmdline: String = VMConfiguration.defaultCmdline, ramBase: UInt64 = QEMUVirtBoard.guestRAMBase,
                ramSize: UInt64 = QEMUVirtBoard.guestRAMSize, vcpus: Int = 1, cpus: [Int]? = nil, serial: String? = nil,
                blocks: [BlockDevice] = [], networks: [NetworkDevice] = [], consoles: [ConsoleDevice] = [],
                passthrough: [PassthroughRegion] = []) {
        self.name = name
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        self.ramBase = ramBase
        self.ramSize = ramSize
        self.vcpus = vcpus
        self.cpus = cpus
        self.serial = serial
        self.blocks = blocks
        self.networks = networks
        self.consoles = consoles
        self.passthrough = passthrough
    }
}

/// Collects the errors of one file while it is parsed and validated.
final class ConfigurationDiagnostics {
    let file: String
    private(set) var errors: [ConfigurationError] = []

    init(file: String) { self.file = file }

    func report(_ keyPath: String, _ message: String, at location: SourceLocation? = nil) {
        errors.append(ConfigurationError(file: file, keyPath: keyPath, message: message, location: location))
    }

    /// Whether `keyPath` or anything below it already failed: later checks that use it then stay quiet.
    func hasError(at keyPath: String) -> Bool {
        errors.contains { $0.keyPath == keyPath || $0.keyPath.hasPrefix(keyPath + ".") || $0.keyPath.hasPrefix(keyPath + "[") }
    }

    /// Whether the entry at `keyPath` itself failed (it is not a table, or one too many): the model
    /// holds a placeholder for it, which no later check may read.
    func isPlaceholder(_ keyPath: String) -> Bool {
        errors.contains { $0.keyPath == keyPath }
    }

    /// Errors in the schema's key order (the order of a file written like the documented one), a
    /// table's own errors before its keys'; errors at the same key stay in the order found.
    func sorted() -> [ConfigurationError] {
        errors.enumerated().sorted { a, b in
            let (ka, kb) = (ConfigurationSchema.sortKey(a.element.keyPath), ConfigurationSchema.sortKey(b.element.keyPath))
            return ka.lexicographicallyPrecedes(kb) || (!kb.lexicographicallyPrecedes(ka) && a.offset < b.offset)
        }.map(\.element)
    }
}

/// Path arithmetic on strings, lexical only: a configuration names files that may not exist yet.
enum ConfigurationPaths {
    static func resolve(_ path: String, against directory: String) -> String {
        let joined = path.hasPrefix("/") ? path : directory + "/" + path
        var parts: [Substring] = []
        for part in joined.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        return "/" + parts.joined(separator: "/")
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}

extension SystemConfiguration {
    /// What a valid file may say but a platform cannot run yet, and what a build needs beyond the
    /// schema (a passthrough device's compatible strings, for the guest's device tree): refused by name
    /// by `vmm check`, `build` and `run` rather than silently ignored.
    public func unsupportedFeatures(file: String) -> [ConfigurationError] {
        var errors: [ConfigurationError] = []
        for (n, vm) in vms.enumerated() {
            for (m, region) in vm.passthrough.enumerated() where region.compatible.isEmpty {
                errors.append(ConfigurationError(file: file, keyPath: "vm[\(n)].passthrough[\(m)].compatible",
                    message: "required key is missing (expected the device-tree compatible strings of the device, "
                             + "e.g. [\"arm,pl031\", \"arm,primecell\"])"))
            }
        }
        return errors
    }
}
