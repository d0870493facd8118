// The Microkit platform: the VMM as a protection domain whose child is the guest's virtual machine.
//
// seL4 owns what the native platform does by hand (stage 2, the GIC, the world switch); this layer
// only translates. `init` loads the guest and starts its vCPU; `notified` turns a channel into the
// physical interrupt it stands for, or a driver PD's answer (MicrokitDevices.swift) into data for
// the guest; `fault` decodes the fault message (VMCore's `SeL4Fault`, with labels and register
// numbers from the SDK's headers), runs the core on the vCPU's registers and replies, except after
// a WFI, when the vCPU sleeps until something for it happens. The core's requests become libmicrokit
// calls: list registers → inject_irq, acknowledging a line → irq_ack (SPIs, by channel) or ack_vppi
// (the timer); its virtio backends are the driver PDs' queues.
import MicrokitSDK
import VMMCore

/// The SDK's own numbers for fault labels and message registers.
let faultLayout = SeL4FaultLayout(
    vmFault: UInt64(seL4_Fault_VMFault.rawValue),
    vcpuFault: UInt64(seL4_Fault_VCPUFault.rawValue),
    vgicMaintenance: UInt64(seL4_Fault_VGICMaintenance.rawValue),
    vppiEvent: UInt64(seL4_Fault_VPPIEvent.rawValue),
    unknownSyscall: UInt64(seL4_Fault_UnknownSyscall.rawValue),
    userException: UInt64(seL4_Fault_UserException.rawValue),
    vmFaultIP: Int(seL4_VMFault_IP.rawValue),
    vmFaultAddress: Int(seL4_VMFault_Addr.rawValue),
    vmFaultPrefetch: Int(seL4_VMFault_PrefetchFault.rawValue),
    vmFaultStatus: Int(seL4_VMFault_FSR.rawValue),
    vcpuFaultSyndrome: Int(seL4_VCPUFault_HSR.rawValue),
    vgicMaintenanceIndex: Int(seL4_VGICMaintenance_IDX.rawValue),
    vppiEventInterrupt: Int(seL4_VPPIEvent_IRQ.rawValue),
    unknownSyscallX0: Int(seL4_UnknownSyscall_X0.rawValue),
    unknownSyscallFaultIP: Int(seL4_UnknownSyscall_FaultIP.rawValue),
    userExceptionFaultIP: Int(seL4_UserException_FaultIP.rawValue))

/// Physical interrupts that reach this PD on channels (the generated .system's <irq> elements): the
/// UART's (the first VM's), and each passthrough device's on MicrokitLayout.passthroughChannel(n).
nonisolated(unsafe) var channelInterrupts: [(channel: UInt32, interrupt: UInt32)] = []

/// The vGIC's effects through seL4: list registers → inject_irq, acknowledging a line → irq_ack
/// (SPIs, by channel) or ack_vppi (the timer).
protocol MicrokitInterruptEffects: VMMPlatform {}

extension MicrokitInterruptEffects {
    mutating func writeListRegister(vcpu: Int, index: Int, entry: ListRegisterEntry) {
        // seL4 takes the 5-bit list-register priority field (0–31), not the GIC priority byte. A
        // vCPU that is not running gets it in its saved list registers; one asleep in WFI wakes.
        microkit_vcpu_arm_inject_irq(microkit_child(vcpu), UInt16(entry.interrupt), entry.priority >> 3,
                                     entry.group1 ? 1 : 0, UInt8(index))
        wake(vcpu: vcpu)
    }

    mutating func acknowledgeInterrupt(_ interrupt: UInt32, vcpu: Int) {
        if interrupt < 32 {
            microkit_vcpu_arm_ack_vppi(microkit_child(vcpu), seL4_Word(interrupt))
            return
        }
        for route in channelInterrupts where route.interrupt == interrupt {
            microkit_irq_ack(microkit_channel(route.channel))
        }
    }
}

/// The core's effects, and the guest's device I/O through the driver PDs.
struct MicrokitPlatform: MicrokitInterruptEffects {
    var devices = DriverBackedDevices()

    func blockCapacity(device: Int) -> UInt64? {
        device >= 0 && device < devices.blocks.count ? devices.blocks[device].capacitySectors : nil
    }

    mutating func blockRead(device: Int, sector: UInt64, into segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        guard device >= 0 && device < devices.blocks.count else { return false }
        return devices.blocks[device].read(sector: sector, into: segments, memory: memory)
    }

    mutating func blockWrite(device: Int, sector: UInt64, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        guard device >= 0 && device < devices.blocks.count else { return false }
        return devices.blocks[device].write(sector: sector, from: segments, memory: memory)
    }

    mutating func blockFlush(device: Int) -> Bool {
        guard device >= 0 && device < devices.blocks.count else { return false }
        return devices.blocks[device].flush()
    }

    mutating func networkTransmit(device: Int, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        guard device >= 0 && device < devices.networks.count else { return false }
        return devices.networks[device].transmit(from: segments, memory: memory)
    }

    mutating func consoleWrite(device: Int, _ bytes: UnsafeRawBufferPointer) {
        guard device >= 0 && device < devices.consoles.count else { return }
        _ = devices.consoles[device].write(bytes)
    }

    /// A byte of the emulated PL011 goes to its console driver at once; one the queue has no room
    /// for is lost, as on a UART nobody reads.
    mutating func uartWrite(_ byte: UInt8) {
        guard devices.serial != nil else { return }
        var byte = byte
        _ = withUnsafeBytes(of: &byte) { devices.serial!.write($0) }
    }
}

/// Only the interrupt effects: for delivering received data while a client is being served.
struct MicrokitInterruptSink: MicrokitInterruptEffects {}

nonisolated(unsafe) var machine: VirtualMachine? = nil
/// The list registers seL4 lets the VMM fill (QEMU's GICv2 has 4).
let listRegisterCount = 4
nonisolated(unsafe) var platform = MicrokitPlatform()

func log(_ message: StaticString) {
    message.withUTF8Buffer { for byte in $0 { microkit_dbg_putc(Int32(byte)) } }
}

func logHex(_ value: UInt64) {
    log("0x")
    var shift = 60
    while shift >= 0 {
        let nibble = UInt8((value >> UInt64(shift)) & 0xf)
        microkit_dbg_putc(Int32(nibble < 10 ? 48 + nibble : 87 + nibble))
        shift -= 4
    }
}

/// "VM n " in a system of several VMs (each VMM PD's messages share the board's serial line), else
/// nothing.
func logVM() {
    guard vmm_has_timer_server() else { return }
    log("VM ")
    logDecimal(UInt64(vmm_vm_number()))
    log(" ")
}

/// The end of a message about this VM's end: in a system of several, that the others go on.
func logOthersGoOn() {
    log(vmm_has_timer_server() ? "; the other VMs go on\n" : "\n")
}

func logDecimal(_ value: UInt64) {
    if value >= 10 { logDecimal(value / 10) }
    microkit_dbg_putc(Int32(48 + value % 10))
}

@_cdecl("vmm_init")
func vmmInit() {
    log("vmm: Microkit protection domain, starting the guest")
    if vmm_has_timer_server() {
        log(" of VM ")
        logDecimal(UInt64(vmm_vm_number()))
    }
    log("\n")
    guard let host = UnsafeMutableRawPointer(bitPattern: UInt(guest_ram_vaddr)) else {
        log("vmm: guest RAM is not mapped (guest_ram_vaddr is 0): check the system description\n")
        return
    }
    let configuration: GuestConfiguration
    do throws(GuestConfigurationError) {
        configuration = try GuestConfiguration(decoding: UnsafeRawBufferPointer(start: guest_config(), count: guest_config_size()))
    } catch {
        log("vmm: the guest configuration in this image is unreadable: ")
        log(error.message)
        log("\n")
        return
    }
    // The guest sees its RAM at ramBase; the system description mapped the region there.
    guard configuration.ramSize <= UInt64(guest_ram_size) else {
        log("vmm: the guest's RAM does not match the system description's guest_ram region\n")
        return
    }
    let memory = GuestMemory(base: GuestPhysicalAddress(configuration.ramBase), size: configuration.ramSize, host: host)
    let initrd = UnsafeRawBufferPointer(start: guest_initrd(), count: guest_initrd_size())
    // The first VM (or the only one) owns the board's PL011; the others have one emulated each.
    let ownsUART = vmm_vm_number() == 0
    let (devices, descriptions) = DriverBackedDevices.connect(configuration.devices, serial: !ownsUART)
    platform.devices = devices
    // QEMU leaves its device tree, with a seed for this boot, at the start of RAM: in the first VM's
    // RAM when that VM's is there. Read before the guest's images overwrite it.
    let boardSeed = GuestEntropy.boardSeed(deviceTree: UnsafeRawBufferPointer(
        start: host, count: Int(min(configuration.ramSize, 0x10_0000))))
    log(boardSeed != nil ? "vmm: the guest's seed is mixed with the board's for this boot\n"
                         : "vmm: the board gives this VM no seed; the guest gets its build's\n")
    let rngSeed = GuestEntropy.mix(UnsafeRawBufferPointer(start: guest_seed(), count: guest_seed_size()),
                                   with: boardSeed, counter: vmm_counter())
    let guest: LoadedGuest
    do throws(GuestBootError) {
        guest = try GuestBoot.load(into: memory,
                                   kernel: UnsafeRawBufferPointer(start: guest_kernel(), count: guest_kernel_size()),
                                   initrd: initrd.count > 0 ? initrd : nil, configuration: configuration,
                                   devices: descriptions, rngSeed: rngSeed)
    } catch {
        log("vmm: cannot boot the guest: ")
        log(error.message)
        log("\n")
        return
    }
    var routes = [InterruptRoute(physical: QEMUVirtBoard.virtualTimerInterrupt, virtual: QEMUVirtBoard.virtualTimerInterrupt)]
    if ownsUART {
        routes.append(InterruptRoute(physical: QEMUVirtBoard.uartInterrupt, virtual: QEMUVirtBoard.uartInterrupt))
        channelInterrupts.append((MicrokitLayout.uartChannel, QEMUVirtBoard.uartInterrupt))
    }
    for (n, device) in configuration.passthrough.enumerated() {
        guard let interrupt = device.interrupt else { continue }
        routes.append(InterruptRoute(physical: interrupt, virtual: interrupt))
        channelInterrupts.append((MicrokitLayout.passthroughChannel(n), interrupt))
    }
    vcpuCount = configuration.vcpuCount
    waitingPC = [UInt64?](repeating: nil, count: vcpuCount)
    waitingDeadline = [UInt64?](repeating: nil, count: vcpuCount)
    machine = VirtualMachine(memory: memory, vcpuCount: vcpuCount, listRegisterCount: listRegisterCount, routes: routes,
                             devices: descriptions, emulatedUART: !ownsUART)
    // Every vCPU's affinity (Aff0 = its index, as the guest's device tree numbers its CPUs); vCPU 0
    // starts the kernel, the others wait for the guest's PSCI CPU_ON.
    for vcpu in 0..<vcpuCount {
        microkit_vcpu_arm_write_reg(microkit_child(vcpu), seL4_Word(seL4_VCPUReg_VMPIDR_EL2.rawValue),
                                    seL4_Word(PSCI.mpidr(ofVCPU: vcpu)))
    }
    log("vmm: guest loaded; entering the kernel at ")
    logHex(guest.registers.pc)
    log("\n")
    start(vcpu: 0, registers: guest.registers)
}

/// The vCPUs of the guest (the system description's <vcpu> ids 0..<vcpuCount).
nonisolated(unsafe) var vcpuCount = 1

/// Starts `vcpu` with `registers`, as a CPU comes out of reset (PSCI): MMU and caches off, its
/// virtual timer off.
func start(vcpu: Int, registers: RegisterFile) {
    let child = microkit_child(vcpu)
    var context = seL4_UserContext()
    var registers = registers
    store(&registers, into: &context, words: vmm_vcpu_register_count())
    _ = vmm_write_vcpu_registers(child, &context, vmm_vcpu_register_count())
    microkit_vcpu_arm_write_reg(child, seL4_Word(seL4_VCPUReg_SCTLR.rawValue), 0x30d0_0800)
    microkit_vcpu_arm_write_reg(child, seL4_Word(seL4_VCPUReg_CNTV_CTL.rawValue), 0)
    microkit_vcpu_restart(child, seL4_Word(registers.pc))
}

@_cdecl("vmm_notified")
func vmmNotified(_ channel: microkit_channel) {
    defer { wakeWaitingVCPUs() }
    if UInt32(channel) == MicrokitDriverLayout.timerChannel {
        // The deadline passed: the timer PD's notification, or this PD's own timer interrupt.
        armedDeadline = nil
        if !vmm_has_timer_server() {
            vmm_timer_disarm()
            microkit_irq_ack(channel)
        }
        return
    }
    if let device = platform.devices.device(on: UInt32(channel)) {
        driverAnswered(device)
        return
    }
    for route in channelInterrupts where route.channel == UInt32(channel) {
        machine?.notified(interrupt: route.interrupt, vcpu: 0, platform: &platform)   // an SPI: the vGIC routes it
        return
    }
    log("vmm: notification on an unexpected channel\n")
}

/// A driver signalled: hand what it received to the guest. (Block answers are taken synchronously
/// by the request that is waiting for them.)
func driverAnswered(_ device: DriverBackedDevices.Device) {
    guard machine != nil else { return }
    var sink = MicrokitInterruptSink()
    switch device {
    case .block:
        break
    case .network(let n):
        _ = platform.devices.networks[n].receive { frame in
            machine!.networkReceived(device: n, frame: frame, platform: &sink)
        }
    case .console(let n):
        _ = platform.devices.consoles[n].receive { input in
            machine!.consoleReceived(device: n, input: input, platform: &sink)
        }
    case .serial:
        _ = platform.devices.serial!.receive { input in
            machine!.uartReceived(input: input, platform: &sink)
        }
    }
}

/// Kernel entries per exit, besides the fault itself and the ReplyRecv that answers it and waits
/// for the next event (which the Microkit loop makes anyway): a load or store to an emulated device
/// or a PSCI call over SMC, two (TCB_ReadRegisters, TCB_WriteRegisters, each moving only the words
/// up to the register the exit uses: `contextWords`); a PSCI call over HVC, none (its registers come
/// in the fault message and go back in the reply); a list register freed or the timer, none beyond
/// what the core asks for (inject_irq, ack_vppi).
@_cdecl("vmm_fault")
func vmmFault(_ child: microkit_child, _ label: seL4_Word, _ replyLength: UnsafeMutablePointer<seL4_Word>) -> seL4_Bool {
    guard machine != nil else { return seL4_Bool(0) }
    let vcpu = Int(child)
    let event = SeL4Fault.decode(label: UInt64(label), layout: faultLayout) { index in
        UInt64(vmm_message_register(UInt8(truncatingIfNeeded: index)))
    }
    switch event {
    case .guestException(let syndrome, let address):
        if vmm_has_test_hooks(), address.raw & ~0xfff == MicrokitLayout.testFaultAddress {
            log("vmm: test hook: this VMM faults on purpose\n")
            vmm_fault_on_purpose()
        }
        let words = contextWords(through: GuestExit(syndrome: syndrome, address: address).highestRegister)
        var context = seL4_UserContext()
        _ = vmm_read_vcpu_registers(child, &context, words)
        var registers = load(&context, words: words)
        let action = machine!.fault(vcpu: vcpu, syndrome: syndrome, address: address,
                                    registers: &registers, platform: &platform)
        store(&registers, into: &context, words: words)
        _ = vmm_write_vcpu_registers(child, &context, words)
        if action == .waitForInterrupt {
            return seL4_Bool(suspendUntilInterrupt(child: child, resumeAt: registers.pc) ? 0 : 1)
        }
        return resume(after: action, child: child)
    case .hypervisorCall(var registers):
        let action = machine!.fault(vcpu: vcpu, syndrome: ExceptionSyndrome(0x16 << 26 | 1 << 25),
                                    address: GuestPhysicalAddress(0), registers: &registers, platform: &platform)
        guard action == .resume, let length = SeL4Fault.hypervisorCallReply(layout: faultLayout, registers: &registers,
                                                                           store: { index, value in
            vmm_set_message_register(UInt8(index), seL4_Word(value))
        }) else {
            return resume(after: action, child: child)
        }
        replyLength.pointee = seL4_Word(length)
        return seL4_Bool(1)
    case .maintenance(let index):
        machine!.maintenance(vcpu: vcpu, listRegister: index, platform: &platform)
        return seL4_Bool(1)
    case .spuriousMaintenance:
        return seL4_Bool(1)
    case .privateInterrupt(let interrupt):
        machine!.notified(interrupt: interrupt, vcpu: vcpu, platform: &platform)
        return seL4_Bool(1)
    case .unhandled(let label, let pc):
        log("vmm: guest stopped: fault the VMM does not handle, label ")
        logHex(label)
        log(" PC ")
        logHex(pc)
        log("\n")
        stopGuest()
        return seL4_Bool(0)
    }
}

/// Carries out the core's decision; true means "reply to the fault", which resumes the vCPU.
func resume(after action: VCPUAction, child: microkit_child) -> seL4_Bool {
    switch action {
    case .resume, .waitForInterrupt:
        return seL4_Bool(1)
    case .startVCPU(let target, let entry, let context):
        // The core turned `target` on (PSCI SUCCESS to the caller, who resumes).
        guard target >= 0 && target < vcpuCount else { return seL4_Bool(1) }
        start(vcpu: target, registers: PSCI.cpuOnRegisters(entry: entry, context: context))
        return seL4_Bool(1)
    case .stopVCPU:
        // PSCI CPU_OFF: what its list registers held goes to the others; it waits for CPU_ON.
        machine!.vcpuStopped(vcpu: Int(child), platform: &platform)
        microkit_vcpu_stop(child)
        return seL4_Bool(0)
    case .powerOff:
        log("vmm: ")
        logVM()
        log("guest powered off")
        logOthersGoOn()
    case .reset:
        log("vmm: ")
        logVM()
        log("guest asked for a reset; stopping it")
        logOthersGoOn()
    case .stop(let report):
        log("\nvmm: guest stopped: ")
        log(report.reasonText)
        log("\nvmm:   ")
        logVM()
        log("vCPU ")
        logHex(UInt64(report.vcpu))
        log(" PC ")
        logHex(report.pc)
        log(" ESR ")
        logHex(report.syndrome)
        log(" address ")
        logHex(report.address)
        log("\n")
        if vmm_has_timer_server() {
            log("vmm: ")
            logVM()
            log("stopped; the other VMs go on\n")
        }
    }
    stopGuest()
    return seL4_Bool(0)
}

/// The whole guest ends: every vCPU stops, and none waits to be woken.
func stopGuest() {
    for vcpu in 0..<vcpuCount {
        waitingPC[vcpu] = nil
        microkit_vcpu_stop(microkit_child(vcpu))
    }
    setTimer(nil)
}

/// Where x`n` (0...30) sits in seL4_UserContext, in words: pc, sp and spsr come first, then
/// x0-x8, x16-x18, x29, x30, x9-x15, x19-x28.
func contextPosition(ofRegister n: Int) -> Int {
    switch n {
    case 0...8: return 3 + n
    case 16...18: return 12 + (n - 16)
    case 29, 30: return 15 + (n - 29)
    case 9...15: return 17 + (n - 9)
    default: return 24 + (n - 19)          // x19-x28
    }
}

/// How many words of seL4_UserContext reach register x`highest`: 3 for none, the PC alone.
func contextWords(through highest: Int?) -> seL4_Word {
    guard let n = highest, n >= 0, n < 31 else { return 3 }
    return seL4_Word(contextPosition(ofRegister: n) + 1)
}

/// The first `words` words of `context` (what TCB_ReadRegisters filled) as a RegisterFile; the
/// registers beyond them read as zero. Word by word in place: no copy of either structure.
func load(_ context: inout seL4_UserContext, words: seL4_Word) -> RegisterFile {
    var r = RegisterFile()
    withUnsafeBytes(of: &context) { raw in
        r.pc = raw.load(fromByteOffset: 0, as: UInt64.self)
        r.pstate = raw.load(fromByteOffset: 16, as: UInt64.self)
        for n in 0..<31 where contextPosition(ofRegister: n) < Int(words) {
            r.x[n] = raw.load(fromByteOffset: 8 * contextPosition(ofRegister: n), as: UInt64.self)
        }
    }
    return r
}

/// `r` back into the first `words` words of `context` (what TCB_WriteRegisters will write); sp,
/// which the core never changes, stays as read.
func store(_ r: inout RegisterFile, into context: inout seL4_UserContext, words: seL4_Word) {
    withUnsafeMutableBytes(of: &context) { raw in
        raw.storeBytes(of: r.pc, toByteOffset: 0, as: UInt64.self)
        raw.storeBytes(of: r.pstate, toByteOffset: 16, as: UInt64.self)
        for n in 0..<31 where contextPosition(ofRegister: n) < Int(words) {
            raw.storeBytes(of: r.read(n), toByteOffset: 8 * contextPosition(ofRegister: n), as: UInt64.self)
        }
    }
}
