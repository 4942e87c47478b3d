# -*- coding: utf-8 -*-
"""fvlib, what the host tools share: the boot disk (only its partitions are used) and where a seed may
come from (removable or virtual media, or the boot disk), on a fake /sys and /dev."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import pytest
from image_tools import fvlib


def iso(label):
    data = bytearray(0x8800)
    data[0x8000:0x8006] = b'\x01CD001'
    data[0x8028:0x8048] = label.encode().ljust(32)
    return bytes(data)


def fat12(label):
    """A FAT12 boot sector as mkfs.vfat makes a floppy's."""
    boot = bytearray(0x8800)
    boot[0], boot[0x26], boot[510:512] = 0xEB, 0x29, b'\x55\xaa'
    boot[0x2B:0x36], boot[0x36:0x3E] = label.encode().ljust(11), b'FAT12   '
    return bytes(boot)


@pytest.fixture
def machine(tmp_path):
    """vda: the boot disk (fvstate, and an FVSEED partition); vdb: a stale install (fvstate) and a
    data disk with an FVSEED volume; sr0: a CD-ROM with an FVSEED ISO; fd0: a floppy with a FAT FVSEED."""
    sys_block, dev, run = tmp_path / 'sys', tmp_path / 'dev', tmp_path / 'run'
    dev.mkdir()
    run.mkdir()
    disks = {'vda': ('0', {'vda5': 'fvstate', 'vda6': 'seed'}), 'vdb': ('0', {'vdb5': 'fvstate'}),
             'vdc': ('0', {}), 'sr0': ('1', {}), 'fd0': ('1', {})}
    content = {'vda6': iso('FVSEED'), 'vdc': iso('FVSEED'), 'sr0': iso('FVSEED'), 'fd0': fat12('FVSEED')}
    for disk, (removable, parts) in disks.items():
        (sys_block / disk).mkdir(parents=True)
        (sys_block / disk / 'removable').write_text(removable + '\n')
        (sys_block / disk / 'uevent').write_text('DEVNAME=%s\nDEVTYPE=disk\n' % disk)
        (dev / disk).write_bytes(content.get(disk, bytes(0x8800)))
        for number, (part, name) in enumerate(parts.items(), start=5):
            entry = sys_block / disk / part
            entry.mkdir()
            (entry / 'partition').write_text('%d\n' % number)
            (entry / 'uevent').write_text('DEVNAME=%s\nPARTN=%d\nPARTNAME=%s\n' % (part, number, name))
            (sys_block / part).symlink_to(entry)
            (dev / part).write_bytes(content.get(part, bytes(0x8800)))
    return fvlib.Paths(sys_block=str(sys_block), dev=str(dev), run=str(run)), run


def test_partitions_of_the_boot_disk_only(machine):
    paths, run = machine
    (run / 'boot-disk').write_text('vdb\n')
    assert fvlib.find_partition(paths, 'fvstate') == os.path.join(paths.dev, 'vdb5')
    (run / 'boot-disk').write_text('vda\n')
    assert fvlib.find_partition(paths, 'fvstate') == os.path.join(paths.dev, 'vda5')
    assert fvlib.find_partition(paths, 'fvstate', disk='vdb') == os.path.join(paths.dev, 'vdb5')
    (run / 'boot-disk').write_text('vdc\n')
    assert fvlib.find_partition(paths, 'fvstate') is None
    with pytest.raises(fvlib.HostError, match='no partition named fvstate'):
        fvlib.require_partition(paths, 'fvstate')


def test_a_seed_only_from_removable_media_or_the_boot_disk(machine):
    paths, run = machine
    (run / 'boot-disk').write_text('vda\n')
    allowed = [name for name, _device, _fs in fvlib.labelled(paths, 'FVSEED', allowed=lambda n: fvlib.seed_device_allowed(paths, n))]
    assert allowed == ['sr0', 'vda6', 'fd0']  # not vdc, a data disk: whole disks first, the floppy last
    everything = [name for name, _device, _fs in fvlib.labelled(paths, 'FVSEED')]
    assert everything == ['sr0', 'vdc', 'vda6', 'fd0']
    (run / 'boot-disk').unlink()
    assert [n for n, _d, fs in fvlib.labelled(paths, 'FVSEED', allowed=lambda n: fvlib.seed_device_allowed(paths, n))
            ] == ['sr0', 'fd0']
    floppy = fvlib.labelled(paths, 'FVSEED', allowed=lambda n: n == 'fd0')
    assert floppy == [('fd0', os.path.join(paths.dev, 'fd0'), 'vfat')]  # a FAT floppy seed (a BMC's Floppy slot)


def test_boot_mode():
    assert fvlib.boot_mode('fv.slot=A fv.esp=1234') == ('slot', 'A')
    assert fvlib.boot_mode('fv.live=1 fv.slot=A') == ('live', None)
    assert fvlib.boot_mode('fv.slot=C') == ('other', None)
    assert fvlib.boot_mode('root=/dev/sda1') == ('other', None)


def test_atomic_write_keeps_old_or_new(tmp_path, monkeypatch):
    target = tmp_path / 'file'
    fvlib.atomic_write(str(target), b'old', 0o600)
    assert target.read_bytes() == b'old' and oct(target.stat().st_mode & 0o777) == oct(0o600)

    def crash(*_args):
        raise OSError('power lost')
    monkeypatch.setattr(fvlib.os, 'replace', crash)
    with pytest.raises(OSError):
        fvlib.atomic_write(str(target), b'new')
    monkeypatch.undo()
    assert target.read_bytes() == b'old' and os.listdir(tmp_path) == ['file']  # no leftover


def test_sha256_file_of_a_prefix(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'abcdef')
    assert fvlib.sha256_file(str(path), 3) == hashlib.sha256(b'abc').hexdigest()
    with pytest.raises(fvlib.HostError, match='ends 4 bytes early'):
        fvlib.sha256_file(str(path), 10)


def test_the_floppy_driver_only_with_a_floppy_controller(machine, tmp_path, monkeypatch):
    paths, _run = machine
    calls = []
    monkeypatch.setattr(fvlib, 'run', lambda argv, **kw: calls.append(argv) or fvlib.subprocess.CompletedProcess(argv, 0))
    acpi = tmp_path / 'acpi'
    acpi.mkdir()
    paths.sys_acpi = str(acpi)
    assert not fvlib.load_floppy_driver(paths) and calls == []  # no controller
    (acpi / 'PNP0700:00').mkdir()
    assert not fvlib.load_floppy_driver(paths)  # fd0 is there already
    shutil.rmtree(os.path.join(paths.sys_block, 'fd0'))
    assert fvlib.load_floppy_driver(paths) and calls == [['modprobe', 'floppy']]


def test_records_default_compare_and_replace():
    one, two = fvlib.Seed(), fvlib.Seed()
    one.authorized_keys.append('ssh-ed25519 AAAA one')
    assert two.authorized_keys == [] and two.network == {'mode': 'dhcp'}  # defaults are not shared
    assert fvlib.Seed(hostname='hv2') == fvlib.Seed('hv2') != fvlib.Seed()
    paths = fvlib.Paths(root='/tmp/r')
    assert paths.replace(mount_esp=False) == fvlib.Paths(root='/tmp/r', mount_esp=False)
    assert paths.mount_esp and paths.dev == '/dev'
    read = fvlib.SeedRead(None, ['none'])
    assert (read.device, read.usable, read.data) == (None, False, b'')
    for bad in (lambda: fvlib.Paths(rooot='/'), lambda: fvlib.SeedRead(None), lambda: fvlib.Seed('a', [], {}, None, 0, 1)):
        with pytest.raises(TypeError):
            bad()


def test_the_boot_tools_start_without_typing_or_dataclasses():
    """fv-state and fvslot start on the boot's critical path: typing and dataclasses (inspect, ast)
    cost each start a few tenths of a second of CPU under emulation."""
    code = ('import sys; sys.path.insert(0, %r); import fvstate, fvslot; '
            'print(sorted(set(sys.modules) & {"typing", "dataclasses", "inspect", "ast"}))'
            % os.path.dirname(fvlib.__file__))
    out = subprocess.run([sys.executable, '-S', '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'
