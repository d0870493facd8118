// Tests of the system configuration file: the smallest file gets every documented default, a full
// file becomes exactly the model, and each rule has a test quoting its exact message (the README
// and the CLI's tests quote them too). Kernels, initrds and disks are small files in a temporary
// directory; a kernel is just its 64-byte arm64 Image header (booting.rst offsets).

import XCTest
@testable import VMMCore
@testable import VMMHost

final class SystemConfigurationTests: ConfigurationTestCase {
    // MARK: Defaults, the full schema, paths

    func testSmallestFileGetsEveryDocumentedDefault() throws {
        try writeGuest()
        let system = try parse(minimal)
        XCTAssertEqual(system.board, .qemuVirt)
        XCTAssertEqual(system.gic, .v2)
        XCTAssertEqual(system.platform, .native)
        XCTAssertEqual(system.vms, [VMConfiguration(
            name: "linux", kernel: directory + "/Image", initrd: directory + "/initrd.img",
            cmdline: "console=ttyAMA0 rdinit=/init", ramBase: 0x4000_0000, ramSize: 0x2000_0000, vcpus: 1,
            blocks: [], networks: [], consoles: [], passthrough: [])])
    }

    func testFullFileParsesToExactlyTheModel() throws {
        try writeGuest()
        try writeFile("disk.img", size: 0x10_0000)
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        let system = try parse("""
            [system]
            board = "qemu-virt"
            gic = 2
            platform = "native"

            [[vm]]
            name = "guest-1"
            kernel = "Image"
            initrd = "initrd.img"
            cmdline = "console=hvc0 quiet"
            ram = "256M"
            ram_base = 0x6000_0000
            vcpus = 4

            [[vm.block]]
            file = "disk.img"
            readonly = true
            [[vm.block]]
            file = "new.img"
            size = "64M"

            [[vm.net]]
            mac = "52:54:00:AB:cd:01"
            forward = ["tcp:8080:80", "udp:5353:53"]
            [[vm.net]]

            [[vm.console]]
            socket = "hvc0.sock"
            [[vm.console]]
            socket = "run/hvc1.sock"

            [[vm.passthrough]]
            name = "rtc"
            address = 0x0901_0000
            size = "4K"
            irq = 34
            """)
        XCTAssertEqual(system, SystemConfiguration(board: .qemuVirt, gic: .v2, platform: .native, vms: [VMConfiguration(
            name: "guest-1", kernel: directory + "/Image", initrd: directory + "/initrd.img", cmdline: "console=hvc0 quiet",
            ramBase: 0x6000_0000, ramSize: 0x1000_0000, vcpus: 4,
            blocks: [.init(file: directory + "/disk.img", size: nil, readOnly: true),
                     .init(file: directory + "/new.img", size: 0x400_0000, readOnly: false)],
            networks: [.init(mac: [0x52, 0x54, 0x00, 0xab, 0xcd, 0x01],
                             forwards: [.init(protocol: .tcp, host: 8080, guest: 80), .init(protocol: .udp, host: 5353, guest: 53)]),
                       .init(mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x51], forwards: [])],
            consoles: [.init(socket: directory + "/hvc0.sock"), .init(socket: directory + "/run/hvc1.sock")],
            passthrough: [.init(name: "rtc", address: 0x0901_0000, size: 0x1000, irq: 34)])]))
    }

    func testRelativePathsResolveAgainstTheConfigurationFilesDirectory() throws {
        try writeFile("guest/Image", kernelHeader())
        try writeFile("guest/initrd.img", size: 0x1000)
        let config = try writeFile("systems/one.toml", Array("""
            [[vm]]
            kernel = "../guest/./Image"
            initrd = "\(directory)/guest/initrd.img"
            """.utf8))
        let previous = FileManager.default.currentDirectoryPath
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        // A relative path to the file itself is taken from the working directory.
        _ = FileManager.default.changeCurrentDirectoryPath(directory + "/guest")
        let system = try SystemConfiguration.load(path: "../systems/one.toml")
        XCTAssertEqual(system.vms.first?.kernel, directory + "/guest/Image")
        XCTAssertEqual(system.vms.first?.initrd, directory + "/guest/initrd.img")
        XCTAssertEqual(config, directory + "/systems/one.toml")
    }

    func testSizesAreBytesOrKMGStrings() {
        XCTAssertEqual(ConfigurationParser.parseSize("512M"), 0x2000_0000)
        XCTAssertEqual(ConfigurationParser.parseSize("1G"), 0x4000_0000)
        XCTAssertEqual(ConfigurationParser.parseSize("64k"), 0x1_0000)
        XCTAssertEqual(ConfigurationParser.parseSize("4096"), 4096)
        XCTAssertNil(ConfigurationParser.parseSize("512MB"))
        XCTAssertNil(ConfigurationParser.parseSize("M"))
        XCTAssertNil(ConfigurationParser.parseSize("-1M"))
        XCTAssertNil(ConfigurationParser.parseSize("17179869184G"))   // 2^34 GiB wraps past 2^64
    }

    // MARK: The file (its syntax: ConfigurationSyntaxTests)

    func testUnreadableConfigurationFileIsOneError() throws {
        XCTAssertThrowsError(try SystemConfiguration.load(path: directory + "/none.toml")) {
            XCTAssertEqual(($0 as? ConfigurationErrors)?.errors.map(\.description), ["\(directory)/none.toml: (file): no such file"])
        }
        XCTAssertThrowsError(try SystemConfiguration.load(path: directory)) {
            XCTAssertEqual(($0 as? ConfigurationErrors)?.errors.map(\.description),
                           ["\(directory): (file): is a directory, not a configuration file"])
        }
    }

    // MARK: Keys and types

    func testUnknownKeysNameTheKeysExpected() throws {
        try writeGuest()
        XCTAssertEqual(errors("""
            kernel = "Image"
            [system]
            cores = 4
            [[vm]]
            kernel = "Image"
            rom = "bios.bin"
            [[vm.block]]
            path = "disk.img"
            """), [
            "system.toml: system.cores: unknown key 'cores' (expected one of: board, gic, cpu, platform)",
            "system.toml: vm[0].block[0].file: required key is missing (expected the path of a raw disk image)",
            "system.toml: vm[0].block[0].path: unknown key 'path' (expected one of: file, size, readonly)",
            "system.toml: vm[0].rom: unknown key 'rom' (did you mean 'ram'?)",
            "system.toml: kernel: unknown key 'kernel' (expected one of: system, vm); 'kernel' belongs in a [[vm]] table",
        ])
    }

    func testAnUnknownKeyCloseToAKnownOneGetsASuggestion() throws {
        try writeGuest()
        XCTAssertEqual(errors("""
            [sytem]
            [[vm]]
            kernal = "Image"
            ram-base = 0x4000_0000
            VCPUS = 1
            initrdd = "initrd.img"
            memory = "256M"
            [[vm.console]]
            sockt = "hvc0.sock"
            [[vm.nets]]
            """), [
            "system.toml: vm[0].kernel: required key is missing (expected the path of an arm64 Linux Image)",
            "system.toml: vm[0].console[0].socket: required key is missing (expected the path of a unix socket)",
            "system.toml: vm[0].console[0].sockt: unknown key 'sockt' (did you mean 'socket'?)",
            "system.toml: vm[0].VCPUS: unknown key 'VCPUS' (did you mean 'vcpus'?)",
            "system.toml: vm[0].initrdd: unknown key 'initrdd' (did you mean 'initrd'?)",
            "system.toml: vm[0].kernal: unknown key 'kernal' (did you mean 'kernel'?)",
            "system.toml: vm[0].memory: unknown key 'memory' (expected one of: name, kernel, initrd, cmdline, ram, ram_base, "
                + "vcpus, cpus, serial, block, net, console, passthrough)",
            "system.toml: vm[0].nets: unknown key 'nets' (did you mean 'net'?)",
            "system.toml: vm[0].ram-base: unknown key 'ram-base' (did you mean 'ram_base'?)",
            "system.toml: sytem: unknown key 'sytem' (did you mean 'system'?)",
        ])
        XCTAssertEqual(ConfigurationSchema.closestKey(to: "kernel", in: ["kernel"]), "kernel")
        XCTAssertNil(ConfigurationSchema.closestKey(to: "krnl", in: ["kernel"]))        // 2 edits in a 4-letter key
        XCTAssertNil(ConfigurationSchema.closestKey(to: "kennel_x", in: ["kernel"]))    // 3 edits
        XCTAssertEqual(ConfigurationSchema.closestKey(to: "rma", in: ["ram", "rom"]), "ram")   // one swap
    }

    func testWrongTypesSayWhatWasExpectedAndWhatWasFound() throws {
        try writeGuest()
        XCTAssertEqual(errors("""
            system = "native"
            [[vm]]
            kernel = 3
            ram = true
            ram_base = "0x40000000"
            vcpus = 1.5
            [[vm.block]]
            file = "disk.img"
            size = "1M"
            readonly = "yes"
            [[vm.net]]
            forward = "tcp:8080:80"
            """), [
            "system.toml: system: expected a table, found a string",
            "system.toml: vm[0].kernel: expected a string, found an integer",
            "system.toml: vm[0].ram: expected a size (integer bytes, or a string with a K, M or G suffix such as \"512M\"), "
                + "found a boolean",
            "system.toml: vm[0].ram_base: expected an address (a non-negative integer such as 0x40000000), found a string",
            "system.toml: vm[0].vcpus: expected an integer, found a floating-point number",
            "system.toml: vm[0].block[0].readonly: expected a boolean (true or false), found a string",
            "system.toml: vm[0].net[0].forward: expected an array of strings, found a string",
        ])
        XCTAssertEqual(errors("[vm]\nkernel = \"Image\"\n"),
                       ["system.toml: vm: expected an array of tables ([[vm]]), found a table"])
        XCTAssertEqual(errors("vm = [1]\n"), ["system.toml: vm[0]: expected a table, found an integer"])
    }

    func testAVMAndItsKernelAreRequired() {
        XCTAssertEqual(errors("[system]\nplatform = \"native\"\n"),
                       ["system.toml: vm: no virtual machine (expected a [[vm]] table with at least kernel = \"PATH\")"])
        XCTAssertEqual(errors("vm = []\n"),
                       ["system.toml: vm: no virtual machine (expected a [[vm]] table with at least kernel = \"PATH\")"])
        XCTAssertEqual(errors("[[vm]]\nname = \"a\"\n"),
                       ["system.toml: vm[0].kernel: required key is missing (expected the path of an arm64 Linux Image)"])
        XCTAssertEqual(errors("[[vm]]\nkernel = \"\"\n"), ["system.toml: vm[0].kernel: expected a file path, found an empty string"])
    }

    // MARK: System

    func testBoardGICAndPlatformTakeOnlyTheirKnownValues() throws {
        try writeGuest()
        XCTAssertEqual(errors("[system]\nboard = \"rpi4\"\ngic = 1\nplatform = \"xen\"\n" + minimal), [
            "system.toml: system.board: unknown board 'rpi4' (expected qemu-virt)",
            "system.toml: system.gic: expected 2 (GICv2) or 3 (GICv3), found 1",
            "system.toml: system.platform: unknown platform 'xen' (expected native or microkit)",
        ])
        XCTAssertEqual(errors("[system]\ngic = 4\n" + minimal), ["system.toml: system.gic: expected 2 (GICv2) or 3 (GICv3), found 4"])
        XCTAssertEqual(try parse("[system]\ngic = 3\n" + minimal).gic, .v3)
        XCTAssertEqual(errors("[system]\ngic = 3\nplatform = \"microkit\"\n" + minimal), [
            "system.toml: system.gic: the microkit platform runs on GICv2 (the SDK's qemu_virt_aarch64 board), found 3",
        ])
    }

    func testBoardOverridesReplaceTheFilesSystemKeysBeforeValidation() throws {
        try writeGuest()
        let file = "[system]\ncpu = \"neoverse-n1\"\n" + minimal
        XCTAssertEqual(try SystemConfiguration.parse(text: file, file: "system.toml", baseDirectory: directory,
                                                     overrides: BoardOverrides(cpu: .max)).cpu, .max)
        XCTAssertEqual(try SystemConfiguration.parse(text: file, file: "system.toml", baseDirectory: directory).cpu,
                       .neoverseN1)
        // Validated as if the file said so: Microkit runs on a Cortex-A53 only.
        XCTAssertThrowsError(try SystemConfiguration.parse(text: "[system]\nplatform = \"microkit\"\n" + minimal,
                                                           file: "system.toml", baseDirectory: directory,
                                                           overrides: BoardOverrides(cpu: .cortexA76))) {
            XCTAssertEqual(($0 as? ConfigurationErrors)?.errors.map(\.description), [
                "system.toml: system.cpu: the microkit platform runs on cortex-a53 (the SDK's qemu_virt_aarch64 board), found cortex-a76",
            ])
        }
    }

    func testCPUIsOneOfTheModelsTheVMMRunsOn() throws {
        try writeGuest()
        XCTAssertEqual(try parse(minimal).cpu, .cortexA53)
        for cpu in SystemConfiguration.CPU.allCases {
            XCTAssertEqual(try parse("[system]\ncpu = \"\(cpu.rawValue)\"\n" + minimal).cpu, cpu)
        }
        XCTAssertEqual(errors("[system]\ncpu = \"cortex-a15\"\n" + minimal), [
            "system.toml: system.cpu: unknown CPU 'cortex-a15' (expected one of cortex-a53, cortex-a72, cortex-a76, neoverse-n1, max)",
        ])
        XCTAssertEqual(errors("[system]\ncpu = 53\n" + minimal).count, 1)
        XCTAssertEqual(errors("[system]\nplatform = \"microkit\"\ncpu = \"max\"\n" + minimal), [
            "system.toml: system.cpu: the microkit platform runs on cortex-a53 (the SDK's qemu_virt_aarch64 board), found max",
        ])
    }

    func testMicrokitRunsSeveralVMsNamedApart() throws {
        try writeGuest()
        // Their RAM shares the 512M seL4 leaves to guests (MicrokitSeveralVMsTests).
        let small = "ram = \"128M\"\n"
        XCTAssertEqual(errors("[system]\nplatform = \"microkit\"\n" + minimal + small
                              + "[[vm]]\nname = \"two\"\nkernel = \"Image\"\n" + small), [])
        XCTAssertEqual(errors("[system]\nplatform = \"microkit\"\n" + minimal + small + "[[vm]]\nkernel = \"Image\"\n" + small), [
            "system.toml: vm[1].name: 'linux' is already the name of vm[0]",
        ])
        // Native runs several (SeveralVMsTests), named apart.
        XCTAssertEqual(errors(minimal + "ram = \"256M\"\n[[vm]]\nkernel = \"Image\"\nram = \"256M\"\n"), [
            "system.toml: vm[1].name: 'linux' is already the name of vm[0]",
        ])
    }

    // MARK: VM keys

    func testVMNameIsShortLowercase() throws {
        try writeGuest()
        XCTAssertEqual(errors(minimal + "name = \"Linux VM\"\n"),
                       ["system.toml: vm[0].name: expected 1 to 32 characters from a-z, 0-9, '_' and '-', found 'Linux VM'"])
        XCTAssertEqual(errors(minimal + "name = \"\(String(repeating: "a", count: 33))\"\n").count, 1)
        XCTAssertEqual(errors(minimal + "name = \"\(String(repeating: "a", count: 32))\"\n"), [])
    }

    func testCmdlineHasNoNULAndFitsTheKernelsBuffer() throws {
        try writeGuest()
        XCTAssertEqual(errors(minimal + "cmdline = \"console=ttyAMA0\\u0000init=/bin/sh\"\n"),
                       ["system.toml: vm[0].cmdline: contains a NUL character (the kernel command line is a C string)"])
        XCTAssertEqual(errors(minimal + "cmdline = \"\(String(repeating: "x", count: 2048))\"\n"),
                       ["system.toml: vm[0].cmdline: is 2048 bytes long; arm64 Linux takes at most 2047 (COMMAND_LINE_SIZE 2048 with its NUL)"])
        XCTAssertEqual(try parse(minimal + "cmdline = \"\(String(repeating: "x", count: 2047))\"\n").vms[0].cmdline.utf8.count, 2047)
    }

    func testRAMSizeIsAtLeast16MInWhole2MBlocksAndWhatThePlatformGives() throws {
        try writeGuest()
        let sizeExpected = "expected a size (integer bytes, or a string with a K, M or G suffix such as \"512M\")"
        XCTAssertEqual(errors(minimal + "ram = \"8M\"\n"), ["system.toml: vm[0].ram: 8M is too small (expected at least 16M)"])
        XCTAssertEqual(errors(minimal + "ram = \"17M\"\n"),
                       ["system.toml: vm[0].ram: 17M is not a multiple of 2M (guest RAM is mapped in 2 MiB blocks)"])
        // Native: host RAM from 0x48000000 to qemu-virt's RAM end at 256 GiB (260992M); Microkit: 512M.
        XCTAssertEqual(try parse(minimal + "ram = \"2G\"\n").vms[0].ramSize, 0x8000_0000)
        XCTAssertEqual(try parse(minimal + "ram = \"8G\"\n").vms[0].ramSize, 0x2_0000_0000)
        XCTAssertEqual(try parse(minimal + "ram = \"260992M\"\n").vms[0].ramSize, 0x3F_B800_0000)
        XCTAssertEqual(errors(minimal + "ram = \"260994M\"\n"),
                       ["system.toml: vm[0].ram: 260994M is more than the native platform gives a guest (expected at most 260992M)"])
        XCTAssertEqual(errors(minimal + "ram = \"256G\"\n"),
                       ["system.toml: vm[0].ram: 256G is more than the native platform gives a guest (expected at most 260992M)"])
        let microkit = "[system]\nplatform = \"microkit\"\n" + minimal
        XCTAssertEqual(try parse(microkit + "ram = \"512M\"\n").vms[0].ramSize, 0x2000_0000)
        XCTAssertEqual(errors(microkit + "ram = \"1G\"\n"),
                       ["system.toml: vm[0].ram: 1G is more than the microkit platform gives a guest (expected at most 512M)"])
        XCTAssertEqual(errors(minimal + "ram = \"512MB\"\n"), ["system.toml: vm[0].ram: \(sizeExpected), found '512MB'"])
        XCTAssertEqual(errors(minimal + "ram = -1\n"), ["system.toml: vm[0].ram: \(sizeExpected), found -1"])
        XCTAssertEqual(errors(minimal + "ram = \"17179869183G\"\n"),
                       ["system.toml: vm[0].ram: 17179869183G is more than the native platform gives a guest (expected at most 260992M)"])
        XCTAssertEqual(try parse(minimal + "ram = 33554432\n").vms[0].ramSize, 0x200_0000)
    }

    func testRAMBaseIs2MiBAlignedAndRAMStaysInTheBoardsRAMWindow() throws {
        try writeGuest()
        XCTAssertEqual(errors(minimal + "ram_base = 0x40100000\n"),
                       ["system.toml: vm[0].ram_base: 0x40100000 is not 2 MiB aligned (arm64 kernels need a 2 MiB-aligned base)"])
        XCTAssertEqual(errors(minimal + "ram_base = 0x3000_0000\n"),
                       ["system.toml: vm[0].ram_base: guest RAM [0x30000000..0x50000000) is outside the qemu-virt RAM window [0x40000000..0x10000000000)"])
        // Native: a 40-bit guest physical address space (stage 2's), so RAM may cross 4 GiB and lie above it.
        XCTAssertEqual(try parse(minimal + "ram_base = 0xF000_0000\n").vms[0].ramBase, 0xF000_0000)
        XCTAssertEqual(try parse(minimal + "ram_base = 0x80_0000_0000\n").vms[0].ramBase, 0x80_0000_0000)
        XCTAssertEqual(try parse(minimal + "ram = \"8G\"\n").vms[0].ramBase, 0x4000_0000)
        XCTAssertEqual(errors(minimal + "ram_base = 0xFF_F000_0000\n"),
                       ["system.toml: vm[0].ram_base: guest RAM [0xfff0000000..0x10010000000) is outside the qemu-virt RAM window [0x40000000..0x10000000000)"])
        // Microkit: the low 4 GiB.
        let microkit = "[system]\nplatform = \"microkit\"\n" + minimal
        XCTAssertEqual(try parse(microkit + "ram_base = 0xE000_0000\n").vms[0].ramBase, 0xE000_0000)
        XCTAssertEqual(errors(microkit + "ram_base = 0xF000_0000\n"),
                       ["system.toml: vm[0].ram_base: guest RAM [0xf0000000..0x110000000) is outside the qemu-virt RAM window [0x40000000..0x100000000)"])
    }

    func testVCPUCountIsWhatTheGICAndThePlatformCanGive() throws {
        try writeGuest()
        // Native: one board CPU per vCPU, as many as GICv2 serves.
        XCTAssertEqual(try parse(minimal + "vcpus = 4\n").vms[0].vcpus, 4)
        XCTAssertEqual(try parse(minimal + "vcpus = 8\n").vms[0].vcpus, 8)
        XCTAssertEqual(errors(minimal + "vcpus = 9\n"),
                       ["system.toml: vm[0].vcpus: expected 1 to 8 (GICv2 serves at most 8 CPUs), found 9"])
        XCTAssertEqual(errors(minimal + "vcpus = 0\n"),
                       ["system.toml: vm[0].vcpus: expected 1 to 8 (GICv2 serves at most 8 CPUs), found 0"])
        // Microkit: every vCPU on the SDK kernel's one core, up to the 8 GICv2 serves; a count the GIC
        // cannot serve is reported once, by the parser.
        let microkit = "[system]\nplatform = \"microkit\"\n" + minimal
        XCTAssertEqual(try parse(microkit + "vcpus = 1\n").platform, .microkit)
        XCTAssertEqual(try parse(microkit + "vcpus = 4\n").vms[0].vcpus, 4)
        XCTAssertEqual(errors(microkit + "vcpus = 9\n"),
                       ["system.toml: vm[0].vcpus: expected 1 to 8 (GICv2 serves at most 8 CPUs), found 9"])
    }

    func testANativeVMOf2GGetsABoardWithRoomForTheVMMAndItsRAM() throws {
        try writeGuest()
        let system = try parse(minimal + "ram = \"2G\"\nvcpus = 2\n")
        let arguments = SystemBuilder.qemuArguments(system, image: URL(fileURLWithPath: "/b/vmm.elf"), output: URL(fileURLWithPath: "/b"))
        // 128M for the VMM below 0x48000000 and 2048M for the guest above it.
        XCTAssertEqual(zip(arguments, arguments.dropFirst()).filter { $0.0 == "-m" }.map(\.1), ["2176M"])
        XCTAssertEqual(SystemBuilder.guestConfiguration(system.vms[0]).ramSize, 0x8000_0000)
        // Microkit keeps its own board RAM, whatever the VM has.
        let microkit = try parse("[system]\nplatform = \"microkit\"\n" + minimal)
        let microkitArguments = SystemBuilder.qemuArguments(microkit, image: URL(fileURLWithPath: "/b/loader.img"),
                                                            output: URL(fileURLWithPath: "/b"))
        XCTAssertEqual(zip(microkitArguments, microkitArguments.dropFirst()).filter { $0.0 == "-m" }.map(\.1), ["size=2G"])
    }

    func testANativeSystemWithFourVCPUsGetsAFourCPUBoard() throws {
        try writeGuest()
        let system = try parse(minimal + "vcpus = 4\n")
        let arguments = SystemBuilder.qemuArguments(system, image: URL(fileURLWithPath: "/b/vmm.elf"), output: URL(fileURLWithPath: "/b"))
        XCTAssertEqual(zip(arguments, arguments.dropFirst()).filter { $0.0 == "-smp" }.map(\.1), ["4"])
        XCTAssertEqual(SystemBuilder.guestConfiguration(system.vms[0]).vcpuCount, 4)
    }

    // MARK: Everything at once

    func testSeveralErrorsAreReportedTogetherInKeyOrder() throws {
        try writeFile("initrd.img", size: 0x1000)
        XCTAssertEqual(errors("""
            [[vm]]
            vcpus = 9
            kernel = "vmlinuz"
            ram = "400G"
            [[vm.net]]
            mac = "52:54:00:12:34:56"
            [[vm.net]]
            mac = "52:54:00:12:34:56"
            [system]
            gic = 4
            """), [
            "system.toml: system.gic: expected 2 (GICv2) or 3 (GICv3), found 4",
            "system.toml: vm[0].kernel: no such file '\(directory)/vmlinuz'",
            "system.toml: vm[0].ram: 400G is more than the native platform gives a guest (expected at most 260992M)",
            "system.toml: vm[0].vcpus: expected 1 to 8 (GICv2 serves at most 8 CPUs), found 9",
            "system.toml: vm[0].net[1].mac: 52:54:00:12:34:56 is already the MAC of vm[0].net[0]",
        ])
    }
}
