// Guest physical memory: the one place where a guest address becomes a host pointer.
//
// A `GuestPhysicalAddress` is an intermediate physical address (IPA) as the guest sees it; it is
// never a host pointer. `GuestMemory` owns the translation of (address, length) into a host range
// and checks every such request against the RAM region before any byte is touched. Device models,
// the loader and the device-tree writer reach guest RAM only through this type.

/// An address in the guest's physical address space (an IPA).
public struct GuestPhysicalAddress: Equatable, Comparable {
    public let raw: UInt64
    @inlinable public init(_ raw: UInt64) { self.raw = raw }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.raw < b.raw }

    /// `self + offset`, or nil when the sum leaves the 64-bit address space.
    @inlinable public func adding(_ offset: UInt64) -> GuestPhysicalAddress? {
        let (sum, overflow) = raw.addingReportingOverflow(offset)
        return overflow ? nil : GuestPhysicalAddress(sum)
    }
}

/// One contiguous region of guest RAM, mapped at `base` in the guest and at `host` in the VMM.
public struct GuestMemory {
    public let base: GuestPhysicalAddress
    public let size: UInt64
    @usableFromInline let host: UnsafeMutableRawPointer

    /// `host` must point at `size` bytes that stay mapped for the life of this value.
    public init(base: GuestPhysicalAddress, size: UInt64, host: UnsafeMutableRawPointer) {
        self.base = base
        self.size = size
        self.host = host
    }

    public var end: UInt64 { base.raw &+ size }

    /// The offset of [address, address + length) inside RAM, or nil when any byte lies outside.
    /// All guest-address arithmetic goes through here.
    @inlinable public func offset(of address: GuestPhysicalAddress, length: UInt64) -> UInt64? {
        guard address.raw >= base.raw else { return nil }
        let offset = address.raw - base.raw
        guard offset <= size, length <= size - offset else { return nil }
        return offset
    }

    public func contains(_ address: GuestPhysicalAddress, length: UInt64 = 1) -> Bool {
        offset(of: address, length: length) != nil
    }

    /// Runs `body` on the host bytes of [address, address + length), or returns nil when the range
    /// is not entirely inside guest RAM.
    @inlinable public func withBytes<R>(at address: GuestPhysicalAddress, length: UInt64,
                                       _ body: (UnsafeMutableRawBufferPointer) -> R) -> R? {
        guard let offset = offset(of: address, length: length) else { return nil }
        // SAFETY: offset + length <= size was checked above, and `host` covers `size` bytes.
        let start = host + Int(offset)
        return body(UnsafeMutableRawBufferPointer(start: start, count: Int(length)))
    }

    /// Copies `bytes` into guest RAM at `address`; false (and nothing written) when it does not fit.
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer, at address: GuestPhysicalAddress) -> Bool {
        withBytes(at: address, length: UInt64(bytes.count)) { dest in
            if let src = bytes.baseAddress, bytes.count > 0 {
                dest.baseAddress!.copyMemory(from: src, byteCount: bytes.count)
            }
            return true
        } ?? false
    }

    /// Reads a little-endian integer of type T at `address`, or nil when outside RAM.
    public func load<T: FixedWidthInteger>(_ type: T.Type, at address: GuestPhysicalAddress) -> T? {
        withBytes(at: address, length: UInt64(MemoryLayout<T>.size)) { bytes in
            T(littleEndian: bytes.loadUnaligned(as: T.self))
        }
    }

    /// Writes a little-endian integer at `address`; false when outside RAM.
    @discardableResult
    public func store<T: FixedWidthInteger>(_ value: T, at address: GuestPhysicalAddress) -> Bool {
        withBytes(at: address, length: UInt64(MemoryLayout<T>.size)) { bytes in
            bytes.storeBytes(of: value.littleEndian, as: T.self)
            return true
        } ?? false
    }
}
