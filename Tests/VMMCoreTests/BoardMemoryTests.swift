// BoardMemory reads the board's RAM from a device tree, and GuestEntropy the board's seed: blobs
// compiled by the real dtc from sources shaped like QEMU virt's (memory@40000000 under a root with
// #address-cells = #size-cells = 2, /chosen/rng-seed), the guest's own tree from GuestDeviceTree, and
// malformed blobs that must give nil without a trap. Then how the seeds mix.
import Foundation
import XCTest
@testable import VMMCore

final class BoardMemoryTests: XCTestCase {
    /// `dtc -I dts -O dtb` of `source`.
    func compile(_ source: String) throws -> [UInt8] {
        let directory = FileManager.default.temporaryDirectory
        let input = directory.appendingPathComponent("vmm-board-\(UUID().uuidString).dts")
        let output = input.deletingPathExtension().appendingPathExtension("dtb")
        try source.write(to: input, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: input); try? FileManager.default.removeItem(at: output) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DeviceTreeCompiler.path)
        process.arguments = ["-I", "dts", "-O", "dtb", "-o", output.path, input.path]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        return [UInt8](try Data(contentsOf: output))
    }

    func ranges(_ blob: [UInt8]) -> [[UInt64]]? {
        blob.withUnsafeBytes { BoardMemory.ranges(inDeviceTree: $0) }.map { $0.map { [$0.base, $0.size] } }
    }

    func testQEMUVirtsMemoryNodeGivesTheBoardsRAM() throws {
        let blob = try compile("""
            /dts-v1/;
            / {
                #address-cells = <2>;
                #size-cells = <2>;
                compatible = "linux,dummy-virt";
                psci { compatible = "arm,psci-1.0"; method = "smc"; };
                memory@40000000 { device_type = "memory"; reg = <0x0 0x40000000 0x0 0xc0000000>; };
                cpus { #address-cells = <1>; #size-cells = <0>; cpu@0 { reg = <0>; }; };
                chosen { stdout-path = "/pl011@9000000"; };
            };
            """)
        XCTAssertEqual(ranges(blob), [[0x4000_0000, 0xC000_0000]])
    }

    func testOneCellSizesAndSeveralRangesAndNodesAreRead() throws {
        let blob = try compile("""
            /dts-v1/;
            / {
                #address-cells = <1>;
                #size-cells = <1>;
                memory@40000000 { reg = <0x40000000 0x10000000 0x60000000 0x1000>; };
                other { memory@0 { reg = <0x0 0x1000>; }; };
                memory@80000000 { reg = <0x80000000 0x2000000>; };
            };
            """)
        XCTAssertEqual(ranges(blob), [[0x4000_0000, 0x1000_0000], [0x6000_0000, 0x1000], [0x8000_0000, 0x200_0000]],
                       "only the root's memory nodes")
    }

    func testTheGuestsOwnDeviceTreeSaysItsRAM() {
        let board = GuestBoardDescription(ramBase: 0x4000_0000, ramSize: 0x1000_0000, vcpuCount: 2, bootargs: [])
        XCTAssertEqual(ranges(GuestDeviceTree.build(board)), [[0x4000_0000, 0x1000_0000]])
    }

    func testMalformedBlobsGiveNil() throws {
        XCTAssertNil(ranges([]))
        XCTAssertNil(ranges([UInt8](repeating: 0, count: 64)))
        let good = try compile("/dts-v1/;\n/ { #address-cells = <2>; #size-cells = <2>; memory@40000000 { reg = <0 0x40000000 0 0x1000>; }; };\n")
        XCTAssertNil(ranges(Array(good[0..<good.count / 2])), "cut short: totalsize runs past the blob")
        var noMemory = try compile("/dts-v1/;\n/ { #address-cells = <2>; #size-cells = <2>; cpus { }; };\n")
        XCTAssertNil(ranges(noMemory))
        // Every 32-bit word of a good blob replaced with garbage in turn: never a trap.
        for offset in stride(from: 0, to: good.count - 3, by: 4) {
            var bad = good
            for (i, byte) in [UInt8(0xFF), 0xFF, 0xFF, 0xF0].enumerated() { bad[offset + i] = byte }
            _ = ranges(bad)
        }
        noMemory[0] = 0
        XCTAssertNil(ranges(noMemory), "bad magic")
    }

    // MARK: The board's seed and the guest's

    func seed(_ blob: [UInt8]) -> [UInt8]? { blob.withUnsafeBytes { GuestEntropy.boardSeed(deviceTree: $0) } }

    func testTheBoardsSeedIsChosensRNGSeed() throws {
        let blob = try compile("""
            /dts-v1/;
            / {
                #address-cells = <2>;
                #size-cells = <2>;
                memory@40000000 { device_type = "memory"; reg = <0x0 0x40000000 0x0 0x40000000>; };
                other { rng-seed = [ff ff]; };
                chosen {
                    kaslr-seed = <0x1 0x2>;
                    rng-seed = [00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 01];
                    stdout-path = "/pl011@9000000";
                    child { rng-seed = [ee]; };
                };
            };
            """)
        XCTAssertEqual(seed(blob), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
                                    0xdd, 0xee, 0xff, 0x01])
        XCTAssertEqual(ranges(blob), [[0x4000_0000, 0x4000_0000]], "the same walk still finds the RAM")
    }

    func testNoSeedWhereTheBoardGivesNoneOrAnEmptyOne() throws {
        XCTAssertNil(seed(try compile("/dts-v1/;\n/ { chosen { bootargs = \"x\"; }; other { rng-seed = [01]; }; };\n")))
        XCTAssertNil(seed(try compile("/dts-v1/;\n/ { chosen { rng-seed; }; };\n")))
        XCTAssertNil(seed(try compile("/dts-v1/;\n/ { chosen { child { rng-seed = [01]; }; }; };\n")))
        XCTAssertNil(seed([UInt8](repeating: 0, count: 4096)), "no tree at all: RAM the board left zero")
        // Every 32-bit word of a good blob replaced with garbage in turn: never a trap.
        let good = try compile("/dts-v1/;\n/ { chosen { rng-seed = [01 02 03 04 05]; }; };\n")
        XCTAssertEqual(seed(good), [1, 2, 3, 4, 5])
        for offset in stride(from: 0, to: good.count - 3, by: 4) {
            var bad = good
            for (i, byte) in [UInt8(0xFF), 0xFF, 0xFF, 0xF0].enumerated() { bad[offset + i] = byte }
            _ = seed(bad)
        }
        XCTAssertNil(seed(Array(good[0..<good.count - 8])), "cut short")
    }

    func testTheGuestsSeedIsTheBuildsWithTheBoardsAndTheCounterXORedIn() {
        let build = [UInt8](0..<16)
        func mix(_ board: [UInt8]?, _ counter: UInt64) -> [UInt8] {
            build.withUnsafeBytes { GuestEntropy.mix($0, with: board, counter: counter) }
        }
        XCTAssertEqual(mix(nil, 0), build, "without a board seed and at counter 0: the build's")
        // The board's bytes cycle over the seed's length: 17 bytes wrap onto byte 0.
        let board = [UInt8](repeating: 0xf0, count: 16) + [0x0f]
        XCTAssertEqual(mix(board, 0), [0xf0 ^ 0x0f] + (1..<16).map { $0 ^ 0xf0 })
        // The counter's bytes, least significant first, over the last eight from the end.
        XCTAssertEqual(mix(nil, 0x0102_0304_0506_0708), Array(build[0..<8]) + [8 ^ 1, 9 ^ 2, 10 ^ 3, 11 ^ 4, 12 ^ 5, 13 ^ 6, 14 ^ 7, 15 ^ 8])
        XCTAssertNotEqual(mix(board, 1), mix(board, 2), "a reboot from the same image gets other bytes")
        XCTAssertEqual([UInt8]().withUnsafeBytes { GuestEntropy.mix($0, with: board, counter: 5) }, [])
    }
}
