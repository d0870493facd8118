"""The same guest through the same VMM core, as a seL4 Microkit protection domain.

Needs a Microkit SDK (2.0.1, board qemu_virt_aarch64): run as `make MICROKIT_SDK=/path test`,
which builds build/microkit/loader.img from the generated system description first. Without
MICROKIT_SDK the tests are skipped with that reason: CI has no SDK (none is in Debian or PyPI).
"""

import os
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import INIT_DONE, assert_guest_seeded, REPO_ROOT, SerialConsole, arch_timer_count  # noqa: E402

BOOT_TIMEOUT = 240.0
SDK = os.environ.get("MICROKIT_SDK", "")


def microkit_command(image=None):
    image = image or os.environ.get("VMM_MICROKIT_IMAGE",
                                    REPO_ROOT / "build/microkit/qemu_virt_aarch64/debug/loader.img")
    return [os.environ.get("VMM_QEMU", "qemu-system-aarch64"),
            "-machine", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a53", "-m", "size=2G",
            "-nographic", "-serial", "mon:stdio",
            "-device", f"loader,file={image},addr=0x70000000,cpu-num=0"]


@unittest.skipUnless(SDK, "MICROKIT_SDK is not set: the Microkit platform needs a Microkit SDK")
class MicrokitBootTests(unittest.TestCase):
    def boot(self, name, image=None):
        console = SerialConsole(microkit_command(image), name=name)
        self.addCleanup(console.kill)
        console.expect(rb"MON\|INFO: completed system invocations", 60.0)
        console.expect(rb"vmm: Microkit protection domain, starting the guest", 30.0)
        console.expect(INIT_DONE, BOOT_TIMEOUT)
        console.wait_for_prompt(BOOT_TIMEOUT)
        print(f"\n[{name}] boot to prompt on seL4: {time.monotonic() - console.started_at:.2f} s", file=sys.stderr)
        return console

    def test_guest_reaches_its_shell_on_sel4_with_a_ticking_timer(self):
        console = self.boot("microkit-shell")
        self.assertEqual(console.run("uname -m"), "aarch64")
        self.assertRegex(console.run("dmesg"), r"CPU: All CPU\(s\) started at EL1")
        assert_guest_seeded(self, console)
        first = arch_timer_count(console.run("cat /proc/interrupts"))
        console.run("sleep 1")
        second = arch_timer_count(console.run("cat /proc/interrupts"))
        self.assertGreater(second, first, "arch_timer interrupts did not advance on seL4")
        self.assertEqual(console.run("echo hello-from-$((6*7))"), "hello-from-42")

    def test_poweroff_stops_the_guest_and_the_vmm_says_so(self):
        console = self.boot("microkit-poweroff")
        console.sendline("poweroff -f")
        console.expect(rb"vmm: guest powered off", 60.0)

    def test_access_to_an_unemulated_address_stops_the_guest_with_a_report(self):
        console = self.boot("microkit-bad-access")
        console.sendline("devmem 0x0c000000 32")
        match = console.expect(
            rb"vmm: guest stopped: access to an address no device emulates\r?\n"
            rb"vmm:   vCPU 0x0+ PC (0x[0-9a-f]{16}) ESR (0x[0-9a-f]{16}) address (0x[0-9a-f]{16})", 60.0)
        self.assertEqual(int(match.group(2), 16) >> 26, 0x24)
        self.assertEqual(int(match.group(3), 16), 0x0C00_0000)

    def test_passthrough_rtc_reaches_the_guest_through_a_channel(self):
        # examples/passthrough.toml on the Microkit platform: the PL031 as a memory region mapped into
        # the VM, its IRQ 34 on channel 2, acknowledged by the VMM after the guest's EOI.
        output = Path(tempfile.mkdtemp())
        system = output / "system.toml"
        system.write_text((REPO_ROOT / "examples/passthrough.toml").read_text()
                          .replace("../build/guest", str(REPO_ROOT / "build/guest"))
                          .replace("[[vm]]", '[system]\nplatform = "microkit"\n\n[[vm]]', 1))
        subprocess.run([str(REPO_ROOT / ".build/debug/vmm"), "build", str(system), "--output", str(output)],
                       cwd=REPO_ROOT, check=True, capture_output=True)
        self.assertIn('<irq irq="34" id="2" />', (output / "vmm.system").read_text())
        console = self.boot("microkit-passthrough", image=output / "loader.img")
        self.assertLess(abs(int(console.run("cat /sys/class/rtc/rtc0/since_epoch")) - time.time()), 120)
        console.run("echo +2 > /sys/class/rtc/rtc0/wakealarm")
        console.run("sleep 4")
        counts = [line for line in console.run("cat /proc/interrupts").splitlines() if "rtc-pl031" in line]
        self.assertEqual(len(counts), 1, counts)
        self.assertGreaterEqual(int(counts[0].split()[1]), 1, counts[0])


if __name__ == "__main__":
    unittest.main()
