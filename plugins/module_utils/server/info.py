# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""server_info: what a machine is before anything is installed on it, in one shape for both
drivers — a BMC's inventory (redfish/inventory.py) or a QEMU server's domain read the same way.
With an ``image``, also whether the server can take it (``capacity``), by the same rules the
``server`` module's Redfish driver refuses a box with before touching it."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.query import QUERY_ARGSPEC, apply_query
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import (
    CONNECTION_ARGSPEC, with_connection,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.resource import Vm
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.disks import (
    MIN_MEMORY_MIB, capacity_problems, choose_install_disk, memory_problems,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.options import (
    BMC_SPEC, DRIVERS, INSTALL_DISK_SPEC,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.probe import Image, load_image
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.qemu import ADDRESS, forwarded_port

SERVER_INFO_ARGSPEC = dict(
    driver=dict(type='str', default='qemu', choices=list(DRIVERS)),
    name=dict(type='str'),
    bmc=dict(type='dict', options=BMC_SPEC),
    system=dict(type='str'),
    image=dict(type='path'),
    install_disk=dict(type='dict', options=INSTALL_DISK_SPEC),
    **QUERY_ARGSPEC,
    **CONNECTION_ARGSPEC,
)
SERVER_INFO_REQUIRED_IF = [('driver', 'qemu', ('name',)), ('driver', 'redfish', ('bmc',))]


def bmc_access(bmc: Mapping[str, Any]) -> Any:
    from ansible_collections.firmvisor.hypervisor.plugins.module_utils.redfish.bmc import BmcAccess
    return BmcAccess(address=bmc['address'], username=bmc.get('username') or '', password=bmc.get('password') or '',
                     validate_certs=bmc.get('validate_certs', True), ca_path=bmc.get('ca_path'),
                     timeout=bmc.get('timeout') or 60)


def redfish_inventory(params: Mapping[str, Any]) -> Dict[str, Any]:
    from ansible_collections.firmvisor.hypervisor.plugins.module_utils.redfish.bmc import Bmc
    with Bmc(bmc_access(params['bmc'])).connect() as bmc:
        return dict(bmc.system(params.get('system')).inventory(), management=None)


def qemu_inventory(conn: Any, name: str) -> Dict[str, Any]:
    """A QEMU server's domain as a BMC would describe the machine."""
    vm = Vm(conn, check_mode=True)
    actual = vm.read([name])[name]
    if actual is None:
        raise FvError('server %s: no such domain on %s' % (name, conn.getURI()))
    doc, values = actual.doc, actual.values
    disks: List[Dict[str, Any]] = []
    media: List[Dict[str, Any]] = []
    for elem in doc.findall('devices/disk'):
        pool, volume = doc.attr('source', 'pool', elem), doc.attr('source', 'volume', elem)
        found = vm.volumes.read([(pool, volume)])[(pool, volume)] if pool and volume else None
        entry = {'name': doc.attr('target', 'dev', elem), 'size_bytes': found.runtime['capacity'] if found else None,
                 'model': doc.attr('target', 'bus', elem), 'serial': doc.text('serial', elem),
                 'media_type': None, 'protocol': doc.attr('target', 'bus', elem), 'wwn': doc.text('wwn', elem),
                 'source': '%s/%s' % (pool, volume) if pool else doc.attr('source', 'file', elem)}
        if elem.get('device') == 'cdrom':
            media.append({'id': entry['name'], 'name': entry['name'], 'media_types': ['CD'],
                          'inserted': bool(entry['source']), 'image': entry['source']})
        else:
            disks.append(entry)
    boot = [elem for elem in doc.findall('devices/disk') if doc.find('boot', elem) is not None]
    port = forwarded_port(values.get('qemu_args'))
    firmware = values.get('firmware')
    return {
        'system': {'id': name, 'uuid': actual.runtime['uuid'], 'name': name, 'manufacturer': 'QEMU',
                   'model': doc.attr('os/type', 'machine'), 'serial': None},
        'power_state': 'Off' if actual.runtime['state'] in ('stopped', 'crashed') else 'On',
        'cpus': {'count': values.get('vcpus'), 'model': doc.attr('cpu', 'mode') or doc.text('cpu/model'),
                 'sockets': None, 'cores': None, 'threads': None},
        'memory_mib': values.get('memory'),
        'nics': [{'id': nic['mac'], 'mac': nic['mac'], 'link': None, 'speed_mbps': None, 'state': None}
                 for nic in values.get('interfaces') or []],
        'disks': disks,
        'firmware': {'bios_version': None, 'boot_mode': 'UEFI' if firmware == 'efi' else 'Legacy'},
        'boot': {'target': 'Hdd' if any(e.get('device') == 'disk' for e in boot) else 'Cd' if boot else None,
                 'enabled': 'Continuous', 'mode': 'UEFI' if firmware == 'efi' else 'Legacy',
                 'allowed_targets': ['Hdd', 'Cd']},
        'virtual_media': media,
        'management': {'address': ADDRESS, 'port': port} if port else None,
        'problems': [],
    }


def capacity(inventory: Mapping[str, Any], driver: str, image: Image,
             install_disk: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Whether the server ``inventory`` describes can take ``image``.

    redfish: memory and a disk that fits ``install_disk`` (default: the smallest of 8 GiB or more)
    and holds the image, as the ``server`` module checks before it inserts anything. qemu: memory
    only; the flash drive is made by ``server`` to the image's size, so no disk of the domain's
    has to hold it."""
    rule = {k: v for k, v in (install_disk or {}).items() if v is not None} or None
    if driver == 'redfish':
        problems = capacity_problems(inventory, image.disk_size, MIN_MEMORY_MIB, rule)
    else:
        problems = memory_problems(inventory, MIN_MEMORY_MIB)
    disk = None
    if driver == 'redfish' and not problems:
        disk = choose_install_disk(inventory.get('disks') or [], rule, need_bytes=image.disk_size)
    return {'fits': not problems, 'problems': problems, 'image_version': image.version,
            'image_bytes': image.disk_size, 'min_memory_mib': MIN_MEMORY_MIB, 'install_disk': disk}


def server_info(module: Any) -> Dict[str, Any]:
    params = module.params
    # a missing image fails before the BMC is asked anything
    image = load_image(params['image']) if params.get('image') else None
    if params['driver'] == 'redfish':
        inventory = redfish_inventory(params)
    else:
        inventory = with_connection(lambda conn, _m: qemu_inventory(conn, params['name']))(module)
    result: Dict[str, Any] = {'changed': False, 'server': inventory}
    if image is not None:
        result['capacity'] = capacity(inventory, params['driver'], image, params.get('install_disk'))
    return apply_query(result, params.get('query'))
