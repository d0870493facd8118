#!/usr/bin/env python3
"""Exit-cost benchmark: the cost of one guest exit into the VMM, kind by kind, against plain QEMU.

Every MMIO access to an emulated device, PSCI call, virtio notification and injected interrupt costs
the guest one trip into the VMM and back. Each figure is set against the same guest on plain QEMU
(no VMM), measured in the same run, on a GICv2 board and on a GICv3 board.

The guest is our own bare-metal arm64 Image, build/exits/exits.img (`make build/exits/exits.img`;
sources and the meaning of each kind in bench/exits/exits.c). It times N round trips of each kind
and prints `exit <kind> ns/op <ns> n <N>` (or `exit <kind> skipped (<why>)`, `exit <kind> timeout
(<what>)`), then `exits done`, then powers the board off with PSCI SYSTEM_OFF:

  gicd-read         32-bit read of GICD_TYPER
  gicd-write        32-bit write of a GICD_IPRIORITYR word of unused SPIs
  psci-hvc          PSCI_VERSION over HVC
  psci-smc          PSCI_VERSION over SMC
  virtio-blk-getid  a virtio-blk GET_ID request: queue it, notify, poll the used ring
  vtimer-irq        virtual timer deadline -> the guest's IRQ handler (mean lateness)
  sgi-ipi           CPU 0 sends an SGI to CPU 1, whose handler sets a flag CPU 0 spins on

The guest finds its GIC at run time (ID_AA64PFR0_EL1.GIC) and names it in its banner (`GICv2` or
`GICv3`); a config whose guest saw another GIC than its board's fails.

Configurations, each booted --runs times (default 3), in alternating order (qemu, native,
qemu-gic3, native-gic3[, sel4], then the other way round, ...), so drift in host load hits all alike:

  qemu    plain QEMU, everything QEMU's own emulation: virt with GICv2 and *no* virtualization, so
          the guest runs at EL1 and QEMU answers PSCI over HVC itself (SMC is UNDEFINED there:
          psci-smc is skipped); -smp 2, 256 MiB, a 1 MiB scratch disk (build/exits-bench/
          qemu-disk.img) as virtio-blk, virtio-mmio version 2 (`-global
          virtio-mmio.force-legacy=false`, as the VMM's guest gets):
            qemu-system-aarch64 -machine virt,gic-version=2 -cpu cortex-a53 -smp 2 -m 256M
              -nographic -kernel build/exits/exits.img -global virtio-mmio.force-legacy=false
              -drive file=DISK,if=none,format=raw,id=d0 -device virtio-blk-device,drive=d0
              -append "exits.n=N exits.irq_n=M"
  native  the VMM: the script writes build/exits-bench/system.toml (platform native, the image as
          the kernel, no initrd, 16 MiB of RAM, 2 vCPUs, one [[vm.block]] on a 1 MiB scratch disk
          build/exits-bench/disk.img), builds it with `.build/debug/vmm build FILE --output
          build/exits-bench` and runs its vmm.elf on the board `vmm run` gives that system
          (virtualization=on, -m 1G, -smp 2, the board's virtio-blk behind the guest's).
  qemu-gic3
          qemu on a GICv3 board (-machine virt,gic-version=3; its disk build/exits-bench-gic3/
          qemu-disk.img): the guest uses the GICv3 system register CPU interface and redistributors.
  native-gic3
          native with `gic = 3` in build/exits-bench-gic3/system.toml (built into that directory),
          run on virt,virtualization=on,gic-version=3: the VMM on a GICv3 board, its guest given the
          core's emulated GICv3.
  sel4    only with MICROKIT_SDK in the environment (`make MICROKIT_SDK=... bench`): the same guest
          with 1 vCPU (the Microkit platform's limit; sgi-ipi is then skipped) in
          build/exits-bench-sel4/system.toml, platform "microkit", built with `vmm build`
          (--microkit-config, default $MICROKIT_CONFIG or debug; needs `make MICROKIT_SDK=...
          microkit-objects`), its loader.img run as the SDK says. The guest there skips the kinds
          of --sel4-skip (default none; a guest's HVC reaches the VMM as an UnknownSyscall fault and
          is answered in the fault's reply). If it cannot be built or booted,
          the script says why and goes on: the seL4 row is an attempt, not part of the verdict.
          Without MICROKIT_SDK it prints "sel4: not measured (needs MICROKIT_SDK)". GICv2 only.

The table gives, per kind, the median ns per round trip of each config, native/qemu (the ratio of
the medians, on GICv2; with sel4 also sel4/qemu), `v3 native/qemu` (native-gic3 / qemu-gic3),
`native v3/v2` (native-gic3 / native: what the GICv3 board costs the VMM per exit against the
GICv2 board) and the target for native and native-gic3: at most 2000 ns per exit for gicd-read,
psci-hvc and psci-smc (met or MISSED for each; a missed target does not fail the run). A kind a
config skipped or abandoned shows `skipped` or `timeout`, with the guest's reason below the table.

Errors exit 1 with one message: a missing image or host tool, and for the qemu and native configs
(either GIC) a failed `vmm build`, a boot that prints nothing, a guest that saw the wrong GIC, a
guest the VMM stops (its report is shown), a guest that never prints `exits done` (the other configs
still run first; sel4's are reported the same way but do not fail the run). Serial logs go to build/logs/ (or $VMM_LOG_DIR).

Usage:
  scripts/bench-exits.py [--runs R] [--iterations N] [--irq-iterations M] [--json FILE]
                         [--microkit-config debug|release] [--sel4-skip KIND,...]
Environment: VMM_QEMU (QEMU binary), VMM_EXITS_IMAGE (default build/exits/exits.img), VMM_LOG_DIR,
MICROKIT_SDK, MICROKIT_CONFIG.
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
import serial_console  # noqa: E402
from serial_console import HOST_VMM, SerialConsole, SerialConsoleError, toml_table  # noqa: E402

KINDS = ("gicd-read", "gicd-write", "psci-hvc", "psci-smc", "virtio-blk-getid", "vtimer-irq", "sgi-ipi")
TARGET_NS = {"gicd-read": 2000.0, "psci-hvc": 2000.0, "psci-smc": 2000.0}    # native, per exit
NATIVE_BUILD = REPO_ROOT / "build/exits-bench"
GIC3_BUILD = REPO_ROOT / "build/exits-bench-gic3"
# Each config's board GIC: the guest's banner must name it (GIC_LINE), or the config fails.
GIC = {"qemu": 2, "native": 2, "qemu-gic3": 3, "native-gic3": 3, "sel4": 2}
GIC_LINE = re.compile(r"exits: the exit benchmark's guest, [^\n]*?\bGICv(\d)\b")
SEL4_BUILD = REPO_ROOT / "build/exits-bench-sel4"
DISK_BYTES = 1 << 20
# What the guest on seL4 does not try unless asked (--sel4-skip): nothing; every kind but sgi-ipi
# (one vCPU there) runs.
SEL4_SKIP = ""
GUEST_RAM = "16M"
BANNER = rb"exits: the exit benchmark's guest"
DONE = rb"exits done"
# The VMM's report when it stops a guest: "vmm: guest stopped: REASON", on the native platform
# followed by "vmm:   vCPU N PC ... ESR ... address ..." (Platforms/native/NativeMain.swift reportStop;
# Platforms/microkit/MicrokitVMM.swift prints one line or the same two).
STOPPED = rb"vmm: guest stopped: [^\n]*\n"
STOPPED_DETAIL = rb"vmm:   [^\n]*\n"
# The first output: QEMU, the VMM and (slowest) seL4's loader and kernel before the guest's banner.
BANNER_TIMEOUT = {"qemu": 60.0, "native": 120.0, "qemu-gic3": 60.0, "native-gic3": 120.0, "sel4": 300.0}
RUN_TIMEOUT = 300.0           # banner to `exits done`: 7 kinds of N round trips under TCG
EXIT_TIMEOUT = 10.0           # `exits done` to QEMU's exit (PSCI SYSTEM_OFF)
BUILD_TIMEOUT = 300.0
EXIT_LINE = re.compile(r"^exit (\S+) (?:ns/op ([0-9.]+) n (\d+)|(skipped|timeout) \((.*)\))\s*$", re.M)


def log(message):
    print(f"bench-exits: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A configuration could not be built or booted; the message says why."""


def qemu_binary():
    return os.environ.get("VMM_QEMU", "qemu-system-aarch64")


def scratch_disk(disk):
    """A fresh 1 MiB raw file at `disk`: the virtio-blk device GET_ID asks (nothing is read or
    written)."""
    disk.parent.mkdir(parents=True, exist_ok=True)
    with open(disk, "wb") as f:
        f.truncate(DISK_BYTES)
    return disk


def bootargs(args, skip=""):
    """The guest's command line: round trips per kind and, if any, the kinds it must not try."""
    return f"exits.n={args.iterations} exits.irq_n={args.irq_iterations}" + (f" exits.skip={skip}" if skip else "")


def qemu_command(image, disk, args, gic=2):
    """Plain QEMU: no virtualization (the guest at EL1, PSCI over HVC answered by QEMU)."""
    return [qemu_binary(), "-machine", f"virt,gic-version={gic}", "-cpu", "cortex-a53", "-smp", "2",
            "-m", "256M", "-nographic", "-kernel", str(image),
            "-global", "virtio-mmio.force-legacy=false",
            "-drive", f"file={disk},if=none,format=raw,id=d0", "-device", "virtio-blk-device,drive=d0",
            "-append", bootargs(args)]


def vmm_build(system, output, extra=()):
    """`vmm build SYSTEM --output OUTPUT`; raises BenchError with the tool's message if it fails."""
    serial_console.vmm_build(system, output, *extra, error=BenchError, timeout=BUILD_TIMEOUT)


def write_system(directory, platform, image, disk, vcpus, args, skip="", gic=2):
    system = directory / "system.toml"
    board = {"platform": platform, **({"gic": gic} if gic != 2 else {})}
    system.write_text("\n".join(
        [f"# Written by scripts/bench-exits.py: the exit benchmark's guest on the {platform} platform"
         f" (GICv{gic}).", ""]
        + toml_table("[system]", board)
        + toml_table("[[vm]]", {"kernel": str(image), "cmdline": bootargs(args, skip),
                                "ram": GUEST_RAM, "vcpus": vcpus})
        + toml_table("[[vm.block]]", {"file": str(disk)})))
    return system


def native_command(image, args, gic=2):
    """Writes and builds system.toml in build/exits-bench (GICv2) or build/exits-bench-gic3; QEMU's
    command line for its vmm.elf, the board SystemBuilder.qemuArguments gives this system (the GIC
    of `gic`, 2 vCPUs, 16 MiB guest: -m 1G, one disk)."""
    directory = NATIVE_BUILD if gic == 2 else GIC3_BUILD
    disk = scratch_disk(directory / "disk.img")
    system = write_system(directory, "native", image, disk, 2, args, gic=gic)
    vmm_build(system, directory)
    elf = directory / "vmm.elf"
    if not elf.is_file():
        raise BenchError(f"`vmm build {system}` succeeded but wrote no {elf}")
    return [qemu_binary(), "-machine", f"virt,virtualization=on,gic-version={gic}", "-cpu", "cortex-a53",
            "-nographic", "-m", "1G", "-smp", "2", "-global", "virtio-mmio.force-legacy=false",
            "-drive", f"file={disk},if=none,format=raw,id=disk0", "-device", "virtio-blk-device,drive=disk0",
            "-kernel", str(elf)]


def sel4_command(image, args):
    """Writes and builds build/exits-bench-sel4/system.toml (platform microkit, 1 vCPU); QEMU's
    command line for its loader.img as `vmm run` gives it (the SDK's -m 2G and loader address)."""
    disk = scratch_disk(SEL4_BUILD / "disk.img")
    system = write_system(SEL4_BUILD, "microkit", image, disk, 1, args, args.sel4_skip)
    vmm_build(system, SEL4_BUILD, ["--microkit-config", args.microkit_config])
    loader = SEL4_BUILD / "loader.img"
    if not loader.is_file():
        raise BenchError(f"`vmm build {system}` succeeded but wrote no {loader}")
    return [qemu_binary(), "-machine", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a53",
            "-nographic", "-m", "size=2G", "-serial", "mon:stdio", "-global", "virtio-mmio.force-legacy=false",
            "-drive", f"file={disk},if=none,format=raw,id=disk0", "-device", "virtio-blk-device,drive=disk0",
            "-device", f"loader,file={loader},addr=0x70000000,cpu-num=0"]


def boot_once(config, argv):
    """Boots `argv` until the guest prints `exits done` and QEMU exits; returns {kind: result} with
    result ("ns", value, n), ("skipped", reason) or ("timeout", reason). Raises SerialConsoleError
    (with the serial log's tail) when the guest prints nothing, the VMM stops it, or it never ends."""
    console = SerialConsole(argv, name=f"exits-{config}")
    try:
        try:
            console.expect(BANNER, BANNER_TIMEOUT[config])
        except SerialConsoleError as err:
            raise SerialConsoleError(f"{config}: the guest printed nothing (no {BANNER.decode()!r} within "
                                     f"{BANNER_TIMEOUT[config]:.0f}s)\n{err}") from None
        match = console.expect(re.compile(DONE + b"|" + STOPPED), RUN_TIMEOUT)
        if match.group(0) != DONE:
            stop = match.group(0).decode("utf-8", "replace").replace("\r", "").strip()
            try:
                detail = console.expect(STOPPED_DETAIL, 2.0)
                stop += "\n" + detail.group(0).decode("utf-8", "replace").replace("\r", "").strip()
            except SerialConsoleError:
                pass
            console.fail(f"{config}: the VMM stopped the guest:\n{stop}")
        try:
            # The Microkit VMM does not power the board off when its guest does: no need to wait.
            console.wait_exit(EXIT_TIMEOUT if config != "sel4" else 2.0)
        except SerialConsoleError:
            if config != "sel4":
                log(f"{config}: QEMU did not exit within {EXIT_TIMEOUT:.0f}s of `exits done` "
                    "(PSCI SYSTEM_OFF did not power the board off); killed it")
        text = console.log.decode("utf-8", "replace").replace("\r", "")
    finally:
        console.kill()
    seen = GIC_LINE.search(text)
    if not seen or int(seen.group(1)) != GIC[config]:
        raise SerialConsoleError(f"{config}: the guest saw {'GICv' + seen.group(1) if seen else 'no GIC version'}"
                                 f" on a GICv{GIC[config]} board (its banner; serial log {console.log_path})")
    results = {}
    for m in EXIT_LINE.finditer(text):
        kind, value, count, status, reason = m.groups()
        results[kind] = ("ns", float(value), int(count)) if value else (status, reason)
    missing = [kind for kind in KINDS if kind not in results]
    if missing:
        raise SerialConsoleError(f"{config}: the guest printed `exits done` without a line for "
                                 f"{', '.join(missing)} (serial log {console.log_path})")
    return results, console.log_path


def fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="boots per config (default 3); the table gives medians")
    parser.add_argument("--iterations", type=int, default=20000,
                        help="round trips per kind (default 20000)")
    parser.add_argument("--irq-iterations", type=int, default=None,
                        help="round trips of vtimer-irq and sgi-ipi (default: --iterations / 10)")
    parser.add_argument("--microkit-config", default=os.environ.get("MICROKIT_CONFIG") or "debug",
                        choices=("debug", "release"), help="the SDK configuration of the sel4 config")
    parser.add_argument("--sel4-skip", default=SEL4_SKIP, metavar="KIND,...",
                        help=f"kinds the guest on seL4 does not try (default {SEL4_SKIP!r}; '' tries all)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.irq_iterations is None:
        args.irq_iterations = max(1, args.iterations // 10)
    if args.runs < 1 or args.iterations < 1 or args.irq_iterations < 1:
        parser.error("--runs, --iterations and --irq-iterations must be >= 1")
    unknown = [k for k in args.sel4_skip.split(",") if k and k not in KINDS]
    if unknown:
        parser.error(f"--sel4-skip: unknown kind(s) {', '.join(unknown)} (kinds: {', '.join(KINDS)})")

    image = Path(os.environ.get("VMM_EXITS_IMAGE", "build/exits/exits.img"))
    image = image if image.is_absolute() else REPO_ROOT / image
    for path, how in ((image, "make build/exits/exits.img"), (HOST_VMM, "make host")):
        if not path.is_file():
            print(f"bench-exits: missing {path}: build it with `{how}` (or run `make bench`)", file=sys.stderr)
            return 1
    started = time.monotonic()
    log(f"guest {image}; {args.iterations} round trips per kind, {args.irq_iterations} for vtimer-irq "
        f"and sgi-ipi; {args.runs} boots per config; host load average "
        f"{' '.join(f'{load:.2f}' for load in os.getloadavg())}")

    commands, errors, notes = {}, [], []
    for gic, directory, suffix in ((2, NATIVE_BUILD, ""), (3, GIC3_BUILD, "-gic3")):
        commands["qemu" + suffix] = qemu_command(image, scratch_disk(directory / "qemu-disk.img"), args, gic)
        try:
            commands["native" + suffix] = native_command(image, args, gic)
            log(f"native{suffix}: {directory / 'vmm.elf'} (vmm build of {directory / 'system.toml'})")
        except BenchError as err:
            log(f"native{suffix}: building the image FAILED:\n{err}")
            errors.append(("native" + suffix, str(err)))
    sdk = os.environ.get("MICROKIT_SDK")
    if not sdk:
        notes.append("sel4: not measured (needs MICROKIT_SDK)")
    else:
        try:
            commands["sel4"] = sel4_command(image, args)
            log(f"sel4: {SEL4_BUILD / 'loader.img'} (vmm build of {SEL4_BUILD / 'system.toml'}, "
                f"MICROKIT_SDK={sdk}, config {args.microkit_config})")
        except BenchError as err:
            log(f"sel4: cannot build the seL4 image, so seL4 is not measured:\n{err}")
            notes.append("sel4: not measured (its `vmm build` failed; the message is above)")
    configs = [c for c in ("qemu", "native", "qemu-gic3", "native-gic3", "sel4") if c in commands]
    for config, argv_ in commands.items():
        log(f"{config}: {shlex.join(argv_)}")

    samples = {c: {k: [] for k in KINDS} for c in configs}
    statuses = {c: {} for c in configs}        # kind -> (status, reason) of the last run without a figure
    failed, booted = set(), set()
    for run in range(args.runs):
        order = configs if run % 2 == 0 else configs[::-1]
        for config in order:
            if config in failed:
                continue
            boot_started = time.monotonic()
            try:
                results, log_path = boot_once(config, commands[config])
            except SerialConsoleError as err:
                log(f"{config} run {run + 1} FAILED:\n{err}")
                failed.add(config)
                if config == "sel4":
                    notes.append("sel4: not measured (its boot failed; the message is above)")
                else:
                    errors.append((config, str(err)))
                continue
            booted.add(config)
            for kind, result in results.items():
                if kind not in KINDS:
                    continue
                if result[0] == "ns":
                    samples[config][kind].append(result[1])
                else:
                    statuses[config][kind] = result
            summary = ", ".join(f"{k} {r[1]:.0f}" if r[0] == "ns" else f"{k} {r[0]}"
                                for k, r in results.items() if k in KINDS)
            log(f"run {run + 1}/{args.runs} {config} ({time.monotonic() - boot_started:.1f}s, {log_path}): {summary}")

    measured = [c for c in configs if c in booted]
    if not measured:
        print(f"bench-exits: no configuration booted to the end; nothing to compare "
              f"({', '.join(c for c, _ in errors)} failed: see the messages above)", file=sys.stderr)
        return 1
    print()
    width = {c: max(11, len(c) + 3) for c in measured}
    header = f"{'kind':<17}" + "".join(f" {c + ' ns':>{width[c]}}" for c in measured)
    has_ratio = "qemu" in measured and "native" in measured
    if has_ratio:
        header += f" {'native/qemu':>11}"
    if "sel4" in measured and "qemu" in measured:
        header += f" {'sel4/qemu':>9}"
    # The GICv3 board's ratios: (column, numerator, denominator, JSON key).
    gic3_ratios = [r for r in (("v3 native/qemu", "native-gic3", "qemu-gic3", "ratio_native_gic3_over_qemu_gic3"),
                               ("native v3/v2", "native-gic3", "native", "ratio_native_gic3_over_native"))
                   if r[1] in measured and r[2] in measured]
    for column, *_ in gic3_ratios:
        header += f" {column:>14}"
    targeted = [c for c in ("native", "native-gic3") if c in measured]
    header += f"  {'target (' + ', '.join(targeted or ['native']) + ')'}"
    print(header)
    rows, reasons = [], []

    def cell(config, kind):
        values = samples[config][kind]
        if values:
            return statistics.median(values)
        return None

    for kind in KINDS:
        line = f"{kind:<17}"
        row = {"kind": kind, "configs": {}}
        for config in measured:
            median = cell(config, kind)
            status = statuses[config].get(kind)
            entry = {"samples_ns": samples[config][kind], "median_ns": median}
            if median is None:
                word = status[0] if status else "-"
                line += f" {word:>{width[config]}}"
                if status:
                    entry.update(status=status[0], reason=status[1])
                    reasons.append(f"{config} {kind}: {status[0]} ({status[1]})")
            else:
                line += f" {median:>{width[config]}.1f}"
                if status:      # some runs measured, some not
                    reasons.append(f"{config} {kind}: {len(samples[config][kind])} of {args.runs} runs "
                                   f"measured; another: {status[0]} ({status[1]})")
            row["configs"][config] = entry
        ratio = None
        if has_ratio:
            q, n = cell("qemu", kind), cell("native", kind)
            ratio = n / q if q and n is not None else None
            line += f" {fmt(ratio, '.2f'):>11}"
        if "sel4" in measured and "qemu" in measured:
            q, s = cell("qemu", kind), cell("sel4", kind)
            sel4_ratio = s / q if q and s is not None else None
            line += f" {fmt(sel4_ratio, '.2f'):>9}"
            row["ratio_sel4_over_qemu"] = sel4_ratio
        row["ratio_native_over_qemu"] = ratio
        for column, numerator, denominator, key in gic3_ratios:
            d, n = cell(denominator, kind), cell(numerator, kind)
            row[key] = n / d if d and n is not None else None
            line += f" {fmt(row[key], '.2f'):>14}"
        if kind in TARGET_NS:
            target = TARGET_NS[kind]
            met = {}
            for config in ("native", "native-gic3"):
                value = cell(config, kind) if config in measured else None
                met[config] = None if value is None else value <= target
            verdicts = ["-" if met[c] is None else ("met" if met[c] else "MISSED") for c in targeted or ["native"]]
            line += f"  {'<= ' + format(target, '.0f') + ' ns':<11} {' '.join(verdicts)}"
            row.update(target_ns=target, target_met=met["native"], target_met_native_gic3=met["native-gic3"])
        rows.append(row)
        print(line.rstrip())
    print(f"ns = median over the runs of the guest's mean ns per round trip ({args.iterations} round trips "
          f"per kind, {args.irq_iterations} for vtimer-irq and sgi-ipi; vtimer-irq: mean lateness of the "
          "IRQ handler after the timer's deadline)")
    if has_ratio:
        print("native/qemu = ratio of the medians (GICv2 board); target: native (and native-gic3) at most "
              "2000 ns per exit (gicd-read, psci)")
    if gic3_ratios:
        print("v3 native/qemu = native-gic3 / qemu-gic3; native v3/v2 = native-gic3 / native (the VMM on the "
              "GICv3 board against the GICv2 board)")
    for reason in reasons:
        print(reason)
    for note in notes:
        print(note)
    print(f"total wall time {time.monotonic() - started:.1f}s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "benchmark": "exits", "iterations": args.iterations, "irq_iterations": args.irq_iterations,
            "runs": args.runs, "configs": measured, "rows": rows, "notes": notes,
            **({"microkit_config": args.microkit_config, "sel4_skip": args.sel4_skip} if "sel4" in commands else {}),
            "errors": [e for _, e in errors]}, indent=2))
    if errors:
        print(f"bench-exits: {len(errors)} config(s) failed: {', '.join(c for c, _ in errors)}; "
              "see the messages above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
