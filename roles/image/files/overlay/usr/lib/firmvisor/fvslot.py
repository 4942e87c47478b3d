#!/usr/bin/python3
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fvslot: the A/B system slots of a firmvisor host (stdlib only; runs on the hypervisor).

    fvslot status                     JSON: booted slot, known-good slot, pending try, versions, health
    fvslot write --squashfs F --kernel K --initrd I --version V [--sha256 HEX]
                                      write the inactive slot and verify it by reading it back
    fvslot boot-once [SLOT]           boot SLOT (default: the inactive one) once at the next boot
    fvslot mark-good                  keep the running slot: it becomes the known-good slot
    fvslot health                     exit 0 when libvirtd answers and the state is mounted

Slot selection is GRUB's environment block on the boot partition (docs/image.md): fv_active is the
known-good slot, fv_next a slot to try once. GRUB clears fv_next when it boots it, so a slot that is
never marked good is abandoned at the following boot.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, Iterator, Optional

SLOTS = ('A', 'B')
GRUBENV_SIZE = 1024
GRUBENV_HEADER = '# GRUB Environment Block\n'
CHUNK = 4 << 20


class SlotError(Exception):
    pass


@dataclass
class Paths:
    """Where fvslot looks; tests point these at a temporary tree."""
    cmdline: str = '/proc/cmdline'
    sys_block: str = '/sys/class/block'
    dev: str = '/dev'
    esp_mount: str = '/run/firmvisor/esp'
    state_mount: str = '/var/lib/firmvisor/state'
    mount_esp: bool = True


# ---- GRUB environment block -----------------------------------------------------------------------
def parse_grubenv(data: bytes) -> Dict[str, str]:
    text = data.decode('utf-8', 'replace')
    if not text.startswith(GRUBENV_HEADER):
        raise SlotError('not a GRUB environment block')
    values = {}
    for line in text[len(GRUBENV_HEADER):].split('\n'):
        if line and not line.startswith('#') and '=' in line:
            key, _, value = line.partition('=')
            values[key] = value
    return values


def format_grubenv(values: Dict[str, str]) -> bytes:
    body = GRUBENV_HEADER + ''.join('%s=%s\n' % (k, v) for k, v in values.items())
    data = body.encode()
    if len(data) > GRUBENV_SIZE:
        raise SlotError('GRUB environment block overflow')
    return data + b'#' * (GRUBENV_SIZE - len(data))


def read_env(esp: str) -> Dict[str, str]:
    with open(os.path.join(esp, 'grub', 'grubenv'), 'rb') as handle:
        return parse_grubenv(handle.read())


def write_env(esp: str, values: Dict[str, str]) -> None:
    """Replace the block whole: write beside it, fsync, rename (GRUB's save_env rewrites in place)."""
    path = os.path.join(esp, 'grub', 'grubenv')
    _atomic_write(path, format_grubenv(values))


# ---- decisions (pure) -------------------------------------------------------------------------------
def booted_slot(cmdline: str) -> Optional[str]:
    for word in cmdline.split():
        if word.startswith('fv.slot='):
            slot = word.split('=', 1)[1]
            return slot if slot in SLOTS else None
    return None


def other(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(slot)]


def next_boot(env: Dict[str, str]) -> str:
    """The slot GRUB boots next, as grub.cfg decides it."""
    return env.get('fv_next') or env.get('fv_active') or 'A'


# ---- devices ----------------------------------------------------------------------------------------
def find_partition(name: str, paths: Paths) -> str:
    """The device node of the partition whose GPT name is ``name``."""
    for entry in sorted(os.listdir(paths.sys_block)):
        try:
            with open(os.path.join(paths.sys_block, entry, 'uevent')) as handle:
                fields = dict(line.rstrip('\n').split('=', 1) for line in handle if '=' in line)
        except OSError:
            continue
        if fields.get('PARTNAME') == name:
            return os.path.join(paths.dev, fields.get('DEVNAME', entry))
    raise SlotError('no partition named %s' % name)


def device_size(device: str) -> int:
    with open(device, 'rb') as handle:
        return handle.seek(0, os.SEEK_END)


@contextlib.contextmanager
def esp_mounted(paths: Paths, writable: bool = False) -> Iterator[str]:
    if not paths.mount_esp or os.path.ismount(paths.esp_mount):
        yield paths.esp_mount
        return
    os.makedirs(paths.esp_mount, exist_ok=True)
    options = 'rw' if writable else 'ro'
    subprocess.run(['mount', '-t', 'vfat', '-o', options, find_partition('fvboot', paths), paths.esp_mount],
                   check=True)
    try:
        yield paths.esp_mount
    finally:
        subprocess.run(['umount', paths.esp_mount], check=False)


# ---- commands ---------------------------------------------------------------------------------------
def status(paths: Paths) -> Dict[str, object]:
    with open(paths.cmdline) as handle:
        booted = booted_slot(handle.read())
    with esp_mounted(paths) as esp:
        env = read_env(esp)
        versions = {slot: _read(os.path.join(esp, 'slots', slot, 'version')) for slot in SLOTS}
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
    device = find_partition('fvslot' + target, paths)
    size = os.path.getsize(squashfs)
    if size > device_size(device):
        raise SlotError('%s (%d bytes) does not fit slot %s (%d bytes)' % (squashfs, size, target, device_size(device)))
    digest = _sha256(squashfs)
    if sha256 and digest != sha256.lower():
        raise SlotError('%s: sha256 %s, expected %s' % (squashfs, digest, sha256))
    log('fvslot: writing slot %s (%s, %d MiB) to %s' % (target, version, size >> 20, device))
    with open(squashfs, 'rb') as src, open(device, 'r+b') as dst:
        for block in iter(lambda: src.read(CHUNK), b''):
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    with open(device, 'rb') as dst:
        written = hashlib.sha256()
        remaining = size
        while remaining:
            block = dst.read(min(CHUNK, remaining))
            if not block:
                break
            written.update(block)
            remaining -= len(block)
    if written.hexdigest() != digest:
        raise SlotError('slot %s: read-back sha256 %s differs from %s' % (target, written.hexdigest(), digest))
    with esp_mounted(paths, writable=True) as esp:
        folder = os.path.join(esp, 'slots', target)
        os.makedirs(folder, exist_ok=True)
        for source, name in ((kernel, 'vmlinuz'), (initrd, 'initrd.img')):
            with open(source, 'rb') as handle:
                _atomic_write(os.path.join(folder, name), handle.read())
        _atomic_write(os.path.join(folder, 'version'), (version + '\n').encode())
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


def healthy(paths: Paths) -> bool:
    try:
        answered = subprocess.run(['virsh', '-c', 'qemu:///system', 'version'], capture_output=True,
                                  timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        answered = False
    return answered and os.path.ismount(paths.state_mount)


# ---- helpers ----------------------------------------------------------------------------------------
def _read(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(path)
    handle, temp = tempfile.mkstemp(dir=folder, prefix='.fvslot-')
    try:
        with os.fdopen(handle, 'wb') as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


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
    except (SlotError, OSError, subprocess.CalledProcessError) as exc:
        print('fvslot: %s' % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
