#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: vms
short_description: Reconcile many libvirt domains in one task
version_added: 0.1.0
description:
  - Converges a list of VM specs over one libvirt connection, in one task. Each spec takes the
    options of M(firmvisor.hypervisor.vm) (except the connection options), over O(defaults).
  - Every spec is validated, and every domain read and planned, before any change is made, so a bad
    spec fails the task and leaves the host as it was.
  - With O(exclusive=true), domains that carry this collection's ownership metadata (and O(scope),
    when given) and are not listed are removed (their volumes are kept). Domains without that
    metadata are never touched.
author:
  - firmvisor developers (@firmvisor)
extends_documentation_fragment:
  - firmvisor.hypervisor.connection
  - firmvisor.hypervisor.attributes
options:
  vms:
    description:
      - The VM specs. Each is a dict of M(firmvisor.hypervisor.vm) options (C(name) required;
        C(state), C(vcpus), C(memory), C(disks), C(interfaces), C(cloud_init), ...).
    type: list
    elements: dict
    required: true
  defaults:
    description:
      - Options applied to every spec that does not set them itself (not C(name)).
    type: dict
    default: {}
  exclusive:
    description:
      - Remove the domains owned by this collection that O(vms) does not list (of O(scope) only,
        when it is given).
    type: bool
    default: false
  scope:
    description:
      - An ownership scope (a name for this set of VMs) written into every listed VM's ownership
        metadata. With O(exclusive=true), only owned domains of this scope are removed, so several
        plays (or teams) can each keep their own set exclusive on one host.
    type: str
seealso:
  - module: firmvisor.hypervisor.vm
'''

EXAMPLES = r'''
- name: Fifty small web VMs, and nothing else owned by the collection
  firmvisor.hypervisor.vms:
    exclusive: true
    defaults:
      state: running
      memory: 256MiB
      virt_type: qemu
      interfaces:
        - network: lab
    vms: "{{ web_vms }}"
  vars:
    web_vms: |-
      {% set result = [] %}{% for i in range(50) %}{% set _ = result.append({'name': 'web%02d' % i}) %}{% endfor %}{{ result }}

- name: Two VMs with their own sizes
  firmvisor.hypervisor.vms:
    defaults:
      disks:
        - pool: vms
          size: 10GiB
    vms:
      - name: db1
        memory: 4GiB
        vcpus: 2
      - name: cache1
        memory: 1GiB
'''

RETURN = r'''
vms:
  description: Per-VM results, in the order of O(vms) (then the removed ones).
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: "VM name.", type: str, returned: always}
    changed: {description: "Whether this VM changed.", type: bool, returned: always}
    actions: {description: "What was done to it.", type: list, elements: str, returned: always}
    reboot_required: {description: "As in M(firmvisor.hypervisor.vm).", type: bool, returned: always}
    changes: {description: "Changed options and how they apply.", type: dict, returned: always}
    vm: {description: "The domain as M(firmvisor.hypervisor.vm) returns it.", type: dict, returned: always}
removed:
  description: Names of the domains removed.
  returned: always
  type: list
  elements: str
reboot_required:
  description: Names of the VMs that need a restart to pick up their changes.
  returned: always
  type: list
  elements: str
elapsed:
  description: Seconds the module spent reconciling (after connecting), for performance reports.
  returned: always
  type: float
  sample: 0.412
'''

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.module import run_module
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import with_connection
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.fleet import VMS_ARGSPEC, reconcile


def main():
    run_module(VMS_ARGSPEC, with_connection(lambda conn, module: reconcile(
        conn, module.check_mode, module.params['vms'], module.params['defaults'], module.params['exclusive'],
        module.params['scope'])))


if __name__ == '__main__':
    main()
