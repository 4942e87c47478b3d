# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt's own checks of what a run will define, made before the host is touched.

A definition is parsed by libvirt's generic parser on a private test-driver connection (an empty
node, defined and undefined there at once): what libvirt would refuse at define time on the host
(a multicast MAC, a size that overflows, a malformed device) is refused before the first change.
Machine types and virtualization types are checked against the host's domain capabilities.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from typing import Any, Dict, Optional, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import error_text, libvirt

_SCRATCH: Dict[str, Any] = {}


def _scratch() -> Any:
    """A test-driver connection with nothing in it, shared by the process."""
    if 'conn' not in _SCRATCH:
        handle, path = tempfile.mkstemp(prefix='firmvisor-validate-', suffix='.xml')
        with os.fdopen(handle, 'w') as node:
            node.write('<node/>\n')
        try:
            _SCRATCH['conn'] = libvirt.open('test://' + path)
        finally:
            os.unlink(path)  # the driver has read it
        atexit.register(_SCRATCH['conn'].close)
    return _SCRATCH['conn']


def define_scratch(kind: str, xml: str) -> None:
    """Define and at once undefine on the scratch test driver: libvirt parses it, or raises."""
    conn = _scratch()
    if kind == 'domain':
        conn.defineXML(xml).undefine()
    elif kind == 'network':
        conn.networkDefineXML(xml).undefine()
    else:
        conn.storagePoolDefineXML(xml, 0).undefine()


class Validation:
    """The checks of one run against one host connection; capabilities are asked once each."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._caps: Dict[Tuple[str, str, str], Any] = {}

    def definition(self, kind: str, xml: str, what: str) -> None:
        """Would libvirt accept this domain / network / pool definition? Its refusal reads as the
        define's would, made before anything changed."""
        try:
            define_scratch(kind, xml)
        except (libvirt.libvirtError, ValueError) as exc:  # ValueError: text libvirt cannot take (a NUL)
            raise FvError('%s: define: %s' % (what, error_text(exc)))

    def machine(self, arch: str, machine: Optional[str], virt_type: str, what: str) -> None:
        """Does the host run ``arch`` guests of ``machine`` type with ``virt_type``?"""
        key = (arch, machine or '', virt_type)
        if key not in self._caps:
            try:
                self._caps[key] = self.conn.getDomainCapabilities(None, arch, machine, virt_type, 0)
            except libvirt.libvirtError as exc:
                self._caps[key] = exc
        found = self._caps[key]
        if isinstance(found, Exception):
            if found.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                return  # a driver without domain capabilities (the test driver): nothing to ask
            reason = error_text(found)
            if machine and 'machine' in reason:
                raise FvError('%s: machine %r: %s' % (what, machine, reason))
            raise FvError('%s: virt_type %s for %s guests: %s' % (what, virt_type, arch, reason))
