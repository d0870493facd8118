#!/usr/bin/env python3
"""Two-VM benchmark: TCP between two VMs, and boot time, on the native platform and on seL4, in one run.

The system, for every row: examples/microkit-two-vms.toml (examples/two-vms.toml on the Microkit
platform), VMs "a" (1 vCPU) and "b" (2 vCPUs), 256 MiB and a disk each. VM a's console is the board's
serial line (QEMU's stdio), VM b's a PL011 its VMM emulates, on a unix socket; VM a has a board NIC
(QEMU user network, a host port forwarded to its port 80) and both have a card on the network "lan"
(VM a's card and VM b's are found by the MACs the file gives them). Microkit 2.0.1 gives only the
last VM several vCPUs, hence 1 and 2; the native rows boot the same file with its platform switched
to "native", so that both platforms run the same VMs with the same vCPUs and devices and the
sel4/native ratios compare platforms, not systems (examples/two-vms.toml itself, 2 vCPUs each, is
not booted here).

  2 VMs        native: VMs a and b, static partitioning, one board CPU per vCPU (QEMU gets -smp 3);
               "lan" is the VMM's virtual switch.
  1 VM         native: the same file's VM a alone (1 vCPU, 256 MiB, one disk, its board NIC; no card
               on "lan", which needs two VMs): QEMU gets -smp 1.
  sel4 2 VMs   only with MICROKIT_SDK in the environment: the same system on seL4, a VMM protection
               domain per VM (`vmm run FILE --output DIR --microkit-config CONFIG`; CONFIG is
               --microkit-config, default $MICROKIT_CONFIG or debug; needs `make MICROKIT_SDK=...
               microkit-objects`). "lan" is a board NIC per VM, each behind its VM's driver PD, joined
               in a QEMU hub (not the VMM's switch). The SDK's seL4 kernel is single-core: the three
               vCPUs share one board CPU, one host thread, scheduled by seL4; expect it much slower.
  sel4 1 VM    the same file's VM a alone on seL4 (a system of one VM: its VMM owns the timer itself).

The sel4 configs are an attempt, as in scripts/bench-smp.py: a build or boot that fails is reported
under the table and does not fail the run nor lose the native figures. Without MICROKIT_SDK the
table ends with "sel4: not measured (needs MICROKIT_SDK)" and the run is the native rows alone.

Each boot runs the user's way, `.build/debug/vmm run FILE --output DIR` (for sel4 with
--microkit-config), of a copy of the example in a temporary directory: kernel and initrd absolute,
fresh disks and VM b's serial socket there, the forwarded host port a free one; nothing in
build/microkit-two-vms/ nor port 8080 is touched. `vmm run` builds the image (on seL4 the Microkit
loader.img), prints "vmm: starting qemu-system-aarch64" and replaces itself with QEMU. On seL4 the
board's line first carries the loader's, the kernel's and the monitor's messages ("LDR|INFO",
"Bootstrapping kernel", "MON|INFO") and the VMMs', then VM a's console. Each boot ends with the
script killing QEMU (on Microkit the board stays on when a guest powers off).

Measured, per 2-VM boot, --reps times each (the order of the transfers is reversed every other rep):

  net a->b (lan)  VM b: `sleep | nc -l -p 5001 > /tmp/file` (tmpfs; nc exits at the end of the
                  connection; `sleep` keeps its stdin open so that it never shuts its sending half
                  early). VM a: `dd if=/dev/zero bs=64k count=16*M | nc 10.0.9.2 5001` between two
                  readings of a's guest clock (ns, "now at" line of /proc/timer_list, or /proc/uptime
                  where it is missing). busybox's nc shuts down its sending half at the end of its
                  input and exits when b's nc, which exits at the end of the connection, has closed it:
                  the time is from connect to everything being in b's file. The file's size must be
                  16*M*64 KiB. (Piping nc into wc -c instead costs a 1-vCPU guest about 2.5x in
                  throughput, scripts/bench-io.py found, which would hide the lan.)
  net a->host     the reference, "one VM to the host", in the same boot and measured the same way as
                  a->b: the host listens on 127.0.0.1 (a thread that counts what it reads until the
                  connection ends); VM a: `dd if=/dev/zero bs=64k count=16*M | nc 10.0.2.2 PORT`
                  through its board NIC (QEMU's user network maps 10.0.2.2 to the host's loopback),
                  VM a's clock around it; the host must have read 16*M*64 KiB. Same sender, same
                  tool, same clock: the two differ only in the path (the lan and VM b's receiving
                  stack, against the board NIC and QEMU's user network).
  net host->a     for information (no target): scripts/bench-io.py's net test, the other direction.
                  VM a: `sleep | nc -l -p 80 > /tmp/file`; the host connects to the forwarded
                  port, sends M MiB with sendall, shuts its side down and waits for the guest to
                  close the connection; host clock from connect to close; the size is checked. The
                  host's sender and QEMU's GRO-merged delivery make it several times what a guest's
                  nc sends.

The lan addresses: a 10.0.9.1/24, b 10.0.9.2/24 (a ping first: ARP, and a check that the lan
carries frames at all); a's board NIC 10.0.2.15/24 (QEMU's user network). Around each transfer the
guests' counters are read: the frames each lan card sent and received (/sys/class/net/CARD/statistics)
and TCP's segments and retransmits (/proc/net/snmp). A frame a's card sent that b's card never
received (neither guest counting a drop) was lost between the guests: native, in the VMM's switch;
on seL4, in the driver PDs or QEMU's hub. The log gives the counts per transfer, the lines under the
table their sums per platform.

Boot time, every boot: host seconds from `vmm run` printing that it starts QEMU (after the build) to
the shell prompt after "vmm-guest: init done" of VM a on the board's line and, with 2 VMs, of VM b on
its socket (watched at once, one thread each; the socket is connected as soon as QEMU creates it:
bytes sent before that are lost). On seL4 it includes the loader and the kernel's bootstrap. The
2-VM figure is the later of the two prompts. A message on the board's line that means no prompt will
come (the VMM's "rebuild it with `vmm build`", "cannot boot the guest", "guest stopped"; on seL4 the
monitor's "MON|ERROR", a PD that faulted) ends the wait at once, as an error.

Order: round 1 boots 2 VMs, 1 VM[, sel4 2 VMs, sel4 1 VM], round 2 the other way round, and so on
(so drift in host load hits all alike). The table gives min/median per measure and config: MB/s
(10^6 bytes/s) for the transfers, seconds for the boots, and a ratio of medians: on the native 2-VM
rows a->b / a->host, target >= 1.00 (inter-VM TCP at least the throughput of one VM to the host),
host->a / a->b and 2 VMs / 1 VM (reported, no target); on each sel4 row sel4/native, the same
measure and VM count on the native platform in the same run (no target). A line under the table
gives seL4's own a->b / a->host and 2 VMs / 1 VM. Missed targets do not fail the run; errors of the
native configs (build, boot, a command, a short transfer) exit 1 after the other configs have run
(sel4's are reported below the table and do not); missing guest files or host tool exit 2.

Usage:
  scripts/bench-vms.py [--rounds R] [--reps N] [--mib M] [--json FILE] [--microkit-config debug|release]
Environment: VMM_QEMU (QEMU binary), VMM_GUEST_KERNEL, VMM_GUEST_INITRD, VMM_LOG_DIR, MICROKIT_SDK,
MICROKIT_CONFIG.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
from serial_console import (  # noqa: E402
    HOST_VMM, INIT_DONE, ExampleError, SerialConsole, SerialConsoleError, SocketConsole, guest_paths, host_sends,
    move_devices, read_example, short_temp_dir, start_vmm_run, vm_copy, write_system)

EXAMPLE = REPO_ROOT / "examples/microkit-two-vms.toml"
# (name, platform, VMs): the native configs first; the sel4 ones only with MICROKIT_SDK.
CONFIGS = (("2 VMs", "native", ("a", "b")), ("1 VM", "native", ("a",)),
           ("sel4 2 VMs", "sel4", ("a", "b")), ("sel4 1 VM", "sel4", ("a",)))
PLATFORM = {name: platform for name, platform, _ in CONFIGS}
VMS = {name: vms for name, _, vms in CONFIGS}
NET_INTER, NET_TO_HOST, NET_HOST = "net a->b (lan)", "net a->host", "net host->a"
BOOT = "boot to prompt(s)"
TARGET = 1.00                 # net a->b / net a->host, ratio of median throughputs
LAN_A, LAN_B = "10.0.9.1", "10.0.9.2"
LAN_PORT = 5001
RECEIVED_FILE = "/tmp/vmsbench.received"

BUILD_TIMEOUT = 300.0         # `vmm run` links the image before QEMU starts
BOOT_TIMEOUT = 600.0          # TCG, two guests (-smp 3) on a small, noisy host
SEL4_BOOT_TIMEOUT = 1200.0    # the same, their three vCPUs sharing seL4's one core
CONNECT_TIMEOUT = 60.0        # VM b's socket appears when QEMU starts
COMMAND_TIMEOUT = 120.0       # one shell command line
NET_TIMEOUT = 900.0           # one transfer
# The messages on the board's line that mean a VM will not reach its prompt: the VMM's, and on seL4
# the monitor's report of a PD that faulted.
VMM_GAVE_UP = rb"(?:vmm: [^\r\n]*(?:rebuild it with|cannot boot the guest|guest stopped)|MON\|ERROR)[^\r\n]*"


# -- the system files ------------------------------------------------------------------------------

class Layout:
    """What the benchmark needs to know of a system it wrote: the file, VM b's serial socket, the
    host port forwarded to VM a's port 80, per VM the interface names (board NIC of a, lan cards)
    and the vCPUs."""

    def __init__(self, path, serial, port, interfaces, vcpus):
        self.path, self.serial, self.port, self.interfaces, self.vcpus = path, serial, port, interfaces, vcpus


def example_vcpus():
    """{vm: vCPUs} of the example, for the table's footnote; {} when it cannot be read."""
    try:
        data = read_example(EXAMPLE, "it is the system this benchmark boots", platform="microkit")
    except SerialConsoleError:
        return {}
    return {vm.get("name"): vm.get("vcpus", 1) for vm in data.get("vm", [])}


def system_copy(directory, vm_names, platform):
    """The example copied into `directory` with only the VMs `vm_names` (serial_console's vm_copy and
    move_devices): kernel and initrd absolute, VM x's disk directory/x-disk0.img, VM b's serial socket
    directory/b.serial.sock, every forwarded host port a free one; cards on a VMM network dropped when
    only one VM is kept (a network needs two); for `platform` "native" the [system] table's platform
    switched to "native" (everything else as the file says). Returns a Layout. Raises ExampleError (a
    SerialConsoleError) when the example is not the system this benchmark measures."""
    data = read_example(EXAMPLE, "it is the system this benchmark boots", platform="microkit")
    system = dict(data.get("system", {}))
    if platform == "native":
        system["platform"] = "native"
    vms = {vm.get("name"): vm for vm in data.get("vm", [])}
    if tuple(vms) != ("a", "b"):
        raise ExampleError(EXAMPLE, f"expected VMs ('a', 'b'), found {tuple(vms)}")
    copies, serial, port, interfaces, vcpus = [], directory / "b.serial.sock", None, {}, {}
    for name in vm_names:
        vm, devices = vm_copy(vms[name], EXAMPLE)
        vcpus[name] = vm.get("vcpus", 1)
        if len(devices.get("block", [])) != 1:
            raise ExampleError(EXAMPLE, f"vm '{name}': expected one disk ([[vm.block]])")
        if name == "b":
            vm["serial"] = str(serial)
        if len(vm_names) < 2:
            devices["net"] = [t for t in devices.get("net", []) if "network" not in t]
        _, forwards = move_devices(devices, directory, EXAMPLE, stem=f"{name}-")
        # The guest names its cards eth0, eth1, ... in file order; a MAC the file gives finds it for
        # sure (checked in the guest).
        nets = devices.get("net", [])
        names = {}
        for index, table in enumerate(nets):
            if "network" in table:
                names.setdefault("lan", (f"eth{index}", table.get("mac")))
        for index, protocol, host, guest in forwards:
            if name == "a" and protocol == "tcp" and guest == 80 and port is None and "network" not in nets[index]:
                port = host
                names["board"] = (f"eth{index}", nets[index].get("mac"))
        interfaces[name] = names
        copies.append((vm, devices))
    if port is None:
        raise ExampleError(EXAMPLE, "expected VM a to forward a host TCP port to its port 80 (a board NIC)")
    if len(vm_names) > 1 and not all("lan" in interfaces[n] for n in vm_names):
        raise ExampleError(EXAMPLE, "expected a card on a VMM network in each VM")
    path = write_system(directory / f"{'two-vms' if len(vm_names) > 1 else 'one-vm'}.toml", system,
                        copies, comment=f"Written by scripts/bench-vms.py from {EXAMPLE.relative_to(REPO_ROOT)}: "
                                        f"VM{'s' if len(vm_names) > 1 else ''} {', '.join(vm_names)}, "
                                        f"platform {system.get('platform')}.")
    return Layout(path, serial if "b" in vm_names else None, port, interfaces, vcpus)


# -- one boot ---------------------------------------------------------------------------------------

def wait_for_prompts(consoles, started, timeout):
    """Waits for "init done" then the prompt on every console at once (a thread each, so that a slow
    VM does not delay noticing the other's prompt); returns {name: host seconds since `started`}."""
    times, failures = {}, []

    def watch(name, console):
        try:
            if isinstance(console, SerialConsole):
                # The board's line also carries the VMM's messages (and on seL4 the monitor's): one
                # that means no VM will boot ends the wait at once instead of after `timeout`.
                found = console.expect(INIT_DONE + b"|" + VMM_GAVE_UP, timeout)
                if found.group(0) != INIT_DONE:
                    console.fail(f"no prompt will come: {found.group(0).decode(errors='replace')}")
            else:
                console.expect(INIT_DONE, timeout)
            console.wait_for_prompt(timeout)
            times[name] = time.monotonic() - started
        except SerialConsoleError as error:
            failures.append(error)

    threads = [threading.Thread(target=watch, args=item, daemon=True) for item in consoles.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return times


def guest_clock(console):
    """(shell command printing the guest clock, its description)."""
    if re.search(r"^now at \d+ nsecs", console.run("head -n 3 /proc/timer_list 2>/dev/null",
                                                   timeout=COMMAND_TIMEOUT), re.M):
        return "grep -m 1 '^now at' /proc/timer_list", "/proc/timer_list (ns)"
    return "cat /proc/uptime", "/proc/uptime (10 ms)"


def clock_seconds(line):
    match = re.fullmatch(r"now at (\d+) nsecs", line.strip())
    if match:
        return int(match.group(1)) / 1e9
    return float(line.split()[0])


def counters(console, card):
    """The guest's Tcp counters of /proc/net/snmp by name, and the frames its card `card` sent and
    received ("tx_packets", "rx_packets", "rx_dropped" of /sys/class/net/CARD/statistics)."""
    stats = ("tx_packets", "rx_packets", "rx_dropped")
    output = console.run(f"grep '^Tcp:' /proc/net/snmp; cd /sys/class/net/{card}/statistics && "
                         f"for f in {' '.join(stats)}; do echo $f $(cat $f); done; cd /",
                         timeout=COMMAND_TIMEOUT)
    rows = [line.split()[1:] for line in output.splitlines() if line.startswith("Tcp:")]
    values = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] in stats and fields[1].isdigit():
            values[fields[0]] = int(fields[1])
    if len(rows) < 2 or len(values) != len(stats):
        console.fail(f"cannot read the TCP counters (/proc/net/snmp) and {card}'s statistics:\n{output}")
    values.update({key: int(value) for key, value in zip(rows[0], rows[1]) if value.lstrip("-").isdigit()})
    return values


def interface(console, vm, name, mac, what):
    """The guest's name of a card: `name` (ethN in file order), checked against `mac` when the file
    gives one; else the interface that has that MAC."""
    if not mac:
        return name
    output = console.run("for i in /sys/class/net/*; do echo ${i##*/} $(cat $i/address); done",
                         timeout=COMMAND_TIMEOUT)
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lower() == mac.lower():
            return fields[0]
    console.fail(f"VM {vm} has no interface with MAC {mac} ({what}):\n{output}")


def start_listener(console, port, vm):
    """`sleep | nc -l -p PORT > RECEIVED_FILE &` in the guest; returns once nc listens."""
    console.run(f"rm -f {RECEIVED_FILE}; sleep 100000 | nc -l -p {port} > {RECEIVED_FILE} &",
                timeout=COMMAND_TIMEOUT)
    deadline = time.monotonic() + 60
    while f":{port} " not in console.run("netstat -ltn", timeout=COMMAND_TIMEOUT):
        if time.monotonic() > deadline:
            console.fail(f"VM {vm}'s nc is not listening on port {port}")
        time.sleep(0.2)


def received_bytes(console, nbytes, vm):
    """Ends the listener's pipeline (nc has exited) and checks the size of what it wrote."""
    console.run("kill $(pidof sleep) 2>/dev/null; wait", timeout=COMMAND_TIMEOUT)
    count = console.run(f"wc -c < {RECEIVED_FILE}; rm -f {RECEIVED_FILE}", timeout=COMMAND_TIMEOUT)
    if not count.strip().isdigit():
        console.fail(f"cannot count the bytes VM {vm} received: {count!r}")
    if int(count) != nbytes:
        console.fail(f"VM {vm} received {count.strip()} bytes of {nbytes}")


class TwoVMs:
    """A booted 2-VM system (the consoles of a and b at their prompts, the lan configured) and the
    transfers made in it."""

    def __init__(self, board, b, layout, log):
        self.a, self.b, self.layout, self.log = board, b, layout, log
        a, names = self.a, layout.interfaces
        self.clock_cmd, self.clock_name = guest_clock(a)
        before = time.monotonic()
        output = a.run(f"{self.clock_cmd}; sleep 2; {self.clock_cmd}", timeout=COMMAND_TIMEOUT)
        host = time.monotonic() - before
        lines = [line for line in output.splitlines() if line.strip()]
        try:
            self.clock_ratio = (clock_seconds(lines[-1]) - clock_seconds(lines[0])) / host
        except (ValueError, IndexError):
            a.fail(f"cannot read VM a's clock {self.clock_cmd!r}:\n{output}")
        board_nic = interface(a, "a", *names["a"]["board"], "its board NIC")
        lan_a = interface(a, "a", *names["a"]["lan"], "its card on the VMM network")
        lan_b = interface(b, "b", *names["b"]["lan"], "its card on the VMM network")
        a.run(f"ip link set {board_nic} up && ip addr add 10.0.2.15/24 dev {board_nic} "
              f"&& ip route add default via 10.0.2.2", timeout=COMMAND_TIMEOUT, check=True)
        a.run(f"ip addr add {LAN_A}/24 dev {lan_a} && ip link set {lan_a} up", timeout=COMMAND_TIMEOUT, check=True)
        b.run(f"ip addr add {LAN_B}/24 dev {lan_b} && ip link set {lan_b} up", timeout=COMMAND_TIMEOUT, check=True)
        # ARP, and the lan carries frames at all (a few tries: a card may come up late).
        ping = a.run(f"ping -c 3 -W 5 {LAN_B}", timeout=COMMAND_TIMEOUT)
        if a.last_status != 0:
            a.fail(f"VM a cannot ping VM b ({LAN_B}) over the VMM network:\n{ping}")
        self.interfaces = (board_nic, lan_a, lan_b)
        # Over all transfers of this boot: frames on the lan each way, those lost between the cards,
        # segments VM a retransmitted, by test.
        self.tally = {}

    def snapshot(self):
        return counters(self.a, self.interfaces[1]), counters(self.b, self.interfaces[2])

    def send_from_a(self, nbytes, address, port):
        """Guest seconds (VM a's clock) for `dd ... | nc ADDRESS PORT` to send nbytes."""
        a = self.a
        count = nbytes >> 16
        command = f"{self.clock_cmd}; dd if=/dev/zero bs=64k count={count} | nc {address} {port}; {self.clock_cmd}"
        output = a.run(command, timeout=NET_TIMEOUT)
        lines = [line for line in output.splitlines() if line.strip()]
        if a.last_status != 0 or len(lines) < 2:
            a.fail(f"{command!r} failed (status {a.last_status}):\n{output}")
        if f"{count}+0 records out" not in output:
            a.fail(f"dd did not write {count} full 64 KiB blocks to nc:\n{output}")
        try:
            return clock_seconds(lines[-1]) - clock_seconds(lines[0])
        except (ValueError, IndexError):
            a.fail(f"cannot read VM a's clock around the transfer:\n{output}")

    def inter_vm(self, nbytes):
        """Guest seconds (VM a's clock) to send nbytes from VM a to VM b's nc over the lan."""
        start_listener(self.b, LAN_PORT, "b")
        before = self.snapshot()
        seconds = self.send_from_a(nbytes, LAN_B, LAN_PORT)
        received_bytes(self.b, nbytes, "b")
        self._counters(NET_INTER, before, self.snapshot())
        return seconds

    def to_host(self, nbytes):
        """Guest seconds (VM a's clock) to send nbytes from VM a to a listener on the host, through
        its board NIC."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.settimeout(NET_TIMEOUT)
            received = []

            def count():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                with connection:
                    total = 0
                    while data := connection.recv(1 << 20):
                        total += len(data)
                    received.append(total)

            reader = threading.Thread(target=count, daemon=True)
            reader.start()
            before = self.snapshot()
            seconds = self.send_from_a(nbytes, "10.0.2.2", listener.getsockname()[1])
            reader.join(NET_TIMEOUT)
        if received != [nbytes]:
            self.a.fail(f"the host received {received} bytes of {nbytes} from VM a")
        self._counters(NET_TO_HOST, before, self.snapshot())
        return seconds

    def from_host(self, nbytes):
        """Host seconds from connect to VM a closing the connection after nbytes (bench-io's net test)."""
        a = self.a
        start_listener(a, 80, "a")
        before = self.snapshot()
        elapsed = host_sends(self.layout.port, nbytes, a, NET_TIMEOUT)
        received_bytes(a, nbytes, "a")
        self._counters(NET_HOST, before, self.snapshot())
        return elapsed

    def _counters(self, test, before, after):
        """Logs what the guests counted during one transfer: frames on the lan (a frame one card sent
        and the other never received was lost in between: in the VMM's switch, or on seL4 in the
        driver PDs or QEMU's hub), TCP segments and retransmits; adds them to `tally`."""
        (a0, b0), (a1, b1) = before, after
        d = {f"{vm}.{key}": new[key] - old.get(key, 0)
             for vm, old, new in (("a", a0, a1), ("b", b0, b1)) for key in new}
        lost_ab = d["a.tx_packets"] - d["b.rx_packets"]
        lost_ba = d["b.tx_packets"] - d["a.rx_packets"]
        lan_a, lan_b = self.interfaces[1], self.interfaces[2]
        tcp = (f"TCP segments a out {d['a.OutSegs']} in {d['a.InSegs']} retransmitted {d['a.RetransSegs']}, "
               f"b out {d['b.OutSegs']} in {d['b.InSegs']} retransmitted {d['b.RetransSegs']}")
        if test != NET_INTER and not (d["a.tx_packets"] or d["b.tx_packets"]):
            self.log(f"  {test}: lan idle; {tcp}")
        else:
            self.log(f"  {test}: lan frames a->b {d['a.tx_packets']} sent by a's {lan_a}, {d['b.rx_packets']} "
                     f"received by b's {lan_b} ({lost_ab} lost); b->a {d['b.tx_packets']} sent, {d['a.rx_packets']} "
                     f"received ({lost_ba} lost); rx_dropped a {d['a.rx_dropped']} b {d['b.rx_dropped']}; {tcp}")
        total = self.tally.setdefault(test, {"lan_frames_a_to_b": 0, "lost_a_to_b": 0, "lan_frames_b_to_a": 0,
                                             "lost_b_to_a": 0, "retransmitted_by_a": 0, "retransmitted_by_b": 0})
        for key, value in (("lan_frames_a_to_b", d["a.tx_packets"]), ("lost_a_to_b", lost_ab),
                           ("lan_frames_b_to_a", d["b.tx_packets"]), ("lost_b_to_a", lost_ba),
                           ("retransmitted_by_a", d["a.RetransSegs"]), ("retransmitted_by_b", d["b.RetransSegs"])):
            total[key] += value


def vmm_run(system, output, name, options):
    """`vmm run SYSTEM --output OUTPUT OPTIONS...`, the board's line on a SerialConsole (start_vmm_run);
    returns it and the host time QEMU started (when `vmm run` said so, right before it replaced itself
    with QEMU)."""
    board = start_vmm_run(system, output, name, *options)
    try:
        board.expect(rb"vmm: starting \S+; quit with", BUILD_TIMEOUT)
        return board, time.monotonic()
    except BaseException:
        board.kill()
        raise


def run_boot(config, args, results, log):
    """One boot of `config`: its boot time, and with 2 VMs the transfers, --reps times. QEMU is killed
    at the end (on seL4 it would run on after the guests)."""
    directory = short_temp_dir("vmsbench-")
    board = b = None
    platform, vm_names = PLATFORM[config], VMS[config]
    two = len(vm_names) > 1
    options = ("--microkit-config", args.microkit_config) if platform == "sel4" else ()
    tag = f"vmsbench-{'sel4-' if platform == 'sel4' else ''}{'two' if two else 'one'}"
    try:
        layout = system_copy(directory, vm_names, "microkit" if platform == "sel4" else "native")
        board, started = vmm_run(layout.path, directory / "build", tag, options)
        consoles = {"a": board}
        if two:
            b = SocketConsole(layout.serial, board, name=f"{tag}-b")
            b.connect(CONNECT_TIMEOUT)
            consoles["b"] = b
        times = wait_for_prompts(consoles, started, SEL4_BOOT_TIMEOUT if platform == "sel4" else BOOT_TIMEOUT)
        seconds = max(times.values())
        results[BOOT][config].append(seconds)
        results["boot_detail"].append({"config": config, "platform": platform, "vcpus": layout.vcpus,
                                       **{f"prompt_{vm}_s": t for vm, t in times.items()}})
        log(f"{config}: prompt{'s' if two else ''} {', '.join(f'VM {vm} {t:.2f}s' for vm, t in sorted(times.items()))}"
            f" after QEMU started; board's log {board.log_path}" + (f", VM b's log {b.log_path}" if b else ""))
        if not two:
            return
        system = TwoVMs(board, b, layout, log)
        log(f"{config}: VM a's clock {system.clock_name} runs at {system.clock_ratio:.3f}x the host's; "
            f"VM a: board NIC {system.interfaces[0]}, lan {system.interfaces[1]}; VM b: lan {system.interfaces[2]}; "
            f"host port {layout.port}")
        if not 0.9 <= system.clock_ratio <= 1.1:
            log(f"{config}: WARNING: VM a's clock is off by more than 10%: a->b rates are suspect")
        nbytes = args.mib << 20
        tests = [(NET_INTER, system.inter_vm, "VM a's clock"), (NET_TO_HOST, system.to_host, "VM a's clock"),
                 (NET_HOST, system.from_host, "host clock")]
        try:
            for rep in range(args.reps):
                for test, fn, clock in (tests if rep % 2 == 0 else tests[::-1]):
                    seconds = fn(nbytes)
                    rate = nbytes / seconds / 1e6
                    results[test][config].append(rate)
                    log(f"{config} rep {rep + 1}/{args.reps} {test}: {args.mib} MiB in {seconds:.3f}s ({clock}) "
                        f"= {figure(rate)} MB/s")
        finally:
            for test, counts in system.tally.items():
                total = results["lan"].setdefault(platform, {}).setdefault(test, {})
                for key, value in counts.items():
                    total[key] = total.get(key, 0) + value
    finally:
        if b is not None:
            b.close()
        if board is not None:
            board.kill()
        shutil.rmtree(directory, ignore_errors=True)


def figure(value):
    """A min or median for the table: one decimal, two below 10 (seL4's rates can be a fraction of 1 MB/s)."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def smp(vcpus, names):
    """QEMU's -smp on the native platform for the VMs `names` (one board CPU per vCPU)."""
    return sum(vcpus.get(name, 1) for name in names)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds: 1 = 2 VMs, 1 VM[, sel4 2 VMs, sel4 1 VM], 2 adds them the other way round, "
                             "... (default 2)")
    parser.add_argument("--reps", type=int, default=2, help="repetitions of the transfers per 2-VM boot (default 2)")
    parser.add_argument("--mib", type=int, default=32, help="MiB per transfer (default 32; in the guest's tmpfs)")
    parser.add_argument("--microkit-config", default=os.environ.get("MICROKIT_CONFIG") or "debug",
                        choices=("debug", "release"),
                        help="the SDK configuration of the sel4 configs (default $MICROKIT_CONFIG or debug)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.rounds < 1 or not 1 <= args.mib <= 64:
        parser.error("--reps and --rounds must be >= 1, --mib within 1..64 (the file goes to a 256 MiB guest's rootfs)")

    kernel, initrd = guest_paths()
    missing = [str(p) for p in (kernel, initrd, HOST_VMM, EXAMPLE) if not p.is_file()]
    if missing:
        print(f"bench-vms: missing {', '.join(missing)}: run `make vmm` first", file=sys.stderr)
        return 2

    def log(message):
        print(f"bench-vms: {message}", file=sys.stderr, flush=True)

    sdk = os.environ.get("MICROKIT_SDK")
    notes = []                  # why sel4 is not (or not fully) measured: they do not fail the run
    if sdk:
        configs = [name for name, _, _ in CONFIGS]
    else:
        configs = [name for name, platform, _ in CONFIGS if platform == "native"]
        notes.append("sel4: not measured (needs MICROKIT_SDK)")
    vcpus = example_vcpus()
    log(f"system {EXAMPLE.relative_to(REPO_ROOT)} (vCPUs {', '.join(f'{vm} {n}' for vm, n in vcpus.items())}); "
        f"guest {kernel}, {initrd}; "
        + (f"sel4: MICROKIT_SDK={sdk}, config {args.microkit_config}; " if sdk else "sel4: no MICROKIT_SDK; ")
        + f"host: {len(os.sched_getaffinity(0))} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    tests = (NET_INTER, NET_TO_HOST, NET_HOST, BOOT)
    results = {test: {c: [] for c in configs} for test in tests}
    results["boot_detail"] = []
    results["lan"] = {}
    errors = []                 # (config, message) of the native configs: they fail the run
    failed = set()
    started = time.monotonic()
    for rnd in range(args.rounds):
        for config in (configs if rnd % 2 == 0 else configs[::-1]):
            if config in failed:
                continue
            try:
                run_boot(config, args, results, log)
            except SerialConsoleError as err:
                log(f"{config} round {rnd + 1} FAILED:\n{err}")
                failed.add(config)
                if PLATFORM[config] == "sel4":
                    measured = ("its figures so far are in the table" if any(results[t][config] for t in tests)
                                else "not measured")
                    notes.append(f"{config}: {measured} (its boot in round {rnd + 1} failed; the message is above)")
                else:
                    errors.append((config, str(err)))

    def median(test, config):
        samples = results[test].get(config)
        return statistics.median(samples) if samples else None

    sys.stderr.flush()
    print()
    print(f"{'measure':<18} {'config':<10} {'runs':>4} {'min':>7} {'median':>7} {'unit':<4} "
          f"{'ratio':>6} {'of':<16} {'target':>7}")
    rows = []
    # (measure, config, unit, the reference config of the ratio, its label, target). A sel4 row's
    # ratio is sel4/native: the same measure and VM count on the native platform.
    specs = []
    for test, unit, reference, label, target in (
            (NET_INTER, "MB/s", (NET_TO_HOST, "2 VMs"), "a->b / a->host", TARGET),
            (NET_TO_HOST, "MB/s", None, "", None),
            (NET_HOST, "MB/s", (NET_INTER, "2 VMs"), "host->a / a->b", None)):
        specs.append((test, "2 VMs", unit, reference, label, target))
        specs.append((test, "sel4 2 VMs", unit, (test, "2 VMs"), "sel4/native", None))
    specs += [(BOOT, "2 VMs", "s", (BOOT, "1 VM"), "2 VMs / 1 VM", None),
              (BOOT, "sel4 2 VMs", "s", (BOOT, "2 VMs"), "sel4/native", None),
              (BOOT, "1 VM", "s", None, "", None),
              (BOOT, "sel4 1 VM", "s", (BOOT, "1 VM"), "sel4/native", None)]
    for test, config, unit, reference, label, target in specs:
        if config not in configs:
            continue
        samples = results[test][config]
        if not samples:
            print(f"{test:<18} {config:<10} {0:>4} {'-':>7} {'-':>7} {unit}")
            rows.append({"measure": test, "config": config, "platform": PLATFORM[config], "unit": unit,
                         "samples": []})
            continue
        ratio = None
        if reference and median(*reference):
            ratio = median(test, config) / median(*reference)
        verdict = ""
        if ratio is not None:
            verdict = f" {ratio:>6.2f} {label:<16} "
            verdict += (f"{'>=' + format(target, '.2f'):>7} {'met' if ratio >= target else 'MISSED'}"
                        if target is not None else f"{'(none)':>7}")
        print(f"{test:<18} {config:<10} {len(samples):>4} {figure(min(samples)):>7} {figure(median(test, config)):>7} "
              f"{unit:<4}{verdict}".rstrip())
        rows.append({"measure": test, "config": config, "platform": PLATFORM[config], "unit": unit,
                     "samples": samples, "min": min(samples), "median": median(test, config), "ratio": ratio,
                     "ratio_of": label if ratio is not None else None, "target": target})
    print(f"MB/s = 10^6 bytes/s, {args.mib} MiB per transfer into a tmpfs file; a->b: busybox nc over the network "
          f"\"lan\", VM a's clock from before connect to after close; a->host: the same sender through a's board "
          f"NIC to a listener on the host; host->a: the forwarded port, host clock connect->close (information)")
    # What the guests counted over all transfers (per transfer in the log above): frames one card sent
    # and the other never received were lost between the guests.
    for platform, where in (("native", "in the VMM's switch"), ("sel4", "in the driver PDs or QEMU's hub")):
        lan = results["lan"].get(platform, {})
        prefix = "sel4 " if platform == "sel4" else ""
        inter, to_host, host = lan.get(NET_INTER), lan.get(NET_TO_HOST), lan.get(NET_HOST)
        if inter:
            print(f"{prefix}{NET_INTER}: {inter['lan_frames_a_to_b']} frames a->b, {inter['lost_a_to_b']} lost "
                  f"between a's card and b's ({where}); {inter['lan_frames_b_to_a']} b->a, {inter['lost_b_to_a']} "
                  f"lost; TCP segments retransmitted by a {inter['retransmitted_by_a']}, by b "
                  f"{inter['retransmitted_by_b']}")
        if to_host:
            print(f"{prefix}{NET_TO_HOST}: TCP segments retransmitted by a {to_host['retransmitted_by_a']}")
        if host:
            print(f"{prefix}{NET_HOST}: TCP segments retransmitted by a {host['retransmitted_by_a']}")
    both = ", ".join(f"{vm} {n}" for vm, n in vcpus.items())
    print(f"system: {EXAMPLE.relative_to(REPO_ROOT)} on both platforms (native: its platform switched), vCPUs "
          f"{both}; boot: host seconds from QEMU's start to the shell prompt (2 VMs: the later of VM a's on the "
          f"serial line and VM b's on its socket); native 2 VMs run -smp {smp(vcpus, ('a', 'b'))}, "
          f"1 VM -smp {smp(vcpus, ('a',))}")
    if sdk:
        print(f"sel4: Microkit config {args.microkit_config}; the SDK's seL4 kernel is single-core: all vCPUs share "
              f"one board CPU (one host thread); \"lan\" is a board NIC per VM joined in a QEMU hub; sel4/native = "
              f"ratio of medians to the native row of the same measure and VM count, same run")
        own = []
        for test, config, reference, label in ((NET_INTER, "sel4 2 VMs", (NET_TO_HOST, "sel4 2 VMs"), "a->b / a->host"),
                                               (BOOT, "sel4 2 VMs", (BOOT, "sel4 1 VM"), "2 VMs / 1 VM")):
            if median(test, config) and median(*reference):
                own.append(f"{label} {median(test, config) / median(*reference):.2f}")
        if own:
            print(f"sel4 within itself: {', '.join(own)}")
    for note in notes:
        print(note)
    print(f"total wall time {time.monotonic() - started:.1f}s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "vms", "mib": args.mib,
                                               "system": str(EXAMPLE.relative_to(REPO_ROOT)), "vcpus": vcpus,
                                               "configs": configs, "rows": rows,
                                               "boots": results["boot_detail"],
                                               "lan_counters": results["lan"], "notes": notes,
                                               **({"microkit_config": args.microkit_config} if sdk else {}),
                                               "errors": [e for _, e in errors]}, indent=2))
    if errors:
        print(f"bench-vms: {len(errors)} boot(s) failed; see the messages above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
