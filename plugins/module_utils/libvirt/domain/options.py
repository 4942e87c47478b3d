# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The option table of ``vm``: every option once, with its XML mapping, comparison and reach."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import (
    LIVE, NEXT_BOOT, Option, argspec, attr_option, set_or_empty, text_option,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.values import MIB, from_unit, to_mib
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document, element, escape, sub
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import CONNECTION_ARGSPEC
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.devices import (
    DISK_SPEC, INTERFACE_SPEC, disk_element, disks_equal, disks_reach, insert_device, interfaces_equal,
    interfaces_reach, normalize_disks, normalize_interfaces, read_disks, read_interfaces, write_disks,
    write_interfaces,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.seed import (
    CLOUD_INIT_SPEC, seed_digest, seed_files, seed_name,
)

CONSOLE_LOG = '/var/log/libvirt/qemu/%s-serial.log'
STATES = ('present', 'running', 'stopped', 'paused', 'absent')
QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
# libvirt's largest memory size (VIR_DOMAIN_MEMORY_PARAM_UNLIMITED KiB), in MiB.
MAX_MEMORY_MIB = 9007199254740991 // 1024


# ---- scalar options -----------------------------------------------------------------------------
def read_memory(doc: Document) -> Optional[int]:
    text = doc.text('memory')
    return None if text is None else from_unit(text, doc.attr('memory', 'unit')) // MIB


def write_memory(doc: Document, mib: int) -> None:
    for tag in ('memory', 'currentMemory'):
        doc.set_text(tag, str(mib))
        doc.set_attr(tag, 'unit', 'MiB')


def normalize_memory(value: Any, _context: Dict[str, Any]) -> int:
    mib = to_mib(value, 'memory')
    if mib > MAX_MEMORY_MIB:
        raise FvError('memory: %r is more than libvirt can address (%d MiB at most)' % (value, MAX_MEMORY_MIB))
    return mib


def machine_equal(desired: str, actual: Optional[str]) -> bool:
    """libvirt expands the aliases 'pc' and 'q35' into versioned machine types."""
    if actual is None:
        return False
    alias = {'pc': 'pc-i440fx-', 'q35': 'pc-q35-'}.get(desired)
    return actual == desired or bool(alias and actual.startswith(alias))


def read_firmware(doc: Document) -> str:
    efi = doc.attr('os', 'firmware') == 'efi' or doc.attr('os/loader', 'type') == 'pflash'
    return 'efi' if efi else 'bios'


def write_firmware(doc: Document, firmware: str) -> None:
    if firmware == 'efi':
        doc.set_attr('os', 'firmware', 'efi')
        # Plain OVMF: secure boot needs SMM, which TCG and paravirtual KVM here cannot run.
        doc.set_attr("os/firmware/feature[@name='secure-boot']", 'enabled', 'no')
        doc.set_attr("os/firmware/feature[@name='enrolled-keys']", 'enabled', 'no')
        doc.set_attr('features/smm', 'state', 'off')
    else:
        doc.set_attr('os', 'firmware', None)
        for path in ('os/firmware', 'os/loader', 'os/nvram'):
            doc.remove(path)


def read_qemu_args(doc: Document) -> List[str]:
    return [arg.get('value', '') for arg in doc.findall('{%s}commandline/{%s}arg' % (QEMU_NS, QEMU_NS))]


def write_qemu_args(doc: Document, args: List[str]) -> None:
    doc.remove('{%s}commandline' % QEMU_NS)
    if args:
        doc.namespaces.setdefault('qemu', QEMU_NS)
        commandline = doc.append('.', element('{%s}commandline' % QEMU_NS))
        for value in args:
            sub(commandline, '{%s}arg' % QEMU_NS, value=value)


WATCHDOGS = ('i6300esb', 'ib700', 'diag288', 'itco')


def read_watchdog(doc: Document) -> Optional[str]:
    return doc.attr('devices/watchdog', 'model')


def write_watchdog(doc: Document, model: str) -> None:
    """A watchdog that resets the machine when the guest stops feeding it ('' removes it)."""
    doc.remove('devices/watchdog')
    if model:
        insert_device(doc, element('watchdog', model=model, action='reset'))


# The CPU features that offer hardware virtualization to the guest OS: AMD's and Intel's.
NESTED_FEATURES = ('svm', 'vmx')


def read_nested(doc: Document) -> bool:
    """False when the domain's CPU disables every hardware virtualization feature."""
    disabled = {elem.get('name') for elem in doc.findall('cpu/feature') if elem.get('policy') == 'disable'}
    return not disabled.issuperset(NESTED_FEATURES)


def write_nested(doc: Document, nested: bool) -> None:
    """Stop disabling (True) or disable (False) SVM and VMX in the domain's CPU; its other settings
    stay. Features need a named model: a CPU without one gets libvirt's default, qemu64."""
    cpu = doc.find('cpu')
    for elem in doc.findall('cpu/feature'):
        if elem.get('name') in NESTED_FEATURES:
            doc.detach(cpu, elem)
    if nested:
        return
    if cpu is None:
        cpu = doc.ensure('cpu')
        cpu.set('mode', 'custom')
        cpu.set('match', 'exact')
        cpu.set('check', 'none')
    if cpu.get('mode', 'custom') == 'custom' and doc.find('cpu/model') is None:
        cpu.insert(0, element('model', 'qemu64', fallback='forbid'))
    for name in NESTED_FEATURES:
        cpu.append(element('feature', policy='disable', name=name))


def positive(what: str):
    def check(value: Any, _context: Dict[str, Any]) -> int:
        if int(value) < 1:
            raise FvError('%s must be 1 or more, got %r' % (what, value))
        return int(value)
    return check


def _next_boot(_desired: Any, _actual: Any) -> str:
    return NEXT_BOOT


def _live(_desired: Any, _actual: Any) -> str:
    return LIVE


# ---- cloud-init: the seed's digest in <metadata> and its cdrom -----------------------------------
def _seed_elements(doc: Document) -> List[Any]:
    return [elem for elem in doc.findall('devices/disk')
            if (doc.attr('source', 'volume', elem) or '') == seed_name(doc.text('name') or '')]


def read_cloud_init(doc: Document) -> Optional[Dict[str, Any]]:
    digest = doc.get_meta('cloud-init')
    elems = _seed_elements(doc)
    if digest is None and not elems:
        return None
    return {'digest': digest, 'pool': doc.attr('source', 'pool', elems[0]) if elems else None}


def write_cloud_init(doc: Document, seed: Dict[str, Any]) -> None:
    doc.set_meta('cloud-init', seed['digest'])
    elems = _seed_elements(doc)
    if elems and doc.attr('source', 'pool', elems[0]) == seed['pool']:
        return
    for elem in elems:
        doc.detach(doc.ensure('devices'), elem)
    insert_device(doc, disk_element(doc, seed['pool'], seed_name(doc.text('name') or ''), 'cdrom', fmt='raw'))


def normalize_cloud_init(spec: Dict[str, Any], context: Dict[str, Any]) -> Dict[str, Any]:
    return {'digest': seed_digest(seed_files(context['name'], spec)),
            'pool': spec.get('pool') or context['default_pool']}


VM_OPTIONS: List[Option] = [
    text_option('vcpus', 'vcpu', type='int', convert=int, create_default=1, normalize=positive('vcpus')),
    Option('memory', type='raw', create_default=512, read=read_memory, write=write_memory, normalize=normalize_memory),
    attr_option('virt_type', '.', 'type', choices=['auto', 'kvm', 'qemu'], create_default='auto',
                normalize=lambda value, context: context['virt_type'] if value == 'auto' and context['creating']
                else (None if value == 'auto' else value)),
    attr_option('machine', 'os/type', 'machine', create_default='q35', equal=machine_equal),
    Option('firmware', choices=['bios', 'efi'], create_default='bios', read=read_firmware, write=write_firmware),
    text_option('kernel', 'os/kernel', reach=_next_boot),
    text_option('initrd', 'os/initrd', reach=_next_boot),
    text_option('cmdline', 'os/cmdline', reach=_next_boot),
    Option('disks', type='list', elements='dict', suboptions=DISK_SPEC, read=read_disks, write=write_disks,
           normalize=normalize_disks, equal=disks_equal, reach=disks_reach),
    Option('interfaces', type='list', elements='dict', suboptions=INTERFACE_SPEC, read=read_interfaces,
           write=write_interfaces, normalize=normalize_interfaces, equal=interfaces_equal, reach=interfaces_reach),
    Option('watchdog', choices=list(WATCHDOGS) + [''], read=read_watchdog, write=write_watchdog,
           equal=set_or_empty),
    Option('nested_virtualization', type='bool', read=read_nested, write=write_nested),
    Option('qemu_args', type='list', elements='str', read=read_qemu_args, write=write_qemu_args),
    # Ownership scope in <metadata>: `vms` with exclusive removes only owned domains of its scope.
    Option('scope', read=lambda doc: doc.get_meta('scope'), write=lambda doc, value: doc.set_meta('scope', value),
           reach=_live),
    Option('cloud_init', type='dict', suboptions=CLOUD_INIT_SPEC, read=read_cloud_init, write=write_cloud_init,
           normalize=normalize_cloud_init, reach=_next_boot),
    # Not part of the XML: converged by the resource.
    Option('autostart', type='bool'),
]

VM_ARGSPEC = argspec(
    VM_OPTIONS,
    name=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=list(STATES)),
    remove_volumes=dict(type='bool', default=False),
    apply_changes=dict(type='str', default='next_boot', choices=['next_boot', 'restart']),
    wait=dict(type='bool', default=True),
    wait_timeout=dict(type='int', default=120),
    shutdown_timeout=dict(type='int', default=120),
    **CONNECTION_ARGSPEC,
)


def new_domain(name: str) -> Document:
    """The skeleton of a new domain; the table's writers fill in every declared option."""
    doc = Document(
        "<domain type='qemu'>\n  <name>%s</name>\n  <metadata/>\n  <memory unit='MiB'>512</memory>\n"
        "  <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n"
        "  <features>\n    <acpi/>\n    <apic/>\n  </features>\n  <clock offset='utc'/>\n"
        "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
        "  <on_crash>destroy</on_crash>\n  <devices>\n"
        "    <serial type='pty'>\n      <log file='%s' append='off'/>\n"
        "      <target port='0'/>\n    </serial>\n"
        "    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n"
        "    <channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
        "    </channel>\n"
        "    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n"
        "  </devices>\n</domain>" % (escape(name), escape(CONSOLE_LOG % name)))
    doc.set_owner()
    return doc
