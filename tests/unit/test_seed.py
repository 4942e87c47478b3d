# -*- coding: utf-8 -*-
"""Seed building (plugins/module_utils/server/seed.py): validation, seed.json as the image's own
parser reads it, the FVSEED ISO and floppy images (label, content, same bytes for the same seed),
and the digest that skips a rebuild."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server import seed as seedmod

from image_tools import fvlib

KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbq3Gkz0ZVzK5x0B8m3G0dFj8sM0h6n9Vw2y1tQ2Z3a ops@example'
KEY2 = 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= backup'


def sample(**overrides):
    args = dict(hostname='fv-rack1-07', ssh_authorized_keys=[KEY, KEY2],
                network={'address': '192.0.2.17/24', 'gateway': '192.0.2.1', 'dns': ['192.0.2.53']},
                install_to='/dev/sda', install_force=False)
    args.update(overrides)
    return seedmod.build_seed(**args)


def error_of(func):
    with pytest.raises(FvError) as info:
        func()
    return str(info.value)


# ---- the document -------------------------------------------------------------------------------
def test_seed_document_and_json():
    seed = sample()
    assert seed == {'hostname': 'fv-rack1-07', 'authorized_keys': [KEY, KEY2],
                    'network': {'mode': 'static', 'address': '192.0.2.17/24', 'gateway': '192.0.2.1',
                                'dns': ['192.0.2.53']},
                    'install_to': '/dev/sda'}
    data = seedmod.seed_json(seed)
    assert data.endswith(b'\n') and json.loads(data) == seed
    assert list(json.loads(data)) == sorted(seed), 'canonical: sorted keys'


def test_the_image_reads_it_without_a_single_problem():
    module = fvlib
    for seed in (sample(), sample(network=None, install_to=None), sample(install_force=True),
                 sample(network={'mode': 'static', 'address': '2001:db8::7/64', 'gateway': '2001:db8::1'})):
        parsed, problems = module.parse_seed(seedmod.seed_json(seed))
        assert problems == [], seed
        assert parsed.hostname == seed['hostname']
        assert parsed.authorized_keys == seed['authorized_keys']
        assert parsed.install_to == seed.get('install_to')
        assert parsed.install_force == seed.get('install_force', False)
        assert parsed.network == seed['network'] or (seed['network'] == {'mode': 'dhcp'} and
                                                     parsed.network == {'mode': 'dhcp'})
        assert set(seed) <= set(module.SEED_KEYS)


def test_defaults_and_normalization():
    seed = seedmod.build_seed('fv1', KEY + '\n\n' + KEY + '\n')   # a string of lines; duplicates dropped
    assert seed == {'hostname': 'fv1', 'authorized_keys': [KEY], 'network': {'mode': 'dhcp'}}
    assert seedmod.normalize_network({'mode': 'static', 'address': '192.0.2.9/24', 'dns': '192.0.2.53'}) == {
        'mode': 'static', 'address': '192.0.2.9/24', 'dns': ['192.0.2.53']}
    assert seedmod.normalize_network({'address': '192.0.2.9/24'})['mode'] == 'static'


@pytest.mark.parametrize('overrides, message', [
    ({'hostname': 'bad_name'}, "seed: hostname 'bad_name' is not a valid host name"),
    ({'hostname': '-x'}, "seed: hostname '-x' is not a valid host name"),
    ({'ssh_authorized_keys': []}, 'seed: ssh_authorized_keys is empty: nobody could log in to fv-rack1-07'),
    ({'ssh_authorized_keys': [KEY, 'not a key']}, "seed: ssh_authorized_keys[1] is not an SSH public key line"),
    ({'network': {'address': '192.0.2.17'}}, 'seed: network address must be an address with a prefix'),
    ({'network': {'address': '192.0.2.17/24', 'gateway': 'gw'}}, "seed: network gateway must be an IP address"),
    ({'network': {'address': '192.0.2.17/24', 'gateway': '2001:db8::1'}}, 'not of the address family'),
    ({'network': {'address': '192.0.2.17/24', 'dns': ['x']}}, 'seed: network dns must be a list of IP addresses'),
    ({'network': {'mode': 'dhcp', 'address': '192.0.2.17/24'}}, 'seed: network mode dhcp takes no address'),
    ({'network': {'mode': 'bootp'}}, "seed: network mode must be dhcp or static, not 'bootp'"),
    ({'network': {'adress': '192.0.2.17/24'}}, 'seed: network: unknown key(s) adress'),
    ({'install_to': 'sda'}, "seed: install_to must be a device path such as /dev/sda, not 'sda'"),
    ({'install_to': '/dev/../etc/passwd'}, 'seed: install_to must be a device path'),
    ({'install_to': None, 'install_force': True}, 'seed: install_force without install_to means nothing'),
    ({'install_force': 'yes'}, "seed: install_force must be true or false, not 'yes'"),
])
def test_bad_input_is_refused(overrides, message):
    assert message in error_of(lambda: sample(**overrides))


def test_unknown_keys_never_reach_the_image():
    assert 'seed: unknown key(s) wifi' in error_of(lambda: seedmod.seed_json(dict(sample(), wifi=True)))


# ---- the images ---------------------------------------------------------------------------------
def iso_label(path):
    with open(path, 'rb') as handle:
        handle.seek(16 * 2048)
        pvd = handle.read(2048)
    assert pvd[1:6] == b'CD001'
    return pvd[40:72].decode().strip()


def fat_label(path):
    with open(path, 'rb') as handle:
        boot = handle.read(512)
    assert boot[510:512] == b'\x55\xaa' and boot[54:62].strip() == b'FAT12'
    return boot[43:54].decode().strip()


def test_floppy_image(tmp_path):
    seed = sample()
    dest = str(tmp_path / 'fvrf-seed.img')
    seedmod.write_seed_floppy(seed, dest)
    assert os.path.getsize(dest) == 1440 * 1024
    assert fat_label(dest) == 'FVSEED'
    names = subprocess.run(['mdir', '-b', '-i', dest, '::'], check=True, capture_output=True, text=True).stdout
    assert names.split() == ['::/seed.json']
    data = subprocess.run(['mtype', '-i', dest, '::seed.json'], check=True, capture_output=True).stdout
    assert data == seedmod.seed_json(seed)
    parsed, problems = fvlib.parse_seed(data)
    assert problems == [] and parsed.install_to == '/dev/sda'


def test_iso_image(tmp_path):
    seed = sample()
    dest = str(tmp_path / 'fvrf-seed.iso')
    seedmod.write_seed_iso(seed, dest)
    assert iso_label(dest) == 'FVSEED'
    out = tmp_path / 'out'
    subprocess.run(['xorriso', '-osirrox', 'on', '-indev', dest, '-extract', '/', str(out)],
                   check=True, capture_output=True)
    assert sorted(os.listdir(out)) == ['seed.json']
    assert (out / 'seed.json').read_bytes() == seedmod.seed_json(seed)


@pytest.mark.parametrize('fmt', ['iso', 'floppy'])
def test_same_seed_same_bytes(tmp_path, fmt):
    first, second = str(tmp_path / 'a'), str(tmp_path / 'b')
    seedmod.WRITERS[fmt](sample(), first)
    os.utime(tmp_path, (0, 0))          # nothing about the moment or the place leaks in
    seedmod.WRITERS[fmt](sample(), second)
    with open(first, 'rb') as a, open(second, 'rb') as b:
        assert a.read() == b.read()
    third = str(tmp_path / 'c')
    seedmod.WRITERS[fmt](sample(hostname='fv-rack1-08'), third)
    with open(first, 'rb') as a, open(third, 'rb') as c:
        assert a.read() != c.read()


@pytest.mark.parametrize('fmt', ['iso', 'floppy'])
def test_digest_skips_an_unchanged_seed(tmp_path, fmt):
    dest = str(tmp_path / ('fvrf-seed.' + fmt))
    changed, digest = seedmod.ensure_seed_image(sample(), dest, fmt, check_mode=True)
    assert changed and not os.path.exists(dest), 'check mode builds nothing'
    changed, digest = seedmod.ensure_seed_image(sample(), dest, fmt)
    assert changed and digest == seedmod.seed_digest(sample(), fmt)
    stamp = os.stat(dest).st_mtime_ns
    assert seedmod.ensure_seed_image(sample(), dest, fmt) == (False, digest)
    assert os.stat(dest).st_mtime_ns == stamp, 'not rebuilt'
    assert seedmod.ensure_seed_image(sample(), dest, fmt, check_mode=True) == (False, digest)
    # a changed seed, a lost image, a lost digest: each rebuilds
    changed, other = seedmod.ensure_seed_image(sample(install_to='/dev/sdb'), dest, fmt)
    assert changed and other != digest
    os.unlink(dest)
    assert seedmod.ensure_seed_image(sample(install_to='/dev/sdb'), dest, fmt)[0] is True
    os.unlink(seedmod.digest_file(dest))
    assert seedmod.ensure_seed_image(sample(install_to='/dev/sdb'), dest, fmt)[0] is True
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(dest), os.path.basename(dest) + '.sha256'])


def test_digest_depends_on_the_format():
    assert seedmod.seed_digest(sample(), 'iso') != seedmod.seed_digest(sample(), 'floppy')
    assert "seed: format 'vfat': expected one of iso, floppy" in error_of(lambda: seedmod.seed_digest(sample(), 'vfat'))


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    dest = str(tmp_path / 'fvrf-seed.img')
    monkeypatch.setattr(seedmod, 'FLOPPY_KIB', 1)          # too small: mkfs.fat refuses it
    message = error_of(lambda: seedmod.ensure_seed_image(sample(), dest, 'floppy'))
    assert message.startswith('seed: formatting the seed floppy') and 'mkfs.fat exited' in message
    assert os.listdir(tmp_path) == []


def test_missing_directory(tmp_path):
    message = error_of(lambda: seedmod.ensure_seed_image(sample(), str(tmp_path / 'no' / 'x.iso'), 'iso'))
    assert message == 'seed: directory %s does not exist' % (tmp_path / 'no')
