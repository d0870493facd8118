"""Every system in examples/ that the native platform can run is booted to its shell through
`vmm run FILE` (the README's way), then powered off: QEMU must exit with status 0.
"""

import os
import sys
import tomllib
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serial_console import HOST_VMM, INIT_DONE, REPO_ROOT, SerialConsole  # noqa: E402



def native_examples():
    for path in sorted((REPO_ROOT / "examples").glob("*.toml")):
        platform = tomllib.loads(path.read_text()).get("system", {}).get("platform", "native")
        if platform == "native":
            yield path


class ExampleSystemTests(unittest.TestCase):
    def test_there_are_native_examples(self):
        self.assertGreaterEqual(len(list(native_examples())), 2)

    def test_each_native_example_boots_to_a_shell_through_vmm_run(self):
        for path in native_examples():
            with self.subTest(example=path.name):
                console = SerialConsole([str(HOST_VMM), "run", str(path.relative_to(REPO_ROOT))],
                                        name=f"example-{path.stem}", env={**os.environ})
                self.addCleanup(console.kill)
                console.expect(INIT_DONE, 240.0)
                console.wait_for_prompt(120.0)
                self.assertEqual(console.run("uname -m"), "aarch64")
                console.sendline("poweroff -f")
                self.assertEqual(console.wait_exit(60.0), 0)


if __name__ == "__main__":
    unittest.main()
