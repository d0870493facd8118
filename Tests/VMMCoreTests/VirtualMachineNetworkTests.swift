// Packets from one of the VMM's networks reaching a guest's virtio-net card through
// VirtualMachine.networkReceived: offloads the guest's driver negotiated pass as they are, the others
// are done in software first (a partial checksum completed, a 64 KiB TCP frame cut into segments), so
// that a guest without offloads can talk to one that uses them. The driver side is played through
// the VM's own exit path, as in VirtualMachineVirtioTests.
import XCTest
@testable import VMMCore

final class VirtualMachineNetworkTests: XCTestCase, PlaysAVirtioDriver {
    let base: UInt64 = 0x0a00_0000
    let mac: [UInt8] = [0x52, 0x54, 0x00, 0x00, 0x01, 0x0b]
    var ram: TestGuestRAM!
    var vm: VirtualMachine!
    var platform = RAMDiskPlatform()
    var registers = RegisterFile()
    var receive: DriverSideQueue!

    override func setUp() {
        ram = TestGuestRAM()
        vm = VirtualMachine(memory: ram.memory, vcpuCount: 1, listRegisterCount: 4, routes: [],
                            devices: [.qemuVirtSlot(0, .network(mac: mac, offloads: true))])
        platform = RAMDiskPlatform()
        vm.vgic.distributorWrite(vcpu: 0, offset: 0, width: 4, value: 1, sink: &platform)
        vm.vgic.distributorWrite(vcpu: 0, offset: 0x104, width: 4, value: 1 << 16, sink: &platform)
        receive = DriverSideQueue(ram: ram, size: 64)
    }

    /// Posts `count` receive buffers of `size` bytes (0xEE), each a chain of one.
    @discardableResult
    func postBuffers(_ count: Int, size: Int = 12 + 1514) -> [VirtqueueBuffer] {
        (0..<count).map { _ in
            let address = ram.allocate(size)
            ram.write([UInt8](repeating: 0xEE, count: size), at: address)
            let buffer = VirtqueueBuffer.writable(address, UInt32(size))
            receive.publish(receive.addChain([buffer]))
            return buffer
        }
    }

    /// What the device wrote into the used buffers so far, in order.
    func received(_ buffers: [VirtqueueBuffer]) -> [[UInt8]] {
        (0..<Int(receive.usedIndex)).map { k in
            let used = receive.usedElement(UInt16(k))
            return ram.read(at: buffers[Int(used.id)].address, count: Int(used.length))
        }
    }

    func deliver(_ packet: [UInt8]) -> Bool {
        packet.withUnsafeBytes { vm.networkReceived(device: 0, frame: $0, platform: &platform) }
    }

    func testTCPFrameOf64KiBIsCutIntoSegmentsForAGuestWithoutOffloads() {
        initialize(receive, deviceID: 1, features: 1 << 5)
        let buffers = postBuffers(8)
        let payload = (0..<5_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let frame = TCPFrame(payload: payload, sequence: 1000)
        XCTAssertTrue(deliver(frame.packet(gsoSize: 1448)))
        let segments = received(buffers)
        XCTAssertEqual(segments.count, 4)                             // 1448 + 1448 + 1448 + 656
        var joined: [UInt8] = []
        for (k, segment) in segments.enumerated() {
            XCTAssertEqual(Array(segment[0..<12]), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "plain header")
            let ethernet = Array(segment[12...])
            XCTAssertTrue(TCPFrame.checksumsVerify(ethernet), "segment \(k)")
            XCTAssertEqual(TCPFrame.sequence(of: ethernet), 1000 + UInt32(k * 1448))
            joined += ethernet[54...]
        }
        XCTAssertEqual(joined, payload)
        XCTAssertEqual(platform.injected.first, 48)
    }

    func testPartialChecksumIsCompletedForAGuestWithoutGuestChecksum() {
        initialize(receive, deviceID: 1, features: 1 << 5)
        let buffers = postBuffers(1)
        let frame = TCPFrame(payload: Array(repeating: 0x5A, count: 300), sequence: 7)
        XCTAssertTrue(deliver(frame.packet(gsoSize: nil)))
        let got = received(buffers)
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got[0][0], 0, "no NEEDS_CSUM for a driver that did not negotiate it")
        XCTAssertTrue(TCPFrame.checksumsVerify(Array(got[0][12...])))
    }

    func testGuestWithOffloadsGetsTheFrameWholeWithItsHeader() {
        initialize(receive, deviceID: 1, features: 1 << 5 | VirtioNet.Feature.guestChecksum | VirtioNet.Feature.guestTSO4)
        let buffers = postBuffers(1, size: 70_000)
        let frame = TCPFrame(payload: (0..<60_000).map { UInt8(truncatingIfNeeded: $0) }, sequence: 1)
        let packet = frame.packet(gsoSize: 1448)
        XCTAssertTrue(deliver(packet))
        let got = received(buffers)
        XCTAssertEqual(got.count, 1)
        var expected = packet
        expected[10] = 1                                              // num_buffers, the device's to set
        XCTAssertEqual(got[0], expected)
    }

    func testSegmentsStopWhereTheBuffersEnd() {
        initialize(receive, deviceID: 1, features: 1 << 5)
        let frame = TCPFrame(payload: Array(repeating: 1, count: 5_000), sequence: 1)
        XCTAssertFalse(deliver(frame.packet(gsoSize: 1448)), "no buffer at all: the caller keeps the packet")
        let buffers = postBuffers(2)
        XCTAssertTrue(deliver(frame.packet(gsoSize: 1448)), "taken: what did not fit is lost, as on a wire")
        XCTAssertEqual(received(buffers).count, 2)
    }

    func testMalformedGSOFrameIsDroppedWithoutTouchingTheGuest() {
        initialize(receive, deviceID: 1, features: 1 << 5)
        let buffers = postBuffers(4)
        var packet = TCPFrame(payload: Array(repeating: 1, count: 3_000), sequence: 1).packet(gsoSize: 1448)
        packet[12 + 14 + 2] = 0xFF                                    // IPv4 total length past the frame
        XCTAssertTrue(deliver(packet), "taken, and dropped")
        XCTAssertEqual(received(buffers).count, 0)
    }
}

/// An Ethernet + IPv4 + TCP frame (no options) as Linux hands it to virtio-net with checksum offload:
/// the TCP checksum field holds the pseudo-header sum, to be completed over the segment.
struct TCPFrame {
    let payload: [UInt8]
    let sequence: UInt32

    static let source: [UInt8] = [10, 0, 9, 1]
    static let destination: [UInt8] = [10, 0, 9, 2]

    var ethernet: [UInt8] {
        let totalLength = 20 + 20 + payload.count
        var ip: [UInt8] = [0x45, 0, UInt8(totalLength >> 8 & 0xFF), UInt8(totalLength & 0xFF), 0x12, 0x34, 0x40, 0,
                           64, 6, 0, 0] + Self.source + Self.destination
        let ipSum = ~Self.fold(Self.sum(ip))
        ip[10] = UInt8(ipSum >> 8); ip[11] = UInt8(ipSum & 0xFF)
        let s = sequence
        var tcp: [UInt8] = [0x9C, 0x40, 0x13, 0x89, UInt8(s >> 24), UInt8(s >> 16 & 0xFF), UInt8(s >> 8 & 0xFF),
                            UInt8(s & 0xFF), 0, 0, 0, 1, 0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]
        let pseudo = Self.fold(Self.sum(Self.source + Self.destination + [0, 6, UInt8((20 + payload.count) >> 8),
                                                                           UInt8((20 + payload.count) & 0xFF)]))
        tcp[16] = UInt8(pseudo >> 8); tcp[17] = UInt8(pseudo & 0xFF)
        return [0x52, 0x54, 0, 0, 1, 0x0b, 0x52, 0x54, 0, 0, 1, 0x0a, 0x08, 0x00] + ip + tcp + payload
    }

    /// The virtio_net_hdr (NEEDS_CSUM at 34 + 16; TCPv4 GSO when `gsoSize` is given) and the frame.
    func packet(gsoSize: UInt16?) -> [UInt8] {
        let size = gsoSize ?? 0
        return [1, gsoSize == nil ? 0 : 1, 54, 0, UInt8(size & 0xFF), UInt8(size >> 8), 34, 0, 16, 0, 0, 0] + ethernet
    }

    static func sum(_ bytes: [UInt8]) -> UInt32 {
        var total: UInt32 = 0
        var i = 0
        while i < bytes.count {
            total += UInt32(bytes[i]) << 8 | (i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0)
            i += 2
        }
        return total
    }

    static func fold(_ value: UInt32) -> UInt16 {
        var v = value
        while v > 0xFFFF { v = (v & 0xFFFF) + (v >> 16) }
        return UInt16(v)
    }

    static func sequence(of frame: [UInt8]) -> UInt32 {
        frame[38..<42].reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// The IPv4 header and the TCP checksum (over the pseudo-header and the segment) both verify.
    static func checksumsVerify(_ frame: [UInt8]) -> Bool {
        guard frame.count >= 54 else { return false }
        let ip = Array(frame[14..<34])
        let tcpLength = (Int(frame[16]) << 8 | Int(frame[17])) - 20
        guard tcpLength >= 20, 34 + tcpLength == frame.count else { return false }
        let pseudo = Array(frame[26..<34]) + [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xFF)]
        return fold(sum(ip)) == 0xFFFF && fold(sum(pseudo + Array(frame[34...]))) == 0xFFFF
    }
}
