import XCTest
@testable import VMMCore

final class NetworkSegmentationTests: XCTestCase {
    private let tcpFIN: UInt8 = 0x01, tcpPSH: UInt8 = 0x08, tcpACK: UInt8 = 0x10, tcpCWR: UInt8 = 0x80

    // MARK: An independent checksum, word by word, as RFC 1071 §1 describes it

    /// The folded (not complemented) ones'-complement sum of big-endian 16-bit words; 0xFFFF over data
    /// that includes a correct checksum.
    private func referenceSum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i < bytes.count {
            let high = UInt32(bytes[i]), low = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            sum += high << 8 | low
            sum = (sum & 0xFFFF) + (sum >> 16)   // end-around carry every word: never overflows
            i += 2
        }
        return UInt16(sum)
    }

    private func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    private func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    private func read16(_ b: [UInt8], _ at: Int) -> Int { Int(b[at]) << 8 | Int(b[at + 1]) }
    private func read32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    // MARK: Frames

    private struct Layout { var l3: Int; var l4: Int; var payload: Int; var ipv6: Bool }

    private func payload(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) } }

    /// An Ethernet/IP/TCP frame as a CSUM+TSO sender hands it over: correct IP header (and IPv4 header
    /// checksum), TCP checksum field holding the folded pseudo-header sum (Linux's CHECKSUM_PARTIAL).
    private func tcpFrame(ipv6: Bool, vlan: Bool = false, payload data: [UInt8], flags: UInt8,
                          sequence: UInt32 = 0xFFFF_F000, id: Int = 0xFFFE, tcpOptions: Int = 12) -> ([UInt8], Layout) {
        var f: [UInt8] = [0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1]
        if vlan { f += [0x81, 0x00, 0x00, 0x2A] }
        f += ipv6 ? [0x86, 0xDD] : [0x08, 0x00]
        let l3 = f.count
        let tcpLength = 20 + tcpOptions + data.count
        let source: [UInt8], destination: [UInt8]
        if ipv6 {
            source = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
            destination = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xAB, 0xCD, 0, 2]
            f += [0x60, 0, 0, 0] + be16(tcpLength) + [6, 64] + source + destination
        } else {
            source = [10, 0, 0, 1]; destination = [10, 0, 0, 2]
            f += [0x45, 0] + be16(20 + tcpLength) + be16(id) + [0x40, 0, 64, 6, 0, 0] + source + destination
            let c = ~referenceSum(Array(f[l3...]))
            f[l3 + 10] = UInt8(c >> 8); f[l3 + 11] = UInt8(c & 0xFF)
        }
        let l4 = f.count
        f += be16(40000) + be16(443) + be32(sequence) + be32(0x1234_5678)
        f += [UInt8((20 + tcpOptions) / 4) << 4, flags] + be16(65535) + [0, 0, 0, 0]
        f += [UInt8](repeating: 1, count: tcpOptions)   // NOPs
        let pseudo = referenceSum(source + destination + [0, 6] + be16(tcpLength))
        f[l4 + 16] = UInt8(pseudo >> 8); f[l4 + 17] = UInt8(pseudo & 0xFF)
        let p = f.count
        return (f + data, Layout(l3: l3, l4: l4, payload: p, ipv6: ipv6))
    }

    /// Sum of a TCP segment with its pseudo-header: 0xFFFF when the checksum is right.
    private func tcpVerify(_ f: [UInt8], _ l: Layout) -> UInt16 {
        let tcp = Array(f[l.l4...])
        let addresses = l.ipv6 ? Array(f[(l.l3 + 8)..<(l.l3 + 40)]) : Array(f[(l.l3 + 12)..<(l.l3 + 20)])
        let length: [UInt8] = l.ipv6 ? be32(UInt32(tcp.count)) + [0, 0, 0, 6] : [0, 6] + be16(tcp.count)
        return referenceSum(addresses + length + tcp)
    }

    private func segments(_ f: [UInt8], gso: UInt8, mss: Int, scratch: Int = 2048) -> [[UInt8]]? {
        var out: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0xEE, count: scratch)
        let ok = f.withUnsafeBytes { frame in
            buffer.withUnsafeMutableBytes { s in
                NetworkOffload.segment(frame, gsoType: gso, segmentSize: mss, scratch: s) { out.append(Array($0)); return true }
            }
        }
        return ok ? out : nil
    }

    /// Checks every segment of `original` as the brief for tcp_gso_segment says it must be.
    private func checkSegments(_ out: [[UInt8]], of original: [UInt8], _ l: Layout, mss: Int, data: [UInt8],
                               file: StaticString = #filePath, line: UInt = #line) {
        let count = (data.count + mss - 1) / mss
        XCTAssertEqual(out.count, max(count, 1), file: file, line: line)
        var joined: [UInt8] = []
        for (i, s) in out.enumerated() {
            let size = min(mss, data.count - i * mss)
            XCTAssertEqual(s.count, l.payload + size, file: file, line: line)
            XCTAssertEqual(Array(s[..<l.l3]), Array(original[..<l.l3]), "Ethernet header", file: file, line: line)
            if l.ipv6 {
                XCTAssertEqual(read16(s, l.l3 + 4), s.count - l.l3 - 40, file: file, line: line)
                XCTAssertEqual(Array(s[(l.l3 + 6)..<(l.l3 + 40)]), Array(original[(l.l3 + 6)..<(l.l3 + 40)]), file: file, line: line)
            } else {
                XCTAssertEqual(read16(s, l.l3 + 2), s.count - l.l3, file: file, line: line)
                XCTAssertEqual(read16(s, l.l3 + 4), (read16(original, l.l3 + 4) + i) & 0xFFFF, "IP id", file: file, line: line)
                XCTAssertEqual(referenceSum(Array(s[l.l3..<l.l4])), 0xFFFF, "IPv4 header checksum", file: file, line: line)
            }
            XCTAssertEqual(read32(s, l.l4 + 4), read32(original, l.l4 + 4) &+ UInt32(i * mss), "seq", file: file, line: line)
            XCTAssertEqual(tcpVerify(s, l), 0xFFFF, "TCP checksum of segment \(i)", file: file, line: line)
            let flags = s[l.l4 + 13], originalFlags = original[l.l4 + 13]
            let last = i == out.count - 1
            XCTAssertEqual(flags & (tcpFIN | tcpPSH), last ? originalFlags & (tcpFIN | tcpPSH) : 0, file: file, line: line)
            XCTAssertEqual(flags & tcpCWR, i == 0 ? originalFlags & tcpCWR : 0, file: file, line: line)
            XCTAssertEqual(flags & tcpACK, originalFlags & tcpACK, file: file, line: line)
            // Ports, ack, window, options unchanged.
            XCTAssertEqual(Array(s[(l.l4 + 8)..<(l.l4 + 13)]), Array(original[(l.l4 + 8)..<(l.l4 + 13)]), file: file, line: line)
            XCTAssertEqual(Array(s[(l.l4 + 14)..<(l.l4 + 16)]), Array(original[(l.l4 + 14)..<(l.l4 + 16)]), file: file, line: line)
            XCTAssertEqual(Array(s[(l.l4 + 18)..<l.payload]), Array(original[(l.l4 + 18)..<l.payload]), file: file, line: line)
            joined += s[l.payload...]
        }
        XCTAssertEqual(joined, data, file: file, line: line)
    }

    // MARK: Checksums

    func testRFC1071Example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 2ddf0, folds to ddf2, checksum 220d.
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        let sum = bytes.withUnsafeBytes { NetworkOffload.onesComplementSum($0) }
        XCTAssertEqual(sum, 0x2DDF0)
        XCTAssertEqual(NetworkOffload.foldAndComplement(sum), 0x220D)
        XCTAssertEqual(referenceSum(bytes), 0xDDF2)
        XCTAssertEqual(bytes.withUnsafeBytes { NetworkOffload.onesComplementSum($0, initial: 0x220D) } % 0xFFFF, 0)
    }

    func testOddTrailingByteIsTheHighByteAndEmptyIsInitial() {
        XCTAssertEqual([UInt8]([0x01]).withUnsafeBytes { NetworkOffload.onesComplementSum($0) }, 0x0100)
        XCTAssertEqual([UInt8]([0x12, 0x34, 0x56]).withUnsafeBytes { NetworkOffload.onesComplementSum($0, initial: 1) }, 0x1234 + 0x5600 + 1)
        XCTAssertEqual([UInt8]().withUnsafeBytes { NetworkOffload.onesComplementSum($0, initial: 7) }, 7)
        XCTAssertEqual(NetworkOffload.foldAndComplement(0xFFFF), 0)
        XCTAssertEqual(NetworkOffload.foldAndComplement(0xFFFF_FFFF), 0)   // folds to FFFF
    }

    func testLargeBufferSumMatchesReference() {
        let bytes = payload(200_001)   // past where a 32-bit sum of words could overflow
        let sum = bytes.withUnsafeBytes { NetworkOffload.onesComplementSum($0, initial: 0xFFFF_FFFF) }
        // 0xFFFF_FFFF is zero in ones'-complement arithmetic; neither side can fold nonzero data to 0.
        XCTAssertEqual(~NetworkOffload.foldAndComplement(sum), referenceSum(bytes))
    }

    func testCompleteChecksumOfPartialFrameVerifies() {
        for ipv6 in [false, true] {
            let (original, l) = tcpFrame(ipv6: ipv6, vlan: !ipv6, payload: payload(333), flags: tcpACK | tcpPSH)
            var f = original
            let ok = f.withUnsafeMutableBytes { NetworkOffload.completeChecksum($0, start: l.l4, offset: 16) }
            XCTAssertTrue(ok)
            XCTAssertEqual(tcpVerify(f, l), 0xFFFF)
            XCTAssertEqual(Array(f[..<(l.l4 + 16)]), Array(original[..<(l.l4 + 16)]))
            XCTAssertEqual(Array(f[(l.l4 + 18)...]), Array(original[(l.l4 + 18)...]))
        }
    }

    func testCompleteChecksumStoresFFFFForZero() {
        var f: [UInt8] = [0xFF, 0xFF, 0x00, 0x00]   // sum FFFF: the checksum would be 0, UDP's "none"
        XCTAssertTrue(f.withUnsafeMutableBytes { NetworkOffload.completeChecksum($0, start: 0, offset: 2) })
        XCTAssertEqual(f, [0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertEqual(referenceSum(f), 0xFFFF)
    }

    func testCompleteChecksumRefusesOutOfBoundsAndLeavesFrameAlone() {
        let original = payload(40)
        for (start, offset) in [(39, 0), (40, 0), (41, 0), (0, 39), (38, 1), (-1, 4), (4, -1), (Int.max, 0),
                                (0, Int.max), (Int.max, Int.max), (Int.min, 2)] {
            var f = original
            XCTAssertFalse(f.withUnsafeMutableBytes { NetworkOffload.completeChecksum($0, start: start, offset: offset) },
                           "start \(start) offset \(offset)")
            XCTAssertEqual(f, original)
        }
        var f = original
        XCTAssertTrue(f.withUnsafeMutableBytes { NetworkOffload.completeChecksum($0, start: 38, offset: 0) })
        XCTAssertTrue(f.withUnsafeMutableBytes { NetworkOffload.completeChecksum($0, start: 0, offset: 38) })
        var empty: [UInt8] = []
        XCTAssertFalse(empty.withUnsafeMutableBytes { NetworkOffload.completeChecksum($0, start: 0, offset: 0) })
    }

    // MARK: Segmentation

    func testTCPv4TenThousandBytesAtMSS1448() {
        let data = payload(10_000)
        let (f, l) = tcpFrame(ipv6: false, payload: data, flags: tcpACK | tcpPSH | tcpFIN | tcpCWR)
        guard let out = segments(f, gso: NetworkOffload.gsoTCPv4, mss: 1448) else { return XCTFail("refused") }
        XCTAssertEqual(out.count, 7)
        XCTAssertEqual(out.map(\.count), [1448, 1448, 1448, 1448, 1448, 1448, 1312].map { $0 + 66 })
        checkSegments(out, of: f, l, mss: 1448, data: data)
    }

    func testTCPv6TenThousandBytesAtMSS1448() {
        let data = payload(10_000)
        let (f, l) = tcpFrame(ipv6: true, payload: data, flags: tcpACK | tcpPSH | tcpFIN | tcpCWR)
        guard let out = segments(f, gso: NetworkOffload.gsoTCPv6, mss: 1448) else { return XCTFail("refused") }
        XCTAssertEqual(out.count, 7)
        XCTAssertEqual(out.last?.count, 86 + 1312)
        checkSegments(out, of: f, l, mss: 1448, data: data)
    }

    func testVLANTaggedFramesKeepTheirTag() {
        for ipv6 in [false, true] {
            let data = payload(5000)
            let (f, l) = tcpFrame(ipv6: ipv6, vlan: true, payload: data, flags: tcpACK | tcpPSH, tcpOptions: 0)
            let gso = ipv6 ? NetworkOffload.gsoTCPv6 : NetworkOffload.gsoTCPv4
            guard let out = segments(f, gso: gso, mss: 1000) else { return XCTFail("refused") }
            XCTAssertEqual(out.count, 5)
            checkSegments(out, of: f, l, mss: 1000, data: data)
            for s in out { XCTAssertEqual(Array(s[12..<16]), [0x81, 0x00, 0x00, 0x2A]) }
        }
    }

    func testPayloadThatFitsOneSegmentIsEmittedOnceWithFlagsAndChecksum() {
        for (ipv6, size) in [(false, 1448), (true, 1), (false, 0), (true, 0)] {
            let data = payload(size)
            let (f, l) = tcpFrame(ipv6: ipv6, payload: data, flags: tcpACK | tcpPSH | tcpFIN | tcpCWR)
            guard let out = segments(f, gso: ipv6 ? 4 : 1, mss: 1448) else { return XCTFail("refused") }
            XCTAssertEqual(out.count, 1)
            XCTAssertEqual(out[0][l.l4 + 13], tcpACK | tcpPSH | tcpFIN | tcpCWR)
            checkSegments(out, of: f, l, mss: 1448, data: data)
        }
    }

    func testExactMultipleAndSmallSegments() {
        let data = payload(3000)
        let (f, l) = tcpFrame(ipv6: false, payload: data, flags: tcpACK | tcpFIN)
        checkSegments(segments(f, gso: 1, mss: 1000) ?? [], of: f, l, mss: 1000, data: data)
        checkSegments(segments(f, gso: 1, mss: 7) ?? [], of: f, l, mss: 7, data: data)   // id wraps FFFE → ...
        let big = payload(65_535 - 20 - 32)   // the largest IPv4 GSO frame
        let (g, m) = tcpFrame(ipv6: false, payload: big, flags: tcpACK)
        checkSegments(segments(g, gso: 1, mss: 9000, scratch: 9066) ?? [], of: g, m, mss: 9000, data: big)
    }

    func testEmitReturningFalseStops() {
        let (f, _) = tcpFrame(ipv6: false, payload: payload(10_000), flags: tcpACK)
        var calls = 0
        var scratch = [UInt8](repeating: 0, count: 1514)
        let ok = f.withUnsafeBytes { frame in
            scratch.withUnsafeMutableBytes { s in
                NetworkOffload.segment(frame, gsoType: 1, segmentSize: 1448, scratch: s) { _ in calls += 1; return calls < 3 }
            }
        }
        XCTAssertFalse(ok)
        XCTAssertEqual(calls, 3)
    }

    // MARK: Hostile frames

    private func refused(_ f: [UInt8], gso: UInt8, mss: Int = 1448, scratch: Int = 2048,
                         file: StaticString = #filePath, line: UInt = #line) {
        var emitted = 0
        var buffer = [UInt8](repeating: 0, count: scratch)
        let ok = f.withUnsafeBytes { frame in
            buffer.withUnsafeMutableBytes { s in
                NetworkOffload.segment(frame, gsoType: gso, segmentSize: mss, scratch: s) { _ in emitted += 1; return true }
            }
        }
        XCTAssertFalse(ok, file: file, line: line)
        XCTAssertEqual(emitted, 0, file: file, line: line)
    }

    func testTruncatedAtEveryLengthUpToTheHeadersIsRefused() {
        for ipv6 in [false, true] {
            for vlan in [false, true] {
                let (f, l) = tcpFrame(ipv6: ipv6, vlan: vlan, payload: payload(100), flags: tcpACK)
                for n in 0..<l.payload {
                    var t = Array(f[..<n])
                    refused(t, gso: ipv6 ? 4 : 1)
                    // Again with the IP length made to agree, so the header checks are what refuse it.
                    let lengthAt = ipv6 ? l.l3 + 4 : l.l3 + 2
                    if n >= lengthAt + 2 {
                        let ipLength = ipv6 ? n - l.l3 - 40 : n - l.l3
                        t[lengthAt] = UInt8(truncatingIfNeeded: ipLength >> 8); t[lengthAt + 1] = UInt8(truncatingIfNeeded: ipLength)
                        refused(t, gso: ipv6 ? 4 : 1)
                    }
                }
            }
        }
    }

    func testWrongGSOTypeForTheFrameIsRefused() {
        let (v4, _) = tcpFrame(ipv6: false, payload: payload(3000), flags: tcpACK)
        let (v6, _) = tcpFrame(ipv6: true, payload: payload(3000), flags: tcpACK)
        refused(v4, gso: NetworkOffload.gsoTCPv6)
        refused(v6, gso: NetworkOffload.gsoTCPv4)
        for gso: UInt8 in [0, 3, 5, 0x81, 0x84, 0xFF] { refused(v4, gso: gso); refused(v6, gso: gso) }
        var badVersion = v4; badVersion[14] = 0x65; refused(badVersion, gso: 1)
        var badVersion6 = v6; badVersion6[14] = 0x40; refused(badVersion6, gso: 4)
        var arp = v4; arp[12] = 0x08; arp[13] = 0x06; refused(arp, gso: 1)
        var qinq = v4; qinq[12] = 0x88; qinq[13] = 0xA8; refused(qinq, gso: 1)
        var udp = v4; udp[14 + 9] = 17; refused(udp, gso: 1)
        var hopByHop = v6; hopByHop[14 + 6] = 0; refused(hopByHop, gso: 4)   // hop-by-hop options first
    }

    func testIPLengthsThatDisagreeWithTheFrameAreRefused() {
        let (v4, l) = tcpFrame(ipv6: false, payload: payload(3000), flags: tcpACK)
        let total = read16(v4, l.l3 + 2)
        for wrong in [total + 1, total - 1, 0, 20, 0xFFFF] {
            var f = v4; f[l.l3 + 2] = UInt8(wrong >> 8); f[l.l3 + 3] = UInt8(wrong & 0xFF); refused(f, gso: 1)
        }
        refused(v4 + [0, 0, 0, 0], gso: 1)   // Ethernet padding after the IP packet
        let (v6, m) = tcpFrame(ipv6: true, payload: payload(3000), flags: tcpACK)
        let length = read16(v6, m.l3 + 4)
        for wrong in [length + 1, length - 1, 0, 0xFFFF] {
            var f = v6; f[m.l3 + 4] = UInt8(wrong >> 8); f[m.l3 + 5] = UInt8(wrong & 0xFF); refused(f, gso: 4)
        }
        refused(v6 + [0], gso: 4)
        var fragment = v4; fragment[l.l3 + 6] = 0x20; refused(fragment, gso: 1)   // MF
        var tooLong = v4 + payload(70_000)   // more than any 16-bit length can describe
        tooLong[l.l3 + 2] = 0xFF; tooLong[l.l3 + 3] = 0xFF; refused(tooLong, gso: 1)
    }

    func testBadHeaderLengthsAreRefused() {
        let (v4, l) = tcpFrame(ipv6: false, payload: payload(3000), flags: tcpACK)
        for ihl: UInt8 in [0, 1, 4] { var f = v4; f[l.l3] = 0x40 | ihl; refused(f, gso: 1) }
        var hugeIHL = tcpFrame(ipv6: false, payload: [], flags: tcpACK, tcpOptions: 0).0
        hugeIHL[14] = 0x4F; refused(hugeIHL, gso: 1)   // 60-byte IP header in a 54-byte frame
        for offset: UInt8 in [0, 1, 4] { var f = v4; f[l.l4 + 12] = offset << 4; refused(f, gso: 1) }
        var pastEnd = tcpFrame(ipv6: true, payload: payload(10), flags: tcpACK, tcpOptions: 0).0
        pastEnd[14 + 40 + 12] = 0xF0; refused(pastEnd, gso: 4)   // 60-byte TCP header, 30 bytes there
    }

    func testBadSegmentSizeOrScratchIsRefused() {
        let (f, l) = tcpFrame(ipv6: false, payload: payload(3000), flags: tcpACK)
        for mss in [0, -1, Int.min] { refused(f, gso: 1, mss: mss) }
        refused(f, gso: 1, mss: 1448, scratch: l.payload + 1447)
        refused(f, gso: 1, mss: 1448, scratch: 0)
        XCTAssertEqual(segments(f, gso: 1, mss: 1448, scratch: l.payload + 1448)?.count, 3)
        // A huge segment size is one segment as large as the payload, which needs scratch for it.
        XCTAssertEqual(segments(f, gso: 1, mss: Int.max, scratch: f.count)?.count, 1)
        refused(f, gso: 1, mss: Int.max, scratch: f.count - 1)
    }

    func testRandomlyCorruptedFramesNeverEscapeTheirBuffers() {
        var rng = SystemRandomNumberGenerator()
        let (v4, _) = tcpFrame(ipv6: false, vlan: true, payload: payload(4000), flags: tcpACK)
        let (v6, _) = tcpFrame(ipv6: true, payload: payload(4000), flags: tcpACK)
        for _ in 0..<3000 {
            var f = Bool.random(using: &rng) ? v4 : v6
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                f[Int.random(in: 0..<min(f.count, 90), using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { f = Array(f.prefix(Int.random(in: 0...f.count, using: &rng))) }
            let scratch = Int.random(in: 0...1600, using: &rng)
            var buffer = [UInt8](repeating: 0, count: scratch)
            _ = f.withUnsafeBytes { frame in
                buffer.withUnsafeMutableBytes { s in
                    NetworkOffload.segment(frame, gsoType: UInt8.random(in: 0...5, using: &rng), segmentSize: 1448, scratch: s) {
                        XCTAssertLessThanOrEqual($0.count, scratch); return true
                    }
                }
            }
            _ = f.withUnsafeMutableBytes {
                NetworkOffload.completeChecksum($0, start: Int.random(in: -2...120, using: &rng), offset: Int.random(in: -2...40, using: &rng))
            }
        }
    }
}
