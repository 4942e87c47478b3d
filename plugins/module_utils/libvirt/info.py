# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only facts for vm_info and host_info: each resource read and viewed as its own module
reads and shows it."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.query import QUERY_ARGSPEC, apply_query
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import Resource
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import CONNECTION_ARGSPEC, mapped
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.resource import Vm
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.network import Network
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.pool import Pool

VM_INFO_ARGSPEC = dict(name=dict(type='str'), **QUERY_ARGSPEC, **CONNECTION_ARGSPEC)
HOST_FACTS = ('host', 'domains', 'networks', 'pools')
HOST_INFO_ARGSPEC = dict(gather=dict(type='list', elements='str', choices=list(HOST_FACTS), default=list(HOST_FACTS)),
                         **QUERY_ARGSPEC, **CONNECTION_ARGSPEC)


def views(resource: Resource, names: Sequence[str]) -> List[Dict[str, Any]]:
    """The views of the named objects that exist, in name order."""
    actuals = resource.read(sorted(names))
    return [resource.view(name, actual) for name, actual in actuals.items() if actual is not None]


def vm_info(conn: Any, name: Optional[str] = None, query: Optional[str] = None) -> Dict[str, Any]:
    if name:
        names = [name]
    else:
        with mapped('listing domains'):
            names = [dom.name() for dom in conn.listAllDomains(0)]
    return apply_query({'changed': False, 'vms': views(Vm(conn, check_mode=True), names)}, query)


def host_facts(conn: Any) -> Dict[str, Any]:
    """The node: identity, versions, CPUs, memory and what guests it can run."""
    with mapped('host'):
        caps = Document(conn.getCapabilities())
        model, memory_mib, cpus, mhz, numa_nodes, sockets, cores, threads = conn.getInfo()
        virt_types: Dict[str, list] = {}
        for guest in caps.findall('guest'):
            arch = caps.attr('arch', 'name', guest)
            for domain in caps.findall('arch/domain', guest):
                kinds = virt_types.setdefault(arch, [])
                if domain.get('type') not in kinds:
                    kinds.append(domain.get('type'))
        return {
            'hostname': conn.getHostname(),
            'uri': conn.getURI(),
            'libvirt_version': _version(conn.getLibVersion()),
            'hypervisor_version': _version(conn.getVersion()),
            'arch': caps.text('host/cpu/arch'),
            'cpu_model': model, 'cpus': cpus, 'mhz': mhz, 'numa_nodes': numa_nodes,
            'sockets': sockets, 'cores': cores, 'threads': threads,
            'memory_mib': memory_mib,
            'free_memory_mib': conn.getFreeMemory() // (1024 * 1024),
            'virt_types': virt_types,
            'kvm': 'kvm' in virt_types.get(caps.text('host/cpu/arch') or 'x86_64', []),
        }


def host_info(conn: Any, gather: list, query: Optional[str] = None) -> Dict[str, Any]:
    result: Dict[str, Any] = {'changed': False}
    if 'host' in gather:
        result['host'] = host_facts(conn)
    if 'domains' in gather:
        result['domains'] = vm_info(conn)['vms']
    if 'networks' in gather:
        with mapped('listing networks'):
            names = [net.name() for net in conn.listAllNetworks(0)]
        result['networks'] = views(Network(conn, check_mode=True), names)
    if 'pools' in gather:
        with mapped('listing storage pools'):
            names = [pool.name() for pool in conn.listAllStoragePools(0)]
        result['pools'] = views(Pool(conn, check_mode=True), names)
    return apply_query(result, query)


def _version(number: int) -> str:
    return '%d.%d.%d' % (number // 1000000, number // 1000 % 1000, number % 1000)
