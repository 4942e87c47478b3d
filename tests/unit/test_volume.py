# -*- coding: utf-8 -*-
"""Volumes on the test driver: create, import with checksum, never shrink, delete, check mode."""

from __future__ import annotations

import hashlib

import pytest
from recording import mutating

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.volume import (
    VOLUME_ARGSPEC, Volume, image_info,
)


def volume(conn, check_mode=False, **options):
    params = {key: value.get('default') for key, value in VOLUME_ARGSPEC.items()}
    params.update(options)
    return converge_one(Volume(conn, check_mode), params)


def test_create_is_idempotent(conn):
    first = volume(conn, pool='vms', name='d1', size='8MiB')
    assert first['changed'] and first['volume']['capacity'] == 8 * 2 ** 20
    assert first['diff'] == {'before': {'state': 'absent'},
                             'after': {'state': 'present', 'format': 'qcow2', 'capacity': 8 * 2 ** 20}}
    assert not volume(conn, pool='vms', name='d1', size=8)['changed']


def test_smaller_size_warns_and_keeps(conn):
    volume(conn, pool='vms', name='d1', size=8)
    result = volume(conn, pool='vms', name='d1', size=4)
    assert not result['changed'] and 'never shrink' in result['warnings'][0]


def test_missing_volume_needs_a_size(conn):
    with pytest.raises(FvError, match='give size'):
        volume(conn, pool='vms', name='nothing')


def test_format_is_never_converted(conn):
    with pytest.raises(FvError, match='volumes are not converted'):
        volume(conn, pool='vms', name='base.qcow2', format='raw')


def test_absent_deletes(conn):
    result = volume(conn, pool='vms', name='base.qcow2', state='absent')
    assert result['changed'] and result['volume'] == {}
    assert 'base.qcow2' not in conn.storagePoolLookupByName('vms').listVolumes()


def test_check_mode_makes_no_mutating_call(recording):
    proxy, calls = recording
    assert volume(proxy, check_mode=True, pool='vms', name='d9', size=1)['changed']
    assert volume(proxy, check_mode=True, pool='vms', name='base.qcow2', state='absent')['changed']
    assert volume(proxy, check_mode=True, pool='vms', name='x', url='http://127.0.0.1:9/x.img')['changed']
    assert mutating(calls) == []


def test_checksum_mismatch_fails_before_creating(conn, tmp_path):
    image = tmp_path / 'img.raw'
    image.write_bytes(b'\0' * 4096)
    with pytest.raises(FvError, match='checksum mismatch'):
        volume(conn, pool='vms', name='imp', source=str(image), checksum='sha256:' + '0' * 64)
    assert 'imp' not in conn.storagePoolLookupByName('vms').listVolumes()


def test_image_formats(tmp_path):
    raw = tmp_path / 'a.raw'
    raw.write_bytes(b'x' * 1000)
    assert image_info(str(raw)) == ('raw', 1000)
    qcow = tmp_path / 'a.qcow2'
    qcow.write_bytes(b'QFI\xfb' + b'\0' * 20 + (5 * 2 ** 30).to_bytes(8, 'big') + b'\0' * 100)
    assert image_info(str(qcow)) == ('qcow2', 5 * 2 ** 30)
    digest = hashlib.sha256(b'x' * 1000).hexdigest()
    from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.volume import verify_checksum
    verify_checksum(str(raw), digest)
    verify_checksum(str(raw), 'sha256:' + digest.upper())
    with pytest.raises(FvError, match='unknown algorithm'):
        verify_checksum(str(raw), 'nope:00')


def test_sparse_sections_of_a_file(tmp_path):
    from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import _next_section
    import os
    image = tmp_path / 'sparse.img'
    with open(image, 'wb') as handle:
        handle.truncate(8 << 20)
        handle.seek(4 << 20)
        handle.write(b'x' * 4096)
    fd = os.open(str(image), os.O_RDONLY)
    try:
        sections = []
        while True:
            in_data, length = _next_section(fd)
            if in_data and length == 0:
                break
            sections.append((in_data, length))
            os.lseek(fd, length, os.SEEK_CUR)
        assert sum(length for _d, length in sections) == 8 << 20
        assert [d for d, _l in sections] == [False, True, False]
        assert sections[0][1] == 4 << 20 and sections[1][1] >= 4096
    finally:
        os.close(fd)
