#!/bin/sh
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# build-initramfs.sh ROOTFS_DIR OUT_INITRD
#
# firmvisor's own initramfs (not initramfs-tools): a static busybox (ROOTFS_DIR's busybox-static,
# else the build machine's), the storage and file system modules of ROOTFS_DIR's kernel with their
# dependencies, and an /init that finds the system (docs/image.md):
#   fv.slot=X    the partition whose GPT name is fvslotX: its squashfs
#   fv.live=1    the ISO 9660 volume labelled FVISO: its /live/root.squashfs (through a loop device)
# mounts it read-only under a tmpfs overlay and switches root to /sbin/init. /run (moved into the
# new root) holds /run/firmvisor/{slot,boot-device} (slot: A, B or "live"), the squashfs at
# /run/firmvisor/lower, the tmpfs upper layer at /run/firmvisor/rw and, live, the ISO at
# /run/firmvisor/medium. On failure: a "firmvisor: initramfs: ERROR ..." line and a shell on the
# console. Kernel command line extras: fv.timeout=SECONDS (default 30) to wait for the device,
# fv.break=1 for a shell before switching root, fv.debug=1 to trace /init.
#
# The result is also copied to ROOTFS_DIR/boot/initrd.img (the slot's squashfs carries it, see
# docs/image.md). Deterministic: sorted newc cpio, owner 0, every mtime SOURCE_DATE_EPOCH, gzip -n.
set -eu

ROOT=${1:?usage: build-initramfs.sh ROOTFS_DIR OUT_INITRD}
OUT=${2:?usage: build-initramfs.sh ROOTFS_DIR OUT_INITRD}
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
KVER=$(ls "$ROOT/lib/modules")
[ "$(echo "$KVER" | wc -w)" = 1 ] || die "expected one kernel in $ROOT/lib/modules, found: $KVER"
MODDIR=$ROOT/lib/modules/$KVER

# A static busybox: the root filesystem's (busybox-static), else the build machine's.
is_static() {  # an ELF file without a PT_INTERP program header
    python3 -c '
import struct, sys
with open(sys.argv[1], "rb") as handle:
    data = handle.read(1 << 16)
if data[:4] != b"\x7fELF" or data[4] != 2:
    sys.exit(1)
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
sys.exit(1 if 3 in types else 0)' "$1"
}
BUSYBOX=
for candidate in "$ROOT/usr/bin/busybox" "$ROOT/bin/busybox" /usr/bin/busybox /bin/busybox; do
    if [ -f "$candidate" ] && is_static "$candidate"; then BUSYBOX=$candidate; break; fi
done
[ -n "$BUSYBOX" ] || die "no static busybox (install busybox-static in the image or on the build machine)"

# The modules /init loads, in this order (dependencies and soft dependencies first).
# Loaded first: QEMU (virtio, AHCI, IDE), NVMe, USB sticks and BMC virtual media, SD cards (the
# classic embedded hypervisor boot device), and the file systems.
MODULES="virtio_pci virtio_blk virtio_scsi scsi_mod sd_mod sr_mod ahci ata_piix nvme
         usb-storage uas xhci_pci xhci_hcd ehci_pci ehci_hcd ohci_pci uhci_hcd usbhid hid_generic
         mmc_block sdhci_pci sdhci_acpi
         loop squashfs overlay crc32c_generic ext4 vfat nls_cp437 nls_iso8859-1 nls_utf8 isofs"
# Loaded only when the system is not found within a few seconds: the common server RAID/SAS HBAs
# (every module costs time under TCG, where none of these is ever needed).
MODULES_LATER="megaraid_sas mpt3sas hpsa smartpqi aacraid mptsas mptspi vmw_pvscsi"

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
for applet in $("$TREE/bin/busybox" --list-full); do
    [ -e "$applet" ] || ln -s /bin/busybox "$applet"
done
mknod -m 0600 dev/console c 5 1
mknod -m 0666 dev/null c 1 3

say "modules of $KVER: $(echo $MODULES); later: $(echo $MODULES_LATER)"
python3 - "$MODDIR" "$TREE/lib/modules/$KVER" "$TREE/etc/fv-modules" $MODULES -- $MODULES_LATER <<'EOF'
import lzma, os, shutil, subprocess, sys
moddir, out, order_file = sys.argv[1], sys.argv[2], sys.argv[3]
split = sys.argv.index('--')
wanted, later = sys.argv[4:split], sys.argv[split + 1:]
def name_of(path):
    base = os.path.basename(path)
    for suffix in ('.xz', '.zst', '.gz'):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    return base[:-3].replace('-', '_') if base.endswith('.ko') else None
deps, paths = {}, {}
with open(os.path.join(moddir, 'modules.dep')) as handle:
    for line in handle:
        mod, _, rest = line.partition(':')
        mod = mod.strip()
        paths[name_of(mod)] = mod
        deps[mod] = rest.split()
builtin = set()
for line in open(os.path.join(moddir, 'modules.builtin')):
    builtin.add(name_of(line.strip()))
soft = {}
if os.path.exists(os.path.join(moddir, 'modules.softdep')):
    for line in open(os.path.join(moddir, 'modules.softdep')):
        words = line.split()
        if len(words) > 2 and words[0] == 'softdep':
            pre = []
            mode = None
            for word in words[2:]:
                if word in ('pre:', 'post:'):
                    mode = word
                elif mode == 'pre:':
                    pre.append(word.replace('-', '_'))
            soft[words[1].replace('-', '_')] = pre
order, seen, missing = [], set(), []
def visit(mod):
    if mod in seen:
        return
    seen.add(mod)
    for dep in reversed(deps[mod]):  # modules.dep lists the deepest dependency last
        visit(dep)
    order.append(mod)
def want(name):
    name = name.replace('-', '_')
    for pre in soft.get(name, []):
        if pre in paths:
            want(pre)
    if name in paths:
        visit(paths[name])
    elif name not in builtin:
        missing.append(name)
for name in wanted:
    want(name)
first = len(order)
for name in later:
    want(name)
if missing:
    print('initramfs:   not in this kernel (skipped): %s' % ' '.join(missing))
for mod in order:
    src = os.path.join(moddir, mod)
    rel = mod.rsplit('.ko', 1)[0] + '.ko'
    dst = os.path.join(out, rel)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if mod.endswith('.xz'):
        with lzma.open(src) as fin, open(dst, 'wb') as fout:
            shutil.copyfileobj(fin, fout)
    elif mod.endswith('.zst'):
        with open(dst, 'wb') as fout:
            subprocess.run(['zstd', '-dcq', src], stdout=fout, check=True)
    else:
        shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
for path, mods in ((order_file, order[:first]), (order_file + '-later', order[first:])):
    with open(path, 'w') as handle:
        handle.write(''.join(m.rsplit('.ko', 1)[0] + '.ko\n' for m in mods))
print('initramfs:   %d + %d modules (with dependencies)' % (first, len(order) - first))
EOF
for file in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "$MODDIR/$file" ] && cp "$MODDIR/$file" "lib/modules/$KVER/"
done
depmod -b "$TREE" "$KVER"
echo "$KVER" >etc/fv-kernel

cat >init <<'INIT'
#!/bin/sh
# firmvisor initramfs /init (build-initramfs.sh; docs/image.md is the contract)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
exec </dev/console >/dev/console 2>&1

say() { echo "firmvisor: initramfs: $*"; }
rescue() {
    echo "firmvisor: initramfs: ERROR: $*"
    echo "firmvisor: initramfs: dropping to a shell on the console ('reboot -f' restarts)"
    setsid cttyhack sh
    echo "firmvisor: initramfs: the shell exited; rebooting"
    sync
    reboot -f
}
uptime_s() { read -r up _ </proc/uptime; echo "${up%.*}"; }

SLOT= LIVE= TIMEOUT=30 BREAK= DEBUG=
for word in $(cat /proc/cmdline); do
    case "$word" in
        fv.slot=*) SLOT=${word#fv.slot=} ;;
        fv.live=1) LIVE=1 ;;
        fv.timeout=*) TIMEOUT=${word#fv.timeout=} ;;
        fv.break=1) BREAK=1 ;;
        fv.debug=1) DEBUG=1 ;;
    esac
done
[ -n "$DEBUG" ] && set -x
KVER=$(cat /etc/fv-kernel)
say "firmvisor initramfs, kernel $(uname -r)"
[ "$(uname -r)" = "$KVER" ] || say "warning: built for kernel $KVER, running $(uname -r)"

if [ -n "$LIVE" ]; then
    WHAT="the ISO 9660 volume labelled FVISO"
elif [ -n "$SLOT" ]; then
    case "$SLOT" in A|B) ;; *) rescue "fv.slot=$SLOT is not a slot (A or B)" ;; esac
    WHAT="the partition named fvslot$SLOT"
else
    rescue "the kernel command line has neither fv.slot=A|B nor fv.live=1: $(cat /proc/cmdline)"
fi

loaded=0 failed=
load_modules() {
    while read -r module; do
        if insmod "/lib/modules/$KVER/$module" 2>/tmp/insmod.err; then
            loaded=$((loaded + 1))
        elif ! grep -q 'exists' /tmp/insmod.err; then
            failed="$failed ${module##*/}"
        fi
    done <"$1"
}
load_modules /etc/fv-modules
say "loaded $loaded modules${failed:+ (failed:$failed)}"

# The device: by GPT name (PARTNAME= in the uevent), or the ISO 9660 primary volume descriptor
# (sector 16: type 1, "CD001", volume identifier at byte 40).
find_partname() {
    for uevent in /sys/class/block/*/uevent; do
        if grep -qx "PARTNAME=$1" "$uevent" 2>/dev/null; then
            echo "/dev/$(sed -n 's/^DEVNAME=//p' "$uevent")"
            return 0
        fi
    done
    return 1
}
iso_label() {
    [ "$(dd if="$1" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ] || return 0
    dd if="$1" bs=1 skip=32808 count=32 2>/dev/null | sed 's/ *$//'
}
find_iso() {
    for dir in /sys/class/block/*; do
        name=${dir##*/}
        case "$name" in loop*|ram*|zram*|dm-*) continue ;; esac
        [ -e "$dir/partition" ] && continue
        if [ "$(iso_label "/dev/$name")" = FVISO ]; then echo "/dev/$name"; return 0; fi
    done
    for dir in /sys/class/block/*; do
        [ -e "$dir/partition" ] || continue
        name=${dir##*/}
        if [ "$(iso_label "/dev/$name")" = FVISO ]; then echo "/dev/$name"; return 0; fi
    done
    return 1
}
say "waiting for $WHAT (up to $TIMEOUT s)"
deadline=$(( $(uptime_s) + TIMEOUT ))
later=$(( $(uptime_s) + 3 ))
DEVICE=
while :; do
    if [ -n "$LIVE" ]; then DEVICE=$(find_iso); else DEVICE=$(find_partname "fvslot$SLOT"); fi
    [ -n "$DEVICE" ] && [ -b "$DEVICE" ] && break
    if [ -n "$later" ] && [ "$(uptime_s)" -ge "$later" ]; then
        later=
        before=$loaded
        load_modules /etc/fv-modules-later
        say "not found yet: loaded $((loaded - before)) more modules (RAID/SAS controllers)"
    fi
    if [ "$(uptime_s)" -ge "$deadline" ]; then
        ls /sys/class/block >/tmp/devices 2>&1
        rescue "$WHAT did not appear within $TIMEOUT s (block devices: $(echo $(cat /tmp/devices)))"
    fi
    sleep 0.2
done
say "found $DEVICE"

mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mkdir -p /run/firmvisor/lower /run/firmvisor/rw
if [ -n "$LIVE" ]; then
    mkdir -p /run/firmvisor/medium
    mount -t iso9660 -o ro "$DEVICE" /run/firmvisor/medium || rescue "cannot mount $DEVICE (iso9660)"
    [ -f /run/firmvisor/medium/live/root.squashfs ] || rescue "$DEVICE has no /live/root.squashfs"
    mount -t squashfs -o ro,loop /run/firmvisor/medium/live/root.squashfs /run/firmvisor/lower \
        || rescue "cannot mount /live/root.squashfs of $DEVICE"
    echo live >/run/firmvisor/slot
else
    mount -t squashfs -o ro "$DEVICE" /run/firmvisor/lower || rescue "cannot mount $DEVICE (squashfs)"
    echo "$SLOT" >/run/firmvisor/slot
fi
echo "$DEVICE" >/run/firmvisor/boot-device
mount -t tmpfs -o mode=0755 tmpfs /run/firmvisor/rw
mkdir -p /run/firmvisor/rw/upper /run/firmvisor/rw/work
chmod 0755 /run/firmvisor/rw/upper
mount -t overlay -o lowerdir=/run/firmvisor/lower,upperdir=/run/firmvisor/rw/upper,workdir=/run/firmvisor/rw/work \
    overlay /root || rescue "cannot mount the overlay root"
[ -e /root/sbin/init ] || [ -L /root/sbin/init ] || rescue "$DEVICE has no /sbin/init"
say "root: squashfs $DEVICE (read-only) under a tmpfs overlay; slot $(cat /run/firmvisor/slot)"

[ -n "$BREAK" ] && { say "fv.break=1: a shell before switching root (exit to continue)"; setsid cttyhack sh; }
for dir in run dev proc sys; do
    mount --move "/$dir" "/root/$dir" || rescue "cannot move /$dir into the new root"
done
say "switching root"
exec switch_root /root /sbin/init
INIT
chmod 0755 init

say "cpio: $(find . | wc -l) entries"
find . -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$(dirname "$OUT")"
find . | sed 's|^\./||' | grep -v '^\.$' | sort | cpio -o -H newc -R 0:0 --reproducible --quiet | gzip -n -9 >"$TMP/initrd.img"
cd /
mv "$TMP/initrd.img" "$OUT"
mkdir -p "$ROOT/boot"
cp "$OUT" "$ROOT/boot/initrd.img"
chmod 0644 "$ROOT/boot/initrd.img"
say "$OUT: $(( $(stat -c %s "$OUT") / 1024 )) KiB, sha256 $(sha256sum "$OUT" | cut -d' ' -f1); also $ROOT/boot/initrd.img"
