// The core's shadow of the GIC hypervisor interface's list registers, and the overflow queue.
//
// Virtual interrupts reach a vCPU through the hardware list registers (GICv2 GICH_LRn, §5.3.8;
// GICv3 ICH_LR<n>_EL2, IHI 0069 §12.4); the platform owns the hardware and the core owns the decision
// of what goes in which register. This file keeps, per vCPU, a shadow of what the core last asked the
// platform to write into each LR and a queue of interrupts that are ready but found every LR busy.
// Every entry the core places is written with the EOI bit set, so the guest's deactivation raises a
// maintenance interrupt and the platform reports the LR as free (`VGIC.listRegisterFreed`); the queue
// then refills it, highest priority first, FIFO among equals. (A platform may keep an LR of its own
// outside the core's count for an interrupt it forwards linked to the hardware:
// `VGIC.hardwareLinkedEntry`.) An entry is the same for both GIC versions; `gichValue` and
// `ichValue` are its two encodings.
// What an interrupt is, whether it is enabled and where it goes is the distributor's business
// (VGIC.swift and the register maps); this file only places and remembers.

/// The platform side of virtual interrupt delivery: native writes GICH_LRn, seL4 calls
/// `microkit_vcpu_arm_inject_irq(vcpu, irq, prio, group, index)`.
public protocol VirtualInterruptSink {
    /// Make list register `index` of `vcpu` hold `entry` (pending), replacing whatever it held.
    mutating func writeListRegister(vcpu: Int, index: Int, entry: ListRegisterEntry)
}

/// One virtual interrupt as a list register holds it.
public struct ListRegisterEntry: Equatable {
    public var interrupt: UInt32      // virtual INTID 0..1019
    public var priority: UInt8        // GIC priority byte; the LR keeps its top five bits
    public var group1: Bool           // GICv2: false (Linux uses group 0); GICv3: the IGROUPR bit
    public var sourceCPU: UInt8       // GICv2 SGIs: the requesting CPU; 0 otherwise (and on GICv3)
    /// Hardware-linked (HW = 1): the physical INTID that the guest's deactivation of this virtual
    /// interrupt deactivates in the physical GIC, with no maintenance interrupt; nil for the usual
    /// entry, which asks for an EOI maintenance interrupt instead.
    public var physical: UInt32?

    public init(interrupt: UInt32, priority: UInt8, group1: Bool = false, sourceCPU: UInt8 = 0,
                physical: UInt32? = nil) {
        self.interrupt = interrupt
        self.priority = priority
        self.group1 = group1
        self.sourceCPU = sourceCPU
        self.physical = physical
    }

    /// The GICH_LR encoding (GICv2 §5.3.8): VirtualID [9:0], Priority [27:23], State [29:28] = 0b01
    /// pending, Grp1 [30], HW [31]. With HW = 0, bits [19:10] are EOI [19] = 1 and CPUID [12:10]; with
    /// HW = 1 they are the PhysicalID.
    public var gichValue: UInt32 {
        var value = interrupt & 0x3FF
        if let physical {
            value |= (physical & 0x3FF) << 10
            value |= 1 << 31
        } else {
            value |= UInt32(sourceCPU & 0x7) << 10
            value |= 1 << 19
        }
        value |= UInt32(priority >> 3) << 23
        value |= 0b01 << 28
        if group1 { value |= 1 << 30 }
        return value
    }

    /// The ICH_LR<n>_EL2 encoding (IHI 0069 §12.4.5 "ICH_LR<n>_EL2"): vINTID [31:0], pINTID [41:32]
    /// with HW = 1, or with HW = 0 EOI [41] = 1 (a maintenance interrupt on deactivation), Priority
    /// [55:48] (its top five bits, as ICH_VTR_EL2.PRIbits = 5 implements; the LR's lower bits RES0),
    /// Group [60], HW [61], State [63:62] = 0b01 pending. There is no source CPU on GICv3.
    public var ichValue: UInt64 {
        var value = UInt64(interrupt)
        if let physical {
            value |= UInt64(physical & 0x3FF) << 32
            value |= 1 << 61
        } else {
            value |= 1 << 41
        }
        value |= UInt64(priority & 0xF8) << 48
        if group1 { value |= 1 << 60 }
        value |= 0b01 << 62
        return value
    }
}

/// An interrupt waiting for a free list register. `priority` is kept current by the distributor
/// (IPRIORITYR writes update it) so the refill order is the guest's present view.
struct QueuedInterrupt: Equatable {
    var interrupt: UInt32
    var sourceCPU: UInt8
    var priority: UInt8
}

/// Shadow list registers and overflow queues of every vCPU.
public struct ListRegisters {
    public let vcpuCount: Int
    public let count: Int                    // list registers per vCPU (GICH_VTR.ListRegs + 1)
    var shadow: [ListRegisterEntry?]         // vcpu * count + index
    var overflow: [[QueuedInterrupt]]        // per vCPU, in arrival order

    init(vcpuCount: Int, count: Int) {
        self.vcpuCount = vcpuCount
        self.count = count
        shadow = [ListRegisterEntry?](repeating: nil, count: vcpuCount * count)
        overflow = [[QueuedInterrupt]](repeating: [], count: vcpuCount)
    }

    func isValid(vcpu: Int, index: Int) -> Bool {
        vcpu >= 0 && vcpu < vcpuCount && index >= 0 && index < count
    }

    /// What the core last wrote into LR `index` of `vcpu`, or nil when it is free (or out of range).
    public func entry(vcpu: Int, index: Int) -> ListRegisterEntry? {
        isValid(vcpu: vcpu, index: index) ? shadow[vcpu * count + index] : nil
    }

    /// How many interrupts of `vcpu` are waiting for a list register.
    public func overflowCount(vcpu: Int) -> Int {
        vcpu >= 0 && vcpu < vcpuCount ? overflow[vcpu].count : 0
    }

    /// True when (interrupt, source) sits in one of `vcpu`'s list registers. For SGIs each source is
    /// a separate interrupt (GICv2 §5.3.8: LRs may share a VirtualID with different CPUIDs).
    func holds(vcpu: Int, interrupt: UInt32, sourceCPU: UInt8) -> Bool {
        for index in 0..<count {
            if let held = shadow[vcpu * count + index],
               held.interrupt == interrupt, held.sourceCPU == sourceCPU { return true }
        }
        return false
    }

    func isQueued(vcpu: Int, interrupt: UInt32, sourceCPU: UInt8) -> Bool {
        for queued in overflow[vcpu] where queued.interrupt == interrupt && queued.sourceCPU == sourceCPU {
            return true
        }
        return false
    }

    /// In an LR or in the queue of `vcpu`.
    func isDelivering(vcpu: Int, interrupt: UInt32, sourceCPU: UInt8) -> Bool {
        holds(vcpu: vcpu, interrupt: interrupt, sourceCPU: sourceCPU)
            || isQueued(vcpu: vcpu, interrupt: interrupt, sourceCPU: sourceCPU)
    }

    func freeIndex(vcpu: Int) -> Int? {
        for index in 0..<count where shadow[vcpu * count + index] == nil { return index }
        return nil
    }

    mutating func enqueue(vcpu: Int, _ queued: QueuedInterrupt) {
        overflow[vcpu].append(queued)
    }

    /// Removes and returns the queued interrupt with the numerically lowest priority value (GIC:
    /// lower value = higher priority); the earliest arrival wins a tie.
    mutating func popHighestPriority(vcpu: Int) -> QueuedInterrupt? {
        let queue = overflow[vcpu]
        guard !queue.isEmpty else { return nil }
        var best = 0
        for position in 1..<queue.count where queue[position].priority < queue[best].priority {
            best = position
        }
        return overflow[vcpu].remove(at: best)
    }

    /// Drops queued copies of `interrupt` from `vcpu` whose source is in `sourceMask` (bit n = CPU n;
    /// non-SGIs use source 0, so pass 0x01 or 0xFF for them).
    mutating func removeQueued(vcpu: Int, interrupt: UInt32, sourceMask: UInt8) {
        overflow[vcpu].removeAll { queued in
            queued.interrupt == interrupt && sourceMask & (1 << (queued.sourceCPU & 7)) != 0
        }
    }

    mutating func removeAllQueued(vcpu: Int) {
        overflow[vcpu].removeAll()
    }

    mutating func updatePriority(vcpu: Int, interrupt: UInt32, priority: UInt8) {
        for position in overflow[vcpu].indices where overflow[vcpu][position].interrupt == interrupt {
            overflow[vcpu][position].priority = priority
        }
    }

    /// Records `entry` in the shadow and has the platform write the hardware register.
    mutating func occupy<S: VirtualInterruptSink>(vcpu: Int, index: Int, entry: ListRegisterEntry,
                                                 sink: inout S) {
        shadow[vcpu * count + index] = entry
        sink.writeListRegister(vcpu: vcpu, index: index, entry: entry)
    }

    /// Empties LR `index` of `vcpu` in the shadow and returns what it held.
    mutating func release(vcpu: Int, index: Int) -> ListRegisterEntry? {
        guard isValid(vcpu: vcpu, index: index) else { return nil }
        let held = shadow[vcpu * count + index]
        shadow[vcpu * count + index] = nil
        return held
    }
}

// Delivery: moving interrupts that the distributor says are ready into list registers.
extension VGIC {
    /// A device or physical line raises `interrupt`. SPIs go where their routing sends them (`vcpu`
    /// is ignored); SGIs and PPIs are `vcpu`'s own, and an SGI raised this way comes from `vcpu` itself.
    /// A raise while the same interrupt is in an LR is remembered as pending and delivered again once
    /// the guest deactivates it (the GIC's active-and-pending state), never put in a second LR.
    @discardableResult
    public mutating func inject<S: VirtualInterruptSink>(vcpu: Int, interrupt: UInt32, sink: inout S) -> Bool {
        guard interrupt < UInt32(interruptCount) else { return false }
        let irq = Int(interrupt)
        if irq >= 32 {
            setLatched(vcpu: 0, irq: irq, true)
            deliverShared(irq: irq, drain: true, sink: &sink)
            return true
        }
        guard vcpu >= 0 && vcpu < vcpuCount else { return false }
        if irq < 16 {
            let source = sgiSource(of: vcpu)
            sgiSources[vcpu * 16 + irq] |= 1 << source
            offer(vcpu: vcpu, irq: irq, sourceCPU: source, drain: true, sink: &sink)
        } else {
            setLatched(vcpu: vcpu, irq: irq, true)
            offer(vcpu: vcpu, irq: irq, sourceCPU: 0, drain: true, sink: &sink)
        }
        return true
    }

    /// Maintenance: the guest deactivated the interrupt in LR `index` of `vcpu`. Refills the LR and
    /// returns the freed interrupt so the VMM can re-enable its physical source.
    public mutating func listRegisterFreed<S: VirtualInterruptSink>(vcpu: Int, index: Int,
                                                                    sink: inout S) -> UInt32? {
        guard let freed = lists.release(vcpu: vcpu, index: index) else { return nil }
        let irq = Int(freed.interrupt)
        if irq >= 32 {
            deliverShared(irq: irq, drain: true, sink: &sink)
        } else {
            offer(vcpu: vcpu, irq: irq, sourceCPU: freed.sourceCPU, drain: true, sink: &sink)
        }
        drain(vcpu: vcpu, sink: &sink)
        return freed.interrupt
    }

    /// `vcpu` went off (PSCI CPU_OFF; the platform empties its hardware LRs): its list registers and
    /// queue are emptied and its pending private interrupts dropped, as a powered-down CPU interface
    /// loses them. An SPI it held or had queued becomes pending again and goes to another target the
    /// guest gave it (or waits for one). Returns the interrupts its LRs held, so the VMM can re-enable
    /// their physical sources.
    public mutating func vcpuStopped<S: VirtualInterruptSink>(vcpu: Int, sink: inout S) -> [UInt32] {
        guard vcpu >= 0 && vcpu < vcpuCount else { return [] }
        var held: [UInt32] = []
        var shared: [Int] = []
        for index in 0..<lists.count {
            guard let entry = lists.release(vcpu: vcpu, index: index) else { continue }
            held.append(entry.interrupt)
            if entry.interrupt >= 32 { shared.append(Int(entry.interrupt)) }
        }
        for queued in lists.overflow[vcpu] where queued.interrupt >= 32 { shared.append(Int(queued.interrupt)) }
        lists.removeAllQueued(vcpu: vcpu)
        privateLatched[vcpu] = 0
        for sgi in 0..<16 { sgiSources[vcpu * 16 + sgi] = 0 }
        for irq in shared {
            setLatched(vcpu: 0, irq: irq, true)
            deliverShared(irq: irq, drain: true, sink: &sink, avoiding: vcpu)
        }
        return held
    }

    /// The shadow of LR `index` of `vcpu`: what the guest is being shown there, or nil if free.
    public func listRegister(vcpu: Int, index: Int) -> ListRegisterEntry? {
        lists.entry(vcpu: vcpu, index: index)
    }

    /// Interrupts of `vcpu` that are ready but wait for a free list register.
    public func overflowCount(vcpu: Int) -> Int {
        lists.overflowCount(vcpu: vcpu)
    }

    /// Queues (interrupt, source) for `vcpu` if it is pending, forwardable and not already on its way.
    /// With `drain` false the caller drains later, so a batch enters the LRs in priority order.
    mutating func offer<S: VirtualInterruptSink>(vcpu: Int, irq: Int, sourceCPU: UInt8, drain: Bool,
                                                sink: inout S) {
        guard isLatched(vcpu: vcpu, irq: irq, sourceCPU: sourceCPU), isForwardable(vcpu: vcpu, irq: irq),
              !lists.isDelivering(vcpu: vcpu, interrupt: UInt32(irq), sourceCPU: sourceCPU) else { return }
        lists.enqueue(vcpu: vcpu, QueuedInterrupt(interrupt: UInt32(irq), sourceCPU: sourceCPU,
                                                  priority: priority(vcpu: vcpu, irq: irq)))
        if drain { self.drain(vcpu: vcpu, sink: &sink) }
    }

    /// `offer` of every source an SGI may be pending from (a PPI has one), without draining.
    mutating func offerAllSources<S: VirtualInterruptSink>(vcpu: Int, irq: Int, sink: inout S) {
        if irq < 16 {
            for source in 0..<UInt8(sgiSourceCount) {
                offer(vcpu: vcpu, irq: irq, sourceCPU: source, drain: false, sink: &sink)
            }
        } else {
            offer(vcpu: vcpu, irq: irq, sourceCPU: 0, drain: false, sink: &sink)
        }
    }

    /// An SPI is forwarded to one vCPU, the one `routedVCPU` names (GICv2 §3.1.1 and GICv3 1-of-N
    /// routing allow any one). With no target it stays pending (GICv2 §4.3.12).
    mutating func deliverShared<S: VirtualInterruptSink>(irq: Int, drain: Bool, sink: inout S, avoiding: Int = -1) {
        for vcpu in 0..<vcpuCount where lists.isDelivering(vcpu: vcpu, interrupt: UInt32(irq), sourceCPU: 0) {
            return
        }
        guard let vcpu = routedVCPU(spi: irq, avoiding: avoiding) else { return }
        offer(vcpu: vcpu, irq: irq, sourceCPU: 0, drain: drain, sink: &sink)
    }

    /// Fills `vcpu`'s free list registers from its queue; a queued interrupt stops being pending in
    /// the distributor once it is in an LR (the LR now holds its pending state).
    mutating func drain<S: VirtualInterruptSink>(vcpu: Int, sink: inout S) {
        while let index = lists.freeIndex(vcpu: vcpu), let next = lists.popHighestPriority(vcpu: vcpu) {
            let irq = Int(next.interrupt)
            if irq < 16 {
                sgiSources[vcpu * 16 + irq] &= ~(1 << (next.sourceCPU & 7))
            } else {
                setLatched(vcpu: vcpu, irq: irq, false)
            }
            let entry = ListRegisterEntry(interrupt: next.interrupt, priority: next.priority,
                                          group1: isGroup1(vcpu: vcpu, irq: irq), sourceCPU: next.sourceCPU)
            lists.occupy(vcpu: vcpu, index: index, entry: entry, sink: &sink)
        }
    }

    /// Hands every pending, forwardable interrupt to the queues, then drains them all, so that when
    /// the distributor or a batch of interrupts is enabled the highest priorities take the LRs first.
    mutating func flushPending<S: VirtualInterruptSink>(sink: inout S) {
        for vcpu in 0..<vcpuCount {
            for irq in 0..<32 { offerAllSources(vcpu: vcpu, irq: irq, sink: &sink) }
        }
        for irq in 32..<interruptCount {
            deliverShared(irq: irq, drain: false, sink: &sink)
        }
        for vcpu in 0..<vcpuCount { drain(vcpu: vcpu, sink: &sink) }
    }
}
