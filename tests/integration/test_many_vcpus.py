"""A guest with 16 vCPUs on a GICv3 board (GICv2 serves 8 at most): `[system] gic = 3`, `vcpus = 16`,
run the user's way (`vmm run` gives QEMU gic-version=3 and -smp 16).

vCPUs 0-15 have the affinities QEMU virt gives a GICv3's CPUs (Aff0 = n % 16), so vCPUs 8-15 are
reached only through what GICv2 lacks: SGIs by ICC_SGI1R_EL1 target lists and SPIs by GICD_IROUTER.
One boot; each check a subtest:

  cpus       `nproc` says 16 and /sys/devices/system/cpu/online is 0-15;
  ipi        the IPI rows of /proc/interrupts grow on every CPU 1-15 while a task is started on each
             (taskset), which the guest does with SGIs through the VMM;
  irq        the disk's interrupt, moved to CPU 13 (/proc/irq/N/smp_affinity; the guest writes
             GICD_IROUTER), is counted there while the disk is read with O_DIRECT;
  poweroff   `poweroff -f` ends QEMU with status 0.

Needs QEMU (skipped without it) and the host tool and native objects (`make integration-test`).
"""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import (  # noqa: E402
    boot_to_prompt, guest_paths, require_qemu_and_host_tool, short_temp_dir, write_system)
from test_smp import ipi_counts, parse_interrupts  # noqa: E402

VCPUS = 16
IRQ_CPU = 13
BOOT_TIMEOUT = 400.0
COMMAND_TIMEOUT = 180.0


class ManyVCPUsTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_qemu_and_host_tool()

    def test_sixteen_vcpus_on_gicv3(self):
        directory = short_temp_dir("vmm-16-", self)
        kernel, initrd = guest_paths()
        system = write_system(directory / "sixteen.toml", {"gic": 3}, [(
            {"kernel": str(kernel), "initrd": str(initrd), "vcpus": VCPUS},
            {"block": [{"file": str(directory / "disk.img"), "size": "16M"}]})],
            comment="test_many_vcpus: 16 vCPUs on GICv3")
        console = boot_to_prompt(self, system, directory / "out", "gicv3-16-vcpus", BOOT_TIMEOUT, cpu=False)

        def interrupts():
            return parse_interrupts(console.run("cat /proc/interrupts", COMMAND_TIMEOUT, check=True))

        with self.subTest("cpus"):
            self.assertEqual(console.run("nproc", COMMAND_TIMEOUT), str(VCPUS))
            self.assertEqual(console.run("cat /sys/devices/system/cpu/online", COMMAND_TIMEOUT), f"0-{VCPUS - 1}")

        with self.subTest("ipi"):
            _, rows = interrupts()
            before = ipi_counts(rows)
            console.run(f"for c in $(seq 1 {VCPUS - 1}); do taskset -c $c true; taskset -c $c sh -c 'sleep 0'; done",
                        COMMAND_TIMEOUT, check=True)
            _, rows = interrupts()
            after = ipi_counts(rows)
            quiet = [cpu for cpu in range(1, VCPUS) if after.get(cpu, 0) <= before.get(cpu, 0)]
            self.assertEqual(quiet, [], f"CPUs that got no IPI: before {before}, after {after}")

        with self.subTest("irq"):
            _, rows = interrupts()
            disk = [label for label, (_, description) in rows.items() if "virtio" in description]
            self.assertTrue(disk, f"no virtio interrupt in /proc/interrupts: {sorted(rows)}")
            irq = disk[0]
            console.run(f"echo {1 << IRQ_CPU:x} > /proc/irq/{irq}/smp_affinity", COMMAND_TIMEOUT, check=True)
            before = rows[irq][0]
            console.run("dd if=/dev/vda of=/dev/null bs=4k count=512 iflag=direct 2>/dev/null", COMMAND_TIMEOUT,
                        check=True)
            _, rows = interrupts()
            after = rows[irq][0]
            grown = {cpu: after.get(cpu, 0) - before.get(cpu, 0) for cpu in range(VCPUS)}
            self.assertGreater(grown[IRQ_CPU], 0, f"the disk's interrupt {irq} never came to CPU {IRQ_CPU}: {grown}")
            self.assertGreater(grown[IRQ_CPU], sum(grown.values()) - grown[IRQ_CPU],
                               f"most of the disk's interrupts went elsewhere: {grown}")

        with self.subTest("poweroff"):
            console.sendline("poweroff -f")
            self.assertEqual(console.wait_exit(120.0), 0)


if __name__ == "__main__":
    unittest.main()
