#!/usr/bin/env python3
# Seed inputs for the fuzz targets (one well-formed case each, in the harnesses' input formats), so
# that a short run starts from a live queue, a decodable blob and a bootable header rather than
# having to discover them. Usage: seeds.py CORPUS_ROOT; writes CORPUS_ROOT/<target>/seed-*.
import os, struct, sys

BASE = 0x4000_0000
NEXT, WRITE, INDIRECT = 1, 2, 4

def desc(addr, length, flags=0, nxt=0):
    return struct.pack('<QIHH', addr, length, flags, nxt)

def virtqueue():
    # size 4, indirect + event index, rings at RAM offsets 0x100 / 0x200 / 0x300; RAM = input[8:].
    header = bytes([2, 3]) + struct.pack('<HHH', 0x100, 0x200, 0x300)
    ram = bytearray(0x400)
    table = (desc(BASE + 0x1000, 16, NEXT, 1) + desc(BASE + 0x2000, 512, WRITE | NEXT, 2)
             + desc(BASE + 0x3000, 1, WRITE) + desc(BASE + 0x180, 32, INDIRECT))
    ram[0x100:0x100 + len(table)] = table
    ram[0x180:0x1A0] = desc(BASE + 0x1000, 16, NEXT, 1) + desc(BASE + 0x3000, 1, WRITE)
    ram[0x200:0x200 + 10] = struct.pack('<HHHHH', 0, 2, 0, 3, 1)     # flags, idx, ring[0..1]
    ram[0x20C:0x20E] = struct.pack('<H', 1)                            # used_event
    return header + bytes(ram)

def ram_write(offset, data):
    assert len(data) < 256
    return bytes([3]) + struct.pack('<HB', offset, len(data)) + data

def transport(request_type, sector, data_flags):
    # 16 sectors, writable disk; initialise with INDIRECT_DESC | EVENT_IDX | BLK_F_FLUSH, size 4.
    out = bytes([16, 0])
    out += bytes([5]) + struct.pack('<I', (1 << 28) | (1 << 29) | (1 << 9)) + bytes([2])
    out += struct.pack('<HHH', 0x100, 0x200, 0x300)
    table = (desc(BASE + 0x1000, 16, NEXT, 1) + desc(BASE + 0x2000, 512, data_flags | NEXT, 2)
             + desc(BASE + 0x3000, 1, WRITE))
    out += ram_write(0x100, table)
    out += ram_write(0x1000, struct.pack('<IIQ', request_type, 0, sector))
    out += ram_write(0x200, struct.pack('<HHH', 0, 1, 0))
    out += bytes([6])                                   # acknowledge, notify queue 0
    out += bytes([2, 13])                               # read InterruptStatus
    return out

def configuration():
    bootargs = b'console=ttyAMA0 rdinit=/init'
    devices = (bytes([2, 1, 0, 0, 0, 0, 0, 0]) + bytes([1, 0, 0x52, 0x54, 0, 0x12, 0x34, 0x56])
               + bytes([3, 0, 0, 0, 0, 0, 0, 0]))
    name, compatible = b'uart_x', b'arm,pl011\0arm,primecell\0'
    passthrough = struct.pack('<QQIBBH', 0x0c00_0000, 0x1000, 100, len(name), 0, len(compatible)) + name + compatible
    length = 48 + len(devices) + len(passthrough) + len(bootargs)
    header = struct.pack('<IIIIQQIIII', 0x434d_4d56, 2, length, 2, BASE, 0x2000_0000, len(bootargs), 3, 1,
                         len(passthrough))
    return header + devices + passthrough + bootargs

def boot():
    bootargs = b'console=ttyAMA0 earlycon'
    image = struct.pack('<IIQQQQQQII', 0x1400_0000, 0, 0, 0x200_0000, 0xA, 0, 0, 0, 0x644d_5241, 0)
    return (bytes([0]) + struct.pack('<HHII', BASE >> 21, 0x100, 0x100_0000, 0x40_0000) + bytes([len(bootargs)])
            + image + bootargs)

def distributor():
    out = bytes([2]) + struct.pack('<H', 64) + bytes([2])              # 2 vCPUs, 64 SPIs, 2 LRs
    def write(vcpu, offset, value): return bytes([0, vcpu + 1]) + struct.pack('<HI', offset, value)
    def inject(vcpu, irq): return bytes([2, vcpu + 1]) + struct.pack('<H', irq)
    def freed(vcpu, index): return bytes([3, vcpu + 1, index])
    out += write(0, 0x000, 1) + write(0, 0x100, 0xFFFF_FFFF) + write(0, 0x104, 0xFFFF_FFFF)
    out += write(0, 0x820, 0x0201_0201) + write(0, 0x420, 0x8040_2010)
    out += inject(0, 32) + inject(0, 33) + inject(0, 34) + inject(0, 35) + inject(1, 27)
    out += write(1, 0xF00, 0x0001_0003) + freed(0, 0) + freed(0, 1) + write(0, 0x200, 0x8000_0000)
    out += freed(1, 0) + freed(0, 0)
    return out

def distributor_gicv3():
    out = bytes([0x80 | 20]) + struct.pack('<H', 64) + bytes([4])       # GICv3, 20 vCPUs, 64 SPIs, 4 LRs
    def write(vcpu, offset, value, width=0): return bytes([0 | width << 3, vcpu + 1]) + struct.pack('<IQ', offset, value)
    def rwrite(vcpu, offset, value, width=0): return bytes([4 | width << 3, vcpu + 1]) + struct.pack('<IQ', offset, value)
    def rread(vcpu, offset, width=3): return bytes([5 | width << 3, vcpu + 1]) + struct.pack('<I', offset)
    def sgi(vcpu, value): return bytes([6, vcpu + 1]) + struct.pack('<Q', value)
    def inject(vcpu, irq): return bytes([2, vcpu + 1]) + struct.pack('<H', irq)
    out += write(0, 0x0000, 0x13) + write(0, 0x0104, 0xFFFF_FFFF) + write(0, 0x6108, 0x0103, width=3)
    for n in range(20): out += rread(0, n * 0x2_0000 + 8)
    out += rwrite(0, 0x0014, 0) + rwrite(17, 17 * 0x2_0000 + 0x1_0100, 1 << 27)
    out += write(0, 0x6110, 1 << 31, width=3) + inject(0, 33) + inject(0, 34) + inject(17, 27)
    out += sgi(0, 3 << 24 | 1 << 16 | 0b11) + sgi(5, 1 << 40 | 7 << 24) + rwrite(3, 0x2_0014, 0)
    return out

def driverqueues_header(block_blocks=2, rx_buffers=4, tx_buffers=4):
    # No region shrunk; block data of `block_blocks` 4 KiB blocks; net data of so many 2 KiB buffers.
    return bytes([0xFF, block_blocks, rx_buffers | tx_buffers << 4])

def segs(*pairs):
    # Guest buffers at RAM offsets: count, then (u16 offset, u16 length) each.
    return bytes([len(pairs)]) + b''.join(struct.pack('<HH', offset, length) for offset, length in pairs)

def driverqueues_block():
    # A 32-block disk, then reads and writes the driver answers well (the answer byte follows the
    # operation that notifies it: 1 answer, | 4 with 4 × 16 bytes of data; 3 answer two clock readings late).
    out = driverqueues_header()
    out += bytes([2, 0, 32])                                            # publish: writable, 32 blocks
    out += bytes([3]) + struct.pack('<H', 3) + segs((0x100, 1024), (0x1000, 3072)) + bytes([5, 4]) + bytes(range(64))
    out += bytes([4]) + struct.pack('<H', 8) + segs((0x2000, 4096)) + bytes([1])
    out += bytes([4]) + struct.pack('<H', 9) + segs((0x3000, 512)) + bytes([1, 1])   # read block 1, write it
    out += bytes([3]) + struct.pack('<H', 20) + segs((0x4000, 5120), (0x6000, 4096)) + bytes([1, 1])  # 2 + 1 blocks
    out += bytes([5, 1])                                                # flush
    out += bytes([3]) + struct.pack('<H', 0) + segs((0x5000, 512)) + bytes([3, 2])   # answered late
    return out

def driverqueues_net():
    out = driverqueues_header()
    # Two frames on rx active (buffers 0 and 1, 60 and 100 bytes, the first with 16 bytes of its own),
    # each taken by the guest; the driver asked for the buffers back (notify byte 0: it does nothing).
    out += bytes([6, 2]) + bytes([0]) + struct.pack('<H', 60) + bytes([16]) + bytes(range(16))
    out += bytes([1]) + struct.pack('<H', 100) + bytes([0]) + bytes([0, 0, 0])
    # Three frames sent (header + frame in two guest buffers); the driver gives two buffers back.
    out += bytes([7]) + segs((0x100, 20), (0x200, 100)) + bytes([0])
    out += bytes([7]) + segs((0x300, 74)) + bytes([8, 2])
    out += bytes([7]) + segs((0x400, 12), (0x500, 1514))
    return out

def driverqueues_console():
    out = driverqueues_header()
    text = b'hello, world\n'
    out += bytes([9]) + struct.pack('<H', len(text)) + text + bytes([0])
    out += bytes([10]) + struct.pack('<H', 20) + bytes(range(65, 85)) + bytes([0, 0])
    out += bytes([11, 2])                                               # the driver takes the output
    out += bytes([10]) + struct.pack('<H', 300) + bytes(range(256)) + bytes(range(44)) + bytes([0xFF])
    out += bytes([10, 0, 0, 0, 0])                                       # taken on the next call
    return out

def driverqueues_raw():
    out = driverqueues_header()
    # Both ends of a block request queue of 64 over the requests region: enqueue, count, peek, dequeue,
    # the plug; then a 4096-byte byte queue over the console rx regions: enqueue, dequeue, count, signal.
    entry = struct.pack('<IIQQHHI', 0, 0, 0x1000, 5, 2, 0, 7)
    out += bytes([12, 0, 0, 6, 5, 3]) + entry + bytes([4, 2, 0, 5, 8, 3, 1])
    out += bytes([13, 10, 12, 12, 4, 1]) + struct.pack('<H', 10) + b'0123456789' + bytes([0, 0, 2, 3, 1, 1])
    return out

def switch():
    """Two ports: a plain frame each way, a TCPv4 TSO frame of 3000 bytes, receives in between."""
    def send(port, header, frame):
        return bytes([port, 1]) + header + struct.pack('<H', len(frame)) + frame
    def receive(port):
        return bytes([port, 0])
    eth = lambda dst, src, et: bytes(dst) + bytes(src) + struct.pack('>H', et)
    a, b = [0x52, 0x54, 0, 0, 1, 0x0a], [0x52, 0x54, 0, 0, 1, 0x0b]
    plain = bytes(12)
    payload = bytes(range(256)) * 11 + bytes(172)
    ip = bytes([0x45, 0]) + struct.pack('>H', 40 + len(payload)) + bytes([0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 9, 1, 10, 0, 9, 2])
    tcp = bytes([0x9c, 0x40, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0])
    tso = bytes([1, 1, 54, 0]) + struct.pack('<HHHH', 1448, 34, 16, 0)
    big = eth(b, a, 0x0800) + ip + tcp + payload
    out = bytes([1, 3]) + struct.pack('<H', 5000)
    out += send(0, plain, eth([0xff] * 6, a, 0x0806) + bytes(28)) + receive(1)
    out += send(1, plain, eth(a, b, 0x0806) + bytes(28)) + receive(0)
    out += send(0, tso, big) + receive(1) + receive(1)
    return out

SEEDS = {
    'virtqueue': [virtqueue()],
    'transport': [transport(0, 1, WRITE), transport(1, 2, 0), transport(8, 0, WRITE), transport(4, 0, WRITE)],
    'configuration': [configuration()],
    'boot': [boot()],
    'distributor': [distributor(), distributor_gicv3()],
    'driverqueues': [driverqueues_block(), driverqueues_net(), driverqueues_console(), driverqueues_raw()],
    'switch': [switch()],
}

root = sys.argv[1]
for target, seeds in SEEDS.items():
    os.makedirs(os.path.join(root, target), exist_ok=True)
    for n, seed in enumerate(seeds):
        with open(os.path.join(root, target, f'seed-{n}'), 'wb') as f:
            f.write(seed)
