"""Expect-style driver for a guest's serial console (python3 stdlib only).

It owns one QEMU process (or any command that puts a console on stdio, such as
QEMU with `-nographic`), everything it prints, and the conversation with the
guest shell built by scripts/build-guest.sh: wait for a pattern, type a line,
run a command and collect its output, wait for the process to exit. What to
boot and what to check is the tests' business.

Every byte read is kept in memory and appended to a log under build/logs/
(or $VMM_LOG_DIR); any failure raises SerialConsoleError carrying the last
~60 lines of that log, so a failed test shows what the guest was doing.
Reads are non-blocking (select + os.read); no pexpect.

Also what the tests and benchmarks that boot an example share: a copy of the example's system file
in a short temporary directory (read_example, vm_copy, move_devices, write_system), `vmm run` of it
(start_vmm_run), and the skip when QEMU is missing (require_qemu_and_host_tool).
"""

import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import tomllib
import unittest
from pathlib import Path

# PS1 of the guest shell (scripts/build-guest.sh). busybox line editing may
# follow it with a cursor-position query (ESC [6n), so it is not anchored.
PROMPT = rb"guest# "
INIT_DONE = rb"vmm-guest: init done"

REPO_ROOT = Path(__file__).resolve().parents[2]
# The host tool as `make host` builds it; the tests run it the README's way.
HOST_VMM = REPO_ROOT / ".build/debug/vmm"
LOG_TAIL_LINES = 60

# The board the native tests boot: the GIC version and QEMU's CPU model, $VMM_TEST_GIC (2 or 3) and
# $VMM_TEST_CPU (cortex-a53, max, ...). Unset, the system files' own (GICv2 and a Cortex-A53 for every
# example). `make integration-test` runs the whole suite on the default board, then the native suite
# again on each other cell of its matrix.
TEST_GIC = os.environ.get("VMM_TEST_GIC", "")
TEST_CPU = os.environ.get("VMM_TEST_CPU", "")


def qemu_cpu(model):
    """QEMU's -cpu for a CPU model of the system file (SystemConfiguration.CPU.qemuName)."""
    return "max,pauth-impdef=on" if model == "max" else model


def board_arguments():
    """QEMU's -machine and -cpu for a test that starts QEMU itself: the board of $VMM_TEST_GIC and
    $VMM_TEST_CPU, by default GICv2 and a Cortex-A53."""
    return ["-machine", f"virt,virtualization=on,gic-version={TEST_GIC or 2}", "-cpu", qemu_cpu(TEST_CPU or "cortex-a53")]


def board_options(cpu=True):
    """`vmm check/build/run` options that put a system on the board of $VMM_TEST_GIC and $VMM_TEST_CPU
    (none when they are unset); `cpu` False leaves the file's CPU alone."""
    options = ["--gic", TEST_GIC] if TEST_GIC else []
    return options + (["--cpu", TEST_CPU] if cpu and TEST_CPU else [])


def built_image(system):
    """The VMM image `make vmm` built for examples/SYSTEM.toml on the test board's GIC: build/SYSTEM/vmm.elf,
    or build/gic3/SYSTEM/vmm.elf for $VMM_TEST_GIC=3 (the image carries the guest's GIC; not its CPU)."""
    return REPO_ROOT / "build" / (f"gic{TEST_GIC}" if TEST_GIC and TEST_GIC != "2" else "") / system / "vmm.elf"

# CSI sequences (ESC [ ... final byte) and lone ESC-x pairs from line editing.
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a forwarded guest port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def guest_paths():
    """(kernel, initrd) of the guest: $VMM_GUEST_KERNEL and $VMM_GUEST_INITRD,
    by default build/guest/Image and build/guest/initramfs.cpio.gz of the repo."""
    kernel = Path(os.environ.get("VMM_GUEST_KERNEL", "build/guest/Image"))
    initrd = Path(os.environ.get("VMM_GUEST_INITRD", "build/guest/initramfs.cpio.gz"))
    return tuple(p if p.is_absolute() else REPO_ROOT / p for p in (kernel, initrd))


def plain_qemu_command(memory="1G", append=""):
    """The baseline: the guest on QEMU's virt board without the VMM (the test board: GICv2 and a
    Cortex-A53 by default; serial on stdio). $VMM_QEMU overrides the QEMU binary."""
    kernel, initrd = guest_paths()
    cmdline = "console=ttyAMA0 rdinit=/init" + (" " + append if append else "")
    return [os.environ.get("VMM_QEMU", "qemu-system-aarch64"), *board_arguments(),
            "-m", memory, "-nographic", "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", cmdline]


def arch_timer_count(interrupts: str) -> int:
    """Sum over CPUs of the arch_timer line of /proc/interrupts."""
    for line in interrupts.splitlines():
        if "arch_timer" in line:
            # "11:  606  GICv2  30 Level  arch_timer": the per-CPU counts are the
            # numbers between the IRQ label and the controller's name.
            total = 0
            for field in line.split()[1:]:
                if not field.isdigit():
                    return total
                total += int(field)
    raise AssertionError(f"no arch_timer line in /proc/interrupts:\n{interrupts}")


def assert_guest_seeded(test, console):
    """The guest's crng was ready before its first interrupt, so from the seed the VMM put in its
    /chosen/rng-seed (GuestEntropy), and the VMM mixed in the seed QEMU gave for this boot. Without a
    seed Linux would print "crng init done" only after minutes of interrupts, if at all."""
    ready = console.run("dmesg | grep 'random: crng init done'")
    test.assertRegex(ready, r"\[\s*0\.000000\] random: crng init done",
                     "the guest's crng was not seeded at boot (no /chosen/rng-seed from the VMM?)")
    test.assertRegex(console.log, rb"vmm: (each guest's|the guest's) seed is mixed with the board's for this boot",
                     "the VMM did not find QEMU's seed for this boot")


def host_sends(port, nbytes, console, timeout):
    """Host seconds to send `nbytes` to 127.0.0.1:`port` (a port forwarded to a guest whose nc listens
    and writes what it gets to a file), from connect until the guest closes the connection after
    the host shut its sending side down. `console` (the guest's) reports failures: a connection error,
    or bytes the guest sent back."""
    chunk = b"\xa5" * (1 << 20)
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sent = 0
            while sent < nbytes:
                piece = chunk[:min(len(chunk), nbytes - sent)]
                sock.sendall(piece)
                sent += len(piece)
            sock.shutdown(socket.SHUT_WR)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                console.fail(f"the guest sent {len(data)} unexpected bytes")
        return time.monotonic() - started
    except OSError as err:
        console.fail(f"TCP transfer to 127.0.0.1:{port} failed after {time.monotonic() - started:.1f}s: {err!r}")


class SerialConsoleError(AssertionError):
    """A console expectation failed; the message ends with the log's tail.

    An AssertionError so unittest reports it as a test failure, not an error
    of the harness.
    """


def fetch(url, console, timeout=60.0) -> bytes:
    """The body of `url`, fetched from the host; retried while the guest's server comes up (its
    network may still be configuring). Fails the test through `console` when it never answers."""
    import urllib.request
    deadline, last_error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return reply.read()
        except (OSError, ConnectionError) as error:
            last_error = error
            time.sleep(1)
    console.fail(f"could not fetch {url} from the guest: {last_error}")


def read_until(host, text: bytes, console, what) -> bytes:
    """Reads the connected socket `host` until `text` has arrived; fails the test when it times out."""
    received = b""
    while text not in received:
        try:
            chunk = host.recv(65536)
        except socket.timeout:
            console.fail(f"{what} got {received!r}, not {text!r}")
        if not chunk:
            break
        received += chunk
    return received


def console_round_trip(console, host, device, label):
    """Text crosses the guest's console `device` (e.g. /dev/hvc0) and the host's socket `host` both
    ways; returns (what the host received, what the guest read) for the caller's assertions."""
    console.run(f"echo guest-to-host-{label} > {device}", check=True)
    received = read_until(host, f"guest-to-host-{label}".encode(), console, f"the socket of {device}")
    console.sendline(f"head -n 1 {device} > /tmp/from-host-{label} &")
    console.wait_for_prompt(30)
    time.sleep(1)
    host.sendall(f"host-to-guest-{label}\n".encode())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        read = console.run(f"cat /tmp/from-host-{label}")
        if read == f"host-to-guest-{label}":
            break
        time.sleep(1)
    return received, read


def strip_ansi(data: bytes) -> bytes:
    return _ANSI.sub(b"", data)


def _compile(pattern):
    if isinstance(pattern, re.Pattern):
        if isinstance(pattern.pattern, str):
            raise TypeError("patterns match bytes: compile them from bytes")
        return pattern
    if isinstance(pattern, str):
        pattern = pattern.encode()
    return re.compile(pattern)


class _ConsoleReader:
    """What SerialConsole and SocketConsole share: every byte read is kept (`log`) and written to a log
    file under build/logs/ (or $VMM_LOG_DIR); `expect` searches what is not consumed yet. A subclass
    reads with `_read_some(deadline)` (False on timeout or end, `_eof` set at the end), hands what it
    read to `_keep`, and names itself in failures (`fail`, `_ended`, `_where`)."""

    _where = ""                 # appended to a timeout message, e.g. " on VM b's console"

    def _open_log(self, name, log_dir, first_line):
        self._buf = bytearray()
        self._pos = 0           # expect() searches from here: earlier bytes are consumed
        self._eof = False
        self._runs = 0
        self.last_status = None
        log_dir = Path(log_dir or os.environ.get("VMM_LOG_DIR") or REPO_ROOT / "build" / "logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_path = log_dir / f"{name}-{stamp}-{os.getpid()}-{id(self) & 0xffff:04x}.log"
        self._log = open(self.log_path, "wb")
        self._log.write(first_line.encode() + b"\n")

    @property
    def log(self) -> bytes:
        return bytes(self._buf)

    def _keep(self, data):
        self._buf += data
        if not self._log.closed:
            self._log.write(data)
            self._log.flush()

    def tail(self, lines=LOG_TAIL_LINES) -> str:
        text = strip_ansi(bytes(self._buf)).decode("utf-8", "replace").replace("\r", "")
        return "\n".join(text.split("\n")[-lines:])

    def _ended(self) -> str:
        """Why no more output comes, for a failure message."""
        return "output ended"

    def expect(self, pattern, timeout=30.0):
        """Wait for `pattern` (bytes, str or compiled bytes regex) in output not
        yet consumed; consume through the match and return the re.Match."""
        regex = _compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self._buf, self._pos)
            if match:
                self._pos = match.end()
                return match
            if not self._read_some(deadline):
                if self._eof:
                    self.fail(f"{self._ended()} before {regex.pattern!r} appeared")
                if time.monotonic() >= deadline:
                    self.fail(f"timed out after {timeout:.1f}s waiting for {regex.pattern!r}{self._where}")

    def wait_for_prompt(self, timeout=60.0):
        return self.expect(self.prompt, timeout)

    _marker = "__END_"          # the end marker `run` echoes after a command
    _in = ""                    # names the console in a failed command's message, e.g. " in VM b"

    def run(self, command, timeout=30.0, check=False, raw=False) -> str:
        """Run one shell command line and return what it printed (CR removed,
        escape sequences removed, without the final newline). Its exit status
        is left in `last_status`; with check=True a non-zero status fails.
        `raw`: the subclass's way of writing the line at once (`_type`).

        The command is followed on the same line by `echo <marker><n>_$?__`: the
        echoed command line shows `$?` literally, so only the real output
        matches the marker regex, whatever the command prints. A command must
        not end in a comment or read the console's stdin.
        """
        self._runs += 1
        n = self._runs
        literal = f"{self._marker}{n}_$?__"
        stripped = command.rstrip()
        # "cmd &; echo" is a syntax error; "cmd & echo" is what is meant.
        sep = " " if stripped.endswith("&") and not stripped.endswith("&&") else "; "
        start = len(self._buf)
        self._type(f"{stripped}{sep}echo {literal}\n", raw)
        marker = self.expect(re.compile(rb"%s%d_(\d+)__" % (self._marker.encode(), n)), timeout)
        self.last_status = int(marker.group(1))
        text = strip_ansi(bytes(self._buf[start:marker.start()])).decode("utf-8", "replace")
        # Drop the shell's echo of the command line: everything through the
        # line that carries the literal marker.
        at = text.find(literal)
        at = text.find("\n", at if at >= 0 else 0)
        output = text[at + 1:] if at >= 0 else ""
        output = output.replace("\r", "").rstrip("\n")
        self.wait_for_prompt(timeout)
        if check and self.last_status != 0:
            self.fail(f"command {command!r}{self._in} exited with status {self.last_status}:\n{output}")
        return output


class SerialConsole(_ConsoleReader):
    """One console process and its log.

    `argv` is the command (list of strings), run in `cwd` (default: ours).
    `name` labels the log file.
    The process starts in the constructor; `started_at` is time.monotonic()
    just before it was spawned, for boot-time measurements.
    """

    def __init__(self, argv, name="console", prompt=PROMPT, log_dir=None, env=None, cwd=None):
        self.argv = list(argv)
        self.prompt = _compile(prompt)
        self._open_log(name, log_dir, "$ " + " ".join(self.argv))
        self.started_at = time.monotonic()
        try:
            # stderr joins stdout: QEMU's own complaints belong in the same log.
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        except OSError as err:
            self._log.close()
            raise SerialConsoleError(f"cannot start {self.argv[0]}: {err}") from err
        os.set_blocking(self.proc.stdout.fileno(), False)

    # -- context manager: a test that fails midway must not leave QEMU running
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False

    # -- reading -----------------------------------------------------------
    def _read_some(self, deadline) -> bool:
        """Wait until `deadline` for output; False on timeout or end of file."""
        if self._eof or self.proc.stdout.closed:
            return False
        wait = max(0.0, deadline - time.monotonic())
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            return False
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            self._eof = True
            return False
        self._keep(data)
        return True

    def _ended(self) -> str:
        self.proc.wait()
        return "output ended"

    def fail(self, message):
        """Raise SerialConsoleError with `message` and the log's tail."""
        state = "running" if self.proc.poll() is None else f"exited with status {self.proc.returncode}"
        raise SerialConsoleError(
            f"{message}\n(process {state}; full log: {self.log_path})\n"
            f"--- last {LOG_TAIL_LINES} lines of the serial log ---\n{self.tail()}\n--- end ---")

    # -- writing -----------------------------------------------------------
    def send(self, text):
        """Type `text` (str or bytes) at the console, as is."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            self.fail(f"cannot send {data[:40]!r}: the console's input is closed")

    def sendline(self, line):
        self.send((line.encode() if isinstance(line, str) else bytes(line)) + b"\n")

    def _type(self, line, raw):
        self.send(line)         # a pipe takes the line at once anyway

    # -- ending ------------------------------------------------------------
    def wait_exit(self, timeout=30.0) -> int:
        """Wait for the process to exit (draining its output); return its status."""
        deadline = time.monotonic() + timeout
        while not self._eof and time.monotonic() < deadline:
            self._read_some(deadline)
        try:
            status = self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.fail(f"process still running {timeout:.1f}s later")
        self._close_log()
        return status

    def kill(self):
        """Stop the process (its whole session) if it still runs; idempotent."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        deadline = time.monotonic() + 1.0
        while not self._eof and self._read_some(deadline):
            pass
        self._close_log()

    def _close_log(self):
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        if not self._log.closed:
            self._log.close()


# -- `vmm run` of a system file a test or benchmark wrote ------------------------------------------

def require_qemu_and_host_tool():
    """For the setUpClass of tests that boot through `vmm run`: returns nothing when both are there;
    raises unittest.SkipTest without QEMU (qemu-system-aarch64 on PATH, or $VMM_QEMU), which a host
    may lack, and AssertionError without the host tool, which `make vmm` builds first (so a missing
    one is a broken build, not a reason to skip)."""
    qemu = os.environ.get("VMM_QEMU", "qemu-system-aarch64")
    if not shutil.which(qemu):
        raise unittest.SkipTest(f"no {qemu} on PATH" + (" ($VMM_QEMU)" if "VMM_QEMU" in os.environ else ""))
    if not HOST_VMM.is_file():
        raise AssertionError(f"{HOST_VMM} missing: run `make vmm` first")


def short_temp_dir(prefix, test=None):
    """A new, empty directory for one boot's files, as a Path: the system file, the disks, the console
    and serial sockets and `vmm run`'s output. Made by tempfile.mkdtemp (under /tmp or $TMPDIR, named
    `prefix` and a few random characters) and not under build/ of the repo, to keep it short: a unix
    socket path has at most 107 bytes. With `test` (a unittest.TestCase) it is removed when the test
    ends (addCleanup); without, the caller removes it (shutil.rmtree)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if test is not None:
        test.addCleanup(shutil.rmtree, directory, ignore_errors=True)
    return directory


def vmm_build(system, output, *options, error=SerialConsoleError, timeout=300.0):
    """`vmm build SYSTEM --output OUTPUT OPTIONS...` in the repo's root, as the benchmarks build their
    images; raises `error` with the tool's own message when it cannot run, fails or takes longer than
    `timeout` seconds (None: no limit)."""
    argv = [str(HOST_VMM), "build", str(system), "--output", str(output), *board_options(), *options]
    try:
        result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except OSError as err:
        raise error(f"cannot run {argv[0]}: {err} (build it with `make host`)") from err
    except subprocess.TimeoutExpired as err:
        raise error(f"{' '.join(argv)} did not finish in {timeout:.0f}s") from err
    if result.returncode != 0:
        raise error(f"{' '.join(argv)} failed (status {result.returncode}):\n"
                    f"{result.stdout}{result.stderr}".rstrip())


def vmm_run_argv(system, output, *options, cpu=True):
    """The argv of `vmm run SYSTEM --output OUTPUT OPTIONS... [--qemu $VMM_QEMU]`: the host tool run
    the README's way, its build files in `output` (not build/<name>/ of the repo, which the user's own
    runs use), on the test board (board_options; `cpu` False keeps the file's CPU), with the QEMU
    binary $VMM_QEMU names when it is set (else the tool's default, qemu-system-aarch64 on PATH)."""
    argv = [str(HOST_VMM), "run", str(system), "--output", str(output), *board_options(cpu), *options]
    if os.environ.get("VMM_QEMU"):
        argv += ["--qemu", os.environ["VMM_QEMU"]]
    return argv


def require_microkit_board():
    """For a Microkit test class's setUpClass: skipped without MICROKIT_SDK, and on the test matrix's
    other boards (the matrix is the native platform's); then require_qemu_and_host_tool."""
    if not os.environ.get("MICROKIT_SDK"):
        raise unittest.SkipTest("needs a Microkit SDK: run with MICROKIT_SDK=/path/to/sdk")
    if TEST_GIC or TEST_CPU:
        raise unittest.SkipTest("the board matrix is the native platform's; Microkit runs GICv2 and a Cortex-A53")
    require_qemu_and_host_tool()


def start_vmm_run(system, output, name, *options, cpu=True, env=None):
    """A SerialConsole (its log named `name`) on `vmm run` of `system` (vmm_run_argv), started in the
    repo's root with our environment and `env` over it: the board's serial line, where `vmm run`
    reports its build and then, once it has replaced itself with QEMU, the first VM's console and the
    VMM's messages. The caller kills it when done."""
    return SerialConsole(vmm_run_argv(system, output, *options, cpu=cpu), name=name, env={**os.environ, **(env or {})},
                         cwd=REPO_ROOT)


def boot_to_prompt(test, system, output, name, timeout, cpu=True):
    """`vmm run` of `system` (start_vmm_run), killed when `test` (a unittest.TestCase) ends, waited on
    until the first VM's init is done and its shell prompts (each within `timeout` seconds)."""
    console = start_vmm_run(system, output, name, cpu=cpu)
    test.addCleanup(console.kill)
    console.expect(INIT_DONE, timeout)
    console.wait_for_prompt(timeout)
    return console


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)      # a TOML basic string for what system files hold
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_table(header, table):
    """The lines of one TOML table: `header`, then `key = value` for each entry, then a blank line; for
    the temporary copies of system files that tests and benchmarks write (booleans, integers, strings
    and lists of them)."""
    return [header] + [f"{key} = {_toml_value(value)}" for key, value in table.items()] + [""]


# -- copies of an example system file, rewritten for a test or benchmark -----------------------------
# A test or benchmark boots an example (examples/*.toml) as the user would, but from a copy in a
# temporary directory: kernel and initrd absolute, the disks and sockets there, every forwarded host
# port a free one; so it never touches the example's build folder nor its host ports (8080), and two
# runs do not collide. Everything else (the [system] table, vCPUs, RAM, MACs, networks) is the example's.

DISK_SIZE = "64M"             # a copied disk the example gives no size (the build makes the file)


class ExampleError(SerialConsoleError):
    """An example system file is not the system a test or benchmark was written for: missing, on
    another platform, other VMs or devices. A SerialConsoleError, so that unittest reports it as a
    failure and the benchmarks' handling of a failed boot covers it; nothing ran, so no log's tail."""

    def __init__(self, example, message):
        super().__init__(f"{Path(example).relative_to(REPO_ROOT)}: {message}")


def read_example(example, purpose, platform="native"):
    """The tables of the system file `example` (tomllib), for a caller that copies it: ExampleError
    when it is missing (`purpose` says why the caller needs that very file) or when its platform is
    not `platform`, the platform the caller boots (by default "native")."""
    if not example.is_file():
        raise ExampleError(example, f"missing: {purpose}")
    data = tomllib.loads(example.read_text())
    found = data.get("system", {}).get("platform", "native")
    if found != platform:
        raise ExampleError(example, f"expected platform \"{platform}\", found {found!r}")
    return data


def vm_copy(vm, example):
    """(scalars, devices): a copy of the [[vm]] table `vm` of `example` split in two, for the caller to
    rewrite and write_system to write. `scalars`: its plain keys (name, kernel, ram, vcpus, ...) with
    kernel and initrd made absolute (the example gives them relative to its own folder, the copy lives
    elsewhere). `devices`: its device tables by kind, in the file's order ({"block": [...], "net":
    [...], "console": [...]} for [[vm.block]], [[vm.net]], [[vm.console]]; a key whose value is a
    list of tables)."""
    scalars = dict(vm)
    devices = {key: [dict(t) for t in scalars.pop(key)] for key in list(scalars)
               if isinstance(scalars[key], list) and scalars[key] and all(isinstance(t, dict) for t in scalars[key])}
    for key in ("kernel", "initrd"):
        if key in scalars:
            scalars[key] = str((example.parent / scalars[key]).resolve())
    return scalars, devices


def move_devices(devices, directory, example, stem=""):
    """Rewrites `devices` (of vm_copy) in place for a copy in `directory`: disk n on
    directory/{stem}disk{n}.img (the build makes it, the example's size or DISK_SIZE), console n's
    socket directory/{stem}hvc{n}.sock, and every forwarded host port ("PROTOCOL:HOST:GUEST" in a
    [[vm.net]] table) a free one. `stem` tells the VMs of one system apart (e.g. "a-"). Returns (the
    disks' paths, in order; the forwards, as (index of the [[vm.net]] table, protocol, free host
    port, guest port)): what the caller reads, checks or connects to. ExampleError when a forward is
    not of that form."""
    disks = [directory / f"{stem}disk{n}.img" for n in range(len(devices.get("block", [])))]
    if "block" in devices:
        devices["block"] = [{**t, "file": str(disk), "size": t.get("size", DISK_SIZE)}
                            for disk, t in zip(disks, devices["block"])]
    if "console" in devices:
        devices["console"] = [{**t, "socket": str(directory / f"{stem}hvc{n}.sock")}
                              for n, t in enumerate(devices["console"])]
    forwards = []
    for index, table in enumerate(devices.get("net", [])):
        if "forward" not in table:
            continue
        rewritten = []
        for forward in table["forward"]:
            parts = forward.split(":")
            if len(parts) != 3 or not parts[2].isdigit():
                raise ExampleError(example, f"forward {forward!r} is not \"PROTOCOL:HOSTPORT:GUESTPORT\"")
            port = free_port()
            forwards.append((index, parts[0], port, int(parts[2])))
            rewritten.append(f"{parts[0]}:{port}:{parts[2]}")
        table["forward"] = rewritten
    return disks, forwards


def write_system(path, system, vms, comment=None):
    """Writes the system file `path` and returns it (for `vmm run`): the line `comment` (a TOML
    comment, saying where the copy comes from), the [system] table `system` (none when None), then
    each VM of `vms`, a (scalars, devices) pair as vm_copy gives it, as its [[vm]] table followed by
    its device tables."""
    lines = [f"# {comment}", ""] if comment else []
    lines += toml_table("[system]", system) if system is not None else []
    for scalars, devices in vms:
        lines += toml_table("[[vm]]", scalars)
        for kind, tables in devices.items():
            for table in tables:
                lines += toml_table(f"[[vm.{kind}]]", table)
    path.write_text("\n".join(lines))
    return path


# A VM's emulated PL011 on a unix socket (SocketConsole): typed 16 bytes at a time, each piece after
# the echo of the one before (its receive FIFO holds 32), a piece's echo awaited this long.
TYPE_CHUNK = 16
ECHO_WAIT = 5.0
SOCKET_CONNECT_TIMEOUT = 60.0   # the socket appears when QEMU starts

# -- a later VM's console: a unix socket ----------------------------------------------------------

class SocketConsole(_ConsoleReader):
    """VM b's serial console through the unix socket QEMU serves (server=on,wait=off: bytes sent while
    no one is connected are lost, so connect early). The same reading and marker technique as
    SerialConsole: every byte is kept and logged under build/logs/ (or $VMM_LOG_DIR); `run` follows the
    command with `echo __B_END_<n>_$?__`, whose echo shows `$?` literally, so only the command's real
    output matches the marker. A failure raises SerialConsoleError with the tail of this console's log
    and of the board's line (`board`, the SerialConsole of `vmm run`)."""

    def __init__(self, path, board, name="console-b", prompt=PROMPT, log_dir=None):
        self.path = str(path)
        self.board = board
        self.prompt = _compile(prompt)
        self.sock = None
        self._open_log(name, log_dir, f"$ connect {self.path}")

    def connect(self, timeout=SOCKET_CONNECT_TIMEOUT):
        """Connect, retrying while QEMU has not created the socket yet (or `vmm run` is still starting it)."""
        deadline, last_error = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.board.proc.poll() is not None:
                self.fail(f"`vmm run` exited (status {self.board.proc.returncode}) before VM b's serial socket "
                          f"{self.path} accepted a connection")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError as error:
                sock.close()
                last_error = error
                time.sleep(0.05)
                continue
            self.sock = sock
            # Read all the time, not only while a test waits: QEMU drops a virtconsole's output when
            # the socket does not take it at once (hw/char/virtio-console.c flush_buf does not
            # throttle a console), and a socket that nobody reads fills after a few hundred small
            # writes. VM b's boot output was lost that way while the test waited for VM a's prompt.
            self._incoming = queue.Queue()
            threading.Thread(target=self._receive, args=(sock, self._incoming), daemon=True).start()
            return
        self.fail(f"could not connect to VM b's serial socket {self.path} in {timeout:.0f} s: {last_error}")

    @staticmethod
    def _receive(sock, incoming):
        """The reader thread: everything the socket delivers goes to `incoming`; b"" at its end."""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            incoming.put(data)
            if not data:
                return

    # -- reading -----------------------------------------------------------
    _where = " on VM b's console"
    _marker = "__B_END_"
    _in = " in VM b"

    def _ended(self) -> str:
        return "VM b's socket closed"

    def _read_some(self, deadline) -> bool:
        if self._eof or self.sock is None:
            return False
        try:
            data = self._incoming.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if not data:
            self._eof = True
            return False
        self._keep(data)
        return True

    def drain(self, seconds) -> bytes:
        """Everything that arrives in the next `seconds` (consumed)."""
        start = len(self._buf)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._read_some(deadline) and self._eof:
                break
        self._pos = len(self._buf)
        return bytes(self._buf[start:])

    def fail(self, message):
        state = "connected" if self.sock is not None and not self._eof else \
            ("closed by QEMU" if self._eof else "not connected")
        raise SerialConsoleError(
            f"{message}\n(VM b's socket {state}; its log: {self.log_path}; board's log: {self.board.log_path})\n"
            f"--- last {LOG_TAIL_LINES} lines of VM b's console ---\n{self.tail()}\n--- end ---\n"
            f"--- last {LOG_TAIL_LINES} lines of the board's serial line (VM a, VMM) ---\n{self.board.tail()}\n"
            f"--- end ---")

    # -- writing -----------------------------------------------------------
    def send_raw(self, text):
        """Write `text` to the socket at once, as `socat - UNIX-CONNECT:...` sends a typed line."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        if self.sock is None:
            self.fail(f"cannot send {data[:40]!r}: not connected")
        try:
            self.sock.sendall(data)
        except OSError as error:
            self.fail(f"cannot send {data[:40]!r} to VM b's socket: {error}")

    def send(self, text):
        """Type `text` TYPE_CHUNK bytes at a time, each piece after the guest echoed the one before (or
        ECHO_WAIT passed): the guest's PL011 has a receive FIFO of 32 bytes, and the VMM gives it only
        what fits (the rest of a longer write is lost; check_long_line is about that)."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        for at in range(0, len(data), TYPE_CHUNK):
            piece = data[at:at + TYPE_CHUNK]
            mark = len(self._buf)
            self.send_raw(piece)
            self._wait_echo(piece, mark)

    def _wait_echo(self, piece, mark):
        want = piece.replace(b"\r", b"")
        deadline = time.monotonic() + ECHO_WAIT
        while want not in strip_ansi(bytes(self._buf[mark:])).replace(b"\r", b""):
            if not self._read_some(deadline) and (self._eof or time.monotonic() >= deadline):
                return

    def sendline(self, line):
        self.send((line.encode() if isinstance(line, str) else bytes(line)) + b"\n")

    def _type(self, line, raw):
        """The line piece by piece (`send`), or with raw=True at once (`send_raw`)."""
        self.send_raw(line) if raw else self.send(line)

    def close(self):
        if self.sock is not None:
            if not self._eof:
                self.drain(0.2)
            try:
                self.sock.shutdown(socket.SHUT_RDWR)    # ends the reader thread's recv first
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        if not self._log.closed:
            self._log.close()
