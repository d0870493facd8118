// Fuzz target "distributor": a guest programming the emulated GICv2 distributor (ARM IHI 0048B §4.3)
// while devices raise interrupts and the guest deactivates them (VGICDistributor.swift,
// ListRegisters.swift).
//
// Input: vCPU, SPI and list register counts, then records: a distributor read or write (any vCPU
// number, offset, width, value), an injected interrupt, or a freed list register. The sink keeps
// what the platform's list registers would hold; after every record the core's shadow must equal it,
// every entry must name an interrupt that exists, and no vCPU may hold one (interrupt, source) in two
// list registers (the GIC forbids it, GICv2 §5.3.8).

struct FuzzListRegisters: VirtualInterruptSink {
    let vcpuCount: Int
    let count: Int
    let interruptCount: Int
    var entries: [ListRegisterEntry?]

    mutating func writeListRegister(vcpu: Int, index: Int, entry: ListRegisterEntry) {
        fuzzCheck(vcpu >= 0 && vcpu < vcpuCount, "list register write for a vCPU that does not exist")
        fuzzCheck(index >= 0 && index < count, "list register index past GICH_VTR.ListRegs")
        fuzzCheck(entry.interrupt < UInt32(interruptCount), "delivered an interrupt that does not exist")
        entries[vcpu * count + index] = entry
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDistributor(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    var vgic = VGIC(vcpuCount: Int(input.u8() % 10), spiCount: Int(input.u16() % 1100),
                    listRegisterCount: Int(input.u8() % 8))
    let count = vgic.lists.count
    var sink = FuzzListRegisters(vcpuCount: vgic.vcpuCount, count: count, interruptCount: vgic.interruptCount,
                                 entries: [ListRegisterEntry?](repeating: nil, count: vgic.vcpuCount * count))
    var records = 0
    while !input.isEmpty && records < 4096 {
        records += 1
        let op = input.u8()
        // -1 and numbers past vcpuCount too: the platform passes the faulting vCPU, never trusted.
        let vcpu = Int(input.u8() % 10) - 1
        let width = [4, 1, 2, 8][Int(op >> 2) % 4]
        switch op % 4 {
        case 0:
            // Mostly inside the 4 KiB frame, sometimes just past it.
            let offset = UInt64(input.u16()) % 0x1010
            vgic.distributorWrite(vcpu: vcpu, offset: offset, width: width, value: UInt64(input.u32()), sink: &sink)
        case 1:
            _ = vgic.distributorRead(vcpu: vcpu, offset: UInt64(input.u16()) % 0x1010, width: width)
        case 2:
            _ = vgic.inject(vcpu: vcpu, interrupt: UInt32(input.u16() % 1100), sink: &sink)
        default:
            // The hardware reports an LR free only when it held something; also try one that did not.
            let index = Int(input.u8()) % (count + 1)
            if vcpu >= 0 && vcpu < vgic.vcpuCount && index < count { sink.entries[vcpu * count + index] = nil }
            _ = vgic.listRegisterFreed(vcpu: vcpu, index: index, sink: &sink)
        }
        for v in 0..<vgic.vcpuCount {
            for i in 0..<count {
                let entry = vgic.listRegister(vcpu: v, index: i)
                fuzzCheck(entry == sink.entries[v * count + i], "core's list register shadow differs from the hardware")
                guard let entry else { continue }
                for j in (i + 1)..<count {
                    if let other = vgic.listRegister(vcpu: v, index: j) {
                        fuzzCheck(other.interrupt != entry.interrupt || other.sourceCPU != entry.sourceCPU,
                                  "one interrupt in two list registers")
                    }
                }
            }
        }
    }
    return 0
}
