import Foundation
import XCTest
@testable import VMMCore

/// Decodes DTBs with the real device-tree compiler, so the tests check our blobs against an
/// independent reader rather than against our own idea of the format.
enum DeviceTreeCompiler {
    static let path = "/usr/bin/dtc"

    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "dtc not found at \(DeviceTreeCompiler.path): install device-tree-compiler (apt-get install device-tree-compiler)"
        }
    }

    /// `dtc -I dtb -O dts` of `blob`. A missing dtc is a failure, never a skip.
    static func decompile(_ blob: [UInt8], file: StaticString = #filePath,
                          line: UInt = #line) throws -> (stdout: String, stderr: String) {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            XCTFail(Missing().description, file: file, line: line)
            throw Missing()
        }
        let input = FileManager.default.temporaryDirectory
            .appendingPathComponent("vmm-dtb-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString).dtb")
        try Data(blob).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-I", "dtb", "-O", "dts", input.path]
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Read before waiting: a full pipe would otherwise block dtc forever.
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "dtc failed: \(String(decoding: err, as: UTF8.self))",
                       file: file, line: line)
        return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }
}

final class GuestDeviceTreeTests: XCTestCase {
    private func twoCPUBoard() -> GuestBoardDescription {
        GuestBoardDescription(ramBase: 0x4000_0000, ramSize: 0x1000_0000, vcpuCount: 2,
                              bootargs: Array("console=ttyAMA0 earlycon".utf8),
                              initrd: (start: 0x4fb0_0000, end: 0x5000_0000))
    }

    func testTreeDecodesToTheQEMUVirtShapedSource() throws {
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(twoCPUBoard()))
        XCTAssertEqual(dts.stderr, "", "dtc warned about the tree")
        // Golden source. Timer flags 0x304: CPU mask 0b11 for 2 vCPUs in bits 15:8, level-high 4.
        // The UART's SPI 1 is INTID 33; timer PPIs 13, 14, 11, 10 are INTIDs 29, 30, 27, 26.
        XCTAssertEqual(dts.stdout, """
            /dts-v1/;

            / {
            \t#address-cells = <0x02>;
            \t#size-cells = <0x02>;
            \tcompatible = "linux,dummy-virt";
            \tmodel = "vmm virt guest";
            \tinterrupt-parent = <0x01>;

            \tchosen {
            \t\tbootargs = "console=ttyAMA0 earlycon";
            \t\tstdout-path = "/pl011@9000000";
            \t\tlinux,initrd-start = <0x00 0x4fb00000>;
            \t\tlinux,initrd-end = <0x00 0x50000000>;
            \t};

            \tmemory@40000000 {
            \t\tdevice_type = "memory";
            \t\treg = <0x00 0x40000000 0x00 0x10000000>;
            \t};

            \tcpus {
            \t\t#address-cells = <0x01>;
            \t\t#size-cells = <0x00>;

            \t\tcpu@0 {
            \t\t\tdevice_type = "cpu";
            \t\t\tcompatible = "arm,cortex-a53";
            \t\t\treg = <0x00>;
            \t\t\tenable-method = "psci";
            \t\t};

            \t\tcpu@1 {
            \t\t\tdevice_type = "cpu";
            \t\t\tcompatible = "arm,cortex-a53";
            \t\t\treg = <0x01>;
            \t\t\tenable-method = "psci";
            \t\t};
            \t};

            \tpsci {
            \t\tcompatible = "arm,psci-1.0\\0arm,psci-0.2";
            \t\tmethod = "smc";
            \t};

            \tintc@8000000 {
            \t\tcompatible = "arm,cortex-a15-gic";
            \t\t#interrupt-cells = <0x03>;
            \t\tinterrupt-controller;
            \t\t#address-cells = <0x02>;
            \t\t#size-cells = <0x02>;
            \t\treg = <0x00 0x8000000 0x00 0x10000 0x00 0x8010000 0x00 0x2000>;
            \t\tphandle = <0x01>;
            \t};

            \ttimer {
            \t\tcompatible = "arm,armv8-timer";
            \t\tinterrupts = <0x01 0x0d 0x304 0x01 0x0e 0x304 0x01 0x0b 0x304 0x01 0x0a 0x304>;
            \t\talways-on;
            \t};

            \tapb-pclk {
            \t\tcompatible = "fixed-clock";
            \t\t#clock-cells = <0x00>;
            \t\tclock-frequency = <0x16e3600>;
            \t\tclock-output-names = "clk24mhz";
            \t\tphandle = <0x02>;
            \t};

            \tpl011@9000000 {
            \t\tcompatible = "arm,pl011\\0arm,primecell";
            \t\treg = <0x00 0x9000000 0x00 0x1000>;
            \t\tinterrupts = <0x00 0x01 0x04>;
            \t\tclocks = <0x02 0x02>;
            \t\tclock-names = "uartclk\\0apb_pclk";
            \t};
            };

            """)
    }

    func testGICv3TreeHasTheGICv3NodeAndTimerFlagsWithoutACPUMask() throws {
        var board = twoCPUBoard()
        board.gicVersion = .v3
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board))
        XCTAssertEqual(dts.stderr, "", "dtc warned about the tree")
        // arm,gic-v3.yaml: GICD (64 KiB), then one redistributor region of 2 x 128 KiB; the
        // maintenance interrupt is PPI 9, level-high. The timer's flags are level-high (4) alone.
        XCTAssertTrue(dts.stdout.contains("""
            \tintc@8000000 {
            \t\tcompatible = "arm,gic-v3";
            \t\t#interrupt-cells = <0x03>;
            \t\tinterrupt-controller;
            \t\t#address-cells = <0x02>;
            \t\t#size-cells = <0x02>;
            \t\t#redistributor-regions = <0x01>;
            \t\treg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x40000>;
            \t\tinterrupts = <0x01 0x09 0x04>;
            \t\tphandle = <0x01>;
            \t};

            \ttimer {
            \t\tcompatible = "arm,armv8-timer";
            \t\tinterrupts = <0x01 0x0d 0x04 0x01 0x0e 0x04 0x01 0x0b 0x04 0x01 0x0a 0x04>;
            """), dts.stdout)
        XCTAssertFalse(dts.stdout.contains("0x8010000"), "no GICv2 CPU interface")
    }

    func testGICv3TreeNamesCPUsByAffinityPastSixteen() throws {
        var board = twoCPUBoard()
        board.gicVersion = .v3
        board.vcpuCount = 64
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board))
        XCTAssertEqual(dts.stderr, "", "dtc warned about the tree")
        // vCPU 15: Aff0 15; vCPU 16: Aff1 1, Aff0 0; vCPU 63: Aff1 3, Aff0 15 (MPIDRAffinity).
        XCTAssertTrue(dts.stdout.contains("\t\tcpu@f {\n\t\t\tdevice_type = \"cpu\";\n\t\t\tcompatible = \"arm,cortex-a53\";\n\t\t\treg = <0x0f>;"),
                      dts.stdout)
        XCTAssertTrue(dts.stdout.contains("\t\tcpu@100 {\n"), dts.stdout)
        XCTAssertTrue(dts.stdout.contains("reg = <0x100>;"), dts.stdout)
        XCTAssertTrue(dts.stdout.contains("reg = <0x30f>;"), dts.stdout)
        XCTAssertFalse(dts.stdout.contains("cpu@10 "), dts.stdout)
        XCTAssertTrue(dts.stdout.contains("reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x800000>;"),
                      "64 redistributors of 128 KiB")
    }

    func testWithoutInitrdChosenHasNoInitrdProperties() throws {
        var board = twoCPUBoard()
        board.initrd = nil
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board)).stdout
        XCTAssertFalse(dts.contains("linux,initrd"), dts)
        XCTAssertTrue(dts.contains("""
            \t\tbootargs = "console=ttyAMA0 earlycon";
            \t\tstdout-path = "/pl011@9000000";
            \t};
            """), dts)
    }

    func testTheSeedIsChosensRNGSeedAndNoSeedNoProperty() throws {
        var board = twoCPUBoard()
        XCTAssertFalse(try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board)).stdout.contains("rng-seed"))
        board.rngSeed = [0xde, 0xad, 0xbe, 0xef, 0x01]
        let blob = GuestDeviceTree.build(board)
        XCTAssertEqual(blob.withUnsafeBytes { GuestEntropy.boardSeed(deviceTree: $0) }, board.rngSeed)
        let dts = try DeviceTreeCompiler.decompile(blob).stdout
        XCTAssertTrue(dts.contains("rng-seed = [de ad be ef 01];"), dts)
    }

    func testTimerCPUMaskCoversEveryVCPU() throws {
        var board = twoCPUBoard()
        board.vcpuCount = 8
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board)).stdout
        // (0xff << 8) | 4 = 0xff04.
        XCTAssertTrue(dts.contains("interrupts = <0x01 0x0d 0xff04 0x01 0x0e 0xff04 0x01 0x0b 0xff04 0x01 0x0a 0xff04>;"), dts)
        XCTAssertTrue(dts.contains("\t\tcpu@7 {\n"), dts)
        XCTAssertFalse(dts.contains("cpu@8"), dts)

        board.vcpuCount = 1
        let single = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board)).stdout
        XCTAssertTrue(single.contains("interrupts = <0x01 0x0d 0x104 "), single)
        XCTAssertFalse(single.contains("cpu@1"), single)
    }

    func testNoHypervisorInterfaceIsGivenToTheGuest() throws {
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(twoCPUBoard())).stdout
        // GICH 0x08030000 and GICV 0x08040000 exist on QEMU virt but belong to the VMM;
        // the GIC maintenance interrupt (PPI 9) would be an `interrupts` property on intc.
        XCTAssertFalse(dts.contains("0x8030000"), dts)
        XCTAssertFalse(dts.contains("0x8040000"), dts)
        XCTAssertFalse(dts.contains("0x01 0x09 "), dts)
    }

    func testAppendedVirtioMMIODevicesBecomeNodesAfterTheUART() throws {
        var board = twoCPUBoard()
        board.devices = [.virtioMMIO(base: 0x0a00_0000, spi: 16), .virtioMMIO(base: 0x0a00_0200, spi: 17)]
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board))
        XCTAssertEqual(dts.stderr, "")
        XCTAssertTrue(dts.stdout.hasSuffix("""
            \t\tclock-names = "uartclk\\0apb_pclk";
            \t};

            \tvirtio_mmio@a000000 {
            \t\tcompatible = "virtio,mmio";
            \t\treg = <0x00 0xa000000 0x00 0x200>;
            \t\tinterrupts = <0x00 0x10 0x01>;
            \t\tdma-coherent;
            \t};

            \tvirtio_mmio@a000200 {
            \t\tcompatible = "virtio,mmio";
            \t\treg = <0x00 0xa000200 0x00 0x200>;
            \t\tinterrupts = <0x00 0x11 0x01>;
            \t\tdma-coherent;
            \t};
            };

            """), dts.stdout)
    }

    func testPassthroughPrimeCellGetsItsNodeWithLevelInterruptAndBusClockAfterTheVirtioDevices() throws {
        var board = twoCPUBoard()
        // QEMU virt's PL031 RTC: SPI 2 (INTID 34).
        board.devices = [.virtioMMIO(base: 0x0a00_0000, spi: 16),
                         .passthrough(name: Array("pl031".utf8), base: 0x0901_0000, size: 0x1000, spi: 2,
                                      compatible: [Array("arm,pl031".utf8), Array("arm,primecell".utf8)])]
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board))
        XCTAssertEqual(dts.stderr, "", "dtc warned about the tree")
        XCTAssertTrue(dts.stdout.hasSuffix("""
            \t\tdma-coherent;
            \t};

            \tpl031@9010000 {
            \t\tcompatible = "arm,pl031\\0arm,primecell";
            \t\treg = <0x00 0x9010000 0x00 0x1000>;
            \t\tinterrupts = <0x00 0x02 0x04>;
            \t\tclocks = <0x02>;
            \t\tclock-names = "apb_pclk";
            \t};
            };

            """), dts.stdout)
        // <0x02> is the apb-pclk node's phandle.
        XCTAssertTrue(dts.stdout.contains("\t\tclock-output-names = \"clk24mhz\";\n\t\tphandle = <0x02>;"), dts.stdout)
    }

    func testPassthroughWithoutInterruptOrPrimeCellHasNeitherInterruptsNorClocks() throws {
        var board = twoCPUBoard()
        board.devices = [.passthrough(name: Array("flash-1".utf8), base: 0x1_0000_0000, size: 0x20_0000, spi: nil,
                                      compatible: [Array("cfi-flash".utf8)])]
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board))
        XCTAssertEqual(dts.stderr, "", "dtc warned about the tree")
        XCTAssertTrue(dts.stdout.hasSuffix("""
            \tflash-1@100000000 {
            \t\tcompatible = "cfi-flash";
            \t\treg = <0x01 0x00 0x00 0x200000>;
            \t};
            };

            """), dts.stdout)
    }

    func testStdoutPathFollowsTheUARTsAddress() throws {
        var board = twoCPUBoard()
        board.uart = .pl011(base: 0x0900_1000, spi: 2)
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board)).stdout
        XCTAssertTrue(dts.contains("stdout-path = \"/pl011@9001000\";"), dts)
        XCTAssertTrue(dts.contains("\tpl011@9001000 {\n"), dts)
        XCTAssertTrue(dts.contains("interrupts = <0x00 0x02 0x04>;"), dts)
    }

    func testMemoryNodeIsNamedAfterTheRAMBase() throws {
        var board = twoCPUBoard()
        board.ramBase = 0x8000_0000
        board.ramSize = 0x2_0000_0000
        board.initrd = nil
        let dts = try DeviceTreeCompiler.decompile(GuestDeviceTree.build(board)).stdout
        XCTAssertTrue(dts.contains("""
            \tmemory@80000000 {
            \t\tdevice_type = "memory";
            \t\treg = <0x00 0x80000000 0x02 0x00>;
            """), dts)
    }
}
