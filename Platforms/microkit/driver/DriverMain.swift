// A driver protection domain: drives one of the board's virtio devices with the core's virtio driver
// and serves the VMM through the shared queues of its kind (VMMCore's DriverServers). It maps only
// the page of the board's virtio-mmio window that holds its transport, its own DMA memory and the
// shared regions MicrokitDriverLayout gives a driver of its kind; it never maps guest RAM (a block
// driver's device reaches its VM's buffers by DMA, MicrokitDriverLayout.blockGuestRAMWindow(physical:
// size:), at the address and for the size this image was built with).
//
// Channels: MicrokitDriverLayout.driverVMMChannel (the VMM put work in a queue) and
// driverDeviceChannel (the board device's interrupt; network and console drivers only: a block
// request is polled to completion, as on the native platform).
//
// The same program is the timer PD (kind MicrokitTimerLayout.kind): it maps nothing, owns PPI 30 on
// MicrokitTimerLayout.interruptChannel, takes each VMM's deadline by a protected procedure call on
// that VMM's channel and notifies it there when the deadline has passed (VMMCore's TimerMultiplexer).
import MicrokitSDK
import VMMCore

/// The driver's transport, reached through volatile MMIO in its mapped page.
struct DriverRegisterWindow: DeviceRegisterWindow {
    let base: UInt
    func read32(_ offset: UInt64) -> UInt32 { mmio_read32(base + UInt(offset)) }
    func write32(_ offset: UInt64, _ value: UInt32) { mmio_write32(base + UInt(offset), value) }
    func read8(_ offset: UInt64) -> UInt8 { mmio_read8(base + UInt(offset)) }
    func read16(_ offset: UInt64) -> UInt16 { mmio_read16(base + UInt(offset)) }
    func memoryBarrier() { memory_barrier() }
}

nonisolated(unsafe) var block: BlockDriverServer<DriverRegisterWindow>? = nil
nonisolated(unsafe) var network: NetDriverServer<DriverRegisterWindow>? = nil
nonisolated(unsafe) var console: ConsoleDriverServer<DriverRegisterWindow>? = nil
nonisolated(unsafe) var timer: TimerMultiplexer? = nil

func say(_ message: StaticString) {
    message.withUTF8Buffer { for byte in $0 { microkit_dbg_putc(Int32(byte)) } }
}

/// Shared region `index` of this driver's kind (DriverSharedRegion's order), in the driver's window.
func sharedRegion(_ kind: DriverKind, _ index: Int) -> SharedRegion {
    let region = kind.sharedRegions[index]
    return SharedRegion(base: UnsafeMutableRawPointer(bitPattern: UInt(MicrokitDriverLayout.driverWindow + region.offset))!,
                        size: Int(region.size))
}

@_cdecl("driver_start")
func driverStart(kind rawKind: UInt, slot: UInt, dmaPhysical: UInt64, dataPhysical: UInt64,
                 guestRAMPhysical: UInt64, guestRAMSize: UInt64) {
    if rawKind == MicrokitTimerLayout.kind {
        timer = TimerMultiplexer(clients: MicrokitTimerLayout.maxClients)
        vmm_timer_disarm()
        return
    }
    guard let kind = DriverKind(rawValue: UInt32(truncatingIfNeeded: rawKind)), slot < 32, dmaPhysical != 0 else {
        say("driver: this program image was linked without a kind, a slot or its DMA region; rebuild with `vmm build`\n")
        return
    }
    let registers = DriverRegisterWindow(base: UInt(MicrokitDriverLayout.driverRegisters
                                                    + MicrokitDriverLayout.boardOffsetInPage(slot: Int(slot))))
    var dma = DMARegion(host: UnsafeMutableRawPointer(bitPattern: UInt(MicrokitDriverLayout.driverDMA))!,
                        physical: dmaPhysical, size: Int(MicrokitDriverLayout.driverDMASize))
    switch kind {
    case .block:
        guard let driver = try? VirtioBlockDriver(registers: registers, dma: &dma) else {
            say("driver: no virtio-blk device on this driver's transport; its disk is left out\n")
            return
        }
        let data = kind.sharedRegions[3]
        // An image built without its VM's guest RAM serves the data region only: a request naming guest
        // RAM gets an error, it is never sent somewhere else by DMA.
        let guestRAM = guestRAMPhysical != 0 && guestRAMSize != 0
            ? MicrokitDriverLayout.blockGuestRAMWindow(physical: guestRAMPhysical, size: guestRAMSize) : nil
        if guestRAM == nil {
            say("driver: this image has no guest RAM address or size; requests naming guest RAM are refused\n")
        }
        block = BlockDriverServer(driver: driver, requests: sharedRegion(kind, 0), responses: sharedRegion(kind, 1),
                                  info: sharedRegion(kind, 2), dataPhysical: dataPhysical, dataSize: data.size,
                                  guestRAM: guestRAM)
    case .network:
        let transmitData = kind.sharedRegions[5]
        guard let driver = try? VirtioNetDriver(registers: registers, dma: &dma),
              let server = try? NetDriverServer(driver: driver, rxFree: sharedRegion(kind, 0),
                                                rxActive: sharedRegion(kind, 1), txFree: sharedRegion(kind, 2),
                                                txActive: sharedRegion(kind, 3), rxData: sharedRegion(kind, 4),
                                                txDataPhysical: dataPhysical, txDataSize: transmitData.size,
                                                dma: &dma) else {
            say("driver: no virtio-net device on this driver's transport; its network is left out\n")
            return
        }
        network = server
    case .console:
        guard let driver = try? VirtioConsoleDriver(registers: registers, dma: &dma) else {
            say("driver: no virtio-console device on this driver's transport; its console is left out\n")
            return
        }
        console = ConsoleDriverServer(driver: driver, rxQueue: sharedRegion(kind, 0), txQueue: sharedRegion(kind, 1),
                                      rxData: sharedRegion(kind, 2), txData: sharedRegion(kind, 3))
    }
}

@_cdecl("driver_notified")
func driverNotified(_ channel: microkit_channel) {
    if timer != nil {
        timerNotified(channel)
        return
    }
    var answer = false
    switch UInt32(channel) {
    case MicrokitDriverLayout.driverVMMChannel:
        if block != nil { answer = block!.serve() }
        if network != nil { answer = network!.transmit() }
        if console != nil { answer = console!.transmit() }
    case MicrokitDriverLayout.driverDeviceChannel:
        if network != nil { answer = network!.deviceInterrupt() }
        if console != nil { answer = console!.deviceInterrupt() }
        microkit_irq_ack(channel)
    default:
        say("driver: notification on an unexpected channel\n")
    }
    if answer { microkit_notify(microkit_channel(MicrokitDriverLayout.driverVMMChannel)) }
}

// MARK: The timer PD

/// Arms the hardware timer at the earliest deadline of all VMMs, or disarms it.
func armTimer() {
    if let deadline = timer?.earliest { vmm_timer_arm(deadline) } else { vmm_timer_disarm() }
}

/// A VMM's set-deadline call: the reply's label (MicrokitTimerLayout). A device driver refuses every call.
@_cdecl("driver_protected")
func driverProtected(_ channel: microkit_channel, _ label: UInt64, _ count: UInt64, _ message: UInt64) -> UInt64 {
    guard timer != nil else { return MicrokitTimerLayout.replyBadRequest }
    let reply = timer!.protectedCall(channel: UInt32(channel), label: label, count: count, message: message)
    armTimer()
    return reply
}

/// PPI 30: wakes every VMM whose deadline has passed, then re-arms for the others (an early interrupt
/// wakes nobody and only re-arms). Notifications from the VMMs carry nothing for the timer.
func timerNotified(_ channel: microkit_channel) {
    guard UInt32(channel) == MicrokitTimerLayout.interruptChannel else {
        say("timer: notification on an unexpected channel\n")
        return
    }
    vmm_timer_disarm()
    for client in timer!.expire(now: vmm_counter()) {
        microkit_notify(microkit_channel(MicrokitTimerLayout.clientChannel(client)))
    }
    armTimer()
    microkit_irq_ack(channel)
}
