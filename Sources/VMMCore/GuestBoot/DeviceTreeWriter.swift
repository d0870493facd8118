// A writer of flattened device trees (DTB), the blob a Linux guest reads its hardware from.
//
// The format is Devicetree Specification v0.4, chapter 5 "Flattened Devicetree (DTB) Format": a
// 40-byte header, a memory reservation block (always empty here), a structure block of
// big-endian tokens, and a strings block holding each property name once. The API follows
// rust-vmm's vm-fdt: nodes are opened and closed with a `~Copyable` token (or a closure), and
// properties are typed helpers. Misuse (unbalanced nodes, bad names, a property after a subnode)
// does not trap: the first mistake is remembered and `finish()` throws it as a typed
// `DeviceTreeError`, so building code stays free of `try` and tests can see every error.
// What the guest's tree contains is GuestDeviceTree's business.

/// Bytes of a node name, property name or string value, without the terminating NUL.
/// A string literal converts implicitly (as a StaticString, so this works in Embedded Swift).
public struct DeviceTreeString: ExpressibleByStringLiteral, Equatable {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(stringLiteral value: StaticString) {
        bytes = value.withUTF8Buffer { Array($0) }
    }
}

/// The first misuse of a `DeviceTreeWriter`, reported by `finish()`.
public enum DeviceTreeError: Error, Equatable {
    /// The first node must be the root, whose name is empty (§5.4.1); there is only one root.
    case rootNodeMustBeFirstAndOnly
    /// §2.2.1: 1-31 characters of [0-9a-zA-Z,._+-] before an optional "@unit-address".
    case invalidNodeName([UInt8])
    /// §2.2.4: 1-31 characters of [0-9a-zA-Z,._+?#-].
    case invalidPropertyName([UInt8])
    case propertyOutsideNode
    /// §5.4.2: a node's properties precede its subnodes in the structure block.
    case propertyAfterSubnode
    /// A token was closed while a node opened after it was still open.
    case nodesClosedOutOfOrder
    case unclosedNodes(count: Int)
    case noRootNode
    /// A string value may not contain NUL: the DTB terminates strings with it (§2.2.4.1).
    case stringContainsNul
}

/// Proof that a node is open; hand it back to `endNode` to close that node, once.
public struct DeviceTreeNode: ~Copyable {
    fileprivate let depth: Int
}

public struct DeviceTreeWriter {
    // §5.4.1 structure block tokens.
    static let beginNodeToken: UInt32 = 0x1
    static let endNodeToken: UInt32 = 0x2
    static let propToken: UInt32 = 0x3
    static let endToken: UInt32 = 0x9
    // §5.2 header.
    static let magic: UInt32 = 0xd00d_feed
    static let version: UInt32 = 17
    static let lastCompatibleVersion: UInt32 = 16
    static let headerSize = 40
    static let reservationBlockSize = 16  // only the terminating (0, 0) entry

    /// boot_cpuid_phys in the header: the physical ID of the CPU that boots.
    public var bootCPUID: UInt32 = 0

    private var structure: [UInt8] = []
    private var strings: [UInt8] = []
    private var stringNames: [[UInt8]] = []
    private var stringOffsets: [UInt32] = []
    /// For each open node, whether a subnode has been written into it.
    private var openNodesHaveSubnodes: [Bool] = []
    private var rootWritten = false
    private var firstError: DeviceTreeError?

    public init() {}

    // MARK: Nodes

    /// Opens a node; the root is `beginNode("")`.
    public mutating func beginNode(_ name: DeviceTreeString) -> DeviceTreeNode {
        let depth = openNodesHaveSubnodes.count
        if depth == 0 {
            if rootWritten || !name.bytes.isEmpty { record(.rootNodeMustBeFirstAndOnly) }
            rootWritten = true
        } else {
            if !Self.isValidNodeName(name.bytes) { record(.invalidNodeName(name.bytes)) }
            openNodesHaveSubnodes[depth - 1] = true
        }
        putToken(Self.beginNodeToken)
        structure += name.bytes
        structure.append(0)
        padStructure()
        openNodesHaveSubnodes.append(false)
        return DeviceTreeNode(depth: depth)
    }

    public mutating func endNode(_ node: consuming DeviceTreeNode) {
        guard node.depth == openNodesHaveSubnodes.count - 1 else {
            record(.nodesClosedOutOfOrder)
            return
        }
        openNodesHaveSubnodes.removeLast()
        putToken(Self.endNodeToken)
    }

    /// Opens `name`, runs `body` to fill it, and closes it.
    public mutating func node<E: Error>(_ name: DeviceTreeString,
                                        _ body: (inout DeviceTreeWriter) throws(E) -> Void) throws(E) {
        let token = beginNode(name)
        try body(&self)
        endNode(token)
    }

    // MARK: Properties (§2.2.4.1 property value encodings; every integer is big-endian)

    /// An empty property: a boolean flag such as `interrupt-controller`.
    public mutating func property(_ name: DeviceTreeString) {
        putProperty(name, value: [])
    }

    public mutating func property(_ name: DeviceTreeString, u32 value: UInt32) {
        putProperty(name, value: Self.bigEndianBytes(value))
    }

    /// One 64-bit value as two cells, high cell first.
    public mutating func property(_ name: DeviceTreeString, u64 value: UInt64) {
        putProperty(name, value: Self.bigEndianBytes(value))
    }

    public mutating func property(_ name: DeviceTreeString, cells: [UInt32]) {
        var value: [UInt8] = []
        value.reserveCapacity(cells.count * 4)
        for cell in cells { value += Self.bigEndianBytes(cell) }
        putProperty(name, value: value)
    }

    public mutating func property(_ name: DeviceTreeString, string: DeviceTreeString) {
        property(name, strings: [string])
    }

    /// A `<stringlist>`: each string NUL-terminated, back to back.
    public mutating func property(_ name: DeviceTreeString, strings: [DeviceTreeString]) {
        var value: [UInt8] = []
        for string in strings {
            if string.bytes.contains(0) { record(.stringContainsNul) }
            value += string.bytes
            value.append(0)
        }
        putProperty(name, value: value)
    }

    public mutating func property(_ name: DeviceTreeString, bytes: [UInt8]) {
        putProperty(name, value: bytes)
    }

    /// `reg` for a parent with #address-cells = 2 and #size-cells = 2.
    public mutating func reg(_ ranges: [(address: UInt64, size: UInt64)]) {
        var value: [UInt8] = []
        for range in ranges {
            value += Self.bigEndianBytes(range.address)
            value += Self.bigEndianBytes(range.size)
        }
        putProperty("reg", value: value)
    }

    // MARK: Output

    /// The DTB: header, empty memory reservation block, structure block, strings block (§5.1).
    public consuming func finish() throws(DeviceTreeError) -> [UInt8] {
        if let firstError { throw firstError }
        guard rootWritten else { throw .noRootNode }
        guard openNodesHaveSubnodes.isEmpty else { throw .unclosedNodes(count: openNodesHaveSubnodes.count) }
        putToken(Self.endToken)

        // §5.1: the reservation block is 8-byte aligned, the structure block 4-byte aligned;
        // the 40-byte header and the 16-byte block keep both true without padding.
        let reservationOffset = Self.headerSize
        let structureOffset = reservationOffset + Self.reservationBlockSize
        let stringsOffset = structureOffset + structure.count
        let totalSize = stringsOffset + strings.count

        var blob: [UInt8] = []
        blob.reserveCapacity(totalSize)
        for field in [Self.magic, UInt32(totalSize), UInt32(structureOffset), UInt32(stringsOffset),
                      UInt32(reservationOffset), Self.version, Self.lastCompatibleVersion, bootCPUID,
                      UInt32(strings.count), UInt32(structure.count)] {
            blob += Self.bigEndianBytes(field)
        }
        blob += [UInt8](repeating: 0, count: Self.reservationBlockSize)
        blob += structure
        blob += strings
        return blob
    }

    // MARK: Internals

    private mutating func record(_ error: DeviceTreeError) {
        if firstError == nil { firstError = error }
    }

    private mutating func putProperty(_ name: DeviceTreeString, value: [UInt8]) {
        guard let open = openNodesHaveSubnodes.last else { return record(.propertyOutsideNode) }
        if open { record(.propertyAfterSubnode) }
        if !Self.isValidPropertyName(name.bytes) { record(.invalidPropertyName(name.bytes)) }
        // §5.4.1 FDT_PROP: token, then struct { u32 len; u32 nameoff; }, then the value padded to 4.
        putToken(Self.propToken)
        structure += Self.bigEndianBytes(UInt32(value.count))
        structure += Self.bigEndianBytes(stringOffset(of: name.bytes))
        structure += value
        padStructure()
    }

    /// Offset of `name` in the strings block, adding it the first time it is used.
    private mutating func stringOffset(of name: [UInt8]) -> UInt32 {
        // Linear search: a guest tree has a few dozen distinct names.
        for (index, existing) in stringNames.enumerated() where existing == name {
            return stringOffsets[index]
        }
        let offset = UInt32(strings.count)
        stringNames.append(name)
        stringOffsets.append(offset)
        strings += name
        strings.append(0)
        return offset
    }

    private mutating func putToken(_ token: UInt32) {
        structure += Self.bigEndianBytes(token)
    }

    private mutating func padStructure() {
        while structure.count % 4 != 0 { structure.append(0) }
    }

    static func bigEndianBytes(_ value: UInt32) -> [UInt8] {
        [UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    static func bigEndianBytes(_ value: UInt64) -> [UInt8] {
        bigEndianBytes(UInt32(truncatingIfNeeded: value >> 32)) + bigEndianBytes(UInt32(truncatingIfNeeded: value))
    }

    private static func isNameCharacter(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: ","), UInt8(ascii: "."),
             UInt8(ascii: "_"), UInt8(ascii: "+"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// §2.2.1 Table 2.1: node-name of 1-31 characters, then optionally "@" and a unit address
    /// drawn from the same characters.
    static func isValidNodeName(_ name: [UInt8]) -> Bool {
        let at = name.firstIndex(of: UInt8(ascii: "@")) ?? name.count
        guard at >= 1, at <= 31, name[..<at].allSatisfy(isNameCharacter) else { return false }
        guard at < name.count else { return true }
        let unitAddress = name[(at + 1)...]
        return !unitAddress.isEmpty && unitAddress.allSatisfy(isNameCharacter)
    }

    /// §2.2.4 Table 2.2: 1-31 characters, the node-name set plus "?" and "#".
    static func isValidPropertyName(_ name: [UInt8]) -> Bool {
        guard name.count >= 1, name.count <= 31 else { return false }
        return name.allSatisfy { isNameCharacter($0) || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }
    }
}

/// ASCII text assembled byte by byte: Embedded Swift has no String formatting. Used for node
/// unit addresses here and for BootLayout's messages.
struct ASCIIBuffer {
    var bytes: [UInt8] = []

    mutating func put(_ text: StaticString) {
        text.withUTF8Buffer { bytes += $0 }
    }

    mutating func put(_ text: [UInt8]) { bytes += text }

    mutating func put(_ byte: UInt8) { bytes.append(byte) }

    /// Lowercase hexadecimal, no prefix, at least `minDigits` digits (devicetree unit addresses
    /// are written this way, without leading zeros).
    mutating func putHex(_ value: UInt64, minDigits: Int = 1) {
        var digits = 1
        while digits < 16 && value >> (4 * UInt64(digits)) != 0 { digits += 1 }
        digits = max(digits, min(minDigits, 16))
        for shift in stride(from: (digits - 1) * 4, through: 0, by: -4) {
            let nibble = UInt8((value >> UInt64(shift)) & 0xf)
            bytes.append(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
        }
    }

    mutating func putDecimal(_ value: UInt64) {
        var divisor: UInt64 = 1
        while value / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }
}
