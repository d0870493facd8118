"""The guest image alone, on QEMU without the VMM: the baseline every VMM
integration test and benchmark compares against. If this fails, the guest
(scripts/build-guest.sh) or the host's QEMU is broken, not the VMM.

Boots build/guest/Image with build/guest/initramfs.cpio.gz (or $VMM_GUEST_KERNEL,
$VMM_GUEST_INITRD) on `virt,virtualization=on,gic-version=2` with a Cortex-A53;
Linux itself starts at EL2 here, which is fine for a baseline.
Run: python3 -m unittest discover -s tests/integration -p 'test_plain_qemu.py' -v
"""

import re
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import INIT_DONE, SerialConsole, arch_timer_count, guest_paths, plain_qemu_command  # noqa: E402

BOOT_TIMEOUT = 120.0


class PlainQemuGuestTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for path in guest_paths():
            if not path.is_file():
                raise AssertionError(f"{path} missing: run scripts/build-guest.sh first")

    def boot(self, name):
        console = SerialConsole(plain_qemu_command(), name=name)
        self.addCleanup(console.kill)
        console.expect(INIT_DONE, BOOT_TIMEOUT)
        console.wait_for_prompt(BOOT_TIMEOUT)
        seconds = time.monotonic() - console.started_at
        print(f"\n[{name}] plain QEMU boot to prompt: {seconds:.2f} s", file=sys.stderr)
        return console

    def test_guest_shell_runs_commands_on_an_aarch64_kernel_with_a_ticking_timer(self):
        console = self.boot("plain-qemu-shell")
        self.assertEqual(console.run("uname -m"), "aarch64")
        self.assertEqual(console.last_status, 0)
        self.assertEqual(console.run("false"), "")
        self.assertEqual(console.last_status, 1)
        first = arch_timer_count(console.run("cat /proc/interrupts"))
        console.run("sleep 1")
        second = arch_timer_count(console.run("cat /proc/interrupts"))
        # A tick-less idle kernel still programs the timer for the 1 s sleep.
        self.assertGreater(second, first, "arch_timer interrupts did not advance")
        # Output that spans lines and contains the shell's own prompt text.
        self.assertEqual(console.run("printf 'a\\nguest# b\\n'"), "a\nguest# b")
        mods = console.run("cat /proc/modules")
        for module in ("virtio_mmio", "virtio_blk", "virtio_net", "virtio_console"):
            self.assertRegex(mods, rf"(?m)^{module} ", f"{module} not loaded by /init")

    def test_poweroff_f_makes_qemu_exit_with_status_0(self):
        console = self.boot("plain-qemu-poweroff")
        console.sendline("poweroff -f")
        self.assertEqual(console.wait_exit(60.0), 0)
        self.assertRegex(console.log.decode("utf-8", "replace"), r"reboot: Power down")


if __name__ == "__main__":
    unittest.main()
