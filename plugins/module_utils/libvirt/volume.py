# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage volumes: create with a size, import from a local image or URL, back onto an image,
grow (never shrink) and delete. Serves the ``volume`` module and the disks of ``vm``/``vms``."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
from typing import Any, Dict, Optional, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.common import (
    Changes, FvError, drop_none, to_bytes,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import (
    lookup_pool, lookup_volume, mapped, upload_file,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document, element, sub

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
)


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
    algo, _, expected = checksum.partition(':') if ':' in checksum else ('sha256', '', checksum)
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


def volume_view(vol: Any, pool_name: str) -> Dict[str, Any]:
    doc = Document(vol.XMLDesc(0))
    _type, capacity, allocation = vol.info()
    return {
        'name': vol.name(), 'pool': pool_name, 'path': vol.path(),
        'format': doc.attr('target/format', 'type'),
        'capacity': capacity, 'allocation': allocation,
        'backing': doc.text('backingStore/path'),
    }


class Volumes:
    """Volume lookups and changes over one connection; each pool is looked up once."""

    def __init__(self, conn: Any, changes: Changes) -> None:
        self.conn = conn
        self.changes = changes
        self._pools: Dict[str, Any] = {}
        self._refreshed: set = set()

    def pool(self, name: str) -> Any:
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

    def ensure(self, pool: str, name: str, state: str = 'present', size: Any = None,
               format: Optional[str] = None, source: Optional[str] = None, url: Optional[str] = None,
               checksum: Optional[str] = None, backing: bool = False, replace: bool = False,
               url_timeout: int = 600, **_ignored: Any) -> Dict[str, Any]:
        """Converge one volume; returns {changed, volume, diff, warnings}."""
        what = 'volume %s/%s' % (pool, name)
        size_bytes = to_bytes(size, '%s: size' % what) if size is not None else None
        if source and url:
            raise FvError('%s: give source or url, not both' % what)
        if backing and not source:
            raise FvError('%s: backing needs source (the image on the hypervisor to back onto)' % what)
        start = len(self.changes.actions)
        warnings = []
        vol = self.lookup(pool, name)
        before = volume_view(vol, pool) if vol is not None else None
        after: Optional[Dict[str, Any]] = dict(before) if before else None

        if state == 'absent':
            if vol is not None:
                with mapped('%s: delete' % what):
                    self.changes.act('delete %s' % what, vol.delete, 0)
                after = None
        elif vol is None or replace:
            if vol is not None:
                with mapped('%s: delete for replacement' % what):
                    self.changes.act('delete %s (replaced)' % what, vol.delete, 0)
            after = self._create(pool, name, what, size_bytes, format, source, url, checksum, backing, url_timeout)
        else:
            if format and before and before['format'] not in (None, format):
                raise FvError('%s exists with format %s, declared %s: volumes are not converted'
                              % (what, before['format'], format))
            if size_bytes is not None and after is not None:
                if size_bytes > after['capacity']:
                    with mapped('%s: resize' % what):
                        self.changes.act('grow %s to %d bytes' % (what, size_bytes), vol.resize, size_bytes, 0)
                    after['capacity'] = size_bytes
                elif size_bytes < after['capacity']:
                    warnings.append('%s is larger (%d bytes) than declared (%d bytes): volumes never shrink'
                                    % (what, after['capacity'], size_bytes))
        changed = len(self.changes.actions) > start
        if changed and after is not None and vol is not None and not self.changes.check_mode:
            refreshed = lookup_volume(self.pool(pool), name)
            after = volume_view(refreshed, pool) if refreshed is not None else after
        return {
            'changed': changed, 'volume': after, 'warnings': warnings,
            'diff': {'before': _diff_view(before), 'after': _diff_view(after)},
        }

    def _create(self, pool: str, name: str, what: str, size_bytes: Optional[int], format: Optional[str],
                source: Optional[str], url: Optional[str], checksum: Optional[str], backing: bool,
                url_timeout: int) -> Dict[str, Any]:
        cleanup = None
        try:
            if url and self.changes.check_mode:
                self.changes.act('download %s into %s' % (url, what))
                return {'name': name, 'pool': pool, 'format': format, 'capacity': size_bytes, 'path': None}
            if url:
                cleanup = tempfile.mkdtemp(prefix='firmvisor-volume-')
                source = _download(url, os.path.join(cleanup, 'image'), url_timeout, what)
            if source and not backing:
                if not os.path.isfile(source):
                    raise FvError('%s: source %s is not a file' % (what, source))
                verify_checksum(source, checksum)
                src_format, virtual = image_info(source)
                vol_format = format or src_format
                if vol_format != src_format and not (vol_format == 'iso' and src_format == 'raw'):
                    raise FvError('%s: source %s is %s, declared format %s' % (what, source, src_format, vol_format))
                capacity = os.path.getsize(source) if vol_format != 'qcow2' else virtual
                xml = _volume_xml(name, capacity, vol_format)
                vol = self._create_xml(pool, xml, what, 'import %s into %s' % (url or source, what))
                if vol is not None:
                    with mapped('%s: upload' % what):
                        upload_file(self.conn, vol, source)
                if size_bytes and size_bytes > virtual:
                    if vol is not None:
                        with mapped('%s: resize' % what):
                            self.changes.act('grow %s to %d bytes' % (what, size_bytes), vol.resize, size_bytes, 0)
                    capacity = size_bytes
                return {'name': name, 'pool': pool, 'format': vol_format, 'capacity': capacity, 'path': None}
            if backing:
                # The backing image is a path on the hypervisor; its size is read there by libvirt.
                back_format = format_of_path(source) if os.path.exists(source) else 'qcow2'
                capacity = size_bytes or (image_info(source)[1] if os.path.exists(source) else None)
                if capacity is None:
                    raise FvError('%s: size is required to back onto %s' % (what, source))
                xml = _volume_xml(name, capacity, 'qcow2', backing=(source, back_format))
                self._create_xml(pool, xml, what, 'create %s backed by %s' % (what, source))
                return {'name': name, 'pool': pool, 'format': 'qcow2', 'capacity': capacity, 'backing': source}
            if size_bytes is None:
                raise FvError('%s does not exist: give size (to create it), source or url' % what)
            vol_format = format or 'qcow2'
            self._create_xml(pool, _volume_xml(name, size_bytes, vol_format), what,
                             'create %s (%d bytes, %s)' % (what, size_bytes, vol_format))
            return {'name': name, 'pool': pool, 'format': vol_format, 'capacity': size_bytes, 'path': None}
        finally:
            if cleanup:
                shutil.rmtree(cleanup, ignore_errors=True)

    def _create_xml(self, pool: str, xml: str, what: str, description: str) -> Optional[Any]:
        storage_pool = self.pool(pool)
        with mapped('%s: create' % what):
            return self.changes.act(description, storage_pool.createXML, xml, 0)


def format_of_path(path: str) -> str:
    return image_info(path)[0]


def _volume_xml(name: str, capacity: int, fmt: str, backing: Optional[Tuple[str, str]] = None) -> str:
    vol = element('volume')
    sub(vol, 'name', name)
    sub(vol, 'capacity', str(capacity), unit='bytes')
    target = sub(vol, 'target')
    sub(target, 'format', type=fmt)
    if backing:
        store = sub(vol, 'backingStore')
        sub(store, 'path', backing[0])
        sub(store, 'format', type=backing[1])
    doc = Document('<volume/>')
    doc.root = vol
    return doc.tostring()


def _download(url: str, dest: str, timeout: int, what: str) -> str:
    from ansible.module_utils.urls import open_url  # imported late: only URL imports need it
    try:
        response = open_url(url, timeout=timeout)
        with open(dest, 'wb') as handle:
            shutil.copyfileobj(response, handle, 1 << 20)
    except Exception as exc:
        raise FvError('%s: cannot download %s: %s' % (what, url, exc))
    return dest


def _diff_view(view: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if not view:
        return {'state': 'absent'}
    return drop_none({'state': 'present', 'format': view.get('format'), 'capacity': view.get('capacity'),
                      'backing': view.get('backing')})


def ensure_volume(conn: Any, changes: Changes, params: Dict[str, Any]) -> Dict[str, Any]:
    """The volume module's whole job."""
    result = Volumes(conn, changes).ensure(**params)
    result['volume'] = result['volume'] or {}
    result['actions'] = changes.actions
    return result
