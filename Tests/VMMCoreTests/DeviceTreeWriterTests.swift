import XCTest
@testable import VMMCore

private func finished(_ build: (inout DeviceTreeWriter) -> Void) -> Result<[UInt8], DeviceTreeError> {
    var w = DeviceTreeWriter()
    build(&w)
    do { return .success(try w.finish()) } catch { return .failure(error) }
}

private func assertWriterError(_ expected: DeviceTreeError, file: StaticString = #filePath, line: UInt = #line,
                               _ build: (inout DeviceTreeWriter) -> Void) {
    switch finished(build) {
    case .success: XCTFail("expected \(expected), got a blob", file: file, line: line)
    case .failure(let error): XCTAssertEqual(error, expected, file: file, line: line)
    }
}

/// The structure-block bytes of the single property of the root node, for encoding checks.
private func rootPropertyValue(_ build: (inout DeviceTreeWriter) -> Void) throws -> [UInt8] {
    let blob = try finished { w in w.node("") { w in build(&w) } }.get()
    // Structure block at 56: BEGIN_NODE (4), "" padded (4), PROP (4), len (4), nameoff (4), value.
    let length = Int(blob[68]) << 24 | Int(blob[69]) << 16 | Int(blob[70]) << 8 | Int(blob[71])
    return Array(blob[76..<(76 + length)])
}

final class DeviceTreeWriterTests: XCTestCase {
    func testTinyTreeMatchesTheSpecByteForByte() throws {
        // / { compatible = "a"; n@1 { reg = <1>; compatible = "bc"; }; };
        let blob = try finished { w in
            let root = w.beginNode("")
            w.property("compatible", string: "a")
            let child = w.beginNode("n@1")
            w.property("reg", u32: 1)
            w.property("compatible", string: "bc")
            w.endNode(child)
            w.endNode(root)
        }.get()
        let expected: [UInt8] = [
            // Header (devicetree spec §5.2), big-endian u32s.
            0xd0, 0x0d, 0xfe, 0xed,   //  0 magic
            0x00, 0x00, 0x00, 0x93,   //  4 totalsize 147
            0x00, 0x00, 0x00, 0x38,   //  8 off_dt_struct 56
            0x00, 0x00, 0x00, 0x84,   // 12 off_dt_strings 132
            0x00, 0x00, 0x00, 0x28,   // 16 off_mem_rsvmap 40
            0x00, 0x00, 0x00, 0x11,   // 20 version 17
            0x00, 0x00, 0x00, 0x10,   // 24 last_comp_version 16
            0x00, 0x00, 0x00, 0x00,   // 28 boot_cpuid_phys 0
            0x00, 0x00, 0x00, 0x0f,   // 32 size_dt_strings 15
            0x00, 0x00, 0x00, 0x4c,   // 36 size_dt_struct 76
            // 40: memory reservation block (§5.3): only the terminating {0, 0} entry.
            0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0,
            // 56: structure block (§5.4).
            0x00, 0x00, 0x00, 0x01,   //  56 FDT_BEGIN_NODE
            0x00, 0x00, 0x00, 0x00,   //  60 "" (root) + NUL, padded to 4
            0x00, 0x00, 0x00, 0x03,   //  64 FDT_PROP
            0x00, 0x00, 0x00, 0x02,   //  68 len 2
            0x00, 0x00, 0x00, 0x00,   //  72 nameoff 0 "compatible"
            0x61, 0x00, 0x00, 0x00,   //  76 "a\0" padded
            0x00, 0x00, 0x00, 0x01,   //  80 FDT_BEGIN_NODE
            0x6e, 0x40, 0x31, 0x00,   //  84 "n@1\0"
            0x00, 0x00, 0x00, 0x03,   //  88 FDT_PROP
            0x00, 0x00, 0x00, 0x04,   //  92 len 4
            0x00, 0x00, 0x00, 0x0b,   //  96 nameoff 11 "reg"
            0x00, 0x00, 0x00, 0x01,   // 100 <1>
            0x00, 0x00, 0x00, 0x03,   // 104 FDT_PROP
            0x00, 0x00, 0x00, 0x03,   // 108 len 3
            0x00, 0x00, 0x00, 0x00,   // 112 nameoff 0: "compatible" is stored once
            0x62, 0x63, 0x00, 0x00,   // 116 "bc\0" padded
            0x00, 0x00, 0x00, 0x02,   // 120 FDT_END_NODE n@1
            0x00, 0x00, 0x00, 0x02,   // 124 FDT_END_NODE /
            0x00, 0x00, 0x00, 0x09,   // 128 FDT_END
            // 132: strings block (§5.5): "compatible\0reg\0".
            0x63, 0x6f, 0x6d, 0x70, 0x61, 0x74, 0x69, 0x62, 0x6c, 0x65, 0x00,   // 132 "compatible"
            0x72, 0x65, 0x67, 0x00,                                             // 143 "reg"
        ]                                                                       // 147 end
        XCTAssertEqual(blob, expected)
    }

    func testBootCPUIDGoesIntoTheHeader() throws {
        var w = DeviceTreeWriter()
        w.bootCPUID = 3
        w.node("") { _ in }
        let blob = try w.finish()
        XCTAssertEqual(Array(blob[28..<32]), [0, 0, 0, 3])
    }

    func testValueEncodingsAreBigEndianCells() throws {
        XCTAssertEqual(try rootPropertyValue { $0.property("x", u32: 0x1234_5678) }, [0x12, 0x34, 0x56, 0x78])
        XCTAssertEqual(try rootPropertyValue { $0.property("x", u64: 0x1_0000_0002) }, [0, 0, 0, 1, 0, 0, 0, 2])
        XCTAssertEqual(try rootPropertyValue { $0.property("x", cells: [1, 0x0f04]) }, [0, 0, 0, 1, 0, 0, 0x0f, 0x04])
        XCTAssertEqual(try rootPropertyValue { $0.property("x", strings: ["ab", "c"]) }, [0x61, 0x62, 0, 0x63, 0])
        XCTAssertEqual(try rootPropertyValue { $0.property("x", string: DeviceTreeString([0x41])) }, [0x41, 0])
        XCTAssertEqual(try rootPropertyValue { $0.property("x") }, [])
        XCTAssertEqual(try rootPropertyValue { $0.property("x", bytes: [9, 8, 7]) }, [9, 8, 7])
        XCTAssertEqual(try rootPropertyValue { $0.reg([(0x4000_0000, 0x800_0000), (1, 2)]) },
                       [0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0, 0,
                        0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2])
    }

    func testDTBDecodesWithDtc() throws {
        let blob = try finished { w in
            w.node("") { w in
                w.property("#address-cells", u32: 2)
                w.property("#size-cells", u32: 2)
                w.node(DeviceTreeString(Array("memory@40000000".utf8))) { w in
                    w.property("device_type", string: "memory")
                    w.reg([(0x4000_0000, 0x800_0000)])
                }
            }
        }.get()
        let dts = try DeviceTreeCompiler.decompile(blob)
        XCTAssertEqual(dts.stderr, "")
        XCTAssertTrue(dts.stdout.contains("""
            \tmemory@40000000 {
            \t\tdevice_type = "memory";
            \t\treg = <0x00 0x40000000 0x00 0x8000000>;
            \t};
            """), dts.stdout)
    }

    func testNodesClosedOutOfOrderAreReported() {
        assertWriterError(.nodesClosedOutOfOrder) { w in
            let root = w.beginNode("")
            let child = w.beginNode("a")
            w.endNode(root)
            w.endNode(child)
        }
    }

    func testUnclosedNodesAreReported() {
        assertWriterError(.unclosedNodes(count: 2)) { w in
            let root = w.beginNode("")
            let child = w.beginNode("a")
            _ = consume root
            _ = consume child
        }
    }

    func testEmptyTreeHasNoRoot() {
        assertWriterError(.noRootNode) { _ in }
    }

    func testOnlyOneRootWithAnEmptyName() {
        assertWriterError(.rootNodeMustBeFirstAndOnly) { w in w.node("") { _ in }; w.node("") { _ in } }
        assertWriterError(.rootNodeMustBeFirstAndOnly) { w in w.node("soc") { _ in } }
    }

    func testPropertyAfterASubnodeIsReported() {
        assertWriterError(.propertyAfterSubnode) { w in
            w.node("") { w in
                w.node("a") { _ in }
                w.property("late", u32: 1)
            }
        }
    }

    func testPropertyOutsideAnyNodeIsReported() {
        assertWriterError(.propertyOutsideNode) { w in w.property("x", u32: 1) }
    }

    func testNamesOutsideTheSpecCharacterSetsAreReported() {
        assertWriterError(.invalidNodeName(Array("my node".utf8))) { w in w.node("") { w in w.node("my node") { _ in } } }
        assertWriterError(.invalidNodeName(Array("@1".utf8))) { w in w.node("") { w in w.node("@1") { _ in } } }
        assertWriterError(.invalidNodeName(Array("a@".utf8))) { w in w.node("") { w in w.node("a@") { _ in } } }
        let longName = [UInt8](repeating: UInt8(ascii: "n"), count: 32)
        assertWriterError(.invalidNodeName(longName)) { w in
            w.node("") { w in w.node(DeviceTreeString(longName)) { _ in } }
        }
        assertWriterError(.invalidPropertyName(Array("a=b".utf8))) { w in w.node("") { w in w.property("a=b") } }
        assertWriterError(.invalidPropertyName([])) { w in w.node("") { w in w.property("") } }
    }

    func testSpecNameCharactersAreAccepted() throws {
        _ = try finished { w in
            w.node("") { w in
                w.property("#interrupt-cells?,._+", u32: 3)
                w.node("virtio_mmio@a000000") { _ in }
                w.node("Node,x.y_z+w-1@0,1") { _ in }
            }
        }.get()
    }

    func testStringWithANulByteIsReported() {
        assertWriterError(.stringContainsNul) { w in
            w.node("") { w in w.property("bootargs", string: DeviceTreeString([0x61, 0, 0x62])) }
        }
    }
}
