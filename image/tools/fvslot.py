# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fvslot: the A/B system slots of a firmvisor host (stdlib only; runs on the hypervisor).

    fvslot status                     JSON: booted slot, known-good slot, pending try, versions, health
    fvslot write --squashfs F --kernel K --initrd I --version V [--sha256 HEX]
                                      write the inactive slot and verify it by reading it back
    fvslot boot-once [SLOT]           boot SLOT (default: the inactive one) once at the next boot
    fvslot mark-good                  keep the running slot: it becomes the known-good slot
    fvslot health                     exit 0 when libvirtd answers and the state is mounted
    fvslot ready [--timeout S]        wait until libvirtd answers, then "firmvisor ready" on the console

Slot selection is GRUB's environment block on the boot partition (docs/image.md): fv_active is the
known-good slot, fv_next a slot to try once. GRUB clears fv_next when it boots it, so a slot that is
never marked good is abandoned at the following boot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from typing import Dict, Iterator, Optional

from fvlib import (PART_BOOT, PART_SLOT, SLOTS, CHUNK, HostError, Paths, atomic_write, boot_mode, device_size,
                   format_grubenv, other_slot, parse_grubenv, read_text, require_partition, run, say, sha256_file,
                   wait_for)

# One error type for every host tool (fvlib); the name says whose it is.
SlotError = HostError


# ---- GRUB environment block on the boot partition ---------------------------------------------------
def read_env(esp: str) -> Dict[str, str]:
    with open(os.path.join(esp, 'grub', 'grubenv'), 'rb') as handle:
        return parse_grubenv(handle.read())


def write_env(esp: str, values: Dict[str, str]) -> None:
    """Replace the block whole (GRUB's save_env rewrites it in place, at the same size)."""
    atomic_write(os.path.join(esp, 'grub', 'grubenv'), format_grubenv(values))


# ---- decisions (pure) -------------------------------------------------------------------------------
def booted_slot(cmdline: str) -> Optional[str]:
    mode, slot = boot_mode(cmdline)
    return slot if mode == 'slot' else None


def other(slot: str) -> str:
    return other_slot(slot)


def next_boot(env: Dict[str, str]) -> str:
    """The slot GRUB boots next, as grub.cfg decides it."""
    return env.get('fv_next') or env.get('fv_active') or 'A'


# ---- the boot partition -------------------------------------------------------------------------------
@contextlib.contextmanager
def esp_mounted(paths: Paths, writable: bool = False) -> Iterator[str]:
    if not paths.mount_esp or os.path.ismount(paths.esp_mount):
        yield paths.esp_mount
        return
    os.makedirs(paths.esp_mount, exist_ok=True)
    options = 'rw' if writable else 'ro'
    run(['mount', '-t', 'vfat', '-o', options, require_partition(paths, PART_BOOT), paths.esp_mount], check=True)
    try:
        yield paths.esp_mount
    finally:
        run(['umount', paths.esp_mount])


# ---- commands ---------------------------------------------------------------------------------------
def status(paths: Paths) -> Dict[str, object]:
    with open(paths.cmdline) as handle:
        booted = booted_slot(handle.read())
    with esp_mounted(paths) as esp:
        env = read_env(esp)
        versions = {slot: read_text(os.path.join(esp, 'slots', slot, 'version')).strip() or None for slot in SLOTS}
    return {
        'booted': booted or 'live',
        'active': env.get('fv_active', 'A'),
        'next': env.get('fv_next') or None,
        'next_boot': next_boot(env),
        'marked_good': booted is not None and booted == env.get('fv_active', 'A'),
        'versions': versions,
        'healthy': healthy(paths),
    }


def write_slot(paths: Paths, squashfs: str, kernel: str, initrd: str, version: str,
               sha256: Optional[str] = None, log=print) -> Dict[str, object]:
    """Write the slot that is not running, then read it back and compare."""
    with open(paths.cmdline) as handle:
        booted = booted_slot(handle.read())
    if booted is None:
        raise SlotError('not booted from a slot (live system): install first')
    target = other(booted)
    device = require_partition(paths, PART_SLOT[target])
    size = os.path.getsize(squashfs)
    if size > device_size(device):
        raise SlotError('%s (%d bytes) does not fit slot %s (%d bytes)' % (squashfs, size, target, device_size(device)))
    digest = sha256_file(squashfs)
    if sha256 and digest != sha256.lower():
        raise SlotError('%s: sha256 %s, expected %s' % (squashfs, digest, sha256))
    log('fvslot: writing slot %s (%s, %d MiB) to %s' % (target, version, size >> 20, device))
    with open(squashfs, 'rb') as src, open(device, 'r+b') as dst:
        for block in iter(lambda: src.read(CHUNK), b''):
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    written = sha256_file(device, size)
    if written != digest:
        raise SlotError('slot %s: read-back sha256 %s differs from %s' % (target, written, digest))
    with esp_mounted(paths, writable=True) as esp:
        folder = os.path.join(esp, 'slots', target)
        os.makedirs(folder, exist_ok=True)
        for source, name in ((kernel, 'vmlinuz'), (initrd, 'initrd.img')):
            with open(source, 'rb') as handle:
                atomic_write(os.path.join(folder, name), handle.read())
        atomic_write(os.path.join(folder, 'version'), (version + '\n').encode())
    log('fvslot: slot %s written and verified (sha256 %s)' % (target, digest))
    return {'slot': target, 'version': version, 'sha256': digest}


def boot_once(paths: Paths, slot: Optional[str] = None) -> str:
    with open(paths.cmdline) as handle:
        booted = booted_slot(handle.read())
    if slot is None:
        if booted is None:
            raise SlotError('give the slot: not booted from a slot')
        slot = other(booted)
    if slot not in SLOTS:
        raise SlotError('slot must be A or B, got %r' % slot)
    with esp_mounted(paths, writable=True) as esp:
        if not os.path.exists(os.path.join(esp, 'slots', slot, 'vmlinuz')):
            raise SlotError('slot %s has no kernel: write it first' % slot)
        env = read_env(esp)
        env['fv_next'] = slot
        write_env(esp, env)
    return slot


def mark_good(paths: Paths) -> str:
    with open(paths.cmdline) as handle:
        booted = booted_slot(handle.read())
    if booted is None:
        raise SlotError('not booted from a slot')
    with esp_mounted(paths, writable=True) as esp:
        env = read_env(esp)
        if env.get('fv_active') != booted or env.get('fv_next'):
            env['fv_active'] = booted
            env['fv_next'] = ''
            write_env(esp, env)
    return booted


def libvirt_answers() -> bool:
    try:
        return run(['virsh', '-c', 'qemu:///system', 'version'], timeout=20).returncode == 0
    except (HostError, subprocess.TimeoutExpired):
        return False


def healthy(paths: Paths) -> bool:
    return libvirt_answers() and os.path.ismount(paths.state_mount)


def ready(paths: Paths, timeout: float) -> bool:
    """Wait until libvirtd answers, then say "firmvisor ready" on the console (docs/image.md)."""
    if wait_for(libvirt_answers, timeout, step=1.0):
        say('libvirtd answered at %s s after boot' % read_text('/proc/uptime').split(' ')[0], paths, console=False)
        # The leading newline ends whatever systemd's ephemeral status line left on the terminal.
        say('\nfirmvisor ready', paths)
        return True
    say('firmvisor: libvirtd did not answer within %d s (see journalctl -u libvirtd)' % timeout, paths)
    return False


def main(argv=None, paths: Optional[Paths] = None) -> int:
    parser = argparse.ArgumentParser(prog='fvslot', description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    commands.add_parser('status')
    write = commands.add_parser('write')
    for option in ('--squashfs', '--kernel', '--initrd', '--version'):
        write.add_argument(option, required=True)
    write.add_argument('--sha256')
    once = commands.add_parser('boot-once')
    once.add_argument('slot', nargs='?', choices=SLOTS)
    commands.add_parser('mark-good')
    commands.add_parser('health')
    wait = commands.add_parser('ready')
    wait.add_argument('--timeout', type=float, default=300)
    args = parser.parse_args(argv)
    paths = paths or Paths()
    try:
        if args.command == 'status':
            print(json.dumps(status(paths), indent=2, sort_keys=True))
        elif args.command == 'write':
            print(json.dumps(write_slot(paths, args.squashfs, args.kernel, args.initrd, args.version, args.sha256)))
        elif args.command == 'boot-once':
            print('fvslot: slot %s boots once at the next boot' % boot_once(paths, args.slot))
        elif args.command == 'mark-good':
            print('fvslot: slot %s is the known-good slot' % mark_good(paths))
        elif args.command == 'health':
            ok = healthy(paths)
            print('fvslot: %s' % ('healthy' if ok else 'not healthy'))
            return 0 if ok else 1
        elif args.command == 'ready':
            return 0 if ready(paths, args.timeout) else 1
    except (HostError, OSError) as exc:
        print('fvslot: %s' % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
