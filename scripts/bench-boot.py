#!/usr/bin/env python3
"""Boot-time benchmark: wall time from starting a command to the guest's first
shell prompt on its serial line, for several configurations measured side by
side (runs interleaved A, B, A, B, ... so drift in host load hits all alike).
It owns the measuring and the table; the commands (plain QEMU, QEMU running
the VMM, ...) come from the caller, e.g. the Makefile's `bench` target.

Usage:
  scripts/bench-boot.py [--runs N] [--timeout S] [--prompt REGEX] [--json FILE]
                        [--target NAME=RATIO]... [--ratio A/B]...
                        --name A -- cmdA... --name B -- cmdB...
  scripts/bench-boot.py --runs 5              # no config: plain QEMU alone

Each `--name X --` takes every following word up to the next `--name` as the
command. `--name X --plain` stands for the plain-QEMU baseline command
(serial_console.plain_qemu_command(), paths from $VMM_GUEST_KERNEL/INITRD).
The first configuration is the reference: the table gives each one's min and
median and the ratio of its median to the first one's. `--target B=1.30` adds a
target column: B's ratio should be at most 1.30 (met or MISSED; a missed
target does not fail the run). `--ratio C/D` prints, below the table, the ratio
of C's median to D's, for comparisons against another config than the first
(e.g. the VMM on a GICv3 board against plain QEMU on the same board, or against
the VMM on a GICv2 board). Options come before the first `--name`.
"""

import json
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
from serial_console import PROMPT, SerialConsole, SerialConsoleError, plain_qemu_command  # noqa: E402

USAGE = __doc__[__doc__.index("Usage:"):__doc__.index("Each `--name")].rstrip()


def die(message):
    print(f"bench-boot: {message}\n{USAGE}", file=sys.stderr)
    sys.exit(2)


def parse(argv):
    """Options first, then `--name X -- cmd...` groups; returns (options, configs)."""
    options = {"runs": 5, "timeout": 120.0, "prompt": PROMPT, "json": None, "targets": {}, "ratios": []}
    configs = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if arg == "--name":
            if i + 2 >= len(argv) or argv[i + 2] not in ("--", "--plain"):
                die("--name needs a name followed by `--` and a command (or `--plain`)")
            name = argv[i + 1]
            if argv[i + 2] == "--plain":
                configs.append((name, plain_qemu_command()))
                i += 3
                continue
            j = i + 3
            while j < len(argv) and argv[j] != "--name":
                j += 1
            if j == i + 3:
                die(f"config {name!r} has an empty command")
            configs.append((name, argv[i + 3:j]))
            i = j
            continue
        if arg in ("--runs", "--timeout", "--prompt", "--json", "--target", "--ratio") and i + 1 < len(argv):
            value = argv[i + 1]
            try:
                if arg == "--ratio":
                    numerator, _, denominator = value.partition("/")
                    if not numerator or not denominator:
                        raise ValueError
                    options["ratios"].append((numerator, denominator))
                elif arg == "--target":
                    name, _, ratio = value.partition("=")
                    if not name:
                        raise ValueError
                    options["targets"][name] = float(ratio)
                elif arg == "--runs":
                    options["runs"] = int(value)
                elif arg == "--timeout":
                    options["timeout"] = float(value)
                elif arg == "--prompt":
                    options["prompt"] = value.encode()
                else:
                    options["json"] = value
            except ValueError:
                die(f"{arg} {value!r} is not " + {"--target": "NAME=RATIO", "--ratio": "A/B"}.get(arg, "a number"))
            i += 2
            continue
        die(f"unexpected argument {arg!r}")
    if options["runs"] < 1:
        die("--runs must be at least 1")
    names = [name for name, _ in configs]
    if len(set(names)) != len(names):
        die("config names must be distinct")
    unknown = [name for name in options["targets"] if name not in names]
    if unknown:
        die(f"--target names no config: {', '.join(unknown)}")
    unknown = [name for pair in options["ratios"] for name in pair if name not in names]
    if unknown:
        die(f"--ratio names no config: {', '.join(unknown)}")
    return options, configs or [("plain", plain_qemu_command())]


def boot_once(name, argv, prompt, timeout):
    """Seconds from spawning `argv` to its first prompt; the process is killed after."""
    console = SerialConsole(argv, name=f"bench-{name}", prompt=prompt)
    try:
        console.wait_for_prompt(timeout)
        return time.monotonic() - console.started_at
    finally:
        console.kill()


def main(argv):
    options, configs = parse(argv)
    times = {name: [] for name, _ in configs}
    for run in range(options["runs"]):
        for name, command in configs:
            try:
                seconds = boot_once(name, command, options["prompt"], options["timeout"])
            except SerialConsoleError as err:
                print(f"bench-boot: {name} run {run + 1} failed:\n{err}", file=sys.stderr)
                return 1
            times[name].append(seconds)
            print(f"run {run + 1}/{options['runs']} {name}: {seconds:.3f} s", file=sys.stderr)

    reference = statistics.median(times[configs[0][0]])
    targets = options["targets"]
    width = max(8, *(len(name) for name in times))
    print(f"{'config':<{width}}  {'runs':>4}  {'min s':>8}  {'median s':>8}  {'ratio':>6}"
          + (f"  {'target':>6}" if targets else ""))
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        ratio = median / reference
        row = {"name": name, "runs": len(samples), "min": min(samples),
               "median": median, "ratio": ratio, "samples": samples}
        verdict = ""
        if name in targets:
            row["target"] = targets[name]
            verdict = f"  {'<=' + format(targets[name], '.2f'):>6} " + ("met" if ratio <= targets[name] else "MISSED")
        rows.append(row)
        print(f"{name:<{width}}  {len(samples):>4}  {min(samples):>8.3f}  {median:>8.3f}  {ratio:>6.2f}{verdict}")
    if len(rows) > 1:
        print(f"ratio = median / median of {configs[0][0]!r}")
    ratios = []
    for numerator, denominator in options["ratios"]:
        ratio = statistics.median(times[numerator]) / statistics.median(times[denominator])
        ratios.append({"numerator": numerator, "denominator": denominator, "ratio": ratio})
        print(f"{numerator}/{denominator} = {ratio:.2f} (median / median)")
    if options["json"]:
        Path(options["json"]).write_text(json.dumps({"benchmark": "boot-to-prompt", "configs": rows,
                                                     **({"ratios": ratios} if ratios else {})}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
