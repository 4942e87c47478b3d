# -*- coding: utf-8 -*-
"""The install-disk choice and the capacity check (plugins/module_utils/server/disks.py)."""

from __future__ import annotations

import pytest

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server import disks as dm

GIB = 2 ** 30
DISKS = [
    {'name': 'hdd0', 'size_bytes': 4000 * GIB, 'model': 'ST4000NM0035', 'serial': 'ZC1A0001', 'media_type': 'HDD'},
    {'name': 'ssd0', 'size_bytes': 240 * GIB, 'model': 'SAMSUNG MZ7KM240', 'serial': 'S3F5NX0K100001',
     'media_type': 'SSD', 'wwn': '5002538c40000001'},
    {'name': 'satadom', 'size_bytes': 4 * GIB, 'model': 'SATADOM-SL', 'serial': 'DOM001', 'media_type': 'SSD'},
    {'name': 'ssd1', 'size_bytes': 240 * GIB, 'model': 'SAMSUNG MZ7KM240', 'serial': 'S3F5NX0K100002',
     'media_type': 'SSD'},
]
INVENTORY = {'memory_mib': 65536, 'disks': DISKS}
IMAGE = 2 * GIB


def error_of(func):
    with pytest.raises(FvError) as info:
        func()
    return str(info.value)


def names(disk):
    return disk['name']


@pytest.mark.parametrize('value, expected', [
    (8192, 8 * GIB), ('8GiB', 8 * GIB), ('8 GiB', 8 * GIB), ('512MiB', 512 * 2 ** 20), ('1TB', 10 ** 12),
    ('10G', 10 * GIB), ('1.5GiB', 3 * GIB // 2), ('4096', 4 * GIB), ('100b', 100),
])
def test_rule_sizes_are_the_collections_sizes(value, expected):
    assert dm.validate_rule({'min_size': value})['min_size'] == expected


@pytest.mark.parametrize('value', ['8 gigs', '', '-1GiB', True, 'GiB', 0])
def test_bad_sizes(value):
    message = error_of(lambda: dm.validate_rule({'min_size': value}))
    assert message.startswith('install_disk.min_size: ')
    assert 'expected a size such as 512 (MiB) or "2GiB"' in message or 'larger than zero' in message


def test_default_rule_is_the_smallest_disk_of_8_gib_or_more():
    assert names(dm.choose_install_disk(DISKS)) == 'ssd0'      # the first of two equal ones


def test_smallest_and_largest_over_a_size():
    assert names(dm.choose_install_disk(DISKS, {'min_size': '2GiB'})) == 'satadom'
    assert names(dm.choose_install_disk(DISKS, {'min_size': 2048, 'prefer': 'largest'})) == 'hdd0'
    assert names(dm.choose_install_disk(DISKS, {'max_size': '1TiB', 'prefer': 'largest'})) == 'ssd0'


def test_by_serial_name_wwn_model_media_type():
    assert names(dm.choose_install_disk(DISKS, {'serial': 'S3F5NX0K100002'})) == 'ssd1'
    assert names(dm.choose_install_disk(DISKS, {'name': 'hdd0'})) == 'hdd0'
    assert names(dm.choose_install_disk(DISKS, {'wwn': '0x5002538C40000001'})) == 'ssd0'
    assert names(dm.choose_install_disk(DISKS, {'model': 'satadom', 'min_size': '1GiB'})) == 'satadom'
    assert names(dm.choose_install_disk(DISKS, {'media_type': 'hdd'})) == 'hdd0'


def test_an_operator_path_stands_for_itself():
    chosen = dm.choose_install_disk(DISKS, {'path': '/dev/nvme0n1'})
    assert chosen == {'name': '/dev/nvme0n1', 'path': '/dev/nvme0n1', 'size_bytes': None, 'source': 'operator'}
    assert dm.install_path(chosen) == '/dev/nvme0n1'
    known = [dict(DISKS[0], path='/dev/sdb')]
    assert dm.choose_install_disk(known, {'path': '/dev/sdb'})['name'] == 'hdd0'


def test_nothing_fits_says_what_there_is_and_why_each_was_passed_over():
    message = error_of(lambda: dm.choose_install_disk(DISKS, {'min_size': '8TiB'}))
    assert message == (
        'install_disk: no disk fits the smallest disk, at least 8 TiB (disks: '
        'hdd0 (3.9 TiB, model ST4000NM0035, serial ZC1A0001); ssd0 (240 GiB, model SAMSUNG MZ7KM240, serial '
        'S3F5NX0K100001); satadom (4 GiB, model SATADOM-SL, serial DOM001); ssd1 (240 GiB, model SAMSUNG '
        'MZ7KM240, serial S3F5NX0K100002); passed over: hdd0: smaller than 8 TiB; ssd0: smaller than 8 TiB; '
        'satadom: smaller than 8 TiB; ssd1: smaller than 8 TiB)')
    message = error_of(lambda: dm.choose_install_disk(DISKS, {'serial': 'NOPE'}))
    assert 'no disk fits serial NOPE' in message and 'hdd0: serial is ZC1A0001' in message
    assert 'no disk fits the smallest disk, at least 8 GiB (disks: none; passed over: none)' in error_of(
        lambda: dm.choose_install_disk([]))


def test_unknown_sizes_do_not_pass_a_size_rule():
    unknown = [{'name': 'mystery', 'size_bytes': None}]
    assert 'mystery: size unknown' in error_of(lambda: dm.choose_install_disk(unknown))
    assert dm.choose_install_disk(unknown, {'name': 'mystery', 'min_size': None})['name'] == 'mystery'


@pytest.mark.parametrize('rule, message', [
    ({'size': '8GiB'}, 'install_disk: unknown key(s) size'),
    ({'serial': 'a', 'name': 'b'}, 'install_disk: give one of serial/name/path/wwn, not serial and name'),
    ({'min_size': '2TiB', 'max_size': '1TiB'}, 'install_disk: min_size 2 TiB is above max_size 1 TiB'),
    ({'prefer': 'fastest'}, "install_disk.prefer: expected smallest or largest, got 'fastest'"),
    ({'min_size': 'big'}, 'install_disk.min_size: expected a size'),
])
def test_bad_rules(rule, message):
    assert message in error_of(lambda: dm.choose_install_disk(DISKS, rule))


def test_a_named_disk_too_small_for_the_image():
    message = error_of(lambda: dm.choose_install_disk(DISKS, {'name': 'satadom'}, need_bytes=8 * GIB))
    assert message == 'install_disk: satadom (4 GiB, model SATADOM-SL, serial DOM001) is too small for the image ' \
                      '(needs 8 GiB)'


def test_install_path():
    assert dm.install_path({'name': 'vda', 'path': 'vda'}) == '/dev/vda'
    assert dm.install_path(DISKS[1]) == '/dev/disk/by-id/wwn-0x5002538c40000001'
    assert dm.install_path({'name': 'x', 'wwn': '0x5000C500A1B2C3D4'}) == '/dev/disk/by-id/wwn-0x5000c500a1b2c3d4'
    message = error_of(lambda: dm.install_path(DISKS[0]))
    assert message == ('install_disk: the BMC does not tell the device path of hdd0 (3.9 TiB, model ST4000NM0035, '
                       'serial ZC1A0001) on the server; give install_disk.path (such as /dev/sda) for it')


def test_capacity_fits():
    assert dm.capacity_problems(INVENTORY, IMAGE, 2048) == []
    dm.check_capacity(INVENTORY, IMAGE, 2048, {'serial': 'ZC1A0001'})


def test_capacity_refuses_little_memory_and_small_disks():
    small = {'memory_mib': 1024, 'disks': [DISKS[2]]}
    problems = dm.capacity_problems(small, 8 * GIB, 4096)
    assert problems == [
        'it has 1024 MiB of memory, the image needs at least 4096 MiB',
        'no disk fits the smallest disk, at least 8 GiB (disks: satadom (4 GiB, model SATADOM-SL, serial DOM001); '
        'passed over: satadom: smaller than 8 GiB)']
    message = error_of(lambda: dm.check_capacity(small, 8 * GIB, 4096, server='rack1-07'))
    assert message.startswith('rack1-07 cannot take the firmvisor image: it has 1024 MiB of memory')


def test_capacity_rule_smaller_than_the_image_is_raised_to_the_image():
    # a rule "over 1 GiB" still needs a disk that holds the image
    problems = dm.capacity_problems({'memory_mib': 4096, 'disks': [DISKS[2]]}, 8 * GIB, 2048, {'min_size': '1GiB'})
    assert problems and 'at least 8 GiB' in problems[0]
    # a disk named by serial that is too small
    problems = dm.capacity_problems({'memory_mib': 4096, 'disks': DISKS}, 8 * GIB, 2048, {'serial': 'DOM001'})
    assert problems == ['satadom (4 GiB, model SATADOM-SL, serial DOM001) is too small for the image (needs 8 GiB)']


def test_unknown_memory_is_not_a_problem():
    assert dm.capacity_problems({'memory_mib': None, 'disks': DISKS}, IMAGE, 4096) == []
