"""A guest with 8 GiB of RAM on the native platform: RAM past the 4 GiB boundary of its physical
address space (stage 2 with a 40-bit IPA), backed by host RAM past 4 GiB (`vmm run` gives QEMU
-m 8320M).

One boot of a 1-vCPU guest with `ram = "8G"` and a disk, run the user's way (`vmm run` of a system
file written into a temporary directory); each check a subtest:

  size       /proc/iomem has System RAM 40000000-23fffffff and `free` counts more than 7.5 GiB;
  high       64 copies of a 32 MiB random file in the guest's root file system (2 GiB, which Linux
             takes from its Normal zone, the RAM above 4 GiB, before its DMA zone): the Normal zone's
             free pages fall by at least that much, and every copy has the original's md5sum;
  disk       one of those copies written to the disk with O_DIRECT (virtio buffers in RAM above
             4 GiB, which the VMM hands to the board's disk by host-physical address) and read back:
             the guest's md5sum, the read-back's and that of the disk image's bytes on the host agree;
  poweroff   `poweroff -f` ends QEMU with exit status 0.

Needs QEMU (skipped without it), the host tool and native objects (`make integration-test`), and a
host with some 9 GiB of memory free (QEMU backs every guest page the guest touches).
"""

import hashlib
import re
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import (  # noqa: E402
    boot_to_prompt, guest_paths, require_qemu_and_host_tool, short_temp_dir, write_system)

BOOT_TIMEOUT = 300.0
COMMAND_TIMEOUT = 300.0
CHUNK_MIB = 32
COPIES = 64
PAGE = 4096


def normal_zone_free_pages(zoneinfo):
    """The free pages of the Normal zone of node 0 in /proc/zoneinfo."""
    match = re.search(r"Node 0, zone\s+Normal\s*\n\s*pages free\s+(\d+)", zoneinfo)
    if not match:
        raise AssertionError(f"no Normal zone in /proc/zoneinfo:\n{zoneinfo[:2000]}")
    return int(match.group(1))


class LargeRAMTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_qemu_and_host_tool()

    def test_eight_gib_guest(self):
        directory = short_temp_dir("vmm-memory-", self)
        kernel, initrd = guest_paths()
        disk = directory / "disk.img"
        system = write_system(directory / "memory.toml", None, [(
            {"kernel": str(kernel), "initrd": str(initrd), "ram": "8G"},
            {"block": [{"file": str(disk), "size": "64M"}]})], comment="test_memory: a guest of 8 GiB")
        console = boot_to_prompt(self, system, directory / "out", "memory-8g", BOOT_TIMEOUT)

        with self.subTest("size"):
            iomem = console.run("cat /proc/iomem", COMMAND_TIMEOUT)
            self.assertIn("40000000-23fffffff : System RAM", iomem)
            total = int(console.run("free -m | awk '/^Mem:/ {print $2}'", COMMAND_TIMEOUT))
            self.assertGreater(total, 7680, "MiB the guest counts")

        with self.subTest("high"):
            before = normal_zone_free_pages(console.run("cat /proc/zoneinfo", COMMAND_TIMEOUT))
            console.run(f"mkdir -p /high && dd if=/dev/urandom of=/high/0 bs=1M count={CHUNK_MIB} 2>/dev/null",
                        COMMAND_TIMEOUT, check=True)
            original = console.run("md5sum < /high/0", COMMAND_TIMEOUT, check=True).split()[0]
            console.run(f"i=1; while [ $i -lt {COPIES} ]; do cp /high/0 /high/$i || break; i=$((i+1)); done",
                        COMMAND_TIMEOUT, check=True)
            after = normal_zone_free_pages(console.run("cat /proc/zoneinfo", COMMAND_TIMEOUT))
            used = (before - after) * PAGE
            self.assertGreaterEqual(used, (COPIES - 4) * CHUNK_MIB << 20,
                                    f"the Normal zone (RAM above 4 GiB) gave {used >> 20} MiB to the copies")
            sums = console.run("md5sum /high/* | awk '{print $1}' | sort | uniq -c", COMMAND_TIMEOUT, check=True)
            self.assertEqual(sums.split(), [str(COPIES), original], "every copy in high RAM reads back the same")

        with self.subTest("disk"):
            console.run(f"dd if=/high/{COPIES - 1} of=/dev/vda bs=1M oflag=direct 2>/dev/null && sync",
                        COMMAND_TIMEOUT, check=True)
            back = console.run(f"dd if=/dev/vda bs=1M count={CHUNK_MIB} iflag=direct 2>/dev/null | md5sum",
                               COMMAND_TIMEOUT, check=True).split()[0]
            self.assertEqual(back, original)
            with disk.open("rb") as image:
                self.assertEqual(hashlib.md5(image.read(CHUNK_MIB << 20)).hexdigest(), original,
                                 "the disk image holds what the guest wrote from high RAM")

        with self.subTest("poweroff"):
            console.sendline("poweroff -f")
            self.assertEqual(console.wait_exit(120.0), 0)


if __name__ == "__main__":
    unittest.main()
