// Fuzz target "switch": VMs sending hostile packets (virtio_net_hdr + frame) into the VMM's virtual
// switch (VirtualSwitch.swift) and taking them out at their ports, each packet a receiving guest
// without offloads would get then completed or cut into segments (NetworkSegmentation.swift), as
// VirtualMachine.networkReceived does.
//
// Input: port count, per-port queue capacity and ring size, then records: a send (port, header, frame
// length, frame bytes) or a receive at a port. A model keeps, per port, the packets the switch said it
// queued there (as `send` normalised them); every packet that comes out must be the model's next one,
// byte for byte, whatever the ring's wraps. Checked on each: the header is the device's to pass on
// (only NEEDS_CSUM of the flags, num_buffers 0, a checksum field inside the frame, GSO only TCPv4/v6
// with NEEDS_CSUM and a segment size), and the software offloads never write past their scratch.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSwitch(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let ports = Int(input.u8() % 4) + 1
    let capacity = Int(input.u8() % 8) + 1
    let ringBytes = VirtualSwitch.maximumPacketSize + Int(input.u16())
    var network = VirtualSwitch(portCount: ports, queueCapacity: capacity, queueBytes: ringBytes)
    var model = [[[UInt8]]](repeating: [], count: ports)
    // A header and the largest MTU-sized frame, as VirtualMachine's OffloadScratch; guarded by a canary.
    let scratchSize = VirtioNetHeader.size + VirtualSwitch.maximumTaggedFrameSize
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: scratchSize + 16, alignment: 16)
    defer { scratch.deallocate() }
    scratch.initializeMemory(as: UInt8.self, repeating: 0xA5)

    while input.remaining > 0 {
        let port = Int(input.u8() % UInt8(ports + 1))        // one past the last: a port that does not exist
        if input.bool() {
            var packet = [UInt8](input.take(VirtioNetHeader.size))
            let length = Int(input.u16()) % (VirtualSwitch.maximumSegmentationFrameSize + 64)
            let fill = input.take(min(length, input.remaining))
            packet += fill
            // Bytes the input ran out of: a pattern, so long frames come cheap.
            while packet.count < VirtioNetHeader.size + length { packet.append(UInt8(truncatingIfNeeded: packet.count)) }
            let sent = packet.withUnsafeMutableBytes { network.send(from: port, packet: $0) }
            fuzzCheck(sent & ~((1 << UInt32(ports)) - 1) == 0, "copy for a port the switch does not have")
            fuzzCheck(port >= ports || sent & (1 << UInt32(port)) == 0, "a packet went back to its sender")
            for target in 0..<ports where sent & (1 << UInt32(target)) != 0 { model[target].append(packet) }
        } else {
            _ = network.receive(at: port) { packet in
                fuzzCheck(port < ports && !model[port].isEmpty, "a packet out of an empty or missing port")
                fuzzCheck(packet.elementsEqual(model[port][0]), "a packet changed in the switch's queue")
                model[port].removeFirst()
                check(packet, scratch: scratch, scratchSize: scratchSize)
                return true
            }
        }
        for target in 0..<ports {
            fuzzCheck(network.queued(at: target) == model[target].count, "queued count differs from the model")
            fuzzCheck(model[target].count <= capacity, "more packets queued than the port's capacity")
        }
    }
    for n in scratchSize..<(scratchSize + 16) { fuzzCheck(scratch[n] == 0xA5, "software offload wrote past its scratch") }
    return 0
}

/// What a receiving device may rely on in a packet out of the switch, and its software offloads.
private func check(_ packet: UnsafeRawBufferPointer, scratch: UnsafeMutableRawBufferPointer, scratchSize: Int) {
    fuzzCheck(packet.count >= VirtioNetHeader.size + VirtualSwitch.headerSize, "a packet shorter than its headers")
    fuzzCheck(packet.count <= VirtualSwitch.maximumPacketSize, "a packet longer than the largest")
    let header = VirtioNetHeader(packet)
    fuzzCheck(header.flags & ~VirtioNetHeader.needsChecksumFlag == 0, "a flag only the device may set")
    fuzzCheck(header.numberOfBuffers == 0, "num_buffers left as the sender wrote it")
    let frame = UnsafeRawBufferPointer(rebasing: packet[VirtioNetHeader.size...])
    if header.needsChecksum {
        fuzzCheck(Int(header.checksumStart) >= VirtualSwitch.headerSize
                  && Int(header.checksumStart) + Int(header.checksumOffset) + 2 <= frame.count,
                  "a checksum field outside the frame")
    }
    let area = UnsafeMutableRawBufferPointer(rebasing: scratch[VirtioNetHeader.size..<scratchSize])
    if header.isSegmentation {
        fuzzCheck(header.gsoType == VirtioNetHeader.gsoTCPv4 || header.gsoType == VirtioNetHeader.gsoTCPv6,
                  "a GSO type the switch does not take")
        fuzzCheck(header.needsChecksum && header.gsoSize > 0, "GSO without NEEDS_CSUM or a segment size")
        var segments = 0
        _ = NetworkOffload.segment(frame, gsoType: header.gsoType, segmentSize: Int(header.gsoSize),
                                   scratch: area) { segment in
            fuzzCheck(segment.baseAddress == UnsafeRawPointer(area.baseAddress) && segment.count <= area.count,
                      "a segment outside the scratch")
            segments += 1
            return segments < 64        // a receiver's ring ends the run too
        }
    } else {
        fuzzCheck(frame.count <= VirtualSwitch.maximumTaggedFrameSize, "a plain frame over the MTU")
        if header.needsChecksum {
            area.baseAddress!.copyMemory(from: frame.baseAddress!, byteCount: frame.count)
            let copy = UnsafeMutableRawBufferPointer(rebasing: area[..<frame.count])
            fuzzCheck(NetworkOffload.completeChecksum(copy, start: Int(header.checksumStart),
                                                      offset: Int(header.checksumOffset)),
                      "a checksum the switch let through cannot be completed")
        }
    }
}
