"""`vmm` from any directory, as the README writes it: `vmm check` and `vmm build` run with the
current directory outside the checkout find the VMM's objects through the tool's own location
(or $VMM_HOME) and write `build/<file name without .toml>/` under the current directory; `make
install PREFIX=…` puts a working `vmm` in PREFIX/bin.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import HOST_VMM, REPO_ROOT, guest_paths  # noqa: E402

PRODUCTS = ("guest.config", "guest.dtb", "vmm.elf")


def run(command, cwd, env=None):
    result = subprocess.run([str(c) for c in command], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=600, env=env)
    return result.returncode, result.stdout + result.stderr


class AnywhereTests(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        kernel, initrd = guest_paths()
        # examples/minimal.toml with absolute paths, in a directory of its own.
        (self.dir / "systems").mkdir()
        self.system = self.dir / "systems" / "small.toml"
        text = (REPO_ROOT / "examples/minimal.toml").read_text()
        text = text.replace('"../build/guest/Image"', f'"{kernel}"').replace(
            '"../build/guest/initramfs.cpio.gz"', f'"{initrd}"')
        self.assertIn(str(kernel), text)
        self.system.write_text(text)
        self.elsewhere = self.dir / "elsewhere"
        self.elsewhere.mkdir()

    def assertBuilt(self, directory):
        for name in PRODUCTS:
            self.assertTrue((directory / name).is_file(), f"{directory / name} missing")

    def test_check_and_build_from_outside_the_checkout(self):
        status, output = run([HOST_VMM, "check", self.system], cwd=self.elsewhere)
        self.assertEqual(status, 0, output)
        self.assertEqual(output, f"vmm: {self.system}: ok — vm 'linux': 512 MiB at 0x40000000, 1 vCPU, platform native\n")
        status, output = run([HOST_VMM, "build", "../systems/small.toml"], cwd=self.elsewhere)
        self.assertEqual(status, 0, output)
        # Named after the file, under the current directory; nothing written next to the file.
        self.assertBuilt(self.elsewhere / "build/small")
        self.assertIn(f"vmm: wrote {self.elsewhere / 'build/small/vmm.elf'}", output)
        self.assertFalse((self.dir / "systems/build").exists())

    def test_vmm_home_names_the_checkout_and_must_be_one(self):
        env = {**os.environ, "VMM_HOME": str(REPO_ROOT)}
        status, output = run([HOST_VMM, "build", self.system, "--output", "out"], cwd=self.elsewhere, env=env)
        self.assertEqual(status, 0, output)
        self.assertBuilt(self.elsewhere / "out")
        env["VMM_HOME"] = str(self.dir)
        status, output = run([HOST_VMM, "build", self.system], cwd=self.elsewhere, env=env)
        self.assertEqual(status, 1, output)
        self.assertEqual(output, f"vmm: VMM_HOME='{self.dir}' is not a vmm checkout "
                                 "(expected Platforms/ and scripts/ of vmm in it)\n")

    def test_make_install_puts_a_vmm_that_works_from_anywhere_in_prefix_bin(self):
        prefix = self.dir / "prefix"
        status, output = run(["make", "--no-print-directory", "install", f"PREFIX={prefix}"], cwd=REPO_ROOT)
        self.assertEqual(status, 0, output)
        vmm = prefix / "bin/vmm"
        status, output = run([vmm, "--help"], cwd=self.elsewhere)
        self.assertEqual(status, 0, output)
        self.assertIn("USAGE: vmm <subcommand>", output)
        status, output = run([vmm, "build", self.system], cwd=self.elsewhere)
        self.assertEqual(status, 0, output)
        self.assertBuilt(self.elsewhere / "build/small")
        status, output = run(["make", "--no-print-directory", "uninstall", f"PREFIX={prefix}"], cwd=REPO_ROOT)
        self.assertEqual(status, 0, output)
        self.assertFalse(vmm.exists() or vmm.is_symlink())


    def test_help_paragraphs_are_wrapped_once_and_list_only_the_three_verbs(self):
        for command in (["--help"], ["check", "--help"], ["build", "--help"], ["run", "--help"]):
            with self.subTest(command=command):
                status, output = run([HOST_VMM, *command], cwd=self.elsewhere, env={**os.environ, "COLUMNS": "80"})
                self.assertEqual(status, 0, output)
                text = output.split("USAGE:")[0]
                # A hard-wrapped source line shows up as a short line inside a paragraph.
                for paragraph in text.strip().split("\n\n"):
                    for line in paragraph.splitlines()[:-1]:
                        self.assertGreater(len(line), 60, f"ragged line {line!r} in:\n{text}")
        status, output = run([HOST_VMM, "--help"], cwd=self.elsewhere)
        verbs = output.split("SUBCOMMANDS:")[1].split("See 'vmm help")[0]
        self.assertEqual([line.split()[0] for line in verbs.splitlines() if line.strip() and line.startswith("  ") and
                          not line.startswith("   ")], ["check", "build", "run"])


if __name__ == "__main__":
    unittest.main()
