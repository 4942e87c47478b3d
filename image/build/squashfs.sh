#!/usr/bin/env bash
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# squashfs.sh ROOTFS_DIR OUT.squashfs
#     The slot's squashfs (lz4, high compression) of ROOTFS_DIR (rootfs.sh, then initramfs.sh,
#     which puts the initramfs at /boot/initrd.img): the contents of proc/ sys/ dev/ run/ tmp/ left
#     out (the directories stay: they are mount points), /boot kept.
#
# Environment:
#     SOURCE_DATE_EPOCH  every timestamp (default 2025-01-01)
set -euo pipefail

ROOT=${1:?usage: squashfs.sh ROOTFS_DIR OUT.squashfs}
OUT=${2:?usage: squashfs.sh ROOTFS_DIR OUT.squashfs}
: "${SOURCE_DATE_EPOCH:=1735689600}"

say() { echo "image: $*"; }
die() { echo "image: error: $*" >&2; exit 1; }

command -v mksquashfs >/dev/null || die "mksquashfs is missing (squashfs-tools)"
[ -x "$ROOT/sbin/init" ] || die "$ROOT has no /sbin/init: not a root filesystem"
compgen -G "$ROOT/boot/vmlinuz-*" >/dev/null || die "$ROOT/boot has no vmlinuz-*"
[ -f "$ROOT/boot/initrd.img" ] || say "warning: $ROOT/boot/initrd.img is missing (run initramfs.sh first)"
for dir in proc sys dev run tmp; do mkdir -p "$ROOT/$dir"; done
chmod 1777 "$ROOT/tmp"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fv-squash.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
# The contents only: the directories themselves must exist in the image (mount points).
for dir in proc sys dev run tmp; do printf '%s/*\n%s/.*\n' "$dir" "$dir"; done >"$TMP/excludes"
mkdir -p "$(dirname "$OUT")"
partial="$(dirname "$OUT")/.$(basename "$OUT").partial"
rm -f "$partial"
say "squashfs: $OUT (lz4 -Xhc)"
# -all-time: every inode gets SOURCE_DATE_EPOCH (given as options: mksquashfs refuses both the
# variable and the options, and reads the variable only in some versions; rootfs.sh compiled the
# Python bytecode hash-based, so it stays valid). lz4 rather than zstd: a boot reads tens of MiB
# from the root, and lz4 decompresses several times faster; its high-compression mode keeps the
# slot under 250 MB (docs/image.md, "Boot time", has the figures).
env -u SOURCE_DATE_EPOCH mksquashfs "$ROOT" "$partial" -noappend -quiet -no-progress \
    -comp lz4 -Xhc -b 131072 \
    -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" \
    -wildcards -ef "$TMP/excludes"
mv "$partial" "$OUT"
size=$(stat -c %s "$OUT")
digest=$(sha256sum "$OUT")
say "squashfs: $OUT $((size / 1048576)) MiB ($size bytes), sha256 ${digest%% *}"
