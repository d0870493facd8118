// Several VMs on one board (native platform): what the VMs share out (board CPUs, host RAM, QEMU's
// virtio-mmio transports), what stays unique across them (names, MACs, host ports, sockets, disks,
// passthrough regions and interrupts), the serial console of each VM after the first (its `serial`
// key and default socket), QEMU's command line for two VMs and the guest_images.S that carries
// every VM's images into the VMM.

import Foundation
import XCTest
@testable import VMMCore
@testable import VMMHost

final class SeveralVMsConfigurationTests: ConfigurationTestCase {
    /// A `[[vm]]` table with the fixture guest (writeGuest), `ram` and `vcpus` as given, then `extra`.
    func vm(_ name: String, ram: String = "128M", vcpus: Int? = nil, _ extra: String = "") -> String {
        "[[vm]]\nname = \"\(name)\"\nkernel = \"Image\"\ninitrd = \"initrd.img\"\nram = \"\(ram)\"\n"
            + (vcpus.map { "vcpus = \($0)\n" } ?? "") + extra
    }

    // MARK: Several VMs, and what they share out

    func testNativeRunsSeveralVMsInFileOrderWithDefaultMACsNumberedAcrossTheSystem() throws {
        try writeGuest()
        let system = try parse(vm("a", ram: "256M", vcpus: 2, "[[vm.net]]\n[[vm.net]]\n")
                               + vm("b", ram: "256M", vcpus: 2, "[[vm.net]]\n"))
        XCTAssertEqual(system.vms.map(\.name), ["a", "b"])
        XCTAssertEqual(system.vms.map(\.vcpus), [2, 2])
        XCTAssertEqual(system.vms.map(\.serial), [nil, nil])
        XCTAssertEqual(system.vms.map { $0.networks.map { ConfigurationParser.macText($0.mac) } },
                       [["52:54:00:12:34:50", "52:54:00:12:34:51"], ["52:54:00:12:34:52"]])
        // Each VM has its own guest-physical address space: both have RAM at 0x40000000.
        XCTAssertEqual(system.vms.map(\.ramBase), [0x4000_0000, 0x4000_0000])
    }

    func testVCPUsOfAllVMsShareTheBoardsEightCPUs() throws {
        try writeGuest()
        XCTAssertEqual(errors(vm("a", vcpus: 4) + vm("b", vcpus: 4)), [])
        XCTAssertEqual(errors(vm("a", vcpus: 4) + vm("b", vcpus: 4) + vm("c")), [
            "system.toml: vm[2].vcpus: vCPUs of all VMs add up to 9; the board has at most 8 CPUs (GICv2)",
        ])
        // Reported at the VM where the sum goes over, with the total of all VMs.
        XCTAssertEqual(errors(vm("a", vcpus: 6) + vm("b", vcpus: 3) + vm("c")), [
            "system.toml: vm[1].vcpus: vCPUs of all VMs add up to 10; the board has at most 8 CPUs (GICv2)",
        ])
        // At most 8 VMs, as each has one vCPU at least.
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
        XCTAssertEqual(errors(names.prefix(8).map { vm($0, ram: "32M") }.joined()), [])
        XCTAssertEqual(errors(names.map { vm($0, ram: "32M") }.joined()), [
            "system.toml: vm[8].vcpus: vCPUs of all VMs add up to 9; the board has at most 8 CPUs (GICv2)",
        ])
        // A count that is wrong by itself is reported once, and not added.
        XCTAssertEqual(errors(vm("a", vcpus: 9) + vm("b", vcpus: 8)), [
            "system.toml: vm[0].vcpus: expected 1 to 8 (GICv2 serves at most 8 CPUs), found 9",
        ])
    }

    func testRAMOfAllVMsIsWhatTheNativePlatformGivesItsGuests() throws {
        try writeGuest()
        // Host RAM from 0x48000000 to the end of qemu-virt's largest RAM at 256 GiB: 260992M, shared
        // out in file order.
        XCTAssertEqual(errors(vm("a", ram: "256M") + vm("b", ram: "256M") + vm("c", ram: "32M")), [])
        XCTAssertEqual(errors(vm("a", ram: "128G") + vm("b", ram: "129920M")), [])
        XCTAssertEqual(errors(vm("a", ram: "128G") + vm("b", ram: "129922M")), [
            "system.toml: vm[1].ram: the RAM of all VMs adds up to 260994M; the native platform gives its guests at most 260992M in all",
        ])
        // Reported at the VM where the sum goes over, with the total of all VMs.
        XCTAssertEqual(errors(vm("a", ram: "100G") + vm("b", ram: "200G") + vm("c", ram: "32M")), [
            "system.toml: vm[1].ram: the RAM of all VMs adds up to 307232M; the native platform gives its guests at most 260992M in all",
        ])
        // A VM over the limit by itself is reported once, and not added.
        XCTAssertEqual(errors(vm("a", ram: "255G") + vm("b", ram: "256M")), [
            "system.toml: vm[0].ram: 255G is more than the native platform gives a guest (expected at most 260992M)",
        ])
    }

    func testTheBoardHasRAMForTheVMMAndAllVMs() throws {
        try writeGuest()
        func memory(_ text: String) throws -> [String] {
            let arguments = SystemBuilder.qemuArguments(try parse(text), image: URL(fileURLWithPath: "/b/vmm.elf"),
                                                        output: URL(fileURLWithPath: "/b"))
            return zip(arguments, arguments.dropFirst()).filter { $0.0 == "-m" }.map(\.1)
        }
        // 128M for the VMM below 0x48000000, then the guests: never less than 1G.
        XCTAssertEqual(try memory(vm("a", ram: "256M") + vm("b", ram: "256M")), ["1G"])
        XCTAssertEqual(try memory(vm("a", ram: "512M") + vm("b", ram: "384M")), ["1G"])
        XCTAssertEqual(try memory(vm("a", ram: "512M") + vm("b", ram: "386M")), ["1026M"])
        XCTAssertEqual(try memory(vm("a", ram: "2G") + vm("b", ram: "896M")), ["3072M"])
    }

    // MARK: Unique across the system

    func testNamesDisksMACsHostPortsAndSocketsAreUniqueAcrossVMs() throws {
        try writeGuest()
        let devices = """
            [[vm.block]]
            file = "d.img"
            size = "1M"
            [[vm.net]]
            mac = "52:54:00:12:34:56"
            forward = ["tcp:8080:80"]
            [[vm.console]]
            socket = "c.sock"

            """
        XCTAssertEqual(errors(vm("a", devices) + vm("b", devices)), [
            "system.toml: vm[1].block[0].file: '\(directory)/d.img' is already the disk of vm[0].block[0]",
            "system.toml: vm[1].net[0].mac: 52:54:00:12:34:56 is already the MAC of vm[0].net[0]",
            "system.toml: vm[1].net[0].forward[0]: host port tcp:8080 is already forwarded by vm[0].net[0].forward[0]",
            "system.toml: vm[1].console[0].socket: '\(directory)/c.sock' is already the socket of vm[0].console[0]",
        ])
        XCTAssertEqual(errors(vm("a") + vm("a")), ["system.toml: vm[1].name: 'a' is already the name of vm[0]"])
        // An explicit MAC in one VM against the default of the system's first interface.
        XCTAssertEqual(errors(vm("a", "[[vm.net]]\n") + vm("b", "[[vm.net]]\nmac = \"52:54:00:12:34:50\"\n")), [
            "system.toml: vm[1].net[0].mac: 52:54:00:12:34:50 is already the MAC of vm[0].net[0]",
        ])
    }

    // MARK: The serial console of the VMs after the first

    func testSerialIsTheSocketOfEachVMAfterTheFirst() throws {
        try writeGuest()
        let system = try parse(vm("a") + vm("b", "serial = \"run/b.sock\"\n") + vm("c"))
        XCTAssertEqual(system.vms.map(\.serial), [nil, directory + "/run/b.sock", nil])
        XCTAssertEqual(errors(vm("a", "serial = \"a.sock\"\n") + vm("b")), [
            "system.toml: vm[0].serial: the first VM's console is the board's PL011 on the terminal "
                + "(only the VMs after it have a serial socket)",
        ])
        XCTAssertEqual(errors(minimal + "serial = \"a.sock\"\n"), [
            "system.toml: vm[0].serial: the first VM's console is the board's PL011 on the terminal "
                + "(only the VMs after it have a serial socket)",
        ])
    }

    func testSerialSocketsAreUniqueWithConsoleSocketsAndFitASocketAddress() throws {
        try writeGuest()
        XCTAssertEqual(errors(vm("a", "[[vm.console]]\nsocket = \"c.sock\"\n") + vm("b", "serial = \"c.sock\"\n")), [
            "system.toml: vm[1].serial: '\(directory)/c.sock' is already the socket of vm[0].console[0]",
        ])
        XCTAssertEqual(errors(vm("a") + vm("b", "serial = \"s.sock\"\n") + vm("c", "[[vm.console]]\nsocket = \"s.sock\"\n")), [
            "system.toml: vm[2].console[0].socket: '\(directory)/s.sock' is already the socket of vm[1].serial",
        ])
        XCTAssertEqual(errors(vm("a") + vm("b", "serial = \"s.sock\"\n") + vm("c", "serial = \"s.sock\"\n")), [
            "system.toml: vm[2].serial: '\(directory)/s.sock' is already the socket of vm[1].serial",
        ])
        let long = "/" + String(repeating: "s", count: 120)
        XCTAssertEqual(errors(vm("a") + vm("b", "serial = \"\(long)\"\n")), [
            "system.toml: vm[1].serial: '\(long)' is 121 bytes long; a unix socket path holds at most 107",
        ])
    }

    // MARK: The board's devices

    func testAPassthroughRegionAndItsInterruptGoToOneVMOnly() throws {
        try writeGuest()
        let rtc = { (name: String, address: Int, irq: Int) in
            "[[vm.passthrough]]\nname = \"\(name)\"\naddress = \(address)\nsize = 0x1000\nirq = \(irq)\ncompatible = [\"arm,pl031\"]\n"
        }
        XCTAssertEqual(errors(vm("a", rtc("rtc", 0x0901_0000, 34)) + vm("b", rtc("gpio", 0x0903_0000, 39))), [])
        XCTAssertEqual(errors(vm("a", rtc("rtc", 0x0901_0000, 34)) + vm("b", rtc("clock", 0x0901_0000, 34))), [
            "system.toml: vm[1].passthrough[0].address: [0x9010000..0x9011000) overlaps vm[0].passthrough[0] 'rtc' "
                + "[0x9010000..0x9011000) (a board device goes to one VM only)",
            "system.toml: vm[1].passthrough[0].irq: INTID 34 is already the interrupt of vm[0].passthrough[0] "
                + "(a board interrupt goes to one VM only)",
        ])
    }

    func testTheBoardsVirtioTransportsBehindTheGuestsDevicesAreNotPassedThrough() throws {
        try writeGuest()
        // The board device behind vm[0].block[0] is QEMU's transport 31: 0x0a003e00, INTID 79.
        let mmio = "[[vm.passthrough]]\nname = \"mmio\"\naddress = 0x0a00_3000\nsize = 0x1000\nirq = 79\n"
        XCTAssertEqual(errors(minimal + "[[vm.block]]\nfile = \"d.img\"\nsize = \"1M\"\n" + mmio), [
            "system.toml: vm[0].passthrough[0].address: [0xa003000..0xa004000) overlaps the board's virtio-mmio transport 31 "
                + "behind vm[0].block[0] [0xa003e00..0xa004000)",
            "system.toml: vm[0].passthrough[0].irq: INTID 79 is already the interrupt of the board's virtio-mmio transport 31 "
                + "behind vm[0].block[0] (expected another SPI)",
        ])
        // With two VMs and no virtio devices, transport 31 is behind the second VM's serial console.
        XCTAssertEqual(errors(vm("a", "[[vm.passthrough]]\nname = \"x\"\naddress = 0x0b00_0000\nsize = 0x1000\nirq = 79\n") + vm("b")), [
            "system.toml: vm[0].passthrough[0].irq: INTID 79 is already the interrupt of the board's virtio-mmio transport 31 "
                + "behind the serial console of vm[1] (expected another SPI)",
        ])
    }

    /// `blocks` disks, `networks` interfaces and `consoles` consoles, with files and sockets named after `vm`.
    func devices(_ vm: String, blocks: Int, networks: Int, consoles: Int) -> String {
        (0..<blocks).map { "[[vm.block]]\nfile = \"\(vm)-d\($0).img\"\nsize = \"1M\"\n" }.joined()
            + String(repeating: "[[vm.net]]\n", count: networks)
            + (0..<consoles).map { "[[vm.console]]\nsocket = \"\(vm)-c\($0).sock\"\n" }.joined()
    }

    func testAllVMsBoardDevicesFitQEMUVirtsThirtyTwoTransports() throws {
        try writeGuest()
        let full = devices("a", blocks: 8, networks: 4, consoles: 4)
        // 16 + 15 + the second VM's serial console: 32.
        XCTAssertEqual(errors(vm("a", full) + vm("b", devices("b", blocks: 8, networks: 4, consoles: 3))), [])
        let message = "needs board virtio device 33, and QEMU virt has 32 virtio-mmio transports (one for each disk, "
            + "network and console of every VM, and one for the serial console of each VM after the first)"
        XCTAssertEqual(errors(vm("a", full) + vm("b", devices("b", blocks: 8, networks: 4, consoles: 4))), [
            "system.toml: vm[1].serial: \(message)",
        ])
        XCTAssertEqual(errors(vm("a", full) + vm("b", devices("b", blocks: 8, networks: 4, consoles: 3))
                              + vm("c", devices("c", blocks: 1, networks: 0, consoles: 0))), [
            "system.toml: vm[2].block[0]: \(message)",
        ])
    }
}

final class SeveralVMsBuildTests: XCTestCase {
    let output = URL(fileURLWithPath: "/out")

    func twoVMs() -> SystemConfiguration {
        var a = VMConfiguration(name: "a", kernel: "/g/a/Image")
        a.vcpus = 2
        a.blocks = [.init(file: "/d/a.img")]
        a.networks = [.init(mac: VMConfiguration.NetworkDevice.defaultMAC(index: 0),
                            forwards: [.init(protocol: .tcp, host: 8080, guest: 80)])]
        a.consoles = [.init(socket: "/s/a-hvc0.sock")]
        var b = VMConfiguration(name: "b", kernel: "/g/b/Image")
        b.vcpus = 3
        b.blocks = [.init(file: "/d/b.img", readOnly: true)]
        b.networks = [.init(mac: VMConfiguration.NetworkDevice.defaultMAC(index: 1),
                            forwards: [.init(protocol: .udp, host: 5353, guest: 53)])]
        b.consoles = [.init(socket: "/s/b-hvc0.sock")]
        return SystemConfiguration(vms: [a, b])
    }

    func testQEMUHasEachVMsBoardDevicesInTurnThenItsSerialConsole() {
        let arguments = SystemBuilder.qemuArguments(twoVMs(), image: URL(fileURLWithPath: "/out/vmm.elf"), output: output)
        XCTAssertEqual(arguments, [
            "-machine", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a53", "-nographic", "-m", "1152M", "-smp", "5",
            "-global", "virtio-mmio.force-legacy=false",
            // VM a: disk, network (the system's first user network), console.
            "-drive", "file=/d/a.img,if=none,format=raw,id=disk0", "-device", "virtio-blk-device,drive=disk0",
            "-netdev", "user,id=net0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:8080-:80",
            "-device", "virtio-net-device,netdev=net0,mac=52:54:00:12:34:50",
            "-device", "virtio-serial-device,id=serial0",
            "-chardev", "socket,id=console0,path=/s/a-hvc0.sock,server=on,wait=off",
            "-device", "virtconsole,chardev=console0,bus=serial0.0",
            // VM b: disk, network (the second user network: its own subnet), console, then its PL011's socket.
            "-drive", "file=/d/b.img,if=none,format=raw,id=disk1,readonly=on", "-device", "virtio-blk-device,drive=disk1",
            "-netdev", "user,id=net1,net=10.0.3.0/24,hostfwd=udp:127.0.0.1:5353-:53",
            "-device", "virtio-net-device,netdev=net1,mac=52:54:00:12:34:51",
            "-device", "virtio-serial-device,id=serial1",
            "-chardev", "socket,id=console1,path=/s/b-hvc0.sock,server=on,wait=off",
            "-device", "virtconsole,chardev=console1,bus=serial1.0",
            "-device", "virtio-serial-device,id=serial-vm1",
            "-chardev", "socket,id=console-vm1,path=/out/b.serial.sock,server=on,wait=off",
            "-device", "virtconsole,chardev=console-vm1,bus=serial-vm1.0",
            "-kernel", "/out/vmm.elf",
        ])
    }

    func testVMsWithoutVirtioDevicesStillGetTheirSerialConsoleDevices() {
        var system = SystemConfiguration(vms: ["a", "b", "c"].map { VMConfiguration(name: $0, kernel: "/k") })
        system.vms[2].serial = "/run/c.sock"
        let arguments = SystemBuilder.qemuArguments(system, image: URL(fileURLWithPath: "/out/vmm.elf"), output: output)
        let expected: [String] = [
            // Three VMs of the default 512M: 128M for the VMM and 1536M for the guests.
            "-machine virt,virtualization=on,gic-version=2 -cpu cortex-a53 -nographic -m 1664M -smp 3",
            "-global virtio-mmio.force-legacy=false",
            "-device virtio-serial-device,id=serial-vm1",
            "-chardev socket,id=console-vm1,path=/out/b.serial.sock,server=on,wait=off",
            "-device virtconsole,chardev=console-vm1,bus=serial-vm1.0",
            "-device virtio-serial-device,id=serial-vm2",
            "-chardev socket,id=console-vm2,path=/run/c.sock,server=on,wait=off",
            "-device virtconsole,chardev=console-vm2,bus=serial-vm2.0",
            "-kernel /out/vmm.elf",
        ]
        XCTAssertEqual(arguments.joined(separator: " "), expected.joined(separator: " "))
    }

    func testDefaultSerialSocketsAreNamedAfterTheVMInTheOutputDirectory() throws {
        var system = twoVMs()
        system.vms.append(VMConfiguration(name: "c", kernel: "/k", serial: "/run/c.sock"))
        XCTAssertEqual(SystemBuilder.serialSockets(system, output: output), [nil, "/out/b.serial.sock", "/run/c.sock"])
        XCTAssertEqual(SystemBuilder.serialSockets(system, output: URL(fileURLWithPath: "/x/./build/../out")),
                       [nil, "/x/out/b.serial.sock", "/run/c.sock"])
        XCTAssertEqual(try SystemBuilder.checkedSerialSockets(system, output: output), [nil, "/out/b.serial.sock", "/run/c.sock"])
        // What the validator cannot see without the output directory: a default that is too long, or taken.
        let deep = URL(fileURLWithPath: "/" + String(repeating: "d", count: 100))
        XCTAssertThrowsError(try SystemBuilder.checkedSerialSockets(system, output: deep)) {
            XCTAssertEqual(($0 as? BuildError)?.message,
                           "vm[1] 'b': the default serial socket '\(deep.path)/b.serial.sock' is 115 bytes long; a unix socket "
                           + "path holds at most 107 (choose a shorter --output directory, or give the VM serial = \"PATH\")")
        }
        system.vms[0].consoles = [.init(socket: "/out/b.serial.sock")]
        XCTAssertThrowsError(try SystemBuilder.checkedSerialSockets(system, output: output)) {
            XCTAssertEqual(($0 as? BuildError)?.message,
                           "vm[1] 'b': the default serial socket '/out/b.serial.sock' is already the socket of vm[0].console[0] "
                           + "(give the VM serial = \"PATH\")")
        }
    }

    func testRunNamesEachSerialSocketBeforeTheVMsConsolesAndPorts() {
        XCTAssertEqual(twoVMs().connections(output: output), [
            "vm 'a': /dev/hvc0: socat - UNIX-CONNECT:/s/a-hvc0.sock",
            "vm 'a': eth0: host 127.0.0.1:8080 (tcp) forwards to guest port 80",
            "vm 'b': serial console on /out/b.serial.sock (connect with `socat - UNIX-CONNECT:/out/b.serial.sock`)",
            "vm 'b': /dev/hvc0: socat - UNIX-CONNECT:/s/b-hvc0.sock",
            "vm 'b': eth0: host 127.0.0.1:5353 (udp) forwards to guest port 53",
        ])
    }

    // MARK: guest_images.S

    func testGuestImagesAssemblyHasTheTableThenEachVMsImagesThenVM0sOneVMNames() throws {
        let text = try SystemBuilder.guestImagesAssembly([
            .init(kernel: "/g/a/Image", initrd: "/g/a/initrd", config: "/out/guest-0.config", cpus: [0, 1],
                  seed: Array(0..<64)),
            .init(kernel: "/g/b/Image", initrd: "/out/empty.initrd", config: "/out/guest-1.config", cpus: [5, 2, 3],
                  seed: Array(repeating: 0xa5, count: 64)),
        ])
        XCTAssertEqual(text, """
            // The guests linked into the VMM, written by `vmm build` (SystemBuilder.guestImagesAssembly).
                .section .guest_images, "a"
                .balign 8
                .global guest_table
            guest_table:
                .quad 2
                .quad vm0_kernel_start, vm0_kernel_end, vm0_initrd_start, vm0_initrd_end, vm0_config_start, vm0_config_end, vm0_cpus, vm0_seed_start, vm0_seed_end
                .quad vm1_kernel_start, vm1_kernel_end, vm1_initrd_start, vm1_initrd_end, vm1_config_start, vm1_config_end, vm1_cpus, vm1_seed_start, vm1_seed_end
            vm0_cpus:
                .byte 0, 1, 255
            vm0_seed_start:
                .byte 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63
            vm0_seed_end:
            vm1_cpus:
                .byte 5, 2, 3, 255
            vm1_seed_start:
                .byte 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165, 165
            vm1_seed_end:
                .balign 4096
            vm0_kernel_start:
                .incbin "/g/a/Image"
            vm0_kernel_end:
                .balign 4096
            vm0_initrd_start:
                .incbin "/g/a/initrd"
            vm0_initrd_end:
                .balign 16
            vm0_config_start:
                .incbin "/out/guest-0.config"
            vm0_config_end:
                .balign 4096
            vm1_kernel_start:
                .incbin "/g/b/Image"
            vm1_kernel_end:
                .balign 4096
            vm1_initrd_start:
                .incbin "/out/empty.initrd"
            vm1_initrd_end:
                .balign 16
            vm1_config_start:
                .incbin "/out/guest-1.config"
            vm1_config_end:
            // VM 0's images under the names the Microkit platform (one VM) uses.
                .global guest_kernel_start, guest_kernel_end, guest_initrd_start, guest_initrd_end, guest_config_start, guest_config_end, guest_seed_start, guest_seed_end
                .set guest_kernel_start, vm0_kernel_start
                .set guest_kernel_end, vm0_kernel_end
                .set guest_initrd_start, vm0_initrd_start
                .set guest_initrd_end, vm0_initrd_end
                .set guest_config_start, vm0_config_start
                .set guest_config_end, vm0_config_end
                .set guest_seed_start, vm0_seed_start
                .set guest_seed_end, vm0_seed_end

            """)
    }

    func testEachBuildDrawsANewSeedOfTheSizeTheVMMGives() throws {
        let a = SystemBuilder.GuestImages(kernel: "/k", initrd: "/i", config: "/c", cpus: [0])
        let b = SystemBuilder.GuestImages(kernel: "/k", initrd: "/i", config: "/c", cpus: [0])
        XCTAssertEqual(a.seed.count, GuestEntropy.seedSize)
        XCTAssertNotEqual(a.seed, b.seed)
        var short = a
        short.seed.removeLast()
        XCTAssertThrowsError(try SystemBuilder.guestImagesAssembly([a, short])) { error in
            XCTAssertEqual((error as? BuildError)?.message, "vm[1]: a seed of 63 bytes, not 64")
        }
    }

    func testAssemblerStringsEscapeQuotesBackslashesAndControlCharactersAndNeedAbsolutePaths() throws {
        XCTAssertEqual(try SystemBuilder.assemblerString("/a \"b\"\\c\nd\té", for: "x"), "\"/a \\\"b\\\"\\\\c\\012d\\011é\"")
        XCTAssertThrowsError(try SystemBuilder.assemblerString("rel/Image", for: "vm[0] kernel")) {
            XCTAssertEqual(($0 as? BuildError)?.message, "vm[0] kernel: 'rel/Image' is not an absolute path")
        }
    }

    /// The toolchain's clang and llvm-nm (the ones `vmm build` uses), if this machine has them.
    func tool(_ name: String) throws -> URL {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        for directory in path + ["/opt/swift/usr/bin"] {
            let url = URL(fileURLWithPath: directory).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        throw XCTSkip("no \(name) on PATH")
    }

    func run(_ tool: URL, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = tool
        process.arguments = arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let problems = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, problems)
        return text
    }

    func testTheAssemblyAssemblesWithOddPathsAndLaysOutEachVMsImagesInOrder() throws {
        let (clang, nm) = (try tool("clang"), try tool("llvm-nm"))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("images-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // A name with a quote, a backslash and a newline, and a '#' and a "'" for the preprocessor to leave alone.
        let odd = directory.appendingPathComponent("we\"ird\\na\nme #1 it's").path
        let files: [(String, Int)] = [(odd, 5000), ("initrd-a", 100), ("config-a", 24),
                                      ("kernel-b", 3), ("initrd-b", 0), ("config-b", 40)]
        var paths: [String] = []
        for (name, size) in files {
            let path = name.hasPrefix("/") ? name : directory.appendingPathComponent(name).path
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(repeating: 0xa5, count: size)))
            paths.append(path)
        }
        let source = directory.appendingPathComponent("guest_images.S"), object = directory.appendingPathComponent("guest_images.o")
        try SystemBuilder.guestImagesAssembly([
            .init(kernel: paths[0], initrd: paths[1], config: paths[2], cpus: [0, 1], seed: Array(100..<164)),
            .init(kernel: paths[3], initrd: paths[4], config: paths[5], cpus: [7, 2, 3, 4, 5, 6, 0, 1],
                  seed: Array(repeating: 7, count: 64)),
        ]).write(to: source, atomically: true, encoding: .utf8)
        _ = try run(clang, ["--target=aarch64-none-elf", "-c", source.path, "-o", object.path])
        var symbols: [String: UInt64] = [:]
        for line in try run(nm, [object.path]).split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 3, let value = UInt64(fields[0], radix: 16) { symbols[String(fields[2])] = value }
        }
        let parts = ["kernel", "initrd", "config"]
        let order = (0..<2).flatMap { vm in parts.flatMap { ["vm\(vm)_\($0)_start", "vm\(vm)_\($0)_end"] } }
        let addresses = try order.map { try XCTUnwrap(symbols[$0], $0) }
        XCTAssertEqual(symbols["guest_table"], 0)
        // Each part is as long as its file, parts in order, kernels and initrds page aligned.
        for (n, (_, size)) in files.enumerated() {
            XCTAssertEqual(addresses[2 * n + 1] - addresses[2 * n], UInt64(size), order[2 * n])
            if n > 0 { XCTAssertGreaterThanOrEqual(addresses[2 * n], addresses[2 * n - 1]) }
            XCTAssertTrue(addresses[2 * n].isMultiple(of: n % 3 == 2 ? 16 : 4096), order[2 * n])
        }
        for name in (parts + ["seed"]).flatMap({ ["\($0)_start", "\($0)_end"] }) {
            XCTAssertEqual(symbols["guest_\(name)"], symbols["vm0_\(name)"], name)
        }
        // The table: the VM count, then nine u64 per VM, the seventh the address of its board CPUs
        // (bytes, one per vCPU, 0xFF after the last), right after the table, the last two its seed's
        // bounds; the addresses are relocations, zero in the object, so the bytes are found by their symbols.
        let objcopy = try tool("llvm-objcopy")
        let section = directory.appendingPathComponent("guest_images.bin")
        _ = try run(objcopy, ["--dump-section", ".guest_images=\(section.path)", object.path])
        let bytes = [UInt8](try Data(contentsOf: section))
        func quad(_ n: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[8 * n + $1]) << (8 * $1) } }
        XCTAssertEqual(quad(0), 2)
        XCTAssertEqual(symbols["vm0_cpus"], 8 * (1 + 9 + 9))
        let cpus0 = Int(try XCTUnwrap(symbols["vm0_cpus"])), cpus1 = Int(try XCTUnwrap(symbols["vm1_cpus"]))
        XCTAssertEqual(Array(bytes[cpus0..<(cpus0 + 3)]), [0, 1, 0xFF])
        XCTAssertEqual(Array(bytes[cpus1..<(cpus1 + 9)]), [7, 2, 3, 4, 5, 6, 0, 1, 0xFF])
        for (vm, seed) in [(0, Array(UInt8(100)..<164)), (1, [UInt8](repeating: 7, count: 64))] {
            let start = Int(try XCTUnwrap(symbols["vm\(vm)_seed_start"])), end = Int(try XCTUnwrap(symbols["vm\(vm)_seed_end"]))
            XCTAssertEqual(Array(bytes[start..<end]), seed, "vm\(vm)'s seed")
        }
    }
}
