# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only facts for vm_info and host_info, from the same services the resource modules use."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import (
    CONNECTION_ARGSPEC, lookup_domain, mapped,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.network import describe_network
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.pool import describe_pool
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain import VmService
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document

QUERY_ARGSPEC = dict(query=dict(type='str'))

VM_INFO_ARGSPEC = dict(name=dict(type='str'), **QUERY_ARGSPEC, **CONNECTION_ARGSPEC)
HOST_FACTS = ('host', 'domains', 'networks', 'pools')
HOST_INFO_ARGSPEC = dict(gather=dict(type='list', elements='str', choices=list(HOST_FACTS), default=list(HOST_FACTS)),
                         **QUERY_ARGSPEC, **CONNECTION_ARGSPEC)


def apply_query(data: Dict[str, Any], query: Optional[str]) -> Dict[str, Any]:
    """Add ``query_result``: ``query`` (JMESPath) evaluated over ``data``."""
    if not query:
        return data
    try:
        import jmespath
    except ImportError:
        raise FvError('query needs the jmespath Python library on the host that runs the module')
    try:
        data['query_result'] = jmespath.search(query, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise FvError('query %r: %s' % (query, exc))
    return data


def vm_info(conn: Any, name: Optional[str] = None, query: Optional[str] = None) -> Dict[str, Any]:
    service = VmService(conn, check_mode=True)
    if name:
        dom = lookup_domain(conn, name)
        domains = [dom] if dom is not None else []
    else:
        with mapped('listing domains'):
            domains = sorted(conn.listAllDomains(0), key=lambda d: d.name())
    vms = [service.describe(dom) for dom in domains]
    return apply_query({'changed': False, 'vms': vms}, query)


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
            networks = sorted(conn.listAllNetworks(0), key=lambda n: n.name())
        result['networks'] = [describe_network(net) for net in networks]
    if 'pools' in gather:
        with mapped('listing storage pools'):
            pools = sorted(conn.listAllStoragePools(0), key=lambda p: p.name())
        result['pools'] = [describe_pool(pool) for pool in pools]
    return apply_query(result, query)


def _version(number: int) -> str:
    return '%d.%d.%d' % (number // 1000000, number // 1000 % 1000, number % 1000)
