# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage pools ("datastores"): the option table of ``pool``, and the service that converges one pool.

``prepare`` validates a spec and reads the pool (no change); ``converge`` carries out the plan.
A pool's data (its directory, file system, volume group and volumes) is never deleted unless
``delete_contents`` says so; building a new pool never overwrites what is already on its device.
"""

from __future__ import annotations

import posixpath
from typing import Any, Dict, List, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.common import (
    Changes, FvError, drop_none,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import (
    CONNECTION_ARGSPEC, error_text, flag, libvirt, lookup_pool, mapped, persistent_xml,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.compare import (
    Plan, apply, compare, desired_values,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import (
    Option, argspec, attr_option, view,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document, element, escape

STATES = ('present', 'active', 'inactive', 'absent')
TYPES = ('dir', 'fs', 'logical', 'netfs')
# Pool types whose build writes onto a device: built with NO_OVERWRITE, so existing data stays.
DEVICE_TYPES = ('fs', 'logical')

SOURCE_SPEC = dict(
    device=dict(type='list', elements='str'),
    host=dict(type='str'),
    dir=dict(type='str'),
    name=dict(type='str'),
    format=dict(type='str'),
)


# ---- reading the XML ----------------------------------------------------------------------------
def pool_xml(pool: Any) -> Document:
    """The pool's persistent definition."""
    return Document(persistent_xml(pool, 'VIR_STORAGE_XML_INACTIVE'))


def normalize_path(value: Any, _context: Dict[str, Any]) -> str:
    path = str(value).strip()
    if not path.startswith('/'):
        raise FvError('path must be an absolute path on the hypervisor, got %r' % (value,))
    path = posixpath.normpath(path)
    return '/' + path.lstrip('/')  # normpath keeps a leading '//'


def read_path(doc: Document) -> Optional[str]:
    return doc.text('target/path')


def write_path(doc: Document, path: str) -> None:
    doc.set_text('target/path', path)


def read_source(doc: Document) -> Dict[str, Any]:
    devices = [elem.get('path') for elem in doc.findall('source/device')]
    return drop_none({
        'device': devices or None,
        'host': doc.attr('source/host', 'name'),
        'dir': doc.attr('source/dir', 'path'),
        'name': doc.text('source/name'),
        'format': doc.attr('source/format', 'type'),
    })


def normalize_source(value: Dict[str, Any], _context: Dict[str, Any]) -> Dict[str, Any]:
    """Declared source fields (undeclared ones are not managed); V('') removes a field."""
    result = {key: item for key, item in value.items() if item is not None and key in SOURCE_SPEC}
    if 'device' in result:
        devices = [result['device']] if isinstance(result['device'], str) else list(result['device'])
        for device in devices:
            if not str(device).startswith('/'):
                raise FvError('source.device must be absolute paths, got %r' % (device,))
        if len(set(devices)) != len(devices):
            raise FvError('source.device: the same device is listed twice')
        result['device'] = [str(device) for device in devices]
    return result


def source_equal(desired: Dict[str, Any], actual: Optional[Dict[str, Any]]) -> bool:
    actual = actual or {}
    for key, value in desired.items():
        if key == 'device':
            if sorted(value) != sorted(actual.get('device') or []):
                return False
        elif (value or None) != actual.get(key):
            return False
    return True


def write_source(doc: Document, source: Dict[str, Any]) -> None:
    holder = doc.ensure('source')
    if 'device' in source:
        kept = set()
        for elem in doc.findall('device', holder):
            if elem.get('path') in source['device'] and elem.get('path') not in kept:
                kept.add(elem.get('path'))
            else:
                doc.detach(holder, elem)
        for device in source['device']:
            if device not in kept:
                doc.append('source', element('device', path=device))
    for key, (path, attr) in (('host', ('host', 'name')), ('dir', ('dir', 'path')), ('format', ('format', 'type'))):
        if key in source:
            if source[key]:
                doc.set_attr(path, attr, source[key], holder)
            else:
                doc.remove(path, holder)
    if 'name' in source:
        doc.set_text('name', source['name'] or None, holder)


POOL_OPTIONS: List[Option] = [
    attr_option('type', '.', 'type', choices=list(TYPES), create_default='dir'),
    Option('path', read=read_path, write=write_path, normalize=normalize_path),
    Option('source', type='dict', suboptions=SOURCE_SPEC, read=read_source, write=write_source,
           normalize=normalize_source, equal=source_equal),
    # Not part of the XML: converged by the service.
    Option('autostart', type='bool'),
]

POOL_ARGSPEC = argspec(
    POOL_OPTIONS,
    name=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=list(STATES)),
    recreate=dict(type='bool', default=False),
    delete_contents=dict(type='bool', default=False),
    **CONNECTION_ARGSPEC,
)


def new_pool(name: str) -> Document:
    """The skeleton of a new pool; the table's writers fill in every declared option."""
    return Document("<pool type='dir'>\n  <name>%s</name>\n</pool>" % escape(name))



def describe_pool(pool: Any, doc: Optional[Document] = None) -> Dict[str, Any]:
    """The info view of a pool (also used by host_info): its definition, state, sizes and volumes."""
    name = pool.name()
    with mapped('storage pool %r' % name):
        if doc is None:
            doc = pool_xml(pool)
        active = bool(pool.isActive())
        _state, capacity, allocation, available = pool.info()
        result = {opt.name: opt.read(doc) for opt in POOL_OPTIONS if opt.read is not None}
        result.update({
            'name': name, 'uuid': pool.UUIDString(), 'active': active, 'autostart': bool(pool.autostart()),
            'persistent': bool(pool.isPersistent()), 'capacity': capacity, 'allocation': allocation,
            'available': available, 'volumes': sorted(pool.listVolumes()) if active else [],
        })
    return result


def validate(name: str, params: Dict[str, Any], doc: Document) -> None:
    """Check the pool as it would be after the run (declared values over the actual ones)."""
    kind = doc.root.get('type')
    path = read_path(doc)
    source = read_source(doc)
    what = 'storage pool %r' % name
    if kind in ('dir', 'fs', 'netfs') and not path:
        raise FvError('%s: type %s needs path (where the pool is on the hypervisor)' % (what, kind))
    declared = {k: v for k, v in (params.get('source') or {}).items() if v not in (None, '', [])}
    if kind == 'dir' and declared:
        raise FvError('%s: type dir takes no source (only path), got source %s' % (what, ', '.join(sorted(declared))))
    if kind == 'fs' and len(source.get('device') or []) != 1:
        raise FvError('%s: type fs needs source.device (exactly one block device holding the file system)' % what)
    if kind == 'netfs' and not (source.get('host') and source.get('dir')):
        raise FvError('%s: type netfs needs source.host and source.dir (the export)' % what)


# ---- the service --------------------------------------------------------------------------------
class PoolService:
    """Converges storage pools over one connection. No AnsibleModule inside."""

    def __init__(self, conn: Any, check_mode: bool = False) -> None:
        self.conn = conn
        self.check_mode = check_mode

    describe = staticmethod(describe_pool)

    # -- planning (reads only) --
    def prepare(self, params: Dict[str, Any]) -> Plan:
        name = params['name']
        what = 'storage pool %r' % name
        plan = Plan(params=params, obj=lookup_pool(self.conn, name))
        with mapped(what):
            plan.read(pool_xml)
        if params.get('state') == 'absent':
            return plan
        try:
            plan.desired = desired_values(POOL_OPTIONS, params, {'name': name})
        except FvError as exc:
            raise FvError('%s: %s' % (what, exc))
        if plan.obj is None:
            plan.desired.setdefault('type', 'dir')
        plan.differences = compare(POOL_OPTIONS, plan.desired, plan.doc)
        plan.planned = Document(plan.doc.tostring()) if plan.doc is not None else new_pool(name)
        apply(plan.planned, plan.differences)
        validate(name, params, plan.planned)
        if plan.differences and plan.active and params['state'] != 'inactive' and not params.get('recreate'):
            raise FvError(
                '%s is active: changing %s needs it stopped and redefined (its volumes are unavailable meanwhile); '
                'set recreate=true to stop, redefine and start it again, or state=inactive to leave it stopped'
                % (what, ', '.join('%s from %r to %r' % (d.option.name, d.before, d.after) for d in plan.differences)))
        return plan

    def ensure(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return self.converge(self.prepare(params))

    # -- carrying out --
    def converge(self, plan: Plan) -> Dict[str, Any]:
        params, name = plan.params, plan.name
        changes = Changes(self.check_mode)
        if params['state'] == 'absent':
            return self._remove(plan, changes)
        warnings: List[str] = []
        before = self._side(plan, plan.doc, plan.active, plan.autostart)
        pool, active = plan.obj, plan.active
        kind = plan.planned.root.get('type')
        if pool is None:
            pool = self._define(plan.planned, 'define storage pool %s' % name, name, changes)
            self._build(pool, name, kind, changes, warnings)
        else:
            if not plan.persistent:
                self._define(plan.doc, 'make storage pool %s persistent' % name, name, changes)
            if params['state'] == 'inactive' and active:
                self._act(changes, 'stop storage pool %s' % name, name, 'stop', pool.destroy)
                active = False
            if plan.differences and not active:
                pool = self._define(plan.planned, 'update storage pool %s' % name, name, changes) or pool
            elif plan.differences:  # active, and recreate was asked for (prepare refused otherwise)
                self._act(changes, 'recreate storage pool %s: stop' % name, name, 'stop', pool.destroy)
                pool = self._define(plan.planned, 'recreate storage pool %s: define' % name, name, changes) or pool
                self._build(pool, name, kind, changes, warnings)
                self._act(changes, 'recreate storage pool %s: start' % name, name, 'start', pool.create, 0)
        autostart = params.get('autostart')
        if autostart is not None and autostart != plan.autostart:
            self._act(changes, 'set autostart of storage pool %s to %s' % (name, autostart), name, 'autostart',
                      pool.setAutostart if pool is not None else None, int(autostart))
        start = params['state'] == 'active' or (params['state'] == 'present' and plan.obj is None)
        if start and not active:
            self._act(changes, 'start storage pool %s' % name, name, 'start',
                      pool.create if pool is not None else None, 0)
            active = True

        if self.check_mode or pool is None:
            after_doc = plan.planned
        else:
            with mapped('storage pool %r' % name):
                after_doc = pool_xml(pool)
        after = self._side(plan, after_doc, active, plan.autostart if autostart is None else autostart)
        if pool is not None and not self.check_mode:
            info = describe_pool(pool)
        else:
            info = {opt.name: opt.read(after_doc) for opt in POOL_OPTIONS if opt.read is not None}
            info.update({'name': name, 'uuid': plan.obj.UUIDString() if plan.obj is not None else None,
                         'active': active, 'persistent': True,
                         'autostart': plan.autostart if autostart is None else autostart,
                         'capacity': None, 'allocation': None, 'available': None,
                         'volumes': sorted(plan.obj.listVolumes()) if plan.obj is not None and plan.active else []})
        return {
            'changed': changes.changed, 'actions': changes.actions,
            'diff': {'before': before, 'after': after}, 'pool': info, 'warnings': warnings,
        }

    def _act(self, changes: Changes, description: str, name: str, verb: str, func: Any, *args: Any) -> Any:
        with mapped('storage pool %r: %s' % (name, verb)):
            return changes.act(description, func, *args)

    def _define(self, doc: Document, description: str, name: str, changes: Changes) -> Any:
        return self._act(changes, description, name, 'define', self.conn.storagePoolDefineXML, doc.tostring(), 0)

    def _build(self, pool: Any, name: str, kind: str, changes: Changes, warnings: List[str]) -> None:
        """Build the pool (make its directory, file system or volume group), never overwriting data."""
        flags = flag('VIR_STORAGE_POOL_BUILD_NO_OVERWRITE', 4) if kind in DEVICE_TYPES else 0
        description = 'build storage pool %s' % name
        if flags:
            description += ' (never overwriting an existing file system or volume group)'
        try:
            changes.act(description, pool.build if pool is not None else None, flags)
        except Exception as exc:
            if libvirt is None or not isinstance(exc, libvirt.libvirtError):
                raise
            if exc.get_error_code() == flag('VIR_ERR_STORAGE_POOL_BUILT', -1):
                # Already built (a disk or volume group that held this pool before): use it as it is.
                warnings.append('storage pool %r: not built, using what is there: %s' % (name, error_text(exc)))
                return
            raise FvError('storage pool %r: build: %s' % (name, error_text(exc)))

    def _side(self, plan: Plan, doc: Optional[Document], active: bool, autostart: bool) -> Dict[str, Any]:
        """One side of the diff: the declared options as ``doc`` has them, and the state."""
        if doc is None:
            return {'state': 'absent'}
        side: Dict[str, Any] = view(POOL_OPTIONS, doc, list(plan.desired))
        side['state'] = 'active' if active else 'inactive'
        if plan.params.get('autostart') is not None:
            side['autostart'] = autostart
        return side

    def _remove(self, plan: Plan, changes: Changes) -> Dict[str, Any]:
        pool, name = plan.obj, plan.name
        absent = {'state': 'absent'}
        if pool is None:
            return {'changed': False, 'actions': [], 'pool': {}, 'warnings': [],
                    'diff': {'before': absent, 'after': absent}}
        before = {'state': 'active' if plan.active else 'inactive'}
        active = plan.active
        if plan.params.get('delete_contents'):
            if not active:
                # Volumes are only known to a running pool.
                self._act(changes, 'start storage pool %s to delete its volumes' % name, name, 'start',
                          pool.create, 0)
                active = True
            volumes = [] if self.check_mode and not plan.active else self._volumes(pool, name)
            for vol_name, vol in volumes:
                self._act(changes, 'delete volume %s/%s' % (name, vol_name), name, 'delete volume %s' % vol_name,
                          vol.delete, 0)
            if self.check_mode and not plan.active:
                changes.act('delete every volume of storage pool %s' % name)
        if active:
            self._act(changes, 'stop storage pool %s' % name, name, 'stop', pool.destroy)
        if plan.params.get('delete_contents'):
            self._act(changes, 'delete storage pool %s (its directory, file system or volume group)' % name,
                      name, 'delete', pool.delete, 0)
        if plan.persistent:
            self._act(changes, 'undefine storage pool %s' % name, name, 'undefine', pool.undefine)
        return {'changed': changes.changed, 'actions': changes.actions, 'pool': {},
                'diff': {'before': before, 'after': absent}, 'warnings': []}

    def _volumes(self, pool: Any, name: str) -> List[Any]:
        with mapped('storage pool %r: list volumes' % name):
            return sorted(((vol.name(), vol) for vol in pool.listAllVolumes(0)), key=lambda item: item[0])
