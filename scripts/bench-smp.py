#!/usr/bin/env python3
"""SMP benchmark: how a CPU-bound job scales over the vCPUs of a 4-vCPU guest, two or three ways, in one run.

  qemu  the guest on plain QEMU (virt, EL2 available, GICv2, Cortex-A53, 1 GiB, -smp 4): Linux owns
        the board's four CPUs.
  vmm   the same board (-m 1G -smp 4, what `vmm run` gives QEMU for this system) with the VMM as the
        kernel: the image of a system file the script writes, build/smp-bench/system.toml (platform
        native, the guest's kernel and initrd, vcpus = 4, no devices, 512 MiB of guest RAM by
        default), built with `.build/debug/vmm build FILE --output build/smp-bench`. Each vCPU owns
        one board CPU (static partitioning); the job makes no device I/O, so what the VMM costs here
        is its handling of timer interrupts, IPIs and anything else that traps to EL2.
  sel4  only with MICROKIT_SDK in the environment: the same guest on seL4, the VMM a Microkit
        protection domain. The script writes build/smp-bench-sel4/system.toml (platform microkit,
        the guest's kernel and initrd, vcpus = 4, ram = "512M", the Microkit platform's limit, no
        devices), builds it with `.build/debug/vmm build FILE --output build/smp-bench-sel4
        --microkit-config CONFIG` (CONFIG: --microkit-config, default $MICROKIT_CONFIG or debug;
        needs `make MICROKIT_SDK=... microkit-objects`) and boots its loader.img on the board `vmm
        run` gives it (the SDK's: -m size=2G, -serial mon:stdio, `-device loader,...,addr=0x70000000`,
        one board CPU). The SDK's seL4 kernel is single-core, so the four vCPUs share one CPU:
        scheduled by seL4, they cannot scale, and the row shows what the guest gets from it. The row
        is an attempt: if it cannot be built or booted, the script says why and goes on; it does not
        fail the run. Without MICROKIT_SDK the table ends with "sel4: not measured (needs
        MICROKIT_SDK)" and the run is the qemu and vmm rows alone.

The job: one copy is a busybox awk loop, `awk -v n=N -f /tmp/smpbench.awk` with the program
`BEGIN { s = 0; for (i = 0; i < n; i++) s = (s * 31 + i) % 1000003; print s }` and N = 300000 by
default (--iterations): about 2.5 s for one copy alone on plain QEMU under TCG on a 2-core host
(2.3-2.9 s measured; up to twice that while other jobs load the host): long enough that the clock
readings, the shell's forks and the timer ticks around the copies are noise, short enough for
3 widths x 3 reps x 4 boots (6 with sel4, whose vCPUs share one CPU: width W takes W times as long
there). Why awk: one process per copy doing pure user-mode arithmetic, with no system calls in the loop, no pipe and no
file or device I/O, so `taskset` pins all of a copy's work to its CPU and nothing but the board's
interrupts (timer, IPIs) involves the kernel or the VMM; its printed result (exact: every value is an
integer below 2^53) is checked against the same loop computed on the host, so a copy that did not run
to the end is an error, not a fast sample. (A `dd if=/dev/zero | md5sum` pipeline would be two
processes per copy handing 64 KiB buffers through the kernel, measuring pipe wake-ups as much as
arithmetic; sha256sum of 16 MiB takes ~2.4 s but has the same pipe.)

Widths 1, 2 and 4: W copies at once, copy i pinned to CPU i with busybox `taskset -c i`, started in
the background from a subshell, which then `wait`s for all of them. The time of a width is taken in
the guest: the kernel's monotonic clock in nanoseconds ("now at" line of /proc/timer_list, or
/proc/uptime (10 ms) where it is missing) read before starting the copies and after `wait`.
Throughput = W x N iterations / that time, in thousands of awk iterations per second. The guest
clock is compared with the host's over a 2 s sleep after boot (a warning if it is off by over 10%).

Order: round 1 boots qemu, vmm[, sel4], round 2 the other way round, ... (so drift in host load hits
all alike); each boot runs --reps repetitions of widths 1, 2, 4, then `poweroff -f`: plain QEMU and the
native VMM end QEMU; on seL4 the guest says "reboot: Power down" (a debug VMM then "vmm: guest powered
off") and QEMU runs on, so the script kills it (a boot that does not power off is only logged: its figures stand). The table gives, per
width and config, the throughput's min and median over all repetitions, the scaling (median over the
same config's median at width 1) and a ratio of medians: on the vmm row vmm/qemu with its target
(>= 0.90 at each width), on the sel4 row sel4/vmm (seL4 against native; no target). QEMU's TCG runs
one host thread per vCPU, so on a host with fewer CPUs than a width the copies share the host's CPUs:
such widths are limited by the host for qemu and vmm alike (the footnote says so). Missed targets do
not fail the run; errors of qemu and vmm (image build, boot, a command, a wrong result) exit 1 after
the other configs have run (sel4's are reported below the table and do not); missing guest files or
host tool exit 2.

Usage:
  scripts/bench-smp.py [--reps N] [--rounds R] [--iterations N] [--json FILE]
                       [--microkit-config debug|release]
Environment: VMM_QEMU (QEMU binary), VMM_GUEST_KERNEL, VMM_GUEST_INITRD, VMM_LOG_DIR, MICROKIT_SDK,
MICROKIT_CONFIG.
"""

import argparse
import json
import os
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
from serial_console import (HOST_VMM, INIT_DONE, SerialConsole, SerialConsoleError, guest_paths,  # noqa: E402
                            toml_table, vmm_build)

VCPUS = 4
WIDTHS = (1, 2, 4)
TARGET = 0.90                 # vmm/qemu, ratio of median throughputs, at each width
CONFIGS = ("qemu", "vmm", "sel4")
BUILD_DIR = REPO_ROOT / "build/smp-bench"
SEL4_BUILD = REPO_ROOT / "build/smp-bench-sel4"
SEL4_RAM = "512M"             # the Microkit platform's limit
BOOT_TIMEOUT = 300.0          # TCG, 4 vCPUs on a small, noisy host
COMMAND_TIMEOUT = 120.0       # a short shell command line
BUILD_TIMEOUT = 300.0         # `vmm build` links the image
# One width's copies: ~2.5 s each alone, W/host-CPUs times that when they share the host (on seL4 W
# times that: its vCPUs share one board CPU); generous.
JOB_TIMEOUT = 900.0
POWEROFF_TIMEOUT = 60.0       # `poweroff -f` to QEMU's exit, or to the seL4 VMM's report
# The guest's own last line, then (debug config only: a release VMM prints nothing) the VMM's.
POWERED_OFF = re.compile(rb"reboot: Power down|vmm: guest powered off")
AWK_FILE = "/tmp/smpbench.awk"
OUT_PREFIX = "/tmp/smpbench.out"
MODULUS = 1000003
AWK_PROGRAM = f"BEGIN {{ s = 0; for (i = 0; i < n; i++) s = (s * 31 + i) % {MODULUS}; print s }}"
BOOTARGS = "console=ttyAMA0 rdinit=/init"


def expected_result(iterations):
    """What one copy prints: the awk loop on the host, in doubles as awk computes (all exact)."""
    s = 0.0
    for i in range(iterations):
        s = (s * 31 + i) % MODULUS
    return str(int(s))


def host_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def build_image(config, microkit_config=None):
    """Writes the system file of `config` ("vmm": build/smp-bench/system.toml, platform native;
    "sel4": build/smp-bench-sel4/system.toml, platform microkit, 512M of guest RAM) with the guest's
    4 vCPUs and no devices, and builds it with `vmm build` (for sel4 with --microkit-config); returns
    the image QEMU boots (vmm.elf, loader.img). Raises SerialConsoleError with the tool's message if
    the build fails."""
    kernel, initrd = guest_paths()
    directory, platform, image = ((BUILD_DIR, "native", "vmm.elf") if config == "vmm"
                                  else (SEL4_BUILD, "microkit", "loader.img"))
    vm = {"kernel": str(kernel), "initrd": str(initrd), "cmdline": BOOTARGS, "vcpus": VCPUS}
    if config == "sel4":
        vm["ram"] = SEL4_RAM
    directory.mkdir(parents=True, exist_ok=True)
    system = directory / "system.toml"
    system.write_text("\n".join(
        [f"# Written by scripts/bench-smp.py: the SMP benchmark's guest on the {platform} platform.", ""]
        + toml_table("[system]", {"platform": platform}) + toml_table("[[vm]]", vm)))
    options = ["--microkit-config", microkit_config] if config == "sel4" else []
    vmm_build(system, directory, *options, timeout=BUILD_TIMEOUT)
    path = directory / image
    if not path.is_file():
        raise SerialConsoleError(f"`vmm build {system}` succeeded but wrote no {path}")
    return path


def qemu_command(config, image=None):
    """QEMU's command line: for qemu and vmm the same board (-smp 4) with the guest's kernel itself or
    the VMM's vmm.elf; for sel4 the board `vmm run` gives a Microkit system (the SDK's -m 2G and
    loader address, one CPU) with its loader.img."""
    argv = [os.environ.get("VMM_QEMU", "qemu-system-aarch64"),
            "-machine", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a53", "-nographic"]
    if config == "sel4":
        return argv + ["-m", "size=2G", "-serial", "mon:stdio",
                       "-device", f"loader,file={image},addr=0x70000000,cpu-num=0"]
    argv += ["-m", "1G", "-smp", str(VCPUS)]
    if config == "qemu":
        kernel, initrd = guest_paths()
        return argv + ["-kernel", str(kernel), "-initrd", str(initrd), "-append", BOOTARGS]
    return argv + ["-kernel", str(image)]


class Guest:
    """One booted 4-vCPU guest and the jobs run in it."""

    def __init__(self, config, argv, iterations):
        self.config = config
        self.iterations = iterations
        self.expected = expected_result(iterations)
        self.console = SerialConsole(argv, name=f"smpbench-{config}")
        try:
            self._boot()
        except BaseException:
            self.console.kill()
            raise

    def _boot(self):
        console = self.console
        console.expect(INIT_DONE, BOOT_TIMEOUT)
        console.wait_for_prompt(BOOT_TIMEOUT)
        online = console.run("cat /sys/devices/system/cpu/online", timeout=COMMAND_TIMEOUT)
        if online.strip() != f"0-{VCPUS - 1}":
            console.fail(f"the guest should have CPUs 0-{VCPUS - 1} online; "
                         f"/sys/devices/system/cpu/online says {online.strip()!r}")
        if re.search(r"^now at \d+ nsecs",
                     console.run("head -n 3 /proc/timer_list 2>/dev/null", timeout=COMMAND_TIMEOUT), re.M):
            self.clock_cmd = "grep -m 1 '^now at' /proc/timer_list"
            self.clock_name = "/proc/timer_list (ns)"
        else:
            self.clock_cmd = "cat /proc/uptime"
            self.clock_name = "/proc/uptime (10 ms)"
        # The guest clock against the host's over a 2 s sleep: the throughputs rest on it.
        before = time.monotonic()
        output = console.run(f"{self.clock_cmd}; sleep 2; {self.clock_cmd}", timeout=COMMAND_TIMEOUT)
        host = time.monotonic() - before
        lines = [line for line in output.splitlines() if line.strip()]
        try:
            self.clock_ratio = (self._clock(lines[-1]) - self._clock(lines[0])) / host
        except (ValueError, IndexError):
            console.fail(f"cannot read the guest clock {self.clock_cmd!r}:\n{output}")
        console.run(f"printf '%s\\n' '{AWK_PROGRAM}' > {AWK_FILE}", timeout=COMMAND_TIMEOUT, check=True)

    def _clock(self, line):
        match = re.fullmatch(r"now at (\d+) nsecs", line.strip())
        if match:
            return int(match.group(1)) / 1e9
        return float(line.split()[0])

    def job(self, width):
        """W copies of the awk loop at once, copy i pinned to CPU i; guest seconds from before the
        first starts to after `wait` saw the last end. Every copy's result is checked."""
        cpus = " ".join(str(cpu) for cpu in range(width))
        # A subshell: its background jobs are not the interactive shell's (no job-control chatter).
        command = (f"rm -f {OUT_PREFIX}.*; ( {self.clock_cmd}; for c in {cpus}; do "
                   f"taskset -c $c awk -v n={self.iterations} -f {AWK_FILE} > {OUT_PREFIX}.$c 2>&1 & "
                   f"done; wait; {self.clock_cmd} ); "
                   f"for c in {cpus}; do echo \"copy $c: $(cat {OUT_PREFIX}.$c)\"; done")
        output = self.console.run(command, timeout=JOB_TIMEOUT)
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        if self.console.last_status != 0 or len(lines) < 2 + width:
            self.console.fail(f"width {width}: the job failed (status {self.console.last_status}):\n{output}")
        for cpu in range(width):
            want = f"copy {cpu}: {self.expected}"
            if want not in lines:
                self.console.fail(f"width {width}: copy {cpu} (taskset -c {cpu}) did not print "
                                  f"{self.expected!r}, the loop's result:\n{output}")
        try:
            seconds = self._clock(lines[1]) - self._clock(lines[0])
        except (ValueError, IndexError):
            self.console.fail(f"width {width}: cannot read the guest clock around the copies:\n{output}")
        if seconds <= 0:
            self.console.fail(f"width {width}: the guest clock did not advance ({seconds:.3f}s):\n{output}")
        return seconds

    def power_off(self):
        """`poweroff -f`: plain QEMU and the native VMM end QEMU; on seL4 the guest prints "reboot:
        Power down" (and a debug VMM "vmm: guest powered off") and QEMU runs on (kill() ends it). Returns None when that happened within
        POWEROFF_TIMEOUT, else what happened instead (one line)."""
        self.console.sendline("poweroff -f")
        try:
            if self.config == "sel4":
                self.console.expect(POWERED_OFF, POWEROFF_TIMEOUT)
            else:
                status = self.console.wait_exit(POWEROFF_TIMEOUT)
                if status != 0:
                    return f"QEMU exited with status {status} after `poweroff -f`"
        except SerialConsoleError as err:
            return f"`poweroff -f`: {str(err).splitlines()[0]} (serial log {self.console.log_path})"
        return None

    def kill(self):
        self.console.kill()


def run_boot(config, argv, reps, iterations, results, log):
    booted = time.monotonic()
    guest = Guest(config, argv, iterations)
    try:
        log(f"{config}: booted in {time.monotonic() - booted:.1f}s, "
            f"guest clock {guest.clock_name} runs at {guest.clock_ratio:.3f}x the host's, "
            f"serial log {guest.console.log_path}")
        if not 0.9 <= guest.clock_ratio <= 1.1:
            log(f"{config}: WARNING: the guest clock is off by more than 10%: throughputs are suspect")
        for rep in range(reps):
            for width in WIDTHS:
                seconds = guest.job(width)
                rate = width * iterations / seconds / 1e3
                results[width][config].append(rate)
                log(f"{config} rep {rep + 1}/{reps} width {width}: {width} x {iterations} iterations "
                    f"in {seconds:.3f}s = {rate:.1f} k/s")
        problem = guest.power_off()
        if problem:
            log(f"{config}: WARNING: the guest did not power off as it should: {problem}")
    finally:
        guest.kill()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of widths 1, 2, 4 per boot (default 3)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds: 1 = qemu, vmm[, sel4], 2 adds the other way round, ... (default 2)")
    parser.add_argument("--iterations", type=int, default=300000,
                        help="awk loop iterations per copy (default 300000, ~2.5 s on plain QEMU)")
    parser.add_argument("--microkit-config", default=os.environ.get("MICROKIT_CONFIG") or "debug",
                        choices=("debug", "release"),
                        help="the SDK configuration of the sel4 config (default $MICROKIT_CONFIG or debug)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.rounds < 1 or args.iterations < 1:
        parser.error("--reps, --rounds and --iterations must be >= 1")

    kernel, initrd = guest_paths()
    missing = [str(p) for p in (kernel, initrd, HOST_VMM) if not p.is_file()]
    if missing:
        print(f"bench-smp: missing {', '.join(missing)}: run `make vmm` first", file=sys.stderr)
        return 2

    def log(message):
        print(f"bench-smp: {message}", file=sys.stderr, flush=True)

    cpus = host_cpus()
    log(f"guest {kernel}, {initrd}; {VCPUS} vCPUs; host: {cpus} CPUs, load average "
        f"{' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    results = {width: {c: [] for c in CONFIGS} for width in WIDTHS}
    errors = []                 # (config, message) of qemu and vmm: they fail the run
    notes = []                  # why sel4 is not (or not fully) measured: they do not
    commands = {"qemu": qemu_command("qemu")}
    try:
        elf = build_image("vmm")
        commands["vmm"] = qemu_command("vmm", elf)
        log(f"vmm image {elf} (vmm build of {BUILD_DIR / 'system.toml'})")
    except SerialConsoleError as err:
        log(f"vmm: building the image FAILED:\n{err}")
        errors.append(("vmm", str(err)))
    sdk = os.environ.get("MICROKIT_SDK")
    if not sdk:
        notes.append("sel4: not measured (needs MICROKIT_SDK)")
    else:
        try:
            loader = build_image("sel4", args.microkit_config)
            commands["sel4"] = qemu_command("sel4", loader)
            log(f"sel4 image {loader} (vmm build of {SEL4_BUILD / 'system.toml'}, MICROKIT_SDK={sdk}, "
                f"config {args.microkit_config})")
        except SerialConsoleError as err:
            log(f"sel4: cannot build the seL4 image, so seL4 is not measured:\n{err}")
            notes.append("sel4: not measured (its `vmm build` failed; the message is above)")
    configs = [c for c in CONFIGS if c in commands]
    for config in configs:
        log(f"{config}: {shlex.join(commands[config])}")
    failed = set()
    started = time.monotonic()
    for rnd in range(args.rounds):
        order = configs if rnd % 2 == 0 else configs[::-1]
        for config in order:
            if config in failed:
                continue
            try:
                run_boot(config, commands[config], args.reps, args.iterations, results, log)
            except SerialConsoleError as err:
                log(f"{config} round {rnd + 1} FAILED:\n{err}")
                failed.add(config)
                if config == "sel4":
                    measured = "its figures so far are in the table" if results[WIDTHS[0]]["sel4"] else "not measured"
                    notes.append(f"sel4: {measured} (its boot in round {rnd + 1} failed; the message is above)")
                else:
                    errors.append((config, str(err)))

    sys.stderr.flush()
    print()
    print(f"{'width':>5} {'config':<6} {'runs':>4} {'min k/s':>9} {'median k/s':>10} {'x w1':>5} "
          f"{'ratio':<8} {'value':>5} {'target':>7}")
    # The ratio of each row: (name, denominator config, target or None).
    ratios = {"vmm": ("vmm/qemu", "qemu", TARGET), "sel4": ("sel4/vmm", "vmm", None)}
    rows = []
    for width in WIDTHS:
        medians = {c: statistics.median(s) for c, s in results[width].items() if s}
        for config in configs:
            samples = results[width][config]
            if not samples:
                print(f"{width:>5} {config:<6} {0:>4} {'-':>9} {'-':>10}")
                continue
            median = medians[config]
            base = results[WIDTHS[0]][config]
            scaling = median / statistics.median(base) if base else None
            line = (f"{width:>5} {config:<6} {len(samples):>4} {min(samples):>9.1f} {median:>10.1f} "
                    f"{format(scaling, '.2f') if scaling is not None else '-':>5}")
            row = {"width": width, "config": config, "samples_kips": samples, "min_kips": min(samples),
                   "median_kips": median, "scaling_vs_width1": scaling, "ratio_vmm_over_qemu": None}
            if config in ratios:
                name, denominator, target = ratios[config]
                ratio = median / medians[denominator] if denominator in medians else None
                line += f" {name:<8} {format(ratio, '.2f') if ratio is not None else '-':>5}"
                if target is not None:
                    line += f" {'>=' + format(target, '.2f'):>7}"
                    if ratio is not None:
                        line += " " + ("met" if ratio >= target else "MISSED")
                    row["target"] = target
                row[f"ratio_{config}_over_{denominator}"] = ratio
            print(line)
            rows.append(row)
    print(f"k/s = 10^3 awk loop iterations per second, all copies together: width x {args.iterations} "
          "iterations / guest seconds from starting the copies to `wait`")
    print("x w1 = median / the same config's median at width 1; ratio = of the medians, vmm/qemu (target) "
          "and sel4/vmm (seL4 against native)")
    limited = [w for w in WIDTHS if w > cpus]
    if limited:
        print(f"the host has {cpus} CPUs and TCG runs a host thread per vCPU: width"
              f"{'s' if len(limited) > 1 else ''} {', '.join(map(str, limited))} "
              f"{'are' if len(limited) > 1 else 'is'} limited by the host, for qemu and vmm alike")
    if "sel4" in configs:
        print(f"sel4: the SDK's seL4 kernel is single-core: the {VCPUS} vCPUs share one board CPU (one host "
              f"thread), so its widths cannot scale (Microkit config {args.microkit_config})")
    for note in notes:
        print(note)
    print(f"total wall time {time.monotonic() - started:.1f}s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "benchmark": "smp", "vcpus": VCPUS, "iterations": args.iterations, "host_cpus": cpus,
            "configs": configs, "rows": rows, "notes": notes,
            **({"microkit_config": args.microkit_config} if "sel4" in commands else {}),
            "errors": [e for _, e in errors]}, indent=2))
    if errors:
        print(f"bench-smp: {len(errors)} boot(s) or build(s) failed; see the messages above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
