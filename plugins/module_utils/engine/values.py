# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Values users write in specs: sizes with units, MAC addresses."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError

MIB = 1024 * 1024
_UNITS = {
    'b': 1, 'bytes': 1,
    'k': 1024, 'kib': 1024, 'kb': 1000,
    'm': MIB, 'mib': MIB, 'mb': 1000 ** 2,
    'g': 1024 ** 3, 'gib': 1024 ** 3, 'gb': 1000 ** 3,
    't': 1024 ** 4, 'tib': 1024 ** 4, 'tb': 1000 ** 4,
}
_SIZE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$')
_MAC = re.compile(r'^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$')


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
    """A MAC in libvirt's form (lower case, colons); multicast addresses are refused, as libvirt does."""
    if mac is None:
        return None
    if not _MAC.match(mac):
        raise FvError('invalid MAC address %r' % mac)
    mac = mac.lower().replace('-', ':')
    if int(mac[:2], 16) & 1:
        raise FvError('MAC address %s is a multicast address; a NIC needs a unicast one' % mac)
    return mac


def drop_none(data: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}
