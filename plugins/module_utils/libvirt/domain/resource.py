# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VM resource: reading domains, planning one from its spec, and its view.

A plan checks everything a spec refers to (pools, volumes, networks, bridges, the machine type)
and lets libvirt parse the definition it will write, before anything changes. Its children are the
disks' volumes, created first. Each change is classified live / next_boot / restart: added and
removed devices are hot-(un)plugged, restart-class changes restart the domain only with
``apply_changes: restart``, and everything else waits for the next boot (``reboot_required``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError, FvTimeout
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import (
    LIVE, NEXT_BOOT, RESTART, Change, compare, desired_values, planned_document, read_all, strongest,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import (
    ABSENT, Action, Actual, Handle, Note, Plan,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import Resource
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import (
    flag, libvirt, lookup_domain, lookup_network, mapped,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.devices import (
    describe_device, device_changes, device_key,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import (
    VM_OPTIONS, new_domain,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.power import (
    DOWN, STATE_NAMES, Power, is_active, undefine,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.seed import (
    build_iso, seed_files, seed_name,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.objects import autostart_action, defined_view
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.validation import Validation
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.volume import Volume

# Reading more domains than this lists them all once and reads their state and autostart in bulk.
BULK = 8
# How long a running guest gets to let go of a device being unplugged.
UNPLUG_TIMEOUT = 30
_DEVICE_OPTIONS = ('disks', 'interfaces')


def resolve_virt_type(conn: Any) -> str:
    """'kvm' when the host offers it for x86_64 guests, else 'qemu' (TCG)."""
    caps = Document(conn.getCapabilities())
    for guest in caps.findall('guest'):
        if caps.attr('arch', 'name', guest) == 'x86_64' and caps.find("arch/domain[@type='kvm']", guest) is not None:
            return 'kvm'
    return 'qemu'


def bulk_facts(conn: Any) -> Dict[str, Tuple[int, bool]]:
    """(state, autostart) of every domain in two calls, instead of two per domain."""
    try:
        states = {dom.name(): stats['state.state']
                  for dom, stats in conn.getAllDomainStats(flag('VIR_DOMAIN_STATS_STATE'), 0)}
        autostarted = {dom.name() for dom in conn.listAllDomains(flag('VIR_CONNECT_LIST_DOMAINS_AUTOSTART'))}
    except libvirt.libvirtError:  # a driver without bulk stats: each domain is asked itself
        return {}
    return {name: (state, name in autostarted) for name, state in states.items()}


def _first_pool(params: Mapping[str, Any]) -> str:
    for disk in params.get('disks') or []:
        if disk.get('pool'):
            return disk['pool']
    return 'default'


class Vm(Resource):
    noun = 'vm'
    table = VM_OPTIONS

    def __init__(self, conn: Any, check_mode: bool = False) -> None:
        super().__init__(check_mode)
        self.conn = conn
        self.volumes = Volume(conn, check_mode)
        self.validation = Validation(conn)
        self._virt_type: Optional[str] = None
        self._networks: Dict[str, Any] = {}
        self._bridges: Dict[str, Optional[bool]] = {}

    def what(self, name: str) -> str:
        return 'vm %s' % name

    # ---- reading --------------------------------------------------------------------------------
    def read(self, keys: Sequence[Any]) -> Dict[Any, Optional[Actual]]:
        if len(keys) > BULK:
            with mapped('listing domains'):
                domains = {dom.name(): dom for dom in self.conn.listAllDomains(0)}
                facts = bulk_facts(self.conn)
        else:
            domains = {name: lookup_domain(self.conn, name) for name in keys}
            facts = {}
        return {name: self.actual(domains[name], facts.get(name)) if domains.get(name) is not None else None
                for name in keys}

    def actual(self, dom: Any, facts: Optional[Tuple[int, bool]] = None) -> Actual:
        with mapped(self.what(dom.name())):
            doc = Document(dom.XMLDesc(flag('VIR_DOMAIN_XML_INACTIVE')))
            state, autostart = facts or (dom.state()[0], bool(dom.autostart()))
            name = STATE_NAMES.get(state, 'unknown')
            runtime = {'state': name, 'autostart': bool(autostart), 'uuid': dom.UUIDString(),
                       'id': dom.ID() if is_active(name) else None}
        return Actual(dom, doc, read_all(self.table, doc), runtime)

    def view(self, key: Any, actual: Optional[Actual]) -> Dict[str, Any]:
        if actual is None:
            return dict(ABSENT)
        result = dict(defined_view(key, actual), console_log=actual.doc.attr('devices/serial/log', 'file'))
        if result.get('virt_type') is None:
            result['virt_type'] = actual.doc.root.get('type')
        return result

    def result(self, plan: Plan, view: Mapping[str, Any], notes: Sequence[Note]) -> Dict[str, Any]:
        return {'vm': {} if view.get('state') == 'absent' else dict(view), 'changes': plan.reaches,
                'reboot_required': bool(plan.facts.get('reboot_required') or any(n.pending for n in notes))}

    def virt_type(self) -> str:
        if self._virt_type is None:
            with mapped('host capabilities'):
                self._virt_type = resolve_virt_type(self.conn)
        return self._virt_type

    # ---- planning -------------------------------------------------------------------------------
    def plan(self, params: Mapping[str, Any], actual: Optional[Actual]) -> Plan:
        name = params['name']
        what = self.what(name)
        handle = Handle(actual.obj if actual is not None else None)
        if params['state'] == 'absent':
            return self._removal(params, actual, handle)
        creating = actual is None
        context = {'name': name, 'default_pool': _first_pool(params), 'creating': creating,
                   'virt_type': self.virt_type() if creating else None}
        try:
            desired = desired_values(self.table, params, context, creating)
            children = self._volumes(params, desired, actual)
            self._check_interfaces(params, desired)
        except FvError as exc:
            raise FvError('%s: %s' % (what, exc))
        changes = compare(self.table, desired, actual.values if actual is not None else None)
        planned = planned_document(actual.doc if actual is not None else new_domain(name), changes, what,
                                   fresh=creating)
        xml = planned.tostring() if changes else ''
        if changes:
            self._validate(planned, xml, changes, creating, what)

        power = Power(handle, name, self.waiter, params)
        current = actual.runtime['state'] if actual is not None else 'stopped'
        wanted = params['state']
        actions: List[Action] = []
        reboot_required = False
        if creating:
            actions.append(self._define(handle, name, xml, 'define domain %s' % name))
        elif changes:
            actions.append(self._define(handle, name, xml, 'update domain %s' % name, actual.doc))
            if is_active(current) and wanted != 'stopped':
                if strongest(changes) == RESTART and params['apply_changes'] == 'restart':
                    actions += [power.shut_down('restart %s: shut down' % name, paused=current == 'paused'),
                                power.start('restart %s: start' % name)]
                    current = 'running'
                else:
                    actions += self._hotplug(handle, name, actual.doc, planned, changes)
                    reboot_required = any(c.reach in (NEXT_BOOT, RESTART) for c in changes)
        warnings: List[str] = []
        if actual is not None and changes and params.get('remove_volumes'):
            actions += self._detached_volumes(name, actual, planned, warnings)
        autostart = params.get('autostart')
        if autostart is not None and (creating or autostart != actual.runtime['autostart']):
            before = bool(actual.runtime['autostart']) if actual is not None else False
            actions.append(autostart_action(handle, name, autostart, before))
        actions += power.transitions(current, wanted)

        state = current if wanted == 'present' else wanted
        runtime = dict(actual.runtime) if actual is not None else {'uuid': None, 'id': None}
        runtime.update(state=state, autostart=autostart if autostart is not None else runtime.get('autostart', False))
        shown = tuple(desired) + ('state',) + (('autostart',) if autostart is not None else ())
        declared = {'state': state} if wanted != 'present' else {}
        if autostart is not None:
            declared['autostart'] = autostart
        before = self.view(name, actual)
        if actions or children:
            after = self.view(name, Actual(handle.obj, planned, read_all(self.table, planned) if changes
                                           else actual.values, runtime))
        else:
            after = before  # nothing to do: the plan's after is what is
        return Plan(
            resource=self, key=name, what=what, before=before, after=after,
            shown=shown, desired=desired, runtime=declared, changes=tuple(changes), actions=tuple(actions),
            children=children, warnings=tuple(warnings), facts={'reboot_required': reboot_required})

    def _validate(self, planned: Document, xml: str, changes: Sequence[Change], creating: bool, what: str) -> None:
        """libvirt's checks: the host runs this machine and virt type, and parses the definition."""
        if creating or {'machine', 'virt_type'} & {c.name for c in changes}:
            self.validation.machine(planned.attr('os/type', 'arch') or 'x86_64', planned.attr('os/type', 'machine'),
                                    planned.root.get('type') or 'qemu', what)
        self.validation.definition('domain', xml, what)

    def _volumes(self, params: Mapping[str, Any], desired: Dict[str, Any], actual: Optional[Actual]) -> Tuple[Plan, ...]:
        """Each declared disk's volume exists or is planned; the seed's too. Marks the disks with
        the path and format of the volumes that exist (devices are matched on them)."""
        disks = desired.get('disks') or []
        keys = [(disk['pool'], disk['name']) for disk in disks]
        seed = desired.get('cloud_init')
        if seed is not None:
            keys.append((seed['pool'], seed_name(params['name'])))
        for pool in {key[0] for key in keys}:
            try:
                self.volumes.pool(pool)
            except FvError as exc:
                owner = next((d['name'] for d in disks if d['pool'] == pool), 'cloud-init seed')
                raise FvError('disk %s: %s' % (owner, exc))
        found = self.volumes.read(keys)
        children = []
        for disk in disks:
            volume = found[(disk['pool'], disk['name'])]
            if volume is not None:
                disk['_path'], disk['_format'] = volume.runtime['path'], volume.values['format']
            if disk.get('size') is not None or disk.get('source'):
                spec = {'pool': disk['pool'], 'name': disk['name'], 'size': disk.get('size'),
                        'format': disk.get('format'), 'source': disk.get('source'), 'backing': disk.get('backing')}
                child = self.volumes.plan(spec, volume)
                children.append(child)
                if volume is None:  # the disk's driver takes the format the volume is made with
                    disk['_format'] = child.after.get('format')
            elif volume is None and not disk.get('_planned'):  # _planned: a sibling plan creates it first
                raise FvError('disk volume %s/%s does not exist; give size or source to create it'
                              % (disk['pool'], disk['name']))
        if seed is not None:
            current = actual.values.get('cloud_init') if actual is not None else None
            key = (seed['pool'], seed_name(params['name']))
            if found[key] is None or current is None or current.get('digest') != seed['digest']:
                files = seed_files(params['name'], params['cloud_init'])
                children.append(self.volumes.plan({'pool': key[0], 'name': key[1], 'format': 'iso'}, found[key],
                                                  maker=lambda path: build_iso(files, path), replace=True,
                                                  besides=[params['name']]))
        return tuple(children)

    def _check_interfaces(self, params: Mapping[str, Any], desired: Dict[str, Any]) -> None:
        """Every interface's network exists (and runs, if the VM is to run) or its bridge exists."""
        running = params['state'] in ('running', 'paused')
        for index, nic in enumerate(desired.get('interfaces') or []):
            label = 'interface %d (%s)' % (index, nic['mac'])
            if 'network' in nic:
                if nic['network'] not in self._networks:
                    self._networks[nic['network']] = lookup_network(self.conn, nic['network'])
                net = self._networks[nic['network']]
                if net is None:
                    raise FvError('%s: network %r does not exist' % (label, nic['network']))
                if running and not net.isActive():
                    raise FvError('%s: network %r is not active' % (label, nic['network']))
            elif self._bridge_exists(nic['bridge']) is False:
                raise FvError('%s: bridge %r does not exist on the host' % (label, nic['bridge']))

    def _bridge_exists(self, bridge: str) -> Optional[bool]:
        """Whether the host has the bridge; None when libvirt cannot tell (no interface driver)."""
        if bridge not in self._bridges:
            try:
                self.conn.interfaceLookupByName(bridge)
                self._bridges[bridge] = True
            except libvirt.libvirtError as exc:
                missing = exc.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE
                self._bridges[bridge] = False if missing else None
        return self._bridges[bridge]

    # ---- actions --------------------------------------------------------------------------------
    def _define(self, handle: Handle, name: str, xml: str, description: str,
                previous: Optional[Document] = None) -> Action:
        def run() -> None:
            with mapped('vm %s: define' % name):
                handle.obj = self.conn.defineXML(xml)

        if previous is None:
            return Action(description, run, lambda: undefine(handle.obj), 'undefine domain %s' % name)
        return Action(description, run, lambda: self.conn.defineXML(previous.tostring()),
                      'restore the definition of %s' % name)

    def _hotplug(self, handle: Handle, name: str, before: Document, after: Document,
                 changes: Sequence[Change]) -> List[Action]:
        """Attach added and detach removed disks and NICs of the running domain."""
        if not any(c.name in _DEVICE_OPTIONS and c.reach == LIVE for c in changes):
            return []
        added, removed = device_changes(before, after)
        actions = [self._attach(handle, name, after, elem) for elem in added]
        actions += [self._detach(handle, name, before, elem) for elem in removed]
        return actions

    def _live_keys(self, handle: Handle) -> Tuple[Document, set]:
        live = Document(handle.obj.XMLDesc(0))
        return live, {device_key(live, e) for e in live.findall('devices/disk') + live.findall('devices/interface')}

    def _attach(self, handle: Handle, name: str, doc: Document, elem: ET.Element) -> Action:
        label = describe_device(doc, elem)

        def run() -> Optional[Note]:
            if device_key(doc, elem) in self._live_keys(handle)[1]:
                return None
            try:
                handle.obj.attachDeviceFlags(ET.tostring(elem, encoding='unicode'), flag('VIR_DOMAIN_AFFECT_LIVE'))
            except libvirt.libvirtError as exc:
                return Note('could not hot-plug %s into %s: %s; it is there from the next start'
                            % (label, name, exc.get_error_message()), pending=True)
            return None
        return Action('hot-plug %s into %s' % (label, name), run)

    def _detach(self, handle: Handle, name: str, doc: Document, elem: ET.Element) -> Action:
        label, key = describe_device(doc, elem), device_key(doc, elem)

        def run() -> Optional[Note]:
            live, keys = self._live_keys(handle)
            if key not in keys:
                return None
            live_elem = next(e for e in live.findall('devices/' + elem.tag) if device_key(live, e) == key)
            try:
                handle.obj.detachDeviceFlags(ET.tostring(live_elem, encoding='unicode'), flag('VIR_DOMAIN_AFFECT_LIVE'))
                self.waiter.wait(lambda: key not in self._live_keys(handle)[1], UNPLUG_TIMEOUT,
                                 'the guest of %s to release %s' % (name, label))
            except (libvirt.libvirtError, FvTimeout) as exc:
                reason = exc.get_error_message() if isinstance(exc, libvirt.libvirtError) else str(exc)
                return Note('could not hot-unplug %s from %s: %s; it goes at the next restart'
                            % (label, name, reason), pending=True)
            return None
        return Action('hot-unplug %s from %s' % (label, name), run)

    def _detached_volumes(self, name: str, actual: Actual, planned: Document, warnings: List[str]) -> List[Action]:
        """Delete the volumes of disks the spec removed (remove_volumes), unless another domain uses them."""
        kept = {(d['pool'], d['name']) for d in read_all(self.table, planned).get('disks') or []}
        gone = [d for d in actual.values.get('disks') or [] if d['pool'] and (d['pool'], d['name']) not in kept
                and d['device'] == 'disk']
        return self._delete_volumes(name, gone, warnings)

    def _delete_volumes(self, name: str, disks: Sequence[Dict[str, Any]], warnings: List[str]) -> List[Action]:
        actions: List[Action] = []
        keys = [(d['pool'], d['name']) for d in disks if d.get('pool') and d.get('name')]
        for key, volume in self.volumes.read(keys).items():
            try:
                actions += self.volumes.plan({'pool': key[0], 'name': key[1], 'state': 'absent'}, volume,
                                             besides=[name]).actions
            except FvError as exc:  # used by another domain: kept
                warnings.append('%s: %s' % (self.what(name), exc))
        return actions

    def _removal(self, params: Mapping[str, Any], actual: Optional[Actual], handle: Handle) -> Plan:
        name = params['name']
        if actual is None:
            return Plan(self, name, self.what(name), dict(ABSENT), dict(ABSENT), ('state',))
        power = Power(handle, name, self.waiter, params)
        actions: List[Action] = []
        warnings: List[str] = []
        if actual.runtime['state'] not in DOWN:
            actions.append(Action('force off %s' % name, power.force_off))
        previous = actual.doc.tostring()
        actions.append(Action('undefine %s (and its NVRAM)' % name, lambda: undefine(handle.obj),
                              lambda: self.conn.defineXML(previous), 'define %s again' % name))
        if params.get('remove_volumes'):
            disks = [d for d in actual.values.get('disks') or [] if d['device'] == 'disk']
            seed = actual.values.get('cloud_init')
            if seed and seed.get('pool'):
                disks.append({'pool': seed['pool'], 'name': seed_name(name)})
            actions += self._delete_volumes(name, disks, warnings)
        return Plan(self, name, self.what(name), self.view(name, actual), dict(ABSENT), ('state',),
                    actions=tuple(actions), warnings=tuple(warnings))
