# -*- coding: utf-8 -*-
"""Golden XML in the manner of virt-manager's tests/data/xmlparse: one ``<case>-in.xml`` /
``<case>-out.xml`` pair per kind of change, for domains, networks and pools.

Each case declares options; the resource's table compares them with the input, writes what differs
into a copy, and the copy must equal the output byte for byte. The output is then compared again
(nothing left to change) and defined on libvirt's test driver (libvirt accepts it). A case without
an input file is a new object. ``FV_GOLDEN_UPDATE=1 pytest tests/unit/test_golden.py`` rewrites the
outputs — read every diff before committing one.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import pytest

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import (
    compare, desired_values, planned_document, read_all,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import Actual
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import VM_OPTIONS, new_domain
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.network import NETWORK_OPTIONS, Network, new_network
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.pool import POOL_OPTIONS, new_pool
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.validation import define_scratch as define

XML = os.path.join(os.path.dirname(__file__), 'xml')
UPDATE = os.environ.get('FV_GOLDEN_UPDATE') == '1'

LAB = {'network': 'lab', 'mac': '52:54:00:aa:bb:01'}
OS_DISK = {'pool': 'vms', 'name': 'app1-0'}

DOMAIN_CASES: Dict[str, Dict[str, Any]] = {
    'create': dict(vcpus=2, memory='1GiB', virt_type='qemu', machine='q35', firmware='efi', kernel='/boot/vmlinuz',
                   initrd='/boot/initrd.img', cmdline='console=ttyS0', scope='team-a',
                   disks=[{'pool': 'vms', 'size': 8, 'boot': 1}, {'pool': 'iso', 'name': 'installer.iso', 'device': 'cdrom',
                                                                  'format': 'raw'}],
                   interfaces=[{'network': 'lab'}, {'bridge': 'br0', 'model': 'e1000'}],
                   qemu_args=['-netdev', 'user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22',
                              '-device', 'virtio-net-pci,netdev=mgmt,addr=0x10'],
                   cloud_init={'user_data': {'packages': ['nginx']}}, nested_virtualization=False),
    'memory': dict(memory=1024),
    'vcpus': dict(vcpus=4),
    'machine': dict(machine='pc'),
    'virt-type': dict(virt_type='qemu'),
    'firmware-efi': dict(firmware='efi'),
    'firmware-bios': dict(firmware='bios'),
    'kernel-add': dict(kernel='/boot/vmlinuz', initrd='/boot/initrd.img', cmdline='console=ttyS0 quiet'),
    'kernel-change': dict(cmdline='console=ttyS0 debug'),
    'kernel-remove': dict(kernel='', initrd='', cmdline=''),
    'disk-add': dict(disks=[OS_DISK, {'pool': 'vms', 'name': 'app1-data', 'size': 1}]),
    'disk-remove': dict(disks=[OS_DISK]),
    'disk-bus': dict(disks=[dict(OS_DISK, bus='sata', boot=1)]),
    'disk-format': dict(disks=[dict(OS_DISK, format='raw')]),
    'cdrom-add': dict(disks=[OS_DISK, {'pool': 'iso', 'name': 'tools.iso', 'device': 'cdrom', 'format': 'raw'}]),
    'nic-add': dict(interfaces=[LAB, {'network': 'lab', 'mac': '52:54:00:aa:bb:02'}]),
    'nic-remove': dict(interfaces=[LAB]),
    'nic-to-bridge': dict(interfaces=[{'bridge': 'br0', 'mac': LAB['mac']}]),
    'nic-model': dict(interfaces=[dict(LAB, model='e1000')]),
    'qemu-args-change': dict(qemu_args=['-netdev', 'user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:2200-:22',
                                        '-device', 'virtio-net-pci,netdev=mgmt,addr=0x10']),
    'qemu-args-remove': dict(qemu_args=[]),
    'scope': dict(scope='team-b'),
    'watchdog-add': dict(watchdog='i6300esb'),
    'nested-off': dict(nested_virtualization=False),
    'nested-on': dict(nested_virtualization=True),
    'cloud-init-add': dict(cloud_init={'user_data': '#cloud-config\n{}\n', 'pool': 'seeds'}),
}
NETWORK_CASES: Dict[str, Dict[str, Any]] = {
    'create': dict(mode='nat', ip='10.10.0.1', domain='lab.internal',
                   dhcp={'ranges': [{'start': '10.10.0.100', 'end': '10.10.0.199'}],
                         'hosts': [{'mac': '52:54:00:00:10:01', 'name': 'web1', 'ip': '10.10.0.11'}]}),
    'mode-isolated': dict(mode='isolated'),
    'mode-route': dict(mode='route'),
    'mode-bridge': dict(mode='bridge', bridge='br0'),
    'mode-nat-from-bridge': dict(mode='nat', ip='10.30.0.1'),
    'ip': dict(ip='10.20.0.1', dhcp={'ranges': [{'start': '10.20.0.100', 'end': '10.20.0.199'}], 'hosts': []}),
    'prefix': dict(prefix=16),
    'dhcp-ranges': dict(dhcp={'ranges': [{'start': '10.10.0.50', 'end': '10.10.0.60'}]}),
    'dhcp-hosts': dict(dhcp={'hosts': [{'mac': '52:54:00:00:10:01', 'ip': '10.10.0.21'},
                                       {'name': 'db', 'ip': '10.10.0.30'}]}),
    'dhcp-remove': dict(dhcp={'ranges': [], 'hosts': []}),
    'domain-add': dict(domain='lab.example'),
    'domain-remove': dict(domain=''),
    'bridge-name': dict(bridge='fvlab1'),
}
POOL_CASES: Dict[str, Dict[str, Any]] = {
    'create': dict(type='dir', path='/var/lib/libvirt/images/vms'),
    'path': dict(path='/srv/vms'),
    'netfs': dict(type='netfs', source={'host': 'nas.example.com', 'dir': '/export/vms', 'format': 'nfs'}),
    'fs': dict(type='fs', source={'device': ['/dev/sdb1'], 'format': 'ext4'}),
    'logical': dict(type='logical', path='/dev/vg0', source={'device': ['/dev/sdb', '/dev/sdc'], 'name': 'vg0'}),
    'source-device': dict(source={'device': ['/dev/sdc1']}),
}
KINDS = {
    'domain': (VM_OPTIONS, DOMAIN_CASES, new_domain, 'app1'),
    'network': (NETWORK_OPTIONS, NETWORK_CASES, new_network, 'lab'),
    'pool': (POOL_OPTIONS, POOL_CASES, new_pool, 'vms'),
}


def path(kind: str, case: str, side: str) -> str:
    return os.path.join(XML, kind, '%s-%s.xml' % (case, side))


def read(name: str) -> Optional[str]:
    if not os.path.exists(name):
        return None
    with open(name) as handle:
        return handle.read()


def edit(kind: str, doc: Document, params: Dict[str, Any], creating: bool) -> Document:
    table, _cases, _new, name = KINDS[kind]
    context = {'name': name, 'default_pool': 'vms', 'creating': creating, 'virt_type': 'qemu'}
    desired = desired_values(table, params, context, creating)
    actual = None if creating else read_all(table, doc)
    if kind == 'network':
        Network(None).settle(params, desired, None if creating else Actual(None, doc, actual))
    return planned_document(doc, compare(table, desired, actual), kind)


CASES = [(kind, case) for kind, (_t, cases, _n, _m) in KINDS.items() for case in cases]


@pytest.mark.parametrize('kind, case', CASES, ids=['%s-%s' % c for c in CASES])
def test_golden(kind, case):
    table, cases, new, name = KINDS[kind]
    source = read(path(kind, case, 'in'))
    creating = source is None
    doc = new(name) if creating else Document(source)
    out = edit(kind, doc, cases[case], creating).tostring() + '\n'
    expected = read(path(kind, case, 'out'))
    if UPDATE and out != expected:
        with open(path(kind, case, 'out'), 'w') as handle:
            handle.write(out)
        expected = out
    assert out == expected, 'the edit differs from %s (FV_GOLDEN_UPDATE=1 rewrites it)' % path(kind, case, 'out')
    # Nothing is left to change, and libvirt accepts the result.
    context = {'name': name, 'default_pool': 'vms', 'creating': False, 'virt_type': 'qemu'}
    assert compare(table, desired_values(table, cases[case], context), read_all(table, Document(out))) == []
    define(kind, out)  # libvirt parses it (defined and undefined on an empty test driver), or raises


def test_every_case_has_its_files():
    for kind, case in CASES:
        assert os.path.exists(path(kind, case, 'out')), path(kind, case, 'out')
        assert case == 'create' or os.path.exists(path(kind, case, 'in')), path(kind, case, 'in')
