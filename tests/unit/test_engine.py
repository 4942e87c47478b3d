# -*- coding: utf-8 -*-
"""The engine's lifecycle on an in-memory resource: plan, check mode, carry out with undo, read
back, changed and diff from the real before and after, and the read-back check."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import pytest

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError, FvTimeout
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import (
    Option, compare, desired_values,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import (
    ABSENT, Action, Actual, Note, Plan,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import Resource, converge
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.waiter import NoWait, Waiter

TABLE = [Option('size', type='int', read=lambda values: values.get('size'))]


class Store(Resource):
    """Named sizes in a dict; ``broken`` names keys whose write fails, ``lossy`` keys that are
    written as something else than asked."""
    noun = 'item'
    table = TABLE

    def __init__(self, data: Dict[str, int], check_mode: bool = False, broken: Sequence[str] = (),
                 lossy: Sequence[str] = ()) -> None:
        super().__init__(check_mode)
        self.data, self.broken, self.lossy, self.calls = data, broken, lossy, []  # type: ignore[var-annotated]

    def read(self, keys: Sequence[Any]) -> Dict[Any, Optional[Actual]]:
        self.calls.append(('read', tuple(keys)))
        return {k: Actual(k, None, {'size': self.data[k]}) if k in self.data else None for k in keys}

    def view(self, key: Any, actual: Optional[Actual]) -> Dict[str, Any]:
        return dict(ABSENT) if actual is None else {'name': key, 'size': actual.values['size'], 'state': 'present'}

    def plan(self, params: Mapping[str, Any], actual: Optional[Actual]) -> Plan:
        name = params['name']
        if params['size'] < 0:
            raise FvError('item %s: size must not be negative' % name)
        desired = desired_values(self.table, {'size': params['size']}, {})
        changes = compare(self.table, desired, actual.values if actual else None)
        previous = actual.values['size'] if actual else None
        actions = []
        if changes:
            def run() -> Optional[Note]:
                self.calls.append(('write', name))
                if name in self.broken:
                    raise FvError('item %s: write: disk full' % name)
                self.data[name] = params['size'] + (1 if name in self.lossy else 0)
                return Note('item %s written slowly' % name) if params.get('slow') else None

            def undo() -> None:
                self.calls.append(('undo', name))
                if previous is None:
                    del self.data[name]
                else:
                    self.data[name] = previous
            actions.append(Action('write %s' % name, run, undo, 'restore %s' % name))
        return Plan(self, name, 'item %s' % name, self.view(name, actual),
                    {'name': name, 'size': params['size'], 'state': 'present'}, ('size', 'state'),
                    desired=desired, changes=tuple(changes), actions=tuple(actions))


def test_plan_apply_read_back_then_no_change():
    store = Store({'a': 1})
    first = converge(store, [{'name': 'a', 'size': 2}, {'name': 'b', 'size': 3}])
    assert [r['changed'] for r in first] == [True, True]
    assert first[0]['diff'] == {'before': {'size': 1, 'state': 'present'}, 'after': {'size': 2, 'state': 'present'}}
    assert first[1]['diff']['before'] == {'state': 'absent'}
    assert store.calls[-1] == ('read', ('a', 'b'))  # one read back, in bulk
    again = converge(store, [{'name': 'a', 'size': 2}, {'name': 'b', 'size': 3}])
    assert [r['changed'] for r in again] == [False, False] and again[0]['actions'] == []
    assert store.calls[-1] == ('read', ('a', 'b'))  # nothing done, nothing read back


def test_check_mode_runs_no_action_and_reports_the_plan():
    store = Store({'a': 1}, check_mode=True)
    result = converge(store, [{'name': 'a', 'size': 5}])[0]
    assert result['changed'] and result['actions'] == ['write a']
    assert result['diff']['after'] == {'size': 5, 'state': 'present'}
    assert store.data == {'a': 1} and [c[0] for c in store.calls] == ['read']


def test_every_bad_spec_is_named_and_nothing_changes():
    store = Store({})
    with pytest.raises(FvError) as failure:
        converge(store, [{'name': 'a', 'size': -1}, {'name': 'b', 'size': 1}, {'name': 'c', 'size': -2}])
    assert 'item a: size must not be negative' in str(failure.value)
    assert 'item c: size must not be negative' in str(failure.value)
    assert store.data == {} and [c[0] for c in store.calls] == ['read']


def test_a_failed_step_undoes_this_runs_steps_newest_first():
    store = Store({'a': 1}, broken=['c'])
    with pytest.raises(FvError) as failure:
        converge(store, [{'name': 'a', 'size': 2}, {'name': 'b', 'size': 3}, {'name': 'c', 'size': 4}])
    assert store.data == {'a': 1}
    assert [c for c in store.calls if c[0] == 'undo'] == [('undo', 'b'), ('undo', 'a')]
    assert str(failure.value) == 'item c: write: disk full; undone: restore b, restore a'


def test_what_reads_back_differently_than_declared_is_warned_about():
    result = converge(Store({}, lossy=['a']), [{'name': 'a', 'size': 2}])[0]
    assert result['warnings'] == ["item a: after the run, size reads 3 where 2 was declared"]
    assert result['diff']['after'] == {'size': 3, 'state': 'present'}  # the real after, not the plan


def test_notes_of_steps_become_warnings():
    result = converge(Store({}), [{'name': 'a', 'size': 2, 'slow': True}])[0]
    assert result['warnings'] == ['item a written slowly']


def test_waiter_names_what_it_waited_for_and_no_wait_never_polls():
    now = [0.0]
    waiter = Waiter(clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    with pytest.raises(FvTimeout, match='timed out after 2s waiting for the thing to be ready'):
        waiter.wait(lambda: False, 2, 'the thing to be ready')
    assert waiter.wait(lambda: 'yes', 2, 'x') == 'yes'
    polled: List[int] = []
    assert NoWait().wait(lambda: polled.append(1), 2, 'x') and polled == []


def test_waiter_reports_progress_on_long_waits():
    now, lines = [0.0], []
    waiter = Waiter(clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s), progress=lines.append)
    values = iter([False] * 200 + [True])
    waiter.wait(lambda: next(values), 100, 'the server to boot', interval=0.5, report_every=30)
    assert lines and lines[0].startswith('still waiting for the server to boot (30s of 100s)')
