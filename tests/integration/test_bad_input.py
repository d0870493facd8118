"""Bad input given to the README's command: `make run SYSTEM=file.toml` with a wrong kernel, a
missing file, an initrd that does not fit, or keys that are wrong. Each problem is one line naming
the file and the key, the exit status is non-zero, and QEMU never starts.
"""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import REPO_ROOT, guest_paths  # noqa: E402


def make_run(system):
    result = subprocess.run(["make", "--no-print-directory", "run", f"SYSTEM={system}"],
                            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


class BadInputTests(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(subprocess.run, ["rm", "-rf", str(self.dir)])
        self.kernel, self.initrd = guest_paths()

    def system(self, text):
        path = self.dir / "system.toml"
        path.write_text(text)
        return path

    def assertRefusedBeforeQEMU(self, status, output, *lines):
        self.assertNotEqual(status, 0, output)
        for line in lines:
            self.assertIn(line, output)
        self.assertNotIn("starting qemu", output.lower())

    def test_kernel_without_the_arm64_image_magic_is_refused_by_name(self):
        bad = self.dir / "not-a-kernel"
        bad.write_bytes(b"\x7fELF" + bytes(4092))
        system = self.system(f'[[vm]]\nkernel = "not-a-kernel"\ninitrd = "{self.initrd}"\n')
        status, output = make_run(system)
        self.assertRefusedBeforeQEMU(status, output,
            f"vmm: {system}: vm[0].kernel: kernel '{bad}': not an arm64 Linux Image (bad magic 0x00000000; expected 0x644d5241)")

    def test_missing_kernel_is_refused_by_name(self):
        system = self.system('[[vm]]\nkernel = "no-such-Image"\n')
        status, output = make_run(system)
        self.assertRefusedBeforeQEMU(status, output, f"vmm: {system}: vm[0].kernel: no such file '{self.dir / 'no-such-Image'}'")

    def test_initrd_larger_than_guest_ram_is_refused_by_name(self):
        big = self.dir / "huge-initrd"
        with open(big, "wb") as f:
            f.truncate(600 << 20)   # sparse: 600 MiB for a 512 MiB guest
        system = self.system(f'[[vm]]\nkernel = "{self.kernel}"\ninitrd = "huge-initrd"\n')
        status, output = make_run(system)
        self.assertRefusedBeforeQEMU(status, output,
            f"vmm: {system}: vm[0].initrd: initrd '{big}': 600 MiB does not fit in guest RAM (483 MiB free above the kernel)")

    def test_every_mistake_in_a_system_file_is_reported_at_once(self):
        system = self.system(f'[[vm]]\nkernel = "{self.kernel}"\nrom = 1\nvcpus = "two"\n\n'
                             '[[vm.net]]\nmac = "52:54:00:00:00:01"\nforward = ["tcp:8080:80"]\n'
                             '[[vm.net]]\nmac = "52:54:00:00:00:01"\nforward = ["tcp:8080:81"]\n')
        status, output = make_run(system)
        self.assertRefusedBeforeQEMU(status, output,
            f"vmm: {system}: vm[0].vcpus: expected an integer, found a string",
            f"vmm: {system}: vm[0].rom: unknown key 'rom'")
        self.assertGreaterEqual(output.count(f"vmm: {system}: "), 4, output)


if __name__ == "__main__":
    unittest.main()
