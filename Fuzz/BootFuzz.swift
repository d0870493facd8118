// Fuzz target "boot": the first bytes of a kernel file (ImageHeader.swift), the placement of the
// kernel, device tree and initrd in guest RAM (BootLayout.swift), and the device tree that then
// names the initrd and the seed (GuestDeviceTree.swift), as GuestBoot.load does them; then the
// rest of the input as the board's device tree (BoardMemory, GuestEntropy.boardSeed).
//
// Input: RAM base and size, kernel file size, initrd size (or none), bootargs length, then the
// 64-byte Image header and the bootargs, a seed length and the seed, then the board's tree. A
// layout that plan() returns must keep everything in RAM and apart (Linux Documentation/arch/arm64/
// booting.rst): the kernel from the start of RAM, the DTB 2 MiB aligned after it, the initrd page
// aligned above the DTB.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBoot(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let shape = input.u8()
    // Mostly 2 MiB-aligned RAM of realistic size; sometimes any values, which plan() must refuse.
    let ramBase = shape & 1 == 0 ? UInt64(input.u16()) << 21 : input.u64()
    let ramSize = shape & 2 == 0 ? UInt64(input.u16()) << 21 : input.u64()
    let fileSize = shape & 4 == 0 ? UInt64(input.u32()) : input.u64()
    let initrdSize: UInt64? = shape & 8 != 0 ? nil : (shape & 16 == 0 ? UInt64(input.u32()) : input.u64())
    let dtbMaxSize = shape & 32 == 0 ? 0x10_0000 : UInt64(input.u32())
    let bootargsLength = Int(input.u8())
    let headerBytes = input.take(ImageHeader.size)

    let header: ImageHeader
    do { header = try ImageHeader(bytes: headerBytes) } catch { return 0 }
    fuzzCheck(header.flags & 1 == 0, "big-endian Image accepted")
    _ = header.pageSize
    _ = header.placement
    fuzzCheck(header.reservedSize(fileSize: fileSize) >= fileSize, "kernel reservation smaller than its file")

    let layout: BootLayout
    do {
        layout = try BootLayout.plan(ramBase: ramBase, ramSize: ramSize, header: header, kernelFileSize: fileSize,
                                     initrdSize: initrdSize, dtbMaxSize: dtbMaxSize)
    } catch {
        return 0
    }
    let ramEnd = ramBase + ramSize   // plan() refused RAM that wraps
    func inside(_ start: UInt64, _ length: UInt64) -> Bool {
        start >= ramBase && start <= ramEnd && length <= ramEnd - start
    }
    fuzzCheck(inside(layout.kernel.raw, layout.kernelSize), "kernel outside RAM")
    fuzzCheck(layout.kernelSize >= fileSize, "kernel reservation smaller than its file")
    fuzzCheck(inside(layout.dtb.raw, layout.dtbMaxSize), "device tree outside RAM")
    fuzzCheck(layout.dtb.raw % BootLayout.kernelAlignment == 0, "device tree not 2 MiB aligned")
    fuzzCheck(layout.dtb.raw >= layout.kernel.raw + layout.kernelSize, "device tree overlaps the kernel")
    var initrdRange: (start: UInt64, end: UInt64)? = nil
    if let initrdSize, initrdSize > 0 {
        guard let initrd = layout.initrd, let end = layout.initrdEnd else { fatalError("initrd asked for but not placed") }
        fuzzCheck(inside(initrd.raw, initrdSize), "initrd outside RAM")
        fuzzCheck(initrd.raw % BootLayout.pageSize == 0, "initrd not page aligned")
        fuzzCheck(initrd.raw >= layout.dtb.raw + layout.dtbMaxSize, "initrd overlaps the device tree")
        fuzzCheck(end.raw == initrd.raw + initrdSize, "initrd end is not start + size")
        initrdRange = (initrd.raw, end.raw)
    } else {
        fuzzCheck(layout.initrd == nil, "initrd placed without one (or an empty one)")
    }

    // GuestBoot writes this tree at layout.dtb; its bootargs never hold a NUL (the configuration's rule).
    var bootargs = Array(input.take(bootargsLength))
    for i in bootargs.indices where bootargs[i] == 0 { bootargs[i] = 0x20 }
    var board = GuestBoardDescription(ramBase: ramBase, ramSize: ramSize, vcpuCount: Int(shape >> 6) + 1,
                                      bootargs: bootargs, initrd: initrdRange)
    board.rngSeed = Array(input.take(Int(input.u8()) % (GuestEntropy.seedSize + 1)))
    let dtb = GuestDeviceTree.build(board)
    fuzzCheck(dtb.count >= 40 && dtb[0] == 0xD0 && dtb[3] == 0xED, "device tree without the FDT magic")
    let seed = dtb.withUnsafeBytes { GuestEntropy.boardSeed(deviceTree: $0) }
    fuzzCheck(seed == (board.rngSeed.isEmpty ? nil : board.rngSeed), "the guest's seed does not read back from its tree")
    fuzzCheck(dtb.withUnsafeBytes { BoardMemory.ranges(inDeviceTree: $0) }?.first?.base == ramBase, "RAM does not read back")

    // The rest: a device tree as a board's firmware might leave it, malformed or not: read, never a trap.
    let firmware = input.rest()
    _ = GuestEntropy.boardSeed(deviceTree: firmware)
    _ = BoardMemory.ranges(inDeviceTree: firmware)
    return 0
}
