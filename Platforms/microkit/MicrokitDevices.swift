// The guest's virtio devices on the Microkit platform: each is backed by a driver protection domain
// (Platforms/microkit/driver) through the queues MicrokitDriverLayout places in this PD's address
// space. The VMM validates every guest descriptor (VMMCore's virtqueues), copies between guest RAM
// and the shared data regions (VMMCore's DriverClients) and never touches a board device.
import MicrokitSDK
import VMMCore

/// A driver PD as the VMM's clients see it: a channel to signal and the counter for timeouts.
struct MicrokitLink: DriverLink {
    let channel: UInt32
    mutating func notifyDriver() { microkit_notify(microkit_channel(channel)) }
    func ticks() -> UInt64 { vmm_counter() }
    var ticksPerMillisecond: UInt64 { max(vmm_counter_frequency() / 1000, 1) }
}

/// The clients of the guest's devices, numbered per kind like VMMCore's VirtioDevices, and for each
/// driver channel the device it belongs to.
struct DriverBackedDevices {
    enum Device {
        case block(Int)
        case network(Int)
        case console(Int)
        case serial
    }

    var blocks: [BlockClient<MicrokitLink>] = []
    var networks: [NetClient<MicrokitLink>] = []
    var consoles: [ConsoleClient<MicrokitLink>] = []
    /// The console behind the VM's emulated PL011 (VMs after the first in a system of several).
    var serial: ConsoleClient<MicrokitLink>? = nil
    var channels: [(channel: UInt32, device: Device)] = []

    /// Shared region `index` of device k's window (DriverSharedRegion's order for its kind).
    static func region(_ kind: DriverKind, device k: Int, _ index: Int) -> SharedRegion {
        let region = kind.sharedRegions[index]
        let address = MicrokitDriverLayout.vmmWindow(k) + region.offset
        return SharedRegion(base: UnsafeMutableRawPointer(bitPattern: UInt(address))!, size: Int(region.size))
    }

    /// One client for each configured device, and the guest's view of them: device k keeps slot k
    /// (its address and interrupt) whatever happens to the others. A disk whose driver has not
    /// published its storage information is given to the guest empty, its I/O failing. With `serial`,
    /// device `configured.count` is the console that carries the emulated PL011's bytes.
    static func connect(_ configured: [ConfiguredDevice], serial: Bool) -> (DriverBackedDevices, [VirtioDeviceDescription]) {
        var devices = DriverBackedDevices()
        var guest: [VirtioDeviceDescription] = []
        for (k, device) in configured.enumerated() where k < MicrokitDriverLayout.maxDevices {
            let link = MicrokitLink(channel: MicrokitDriverLayout.vmmChannel(k))
            switch device {
            case .block(let readOnly):
                let client = BlockClient(requests: region(.block, device: k, 0), responses: region(.block, device: k, 1),
                                         info: region(.block, device: k, 2), data: region(.block, device: k, 3),
                                         link: link, guestRAMOffset: MicrokitDriverLayout.blockGuestRAMOffset)
                if !client.isReady { log("vmm: a disk's driver did not publish its disk; the guest sees it empty\n") }
                devices.channels.append((link.channel, .block(devices.blocks.count)))
                guest.append(.qemuVirtSlot(k, .block(capacitySectors: client.isReady ? client.capacitySectors : 0,
                                                     readOnly: readOnly || client.readOnly)))
                devices.blocks.append(client)
            case .switchedNetwork:
                log("vmm: a network between VMs needs the native platform; the card is left out\n")
                continue
            case .network(let mac):
                let client = NetClient(rxFree: region(.network, device: k, 0), rxActive: region(.network, device: k, 1),
                                       txFree: region(.network, device: k, 2), txActive: region(.network, device: k, 3),
                                       rxData: region(.network, device: k, 4), txData: region(.network, device: k, 5),
                                       link: link)
                devices.channels.append((link.channel, .network(devices.networks.count)))
                devices.networks.append(client)
                guest.append(.qemuVirtSlot(k, .network(mac: mac)))
            case .console:
                let client = ConsoleClient(rxQueue: region(.console, device: k, 0), txQueue: region(.console, device: k, 1),
                                           rxData: region(.console, device: k, 2), txData: region(.console, device: k, 3),
                                           link: link)
                devices.channels.append((link.channel, .console(devices.consoles.count)))
                devices.consoles.append(client)
                guest.append(.qemuVirtSlot(k, .console))
            }
        }
        let k = configured.count
        if serial, k < MicrokitDriverLayout.maxDevices {
            let link = MicrokitLink(channel: MicrokitDriverLayout.vmmChannel(k))
            devices.serial = ConsoleClient(rxQueue: region(.console, device: k, 0), txQueue: region(.console, device: k, 1),
                                           rxData: region(.console, device: k, 2), txData: region(.console, device: k, 3),
                                           link: link)
            devices.channels.append((link.channel, .serial))
        }
        return (devices, guest)
    }

    func device(on channel: UInt32) -> Device? {
        for entry in channels where entry.channel == channel { return entry.device }
        return nil
    }
}
