// TOML that does not parse: one error, in plain words, as `file:line:column: syntax error: …`
// followed by the line and a caret under the column. One case per mistake people make by hand.

import XCTest
@testable import VMMHost

final class ConfigurationSyntaxTests: ConfigurationTestCase {
    func testUnclosedStringPointsAtTheEndOfItsLine() {
        XCTAssertEqual(errors("[[vm]]\nkernel = \"build/guest/Image\ninitrd = \"x\"\n"), ["""
            system.toml:2:28: syntax error: a string is not closed before the end of the line
                kernel = "build/guest/Image
                                           ^
            """])
        // Windows line ends are line ends; the excerpt shows the line without its '\r'.
        XCTAssertEqual(errors("[[vm]]\r\nkernel = \"Image\r\n"), ["""
            system.toml:2:16: syntax error: a string is not closed before the end of the line
                kernel = "Image
                               ^
            """])
        XCTAssertEqual(errors("[[vm]]\nkernel = \"Image"), ["""
            system.toml:2:16: syntax error: a string is not closed before the end of the file
                kernel = "Image
                               ^
            """])
    }

    func testMissingEqualsSignAndMissingValue() {
        XCTAssertEqual(errors("[[vm]]\nkernel \"Image\"\n"), ["""
            system.toml:2:8: syntax error: expected '=' between the key and its value, found '"'
                kernel "Image"
                       ^
            """])
        XCTAssertEqual(errors("[[vm]]\nkernel =\n"), ["""
            system.toml:2:9: syntax error: the key has no value after '='
                kernel =
                        ^
            """])
    }

    func testDuplicateKeysAndTables() {
        XCTAssertEqual(errors("[[vm]]\nkernel = \"Image\"\nkernel = \"Other\"\n"), ["""
            system.toml:3:10: syntax error: key 'kernel' is set twice in the same table (each key may be set once)
                kernel = "Other"
                         ^
            """])
        XCTAssertEqual(errors("[system]\ngic = 2\n[system]\n"), ["""
            system.toml:3:1: syntax error: table [system] is defined twice (each table header may appear once)
                [system]
                ^
            """])
        XCTAssertEqual(errors("vm = 1\n[[vm]]\n"), ["""
            system.toml:2:1: syntax error: 'vm' is already set to a value above, so it cannot also be a table
                [[vm]]
                ^
            """])
    }

    func testBadTableHeaders() {
        XCTAssertEqual(errors("[[vm]\nkernel = \"Image\"\n"), ["""
            system.toml:1:6: syntax error: a table header is not closed (expected ']' or ']]' before the end of the line)
                [[vm]
                     ^
            """])
        XCTAssertEqual(errors("[system\n"), ["""
            system.toml:1:8: syntax error: a table header is not closed (expected ']' or ']]' before the end of the line)
                [system
                       ^
            """])
        XCTAssertEqual(errors("= 1\n"), ["""
            system.toml:1:1: syntax error: expected a key, a [table] header or a comment, found '='
                = 1
                ^
            """])
    }

    func testUnquotedValuesSayWhatToWrite() {
        XCTAssertEqual(errors("[[vm]]\nram = 512M\n"), ["""
            system.toml:2:10: syntax error: '512M' is not a number (a size with a suffix is a string: "512M")
                ram = 512M
                         ^
            """])
        XCTAssertEqual(errors("[[vm]]\nkernel = Image # the kernel\n"), ["""
            system.toml:2:10: syntax error: 'Image' is not a value (a string needs quotes: "Image")
                kernel = Image # the kernel
                         ^
            """])
        XCTAssertEqual(errors("[[vm.block]]\nreadonly = True\n"), ["""
            system.toml:2:12: syntax error: 'True' is not a value (booleans are written true and false)
                readonly = True
                           ^
            """])
    }

    func testOtherStringAndValueMistakes() {
        XCTAssertEqual(errors("[[vm]]\nkernel = \"C:\\Image\"\n"), ["""
            system.toml:2:14: syntax error: unknown escape sequence '\\I' in a string (write a backslash as \\\\, \
            or use a 'literal string' in single quotes)
                kernel = "C:\\Image"
                             ^
            """])
        XCTAssertEqual(errors("[[vm]]\nkernel = \"a\" \"b\"\n"), ["""
            system.toml:2:14: syntax error: unexpected '"' after the value (one KEY = VALUE per line; comments start with #)
                kernel = "a" "b"
                             ^
            """])
        XCTAssertEqual(errors("[[vm.net]]\nforward = [\"tcp:8080:80\",\n"), ["""
            system.toml:2:27: syntax error: an array is not closed (expected ']' before the end of the file)
                forward = ["tcp:8080:80",
                                         ^
            """])
    }

    func testTheCaretKeepsTheLinesTabsAndCountsCharacters() {
        XCTAssertEqual(errors("[[vm]]\n\tname = \"é\n"), ["""
            system.toml:2:11: syntax error: a string is not closed before the end of the line
                \tname = "é
                \t         ^
            """])
    }

    func testASyntaxErrorIsOneErrorWithItsLocation() throws {
        let error = try XCTUnwrap(syntaxError("[[vm]]\nkernel = \"Image\nram = 1\n"))
        XCTAssertEqual(error.keyPath, "(syntax)")
        XCTAssertEqual(error.location, SourceLocation(line: 2, column: 16, text: "kernel = \"Image"))
        XCTAssertEqual(error.lines.count, 3)
    }

    private func syntaxError(_ text: String) -> ConfigurationError? {
        do {
            _ = try SystemConfiguration.parse(text: text, file: "system.toml", baseDirectory: directory)
            return nil
        } catch {
            XCTAssertEqual(error.errors.count, 1)
            return error.errors.first
        }
    }
}
