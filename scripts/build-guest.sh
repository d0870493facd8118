#!/bin/sh
# Builds the Linux guest that the integration tests and benchmarks boot:
# OUTDIR/Image (uncompressed arm64 kernel) and OUTDIR/initramfs.cpio.gz (busybox
# plus the virtio modules), from Debian's own arm64 packages only: nothing is
# downloaded from anywhere but the host's Debian archive. It owns the guest's
# /init, inittab, shell prompt and the page /www serves; what the guest is used
# for is the tests' job.
#
# A lasting change to the host: the first run adds the arm64 architecture to
# dpkg (`dpkg --add-architecture arm64`) so that apt can download arm64
# packages; nothing arm64 is installed. Undo with `dpkg --remove-architecture arm64`.
#
# Usage: scripts/build-guest.sh [OUTDIR]        (default: build/guest in the repo)
# Env:   GUEST_REFRESH=1  run `apt-get update` even when the lists look complete,
#                         to pick up a newer kernel.
#
# Cache: the .debs and a stamp of the package versions (and of this script) stay
# in OUTDIR; an unchanged stamp with both outputs present means nothing to do.
# Runs as root without stdin (CI); root is needed only to add the arm64
# architecture and refresh apt's lists.
set -eu
. "$(dirname "$0")/lib/apt.sh"

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${1:-"$REPO/build/guest"}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

# Modules a later step needs: virtio-mmio transport and the devices the VMM
# offers. ext4 (which also serves ext2) is added only if this kernel builds it
# as a module. Dependencies come from depmod, never from a fixed order.
WANT_MODULES="virtio_mmio virtio_blk virtio_net virtio_console"
PROMPT='guest# '

say() { echo "guest: $*"; }
die() { echo "build-guest: error: $*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg dpkg-deb depmod cpio gzip; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || [ -x "/sbin/$tool" ] ||
        die "missing host tool '$tool'; run scripts/setup-host.sh"
done
PATH="$PATH:/usr/sbin:/sbin"

# One build at a time per OUTDIR: the tests and the lead may start it together.
exec 9>"$OUTDIR/.lock"
flock 9

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root (run as root or with sudo)"
}

apt_update() {
    need_root "apt-get update"
    say "refreshing apt lists"
    APT_LOG="$OUTDIR/apt-update.log" apt_get update -qq ||
        { cat "$OUTDIR/apt-update.log" >&2; die "apt-get update failed"; }
}

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    need_root "dpkg --add-architecture arm64"
    say "adding the arm64 architecture to dpkg (a lasting change of the host; nothing arm64 is installed)"
    dpkg --add-architecture arm64
    apt_update
elif [ "${GUEST_REFRESH:-0}" = 1 ]; then
    apt_update
fi

# The kernel is whatever linux-image-cloud-arm64 depends on now; the cloud
# flavour is small and has virtio, PL011 and ext4 (for ext2) built in. One
# apt-cache call answers everything (each call re-reads apt's lists: ~1 s);
# the metapackage pins the exact kernel version: "Depends: linux-image-X (= V)".
resolve() {
    INFO=$(apt-cache show --no-all-versions linux-image-cloud-arm64:arm64 busybox-static:arm64 \
        2>/dev/null || true)
    DEP=$(echo "$INFO" | awk '/^Package:/ { p = $2 } p == "linux-image-cloud-arm64" && /^Depends:/' |
        grep -o 'linux-image-[0-9][^ ,]*\( (= [^)]*)\)\{0,1\}' | head -n 1)
    KPKG=$(echo "$DEP" | cut -d' ' -f1)
    KVER_PKG=$(echo "$DEP" | sed -n 's/.*(= \(.*\))/\1/p')
    BBVER=$(echo "$INFO" | awk '/^Package:/ { p = $2 } p == "busybox-static" && /^Version:/ { print $2 }')
}
resolve
if [ -z "$KPKG" ] || [ -z "$BBVER" ]; then
    apt_update
    resolve
fi
[ -n "$KPKG" ] || die "cannot resolve linux-image-cloud-arm64:arm64 (is Debian main in apt's sources?)"
[ -n "$BBVER" ] || die "no candidate version for busybox-static:arm64"
if [ -z "$KVER_PKG" ]; then  # an unversioned dependency: take the candidate
    KVER_PKG=$(apt-cache policy "$KPKG:arm64" | sed -n 's/^ *Candidate: //p' | grep -v '(none)' || true)
    [ -n "$KVER_PKG" ] || die "no candidate version for $KPKG:arm64"
fi
KREL=${KPKG#linux-image-}

SELF_HASH=$(sha256sum "$0" | cut -d' ' -f1)
STAMP="$OUTDIR/versions.stamp"
STAMP_TEXT="kernel=$KPKG $KVER_PKG
busybox=busybox-static $BBVER
script=$SELF_HASH"

if [ -f "$STAMP" ] && [ -s "$OUTDIR/Image" ] && [ -s "$OUTDIR/initramfs.cpio.gz" ] &&
    [ "$(cat "$STAMP")" = "$STAMP_TEXT" ]; then
    say "guest image up to date ($KREL, busybox $BBVER)"
    exit 0
fi

# Keep one .deb per package, named by apt; fetch only when the version moved.
DEBS="$OUTDIR/debs"
mkdir -p "$DEBS"
fetch_deb() {  # package version -> path of the .deb on stdout
    pkg=$1 ver=$2
    for f in "$DEBS/${pkg}"_*_arm64.deb; do
        [ -f "$f" ] || continue
        if [ "$(dpkg-deb -f "$f" Version 2>/dev/null)" = "$ver" ]; then
            echo "$f"; return 0
        fi
        rm -f "$f"
    done
    say "downloading $pkg:arm64 $ver" >&2
    # Sandbox user root: the _apt user cannot write into a root-owned OUTDIR.
    if ! (cd "$DEBS" && APT_LOG="$OUTDIR/apt-download.log" \
            apt_get download -q -o APT::Sandbox::User=root "$pkg:arm64=$ver" >&2); then
        cat "$OUTDIR/apt-download.log" >&2
        die "download of $pkg:arm64=$ver failed (network, or stale lists: try GUEST_REFRESH=1)"
    fi
    for f in "$DEBS/${pkg}"_*_arm64.deb; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    die "apt-get download of $pkg reported success but left no .deb in $DEBS"
}
KDEB=$(fetch_deb "$KPKG" "$KVER_PKG")
BBDEB=$(fetch_deb busybox-static "$BBVER")
for f in "$DEBS"/*.deb; do  # a new kernel ABI is a new package name: drop the old one
    [ "$f" = "$KDEB" ] || [ "$f" = "$BBDEB" ] || rm -f "$f"
done

WORK="$OUTDIR/work"
rm -rf "$WORK"
mkdir -p "$WORK/pkg" "$WORK/root"
trap 'rm -rf "$WORK"' EXIT
say "extracting $(basename "$KDEB") and $(basename "$BBDEB")"
dpkg-deb -x "$KDEB" "$WORK/pkg"
dpkg-deb -x "$BBDEB" "$WORK/pkg"

# --- kernel Image ---------------------------------------------------------
VMLINUZ="$WORK/pkg/boot/vmlinuz-$KREL"
[ -f "$VMLINUZ" ] || die "$KDEB has no boot/vmlinuz-$KREL"
# Debian ships arm64 kernels either as a raw Image or gzip-compressed (1f 8b).
if [ "$(od -An -tx1 -N2 "$VMLINUZ" | tr -d ' ')" = 1f8b ]; then
    gzip -dc "$VMLINUZ" >"$WORK/Image"
else
    cp "$VMLINUZ" "$WORK/Image"
fi
# arm64 boot protocol (Documentation/arch/arm64/booting.rst): magic "ARM\x64" at offset 56.
MAGIC=$(od -An -tx1 -j56 -N4 "$WORK/Image" | tr -d ' ')
[ "$MAGIC" = 41524d64 ] || die "vmlinuz-$KREL is not an arm64 Image (magic at 56 is '$MAGIC')"

# --- modules --------------------------------------------------------------
KMODS="$WORK/pkg/lib/modules/$KREL"
[ -d "$KMODS" ] || die "$KDEB has no lib/modules/$KREL"
# The package ships no modules.dep (its postinst runs depmod); make one to
# learn the dependencies, then copy only what the wanted modules pull in.
depmod -b "$WORK/pkg" "$KREL"
if grep -q '^CONFIG_EXT4_FS=m' "$WORK/pkg/boot/config-$KREL"; then
    WANT_MODULES="$WANT_MODULES ext4"
fi
STAGE="$WORK/root"
MODDIR="$STAGE/lib/modules/$KREL"
mkdir -p "$MODDIR"
for m in $WANT_MODULES; do
    line=$(grep -E "(^|/)$m\.ko(\.xz|\.gz)?:" "$KMODS/modules.dep" | head -n 1)
    [ -n "$line" ] || die "module $m not found in $KREL"
    # A modules.dep line is "mod.ko: dep1.ko dep2.ko ..." (all dependencies, transitively).
    for rel in $(echo "$line" | tr -d ':'); do
        dst="$MODDIR/${rel%.xz}"; dst=${dst%.gz}
        [ -f "$dst" ] && continue
        mkdir -p "$(dirname "$dst")"
        case "$rel" in
            *.ko.xz) xz -dc "$KMODS/$rel" >"$dst" ;;  # busybox modprobe loads plain .ko
            *.ko.gz) gzip -dc "$KMODS/$rel" >"$dst" ;;
            *.ko) cp "$KMODS/$rel" "$dst" ;;
            *) die "unexpected module file $rel" ;;
        esac
    done
done
cp "$KMODS/modules.builtin" "$KMODS/modules.builtin.modinfo" "$KMODS/modules.order" "$MODDIR/"
depmod -b "$STAGE" "$KREL"
NMODS=$(find "$MODDIR" -name '*.ko' | wc -l)

# --- root filesystem ------------------------------------------------------
for d in bin sbin usr/bin usr/sbin etc dev proc sys tmp mnt root run www; do
    mkdir -p "$STAGE/$d"
done
# The README's network example serves this page: `httpd -p 80 -h /www`.
cat >"$STAGE/www/index.html" <<'EOF'
<!DOCTYPE html>
<title>vmm guest</title>
<p>Hello from the Linux guest of vmm: busybox httpd, served over the guest's virtio-net.</p>
EOF
chmod 1777 "$STAGE/tmp"
cp "$WORK/pkg/bin/busybox" "$STAGE/bin/busybox"
chmod 755 "$STAGE/bin/busybox"
ln -s busybox "$STAGE/bin/sh"
# The kernel opens /dev/console for init before devtmpfs exists; without the
# node init starts with no stdio. Only root can make it; /init copes if absent.
mknod -m 600 "$STAGE/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$STAGE/dev/null" c 1 3 2>/dev/null || true
# busybox has mke2fs but no mkfs.ext2 applet; tests say mkfs.ext2.
printf '#!/bin/busybox sh\nexec /bin/busybox mke2fs "$@"\n' >"$STAGE/bin/mkfs.ext2"
chmod 755 "$STAGE/bin/mkfs.ext2"

cat >"$STAGE/init" <<EOF
#!/bin/busybox sh
# vmm guest init ($KREL): mount the kernel filesystems, load the virtio
# modules, then hand pid 1 to busybox init, which runs the shell on the console
# and turns poweroff/reboot (with or without -f) into the right syscalls.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /run 2>/dev/null
# A missing device or module must not stop the boot: -q, and no set -e.
for m in $WANT_MODULES; do modprobe -q \$m 2>/dev/null; done
ifconfig lo 127.0.0.1 up 2>/dev/null
hostname guest
# Kernel info messages would interleave with command output on the serial line.
echo 4 >/proc/sys/kernel/printk
echo "vmm-guest: init done"
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root PS1='$PROMPT'
exec /bin/busybox init
EOF
chmod 755 "$STAGE/init"

# busybox init: one respawning shell on the real console tty. cttyhack finds it
# (/sys/class/tty/console/active) and makes it the controlling tty, so job
# control and Ctrl-C work; /dev/console itself can never be a controlling tty.
cat >"$STAGE/etc/inittab" <<'EOF'
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/bin/reboot
::shutdown:/bin/sync
EOF
cat >"$STAGE/etc/profile" <<EOF
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
export PS1='$PROMPT'
# Wide terminal: line editing must not wrap and redraw long test commands.
stty cols 4096 rows 50 2>/dev/null
cd /root
EOF
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$STAGE/etc/passwd"
printf 'root:x:0:\n' >"$STAGE/etc/group"
printf 'guest\n' >"$STAGE/etc/hostname"

# newc cpio, sorted, owned by root, fixed mtimes: same packages -> same bytes.
find "$STAGE" -exec touch -h -d @0 {} +
(cd "$STAGE" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc --owner=0:0 --reproducible --quiet) |
    gzip -9 -n >"$WORK/initramfs.cpio.gz"

mv "$WORK/Image" "$OUTDIR/Image"
mv "$WORK/initramfs.cpio.gz" "$OUTDIR/initramfs.cpio.gz"
printf '%s' "$STAMP_TEXT" >"$STAMP"
rm -f "$OUTDIR/apt-update.log" "$OUTDIR/apt-download.log"
say "kernel $KREL ($KVER_PKG), busybox $BBVER, $NMODS modules"
say "Image $(wc -c <"$OUTDIR/Image") bytes, initramfs $(wc -c <"$OUTDIR/initramfs.cpio.gz") bytes in $OUTDIR"
