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
    /// Where QEMU leaves its device tree for a bare-metal ELF: the start of RAM (linker.ld keeps it free).
    static let firmwareDeviceTree: UInt64 = 0x4000_0000
    /// The end of the board's RAM as its device tree says (QEMU's -m), within the EL2 identity map's
    /// 256 GiB (start.S); 1 GiB of RAM when there is no readable device tree.
    static let ramEnd: UInt64 = {
        let blob = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(firmwareDeviceTree)), count: 0x10_0000)
        guard let ranges = BoardMemory.ranges(inDeviceTree: blob),
              let ram = ranges.first(where: { $0.base == firmwareDeviceTree }) else { return 0x8000_0000 }
        return min(ram.base &+ ram.size, 0x40_0000_0000)
    }()
    /// The seed QEMU wrote for this boot into its device tree (/chosen/rng-seed), or nil; read once,
    /// before anything else could touch the start of RAM.
    static let boardSeed: [UInt8]? = GuestEntropy.boardSeed(deviceTree: UnsafeRawBufferPointer(
        start: UnsafeRawPointer(bitPattern: UInt(firmwareDeviceTree)), count: 0x10_0000))
    /// Host RAM for the guests: from guestRAMHost to the end of the board's RAM.
    static var hostRAMForGuest: UInt64 { ramEnd > guestRAMHost ? ramEnd - guestRAMHost : 0 }
    static let uart = QEMUVirtBoard.uart
    static let gicCPUInterface = QEMUVirtBoard.gicCPUInterface
    static let virtualTimer = QEMUVirtBoard.virtualTimerInterrupt
    static let uartInterrupt = QEMUVirtBoard.uartInterrupt
    /// CPUs the VMM can run vCPUs on: linker.ld's EL2 stacks and NativeLock's sleeper bits (a GICv2
    /// board has at most 8 anyway).
    static let maximumCPUs = 32
}

/// The effects the core asks for, done on the physical GIC, and the guest's device I/O, done by
/// the board's own virtio devices.
struct NativePlatform: VMMPlatform {
    var board: BoardDevices
    let guestRAMBase: UInt64
    /// Where the VM's RAM is in host RAM, and the board CPU of each of its vCPUs.
    let guestRAMHost: UInt64
    let cpus: [Int]

    mutating func writeListRegister(vcpu: Int, index: Int, entry: ListRegisterEntry) {
        guard vcpu >= 0 && vcpu < cpus.count else { return }
        NativeCPUs.writeListRegister(cpu: cpus[vcpu], index: index, value: NativeGIC.listRegisterValue(entry))
    }

    mutating func acknowledgeInterrupt(_ interrupt: UInt32, vcpu: Int) {
        NativeGIC.enable(interrupt, toCPU: cpus[0])
    }

    func deviceBuffers(_ segments: [VirtqueueBuffer]) -> [DeviceBuffer] {
        BoardDevices.deviceBuffers(segments, guestRAMBase: guestRAMBase, guestRAMHost: guestRAMHost)
    }

    /// Output of the VM's emulated PL011 the board console had no buffer for yet (bounded).
    var uartPending: [UInt8] = []
    /// Room for a guest's whole boot log (some 13 KiB) should the board keep its buffers a while.
    /// (What QEMU's virtconsole cannot write to its socket at once it drops, whatever is kept here:
    /// the reader on the socket must keep reading.)
    static let uartPendingLimit = 64 * 1024

    /// A byte of the VM's emulated PL011 goes to its board console without waiting: while nobody is
    /// connected to the console's socket the board may keep its buffers, and a guest must not stall
    /// on its serial line for that (a UART with no listener loses its output; so does this one,
    /// beyond the bytes it keeps).
    mutating func uartWrite(_ byte: UInt8) {
        guard board.serial != nil else { return }
        if uartPending.count >= Self.uartPendingLimit { uartPending.removeFirst(uartPending.count / 2) }
        uartPending.append(byte)
        flushUART()
    }

    /// Hands the board console what it can take now of the pending output: at each byte the guest
    /// writes, and when the board gives buffers back (its interrupt), so that output waiting behind
    /// a busy board leaves as soon as it can rather than with the guest's next byte.
    mutating func flushUART() {
        guard board.serial != nil, !uartPending.isEmpty else { return }
        let written = uartPending.withUnsafeBytes { board.serial!.driver.write($0) }
        uartPending.removeFirst(written)
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
        if let attachment = board.switched.first(where: { $0.guestDevice == device }) {
            return NativeSwitches.send(from: attachment, segments, memory: memory)
        }
        guard let device = board.networks.firstIndex(where: { $0.guestDevice == device }) else { return false }
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
    let cpus: [Int]
    mutating func writeListRegister(vcpu: Int, index: Int, entry: ListRegisterEntry) {
        guard vcpu >= 0 && vcpu < cpus.count else { return }
        NativeCPUs.writeListRegister(cpu: cpus[vcpu], index: index, value: NativeGIC.listRegisterValue(entry))
    }
    mutating func acknowledgeInterrupt(_ interrupt: UInt32, vcpu: Int) { NativeGIC.enable(interrupt, toCPU: cpus[0]) }
}

/// Guest vCPU state while the VMM runs: the trap frame that start.S fills and reloads.
struct NativeVCPU {
    static let frameWords = 34
    let frame: UnsafeMutablePointer<UInt64>

    init() {
        frame = UnsafeMutablePointer<UInt64>.allocate(capacity: NativeVCPU.frameWords)
        clear()
    }

    /// Every register zero (general purpose, PC, PSTATE; FP/SIMD stays in the hardware, start.S).
    func clear() { frame.update(repeating: 0, count: NativeVCPU.frameWords) }

    /// `body` with the frame's first 33 words seen as the core's `RegisterFile`, in place: x0-x30,
    /// then ELR_EL2 as the PC and SPSR_EL2 as PSTATE, the same words in the same order
    /// (`RegisterFile.isFrameLayout` is checked at boot, and by the host tests).
    func withRegisters<Result>(_ body: (inout RegisterFile) -> Result) -> Result {
        frame.withMemoryRebound(to: RegisterFile.self, capacity: 1) { body(&$0.pointee) }
    }

    var registers: RegisterFile {
        get {
            var registers = RegisterFile()
            for i in 0..<31 { registers.x[i] = frame[i] }
            registers.pc = frame[31]
            registers.pstate = frame[32]
            return registers
        }
        nonmutating set {
            // One copy of the 31 registers: subscripting `newValue.x` in a loop copies the whole
            // InlineArray at each step (-Osize), 31 times 248 bytes at every exit.
            withUnsafeBytes(of: newValue.x) { x in
                UnsafeMutableRawPointer(frame).copyMemory(from: x.baseAddress!, byteCount: 31 * 8)
            }
            frame[31] = newValue.pc
            frame[32] = newValue.pstate
        }
    }
}

@_cdecl("native_main")
func nativeMain() {
    NativeGIC.initialize()
    // Read once here, before any other CPU starts and runs configureEL2 with them.
    _ = (BoardCPU.hasSVE, BoardCPU.hasPointerAuthentication)
    NativeConsole.write(NativeGIC.isVersion3 ? "vmm: native platform at EL2 on QEMU virt (GICv3)\n"
                                             : "vmm: native platform at EL2 on QEMU virt (GICv2)\n")
    guard RegisterFile.isFrameLayout else {     // NativeVCPU.withRegisters works in place on the frame
        NativeConsole.write("vmm: this build lays out RegisterFile unlike the trap frame; it cannot run guests\n")
        return
    }
    let count = Int(truncatingIfNeeded: guest_count())
    guard count >= 1 && count <= NativeBoard.maximumCPUs else {
        NativeConsole.write("vmm: this image carries no guest, or more VMs than the board has CPUs; rebuild it with `vmm build`\n")
        return
    }
    NativeConsole.write("vmm: board RAM ends at ")
    NativeConsole.hex(NativeBoard.ramEnd)
    NativeConsole.write(NativeBoard.boardSeed != nil ? "\nvmm: each guest's seed is mixed with the board's for this boot\n"
                                                     : "\nvmm: the board gives no seed; each guest gets its build's\n")
    cpuSlots = [CPUSlot?](repeating: nil, count: NativeBoard.maximumCPUs)
    var nextHostRAM = NativeBoard.guestRAMHost
    var taken = BoardDevices.Taken()
    for index in 0..<count {
        guard let cpus = boardCPUs(ofVM: index) else { return }
        guard let vm = bootVM(index, cpus: cpus, hostRAM: nextHostRAM, taken: &taken) else { return }
        vms.append(vm)
        for (vcpu, cpu) in cpus.enumerated() {
            cpuSlots[cpu] = CPUSlot(cpu: cpu, vm: vm, vcpu: vcpu, listRegisters: NativeGIC.coreListRegisterCount)
        }
        nextHostRAM += (vm.machine.memory.size + 0x1F_FFFF) & ~0x1F_FFFF
    }
    NativeSwitches.connect()
    for vm in vms { cpuSlots[vm.firstCPU]!.start = vm.bootRegisters }
    guard NativeCPUs.startSecondaries() else { return }
    // CPU 0 runs its vCPU like every other CPU, or nothing when the system leaves it free.
    guard let slot = cpuSlots[0] else { idle() }
    configureEL2(vttbr: slot.vm.vttbr, vcpu: slot.vcpu)
    NativeCPUs.cpuLoop(slot)
}

/// The board CPU of each vCPU of VM `index` (guest_table's seventh word points at them, one byte
/// each), or nil after saying why: a CPU past the VMM's, or one another VM already has.
func boardCPUs(ofVM index: Int) -> [Int]? {
    let vcpus = Int(truncatingIfNeeded: guest_vcpu_count(UInt64(index)))
    var cpus: [Int] = []
    for vcpu in 0..<min(max(vcpus, 0), NativeBoard.maximumCPUs) {
        let cpu = Int(guest_cpu(UInt64(index), UInt64(vcpu)))
        guard cpu < NativeBoard.maximumCPUs, cpuSlots[cpu] == nil, !cpus.contains(cpu) else {
            NativeConsole.write("vmm: this image gives a board CPU to two vCPUs, or names one past CPU 31; rebuild it with `vmm build`\n")
            return nil
        }
        cpus.append(cpu)
    }
    return cpus.isEmpty ? nil : cpus
}

/// A VM's parts in the VMM's image (guest_table) and what the core was first given for it.
struct GuestImages {
    let kernel: UnsafeRawBufferPointer
    let initrd: UnsafeRawBufferPointer
    let configuration: GuestConfiguration
    let devices: [VirtioDeviceDescription]
    let routes: [InterruptRoute]
    let emulatedUART: Bool
    /// The seed `vmm build` drew for this VM (GuestEntropy).
    let seed: UnsafeRawBufferPointer
}

/// Copies the guest into its RAM (kernel, device tree, initrd) and cleans it to the point of
/// coherency; its vCPU 0's first registers, or nil after saying why it cannot boot.
func loadGuest(_ images: GuestImages, into memory: GuestMemory) -> RegisterFile? {
    let guest: LoadedGuest
    do throws(GuestBootError) {
        guest = try GuestBoot.load(into: memory, kernel: images.kernel,
                                   initrd: images.initrd.count > 0 ? images.initrd : nil,
                                   configuration: images.configuration, devices: images.devices,
                                   rngSeed: GuestEntropy.mix(images.seed, with: NativeBoard.boardSeed,
                                                             counter: read_cntpct_el0()))
    } catch {
        NativeConsole.write("vmm: cannot boot the guest: ")
        NativeConsole.write(error.message)
        NativeConsole.write("\n")
        return nil
    }
    // The kernel starts with its MMU and caches off: what the VMM wrote must be in memory.
    cleanToPointOfCoherency(memory, guest.layout.kernel, guest.layout.kernelSize)
    cleanToPointOfCoherency(memory, guest.layout.dtb, guest.deviceTreeSize)
    if let initrd = guest.layout.initrd { cleanToPointOfCoherency(memory, initrd, guest.layout.initrdSize) }
    ic_iallu()
    return guest.registers
}

/// The core's model of a VM as it is at power-on.
func freshMachine(_ images: GuestImages, memory: GuestMemory) -> VirtualMachine {
    var machine = VirtualMachine(memory: memory, vcpuCount: images.configuration.vcpuCount,
                                 listRegisterCount: NativeGIC.coreListRegisterCount, routes: images.routes,
                                 devices: images.devices, gicVersion: images.configuration.gicVersion,
                                 emulatedUART: images.emulatedUART)
    machine.idRegisters = BoardCPU.guestIDRegisters(ipaBits: Stage2Translation.ipaBits,
                                                    gicVersion: images.configuration.gicVersion)
    return machine
}

/// PSCI SYSTEM_RESET of one VM among several (under its lock, every vCPU parked): its guest is
/// loaded again and the core's state is as at power-on; the board devices behind it stay as they are.
func reloadGuest(_ vm: NativeVM) -> RegisterFile? {
    let memory = vm.machine.memory
    guard let registers = loadGuest(vm.guest, into: memory) else { return nil }
    vm.machine = freshMachine(vm.guest, memory: memory)
    return registers
}

/// Loads VM `index` of the image into its RAM (host RAM from `hostRAM`), brings up the board devices
/// behind its devices and builds its stage 2; nil after saying why it cannot run.
func bootVM(_ index: Int, cpus: [Int], hostRAM: UInt64, taken: inout BoardDevices.Taken) -> NativeVM? {
    let configuration: GuestConfiguration
    do throws(GuestConfigurationError) {
        configuration = try GuestConfiguration(decoding: UnsafeRawBufferPointer(start: guest_part(UInt64(index), 2),
                                                                                count: guest_part_size(UInt64(index), 2)))
    } catch {
        NativeConsole.write("vmm: a guest configuration in this image is unreadable; rebuild it with `vmm build`\n")
        return nil
    }
    guard configuration.gicVersion == NativeGIC.guestVersion else {
        NativeConsole.write(NativeGIC.isVersion3
            ? "vmm: this image's guests have a GICv2 and the board a GICv3; run QEMU with gic-version=2, or build with gic = 3\n"
            : "vmm: this image's guests have a GICv3 and the board a GICv2; run QEMU with gic-version=3, or build with gic = 2\n")
        return nil
    }
    let ramEnd = NativeBoard.guestRAMHost + NativeBoard.hostRAMForGuest
    guard configuration.ramSize <= ramEnd - hostRAM, configuration.vcpuCount == cpus.count else {
        NativeConsole.write("vmm: the VMs need more RAM than the board has for guests (")
        NativeConsole.decimal(NativeBoard.hostRAMForGuest >> 20)
        NativeConsole.write(" MiB above 0x48000000: QEMU's -m) or more CPUs than the table names; rebuild with `vmm build`\n")
        return nil
    }
    let memory = GuestMemory(base: GuestPhysicalAddress(configuration.ramBase), size: configuration.ramSize,
                             host: UnsafeMutableRawPointer(bitPattern: UInt(hostRAM))!)
    let kernel = UnsafeRawBufferPointer(start: guest_part(UInt64(index), 0), count: guest_part_size(UInt64(index), 0))
    let initrd = UnsafeRawBufferPointer(start: guest_part(UInt64(index), 1), count: guest_part_size(UInt64(index), 1))
    // VM 0 owns the board's PL011 (passed through); every later VM gets an emulated one whose bytes
    // travel through one more board console, after its own.
    let ownsUART = index == 0
    let (board, virtioDevices) = BoardDevices.bringUp(configuration.devices, taken: &taken, serial: !ownsUART,
                                                      interruptCPU: cpus[0])
    var routes = [InterruptRoute(physical: NativeBoard.virtualTimer, virtual: NativeBoard.virtualTimer)]
    if ownsUART { routes.append(InterruptRoute(physical: NativeBoard.uartInterrupt, virtual: NativeBoard.uartInterrupt)) }
    for device in configuration.passthrough {
        if let interrupt = device.interrupt { routes.append(InterruptRoute(physical: interrupt, virtual: interrupt)) }
    }
    let images = GuestImages(kernel: kernel, initrd: initrd, configuration: configuration, devices: virtioDevices,
                             routes: routes, emulatedUART: !ownsUART,
                             seed: UnsafeRawBufferPointer(start: guest_seed(UInt64(index)), count: guest_seed_size(UInt64(index))))
    guard let registers = loadGuest(images, into: memory) else { return nil }
    let machine = freshMachine(images, memory: memory)
    let platform = NativePlatform(board: board, guestRAMBase: configuration.ramBase, guestRAMHost: hostRAM,
                                  cpus: cpus)
    let vttbr = buildStage2(memory, hostRAM: hostRAM, passthrough: configuration.passthrough, uart: ownsUART,
                            vmid: UInt16(index + 1))
    let vm = NativeVM(index: index, machine: machine, platform: platform, vttbr: vttbr, cpus: cpus,
                      vcpuCount: configuration.vcpuCount, bootRegisters: registers, guest: images)
    NativeConsole.write("vmm: VM ")
    NativeConsole.decimal(UInt64(index))
    NativeConsole.write(" loaded; entering the kernel at ")
    NativeConsole.hex(registers.pc)
    NativeConsole.write(" with its device tree at ")
    NativeConsole.hex(registers.x[0])
    NativeConsole.write("; ")
    NativeCPUs.writeCPUs(cpus)
    NativeConsole.write("\n")
    for route in routes where route.physical >= 32 { NativeGIC.enable(route.physical, toCPU: cpus[0]) }
    return vm
}

@_cdecl("native_secondary_main")
func nativeSecondaryMain(_ cpu: UInt64) {
    NativeCPUs.secondaryMain(cpu: Int(cpu))
}

func cleanToPointOfCoherency(_ memory: GuestMemory, _ address: GuestPhysicalAddress, _ length: UInt64) {
    _ = memory.withBytes(at: address, length: length) { bytes in
        clean_dcache_range(UInt(bitPattern: bytes.baseAddress), bytes.count)
    }
}

/// A VM's stage-2 tables (Arm ARM D8): its RAM (at `hostRAM`), its passthrough devices, the GIC's
/// virtual CPU interface and, for the VM that owns it, the PL011; returns its VTTBR_EL2.
func buildStage2(_ memory: GuestMemory, hostRAM: UInt64, passthrough: [PassthroughDevice], uart: Bool,
                 vmid: UInt16) -> UInt64 {
    let stage2 = Stage2Translation()
    // Passthrough: the board's device where the board has it (GuestConfiguration checked the region
    // is page aligned and clear of RAM, the GIC, the UART and the virtio window; `vmm check` that no
    // two VMs are given the same one).
    for device in passthrough { stage2.map(ipa: device.address, pa: device.address, size: device.size, .device) }
    stage2.map(ipa: memory.base.raw, pa: hostRAM, size: memory.size, .normal)
    // The guest's GICv2 CPU interface is the hardware's virtual CPU interface (GICV, banked per CPU);
    // a GICv3 guest's is the virtual one behind its ICC_* system registers, with nothing to map.
    if !NativeGIC.isVersion3 {
        stage2.map(ipa: NativeBoard.gicCPUInterface, pa: QEMUVirtBoard.gicVirtualCPUInterface,
                   size: QEMUVirtBoard.gicCPUInterfaceSize, .device)
    }
    // The PL011 is passed through to VM 0: the guest drives it, its interrupt is routed as SPI 1.
    // Other VMs' accesses there trap to their emulated PL011.
    if uart { stage2.map(ipa: NativeBoard.uart, pa: NativeBoard.uart, size: QEMUVirtBoard.uartSize, .device) }
    return stage2.vttbr(vmid: vmid)
}

/// Interrupts that reached EL2 on `slot`'s CPU while its guest ran (under its VM's lock), starting
/// with `first` when `NativeCPUs.takeWithoutLock` already acknowledged it; true when one was a kick.
/// A VM's board devices and passthrough lines are SPIs the physical GIC sends to the VM's first CPU;
/// the timer and maintenance PPIs and the kick SGI are each CPU's own. Each interrupt's priority is
/// dropped as it is acknowledged, and it is deactivated once handled (EOImode 1, NativeGIC).
@discardableResult
func handleInterrupts(_ slot: CPUSlot, first: UInt32? = nil) -> Bool {
    let vm = slot.vm
    let sinkCPUs = NativeInterruptSink(cpus: vm.cpus)
    var kicked = false
    var next = first
    while true {
        let iar: UInt32
        if let taken = next {
            iar = taken
            next = nil
        } else {
            iar = NativeGIC.acknowledge()
            if iar & 0x3ff >= 1020 { return kicked }
            NativeGIC.dropPriority(iar)
        }
        let interrupt = iar & 0x3ff
        if NativeCPUs.forwardTimer(slot, interrupt) { continue }
        if interrupt == NativeCPUs.kickInterrupt {
            kicked = true                   // pending list registers, or frames on the VM's switch ports
            NativeGIC.deactivate(iar)
        } else if let n = vm.platform.board.networks.firstIndex(where: { $0.interrupt == interrupt }) {
            _ = vm.platform.board.networks[n].driver.device.acknowledgeInterrupt()
            var sink = sinkCPUs
            let guestDevice = vm.platform.board.networks[n].guestDevice
            _ = vm.platform.board.networks[n].driver.receive { frame in
                vm.machine.networkReceived(device: guestDevice, frame: frame, platform: &sink)
            }
            _ = vm.platform.board.networks[n].driver.reclaimTransmitted()
            NativeGIC.deactivate(iar)
        } else if let n = vm.platform.board.consoles.firstIndex(where: { $0.interrupt == interrupt }) {
            _ = vm.platform.board.consoles[n].driver.device.acknowledgeInterrupt()
            var sink = sinkCPUs
            _ = vm.platform.board.consoles[n].driver.receive { input in
                vm.machine.consoleReceived(device: n, input: input, platform: &sink)
            }
            NativeGIC.deactivate(iar)
        } else if vm.platform.board.serial?.interrupt == interrupt {
            _ = vm.platform.board.serial!.driver.device.acknowledgeInterrupt()
            var sink = sinkCPUs
            _ = vm.platform.board.serial!.driver.receive { input in
                vm.machine.uartReceived(input: input, platform: &sink)
            }
            vm.platform.flushUART()
            NativeGIC.deactivate(iar)
        } else if interrupt == NativeGIC.maintenanceInterrupt {
            var finished = NativeGIC.endOfInterruptStatus
            while finished != 0 {
                let index = finished.trailingZeroBitCount
                NativeGIC.writeListRegister(index, 0)
                vm.machine.maintenance(vcpu: slot.vcpu, listRegister: index, platform: &vm.platform)
                finished &= finished - 1
            }
            NativeGIC.deactivate(iar)
        } else {
            NativeGIC.disable(interrupt)
            NativeGIC.deactivate(iar)
            vm.machine.notified(interrupt: interrupt, vcpu: slot.vcpu, platform: &vm.platform)
        }
    }
}

/// The core's report of a guest it stopped; `vm` names the VM when there are several.
func reportStop(_ report: GuestStopReport, vm: Int?) {
    NativeConsole.write("\nvmm: guest stopped: ")
    NativeConsole.write(report.reasonText)
    NativeConsole.write("\nvmm:   ")
    if let vm {
        NativeConsole.write("VM ")
        NativeConsole.decimal(UInt64(vm))
        NativeConsole.write(" ")
    }
    NativeConsole.write("vCPU ")
    NativeConsole.decimal(UInt64(report.vcpu))
    NativeConsole.write(" PC ")
    NativeConsole.hex(report.pc)
    NativeConsole.write(" ESR ")
    NativeConsole.hex(report.syndrome)
    NativeConsole.write(" address ")
    NativeConsole.hex(report.address)
    NativeConsole.write("\n")
}

/// This CPU has nothing left to run: sleep, without spinning the host CPU. A pending interrupt ends
/// a WFI even while masked, so first nothing may signal this CPU any more: its guest's timer stops and
/// its GIC CPU and virtual interfaces are turned off (the other CPUs, and the other VMs, go on).
func idle() -> Never {
    write_cntv_ctl_el0(0)
    NativeGIC.disableThisCPU()
    while true { wfi() }
}
