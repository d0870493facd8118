"""Every system in examples/ that the native platform can run is booted to its shell through
`vmm run FILE` (the README's way), then powered off: QEMU must exit with status 0. In a system of
several VMs the first VM is on the terminal and each later one on its serial socket (the `serial`
key, else build/<example>/<name>.serial.sock): each later VM is powered off first ("vmm: VM n
powered off" on the board's line), the first VM last, which powers the board off.
"""

import os
import socket
import sys
import time
import tomllib
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import HOST_VMM, INIT_DONE, REPO_ROOT, SerialConsole, SerialConsoleError  # noqa: E402



def native_examples():
    for path in sorted((REPO_ROOT / "examples").glob("*.toml")):
        platform = tomllib.loads(path.read_text()).get("system", {}).get("platform", "native")
        if platform == "native":
            yield path


def serial_sockets(path):
    """The serial sockets of the VMs after the first, in order."""
    system = tomllib.loads(path.read_text())
    sockets = []
    for vm in system.get("vm", [])[1:]:
        if "serial" in vm:
            sockets.append((path.parent / vm["serial"]).resolve())
        else:
            sockets.append(REPO_ROOT / "build" / path.stem / f"{vm['name']}.serial.sock")
    return sockets


def shell_over_socket(test, path, timeout=240.0):
    """A connection to the shell of the VM on unix socket `path`, once its prompt shows."""
    deadline = time.monotonic() + timeout
    while True:
        connection = socket.socket(socket.AF_UNIX)
        try:
            connection.connect(str(path))
            break
        except OSError:
            connection.close()
            if time.monotonic() > deadline:
                test.fail(f"cannot connect to {path}")
            time.sleep(0.5)
    connection.settimeout(1.0)
    seen = b""
    while b"guest# " not in seen[-400:]:
        if time.monotonic() > deadline:
            connection.close()
            test.fail(f"no shell prompt on {path}: {seen[-400:]!r}")
        connection.sendall(b"\n")
        try:
            seen += connection.recv(65536)
        except socket.timeout:
            pass
    return connection


class ExampleSystemTests(unittest.TestCase):
    def test_there_are_native_examples(self):
        self.assertGreaterEqual(len(list(native_examples())), 2)

    def test_each_native_example_boots_to_a_shell_through_vmm_run(self):
        for path in native_examples():
            with self.subTest(example=path.name):
                console = SerialConsole([str(HOST_VMM), "run", str(path.relative_to(REPO_ROOT))],
                                        name=f"example-{path.stem}", env={**os.environ})
                self.addCleanup(console.kill)
                console.expect(INIT_DONE, 240.0)
                console.wait_for_prompt(120.0)
                self.assertEqual(console.run("uname -m"), "aarch64")
                for n, path_of_socket in enumerate(serial_sockets(path), start=1):
                    # Typed again if the first line is lost: a shell that has just printed its prompt
                    # may still be setting up its line discipline on a loaded host.
                    with shell_over_socket(self, path_of_socket) as shell:
                        for attempt in range(6):
                            shell.sendall(b"poweroff -f\n")
                            try:
                                console.expect(f"vmm: VM {n} powered off".encode(), 20.0)
                                break
                            except SerialConsoleError:
                                if attempt == 5:
                                    raise
                console.sendline("poweroff -f")
                self.assertEqual(console.wait_exit(60.0), 0)


if __name__ == "__main__":
    unittest.main()
