# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server module's job: the driver's resource through the engine."""

from __future__ import annotations

from typing import Any, Dict

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import with_connection
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.qemu import QemuServer


def provision(module: Any) -> Dict[str, Any]:
    if module.params['driver'] == 'qemu':
        return with_connection(lambda conn, m: converge_one(QemuServer(conn, m.check_mode), m.params))(module)
    from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.redfish import provision as redfish
    return redfish(module)
