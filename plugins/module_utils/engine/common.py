# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small shared pieces: errors, sizes, stable MACs, waits and the record of planned changes."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, Callable, Dict, List, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError, FvTimeout  # noqa: F401

MIB = 1024 * 1024
_UNITS = {
    'b': 1, 'bytes': 1,
    'k': 1024, 'kib': 1024, 'kb': 1000,
    'm': MIB, 'mib': MIB, 'mb': 1000 ** 2,
    'g': 1024 ** 3, 'gib': 1024 ** 3, 'gb': 1000 ** 3,
    't': 1024 ** 4, 'tib': 1024 ** 4, 'tb': 1000 ** 4,
}
_SIZE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$')


def to_bytes(value: Any, what: str = 'size') -> int:
    """A size as bytes: an integer is MiB, a string may carry a unit ("512MiB", "2GiB", "10G")."""
    if isinstance(value, bool):
        raise FvError('%s: expected a size such as 512 (MiB) or "2GiB", got %r' % (what, value))
    if isinstance(value, int):
        number, unit = float(value), 'mib'
    else:
        match = _SIZE.match(str(value))
        if not match or (match.group(2) and match.group(2).lower() not in _UNITS):
            raise FvError('%s: expected a size such as 512 (MiB) or "2GiB", got %r' % (what, value))
        number, unit = float(match.group(1)), (match.group(2) or 'mib').lower()
    result = int(number * _UNITS[unit])
    if result <= 0:
        raise FvError('%s: must be larger than zero, got %r' % (what, value))
    return result


def to_mib(value: Any, what: str = 'size') -> int:
    size = to_bytes(value, what)
    if size % MIB:
        raise FvError('%s: must be a whole number of MiB, got %r' % (what, value))
    return size // MIB


def from_unit(number: str, unit: Optional[str]) -> int:
    """A libvirt (value, unit) pair as bytes; libvirt's default unit for memory is KiB."""
    return int(number) * _UNITS[(unit or 'KiB').lower()]


def stable_mac(*parts: str) -> str:
    """A locally administered MAC derived from names, so a VM keeps its MAC when recreated."""
    digest = hashlib.sha256('/'.join(parts).encode()).digest()
    return '52:54:00:%02x:%02x:%02x' % (digest[0], digest[1], digest[2])


def normalize_mac(mac: Optional[str]) -> Optional[str]:
    if mac is None:
        return None
    if not re.match(r'^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$', mac):
        raise FvError('invalid MAC address %r' % mac)
    return mac.lower().replace('-', ':')


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.25) -> None:
    """Poll ``predicate`` until it is true; raise FvTimeout naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise FvTimeout('timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


class Changes:
    """What a run changes (or would change, in check mode): actions done in one place.

    ``act`` records the action and performs it unless in check mode, so no mutating call can
    happen in check mode by construction.
    """

    def __init__(self, check_mode: bool) -> None:
        self.check_mode = check_mode
        self.actions: List[str] = []

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def act(self, description: str, func: Optional[Callable[..., Any]] = None, *args: Any) -> Any:
        self.actions.append(description)
        if func is not None and not self.check_mode:
            return func(*args)
        return None


def drop_none(data: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}
