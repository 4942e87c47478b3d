# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt XML documents edited in place.

A :class:`Document` wraps a parsed libvirt XML description. Edits address elements by a small
path language (``os/type``, ``devices/disk[@device='cdrom']``) and touch only what they name:
every other element, attribute, comment-free text, namespace and ``<metadata>`` child stays as it
was, so a document read from libvirt, edited and written back differs only where it was asked to.
"""

from __future__ import annotations

import copy
import functools
import re
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Tuple, Union

# The namespace of this collection's ownership metadata inside <metadata>.
FV_NS = 'urn:firmvisor:hypervisor:1'
FV_PREFIX = 'firmvisor'
# The mark of what this collection made.
OWNER = 'firmvisor.hypervisor'

_XMLNS = re.compile(r"""xmlns:([\w.-]+)=["']([^"']*)["']""")
_STEP = re.compile(r"^(?P<tag>(?:\{[^}]*\})?[\w.-]+)(?:\[@(?P<attr>[\w:.-]+)='(?P<value>[^']*)'\])?$")


class XMLError(ValueError):
    """A document could not be parsed or a path is malformed."""


@functools.lru_cache(maxsize=512)
def _steps(path: str) -> Tuple[Tuple[str, Optional[str], Optional[str]], ...]:
    """A path's steps, parsed once per distinct path."""
    steps = []
    for part in re.findall(r'(?:\{[^}]*\}|[^/])+', path):  # a namespace URI may hold slashes
        match = _STEP.match(part)
        if not match:
            raise XMLError("bad XML path step %r in %r" % (part, path))
        steps.append((match.group('tag'), match.group('attr'), match.group('value')))
    return tuple(steps)


def _matches(elem: ET.Element, tag: str, attr: Optional[str], value: Optional[str]) -> bool:
    return elem.tag == tag and (attr is None or elem.get(attr) == value)


class Document:
    """A parsed libvirt XML document that remembers its namespace prefixes."""

    def __init__(self, text: str) -> None:
        self.namespaces: Dict[str, str] = {}
        try:
            self.root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise XMLError('cannot parse XML: %s' % exc)
        # The parser resolves prefixes away; remember them so that output keeps them.
        for prefix, uri in _XMLNS.findall(text):
            self.namespaces.setdefault(prefix, uri)

    def copy(self) -> 'Document':
        """An independent copy to edit (the planned definition), keeping the prefixes."""
        doc = Document.__new__(Document)
        doc.root = copy.deepcopy(self.root)
        doc.namespaces = dict(self.namespaces)
        return doc

    # ---- reading ------------------------------------------------------------------------------
    def find(self, path: str, parent: Optional[ET.Element] = None) -> Optional[ET.Element]:
        _steps(path)
        return (self.root if parent is None else parent).find(path)

    def findall(self, path: str, parent: Optional[ET.Element] = None) -> List[ET.Element]:
        _steps(path)  # the same path grammar everywhere: reject what ensure() could not build
        return (self.root if parent is None else parent).findall(path)  # ElementTree caches compiled paths

    def text(self, path: str, parent: Optional[ET.Element] = None) -> Optional[str]:
        elem = self.find(path, parent)
        if elem is None or elem.text is None:
            return None
        return elem.text.strip()

    def attr(self, path: str, name: str, parent: Optional[ET.Element] = None) -> Optional[str]:
        elem = self.root if path in ('', '.') and parent is None else self.find(path, parent)
        return None if elem is None else elem.get(name)

    # ---- editing ------------------------------------------------------------------------------
    def ensure(self, path: str, parent: Optional[ET.Element] = None) -> ET.Element:
        """Return the element at ``path``, creating missing steps (with their predicate attribute)."""
        elem = self.root if parent is None else parent
        for tag, attr, value in _steps(path):
            child = next((c for c in elem if _matches(c, tag, attr, value)), None)
            if child is None:
                child = _append(elem, tag)
                if attr is not None:
                    child.set(attr, value or '')
            elem = child
        return elem

    def set_text(self, path: str, value: Optional[str], parent: Optional[ET.Element] = None) -> None:
        """Set an element's text; ``None`` removes the element."""
        if value is None:
            self.remove(path, parent)
        else:
            self.ensure(path, parent).text = value

    def set_attr(self, path: str, name: str, value: Optional[str], parent: Optional[ET.Element] = None) -> None:
        """Set an attribute; ``None`` removes the attribute (the element stays)."""
        if path in ('', '.'):
            elem: Optional[ET.Element] = self.root if parent is None else parent
        elif value is None:
            elem = self.find(path, parent)
        else:
            elem = self.ensure(path, parent)
        if elem is None:
            return
        if value is None:
            elem.attrib.pop(name, None)
        else:
            elem.set(name, value)

    def remove(self, path: str, parent: Optional[ET.Element] = None) -> int:
        """Remove every element matching ``path``; returns how many were removed."""
        steps = _steps(path)
        holders = [self.root if parent is None else parent]
        for tag, attr, value in steps[:-1]:
            holders = [child for elem in holders for child in elem if _matches(child, tag, attr, value)]
        tag, attr, value = steps[-1]
        removed = 0
        for holder in holders:
            for child in [c for c in holder if _matches(c, tag, attr, value)]:
                _detach(holder, child)
                removed += 1
        return removed

    def append(self, parent_path: str, elem: ET.Element) -> ET.Element:
        holder = self.ensure(parent_path) if parent_path not in ('', '.') else self.root
        _append(holder, elem)
        return elem

    def detach(self, parent: ET.Element, child: ET.Element) -> None:
        _detach(parent, child)

    # ---- ownership metadata -------------------------------------------------------------------
    def owner(self) -> Optional[str]:
        elem = self.find('metadata/{%s}owner' % FV_NS)
        return None if elem is None else elem.get('collection')

    def owned(self) -> bool:
        """Whether this collection made the object (its mark in <metadata>)."""
        return self.owner() == OWNER

    def set_owner(self) -> None:
        self.namespaces.setdefault(FV_PREFIX, FV_NS)
        self.set_attr('metadata/{%s}owner' % FV_NS, 'collection', OWNER)

    def get_meta(self, key: str) -> Optional[str]:
        return self.attr('metadata/{%s}owner' % FV_NS, key)

    def set_meta(self, key: str, value: Optional[str]) -> None:
        self.namespaces.setdefault(FV_PREFIX, FV_NS)
        self.set_attr('metadata/{%s}owner' % FV_NS, key, value)

    # ---- output -------------------------------------------------------------------------------
    def tostring(self) -> str:
        """The document as text, indented as libvirt writes it (elements only: libvirt's XML has
        no mixed content, so indenting changes no value)."""
        for prefix, uri in self.namespaces.items():
            if prefix and not re.match(r'ns\d+$', prefix):  # ElementTree keeps ns0, ns1... for itself
                ET.register_namespace(prefix, uri)
        ET.indent(self.root, space='  ')
        return ET.tostring(self.root, encoding='unicode')

    def __str__(self) -> str:
        return self.tostring()


def _append(parent: ET.Element, child: Union[str, ET.Element]) -> ET.Element:
    if isinstance(child, str):
        child = ET.Element(child)
    parent.append(child)
    return child


def _detach(parent: ET.Element, child: ET.Element) -> None:
    parent.remove(child)
    if not len(parent) and parent.text is not None and not parent.text.strip():
        parent.text = None  # an emptied element is written as <forward/>, not with a blank line


def escape(text: str) -> str:
    """Text safe inside an element or a single- or double-quoted attribute."""
    return (text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            .replace("'", '&apos;').replace('"', '&quot;'))


def element(tag: str, text: Optional[str] = None, **attrs: Optional[str]) -> ET.Element:
    """Build a detached element; attributes whose value is None are left out."""
    elem = ET.Element(tag, {k.rstrip('_'): str(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        elem.text = text
    return elem


def sub(parent: ET.Element, tag: str, text: Optional[str] = None, **attrs: Optional[str]) -> ET.Element:
    child = element(tag, text, **attrs)
    parent.append(child)
    return child
