# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Building the embedded image: its inputs, the build steps, and the manifest.

The inputs (version, package list with the candidate versions the build machine's apt sources
offer, the apt sources themselves and every build file) have one digest. A build whose digest and
artifacts match the manifest beside them is current and is skipped; anything else builds again.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError

MANIFEST = 'manifest.json'
# Fixed timestamps in every artifact, so that the same inputs give the same bytes where the tools allow.
SOURCE_DATE_EPOCH = '1735689600'

IMAGE_ARGSPEC = dict(
    dest=dict(type='path', required=True),
    files=dict(type='path', required=True),
    version=dict(type='str', default='0.1.0'),
    packages=dict(type='list', elements='str'),
    extra_packages=dict(type='list', elements='str', default=[]),
    apt_sources=dict(type='list', elements='path'),
    iso=dict(type='bool', default=True),
    force=dict(type='bool', default=False),
    work_dir=dict(type='path'),
)

# Artifacts, by the name they have in dest.
DISK, ISO, SQUASHFS, KERNEL, INITRD = 'firmvisor.img', 'firmvisor.iso', 'root.squashfs', 'vmlinuz', 'initrd.img'


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
        'packages': packages,
        'candidates': candidate_versions(packages, run),
        'apt_sources': sources,
        'apt_sources_sha256': source_digest.hexdigest(),
        'files_sha256': tree_digest(files, skip=lambda rel: rel.startswith('dev-')),
    }
    result['digest'] = hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()
    return result


def artifact_names(iso: bool) -> List[str]:
    return [DISK, SQUASHFS, KERNEL, INITRD] + ([ISO] if iso else [])


def fingerprint(path: str) -> Dict[str, int]:
    st = os.stat(path)
    return {'size': st.st_size, 'mtime_ns': st.st_mtime_ns}


def read_manifest(dest: str) -> Optional[Dict[str, Any]]:
    try:
        with open(os.path.join(dest, MANIFEST)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


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


class Builder:
    """Runs the build scripts one step at a time, each logged to ``dest/build.log``."""

    def __init__(self, params: Dict[str, Any], wanted: Dict[str, Any]) -> None:
        self.params = params
        self.wanted = wanted
        self.dest = params['dest']
        self.files = params['files']
        self.work = params['work_dir'] or os.path.join(self.dest, '.work')
        self.log_path = os.path.join(self.dest, 'build.log')
        self.steps: List[Dict[str, Any]] = []

    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update({
            'SOURCE_DATE_EPOCH': SOURCE_DATE_EPOCH,
            'FV_VERSION': self.params['version'],
            'FV_APT_SOURCES': ' '.join(self.wanted['apt_sources']),
            'FV_PACKAGES': ' '.join(self.wanted['packages']),
        })
        return env

    def run(self, name: str, argv: List[str]) -> None:
        started = time.monotonic()
        with open(self.log_path, 'a') as log:
            log.write('\n==== %s: %s\n' % (name, ' '.join(argv)))
            log.flush()
            proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=self.work)
        seconds = round(time.monotonic() - started, 1)
        self.steps.append({'step': name, 'seconds': seconds})
        if proc.returncode != 0:
            raise FvError('image build step %r failed (exit %d); the last lines of %s:\n%s'
                          % (name, proc.returncode, self.log_path, _tail(self.log_path, 25)))

    def build(self) -> Dict[str, Any]:
        os.makedirs(self.dest, exist_ok=True)
        if os.path.isdir(self.work):
            shutil.rmtree(self.work)
        os.makedirs(self.work)
        with open(self.log_path, 'w') as log:
            log.write('firmvisor image %s build\n' % self.params['version'])
        started = time.monotonic()
        files, work = self.files, self.work
        rootfs, boot = os.path.join(work, 'rootfs'), os.path.join(work, 'boot')
        pieces = {name: os.path.join(work, name) for name in (SQUASHFS, KERNEL, INITRD, DISK, ISO)}
        self.run('root filesystem', [os.path.join(files, 'build-rootfs.sh'), rootfs])
        self.run('initramfs', [os.path.join(files, 'build-initramfs.sh'), rootfs, pieces[INITRD]])
        self.run('squashfs', [os.path.join(files, 'build-rootfs.sh'), 'squash', rootfs, pieces[SQUASHFS]])
        self.run('kernel', ['sh', '-c', 'cp -L "$1"/boot/vmlinuz-* "$2"', 'copy', rootfs, pieces[KERNEL]])
        self.run('boot loaders', [os.path.join(files, 'build-boot.sh'), boot])
        self.run('disk image', ['python3', os.path.join(files, 'assemble.py'), 'disk', '--out', pieces[DISK],
                                '--core', os.path.join(boot, 'core.img'), '--boot-img', os.path.join(boot, 'boot.img'),
                                '--efi', os.path.join(boot, 'BOOTX64.EFI'),
                                '--grub-cfg', os.path.join(files, 'grub', 'grub.cfg'),
                                '--kernel', pieces[KERNEL], '--initrd', pieces[INITRD],
                                '--slot-a', pieces[SQUASHFS], '--version', self.params['version']])
        if self.params['iso']:
            self.run('iso', [os.path.join(files, 'build-iso.sh'), pieces[ISO], work])
        packages = self._packages(rootfs)
        artifacts = {}
        for name in artifact_names(self.params['iso']):
            target = os.path.join(self.dest, name)
            os.replace(pieces[name], target)
            artifacts[name] = dict(fingerprint(target), sha256=sha256_file(target))
        shutil.rmtree(work, ignore_errors=True)
        manifest = {
            'name': 'firmvisor', 'version': self.params['version'], 'inputs': self.wanted,
            'packages': packages, 'artifacts': artifacts, 'steps': self.steps,
            'build_seconds': round(time.monotonic() - started, 1),
        }
        _write_json(os.path.join(self.dest, MANIFEST), manifest)
        return manifest

    def _packages(self, rootfs: str) -> Dict[str, str]:
        proc = subprocess.run(['dpkg-query', '--admindir', os.path.join(rootfs, 'var', 'lib', 'dpkg'), '-W',
                               '-f', '${Package}\t${Version}\n'], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise FvError('reading the package list of the root filesystem failed: %s' % proc.stderr.strip())
        return dict(line.split('\t', 1) for line in sorted(proc.stdout.splitlines()) if '\t' in line)


def ensure_image(params: Dict[str, Any], check_mode: bool) -> Dict[str, Any]:
    for script in ('build-rootfs.sh', 'build-initramfs.sh', 'build-boot.sh', 'assemble.py', 'packages.list'):
        if not os.path.exists(os.path.join(params['files'], script)):
            raise FvError('files: %s has no %s' % (params['files'], script))
    wanted = inputs(params)
    current, reason = is_current(params['dest'], wanted)
    if current and not params['force']:
        return {'changed': False, 'reason': reason, 'manifest': read_manifest(params['dest'])}
    reason = 'forced' if current else reason
    if check_mode:
        return {'changed': True, 'reason': reason, 'manifest': {'inputs': wanted}}
    manifest = Builder(params, wanted).build()
    return {'changed': True, 'reason': reason, 'manifest': manifest}


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
