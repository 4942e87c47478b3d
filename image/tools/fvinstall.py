# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fv-install: install firmvisor from the live ISO onto the seed's install_to disk, then reboot.

    fv-install [--target DEV] [--seed SEED.json] [--source DIR] [--no-reboot] [--force] [--dry-run]
               [--console]

Runs on a live boot (fv.live=1); on a boot from a disk slot it does nothing (exit 0) unless given
--target (an error) or --force. The target is --target or the seed's ``install_to`` (the seed fv-state
read at boot, /run/firmvisor/seed.json, else the volume labelled FVSEED); without one it does nothing
(the host stays live). The pieces come from the installer medium (--source, else the live medium the
initramfs mounted at /run/firmvisor/medium, else a mounted file system holding install/version, else
the FVISO volume mounted read-only): /install/{core.img,boot.img,BOOTX64.EFI,grub.cfg,version},
/boot/{vmlinuz,initrd.img} and /live/root.squashfs. assemble.py (the running system's: the live system
is the medium's own) writes the whole GPT disk (docs/image.md) with GUIDs of its own, the old partition
tables wiped first and the new ones written last, then every region is read back and compared. The
seed goes onto the new state partition too, so that the first boot from the disk finds it there.

Refused, with a message and without writing anything: a target that is not a whole block device
(a partition, a file, read-only, a CD), the device the live system booted from (the FVISO medium)
or the seed's device, a disk with mounted partitions or holders (LVM, RAID), one smaller than the
layout, and (unless --force or ``"install_force": true`` in the seed) a disk that holds a firmvisor
install of any version or anything else recognisable: a partition table, a file system, RAID or LVM
signatures, or any data in its first or last MiB. So an ISO and seed left first in the boot order
never wipe an installed (or upgraded) host: the host stays live, and its disk is left alone.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

import assemble
from fvlib import (FIRMVISOR_PARTS, ISO_LABEL, SEED_LABEL, HostError, Paths, Seed, block_name, booted, find_seed,
                   is_partition, labelled, parse_seed, partitions_of, read_text, say, volume_label, whole_disk)

# One error type for every host tool (fvlib); the name says whose it is.
InstallError = HostError

PIECES = {
    'core': 'install/core.img', 'boot_img': 'install/boot.img', 'efi': 'install/BOOTX64.EFI',
    'grub_cfg': 'install/grub.cfg', 'version': 'install/version', 'kernel': 'boot/vmlinuz',
    'initrd': 'boot/initrd.img', 'squashfs': 'live/root.squashfs',
}
LIVE_MEDIUM = 'medium'          # /run/firmvisor/medium: where the initramfs mounted the FVISO volume
SEED_COPY = 'seed.json'         # /run/firmvisor/seed.json: the seed as fv-state read it at boot
PROBE = 1 << 20                 # the bytes read at each end of the target to recognise what it holds


class Log:
    """Progress lines ``firmvisor: install: ...`` on stdout and, with ``console``, on the console."""

    def __init__(self, paths: Paths, console: bool = False) -> None:
        self.paths, self.console = paths, console

    def __call__(self, message: str) -> None:
        say('firmvisor: install: %s' % message, self.paths, console=self.console)


# ---- block devices ---------------------------------------------------------------------------------
def mounted_devices(paths: Paths) -> Dict[str, str]:
    """Mounted block devices' kernel names → mount points."""
    found = {}
    for line in read_text(paths.mounts).splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith('/dev/'):
            try:
                found[block_name(paths, fields[0])] = fields[1].replace('\\040', ' ')
            except HostError:
                continue
    return found


def check_target(target: str, paths: Paths, protected: Dict[str, str], min_size: int) -> Tuple[str, int]:
    """The target's kernel name and size, or InstallError saying why it must not be written."""
    name = block_name(paths, target)
    folder = os.path.join(paths.sys_block, name)
    if is_partition(paths, name):
        raise InstallError('%s is a partition of %s: give the whole disk' % (target, whole_disk(paths, name)))
    if read_text(os.path.join(folder, 'ro')).strip() == '1':
        raise InstallError('%s is read-only' % target)
    loop_ok = name.startswith('loop') and os.environ.get('FV_INSTALL_ALLOW_LOOP') == '1'  # dev-machine tests
    if name.startswith(('sr', 'ram', 'zram')) or (name.startswith('loop') and not loop_ok):
        raise InstallError('%s is not a disk to install onto' % target)
    for disk, why in protected.items():
        if name == disk:
            raise InstallError('%s is %s: refusing to overwrite it' % (target, why))
    mounted = mounted_devices(paths)
    busy = [part for part in [name] + partitions_of(paths, name) if part in mounted]
    if busy:
        raise InstallError('%s is in use: %s mounted on %s' % (target, busy[0], mounted[busy[0]]))
    for part in [name] + partitions_of(paths, name):
        holders = os.path.join(paths.sys_block, part, 'holders')
        if os.path.isdir(holders) and os.listdir(holders):
            raise InstallError('%s is in use by %s' % (target, ', '.join(sorted(os.listdir(holders)))))
    size = int(read_text(os.path.join(folder, 'size')).strip() or 0) * 512
    if size < min_size:
        raise InstallError('%s has %d MiB; firmvisor needs %d MiB' % (target, size >> 20, min_size >> 20))
    return name, size


# ---- the installer medium and the seed --------------------------------------------------------------
def _has_pieces(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, PIECES['version']))


def find_source(paths: Paths, log, given: Optional[str] = None) -> Tuple[str, Optional[str]]:
    """The directory holding the medium's pieces and the kernel name of its device (if known)."""
    live = os.path.join(paths.run, LIVE_MEDIUM)
    wanted = given or (live if _has_pieces(live) else None)
    for line in read_text(paths.mounts).splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        if (os.path.realpath(fields[1]) == os.path.realpath(wanted)) if wanted else _has_pieces(fields[1]):
            device = None
            if fields[0].startswith('/dev/'):
                try:
                    device = block_name(paths, fields[0])
                except HostError:
                    device = None
            return fields[1], device
    if wanted:
        return wanted, None
    found = labelled(paths, ISO_LABEL)
    if not found:
        raise InstallError('no installer medium: no file system with install/version is mounted and no '
                           'volume is labelled %s' % ISO_LABEL)
    name, device, _fstype = found[0]
    target = os.path.join(paths.run, 'iso')
    os.makedirs(target, exist_ok=True)
    log('mounting %s (%s) read-only on %s' % (device, ISO_LABEL, target))
    subprocess.run(['mount', '-t', 'iso9660', '-o', 'ro', device, target], check=True)
    return target, name


def read_seed(paths: Paths, given: Optional[str]) -> Tuple[Seed, List[str], Optional[str]]:
    """The seed, its problems, and the kernel name of its device when it was found by its label."""
    for path in [given] if given else [os.path.join(paths.run, SEED_COPY)]:
        if os.path.isfile(path):
            with open(path, 'rb') as handle:
                seed, problems = parse_seed(handle.read(1 << 20), paths.dev)
            return seed, problems, None
    if given:
        raise InstallError('no seed at %s' % given)
    found = find_seed(paths, 0)
    if found.seed is None:
        return Seed(), ['no volume labelled %s' % SEED_LABEL], None
    return found.seed, found.problems, block_name(paths, found.device) if found.device else None


def is_live(paths: Paths) -> bool:
    return booted(paths)[0] == 'live'


# ---- install ----------------------------------------------------------------------------------------
def recognise(head: bytes, tail: bytes) -> List[str]:
    """What a disk holds, from its first and last MiB: a firmvisor install, other partition tables,
    file system, RAID and LVM signatures, or just data. Empty: a blank disk."""
    found = []
    tables = [table for table in (_gpt(head, primary=True), _gpt(tail, primary=False)) if table is not None]
    names = sorted({p['name'] for table in tables for p in table['partitions']})
    ours = [name for name in names if name in FIRMVISOR_PARTS]
    if ours:
        found.append('a firmvisor install (partitions %s)' % ', '.join(ours))
    elif tables:
        found.append('a GPT partition table (%s)' % (', '.join(names) or 'no partitions'))
    elif head[510:512] == b'\x55\xaa' and any(head[446 + 16 * i + 4] for i in range(4)):
        found.append('an MBR partition table')
    signatures = (
        (head[1080:1082] == b'\x53\xef', 'an ext2/3/4 file system'),
        (head[:4] == b'XFSB', 'an XFS file system'),
        (head[0x10040:0x10048] == b'_BHRfS_M', 'a btrfs file system'),
        (any(head[512 * i:512 * i + 8] == b'LABELONE' for i in range(4)), 'an LVM physical volume'),
        (head[4086:4096] in (b'SWAPSPACE2', b'SWAP-SPACE'), 'a swap area'),
        (head[:6] == b'LUKS\xba\xbe', 'a LUKS encrypted volume'),
        (head[0:4] == b'\xfc\x4e\x2b\xa9' or head[4096:4100] == b'\xfc\x4e\x2b\xa9', 'a Linux RAID member'),
        (head[3:11] == b'NTFS    ', 'an NTFS file system'),
        (volume_label(head) is not None, 'an ISO 9660 or FAT volume'),
    )
    found += [what for hit, what in signatures if hit]
    if not found and (head.count(0) != len(head) or tail.count(0) != len(tail)):
        found.append('data (non-zero bytes in its first or last MiB)')
    return found


def _gpt(data: bytes, primary: bool):
    """The GPT a disk's first MiB (primary) or last MiB (backup: header in the last sector, entries
    before it) holds, or None."""
    try:
        if primary:
            return assemble.parse_gpt(data)
        header = data[-512:]
        if header[:8] != b'EFI PART':
            return None
        entries = 128 * 128
        return assemble.parse_gpt(bytes(512) + header + data[-512 - entries:-512], entries_lba=2)
    except (HostError, ValueError, IndexError, struct.error):
        return None


def inspect_target(target: str, size: int) -> List[str]:
    with open(target, 'rb') as handle:
        head = handle.read(PROBE)
        handle.seek(max(0, size - PROBE))
        tail = handle.read(PROBE)
    return recognise(head, tail)


def run_logged(argv: List[str], log) -> None:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        line = line.rstrip('\n')
        log(line[len('image: '):] if line.startswith('image: ') else line)
    if proc.wait() != 0:
        raise InstallError('%s %s failed (exit %d)' % (os.path.basename(argv[1]), argv[2], proc.returncode))


def install(args, paths: Paths, log) -> int:
    if not is_live(paths) and not args.force:
        if args.target:
            raise InstallError('not a live boot (no fv.live=1): fv-install installs from the live ISO only')
        log('not a live boot (no fv.live=1): nothing to install')
        return 0
    seed, problems, seed_device = read_seed(paths, args.seed)
    if args.seed and any('not valid JSON' in p or 'not UTF-8' in p or 'not an object' in p for p in problems):
        raise InstallError('the seed in %s is not JSON: %s' % (args.seed, '; '.join(problems)))
    for problem in problems:
        if problem.startswith(('install_to ', 'install_force ')):  # the installer's own keys: no guessing
            raise InstallError('the seed: %s' % problem)
    target = args.target or seed.install_to
    if not target:
        log('no install_to in the seed: nothing to install, the host stays live')
        return 0
    if not os.path.isabs(target):
        raise InstallError('install_to must be a device path such as /dev/vda, got %r' % (target,))
    force = args.force or seed.install_force
    source, iso_device = find_source(paths, log, args.source)
    for relative in PIECES.values():
        if not os.path.isfile(os.path.join(source, relative)):
            raise InstallError('the installer medium at %s lacks %s' % (source, relative))
    version = read_text(os.path.join(source, PIECES['version'])).strip() or '0.0.0'
    booted_from = 'the device the live system booted from (%s)' % ISO_LABEL
    protected = {}
    if iso_device:
        protected[whole_disk(paths, iso_device)] = booted_from
    for name, _device, _fstype in labelled(paths, ISO_LABEL):
        protected.setdefault(whole_disk(paths, name), booted_from)
    if seed_device:
        protected.setdefault(whole_disk(paths, seed_device), 'the seed (%s)' % SEED_LABEL)
    for name, _device, _fstype in labelled(paths, SEED_LABEL):
        protected.setdefault(whole_disk(paths, name), 'the seed (%s)' % SEED_LABEL)
    name, size = check_target(target, paths, protected, assemble.min_disk_size())
    held = inspect_target(target, size)
    if held and not force:
        log('%s holds %s: not installing, so nothing on it is lost; the host stays live. Remove the '
            'installer medium or put the disk first in the boot order; "install_force": true in the seed '
            'installs over it.' % (target, '; '.join(held)))
        return 0
    if held:
        log('install_force: overwriting %s, which holds %s' % (target, '; '.join(held)))
    if args.dry_run:
        log('dry run: would install firmvisor %s from %s onto %s (%s, %d MiB)'
            % (version, source, target, name, size >> 20))
        return 0
    log('installing firmvisor %s from %s onto %s (%s, %d MiB)' % (version, source, target, name, size >> 20))
    os.makedirs(paths.run, exist_ok=True)
    report = os.path.join(paths.run, 'install-report.json')
    script = assemble.__file__
    argv = [sys.executable, script, 'disk', '--device', '--no-verify', '--out', target,
            '--core', os.path.join(source, PIECES['core']), '--boot-img', os.path.join(source, PIECES['boot_img']),
            '--efi', os.path.join(source, PIECES['efi']), '--grub-cfg', os.path.join(source, PIECES['grub_cfg']),
            '--kernel', os.path.join(source, PIECES['kernel']), '--initrd', os.path.join(source, PIECES['initrd']),
            '--slot-a', os.path.join(source, PIECES['squashfs']), '--version', version, '--report', report,
            '--unique']
    seed_copy = os.path.join(paths.run, SEED_COPY)
    if args.seed or os.path.isfile(seed_copy):
        argv += ['--state-file', 'seed.json=%s' % (args.seed or seed_copy)]
    run_logged(argv, log)
    log('verifying %s: reading every region back' % target)
    run_logged([sys.executable, script, 'verify', '--device', target, '--report', report], log)
    log('installed firmvisor %s on %s and verified it; its first boot imports the seed from its state partition'
        % (version, target))
    if args.no_reboot:
        log('not rebooting (--no-reboot)')
        return 0
    log('rebooting into the installed system')
    os.sync()
    for command in (['systemctl', 'reboot'], ['reboot']):
        try:
            if subprocess.run(command, check=False).returncode == 0:
                return 0
        except OSError:
            continue
    raise InstallError('could not reboot: reboot by hand')


def main(argv=None, paths: Optional[Paths] = None) -> int:
    parser = argparse.ArgumentParser(prog='fv-install', description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--target', help='the whole disk to install onto (default: the seed\'s install_to)')
    parser.add_argument('--seed', help='seed.json (default: the seed fv-state read at boot, else FVSEED)')
    parser.add_argument('--source', help='the installer medium\'s root (default: the live medium)')
    parser.add_argument('--no-reboot', action='store_true')
    parser.add_argument('--force', action='store_true',
                        help='install over a disk that holds an install or data; allow a non-live boot')
    parser.add_argument('--dry-run', action='store_true', help='check everything, write nothing')
    parser.add_argument('--console', action='store_true', help='also write progress to the console')
    args = parser.parse_args(argv)
    paths = paths or Paths()
    log = Log(paths, args.console)
    try:
        return install(args, paths, log)
    except (HostError, OSError, subprocess.CalledProcessError) as exc:
        log('FAILED: %s%s' % (exc, '; the host stays live' if args.console else ''))
        return 1


if __name__ == '__main__':
    sys.exit(main())
