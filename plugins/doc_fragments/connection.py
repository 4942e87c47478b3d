# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  uri:
    description:
      - The libvirt connection URI.
      - Use C(qemu+ssh://root@host/system) to manage a hypervisor from the controller without
        running the module on it.
      - Set it once for all modules of this collection with
        C(module_defaults) and the action group C(group/firmvisor.hypervisor.libvirt).
    type: str
    default: qemu:///system
  connect_timeout:
    description:
      - Seconds to keep retrying while the libvirt daemon does not accept connections yet
        (for example right after a hypervisor booted).
    type: int
    default: 30
requirements:
  - libvirt-python (python3-libvirt) on the host that runs the module
'''
