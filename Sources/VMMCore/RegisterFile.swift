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

    /// Reads register `n` (0...31); 31 is the zero register.
    @inlinable public func read(_ n: Int) -> UInt64 {
        n >= 0 && n < 31 ? x[n] : 0
    }

    /// Writes register `n` (0...31); a write to 31 (the zero register) is discarded.
    @inlinable public mutating func write(_ n: Int, _ value: UInt64) {
        if n >= 0 && n < 31 { x[n] = value }
    }
}
