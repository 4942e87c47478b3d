#!/usr/bin/env bash
# Build the tiny guest used by the demo and the tests:
#   $FV_GUEST_DIR/vmlinuz     a Debian kernel (downloaded through the machine's own apt sources,
#                             never installed on the host)
#   $FV_GUEST_DIR/initrd.img  a gzip'd newc cpio: busybox-static + /init
# The guest prints exactly "firmvisor-guest <name> booted" on its console (and on ttyS0), where
# <name> comes from the kernel command line "fv.name=<name>" (default "guest"), then runs forever.
# It powers off on an ACPI power-button press (virsh shutdown); "fv.shell=1" adds a console shell.
#
# Output lives outside the repository (QEMU runs as libvirt-qemu and cannot traverse a 0700 dir):
# dirs 0755, files 0644. Idempotent: skipped when the outputs match the stamp.
set -euo pipefail

OUT=${FV_GUEST_DIR:-/var/cache/firmvisor/guest}
BUSYBOX=/bin/busybox
SELF=$(readlink -f "$0")

log() { printf 'build-guest: %s\n' "$*"; }
die() { printf 'build-guest: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (install busybox-static: make setup)"
"$BUSYBOX" ls >/dev/null 2>&1 || die "$BUSYBOX does not run"
file_is_static() { ! LC_ALL=C ldd "$1" >/dev/null 2>&1; }
file_is_static "$BUSYBOX" || die "$BUSYBOX is not static (install busybox-static)"
for t in cpio gzip dpkg-deb apt-get apt-cache sha256sum; do
  command -v "$t" >/dev/null || die "$t missing"
done

busybox_version=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)
key=$( { sha256sum <"$SELF"; sha256sum <"$BUSYBOX"; echo "$busybox_version"; } | sha256sum | cut -d' ' -f1)
stamp="$OUT/.stamp"

if [ -f "$stamp" ] && [ "$(sed -n 's/^key=//p' "$stamp")" = "$key" ] &&
   (cd "$OUT" && sed -n 's/^sha256=//p' .stamp | sha256sum --status -c - 2>/dev/null); then
  log "up to date: $OUT ($(sed -n 's/^kernel=//p' "$stamp"))"
  exit 0
fi

# --- kernel: the package linux-image-amd64 currently depends on -------------------------------
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null |
               sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1; }
pkg=$(kernel_pkg)
if [ -z "$pkg" ]; then
  log "apt lists lack linux-image-amd64; running apt-get update"
  apt-get update -qq
  pkg=$(kernel_pkg)
fi
[ -n "$pkg" ] || die "cannot resolve the kernel package behind linux-image-amd64"
kver=${pkg#linux-image-}

work=$(mktemp -d /tmp/fv-guest.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/dl" "$work/kernel" "$work/root"
# apt's download sandbox user (_apt) must be able to write the download dir.
if id _apt >/dev/null 2>&1; then chown _apt "$work/dl"; chmod 0755 "$work"; fi
log "downloading $pkg"
(cd "$work/dl" && apt-get download -q "$pkg") >/dev/null || die "apt-get download $pkg failed"
deb=$(ls "$work"/dl/*.deb)
pkg_version=$(dpkg-deb -f "$deb" Version)
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/kernel" --wildcards \
  "./boot/vmlinuz-*" "*/kernel/drivers/acpi/button.ko*" "*/kernel/drivers/input/evdev.ko*"
vmlinuz=$(find "$work/kernel/boot" -name "vmlinuz-*" | sort | head -n1)
[ -s "$vmlinuz" ] || die "no boot/vmlinuz-* in $pkg"

# --- initramfs -------------------------------------------------------------------------------
r="$work/root"
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,var/log,var/run,lib/modules,etc/acpi/PWRF}
cp "$BUSYBOX" "$r/bin/busybox"
ln -s busybox "$r/bin/sh"
for m in button evdev; do
  f=$(find "$work/kernel" -name "$m.ko*" | head -n1)
  [ -n "$f" ] && cp "$f" "$r/lib/modules/"
done
cat >"$r/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "firmvisor-guest: power button, powering off" >/dev/console
sync
exec poweroff -f
EOF
cat >"$r/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
name=guest
shell=0
for w in $(cat /proc/cmdline); do
  case "$w" in
    fv.name=*) name=${w#fv.name=} ;;
    fv.shell=1) shell=1 ;;
  esac
done
hostname "$name"
msg="firmvisor-guest $name booted"
echo "$msg" >/dev/console
case " $(cat /sys/class/tty/console/active 2>/dev/null) " in
  *" ttyS0 "*) ;;
  *) [ -c /dev/ttyS0 ] && echo "$msg" >/dev/ttyS0 2>/dev/null ;;
esac
# graceful shutdown on the ACPI power button (virsh shutdown)
for m in /lib/modules/*.ko*; do [ -e "$m" ] && insmod "$m" 2>/dev/null; done
acpid -c /etc/acpi -l /var/log/acpid.log 2>/dev/null
if [ "$shell" = 1 ]; then
  while :; do setsid cttyhack sh; sleep 1; done
fi
while :; do sleep 3600; done
EOF
chmod 0755 "$r/init" "$r/etc/acpi/PWRF/00000080" "$r/bin/busybox"

# Reproducible archive: sorted names, fixed mtimes, no gzip timestamp.
find "$r" -exec touch -h -d @0 {} +
(cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible -R 0:0 --quiet) |
  gzip -n -9 >"$work/initrd.img"

# --- publish ---------------------------------------------------------------------------------
install -d -m 0755 "$(dirname "$OUT")" "$OUT"
install -m 0644 "$vmlinuz" "$OUT/vmlinuz.new"
install -m 0644 "$work/initrd.img" "$OUT/initrd.img.new"
mv -f "$OUT/vmlinuz.new" "$OUT/vmlinuz"
mv -f "$OUT/initrd.img.new" "$OUT/initrd.img"
{
  echo "key=$key"
  echo "kernel=$pkg $pkg_version"
  echo "kernel_version=$kver"
  echo "busybox=$busybox_version"
  (cd "$OUT" && sha256sum vmlinuz initrd.img) | sed 's/^/sha256=/'
} >"$stamp.new"
chmod 0644 "$stamp.new"
mv -f "$stamp.new" "$stamp"
log "built $OUT/vmlinuz ($pkg $pkg_version) and $OUT/initrd.img"
