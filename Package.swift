// swift-tools-version:6.0
// Host build of the VMM core (unit tests, fuzzing) and of the `vmm` host tool.
// The same Sources/VMMCore files are compiled for aarch64-none-none-elf in Embedded mode by the Makefile.
import PackageDescription

let package = Package(
    name: "vmm",
    products: [
        .executable(name: "vmm", targets: ["vmm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // The portable core: Embedded-Swift clean, no Foundation.
        .target(name: "VMMCore", path: "Sources/VMMCore"),
        // Host-only logic of the tool (Foundation allowed): system descriptions, image checks.
        .target(name: "VMMHost", dependencies: ["VMMCore", .product(name: "TOMLKit", package: "TOMLKit")],
                path: "Sources/VMMHost"),
        .executableTarget(name: "vmm", dependencies: ["VMMCore", "VMMHost",
                                                     .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/vmm"),
        .testTarget(name: "VMMCoreTests", dependencies: ["VMMCore"], path: "Tests/VMMCoreTests"),
        .testTarget(name: "VMMHostTests", dependencies: ["VMMHost", "VMMCore"], path: "Tests/VMMHostTests"),
    ]
)
