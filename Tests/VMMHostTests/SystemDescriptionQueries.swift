// What the tests of the generated Microkit system description share: the text read back through
// an XML parser, XPath queries on it, and the messages render() throws.

import Foundation
import XCTest
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import VMMHost

protocol SystemDescriptionQueries {}

extension SystemDescriptionQueries {
    func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    func parse(_ system: MicrokitSystem) throws -> XMLDocument {
        try XMLDocument(xmlString: try system.render(), options: [])
    }

    /// The string values of every node an XPath selects.
    func values(_ xpath: String, in document: XMLDocument) throws -> [String] {
        try document.nodes(forXPath: xpath).map { $0.stringValue ?? "" }
    }

    func value(_ xpath: String, in document: XMLDocument, file: StaticString = #filePath,
               line: UInt = #line) throws -> String? {
        let found = try values(xpath, in: document)
        XCTAssertEqual(found.count, 1, "expected one node for \(xpath), found \(found)", file: file, line: line)
        return found.first
    }

    /// The messages render() throws, or [] when it succeeds.
    func errors(_ system: MicrokitSystem) -> [String] {
        do {
            _ = try system.render()
            return []
        } catch {
            switch error {
            case .invalid(let messages): return messages
            }
        }
    }
}

extension XCTestCase {
    /// `vmm check` of examples/`name`, copied into a scratch checkout (removed when the test ends) with
    /// the guest it names (../build/guest) faked there: a 16 MiB arm64 Image header and an initrd.
    /// Returns the system and the checkout's root.
    func checkedExample(_ name: String) throws -> (SystemConfiguration, URL) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("example-\(UUID().uuidString.prefix(8))")
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/\(name)")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("examples"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("build/guest"), withIntermediateDirectories: true)
        let file = root.appendingPathComponent("examples/\(name)")
        try FileManager.default.copyItem(at: example, to: file)
        var header = [UInt8](repeating: 0, count: 64)
        header[16] = 0x00; header[18] = 0x00; header[19] = 0x01                        // image_size 16 MiB
        header[56] = 0x41; header[57] = 0x52; header[58] = 0x4d; header[59] = 0x64     // "ARMd"
        try Data(header).write(to: root.appendingPathComponent("build/guest/Image"))
        try Data(count: 0x1000).write(to: root.appendingPathComponent("build/guest/initramfs.cpio.gz"))
        return (try SystemConfiguration.check(path: file.path), root)
    }
}
