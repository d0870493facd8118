// TOML syntax errors in plain words. toml++ (through TOMLKit) stops at the first error and says it
// in parser terms ("Error while parsing string: unescaped control characters other than TAB …");
// this file turns the commonest ones into what the writer of the file did ("a string is not closed
// before the end of the line") and keeps the position, so that the error reads like a compiler's:
//
//     system.toml:2:28: syntax error: a string is not closed before the end of the line
//         kernel = "build/guest/Image
//                                    ^
//
// Errors it does not know keep toml++'s words, with its parser jargon softened.

import Foundation

/// Where in the file a syntax error is: 1-based line and column (columns count characters, as
/// toml++ does), and the line's text without its line break.
public struct SourceLocation: Equatable, Sendable {
    public let line: Int
    public let column: Int
    public let text: String

    public init(line: Int, column: Int, text: String) {
        self.line = line
        self.column = column
        self.text = text
    }

    /// The line, then a caret under the column: tabs before it are kept so the caret lines up.
    var excerpt: [String] {
        let before = text.prefix(max(0, column - 1)).map { $0 == "\t" ? "\t" : " " }.joined()
        return ["    " + text, "    " + before + "^"]
    }
}

enum ConfigurationSyntax {
    /// The location of `line`/`column` in `text`.
    static func location(in text: String, line: Int, column: Int) -> SourceLocation {
        // "\r\n" is one Character, and a line break like "\n".
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        let lineText = line >= 1 && line <= lines.count ? String(lines[line - 1]) : ""
        return SourceLocation(line: line, column: column, text: lineText)
    }

    /// toml++'s "Error while parsing CONTEXT: DETAIL" in plain words, for the error at `location`.
    static func plainMessage(_ description: String, at location: SourceLocation) -> String {
        var context = "", detail = description
        if description.hasPrefix("Error while parsing "), let colon = description.range(of: ": ") {
            context = String(description[description.index(description.startIndex, offsetBy: 20)..<colon.lowerBound])
            detail = String(description[colon.upperBound...])
        }
        let atEndOfLine = location.column > location.text.count
        let named = quoted(in: detail)
        let isString = context.hasSuffix("string")

        if isString, detail.contains("control characters") {
            return atEndOfLine ? "a string is not closed before the end of the line"
                : "a string contains a control character (write it as an escape such as \\t or \\u001b)"
        }
        if detail.hasPrefix("encountered end-of-file") {
            if isString { return "a string is not closed before the end of the file" }
            if context == "array" { return "an array is not closed (expected ']' before the end of the file)" }
            if context == "inline table" { return "an inline table is not closed (expected '}' on its line)" }
            return "the file ends in the middle of a \(context.isEmpty ? "value" : context)"
        }
        if detail.hasPrefix("unknown escape sequence") {
            return "unknown escape sequence \(named.map { "'\($0)'" } ?? "") in a string "
                + "(write a backslash as \\\\, or use a 'literal string' in single quotes)"
        }
        if detail.hasPrefix("cannot redefine existing") {
            if context == "table header", detail.hasPrefix("cannot redefine existing table"), let named {
                return "table [\(named)] is defined twice (each table header may appear once)"
            }
            if context == "table header", let named {
                return "'\(named)' is already set to a value above, so it cannot also be a table"
            }
            if let named { return "key '\(named)' is set twice in the same table (each key may be set once)" }
            return "a key is set twice in the same table (each key may be set once)"
        }
        if context == "key-value pair", detail.hasPrefix("expected '='") {
            return "expected '=' between the key and its value, found \(found(detail, atEndOfLine))"
        }
        if context == "key-value pair", detail.hasPrefix("expected value") {
            return "the key has no value after '='"
        }
        if context == "key-value pair", detail.hasPrefix("expected a comment or whitespace") {
            return "unexpected \(found(detail, atEndOfLine)) after the value (one KEY = VALUE per line; comments start with #)"
        }
        if context == "table header", detail.hasPrefix("expected ']'") {
            return atEndOfLine ? "a table header is not closed (expected ']' or ']]' before the end of the line)"
                : "unexpected \(found(detail, atEndOfLine)) in a table header (expected ']')"
        }
        if context == "inline table", detail.hasPrefix("expected key or closing '}'") {
            return atEndOfLine ? "an inline table is not closed (expected '}' on its line)"
                : "expected a key or '}' in an inline table, found \(found(detail, atEndOfLine))"
        }
        if context == "root table" || context == "table", detail.hasPrefix("expected keys") {
            return "expected a key, a [table] header or a comment, found \(found(detail, atEndOfLine))"
        }
        if ["decimal integer", "hexadecimal integer", "octal integer", "binary integer", "floating-point", "boolean",
            "value", "date-time", "date", "time"].contains(context), let value = bareValue(location.text) {
            return notAValue(value)
        }
        return (context.isEmpty ? "" : "in a \(context): ") + detail.replacingOccurrences(of: "saw '\\n'", with: "found the end of the line")
            .replacingOccurrences(of: "saw ", with: "found ")
    }

    /// What toml++ "saw": a quoted character, or the end of the line.
    private static func found(_ detail: String, _ atEndOfLine: Bool) -> String {
        guard let saw = detail.range(of: "saw ") else { return "something else" }
        let what = String(detail[saw.upperBound...])
        return what == "'\\n'" || atEndOfLine ? "the end of the line" : what
    }

    /// The last '…'-quoted name in `detail`: the key or table toml++ names.
    private static func quoted(in detail: String) -> String? {
        let parts = detail.split(separator: "'", omittingEmptySubsequences: false)
        guard parts.count >= 3 else { return nil }
        return String(parts[parts.count - 2])
    }

    /// The value written after '=' on a line, when it is not quoted, an array or a table.
    private static func bareValue(_ line: String) -> String? {
        guard let equals = line.firstIndex(of: "=") else { return nil }
        var value = line[line.index(after: equals)...]
        if let hash = value.firstIndex(of: "#") { value = value[..<hash] }
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        guard let first = trimmed.first, !"\"'[{".contains(first) else { return nil }
        return trimmed
    }

    private static func notAValue(_ value: String) -> String {
        if value.lowercased() == "true" || value.lowercased() == "false" {
            return "'\(value)' is not a value (booleans are written true and false)"
        }
        if let last = value.last, "KMGkmg".contains(last), value.dropLast().allSatisfy(\.isNumber), value.count > 1 {
            return "'\(value)' is not a number (a size with a suffix is a string: \"\(value)\")"
        }
        if let first = value.first, first.isNumber || first == "+" || first == "-" {
            return "'\(value)' is not a number (write integers as 42, 0x2a, 0o52 or 0b101010)"
        }
        return "'\(value)' is not a value (a string needs quotes: \"\(value)\")"
    }
}
