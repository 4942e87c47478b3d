# -*- coding: utf-8 -*-
"""The XML editor: golden in/out documents, a round trip that keeps foreign namespaces and
metadata, and the path language."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import compare, desired_values, read_all, write
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import VM_OPTIONS
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document, XMLError

from golden import XML_DIR, read_xml


def canonical(text):
    return ET.canonicalize(text, strip_text=True)


def test_round_trip_keeps_everything():
    original = read_xml('domain-in.xml')
    doc = Document(original)
    out = doc.tostring()
    assert canonical(out) == canonical(original)
    assert 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"' in out
    assert '<qemu:arg value="user,id=mgmt,hostfwd=tcp:127.0.0.1:2222-:22" />' in out
    assert '<libosinfo:os id="http://debian.org/debian/12" />' in out
    assert doc.owner() == 'firmvisor.hypervisor'


def edit(doc, **params):
    context = {'name': 'app1', 'default_pool': 'vms', 'creating': False, 'virt_type': None}
    differences = compare(VM_OPTIONS, desired_values(VM_OPTIONS, params, context), read_all(VM_OPTIONS, doc))
    write(doc, differences)
    return differences


def test_golden_update():
    doc = Document(read_xml('domain-in.xml'))
    differences = edit(doc, memory='1GiB', vcpus=2, machine='q35', firmware='efi',
                       disks=[{'pool': 'vms', 'name': 'app1-0'}, {'pool': 'vms', 'name': 'app1-data', 'size': 1}],
                       interfaces=[{'network': 'lab', 'mac': '52:54:00:AA:BB:01'}, {'bridge': 'br0'}])
    assert sorted(d.option.name for d in differences) == ['disks', 'firmware', 'interfaces', 'memory', 'vcpus']
    expected = read_xml('domain-out.xml')
    assert doc.tostring() + '\n' == expected
    # The edited document compares equal to what was declared: nothing left to do.
    again = Document(expected)
    assert edit(again, memory='1GiB', vcpus=2, machine='q35', firmware='efi',
                disks=[{'pool': 'vms', 'name': 'app1-0'}, {'pool': 'vms', 'name': 'app1-data', 'size': 1}],
                interfaces=[{'network': 'lab', 'mac': '52:54:00:aa:bb:01'}, {'bridge': 'br0'}]) == []


def test_bus_change_moves_target_and_drops_address():
    doc = Document(read_xml('domain-in.xml'))
    edit(doc, disks=[{'pool': 'vms', 'name': 'app1-0', 'bus': 'sata', 'boot': 1}])
    disk = doc.find('devices/disk')
    assert doc.attr('target', 'dev', disk) == 'sda' and doc.attr('target', 'bus', disk) == 'sata'
    assert doc.find('address', disk) is None
    assert doc.attr('boot', 'order', disk) == '1'
    assert doc.find('os/boot') is None  # per-device boot order replaces <os><boot>


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
                              "<interface type=\"network\"><source network=\"lab\" /></interface>\n  "
                              "</devices>\n</domain>")
    assert doc.remove('devices/disk') == 1
    doc.set_text('name', None)
    assert doc.find('name') is None and doc.find('devices/interface') is not None


def test_golden_files_exist():
    assert os.path.exists(os.path.join(XML_DIR, 'domain-out.xml'))
