# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The install disk of a bare-metal server, and whether a server can take the image at all.

A disk is a dict as redfish/inventory.py returns it ({name, size_bytes, model, serial, wwn, ...},
optionally ``path``, its device path on the server when the inventory knows it). The operator picks
the install disk with a rule (``install_disk``):

    {serial: S3F5NX0K100001}             exactly that disk
    {name: ssd0}                         by the name the BMC gives it
    {path: /dev/sda}                     a device path on the server (used as install_to as is)
    {wwn: 5002538c40000001}              by its World Wide Name
    {min_size: 8GiB, max_size: 1TiB, model: SAMSUNG, media_type: SSD, prefer: smallest}
                                         a rule over the inventory: the smallest (or largest) disk
                                         that passes every given test; ties go to the first listed

Sizes are MiB integers or strings with a unit ("8GiB", "512MiB", "1TB"; engine/values.to_bytes reads
them, as every size of the collection). Every failure is an FvError that lists the disks there are
and why each was passed over.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.values import to_bytes

RULE_KEYS = ('serial', 'name', 'path', 'wwn', 'min_size', 'max_size', 'model', 'media_type', 'prefer')
SELECTORS = ('serial', 'name', 'path', 'wwn')
DEFAULT_RULE: Dict[str, Any] = {'min_size': '8GiB', 'prefer': 'smallest'}
# What a server needs to take the image: the live installer holds the ISO in memory.
MIN_MEMORY_MIB = 1024


def human(size: Optional[int]) -> str:
    if size is None:
        return 'unknown size'
    for unit, factor in (('TiB', 2 ** 40), ('GiB', 2 ** 30), ('MiB', 2 ** 20)):
        if size >= factor:
            value = size / factor
            return ('%d %s' % (value, unit)) if value == int(value) else ('%.1f %s' % (value, unit))
    return '%d bytes' % size


def describe_disk(disk: Mapping[str, Any]) -> str:
    bits = [str(disk.get('name') or disk.get('path') or '?'), human(disk.get('size_bytes'))]
    for key in ('model', 'serial', 'path'):
        if disk.get(key) and disk.get(key) != disk.get('name'):
            bits.append('%s %s' % (key, disk[key]))
    return ' '.join(bits[:1]) + ' (' + ', '.join(bits[1:]) + ')'


def _listing(disks: Sequence[Mapping[str, Any]]) -> str:
    return '; '.join(describe_disk(d) for d in disks) or 'none'


def validate_rule(rule: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The rule with sizes in bytes; FvError on unknown keys, two selectors, bad sizes or prefer."""
    rule = dict(DEFAULT_RULE if not rule else rule)
    unknown = sorted(set(rule) - set(RULE_KEYS))
    if unknown:
        raise FvError('install_disk: unknown key(s) %s (known: %s)' % (', '.join(unknown), ', '.join(RULE_KEYS)))
    selectors = [k for k in SELECTORS if rule.get(k) not in (None, '')]
    if len(selectors) > 1:
        raise FvError('install_disk: give one of %s, not %s' % ('/'.join(SELECTORS), ' and '.join(selectors)))
    for key in ('min_size', 'max_size'):
        if rule.get(key) is not None:
            rule[key] = to_bytes(rule[key], 'install_disk.%s' % key)
    if rule.get('min_size') is not None and rule.get('max_size') is not None and rule['min_size'] > rule['max_size']:
        raise FvError('install_disk: min_size %s is above max_size %s'
                      % (human(rule['min_size']), human(rule['max_size'])))
    prefer = rule.setdefault('prefer', 'smallest')
    if prefer not in ('smallest', 'largest'):
        raise FvError('install_disk.prefer: expected smallest or largest, got %r' % (prefer,))
    return rule


def _wwn(value: Any) -> Any:
    return str(value).lower().replace(':', '').replace('0x', '', 1) if value else value


def _why_not(disk: Mapping[str, Any], rule: Mapping[str, Any]) -> Optional[str]:
    """None when ``disk`` passes every test of ``rule``, else the first reason it does not."""
    for key in SELECTORS:
        wanted = rule.get(key)
        if wanted in (None, ''):
            continue
        have = disk.get(key)
        if key == 'wwn':
            if _wwn(have) != _wwn(wanted):
                return 'wwn is %s' % (have or 'unknown')
        elif have != wanted:
            return '%s is %s' % (key, have if have is not None else 'unknown')
    size = disk.get('size_bytes')
    if rule.get('min_size') is not None:
        if size is None:
            return 'size unknown'
        if size < rule['min_size']:
            return 'smaller than %s' % human(rule['min_size'])
    if rule.get('max_size') is not None:
        if size is None:
            return 'size unknown'
        if size > rule['max_size']:
            return 'larger than %s' % human(rule['max_size'])
    if rule.get('model') and str(rule['model']).lower() not in str(disk.get('model') or '').lower():
        return 'model is %s' % (disk.get('model') or 'unknown')
    if rule.get('media_type') and str(rule['media_type']).lower() != str(disk.get('media_type') or '').lower():
        return 'media type is %s' % (disk.get('media_type') or 'unknown')
    return None


def choose_install_disk(disks: Sequence[Mapping[str, Any]], rule: Optional[Mapping[str, Any]] = None,
                        need_bytes: Optional[int] = None) -> Dict[str, Any]:
    """The disk ``rule`` picks (default: the smallest disk of 8 GiB or more). ``need_bytes``: the
    image's size; a picked disk smaller than that is refused."""
    return _choose(disks, validate_rule(rule), need_bytes)


def _choose(disks: Sequence[Mapping[str, Any]], rule: Mapping[str, Any], need_bytes: Optional[int]) -> Dict[str, Any]:
    """choose_install_disk for a rule validate_rule made (sizes in bytes)."""
    if rule.get('path') and not any(d.get('path') == rule['path'] for d in disks):
        # The BMC seldom knows device paths: the operator's path stands for itself.
        return {'name': rule['path'], 'path': rule['path'], 'size_bytes': None, 'source': 'operator'}
    fitting: List[Tuple[int, Dict[str, Any]]] = []
    passed_over = []
    for index, disk in enumerate(disks):
        reason = _why_not(disk, rule)
        if reason is None:
            fitting.append((index, dict(disk)))
        else:
            passed_over.append('%s: %s' % (disk.get('name') or disk.get('path') or '#%d' % index, reason))
    if not fitting:
        raise FvError('install_disk: no disk fits %s (disks: %s; passed over: %s)' % (
            describe_rule(rule), _listing(disks), '; '.join(passed_over) or 'none'))
    sign = 1 if rule['prefer'] == 'smallest' else -1
    fitting.sort(key=lambda item: (sign * (item[1].get('size_bytes') or 0), item[0]))
    chosen = fitting[0][1]
    if need_bytes is not None and chosen.get('size_bytes') is not None and chosen['size_bytes'] < need_bytes:
        raise FvError('install_disk: %s is too small for the image (needs %s)' % (
            describe_disk(chosen), human(need_bytes)))
    return chosen


def describe_rule(rule: Mapping[str, Any]) -> str:
    parts = []
    for key in SELECTORS:
        if rule.get(key) not in (None, ''):
            parts.append('%s %s' % (key, rule[key]))
    if rule.get('min_size') is not None:
        parts.append('at least %s' % human(rule['min_size']))
    if rule.get('max_size') is not None:
        parts.append('at most %s' % human(rule['max_size']))
    for key in ('model', 'media_type'):
        if rule.get(key):
            parts.append('%s %s' % (key.replace('_', ' '), rule[key]))
    if not any(rule.get(k) not in (None, '') for k in SELECTORS):
        parts.insert(0, 'the %s disk' % rule.get('prefer', 'smallest'))
    return ', '.join(parts) or 'any disk'


def install_path(disk: Mapping[str, Any]) -> str:
    """The seed's ``install_to`` for a chosen disk: its device path when known, else a stable
    /dev/disk/by-id name from its WWN. FvError when neither is known (Redfish rarely tells a
    device path: name the disk by ``path`` then)."""
    if disk.get('path'):
        path = str(disk['path'])
        if not path.startswith('/dev/'):
            path = '/dev/' + path
        return path
    if disk.get('wwn'):
        wwn = str(disk['wwn']).lower().replace(':', '')
        if wwn.startswith('0x'):
            wwn = wwn[2:]
        return '/dev/disk/by-id/wwn-0x%s' % wwn
    raise FvError('install_disk: the BMC does not tell the device path of %s on the server; '
                  'give install_disk.path (such as /dev/sda) for it' % describe_disk(disk))


def memory_problems(inventory: Mapping[str, Any], min_memory_mib: int) -> List[str]:
    """capacity_problems for memory alone (unknown memory is not a problem)."""
    memory = inventory.get('memory_mib')
    if memory is not None and memory < min_memory_mib:
        return ['it has %d MiB of memory, the image needs at least %d MiB' % (memory, min_memory_mib)]
    return []


def capacity_problems(inventory: Mapping[str, Any], image_bytes: int, min_memory_mib: int,
                      rule: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Why this server cannot take the image ([] when it can): no disk that fits ``rule`` and holds
    ``image_bytes``, or less memory than ``min_memory_mib``. Unknown memory is not a problem."""
    problems = memory_problems(inventory, min_memory_mib)
    disks = list(inventory.get('disks') or [])
    try:
        merged = dict(validate_rule(rule))
        if not any(merged.get(k) not in (None, '') for k in SELECTORS):
            merged['min_size'] = max(merged.get('min_size') or 0, image_bytes)
        _choose(disks, merged, image_bytes)
    except FvError as exc:
        problems.append(str(exc).replace('install_disk: ', '', 1))
    return problems


def check_capacity(inventory: Mapping[str, Any], image_bytes: int, min_memory_mib: int,
                   rule: Optional[Mapping[str, Any]] = None, server: str = 'the server') -> None:
    """FvError naming ``server`` and every problem when it cannot take the image."""
    problems = capacity_problems(inventory, image_bytes, min_memory_mib, rule)
    if problems:
        raise FvError('%s cannot take the firmvisor image: %s' % (server, '; '.join(problems)),
                      problems=problems)
