"""The README's own examples, run as written: the system of `make run` (examples/linux.toml) is booted
through `vmm run`, and the commands the README gives for its network and its second console are
taken from the README's device table and typed in the guest and on the host, word for word.
"""

import re
import select
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import HOST_VMM, INIT_DONE, REPO_ROOT, SerialConsole  # noqa: E402



def readme_row(device):
    """The README's device table row for `device` (e.g. "eth0"): its 'use it' cell's commands, as
    {'guest': …, 'host': …}."""
    for line in (REPO_ROOT / "README.md").read_text().splitlines():
        if line.startswith(f"| `{device}`") or line.startswith(f"| `/dev/{device}`"):
            cell = line.rstrip(" |").split(" | ")[-1]
            guest = re.search(r"in the guest: `([^`]+)`", cell)
            host = re.search(r"on the host: `([^`]+)`", cell)
            if guest and host:
                return {"guest": guest.group(1), "host": host.group(1)}
    raise AssertionError(f"the README has no row for {device} with guest and host commands")


class ReadmeExampleTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.console = SerialConsole([str(HOST_VMM), "run", "examples/linux.toml"], name="readme-linux")
        cls.console.expect(INIT_DONE, 240.0)
        cls.console.wait_for_prompt(120.0)

    @classmethod
    def tearDownClass(cls):
        cls.console.sendline("poweroff -f")
        try:
            cls.console.wait_exit(60.0)
        finally:
            cls.console.kill()

    def test_the_readmes_network_example_serves_the_guests_page_to_the_host(self):
        commands = readme_row("eth0")
        self.console.run(commands["guest"], timeout=30)
        self.assertEqual(self.console.last_status, 0, "the README's guest commands failed in the guest")
        deadline, reply = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            reply = subprocess.run(commands["host"], shell=True, cwd=REPO_ROOT, capture_output=True, text=True,
                                   timeout=30)
            if reply.returncode == 0:
                break
            time.sleep(1)
        self.assertEqual(reply.returncode, 0, f"'{commands['host']}' failed: {reply.stderr}")
        self.assertIn("Hello from the Linux guest of vmm", reply.stdout)

    def test_the_readmes_console_example_carries_text_both_ways(self):
        commands = readme_row("hvc0")
        self.assertEqual(commands["guest"], "cat /dev/hvc0")
        self.console.sendline(f"{commands['guest']} > /tmp/from-host &")
        self.console.wait_for_prompt(30)
        host = subprocess.Popen(commands["host"], shell=True, cwd=REPO_ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(host.stderr.close)
        self.addCleanup(host.stdout.close)
        self.addCleanup(host.kill)
        time.sleep(1)
        host.stdin.write(b"typed-on-the-host\n")
        host.stdin.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "typed-on-the-host" not in self.console.run("cat /tmp/from-host"):
            time.sleep(1)
        self.assertEqual(self.console.run("cat /tmp/from-host"), "typed-on-the-host")
        self.console.run("kill %1")

        self.console.run("echo written-in-the-guest > /dev/hvc0")
        received = b""
        deadline = time.monotonic() + 30
        while b"written-in-the-guest" not in received and time.monotonic() < deadline:
            if select.select([host.stdout], [], [], 1.0)[0]:
                chunk = host.stdout.read1(4096)
                if not chunk:
                    break
                received += chunk
        self.assertIn(b"written-in-the-guest", received)
        host.stdin.close()
        host.wait(10)


if __name__ == "__main__":
    unittest.main()
