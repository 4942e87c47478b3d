# -*- coding: utf-8 -*-
"""A recording proxy around libvirt objects: proves check mode makes no mutating call, and lets a
test replace calls the test driver cannot make."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

import libvirt

# Method names that change something. (A pool refresh only rereads the pool's directory.)
MUTATING = re.compile(r'define|create|destroy|undefine|shutdown|reboot|reset|suspend|resume|setautostart|'
                      r'setmemory|setvcpus|update|build|delete|resize|upload|wipe|attach|detach|setmetadata|'
                      r'managedsave', re.IGNORECASE)
LIBVIRT_OBJECTS = (libvirt.virConnect, libvirt.virNetwork, libvirt.virStoragePool, libvirt.virStorageVol,
                   libvirt.virDomain)


class Stream:
    """The test driver cannot upload into a volume: a stream that takes everything."""

    def sparseSendAll(self, *_args):
        pass

    def finish(self):
        pass

    def abort(self):
        pass


# Recorder(conn, calls, fake=UPLOADS): volumes made from a local source "upload" on the test driver.
UPLOADS = {'upload': lambda *args: 0, 'newStream': lambda flags: Stream()}


class Recorder:
    """Wraps a libvirt object (and the objects it returns), recording every call.

    ``strict`` makes any mutating call fail, which proves check mode cannot change anything;
    ``fake`` replaces named calls (for what the test driver cannot do).
    """

    def __init__(self, target: Any, calls: List[tuple], strict: bool = False,
                 fake: Optional[Dict[str, Any]] = None) -> None:
        self._target, self._calls, self._strict, self._fake = target, calls, strict, fake or {}

    def __getattr__(self, name: str) -> Any:
        attr = self._fake.get(name) or getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((name,) + args)
            if self._strict and MUTATING.search(name):
                raise AssertionError('mutating libvirt call %s%r in check mode' % (name, args))
            return self._wrap(attr(*args, **kwargs))
        return call

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, LIBVIRT_OBJECTS):
            return Recorder(value, self._calls, self._strict, self._fake)
        if isinstance(value, list):
            return [self._wrap(item) for item in value]
        return value


def mutating(calls: List[tuple]) -> List[tuple]:
    return [call for call in calls if MUTATING.search(call[0])]


def view_of(resource: Any, key: Any) -> Dict[str, Any]:
    """A resource's view as its module shows it, read afresh."""
    return resource.view(key, resource.read([key])[key])
