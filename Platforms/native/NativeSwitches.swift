// The VMM's own networks: each named network of the system file is a VirtualSwitch (VMMCore) whose
// ports are the VMs' network cards on it, numbered in VM order when every VM is up.
//
// A guest's transmit is copied into the switch under the sender's VM lock and then the switch lock
// (always in that order, never two VM locks), and each VM that got a copy has its first CPU kicked.
// That CPU, on the kick's exit and under its own VM's lock, moves the frames waiting on its ports
// into its guest's receive buffers; frames its guest has no buffer for stay queued (bounded by the
// switch) and are tried again at each of the VM's exits. No frame is ever written anywhere but into
// buffers the receiving guest posted (VirtualMachine.networkReceived checks them).
import NativeHardware
import VMMCore

/// Every network's switch, and each port's VM; fixed at boot, the switches only under `switchLock`.
nonisolated(unsafe) var switches: [VirtualSwitch] = []
nonisolated(unsafe) var switchPortVMs: [[Int]] = []
nonisolated(unsafe) let switchLock: UnsafeMutablePointer<UInt64> = {
    let lock = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    lock.initialize(to: 0)
    return lock
}()

enum NativeSwitches {
    /// Numbers every VM's switch ports and makes the switches (CPU 0, before the secondaries start).
    static func connect() {
        var ports: [[Int]] = []
        for vm in vms {
            for n in vm.platform.board.switched.indices {
                let network = vm.platform.board.switched[n].network
                while ports.count <= network { ports.append([]) }
                vm.platform.board.switched[n].port = ports[network].count
                ports[network].append(vm.index)
            }
        }
        switchPortVMs = ports
        // 1 MiB of queue per port on a network of two (sixteen 64 KiB TCP frames in flight to a VM
        // that is slow to take them), less on bigger ones: at most 4 MiB of the heap per network.
        switches = ports.map { vmsOnIt in
            let portCount = max(vmsOnIt.count, 1)
            return VirtualSwitch(portCount: portCount,
                                 queueBytes: max(VirtualSwitch.maximumPacketSize + 1, min(1 << 20, (4 << 20) / portCount)))
        }
        scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: VirtualSwitch.maximumPacketSize, alignment: 16)
    }

    /// The packet being sent: used only under the switch lock.
    nonisolated(unsafe) static var scratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// A guest sent on `attachment` (under its VM's lock): the frame goes to the switch and every VM
    /// that got a copy is kicked. True: the chain is consumed (a frame the switch dropped is lost, as
    /// on a wire).
    static func send(from attachment: SwitchAttachment, _ segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        NativeLock.acquire(switchLock)
        var delivered: UInt32 = 0
        if let packet = VirtualSwitch.packet(of: segments, memory: memory, into: scratch) {
            delivered = switches[attachment.network].send(from: attachment.port, packet: packet)
        }
        NativeLock.release(switchLock)
        while delivered != 0 {
            let port = delivered.trailingZeroBitCount
            delivered &= delivered - 1
            let vm = vms[switchPortVMs[attachment.network][port]]
            if vm.firstCPU != Int(current_cpu()) {
                NativeGIC.sendSoftwareInterrupt(NativeCPUs.kickInterrupt, toCPU: vm.firstCPU)
            } else {
                vm.switchBacklog = true   // the sender's own VM: deliver at this exit's end
            }
        }
        return true
    }

    /// Moves the frames waiting on `vm`'s ports into its guest (under its VM's lock).
    static func deliver(to vm: NativeVM) {
        guard !vm.platform.board.switched.isEmpty else { return }
        var sink = NativeInterruptSink(cpus: vm.cpus)
        var backlog = false
        NativeLock.acquire(switchLock)
        for attachment in vm.platform.board.switched {
            while switches[attachment.network].receive(at: attachment.port, { packet in
                vm.machine.networkReceived(device: attachment.guestDevice, frame: packet, platform: &sink)
            }) {}
            if switches[attachment.network].queued(at: attachment.port) > 0 { backlog = true }
        }
        NativeLock.release(switchLock)
        vm.switchBacklog = backlog
    }
}
