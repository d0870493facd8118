// The virtual Ethernet switch that joins the virtio-net devices of several VMs (one `network` of the
// system file): it checks each packet a VM transmits, learns the sender's address, and copies the packet
// into the bounded queue of every port it goes to; each receiving VM later takes packets from its own
// port's queue and writes them into its receive buffers.
//
// A packet is what a virtio-net transmit chain holds: the 12-byte virtio_net_hdr (VirtioNetHeader),
// then a plain Ethernet frame (IEEE 802.3 §3.1.1 without preamble and FCS: destination, source,
// EtherType or 802.1Q tag, payload). The header travels with the frame so that offloads pass between
// VMs as between a guest and a host NIC: a frame whose TCP checksum is left to do (NEEDS_CSUM), or a
// TCP frame of up to 64 KiB to be cut into MSS-sized segments (GSO TCPv4/TCPv6). Whether the receiver
// takes those as they are is its device model's business (VirtioNet.accepts); the switch checks that
// the header describes the frame it came with.
//
// This file owns every byte a guest transmits from the moment `send` is called: the packet is checked
// (port index, length, source address, header) on the caller's private copy and copied into storage
// allocated at init, so no queue ever points into a sender's memory and a hostile VM can make the
// switch hold at most `queueCapacity` packets and `queueBytes` bytes per port, and fill at most
// `addressTableCapacity` addresses. The switch is VLAN-unaware: a tag passes through untouched and one
// table serves all VLANs. It holds no lock: whoever shares it between CPUs serialises `send` and
// `receive`.

/// Frames the switch refused, by reason. Counters wrap rather than trap.
public struct SwitchDrops: Equatable {
    /// Shorter than the 14-byte Ethernet header (a zero-length frame included).
    public var runt: UInt64 = 0
    /// Longer than 1514 bytes, or 1518 with an 802.1Q tag.
    public var oversized: UInt64 = 0
    /// Source address multicast/broadcast (I/G bit set) or all zeros: no station sends from it.
    public var badSource: UInt64 = 0
    /// Sent from a port the switch does not have.
    public var badPort: UInt64 = 0
    /// One per copy that found its destination's queue full (the other copies still go out).
    public var queueFull: UInt64 = 0
    /// A virtio_net_hdr that does not describe its frame: a checksum range past the frame, a GSO type
    /// other than TCPv4/TCPv6 (or without NEEDS_CSUM, or with a segment size of 0), shorter than the
    /// header.
    public var badHeader: UInt64 = 0
    /// Unicast to an address learned at the sender's own port: a switch never sends a frame back.
    public var hairpin: UInt64 = 0

    public init() {}
}

/// A learning Ethernet switch with fixed ports, each with a bounded FIFO of packets waiting for it.
public struct VirtualSwitch {
    /// Ports are bits of `send`'s result.
    public static let maximumPorts = 16
    public static let maximumQueueCapacity = 1024
    /// Destination, source, EtherType (IEEE 802.3 §3.1.1). Shorter frames are runts. The 60-byte
    /// Ethernet minimum is not enforced: virtio has no wire to pad for, and Linux virtio-net sends an
    /// ARP frame of 42 bytes as it is.
    public static let headerSize = 14
    /// A 1500-byte payload (the MTU: we offer no VIRTIO_NET_F_MTU, so guests use 1500) plus the header.
    public static let maximumFrameSize = 1514
    /// The same with an 802.1Q tag (IEEE 802.1Q §9.3: TPID 0x8100, then TCI) between source and
    /// EtherType, as a guest's VLAN interface of MTU 1500 sends it.
    public static let maximumTaggedFrameSize = 1518
    static let vlanTagProtocol: UInt16 = 0x8100
    /// A GSO frame: Ethernet header with a tag and an IP packet of at most 65,535 bytes (IPv4's total
    /// length; Linux's GSO limit of 64 KiB keeps IPv6 under it too).
    public static let maximumSegmentationFrameSize = 18 + 65_535
    /// The largest packet `send` takes: the virtio_net_hdr and the largest frame.
    public static let maximumPacketSize = VirtioNetHeader.size + maximumSegmentationFrameSize
    /// Addresses remembered at once; see `learn` for which one a new address replaces.
    public static let addressTableCapacity = 64

    public let portCount: Int
    public let queueCapacity: Int
    /// Bytes of packets a port holds at most (each packet stored whole, in a ring of this size).
    public let queueBytes: Int
    public private(set) var dropped = SwitchDrops()

    /// Port p's ring is storage[p * queueBytes ..< (p + 1) * queueBytes]; its entry e (of
    /// queueCapacity) is the packet at offsets[p * queueCapacity + e] within the ring, lengths[...] long.
    var storage: [UInt8]
    var offsets: [Int]
    var lengths: [Int]
    /// Per port: the entry of its oldest packet, and how many packets wait.
    var heads: [Int]
    var counts: [Int]

    /// One learned address (48 bits, first byte most significant) and where it was last seen.
    struct LearnedAddress {
        var address: UInt64
        var port: Int
        var lastSeen: UInt64
    }
    /// At most `addressTableCapacity` entries, reserved at init so learning never allocates.
    var table: [LearnedAddress]
    var entriesPerPort: [Int]
    /// Advances once per learned frame; 2^64 frames do not happen.
    var clock: UInt64 = 0

    /// `portCount` 1...16, `queueCapacity` 1...1024 packets and `queueBytes` (at least one largest
    /// packet, at most 16 MiB) per port; the platform chooses them.
    public init(portCount: Int, queueCapacity: Int = 256, queueBytes: Int = 1 << 20) {
        precondition(portCount >= 1 && portCount <= Self.maximumPorts, "virtual switch: port count out of range")
        precondition(queueCapacity >= 1 && queueCapacity <= Self.maximumQueueCapacity,
                     "virtual switch: queue capacity out of range")
        precondition(queueBytes >= Self.maximumPacketSize && queueBytes <= 16 << 20,
                     "virtual switch: queue size out of range")
        self.portCount = portCount
        self.queueCapacity = queueCapacity
        self.queueBytes = queueBytes
        // Cannot overflow: at most 16 × 16 MiB.
        storage = [UInt8](repeating: 0, count: portCount * queueBytes)
        offsets = [Int](repeating: 0, count: portCount * queueCapacity)
        lengths = [Int](repeating: 0, count: portCount * queueCapacity)
        heads = [Int](repeating: 0, count: portCount)
        counts = [Int](repeating: 0, count: portCount)
        table = []
        table.reserveCapacity(Self.addressTableCapacity)
        entriesPerPort = [Int](repeating: 0, count: portCount)
    }

    // MARK: Sending

    /// Port `port` sent `packet` (virtio_net_hdr, then the frame); returns the ports that got a copy
    /// (bit n = port n), 0 if dropped.
    ///
    /// Known unicast goes to the port its destination was last seen at; broadcast, multicast and
    /// unknown unicast go to every other port. The header is made the device's to fill in (num_buffers
    /// 0, only NEEDS_CSUM kept of the flags) in `packet` itself, which must be the caller's private copy
    /// of what the guest sent; the packet is copied before `send` returns.
    public mutating func send(from port: Int, packet: UnsafeMutableRawBufferPointer) -> UInt32 {
        guard port >= 0 && port < portCount else { dropped.badPort &+= 1; return 0 }
        guard packet.count >= VirtioNetHeader.size + Self.headerSize else {
            if packet.count < VirtioNetHeader.size { dropped.badHeader &+= 1 } else { dropped.runt &+= 1 }
            return 0
        }
        let frame = UnsafeRawBufferPointer(rebasing: packet[VirtioNetHeader.size...])
        var header = VirtioNetHeader(UnsafeRawBufferPointer(packet))
        let etherType = UInt16(frame[12]) << 8 | UInt16(frame[13])
        let limit = header.isSegmentation ? Self.maximumSegmentationFrameSize
            : etherType == Self.vlanTagProtocol ? Self.maximumTaggedFrameSize : Self.maximumFrameSize
        guard frame.count <= limit else { dropped.oversized &+= 1; return 0 }
        guard Self.describes(&header, frame: frame) else { dropped.badHeader &+= 1; return 0 }
        header.store(into: packet)
        let destination = Self.address(in: frame, at: 0)
        let source = Self.address(in: frame, at: 6)
        // IEEE 802 §8.2: a source address is an individual address, never a group one; Linux's bridge
        // drops the same frames (`!is_valid_ether_addr(h_source)` in br_handle_frame).
        guard !Self.isGroup(source) && source != 0 else { dropped.badSource &+= 1; return 0 }

        // Learn first, so a frame addressed to its own sender counts as a hairpin.
        learn(source, at: port)
        let targets: UInt32
        if !Self.isGroup(destination), let known = learnedPort(for: destination) {
            guard known != port else { dropped.hairpin &+= 1; return 0 }
            targets = 1 << known
        } else {
            // Cannot overflow: portCount <= 16.
            targets = ((1 << UInt32(portCount)) - 1) & ~(1 << UInt32(port))
        }

        var delivered: UInt32 = 0
        for target in 0..<portCount where targets & (1 << target) != 0 {
            if enqueue(UnsafeRawBufferPointer(packet), at: target) {
                delivered |= 1 << target
            } else {
                dropped.queueFull &+= 1
            }
        }
        return delivered
    }

    /// Whether `header` describes `frame` (virtio 1.2 §5.1.6.2): a checksum to complete lies inside
    /// the frame, after the Ethernet header; a GSO frame is TCP over IPv4 or IPv6 with its checksum
    /// left to do and a non-zero segment size. Flags the driver may not set are cleared, and
    /// num_buffers, the device's field, zeroed.
    static func describes(_ header: inout VirtioNetHeader, frame: UnsafeRawBufferPointer) -> Bool {
        header.flags &= VirtioNetHeader.needsChecksumFlag
        header.numberOfBuffers = 0
        if header.needsChecksum {
            let field = Int(header.checksumStart) + Int(header.checksumOffset)
            guard Int(header.checksumStart) >= headerSize && field + 2 <= frame.count else { return false }
        }
        switch header.gsoType {
        case VirtioNetHeader.gsoNone:
            return true
        case VirtioNetHeader.gsoTCPv4, VirtioNetHeader.gsoTCPv6:
            return header.needsChecksum && header.gsoSize > 0
        default:
            return false
        }
    }

    /// Copies `packet` (checked by `send`: at most maximumPacketSize <= queueBytes) behind the newest
    /// packet of `port`, if its ring has room for it in one piece.
    mutating func enqueue(_ packet: UnsafeRawBufferPointer, at port: Int) -> Bool {
        guard counts[port] < queueCapacity else { return false }
        let length = packet.count
        var start = 0
        if counts[port] > 0 {
            let oldest = offsets[port * queueCapacity + heads[port]]
            let newestEntry = port * queueCapacity + (heads[port] + counts[port] - 1) % queueCapacity
            let end = offsets[newestEntry] + lengths[newestEntry]
            if end > oldest {
                // In use: [oldest, end). Behind it if it fits, else from the ring's start up to oldest.
                if end + length <= queueBytes { start = end } else if length <= oldest { start = 0 } else { return false }
            } else {
                // Wrapped, in use: [oldest, queueBytes) and [0, end): only the gap between.
                guard end + length <= oldest else { return false }
                start = end
            }
        }
        let entry = port * queueCapacity + (heads[port] + counts[port]) % queueCapacity
        let base = port * queueBytes + start
        storage.withUnsafeMutableBytes { bytes in
            // SAFETY: start + length <= queueBytes (checked above), so the range lies inside port's ring.
            UnsafeMutableRawBufferPointer(rebasing: bytes[base..<(base + length)]).copyMemory(from: packet)
        }
        offsets[entry] = start
        lengths[entry] = length
        counts[port] += 1
        return true
    }

    // MARK: Receiving

    /// The oldest packet waiting for `port` (header, then frame), handed to `deliver`, which returns
    /// whether it was taken: if false the packet stays queued (e.g. the guest posted no buffer). A
    /// packet the guest cannot hold should count as taken, or it blocks the queue. Returns true when a
    /// packet was taken, false when the queue is empty, `deliver` declined, or `port` does not exist, so
    /// `while s.receive(at: p, put) {}` stops by itself. The bytes are valid only during `deliver`,
    /// which must not use the switch.
    public mutating func receive(at port: Int, _ deliver: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        guard port >= 0 && port < portCount && counts[port] > 0 else { return false }
        let entry = port * queueCapacity + heads[port]
        let base = port * queueBytes + offsets[entry]
        let length = lengths[entry]
        let taken = storage.withUnsafeBytes { bytes in
            // SAFETY: enqueue stored the packet inside port's ring.
            deliver(UnsafeRawBufferPointer(rebasing: bytes[base..<(base + length)]))
        }
        guard taken else { return false }
        heads[port] = (heads[port] + 1) % queueCapacity
        counts[port] -= 1
        return true
    }

    /// How many packets wait for `port` (0 for a port the switch does not have).
    public func queued(at port: Int) -> Int {
        port >= 0 && port < portCount ? counts[port] : 0
    }

    // MARK: Address learning

    /// The port `address` was last seen at as a source, if it is remembered.
    func learnedPort(for address: UInt64) -> Int? {
        for entry in table where entry.address == address { return entry.port }
        return nil
    }

    /// Remembers `address` (a valid source) as at `port`, following it if it moved. When the table is
    /// full the new address replaces the least recently seen entry of the port that would hold the most
    /// entries (counting the new one, so the sender itself on a tie): a VM sending from ever new spoofed
    /// addresses churns its own entries and cannot push another port below its share of the table.
    mutating func learn(_ address: UInt64, at port: Int) {
        clock &+= 1
        for i in table.indices where table[i].address == address {
            if table[i].port != port {
                entriesPerPort[table[i].port] -= 1
                entriesPerPort[port] += 1
                table[i].port = port
            }
            table[i].lastSeen = clock
            return
        }
        let entry = LearnedAddress(address: address, port: port, lastSeen: clock)
        entriesPerPort[port] += 1
        guard table.count == Self.addressTableCapacity else {
            table.append(entry)   // within the reserved capacity: no allocation
            return
        }
        // entriesPerPort already counts the new entry for `port`, so a tie picks the sender.
        var largest = port
        for candidate in 0..<portCount where entriesPerPort[candidate] > entriesPerPort[largest] {
            largest = candidate
        }
        var victim = -1
        for i in table.indices where table[i].port == largest
            && (victim < 0 || table[i].lastSeen < table[victim].lastSeen) {
            victim = i
        }
        // A victim exists: 65 entries counted over at most 16 ports give `largest` at least 5, all in the
        // table but the new one.
        entriesPerPort[largest] -= 1
        table[victim] = entry
    }

    // MARK: Addresses

    /// The 6 bytes at `offset` of `frame` (bounds checked by the caller), first byte most significant.
    static func address(in frame: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in offset..<(offset + 6) { value = value << 8 | UInt64(frame[i]) }
        return value
    }

    /// IEEE 802 §8.2: the I/G bit, the least significant bit of the first byte, marks a group
    /// (multicast or broadcast) address.
    static func isGroup(_ address: UInt64) -> Bool {
        address & (1 << 40) != 0
    }
}

// MARK: Between a VM's virtio-net device and its switch port

extension VirtualSwitch {
    /// What a guest's transmit chain holds (virtio_net_hdr and frame), copied into `scratch` (at least
    /// `maximumPacketSize` bytes): the private copy `send` checks. Nil when the chain is longer than a
    /// packet the switch takes or leaves guest RAM.
    public static func packet(of segments: [VirtqueueBuffer], memory: GuestMemory,
                              into scratch: UnsafeMutableRawBufferPointer) -> UnsafeMutableRawBufferPointer? {
        let total = totalLength(segments)
        guard let base = scratch.baseAddress, total <= UInt64(min(maximumPacketSize, scratch.count)) else { return nil }
        let region = SharedRegion(base: base, size: scratch.count)
        guard copyGuestSegments(segments, skip: 0, count: total, memory: memory, region: region,
                                regionOffset: 0, toGuest: false) else { return nil }
        return UnsafeMutableRawBufferPointer(start: base, count: Int(total))
    }
}
