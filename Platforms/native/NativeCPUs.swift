// The board's CPUs, one per vCPU (static partitioning in the style of Bao: vCPU i runs on physical
// CPU i, always; the VMM schedules nothing).
//
// Each CPU runs the same loop: enter its guest, take the VM lock, let the core handle the exit, put
// into its own list registers what other CPUs left for it, drop the lock, enter again. The lock
// (`vm_lock_acquire`, board.c) guards everything a VM's CPUs share: the core's `VirtualMachine`
// (vGIC, PSCI, virtio models), the board's devices behind them and this file's per-CPU requests. It
// is never held across a guest entry. What stays per CPU without a lock: the vCPU's trap frame and
// every EL1/EL2 system register (each vCPU owns its CPU's, so nothing is switched).
//
// A list register belongs to one CPU's GIC hypervisor interface (GICH is banked per CPU). When the
// core fills an LR of another vCPU (an SGI from GICD_SGIR, an SPI the guest routed elsewhere, a
// device completion), the value waits in that CPU's pending slot and the CPU is kicked with a
// physical SGI; the kick makes it exit (or stay out) and copy its pending slots into its LRs before
// it enters its guest again. Secondary CPUs start at boot and wait (WFE) until their vCPU gets a
// PSCI CPU_ON; CPU_OFF sends them back to waiting.
import NativeHardware
import VMMCore

/// What one CPU shares with the others, under the VM lock.
struct CPUSlot {
    /// The vCPU's registers while the VMM runs (start.S's frame); touched only by its own CPU.
    let vcpu: NativeVCPU
    /// CPU_ON's request for this vCPU, taken by its CPU when it starts the vCPU.
    var start: (entry: UInt64, context: UInt64)? = nil
    /// List register values written for this vCPU by another CPU (bit n of `pendingMask`: LR n).
    var pendingMask: UInt32 = 0
    var pending: [UInt32]
    /// The CPU has its GIC interface and EL2 registers set up.
    var ready = false
}

/// The VM's CPUs. Only under the VM lock, except `count` (fixed before any secondary starts).
nonisolated(unsafe) var cpuSlots: [CPUSlot] = []
/// Set when the core stopped the guest: every CPU leaves its loop at its next exit.
nonisolated(unsafe) var guestStopped = false

enum NativeCPUs {
    /// SGI 0 of the physical GIC: "look at your pending list registers" (the guest's SGIs are virtual).
    static let kickInterrupt: UInt32 = 0

    /// Makes `slots` vCPU slots; then starts CPUs 1..<count through the board's PSCI (QEMU's, over
    /// SMC). False (with a message) when the board has fewer CPUs than the system's vCPUs.
    static func startSecondaries(count: Int, listRegisters: Int) -> Bool {
        cpuSlots = (0..<count).map { _ in CPUSlot(vcpu: NativeVCPU(), pending: [UInt32](repeating: 0, count: listRegisters)) }
        cpuSlots[0].ready = true
        for cpu in 1..<max(count, 1) {
            // PSCI CPU_ON (SMC64): target MPIDR (QEMU virt: Aff0 = CPU index up to 8), entry, context id.
            let result = firmware_call(0xC400_0003, PSCI.mpidr(ofVCPU: cpu) & PSCI.affinityMask,
                                       secondary_entry_address(), UInt64(cpu))
            guard result == 0 else {
                NativeConsole.write("vmm: the board did not start CPU ")
                NativeConsole.decimal(UInt64(cpu))
                NativeConsole.write(" (PSCI CPU_ON returned ")
                NativeConsole.hex(result)
                NativeConsole.write("); the system has a vCPU for it: run QEMU with -smp at least the vCPU count\n")
                return false
            }
        }
        // Wait (bounded) until every CPU has set itself up, so the guest never starts a vCPU whose
        // CPU is still configuring its EL2 registers.
        var spins = 0
        while spins < 100_000_000 {
            vm_lock_acquire()
            let all = cpuSlots.allSatisfy { $0.ready }
            vm_lock_release()
            if all { return true }
            spins += 1
        }
        NativeConsole.write("vmm: a secondary CPU did not come up\n")
        return false
    }

    /// A secondary CPU's life: set up, then run its vCPU whenever the guest turns it on.
    static func secondaryMain(cpu: Int, vttbr: UInt64) -> Never {
        NativeGIC.initializeThisCPU()
        configureEL2(vttbr: vttbr, cpu: cpu)
        vm_lock_acquire()
        cpuSlots[cpu].ready = true
        vm_lock_release()
        while true {
            waitForStart(cpu: cpu)
            run(cpu: cpu)
        }
    }

    /// Sleeps until CPU_ON names this CPU's vCPU, then sets its registers as PSCI says: x0 = the
    /// context id, PC = the entry point, EL1h with every exception masked, MMU and caches off.
    static func waitForStart(cpu: Int) {
        while true {
            vm_lock_acquire()
            let request = cpuSlots[cpu].start
            cpuSlots[cpu].start = nil
            vm_lock_release()
            if let (entry, context) = request {
                var registers = RegisterFile()
                registers.write(0, context)
                registers.pc = entry
                registers.pstate = 0x3c5
                cpuSlots[cpu].vcpu.clear()
                cpuSlots[cpu].vcpu.registers = registers
                write_sctlr_el1(0x30d0_0800)
                write_cntv_ctl_el0(0)
                isb()
                return
            }
            wfe()
        }
    }

    /// Enters this CPU's vCPU until the core turns it off (returns) or stops the guest (never returns).
    static func run(cpu: Int) {
        let vcpu = cpuSlots[cpu].vcpu
        while true {
            let kind = enter_guest(vcpu.frame)
            vm_lock_acquire()
            let next = guestStopped ? .halt : handleExit(kind: kind, cpu: cpu, vcpu: vcpu)
            let stopped = guestStopped
            if next == .resume { applyPending(cpu: cpu) }
            vm_lock_release()
            switch next {
            case .resume where !stopped: continue
            case .offline: return
            default: idle()
            }
        }
    }

    enum Next { case resume, offline, halt }

    /// One exit of `cpu`'s vCPU, under the VM lock.
    static func handleExit(kind: UInt64, cpu: Int, vcpu: NativeVCPU) -> Next {
        switch kind {
        case 0:
            let syndrome = ExceptionSyndrome(read_esr_el2())
            let address = faultingIPA(hpfar: read_hpfar_el2(), far: read_far_el2())
            var registers = vcpu.registers
            let action = machine!.fault(vcpu: cpu, syndrome: syndrome, address: address,
                                        registers: &registers, platform: &platform!)
            vcpu.registers = registers
            return carryOut(action, cpu: cpu)
        case 1:
            handleInterrupts(cpu: cpu)
            return .resume
        default:
            NativeConsole.write("vmm: unexpected FIQ or SError from the guest, ESR ")
            NativeConsole.hex(read_esr_el2())
            NativeConsole.write(" PC ")
            NativeConsole.hex(vcpu.frame[31])
            NativeConsole.write("\nvmm: guest stopped\n")
            stopGuest()
            return .halt
        }
    }

    static func carryOut(_ action: VCPUAction, cpu: Int) -> Next {
        switch action {
        case .resume, .waitForInterrupt:
            return .resume
        case .startVCPU(let target, let entry, let context):
            // The core turned `target` on (PSCI SUCCESS to the caller); its CPU is waiting in WFE.
            guard target >= 0 && target < cpuSlots.count else { return .resume }
            cpuSlots[target].start = (entry, context)
            sev()
            return .resume
        case .stopVCPU:
            // PSCI CPU_OFF: what this vCPU's LRs held goes with it; its timer stops.
            for index in 0..<cpuSlots[cpu].pending.count { NativeGIC.writeListRegister(index, 0) }
            cpuSlots[cpu].pendingMask = 0
            write_cntv_ctl_el0(0)
            machine!.vcpuStopped(vcpu: cpu, platform: &platform!)
            return .offline
        case .powerOff:
            NativeConsole.write("vmm: guest powered off\n")
            _ = firmware_call(0x8400_0008, 0, 0, 0)   // PSCI SYSTEM_OFF to the board
            return .halt
        case .reset:
            NativeConsole.write("vmm: guest asked for a reset\n")
            _ = firmware_call(0x8400_0009, 0, 0, 0)   // PSCI SYSTEM_RESET
            return .halt
        case .stop(let report):
            reportStop(report)
            stopGuest()
            return .halt
        }
    }

    /// Every CPU of the guest stops at its next exit; the kick makes that exit come now.
    static func stopGuest() {
        guestStopped = true
        let me = Int(current_cpu())
        for cpu in 0..<cpuSlots.count where cpu != me { NativeGIC.sendSoftwareInterrupt(kickInterrupt, toCPU: cpu) }
    }

    /// The core wants `value` in LR `index` of `vcpu`: now if that is this CPU's, else at its next
    /// entry, kicking it out of its guest.
    static func writeListRegister(vcpu: Int, index: Int, value: UInt32) {
        if vcpu == Int(current_cpu()) {
            NativeGIC.writeListRegister(index, value)
            return
        }
        guard vcpu >= 0 && vcpu < cpuSlots.count && index >= 0 && index < cpuSlots[vcpu].pending.count else { return }
        cpuSlots[vcpu].pending[index] = value
        cpuSlots[vcpu].pendingMask |= 1 << UInt32(index)
        NativeGIC.sendSoftwareInterrupt(kickInterrupt, toCPU: vcpu)
    }

    /// Copies what other CPUs left for this CPU's vCPU into its list registers (under the VM lock).
    static func applyPending(cpu: Int) {
        var mask = cpuSlots[cpu].pendingMask
        guard mask != 0 else { return }
        cpuSlots[cpu].pendingMask = 0
        while mask != 0 {
            let index = mask.trailingZeroBitCount
            NativeGIC.writeListRegister(index, cpuSlots[cpu].pending[index])
            mask &= mask - 1
        }
    }
}
