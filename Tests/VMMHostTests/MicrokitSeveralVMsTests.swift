// Several VMs on the Microkit platform: what `vmm check` accepts and refuses (RAM shared out of the
// 512 MiB seL4 leaves to guests, passthrough only where a VM's RAM is identity-mapped, networks
// between VMs), the generated system description read back through an XML parser (a partition per
// VM whose names start with the VM's, each VM's RAM mapped into that VM and its own VMM only, side by
// side in physical memory, the board's transports numbered across the system, the timer PD that owns
// PPI 30 and that every VMM may call), QEMU's command line (a hub per VMM network, a serial console
// for VM b) and the link lines of the VMM and timer images.

import Foundation
import XCTest
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import VMMCore
@testable import VMMHost

final class MicrokitSeveralVMsConfigurationTests: ConfigurationTestCase {
    func vm(_ name: String, ram: String = "128M", _ extra: String = "") -> String {
        "[[vm]]\nname = \"\(name)\"\nkernel = \"Image\"\ninitrd = \"initrd.img\"\nram = \"\(ram)\"\n" + extra
    }

    let microkit = "[system]\nplatform = \"microkit\"\n"

    func testMicrokitRunsSeveralVMsWithTheirRAMSharedOutOf512M() throws {
        try writeGuest()
        XCTAssertEqual(errors(microkit + vm("a", ram: "256M") + vm("b", ram: "256M")), [])
        XCTAssertEqual(errors(microkit + vm("a", ram: "256M") + vm("b", ram: "128M") + vm("c", ram: "256M")), [
            "system.toml: vm[2].ram: the RAM of all VMs adds up to 640M; the microkit platform gives its guests at most 512M in all",
        ])
        let system = try parse(microkit + vm("a", ram: "256M") + vm("b", ram: "64M") + vm("c", ram: "32M"))
        XCTAssertEqual(SystemBuilder.microkitRAMPlacement(system), [0x4000_0000, 0x5000_0000, 0x5400_0000])
        // Each guest sees its RAM at its own ram_base.
        XCTAssertEqual(system.vms.map(\.ramBase), [0x4000_0000, 0x4000_0000, 0x4000_0000])
        // One VM stays where its ram_base says, identity-mapped.
        let one = try parse(microkit + vm("a", ram: "64M", "ram_base = 0x48000000\n"))
        XCTAssertEqual(SystemBuilder.microkitRAMPlacement(one), [0x4800_0000])
    }

    func testOnlyTheLastVMHasSeveralVCPUsAsMicrokit201sToolNumbersThem() throws {
        try writeGuest()
        XCTAssertEqual(errors(microkit + vm("a", "vcpus = 1\n") + vm("b", "vcpus = 4\n")), [])
        XCTAssertEqual(errors(microkit + vm("a", "vcpus = 2\n") + vm("b", "vcpus = 2\n")), [
            "system.toml: vm[0].vcpus: with several VMs the microkit platform (Microkit 2.0.1's tool) gives only the "
                + "last VM more than one vCPU, found 2",
        ])
        // One VM alone has up to 8.
        XCTAssertEqual(errors(microkit + vm("a", "vcpus = 8\n")), [])
    }

    func testPassthroughNeedsAVMWhoseRAMIsWhereItsGuestSeesIt() throws {
        try writeGuest()
        let rtc = "[[vm.passthrough]]\nname = \"rtc\"\naddress = 0x09010000\nsize = 0x1000\n"
        XCTAssertEqual(errors(microkit + vm("a", rtc) + vm("b")), [])
        XCTAssertEqual(errors(microkit + vm("a") + vm("b", rtc)), [
            "system.toml: vm[1].passthrough: on the microkit platform this VM's RAM is at physical 0x48000000, after the "
                + "VMs before it; passthrough needs the guest to see it there (ram_base = 0x48000000)",
        ])
        XCTAssertEqual(errors(microkit + vm("a") + vm("b", "ram_base = 0x48000000\n" + rtc)), [])
    }

    func testNetworksBetweenVMsAndTheSerialConsolesOfLaterVMsWorkOnMicrokit() throws {
        try writeGuest()
        let lan = "[[vm.net]]\nnetwork = \"lan\"\n"
        XCTAssertEqual(errors(microkit + vm("a", lan) + vm("b", "serial = \"b.sock\"\n" + lan)), [])
    }
}

final class MicrokitSeveralVMsSystemTests: XCTestCase, SystemDescriptionQueries {
    /// VM a: a disk, a user NIC and a card on "lan"; VM b: a disk and a card on "lan"; 256 MiB each.
    private var twoVMs: SystemConfiguration {
        var a = VMConfiguration(name: "a", kernel: "/k")
        a.ramSize = 256 << 20
        a.vcpus = 2
        a.blocks = [.init(file: "/a.img", size: 1 << 20)]
        a.networks = [.init(mac: VMConfiguration.NetworkDevice.defaultMAC(index: 0)),
                      .init(mac: VMConfiguration.NetworkDevice.defaultMAC(index: 1), network: "lan")]
        var b = VMConfiguration(name: "b", kernel: "/k")
        b.ramSize = 256 << 20
        b.blocks = [.init(file: "/b.img", size: 1 << 20)]
        b.networks = [.init(mac: VMConfiguration.NetworkDevice.defaultMAC(index: 2), network: "lan")]
        return SystemConfiguration(platform: .microkit, vms: [a, b])
    }

    private func document() throws -> XMLDocument {
        try XMLDocument(xmlString: try SystemBuilder.microkitSystem(twoVMs).render(), options: [])
    }

    func testEachVMHasAVMMOfItsOwnAndDriversNamedAfterIt() throws {
        let document = try document()
        XCTAssertEqual(try values("/system/protection_domain/@name", in: document), [
            "a_vmm", "a_disk0_driver", "a_net0_driver", "a_net1_driver",
            "b_vmm", "b_disk0_driver", "b_net0_driver", "b_console0_driver", "timer",
        ])
        XCTAssertEqual(try values("/system/protection_domain/virtual_machine/@name", in: document), ["a", "b"])
        XCTAssertEqual(try values("/system/protection_domain[@name='a_vmm']/virtual_machine/vcpu/@id", in: document), ["0", "1"])
        XCTAssertEqual(try values("/system/protection_domain[@name='b_vmm']/virtual_machine/vcpu/@id", in: document), ["0"])
        XCTAssertEqual(try values("/system/protection_domain/program_image/@path", in: document), [
            "a_vmm.elf", "a_disk0_driver.elf", "a_net0_driver.elf", "a_net1_driver.elf",
            "b_vmm.elf", "b_disk0_driver.elf", "b_net0_driver.elf", "b_console0_driver.elf", "timer.elf",
        ])
    }

    /// Isolation: a VM's RAM is one region, mapped into that VM and its own VMM and nowhere else;
    /// the two regions do not overlap.
    func testEachVMsRAMIsMappedIntoThatVMAndItsOwnVMMOnly() throws {
        let document = try document()
        for (vm, physical) in [("a", "0x40000000"), ("b", "0x50000000")] {
            let region = "\(vm)_guest_ram"
            XCTAssertEqual(try value("/system/memory_region[@name='\(region)']/@phys_addr", in: document), physical)
            XCTAssertEqual(try value("/system/memory_region[@name='\(region)']/@size", in: document), "0x10000000")
            let owners = try document.nodes(forXPath: "//map[@mr='\(region)']").map { map -> String in
                let parent = map.parent!
                let name = (parent as? XMLElement)?.attribute(forName: "name")?.stringValue ?? ""
                return parent.name == "virtual_machine" ? "vm " + name : name
            }
            XCTAssertEqual(owners, ["\(vm)_vmm", "vm \(vm)"], region)
            // Both guests see their RAM at 0x40000000.
            XCTAssertEqual(try value("//virtual_machine[@name='\(vm)']/map[@mr='\(region)']/@vaddr", in: document), "0x40000000")
        }
        // A block driver reaches its own VM's RAM by DMA, no other.
        XCTAssertEqual(try value("//protection_domain[@name='b_disk0_driver']/setvar[@symbol='driver_guest_ram_paddr']/@region_paddr",
                                 in: document), "b_guest_ram")
    }

    func testTheFirstVMOwnsTheBoardsUARTAndTheTimerPDOwnsTheTimer() throws {
        let document = try document()
        XCTAssertEqual(try values("//protection_domain[@name='a_vmm']/irq/@irq", in: document), ["33"])
        XCTAssertEqual(try values("//protection_domain[@name='b_vmm']/irq/@irq", in: document), [])
        XCTAssertEqual(try values("//virtual_machine[@name='a']/map/@mr", in: document), ["a_guest_ram", "uart", "gic_vcpu"])
        XCTAssertEqual(try values("//virtual_machine[@name='b']/map/@mr", in: document), ["b_guest_ram", "gic_vcpu"])
        XCTAssertEqual(try values("//protection_domain[@name='timer']/irq/@irq", in: document), ["30"])
        XCTAssertEqual(try values("//protection_domain[@name='timer']/irq/@id", in: document),
                       [String(MicrokitTimerLayout.interruptChannel)])
        XCTAssertEqual(try value("//protection_domain[@name='timer']/@priority", in: document),
                       String(MicrokitTimerLayout.priority))
        // Each VMM may call the timer PD (pp on its end), on the channel the VMM program uses.
        for (index, vmm) in ["a_vmm", "b_vmm"].enumerated() {
            let channel = "/system/channel[end[@pd='\(vmm)'] and end[@pd='timer']]"
            XCTAssertEqual(try value("\(channel)/end[@pd='\(vmm)']/@id", in: document), String(MicrokitTimerLayout.vmmChannel))
            XCTAssertEqual(try value("\(channel)/end[@pd='\(vmm)']/@pp", in: document), "true")
            XCTAssertEqual(try value("\(channel)/end[@pd='timer']/@id", in: document),
                           String(MicrokitTimerLayout.clientChannel(index)))
            XCTAssertEqual(try values("\(channel)/end[@pd='timer']/@pp", in: document), [])
        }
    }

    func testBoardTransportsAreNumberedAcrossTheSystemAsQEMUPlugsThem() throws {
        let devices = SystemBuilder.microkitDevices(twoVMs)
        XCTAssertEqual(devices.map { $0.map(\.domainName) },
                       [["a_disk0_driver", "a_net0_driver", "a_net1_driver"],
                        ["b_disk0_driver", "b_net0_driver", "b_console0_driver"]])
        XCTAssertEqual(devices.map { $0.map(\.slot) }, [[31, 30, 29], [28, 27, 26]])
        // The VMM's windows and channels count the VM's own devices; b's serial console is its last.
        XCTAssertEqual(devices[1].map(\.position), [0, 1, 2])
        let document = try document()
        XCTAssertEqual(try values("//protection_domain[@name='b_net0_driver']/irq/@irq", in: document),
                       [String(MicrokitDriverLayout.boardInterrupt(slot: 27))])
        // Drivers of both VMs share the board page of their transports (seL4 cannot map less).
        XCTAssertEqual(try values("/system/memory_region[starts-with(@name, 'virtio_mmio')]/@name", in: document),
                       ["virtio_mmio_3"])
    }

    func testQEMUJoinsTheCardsOfAVMMNetworkInAHubAndGivesVMBASerialConsole() {
        let arguments = SystemBuilder.qemuArguments(twoVMs, image: URL(fileURLWithPath: "/o/loader.img"),
                                                    output: URL(fileURLWithPath: "/o"))
        let devices = arguments.enumerated().filter { $0.offset > 0 && arguments[$0.offset - 1] == "-device" }.map(\.element)
        XCTAssertEqual(devices, [
            "virtio-blk-device,drive=disk0",
            "virtio-net-device,netdev=net0,mac=52:54:00:12:34:50",
            "virtio-net-device,netdev=lan0,mac=52:54:00:12:34:51",
            "virtio-blk-device,drive=disk1",
            "virtio-net-device,netdev=lan1,mac=52:54:00:12:34:52",
            "virtio-serial-device,id=serial-vm1",
            "virtconsole,chardev=console-vm1,bus=serial-vm1.0",
            "loader,file=/o/loader.img,addr=0x70000000,cpu-num=0",
        ])
        XCTAssertTrue(arguments.contains("hubport,id=lan0,hubid=0"))
        XCTAssertTrue(arguments.contains("hubport,id=lan1,hubid=0"))
        // The user network keeps its number among the user networks: the board NIC 0's 10.0.2.0/24.
        XCTAssertTrue(arguments.contains("user,id=net0,net=10.0.2.0/24"), "\(arguments)")
    }

    func testTheGuestSeesACardOnAVMMNetworkAsABoardNIC() {
        let configuration = SystemBuilder.guestConfiguration(twoVMs.vms[1], networks: ["lan"], platform: .microkit)
        XCTAssertEqual(configuration.devices, [.block(readOnly: false), .network(mac: VMConfiguration.NetworkDevice.defaultMAC(index: 2))])
    }

    func testVMMImagesAreLinkedWithTheirVMNumberAndTheTimerPD() {
        let repository = URL(fileURLWithPath: "/r")
        XCTAssertEqual(SystemBuilder.vmmLinkArguments(index: 1, timerServer: true, objects: ["x.o"], output: "/o/b_vmm.elf",
                                                      boardLibrary: "/lib", repository: repository),
                       ["-L", "/lib", "-T", "/r/Platforms/microkit/vmm.ld", "--gc-sections",
                        "--defsym=vmm_vm_index=1", "--defsym=vmm_timer_server=1", "-o", "/o/b_vmm.elf", "x.o", "-lmicrokit"])
        // Alone, a VMM owns the timer and is VM 0: no symbols.
        XCTAssertEqual(SystemBuilder.vmmLinkArguments(index: 0, timerServer: false, objects: ["x.o"], output: "/o/vmm.elf",
                                                      boardLibrary: "/lib", repository: repository),
                       ["-L", "/lib", "-T", "/r/Platforms/microkit/vmm.ld", "--gc-sections", "-o", "/o/vmm.elf", "x.o",
                        "-lmicrokit"])
        XCTAssertEqual(SystemBuilder.timerLinkArguments(objects: ["d.o"], output: "/o/timer.elf", boardLibrary: "/lib",
                                                        repository: repository),
                       ["-L", "/lib", "-T", "/r/Platforms/microkit/vmm.ld", "--gc-sections",
                        "--defsym=driver_kind=\(MicrokitTimerLayout.kind)", "--defsym=driver_device_slot=0",
                        "-o", "/o/timer.elf", "d.o", "-lmicrokit"])
    }

    func testMicrokitTwoVMsExamplePassesCheckAndDescribesBothPartitions() throws {
        let (system, _) = try checkedExample("microkit-two-vms.toml")
        XCTAssertEqual(system.summary(file: "microkit-two-vms.toml"), [
            "microkit-two-vms.toml: ok — vm 'a': 256 MiB at 0x40000000, 1 vCPU, 1 disk, 2 networks (eth1 on network 'lan'), platform microkit",
            "microkit-two-vms.toml: ok — vm 'b': 256 MiB at 0x40000000, 2 vCPUs, 1 disk, 1 network (eth0 on network 'lan'), platform microkit",
        ])
        let description = SystemBuilder.microkitSystem(system)
        XCTAssertEqual(description.partitions.map(\.vmmName), ["a_vmm", "b_vmm"])
        XCTAssertEqual(description.partitions.map { $0.drivers.map(\.name) },
                       [["a_disk0_driver", "a_net0_driver", "a_net1_driver"],
                        ["b_disk0_driver", "b_net0_driver", "b_console0_driver"]])
        XCTAssertNotNil(description.timer)
        XCTAssertEqual(description.validationErrors(), [])
    }

    func testValidationSpansPartitions() {
        var system = SystemBuilder.microkitSystem(twoVMs)
        XCTAssertEqual(system.validationErrors(), [])
        // Two VMs named alike would give two PDs one name.
        system.partitions[1].vmmName = "a_vmm"
        system.partitions[1].guestRAM.region.physAddr = 0x4800_0000
        let errors = system.validationErrors()
        XCTAssertTrue(errors.contains("protection_domain 'a_vmm': name is used by 2 protection domains"), "\(errors)")
        XCTAssertTrue(errors.contains("memory_region 'b_guest_ram': phys_addr range [0x48000000..0x58000000) overlaps"
                                      + " memory_region 'a_guest_ram' at [0x40000000..0x50000000)"), "\(errors)")
        var low = SystemBuilder.microkitSystem(twoVMs)
        low.timer!.priority = 253
        XCTAssertTrue(low.validationErrors().contains(
            "protection_domain 'timer': priority 253 is not above the priority 253 of protection_domain 'a_vmm', which calls it"))
    }
}
