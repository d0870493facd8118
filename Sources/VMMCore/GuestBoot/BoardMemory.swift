// How much RAM the board has, read from the flattened device tree its firmware hands over (QEMU virt
// puts one at the start of RAM for a bare-metal ELF): the `reg` of the root's memory nodes.
//
// Only what that needs of the devicetree specification (v0.4 §5): the header (§5.2), the structure
// block's tokens (§5.4.1) and the root's #address-cells/#size-cells (§2.3.5, default 2 and 1). The
// blob is the firmware's, not a guest's, but it is still read with every offset and length checked:
// a malformed one gives nil, never a trap.

public enum BoardMemory {
    static let magic: UInt32 = 0xD00D_FEED
    static let beginNode: UInt32 = 1, endNode: UInt32 = 2, property: UInt32 = 3, nop: UInt32 = 4, end: UInt32 = 9

    /// The RAM ranges (base, size) of the root's `memory` nodes, in blob order; nil when `blob` is not
    /// a well-formed device tree or has no memory node.
    public static func ranges(inDeviceTree blob: UnsafeRawBufferPointer) -> [(base: UInt64, size: UInt64)]? {
        func u32(_ offset: Int) -> UInt32? {
            guard offset >= 0, offset <= blob.count - 4 else { return nil }
            return UInt32(bigEndian: blob.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        }
        guard blob.count >= 40, u32(0) == magic, let total = u32(4), Int(total) <= blob.count,
              let structOffset = u32(8), let stringsOffset = u32(12), let structSize = u32(36),
              let stringsSize = u32(32) else { return nil }
        let structStart = Int(structOffset), structEnd = structStart + Int(structSize)
        let stringsStart = Int(stringsOffset), stringsEnd = stringsStart + Int(stringsSize)
        guard structEnd <= Int(total), stringsEnd <= Int(total) else { return nil }

        /// The NUL-terminated name at `offset` equals `name` (bounded by `limit`).
        func nameIs(_ offset: Int, _ name: StaticString, limit: Int, prefixOnly: Bool = false) -> Bool {
            var matched = true
            name.withUTF8Buffer { expected in
                guard offset >= 0, offset + expected.count < limit else { matched = false; return }
                for i in 0..<expected.count where blob[offset + i] != expected[i] { matched = false; return }
                let next = blob[offset + expected.count]
                matched = prefixOnly ? (next == 0 || next == UInt8(ascii: "@")) : next == 0
            }
            return matched
        }

        var addressCells = 2, sizeCells = 1
        var ranges: [(base: UInt64, size: UInt64)] = []
        var depth = 0
        var inMemory = false
        var cursor = structStart
        while cursor < structEnd {
            guard let token = u32(cursor) else { return nil }
            cursor += 4
            switch token {
            case beginNode:
                depth += 1
                inMemory = depth == 2 && nameIs(cursor, "memory", limit: structEnd, prefixOnly: true)
                var nameEnd = cursor
                while nameEnd < structEnd && blob[nameEnd] != 0 { nameEnd += 1 }
                guard nameEnd < structEnd else { return nil }
                cursor = (nameEnd + 1 + 3) & ~3
            case endNode:
                depth -= 1
                inMemory = false
                guard depth >= 0 else { return nil }
            case property:
                guard let length = u32(cursor), let nameOffset = u32(cursor + 4) else { return nil }
                let value = cursor + 8, valueEnd = value + Int(length)
                guard valueEnd <= structEnd else { return nil }
                let name = stringsStart + Int(nameOffset)
                if depth == 1 && length == 4 {
                    if nameIs(name, "#address-cells", limit: stringsEnd) { addressCells = Int(u32(value) ?? 0) }
                    if nameIs(name, "#size-cells", limit: stringsEnd) { sizeCells = Int(u32(value) ?? 0) }
                } else if inMemory && nameIs(name, "reg", limit: stringsEnd) {
                    guard (1...2).contains(addressCells), (1...2).contains(sizeCells) else { return nil }
                    let entry = 4 * (addressCells + sizeCells)
                    var offset = value
                    while offset + entry <= valueEnd {
                        func cells(_ at: Int, _ count: Int) -> UInt64 {
                            count == 2 ? UInt64(u32(at) ?? 0) << 32 | UInt64(u32(at + 4) ?? 0) : UInt64(u32(at) ?? 0)
                        }
                        ranges.append((cells(offset, addressCells), cells(offset + 4 * addressCells, sizeCells)))
                        offset += entry
                    }
                }
                cursor = (valueEnd + 3) & ~3
            case nop:
                continue
            case end:
                return ranges.isEmpty ? nil : ranges
            default:
                return nil
            }
        }
        return nil
    }
}
