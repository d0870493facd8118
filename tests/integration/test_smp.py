"""A guest with 4 vCPUs on the native platform (examples/smp.toml: examples/linux.toml with vcpus = 4).

The system is run the user's way, `vmm run FILE` (the host tool builds the image and starts QEMU with
one board CPU per vCPU). The system file is generated from the example into a temporary directory:
the guest's paths made absolute, its disks, console sockets and forwarded host ports (free ports)
there, so the test never touches build/smp/, build/linux/ nor port 8080. Everything else (the
`[system]` table, vcpus, RAM, MACs, ...) is the example's.

One boot, each check a subtest (one failing check does not hide the later ones), in this order:

  cpus       `nproc` prints 4, /proc/cpuinfo lists processors 0-3, /sys/devices/system/cpu/online
             is 0-3 (if not, nothing else is checked);
  pipelines  `yes | head -c 256K | wc -c` eight times prints 262144 each time (processes on every CPU,
             a pipe between CPUs, spinlocks contended);
  busy       four busy loops, each pinned to its own CPU with busybox `taskset`: over ~2 s of
             /proc/stat every CPU's idle time (idle + iowait) stays under 30 % of its jiffies;
  ipi        the IPI rows of /proc/interrupts (Rescheduling, Function call, ...), summed per CPU,
             grow on CPUs 1-3 while tasks are started, pinned, migrated and killed;
  irq        the virtio-blk device's interrupt (/proc/interrupts row "virtioN" of /dev/vda), moved
             to CPU 2 with /proc/irq/N/smp_affinity, counts there during O_DIRECT reads of /dev/vda
             (and more there than on all other CPUs together);
  hotplug    CPU 3 goes offline (/sys/devices/system/cpu/online: 0-2, nproc 3) and online again
             (0-3); a task pinned to it runs there (/proc/self/stat says CPU 3) and a busy loop
             pinned to it stops its idle time from growing;
  poweroff   `poweroff -f` ends QEMU with exit status 0 (and the VMM's "vmm: guest powered off").

Needs QEMU (skipped without qemu-system-aarch64 on PATH, or $VMM_QEMU) and the host tool
.build/debug/vmm with the VMM's native objects: `make integration-test` builds them first (a
missing host tool fails the test, as in the other native tests). A missing examples/smp.toml fails
it too: the test is about that example.
"""

import os
import re
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import (  # noqa: E402
    INIT_DONE, REPO_ROOT, ExampleError, move_devices, read_example, require_qemu_and_host_tool,
    require_microkit_board, short_temp_dir, start_vmm_run, vm_copy, write_system)

EXAMPLE = REPO_ROOT / "examples/smp.toml"
VCPUS = 4

BUILD_TIMEOUT = 300.0       # `vmm run` builds the image before QEMU starts
BOOT_TIMEOUT = 300.0        # TCG, 4 vCPUs on a small, noisy host
COMMAND_TIMEOUT = 120.0     # one shell command line
HOTPLUG_TIMEOUT = 180.0     # a CPU going offline or online (PSCI CPU_OFF / CPU_ON through the VMM)
POWEROFF_TIMEOUT = 120.0

SAMPLE_SECONDS = 2          # the /proc/stat window while busy loops run
BUSY_IDLE_LIMIT = 0.30      # of a CPU's jiffies in that window
SPIN_PIDS = "/tmp/smp-spin.pids"
PIPELINES = 8               # `yes | head | wc` runs
DD_READ = "dd if=/dev/vda of=/dev/null bs=4k count=256 iflag=direct"


# -- the system file ----------------------------------------------------------------------------

def system_file(directory, example=EXAMPLE, platform="native"):
    """The example's system, copied into `directory` (serial_console's vm_copy and move_devices):
    absolute kernel and initrd, disk n on directory/disk{n}.img, console n on directory/hvc{n}.sock,
    every forwarded host port a free one. Returns the path of the generated file; ExampleError when
    the example is not the 4-vCPU system on `platform` this test is about."""
    data = read_example(example, f"the SMP example (examples/linux.toml with vcpus = {VCPUS}) is what "
                                 f"this test boots", platform)
    vms = data.get("vm", [])
    if len(vms) != 1:
        raise ExampleError(example, f"expected exactly one [[vm]], found {len(vms)}")
    vm, devices = vm_copy(vms[0], example)
    if vm.get("vcpus") != VCPUS:
        raise ExampleError(example, f"expected vcpus = {VCPUS}, found {vm.get('vcpus')!r}")
    if not devices.get("block"):
        raise ExampleError(example, "expected a disk ([[vm.block]]): the interrupt check reads /dev/vda")
    move_devices(devices, directory, example)
    return write_system(directory / "smp.toml", data.get("system"), [(vm, devices)])


# -- what the guest reports -----------------------------------------------------------------------

def parse_proc_stat(text):
    """{cpu: (idle jiffies, total jiffies)} from the cpuN lines of /proc/stat; idle counts iowait,
    total is user + nice + system + idle + iowait + irq + softirq + steal (guest time is in user)."""
    cpus = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or not re.fullmatch(r"cpu\d+", fields[0]):
            continue
        values = [int(v) for v in fields[1:9]]
        cpus[int(fields[0][3:])] = (values[3] + values[4], sum(values))
    return cpus


def parse_interrupts(text):
    """(the CPU numbers of the header, {label: ({cpu: count}, description)}) from /proc/interrupts.
    An offline CPU has no column; rows with a single count (Err) get it for the first CPU."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].split()[0].startswith("CPU"):
        raise AssertionError(f"/proc/interrupts has no CPU header:\n{text}")
    cpus = [int(name[3:]) for name in lines[0].split()]
    rows = {}
    for line in lines[1:]:
        fields = line.split()
        if not fields[0].endswith(":"):
            continue
        counts = []
        for field in fields[1:1 + len(cpus)]:
            if not field.isdigit():
                break
            counts.append(int(field))
        rows[fields[0][:-1]] = (dict(zip(cpus, counts)), " ".join(fields[1 + len(counts):]))
    return cpus, rows


def ipi_counts(rows):
    """{cpu: sum of every IPI row} (IPI0 Rescheduling, IPI1 Function call, ...)."""
    totals = {}
    for label, (counts, _) in rows.items():
        if label.startswith("IPI"):
            for cpu, count in counts.items():
                totals[cpu] = totals.get(cpu, 0) + count
    return totals


def qemu_smp_argument(pid):
    """What QEMU (pid: `vmm run` exec'd it) got after -smp, or None; for failure messages."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for i, arg in enumerate(argv[:-1]):
        if arg == b"-smp":
            return argv[i + 1].decode(errors="replace")
    return None


class SMPGuestTests(unittest.TestCase):
    EXAMPLE = EXAMPLE
    PLATFORM = "native"
    OPTIONS = ()            # more `vmm run` options

    @classmethod
    def setUpClass(cls):
        require_qemu_and_host_tool()

    def setUp(self):
        self.dir = short_temp_dir("vmm-smp-", self)
        self.system = system_file(self.dir, self.EXAMPLE, self.PLATFORM)

    def boot(self, name):
        console = start_vmm_run(self.system, self.dir / "build", name, *self.OPTIONS)
        self.addCleanup(console.kill)
        console.expect(rb"vmm: starting qemu-system", BUILD_TIMEOUT)   # `vmm run` built the system
        console.expect(INIT_DONE, BOOT_TIMEOUT)
        console.wait_for_prompt(BOOT_TIMEOUT)
        print(f"\n[{name}] boot to prompt with {VCPUS} vCPUs, build included: "
              f"{time.monotonic() - console.started_at:.2f} s", file=sys.stderr)
        return console

    # -- helpers that run in the guest --------------------------------------------------------------
    def start_spinners(self, console, cpus):
        """One busy loop per CPU in `cpus`, pinned with taskset, started from a subshell (not jobs of
        the console's shell: no job messages later); their pids go to SPIN_PIDS, in that order."""
        cpu_list = " ".join(str(cpu) for cpu in cpus)
        console.run(f"rm -f {SPIN_PIDS}; for c in {cpu_list}; do "
                    f"(taskset -c $c sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & "
                    f"echo $! >>{SPIN_PIDS}); done", timeout=COMMAND_TIMEOUT, check=True)
        pids = console.run(f"cat {SPIN_PIDS}", timeout=COMMAND_TIMEOUT, check=True).split()
        self.assertEqual(len(pids), len(cpus), f"expected one busy loop per CPU {list(cpus)}, got pids {pids}")
        return pids

    def stop_spinners(self, console):
        if console.proc.poll() is None:
            console.run(f"kill $(cat {SPIN_PIDS}) 2>/dev/null; rm -f {SPIN_PIDS}; sleep 1", timeout=COMMAND_TIMEOUT)

    def busy_cpus_idle_shares(self, console, cpus):
        """Busy loops pinned to `cpus`; returns ({cpu: (idle delta, total delta)} over SAMPLE_SECONDS
        of /proc/stat, {cpu: what `taskset -p` and /proc/PID/stat say of its loop}). The loops are
        killed before it returns."""
        pids = self.start_spinners(console, cpus)
        try:
            placement = {}
            for cpu, pid in zip(cpus, pids):
                mask = console.run(f"taskset -p {pid}", timeout=COMMAND_TIMEOUT)
                ran_on = console.run(f"cut -d' ' -f39 /proc/{pid}/stat", timeout=COMMAND_TIMEOUT)
                placement[cpu] = (mask, ran_on)
            sample = console.run(f"sleep 1; grep '^cpu[0-9]' /proc/stat; sleep {SAMPLE_SECONDS}; echo ---; "
                                 f"grep '^cpu[0-9]' /proc/stat", timeout=COMMAND_TIMEOUT, check=True)
        finally:
            self.stop_spinners(console)
        first, _, second = sample.partition("---")
        before, after = parse_proc_stat(first), parse_proc_stat(second)
        deltas = {}
        for cpu in cpus:
            self.assertIn(cpu, before, f"/proc/stat has no cpu{cpu} line:\n{first}")
            self.assertIn(cpu, after, f"/proc/stat has no cpu{cpu} line:\n{second}")
            deltas[cpu] = (after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1])
        return deltas, placement

    def assert_busy(self, deltas, placement):
        for cpu, (idle, total) in deltas.items():
            mask, ran_on = placement[cpu]
            where = f"(its loop: `taskset -p`: {mask!r}; last ran on CPU {ran_on!r})"
            self.assertGreater(total, 0, f"cpu{cpu}'s jiffies in /proc/stat did not advance in {SAMPLE_SECONDS} s "
                                         f"while a busy loop was pinned to it {where}: is its timer ticking?")
            self.assertLess(idle, BUSY_IDLE_LIMIT * total,
                            f"cpu{cpu} stayed idle for {idle} of {total} jiffies ({100 * idle / total:.0f} %, limit "
                            f"{100 * BUSY_IDLE_LIMIT:.0f} %) while a busy loop was pinned to it {where}: "
                            f"the loop does not run on that vCPU")

    def interrupts(self, console):
        return parse_interrupts(console.run("cat /proc/interrupts", timeout=COMMAND_TIMEOUT, check=True))

    # -- the test ---------------------------------------------------------------------------------
    def test_four_vcpus_run_tasks_ipis_interrupts_and_hotplug_in_one_boot(self):
        console = self.boot("smp-4-vcpus")
        checks = [
            ("nproc is 4 and /proc/cpuinfo lists processors 0-3", self.check_cpus),
            ("pipelines of short processes complete (fork, exec, pipes across CPUs)", self.check_pipelines),
            ("a busy loop pinned to each CPU stops its idle time from growing", self.check_busy_loops),
            ("IPIs reach CPUs 1-3", self.check_ipis),
            ("a virtio-blk interrupt moved to CPU 2 is counted there", self.check_irq_affinity),
            ("CPU 3 goes offline and online again and runs a task", self.check_hotplug),
            ("poweroff -f ends QEMU with status 0", self.check_poweroff),
        ]
        for n, (label, check) in enumerate(checks):
            if console.proc.poll() is not None and check != self.check_poweroff:
                console.fail(f"QEMU exited before the check {label!r}")
            passed = False
            with self.subTest(label):
                check(console)
                passed = True
            if n == 0 and not passed:
                return      # not 4 CPUs: nothing else means anything

    # -- the checks, in the order of the boot -----------------------------------------------------
    def check_cpus(self, console):
        nproc = console.run("nproc", timeout=COMMAND_TIMEOUT)
        if nproc != str(VCPUS):
            smp = qemu_smp_argument(console.proc.pid)
            dmesg = console.run("dmesg | grep -i -e cpu -e psci -e smp | head -n 40", timeout=COMMAND_TIMEOUT)
            self.fail(f"`nproc` printed {nproc!r}, not {VCPUS} (QEMU's -smp: {smp!r}); "
                      f"the guest's dmesg about CPUs:\n{dmesg}")
        cpuinfo = console.run("grep '^processor' /proc/cpuinfo", timeout=COMMAND_TIMEOUT)
        processors = [int(m) for m in re.findall(r"^processor\s*:\s*(\d+)", cpuinfo, re.M)]
        self.assertEqual(processors, list(range(VCPUS)), f"/proc/cpuinfo lists processors {processors}:\n{cpuinfo}")
        online = console.run("cat /sys/devices/system/cpu/online", timeout=COMMAND_TIMEOUT)
        self.assertEqual(online, f"0-{VCPUS - 1}", "/sys/devices/system/cpu/online")

    def check_pipelines(self, console):
        """Processes that come and go on every CPU, writer and reader of a pipe apart: what a shell does
        all day, with the writer and reader of each pipe often on different CPUs. On seL4, where the
        vCPUs share one core, this stalled while guests had no entropy (GuestEntropy): every syscall
        then took the crng's one spinlock, and a preempted holder kept the others spinning."""
        for n in range(PIPELINES):
            said = console.run(f"yes smp-pipe-{n} | head -c 262144 | wc -c", timeout=COMMAND_TIMEOUT)
            self.assertEqual(said, "262144", f"pipeline {n} printed {said!r}")

    def check_busy_loops(self, console):
        deltas, placement = self.busy_cpus_idle_shares(console, range(VCPUS))
        print(f"[smp-4-vcpus] busy loops: idle/total jiffies per CPU over {SAMPLE_SECONDS} s: "
              + ", ".join(f"cpu{cpu} {idle}/{total}" for cpu, (idle, total) in deltas.items()), file=sys.stderr)
        for cpu, (mask, ran_on) in placement.items():
            self.assertEqual(mask.rsplit(":", 1)[-1].strip(), f"{1 << cpu:x}",
                             f"the busy loop for CPU {cpu} is not pinned to it: `taskset -p` says {mask!r}")
        self.assert_busy(deltas, placement)

    def check_ipis(self, console):
        cpus, before_rows = self.interrupts(console)
        if not any(label.startswith("IPI") for label in before_rows):
            self.fail(f"/proc/interrupts has no IPI rows: {sorted(before_rows)}")
        before = ipi_counts(before_rows)
        # Work that makes CPUs interrupt each other: tasks created on one CPU and woken on another,
        # tasks migrated by taskset, running loops killed (a signal kicks the CPU running the task).
        self.start_spinners(console, range(VCPUS))
        console.run("sleep 1", timeout=COMMAND_TIMEOUT)
        self.stop_spinners(console)
        console.run("for i in 1 2 3 4 5 6 7 8 9 10 11 12; do taskset -c $((i%4)) true; done",
                    timeout=COMMAND_TIMEOUT, check=True)
        _, after_rows = self.interrupts(console)
        after = ipi_counts(after_rows)
        deltas = {cpu: after.get(cpu, 0) - before.get(cpu, 0) for cpu in cpus}
        per_row = {label: {cpu: counts.get(cpu, 0) - before_rows.get(label, ({}, ""))[0].get(cpu, 0) for cpu in cpus}
                   for label, (counts, _) in after_rows.items() if label.startswith("IPI")}
        print(f"[smp-4-vcpus] IPIs per CPU during the work: {deltas}", file=sys.stderr)
        for cpu in range(1, VCPUS):
            self.assertGreater(deltas.get(cpu, 0), 0,
                               f"CPU {cpu} got no IPI while tasks were started, pinned, migrated and killed on "
                               f"every CPU (IPI deltas per row and CPU: {per_row})")

    def check_irq_affinity(self, console):
        device = console.run("basename $(readlink /sys/block/vda/device)", timeout=COMMAND_TIMEOUT)
        self.assertRegex(device, r"^virtio\d+$", "/sys/block/vda/device should name the virtio device of /dev/vda")
        cpus, rows = self.interrupts(console)
        matches = [label for label, (_, name) in rows.items() if name.split()[-1:] == [device]]
        self.assertEqual(len(matches), 1, f"expected one /proc/interrupts row for {device}, found {matches}")
        irq = matches[0]
        console.run(f"echo 4 > /proc/irq/{irq}/smp_affinity", timeout=COMMAND_TIMEOUT, check=True)
        affinity = console.run(f"cat /proc/irq/{irq}/smp_affinity_list", timeout=COMMAND_TIMEOUT)
        self.assertEqual(affinity, "2", f"IRQ {irq} ({device}): smp_affinity_list after writing mask 4")
        effective = console.run(f"cat /proc/irq/{irq}/effective_affinity_list 2>&1", timeout=COMMAND_TIMEOUT)
        before = rows[irq][0]
        console.run(DD_READ, timeout=COMMAND_TIMEOUT, check=True)
        console.run(DD_READ, timeout=COMMAND_TIMEOUT, check=True)
        _, rows = self.interrupts(console)
        after = rows[irq][0]
        deltas = {cpu: after.get(cpu, 0) - before.get(cpu, 0) for cpu in cpus}
        print(f"[smp-4-vcpus] IRQ {irq} ({device}) on CPU 2, interrupts per CPU during 2x `{DD_READ}`: "
              f"{deltas}", file=sys.stderr)
        self.assertGreater(deltas.get(2, 0), 0,
                           f"IRQ {irq} ({device}), affinity CPU 2 (effective: {effective!r}), was not counted on "
                           f"CPU 2 during 512 O_DIRECT reads of /dev/vda; counts per CPU: {deltas}")
        elsewhere = sum(delta for cpu, delta in deltas.items() if cpu != 2)
        self.assertLess(elsewhere, deltas[2],
                        f"IRQ {irq} ({device}) moved to CPU 2 still arrived mostly elsewhere: {deltas}")

    def check_hotplug(self, console):
        online_path = "/sys/devices/system/cpu/online"
        console.run("echo 0 > /sys/devices/system/cpu/cpu3/online", timeout=HOTPLUG_TIMEOUT, check=True)
        self.assertEqual(console.run(f"cat {online_path}", timeout=COMMAND_TIMEOUT), "0-2",
                         f"{online_path} after taking CPU 3 offline")
        self.assertEqual(console.run("nproc", timeout=COMMAND_TIMEOUT), "3", "`nproc` with CPU 3 offline")
        console.run("echo 1 > /sys/devices/system/cpu/cpu3/online", timeout=HOTPLUG_TIMEOUT, check=True)
        self.assertEqual(console.run(f"cat {online_path}", timeout=COMMAND_TIMEOUT), "0-3",
                         f"{online_path} after bringing CPU 3 online again")
        ran = console.run("taskset -c 3 sh -c 'echo on3; cut -d\" \" -f39 /proc/self/stat'", timeout=COMMAND_TIMEOUT)
        self.assertEqual(ran.split(), ["on3", "3"],
                         "a task pinned to CPU 3 after it came back should run there "
                         "(expected `on3` and CPU 3 from /proc/self/stat)")
        deltas, placement = self.busy_cpus_idle_shares(console, [3])
        print(f"[smp-4-vcpus] busy loop on cpu3 after hotplug: idle/total jiffies {deltas[3][0]}/{deltas[3][1]}",
              file=sys.stderr)
        self.assert_busy(deltas, placement)

    def check_poweroff(self, console):
        console.sendline("poweroff -f")
        if self.PLATFORM == "microkit":
            # seL4 does not power the board off: the VMM says the guest did, and QEMU runs on.
            console.expect(rb"vmm: guest powered off", POWEROFF_TIMEOUT)
            return
        status = console.wait_exit(POWEROFF_TIMEOUT)
        self.assertEqual(status, 0, f"QEMU exited with status {status} after `poweroff -f` in the {VCPUS}-vCPU guest")
        self.assertIn(b"vmm: guest powered off", console.log, "the VMM did not report the guest's power-off")


class MicrokitSMPGuestTests(SMPGuestTests):
    """The same boot and checks on seL4: examples/microkit-smp.toml (examples/smp.toml on the Microkit
    platform), `vmm run FILE --microkit-config CONFIG` with MICROKIT_SDK in the environment. The SDK's
    kernel is single-core: the four vCPUs are threads of one core, scheduled by seL4, so a busy loop
    on each still keeps each one's idle time low (a vCPU's ticks come while it runs). Skipped without
    MICROKIT_SDK, and on the test matrix's other boards (it is the native platform's)."""
    EXAMPLE = REPO_ROOT / "examples/microkit-smp.toml"
    PLATFORM = "microkit"
    OPTIONS = ("--microkit-config", os.environ.get("MICROKIT_CONFIG") or "debug")

    @classmethod
    def setUpClass(cls):
        require_microkit_board()


if __name__ == "__main__":
    unittest.main()
