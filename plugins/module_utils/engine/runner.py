# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one lifecycle every resource goes through.

    read the actual objects -> plan each (validating everything) -> check mode stops here
    -> carry out every plan (undoing this run's steps if a later one fails) -> read back
    -> result: ``changed`` and ``diff`` from the real before and the object read back after

A resource declares only what is its own (:class:`Resource`): its option table, how to read it,
how to plan it, and its view. Many specs of one resource (``vms``) go through the same lifecycle
together: all are planned before any is changed, so one bad spec changes nothing.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import Option, compare
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import ABSENT, Action, Actual, Note, Plan, side
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.waiter import Waiter, waiter_for


class Resource:
    """What a resource declares. Subclasses set ``noun`` and ``table`` and implement ``read``,
    ``plan`` and ``view``; ``result`` adds the module's own result keys."""
    noun = 'resource'
    table: Sequence[Option] = ()

    def __init__(self, check_mode: bool = False, waiter: Optional[Waiter] = None) -> None:
        self.check_mode = check_mode
        self.waiter = waiter or waiter_for(check_mode)

    def key(self, params: Mapping[str, Any]) -> Any:
        return params['name']

    def read(self, keys: Sequence[Any]) -> Dict[Any, Optional[Actual]]:
        """The actual objects (None: it does not exist), read in as few calls as the API allows."""
        raise NotImplementedError

    def plan(self, params: Mapping[str, Any], actual: Optional[Actual]) -> Plan:
        """Validate the spec against what it refers to and plan; never changes anything."""
        raise NotImplementedError

    def view(self, key: Any, actual: Optional[Actual]) -> Dict[str, Any]:
        """The resource as results, diffs and info modules show it."""
        raise NotImplementedError

    def result(self, plan: Plan, view: Mapping[str, Any], notes: Sequence[Note]) -> Dict[str, Any]:
        """The module's own result keys, from the plan and the resource as it is after the run."""
        return {}


@contextmanager
def gc_paused() -> Iterator[None]:
    """A run builds many small objects (a parsed definition per domain) that all live until it
    ends; the cyclic collector would scan them over and over (measured: 3.5 times the parse time of
    1000 domains). Nothing here makes cycles worth collecting before the run ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def plan_all(resource: Resource, specs: Sequence[Mapping[str, Any]]) -> List[Plan]:
    """Plan every spec; every bad one is named in one error, before anything changes."""
    with gc_paused():
        return _plan_all(resource, specs)


def _plan_all(resource: Resource, specs: Sequence[Mapping[str, Any]]) -> List[Plan]:
    actuals = resource.read([resource.key(spec) for spec in specs])
    plans, errors = [], []
    for spec in specs:
        try:
            plans.append(resource.plan(spec, actuals.get(resource.key(spec))))
        except FvError as exc:
            errors.append(str(exc))
    if errors:
        raise FvError('; '.join(errors))
    return plans


def _steps(plan: Plan) -> Iterator[Tuple[Plan, Action]]:
    for child in plan.children:
        yield from _steps(child)
    for action in plan.actions:
        yield plan, action


def carry_out(plans: Sequence[Plan]) -> Dict[int, List[Note]]:
    """Run every action of every plan in order; return the notes of steps that wait for a
    restart, by plan. When a step fails, what this run did is undone, newest first, and the error
    says what was done, what was undone and what could not be."""
    notes: Dict[int, List[Note]] = {}
    done: List[Action] = []
    for plan in plans:
        for owner, action in _steps(plan):
            try:
                note = action.run()
            except Exception as exc:
                raise _undone(exc, owner, done)
            if note:
                notes.setdefault(id(owner), []).append(note)
            done.append(action)
    return notes


def _undone(exc: Exception, failed: Plan, done: Sequence[Action]) -> Exception:
    undone, stuck = [], []
    for action in reversed(done):
        if action.undo is None:
            continue
        try:
            action.undo()
            undone.append(action.undo_description or 'undo: %s' % action.description)
        except Exception as undo_exc:  # report it, go on undoing the rest
            stuck.append('%s (%s)' % (action.undo_description or action.description, undo_exc))
    if not isinstance(exc, FvError):
        return exc  # a bug, not a refusal: its traceback matters more than a message
    message = str(exc)
    if not message.startswith(failed.what):
        message = '%s: %s' % (failed.what, message)
    kept = [a.description for a in done if a.undo is None]
    if undone:
        message += '; undone: ' + ', '.join(undone)
    if stuck:
        message += '; could not undo: ' + ', '.join(stuck)
    if kept:
        message += '; done and kept: ' + ', '.join(kept)
    return FvError(message, **exc.details)


def _read_back(plans: Sequence[Plan]) -> Dict[int, Optional[Actual]]:
    """The actual objects after the run, for every plan (and child) that did something."""
    by_resource: Dict[int, Tuple[Resource, List[Plan]]] = {}

    def collect(plan: Plan) -> None:
        for child in plan.children:
            collect(child)
        if plan.descriptions:
            by_resource.setdefault(id(plan.resource), (plan.resource, []))[1].append(plan)

    for plan in plans:
        collect(plan)
    result: Dict[int, Optional[Actual]] = {}
    for resource, group in by_resource.values():
        actuals = resource.read([plan.key for plan in group])
        for plan in group:
            result[id(plan)] = actuals.get(plan.key)
    return result


def _leftovers(plan: Plan, actual: Optional[Actual]) -> List[str]:
    """What the run meant to make true and the object read back does not show."""
    if plan.after.get('state') == 'absent':
        return [] if actual is None else ['%s: it still exists after the run' % plan.what]
    if actual is None:
        return ['%s: it does not exist after the run' % plan.what]
    problems = ['%s: after the run, %s reads %r where %r was declared' % (plan.what, c.name, c.before, c.after)
                for c in compare(plan.resource.table, dict(plan.desired), actual.values)]
    problems += ['%s: after the run, %s is %r where %r was declared' % (plan.what, key, actual.runtime.get(key), value)
                 for key, value in plan.runtime.items() if actual.runtime.get(key) != value]
    return problems


def _outcome(plan: Plan, check_mode: bool, after_actuals: Dict[int, Optional[Actual]],
             notes: Dict[int, List[Note]]) -> Tuple[Dict[str, Any], bool]:
    """(the plan's result, whether it changed anything)."""
    children_changed = False
    warnings: List[str] = []
    for child in plan.children:
        child_result, child_changed = _outcome(child, check_mode, after_actuals, notes)
        children_changed = children_changed or child_changed
        warnings += child_result['warnings']
    warnings += plan.warnings
    if check_mode or not plan.descriptions:
        after = plan.after if check_mode else plan.before
    else:
        actual = after_actuals.get(id(plan))
        after = plan.resource.view(plan.key, actual) if actual is not None else dict(ABSENT)
        warnings += _leftovers(plan, actual)
    own_notes = notes.get(id(plan), [])
    diff = {'before': side(plan.before, plan.shown), 'after': side(after, plan.shown)}
    changed = diff['before'] != diff['after'] or children_changed
    result: Dict[str, Any] = {'changed': changed, 'actions': list(plan.descriptions), 'diff': diff,
                              'warnings': warnings + [note.text for note in own_notes]}
    result.update(plan.facts)
    result.update(plan.resource.result(plan, after, own_notes))
    return result, changed


def converge(resource: Resource, specs: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The whole lifecycle for many specs of one resource; one result per spec."""
    return execute(plan_all(resource, specs), resource.check_mode)


def execute(plans: Sequence[Plan], check_mode: bool) -> List[Dict[str, Any]]:
    """Carry out planned plans (not in check mode), read back and report."""
    with gc_paused():
        notes = {} if check_mode else carry_out(plans)
        after_actuals = {} if check_mode else _read_back(plans)
        return [_outcome(plan, check_mode, after_actuals, notes)[0] for plan in plans]


def converge_one(resource: Resource, params: Mapping[str, Any]) -> Dict[str, Any]:
    return converge(resource, [params])[0]
