// The VMM's networks between VMs (native platform): a `[[vm.net]]` card with `network = "NAME"`
// joins the VMM's virtual switch NAME instead of a QEMU user network. What the file may say (the
// key, and every rule with its message at its key path), how networks are numbered (first appearance
// in the file), what the guest configuration, QEMU's command line, the board-device count and the
// summary make of such a card, and examples/two-vms.toml, whose VMs share the network "lan".

import Foundation
import XCTest
@testable import VMMCore
@testable import VMMHost

final class VMMNetworksConfigurationTests: ConfigurationTestCase {
    /// A `[[vm]]` table with the fixture guest (writeGuest), 32M of RAM, then `extra`.
    func vm(_ name: String, _ extra: String = "") -> String {
        "[[vm]]\nname = \"\(name)\"\nkernel = \"Image\"\ninitrd = \"initrd.img\"\nram = \"32M\"\n" + extra
    }

    /// A `[[vm.net]]` card on `network` (none: a board NIC), with `extra` keys.
    func card(_ network: String?, _ extra: String = "") -> String {
        "[[vm.net]]\n" + (network.map { "network = \"\($0)\"\n" } ?? "") + extra
    }

    // MARK: The key

    func testACardNamesTheNetworkItJoinsAndNetworksAreNumberedByFirstAppearance() throws {
        try writeGuest()
        // "dmz" is named first by b, after a named "lan": lan is network 0, dmz network 1.
        let system = try parse(vm("a", card(nil) + card("lan")) + vm("b", card("dmz") + card("lan")) + vm("c", card("dmz")))
        XCTAssertEqual(system.vms.map { $0.networks.map(\.network) }, [[nil, "lan"], ["dmz", "lan"], ["dmz"]])
        XCTAssertEqual(system.vmmNetworks, ["lan", "dmz"])
        let networks = system.vmmNetworks
        let mac = VMConfiguration.NetworkDevice.defaultMAC
        XCTAssertEqual(system.vms.map { SystemBuilder.guestConfiguration($0, networks: networks).devices }, [
            [.network(mac: mac(0)), .switchedNetwork(mac: mac(1), network: 0)],
            [.switchedNetwork(mac: mac(2), network: 1), .switchedNetwork(mac: mac(3), network: 0)],
            [.switchedNetwork(mac: mac(4), network: 1)],
        ])
    }

    func testTheNameIsOneLikeAVMsAndAString() throws {
        try writeGuest()
        // Only the name is wrong: b's card is not called alone on "lan", as a's was surely meant to join it.
        XCTAssertEqual(errors(vm("a", card("LAN")) + vm("b", card("lan"))), [
            "system.toml: vm[0].net[0].network: expected 1 to 32 characters from a-z, 0-9, '_' and '-', found 'LAN'",
        ])
        XCTAssertEqual(errors(vm("a", card(String(repeating: "n", count: 33))) + vm("b")), [
            "system.toml: vm[0].net[0].network: expected 1 to 32 characters from a-z, 0-9, '_' and '-', found '\(String(repeating: "n", count: 33))'",
        ])
        XCTAssertEqual(errors(vm("a", "[[vm.net]]\nnetwork = 1\n") + vm("b")), [
            "system.toml: vm[0].net[0].network: expected a string, found an integer",
        ])
        XCTAssertEqual(errors(vm("a", "[[vm.net]]\nnetwrk = \"lan\"\n")), [
            "system.toml: vm[0].net[0].netwrk: unknown key 'netwrk' (did you mean 'network'?)",
        ])
        XCTAssertEqual(errors(vm("a", card("my_lan-2")) + vm("b", card("my_lan-2"))), [])
    }

    // MARK: The rules

    func testACardOnANetworkHasNoForwards() throws {
        try writeGuest()
        XCTAssertEqual(errors(vm("a", card("lan", "forward = [\"tcp:8080:80\"]\n")) + vm("b", card("lan"))), [
            "system.toml: vm[0].net[0].forward: a card on a VMM network has no host port forwarding; forwards belong to a "
                + "card without `network`",
        ])
        // Its forwards claim no host port: only the one error, though b's board NIC forwards the same port.
        XCTAssertEqual(errors(vm("a", card("lan", "forward = [\"tcp:8080:80\"]\n"))
                              + vm("b", card("lan") + card(nil, "forward = [\"tcp:8080:80\"]\n"))), [
            "system.toml: vm[0].net[0].forward: a card on a VMM network has no host port forwarding; forwards belong to a "
                + "card without `network`",
        ])
        // A forward that does not parse is reported as such, once.
        XCTAssertEqual(errors(vm("a", card("lan", "forward = [\"tcp:8080\"]\n")) + vm("b", card("lan"))), [
            "system.toml: vm[0].net[0].forward[0]: expected \"tcp:HOSTPORT:GUESTPORT\" or \"udp:HOSTPORT:GUESTPORT\" with ports "
                + "1 to 65535, found 'tcp:8080'",
        ])
        XCTAssertEqual(errors(vm("a", card("lan", "forward = []\n")) + vm("b", card("lan"))), [], "no forwards")
        XCTAssertEqual(errors(vm("a", card(nil, "forward = [\"tcp:8080:80\"]\n") + card("lan")) + vm("b", card("lan"))), [])
    }

    func testANetworkJoinsCardsOfTwoVMsAtLeast() throws {
        try writeGuest()
        let lone = "network 'lan' joins only this card; a network needs cards of at least two VMs"
        XCTAssertEqual(errors(vm("a", card(nil) + card("lan"))), ["system.toml: vm[0].net[1].network: \(lone)"])
        XCTAssertEqual(errors(vm("a", card("lan")) + vm("b", card(nil))), ["system.toml: vm[0].net[0].network: \(lone)"])
        XCTAssertEqual(errors(vm("a") + vm("b", card("lan")) + vm("c", card("dmz"))), [
            "system.toml: vm[1].net[0].network: \(lone)",
            "system.toml: vm[2].net[0].network: network 'dmz' joins only this card; a network needs cards of at least two VMs",
        ])
        XCTAssertEqual(errors(vm("a", card("lan")) + vm("b", card("lan")) + vm("c", card("lan"))), [], "three VMs on one network")
    }

    func testAVMJoinsANetworkWithOneCard() throws {
        try writeGuest()
        XCTAssertEqual(errors(vm("a", card("lan") + card(nil) + card("lan")) + vm("b", card("lan"))), [
            "system.toml: vm[0].net[2].network: this VM is already on network 'lan' with vm[0].net[0] "
                + "(a VM joins a network with one card)",
        ])
        // Alone with two cards: the second is refused, and the first is then the network's only card.
        XCTAssertEqual(errors(vm("a", card("lan") + card("lan"))), [
            "system.toml: vm[0].net[0].network: network 'lan' joins only this card; a network needs cards of at least two VMs",
            "system.toml: vm[0].net[1].network: this VM is already on network 'lan' with vm[0].net[0] "
                + "(a VM joins a network with one card)",
        ])
        // Two networks of one VM are fine.
        XCTAssertEqual(errors(vm("a", card("lan") + card("dmz")) + vm("b", card("dmz") + card("lan"))), [])
    }

    func testTheSystemHasAtMostSixteenNetworks() throws {
        try writeGuest()
        // 8 VMs of 4 cards: VMs 2k and 2k+1 share networks n(4k)…n(4k+3): 16 networks, each of two VMs.
        let sixteen = (0..<8).map { i in vm("v\(i)", (0..<4).map { card("n\(4 * (i / 2) + $0)") }.joined()) }.joined()
        XCTAssertEqual(errors(sixteen), [])
        let system = try parse(sixteen)
        XCTAssertEqual(system.vmmNetworks, (0..<16).map { "n\($0)" })
        XCTAssertEqual(SystemBuilder.guestConfiguration(system.vms[7], networks: system.vmmNetworks).devices.map {
            guard case .switchedNetwork(_, let network) = $0 else { return -1 }
            return network
        }, [12, 13, 14, 15])

        // 5 VMs: v0 and v1 share n0…n2, then 14 networks of one card each: n3 … n16.
        let names = [["n0", "n1", "n2", "n3"], ["n0", "n1", "n2", "n4"]]
            + (0..<3).map { k in (0..<4).map { "n\(5 + 4 * k + $0)" } }
        let seventeen = names.enumerated().map { i, cards in vm("v\(i)", cards.map { card($0) }.joined()) }.joined()
        var expected: [String] = []
        for (i, cards) in names.enumerated() {
            for (n, name) in cards.enumerated() where !["n0", "n1", "n2"].contains(name) {
                if name == "n16" {
                    expected.append("system.toml: vm[\(i)].net[\(n)].network: network 'n16' makes 17 networks in the system; "
                                    + "the VMM has at most 16")
                }
                expected.append("system.toml: vm[\(i)].net[\(n)].network: network '\(name)' joins only this card; "
                                + "a network needs cards of at least two VMs")
            }
        }
        XCTAssertEqual(errors(seventeen), expected)
    }

    func testNetworksBetweenVMsFollowTheSameRulesOnMicrokit() throws {
        try writeGuest()
        let microkit = "[system]\nplatform = \"microkit\"\n"
        XCTAssertEqual(errors(microkit + minimal + card("lan")), [
            "system.toml: vm[0].net[0].network: network 'lan' joins only this card; a network needs cards of at least two VMs",
        ])
        XCTAssertEqual(errors(microkit + minimal + card("lan", "forward = [\"tcp:8080:80\"]\n")), [
            "system.toml: vm[0].net[0].network: network 'lan' joins only this card; a network needs cards of at least two VMs",
            "system.toml: vm[0].net[0].forward: a card on a VMM network has no host port forwarding; forwards belong to a "
                + "card without `network`",
        ])
        XCTAssertEqual(errors(microkit + minimal + card(nil)), [])
    }

    func testMACsStayUniqueAcrossTheSystem() throws {
        try writeGuest()
        let mac = "mac = \"52:54:00:00:01:0a\"\n"
        XCTAssertEqual(errors(vm("a", card("lan", mac)) + vm("b", card("lan", mac))), [
            "system.toml: vm[1].net[0].mac: 52:54:00:00:01:0a is already the MAC of vm[0].net[0]",
        ])
        // Default MACs count every card of the system, on a network or not.
        let system = try parse(vm("a", card("lan")) + vm("b", card(nil) + card("lan")))
        XCTAssertEqual(system.vms.flatMap { $0.networks.map { ConfigurationParser.macText($0.mac) } },
                       ["52:54:00:12:34:50", "52:54:00:12:34:51", "52:54:00:12:34:52"])
    }

    /// `blocks` disks, the cards `networks` and `consoles` consoles, with files and sockets named after `vm`.
    func devices(_ vm: String, blocks: Int, networks: [String?], consoles: Int) -> String {
        (0..<blocks).map { "[[vm.block]]\nfile = \"\(vm)-d\($0).img\"\nsize = \"1M\"\n" }.joined()
            + networks.map { card($0) }.joined()
            + (0..<consoles).map { "[[vm.console]]\nsocket = \"\(vm)-c\($0).sock\"\n" }.joined()
    }

    func testCardsOnANetworkTakeNoBoardDevice() throws {
        try writeGuest()
        let board: [String?] = [nil, nil, nil, nil], switched: [String?] = ["n0", "n1", "n2", "n3"]
        // With board NICs: 16 + 16 + b's serial console is 33 board devices.
        XCTAssertEqual(errors(vm("a", devices("a", blocks: 8, networks: board, consoles: 4))
                              + vm("b", devices("b", blocks: 8, networks: board, consoles: 4))), [
            "system.toml: vm[1].serial: needs board virtio device 33, and QEMU virt has 32 virtio-mmio transports (one for "
                + "each disk, network and console of every VM, and one for the serial console of each VM after the first)",
        ])
        // On VMM networks the 8 cards need none: 25. Each guest still has 16 devices.
        let text = vm("a", devices("a", blocks: 8, networks: switched, consoles: 4))
            + vm("b", devices("b", blocks: 8, networks: switched, consoles: 4))
        XCTAssertEqual(errors(text), [])
        let system = try parse(text)
        for vm in system.vms {
            let configuration = SystemBuilder.guestConfiguration(vm, networks: system.vmmNetworks)
            XCTAssertEqual(configuration.devices.count, 16)
            XCTAssertNoThrow(try configuration.validate())
        }
    }

    // MARK: What the tool makes of such a card

    func testTheSummaryNamesEachCardsNetwork() throws {
        try writeGuest()
        let system = try parse(vm("a", card("lan") + card(nil) + card("dmz")) + vm("b", card("lan") + card("dmz")))
        XCTAssertEqual(system.summary(file: "s.toml"), [
            "s.toml: ok — vm 'a': 32 MiB at 0x40000000, 1 vCPU, 3 networks (eth0 on network 'lan', eth2 on network 'dmz'), "
                + "platform native",
            "s.toml: ok — vm 'b': 32 MiB at 0x40000000, 1 vCPU, 2 networks (eth0 on network 'lan', eth1 on network 'dmz'), "
                + "platform native",
        ])
    }

    func testQEMUGetsBoardNICsOnlyNumberedAmongThemselves() throws {
        try writeGuest()
        // Each VM's board NIC is its eth1; they are board NICs 0 and 1 of the system: 10.0.2.0/24 and 10.0.3.0/24.
        let system = try parse(vm("a", card("lan") + card(nil, "forward = [\"tcp:8080:80\"]\n"))
                               + vm("b", "serial = \"b.sock\"\n" + card("lan") + card(nil)))
        let arguments = SystemBuilder.qemuArguments(system, image: URL(fileURLWithPath: "/out/vmm.elf"),
                                                    output: URL(fileURLWithPath: "/out"))
        XCTAssertEqual(arguments, [
            "-machine", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a53", "-nographic", "-m", "1G", "-smp", "2",
            "-global", "virtio-mmio.force-legacy=false",
            "-netdev", "user,id=net0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:8080-:80",
            "-device", "virtio-net-device,netdev=net0,mac=52:54:00:12:34:51",
            "-netdev", "user,id=net1,net=10.0.3.0/24",
            "-device", "virtio-net-device,netdev=net1,mac=52:54:00:12:34:53",
            "-device", "virtio-serial-device,id=serial-vm1",
            "-chardev", "socket,id=console-vm1,path=\(directory)/b.sock,server=on,wait=off",
            "-device", "virtconsole,chardev=console-vm1,bus=serial-vm1.0",
            "-kernel", "/out/vmm.elf",
        ])
        // The guest still sees both cards, the one on "lan" first.
        XCTAssertEqual(SystemBuilder.guestConfiguration(system.vms[1], networks: system.vmmNetworks).devices, [
            .switchedNetwork(mac: VMConfiguration.NetworkDevice.defaultMAC(index: 2), network: 0),
            .network(mac: VMConfiguration.NetworkDevice.defaultMAC(index: 3)),
        ])
    }

    func testASystemWithOnlyCardsOnNetworksHasNoBoardDevices() {
        var a = VMConfiguration(name: "a", kernel: "/k"), b = VMConfiguration(name: "b", kernel: "/k", serial: "/b.sock")
        a.networks = [.init(mac: [2, 0, 0, 0, 0, 1], network: "lan")]
        b.networks = [.init(mac: [2, 0, 0, 0, 0, 2], network: "lan")]
        let system = SystemConfiguration(vms: [a])
        XCTAssertEqual(SystemBuilder.qemuArguments(system, image: URL(fileURLWithPath: "/vmm.elf"), output: URL(fileURLWithPath: "/o")),
                       ["-machine", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a53", "-nographic",
                        "-m", "1G", "-smp", "1", "-kernel", "/vmm.elf"])
        // A VM alone numbers its networks itself, in its own order.
        XCTAssertEqual(SystemBuilder.guestConfiguration(b).devices, [.switchedNetwork(mac: [2, 0, 0, 0, 0, 2], network: 0)])
    }
}

final class TwoVMsExampleTests: XCTestCase {
    func testBothVMsShareTheNetworkLanAndKeepTheirDisksAndAsBoardNIC() throws {
        let (system, root) = try checkedExample("two-vms.toml")
        XCTAssertEqual(system.vmmNetworks, ["lan"])
        XCTAssertEqual(system.summary(file: "two-vms.toml"), [
            "two-vms.toml: ok — vm 'a': 256 MiB at 0x40000000, 2 vCPUs, 1 disk, 2 networks (eth1 on network 'lan'), platform native",
            "two-vms.toml: ok — vm 'b': 256 MiB at 0x40000000, 2 vCPUs, 1 disk, 1 network (eth0 on network 'lan'), platform native",
        ])
        // Devices in the guest configuration's order: blocks, networks, consoles.
        let configurations = system.vms.map { SystemBuilder.guestConfiguration($0, networks: system.vmmNetworks) }
        XCTAssertEqual(configurations.map(\.devices), [
            [.block(readOnly: false), .network(mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x50]),
             .switchedNetwork(mac: [0x52, 0x54, 0x00, 0x00, 0x01, 0x0a], network: 0)],
            [.block(readOnly: false), .switchedNetwork(mac: [0x52, 0x54, 0x00, 0x00, 0x01, 0x0b], network: 0)],
        ])
        for configuration in configurations {
            XCTAssertNoThrow(try configuration.validate())
            let decoded = try configuration.encoded().withUnsafeBytes { bytes throws(GuestConfigurationError) in
                try GuestConfiguration(decoding: bytes)
            }
            XCTAssertEqual(decoded, configuration)
        }

        // QEMU: no board device for the lan cards; a's board NIC is the system's first, on 10.0.2.0/24.
        let output = root.appendingPathComponent("build/two-vms")
        let arguments = SystemBuilder.qemuArguments(system, image: output.appendingPathComponent("vmm.elf"), output: output)
        let disk = { (vm: String) in root.appendingPathComponent("build/two-vms/\(vm)-disk.img").path }
        XCTAssertEqual(arguments, [
            "-machine", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a53", "-nographic", "-m", "1G", "-smp", "4",
            "-global", "virtio-mmio.force-legacy=false",
            "-drive", "file=\(disk("a")),if=none,format=raw,id=disk0", "-device", "virtio-blk-device,drive=disk0",
            "-netdev", "user,id=net0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:8080-:80",
            "-device", "virtio-net-device,netdev=net0,mac=52:54:00:12:34:50",
            "-drive", "file=\(disk("b")),if=none,format=raw,id=disk1", "-device", "virtio-blk-device,drive=disk1",
            "-device", "virtio-serial-device,id=serial-vm1",
            "-chardev", "socket,id=console-vm1,path=\(output.path)/b.serial.sock,server=on,wait=off",
            "-device", "virtconsole,chardev=console-vm1,bus=serial-vm1.0",
            "-kernel", output.appendingPathComponent("vmm.elf").path,
        ])
        XCTAssertEqual(arguments.filter { $0.hasPrefix("virtio-net-device") }.count, 1)
        XCTAssertEqual(system.connections(output: output), [
            "vm 'a': eth0: host 127.0.0.1:8080 (tcp) forwards to guest port 80",
            "vm 'b': serial console on \(output.path)/b.serial.sock (connect with `socat - UNIX-CONNECT:\(output.path)/b.serial.sock`)",
        ])
    }
}
