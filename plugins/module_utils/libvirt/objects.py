# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lifecycle of a defined libvirt object with an active flag and autostart: networks and
storage pools.

States: ``present`` (defined; a new one is started, an existing one keeps its state), ``active``,
``inactive`` and ``absent``. A definition is edited in place. A change an active object cannot
take live needs it stopped, redefined and started again: done only with ``recreate``; otherwise
the resource either refuses (``refuse_without_recreate``) or applies what it can live and reports
the rest as ``recreate_required``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import (
    LIVE, Change, compare, desired_values, names, planned_document, public, read_all,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import (
    ABSENT, Action, Actual, Handle, Note, Plan,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import Resource
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import mapped, persistent_xml
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.validation import Validation

STATES = ('present', 'active', 'inactive', 'absent')


def autostart_action(handle: Handle, label: str, wanted: bool, before: bool) -> Action:
    """Set the object's autostart flag (undone by setting it back)."""
    return Action('set autostart of %s to %s' % (label, wanted), handle.call('setAutostart', int(wanted)),
                  handle.call('setAutostart', int(before)), 'reset autostart of %s' % label)


def defined_view(key: Any, actual: Actual) -> Dict[str, Any]:
    """A libvirt object as results and info modules show it: its table's values, its runtime facts,
    its name and whether this collection made it."""
    result = {name: public(value) for name, value in actual.values.items()}
    result.update(actual.runtime)
    result.update(name=key, owned=actual.doc.owned())
    return result


class DefinedObject(Resource):
    """A network or storage pool. Subclasses give the table and their own libvirt calls."""
    kind = ''                          # 'network' / 'pool', for libvirt's validation
    inactive_flag = ''                 # XMLDesc flag of the persistent definition
    refuse_without_recreate = False

    def __init__(self, conn: Any, check_mode: bool = False) -> None:
        super().__init__(check_mode)
        self.conn = conn
        self.validation = Validation(conn)

    # ---- the resource's own calls -----------------------------------------------------------------
    def lookup(self, name: str) -> Any:
        raise NotImplementedError

    def define(self, doc: Document) -> Any:
        raise NotImplementedError

    def start(self, obj: Any) -> None:
        obj.create()

    def new_document(self, name: str) -> Document:
        raise NotImplementedError

    def runtime(self, obj: Any, active: bool) -> Dict[str, Any]:
        """Runtime facts beyond active, persistent and autostart (a pool's sizes)."""
        return {}

    def validate(self, params: Mapping[str, Any], desired: Mapping[str, Any], doc: Document) -> None:
        """Check the definition as it will be (declared values over the actual ones)."""

    def settle(self, params: Mapping[str, Any], desired: Dict[str, Any], actual: Optional[Actual]) -> None:
        """Defaults that depend on what exists (a network's prefix for a new address)."""

    def withheld(self, changes: Sequence[Change]) -> Tuple[Change, ...]:
        """Of an active object's changes, those it cannot take without a recreate."""
        return tuple(c for c in changes if c.reach != LIVE)

    def live_actions(self, handle: Handle, actual: Actual, changes: Sequence[Change], active: bool) -> List[Action]:
        """Actions that apply LIVE changes to the definition (and to the running object if active)."""
        return []

    def built(self, handle: Handle, doc: Document) -> List[Action]:
        """Actions right after a (re)definition, before the start (a pool's build)."""
        return []

    def removal(self, handle: Handle, params: Mapping[str, Any],
                actual: Actual) -> Tuple[List[Action], List[Action], bool]:
        """Extra actions of a removal: (before the stop, after the stop, whether the first ones
        leave the object active)."""
        return [], [], False

    # ---- the shared lifecycle -----------------------------------------------------------------------
    def what(self, name: str) -> str:
        return '%s %r' % (self.noun, name)

    def read(self, keys: Sequence[Any]) -> Dict[Any, Optional[Actual]]:
        result: Dict[Any, Optional[Actual]] = {}
        for name in keys:
            obj = self.lookup(name)
            if obj is None:
                result[name] = None
                continue
            with mapped(self.what(name)):
                doc = Document(persistent_xml(obj, self.inactive_flag))
                active = bool(obj.isActive())
                runtime = {'active': active, 'persistent': bool(obj.isPersistent()),
                           'autostart': bool(obj.autostart()), 'uuid': obj.UUIDString()}
                runtime.update(self.runtime(obj, active))
            result[name] = Actual(obj, doc, read_all(self.table, doc), runtime)
        return result

    def view(self, key: Any, actual: Optional[Actual]) -> Dict[str, Any]:
        if actual is None:
            return dict(ABSENT)
        return dict(defined_view(key, actual), state='active' if actual.runtime['active'] else 'inactive')

    def plan(self, params: Mapping[str, Any], actual: Optional[Actual]) -> Plan:
        name = params['name']
        what = self.what(name)
        handle = Handle(actual.obj if actual is not None else None)
        if params['state'] == 'absent':
            return self._removal(params, actual, handle)
        try:
            desired = desired_values(self.table, params, {'name': name}, creating=actual is None)
            self.settle(params, desired, actual)
        except FvError as exc:
            raise FvError('%s: %s' % (what, exc))
        changes = compare(self.table, desired, actual.values if actual is not None else None)
        base = actual.doc if actual is not None else self.new_document(name)
        planned = planned_document(base, changes, what, fresh=actual is None)
        self.validate(params, desired, planned)
        if changes:
            self.validation.definition(self.kind, planned.tostring(), what)

        actions: List[Action] = []
        warnings: List[str] = []
        facts: Dict[str, Any] = {'recreate_required': False}
        active = actual is not None and actual.runtime['active']
        applied = changes
        if actual is None:
            actions.append(self._define(handle, planned, 'define %s %s' % (self.noun, name), undefine=True))
            actions += self.built(handle, planned)
        else:
            if not actual.runtime['persistent']:
                actions.append(self._define(handle, actual.doc, 'make %s %s persistent' % (self.noun, name)))
            if params['state'] == 'inactive' and active:
                actions.append(self._stop(handle, name))
                active = False
            structural = self.withheld(changes)
            if changes and not active:
                if structural:
                    actions.append(self._define(handle, planned, 'update %s %s' % (self.noun, name), actual.doc))
                else:
                    actions += self.live_actions(handle, actual, changes, False)
            elif changes and not structural:
                actions += self.live_actions(handle, actual, changes, True)
            elif changes and params.get('recreate'):
                actions += self._recreate(handle, name, planned, actual.doc)
            elif changes and self.refuse_without_recreate:
                raise FvError(
                    '%s is active: changing %s needs it stopped and redefined; set recreate=true to stop, redefine '
                    'and start it again, or state=inactive to leave it stopped'
                    % (what, ', '.join('%s from %r to %r' % (c.name, c.before, c.after) for c in changes)))
            elif changes:
                facts['recreate_required'] = True
                warnings.append('%s is active: changing %s needs it stopped and started again (guests on it lose '
                                'their link meanwhile); not done: set recreate=true to do it'
                                % (what, ', '.join(names(structural))))
                applied = tuple(c for c in changes if c not in structural)
                planned = planned_document(actual.doc, applied, what)
                actions += self.live_actions(handle, actual, applied, True)

        autostart = params.get('autostart')
        if autostart is not None and (actual is None or autostart != actual.runtime['autostart']):
            before = actual.runtime['autostart'] if actual is not None else False
            actions.append(autostart_action(handle, '%s %s' % (self.noun, name), autostart, before))
        if (params['state'] == 'active' or (params['state'] == 'present' and actual is None)) and not active:
            actions.append(self._start(handle, name))
            active = True

        runtime = dict(actual.runtime) if actual is not None else {'uuid': None}
        runtime.update(active=active, persistent=True,
                       autostart=autostart if autostart is not None else runtime.get('autostart', False))
        shown = tuple(desired) + ('state',) + (('autostart',) if autostart is not None else ())
        if actual is not None and not actual.runtime['persistent']:
            shown += ('persistent',)
        withheld = set(names(changes)) - set(names(applied))
        return Plan(
            resource=self, key=name, what=what,
            before=self.view(name, actual),
            after=self.view(name, Actual(handle.obj, planned, read_all(self.table, planned), runtime)),
            shown=shown, desired={k: v for k, v in desired.items() if k not in withheld},
            runtime={'active': active, 'autostart': runtime['autostart']},
            changes=tuple(changes), actions=tuple(actions), warnings=tuple(warnings), facts=facts)

    def _removal(self, params: Mapping[str, Any], actual: Optional[Actual], handle: Handle) -> Plan:
        name = params['name']
        if actual is None:
            return Plan(resource=self, key=name, what=self.what(name), before=dict(ABSENT), after=dict(ABSENT),
                        shown=('state',), facts={'recreate_required': False})
        first, then, started = self.removal(handle, params, actual)
        actions = list(first)
        if actual.runtime['active'] or started:
            actions.append(self._stop(handle, name))
        actions += then
        if actual.runtime['persistent']:
            actions.append(Action('undefine %s %s' % (self.noun, name), handle.call('undefine')))
        return Plan(resource=self, key=name, what=self.what(name), before=self.view(name, actual),
                    after=dict(ABSENT), shown=('state',), actions=tuple(actions), facts={'recreate_required': False})

    # ---- actions ------------------------------------------------------------------------------------
    def _define(self, handle: Handle, doc: Document, description: str, previous: Optional[Document] = None,
                undefine: bool = False) -> Action:
        name = doc.text('name')

        def run() -> None:
            with mapped('%s: define' % self.what(name)):
                handle.obj = self.define(doc)

        def undo() -> None:
            if undefine:
                handle.obj.undefine()
            elif previous is not None:
                handle.obj = self.define(previous)
        if undefine:
            return Action(description, run, undo, 'undefine %s %s' % (self.noun, name))
        if previous is not None:
            return Action(description, run, undo, 'restore the definition of %s %s' % (self.noun, name))
        return Action(description, run)

    def _start(self, handle: Handle, name: str, description: str = '') -> Action:
        def run() -> None:
            with mapped('%s: start' % self.what(name)):
                self.start(handle.obj)
        return Action(description or 'start %s %s' % (self.noun, name), run, handle.call('destroy'),
                      'stop %s %s' % (self.noun, name))

    def _stop(self, handle: Handle, name: str, description: str = '') -> Action:
        def run() -> None:
            with mapped('%s: stop' % self.what(name)):
                handle.obj.destroy()
        return Action(description or 'stop %s %s' % (self.noun, name), run, lambda: self.start(handle.obj),
                      'start %s %s again' % (self.noun, name))

    def _recreate(self, handle: Handle, name: str, planned: Document, previous: Document) -> List[Action]:
        prefix = 'recreate %s %s: ' % (self.noun, name)
        return ([self._stop(handle, name, prefix + 'stop'), self._define(handle, planned, prefix + 'define', previous)]
                + self.built(handle, planned) + [self._start(handle, name, prefix + 'start')])

    def result(self, plan: Plan, view: Mapping[str, Any], notes: Sequence[Note]) -> Dict[str, Any]:
        return {self.result_key: {} if view.get('state') == 'absent' else dict(view)}

    result_key = ''
