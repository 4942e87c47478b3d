#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: pool
short_description: Manage one libvirt storage pool ("datastore") declaratively
version_added: 0.1.0
description:
  - Creates, updates, starts, stops and removes one libvirt storage pool.
  - A new pool is defined, built (its directory created, or for V(fs) and V(logical) its device
    formatted, never overwriting an existing file system or volume group, which is then used as it
    is) and, unless O(state=inactive), started.
  - Updates edit the pool's existing definition in place. Only declared options are compared and
    written, so a second run reports no change. Changing O(type), O(path) or O(source) of an
    active pool needs it stopped and redefined, so the module refuses, naming the change, unless
    O(recreate=true) (or O(state=inactive)).
  - The pool's data (its directory, file system, volume group and volumes) is never deleted,
    unless O(delete_contents=true) is given with O(state=absent).
author:
  - firmvisor developers (@firmvisor)
extends_documentation_fragment:
  - firmvisor.hypervisor.connection
  - firmvisor.hypervisor.attributes
options:
  name:
    description: Name of the pool.
    type: str
    required: true
  state:
    description:
      - V(present) defines the pool; a pool it creates is also built and started, an existing one
        keeps its state.
      - V(active) defines the pool and makes sure it runs; V(inactive) defines it and makes sure it
        is stopped.
      - V(absent) stops the pool and undefines it. Its data stays unless O(delete_contents=true).
    type: str
    choices: [present, active, inactive, absent]
    default: present
  type:
    description:
      - V(dir) is a directory; V(fs) a block device with a file system mounted at O(path);
        V(logical) an LVM volume group; V(netfs) a network file system (NFS) mounted at O(path).
      - C(dir) when a pool is created without it.
    type: str
    choices: [dir, fs, logical, netfs]
  path:
    description:
      - The pool's absolute path on the hypervisor (the directory, or the mount point); required for
        V(dir), V(fs) and V(netfs). For V(logical), libvirt uses C(/dev/<volume group>).
    type: str
  source:
    description:
      - Where the pool's data comes from; not for V(dir). Only the fields given are managed; V('')
        removes one.
    type: dict
    suboptions:
      device:
        description:
          - Block devices. Exactly one for V(fs) (the device with the file system); for V(logical),
            the physical volumes a new volume group is built on.
        type: list
        elements: str
      host:
        description: The file server of a V(netfs) pool.
        type: str
      dir:
        description: The exported directory of a V(netfs) pool.
        type: str
      name:
        description: The volume group of a V(logical) pool (libvirt defaults it to the pool name).
        type: str
      format:
        description:
          - The source format, such as V(ext4) or V(xfs) for V(fs), V(nfs) for V(netfs), V(lvm2) for
            V(logical).
        type: str
  autostart:
    description: Start the pool when libvirtd starts.
    type: bool
  recreate:
    description:
      - Allow stopping an active pool, redefining it and starting it again to change O(type),
        O(path) or O(source). Its volumes are unavailable meanwhile; guests using them should be
        stopped first.
    type: bool
    default: false
  delete_contents:
    description:
      - With O(state=absent) only, delete the pool's data before undefining it - every volume in it,
        then its directory (V(dir)), mount point (V(fs), V(netfs)) or volume group and physical
        volume labels (V(logical)). This cannot be undone.
    type: bool
    default: false
seealso:
  - module: firmvisor.hypervisor.volume
  - module: firmvisor.hypervisor.host_info
'''

EXAMPLES = r'''
- name: A directory pool for VM disks
  firmvisor.hypervisor.pool:
    name: vms
    path: /var/lib/libvirt/images/vms
    autostart: true

- name: A pool on a data disk formatted with ext4 (an existing file system is kept)
  firmvisor.hypervisor.pool:
    name: data
    type: fs
    path: /srv/data
    source:
      device: /dev/sdb
      format: ext4
    state: active
    autostart: true

- name: An LVM volume group as a pool
  firmvisor.hypervisor.pool:
    name: fast
    type: logical
    source:
      name: vg_fast
      device: [/dev/nvme0n1, /dev/nvme1n1]

- name: Move a running directory pool, restarting it
  firmvisor.hypervisor.pool:
    name: vms
    path: /srv/vms
    recreate: true

- name: Remove a pool's definition, keeping its data
  firmvisor.hypervisor.pool:
    name: vms
    state: absent

- name: Remove a scratch pool and everything in it
  firmvisor.hypervisor.pool:
    name: scratch
    state: absent
    delete_contents: true
'''

RETURN = r'''
pool:
  description: The pool after the run (in check mode, the view it would have). Empty when absent.
  returned: always
  type: dict
  contains:
    name:
      description: Pool name.
      type: str
      returned: success
    uuid:
      description: Pool UUID (null for a pool that check mode would create).
      type: str
      returned: success
    type:
      description: Pool type.
      type: str
      returned: success
    path:
      description: Target path on the hypervisor.
      type: str
      returned: success
    source:
      description: Source (device, host, dir, name, format) as far as the pool has one.
      type: dict
      returned: success
    active:
      description: Whether the pool runs.
      type: bool
      returned: success
    autostart:
      description: Whether the pool starts with libvirtd.
      type: bool
      returned: success
    persistent:
      description: Whether the pool has a persistent definition.
      type: bool
      returned: success
    capacity:
      description: Size in bytes (0 while inactive; null in check mode).
      type: int
      returned: success
    allocation:
      description: Bytes allocated (0 while inactive; null in check mode).
      type: int
      returned: success
    available:
      description: Bytes free (0 while inactive; null in check mode).
      type: int
      returned: success
    volumes:
      description: Names of the pool's volumes (empty while inactive).
      type: list
      elements: str
      returned: success
  sample:
    name: vms
    type: dir
    path: /var/lib/libvirt/images/vms
    active: true
    autostart: true
    capacity: 107374182400
    allocation: 2147483648
    available: 105226698752
    volumes: [web1-0]
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
  sample: ["define storage pool vms", "build storage pool vms", "start storage pool vms"]
'''

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.module import run_module
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import with_connection
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.pool import POOL_ARGSPEC, Pool


def main():
    run_module(POOL_ARGSPEC, with_connection(lambda conn, module: converge_one(Pool(conn, module.check_mode), module.params)))


if __name__ == '__main__':
    main()
