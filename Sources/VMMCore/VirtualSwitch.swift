// The virtual Ethernet switch that joins the virtio-net devices of several VMs (one `network` of the
// system file): it checks each frame a VM transmits, learns the sender's address, and copies the frame
// into the bounded queue of every port it goes to; each receiving VM later takes frames from its own
// port's queue and writes them into its receive buffers.
//
// This file owns every byte a guest transmits from the moment `send` is called: the frame is checked
// (port index, length, source address) and copied into storage allocated at init, so no queue ever
// points into a sender's memory and a hostile VM can make the switch hold at most `queueCapacity`
// slots of `slotSize` bytes per port, and fill at most `addressTableCapacity` addresses. Frames are plain
// Ethernet (IEEE 802.3 §3.1.1 without preamble and FCS): destination, source, EtherType or 802.1Q tag,
// payload. The virtio_net_hdr is the device model's (VirtioNet.swift): stripped before `send`, added
// after `receive`. The switch is VLAN-unaware: a tag passes through untouched and one table serves all
// VLANs. It holds no lock: whoever shares it between CPUs serialises `send` and `receive`.

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
    /// Unicast to an address learned at the sender's own port: a switch never sends a frame back.
    public var hairpin: UInt64 = 0

    public init() {}
}

/// A learning Ethernet switch with fixed ports, each with a bounded FIFO of frames waiting for it.
public struct VirtualSwitch {
    /// Ports are bits of `send`'s result; 16 ports of 256 frames hold at most 16 × 256 × 1518 B ≈ 6 MiB.
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
    /// Every queued frame occupies one slot of this size, allocated at init.
    public static let slotSize = maximumTaggedFrameSize
    /// Addresses remembered at once; see `learn` for which one a new address replaces.
    public static let addressTableCapacity = 64

    public let portCount: Int
    public let queueCapacity: Int
    public private(set) var dropped = SwitchDrops()

    /// Slot s of port p is bytes [(p * queueCapacity + s) * slotSize, + lengths[...]).
    var storage: [UInt8]
    var lengths: [UInt16]
    /// Per port: the slot of its oldest frame, and how many frames wait.
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

    /// `portCount` 1...16 and `queueCapacity` 1...1024 come from the system file, checked by the tool.
    public init(portCount: Int, queueCapacity: Int = 256) {
        precondition(portCount >= 1 && portCount <= Self.maximumPorts, "virtual switch: port count out of range")
        precondition(queueCapacity >= 1 && queueCapacity <= Self.maximumQueueCapacity,
                     "virtual switch: queue capacity out of range")
        self.portCount = portCount
        self.queueCapacity = queueCapacity
        // Cannot overflow: at most 16 × 1024 × 1518 bytes.
        storage = [UInt8](repeating: 0, count: portCount * queueCapacity * Self.slotSize)
        lengths = [UInt16](repeating: 0, count: portCount * queueCapacity)
        heads = [Int](repeating: 0, count: portCount)
        counts = [Int](repeating: 0, count: portCount)
        table = []
        table.reserveCapacity(Self.addressTableCapacity)
        entriesPerPort = [Int](repeating: 0, count: portCount)
    }

    // MARK: Sending

    /// Port `port` sent `frame`; returns the ports that got a copy (bit n = port n), 0 if dropped.
    ///
    /// Known unicast goes to the port its destination was last seen at; broadcast, multicast and
    /// unknown unicast go to every other port. The frame is copied before `send` returns.
    public mutating func send(from port: Int, frame: UnsafeRawBufferPointer) -> UInt32 {
        guard port >= 0 && port < portCount else { dropped.badPort &+= 1; return 0 }
        guard frame.count >= Self.headerSize else { dropped.runt &+= 1; return 0 }
        let etherType = UInt16(frame[12]) << 8 | UInt16(frame[13])
        let limit = etherType == Self.vlanTagProtocol ? Self.maximumTaggedFrameSize : Self.maximumFrameSize
        guard frame.count <= limit else { dropped.oversized &+= 1; return 0 }
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
            if enqueue(frame, at: target) {
                delivered |= 1 << target
            } else {
                dropped.queueFull &+= 1
            }
        }
        return delivered
    }

    /// Copies `frame` (14...slotSize bytes, checked by `send`) behind the newest frame of `port`.
    mutating func enqueue(_ frame: UnsafeRawBufferPointer, at port: Int) -> Bool {
        guard counts[port] < queueCapacity else { return false }
        let slot = port * queueCapacity + (heads[port] + counts[port]) % queueCapacity
        let start = slot * Self.slotSize
        storage.withUnsafeMutableBytes { bytes in
            // SAFETY: slot < portCount * queueCapacity and frame.count <= slotSize, so the range lies
            // inside the portCount * queueCapacity * slotSize bytes of storage.
            UnsafeMutableRawBufferPointer(rebasing: bytes[start..<(start + frame.count)]).copyMemory(from: frame)
        }
        lengths[slot] = UInt16(frame.count)   // Cannot truncate: at most 1518.
        counts[port] += 1
        return true
    }

    // MARK: Receiving

    /// The oldest frame waiting for `port`, handed to `deliver`, which returns whether it was taken:
    /// if false the frame stays queued (e.g. the guest posted no buffer). A frame the guest cannot
    /// hold should count as taken, or it blocks the queue. Returns true when a frame was taken, false
    /// when the queue is empty, `deliver` declined, or `port` does not exist, so
    /// `while s.receive(at: p, put) {}` stops by itself. The bytes are valid only during `deliver`,
    /// which must not use the switch.
    public mutating func receive(at port: Int, _ deliver: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        guard port >= 0 && port < portCount && counts[port] > 0 else { return false }
        let slot = port * queueCapacity + heads[port]
        let start = slot * Self.slotSize
        let length = Int(lengths[slot])
        let taken = storage.withUnsafeBytes { bytes in
            // SAFETY: slot < portCount * queueCapacity and length <= slotSize (enqueue stored it).
            deliver(UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)]))
        }
        guard taken else { return false }
        heads[port] = (heads[port] + 1) % queueCapacity
        counts[port] -= 1
        return true
    }

    /// How many frames wait for `port` (0 for a port the switch does not have).
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
    /// The Ethernet frame a guest's transmit chain carries after its virtio_net_hdr, copied into
    /// `scratch` (at least `slotSize` bytes); nil when the chain is shorter than the header, longer
    /// than a frame the switch takes, or leaves guest RAM.
    public static func frame(of segments: [VirtqueueBuffer], memory: GuestMemory,
                             into scratch: UnsafeMutableRawBufferPointer) -> UnsafeRawBufferPointer? {
        let total = totalLength(segments)
        guard total >= VirtioNet.headerSize, let base = scratch.baseAddress else { return nil }
        let length = total - VirtioNet.headerSize
        guard length <= UInt64(min(slotSize, scratch.count)) else { return nil }
        let region = SharedRegion(base: base, size: scratch.count)
        guard copyGuestSegments(segments, skip: VirtioNet.headerSize, count: length, memory: memory, region: region,
                                regionOffset: 0, toGuest: false) else { return nil }
        return UnsafeRawBufferPointer(start: base, count: Int(length))
    }

    /// `frame` behind a zeroed virtio_net_hdr (no offloads: VIRTIO_F_VERSION_1's 12 bytes, §5.1.6), in
    /// `scratch` (at least `slotSize + 12` bytes): what a receive buffer gets.
    public static func withHeader(_ frame: UnsafeRawBufferPointer, in scratch: UnsafeMutableRawBufferPointer)
        -> UnsafeRawBufferPointer {
        let header = Int(VirtioNet.headerSize)
        let length = min(frame.count, scratch.count - header)
        guard let base = scratch.baseAddress, length >= 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: header)
        if length > 0, let source = frame.baseAddress { (base + header).copyMemory(from: source, byteCount: length) }
        return UnsafeRawBufferPointer(start: base, count: header + length)
    }
}
