// What `vmm check` and `vmm run` print for a good file (the summary with real plurals and the
// passthrough devices, the console sockets and forwarded ports), the whole check of one file, and
// how `vmm build` finds the checkout from wherever it runs.

import XCTest
@testable import VMMCore
@testable import VMMHost

final class ConfigurationReportTests: ConfigurationTestCase {
    func testSummaryCountsWithRealPluralsAndLeavesOutWhatTheVMHasNot() throws {
        try writeGuest()
        XCTAssertEqual(try parse(minimal).summary(file: "a.toml"),
                       ["a.toml: ok — vm 'linux': 512 MiB at 0x40000000, 1 vCPU, platform native"])
        let one = try parse(minimal + """
            [[vm.block]]
            file = "d.img"
            size = "1M"
            [[vm.net]]
            [[vm.console]]
            socket = "c.sock"
            [[vm.passthrough]]
            name = "rtc"
            address = 0x0901_0000
            size = 0x1000
            compatible = ["arm,pl031"]
            """)
        XCTAssertEqual(one.summary(file: "a.toml"), ["a.toml: ok — vm 'linux': 512 MiB at 0x40000000, 1 vCPU, 1 disk, "
                                                     + "1 network, 1 console, 1 passthrough device (rtc), platform native"])
        var two = one
        two.vms[0].vcpus = 2
        two.vms[0].ramSize = 256 << 20
        two.vms[0].blocks += two.vms[0].blocks
        two.vms[0].networks += two.vms[0].networks
        two.vms[0].consoles += two.vms[0].consoles
        two.vms[0].passthrough.append(.init(name: "gpio", address: 0x0903_0000, size: 0x1000))
        two.platform = .microkit
        XCTAssertEqual(two.summary(file: "b.toml"), ["b.toml: ok — vm 'linux': 256 MiB at 0x40000000, 2 vCPUs, 2 disks, "
                                                     + "2 networks, 2 consoles, 2 passthrough devices (rtc, gpio), platform microkit"])
    }

    func testConnectionsNameEachConsoleSocketAndForwardedPort() throws {
        try writeGuest()
        let system = try parse(minimal + """
            [[vm.net]]
            forward = ["tcp:8080:80", "udp:5353:53"]
            [[vm.net]]
            forward = ["tcp:2222:22"]
            [[vm.console]]
            socket = "run/hvc0.sock"
            [[vm.console]]
            socket = "/tmp/hvc1.sock"
            """)
        XCTAssertEqual(system.connections(output: URL(fileURLWithPath: "/out")), [
            "vm 'linux': /dev/hvc0: socat - UNIX-CONNECT:\(directory)/run/hvc0.sock",
            "vm 'linux': /dev/hvc1: socat - UNIX-CONNECT:/tmp/hvc1.sock",
            "vm 'linux': eth0: host 127.0.0.1:8080 (tcp) forwards to guest port 80",
            "vm 'linux': eth0: host 127.0.0.1:5353 (udp) forwards to guest port 53",
            "vm 'linux': eth1: host 127.0.0.1:2222 (tcp) forwards to guest port 22",
        ])
        XCTAssertEqual(try parse(minimal).connections(output: URL(fileURLWithPath: "/out")), [])
    }

    func testCheckAddsWhatThePlatformCannotRunToTheSchemasRules() throws {
        try writeGuest()
        let file = try writeFile("s.toml", Array((minimal + "[[vm.passthrough]]\nname = \"rtc\"\naddress = 0x0901_0000\nsize = 0x1000\n").utf8))
        XCTAssertNoThrow(try SystemConfiguration.load(path: file))
        XCTAssertThrowsError(try SystemConfiguration.check(path: file)) {
            XCTAssertEqual(($0 as? ConfigurationErrors)?.errors.map(\.description), [
                "\(file): vm[0].passthrough[0].compatible: required key is missing (expected the device-tree compatible strings "
                    + "of the device, e.g. [\"arm,pl031\", \"arm,primecell\"])"])
        }
    }

    func testDraftNamesTheFilesOfAnInvalidSystem() throws {
        let file = try writeFile("sub/s.toml", Array("[[vm]]\nkernel = \"../guest/Image\"\ninitrd = \"/g/initrd\"\nram = 3\n".utf8))
        let draft = try XCTUnwrap(SystemConfiguration.draft(path: file))
        XCTAssertEqual(draft.vms.map(\.kernel), ["\(directory)/guest/Image"])
        XCTAssertEqual(draft.vms.map(\.initrd), ["/g/initrd"])
        XCTAssertNil(SystemConfiguration.draft(path: try writeFile("bad.toml", Array("[[vm]\n".utf8))))
    }

    // MARK: Finding the checkout

    private func makeCheckout(_ name: String) throws -> URL {
        for file in ["Platforms/common/runtime.c", "Platforms/native/linker.ld", "scripts/build-guest.sh"] {
            try writeFile("\(name)/\(file)")
        }
        return URL(fileURLWithPath: "\(directory)/\(name)")
    }

    func testTheCheckoutIsFoundUpwardsFromTheToolThroughSymlinks() throws {
        let checkout = try makeCheckout("vmm")
        let tool = try writeFile("vmm/.build/aarch64-unknown-linux-gnu/debug/vmm")
        XCTAssertEqual(try BuildEnvironment.locateCheckout(environment: [:], executable: tool).path, checkout.path)
        // `make install`: PREFIX/bin/vmm is a link to the checkout's tool.
        try FileManager.default.createDirectory(atPath: "\(directory)/prefix/bin", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(directory)/prefix/bin/vmm", withDestinationPath: tool)
        XCTAssertEqual(try BuildEnvironment.locateCheckout(environment: [:], executable: "\(directory)/prefix/bin/vmm").path,
                       checkout.path)
    }

    func testVMMHomeOverridesTheToolsOwnCheckoutAndMustBeOne() throws {
        let other = try makeCheckout("other")
        let tool = try writeFile("copy/bin/vmm")
        XCTAssertEqual(try BuildEnvironment.locateCheckout(environment: ["VMM_HOME": other.path], executable: tool).path, other.path)
        XCTAssertThrowsError(try BuildEnvironment.locateCheckout(environment: ["VMM_HOME": directory], executable: tool)) {
            XCTAssertEqual(($0 as? BuildError)?.message,
                           "VMM_HOME='\(directory)' is not a vmm checkout (expected Platforms/ and scripts/ of vmm in it)")
        }
        XCTAssertThrowsError(try BuildEnvironment.locateCheckout(environment: [:], executable: tool)) {
            XCTAssertEqual(($0 as? BuildError)?.message,
                           "cannot find the vmm checkout from '\(tool)': run `make install` in the checkout "
                           + "(it links PREFIX/bin/vmm to the tool it builds), or set VMM_HOME=/path/to/vmm")
        }
    }
}
