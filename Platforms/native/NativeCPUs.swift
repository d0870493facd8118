// The board's CPUs and the VMs on them: static partitioning in the style of Bao. VM k's vCPU i runs
// on one physical CPU for good (VMs take consecutive CPUs in the system file's order); the VMM
// schedules nothing.
//
// Each CPU runs the same loop: enter its guest, take its VM's lock, let the core handle the exit,
// put into its own list registers what sibling CPUs left for it, drop the lock, enter again. The
// exit that comes most often, the guest's own timer, takes no lock at all: the CPU puts it in a list
// register of its own, linked to the hardware (`takeWithoutLock`, `forwardTimer`). A VM's
// lock guards everything its CPUs share: the core's `VirtualMachine` (vGIC, PSCI, virtio models),
// the board devices behind it, and the per-CPU requests below. It is never held across a guest
// entry, and a CPU only ever takes its own VM's lock (then, briefly, the system lock), so one VM
// can stop, spin or flood without holding up another. What stays per CPU without a lock: the
// vCPU's trap frame and every EL1/EL2 system register (each vCPU owns its CPU's, so nothing is
// switched).
//
// A list register belongs to one CPU's GIC hypervisor interface (GICH is banked per CPU). When the
// core fills an LR of a sibling vCPU (an SGI from GICD_SGIR, an SPI the guest routed there, a device
// completion), the value waits in that CPU's pending slots and the CPU is kicked with a physical
// SGI; the kick makes it exit (or stay out) and copy its pending slots into its LRs before it enters
// its guest again. Secondary vCPUs sleep (WFI) until their VM's PSCI CPU_ON kicks them; CPU_OFF sends them back.
import NativeHardware
import VMMCore

/// One VM: the core's model of it, the board devices behind it and where it lives.
final class NativeVM {
    let index: Int
    /// The VM lock (a word for `NativeLock`).
    let lock: UnsafeMutablePointer<UInt64>
    var machine: VirtualMachine
    var platform: NativePlatform
    let vttbr: UInt64
    /// Its vCPU i runs on board CPU `cpus[i]`; its board devices' interrupts go to `cpus[0]`.
    let cpus: [Int]
    var firstCPU: Int { cpus[0] }
    let vcpuCount: Int
    /// The core stopped it, or it powered off: its CPUs leave their loops at their next exit.
    var stopped = false
    /// Frames wait on its switch ports that its guest had no buffers for: look again at each exit.
    var switchBacklog = false
    /// Its vCPU 0's registers at the kernel's entry (from the guest loader).
    var bootRegisters: RegisterFile
    /// What a reset of this VM alone starts again from: its images and the core's first state.
    let guest: GuestImages
    /// A reset (PSCI SYSTEM_RESET) is under way: each running vCPU parks at its next exit, and the
    /// last one to park reloads the guest and starts vCPU 0.
    var resetting = false
    var parked = 0
    var parkTarget = 0
    /// The core's count of GICD_CTLR changes when this VM's CPUs last refreshed their timer entries.
    var controlChanges = 0

    init(index: Int, machine: VirtualMachine, platform: NativePlatform, vttbr: UInt64, cpus: [Int], vcpuCount: Int,
         bootRegisters: RegisterFile, guest: GuestImages) {
        self.bootRegisters = bootRegisters
        self.guest = guest
        self.index = index
        lock = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        lock.initialize(to: 0)
        self.machine = machine
        self.platform = platform
        self.vttbr = vttbr
        self.cpus = cpus
        self.vcpuCount = vcpuCount
    }

    func acquire() { NativeLock.acquire(lock) }
    func release() { NativeLock.release(lock) }
}

/// One board CPU and the vCPU it runs; the mutable parts only under its VM's lock.
final class CPUSlot {
    let cpu: Int
    let vm: NativeVM
    /// The vCPU's index in its VM.
    let vcpu: Int
    /// The vCPU's registers while the VMM runs (start.S's frame); touched only by its own CPU.
    let frame = NativeVCPU()
    /// How the vCPU is to start: the boot vCPU's registers from the guest loader, or CPU_ON's.
    var start: RegisterFile? = nil
    /// List register values written for this vCPU by a sibling CPU (bit n of `pendingMask`: LR n).
    var pendingMask: UInt32 = 0
    var pending: [UInt64]
    /// The CPU has its GIC interface and EL2 registers set up.
    var ready = false
    /// The list register after the core's: the guest's timer, linked to the hardware.
    let timerListRegister: Int
    /// What that list register gets when the timer fires (`NativeCPUs.forwardTimer`), or 0 while the
    /// guest's distributor would not forward the timer; set from the core at each exit under the VM
    /// lock (`refreshTimer`) and read without it, by this CPU only.
    var timerEntry: UInt64 = 0
    /// The core's count of distributor writes when `timerEntry` was last set (-1: set it again).
    var distributorWrites = -1

    init(cpu: Int, vm: NativeVM, vcpu: Int, listRegisters: Int) {
        self.cpu = cpu
        self.vm = vm
        self.vcpu = vcpu
        pending = [UInt64](repeating: 0, count: listRegisters)
        timerListRegister = listRegisters
    }
}

/// Every VM, and for each board CPU the vCPU it runs (nil: none), fixed by CPU 0 before any
/// secondary CPU starts.
nonisolated(unsafe) var vms: [NativeVM] = []
nonisolated(unsafe) var cpuSlots: [CPUSlot?] = []
/// VMs still running; under `systemLock`. The board powers off when the last one does.
nonisolated(unsafe) var runningVMs = 0
nonisolated(unsafe) let systemLock: UnsafeMutablePointer<UInt64> = {
    let lock = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    lock.initialize(to: 0)
    return lock
}()

enum NativeCPUs {
    /// SGI 0 of the physical GIC: "look at your pending list registers" (the guests' SGIs are virtual).
    static let kickInterrupt: UInt32 = 0

    /// Starts the board CPUs that run a vCPU through the board's PSCI (QEMU's, over SMC) and waits
    /// until each has set itself up. False (with a message) when the board lacks one of them.
    static func startSecondaries() -> Bool {
        runningVMs = vms.count
        cpuSlots[0]?.ready = true
        for cpu in 1..<max(cpuSlots.count, 1) where cpuSlots[cpu] != nil {
            // PSCI CPU_ON (SMC64): target MPIDR (QEMU virt's affinity of the CPU index), entry, context id.
            let result = firmware_call(0xC400_0003, NativeGIC.affinity(ofCPU: cpu), secondary_entry_address(),
                                       UInt64(cpu))
            guard result == 0 else {
                NativeConsole.write("vmm: the board did not start CPU ")
                NativeConsole.decimal(UInt64(cpu))
                NativeConsole.write(" (PSCI CPU_ON returned ")
                NativeConsole.hex(result)
                NativeConsole.write("); the system's VMs have a vCPU for it: run QEMU with -smp at least their vCPU count\n")
                return false
            }
        }
        // Bounded: a CPU that never comes up is reported rather than waited for.
        for case let slot? in cpuSlots {
            var spins = 0
            while spins < 100_000_000 {
                slot.vm.acquire()
                let ready = slot.ready
                slot.vm.release()
                if ready { break }
                spins += 1
            }
            if spins == 100_000_000 {
                NativeConsole.write("vmm: a secondary CPU did not come up\n")
                return false
            }
        }
        return true
    }

    /// A secondary CPU's life: set up, then run its vCPU whenever its VM turns it on.
    static func secondaryMain(cpu: Int) -> Never {
        guard cpu < cpuSlots.count, let slot = cpuSlots[cpu] else { idle() }
        NativeGIC.initializeThisCPU()
        configureEL2(vttbr: slot.vm.vttbr, vcpu: slot.vcpu)
        slot.vm.acquire()
        slot.ready = true
        slot.vm.release()
        cpuLoop(slot)
    }

    /// Runs `slot`'s vCPU each time it is started, until its VM stops.
    static func cpuLoop(_ slot: CPUSlot) -> Never {
        while true {
            waitForStart(slot)
            run(slot)
        }
    }

    /// Sleeps until the vCPU has a start request, then loads it. A vCPU started by CPU_ON begins as
    /// PSCI says: MMU and caches off (SCTLR_EL1's reset value), its virtual timer off.
    ///
    /// The CPU sleeps in WFI, and whoever sets `start` kicks it (under TCG a waiting loop would take a
    /// host core from the CPUs that run). Each time it wakes it takes what is pending on it as at an
    /// exit (the kick that woke it, or an interrupt of its VM that came meanwhile), so that the next
    /// WFI sleeps again. A CPU whose VM has ended goes to `idle` for good.
    static func waitForStart(_ slot: CPUSlot) {
        while true {
            slot.vm.acquire()
            handleInterrupts(slot)
            let stopped = slot.vm.stopped
            let request = stopped || slot.vm.resetting ? nil : slot.start
            if request != nil {
                slot.start = nil
                slot.distributorWrites = -1
                refreshTimer(slot)
            }
            slot.vm.release()
            if stopped { idle() }
            if let registers = request {
                slot.frame.clear()
                slot.frame.registers = registers
                write_sctlr_el1(0x30d0_0800)
                write_cntv_ctl_el0(0)
                isb()
                return
            }
            wfi()
        }
    }

    /// "CPU 2" or "CPUs 2, 3".
    static func writeCPUs(_ cpus: [Int]) {
        NativeConsole.write(cpus.count == 1 ? "CPU " : "CPUs ")
        for (n, cpu) in cpus.enumerated() {
            if n > 0 { NativeConsole.write(", ") }
            NativeConsole.decimal(UInt64(cpu))
        }
    }

    /// Enters the vCPU until the core turns it off (returns) or its VM stops (never returns).
    ///
    /// An exit for the guest's timer alone goes back in without the VM lock: the timer goes straight
    /// into this CPU's own list register (`takeWithoutLock`). Everything else takes the lock.
    static func run(_ slot: CPUSlot) {
        let vm = slot.vm
        while true {
            let kind = enter_guest(slot.frame.frame)
            var kicked = false
            var first: UInt32? = nil
            if kind == 1 {
                (kicked, first) = takeWithoutLock(slot)
                if !kicked && first == nil { continue }
            }
            vm.acquire()
            if vm.stopped || vm.resetting, let first { NativeGIC.deactivate(first) }   // taken again later
            var next = vm.stopped ? .halt
                : vm.resetting ? park(slot) : handleExit(kind: kind, slot, kicked: kicked, first: first)
            if vm.switchBacklog && kind == 0 { NativeSwitches.deliver(to: vm) }
            if vm.stopped { next = .halt }
            if next == .resume {
                applyPending(slot)
                refreshTimer(slot)
            }
            vm.release()
            switch next {
            case .resume: continue
            case .offline: return
            case .halt: idle()
            }
        }
    }

    enum Next { case resume, offline, halt }

    /// The part of an interrupt exit that needs no lock: acknowledges this CPU's interrupts while
    /// they are the guest's timer (forwarded) or a kick (deactivated at once, so that a kick sent
    /// while this CPU waits for the lock can wake it: NativeLock). Returns whether a kick came and the
    /// first other interrupt, acknowledged with its priority dropped, for `handleInterrupts`.
    static func takeWithoutLock(_ slot: CPUSlot) -> (kicked: Bool, first: UInt32?) {
        var kicked = false
        while true {
            let iar = NativeGIC.acknowledge()
            let interrupt = iar & 0x3ff
            if interrupt >= 1020 { return (kicked, nil) }
            NativeGIC.dropPriority(iar)
            if forwardTimer(slot, interrupt) { continue }
            guard interrupt == kickInterrupt else { return (kicked, iar) }
            NativeGIC.deactivate(iar)
            kicked = true
        }
    }

    /// If `interrupt` is the guest's timer and its distributor forwards it, puts it in the timer's
    /// list register, linked to the hardware: the physical PPI stays active until the guest
    /// deactivates the virtual one, and the GIC then deactivates both, so no maintenance interrupt and
    /// no lock are needed. The list register is free here: the PPI could not fire again while the
    /// guest still had it. (Its priority was dropped already; this CPU's own state only.)
    static func forwardTimer(_ slot: CPUSlot, _ interrupt: UInt32) -> Bool {
        guard interrupt == QEMUVirtBoard.virtualTimerInterrupt, slot.timerEntry != 0 else { return false }
        NativeGIC.writeListRegister(slot.timerListRegister, slot.timerEntry)
        return true
    }

    /// Under the VM lock, before the vCPU enters: how its timer is to be forwarded, from the core's
    /// distributor. A change of GICD_CTLR (by any vCPU) bears on every vCPU's entry, so the CPU that
    /// sees it first kicks the others, which refresh theirs at that exit.
    static func refreshTimer(_ slot: CPUSlot) {
        let vm = slot.vm
        let writes = vm.machine.vgic.writes
        guard writes != slot.distributorWrites else { return }    // nothing it depends on changed
        slot.distributorWrites = writes
        let timer = QEMUVirtBoard.virtualTimerInterrupt
        slot.timerEntry = vm.machine.vgic.hardwareLinkedEntry(vcpu: slot.vcpu, interrupt: timer, physical: timer)
            .map(NativeGIC.listRegisterValue) ?? 0
        let changes = vm.machine.vgic.controlChanges
        guard changes != vm.controlChanges else { return }
        vm.controlChanges = changes
        for cpu in vm.cpus where cpu != slot.cpu { NativeGIC.sendSoftwareInterrupt(kickInterrupt, toCPU: cpu) }
    }

    /// Empties this CPU's list registers when its vCPU goes off or its VM is reset: what they held
    /// goes with the vCPU, and its timer stops. A timer the guest still held is deactivated here,
    /// since no guest will now: the physical PPI would stay active, and silent, for good.
    static func emptyListRegisters(_ slot: CPUSlot) {
        for index in 0...slot.timerListRegister { NativeGIC.writeListRegister(index, 0) }
        slot.pendingMask = 0
        slot.timerEntry = 0
        slot.distributorWrites = -1
        write_cntv_ctl_el0(0)
        let timer = QEMUVirtBoard.virtualTimerInterrupt
        if NativeGIC.isActive(timer) { NativeGIC.deactivate(timer) }
    }

    /// One exit of `slot`'s vCPU, under its VM's lock; for an interrupt exit, what `takeWithoutLock`
    /// found.
    static func handleExit(kind: UInt64, _ slot: CPUSlot, kicked: Bool, first: UInt32?) -> Next {
        let vm = slot.vm
        switch kind {
        case 0:
            let syndrome = ExceptionSyndrome(read_esr_el2())
            let address = faultingIPA(hpfar: read_hpfar_el2(), far: read_far_el2())
            // The core reads and writes the trap frame itself: no copy of the registers either way.
            let action = slot.frame.withRegisters { registers in
                vm.machine.fault(vcpu: slot.vcpu, syndrome: syndrome, address: address,
                                 registers: &registers, platform: &vm.platform)
            }
            return carryOut(action, slot)
        case 1:
            if handleInterrupts(slot, first: first) || kicked || vm.switchBacklog { NativeSwitches.deliver(to: vm) }
            return .resume
        default:
            NativeConsole.write("vmm: unexpected FIQ or SError from the guest, ESR ")
            NativeConsole.hex(read_esr_el2())
            NativeConsole.write(" PC ")
            NativeConsole.hex(slot.frame.frame[31])
            NativeConsole.write("\n")
            stop(vm, .stopped)
            return .halt
        }
    }

    static func carryOut(_ action: VCPUAction, _ slot: CPUSlot) -> Next {
        let vm = slot.vm
        switch action {
        case .resume, .waitForInterrupt:
            return .resume
        case .startVCPU(let target, let entry, let context):
            // The core turned `target` on (PSCI SUCCESS to the caller); its CPU sleeps in waitForStart.
            guard target >= 0 && target < vm.vcpuCount else { return .resume }
            cpuSlots[vm.cpus[target]]!.start = PSCI.cpuOnRegisters(entry: entry, context: context)
            NativeGIC.sendSoftwareInterrupt(kickInterrupt, toCPU: vm.cpus[target])
            return .resume
        case .stopVCPU:
            // PSCI CPU_OFF: what this vCPU's LRs held goes with it; its timer stops.
            emptyListRegisters(slot)
            vm.machine.vcpuStopped(vcpu: slot.vcpu, platform: &vm.platform)
            return .offline
        case .powerOff:
            stop(vm, .poweredOff)
            return .halt
        case .reset:
            if vms.count == 1 {
                NativeConsole.write("vmm: guest asked for a reset\n")
                _ = firmware_call(0x8400_0009, 0, 0, 0)   // PSCI SYSTEM_RESET of the board
                return .halt
            }
            // Several VMs: this VM alone starts again; the others never notice.
            vm.resetting = true
            vm.parked = 0
            vm.parkTarget = vm.machine.psci.online.filter { $0 }.count
            for cpu in vm.cpus {
                // A vCPU turned on but not started yet never runs, so it will not park either.
                if cpuSlots[cpu]!.start != nil { cpuSlots[cpu]!.start = nil; vm.parkTarget -= 1 }
                if cpu != slot.cpu { NativeGIC.sendSoftwareInterrupt(kickInterrupt, toCPU: cpu) }
            }
            return park(slot)
        case .stop(let report):
            reportStop(report, vm: vms.count > 1 ? vm.index : nil)
            stop(vm, .stopped)
            return .halt
        }
    }

    /// A running vCPU of a VM being reset stops here (under the VM lock): its list registers and timer
    /// are emptied, and the last one to park loads the guest again and starts vCPU 0.
    static func park(_ slot: CPUSlot) -> Next {
        let vm = slot.vm
        emptyListRegisters(slot)
        // What its LRs held is gone with them: their physical lines (this CPU's timer PPI among them)
        // must not stay masked waiting for an EOI that will never come.
        vm.machine.vcpuStopped(vcpu: slot.vcpu, platform: &vm.platform)
        NativeGIC.enable(QEMUVirtBoard.virtualTimerInterrupt)
        vm.parked += 1
        if vm.parked >= vm.parkTarget {
            guard let registers = reloadGuest(vm) else {
                stop(vm, .stopped)
                return .halt
            }
            vm.resetting = false
            for cpu in vm.cpus { cpuSlots[cpu]!.pendingMask = 0 }
            cpuSlots[vm.firstCPU]!.start = registers
            for route in vm.guest.routes where route.physical >= 32 { NativeGIC.enable(route.physical, toCPU: vm.firstCPU) }
            NativeGIC.sendSoftwareInterrupt(kickInterrupt, toCPU: vm.firstCPU)
            NativeConsole.write("\nvmm: VM ")
            NativeConsole.decimal(UInt64(vm.index))
            NativeConsole.write(" reset; the other VMs go on\n")
        }
        return .offline
    }

    enum Ending {
        case poweredOff, stopped, resetRefused
        var text: StaticString {
            switch self {
            case .poweredOff: return "powered off"
            case .stopped: return "stopped"
            case .resetRefused: return "asked for a reset (of the whole board: refused while other VMs run); stopped"
            }
        }
    }

    /// Ends `vm` (under its lock): its CPUs leave their loops at their next exit, which the kick makes
    /// come now. When it was the last VM running and it powered off, the board powers off.
    static func stop(_ vm: NativeVM, _ ending: Ending) {
        guard !vm.stopped else { return }
        vm.stopped = true
        let me = Int(current_cpu())
        for cpu in vm.cpus where cpu != me {
            NativeGIC.sendSoftwareInterrupt(kickInterrupt, toCPU: cpu)
        }
        NativeLock.acquire(systemLock)
        runningVMs -= 1
        let last = runningVMs == 0
        NativeLock.release(systemLock)
        if vms.count == 1 {
            if ending == .poweredOff { NativeConsole.write("vmm: guest powered off\n") }
        } else {
            NativeConsole.write("\nvmm: VM ")
            NativeConsole.decimal(UInt64(vm.index))
            NativeConsole.write(" ")
            NativeConsole.write(ending.text)
            NativeConsole.write(last ? "; it was the last VM\n" : "; the other VMs go on\n")
        }
        if last && ending == .poweredOff {
            _ = firmware_call(0x8400_0008, 0, 0, 0)   // PSCI SYSTEM_OFF to the board
        }
    }

    /// The core wants `value` in LR `index` of board CPU `cpu`'s vCPU: now if that is this CPU, else at
    /// its next entry, kicking it out of its guest. (Under the VM's lock: `cpu` is one of its CPUs.)
    static func writeListRegister(cpu: Int, index: Int, value: UInt64) {
        if cpu == Int(current_cpu()) {
            NativeGIC.writeListRegister(index, value)
            return
        }
        guard cpu >= 0 && cpu < cpuSlots.count, let slot = cpuSlots[cpu], index >= 0 && index < slot.pending.count else {
            return
        }
        slot.pending[index] = value
        slot.pendingMask |= 1 << UInt32(index)
        NativeGIC.sendSoftwareInterrupt(kickInterrupt, toCPU: cpu)
    }

    /// Copies what sibling CPUs left for this CPU's vCPU into its list registers (under the VM lock).
    static func applyPending(_ slot: CPUSlot) {
        var mask = slot.pendingMask
        guard mask != 0 else { return }
        slot.pendingMask = 0
        while mask != 0 {
            let index = mask.trailingZeroBitCount
            NativeGIC.writeListRegister(index, slot.pending[index])
            mask &= mask - 1
        }
    }
}
