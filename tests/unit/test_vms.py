# -*- coding: utf-8 -*-
"""vms: many VMs in one task, defaults, validation before any change, exclusive with and without
a scope, check mode."""

from __future__ import annotations

import pytest
from recording import mutating

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.fleet import reconcile

DEFAULTS = {'memory': '64MiB', 'virt_type': 'qemu', 'interfaces': [{'network': 'lab'}]}


def names(conn):
    return sorted(dom.name() for dom in conn.listAllDomains(0))


def test_many_with_defaults_then_no_change(conn):
    items = [{'name': 'w1'}, {'name': 'w2', 'vcpus': 2}, {'name': 'w3', 'memory': 128}]
    first = reconcile(conn, False, items, DEFAULTS, False)
    assert first['changed'] and [r['name'] for r in first['vms']] == ['w1', 'w2', 'w3']
    assert [r['vm']['memory'] for r in first['vms']] == [64, 64, 128]
    assert first['vms'][1]['vm']['vcpus'] == 2
    assert sorted(first['diff']['after']) == ['w1', 'w2', 'w3']
    second = reconcile(conn, False, items, DEFAULTS, False)
    assert not second['changed'] and second['diff'] == {'before': {}, 'after': {}}
    assert isinstance(second['elapsed'], float)


def test_exclusive_removes_only_owned_and_undeclared(conn):
    reconcile(conn, False, [{'name': 'w1'}, {'name': 'w2'}], DEFAULTS, False)
    result = reconcile(conn, False, [{'name': 'w1'}], DEFAULTS, True)
    assert result['removed'] == ['w2']
    assert names(conn) == ['foreign', 'w1']  # the domain without ownership metadata is never touched


def test_exclusive_within_a_scope_leaves_other_scopes(conn):
    reconcile(conn, False, [{'name': 'a1'}, {'name': 'a2'}], DEFAULTS, False, scope='team-a')
    reconcile(conn, False, [{'name': 'b1'}], DEFAULTS, False, scope='team-b')
    reconcile(conn, False, [{'name': 'loose'}], DEFAULTS, False)
    result = reconcile(conn, False, [{'name': 'a1'}], DEFAULTS, True, scope='team-a')
    assert result['removed'] == ['a2']
    assert names(conn) == ['a1', 'b1', 'foreign', 'loose']
    assert result['vms'][0]['vm']['scope'] == 'team-a'


def test_every_error_reported_and_nothing_changed(recording):
    proxy, calls = recording
    with pytest.raises(FvError) as failure:
        reconcile(proxy, False, [{'name': 'ok'}, {'vcpus': 'two'}, {'name': 'ok'}, {'name': 'x', 'state': 'gone'}],
                  DEFAULTS, False)
    message = str(failure.value)
    assert "vms[1]: missing required arguments: name" in message
    assert "vms[3] (x): value of state must be one of" in message
    assert 'names listed more than once: ok' in message
    assert mutating(calls) == []


def test_a_bad_vm_late_in_the_list_stops_the_whole_task(recording):
    proxy, calls = recording
    with pytest.raises(FvError, match='vm late: memory'):
        reconcile(proxy, False, [{'name': 'early'}, {'name': 'late', 'memory': 'lots'}], DEFAULTS, False)
    assert mutating(calls) == []


def test_check_mode(conn, recording):
    reconcile(conn, False, [{'name': 'w1'}, {'name': 'w2'}], DEFAULTS, False)
    proxy, calls = recording
    result = reconcile(proxy, True, [{'name': 'w1', 'vcpus': 3}, {'name': 'w9'}], DEFAULTS, True)
    assert result['changed'] and result['removed'] == ['w2']
    assert mutating(calls) == [] and names(conn) == ['foreign', 'w1', 'w2']


def test_name_cannot_be_defaulted(conn):
    with pytest.raises(FvError, match='defaults: name'):
        reconcile(conn, False, [{'name': 'x'}], {'name': 'y'}, False)
