// Stage-2 translation tables for the guest (Arm ARM D8 "The AArch64 Virtual Memory System
// Architecture", VMSAv8-64 stage 2, 4 KiB granule, 32-bit IPA space starting at level 1).
//
// The native platform maps guest RAM (Normal, write-back) and the passed-through devices
// (Device-nGnRE); every IPA left unmapped faults to EL2, where the core emulates or refuses it.
// Tables come from the VMM heap, 4 KiB aligned; the VMM is identity mapped, so a table's host
// address is its physical address.
import NativeHardware

struct Stage2Translation {
    enum Memory { case normal, device }

    /// VTCR_EL2: T0SZ 32 (4 GiB IPA), SL0 1 (start at level 1), inner/outer write-back
    /// walks, inner shareable, 4 KiB granule, PS 32-bit, RES1 bit 31.
    static let ipaBits = 32
    static let vtcr: UInt64 = (1 << 31) | (3 << 12) | (1 << 10) | (1 << 8) | (1 << 6) | 32

    private let root: UnsafeMutablePointer<UInt64>

    init() {
        root = Stage2Translation.newTable()
    }

    /// VTTBR_EL2 for this table and VM id.
    func vttbr(vmid: UInt16) -> UInt64 {
        UInt64(UInt(bitPattern: root)) | (UInt64(vmid) << 48)
    }

    private static func newTable() -> UnsafeMutablePointer<UInt64> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        let table = raw.bindMemory(to: UInt64.self, capacity: 512)
        table.initialize(repeating: 0, count: 512)
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
            let level2 = child(of: root, Int((i >> 30) & 0x1ff))
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
