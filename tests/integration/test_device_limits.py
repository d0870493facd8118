"""Every configured virtio device works, up to the documented maximum (8 disks, 4 nets, 4 consoles).

Each test writes a system file into a temporary directory and boots it the README's way,
`vmm run FILE` (which builds the image and execs QEMU with one board device per guest device),
then moves real bytes through every device and checks that device n of each kind is the n-th one
configured: console n is /dev/hvcN on socket n, disk n is /dev/vd(a+n) with serial "vmm-disk-N"
on file n, net n is ethN on its own user network 10.0.(2+N).0/24 behind its own forwarded port.
Two boots: two consoles, then the maximum in one VM.
"""

import os
import socket
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import (  # noqa: E402
    HOST_VMM, INIT_DONE, REPO_ROOT, SerialConsole, board_options, fetch, free_port, guest_paths, short_temp_dir)

BOOT_TIMEOUT = 240.0
MiB = 1 << 20


def disk_pattern(n):
    """What the guest writes to disk n: 1 MiB of a line naming the disk (`yes LINE | head -c`)."""
    return (f"vmm-limit-disk-{n}-pattern\n".encode() * (MiB // 20))[:MiB]


def page(n):
    """The page interface n serves: 96 KiB (many frames) of a line naming the interface."""
    return (f"page-served-on-eth{n}\n".encode() * 8192)[:96 * 1024]


class DeviceLimitTests(unittest.TestCase):
    def setUp(self):
        self.dir = short_temp_dir("vmm-limits-", self)

    # -- booting -------------------------------------------------------------
    def system_file(self, disks=0, nets=(), consoles=0):
        """A system file with `disks` disks (disk n: disk{n}.img, 4 MiB + n * 512 KiB, made by the
        build), one net per host port in `nets` (forwarding it to the guest's port 80) and `consoles`
        consoles (socket hvc{n}.sock)."""
        kernel, initrd = guest_paths()
        lines = ["[[vm]]", f'kernel = "{kernel}"', f'initrd = "{initrd}"', ""]
        for n in range(disks):
            lines += ["[[vm.block]]", f'file = "disk{n}.img"', f'size = "{4 * 1024 + 512 * n}K"', ""]
        for port in nets:
            lines += ["[[vm.net]]", f'forward = ["tcp:{port}:80"]', ""]
        for n in range(consoles):
            lines += ["[[vm.console]]", f'socket = "hvc{n}.sock"', ""]
        path = self.dir / "system.toml"
        path.write_text("\n".join(lines))
        return path

    def boot(self, path, name):
        console = SerialConsole([str(HOST_VMM), "run", str(path), "--output", str(self.dir / "build"), *board_options()],
                                name=name, env={**os.environ}, cwd=REPO_ROOT)
        self.addCleanup(console.kill)
        console.expect(INIT_DONE, BOOT_TIMEOUT)
        console.wait_for_prompt(BOOT_TIMEOUT)
        return console

    def expect_devices_line(self, console, disks, nets, consoles):
        def counted(count, word):
            return f"{count} {word}" + ("" if count == 1 else "s")
        line = f"vmm: devices: {counted(disks, 'disk')}, {counted(nets, 'network')}, {counted(consoles, 'console')}"
        if line.encode() not in console.log or b"left out" in console.log:
            console.fail(f"the VMM did not bring up every device: expected {line!r} and nothing left out")

    # -- consoles ------------------------------------------------------------
    def check_consoles_both_ways(self, console, count):
        """Text written to /dev/hvcN reaches socket N and no other; text sent on socket N is read
        from /dev/hvcN."""
        hosts = []
        for n in range(count):
            host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.addCleanup(host.close)
            host.connect(str(self.dir / f"hvc{n}.sock"))
            host.settimeout(30)
            hosts.append(host)

        received = [b""] * count
        for n in range(count):
            console.run(f"echo guest-to-host-on-hvc{n} > /dev/hvc{n}", check=True)
        for n in range(count):
            while f"guest-to-host-on-hvc{n}".encode() not in received[n]:
                try:
                    chunk = hosts[n].recv(4096)
                except socket.timeout:
                    console.fail(f"socket {n} got {received[n]!r}, not hvc{n}'s text")
                if not chunk:
                    break
                received[n] += chunk
        time.sleep(0.5)      # anything misrouted has had time to arrive
        for n in range(count):
            hosts[n].setblocking(False)
            try:
                received[n] += hosts[n].recv(65536)
            except BlockingIOError:
                pass
            hosts[n].settimeout(30)
            for m in range(count):
                if m != n:
                    self.assertNotIn(f"guest-to-host-on-hvc{m}".encode(), received[n],
                                     f"hvc{m}'s output reached socket {n}")
            self.assertIn(f"guest-to-host-on-hvc{n}".encode(), received[n])

        for n in range(count):
            console.sendline(f"head -n 1 /dev/hvc{n} > /tmp/from-host-{n} &")
            console.wait_for_prompt(30)
        time.sleep(1)
        for n in range(count):
            hosts[n].sendall(f"host-to-guest-on-socket{n}\n".encode())
        deadline = time.monotonic() + 30
        expected = "\n".join(f"host-to-guest-on-socket{n}" for n in range(count))
        files = " ".join(f"/tmp/from-host-{n}" for n in range(count))
        while time.monotonic() < deadline:
            if console.run(f"cat {files} 2>/dev/null") == expected:
                break
            time.sleep(1)
        for n in range(count):
            self.assertEqual(console.run(f"cat /tmp/from-host-{n}"), f"host-to-guest-on-socket{n}",
                             f"/dev/hvc{n} did not read what socket {n} sent")

    # -- the tests -------------------------------------------------------------
    def test_two_consoles_each_carry_their_own_text_both_ways(self):
        console = self.boot(self.system_file(consoles=2), "limits-two-consoles")
        self.expect_devices_line(console, 0, 0, 2)
        self.check_consoles_both_ways(console, 2)
        console.sendline("poweroff -f")
        self.assertEqual(console.wait_exit(60.0), 0)

    def test_eight_disks_four_networks_four_consoles_in_one_vm(self):
        ports = []
        while len(ports) < 4:
            port = free_port()
            if port not in ports:
                ports.append(port)
        console = self.boot(self.system_file(disks=8, nets=ports, consoles=4), "limits-maximum")
        self.expect_devices_line(console, 8, 4, 4)

        # Disks: guest disk n is vd(a+n), serial vmm-disk-n, capacity of file n.
        for n in range(8):
            vd = "vd" + "abcdefgh"[n]
            self.assertEqual(console.run(f"cat /sys/block/{vd}/serial"), f"vmm-disk-{n}")
            self.assertEqual(console.run(f"cat /sys/block/{vd}/size"), str((4 * 1024 + 512 * n) * 1024 // 512))
        for n in range(8):
            vd = "vd" + "abcdefgh"[n]
            console.run(f"yes vmm-limit-disk-{n}-pattern | head -c {MiB} > /tmp/pattern", timeout=60, check=True)
            console.run(f"dd if=/tmp/pattern of=/dev/{vd} bs=4096 seek=256 conv=fsync", timeout=120, check=True)

        # Networks: ethN has the default MAC of interface N (52:54:00:12:34:5N), its own subnet, and a page of its own behind port N.
        for n in range(4):
            self.assertEqual(console.run(f"cat /sys/class/net/eth{n}/address"), f"52:54:00:12:34:5{n}")
            console.run(f"ip link set eth{n} up && ip addr add 10.0.{2 + n}.15/24 dev eth{n}", check=True)
            console.run(f"mkdir -p /www{n} && yes page-served-on-eth{n} | head -c {96 * 1024} > /www{n}/index.html",
                        check=True)
            console.run(f"httpd -p 10.0.{2 + n}.15:80 -h /www{n}", check=True)
        before = [int(console.run(f"cat /sys/class/net/eth{n}/statistics/rx_bytes")) for n in range(4)]
        for n, port in enumerate(ports):
            body = fetch(f"http://127.0.0.1:{port}/index.html", console)
            self.assertEqual(body, page(n), f"host port {port} did not return eth{n}'s page byte for byte")
        after = [int(console.run(f"cat /sys/class/net/eth{n}/statistics/rx_bytes")) for n in range(4)]
        for n in range(4):
            self.assertGreater(after[n], before[n], f"eth{n} received nothing while its page was fetched")

        self.check_consoles_both_ways(console, 4)

        console.sendline("sync; poweroff -f")
        self.assertEqual(console.wait_exit(60.0), 0)
        for n in range(8):
            size = (4 * 1024 + 512 * n) * 1024
            expected = bytes(MiB) + disk_pattern(n) + bytes(size - 2 * MiB)
            data = (self.dir / f"disk{n}.img").read_bytes()
            self.assertEqual(len(data), size)
            self.assertTrue(data == expected, f"disk{n}.img does not hold exactly disk {n}'s pattern at 1 MiB"
                            + ("" if data[MiB:2 * MiB] != disk_pattern(n) else " (pattern there, other bytes changed)"))


if __name__ == "__main__":
    unittest.main()
