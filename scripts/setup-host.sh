#!/bin/sh
# Host setup for vmm: installs the Debian packages the build, the guest image
# script and the QEMU integration tests need (QEMU for AArch64, dtc, cpio,
# depmod, python3, make, compressors). Debian's own archive only; no other
# sources. Idempotent: when every package is already installed it touches
# nothing, and `apt-get update` runs only when something has to be installed.
# Run as root on Debian 12 (bookworm). The guest image itself is built by
# scripts/build-guest.sh.
set -eu

# qemu-system-arm ships qemu-system-aarch64; kmod ships depmod, which
# build-guest.sh uses to index the guest's kernel modules.
PACKAGES="qemu-system-arm device-tree-compiler cpio kmod python3 make gzip xz-utils"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host: must run as root (apt-get install)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "setup-host: all host packages present"
    exit 0
fi

echo "setup-host: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Quiet: -qq hides progress; errors still reach stderr and fail the script.
# A missing package may be absent from stale lists, so refresh them first.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Output is kept and shown only on failure, so a good run prints two lines.
if ! apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2; echo "setup-host: apt-get update failed" >&2; exit 1
fi
# shellcheck disable=SC2086  # word splitting of the package list is intended
if ! apt-get install -y -qq --no-install-recommends $missing >"$log" 2>&1; then
    cat "$log" >&2; echo "setup-host: apt-get install failed:$missing" >&2; exit 1
fi
echo "setup-host: done"
