// What the VMs of a system share out, checked by ConfigurationValidator.validate: on the native
// platform the board's CPUs and the host RAM for guests, on Microkit the RAM seL4 leaves to guests,
// the timer PD's clients and what Microkit 2.0.1's tool can number.

import VMMCore

extension ConfigurationValidator {
    /// What the VMs share out (native): the board's CPUs, one per vCPU, and the host RAM the VMM
    /// gives its guests. A CPU pinned twice is reported at the later VM's `cpus`, naming the first
    /// owner; each total is reported at the VM where it goes over, once: for the CPUs the first VM
    /// that would run a vCPU past the last board CPU (one without `cpus`, as pinned CPUs are below
    /// 8; without any `cpus` the VM where the sum of vCPUs passes 8).
    func checkSharedOut() {
        let vms = system.vms.indices.filter { !diagnostics.isPlaceholder("vm[\($0)]") }
        var owners: [Int: (vm: Int, vcpu: Int)] = [:]
        for index in vms {
            guard let cpus = system.vms[index].cpus, !diagnostics.hasError(at: "vm[\(index)].cpus") else { continue }
            for (vcpu, cpu) in cpus.enumerated() {
                if let owner = owners[cpu] {
                    diagnostics.report("vm[\(index)].cpus", "CPU \(cpu) is already vm[\(owner.vm)]'s (vCPU \(owner.vcpu)); "
                                       + "each board CPU runs one vCPU")
                } else {
                    owners[cpu] = (index, vcpu)
                }
            }
        }
        // A VM whose `vcpus` or `cpus` is wrong by itself is reported once, and not counted.
        let counted = vms.filter { !diagnostics.hasError(at: "vm[\($0)].vcpus") && !diagnostics.hasError(at: "vm[\($0)].cpus") }
        let vcpus = counted.reduce(0) { $0 + system.vms[$1].vcpus }
        let assigned = SystemConfiguration.boardCPUs(counted.map { (system.vms[$0].vcpus, system.vms[$0].cpus) })
        let pinning = counted.contains { system.vms[$0].cpus != nil }
        let maxCPUs = Self.maxBoardCPUs(system.gic)
        if let over = zip(counted, assigned).first(where: { $0.1.contains { $0 >= maxCPUs } }) {
            let taking = pinning ? " (this VM's would run on \(SystemConfiguration.cpuList(over.1)), the lowest no VM pins)" : ""
            diagnostics.report("vm[\(over.0)].vcpus", "vCPUs of all VMs add up to \(vcpus)\(taking); the board has at most "
                               + "\(maxCPUs) CPUs (GICv\(system.gic.rawValue))")
        }
        let sized = vms.filter { !diagnostics.hasError(at: "vm[\($0)].ram") }
        let ram = sized.reduce(UInt64(0)) { $0 + system.vms[$1].ramSize }
        var bytes: UInt64 = 0
        for index in sized {
            bytes += system.vms[index].ramSize
            if bytes > Self.nativeGuestRAM {
                diagnostics.report("vm[\(index)].ram", "the RAM of all VMs adds up to \(sizeText(ram)); the native platform "
                                   + "gives its guests at most \(sizeText(Self.nativeGuestRAM)) in all")
                break
            }
        }
    }

    /// What the VMs share out on Microkit: the RAM seL4 leaves to VMs (512M from 0x40000000), where
    /// `vmm build` places them side by side in file order (SystemBuilder.microkitRAMPlacement), and
    /// the timer PD's clients. A VM whose RAM is not at its own `ram_base` (all but the first, unless
    /// `ram_base` says where it lands) cannot have passthrough devices: one doing DMA would reach the
    /// wrong memory, since the board has no IOMMU.
    func checkMicrokitSharedOut() {
        let vms = system.vms.indices.filter { !diagnostics.isPlaceholder("vm[\($0)]") }
        if system.vms.count > MicrokitTimerLayout.maxClients {
            diagnostics.report("vm[\(MicrokitTimerLayout.maxClients)]", "the microkit platform runs at most "
                               + "\(MicrokitTimerLayout.maxClients) VMs (its timer PD's clients), found \(system.vms.count)")
        }
        guard system.vms.count > 1 else { return }
        // The Microkit 2.0.1 tool numbers the vCPU threads of a VM from its VM's index plus the vCPU's
        // (tool/microkit/src/main.rs, `vcpu_tcb_objs[vm_idx + vcpu_idx]`), so two VMs would share a
        // thread unless every VM but the last has one vCPU; its monitor then stops at boot.
        for index in vms.dropLast() where system.vms[index].vcpus > 1 && !diagnostics.hasError(at: "vm[\(index)].vcpus") {
            diagnostics.report("vm[\(index)].vcpus", "with several VMs the microkit platform (Microkit 2.0.1's tool) gives "
                               + "only the last VM more than one vCPU, found \(system.vms[index].vcpus)")
        }
        let sized = vms.filter { !diagnostics.hasError(at: "vm[\($0)].ram") }
        let ram = sized.reduce(UInt64(0)) { $0 + system.vms[$1].ramSize }
        var physical = Self.ramStart
        for index in sized {
            let vm = system.vms[index]
            if physical + vm.ramSize > Self.ramStart + Self.microkitGuestRAM {
                diagnostics.report("vm[\(index)].ram", "the RAM of all VMs adds up to \(sizeText(ram)); the microkit platform "
                                   + "gives its guests at most \(sizeText(Self.microkitGuestRAM)) in all")
                return
            }
            if !vm.passthrough.isEmpty, vm.ramBase != physical, !diagnostics.hasError(at: "vm[\(index)].ram_base") {
                diagnostics.report("vm[\(index)].passthrough", "on the microkit platform this VM's RAM is at physical "
                                   + "\(hex(physical)), after the VMs before it; passthrough needs the guest to see it there "
                                   + "(ram_base = \(hex(physical)))")
            }
            physical += vm.ramSize
        }
    }
}
