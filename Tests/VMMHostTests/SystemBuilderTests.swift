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

    func testAGICv3VMGetsAVersion3BlobAndAGICv3DeviceTree() throws {
        var vm = fullVM()
        vm.vcpus = 20
        let configuration = SystemBuilder.guestConfiguration(vm, gic: .v3)
        XCTAssertEqual(configuration.gicVersion, .v3)
        let blob = configuration.encoded()
        XCTAssertEqual(blob[4], 3, "blob version 3")
        let decoded = try blob.withUnsafeBytes { bytes throws(GuestConfigurationError) in try GuestConfiguration(decoding: bytes) }
        XCTAssertEqual(decoded, configuration)
        let text = try decompile(SystemBuilder.deviceTree(vm, initrdRange: nil, gic: .v3))
        XCTAssertTrue(text.contains("compatible = \"arm,gic-v3\""), text)
        XCTAssertTrue(text.contains("cpu@103"), text)
        XCTAssertEqual(SystemBuilder.guestConfiguration(fullVM()).encoded()[4], 2, "a GICv2 VM's blob stays version 2")
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
        let arguments = SystemBuilder.qemuArguments(system, image: URL(fileURLWithPath: "/b/vmm.elf"), output: URL(fileURLWithPath: "/b"))
        let line = arguments.joined(separator: " ")
        XCTAssertTrue(line.hasPrefix("-machine virt,virtualization=on,gic-version=2 -cpu cortex-a53 -nographic -m 1G -smp 1 "))
        var onMax = system
        onMax.cpu = .max
        XCTAssertEqual(Array(SystemBuilder.qemuArguments(onMax, image: URL(fileURLWithPath: "/b/vmm.elf"),
                                                         output: URL(fileURLWithPath: "/b"))[2...3]),
                       ["-cpu", "max,pauth-impdef=on"], "QEMU's own PAC algorithm: the architected one is slow under TCG")
        onMax.cpu = .neoverseN1
        XCTAssertEqual(SystemBuilder.qemuArguments(onMax, image: URL(fileURLWithPath: "/b/vmm.elf"),
                                                   output: URL(fileURLWithPath: "/b"))[3], "neoverse-n1")
        XCTAssertTrue(line.contains("-global virtio-mmio.force-legacy=false"))
        XCTAssertTrue(line.contains("-drive file=\(directory.appendingPathComponent("disk.img").path),if=none,format=raw,id=disk0,readonly=on -device virtio-blk-device,drive=disk0"))
        XCTAssertTrue(line.contains("-netdev user,id=net0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:8080-:80 -device virtio-net-device,netdev=net0,mac=52:54:00:01:02:03"))
        XCTAssertTrue(line.contains("-device virtio-serial-device,id=serial0 -chardev socket,id=console0,path=/tmp/hvc0.sock,server=on,wait=off -device virtconsole,chardev=console0,bus=serial0.0"))
        XCTAssertTrue(line.hasSuffix("-kernel /b/vmm.elf"))
    }

    func testNativeBoardHasOneCPUForEachVCPU() {
        var vm = VMConfiguration(name: "linux", kernel: "/k")
        vm.vcpus = 4
        let arguments = SystemBuilder.qemuArguments(SystemConfiguration(vms: [vm]), image: URL(fileURLWithPath: "/b/vmm.elf"), output: URL(fileURLWithPath: "/b"))
        XCTAssertEqual(zip(arguments, arguments.dropFirst()).filter { $0.0 == "-smp" }.map(\.1), ["4"])
        vm.vcpus = 8
        XCTAssertTrue(SystemBuilder.qemuArguments(SystemConfiguration(vms: [vm]), image: URL(fileURLWithPath: "/b/vmm.elf"), output: URL(fileURLWithPath: "/b"))
            .joined(separator: " ").contains(" -m 1G -smp 8 "))
    }

    /// The `-device` values of a command line, in order.
    func devices(_ arguments: [String]) -> [String] {
        zip(arguments, arguments.dropFirst()).filter { $0.0 == "-device" }.map(\.1)
    }

    /// The value of `key` in a QEMU option string such as "virtconsole,chardev=console1,bus=serial1.0".
    func option(_ key: String, in value: String) -> String? {
        value.split(separator: ",").first { $0.hasPrefix("\(key)=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    func assertOneSerialDevicePerConsole(count: Int, file: StaticString = #filePath, line: UInt = #line) {
        var vm = VMConfiguration(name: "linux", kernel: "/k")
        vm.consoles = (0..<count).map { .init(socket: "/tmp/hvc\($0).sock") }
        let arguments = SystemBuilder.qemuArguments(SystemConfiguration(vms: [vm]), image: URL(fileURLWithPath: "/b/vmm.elf"), output: URL(fileURLWithPath: "/b"))
        let all = devices(arguments)
        let serials = all.filter { $0.hasPrefix("virtio-serial-device") }
        let consoles = all.filter { $0.hasPrefix("virtconsole") }
        XCTAssertEqual(serials.count, count, "one virtio-serial-device per console", file: file, line: line)
        XCTAssertEqual(consoles.count, count, file: file, line: line)
        // Board devices pair with guest devices in command-line order, so serial device n must carry
        // console n on its own bus: "<id of serial n>.0", a bus no other console is on.
        let serialIDs = serials.map { option("id", in: $0) }
        XCTAssertEqual(Set(serialIDs.compactMap { $0 }).count, count, "each serial device has its own id", file: file, line: line)
        for n in 0..<count {
            XCTAssertEqual(option("chardev", in: consoles[n]), "console\(n)", file: file, line: line)
            XCTAssertEqual(option("bus", in: consoles[n]), serialIDs[n].map { "\($0).0" }, "console \(n)'s bus",
                           file: file, line: line)
        }
        // Each serial device comes before its console, and after the previous console (QEMU needs the
        // bus to exist; the VMM pairs in that order).
        let order = all.filter { $0.hasPrefix("virtio-serial-device") || $0.hasPrefix("virtconsole") }
        XCTAssertEqual(order.map { $0.hasPrefix("virtconsole") }, (0..<2 * count).map { $0 % 2 == 1 }, file: file, line: line)
        for n in 0..<count {
            XCTAssertTrue(arguments.contains("socket,id=console\(n),path=/tmp/hvc\(n).sock,server=on,wait=off"), file: file, line: line)
        }
    }

    func testTwoConsolesGetOneSerialDeviceEachWithTheConsoleOnItsOwnBus() {
        assertOneSerialDevicePerConsole(count: 2)
    }

    func testFourConsolesGetOneSerialDeviceEachWithTheConsoleOnItsOwnBus() {
        assertOneSerialDevicePerConsole(count: 4)
    }

    func testEachNetworkIsItsOwnUserNetworkOnItsOwnSubnet() {
        var vm = VMConfiguration(name: "linux", kernel: "/k")
        vm.networks = (0..<4).map { n in
            .init(mac: [0x52, 0x54, 0, 0x12, 0x34, UInt8(0x56 + n)],
                  forwards: [.init(protocol: .tcp, host: UInt16(8080 + n), guest: 80)])
        }
        let arguments = SystemBuilder.qemuArguments(SystemConfiguration(vms: [vm]), image: URL(fileURLWithPath: "/b/vmm.elf"), output: URL(fileURLWithPath: "/b"))
        let netdevs = zip(arguments, arguments.dropFirst()).filter { $0.0 == "-netdev" }.map(\.1)
        XCTAssertEqual(netdevs, [
            "user,id=net0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:8080-:80",
            "user,id=net1,net=10.0.3.0/24,hostfwd=tcp:127.0.0.1:8081-:80",
            "user,id=net2,net=10.0.4.0/24,hostfwd=tcp:127.0.0.1:8082-:80",
            "user,id=net3,net=10.0.5.0/24,hostfwd=tcp:127.0.0.1:8083-:80",
        ])
        XCTAssertEqual(devices(arguments), (0..<4).map { "virtio-net-device,netdev=net\($0),mac=52:54:00:12:34:5\(6 + $0)" })
    }

    func testMicrokitSystemsBootTheLoaderImage() {
        var system = SystemConfiguration(vms: [VMConfiguration(name: "linux", kernel: "/k")])
        system.platform = .microkit
        let arguments = SystemBuilder.qemuArguments(system, image: URL(fileURLWithPath: "/b/loader.img"), output: URL(fileURLWithPath: "/b"))
        XCTAssertEqual(Array(arguments.suffix(2)), ["-device", "loader,file=/b/loader.img,addr=0x70000000,cpu-num=0"])
        XCTAssertTrue(arguments.contains("size=2G"))
        XCTAssertFalse(arguments.contains("-global"), "no devices, no virtio transport settings")
        XCTAssertFalse(arguments.contains("-smp"), "the microkit board keeps QEMU's default of one CPU")
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
    func testPassthroughNeedsCompatibleStringsAndMicrokitTakesVirtioDevices() {
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
        system.vms[0].networks = [.init(mac: VMConfiguration.NetworkDevice.defaultMAC(index: 0))]
        system.vms[0].consoles = [.init(socket: "/c.sock")]
        XCTAssertEqual(system.unsupportedFeatures(file: "s.toml"), [], "virtio devices get driver protection domains")
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
