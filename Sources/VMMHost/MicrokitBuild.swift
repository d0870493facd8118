// `vmm build` for the Microkit platform: the system description (MicrokitSystem, one partition per
// VM, MicrokitPartitions.swift) from the system file, and the images it names, linked from the
// objects `make microkit-objects` builds against the SDK: per VM a VMM (its own guest images linked
// in), one driver per board device, with several VMs the timer PD; then the SDK's `microkit` tool
// packs loader.img. SystemBuilder.swift owns what both platforms share.

import Foundation
import VMMCore

extension SystemBuilder {
    /// The microkit half of `build`: `guests` each VM's images, `images` all of them assembled (the
    /// one VM's, when there is one), `files` what the build wrote so far.
    static func buildMicrokit(_ system: SystemConfiguration, in environment: BuildEnvironment, guests: [GuestImages],
                              images: URL, files: [URL]) throws -> BuildProducts {
        var files = files
        guard let sdk = environment.microkitSDK else {
            throw BuildError("platform \"microkit\" needs a Microkit SDK: set MICROKIT_SDK=/path/to/microkit-sdk-2.0.1 (SDKs come from the seL4 Microkit releases, not from Debian or PyPI)")
        }
        let boardDirectory = sdk.appendingPathComponent("board/\(environment.microkitBoard)/\(environment.microkitConfig)")
        let library = boardDirectory.appendingPathComponent("lib").path
        let description = microkitSystem(system)
        let objects = ["entry.o", "runtime.o", "Platform.o"].map { environment.microkitObjects.appendingPathComponent($0).path }
            + [environment.nativeObjects.appendingPathComponent("VMMCore.o").path]
        let driverObjects = microkitDriverObjects(in: environment)
        let needsDrivers = description.timer != nil || description.partitions.contains { !$0.drivers.isEmpty }
        try requireObjects(objects + (needsDrivers ? driverObjects : []),
                           make: "make -C \(environment.repository.path) MICROKIT_SDK=\(sdk.path) microkit-objects")
        for (index, partition) in description.partitions.enumerated() {
            // A VMM image carries its own VM's images only; alone, the ones linked above.
            var vmImages = images
            if description.partitions.count > 1 {
                let assembly = environment.output.appendingPathComponent("guest_images-\(index).S")
                try guestImagesAssembly([guests[index]]).write(to: assembly, atomically: true, encoding: .utf8)
                vmImages = environment.output.appendingPathComponent("guest_images-\(index).o")
                try run(environment.toolchain.appendingPathComponent("clang"), [
                    "--target=aarch64-none-elf", "-c", assembly.path, "-o", vmImages.path])
                files += [assembly, vmImages]
            }
            let elf = environment.output.appendingPathComponent(partition.programImage)
            try run(environment.toolchain.appendingPathComponent("ld.lld"),
                    vmmLinkArguments(index: index, timerServer: description.timer != nil, testHooks: environment.testHooks,
                                     objects: objects + [vmImages.path],
                                     output: elf.path, boardLibrary: library, repository: environment.repository))
            files.append(elf)
            for driver in partition.drivers {
                let driverELF = environment.output.appendingPathComponent(driver.programImage)
                try run(environment.toolchain.appendingPathComponent("ld.lld"),
                        driverLinkArguments(driver.device, guestRAMSize: system.vms[index].ramSize, objects: driverObjects,
                                            output: driverELF.path, boardLibrary: library,
                                            repository: environment.repository))
                files.append(driverELF)
            }
        }
        if let timer = description.timer {
            let timerELF = environment.output.appendingPathComponent(timer.programImage)
            try run(environment.toolchain.appendingPathComponent("ld.lld"),
                    timerLinkArguments(objects: driverObjects, output: timerELF.path, boardLibrary: library,
                                       repository: environment.repository))
            files.append(timerELF)
        }
        let systemURL = environment.output.appendingPathComponent("vmm.system")
        do {
            try description.render().write(to: systemURL, atomically: true, encoding: .utf8)
        } catch let error as MicrokitSystemError {
            switch error { case .invalid(let messages): throw BuildError(messages.joined(separator: "\n")) }
        }
        let loader = environment.output.appendingPathComponent("loader.img")
        try run(sdk.appendingPathComponent("bin/microkit"), [
            systemURL.path, "--search-path", environment.output.path, "--board", environment.microkitBoard,
            "--config", environment.microkitConfig, "-o", loader.path,
            "-r", environment.output.appendingPathComponent("report.txt").path], quiet: true)
        files += [systemURL, loader]
        return BuildProducts(image: loader, files: files)
    }

    /// The guest's devices in the order the VMM numbers them: the guest configuration's device list
    /// (blocks, networks, consoles), which is also QEMU's order of the board devices (`qemuArguments`).
    /// On Microkit every card has a board device, a card on a VMM network too (`qemuArguments` joins
    /// the board devices of a network's cards in a QEMU hub).
    public static func microkitDevices(_ vm: VMConfiguration) -> [DriverDevice] {
        DriverDevice.list(microkitKinds(vm))
    }

    static func microkitKinds(_ vm: VMConfiguration) -> [DriverKind] {
        guestConfiguration(vm).devices.map {
            switch $0 {
            case .block: return .block
            case .network, .switchedNetwork: return .network
            case .console: return .console
            }
        }
    }

    /// Each VM's driver devices in a system on Microkit, named after their VM when there are several,
    /// on the board transports `qemuArguments` gives them: VM by VM its devices, then (VMs after the
    /// first) the console behind its serial port, the VMM's device `devices.count`.
    public static func microkitDevices(_ system: SystemConfiguration) -> [[DriverDevice]] {
        var boardStart = 0
        return system.vms.enumerated().map { index, vm in
            var kinds = microkitKinds(vm)
            if index > 0 { kinds.append(.console) }
            let devices = DriverDevice.list(kinds, boardStart: boardStart, owner: system.vms.count > 1 ? vm.name + "_" : "")
            boardStart += kinds.count
            return devices
        }
    }

    /// Where each VM's RAM sits in physical memory on Microkit: one VM where its `ram_base` says
    /// (identity-mapped); several side by side from the start of the RAM seL4 leaves to VMs, in file
    /// order, each seen by its guest at its `ram_base` (ConfigurationValidator.microkitRAMPlacement).
    public static func microkitRAMPlacement(_ system: SystemConfiguration) -> [UInt64] {
        guard system.vms.count > 1 else { return system.vms.map(\.ramBase) }
        var next = QEMUVirtBoard.guestRAMBase
        return system.vms.map { vm in
            defer { next += vm.ramSize }
            return next
        }
    }

    /// The system description on the Microkit platform: for each VM a VMM PD (`vmm.elf`, or
    /// `<vm>_vmm.elf` with several VMs) with the guest's RAM and passthrough devices, and one driver PD
    /// per device (`<pd>.elf`, see `microkitDevices`); with several VMs the timer PD (`timer.elf`).
    public static func microkitSystem(_ system: SystemConfiguration) -> MicrokitPartitionedSystem {
        let placement = microkitRAMPlacement(system), devices = microkitDevices(system)
        return MicrokitPartitionedSystem(system.vms.indices.map { index in
            microkitPartition(system.vms[index], index: index, of: system.vms.count, physical: placement[index],
                              devices: devices[index])
        })
    }

    /// The description of a system of `vm` alone.
    public static func microkitSystem(_ vm: VMConfiguration) -> MicrokitSystem {
        microkitPartition(vm, index: 0, of: 1, physical: vm.ramBase, devices: microkitDevices(vm))
    }

    /// VM `index`'s part of a system of `count` VMs, its RAM at `physical`.
    static func microkitPartition(_ vm: VMConfiguration, index: Int, of count: Int, physical: UInt64,
                                  devices: [DriverDevice]) -> MicrokitSystem {
        let owner = count > 1 ? vm.name + "_" : ""
        var description = MicrokitSystem(vmmName: owner + "vmm", programImage: owner + "vmm.elf",
                                         vmName: count > 1 ? vm.name : "linux", vcpuCount: vm.vcpus)
        description.guestRAM.region.name = owner + "guest_ram"
        description.guestRAM.region.size = vm.ramSize
        description.guestRAM.region.physAddr = physical
        description.guestRAM.guestAddress = vm.ramBase
        if index > 0 {
            // The board's PL011 is the first VM's; the others' are emulated, their bytes carried by a
            // console driver (their last device).
            description.deviceRegions.removeAll { $0 == .uart }
            description.interrupts.removeAll { $0 == .uart }
        }
        // Passthrough: the region mapped into the VM where the board has it, its interrupt on the
        // channel the VMM expects (MicrokitLayout.passthroughChannel).
        for (n, region) in vm.passthrough.enumerated() {
            description.deviceRegions.append(.init(name: owner + "passthrough_\(region.name)", physAddr: region.address,
                                                   size: region.size, guestAddress: region.address))
            if let irq = region.irq {
                description.interrupts.append(.init(irq: irq, channel: MicrokitLayout.passthroughChannel(n)))
            }
        }
        description.addDrivers(for: devices)
        return description
    }

    /// The objects of every driver PD, built by `make microkit-objects`: the same for each kind, which
    /// the linker's `driver_kind` and `driver_device_slot` select.
    public static func microkitDriverObjects(in environment: BuildEnvironment) -> [String] {
        ["driver_entry.o", "runtime.o", "DriverPlatform.o"].map { environment.microkitObjects.appendingPathComponent($0).path }
            + [environment.nativeObjects.appendingPathComponent("VMMCore.o").path]
    }

    /// ld.lld's arguments for one driver PD's program image: vmm.elf's command, with the device's
    /// kind and board transport as absolute symbols (MicrokitDriverLayout.kindSymbol, slotSymbol).
    /// A block driver also gets the size of its VM's RAM, the guest RAM its device may reach by DMA.
    public static func driverLinkArguments(_ device: DriverDevice, guestRAMSize: UInt64, objects: [String], output: String,
                                           boardLibrary: String, repository: URL) -> [String] {
        ["-L", boardLibrary, "-T", repository.appendingPathComponent("Platforms/microkit/vmm.ld").path, "--gc-sections",
         "--defsym=\(MicrokitDriverLayout.kindSymbol)=\(device.kind.rawValue)",
         "--defsym=\(MicrokitDriverLayout.slotSymbol)=\(device.slot)"]
            + (device.kind == .block ? ["--defsym=\(MicrokitDriverLayout.guestRAMSizeSymbol)=\(hex(guestRAMSize))"] : [])
            + ["-o", output] + objects + ["-lmicrokit"]
    }

    /// ld.lld's arguments for VM `index`'s VMM PD: with several VMs, which VM it is (`vmm_vm_index`:
    /// VMs after the first emulate their PL011) and that the timer PD keeps its deadlines
    /// (`vmm_timer_server`); weak symbols in entry.c, 0 when not given.
    /// `testHooks`: MicrokitLayout.testHooksSymbol too, for tests.
    public static func vmmLinkArguments(index: Int, timerServer: Bool, testHooks: Bool = false, objects: [String],
                                        output: String, boardLibrary: String, repository: URL) -> [String] {
        ["-L", boardLibrary, "-T", repository.appendingPathComponent("Platforms/microkit/vmm.ld").path, "--gc-sections"]
            + (index > 0 ? ["--defsym=vmm_vm_index=\(index)"] : [])
            + (timerServer ? ["--defsym=vmm_timer_server=1"] : [])
            + (testHooks ? ["--defsym=\(MicrokitLayout.testHooksSymbol)=1"] : [])
            + ["-o", output] + objects + ["-lmicrokit"]
    }

    /// ld.lld's arguments for the timer PD's program image: the driver program as kind
    /// MicrokitTimerLayout.kind, on no board transport.
    public static func timerLinkArguments(objects: [String], output: String, boardLibrary: String,
                                          repository: URL) -> [String] {
        ["-L", boardLibrary, "-T", repository.appendingPathComponent("Platforms/microkit/vmm.ld").path, "--gc-sections",
         "--defsym=\(MicrokitDriverLayout.kindSymbol)=\(MicrokitTimerLayout.kind)",
         "--defsym=\(MicrokitDriverLayout.slotSymbol)=0",
         "-o", output] + objects + ["-lmicrokit"]
    }
}
