// What the VMM reads from the flattened device tree the board's firmware hands over (QEMU virt puts
// one at the start of RAM for a bare-metal ELF): how much RAM the board has, the `reg` of the root's
// memory nodes; and the seed the board gives for this boot, /chosen/rng-seed (GuestEntropy).
//
// Only what that needs of the devicetree specification (v0.4 §5): the header (§5.2), the structure
// block's tokens (§5.4.1) and the root's #address-cells/#size-cells (§2.3.5, default 2 and 1). The
// blob is the firmware's, not a guest's, but it is still read with every offset and length checked:
// a malformed one gives nil, never a trap.

/// A device tree blob whose header passed its checks, walked property by property.
struct DeviceTreeBlob {
    static let magic: UInt32 = 0xD00D_FEED
    static let beginNode: UInt32 = 1, endNode: UInt32 = 2, property: UInt32 = 3, nop: UInt32 = 4, end: UInt32 = 9

    /// A property: the depth of its node (the root's is 1), where its node's name, its own name (in
    /// the strings block) and its value start, and the value's length; all within the blob.
    struct Property {
        let depth: Int
        let node: Int
        let name: Int
        let value: Int
        let length: Int
    }

    let blob: UnsafeRawBufferPointer
    let structStart: Int, structEnd: Int, stringsStart: Int, stringsEnd: Int

    init?(_ blob: UnsafeRawBufferPointer) {
        func u32(_ offset: Int) -> UInt32? { Self.u32(blob, offset) }
        guard blob.count >= 40, u32(0) == Self.magic, let total = u32(4), Int(total) <= blob.count,
              let structOffset = u32(8), let stringsOffset = u32(12), let structSize = u32(36),
              let stringsSize = u32(32) else { return nil }
        let structStart = Int(structOffset), structEnd = structStart + Int(structSize)
        let stringsStart = Int(stringsOffset), stringsEnd = stringsStart + Int(stringsSize)
        guard structEnd <= Int(total), stringsEnd <= Int(total) else { return nil }
        self.blob = blob
        (self.structStart, self.structEnd, self.stringsStart, self.stringsEnd) = (structStart, structEnd, stringsStart, stringsEnd)
    }

    static func u32(_ blob: UnsafeRawBufferPointer, _ offset: Int) -> UInt32? {
        guard offset >= 0, offset <= blob.count - 4 else { return nil }
        return UInt32(bigEndian: blob.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    func u32(_ offset: Int) -> UInt32? { Self.u32(blob, offset) }

    /// The NUL-terminated name at `offset` (bounded by `limit`) equals `name`, or with `prefixOnly`
    /// starts with it followed by its unit address.
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

    /// Whether the property's name is `name`.
    func isNamed(_ property: Property, _ name: StaticString) -> Bool {
        nameIs(property.name, name, limit: stringsEnd)
    }

    /// Whether the property's node is `name` (or `name@unit`) right below the root.
    func isInNode(_ property: Property, _ name: StaticString) -> Bool {
        property.depth == 2 && nameIs(property.node, name, limit: structEnd, prefixOnly: true)
    }

    /// Calls `visit` with each property in blob order until it returns false; true when the walk
    /// reached FDT_END (or `visit` stopped it), false for a malformed structure block.
    func walk(_ visit: (Property) -> Bool) -> Bool {
        var depth = 0, node = structStart, cursor = structStart
        while cursor < structEnd {
            guard let token = u32(cursor) else { return false }
            cursor += 4
            switch token {
            case Self.beginNode:
                depth += 1
                node = cursor
                var nameEnd = cursor
                while nameEnd < structEnd && blob[nameEnd] != 0 { nameEnd += 1 }
                guard nameEnd < structEnd else { return false }
                cursor = (nameEnd + 1 + 3) & ~3
            case Self.endNode:
                depth -= 1
                guard depth >= 0 else { return false }
            case Self.property:
                guard let length = u32(cursor), let nameOffset = u32(cursor + 4) else { return false }
                let value = cursor + 8, valueEnd = value + Int(length)
                guard valueEnd <= structEnd, depth >= 1 else { return false }
                let property = Property(depth: depth, node: node, name: stringsStart + Int(nameOffset), value: value,
                                        length: Int(length))
                guard visit(property) else { return true }
                cursor = (valueEnd + 3) & ~3
            case Self.nop:
                continue
            case Self.end:
                return true
            default:
                return false
            }
        }
        return false
    }
}

public enum BoardMemory {
    /// The RAM ranges (base, size) of the root's `memory` nodes, in blob order; nil when `blob` is not
    /// a well-formed device tree or has no memory node.
    public static func ranges(inDeviceTree blob: UnsafeRawBufferPointer) -> [(base: UInt64, size: UInt64)]? {
        guard let tree = DeviceTreeBlob(blob) else { return nil }
        var addressCells = 2, sizeCells = 1
        var ranges: [(base: UInt64, size: UInt64)] = []
        var wellFormed = true
        let walked = tree.walk { property in
            if property.depth == 1 && property.length == 4 {
                if tree.isNamed(property, "#address-cells") { addressCells = Int(tree.u32(property.value) ?? 0) }
                if tree.isNamed(property, "#size-cells") { sizeCells = Int(tree.u32(property.value) ?? 0) }
            } else if tree.isInNode(property, "memory") && tree.isNamed(property, "reg") {
                guard (1...2).contains(addressCells), (1...2).contains(sizeCells) else { wellFormed = false; return false }
                let entry = 4 * (addressCells + sizeCells)
                var offset = property.value
                while offset + entry <= property.value + property.length {
                    func cells(_ at: Int, _ count: Int) -> UInt64 {
                        count == 2 ? UInt64(tree.u32(at) ?? 0) << 32 | UInt64(tree.u32(at + 4) ?? 0) : UInt64(tree.u32(at) ?? 0)
                    }
                    ranges.append((cells(offset, addressCells), cells(offset + 4 * addressCells, sizeCells)))
                    offset += entry
                }
            }
            return true
        }
        return walked && wellFormed && !ranges.isEmpty ? ranges : nil
    }
}
