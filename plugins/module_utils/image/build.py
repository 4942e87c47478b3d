# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Building the embedded image: its inputs, the build steps, and the manifest.

The inputs (version, package list with the candidate versions the build machine's apt sources
offer, the apt sources themselves and every file of the image source tree ``image/``) have one
digest. A build whose digest and artifacts match the manifest beside them is current and is
skipped; anything else builds again.

A build runs in steps (STEPS). The action plugin (plugins/action/image_build.py) ships the image
tree to the build host as a tar (``archive``, unpacked into ``files``), then calls the module once
per step (``step``: ``plan``, each step's id, ``finish``) so that the user sees each step start and
finish; between the calls the build's state is ``<work_dir>/build-state.json``. ``step: all`` does
everything in one call.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError

MANIFEST = 'manifest.json'
STATE = 'build-state.json'
# Fixed timestamps in every artifact, so that the same inputs give the same bytes where the tools allow.
SOURCE_DATE_EPOCH = '1735689600'

# Artifacts, by the name they have in dest.
DISK, ISO, SQUASHFS, KERNEL, INITRD = 'firmvisor.img', 'firmvisor.iso', 'root.squashfs', 'vmlinuz', 'initrd.img'

# The files of the image tree a build needs (relative to ``files``); dev/ holds the developers'
# harnesses, which are neither inputs nor shipped.
REQUIRED = ('packages.list', 'build/rootfs.sh', 'build/initramfs.sh', 'build/squashfs.sh', 'build/boot.sh',
            'build/iso.sh', 'tools/assemble.py', 'grub/grub.cfg')
HARNESSES = 'dev/'


@dataclass(frozen=True)
class Step:
    id: str
    title: str


STEPS = (
    Step('rootfs', 'root filesystem'),
    Step('initramfs', 'initramfs'),
    Step('squashfs', 'squashfs'),
    Step('kernel', 'kernel'),
    Step('boot', 'boot loaders'),
    Step('disk', 'disk image'),
    Step('iso', 'iso'),
)
STEP_IDS = tuple(step.id for step in STEPS)

IMAGE_ARGSPEC = dict(
    dest=dict(type='path', required=True),
    files=dict(type='path'),
    version=dict(type='str', default='0.1.0'),
    packages=dict(type='list', elements='str'),
    extra_packages=dict(type='list', elements='str', default=[]),
    apt_sources=dict(type='list', elements='path'),
    iso=dict(type='bool', default=True),
    debug=dict(type='bool', default=False),
    force=dict(type='bool', default=False),
    work_dir=dict(type='path'),
    step=dict(type='str', default='all', choices=['all', 'plan'] + list(STEP_IDS) + ['finish']),
    archive=dict(type='path'),
)


def steps_for(iso: bool) -> List[Step]:
    return [step for step in STEPS if iso or step.id != 'iso']


# ---- the image tree ---------------------------------------------------------------------------------
def unpack(archive: str, files: str) -> None:
    """Unpack the image tree the action plugin shipped: plain files and directories only, each
    member below ``files``, modes kept (they are inputs)."""
    if os.path.isdir(files) and os.listdir(files):
        raise FvError('files: %s is not empty; the image tree is unpacked into an empty directory' % files)
    os.makedirs(files, exist_ok=True)
    with tarfile.open(archive, mode='r:') as tar:
        for member in tar.getmembers():
            parts = [part for part in member.name.split('/') if part not in ('', '.')]
            if member.name.startswith('/') or '..' in parts or not parts:
                raise FvError('archive %s: unsafe member %r' % (archive, member.name))
            target = os.path.join(files, *parts)
            if member.isdir():
                os.makedirs(target, exist_ok=True)
            elif member.isreg():
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tar.extractfile(member)
                with open(target, 'wb') as handle:
                    shutil.copyfileobj(source, handle)
                os.chmod(target, member.mode & 0o7777)
            else:
                raise FvError('archive %s: member %r is not a file or a directory' % (archive, member.name))


def check_tree(files: Optional[str]) -> None:
    if not files:
        raise FvError('files: no image source tree given (the action plugin gives the collection\'s own)')
    missing = [name for name in REQUIRED if not os.path.isfile(os.path.join(files, name))]
    if missing:
        raise FvError('files: %s is not an image source tree (no %s)' % (files, ', '.join(missing)))


# ---- inputs -----------------------------------------------------------------------------------------
def default_apt_sources() -> List[str]:
    """The build machine's own apt sources, as apt itself reads them."""
    found = [path for path in ['/etc/apt/sources.list'] if os.path.isfile(path) and _has_entries(path)]
    found += sorted(glob.glob('/etc/apt/sources.list.d/*.list') + glob.glob('/etc/apt/sources.list.d/*.sources'))
    return found


def _has_entries(path: str) -> bool:
    with open(path) as handle:
        return any(line.strip() and not line.lstrip().startswith('#') for line in handle)


def read_package_list(path: str) -> List[str]:
    with open(path) as handle:
        return [word for line in handle for word in line.split('#', 1)[0].split()]


def tree_digest(root: str, skip: Callable[[str], bool] = lambda rel: False) -> str:
    """sha256 over the relative paths, modes and contents of every file below ``root``."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if skip(rel) or '__pycache__' in rel:
                continue
            digest.update(rel.encode() + b'\0' + oct(os.stat(path).st_mode & 0o7777).encode() + b'\0')
            with open(path, 'rb') as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def candidate_versions(packages: List[str], run: Callable[..., Any] = subprocess.run) -> Dict[str, str]:
    """What the build machine's apt would install now, for the requested packages."""
    proc = run(['apt-cache', 'policy'] + sorted(packages), capture_output=True, text=True, check=False)
    versions: Dict[str, str] = {}
    current = None
    for line in proc.stdout.splitlines():
        if line and not line.startswith(' ') and line.endswith(':'):
            current = line[:-1]
        elif current and line.strip().startswith('Candidate:'):
            versions[current] = line.split(':', 1)[1].strip()
    missing = sorted(p for p in packages if versions.get(p) in (None, '(none)'))
    if missing:
        raise FvError('the build machine\'s apt sources offer no %s (run apt-get update?)' % ', '.join(missing))
    return versions


def inputs(params: Dict[str, Any], run: Callable[..., Any] = subprocess.run) -> Dict[str, Any]:
    files = params['files']
    packages = params['packages'] or read_package_list(os.path.join(files, 'packages.list'))
    packages = sorted(set(packages) | set(params['extra_packages']))
    sources = params['apt_sources'] or default_apt_sources()
    if not sources:
        raise FvError('no apt sources found on the build machine (give apt_sources)')
    source_digest = hashlib.sha256()
    for path in sources:
        with open(path, 'rb') as handle:
            source_digest.update(handle.read())
    result = {
        'version': params['version'],
        'iso': params['iso'],
        'debug': bool(params.get('debug')),
        'packages': packages,
        'candidates': candidate_versions(packages, run),
        'apt_sources': sources,
        'apt_sources_sha256': source_digest.hexdigest(),
        'files_sha256': tree_digest(files, skip=lambda rel: rel.startswith(HARNESSES)),
    }
    result['digest'] = hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()
    return result


# ---- the manifest -----------------------------------------------------------------------------------
def artifact_names(iso: bool) -> List[str]:
    return [DISK, SQUASHFS, KERNEL, INITRD] + ([ISO] if iso else [])


def fingerprint(path: str) -> Dict[str, int]:
    st = os.stat(path)
    return {'size': st.st_size, 'mtime_ns': st.st_mtime_ns}


def read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def read_manifest(dest: str) -> Optional[Dict[str, Any]]:
    return read_json(os.path.join(dest, MANIFEST))


def is_current(dest: str, wanted: Dict[str, Any]) -> Tuple[bool, str]:
    """Whether the manifest in ``dest`` says its artifacts were built from ``wanted`` and are intact."""
    manifest = read_manifest(dest)
    if manifest is None:
        return False, 'no manifest'
    if manifest.get('inputs', {}).get('digest') != wanted['digest']:
        return False, 'inputs changed'
    for name in artifact_names(wanted['iso']):
        recorded = manifest.get('artifacts', {}).get(name)
        path = os.path.join(dest, name)
        if recorded is None or not os.path.exists(path):
            return False, '%s missing' % name
        if {k: recorded.get(k) for k in ('size', 'mtime_ns')} != fingerprint(path):
            return False, '%s changed since it was built' % name
    return True, 'current'


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(8 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


# ---- the build --------------------------------------------------------------------------------------
class Builder:
    """Runs the build one step at a time, each logged to ``dest/build.log``; what was done so far is
    ``<work>/build-state.json``, so that each step can be its own module call."""

    def __init__(self, params: Dict[str, Any]) -> None:
        self.params = params
        self.dest = params['dest']
        self.files = params['files']
        self.work = params['work_dir'] or os.path.join(self.dest, '.work')
        self.log_path = os.path.join(self.dest, 'build.log')
        self.state_path = os.path.join(self.work, STATE)
        self.rootfs = os.path.join(self.work, 'rootfs')
        self.boot = os.path.join(self.work, 'boot')
        self.pieces = {name: os.path.join(self.work, name) for name in (SQUASHFS, KERNEL, INITRD, DISK, ISO)}

    # -- state between the calls --
    def prepare(self, wanted: Dict[str, Any], reason: str) -> None:
        """A fresh work directory, build.log and build state."""
        os.makedirs(self.dest, exist_ok=True)
        if os.path.isdir(self.work):
            shutil.rmtree(self.work)
        os.makedirs(self.work)
        with open(self.log_path, 'w') as log:
            log.write('firmvisor image %s build\n' % self.params['version'])
        self._save({'inputs': wanted, 'reason': reason, 'started': time.time(), 'steps': []})

    def state(self) -> Dict[str, Any]:
        state = read_json(self.state_path)
        if state is None:
            raise FvError('no build in progress in %s (the plan step prepares it)' % self.work)
        return state

    def _save(self, state: Dict[str, Any]) -> None:
        _write_json(self.state_path, state)

    # -- the steps --
    def env(self, wanted: Dict[str, Any]) -> Dict[str, str]:
        env = dict(os.environ)
        env.update({
            'SOURCE_DATE_EPOCH': SOURCE_DATE_EPOCH,
            'FV_VERSION': self.params['version'],
            'FV_APT_SOURCES': ' '.join(wanted['apt_sources']),
            'FV_PACKAGES': ' '.join(wanted['packages']),
            'FV_DEBUG': '1' if wanted.get('debug') else '0',
        })
        return env

    def argv(self, step_id: str) -> Optional[List[str]]:
        """The command of a step (None: the step is Python, run here)."""
        files, pieces = self.files, self.pieces
        build = os.path.join(files, 'build')
        commands = {
            'rootfs': [os.path.join(build, 'rootfs.sh'), self.rootfs],
            'initramfs': [os.path.join(build, 'initramfs.sh'), self.rootfs, pieces[INITRD]],
            'squashfs': [os.path.join(build, 'squashfs.sh'), self.rootfs, pieces[SQUASHFS]],
            'kernel': None,
            'boot': [os.path.join(build, 'boot.sh'), self.boot],
            'disk': [sys.executable, os.path.join(files, 'tools', 'assemble.py'), 'disk', '--out', pieces[DISK],
                     '--core', os.path.join(self.boot, 'core.img'), '--boot-img', os.path.join(self.boot, 'boot.img'),
                     '--efi', os.path.join(self.boot, 'BOOTX64.EFI'),
                     '--grub-cfg', os.path.join(self.boot, 'grub.cfg'),
                     '--kernel', pieces[KERNEL], '--initrd', pieces[INITRD],
                     '--slot-a', pieces[SQUASHFS], '--version', self.params['version']],
            'iso': [os.path.join(build, 'iso.sh'), pieces[ISO], self.work],
        }
        return commands[step_id]

    def copy_kernel(self, log: IO[str]) -> None:
        kernels = sorted(glob.glob(os.path.join(self.rootfs, 'boot', 'vmlinuz-*')))
        if len(kernels) != 1:
            raise RuntimeError('expected one kernel in %s/boot, found %d' % (self.rootfs, len(kernels)))
        shutil.copyfile(kernels[0], self.pieces[KERNEL])
        log.write('kernel: %s\n' % os.path.basename(kernels[0]))

    def run_step(self, step_id: str) -> Dict[str, Any]:
        state = self.state()
        step = next(s for s in STEPS if s.id == step_id)
        argv = self.argv(step_id)
        started = time.monotonic()
        with open(self.log_path, 'a') as log:
            log.write('\n==== %s: %s\n' % (step.title, ' '.join(argv) if argv else '(python)'))
            log.flush()
            if argv:
                try:
                    code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(state['inputs']),
                                          cwd=self.work, check=False).returncode
                except OSError as exc:  # not executable, missing interpreter
                    log.write('error: cannot run %s: %s\n' % (argv[0], exc))
                    code = 126
            else:
                code = self._python_step(log)
        seconds = round(time.monotonic() - started, 1)
        state['steps'].append({'step': step.title, 'seconds': seconds})
        self._save(state)
        if code != 0:
            raise FvError('image build step %r failed (exit %d); the last lines of %s:\n%s'
                          % (step.title, code, self.log_path, _tail(self.log_path, 25)),
                          step=step.id, seconds=seconds)
        return {'step': step.id, 'title': step.title, 'seconds': seconds}

    def _python_step(self, log: IO[str]) -> int:
        try:
            self.copy_kernel(log)
        except (OSError, RuntimeError) as exc:
            log.write('error: %s\n' % exc)
            return 1
        return 0

    def finish(self) -> Dict[str, Any]:
        state = self.state()
        wanted = state['inputs']
        packages = self._packages()
        artifacts = {}
        for name in artifact_names(wanted['iso']):
            target = os.path.join(self.dest, name)
            os.replace(self.pieces[name], target)
            artifacts[name] = dict(fingerprint(target), sha256=sha256_file(target))
        shutil.rmtree(self.work, ignore_errors=True)
        manifest = {
            'name': 'firmvisor', 'version': self.params['version'], 'inputs': wanted,
            'packages': packages, 'artifacts': artifacts, 'steps': state['steps'],
            'build_seconds': round(time.time() - state['started'], 1),
        }
        _write_json(os.path.join(self.dest, MANIFEST), manifest)
        return {'reason': state['reason'], 'manifest': manifest}

    def _packages(self) -> Dict[str, str]:
        proc = subprocess.run(['dpkg-query', '--admindir', os.path.join(self.rootfs, 'var', 'lib', 'dpkg'), '-W',
                               '-f', '${Package}\t${Version}\n'], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise FvError('reading the package list of the root filesystem failed: %s' % proc.stderr.strip())
        return dict(line.split('\t', 1) for line in sorted(proc.stdout.splitlines()) if '\t' in line)


# ---- the module's entry ----------------------------------------------------------------------------
def plan(params: Dict[str, Any], check_mode: bool) -> Dict[str, Any]:
    """Whether a build is needed and why; outside check mode, a build that is needed is prepared."""
    if params.get('archive'):
        unpack(params['archive'], params['files'])
    check_tree(params['files'])
    wanted = inputs(params)
    current, reason = is_current(params['dest'], wanted)
    if current and not params['force']:
        return {'changed': False, 'reason': reason, 'manifest': read_manifest(params['dest']), 'steps': []}
    reason = 'forced' if current else reason
    steps = [{'id': step.id, 'title': step.title} for step in steps_for(params['iso'])]
    if not check_mode:
        Builder(params).prepare(wanted, reason)
    return {'changed': True, 'reason': reason, 'manifest': {'inputs': wanted}, 'steps': steps}


def ensure_image(params: Dict[str, Any], check_mode: bool) -> Dict[str, Any]:
    step = params.get('step') or 'all'
    if step == 'plan' or (step == 'all' and check_mode):
        return plan(params, check_mode)
    if check_mode:
        raise FvError('step %s changes the build host: not in check mode' % step)
    builder = Builder(params)
    if step in STEP_IDS:
        return dict(builder.run_step(step), changed=True)
    if step == 'finish':
        return dict(builder.finish(), changed=True)
    planned = plan(params, check_mode=False)
    if not planned['changed']:
        return planned
    for each in planned['steps']:
        builder.run_step(each['id'])
    return dict(builder.finish(), changed=True)


def _write_json(path: str, data: Dict[str, Any]) -> None:
    temp = path + '.new'
    with open(temp, 'w') as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write('\n')
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def _tail(path: str, lines: int) -> str:
    with open(path, errors='replace') as handle:
        return ''.join(handle.readlines()[-lines:])
