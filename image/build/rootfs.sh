#!/usr/bin/env bash
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# rootfs.sh ROOTFS_DIR
#     The firmvisor root filesystem (docs/image.md) in ROOTFS_DIR (absent or empty): Debian bookworm
#     by mmdebstrap through the build machine's own apt sources, the packages of image/packages.list
#     (or FV_PACKAGES) without recommends, no docs/man/locales, the tree image/rootfs/ copied in, the
#     host tools of image/tools/ in /usr/lib/firmvisor, systemd configured for a headless, stateless
#     hypervisor, SSH host keys removed (fv-state makes them at first boot), kernel modules a
#     headless hypervisor does not need removed (kmodules.py prune). squashfs.sh makes the slot of it.
#
# Environment:
#     FV_APT_SOURCES     apt sources files (space separated; .list or deb822 .sources) given to
#                        mmdebstrap as its mirrors; default: /etc/apt/sources.list (when it has
#                        entries) and /etc/apt/sources.list.d/*.list *.sources
#     FV_PACKAGES        the package list (space separated); default: image/packages.list
#     FV_VERSION         written to /etc/firmvisor/version (default 0.1.0)
#     FV_SUITE           default bookworm
#     FV_DEBUG           1: a debug image (systemd's emergency and rescue shells kept; see image_build's
#                        debug option); /usr/lib/firmvisor/debug marks it
#     SOURCE_DATE_EPOCH  every timestamp (default 2025-01-01)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
IMAGE=$(dirname "$HERE")
: "${SOURCE_DATE_EPOCH:=1735689600}"
export SOURCE_DATE_EPOCH
export LC_ALL=C.UTF-8
VERSION=${FV_VERSION:-0.1.0}
SUITE=${FV_SUITE:-bookworm}

say() { echo "image: $*"; }
die() { echo "image: error: $*" >&2; exit 1; }

ROOT=${1:?usage: rootfs.sh ROOTFS_DIR}
[ "$(id -u)" = 0 ] || die "rootfs.sh runs as root (mmdebstrap --mode=root, chroot)"
for tool in mmdebstrap dpkg-deb depmod python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (mmdebstrap, dpkg, kmod, python3)"
done
if [ -e "$ROOT" ] && [ -n "$(ls -A "$ROOT")" ]; then
    die "$ROOT is not empty"
fi

# The build machine's own apt sources, never a mirror named here.
SOURCES=()
if [ -n "${FV_APT_SOURCES:-}" ]; then
    read -r -a SOURCES <<<"$FV_APT_SOURCES"
else
    if [ -f /etc/apt/sources.list ] && grep -q '^[[:space:]]*deb' /etc/apt/sources.list; then
        SOURCES+=(/etc/apt/sources.list)
    fi
    for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        if [ -f "$file" ]; then SOURCES+=("$file"); fi
    done
fi
[ "${#SOURCES[@]}" -gt 0 ] || die "no apt sources found (set FV_APT_SOURCES)"
for file in "${SOURCES[@]}"; do [ -f "$file" ] || die "apt sources file $file is missing"; done

if [ -n "${FV_PACKAGES:-}" ]; then
    read -r -a PACKAGES <<<"$FV_PACKAGES"
else
    read -r -d '' -a PACKAGES < <(sed 's/#.*//' "$IMAGE/packages.list") || true
fi
[ "${#PACKAGES[@]}" -gt 0 ] || die "the package list is empty"
PACKAGE_LIST=$(IFS=,; echo "${PACKAGES[*]}")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fv-rootfs.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
chmod 0755 "$TMP"

# The kernel package depends on initramfs-tools | linux-initramfs-tool: an empty local package
# provides the latter, firmvisor's initramfs is made by initramfs.sh.
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
 made by initramfs.sh at image build time.
EOF
find "$TMP/stub" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$TMP/stub" "$TMP/firmvisor-initramfs.deb" >/dev/null
chmod 0644 "$TMP/firmvisor-initramfs.deb"

say "mmdebstrap $SUITE into $ROOT (sources: ${SOURCES[*]})"
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
    --include="$PACKAGE_LIST" \
    --include="$TMP/firmvisor-initramfs.deb" \
    "$SUITE" "$ROOT" "${SOURCES[@]}"

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

say "overlay: firmvisor's own files (image/rootfs) and host tools (image/tools)"
# Owned by root; directories that exist already keep their owner and mode.
tar -C "$IMAGE/rootfs" --owner=0 --group=0 --numeric-owner -cf - . | tar -C "$ROOT" --no-overwrite-dir -xf -
chmod 0755 "$ROOT"/usr/sbin/fv-state "$ROOT"/usr/sbin/fvslot "$ROOT"/usr/sbin/fv-install
install -d -m 0755 "$ROOT/usr/lib/firmvisor"
install -m 0644 "$IMAGE"/tools/*.py "$ROOT/usr/lib/firmvisor/"

say "version $VERSION"
mkdir -p "$ROOT/etc/firmvisor/health.d" "$ROOT/etc/firmvisor/nftables.d" "$ROOT/var/lib/firmvisor/state"
printf '%s\n' "$VERSION" >"$ROOT/etc/firmvisor/version"
if [ "${FV_DEBUG:-0}" = 1 ]; then
    say "debug image: systemd's emergency and rescue shells stay"
    rm -rf "$ROOT/usr/lib/systemd/system/emergency.service.d" "$ROOT/usr/lib/systemd/system/rescue.service.d"
    echo "built with debug: true" >"$ROOT/usr/lib/firmvisor/debug"
fi

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
# Ordering a drop-in cannot take away (After=/Before= only add): the unit is copied to
# /etc/systemd/system, where it wins over Debian's, with whole lines replaced; the build fails when
# Debian's unit no longer has the line.
unit_lines() {  # unit 'line' 'replacement' ... (an empty replacement removes the line)
    local unit=$1 copy="$ROOT/etc/systemd/system/$1"
    shift
    cp "$ROOT/usr/lib/systemd/system/$unit" "$copy"
    while [ $# -ge 2 ]; do
        grep -qxF -- "$1" "$copy" || die "$unit: Debian's unit has no line '$1' any more"
        awk -v old="$1" -v new="$2" '$0 != old { print; next } new != "" { print new }' "$copy" >"$copy.new"
        mv "$copy.new" "$copy"
        shift 2
    done
}
# The boot's critical path is fv-state, then libvirtd, sshd and the network, which the health gate
# waits for (docs/image.md, "Boot time"). Neither libvirtd nor sshd needs the network up to start
# (they listen on every address); Debian orders both after network.target, which systemd-networkd
# reaches seconds later under emulation. Nor does libvirtd need logind and machined running when it
# starts: it takes logind's suspend inhibitor lock when asked to, and a guest's start registers with
# machined through D-Bus, which starts machined if it is not running yet (libvirtd still wants it
# started at boot). libvirt-guests, which shuts the guests down at shutdown, stays ordered after
# machined (its drop-in). libvirtd keeps its order after dbus.
unit_lines libvirtd.service 'After=network.target' '' 'After=systemd-logind.service' '' \
    'After=systemd-machined.service' ''
unit_lines ssh.service 'After=network.target auditd.service' 'After=auditd.service'
# systemd-resolved after the health gate (a drop-in): Debian orders it before sysinit.target and
# network.target, so every later unit waited for it; nothing the gate checks resolves names (chrony
# retries, and it starts after the gate too).
in_root systemctl disable systemd-resolved.service >/dev/null 2>&1 || true
unit_lines systemd-resolved.service \
    'Before=sysinit.target network.target nss-lookup.target shutdown.target initrd-switch-root.target' \
    'Before=nss-lookup.target shutdown.target initrd-switch-root.target' \
    'WantedBy=sysinit.target' 'WantedBy=multi-user.target'
# The serial console always gets a getty; tty1 does not (headless).
for unit in serial-getty@ttyS0.service systemd-networkd.service systemd-resolved.service ssh.service \
            chrony.service nftables.service libvirtd.service virtlogd.service \
            firmvisor-state.service firmvisor-save.service firmvisor-health.service \
            firmvisor-install.service; do
    in_root systemctl enable "$unit" >/dev/null 2>&1 || die "systemctl enable $unit failed"
done
in_root systemctl disable getty@tty1.service 2>/dev/null || true
rm -f "$ROOT/etc/systemd/system/getty.target.wants/getty@tty1.service"
# Masked: what a hypervisor never uses, and work every boot would do for nothing: the journal is in
# memory (nothing to flush), no binfmt handlers, no utmp records on a tmpfs, the network comes from
# fv-state and not from ip= on the (locked) kernel command line, no graphics, FUSE, debugfs or
# tracefs (an operator who needs one mounts it), no systemd user manager for root: every SSH
# login (Ansible, qemu+ssh://, the provisioner's probes) would start one, seconds under emulation; no
# random seed file (it would be on the tmpfs: never kept); and no module loads ahead of their use
# (device-mapper, loop, configfs and pstore load when first used).
for unit in apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
            man-db.timer man-db.service e2scrub_all.timer e2scrub_all.service e2scrub_reap.service \
            fstrim.timer dpkg-db-backup.timer dpkg-db-backup.service systemd-timesyncd.service \
            getty@tty1.service autovt@.service systemd-networkd-wait-online.service \
            systemd-journal-flush.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
            proc-sys-fs-binfmt_misc.mount systemd-update-utmp.service systemd-update-utmp-runlevel.service \
            systemd-network-generator.service modprobe@drm.service modprobe@fuse.service \
            sys-fs-fuse-connections.mount sys-kernel-debug.mount sys-kernel-tracing.mount user@0.service \
            systemd-random-seed.service modprobe@dm_mod.service modprobe@loop.service \
            modprobe@efi_pstore.service modprobe@configfs.service; do
    in_root systemctl mask "$unit" >/dev/null 2>&1 || ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
# Generators that would run at every boot for nothing: no encrypted, integrity or verity volumes,
# no hibernation, no rc.local or SysV scripts, no offline updates; no GPT auto-mounts (fv-state
# mounts the state partition of the boot disk, nothing else); no systemd.run= or debug shell from
# the (locked) kernel command line. fstab and getty stay.
mkdir -p "$ROOT/etc/systemd/system-generators"
for generator in systemd-cryptsetup-generator systemd-integritysetup-generator systemd-veritysetup-generator \
                 systemd-hibernate-resume-generator systemd-rc-local-generator systemd-sysv-generator \
                 systemd-system-update-generator systemd-gpt-auto-generator systemd-run-generator \
                 systemd-debug-generator; do
    ln -sf /dev/null "$ROOT/etc/systemd/system-generators/$generator"
done
if [ "${FV_DEBUG:-0}" = 1 ]; then rm -f "$ROOT/etc/systemd/system-generators/systemd-debug-generator"; fi
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
mapfile -t KERNELS < <(ls "$ROOT/lib/modules")
[ "${#KERNELS[@]}" = 1 ] || die "expected one kernel in $ROOT/lib/modules, found: ${KERNELS[*]}"
KVER=${KERNELS[0]}
MODDIR=$ROOT/lib/modules/$KVER
before=$(du -sm "$MODDIR" | cut -f1)
say "kernel $KVER: removing modules a headless hypervisor does not need"
python3 "$HERE/kmodules.py" prune "$MODDIR"
depmod -b "$ROOT" "$KVER"
say "kernel modules: ${before} MiB -> $(du -sm "$MODDIR" | cut -f1) MiB"

# ---- strip ---------------------------------------------------------------------------------------
say "strip: docs, man pages, locales, apt lists and caches, logs, initramfs leftovers, 32-bit QEMU"
rm -rf "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/lintian \
       "$ROOT"/usr/share/linda
if [ -d "$ROOT/usr/share/doc" ]; then
    find "$ROOT/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
fi
if [ -d "$ROOT/usr/share/locale" ]; then
    find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
fi
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
       "$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/cache/man "$ROOT"/var/cache/ldconfig/aux-cache
find "$ROOT/var/log" -type f -delete
rm -f "$ROOT"/boot/System.map-* "$ROOT"/boot/initrd.img-* "$ROOT"/initrd.img "$ROOT"/initrd.img.old \
      "$ROOT"/vmlinuz.old
rm -rf "$ROOT"/tmp/* "$ROOT"/var/tmp/*
# One QEMU system emulator: libvirt runs i686 guests on qemu-system-x86_64 when qemu-system-i386 is
# absent, and probes every emulator it finds at a boot without a capabilities cache (the first
# boot, the installer's live boot): ~4.5 s each under TCG. microvm is a machine of the x86_64 one.
rm -f "$ROOT"/usr/bin/qemu-system-i386 "$ROOT"/usr/libexec/qemu-system-i386 \
      "$ROOT"/usr/bin/qemu-system-x86_64-microvm
[ -x "$ROOT/usr/bin/qemu-system-x86_64" ] || die "qemu-system-x86_64 is missing"
# A host key or a random seed must never ship in an image.
rm -f "$ROOT"/var/lib/systemd/random-seed "$ROOT"/etc/ssh/ssh_host_*

say "root filesystem: $(du -sm "$ROOT" | cut -f1) MiB in $ROOT"
