// The VMM's locks between board CPUs (a VM's lock, the switch lock, the system lock): one 64-bit word
// each, bit 0 held, bit 8 + n set while board CPU n (0...31, NativeBoard.maximumCPUs) sleeps waiting
// for it.
//
// A CPU that finds the lock held spins a little, then sleeps in WFI instead of spinning on: under
// QEMU's TCG each board CPU is a host thread, often more of them than host cores, and a waiter that
// spins takes the host core the holder needs to finish (WFE does not help: multi-threaded TCG treats
// it as a no-op). The releaser sees the sleepers in the word it clears and wakes them with the kick
// SGI, which also ends their WFI if it arrives before they reach it (a pending interrupt keeps a CPU
// from sleeping even with interrupts masked). Registering as a sleeper and releasing are atomic
// read-modify-writes of the same word, so one of the two always sees the other: no wake-up is lost.
// The kick stays pending and becomes one harmless exit when the woken CPU next enters its guest.
//
// A CPU never waits for a lock while it has a physical interrupt active (between acknowledging and
// ending it): the kick could not be signalled to it then.
import NativeHardware

enum NativeLock {
    static let held: UInt64 = 1
    /// Spins before sleeping: a holder that runs usually lets go within them.
    static let spinsBeforeSleeping = 100

    static func acquire(_ word: UnsafeMutablePointer<UInt64>) {
        let sleeper = UInt64(1) << (8 + UInt64(current_cpu() & 31))
        var spins = 0
        while true {
            if atomic_fetch_or64(word, held) & held == 0 { return }
            if spins < spinsBeforeSleeping {
                spins += 1
                while atomic_load64(word) & held != 0 && spins < spinsBeforeSleeping { spins += 1 }
                continue
            }
            if atomic_fetch_or64(word, sleeper) & held != 0 { wfi() }
            _ = atomic_fetch_and64(word, ~sleeper)
        }
    }

    static func release(_ word: UnsafeMutablePointer<UInt64>) {
        var sleepers = (atomic_fetch_and64(word, ~held) >> 8) & 0xffff_ffff
        while sleepers != 0 {
            NativeGIC.sendSoftwareInterrupt(NativeCPUs.kickInterrupt, toCPU: sleepers.trailingZeroBitCount)
            sleepers &= sleepers - 1
        }
    }
}
