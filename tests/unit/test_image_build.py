# -*- coding: utf-8 -*-
"""The image build's inputs, manifest and cache, with fake build scripts (no real build here:
molecule/embedded builds and boots the real image)."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

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

FAKE_SCRIPTS = {
    'build-rootfs.sh': ('if [ "$1" = squash ]; then echo squash > "$3"; exit 0; fi\n'
                        'mkdir -p "$1/boot" "$1/var/lib/dpkg"; echo kernel > "$1/boot/vmlinuz-6.1"\n'
                        'printf "Package: tiny\\nStatus: install ok installed\\nVersion: 1.0-1\\n\\n" > "$1/var/lib/dpkg/status"\n'),
    'build-initramfs.sh': 'echo initrd > "$2"\n',
    'build-boot.sh': 'mkdir -p "$1"; for f in core.img boot.img BOOTX64.EFI; do echo $f > "$1/$f"; done\n',
    'assemble.py': ('import sys\nargs = sys.argv[1:]\nopen(args[args.index("--out") + 1], "w").write("disk")\n'),
    'build-iso.sh': 'echo iso > "$1"\n',
}


REAL_CANDIDATES = _image.candidate_versions


def fake_run(argv, **_kwargs):
    return subprocess.CompletedProcess(argv, 0, stdout=POLICY, stderr='')


@pytest.fixture
def params(tmp_path, monkeypatch):
    files = tmp_path / 'files'
    (files / 'grub').mkdir(parents=True)
    (files / 'grub' / 'grub.cfg').write_text('menuentry x {}\n')
    (files / 'packages.list').write_text('# base\ntiny\n')
    for name, body in FAKE_SCRIPTS.items():
        path = files / name
        path.write_text(('#!/bin/sh\nset -e\n' if name.endswith('.sh') else '') + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    sources = tmp_path / 'sources.list'
    sources.write_text('deb file:/nowhere bookworm main\n')
    # apt-cache answers from POLICY instead of the host's apt
    monkeypatch.setattr(_image, 'candidate_versions', lambda packages, run=None: REAL_CANDIDATES(packages, fake_run))
    return {'dest': str(tmp_path / 'out'), 'files': str(files), 'version': '0.1.0', 'packages': None,
            'extra_packages': ['other'], 'apt_sources': [str(sources)], 'iso': True, 'force': False, 'work_dir': None}


def test_candidate_versions_parse_and_missing():
    assert _image.candidate_versions(['tiny', 'other'], fake_run) == {'tiny': '1.0-1', 'other': '2.5'}
    with pytest.raises(FvError, match='offer no ghost'):
        _image.candidate_versions(['ghost'], fake_run)


def test_inputs_digest_follows_every_input(params):
    first = _image.inputs(params)
    assert first['packages'] == ['other', 'tiny'] and first == _image.inputs(params)
    (open(os.path.join(params['files'], 'build-iso.sh'), 'a')).write('# changed\n')
    assert _image.inputs(params)['digest'] != first['digest']
    assert _image.inputs(dict(params, version='0.2.0'))['digest'] != first['digest']
    # the developer's harness scripts are not inputs
    open(os.path.join(params['files'], 'dev-boot.sh'), 'w').write('x')
    assert _image.inputs(params)['digest'] == _image.inputs(params)['digest']


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
    with open(os.path.join(params['files'], 'build-initramfs.sh'), 'w') as handle:
        handle.write('#!/bin/sh\necho "no busybox here"\nexit 3\n')
    with pytest.raises(FvError, match=r"(?s)step 'initramfs' failed \(exit 3\).*no busybox here"):
        _image.ensure_image(params, check_mode=False)
    assert not os.path.exists(os.path.join(params['dest'], 'manifest.json'))
