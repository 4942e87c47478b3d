# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What server_info returns for a Redfish system before anything is installed, as plain dicts.

    {system: {id, uuid, name, manufacturer, model, serial},
     power_state,
     cpus: {count, model, cores, threads},
     memory_mib,
     nics: [{id, mac, link, speed_mbps, state}],
     disks: [{name, size_bytes, model, serial, media_type, protocol, wwn, source}],
     firmware: {bios_version, boot_mode},
     boot: {target, enabled, mode, allowed_targets},
     virtual_media: [{id, name, media_types, inserted, image}]}

Disks come from Storage (drives) and SimpleStorage (devices); the same disk seen by both is listed
once (Storage has more: serial, model). Unknown values are None; a sub-resource the BMC does not
offer gives an empty list, and one it fails to serve (an HTTP error other than 401/403: sushy-emulator
answers 500 for Storage unless configured) gives an empty list and a line in ``problems``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional


def system_inventory(system: Any, media: Optional[Callable[[], List[Any]]] = None) -> Dict[str, Any]:
    """The inventory of a sushy System (already refreshed); ``media`` lists its virtual media slots."""
    reader = _Reader(system._conn)
    data = system.json
    processors = reader.optional('Processors', reader.members, data, 'Processors')
    inventory = {
        'system': {
            'id': data.get('Id'),
            'uuid': data.get('UUID'),
            'name': data.get('Name'),
            'manufacturer': data.get('Manufacturer'),
            'model': data.get('Model'),
            'serial': data.get('SerialNumber'),
        },
        'power_state': data.get('PowerState'),
        'cpus': cpus(data, processors),
        'memory_mib': memory_mib(data, reader),
        'nics': nics(reader.optional('EthernetInterfaces', reader.members, data, 'EthernetInterfaces')),
        'disks': disks(reader.optional('Storage', reader.storage_drives, data),
                       reader.optional('SimpleStorage', reader.simple_storage, data)),
        'firmware': {
            'bios_version': data.get('BiosVersion'),
            'boot_mode': (data.get('Boot') or {}).get('BootSourceOverrideMode'),
        },
        'boot': boot(data),
        'virtual_media': [],
        'problems': reader.problems,
    }
    if media is not None:
        inventory['virtual_media'] = [slot_view(slot) for slot in media()]
    return inventory


class _Reader:
    """GETs JSON documents by @odata.id through sushy's connector (its auth, TLS and timeouts)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.problems: List[str] = []

    def optional(self, what: str, func: Callable[..., List[Dict[str, Any]]], *args: Any) -> List[Dict[str, Any]]:
        """func(*args), or [] and a problem when the BMC fails to serve that part with an HTTP error
        (authentication and connection failures still raise: they are not about this part)."""
        try:
            return func(*args)
        except Exception as exc:
            status = getattr(exc, 'status_code', None)
            if status is None or status in (401, 403):
                raise
            detail = getattr(exc, 'detail', None) or getattr(exc, 'code', None) or ''
            self.problems.append('%s: the BMC failed to serve it (HTTP %s%s)' % (
                what, status, (': %s' % detail) if detail else ''))
            return []

    def get(self, path: str) -> Dict[str, Any]:
        return self.conn.get(path=path).json()

    def link(self, data: Dict[str, Any], key: str) -> Optional[str]:
        value = data.get(key)
        return value.get('@odata.id') if isinstance(value, dict) else None

    def members(self, data: Dict[str, Any], key: str) -> List[Dict[str, Any]]:
        """The member documents of the collection ``data[key]``; [] when there is none."""
        path = self.link(data, key)
        if not path:
            return []
        collection = self.get(path)
        return [self.get(m['@odata.id']) for m in collection.get('Members') or [] if m.get('@odata.id')]

    def storage_drives(self, data: Dict[str, Any]) -> List[Dict[str, Any]]:
        drives = []
        for storage in self.members(data, 'Storage'):
            for ref in storage.get('Drives') or []:
                if isinstance(ref, dict) and ref.get('@odata.id'):
                    drives.append(self.get(ref['@odata.id']))
        return drives

    def simple_storage(self, data: Dict[str, Any]) -> List[Dict[str, Any]]:
        devices = []
        for controller in self.members(data, 'SimpleStorage'):
            for device in controller.get('Devices') or []:
                devices.append(dict(device, _controller=controller.get('Id')))
        return devices


def cpus(data: Dict[str, Any], processors: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
    summary = data.get('ProcessorSummary') or {}
    processors = [p for p in processors if p.get('ProcessorType', 'CPU') == 'CPU']
    models = sorted({p.get('Model') for p in processors if p.get('Model') and p.get('Model') != 'N/A'})
    cores = [_int(p.get('TotalCores')) for p in processors]
    threads = [_int(p.get('TotalThreads')) for p in processors]
    return {
        'count': _int(summary.get('Count')) if summary.get('Count') is not None else (len(processors) or None),
        'model': summary.get('Model') or (', '.join(models) if models else None),
        'sockets': len(processors) or None,
        'cores': sum(cores) if processors and all(c is not None for c in cores) else None,
        'threads': sum(threads) if processors and all(t is not None for t in threads) else None,
    }


def memory_mib(data: Dict[str, Any], reader: Optional[_Reader] = None) -> Optional[int]:
    gib = (data.get('MemorySummary') or {}).get('TotalSystemMemoryGiB')
    if gib is not None:
        try:
            return int(round(float(gib) * 1024))
        except (TypeError, ValueError):
            pass
    if reader is not None:
        total = [_int(m.get('CapacityMiB')) for m in reader.optional('Memory', reader.members, data, 'Memory')]
        if total and all(t is not None for t in total):
            return sum(total)  # type: ignore[arg-type]
    return None


def nics(interfaces: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    result = []
    for nic in interfaces:
        mac = nic.get('MACAddress') or nic.get('PermanentMACAddress')
        result.append({
            'id': nic.get('Id'),
            'mac': mac.lower() if isinstance(mac, str) else None,
            'link': nic.get('LinkStatus'),
            'speed_mbps': _int(nic.get('SpeedMbps')),
            'state': (nic.get('Status') or {}).get('State'),
        })
    return sorted(result, key=lambda n: (n['mac'] or '', n['id'] or ''))


def disks(drives: Iterable[Dict[str, Any]], simple: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    result: List[Dict[str, Any]] = []
    for drive in drives:
        result.append({
            'name': drive.get('Name') or drive.get('Id'),
            'size_bytes': _int(drive.get('CapacityBytes')),
            'model': drive.get('Model'),
            'serial': drive.get('SerialNumber'),
            'media_type': drive.get('MediaType'),
            'protocol': drive.get('Protocol'),
            'wwn': _wwn(drive.get('Identifiers') or []),
            'source': 'Storage',
        })
    seen = {(d['name'], d['size_bytes']) for d in result}
    for device in simple:
        entry = {
            'name': device.get('Name'),
            'size_bytes': _int(device.get('CapacityBytes')),
            'model': device.get('Model'),
            'serial': device.get('SerialNumber'),
            'media_type': None,
            'protocol': device.get('_controller'),
            'wwn': None,
            'source': 'SimpleStorage',
        }
        if (entry['name'], entry['size_bytes']) not in seen:
            result.append(entry)
    return result


def boot(data: Dict[str, Any]) -> Dict[str, Any]:
    value = data.get('Boot') or {}
    return {
        'target': value.get('BootSourceOverrideTarget'),
        'enabled': value.get('BootSourceOverrideEnabled'),
        'mode': value.get('BootSourceOverrideMode'),
        'allowed_targets': list(value.get('BootSourceOverrideTarget@Redfish.AllowableValues') or []),
    }


def slot_view(slot: Any) -> Dict[str, Any]:
    """A sushy VirtualMedia as {id, name, media_types, inserted, image}."""
    data = slot.json
    return {
        'id': data.get('Id'),
        'name': data.get('Name'),
        'media_types': list(data.get('MediaTypes') or []),
        'inserted': bool(data.get('Inserted')),
        'image': data.get('Image') or None,
    }


def _wwn(identifiers: Iterable[Dict[str, Any]]) -> Optional[str]:
    for ident in identifiers:
        if isinstance(ident, dict) and ident.get('DurableNameFormat') in ('NAA', 'EUI') and ident.get('DurableName'):
            return str(ident['DurableName']).lower().replace(':', '')
    return None


def _int(value: Any) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
