# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libvirt connection and error mapping. Knows nothing of AnsibleModule."""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError

try:
    import libvirt  # type: ignore[import-not-found]
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = exc

DEFAULT_URI = 'qemu:///system'

# Connection options shared by every module (the action group's module_defaults).
CONNECTION_ARGSPEC = dict(
    uri=dict(type='str', default=DEFAULT_URI),
    connect_timeout=dict(type='int', default=30),
)


def _quiet(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error to stderr unless a handler is set; errors are raised anyway."""


def error_text(exc: Exception) -> str:
    if libvirt is not None and isinstance(exc, libvirt.libvirtError):
        return exc.get_error_message() or str(exc)
    return str(exc)


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Turn a libvirt error into an FvError that names the object and the cause."""
    try:
        yield
    except FvError:
        raise
    except Exception as exc:  # libvirt.libvirtError and friends
        if libvirt is not None and isinstance(exc, libvirt.libvirtError):
            raise FvError('%s: %s' % (what, error_text(exc)))
        raise


def connect(uri: str = DEFAULT_URI, connect_timeout: int = 30) -> Any:
    """Open a read-write connection, retrying while the daemon is not yet up."""
    if not HAS_LIBVIRT:
        raise FvError('the libvirt Python bindings (libvirt-python / python3-libvirt) are required: %s'
                      % LIBVIRT_IMPORT_ERROR)
    libvirt.registerErrorHandler(_quiet, None)
    deadline = time.monotonic() + connect_timeout
    while True:
        try:
            return libvirt.open(uri)
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            retryable = code in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_NO_CONNECT)
            if not retryable or time.monotonic() >= deadline:
                raise FvError('cannot connect to libvirt at %s: %s' % (uri, error_text(exc)))
            time.sleep(1)


def with_connection(handler: Callable[[Any, Any], Dict[str, Any]]) -> Callable[[Any], Dict[str, Any]]:
    """A module handler that gets a libvirt connection (from the module's ``uri`` and
    ``connect_timeout``), closed when it returns."""
    def run(module: Any) -> Dict[str, Any]:
        conn = connect(module.params['uri'], module.params['connect_timeout'])
        try:
            return handler(conn, module)
        finally:
            try:
                conn.close()
            except Exception:  # closing a broken connection must not hide the real error
                pass
    return run


def _lookup(func: Callable[[str], Any], name: str, missing_code: int, what: str) -> Optional[Any]:
    try:
        return func(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == missing_code:
            return None
        raise FvError('%s %r: %s' % (what, name, error_text(exc)))


def lookup_domain(conn: Any, name: str) -> Optional[Any]:
    return _lookup(conn.lookupByName, name, libvirt.VIR_ERR_NO_DOMAIN, 'domain')


def lookup_network(conn: Any, name: str) -> Optional[Any]:
    return _lookup(conn.networkLookupByName, name, libvirt.VIR_ERR_NO_NETWORK, 'network')


def lookup_pool(conn: Any, name: str) -> Optional[Any]:
    return _lookup(conn.storagePoolLookupByName, name, libvirt.VIR_ERR_NO_STORAGE_POOL, 'storage pool')


def lookup_volume(pool: Any, name: str) -> Optional[Any]:
    return _lookup(pool.storageVolLookupByName, name, libvirt.VIR_ERR_NO_STORAGE_VOL, 'volume')


def persistent_xml(obj: Any, inactive_flag: str) -> str:
    """An object's persistent definition (the live one for a transient object). Drivers without
    the INACTIVE flag (the test driver) have only one definition."""
    flags = flag(inactive_flag) if obj.isPersistent() else 0
    try:
        return obj.XMLDesc(flags)
    except Exception as exc:
        if flags and libvirt is not None and isinstance(exc, libvirt.libvirtError) and \
                exc.get_error_code() in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            return obj.XMLDesc(0)
        raise


def _next_section(fd: int) -> Tuple[bool, int]:
    """(in data?, length) of the section of ``fd`` at its offset: data up to the next hole, or a
    hole up to the next data (or the end)."""
    here = os.lseek(fd, 0, os.SEEK_CUR)
    end = os.fstat(fd).st_size
    if here >= end:
        return True, 0  # the end: libvirt reads nothing more and finishes
    try:
        data = os.lseek(fd, here, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
        data = end  # nothing but hole up to the end
    if data > here:
        os.lseek(fd, here, os.SEEK_SET)
        return False, data - here
    hole = os.lseek(fd, here, os.SEEK_HOLE)
    os.lseek(fd, here, os.SEEK_SET)
    return True, hole - here


def upload_file(conn: Any, vol: Any, path: str) -> None:
    """Copy a local file into a volume through a libvirt stream (works over remote URIs). Holes of
    a sparse file are sent as holes, not as zeros (a 1.5 GiB disk image with 200 MiB of data)."""
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    stream = conn.newStream(0)
    try:
        vol.upload(stream, 0, size, flag('VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM'))
        stream.sparseSendAll(lambda _s, nbytes, _fd: os.read(_fd, nbytes),
                             lambda _s, _fd: list(_next_section(_fd)),
                             lambda _s, length, _fd: os.lseek(_fd, length, os.SEEK_CUR) and 0,
                             fd)
        stream.finish()
    except Exception:
        stream.abort()
        raise
    finally:
        os.close(fd)


def flag(name: str, default: int = 0) -> int:
    """A libvirt constant by name, tolerant of older bindings."""
    return getattr(libvirt, name, default) if libvirt is not None else default
