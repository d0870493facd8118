// Stage-2 translation tables for the guest (Arm ARM D8 "The AArch64 Virtual Memory System
// Architecture", VMSAv8-64 stage 2, 4 KiB granule, 40-bit IPA space starting at level 1 with two
// concatenated tables: D8.2.6 lets stage 2 start a level lower by concatenating up to 16 tables).
//
// The native platform maps guest RAM (Normal, write-back) and the passed-through devices
// (Device-nGnRE); every IPA left unmapped faults to EL2, where the core emulates or refuses it.
// Tables come from the VMM heap, 4 KiB aligned; the VMM is identity mapped, so a table's host
// address is its physical address.
import NativeHardware

struct Stage2Translation {
    enum Memory { case normal, device }

    /// The guest's IPA size: 1 TiB, room for QEMU virt's largest RAM (255 GiB from 1 GiB) and what
    /// every CPU the VMM runs on can output (PARange 40 bits on a Cortex-A53, more on later ones).
    static let ipaBits = 40
    /// The root: level 1, two tables of 512 entries side by side, indexed by IPA bits [39:30].
    static let rootEntries = 1024
    /// VTCR_EL2: T0SZ 24 (40-bit IPA), SL0 1 (start at level 1), inner/outer write-back walks,
    /// inner shareable, 4 KiB granule, PS 40 bits (2 << 16), RES1 bit 31.
    static let vtcr: UInt64 = (1 << 31) | (2 << 16) | (3 << 12) | (1 << 10) | (1 << 8) | (1 << 6) | UInt64(64 - ipaBits)

    private let root: UnsafeMutablePointer<UInt64>

    init() {
        root = Stage2Translation.newTable(entries: Stage2Translation.rootEntries)
    }

    /// VTTBR_EL2 for this table and VM id.
    func vttbr(vmid: UInt16) -> UInt64 {
        UInt64(UInt(bitPattern: root)) | (UInt64(vmid) << 48)
    }

    /// A zeroed table of `entries` descriptors, aligned to its size (a concatenated root must be).
    private static func newTable(entries: Int = 512) -> UnsafeMutablePointer<UInt64> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: entries * 8, alignment: entries * 8)
        let table = raw.bindMemory(to: UInt64.self, capacity: entries)
        table.initialize(repeating: 0, count: entries)
        return table
    }

    private static func attributes(_ memory: Memory) -> UInt64 {
        let accessFlag: UInt64 = 1 << 10
        let readWrite: UInt64 = 3 << 6           // S2AP
        switch memory {
        case .normal: return accessFlag | (3 << 8) | readWrite | (0xf << 2)  // inner shareable, MemAttr WB
        case .device: return (1 << 54) | accessFlag | readWrite | (0x1 << 2) // XN, MemAttr Device-nGnRE
        }
    }

    /// The next-level table behind entry `index` of `table`, created when missing.
    private func child(of table: UnsafeMutablePointer<UInt64>, _ index: Int) -> UnsafeMutablePointer<UInt64> {
        let entry = table[index]
        if entry & 3 == 3 {
            return UnsafeMutablePointer(bitPattern: UInt(entry & 0x0000_ffff_ffff_f000))!
        }
        let next = Stage2Translation.newTable()
        table[index] = UInt64(UInt(bitPattern: next)) | 3
        return next
    }

    /// Maps [ipa, ipa + size) to [pa, pa + size); all three must be 4 KiB aligned. Uses 2 MiB
    /// blocks where both addresses and the remaining size allow.
    func map(ipa: UInt64, pa: UInt64, size: UInt64, _ memory: Memory) {
        let attributes = Stage2Translation.attributes(memory)
        var offset: UInt64 = 0
        while offset < size {
            let i = ipa + offset, p = pa + offset
            let level2 = child(of: root, Int((i >> 30) & UInt64(Stage2Translation.rootEntries - 1)))
            let l2index = Int((i >> 21) & 0x1ff)
            if i & 0x1f_ffff == 0 && p & 0x1f_ffff == 0 && size - offset >= 0x20_0000 {
                level2[l2index] = p | attributes | 1
                offset += 0x20_0000
            } else {
                let level3 = child(of: level2, l2index)
                level3[Int((i >> 12) & 0x1ff)] = p | attributes | 3
                offset += 0x1000
            }
        }
    }
}
