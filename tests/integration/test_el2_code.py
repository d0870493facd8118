"""What the native platform's EL2 code may not do, read off its objects: touch a FP/SIMD register.

The guest's FP/SIMD registers (q0-q31, FPSR, FPCR) are not saved or restored at an exit (start.S):
they stay in the hardware, which is right only while nothing at EL2 uses them. The Makefile compiles
the Swift code (`-Xcc -mgeneral-regs-only`) and the C code (`-mgeneral-regs-only`) so that the
compiler never picks them, e.g. for a 16-byte copy; this test disassembles every object that `vmm
build` links into a native image (build/native/*.o, which `make vmm` builds) with the toolchain's
llvm-objdump and fails on any instruction with a FP/SIMD register operand (b/h/s/d/q/v n), or that
reads or writes FPSR/FPCR, naming the object, the function and the instruction. A guest that saw
its registers change under it at an exit would compute wrong results with no report at all.
"""

import re
import shutil
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import REPO_ROOT  # noqa: E402

NATIVE = REPO_ROOT / "build/native"
OBJECTS = ("start.o", "board.o", "runtime.o", "VMMCore.o", "Platform.o")
# An operand that is a FP/SIMD register: v0.16b, q3, d7, s0, h1, b2, {v0.4s, v1.4s}, v1.s[2].
SIMD_OPERAND = re.compile(r"(?:^|[\s,{])(?:[bhsdqv](?:[12]?[0-9]|3[01]))(?:\.[0-9]*[bhsdq])?(?=$|[\s,}\[])")
FP_SYSTEM_REGISTER = re.compile(r"\b(?:fpsr|fpcr)\b", re.IGNORECASE)


def objdump():
    """The toolchain's llvm-objdump (beside swiftc, as the Makefile finds clang), else one on PATH."""
    swiftc = shutil.which("swiftc")
    if swiftc and (Path(swiftc).parent / "llvm-objdump").is_file():
        return str(Path(swiftc).parent / "llvm-objdump")
    return shutil.which("llvm-objdump")


def simd_uses(path, tool):
    """[(function, instruction)] of every instruction in `path` with a FP/SIMD operand."""
    listing = subprocess.run([tool, "-d", "--no-show-raw-insn", str(path)], capture_output=True, text=True,
                             timeout=300, check=True).stdout
    uses, function = [], "?"
    for line in listing.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if header:
            function = header.group(1)
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not re.match(r"^\s*[0-9a-f]+:\s*$", parts[0]):
            continue
        instruction = " ".join(part.strip() for part in parts[1:]).split("//")[0].strip()
        operands = instruction.partition(" ")[2]
        if SIMD_OPERAND.search(operands) or FP_SYSTEM_REGISTER.search(operands):
            uses.append((function, instruction))
    return uses


class EL2CodeTests(unittest.TestCase):
    def test_no_fp_or_simd_register_at_el2(self):
        tool = objdump()
        if tool is None:
            raise AssertionError("no llvm-objdump beside swiftc nor on PATH (the Swift toolchain has one)")
        for name in OBJECTS:
            path = NATIVE / name
            with self.subTest(object=name):
                self.assertTrue(path.is_file(), f"{path} missing: run `make vmm` first")
                uses = simd_uses(path, tool)
                shown = "\n".join(f"  {function}: {instruction}" for function, instruction in uses[:10])
                self.assertEqual(uses, [], f"{path.relative_to(REPO_ROOT)} uses FP/SIMD registers at EL2 "
                                           f"({len(uses)} instructions), which would clobber the guest's:\n{shown}")

    def test_the_check_sees_simd_registers(self):
        # The pattern against instructions a compiler emits, so that a silent regex cannot pass.
        for operands in ("q0, q1, [x1, #0x20]", "v0.16b, #0x0", "d7, [sp, #8]", "{v0.4s, v1.4s}, [x0]",
                         "x2, fpsr", "FPCR, x2", "s31, w3", "v1.s[2], w0"):
            self.assertTrue(SIMD_OPERAND.search(operands) or FP_SYSTEM_REGISTER.search(operands), operands)
        for operands in ("x0, x1, #0x10", "w8, [x29, #-0x30]", "x9, #0x7fffffffffffffff", "sp, sp, #0xe0",
                         "x1, 0x4021c6f0 <$e7VMMCore4VGICV9isEnabled+0x10>", "w9, #0x1b"):
            self.assertFalse(SIMD_OPERAND.search(operands) or FP_SYSTEM_REGISTER.search(operands), operands)


if __name__ == "__main__":
    unittest.main()
