# -*- coding: utf-8 -*-
"""Fixtures: a libvirt test-driver connection on the project's own node file, and a recording
proxy that proves check mode makes no mutating libvirt call."""

from __future__ import annotations

import os

import libvirt
import pytest

from ansible_collections.firmvisor.hypervisor.plugins.module_utils import _libvirt

NODE = os.path.join(os.path.dirname(__file__), 'fixtures', 'node.xml')

# Methods of libvirt objects that change something.
MUTATING_PREFIXES = ('define', 'create', 'undefine', 'destroy', 'shutdown', 'reboot', 'reset', 'suspend',
                     'resume', 'setAutostart', 'setMemory', 'setVcpus', 'attach', 'detach', 'update',
                     'build', 'delete', 'resize', 'upload', 'wipe', 'setMetadata', 'managedSave')


@pytest.fixture
def conn():
    """A fresh test-driver connection: the node file's state, private to this test."""
    connection = _libvirt.connect('test://' + NODE)
    yield connection
    connection.close()


class Recorder:
    """Wraps a libvirt object; records each mutating call and the objects it hands out."""

    def __init__(self, target, calls):
        self._target = target
        self._calls = calls

    def __getattr__(self, name):
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if name.startswith(MUTATING_PREFIXES):
                self._calls.append(name)
            result = attr(*args, **kwargs)
            return _wrap(result, self._calls)
        return call


def _wrap(value, calls):
    if isinstance(value, (libvirt.virDomain, libvirt.virNetwork, libvirt.virStoragePool,
                          libvirt.virStorageVol, libvirt.virConnect)):
        return Recorder(value, calls)
    if isinstance(value, list):
        return [_wrap(item, calls) for item in value]
    return value


@pytest.fixture
def recording(conn):
    """(proxy connection, list of mutating calls made through it)."""
    calls = []
    return Recorder(conn, calls), calls
