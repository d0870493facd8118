// What `vmm build` and `vmm run` derive from a system file: the guest configuration blob, the
// guest's device tree (decoded with dtc, as a user would inspect it) and QEMU's command line.
import Foundation
import XCTest
@testable import VMMCore
@testable import VMMHost

final class SystemBuilderTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // A 64 KiB disk: capacity 128 sectors in the device tree is not asked; the file is.
        FileManager.default.createFile(atPath: directory.appendingPathComponent("disk.img").path,
                                       contents: Data(count: 64 << 10))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func fullVM() -> VMConfiguration {
        var vm = VMConfiguration(name: "linux", kernel: "/k")
        vm.ramSize = 256 << 20
        vm.cmdline = "console=ttyAMA0 quiet"
        vm.blocks = [.init(file: directory.appendingPathComponent("disk.img").path, size: nil, readOnly: true)]
        vm.networks = [.init(mac: [0x52, 0x54, 0, 1, 2, 3], forwards: [.init(protocol: .tcp, host: 8080, guest: 80)])]
        vm.consoles = [.init(socket: "/tmp/hvc0.sock")]
        return vm
    }

    func testGuestConfigurationListsDevicesInBlockNetworkConsoleOrder() throws {
        let configuration = SystemBuilder.guestConfiguration(fullVM())
        XCTAssertEqual(configuration.ramSize, 256 << 20)
        XCTAssertEqual(configuration.bootargs, Array("console=ttyAMA0 quiet".utf8))
        XCTAssertEqual(configuration.devices, [.block(readOnly: true), .network(mac: [0x52, 0x54, 0, 1, 2, 3]), .console])
        let decoded = try configuration.encoded().withUnsafeBytes { bytes throws(GuestConfigurationError) in
            try GuestConfiguration(decoding: bytes)
        }
        XCTAssertEqual(decoded, configuration)
    }

    func testDeviceTreeHoldsTheMemoryDevicesAndInterruptsTheFileAskedFor() throws {
        let dtb = SystemBuilder.deviceTree(fullVM(), initrdRange: nil)
        let path = directory.appendingPathComponent("guest.dtb")
        try Data(dtb).write(to: path)
        let dtc = Process()
        dtc.executableURL = URL(fileURLWithPath: "/usr/bin/dtc")
        dtc.arguments = ["-I", "dtb", "-O", "dts", path.path]
        let output = Pipe()
        dtc.standardOutput = output
        dtc.standardError = Pipe()
        try dtc.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        dtc.waitUntilExit()
        XCTAssertEqual(dtc.terminationStatus, 0, "install device-tree-compiler")
        XCTAssertTrue(text.contains("memory@40000000"))
        XCTAssertTrue(text.contains("reg = <0x00 0x40000000 0x00 0x10000000>"), text)
        XCTAssertTrue(text.contains("bootargs = \"console=ttyAMA0 quiet\""))
        // Slot n at 0x0a000000 + 0x200 n with SPI 16 + n, edge-triggered: disk, network, console.
        for (n, address) in ["a000000", "a000200", "a000400"].enumerated() {
            XCTAssertTrue(text.contains("virtio_mmio@\(address)"), text)
            XCTAssertTrue(text.contains("interrupts = <0x00 0x\(String(16 + n, radix: 16)) 0x01>"), text)
        }
        XCTAssertFalse(text.contains("virtio_mmio@a000600"))
    }

    func testQEMUCommandLineGivesTheBoardOneDeviceForEachGuestDevice() {
        let system = SystemConfiguration(vms: [fullVM()])
        let arguments = SystemBuilder.qemuArguments(system, image: URL(fileURLWithPath: "/b/vmm.elf"))
        let line = arguments.joined(separator: " ")
        XCTAssertTrue(line.hasPrefix("-machine virt,virtualization=on,gic-version=2 -cpu cortex-a53 -nographic -m 1G"))
        XCTAssertTrue(line.contains("-global virtio-mmio.force-legacy=false"))
        XCTAssertTrue(line.contains("-drive file=\(directory.appendingPathComponent("disk.img").path),if=none,format=raw,id=disk0,readonly=on -device virtio-blk-device,drive=disk0"))
        XCTAssertTrue(line.contains("-netdev user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80 -device virtio-net-device,netdev=net0,mac=52:54:00:01:02:03"))
        XCTAssertTrue(line.contains("-chardev socket,id=console0,path=/tmp/hvc0.sock,server=on,wait=off -device virtconsole,chardev=console0"))
        XCTAssertTrue(line.hasSuffix("-kernel /b/vmm.elf"))
    }

    func testMicrokitSystemsBootTheLoaderImage() {
        var system = SystemConfiguration(vms: [VMConfiguration(name: "linux", kernel: "/k")])
        system.platform = .microkit
        let arguments = SystemBuilder.qemuArguments(system, image: URL(fileURLWithPath: "/b/loader.img"))
        XCTAssertEqual(Array(arguments.suffix(2)), ["-device", "loader,file=/b/loader.img,addr=0x70000000,cpu-num=0"])
        XCTAssertTrue(arguments.contains("size=2G"))
        XCTAssertFalse(arguments.contains("-global"), "no devices, no virtio transport settings")
    }

    func testDisksWithASizeAreCreatedAndOthersMustExist() throws {
        var vm = VMConfiguration(name: "linux", kernel: "/k")
        let created = directory.appendingPathComponent("new/disk.img").path
        vm.blocks = [.init(file: created, size: 1 << 20, readOnly: false)]
        XCTAssertEqual(try SystemBuilder.createDisks(vm).map(\.path), [created])
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: created)[.size] as? Int, 1 << 20)
        vm.blocks = [.init(file: directory.appendingPathComponent("absent.img").path, size: nil, readOnly: false)]
        XCTAssertThrowsError(try SystemBuilder.createDisks(vm))
    }
}

final class UnsupportedFeatureTests: XCTestCase {
    func testPassthroughAndMicrokitVirtioDevicesAreRefusedByName() {
        var vm = VMConfiguration(name: "linux", kernel: "/k")
        vm.passthrough = [.init(name: "rtc", address: 0x0901_0000, size: 0x1000, irq: 34)]
        vm.blocks = [.init(file: "/d", size: nil, readOnly: false)]
        var system = SystemConfiguration(vms: [vm])
        XCTAssertEqual(system.unsupportedFeatures(file: "s.toml").map(\.description),
                       ["s.toml: vm[0].passthrough: passing a board device through is not supported on the native platform yet"])
        system.platform = .microkit
        XCTAssertEqual(system.unsupportedFeatures(file: "s.toml").map(\.description), [
            "s.toml: vm[0].passthrough: passing a board device through is not supported on the microkit platform yet",
            "s.toml: vm[0].block: virtio devices on the microkit platform need driver protection domains, not supported yet"])
        XCTAssertEqual(SystemConfiguration(vms: [VMConfiguration(name: "linux", kernel: "/k")]).unsupportedFeatures(file: "s"), [])
    }
}
