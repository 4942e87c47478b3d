# -*- coding: utf-8 -*-
"""server_info with an image: whether a server can take it, asked of the fake BMC, before anything is
touched (plugins/module_utils/server/info.py)."""

from __future__ import annotations

import types

import pytest
from fakebmc import SYSTEM_UUID, FakeBmc
from test_server_redfish import PASSWORD, make_image

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server import info
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.probe import load_image

GIB = 1 << 30


@pytest.fixture
def fake():
    with FakeBmc(users={'admin': PASSWORD}) as bmc:
        yield bmc


def ask(fake, **options):
    params = {key: spec.get('default') for key, spec in info.SERVER_INFO_ARGSPEC.items()}
    params.update(driver='redfish', bmc={'address': fake.url, 'username': 'admin', 'password': PASSWORD,
                                         'validate_certs': True, 'ca_path': None, 'timeout': 5})
    params.update(options)
    fake.requests.clear()
    return info.server_info(types.SimpleNamespace(params=params, check_mode=False))


def writes(fake):
    return [r for r in fake.requests if r['method'] != 'GET' and 'Session' not in r['path']]


def test_no_image_no_capacity(fake):
    assert 'capacity' not in ask(fake)


def test_a_box_that_fits_and_the_disk_it_would_take(fake, tmp_path):
    result = ask(fake, image=make_image(tmp_path / 'image'))
    capacity = result['capacity']
    assert capacity['fits'] is True and capacity['problems'] == []
    assert capacity['image_version'] == '0.2.0' and capacity['image_bytes'] == 4 << 20
    assert capacity['min_memory_mib'] == 1024
    # the default rule: the smallest disk of 8 GiB or more
    assert capacity['install_disk']['size_bytes'] == 16 * GIB
    assert writes(fake) == []


def test_too_little_memory_and_no_disk_that_fits(fake, tmp_path):
    fake.systems[SYSTEM_UUID]['memory_gib'] = 0.5
    manifest = make_image(tmp_path / 'image') + '/manifest.json'
    result = ask(fake, image=manifest, install_disk={'min_size': '8TiB'})
    capacity = result['capacity']
    assert capacity['fits'] is False and capacity['install_disk'] is None
    assert capacity['problems'][0] == 'it has 512 MiB of memory, the image needs at least 1024 MiB'
    assert capacity['problems'][1].startswith('no disk fits the smallest disk, at least 8 TiB')
    assert writes(fake) == []


def test_the_same_rules_as_the_server_module(fake, tmp_path):
    # a selector names the disk; one smaller than the image is refused as the redfish driver refuses it
    image = load_image(make_image(tmp_path / 'image'))
    inventory = {'memory_mib': 4096, 'disks': [{'name': 'dom0', 'serial': 'DOM', 'size_bytes': 1 << 20}]}
    capacity = info.capacity(inventory, 'redfish', image, {'serial': 'DOM'})
    assert not capacity['fits'] and 'too small for the image' in capacity['problems'][0]


def test_qemu_only_memory_applies(tmp_path):
    image = load_image(make_image(tmp_path / 'image'))
    # a QEMU server's disks are not the flash drive's measure: server makes that to the image's size
    small = {'memory_mib': 2048, 'disks': [{'name': 'vdb', 'size_bytes': 1 << 20}]}
    assert info.capacity(small, 'qemu', image)['fits'] is True
    assert info.capacity(dict(small, memory_mib=512), 'qemu', image)['problems'] == [
        'it has 512 MiB of memory, the image needs at least 1024 MiB']


def test_a_missing_image_fails_before_the_bmc_is_asked(fake, tmp_path):
    with pytest.raises(FvError, match='not a built firmvisor image'):
        ask(fake, image=str(tmp_path / 'nothing'))
    assert fake.requests == []


def test_query_over_the_capacity(fake, tmp_path):
    result = ask(fake, image=make_image(tmp_path / 'image'), query='capacity.fits')
    assert result['query_result'] is True
