#!/usr/bin/env bash
# Prepare this Debian host (root, no systemd needed) to run firmvisor's tests and demo:
#   1. install the Debian packages below, only when one is missing (apt-get update only then);
#   2. /dev/kvm: group kvm, mode 0660 (QEMU started by libvirt runs as libvirt-qemu:kvm);
#   3. start virtlogd and libvirtd as daemons when they are not running, then wait until
#      `virsh -c qemu:///system version` answers (fail clearly after FV_LIBVIRT_TIMEOUT s).
# Idempotent: a second run only checks (dpkg-query, pgrep, virsh) and changes nothing.
# Nothing here needs libvirt's 'default' storage pool or network; if the autostarted 'default'
# network fails to start that is ignored.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIMEOUT=${FV_LIBVIRT_TIMEOUT:-60}
URI=qemu:///system

PACKAGES=(
  qemu-system-x86 qemu-utils
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config gcc
  ovmf genisoimage xorriso busybox-static cpio
  dnsmasq-base iptables
  # image: make lint (shellcheck), the image unit tests (FAT, ext4 and GRUB images), the remote
  # build test (an sshd on 127.0.0.1, started and stopped by the test itself)
  shellcheck dosfstools mtools e2fsprogs grub-common grub-pc-bin openssh-server
)

log() { printf 'setup-host: %s\n' "$*"; }
die() { printf 'setup-host: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  die "needs Debian (dpkg/apt)"
fi

# --- 1. packages ------------------------------------------------------------------------------
# python3-venv only when the interpreter setup-venv.sh would pick cannot make a venv
# (Debian's own python3 without python3-venv); pyenv's Python brings its own ensurepip.
if py=$("$ROOT/scripts/setup-venv.sh" --print-python 2>/dev/null); then
  "$py" -c 'import venv, ensurepip' 2>/dev/null || PACKAGES+=(python3-venv)
else
  PACKAGES+=(python3 python3-venv)
fi

installed() {  # true when package $1 is fully installed
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}
# one dpkg-query for them all (a process per package is most of a no-op run's time here)
status=$'\n'$(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${PACKAGES[@]}" 2>/dev/null || true)$'\n'
missing=()
for p in "${PACKAGES[@]}"; do
  [[ $status == *$'\n'"installed $p"$'\n'* ]] || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  apt-get "${apt_opts[@]}" update
  apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
  for p in "${missing[@]}"; do installed "$p" || die "package $p did not install"; done
else
  log "packages: all ${#PACKAGES[@]} present"
fi

# --- 2. /dev/kvm ------------------------------------------------------------------------------
if [ -e /dev/kvm ]; then
  getent group kvm >/dev/null || groupadd --system kvm
  [ "$(stat -c %G /dev/kvm)" = kvm ] || chgrp kvm /dev/kvm
  [ "$(stat -c %a /dev/kvm)" = 660 ] || chmod 0660 /dev/kvm
  log "/dev/kvm: $(stat -c '%U:%G %a' /dev/kvm)"
else
  log "/dev/kvm: absent (guests run under TCG)"
fi

# --- 3. daemons -------------------------------------------------------------------------------
# Daemons get a clean environment (not the caller's venv PATH or ANSIBLE_* variables) and
# /dev/null as stdio, so that they hold no pipe of the caller open; libvirtd logs warnings and
# errors to /var/log/libvirt/libvirtd.log.
mkdir -p /var/log/libvirt /var/log/libvirt/qemu
start_daemon() {  # name, extra env...
  local name=$1; shift
  if pgrep -x "$name" >/dev/null; then
    log "$name: running (pid $(pgrep -x "$name" | tr '\n' ' ' | sed 's/ $//'))"
    return 0
  fi
  log "$name: starting"
  (
    # close every inherited descriptor above stderr (a CI runner's pipes, make's jobserver)
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && { eval "exec $fd>&-" 2>/dev/null || true; }
    done
    exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root "$@" \
      "$name" -d </dev/null >/dev/null 2>&1
  ) || die "$name -d failed"
}
start_daemon virtlogd
start_daemon libvirtd LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/libvirtd.log"

deadline=$((SECONDS + TIMEOUT))
until out=$(virsh -c "$URI" version 2>&1); do
  if [ "$SECONDS" -ge "$deadline" ]; then
    printf '%s\n' "$out" >&2
    tail -n 20 /var/log/libvirt/libvirtd.log >&2 2>/dev/null || true
    die "libvirtd did not answer on $URI within ${TIMEOUT}s (log: /var/log/libvirt/libvirtd.log)"
  fi
  sleep 0.5
  # it may have been on its way out when we looked (or died at start-up): (re)start it
  start_daemon virtlogd >/dev/null
  start_daemon libvirtd LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/libvirtd.log" >/dev/null
done
log "libvirt: $(printf '%s\n' "$out" | sed -n 's/^Running hypervisor: //p') via $URI"
