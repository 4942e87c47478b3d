# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The storage pool service against libvirt's test driver (no daemon).

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
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.pool import (  # noqa: E402
    POOL_ARGSPEC, Pool,
)

NODE = """<node>
  <pool type='dir'>
    <name>default-pool</name>
    <target>
      <path>/default-pool</path>
    </target>
  </pool>
  <pool type='dir'>
    <name>images</name>
    <target>
      <path>/srv/images</path>
    </target>
    <volume>
      <name>base.qcow2</name>
      <capacity unit='MiB'>64</capacity>
    </volume>
    <volume>
      <name>web1-0</name>
      <capacity unit='MiB'>128</capacity>
    </volume>
  </pool>
</node>
"""


@pytest.fixture
def conn(tmp_path):
    node = tmp_path / 'node.xml'
    node.write_text(NODE)
    connection = connect('test://%s' % node, 5)
    yield connection
    connection.close()


def params(**kwargs: Any) -> Dict[str, Any]:
    result: Dict[str, Any] = {key: spec.get('default') for key, spec in POOL_ARGSPEC.items()}
    result.update(kwargs)
    return result


def run(conn: Any, check_mode: bool = False, **kwargs: Any) -> Dict[str, Any]:
    return converge_one(Pool(conn, check_mode), params(**kwargs))


def describe_pool(pool: Any) -> Dict[str, Any]:
    return view_of(Pool(pool.connect()), pool.name())


def names(conn: Any) -> List[str]:
    return conn.listStoragePools() + conn.listDefinedStoragePools()


# ---- create, idempotence, check mode ------------------------------------------------------------
def test_create_dir_pool_then_second_run_changes_nothing(conn):
    result = run(conn, name='vms', path='/var/lib/libvirt/images/vms/', autostart=True)
    assert result['changed'] is True
    assert result['actions'] == ['define storage pool vms', 'build storage pool vms',
                                 'set autostart of storage pool vms to True', 'start storage pool vms']
    pool = result['pool']
    assert (pool['name'], pool['type'], pool['path']) == ('vms', 'dir', '/var/lib/libvirt/images/vms')
    assert pool['active'] is True and pool['autostart'] is True and pool['volumes'] == []
    assert isinstance(pool['capacity'], int) and isinstance(pool['available'], int)
    assert result['diff'] == {'before': {'state': 'absent'},
                              'after': {'type': 'dir', 'path': '/var/lib/libvirt/images/vms', 'state': 'active',
                                        'autostart': True}}
    again = run(conn, name='vms', path='/var/lib/libvirt/images/vms', type='dir', autostart=True)
    assert again['changed'] is False
    assert again['actions'] == []
    assert again['diff']['before'] == again['diff']['after']


def test_check_mode_creates_nothing_and_makes_no_mutating_call(conn):
    calls: List[tuple] = []
    result = run(Recorder(conn, calls, strict=True), check_mode=True, name='vms', path='/srv/vms', autostart=True)
    assert result['changed'] is True
    assert result['actions'] == ['define storage pool vms', 'build storage pool vms',
                                 'set autostart of storage pool vms to True', 'start storage pool vms']
    assert result['pool']['uuid'] is None and result['pool']['path'] == '/srv/vms'
    assert 'vms' not in names(conn)
    assert not [c for c in calls if MUTATING.search(c[0])]


def test_check_mode_on_existing_pool_plans_without_changing(conn):
    before = conn.storagePoolLookupByName('images').XMLDesc(0)
    calls: List[tuple] = []
    for kwargs in (dict(path='/srv/other', recreate=True), dict(state='inactive', path='/srv/other'),
                   dict(state='absent'), dict(state='absent', delete_contents=True), dict(autostart=True)):
        result = run(Recorder(conn, calls, strict=True), check_mode=True, name='images', **kwargs)
        assert result['changed'] is True, kwargs
    result = run(Recorder(conn, calls, strict=True), check_mode=True, name='images', state='absent',
                 delete_contents=True)
    assert 'delete volume images/base.qcow2' in result['actions']
    assert conn.storagePoolLookupByName('images').XMLDesc(0) == before
    assert conn.storagePoolLookupByName('images').isActive()
    assert run(Recorder(conn, calls, strict=True), check_mode=True, name='images', path='/srv/images',
               state='active')['changed'] is False


def test_state_inactive_creates_a_built_but_stopped_pool(conn):
    result = run(conn, name='cold', path='/srv/cold', state='inactive')
    assert result['actions'] == ['define storage pool cold', 'build storage pool cold']
    assert not conn.storagePoolLookupByName('cold').isActive()
    assert run(conn, name='cold', path='/srv/cold')['changed'] is False  # present keeps it stopped
    assert run(conn, name='cold', state='active')['actions'] == ['start storage pool cold']
    assert run(conn, name='cold', state='inactive')['actions'] == ['stop storage pool cold']


def test_build_never_overwrites_device_pools(conn):
    calls: List[tuple] = []
    fake = {'build': lambda flags: 0}  # the test driver cannot build fs pools
    result = run(Recorder(conn, calls, fake=fake), name='data', type='fs', path='/srv/data',
                 source={'device': '/dev/sdb', 'format': 'ext4'}, state='inactive')
    assert result['changed'] is True
    builds = [c for c in calls if c[0] == 'build']
    assert builds == [('build', libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE)]
    assert 'never overwriting' in result['actions'][1]
    info = describe_pool(conn.storagePoolLookupByName('data'))
    assert info['source'] == {'device': ['/dev/sdb'], 'format': 'ext4'}
    assert run(conn, name='data', type='fs', path='/srv/data',
               source={'device': ['/dev/sdb'], 'format': 'ext4'}, state='inactive')['changed'] is False


def test_already_built_device_is_used_as_it_is(conn):
    class Built(libvirt.libvirtError):
        def get_error_code(self):
            return libvirt.VIR_ERR_STORAGE_POOL_BUILT

        def get_error_message(self):
            return "Device '/dev/sdb' already formatted using 'ext4'"

    def build(_flags):
        raise Built('already built')

    result = run(Recorder(conn, [], fake={'build': build}), name='data', type='fs', path='/srv/data',
                 source={'device': ['/dev/sdb']}, state='inactive')
    assert result['changed'] is True
    assert 'already formatted' in result['warnings'][0]
    assert 'data' in names(conn)


# ---- changes --------------------------------------------------------------------------------------
def test_change_on_active_pool_is_refused_without_recreate(conn):
    before = conn.storagePoolLookupByName('images').XMLDesc(0)
    with pytest.raises(FvError) as info:
        run(Recorder(conn, [], strict=True), name='images', path='/srv/images2')
    message = str(info.value)
    assert "storage pool 'images' is active" in message
    assert "path from '/srv/images' to '/srv/images2'" in message
    assert 'recreate=true' in message
    assert conn.storagePoolLookupByName('images').XMLDesc(0) == before

    result = run(conn, name='images', path='/srv/images2', recreate=True)
    assert result['changed'] is True
    assert result['actions'] == ['recreate storage pool images: stop', 'recreate storage pool images: define',
                                 'build storage pool images', 'recreate storage pool images: start']
    assert result['diff']['before'] == {'path': '/srv/images', 'state': 'active'}
    assert result['diff']['after'] == {'path': '/srv/images2', 'state': 'active'}
    pool = conn.storagePoolLookupByName('images')
    assert pool.isActive() and describe_pool(pool)['path'] == '/srv/images2'
    assert run(conn, name='images', path='/srv/images2', recreate=True)['changed'] is False


def test_inactive_pool_is_redefined(conn):
    run(conn, name='images', state='inactive')
    result = run(conn, name='images', path='/srv/moved')
    assert result['actions'] == ['update storage pool images']
    info = describe_pool(conn.storagePoolLookupByName('images'))
    assert (info['path'], info['active'], info['uuid']) == ('/srv/moved', False, result['pool']['uuid'])


def test_state_inactive_allows_the_change_of_an_active_pool(conn):
    result = run(conn, name='images', path='/srv/moved', state='inactive')
    assert result['actions'] == ['stop storage pool images', 'update storage pool images']


def test_type_change_to_netfs(conn):
    run(conn, name='nas', path='/mnt/nas', state='inactive')
    result = run(conn, name='nas', type='netfs', source={'host': 'nas.example.com', 'dir': '/export/vms'})
    assert result['changed'] is True
    info = describe_pool(conn.storagePoolLookupByName('nas'))
    assert info['type'] == 'netfs'
    assert info['source'] == {'host': 'nas.example.com', 'dir': '/export/vms', 'format': 'auto'}  # libvirt's default
    assert run(conn, name='nas', type='netfs', source={'host': 'nas.example.com', 'dir': '/export/vms'},
               path='/mnt/nas')['changed'] is False


# ---- removal keeps data unless told ---------------------------------------------------------------
def test_absent_keeps_the_data(conn):
    calls: List[tuple] = []
    result = run(Recorder(conn, calls), name='images', state='absent')
    assert result['actions'] == ['stop storage pool images', 'undefine storage pool images']
    assert not [c for c in calls if c[0] == 'delete']
    assert result['diff'] == {'before': {'state': 'active'}, 'after': {'state': 'absent'}}
    assert 'images' not in names(conn)
    assert run(conn, name='images', state='absent')['changed'] is False


def test_absent_with_delete_contents_deletes_volumes_and_pool(conn):
    calls: List[tuple] = []
    result = run(Recorder(conn, calls), name='images', state='absent', delete_contents=True)
    assert result['actions'] == [
        'delete volume images/base.qcow2', 'delete volume images/web1-0', 'stop storage pool images',
        'delete storage pool images (its directory, file system or volume group)', 'undefine storage pool images',
    ]
    assert [c[0] for c in calls if c[0] in ('delete', 'destroy', 'undefine')] == \
        ['delete', 'delete', 'destroy', 'delete', 'undefine']
    assert 'images' not in names(conn)


def test_delete_contents_starts_an_inactive_pool_to_find_its_volumes(conn):
    run(conn, name='images', state='inactive')
    result = run(conn, name='images', state='absent', delete_contents=True)
    # The volumes of a stopped pool are known only once it runs: the plan names them all at once.
    assert result['actions'][:2] == ['start storage pool images to delete its volumes',
                                     'delete every volume of storage pool images']
    assert 'images' not in names(conn)


def test_delete_contents_is_ignored_unless_absent(conn):
    result = run(conn, name='images', path='/srv/images', delete_contents=True)
    assert result['changed'] is False
    assert describe_pool(conn.storagePoolLookupByName('images'))['volumes'] == ['base.qcow2', 'web1-0']


def test_describe(conn):
    info = describe_pool(conn.storagePoolLookupByName('images'))
    assert info['volumes'] == ['base.qcow2', 'web1-0']
    assert set(info) >= {'name', 'uuid', 'type', 'path', 'active', 'autostart', 'capacity', 'allocation',
                         'available', 'volumes'}
    assert describe_pool(conn.storagePoolLookupByName('default-pool'))['path'] == '/default-pool'


# ---- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs, message', [
    (dict(path='relative/dir'), 'path must be an absolute path'),
    (dict(), 'type dir needs path'),
    (dict(type='netfs', path='/mnt/x'), 'type netfs needs source.host and source.dir'),
    (dict(type='netfs', path='/mnt/x', source={'host': 'nas'}), 'type netfs needs source.host and source.dir'),
    (dict(type='fs', path='/mnt/x'), 'type fs needs source.device'),
    (dict(type='fs', path='/mnt/x', source={'device': ['/dev/sdb', '/dev/sdc']}), 'type fs needs source.device'),
    (dict(path='/srv/x', source={'device': ['/dev/sdb']}), 'type dir takes no source'),
    (dict(type='logical', source={'device': ['sdb']}), 'source.device must be absolute paths'),
])
def test_bad_input_fails_before_any_change(conn, kwargs, message):
    with pytest.raises(FvError) as info:
        run(Recorder(conn, [], strict=True), name='bad', **kwargs)
    assert message in str(info.value)
    assert "storage pool 'bad'" in str(info.value)
    assert 'bad' not in names(conn)


def test_libvirt_errors_name_the_pool(conn):
    with pytest.raises(FvError, match=r"storage pool 'a/b': define: .*name a/b cannot contain '/'"):
        run(conn, name='a/b', path='/srv/ab')


# ---- the module's documentation matches its argument spec ---------------------------------------
