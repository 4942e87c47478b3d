# -*- coding: utf-8 -*-
"""The client on sushy-emulator's own replies (tests/unit/fixtures/sushy-emulator.json, recorded by
``tests/redfish/harness.py record`` from the lab's blank box with the seed floppy inserted and the
boot override set to Cd): Basic auth (it has no SessionService), inventory, media, boot override."""

from __future__ import annotations

import json
import os

import pytest
from fakebmc import FakeBmc

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.redfish.bmc import Bmc, BmcAccess

RECORDED = os.path.join(os.path.dirname(__file__), 'fixtures', 'sushy-emulator.json')
PASSWORD = 'recorded-lab-password'


@pytest.fixture
def emulator():
    with open(RECORDED) as handle:
        replies = json.load(handle)
    with FakeBmc(users={'fvrf-admin': PASSWORD}, sessions=False, replay=replies) as fake:
        yield fake, replies


def uuid_of(replies):
    members = replies['/redfish/v1/Systems']['body']['Members']
    assert len(members) == 1
    return members[0]['@odata.id'].rsplit('/', 1)[1]


def test_inventory_of_the_blank_box(emulator):
    fake, replies = emulator
    uuid = uuid_of(replies)
    with Bmc(BmcAccess(fake.url, 'fvrf-admin', PASSWORD, timeout=5)) as bmc:
        assert bmc.auth_method == 'basic'
        system = bmc.system()
        assert system.label == uuid
        inventory = system.inventory()
    assert inventory['system']['name'] == 'fvrf-rec-box'
    assert inventory['system']['manufacturer'] == 'Sushy Emulator'
    assert inventory['power_state'] == 'Off'
    assert inventory['cpus'] == {'count': 2, 'model': 'qemu64', 'sockets': 2, 'cores': 2, 'threads': 2}
    assert inventory['memory_mib'] == 2048
    # the emulator lists <interface> MACs only (not the QEMU command-line management NIC), no link state
    assert inventory['nics'] == [{'id': '52:54:00:f5:00:01', 'mac': '52:54:00:f5:00:01', 'link': None,
                                  'speed_mbps': None, 'state': 'Enabled'}]
    # SimpleStorage lists every drive backed by a pool volume: the inserted seed floppy too
    assert sorted((d['protocol'], d['name'], d['size_bytes']) for d in inventory['disks']) == [
        ('fdc', 'seed-img-%s.img' % uuid, 1474560), ('virtio', 'fvrf-rec-disk.qcow2', 16 * 2 ** 30)]
    assert inventory['problems'] == [
        'Storage: the BMC failed to serve it (HTTP 500: Error finding storage collection by UUID "%s")' % uuid]
    assert inventory['firmware'] == {'bios_version': '1.0.0', 'boot_mode': None}
    # set to Cd/Once before the recording: read back as Continuous
    assert inventory['boot'] == {'target': 'Cd', 'enabled': 'Continuous', 'mode': None,
                                 'allowed_targets': ['Pxe', 'Cd', 'Hdd']}
    assert [(m['id'], m['media_types'], m['inserted'], m['image']) for m in inventory['virtual_media']] == [
        ('Cd', ['CD', 'DVD'], False, None),
        ('Floppy', ['Floppy', 'USBStick'], True, 'http://127.0.0.1:8080/seed.img')]
