# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Desired vs actual: which declared options differ, and writing them into the document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import (
    LIVE, NEXT_BOOT, RESTART, Option,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document

_SEVERITY = {LIVE: 0, NEXT_BOOT: 1, RESTART: 2}


@dataclass
class Difference:
    option: Option
    before: Any
    after: Any

    @property
    def apply(self) -> str:
        return self.option.apply(self.after, self.before)


def desired_values(table: Sequence[Option], params: Dict[str, Any], context: Dict[str, Any]) -> Dict[str, Any]:
    """Declared (non-None) XML options, normalized for comparison."""
    desired = {}
    for opt in table:
        value = params.get(opt.name)
        if value is None or opt.read is None:
            continue
        value = opt.normalize(value, context) if opt.normalize else value
        if value is not None:  # a value that normalizes to None (virt_type: auto) is not compared
            desired[opt.name] = value
    return desired


def compare(table: Sequence[Option], desired: Dict[str, Any], doc: Optional[Document],
            actual_view: Optional[Dict[str, Any]] = None) -> List[Difference]:
    """The declared options whose actual value (None for a new resource) differs. ``actual_view``
    holds values already read from ``doc``."""
    differences = []
    for opt in table:
        if opt.name not in desired:
            continue
        if actual_view is not None and opt.name in actual_view:
            actual = actual_view[opt.name]
        else:
            actual = opt.read(doc) if doc is not None and opt.read else None
        if doc is None or not opt.equal(desired[opt.name], actual):
            differences.append(Difference(opt, actual, desired[opt.name]))
    return differences


def apply(doc: Document, differences: Sequence[Difference]) -> None:
    for difference in differences:
        if difference.option.write is not None:
            difference.option.write(doc, difference.after)


def strongest(differences: Sequence[Difference]) -> Optional[str]:
    """The most disruptive way any of the differences reaches a running resource."""
    if not differences:
        return None
    return max((d.apply for d in differences), key=_SEVERITY.__getitem__)



@dataclass
class Plan:
    """What planning learned about one network or pool: its state and definition as they are,
    what was declared, and how they differ."""
    params: Dict[str, Any]
    obj: Any                                # the libvirt object, None when it does not exist
    doc: Optional[Document] = None          # the current definition
    active: bool = False
    persistent: bool = False
    autostart: bool = False
    desired: Dict[str, Any] = field(default_factory=dict)
    differences: List[Difference] = field(default_factory=list)
    planned: Optional[Document] = None      # the definition after the run

    @property
    def name(self) -> str:
        return self.params['name']

    def read(self, definition: Callable[[Any], Document]) -> None:
        """Fill in the state and the definition of an existing object."""
        if self.obj is not None:
            self.active = bool(self.obj.isActive())
            self.persistent = bool(self.obj.isPersistent())
            self.autostart = bool(self.obj.autostart())
            self.doc = definition(self.obj)
