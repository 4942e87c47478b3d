# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place where modules meet AnsibleModule: connect, run a service, report."""

from __future__ import annotations

from typing import Any, Callable, Dict

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.firmvisor.hypervisor.plugins.module_utils._common import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils._libvirt import connect


def run_module(argument_spec: Dict[str, Any], handler: Callable[[Any, AnsibleModule], Dict[str, Any]],
               needs_libvirt: bool = True, **module_kwargs: Any) -> None:
    """Build the module, open the connection (unless the module needs none), run
    ``handler(conn, module)`` and exit with its result.

    The handler returns ``changed`` and, where it has them, ``diff`` and ``warnings``; every
    FvError becomes a failure whose message names the object and the cause.
    """
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **module_kwargs)
    conn = None
    try:
        if needs_libvirt:
            conn = connect(module.params['uri'], module.params['connect_timeout'])
        result = handler(conn, module)
    except FvError as exc:
        module.fail_json(msg=str(exc))
    finally:
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection must not hide the real error
                pass
    for warning in result.pop('warnings', None) or []:
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)
    module.exit_json(**result)
