# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A QEMU server: a libvirt domain that plays the bare-metal box a firmvisor image runs on.

Its flash device is a qcow2 overlay on the image's base volume (imported once per image into the
pool, named by its version and digest), its seed an ISO labelled FVSEED on a SATA cdrom, its data
disks plain volumes (for the pools of the VMs it will run), a watchdog that resets it when it hangs,
NICs on libvirt networks, and its management NIC QEMU user networking restricted to one SSH forward
on 127.0.0.1. The server is a VM to the ``vm`` resource; this resource adds the image, the seed, the
reflash and the wait for the host to be ready.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import (
    ABSENT, Action, Actual, Handle, Note, Plan,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import Resource
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import mapped
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import VM_ARGSPEC
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.power import Power
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.resource import Vm
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.probe import (
    console_says, free_port, load_image, ssh_answers, volume_version,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.seed import build_seed, write_seed_iso

ADDRESS = '127.0.0.1'
_FORWARD = re.compile(r'hostfwd=tcp:127\.0\.0\.1:(\d+)-:(\d+)')
SSH = 22
VM_DEFAULTS = {key: spec.get('default') for key, spec in VM_ARGSPEC.items()}


def management(port: int, forwards: Sequence[Mapping[str, int]] = ()) -> List[str]:
    """QEMU arguments of the management NIC: user networking that reaches nothing but the SSH
    forward (and the declared forwards) on 127.0.0.1, at a PCI address before libvirt's own NICs
    (the image's first NIC)."""
    rules = [(port, SSH)] + [(f['port'], f['server_port']) for f in forwards]
    return ['-netdev', ','.join(['user,id=mgmt,restrict=on'] +
                                ['hostfwd=tcp:%s:%d-:%d' % (ADDRESS, host, inside) for host, inside in rules]),
            '-device', 'virtio-net-pci,netdev=mgmt,addr=0x10']


def forwarded(qemu_args: Optional[Sequence[str]]) -> List[Dict[str, int]]:
    """The management NIC's forwards on 127.0.0.1, in order: [{port, server_port}]."""
    for arg in qemu_args or []:
        if arg.startswith('user,id=mgmt,'):
            return [{'port': int(host), 'server_port': int(inside)} for host, inside in _FORWARD.findall(arg)]
    return []


def forwarded_port(qemu_args: Optional[Sequence[str]]) -> Optional[int]:
    """The port on 127.0.0.1 forwarded to the server's SSH."""
    return next((f['port'] for f in forwarded(qemu_args) if f['server_port'] == SSH), None)


def other_forwards(qemu_args: Optional[Sequence[str]]) -> List[Dict[str, int]]:
    """The forwards besides the SSH one (the first forward to port 22)."""
    rules = forwarded(qemu_args)
    ssh = next((f for f in rules if f['server_port'] == SSH), None)
    return [f for f in rules if f is not ssh]


def uri(port: int, key: Optional[str] = None) -> str:
    """The libvirt URI of the server's own libvirtd, over SSH through the forward."""
    return 'qemu+ssh://root@%s:%d/system%s' % (ADDRESS, port, '?keyfile=%s' % key if key else '')


class QemuServer(Resource):
    noun = 'server'

    def __init__(self, conn: Any, check_mode: bool = False) -> None:
        super().__init__(check_mode)
        self.conn = conn
        self.vm = Vm(conn, check_mode)
        self.volumes = self.vm.volumes

    def what(self, name: str) -> str:
        return 'server %s' % name

    @staticmethod
    def names(name: str) -> Dict[str, str]:
        return {'flash': '%s-flash.qcow2' % name, 'seed': '%s-seed.iso' % name}

    # ---- reading --------------------------------------------------------------------------------
    def read(self, keys: Sequence[Any]) -> Dict[Any, Optional[Actual]]:
        domains = self.vm.read(keys)
        result: Dict[Any, Optional[Actual]] = {}
        for name, actual in domains.items():
            if actual is None:
                result[name] = None
                continue
            flash = next((d for d in actual.values.get('disks') or [] if d['name'] == self.names(name)['flash']), None)
            image = None
            if flash is not None and flash['pool']:
                volume = self.volumes.read([(flash['pool'], flash['name'])])[(flash['pool'], flash['name'])]
                backing = volume.runtime['backing'] if volume is not None else None
                image = backing.rsplit('/', 1)[-1] if backing else None
            qemu_args = actual.values.get('qemu_args')
            runtime = dict(actual.runtime, image=image, port=forwarded_port(qemu_args),
                           forwards=other_forwards(qemu_args), pool=flash['pool'] if flash else None)
            result[name] = Actual(actual.obj, actual.doc, actual.values, runtime)
        return result

    def view(self, key: Any, actual: Optional[Actual]) -> Dict[str, Any]:
        if actual is None:
            return dict(ABSENT)
        return self.project(key, self.vm.view(key, actual), actual.runtime['image'], actual.runtime['port'],
                            actual.runtime['pool'], actual.runtime['forwards'])

    def project(self, name: str, vm: Mapping[str, Any], image: Optional[str], port: Optional[int],
                pool: Optional[str], forwards: Sequence[Mapping[str, int]]) -> Dict[str, Any]:
        """The server as results show it: its VM's view, seen as a server."""
        own = set(self.names(name).values())
        return {
            'name': name, 'driver': 'qemu', 'state': vm.get('state'), 'uuid': vm.get('uuid'),
            'image': image, 'version': volume_version(image),
            'address': ADDRESS if port else None, 'port': port, 'uri': uri(port) if port else None,
            'forwards': [dict(f) for f in forwards],
            'vcpus': vm.get('vcpus'), 'memory': vm.get('memory'), 'firmware': vm.get('firmware'), 'pool': pool,
            'data_disks': [d['name'] for d in vm.get('disks') or [] if d.get('name') not in own
                           and d.get('device') == 'disk'],
            'networks': [n.get('network') or n.get('bridge') for n in vm.get('interfaces') or []],
            'console_log': vm.get('console_log'),
        }

    def result(self, plan: Plan, view: Mapping[str, Any], notes: Sequence[Note]) -> Dict[str, Any]:
        server = {} if view.get('state') == 'absent' else dict(view)
        return {'server': server, 'address': server.get('address'), 'port': server.get('port'),
                'version': server.get('version'), 'uri': server.get('uri')}

    # ---- planning -------------------------------------------------------------------------------
    def plan(self, params: Mapping[str, Any], actual: Optional[Actual]) -> Plan:
        name = params['name']
        what = self.what(name)
        if params['state'] == 'absent':
            return self._removal(params, actual)
        try:
            image = load_image(params['image'])
            seed = build_seed(params.get('hostname') or name, params['ssh_authorized_keys'] or [],
                              params.get('network'))
        except FvError as exc:
            raise FvError('%s: %s' % (what, exc))
        pool, names = params['pool'], self.names(name)
        port = actual.runtime['port'] if actual is not None and actual.runtime['port'] else None
        port = params.get('ssh_port') or port or free_port(ADDRESS)
        forwards = self._forwards(params, actual, port)
        try:
            base_path = '%s/%s' % (self._pool_path(pool), image.volume)
        except FvError as exc:
            raise FvError('%s: %s' % (what, exc))
        creating = actual is None
        outdated = actual is not None and actual.runtime['image'] != image.volume
        flashing = creating or (outdated and bool(params.get('reflash')))
        children: List[Plan] = []
        base_key = (pool, image.volume)
        if flashing and self.volumes.read([base_key])[base_key] is None:
            children.append(self.volumes.plan({'pool': pool, 'name': image.volume, 'source': image.disk,
                                               'format': 'raw'}, None))
        flash_spec = {'pool': pool, 'name': names['flash'], 'source': base_path, 'backing': True,
                      'size': '%db' % image.disk_size, 'backing_format': 'raw'}
        seed_spec = {'pool': pool, 'name': names['seed'], 'format': 'iso'}

        def make_seed(path: str) -> None:
            write_seed_iso(seed, path)

        warnings: List[str] = []
        actions: List[Action] = []
        facts: Dict[str, Any] = {'reflash_required': False}
        if creating:
            children.append(self.volumes.plan(flash_spec, None))
            children.append(self.volumes.plan(seed_spec, None, maker=make_seed))
        vm_plan = self.vm.plan(self._vm_params(params, name, port, forwards, planned=creating,
                                               tcg=self._tcg(params, actual)), actual)
        children.append(vm_plan)
        handle = Handle(actual.obj if actual is not None else None)
        starts = creating or actual.runtime['state'] in ('stopped', 'crashed')
        if flashing and not creating:
            found = self.volumes.read([(pool, names['flash']), (pool, names['seed'])])
            power = Power(handle, name, self.waiter, {'wait': True, 'shutdown_timeout': params['shutdown_timeout']})
            if actual.runtime['state'] not in ('stopped', 'crashed'):
                actions.append(Action('force off %s to reflash it' % name, power.force_off))
            actions += self.volumes.plan(flash_spec, found[(pool, names['flash'])], replace=True, besides=[name]).actions
            actions += self.volumes.plan(seed_spec, found[(pool, names['seed'])], maker=make_seed, replace=True,
                                         besides=[name]).actions
            actions.append(power.start('start %s on image %s' % (name, image.version)))
            starts = True
        elif outdated:
            facts['reflash_required'] = True
            warnings.append('%s runs %s, %s is declared: not reflashed (reflash=true writes the new image and '
                            'a fresh state; data disks are kept)' % (what, actual.runtime['image'], image.volume))
        if params.get('wait', True) and (starts or not ssh_answers(ADDRESS, port, timeout=2)):
            # Started by this run, or running but not answering yet (an earlier run timed out).
            actions.append(self._wait_ready(name, port, params['wait_timeout']))

        flashed = image.volume if flashing else actual.runtime['image']
        after = self.project(name, vm_plan.after, flashed, port, pool if creating else actual.runtime['pool'],
                             forwards)
        return Plan(self, name, what, self.view(name, actual), after,
                    ('state', 'version', 'port', 'forwards', 'vcpus', 'memory', 'data_disks', 'networks'),
                    runtime={'state': 'running', 'image': flashed}, actions=tuple(actions),
                    children=tuple(children), warnings=tuple(warnings), facts=facts)

    def _forwards(self, params: Mapping[str, Any], actual: Optional[Actual], port: int) -> List[Dict[str, int]]:
        """The declared forwards besides SSH (the current ones when none are declared), checked."""
        declared = params.get('forwards')
        if declared is None:
            return list(actual.runtime['forwards']) if actual is not None else []
        forwards = [{'port': f['port'], 'server_port': f['server_port']} for f in declared]
        ports = [port] + [f['port'] for f in forwards]
        for rule in forwards:
            for key in ('port', 'server_port'):
                if not 0 < rule[key] < 65536:
                    raise FvError('%s: forwards: %s %d is not a TCP port' % (self.what(params['name']), key, rule[key]))
        taken = sorted(p for p in set(ports) if ports.count(p) > 1)
        if taken:
            raise FvError('%s: forwards: port %s on %s is given twice (ssh_port is %d)'
                          % (self.what(params['name']), ', '.join(map(str, taken)), ADDRESS, port))
        return forwards

    def _tcg(self, params: Mapping[str, Any], actual: Optional[Actual]) -> bool:
        """Whether the server's CPU is emulated (TCG): as declared, else its domain's type, else the host's."""
        declared = params.get('virt_type') or 'auto'
        if declared == 'auto':
            declared = actual.doc.root.get('type') if actual is not None else self.vm.virt_type()
        return declared == 'qemu'

    def _vm_params(self, params: Mapping[str, Any], name: str, port: int, forwards: Sequence[Mapping[str, int]],
                   planned: bool, tcg: bool) -> Dict[str, Any]:
        names = self.names(name)
        pool = params['pool']
        disks: List[Dict[str, Any]] = [{'pool': pool, 'name': names['flash'], 'boot': 1, 'bus': 'virtio',
                                        '_planned': planned}]
        for index, data in enumerate(params.get('data_disks') or []):
            disks.append({'pool': data.get('pool') or pool, 'name': data.get('name') or '%s-data%d' % (name, index),
                          'size': data['size'], 'bus': 'virtio'})
        disks.append({'pool': pool, 'name': names['seed'], 'device': 'cdrom', 'format': 'raw', 'bus': 'sata',
                      '_planned': planned})
        return dict(VM_DEFAULTS, name=name, state='running', wait=False, virt_type=params.get('virt_type'),
                    machine='q35', firmware=params['firmware'], vcpus=params['vcpus'], memory=params['memory'],
                    watchdog='i6300esb', disks=disks,
                    # Under TCG the server's CPU offers no SVM/VMX: its kvm_amd on QEMU's emulated SVM
                    # has locked up a CPU in libvirt's capability probe on a first boot, and a TCG server
                    # cannot run KVM guests anyway (its libvirt then probes QEMU once, for TCG).
                    nested_virtualization=not tcg,
                    interfaces=[{'network': network} for network in params.get('networks') or []],
                    qemu_args=management(port, forwards), autostart=params.get('autostart'),
                    shutdown_timeout=params['shutdown_timeout'])

    def _pool_path(self, pool: str) -> str:
        """Where the pool keeps its volumes (the base image's path is known before it exists)."""
        found = self.volumes.pool(pool)
        with mapped('storage pool %r' % pool):
            path = Document(found.XMLDesc(0)).text('target/path')
        if not path:
            raise FvError('storage pool %r has no target path: a server needs a dir or fs pool' % pool)
        return path

    def _wait_ready(self, name: str, port: int, timeout: int) -> Action:
        def ready() -> bool:
            log = self.vm.view(name, self.vm.read([name])[name]).get('console_log')
            return (console_says(log) or not _readable(log)) and ssh_answers(ADDRESS, port)

        def run() -> None:
            self.waiter.wait(ready, timeout, 'server %s to be ready (console: firmvisor ready; SSH on %s:%d)'
                             % (name, ADDRESS, port), interval=2)
        return Action('wait until %s is ready (firmvisor ready; SSH on %s:%d)' % (name, ADDRESS, port), run)

    def _removal(self, params: Mapping[str, Any], actual: Optional[Actual]) -> Plan:
        name = params['name']
        if actual is None:
            return Plan(self, name, self.what(name), dict(ABSENT), dict(ABSENT), ('state',))
        vm_plan = self.vm.plan(dict(VM_DEFAULTS, name=name, state='absent'), actual)
        names = self.names(name)
        disks = actual.values.get('disks') or []
        own = [(d['pool'], d['name']) for d in disks if d['name'] in names.values() and d['pool']]
        data = [(d['pool'], d['name']) for d in disks if d['name'] not in names.values() and d['pool']
                and d['device'] == 'disk']
        doomed = own + (data if params.get('remove_disks') else [])
        actions: List[Action] = []
        warnings: List[str] = []
        for key, volume in self.volumes.read(doomed).items():
            try:
                actions += self.volumes.plan({'pool': key[0], 'name': key[1], 'state': 'absent'}, volume,
                                             besides=[name]).actions
            except FvError as exc:
                warnings.append('%s: %s' % (self.what(name), exc))
        if data and not params.get('remove_disks'):
            warnings.append('%s: data disks kept: %s (remove_disks=true deletes them)'
                            % (self.what(name), ', '.join('%s/%s' % key for key in data)))
        return Plan(self, name, self.what(name), self.view(name, actual), dict(ABSENT), ('state',),
                    actions=tuple(actions), children=(vm_plan,), warnings=tuple(warnings))


def _readable(path: Optional[str]) -> bool:
    try:
        with open(path or '', 'rb'):
            return True
    except OSError:
        return False
