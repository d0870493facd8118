"""The real guest booted through the VMM (native EL2 platform) under QEMU.

Boots build/minimal/vmm.elf (`vmm build examples/minimal.toml`: the VMM with the guest inside; on the
GICv3 board of the test matrix build/gic3/minimal/vmm.elf) as QEMU's -kernel on
virt,virtualization=on (the test board: serial_console.board_arguments) and talks to the guest's shell over the serial
line: the kernel runs at EL1 under our stage 2, its timer ticks through our vGIC, its UART works
both ways, PSCI SYSTEM_OFF ends QEMU, and a trapped access nobody emulates stops the guest with
a report instead of hanging.
Run: make integration-test (builds everything first).
"""

import os
import re
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import INIT_DONE, assert_guest_seeded, SerialConsole, arch_timer_count, board_arguments, built_image  # noqa: E402

BOOT_TIMEOUT = 180.0


def vmm_command():
    elf = Path(os.environ.get("VMM_ELF", built_image("minimal")))
    return [os.environ.get("VMM_QEMU", "qemu-system-aarch64"), *board_arguments(),
            "-m", "1G", "-nographic", "-kernel", str(elf)]


class VMMBootTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        elf = Path(vmm_command()[-1])
        if not elf.is_file():
            raise AssertionError(f"{elf} missing: run `make vmm` first")

    def boot(self, name):
        console = SerialConsole(vmm_command(), name=name)
        self.addCleanup(console.kill)
        console.expect(rb"vmm: native platform at EL2", 30.0)
        console.expect(INIT_DONE, BOOT_TIMEOUT)
        console.wait_for_prompt(BOOT_TIMEOUT)
        seconds = time.monotonic() - console.started_at
        print(f"\n[{name}] boot to prompt through the VMM: {seconds:.2f} s", file=sys.stderr)
        return console

    def test_guest_runs_at_el1_with_a_ticking_virtual_timer(self):
        console = self.boot("vmm-shell")
        self.assertEqual(console.run("uname -m"), "aarch64")
        self.assertEqual(console.last_status, 0)
        # The kernel found no hypervisor mode: it is a guest at EL1, not the board's owner.
        dmesg = console.run("dmesg")
        self.assertRegex(dmesg, r"CPU: All CPU\(s\) started at EL1")
        self.assertRegex(dmesg, r"GIC: Using split EOI/Deactivate mode|GICv2|NR_IRQS")
        assert_guest_seeded(self, console)
        first = arch_timer_count(console.run("cat /proc/interrupts"))
        console.run("sleep 1")
        second = arch_timer_count(console.run("cat /proc/interrupts"))
        self.assertGreater(second, first, "arch_timer interrupts did not advance under the VMM")
        # Typing reaches the guest and its output comes back (PL011 both ways, SPI 33 via the vGIC).
        self.assertEqual(console.run("echo hello-from-$((6*7))"), "hello-from-42")

    def test_poweroff_f_makes_qemu_exit_with_status_0(self):
        console = self.boot("vmm-poweroff")
        console.sendline("poweroff -f")
        self.assertEqual(console.wait_exit(60.0), 0)
        self.assertIn(b"vmm: guest powered off", console.log)

    def test_access_to_an_unemulated_address_stops_the_guest_with_a_report(self):
        console = self.boot("vmm-bad-access")
        # 0x0c000000 is QEMU virt's platform-bus window: not in the guest's device tree and not
        # mapped by stage 2, so the read traps and no device claims it.
        console.sendline("devmem 0x0c000000 32")
        match = console.expect(
            rb"vmm: guest stopped: access to an address no device emulates\r?\n"
            rb"vmm:   vCPU 0 PC (0x[0-9a-f]{16}) ESR (0x[0-9a-f]{16}) address (0x[0-9a-f]{16})", 60.0)
        esr = int(match.group(2), 16)
        self.assertEqual(esr >> 26, 0x24, "ESR should say data abort from a lower EL")
        self.assertEqual(int(match.group(3), 16), 0x0C00_0000)


if __name__ == "__main__":
    unittest.main()
