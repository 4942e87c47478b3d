# -*- coding: utf-8 -*-
"""Table-driven tests of the option table's parsing and comparison."""

from __future__ import annotations

import pytest

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.values import normalize_mac, stable_mac, to_bytes, to_mib
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.devices import disks_equal, interfaces_equal
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import machine_equal, read_firmware, read_memory
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document


@pytest.mark.parametrize('value, expected', [
    (512, 512 * 2 ** 20), ('512', 512 * 2 ** 20), ('512MiB', 512 * 2 ** 20), ('2GiB', 2 ** 31),
    ('2G', 2 ** 31), ('1.5GiB', 3 * 2 ** 29), ('1GB', 10 ** 9), ('100 KiB', 102400),
])
def test_sizes(value, expected):
    assert to_bytes(value) == expected


@pytest.mark.parametrize('value', ['lots', '12XB', -1, 0, '', True, '1.5.5G'])
def test_bad_sizes(value):
    with pytest.raises(FvError, match='size'):
        to_bytes(value)


def test_mib_must_be_whole():
    assert to_mib('1GiB') == 1024
    with pytest.raises(FvError, match='whole number of MiB'):
        to_mib('100KiB')


@pytest.mark.parametrize('xml, mib', [
    ("<domain><memory unit='KiB'>524288</memory></domain>", 512),
    ("<domain><memory>1048576</memory></domain>", 1024),
    ("<domain><memory unit='GiB'>2</memory></domain>", 2048),
    ("<domain/>", None),
])
def test_memory_units(xml, mib):
    assert read_memory(Document(xml)) == mib


@pytest.mark.parametrize('desired, actual, equal', [
    ('q35', 'pc-q35-7.2', True), ('pc', 'pc-i440fx-7.2', True), ('q35', 'pc-i440fx-7.2', False),
    ('pc-q35-7.2', 'pc-q35-7.2', True), ('pc-q35-7.2', 'pc-q35-8.0', False), ('q35', None, False),
])
def test_machine_aliases(desired, actual, equal):
    assert machine_equal(desired, actual) is equal


@pytest.mark.parametrize('xml, firmware', [
    ("<domain><os firmware='efi'/></domain>", 'efi'),
    ("<domain><os><loader type='pflash'>/x</loader></os></domain>", 'efi'),
    ("<domain><os><loader type='rom'>/x</loader></os></domain>", 'bios'),
    ("<domain><os/></domain>", 'bios'),
])
def test_firmware(xml, firmware):
    assert read_firmware(Document(xml)) == firmware


ACTUAL_DISKS = [
    {'pool': 'vms', 'name': 'a', 'path': None, 'device': 'disk', 'bus': 'virtio', 'target': 'vda',
     'format': 'qcow2', 'boot': None},
    {'pool': None, 'name': None, 'path': '/iso/b.iso', 'device': 'cdrom', 'bus': 'sata', 'target': 'sda',
     'format': 'raw', 'boot': 1},
]


A = {'pool': 'vms', 'name': 'a'}
B = {'pool': 'iso', 'name': 'b.iso', '_path': '/iso/b.iso'}


# A declared list is the whole list: an undeclared disk is a difference (it would be detached);
# the order of the list is not.
@pytest.mark.parametrize('desired, equal', [
    ([A, B], True),
    ([B, A], True),
    ([dict(A, bus='virtio', format='qcow2'), dict(B, device='cdrom', boot=1)], True),
    ([dict(A, bus='sata'), B], False),
    ([dict(A, boot=2), B], False),
    ([A], False),
    ([A, B, {'pool': 'vms', 'name': 'c'}], False),
    ([], False),
])
def test_disks_are_the_whole_list_compared_on_declared_keys(desired, equal):
    assert disks_equal(desired, ACTUAL_DISKS) is equal


ACTUAL_NICS = [{'type': 'network', 'network': 'lab', 'bridge': None, 'model': 'virtio', 'mac': '52:54:00:00:00:01'}]


@pytest.mark.parametrize('desired, equal', [
    ([{'network': 'lab', 'mac': '52:54:00:00:00:01'}], True),
    ([{'network': 'lab', 'mac': '52:54:00:00:00:01', 'model': 'e1000'}], False),
    ([{'bridge': 'br0', 'mac': '52:54:00:00:00:01'}], False),
    ([{'network': 'lab', 'mac': '52:54:00:00:00:02'}], False),
    ([{'network': 'lab', 'mac': '52:54:00:00:00:01'}, {'network': 'lab', 'mac': '52:54:00:00:00:03'}], False),
    ([], False),
])
def test_interfaces_match_by_mac(desired, equal):
    assert interfaces_equal(desired, ACTUAL_NICS) is equal


def test_macs():
    assert stable_mac('web1', '0') == stable_mac('web1', '0') != stable_mac('web1', '1')
    assert stable_mac('web1', '0').startswith('52:54:00:')
    assert normalize_mac('52-54-00-AA-BB-CC') == '52:54:00:aa:bb:cc'
