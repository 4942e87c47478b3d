# -*- coding: utf-8 -*-
"""vm_info and host_info on the test driver, with JMESPath queries."""

from __future__ import annotations

import pytest

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.info import HOST_FACTS, host_info, vm_info


def test_vm_info_one_all_and_missing(conn):
    assert [vm['name'] for vm in vm_info(conn)['vms']] == ['foreign']
    assert vm_info(conn, 'foreign')['vms'][0]['owned'] is False
    assert vm_info(conn, 'nothing')['vms'] == []


def test_vm_info_query(conn):
    assert vm_info(conn, query='vms[].name')['query_result'] == ['foreign']
    with pytest.raises(FvError, match='query'):
        vm_info(conn, query='vms[?')


def test_host_info(conn):
    facts = host_info(conn, list(HOST_FACTS))
    assert facts['host']['memory_mib'] == 8192
    assert facts['host']['libvirt_version'].count('.') == 2
    assert [n['name'] for n in facts['networks']] == ['lab']
    assert [p['name'] for p in facts['pools']] == ['vms']
    assert facts['pools'][0]['volumes'] == ['base.qcow2']
    assert [d['name'] for d in facts['domains']] == ['foreign']


def test_host_info_gather_and_query(conn):
    facts = host_info(conn, ['pools'], query='pools[].volumes[]')
    assert 'host' not in facts and 'domains' not in facts
    assert facts['query_result'] == ['base.qcow2']
