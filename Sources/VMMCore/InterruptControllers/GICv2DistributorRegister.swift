// The GICv2 distributor register map (ARM IHI 0048B §4.1.2, Table 4-1) as a decoded value.
//
// An offset into the 4 KiB GICD frame becomes one named register and the index within it, so the
// emulation in VGICDistributor.swift switches on names instead of comparing address ranges. Offsets
// the map does not name (and the implementation-defined 0xD00–0xDFC block, and NSACR, which has no
// meaning without Security Extensions) decode to `.reserved`: read as zero, write ignored. This file
// also holds the fixed identification values the distributor reports.

enum GICv2DistributorRegister: Equatable {
    case control                          // GICD_CTLR      0x000
    case type                             // GICD_TYPER     0x004
    case implementer                      // GICD_IIDR      0x008
    case group(word: Int)                 // GICD_IGROUPRn  0x080–0x0FC
    case setEnable(word: Int)             // GICD_ISENABLERn 0x100–0x17C
    case clearEnable(word: Int)           // GICD_ICENABLERn 0x180–0x1FC
    case setPending(word: Int)            // GICD_ISPENDRn  0x200–0x27C
    case clearPending(word: Int)          // GICD_ICPENDRn  0x280–0x2FC
    case setActive(word: Int)             // GICD_ISACTIVERn 0x300–0x37C
    case clearActive(word: Int)           // GICD_ICACTIVERn 0x380–0x3FC
    case priority(interrupt: Int)         // GICD_IPRIORITYRn 0x400–0x7FB, one byte per INTID
    case targets(interrupt: Int)          // GICD_ITARGETSRn 0x800–0xBFB, one byte per INTID
    case configuration(word: Int)         // GICD_ICFGRn    0xC00–0xCFC, two bits per INTID
    case softwareInterrupt                // GICD_SGIR      0xF00
    case clearSGIPending(sgi: Int)        // GICD_CPENDSGIRn 0xF10–0xF1F, one byte per SGI
    case setSGIPending(sgi: Int)          // GICD_SPENDSGIRn 0xF20–0xF2F, one byte per SGI
    case identification(index: Int)       // PIDR4–7, PIDR0–3, CIDR0–3  0xFD0–0xFFC
    case reserved

    /// Decodes a byte offset in 0..<0x1000. Word registers are named by the word containing the
    /// offset; the caller checks alignment and width.
    init(offset: Int) {
        switch offset {
        case 0x000..<0x004: self = .control
        case 0x004..<0x008: self = .type
        case 0x008..<0x00C: self = .implementer
        case 0x080..<0x100: self = .group(word: (offset - 0x080) / 4)
        case 0x100..<0x180: self = .setEnable(word: (offset - 0x100) / 4)
        case 0x180..<0x200: self = .clearEnable(word: (offset - 0x180) / 4)
        case 0x200..<0x280: self = .setPending(word: (offset - 0x200) / 4)
        case 0x280..<0x300: self = .clearPending(word: (offset - 0x280) / 4)
        case 0x300..<0x380: self = .setActive(word: (offset - 0x300) / 4)
        case 0x380..<0x400: self = .clearActive(word: (offset - 0x380) / 4)
        case 0x400..<0x7FC: self = .priority(interrupt: offset - 0x400)
        case 0x800..<0xBFC: self = .targets(interrupt: offset - 0x800)
        case 0xC00..<0xD00: self = .configuration(word: (offset - 0xC00) / 4)
        case 0xF00..<0xF04: self = .softwareInterrupt
        case 0xF10..<0xF20: self = .clearSGIPending(sgi: offset - 0xF10)
        case 0xF20..<0xF30: self = .setSGIPending(sgi: offset - 0xF20)
        case 0xFD0..<0x1000: self = .identification(index: (offset - 0xFD0) / 4)
        default: self = .reserved
        }
    }

    /// §4.1.4: byte accesses are permitted only to these registers; all others are word-only.
    var allowsByteAccess: Bool {
        switch self {
        case .priority, .targets, .clearSGIPending, .setSGIPending: return true
        default: return false
        }
    }

    /// Byte `lane` (0...3) of a word access to a register whose bytes are registers of their own
    /// (`allowsByteAccess`): the same register for the INTID or SGI `lane` further on. A word
    /// write decodes its offset once and reaches the four bytes through this.
    func byte(_ lane: Int) -> GICv2DistributorRegister {
        switch self {
        case .priority(let interrupt): return .priority(interrupt: interrupt + lane)
        case .targets(let interrupt): return .targets(interrupt: interrupt + lane)
        case .clearSGIPending(let sgi): return .clearSGIPending(sgi: sgi + lane)
        case .setSGIPending(let sgi): return .setSGIPending(sgi: sgi + lane)
        default: return self
        }
    }

    /// GICD_IIDR (§4.3.3): ProductID 0x02 [31:24], Variant/Revision 0, Implementer 0x43B (ARM).
    static let implementerValue: UInt32 = 0x0200_043B

    /// 0xFD0–0xFFC in address order: PIDR4–PIDR7, PIDR0–PIDR3, CIDR0–CIDR3 (§4.3.16 and the
    /// CoreSight ID layout). PIDR2 = 0x2B: ArchRev 2 in [7:4] (GICv2), JEDEC bit 3, JEP106 ID bits
    /// [6:4] of ARM's 0x3B in [2:0]; part number 0x490 as on GIC-400. The component ID is the standard
    /// 0xB105F00D.
    static func identificationValue(index: Int) -> UInt32 {
        switch index {
        case 0: return 0x04                // PIDR4: 4 KiB frame count 0, JEP106 continuation 4
        case 4: return 0x90                // PIDR0: part number [7:0]
        case 5: return 0xB4                // PIDR1: JEP106 [3:0] = 0xB, part number [11:8] = 4
        case 6: return 0x2B                // PIDR2
        case 8: return 0x0D                // CIDR0..CIDR3
        case 9: return 0xF0
        case 10: return 0x05
        case 11: return 0xB1
        default: return 0                  // PIDR5-7, PIDR3
        }
    }
}
