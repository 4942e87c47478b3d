# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fv-state, the on-host persisted configuration: seed parsing, the files a seed makes, the state tar,
the atomic save and the restore (docs/image.md). No root, no devices: every path is a temporary one."""

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile

import pytest
from image_tools import fvlib, fvstate

KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example'
NIC = {'name': 'ens16', 'mac': '52:54:00:12:34:56', 'permanent': True}


# ---- seed -------------------------------------------------------------------------------------------
def test_good_seed():
    seed, problems = fvlib.parse_seed(json.dumps({
        'hostname': 'hv1', 'authorized_keys': [KEY, '  ' + KEY + '  '],
        'network': {'mode': 'static', 'address': '192.0.2.10/24', 'gateway': '192.0.2.1', 'dns': ['192.0.2.53']},
        'install_to': '/dev/vda'}).encode())
    assert problems == []
    assert seed.hostname == 'hv1'
    assert seed.authorized_keys == [KEY, KEY]
    assert seed.network == {'mode': 'static', 'address': '192.0.2.10/24', 'gateway': '192.0.2.1',
                            'dns': ['192.0.2.53']}
    assert seed.install_to == '/dev/vda'


def test_minimal_dhcp_seed():
    seed, problems = fvlib.parse_seed('{"hostname": "hv2", "authorized_keys": ["%s"], '
                                      '"network": {"mode": "dhcp"}}' % KEY)
    assert problems == []
    assert (seed.hostname, seed.network, seed.install_to) == ('hv2', {'mode': 'dhcp'}, None)


@pytest.mark.parametrize('data, reason', [
    (b'{"hostname": "hv1",', 'not valid JSON'),
    (b'', 'not valid JSON'),
    (b'\xff\xfe{}', 'not UTF-8'),
    (b'["hv1"]', 'not an object'),
    (b'"hv1"', 'not an object'),
])
def test_malformed_seed_gives_defaults(data, reason):
    seed, problems = fvlib.parse_seed(data)
    assert seed == fvlib.Seed()
    assert len(problems) == 1 and reason in problems[0] and 'defaults' in problems[0]


def test_wrong_types_give_each_field_its_default():
    seed, problems = fvlib.parse_seed(json.dumps({
        'hostname': 42, 'authorized_keys': KEY, 'network': 'dhcp', 'install_to': 7, 'install_force': 'yes'}))
    assert seed == fvlib.Seed()
    text = '\n'.join(problems)
    for word in ('hostname must be a string', 'authorized_keys must be a list', 'network must be an object',
                 'install_to must be a device path', 'install_force must be true or false',
                 'nobody can log in'):
        assert word in text


def test_bad_values_are_reported_and_dropped():
    seed, problems = fvlib.parse_seed(json.dumps({
        'hostname': 'bad_name!', 'authorized_keys': [KEY, 'not a key', 3, KEY + '\nssh-rsa AAAA injected'],
        'network': {'mode': 'static', 'address': '192.0.2.10'}, 'install_to': '/dev/../etc/passwd',
        'colour': 'blue'}))
    assert seed.hostname == fvlib.DEFAULT_HOSTNAME
    assert seed.authorized_keys == [KEY]
    assert seed.network == {'mode': 'dhcp'}
    assert seed.install_to is None
    text = '\n'.join(problems)
    assert "unknown key 'colour'" in text
    assert 'authorized_keys[1]' in text and 'authorized_keys[2]' in text and 'authorized_keys[3]' in text
    assert 'address with a prefix' in text


@pytest.mark.parametrize('network, problem', [
    ({'mode': 'bridge'}, 'mode must be'),
    ({'mode': 'static', 'address': '192.0.2.10/24', 'gateway': 'router'}, 'gateway'),
    ({'mode': 'static', 'address': '192.0.2.10/24', 'dns': ['192.0.2.53', 5]}, 'dns'),
])
def test_bad_network(network, problem):
    seed, problems = fvlib.parse_seed(json.dumps({'hostname': 'hv1', 'authorized_keys': [KEY],
                                                  'network': network}))
    assert seed.network == {'mode': 'dhcp'}
    assert len(problems) == 1 and problem in problems[0] and 'DHCP' in problems[0]


def test_missing_fields_give_defaults():
    seed, problems = fvlib.parse_seed('{}')
    assert seed == fvlib.Seed()
    assert any('no hostname' in p for p in problems)
    assert any('nobody can log in' in p for p in problems)


def test_seed_files_static_and_dhcp():
    seed, _unused = fvlib.parse_seed(json.dumps({
        'hostname': 'hv1', 'authorized_keys': [KEY],
        'network': {'mode': 'static', 'address': '192.0.2.10/24', 'gateway': '192.0.2.1', 'dns': ['192.0.2.53']}}))
    files = fvstate.seed_files(seed, NIC)
    assert files['etc/hostname'] == ('hv1\n', 0o644)
    assert files['root/.ssh/authorized_keys'] == (KEY + '\n', 0o600)
    unit = files[fvstate.MGMT_NETWORK][0]
    assert 'PermanentMACAddress=52:54:00:12:34:56' in unit
    assert 'Address=192.0.2.10/24' in unit and 'Gateway=192.0.2.1' in unit and 'DNS=192.0.2.53' in unit
    dhcp = fvstate.seed_files(fvlib.Seed(hostname='hv2'), NIC)
    assert fvstate.MGMT_NETWORK not in dhcp  # DHCP on the first NIC is the runtime default
    assert 'DHCP=yes' in fvstate.network_unit({'mode': 'dhcp'}, None)
    assert 'Name=en* eth*' in fvstate.network_unit({'mode': 'dhcp'}, None)
    assert 'Path=pci-0000:00:10.0' in fvstate.network_unit({'mode': 'dhcp'}, {'path': 'pci-0000:00:10.0'})


def test_first_nic_is_the_first_pci_ethernet_controller(tmp_path):
    pci = tmp_path / 'pci'
    for address, cls in (('0000:00:01.0', '0x060100'), ('0000:00:10.0', '0x020000'),
                         ('0000:00:03.0', '0x020000'), ('0000:00:04.0', '0x028000')):
        (pci / address).mkdir(parents=True)
        (pci / address / 'class').write_text(cls + '\n')
    paths = fvstate.Paths(sys_pci=str(pci), sys_net=str(tmp_path / 'net'))
    assert fvstate.pci_nics(paths) == ['0000:00:03.0', '0000:00:10.0']
    assert fvstate.first_nic(paths) == {'name': '0000:00:03.0', 'path': 'pci-0000:00:03.0'}


def test_write_files(tmp_path):
    seed, _unused = fvlib.parse_seed(json.dumps({'hostname': 'hv1', 'authorized_keys': [KEY]}))
    fvstate.write_files(str(tmp_path), fvstate.seed_files(seed, None))
    assert (tmp_path / 'etc' / 'hostname').read_text() == 'hv1\n'
    keys = tmp_path / 'root' / '.ssh' / 'authorized_keys'
    assert keys.read_text() == KEY + '\n'
    assert oct(keys.stat().st_mode & 0o777) == oct(0o600)
    assert oct((tmp_path / 'root' / '.ssh').stat().st_mode & 0o777) == oct(0o700)
    assert json.loads((tmp_path / 'etc' / 'firmvisor' / 'seed.json').read_text())['hostname'] == 'hv1'


# ---- labels, devices, boot mode -----------------------------------------------------------------
def test_volume_label_iso_and_fat():
    iso = bytearray(0x8800)
    iso[0x8000:0x8006] = b'\x01CD001'
    iso[0x8028:0x8048] = b'FVSEED'.ljust(32)
    assert fvlib.volume_label(bytes(iso)) == ('iso9660', 'FVSEED')
    fat = bytearray(0x8800)
    fat[0], fat[510:512] = 0xEB, b'\x55\xaa'
    fat[0x47:0x52], fat[0x52:0x5A] = b'FVSEED     ', b'FAT32   '
    assert fvlib.volume_label(bytes(fat)) == ('vfat', 'FVSEED')
    fat16 = bytearray(0x8800)
    fat16[0], fat16[510:512], fat16[0x26] = 0xEB, b'\x55\xaa', 0x29
    fat16[0x2B:0x36], fat16[0x36:0x3E] = b'FVSEED     ', b'FAT16   '
    assert fvlib.volume_label(bytes(fat16)) == ('vfat', 'FVSEED')
    assert fvlib.volume_label(bytes(0x8800)) is None


def _fake_block(tmp_path, devices):
    sys_block, dev = tmp_path / 'sys' / 'class' / 'block', tmp_path / 'dev'
    dev.mkdir(parents=True, exist_ok=True)
    for name, fields, content in devices:
        (sys_block / name).mkdir(parents=True)
        (sys_block / name / 'uevent').write_text(''.join('%s=%s\n' % kv for kv in fields.items()))
        if 'PARTN' in fields:
            (sys_block / name / 'partition').write_text(fields['PARTN'])
        (dev / name).write_bytes(content)
    return fvstate.Paths(root=str(tmp_path / 'root'), sys_block=str(sys_block), dev=str(dev),
                         run=str(tmp_path / 'run'), state_mount=str(tmp_path / 'state'))


def test_find_partition_and_labelled(tmp_path):
    iso = bytearray(0x8800)
    iso[0x8000:0x8006] = b'\x01CD001'
    iso[0x8028:0x8048] = b'FVSEED'.ljust(32)
    paths = _fake_block(tmp_path, [
        ('vda', {'DEVNAME': 'vda', 'DEVTYPE': 'disk'}, b'\0' * 0x8800),
        ('vda5', {'DEVNAME': 'vda5', 'PARTN': '5', 'PARTNAME': 'fvstate'}, b''),
        ('vdb', {'DEVNAME': 'vdb', 'DEVTYPE': 'disk'}, bytes(iso)),
    ])
    assert fvlib.find_partition(paths, 'fvstate') == os.path.join(paths.dev, 'vda5')
    assert fvlib.find_partition(paths, 'fvslotB') is None
    assert fvlib.labelled(paths, 'FVSEED') == [('vdb', os.path.join(paths.dev, 'vdb'), 'iso9660')]
    assert fvlib.labelled(paths, 'FVISO') == []


@pytest.mark.parametrize('cmdline, mode', [
    ('fv.slot=A console=ttyS0,115200', ('slot', 'A')),
    ('console=ttyS0 fv.live=1', ('live', None)),
    ('root=/dev/sda1', ('other', None)),
])
def test_boot_mode(cmdline, mode):
    assert fvlib.boot_mode(cmdline) == mode


def test_console_targets(tmp_path):
    active = tmp_path / 'active'
    active.write_text('tty0 ttyS0\n')
    paths = fvlib.Paths(console_active=str(active))
    assert fvlib.console_targets(paths) == ['/dev/console']
    active.write_text('ttyS0 tty0\n')
    assert fvlib.console_targets(paths) == ['/dev/console', '/dev/ttyS0']


# ---- the state tar: save, restore, atomicity ----------------------------------------------------
def _host(root):
    """A small host tree: what the state holds, and what it does not."""
    files = {
        'etc/hostname': 'hv1\n',
        'etc/ssh/ssh_host_ed25519_key': 'PRIVATE\n',
        'etc/ssh/ssh_host_ed25519_key.pub': 'ssh-ed25519 AAAA root@hv1\n',
        'etc/ssh/sshd_config': 'image file\n',
        'root/.ssh/authorized_keys': KEY + '\n',
        'etc/systemd/network/10-fv-mgmt.network': '[Match]\n',
        'etc/libvirt/qemu/vm1.xml': '<domain/>\n',
        'etc/libvirt/qemu/networks/default.xml': '<network/>\n',
        'etc/libvirt/storage/pool1.xml': '<pool/>\n',
        'etc/firmvisor/version': '0.1.0\n',
        'etc/firmvisor/seed.json': '{}\n',
        'etc/fv-test': 'by hand\n',
    }
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(content)
    os.chmod(os.path.join(root, 'etc/ssh/ssh_host_ed25519_key'), 0o600)
    os.chmod(os.path.join(root, 'root/.ssh'), 0o700)
    os.makedirs(os.path.join(root, 'etc/libvirt/qemu/autostart'))
    os.symlink('/etc/libvirt/qemu/vm1.xml', os.path.join(root, 'etc/libvirt/qemu/autostart/vm1.xml'))
    return files


def test_save_holds_the_state_and_nothing_else(tmp_path):
    root, state = tmp_path / 'root', tmp_path / 'state'
    state.mkdir()
    _host(str(root))
    result = fvstate.save_state(str(root), str(state), version='0.1.0')
    assert result['path'] == str(state / 'config.tar') and not (state / 'config.tar.new').exists()
    manifest, members = fvstate.read_state(str(state / 'config.tar'))
    names = {m.name for m in members}
    assert manifest['version'] == '0.1.0' and manifest['roots'] == list(fvstate.PERSIST)
    for expected in ('etc/hostname', 'etc/ssh/ssh_host_ed25519_key', 'etc/ssh/ssh_host_ed25519_key.pub',
                     'root/.ssh', 'root/.ssh/authorized_keys', 'etc/systemd/network/10-fv-mgmt.network',
                     'etc/libvirt/qemu/vm1.xml', 'etc/libvirt/qemu/autostart/vm1.xml',
                     'etc/libvirt/qemu/networks/default.xml', 'etc/libvirt/storage/pool1.xml',
                     'etc/firmvisor/seed.json'):
        assert expected in names
    for never in ('etc/firmvisor/version', 'etc/fv-test', 'etc/ssh/sshd_config'):
        assert never not in names
    assert result['members'] == len(members)


def restore(root, folder):
    path, problems = fvstate.newest_valid(str(folder))
    assert path, problems
    return fvstate.restore_state(str(root), path)


def test_restore_into_a_fresh_root(tmp_path):
    source, target, state = tmp_path / 'source', tmp_path / 'target', tmp_path / 'state'
    state.mkdir()
    files = _host(str(source))
    fvstate.save_state(str(source), str(state))
    # The fresh boot: the image's own files, a file written by hand, stale libvirt definitions.
    for rel, content in {'etc/hostname': 'firmvisor\n', 'etc/firmvisor/version': '0.2.0\n',
                         'etc/libvirt/qemu/stale.xml': '<domain/>\n', 'etc/fv-test': 'by hand\n'}.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    count = restore(target, state)
    assert count > 10
    for rel in ('etc/hostname', 'etc/ssh/ssh_host_ed25519_key', 'root/.ssh/authorized_keys',
                'etc/libvirt/qemu/vm1.xml', 'etc/libvirt/storage/pool1.xml', 'etc/firmvisor/seed.json'):
        assert (target / rel).read_text() == files[rel]
    assert os.readlink(target / 'etc/libvirt/qemu/autostart/vm1.xml') == '/etc/libvirt/qemu/vm1.xml'
    assert oct((target / 'etc/ssh/ssh_host_ed25519_key').stat().st_mode & 0o777) == oct(0o600)
    assert oct((target / 'root/.ssh').stat().st_mode & 0o777) == oct(0o700)
    # The image's version stays (never saved, never replaced); a definition deleted before the
    # save stays deleted; what is outside the state is not touched.
    assert (target / 'etc/firmvisor/version').read_text() == '0.2.0\n'
    assert not (target / 'etc/libvirt/qemu/stale.xml').exists()
    assert (target / 'etc/fv-test').exists()


def test_extra_paths_from_persist_list(tmp_path):
    root, state = tmp_path / 'root', tmp_path / 'state'
    state.mkdir()
    _host(str(root))
    (root / 'etc/chrony').mkdir(parents=True)
    (root / 'etc/chrony/chrony.conf').write_text('server ntp.example iburst\n')
    (root / 'etc/firmvisor/persist.list').write_text('# extra\n/etc/chrony/chrony.conf\n../../evil\n')
    fvstate.save_state(str(root), str(state))
    manifest, members = fvstate.read_state(str(state / 'config.tar'))
    assert 'etc/chrony/chrony.conf' in manifest['roots'] and '../../evil' not in str(manifest['roots'])
    assert 'etc/chrony/chrony.conf' in {m.name for m in members}


# ---- the trailer: a state file cut short is never taken for whole --------------------------------
def test_trailer_holds_length_members_and_digest(tmp_path):
    root, state = tmp_path / 'root', tmp_path / 'state'
    _host(str(root))
    result = fvstate.save_state(str(root), str(state))
    blob = (state / 'config.tar').read_bytes()
    assert len(blob) == result['bytes'] and blob[-512:].startswith(fvstate.TRAILER_MAGIC)
    fields = json.loads(blob[-512 + len(fvstate.TRAILER_MAGIC):])
    assert fields['length'] == len(blob) - 512 and fields['members'] == result['members'] + 1
    assert fields['sha256'] == hashlib.sha256(blob[:-512]).hexdigest()


def _member_boundaries(data):
    """The offsets at which the members of a tar start (each header block)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [member.offset for member in tar.getmembers()]


def test_a_file_cut_at_a_member_boundary_is_detected(tmp_path):
    root, state = tmp_path / 'root', tmp_path / 'state'
    _host(str(root))
    fvstate.save_state(str(root), str(state))
    blob = (state / 'config.tar').read_bytes()
    boundaries = _member_boundaries(blob[:-512])
    assert len(boundaries) > 5
    for cut in boundaries[3:]:  # what tarfile alone reads as a whole, shorter archive
        with tarfile.open(fileobj=io.BytesIO(blob[:cut])) as tar:
            assert len(tar.getmembers()) < len(boundaries)
        (state / 'cut.tar').write_bytes(blob[:cut])
        with pytest.raises(fvstate.StateError, match='cut short'):
            fvstate.read_state(str(state / 'cut.tar'))
    (state / 'cut.tar').write_bytes(blob[:-512] + blob[-512:].replace(b'"members": ', b'"members": 1'))
    with pytest.raises(fvstate.StateError, match='trailer'):
        fvstate.read_state(str(state / 'cut.tar'))


def test_each_save_keeps_the_previous_state_whole(tmp_path):
    root, state = tmp_path / 'root', tmp_path / 'state'
    _host(str(root))
    fvstate.save_state(str(root), str(state))
    first = (state / 'config.tar').read_bytes()
    (root / 'etc/hostname').write_text('second\n')
    fvstate.save_state(str(root), str(state))
    assert (state / 'config.tar.prev').read_bytes() == first
    assert not (state / 'config.tar.new').exists()
    # A power cut that truncated config.tar (a file system that lost its last blocks): the previous
    # one is used, and the restore says why the newer one was passed over.
    whole = (state / 'config.tar').read_bytes()
    (state / 'config.tar').write_bytes(whole[:len(whole) // 2])
    path, problems = fvstate.newest_valid(str(state))
    assert path == str(state / 'config.tar.prev') and 'cut short' in problems[0]
    target = tmp_path / 'target'
    fvstate.restore_state(str(target), path)
    assert (target / 'etc/hostname').read_text() == 'hv1\n'


def test_interrupted_save_keeps_the_previous_state(tmp_path, monkeypatch):
    root, state = tmp_path / 'root', tmp_path / 'state'
    _host(str(root))
    fvstate.save_state(str(root), str(state))
    before = (state / 'config.tar').read_bytes()
    (root / 'etc/hostname').write_text('changed\n')
    real_replace = fvstate.os.replace

    def crash(source, target):
        if target.endswith(fvstate.CONFIG):
            raise OSError('power lost')
        return real_replace(source, target)
    # A crash between the write of config.tar.new (complete: fsynced) and its rename.
    monkeypatch.setattr(fvstate.os, 'replace', crash)
    with pytest.raises(OSError, match='power lost'):
        fvstate.save_state(str(root), str(state))
    monkeypatch.undo()
    assert (state / 'config.tar').read_bytes() == before
    target = tmp_path / 'target'
    restore(target, state)  # config.tar.new is whole: the newest state wins
    assert (target / 'etc/hostname').read_text() == 'changed\n'
    # Cut short instead: config.tar is used.
    blob = (state / 'config.tar.new').read_bytes()
    (state / 'config.tar.new').write_bytes(blob[:len(blob) // 3])
    restore(target, state)
    assert (target / 'etc/hostname').read_text() == 'hv1\n'
    # The next save completes and leaves no leftover.
    fvstate.save_state(str(root), str(state))
    assert not (state / 'config.tar.new').exists()
    restore(target, state)
    assert (target / 'etc/hostname').read_text() == 'changed\n'


def _tar_with(path, members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tar:
        manifest = json.dumps({'format': 1, 'roots': list(fvstate.PERSIST)}).encode()
        info = tarfile.TarInfo(fvstate.MANIFEST_MEMBER)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    data = buffer.getvalue()
    with open(path, 'wb') as handle:
        handle.write(data + fvstate.trailer(data, len(members) + 1))


def _file(name, data=b'x'):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


@pytest.mark.parametrize('members, reason', [
    ([_file('etc/shadow')], 'outside'),
    ([_file('/etc/hostname')], 'unsafe'),
    ([_file('etc/systemd/network/../../shadow')], 'unsafe'),
    ([_file('etc/firmvisor/version')], 'outside'),
    ([_link('etc/systemd/network', '/etc'), _file('etc/systemd/network/x')], 'below a symlink'),
    ([_file('etc/hostname'), _file('etc/hostname')], 'repeated'),
])
def test_unsafe_tars_are_refused(tmp_path, members, reason):
    state = tmp_path / 'state'
    state.mkdir()
    _tar_with(str(state / 'config.tar'), members)
    with pytest.raises(fvstate.StateError, match=reason):
        fvstate.restore_state(str(tmp_path / 'root'), str(state / 'config.tar'))
    assert not (tmp_path / 'root').exists()


def test_not_a_state_file(tmp_path):
    (tmp_path / 'config.tar').write_bytes(b'garbage' * 100)
    with pytest.raises(fvstate.StateError, match='no trailer'):
        fvstate.read_state(str(tmp_path / 'config.tar'))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tar:
        info, data = _file('etc/hostname')
        tar.addfile(info, io.BytesIO(data))
    plain = buffer.getvalue()
    (tmp_path / 'plain.tar').write_bytes(plain + fvstate.trailer(plain, 1))
    with pytest.raises(fvstate.StateError, match='no firmvisor manifest'):
        fvstate.read_state(str(tmp_path / 'plain.tar'))


# ---- state per slot -------------------------------------------------------------------------------
def test_a_trial_starts_from_the_known_good_slots_state(tmp_path):
    root, state = tmp_path / 'root', tmp_path / 'state'
    _host(str(root))
    fvstate.save_state(str(root), fvstate.slot_folder(str(state), 'A'))
    marker = tmp_path / 'state' / 'slots' / 'B' / 'start-from'
    marker.parent.mkdir(parents=True)
    marker.write_text('A\n')
    assert fvstate.start_trial_state(str(state), 'B') == 'A'
    assert not marker.exists()
    a = (state / 'slots' / 'A' / 'config.tar').read_bytes()
    assert (state / 'slots' / 'B' / 'config.tar').read_bytes() == a
    # B's trial changes B's state only: a fallback to A finds A's as it was.
    (root / 'etc/hostname').write_text('changed on B\n')
    fvstate.save_state(str(root), fvstate.slot_folder(str(state), 'B'))
    assert (state / 'slots' / 'A' / 'config.tar').read_bytes() == a
    assert fvstate.start_trial_state(str(state), 'B') is None  # no marker: nothing copied again


def test_collect_skips_sockets_and_never(tmp_path):
    root = tmp_path / 'root'
    _host(str(root))
    got = fvstate.collect(str(root), ['etc/firmvisor', 'etc/libvirt/qemu'])
    assert 'etc/firmvisor/version' not in got and 'etc/firmvisor/seed.json' in got
    assert got.index('etc/libvirt/qemu') < got.index('etc/libvirt/qemu/vm1.xml')  # parents first


def test_main_status_without_state(tmp_path, capsys):
    paths = _fake_block(tmp_path, [('vda', {'DEVNAME': 'vda'}, b'')])
    cmdline = tmp_path / 'cmdline'
    cmdline.write_text('fv.live=1\n')
    paths.cmdline = str(cmdline)
    assert fvstate.main(['status'], paths) == 0
    status = json.loads(capsys.readouterr().out)
    assert status['mode'] == 'live' and status['slots'] == {} and status['state_partition'] is None
    assert fvstate.main(['save'], paths) == fvstate.EXIT_STATELESS
    assert fvstate.main(['watch'], paths) == fvstate.EXIT_STATELESS
    assert fvstate.main(['has', 'etc/hostname'], paths) == 1


# ---- apply: the boot flow, with the devices faked -------------------------------------------------
@pytest.fixture
def host(tmp_path, monkeypatch):
    """A fake host for apply(): the state partition "mounts" on a directory, the seed is whatever
    the test puts in ``seeds``, host keys are plain files, the hostname is never really set."""
    root, state = tmp_path / 'root', tmp_path / 'state'
    (root / 'etc' / 'firmvisor').mkdir(parents=True)
    (root / 'etc' / 'firmvisor' / 'version').write_text('0.1.0\n')
    (root / 'etc' / 'hostname').write_text('firmvisor\n')
    state.mkdir()
    cmdline = tmp_path / 'cmdline'
    cmdline.write_text('fv.slot=A console=ttyS0,115200\n')
    paths = fvstate.Paths(root=str(root), cmdline=str(cmdline), sys_block=str(tmp_path), sys_net=str(tmp_path),
                          dev=str(tmp_path), run=str(tmp_path / 'run'), runtime_network=str(tmp_path / 'runnet'),
                          state_mount=str(state))
    seeds = []
    calls = {'read_seed': 0}

    def find_seed(_paths, _wait):
        calls['read_seed'] += 1
        if not seeds or seeds[0] is None:
            return fvlib.SeedRead(None, [])
        data = seeds[0] if isinstance(seeds[0], bytes) else seeds[0].encode()
        return fvlib.seed_from_bytes(data, '/dev/vdb')

    def host_keys(root_dir, _hostname):
        made = []
        for kind in fvstate.HOST_KEY_TYPES:
            key = os.path.join(root_dir, 'etc', 'ssh', 'ssh_host_%s_key' % kind)
            if not os.path.exists(key):
                os.makedirs(os.path.dirname(key), exist_ok=True)
                for path in (key, key + '.pub'):
                    with open(path, 'w') as handle:
                        handle.write('%s %s\n' % (kind, os.urandom(8).hex()))
                made.append(kind)
        return made
    monkeypatch.setattr(fvstate, 'mount_state', lambda p, wait: None if 'fv.live=1' in cmdline.read_text()
                        else '/dev/vda5')
    monkeypatch.setattr(fvstate, 'state_mounted', lambda p: 'fv.live=1' not in cmdline.read_text())
    monkeypatch.setattr(fvstate, 'find_seed', find_seed)
    monkeypatch.setattr(fvstate, 'ensure_host_keys', host_keys)
    monkeypatch.setattr(fvstate, 'first_nic', lambda p: NIC)
    monkeypatch.setattr(fvstate.socket, 'sethostname', lambda name: None)
    monkeypatch.setattr(fvstate, 'run', lambda argv, **kw: subprocess.CompletedProcess(argv, 0, ''))

    def reboot():
        """A new boot: the image's root again (what is not in the state is gone)."""
        shutil.rmtree(root)
        (root / 'etc' / 'firmvisor').mkdir(parents=True)
        (root / 'etc' / 'firmvisor' / 'version').write_text('0.1.0\n')
        (root / 'etc' / 'hostname').write_text('firmvisor\n')
        shutil.rmtree(tmp_path / 'runnet', ignore_errors=True)
        shutil.rmtree(tmp_path / 'run', ignore_errors=True)  # /run is a new tmpfs at every boot
    return {'paths': paths, 'root': root, 'state': state, 'seeds': seeds, 'calls': calls, 'reboot': reboot,
            'cmdline': cmdline, 'run': tmp_path / 'run', 'runnet': tmp_path / 'runnet'}


GOOD_SEED = json.dumps({'hostname': 'hv1', 'authorized_keys': [KEY], 'network': {'mode': 'dhcp'}})


def test_apply_first_boot_imports_the_seed_and_saves(host):
    host['seeds'].append(GOOD_SEED)
    assert fvstate.apply(host['paths']) == 0
    root, state = host['root'], host['state']
    assert (root / 'etc/hostname').read_text() == 'hv1\n'
    assert (root / 'root/.ssh/authorized_keys').read_text() == KEY + '\n'
    assert '127.0.1.1\thv1' in (root / 'etc/hosts').read_text()
    assert 'DHCP=yes' in (host['runnet'] / fvstate.DEFAULT_NETWORK).read_text()
    assert not (state / fvstate.SEED_PENDING).exists()
    _unused, members = fvstate.read_state(str(state / 'slots/A/config.tar'))
    assert {'etc/hostname', 'root/.ssh/authorized_keys', 'etc/ssh/ssh_host_ed25519_key'} <= {m.name for m in members}
    key = (root / 'etc/ssh/ssh_host_ed25519_key.pub').read_text()
    # The next boot restores; the seed is not read again; the host key is the same.
    host['reboot']()
    host['seeds'][0] = json.dumps({'hostname': 'other', 'authorized_keys': [KEY]})
    assert fvstate.apply(host['paths']) == 0
    assert host['calls']['read_seed'] == 1
    assert (root / 'etc/hostname').read_text() == 'hv1\n'
    assert (root / 'etc/ssh/ssh_host_ed25519_key.pub').read_text() == key


@pytest.mark.parametrize('first', [None, b'{"hostname": "hv1", "authorized_keys": ['])
def test_apply_without_a_usable_seed_imports_one_later(host, first):
    host['seeds'].append(first)
    assert fvstate.apply(host['paths']) == 0
    root, state = host['root'], host['state']
    assert (root / 'etc/hostname').read_text() == fvlib.DEFAULT_HOSTNAME + '\n'
    assert (state / fvstate.SEED_PENDING).exists()
    assert (state / 'slots/A/config.tar').exists()  # the host keys are kept meanwhile
    key = (root / 'etc/ssh/ssh_host_ed25519_key.pub').read_text()
    host['reboot']()
    host['seeds'][0] = GOOD_SEED
    assert fvstate.apply(host['paths']) == 0
    assert (root / 'etc/hostname').read_text() == 'hv1\n'
    assert (root / 'root/.ssh/authorized_keys').read_text() == KEY + '\n'
    assert (root / 'etc/ssh/ssh_host_ed25519_key.pub').read_text() == key
    assert not (state / fvstate.SEED_PENDING).exists()
    host['reboot']()
    assert fvstate.apply(host['paths']) == 0
    assert host['calls']['read_seed'] == 2
    assert (root / 'root/.ssh/authorized_keys').read_text() == KEY + '\n'


def test_apply_live_is_stateless_and_hands_install_to_over(host):
    host['cmdline'].write_text('fv.live=1 console=ttyS0,115200\n')
    host['seeds'].append(json.dumps({'hostname': 'hv1', 'authorized_keys': [KEY], 'install_to': '/dev/sda'}))
    assert fvstate.apply(host['paths']) == 0
    assert (host['run'] / 'install_to').read_text() == '/dev/sda\n'
    assert (host['root'] / 'root/.ssh/authorized_keys').exists()
    assert list(host['state'].iterdir()) == []  # a live boot never touches a disk's state
    assert fvstate.main(['save'], host['paths']) == fvstate.EXIT_STATELESS
    assert json.loads((host['run'] / 'state.json').read_text())['stateful'] is False


def test_apply_static_network_from_the_seed(host):
    host['seeds'].append(json.dumps({'hostname': 'hv1', 'authorized_keys': [KEY], 'network': {
        'mode': 'static', 'address': '192.0.2.10/24', 'gateway': '192.0.2.1'}}))
    assert fvstate.apply(host['paths']) == 0
    unit = (host['root'] / fvstate.MGMT_NETWORK).read_text()
    assert 'Address=192.0.2.10/24' in unit and 'PermanentMACAddress=52:54:00:12:34:56' in unit
    assert not (host['runnet'] / fvstate.DEFAULT_NETWORK).exists()  # no DHCP default beside it


def test_apply_passes_a_damaged_state_over(host):
    host['seeds'].append(GOOD_SEED)
    assert fvstate.apply(host['paths']) == 0
    folder = host['state'] / 'slots' / 'A'
    whole = (folder / 'config.tar').read_bytes()
    host['reboot']()
    (host['root'] / 'etc/hostname').write_text('changed\n')  # a change saved...
    assert fvstate.main(['save'], host['paths']) == 0
    (folder / 'config.tar').write_bytes((folder / 'config.tar').read_bytes()[:700])  # ...then cut short
    host['reboot']()
    assert fvstate.apply(host['paths']) == 0
    assert host['calls']['read_seed'] == 1  # the previous state is there: no seed, no defaults
    assert (host['root'] / 'etc/hostname').read_text() == 'hv1\n'
    assert (folder / 'config.tar').read_bytes() == whole  # whole again (saved from config.tar.prev)
    assert (folder / 'config.tar.prev').read_bytes() == whole  # the damaged one never became prev
    assert json.loads((host['run'] / 'state.json').read_text())['restored_from'] == 'config.tar.prev'


def test_apply_a_trial_and_the_fallback(host):
    host['seeds'].append(GOOD_SEED)
    assert fvstate.apply(host['paths']) == 0  # slot A, first boot
    host['reboot']()
    marker = host['state'] / 'slots' / 'B' / 'start-from'
    marker.parent.mkdir(parents=True)
    marker.write_text('A\n')  # fvslot boot-once B
    host['cmdline'].write_text('fv.slot=B\n')
    assert fvstate.apply(host['paths']) == 0
    assert (host['root'] / 'etc/hostname').read_text() == 'hv1\n' and not marker.exists()
    (host['root'] / 'etc/libvirt/qemu').mkdir(parents=True)
    (host['root'] / 'etc/libvirt/qemu/made-on-b.xml').write_text('<domain/>\n')
    assert fvstate.main(['save'], host['paths']) == 0
    assert fvstate.main(['has', 'etc/libvirt/qemu/made-on-b.xml'], host['paths']) == 0
    # B fails its trial: A boots with A's state, as it was.
    host['reboot']()
    host['cmdline'].write_text('fv.slot=A\n')
    assert fvstate.apply(host['paths']) == 0
    assert not (host['root'] / 'etc/libvirt/qemu/made-on-b.xml').exists()
    assert fvstate.main(['has', 'etc/libvirt/qemu/made-on-b.xml'], host['paths']) == 1
    assert host['calls']['read_seed'] == 1


def test_apply_imports_the_installers_seed_from_the_state_partition(host):
    (host['state'] / 'seed.json').write_text(GOOD_SEED)
    host['seeds'].append(json.dumps({'hostname': 'from-media', 'authorized_keys': [KEY]}))
    assert fvstate.apply(host['paths']) == 0
    assert (host['root'] / 'etc/hostname').read_text() == 'hv1\n'
    assert host['calls']['read_seed'] == 0  # the boot disk's seed came first
    assert not (host['state'] / 'seed.json').exists() and (host['state'] / 'seed.json.imported').exists()


def test_watch_saves_each_change(host, monkeypatch):
    host['seeds'].append(GOOD_SEED)
    assert fvstate.apply(host['paths']) == 0
    folder = host['state'] / 'slots' / 'A'
    saved = (folder / 'config.tar').read_bytes()
    fvstate.watch(host['paths'], interval=0.01, rounds=2)
    assert (folder / 'config.tar').read_bytes() == saved  # nothing changed: nothing saved
    (host['root'] / 'etc/libvirt/qemu').mkdir(parents=True)
    (host['root'] / 'etc/libvirt/qemu/vm1.xml').write_text('<domain/>\n')
    fvstate.watch(host['paths'], interval=0.01, rounds=1)
    assert fvstate.has(host['paths'], 'etc/libvirt/qemu/vm1.xml')
    (host['root'] / 'etc/libvirt/qemu/vm1.xml').unlink()
    (host['root'] / 'etc/fv-test').write_text('not persisted\n')
    fvstate.watch(host['paths'], interval=0.01, rounds=1)
    assert not fvstate.has(host['paths'], 'etc/libvirt/qemu/vm1.xml')
    again = (folder / 'config.tar').read_bytes()
    (host['root'] / 'etc/fv-test').write_text('still not persisted\n')
    fvstate.watch(host['paths'], interval=0.01, rounds=1)
    assert (folder / 'config.tar').read_bytes() == again


def test_capabilities_cache_only_for_the_same_image(tmp_path):
    root, state = tmp_path / 'root', tmp_path / 'state'
    caps = root / fvstate.CAPS_DIR
    caps.mkdir(parents=True)
    (caps / 'abc.xml').write_text('<qemuCaps/>\n')
    info = root / 'var/lib/dpkg/info'
    info.mkdir(parents=True)
    (info / 'qemu-system-x86.md5sums').write_text('1111  usr/bin/qemu-system-x86_64\n')
    (root / 'etc/firmvisor').mkdir(parents=True)
    (root / 'etc/firmvisor/version').write_text('0.1.0\n')
    state.mkdir()
    assert fvstate.save_caps_cache(str(root), str(state), '6.1.0') == 1
    assert fvstate.save_caps_cache(str(root), str(state), '6.1.0') == 1  # again: replaces the cache
    assert not (state / (fvstate.CAPS_CACHE + '.old')).exists()
    shutil.rmtree(caps)
    assert fvstate.restore_caps_cache(str(root), str(state), '6.1.0') == 1
    assert (caps / 'abc.xml').read_text() == '<qemuCaps/>\n'
    shutil.rmtree(caps)
    assert fvstate.restore_caps_cache(str(root), str(state), '6.1.1') == 0  # another kernel
    (info / 'qemu-system-x86.md5sums').write_text('2222  usr/bin/qemu-system-x86_64\n')
    assert fvstate.restore_caps_cache(str(root), str(state), '6.1.0') == 0  # another QEMU
    assert not caps.exists()
    # Nothing to keep: the old cache stays.
    assert fvstate.save_caps_cache(str(root), str(state), '6.1.0') == 0
    assert (state / fvstate.CAPS_CACHE / 'abc.xml').exists()


def test_main_usage(capsys):
    assert fvstate.main(['frobnicate']) == 2
    assert 'usage: fv-state' in capsys.readouterr().err
    assert fvstate.main(['--help']) == 0


def test_restore_then_apply_as_two_units(host):
    """``fv-state restore`` alone (by hand), then ``apply`` goes on from what it restored."""
    host['seeds'].append(GOOD_SEED)
    assert fvstate.apply(host['paths']) == 0
    host['reboot']()
    assert fvstate.main(['restore'], host['paths']) == 0
    done = json.loads((host['run'] / 'restore.json').read_text())
    assert done['restored_from'] == 'config.tar' and done['stateful']
    assert (host['root'] / 'etc/hostname').read_text() == 'hv1\n'  # restored already
    assert not (host['run'] / 'state.json').exists()  # the health gate's "state" check waits
    calls = host['calls']['read_seed']
    assert fvstate.main(['apply'], host['paths']) == 0
    assert host['calls']['read_seed'] == calls
    assert json.loads((host['run'] / 'state.json').read_text())['applied']


def superblock(state=fvstate.EXT_VALID, magic=fvstate.EXT_MAGIC, mounts=3, max_mounts=-1, last_check=1000,
               interval=0):
    block = bytearray(1024)
    struct.pack_into('<HhHH', block, 0x34, mounts, max_mounts, magic, state)
    struct.pack_into('<II', block, 0x40, last_check, interval)
    return bytes(block)


@pytest.mark.parametrize('block, due', [
    (superblock(), False),                                       # clean: e2fsck -p would do nothing
    (superblock(state=0), True),                                 # not cleanly unmounted (no journal)
    (superblock(state=fvstate.EXT_VALID | fvstate.EXT_ERRORS), True),  # the kernel recorded an error
    (superblock(magic=0x1234), True),                            # not ext4: e2fsck says what it is
    (superblock(mounts=20, max_mounts=20), True),                # a check due by mount count
    (superblock(mounts=20, max_mounts=0), False),
    (superblock(last_check=1000, interval=500), True),           # a check due by time
    (superblock(last_check=1000, interval=5000), False),
    (b'', True),                                                 # unreadable
])
def test_e2fsck_only_when_the_superblock_says_there_is_work(block, due):
    assert fvstate.needs_check(block, now=2000.0) is due


def test_mount_state_runs_e2fsck_only_on_a_file_system_that_needs_it(tmp_path, monkeypatch):
    device = tmp_path / 'vda5'
    device.write_bytes(b'\0' * 1024 + superblock() + b'\0' * 2048)
    paths = fvlib.Paths(root=str(tmp_path / 'root'), state_mount=str(tmp_path / 'state'))
    monkeypatch.setattr(fvstate, 'find_partition', lambda p, name: str(device))
    ran = []
    monkeypatch.setattr(fvstate, 'run',
                        lambda argv, **kw: ran.append(argv[0]) or subprocess.CompletedProcess(argv, 0, ''))
    assert fvstate.mount_state(paths, 0) == str(device)
    assert ran == ['mount']
    device.write_bytes(b'\0' * 1024 + superblock(state=fvstate.EXT_VALID | fvstate.EXT_ERRORS))
    ran.clear()
    assert fvstate.mount_state(paths, 0) == str(device)
    assert ran == ['e2fsck', 'mount']


def test_host_key_fingerprint_as_ssh_keygen_prints_it(tmp_path):
    key = tmp_path / 'ssh_host_ed25519_key'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'root@hv1', '-f', str(key)], check=True)
    printed = subprocess.run(['ssh-keygen', '-l', '-f', str(key) + '.pub'], check=True, stdout=subprocess.PIPE,
                             universal_newlines=True).stdout.strip()
    assert fvstate.key_fingerprint((tmp_path / 'ssh_host_ed25519_key.pub').read_text().strip()) == printed
    assert fvstate.key_fingerprint('ssh-ed25519 not-base64!') == 'unreadable (ssh-ed25519)'
