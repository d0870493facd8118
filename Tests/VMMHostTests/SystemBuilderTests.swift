// What `vmm build` and `vmm run` derive from a system file: the guest configuration blob, the
// guest's device tree (decoded with dtc, as a user would inspect it) and QEMU's command line.
import Foundation
import XCTest
@testable import VMMCore
@testable import VMMHost

/// The device tree as dtc prints it (Debian's device-tree-compiler).
func decompile(_ dtb: [UInt8]) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("pt-\(UUID().uuidString).dtb")
    try Data(dtb).write(to: path)
    defer { try? FileManager.default.removeItem(at: path) }
    let dtc = Process()
    dtc.executableURL = URL(fileURLWithPath: "/usr/bin/dtc")
    dtc.arguments = ["-I", "dtb", "-O", "dts", path.path]
    let output = Pipe()
    dtc.standardOutput = output
    dtc.standardError = Pipe()
    try dtc.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    dtc.waitUntilExit()
    return text
}

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
        let text = try decompile(SystemBuilder.deviceTree(fullVM(), initrdRange: nil))
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
    func testPassthroughNeedsCompatibleStringsAndMicrokitVirtioDevicesAreRefusedByName() {
        var vm = VMConfiguration(name: "linux", kernel: "/k")
        vm.passthrough = [.init(name: "rtc", address: 0x0901_0000, size: 0x1000, irq: 34)]
        vm.blocks = [.init(file: "/d", size: nil, readOnly: false)]
        var system = SystemConfiguration(vms: [vm])
        let missing = "s.toml: vm[0].passthrough[0].compatible: required key is missing (expected the device-tree "
            + "compatible strings of the device, e.g. [\"arm,pl031\", \"arm,primecell\"])"
        XCTAssertEqual(system.unsupportedFeatures(file: "s.toml").map(\.description), [missing])
        system.vms[0].passthrough[0].compatible = ["arm,pl031", "arm,primecell"]
        XCTAssertEqual(system.unsupportedFeatures(file: "s.toml"), [])
        system.platform = .microkit
        XCTAssertEqual(system.unsupportedFeatures(file: "s.toml").map(\.description), [
            "s.toml: vm[0].block: virtio devices on the microkit platform need driver protection domains, not supported yet"])
        XCTAssertEqual(SystemConfiguration(vms: [VMConfiguration(name: "linux", kernel: "/k")]).unsupportedFeatures(file: "s"), [])
    }
}

final class PassthroughConfigurationTests: XCTestCase {
    func testPassthroughCompatibleStringsReachTheBlobAndTheDeviceTree() throws {
        var vm = VMConfiguration(name: "linux", kernel: "/k")
        vm.passthrough = [.init(name: "rtc", address: 0x0901_0000, size: 0x1000, irq: 34, compatible: ["arm,pl031", "arm,primecell"])]
        let configuration = SystemBuilder.guestConfiguration(vm)
        XCTAssertEqual(configuration.passthrough, [PassthroughDevice(name: Array("rtc".utf8), address: 0x0901_0000, size: 0x1000,
                                                                     interrupt: 34, compatible: [Array("arm,pl031".utf8), Array("arm,primecell".utf8)])])
        XCTAssertNoThrow(try configuration.validate())
        let dts = try decompile(SystemBuilder.deviceTree(vm, initrdRange: nil))
        XCTAssertTrue(dts.contains("rtc@9010000 {"), dts)
        XCTAssertTrue(dts.contains("compatible = \"arm,pl031\\0arm,primecell\";"), dts)
        XCTAssertTrue(dts.contains("interrupts = <0x00 0x02 0x04>;"), dts)
        XCTAssertTrue(dts.contains("clock-names = \"apb_pclk\";"), dts)
    }

    func testCompatibleIsReadFromTheSystemFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var header = [UInt8](repeating: 0, count: 64)
        header[56] = 0x41; header[57] = 0x52; header[58] = 0x4d; header[59] = 0x64     // "ARM\x64"
        header[16] = 0x00; header[18] = 0x10                                           // image_size 1 MiB
        FileManager.default.createFile(atPath: directory.appendingPathComponent("Image").path, contents: Data(header))
        let system = try SystemConfiguration.parse(text: """
            [[vm]]
            kernel = "Image"
            [[vm.passthrough]]
            name = "rtc"
            address = 0x09010000
            size = 0x1000
            irq = 34
            compatible = ["arm,pl031", "arm,primecell"]
            """, file: "s.toml", baseDirectory: directory.path)
        XCTAssertEqual(system.vms[0].passthrough[0].compatible, ["arm,pl031", "arm,primecell"])
        XCTAssertEqual(system.unsupportedFeatures(file: "s.toml"), [])
    }

}
