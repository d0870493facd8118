// Pinning a VM's vCPUs to board CPUs (native platform): the `cpus` key and its rules, the default
// assignment of the VMs without it (the lowest board CPUs no VM pins, in file order), QEMU's -smp
// (the highest CPU in use + 1), the summary line, and the seventh u64 of each VM in guest_images.S
// that carries the assignment to the VMM.

import Foundation
import XCTest
@testable import VMMCore
@testable import VMMHost

final class CPUPinningTests: ConfigurationTestCase {
    /// A `[[vm]]` table with the fixture guest (writeGuest) and 128M of RAM, `vcpus` and `cpus` as given.
    func vm(_ name: String, vcpus: Int? = nil, cpus: String? = nil) -> String {
        "[[vm]]\nname = \"\(name)\"\nkernel = \"Image\"\ninitrd = \"initrd.img\"\nram = \"128M\"\n"
            + (vcpus.map { "vcpus = \($0)\n" } ?? "") + (cpus.map { "cpus = \($0)\n" } ?? "")
    }

    /// QEMU's -smp for the system.
    func smp(_ system: SystemConfiguration) -> String? {
        let arguments = SystemBuilder.qemuArguments(system, image: URL(fileURLWithPath: "/out/vmm.elf"),
                                                    output: URL(fileURLWithPath: "/out"))
        return zip(arguments, arguments.dropFirst()).first { $0.0 == "-smp" }?.1
    }

    // MARK: The key and its rules

    func testCPUsPinEachVCPUInOrder() throws {
        try writeGuest()
        let system = try parse(vm("a", vcpus: 2, cpus: "[3, 2]"))
        XCTAssertEqual(system.vms[0].cpus, [3, 2])
        XCTAssertEqual(system.boardCPUs, [[3, 2]])
        XCTAssertEqual(smp(system), "4")
        // Without the key the model has none, and the VM takes the lowest board CPUs.
        let plain = try parse(vm("a", vcpus: 2))
        XCTAssertNil(plain.vms[0].cpus)
        XCTAssertEqual(plain.boardCPUs, [[0, 1]])
        // Every board CPU of GICv2's 8, in any order.
        XCTAssertEqual(try parse(vm("a", vcpus: 8, cpus: "[7, 6, 5, 4, 3, 2, 1, 0]")).boardCPUs, [[7, 6, 5, 4, 3, 2, 1, 0]])
    }

    func testCPUsAreAnArrayOfBoardCPUsFrom0To7() throws {
        try writeGuest()
        XCTAssertEqual(errors(vm("a", cpus: "2")), ["system.toml: vm[0].cpus: expected an array of integers, found an integer"])
        XCTAssertEqual(errors(vm("a", vcpus: 2, cpus: "[1, \"2\"]")), [
            "system.toml: vm[0].cpus[1]: expected an integer, found a string",
        ])
        XCTAssertEqual(errors(vm("a", vcpus: 3, cpus: "[8, 1, -1]")), [
            "system.toml: vm[0].cpus[0]: expected a board CPU from 0 to 7 (GICv2 serves at most 8 CPUs), found 8",
            "system.toml: vm[0].cpus[2]: expected a board CPU from 0 to 7 (GICv2 serves at most 8 CPUs), found -1",
        ])
        // A misspelt key is caught like any other.
        XCTAssertEqual(errors(vm("a") + "cpu = [1]\n"), ["system.toml: vm[0].cpu: unknown key 'cpu' (did you mean 'cpus'?)"])
    }

    func testCPUsNameOneBoardCPUForEachVCPU() throws {
        try writeGuest()
        XCTAssertEqual(errors(vm("a", vcpus: 2, cpus: "[1]")), [
            "system.toml: vm[0].cpus: `cpus` names 1 CPU, the VM has 2 vCPUs (expected one board CPU for each vCPU)",
        ])
        // The default of 1 vCPU counts too: `cpus` does not set `vcpus`.
        XCTAssertEqual(errors(vm("a", cpus: "[1, 2]")), [
            "system.toml: vm[0].cpus: `cpus` names 2 CPUs, the VM has 1 vCPU (expected one board CPU for each vCPU)",
        ])
        XCTAssertEqual(errors(vm("a", cpus: "[]")), [
            "system.toml: vm[0].cpus: `cpus` names 0 CPUs, the VM has 1 vCPU (expected one board CPU for each vCPU)",
        ])
        // A wrong `vcpus` is reported once, at its own key.
        XCTAssertEqual(errors(vm("a", vcpus: 9, cpus: "[0]")), [
            "system.toml: vm[0].vcpus: expected 1 to 8 (GICv2 serves at most 8 CPUs), found 9",
        ])
    }

    func testEachBoardCPURunsOneVCPU() throws {
        try writeGuest()
        // Twice in one VM: the first vCPU has it.
        XCTAssertEqual(errors(vm("a", vcpus: 2, cpus: "[2, 2]")), [
            "system.toml: vm[0].cpus: CPU 2 is already vm[0]'s (vCPU 0); each board CPU runs one vCPU",
        ])
        // In two VMs: reported at the later VM, naming the VM and vCPU that have it.
        XCTAssertEqual(errors(vm("a", vcpus: 2, cpus: "[0, 2]") + vm("b", vcpus: 2, cpus: "[3, 2]")), [
            "system.toml: vm[1].cpus: CPU 2 is already vm[0]'s (vCPU 1); each board CPU runs one vCPU",
        ])
        XCTAssertEqual(errors(vm("a", cpus: "[4]") + vm("b") + vm("c", vcpus: 2, cpus: "[4, 0]")), [
            "system.toml: vm[2].cpus: CPU 4 is already vm[0]'s (vCPU 0); each board CPU runs one vCPU",
        ])
        // Every CPU taken twice is named.
        XCTAssertEqual(errors(vm("a", vcpus: 2, cpus: "[0, 1]") + vm("b", vcpus: 2, cpus: "[1, 0]")), [
            "system.toml: vm[1].cpus: CPU 1 is already vm[0]'s (vCPU 1); each board CPU runs one vCPU",
            "system.toml: vm[1].cpus: CPU 0 is already vm[0]'s (vCPU 0); each board CPU runs one vCPU",
        ])
        // A VM without `cpus` never collides with a pinned one: it takes the CPUs left.
        XCTAssertEqual(errors(vm("a", vcpus: 2) + vm("b", vcpus: 2, cpus: "[0, 1]")), [])
    }

    func testPinningNeedsTheNativePlatform() throws {
        try writeGuest()
        XCTAssertEqual(errors("[system]\nplatform = \"microkit\"\n" + vm("a", cpus: "[0]")), [
            "system.toml: vm[0].cpus: vCPU pinning needs the native platform",
        ])
        XCTAssertEqual(errors("[system]\nplatform = \"microkit\"\n" + vm("a", vcpus: 2, cpus: "[0, 1]")), [
            "system.toml: vm[0].cpus: vCPU pinning needs the native platform",
        ])
    }

    // MARK: The assignment and the board's CPUs

    func testVMsWithoutCPUsTakeTheLowestBoardCPUsNoVMPinsInFileOrder() throws {
        try writeGuest()
        // a pins 1 and 3; b takes 0 and 2, the lowest left. QEMU starts CPUs 0 to 3.
        let mixed = try parse(vm("a", vcpus: 2, cpus: "[1, 3]") + vm("b", vcpus: 2))
        XCTAssertEqual(mixed.boardCPUs, [[1, 3], [0, 2]])
        XCTAssertEqual(smp(mixed), "4")
        // A pin later in the file is kept free for its VM.
        let later = try parse(vm("a") + vm("b", cpus: "[0]") + vm("c", vcpus: 2) + vm("d", vcpus: 2, cpus: "[3, 4]"))
        XCTAssertEqual(later.boardCPUs, [[1], [0], [2, 5], [3, 4]])
        XCTAssertEqual(smp(later), "6")
        // A gap: QEMU starts CPUs 0 to 5, and 0 to 4 run nothing.
        let gap = try parse(vm("a", cpus: "[5]"))
        XCTAssertEqual(gap.boardCPUs, [[5]])
        XCTAssertEqual(smp(gap), "6")
        // Without `cpus`, as before: VM 0 on CPUs 0..<vcpus, the next VM on the next ones; -smp the sum.
        let plain = try parse(vm("a", vcpus: 2) + vm("b", vcpus: 3) + vm("c"))
        XCTAssertEqual(plain.boardCPUs, [[0, 1], [2, 3, 4], [5]])
        XCTAssertEqual(smp(plain), "6")
    }

    func testTheBoardsEightCPUsAreAllThereIsWithPinsToo() throws {
        try writeGuest()
        XCTAssertEqual(errors(vm("a", cpus: "[7]") + vm("b", vcpus: 7)), [])
        XCTAssertEqual(try parse(vm("a", cpus: "[7]") + vm("b", vcpus: 7)).boardCPUs, [[7], [0, 1, 2, 3, 4, 5, 6]])
        // Reported at the VM that would run a vCPU past CPU 7 (a VM without `cpus`), with the total.
        XCTAssertEqual(errors(vm("a", vcpus: 7, cpus: "[0, 1, 2, 3, 4, 5, 6]") + vm("b", vcpus: 2)), [
            "system.toml: vm[1].vcpus: vCPUs of all VMs add up to 9 (this VM's would run on CPUs 7-8, the lowest no VM "
                + "pins); the board has at most 8 CPUs (GICv2)",
        ])
        XCTAssertEqual(errors(vm("a", vcpus: 8) + vm("b", cpus: "[0]")), [
            "system.toml: vm[0].vcpus: vCPUs of all VMs add up to 9 (this VM's would run on CPUs 1-8, the lowest no VM "
                + "pins); the board has at most 8 CPUs (GICv2)",
        ])
        // Without `cpus` the message is the one it has always been.
        XCTAssertEqual(errors(vm("a", vcpus: 4) + vm("b", vcpus: 4) + vm("c")), [
            "system.toml: vm[2].vcpus: vCPUs of all VMs add up to 9; the board has at most 8 CPUs (GICv2)",
        ])
        // A VM whose `cpus` is wrong is reported once, and not counted.
        XCTAssertEqual(errors(vm("a", vcpus: 8) + vm("b", cpus: "[9]")), [
            "system.toml: vm[1].cpus[0]: expected a board CPU from 0 to 7 (GICv2 serves at most 8 CPUs), found 9",
        ])
    }

    // MARK: What the tool says, and what the VMM gets

    func testTheSummaryNamesEachVMsBoardCPUsWhenTheFilePinsAny() throws {
        try writeGuest()
        XCTAssertEqual(try parse(vm("a", vcpus: 2, cpus: "[1, 3]") + vm("b", vcpus: 2) + vm("c")).summary(file: "s.toml"), [
            "s.toml: ok — vm 'a': 128 MiB at 0x40000000, 2 vCPUs on CPUs 1, 3, platform native",
            "s.toml: ok — vm 'b': 128 MiB at 0x40000000, 2 vCPUs on CPUs 0, 2, platform native",
            "s.toml: ok — vm 'c': 128 MiB at 0x40000000, 1 vCPU on CPU 4, platform native",
        ])
        // Without `cpus` the board CPUs follow from the file order, and the line is as it was.
        XCTAssertEqual(try parse(vm("a", vcpus: 2) + vm("b")).summary(file: "s.toml"), [
            "s.toml: ok — vm 'a': 128 MiB at 0x40000000, 2 vCPUs, platform native",
            "s.toml: ok — vm 'b': 128 MiB at 0x40000000, 1 vCPU, platform native",
        ])
        XCTAssertEqual(SystemConfiguration.cpuList([2, 3]), "CPUs 2-3")
        XCTAssertEqual(SystemConfiguration.cpuList([0, 2]), "CPUs 0, 2")
        XCTAssertEqual(SystemConfiguration.cpuList([5]), "CPU 5")
        XCTAssertEqual(SystemConfiguration.cpuList([3, 2]), "CPUs 3, 2")
        XCTAssertEqual(SystemConfiguration.cpuList([0, 1, 2, 5, 6, 4]), "CPUs 0-2, 5-6, 4")
    }

    func testEachVMsBoardCPUsAreBytesEndedBy255() throws {
        XCTAssertEqual(try SystemBuilder.cpuBytes([0, 1], for: "vm[0]"), "0, 1, 255")
        XCTAssertEqual(try SystemBuilder.cpuBytes([2], for: "vm[0]"), "2, 255")
        XCTAssertEqual(try SystemBuilder.cpuBytes([7, 6, 5, 4, 3, 2, 1, 0], for: "vm[0]"), "7, 6, 5, 4, 3, 2, 1, 0, 255")
        XCTAssertEqual(try SystemBuilder.cpuBytes(Array(0..<32), for: "vm[0]"),
                       (Array(0..<32) + [255]).map(String.init).joined(separator: ", "), "GICv3: up to 32")
        for bad in [[], [32], Array(0..<33), [-1]] {
            XCTAssertThrowsError(try SystemBuilder.cpuBytes(bad, for: "vm[1]"), "\(bad)") {
                XCTAssertEqual(($0 as? BuildError)?.message, "vm[1]: board CPUs \(bad) are not 1 to 32 CPUs from 0 to 31")
            }
        }
    }

    /// `vmm build` of a two-VM system up to the assembler: the guest_images.S it writes (the build
    /// then stops, as this toolchain directory has no clang).
    func builtAssembly(_ text: String) throws -> String {
        try writeGuest()
        let system = try parse(text)
        let output = URL(fileURLWithPath: directory).appendingPathComponent("out")
        let environment = BuildEnvironment(repository: URL(fileURLWithPath: directory),
                                           toolchain: URL(fileURLWithPath: directory).appendingPathComponent("no-toolchain"),
                                           output: output, microkitSDK: nil)
        XCTAssertThrowsError(try SystemBuilder.build(system, in: environment)) {
            XCTAssertTrue(($0 as? BuildError)?.message.hasPrefix("cannot run ") ?? false, "\($0)")
        }
        return try String(contentsOf: output.appendingPathComponent("guest_images.S"), encoding: .utf8)
    }

    func testBuildPutsEachVMsBoardCPUsInTheTable() throws {
        func table(_ text: String) -> [String] {
            let lines = text.split(separator: "\n")
            return lines.indices.filter { lines[$0].hasSuffix("_cpus:") }.map { String(lines[$0 + 1].dropFirst(10)) }
        }
        // Without `cpus`: a on CPUs 0 and 1, b on 2.
        XCTAssertEqual(table(try builtAssembly(vm("a", vcpus: 2) + vm("b"))), ["0, 1, 255", "2, 255"])
        // a pinned to 1 and 3, b on the lowest left: 0 and 2.
        XCTAssertEqual(table(try builtAssembly(vm("a", vcpus: 2, cpus: "[1, 3]") + vm("b", vcpus: 2))),
                       ["1, 3, 255", "0, 2, 255"])
        let text = try builtAssembly(vm("a", vcpus: 2) + vm("b", cpus: "[6]"))
        XCTAssertTrue(text.contains("""
            guest_table:
                .quad 2
                .quad vm0_kernel_start, vm0_kernel_end, vm0_initrd_start, vm0_initrd_end, vm0_config_start, vm0_config_end, vm0_cpus, vm0_seed_start, vm0_seed_end
                .quad vm1_kernel_start, vm1_kernel_end, vm1_initrd_start, vm1_initrd_end, vm1_config_start, vm1_config_end, vm1_cpus, vm1_seed_start, vm1_seed_end
            vm0_cpus:
                .byte 0, 1, 255
            vm0_seed_start:
            """), text)
        XCTAssertTrue(text.contains("vm1_cpus:\n    .byte 6, 255\nvm1_seed_start:\n"), text)
    }
}
