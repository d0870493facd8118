// Checksum completion and TCP segmentation for virtio-net offload frames (virtio 1.2 §5.1.6): what a
// device owes a receiver that did not negotiate the offload the sender used. A sender with
// VIRTIO_NET_F_CSUM hands over a frame whose TCP/UDP checksum field holds only the pseudo-header sum
// (VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start/csum_offset); a receiver without VIRTIO_NET_F_GUEST_CSUM gets
// it completed (`completeChecksum`, Linux's skb_checksum_help). A sender with HOST_TSO4/HOST_TSO6 hands
// over one TCP frame of up to 64 KiB (gso_type, gso_size); a receiver without GUEST_TSO4/GUEST_TSO6 gets
// it cut into MSS-sized frames with complete checksums (`segment`, Linux's skb_segment +
// tcp_gso_segment). Checksums are RFC 1071; pseudo-headers are RFC 793 §3.1 and RFC 8200 §8.1.
//
// Every byte here, and every length and offset the virtio header gave, is guest-controlled and hostile:
// each offset is checked against the buffer before it is read or written, and anything malformed is
// refused (false) rather than repaired. Nothing allocates; segments are built in the caller's scratch.

public enum NetworkOffload {
    /// gso_type values (§5.1.6). The caller strips VIRTIO_NET_HDR_GSO_ECN (0x80) before passing one.
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoTCPv6: UInt8 = 4

    /// RFC 1071 ones'-complement sum of `bytes` added to `initial` (not folded, not complemented); an odd
    /// trailing byte is padded with zero as the high byte of a big-endian 16-bit word.
    public static func onesComplementSum(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt32 {
        // 64-bit accumulator: cannot overflow for any buffer below 2^47 bytes. Folding it to 32 bits
        // with end-around carry keeps the value congruent (mod 0xFFFF), which is all a caller can use.
        var sum = UInt64(initial)
        let pairs = bytes.count & ~1
        var i = 0
        while i < pairs {
            sum &+= UInt64(bytes[i]) << 8 | UInt64(bytes[i + 1])
            i += 2
        }
        if pairs < bytes.count { sum &+= UInt64(bytes[pairs]) << 8 }
        while sum > 0xFFFF_FFFF { sum = (sum & 0xFFFF_FFFF) + (sum >> 32) }
        return UInt32(sum)
    }

    /// Folds a sum to 16 bits and complements it: the value to store (big-endian) in a checksum field.
    public static func foldAndComplement(_ sum: UInt32) -> UInt16 {
        var folded = sum
        while folded > 0xFFFF { folded = (folded & 0xFFFF) + (folded >> 16) }
        return ~UInt16(folded)
    }

    /// VIRTIO_NET_HDR_F_NEEDS_CSUM completed in software: the ones'-complement sum of frame[start...]
    /// (the field at start+offset holds the pseudo-header sum the sender put there, as Linux does for
    /// CHECKSUM_PARTIAL), folded and complemented, stored big-endian at start+offset. False, frame
    /// untouched, when start or offset is negative or start+offset+2 > frame.count.
    ///
    /// A result of 0 is stored as 0xFFFF, as skb_checksum_help does (`csum_fold(csum) ?: CSUM_MANGLED_0`):
    /// the device cannot tell whether the field is UDP's, where 0 means "no checksum" (RFC 768), and
    /// 0xFFFF is the same ones'-complement value, so TCP receivers accept it too.
    public static func completeChecksum(_ frame: UnsafeMutableRawBufferPointer, start: Int, offset: Int) -> Bool {
        // Checked in this order so no sum can overflow: start <= count, then offset <= count - start - 2.
        guard start >= 0, offset >= 0, start <= frame.count, offset <= frame.count - start - 2 else { return false }
        let sum = onesComplementSum(UnsafeRawBufferPointer(rebasing: frame[start...]))
        let checksum = foldAndComplement(sum)
        store16(frame, at: start + offset, checksum == 0 ? 0xFFFF : checksum)
        return true
    }

    /// Cuts `frame` (Ethernet, no virtio header: destination, source, at most one 802.1Q tag, EtherType
    /// 0x0800 or 0x86DD, IP header, TCP header, payload) into frames of at most `segmentSize` payload
    /// bytes, each built in `scratch` (which must not overlap `frame`) and handed to `emit`, valid only
    /// during that call. `emit` returning false stops early and makes this return false.
    ///
    /// Each segment keeps the Ethernet, IP and TCP headers (options included) with: IPv4 total length,
    /// identification (+1 per segment) and header checksum, or IPv6 payload length; the TCP sequence
    /// number advanced by the payload before it; FIN and PSH only on the last, CWR only on the first
    /// (tcp_gso_segment); the TCP checksum computed whole (the sender's field is ignored). A payload
    /// that fits one segment is emitted once, flags untouched. False for anything malformed: see `parse`;
    /// segmentSize < 1; scratch smaller than headers + min(segmentSize, payload).
    public static func segment(_ frame: UnsafeRawBufferPointer, gsoType: UInt8, segmentSize: Int,
                               scratch: UnsafeMutableRawBufferPointer,
                               emit: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        guard segmentSize > 0, let layout = parse(frame, gsoType: gsoType) else { return false }
        let headers = layout.payloadOffset
        let payloadLength = frame.count - headers
        // min() first: segmentSize is caller-supplied and may be huge; headers + payload <= frame.count.
        guard headers + min(segmentSize, payloadLength) <= scratch.count else { return false }

        let l3 = layout.networkOffset, l4 = layout.transportOffset
        let tcpHeaderLength = headers - l4
        let firstID = layout.isIPv4 ? load16(frame, at: l3 + 4) : 0
        let firstSequence = load32(frame, at: l4 + 4)
        let flags = frame[l4 + 13]
        // Source and destination addresses: the constant part of every segment's pseudo-header.
        let addresses = layout.isIPv4
            ? UnsafeRawBufferPointer(rebasing: frame[(l3 + 12)..<(l3 + 20)])
            : UnsafeRawBufferPointer(rebasing: frame[(l3 + 8)..<(l3 + 40)])
        let addressSum = onesComplementSum(addresses, initial: UInt32(tcpProtocol))

        UnsafeMutableRawBufferPointer(rebasing: scratch[0..<headers])
            .copyMemory(from: UnsafeRawBufferPointer(rebasing: frame[0..<headers]))
        var done = 0
        var index = 0
        repeat {
            let length = min(segmentSize, payloadLength - done)
            let end = headers + length
            let isLast = done + length == payloadLength
            UnsafeMutableRawBufferPointer(rebasing: scratch[headers..<end])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: frame[(headers + done)..<(headers + done + length)]))

            let tcpLength = tcpHeaderLength + length   // at most the IP length parse checked: fits 16 bits
            if layout.isIPv4 {
                store16(scratch, at: l3 + 2, UInt16(l4 - l3 + tcpLength))
                store16(scratch, at: l3 + 4, firstID &+ UInt16(truncatingIfNeeded: index))
                store16(scratch, at: l3 + 10, 0)
                let ipHeader = UnsafeRawBufferPointer(rebasing: scratch[l3..<l4])
                store16(scratch, at: l3 + 10, foldAndComplement(onesComplementSum(ipHeader)))
            } else {
                store16(scratch, at: l3 + 4, UInt16(tcpLength))
            }
            store32(scratch, at: l4 + 4, firstSequence &+ UInt32(truncatingIfNeeded: done))
            var segmentFlags = flags
            if !isLast { segmentFlags &= ~(tcpFIN | tcpPSH) }
            if index != 0 { segmentFlags &= ~tcpCWR }
            scratch[l4 + 13] = segmentFlags
            store16(scratch, at: l4 + 16, 0)
            // Pseudo-header: addresses, protocol 6 and the TCP length (RFC 793's 16-bit one; RFC 8200's
            // 32-bit upper-layer length sums the same since it is below 65536).
            let tcpSum = onesComplementSum(UnsafeRawBufferPointer(rebasing: scratch[l4..<end]),
                                           initial: addressSum &+ UInt32(tcpLength))
            store16(scratch, at: l4 + 16, foldAndComplement(tcpSum))

            guard emit(UnsafeRawBufferPointer(rebasing: scratch[0..<end])) else { return false }
            done += length
            index += 1
        } while done < payloadLength
        return true
    }

    // MARK: Parsing

    /// Where the headers of a TCP frame start and end; every offset is inside the frame it came from.
    struct TCPFrameLayout {
        var isIPv4: Bool
        var networkOffset: Int      // first byte of the IP header
        var transportOffset: Int    // first byte of the TCP header
        var payloadOffset: Int      // first byte after the TCP header and its options
    }

    static let etherTypeIPv4: UInt16 = 0x0800
    static let etherTypeIPv6: UInt16 = 0x86DD
    static let etherTypeVLAN: UInt16 = 0x8100
    static let tcpProtocol: UInt8 = 6
    static let tcpFIN: UInt8 = 0x01
    static let tcpPSH: UInt8 = 0x08
    static let tcpCWR: UInt8 = 0x80

    /// Checks the headers of a GSO frame against `gsoType`; nil when any is short, inconsistent or not
    /// plain TCP: wrong EtherType or IP version for gsoType, IPv4 IHL < 5 or a fragment, IPv6 extension
    /// headers (next header must be 6), TCP data offset < 5, or an IP length other than exactly the
    /// bytes after the IP header start (a GSO frame has no Ethernet padding; lengths are 16-bit, so the
    /// IP packet is at most 65535 bytes, or 40 + 65535 for IPv6 without jumbograms).
    static func parse(_ frame: UnsafeRawBufferPointer, gsoType: UInt8) -> TCPFrameLayout? {
        guard frame.count >= 14 else { return nil }
        var l3 = 14
        var etherType = load16(frame, at: 12)
        if etherType == etherTypeVLAN {
            guard frame.count >= 18 else { return nil }
            etherType = load16(frame, at: 16)
            l3 = 18
        }
        let l4: Int
        switch gsoType {
        case gsoTCPv4:
            guard etherType == etherTypeIPv4, frame.count >= l3 + 20, frame[l3] >> 4 == 4 else { return nil }
            let headerLength = Int(frame[l3] & 0x0F) * 4
            guard headerLength >= 20, frame.count >= l3 + headerLength,
                  Int(load16(frame, at: l3 + 2)) == frame.count - l3,
                  load16(frame, at: l3 + 6) & 0x3FFF == 0,   // MF or a fragment offset: not one whole packet
                  frame[l3 + 9] == tcpProtocol else { return nil }
            l4 = l3 + headerLength
        case gsoTCPv6:
            guard etherType == etherTypeIPv6, frame.count >= l3 + 40, frame[l3] >> 4 == 6,
                  Int(load16(frame, at: l3 + 4)) == frame.count - l3 - 40,
                  frame[l3 + 6] == tcpProtocol else { return nil }
            l4 = l3 + 40
        default:
            return nil
        }
        guard frame.count >= l4 + 20 else { return nil }
        let tcpHeaderLength = Int(frame[l4 + 12] >> 4) * 4
        guard tcpHeaderLength >= 20, frame.count >= l4 + tcpHeaderLength else { return nil }
        return TCPFrameLayout(isIPv4: gsoType == gsoTCPv4, networkOffset: l3, transportOffset: l4,
                              payloadOffset: l4 + tcpHeaderLength)
    }

    // MARK: Big-endian access (callers have checked the offsets; the subscripts check again)

    static func load16(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    static func load32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
        UInt32(load16(bytes, at: offset)) << 16 | UInt32(load16(bytes, at: offset + 2))
    }

    static func store16(_ bytes: UnsafeMutableRawBufferPointer, at offset: Int, _ value: UInt16) {
        bytes[offset] = UInt8(value >> 8)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    static func store32(_ bytes: UnsafeMutableRawBufferPointer, at offset: Int, _ value: UInt32) {
        store16(bytes, at: offset, UInt16(value >> 16))
        store16(bytes, at: offset + 2, UInt16(truncatingIfNeeded: value))
    }
}
