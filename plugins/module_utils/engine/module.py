# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place where modules meet AnsibleModule: build it, run a handler, report."""

from __future__ import annotations

from typing import Any, Callable, Dict

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError

Handler = Callable[[AnsibleModule], Dict[str, Any]]


def run_module(argument_spec: Dict[str, Any], handler: Handler, **module_kwargs: Any) -> None:
    """Build the module, run ``handler(module)`` and exit with its result.

    The handler returns ``changed`` and, where it has them, ``diff`` and ``warnings``; every
    FvError becomes a failure whose message names the object and the cause. Extra keys a failed
    run wants to report travel on ``FvError.details``.
    """
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **module_kwargs)
    try:
        result = handler(module)
    except FvError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    for warning in result.pop('warnings', None) or []:
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)
    module.exit_json(**result)
