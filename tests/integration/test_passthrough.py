"""A board device passed through to the guest (examples/passthrough.toml): QEMU virt's PL031 RTC is
mapped into the guest where the board has it and its interrupt is routed by the VMM. The guest's
Linux finds it in its device tree, registers /dev/rtc0, reads the board's time from it, and gets
its alarm interrupt through the VMM.
"""

import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import INIT_DONE, REPO_ROOT, SerialConsole, board_options  # noqa: E402


class PassthroughTests(unittest.TestCase):
    def test_guest_drives_the_boards_rtc_and_gets_its_interrupt(self):
        console = SerialConsole([str(REPO_ROOT / ".build/debug/vmm"), "run", "examples/passthrough.toml", *board_options()],
                                name="passthrough-rtc", cwd=REPO_ROOT)
        self.addCleanup(console.kill)
        console.expect(INIT_DONE, 240.0)
        console.wait_for_prompt(120.0)
        self.assertIn("9010000.rtc", console.run("cat /sys/class/rtc/rtc0/device/uevent; ls /sys/bus/amba/devices"))
        # The RTC counts the host's time (QEMU's default -rtc base=utc).
        guest_seconds = int(console.run("cat /sys/class/rtc/rtc0/since_epoch"))
        self.assertLess(abs(guest_seconds - time.time()), 120)
        # An alarm 2 s ahead fires the PL031's interrupt (INTID 34) through the VMM into the guest.
        console.run("echo +2 > /sys/class/rtc/rtc0/wakealarm")
        console.run("sleep 4")
        counts = [line for line in console.run("cat /proc/interrupts").splitlines() if "rtc-pl031" in line]
        self.assertEqual(len(counts), 1, counts)
        self.assertGreaterEqual(int(counts[0].split()[1]), 1, counts[0])


if __name__ == "__main__":
    unittest.main()
