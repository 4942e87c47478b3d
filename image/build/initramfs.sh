#!/usr/bin/env bash
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# initramfs.sh ROOTFS_DIR OUT_INITRD
#
# firmvisor's own initramfs (not initramfs-tools): a static busybox (ROOTFS_DIR's busybox-static,
# else the build machine's), the storage and file system modules of ROOTFS_DIR's kernel with their
# dependencies (kmodules.py initramfs), and image/initramfs/init, which finds the system, mounts it
# read-only under a tmpfs overlay and switches root (docs/image.md; the script says the rest).
#
# The result is also copied to ROOTFS_DIR/boot/initrd.img (the slot's squashfs carries it, see
# docs/image.md). Deterministic: sorted newc cpio, owner 0, every mtime SOURCE_DATE_EPOCH, gzip -n.
#
# Environment: FV_DEBUG=1 builds a debug initramfs (/etc/fv-debug: a shell on the console instead of
# a reboot when the system is not found, fv.break=1 and fv.debug=1 honoured, no early watchdog).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
IMAGE=$(dirname "$HERE")
ROOT=${1:?usage: initramfs.sh ROOTFS_DIR OUT_INITRD}
OUT=${2:?usage: initramfs.sh ROOTFS_DIR OUT_INITRD}
: "${SOURCE_DATE_EPOCH:=1735689600}"
export SOURCE_DATE_EPOCH
export LC_ALL=C

say() { echo "initramfs: $*"; }
die() { echo "initramfs: error: $*" >&2; exit 1; }

for tool in cpio gzip depmod python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (cpio, gzip, kmod, python3)"
done
[ -d "$ROOT" ] || die "$ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd)
case "$OUT" in /*) ;; *) OUT=$(pwd)/$OUT ;; esac
[ -d "$ROOT/lib/modules" ] || die "$ROOT/lib/modules is missing: not a root filesystem with a kernel"
mapfile -t KERNELS < <(ls "$ROOT/lib/modules")
[ "${#KERNELS[@]}" = 1 ] || die "expected one kernel in $ROOT/lib/modules, found: ${KERNELS[*]}"
KVER=${KERNELS[0]}
MODDIR=$ROOT/lib/modules/$KVER

# A static busybox: the root filesystem's (busybox-static), else the build machine's.
is_static() { python3 "$HERE/kmodules.py" is-static "$1"; }
BUSYBOX=''
for candidate in "$ROOT/usr/bin/busybox" "$ROOT/bin/busybox" /usr/bin/busybox /bin/busybox; do
    if [ -f "$candidate" ] && is_static "$candidate"; then BUSYBOX=$candidate; break; fi
done
[ -n "$BUSYBOX" ] || die "no static busybox (install busybox-static in the image or on the build machine)"

# The modules /init loads, in this order (dependencies and soft dependencies first).
# Loaded first: QEMU (virtio, AHCI, IDE), NVMe, USB sticks and BMC virtual media, SD cards (the
# classic embedded hypervisor boot device), and the file systems.
MODULES=(virtio_pci virtio_blk virtio_scsi scsi_mod sd_mod sr_mod ahci ata_piix nvme
         usb-storage uas xhci_pci xhci_hcd ehci_pci ehci_hcd ohci_pci uhci_hcd usbhid hid_generic
         mmc_block sdhci_pci sdhci_acpi
         loop squashfs overlay crc32c_generic ext4 vfat nls_cp437 nls_ascii nls_iso8859-1 nls_utf8 isofs)
# Loaded only when the system is not found within a few seconds: the common server RAID/SAS HBAs
# (every module costs time under TCG, where none of these is ever needed).
MODULES_LATER=(megaraid_sas mpt3sas hpsa smartpqi aacraid mptsas mptspi vmw_pvscsi)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fv-initramfs.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
TREE=$TMP/tree
mkdir -p "$TREE"
cd "$TREE"
mkdir -p bin sbin usr/bin usr/sbin dev proc sys run root tmp etc lib/modules/"$KVER"
chmod 1777 tmp

say "busybox from $BUSYBOX"
cp "$BUSYBOX" bin/busybox
chmod 0755 bin/busybox
mapfile -t APPLETS < <("$TREE/bin/busybox" --list-full)
for applet in "${APPLETS[@]}"; do
    [ -e "$applet" ] || ln -s /bin/busybox "$applet"
done
mknod -m 0600 dev/console c 5 1
mknod -m 0666 dev/null c 1 3

say "modules of $KVER: ${MODULES[*]}; later: ${MODULES_LATER[*]}"
python3 "$HERE/kmodules.py" initramfs "$MODDIR" "$TREE/lib/modules/$KVER" "$TREE/etc/fv-modules" \
    "${MODULES[@]}" -- "${MODULES_LATER[@]}"
for file in modules.order modules.builtin modules.builtin.modinfo; do
    if [ -f "$MODDIR/$file" ]; then cp "$MODDIR/$file" "lib/modules/$KVER/"; fi
done
depmod -b "$TREE" "$KVER"
echo "$KVER" >etc/fv-kernel
if [ "${FV_DEBUG:-0}" = 1 ]; then
    say "debug initramfs: a shell on failure, fv.break and fv.debug honoured"
    echo "built with debug: true" >etc/fv-debug
fi

install -m 0755 "$IMAGE/initramfs/init" init

say "cpio: $(find . | wc -l) entries"
find . -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$(dirname "$OUT")"
find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet \
    | gzip -n -9 >"$TMP/initrd.img"
cd /
mv "$TMP/initrd.img" "$OUT"
mkdir -p "$ROOT/boot"
cp "$OUT" "$ROOT/boot/initrd.img"
chmod 0644 "$ROOT/boot/initrd.img"
digest=$(sha256sum "$OUT")
say "$OUT: $(( $(stat -c %s "$OUT") / 1024 )) KiB, sha256 ${digest%% *}; also $ROOT/boot/initrd.img"
