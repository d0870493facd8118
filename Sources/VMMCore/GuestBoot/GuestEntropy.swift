// The guest's first randomness: the seed the VMM gives Linux in /chosen/rng-seed (Documentation/
// devicetree/bindings/chosen.txt; drivers/of/fdt.c hands it to add_bootloader_randomness, which
// credits it unless the guest boots with random.trust_bootloader=off).
//
// Without it a guest has no entropy source at all (QEMU virt's Cortex-A53 has no RNDR, and the VMM
// gives no virtio-rng), so its crng stays empty for minutes, and while it is empty every
// get_random_bytes — each syscall's stack offset draws from it — takes one global spinlock and
// extracts from the input pool with interrupts off. With several vCPUs sharing one core (seL4) a
// vCPU that holds it is preempted and the others spin out their timeslices: `yes | head -c 1M`
// across two CPUs had not ended after 100 s in a 2-vCPU guest; seeded, a 4-vCPU guest takes 10 s.
//
// The seed is the one `vmm build` drew from the host for this VM (a new one every build, and
// `vmm run` builds each time), mixed with the one the board gives for this boot, where it gives
// one: QEMU virt writes /chosen/rng-seed into the device tree it leaves at the start of RAM for
// whatever it boots. XOR keeps whichever of the two is secret and fresh.

public enum GuestEntropy {
    /// Bytes of seed `vmm build` writes per VM (Linux takes any length; 64 is 512 bits).
    public static let seedSize = 64

    /// The build's seed with the board's XORed in (cycled over the seed's length), and the counter's
    /// eight bytes over its last eight, so that a guest that reboots from the same image gets other
    /// bytes (the counter is no secret: the seeds are what the guest may credit).
    public static func mix(_ seed: UnsafeRawBufferPointer, with board: [UInt8]?, counter: UInt64) -> [UInt8] {
        var mixed = [UInt8](seed)
        guard !mixed.isEmpty else { return mixed }
        for (index, byte) in (board ?? []).enumerated() { mixed[index % mixed.count] ^= byte }
        for index in 0..<min(8, mixed.count) {
            mixed[mixed.count - 1 - index] ^= UInt8(truncatingIfNeeded: counter >> (8 * UInt64(index)))
        }
        return mixed
    }

    /// /chosen/rng-seed of the flattened device tree at the start of `blob` (DeviceTreeBlob checks
    /// every offset and length), or nil: no tree there, a malformed one, or no such property.
    public static func boardSeed(deviceTree blob: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let tree = DeviceTreeBlob(blob) else { return nil }
        var seed: [UInt8]? = nil
        _ = tree.walk { property in
            guard tree.isInNode(property, "chosen"), tree.isNamed(property, "rng-seed") else { return true }
            if property.length > 0 {
                seed = [UInt8](UnsafeRawBufferPointer(rebasing: blob[property.value..<(property.value + property.length)]))
            }
            return false
        }
        return seed
    }
}
