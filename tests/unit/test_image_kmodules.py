# -*- coding: utf-8 -*-
"""image/build/kmodules.py: which kernel modules the image drops, which the initramfs loads and in
what order, and the static-busybox check; on a fake modules tree."""

from __future__ import annotations

import os
import struct
import subprocess

import pytest
from image_tools import IMAGE, load_file

kmodules = load_file('fv_kmodules', os.path.join(IMAGE, 'build', 'kmodules.py'))

DEPS = {
    'kernel/sound/core/snd.ko.xz': [],
    'kernel/sound/pci/snd-hda.ko.xz': ['kernel/sound/core/snd.ko.xz'],
    'kernel/drivers/usb/misc/uses-sound.ko.xz': ['kernel/sound/core/snd.ko.xz'],
    'kernel/drivers/block/virtio_blk.ko.xz': ['kernel/drivers/virtio/virtio_ring.ko.xz'],
    'kernel/drivers/virtio/virtio_ring.ko.xz': [],
    'kernel/fs/isofs/isofs.ko.xz': [],
    'kernel/drivers/scsi/sd_mod.ko.xz': ['kernel/drivers/scsi/scsi_mod.ko.xz', 'kernel/lib/crc-t10dif.ko.xz'],
    'kernel/drivers/scsi/scsi_mod.ko.xz': [],
    'kernel/lib/crc-t10dif.ko.xz': [],
    'kernel/drivers/scsi/megaraid/megaraid_sas.ko.xz': ['kernel/drivers/scsi/scsi_mod.ko.xz'],
    'kernel/crypto/crc32c_generic.ko.xz': [],
    'kernel/fs/ext4/ext4.ko.xz': [],
}


def test_prune_takes_whatever_needs_a_dropped_module():
    drop = kmodules.prune_set(DEPS)
    assert drop == {'kernel/sound/core/snd.ko.xz', 'kernel/sound/pci/snd-hda.ko.xz',
                    'kernel/drivers/usb/misc/uses-sound.ko.xz'}


def test_prune_removes_files_and_empty_folders(tmp_path):
    for mod in DEPS:
        (tmp_path / mod).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / mod).write_bytes(b'ko')
    (tmp_path / 'modules.dep').write_text(''.join('%s: %s\n' % (m, ' '.join(d)) for m, d in DEPS.items()))
    assert kmodules.prune(str(tmp_path)) == (3, len(DEPS))
    assert not (tmp_path / 'kernel' / 'sound').exists()
    assert (tmp_path / 'kernel' / 'fs' / 'isofs' / 'isofs.ko.xz').exists()


def test_load_order_dependencies_first_each_once():
    soft = {'ext4': ['crc32c_generic']}
    wanted = [['sd_mod', 'virtio_blk', 'ext4', 'overlay', 'nosuch'], ['megaraid_sas', 'sd_mod']]
    groups, missing = kmodules.load_order(DEPS, soft, {'overlay'}, wanted)
    first, later = groups
    assert first == ['kernel/lib/crc-t10dif.ko.xz', 'kernel/drivers/scsi/scsi_mod.ko.xz',
                     'kernel/drivers/scsi/sd_mod.ko.xz', 'kernel/drivers/virtio/virtio_ring.ko.xz',
                     'kernel/drivers/block/virtio_blk.ko.xz', 'kernel/crypto/crc32c_generic.ko.xz',
                     'kernel/fs/ext4/ext4.ko.xz']
    assert later == ['kernel/drivers/scsi/megaraid/megaraid_sas.ko.xz']  # scsi_mod is loaded already
    assert missing == ['nosuch']  # overlay is built in


def _elf(interp: bool) -> bytes:
    header = bytearray(64)
    header[:5] = b'\x7fELF\x02'
    struct.pack_into('<Q', header, 0x20, 64)
    struct.pack_into('<HH', header, 0x36, 56, 2)
    programs = struct.pack('<I', 1) + bytes(52) + struct.pack('<I', 3 if interp else 4) + bytes(52)
    return bytes(header) + programs


@pytest.mark.parametrize('data, static', [(_elf(False), True), (_elf(True), False), (b'#!/bin/sh\n', False),
                                          (b'\x7fELF\x01' + bytes(100), False)])
def test_is_static_elf(data, static):
    assert kmodules.is_static_elf(data) is static


def test_the_build_machine_busybox_is_static():
    with open('/bin/busybox', 'rb') as handle:  # busybox-static (scripts/setup-host.sh)
        assert kmodules.is_static_elf(handle.read(1 << 16))
    with open('/bin/ls', 'rb') as handle:
        assert not kmodules.is_static_elf(handle.read(1 << 16))


def initramfs_function(name: str) -> str:
    """A shell function of image/initramfs/init, as text (the script itself runs only as PID 1)."""
    with open(os.path.join(IMAGE, 'initramfs', 'init')) as handle:
        text = handle.read()
    start = text.index('\n%s() {' % name) + 1
    return text[start:text.index('\n}\n', start) + 3]


@pytest.mark.parametrize('alias, wanted', [
    ('pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00', True),   # virtio-blk
    ('pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80', True),   # PIIX IDE (the CD-ROM)
    ('pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01', True),   # AHCI
    ('pci:v00008086d000024CDsv00001AF4sd00001100bc0Csc03i20', True),   # a USB host (EHCI)
    ('pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01', True),   # an SD host
    ('virtio:d00000002v00001AF4', True),                               # a virtio disk
    ('virtio:d00000008v00001AF4', True),                               # virtio-scsi
    ('usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00', True),       # a USB stick
    ('scsi:t-0x05', True),
    ('mmc:block', True),
    ('pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00', False),  # virtio-net
    ('pci:v00008086d00007113sv00001AF4sd00001100bc06sc80i00', False),  # the PIIX4 SMBus bridge
    ('pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00', False),  # the VGA
    ('virtio:d00000001v00001AF4', False),                              # a virtio NIC
    ('usb:v0627p0001d0000dc00dsc00dp00ic03isc00ip00in00', False),      # the USB tablet
])
def test_the_initramfs_loads_the_drivers_of_storage_devices_only(alias, wanted):
    script = initramfs_function('storage') + 'storage "$1"\n'
    assert (subprocess.run(['sh', '-c', script, 'init', alias], check=False).returncode == 0) is wanted
