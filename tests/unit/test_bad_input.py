# -*- coding: utf-8 -*-
"""Bad input fails before anything changes, names what is wrong, and a step that still fails
leaves nothing of the run behind."""

from __future__ import annotations

import libvirt
import pytest
from recording import Recorder, mutating

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.fleet import reconcile
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import VM_ARGSPEC
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.resource import Vm
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.network import NETWORK_ARGSPEC, Network

STATES = ['present', 'running', 'stopped', 'paused']


def vm(conn, **options):
    params = {key: value.get('default') for key, value in VM_ARGSPEC.items()}
    params.update(name='bad', virt_type='qemu', shutdown_timeout=1, wait_timeout=5)
    params.update(options)
    return converge_one(Vm(conn), params)


def domains(conn):
    return sorted(dom.name() for dom in conn.listAllDomains(0))


def volumes(conn):
    return sorted(conn.storagePoolLookupByName('vms').listVolumes())


@pytest.mark.parametrize('state', STATES)
@pytest.mark.parametrize('options, message', [
    (dict(disks=[{'pool': 'nopool', 'size': 1}]), "vm bad: disk bad-0: storage pool 'nopool' does not exist"),
    (dict(interfaces=[{'network': 'nonet'}]), "vm bad: interface 0 (52:54:00:"),
    (dict(interfaces=[{'network': 'nonet'}]), "network 'nonet' does not exist"),
    (dict(interfaces=[{'bridge': 'nobr0'}]), "bridge 'nobr0' does not exist on the host"),
])
def test_what_a_spec_refers_to_is_checked_in_every_state(conn, state, options, message):
    calls = []
    with pytest.raises(FvError, match=message.replace('(', r'\(')):
        vm(Recorder(conn, calls, strict=True), state=state, **options)
    assert mutating(calls) == [] and 'bad' not in domains(conn)


@pytest.mark.parametrize('options, message', [
    (dict(interfaces=[{'network': 'lab', 'mac': '01:00:5e:00:00:01'}]), 'interface 0: MAC address 01:00:5e:00:00:01 is a multicast'),
    (dict(memory='99999999TiB'), 'memory: .* is more than libvirt can address'),
    (dict(cloud_init={'user_data': ['not', 'a', 'document']}), 'cloud_init.user_data must be a string'),
    (dict(disks=[{'pool': 'vms', 'size': 1}, {'pool': 'vms', 'source': '/nonexistent/image.qcow2'}]),
     'source /nonexistent/image.qcow2 is not a file'),
    (dict(cmdline='a\x00b'), 'vm bad: define: embedded null character'),
])
def test_what_libvirt_would_refuse_is_refused_first(conn, options, message):
    calls = []
    with pytest.raises(FvError, match=message):
        vm(Recorder(conn, calls, strict=True), **options)
    assert mutating(calls) == [] and 'bad' not in domains(conn) and volumes(conn) == ['base.qcow2']


def test_a_failing_define_undoes_the_volumes_it_made(conn):
    def define(_xml):
        raise libvirt.libvirtError('refused by the daemon')
    with pytest.raises(FvError) as failure:
        vm(Recorder(conn, [], fake={'defineXML': define}), disks=[{'pool': 'vms', 'size': 1}, {'pool': 'vms', 'size': 2}])
    assert volumes(conn) == ['base.qcow2']
    assert 'undone: delete volume vms/bad-1, delete volume vms/bad-0' in str(failure.value)


def test_vms_undoes_earlier_vms_when_a_later_define_fails(conn):
    defined = []

    def define(xml):
        defined.append(xml)
        if len(defined) == 3:
            raise libvirt.libvirtError('no space left on device')
        return conn.defineXML(xml)
    items = [{'name': 'v1'}, {'name': 'v2'}, {'name': 'v3'}]
    with pytest.raises(FvError) as failure:
        reconcile(Recorder(conn, [], fake={'defineXML': define}), False, items, {'memory': 64, 'virt_type': 'qemu'}, False)
    assert domains(conn) == ['foreign']
    assert 'vm v3: define' in str(failure.value)
    assert 'undone: undefine domain v2, undefine domain v1' in str(failure.value)


def test_a_network_whose_start_fails_is_not_left_defined(conn):
    def create():
        raise libvirt.libvirtError('network is already in use by interface virbr9')
    params = {key: value.get('default') for key, value in NETWORK_ARGSPEC.items()}
    params.update(name='clash', mode='nat', ip='10.77.0.1')
    with pytest.raises(FvError) as failure:
        converge_one(Network(Recorder(conn, [], fake={'create': create})), params)
    assert 'clash' not in conn.listDefinedNetworks() + conn.listNetworks()
    assert "network 'clash': start" in str(failure.value) and 'undone: undefine network clash' in str(failure.value)


def test_remove_volumes_keeps_a_volume_another_vm_uses(conn):
    vm(conn, name='one', disks=[{'pool': 'vms', 'name': 'shared', 'size': 1}])
    vm(conn, name='two', disks=[{'pool': 'vms', 'name': 'shared'}])
    removed = vm(conn, name='one', state='absent', remove_volumes=True)
    assert 'one' not in domains(conn) and 'shared' in volumes(conn)
    assert 'volume vms/shared is used by two: not deleted' in removed['warnings'][0]
    vm(conn, name='two', state='absent', remove_volumes=True)
    assert 'shared' not in volumes(conn)
