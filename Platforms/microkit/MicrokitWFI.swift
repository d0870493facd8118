// WFI on the Microkit platform, and the timer that ends it (MicrokitVMM.swift's fault handler calls
// suspendUntilInterrupt; its notified handler wakes the waiting vCPUs).
//
// A trapped WFI suspends its vCPU until something for it happens: an interrupt the core puts in one
// of its list registers (`writeListRegister` wakes it), or its own timer deadline; any notification
// wakes every waiting vCPU too (a device's interrupt, a driver's answer), since a WFI may end early
// (Arm ARM: it is a hint) and the guest simply waits again. seL4 masks a vCPU's virtual timer while it
// is not running, so the VMM watches the deadlines of the waiting vCPUs itself, with the EL1
// physical timer armed at the earliest.

import MicrokitSDK
import VMMCore

/// The PC each vCPU suspended in WFI resumes at (nil: it is not waiting), and its timer deadline in
/// the physical counter's terms (nil: none).
nonisolated(unsafe) var waitingPC: [UInt64?] = [nil]
nonisolated(unsafe) var waitingDeadline: [UInt64?] = [nil]

/// Suspends `child` (returns true) unless an interrupt is already on its way to it or its timer has
/// expired; the physical timer goes to the earliest deadline of the waiting vCPUs.
func suspendUntilInterrupt(child: microkit_child, resumeAt pc: UInt64) -> Bool {
    guard let vm = machine else { return false }
    let vcpu = Int(child)
    for index in 0..<listRegisterCount where vm.vgic.listRegister(vcpu: vcpu, index: index) != nil {
        return false
    }
    if vm.vgic.overflowCount(vcpu: vcpu) > 0 { return false }
    var deadline: UInt64? = nil
    let control = microkit_vcpu_arm_read_reg(child, seL4_Word(seL4_VCPUReg_CNTV_CTL.rawValue))
    if control & 1 != 0 && control & 2 == 0 {      // ENABLE set, IMASK clear (Arm ARM D13.8.17)
        // CNTVCT = CNTPCT - CNTVOFF: the virtual deadline in the physical counter's terms.
        let due = UInt64(microkit_vcpu_arm_read_reg(child, seL4_Word(seL4_VCPUReg_CNTV_CVAL.rawValue)))
            &+ UInt64(microkit_vcpu_arm_read_reg(child, seL4_Word(seL4_VCPUReg_CNTVOFF.rawValue)))
        if vmm_counter() >= due { return false }
        deadline = due
    }
    // Suspending (rather than not replying) ends the fault's reply cleanly; restart resumes at `pc`.
    microkit_vcpu_stop(child)
    waitingPC[vcpu] = pc
    waitingDeadline[vcpu] = deadline
    armTimerForWaitingVCPUs()
    return true
}

/// The physical timer at the earliest deadline of a waiting vCPU, or off.
func armTimerForWaitingVCPUs() {
    var earliest: UInt64? = nil
    for vcpu in 0..<vcpuCount where waitingPC[vcpu] != nil {
        if let due = waitingDeadline[vcpu], due < (earliest ?? UInt64.max) { earliest = due }
    }
    setTimer(earliest)
}

/// The deadline this PD's wake-up is set for (nil: none), so that an unchanged one costs nothing.
nonisolated(unsafe) var armedDeadline: UInt64? = nil

/// Wakes this PD on the timer channel when the counter reaches `deadline` (nil: never): the EL1
/// physical timer it owns, or in a system of several VMs the timer PD's, by a call.
func setTimer(_ deadline: UInt64?) {
    guard deadline != armedDeadline else { return }
    armedDeadline = deadline
    if !vmm_has_timer_server() {
        if let deadline { vmm_timer_arm(deadline) } else { vmm_timer_disarm() }
        return
    }
    // A deadline of 0 means "none" to the timer PD; one already passed is at least 1.
    let label = vmm_timer_server_call(microkit_channel(MicrokitTimerLayout.vmmChannel),
                                      seL4_Word(MicrokitTimerLayout.setDeadlineLabel),
                                      deadline.map { max($0, 1) } ?? MicrokitTimerLayout.noDeadline)
    if UInt64(label) != MicrokitTimerLayout.replyOK { log("vmm: the timer PD refused a deadline\n") }
}

/// Resumes `vcpu` if it waits in WFI.
func wake(vcpu: Int) {
    guard vcpu >= 0, vcpu < waitingPC.count, let pc = waitingPC[vcpu] else { return }
    waitingPC[vcpu] = nil
    waitingDeadline[vcpu] = nil
    microkit_vcpu_restart(microkit_child(vcpu), seL4_Word(pc))
    armTimerForWaitingVCPUs()
}

/// Resumes every vCPU waiting in WFI.
func wakeWaitingVCPUs() {
    for vcpu in 0..<waitingPC.count { wake(vcpu: vcpu) }
}
