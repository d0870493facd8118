"""What a new user meets before the guest: the README's set-up commands and their messages.

- Without a Swift 6 toolchain with Embedded Swift on PATH, `make run` and `make test` stop at once
  with one line naming what is missing, before installing a package or building anything.
- scripts/setup-host.sh waits for another apt/dpkg that holds apt's locks (unattended upgrades on a
  fresh machine) and says so, instead of failing at once.
- `make test` ends with one line counting everything that ran (scripts/test-summary.sh), and a stage
  that breaks without a failed test (a build error) is never counted as a pass.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import REPO_ROOT  # noqa: E402


def path_without_swift():
    """PATH with every directory that holds a swiftc left out."""
    keep = [d for d in os.environ.get("PATH", "").split(":") if d and not Path(d, "swiftc").exists()]
    return ":".join(keep or ["/usr/bin", "/bin"])


def fake_toolchain(directory, version_line, embedded_ok):
    """A directory of stand-ins for swiftc, swift, clang and ld.lld; swiftc prints `version_line` and
    fails every compile unless `embedded_ok`."""
    directory.mkdir(parents=True, exist_ok=True)
    compile = "exit 0" if embedded_ok else (
        "echo \"<unknown>:0: error: unable to load standard library for target 'aarch64-none-none-elf'\" >&2; exit 1")
    (directory / "swiftc").write_text(
        "#!/bin/sh\n"
        f"if [ \"$1\" = --version ]; then echo '{version_line}'; echo 'Target: x86_64-unknown-linux-gnu'; exit 0; fi\n"
        f"{compile}\n")
    for tool in ("swift", "clang", "ld.lld"):
        (directory / tool).write_text("#!/bin/sh\nexit 0\n")
    for tool in directory.iterdir():
        tool.chmod(0o755)


class ToolchainCheckTests(unittest.TestCase):
    def run_make(self, target, path):
        # As a user types it: not a sub-make of the `make test` that may be running these tests.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
        return subprocess.run(["make", "--no-print-directory", target], cwd=REPO_ROOT, capture_output=True,
                              text=True, env={**env, "PATH": path}, stdin=subprocess.DEVNULL, timeout=120)

    def test_make_run_and_make_test_without_swift_say_so_in_one_line_before_doing_anything(self):
        for target in ("run", "test"):
            with self.subTest(target=target):
                result = self.run_make(target, path_without_swift())
                lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
                self.assertNotEqual(result.returncode, 0)
                self.assertEqual(len(lines), 1, lines)
                self.assertIn("no Swift toolchain on PATH (swiftc not found)", lines[0])
                self.assertIn("Swift 6.x with Embedded Swift", lines[0])
                self.assertIn("swift.org/install", lines[0])

    def test_an_old_swift_is_named_with_its_version(self):
        with tempfile.TemporaryDirectory() as scratch:
            bin_dir = Path(scratch, "bin")
            fake_toolchain(bin_dir, "Swift version 5.10.1 (swift-5.10.1-RELEASE)", embedded_ok=True)
            result = self.run_make("run", f"{bin_dir}:{path_without_swift()}")
            self.assertNotEqual(result.returncode, 0)
            self.assertIn(f"{bin_dir}/swiftc is Swift 5.10: vmm needs Swift 6.x with Embedded Swift", result.stderr)
            self.assertNotIn("setup-host", result.stdout + result.stderr)

    def test_a_swift_6_that_cannot_compile_embedded_swift_is_named(self):
        with tempfile.TemporaryDirectory() as scratch:
            bin_dir = Path(scratch, "bin")
            fake_toolchain(bin_dir, "Swift version 6.0.3 (swift-6.0.3-RELEASE)", embedded_ok=False)
            result = subprocess.run(["sh", "scripts/check-toolchain.sh"], cwd=REPO_ROOT, capture_output=True,
                                    text=True, env={**os.environ, "PATH": f"{bin_dir}:{path_without_swift()}"})
            self.assertEqual(result.returncode, 1)
            self.assertIn("(Swift 6.0) cannot compile Embedded Swift for aarch64-none-none-elf", result.stderr)
            self.assertIn("unable to load standard library", result.stderr)

    def test_the_toolchain_on_path_passes_quietly(self):
        result = subprocess.run(["sh", "scripts/check-toolchain.sh"], cwd=REPO_ROOT, capture_output=True, text=True)
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "", ""))


# dpkg's and apt's locks are fcntl locks; this child holds them like a running apt would.
HOLD_LOCKS = """
import fcntl, sys, time
held = []
for path in ("/var/lib/dpkg/lock-frontend", "/var/lib/apt/lists/lock"):
    f = open(path, "a"); fcntl.lockf(f, fcntl.LOCK_EX); held.append(f)
print("held", flush=True)
time.sleep(float(sys.argv[1]))
"""


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("apt-get"), "needs root and apt-get (Debian)")
class SetupHostTests(unittest.TestCase):
    def test_setup_host_waits_for_another_apt_and_says_so(self):
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCKS, "6"], stdout=subprocess.PIPE, text=True)
        self.addCleanup(holder.stdout.close)
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline().strip(), "held")
        started = time.monotonic()
        # A package that does not exist: apt-get update must wait for the lock, then install fails on
        # the name (not on the lock), and nothing is installed.
        result = subprocess.run(["sh", "scripts/setup-host.sh"], cwd=REPO_ROOT, capture_output=True, text=True,
                                env={**os.environ, "SETUP_HOST_PACKAGES": "vmm-no-such-package"},
                                stdin=subprocess.DEVNULL, timeout=600)
        waited = time.monotonic() - started
        self.assertIn(f"apt: waiting for another apt/dpkg to finish (process {holder.pid} (python3)) "
                      "before apt-get update", result.stdout)
        self.assertIn("apt: the lock is free; apt-get update went ahead", result.stdout)
        self.assertGreaterEqual(waited, 4.0, "setup-host went on while the lock was held")
        self.assertEqual(result.returncode, 1)
        self.assertIn("Unable to locate package vmm-no-such-package", result.stderr)
        self.assertIn("setup-host: apt-get install failed: vmm-no-such-package", result.stderr)
        self.assertNotIn("Could not get lock", result.stderr)

    def test_setup_host_installs_socat_for_the_readmes_console_example(self):
        script = (REPO_ROOT / "scripts/setup-host.sh").read_text()
        self.assertIn("socat", script.split("PACKAGES=")[1].splitlines()[0])
        self.assertIsNotNone(shutil.which("socat"), "socat is not installed after make test's set-up")


class TestSummaryTests(unittest.TestCase):
    def summary(self, *stages):
        with tempfile.TemporaryDirectory() as scratch:
            result = subprocess.run(["bash", "scripts/test-summary.sh", str(Path(scratch, "log")), *stages],
                                    cwd=REPO_ROOT, capture_output=True, text=True)
        return result.returncode, result.stdout.splitlines()[-1]

    def test_units_integration_and_fuzz_targets_are_counted_in_the_last_line(self):
        status, last = self.summary(
            "echo 'Test Suite All tests passed'; echo '\t Executed 12 tests, with 0 failures (0 unexpected) in 1.0 (1.0) seconds'",
            "printf 'Ran 5 tests in 3.1s\\n\\nOK (skipped=2)\\n'",
            "printf 'fuzz: virtqueue: ok  runs 10\\nfuzz: boot: ok  runs 3\\n'")
        self.assertEqual((status, last), (0, "tests: 17 passed, 0 failed, 2 skipped"))

    def test_failures_are_counted_and_the_status_is_1(self):
        status, last = self.summary(
            "echo '\t Executed 4 tests, with 1 failure (0 unexpected) in 1.0 (1.0) seconds'; exit 1",
            "printf 'Ran 3 tests in 1s\\n\\nFAILED (failures=1, errors=1)\\n'; exit 1",
            "printf 'fuzz: boot: FAILED (exit 1)\\nfuzz: distributor: BUILD FAILED\\n'; exit 1")
        self.assertEqual((status, last), (1, "tests: 4 passed, 5 failed, 0 skipped"))

    def test_a_stage_that_breaks_without_a_failed_test_counts_as_a_failure(self):
        status, last = self.summary("echo 'error: compile failed'; exit 2", "printf 'Ran 1 test in 1s\\n\\nOK\\n'")
        self.assertEqual((status, last), (1, "tests: 1 passed, 1 failed, 0 skipped"))


if __name__ == "__main__":
    unittest.main()
