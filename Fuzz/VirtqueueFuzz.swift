// Fuzz target "virtqueue": a guest that controls every byte of a split virtqueue (virtio 1.2 §2.7).
//
// Input: size selector, flags, the three ring addresses, then the bytes of guest RAM. The harness pops
// chains until there are none or the queue reports the guest's error, and checks what Virtqueue.swift
// promises its device models: every buffer lies inside RAM, readable before writable (§2.7.4.2), the
// total fits a u32 (§2.7.5.2), a chain is no longer than its table, copying a chain moves exactly its
// length, and pushUsed publishes used.idx (§2.7.8). Trapping, crashing or looping is a bug.

private let scratchSize = 0x1_0000
nonisolated(unsafe) private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: scratchSize, alignment: 16)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVirtqueue(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    // Mostly the powers of two the transport allows; sometimes any u16, which only the transport
    // would have refused (the queue itself must still not trap on it).
    let selector = input.u8()
    let queueSize: UInt16 = selector & 0x80 == 0 ? 1 << UInt16(selector % 16) : input.u16()
    let flags = input.u8()
    let indirect = flags & 1 != 0
    let eventIndex = flags & 2 != 0
    let descriptorTable = FuzzRAM.address(&input, raw: flags & 4 != 0)
    let availableRing = FuzzRAM.address(&input, raw: flags & 8 != 0)
    let usedRing = FuzzRAM.address(&input, raw: flags & 16 != 0)
    let undoEvery = Int(flags >> 5)   // 0: never undo a pop
    let memory = FuzzRAM.fresh(fill: input.rest())

    var queue = SplitVirtqueue(
        configuration: VirtqueueConfiguration(size: queueSize, descriptorTable: descriptorTable,
                                              availableRing: availableRing, usedRing: usedRing),
        indirectDescriptors: indirect, eventIndex: eventIndex)
    // The transport never makes a queue whose rings fail validation; the queue must cope anyway,
    // so validation only decides nothing here.
    _ = try? queue.validate(memory: memory)

    // Bounded: RAM is fixed, but the device's own writes (avail_event, used ring, chain data) may
    // land on avail.idx and keep the queue busy.
    var undone = false
    for iteration in 0..<512 {
        let chain: DescriptorChain?
        do { chain = try queue.popAvailable(memory: memory) } catch { break }
        guard let chain else { break }
        check(chain, queueSize: queueSize, memory: memory)

        if undoEvery != 0 && iteration % undoEvery == 0 && !undone {
            // Put it back once; the next pop walks the same head again.
            queue.undoPop()
            undone = true
            continue
        }
        undone = false

        let written = copy(chain, memory: memory)
        do {
            try queue.pushUsed(head: chain.head, writtenLength: written, memory: memory)
        } catch {
            break
        }
        // §2.7.8: the device publishes its used index; nothing is written after it in pushUsed.
        fuzzCheck(memory.load(UInt16.self, at: GuestPhysicalAddress(usedRing.raw &+ 2)) == queue.usedIndex,
                  "pushUsed did not publish used.idx")
        _ = queue.needsInterrupt(memory: memory)
    }
    queue.enableNotifications(memory: memory)
    return 0
}

private func check(_ chain: DescriptorChain, queueSize: UInt16, memory: GuestMemory) {
    fuzzCheck(chain.head < queueSize, "chain head outside the descriptor table")
    // A direct chain has at most `size` descriptors, an indirect table at most 32768 (§2.7.5.3.1).
    fuzzCheck(chain.buffers.count <= max(Int(queueSize), 32768), "chain longer than its table")
    var sawWritable = false
    var total: UInt64 = 0
    for buffer in chain.buffers {
        fuzzCheck(buffer.length > 0, "zero-length buffer listed")
        fuzzCheck(memory.contains(buffer.address, length: UInt64(buffer.length)), "buffer outside guest RAM")
        fuzzCheck(buffer.deviceWritable || !sawWritable, "readable buffer after a writable one")
        sawWritable = sawWritable || buffer.deviceWritable
        total += UInt64(buffer.length)
    }
    fuzzCheck(total <= UInt64(UInt32.max), "chain longer than 2^32 bytes")
    fuzzCheck(chain.readableLength + chain.writableLength == total, "chain lengths disagree with its buffers")
}

/// What a device model does with a chain: reads the readable part, writes into the writable part
/// (from its middle, to reach the segment-splitting paths). Returns the bytes written.
private func copy(_ chain: DescriptorChain, memory: GuestMemory) -> UInt32 {
    let readable = chain.readableLength
    let readOffset = readable / 3
    let readCount = Int(min(readable - readOffset, UInt64(scratchSize)))
    let read = chain.read(from: memory, offset: readOffset, into: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<readCount]))
    fuzzCheck(read == readCount, "chain.read copied a different length than the readable part")

    let writable = chain.writableLength
    let writeOffset = writable / 2
    let writeCount = Int(min(writable - writeOffset, UInt64(scratchSize)))
    let written = chain.write(to: memory, offset: writeOffset, from: UnsafeRawBufferPointer(rebasing: scratch[0..<writeCount]))
    fuzzCheck(written == writeCount, "chain.write copied a different length than the writable part")

    let segments = chain.writableSegments(offset: writeOffset, length: UInt64(writeCount))
    fuzzCheck(segments.reduce(0) { $0 + UInt64($1.length) } == UInt64(writeCount), "writable segments miss bytes")
    return UInt32(truncatingIfNeeded: writeOffset + UInt64(writeCount))
}
