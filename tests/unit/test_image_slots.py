# -*- coding: utf-8 -*-
"""fvslot, the on-host A/B tool: GRUB environment block, slot decisions, writing and verifying the
inactive slot, boot-once and mark-good, on a fake /sys and boot partition (no root, no devices)."""

from __future__ import annotations

import os

import pytest
from image_tools import fvslot


@pytest.fixture
def host(tmp_path):
    """A host booted from slot A: fake sysfs with the five partitions, /dev nodes as files, an ESP."""
    sys_block, dev, esp = tmp_path / 'sys', tmp_path / 'dev', tmp_path / 'esp'
    for number, name in enumerate(['fvbios', 'fvboot', 'fvslotA', 'fvslotB', 'fvstate'], start=1):
        entry = sys_block / ('vda%d' % number)
        entry.mkdir(parents=True)
        (entry / 'uevent').write_text('MAJOR=254\nMINOR=%d\nDEVNAME=vda%d\nDEVTYPE=partition\nPARTN=%d\nPARTNAME=%s\n'
                                      % (number, number, number, name))
    dev.mkdir()
    for number in range(1, 6):
        (dev / ('vda%d' % number)).write_bytes(b'\0' * (1 << 20))
    (esp / 'grub').mkdir(parents=True)
    (esp / 'grub' / 'grubenv').write_bytes(fvslot.format_grubenv({'fv_active': 'A', 'fv_next': ''}))
    (esp / 'slots' / 'A').mkdir(parents=True)
    (esp / 'slots' / 'A' / 'vmlinuz').write_bytes(b'kernel A')
    cmdline = tmp_path / 'cmdline'
    cmdline.write_text('console=ttyS0,115200 fv.slot=A quiet\n')
    paths = fvslot.Paths(cmdline=str(cmdline), sys_block=str(sys_block), dev=str(dev), esp_mount=str(esp),
                         state_mount=str(tmp_path / 'state'), mount_esp=False)
    return paths, tmp_path


def test_grubenv_round_trip_is_one_kilobyte():
    data = fvslot.format_grubenv({'fv_active': 'B', 'fv_next': ''})
    assert len(data) == 1024 and data.startswith(b'# GRUB Environment Block\nfv_active=B\nfv_next=\n#')
    assert fvslot.parse_grubenv(data) == {'fv_active': 'B', 'fv_next': ''}
    with pytest.raises(fvslot.SlotError):
        fvslot.parse_grubenv(b'garbage')
    with pytest.raises(fvslot.SlotError, match='overflow'):
        fvslot.format_grubenv({'x': 'y' * 2000})


@pytest.mark.parametrize('cmdline, slot', [
    ('fv.slot=A console=ttyS0', 'A'), ('quiet fv.slot=B', 'B'), ('fv.live=1', None), ('fv.slot=C', None),
])
def test_booted_slot(cmdline, slot):
    assert fvslot.booted_slot(cmdline) == slot


@pytest.mark.parametrize('env, slot', [
    ({'fv_active': 'A', 'fv_next': ''}, 'A'), ({'fv_active': 'A', 'fv_next': 'B'}, 'B'),
    ({'fv_active': 'B'}, 'B'), ({}, 'A'),
])
def test_next_boot_follows_grub_cfg(env, slot):
    assert fvslot.next_boot(env) == slot


def test_write_verify_boot_once_and_mark_good(host):
    paths, tmp = host
    squashfs = tmp / 'root.squashfs'
    squashfs.write_bytes(os.urandom(300 * 1024))
    (tmp / 'vmlinuz').write_bytes(b'kernel B')
    (tmp / 'initrd.img').write_bytes(b'initrd B')
    result = fvslot.write_slot(paths, str(squashfs), str(tmp / 'vmlinuz'), str(tmp / 'initrd.img'), '0.2.0',
                               log=lambda _line: None)
    assert result['slot'] == 'B'
    assert (tmp / 'dev' / 'vda4').read_bytes()[:300 * 1024] == squashfs.read_bytes()
    assert (tmp / 'esp' / 'slots' / 'B' / 'version').read_text() == '0.2.0\n'
    assert fvslot.boot_once(paths) == 'B'
    assert fvslot.read_env(paths.esp_mount) == {'fv_active': 'A', 'fv_next': 'B'}
    # GRUB boots B once (and clears fv_next); B marks itself good.
    fvslot.write_env(paths.esp_mount, {'fv_active': 'A', 'fv_next': ''})
    (tmp / 'cmdline').write_text('fv.slot=B\n')
    assert fvslot.mark_good(paths) == 'B'
    assert fvslot.next_boot(fvslot.read_env(paths.esp_mount)) == 'B'


def test_a_slot_never_marked_good_is_abandoned(host):
    paths, tmp = host
    (tmp / 'esp' / 'slots' / 'B').mkdir()
    (tmp / 'esp' / 'slots' / 'B' / 'vmlinuz').write_bytes(b'kernel B')
    fvslot.boot_once(paths, 'B')
    env = fvslot.read_env(paths.esp_mount)
    assert fvslot.next_boot(env) == 'B'
    env['fv_next'] = ''  # what GRUB's save_env does when it boots the try
    fvslot.write_env(paths.esp_mount, env)
    assert fvslot.next_boot(fvslot.read_env(paths.esp_mount)) == 'A'


def test_refusals(host):
    paths, tmp = host
    big = tmp / 'big.squashfs'
    big.write_bytes(b'x' * (2 << 20))
    with pytest.raises(fvslot.SlotError, match='does not fit'):
        fvslot.write_slot(paths, str(big), str(big), str(big), '1', log=lambda _l: None)
    small = tmp / 'small.squashfs'
    small.write_bytes(b'y' * 1000)
    with pytest.raises(fvslot.SlotError, match='expected'):
        fvslot.write_slot(paths, str(small), str(small), str(small), '1', sha256='0' * 64, log=lambda _l: None)
    with pytest.raises(fvslot.SlotError, match='no kernel'):
        fvslot.boot_once(paths, 'B')
    (tmp / 'cmdline').write_text('fv.live=1\n')
    with pytest.raises(fvslot.SlotError, match='live'):
        fvslot.write_slot(paths, str(small), str(small), str(small), '1', log=lambda _l: None)


def test_status_and_cli(host, capsys):
    paths, _tmp = host
    assert fvslot.main(['status'], paths) == 0
    out = capsys.readouterr().out
    assert '"booted": "A"' in out and '"marked_good": true' in out
    assert fvslot.main(['boot-once', 'B'], paths) == 2
    assert 'no kernel' in capsys.readouterr().err
