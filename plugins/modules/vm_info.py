#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: vm_info
short_description: Read libvirt domains as firmvisor sees them
version_added: 0.1.0
description:
  - Returns one domain (O(name)) or all domains of the hypervisor, in the same shape as
    M(firmvisor.hypervisor.vm) returns them, and optionally a JMESPath O(query) over the result.
author:
  - firmvisor developers (@firmvisor)
extends_documentation_fragment:
  - firmvisor.hypervisor.connection
  - firmvisor.hypervisor.attributes.info_module
options:
  name:
    description: Only this domain. Without it, all domains. A missing domain gives an empty RV(vms).
    type: str
  query:
    description:
      - A JMESPath expression evaluated over the result (its key V(vms)); its value is returned as
        RV(query_result). Needs the jmespath library on the host running the module.
    type: str
'''

EXAMPLES = r'''
- name: One VM
  firmvisor.hypervisor.vm_info:
    name: web1
  register: web1

- name: Names of running VMs owned by this collection
  firmvisor.hypervisor.vm_info:
    query: "vms[?owned && state=='running'].name"
  register: running

- name: Show them
  ansible.builtin.debug:
    var: running.query_result
'''

RETURN = r'''
vms:
  description: The domains, each as RV(firmvisor.hypervisor.vm#module:vm) describes it.
  returned: always
  type: list
  elements: dict
query_result:
  description: The value of O(query) over the result.
  returned: when O(query) is given
  type: raw
'''

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.info import VM_INFO_ARGSPEC, vm_info
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.module import run_module
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import with_connection


def main():
    run_module(VM_INFO_ARGSPEC, with_connection(lambda conn, module: vm_info(conn, module.params['name'], module.params['query'])))


if __name__ == '__main__':
    main()
