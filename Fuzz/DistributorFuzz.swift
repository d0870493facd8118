// Fuzz target "distributor": a guest programming the emulated GIC (VGIC.swift and its register
// maps: GICv2 ARM IHI 0048B §4.3; GICv3 IHI 0069 GICD, GICR and ICC_SGI1R_EL1) while devices raise
// interrupts and the guest deactivates them (ListRegisters.swift).
//
// Input: the GIC's version and vCPU count (one byte: below 0x80 a GICv2 with byte % 10 vCPUs, from
// 0x80 a GICv3 with (byte & 0x7F) % 70), SPI and list register counts, then records: a distributor
// or redistributor read or write (any vCPU number, offset, width, value), an SGI register write, an
// injected interrupt, or a freed list register. The sink keeps what the platform's list registers
// would hold; after every record the core's shadow must equal it, every entry must name an
// interrupt that exists, no vCPU may hold one (interrupt, source) in two list registers (the GIC
// forbids it, GICv2 §5.3.8, GICv3 §4.7), and a GICv3 entry has no source CPU.

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
    let shape = input.u8()
    let version: GICVersion = shape < 0x80 ? .v2 : .v3
    var vgic = VGIC(version: version, vcpuCount: version == .v2 ? Int(shape % 10) : Int(shape & 0x7F) % 70,
                    spiCount: Int(input.u16() % 1100), listRegisterCount: Int(input.u8() % 8))
    let count = vgic.lists.count
    var sink = FuzzListRegisters(vcpuCount: vgic.vcpuCount, count: count, interruptCount: vgic.interruptCount,
                                 entries: [ListRegisterEntry?](repeating: nil, count: vgic.vcpuCount * count))
    // Offsets mostly inside the frames, sometimes just past them.
    let distributorSpan: UInt64 = version == .v2 ? 0x1010 : 0x1_0010
    let redistributorSpan = UInt64(vgic.vcpuCount + 1) * 0x2_0000 + 0x10
    var records = 0
    while !input.isEmpty && records < 4096 {
        records += 1
        let op = input.u8()
        // -1 and numbers past vcpuCount too: the platform passes the faulting vCPU, never trusted.
        let vcpu = Int(input.u8()) % (max(vgic.vcpuCount, 8) + 2) - 1
        let width = [4, 1, 2, 8][Int(op >> 3) % 4]
        switch op % 8 {
        case 0:
            let offset = version == .v2 ? UInt64(input.u16()) % distributorSpan : UInt64(input.u32()) % distributorSpan
            let value = version == .v2 ? UInt64(input.u32()) : input.u64()
            vgic.distributorWrite(vcpu: vcpu, offset: offset, width: width, value: value, sink: &sink)
        case 1:
            let offset = version == .v2 ? UInt64(input.u16()) % distributorSpan : UInt64(input.u32()) % distributorSpan
            _ = vgic.distributorRead(vcpu: vcpu, offset: offset, width: width)
        case 2:
            _ = vgic.inject(vcpu: vcpu, interrupt: UInt32(input.u16() % 1100), sink: &sink)
        case 3:
            // The hardware reports an LR free only when it held something; also try one that did not.
            let index = Int(input.u8()) % (count + 1)
            if vcpu >= 0 && vcpu < vgic.vcpuCount && index < count { sink.entries[vcpu * count + index] = nil }
            _ = vgic.listRegisterFreed(vcpu: vcpu, index: index, sink: &sink)
        case 4:
            vgic.redistributorWrite(vcpu: vcpu, offset: UInt64(input.u32()) % redistributorSpan, width: width,
                                    value: input.u64(), sink: &sink)
        case 5:
            _ = vgic.redistributorRead(vcpu: vcpu, offset: UInt64(input.u32()) % redistributorSpan, width: width)
        case 6:
            let register = SGIRegister(rawValue: 5 + (op >> 3) % 3) ?? .group1
            let sent = vgic.sendSoftwareInterrupt(from: vcpu, register: register, value: input.u64(), sink: &sink)
            fuzzCheck(!sent || version == .v3, "a GICv2 took an ICC_SGI1R_EL1 write")
        default:
            // A vCPU turned off (PSCI CPU_OFF): the platform empties its list registers.
            if vcpu >= 0 && vcpu < vgic.vcpuCount {
                for index in 0..<count { sink.entries[vcpu * count + index] = nil }
            }
            _ = vgic.vcpuStopped(vcpu: vcpu, sink: &sink)
        }
        for v in 0..<vgic.vcpuCount {
            for i in 0..<count {
                let entry = vgic.listRegister(vcpu: v, index: i)
                fuzzCheck(entry == sink.entries[v * count + i], "core's list register shadow differs from the hardware")
                guard let entry else { continue }
                fuzzCheck(version == .v2 || entry.sourceCPU == 0, "a GICv3 entry with a source CPU")
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
