#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: volume
short_description: Manage a libvirt storage volume (a VM disk)
version_added: 0.1.0
description:
  - Creates a volume with a size, imports it from a local image or a URL (verifying a checksum),
    or creates it as a qcow2 overlay backed by an image on the hypervisor.
  - An existing volume is never re-imported. It grows to O(size) but never shrinks.
  - O(state=absent) deletes the volume and its data.
author:
  - firmvisor developers (@firmvisor)
extends_documentation_fragment:
  - firmvisor.hypervisor.connection
  - firmvisor.hypervisor.attributes
options:
  pool:
    description: The storage pool (it must exist and be active).
    type: str
    required: true
  name:
    description: Volume name.
    type: str
    required: true
  state:
    description: V(present) or V(absent) (deletes the volume and its data).
    type: str
    choices: [present, absent]
    default: present
  size:
    description:
      - Capacity, as MiB or a string such as V(20GiB). Creates the volume when it is missing
        (with neither O(source) nor O(url)), and grows an existing smaller one.
    type: raw
  format:
    description: Volume format. New empty volumes default to C(qcow2); imports keep the image's format.
    type: str
    choices: [qcow2, raw, iso]
  source:
    description:
      - A local image file (on the host running the module) copied into the new volume through a
        libvirt stream, so it works with remote URIs too.
      - With O(backing=true), the path of an image on the hypervisor the new volume backs onto.
    type: path
  url:
    description: Download the image from this URL and import it (only when the volume is missing).
    type: str
  checksum:
    description:
      - Checksum of the image from O(source) or O(url), as C(algorithm:hex) (for example
        C(sha256:0123...)) or a bare sha256 hex digest. A mismatch fails before the volume is created.
    type: str
  backing:
    description: Create the volume as a qcow2 overlay backed by O(source).
    type: bool
    default: false
  url_timeout:
    description: Seconds the download from O(url) may take to respond.
    type: int
    default: 600
seealso:
  - module: firmvisor.hypervisor.pool
'''

EXAMPLES = r'''
- name: A 20 GiB empty disk
  firmvisor.hypervisor.volume:
    pool: vms
    name: data1.qcow2
    size: 20GiB

- name: Import a cloud image, verified
  firmvisor.hypervisor.volume:
    pool: images
    name: debian-12.qcow2
    url: http://127.0.0.1:8080/debian-12-genericcloud-amd64.qcow2
    checksum: sha512:5a0e6a...

- name: A VM disk backed onto the base image
  firmvisor.hypervisor.volume:
    pool: vms
    name: web1-0
    source: /var/lib/libvirt/images/debian-12.qcow2
    backing: true
    size: 10GiB
'''

RETURN = r'''
volume:
  description: The volume after the run; empty when absent.
  returned: always
  type: dict
  contains:
    name: {description: "Volume name.", type: str, returned: success}
    pool: {description: "Pool name.", type: str, returned: success}
    path: {description: "Path on the hypervisor.", type: str, returned: success}
    format: {description: "Format.", type: str, returned: success}
    capacity: {description: "Capacity in bytes.", type: int, returned: success}
    allocation: {description: "Allocated bytes.", type: int, returned: success}
    backing: {description: "Path of the backing image, if any.", type: str, returned: success}
actions:
  description: What was done (or would be done, in check mode).
  returned: always
  type: list
  elements: str
'''

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.module import run_module
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import with_connection
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.volume import VOLUME_ARGSPEC, Volume


def main():
    run_module(VOLUME_ARGSPEC,
               with_connection(lambda conn, module: converge_one(Volume(conn, module.check_mode), module.params)),
               mutually_exclusive=[('source', 'url')])


if __name__ == '__main__':
    main()
