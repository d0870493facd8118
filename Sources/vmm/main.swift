// The `vmm` host tool. Two verbs for now: `check-boot` (will this kernel and initrd boot in a guest of
// this much RAM, and where does everything go?) and `microkit-system` (write the Microkit system
// description for the VMM). It reads and writes the files, and leaves every decision to VMMCore
// (`BootLayout.check`) and VMMHost (`MicrokitSystem`), whose failures come back as lines naming the
// field. A later issue grows this into the full CLI (configuration file, DTB and image generation,
// running QEMU).

import Foundation
import VMMCore
import VMMHost

let usage = """
    usage: vmm check-boot --kernel PATH [--initrd PATH] --ram-size-mib N [--ram-base ADDRESS]
      Parses the arm64 Image header and plans where kernel, device tree and initrd go in guest RAM.
      --ram-base defaults to 0x40000000 (QEMU virt); numbers may be decimal or 0x-prefixed hex.
    usage: vmm microkit-system --vmm-elf PATH [--vcpus N] --output FILE
      Writes the Microkit system description (.system) of the VMM protection domain and its Linux guest
      on QEMU virt; PATH is the VMM's program image as the microkit tool will find it. --vcpus defaults to 1.
    """

/// Prints the one line "vmm: <message>" on stderr and exits 1.
func fail(_ message: String) -> Never {
    fail([message])
}

/// Prints each message as its own "vmm: <message>" line on stderr and exits 1.
func fail(_ messages: [String]) -> Never {
    FileHandle.standardError.write(Data(messages.map { "vmm: \($0)\n" }.joined().utf8))
    exit(1)
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

func parseNumber(_ text: String) -> UInt64? {
    if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
    return UInt64(text)
}

struct CheckBootOptions {
    var kernel: String?
    var initrd: String?
    var ramSizeMiB: UInt64?
    var ramBase: UInt64 = 0x4000_0000

    init(_ arguments: ArraySlice<String>) {
        var rest = arguments
        while let option = rest.popFirst() {
            guard ["--kernel", "--initrd", "--ram-size-mib", "--ram-base"].contains(option) else {
                fail("check-boot: unknown option '\(option)' (see 'vmm --help')")
            }
            guard let value = rest.popFirst() else { fail("check-boot: \(option) needs a value") }
            switch option {
            case "--kernel": kernel = value
            case "--initrd": initrd = value
            case "--ram-size-mib":
                guard let mib = parseNumber(value), mib > 0, mib <= UInt64.max >> 20 else {
                    fail("--ram-size-mib '\(value)': not a positive number of MiB")
                }
                ramSizeMiB = mib
            default:
                guard let base = parseNumber(value) else { fail("--ram-base '\(value)': not an address") }
                ramBase = base
            }
        }
    }
}

/// The file's size and its first `prefix` bytes, or exit naming the file and the problem.
func readStart(of path: String, role: String, prefix: Int) -> (size: UInt64, start: Data) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        fail("\(role) '\(path)': no such file")
    }
    guard !isDirectory.boolValue else { fail("\(role) '\(path)': is a directory, not a file") }
    guard let handle = FileHandle(forReadingAtPath: path) else {
        fail("\(role) '\(path)': cannot be opened for reading (permission denied?)")
    }
    defer { try? handle.close() }
    do {
        let start = try handle.read(upToCount: prefix) ?? Data()
        let size = try handle.seekToEnd()
        return (size, start)
    } catch {
        fail("\(role) '\(path)': cannot be read (\(error.localizedDescription))")
    }
}

func checkBoot(_ options: CheckBootOptions) -> Never {
    guard let kernelPath = options.kernel else { fail("check-boot: --kernel PATH is required (see 'vmm --help')") }
    guard let ramSizeMiB = options.ramSizeMiB else {
        fail("check-boot: --ram-size-mib N is required (see 'vmm --help')")
    }
    let kernel = readStart(of: kernelPath, role: "kernel", prefix: ImageHeader.size)
    let initrdSize = options.initrd.map { readStart(of: $0, role: "initrd", prefix: 0).size }
    let ramSize = ramSizeMiB << 20

    let header: ImageHeader
    let layout: BootLayout
    do {
        // Data.withUnsafeBytes rethrows untyped errors; Result keeps BootCheckError.
        (header, layout) = try kernel.start.withUnsafeBytes { raw in
            Result { () throws(BootCheckError) in
                try BootLayout.check(kernelStart: raw, kernelFileSize: kernel.size, initrdSize: initrdSize,
                                     ramBase: options.ramBase, ramSize: ramSize)
            }
        }.get()
    } catch {
        let message = error.message(kernelName: Array(kernelPath.utf8), initrdName: Array((options.initrd ?? "").utf8))
        fail(String(decoding: message, as: UTF8.self))
    }

    let pageSize: String = switch header.pageSize {
    case .unspecified: "page size unspecified"
    case .size4K: "4K pages"
    case .size16K: "16K pages"
    case .size64K: "64K pages"
    }
    let placement = header.placement == .anywhere ? "placement anywhere" : "placement near start of DRAM"
    let imageSize = header.imageSize.map(hex) ?? "0 (pre-3.17 kernel; reserving file size + 8 MiB)"
    print("guest RAM  \(hex(options.ramBase))-\(hex(options.ramBase + ramSize)) (\(ramSizeMiB) MiB)")
    print("kernel     \(kernelPath): \(kernel.size) bytes, text_offset \(hex(header.textOffset)), "
          + "image_size \(imageSize), \(pageSize), \(placement)")
    print("  load     \(hex(layout.kernel.raw))-\(hex(layout.kernel.raw + layout.kernelSize)), "
          + "entry \(hex(layout.kernelEntry.raw))")
    print("dtb        \(hex(layout.dtb.raw))-\(hex(layout.dtb.raw + layout.dtbMaxSize)) "
          + "(room for \(layout.dtbMaxSize >> 10) KiB)")
    if let initrd = layout.initrd, let end = layout.initrdEnd, let path = options.initrd {
        print("initrd     \(path): \(layout.initrdSize) bytes at \(hex(initrd.raw))-\(hex(end.raw))")
    } else {
        print("initrd     none")
    }
    exit(0)
}

struct MicrokitSystemOptions {
    var vmmELF: String?
    var vcpus = 1
    var output: String?

    init(_ arguments: ArraySlice<String>) {
        var rest = arguments
        while let option = rest.popFirst() {
            guard ["--vmm-elf", "--vcpus", "--output"].contains(option) else {
                fail("microkit-system: unknown option '\(option)' (see 'vmm --help')")
            }
            guard let value = rest.popFirst() else { fail("microkit-system: \(option) needs a value") }
            switch option {
            case "--vmm-elf": vmmELF = value
            case "--output": output = value
            default:
                // Zero passes through, so that MicrokitSystem's own message explains the limit.
                guard let count = parseNumber(value), count <= UInt64(Int.max) else {
                    fail("--vcpus '\(value)': not a number of vCPUs")
                }
                vcpus = Int(count)
            }
        }
    }
}

func writeMicrokitSystem(_ options: MicrokitSystemOptions) -> Never {
    guard let vmmELF = options.vmmELF else { fail("microkit-system: --vmm-elf PATH is required (see 'vmm --help')") }
    guard let output = options.output else { fail("microkit-system: --output FILE is required (see 'vmm --help')") }
    let system = MicrokitSystem(programImage: vmmELF, vcpuCount: options.vcpus)
    let text: String
    do {
        text = try system.render()
    } catch {
        switch error {
        case .invalid(let messages): fail(messages)
        }
    }
    do {
        try text.write(toFile: output, atomically: true, encoding: .utf8)
    } catch {
        fail("--output '\(output)': cannot be written (\(error.localizedDescription))")
    }
    print("vmm: wrote \(output)")
    exit(0)
}

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "check-boot":
    checkBoot(CheckBootOptions(arguments.dropFirst()))
case "microkit-system":
    writeMicrokitSystem(MicrokitSystemOptions(arguments.dropFirst()))
case "-h", "--help", "help":
    print(usage)
case let verb?:
    fail("unknown command '\(verb)' (see 'vmm --help')")
case nil:
    fail("no command given (see 'vmm --help')")
}
