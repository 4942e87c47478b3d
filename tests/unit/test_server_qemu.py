# -*- coding: utf-8 -*-
"""The QEMU server resource on libvirt's test driver: what it defines, idempotence, check mode,
reflash only when asked, removal that keeps data disks. (Booting the image is molecule's job.)"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from recording import UPLOADS, Recorder, mutating

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.options import SERVER_ARGSPEC
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.qemu import (
    QemuServer, forwarded_port, management, other_forwards,
)

KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6lPBsEOBxTtXx8t/mnqGW3S0Tf6xUaE4b4L6YmhgvH test@fv'


@pytest.fixture(autouse=True)
def qemu_args_kept():
    """The test driver drops <qemu:commandline> (libvirtd's QEMU driver keeps it, as molecule shows):
    here the management forward's arguments live in a metadata element the test driver keeps."""
    from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import Option
    from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain import options

    def read(doc):
        return [arg.get('value') for arg in doc.findall('metadata/{urn:fvtest}qemu/{urn:fvtest}arg')]

    def write(doc, args):
        doc.remove('metadata/{urn:fvtest}qemu')
        holder = doc.ensure('metadata/{urn:fvtest}qemu')
        for value in args:
            holder.append(Document('<arg xmlns="urn:fvtest" value="%s"/>' % value).root)
    index = [opt.name for opt in options.VM_OPTIONS].index('qemu_args')
    real = options.VM_OPTIONS[index]
    options.VM_OPTIONS[index] = Option('qemu_args', type='list', elements='str', read=read, write=write)
    yield
    options.VM_OPTIONS[index] = real


def image(tmp_path, version='0.2.0', content=b'firmvisor'):
    folder = tmp_path / ('image-' + version)
    folder.mkdir(exist_ok=True)
    disk = folder / 'firmvisor.img'
    with open(disk, 'wb') as handle:
        handle.write(content)
        handle.truncate(4 << 20)
    digest = hashlib.sha256(content).hexdigest()
    (folder / 'manifest.json').write_text(json.dumps({
        'version': version, 'artifacts': {'firmvisor.img': {'sha256': digest, 'size': 4 << 20}}}))
    return str(folder)


def params(**options):
    result = {key: spec.get('default') for key, spec in SERVER_ARGSPEC.items()}
    result.update(name='hv1', pool='vms', virt_type='qemu', ssh_port=40022, wait=False,
                  ssh_authorized_keys=[KEY])
    result.update(options)
    return result


def server(conn, check_mode=False, **options):
    return converge_one(QemuServer(Recorder(conn, [], fake=UPLOADS), check_mode), params(**options))


def test_provision_defines_the_box_then_leaves_it_alone(conn, tmp_path):
    planned = server(conn, True, image=image(tmp_path), data_disks=[{'size': 8}], networks=['lab'])
    assert planned['port'] == 40022 and planned['address'] == '127.0.0.1'
    assert planned['uri'] == 'qemu+ssh://root@127.0.0.1:40022/system'
    first = server(conn, image=image(tmp_path), data_disks=[{'size': 8}], networks=['lab'])
    assert first['changed'] and first['version'] == '0.2.0' and first['port'] == 40022
    assert first['warnings'] == []  # read back as planned
    assert first['server']['data_disks'] == ['hv1-data0'] and first['server']['networks'] == ['lab']
    assert first['actions'][:3] == ['import %s into volume vms/firmvisor-0.2.0-%s.img'
                                    % (os.path.join(str(tmp_path), 'image-0.2.0', 'firmvisor.img'),
                                       first['server']['image'][len('firmvisor-0.2.0-'):-4]),
                                    'create volume vms/hv1-flash.qcow2 backed by /fake/vms/%s' % first['server']['image'],
                                    'write volume vms/hv1-seed.iso']
    doc = Document(conn.lookupByName('hv1').XMLDesc(0))
    assert doc.attr('devices/watchdog', 'model') == 'i6300esb'
    assert {(f.get('name'), f.get('policy')) for f in doc.findall('cpu/feature')} == {('svm', 'disable'),
                                                                                      ('vmx', 'disable')}
    assert doc.attr("devices/disk[@device='cdrom']/source", 'volume') == 'hv1-seed.iso'
    assert doc.attr("devices/disk[@device='disk']/boot", 'order') == '1'
    again = server(conn, image=image(tmp_path), data_disks=[{'size': 8}], networks=['lab'])
    assert not again['changed'] and again['actions'] == [] and again['server'] == first['server']


def test_a_kvm_server_keeps_the_cpu_virtualization_features(conn, tmp_path):
    first = server(conn, image=image(tmp_path), virt_type='kvm')
    doc = Document(conn.lookupByName('hv1').XMLDesc(0))
    assert first['changed'] and doc.root.get('type') == 'kvm' and doc.findall('cpu/feature') == []
    assert not server(conn, image=image(tmp_path), virt_type='kvm')['changed']


def test_check_mode_makes_no_mutating_call(conn, tmp_path):
    calls = []
    result = converge_one(QemuServer(Recorder(conn, calls, strict=True), True),
                          params(image=image(tmp_path), data_disks=[{'size': 8}]))
    assert result['changed'] and mutating(calls) == []
    assert result['server']['state'] == 'running' and result['version'] == '0.2.0'
    assert 'hv1' not in [d.name() for d in conn.listAllDomains(0)]


def test_another_image_is_reported_and_written_only_with_reflash(conn, tmp_path):
    server(conn, image=image(tmp_path), data_disks=[{'size': 8}])
    newer = image(tmp_path, '0.3.0', b'newer')
    reported = server(conn, image=newer, data_disks=[{'size': 8}])
    assert not reported['changed'] and reported['reflash_required'] and reported['version'] == '0.2.0'
    assert 'not reflashed' in reported['warnings'][0]
    flashed = server(conn, image=newer, data_disks=[{'size': 8}], reflash=True)
    assert flashed['changed'] and flashed['version'] == '0.3.0' and not flashed['reflash_required']
    assert 'delete volume vms/hv1-flash.qcow2 (replaced)' in flashed['actions']
    assert 'hv1-data0' in conn.storagePoolLookupByName('vms').listVolumes()  # data kept
    assert not server(conn, image=newer, data_disks=[{'size': 8}])['changed']


def test_absent_keeps_data_disks_unless_asked(conn, tmp_path):
    server(conn, image=image(tmp_path), data_disks=[{'size': 8}])
    removed = server(conn, state='absent')
    volumes = conn.storagePoolLookupByName('vms').listVolumes()
    assert removed['changed'] and 'hv1' not in [d.name() for d in conn.listAllDomains(0)]
    assert 'hv1-flash.qcow2' not in volumes and 'hv1-seed.iso' not in volumes and 'hv1-data0' in volumes
    assert any('data disks kept' in w for w in removed['warnings'])
    assert not server(conn, state='absent')['changed']


@pytest.mark.parametrize('options, message', [
    (dict(image='/nonexistent'), "server hv1: image /nonexistent: not a built firmvisor image"),
    (dict(ssh_authorized_keys=['not a key']), 'server hv1: seed: ssh_authorized_keys\\[0\\] is not an SSH public key'),
    (dict(pool='nopool'), "storage pool 'nopool' does not exist"),
    (dict(networks=['nonet']), "network 'nonet' does not exist"),
    (dict(ssh_port=40022, forwards=[{'port': 40022, 'server_port': 80}]),
     'server hv1: forwards: port 40022 on 127.0.0.1 is given twice'),
    (dict(forwards=[{'port': 40080, 'server_port': 70000}]), 'server hv1: forwards: server_port 70000 is not a TCP port'),
])
def test_bad_input_changes_nothing(conn, tmp_path, options, message):
    calls = []
    spec = params(image=image(tmp_path))
    spec.update(options)
    with pytest.raises(FvError, match=message):
        converge_one(QemuServer(Recorder(conn, calls, strict=True)), spec)
    assert mutating(calls) == []


def test_management_forward_round_trip():
    assert forwarded_port(management(40123)) == 40123
    assert 'restrict=on' in management(1)[1] and forwarded_port(['-m', '1G']) is None
    rules = [{'port': 40080, 'server_port': 8080}, {'port': 40049, 'server_port': 49152}]
    args = management(40123, rules)
    assert args[1] == ('user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:40123-:22,'
                       'hostfwd=tcp:127.0.0.1:40080-:8080,hostfwd=tcp:127.0.0.1:40049-:49152')
    assert forwarded_port(args) == 40123 and other_forwards(args) == rules


def test_forwards_kept_unless_declared(conn, tmp_path):
    rules = [{'port': 40080, 'server_port': 8080}]
    made = server(conn, image=image(tmp_path), forwards=rules)
    assert made['server']['forwards'] == rules
    assert not server(conn, image=image(tmp_path))['changed'], 'omitted: the current forwards are kept'
    changed = server(conn, image=image(tmp_path), forwards=[])
    assert changed['changed'] and changed['server']['forwards'] == []
    assert changed['diff']['before']['forwards'] == rules and changed['diff']['after']['forwards'] == []
