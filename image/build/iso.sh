#!/usr/bin/env bash
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# iso.sh OUT.iso PIECES_DIR
#
# The firmvisor live/installer ISO (docs/image.md), volume label FVISO, bootable by BIOS (GRUB El
# Torito) and UEFI (El Torito alternate entry: the FAT image efiboot.img). PIECES_DIR holds
#   vmlinuz  initrd.img  root.squashfs            the system
#   boot/    the output of boot.sh (built into a temporary directory when missing)
# and may hold a file named version. The ISO holds
#   /boot/vmlinuz /boot/initrd.img /boot/grub/grub.cfg (fv.live=1) /boot/grub/eltorito.img
#   /boot/efiboot.img /live/root.squashfs
#   /install/{core.img,boot.img,BOOTX64.EFI,grub.cfg,version}   what fv-install writes (with the
#            live system's own assemble.py)
# Deterministic: every date is SOURCE_DATE_EPOCH (default 2025-01-01), owners 0, modes normalised.
set -euo pipefail

OUT=${1:?usage: iso.sh OUT.iso PIECES_DIR}
PIECES=${2:?usage: iso.sh OUT.iso PIECES_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
: "${SOURCE_DATE_EPOCH:=1735689600}"
export SOURCE_DATE_EPOCH
VERSION=${FV_VERSION:-}
if [ -z "$VERSION" ] && [ -f "$PIECES/version" ]; then VERSION=$(cat "$PIECES/version"); fi
VERSION=${VERSION:-0.0.0}

say() { echo "iso: $*"; }
command -v xorriso >/dev/null || { echo "iso: xorriso is missing" >&2; exit 1; }
for piece in vmlinuz initrd.img root.squashfs; do
    [ -f "$PIECES/$piece" ] || { echo "iso: $PIECES/$piece is missing" >&2; exit 1; }
done

# xorriso -map records a symbolic link as a link: map what the pieces resolve to.
PIECES=$(readlink -f "$PIECES")
KERNEL=$(readlink -f "$PIECES/vmlinuz")
INITRD=$(readlink -f "$PIECES/initrd.img")
SQUASHFS=$(readlink -f "$PIECES/root.squashfs")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fv-iso.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
BOOT=$PIECES/boot
if [ -e "$BOOT" ]; then BOOT=$(readlink -f "$BOOT"); fi
if [ ! -f "$BOOT/eltorito.img" ] || [ ! -f "$BOOT/efiboot.img" ]; then
    BOOT=$TMP/boot
    "$HERE/boot.sh" "$BOOT"
fi
for piece in eltorito.img efiboot.img core.img boot.img BOOTX64.EFI grub.cfg grub-iso.cfg; do
    [ -f "$BOOT/$piece" ] || { echo "iso: $BOOT/$piece is missing" >&2; exit 1; }
done
printf '%s\n' "$VERSION" >"$TMP/version"
# grub-mkimage's eltorito image is patched by xorriso (boot info table): give it a copy.
cp "$BOOT/eltorito.img" "$TMP/eltorito.img"

OUT_DIR=$(dirname "$OUT")
mkdir -p "$OUT_DIR"
PARTIAL=$OUT_DIR/.$(basename "$OUT").partial
rm -f "$PARTIAL"
volume_date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S00)

say "building $OUT (FVISO, version $VERSION)"
xorriso -no_rc -report_about WARNING \
    -outdev "stdio:$PARTIAL" \
    -volid FVISO -publisher firmvisor -application_id "firmvisor $VERSION" \
    -rockridge on -joliet on -compliance iso_9660_level=3 \
    -map "$KERNEL" /boot/vmlinuz \
    -map "$INITRD" /boot/initrd.img \
    -map "$BOOT/grub-iso.cfg" /boot/grub/grub.cfg \
    -map "$TMP/eltorito.img" /boot/grub/eltorito.img \
    -map "$BOOT/efiboot.img" /boot/efiboot.img \
    -map "$SQUASHFS" /live/root.squashfs \
    -map "$BOOT/core.img" /install/core.img \
    -map "$BOOT/boot.img" /install/boot.img \
    -map "$BOOT/BOOTX64.EFI" /install/BOOTX64.EFI \
    -map "$BOOT/grub.cfg" /install/grub.cfg \
    -map "$TMP/version" /install/version \
    -chown_r 0 / -- -chgrp_r 0 / -- \
    -chmod_r a+r,go-w / -- \
    -alter_date_r b-c "=$SOURCE_DATE_EPOCH" / -- -alter_date_r c "=$SOURCE_DATE_EPOCH" / -- \
    -volume_date uuid "$volume_date" -volume_date all_file_dates "=$SOURCE_DATE_EPOCH" \
    -boot_image grub bin_path=/boot/grub/eltorito.img \
    -boot_image grub cat_path=/boot/boot.cat \
    -boot_image grub load_size=2048 \
    -boot_image grub boot_info_table=on \
    -boot_image any next \
    -boot_image any efi_path=/boot/efiboot.img \
    -commit -end
mv "$PARTIAL" "$OUT"
digest=$(sha256sum "$OUT")
say "$OUT: $(( $(stat -c %s "$OUT") / 1048576 )) MiB, sha256 ${digest%% *}"
