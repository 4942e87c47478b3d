# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Networks: the option table of ``network`` and its own libvirt calls.

Updates edit the network's inactive definition in place. DHCP ranges and static hosts reach a
running network live (``virNetworkUpdate``); every other change needs the network stopped, so an
active network is only recreated (destroy, define, start) when the user says ``recreate``.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import (
    LIVE, Change, Option, argspec, set_or_empty,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import Action, Actual, Handle
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.values import drop_none, normalize_mac
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document, element, escape
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import (
    CONNECTION_ARGSPEC, flag, lookup_network, mapped,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.objects import STATES, DefinedObject

MODES = ('nat', 'route', 'isolated', 'bridge')
DEFAULT_PREFIX = 24

DHCP_RANGE_SPEC = dict(
    start=dict(type='str', required=True),
    end=dict(type='str', required=True),
)
DHCP_HOST_SPEC = dict(
    mac=dict(type='str'),
    name=dict(type='str'),
    ip=dict(type='str', required=True),
)
DHCP_SPEC = dict(
    ranges=dict(type='list', elements='dict', options=DHCP_RANGE_SPEC),
    hosts=dict(type='list', elements='dict', options=DHCP_HOST_SPEC),
)


# ---- reading and writing the XML ----------------------------------------------------------------
def _ipv4_elem(doc: Document) -> Optional[Any]:
    """The first IPv4 ``<ip>`` element (IPv6 ones are left alone)."""
    for elem in doc.findall('ip'):
        family = elem.get('family')
        if family == 'ipv4' or (family is None and ':' not in (elem.get('address') or '')):
            return elem
    return None


def ipv4_index(doc: Document) -> int:
    """The IPv4 element's index among all ``<ip>`` elements (virNetworkUpdate's parentIndex)."""
    elem = _ipv4_elem(doc)
    return doc.findall('ip').index(elem) if elem is not None else -1


def _ipv4_path(doc: Document) -> str:
    elem = _ipv4_elem(doc)
    if elem is None or not elem.get('address'):
        raise FvError('dhcp needs ip')
    return "ip[@address='%s']" % elem.get('address')


def _ensure_ipv4(doc: Document) -> Any:
    elem = _ipv4_elem(doc)
    if elem is None:
        elem = doc.append('.', element('ip'))
    return elem


def read_mode(doc: Document) -> str:
    forward = doc.find('forward')
    if forward is None:
        return 'isolated'
    return forward.get('mode', 'nat')


def write_mode(doc: Document, mode: str) -> None:
    if mode == 'isolated':
        doc.remove('forward')
    else:
        forward = doc.ensure('forward')
        forward.set('mode', mode)
        if mode != 'nat':
            doc.remove('nat', forward)
    if mode == 'bridge':
        # A host bridge network is only a name for the bridge: libvirt rejects addresses,
        # a MAC, a DNS domain and STP settings on it.
        for path in ('ip', 'mac', 'domain', 'dns', 'route'):
            doc.remove(path)
        bridge = doc.find('bridge')
        if bridge is not None:
            for attr in ('stp', 'delay', 'zone', 'macTableManager'):
                bridge.attrib.pop(attr, None)


def read_ip(doc: Document) -> Optional[str]:
    elem = _ipv4_elem(doc)
    return None if elem is None else elem.get('address')


def write_ip(doc: Document, address: str) -> None:
    _ensure_ipv4(doc).set('address', address)


def read_prefix(doc: Document) -> Optional[int]:
    elem = _ipv4_elem(doc)
    if elem is None:
        return None
    if elem.get('prefix') is not None:
        return int(elem.get('prefix'))
    if elem.get('netmask') is not None:
        return ipaddress.IPv4Network('0.0.0.0/%s' % elem.get('netmask')).prefixlen
    return None


def write_prefix(doc: Document, prefix: int) -> None:
    elem = _ensure_ipv4(doc)
    elem.attrib.pop('netmask', None)
    elem.set('prefix', str(prefix))


def normalize_ip(value: Any, _context: Dict[str, Any]) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except ValueError:
        raise FvError('ip must be an IPv4 address, got %r' % (value,))


def normalize_prefix(value: Any, _context: Dict[str, Any]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 32:
        raise FvError('prefix must be an integer from 0 to 32, got %r' % (value,))
    return value


# ---- DHCP ---------------------------------------------------------------------------------------
def _host_key(host: Dict[str, Any]) -> Tuple[str, str]:
    return ('mac', host['mac']) if host.get('mac') else ('name', host['name'])


def _elem_host(elem: Any) -> Dict[str, Any]:
    return drop_none({'mac': normalize_mac(elem.get('mac')), 'name': elem.get('name'), 'ip': elem.get('ip')})


def read_dhcp(doc: Document) -> Optional[Dict[str, Any]]:
    elem = _ipv4_elem(doc)
    if elem is None:
        return None
    return {
        'ranges': [{'start': r.get('start'), 'end': r.get('end')} for r in doc.findall('dhcp/range', elem)],
        'hosts': [_elem_host(h) for h in doc.findall('dhcp/host', elem)],
    }


def normalize_dhcp(value: Dict[str, Any], _context: Dict[str, Any]) -> Dict[str, Any]:
    """Declared ranges and hosts, checked and canonical; an undeclared list is left out (not managed)."""
    result: Dict[str, Any] = {}
    if value.get('ranges') is not None:
        ranges = []
        for index, item in enumerate(value['ranges']):
            try:
                start = ipaddress.IPv4Address(str(item.get('start')))
                end = ipaddress.IPv4Address(str(item.get('end')))
            except ValueError:
                raise FvError('dhcp range %d: start and end must be IPv4 addresses, got %r - %r'
                              % (index, item.get('start'), item.get('end')))
            if start > end:
                raise FvError('dhcp range %d: start %s is after end %s' % (index, start, end))
            ranges.append({'start': str(start), 'end': str(end)})
        if len({(r['start'], r['end']) for r in ranges}) != len(ranges):
            raise FvError('dhcp: the same range is listed twice')
        result['ranges'] = ranges
    if value.get('hosts') is not None:
        hosts = []
        for index, item in enumerate(value['hosts']):
            if not item.get('mac') and not item.get('name'):
                raise FvError('dhcp host %d: give mac or name (or both)' % index)
            try:
                address = str(ipaddress.IPv4Address(str(item.get('ip'))))
            except ValueError:
                raise FvError('dhcp host %d: ip must be an IPv4 address, got %r' % (index, item.get('ip')))
            hosts.append(drop_none({'mac': normalize_mac(item.get('mac')), 'name': item.get('name') or None,
                                    'ip': address}))
        for key in ('mac', 'name', 'ip'):
            values = [h[key] for h in hosts if h.get(key)]
            if len(set(values)) != len(values):
                raise FvError('dhcp hosts: the same %s is listed twice' % key)
        result['hosts'] = hosts
    return result


def _range_key(item: Dict[str, Any]) -> Tuple[str, str]:
    return item['start'], item['end']


def _host_equal(desired: Dict[str, Any], actual: Dict[str, Any]) -> bool:
    """Equal if mac and ip match; a name is compared only when declared."""
    return (desired.get('mac') == actual.get('mac') and desired['ip'] == actual.get('ip')
            and ('name' not in desired or desired['name'] == actual.get('name')))


def dhcp_equal(desired: Dict[str, Any], actual: Optional[Dict[str, Any]]) -> bool:
    actual = actual or {'ranges': [], 'hosts': []}
    if 'ranges' in desired:
        if sorted(map(_range_key, desired['ranges'])) != sorted(map(_range_key, actual['ranges'])):
            return False
    if 'hosts' in desired:
        have = {_host_key(h): h for h in actual['hosts']}
        if len(have) != len(actual['hosts']) or len(desired['hosts']) != len(actual['hosts']):
            return False
        for host in desired['hosts']:
            if _host_key(host) not in have or not _host_equal(host, have[_host_key(host)]):
                return False
    return True


def _merged(desired: Dict[str, Any], actual: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """A declared host as it is written: an existing entry keeps its name unless one is declared."""
    host = dict(desired)
    if actual is not None and 'name' not in host and actual.get('name'):
        host['name'] = actual['name']
    return host


def _host_xml(host: Dict[str, Any]) -> Any:
    return element('host', mac=host.get('mac'), name=host.get('name'), ip=host.get('ip'))


def write_dhcp(doc: Document, dhcp: Dict[str, Any]) -> None:
    if _ipv4_elem(doc) is None:
        if dhcp.get('ranges') or dhcp.get('hosts'):
            raise FvError('dhcp needs ip')
        return  # no addresses, so nothing to remove either
    path = _ipv4_path(doc) + '/dhcp'
    holder = doc.ensure(path)
    if 'ranges' in dhcp:
        wanted = [(r['start'], r['end']) for r in dhcp['ranges']]
        kept = set()
        for elem in doc.findall('range', holder):
            key = (elem.get('start'), elem.get('end'))
            if key in wanted and key not in kept:
                kept.add(key)
            else:
                doc.detach(holder, elem)
        first_host = next(iter(doc.findall('host', holder)), None)
        for start, end in wanted:
            if (start, end) not in kept:
                new = element('range', start=start, end=end)
                if first_host is not None:  # ranges before hosts, as libvirt writes them
                    holder.insert(list(holder).index(first_host), new)
                    new.tail = holder.text if holder.text and not holder.text.strip() else None
                else:
                    doc.append(path, new)
    if 'hosts' in dhcp:
        wanted_hosts = {_host_key(h): h for h in dhcp['hosts']}
        kept_hosts = set()
        for elem in doc.findall('host', holder):
            actual = _elem_host(elem)
            key = _host_key(actual) if actual.get('mac') or actual.get('name') else None
            if key in wanted_hosts and key not in kept_hosts:
                kept_hosts.add(key)
                for attr, value in _merged(wanted_hosts[key], actual).items():
                    elem.set(attr, value)
            else:
                doc.detach(holder, elem)
        for key, host in wanted_hosts.items():
            if key not in kept_hosts:
                doc.append(path, _host_xml(host))
    if not list(holder):
        doc.remove(path)


def dhcp_commands(desired: Dict[str, Any], actual: Optional[Dict[str, Any]]) -> List[Tuple[str, str, Any, str]]:
    """virNetworkUpdate calls (command, section, element, description) that turn actual into desired.

    Deletions come first and a changed host whose new address or name another entry holds is
    deleted and added again, so no call ever collides with an entry that is about to go.
    """
    actual = actual or {'ranges': [], 'hosts': []}
    deletes, modifies, adds = [], [], []
    if 'ranges' in desired:
        want = [(r['start'], r['end']) for r in desired['ranges']]
        have = [(r['start'], r['end']) for r in actual['ranges']]
        for start, end in have:
            if (start, end) not in want:
                deletes.append(('delete', 'range', element('range', start=start, end=end),
                                'delete DHCP range %s-%s' % (start, end)))
        for start, end in want:
            if (start, end) not in have:
                adds.append(('add', 'range', element('range', start=start, end=end),
                             'add DHCP range %s-%s' % (start, end)))
    if 'hosts' in desired:
        wanted = {_host_key(h): h for h in desired['hosts']}
        have_hosts = {_host_key(h): h for h in actual['hosts'] if h.get('mac') or h.get('name')}
        for key, host in have_hosts.items():
            if key not in wanted:
                deletes.append(('delete', 'host', _host_xml(host), 'delete DHCP host %s' % _describe_host(host)))
        for key, host in wanted.items():
            old = have_hosts.get(key)
            if old is None:
                adds.append(('add', 'host', _host_xml(_merged(host, None)),
                             'add DHCP host %s' % _describe_host(host)))
                continue
            if _host_equal(host, old):
                continue
            new = _merged(host, old)
            others = [h for k, h in have_hosts.items() if k != key]
            collides = any(h.get('ip') == new.get('ip') or (new.get('name') and h.get('name') == new.get('name'))
                           for h in others)
            description = 'change DHCP host %s to %s' % (_describe_host(old), _describe_host(new))
            if collides:
                deletes.append(('delete', 'host', _host_xml(old), description + ' (delete)'))
                adds.append(('add', 'host', _host_xml(new), description + ' (add)'))
            else:
                modifies.append(('modify', 'host', _host_xml(new), description))
    return deletes + modifies + adds


def _describe_host(host: Dict[str, Any]) -> str:
    return ' '.join('%s=%s' % (k, host[k]) for k in ('mac', 'name', 'ip') if host.get(k))


# ---- bridge name and DNS domain: '' removes them ------------------------------------------------
def read_bridge(doc: Document) -> Optional[str]:
    return doc.attr('bridge', 'name')


def write_bridge(doc: Document, name: str) -> None:
    doc.set_attr('bridge', 'name', name or None)
    bridge = doc.find('bridge')
    if bridge is not None and not bridge.attrib:
        doc.remove('bridge')


def read_domain(doc: Document) -> Optional[str]:
    return doc.attr('domain', 'name')


def write_domain(doc: Document, name: str) -> None:
    if name:
        doc.set_attr('domain', 'name', name)
    else:
        doc.remove('domain')


def _live(_desired: Any, _actual: Any) -> str:
    return LIVE


NETWORK_OPTIONS: List[Option] = [
    Option('mode', choices=list(MODES), create_default='nat', read=read_mode, write=write_mode),
    Option('bridge', read=read_bridge, write=write_bridge, equal=set_or_empty),
    Option('ip', read=read_ip, write=write_ip, normalize=normalize_ip),
    Option('prefix', type='int', read=read_prefix, write=write_prefix, normalize=normalize_prefix),
    Option('dhcp', type='dict', suboptions=DHCP_SPEC, read=read_dhcp, write=write_dhcp, normalize=normalize_dhcp,
           equal=dhcp_equal, reach=_live),
    Option('domain', read=read_domain, write=write_domain, equal=set_or_empty),
    # Not part of the XML: converged by the lifecycle.
    Option('autostart', type='bool'),
]

NETWORK_ARGSPEC = argspec(
    NETWORK_OPTIONS,
    name=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=list(STATES)),
    recreate=dict(type='bool', default=False),
    **CONNECTION_ARGSPEC,
)
# virNetworkUpdate's commands and sections (fallbacks for bindings without the constants).
_COMMANDS = {'add': ('VIR_NETWORK_UPDATE_COMMAND_ADD_LAST', 3), 'delete': ('VIR_NETWORK_UPDATE_COMMAND_DELETE', 2),
             'modify': ('VIR_NETWORK_UPDATE_COMMAND_MODIFY', 1)}
_SECTIONS = {'host': ('VIR_NETWORK_SECTION_IP_DHCP_HOST', 4), 'range': ('VIR_NETWORK_SECTION_IP_DHCP_RANGE', 5)}
_ADDRESSING = {'mode', 'ip', 'prefix'}


def new_network(name: str) -> Document:
    """The skeleton of a new network; the table's writers fill in every declared option."""
    doc = Document('<network>\n  <name>%s</name>\n  <metadata/>\n</network>' % escape(name))
    doc.set_owner()
    return doc


def validate(name: str, params: Mapping[str, Any], desired: Mapping[str, Any], doc: Document) -> None:
    """Check the network as it would be after the run (declared values over the actual ones)."""
    mode = read_mode(doc)
    ip, prefix = read_ip(doc), read_prefix(doc)
    if mode == 'bridge':
        if not doc.attr('bridge', 'name'):
            raise FvError('network %r: mode bridge needs bridge (the name of an existing host bridge)' % name)
        declared = [key for key in ('ip', 'prefix', 'dhcp') if params.get(key) is not None]
        declared += ['domain'] if params.get('domain') else []
        if declared:
            raise FvError('network %r: mode bridge takes no %s (the host bridge brings its own network)'
                          % (name, ', '.join(declared)))
        return
    if mode in ('nat', 'route') and not ip:
        raise FvError('network %r: mode %s needs ip (the host address on the network) and prefix' % (name, mode))
    if _ipv4_elem(doc) is not None and not ip:
        raise FvError('network %r: prefix needs ip' % name)
    dhcp = read_dhcp(doc) or {'ranges': [], 'hosts': []}
    declared_dhcp = desired.get('dhcp') or {}
    if (declared_dhcp.get('ranges') or declared_dhcp.get('hosts')) and not ip:
        raise FvError('network %r: dhcp needs ip' % name)
    if not ip:
        return
    subnet = ipaddress.IPv4Network('%s/%s' % (ip, prefix if prefix is not None else 32), strict=False)
    for item in dhcp['ranges']:
        start, end = ipaddress.IPv4Address(item['start']), ipaddress.IPv4Address(item['end'])
        if start not in subnet or end not in subnet:
            raise FvError('network %r: dhcp range %s-%s is not inside %s' % (name, start, end, subnet))
        if item in (declared_dhcp.get('ranges') or []) and start <= ipaddress.IPv4Address(ip) <= end:
            raise FvError('network %r: dhcp range %s-%s contains the network\'s own address %s'
                          % (name, start, end, ip))
    for host in declared_dhcp.get('hosts') or []:
        if ipaddress.IPv4Address(host['ip']) not in subnet:
            raise FvError('network %r: dhcp host %s: %s is not inside %s'
                          % (name, _describe_host(host), host['ip'], subnet))


class Network(DefinedObject):
    noun = 'network'
    kind = 'network'
    inactive_flag = 'VIR_NETWORK_XML_INACTIVE'
    table = NETWORK_OPTIONS
    result_key = 'network'

    def lookup(self, name: str) -> Any:
        return lookup_network(self.conn, name)

    def define(self, doc: Document) -> Any:
        return self.conn.networkDefineXML(doc.tostring())

    def new_document(self, name: str) -> Document:
        return new_network(name)

    def settle(self, params: Mapping[str, Any], desired: Dict[str, Any], actual: Optional[Actual]) -> None:
        if 'ip' in desired and (actual is None or actual.values.get('ip') is None):
            desired.setdefault('prefix', DEFAULT_PREFIX)  # a new address without a prefix
        if actual is not None and actual.values['mode'] == 'bridge' and desired.get('mode', 'bridge') != 'bridge' \
                and 'bridge' not in desired:
            desired['bridge'] = ''  # the host bridge is not libvirt's: it picks a virbrN of its own

    def validate(self, params: Mapping[str, Any], desired: Mapping[str, Any], doc: Document) -> None:
        validate(params['name'], params, desired, doc)

    def withheld(self, changes: Sequence[Change]) -> Tuple[Change, ...]:
        """Structural changes; DHCP also waits when the addressing it lives in changes."""
        structural = tuple(c for c in changes if c.reach != LIVE)
        if _ADDRESSING & {c.name for c in structural}:
            return tuple(changes)
        return structural

    def live_actions(self, handle: Handle, actual: Actual, changes: Sequence[Change], active: bool) -> List[Action]:
        dhcp = next((c for c in changes if c.name == 'dhcp'), None)
        if dhcp is None:
            return []
        flags = flag('VIR_NETWORK_UPDATE_AFFECT_CONFIG', 2) | (flag('VIR_NETWORK_UPDATE_AFFECT_LIVE', 1) if active else 0)
        index = ipv4_index(actual.doc)
        name = actual.doc.text('name')
        where = ' (live and config)' if active else ' (config)'
        actions = []
        for command, section, elem, description in dhcp_commands(dhcp.after, dhcp.before):
            def run(command: str = command, section: str = section, xml: str = ET.tostring(elem, encoding='unicode')) -> None:
                with mapped('network %r: update DHCP' % name):
                    handle.obj.update(flag(*_COMMANDS[command]), flag(*_SECTIONS[section]), index, xml, flags)
            actions.append(Action('%s of network %s%s' % (description, name, where), run))
        return actions
