# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a resource is and what a run will do to it: the actual object as read, and the plan.

A :class:`Plan` is a value: made once from the actual object and the declared spec, never changed
while it is carried out. Its actions say what they do (for ``actions`` and check mode), how to do
it and, where it can be reversed, how to undo it should a later step of the same run fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import Change, names
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document

ABSENT: Mapping[str, Any] = {'state': 'absent'}


@dataclass
class Actual:
    """A resource as it is: its object, definition, the table's values and its runtime facts."""
    obj: Any
    doc: Optional[Document] = None
    values: Dict[str, Any] = field(default_factory=dict)
    runtime: Dict[str, Any] = field(default_factory=dict)


class Handle:
    """The object an action works on, which an earlier action of the same run may create
    (``define`` returns the object that ``start`` then starts)."""

    def __init__(self, obj: Any = None) -> None:
        self.obj = obj

    def call(self, method: str, *args: Any) -> Callable[[], Any]:
        """A step that calls ``method`` on the object the handle holds when the step runs."""
        return lambda: getattr(self.obj, method)(*args)


@dataclass(frozen=True)
class Note:
    """What a step that went on says about itself: a warning, and whether its change waits for
    the next restart (a device the guest did not let go of)."""
    text: str
    pending: bool = False


@dataclass(frozen=True)
class Action:
    """One step of a plan. ``run`` may return a :class:`Note`; the run goes on."""
    description: str
    run: Callable[[], Optional[Note]]
    undo: Optional[Callable[[], Any]] = None
    undo_description: str = ''


@dataclass(frozen=True)
class Plan:
    resource: Any                     # the Resource that made the plan and reads it back
    key: Any                          # the resource's identity: a name, (pool, name), ...
    what: str                         # how messages name it: "vm web1"
    before: Mapping[str, Any]         # the view as read (ABSENT when it does not exist)
    after: Mapping[str, Any]          # the view as planned
    shown: Tuple[str, ...]            # the view keys the diff shows (declared options and state)
    desired: Mapping[str, Any] = field(default_factory=dict)   # normalized declared table values
    runtime: Mapping[str, Any] = field(default_factory=dict)   # declared runtime facts (state...)
    changes: Tuple[Change, ...] = ()
    actions: Tuple[Action, ...] = ()
    children: Tuple['Plan', ...] = ()  # plans carried out first (a VM's volumes)
    warnings: Tuple[str, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)     # resource-specific result keys

    @property
    def descriptions(self) -> Tuple[str, ...]:
        """Every action of the plan and its children, in the order they run."""
        return tuple(d for child in self.children for d in child.descriptions) + \
            tuple(a.description for a in self.actions)

    @property
    def reaches(self) -> Dict[str, str]:
        """Each changed option and how it reaches a running resource."""
        return {c.name: c.reach for c in self.changes}

    def changed_options(self) -> Sequence[str]:
        return names(self.changes)


def side(view: Mapping[str, Any], shown: Sequence[str]) -> Dict[str, Any]:
    """One side of a diff: the shown keys of a view that have a value (a missing resource is only
    its state)."""
    if view.get('state') == 'absent':
        return dict(ABSENT)
    return {key: view[key] for key in shown if view.get(key) is not None}
