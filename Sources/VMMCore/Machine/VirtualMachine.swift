// One virtual machine as the core sees it: guest RAM, the vGIC (v2 or v3), PSCI state, the emulated MMIO
// devices and the routes from physical interrupts to virtual ones.
//
// The platform calls in with the Microkit's shapes: `fault` for a synchronous exit of a vCPU,
// `notified` for a physical interrupt that belongs to the guest, `maintenance` when the guest has
// deactivated a virtual interrupt held in a list register. The core decides and answers with a
// `VCPUAction`; it asks the platform (generic `P: VMMPlatform`) only for effects it cannot decide
// alone: writing list registers and re-enabling a physical interrupt line.

/// Effects the core asks of the platform, and the backends of the guest's virtio devices.
public protocol VMMPlatform: VirtualInterruptSink, BlockBackend, NetworkBackend, ConsoleBackend {
    /// Re-enable physical interrupt `interrupt`, which the platform masked when it reported it,
    /// because the guest has now handled its virtual copy (seL4: `microkit_irq_ack` or
    /// `microkit_vcpu_arm_ack_vppi`; native: GICD_ISENABLER). `vcpu` is the vCPU that handled it:
    /// for a private interrupt (the timer's PPI) the one whose line it is.
    mutating func acknowledgeInterrupt(_ interrupt: UInt32, vcpu: Int)
    /// A byte the guest transmitted on its emulated PL011 (a VM that does not own the board's UART).
    mutating func uartWrite(_ byte: UInt8)
}

/// A platform without real devices behind a kind of virtio device: every request fails, so the
/// guest sees I/O errors rather than the VMM stopping.
extension VMMPlatform {
    public func blockCapacity(device: Int) -> UInt64? { nil }
    public mutating func blockRead(device: Int, sector: UInt64, into segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool { false }
    public mutating func blockWrite(device: Int, sector: UInt64, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool { false }
    public mutating func blockFlush(device: Int) -> Bool { false }
    public mutating func networkTransmit(device: Int, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool { false }
    public mutating func consoleWrite(device: Int, _ bytes: UnsafeRawBufferPointer) {}
    public mutating func uartWrite(_ byte: UInt8) {}
}

/// Why the core stopped a guest. Each names what the guest did.
public enum GuestStopReason: Equatable {
    case unhandledMemoryAccess          // a stage-2 fault at an address no device emulates
    case accessWithoutSyndrome          // a fault the syndrome does not describe (ISV = 0)
    case instructionFetchOutsideRAM
    case unhandledSystemRegister
    case unknownException
}

/// What the platform prints when a guest is stopped: the guest's PC, the syndrome and the address.
public struct GuestStopReport: Equatable {
    public let reason: GuestStopReason
    public let vcpu: Int
    public let pc: UInt64
    public let syndrome: UInt64
    public let address: UInt64

    public var reasonText: StaticString {
        switch reason {
        case .unhandledMemoryAccess: return "access to an address no device emulates"
        case .accessWithoutSyndrome: return "memory access the syndrome does not describe (ISV=0)"
        case .instructionFetchOutsideRAM: return "instruction fetch outside guest RAM"
        case .unhandledSystemRegister: return "access to a system register the VMM does not emulate"
        case .unknownException: return "exception class the VMM does not handle"
        }
    }
}

/// What the platform does with the vCPU after the core handled an exit.
public enum VCPUAction: Equatable {
    case resume
    /// The guest executed a trapped WFI: resume it once an interrupt is pending.
    case waitForInterrupt
    /// Resume the caller (it got PSCI SUCCESS) and start vCPU `target` at `entry` with x0 = `context`.
    case startVCPU(target: Int, entry: UInt64, context: UInt64)
    case stopVCPU
    case powerOff
    case reset
    case stop(GuestStopReport)
}

/// A physical interrupt that the platform forwards to the guest as a virtual one.
public struct InterruptRoute: Equatable {
    public let physical: UInt32
    public let virtual: UInt32
    public init(physical: UInt32, virtual: UInt32) {
        self.physical = physical
        self.virtual = virtual
    }
}

public struct VirtualMachine {
    public let memory: GuestMemory
    public var vgic: VGIC
    public var psci: PSCI
    public var bus: MMIOBus
    public var devices: VirtioDevices
    public private(set) var routes: [InterruptRoute]
    /// What the guest reads from the ID registers when the platform traps them (HCR_EL2.TID3); nil on a
    /// platform that does not, where such a read never reaches the core.
    public var idRegisters: GuestIDRegisters?
    /// The VM's own PL011 at the board's UART address (its interrupt the board's, SPI 1), when it does
    /// not own the board's: emulated, its bytes handed to the platform (`uartWrite`, `uartReceived`).
    public private(set) var uart: EmulatedPL011?
    /// The emulated PL011's interrupt line as last seen: a rising level raises the virtual SPI.
    private var uartLevel = false
    /// Input its receive FIFO had no room for yet, fed in as the guest reads (bounded: the rest of a
    /// paste longer than this is dropped, as a UART with no flow control would).
    private var uartBacklog: [UInt8] = []
    /// Where `receiveInSoftware` builds the frames it delivers (a class, so that filling it while self
    /// is being mutated is no overlapping access).
    private let offloadScratch = OffloadScratch()
    public static let uartBacklogLimit = 4096

    /// `gicVersion` picks the guest's interrupt controller; `bus` defaults to that GIC's frames on
    /// QEMU virt (`MMIOBus.standard(gic:vcpuCount:)`).
    public init(memory: GuestMemory, vcpuCount: Int, listRegisterCount: Int,
                routes: [InterruptRoute], devices: [VirtioDeviceDescription] = [],
                gicVersion: GICVersion = .v2, bus: MMIOBus? = nil, emulatedUART: Bool = false) {
        self.memory = memory
        self.vgic = VGIC(version: gicVersion, vcpuCount: vcpuCount, listRegisterCount: listRegisterCount)
        let bus = bus ?? MMIOBus.standard(gic: gicVersion)
        self.psci = PSCI(vcpuCount: vcpuCount)
        if emulatedUART {
            uart = EmulatedPL011()
            var withUART = bus
            withUART.add([MMIORegion(base: GuestPhysicalAddress(QEMUVirtBoard.uart), size: EmulatedPL011.frameSize,
                                     device: .uart)])
            self.bus = withUART
        } else {
            self.bus = bus
        }
        if memory.size > 0 { psci.entryPoints = memory.base.raw...(memory.base.raw &+ (memory.size - 1)) }
        self.devices = VirtioDevices(devices)
        self.bus.add(self.devices.regions)
        self.routes = routes
    }

    /// A synchronous exit of `vcpu`. `address` is the faulting IPA for aborts (ignored otherwise).
    public mutating func fault<P: VMMPlatform>(vcpu: Int, syndrome: ExceptionSyndrome,
                                               address: GuestPhysicalAddress,
                                               registers: inout RegisterFile,
                                               platform: inout P) -> VCPUAction {
        let exit = GuestExit(syndrome: syndrome, address: address)
        func stop(_ reason: GuestStopReason) -> VCPUAction {
            .stop(GuestStopReport(reason: reason, vcpu: vcpu, pc: registers.pc,
                                  syndrome: syndrome.raw, address: address.raw))
        }
        switch exit {
        case .dataAbort(let access, let address):
            guard emulate(access, at: address, vcpu: vcpu, registers: &registers, platform: &platform) else {
                return stop(.unhandledMemoryAccess)
            }
            registers.pc &+= 4   // data aborts return to the faulting instruction (Arm ARM D1.10.1)
            return .resume
        case .dataAbortWithoutSyndrome:
            return stop(.accessWithoutSyndrome)
        case .instructionAbort:
            return stop(.instructionFetchOutsideRAM)
        case .hypervisorCall:
            // ELR_EL2 already points past HVC (its preferred return address is the next instruction).
            return firmwareCall(vcpu: vcpu, registers: &registers)
        case .secureMonitorCall:
            // A trapped SMC returns to the SMC itself (HCR_EL2.TSC): step over it.
            registers.pc &+= 4
            return firmwareCall(vcpu: vcpu, registers: &registers)
        case .wait(let kind):
            registers.pc &+= 4
            return kind == .wfi ? .waitForInterrupt : .resume
        case .systemRegister(let access):
            guard systemRegister(access, vcpu: vcpu, registers: &registers, platform: &platform) else {
                return stop(.unhandledSystemRegister)
            }
            registers.pc &+= 4   // a trapped MSR/MRS returns to itself (Arm ARM D1.10.1)
            return .resume
        case .unknown:
            return stop(.unknownException)
        }
    }

    /// One trapped MSR or MRS of `vcpu`; false when the VMM does not emulate that register (the guest
    /// is then stopped). A register joins with a case in `TrappedSystemRegister` and one here.
    private mutating func systemRegister<P: VMMPlatform>(_ access: SystemRegisterAccess, vcpu: Int,
                                                         registers: inout RegisterFile, platform: inout P) -> Bool {
        // The ID registers (HCR_EL2.TID3 traps their reads), where the platform traps them.
        if let value = idRegisters?.value(of: access) {
            registers.write(access.register, value)
            return true
        }
        switch TrappedSystemRegister(access) {
        case .softwareInterrupt(let register) where !access.isRead:
            // False on a GICv2 guest, whose CPU interface has no such register.
            return vgic.sendSoftwareInterrupt(from: vcpu, register: register, value: registers.read(access.register),
                                              sink: &platform)
        default:
            return false
        }
    }

    /// A physical interrupt routed to this guest arrived (the platform has masked it).
    public mutating func notified<P: VMMPlatform>(interrupt physical: UInt32, vcpu: Int, platform: inout P) {
        for route in routes where route.physical == physical {
            if !vgic.inject(vcpu: vcpu, interrupt: route.virtual, sink: &platform) {
                platform.acknowledgeInterrupt(physical, vcpu: vcpu)
            }
            return
        }
        // Not ours: unmask it again so the line is not lost, and drop it.
        platform.acknowledgeInterrupt(physical, vcpu: vcpu)
    }

    /// The guest deactivated the interrupt held in list register `index` of `vcpu`.
    public mutating func maintenance<P: VMMPlatform>(vcpu: Int, listRegister index: Int, platform: inout P) {
        guard let freed = vgic.listRegisterFreed(vcpu: vcpu, index: index, sink: &platform) else { return }
        for route in routes where route.virtual == freed {
            platform.acknowledgeInterrupt(route.physical, vcpu: vcpu)
        }
        // A level-sensitive line still high after the guest's handler ran is taken again.
        if freed == QEMUVirtBoard.uartInterrupt, uart?.interruptAsserted == true {
            vgic.inject(vcpu: vcpu, interrupt: QEMUVirtBoard.uartInterrupt, sink: &platform)
        }
    }

    /// Bytes for the emulated PL011's receiver; returns how many it kept (in its FIFO or waiting for room).
    @discardableResult
    public mutating func uartReceived<P: VMMPlatform>(input: UnsafeRawBufferPointer, platform: inout P) -> Int {
        guard uart != nil else { return 0 }
        let kept = min(input.count, Self.uartBacklogLimit - uartBacklog.count)
        uartBacklog.append(contentsOf: input.prefix(kept))
        feedUART()
        updateUARTLine(&platform)
        return kept
    }

    /// Moves waiting input into the PL011's receive FIFO, as much as it has room for.
    private mutating func feedUART() {
        guard !uartBacklog.isEmpty else { return }
        let taken = uartBacklog.withUnsafeBytes { uart!.receive($0) }
        uartBacklog.removeFirst(taken)
    }

    /// Raises the PL011's virtual SPI when its line has just gone high.
    private mutating func updateUARTLine<P: VirtualInterruptSink>(_ sink: inout P) {
        let level = uart?.interruptAsserted ?? false
        if level && !uartLevel { vgic.inject(vcpu: 0, interrupt: QEMUVirtBoard.uartInterrupt, sink: &sink) }
        uartLevel = level
    }

    /// vCPU `vcpu` turned itself off (PSCI CPU_OFF, `.stopVCPU`): the interrupts it held are let go
    /// (see `VGIC.vcpuStopped`) and their physical sources re-enabled.
    public mutating func vcpuStopped<P: VMMPlatform>(vcpu: Int, platform: inout P) {
        for freed in vgic.vcpuStopped(vcpu: vcpu, sink: &platform) {
            for route in routes where route.virtual == freed { platform.acknowledgeInterrupt(route.physical, vcpu: vcpu) }
        }
    }

    private mutating func firmwareCall(vcpu: Int, registers: inout RegisterFile) -> VCPUAction {
        let outcome = psci.handle(function: registers.read(0),
                                  arguments: (registers.read(1), registers.read(2), registers.read(3)),
                                  caller: vcpu)
        switch outcome {
        case .reply(let value):
            registers.write(0, value)
            return .resume
        case .startCPU(let target, let entry, let context):
            registers.write(0, 0)   // PSCI SUCCESS to the caller
            return .startVCPU(target: target, entry: entry, context: context)
        case .stopCurrentCPU:
            return .stopVCPU
        case .systemOff:
            return .powerOff
        case .systemReset:
            return .reset
        }
    }

    /// Carries out one trapped load or store on the emulated device at `address`.
    private mutating func emulate<P: VMMPlatform>(_ access: DataAbort, at address: GuestPhysicalAddress,
                                                  vcpu: Int, registers: inout RegisterFile,
                                                  platform: inout P) -> Bool {
        guard let (device, offset) = bus.find(address, length: UInt64(access.accessSize)) else { return false }
        switch device {
        case .gicDistributor:
            if access.isWrite {
                let value = access.valueToWrite(fromRegister: registers.read(access.register))
                vgic.distributorWrite(vcpu: vcpu, offset: offset, width: access.accessSize, value: value, sink: &platform)
            } else {
                let value = vgic.distributorRead(vcpu: vcpu, offset: offset, width: access.accessSize)
                registers.write(access.register, access.registerValue(fromRead: value))
            }
            return true
        case .gicRedistributor:
            if access.isWrite {
                let value = access.valueToWrite(fromRegister: registers.read(access.register))
                vgic.redistributorWrite(vcpu: vcpu, offset: offset, width: access.accessSize, value: value, sink: &platform)
            } else {
                let value = vgic.redistributorRead(vcpu: vcpu, offset: offset, width: access.accessSize)
                registers.write(access.register, access.registerValue(fromRead: value))
            }
            return true
        case .virtioBlock(let n):
            let effect = Self.access(&devices.blocks[n], access, offset, &registers, memory)
            if case .queueNotify = effect {
                Self.serve(&devices.blocks[n], queue: 0, memory) { model, queue throws(VirtqueueError) in
                    try model.processRequests(&queue, memory: memory, backend: &platform)
                }
            }
            raiseIfPending(devices.blocks[n], effect, &platform)
            return true
        case .virtioNetwork(let n):
            let effect = Self.access(&devices.networks[n], access, offset, &registers, memory)
            if effect == .queueNotify(VirtioNet.transmitQueue) {
                Self.serve(&devices.networks[n], queue: VirtioNet.transmitQueue, memory) { model, queue throws(VirtqueueError) in
                    try model.processTransmit(&queue, memory: memory, backend: &platform)
                }
            }
            raiseIfPending(devices.networks[n], effect, &platform)
            return true
        case .uart:
            if access.isWrite {
                let value = access.valueToWrite(fromRegister: registers.read(access.register))
                if let byte = uart!.write(offset: offset, width: access.accessSize, value: UInt32(truncatingIfNeeded: value)) {
                    platform.uartWrite(byte)
                }
            } else {
                let value = uart!.read(offset: offset, width: access.accessSize)
                registers.write(access.register, access.registerValue(fromRead: UInt64(value)))
                feedUART()
            }
            updateUARTLine(&platform)
            return true
        case .virtioConsole(let n):
            let effect = Self.access(&devices.consoles[n], access, offset, &registers, memory)
            if effect == .queueNotify(VirtioConsole.transmitQueue) {
                Self.serve(&devices.consoles[n], queue: VirtioConsole.transmitQueue, memory) { model, queue throws(VirtqueueError) in
                    try model.processTransmit(&queue, memory: memory, backend: &platform)
                }
            }
            raiseIfPending(devices.consoles[n], effect, &platform)
            return true
        }
    }

    // MARK: Virtio devices

    /// One trapped load or store on a virtio-mmio register window.
    private static func access<Model>(_ device: inout PlacedVirtioDevice<Model>, _ access: DataAbort, _ offset: UInt64,
                                      _ registers: inout RegisterFile, _ memory: GuestMemory) -> VirtioMMIOEffect {
        if access.isWrite {
            let value = access.valueToWrite(fromRegister: registers.read(access.register))
            return device.transport.write(offset: offset, width: access.accessSize,
                                          value: UInt32(truncatingIfNeeded: value), memory: memory)
        }
        let raw = device.transport.read(offset: offset, width: access.accessSize)
        registers.write(access.register, access.registerValue(fromRead: UInt64(raw)))
        return .none
    }

    /// Lets the model serve one queue; a used buffer the driver wants to hear about sets the
    /// interrupt status (a broken ring has already marked the device needs-reset).
    private static func serve<Model>(_ device: inout PlacedVirtioDevice<Model>, queue: Int, _ memory: GuestMemory,
                                     _ work: (inout Model, inout SplitVirtqueue) throws(VirtqueueError) -> Bool) {
        let used = device.transport.serve(queue: queue) { model, queue throws(VirtqueueError) in
            try work(&model, &queue) && queue.needsInterrupt(memory: memory)
        }
        if used == true { device.transport.raiseUsedBufferInterrupt() }
    }

    /// After a register write: a device whose interrupt status became (or stayed) non-zero because
    /// of that write raises its line. An acknowledgement that leaves bits set raises it again,
    /// since the guest's handler has already run (the line is level-triggered in spirit).
    private mutating func raiseIfPending<Model, P: VMMPlatform>(_ device: PlacedVirtioDevice<Model>,
                                                                _ effect: VirtioMMIOEffect, _ platform: inout P) {
        guard device.transport.interruptStatus != 0 else { return }
        switch effect {
        case .none, .reset: return
        case .queueNotify, .statusChanged, .interruptAcknowledged:
            _ = vgic.inject(vcpu: 0, interrupt: device.interrupt, sink: &platform)
        }
    }

    /// A packet arrived for network device `n`: its 12-byte virtio_net_hdr, then the frame. Returns
    /// false when the guest had no receive buffer for it (the caller may keep it and offer it again);
    /// true when it was written, or dropped as one the guest cannot hold. Offloads the guest did not
    /// negotiate are done here: a partial checksum completed, a TCP GSO frame cut into segments.
    @discardableResult
    public mutating func networkReceived<P: VMMPlatform>(device n: Int, frame packet: UnsafeRawBufferPointer,
                                                         platform: inout P) -> Bool {
        guard n >= 0, n < devices.networks.count else { return false }
        let header = VirtioNetHeader(packet)
        if packet.count >= VirtioNetHeader.size && !devices.networks[n].transport.model.accepts(header) {
            return receiveInSoftware(device: n, packet: packet, header: header, platform: &platform)
        }
        return deliver(packet, toNetwork: n, platform: &platform) != .noBuffer
    }

    /// Writes `packet` into device `n`'s next receive chain and interrupts the guest if it asked to be.
    private mutating func deliver<P: VMMPlatform>(_ packet: UnsafeRawBufferPointer, toNetwork n: Int,
                                                  platform: inout P) -> NetDelivery {
        let memory = self.memory
        let outcome = devices.networks[n].transport.serve(queue: VirtioNet.receiveQueue) { model, queue throws(VirtqueueError) in
            let delivery = try model.deliver(frame: packet, to: &queue, memory: memory)
            return (delivery, delivery == .delivered && queue.needsInterrupt(memory: memory))
        }
        // No outcome: the queue is not ready, or broken (the device now needs a reset).
        guard let (delivery, interrupt) = outcome else { return .noBuffer }
        if interrupt {
            devices.networks[n].transport.raiseUsedBufferInterrupt()
            _ = vgic.inject(vcpu: 0, interrupt: devices.networks[n].interrupt, sink: &platform)
        }
        return delivery
    }

    /// A packet whose offloads device `n`'s driver did not negotiate (VirtioNet.accepts): a TCP GSO
    /// frame is cut into frames of its segment size with complete checksums, a partial checksum is
    /// completed, each delivered with a plain header. One the software cannot do (malformed, or a
    /// segment over 1518 bytes) is dropped. False only when not even its first frame found a buffer.
    private mutating func receiveInSoftware<P: VMMPlatform>(device n: Int, packet: UnsafeRawBufferPointer,
                                                            header: VirtioNetHeader, platform: inout P) -> Bool {
        let frame = UnsafeRawBufferPointer(rebasing: packet[VirtioNetHeader.size...])
        let scratch = offloadScratch.bytes
        guard let base = scratch.baseAddress else { return true }
        VirtioNetHeader().store(into: scratch)
        let frameArea = UnsafeMutableRawBufferPointer(rebasing: scratch[VirtioNetHeader.size...])
        var delivered = 0
        var noBuffer = false
        if header.isSegmentation {
            _ = NetworkOffload.segment(frame, gsoType: header.gsoType, segmentSize: Int(header.gsoSize),
                                       scratch: frameArea) { segment in
                // The segment is built at the start of frameArea, right behind the plain header.
                let result = deliver(UnsafeRawBufferPointer(start: base, count: VirtioNetHeader.size + segment.count),
                                     toNetwork: n, platform: &platform)
                if result == .delivered { delivered += 1 }
                noBuffer = result == .noBuffer
                return !noBuffer
            }
        } else if frame.count <= frameArea.count, let source = frame.baseAddress {
            frameArea.baseAddress!.copyMemory(from: source, byteCount: frame.count)
            let copy = UnsafeMutableRawBufferPointer(rebasing: frameArea[..<frame.count])
            if !header.needsChecksum || NetworkOffload.completeChecksum(copy, start: Int(header.checksumStart),
                                                                        offset: Int(header.checksumOffset)) {
                let result = deliver(UnsafeRawBufferPointer(start: base, count: VirtioNetHeader.size + frame.count),
                                     toNetwork: n, platform: &platform)
                noBuffer = result == .noBuffer
            }
        }
        return delivered > 0 || !noBuffer
    }

    /// Bytes typed into console device `n`; returns how many the guest had room for.
    @discardableResult
    public mutating func consoleReceived<P: VMMPlatform>(device n: Int, input: UnsafeRawBufferPointer,
                                                         platform: inout P) -> Int {
        guard n >= 0, n < devices.consoles.count else { return 0 }
        let memory = self.memory
        let outcome = devices.consoles[n].transport.serve(queue: VirtioConsole.receiveQueue) { model, queue throws(VirtqueueError) in
            let taken = try model.deliver(input: input, to: &queue, memory: memory)
            return (taken, taken > 0 && queue.needsInterrupt(memory: memory))
        }
        guard let (taken, interrupt) = outcome else { return 0 }
        if interrupt {
            devices.consoles[n].transport.raiseUsedBufferInterrupt()
            _ = vgic.inject(vcpu: 0, interrupt: devices.consoles[n].interrupt, sink: &platform)
        }
        return taken
    }
}

/// A plain header and one frame of at most 1518 bytes (an MTU-sized, VLAN-tagged frame): what a guest
/// without offloads takes.
final class OffloadScratch {
    let bytes: UnsafeMutableRawBufferPointer

    init() {
        bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: VirtioNetHeader.size + VirtualSwitch.maximumTaggedFrameSize,
                                                       alignment: 16)
    }

    deinit { bytes.deallocate() }
}
