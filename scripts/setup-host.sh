#!/bin/sh
# Host setup for vmm: installs the Debian packages the build, the guest image
# script and the QEMU integration tests need (QEMU for AArch64 and its option
# ROMs, dtc, cpio, depmod, python3, make, compressors), and socat and curl for
# the README's console and network examples. Debian's own archive only; no
# other sources. Idempotent: when every package is already installed it
# touches nothing, and `apt-get update` runs only when something has to be
# installed. When another apt or dpkg holds the lock (unattended upgrades on a
# fresh machine), it waits and says so (scripts/lib/apt.sh). Run as root on
# Debian 12 (bookworm). The guest image itself is built by scripts/build-guest.sh.
#
# Env: SETUP_HOST_PACKAGES  the packages to ensure (default: the list below)
#      APT_LOCK_WAIT        seconds to wait for apt's lock (default 1200)
set -eu
. "$(dirname "$0")/lib/apt.sh"

# qemu-system-arm ships qemu-system-aarch64; ipxe-qemu its efi-virtio.rom, which
# the virt board loads for its default network card (QEMU will not start
# without it); kmod ships depmod, which build-guest.sh uses to index the
# guest's kernel modules.
PACKAGES=${SETUP_HOST_PACKAGES:-"qemu-system-arm ipxe-qemu device-tree-compiler cpio kmod python3 make gzip xz-utils socat curl"}

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

echo "setup-host: installing$missing from Debian's archive"
export DEBIAN_FRONTEND=noninteractive
APT_LOG=$(mktemp)
trap 'rm -f "$APT_LOG"' EXIT
# Quiet: -qq hides progress; apt's output is kept and shown only on failure, so
# a good run prints a few lines. A missing package may be absent from stale
# lists, so refresh them first.
echo "setup-host: apt-get update"
if ! apt_get update -qq; then
    cat "$APT_LOG" >&2; echo "setup-host: apt-get update failed" >&2; exit 1
fi
echo "setup-host: apt-get install (about a minute on a fresh machine)"
# shellcheck disable=SC2086  # word splitting of the package list is intended
if ! apt_get install -y -qq --no-install-recommends $missing; then
    cat "$APT_LOG" >&2; echo "setup-host: apt-get install failed:$missing" >&2; exit 1
fi
echo "setup-host: done"
