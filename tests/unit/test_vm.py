# -*- coding: utf-8 -*-
"""The VM service on libvirt's test driver: create, idempotence, in-place updates, check mode,
power states, removal."""

from __future__ import annotations

import libvirt
import pytest
from recording import UPLOADS, Recorder, mutating, view_of

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import VM_ARGSPEC
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.resource import Vm
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document


def spec(**options):
    params = {key: value.get('default') for key, value in VM_ARGSPEC.items()}
    params.update(shutdown_timeout=1, wait_timeout=5)
    params.update(options)
    return params


def ensure(conn, check_mode=False, **options):
    return converge_one(Vm(conn, check_mode), spec(**options))


BASIC = dict(name='web1', vcpus=2, memory='256MiB', virt_type='qemu',
             disks=[{'pool': 'vms', 'size': 16}], interfaces=[{'network': 'lab'}])


def test_create_then_second_run_changes_nothing(conn):
    first = ensure(conn, **BASIC)
    assert first['changed']
    assert first['actions'] == ['create volume vms/web1-0 (16777216 bytes, qcow2)', 'define domain web1']
    assert first['vm']['memory'] == 256 and first['vm']['vcpus'] == 2 and first['vm']['owned']
    assert first['diff']['before'] == {'state': 'absent'}
    second = ensure(conn, **BASIC)
    assert not second['changed'] and second['actions'] == []
    assert second['diff']['before'] == second['diff']['after']


def test_check_mode_makes_no_mutating_call(recording):
    proxy, calls = recording
    result = ensure(proxy, check_mode=True, state='running', cloud_init={'user_data': {'a': 1}}, **BASIC)
    assert result['changed'] and 'define domain web1' in result['actions']
    assert mutating(calls) == []
    assert proxy.lookupByName('foreign').name() == 'foreign'
    with pytest.raises(Exception):
        proxy.lookupByName('web1')


def test_check_mode_on_existing_domain_reports_without_changing(conn, recording):
    ensure(conn, **BASIC)
    proxy, calls = recording
    result = ensure(proxy, check_mode=True, **{**BASIC, 'memory': '1GiB', 'state': 'running'})
    assert result['changed'] and mutating(calls) == []
    assert result['diff']['before']['memory'] == 256 and result['diff']['after']['memory'] == 1024
    assert result['diff']['after']['state'] == 'running'
    assert view_of(Vm(conn), 'web1')['memory'] == 256


def test_update_edits_in_place_and_keeps_unknown_xml(conn):
    # A domain defined by someone else, with foreign metadata and a device we do not model.
    result = ensure(conn, name='foreign', memory=128, interfaces=[{'network': 'lab'}])
    assert result['changed'] and result['changes'] == {'memory': 'restart', 'interfaces': 'live'}
    assert result['reboot_required']  # the test driver runs 'foreign': memory waits for a restart
    doc = Document(conn.lookupByName('foreign').XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert doc.find('metadata/{http://example.org/app1/}tag').text == 'kept'
    assert doc.owner() is None  # never claimed
    assert doc.text('memory') == str(128 * 1024)
    assert doc.attr('devices/interface/source', 'network') == 'lab'
    assert not ensure(conn, name='foreign', memory=128, interfaces=[{'network': 'lab'}])['changed']


def test_only_declared_options_are_compared(conn):
    ensure(conn, **BASIC)
    # Nothing about vcpus or disks declared: their actual values are not a difference.
    result = ensure(conn, name='web1', memory=256)
    assert not result['changed']


def test_running_domain_restart_policy(conn):
    ensure(conn, state='running', **BASIC)
    deferred = ensure(conn, state='running', **{**BASIC, 'vcpus': 3})
    assert deferred['reboot_required'] and deferred['changes'] == {'vcpus': 'restart'}
    restarted = ensure(conn, state='running', apply_changes='restart', **{**BASIC, 'vcpus': 4})
    assert not restarted['reboot_required']
    assert any(action.startswith('restart web1') for action in restarted['actions'])
    assert restarted['vm']['state'] == 'running'


def test_power_transitions(conn):
    ensure(conn, state='running', **BASIC)
    assert ensure(conn, state='paused', **BASIC)['vm']['state'] == 'paused'
    assert ensure(conn, state='running', **BASIC)['vm']['state'] == 'running'
    stopped = ensure(conn, state='stopped', **BASIC)
    assert stopped['vm']['state'] == 'stopped'
    assert not ensure(conn, state='stopped', **BASIC)['changed']


def test_absent_keeps_volumes_unless_asked(conn):
    ensure(conn, state='running', **BASIC)
    removed = ensure(conn, name='web1', state='absent')
    assert removed['changed'] and 'force off web1' in removed['actions']
    assert conn.storagePoolLookupByName('vms').storageVolLookupByName('web1-0')
    ensure(conn, **BASIC)
    ensure(conn, name='web1', state='absent', remove_volumes=True)
    assert 'web1-0' not in conn.storagePoolLookupByName('vms').listVolumes()
    assert not ensure(conn, name='web1', state='absent')['changed']


@pytest.mark.parametrize('options, message', [
    (dict(memory='lots'), 'memory: expected a size'),
    (dict(vcpus=0), 'vcpus must be 1 or more'),
    (dict(disks=[{'pool': 'vms', 'name': 'nothing-here'}]), 'does not exist; give size or source'),
    (dict(disks=[{'pool': 'nopool', 'size': 1}]), "vm bad: disk bad-0: storage pool 'nopool' does not exist"),
    (dict(interfaces=[{'network': 'lab', 'bridge': 'br0'}]), 'exactly one of network or bridge'),
    (dict(interfaces=[{'network': 'lab', 'mac': 'zz'}]), 'invalid MAC'),
])
def test_bad_input_fails_before_any_change(recording, options, message):
    proxy, calls = recording
    with pytest.raises(FvError, match=message):
        ensure(proxy, **dict(dict(name='bad', virt_type='qemu'), **options))
    assert mutating(calls) == []


def test_stable_mac_and_disk_names(conn):
    result = ensure(conn, name='db', virt_type='qemu', disks=[{'pool': 'vms', 'size': 1}, {'pool': 'vms', 'size': 1}],
                    interfaces=[{'network': 'lab'}, {'network': 'lab'}])
    assert [d['name'] for d in result['vm']['disks']] == ['db-0', 'db-1']
    assert [d['target'] for d in result['vm']['disks']] == ['vda', 'vdb']
    macs = [n['mac'] for n in result['vm']['interfaces']]
    ensure(conn, name='db', state='absent')
    again = ensure(conn, name='db', virt_type='qemu', interfaces=[{'network': 'lab'}, {'network': 'lab'}])
    assert [n['mac'] for n in again['vm']['interfaces']] == macs


def test_disk_grows_never_shrinks(conn):
    ensure(conn, **BASIC)
    # The test driver cannot resize: the plan is checked here, the resize itself in molecule.
    grown = ensure(conn, check_mode=True, **{**BASIC, 'disks': [{'pool': 'vms', 'size': 32}]})
    assert grown['changed'] and grown['actions'] == ['grow volume vms/web1-0 to 33554432 bytes']
    shrink = ensure(conn, **{**BASIC, 'disks': [{'pool': 'vms', 'size': 8}]})
    assert not shrink['changed'] and 'never shrink' in shrink['warnings'][0]


def test_firmware_and_kernel_boot_are_written(conn):
    result = ensure(conn, name='k', virt_type='qemu', firmware='efi', kernel='/k/vmlinuz', initrd='/k/initrd',
                    cmdline='console=ttyS0')
    doc = Document(conn.lookupByName('k').XMLDesc(0))
    assert doc.attr('os', 'firmware') == 'efi'
    assert doc.attr("os/firmware/feature[@name='secure-boot']", 'enabled') == 'no'
    assert doc.text('os/cmdline') == 'console=ttyS0'
    assert result['vm']['firmware'] == 'efi'
    changed = ensure(conn, name='k', firmware='bios', cmdline='')
    assert changed['changes'] == {'firmware': 'restart', 'cmdline': 'next_boot'}
    doc = Document(conn.lookupByName('k').XMLDesc(0))
    assert doc.attr('os', 'firmware') is None and doc.find('os/cmdline') is None


def test_qemu_args_round_trip():
    # The test driver does not know the qemu namespace: the XML edit is tested here, libvirt in molecule.
    from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import (
        new_domain, read_qemu_args, write_qemu_args,
    )
    args = ['-netdev', 'user,id=mgmt,hostfwd=tcp:127.0.0.1:2222-:22', '-device', 'virtio-net-pci,netdev=mgmt,addr=0x10']
    doc = new_domain('srv')
    write_qemu_args(doc, args)
    text = doc.tostring()
    assert 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"' in text
    again = Document(text)
    assert read_qemu_args(again) == args
    write_qemu_args(again, [])
    assert read_qemu_args(again) == [] and 'commandline' not in again.tostring()


# ---- exact device lists -------------------------------------------------------------------------
TWO = {**BASIC, 'disks': [{'pool': 'vms', 'size': 16}, {'pool': 'vms', 'name': 'web1-data', 'size': 8}],
       'interfaces': [{'network': 'lab'}, {'network': 'lab', 'mac': '52:54:00:00:99:01'}]}


def test_a_device_left_out_of_the_list_is_detached_and_its_volume_kept(conn):
    ensure(conn, **TWO)
    result = ensure(conn, **BASIC)
    assert result['changed'] and result['changes'] == {'disks': 'live', 'interfaces': 'live'}
    assert [d['name'] for d in result['vm']['disks']] == ['web1-0']
    assert [n['mac'] for n in result['vm']['interfaces']] == [n['mac'] for n in ensure(conn, **BASIC)['vm']['interfaces']]
    assert len(result['vm']['interfaces']) == 1
    assert 'web1-data' in conn.storagePoolLookupByName('vms').listVolumes()  # kept: remove_volumes is false
    assert not ensure(conn, **BASIC)['changed']


def test_remove_volumes_deletes_the_volume_of_a_detached_disk(conn):
    ensure(conn, **TWO)
    result = ensure(conn, remove_volumes=True, **BASIC)
    assert 'delete volume vms/web1-data' in result['actions']
    assert 'web1-data' not in conn.storagePoolLookupByName('vms').listVolumes()


def test_reordering_a_list_is_no_change(conn):
    # Identities: a disk's volume name, a NIC's MAC (unnamed ones default by position).
    named = {**BASIC, 'disks': [{'pool': 'vms', 'name': 'os', 'size': 16}, {'pool': 'vms', 'name': 'data', 'size': 8}],
             'interfaces': [{'network': 'lab', 'mac': '52:54:00:00:99:01'}, {'network': 'lab', 'mac': '52:54:00:00:99:02'}]}
    ensure(conn, **named)
    swapped = {**named, 'disks': list(reversed(named['disks'])), 'interfaces': list(reversed(named['interfaces']))}
    assert not ensure(conn, **swapped)['changed']


def test_running_vm_devices_are_unplugged_live_or_wait_for_the_restart(conn):
    ensure(conn, state='running', **TWO)
    result = ensure(conn, state='running', **BASIC)
    assert result['changed']
    unplugs = [a for a in result['actions'] if a.startswith('hot-unplug')]
    assert len(unplugs) == 2
    # The test driver cannot unplug: the module says the devices go at the next restart.
    assert result['reboot_required'] and any('next restart' in w for w in result['warnings'])


def test_a_disk_from_a_source_takes_the_format_its_volume_is_made_with(conn, tmp_path):
    """No format declared: the new volume takes its source's (raw for an ISO), and so does the disk's
    driver (not the qcow2 of a volume made with a size)."""
    iso = tmp_path / 'media.iso'
    iso.write_bytes(b'\0' * 65536)
    disks = [{'pool': 'vms', 'size': 16}, {'pool': 'vms', 'name': 'web1-media.iso', 'source': str(iso), 'device': 'cdrom'}]
    result = converge_one(Vm(Recorder(conn, [], fake=UPLOADS)), spec(**{**BASIC, 'disks': disks}))
    assert 'import %s into volume vms/web1-media.iso' % iso in result['actions']
    doc = Document(conn.lookupByName('web1').XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    types = {disk.get('device'): disk.find('driver').get('type') for disk in doc.findall('devices/disk')}
    assert types == {'disk': 'qcow2', 'cdrom': 'raw'}


def test_an_iso_volume_is_read_by_qemu_as_raw(conn, tmp_path):
    """A cdrom on a volume of format iso (as libvirt reads an existing ISO, or as declared): the driver
    says raw, which libvirt's QEMU driver takes, and the declared iso is not a difference."""
    conn.storagePoolLookupByName('vms').createXML(
        "<volume><name>media.iso</name><capacity>65536</capacity><target><format type='iso'/></target></volume>", 0)
    disks = [{'pool': 'vms', 'size': 16}, {'pool': 'vms', 'name': 'media.iso', 'device': 'cdrom'}]
    assert ensure(conn, **{**BASIC, 'disks': disks})['changed']
    doc = Document(conn.lookupByName('web1').XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert [disk.find('driver').get('type') for disk in doc.findall('devices/disk')] == ['qcow2', 'raw']
    disks[1]['format'] = 'iso'
    assert not ensure(conn, **{**BASIC, 'disks': disks})['changed']
