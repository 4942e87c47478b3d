# -*- coding: utf-8 -*-
"""image/build/kmodules.py: which kernel modules the image drops, which the initramfs loads and in
what order, and the static-busybox check; on a fake modules tree."""

from __future__ import annotations

import os
import struct

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
