# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One declarative option table per resource.

Each :class:`Option` says once how a user option is validated (argspec), how it is read from and
written to the resource's document, how a declared value is compared with the actual one, and how
a change reaches a running resource. The argument spec, the comparison, the planned document and
the diff of every resource all come from its table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document

# How a changed option reaches a running resource.
LIVE = 'live'            # applied to the running resource now
NEXT_BOOT = 'next_boot'  # takes effect when the guest next boots; no restart is forced
RESTART = 'restart'      # the running resource differs from its definition until restarted
_SEVERITY = {LIVE: 0, NEXT_BOOT: 1, RESTART: 2}

Reader = Callable[[Document], Any]
Writer = Callable[[Document, Any], None]
Context = Dict[str, Any]


def _same(desired: Any, actual: Any) -> bool:
    return bool(desired == actual)


def set_or_empty(desired: Any, actual: Any) -> bool:
    """For values where '' declares "not set" (the element or attribute goes away)."""
    return (desired if desired != '' else None) == actual


def _restart(_desired: Any, _actual: Any) -> str:
    return RESTART


@dataclass(frozen=True)
class Option:
    name: str
    type: str = 'str'
    choices: Optional[Sequence[Any]] = None
    elements: Optional[str] = None
    suboptions: Optional[Dict[str, Any]] = None
    no_log: bool = False
    aliases: Sequence[str] = ()
    # Used when the resource is created and the option is not declared; never compared.
    create_default: Any = None
    # Document mapping: None for options that are not part of the document (converged by the
    # resource itself, such as autostart).
    read: Optional[Reader] = None
    write: Optional[Writer] = None
    # Declared value -> comparable value (e.g. "1GiB" -> 1024); gets the resource's context.
    normalize: Optional[Callable[[Any, Context], Any]] = None
    # desired, actual -> equal?
    equal: Callable[[Any, Any], bool] = field(default=_same)
    # desired, actual -> LIVE / NEXT_BOOT / RESTART
    reach: Callable[[Any, Any], str] = field(default=_restart)

    def argspec(self) -> Dict[str, Any]:
        spec: Dict[str, Any] = {'type': self.type}
        if self.choices is not None:
            spec['choices'] = list(self.choices)
        if self.elements is not None:
            spec['elements'] = self.elements
        if self.suboptions is not None:
            spec['options'] = self.suboptions
        if self.no_log:
            spec['no_log'] = True
        if self.aliases:
            spec['aliases'] = list(self.aliases)
        return spec


def argspec(table: Sequence[Option], **extra: Dict[str, Any]) -> Dict[str, Any]:
    """The module argument spec: the table's options plus options that are not compared."""
    spec = {opt.name: opt.argspec() for opt in table}
    spec.update(extra)
    return spec


def text_option(name: str, path: str, type: str = 'str', convert: Callable[[str], Any] = str,
                **kwargs: Any) -> Option:
    """An option stored as an element's text; an empty declared string removes the element."""
    kwargs.setdefault('equal', set_or_empty)

    def read(doc: Document) -> Any:
        value = doc.text(path)
        return None if value is None else convert(value)

    def write(doc: Document, value: Any) -> None:
        doc.set_text(path, None if value in (None, '') else str(value))

    return Option(name=name, type=type, read=read, write=write, **kwargs)


def attr_option(name: str, path: str, attr: str, type: str = 'str', convert: Callable[[str], Any] = str,
                **kwargs: Any) -> Option:
    """An option stored as an attribute."""
    def read(doc: Document) -> Any:
        value = doc.attr(path, attr)
        return None if value is None else convert(value)

    def write(doc: Document, value: Any) -> None:
        doc.set_attr(path, attr, None if value is None else str(value))

    return Option(name=name, type=type, read=read, write=write, **kwargs)


def read_all(table: Sequence[Option], doc: Document) -> Dict[str, Any]:
    """Every document option's actual value."""
    return {opt.name: opt.read(doc) for opt in table if opt.read is not None}


def desired_values(table: Sequence[Option], params: Dict[str, Any], context: Context,
                   creating: bool = False) -> Dict[str, Any]:
    """Declared document options, normalized for comparison; with ``creating``, the create
    defaults of undeclared ones too. A value that normalizes to None (virt_type: auto) is not
    compared."""
    desired = {}
    for opt in table:
        if opt.read is None:
            continue
        value = params.get(opt.name)
        if value is None and creating:
            value = opt.create_default
        if value is None:
            continue
        value = opt.normalize(value, context) if opt.normalize else value
        if value is not None:
            desired[opt.name] = value
    return desired


@dataclass(frozen=True)
class Change:
    """One declared option whose actual value differs."""
    option: Option
    before: Any
    after: Any

    @property
    def name(self) -> str:
        return self.option.name

    @property
    def reach(self) -> str:
        return self.option.reach(self.after, self.before)


def compare(table: Sequence[Option], desired: Dict[str, Any], actual: Optional[Dict[str, Any]]) -> List[Change]:
    """The declared options whose actual value (all of them for a new resource) differs."""
    changes = []
    for opt in table:
        if opt.name not in desired:
            continue
        value = None if actual is None else actual.get(opt.name)
        if actual is None or not opt.equal(desired[opt.name], value):
            changes.append(Change(opt, value, desired[opt.name]))
    return changes


def write(doc: Document, changes: Sequence[Change]) -> None:
    """Write the changes into ``doc`` (a copy the caller owns)."""
    for change in changes:
        if change.option.write is not None:
            change.option.write(doc, change.after)


def planned_document(base: Document, changes: Sequence[Change], what: str, fresh: bool = False) -> Document:
    """A copy of ``base`` with the changes written: the definition as it will be (``base`` itself
    when nothing changes, and written in place when it is ``fresh``, a skeleton no one else holds:
    plans never edit a document they read)."""
    if not changes:
        return base
    doc = base if fresh else base.copy()
    try:
        write(doc, changes)
    except FvError as exc:
        raise FvError('%s: %s' % (what, exc))
    return doc


def strongest(changes: Sequence[Change]) -> Optional[str]:
    """The most disruptive way any of the changes reaches a running resource."""
    if not changes:
        return None
    return max((c.reach for c in changes), key=_SEVERITY.__getitem__)


def public(value: Any) -> Any:
    """A value as the user sees it: internal (underscore) keys of list items dropped."""
    if isinstance(value, list):
        return [{k: v for k, v in item.items() if not k.startswith('_') and v is not None}
                if isinstance(item, dict) else item for item in value]
    return value


def names(changes: Sequence[Change]) -> List[str]:
    return [c.name for c in changes]
