// An emulated Arm PrimeCell UART (PL011 r1p5, ARM DDI 0183G) for a guest that does not own a UART
// of the board: a second VM's ttyAMA0, whose bytes the VMM carries to and from a host socket.
//
// The guest's UART frame is left out of stage 2, so every access traps and arrives here as
// (offset, width, value). This file owns what the guest sees through the 4 KiB frame (§3.2, Table
// 3-1): the data register and its receive FIFO, the flag register, the line and baud settings, and
// the interrupt state (§3.4: raw status, mask, masked status, clear). It does not know where bytes go
// or how interrupts are delivered: a store to UARTDR returns the byte for the VMM to forward, the VMM
// feeds host bytes in through `receive`, and after every access and every `receive` it drives the
// UART's combined line (UARTINTR) from `interruptAsserted`.
//
// Where the TRM leaves room, or describes timing an emulation does not have, this model does what
// QEMU's pl011 does, because Linux's amba-pl011 driver is exercised against it:
// - Identification (UARTPeriphID0–3, UARTPCellID0–3, §3.3): PeriphID 0x11 0x10 0x34 0x00 (part
//   0x011, designer 0x41, revision 3 = r1p5), PCellID 0x0D 0xF0 0x05 0xB1. Linux's AMBA bus matches
//   part and designer; amba-pl011 sizes its FIFO from the revision (16 below 3, else 32), so the
//   receive FIFO here is 32 deep like r1p5's (QEMU reports r1p1 and 16).
// - Transmission completes at once: the transmit FIFO is always empty (FR.TXFE set, TXFF and BUSY
//   clear). Each store to UARTDR yields one byte and sets the TX raw interrupt, which only UARTICR
//   clears. The store transmits even with CR.UARTEN or CR.TXE clear: QEMU keeps it so on purpose, for
//   early boot code (Linux's earlycon among it) that writes before anything enables the UART.
// - Reception: a FIFO of 32 with LCR_H.FEN set, a one-character holding register without; changing
//   FEN empties it (QEMU). `receive` takes only what fits, whatever CR says (QEMU), so no overrun
//   happens and no line error exists: UARTRSR reads 0 and UARTDR's error bits [11:8] are 0.
// - The RX raw interrupt rises when a byte arrives in an empty FIFO and falls when reads empty it or
//   UARTICR clears it: the trigger level is one character whatever UARTIFLS says (it only reads
//   back), as in QEMU, because the receive timeout interrupt (RT) is not emulated and Linux reads the
//   FIFO only from its interrupt handler. Emptying the FIFO by changing FEN lowers it too, so the raw
//   bit is never left set over an empty FIFO (a handler would find nothing to read and spin).
// - Stored, read back and otherwise without effect: baud divisors, line format, break, IrDA, modem
//   outputs, flow control, loopback (CR.LBE) and the DMA enables (UARTDMACR). The modem inputs (CTS,
//   DSR, DCD, RI) read 0 and their interrupts never rise.
// - Accesses of 1, 2 or 4 bytes at a register's offset see its low bits; a narrow store is
//   zero-extended to the whole register, as QEMU does. Every other access reads as zero and is
//   ignored, without side effects: offsets that are not a multiple of 4, other widths, offsets past
//   the frame, reserved offsets and the test registers (0x080–0x08C), reads of the write-only
//   UARTICR and writes of the read-only FR, RIS, MIS and identification registers.

extension EmulatedPL011 {
    /// Register offsets of the PL011 frame (ARM DDI 0183G §3.2, Table 3-1). The identification
    /// registers, 0xFE0–0xFFC, are decoded as a range.
    enum Register: UInt64 {
        case data = 0x000                        // UARTDR
        case receiveStatus = 0x004               // UARTRSR on read, UARTECR on write
        case flags = 0x018                       // UARTFR
        case irdaLowPowerCounter = 0x020         // UARTILPR
        case integerBaudRate = 0x024             // UARTIBRD
        case fractionalBaudRate = 0x028          // UARTFBRD
        case lineControl = 0x02C                 // UARTLCR_H
        case control = 0x030                     // UARTCR
        case interruptFIFOLevel = 0x034          // UARTIFLS
        case interruptMask = 0x038               // UARTIMSC
        case rawInterruptStatus = 0x03C          // UARTRIS
        case maskedInterruptStatus = 0x040       // UARTMIS
        case interruptClear = 0x044              // UARTICR
        case dmaControl = 0x048                  // UARTDMACR

        static let identificationStart: UInt64 = 0xFE0
    }

    /// Interrupt bits, the same in UARTRIS, UARTMIS, UARTIMSC and UARTICR (§3.3.10–§3.3.13).
    /// Plain masks rather than an OptionSet: an OptionSet's array-literal witness allocates, which
    /// `-no-allocations` rejects.
    enum Interrupt {
        static let ringIndicator: UInt32 = 1 << 0
        static let clearToSend: UInt32 = 1 << 1
        static let dataCarrierDetect: UInt32 = 1 << 2
        static let dataSetReady: UInt32 = 1 << 3
        static let receive: UInt32 = 1 << 4
        static let transmit: UInt32 = 1 << 5
        static let receiveTimeout: UInt32 = 1 << 6
        static let framingError: UInt32 = 1 << 7
        static let parityError: UInt32 = 1 << 8
        static let breakError: UInt32 = 1 << 9
        static let overrunError: UInt32 = 1 << 10
        /// Bits [10:0]; [15:11] are reserved.
        static let all: UInt32 = 0x7FF
    }

    /// UARTFR bits (§3.3.3). CTS, DSR, DCD (bits 0–2) and RI (bit 8) always read 0 here.
    enum Flag {
        static let busy: UInt32 = 1 << 3
        static let receiveFIFOEmpty: UInt32 = 1 << 4
        static let transmitFIFOFull: UInt32 = 1 << 5
        static let receiveFIFOFull: UInt32 = 1 << 6
        static let transmitFIFOEmpty: UInt32 = 1 << 7
    }
}

public struct EmulatedPL011 {
    public static let frameSize: UInt64 = 0x1000

    /// PeriphID0–3 then PCellID0–3 (§3.3), byte n at bits [8n+7:8n]: the cell ID reads
    /// "B105F00D", the peripheral ID 0x00341011 (configuration 0, revision 3, designer 0x41, part 0x011).
    static let identification: UInt64 = 0xB105_F00D_0034_1011

    /// Receive FIFO depth with LCR_H.FEN set: r1p5's 32, what amba-pl011 assumes at revision 3.
    static let fifoCapacity = 32
    /// LCR_H.FEN (§3.3.7): FIFOs enabled; clear means one-character holding registers.
    static let fifoEnable: UInt32 = 1 << 4
    /// The FIFO fill at which the RX raw interrupt rises: one character (see the file comment).
    static let receiveTriggerLevel = 1

    // Writable fields of each register (§3.3); reserved bits read as zero.
    static let irdaLowPowerCounterMask: UInt32 = 0xFF       // ILPDVSR [7:0]
    static let integerBaudRateMask: UInt32 = 0xFFFF         // BAUD DIVINT [15:0]
    static let fractionalBaudRateMask: UInt32 = 0x3F        // BAUD DIVFRAC [5:0]
    static let lineControlMask: UInt32 = 0xFF               // SPS, WLEN, FEN, STP2, EPS, PEN, BRK
    static let controlMask: UInt32 = 0xFF87                 // [15:7] and [2:0]; [6:3] reserved
    static let interruptFIFOLevelMask: UInt32 = 0x3F        // RXIFLSEL [5:3], TXIFLSEL [2:0]
    static let dmaControlMask: UInt32 = 0x7                 // DMAONERR, TXDMAE, RXDMAE

    /// Bytes received and not yet read, oldest at `receiveHead`. Invariants: `receiveHead` <
    /// `fifoCapacity` and `receiveCount` <= `receiveDepth` <= `fifoCapacity`, so every index taken
    /// modulo `fifoCapacity` is in bounds.
    var receiveFIFO: InlineArray<32, UInt8>
    var receiveHead = 0
    var receiveCount = 0

    var rawInterrupts: UInt32 = 0            // UARTRIS
    var interruptMask: UInt32 = 0            // UARTIMSC
    // Reset values as §3.2, Table 3-1 gives them: CR has TXE and RXE set, IFLS selects half full.
    var control: UInt32 = 0x0300
    var lineControl: UInt32 = 0
    var integerBaudRate: UInt32 = 0
    var fractionalBaudRate: UInt32 = 0
    var irdaLowPowerCounter: UInt32 = 0
    var interruptFIFOLevel: UInt32 = 0x12
    var dmaControl: UInt32 = 0

    public init() {
        receiveFIFO = InlineArray(repeating: 0)
    }

    /// The interrupt line, UARTINTR (§3.4): (RIS & IMSC) != 0.
    public var interruptAsserted: Bool { rawInterrupts & interruptMask != 0 }

    /// 32 with FEN set, 1 without (§3.3.7, FEN: disabled FIFOs become one-character holding registers).
    var receiveDepth: Int { lineControl & Self.fifoEnable != 0 ? Self.fifoCapacity : 1 }

    /// The bits an access of `width` bytes at `offset` sees, or nil when the access reads as zero and
    /// is ignored: a width other than 1, 2 or 4, an offset past the frame or not word-aligned.
    static func accessMask(offset: UInt64, width: Int) -> UInt32? {
        guard offset < frameSize, offset & 3 == 0 else { return nil }
        switch width {
        case 1: return 0xFF
        case 2: return 0xFFFF
        case 4: return 0xFFFF_FFFF
        default: return nil
        }
    }

    /// UARTFR (§3.3.3), computed from the FIFO: transmission is instantaneous, so the transmit side
    /// is always empty and never busy.
    var flags: UInt32 {
        var flags = Flag.transmitFIFOEmpty
        if receiveCount == 0 { flags |= Flag.receiveFIFOEmpty }
        if receiveCount >= receiveDepth { flags |= Flag.receiveFIFOFull }
        return flags
    }

    /// A load from the register frame; offset < frameSize, width 1, 2 or 4. Anything else reads 0.
    public mutating func read(offset: UInt64, width: Int) -> UInt32 {
        guard let mask = Self.accessMask(offset: offset, width: width) else { return 0 }
        if offset >= Register.identificationStart {
            // Cannot exceed 7: offset < 0x1000 and is a multiple of 4.
            let index = (offset - Register.identificationStart) / 4
            return UInt32(truncatingIfNeeded: Self.identification >> (8 * index)) & 0xFF & mask
        }
        let value: UInt32
        switch Register(rawValue: offset) {
        case .data: value = popReceivedByte()
        case .receiveStatus: value = 0                       // no line errors (file comment)
        case .flags: value = flags
        case .irdaLowPowerCounter: value = irdaLowPowerCounter
        case .integerBaudRate: value = integerBaudRate
        case .fractionalBaudRate: value = fractionalBaudRate
        case .lineControl: value = lineControl
        case .control: value = control
        case .interruptFIFOLevel: value = interruptFIFOLevel
        case .interruptMask: value = interruptMask
        case .rawInterruptStatus: value = rawInterrupts
        case .maskedInterruptStatus: value = rawInterrupts & interruptMask
        case .dmaControl: value = dmaControl
        case .interruptClear, nil: value = 0                 // write-only, reserved, test registers
        }
        return value & mask
    }

    /// A store to the register frame. Returns the byte the guest transmitted when the store was to
    /// UARTDR, whether or not CR.UARTEN and CR.TXE are set (as QEMU: see the file comment); nil for
    /// every other store, including the ignored ones.
    public mutating func write(offset: UInt64, width: Int, value: UInt32) -> UInt8? {
        guard let mask = Self.accessMask(offset: offset, width: width) else { return nil }
        let value = value & mask
        switch Register(rawValue: offset) {
        case .data:
            // §3.3.1: bits [7:0] are the character; the transmit side empties at once, so the TX
            // interrupt condition holds after every store (§3.4.3), until UARTICR clears it.
            rawInterrupts |= Interrupt.transmit
            return UInt8(truncatingIfNeeded: value)
        case .receiveStatus: break                           // UARTECR: clears errors, which never occur
        case .irdaLowPowerCounter: irdaLowPowerCounter = value & Self.irdaLowPowerCounterMask
        case .integerBaudRate: integerBaudRate = value & Self.integerBaudRateMask
        case .fractionalBaudRate: fractionalBaudRate = value & Self.fractionalBaudRateMask
        case .lineControl:
            let newValue = value & Self.lineControlMask
            if (newValue ^ lineControl) & Self.fifoEnable != 0 { flushReceiveFIFO() }
            lineControl = newValue
        case .control: control = value & Self.controlMask
        case .interruptFIFOLevel: interruptFIFOLevel = value & Self.interruptFIFOLevelMask
        case .interruptMask: interruptMask = value & Interrupt.all
        case .interruptClear: rawInterrupts &= ~value
        case .dmaControl: dmaControl = value & Self.dmaControlMask
        case .flags, .rawInterruptStatus, .maskedInterruptStatus, nil: break   // read-only, reserved
        }
        return nil
    }

    /// Bytes from the host side, in order; returns how many the receive FIFO took (the rest is the
    /// caller's to retry or drop). Takes nothing once the FIFO holds `receiveDepth` bytes.
    public mutating func receive(_ bytes: UnsafeRawBufferPointer) -> Int {
        var taken = 0
        for byte in bytes {
            guard receiveCount < receiveDepth else { break }
            receiveFIFO[(receiveHead + receiveCount) % Self.fifoCapacity] = byte
            receiveCount += 1
            taken += 1
            // §3.4.2: the receive interrupt is asserted when the FIFO reaches the trigger level.
            if receiveCount == Self.receiveTriggerLevel { rawInterrupts |= Interrupt.receive }
        }
        return taken
    }

    /// A load of UARTDR (§3.3.1): the oldest byte, error bits [11:8] zero; 0 when the FIFO is empty.
    mutating func popReceivedByte() -> UInt32 {
        var value: UInt32 = 0
        if receiveCount > 0 {
            value = UInt32(receiveFIFO[receiveHead])
            receiveHead = (receiveHead + 1) % Self.fifoCapacity
            receiveCount -= 1
        }
        // §3.4.2: reading below the trigger level clears the receive interrupt.
        if receiveCount < Self.receiveTriggerLevel { rawInterrupts &= ~Interrupt.receive }
        return value
    }

    /// Empties the receive FIFO (an LCR_H.FEN change) and lowers the RX interrupt with it.
    mutating func flushReceiveFIFO() {
        receiveHead = 0
        receiveCount = 0
        rawInterrupts &= ~Interrupt.receive
    }
}
