# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make sanity`: ansible-test sanity on this checkout, offline, and fast when run again.

ansible-test wants to run from a directory named ``ansible_collections/<namespace>/<name>`` and
resolves real paths, so the link under ``.collections`` will not do: the files a developer has (git's
tracked files as they are on disk, uncommitted changes included, and untracked files that are not
ignored) are mirrored into ``.cache/sanity/ansible_collections/firmvisor/hypervisor``; only changed
files are copied.

Everything ansible-test keeps between runs lives under ``.cache/sanity`` too: it is given a HOME
of its own there, so its per-test virtual environments (``~/.ansible/test/venv``) are made once
and reused, and its pip bootstrap script (``~/.ansible/test/cache/get_pip_<version>.py``, which it
would download) is the offline stand-in ``tests/sanity/get_pip.py``.

The import and compile tests run under every Python that ansible-test supports (3.8 - 3.13 for
ansible-core 2.19): each is found on PATH or among pyenv's versions and linked into
``.cache/sanity/bin``, first on ansible-test's PATH. A missing one is an error, not a skip; so is
any test that ansible-test itself skips for a missing interpreter or program.

Usage: ``run.py [ansible-test sanity arguments]``, e.g. ``run.py --test pep8``.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import typing as t

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTION = ('firmvisor', 'hypervisor')
GET_PIP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'get_pip.py')

# Paths in the mirror that belong to ansible-test's runs, not to the checkout: its results, and the
# bytecode its ansible-doc run writes next to the doc fragments. Kept between runs.
KEEP_IN_MIRROR = ('tests/output',)
KEEP_NAMES = ('__pycache__',)

# Linux refuses a shebang longer than 127 bytes; ansible-test's venvs sit at
# ~/.ansible/test/venv/<label>/<python>/<hash>/bin/<script>. The longest label today is
# "sanity.validate-modules"; leave room for longer labels and script names.
SHEBANG_LIMIT = 127
VENV_PATH_ROOM = len('/.ansible/test/venv/sanity.validate-modules/3.13/0123abcd/bin/python3.13') + 10

SKIP_PATTERNS = (
    re.compile(r'Skipping sanity test .*'),
    re.compile(r'Required program "[^"]+" not found\.'),
)


class SanityError(Exception):
    """A step of the set-up failed; the message names the step, the object and the cause."""


def log(message: str) -> None:
    """Print one progress line."""
    print('sanity: %s' % message, flush=True)


# --- the mirror -------------------------------------------------------------------------------

def checkout_files(root: str) -> list[str]:
    """Files the developer has: tracked (as on disk) and untracked-but-not-ignored, relative."""
    try:
        out = subprocess.run(['git', '-C', root, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                             check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as ex:
        detail = getattr(ex, 'stderr', b'') or b''
        raise SanityError('listing the files of %s with git failed: %s %s' % (root, ex, detail.decode(errors='replace').strip())) from ex
    paths = sorted(set(p.decode() for p in out.split(b'\0') if p))
    # a tracked file deleted on disk is not part of what the developer tests
    return [p for p in paths if os.path.islink(os.path.join(root, p)) or os.path.isfile(os.path.join(root, p))]


@dataclasses.dataclass
class MirrorResult:
    """What mirror() changed."""

    copied: list[str]
    removed: list[str]
    unchanged: int


def _same(source: str, target: str) -> bool:
    """True when target already is a copy of source (link text, or size, mtime and mode)."""
    if os.path.islink(source) or os.path.islink(target):
        return os.path.islink(source) and os.path.islink(target) and os.readlink(source) == os.readlink(target)
    try:
        s, d = os.stat(source), os.stat(target)
    except FileNotFoundError:
        return False
    return (s.st_size, s.st_mtime_ns, stat.S_IMODE(s.st_mode)) == (d.st_size, d.st_mtime_ns, stat.S_IMODE(d.st_mode))


def _kept(path: str, keep: t.Sequence[str]) -> bool:
    return any(path == k or path.startswith(k + '/') for k in keep) or any(n in path.split('/') for n in KEEP_NAMES)


def mirror(root: str, files: t.Sequence[str], dest: str, keep: t.Sequence[str] = KEEP_IN_MIRROR) -> MirrorResult:
    """Make dest hold exactly `files` of root (links as links), leaving paths under `keep` alone."""
    result = MirrorResult(copied=[], removed=[], unchanged=0)
    wanted = set(files)
    os.makedirs(dest, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(dest, topdown=True):
        rel_dir = os.path.relpath(dirpath, dest)
        rel_dir = '' if rel_dir == '.' else rel_dir
        dirnames[:] = [d for d in dirnames if not _kept(os.path.join(rel_dir, d), keep)]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = os.path.join(rel_dir, name)
            if rel not in wanted and not _kept(rel, keep):
                os.unlink(os.path.join(dest, rel))
                result.removed.append(rel)
    for rel in files:
        source, target = os.path.join(root, rel), os.path.join(dest, rel)
        if _same(source, target):
            result.unchanged += 1
            continue
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.unlink(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
        result.copied.append(rel)
    # folders left empty by removed files
    for dirpath, _dirnames, _filenames in sorted(os.walk(dest), key=lambda entry: -len(entry[0])):
        rel_dir = os.path.relpath(dirpath, dest)
        if rel_dir != '.' and not _kept(rel_dir, keep) and not os.path.islink(dirpath) and not os.listdir(dirpath):
            os.rmdir(dirpath)
    result.removed.sort()
    return result


# --- interpreters -----------------------------------------------------------------------------

def pyenv_roots(environ: t.Mapping[str, str]) -> list[str]:
    """Where pyenv may keep its Pythons: PYENV_ROOT, ~/.pyenv, and the root of any pyenv shims on PATH."""
    roots = []
    if environ.get('PYENV_ROOT'):
        roots.append(environ['PYENV_ROOT'])
    if environ.get('HOME'):
        roots.append(os.path.join(environ['HOME'], '.pyenv'))
    for entry in environ.get('PATH', '').split(os.pathsep):
        if os.path.basename(entry.rstrip('/')) == 'shims':
            roots.append(os.path.dirname(entry.rstrip('/')))
    unique = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key for .../versions/3.8.18/bin/python3.8: the numeric parts of the version folder."""
    folder = os.path.basename(os.path.dirname(os.path.dirname(path)))
    return tuple(int(part) if part.isdigit() else -1 for part in re.split(r'[.]', folder))


def interpreter_candidates(version: str, environ: t.Mapping[str, str]) -> list[str]:
    """Paths that may be Python `version`, best first: PATH, then pyenv's versions, newest first."""
    candidates = []
    for entry in environ.get('PATH', '').split(os.pathsep):
        path = os.path.join(entry, 'python' + version)
        if entry and os.access(path, os.X_OK) and os.path.basename(entry.rstrip('/')) != 'shims':
            candidates.append(path)
    for root in pyenv_roots(environ):
        # 3.8.18, not 3.8-dev or a virtualenv named after it
        found = [p for p in glob.glob(os.path.join(root, 'versions', version + '.*', 'bin', 'python' + version))
                 if re.fullmatch(re.escape(version) + r'\.\d+', os.path.basename(os.path.dirname(os.path.dirname(p))))]
        candidates.extend(sorted(found, key=_version_key, reverse=True))
    return candidates


def probe(python: str) -> t.Optional[str]:
    """The 'X.Y' of an interpreter that can make venvs with pip (ansible-test needs both), else None."""
    code = 'import sys, venv, ensurepip; sys.stdout.write("%d.%d" % sys.version_info[:2])'
    try:
        proc = subprocess.run([python, '-c', code], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def link_interpreters(bin_dir: str, versions: t.Sequence[str], environ: t.Mapping[str, str],
                      probe_fn: t.Callable[[str], t.Optional[str]] = probe) -> dict[str, str]:
    """Link pythonX.Y for every version into bin_dir; return {version: real path}.

    Raises SanityError naming every version that has no usable interpreter.
    """
    os.makedirs(bin_dir, exist_ok=True)
    found: dict[str, str] = {}
    missing = []
    for version in versions:
        for candidate in interpreter_candidates(version, environ):
            real = os.path.realpath(candidate)
            if os.path.dirname(real) == os.path.realpath(bin_dir):
                continue  # our own link from an earlier run
            if probe_fn(real) == version:
                found[version] = real
                break
        else:
            missing.append(version)
    if missing:
        raise SanityError('no usable Python %s for the import and compile tests (looked on PATH and in pyenv roots %s; '
                          'each needs venv and ensurepip): install them, e.g. `pyenv install %s`'
                          % (', '.join(missing), ', '.join(pyenv_roots(environ)) or 'none', ' '.join(missing)))
    for version, real in found.items():
        link = os.path.join(bin_dir, 'python' + version)
        if os.path.islink(link) and os.readlink(link) == real:
            continue
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(real, link)
    return found


# --- ansible-test's home -----------------------------------------------------------------------

def sanity_home(cache: str, root: str) -> str:
    """ansible-test's HOME: under the cache, unless that is too long for its venvs' shebangs."""
    home = os.path.join(cache, 'home')
    if len(home) + VENV_PATH_ROOM <= SHEBANG_LIMIT:
        return home
    digest = hashlib.sha256(root.encode()).hexdigest()[:12]
    return os.path.join('/var/tmp/firmvisor-sanity', digest, 'home')


def _read(path: str) -> bytes:
    with open(path, 'rb') as handle:
        return handle.read()


def install_get_pip(home: str, pip_versions: t.Iterable[str], source: str = GET_PIP) -> list[str]:
    """Put the offline stand-in where ansible-test looks for get-pip; return the paths written."""
    cache_dir = os.path.join(home, '.ansible', 'test', 'cache')
    os.makedirs(cache_dir, exist_ok=True)
    content = _read(source)
    written = []
    for version in sorted(set(pip_versions)):
        path = os.path.join(cache_dir, 'get_pip_%s.py' % version.replace('.', '_'))
        if not os.path.exists(path) or _read(path) != content:
            with open(path + '.tmp', 'wb') as handle:
                handle.write(content)
            os.replace(path + '.tmp', path)
        written.append(path)
    return written


def skipped_tests(lines: t.Iterable[str]) -> list[str]:
    """ansible-test's warnings that a test (or a Python of it) was skipped, each once, in order."""
    found: list[str] = []
    for line in lines:
        for pattern in SKIP_PATTERNS:
            match = pattern.search(line)
            if match and match.group(0) not in found:
                found.append(match.group(0))
    return found


def ansible_test_facts() -> tuple[tuple[str, ...], set[str]]:
    """(Python versions ansible-test tests, pip versions it bootstraps), from ansible-test itself."""
    # pylint: disable=import-outside-toplevel
    import types

    # ansible-test's internals (stable across 2.1x); a release that moves them fails here by name.
    try:
        from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS
        from ansible_test._internal.python_requirements import get_venv_packages

        pips = {get_venv_packages(types.SimpleNamespace(version=v))['pip'] for v in SUPPORTED_PYTHON_VERSIONS}
    except (ImportError, AttributeError, KeyError, TypeError) as ex:
        raise SanityError('reading the supported Pythons and the pip version from ansible-test failed '
                          '(has its internal layout changed?): %r' % ex) from ex
    return tuple(SUPPORTED_PYTHON_VERSIONS), pips


def run_ansible_test(args: t.Sequence[str], cwd: str, env: t.Mapping[str, str]) -> tuple[int, list[str]]:
    """Run ansible-test sanity, passing its output through; return (exit code, skip warnings)."""
    ansible_test = os.path.join(os.path.dirname(sys.executable), 'ansible-test')
    cmd = [ansible_test, 'sanity', '--local', '--color', 'no'] + list(args)
    log('running: %s (in %s)' % (' '.join(cmd[1:]), cwd))
    with subprocess.Popen(cmd, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True, errors='replace') as proc:
        lines = []
        for line in proc.stdout or ():
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
        code = proc.wait()
    return code, skipped_tests(lines)


def main(argv: t.Sequence[str]) -> int:
    """Set up and run ansible-test sanity; non-zero when a test failed or was skipped."""
    cache = os.path.join(ROOT, '.cache', 'sanity')
    dest = os.path.join(cache, 'ansible_collections', *COLLECTION)
    try:
        versions, pips = ansible_test_facts()
        result = mirror(ROOT, checkout_files(ROOT), dest)
        log('mirror %s: %d copied, %d removed, %d unchanged' % (dest, len(result.copied), len(result.removed), result.unchanged))
        bin_dir = os.path.join(cache, 'bin')
        found = link_interpreters(bin_dir, versions, os.environ)
        log('pythons: %s' % ', '.join('%s=%s' % item for item in found.items()))
        home = sanity_home(cache, ROOT)
        install_get_pip(home, pips)
    except SanityError as ex:
        print('sanity: ERROR: %s' % ex, file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.update(
        HOME=home,
        # the mirror lies inside this git checkout: without this ansible-test would list the
        # checkout's files (with git) instead of the mirror's
        ANSIBLE_TEST_CONTENT_ROOT=dest,
        PATH=os.pathsep.join([os.path.dirname(sys.executable), bin_dir, os.environ.get('PATH', os.defpath)]),
        PIP_DISABLE_PIP_VERSION_CHECK='1',
        PIP_NO_INPUT='1',
    )
    code, skips = run_ansible_test(argv, dest, env)
    if skips:
        print('sanity: ERROR: ansible-test skipped what must run here (the set-up provides it):\n  %s'
              % '\n  '.join(skips), file=sys.stderr)
        return code or 1
    return code


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
