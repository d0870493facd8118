"""The guest on today's CPUs: QEMU's `max` (SVE2, pointer authentication, BTI, ...), Neoverse-N1 and
Cortex-A76 boards, through the native VMM (`[system] cpu = ...`, which `vmm run` gives QEMU as -cpu).

For each CPU model one boot of a 2-vCPU guest (on the test board's GIC, $VMM_TEST_GIC), run the user's way (`vmm run` of a system file written
into a temporary directory). The guest's disk is a raw image holding `cpu_state`, a static user
program built here from tests/integration/guest/cpu_state.c with the toolchain's clang (beside swiftc).
Each check a subtest:

  features   /proc/cpuinfo's Features of every CPU: what the VMM gives is there (fp, asimd; on max also
             sve, sve2, paca, pacg, bti), what it hides is not (mte, sme: the VMM does not give them);
  programs   busybox user programs on a 16 MiB random file: md5sum, then gzip and gunzip through a
             pipe, whose md5sum must be the same (a CPU the VMM runs wrongly gives another sum);
  sve        (CPUs with SVE) three `cpu_state sve 3` at once on the 2 vCPUs, at the largest vector
             length the guest offers: z0-z31 and p0-p15 hold a pattern for 3 s of timer and IPI exits
             and kernel context switches, and must be intact;
  pac        (CPUs with pointer authentication) `cpu_state pac 3`: a pointer signed with the APIA key
             before and after 3 s of exits signs the same, and authenticates (the key stayed the guest's);
  poweroff   `poweroff -f` ends QEMU with exit status 0.

Needs QEMU (skipped without it), the host tool and native objects (`make integration-test` builds
them) and clang beside swiftc (a missing one fails: the toolchain is required).
"""

import shutil
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import (  # noqa: E402
    TEST_GIC, boot_to_prompt, guest_paths, require_qemu_and_host_tool, short_temp_dir, write_system)

PROGRAM = Path(__file__).resolve().parent / "guest/cpu_state.c"
BOOT_TIMEOUT = 300.0
COMMAND_TIMEOUT = 180.0
HOLD_SECONDS = 3
WORK_MIB = 16


def clang():
    """The toolchain's clang (beside swiftc, as the Makefile finds it)."""
    swiftc = shutil.which("swiftc")
    candidate = Path(swiftc).parent / "clang" if swiftc else None
    if candidate is None or not candidate.is_file():
        raise AssertionError("no clang beside swiftc on PATH: the Swift toolchain's usr/bin must be on PATH")
    return str(candidate)


def build_program(directory):
    """cpu_state as a static aarch64 Linux executable (no C library), and the disk image holding it."""
    binary = directory / "cpu_state"
    subprocess.run([clang(), "--target=aarch64-linux-gnu", "-O2", "-static", "-nostdlib", "-ffreestanding",
                    "-fno-stack-protector", "-fuse-ld=lld", "-Wall", "-Werror", "-o", str(binary), str(PROGRAM)],
                   check=True, capture_output=True, timeout=120)
    size = binary.stat().st_size
    disk = directory / "program.img"
    disk.write_bytes(binary.read_bytes() + bytes(0x10_0000 - size))
    return disk, size


def cpu_features(cpuinfo):
    """{processor: set of Features} from /proc/cpuinfo."""
    cpus, current = {}, None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "processor":
            current = int(value)
        elif key.strip() == "Features" and current is not None:
            cpus[current] = set(value.split())
    return cpus


class CPUModelTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_qemu_and_host_tool()

    def boot(self, cpu):
        directory = short_temp_dir(f"vmm-cpu-{cpu}-", self)
        disk, size = build_program(directory)
        kernel, initrd = guest_paths()
        system = write_system(directory / "cpu.toml", {"cpu": cpu, "gic": int(TEST_GIC or 2)}, [(
            {"kernel": str(kernel), "initrd": str(initrd), "vcpus": 2},
            {"block": [{"file": str(disk), "readonly": True}]})], comment=f"test_cpus: the guest on -cpu {cpu}")
        console = boot_to_prompt(self, system, directory / "out", f"cpu-{cpu}", BOOT_TIMEOUT, cpu=False)
        console.run(f"head -c {size} /dev/vda > /tmp/cpu_state && chmod +x /tmp/cpu_state", COMMAND_TIMEOUT,
                    check=True)
        return console

    def check_model(self, cpu, expected, hidden):
        console = self.boot(cpu)
        with self.subTest("features"):
            cpus = cpu_features(console.run("cat /proc/cpuinfo", COMMAND_TIMEOUT))
            self.assertEqual(sorted(cpus), [0, 1], "two vCPUs")
            for n, features in cpus.items():
                self.assertLessEqual(set(expected), features, f"CPU {n} lacks features the VMM gives")
                self.assertFalse(set(hidden) & features, f"CPU {n} shows features the VMM hides")
        features = cpus.get(0, set())
        with self.subTest("programs"):
            console.run(f"dd if=/dev/urandom of=/tmp/work bs=1M count={WORK_MIB} 2>/dev/null", COMMAND_TIMEOUT,
                        check=True)
            plain = console.run("md5sum < /tmp/work", COMMAND_TIMEOUT, check=True).split()[0]
            through = console.run("gzip -c /tmp/work | gzip -dc | md5sum", COMMAND_TIMEOUT, check=True).split()[0]
            self.assertRegex(plain, r"^[0-9a-f]{32}$")
            self.assertEqual(through, plain, "gzip | gunzip changed the data")
        if "sve" in features:
            with self.subTest("sve"):
                largest = console.run("cat /proc/sys/abi/sve_default_vector_length; "
                                      "echo -1 > /proc/sys/abi/sve_default_vector_length; "
                                      "cat /proc/sys/abi/sve_default_vector_length", COMMAND_TIMEOUT).split()
                runs = " & ".join([f"/tmp/cpu_state sve {HOLD_SECONDS}"] * 3)
                output = console.run(f"{runs}; wait", COMMAND_TIMEOUT)
                results = [line for line in output.splitlines() if line.startswith("sve ")]
                self.assertEqual(len(results), 3, output)
                for line in results:
                    self.assertEqual(line, f"sve ok vl={largest[-1]}", output)
        if "paca" in features:
            with self.subTest("pac"):
                output = console.run(f"/tmp/cpu_state pac {HOLD_SECONDS}; echo status=$?", COMMAND_TIMEOUT)
                self.assertIn("pac ok", output)
                self.assertIn("status=0", output)
        with self.subTest("poweroff"):
            console.sendline("poweroff -f")
            self.assertEqual(console.wait_exit(120.0), 0)

    def test_max(self):
        self.check_model("max", expected={"fp", "asimd", "sve", "sve2", "paca", "pacg", "bti", "atomics"},
                         hidden={"mte", "mte3", "sme"})

    def test_neoverse_n1(self):
        self.check_model("neoverse-n1", expected={"fp", "asimd", "atomics", "asimddp"}, hidden={"sve", "paca"})

    def test_cortex_a76(self):
        self.check_model("cortex-a76", expected={"fp", "asimd", "atomics", "asimddp"}, hidden={"sve", "paca"})


if __name__ == "__main__":
    unittest.main()
