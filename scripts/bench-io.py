#!/usr/bin/env python3
"""I/O benchmark: block and network throughput of the same guest two ways, in one run.

  qemu  the guest on plain QEMU (virt, EL2 available, GICv2, Cortex-A53, 1 GiB): the guest drives
        QEMU's own virtio-blk and virtio-net devices.
  vmm   the same board and devices with build/native/vmm.elf as the kernel: the VMM drives the
        board's devices and gives the guest its emulated virtio-blk and virtio-net.
  sel4  with --sel4 (make bench with MICROKIT_SDK): the same board and devices under seL4, the VMM a
        Microkit protection domain and the board's devices driven by driver protection domains. Its
        image is built first with `vmm build` (MICROKIT_SDK from the environment) of a system file
        with one disk and one network, the devices of the command line above, into
        build/microkit-bench/; QEMU runs its loader.img as the SDK says (-m 2G, -device loader).

Each boot gets a fresh sparse 300 MiB raw disk file in a temporary directory and a free TCP port
forwarded (QEMU user networking) to the guest's port 80. Per boot, each repetition runs:

  write  dd if=/dev/zero of=/dev/vda bs=1M count=256 oflag=direct   (O_DIRECT, no page cache)
  read   dd if=/dev/vda of=/dev/null bs=1M count=256 iflag=direct   (O_DIRECT, no page cache)
  net    guest `sleep | nc -l -p 80 > /tmp/file` (tmpfs); the host connects to 127.0.0.1:PORT,
         sends 64 MiB with sendall, shuts its side down and waits for the guest to close the
         connection (nc exits at end of input); time on the host from connect to that close;
         the file's size (wc -c) must equal what was sent. (Piping nc into wc -c instead costs
         the 1-vCPU guest about 2.5x in throughput, which would hide the devices.)

Block times are taken in the guest: the kernel's monotonic clock in nanoseconds ("now at"
line of /proc/timer_list) read just before and after dd, or /proc/uptime (10 ms) where
timer_list is missing. busybox's `time` and /proc/uptime only give 10 ms, and busybox dd
prints no rate.

Order: round 1 boots qemu then vmm (then sel4), round 2 the other way round (so drift hits all
alike); each boot runs all tests --reps times. The table gives MB/s (10^6 bytes/s) min/median per
test and config and the ratio of medians vmm/qemu, with the targets (block >= 0.90, net >= 0.80);
with --sel4 also sel4/vmm, the guest on seL4 against the same guest on the native platform
(targets: block >= 0.50, net >= 0.50). Missed targets do not fail the run; errors (build, boot,
command, short transfer) exit 1, after the other configs have run.

Usage:
  scripts/bench-io.py [--reps N] [--rounds R] [--block-mib M] [--net-mib M] [--json FILE]
                      [--sel4 [--microkit-config debug|release]]
Environment: VMM_QEMU (QEMU binary), VMM_ELF (default build/linux/vmm.elf, else
build/native/vmm.elf), VMM_GUEST_KERNEL, VMM_GUEST_INITRD, VMM_LOG_DIR; for --sel4 MICROKIT_SDK
(and MICROKIT_CONFIG, the default of --microkit-config).
"""

import argparse
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
from serial_console import (  # noqa: E402
    HOST_VMM, INIT_DONE, SerialConsole, SerialConsoleError, guest_paths, host_sends, vmm_build)

DISK_BYTES = 300 << 20
BOOT_TIMEOUT = 180.0
BLOCK_TIMEOUT = 300.0
NET_TIMEOUT = 600.0
TESTS = ("block write", "block read", "net host->guest")
TARGETS = {"block write": 0.90, "block read": 0.90, "net host->guest": 0.80}
# Each config but the first is measured against another one: (reference, targets of the ratio).
REFERENCES = {"vmm": ("qemu", TARGETS),
              "sel4": ("vmm", {"block write": 0.50, "block read": 0.50, "net host->guest": 0.50})}
SEL4_BUILD = REPO_ROOT / "build/microkit-bench"
RECEIVED_FILE = "/tmp/iobench.received"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vmm_elf():
    """$VMM_ELF, else the image of examples/linux.toml (build/linux/vmm.elf), else the
    single-guest build/native/vmm.elf of older trees."""
    if os.environ.get("VMM_ELF"):
        return Path(os.environ["VMM_ELF"])
    for candidate in ("build/linux/vmm.elf", "build/native/vmm.elf"):
        if (REPO_ROOT / candidate).is_file():
            return REPO_ROOT / candidate
    return REPO_ROOT / "build/linux/vmm.elf"


def sel4_image(config):
    """Builds the seL4 system of the sel4 config with `vmm build` (examples/linux.toml's guest, with
    one disk and one network: the devices of qemu_command, in its order) into build/microkit-bench/;
    returns its loader.img. Raises SerialConsoleError with the tool's message if the build fails."""
    kernel, initrd = guest_paths()
    SEL4_BUILD.mkdir(parents=True, exist_ok=True)
    system = SEL4_BUILD / "system.toml"
    system.write_text("\n".join([
        "# Written by scripts/bench-io.py --sel4: the I/O benchmark's guest on seL4.",
        "[system]", 'platform = "microkit"', "",
        "[[vm]]", f'kernel = "{kernel}"', f'initrd = "{initrd}"', "",
        "[[vm.block]]", 'file = "disk.img"', f'size = "{DISK_BYTES >> 20}M"', "",
        # examples/linux.toml's MAC, the one QEMU gives the board's virtio-net without mac=.
        "[[vm.net]]", 'mac = "52:54:00:12:34:56"', ""]))
    vmm_build(system, SEL4_BUILD, "--microkit-config", config, timeout=None)
    return SEL4_BUILD / "loader.img"


def qemu_command(config, disk, port, image=None):
    """QEMU with the benchmark's disk and network on the board; `image` is the sel4 config's
    loader.img."""
    kernel, initrd = guest_paths()
    elf = vmm_elf()
    memory = (["-m", "size=2G", "-nographic", "-serial", "mon:stdio"] if config == "sel4"
              else ["-m", "1G", "-nographic"])
    argv = [os.environ.get("VMM_QEMU", "qemu-system-aarch64"),
            "-machine", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a53"] + memory + [
            "-global", "virtio-mmio.force-legacy=false",
            "-drive", f"file={disk},if=none,format=raw,id=disk0", "-device", "virtio-blk-device,drive=disk0",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:80",
            "-device", "virtio-net-device,netdev=net0"]
    if config == "qemu":
        return argv + ["-kernel", str(kernel), "-initrd", str(initrd),
                       "-append", "console=ttyAMA0 rdinit=/init"]
    if config == "sel4":
        return argv + ["-device", f"loader,file={image},addr=0x70000000,cpu-num=0"]
    return argv + ["-kernel", str(elf)]


class Guest:
    """One booted guest and the measurements made in it."""

    def __init__(self, config, disk, port, image=None):
        self.config = config
        self.port = port
        self.console = SerialConsole(qemu_command(config, disk, port, image), name=f"iobench-{config}")
        try:
            self._boot()
        except BaseException:
            self.console.kill()
            raise

    def _boot(self):
        self.console.expect(INIT_DONE, BOOT_TIMEOUT)
        self.console.wait_for_prompt(BOOT_TIMEOUT)
        # The guest clock read around each dd: ns from /proc/timer_list where it exists.
        if re.search(r"^now at \d+ nsecs", self.console.run("head -n 3 /proc/timer_list 2>/dev/null"), re.M):
            self.clock_cmd = "grep -m 1 '^now at' /proc/timer_list"
            self.clock_name = "/proc/timer_list (ns)"
        else:
            self.clock_cmd = "cat /proc/uptime"
            self.clock_name = "/proc/uptime (10 ms)"
        # The guest clock against the host's over a 2 s sleep: block rates rest on it.
        before = time.monotonic()
        output = self.console.run(f"{self.clock_cmd}; sleep 2; {self.clock_cmd}")
        host = time.monotonic() - before
        lines = [line for line in output.splitlines() if line.strip()]
        try:
            self.clock_ratio = (self._clock(lines[-1]) - self._clock(lines[0])) / host
        except (ValueError, IndexError):
            self.console.fail(f"cannot read the guest clock {self.clock_cmd!r}:\n{output}")
        self.console.run("ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 "
                         "&& ip route add default via 10.0.2.2", timeout=30, check=True)

    def _clock(self, line):
        match = re.fullmatch(r"now at (\d+) nsecs", line.strip())
        if match:
            return int(match.group(1)) / 1e9
        return float(line.split()[0])

    def dd(self, args, nbytes):
        """Run dd between two guest clock readings; guest seconds it took."""
        command = f"{self.clock_cmd}; dd {args}; {self.clock_cmd}"
        output = self.console.run(command, timeout=BLOCK_TIMEOUT)
        lines = [line for line in output.splitlines() if line.strip()]
        if self.console.last_status != 0 or len(lines) < 2:
            self.console.fail(f"{command!r} failed (status {self.console.last_status}):\n{output}")
        records = nbytes >> 20
        if f"{records}+0 records out" not in output:
            self.console.fail(f"dd did not move {records} full 1 MiB blocks:\n{output}")
        try:
            return self._clock(lines[-1]) - self._clock(lines[0])
        except (ValueError, IndexError):
            self.console.fail(f"cannot read the guest clock around dd:\n{output}")

    def block_write(self, nbytes):
        return self.dd(f"if=/dev/zero of=/dev/vda bs=1M count={nbytes >> 20} oflag=direct", nbytes)

    def block_read(self, nbytes):
        return self.dd(f"if=/dev/vda of=/dev/null bs=1M count={nbytes >> 20} iflag=direct", nbytes)

    def net_receive(self, nbytes):
        """Host seconds from connect to the guest closing the connection after nbytes."""
        console = self.console
        # nc exits when the connection ends; `sleep` keeps its stdin open so it never shuts its
        # sending half early, which would show the host an end of file before the data is in.
        console.run(f"rm -f {RECEIVED_FILE}; sleep 100000 | nc -l -p 80 > {RECEIVED_FILE} &")
        deadline = time.monotonic() + 30
        while ":80 " not in console.run("netstat -ltn"):
            if time.monotonic() > deadline:
                console.fail("the guest's nc is not listening on port 80")
            time.sleep(0.1)
        elapsed = host_sends(self.port, nbytes, console, NET_TIMEOUT)
        # nc has exited (it closed the connection); end its pipeline, then count what it wrote.
        console.run("kill $(pidof sleep) 2>/dev/null; wait", timeout=60)
        count = console.run(f"wc -c < {RECEIVED_FILE}; rm -f {RECEIVED_FILE}", timeout=60)
        if not count.strip().isdigit():
            console.fail(f"cannot count the bytes the guest received: {count!r}")
        if int(count) != nbytes:
            console.fail(f"the guest received {count.strip()} bytes of {nbytes}")
        return elapsed

    def kill(self):
        self.console.kill()


def run_boot(config, reps, block_bytes, net_bytes, results, log, image=None):
    with tempfile.TemporaryDirectory(prefix="iobench-") as tmp:
        disk = Path(tmp, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(DISK_BYTES)
        port = free_port()
        booted = time.monotonic()
        guest = Guest(config, disk, port, image)
        try:
            log(f"{config}: booted in {time.monotonic() - booted:.1f}s, port {port}, "
                f"guest clock {guest.clock_name} runs at {guest.clock_ratio:.3f}x the host's, "
                f"serial log {guest.console.log_path}")
            if not 0.9 <= guest.clock_ratio <= 1.1:
                log(f"{config}: WARNING: the guest clock is off by more than 10%: block rates are suspect")
            for rep in range(reps):
                for test, fn, nbytes in (("block write", guest.block_write, block_bytes),
                                         ("block read", guest.block_read, block_bytes),
                                         ("net host->guest", guest.net_receive, net_bytes)):
                    seconds = fn(nbytes)
                    rate = nbytes / seconds / 1e6
                    results[test][config].append(rate)
                    log(f"{config} rep {rep + 1}/{reps} {test}: {nbytes >> 20} MiB in {seconds:.3f}s "
                        f"= {rate:.1f} MB/s")
        finally:
            guest.kill()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per boot (default 3)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds: 1 = qemu then vmm (then sel4), 2 adds the same the other way round (default 2)")
    parser.add_argument("--block-mib", type=int, default=256)
    parser.add_argument("--net-mib", type=int, default=64)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--sel4", action="store_true",
                        help="also the guest on seL4 (needs MICROKIT_SDK and `make MICROKIT_SDK=... microkit-objects`)")
    parser.add_argument("--microkit-config", default=os.environ.get("MICROKIT_CONFIG") or "debug",
                        choices=("debug", "release"),
                        help="the SDK configuration of --sel4 (default: $MICROKIT_CONFIG or debug)")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.rounds < 1 or not 1 <= args.block_mib <= 299 or args.net_mib < 1:
        parser.error("--reps and --rounds must be >= 1, --block-mib within the 300 MiB disk, --net-mib >= 1")
    if args.sel4 and not os.environ.get("MICROKIT_SDK"):
        parser.error("--sel4 needs MICROKIT_SDK=/path/to/microkit-sdk in the environment")

    kernel, initrd = guest_paths()
    elf = vmm_elf()
    missing = [str(p) for p in (kernel, initrd, elf) if not p.is_file()]
    if missing:
        print(f"bench-io: missing {', '.join(missing)}: run `make vmm` first", file=sys.stderr)
        return 2

    def log(message):
        print(f"bench-io: {message}", file=sys.stderr, flush=True)

    log(f"vmm image {elf} ({time.strftime('%Y-%m-%d %H:%M', time.localtime(elf.stat().st_mtime))}); "
        f"guest {kernel}, {initrd}")
    configs = ("qemu", "vmm") + (("sel4",) if args.sel4 else ())
    results = {test: {c: [] for c in configs} for test in TESTS}
    errors = []
    image = None
    if args.sel4:
        try:
            image = sel4_image(args.microkit_config)
            log(f"sel4 image {image} (vmm build of {SEL4_BUILD / 'system.toml'}, "
                f"Microkit config {args.microkit_config}, MICROKIT_SDK={os.environ['MICROKIT_SDK']})")
        except SerialConsoleError as err:
            log(f"sel4: building the image FAILED:\n{err}")
            errors.append(("sel4", str(err)))
    started = time.monotonic()
    for rnd in range(args.rounds):
        order = configs if rnd % 2 == 0 else configs[::-1]
        for config in order:
            if any(config == c for c, _ in errors):
                continue
            try:
                run_boot(config, args.reps, args.block_mib << 20, args.net_mib << 20, results, log,
                         image if config == "sel4" else None)
            except SerialConsoleError as err:
                log(f"{config} round {rnd + 1} FAILED:\n{err}")
                errors.append((config, str(err)))

    sys.stderr.flush()
    print()
    # Without sel4 the ratio column is vmm/qemu alone; with it each ratio says what it divides.
    print(f"{'test':<16} {'config':<6} {'runs':>4} {'min MB/s':>9} {'median MB/s':>11} "
          f"{'ratio' if args.sel4 else 'vmm/qemu':>8} {'target':>7}")
    rows = []
    for test in TESTS:
        medians = {c: statistics.median(s) for c, s in results[test].items() if s}
        for config in configs:
            samples = results[test][config]
            if not samples:
                print(f"{test:<16} {config:<6} {0:>4} {'-':>9} {'-':>11}")
                continue
            reference, targets = REFERENCES.get(config, (None, TARGETS))
            ratio = medians[config] / medians[reference] if reference in medians else None
            verdict = ""
            if ratio is not None:
                verdict = f"{ratio:>8.2f} {'>=' + format(targets[test], '.2f'):>7} " + \
                          ("met" if ratio >= targets[test] else "MISSED")
                if args.sel4:
                    verdict += f" ({config}/{reference})"
            print(f"{test:<16} {config:<6} {len(samples):>4} {min(samples):>9.1f} "
                  f"{statistics.median(samples):>11.1f} {verdict}")
            row = {"test": test, "config": config, "samples_mbps": samples,
                   "min_mbps": min(samples), "median_mbps": statistics.median(samples)}
            if config == "sel4":
                row.update({"ratio_sel4_over_vmm": ratio, "target": targets[test]})
            else:
                row.update({"ratio_vmm_over_qemu": ratio if config == "vmm" else None, "target": TARGETS[test]})
            rows.append(row)
    print(f"MB/s = 10^6 bytes/s; block: {args.block_mib} MiB dd bs=1M with O_DIRECT, guest clock; "
          f"net: {args.net_mib} MiB host->guest nc, host clock connect->close")
    if args.sel4:
        print(f"sel4: the guest on seL4 (Microkit {args.microkit_config}), against vmm, "
              "the same guest on the native platform")
    print(f"total wall time {time.monotonic() - started:.1f}s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "io", "rows": rows,
                                               "errors": [e for _, e in errors]}, indent=2))
    if errors:
        print(f"bench-io: {len(errors)} {'boot(s) or build(s)' if args.sel4 else 'boot(s)'} failed; "
              "see the messages above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
