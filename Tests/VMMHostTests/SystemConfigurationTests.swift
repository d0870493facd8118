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

    // MARK: Files and the RAM fit

    func testMissingFilesAreNamedWithTheirResolvedPaths() throws {
        try FileManager.default.createDirectory(atPath: directory + "/dir", withIntermediateDirectories: true)
        XCTAssertEqual(errors("""
            [[vm]]
            kernel = "Image"
            initrd = "dir"
            [[vm.block]]
            file = "disk.img"
            [[vm.block]]
            file = "created.img"
            size = "1M"
            """), [
            "system.toml: vm[0].kernel: no such file '\(directory)/Image'",
            "system.toml: vm[0].initrd: '\(directory)/dir' is a directory, not a file",
            "system.toml: vm[0].block[0].file: no such file '\(directory)/disk.img' (give a size to have `vmm build` create it)",
        ])
    }

    func testKernelThatIsNotAnArm64ImageIsNamed() throws {
        try writeFile("Image", kernelHeader(magic: 0x464c_457f))
        XCTAssertEqual(errors("[[vm]]\nkernel = \"Image\"\n"), [
            "system.toml: vm[0].kernel: kernel '\(directory)/Image': not an arm64 Linux Image (bad magic 0x464c457f; expected 0x644d5241)",
        ])
        try writeFile("Image")
        XCTAssertEqual(errors("[[vm]]\nkernel = \"Image\"\n"), [
            "system.toml: vm[0].kernel: kernel '\(directory)/Image': not an arm64 Linux Image (shorter than its 64-byte header)",
        ])
    }

    func testKernelThatIsNotAnImageIsReportedBesideAMissingInitrdAndABadRAMSize() throws {
        try writeFile("Image", kernelHeader(magic: 0x464c_457f))
        XCTAssertEqual(errors("[[vm]]\nkernel = \"Image\"\ninitrd = \"none.img\"\nram = \"101M\"\n"), [
            "system.toml: vm[0].kernel: kernel '\(directory)/Image': not an arm64 Linux Image (bad magic 0x464c457f; expected 0x644d5241)",
            "system.toml: vm[0].initrd: no such file '\(directory)/none.img'",
            "system.toml: vm[0].ram: 101M is not a multiple of 2M (guest RAM is mapped in 2 MiB blocks)",
        ])
        XCTAssertEqual(errors("[[vm]]\nkernel = \"Image\"\nram_base = 0x4010_0000\n"), [
            "system.toml: vm[0].kernel: kernel '\(directory)/Image': not an arm64 Linux Image (bad magic 0x464c457f; expected 0x644d5241)",
            "system.toml: vm[0].ram_base: 0x40100000 is not 2 MiB aligned (arm64 kernels need a 2 MiB-aligned base)",
        ])
    }

    func testRAMTooSmallForTheKernelAndDeviceTreeIsReportedAtRAM() throws {
        try writeFile("Image", kernelHeader(imageSize: 0x1800_0000))
        XCTAssertEqual(errors("[[vm]]\nkernel = \"Image\"\nram = \"256M\"\n"), [
            "system.toml: vm[0].ram: kernel '\(directory)/Image': needs 384 MiB of guest RAM (text_offset + image_size) "
                + "but there are only 256 MiB",
        ])
        try writeFile("Image", kernelHeader(imageSize: 0xFF0_0000))
        XCTAssertEqual(errors("[[vm]]\nkernel = \"Image\"\nram = \"256M\"\n"), [
            "system.toml: vm[0].ram: kernel '\(directory)/Image': leaves no room for the device tree (kernel and device tree "
                + "need 257 MiB of guest RAM; there are only 256 MiB)",
        ])
    }

    func testInitrdThatDoesNotFitAboveTheKernelIsReportedAtInitrd() throws {
        try writeFile("Image", kernelHeader(imageSize: 0x100_0000))
        try writeFile("initrd.img", size: 0x100_0000)
        // A 16 MiB kernel, then the DTB's 1 MiB at the next 2 MiB boundary: the initrd gets RAM above 17 MiB.
        XCTAssertEqual(errors(minimal + "ram = \"34M\"\n"), [])
        XCTAssertEqual(errors(minimal + "ram = \"32M\"\n"), [
            "system.toml: vm[0].initrd: initrd '\(directory)/initrd.img': 16 MiB does not fit in guest RAM (15 MiB free above the kernel)",
        ])
    }

    // MARK: Devices

    func testDeviceCountsAreLimited() throws {
        try writeGuest()
        try writeFile("disk.img", size: 0x1000)
        let blocks = (0..<9).map { "[[vm.block]]\nfile = \"d\($0).img\"\nsize = \"1M\"\n" }.joined()
        let consoles = (0..<5).map { "[[vm.console]]\nsocket = \"c\($0).sock\"\n" }.joined()
        XCTAssertEqual(errors(minimal + blocks + consoles), [
            "system.toml: vm[0].block[8]: too many virtio-blk devices (expected at most 8, found 9)",
            "system.toml: vm[0].console[4]: too many virtio-console devices (expected at most 4, found 5)",
        ])
    }

    func testBlockSizeIsWholeSectorsAndDisksAreNotShared() throws {
        try writeGuest()
        try writeFile("disk.img", size: 0x1000)
        XCTAssertEqual(errors(minimal + "[[vm.block]]\nfile = \"new.img\"\nsize = 1000\n"), [
            "system.toml: vm[0].block[0].size: expected a positive multiple of 512 bytes (virtio-blk sectors), found 1000 bytes",
        ])
        XCTAssertEqual(errors(minimal + "[[vm.block]]\nfile = \"disk.img\"\n[[vm.block]]\nfile = \"./disk.img\"\n"), [
            "system.toml: vm[0].block[1].file: '\(directory)/disk.img' is already the disk of vm[0].block[0]",
        ])
    }

    func testMACsAreUnicastWellFormedAndUnique() throws {
        try writeGuest()
        XCTAssertEqual(errors(minimal + """
            [[vm.net]]
            mac = "01:00:5e:00:00:01"
            [[vm.net]]
            mac = "52:54:00:12:34"
            [[vm.net]]
            mac = "00:00:00:00:00:00"
            """), [
            "system.toml: vm[0].net[0].mac: 01:00:5e:00:00:01 is a multicast address (bit 0 of the first byte is set); expected a unicast MAC",
            "system.toml: vm[0].net[1].mac: expected a MAC address such as \"52:54:00:12:34:56\", found '52:54:00:12:34'",
            "system.toml: vm[0].net[2].mac: 00:00:00:00:00:00 is not a usable MAC (expected a non-zero unicast address)",
        ])
        // The second device's default (…:51) collides with the first one's explicit MAC.
        XCTAssertEqual(errors(minimal + "[[vm.net]]\nmac = \"52:54:00:12:34:51\"\n[[vm.net]]\n"), [
            "system.toml: vm[0].net[1].mac: 52:54:00:12:34:51 is already the MAC of vm[0].net[0]",
        ])
    }

    func testPortForwardsAreWellFormedAndHostPortsUniquePerProtocol() throws {
        try writeGuest()
        XCTAssertEqual(errors(minimal + """
            [[vm.net]]
            forward = ["tcp:8080:80", "tcp:0:80", "sctp:1:2", "tcp:65536:1", 22]
            [[vm.net]]
            forward = ["udp:8080:80", "tcp:8080:8080"]
            """), [
            "system.toml: vm[0].net[0].forward[1]: expected \"tcp:HOSTPORT:GUESTPORT\" or \"udp:HOSTPORT:GUESTPORT\" with ports 1 to 65535, found 'tcp:0:80'",
            "system.toml: vm[0].net[0].forward[2]: expected \"tcp:HOSTPORT:GUESTPORT\" or \"udp:HOSTPORT:GUESTPORT\" with ports 1 to 65535, found 'sctp:1:2'",
            "system.toml: vm[0].net[0].forward[3]: expected \"tcp:HOSTPORT:GUESTPORT\" or \"udp:HOSTPORT:GUESTPORT\" with ports 1 to 65535, found 'tcp:65536:1'",
            "system.toml: vm[0].net[0].forward[4]: expected a string, found an integer",
            "system.toml: vm[0].net[1].forward[1]: host port tcp:8080 is already forwarded by vm[0].net[0].forward[0]",
        ])
    }

    func testConsoleSocketsAreUniqueAndFitASocketAddress() throws {
        try writeGuest()
        let long = String(repeating: "s", count: 120)
        // hvc3's directory does not exist yet, which is fine: `vmm build` makes it.
        XCTAssertEqual(errors(minimal + """
            [[vm.console]]
            socket = "hvc0.sock"
            [[vm.console]]
            socket = "hvc0.sock"
            [[vm.console]]
            socket = "/\(long)"
            [[vm.console]]
            socket = "later/hvc3.sock"
            """), [
            "system.toml: vm[0].console[1].socket: '\(directory)/hvc0.sock' is already the socket of vm[0].console[0]",
            "system.toml: vm[0].console[2].socket: '/\(long)' is 121 bytes long; a unix socket path holds at most 107",
        ])
    }

    // MARK: Passthrough

    func testPassthroughRegionsArePagesInTheDeviceArea() throws {
        try writeGuest()
        XCTAssertEqual(errors(minimal + """
            [[vm.passthrough]]
            name = "a"
            address = 0x0901_0800
            size = 0x1800
            [[vm.passthrough]]
            name = "b"
            address = 0x4000_0000
            size = 0x1000
            [[vm.passthrough]]
            address = 0x0902_0000
            """), [
            "system.toml: vm[0].passthrough[0].address: 0x9010800 is not page aligned (expected a multiple of 0x1000)",
            "system.toml: vm[0].passthrough[0].size: 0x1800 is not a positive multiple of the page size 0x1000",
            "system.toml: vm[0].passthrough[1].address: 0x40000000 + 0x1000 is outside the qemu-virt device area [0x0..0x40000000) "
                + "(passthrough gives the guest a board device, never RAM)",
            "system.toml: vm[0].passthrough[2].name: required key is missing (expected a name such as \"rtc\")",
            "system.toml: vm[0].passthrough[2].size: required key is missing (expected the region's size, a multiple of 0x1000)",
        ])
    }

    func testPassthroughRegionsOverlapNeitherTheBoardNorDevicesNorEachOther() throws {
        try writeGuest()
        XCTAssertEqual(errors(minimal + """
            [[vm.block]]
            file = "disk.img"
            size = "1M"
            [[vm.passthrough]]
            name = "gic"
            address = 0x0800_0000
            size = 0x1000
            [[vm.passthrough]]
            name = "uart"
            address = 0x0900_0000
            size = 0x1000
            [[vm.passthrough]]
            name = "mmio"
            address = 0x0a00_0000
            size = 0x1000
            [[vm.passthrough]]
            name = "again"
            address = 0x0a00_0000
            size = 0x1000
            """), [
            "system.toml: vm[0].passthrough[0].address: [0x8000000..0x8001000) overlaps the GIC distributor [0x8000000..0x8010000)",
            "system.toml: vm[0].passthrough[1].address: [0x9000000..0x9001000) overlaps the board's UART [0x9000000..0x9001000)",
            "system.toml: vm[0].passthrough[2].address: [0xa000000..0xa001000) overlaps the virtio-mmio window of vm[0].block[0] "
                + "[0xa000000..0xa000200)",
            "system.toml: vm[0].passthrough[3].address: [0xa000000..0xa001000) overlaps the virtio-mmio window of vm[0].block[0] "
                + "[0xa000000..0xa000200)",
            "system.toml: vm[0].passthrough[3].address: [0xa000000..0xa001000) overlaps vm[0].passthrough[2] 'mmio' "
                + "[0xa000000..0xa001000)",
        ])
    }

    func testPassthroughIRQsAreFreeSPIs() throws {
        try writeGuest()
        let region = { (n: Int, irq: Int) in "[[vm.passthrough]]\nname = \"d\(n)\"\naddress = \(0x0910_0000 + n * 0x1000)\nsize = 0x1000\nirq = \(irq)\n" }
        XCTAssertEqual(errors(minimal + "[[vm.net]]\n" + region(0, 27) + region(1, 33) + region(2, 48) + region(3, 40) + region(4, 40)
                              + region(5, 1020)), [
            "system.toml: vm[0].passthrough[0].irq: expected an SPI INTID from 32 to 1019, found 27",
            "system.toml: vm[0].passthrough[1].irq: INTID 33 is already the interrupt of the board's UART (expected another SPI)",
            "system.toml: vm[0].passthrough[2].irq: INTID 48 is already the interrupt of vm[0].net[0] (expected another SPI)",
            "system.toml: vm[0].passthrough[4].irq: INTID 40 is already the interrupt of vm[0].passthrough[3] (expected another SPI)",
            "system.toml: vm[0].passthrough[5].irq: expected an SPI INTID from 32 to 1019, found 1020",
        ])
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
