# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Many domains in one task: one connection, one domain listing, every spec validated first."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Optional, Tuple

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import CONNECTION_ARGSPEC, flag, mapped
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain import OWNER, VM_ARGSPEC, VmService
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document

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


def bulk_facts(conn: Any) -> Dict[str, Tuple[int, bool]]:
    """(state, autostart) of every domain in two calls, instead of two per domain."""
    try:
        states = {dom.name(): stats['state.state']
                  for dom, stats in conn.getAllDomainStats(flag('VIR_DOMAIN_STATS_STATE'), 0)}
        autostarted = {dom.name() for dom in conn.listAllDomains(flag('VIR_CONNECT_LIST_DOMAINS_AUTOSTART'))}
    except Exception:  # a driver without bulk stats: the service reads each domain itself
        return {}
    return {name: (state, name in autostarted) for name, state in states.items()}


def reconcile(conn: Any, check_mode: bool, items: List[Dict[str, Any]], defaults: Dict[str, Any],
              exclusive: bool, scope: Optional[str] = None) -> Dict[str, Any]:
    started = time.monotonic()
    specs = merged_specs(items, defaults, scope)
    service = VmService(conn, check_mode)
    with mapped('listing domains'):
        domains = {dom.name(): dom for dom in conn.listAllDomains(0)}
        facts = bulk_facts(conn)
    # Plan everything before changing anything: a bad spec fails the task with the host untouched.
    plans = [service.prepare(spec, domains.get(spec['name']), known=True, facts=facts.get(spec['name']))
             for spec in specs]
    if exclusive:
        declared = {spec['name'] for spec in specs}
        for name in sorted(set(domains) - declared):
            with mapped('domain %r' % name):
                doc = Document(domains[name].XMLDesc(flag('VIR_DOMAIN_XML_INACTIVE')))
            if doc.owner() == OWNER and (scope is None or doc.get_meta('scope') == scope):
                removal = dict(VM_ITEM_DEFAULTS, name=name, state='absent', remove_volumes=False)
                plans.append(service.prepare(removal, domains[name], known=True))
    results, before, after, warnings = [], {}, {}, []
    for plan in plans:
        result = service.converge(plan)
        warnings.extend('%s: %s' % (plan.name, w) for w in result.pop('warnings'))
        diff = result.pop('diff')
        if result['changed']:
            before[plan.name], after[plan.name] = diff['before'], diff['after']
        results.append(dict(result, name=plan.name))
    return {
        'changed': any(r['changed'] for r in results),
        'vms': results,
        'removed': [p.name for p, r in zip(plans, results) if r['changed'] and p.params['state'] == 'absent'],
        'reboot_required': sorted(r['name'] for r in results if r['reboot_required']),
        'diff': {'before': before, 'after': after},
        'warnings': warnings,
        'elapsed': round(time.monotonic() - started, 3),
    }

