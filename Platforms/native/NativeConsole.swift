// The VMM's own output on the board's PL011 (polled, no interrupts). The guest drives the same
// UART directly (it is passed through); the VMM writes only start-up lines and stop reports.
import NativeHardware

enum NativeConsole {
    static let uartBase: UInt = 0x0900_0000
    static let flagRegister: UInt = 0x18
    static let transmitFIFOFull: UInt32 = 1 << 5

    static func put(_ byte: UInt8) {
        while mmio_read32(uartBase + flagRegister) & transmitFIFOFull != 0 {}
        mmio_write32(uartBase, UInt32(byte))
    }

    static func write(_ message: StaticString) {
        message.withUTF8Buffer { bytes in
            for byte in bytes {
                if byte == UInt8(ascii: "\n") { put(UInt8(ascii: "\r")) }
                put(byte)
            }
        }
    }

    static func hex(_ value: UInt64) {
        put(UInt8(ascii: "0")); put(UInt8(ascii: "x"))
        var shift = 60
        while shift >= 0 {
            let nibble = UInt8((value >> UInt64(shift)) & 0xf)
            put(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
            shift -= 4
        }
    }

    static func decimal(_ value: UInt64) {
        var digits = InlineArray<20, UInt8>(repeating: 0)
        var count = 0
        var rest = value
        repeat {
            digits[count] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
            count += 1
        } while rest != 0
        while count > 0 { count -= 1; put(digits[count]) }
    }
}

/// Called from the vectors when the VMM itself faults at EL2: a VMM bug, never a guest's doing.
@_cdecl("hypervisor_panic")
func hypervisorPanic(_ kind: UInt64, _ esr: UInt64, _ elr: UInt64, _ far: UInt64) {
    NativeConsole.write("\nvmm: PANIC: exception in the VMM at EL2, vector ")
    NativeConsole.decimal(kind)
    NativeConsole.write(" ESR ")
    NativeConsole.hex(esr)
    NativeConsole.write(" ELR ")
    NativeConsole.hex(elr)
    NativeConsole.write(" FAR ")
    NativeConsole.hex(far)
    NativeConsole.write("\n")
    while true { wfi() }
}
