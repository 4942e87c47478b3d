# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Many domains in one task (``vms``): one connection, domains read in bulk, every spec planned before
any is changed."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Optional

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import execute, plan_all
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import CONNECTION_ARGSPEC, mapped
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import VM_ARGSPEC
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.resource import Vm

# A VM spec inside `vms`/`defaults`: the vm module's options less the connection.
VM_ITEM_ARGSPEC = {k: v for k, v in VM_ARGSPEC.items() if k not in CONNECTION_ARGSPEC}
VM_ITEM_DEFAULTS = {k: v.get('default') for k, v in VM_ITEM_ARGSPEC.items()}

VMS_ARGSPEC = dict(
    vms=dict(type='list', elements='dict', required=True),
    defaults=dict(type='dict', default={}),
    exclusive=dict(type='bool', default=False),
    scope=dict(type='str'),
    **CONNECTION_ARGSPEC,
)


def merged_specs(items: List[Dict[str, Any]], defaults: Dict[str, Any],
                 scope: Optional[str] = None) -> List[Dict[str, Any]]:
    """Each item over ``defaults`` (and the task's scope), validated like the vm module's own
    options; all errors at once."""
    if 'name' in defaults:
        raise FvError('defaults: name cannot have a default')
    validator = ArgumentSpecValidator(VM_ITEM_ARGSPEC)
    specs, errors = [], []
    # Specs that differ only by name (a fleet of alike VMs) are validated once.
    validated_shapes: Dict[str, Dict[str, Any]] = {}
    for index, item in enumerate(items):
        merged = dict(defaults)
        merged.update({k: v for k, v in item.items() if v is not None})
        if scope is not None:
            merged['scope'] = scope
        label = 'vms[%d]%s' % (index, ' (%s)' % item['name'] if item.get('name') else '')
        shape = json.dumps({k: v for k, v in merged.items() if k != 'name'}, sort_keys=True, default=repr)
        if isinstance(merged.get('name'), str) and shape in validated_shapes:
            specs.append(dict(validated_shapes[shape], name=merged['name']))
            continue
        result = validator.validate(merged)
        if result.error_messages:
            errors.extend('%s: %s' % (label, message) for message in result.error_messages)
            continue
        validated_shapes[shape] = result.validated_parameters
        specs.append(result.validated_parameters)
    names = [spec['name'] for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        errors.append('vms: names listed more than once: %s' % ', '.join(duplicates))
    if errors:
        raise FvError('; '.join(errors))
    return specs


def reconcile(conn: Any, check_mode: bool, items: List[Dict[str, Any]], defaults: Dict[str, Any],
              exclusive: bool, scope: Optional[str] = None) -> Dict[str, Any]:
    """The vms module's whole job: every spec planned (and every bad one named) before any change;
    with ``exclusive``, owned domains of the scope that are not declared are removed."""
    started = time.monotonic()
    specs = merged_specs(items, defaults, scope)
    resource = Vm(conn, check_mode)
    plans = plan_all(resource, specs)
    if exclusive:
        declared = {spec['name'] for spec in specs}
        with mapped('listing domains'):
            others = sorted(dom.name() for dom in conn.listAllDomains(0) if dom.name() not in declared)
        for name, actual in resource.read(others).items():
            if actual is not None and actual.doc.owned() and (scope is None or actual.doc.get_meta('scope') == scope):
                plans.append(resource.plan(dict(VM_ITEM_DEFAULTS, name=name, state='absent', remove_volumes=False), actual))
    results = execute(plans, check_mode)
    before, after, warnings, vms = {}, {}, [], []
    for plan, result in zip(plans, results):
        warnings.extend('%s: %s' % (plan.key, w) for w in result.pop('warnings'))
        diff = result.pop('diff')
        if result['changed']:
            before[plan.key], after[plan.key] = diff['before'], diff['after']
        vms.append(dict(result, name=plan.key))
    return {
        'changed': any(r['changed'] for r in vms),
        'vms': vms,
        'removed': [p.key for p, r in zip(plans, vms) if r['changed'] and p.after.get('state') == 'absent'],
        'reboot_required': sorted(r['name'] for r in vms if r['reboot_required']),
        'diff': {'before': before, 'after': after},
        'warnings': warnings,
        'elapsed': round(time.monotonic() - started, 3),
    }
