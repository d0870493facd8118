// The guest vCPU's general-purpose registers as the core sees them at an exit.
//
// The platform fills a `RegisterFile` from wherever it keeps the trapped state (the native trap
// frame, or seL4's TCB registers), hands it to the core, and writes it back before resuming.
// Register number 31 in an instruction syndrome means xzr/wzr: it reads as zero and ignores writes.

public struct RegisterFile {
    public var x: InlineArray<31, UInt64>
    public var pc: UInt64
    public var pstate: UInt64

    public init() {
        x = InlineArray(repeating: 0)
        pc = 0
        pstate = 0
    }

    /// True when a `RegisterFile` is laid out as 33 words: x0-x30, the PC, PSTATE, in that order, so
    /// that a platform may let the core work in place on a trap frame of that layout (native's
    /// start.S) instead of copying it in and out at every exit. Swift lays out a struct's stored
    /// properties in order; this checks it rather than assumes it.
    public static var isFrameLayout: Bool {
        var probe = RegisterFile()
        for n in 0..<31 { probe.x[n] = UInt64(n + 1) }
        probe.pc = 0x5043
        probe.pstate = 0x5053
        guard MemoryLayout<RegisterFile>.size == 33 * 8, MemoryLayout<RegisterFile>.alignment == 8 else { return false }
        return withUnsafeBytes(of: probe) { bytes in
            for n in 0..<31 where bytes.load(fromByteOffset: n * 8, as: UInt64.self) != UInt64(n + 1) { return false }
            return bytes.load(fromByteOffset: 31 * 8, as: UInt64.self) == 0x5043
                && bytes.load(fromByteOffset: 32 * 8, as: UInt64.self) == 0x5053
        }
    }

    /// Reads register `n` (0...31); 31 is the zero register.
    ///
    /// `mutating` although it changes nothing: Swift reads an element of a non-mutable InlineArray
    /// from a copy of the whole array (a 248-byte memcpy on every exit that read a register), while
    /// through `inout` it loads the one word in place. Every caller on the exit path holds the
    /// registers `inout` anyway.
    @inlinable public mutating func read(_ n: Int) -> UInt64 {
        n >= 0 && n < 31 ? x[n] : 0
    }

    /// Writes register `n` (0...31); a write to 31 (the zero register) is discarded.
    @inlinable public mutating func write(_ n: Int, _ value: UInt64) {
        if n >= 0 && n < 31 { x[n] = value }
    }
}

extension RegisterFile: Equatable {
    public static func == (a: RegisterFile, b: RegisterFile) -> Bool {
        guard a.pc == b.pc, a.pstate == b.pstate else { return false }
        for n in 0..<31 where a.x[n] != b.x[n] { return false }
        return true
    }
}
