#!/bin/sh
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# build-rootfs.sh ROOTFS_DIR
#     The firmvisor root filesystem (docs/image.md) in ROOTFS_DIR (absent or empty): Debian bookworm
#     by mmdebstrap through the build machine's own apt sources, the packages of packages.list (or
#     FV_PACKAGES) without recommends, no docs/man/locales, the tree overlay/ copied in, systemd
#     configured for a headless, stateless hypervisor, SSH host keys removed (fv-state makes them at
#     first boot), kernel modules a headless hypervisor does not need removed.
# build-rootfs.sh squash ROOTFS_DIR OUT.squashfs
#     The squashfs (zstd) of ROOTFS_DIR: the contents of proc/ sys/ dev/ run/ tmp/ left out (the
#     directories stay), /boot kept: /boot/vmlinuz-<version> and /boot/initrd.img (build-initramfs.sh
#     puts the initramfs there, so run it between the two steps).
#
# Environment:
#     FV_APT_SOURCES     apt sources files (space separated; .list or deb822 .sources) given to
#                        mmdebstrap as its mirrors; default: /etc/apt/sources.list (when it has
#                        entries) and /etc/apt/sources.list.d/*.list *.sources
#     FV_PACKAGES        the package list (space separated); default: packages.list beside this script
#     FV_VERSION         written to /etc/firmvisor/version (default 0.1.0)
#     FV_SUITE           default bookworm
#     FV_SQUASH_LEVEL    zstd level of the squashfs (default 15: 19 saves ~1% for twice the time)
#     SOURCE_DATE_EPOCH  every timestamp (default 2025-01-01)
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
: "${SOURCE_DATE_EPOCH:=1735689600}"
export SOURCE_DATE_EPOCH
export LC_ALL=C.UTF-8
VERSION=${FV_VERSION:-0.1.0}
SUITE=${FV_SUITE:-bookworm}

say() { echo "image: $*"; }
die() { echo "image: error: $*" >&2; exit 1; }

# ---- squash mode ---------------------------------------------------------------------------------
squash() {
    root=${1:?usage: build-rootfs.sh squash ROOTFS_DIR OUT.squashfs}
    out=${2:?usage: build-rootfs.sh squash ROOTFS_DIR OUT.squashfs}
    command -v mksquashfs >/dev/null || die "mksquashfs is missing (squashfs-tools)"
    [ -x "$root/sbin/init" ] || die "$root has no /sbin/init: not a root filesystem"
    ls "$root"/boot/vmlinuz-* >/dev/null 2>&1 || die "$root/boot has no vmlinuz-*"
    [ -f "$root/boot/initrd.img" ] || say "warning: $root/boot/initrd.img is missing (run build-initramfs.sh first)"
    for dir in proc sys dev run tmp; do mkdir -p "$root/$dir"; done
    chmod 1777 "$root/tmp"
    excludes=$(mktemp "${TMPDIR:-/tmp}/fv-squash-exclude.XXXXXX")
    # The contents only: the directories themselves must exist in the image (mount points).
    for dir in proc sys dev run tmp; do printf '%s/*\n%s/.*\n' "$dir" "$dir"; done >"$excludes"
    mkdir -p "$(dirname "$out")"
    partial="$(dirname "$out")/.$(basename "$out").partial"
    rm -f "$partial"
    say "squashfs: $out (zstd)"
    # -all-time: every inode gets SOURCE_DATE_EPOCH (given as options: mksquashfs refuses both the
    # variable and the options, and reads the variable only in some versions) (build-rootfs.sh compiled the Python bytecode
    # hash-based, so it stays valid). 128 KiB blocks: a small read under TCG decompresses little.
    env -u SOURCE_DATE_EPOCH mksquashfs "$root" "$partial" -noappend -quiet -no-progress \
        -comp zstd -Xcompression-level "${FV_SQUASH_LEVEL:-15}" -b 131072 \
        -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" \
        -wildcards -ef "$excludes"
    rm -f "$excludes"
    mv "$partial" "$out"
    size=$(stat -c %s "$out")
    say "squashfs: $out $((size / 1048576)) MiB ($size bytes), sha256 $(sha256sum "$out" | cut -d' ' -f1)"
}

if [ "${1:-}" = squash ]; then
    shift
    squash "$@"
    exit 0
fi

# ---- root filesystem mode ------------------------------------------------------------------------
ROOT=${1:?usage: build-rootfs.sh ROOTFS_DIR | build-rootfs.sh squash ROOTFS_DIR OUT.squashfs}
[ "$(id -u)" = 0 ] || die "build-rootfs.sh runs as root (mmdebstrap --mode=root, chroot)"
for tool in mmdebstrap dpkg-deb depmod python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (mmdebstrap, dpkg, kmod, python3)"
done
if [ -e "$ROOT" ] && [ -n "$(ls -A "$ROOT")" ]; then
    die "$ROOT is not empty"
fi

# The build machine's own apt sources, never a mirror named here.
if [ -n "${FV_APT_SOURCES:-}" ]; then
    SOURCES=$FV_APT_SOURCES
else
    SOURCES=
    if [ -f /etc/apt/sources.list ] && grep -q '^[[:space:]]*deb' /etc/apt/sources.list; then
        SOURCES=/etc/apt/sources.list
    fi
    for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] && SOURCES="$SOURCES $file"
    done
fi
[ -n "$(echo $SOURCES)" ] || die "no apt sources found (set FV_APT_SOURCES)"
for file in $SOURCES; do [ -f "$file" ] || die "apt sources file $file is missing"; done

if [ -n "${FV_PACKAGES:-}" ]; then
    PACKAGES=$FV_PACKAGES
else
    PACKAGES=$(sed 's/#.*//' "$HERE/packages.list" | tr -s ' \t\n' '  ')
fi
PACKAGES=$(echo $PACKAGES | tr ' ' ',')
[ -n "$PACKAGES" ] || die "the package list is empty"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fv-rootfs.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
chmod 0755 "$TMP"

# The kernel package depends on initramfs-tools | linux-initramfs-tool: an empty local package
# provides the latter, firmvisor's initramfs is made by build-initramfs.sh.
say "a local package that stands in for initramfs-tools"
mkdir -p "$TMP/stub/DEBIAN"
cat >"$TMP/stub/DEBIAN/control" <<EOF
Package: firmvisor-initramfs
Version: $VERSION
Architecture: all
Maintainer: firmvisor developers <firmvisor@localhost>
Provides: linux-initramfs-tool
Section: admin
Priority: optional
Description: firmvisor's initramfs is built outside the image
 Satisfies the kernel's dependency on an initramfs generator; firmvisor's own busybox initramfs is
 made by build-initramfs.sh at image build time.
EOF
find "$TMP/stub" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$TMP/stub" "$TMP/firmvisor-initramfs.deb" >/dev/null
chmod 0644 "$TMP/firmvisor-initramfs.deb"

say "mmdebstrap $SUITE into $ROOT (sources: $(echo $SOURCES))"
# shellcheck disable=SC2086
mmdebstrap --mode=root --variant=minbase --format=directory \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='APT::Install-Suggests "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/linda/*' \
    --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
    --include="$PACKAGES" \
    --include="$TMP/firmvisor-initramfs.deb" \
    "$SUITE" "$ROOT" $SOURCES

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

say "overlay: firmvisor's own files"
# Owned by root; directories that exist already keep their owner and mode.
tar -C "$HERE/overlay" --owner=0 --group=0 --numeric-owner -cf - . | tar -C "$ROOT" --no-overwrite-dir -xf -
chmod 0755 "$ROOT/usr/sbin/fv-state" "$ROOT"/usr/lib/firmvisor/fv-*

say "version $VERSION"
mkdir -p "$ROOT/etc/firmvisor" "$ROOT/var/lib/firmvisor/state"
printf '%s\n' "$VERSION" >"$ROOT/etc/firmvisor/version"

say "identity: hostname firmvisor, empty machine-id (a new one every boot), no SSH host keys"
echo firmvisor >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tfirmvisor\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
# Empty, not absent and not "uninitialized": systemd does not treat every boot as the first one
# (no preset-all), and puts a transient machine ID over it.
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
rm -f "$ROOT"/etc/ssh/ssh_host_*
printf '# firmvisor: mounts are made by the initramfs and fv-state\n' >"$ROOT/etc/fstab"
# Root has no password: SSH keys only (fv-state installs the seed's authorized keys).
in_root passwd -l root >/dev/null

say "systemd: units for a hypervisor"
# The serial console always gets a getty; tty1 does not (headless).
for unit in serial-getty@ttyS0.service systemd-networkd.service systemd-resolved.service ssh.service \
            chrony.service nftables.service libvirtd.service virtlogd.service \
            firmvisor-state.service firmvisor-ready.service firmvisor-install.service; do
    in_root systemctl enable "$unit" >/dev/null 2>&1 || die "systemctl enable $unit failed"
done
in_root systemctl disable getty@tty1.service 2>/dev/null || true
rm -f "$ROOT/etc/systemd/system/getty.target.wants/getty@tty1.service"
for unit in apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
            man-db.timer man-db.service e2scrub_all.timer e2scrub_all.service e2scrub_reap.service \
            fstrim.timer dpkg-db-backup.timer dpkg-db-backup.service systemd-timesyncd.service \
            getty@tty1.service autovt@.service systemd-networkd-wait-online.service; do
    in_root systemctl mask "$unit" >/dev/null 2>&1 || ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
# systemd-update-done's stamps, as if the image had booted once: no ldconfig, hwdb, sysusers or
# journal catalog rebuild at every boot (ConditionNeedsUpdate compares them with /usr's mtime).
for dir in etc var; do
    printf 'TIMESTAMP_NSEC=%s000000000\n' "$SOURCE_DATE_EPOCH" >"$ROOT/$dir/.updated"
done

say "libvirt: the daemon stays up; no NAT network at boot; guests shut down with the host"
# Debian's libvirtd exits after 120 s idle (--timeout 120): a hypervisor keeps it.
printf '# firmvisor: libvirtd stays up (no idle --timeout)\nLIBVIRTD_ARGS=""\n' >"$ROOT/etc/default/libvirtd"
# The "default" NAT network stays defined but is not started at boot (fv-state persists the choice).
rm -f "$ROOT/etc/libvirt/qemu/networks/autostart/default.xml"
cat >"$ROOT/etc/default/libvirt-guests" <<'EOF'
# firmvisor: the root filesystem is a tmpfs overlay, a managed save would not survive the reboot.
ON_BOOT=ignore
ON_SHUTDOWN=shutdown
SHUTDOWN_TIMEOUT=60
EOF
[ -x "$ROOT/usr/bin/virt-ssh-helper" ] || die "virt-ssh-helper is missing: qemu+ssh:// would not work"

say "python: bytecode that stays valid in the squashfs (hash-based, unchecked)"
in_root python3 -m compileall -q -f -j 0 --invalidation-mode unchecked-hash \
    /usr/lib/python3 /usr/lib/python3.11 /usr/lib/firmvisor >/dev/null 2>&1 \
    || in_root python3 -m compileall -q -f --invalidation-mode unchecked-hash \
        /usr/lib/python3 /usr/lib/python3.11 /usr/lib/firmvisor >/dev/null

# ---- kernel modules ------------------------------------------------------------------------------
KVER=$(ls "$ROOT/lib/modules")
[ "$(echo "$KVER" | wc -w)" = 1 ] || die "expected one kernel in $ROOT/lib/modules, found: $KVER"
MODDIR=$ROOT/lib/modules/$KVER
before=$(du -sm "$MODDIR" | cut -f1)
say "kernel $KVER: removing modules a headless hypervisor does not need"
# Subtrees of kernel/ to drop, then every module that depends on a dropped one. Storage, network,
# virtio, kvm, vfio, bridge, tun, netfilter, overlay, squashfs, iso9660, vfat stay.
python3 - "$MODDIR" <<'EOF'
import os, sys
moddir = sys.argv[1]
drop_prefixes = tuple('kernel/%s/' % p for p in (
    'sound', 'drivers/gpu', 'drivers/media', 'drivers/staging', 'drivers/infiniband',
    'drivers/net/wireless', 'net/wireless', 'net/mac80211', 'drivers/bluetooth', 'net/bluetooth',
    'drivers/isdn', 'drivers/iio', 'drivers/input/joystick', 'drivers/input/touchscreen',
    'drivers/input/tablet', 'drivers/nfc', 'net/nfc', 'drivers/atm', 'net/atm', 'drivers/net/can',
    'net/can', 'drivers/net/ieee802154', 'net/ieee802154', 'net/mac802154', 'drivers/net/hamradio',
    'net/ax25', 'net/netrom', 'net/rose', 'drivers/net/wwan', 'drivers/pcmcia', 'drivers/memstick',
    'drivers/usb/gadget', 'drivers/video/fbdev', 'drivers/parport', 'drivers/net/arcnet',
    'drivers/net/fddi', 'drivers/net/plip', 'drivers/auxdisplay', 'drivers/gnss', 'drivers/w1',
    'drivers/greybus', 'drivers/most', 'drivers/misc/cardreader', 'drivers/input/mouse',
    'drivers/platform/chrome', 'drivers/platform/surface', 'drivers/hid/intel-ish-hid',
))
deps = {}
with open(os.path.join(moddir, 'modules.dep')) as handle:
    for line in handle:
        mod, _, rest = line.partition(':')
        deps[mod.strip()] = rest.split()
drop = {m for m in deps if m.startswith(drop_prefixes)}
changed = True
while changed:
    changed = False
    for mod, needs in deps.items():
        if mod not in drop and any(n in drop for n in needs):
            drop.add(mod)
            changed = True
for mod in sorted(drop):
    os.unlink(os.path.join(moddir, mod))
for folder, dirs, files in os.walk(os.path.join(moddir, 'kernel'), topdown=False):
    if not os.listdir(folder):
        os.rmdir(folder)
print('image:   %d of %d modules removed' % (len(drop), len(deps)))
EOF
depmod -b "$ROOT" "$KVER"
say "kernel modules: ${before} MiB -> $(du -sm "$MODDIR" | cut -f1) MiB"

# ---- strip ---------------------------------------------------------------------------------------
say "strip: docs, man pages, locales, apt lists and caches, logs, initramfs leftovers"
rm -rf "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/lintian \
       "$ROOT"/usr/share/linda
find "$ROOT/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
       "$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/cache/man "$ROOT"/var/cache/ldconfig/aux-cache
find "$ROOT/var/log" -type f -delete
rm -f "$ROOT"/boot/System.map-* "$ROOT"/boot/initrd.img-* "$ROOT"/initrd.img "$ROOT"/initrd.img.old \
      "$ROOT"/vmlinuz.old
rm -rf "$ROOT"/tmp/* "$ROOT"/var/tmp/*
# A host key or a random seed must never ship in an image.
rm -f "$ROOT"/var/lib/systemd/random-seed "$ROOT"/etc/ssh/ssh_host_*

say "root filesystem: $(du -sm "$ROOT" | cut -f1) MiB in $ROOT"
