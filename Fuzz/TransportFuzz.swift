// Fuzz target "transport": a guest driving one virtio-blk device through its virtio-mmio window
// (virtio 1.2 §4.2) and its request queue (§5.2.6), as VirtualMachine.swift routes it.
//
// Input: disk size and flags, then records, each a register read or write (offset, width, value),
// a write of guest RAM (the driver filling rings and buffers), or a whole driver initialisation
// (§3.1.1) with fuzzed features and ring addresses, so that a short input reaches a live queue.
// Checked: the identification registers never change, DRIVER_OK never stands without FEATURES_OK,
// a reset clears status, interrupts and queues (§2.4, §4.2.2.1), and the block model hands its
// backend only whole sectors inside the disk and segments inside guest RAM.

/// A small disk in host memory; every request is checked against it, not trusted.
struct FuzzDisk: BlockBackend {
    var bytes: [UInt8]
    var failing: Bool

    func blockCapacity(device: Int) -> UInt64? { UInt64(bytes.count) / VirtioBlockRequest.sectorSize }

    /// The byte offset on disk of a request of `segments` at `sector`, after checking it.
    private func start(device: Int, sector: UInt64, _ segments: [VirtqueueBuffer], _ memory: GuestMemory) -> Int {
        fuzzCheck(device == 0, "request for a block device that does not exist")
        var total: UInt64 = 0
        for segment in segments {
            fuzzCheck(segment.length > 0, "empty segment")
            fuzzCheck(memory.contains(segment.address, length: UInt64(segment.length)), "segment outside guest RAM")
            total += UInt64(segment.length)
        }
        let capacity = UInt64(bytes.count) / VirtioBlockRequest.sectorSize
        fuzzCheck(total % VirtioBlockRequest.sectorSize == 0, "request not a whole number of sectors")
        fuzzCheck(sector <= capacity && total / VirtioBlockRequest.sectorSize <= capacity - sector,
                  "request past the end of the disk")
        return Int(sector * VirtioBlockRequest.sectorSize)
    }

    mutating func blockRead(device: Int, sector: UInt64, into segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        var at = start(device: device, sector: sector, segments, memory)
        if failing { return false }
        for segment in segments {
            let count = Int(segment.length)
            bytes.withUnsafeBytes { disk in
                _ = memory.write(UnsafeRawBufferPointer(rebasing: disk[at..<(at + count)]), at: segment.address)
            }
            at += count
        }
        return true
    }

    mutating func blockWrite(device: Int, sector: UInt64, from segments: [VirtqueueBuffer], memory: GuestMemory) -> Bool {
        var at = start(device: device, sector: sector, segments, memory)
        if failing { return false }
        for segment in segments {
            let count = Int(segment.length)
            bytes.withUnsafeMutableBytes { disk in
                _ = memory.withBytes(at: segment.address, length: UInt64(count)) { source in
                    UnsafeMutableRawBufferPointer(rebasing: disk[at..<(at + count)]).copyMemory(from: UnsafeRawBufferPointer(source))
                }
            }
            at += count
        }
        return true
    }

    mutating func blockFlush(device: Int) -> Bool {
        fuzzCheck(device == 0, "flush for a block device that does not exist")
        return !failing
    }
}

/// Every register of §4.2.2, so one input byte names a real one.
private let registers: [UInt64] = [
    0x000, 0x004, 0x008, 0x00C, 0x010, 0x014, 0x020, 0x024, 0x030, 0x034, 0x038, 0x044, 0x050, 0x060,
    0x064, 0x070, 0x080, 0x084, 0x090, 0x094, 0x0A0, 0x0A4, 0x0AC, 0x0B0, 0x0B4, 0x0B8, 0x0BC, 0x0C0, 0x0FC,
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTransport(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let sectors = Int(input.u8() % 64)
    let flags = input.u8()
    var disk = FuzzDisk(bytes: [UInt8](repeating: 0, count: sectors * Int(VirtioBlockRequest.sectorSize)),
                        failing: flags & 2 != 0)
    let model = VirtioBlock(device: 0, capacitySectors: UInt64(sectors), readOnly: flags & 1 != 0,
                            identifier: Array("fuzz-disk".utf8))
    var transport = VirtioMMIOTransport(model: model)
    let memory = FuzzRAM.fresh()

    func write(_ offset: UInt64, _ value: UInt32, width: Int = 4) {
        let effect = transport.write(offset: offset, width: width, value: value, memory: memory)
        switch effect {
        case .queueNotify(let queue):
            let used = transport.serve(queue: queue) { model, queue throws(VirtqueueError) in
                try model.processRequests(&queue, memory: memory, backend: &disk) && queue.needsInterrupt(memory: memory)
            }
            if used == true { transport.raiseUsedBufferInterrupt() }
        case .reset:
            fuzzCheck(transport.status == 0 && transport.interruptStatus == 0, "reset left status or interrupts set")
            fuzzCheck(transport.queues.allSatisfy { $0 == nil }, "reset left a queue ready")
        case .none, .statusChanged, .interruptAcknowledged:
            break
        }
    }

    var records = 0
    while !input.isEmpty && records < 4096 {
        records += 1
        let op = input.u8()
        switch op % 8 {
        case 0, 1:      // a known register, aligned 32-bit
            write(registers[Int(input.u8()) % registers.count], input.u32())
        case 2:
            _ = transport.read(offset: registers[Int(input.u8()) % registers.count], width: 4)
        case 3:         // the driver writes guest RAM
            let offset = UInt64(input.u16())
            let length = Int(input.u8())
            _ = memory.write(input.take(length), at: GuestPhysicalAddress(FuzzRAM.base + offset))
        case 4:         // configuration space, any width (§4.2.2.2)
            let offset = 0x100 + UInt64(input.u8())
            let width = [1, 2, 4, 8][Int(op >> 3) % 4]
            if op & 0x80 != 0 { write(offset, input.u32(), width: width) } else { _ = transport.read(offset: offset, width: width) }
        case 5:         // §3.1.1 driver initialisation with fuzzed features and rings
            write(0x070, 0)
            write(0x070, VirtioStatus.acknowledge | VirtioStatus.driver)
            write(0x024, 1); write(0x020, 1)                    // VIRTIO_F_VERSION_1
            write(0x024, 0); write(0x020, input.u32())
            write(0x070, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)
            write(0x030, 0)
            write(0x038, 1 << UInt32(input.u8() % 8))
            for low in [UInt64(0x080), 0x090, 0x0A0] {
                write(low, UInt32(truncatingIfNeeded: FuzzRAM.base) + UInt32(input.u16()))
                write(low + 4, 0)
            }
            write(0x044, 1)
            write(0x070, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK | VirtioStatus.driverOK)
        case 6:         // the VMM's interrupt handling: acknowledge what is pending, notify queue 0
            write(0x064, transport.interruptStatus)
            write(0x050, 0)
        default:        // anything in the window: unaligned, odd widths
            let offset = UInt64(input.u16()) % VirtioMMIO.windowSize
            let width = [1, 2, 4, 8][Int(op >> 3) % 4]
            if op & 0x80 != 0 { write(offset, input.u32(), width: width) } else { _ = transport.read(offset: offset, width: width) }
        }
        fuzzCheck(transport.read(offset: 0x000, width: 4) == VirtioMMIO.magicValue, "MagicValue changed")
        fuzzCheck(transport.read(offset: 0x004, width: 4) == VirtioMMIO.version, "Version changed")
        fuzzCheck(transport.read(offset: 0x008, width: 4) == VirtioDeviceType.block.rawValue, "DeviceID changed")
        fuzzCheck(transport.status & VirtioStatus.driverOK == 0 || transport.status & VirtioStatus.featuresOK != 0,
                  "DRIVER_OK without FEATURES_OK")
    }
    return 0
}
