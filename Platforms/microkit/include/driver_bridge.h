// What only the driver program's Swift code sees beyond microkit_bridge.h: the timer PD's hardware,
// the EL1 physical timer and the system counter (both exported to user level by the SDK's kernel:
// KernelArmExportPTMRUser, KernelArmExportPCNTUser), whose PPI 30 this PD owns on behalf of every
// VMM PD. One instruction sequence each; when to arm is VMMCore's TimerMultiplexer's decision.
#pragma once
#include <stdint.h>

/// The system counter (CNTPCT_EL0), the clock the VMMs' deadlines are given in.
static inline uint64_t driver_counter(void) {
    uint64_t value;
    __asm__ volatile("isb; mrs %0, cntpct_el0" : "=r"(value));
    return value;
}

/// The timer fires (PPI 30, level) once the counter reaches `deadline`, at once for one already passed.
static inline void driver_timer_arm(uint64_t deadline) {
    __asm__ volatile("msr cntp_cval_el0, %0; msr cntp_ctl_el0, %1; isb" :: "r"(deadline), "r"((uint64_t)1));
}

/// The timer is off and its interrupt deasserted.
static inline void driver_timer_disarm(void) {
    __asm__ volatile("msr cntp_ctl_el0, %0; isb" :: "r"((uint64_t)0));
}
