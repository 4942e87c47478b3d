# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network service against libvirt's test driver (no daemon).

Each test gets its own test driver, loaded from a node XML string (``test:///<file>`` keeps its
state per connection; ``test:///default`` is shared by the whole process).
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

libvirt = pytest.importorskip('libvirt')

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError  # noqa: E402
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one  # noqa: E402
from recording import MUTATING, Recorder, view_of  # noqa: E402
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import connect  # noqa: E402
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.network import (  # noqa: E402
    NETWORK_ARGSPEC, Network, dhcp_commands,
)

NODE = """<node>
  <network>
    <name>default</name>
    <forward mode='nat'/>
    <bridge name='virbr0'/>
    <ip address='192.168.122.1' netmask='255.255.255.0'>
      <dhcp>
        <range start='192.168.122.2' end='192.168.122.254'/>
      </dhcp>
    </ip>
  </network>
</node>
"""

LAB = dict(
    name='lab', mode='nat', ip='10.10.0.1', prefix=24, domain='lab.internal',
    dhcp={'ranges': [{'start': '10.10.0.100', 'end': '10.10.0.199'}],
          'hosts': [{'mac': '52:54:00:00:10:01', 'name': 'web1', 'ip': '10.10.0.11'}]},
)


@pytest.fixture
def conn(tmp_path):
    node = tmp_path / 'node.xml'
    node.write_text(NODE)
    connection = connect('test://%s' % node, 5)
    yield connection
    connection.close()


def params(**kwargs: Any) -> Dict[str, Any]:
    """Module parameters as AnsibleModule would pass them (undeclared options are None)."""
    result: Dict[str, Any] = {key: spec.get('default') for key, spec in NETWORK_ARGSPEC.items()}
    result.update(kwargs)
    return result


def xml_of(conn: Any, name: str) -> str:
    return conn.networkLookupByName(name).XMLDesc(0)


def run(conn: Any, check_mode: bool = False, **kwargs: Any) -> Dict[str, Any]:
    return converge_one(Network(conn, check_mode), params(**kwargs))


def describe_network(net: Any) -> Dict[str, Any]:
    return view_of(Network(net.connect()), net.name())


# ---- create, idempotence, check mode ------------------------------------------------------------
def test_create_then_second_run_changes_nothing(conn):
    result = run(conn, autostart=True, **LAB)
    assert result['changed'] is True
    assert result['actions'] == ['define network lab', 'set autostart of network lab to True', 'start network lab']
    assert result['recreate_required'] is False
    net = result['network']
    assert net['active'] is True and net['autostart'] is True and net['owned'] is True
    assert (net['mode'], net['ip'], net['prefix'], net['domain']) == ('nat', '10.10.0.1', 24, 'lab.internal')
    assert net['dhcp'] == {'ranges': [{'start': '10.10.0.100', 'end': '10.10.0.199'}],
                           'hosts': [{'mac': '52:54:00:00:10:01', 'name': 'web1', 'ip': '10.10.0.11'}]}
    assert result['diff']['before'] == {'state': 'absent'}
    assert result['diff']['after']['state'] == 'active'
    text = xml_of(conn, 'lab')
    assert "<forward mode='nat'/>" in text
    assert "<host mac='52:54:00:00:10:01' name='web1' ip='10.10.0.11'/>" in text
    assert 'urn:firmvisor:hypervisor:1' in text  # ownership metadata

    again = run(conn, autostart=True, **LAB)
    assert again['changed'] is False
    assert again['actions'] == []
    assert again['diff']['before'] == again['diff']['after']


def test_check_mode_creates_nothing_and_makes_no_mutating_call(conn):
    calls: List[tuple] = []
    result = run(Recorder(conn, calls, strict=True), check_mode=True, autostart=True, **LAB)
    assert result['changed'] is True
    assert result['actions'] == ['define network lab', 'set autostart of network lab to True', 'start network lab']
    assert result['diff']['after']['ip'] == '10.10.0.1'
    assert result['network']['uuid'] is None
    assert 'lab' not in conn.listNetworks() + conn.listDefinedNetworks()
    assert not [c for c in calls if MUTATING.search(c[0])]


def test_check_mode_on_existing_network_plans_without_changing(conn):
    run(conn, **LAB)
    before = xml_of(conn, 'lab')
    calls: List[tuple] = []
    changed_hosts = {'hosts': [{'mac': '52:54:00:00:10:02', 'ip': '10.10.0.12'}]}
    for kwargs in (dict(dhcp=changed_hosts), dict(ip='10.20.0.1', dhcp={'ranges': [], 'hosts': []}, recreate=True),
                   dict(state='inactive'), dict(state='absent'), dict(autostart=True)):
        result = run(Recorder(conn, calls, strict=True), check_mode=True, name='lab', **kwargs)
        assert result['changed'] is True, kwargs
    assert xml_of(conn, 'lab') == before
    assert conn.networkLookupByName('lab').isActive()
    # Converged: check mode reports no change either.
    result = run(Recorder(conn, calls, strict=True), check_mode=True, **LAB)
    assert result['changed'] is False


def test_present_does_not_start_an_existing_inactive_network(conn):
    run(conn, state='inactive', **LAB)
    assert not conn.networkLookupByName('lab').isActive()
    result = run(conn, **LAB)
    assert result['changed'] is False
    assert not conn.networkLookupByName('lab').isActive()
    result = run(conn, name='lab', state='active')
    assert result['actions'] == ['start network lab']
    assert conn.networkLookupByName('lab').isActive()


# ---- live DHCP updates --------------------------------------------------------------------------
def test_dhcp_hosts_change_live_on_an_active_network(conn):
    run(conn, **LAB)
    calls: List[tuple] = []
    hosts = [{'mac': '52:54:00:00:10:01', 'name': 'web1', 'ip': '10.10.0.21'},
             {'mac': '52:54:00:00:10:02', 'name': 'web2', 'ip': '10.10.0.22'}]
    result = run(Recorder(conn, calls), name='lab', dhcp={'hosts': hosts})
    assert result['changed'] is True
    assert result['recreate_required'] is False
    names = [c[0] for c in calls]
    assert 'update' in names
    assert not {'destroy', 'networkDefineXML', 'create'} & set(names)
    live_and_config = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    updates = [c for c in calls if c[0] == 'update']
    assert all(c[5] == live_and_config for c in updates)
    assert [c[1] for c in updates] == [libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
                                       libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST]
    net = conn.networkLookupByName('lab')
    assert net.isActive()
    assert describe_network(net)['dhcp']['hosts'] == hosts
    assert result['diff']['after']['dhcp']['hosts'] == hosts
    assert result['diff']['before']['dhcp']['hosts'] == LAB['dhcp']['hosts']
    # Ranges were not declared: left alone.
    assert describe_network(net)['dhcp']['ranges'] == LAB['dhcp']['ranges']
    assert run(conn, name='lab', dhcp={'hosts': hosts})['changed'] is False


def test_dhcp_ranges_and_host_removal_live(conn):
    run(conn, **LAB)
    result = run(conn, name='lab', dhcp={'ranges': [{'start': '10.10.0.50', 'end': '10.10.0.60'}], 'hosts': []})
    assert result['changed'] is True
    assert result['actions'] == [
        'delete DHCP range 10.10.0.100-10.10.0.199 of network lab (live and config)',
        'delete DHCP host mac=52:54:00:00:10:01 name=web1 ip=10.10.0.11 of network lab (live and config)',
        'add DHCP range 10.10.0.50-10.10.0.60 of network lab (live and config)',
    ]
    dhcp = describe_network(conn.networkLookupByName('lab'))['dhcp']
    assert dhcp == {'ranges': [{'start': '10.10.0.50', 'end': '10.10.0.60'}], 'hosts': []}


def test_dhcp_update_on_an_inactive_network_affects_config_only(conn):
    run(conn, state='inactive', **LAB)
    calls: List[tuple] = []
    result = run(Recorder(conn, calls), name='lab', dhcp={'hosts': [{'name': 'db', 'ip': '10.10.0.30'}]})
    assert result['changed'] is True
    updates = [c for c in calls if c[0] == 'update']
    assert updates and all(c[5] == libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG for c in updates)
    assert describe_network(conn.networkLookupByName('lab'))['dhcp']['hosts'] == [{'name': 'db', 'ip': '10.10.0.30'}]


def test_dhcp_commands_swap_addresses_without_collisions():
    actual = {'ranges': [], 'hosts': [{'mac': '52:54:00:00:00:01', 'ip': '10.0.0.5'},
                                      {'mac': '52:54:00:00:00:02', 'ip': '10.0.0.6'}]}
    desired = {'hosts': [{'mac': '52:54:00:00:00:01', 'ip': '10.0.0.6'},
                         {'mac': '52:54:00:00:00:02', 'ip': '10.0.0.5'}]}
    commands = [(c[0], c[2].get('mac'), c[2].get('ip')) for c in dhcp_commands(desired, actual)]
    assert commands == [('delete', '52:54:00:00:00:01', '10.0.0.5'), ('delete', '52:54:00:00:00:02', '10.0.0.6'),
                        ('add', '52:54:00:00:00:01', '10.0.0.6'), ('add', '52:54:00:00:00:02', '10.0.0.5')]


def test_swapping_addresses_converges(conn):
    hosts = [{'mac': '52:54:00:00:00:01', 'ip': '10.10.0.5'}, {'mac': '52:54:00:00:00:02', 'ip': '10.10.0.6'}]
    run(conn, **{**LAB, 'dhcp': {'hosts': hosts}})
    swapped = [{'mac': '52:54:00:00:00:01', 'ip': '10.10.0.6'}, {'mac': '52:54:00:00:00:02', 'ip': '10.10.0.5'}]
    assert run(conn, name='lab', dhcp={'hosts': swapped})['changed'] is True
    assert run(conn, name='lab', dhcp={'hosts': swapped})['changed'] is False


# ---- changes that need the network restarted ----------------------------------------------------
def test_change_that_needs_recreate_is_reported_not_done(conn):
    run(conn, **LAB)
    before = xml_of(conn, 'lab')
    calls: List[tuple] = []
    moved = dict(ip='10.20.0.1', dhcp={'ranges': [{'start': '10.20.0.100', 'end': '10.20.0.199'}], 'hosts': []})
    result = run(Recorder(conn, calls), name='lab', **moved)
    assert result['recreate_required'] is True
    assert result['changed'] is False
    assert result['actions'] == []
    assert 'recreate=true' in result['warnings'][0]
    # The diff is the real before and after: the change was not made.
    assert result['diff']['before']['ip'] == result['diff']['after']['ip'] == '10.10.0.1'
    assert 'ip' in result['warnings'][0]
    assert not [c for c in calls if MUTATING.search(c[0])]
    assert xml_of(conn, 'lab') == before

    result = run(conn, name='lab', recreate=True, **moved)
    assert result['changed'] is True
    assert result['recreate_required'] is False
    assert result['actions'] == ['recreate network lab: stop', 'recreate network lab: define',
                                 'recreate network lab: start']
    net = conn.networkLookupByName('lab')
    assert net.isActive()
    info = describe_network(net)
    assert (info['ip'], info['dhcp']['ranges'], info['dhcp']['hosts']) == ('10.20.0.1', moved['dhcp']['ranges'], [])
    assert info['owned'] is True  # the metadata survived the redefinition
    assert run(conn, name='lab', recreate=True, **moved)['changed'] is False


def test_dhcp_is_applied_live_while_another_change_waits_for_recreate(conn):
    run(conn, **LAB)
    hosts = [{'mac': '52:54:00:00:10:09', 'ip': '10.10.0.99'}]
    result = run(conn, name='lab', domain='other.internal', dhcp={'hosts': hosts})
    assert result['recreate_required'] is True
    assert result['changed'] is True
    info = describe_network(conn.networkLookupByName('lab'))
    assert info['dhcp']['hosts'] == hosts
    assert info['domain'] == 'lab.internal'


def test_inactive_network_is_redefined_without_recreate(conn):
    run(conn, state='inactive', **LAB)
    result = run(conn, name='lab', prefix=16, domain='')
    assert result['changed'] is True
    assert result['recreate_required'] is False
    assert result['actions'] == ['update network lab']
    info = describe_network(conn.networkLookupByName('lab'))
    assert (info['prefix'], info['domain'], info['active']) == (16, None, False)


def test_state_inactive_stops_then_redefines(conn):
    run(conn, **LAB)
    result = run(conn, name='lab', state='inactive', ip='10.30.0.1',
                 dhcp={'ranges': [{'start': '10.30.0.10', 'end': '10.30.0.20'}], 'hosts': []})
    assert result['actions'] == ['stop network lab', 'update network lab']
    assert result['recreate_required'] is False
    assert result['diff']['after']['state'] == 'inactive'


def test_mode_switch_to_host_bridge_drops_addresses(conn):
    run(conn, state='inactive', **LAB)
    result = run(conn, name='lab', mode='bridge', bridge='br0')
    assert result['changed'] is True
    text = xml_of(conn, 'lab')
    assert "<forward mode='bridge'/>" in text
    assert "<bridge name='br0'/>" in text
    assert '<ip' not in text and '<domain' not in text
    assert run(conn, name='lab', mode='bridge', bridge='br0')['changed'] is False
    # Back to NAT without a bridge name: libvirt picks its own bridge, not the host's.
    run(conn, name='lab', mode='nat', ip='10.10.0.1')
    info = describe_network(conn.networkLookupByName('lab'))
    assert info['mode'] == 'nat' and info['bridge'] != 'br0' and info['prefix'] == 24


def test_unknown_xml_is_kept(conn):
    conn.networkDefineXML("""<network>
  <name>keep</name>
  <bridge name='virbr7'/>
  <dns>
    <host ip='10.7.0.50'><hostname>printer</hostname></host>
  </dns>
  <ip address='10.7.0.1' prefix='24'/>
  <ip family='ipv6' address='fd00:7::1' prefix='64'/>
</network>""")
    result = run(conn, name='keep', mode='isolated', dhcp={'ranges': [{'start': '10.7.0.10', 'end': '10.7.0.20'}]},
                 domain='keep.internal')
    assert result['changed'] is True
    text = xml_of(conn, 'keep')
    assert '<hostname>printer</hostname>' in text
    assert "address='fd00:7::1'" in text
    assert "<range start='10.7.0.10' end='10.7.0.20'/>" in text
    assert run(conn, name='keep', mode='isolated', domain='keep.internal',
               dhcp={'ranges': [{'start': '10.7.0.10', 'end': '10.7.0.20'}]})['changed'] is False


def test_default_network_is_read(conn):
    info = describe_network(conn.networkLookupByName('default'))
    assert (info['mode'], info['bridge'], info['ip'], info['prefix']) == ('nat', 'virbr0', '192.168.122.1', 24)
    assert info['owned'] is False


def test_absent(conn):
    run(conn, **LAB)
    result = run(conn, name='lab', state='absent')
    assert result['actions'] == ['stop network lab', 'undefine network lab']
    assert result['diff'] == {'before': {'state': 'active'}, 'after': {'state': 'absent'}}
    assert 'lab' not in conn.listNetworks() + conn.listDefinedNetworks()
    assert run(conn, name='lab', state='absent')['changed'] is False


# ---- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs, message', [
    (dict(ip='10.10.0.300'), 'ip must be an IPv4 address'),
    (dict(ip='fd00::1'), 'ip must be an IPv4 address'),
    (dict(ip='10.10.0.1', prefix=33), 'prefix must be an integer from 0 to 32'),
    (dict(ip='10.10.0.1', dhcp={'ranges': [{'start': '10.11.0.1', 'end': '10.11.0.9'}]}), 'is not inside 10.10.0.0/24'),
    (dict(ip='10.10.0.1', dhcp={'ranges': [{'start': '10.10.0.9', 'end': '10.10.0.1'}]}), 'is after end'),
    (dict(ip='10.10.0.1', dhcp={'ranges': [{'start': '10.10.0.1', 'end': '10.10.0.9'}]}), "network's own address"),
    (dict(ip='10.10.0.1', dhcp={'hosts': [{'mac': '52:54:00:00:00:01', 'ip': '10.99.0.1'}]}), 'is not inside'),
    (dict(ip='10.10.0.1', dhcp={'hosts': [{'ip': '10.10.0.5'}]}), 'give mac or name'),
    (dict(ip='10.10.0.1', dhcp={'hosts': [{'mac': 'nope', 'ip': '10.10.0.5'}]}), 'invalid MAC address'),
    (dict(ip='10.10.0.1', dhcp={'hosts': [{'name': 'a', 'ip': '10.10.0.5'}, {'name': 'b', 'ip': '10.10.0.5'}]}),
     'the same ip is listed twice'),
    (dict(mode='isolated', dhcp={'ranges': [{'start': '10.10.0.2', 'end': '10.10.0.9'}]}), 'dhcp needs ip'),
    (dict(mode='nat'), 'mode nat needs ip'),
    (dict(mode='route', prefix=24), 'mode route needs ip'),
    (dict(mode='isolated', prefix=24), 'prefix needs ip'),
    (dict(mode='bridge'), 'mode bridge needs bridge'),
    (dict(mode='bridge', bridge='br0', ip='10.10.0.1'), 'mode bridge takes no ip'),
])
def test_bad_input_fails_before_any_change(conn, kwargs, message):
    calls: List[tuple] = []
    with pytest.raises(FvError) as info:
        run(Recorder(conn, calls, strict=True), name='lab', **kwargs)
    assert message in str(info.value)
    assert "network 'lab'" in str(info.value)
    assert 'lab' not in conn.listNetworks() + conn.listDefinedNetworks()


def test_bad_update_of_an_existing_network_changes_nothing(conn):
    run(conn, **LAB)
    before = xml_of(conn, 'lab')
    with pytest.raises(FvError, match="network 'lab': dhcp range 10.10.0.100-10.10.0.199 is not inside 10.20.0.0/24"):
        run(Recorder(conn, [], strict=True), name='lab', ip='10.20.0.1', recreate=True)
    assert xml_of(conn, 'lab') == before


def test_libvirt_errors_name_the_network(conn):
    with pytest.raises(FvError, match=r"network 'a/b': define: .*invalid char in name"):
        run(conn, name='a/b', mode='isolated')


# ---- the module's documentation matches its argument spec ---------------------------------------
