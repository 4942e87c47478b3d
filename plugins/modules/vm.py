#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: vm
short_description: Manage one libvirt domain (virtual machine) declaratively
version_added: 0.1.0
description:
  - Creates, updates, powers and removes one libvirt domain.
  - Updates edit the domain's existing definition in place. Only declared options are compared
    and written; everything else in the definition (devices you added by hand, C(<metadata>),
    libvirt's own defaults) is kept, so a second run reports no change.
  - Each change is classified as C(live) (applied to the running VM now, such as autostart and added or
    removed disks and interfaces, which are hot-plugged and hot-unplugged), C(next_boot) (kernel, initrd, cmdline, cloud-init
    seed) or C(restart) (vcpus, memory, machine, firmware, changed devices). O(apply_changes)
    decides whether a running VM is restarted for C(restart) changes.
  - Every domain this module creates carries ownership metadata in C(<metadata>), which
    M(firmvisor.hypervisor.vms) uses with O(firmvisor.hypervisor.vms#module:exclusive=true).
  - A serial console is created with new domains; its output is logged to
    C(/var/log/libvirt/qemu/<name>-serial.log) (returned as RV(vm.console_log)), truncated at each start.
author:
  - firmvisor developers (@firmvisor)
extends_documentation_fragment:
  - firmvisor.hypervisor.connection
  - firmvisor.hypervisor.attributes
options:
  name:
    description: Name of the domain.
    type: str
    required: true
  state:
    description:
      - V(present) defines the domain and leaves its power state alone (a new one stays shut off).
      - V(running), V(stopped) and V(paused) also converge the power state. V(stopped) shuts the
        guest down gracefully and forces it off after O(shutdown_timeout) seconds.
      - V(absent) forces the domain off and undefines it with its NVRAM. Its volumes are deleted
        only with O(remove_volumes=true).
    type: str
    choices: [present, running, stopped, paused, absent]
    default: present
  vcpus:
    description: Number of virtual CPUs. C(1) when a domain is created without it.
    type: int
  memory:
    description:
      - Memory, as MiB (an integer) or a string with a unit such as V(512MiB) or V(2GiB).
      - C(512) MiB when a domain is created without it.
    type: raw
  virt_type:
    description:
      - The libvirt domain type. V(auto) picks V(kvm) when the host offers it, else V(qemu)
        (software emulation, TCG). V(auto) is never compared with an existing domain.
    type: str
    choices: [auto, kvm, qemu]
  machine:
    description:
      - The machine type, such as V(q35) or V(pc); libvirt's versioned names (C(pc-q35-7.2))
        compare equal to their alias. C(q35) when a domain is created without it.
    type: str
  firmware:
    description:
      - V(bios) (SeaBIOS) or V(efi) (OVMF, chosen by libvirt's firmware auto-selection, without
        secure boot). C(bios) when a domain is created without it.
    type: str
    choices: [bios, efi]
  kernel:
    description: Path (on the hypervisor) of a kernel for direct kernel boot; V('') removes it.
    type: str
  initrd:
    description: Path (on the hypervisor) of an initrd for direct kernel boot; V('') removes it.
    type: str
  cmdline:
    description: Kernel command line for direct kernel boot; V('') removes it.
    type: str
  disks:
    description:
      - Disks, each a volume in a storage pool. A missing volume is created with O(disks[].size)
        or from O(disks[].source). An existing volume grows to O(disks[].size), never shrinks.
      - The list is the whole list. Disks are matched with the domain's disks by pool and volume name
        (so the order of the list does not matter); a disk of the domain that is not listed is
        detached (hot-unplugged from a running domain where the guest lets go of it, otherwise at its
        next restart). Its volume is kept unless O(remove_volumes=true).
      - The cloud-init seed's cdrom belongs to O(cloud_init), not to this list.
      - Every pool must exist and be active, and every volume must exist or be creatable, before
        anything changes.
    type: list
    elements: dict
    suboptions:
      name:
        description: Volume name. Defaults to C(<vm>-<index>), the index counting from 0.
        type: str
      pool:
        description: Storage pool. Defaults to the first disk's pool, else C(default).
        type: str
      size:
        description: Size, as MiB or a string such as V(10GiB); creates the volume when missing.
        type: raw
      format:
        description: Volume and driver format. New volumes default to C(qcow2).
        type: str
        choices: [qcow2, raw, iso]
      source:
        description:
          - A local image file copied into the new volume (uploaded through libvirt, so it also
            works with remote URIs). With O(disks[].backing=true), the path of an image on the
            hypervisor that the new qcow2 volume backs onto.
        type: path
      backing:
        description: Create the volume as a qcow2 overlay backed by O(disks[].source).
        type: bool
      bus:
        description: Disk bus. New disks default to C(virtio), new cdroms to C(sata).
        type: str
        choices: [virtio, sata, scsi, usb, ide]
      device:
        description: V(disk) or V(cdrom). Defaults to C(disk).
        type: str
        choices: [disk, cdrom]
      boot:
        description: Boot order of this disk (1 boots first).
        type: int
  interfaces:
    description:
      - Network interfaces, matched by MAC address. An interface without O(interfaces[].mac) gets a
        stable MAC derived from the VM name and its index, so it keeps it when recreated.
      - The list is the whole list. An interface of the domain that is not listed is detached
        (hot-unplugged from a running domain where the guest lets go of it).
      - Every network must exist (and be active for O(state=running) or O(state=paused)) and every
        bridge must exist on the host, before anything changes.
    type: list
    elements: dict
    suboptions:
      network:
        description: A libvirt network. Give exactly one of O(interfaces[].network) and O(interfaces[].bridge).
        type: str
      bridge:
        description: A host bridge.
        type: str
      model:
        description: The NIC model. New interfaces default to C(virtio).
        type: str
      mac:
        description: The MAC address.
        type: str
  watchdog:
    description:
      - A watchdog device (C(i6300esb) on x86 QEMU machines) that resets the VM when its guest stops
        feeding it; V('') removes it. The guest must arm it (systemd's C(RuntimeWatchdogSec)).
    type: str
    choices: [i6300esb, ib700, diag288, itco, '']
  nested_virtualization:
    description:
      - V(false) disables the CPU features that offer hardware virtualization to the guest OS (AMD
        SVM, Intel VMX), so that it cannot load KVM; V(true) stops disabling them (what the CPU model
        offers). A domain without a CPU model gets libvirt's default one, C(qemu64), named. The
        qemu driver of M(firmvisor.hypervisor.server) sets V(false) on TCG servers. Needs a restart.
    type: bool
  qemu_args:
    description:
      - Extra QEMU command-line arguments (libvirt's C(<qemu:commandline>)), for what libvirt cannot
        express, such as user networking with a host port forward on 127.0.0.1
        (V(-netdev), V(user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22), V(-device),
        V(virtio-net-pci,netdev=mgmt,addr=0x10)). V([]) removes them. Needs a restart.
    type: list
    elements: str
  scope:
    description:
      - An ownership scope written into the domain's C(<metadata>); see
        O(firmvisor.hypervisor.vms#module:scope).
    type: str
  autostart:
    description: Start the domain when libvirtd starts.
    type: bool
  cloud_init:
    description:
      - Build a cloud-init NoCloud seed (an ISO labelled C(cidata)) as volume C(<vm>-cidata.iso) and
        attach it as a cdrom. The seed is rebuilt when its content changes.
      - Needs genisoimage, mkisofs or xorrisofs on the host that runs the module.
    type: dict
    suboptions:
      user_data:
        description: User data, a string (used as is) or a dict (written as C(#cloud-config)).
        type: raw
      meta_data:
        description: Meta data; C(instance-id) and C(local-hostname) default to the VM name.
        type: dict
      network_config:
        description: Network configuration (version 1 or 2).
        type: dict
      pool:
        description: Pool of the seed volume. Defaults to the first disk's pool.
        type: str
  remove_volumes:
    description:
      - With O(state=absent), also delete the volumes of the domain's disks (and its seed).
      - Otherwise, delete the volumes of disks that O(disks) no longer lists.
      - A volume that another domain uses is never deleted (the result warns).
    type: bool
    default: false
  apply_changes:
    description:
      - How changes that need a restart reach a running domain.
      - V(next_boot) writes them into the definition and returns RV(reboot_required=true).
      - V(restart) shuts the domain down gracefully (forced after O(shutdown_timeout)) and starts it again.
    type: str
    choices: [next_boot, restart]
    default: next_boot
  wait:
    description: Wait until the domain reached the requested power state.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for the requested power state.
    type: int
    default: 120
  shutdown_timeout:
    description: Seconds a graceful shutdown may take before the domain is forced off.
    type: int
    default: 120
seealso:
  - module: firmvisor.hypervisor.vms
  - module: firmvisor.hypervisor.vm_info
'''

EXAMPLES = r'''
- name: A small VM booting a kernel directly, on an isolated network
  firmvisor.hypervisor.vm:
    name: web1
    state: running
    vcpus: 1
    memory: 128MiB
    virt_type: qemu
    kernel: /var/cache/firmvisor/guest/vmlinuz
    initrd: /var/cache/firmvisor/guest/initrd.img
    cmdline: console=ttyS0
    interfaces:
      - network: lab

- name: A cloud image VM with a disk backed onto a base image, and cloud-init
  firmvisor.hypervisor.vm:
    name: app1
    state: running
    memory: 2GiB
    vcpus: 2
    firmware: efi
    disks:
      - pool: vms
        size: 20GiB
        source: /var/lib/libvirt/images/debian-12-genericcloud-amd64.qcow2
        backing: true
    interfaces:
      - network: default
    cloud_init:
      user_data:
        users:
          - name: ops
            ssh_authorized_keys: ["{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"]

- name: Grow memory, restarting the VM if it runs
  firmvisor.hypervisor.vm:
    name: app1
    memory: 4GiB
    apply_changes: restart

- name: Remove a VM and its volumes, on a remote hypervisor
  firmvisor.hypervisor.vm:
    uri: qemu+ssh://root@hv1.example.com/system
    name: app1
    state: absent
    remove_volumes: true
'''

RETURN = r'''
vm:
  description: The domain after the run (in check mode, the declared view it would have). Empty when absent.
  returned: always
  type: dict
  contains:
    name: {description: "Domain name.", type: str, returned: success}
    uuid: {description: "Domain UUID.", type: str, returned: success}
    state: {description: "Power state (running, stopped, paused, crashed, suspended).", type: str, returned: success}
    vcpus: {description: "Virtual CPUs.", type: int, returned: success}
    memory: {description: "Memory in MiB.", type: int, returned: success}
    disks: {description: "Disks (pool, name, path, device, bus, target, format, boot).", type: list, elements: dict, returned: success}
    interfaces: {description: "Interfaces (type, network, bridge, model, mac).", type: list, elements: dict, returned: success}
    autostart: {description: "Whether the domain starts with libvirtd.", type: bool, returned: success}
    owned: {description: "Whether the domain carries this collection's ownership metadata.", type: bool, returned: success}
    console_log: {description: "File that logs the serial console.", type: str, returned: success}
  sample: {name: web1, state: running, vcpus: 1, memory: 128, owned: true}
reboot_required:
  description: Changes were written that the running domain picks up only when restarted.
  returned: always
  type: bool
changes:
  description: Each changed option and how it reaches a running domain (live, next_boot or restart).
  returned: always
  type: dict
  sample: {memory: restart, interfaces: live}
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
  sample: ["create volume vms/app1-0 (21474836480 bytes, qcow2)", "define domain app1", "start app1"]
'''

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.module import run_module
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import with_connection
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import VM_ARGSPEC
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.resource import Vm


def main():
    run_module(VM_ARGSPEC, with_connection(lambda conn, module: converge_one(Vm(conn, module.check_mode), module.params)))


if __name__ == '__main__':
    main()
