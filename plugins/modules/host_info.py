#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: host_info
short_description: Facts about a libvirt hypervisor host
version_added: 0.1.0
description:
  - Returns the host's identity, versions, CPUs, memory and free memory, the guest types it can
    run (whether KVM is available), and its domains, networks and storage pools in the same shape
    as M(firmvisor.hypervisor.vm_info), M(firmvisor.hypervisor.network) and
    M(firmvisor.hypervisor.pool) return them.
  - O(query), a JMESPath expression over the result, picks out what a play needs without another
    collection's filters.
author:
  - firmvisor developers (@firmvisor)
extends_documentation_fragment:
  - firmvisor.hypervisor.connection
  - firmvisor.hypervisor.attributes.info_module
options:
  gather:
    description: Which parts to read; fewer parts answer faster on a busy host.
    type: list
    elements: str
    choices: [host, domains, networks, pools]
    default: [host, domains, networks, pools]
  query:
    description:
      - A JMESPath expression evaluated over the result (its keys V(host), V(domains), V(networks)
        and V(pools)); its value is returned as RV(query_result).
    type: str
'''

EXAMPLES = r'''
- name: Everything
  firmvisor.hypervisor.host_info:
  register: hv

- name: Free memory and whether KVM is there
  firmvisor.hypervisor.host_info:
    gather: [host]
    query: "host.{free: free_memory_mib, kvm: kvm}"
  register: hv_mem

- name: Pools with less than 10 GiB available
  firmvisor.hypervisor.host_info:
    gather: [pools]
    query: "pools[?available < `10737418240`].name"
  register: full_pools
'''

RETURN = r'''
host:
  description: The node.
  returned: when V(host) is gathered
  type: dict
  contains:
    hostname: {description: "Host name.", type: str, returned: success}
    libvirt_version: {description: "libvirt version.", type: str, returned: success}
    hypervisor_version: {description: "QEMU version.", type: str, returned: success}
    arch: {description: "Host architecture.", type: str, returned: success}
    cpus: {description: "Logical CPUs.", type: int, returned: success}
    memory_mib: {description: "Memory in MiB.", type: int, returned: success}
    free_memory_mib: {description: "Free memory in MiB.", type: int, returned: success}
    virt_types: {description: "Guest architectures and the domain types each offers (C(qemu), C(kvm))", type: dict, returned: success}
    kvm: {description: "Whether KVM is offered for the host's architecture.", type: bool, returned: success}
  sample: {hostname: hv1, libvirt_version: 9.0.0, cpus: 2, memory_mib: 24000, free_memory_mib: 20000, kvm: true}
domains:
  description: The domains, as M(firmvisor.hypervisor.vm_info) returns them.
  returned: when V(domains) is gathered
  type: list
  elements: dict
networks:
  description: The networks, as M(firmvisor.hypervisor.network) returns them.
  returned: when V(networks) is gathered
  type: list
  elements: dict
pools:
  description: The storage pools, as M(firmvisor.hypervisor.pool) returns them.
  returned: when V(pools) is gathered
  type: list
  elements: dict
query_result:
  description: The value of O(query).
  returned: when O(query) is given
  type: raw
'''

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.info import HOST_INFO_ARGSPEC, host_info
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.module import run_module
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import with_connection


def main():
    run_module(HOST_INFO_ARGSPEC, with_connection(lambda conn, module: host_info(conn, module.params['gather'], module.params['query'])))


if __name__ == '__main__':
    main()
