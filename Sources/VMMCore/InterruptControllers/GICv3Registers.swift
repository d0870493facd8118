// The GICv3 register maps (ARM IHI 0069, chapter 12) as decoded values: the distributor's 64 KiB
// GICD frame and a redistributor's RD_base frame; the redistributor's SGI_base frame has the
// distributor's layout for INTIDs 0–31 and is decoded as a distributor offset. Offsets the maps do
// not name decode to `.reserved`, read as zero and ignore writes; so do the registers this model
// implements as RAZ/WI on purpose (listed at the decoder). Also the fixed ID values and the GICv3
// view of an affinity. The emulation lives in GICv3Distributor.swift and GICv3Redistributor.swift.

enum GICv3DistributorRegister: Equatable {
    case control                          // GICD_CTLR        0x0000
    case type                             // GICD_TYPER       0x0004
    case implementer                      // GICD_IIDR        0x0008
    case type2                            // GICD_TYPER2      0x000C
    case group(word: Int)                 // GICD_IGROUPR<n>  0x0080–0x00FC
    case setEnable(word: Int)             // GICD_ISENABLER<n> 0x0100–0x017C
    case clearEnable(word: Int)           // GICD_ICENABLER<n> 0x0180–0x01FC
    case setPending(word: Int)            // GICD_ISPENDR<n>  0x0200–0x027C
    case clearPending(word: Int)          // GICD_ICPENDR<n>  0x0280–0x02FC
    case setActive(word: Int)             // GICD_ISACTIVER<n> 0x0300–0x037C
    case clearActive(word: Int)           // GICD_ICACTIVER<n> 0x0380–0x03FC
    case priority(interrupt: Int)         // GICD_IPRIORITYR<n> 0x0400–0x07FB, one byte per INTID
    case configuration(word: Int)         // GICD_ICFGR<n>    0x0C00–0x0CFC, two bits per INTID
    case router(interrupt: Int, high: Bool) // GICD_IROUTER<n> 0x6100–0x7FDF, 64 bits per SPI
    case identification(index: Int)       // PIDR4–7, PIDR0–3, CIDR0–3  0xFFD0–0xFFFC
    case reserved

    /// Decodes a byte offset into the 64 KiB frame. Word registers are named by the word containing
    /// the offset, IROUTER by the half; the caller checks alignment and width. RAZ/WI by choice:
    /// GICD_STATUSR, GICD_SETSPI_*/CLRSPI_* (no MBIS), GICD_ITARGETSR, GICD_SGIR, GICD_CPENDSGIR,
    /// GICD_SPENDSGIR (unused with affinity routing), GICD_IGRPMODR and GICD_NSACR (one security
    /// state), GICD_INMIR and the extended SPI range (not implemented).
    init(offset: Int) {
        switch offset {
        case 0x0000..<0x0004: self = .control
        case 0x0004..<0x0008: self = .type
        case 0x0008..<0x000C: self = .implementer
        case 0x000C..<0x0010: self = .type2
        case 0x0080..<0x0100: self = .group(word: (offset - 0x0080) / 4)
        case 0x0100..<0x0180: self = .setEnable(word: (offset - 0x0100) / 4)
        case 0x0180..<0x0200: self = .clearEnable(word: (offset - 0x0180) / 4)
        case 0x0200..<0x0280: self = .setPending(word: (offset - 0x0200) / 4)
        case 0x0280..<0x0300: self = .clearPending(word: (offset - 0x0280) / 4)
        case 0x0300..<0x0380: self = .setActive(word: (offset - 0x0300) / 4)
        case 0x0380..<0x0400: self = .clearActive(word: (offset - 0x0380) / 4)
        case 0x0400..<0x07FC: self = .priority(interrupt: offset - 0x0400)
        case 0x0C00..<0x0D00: self = .configuration(word: (offset - 0x0C00) / 4)
        case 0x6100..<0x7FE0: self = .router(interrupt: (offset - 0x6000) / 8, high: offset & 4 != 0)
        case 0xFFD0..<0x10000: self = .identification(index: (offset - 0xFFD0) / 4)
        default: self = .reserved
        }
    }

    /// GICD_IIDR (and GICR_IIDR): Implementer 0x43B (ARM) [11:0], Revision, Variant, ProductID 0.
    static let implementerValue: UInt32 = 0x0000_043B

    /// 0xFFD0–0xFFFC in address order: PIDR4–PIDR7, PIDR0–PIDR3, CIDR0–CIDR3. PIDR2 = 0x3B: ArchRev
    /// 3 [7:4] (GICv3; Linux's gic_validate_dist_version and its redistributor walk check it), JEDEC
    /// bit 3, JEP106 ID bits [6:4] of ARM's 0x3B in [2:0]. PIDR4 0x44: a 64 KiB frame (SIZE 4), JEP106
    /// continuation 4. `part` is the part number's low byte: 0x92 distributor, 0x93 redistributor, as
    /// on GIC-500. The component ID is the standard 0xB105F00D.
    static func identificationValue(index: Int, part: UInt32) -> UInt32 {
        switch index {
        case 0: return 0x44                // PIDR4
        case 4: return part                // PIDR0: part number [7:0]
        case 5: return 0xB4                // PIDR1: JEP106 [3:0] = 0xB, part number [11:8] = 4
        case 6: return 0x3B                // PIDR2
        case 8: return 0x0D                // CIDR0..CIDR3
        case 9: return 0xF0
        case 10: return 0x05
        case 11: return 0xB1
        default: return 0                  // PIDR5-7, PIDR3
        }
    }
}

/// A redistributor's RD_base frame (its first 64 KiB).
enum GICv3RedistributorRegister: Equatable {
    case control                          // GICR_CTLR   0x0000
    case implementer                      // GICR_IIDR   0x0004
    case type(high: Bool)                 // GICR_TYPER  0x0008, 64 bits
    case waker                            // GICR_WAKER  0x0014
    case identification(index: Int)       // 0xFFD0–0xFFFC, as the distributor's
    case reserved

    /// RAZ/WI by choice: GICR_STATUSR, GICR_SETLPIR/CLRLPIR, GICR_PROPBASER/PENDBASER, GICR_INVLPIR,
    /// GICR_INVALLR, GICR_SYNCR (Busy reads 0): no LPIs.
    init(offset: Int) {
        switch offset {
        case 0x0000..<0x0004: self = .control
        case 0x0004..<0x0008: self = .implementer
        case 0x0008..<0x0010: self = .type(high: offset & 4 != 0)
        case 0x0014..<0x0018: self = .waker
        case 0xFFD0..<0x10000: self = .identification(index: (offset - 0xFFD0) / 4)
        default: self = .reserved
        }
    }

    /// Each redistributor has RD_base and SGI_base, 64 KiB each (IHI 0069 §12.10).
    static let frameSize: UInt64 = 0x2_0000
    static let sgiBase = 0x1_0000
    /// GICR_WAKER (IHI 0069 §12.11.40): ProcessorSleep [1], ChildrenAsleep [2].
    static let processorSleep: UInt32 = 1 << 1
    static let childrenAsleep: UInt32 = 1 << 2
}

/// An SPI's GICD_IROUTER value: Aff0 [7:0], Aff1 [15:8], Aff2 [23:16], Interrupt_Routing_Mode [31],
/// Aff3 [39:32]; every other bit RES0. The affinity fields are MPIDR_EL1's own.
enum GICv3Routing {
    static let routingModeAny: UInt64 = 1 << 31
    static let writableBits: UInt64 = 0x0000_00FF_80FF_FFFF
}
