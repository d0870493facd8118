// Facts about QEMU's `virt` board (with a GICv2 or a GICv3) and the guest we build on it, shared by every platform
// and by the host tool, so that the native platform, the Microkit protection domain and the
// generated Microkit system description cannot disagree about an address or an interrupt.

public enum QEMUVirtBoard {
    /// Guest RAM as the guest sees it (its IPA) and how much the guest gets.
    public static let guestRAMBase: UInt64 = 0x4000_0000
    public static let guestRAMSize: UInt64 = 0x2000_0000            // 512 MiB

    /// GICv2 frames (hw/arm/virt.c memmap): the distributor is emulated by the core; the guest's CPU
    /// interface at `gicCPUInterface` is backed by the hardware's virtual CPU interface.
    public static let gicDistributor: UInt64 = 0x0800_0000
    public static let gicDistributorSize: UInt64 = 0x1_0000
    public static let gicCPUInterface: UInt64 = 0x0801_0000
    public static let gicCPUInterfaceSize: UInt64 = 0x2000
    public static let gicVirtualCPUInterface: UInt64 = 0x0804_0000
    /// The end of the GICv2 frames (VIRT_GIC_DIST..VIRT_GIC_VCPU: GICD, GICC, GICH, GICV).
    public static let gicV2FramesEnd: UInt64 = 0x0805_0000

    /// GICv3 (hw/arm/virt.c VIRT_GIC_REDIST): the distributor is at `gicDistributor` as on GICv2, the
    /// redistributors follow one another from here, 128 KiB each (RD_base and SGI_base); the region
    /// has room for 123 of them. Both are emulated by the core; the guest's CPU interface is the
    /// hardware's virtual one, reached through system registers.
    public static let gicRedistributor: UInt64 = 0x080A_0000
    public static let gicRedistributorSize: UInt64 = 0xF6_0000
    public static let gicRedistributorFrameSize: UInt64 = 0x2_0000
    /// The GIC maintenance interrupt's PPI (INTID 25), as QEMU virt describes it.
    public static let gicMaintenanceInterrupt: UInt32 = 25

    /// The PL011 UART, passed through to the guest, and its interrupt (SPI 1).
    public static let uart: UInt64 = 0x0900_0000
    public static let uartSize: UInt64 = 0x1000
    public static let uartInterrupt: UInt32 = 33

    /// The EL1 virtual timer's PPI (INTID 27), the guest's clock.
    public static let virtualTimerInterrupt: UInt32 = 27

    /// The guest's kernel command line.
    public static let bootargs: StaticString = "console=ttyAMA0 rdinit=/init"
}

/// How the Microkit system description and the VMM protection domain meet: symbol names the
/// Microkit tool patches, channel numbers, and where guest RAM appears in the VMM's address space.
public enum MicrokitLayout {
    /// The VMM's virtual address of guest RAM (setvar_vaddr) and its size (setvar_size).
    public static let guestRAMAddressSymbol: StaticString = "guest_ram_vaddr"
    public static let guestRAMSizeSymbol: StaticString = "guest_ram_size"
    public static let guestRAMVMMAddress: UInt64 = 0x2000_0000
    /// The channel on which the UART's interrupt reaches the VMM.
    public static let uartChannel: UInt32 = 1
    /// The channel of passthrough device n's interrupt (the configuration's order).
    public static func passthroughChannel(_ n: Int) -> UInt32 { 2 + UInt32(n) }
    /// The single virtual machine's vCPU ids (Microkit `<vcpu id=…>`) are 0..<vcpuCount.
    public static let vmmPriority: UInt8 = 253
    public static let guestPriority: UInt8 = 100
    /// Tests only: a VMM image linked with `testHooksSymbol` (`vmm build` with VMM_TEST_HOOKS=1 in its
    /// environment) faults on purpose, as a bug in the VMM would, when its guest touches this page of
    /// the board's unused device space, so that a test can show a VMM PD's fault stays in its PD.
    /// Without the symbol (every other image) the access stops the guest like any unemulated one.
    public static let testHooksSymbol: StaticString = "vmm_test_hooks"
    public static let testFaultAddress: UInt64 = 0x0bff_f000
}
