// The lower-level verbs: `check-boot` (will a kernel and initrd boot in a guest of this much RAM,
// and where does everything go?) and `microkit-system` (write a Microkit system description).

import ArgumentParser
import Foundation
import VMMCore
import VMMHost

struct CheckBoot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-boot",
        abstract: "Check that an arm64 kernel and initrd fit a guest, and print where they go.")

    @Option(help: "The arm64 Linux Image.") var kernel: String
    @Option(help: "The initrd or initramfs.") var initrd: String?
    @Option(name: .customLong("ram-size-mib"), help: "Guest RAM in MiB.") var ramSizeMiB: UInt64
    @Option(name: .customLong("ram-base"), help: "Guest RAM base (0x-prefixed hex or decimal).")
    var ramBase: String = "0x40000000"

    func run() throws {
        guard let base = parseNumber(ramBase) else { fail("--ram-base '\(ramBase)': not an address") }
        guard ramSizeMiB > 0, ramSizeMiB <= UInt64.max >> 20 else { fail("--ram-size-mib '\(ramSizeMiB)': not a positive number of MiB") }
        let kernelFile = readStart(of: kernel, role: "kernel", prefix: ImageHeader.size)
        let initrdSize = initrd.map { readStart(of: $0, role: "initrd", prefix: 0).size }
        let ramSize = ramSizeMiB << 20
        let header: ImageHeader, layout: BootLayout
        do {
            (header, layout) = try kernelFile.start.withUnsafeBytes { raw in
                Result { () throws(BootCheckError) in
                    try BootLayout.check(kernelStart: raw, kernelFileSize: kernelFile.size, initrdSize: initrdSize,
                                         ramBase: base, ramSize: ramSize)
                }
            }.get()
        } catch {
            fail(String(decoding: error.message(kernelName: Array(kernel.utf8), initrdName: Array((initrd ?? "").utf8)),
                        as: UTF8.self))
        }
        let imageSize = header.imageSize.map(hex) ?? "0 (pre-3.17 kernel; reserving file size + 8 MiB)"
        print("guest RAM  \(hex(base))-\(hex(base + ramSize)) (\(ramSizeMiB) MiB)")
        print("kernel     \(kernel): \(kernelFile.size) bytes, text_offset \(hex(header.textOffset)), image_size \(imageSize)")
        print("  load     \(hex(layout.kernel.raw))-\(hex(layout.kernel.raw + layout.kernelSize)), entry \(hex(layout.kernelEntry.raw))")
        print("dtb        \(hex(layout.dtb.raw))-\(hex(layout.dtb.raw + layout.dtbMaxSize))")
        if let at = layout.initrd, let end = layout.initrdEnd, let initrd {
            print("initrd     \(initrd): \(layout.initrdSize) bytes at \(hex(at.raw))-\(hex(end.raw))")
        } else {
            print("initrd     none")
        }
    }
}

struct MicrokitSystemCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "microkit-system",
        abstract: "Write the Microkit system description (.system) of the VMM protection domain and its guest.")

    @Option(name: .customLong("vmm-elf"), help: "The VMM's program image, as the microkit tool will find it.")
    var vmmELF: String
    @Option(help: "vCPUs of the guest.") var vcpus: Int = 1
    @Option(help: "Where to write the .system file.") var output: String

    func run() throws {
        let text: String
        do {
            text = try MicrokitSystem(programImage: vmmELF, vcpuCount: vcpus).render()
        } catch {
            switch error { case .invalid(let messages): fail(messages) }
        }
        do {
            try text.write(toFile: output, atomically: true, encoding: .utf8)
        } catch {
            fail("--output '\(output)': cannot be written (\(error.localizedDescription))")
        }
        print("vmm: wrote \(output)")
    }
}

func parseNumber(_ text: String) -> UInt64? {
    if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
    return UInt64(text)
}

/// The file's size and its first `prefix` bytes, or exit naming the file and the problem.
func readStart(of path: String, role: String, prefix: Int) -> (size: UInt64, start: Data) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { fail("\(role) '\(path)': no such file") }
    guard !isDirectory.boolValue else { fail("\(role) '\(path)': is a directory, not a file") }
    guard let handle = FileHandle(forReadingAtPath: path) else {
        fail("\(role) '\(path)': cannot be opened for reading (permission denied?)")
    }
    defer { try? handle.close() }
    do {
        let start = try handle.read(upToCount: prefix) ?? Data()
        return (try handle.seekToEnd(), start)
    } catch {
        fail("\(role) '\(path)': cannot be read (\(error.localizedDescription))")
    }
}
