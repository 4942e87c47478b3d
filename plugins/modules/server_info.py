#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: server_info
short_description: What a server is before anything is installed on it (BMC inventory)
version_added: 0.2.0
description:
  - Reads what a machine's BMC knows about it (O(driver=redfish)), or what libvirt knows about a QEMU
    server (O(driver=qemu)), in one shape - power state, CPUs, memory, NICs with their MACs, disks
    with size, model and serial, firmware, boot options and virtual media.
  - With O(image), it also says whether the server can take that image (RV(capacity)), by the rules
    the M(firmvisor.hypervisor.server) module refuses a bare-metal box with before touching it.
  - The C(provision) role uses it to refuse a server that cannot take the image (no disk large
    enough, too little memory) before touching it.
author:
  - firmvisor developers (@firmvisor)
extends_documentation_fragment:
  - firmvisor.hypervisor.connection
  - firmvisor.hypervisor.bmc
  - firmvisor.hypervisor.attributes.info_module
options:
  driver:
    description: V(redfish) asks O(bmc); V(qemu) reads the domain O(name) on O(uri).
    type: str
    choices: [qemu, redfish]
    default: qemu
  name:
    description: O(driver=qemu) only. The server's domain.
    type: str
  image:
    description:
      - A built image (its directory or its C(manifest.json)), as the O(firmvisor.hypervisor.server#module:image)
        of the M(firmvisor.hypervisor.server) module. When given, RV(capacity) says whether the server can take it.
      - O(driver=redfish) - the server needs 1024 MiB of memory or more (the live installer holds the ISO in
        memory) and a disk that fits O(install_disk) and holds the image.
      - O(driver=qemu) - only the memory minimum applies; the server's flash drive is made by
        M(firmvisor.hypervisor.server) to the image's size.
    type: path
  install_disk:
    description:
      - O(driver=redfish) with O(image). The rule that picks the install disk, as the
        O(firmvisor.hypervisor.server#module:install_disk) of M(firmvisor.hypervisor.server)
        (default - the smallest disk of 8 GiB or more).
    type: dict
    suboptions:
      path: {description: "A device path on the server (stands for itself).", type: str}
      serial: {description: The disk with this serial., type: str}
      name: {description: "The disk with this name (as the BMC names it).", type: str}
      wwn: {description: The disk with this World Wide Name., type: str}
      min_size: {description: "Disks of this size or more (MiB, or a string such as V(8GiB)).", type: raw}
      max_size: {description: "Disks of this size or less.", type: raw}
      model: {description: Disks whose model contains this., type: str}
      media_type: {description: "Disks of this media type (V(SSD), V(HDD)).", type: str}
      prefer: {description: "Of the disks that pass, the smallest or the largest.", type: str, choices: [smallest, largest]}
  query:
    description: A JMESPath expression over the result; its value is returned as RV(query_result).
    type: str
'''

EXAMPLES = r'''
- name: What the BMC knows
  firmvisor.hypervisor.server_info:
    driver: redfish
    bmc:
      address: bmc-r1-07.example.com
      username: admin
      password: "{{ bmc_password }}"
  register: box

- name: The disks of 8 GiB or more
  firmvisor.hypervisor.server_info:
    driver: redfish
    bmc: "{{ bmc }}"
    query: "server.disks[?size_bytes >= `8589934592`].name"

- name: Can it take the image?
  firmvisor.hypervisor.server_info:
    driver: redfish
    bmc: "{{ bmc }}"
    image: /var/lib/firmvisor/images/0.2.0
    install_disk: {min_size: 16GiB, media_type: SSD}
  register: box

- name: Refuse it before touching it
  ansible.builtin.assert:
    that: box.capacity.fits
    fail_msg: "{{ box.server.system.name }} cannot take the image: {{ box.capacity.problems | join('; ') }}"
'''

RETURN = r'''
server:
  description: The machine.
  returned: always
  type: dict
  contains:
    system: {description: "id, uuid, name, manufacturer, model, serial.", type: dict, returned: always}
    power_state: {description: "On, Off, PoweringOn, PoweringOff.", type: str, returned: always}
    cpus: {description: "count, model, sockets, cores, threads.", type: dict, returned: always}
    memory_mib: {description: "Memory in MiB.", type: int, returned: always}
    nics: {description: "id, mac, link, speed_mbps, state.", type: list, elements: dict, returned: always}
    disks: {description: "name, size_bytes, model, serial, media_type, protocol, wwn, source.", type: list, elements: dict, returned: always}
    firmware: {description: "bios_version, boot_mode.", type: dict, returned: always}
    boot: {description: "The boot override - target, enabled, mode, allowed_targets.", type: dict, returned: always}
    virtual_media: {description: "id, name, media_types, inserted, image.", type: list, elements: dict, returned: always}
    management: {description: "A QEMU server's management address and SSH port (on the libvirt host).", type: dict, returned: always}
    problems: {description: "Parts the BMC failed to serve.", type: list, elements: str, returned: always}
capacity:
  description: Whether the server can take O(image).
  returned: when O(image) is given
  type: dict
  contains:
    fits: {description: True when there is no problem., type: bool, returned: always}
    problems: {description: "Why it cannot take the image (too little memory, no disk that fits and holds it).", type: list, elements: str, returned: always}
    image_version: {description: The image's version., type: str, returned: always}
    image_bytes: {description: The size of the image's disk., type: int, returned: always}
    min_memory_mib: {description: The memory the image needs., type: int, returned: always}
    install_disk: {description: "O(driver=redfish) - the disk O(install_disk) picks when it fits, else null.", type: dict, returned: always}
query_result:
  description: The value of O(query) over the result.
  returned: when O(query) is given
  type: raw
'''

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.module import run_module
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.info import (
    SERVER_INFO_ARGSPEC, SERVER_INFO_REQUIRED_IF, server_info,
)


def main():
    run_module(SERVER_INFO_ARGSPEC, server_info, required_if=SERVER_INFO_REQUIRED_IF)


if __name__ == '__main__':
    main()
