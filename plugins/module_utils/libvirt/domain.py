# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domains: the option table of ``vm``, and the service that converges one domain.

``prepare`` validates a spec and reads the domain (no change); ``converge`` carries out the plan.
``vms`` prepares every spec before it converges any, so bad input changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.common import (
    MIB, Changes, FvError, FvTimeout, from_unit, normalize_mac, stable_mac, to_mib, wait_until,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import (
    CONNECTION_ARGSPEC, flag, libvirt, lookup_domain, mapped,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.compare import (
    Difference, apply, compare, desired_values, strongest,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import (
    LIVE, NEXT_BOOT, RESTART, Option, argspec, attr_option, text_option, view,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.volume import Volumes
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document, element, escape, sub

OWNER = 'firmvisor.hypervisor'
CONSOLE_LOG = '/var/log/libvirt/qemu/%s-serial.log'
STATES = ('present', 'running', 'stopped', 'paused', 'absent')
BUS_PREFIX = {'virtio': 'vd', 'sata': 'sd', 'scsi': 'sd', 'usb': 'sd', 'ide': 'hd'}

# libvirt domain states
_RUNNING, _BLOCKED, _PAUSED, _SHUTDOWN, _SHUTOFF, _CRASHED, _PMSUSPENDED = 1, 2, 3, 4, 5, 6, 7
STATE_NAMES = {0: 'unknown', 1: 'running', 2: 'running', 3: 'paused', 4: 'running', 5: 'stopped',
               6: 'crashed', 7: 'suspended'}

DISK_SPEC = dict(
    name=dict(type='str'),
    pool=dict(type='str'),
    size=dict(type='raw'),
    format=dict(type='str', choices=['qcow2', 'raw', 'iso']),
    source=dict(type='path'),
    backing=dict(type='bool'),
    bus=dict(type='str', choices=list(BUS_PREFIX)),
    device=dict(type='str', choices=['disk', 'cdrom']),
    boot=dict(type='int'),
)
INTERFACE_SPEC = dict(
    network=dict(type='str'),
    bridge=dict(type='str'),
    model=dict(type='str'),
    mac=dict(type='str'),
)
CLOUD_INIT_SPEC = dict(
    user_data=dict(type='raw'),
    meta_data=dict(type='dict'),
    network_config=dict(type='dict'),
    pool=dict(type='str'),
)


# ---- disks --------------------------------------------------------------------------------------
def read_disks(doc: Document) -> List[Dict[str, Any]]:
    disks = []
    for elem in doc.findall('devices/disk'):
        boot = doc.attr('boot', 'order', elem)
        disks.append({
            'pool': doc.attr('source', 'pool', elem),
            'name': doc.attr('source', 'volume', elem),
            'path': doc.attr('source', 'file', elem) or doc.attr('source', 'dev', elem),
            'device': elem.get('device', 'disk'),
            'bus': doc.attr('target', 'bus', elem),
            'target': doc.attr('target', 'dev', elem),
            'format': doc.attr('driver', 'type', elem),
            'boot': int(boot) if boot else None,
        })
    return disks


def normalize_disks(disks: List[Dict[str, Any]], context: Dict[str, Any]) -> List[Dict[str, Any]]:
    result = []
    for index, disk in enumerate(disks):
        disk = {k: v for k, v in disk.items() if v is not None}
        disk.setdefault('name', '%s-%d' % (context['name'], index))
        disk.setdefault('pool', context.get('default_pool', 'default'))
        if 'size' in disk:
            disk['size'] = to_mib(disk['size'], 'disk %s: size' % disk['name'])  # MiB, as Volumes takes it
        if disk.get('boot') is not None and disk['boot'] < 1:
            raise FvError('disk %s: boot is a boot order, 1 or more' % disk['name'])
        result.append(disk)
    names = [(d['pool'], d['name']) for d in result]
    if len(set(names)) != len(names):
        raise FvError('disks: the same volume is listed twice')
    return result


_DISK_COMPARED = ('device', 'bus', 'format', 'boot')


def _find_disk(actual: List[Dict[str, Any]], disk: Dict[str, Any]) -> Optional[int]:
    for index, have in enumerate(actual):
        if (have['pool'], have['name']) == (disk['pool'], disk['name']):
            return index
        if have['path'] and have['path'] == disk.get('_path'):
            return index
    return None


def disks_equal(desired: List[Dict[str, Any]], actual: Optional[List[Dict[str, Any]]]) -> bool:
    actual = actual or []
    for disk in desired:
        index = _find_disk(actual, disk)
        if index is None:
            return False
        if any(k in disk and disk[k] != actual[index][k] for k in _DISK_COMPARED):
            return False
    return True


def _next_target(doc: Document, bus: str) -> str:
    prefix = BUS_PREFIX[bus]
    used = {doc.attr('target', 'dev', elem) for elem in doc.findall('devices/disk')}
    for letter in 'abcdefghijklmnopqrstuvwxyz':
        if prefix + letter not in used:
            return prefix + letter
    raise FvError('no free %s disk target left' % bus)


def write_disks(doc: Document, disks: List[Dict[str, Any]]) -> None:
    actual = read_disks(doc)
    elems = doc.findall('devices/disk')
    for disk in disks:
        index = _find_disk(actual, disk)
        device = disk.get('device', 'disk')
        if index is None:
            bus = disk.get('bus') or ('sata' if device == 'cdrom' else 'virtio')
            elem = element('disk', type='volume', device=device)
            sub(elem, 'driver', name='qemu', type=disk.get('format') or disk.get('_format') or 'qcow2')
            sub(elem, 'source', pool=disk['pool'], volume=disk['name'])
            sub(elem, 'target', dev=_next_target(doc, bus), bus=bus)
            if device == 'cdrom':
                sub(elem, 'readonly')
            if disk.get('boot'):
                sub(elem, 'boot', order=str(disk['boot']))
            _insert_device(doc, elem)
            actual.append({'pool': disk['pool'], 'name': disk['name'], 'path': None, 'device': device,
                           'bus': bus, 'target': None, 'format': None, 'boot': disk.get('boot')})
            elems.append(elem)
            continue
        elem = elems[index]
        if 'device' in disk:
            elem.set('device', device)
        if 'bus' in disk and disk['bus'] != actual[index]['bus']:
            # A new bus needs a target name of its kind and a new address.
            doc.set_attr('target', 'bus', disk['bus'], elem)
            doc.set_attr('target', 'dev', None, elem)
            doc.set_attr('target', 'dev', _next_target(doc, disk['bus']), elem)
            doc.remove('address', elem)
        if 'format' in disk:
            doc.set_attr('driver', 'type', disk['format'], elem)
        if 'boot' in disk:
            doc.remove('boot', elem)
            if disk['boot']:
                doc.ensure('boot', elem).set('order', str(disk['boot']))
    if any(d.get('boot') for d in disks):
        doc.remove('os/boot')  # per-device boot order excludes <os><boot dev=.../>


# ---- interfaces ---------------------------------------------------------------------------------
def read_interfaces(doc: Document) -> List[Dict[str, Any]]:
    result = []
    for elem in doc.findall('devices/interface'):
        kind = elem.get('type')
        result.append({
            'type': kind,
            'network': doc.attr('source', 'network', elem) if kind == 'network' else None,
            'bridge': doc.attr('source', 'bridge', elem) if kind == 'bridge' else None,
            'model': doc.attr('model', 'type', elem),
            'mac': normalize_mac(doc.attr('mac', 'address', elem)),
        })
    return result


def normalize_interfaces(interfaces: List[Dict[str, Any]], context: Dict[str, Any]) -> List[Dict[str, Any]]:
    result = []
    for index, nic in enumerate(interfaces):
        nic = {k: v for k, v in nic.items() if v is not None}
        if ('network' in nic) == ('bridge' in nic):
            raise FvError('interface %d: give exactly one of network or bridge' % index)
        nic['mac'] = normalize_mac(nic.get('mac')) or stable_mac(context['name'], str(index))
        result.append(nic)
    macs = [n['mac'] for n in result]
    if len(set(macs)) != len(macs):
        raise FvError('interfaces: the same MAC address is listed twice')
    return result


def _find_interface(actual: List[Dict[str, Any]], mac: str) -> Optional[int]:
    return next((i for i, have in enumerate(actual) if have['mac'] == mac), None)


def interfaces_equal(desired: List[Dict[str, Any]], actual: Optional[List[Dict[str, Any]]]) -> bool:
    actual = actual or []
    for nic in desired:
        index = _find_interface(actual, nic['mac'])
        if index is None:
            return False
        if any(k in nic and nic[k] != actual[index][k] for k in ('network', 'bridge', 'model')):
            return False
    return True


def write_interfaces(doc: Document, interfaces: List[Dict[str, Any]]) -> None:
    actual = read_interfaces(doc)
    elems = doc.findall('devices/interface')
    for nic in interfaces:
        kind = 'network' if 'network' in nic else 'bridge'
        index = _find_interface(actual, nic['mac'])
        if index is None:
            elem = element('interface', type=kind)
            sub(elem, 'mac', address=nic['mac'])
            sub(elem, 'source', **{kind: nic[kind]})
            sub(elem, 'model', type=nic.get('model', 'virtio'))
            _insert_device(doc, elem)
            continue
        elem = elems[index]
        if actual[index]['type'] != kind or actual[index][kind] != nic[kind]:
            elem.set('type', kind)
            source = doc.ensure('source', elem)
            source.attrib.clear()
            source.set(kind, nic[kind])
        if 'model' in nic:
            doc.set_attr('model', 'type', nic['model'], elem)


def disks_apply(desired: List[Dict[str, Any]], actual: Optional[List[Dict[str, Any]]]) -> str:
    """Added devices only can be hot-plugged; a change to an existing one needs a restart."""
    changed = [d for d in desired if _find_disk(actual or [], d) is not None and not disks_equal([d], actual)]
    return RESTART if changed else LIVE


def interfaces_apply(desired: List[Dict[str, Any]], actual: Optional[List[Dict[str, Any]]]) -> str:
    changed = [n for n in desired
               if _find_interface(actual or [], n['mac']) is not None and not interfaces_equal([n], actual)]
    return RESTART if changed else LIVE


def _insert_device(doc: Document, elem: ET.Element) -> None:
    """Insert a device after the last one of its kind (libvirt keeps devices grouped)."""
    devices = doc.ensure('devices')
    children = list(devices)
    same = [i for i, child in enumerate(children) if child.tag == elem.tag]
    if not same:
        doc.append('devices', elem)
        return
    position = same[-1] + 1
    elem.tail = children[same[-1]].tail
    if position < len(children):
        children[same[-1]].tail = elem.tail
    else:
        elem.tail, children[same[-1]].tail = children[same[-1]].tail, devices.text
    devices.insert(position, elem)


# ---- scalar options -----------------------------------------------------------------------------
def read_memory(doc: Document) -> Optional[int]:
    text = doc.text('memory')
    return None if text is None else from_unit(text, doc.attr('memory', 'unit')) // MIB


def write_memory(doc: Document, mib: int) -> None:
    for tag in ('memory', 'currentMemory'):
        doc.set_text(tag, str(mib))
        doc.set_attr(tag, 'unit', 'MiB')


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


QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'


def read_qemu_args(doc: Document) -> List[str]:
    return [arg.get('value', '') for arg in doc.findall('{%s}commandline/{%s}arg' % (QEMU_NS, QEMU_NS))]


def write_qemu_args(doc: Document, args: List[str]) -> None:
    doc.remove('{%s}commandline' % QEMU_NS)
    if args:
        doc.namespaces.setdefault('qemu', QEMU_NS)
        commandline = doc.append('.', element('{%s}commandline' % QEMU_NS))
        for value in args:
            sub(commandline, '{%s}arg' % QEMU_NS, value=value)


def positive(what: str):
    def check(value: Any, _context: Dict[str, Any]) -> int:
        if int(value) < 1:
            raise FvError('%s must be 1 or more, got %r' % (what, value))
        return int(value)
    return check


def _next_boot(_desired: Any, _actual: Any) -> str:
    return NEXT_BOOT


VM_OPTIONS: List[Option] = [
    text_option('vcpus', 'vcpu', type='int', convert=int, create_default=1, normalize=positive('vcpus')),
    Option('memory', type='raw', create_default=512, read=read_memory, write=write_memory,
           normalize=lambda value, _c: to_mib(value, 'memory')),
    attr_option('virt_type', '.', 'type', choices=['auto', 'kvm', 'qemu'], create_default='auto',
                normalize=lambda value, _c: None if value == 'auto' else value),
    attr_option('machine', 'os/type', 'machine', create_default='q35', equal=machine_equal),
    Option('firmware', choices=['bios', 'efi'], create_default='bios', read=read_firmware, write=write_firmware),
    text_option('kernel', 'os/kernel', apply=_next_boot),
    text_option('initrd', 'os/initrd', apply=_next_boot),
    text_option('cmdline', 'os/cmdline', apply=_next_boot),
    Option('disks', type='list', elements='dict', suboptions=DISK_SPEC, read=read_disks, write=write_disks,
           normalize=normalize_disks, equal=disks_equal, apply=disks_apply),
    Option('interfaces', type='list', elements='dict', suboptions=INTERFACE_SPEC, read=read_interfaces,
           write=write_interfaces, normalize=normalize_interfaces, equal=interfaces_equal, apply=interfaces_apply),
    Option('qemu_args', type='list', elements='str', read=read_qemu_args, write=write_qemu_args),
    # Ownership scope in <metadata>: `vms` with exclusive removes only owned domains of its scope.
    Option('scope', read=lambda doc: doc.get_meta('scope'), write=lambda doc, value: doc.set_meta('scope', value),
           apply=lambda _desired, _actual: LIVE),
    # Not part of the XML: converged by the service.
    Option('autostart', type='bool'),
    Option('cloud_init', type='dict', suboptions=CLOUD_INIT_SPEC),
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
OPTION_NAMES = [opt.name for opt in VM_OPTIONS]


def resolve_virt_type(conn: Any) -> str:
    """'kvm' when the host offers it for x86_64 guests, else 'qemu' (TCG)."""
    caps = Document(conn.getCapabilities())
    for guest in caps.findall('guest'):
        if doc_arch(caps, guest) == 'x86_64' and caps.find("arch/domain[@type='kvm']", guest) is not None:
            return 'kvm'
    return 'qemu'


def doc_arch(caps: Document, guest: ET.Element) -> Optional[str]:
    return caps.attr('arch', 'name', guest)


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
    doc.set_owner(OWNER)
    return doc



# ---- cloud-init ---------------------------------------------------------------------------------
def cloud_init_files(name: str, spec: Dict[str, Any]) -> Dict[str, str]:
    """The NoCloud seed's files; instance-id defaults to the VM name."""
    import json
    user_data = spec.get('user_data')
    if user_data is None:
        user_data = '#cloud-config\n{}\n'
    elif not isinstance(user_data, str):
        user_data = '#cloud-config\n' + json.dumps(user_data, indent=2, sort_keys=True) + '\n'
    meta = {'instance-id': name, 'local-hostname': name}
    meta.update(spec.get('meta_data') or {})
    files = {'user-data': user_data, 'meta-data': json.dumps(meta, indent=2, sort_keys=True) + '\n'}
    if spec.get('network_config'):
        files['network-config'] = json.dumps(spec['network_config'], indent=2, sort_keys=True) + '\n'
    return files


def seed_digest(files: Dict[str, str]) -> str:
    import hashlib
    digest = hashlib.sha256()
    for key in sorted(files):
        digest.update(key.encode() + b'\0' + files[key].encode() + b'\0')
    return digest.hexdigest()


def build_seed_iso(files: Dict[str, str], dest: str) -> None:
    tool = shutil.which('genisoimage') or shutil.which('mkisofs') or shutil.which('xorrisofs')
    if tool is None:
        raise FvError('cloud_init needs genisoimage, mkisofs or xorrisofs on the machine running the module')
    workdir = tempfile.mkdtemp(prefix='firmvisor-seed-')
    try:
        for key, text in files.items():
            with open(os.path.join(workdir, key), 'w') as handle:
                handle.write(text)
        cmd = [tool, '-quiet', '-output', dest, '-volid', 'cidata', '-joliet', '-rock'] + \
              [os.path.join(workdir, key) for key in sorted(files)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise FvError('building the cloud-init seed failed: %s' % proc.stderr.strip())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---- the service --------------------------------------------------------------------------------
@dataclass
class Plan:
    params: Dict[str, Any]
    dom: Any
    doc: Optional[Document]
    desired: Dict[str, Any] = field(default_factory=dict)
    differences: List[Difference] = field(default_factory=list)
    seed: Optional[Tuple[str, Dict[str, str], str]] = None  # (pool, files, digest)
    # Power state and autostart as read once when planning (None for a new domain).
    state: Optional[int] = None
    autostart: Optional[bool] = None
    # Every XML option's value in doc, read once and shared by compare, diff and describe.
    actual: Dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.params['name']


class VmService:
    """Converges domains over one connection. No AnsibleModule inside."""

    def __init__(self, conn: Any, check_mode: bool = False) -> None:
        self.conn = conn
        self.check_mode = check_mode
        self.volumes_changes = Changes(check_mode)
        self.volumes = Volumes(conn, self.volumes_changes)
        self._virt_type: Optional[str] = None

    # -- planning (reads only) --
    def prepare(self, params: Dict[str, Any], dom: Any = None, known: bool = False,
                facts: Optional[Tuple[int, bool]] = None) -> Plan:
        """Validate ``params`` and read the domain. ``known`` says ``dom`` was looked up already;
        ``facts`` are its (state, autostart) when the caller read them in bulk."""
        name = params['name']
        if not known:
            dom = lookup_domain(self.conn, name)
        plan = Plan(params=params, dom=dom, doc=None)
        if params.get('state') == 'absent':
            return plan
        if dom is not None:
            with mapped('domain %r' % name):
                plan.doc = Document(dom.XMLDesc(flag('VIR_DOMAIN_XML_INACTIVE')))
                plan.state, plan.autostart = facts or (dom.state()[0], bool(dom.autostart()))
                plan.actual = view(VM_OPTIONS, plan.doc)
        context = {'name': name, 'default_pool': _first_pool(params)}
        try:
            plan.desired = desired_values(VM_OPTIONS, params, context)
        except FvError as exc:
            raise FvError('vm %s: %s' % (name, exc))
        if dom is None:
            for opt in VM_OPTIONS:
                if opt.name not in plan.desired and opt.create_default is not None and opt.read is not None:
                    plan.desired[opt.name] = (opt.normalize(opt.create_default, context)
                                              if opt.normalize else opt.create_default)
            if plan.desired.get('virt_type') is None:
                plan.desired['virt_type'] = self.virt_type()
        if params.get('cloud_init') is not None:
            self._plan_seed(plan, context)
        self._check_volumes(plan)
        plan.differences = compare(VM_OPTIONS, plan.desired, plan.doc, plan.actual)
        return plan

    def virt_type(self) -> str:
        if self._virt_type is None:
            self._virt_type = resolve_virt_type(self.conn)
        return self._virt_type

    def _plan_seed(self, plan: Plan, context: Dict[str, Any]) -> None:
        files = cloud_init_files(plan.name, plan.params['cloud_init'])
        pool = plan.params['cloud_init'].get('pool') or context['default_pool']
        digest = seed_digest(files)
        plan.seed = (pool, files, digest)
        disks = plan.desired.setdefault('disks', [])
        disks.append({'name': '%s-cidata.iso' % plan.name, 'pool': pool, 'device': 'cdrom', 'format': 'raw',
                      '_seed': True})

    def _check_volumes(self, plan: Plan) -> None:
        for disk in plan.desired.get('disks', []):
            try:
                vol = self.volumes.lookup(disk['pool'], disk['name'])
            except FvError as exc:
                raise FvError('vm %s: disk %s: %s' % (plan.name, disk['name'], exc))
            if vol is not None:
                disk['_path'] = vol.path()
                disk['_format'] = Document(vol.XMLDesc(0)).attr('target/format', 'type')
            elif not (disk.get('size') or disk.get('source') or disk.get('_seed')):
                raise FvError('vm %s: disk volume %s/%s does not exist; give size or source to create it'
                              % (plan.name, disk['pool'], disk['name']))

    def ensure(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return self.converge(self.prepare(params))

    # -- carrying out --
    def converge(self, plan: Plan) -> Dict[str, Any]:
        params = plan.params
        changes = Changes(self.check_mode)
        if params['state'] == 'absent':
            return self._remove(plan, changes)
        name = plan.name
        reboot_required = False
        warnings: List[str] = []
        # Volumes first: the domain's disks refer to them.
        vol_start = len(self.volumes_changes.actions)
        for disk in plan.desired.get('disks', []):
            if disk.get('_seed'):
                self._ensure_seed(plan, disk)
                continue
            result = self.volumes.ensure(disk['pool'], disk['name'], size=disk.get('size'),
                                         format=disk.get('format'), source=disk.get('source'),
                                         backing=bool(disk.get('backing')))
            warnings.extend(result['warnings'])
        changes.actions.extend(self.volumes_changes.actions[vol_start:])

        dom = plan.dom
        active = plan.state not in (None, _SHUTOFF, _CRASHED)
        current = _SHUTOFF if plan.state is None else plan.state
        before = self._diff_side(plan)
        doc = plan.doc if plan.doc is not None else new_domain(name)
        if plan.differences or plan.doc is None:
            apply(doc, plan.differences)
            xml = doc.tostring()
            verb = 'define' if plan.doc is None else 'update'
            with mapped('vm %s: %s' % (name, verb)):
                defined = changes.act('%s domain %s' % (verb, name), self.conn.defineXML, xml)
            dom = defined or dom
            if active:
                needs = strongest(plan.differences)
                if needs == LIVE:
                    reboot_required = not self._hotplug(dom, plan.differences, warnings)
                elif needs in (NEXT_BOOT, RESTART):
                    reboot_required = True
                if needs == RESTART and params['apply_changes'] == 'restart' and params['state'] != 'stopped':
                    self._restart(dom, params, changes)
                    current, reboot_required = _RUNNING, False
        if params.get('autostart') is not None and bool(plan.autostart) != params['autostart']:
            with mapped('vm %s: autostart' % name):
                changes.act('set autostart of %s to %s' % (name, params['autostart']),
                            dom.setAutostart if dom is not None else None, int(params['autostart']))
        before_power = len(changes.actions)
        self._power(dom, params, changes, current)
        power_changed = len(changes.actions) > before_power
        after = self._diff_view(plan, doc) if changes.changed else {k: v for k, v in before.items()
                                                                     if k not in ('state', 'autostart')}
        after['state'] = params['state'] if params['state'] != 'present' else before.get('state', 'stopped')
        if after['state'] == 'absent':
            after['state'] = 'stopped'
        if params.get('autostart') is not None:
            after['autostart'] = params['autostart']
        return {
            'changed': changes.changed, 'actions': changes.actions, 'reboot_required': reboot_required,
            'changes': {d.option.name: d.apply for d in plan.differences},
            'diff': {'before': before, 'after': after}, 'warnings': warnings,
            'vm': self._result_view(plan, dom, doc, changes.changed, power_changed, current, after),
        }

    def _result_view(self, plan: Plan, dom: Any, doc: Document, changed: bool, power_changed: bool,
                     state: int, after: Dict[str, Any]) -> Dict[str, Any]:
        """The domain as it is now; runtime facts are read again only where this run moved them."""
        if dom is None or self.check_mode:
            return after
        if not changed:
            return self.describe(dom, plan.name, plan.doc, plan.state, plan.autostart, plan.actual)
        if power_changed:
            return self.describe(dom, plan.name)
        autostart = plan.params['autostart'] if plan.params.get('autostart') is not None else bool(plan.autostart)
        return self.describe(dom, plan.name, None, state, autostart)

    def _diff_view(self, plan: Plan, doc: Document) -> Dict[str, Any]:
        """The declared options as the document has them."""
        return {key: _public(value) for key, value in view(VM_OPTIONS, doc, list(plan.desired)).items()}

    def _diff_side(self, plan: Plan) -> Dict[str, Any]:
        if plan.doc is None:
            return {'state': 'absent'}
        side = {key: _public(plan.actual[key]) for key in plan.desired if key in plan.actual}
        side['state'] = STATE_NAMES.get(plan.state, 'unknown')
        if plan.params.get('autostart') is not None:
            side['autostart'] = plan.autostart
        return side

    def _ensure_seed(self, plan: Plan, disk: Dict[str, Any]) -> None:
        pool, files, digest = plan.seed
        current = plan.doc.get_meta('cloud-init') if plan.doc is not None else None
        exists = '_path' in disk
        if exists and current == digest:
            return
        workdir = tempfile.mkdtemp(prefix='firmvisor-seed-')
        try:
            iso = os.path.join(workdir, 'seed.iso')
            if not self.check_mode:
                build_seed_iso(files, iso)
            self.volumes.ensure(pool, disk['name'], source=None if self.check_mode else iso, format='iso',
                                size=None if not self.check_mode else 1, replace=exists)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        # Recorded in the domain so the next run knows the seed is current.
        plan.differences.append(Difference(_SEED_OPTION, current, digest))

    def _hotplug(self, dom: Any, differences: List[Difference], warnings: List[str]) -> bool:
        """Attach added disks and interfaces to the running domain; False if any could not be."""
        ok = True
        live_doc = Document(dom.XMLDesc(0))
        inactive = Document(dom.XMLDesc(flag('VIR_DOMAIN_XML_INACTIVE'))) if not self.check_mode else None
        for difference in differences:
            if difference.option.name not in ('disks', 'interfaces') or inactive is None:
                continue
            tag = 'disk' if difference.option.name == 'disks' else 'interface'
            live_keys = {_device_key(live_doc, e) for e in live_doc.findall('devices/' + tag)}
            for elem in inactive.findall('devices/' + tag):
                if _device_key(inactive, elem) in live_keys:
                    continue
                try:
                    dom.attachDeviceFlags(ET.tostring(elem, encoding='unicode'), flag('VIR_DOMAIN_AFFECT_LIVE'))
                except Exception as exc:  # libvirtError: the guest or bus cannot take it live
                    warnings.append('could not hot-plug a %s into %s: %s' % (tag, dom.name(), exc))
                    ok = False
        return ok

    def _restart(self, dom: Any, params: Dict[str, Any], changes: Changes) -> None:
        self._stop(dom, params, changes, 'restart %s: shut down' % dom.name())
        with mapped('vm %s: start' % dom.name()):
            changes.act('restart %s: start' % dom.name(), dom.create)

    def _stop(self, dom: Any, params: Dict[str, Any], changes: Changes, description: str) -> None:
        name = dom.name()
        if dom.state()[0] == _PAUSED:
            with mapped('vm %s: resume before shutdown' % name):
                changes.act('resume %s' % name, dom.resume)
        with mapped('vm %s: shutdown' % name):
            changes.act(description, _graceful_shutdown, dom)
        if self.check_mode:
            return
        try:
            wait_until(lambda: not dom.isActive(), params['shutdown_timeout'], 'vm %s to shut down' % name)
        except FvTimeout:
            with mapped('vm %s: force off' % name):
                changes.act('force off %s after %ss' % (name, params['shutdown_timeout']), _destroy, dom)

    def _power(self, dom: Any, params: Dict[str, Any], changes: Changes, current: int) -> None:
        state = params['state']
        if state == 'present':
            return
        name = params['name']
        if state in ('running', 'paused') and current in (_SHUTOFF, _CRASHED):
            with mapped('vm %s: start' % name):
                changes.act('start %s' % name, dom.create if dom is not None else None)
            current = _RUNNING
        if state == 'running' and current == _PAUSED:
            with mapped('vm %s: resume' % name):
                changes.act('resume %s' % name, dom.resume)
            current = _RUNNING
        if state == 'paused' and current != _PAUSED:
            with mapped('vm %s: pause' % name):
                changes.act('pause %s' % name, dom.suspend if dom is not None else None)
            current = _PAUSED
        if state == 'stopped' and current not in (_SHUTOFF, _CRASHED):
            self._stop(dom, params, changes, 'shut down %s' % name)
            current = _SHUTOFF
        if params.get('wait') and not self.check_mode and dom is not None:
            want = {'running': (_RUNNING, _BLOCKED), 'paused': (_PAUSED,), 'stopped': (_SHUTOFF, _CRASHED)}[state]
            wait_until(lambda: dom.state()[0] in want, params['wait_timeout'], 'vm %s to be %s' % (name, state))

    def _remove(self, plan: Plan, changes: Changes) -> Dict[str, Any]:
        dom, name = plan.dom, plan.name
        if dom is None:
            return {'changed': False, 'actions': [], 'reboot_required': False, 'changes': {},
                    'diff': {'before': {'state': 'absent'}, 'after': {'state': 'absent'}}, 'vm': {}, 'warnings': []}
        before = self.describe(dom, name)
        if dom.isActive():
            with mapped('vm %s: destroy' % name):
                changes.act('force off %s' % name, _destroy, dom)
        volumes = [d for d in before['disks'] if d['device'] == 'disk' or (d['name'] or '').endswith('-cidata.iso')]
        with mapped('vm %s: undefine' % name):
            changes.act('undefine %s (and its NVRAM)' % name, _undefine, dom)
        if plan.params.get('remove_volumes'):
            for disk in volumes:
                vol = self._disk_volume(disk)
                if vol is not None:
                    with mapped('vm %s: delete volume %s' % (name, vol.path())):
                        changes.act('delete volume %s' % vol.path(), vol.delete, 0)
        return {'changed': True, 'actions': changes.actions, 'reboot_required': False, 'changes': {},
                'diff': {'before': {'state': before['state']}, 'after': {'state': 'absent'}}, 'vm': {},
                'warnings': []}

    def _disk_volume(self, disk: Dict[str, Any]) -> Any:
        try:
            if disk.get('pool') and disk.get('name'):
                return self.volumes.lookup(disk['pool'], disk['name'])
            if disk.get('path'):
                return self.conn.storageVolLookupByPath(disk['path'])
        except Exception:
            return None
        return None

    def describe(self, dom: Any, name: Optional[str] = None, doc: Optional[Document] = None,
                 state: Optional[int] = None, autostart: Optional[bool] = None,
                 actual: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The vm_info view of a domain: every table option as it is, plus runtime facts (read
        here unless the caller has them)."""
        with mapped('vm %s' % (name or dom.name())):
            if doc is None:
                doc = Document(dom.XMLDesc(flag('VIR_DOMAIN_XML_INACTIVE')))
            if state is None:
                state = dom.state()[0]
            if autostart is None:
                autostart = bool(dom.autostart())
            result = {key: _public(value) for key, value in (actual or view(VM_OPTIONS, doc)).items()}
            result.update({
                'name': dom.name(), 'uuid': dom.UUIDString(), 'state': STATE_NAMES.get(state, 'unknown'),
                'autostart': autostart, 'owned': doc.owner() == OWNER,
                'console_log': doc.attr('devices/serial/log', 'file'),
                'id': dom.ID() if state not in (_SHUTOFF, _CRASHED) else None,
            })
        if result['virt_type'] is None:
            result['virt_type'] = doc.root.get('type')
        return result


def _seed_read(doc: Document) -> Optional[str]:
    return doc.get_meta('cloud-init')


def _seed_write(doc: Document, digest: str) -> None:
    doc.set_meta('cloud-init', digest)


_SEED_OPTION = Option('cloud_init', read=_seed_read, write=_seed_write, apply=_next_boot)


def _public(value: Any) -> Any:
    """A value as the user sees it: internal (underscore) keys of devices dropped."""
    if isinstance(value, list):
        return [{k: v for k, v in item.items() if not k.startswith('_') and v is not None}
                if isinstance(item, dict) else item for item in value]
    return value


def _device_key(doc: Document, elem: ET.Element) -> Tuple[Optional[str], ...]:
    return (doc.attr('mac', 'address', elem), doc.attr('source', 'volume', elem),
            doc.attr('source', 'file', elem), doc.attr('target', 'dev', elem))


def _first_pool(params: Dict[str, Any]) -> str:
    for disk in params.get('disks') or []:
        if disk.get('pool'):
            return disk['pool']
    return 'default'


def _graceful_shutdown(dom: Any) -> None:
    try:
        dom.shutdown()
    except Exception as exc:
        if libvirt is not None and isinstance(exc, libvirt.libvirtError) and not dom.isActive():
            return  # it went down on its own meanwhile
        raise


def _undefine(dom: Any) -> None:
    flags = (flag('VIR_DOMAIN_UNDEFINE_NVRAM') | flag('VIR_DOMAIN_UNDEFINE_MANAGED_SAVE')
             | flag('VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA') | flag('VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA'))
    try:
        dom.undefineFlags(flags)
    except Exception as exc:
        # Drivers without NVRAM or checkpoints (the test driver) refuse those flags.
        if libvirt is None or not isinstance(exc, libvirt.libvirtError) or \
                exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
            raise
        dom.undefineFlags(flag('VIR_DOMAIN_UNDEFINE_MANAGED_SAVE') | flag('VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA'))


def _destroy(dom: Any) -> None:
    try:
        dom.destroy()
    except Exception as exc:
        if libvirt is not None and isinstance(exc, libvirt.libvirtError) and not dom.isActive():
            return
        raise
