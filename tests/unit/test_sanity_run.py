# -*- coding: utf-8 -*-
"""`make sanity`'s set-up (tests/sanity/run.py) and the offline get-pip stand-in (tests/sanity/get_pip.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import venv

import pytest

SANITY_DIR = os.path.join(os.path.dirname(__file__), '..', 'sanity')


def load(name):
    spec = importlib.util.spec_from_file_location('fv_sanity_' + name, os.path.join(SANITY_DIR, name + '.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


run = load('run')
get_pip = load('get_pip')


def write(path, text='x\n', mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    os.chmod(path, mode)


def git(root, *args):
    subprocess.run(['git', '-C', str(root), '-c', 'user.name=t', '-c', 'user.email=t@t', *args],
                   check=True, capture_output=True)


# ---- what is mirrored -------------------------------------------------------------------------

def test_checkout_files_are_what_the_developer_has(tmp_path):
    root = tmp_path / 'repo'
    write(str(root / '.gitignore'), '.cache/\n')
    write(str(root / 'plugins/modules/a.py'), 'committed\n')
    write(str(root / 'plugins/modules/gone.py'))
    git(root, 'init', '-q')
    git(root, 'add', '-A')
    git(root, 'commit', '-qm', 'one')
    write(str(root / 'plugins/modules/a.py'), 'edited, not committed\n')
    os.unlink(str(root / 'plugins/modules/gone.py'))
    write(str(root / 'plugins/modules/new.py'))  # untracked, not ignored
    write(str(root / '.cache/sanity/big'))  # ignored
    assert run.checkout_files(str(root)) == ['.gitignore', 'plugins/modules/a.py', 'plugins/modules/new.py']


def test_checkout_files_outside_git_names_the_folder(tmp_path):
    with pytest.raises(run.SanityError, match=str(tmp_path)):
        run.checkout_files(str(tmp_path))


def test_mirror_copies_changes_removes_leftovers_and_keeps_output(tmp_path):
    root, dest = tmp_path / 'src', tmp_path / 'dst'
    write(str(root / 'a.py'), 'one\n')
    write(str(root / 'tools/run.sh'), '#!/usr/bin/env bash\n', 0o755)
    os.symlink('a.py', str(root / 'link.py'))
    first = run.mirror(str(root), ['a.py', 'link.py', 'tools/run.sh'], str(dest))
    assert sorted(first.copied) == ['a.py', 'link.py', 'tools/run.sh'] and first.removed == []
    assert (dest / 'a.py').read_text() == 'one\n'
    assert os.stat(str(dest / 'tools/run.sh')).st_mode & 0o777 == 0o755  # the shebang test reads modes
    assert os.readlink(str(dest / 'link.py')) == 'a.py'

    write(str(dest / 'tests/output/junit/result.xml'))  # ansible-test's own results
    write(str(dest / 'plugins/doc_fragments/__pycache__/a.pyc'))  # and bytecode of its runs
    write(str(dest / 'old/stale.py'))  # a file the developer deleted since the last run
    write(str(root / 'a.py'), 'two, longer\n')
    again = run.mirror(str(root), ['a.py', 'link.py', 'tools/run.sh'], str(dest))
    assert again.copied == ['a.py'] and again.removed == ['old/stale.py'] and again.unchanged == 2
    assert (dest / 'a.py').read_text() == 'two, longer\n'
    assert not (dest / 'old').exists()  # emptied folders go too
    assert (dest / 'tests/output/junit/result.xml').exists()
    assert (dest / 'plugins/doc_fragments/__pycache__/a.pyc').exists()

    os.chmod(str(root / 'tools/run.sh'), 0o644)  # a mode change alone is a change
    assert run.mirror(str(root), ['a.py', 'link.py', 'tools/run.sh'], str(dest)).copied == ['tools/run.sh']


# ---- interpreters -----------------------------------------------------------------------------

def fake_python(path):
    write(path, '#!/bin/sh\n', 0o755)
    return path


def test_pyenv_roots_from_environment_home_and_shims():
    env = {'PYENV_ROOT': '/opt/pyenv', 'HOME': '/home/dev', 'PATH': '/usr/bin:/srv/py/shims:/opt/pyenv/shims'}
    assert run.pyenv_roots(env) == ['/opt/pyenv', '/home/dev/.pyenv', '/srv/py']


def test_candidates_skip_shims_and_prefer_the_newest_release(tmp_path):
    root = tmp_path / 'pyenv'
    for version in ('3.8.9', '3.8.18', '3.8-dev', '3.9.1'):
        short = version[:3]
        fake_python(str(root / 'versions' / version / 'bin' / ('python' + short)))
    fake_python(str(root / 'shims' / 'python3.8'))
    on_path = fake_python(str(tmp_path / 'bin' / 'python3.8'))
    env = {'PATH': '%s:%s' % (root / 'shims', tmp_path / 'bin')}
    assert run.interpreter_candidates('3.8', env) == [
        on_path,
        str(root / 'versions/3.8.18/bin/python3.8'),
        str(root / 'versions/3.8.9/bin/python3.8'),
    ]


def test_link_interpreters_links_each_version_and_names_the_missing(tmp_path):
    root = tmp_path / 'pyenv'
    good = fake_python(str(root / 'versions/3.9.18/bin/python3.9'))
    broken = fake_python(str(root / 'versions/3.10.13/bin/python3.10'))  # no venv/ensurepip
    env = {'PYENV_ROOT': str(root), 'PATH': ''}
    versions = {good: '3.9', broken: None}
    bin_dir = str(tmp_path / 'bin')

    assert run.link_interpreters(bin_dir, ['3.9'], env, probe_fn=versions.get) == {'3.9': good}
    assert os.readlink(os.path.join(bin_dir, 'python3.9')) == good
    with pytest.raises(run.SanityError) as error:
        run.link_interpreters(bin_dir, ['3.9', '3.10', '3.13'], env, probe_fn=versions.get)
    assert 'Python 3.10, 3.13' in str(error.value) and str(root) in str(error.value)


def test_probe_reports_the_running_interpreter():
    assert run.probe(sys.executable) == '%d.%d' % sys.version_info[:2]
    assert run.probe('/nonexistent/python3.8') is None


# ---- ansible-test's home, get-pip and skips --------------------------------------------------

def test_home_stays_under_the_cache_unless_shebangs_would_break():
    assert run.sanity_home('/work/x/.cache/sanity', '/work/x') == '/work/x/.cache/sanity/home'
    deep = '/' + 'd' * 80
    home = run.sanity_home(deep + '/.cache/sanity', deep)
    assert home.startswith('/var/tmp/firmvisor-sanity/') and len(home) + run.VENV_PATH_ROOM <= run.SHEBANG_LIMIT


def test_get_pip_stand_in_is_installed_under_each_pip_version(tmp_path):
    paths = run.install_get_pip(str(tmp_path), ['24.2', '24.2', '25.0'])
    assert [os.path.basename(p) for p in paths] == ['get_pip_24_2.py', 'get_pip_25_0.py']
    assert all(run._read(path) == run._read(run.GET_PIP) for path in paths)
    assert os.path.dirname(paths[0]) == str(tmp_path / '.ansible/test/cache')


def test_skip_warnings_are_found_once_each():
    output = [
        'Running sanity test "shellcheck"\n',
        'WARNING: Required program "shellcheck" not found.\n',
        'WARNING: Skipping sanity test "import" on Python 3.8 because it could not be found.\n',
        'Running sanity test "pep8"\n',
        'WARNING: Reviewing previous 2 warning(s):\n',
        'WARNING: Required program "shellcheck" not found.\n',
    ]
    assert run.skipped_tests(output) == [
        'Required program "shellcheck" not found.',
        'Skipping sanity test "import" on Python 3.8 because it could not be found.',
    ]
    assert run.skipped_tests(['WARNING: Using locale "C.UTF-8" instead of "en_US.UTF-8".\n']) == []


# ---- the get-pip stand-in ------------------------------------------------------------------

@pytest.mark.parametrize('argv, expected', [
    # what ansible-test passes
    (['--disable-pip-version-check', 'pip==24.2', '--no-setuptools', '--no-wheel'],
     ['install', '--disable-pip-version-check', 'pip==24.2']),
    # get-pip's defaults: pip, setuptools and wheel
    ([], ['install', 'pip', 'setuptools', 'wheel']),
    (['--no-wheel', 'setuptools<70'], ['install', 'setuptools<70', 'pip']),
])
def test_get_pip_arguments(argv, expected):
    assert get_pip.pip_install_args(argv) == expected


def test_get_pip_bootstraps_an_empty_venv_offline(tmp_path):
    """As ansible-test uses it, on a venv made --without-pip; from the bundled wheel, no index."""
    import ensurepip
    target = str(tmp_path / 'venv')
    venv.EnvBuilder(with_pip=False).create(target)
    python = os.path.join(target, 'bin', 'python')
    wheel = get_pip.bundled_pip_wheel()
    version = ensurepip.version()
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX='1', PIP_FIND_LINKS=os.path.dirname(wheel))
    env.pop('PIP_CONSTRAINT', None)
    proc = subprocess.run([python, os.path.join(SANITY_DIR, 'get_pip.py'), '--disable-pip-version-check',
                           'pip==' + version, '--no-setuptools', '--no-wheel'],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = subprocess.run([python, '-m', 'pip', '--version'], capture_output=True, text=True, check=True).stdout
    assert shown.startswith('pip %s ' % version) and target in shown
    listed = subprocess.run([python, '-m', 'pip', 'list', '--format=freeze'], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert 'setuptools' not in listed and 'wheel' not in listed
