# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only facts for vm_info and host_info, from the same services the resource modules use."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils._common import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils._libvirt import (
    CONNECTION_ARGSPEC, lookup_domain, mapped,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils._vm import VmService

QUERY_ARGSPEC = dict(query=dict(type='str'))

VM_INFO_ARGSPEC = dict(name=dict(type='str'), **QUERY_ARGSPEC, **CONNECTION_ARGSPEC)


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
