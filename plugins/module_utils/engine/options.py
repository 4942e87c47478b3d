# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One declarative option table per resource.

Each :class:`Option` says once how a user option is validated (argspec), how it is read from and
written to the resource's libvirt XML, how a declared value is compared with the actual one, and
how a change reaches a running resource. Modules, comparison, diff and the info modules all use
the same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document

# How a changed option reaches a running resource.
LIVE = 'live'            # applied to the running resource now
NEXT_BOOT = 'next_boot'  # takes effect when the guest next boots; no restart is forced
RESTART = 'restart'      # the running resource differs from its definition until restarted

Reader = Callable[[Document], Any]
Writer = Callable[[Document, Any], None]


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
    # XML mapping: None for options that are not part of the XML (handled by the service).
    read: Optional[Reader] = None
    write: Optional[Writer] = None
    # Declared value -> comparable value (e.g. "1GiB" -> 1024); gets the service's context.
    normalize: Optional[Callable[[Any, Dict[str, Any]], Any]] = None
    # desired, actual -> equal?
    equal: Callable[[Any, Any], bool] = field(default=lambda desired, actual: desired == actual)
    # desired, actual -> LIVE / NEXT_BOOT / RESTART
    apply: Callable[[Any, Any], str] = field(default=lambda desired, actual: RESTART)

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
    def read(doc: Document) -> Any:
        value = doc.text(path)
        return None if value is None else convert(value)

    def write(doc: Document, value: Any) -> None:
        doc.set_text(path, None if value in (None, '') else str(value))

    return Option(name=name, type=type, read=read, write=write, **kwargs)


def attr_option(name: str, path: str, attr: str, type: str = 'str', convert: Callable[[str], Any] = str,
                **kwargs: Any) -> Option:
    def read(doc: Document) -> Any:
        value = doc.attr(path, attr)
        return None if value is None else convert(value)

    def write(doc: Document, value: Any) -> None:
        doc.set_attr(path, attr, None if value is None else str(value))

    return Option(name=name, type=type, read=read, write=write, **kwargs)


def view(table: Sequence[Option], doc: Document, names: Optional[List[str]] = None) -> Dict[str, Any]:
    """The declared view of a resource: each (named) XML option's actual value."""
    return {opt.name: opt.read(doc) for opt in table
            if opt.read is not None and (names is None or opt.name in names)}
