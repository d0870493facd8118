"""Two VMs on one board (examples/two-vms.toml: VMs "a" and "b", 2 vCPUs and 256 MiB each, a disk each,
VM a with a network forwarding a host port to its port 80), native platform.

The system is run the user's way, `vmm run FILE`. The system file is generated from the example into a
temporary directory: kernel and initrd made absolute, each VM's disk there (a-disk0.img, b-disk0.img),
VM b's serial socket there (`serial = ".../b.serial.sock"`), the forwarded host port a free one; so the
test never touches build/two-vms/ nor port 8080. Everything else is the example's, its network "lan"
between the VMs (the VMM's switch) included.

Consoles: VM a's ttyAMA0 is the board's PL011, the terminal of `vmm run` (a SerialConsole); the VMM's
own messages ("vmm: VM 1 reset; ...", stop reports) go to that line too, between VM a's output. VM b's
ttyAMA0 is a PL011 the VMM emulates, whose bytes go to a unix socket (QEMU's, server=on,wait=off); the
test connects to it as soon as `vmm run` starts QEMU (SocketConsole below) so it sees VM b boot. The
test types into VM b 16 bytes at a time, each piece after the echo of the one before: the emulated
PL011's receive FIFO holds 32 bytes. One check (long line) writes a whole line at once, as socat does.

Two boots, each check a subtest (one failing check does not hide the later ones), in this order:

  boot 1 (test_disks_apart_and_a_stopped_vm_leaves_the_other_running)
    shells     both shells answer; `nproc` is 2 in each, MemTotal at most 256 MiB in each;
    long line  a ~160-byte command line written to VM b's socket at once reaches its shell whole;
    disks      1 MiB of "...-disk-a" lines at 1 MiB of VM a's /dev/vda, of "...-disk-b" lines on VM b's
               (dd conv=fsync): each host file holds its VM's pattern there and nowhere the other's;
    lan        the VMs' cards on the example's network "lan" (found by their MACs) get 10.0.9.1 and
               10.0.9.2; ping both ways; 2 MiB of /dev/urandom from a to b with nc arrive with a's md5;
    stop       `devmem 0x08030000` in VM b (the board GIC's hypervisor interface, GICH) stops VM b: the
               board's line shows "vmm: guest stopped: ..." and "vmm:   VM 1 vCPU n PC .. ESR .. address
               0x..08030000", then "vmm: VM 1 stopped; the other VMs go on";
    b silent   VM b's socket no longer echoes nor answers a command;
    a disk     VM a still answers and reads and writes its disk with O_DIRECT (the host file has it);
    a network  busybox httpd in VM a serves /www/index.html to the host through the forwarded port;
    poweroff   `poweroff -f` in VM a (the last VM running) ends QEMU with exit status 0.
  boot 2 (test_one_vm_reboots_and_powers_off_while_the_other_runs)
    shells     both shells answer;
    reboot     `reboot -f` in VM b: "vmm: VM 1 reset; the other VMs go on" on the board's line, VM a
               answers meanwhile, VM b boots again on its socket ("vmm-guest: init done", its prompt,
               `nproc` 2) and VM a still answers after;
    b off      `poweroff -f` in VM b: "vmm: VM 1 powered off; the other VMs go on", VM b's socket
               silent, VM a still answers;
    poweroff   `poweroff -f` in VM a ends QEMU with exit status 0.

Needs QEMU (skipped without qemu-system-aarch64 on PATH, or $VMM_QEMU) and the host tool
.build/debug/vmm with the VMM's native objects (`make vmm`); a missing host tool or a missing
examples/two-vms.toml fails the test.
"""

import hashlib
import os
import re
import sys
import time
import tomllib
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import (  # noqa: E402
    INIT_DONE, REPO_ROOT, ExampleError, SerialConsoleError, SocketConsole, fetch, move_devices, read_example,
    require_microkit_board, require_qemu_and_host_tool, short_temp_dir, start_vmm_run, strip_ansi, vm_copy, write_system)

EXAMPLE = REPO_ROOT / "examples/two-vms.toml"
VM_NAMES = ("a", "b")
VCPUS = {"a": 2, "b": 2}   # examples/two-vms.toml's; the Microkit example's are MicrokitTwoVMTests.VCPUS
RAM_KB = 256 * 1024

BUILD_TIMEOUT = 300.0       # `vmm run` builds the image before QEMU starts
BOOT_TIMEOUT = 300.0        # TCG, two 2-vCPU guests on a small, noisy host
CONNECT_TIMEOUT = 60.0      # VM b's socket appears when QEMU starts
COMMAND_TIMEOUT = 120.0     # one shell command line
STOP_TIMEOUT = 60.0         # from a command in VM b to the VMM's message on the board's line
SILENCE_SECONDS = 10.0      # a stopped VM's console must stay quiet this long
POWEROFF_TIMEOUT = 120.0
FETCH_TIMEOUT = 120.0
LONG_LINE_TIMEOUT = 30.0

MIB = 1 << 20
GICH = 0x08030000           # the board's GIC hypervisor interface (QEMU virt, GICv2)
TEST_FAULT_ADDRESS = 0x0BFFF000  # MicrokitLayout.testFaultAddress: a VMM with test hooks faults there
LAN_ADDRESSES = ("10.0.9.1", "10.0.9.2")   # VM a's and VM b's cards on the example's network "lan"


def disk_pattern(vm):
    """The 1 MiB VM `vm` writes at 1 MiB of its disk, and the line it is made of."""
    line = f"vmm-two-vms-disk-{vm}\n".encode()
    return (line * (MIB // len(line) + 1))[:MIB], line.rstrip(b"\n")


def late_pattern(vm):
    """The 1 MiB VM `vm` writes at 2 MiB of its disk with O_DIRECT after the other VM stopped."""
    line = f"vmm-two-vms-late-{vm}\n".encode()
    return (line * (MIB // len(line) + 1))[:MIB], line.rstrip(b"\n")


def guest_write(pattern_line, offset_mib, direct=False):
    """The shell line that writes 1 MiB of `pattern_line` lines at `offset_mib` MiB of /dev/vda."""
    flag = "oflag=direct " if direct else ""
    return (f"yes {pattern_line.decode()} | head -c {MIB} > /tmp/pattern && "
            f"dd if=/tmp/pattern of=/dev/vda bs=64k seek={offset_mib * 16} {flag}conv=fsync && rm /tmp/pattern")


def guest_md5(offset_mib):
    """The shell line that prints the md5 of 1 MiB at `offset_mib` MiB of /dev/vda, read with O_DIRECT."""
    return f"dd if=/dev/vda bs=64k skip={offset_mib * 16} count=16 iflag=direct 2>/dev/null | md5sum"


# -- the system file ----------------------------------------------------------------------------

def system_file(directory, example=EXAMPLE, vcpus=VCPUS, platform="native"):
    """The example's system copied into `directory` (serial_console's vm_copy and move_devices):
    absolute kernel and initrd, VM x's disk on directory/x-disk0.img, VM b's serial socket
    directory/b.serial.sock, the forwarded host port a free one. Returns (path of the file, {vm: disk
    path}, serial socket of b, (host port, guest port)); ExampleError when the example is not the
    system this test is about."""
    data = read_example(example, "the two-VM example is what this test boots", platform)
    vms = data.get("vm", [])
    names = tuple(vm.get("name") for vm in vms)
    if names != VM_NAMES:
        raise ExampleError(example, f"expected VMs {VM_NAMES}, found {names}")
    copies, disks, serial, forward = [], {}, directory / "b.serial.sock", None
    for vm in vms:
        vm, devices = vm_copy(vm, example)
        name = vm["name"]
        if vm.get("vcpus") != vcpus.get(name):
            raise ExampleError(example, f"vm '{name}': expected vcpus = {vcpus.get(name)}, found {vm.get('vcpus')!r}")
        blocks = devices.get("block", [])
        if len(blocks) != 1:
            raise ExampleError(example, f"vm '{name}': expected one disk ([[vm.block]]), found {len(blocks)}")
        if name == "b":
            vm["serial"] = str(serial)
        (disks[name],), forwards = move_devices(devices, directory, example, stem=f"{name}-")
        if name == "a" and forwards:
            _, _, host, guest = forwards[0]
            forward = (host, guest)
        copies.append((vm, devices))
    if forward is None or forward[1] != 80:
        raise ExampleError(example, f"expected VM a to forward a host port to its port 80, found {forward}")
    return write_system(directory / example.name, data.get("system"), copies), disks, serial, forward


# -- the tests ------------------------------------------------------------------------------------

class TwoVMTests(unittest.TestCase):
    EXAMPLE = EXAMPLE
    VCPUS = VCPUS
    PLATFORM = "native"
    OPTIONS = ()            # more `vmm run` options
    BOOT_TIMEOUT = BOOT_TIMEOUT
    # The second line of a stop report: "VM n vCPU m PC .. ESR .. address ..".
    STOP_REPORT = (rb"vmm:\s+(VM (\d+) vCPU (\d+) PC (0x[0-9a-fA-F]+) ESR (0x[0-9a-fA-F]+) "
                   rb"address (0x[0-9a-fA-F]+))\r?\n")

    @classmethod
    def setUpClass(cls):
        require_qemu_and_host_tool()

    def setUp(self):
        self.dir = short_temp_dir("vmm-2vm-", self)
        self.system, self.disks, self.serial, (self.port, _) = system_file(self.dir, self.EXAMPLE, self.VCPUS, self.PLATFORM)

    def boot(self, name, env=None):
        """`vmm run` of the generated system (with `env` over our environment); returns (board = VM a's
        console, VM b's console), both at their shell's prompt."""
        board = start_vmm_run(self.system, self.dir / "build", f"{name}-board", *self.OPTIONS, env=env)
        self.addCleanup(board.kill)
        announced = board.expect(rb"vm 'b': serial console on (\S+) \(connect with", BUILD_TIMEOUT)
        if announced.group(1).decode() != str(self.serial):
            board.fail(f"`vmm run` announced VM b's serial console on {announced.group(1).decode()!r}, "
                       f"not on its `serial` {str(self.serial)!r}")
        board.expect(rb"vmm: starting qemu-system", BUILD_TIMEOUT)
        b = SocketConsole(self.serial, board, name=f"{name}-b")
        self.addCleanup(b.close)
        b.connect(CONNECT_TIMEOUT)
        board.expect(INIT_DONE, self.BOOT_TIMEOUT)
        board.wait_for_prompt(self.BOOT_TIMEOUT)
        a_ready = time.monotonic() - board.started_at
        b.expect(INIT_DONE, self.BOOT_TIMEOUT)
        b.wait_for_prompt(self.BOOT_TIMEOUT)
        print(f"\n[{name}] boot to both prompts, build included: VM a {a_ready:.2f} s, VM b "
              f"{time.monotonic() - board.started_at:.2f} s", file=sys.stderr)
        return board, b

    def logs(self, board, b):
        """The tails of both consoles, for failure messages."""
        return (f"\n--- board's serial line (VM a, VMM), last lines; log {board.log_path} ---\n"
                f"{board.tail(40)}\n--- VM b's console, last lines; log {b.log_path} ---\n{b.tail(40)}\n--- end ---")

    def run_checks(self, board, b, checks):
        for n, (label, check) in enumerate(checks):
            if board.proc.poll() is not None and not label.startswith("poweroff"):
                board.fail(f"QEMU exited (status {board.proc.returncode}) before the check {label!r}")
            passed = False
            with self.subTest(label):
                check(board, b)
                passed = True
            if n == 0 and not passed:
                return      # the shells do not answer: nothing else means anything

    # -- boot 1 -----------------------------------------------------------------------------------
    def test_disks_apart_and_a_stopped_vm_leaves_the_other_running(self):
        board, b = self.boot("two-vms-stop")
        self.run_checks(board, b, [
            ("both shells answer; nproc as the file says and at most 256 MiB in each", self.check_shells),
            ("a line longer than the PL011's FIFO, written at once, reaches VM b whole", self.check_long_line),
            ("each VM's disk writes land in its own file only", self.check_disks),
            ("the VMM network joins a and b: ping both ways, 2 MiB over TCP arrive intact", self.check_lan),
            ("VM b reading the GIC hypervisor interface is stopped with a report", self.check_stop),
            ("VM b's console stops answering", self.check_b_silent),
            ("VM a still answers and reads and writes its disk with O_DIRECT", self.check_a_disk),
            ("VM a's network: httpd page through the forwarded port", self.check_a_network),
            ("poweroff -f in VM a (the last VM) ends QEMU with status 0", self.check_poweroff),
        ])

    # -- boot 2 -----------------------------------------------------------------------------------
    def test_one_vm_reboots_and_powers_off_while_the_other_runs(self):
        board, b = self.boot("two-vms-reboot")
        self.run_checks(board, b, [
            ("both shells answer; nproc as the file says and at most 256 MiB in each", self.check_shells),
            ("VM b reboots (reboot -f) while VM a goes on", self.check_b_reboot),
            ("VM b powers off (poweroff -f) while VM a goes on", self.check_b_poweroff),
            ("poweroff -f in VM a (the last VM) ends QEMU with status 0", self.check_poweroff),
        ])

    # -- the checks -------------------------------------------------------------------------------
    def assert_a_answers(self, board, b, token):
        """VM a echoes `token` (the VMM's messages may share its line, so `in`, not `==`)."""
        said = board.run(f"echo {token}-$((40+2))", timeout=COMMAND_TIMEOUT)
        self.assertIn(f"{token}-42", said, f"VM a did not answer `echo {token}-$((40+2))`{self.logs(board, b)}")

    def check_shells(self, board, b):
        for vm, console in (("a", board), ("b", b)):
            said = console.run(f"echo hello-from-{vm}-$((6*7))", timeout=COMMAND_TIMEOUT)
            self.assertIn(f"hello-from-{vm}-42", said, f"VM {vm}'s shell did not answer an echo{self.logs(board, b)}")
        for vm, console in (("a", board), ("b", b)):
            nproc = console.run("nproc", timeout=COMMAND_TIMEOUT)
            self.assertEqual(nproc, str(self.VCPUS[vm]), f"`nproc` in VM {vm}{self.logs(board, b)}")
            meminfo = console.run("grep MemTotal /proc/meminfo", timeout=COMMAND_TIMEOUT)
            found = re.search(r"MemTotal:\s*(\d+) kB", meminfo)
            self.assertIsNotNone(found, f"no MemTotal in VM {vm}'s /proc/meminfo: {meminfo!r}")
            self.assertLessEqual(int(found.group(1)), RAM_KB,
                                 f"VM {vm} sees more than its 256 MiB: {meminfo!r}{self.logs(board, b)}")

    def check_long_line(self, board, b):
        """What `socat - UNIX-CONNECT:...` does with a typed line: one write of the whole line, here about
        160 bytes, more than the emulated PL011's receive FIFO (32) holds at once."""
        token = "long-line-" + "0123456789abcdef" * 7
        command = f"echo {token}-$((6*7))"
        start = len(b.log)
        try:
            said = b.run(command, timeout=LONG_LINE_TIMEOUT, raw=True)
        except SerialConsoleError:
            arrived = strip_ansi(b.log[start:]).decode("utf-8", "replace")
            b.send_raw(b"\x03")                     # drop whatever part of the line the shell got
            b.drain(2.0)
            b.run("echo recovered", timeout=COMMAND_TIMEOUT)
            self.fail(f"a command line of {len(command)} bytes (and its end marker) written to VM b's socket at "
                      f"once did not reach its shell whole; the guest echoed only {arrived!r}{self.logs(board, b)}")
        self.assertIn(f"{token}-42", said, f"VM b's answer to a long line{self.logs(board, b)}")

    def check_disks(self, board, b):
        for vm, console in (("a", board), ("b", b)):
            _, line = disk_pattern(vm)
            output = console.run(guest_write(line, 1), timeout=COMMAND_TIMEOUT)
            self.assertEqual(console.last_status, 0,
                             f"writing 1 MiB to VM {vm}'s /dev/vda failed:\n{output}{self.logs(board, b)}")
        for vm, other in (("a", "b"), ("b", "a")):
            data = self.disks[vm].read_bytes()
            pattern, _ = disk_pattern(vm)
            _, other_line = disk_pattern(other)
            self.assertEqual(len(data), 64 * MIB, f"{self.disks[vm]}: size")
            self.assertTrue(data[MIB:2 * MIB] == pattern,
                            f"{self.disks[vm].name} does not hold VM {vm}'s write at 1 MiB (found "
                            f"{data[MIB:MIB + 64]!r}...)")
            self.assertNotIn(other_line, data, f"{self.disks[vm].name} (VM {vm}'s disk) holds VM {other}'s "
                                               f"pattern {other_line!r} at {data.find(other_line)}")
            self.assertEqual(data[:MIB], bytes(MIB), f"{self.disks[vm].name}: the first MiB changed")

    def check_lan(self, board, b):
        """The example's network "lan" (the VMM's switch): each VM's card on it, found by the MAC the file
        gives it, gets an address; ping goes both ways; 2 MiB of random bytes go from a to b over TCP
        (Linux uses the card's checksum and segmentation offloads) and arrive with the same md5."""
        data = tomllib.loads(self.EXAMPLE.read_text())
        addresses = {"a": LAN_ADDRESSES[0], "b": LAN_ADDRESSES[1]}
        for vm, console in (("a", board), ("b", b)):
            cards = [t for t in next(v for v in data["vm"] if v["name"] == vm).get("net", []) if "network" in t]
            self.assertEqual(len(cards), 1, f"{self.EXAMPLE}: vm '{vm}' should have one card on a VMM network")
            name = console.run(f"for i in /sys/class/net/*; do [ \"$(cat $i/address)\" = {cards[0]['mac'].lower()} ] "
                               f"&& basename $i; done", timeout=COMMAND_TIMEOUT).strip()
            self.assertRegex(name, r"^eth\d$", f"VM {vm} has no card with MAC {cards[0]['mac']}{self.logs(board, b)}")
            console.run(f"ip addr add {addresses[vm]}/24 dev {name} && ip link set {name} up",
                        timeout=COMMAND_TIMEOUT, check=True)
        for vm, console, other in (("a", board, "b"), ("b", b, "a")):
            output = console.run(f"ping -c 3 -W 10 {addresses[other]}", timeout=COMMAND_TIMEOUT)
            self.assertEqual(console.last_status, 0, f"VM {vm} cannot ping VM {other} ({addresses[other]}) over the "
                                                     f"VMM network:\n{output}{self.logs(board, b)}")
        b.run("rm -f /tmp/lan.bin; sleep 100000 | nc -l -p 5001 > /tmp/lan.bin &", timeout=COMMAND_TIMEOUT)
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while ":5001 " not in b.run("netstat -ltn", timeout=COMMAND_TIMEOUT):
            self.assertLess(time.monotonic(), deadline, f"VM b's nc does not listen{self.logs(board, b)}")
            time.sleep(0.5)
        sent = board.run("dd if=/dev/urandom of=/tmp/lan.bin bs=64k count=32 2>/dev/null && md5sum /tmp/lan.bin "
                         f"&& nc {addresses['b']} 5001 < /tmp/lan.bin", timeout=COMMAND_TIMEOUT, check=True)
        b.run("kill $(pidof sleep) 2>/dev/null; wait", timeout=COMMAND_TIMEOUT)
        got = b.run("wc -c < /tmp/lan.bin; md5sum /tmp/lan.bin", timeout=COMMAND_TIMEOUT)
        self.assertEqual(got.split()[:2], [str(2 * MIB), sent.split()[0]],
                         f"VM b did not receive VM a's 2 MiB intact (a: {sent!r}, b: {got!r}){self.logs(board, b)}")

    def check_stop(self, board, b):
        b.sendline(f"devmem 0x{GICH:08x}")
        reason = board.expect(rb"vmm: guest stopped: ([^\r\n]*)\r?\n", STOP_TIMEOUT)
        where = board.expect(self.STOP_REPORT, STOP_TIMEOUT)
        print(f"[two-vms] VM b stopped: {reason.group(1).decode(errors='replace')}; "
              f"{where.group(1).decode(errors='replace')}", file=sys.stderr)
        self.assertEqual(int(where.group(2)), 1, f"the stop report names VM {where.group(2).decode()}, not VM 1 "
                                                 f"(b){self.logs(board, b)}")
        self.assertEqual(int(where.group(6), 16), GICH,
                         f"the stop report's address is {where.group(6).decode()}, not 0x{GICH:08x}{self.logs(board, b)}")
        board.expect(rb"vmm: VM 1 stopped; the other VMs go on", STOP_TIMEOUT)

    def check_b_silent(self, board, b):
        b.drain(1.0)
        b.send_raw("echo b-still-alive-$((6*7))\n")
        heard = b.drain(SILENCE_SECONDS)
        self.assertNotIn(b"b-still-alive", heard,
                         f"VM b's console still echoes or answers after the stop: {heard!r}{self.logs(board, b)}")

    def check_a_disk(self, board, b):
        self.assert_a_answers(board, b, "a-after-b-stopped")
        pattern, _ = disk_pattern("a")
        digest = board.run(guest_md5(1), timeout=COMMAND_TIMEOUT)
        self.assertEqual(digest.split()[:1], [hashlib.md5(pattern).hexdigest()],
                         f"VM a's O_DIRECT read of its first write (1 MiB at 1 MiB){self.logs(board, b)}")
        self.check_a_late_write(board, b)

    def check_a_late_write(self, board, b):
        """VM a writes 1 MiB at 2 MiB of its disk with O_DIRECT and reads it back; the host files agree."""
        self.assert_a_answers(board, b, "a-late-write")
        late, line = late_pattern("a")
        output = board.run(guest_write(line, 2, direct=True), timeout=COMMAND_TIMEOUT)
        self.assertEqual(board.last_status, 0,
                         f"VM a's O_DIRECT write after VM b stopped failed:\n{output}{self.logs(board, b)}")
        digest = board.run(guest_md5(2), timeout=COMMAND_TIMEOUT)
        self.assertEqual(digest.split()[:1], [hashlib.md5(late).hexdigest()],
                         f"VM a's O_DIRECT read back of its write after VM b stopped{self.logs(board, b)}")
        self.assertTrue(self.disks["a"].read_bytes()[2 * MIB:3 * MIB] == late,
                        f"{self.disks['a'].name} does not hold VM a's O_DIRECT write at 2 MiB")
        self.assertNotIn(line, self.disks["b"].read_bytes(), f"{self.disks['b'].name} holds VM a's late write")

    def check_a_network(self, board, b):
        board.run("ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2",
                  timeout=COMMAND_TIMEOUT, check=True)
        board.run("httpd -p 80 -h /www", timeout=COMMAND_TIMEOUT, check=True)
        expected = board.run("md5sum /www/index.html", timeout=COMMAND_TIMEOUT, check=True).split()[:1]
        body = fetch(f"http://127.0.0.1:{self.port}/index.html", board, FETCH_TIMEOUT)
        self.assertEqual([hashlib.md5(body).hexdigest()], expected,
                         f"the page fetched through 127.0.0.1:{self.port} is not VM a's /www/index.html: "
                         f"{body[:200]!r}{self.logs(board, b)}")
        self.assertIn(b"Hello from the Linux guest of vmm", body)

    def check_b_reboot(self, board, b):
        b.drain(0.5)
        b.sendline("reboot -f")
        board.expect(rb"vmm: VM 1 reset; the other VMs go on", STOP_TIMEOUT)
        self.assert_a_answers(board, b, "a-while-b-reboots")
        b.expect(INIT_DONE, BOOT_TIMEOUT)
        b.wait_for_prompt(BOOT_TIMEOUT)
        said = b.run("echo b-rebooted-$((6*7))", timeout=COMMAND_TIMEOUT)
        self.assertIn("b-rebooted-42", said, f"VM b's shell after the reboot{self.logs(board, b)}")
        self.assertEqual(b.run("nproc", timeout=COMMAND_TIMEOUT), str(self.VCPUS["b"]),
                         f"`nproc` in VM b after its reboot{self.logs(board, b)}")
        self.assert_a_answers(board, b, "a-after-b-rebooted")

    def check_b_poweroff(self, board, b):
        b.drain(0.5)
        b.sendline("poweroff -f")
        board.expect(rb"vmm: VM 1 powered off; the other VMs go on", STOP_TIMEOUT)
        self.assertIsNone(board.proc.poll(), "QEMU exited when VM b (not the last VM) powered off")
        b.drain(1.0)
        b.send_raw("echo b-still-alive-$((6*7))\n")
        heard = b.drain(SILENCE_SECONDS / 2)
        self.assertNotIn(b"b-still-alive", heard,
                         f"VM b's console still echoes or answers after its power-off: {heard!r}{self.logs(board, b)}")
        self.assert_a_answers(board, b, "a-after-b-powered-off")

    def check_poweroff(self, board, b):
        board.sendline("poweroff -f")
        try:
            status = board.wait_exit(POWEROFF_TIMEOUT)
        except SerialConsoleError as error:
            if re.search(rb"vmm: VM 0 powered off; the other VMs go on", board.log):
                self.fail(f"VM a powered off, but the VMM counts VM b as still running (\"VM 0 powered off; the "
                          f"other VMs go on\"), so the board stays on: VM b never stopped or powered off\n{error}")
            raise
        self.assertEqual(status, 0, f"QEMU exited with status {status} after `poweroff -f` in VM a, the last VM"
                                    f"{self.logs(board, b)}")
        self.assertRegex(board.log.decode("utf-8", "replace"), r"vmm: VM 0 powered off; it was the last VM",
                         "the VMM did not report VM a's power-off as the last VM's")


class MicrokitTwoVMTests(TwoVMTests):
    """The same system on seL4: examples/microkit-two-vms.toml (examples/two-vms.toml on the Microkit
    platform), `vmm run FILE --microkit-config CONFIG` with MICROKIT_SDK in the environment. Each VM has
    a VMM protection domain of its own; VM b's PL011 is emulated by its VMM, its bytes carried by a
    console driver PD to its socket; the network "lan" is a board NIC per VM, each behind its own
    VM's driver PD, joined by a QEMU hub. The VMM PDs' messages go to the board's serial line (seL4's
    debug output), VM a's console, with "VM n" in them. On Microkit the board stays on when a VM
    powers off (seL4 has no power-off for a PD), so each boot ends with the test stopping QEMU, and a
    VM that resets is stopped, not rebooted. Skipped without MICROKIT_SDK, and on the test matrix's
    other boards.

      boot 1 (test_disks_apart_and_a_stopped_vm_leaves_the_other_running)
        shells, long line, disks, lan as on native;
        stop       `devmem 0x08030000` in VM b (the GIC's hypervisor interface, which no VM maps): the
                   board's line shows "vmm: guest stopped: ...", "vmm:   VM 1 vCPU 0x.. PC .. ESR ..
                   address 0x..08030000" and "vmm: VM 1 stopped; the other VMs go on";
        b silent, a disk, a network as on native.
      boot 3 (test_a_fault_in_one_vmm_leaves_the_other_vm_running), built with VMM_TEST_HOOKS=1
        shells     both shells answer;
        vmm fault  `devmem 0x0bfff000` in VM b makes its VMM PD fault on purpose (the test hook: a store
                   to an address the PD does not map): "MON|ERROR: faulting PD: b_vmm" from seL4's
                   monitor on the board's line;
        b silent   as in boot 1;
        a disk     VM a writes 1 MiB at 2 MiB of its disk with O_DIRECT and reads it back (the host file
                   has it, VM b's does not);
        a network  as in boot 1.
      boot 2 (test_a_vm_cannot_reach_the_other_vms_ram)
        shells     both shells answer;
        reach      VM b writes a marker into its RAM (a file in its tmpfs); `devmem 0x50000000` in VM a,
                   the physical address of VM b's RAM (and past the end of VM a's, which both guests see
                   at 0x40000000): VM a is stopped with a report naming that address, "VM 0 stopped";
        b goes on  VM b still answers, still has its marker, and writes and reads its disk with O_DIRECT
                   (its host file has the write, VM a's does not).
    """
    EXAMPLE = REPO_ROOT / "examples/microkit-two-vms.toml"
    VCPUS = {"a": 1, "b": 2}    # with several VMs, Microkit 2.0.1 gives only the last one several vCPUs
    PLATFORM = "microkit"
    OPTIONS = ("--microkit-config", os.environ.get("MICROKIT_CONFIG") or "debug")
    BOOT_TIMEOUT = 600.0        # two guests' boots share one core under seL4, on TCG
    STOP_REPORT = (rb"vmm:\s+(VM (\d+) vCPU (0x[0-9a-f]+) PC (0x[0-9a-f]+) ESR (0x[0-9a-f]+) "
                   rb"address (0x[0-9a-f]+))\r?\n")
    B_RAM_PHYSICAL = 0x50000000     # after VM a's 256 MiB at 0x40000000 (SystemBuilder.microkitRAMPlacement)

    @classmethod
    def setUpClass(cls):
        require_microkit_board()

    def test_disks_apart_and_a_stopped_vm_leaves_the_other_running(self):
        board, b = self.boot("mk-two-vms-stop")
        self.run_checks(board, b, [
            ("both shells answer; nproc as the file says and at most 256 MiB in each", self.check_shells),
            ("a line longer than the PL011's FIFO, written at once, reaches VM b whole", self.check_long_line),
            ("each VM's disk writes land in its own file only", self.check_disks),
            ("the network between a and b: ping both ways, 2 MiB over TCP arrive intact", self.check_lan),
            ("VM b reading the GIC hypervisor interface is stopped with a report", self.check_stop),
            ("VM b's console stops answering", self.check_b_silent),
            ("VM a still answers and reads and writes its disk with O_DIRECT", self.check_a_disk),
            ("VM a's network: httpd page through the forwarded port", self.check_a_network),
        ])

    def test_one_vm_reboots_and_powers_off_while_the_other_runs(self):
        raise unittest.SkipTest("on Microkit a VM that resets or powers off is stopped (no reboot, the board stays on)")

    def test_a_vm_cannot_reach_the_other_vms_ram(self):
        board, b = self.boot("mk-two-vms-reach")
        self.run_checks(board, b, [
            ("both shells answer; nproc as the file says and at most 256 MiB in each", self.check_shells),
            ("VM a reading VM b's RAM at its physical address is stopped with a report", self.check_a_reaches_b),
            ("VM b goes on: its shell, its memory and its disk", self.check_b_goes_on),
        ])

    def test_a_fault_in_one_vmm_leaves_the_other_vm_running(self):
        # VMM_TEST_HOOKS=1: `vmm build` links the VMMs with MicrokitLayout.testHooksSymbol, so that a
        # guest's access to MicrokitLayout.testFaultAddress makes its VMM fault as a bug would.
        board, b = self.boot("mk-two-vms-vmm-fault", env={"VMM_TEST_HOOKS": "1"})
        self.run_checks(board, b, [
            ("both shells answer; nproc as the file says and at most 256 MiB in each", self.check_shells),
            ("VM b's VMM faults: the monitor reports b_vmm", self.check_b_vmm_faults),
            ("VM b's console stops answering", self.check_b_silent),
            ("VM a still answers and writes and reads its disk with O_DIRECT", self.check_a_late_write),
            ("VM a's network: httpd page through the forwarded port", self.check_a_network),
        ])

    def check_b_vmm_faults(self, board, b):
        b.sendline(f"devmem 0x{TEST_FAULT_ADDRESS:08x}")
        board.expect(rb"vmm: test hook: this VMM faults on purpose", STOP_TIMEOUT)
        board.expect(rb"MON\|ERROR: faulting PD: b_vmm", STOP_TIMEOUT)

    def check_a_reaches_b(self, board, b):
        b.run("echo vmm-b-marker-$((6*7)) > /tmp/marker", timeout=COMMAND_TIMEOUT, check=True)
        board.sendline(f"devmem 0x{self.B_RAM_PHYSICAL:08x}")
        board.expect(rb"vmm: guest stopped: ([^\r\n]*)\r?\n", STOP_TIMEOUT)
        where = board.expect(self.STOP_REPORT, STOP_TIMEOUT)
        self.assertEqual(int(where.group(2)), 0, f"the stop report names VM {where.group(2).decode()}, not VM 0 (a)"
                                                 f"{self.logs(board, b)}")
        self.assertEqual(int(where.group(6), 16), self.B_RAM_PHYSICAL,
                         f"the stop report's address is {where.group(6).decode()}{self.logs(board, b)}")
        board.expect(rb"vmm: VM 0 stopped; the other VMs go on", STOP_TIMEOUT)

    def check_b_goes_on(self, board, b):
        said = b.run("echo b-after-a-stopped-$((6*7)); cat /tmp/marker", timeout=COMMAND_TIMEOUT)
        self.assertIn("b-after-a-stopped-42", said, f"VM b's shell after VM a stopped{self.logs(board, b)}")
        self.assertIn("vmm-b-marker-42", said, f"VM b's marker in its RAM{self.logs(board, b)}")
        late, line = late_pattern("b")
        output = b.run(guest_write(line, 2, direct=True), timeout=COMMAND_TIMEOUT)
        self.assertEqual(b.last_status, 0, f"VM b's O_DIRECT write after VM a stopped failed:\n{output}{self.logs(board, b)}")
        digest = b.run(guest_md5(2), timeout=COMMAND_TIMEOUT)
        self.assertEqual(digest.split()[:1], [hashlib.md5(late).hexdigest()],
                         f"VM b's O_DIRECT read back of its write after VM a stopped{self.logs(board, b)}")
        self.assertTrue(self.disks["b"].read_bytes()[2 * MIB:3 * MIB] == late,
                        f"{self.disks['b'].name} does not hold VM b's O_DIRECT write at 2 MiB")
        self.assertNotIn(line, self.disks["a"].read_bytes(), f"{self.disks['a'].name} holds VM b's late write")


if __name__ == "__main__":
    unittest.main()
