// Where the kernel, the device tree and the initrd go in guest RAM, and why a given set does not fit.
//
// The rules are Linux Documentation/arch/arm64/booting.rst: the Image sits text_offset bytes above
// a 2 MiB-aligned base and owns image_size bytes from its first byte; the DTB is 8-byte aligned,
// at most 2 MiB, and must not share a 2 MiB block with memory mapped differently; the initrd lies
// inside a 1 GiB-aligned window of at most 32 GiB that also covers the kernel. This file computes
// addresses only; copying bytes is the loader's job (through GuestMemory), the DTB's contents are
// GuestDeviceTree's. `BootCheckError.message` renders each failure as one line naming the file,
// in bytes so that the host tool and the bare-metal VMM can print the same text.

/// Why the boot images do not fit the guest's RAM.
public enum BootLayoutError: Error, Equatable {
    /// RAM must start on a 2 MiB boundary: the kernel's base is 2 MiB aligned and we put it there.
    case ramNotAligned(base: UInt64)
    /// ramBase + ramSize wraps past 2^64.
    case ramEndsPastAddressSpace
    /// text_offset + image_size (bytes from the start of RAM) exceeds the RAM size.
    case kernelDoesNotFit(needed: UInt64, available: UInt64)
    /// The DTB slot after the kernel ends past the end of RAM; both counted from the start of RAM.
    case dtbDoesNotFit(needed: UInt64, available: UInt64)
    /// booting.rst: the dtb "must not exceed 2 megabytes in size".
    case dtbTooLarge(maxSize: UInt64)
    /// The initrd is larger than the RAM left above the DTB (inside the 32 GiB window).
    case initrdDoesNotFit(size: UInt64, available: UInt64)
}

/// Guest-physical placement of everything the VMM loads before the guest's first instruction.
public struct BootLayout: Equatable {
    public static let kernelAlignment: UInt64 = 0x20_0000       // booting.rst: 2 MB aligned base
    public static let maxDTBSize: UInt64 = 0x20_0000            // booting.rst: dtb ≤ 2 megabytes
    public static let pageSize: UInt64 = 0x1000
    static let initrdWindowAlignment: UInt64 = 0x4000_0000      // booting.rst: 1 GB aligned window
    static let initrdWindowSize: UInt64 = 0x8_0000_0000         // … of up to 32 GB

    /// Guest address of the Image's first byte: the 2 MiB-aligned base plus text_offset.
    public let kernel: GuestPhysicalAddress
    /// Where the boot vCPU starts: booting.rst branches to the first byte of the Image.
    public let kernelEntry: GuestPhysicalAddress
    /// Bytes reserved for the kernel from `kernel` on (image_size, or an estimate for old kernels).
    public let kernelSize: UInt64
    /// 2 MiB aligned (so 8-byte aligned, and alone in its 2 MiB block), right after the kernel.
    public let dtb: GuestPhysicalAddress
    public let dtbMaxSize: UInt64
    /// Page aligned, as high in RAM as the 32 GiB window allows; nil when there is no initrd.
    public let initrd: GuestPhysicalAddress?
    public let initrdSize: UInt64

    /// One past the last initrd byte (the value of /chosen linux,initrd-end), or nil.
    public var initrdEnd: GuestPhysicalAddress? {
        // Cannot overflow: plan() placed the initrd below the end of RAM.
        initrd.map { GuestPhysicalAddress($0.raw + initrdSize) }
    }

    /// Places the kernel at the start of RAM (booting.rst: for bit 3 clear the base should be "as
    /// close as possible to the base of DRAM"; for bit 3 set anywhere works, so the same place),
    /// the DTB at the next 2 MiB boundary after image_size, and the initrd at the top of RAM.
    public static func plan(ramBase: UInt64, ramSize: UInt64, header: ImageHeader, kernelFileSize: UInt64,
                            initrdSize: UInt64?, dtbMaxSize: UInt64 = 0x10_0000) throws(BootLayoutError) -> BootLayout {
        guard ramBase % kernelAlignment == 0 else { throw .ramNotAligned(base: ramBase) }
        guard dtbMaxSize <= maxDTBSize else { throw .dtbTooLarge(maxSize: dtbMaxSize) }
        let (ramEnd, wraps) = ramBase.addingReportingOverflow(ramSize)
        guard !wraps else { throw .ramEndsPastAddressSpace }

        // All offsets below are from ramBase and saturate instead of wrapping, so a hostile
        // image_size near 2^64 reports "does not fit" rather than a small wrapped number.
        let kernelSize = header.reservedSize(fileSize: kernelFileSize)
        let kernelEndOffset = saturatingAdd(header.textOffset, kernelSize)
        guard kernelEndOffset <= ramSize else {
            throw .kernelDoesNotFit(needed: kernelEndOffset, available: ramSize)
        }
        let dtbOffset = alignUp(kernelEndOffset, kernelAlignment)
        let dtbEndOffset = saturatingAdd(dtbOffset, dtbMaxSize)
        guard dtbEndOffset <= ramSize else {
            throw .dtbDoesNotFit(needed: dtbEndOffset, available: ramSize)
        }

        var initrd: GuestPhysicalAddress? = nil
        // An empty initrd is no initrd: the kernel gets no initrd range (and none is placed below the DTB).
        if let initrdSize, initrdSize > 0 {
            // The window starts at the 1 GiB boundary at or below the kernel; cannot overflow:
            // the kernel lies below ramEnd, and the sum is clamped to ramEnd.
            let windowStart = (ramBase + header.textOffset) & ~(initrdWindowAlignment - 1)
            let windowEnd = saturatingAdd(windowStart, initrdWindowSize)
            let top = alignDown(min(ramEnd, windowEnd), pageSize)
            // Cannot overflow: dtbEndOffset <= ramSize was checked, and ramBase + ramSize fits.
            let bottom = alignUp(ramBase + dtbEndOffset, pageSize)
            let available = top > bottom ? top - bottom : 0
            guard initrdSize <= available else {
                throw .initrdDoesNotFit(size: initrdSize, available: available)
            }
            // Stays >= bottom: bottom is page aligned and top - initrdSize >= bottom.
            initrd = GuestPhysicalAddress(alignDown(top - initrdSize, pageSize))
        }

        let kernel = GuestPhysicalAddress(ramBase + header.textOffset)
        return BootLayout(kernel: kernel, kernelEntry: kernel, kernelSize: kernelSize,
                          dtb: GuestPhysicalAddress(ramBase + dtbOffset), dtbMaxSize: dtbMaxSize,
                          initrd: initrd, initrdSize: initrd == nil ? 0 : initrdSize ?? 0)
    }

    /// Parses the kernel's header from the first bytes of its file and plans the layout: the whole
    /// check the host tool runs before booting, kept here so its outcomes are unit-tested.
    public static func check(kernelStart: UnsafeRawBufferPointer, kernelFileSize: UInt64, initrdSize: UInt64?,
                             ramBase: UInt64, ramSize: UInt64)
        throws(BootCheckError) -> (header: ImageHeader, layout: BootLayout) {
        let header: ImageHeader
        do { header = try ImageHeader(bytes: kernelStart) } catch { throw .kernel(error) }
        do {
            let layout = try plan(ramBase: ramBase, ramSize: ramSize, header: header,
                                  kernelFileSize: kernelFileSize, initrdSize: initrdSize)
            return (header, layout)
        } catch {
            throw .layout(error)
        }
    }
}

/// A failed `BootLayout.check`: the kernel file is not a usable Image, or the images do not fit.
public enum BootCheckError: Error, Equatable {
    case kernel(ImageHeaderError)
    case layout(BootLayoutError)

    /// One line (no "vmm: " prefix, no newline) naming the file and what is wrong, in ASCII/UTF-8.
    public func message(kernelName: [UInt8], initrdName: [UInt8]) -> [UInt8] {
        var m = ASCIIBuffer()
        func file(_ kind: StaticString, _ name: [UInt8]) {
            m.put(kind); m.put(" '"); m.put(name); m.put("': ")
        }
        switch self {
        case .kernel(.tooShort):
            file("kernel", kernelName)
            m.put("not an arm64 Linux Image (shorter than its 64-byte header)")
        case .kernel(.badMagic(let found)):
            file("kernel", kernelName)
            m.put("not an arm64 Linux Image (bad magic 0x"); m.putHex(UInt64(found), minDigits: 8)
            m.put("; expected 0x"); m.putHex(UInt64(ImageHeader.magic), minDigits: 8); m.put(")")
        case .kernel(.bigEndian):
            file("kernel", kernelName)
            m.put("big-endian arm64 Image (header flags bit 0); only little-endian guests are supported")
        case .layout(.ramNotAligned(let base)):
            m.put("guest RAM base 0x"); m.putHex(base)
            m.put(" is not 2 MiB aligned (arm64 kernels need a 2 MiB-aligned base)")
        case .layout(.ramEndsPastAddressSpace):
            m.put("guest RAM runs past the end of the 64-bit address space")
        case .layout(.kernelDoesNotFit(let needed, let available)):
            file("kernel", kernelName)
            m.put("needs "); m.putSize(needed, roundingUp: true)
            m.put(" of guest RAM (text_offset + image_size) but there are only ")
            m.putSize(available, roundingUp: false)
        case .layout(.dtbDoesNotFit(let needed, let available)):
            file("kernel", kernelName)
            m.put("leaves no room for the device tree (kernel and device tree need ")
            m.putSize(needed, roundingUp: true); m.put(" of guest RAM; there are only ")
            m.putSize(available, roundingUp: false); m.put(")")
        case .layout(.dtbTooLarge(let maxSize)):
            m.put("a device tree of "); m.putSize(maxSize, roundingUp: true)
            m.put(" exceeds the 2 MiB arm64 limit")
        case .layout(.initrdDoesNotFit(let size, let available)):
            file("initrd", initrdName)
            m.putSize(size, roundingUp: true); m.put(" does not fit in guest RAM (")
            m.putSize(available, roundingUp: false); m.put(" free above the kernel)")
        }
        return m.bytes
    }
}

@inline(__always) private func saturatingAdd(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    return overflow ? UInt64.max : sum
}

/// `alignment` is a power of two; saturates to the highest aligned value instead of wrapping.
@inline(__always) private func alignUp(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
    alignDown(saturatingAdd(value, alignment - 1), alignment)
}

@inline(__always) private func alignDown(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
    value & ~(alignment - 1)
}

extension ASCIIBuffer {
    /// Sizes in MiB (KiB below 1 MiB): exact as an integer, otherwise with two decimals rounded
    /// the way that keeps a "does not fit" message true (what is needed up, what is free down).
    mutating func putSize(_ bytes: UInt64, roundingUp: Bool) {
        let unit: UInt64 = bytes >= 0x10_0000 ? 0x10_0000 : 0x400
        let whole = bytes / unit, remainder = bytes % unit
        if remainder == 0 {
            putDecimal(whole)
        } else {
            // Cannot overflow: remainder < unit <= 2^20, and whole <= 2^54 so whole * 100 < 2^61.
            var hundredths = remainder * 100 / unit
            if roundingUp && (remainder * 100) % unit != 0 { hundredths += 1 }
            let total = whole * 100 + hundredths
            putDecimal(total / 100)
            put(".")
            put(UInt8(ascii: "0") + UInt8(total % 100 / 10))
            put(UInt8(ascii: "0") + UInt8(total % 10))
        }
        put(unit == 0x10_0000 ? " MiB" : " KiB")
    }
}
