"""The guest's virtio disk, network and console on seL4, and an idle guest that leaves the host alone.

The README's Microkit system (examples/microkit-linux.toml: examples/linux.toml on the Microkit
platform, where driver protection domains drive the board's devices and the VMM protection domain
never touches them) is run the user's way, `vmm run FILE --microkit-config CONFIG` with MICROKIT_SDK
in the environment. The system file is generated from the example into a temporary directory: the
guest's paths made absolute, the disk file, the console socket and the forwarded host port there
(a free port), so the test never touches build/microkit-linux/ nor port 8080. (Where the example is
missing, examples/linux.toml with platform "microkit", which is what the example is; stderr says
which file was used.)

One boot, each check a subtest (so one failing check does not hide the others), in this order:

  idle     at the prompt, once the boot has settled, QEMU's CPU time (utime + stime of the QEMU
           process, /proc/PID/stat) over ~5 s of wall time stays under half of one core: a guest
           that waits in WFI must not keep QEMU spinning (the figure is printed on stderr);
  hvc0     text written to /dev/hvc0 reaches the console's unix socket, and text sent on the socket
           is read from /dev/hvc0;
  net      eth0 at 10.0.2.15 with busybox httpd serving /www: a 96 KiB page of known bytes is fetched
           byte for byte from the host through the forwarded port;
  disk     /dev/vda (serial vmm-disk-0) reads what the host put in the file; a 1 MiB pattern written
           with dd conv=fsync at an offset reads back with O_DIRECT and, after `poweroff -f` and the
           VMM's "vmm: guest powered off" (QEMU keeps running on Microkit: the test stops it then),
           is byte for byte in the host file, with the bytes around it unchanged.

Needs a Microkit SDK (2.0.1, board qemu_virt_aarch64) and its debug configuration (the test reads
the monitor's and the VMM's messages): run as `make MICROKIT_SDK=/path test`, which builds the
Microkit objects first. Without MICROKIT_SDK the tests are skipped with that reason; the CPU-time
helper is checked anyway (CPUTimeTests: no boot, a second or two).
"""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import (HOST_VMM, INIT_DONE, REPO_ROOT, SerialConsole,  # noqa: E402
                            console_round_trip, fetch, free_port, short_temp_dir, vm_copy, write_system)

SDK = os.environ.get("MICROKIT_SDK", "")
CONFIG = os.environ.get("MICROKIT_CONFIG") or "debug"
# The platform the generated system runs on. Only a dry run of this file's checks on the native
# platform changes it (the native platform passes them all); the tests are about Microkit.
PLATFORM = "microkit"
EXAMPLE = REPO_ROOT / "examples/microkit-linux.toml"

BOOT_TIMEOUT = 240.0
KiB, MiB = 1 << 10, 1 << 20

# The disk: the host fills its first 8 MiB with numbered 4 KiB blocks before the boot (the rest of
# the file stays sparse, zeros); the guest writes 1 MiB of numbered lines at 3 MiB + 12 KiB, across
# the 4 MiB boundary.
DISK_SIZE = 64 * MiB
BACKGROUND = 8 * MiB
WRITE_BLOCK = 771                     # in 4 KiB blocks: offset 3 MiB + 12 KiB
WRITE_OFFSET = WRITE_BLOCK * 4 * KiB
IDLE_SETTLE_SECONDS = 3.0
IDLE_SECONDS = 5.0
IDLE_CPU_LIMIT = 0.50                 # of one core


def background_block(n):
    """Block n (4 KiB) of the host's background: one line naming the block, repeated."""
    line = f"host-background-block-{n:06d}\n".encode()
    return (line * (4 * KiB // len(line) + 1))[:4 * KiB]


def disk_pattern():
    """What the guest writes: `seq 1000000 1131071`, 131072 lines of 8 bytes, exactly 1 MiB."""
    return b"".join(b"%d\n" % i for i in range(1000000, 1131072))


def page():
    """The page httpd serves: `seq 100000 114100 | head -c 98304`, 96 KiB of numbered lines."""
    return b"".join(b"%d\n" % i for i in range(100000, 114101))[:96 * KiB]


# -- QEMU's CPU time ----------------------------------------------------------------------------

def _children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def qemu_pid(root):
    """The QEMU process started by `root`: `vmm run` replaces itself with QEMU (execv), so that is
    normally `root` itself; otherwise the first descendant whose program is qemu-system-*."""
    pending = [root]
    while pending:
        pid = pending.pop(0)
        try:
            program = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            program = ""
        if program.startswith("qemu-system"):
            return pid
        pending += _children(pid)
    raise AssertionError(f"no qemu-system process under pid {root}")


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread), in seconds, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()   # from field 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid, seconds):
    """(CPU seconds / wall seconds, wall seconds) of process `pid` over about `seconds`."""
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = cpu_seconds(pid), time.monotonic()
    return (cpu1 - cpu0) / (wall1 - wall0), wall1 - wall0


# -- the system file ----------------------------------------------------------------------------

def system_file(directory, port):
    """The example's system, rewritten into `directory` (serial_console's vm_copy and write_system):
    platform PLATFORM, absolute guest paths, its first disk on directory/disk.img, its first net
    forwarding host `port` to the guest's port 80, its first console on directory/hvc0.sock. Returns
    (path, the VM's table)."""
    source = EXAMPLE if EXAMPLE.is_file() else REPO_ROOT / "examples/linux.toml"
    print(f"\n[microkit-devices] system from {source.relative_to(REPO_ROOT)}", file=sys.stderr)
    data = tomllib.loads(source.read_text())
    vm, kinds = vm_copy(data["vm"][0], source)
    if not (kinds.get("block") and kinds.get("net") and kinds.get("console")):
        raise AssertionError(f"{source}: expected a disk, a network and a console in its [[vm]]")
    kinds["block"] = [{**kinds["block"][0], "file": str(directory / "disk.img"), "size": DISK_SIZE}]
    kinds["net"] = [{**kinds["net"][0], "forward": [f"tcp:{port}:80"]}]
    kinds["console"] = [{**kinds["console"][0], "socket": str(directory / "hvc0.sock")}]
    path = write_system(directory / "system.toml", {**data.get("system", {}), "platform": PLATFORM}, [(vm, kinds)])
    return path, {**vm, **kinds}


@unittest.skipUnless(SDK, "MICROKIT_SDK is not set: the Microkit platform needs a Microkit SDK")
@unittest.skipUnless(CONFIG == "debug", f"MICROKIT_CONFIG={CONFIG}: these tests read the monitor's and the "
                     "VMM's messages, which only the SDK's debug configuration prints")
class MicrokitDeviceTests(unittest.TestCase):
    def setUp(self):
        self.dir = short_temp_dir("vmm-mkdev-", self)
        self.port = free_port()
        self.system, self.vm = system_file(self.dir, self.port)
        self.disk = self.dir / "disk.img"
        with open(self.disk, "wb") as f:
            f.truncate(DISK_SIZE)
            f.write(b"".join(background_block(n) for n in range(BACKGROUND // (4 * KiB))))

    def boot(self, name):
        console = SerialConsole([str(HOST_VMM), "run", str(self.system), "--output", str(self.dir / "build"),
                                 "--microkit-config", CONFIG],
                                name=name, env={**os.environ}, cwd=REPO_ROOT)
        self.addCleanup(console.kill)
        console.expect(rb"vmm: starting qemu-system", 120.0)   # `vmm run` built the system
        if PLATFORM == "microkit":
            console.expect(rb"MON\|INFO: completed system invocations", 60.0)
            console.expect(rb"vmm: Microkit protection domain, starting the guest", 30.0)
        console.expect(INIT_DONE, BOOT_TIMEOUT)
        console.wait_for_prompt(BOOT_TIMEOUT)
        print(f"[{name}] boot to prompt on {PLATFORM}, build included: "
              f"{time.monotonic() - console.started_at:.2f} s", file=sys.stderr)
        return console

    def test_disk_network_console_and_an_idle_guest_in_one_boot(self):
        console = self.boot("microkit-devices")
        with self.subTest("an idle guest leaves QEMU's CPU use low"):
            self.check_idle_cpu(console)
        with self.subTest("text crosses /dev/hvc0 both ways"):
            self.check_console(console)
        with self.subTest("the host fetches a page served in the guest through the forwarded port"):
            self.check_network(console)
        with self.subTest("a pattern written to /dev/vda is in the host file after power-off"):
            self.check_disk(console)

    # -- the checks, in the order of the boot -----------------------------------------------------
    def check_idle_cpu(self, console):
        time.sleep(IDLE_SETTLE_SECONDS)
        pid = qemu_pid(console.proc.pid)
        share, wall = cpu_share(pid, IDLE_SECONDS)
        print(f"[microkit-devices] idle guest at its prompt: QEMU (pid {pid}) used {100 * share:.1f}% of one "
              f"core over {wall:.1f} s (limit {100 * IDLE_CPU_LIMIT:.0f}%)", file=sys.stderr)
        self.assertLess(share, IDLE_CPU_LIMIT,
                        f"QEMU used {100 * share:.0f}% of a core while the guest sat idle at its prompt: "
                        f"a waiting vCPU should not keep it busy")

    def check_console(self, console):
        self.assertTrue(console.run("ls /dev/hvc0").endswith("hvc0"))
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(host.close)
        host.connect(str(self.dir / "hvc0.sock"))
        host.settimeout(30)
        received, read = console_round_trip(console, host, "/dev/hvc0", "over-hvc0-on-sel4")
        self.assertIn(b"guest-to-host-over-hvc0-on-sel4", received)
        self.assertEqual(read, "host-to-guest-over-hvc0-on-sel4",
                         "/dev/hvc0 did not read what the host sent on the socket")

    def check_network(self, console):
        mac = self.vm["net"][0].get("mac", "52:54:00:12:34:50")
        self.assertEqual(console.run("cat /sys/class/net/eth0/address"), mac.lower())
        console.run("ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0", check=True)
        console.run("seq 100000 114100 | head -c 98304 > /www/microkit.txt", check=True)
        console.run("httpd -p 80 -h /www", check=True)
        url = f"http://127.0.0.1:{self.port}/microkit.txt"
        body = fetch(url, console)
        self.assertEqual(len(body), len(page()))
        self.assertTrue(body == page(), "the page fetched from the guest differs from what httpd serves")

    def check_disk(self, console):
        self.assertEqual(console.run("cat /sys/block/vda/serial"), "vmm-disk-0")
        self.assertEqual(console.run("cat /sys/block/vda/size"), str(DISK_SIZE // 512))
        # The guest reads what the host wrote (blocks 760..799: before, under and after the write).
        host_md5 = hashlib.md5(b"".join(background_block(n) for n in range(760, 800))).hexdigest()
        guest_md5 = console.run("dd if=/dev/vda bs=4096 skip=760 count=40 2>/dev/null | md5sum", timeout=60)
        self.assertEqual(guest_md5.split()[0] if guest_md5 else "", host_md5,
                         "/dev/vda does not read what the host file holds")

        pattern = disk_pattern()
        console.run("seq 1000000 1131071 > /tmp/pattern", timeout=60, check=True)
        self.assertEqual(console.run("wc -c < /tmp/pattern").strip(), str(MiB))
        console.run(f"dd if=/tmp/pattern of=/dev/vda bs=4096 seek={WRITE_BLOCK} conv=fsync", timeout=120, check=True)
        readback = console.run(f"dd if=/dev/vda bs=4096 skip={WRITE_BLOCK} count=256 iflag=direct 2>/dev/null | md5sum",
                               timeout=120)
        self.assertEqual(readback.split()[0] if readback else "", hashlib.md5(pattern).hexdigest(),
                         "the pattern does not read back from /dev/vda (O_DIRECT)")

        console.sendline("sync; poweroff -f")
        console.expect(rb"vmm: guest powered off", 60.0)
        console.kill()      # on Microkit QEMU keeps running after the guest powered off

        self.assertEqual(self.disk.stat().st_size, DISK_SIZE, "the disk file changed size")
        with open(self.disk, "rb") as f:
            data = f.read(BACKGROUND)
            f.seek(DISK_SIZE - MiB)
            tail = f.read()
        self.assertTrue(data[WRITE_OFFSET:WRITE_OFFSET + MiB] == pattern,
                        f"the host file does not hold the guest's 1 MiB at offset {WRITE_OFFSET:#x}")
        for n in range(BACKGROUND // (4 * KiB)):
            if not WRITE_BLOCK <= n < WRITE_BLOCK + 256:
                self.assertTrue(data[n * 4 * KiB:(n + 1) * 4 * KiB] == background_block(n),
                                f"block {n} of the host file (outside the guest's write) changed")
        self.assertTrue(tail == bytes(MiB), "the last MiB of the host file changed")


class CPUTimeTests(unittest.TestCase):
    """The idle measurement's helpers, without a boot: they find QEMU under a parent that did not
    exec it, and tell a busy process from one that waits."""

    def start(self, argv):
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

        def stop():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.addCleanup(stop)
        return proc

    def test_qemu_is_found_under_a_shell_and_a_stopped_one_uses_no_cpu(self):
        qemu = shutil.which(os.environ.get("VMM_QEMU", "qemu-system-aarch64"))
        if not qemu:
            self.skipTest("no qemu-system-aarch64 on PATH")
        # A shell that runs QEMU as its child (the trailing `:` keeps it from exec'ing QEMU); -S keeps
        # the CPU stopped.
        shell = self.start(["sh", "-c", f'"{qemu}" -machine virt -nographic -S -monitor none -serial none; :'])
        deadline, pid = time.monotonic() + 10, None
        while pid is None and time.monotonic() < deadline:
            try:
                pid = qemu_pid(shell.pid)
            except AssertionError:
                time.sleep(0.1)
        self.assertIsNotNone(pid, "qemu_pid did not find QEMU under its shell")
        self.assertNotEqual(pid, shell.pid)
        self.assertTrue(os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("qemu-system"))
        time.sleep(0.5)
        share, wall = cpu_share(pid, 1.0)
        self.assertGreaterEqual(wall, 1.0)
        self.assertLess(share, IDLE_CPU_LIMIT)

    def test_a_busy_process_shows_cpu_time(self):
        busy = self.start([sys.executable, "-c", "while True: pass"])
        share, _ = cpu_share(busy.pid, 1.0)
        self.assertGreater(share, 0.1)
        self.assertLessEqual(share, 1.1)


if __name__ == "__main__":
    unittest.main()
