# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A domain's disks and interfaces: declared lists are the whole list.

Devices are matched by a stable identity — a disk by its volume (pool and name) or file, a NIC by
its MAC — so reordering a list is no change. A device the list leaves out is removed from the
definition (and hot-unplugged from a running domain where the guest lets go of it). The cloud-init
seed's cdrom belongs to the ``cloud_init`` option, not to ``disks``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import LIVE, RESTART
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.values import normalize_mac, stable_mac, to_mib
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document, element, sub

BUS_PREFIX = {'virtio': 'vd', 'sata': 'sd', 'scsi': 'sd', 'usb': 'sd', 'ide': 'hd'}
SEED_SUFFIX = '-cidata.iso'

DISK_SPEC = dict(
    name=dict(type='str'),
    pool=dict(type='str'),
    size=dict(type='raw'),
    format=dict(type='str', choices=['qcow2', 'raw', 'iso']),
    source=dict(type='path'),
    backing=dict(type='bool'),
    bus=dict(type='str', choices=list(BUS_PREFIX)),
    device=dict(type='str', choices=['disk', 'cdrom']),
    boot=dict(type='int'),
)
INTERFACE_SPEC = dict(
    network=dict(type='str'),
    bridge=dict(type='str'),
    model=dict(type='str'),
    mac=dict(type='str'),
)
_DISK_COMPARED = ('device', 'bus', 'format', 'boot')
_NIC_COMPARED = ('network', 'bridge', 'model')
Device = Dict[str, Any]


def is_seed(disk: Device) -> bool:
    return bool(disk.get('name') and disk['name'].endswith(SEED_SUFFIX))


# ---- disks --------------------------------------------------------------------------------------
def _disk(doc: Document, elem: ET.Element) -> Device:
    boot = doc.attr('boot', 'order', elem)
    return {
        'pool': doc.attr('source', 'pool', elem),
        'name': doc.attr('source', 'volume', elem),
        'path': doc.attr('source', 'file', elem) or doc.attr('source', 'dev', elem),
        'device': elem.get('device', 'disk'),
        'bus': doc.attr('target', 'bus', elem),
        'target': doc.attr('target', 'dev', elem),
        'format': doc.attr('driver', 'type', elem),
        'boot': int(boot) if boot else None,
    }


def _disk_elements(doc: Document) -> List[Tuple[ET.Element, Device]]:
    """Every disk but the cloud-init seed, with its element."""
    pairs = [(elem, _disk(doc, elem)) for elem in doc.findall('devices/disk')]
    return [(elem, disk) for elem, disk in pairs if not is_seed(disk)]


def read_disks(doc: Document) -> List[Device]:
    return [disk for _elem, disk in _disk_elements(doc)]


def normalize_disks(disks: List[Device], context: Dict[str, Any]) -> List[Device]:
    result = []
    for index, disk in enumerate(disks):
        disk = {k: v for k, v in disk.items() if v is not None}
        disk.setdefault('name', '%s-%d' % (context['name'], index))
        disk.setdefault('pool', context.get('default_pool', 'default'))
        if 'size' in disk:
            disk['size'] = to_mib(disk['size'], 'disk %s: size' % disk['name'])
        if disk.get('boot') is not None and disk['boot'] < 1:
            raise FvError('disk %s: boot is a boot order, 1 or more' % disk['name'])
        if is_seed(disk):
            raise FvError('disk %s: names ending in %s belong to the cloud-init seed' % (disk['name'], SEED_SUFFIX))
        result.append(disk)
    names = [(d['pool'], d['name']) for d in result]
    if len(set(names)) != len(names):
        raise FvError('disks: the same volume is listed twice')
    return result


def _match_disk(actual: List[Device], disk: Device) -> Optional[int]:
    for index, have in enumerate(actual):
        if (have['pool'], have['name']) == (disk['pool'], disk['name']):
            return index
        if have['path'] and have['path'] == disk.get('_path'):
            return index
    return None


def _disk_pairs(desired: List[Device], actual: List[Device]) -> Tuple[List[Tuple[Device, Optional[int]]], List[int]]:
    """(each declared disk with the index of its actual disk or None, indexes of undeclared ones)."""
    pairs = [(disk, _match_disk(actual, disk)) for disk in desired]
    matched = {index for _disk, index in pairs if index is not None}
    return pairs, [i for i in range(len(actual)) if i not in matched]


def driver_type(fmt: Optional[str]) -> Optional[str]:
    """The disk driver's type for a volume format: QEMU reads an ISO volume as raw."""
    return 'raw' if fmt == 'iso' else fmt


def _disk_differs(disk: Device, have: Device) -> bool:
    return any(k in disk and (driver_type(disk[k]) if k == 'format' else disk[k]) != have[k] for k in _DISK_COMPARED)


def disks_equal(desired: List[Device], actual: Optional[List[Device]]) -> bool:
    actual = actual or []
    pairs, extra = _disk_pairs(desired, actual)
    return not extra and all(index is not None and not _disk_differs(disk, actual[index]) for disk, index in pairs)


def disks_reach(desired: List[Device], actual: Optional[List[Device]]) -> str:
    """Added and removed disks can be hot-plugged; a change to a kept one needs a restart."""
    actual = actual or []
    pairs, _extra = _disk_pairs(desired, actual)
    return RESTART if any(i is not None and _disk_differs(d, actual[i]) for d, i in pairs) else LIVE


def next_target(doc: Document, bus: str) -> str:
    prefix = BUS_PREFIX[bus]
    used = {doc.attr('target', 'dev', elem) for elem in doc.findall('devices/disk')}
    for letter in 'abcdefghijklmnopqrstuvwxyz':
        if prefix + letter not in used:
            return prefix + letter
    raise FvError('no free %s disk target left' % bus)


def disk_element(doc: Document, pool: str, name: str, device: str = 'disk', bus: Optional[str] = None,
                 fmt: Optional[str] = None, boot: Optional[int] = None) -> ET.Element:
    bus = bus or ('sata' if device == 'cdrom' else 'virtio')
    elem = element('disk', type='volume', device=device)
    sub(elem, 'driver', name='qemu', type=driver_type(fmt) or 'qcow2')
    sub(elem, 'source', pool=pool, volume=name)
    sub(elem, 'target', dev=next_target(doc, bus), bus=bus)
    if device == 'cdrom':
        sub(elem, 'readonly')
    if boot:
        sub(elem, 'boot', order=str(boot))
    return elem


def write_disks(doc: Document, disks: List[Device]) -> None:
    elements = _disk_elements(doc)
    actual = [disk for _elem, disk in elements]
    pairs, extra = _disk_pairs(disks, actual)
    for index in extra:
        doc.detach(doc.ensure('devices'), elements[index][0])
    for disk, index in pairs:
        if index is None:
            insert_device(doc, disk_element(doc, disk['pool'], disk['name'], disk.get('device', 'disk'),
                                            disk.get('bus'), disk.get('format') or disk.get('_format'), disk.get('boot')))
            continue
        elem, have = elements[index]
        if 'device' in disk:
            elem.set('device', disk['device'])
        if 'bus' in disk and disk['bus'] != have['bus']:
            # A new bus needs a target name of its kind and a new address.
            doc.set_attr('target', 'bus', disk['bus'], elem)
            doc.set_attr('target', 'dev', None, elem)
            doc.set_attr('target', 'dev', next_target(doc, disk['bus']), elem)
            doc.remove('address', elem)
        if 'format' in disk:
            doc.set_attr('driver', 'type', driver_type(disk['format']), elem)
        if 'boot' in disk:
            doc.remove('boot', elem)
            if disk['boot']:
                doc.ensure('boot', elem).set('order', str(disk['boot']))
    if any(d.get('boot') for d in disks):
        doc.remove('os/boot')  # per-device boot order excludes <os><boot dev=.../>


# ---- interfaces ---------------------------------------------------------------------------------
def read_interfaces(doc: Document) -> List[Device]:
    result = []
    for elem in doc.findall('devices/interface'):
        kind = elem.get('type')
        result.append({
            'type': kind,
            'network': doc.attr('source', 'network', elem) if kind == 'network' else None,
            'bridge': doc.attr('source', 'bridge', elem) if kind == 'bridge' else None,
            'model': doc.attr('model', 'type', elem),
            'mac': (doc.attr('mac', 'address', elem) or '').lower() or None,
        })
    return result


def normalize_interfaces(interfaces: List[Device], context: Dict[str, Any]) -> List[Device]:
    result = []
    for index, nic in enumerate(interfaces):
        nic = {k: v for k, v in nic.items() if v is not None}
        if ('network' in nic) == ('bridge' in nic):
            raise FvError('interface %d: give exactly one of network or bridge' % index)
        try:
            nic['mac'] = normalize_mac(nic.get('mac')) or stable_mac(context['name'], str(index))
        except FvError as exc:
            raise FvError('interface %d: %s' % (index, exc))
        result.append(nic)
    macs = [n['mac'] for n in result]
    if len(set(macs)) != len(macs):
        raise FvError('interfaces: the same MAC address is listed twice')
    return result


def _nic_differs(nic: Device, have: Device) -> bool:
    return any(k in nic and nic[k] != have[k] for k in _NIC_COMPARED)


def interfaces_equal(desired: List[Device], actual: Optional[List[Device]]) -> bool:
    have = {nic['mac']: nic for nic in actual or []}
    return len(have) == len(actual or []) == len(desired) and \
        all(nic['mac'] in have and not _nic_differs(nic, have[nic['mac']]) for nic in desired)


def interfaces_reach(desired: List[Device], actual: Optional[List[Device]]) -> str:
    have = {nic['mac']: nic for nic in actual or []}
    return RESTART if any(n['mac'] in have and _nic_differs(n, have[n['mac']]) for n in desired) else LIVE


def write_interfaces(doc: Document, interfaces: List[Device]) -> None:
    wanted = {nic['mac']: nic for nic in interfaces}
    kept = set()
    for elem in doc.findall('devices/interface'):
        mac = (doc.attr('mac', 'address', elem) or '').lower()
        if mac not in wanted or mac in kept:
            doc.detach(doc.ensure('devices'), elem)
            continue
        kept.add(mac)
        nic = wanted[mac]
        kind = 'network' if 'network' in nic else 'bridge'
        if elem.get('type') != kind or doc.attr('source', kind, elem) != nic[kind]:
            elem.set('type', kind)
            source = doc.ensure('source', elem)
            source.attrib.clear()
            source.set(kind, nic[kind])
        if 'model' in nic:
            doc.set_attr('model', 'type', nic['model'], elem)
    for mac, nic in wanted.items():
        if mac not in kept:
            kind = 'network' if 'network' in nic else 'bridge'
            elem = element('interface', type=kind)
            sub(elem, 'mac', address=mac)
            sub(elem, 'source', **{kind: nic[kind]})
            sub(elem, 'model', type=nic.get('model', 'virtio'))
            insert_device(doc, elem)


def insert_device(doc: Document, elem: ET.Element) -> None:
    """Insert a device after the last one of its kind (libvirt keeps devices grouped)."""
    devices = doc.ensure('devices')
    same = [i for i, child in enumerate(devices) if child.tag == elem.tag]
    devices.insert(same[-1] + 1 if same else len(devices), elem)


# ---- hot-plug -----------------------------------------------------------------------------------
def device_key(doc: Document, elem: ET.Element) -> Tuple[Any, ...]:
    """What identifies a disk or NIC across the live and the persistent definition."""
    if elem.tag == 'interface':
        return ('interface', (doc.attr('mac', 'address', elem) or '').lower())
    return ('disk', doc.attr('source', 'pool', elem), doc.attr('source', 'volume', elem),
            doc.attr('source', 'file', elem) or doc.attr('source', 'dev', elem))


def device_changes(before: Document, after: Document) -> Tuple[List[ET.Element], List[ET.Element]]:
    """(devices ``after`` adds, devices it removes), by identity, from one definition to another."""
    def devices(doc: Document) -> Dict[Tuple[Any, ...], ET.Element]:
        return {device_key(doc, elem): elem for elem in doc.findall('devices/disk') + doc.findall('devices/interface')}
    have, want = devices(before), devices(after)
    return [want[k] for k in want if k not in have], [have[k] for k in have if k not in want]


def describe_device(doc: Document, elem: ET.Element) -> str:
    if elem.tag == 'interface':
        return 'interface %s' % doc.attr('mac', 'address', elem)
    source = doc.find('source', elem)
    name = (source.get('volume') or source.get('file') or source.get('dev')) if source is not None else None
    return '%s %s (%s)' % (elem.get('device', 'disk'), name or '?', doc.attr('target', 'dev', elem))
