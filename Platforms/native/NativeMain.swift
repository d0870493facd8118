// The native platform: the VMM running alone at EL2 on QEMU's virt board.
//
// It owns what seL4 would own on the Microkit platform: stage-2 tables, the EL2 system
// registers, the physical GIC and the world switch. It turns hardware events into the core's
// entry points (`fault`, `notified`, `maintenance`) and carries out the actions the core returns.
// Board facts (addresses, sizes, which lines are the guest's) are in `NativeBoard`.
import NativeHardware
import VMMCore

/// Where the native platform puts things on QEMU virt with -m 1G; the guest's view of the board
/// (addresses, interrupts, command line) is VMMCore's `QEMUVirtBoard`, shared with the Microkit port.
enum NativeBoard {
    static let guestRAMHost: UInt64 = 0x4800_0000        // where guest RAM lives in host RAM (see linker.ld)
    static let hostRAMForGuest: UInt64 = 0x2000_0000     // 512 MiB of the board's 1 GiB
    static let uart = QEMUVirtBoard.uart
    static let gicCPUInterface = QEMUVirtBoard.gicCPUInterface
    static let virtualTimer = QEMUVirtBoard.virtualTimerInterrupt
    static let uartInterrupt = QEMUVirtBoard.uartInterrupt
    /// CPUs the VMM can run vCPUs on: GICv2's eight, and linker.ld's EL2 stacks.
    static let maximumCPUs = 8
}

/// The effects the core asks for, done on the physical GIC, and the guest's device I/O, done by
/// the board's own virtio devices.
struct NativePlatform: VMMPlatform {
    var board: BoardDevices
    let guestRAMBase: UInt64

    mutating func writeListRegister(vcpu: Int, index: Int, entry: ListRegisterEntry) {
        NativeCPUs.writeListRegister(vcpu: vcpu, index: index, value: entry.gichValue)
    }

    mutating func acknowledgeInterrupt(_ interrupt: UInt32) {
        NativeGIC.enable(interrupt)
    }

    func deviceBuffers(_ segments: [VirtqueueBuffer]) -> [DeviceBuffer] {
        BoardDevices.deviceBuffers(segments, guestRAMBase: guestRAMBase)
    }

    func blockCapacity(device: Int) -> UInt64? {
        device >= 0 && device < board.blocks.count ? board.blocks[device].driver.capacity : nil
    }

    mutating func blockRead(device: Int, sector: UInt64, into segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        guard device >= 0 && device < board.blocks.count else { return false }
        return board.blocks[device].driver.read(sector: sector, into: deviceBuffers(segments))
    }

    mutating func blockWrite(device: Int, sector: UInt64, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        guard device >= 0 && device < board.blocks.count else { return false }
        return board.blocks[device].driver.write(sector: sector, from: deviceBuffers(segments))
    }

    mutating func blockFlush(device: Int) -> Bool {
        guard device >= 0 && device < board.blocks.count else { return false }
        return board.blocks[device].driver.flush()
    }

    mutating func networkTransmit(device: Int, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        guard device >= 0 && device < board.networks.count else { return false }
        let buffers = deviceBuffers(segments)
        guard board.networks[device].driver.transmit(buffers) else { return false }
        // The board's device reads the guest's buffers on its own time; the guest may reuse them as
        // soon as the chain is used. So wait here until the frame has left (bounded).
        var spins = 0
        while board.networks[device].driver.pendingTransmissions > 0 && spins < 50_000_000 {
            _ = board.networks[device].driver.reclaimTransmitted()
            spins += 1
        }
        return board.networks[device].driver.pendingTransmissions == 0
    }

    mutating func consoleWrite(device: Int, _ bytes: UnsafeRawBufferPointer) {
        guard device >= 0 && device < board.consoles.count else { return }
        var rest = bytes
        var attempts = 0
        while rest.count > 0 && attempts < 1_000_000 {
            let written = board.consoles[device].driver.write(rest)
            rest = UnsafeRawBufferPointer(rebasing: rest[written...])
            attempts += 1
        }
    }
}

/// Only the list registers: for delivering received data while the board's drivers are busy.
struct NativeInterruptSink: VMMPlatform {
    mutating func writeListRegister(vcpu: Int, index: Int, entry: ListRegisterEntry) {
        NativeCPUs.writeListRegister(vcpu: vcpu, index: index, value: entry.gichValue)
    }
    mutating func acknowledgeInterrupt(_ interrupt: UInt32) { NativeGIC.enable(interrupt) }
}

/// Guest vCPU state while the VMM runs: the trap frame that start.S fills and reloads.
struct NativeVCPU {
    static let frameWords = 100
    let frame: UnsafeMutablePointer<UInt64>

    init() {
        frame = UnsafeMutablePointer<UInt64>.allocate(capacity: NativeVCPU.frameWords)
        clear()
    }

    /// Every register zero (general purpose, FP/SIMD, PC, PSTATE).
    func clear() { frame.update(repeating: 0, count: NativeVCPU.frameWords) }

    var registers: RegisterFile {
        get {
            var registers = RegisterFile()
            for i in 0..<31 { registers.x[i] = frame[i] }
            registers.pc = frame[31]
            registers.pstate = frame[32]
            return registers
        }
        nonmutating set {
            for i in 0..<31 { frame[i] = newValue.x[i] }
            frame[31] = newValue.pc
            frame[32] = newValue.pstate
        }
    }
}

/// The guest's VM and its devices: shared by every CPU, only under the VM lock (NativeCPUs.swift).
nonisolated(unsafe) var machine: VirtualMachine? = nil
nonisolated(unsafe) var platform: NativePlatform? = nil
/// VTTBR_EL2 of the guest's stage 2, set by CPU 0 before any secondary CPU starts.
nonisolated(unsafe) var guestVTTBR: UInt64 = 0

@_cdecl("native_main")
func nativeMain() {
    NativeConsole.write("vmm: native platform at EL2 on QEMU virt (GICv2)\n")
    let configuration: GuestConfiguration
    do throws(GuestConfigurationError) {
        configuration = try GuestConfiguration(decoding: UnsafeRawBufferPointer(start: guest_config(),
                                                                                count: guest_config_size()))
    } catch {
        NativeConsole.write("vmm: the guest configuration in this image is unreadable; rebuild it with `vmm build`\n")
        return
    }
    guard configuration.ramSize <= NativeBoard.hostRAMForGuest, configuration.vcpuCount <= NativeBoard.maximumCPUs else {
        NativeConsole.write("vmm: this board gives the guest at most 512 MiB and 8 vCPUs; rebuild with `vmm build`\n")
        return
    }
    let memory = GuestMemory(base: GuestPhysicalAddress(configuration.ramBase), size: configuration.ramSize,
                             host: UnsafeMutableRawPointer(bitPattern: UInt(NativeBoard.guestRAMHost))!)
    let kernel = UnsafeRawBufferPointer(start: guest_kernel(), count: guest_kernel_size())
    let initrd = UnsafeRawBufferPointer(start: guest_initrd(), count: guest_initrd_size())

    NativeGIC.initialize()
    let (board, virtioDevices) = BoardDevices.bringUp(configuration.devices)
    let guest: LoadedGuest
    do throws(GuestBootError) {
        guest = try GuestBoot.load(into: memory, kernel: kernel, initrd: initrd.count > 0 ? initrd : nil,
                                   configuration: configuration, devices: virtioDevices)
    } catch {
        NativeConsole.write("vmm: cannot boot the guest: ")
        NativeConsole.write(error.message)
        NativeConsole.write("\n")
        return
    }
    // The kernel starts with its MMU and caches off: what the VMM wrote must be in memory.
    cleanToPointOfCoherency(memory, guest.layout.kernel, guest.layout.kernelSize)
    cleanToPointOfCoherency(memory, guest.layout.dtb, guest.deviceTreeSize)
    if let initrd = guest.layout.initrd { cleanToPointOfCoherency(memory, initrd, guest.layout.initrdSize) }
    ic_iallu()

    var routes = [InterruptRoute(physical: NativeBoard.virtualTimer, virtual: NativeBoard.virtualTimer),
                  InterruptRoute(physical: NativeBoard.uartInterrupt, virtual: NativeBoard.uartInterrupt)]
    for device in configuration.passthrough {
        if let interrupt = device.interrupt { routes.append(InterruptRoute(physical: interrupt, virtual: interrupt)) }
    }
    machine = VirtualMachine(memory: memory, vcpuCount: configuration.vcpuCount,
                             listRegisterCount: NativeGIC.listRegisterCount, routes: routes, devices: virtioDevices)
    platform = NativePlatform(board: board, guestRAMBase: configuration.ramBase)
    guestVTTBR = buildStage2(memory, passthrough: configuration.passthrough)
    configureEL2(vttbr: guestVTTBR, cpu: 0)
    guard NativeCPUs.startSecondaries(count: configuration.vcpuCount, listRegisters: NativeGIC.listRegisterCount) else {
        return
    }
    cpuSlots[0].vcpu.registers = guest.registers
    NativeConsole.write("vmm: guest loaded; entering the kernel at ")
    NativeConsole.hex(guest.registers.pc)
    NativeConsole.write(" with its device tree at ")
    NativeConsole.hex(guest.registers.read(0))
    if configuration.vcpuCount > 1 {
        NativeConsole.write("; ")
        NativeConsole.decimal(UInt64(configuration.vcpuCount))
        NativeConsole.write(" vCPUs, one per CPU")
    }
    NativeConsole.write("\n")
    for route in routes { NativeGIC.enable(route.physical) }
    while true {
        NativeCPUs.run(cpu: 0)
        NativeCPUs.waitForStart(cpu: 0)
    }
}

@_cdecl("native_secondary_main")
func nativeSecondaryMain(_ cpu: UInt64) {
    NativeCPUs.secondaryMain(cpu: Int(cpu), vttbr: guestVTTBR)
}

func cleanToPointOfCoherency(_ memory: GuestMemory, _ address: GuestPhysicalAddress, _ length: UInt64) {
    _ = memory.withBytes(at: address, length: length) { bytes in
        clean_dcache_range(UInt(bitPattern: bytes.baseAddress), bytes.count)
    }
}

/// The guest's stage-2 tables (Arm ARM D8): its RAM, its passthrough devices, the GIC's virtual CPU
/// interface and the PL011; returns VTTBR_EL2 (VMID 1).
func buildStage2(_ memory: GuestMemory, passthrough: [PassthroughDevice]) -> UInt64 {
    let stage2 = Stage2Translation()
    // Passthrough: the board's device where the board has it (GuestConfiguration checked the region
    // is page aligned and clear of RAM, the GIC, the UART and the virtio window).
    for device in passthrough { stage2.map(ipa: device.address, pa: device.address, size: device.size, .device) }
    stage2.map(ipa: memory.base.raw, pa: NativeBoard.guestRAMHost, size: memory.size, .normal)
    // The guest's GIC CPU interface is the hardware's virtual CPU interface (GICV, banked per CPU).
    stage2.map(ipa: NativeBoard.gicCPUInterface, pa: QEMUVirtBoard.gicVirtualCPUInterface,
               size: QEMUVirtBoard.gicCPUInterfaceSize, .device)
    // The PL011 is passed through: the guest drives it, its interrupt is routed as SPI 1.
    stage2.map(ipa: NativeBoard.uart, pa: NativeBoard.uart, size: QEMUVirtBoard.uartSize, .device)
    return stage2.vttbr(vmid: 1)
}

/// The EL2 controls that make this CPU's EL1 the guest's vCPU `cpu` (Arm ARM D13.2.48 HCR_EL2 and
/// friends); every CPU of the VM runs this for itself.
func configureEL2(vttbr: UInt64, cpu: Int) {
    write_vtcr_el2(Stage2Translation.vtcr)
    write_vttbr_el2(vttbr)
    write_vpidr_el2(read_midr_el1())
    write_vmpidr_el2(PSCI.mpidr(ofVCPU: cpu))     // Aff0 = the vCPU's index, RES1 bit 31
    write_cptr_el2(0x33ff)                        // RES1 bits; FP/SIMD not trapped (TFP = 0)
    write_hstr_el2(0)
    write_cnthctl_el2(3)                          // EL1 may read the physical counter and timer
    write_cntvoff_el2(0)                          // one virtual counter for every vCPU
    write_sctlr_el1(0x30d0_0800)                  // architectural reset value: MMU and caches off
    // VM | SWIO | FMO | IMO | AMO | FB | BSU inner | TSC | RW: stage 2 on, physical interrupts
    // to EL2 and virtual ones to the guest, SMC trapped, EL1 is AArch64. WFI/WFE are not trapped:
    // a waiting guest sleeps in hardware until an interrupt (physical ones come to EL2).
    write_hcr_el2((1 << 31) | (1 << 19) | (1 << 10) | (1 << 9) | (1 << 5) | (1 << 4) | (1 << 3) | (1 << 1) | 1)
    isb()
    tlbi_vmalls12e1()
}

/// Interrupts that reached EL2 on `cpu` while its guest ran (under the VM lock). Board devices'
/// and passthrough lines are SPIs that the physical GIC sends to CPU 0; the timer and maintenance
/// PPIs and the kick SGI are each CPU's own.
func handleInterrupts(cpu: Int) {
    while true {
        let iar = NativeGIC.acknowledge()
        let interrupt = iar & 0x3ff
        if interrupt >= 1020 { return }
        if interrupt == NativeCPUs.kickInterrupt {
            NativeGIC.endOfInterrupt(iar)   // the loop applies this CPU's pending list registers
        } else if let n = platform!.board.networks.firstIndex(where: { $0.interrupt == interrupt }) {
            _ = platform!.board.networks[n].driver.device.acknowledgeInterrupt()
            var sink = NativeInterruptSink()
            _ = platform!.board.networks[n].driver.receive { frame in
                machine!.networkReceived(device: n, frame: frame, platform: &sink)
            }
            _ = platform!.board.networks[n].driver.reclaimTransmitted()
            NativeGIC.endOfInterrupt(iar)
        } else if let n = platform!.board.consoles.firstIndex(where: { $0.interrupt == interrupt }) {
            _ = platform!.board.consoles[n].driver.device.acknowledgeInterrupt()
            var sink = NativeInterruptSink()
            _ = platform!.board.consoles[n].driver.receive { input in
                machine!.consoleReceived(device: n, input: input, platform: &sink)
            }
            NativeGIC.endOfInterrupt(iar)
        } else if interrupt == NativeGIC.maintenanceInterrupt {
            var finished = NativeGIC.endOfInterruptStatus
            while finished != 0 {
                let index = finished.trailingZeroBitCount
                NativeGIC.writeListRegister(index, 0)
                machine!.maintenance(vcpu: cpu, listRegister: index, platform: &platform!)
                finished &= finished - 1
            }
            NativeGIC.endOfInterrupt(iar)
        } else {
            NativeGIC.disable(interrupt)
            NativeGIC.endOfInterrupt(iar)
            machine!.notified(interrupt: interrupt, vcpu: cpu, platform: &platform!)
        }
    }
}

func reportStop(_ report: GuestStopReport) {
    NativeConsole.write("\nvmm: guest stopped: ")
    NativeConsole.write(report.reasonText)
    NativeConsole.write("\nvmm:   vCPU ")
    NativeConsole.decimal(UInt64(report.vcpu))
    NativeConsole.write(" PC ")
    NativeConsole.hex(report.pc)
    NativeConsole.write(" ESR ")
    NativeConsole.hex(report.syndrome)
    NativeConsole.write(" address ")
    NativeConsole.hex(report.address)
    NativeConsole.write("\n")
}

/// The VMM has nothing left to run: sleep, without spinning the host CPU.
func idle() -> Never {
    while true { wfi() }
}
