// Tests of the system configuration file, continued (SystemConfigurationTests.swift has the
// defaults, keys, system and VM keys): the files a VM names and whether the guest fits its RAM, the
// devices' limits and uniqueness, and passthrough regions and interrupts, each rule with its exact
// message. Files are small ones in a temporary directory (ConfigurationTestCase).

import XCTest
@testable import VMMCore
@testable import VMMHost

final class SystemConfigurationFilesAndDevicesTests: ConfigurationTestCase {
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
}
