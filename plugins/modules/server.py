#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: server
short_description: Provision a server with the firmvisor embedded hypervisor image
version_added: 0.2.0
description:
  - Puts a built firmvisor image onto a machine and brings it up, ready to run VMs.
  - O(driver=qemu) makes the machine itself, a libvirt domain on O(uri) that plays the bare-metal box
    (see O(pool)); O(driver=redfish) provisions real bare metal through its BMC.
  - A server that exists and runs is left alone. A server whose image differs from O(image) is
    reported (RV(reflash_required)) and rewritten only with O(reflash=true).
  - Waits until the host is ready (its console says C(firmvisor ready), which the image prints once
    its health gate passed, and SSH answers on its management address) unless O(wait=false).
  - The management address of a QEMU server is a forward on C(127.0.0.1) of the libvirt host to the
    server's SSH port (RV(address), RV(port)); the server's own network traffic reaches nothing else.
  - O(driver=redfish) reads the BMC's system (power, virtual media, boot override) and asks the server
    over SSH (O(address), O(port), O(ssh_private_key)) which firmvisor it runs. A server that runs the
    declared version from its disk is left alone. Otherwise, from where the server stands - the seed
    floppy written to O(seed_path) (served at O(seed_url)), the ISO (O(image_url)) and the floppy
    inserted as virtual media, a one-time boot override to the CD, power on (or a forced restart), the
    live installer watched over SSH until it has written and verified the disk chosen by
    O(install_disk), the CD ejected, a boot override to the disk and a forced restart, SSH from the
    installed disk with the declared version, the floppy ejected and the override cleared. Every wait
    takes up to O(wait_timeout) seconds and its error names the step, the BMC and the system.
  - A failed Redfish step undoes what the run did that can be undone (media ejected, the override
    cleared), except a CD the live installer is still writing the disk from; a second run goes on from
    where the server stands (a live installer running or done, the disk installed).
author:
  - firmvisor developers (@firmvisor)
extends_documentation_fragment:
  - firmvisor.hypervisor.connection
  - firmvisor.hypervisor.bmc
  - firmvisor.hypervisor.attributes
options:
  name:
    description: Name of the server (the libvirt domain of a QEMU server; the default host name).
    type: str
    required: true
  driver:
    description: V(qemu) for a QEMU server on O(uri), V(redfish) for bare metal through O(bmc).
    type: str
    choices: [qemu, redfish]
    default: qemu
  state:
    description:
      - V(present) provisions the server (and starts it) if it is not.
      - V(absent) removes a QEMU server with its flash and seed volumes; its data disks only with
        O(remove_disks=true). A Redfish server is powered off and its media ejected; its disks are not touched.
    type: str
    choices: [present, absent]
    default: present
  image:
    description:
      - A built image (see the C(image) role), its directory or its C(manifest.json). The manifest
        names the version and the disk's digest, which decide whether a server runs this image.
    type: path
  hostname:
    description: The host name the seed gives the server. Defaults to O(name).
    type: str
  ssh_authorized_keys:
    description: Public keys that may log in as root (the image allows keys only).
    type: list
    elements: str
  network:
    description: The management network the seed configures; DHCP by default.
    type: dict
    suboptions:
      mode:
        description: V(dhcp) or V(static) (implied by O(network.address)).
        type: str
        choices: [dhcp, static]
      address:
        description: Address with prefix, such as C(192.0.2.10/24).
        type: str
      gateway:
        description: Default gateway.
        type: str
      dns:
        description: DNS servers.
        type: list
        elements: str
  reflash:
    description:
      - Write O(image) onto a server that runs another image. The server starts afresh from its seed
        (the flash holds the state); data disks are kept. Without it, a different image is only reported.
    type: bool
    default: false
  wait:
    description: Wait until the server is ready after starting it.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for the server to be ready.
    type: int
    default: 900
  shutdown_timeout:
    description: Seconds a graceful shutdown may take before the server is forced off.
    type: int
    default: 120
  pool:
    description:
      - O(driver=qemu) only. The storage pool (a directory pool) of the server's volumes, that is the image's
        base volume (imported once per image, named by its version and digest, shared by servers), the
        server's flash (a qcow2 overlay on it), its seed and its data disks.
    type: str
    default: default
  vcpus:
    description: O(driver=qemu) only. Virtual CPUs.
    type: int
    default: 2
  memory:
    description: O(driver=qemu) only. Memory, as MiB or with a unit (V(2GiB)).
    type: raw
    default: 2GiB
  firmware:
    description: O(driver=qemu) only. V(bios) (SeaBIOS) or V(efi) (OVMF without secure boot).
    type: str
    choices: [bios, efi]
    default: bios
  virt_type:
    description: O(driver=qemu) only. V(auto) uses KVM when the host offers it, else TCG (V(qemu)).
    type: str
    choices: [auto, kvm, qemu]
    default: auto
  data_disks:
    description:
      - O(driver=qemu) only. Disks for the VM storage of the server (its pools). Never wiped by a
        reflash; removed with the server only with O(remove_disks=true).
    type: list
    elements: dict
    suboptions:
      size:
        description: Size, as MiB or with a unit (V(20GiB)).
        type: raw
        required: true
      name:
        description: Volume name. Defaults to C(<name>-data<index>).
        type: str
      pool:
        description: Storage pool. Defaults to O(pool).
        type: str
  networks:
    description: O(driver=qemu) only. libvirt networks the server gets a NIC on (besides its management NIC).
    type: list
    elements: str
  ssh_port:
    description:
      - O(driver=qemu) only. The port on C(127.0.0.1) forwarded to the server's SSH. Defaults to the
        server's current one, else a free port.
    type: int
  forwards:
    description:
      - O(driver=qemu) only. More TCP ports on C(127.0.0.1) forwarded to the server's management
        NIC, besides SSH (say for a service on the server, or migration between servers on one
        machine). The whole list, so a forward left out is removed; a changed list takes effect when
        the server next boots, and the result warns so. Omitted, the server's current forwards are
        kept.
    type: list
    elements: dict
    suboptions:
      port:
        description: The port on C(127.0.0.1).
        type: int
        required: true
      server_port:
        description: The server's port it reaches.
        type: int
        required: true
  autostart:
    description: O(driver=qemu) only. Start the server with libvirtd.
    type: bool
  remove_disks:
    description: With O(state=absent), also delete the data disks of a QEMU server.
    type: bool
    default: false
  image_url:
    description:
      - O(driver=redfish) only; required with O(state=present). Where the BMC downloads the image's ISO from
        (virtual media). It must serve the ISO of O(image) (checked by size before anything changes when this
        host reaches it; a missing file fails).
    type: str
  seed_url:
    description:
      - O(driver=redfish) only; required with O(state=present). Where the BMC downloads the server's seed
        floppy from, that is where O(seed_path) is served.
    type: str
  seed_path:
    description:
      - O(driver=redfish) only; required with O(state=present). The local file the server's seed floppy (a
        1.44 MB FAT image labelled C(FVSEED) with its host name, O(ssh_authorized_keys), O(network) and the
        install disk) is written to, for the HTTP server behind O(seed_url) to serve. Rewritten only when the
        seed changes (a digest is kept beside it, C(<seed_path>.sha256)).
    type: path
  install_disk:
    description:
      - O(driver=redfish) only. Which disk the ISO installs onto, as a rule over the BMC's inventory.
        One selector (O(install_disk.path), O(install_disk.serial), O(install_disk.name),
        O(install_disk.wwn)) or tests (sizes, model, media type), of which the smallest (or largest)
        passing disk is taken. Defaults to the smallest disk of 8 GiB or more.
    type: dict
    suboptions:
      path:
        description: The disk's device path on the server (V(/dev/sda)); used as it is.
        type: str
      serial:
        description: The disk's serial number.
        type: str
      name:
        description: The name the BMC gives the disk.
        type: str
      wwn:
        description: The disk's World Wide Name.
        type: str
      min_size:
        description: Smallest size a disk may have (MiB, or with a unit such as V(8GiB)).
        type: raw
      max_size:
        description: Largest size a disk may have.
        type: raw
      model:
        description: A text the disk's model contains.
        type: str
      media_type:
        description: V(SSD) or V(HDD), as the BMC reports it.
        type: str
      prefer:
        description: Of the disks that pass, take the smallest or the largest.
        type: str
        choices: [smallest, largest]
  install_force:
    description:
      - O(driver=redfish) only. Install even onto a disk that holds data or another install (the seed's
        C(install_force)). O(reflash=true) sets it for a server that runs another firmvisor version.
    type: bool
    default: false
  address:
    description:
      - O(driver=redfish) only. The address the server answers SSH on, in its live installer and once
        installed; defaults to the address of a static O(network). Required with O(state=present).
    type: str
  port:
    description: O(driver=redfish) only. The server's SSH port on O(address).
    type: int
    default: 22
  ssh_private_key:
    description:
      - O(driver=redfish) only. The private key of one of O(ssh_authorized_keys), with which the module asks
        the server which firmvisor it runs and follows the live installer (as C(root), host keys not checked -
        the live system and the installed one make their own). Without it, C(ssh)'s default identities.
    type: path
notes:
  - A QEMU server's readiness is read from its serial console log, which exists on the libvirt host;
    with a remote O(uri), only SSH answering is waited for.
  - O(driver=redfish) needs the Python library C(sushy) and the C(ssh) client on the host that runs the
    module, and C(mkfs.fat) and C(mcopy) (dosfstools, mtools) to write the seed floppy. With O(wait=false) it
    stops after powering the server on; a later run goes on from there.
'''

EXAMPLES = r'''
- name: A QEMU server with a data disk, reachable on 127.0.0.1
  firmvisor.hypervisor.server:
    name: hv1
    image: /var/lib/firmvisor/images/0.2.0
    ssh_authorized_keys: ["{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"]
    vcpus: 2
    memory: 2GiB
    virt_type: qemu
    data_disks: [{size: 20GiB}]
  register: hv1

- name: Manage it over libvirt
  firmvisor.hypervisor.host_info:
    uri: "{{ hv1.uri }}?keyfile={{ lookup('env', 'HOME') }}/.ssh/id_ed25519"

- name: Roll a new image onto it (a fresh state; data disks kept)
  firmvisor.hypervisor.server:
    name: hv1
    image: /var/lib/firmvisor/images/0.3.0
    ssh_authorized_keys: ["{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"]
    reflash: true

- name: Remove it and its data disks
  firmvisor.hypervisor.server:
    name: hv1
    state: absent
    remove_disks: true

- name: A bare-metal server through its BMC, the media served by a web server on the controller
  firmvisor.hypervisor.server:
    name: rack1-u07
    driver: redfish
    bmc:
      address: https://10.0.8.107
      username: provision
      password: "{{ vault_bmc_password }}"
      ca_path: /etc/pki/bmc-ca.pem
    image: /var/lib/firmvisor/images/0.2.0
    image_url: http://10.0.8.1:8080/rack1-u07.iso
    seed_url: http://10.0.8.1:8080/rack1-u07-seed.img
    seed_path: /srv/fvmedia/rack1-u07-seed.img
    install_disk: {min_size: 100GiB, media_type: SSD}   # the smallest such SSD, named by its WWN
    network: {address: 10.0.9.107/24, gateway: 10.0.9.1, dns: [10.0.9.1]}
    ssh_authorized_keys: ["{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"]
    ssh_private_key: ~/.ssh/id_ed25519
'''

RETURN = r'''
address:
  description: The server's management address.
  returned: success, when present
  type: str
  sample: 127.0.0.1
port:
  description: The server's SSH port on RV(address).
  returned: success, when present
  type: int
  sample: 40022
version:
  description: The image version the server runs.
  returned: success, when present
  type: str
  sample: 0.2.0
uri:
  description: The libvirt URI of the server's own libvirtd, over SSH (add C(?keyfile=...) as needed).
  returned: success, when present
  type: str
  sample: qemu+ssh://root@127.0.0.1:40022/system
reflash_required:
  description: The server runs another image than O(image) and O(reflash) is false.
  returned: always
  type: bool
install_to:
  description: O(driver=redfish). The disk the seed tells the installer to install onto.
  returned: when a Redfish server is (or would be) installed
  type: str
  sample: /dev/disk/by-id/wwn-0x5002538c40000001
server:
  description: The server after the run (in check mode, as it would be).
  returned: always
  type: dict
  sample: {name: hv1, driver: qemu, state: running, version: 0.2.0, port: 40022, data_disks: [hv1-data0]}
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
'''

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.module import run_module
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.drivers import provision
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.options import SERVER_ARGSPEC, SERVER_REQUIRED_IF


def main():
    run_module(SERVER_ARGSPEC, provision, required_if=SERVER_REQUIRED_IF)


if __name__ == '__main__':
    main()
