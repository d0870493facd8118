"""Bad guest images given to `make run`: one clear message naming the file, a non-zero exit,
and QEMU never started. Runs the README's own command with KERNEL=/INITRD= overrides.
"""

import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import REPO_ROOT, guest_paths  # noqa: E402


def make_run(kernel, initrd):
    result = subprocess.run(["make", "--no-print-directory", "run", f"KERNEL={kernel}", f"INITRD={initrd}"],
                            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=600)
    return result.returncode, result.stdout + result.stderr


class BadInputTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.kernel, self.initrd = guest_paths()

    def assertRefusedBeforeQEMU(self, status, output, message):
        self.assertNotEqual(status, 0, output)
        self.assertIn(message, output)
        self.assertNotIn("starting QEMU", output)

    def test_kernel_without_the_arm64_image_magic_is_refused_by_name(self):
        bad = Path(self.dir.name, "not-a-kernel")
        bad.write_bytes(b"\x7fELF" + bytes(4092))
        status, output = make_run(bad, self.initrd)
        self.assertRefusedBeforeQEMU(status, output, f"vmm: kernel '{bad}': not an arm64 Linux Image (bad magic")

    def test_missing_kernel_is_refused_by_name(self):
        missing = Path(self.dir.name, "no-such-Image")
        status, output = make_run(missing, self.initrd)
        self.assertRefusedBeforeQEMU(status, output, f"vmm: kernel '{missing}': no such file")

    def test_initrd_larger_than_guest_ram_is_refused_by_name(self):
        big = Path(self.dir.name, "huge-initrd")
        with open(big, "wb") as f:
            f.truncate(600 << 20)   # sparse: 600 MiB for a 512 MiB guest
        status, output = make_run(self.kernel, big)
        self.assertRefusedBeforeQEMU(status, output, f"vmm: initrd '{big}': 600 MiB does not fit in guest RAM")


if __name__ == "__main__":
    unittest.main()
