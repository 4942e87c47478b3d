#!/usr/bin/env bash
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# boot.sh OUT_DIR
#
# The GRUB images of the firmvisor disk and ISO, made with grub-mkimage from the build machine's
# grub-pc-bin, grub-efi-amd64-bin and grub-common (no grub-install, no loop devices, no mounts):
#
#   BOOTX64.EFI   x86_64-efi GRUB for the disk's ESP (fvboot)       early config: image/grub/early-disk.cfg
#   core.img      i386-pc GRUB for the disk's BIOS boot partition   early config: image/grub/early-disk.cfg
#   boot.img      i386-pc MBR boot code (assemble.py patches it and core.img's blocklist)
#   eltorito.img  i386-pc-eltorito GRUB for the ISO (BIOS El Torito)  early config: image/grub/early-iso.cfg
#   efiboot.img   FAT image holding /EFI/BOOT/BOOTX64.EFI for the ISO (UEFI El Torito)
#   BOOTX64-iso.EFI  the x86_64-efi GRUB inside efiboot.img
#   grub.cfg, grub-iso.cfg  image/grub's configurations of the disk and the ISO, with "set fv_debug=1"
#                 when FV_DEBUG=1 (a debug image: GRUB's menu can be edited)
#
# Every module is built into the images (nothing is loaded from disk at boot). The same inputs give
# byte-identical outputs (fixed FAT volume id, SOURCE_DATE_EPOCH for mtools).
set -euo pipefail

OUT=${1:?usage: boot.sh OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
IMAGE=$(dirname "$HERE")
GRUB_LIB=${GRUB_LIB:-/usr/lib/grub}
: "${SOURCE_DATE_EPOCH:=1735689600}"
export SOURCE_DATE_EPOCH

say() { echo "boot: $*"; }

for tool in grub-mkimage mkfs.vfat mmd mcopy; do
    command -v "$tool" >/dev/null || { echo "boot: $tool is missing (grub-common, dosfstools, mtools)" >&2; exit 1; }
done
for dir in "$GRUB_LIB/i386-pc" "$GRUB_LIB/x86_64-efi"; do
    [ -d "$dir" ] || { echo "boot: $dir is missing (grub-pc-bin, grub-efi-amd64-bin)" >&2; exit 1; }
done

# Modules in every image; the platform-specific ones are added below.
COMMON=(part_gpt part_msdos fat ext2 iso9660 normal linux boot configfile loadenv echo test true
        search search_label search_fs_file search_fs_uuid serial terminal gzio all_video
        minicmd cat ls sleep halt reboot probe)
EFI_MODS=("${COMMON[@]}" efi_gop efi_uga linuxefi)
PC_MODS=("${COMMON[@]}" biosdisk)

mkdir -p "$OUT"
DEBUG=${FV_DEBUG:-0}
for cfg in grub.cfg grub-iso.cfg; do
    sed "s/^set fv_debug=0\$/set fv_debug=$DEBUG/" "$IMAGE/grub/$cfg" >"$OUT/$cfg"
    grep -qx "set fv_debug=$DEBUG" "$OUT/$cfg" || { echo "boot: $cfg has no 'set fv_debug=0' line" >&2; exit 1; }
done
say "grub.cfg, grub-iso.cfg (fv_debug=$DEBUG)"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fv-boot.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# GRUB runs the embedded config with its rescue parser, which knows no comments: strip them.
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$IMAGE/grub/early-disk.cfg" >"$TMP/early-disk.cfg"
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$IMAGE/grub/early-iso.cfg" >"$TMP/early-iso.cfg"

# The prefix carries no device on EFI (GRUB takes the partition BOOTX64.EFI was loaded from) and
# the boot drive's partition 2 on BIOS (GRUB fills in the drive it was booted from): the early
# config searches for the FAT labelled FVBOOT with that partition as the hint, so the disk the
# firmware booted wins over any other disk carrying a firmvisor boot partition.
grub-mkimage -d "$GRUB_LIB/x86_64-efi" -O x86_64-efi -o "$OUT/BOOTX64.EFI" \
    -p /grub -c "$TMP/early-disk.cfg" "${EFI_MODS[@]}"
say "BOOTX64.EFI $(stat -c %s "$OUT/BOOTX64.EFI") bytes"
grub-mkimage -d "$GRUB_LIB/i386-pc" -O i386-pc -o "$OUT/core.img" \
    -p '(,gpt2)/grub' -c "$TMP/early-disk.cfg" "${PC_MODS[@]}"
size=$(stat -c %s "$OUT/core.img")
# fvbios is 1 MiB; the BIOS loads core.img below 640 KiB from 0x8000 on.
[ "$size" -le 458752 ] || { echo "boot: core.img is $size bytes, too big for the BIOS boot path" >&2; exit 1; }
say "core.img $size bytes"
cp "$GRUB_LIB/i386-pc/boot.img" "$OUT/boot.img"
chmod 0644 "$OUT/boot.img"

# ISO: BIOS El Torito image and the UEFI El Torito FAT image.
grub-mkimage -d "$GRUB_LIB/i386-pc" -O i386-pc-eltorito -o "$OUT/eltorito.img" \
    -p /boot/grub -c "$TMP/early-iso.cfg" "${PC_MODS[@]}"
say "eltorito.img $(stat -c %s "$OUT/eltorito.img") bytes"
grub-mkimage -d "$GRUB_LIB/x86_64-efi" -O x86_64-efi -o "$OUT/BOOTX64-iso.EFI" \
    -p /boot/grub -c "$TMP/early-iso.cfg" "${EFI_MODS[@]}"
efi_size=$(stat -c %s "$OUT/BOOTX64-iso.EFI")
# FAT12/16 image: the EFI binary plus 1 MiB of room, rounded up to whole MiB.
mib=$(( (efi_size + (1 << 20) - 1) / (1 << 20) + 1 ))
rm -f "$TMP/efiboot.img"
truncate -s "${mib}M" "$TMP/efiboot.img"
mkfs.vfat --invariant -i 46564953 -n FVISOEFI "$TMP/efiboot.img" >/dev/null
mmd -i "$TMP/efiboot.img" ::/EFI ::/EFI/BOOT
mcopy -i "$TMP/efiboot.img" "$OUT/BOOTX64-iso.EFI" ::/EFI/BOOT/BOOTX64.EFI
mv "$TMP/efiboot.img" "$OUT/efiboot.img"
say "efiboot.img ${mib} MiB"
say "done in $OUT"
