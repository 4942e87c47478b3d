# -*- coding: utf-8 -*-
"""Fixtures: a libvirt test-driver connection on the project's own node file, and a recording
proxy that proves check mode makes no mutating libvirt call."""

from __future__ import annotations

import os

import pytest
from recording import Recorder

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt import connection as _libvirt

NODE = os.path.join(os.path.dirname(__file__), 'fixtures', 'node.xml')


@pytest.fixture
def conn():
    """A fresh test-driver connection: the node file's state, private to this test."""
    connection = _libvirt.connect('test://' + NODE)
    yield connection
    connection.close()


@pytest.fixture
def recording(conn):
    """(proxy connection, the calls made through it); use recording.mutating(calls)."""
    calls = []
    return Recorder(conn, calls), calls
