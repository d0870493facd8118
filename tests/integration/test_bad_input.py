"""Bad input given to the README's command: `make run SYSTEM=file.toml` with a wrong kernel, a
missing file, an initrd that does not fit, or keys that are wrong. Each problem is one line naming
the file and the key, the exit status is non-zero, and QEMU never starts. `vmm check` with several
files names each one, and the error examples of docs/configuration.md are the tool's exact output.
"""

import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import HOST_VMM, REPO_ROOT, guest_paths  # noqa: E402


DOCS = REPO_ROOT / "docs/configuration.md"


def vmm(*arguments, cwd):
    result = subprocess.run([str(HOST_VMM), *map(str, arguments)], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    return result.returncode, result.stdout


def documented_checks():
    """(fixtures, command, expected lines) for each "$ vmm check …" block of the docs: the fixtures
    are the ```toml blocks whose first line is "# NAME"."""
    fixtures, checks = {}, []
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```$", DOCS.read_text(), re.S | re.M):
        lines = body.splitlines()
        if language == "toml" and lines and lines[0].startswith("# "):
            fixtures[lines[0][2:]] = body
        elif lines and lines[0].startswith("$ vmm check "):
            checks.append((dict(fixtures), lines[0].split()[3:], lines[1:]))
    return checks


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


    def test_check_of_several_files_names_each_and_fails_if_one_does(self):
        (self.dir / "good.toml").write_text(f'[[vm]]\nkernel = "{self.kernel}"\n')
        (self.dir / "bad.toml").write_text('[[vm]]\nkernal = "Image"\n')
        (self.dir / "typo.toml").write_text('[[vm]]\nkernel = "Image\n')
        status, output = vmm("check", "good.toml", "bad.toml", "typo.toml", "good.toml", cwd=self.dir)
        self.assertEqual(status, 1, output)
        ok = "vmm: good.toml: ok — vm 'linux': 512 MiB at 0x40000000, 1 vCPU, platform native"
        self.assertEqual(output.splitlines(), [
            ok,
            "vmm: bad.toml: vm[0].kernel: required key is missing (expected the path of an arm64 Linux Image)",
            "vmm: bad.toml: vm[0].kernal: unknown key 'kernal' (did you mean 'kernel'?)",
            "vmm: typo.toml:2:16: syntax error: a string is not closed before the end of the line",
            'vmm:     kernel = "Image',
            "vmm:                    ^",
            ok,
        ])
        status, output = vmm("check", "good.toml", "good.toml", cwd=self.dir)
        self.assertEqual((status, output), (0, f"{ok}\n{ok}\n"))

    def test_documented_check_output_is_the_tools_output(self):
        checks = documented_checks()
        self.assertGreaterEqual(len(checks), 2)
        for fixtures, files, expected in checks:
            with self.subTest(files=files):
                directory = Path(tempfile.mkdtemp(dir=self.dir))
                for name, text in fixtures.items():
                    (directory / name).write_text(text)
                status, output = vmm("check", *files, cwd=directory)
                self.assertEqual(status, 1, output)
                # The docs' files live in /home/me/systems.
                self.assertEqual(output.replace(str(directory), "/home/me/systems").splitlines(), expected)


if __name__ == "__main__":
    unittest.main()
