// Typed reading of one TOML table for the configuration parser: each key's value as a `Field`
// (absent, invalid and already reported, or present), unknown keys reported once with the closest
// known key, wrong types reported as "expected …, found …". What the keys mean is
// ConfigurationParser.swift's business.

import Foundation
import TOMLKit

/// A key's value: not there (the default applies), there but wrong (already reported), or good.
enum Field<Value> {
    case absent, invalid, present(Value)

    func or(_ fallback: Value) -> Value {
        if case .present(let value) = self { return value }
        return fallback
    }

    var value: Value? {
        if case .present(let value) = self { return value }
        return nil
    }

    func map<T>(_ transform: (Value) -> Field<T>) -> Field<T> {
        switch self {
        case .absent: .absent
        case .invalid: .invalid
        case .present(let value): transform(value)
        }
    }
}

/// One TOML table at a key path: reports its unknown keys once, then reads typed keys, reporting
/// each wrong type as "expected …, found …".
struct TableReader {
    let table: TOMLTable
    /// "" for the root, "system", "vm[0]", "vm[0].net[1]".
    let path: String
    let diagnostics: ConfigurationDiagnostics

    init(_ table: TOMLTable, path: String, schema: String, diagnostics: ConfigurationDiagnostics) {
        self.table = table
        self.path = path
        self.diagnostics = diagnostics
        let known = ConfigurationSchema.tables[schema] ?? []
        for key in table.keys where !known.contains(key) {
            if let near = ConfigurationSchema.closestKey(to: key, in: known) {
                diagnostics.report(keyPath(key), "unknown key '\(key)' (did you mean '\(near)'?)")
                continue
            }
            var message = "unknown key '\(key)' (expected one of: \(known.joined(separator: ", ")))"
            // The commonest slip in a small file: VM keys written above the [[vm]] header.
            if schema == "" {
                if ConfigurationSchema.tables["vm", default: []].contains(key) {
                    message += "; '\(key)' belongs in a [[vm]] table"
                } else if ConfigurationSchema.tables["system", default: []].contains(key) {
                    message += "; '\(key)' belongs in the [system] table"
                }
            }
            diagnostics.report(keyPath(key), message)
        }
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    func value(_ key: String) -> TOMLValueConvertible? { table[key] }

    func reportMissing(_ key: String, expected: String) {
        diagnostics.report(keyPath(key), "required key is missing (expected \(expected))")
    }

    /// The value converted by `extract`, or a type error naming `expected`.
    private func typed<T>(_ key: String, expected: String, _ extract: (TOMLValueConvertible) -> T?) -> Field<T> {
        guard let value = value(key) else { return .absent }
        if let converted = extract(value) { return .present(converted) }
        diagnostics.report(keyPath(key), "expected \(expected), found \(Self.describe(value.type))")
        return .invalid
    }

    func string(_ key: String) -> Field<String> { typed(key, expected: "a string", Self.exactString) }

    func integer(_ key: String) -> Field<Int> { typed(key, expected: "an integer") { $0.int } }

    func bool(_ key: String) -> Field<Bool> { typed(key, expected: "a boolean (true or false)") { $0.bool } }

    /// Integer bytes, or a string with a K/M/G suffix.
    func size(_ key: String) -> Field<UInt64> {
        let expected = ConfigurationParser.sizeExpectation
        return typed(key, expected: expected) { $0.int != nil || $0.string != nil ? $0 : nil }.map { value in
            if let int = value.int {
                if int >= 0 { return .present(UInt64(int)) }
                diagnostics.report(keyPath(key), "expected \(expected), found \(int)")
            } else if let text = Self.exactString(value) {
                if let size = ConfigurationParser.parseSize(text) { return .present(size) }
                diagnostics.report(keyPath(key), "expected \(expected), found '\(text)'")
            }
            return .invalid
        }
    }

    func address(_ key: String) -> Field<UInt64> {
        let expected = ConfigurationParser.addressExpectation
        return typed(key, expected: expected) { $0.int }.map { int in
            if int >= 0 { return .present(UInt64(int)) }
            diagnostics.report(keyPath(key), "expected \(expected), found \(int)")
            return .invalid
        }
    }

    /// A file path made absolute against `directory`; nil when absent or wrong (reported, and for a
    /// `required` key its absence too, naming what the path should point at).
    func path(_ key: String, relativeTo directory: String, required: String?) -> String? {
        switch string(key) {
        case .absent:
            if let required { reportMissing(key, expected: required) }
        case .invalid:
            break
        case .present(let text):
            if text.isEmpty {
                diagnostics.report(keyPath(key), "expected a file path, found an empty string")
            } else if text.utf8.contains(0) {
                diagnostics.report(keyPath(key), "contains a NUL character (expected a file path)")
            } else {
                return ConfigurationPaths.resolve(text, against: directory)
            }
        }
        return nil
    }

    /// An array of strings; an entry of another type is reported and stands as nil.
    func stringArray(_ key: String) -> [String?]? {
        guard let array = typed(key, expected: "an array of strings", { $0.array }).value else { return nil }
        return array.enumerated().map { n, element in
            if let text = Self.exactString(element) { return text }
            diagnostics.report("\(keyPath(key))[\(n)]", "expected a string, found \(Self.describe(element.type))")
            return nil
        }
    }

    /// An array of integers; an entry of another type is reported and stands as nil.
    func integerArray(_ key: String) -> [Int?]? {
        guard let array = typed(key, expected: "an array of integers", { $0.array }).value else { return nil }
        return array.enumerated().map { n, element in
            if let int = element.int { return int }
            diagnostics.report("\(keyPath(key))[\(n)]", "expected an integer, found \(Self.describe(element.type))")
            return nil
        }
    }

    func table(_ key: String) -> TableReader? {
        typed(key, expected: "a table", { $0.table }).value.map {
            TableReader($0, path: keyPath(key), schema: key, diagnostics: diagnostics)
        }
    }

    /// An array of tables (`[[vm]]`, written `header`); an entry that is not a table is reported and
    /// stands as nil, so that later entries keep their index.
    func tables(_ key: String, header: String) -> [TableReader?]? {
        guard let value = value(key) else { return nil }
        guard let array = value.array else {
            diagnostics.report(keyPath(key), "expected an array of tables (\(header)), found \(Self.describe(value.type))")
            return nil
        }
        return array.enumerated().map { n, element in
            let entryPath = "\(keyPath(key))[\(n)]"
            guard let table = element.table else {
                diagnostics.report(entryPath, "expected a table, found \(Self.describe(element.type))")
                return nil
            }
            return TableReader(table, path: entryPath, schema: key, diagnostics: diagnostics)
        }
    }

    static func describe(_ type: TOMLType) -> String {
        switch type {
        case .table: "a table"
        case .array: "an array"
        case .string: "a string"
        case .int: "an integer"
        case .double: "a floating-point number"
        case .bool: "a boolean"
        case .date: "a date"
        case .time: "a time"
        case .dateTime: "a date-time"
        }
    }

    /// The string with every character: TOMLKit reads strings as C strings, which would silently
    /// cut "a\u0000b" to "a", so the value goes through toml++'s JSON writer, which escapes NUL.
    static func exactString(_ value: TOMLValueConvertible) -> String? {
        guard let plain = value.string else { return nil }
        let probe = TOMLTable()
        probe["s"] = value
        guard let object = try? JSONSerialization.jsonObject(with: Data(probe.convert(to: .json).utf8)) as? [String: Any],
              let exact = object["s"] as? String else { return plain }
        return exact
    }
}
