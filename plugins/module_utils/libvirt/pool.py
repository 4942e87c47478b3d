# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage pools ("datastores"): the option table of ``pool`` and its own libvirt calls.

A pool's data (its directory, file system, volume group and volumes) is never deleted unless
``delete_contents`` says so; building a new pool never overwrites what is already on its device.
A change of an active pool needs it stopped and redefined: refused unless ``recreate``.
"""

from __future__ import annotations

import posixpath
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import Option, argspec, attr_option
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import Action, Actual, Handle, Note
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.values import drop_none
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document, element, escape
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import (
    CONNECTION_ARGSPEC, error_text, flag, libvirt, lookup_pool, mapped,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.objects import STATES, DefinedObject

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
    # Not part of the XML: converged by the lifecycle.
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


def validate(name: str, params: Mapping[str, Any], doc: Document) -> None:
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


class Pool(DefinedObject):
    noun = 'storage pool'
    kind = 'pool'
    inactive_flag = 'VIR_STORAGE_XML_INACTIVE'
    table = POOL_OPTIONS
    refuse_without_recreate = True
    result_key = 'pool'

    def lookup(self, name: str) -> Any:
        return lookup_pool(self.conn, name)

    def define(self, doc: Document) -> Any:
        return self.conn.storagePoolDefineXML(doc.tostring(), 0)

    def start(self, obj: Any) -> None:
        obj.create(0)

    def new_document(self, name: str) -> Document:
        return new_pool(name)

    def runtime(self, obj: Any, active: bool) -> Dict[str, Any]:
        _state, capacity, allocation, available = obj.info()
        return {'capacity': capacity, 'allocation': allocation, 'available': available,
                'volumes': sorted(obj.listVolumes()) if active else []}

    def validate(self, params: Mapping[str, Any], desired: Mapping[str, Any], doc: Document) -> None:
        validate(params['name'], params, doc)

    def built(self, handle: Handle, doc: Document) -> List[Action]:
        """Build the pool (make its directory, file system or volume group), never overwriting data;
        an empty directory this run made goes again if a later step fails."""
        name, kind = doc.text('name'), doc.root.get('type')
        flags = flag('VIR_STORAGE_POOL_BUILD_NO_OVERWRITE', 4) if kind in DEVICE_TYPES else 0
        description = 'build storage pool %s' % name
        if flags:
            description += ' (never overwriting an existing file system or volume group)'

        def run() -> Optional[Note]:
            try:
                handle.obj.build(flags)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == flag('VIR_ERR_STORAGE_POOL_BUILT', -1):
                    # Already built (a disk or volume group that held this pool before): used as it is.
                    return Note('storage pool %r: not built, using what is there: %s' % (name, error_text(exc)))
                raise FvError('storage pool %r: build: %s' % (name, error_text(exc)))
            return None
        if kind == 'dir':
            return [Action(description, run, handle.call('delete', 0),
                           'remove the empty directory of storage pool %s' % name)]
        return [Action(description, run)]

    def removal(self, handle: Handle, params: Mapping[str, Any],
                actual: Actual) -> Tuple[List[Action], List[Action], bool]:
        if not params.get('delete_contents'):
            return [], [], False
        name = params['name']
        first: List[Action] = []
        started = not actual.runtime['active']
        if started:
            # Volumes are only known to a running pool.
            first.append(Action('start storage pool %s to delete its volumes' % name, lambda: self.start(handle.obj)))
        if actual.runtime['active']:
            first += [self._delete_volume(handle, name, volume) for volume in actual.runtime['volumes']]
        else:
            first.append(Action('delete every volume of storage pool %s' % name, lambda: self._delete_all(handle, name)))
        then = [Action('delete storage pool %s (its directory, file system or volume group)' % name,
                       handle.call('delete', 0))]
        return first, then, started

    def _delete_volume(self, handle: Handle, pool: str, volume: str) -> Action:
        def run() -> None:
            with mapped('storage pool %r: delete volume %s' % (pool, volume)):
                handle.obj.storageVolLookupByName(volume).delete(0)
        return Action('delete volume %s/%s' % (pool, volume), run)

    def _delete_all(self, handle: Handle, pool: str) -> None:
        for volume in sorted(handle.obj.listVolumes()):
            self._delete_volume(handle, pool, volume).run()
