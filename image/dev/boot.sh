#!/usr/bin/env bash
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# image/dev/boot.sh [PIECES_DIR]
#
# The image developer's harness: boots the kernel and initramfs of a build under QEMU (TCG) straight
# (without GRUB) on its disk, and checks the running system:
#   disk.qcow2  an overlay of the build's firmvisor.img
#   seed.iso  FVSEED: seed.json with hostname, a fresh ed25519 authorized key, DHCP (a CD-ROM drive:
#             removable media, where the image takes a seed from)
# First boot: waits for "firmvisor ready" on the serial console, then checks over SSH (QEMU user
# networking, restrict=on, SSH forwarded from a free port on 127.0.0.1): / is an overlay over a
# read-only squashfs, libvirtd answers locally and over qemu+ssh:// from here. Then it defines a
# tiny domain, writes /etc/fv-test by hand, notes the SSH host key, runs fv-state save and reboots
# inside; after the second "firmvisor ready": the domain is still defined, /etc/fv-test is gone,
# the host key is the same. QEMU is killed and the work files removed at the end, whatever happens.
#
# PIECES_DIR holds root.squashfs, vmlinuz, initrd.img and firmvisor.img (default /var/lib/firmvisor/images/molecule: the
# image molecule/embedded builds).
# Environment: FV_WORK (default /var/tmp/fvemb-dev-boot), FV_BOOT_TIMEOUT (default 300 s per
# boot), FV_KEEP=1 keeps the work directory, FV_LIVE=1 boots the squashfs from an FVISO ISO with
# fv.live=1 instead (stateless: checks the overlay and libvirtd, and that nothing persists);
# FV_SEED=malformed boots with a broken seed.json and checks the console only (nobody can log in);
# FV_APPEND adds kernel command line arguments; FV_HOLD=SECONDS keeps the server running that long
# after the checks (prints the ssh command).
set -euo pipefail

PIECES=${1:-/var/lib/firmvisor/images/molecule}
WORK=${FV_WORK:-/var/tmp/fvemb-dev-boot}
BOOT_TIMEOUT=${FV_BOOT_TIMEOUT:-300}
LIVE=${FV_LIVE:-0}
for piece in root.squashfs vmlinuz initrd.img firmvisor.img; do
    [ -f "$PIECES/$piece" ] || { echo "dev-boot: $PIECES/$piece is missing" >&2; exit 2; }
done
for tool in qemu-img genisoimage ssh ssh-keygen ssh-keyscan qemu-system-x86_64 python3 virsh; do
    command -v "$tool" >/dev/null || { echo "dev-boot: $tool is missing" >&2; exit 2; }
done

QEMU_PID=
HOLD_PID=
FAILURES=0
cleanup() {
    local rc=$?
    [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        sleep 1
        kill -9 "$QEMU_PID" 2>/dev/null || true
    fi
    if [ "${FV_KEEP:-0}" = 1 ]; then
        echo "dev-boot: kept $WORK"
    else
        # The console log is worth keeping beside the work directory.
        [ -f "$WORK/console.log" ] && cp "$WORK/console.log" "$WORK.console.log"
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "dev-boot: $*"; }
check() {  # check DESCRIPTION COMMAND...: run, report PASS/FAIL
    local what=$1; shift
    if "$@"; then say "PASS $what"; else say "FAIL $what"; FAILURES=$((FAILURES + 1)); fi
}

rm -rf "$WORK"
mkdir -p "$WORK"
chmod 0700 "$WORK"
MIB=$((1 << 20))

# ---- the seed ------------------------------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C fv-dev-boot -f "$WORK/key"
mkdir -p "$WORK/seed"
# An OpenSSH public key line holds no quote or backslash: it goes into the JSON string as it is.
printf '{"hostname": "fvdev", "authorized_keys": ["%s"], "network": {"mode": "dhcp"}}\n' \
    "$(cat "$WORK/key.pub")" >"$WORK/seed/seed.json"
if [ "${FV_SEED:-}" = malformed ]; then
    printf '{"hostname": "fvdev", "authorized_keys": [' >"$WORK/seed/seed.json"
fi
genisoimage -quiet -V FVSEED -J -r -o "$WORK/seed.iso" "$WORK/seed"

# ---- the disk ------------------------------------------------------------------------------------
SQUASH_SIZE=$(stat -c %s "$PIECES/root.squashfs")
if [ "$LIVE" = 1 ]; then
    mkdir -p "$WORK/iso/live"
    ln "$PIECES/root.squashfs" "$WORK/iso/live/root.squashfs" 2>/dev/null || cp "$PIECES/root.squashfs" "$WORK/iso/live/"
    genisoimage -quiet -V FVISO -J -r -o "$WORK/live.iso" "$WORK/iso"
    rm -rf "$WORK/iso"
    BOOT_DRIVE=(-drive "file=$WORK/live.iso,if=virtio,format=raw,readonly=on")
    APPEND="fv.live=1 console=ttyS0,115200${FV_APPEND:+ $FV_APPEND}"
else
    # The built disk itself, through a qcow2 overlay (the image stays as it is).
    qemu-img create -q -f qcow2 -F raw -b "$PIECES/firmvisor.img" "$WORK/disk.qcow2"
    BOOT_DRIVE=(-drive "file=$WORK/disk.qcow2,if=virtio,format=qcow2")
    APPEND="fv.slot=A console=ttyS0,115200${FV_APPEND:+ $FV_APPEND}"
    say "disk: a qcow2 overlay of $PIECES/firmvisor.img (squashfs $((SQUASH_SIZE / MIB)) MiB)"
fi

# ---- boot ----------------------------------------------------------------------------------------
PORT=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
CONSOLE=$WORK/console.log
: >"$CONSOLE"
say "booting: qemu-system-x86_64 -accel tcg, SSH on 127.0.0.1:$PORT, console $CONSOLE"
STARTED=$(date +%s)
qemu-system-x86_64 -accel tcg -cpu qemu64,svm=off,vmx=off -m 2048 -smp 2 -nographic -monitor none \
    -kernel "$PIECES/vmlinuz" -initrd "$PIECES/initrd.img" -append "$APPEND" \
    "${BOOT_DRIVE[@]}" \
    -drive "file=$WORK/seed.iso,media=cdrom,format=raw,readonly=on" \
    -netdev "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:$PORT-:22" \
    -device virtio-net-pci,netdev=mgmt,addr=0x10 \
    -serial "file:$CONSOLE" </dev/null >"$WORK/qemu.log" 2>&1 &
QEMU_PID=$!

wait_ready() {  # wait_ready COUNT SINCE: until the console shows "firmvisor ready" COUNT times
    local count=$1 since=$2 deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
    while :; do
        if [ "$(grep -c '^firmvisor ready' "$CONSOLE" 2>/dev/null || true)" -ge "$count" ]; then
            say "firmvisor ready #$count after $(( $(date +%s) - since )) s"
            return 0
        fi
        if ! kill -0 "$QEMU_PID" 2>/dev/null; then
            say "QEMU exited"; cat "$WORK/qemu.log"; return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "no 'firmvisor ready' #$count within $BOOT_TIMEOUT s; the console's end:"
            tail -40 "$CONSOLE" | tr -d '\r'
            return 1
        fi
        sleep 1
    done
}

SSH=(ssh -p "$PORT" -i "$WORK/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
     -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR root@127.0.0.1)
wait_ssh() {
    local tries=30
    until "${SSH[@]}" true 2>/dev/null; do
        tries=$((tries - 1))
        [ $tries -gt 0 ] || { say "SSH does not answer on 127.0.0.1:$PORT"; return 1; }
        sleep 2
    done
}
host_key() {  # the server's ed25519 host key fingerprint, as a client sees it
    ssh-keyscan -T 10 -t ed25519 -p "$PORT" 127.0.0.1 2>/dev/null | ssh-keygen -lf - | awk '{print $2}'
}
# libvirt's ssh transport runs "ssh" from PATH: a wrapper keeps this throwaway host out of
# ~/.ssh/known_hosts.
mkdir -p "$WORK/bin"
cat >"$WORK/bin/ssh" <<EOF
#!/bin/sh
exec $(command -v ssh) -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "\$@"
EOF
chmod 0755 "$WORK/bin/ssh"
REMOTE_URI="qemu+ssh://root@127.0.0.1:$PORT/system?keyfile=$WORK/key&no_verify=1"

wait_ready 1 "$STARTED"
FIRST_BOOT=$(( $(date +%s) - STARTED ))
if [ "${FV_SEED:-}" = malformed ]; then
    # Nobody can log in (no key): the console is all there is to check.
    sed -n '/firmvisor: /p' "$CONSOLE" | tr -d '\r' | sed 's/^/dev-boot:   console: /'
    check "the malformed seed is reported on the console" \
        grep -q '^firmvisor: seed: seed.json is not valid JSON' "$CONSOLE"
    check "the host booted with defaults (hostname firmvisor)" grep -q 'root@firmvisor (ED25519)' "$CONSOLE"
    say "boot to 'firmvisor ready' with a malformed seed: ${FIRST_BOOT} s"
    [ "$FAILURES" = 0 ] && { say "all checks passed"; exit 0; }
    say "$FAILURES checks FAILED"
    exit 1
fi
wait_ssh
sed -n '/firmvisor: /p' "$CONSOLE" | tr -d '\r' | sed 's/^/dev-boot:   console: /'

# ---- first boot checks ---------------------------------------------------------------------------
check "/ is an overlay" test "$("${SSH[@]}" findmnt -n -o FSTYPE /)" = overlay
LOWER_LINE=$("${SSH[@]}" findmnt -rn -o SOURCE,FSTYPE,OPTIONS /run/firmvisor/lower)
say "squashfs: $LOWER_LINE"
check "the overlay's lower layer is a read-only squashfs" \
    bash -c "[[ '$LOWER_LINE' == *' squashfs ro,'* ]]"
check "the squashfs cannot be written" \
    bash -c "! ${SSH[*]} touch /run/firmvisor/lower/fv-write-test 2>/dev/null"
check "the overlay's options name the squashfs as the lower layer" \
    bash -c "${SSH[*]} findmnt -n -o OPTIONS / | grep -q lowerdir=/run/firmvisor/lower"
SLOT=$("${SSH[@]}" cat /run/firmvisor/slot)
if [ "$LIVE" = 1 ]; then
    check "booted live" test "$SLOT" = live
else
    check "booted slot A" test "$SLOT" = A
    check "the state partition is mounted" "${SSH[@]}" findmnt -n /var/lib/firmvisor/state
fi
check "the seed's hostname" test "$("${SSH[@]}" hostname)" = fvdev
check "virsh -c qemu:///system version (on the server)" "${SSH[@]}" virsh -c qemu:///system version
check "virsh -c qemu+ssh://... version (from here)" \
    env PATH="$WORK/bin:$PATH" virsh -c "$REMOTE_URI" version
check "virt-ssh-helper on the server" "${SSH[@]}" test -x /usr/bin/virt-ssh-helper
"${SSH[@]}" 'systemd-analyze 2>/dev/null; systemd-analyze blame 2>/dev/null | head -12; systemctl --failed --no-legend' \
    | sed 's/^/dev-boot:   server: /' || true

# ---- persistence ---------------------------------------------------------------------------------
"${SSH[@]}" 'cat >/tmp/fvdev-inner.xml && virsh -q -c qemu:///system define /tmp/fvdev-inner.xml' <<'EOF'
<domain type='qemu'>
  <name>fvdev-inner</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
</domain>
EOF
check "a domain defined" bash -c "${SSH[*]} virsh -c qemu:///system list --all --name | grep -qx fvdev-inner"
"${SSH[@]}" 'echo by-hand >/etc/fv-test'
KEY_BEFORE=$(host_key)
say "host key before: $KEY_BEFORE"
if [ "$LIVE" = 1 ]; then
    check "fv-state save in a live boot: stateless (exit 3)" \
        bash -c "${SSH[*]} fv-state save; test \$? = 3"
else
    check "fv-state save" "${SSH[@]}" fv-state save
fi
REBOOTED=$(date +%s)
"${SSH[@]}" '(sleep 1; reboot) >/dev/null 2>&1 &' || true
wait_ready 2 "$REBOOTED"
SECOND_BOOT=$(( $(date +%s) - REBOOTED ))
wait_ssh
KEY_AFTER=$(host_key)
say "host key after:  $KEY_AFTER"
check "/etc/fv-test is gone" bash -c "! ${SSH[*]} test -e /etc/fv-test"
if [ "$LIVE" = 1 ]; then
    check "live: the domain is gone (stateless)" \
        bash -c "! ${SSH[*]} virsh -c qemu:///system list --all --name | grep -qx fvdev-inner"
else
    check "the domain is still defined" \
        bash -c "${SSH[*]} virsh -c qemu:///system list --all --name | grep -qx fvdev-inner"
    check "the host key is unchanged" test -n "$KEY_BEFORE" -a "$KEY_BEFORE" = "$KEY_AFTER"
    check "the seed's hostname after the reboot" test "$("${SSH[@]}" hostname)" = fvdev
fi
sed -n '/firmvisor: /p' "$CONSOLE" | tr -d '\r' | tail -n +1 | sed 's/^/dev-boot:   console: /' | tail -12
"${SSH[@]}" 'systemd-analyze 2>/dev/null; systemd-analyze critical-chain firmvisor-ready.service 2>/dev/null;
    systemctl --failed --no-legend' | sed 's/^/dev-boot:   server: /' || true

if [ -n "${FV_HOLD:-}" ]; then
    say "holding the server for ${FV_HOLD} s: ${SSH[*]}"
    sleep "$FV_HOLD" &
    HOLD_PID=$!
    wait $HOLD_PID  # a signal interrupts the wait (not a foreground sleep): the trap cleans up at once
fi
say "boot to 'firmvisor ready': first ${FIRST_BOOT} s (from QEMU start), after reboot ${SECOND_BOOT} s"
if [ "$FAILURES" = 0 ]; then
    say "all checks passed"
else
    say "$FAILURES checks FAILED"
    exit 1
fi
