// What the tests of the generated Microkit system description share: the text read back through
// an XML parser, XPath queries on it, and the messages render() throws.

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
