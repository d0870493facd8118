// `vmm build` and `vmm run`: from a validated system configuration to the files that boot it, and
// the QEMU command line that runs it.
//
// The VMM's platform objects (the Embedded Swift core and platform, start-up code, runtime) are
// built once by the Makefile (`make native-objects`, `make microkit-objects`); a system's image is
// those objects linked with its guests: for each VM its kernel, initrd and guest configuration blob
// (VMMCore's `GuestConfiguration`), carried by the guest_images.S the builder writes into the
// output directory (`guestImagesAssembly`: the table `guest_table` the VMM reads, with each VM's
// board CPUs (`SystemConfiguration.boardCPUs`), and VM 0's images under the names the one-VM
// Microkit platform uses). For the Microkit platform the builder also
// links one driver protection domain per guest device (the same objects, told their device by the
// linker), writes the system description and runs the SDK's `microkit` tool. Each guest's device
// tree is written too, for inspection: the VMM builds the same one at boot.

import Foundation
import VMMCore

public struct BuildError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where a build finds its tools and objects, and where it writes.
public struct BuildEnvironment {
    public var repository: URL            // the checkout (Platforms/, build/)
    public var toolchain: URL             // directory with clang and ld.lld (the Swift toolchain's)
    public var output: URL                // this system's build directory
    public var microkitSDK: URL?
    public var microkitBoard = "qemu_virt_aarch64"
    public var microkitConfig = "debug"
    /// Tests only: link the Microkit VMMs with MicrokitLayout.testHooksSymbol (VMM_TEST_HOOKS=1).
    public var testHooks = false

    public init(repository: URL, toolchain: URL, output: URL, microkitSDK: URL?) {
        self.repository = repository
        self.toolchain = toolchain
        self.output = output
        self.microkitSDK = microkitSDK
    }

    public var nativeObjects: URL { repository.appendingPathComponent("build/native") }
    public var microkitObjects: URL {
        repository.appendingPathComponent("build/microkit/\(microkitBoard)/\(microkitConfig)")
    }

    /// The guest images the project builds (scripts/build-guest.sh) and the examples name.
    public var guestImages: URL { repository.appendingPathComponent("build/guest") }

    /// A directory is a vmm checkout if it has the sources a build needs besides the objects.
    public static func isCheckout(_ directory: URL) -> Bool {
        ["Platforms/common/runtime.c", "Platforms/native/linker.ld", "scripts/build-guest.sh"].allSatisfy {
            FileManager.default.fileExists(atPath: directory.appendingPathComponent($0).path)
        }
    }

    /// The checkout whose objects `vmm build` links: `$VMM_HOME` if set, else the checkout the
    /// running tool lives in, found upwards from `executable` with symlinks followed (so both
    /// `.build/debug/vmm` and the link `make install` puts in PREFIX/bin lead to it). Never the
    /// current directory: the tool works the same from anywhere.
    public static func locateCheckout(environment: [String: String], executable: String) throws(BuildError) -> URL {
        if let home = environment["VMM_HOME"], !home.isEmpty {
            let url = URL(fileURLWithPath: home).standardizedFileURL
            guard isCheckout(url) else {
                throw BuildError("VMM_HOME='\(home)' is not a vmm checkout (expected Platforms/ and scripts/ of vmm in it)")
            }
            return url
        }
        let resolved = URL(fileURLWithPath: executable).resolvingSymlinksInPath()
        var directory = resolved.deletingLastPathComponent()
        while directory.path != "/" {
            if isCheckout(directory) { return directory }
            directory = directory.deletingLastPathComponent()
        }
        throw BuildError("cannot find the vmm checkout from '\(resolved.path)': run `make install` in the checkout "
                         + "(it links PREFIX/bin/vmm to the tool it builds), or set VMM_HOME=/path/to/vmm")
    }
}

/// What a build produced.
public struct BuildProducts {
    public var image: URL                 // native: the ELF for -kernel; microkit: loader.img
    public var files: [URL]
}

public enum SystemBuilder {
    /// The guest configuration the VMM reads at boot. A card on one of the VMM's networks gets the
    /// network's number: its index in `networks`, the system's networks (`SystemConfiguration.vmmNetworks`;
    /// networks not in it are numbered after them, in order of first appearance in `vm`).
    /// `gic`: the system's interrupt controller (`SystemConfiguration.gic`), which every VM's guest sees.
    /// On Microkit a card on a VMM network is a board NIC like the others (`microkitDevices`).
    public static func guestConfiguration(_ vm: VMConfiguration, networks: [String] = [],
                                          gic: GICVersion = .v2, platform: SystemConfiguration.Platform = .native)
        -> GuestConfiguration {
        var configuration = GuestConfiguration()
        configuration.ramBase = vm.ramBase
        configuration.ramSize = vm.ramSize
        configuration.vcpuCount = vm.vcpus
        configuration.gicVersion = gic
        configuration.bootargs = Array(vm.cmdline.utf8)
        var numbers = networks
        var devices: [ConfiguredDevice] = []
        for block in vm.blocks { devices.append(.block(readOnly: block.readOnly)) }
        for network in vm.networks {
            guard let name = network.network, platform == .native else {
                devices.append(.network(mac: network.mac))
                continue
            }
            if !numbers.contains(name) { numbers.append(name) }
            devices.append(.switchedNetwork(mac: network.mac, network: numbers.firstIndex(of: name) ?? 0))
        }
        for _ in vm.consoles { devices.append(.console) }
        configuration.devices = devices
        configuration.passthrough = vm.passthrough.map {
            PassthroughDevice(name: Array($0.name.utf8), address: $0.address, size: $0.size, interrupt: $0.irq,
                              compatible: $0.compatible.map { Array($0.utf8) })
        }
        return configuration
    }

    /// The guest's device tree as the VMM will build it, with disk capacities from the files.
    public static func deviceTree(_ vm: VMConfiguration, initrdRange: (UInt64, UInt64)?, gic: GICVersion = .v2) -> [UInt8] {
        var board = GuestBoardDescription(ramBase: vm.ramBase, ramSize: vm.ramSize, vcpuCount: vm.vcpus,
                                          gicVersion: gic, bootargs: Array(vm.cmdline.utf8), initrd: initrdRange)
        let placements = guestConfiguration(vm, gic: gic).placements { n in
            guard n < vm.blocks.count else { return nil }
            let size = (try? FileManager.default.attributesOfItem(atPath: vm.blocks[n].file)[.size] as? NSNumber)??.uint64Value
            return (size ?? 0) / 512
        }
        board.devices = placements.map(\.deviceTreeEntry) + guestConfiguration(vm, gic: gic).passthrough.map(\.deviceTreeEntry)
        return GuestDeviceTree.build(board)
    }

    /// Creates the disk files that are missing and have a size.
    public static func createDisks(_ vm: VMConfiguration) throws -> [URL] {
        var created: [URL] = []
        for block in vm.blocks where !FileManager.default.fileExists(atPath: block.file) {
            guard let size = block.size else { throw BuildError("disk '\(block.file)': no such file (give it a size to create it)") }
            let url = URL(fileURLWithPath: block.file)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: block.file, contents: nil) else {
                throw BuildError("disk '\(block.file)': cannot be created")
            }
            let handle = try FileHandle(forWritingTo: url)
            try handle.truncate(atOffset: size)
            try handle.close()
            created.append(url)
        }
        return created
    }

    public static func build(_ system: SystemConfiguration, in environment: BuildEnvironment) throws -> BuildProducts {
        guard !system.vms.isEmpty else { throw BuildError("the system has no [[vm]]") }
        let fm = FileManager.default
        try fm.createDirectory(at: environment.output, withIntermediateDirectories: true)
        var files: [URL] = []
        for vm in system.vms { files += try createDisks(vm) }

        let serials = try checkedSerialSockets(system, output: environment.output)
        for socket in system.vms.flatMap({ $0.consoles.map(\.socket) }) + serials.compactMap({ $0 }) {
            try fm.createDirectory(at: URL(fileURLWithPath: socket).deletingLastPathComponent(),
                                   withIntermediateDirectories: true)
        }
        // An empty initrd file stands for "none" (the VMM then passes no initrd to the kernel).
        let emptyInitrd = environment.output.appendingPathComponent("empty.initrd").path
        if system.vms.contains(where: { $0.initrd == nil }) { try Data().write(to: URL(fileURLWithPath: emptyInitrd)) }

        // Each VM's configuration and device tree as guest-N.*; VM 0's also under the names a one-VM
        // system has always had (guest.config, guest.dtb).
        var guests: [GuestImages] = []
        let networks = system.vmmNetworks, boardCPUs = system.boardCPUs
        for (index, vm) in system.vms.enumerated() {
            let gic = system.gic.guestController
            let configuration = guestConfiguration(vm, networks: networks, gic: gic, platform: system.platform)
            do { try configuration.validate() } catch {
                throw BuildError("vm[\(index)] '\(vm.name)': the guest configuration is not one the VMM accepts: \(error.message)")
            }
            let config = Data(configuration.encoded()), dtb = Data(deviceTree(vm, initrdRange: nil, gic: gic))
            let configURL = environment.output.appendingPathComponent("guest-\(index).config")
            let dtbURL = environment.output.appendingPathComponent("guest-\(index).dtb")
            var written = [(configURL, config), (dtbURL, dtb)]
            if index == 0 {
                written += [(environment.output.appendingPathComponent("guest.config"), config),
                            (environment.output.appendingPathComponent("guest.dtb"), dtb)]
            }
            for (url, data) in written { try data.write(to: url) }
            files += written.map(\.0)
            guests.append(GuestImages(kernel: vm.kernel, initrd: vm.initrd ?? emptyInitrd, config: configURL.path,
                                      cpus: boardCPUs[index]))
        }

        let assembly = environment.output.appendingPathComponent("guest_images.S")
        try guestImagesAssembly(guests).write(to: assembly, atomically: true, encoding: .utf8)
        files.append(assembly)
        let images = environment.output.appendingPathComponent("guest_images.o")
        try run(environment.toolchain.appendingPathComponent("clang"), [
            "--target=aarch64-none-elf", "-c", assembly.path, "-o", images.path])

        switch system.platform {
        case .native:
            let objects = ["start.o", "board.o", "runtime.o", "VMMCore.o", "Platform.o"].map {
                environment.nativeObjects.appendingPathComponent($0).path
            }
            try requireObjects(objects, make: "make -C \(environment.repository.path) native-objects")
            let elf = environment.output.appendingPathComponent("vmm.elf")
            try run(environment.toolchain.appendingPathComponent("ld.lld"), [
                "-T", environment.repository.appendingPathComponent("Platforms/native/linker.ld").path,
                "--gc-sections", "-o", elf.path] + objects + [images.path])
            files.append(elf)
            return BuildProducts(image: elf, files: files)
        case .microkit:
            return try buildMicrokit(system, in: environment, guests: guests, images: images, files: files)
        }
    }

    /// The files one VM's images come from, as `guestImagesAssembly` includes them, and the board
    /// CPUs its vCPUs run on.
    public struct GuestImages: Equatable {
        public var kernel: String
        /// An empty file when the VM has no initrd.
        public var initrd: String
        public var config: String
        /// The board CPU of each vCPU (`SystemConfiguration.boardCPUs`): 1 to 8 of them, each 0–7.
        public var cpus: [Int]
        /// The guest's first randomness (GuestEntropy): new from the host's generator for every build.
        public var seed: [UInt8]

        public init(kernel: String, initrd: String, config: String, cpus: [Int], seed: [UInt8] = GuestImages.newSeed()) {
            self.kernel = kernel
            self.initrd = initrd
            self.config = config
            self.cpus = cpus
            self.seed = seed
        }

        /// GuestEntropy.seedSize bytes from the system's generator (getrandom on Linux).
        public static func newSeed() -> [UInt8] {
            var generator = SystemRandomNumberGenerator()
            return (0..<GuestEntropy.seedSize).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        }
    }

    /// The guest_images.S `vmm build` assembles and links into the VMM: in section .guest_images,
    /// `guest_table` (a u64 VM count, then for each VM nine u64: kernel start and end, initrd start
    /// and end, configuration start and end, the address of its board CPUs (`cpuBytes`), seed start
    /// and end; the VMM reads it), each VM's board CPUs and seed, then each VM's images (kernel and
    /// initrd page aligned), and VM 0's images also as `guest_kernel_start` … `guest_seed_end`, the
    /// names of the one-VM Microkit platform.
    public static func guestImagesAssembly(_ vms: [GuestImages]) throws(BuildError) -> String {
        let parts = ["kernel", "initrd", "config"]
        var lines = [
            "// The guests linked into the VMM, written by `vmm build` (SystemBuilder.guestImagesAssembly).",
            "    .section .guest_images, \"a\"",
            "    .balign 8",
            "    .global guest_table",
            "guest_table:",
            "    .quad \(vms.count)",
        ]
        for index in vms.indices {
            lines.append("    .quad " + parts.flatMap { ["vm\(index)_\($0)_start", "vm\(index)_\($0)_end"] }.joined(separator: ", ")
                         + ", vm\(index)_cpus, vm\(index)_seed_start, vm\(index)_seed_end")
        }
        for (index, vm) in vms.enumerated() {
            lines += ["vm\(index)_cpus:", "    .byte " + (try cpuBytes(vm.cpus, for: "vm[\(index)]"))]
            guard vm.seed.count == GuestEntropy.seedSize else {
                throw BuildError("vm[\(index)]: a seed of \(vm.seed.count) bytes, not \(GuestEntropy.seedSize)")
            }
            lines += ["vm\(index)_seed_start:", "    .byte " + vm.seed.map(String.init).joined(separator: ", "),
                      "vm\(index)_seed_end:"]
        }
        for (index, vm) in vms.enumerated() {
            for (part, (file, alignment)) in zip(parts, [(vm.kernel, 4096), (vm.initrd, 4096), (vm.config, 16)]) {
                lines += ["    .balign \(alignment)",
                          "vm\(index)_\(part)_start:",
                          "    .incbin \(try assemblerString(file, for: "vm[\(index)] \(part)"))",
                          "vm\(index)_\(part)_end:"]
            }
        }
        if !vms.isEmpty {
            let names = (parts + ["seed"]).flatMap { ["\($0)_start", "\($0)_end"] }
            lines.append("// VM 0's images under the names the Microkit platform (one VM) uses.")
            lines.append("    .global " + names.map { "guest_\($0)" }.joined(separator: ", "))
            lines += names.map { "    .set guest_\($0), vm0_\($0)" }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A VM's board CPUs as the bytes its table entry points at, such as `2, 3, 255` (vCPU 0 on CPU 2,
    /// vCPU 1 on CPU 3): byte i is the board CPU of vCPU i, and 255 ends the list. Refused: no CPU,
    /// more than the VMM runs (GICv3's 32), or a CPU outside 0–31.
    static func cpuBytes(_ cpus: [Int], for what: String) throws(BuildError) -> String {
        let maxCPUs = ConfigurationValidator.maxBoardCPUs(.v3)
        guard (1...maxCPUs).contains(cpus.count), cpus.allSatisfy({ (0..<maxCPUs).contains($0) }) else {
            throw BuildError("\(what): board CPUs \(cpus) are not 1 to \(maxCPUs) CPUs from 0 to \(maxCPUs - 1)")
        }
        return (cpus.map(String.init) + ["255"]).joined(separator: ", ")
    }

    /// `path` as an assembler string: in double quotes, with '"' and '\\' escaped by a backslash and
    /// control characters as octal escapes (the file goes through the C preprocessor too, which
    /// leaves string literals alone). Refused: a path that is not absolute (.incbin would look for
    /// it relative to the assembler's directory).
    static func assemblerString(_ path: String, for what: String) throws(BuildError) -> String {
        guard path.hasPrefix("/") else { throw BuildError("\(what): '\(path)' is not an absolute path") }
        var text: [UInt8] = [UInt8(ascii: "\"")]
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): text += [UInt8(ascii: "\\"), byte]
            case 0..<0x20, 0x7f: text += [UInt8(ascii: "\\"), 0x30 + (byte >> 6), 0x30 + ((byte >> 3) & 7), 0x30 + (byte & 7)]
            default: text.append(byte)      // the rest of UTF-8 as it is
            }
        }
        return String(decoding: text + [UInt8(ascii: "\"")], as: UTF8.self)
    }

    /// Each VM's serial socket, index by index: nil for VM 0 (its PL011 is the board's, on the
    /// terminal); for the others the VM's `serial`, or by default "<name>.serial.sock" in `output`,
    /// the build's output directory.
    public static func serialSockets(_ system: SystemConfiguration, output: URL) -> [String?] {
        system.vms.enumerated().map { index, vm in
            guard index > 0 else { return nil }
            return vm.serial ?? ConfigurationPaths.resolve("\(vm.name).serial.sock", against: output.path)
        }
    }

    /// `serialSockets`, after the checks the validator could not make without the output directory:
    /// a default socket must fit a socket address and be no other console's socket.
    public static func checkedSerialSockets(_ system: SystemConfiguration, output: URL) throws(BuildError) -> [String?] {
        let sockets = serialSockets(system, output: output)
        var taken: [String: String] = [:]
        for (index, vm) in system.vms.enumerated() {
            if let serial = vm.serial, index > 0 { taken[serial] = "vm[\(index)].serial" }
            for (n, console) in vm.consoles.enumerated() { taken[console.socket] = "vm[\(index)].console[\(n)]" }
        }
        for (index, vm) in system.vms.enumerated() where vm.serial == nil {
            guard let socket = sockets[index] else { continue }
            let what = "vm[\(index)] '\(vm.name)': the default serial socket '\(socket)'"
            if socket.utf8.count > ConfigurationValidator.maxSocketPathBytes {
                throw BuildError("\(what) is \(socket.utf8.count) bytes long; a unix socket path holds at most "
                                 + "\(ConfigurationValidator.maxSocketPathBytes) (choose a shorter --output directory, or "
                                 + "give the VM serial = \"PATH\")")
            }
            if let owner = taken[socket] {
                throw BuildError("\(what) is already the socket of \(owner) (give the VM serial = \"PATH\")")
            }
            taken[socket] = "vm[\(index)] '\(vm.name)'"
        }
        return sockets
    }

    /// QEMU's -m for a native system: the board's RAM starts at 0x4000_0000 with the VMM's 128 MiB,
    /// then the guests' RAM from 0x4800_0000, VM after VM (ConfigurationValidator.nativeGuestRAMHost;
    /// the VMM reads the board's RAM size from QEMU's device tree). Never less than 1G, the board's
    /// RAM of every system before guests could have more; above it in MiB ("2176M" for one 2 GiB VM).
    static func nativeMemory(_ system: SystemConfiguration) -> String {
        let vmm = ConfigurationValidator.nativeGuestRAMHost - ConfigurationValidator.ramStart
        let bytes = vmm + system.vms.reduce(UInt64(0)) { $0 + $1.ramSize }
        return bytes <= 1 << 30 ? "1G" : "\((bytes + (1 << 20) - 1) >> 20)M"
    }

    /// QEMU's -smp for a native system: the highest board CPU a vCPU runs on, plus one.
    static func nativeCPUs(_ system: SystemConfiguration) -> Int {
        (system.boardCPUs.joined().max() ?? 0) + 1
    }

    /// QEMU's command line for the built system: the board, then one board device for each of
    /// the guests' devices, in the order the VMM pairs them: VM by VM its blocks, networks (native:
    /// not the cards on a VMM network, whose frames the VMM switches itself with no board device;
    /// Microkit: those too, each VMM network a QEMU hub joining its cards' board devices) and
    /// consoles, then for each VM after the first one more console device behind its serial port
    /// (on the socket of `serialSockets`, with `output` the build's output directory). On the
    /// native platform each vCPU owns one board CPU (`SystemConfiguration.boardCPUs`; the VMM
    /// brings them up through PSCI), so the board has CPUs up to the highest one in use (as many as
    /// all VMs have vCPUs, unless `cpus` leaves a gap: QEMU has that CPU too, and it runs nothing),
    /// and as much RAM as the VMM and all guests need (`nativeMemory`).
    public static func qemuArguments(_ system: SystemConfiguration, image: URL, output: URL) -> [String] {
        var arguments = ["-machine", "virt,virtualization=on,gic-version=\(system.gic.rawValue)", "-cpu", system.cpu.qemuName,
                         "-nographic"]
        switch system.platform {
        case .native:
            arguments += ["-m", nativeMemory(system), "-smp", String(nativeCPUs(system))]
        case .microkit:
            arguments += ["-m", "size=2G", "-serial", "mon:stdio"]
        }
        let serials = serialSockets(system, output: output)
        let boardNICs = { (vm: VMConfiguration) in vm.networks.filter { $0.network == nil || system.platform == .microkit } }
        if system.vms.contains(where: { !($0.blocks.isEmpty && boardNICs($0).isEmpty && $0.consoles.isEmpty) })
            || serials.contains(where: { $0 != nil }) {
            arguments += ["-global", "virtio-mmio.force-legacy=false"]
        }
        // QEMU ids are numbered across the system: disk k, network k, console k.
        var disks = 0, networks = 0, consoles = 0, lanCards = 0
        for (index, vm) in system.vms.enumerated() {
            for block in vm.blocks {
                arguments += ["-drive", "file=\(block.file),if=none,format=raw,id=disk\(disks)\(block.readOnly ? ",readonly=on" : "")",
                              "-device", "virtio-blk-device,drive=disk\(disks)"]
                disks += 1
            }
            // Each board NIC is its own user network, 10.0.(2+n).0/24 with n counting the board NICs of
            // all VMs (cards on a VMM network have no board device and take no number): slirp answers
            // from its gateway .2 and forwards host ports to .15, so every interface has a subnet of its
            // own to route replies through. Board NIC 0 keeps slirp's default 10.0.2.0/24.
            for network in boardNICs(vm) {
                let mac = network.mac.map { String(format: "%02x", $0) }.joined(separator: ":")
                if let name = network.network {
                    // Microkit: a card on VMM network `name` (the system's networks in order: a hub each).
                    let hub = system.vmmNetworks.firstIndex(of: name) ?? 0
                    arguments += ["-netdev", "hubport,id=lan\(lanCards),hubid=\(hub)",
                                  "-device", "virtio-net-device,netdev=lan\(lanCards),mac=\(mac)"]
                    lanCards += 1
                    continue
                }
                let forwards = network.forwards.map { ",hostfwd=\($0.protocol):127.0.0.1:\($0.host)-:\($0.guest)" }.joined()
                arguments += ["-netdev", "user,id=net\(networks),net=\(networkSubnet(networks))\(forwards)",
                              "-device", "virtio-net-device,netdev=net\(networks),mac=\(mac)"]
                networks += 1
            }
            // One virtio-serial device per console, its port 0 the console: the VMM's board driver uses
            // port 0 only (no MULTIPORT) and pairs the n-th guest console with the n-th board device. A
            // virtconsole without `bus=` joins the first virtio-serial bus QEMU created, so each names its own.
            for console in vm.consoles {
                arguments += serialDevice(id: "serial\(consoles)", chardev: "console\(consoles)", socket: console.socket)
                consoles += 1
            }
            // The VM's PL011 (VMs after the first): the VMM emulates it and carries its bytes through
            // one more console device of the same form.
            if let socket = serials[index] {
                arguments += serialDevice(id: "serial-vm\(index)", chardev: "console-vm\(index)", socket: socket)
            }
        }
        switch system.platform {
        case .native: arguments += ["-kernel", image.path]
        case .microkit: arguments += ["-device", "loader,file=\(image.path),addr=0x70000000,cpu-num=0"]
        }
        return arguments
    }

    /// A virtio-serial device with one console, port 0, on a unix socket QEMU listens on.
    static func serialDevice(id: String, chardev: String, socket: String) -> [String] {
        ["-device", "virtio-serial-device,id=\(id)",
         "-chardev", "socket,id=\(chardev),path=\(socket),server=on,wait=off",
         "-device", "virtconsole,chardev=\(chardev),bus=\(id).0"]
    }

    /// The user network of board NIC `n` (counting the system's cards that are not on a VMM network):
    /// 10.0.(2+n).0/24 (guest 10.0.(2+n).15, gateway .2, DNS .3).
    public static func networkSubnet(_ n: Int) -> String { "10.0.\(2 + n).0/24" }

    static func requireObjects(_ paths: [String], make: String) throws {
        for path in paths where !FileManager.default.fileExists(atPath: path) {
            throw BuildError("'\(path)' is missing: build the VMM's objects first with `\(make)`")
        }
    }

    static func run(_ tool: URL, _ arguments: [String], quiet: Bool = false) throws {
        let process = Process()
        process.executableURL = tool
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        if quiet { process.standardOutput = FileHandle.nullDevice }
        do { try process.run() } catch { throw BuildError("cannot run '\(tool.path)': \(error.localizedDescription)") }
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BuildError("'\(tool.lastPathComponent)' failed:\n" + (String(data: message, encoding: .utf8) ?? ""))
        }
    }
}
