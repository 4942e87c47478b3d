# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage volumes: create with a size, import from a local image, a URL or content made at run
time (a cloud-init seed), back onto an image, grow (never shrink) and delete. Serves the ``volume``
module and the disks of ``vm``/``vms``. A volume that a domain uses is never deleted."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import Option
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import ABSENT, Action, Actual, Handle, Note, Plan
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import Resource
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.values import to_bytes
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document, element, sub
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import (
    CONNECTION_ARGSPEC, flag, lookup_pool, lookup_volume, mapped, upload_file,
)

FORMATS = ('qcow2', 'raw', 'iso')
QCOW2_MAGIC = b'QFI\xfb'

VOLUME_ARGSPEC = dict(
    pool=dict(type='str', required=True),
    name=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    size=dict(type='raw'),
    format=dict(type='str', choices=list(FORMATS)),
    source=dict(type='path'),
    url=dict(type='str'),
    checksum=dict(type='str'),
    backing=dict(type='bool', default=False),
    url_timeout=dict(type='int', default=600),
    **CONNECTION_ARGSPEC,
)
# What the volume's table compares after a run: what it was asked to be.
VOLUME_OPTIONS: List[Option] = [Option('format', read=lambda doc: doc.attr('target/format', 'type'))]
SHOWN = ('state', 'format', 'capacity', 'backing')
# Content made at run time: writes the image into the given path (a cloud-init seed).
Maker = Callable[[str], None]


def image_info(path: str) -> Tuple[str, int]:
    """(format, virtual size in bytes) of a local image file."""
    with open(path, 'rb') as handle:
        header = handle.read(32)
    if header[:4] == QCOW2_MAGIC and len(header) >= 32:
        return 'qcow2', struct.unpack('>Q', header[24:32])[0]
    return 'raw', os.path.getsize(path)


def verify_checksum(path: str, checksum: Optional[str]) -> None:
    """``checksum`` is ``ALGO:HEX`` (as get_url takes it) or a bare sha256 hex digest."""
    if not checksum:
        return
    algo, _colon, expected = checksum.partition(':') if ':' in checksum else ('sha256', '', checksum)
    try:
        digest = hashlib.new(algo.lower())
    except ValueError:
        raise FvError('checksum: unknown algorithm %r' % algo)
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    if digest.hexdigest() != expected.strip().lower():
        raise FvError('checksum mismatch for %s: expected %s, got %s:%s'
                      % (path, checksum, algo.lower(), digest.hexdigest()))


def volume_xml(name: str, capacity: int, fmt: str, backing: Optional[Tuple[str, str]] = None) -> str:
    vol = element('volume')
    sub(vol, 'name', name)
    sub(vol, 'capacity', str(capacity), unit='bytes')
    sub(sub(vol, 'target'), 'format', type=fmt)
    if backing:
        store = sub(vol, 'backingStore')
        sub(store, 'path', backing[0])
        sub(store, 'format', type=backing[1])
    doc = Document('<volume/>')
    doc.root = vol
    return doc.tostring()


def download(url: str, dest: str, timeout: int, what: str) -> str:
    from ansible.module_utils.urls import open_url  # imported late: only URL imports need it
    try:
        response = open_url(url, timeout=timeout)
        with open(dest, 'wb') as handle:
            shutil.copyfileobj(response, handle, 1 << 20)
    except Exception as exc:
        raise FvError('%s: cannot download %s: %s' % (what, url, exc))
    return dest


class Volume(Resource):
    """Volumes over one connection; each pool is looked up once, domains' disks read once."""
    noun = 'volume'
    table = VOLUME_OPTIONS

    def __init__(self, conn: Any, check_mode: bool = False) -> None:
        super().__init__(check_mode)
        self.conn = conn
        self._pools: Dict[str, Any] = {}
        self._refreshed: set = set()
        self._users: Optional[Dict[Tuple[str, ...], List[str]]] = None

    def key(self, params: Mapping[str, Any]) -> Tuple[str, str]:
        return params['pool'], params['name']

    def what(self, key: Tuple[str, str]) -> str:
        return 'volume %s/%s' % key

    def pool(self, name: str) -> Any:
        """An active pool, or an error naming it."""
        if name not in self._pools:
            pool = lookup_pool(self.conn, name)
            if pool is None:
                raise FvError('storage pool %r does not exist' % name)
            if not pool.isActive():
                raise FvError('storage pool %r is not active' % name)
            self._pools[name] = pool
        return self._pools[name]

    def lookup(self, pool_name: str, name: str) -> Optional[Any]:
        pool = self.pool(pool_name)
        vol = lookup_volume(pool, name)
        if vol is None and pool_name not in self._refreshed:
            # A file may have been put into the pool's directory behind libvirt's back.
            self._refreshed.add(pool_name)
            with mapped('storage pool %r: refresh' % pool_name):
                pool.refresh(0)
            vol = lookup_volume(pool, name)
        return vol

    def read(self, keys: Sequence[Any]) -> Dict[Any, Optional[Actual]]:
        result: Dict[Any, Optional[Actual]] = {}
        for key in keys:
            try:
                vol = self.lookup(*key)
            except FvError:
                vol = None  # a missing pool: plan() names it
            if vol is None:
                result[key] = None
                continue
            with mapped(self.what(key)):
                doc = Document(vol.XMLDesc(0))
                _type, capacity, allocation = vol.info()
                runtime = {'path': vol.path(), 'capacity': capacity, 'allocation': allocation,
                           'backing': doc.text('backingStore/path')}
            result[key] = Actual(vol, doc, {'format': doc.attr('target/format', 'type')}, runtime)
        return result

    def view(self, key: Any, actual: Optional[Actual]) -> Dict[str, Any]:
        if actual is None:
            return dict(ABSENT)
        result = {'name': key[1], 'pool': key[0], 'state': 'present'}
        result.update(actual.values)
        result.update(actual.runtime)
        return result

    def result(self, plan: Plan, view: Mapping[str, Any], notes: Sequence[Note]) -> Dict[str, Any]:
        return {'volume': {} if view.get('state') == 'absent' else dict(view)}

    # ---- who uses a volume ---------------------------------------------------------------------
    def users(self, key: Tuple[str, str], path: Optional[str], besides: Sequence[str] = ()) -> List[str]:
        """The domains (other than ``besides``) whose disks are this volume."""
        if self._users is None:
            self._users = {}
            with mapped('listing domains'):
                for dom in self.conn.listAllDomains(0):
                    doc = Document(dom.XMLDesc(flag('VIR_DOMAIN_XML_INACTIVE')))
                    for disk in doc.findall('devices/disk/source'):
                        idents = [('path', disk.get('file') or disk.get('dev'))]
                        if disk.get('pool') and disk.get('volume'):
                            idents.append(('vol', disk.get('pool'), disk.get('volume')))
                        for ident in idents:
                            if ident[-1]:
                                self._users.setdefault(ident, []).append(dom.name())
        found = self._users.get(('vol',) + tuple(key), []) + (self._users.get(('path', path), []) if path else [])
        return sorted(set(found) - set(besides))

    # ---- planning -------------------------------------------------------------------------------
    def plan(self, params: Mapping[str, Any], actual: Optional[Actual], maker: Optional[Maker] = None,
             replace: bool = False, besides: Sequence[str] = ()) -> Plan:
        """``maker`` writes the content at run time (instead of ``source``); ``replace`` recreates
        an existing volume with it; ``besides`` are domains whose use of the volume does not count
        (the VM being removed)."""
        key = self.key(params)
        what = self.what(key)
        try:
            self.pool(key[0])
        except FvError as exc:
            raise FvError('%s: %s' % (what, exc))
        handle = Handle(actual.obj if actual is not None else None)
        before = self.view(key, actual)
        warnings: List[str] = []
        if params.get('state') == 'absent':
            if actual is None:
                return Plan(self, key, what, before, dict(ABSENT), SHOWN)
            users = self.users(key, actual.runtime['path'], besides)
            if users:
                raise FvError('%s is used by %s: not deleted' % (what, ', '.join(users)))
            return Plan(self, key, what, before, dict(ABSENT), SHOWN,
                        actions=(self._delete(handle, key),), runtime={})
        size = to_bytes(params['size'], '%s: size' % what) if params.get('size') is not None else None
        source, url, fmt = params.get('source'), params.get('url'), params.get('format')
        if source and url:
            raise FvError('%s: give source or url, not both' % what)
        if params.get('backing') and not source:
            raise FvError('%s: backing needs source (the image on the hypervisor to back onto)' % what)
        if actual is not None and not replace:
            return self._plan_existing(key, what, handle, actual, size, fmt, warnings)
        actions: List[Action] = []
        if actual is not None:
            users = self.users(key, actual.runtime['path'], besides)
            if users:
                raise FvError('%s is used by %s: not replaced' % (what, ', '.join(users)))
            actions.append(self._delete(handle, key, ' (replaced)'))
        create, planned = self._plan_create(key, what, handle, params, size, fmt, maker)
        actions += create
        after = dict(before if actual is not None else {}, name=key[1], pool=key[0], state='present', **planned)
        desired = {'format': planned['format']} if planned.get('format') else {}
        return Plan(self, key, what, before, after, SHOWN, desired=desired, actions=tuple(actions),
                    warnings=tuple(warnings))

    def _plan_existing(self, key: Tuple[str, str], what: str, handle: Handle, actual: Actual, size: Optional[int],
                       fmt: Optional[str], warnings: List[str]) -> Plan:
        have = actual.values['format']
        if fmt and have not in (None, fmt):
            raise FvError('%s exists with format %s, declared %s: volumes are not converted' % (what, have, fmt))
        capacity = actual.runtime['capacity']
        actions = []
        after = self.view(key, actual)
        if size is not None and size > capacity:
            def grow() -> None:
                with mapped('%s: resize' % what):
                    handle.obj.resize(size, 0)
            actions.append(Action('grow %s to %d bytes' % (what, size), grow))
            after['capacity'] = size
        elif size is not None and size < capacity:
            warnings.append('%s is larger (%d bytes) than declared (%d bytes): volumes never shrink'
                            % (what, capacity, size))
        return Plan(self, key, what, self.view(key, actual), after, SHOWN, actions=tuple(actions),
                    warnings=tuple(warnings))

    def _plan_create(self, key: Tuple[str, str], what: str, handle: Handle, params: Mapping[str, Any],
                     size: Optional[int], fmt: Optional[str], maker: Optional[Maker]) -> Tuple[List[Action], Dict[str, Any]]:
        source, url = params.get('source'), params.get('url')
        if maker is not None or url:
            description = ('download %s into %s' % (url, what)) if url else 'write %s' % what
            return [self._import(handle, key, what, description, source=None, url=url, maker=maker, fmt=fmt,
                                 checksum=params.get('checksum'), size=size,
                                 url_timeout=params.get('url_timeout') or 600)], \
                {'format': fmt, 'capacity': size}
        if source and params.get('backing'):
            # The backing image is a path on the hypervisor; its size is read there by libvirt. A
            # backing volume this run creates first (a server's base image) has its format given.
            exists = os.path.exists(source)
            back_format = params.get('backing_format') or (image_info(source)[0] if exists else 'qcow2')
            capacity = size or (image_info(source)[1] if exists else None)
            if capacity is None:
                raise FvError('%s: size is required to back onto %s' % (what, source))
            xml = volume_xml(key[1], capacity, 'qcow2', backing=(source, back_format))
            return [self._create(handle, key, what, xml, 'create %s backed by %s' % (what, source))], \
                {'format': 'qcow2', 'capacity': capacity, 'backing': source}
        if source:
            if not os.path.isfile(source):
                raise FvError('%s: source %s is not a file' % (what, source))
            verify_checksum(source, params.get('checksum'))
            src_format, virtual = image_info(source)
            vol_format = fmt or src_format
            if vol_format != src_format and not (vol_format == 'iso' and src_format == 'raw'):
                raise FvError('%s: source %s is %s, declared format %s' % (what, source, src_format, vol_format))
            return [self._import(handle, key, what, 'import %s into %s' % (source, what), source=source, fmt=vol_format,
                                 size=size)], \
                {'format': vol_format, 'capacity': max(size or 0, virtual if vol_format == 'qcow2' else os.path.getsize(source))}
        if size is None:
            raise FvError('%s does not exist: give size (to create it), source or url' % what)
        vol_format = fmt or 'qcow2'
        return [self._create(handle, key, what, volume_xml(key[1], size, vol_format),
                             'create %s (%d bytes, %s)' % (what, size, vol_format))], \
            {'format': vol_format, 'capacity': size}

    # ---- actions --------------------------------------------------------------------------------
    def _create(self, handle: Handle, key: Tuple[str, str], what: str, xml: str, description: str) -> Action:
        def run() -> None:
            with mapped('%s: create' % what):
                handle.obj = self.pool(key[0]).createXML(xml, 0)
        return Action(description, run, handle.call('delete', 0), 'delete %s' % what)

    def _delete(self, handle: Handle, key: Tuple[str, str], note: str = '') -> Action:
        def run() -> None:
            with mapped('%s: delete' % self.what(key)):
                handle.obj.delete(0)
        return Action('delete %s%s' % (self.what(key), note), run)

    def _import(self, handle: Handle, key: Tuple[str, str], what: str, description: str, source: Optional[str],
                fmt: Optional[str], size: Optional[int], url: Optional[str] = None, maker: Optional[Maker] = None,
                checksum: Optional[str] = None, url_timeout: int = 600) -> Action:
        """Create the volume from a local file (made or downloaded now, if need be) and upload it."""
        def run() -> None:
            scratch = tempfile.mkdtemp(prefix='firmvisor-volume-')
            try:
                path = source
                if url:
                    path = download(url, os.path.join(scratch, 'image'), url_timeout, what)
                    verify_checksum(path, checksum)
                elif maker is not None:
                    path = os.path.join(scratch, 'image')
                    maker(path)
                src_format, virtual = image_info(path)
                vol_format = fmt or src_format
                capacity = os.path.getsize(path) if vol_format != 'qcow2' else virtual
                with mapped('%s: create' % what):
                    handle.obj = self.pool(key[0]).createXML(volume_xml(key[1], capacity, vol_format), 0)
                try:
                    with mapped('%s: upload' % what):
                        upload_file(self.conn, handle.obj, path)
                    if size and size > virtual:
                        with mapped('%s: resize' % what):
                            handle.obj.resize(size, 0)
                except Exception:
                    handle.obj.delete(0)  # not half written: the volume goes with its failed upload
                    raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return Action(description, run, handle.call('delete', 0), 'delete %s' % what)
