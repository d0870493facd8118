// The `vmm` host tool: one system file in, a running system out.
//
//   vmm check FILE…    validate system files (every error at once, each naming file and key)
//   vmm build FILE     write the guest configuration, device tree, bootable image (and .system)
//   vmm run FILE       build, then start QEMU; the guest's console is this terminal
//
// It works from any directory: the VMM's objects come from the checkout the tool lives in (found
// from its own executable, or $VMM_HOME), a system's files go under the current directory.
// Decisions live in VMMCore and VMMHost; this file only reads arguments and reports.

import ArgumentParser
import Foundation
import VMMCore
import VMMHost

@main
struct VMMCommand: ParsableCommand {
    // Paragraphs are single lines: argument-parser wraps them to the terminal and keeps "\n".
    static let configuration = CommandConfiguration(
        commandName: "vmm",
        abstract: "Build and run Linux guests on the vmm virtual machine monitor (native EL2 or seL4 Microkit).",
        discussion: """
            A system is one TOML file: the board, the platform and the virtual machines with their devices. \
            docs/configuration.md in the vmm checkout describes every key; examples/ has systems to start from.

            vmm works from any directory. `vmm build` and `vmm run` link the VMM's objects from the checkout \
            the tool belongs to (`make` builds them there; `make install` puts vmm on PATH), or from $VMM_HOME. \
            A system's files go to build/<name of the system file without .toml>/ in the current directory \
            (--output to choose).
            """,
        subcommands: [Check.self, Build.self, Run.self])
}

/// Writes "vmm: <line>" for each line on stderr (a message of several lines, such as a syntax
/// error with its excerpt, gets the prefix on each).
func report(_ lines: [String], to handle: FileHandle = .standardError) {
    let all = lines.flatMap { $0.split(separator: "\n", omittingEmptySubsequences: false) }
    handle.write(Data(all.map { "vmm: \($0)\n" }.joined().utf8))
}

/// Reports the lines on stderr and exits with status 1.
func fail(_ lines: [String]) -> Never {
    report(lines)
    Foundation.exit(1)
}

func fail(_ line: String) -> Never { fail([line]) }

/// Loads and validates a system file, or exits listing every error.
func loadSystem(_ path: String, _ board: BoardOptions) -> SystemConfiguration {
    do {
        return try SystemConfiguration.check(path: path, overrides: board.overrides)
    } catch {
        fail(error.errors.map(\.description))
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate system files: keys, types, addresses, sizes, files, MACs and ports.",
        discussion: """
            Every problem in every file is reported, one line each, as FILE: KEY: what is wrong and what is \
            expected; a TOML syntax error as FILE:LINE:COLUMN: syntax error: …, followed by the line. A good \
            file gets one line per VM, FILE: ok — followed by a summary of the VM. The exit status is 1 if any file \
            has an error.
            """)

    @Argument(help: "The system files (TOML).") var files: [String]
    @OptionGroup var board: BoardOptions

    func run() throws {
        var failed = false
        for file in files {
            do {
                report(try SystemConfiguration.check(path: file, overrides: board.overrides).summary(file: file),
                       to: .standardOutput)
            } catch {
                report(error.errors.map(\.description))
                failed = true
            }
        }
        if failed { throw ExitCode.failure }
    }
}

/// Options shared by check, build and run: the board, in place of the file's `[system]` keys.
struct BoardOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The GIC version, in place of the file's [system] gic.", valueName: "version"))
    var gic: Int?

    @Option(help: ArgumentHelp("The board's CPU model, in place of the file's [system] cpu: "
                               + SystemConfiguration.CPU.allCases.map(\.rawValue).joined(separator: ", ") + ".",
                               valueName: "model"))
    var cpu: String?

    func validate() throws {
        if let gic, SystemConfiguration.GICVersion(rawValue: gic) == nil {
            throw ValidationError("--gic: expected 2 (GICv2), found \(gic)")
        }
        if let cpu, SystemConfiguration.CPU(rawValue: cpu) == nil {
            throw ValidationError("--cpu: unknown CPU '\(cpu)' (expected one of "
                                  + SystemConfiguration.CPU.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
    }

    var overrides: BoardOverrides {
        BoardOverrides(gic: gic.flatMap(SystemConfiguration.GICVersion.init(rawValue:)),
                       cpu: cpu.flatMap(SystemConfiguration.CPU.init(rawValue:)))
    }
}

/// Options shared by build and run: where the VMM's objects and toolchain are, where to write.
struct BuildOptions: ParsableArguments {
    @Option(help: "Directory for this system's files (default: build/<system file name without .toml> in the current directory).")
    var output: String?

    @Option(help: "Directory holding clang and ld.lld (default: the directory of swiftc on PATH).")
    var toolchain: String?

    @Option(name: .customLong("microkit-sdk"),
            help: "Microkit SDK for platform \"microkit\" (default: $MICROKIT_SDK).")
    var microkitSDK: String?

    @Option(name: .customLong("microkit-config"), help: "The SDK configuration to build against")
    var microkitConfig: String = "debug"

    func environment(for file: String) -> BuildEnvironment {
        let checkout: URL
        do {
            checkout = try BuildEnvironment.locateCheckout(environment: ProcessInfo.processInfo.environment,
                                                           executable: ownExecutable())
        } catch {
            fail(error.message)
        }
        let stem = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
        let output = URL(fileURLWithPath: self.output ?? "build/\(stem)")
        let sdk = microkitSDK ?? ProcessInfo.processInfo.environment["MICROKIT_SDK"]
        var environment = BuildEnvironment(repository: checkout, toolchain: URL(fileURLWithPath: toolchainDirectory()),
                                           output: output, microkitSDK: sdk.flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) })
        environment.microkitConfig = microkitConfig
        environment.testHooks = ProcessInfo.processInfo.environment["VMM_TEST_HOOKS"] == "1"
        return environment
    }

    /// This program's file: /proc/self/exe names it with every symlink resolved.
    func ownExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    func toolchainDirectory() -> String {
        if let toolchain { return toolchain }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            if FileManager.default.isExecutableFile(atPath: "\(directory)/swiftc") { return String(directory) }
        }
        fail("no Swift toolchain on PATH (clang and ld.lld come with it); give --toolchain DIR")
    }
}

/// The project's Debian guest (build/guest in the checkout) is built on first use: a system file
/// that names it can be run on a fresh checkout. The builder prints its own progress.
func buildGuestImagesIfNeeded(for path: String, _ environment: BuildEnvironment) {
    let guest = environment.guestImages
    let images = [guest.appendingPathComponent("Image").path, guest.appendingPathComponent("initramfs.cpio.gz").path]
    guard let draft = SystemConfiguration.draft(path: path),
          draft.vms.contains(where: { vm in [vm.kernel, vm.initrd].contains { images.contains($0 ?? "") } }),
          !images.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) else { return }
    report(["building the Debian guest images in \(guest.path) (first use)"])
    let script = environment.repository.appendingPathComponent("scripts/build-guest.sh").path
    let builder = Process()
    builder.executableURL = URL(fileURLWithPath: "/bin/bash")
    builder.arguments = [script, guest.path]
    do { try builder.run() } catch { fail("cannot run \(script): \(error.localizedDescription)") }
    builder.waitUntilExit()
    if builder.terminationStatus != 0 { fail("building the guest images failed (\(script))") }
}

struct Build: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a system: guest configuration, device tree and the bootable image.",
        discussion: """
            Writes each VM's guest-N.config and guest-N.dtb (VM 0's also as guest.config and guest.dtb), \
            guest_images.S and vmm.elf (platform microkit: also vmm.system and loader.img) to \
            build/<system file name without .toml>/ in the current directory, or to --output. The directory \
            is named after the file, not the VM. Needs the VMM's objects in the checkout \
            (`make native-objects`, or `make MICROKIT_SDK=… microkit-objects`).
            """)

    @Argument(help: "The system file (TOML).") var file: String
    @OptionGroup var options: BuildOptions
    @OptionGroup var board: BoardOptions

    func run() throws {
        let environment = options.environment(for: file)
        buildGuestImagesIfNeeded(for: file, environment)
        let system = loadSystem(file, board)
        let products = build(system, environment)
        report(products.files.map { "wrote \($0.path)" }, to: .standardOutput)
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
        abstract: "Build a system and run it under QEMU; the (first) guest's console is this terminal.",
        discussion: """
            Builds as `vmm build` does, prints the system's summary, the serial console socket of each VM \
            after the first, each virtio console's socket and each forwarded host port, then starts QEMU; \
            the first VM's console is this terminal. Quit QEMU with Ctrl-A then x; `poweroff -f` in the guest \
            ends it with status 0.
            """)

    @Argument(help: "The system file (TOML).") var file: String
    @OptionGroup var options: BuildOptions
    @OptionGroup var board: BoardOptions
    @Option(help: "The QEMU binary") var qemu: String = "qemu-system-aarch64"

    func run() throws {
        let environment = options.environment(for: file)
        buildGuestImagesIfNeeded(for: file, environment)
        let system = loadSystem(file, board)
        let products = build(system, environment)
        let arguments = SystemBuilder.qemuArguments(system, image: products.image, output: environment.output)
        guard let path = executable(qemu) else { fail("'\(qemu)' not found on PATH (Debian: apt-get install qemu-system-arm)") }
        report(system.summary(file: file) + system.connections(output: environment.output)
               + ["starting \(qemu); quit with Ctrl-A then x"])
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
