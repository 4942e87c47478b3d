#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: network
short_description: Manage one libvirt virtual network declaratively
version_added: 0.1.0
description:
  - Creates, updates, starts, stops and removes one libvirt network.
  - Updates edit the network's existing definition in place. Only declared options are compared
    and written; everything else in the definition (DNS entries, IPv6 addresses, port groups,
    C(<metadata>)) is kept, so a second run reports no change.
  - DHCP ranges and static hosts reach a running network live (and its definition), without
    restarting it. Every other change (O(mode), O(bridge), O(ip), O(prefix), O(domain)) needs an
    active network stopped and started again; the module does that only with O(recreate=true),
    and otherwise returns RV(recreate_required=true), shows the planned change in the diff and
    leaves the network as it is. An inactive network is simply redefined.
  - Every network this module creates carries this collection's ownership metadata in C(<metadata>).
author:
  - firmvisor developers (@firmvisor)
extends_documentation_fragment:
  - firmvisor.hypervisor.connection
  - firmvisor.hypervisor.attributes
options:
  name:
    description: Name of the network.
    type: str
    required: true
  state:
    description:
      - V(present) defines the network; a network it creates is also started, an existing one keeps
        its state.
      - V(active) defines the network and makes sure it runs; V(inactive) defines it and makes sure
        it is stopped.
      - V(absent) stops the network and undefines it.
    type: str
    choices: [present, active, inactive, absent]
    default: present
  mode:
    description:
      - V(nat) routes the network to the outside world with NAT; V(route) routes it without NAT;
        V(isolated) connects guests only with each other and the host (no C(<forward>)).
        These three need O(ip) (V(isolated) works without one).
      - V(bridge) attaches guests to the existing host bridge named by O(bridge); libvirt then
        manages no addresses, so O(ip), O(prefix), O(dhcp) and O(domain) are not allowed.
      - C(nat) when a network is created without it.
    type: str
    choices: [nat, route, isolated, bridge]
  bridge:
    description:
      - For V(nat), V(route) and V(isolated), the name of the bridge device libvirt creates for the
        network (libvirt picks C(virbrN) when it is not given).
      - For V(bridge), the name of the existing host bridge; required with that mode.
    type: str
  ip:
    description:
      - The host's IPv4 address on the network (the guests' gateway and DNS server).
    type: str
  prefix:
    description:
      - The prefix length of O(ip), from C(0) to C(32). C(24) when O(ip) is given without it to a
        network that has no IPv4 address yet.
    type: int
  dhcp:
    description:
      - The DHCP service of the network. Needs O(ip); ranges and host addresses must lie inside the
        network O(ip)/O(prefix).
      - Each list given is the complete list. Ranges and hosts that are not listed are removed, a
        list that is not given is left alone, and V([]) removes every range or host.
    type: dict
    suboptions:
      ranges:
        description: Address ranges handed out to guests.
        type: list
        elements: dict
        suboptions:
          start:
            description: First address of the range.
            type: str
            required: true
          end:
            description: Last address of the range.
            type: str
            required: true
      hosts:
        description:
          - Static leases, each matched by MAC address (or by name when it has no MAC).
        type: list
        elements: dict
        suboptions:
          mac:
            description: The guest's MAC address. Give O(dhcp.hosts[].mac), O(dhcp.hosts[].name) or both.
            type: str
          name:
            description: The guest's host name (also resolvable through the network's DNS).
            type: str
          ip:
            description: The IPv4 address the guest gets.
            type: str
            required: true
  domain:
    description:
      - The DNS domain of the network (guests' names resolve below it). V('') removes it.
    type: str
  autostart:
    description: Start the network when libvirtd starts.
    type: bool
  recreate:
    description:
      - Allow stopping and starting an active network to apply changes that libvirt cannot apply
        live (O(mode), O(bridge), O(ip), O(prefix), O(domain)). Guests attached to it lose their
        link while it is down and may need their interfaces reattached.
    type: bool
    default: false
notes:
  - Reads and updates only the first IPv4 C(<ip>) element of a network; IPv6 addresses are kept as they are.
seealso:
  - module: firmvisor.hypervisor.vm
  - module: firmvisor.hypervisor.host_info
'''

EXAMPLES = r'''
- name: A NAT network with DHCP and a static lease
  firmvisor.hypervisor.network:
    name: lab
    mode: nat
    bridge: virbr10
    ip: 192.168.100.1
    prefix: 24
    domain: lab.internal
    dhcp:
      ranges:
        - start: 192.168.100.100
          end: 192.168.100.199
      hosts:
        - mac: "52:54:00:00:10:01"
          name: web1
          ip: 192.168.100.11
    autostart: true

- name: An isolated network for a backplane, without addresses
  firmvisor.hypervisor.network:
    name: backplane
    mode: isolated

- name: Guests directly on the host bridge br0
  firmvisor.hypervisor.network:
    name: lan
    mode: bridge
    bridge: br0
    state: active
    autostart: true

- name: Move a running network to another subnet, restarting it
  firmvisor.hypervisor.network:
    name: lab
    ip: 192.168.200.1
    dhcp:
      ranges:
        - start: 192.168.200.100
          end: 192.168.200.199
      hosts: []
    recreate: true

- name: Remove a network
  firmvisor.hypervisor.network:
    name: lab
    state: absent
'''

RETURN = r'''
network:
  description: The network after the run (in check mode, the view it would have). Empty when absent.
  returned: always
  type: dict
  contains:
    name:
      description: Network name.
      type: str
      returned: success
    uuid:
      description: Network UUID (null for a network that check mode would create).
      type: str
      returned: success
    active:
      description: Whether the network runs.
      type: bool
      returned: success
    autostart:
      description: Whether the network starts with libvirtd.
      type: bool
      returned: success
    persistent:
      description: Whether the network has a persistent definition.
      type: bool
      returned: success
    mode:
      description: Forward mode (nat, route, isolated, bridge, or another libvirt mode).
      type: str
      returned: success
    bridge:
      description: Bridge device name.
      type: str
      returned: success
    ip:
      description: The host's IPv4 address on the network.
      type: str
      returned: success
    prefix:
      description: Prefix length of the IPv4 network.
      type: int
      returned: success
    dhcp:
      description: DHCP ranges (start, end) and hosts (mac, name, ip); null without an IPv4 address.
      type: dict
      returned: success
    domain:
      description: DNS domain.
      type: str
      returned: success
    owned:
      description: Whether the network carries this collection's ownership metadata.
      type: bool
      returned: success
  sample:
    name: lab
    active: true
    autostart: true
    mode: nat
    bridge: virbr10
    ip: 192.168.100.1
    prefix: 24
    dhcp:
      ranges: [{start: 192.168.100.100, end: 192.168.100.199}]
      hosts: [{mac: "52:54:00:00:10:01", name: web1, ip: 192.168.100.11}]
    domain: lab.internal
recreate_required:
  description:
    - Declared changes that an active network takes only when it is stopped and started again
      were not applied, because O(recreate) is false. The diff shows them.
  returned: always
  type: bool
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
  sample: ["add DHCP host mac=52:54:00:00:10:01 name=web1 ip=192.168.100.11 of network lab (live and config)"]
'''

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.module import run_module
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import with_connection
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.network import NETWORK_ARGSPEC, Network


def main():
    run_module(NETWORK_ARGSPEC,
               with_connection(lambda conn, module: converge_one(Network(conn, module.check_mode), module.params)))


if __name__ == '__main__':
    main()
