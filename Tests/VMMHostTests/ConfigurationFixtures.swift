// The fixtures every configuration test uses: a temporary directory per test, an arm64 Image
// header (booting.rst offsets) written as a small or sparse file, and the error lines of a text.

import XCTest
@testable import VMMCore
@testable import VMMHost

class ConfigurationTestCase: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Fixtures

    /// An arm64 Image header as booting.rst lays it out: text_offset @8, image_size @16, flags @24, magic @56.
    func kernelHeader(textOffset: UInt64 = 0, imageSize: UInt64 = 0x100_0000, flags: UInt64 = 0xa,
                              magic: UInt32 = 0x644d_5241) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 64)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, byte) in $0.enumerated() { bytes[offset + i] = byte } }
        }
        put(textOffset, at: 8)
        put(imageSize, at: 16)
        put(flags, at: 24)
        put(magic, at: 56)
        return bytes
    }

    @discardableResult
    func writeFile(_ name: String, _ bytes: [UInt8] = [], size: UInt64? = nil) throws -> String {
        let path = directory + "/" + name
        try FileManager.default.createDirectory(atPath: ConfigurationPaths.directory(of: path), withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        if let size {
            let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
            try handle.truncate(atOffset: size)      // sparse: sizes, not contents, matter here
            try handle.close()
        }
        return path
    }

    /// A kernel "Image" of 16 MiB image_size and an initrd "initrd.img" of 1 MiB.
    func writeGuest() throws {
        try writeFile("Image", kernelHeader(), size: 0x80_0000)
        try writeFile("initrd.img", size: 0x10_0000)
    }

    let minimal = """
        [[vm]]
        kernel = "Image"
        initrd = "initrd.img"

        """

    func parse(_ text: String) throws -> SystemConfiguration {
        try SystemConfiguration.parse(text: text, file: "system.toml", baseDirectory: directory)
    }

    /// Every error's "file: keyPath: message" line; none when the text is valid.
    func errors(_ text: String) -> [String] {
        do {
            _ = try SystemConfiguration.parse(text: text, file: "system.toml", baseDirectory: directory)
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }
}
