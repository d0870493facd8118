// swift-tools-version:6.0
// Host build of the VMM core (unit tests, fuzzing) and of the `vmm` host tool.
// The same Sources/VMMCore files are compiled for aarch64-none-none-elf in Embedded mode by the Makefile.
import PackageDescription

let package = Package(
    name: "vmm",
    products: [
        .executable(name: "vmm", targets: ["vmm"]),
    ],
    targets: [
        .target(name: "VMMCore", path: "Sources/VMMCore"),
        .executableTarget(name: "vmm", dependencies: ["VMMCore"], path: "Sources/vmm"),
        .testTarget(name: "VMMCoreTests", dependencies: ["VMMCore"], path: "Tests/VMMCoreTests"),
    ]
)
