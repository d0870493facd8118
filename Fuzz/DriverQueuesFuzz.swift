// Fuzz target "driverqueues": the VMM's side of the queues it shares with driver protection domains
// (DriverQueues.swift, DriverBlockQueues.swift, DriverSerialQueues.swift, DriverClients.swift), against
// a driver PD that writes whatever it likes into every shared region, whenever it runs.
//
// Each of the 14 regions of one block, one net and one console device is its own heap allocation of
// exactly its size, so AddressSanitizer reports any access past one. The input is the hostile driver:
//
//   header  u8 shrink, u8 block data blocks (bits 0-1) and +100 bytes (bit 2), u8 rx buffers (low
//           nibble) and tx buffers (high nibble) of net data (15: 128, a full queue), and when shrink is a
//           region's index (0-13), u16: that region's size becomes u16 % (size + 1)
//   then at most 64 operations, one byte each (op % 16) and its operands:
//      0 poke bytes into a region        1 poke a u32          2 publish block storage information
//      3 BlockClient.read                4 BlockClient.write    5 BlockClient.flush
//      6 queue frames on rx active, NetClient.receive           7 NetClient.transmit
//      8 the driver returns tx buffers   9 ConsoleClient.write  10 queue console input, ConsoleClient.receive
//     11 the driver drains a queue      12 raw QueueConsumer/QueueProducer operations on any region
//     13 raw ByteQueueConsumer/ByteQueueProducer operations    14 a client made anew   15 as 0
//
// The driver runs when a client notifies it, from the next input byte: for block, it answers the
// requests well or with a fuzzed status, count or id (or twice, or without taking them), overwrites the
// response queue, answers a few clock readings later or stays silent; for net and console, an odd byte
// pokes any region. The clock moves a second per reading: a driver that never answers costs five.
// The drivers' servers (DriverServers.swift) need a board device; only the queue ends they use (the
// plug, the storage information they publish) are reached here, through operations 2 and 12.
//
// Checked, besides no trap and no access outside any region or guest RAM: every request the block
// client queues is one it may make (a known code, no write to a read-only disk, blocks inside the data
// region and the disk); guest RAM changes only inside the segments a read was given, and never on a
// write or a transmit; a transmitted frame sits in a whole tx buffer with its exact length and bytes;
// each received frame is the next valid rx active entry's bytes behind a zeroed virtio_net_hdr; each
// console piece lies in the rx data ring where head says; every raw queue keeps its counts within its
// capacity and moves its index by exactly what it reports.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Regions and the hostile driver

enum Region: Int, CaseIterable {
    case blockRequests, blockResponses, blockInfo, blockData
    case rxFree, rxActive, txFree, txActive, netRxData, netTxData
    case consoleRxQueue, consoleTxQueue, consoleRxData, consoleTxData
}

enum Device { case block, net, console }

let blockSize = Int(MicrokitDriverLayout.blockTransferSize)
let netQueueCapacity = Int(MicrokitDriverLayout.netQueueCapacity)
let bufferSize = Int(MicrokitDriverLayout.netBufferSize)
let consoleCapacity = Int(MicrokitDriverLayout.consoleDataCapacity)

/// The driver PD: the input it acts from, the regions it shares, the clock, and what the block
/// operation under way may ask of it.
final class Driver {
    var input: FuzzInput
    var regions: [SharedRegion] = []
    var now: UInt64 = 0
    /// A block answer due after this many more clock readings, with its flags.
    var delayedAnswer: (readings: Int, flags: UInt8)?
    var notifications = 0
    /// Set by the harness before each block operation: what the client may queue during it.
    var mayWrite = false
    var diskBlocks: UInt64?

    init(_ input: FuzzInput) { self.input = input }

    subscript(_ region: Region) -> SharedRegion { regions[region.rawValue] }

    func region(_ selector: UInt8) -> SharedRegion { regions[Int(selector) % regions.count] }

    /// Copies input bytes into a region at an offset near it (clamped: the driver's own writes stay inside).
    func poke(_ region: SharedRegion) {
        let offset = Int(input.u16()) % (region.size + 8)
        let bytes = input.take(Int(input.u8() % 64))
        guard offset < region.size else { return }
        region.write(UnsafeRawBufferPointer(rebasing: bytes[0..<min(bytes.count, region.size - offset)]),
                     at: UInt64(offset))
    }

    func poke32(_ region: SharedRegion) {
        let offset = Int(input.u16()) % (region.size + 8)
        region.store(input.u32(), at: offset)
    }

    /// The link's notifyDriver().
    func notified(_ device: Device) {
        notifications += 1
        guard device == .block else {
            if input.u8() & 1 != 0 { poke(region(input.u8())) }
            return
        }
        checkLastBlockRequest()
        let mode = input.u8()
        switch mode & 3 {
        case 0: break                                   // silent: the client times out
        case 1: answerBlock(flags: mode)
        case 2: poke(self[.blockResponses])
        default: delayedAnswer = (Int(input.u8() % 8), mode)
        }
    }

    /// The link's ticks(): a second per reading; a delayed answer arrives while the client polls.
    func tick() -> UInt64 {
        now &+= 1_000_000
        if let (readings, flags) = delayedAnswer {
            if readings == 0 {
                delayedAnswer = nil
                answerBlock(flags: flags)
            } else {
                delayedAnswer = (readings - 1, flags)
            }
        }
        return now
    }

    /// The request the client queued just before notifying (at tail - 1) is one it may make.
    func checkLastBlockRequest() {
        let requests = self[.blockRequests]
        guard let tail = requests.load(UInt32.self, at: BlockRequestLayout.tailOffset) else { return }
        let slot = Int((tail &- 1) % MicrokitDriverLayout.blockQueueCapacity)
        guard let request = BlockRequestLayout.load(from: requests,
                                                    at: BlockRequestLayout.entriesOffset + slot * BlockRequestLayout.entrySize)
        else { return }
        guard let code = BlockRequestCode(rawValue: request.code) else {
            fuzzCheck(false, "block client queued an unknown request code")
            return
        }
        switch code {
        case .flush:
            fuzzCheck(request.count == 0, "flush with a count")
        case .barrier:
            fuzzCheck(false, "block client queued a barrier")
        case .read, .write:
            fuzzCheck(code == .read || mayWrite, "block client queued a write for a read, or to a read-only disk")
            let count = UInt64(request.count)
            let dataSize = UInt64(self[.blockData].size)
            fuzzCheck(count > 0, "block transfer of no blocks")
            fuzzCheck(request.offset % 4096 == 0, "block transfer not at a block of the data region")
            fuzzCheck(request.offset <= dataSize && count * 4096 <= dataSize - request.offset,
                      "block transfer outside the data region")
            if let blocks = diskBlocks {
                fuzzCheck(request.blockNumber <= blocks && count <= blocks - request.blockNumber,
                          "block transfer past the end of the disk")
            }
        }
    }

    /// Plays the driver: takes every queued request and answers it; `flags` fuzz the answer.
    func answerBlock(flags: UInt8) {
        var requests = QueueConsumer<BlockRequestLayout>(region: self[.blockRequests],
                                                         capacity: MicrokitDriverLayout.blockQueueCapacity)
        var responses = QueueProducer<BlockResponseLayout>(region: self[.blockResponses],
                                                           capacity: MicrokitDriverLayout.blockQueueCapacity)
        for _ in 0..<4 {
            // Bit 7: answer without taking the request (the request queue fills up).
            let request = flags & 0x80 != 0 ? requests.peek() : requests.dequeue()
            guard let request else { break }
            if flags & 4 != 0 && request.code == BlockRequestCode.read.rawValue {
                // The "disk's" bytes for a read.
                let data = self[.blockData]
                let bytes = input.take(Int(input.u8()) * 16)
                if request.offset < UInt64(data.size) {
                    let room = UInt64(data.size) - request.offset
                    data.write(UnsafeRawBufferPointer(rebasing: bytes[0..<Int(min(UInt64(bytes.count), room))]),
                               at: request.offset)
                }
            }
            let status = flags & 8 != 0 ? UInt32(input.u8() % 6) : 0
            let count = flags & 16 != 0 ? input.u16() : request.count
            let id = flags & 32 != 0 ? request.id &+ UInt32(input.u8()) : request.id
            _ = responses.enqueue(BlockResponse(status: status, successCount: count, id: id))
            if flags & 64 != 0 { _ = responses.enqueue(BlockResponse(status: status, successCount: count, id: id)) }
            if flags & 0x80 != 0 { break }
        }
    }
}

struct FuzzDriverLink: DriverLink {
    let driver: Driver
    let device: Device
    mutating func notifyDriver() { driver.notified(device) }
    func ticks() -> UInt64 { driver.tick() }
    var ticksPerMillisecond: UInt64 { 1000 }
}

// MARK: - Guest RAM and its shadow

/// Guest RAM starts as a pattern no region holds; `shadow` is what it must hold outside the segments
/// reads were given.
enum GuestRAM {
    static let size = Int(FuzzRAM.size)
    nonisolated(unsafe) static let pattern: UnsafeMutableRawBufferPointer = {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        for index in 0..<size { buffer[index] = UInt8(truncatingIfNeeded: index &* 37 &+ (index >> 8) &+ 0x5a) | 1 }
        return buffer
    }()
    nonisolated(unsafe) static let shadow = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)

    static func fresh() -> GuestMemory {
        shadow.copyMemory(from: UnsafeRawBufferPointer(pattern))
        return FuzzRAM.fresh(fill: UnsafeRawBufferPointer(pattern))
    }

    /// The parts of `segments` inside RAM, as sorted, merged offset ranges.
    static func ranges(_ segments: [VirtqueueBuffer]) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        for segment in segments {
            let start = max(segment.address.raw, FuzzRAM.base)
            let end = min(segment.address.raw &+ UInt64(segment.length), FuzzRAM.base + FuzzRAM.size)
            if segment.address.raw >= FuzzRAM.base + FuzzRAM.size || start >= end { continue }
            ranges.append(Int(start - FuzzRAM.base)..<Int(end - FuzzRAM.base))
        }
        ranges.sort { $0.lowerBound < $1.lowerBound }
        var merged: [Range<Int>] = []
        for range in ranges {
            if let last = merged.last, range.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        return merged
    }

    /// RAM equals the shadow outside `writable`; then the shadow takes what was written inside it.
    static func check(writable: [VirtqueueBuffer], _ message: StaticString) {
        let ram = UnsafeRawBufferPointer(start: FuzzRAM.host, count: size)
        let allowed = ranges(writable)
        var position = 0
        for range in allowed + [size..<size] {
            fuzzCheck(same(ram, position..<range.lowerBound), message)
            position = range.upperBound
        }
        for range in allowed {
            UnsafeMutableRawBufferPointer(rebasing: shadow[range]).copyMemory(from: UnsafeRawBufferPointer(rebasing: ram[range]))
        }
    }

    /// memcmp: one call that AddressSanitizer checks and libFuzzer does not trace byte by byte (a loop
    /// here made every comparison a coverage event and cost most of the run).
    static func same(_ ram: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        range.isEmpty || memcmp(ram.baseAddress! + range.lowerBound, shadow.baseAddress! + range.lowerBound, range.count) == 0
    }

    /// `count` bytes of `segments` from `skip` on (inside RAM: the bytes skipped need not be).
    static func gather(_ segments: [VirtqueueBuffer], skip: Int, count: Int, memory: GuestMemory) -> [UInt8] {
        var bytes: [UInt8] = []
        var skip = skip
        for segment in segments {
            let length = Int(segment.length)
            if skip >= length { skip -= length; continue }
            let piece = memory.withBytes(at: GuestPhysicalAddress(segment.address.raw + UInt64(skip)),
                                         length: UInt64(length - skip)) { Array($0) }
            fuzzCheck(piece != nil, "a frame reported sent came from outside guest RAM")
            bytes += piece ?? []
            skip = 0
        }
        return Array(bytes.prefix(count))
    }
}

/// Guest buffers: up to three, each at a 16-bit offset into RAM (some run past its end) and of length
/// below `maximum`.
func segments(_ input: inout FuzzInput, maximum: UInt16, writable: Bool) -> [VirtqueueBuffer] {
    (0..<Int(input.u8() % 4)).map { _ in
        let address = GuestPhysicalAddress(FuzzRAM.base + UInt64(input.u16()))
        return VirtqueueBuffer(address: address, length: UInt32(input.u16() % maximum), deviceWritable: writable)
    }
}

/// A queue capacity: mostly a power of two up to 4096, sometimes any u32.
func queueCapacity(_ input: inout FuzzInput) -> UInt32 {
    let selector = input.u8()
    return selector & 0x80 != 0 ? input.u32() : 1 << UInt32(selector % 13)
}

// MARK: - The clients

struct Clients {
    var block: BlockClient<FuzzDriverLink>
    var net: NetClient<FuzzDriverLink>
    var console: ConsoleClient<FuzzDriverLink>

    init(_ driver: Driver) {
        block = Clients.makeBlock(driver)
        net = Clients.makeNet(driver)
        console = Clients.makeConsole(driver)
    }

    static func makeBlock(_ driver: Driver) -> BlockClient<FuzzDriverLink> {
        BlockClient(requests: driver[.blockRequests], responses: driver[.blockResponses], info: driver[.blockInfo],
                    data: driver[.blockData], link: FuzzDriverLink(driver: driver, device: .block))
    }

    static func makeNet(_ driver: Driver) -> NetClient<FuzzDriverLink> {
        NetClient(rxFree: driver[.rxFree], rxActive: driver[.rxActive], txFree: driver[.txFree],
                  txActive: driver[.txActive], rxData: driver[.netRxData], txData: driver[.netTxData],
                  link: FuzzDriverLink(driver: driver, device: .net))
    }

    static func makeConsole(_ driver: Driver) -> ConsoleClient<FuzzDriverLink> {
        ConsoleClient(rxQueue: driver[.consoleRxQueue], txQueue: driver[.consoleTxQueue], rxData: driver[.consoleRxData],
                      txData: driver[.consoleTxData], link: FuzzDriverLink(driver: driver, device: .console))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDriverQueues(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let driver = Driver(FuzzInput(data, size))

    // The regions, each its own allocation of exactly its size.
    var sizes = [Int](repeating: 0x1000, count: Region.allCases.count)
    let shrink = Int(driver.input.u8())
    let blockData = driver.input.u8()
    sizes[Region.blockData.rawValue] = Int(blockData & 3) * blockSize + (blockData & 4 != 0 ? 100 : 0)
    let buffers = driver.input.u8()
    func bufferCount(_ nibble: UInt8) -> Int { nibble == 15 ? netQueueCapacity : Int(nibble) }
    sizes[Region.netRxData.rawValue] = bufferCount(buffers & 15) * bufferSize
    sizes[Region.netTxData.rawValue] = bufferCount(buffers >> 4) * bufferSize
    if shrink < sizes.count { sizes[shrink] = Int(driver.input.u16()) % (sizes[shrink] + 1) }
    let memory = sizes.map { size in
        let base = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: 16)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: max(size, 1))
        return base
    }
    defer { for base in memory { base.deallocate() } }
    driver.regions = zip(memory, sizes).map { SharedRegion(base: $0, size: $1) }

    let ram = GuestRAM.fresh()
    var clients = Clients(driver)

    var operations = 0
    while !driver.input.isEmpty && operations < 64 {
        operations += 1
        let operation = driver.input.u8() % 16
        switch operation {
        case 1:
            driver.poke32(driver.region(driver.input.u8()))
        case 2:
            let flags = driver.input.u8()
            let blocks = flags & 2 != 0 ? driver.input.u64() : UInt64(driver.input.u8() % 64)
            BlockStorageInfo(readOnly: flags & 1 != 0, sectorSize: 512, blockSize: 1, queueDepth: 64, capacity: blocks)
                .publish(to: driver[.blockInfo])
            let sectors = clients.block.capacitySectors
            if let info = BlockStorageInfo.load(from: driver[.blockInfo]) {
                let (expected, overflow) = info.capacity.multipliedReportingOverflow(by: 8)
                fuzzCheck(sectors == (overflow ? 0 : expected), "capacitySectors is not the published capacity")
                fuzzCheck(clients.block.readOnly == info.readOnly, "readOnly is not the published flag")
            } else {
                fuzzCheck(sectors == 0 && clients.block.readOnly, "a disk that is not ready has a capacity or is writable")
            }
        case 3, 4:
            let write = operation == 4
            let selector = driver.input.u16()
            let sector = selector & 0x8000 != 0 ? driver.input.u64() : UInt64(selector % 512)
            let given = segments(&driver.input, maximum: 0x2400, writable: !write)
            let info = BlockStorageInfo.load(from: driver[.blockInfo])
            driver.diskBlocks = info?.capacity
            driver.mayWrite = write && info?.readOnly == false
            driver.delayedAnswer = nil
            if write {
                _ = clients.block.write(sector: sector, from: given, memory: ram)
                GuestRAM.check(writable: [], "a block write changed guest RAM")
            } else {
                _ = clients.block.read(sector: sector, into: given, memory: ram)
                GuestRAM.check(writable: given, "a block read wrote guest RAM outside its segments")
            }
        case 5:
            driver.mayWrite = false
            driver.delayedAnswer = nil
            _ = clients.block.flush()
        case 6:
            queueFrames(driver)
            receiveFrames(driver, &clients.net)
        case 7:
            transmit(driver, &clients.net, memory: ram)
        case 8:
            // The driver gives sent buffers back (bit 7 of the count: at a fuzzed offset).
            let count = driver.input.u8()
            var active = QueueConsumer<NetQueueLayout>(region: driver[.txActive], capacity: MicrokitDriverLayout.netQueueCapacity)
            var free = QueueProducer<NetQueueLayout>(region: driver[.txFree], capacity: MicrokitDriverLayout.netQueueCapacity)
            for _ in 0..<Int(count % 16) {
                guard let buffer = active.dequeue() else { break }
                let offset = count & 0x80 != 0 ? buffer.offset ^ UInt64(driver.input.u16()) : buffer.offset
                _ = free.enqueue(NetBuffer(offset: offset, length: 0))
            }
        case 9:
            let bytes = driver.input.take(Int(driver.input.u16() % 5000))
            let queued = clients.console.write(bytes)
            fuzzCheck(queued >= 0 && queued <= min(bytes.count, consoleCapacity), "console write queued more than it had")
        case 10:
            consoleReceive(driver, &clients.console)
        case 11:
            // The driver takes everything queued: head = tail.
            switch driver.input.u8() % 3 {
            case 0:
                if let tail = driver[.blockRequests].load(UInt32.self, at: BlockRequestLayout.tailOffset) {
                    driver[.blockRequests].store(tail, at: BlockRequestLayout.headOffset)
                }
            case 1:
                if let tail = driver[.rxFree].load(UInt16.self, at: NetQueueLayout.tailOffset) {
                    driver[.rxFree].store(tail, at: NetQueueLayout.headOffset)
                }
            default:
                if let tail = driver[.consoleTxQueue].load(UInt32.self, at: 0) { driver[.consoleTxQueue].store(tail, at: 4) }
            }
        case 12:
            let region = driver.region(driver.input.u8())
            switch driver.input.u8() % 3 {
            case 0: rawQueue(BlockRequestLayout.self, region, driver)
            case 1: rawQueue(BlockResponseLayout.self, region, driver)
            default: rawQueue(NetQueueLayout.self, region, driver)
            }
        case 13:
            rawByteQueue(driver)
        case 14:
            switch driver.input.u8() % 3 {
            case 0: clients.block = Clients.makeBlock(driver)
            case 1: clients.net = Clients.makeNet(driver)
            default: clients.console = Clients.makeConsole(driver)
            }
        default:
            driver.poke(driver.region(driver.input.u8()))
        }
    }
    return 0
}
