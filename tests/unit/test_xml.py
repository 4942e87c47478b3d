# -*- coding: utf-8 -*-
"""The XML editor: golden in/out documents, a round trip that keeps foreign namespaces and
metadata, and the path language."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document, XMLError

from golden import read_xml


def canonical(text):
    return ET.canonicalize(text, strip_text=True)


def test_round_trip_keeps_everything():
    original = read_xml('domain/memory-in.xml')
    doc = Document(original)
    out = doc.tostring()
    assert canonical(out) == canonical(original)
    assert 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"' in out
    assert '<qemu:arg value="user,id=mgmt,hostfwd=tcp:127.0.0.1:2222-:22" />' in out
    assert '<libosinfo:os id="http://debian.org/debian/12" />' in out
    assert doc.owner() == 'firmvisor.hypervisor'


@pytest.mark.parametrize('path', ["devices/disk[@type=volume]", "a//b[", "devices/disk[@x='1'"])
def test_bad_paths_are_rejected(path):
    with pytest.raises(XMLError):
        Document('<a/>').find(path)


def test_unparsable_document():
    with pytest.raises(XMLError, match='cannot parse XML'):
        Document('<domain><name>x</domain>')


def test_edits_touch_only_what_they_name():
    doc = Document("<domain>\n  <name>x</name>\n  <devices>\n    <disk/>\n  </devices>\n</domain>")
    doc.set_attr("devices/interface[@type='network']/source", 'network', 'lab')
    assert doc.tostring() == ("<domain>\n  <name>x</name>\n  <devices>\n    <disk />\n    "
                              "<interface type=\"network\">\n      <source network=\"lab\" />\n    </interface>\n  "
                              "</devices>\n</domain>")
    assert doc.remove('devices/disk') == 1
    doc.set_text('name', None)
    assert doc.find('name') is None and doc.find('devices/interface') is not None
