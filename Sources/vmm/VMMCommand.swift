// The `vmm` host tool: one system file in, a running system out.
//
//   vmm check FILE     validate the system file (every error at once, each naming file and key)
//   vmm build FILE     write the guest configuration, device tree, bootable image (and .system)
//   vmm run FILE       build if needed and start QEMU; the guest's console is this terminal
//
// plus two lower-level verbs the Makefile and tests use: `check-boot` (will this kernel and initrd
// fit) and `microkit-system` (write a Microkit system description). Decisions live in VMMCore and
// VMMHost; this file only reads arguments and reports.

import ArgumentParser
import Foundation
import VMMCore
import VMMHost

@main
struct VMMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmm",
        abstract: "Build and run Linux guests on the vmm virtual machine monitor (native EL2 or seL4 Microkit).",
        discussion: """
            A system is described by one TOML file (see docs/configuration.md and examples/). Run the
            commands from the vmm checkout: `make` builds the VMM's objects that `vmm build` links.
            """,
        subcommands: [Check.self, Build.self, Run.self, CheckBoot.self, MicrokitSystemCommand.self])
}

/// Writes "vmm: <line>" for each line on stderr (a message of several lines, such as a syntax
/// error with its excerpt, gets the prefix on each) and exits with status 1.
func fail(_ lines: [String]) -> Never {
    let all = lines.flatMap { $0.split(separator: "\n", omittingEmptySubsequences: false) }
    FileHandle.standardError.write(Data(all.map { "vmm: \($0)\n" }.joined().utf8))
    Foundation.exit(1)
}

func fail(_ line: String) -> Never { fail([line]) }

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// The project's Debian guest (build/guest) is built on first use: a system file that names it can
/// be run on a fresh checkout. The builder prints its own progress (download, extract, pack).
func buildGuestImagesIfNeeded(for path: String) {
    let fm = FileManager.default
    guard let text = try? String(contentsOfFile: path, encoding: .utf8), text.contains("build/guest/"),
          !(fm.fileExists(atPath: "build/guest/Image") && fm.fileExists(atPath: "build/guest/initramfs.cpio.gz")),
          fm.fileExists(atPath: "scripts/build-guest.sh") else { return }
    FileHandle.standardError.write(Data("vmm: building the Debian guest images in build/guest (first use)\n".utf8))
    let builder = Process()
    builder.executableURL = URL(fileURLWithPath: "/bin/bash")
    builder.arguments = ["scripts/build-guest.sh", "build/guest"]
    do { try builder.run() } catch { fail("cannot run scripts/build-guest.sh: \(error.localizedDescription)") }
    builder.waitUntilExit()
    if builder.terminationStatus != 0 { fail("building the guest images failed (scripts/build-guest.sh)") }
}

/// Loads and validates a system file, or exits listing every error.
func loadSystem(_ path: String) -> SystemConfiguration {
    let system: SystemConfiguration
    do {
        system = try SystemConfiguration.load(path: path)
    } catch {
        fail(error.errors.map(\.description))
    }
    let unsupported = system.unsupportedFeatures(file: path)
    if !unsupported.isEmpty { fail(unsupported.map(\.description)) }
    return system
}

/// Options shared by build and run: where the VMM's objects and toolchain are, where to write.
struct BuildOptions: ParsableArguments {
    @Option(help: "Directory for this system's files (default: build/<file name without .toml>).")
    var output: String?

    @Option(help: "Directory holding clang and ld.lld (default: the directory of swiftc on PATH).")
    var toolchain: String?

    @Option(name: .customLong("microkit-sdk"),
            help: "Microkit SDK for platform \"microkit\" (default: $MICROKIT_SDK).")
    var microkitSDK: String?

    @Option(name: .customLong("microkit-config"), help: "The SDK configuration to build against.")
    var microkitConfig: String = "debug"

    func environment(for file: String) -> BuildEnvironment {
        let repository = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        guard FileManager.default.fileExists(atPath: repository.appendingPathComponent("Platforms/common/guest_images.S").path)
        else { fail("run vmm from the vmm checkout (the directory with Platforms/ and the Makefile)") }
        let stem = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
        let output = URL(fileURLWithPath: self.output ?? "build/\(stem)")
        let sdk = microkitSDK ?? ProcessInfo.processInfo.environment["MICROKIT_SDK"]
        var environment = BuildEnvironment(repository: repository, toolchain: URL(fileURLWithPath: toolchainDirectory()),
                                           output: output, microkitSDK: sdk.flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) })
        environment.microkitConfig = microkitConfig
        return environment
    }

    func toolchainDirectory() -> String {
        if let toolchain { return toolchain }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            if FileManager.default.isExecutableFile(atPath: "\(directory)/swiftc") { return String(directory) }
        }
        fail("no Swift toolchain on PATH (clang and ld.lld come with it); give --toolchain DIR")
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a system file: keys, types, addresses, sizes, files, MACs and ports.",
        discussion: "Every problem is reported, one line each, as FILE: KEY: what is expected; the exit status is 1 if any.")

    @Argument(help: "The system file (TOML).") var file: String

    func run() throws {
        let system = loadSystem(file)
        for vm in system.vms {
            print("vmm: \(file): ok — vm '\(vm.name)': \(vm.ramSize >> 20) MiB at \(hex(vm.ramBase)), \(vm.vcpus) vCPU, "
                  + "\(vm.blocks.count) disk(s), \(vm.networks.count) network(s), \(vm.consoles.count) console(s), "
                  + "platform \(system.platform.rawValue)")
        }
    }
}

struct Build: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a system: guest configuration, device tree and the bootable image.",
        discussion: "Needs the VMM's objects (`make native-objects`, or `make MICROKIT_SDK=… microkit-objects`).")

    @Argument(help: "The system file (TOML).") var file: String
    @OptionGroup var options: BuildOptions

    func run() throws {
        buildGuestImagesIfNeeded(for: file)
        let system = loadSystem(file)
        let products = build(system, options.environment(for: file))
        for file in products.files { print("vmm: wrote \(file.path)") }
    }
}

func build(_ system: SystemConfiguration, _ environment: BuildEnvironment) -> BuildProducts {
    do {
        return try SystemBuilder.build(system, in: environment)
    } catch let error as BuildError {
        fail(error.message)
    } catch {
        fail("build failed: \(error.localizedDescription)")
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a system and run it under QEMU; the guest's console is this terminal.",
        discussion: "Quit QEMU with Ctrl-A then x; `poweroff -f` in the guest ends it with status 0.")

    @Argument(help: "The system file (TOML).") var file: String
    @OptionGroup var options: BuildOptions
    @Option(help: "The QEMU binary.") var qemu: String = "qemu-system-aarch64"

    func run() throws {
        buildGuestImagesIfNeeded(for: file)
        let system = loadSystem(file)
        let products = build(system, options.environment(for: file))
        let arguments = SystemBuilder.qemuArguments(system, image: products.image)
        guard let path = executable(qemu) else { fail("'\(qemu)' not found on PATH (Debian: apt-get install qemu-system-arm)") }
        FileHandle.standardError.write(Data("vmm: starting \(qemu); quit with Ctrl-A then x\n".utf8))
        // Replace this process: QEMU gets the terminal (or the caller's pipes) and its exit status is ours.
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        execv(path, argv)
        fail("cannot start '\(path)': \(String(cString: strerror(errno)))")
    }

    func executable(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
