#!/bin/sh
# The first thing `make run`, `make test` and the builds do: is a Swift 6 toolchain with Embedded
# Swift on PATH? The VMM's core and platforms are compiled with `swiftc -target aarch64-none-none-elf
# -enable-experimental-feature Embedded`, linked with the same toolchain's clang and ld.lld, and the
# host tool is built with its `swift build`. Debian does not package Swift, so this cannot be
# installed for the user: on failure it prints one line naming what is missing and where
# toolchains come from, and exits 1 before anything is installed or built. Quiet when all is well.
set -u

where="Swift toolchains for Linux come from swift.org/install (a release tarball; put its usr/bin on PATH)"
fail() { echo "vmm: $1; $where" >&2; exit 1; }

swiftc=$(command -v swiftc 2>/dev/null) || fail "no Swift toolchain on PATH (swiftc not found): vmm needs Swift 6.x with Embedded Swift"
bin=$(dirname "$swiftc")
version=$("$swiftc" --version 2>/dev/null | sed -n 's/.*Swift version \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1.\2/p' | head -n 1)
case "$version" in
    6.*|[7-9].*) ;;
    "") fail "'$swiftc --version' names no Swift version: vmm needs Swift 6.x with Embedded Swift" ;;
    *) fail "$swiftc is Swift $version: vmm needs Swift 6.x with Embedded Swift" ;;
esac
for tool in swift clang ld.lld; do
    [ -x "$bin/$tool" ] || fail "the Swift toolchain in $bin has no $tool (vmm links with the toolchain's own clang and ld.lld)"
done

# Embedded Swift for bare-metal AArch64: compile one line the way the Makefile compiles the core.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo 'public func vmmToolchainProbe(_ x: UInt64) -> UInt64 { x &+ 1 }' >"$scratch/probe.swift"
if ! "$swiftc" -target aarch64-none-none-elf -enable-experimental-feature Embedded -wmo -parse-as-library \
        -c "$scratch/probe.swift" -o "$scratch/probe.o" >"$scratch/log" 2>&1; then
    fail "$swiftc (Swift $version) cannot compile Embedded Swift for aarch64-none-none-elf ($(head -n 1 "$scratch/log"))"
fi
