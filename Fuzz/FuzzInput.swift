// What every fuzz target shares: the libFuzzer input read as a stream of little-endian fields, and
// one small guest RAM. Each target is built as its own binary from the core's sources, this file and
// one harness, all in module VMMCore (scripts/fuzz.sh), so harnesses may use internal API too.
//
// An exhausted input reads as zeros rather than ending the run: libFuzzer then explores short inputs
// as readily as long ones, and every harness bounds its own loops.

struct FuzzInput {
    let bytes: UnsafeRawBufferPointer
    private(set) var position = 0

    init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = UnsafeRawBufferPointer(start: data, count: size)
    }

    var isEmpty: Bool { position >= bytes.count }
    var remaining: Int { bytes.count - min(position, bytes.count) }

    mutating func u8() -> UInt8 {
        guard position < bytes.count else { return 0 }
        position += 1
        return bytes[position - 1]
    }
    mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
    mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
    mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }
    mutating func bool() -> Bool { u8() & 1 != 0 }

    /// Up to `count` bytes (fewer when the input ends first).
    mutating func take(_ count: Int) -> UnsafeRawBufferPointer {
        let n = min(max(count, 0), remaining)
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
    }

    /// Everything not read yet.
    mutating func rest() -> UnsafeRawBufferPointer { take(remaining) }
}

/// 64 KiB of guest RAM at 0x4000_0000, allocated once and zeroed for every input.
enum FuzzRAM {
    static let base: UInt64 = 0x4000_0000
    static let size: UInt64 = 0x1_0000
    nonisolated(unsafe) static let host = UnsafeMutableRawPointer.allocate(byteCount: Int(size), alignment: 16)

    /// A zeroed RAM, then `fill` copied to its start (as much as fits).
    static func fresh(fill: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> GuestMemory {
        host.initializeMemory(as: UInt8.self, repeating: 0, count: Int(size))
        if let source = fill.baseAddress {
            host.copyMemory(from: source, byteCount: min(fill.count, Int(size)))
        }
        return GuestMemory(base: GuestPhysicalAddress(base), size: size, host: host)
    }

    /// An address near RAM: base + a 16-bit offset (the last few land past the end), or with
    /// `raw` any 64-bit value, so overflow and out-of-RAM paths are reached too.
    static func address(_ input: inout FuzzInput, raw: Bool) -> GuestPhysicalAddress {
        raw ? GuestPhysicalAddress(input.u64()) : GuestPhysicalAddress(base + UInt64(input.u16()))
    }
}

/// A failed harness check: traps with the message, which libFuzzer reports as a crash.
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: StaticString) {
    if !condition() { fatalError("\(message)") }
}
