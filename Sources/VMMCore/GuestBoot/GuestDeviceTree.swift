// The device tree a Linux guest boots with: what the VMM tells the guest its "board" looks like.
//
// The board is QEMU's `virt` layout with a GICv2 or a GICv3, reduced to what this VMM emulates: RAM,
// vCPUs started through PSCI, the GIC (GICv2: distributor and CPU interface; GICv3: distributor and
// one redistributor per vCPU, the CPU interface being system registers), the architected timer,
// a PL011 UART and (appended as data) virtio-mmio devices and passed-through board devices. The node contents follow QEMU's
// hw/arm/virt.c and the Linux bindings (interrupt-controller/arm,gic.yaml and arm,gic-v3.yaml,
// timer/arm,arch_timer.yaml, serial/pl011.yaml, virtio/mmio.yaml). The guest is not a hypervisor,
// so a GICv2 tree has no GICH/GICV and no maintenance interrupt; a GICv3 node names its maintenance
// interrupt, as QEMU's does. Encoding the blob is DeviceTreeWriter's job; placing it is BootLayout's.

/// A guest-physical address range of device registers, as the device tree describes it.
public struct BoardRegion: Equatable {
    public var base: UInt64
    public var size: UInt64
    public init(base: UInt64, size: UInt64) {
        self.base = base
        self.size = size
    }
}

/// One memory-mapped device with (at most) one shared peripheral interrupt (SPI): a node in the
/// guest's tree. New device kinds are added as cases here and a line in `GuestDeviceTree.addDevice`.
public struct GuestDevice: Equatable {
    public enum Kind: UInt8, Equatable {
        case pl011
        case virtioMMIO
        /// A board device given to the guest; `name` and `compatible` say what it is.
        case passthrough
    }

    public var kind: Kind
    public var region: BoardRegion
    /// SPI number, i.e. GIC INTID - 32, as the first-cell-0 interrupt specifier wants it.
    public var spi: UInt32
    /// False only for a passthrough device whose interrupt the guest is not given: no `interrupts`.
    public var hasInterrupt = true
    /// Passthrough only: the node name before "@" (1...31 of [a-z0-9_-]) and the `compatible` list
    /// (non-empty strings without NUL). Empty for the other kinds, whose names are fixed.
    public var name: [UInt8] = []
    public var compatible: [[UInt8]] = []

    public init(kind: Kind, region: BoardRegion, spi: UInt32) {
        self.kind = kind
        self.region = region
        self.spi = spi
    }

    public static func pl011(base: UInt64, size: UInt64 = 0x1000, spi: UInt32) -> GuestDevice {
        GuestDevice(kind: .pl011, region: BoardRegion(base: base, size: size), spi: spi)
    }

    /// virtio-mmio transport (virtio v1.2 §4.2); QEMU's `virt` puts them at 0x0a000000 + 0x200 * n.
    public static func virtioMMIO(base: UInt64, size: UInt64 = 0x200, spi: UInt32) -> GuestDevice {
        GuestDevice(kind: .virtioMMIO, region: BoardRegion(base: base, size: size), spi: spi)
    }

    /// A passthrough device's node, e.g. `.passthrough(name: "pl031", base: 0x0901_0000, size: 0x1000,
    /// spi: 2, compatible: ["arm,pl031", "arm,primecell"])` for QEMU virt's RTC; `spi` nil: no interrupt.
    /// GuestConfiguration.validate checks what the tree relies on; a bad name or string traps in `build`.
    public static func passthrough(name: [UInt8], base: UInt64, size: UInt64, spi: UInt32?,
                                   compatible: [[UInt8]]) -> GuestDevice {
        var device = GuestDevice(kind: .passthrough, region: BoardRegion(base: base, size: size), spi: spi ?? 0)
        device.hasInterrupt = spi != nil
        device.name = name
        device.compatible = compatible
        return device
    }

    /// "pl011@9000000": node name, and (after "/") its path, since devices sit under the root.
    public var nodeName: [UInt8] {
        var nodeName = ASCIIBuffer()
        switch kind {
        case .pl011: nodeName.put("pl011@")
        case .virtioMMIO: nodeName.put("virtio_mmio@")
        case .passthrough:
            nodeName.put(name)
            nodeName.put(UInt8(ascii: "@"))
        }
        nodeName.putHex(region.base)
        return nodeName.bytes
    }
}

/// The architected timer's private peripheral interrupts (PPI numbers, i.e. INTID - 16), in the
/// order the arm,armv8-timer binding lists them.
public struct GuestTimerPPIs: Equatable {
    public var securePhysical: UInt32 = 13     // INTID 29
    public var nonSecurePhysical: UInt32 = 14  // INTID 30
    public var virtual: UInt32 = 11            // INTID 27
    public var hypervisor: UInt32 = 10         // INTID 26
    public init() {}
}

/// Everything the guest's device tree says about the guest's machine.
public struct GuestBoardDescription {
    public var ramBase: UInt64
    public var ramSize: UInt64
    /// 1...8 with a GICv2 (8 CPU interfaces, and the PPI CPU mask has 8 bits); with a GICv3 up to
    /// `GuestConfiguration.maxVCPUsGICv3`, as many redistributors as QEMU virt's region holds.
    public var vcpuCount: Int
    public var gicVersion: GICVersion = .v2
    /// Kernel command line, without a terminating NUL (and containing none).
    public var bootargs: [UInt8]
    /// Guest-physical [start, end) of the initrd, as BootLayout placed it.
    public var initrd: (start: UInt64, end: UInt64)?
    public var gicDistributor = BoardRegion(base: 0x0800_0000, size: 0x1_0000)
    /// GICv2 only.
    public var gicCPU = BoardRegion(base: 0x0801_0000, size: 0x2000)
    /// GICv3 only: where the first redistributor is; the tree gives the region one 128 KiB frame per vCPU.
    public var gicRedistributorBase: UInt64 = 0x080A_0000
    /// The console: /chosen/stdout-path points at it.
    public var uart = GuestDevice.pl011(base: 0x0900_0000, size: 0x1000, spi: 1)
    public var timerPPIs = GuestTimerPPIs()
    /// Further devices, emitted after the UART in this order (virtio-mmio transports, then passthrough).
    public var devices: [GuestDevice] = []
    /// /chosen/rng-seed (GuestEntropy); none when empty.
    public var rngSeed: [UInt8] = []

    public init(ramBase: UInt64, ramSize: UInt64, vcpuCount: Int, gicVersion: GICVersion = .v2, bootargs: [UInt8],
                initrd: (start: UInt64, end: UInt64)? = nil) {
        self.ramBase = ramBase
        self.ramSize = ramSize
        self.vcpuCount = vcpuCount
        self.gicVersion = gicVersion
        self.bootargs = bootargs
        self.initrd = initrd
    }
}

public enum GuestDeviceTree {
    static let gicPhandle: UInt32 = 1
    static let apbClockPhandle: UInt32 = 2
    static let apbClockFrequency: UInt32 = 24_000_000
    static let primeCellCompatible: StaticString = "arm,primecell"

    // Interrupt specifier cells for arm,cortex-a15-gic and arm,gic-v3: type, number, flags.
    static let spiType: UInt32 = 0
    static let ppiType: UInt32 = 1
    static let edgeRising: UInt32 = 1
    static let levelHigh: UInt32 = 4

    /// The GICv3 maintenance interrupt, PPI 9 (INTID 25), as QEMU virt describes it.
    static let maintenancePPI: UInt32 = QEMUVirtBoard.gicMaintenanceInterrupt - 16

    /// The DTB for `board`. The board must be valid (1...8 vCPUs with a GICv2, 1...123 with a GICv3,
    /// bootargs without NUL): the configuration tool checks that and names the field; here a
    /// violation is a VMM bug.
    public static func build(_ board: GuestBoardDescription) -> [UInt8] {
        precondition(board.vcpuCount >= 1 && board.vcpuCount <= GuestConfiguration.maximumVCPUs(board.gicVersion),
                     "vCPU count out of the GIC's range")
        precondition(!board.bootargs.contains(0), "bootargs must not contain NUL")

        var w = DeviceTreeWriter()
        w.node("") { w in
            w.property("#address-cells", u32: 2)
            w.property("#size-cells", u32: 2)
            w.property("compatible", string: "linux,dummy-virt")
            w.property("model", string: "vmm virt guest")
            w.property("interrupt-parent", u32: gicPhandle)
            addChosen(&w, board)
            addMemory(&w, board)
            addCPUs(&w, board)
            addPSCI(&w)
            addGIC(&w, board)
            addTimer(&w, board)
            addAPBClock(&w)
            addDevice(&w, board.uart)
            for device in board.devices { addDevice(&w, device) }
        }
        do {
            return try w.finish()
        } catch {
            // Cannot happen for a board that passed the preconditions: every name above is valid.
            preconditionFailure("guest device tree is malformed")
        }
    }

    private static func addChosen(_ w: inout DeviceTreeWriter, _ board: GuestBoardDescription) {
        w.node("chosen") { w in
            w.property("bootargs", string: DeviceTreeString(board.bootargs))
            var path: [UInt8] = [UInt8(ascii: "/")]
            path += board.uart.nodeName
            w.property("stdout-path", string: DeviceTreeString(path))
            if !board.rngSeed.isEmpty { w.property("rng-seed", bytes: board.rngSeed) }
            if let initrd = board.initrd {
                // Linux reads these as 32- or 64-bit by length (drivers/of/fdt.c); u64 covers all RAM.
                w.property("linux,initrd-start", u64: initrd.start)
                w.property("linux,initrd-end", u64: initrd.end)
            }
        }
    }

    private static func addMemory(_ w: inout DeviceTreeWriter, _ board: GuestBoardDescription) {
        var name = ASCIIBuffer()
        name.put("memory@")
        name.putHex(board.ramBase)
        w.node(DeviceTreeString(name.bytes)) { w in
            w.property("device_type", string: "memory")
            w.reg([(board.ramBase, board.ramSize)])
        }
    }

    private static func addCPUs(_ w: inout DeviceTreeWriter, _ board: GuestBoardDescription) {
        w.node("cpus") { w in
            // reg is the MPIDR affinity (MPIDRAffinity): Aff0 = index % 16, Aff1 = index / 16.
            w.property("#address-cells", u32: 1)
            w.property("#size-cells", u32: 0)
            for index in 0..<board.vcpuCount {
                let affinity = MPIDRAffinity(vcpu: index).packed
                var name = ASCIIBuffer()
                name.put("cpu@")
                name.putHex(UInt64(affinity))
                w.node(DeviceTreeString(name.bytes)) { w in
                    w.property("device_type", string: "cpu")
                    w.property("compatible", string: "arm,cortex-a53")
                    w.property("reg", u32: affinity)
                    w.property("enable-method", string: "psci")
                }
            }
        }
    }

    private static func addPSCI(_ w: inout DeviceTreeWriter) {
        w.node("psci") { w in
            w.property("compatible", strings: ["arm,psci-1.0", "arm,psci-0.2"])
            // SMC, not HVC: seL4 reports a guest's trapped SMC as a VCPUFault the VMM can answer,
            // and the native platform traps it too (HCR_EL2.TSC), so one guest DT serves both.
            w.property("method", string: "smc")
        }
    }

    private static func addGIC(_ w: inout DeviceTreeWriter, _ board: GuestBoardDescription) {
        var name = ASCIIBuffer()
        name.put("intc@")
        name.putHex(board.gicDistributor.base)
        w.node(DeviceTreeString(name.bytes)) { w in
            w.property("compatible", string: board.gicVersion == .v2 ? "arm,cortex-a15-gic" : "arm,gic-v3")
            w.property("#interrupt-cells", u32: 3)
            w.property("interrupt-controller")
            // As QEMU does; dtc also expects #address-cells on an interrupt provider.
            w.property("#address-cells", u32: 2)
            w.property("#size-cells", u32: 2)
            switch board.gicVersion {
            case .v2:
                w.reg([(board.gicDistributor.base, board.gicDistributor.size),
                       (board.gicCPU.base, board.gicCPU.size)])
            case .v3:
                // arm,gic-v3.yaml: GICD, then the redistributor regions (one, contiguous frames at the
                // default 128 KiB stride, so no redistributor-stride).
                w.property("#redistributor-regions", u32: 1)
                w.reg([(board.gicDistributor.base, board.gicDistributor.size),
                       (board.gicRedistributorBase, UInt64(board.vcpuCount) * QEMUVirtBoard.gicRedistributorFrameSize)])
                w.property("interrupts", cells: [ppiType, maintenancePPI, levelHigh])
            }
            w.property("phandle", u32: gicPhandle)
        }
    }

    private static func addTimer(_ w: inout DeviceTreeWriter, _ board: GuestBoardDescription) {
        // GICv2 PPI flags: bits 15:8 are the mask of CPUs the PPI is wired to (arm/gic.yaml); GICv3
        // has no such mask (arm,gic-v3.yaml: the flags are the trigger type alone).
        let cpuMask = board.gicVersion == .v2 ? (UInt32(1) << UInt32(board.vcpuCount)) - 1 : 0
        let flags = (cpuMask << 8) | levelHigh
        let ppis = board.timerPPIs
        w.node("timer") { w in
            w.property("compatible", string: "arm,armv8-timer")
            w.property("interrupts", cells: [ppiType, ppis.securePhysical, flags,
                                             ppiType, ppis.nonSecurePhysical, flags,
                                             ppiType, ppis.virtual, flags,
                                             ppiType, ppis.hypervisor, flags])
            w.property("always-on")
        }
    }

    private static func addAPBClock(_ w: inout DeviceTreeWriter) {
        w.node("apb-pclk") { w in
            w.property("compatible", string: "fixed-clock")
            w.property("#clock-cells", u32: 0)
            w.property("clock-frequency", u32: apbClockFrequency)
            w.property("clock-output-names", string: "clk24mhz")
            w.property("phandle", u32: apbClockPhandle)
        }
    }

    private static func addDevice(_ w: inout DeviceTreeWriter, _ device: GuestDevice) {
        w.node(DeviceTreeString(device.nodeName)) { w in
            switch device.kind {
            case .pl011:
                w.property("compatible", strings: ["arm,pl011", "arm,primecell"])
                w.reg([(device.region.base, device.region.size)])
                w.property("interrupts", cells: [spiType, device.spi, levelHigh])
                w.property("clocks", cells: [apbClockPhandle, apbClockPhandle])
                w.property("clock-names", strings: ["uartclk", "apb_pclk"])
            case .virtioMMIO:
                w.property("compatible", string: "virtio,mmio")
                w.reg([(device.region.base, device.region.size)])
                w.property("interrupts", cells: [spiType, device.spi, edgeRising])
                w.property("dma-coherent")
            case .passthrough:
                var strings: [DeviceTreeString] = []
                var primeCell = false
                for string in device.compatible {
                    strings.append(DeviceTreeString(string))
                    primeCell = primeCell || primeCellCompatible.withUTF8Buffer { string.elementsEqual($0) }
                }
                w.property("compatible", strings: strings)
                w.reg([(device.region.base, device.region.size)])
                // Level-high, as QEMU's virt gives its board devices (the PL031, PL061, PL011).
                if device.hasInterrupt { w.property("interrupts", cells: [spiType, device.spi, levelHigh]) }
                if primeCell {
                    // Linux's AMBA bus enables a PrimeCell's bus clock before reading its ID registers
                    // (drivers/amba/bus.c amba_get_enable_pclk): without apb_pclk the probe fails.
                    w.property("clocks", u32: apbClockPhandle)
                    w.property("clock-names", string: "apb_pclk")
                }
            }
        }
    }
}
