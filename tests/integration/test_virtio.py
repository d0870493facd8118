"""The guest's virtio devices through the VMM, backed by the board's own devices (native platform).

QEMU gives the board a virtio-blk device on a raw disk file, a virtio-net device on user networking
with a port forward, and a virtio console on a unix socket; the VMM drives them and emulates
virtio-mmio devices for the guest. These tests move real bytes: a pattern written with dd is in the
host file after power-off and reads back after a reboot; a page served by busybox httpd in the guest
is fetched from the host; text crosses hvc0 both ways.
"""

import hashlib
import os
import socket
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import (  # noqa: E402
    INIT_DONE, SerialConsole, board_arguments, built_image, console_round_trip, fetch, free_port)

BOOT_TIMEOUT = 180.0
MAC = "52:54:00:12:34:56"


def vmm_command(disk, port, console_socket):
    elf = Path(os.environ.get("VMM_ELF", built_image("linux")))
    return [os.environ.get("VMM_QEMU", "qemu-system-aarch64"), *board_arguments(), "-m", "1G", "-nographic",
            "-global", "virtio-mmio.force-legacy=false",
            "-drive", f"file={disk},if=none,format=raw,id=disk0", "-device", "virtio-blk-device,drive=disk0",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:80",
            "-device", f"virtio-net-device,netdev=net0,mac={MAC}",
            "-chardev", f"socket,id=console1,path={console_socket},server=on,wait=off",
            "-device", "virtio-serial-device", "-device", "virtconsole,chardev=console1",
            "-kernel", str(elf)]


class VirtioDeviceTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.disk = Path(self.dir.name, "disk.img")
        with open(self.disk, "wb") as f:
            f.truncate(64 << 20)
        self.port = free_port()
        self.socket_path = Path(self.dir.name, "hvc0.sock")

    def boot(self, name):
        console = SerialConsole(vmm_command(self.disk, self.port, self.socket_path), name=name)
        self.addCleanup(console.kill)
        console.expect(INIT_DONE, BOOT_TIMEOUT)
        console.wait_for_prompt(BOOT_TIMEOUT)
        return console

    def test_block_writes_reach_the_host_file_and_read_back_after_reboot(self):
        console = self.boot("virtio-blk-write")
        self.assertIn("vda", console.run("cat /proc/partitions"))
        self.assertEqual(console.run("cat /sys/block/vda/size"), str((64 << 20) // 512))
        # 1 MiB of a known pattern at offset 1 MiB, flushed to the device.
        console.run("yes vmm-disk-pattern-0123456789 | head -c 1048576 > /tmp/pattern", timeout=60)
        console.run("dd if=/tmp/pattern of=/dev/vda bs=4096 seek=256 conv=fsync", timeout=120)
        self.assertEqual(console.last_status, 0)
        console.sendline("sync; poweroff -f")
        self.assertEqual(console.wait_exit(60.0), 0)

        pattern = (b"vmm-disk-pattern-0123456789\n" * 40000)[:1 << 20]
        data = self.disk.read_bytes()
        self.assertEqual(data[1 << 20:2 << 20], pattern, "the host file does not hold the guest's write")
        self.assertEqual(data[:1 << 20], bytes(1 << 20), "bytes before the write changed")

        console = self.boot("virtio-blk-readback")
        digest = console.run("dd if=/dev/vda bs=4096 skip=256 count=256 2>/dev/null | md5sum", timeout=120)
        self.assertEqual(digest.split()[0], hashlib.md5(pattern).hexdigest())

    def test_host_fetches_a_page_served_in_the_guest_through_the_forwarded_port(self):
        console = self.boot("virtio-net")
        self.assertIn(MAC, console.run("cat /sys/class/net/eth0/address"))
        console.run("ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2")
        self.assertEqual(console.last_status, 0)
        body = os.urandom(48 * 1024).hex().encode()  # 96 KiB: many frames each way
        console.run("mkdir -p /www")
        # Write the page in the guest from a short script of known content.
        console.run(f"head -c {len(body)} /dev/zero | tr '\\0' 'v' > /www/index.html")
        console.run("httpd -p 80 -h /www")
        expected = b"v" * len(body)
        self.assertEqual(fetch(f"http://127.0.0.1:{self.port}/index.html", console), expected)

    def test_text_crosses_hvc0_both_ways(self):
        console = self.boot("virtio-console")
        self.assertTrue(console.run("ls /dev/hvc0").endswith("hvc0"))
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(host.close)
        host.connect(str(self.socket_path))
        host.settimeout(30)
        received, read = console_round_trip(console, host, "/dev/hvc0", "over-hvc0")
        self.assertIn(b"guest-to-host-over-hvc0", received)
        self.assertEqual(read, "host-to-guest-over-hvc0")


if __name__ == "__main__":
    unittest.main()
