# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of ``server`` and ``server_info``: what every driver takes, and each driver's own."""

from __future__ import annotations

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import CONNECTION_ARGSPEC

DRIVERS = ('qemu', 'redfish')

FORWARD_SPEC = dict(
    port=dict(type='int', required=True),
    server_port=dict(type='int', required=True),
)
BMC_SPEC = dict(
    address=dict(type='str', required=True),
    username=dict(type='str'),
    password=dict(type='str', no_log=True),
    validate_certs=dict(type='bool', default=True),
    ca_path=dict(type='path'),
    timeout=dict(type='int', default=60),
)
NETWORK_SPEC = dict(
    mode=dict(type='str', choices=['dhcp', 'static']),
    address=dict(type='str'),
    gateway=dict(type='str'),
    dns=dict(type='list', elements='str'),
)
INSTALL_DISK_SPEC = dict(
    path=dict(type='str'),
    serial=dict(type='str'),
    name=dict(type='str'),
    wwn=dict(type='str'),
    min_size=dict(type='raw'),
    max_size=dict(type='raw'),
    model=dict(type='str'),
    media_type=dict(type='str'),
    prefer=dict(type='str', choices=['smallest', 'largest']),
)
DATA_DISK_SPEC = dict(
    size=dict(type='raw', required=True),
    name=dict(type='str'),
    pool=dict(type='str'),
)

SERVER_ARGSPEC = dict(
    name=dict(type='str', required=True),
    driver=dict(type='str', default='qemu', choices=list(DRIVERS)),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    image=dict(type='path'),
    hostname=dict(type='str'),
    ssh_authorized_keys=dict(type='list', elements='str', no_log=False),
    network=dict(type='dict', options=NETWORK_SPEC),
    reflash=dict(type='bool', default=False),
    wait=dict(type='bool', default=True),
    wait_timeout=dict(type='int', default=900),
    shutdown_timeout=dict(type='int', default=120),
    # qemu
    pool=dict(type='str', default='default'),
    vcpus=dict(type='int', default=2),
    memory=dict(type='raw', default='2GiB'),
    firmware=dict(type='str', default='bios', choices=['bios', 'efi']),
    virt_type=dict(type='str', default='auto', choices=['auto', 'kvm', 'qemu']),
    data_disks=dict(type='list', elements='dict', options=DATA_DISK_SPEC),
    networks=dict(type='list', elements='str'),
    ssh_port=dict(type='int'),
    forwards=dict(type='list', elements='dict', options=FORWARD_SPEC),
    autostart=dict(type='bool'),
    remove_disks=dict(type='bool', default=False),
    # redfish
    bmc=dict(type='dict', options=BMC_SPEC),
    system=dict(type='str'),
    image_url=dict(type='str'),
    seed_url=dict(type='str'),
    seed_path=dict(type='path'),
    install_disk=dict(type='dict', options=INSTALL_DISK_SPEC),
    install_force=dict(type='bool', default=False),
    address=dict(type='str'),
    port=dict(type='int', default=22),
    ssh_private_key=dict(type='path'),
    **CONNECTION_ARGSPEC,
)
SERVER_REQUIRED_IF = [
    ('state', 'present', ('image', 'ssh_authorized_keys')),
    ('driver', 'redfish', ('bmc',)),
]
