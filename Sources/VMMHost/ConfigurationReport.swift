// What `vmm check` and `vmm run` say about a good system file, kept here (not in the command-line
// tool) so that the exact lines are unit-tested: the one-line summary of each VM, and where the
// host reaches the guests (serial sockets of the VMs after the first, console sockets, forwarded ports). Also the whole check of one file as
// the tool runs it: the schema and its rules, then what a platform cannot run yet.

import Foundation

extension SystemConfiguration {
    /// Loads and validates the file, then refuses what the platform cannot run yet: every error the
    /// file has, as `vmm check`, `build` and `run` report them.
    public static func check(path: String, overrides: BoardOverrides = BoardOverrides()) throws(ConfigurationErrors)
        -> SystemConfiguration {
        let system = try load(path: path, overrides: overrides)
        let unsupported = system.unsupportedFeatures(file: path)
        if !unsupported.isEmpty { throw ConfigurationErrors(errors: unsupported) }
        return system
    }

    /// The model as the parser reads it, without validation (nil if the file cannot be read or is
    /// not TOML): which files a system names, before they exist. Paths are absolute.
    public static func draft(path: String) -> SystemConfiguration? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let absolute = ConfigurationPaths.resolve(path, against: FileManager.default.currentDirectoryPath)
        return ConfigurationParser(diagnostics: ConfigurationDiagnostics(file: path),
                                   baseDirectory: ConfigurationPaths.directory(of: absolute)).parse(text: text)
    }

    /// One line per VM, as `vmm check` and `vmm run` print it:
    /// `FILE: ok — vm 'linux': 512 MiB at 0x40000000, 1 vCPU, 1 disk, 1 passthrough device (rtc), platform native`.
    /// Device kinds the VM does not have are left out; the cards on a VMM network are named with it,
    /// as in `2 networks (eth1 on network 'lan')`. When a VM of a native system pins its vCPUs
    /// (`cpus`), every VM's vCPUs are given with their board CPUs, as in `2 vCPUs on CPUs 0, 2`
    /// (without `cpus` the board CPUs follow from the file order, and the line leaves them out).
    public func summary(file: String) -> [String] {
        let pinning = platform == .native && vms.contains { $0.cpus != nil }
        return zip(vms, boardCPUs).map { vm, cpus in
            var parts = ["\(vm.ramSize >> 20) MiB at \(hex(vm.ramBase))",
                         count(vm.vcpus, "vCPU") + (pinning ? " on \(Self.cpuList(cpus))" : "")]
            if !vm.blocks.isEmpty { parts.append(count(vm.blocks.count, "disk")) }
            if !vm.networks.isEmpty {
                let switched = vm.networks.enumerated().compactMap { n, card in
                    card.network.map { "eth\(n) on network '\($0)'" }
                }
                parts.append(count(vm.networks.count, "network")
                             + (switched.isEmpty ? "" : " (\(switched.joined(separator: ", ")))"))
            }
            if !vm.consoles.isEmpty { parts.append(count(vm.consoles.count, "console")) }
            if !vm.passthrough.isEmpty {
                parts.append(count(vm.passthrough.count, "passthrough device")
                             + " (\(vm.passthrough.map(\.name).joined(separator: ", ")))")
            }
            parts.append("platform \(platform.rawValue)")
            return "\(file): ok — vm '\(vm.name)': " + parts.joined(separator: ", ")
        }
    }

    /// Where the host reaches each VM, as `vmm run` prints it before QEMU starts: for each VM after
    /// the first its serial console's socket (default sockets in `output`, the build's output
    /// directory), then each virtio console's socket (with the command that connects to it) and each
    /// forwarded host port.
    public func connections(output: URL) -> [String] {
        let serials = SystemBuilder.serialSockets(self, output: output)
        return zip(vms, serials).flatMap { vm, serial in
            (serial.map { ["vm '\(vm.name)': serial console on \($0) (connect with `socat - UNIX-CONNECT:\($0)`)"] } ?? [])
            + vm.consoles.enumerated().map { n, console in
                "vm '\(vm.name)': /dev/hvc\(n): socat - UNIX-CONNECT:\(console.socket)"
            } + vm.networks.enumerated().flatMap { n, network in
                network.forwards.map {
                    "vm '\(vm.name)': eth\(n): host 127.0.0.1:\($0.host) (\($0.protocol.rawValue)) forwards to guest port \($0.guest)"
                }
            }
        }
    }

    /// "CPU 0", "CPUs 2-3", "CPUs 0, 2", "CPUs 3, 2" in vCPU order, a run of consecutive CPUs as one range.
    static func cpuList(_ cpus: [Int]) -> String {
        var runs: [(first: Int, last: Int)] = []
        for cpu in cpus {
            if let run = runs.last, cpu == run.last + 1 { runs[runs.count - 1].last = cpu } else { runs.append((cpu, cpu)) }
        }
        let text = runs.map { $0.first == $0.last ? "\($0.first)" : "\($0.first)-\($0.last)" }.joined(separator: ", ")
        return (cpus.count == 1 ? "CPU " : "CPUs ") + text
    }

    private func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
}
