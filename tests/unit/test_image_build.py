# -*- coding: utf-8 -*-
"""The image build's inputs, manifest and cache, with fake build scripts (no real build here:
molecule/embedded builds and boots the real image)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest
from image_fakes import make_tree, ran_from

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.image import build as _image
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError

POLICY = """tiny:
  Installed: (none)
  Candidate: 1.0-1
  Version table:
other:
  Installed: (none)
  Candidate: 2.5
"""

REAL_CANDIDATES = _image.candidate_versions


def fake_run(argv, **_kwargs):
    return subprocess.CompletedProcess(argv, 0, stdout=POLICY, stderr='')


@pytest.fixture
def params(tmp_path, monkeypatch):
    files = make_tree(tmp_path / 'files')
    sources = tmp_path / 'sources.list'
    sources.write_text('deb file:/nowhere bookworm main\n')
    # apt-cache answers from POLICY instead of the host's apt
    monkeypatch.setattr(_image, 'candidate_versions', lambda packages, run=None: REAL_CANDIDATES(packages, fake_run))
    return {'dest': str(tmp_path / 'out'), 'files': str(files), 'version': '0.1.0', 'packages': None,
            'extra_packages': ['other'], 'apt_sources': [str(sources)], 'iso': True, 'force': False, 'work_dir': None,
            'step': 'all', 'archive': None}


def test_candidate_versions_parse_and_missing():
    assert _image.candidate_versions(['tiny', 'other'], fake_run) == {'tiny': '1.0-1', 'other': '2.5'}
    with pytest.raises(FvError, match='offer no ghost'):
        _image.candidate_versions(['ghost'], fake_run)


def test_inputs_digest_follows_every_input(params):
    first = _image.inputs(params)
    assert first['packages'] == ['other', 'tiny'] and first == _image.inputs(params)
    (open(os.path.join(params['files'], 'build', 'iso.sh'), 'a')).write('# changed\n')
    assert _image.inputs(params)['digest'] != first['digest']
    assert _image.inputs(dict(params, version='0.2.0'))['digest'] != first['digest']
    # the developers' harnesses are not inputs
    before = _image.inputs(params)['digest']
    open(os.path.join(params['files'], 'dev', 'boot.sh'), 'w').write('x')
    assert _image.inputs(params)['digest'] == before


def test_build_then_cached_then_forced(params):
    built = _image.ensure_image(params, check_mode=False)
    assert built['changed'] and built['reason'] == 'no manifest'
    manifest = json.load(open(os.path.join(params['dest'], 'manifest.json')))
    assert manifest['packages'] == {'tiny': '1.0-1'}
    assert sorted(manifest['artifacts']) == sorted(['firmvisor.img', 'firmvisor.iso', 'root.squashfs', 'vmlinuz',
                                                    'initrd.img'])
    assert open(os.path.join(params['dest'], 'vmlinuz')).read() == 'kernel\n'
    assert [s['step'] for s in manifest['steps']][:3] == ['root filesystem', 'initramfs', 'squashfs']
    again = _image.ensure_image(params, check_mode=False)
    assert not again['changed'] and again['reason'] == 'current'
    assert _image.ensure_image(dict(params, force=True), check_mode=True)['reason'] == 'forced'


def test_a_touched_artifact_is_rebuilt(params):
    _image.ensure_image(params, check_mode=False)
    with open(os.path.join(params['dest'], 'firmvisor.img'), 'a') as handle:
        handle.write('tampered')
    assert _image.is_current(params['dest'], _image.inputs(params)) == (False, 'firmvisor.img changed since it was built')


def test_check_mode_builds_nothing(params):
    result = _image.ensure_image(params, check_mode=True)
    assert result['changed'] and not os.path.exists(params['dest'])


def test_a_failing_step_names_itself_and_shows_the_log(params):
    with open(os.path.join(params['files'], 'build', 'initramfs.sh'), 'w') as handle:
        handle.write('#!/bin/sh\necho "no busybox here"\nexit 3\n')
    with pytest.raises(FvError, match=r"(?s)step 'initramfs' failed \(exit 3\).*no busybox here"):
        _image.ensure_image(params, check_mode=False)
    assert not os.path.exists(os.path.join(params['dest'], 'manifest.json'))


def test_step_by_step_is_the_same_build(params):
    """What the action plugin does: plan, each step in its own call, finish."""
    planned = _image.ensure_image(dict(params, step='plan'), check_mode=False)
    assert planned['changed'] and [s['id'] for s in planned['steps']] == list(_image.STEP_IDS)
    seconds = [_image.ensure_image(dict(params, step=s['id']), check_mode=False)['seconds'] for s in planned['steps']]
    assert all(value >= 0 for value in seconds)
    finished = _image.ensure_image(dict(params, step='finish'), check_mode=False)
    assert finished['reason'] == 'no manifest'
    assert [s['step'] for s in finished['manifest']['steps']] == [s.title for s in _image.STEPS]
    assert not os.path.exists(os.path.join(params['dest'], '.work'))
    # the same inputs: current, and the step plan says nothing is to be done
    again = _image.ensure_image(dict(params, step='plan'), check_mode=False)
    assert not again['changed'] and again['steps'] == [] and again['reason'] == 'current'
    without_iso = _image.ensure_image(dict(params, step='plan', iso=False), check_mode=True)
    assert 'iso' not in [s['id'] for s in without_iso['steps']]


def test_a_step_without_a_plan_fails_and_check_mode_runs_no_step(params):
    with pytest.raises(FvError, match='no build in progress'):
        _image.ensure_image(dict(params, step='rootfs'), check_mode=False)
    with pytest.raises(FvError, match='not in check mode'):
        _image.ensure_image(dict(params, step='rootfs'), check_mode=True)


def test_the_shipped_tree_has_the_same_digest(params, tmp_path):
    """pack_tree (controller) then unpack (build host): the inputs digest is the original's, dev/ is left
    behind, and the build runs from the copy."""
    from ansible_collections.firmvisor.hypervisor.plugins.action.image_build import pack_tree
    archive = tmp_path / 'image.tar'
    count = pack_tree(params['files'], str(archive))
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert all(m.uid == 0 and m.mtime == 1735689600 for m in tar.getmembers())
    assert count == len([n for n in names if '.' in os.path.basename(n)]) and not any(n.startswith('dev') for n in names)
    copy = tmp_path / 'copy'
    _image.ensure_image(dict(params, files=str(copy), archive=str(archive), step='plan'), check_mode=True)
    assert _image.inputs(dict(params, files=str(copy)))['digest'] == _image.inputs(params)['digest']
    assert not (copy / 'dev').exists()
    pack_tree(params['files'], str(tmp_path / 'again.tar'))
    assert (tmp_path / 'again.tar').read_bytes() == archive.read_bytes()  # the same tree, the same bytes
    _image.ensure_image(dict(params, files=str(copy)), check_mode=False)
    with open(os.path.join(params['dest'], 'build.log')) as handle:
        assert {os.path.dirname(path) for path in ran_from(handle.read())} == {str(copy / 'build'), str(copy / 'tools')}


@pytest.mark.parametrize('member, message', [('../evil', 'unsafe member'), ('/etc/evil', 'unsafe member'),
                                             ('link', 'not a file or a directory')])
def test_unpack_refuses_unsafe_members(tmp_path, member, message):
    archive = tmp_path / 'bad.tar'
    with tarfile.open(archive, 'w') as tar:
        info = tarfile.TarInfo(member)
        if member == 'link':
            info.type, info.linkname = tarfile.SYMTYPE, '/etc/passwd'
        tar.addfile(info, None if member == 'link' else io.BytesIO(b''))
    with pytest.raises(FvError, match=message):
        _image.unpack(str(archive), str(tmp_path / 'out'))
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'x').write_text('x')
    with pytest.raises(FvError, match='not empty'):
        _image.unpack(str(archive), str(tmp_path / 'full'))


def test_not_an_image_tree(params, tmp_path):
    with pytest.raises(FvError, match=r'not an image source tree \(no packages.list'):
        _image.ensure_image(dict(params, files=str(tmp_path)), check_mode=True)
    with pytest.raises(FvError, match='no image source tree given'):
        _image.ensure_image(dict(params, files=None), check_mode=True)


def test_a_step_that_cannot_start_is_a_failed_step(params):
    os.chmod(os.path.join(params['files'], 'build', 'squashfs.sh'), 0o644)
    with pytest.raises(FvError, match=r"(?s)step 'squashfs' failed \(exit 126\).*cannot run .*squashfs.sh"):
        _image.ensure_image(params, check_mode=False)


def test_the_real_tree_is_complete_and_executable():
    """What a fresh clone gives the build: every required file, the scripts executable."""
    tree = os.path.join(os.path.dirname(__file__), '..', '..', 'image')
    _image.check_tree(tree)
    # build/kmodules.py is run as `python3 kmodules.py` by the build steps: it needs no exec bit
    for name in ('build/rootfs.sh', 'build/initramfs.sh', 'build/squashfs.sh', 'build/boot.sh', 'build/iso.sh',
                 'initramfs/init', 'rootfs/usr/sbin/fv-state', 'rootfs/usr/sbin/fvslot',
                 'rootfs/usr/sbin/fv-install', 'dev/boot.sh', 'dev/boot-disk.sh'):
        assert os.access(os.path.join(tree, name), os.X_OK), name + ' is not executable'
