#!/usr/bin/env bash
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# image/dev/boot-disk.sh [WORK_DIR]
#
# The boot harness of the disk layout and GRUB's boot counting (docs/image.md, image/grub/grub.cfg):
# builds the GRUB images, assembles disks from a small kernel and throwaway initramfs images that
# print their slot marker and /proc/cmdline and power off (so no boot is ever marked good), and boots
# them under TCG with SeaBIOS and with OVMF, checking after each boot the slot booted, the kernel
# command line (fv.slot=, fv.esp= the boot partition's GUID) and the tries GRUB saved:
#   1. a fresh disk boots A and takes a try (fv_tries_A 3 -> 2)
#   2. slot B on trial with 2 tries: B, B, then A (the trial ran out; fv_next cleared)
#   3. fv_active=B: B boots
#   4. the known-good slot A out of tries, B valid with tries: B
#   5. a trial of a slot that is not valid (no version): A, fv_next cleared
#   6. a trial of a slot whose kernel is not a kernel: GRUB falls back to A in the same boot
# then builds the ISO from the same pieces and boots it (fv.live=1) under both firmwares, and (as
# root, with loop devices) runs fv-install from the ISO's tree onto a loop device and boots that disk.
#
# Environment: FV_TEST_KERNEL (default /var/cache/firmvisor/guest/vmlinuz), FV_FIRMWARES (default
# "bios efi"), FV_BOOT_TIMEOUT seconds per boot (default 240), FV_SKIP_ISO=1, FV_SKIP_INSTALL=1.
# Every qemu it starts is killed and temporary files are removed on exit, whatever happens.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
IMAGE=$(dirname "$HERE")
WORK=${1:-/var/tmp/fvemb-harness}
KERNEL=${FV_TEST_KERNEL:-/var/cache/firmvisor/guest/vmlinuz}
FIRMWARES=${FV_FIRMWARES:-bios efi}
TIMEOUT=${FV_BOOT_TIMEOUT:-240}
OVMF_CODE=${FV_OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
OVMF_VARS=${FV_OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}
BUSYBOX=${FV_BUSYBOX:-/bin/busybox}
ASSEMBLE=(python3 "$IMAGE/tools/assemble.py")
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}

QEMU_PID=
LOOP=
PASSED=0
FAILED=0
RESULTS=

cleanup() {
    status=$?
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    QEMU_PID=
    if [ -n "$LOOP" ]; then
        losetup -d "$LOOP" 2>/dev/null || true
    fi
    rm -rf "$WORK/tmp"
    rm -f "$WORK"/disk-*.raw "$WORK"/vars-*.fd
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

say() { echo "harness: $*"; }
die() { echo "harness: FAIL: $*" >&2; exit 1; }

for tool in qemu-system-x86_64 mksquashfs cpio gzip mtype mcopy mkfs.vfat mkfs.ext4 xorriso; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[ -f "$KERNEL" ] || die "no test kernel at $KERNEL"
[ -x "$BUSYBOX" ] || die "no static busybox at $BUSYBOX (busybox-static)"
[ -f "$OVMF_CODE" ] || case " $FIRMWARES " in *" efi "*) die "no OVMF at $OVMF_CODE" ;; esac

mkdir -p "$WORK"
rm -rf "$WORK/tmp"
mkdir -p "$WORK/tmp" "$WORK/logs"
rm -f "$WORK"/logs/*.log

# ---- pieces --------------------------------------------------------------------------------------
say "GRUB images"
"$IMAGE/build/boot.sh" "$WORK/boot" >"$WORK/logs/build-boot.out" 2>&1 \
    || { cat "$WORK/logs/build-boot.out"; die "boot.sh"; }

# A throwaway initramfs: prints "fvtest: initramfs MARK up; cmdline: ..." and powers off.
make_initrd() {  # MARK OUT
    root=$WORK/tmp/initrd-$1
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/proc" "$root/dev"
    cp "$BUSYBOX" "$root/bin/busybox"
    cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
exec >/dev/console 2>&1
echo "fvtest: initramfs $1 up; cmdline: \$(/bin/busybox cat /proc/cmdline)"
/bin/busybox poweroff -f
EOF
    chmod 0755 "$root/init"
    (cd "$root" && find . | sort | cpio -o -H newc --quiet --reproducible | gzip -n -1) >"$2"
}
make_squashfs() {  # MARK OUT
    root=$WORK/tmp/squash-$1
    rm -rf "$root"
    mkdir -p "$root/boot"
    echo "firmvisor test slot $1" >"$root/slot"
    rm -f "$2"
    mksquashfs "$root" "$2" -quiet -noappend -all-root >/dev/null
}
P=$WORK/tmp/pieces
mkdir -p "$P"
make_initrd A "$P/initrd-A.img"
make_initrd B "$P/initrd-B.img"
make_initrd LIVE "$P/initrd-LIVE.img"
make_squashfs A "$P/root-A.squashfs"
make_squashfs B "$P/root-B.squashfs"

assemble() {  # OUT [slot B options]
    out=$1
    shift
    "${ASSEMBLE[@]}" disk --out "$out" --core "$WORK/boot/core.img" --boot-img "$WORK/boot/boot.img" \
        --efi "$WORK/boot/BOOTX64.EFI" --grub-cfg "$IMAGE/grub/grub.cfg" \
        --kernel "$KERNEL" --initrd "$P/initrd-A.img" --slot-a "$P/root-A.squashfs" \
        --version 0.0.0-test "$@" >>"$WORK/logs/assemble.out" 2>&1 \
        || { cat "$WORK/logs/assemble.out"; die "assemble.py disk $out"; }
}
say "disk images (A and B; A only)"
: >"$WORK/logs/assemble.out"
assemble "$WORK/disk-ab.img.raw" --slot-b "$P/root-B.squashfs" --kernel-b "$KERNEL" \
    --initrd-b "$P/initrd-B.img" --version-b 0.0.1-test --report "$WORK/logs/report-ab.json"
assemble "$WORK/disk-a.img.raw" --report "$WORK/logs/report-a.json"
head -c 200000 /dev/urandom >"$P/junk.bin"
assemble "$WORK/disk-junk-b.img.raw" --slot-b "$P/root-B.squashfs" --kernel-b "$P/junk.bin" --initrd-b "$P/junk.bin"
assemble "$WORK/disk-a2.img.raw"
[ "$(sha256sum <"$WORK/disk-a.img.raw")" = "$(sha256sum <"$WORK/disk-a2.img.raw")" ] \
    || die "the same pieces gave two different disks"
rm -f "$WORK/disk-a2.img.raw"
say "same pieces, same disk: sha256 $(sha256sum <"$WORK/disk-a.img.raw" | cut -c1-16)"
"${ASSEMBLE[@]}" verify --device "$WORK/disk-ab.img.raw" --report "$WORK/logs/report-ab.json" >/dev/null \
    || die "assemble.py verify of the disk it just wrote"
if command -v sfdisk >/dev/null; then
    sfdisk --verify "$WORK/disk-ab.img.raw" >/dev/null 2>&1 || die "sfdisk --verify finds errors"
fi

# ---- boots ---------------------------------------------------------------------------------------
# boot NAME FIRMWARE MEDIA EXPECT_MARK EXPECT_CMDLINE_WORD [EXPECT_GRUB_LINE]
#   MEDIA is "disk:PATH" or "cdrom:PATH". Waits (polling, with a deadline) for the initramfs line,
#   then checks it and GRUB's line on the serial console.
boot() {
    name=$1 firmware=$2 media=$3 mark=$4 word=$5 grub=${6:-}
    log=$WORK/logs/$name.log
    rm -f "$log"
    set -- qemu-system-x86_64 -accel tcg -cpu qemu64,svm=off,vmx=off -m 512 -nographic -monitor none -no-reboot -nic none \
        -serial "file:$log"
    case $media in
        disk:*) set -- "$@" -drive "file=${media#disk:},format=raw,if=virtio" ;;
        cdrom:*) set -- "$@" -drive "file=${media#cdrom:},format=raw,if=ide,media=cdrom,readonly=on" -boot d ;;
    esac
    if [ "$firmware" = efi ]; then
        vars=$WORK/vars-$name.fd
        cp "$OVMF_VARS" "$vars"
        set -- "$@" -drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE" \
            -drive "if=pflash,format=raw,file=$vars"
    fi
    started=$(date +%s)
    "$@" </dev/null >"$WORK/logs/$name.qemu.out" 2>&1 &
    QEMU_PID=$!
    deadline=$((started + TIMEOUT))
    line=
    while :; do
        line=$(grep -a -o 'fvtest: initramfs [A-Z]* up; cmdline: [^[:cntrl:]]*' "$log" 2>/dev/null | head -n 1) || true
        [ -n "$line" ] && break
        kill -0 "$QEMU_PID" 2>/dev/null || break
        [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 1
    done
    # The initramfs powers off; give qemu a moment to exit on its own, then make sure it is gone.
    waited=0
    while kill -0 "$QEMU_PID" 2>/dev/null && [ $waited -lt 10 ]; do sleep 1; waited=$((waited + 1)); done
    kill "$QEMU_PID" 2>/dev/null || true
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=
    seconds=$(( $(date +%s) - started ))
    rm -f "$WORK/vars-$name.fd"
    problem=
    if [ -z "$line" ]; then
        problem="no initramfs line within ${TIMEOUT}s"
    else
        got=$(echo "$line" | sed -n 's/^fvtest: initramfs \([A-Z]*\) up.*/\1/p')
        [ "$got" = "$mark" ] || problem="initramfs $got booted, expected $mark"
        case " ${line#*cmdline: } " in
            *" $word "*) ;;
            *) problem="${problem:+$problem; }cmdline lacks $word: ${line#*cmdline: }" ;;
        esac
        case " ${line#*cmdline: } " in
            *" console=ttyS0,115200 "*) ;;
            *) problem="${problem:+$problem; }cmdline lacks console=ttyS0,115200" ;;
        esac
        if [ -z "$grub" ]; then
            case $mark in
                LIVE) grub="firmvisor: grub: booting live" ;;
                *) grub="firmvisor: grub: booting slot $mark" ;;
            esac
        fi
        grep -a -q "$grub" "$log" || problem="${problem:+$problem; }no '$grub' on the console"
    fi
    if [ -z "$problem" ]; then
        PASSED=$((PASSED + 1))
        RESULTS="$RESULTS
  PASS  $name ($firmware, ${seconds}s): $line"
        say "PASS $name ($firmware, ${seconds}s): initramfs $mark, $word"
    else
        FAILED=$((FAILED + 1))
        RESULTS="$RESULTS
  FAIL  $name ($firmware, ${seconds}s): $problem"
        say "FAIL $name ($firmware, ${seconds}s): $problem (console: $log)"
    fi
}

env_get() {  # DISK NAME
    "${ASSEMBLE[@]}" env --disk "$1" | sed -n "s/^$2=//p"
}
env_set() {  # DISK NAME=VALUE...
    disk=$1
    shift
    for kv in "$@"; do set -- "$@" --set "$kv"; shift; done
    "${ASSEMBLE[@]}" env --disk "$disk" "$@" >/dev/null
}
expect_env() {  # DISK NAME VALUE WHAT
    value=$(env_get "$1" "$2")
    if [ "$value" = "$3" ]; then
        PASSED=$((PASSED + 1))
        RESULTS="$RESULTS
  PASS  $4: $2='$value'"
        say "PASS $4: $2='$value'"
    else
        FAILED=$((FAILED + 1))
        RESULTS="$RESULTS
  FAIL  $4: $2='$value', expected '$3'"
        say "FAIL $4: $2='$value', expected '$3'"
    fi
}

ESP_GUID=$("${ASSEMBLE[@]}" table --version 0.0.0-test --guid-of fvboot)
expect_tries() {  # DISK A B WHAT: fv_tries_A and fv_tries_B as GRUB saved them
    expect_env "$1" fv_tries_A "$2" "$4"
    expect_env "$1" fv_tries_B "$3" "$4"
}
for fw in $FIRMWARES; do
    disk=$WORK/disk-$fw.raw
    cp --sparse=always "$WORK/disk-ab.img.raw" "$disk"
    say "== $fw: A/B on $(basename "$disk") (boot partition $ESP_GUID)"
    boot "$fw-1-fresh" "$fw" "disk:$disk" A "fv.esp=$ESP_GUID"
    expect_tries "$disk" 2 0 "$fw-1 a try taken"
    env_set "$disk" fv_next=B fv_tries_B=2
    boot "$fw-2-trial-B-1" "$fw" "disk:$disk" B fv.slot=B "firmvisor: grub: trying slot B (1 tries left"
    boot "$fw-2-trial-B-2" "$fw" "disk:$disk" B fv.slot=B "firmvisor: grub: trying slot B (0 tries left"
    boot "$fw-2-trial-over" "$fw" "disk:$disk" A fv.slot=A "slot B failed its trial"
    expect_env "$disk" fv_next "" "$fw-2 the trial is over"
    expect_tries "$disk" 1 0 "$fw-2 tries"
    env_set "$disk" fv_active=B fv_tries_B=3
    boot "$fw-3-active-B" "$fw" "disk:$disk" B fv.slot=B
    env_set "$disk" fv_active=A fv_tries_A=0 fv_tries_B=3
    boot "$fw-4-A-out-of-tries" "$fw" "disk:$disk" B fv.slot=B "slot A failed (no tries left, or not valid): trying slot B"
    rm -f "$disk"
    disk=$WORK/disk-$fw-a.raw
    cp --sparse=always "$WORK/disk-a.img.raw" "$disk"
    env_set "$disk" fv_next=B fv_tries_B=3
    boot "$fw-5-trial-of-an-invalid-slot" "$fw" "disk:$disk" A fv.slot=A "slot B failed its trial"
    expect_env "$disk" fv_next "" "$fw-5 the trial is over"
    rm -f "$disk"
    disk=$WORK/disk-$fw-junk.raw
    cp --sparse=always "$WORK/disk-junk-b.img.raw" "$disk"
    env_set "$disk" fv_next=B fv_tries_B=3
    boot "$fw-6-next-B-bad-kernel" "$fw" "disk:$disk" A fv.slot=A
    if grep -a -q "Falling back to .firmvisor slot A" "$WORK/logs/$fw-6-next-B-bad-kernel.log"; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
        RESULTS="$RESULTS
  FAIL  $fw-6: no GRUB fallback message"
    fi
    rm -f "$disk"
done

if [ "${FV_SKIP_ISO:-0}" != 1 ]; then
    say "ISO"
    iso_pieces=$WORK/tmp/iso-pieces
    mkdir -p "$iso_pieces"
    cp "$KERNEL" "$iso_pieces/vmlinuz"
    cp "$P/initrd-LIVE.img" "$iso_pieces/initrd.img"
    cp "$P/root-A.squashfs" "$iso_pieces/root.squashfs"
    ln -s "$WORK/boot" "$iso_pieces/boot"
    FV_VERSION=0.0.0-test "$IMAGE/build/iso.sh" "$WORK/firmvisor-test.iso" "$iso_pieces" \
        >"$WORK/logs/build-iso.out" 2>&1 || { cat "$WORK/logs/build-iso.out"; die "iso.sh"; }
    for fw in $FIRMWARES; do
        boot "$fw-iso" "$fw" "cdrom:$WORK/firmvisor-test.iso" LIVE fv.live=1
    done
fi

# fv-install: the installer's own path onto a block device (a loop device here), then boot that disk.
if [ "${FV_SKIP_ISO:-0}" != 1 ] && [ "${FV_SKIP_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ] \
        && command -v losetup >/dev/null && [ -e /dev/loop-control ]; then
    say "fv-install onto a loop device"
    tree=$WORK/tmp/iso-tree
    mkdir -p "$tree"
    xorriso -osirrox on -indev "$WORK/firmvisor-test.iso" -extract / "$tree" >/dev/null 2>&1 \
        || die "extracting the ISO"
    installed=$WORK/disk-installed.raw
    rm -f "$installed"
    truncate -s 2G "$installed"
    LOOP=$(losetup -f --show "$installed") || die "losetup"
    printf '{"hostname": "hv-test", "install_to": "%s"}\n' "$LOOP" >"$WORK/tmp/seed.json"
    # --force: this is not a live boot (no fv.live=1 in /proc/cmdline); loop devices are allowed only here
    if FV_INSTALL_ALLOW_LOOP=1 python3 "$IMAGE/tools/fvinstall.py" --force --no-reboot \
            --seed "$WORK/tmp/seed.json" --source "$tree" >"$WORK/logs/fv-install.out" 2>&1; then
        PASSED=$((PASSED + 1))
        RESULTS="$RESULTS
  PASS  fv-install onto $LOOP: $(grep -c 'verify .* ok' "$WORK/logs/fv-install.out") regions verified"
        say "PASS fv-install onto $LOOP"
    else
        FAILED=$((FAILED + 1))
        RESULTS="$RESULTS
  FAIL  fv-install onto $LOOP (see $WORK/logs/fv-install.out)"
        cat "$WORK/logs/fv-install.out"
    fi
    losetup -d "$LOOP"
    LOOP=
    for fw in $FIRMWARES; do
        boot "$fw-installed" "$fw" "disk:$installed" LIVE fv.slot=A "firmvisor: grub: booting slot A"
    done
    rm -f "$installed"
fi

say "results ($PASSED passed, $FAILED failed):$RESULTS"
[ "$FAILED" -eq 0 ] || exit 1
say "all passed; consoles in $WORK/logs"
