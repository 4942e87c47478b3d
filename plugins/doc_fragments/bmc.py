# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # How the modules that talk to a server's BMC (Redfish) reach it.
    DOCUMENTATION = r'''
options:
  bmc:
    description: O(driver=redfish) only. How to reach the server's BMC.
    type: dict
    suboptions:
      address:
        description: The BMC's address, a host name or C(https://host:port).
        type: str
        required: true
      username:
        description: BMC user.
        type: str
      password:
        description: BMC password. Never shown in output or logs.
        type: str
      validate_certs:
        description: Verify the BMC's TLS certificate.
        type: bool
        default: true
      ca_path:
        description: A CA bundle to verify the BMC's certificate with.
        type: path
      timeout:
        description: Seconds each BMC request may take.
        type: int
        default: 60
  system:
    description: O(driver=redfish) only. The system's UUID or Id; defaults to the BMC's only system.
    type: str
requirements:
  - sushy (for O(driver=redfish)), on the host that runs the module
'''
