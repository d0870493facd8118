// Puts a Linux guest into guest RAM and says how its boot vCPU starts (Linux
// Documentation/arch/arm64/booting.rst): the kernel at its 2 MiB-aligned base plus text_offset,
// the device tree and the initrd where `BootLayout` puts them, and the registers the kernel
// expects: x0 = DTB address, x1–x3 = 0, PC = kernel entry, EL1h with D, A, I and F masked.

public enum GuestBootError: Error, Equatable {
    case kernel(ImageHeaderError)
    case layout(BootLayoutError)
    case deviceTreeTooLarge
    /// The configuration breaks one of its own rules (GuestConfiguration.validate).
    case configuration(GuestConfigurationError)
    /// The guest memory the platform mapped is not the RAM the configuration asks for.
    case memoryDisagreesWithConfiguration

    public var message: StaticString {
        switch self {
        case .kernel(.tooShort): return "kernel: shorter than the arm64 Image header"
        case .kernel(.badMagic): return "kernel: not an arm64 Linux Image (bad magic)"
        case .kernel: return "kernel: unusable arm64 Image header"
        case .layout(.kernelDoesNotFit): return "kernel: does not fit in guest RAM"
        case .layout(.initrdDoesNotFit): return "initrd: does not fit in guest RAM above the kernel"
        case .layout: return "guest RAM: cannot place kernel, device tree and initrd"
        case .deviceTreeTooLarge: return "device tree: larger than the space reserved for it"
        case .configuration(let error): return error.message
        case .memoryDisagreesWithConfiguration: return "guest RAM: mapped RAM differs from the configuration's"
        }
    }
}

/// A guest ready to start: its boot vCPU's registers and where its images were written (the
/// platform cleans those ranges to the point of coherency before the guest runs).
public struct LoadedGuest {
    public let registers: RegisterFile
    public let layout: BootLayout
    public let deviceTreeSize: UInt64
}

public enum GuestBoot {
    /// SPSR for the first guest instruction: EL1h with D, A, I, F masked.
    public static let initialPSTATE: UInt64 = 0x3c5

    public static func load(into memory: GuestMemory, kernel: UnsafeRawBufferPointer,
                            initrd: UnsafeRawBufferPointer?, bootargs: [UInt8],
                            vcpuCount: Int, gicVersion: GICVersion = .v2,
                            devices: [GuestDevice] = [], rngSeed: [UInt8] = []) throws(GuestBootError) -> LoadedGuest {
        let header: ImageHeader
        do { header = try ImageHeader(bytes: kernel) } catch { throw .kernel(error) }
        let layout: BootLayout
        do {
            layout = try BootLayout.plan(ramBase: memory.base.raw, ramSize: memory.size, header: header,
                                         kernelFileSize: UInt64(kernel.count),
                                         initrdSize: initrd.map { UInt64($0.count) })
        } catch { throw .layout(error) }

        memory.write(kernel, at: layout.kernel)
        var initrdRange: (UInt64, UInt64)? = nil
        if let initrd, let at = layout.initrd {
            memory.write(initrd, at: at)
            initrdRange = (at.raw, at.raw + UInt64(initrd.count))
        }
        var board = GuestBoardDescription(ramBase: memory.base.raw, ramSize: memory.size, vcpuCount: vcpuCount,
                                          gicVersion: gicVersion, bootargs: bootargs, initrd: initrdRange)
        board.devices = devices
        board.rngSeed = rngSeed
        let dtb = GuestDeviceTree.build(board)
        guard UInt64(dtb.count) <= layout.dtbMaxSize else { throw .deviceTreeTooLarge }
        dtb.withUnsafeBytes { _ = memory.write($0, at: layout.dtb) }

        var registers = RegisterFile()
        registers.write(0, layout.dtb.raw)
        registers.pc = layout.kernelEntry.raw
        registers.pstate = initialPSTATE
        return LoadedGuest(registers: registers, layout: layout, deviceTreeSize: UInt64(dtb.count))
    }

    /// `load` with the command line, vCPU count and GIC of `configuration`, and the device-tree entries of
    /// `devices` (normally `configuration.placements(…)`, the same list given to VirtualMachine)
    /// followed by those of the configuration's passthrough devices.
    /// `memory` must be the configuration's RAM: the device tree describes `memory`, and a platform
    /// that mapped something else would give the guest a machine the system file did not ask for.
    public static func load(into memory: GuestMemory, kernel: UnsafeRawBufferPointer,
                            initrd: UnsafeRawBufferPointer?, configuration: GuestConfiguration,
                            devices: [VirtioDeviceDescription], rngSeed: [UInt8] = []) throws(GuestBootError) -> LoadedGuest {
        do { try configuration.validate() } catch { throw .configuration(error) }
        guard memory.base.raw == configuration.ramBase && memory.size == configuration.ramSize else {
            throw .memoryDisagreesWithConfiguration
        }
        var entries: [GuestDevice] = []
        entries.reserveCapacity(devices.count + configuration.passthrough.count)
        for device in devices { entries.append(device.deviceTreeEntry) }
        for device in configuration.passthrough { entries.append(device.deviceTreeEntry) }
        return try load(into: memory, kernel: kernel, initrd: initrd, bootargs: configuration.bootargs,
                        vcpuCount: configuration.vcpuCount, gicVersion: configuration.gicVersion, devices: entries,
                        rngSeed: rngSeed)
    }
}
