// The arm64 Linux `Image` header: what the loader must know before it copies a kernel into guest RAM.
//
// Linux Documentation/arch/arm64/booting.rst, "Call the kernel image", defines a 64-byte header at
// the start of every arm64 `Image`: where the image wants to sit relative to a 2 MiB-aligned base
// (text_offset), how much memory it uses from its first byte (image_size, which includes the BSS
// and is larger than the file), and flags for endianness, page size and physical placement.
// This file only decodes and validates the header; choosing addresses is BootLayout's job.

/// Why a byte buffer is not a bootable arm64 Linux `Image`.
public enum ImageHeaderError: Error, Equatable {
    /// Fewer than the 64 bytes of the header.
    case tooShort
    /// The word at offset 56 is not "ARM\x64" (0x644d5241 read little-endian).
    case badMagic(found: UInt32)
    /// flags bit 0 is set: a big-endian kernel, which this VMM does not boot.
    case bigEndian
}

/// The decoded 64-byte header of an arm64 Linux `Image` (booting.rst, all fields little-endian):
///
///     u32 code0         @0    executable code (a branch, or "MZ" for EFI stub kernels)
///     u32 code1         @4
///     u64 text_offset   @8    image load offset from a 2 MiB-aligned base
///     u64 image_size    @16   effective image size; 0 before Linux 3.17
///     u64 flags         @24   bit 0 BE, bits 1-2 page size, bit 3 physical placement
///     u64 res2, res3, res4 @32..55
///     u32 magic         @56   0x644d5241, "ARM\x64"
///     u32 res5          @60   offset of the PE header for EFI stub kernels
public struct ImageHeader: Equatable {
    public static let size = 64
    public static let magic: UInt32 = 0x644d_5241

    /// text_offset a kernel older than 3.17 expects (booting.rst: "Where image_size is zero,
    /// text_offset can be assumed to be 0x80000").
    public static let legacyTextOffset: UInt64 = 0x8_0000

    /// Extra room reserved past the end of the file when image_size is 0 and the BSS size is
    /// unknown. Kernels of that era had a BSS well below 2 MiB; 8 MiB leaves a wide margin.
    public static let legacyImageMargin: UInt64 = 0x80_0000

    /// Kernel page size announced by flags bits 1-2.
    public enum PageSize: UInt8, Equatable {
        case unspecified = 0, size4K = 1, size16K = 2, size64K = 3
    }

    /// Where the 2 MiB-aligned base may go (flags bit 3).
    public enum Placement: UInt8, Equatable {
        /// Bit 3 clear: as close as possible to the start of DRAM; memory below the base is not
        /// reachable through the kernel's linear map.
        case nearStartOfDRAM = 0
        /// Bit 3 set: anywhere in physical memory.
        case anywhere = 1
    }

    public let code0: UInt32
    public let code1: UInt32
    /// Offset of the image from its 2 MiB-aligned base; 0x80000 for pre-3.17 kernels.
    public let textOffset: UInt64
    /// Bytes the kernel uses from its first byte, BSS included; nil when the header says 0
    /// (a pre-3.17 kernel), in which case `reservedSize(fileSize:)` estimates it.
    public let imageSize: UInt64?
    public let flags: UInt64

    public init(bytes: UnsafeRawBufferPointer) throws(ImageHeaderError) {
        guard bytes.count >= Self.size else { throw .tooShort }
        // loadUnaligned: callers hand us file buffers and guest RAM with no alignment promise.
        func u32(_ offset: Int) -> UInt32 {
            UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        }
        func u64(_ offset: Int) -> UInt64 {
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        let magic = u32(56)
        guard magic == Self.magic else { throw .badMagic(found: magic) }
        let flags = u64(24)
        // booting.rst: flags bit 0 is "Kernel endianness. 1 if BE, 0 if LE".
        guard flags & 1 == 0 else { throw .bigEndian }
        code0 = u32(0)
        code1 = u32(4)
        self.flags = flags
        let rawImageSize = u64(16)
        if rawImageSize == 0 {
            // Before 3.17 the endianness of text_offset was unspecified and image_size was 0;
            // booting.rst says to assume 0x80000 rather than trust the field.
            textOffset = Self.legacyTextOffset
            imageSize = nil
        } else {
            textOffset = u64(8)
            imageSize = rawImageSize
        }
    }

    public var pageSize: PageSize {
        // Cannot fail: a two-bit field has exactly the four raw values of PageSize.
        PageSize(rawValue: UInt8((flags >> 1) & 3))!
    }

    public var placement: Placement {
        flags & (1 << 3) != 0 ? .anywhere : .nearStartOfDRAM
    }

    /// Bytes to keep free from the first byte of the image. booting.rst: "At least image_size
    /// bytes from the start of the image must be free for use by the kernel". A header whose
    /// image_size is smaller than the file itself is not trusted below the file size; a legacy
    /// header (image_size 0) gets the file size plus `legacyImageMargin`, saturating at UInt64.max.
    public func reservedSize(fileSize: UInt64) -> UInt64 {
        guard let imageSize else {
            let (sum, overflow) = fileSize.addingReportingOverflow(Self.legacyImageMargin)
            return overflow ? UInt64.max : sum
        }
        return max(imageSize, fileSize)
    }
}
