# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image benchmark: the firmvisor image beside a plain Debian root with the same packages.

Run with the project's python (``.venv/bin/python tests/bench/image_bench.py``, as root);
``tests/bench/run.sh`` runs it after the VM bench unless ``BENCH_IMAGE=0``. In one run it measures

* firmvisor: a cold build (``firmvisor.hypervisor.image_build`` with ``force: true`` through
  ``ansible``), the cached rebuild (the same call again: must report ``changed=false``; ``ansible``
  wall time and the module code's own time, ``ensure_image`` called in-process), the sizes (the
  compressed slot ``root.squashfs``, ``firmvisor.img`` apparent and allocated, ``firmvisor.iso``)
  and its boots from QEMU start to the console line ``firmvisor ready``: first boots (each on a
  fresh qcow2 overlay of ``firmvisor.img``: the first-boot work) and warm boots (the last overlay
  again), plus one boot through its own GRUB;
* plain Debian: the same package list (plus ``initramfs-tools``) by mmdebstrap through the same
  apt sources, Debian's own initramfs, an ext4 root on a GPT disk (``mkfs.ext4 -d``, no loop
  mounts), no firmvisor overlay and no stripping: cold build time, sizes (and a squashfs of its
  tree with firmvisor's squashfs settings, for a like-for-like compressed figure), the same first
  and warm boots to the console line ``plain ready``;
* baselines, for ratios on this noisy shared machine: a fixed CPU-bound task (mksquashfs of
  ``/usr/lib/python3.11`` with zstd level 19) for the build figures, and the tiny test
  guest booted under TCG to ``firmvisor-guest bench booted`` for the boot figures, each before and
  after the rest.

Both systems boot the same way:
``qemu-system-x86_64 -accel tcg -cpu qemu64,svm=off,vmx=off -m 2048 -smp 2 -nographic`` (the CPU
without SVM/VMX, as the qemu driver's TCG servers), SeaBIOS, direct kernel boot
(``-kernel/-initrd/-append``: the bootloader is kept out of the comparison), the disk as a virtio
drive, the FVSEED seed ISO as a second drive, QEMU user
networking with ``restrict=on`` (nothing leaves the machine), the serial console to a file polled
against a deadline. A clean power-off (ACPI, through QMP) separates the two boots.

Writes the section between ``<!-- BEGIN IMAGE BENCH -->`` and ``<!-- END IMAGE BENCH -->`` of
docs/performance.md (added at the end when missing; the rest of the file is left alone). QEMU and
every child are killed and the scratch directory removed in a ``finally``, whatever happens; the
firmvisor build in ``--dest`` stays (it is the cache the next run's rebuild finds).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from bench import replace_section

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FILES = os.path.join(ROOT, 'image')
COLLECTIONS = os.path.join(ROOT, '.collections')
LOGS = os.path.join(ROOT, '.cache', 'bench', 'image')

BEGIN = '<!-- BEGIN IMAGE BENCH -->'
END = '<!-- END IMAGE BENCH -->'

TARGET_SLOT_BYTES = 250 * 10 ** 6
TARGET_READY_SECONDS = 60.0
TARGET_CACHED_SECONDS = 5.0
TARGET_BOOT_RATIO = 0.75   # firmvisor / plain Debian, power-on to ready, first and warm boots

GUEST_DIR = '/var/cache/firmvisor/guest'
CPU_TASK_TREE = '/usr/lib/python3.11'
# The ratio basis is a fixed task (level 19, whatever the image uses); the plain root's squashfs uses
# the image's own settings (fv_squash_opts).
CPU_TASK_OPTS = ['-comp', 'zstd', '-Xcompression-level', '19', '-b', '131072']
# The CPU without SVM/VMX, as the qemu driver gives a TCG server: a kvm_amd on QEMU's emulated SVM has
# locked up a booting server's CPU in libvirt's capability probe.
QEMU = ['qemu-system-x86_64', '-accel', 'tcg', '-cpu', 'qemu64,svm=off,vmx=off', '-m', '2048', '-smp', '2',
        '-nographic', '-monitor', 'none']
BOOT_KINDS = ('first', 'warm')  # results[system]['first_boots'], ['warm_boots']
NIC = ['-netdev', 'user,id=mgmt,restrict=on', '-device', 'virtio-net-pci,netdev=mgmt,addr=0x10']
# Both as their boot loaders would have them: firmvisor's grub.cfg and Debian's default GRUB_CMDLINE (quiet).
FV_APPEND = 'fv.slot=A console=ttyS0,115200 panic=10 quiet cryptomgr.notests audit=0'
PLAIN_PARTLABEL = 'fvbenchroot'
PLAIN_APPEND = 'root=PARTLABEL=%s ro console=ttyS0,115200 quiet' % PLAIN_PARTLABEL
LINUX_GUID = '0FC63DAF-8483-4772-8E79-3D69D8477DE4'
MIB = 1 << 20

FV_READY = re.compile(rb'(?m)^firmvisor ready\r?$')
PLAIN_READY = re.compile(rb'(?m)^plain ready\r?$')
GUEST_READY = re.compile(rb'firmvisor-guest bench booted')
# Console milestones of a boot (the first time each is seen, in wall time from QEMU's start).
MILESTONES = (
    ('kernel', re.compile(rb'Linux version \d')),
    ('init', re.compile(rb'Run /init as init process')),
    ('systemd', re.compile(rb'systemd\[1\]: systemd \d+\S* running')),
)

PLAIN_READY_UNIT = '''[Unit]
Description=plain ready (the image bench's equivalent of firmvisor-ready)
After=libvirtd.service
Wants=libvirtd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'until virsh -c qemu:///system version >/dev/null 2>&1; do sleep 1; done; printf "\\nplain ready\\n" >/dev/ttyS0'

[Install]
WantedBy=multi-user.target
'''
PLAIN_NETWORK = '''[Match]
Name=en*

[Network]
DHCP=yes
'''


class BenchError(Exception):
    """The bench cannot go on: a step failed, or a result is wrong."""


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that the cleanups run."""


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise Terminated()


def log(message: str) -> None:
    print('image-bench %s: %s' % (time.strftime('%H:%M:%S'), message), flush=True)


# ---- processes -----------------------------------------------------------------------------------

CHILDREN: List[subprocess.Popen] = []


def spawn(argv: List[str], logfile: str, env: Optional[Dict[str, str]] = None, **kwargs: Any) -> subprocess.Popen:
    """A child in its own process group (so that the cleanup ends it and everything it started)."""
    handle = open(logfile, 'ab')
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, **kwargs)
    finally:
        handle.close()
    CHILDREN.append(proc)
    return proc


def end(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Terminate a child's process group, then kill it."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    if proc in CHILDREN:
        CHILDREN.remove(proc)


def run(argv: List[str], logfile: str, env: Optional[Dict[str, str]] = None, timeout: float = 7200,
        **kwargs: Any) -> float:
    """Run to completion (logged), return its wall time; fail with the log's end on a non-zero exit."""
    with open(logfile, 'ab') as handle:
        handle.write(('\n==== %s\n' % ' '.join(argv)).encode())
    started = time.monotonic()
    proc = spawn(argv, logfile, env=env, **kwargs)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        end(proc)
        raise BenchError('%s did not finish within %d s (log: %s)' % (argv[0], timeout, logfile))
    seconds = time.monotonic() - started
    if proc in CHILDREN:
        CHILDREN.remove(proc)
    if rc != 0:
        raise BenchError('%s failed (exit %d); the end of %s:\n%s' % (' '.join(argv[:3]), rc, logfile, tail(logfile)))
    return seconds


def output(argv: List[str], **kwargs: Any) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs).stdout.strip()
    except OSError:
        return ''


def tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, 'rb') as handle:
            data = handle.read()[-65536:]
    except OSError:
        return '(no log)'
    text = data.decode('utf-8', 'replace').replace('\r', '')
    return '\n'.join(text.splitlines()[-lines:])


# ---- sizes ---------------------------------------------------------------------------------------

def apparent(path: str) -> int:
    return os.stat(path).st_size


def allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


def tree_bytes(path: str) -> int:
    """Allocated bytes of a tree, as ``du -s`` counts them."""
    out = output(['du', '-s', '-B1', '-x', path])
    return int(out.split()[0]) if out else 0


def fv_tree_bytes(dest: str) -> Optional[int]:
    """The firmvisor root tree before squashing, as build/rootfs.sh logged it (``du -sm``)."""
    try:
        with open(os.path.join(dest, 'build.log'), errors='replace') as handle:
            found = re.findall(r'^image: root filesystem: (\d+) MiB', handle.read(), re.M)
    except OSError:
        return None
    return int(found[-1]) * MIB if found else None


def fv_squash_opts(files: str) -> List[str]:
    """firmvisor's mksquashfs compression options (``-comp`` up to ``-b N``), as build/squashfs.sh has them."""
    with open(os.path.join(files, 'build', 'squashfs.sh')) as handle:
        script = handle.read()
    found = re.search(r'-comp [^\\\n]*?-b \d+', script)
    if not found:
        raise BenchError('cannot read the squashfs options of build/squashfs.sh')
    return found.group(0).split()


def mb(size: Optional[int]) -> str:
    if size is None:
        return '—'
    return '%.1f MB (%.1f MiB)' % (size / 1e6, size / MIB)


# ---- QEMU ----------------------------------------------------------------------------------------

def qmp_powerdown(sock_path: str) -> bool:
    """ACPI power button through QMP; False when QMP does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(sock_path)
            reader = sock.makefile('rb')
            reader.readline()  # greeting
            for command in ('qmp_capabilities', 'system_powerdown'):
                sock.sendall(json.dumps({'execute': command}).encode() + b'\n')
                while True:
                    reply = json.loads(reader.readline() or b'{}')
                    if 'return' in reply or 'error' in reply or not reply:
                        break
            return True
    except (OSError, ValueError):
        return False


def boot(name: str, work: str, args: List[str], ready: re.Pattern, timeout: float,
         powerdown: bool = True) -> Dict[str, Any]:
    """Start QEMU, wait for ``ready`` on the serial console; then power off (ACPI) or kill it.

    Returns the seconds from QEMU's start to the line, and how the machine went down.
    """
    console = os.path.join(work, name + '.console.log')
    qmp = os.path.join(work, name + '.qmp')
    qlog = os.path.join(work, name + '.qemu.log')
    for path in (console, qmp):
        if os.path.exists(path):
            os.unlink(path)
    open(console, 'wb').close()
    argv = QEMU + args + ['-serial', 'file:' + console, '-qmp', 'unix:%s,server=on,wait=off' % qmp]
    with open(qlog, 'w') as handle:
        handle.write(' '.join(argv) + '\n')
    started = time.monotonic()
    proc = spawn(argv, qlog)
    deadline = started + timeout
    seconds = None
    seen: Dict[str, float] = {}
    offset = 0
    buffer = b''
    try:
        while True:
            with open(console, 'rb') as handle:
                handle.seek(offset)
                chunk = handle.read()
            if chunk:
                # keep the last partial line: a match needs the whole line
                buffer = buffer[-4096:] + chunk
                offset += len(chunk)
                now = time.monotonic() - started
                for key, pattern in MILESTONES:
                    if key not in seen and pattern.search(buffer):
                        seen[key] = now
                if ready.search(buffer):
                    seconds = time.monotonic() - started
                    break
            if proc.poll() is not None:
                raise BenchError('%s: QEMU exited (%s) before the ready line; qemu log:\n%s\nconsole end:\n%s'
                                 % (name, proc.returncode, tail(qlog, 10), tail(console)))
            if time.monotonic() > deadline:
                raise BenchError('%s: no ready line within %d s; the console\'s end:\n%s'
                                 % (name, timeout, tail(console)))
            time.sleep(0.05)
        down = 'killed'
        down_seconds = None
        if powerdown:
            t0 = time.monotonic()
            if qmp_powerdown(qmp):
                try:
                    proc.wait(240)
                    down = 'ACPI power-off'
                    down_seconds = time.monotonic() - t0
                except subprocess.TimeoutExpired:
                    down = 'killed (no power-off within 240 s)'
            else:
                down = 'killed (QMP did not answer)'
    finally:
        end(proc)
        shutil.copy(console, os.path.join(LOGS, name + '.console.log'))
    return {'seconds': seconds, 'down': down, 'down_seconds': down_seconds, 'milestones': seen}


def wait_console(console: str, pattern: re.Pattern, count: int, timeout: float, proc: subprocess.Popen) -> float:
    """time.monotonic() when ``pattern`` has shown ``count`` times on the console file."""
    deadline = time.monotonic() + timeout
    while True:
        with open(console, 'rb') as handle:
            if len(pattern.findall(handle.read())) >= count:
                return time.monotonic()
        if proc.poll() is not None:
            raise BenchError('QEMU exited (%s) waiting for %s; console end:\n%s'
                             % (proc.returncode, pattern.pattern, tail(console)))
        if time.monotonic() > deadline:
            raise BenchError('no %s #%d within %d s; console end:\n%s' % (pattern.pattern, count, timeout, tail(console)))
        time.sleep(0.05)


# ---- the bench -----------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dest = args.dest
        self.scratch = args.scratch
        # The build files: a snapshot of the committed image/ tree (snapshot_files), so that
        # edits others make in the working tree during the run change neither build nor digest.
        self.files = FILES
        self.commit = output(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'])
        self.results: Dict[str, Any] = {'baseline_cpu': [], 'baseline_boot': [], 'firmvisor': {}, 'plain': {}}
        self.bin = os.path.dirname(sys.executable)
        self.ansible = os.path.join(self.bin, 'ansible')
        self.env = dict(os.environ)
        self.env.update({
            'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'),
            'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
            'ANSIBLE_HOME': os.path.join(ROOT, '.cache', 'ansible'),
            'ANSIBLE_LOCAL_TEMP': os.path.join(ROOT, '.cache', 'ansible', 'tmp'),
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_DEPRECATION_WARNINGS': '0',
            'PATH': self.bin + os.pathsep + os.environ.get('PATH', ''),
        })
        self.logfile = os.path.join(LOGS, 'bench.log')

    # -- checks --
    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise BenchError('run as root (mmdebstrap --mode=root, chroot)')
        for tool in ('mmdebstrap', 'mksquashfs', 'mkfs.ext4', 'sfdisk', 'genisoimage', 'qemu-system-x86_64',
                     'qemu-img', 'ssh-keygen', 'du', 'chroot'):
            if shutil.which(tool) is None:
                raise BenchError('%s is missing' % tool)
        if not os.access(self.ansible, os.X_OK):
            raise BenchError('%s is missing: run with the project\'s python (.venv/bin/python; make setup)'
                             % self.ansible)
        for piece in ('vmlinuz', 'initrd.img'):
            if not os.path.isfile(os.path.join(GUEST_DIR, piece)):
                raise BenchError('%s/%s is missing (make guest)' % (GUEST_DIR, piece))
        if os.path.realpath(self.dest).startswith('/var/tmp/fvimg-'):
            raise BenchError('--dest %s belongs to another worker\'s build' % self.dest)

    def snapshot_files(self) -> None:
        if self.args.working_tree:
            return
        folder = os.path.join(self.scratch, 'src')
        os.makedirs(folder)
        archive = subprocess.run(['git', '-C', ROOT, 'archive', self.commit, 'image'],
                                 capture_output=True, check=False)
        if archive.returncode != 0:
            raise BenchError('git archive failed: %s' % archive.stderr.decode(errors='replace'))
        subprocess.run(['tar', '-x', '-C', folder], input=archive.stdout, check=True)
        self.files = os.path.join(folder, 'image')
        log('build files: image/ of commit %s (a snapshot in %s)' % (self.commit, self.files))

    # -- baselines --
    def baseline_cpu(self) -> None:
        out = os.path.join(self.scratch, 'baseline.squashfs')
        log('baseline: mksquashfs of %s (zstd 19, 128 KiB blocks)' % CPU_TASK_TREE)
        seconds = run(['mksquashfs', CPU_TASK_TREE, out, '-noappend', '-quiet', '-no-progress'] + CPU_TASK_OPTS,
                      self.logfile)
        os.unlink(out)
        self.results['baseline_cpu'].append(seconds)
        log('baseline: CPU task %.1f s' % seconds)

    def baseline_boot(self) -> None:
        log('baseline: the tiny guest under TCG to "firmvisor-guest bench booted"')
        res = boot('guest-%d' % len(self.results['baseline_boot']), self.scratch,
                   ['-kernel', os.path.join(GUEST_DIR, 'vmlinuz'), '-initrd', os.path.join(GUEST_DIR, 'initrd.img'),
                    '-append', 'fv.name=bench console=ttyS0', '-net', 'none'],
                   GUEST_READY, 300, powerdown=False)
        self.results['baseline_boot'].append(res['seconds'])
        log('baseline: guest booted in %.1f s' % res['seconds'])

    # -- firmvisor --
    def image_build(self, force: bool) -> Tuple[float, Dict[str, Any]]:
        params = {'dest': self.dest, 'files': self.files, 'force': force}
        argv = [self.ansible, 'localhost', '-m', 'firmvisor.hypervisor.image_build', '-a', json.dumps(params)]
        out_path = os.path.join(LOGS, 'ansible-%s.out' % ('cold' if force else 'cached'))
        if os.path.exists(out_path):
            os.unlink(out_path)
        watcher = None
        stop = threading.Event()
        if force:
            watcher = threading.Thread(target=self._watch_build, args=(stop,), daemon=True)
            watcher.start()
        try:
            seconds = run(argv, out_path, env=self.env, cwd=ROOT)
        finally:
            stop.set()
            if watcher:
                watcher.join(5)
        with open(out_path, errors='replace') as handle:
            text = handle.read()
        match = re.search(r'^localhost \| (\w+) => (\{.*?^\})', text, re.M | re.S)
        if not match:
            raise BenchError('cannot read the result of image_build from %s:\n%s' % (out_path, tail(out_path)))
        result = json.loads(match.group(2))
        if match.group(1) not in ('SUCCESS', 'CHANGED'):
            raise BenchError('image_build %s: %s' % (match.group(1), result.get('msg', text[-2000:])))
        return seconds, result

    def _watch_build(self, stop: threading.Event) -> None:
        """Progress of the cold build: each new step of build.log, as it starts."""
        seen = None
        path = os.path.join(self.dest, 'build.log')
        while not stop.wait(5):
            try:
                with open(path, errors='replace') as handle:
                    steps = [line[5:].split(':', 1)[0] for line in handle if line.startswith('==== ')]
            except OSError:
                continue
            if steps and steps[-1] != seen:
                seen = steps[-1]
                log('firmvisor: build step "%s"' % seen)

    def own_time(self) -> Tuple[float, Dict[str, Any]]:
        """The module code's own time for the cached call: ensure_image in-process (check mode, so
        that it can never start a build here), without Ansible's start-up and transfer."""
        if COLLECTIONS not in sys.path:
            sys.path.insert(0, COLLECTIONS)
        from ansible_collections.firmvisor.hypervisor.plugins.module_utils.image.build import IMAGE_ARGSPEC, ensure_image
        params = {key: spec.get('default') for key, spec in IMAGE_ARGSPEC.items()}
        params.update({'dest': self.dest, 'files': self.files, 'force': False})
        started = time.monotonic()
        result = ensure_image(params, check_mode=True)
        return time.monotonic() - started, result

    def firmvisor_build(self) -> None:
        fv = self.results['firmvisor']
        os.makedirs(self.dest, exist_ok=True)
        log('firmvisor: cold build (image_build force=true) into %s: several minutes' % self.dest)
        seconds, result = self.image_build(force=True)
        if not result.get('changed'):
            raise BenchError('the forced build reported changed=false')
        manifest = result['manifest']
        fv['cold_wall'] = seconds
        fv['cold_module'] = manifest.get('build_seconds')
        fv['steps'] = manifest.get('steps', [])
        fv['packages'] = len(manifest.get('packages', {}))
        log('firmvisor: cold build %.1f s (module %.1f s)' % (seconds, fv['cold_module'] or 0))
        fv['cached_wall'], fv['cached_own'] = [], []
        for _unused in range(self.args.cached_runs):
            log('firmvisor: cached rebuild (the same call again)')
            seconds, result = self.image_build(force=False)
            if result.get('changed'):
                raise BenchError('the cached rebuild reported changed=true (reason: %s)' % result.get('reason'))
            own, own_result = self.own_time()
            if own_result.get('changed'):
                raise BenchError('ensure_image in-process says the image is not current (%s)'
                                 % own_result.get('reason'))
            fv['cached_wall'].append(seconds)
            fv['cached_own'].append(own)
            log('firmvisor: cached rebuild %.2f s (ansible), %.2f s (module code)' % (seconds, own))
        fv['tree'] = fv_tree_bytes(self.dest)
        fv['sizes'] = {
            'slot': apparent(os.path.join(self.dest, 'root.squashfs')),
            'disk': apparent(os.path.join(self.dest, 'firmvisor.img')),
            'disk_allocated': allocated(os.path.join(self.dest, 'firmvisor.img')),
            'iso': apparent(os.path.join(self.dest, 'firmvisor.iso')),
            'initrd': apparent(os.path.join(self.dest, 'initrd.img')),
            'kernel': apparent(os.path.join(self.dest, 'vmlinuz')),
        }

    def seed(self) -> str:
        folder = os.path.join(self.scratch, 'seed')
        os.makedirs(folder, exist_ok=True)
        key = os.path.join(self.scratch, 'key')
        if not os.path.exists(key):
            run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'fvbench', '-f', key], self.logfile)
        with open(key + '.pub') as handle:
            pub = handle.read().strip()
        with open(os.path.join(folder, 'seed.json'), 'w') as handle:
            json.dump({'hostname': 'fvbench', 'authorized_keys': [pub]}, handle)
        iso = os.path.join(self.scratch, 'seed.iso')
        run(['genisoimage', '-quiet', '-V', 'FVSEED', '-J', '-r', '-o', iso, folder], self.logfile)
        return iso

    def overlay(self, base: str, name: str) -> str:
        path = os.path.join(self.scratch, name)
        if os.path.exists(path):
            os.unlink(path)
        run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, path], self.logfile)
        return path

    def boot_all(self, seed: str) -> None:
        """The first boots (each on a fresh overlay) and then the warm boots (on the last one's overlay)
        of both systems, interleaved (firmvisor, plain, firmvisor, plain, ...) so that a change in the
        machine's load hits both alike; then firmvisor once more through GRUB."""
        fv, plain = self.results['firmvisor'], self.results['plain']
        bases = {'firmvisor': os.path.join(self.dest, 'firmvisor.img'), 'plain': plain['disk_path']}
        systems = {
            'firmvisor': (os.path.join(self.dest, 'vmlinuz'), os.path.join(self.dest, 'initrd.img'),
                          FV_APPEND, FV_READY),
            'plain': (plain['kernel_path'], plain['initrd_path'], PLAIN_APPEND, PLAIN_READY),
        }

        def drives(disk: str) -> List[str]:
            # the seed on a CD-ROM drive: removable media, where firmvisor takes a seed from
            return ['-drive', 'file=%s,if=virtio,format=qcow2' % disk,
                    '-drive', 'file=%s,media=cdrom,format=raw,readonly=on' % seed] + NIC

        firsts = self.args.first_boots
        for who in systems:
            self.results[who].update({kind + '_boots': [] for kind in BOOT_KINDS})
        disks = {}
        for number in range(1, 1 + firsts + self.args.warm_boots):
            first = number <= firsts
            kind = 'first boot %d of %d' % (number, firsts) if first else 'warm boot %d' % (number - firsts)
            for who, (kernel, initrd, append, ready) in systems.items():
                if first:  # a fresh overlay: the disk as it was written, never booted
                    disks[who] = self.overlay(bases[who], '%s.qcow2' % who)
                log('%s: %s (direct kernel boot) to the ready line' % (who, kind))
                res = boot('%s-boot%d' % (who, number), self.scratch,
                           ['-kernel', kernel, '-initrd', initrd, '-append', append] + drives(disks[who]),
                           ready, self.args.boot_timeout)
                self.results[who]['first_boots' if first else 'warm_boots'].append(res)
                log('%s: %s ready after %.1f s; %s%s'
                    % (who, kind, res['seconds'], res['down'],
                       ' in %.1f s' % res['down_seconds'] if res['down_seconds'] else ''))
        if not self.args.no_grub_boot:
            log('firmvisor: a boot through its own GRUB (SeaBIOS, the disk) to "firmvisor ready"')
            res = boot('firmvisor-grub', self.scratch, drives(disks['firmvisor']), FV_READY,
                       self.args.boot_timeout, powerdown=False)
            fv['grub_boot'] = res
            log('firmvisor: GRUB boot ready after %.1f s' % res['seconds'])

    # -- recovery --
    def faults(self, seed: str) -> None:
        """firmvisor's recovery figures, on the real firmware path (SeaBIOS, GRUB, the i6300esb watchdog):
        slot B written from the ISO and put on trial with one try, a health check that freezes systemd on
        B (a hang: PID 1 stops petting the watchdog), then the time from the hang to the watchdog's reset
        (GRUB's line saying B failed its trial) and to A answering ready again; and on A, how long after a
        change (a domain defined) the state partition holds it: what a power cut can lose."""
        fv = self.results['firmvisor']
        key = os.path.join(self.scratch, 'key')
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        disk = self.overlay(os.path.join(self.dest, 'firmvisor.img'), 'faults.qcow2')
        console = os.path.join(self.scratch, 'faults.console.log')
        qlog = os.path.join(self.scratch, 'faults.qemu.log')
        open(console, 'wb').close()
        argv = QEMU + ['-drive', 'file=%s,if=virtio,format=qcow2' % disk,
                       '-drive', 'file=%s,media=cdrom,format=raw,readonly=on' % seed,
                       '-drive', 'file=%s,media=cdrom,format=raw,readonly=on' % os.path.join(self.dest, 'firmvisor.iso'),
                       '-netdev', 'user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22' % port,
                       '-device', 'virtio-net-pci,netdev=mgmt,addr=0x10', '-device', 'i6300esb',
                       '-serial', 'file:' + console]
        ssh = ['ssh', '-p', str(port), '-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
               '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR', 'root@127.0.0.1']
        log('faults: boot through GRUB with an i6300esb watchdog, write slot B from the ISO')
        proc = spawn(argv, qlog)
        try:
            wait_console(console, FV_READY, 1, self.args.boot_timeout, proc)
            run(ssh + ['set -e; mkdir -p /run/fvb; mount -o ro /dev/disk/by-label/FVISO /run/fvb; '
                       'fvslot write --squashfs /run/fvb/live/root.squashfs --kernel /run/fvb/boot/vmlinuz '
                       '--initrd /run/fvb/boot/initrd.img --version bench-b; umount /run/fvb; '
                       'printf "#!/bin/sh\\nif [ \\"\\$(cat /run/firmvisor/slot)\\" = B ]; then '
                       'echo fvemb-bench: slot B hangs now >/dev/console; kill -SEGV 1; sleep 1000; fi\\n" '
                       '> /etc/firmvisor/health.d/50-bench-hang; chmod 0755 /etc/firmvisor/health.d/50-bench-hang; '
                       'until fv-state has etc/firmvisor/health.d/50-bench-hang; do sleep 0.5; done; '
                       'fvslot boot-once B --tries 1; (sleep 1; systemctl reboot) >/dev/null 2>&1 &'],
                self.logfile)
            log('faults: slot B on trial hangs; waiting for the watchdog and slot A')
            hung = wait_console(console, re.compile(rb'fvemb-bench: slot B hangs now'), 1, self.args.boot_timeout, proc)
            reset = wait_console(console, re.compile(rb'slot B failed its trial'), 1, self.args.boot_timeout, proc)
            back = wait_console(console, FV_READY, 2, self.args.boot_timeout, proc)
            fv['hang'] = {'to_reset': reset - hung, 'to_ready': back - hung, 'boot': back - reset}
            log('faults: hang -> watchdog reset %.1f s, -> slot A ready %.1f s' % (reset - hung, back - hung))
            windows = []
            for number in range(self.args.save_samples):
                name = 'fvemb-bench-%d' % number
                state = '/var/lib/firmvisor/state/slots/A/config.tar'
                script = ('set -e; printf "<domain type=\'qemu\'><name>%s</name><memory unit=\'MiB\'>64</memory>'
                          '<os><type arch=\'x86_64\' machine=\'pc\'>hvm</type></os></domain>" > /tmp/%s.xml; before=$(stat -c %%i %s); '
                          't0=$(date +%%s.%%N); virsh -q -c qemu:///system define /tmp/%s.xml >/dev/null; '
                          'while [ "$(stat -c %%i %s)" = "$before" ]; do :; done; t1=$(date +%%s.%%N); '
                          'fv-state has etc/libvirt/qemu/%s.xml; echo "$t0 $t1"'
                          % (name, name, state, name, state, name))
                out = subprocess.run(ssh + [script], capture_output=True, text=True, timeout=120, check=False)
                if out.returncode != 0:
                    raise BenchError('faults: the save-window sample failed: %s' % (out.stderr or out.stdout))
                t0, t1 = (float(v) for v in out.stdout.split()[-2:])
                windows.append(t1 - t0)
            fv['save_window'] = windows
            log('faults: change -> on the state partition: %s s' % ', '.join('%.2f' % w for w in windows))
        finally:
            end(proc)
            shutil.copy(console, os.path.join(LOGS, 'faults.console.log'))

    # -- plain Debian --
    def plain_build(self) -> None:
        if COLLECTIONS not in sys.path:
            sys.path.insert(0, COLLECTIONS)
        from ansible_collections.firmvisor.hypervisor.plugins.module_utils.image.build import (
            default_apt_sources, read_package_list)
        plain = self.results['plain']
        folder = os.path.join(self.scratch, 'plain')
        rootfs = os.path.join(folder, 'rootfs')
        os.makedirs(folder, exist_ok=True)
        packages = sorted(set(read_package_list(os.path.join(self.files, 'packages.list'))) | {'initramfs-tools'})
        sources = default_apt_sources()
        plain['packages_requested'] = len(packages)
        plain['apt_sources'] = sources
        # mmdebstrap's defaults otherwise: no --hook-dir (any would replace its default
        # maybe-merged-usr hook), recommends not installed (its default, as firmvisor).
        argv = ['mmdebstrap', '--mode=root', '--variant=minbase', '--format=directory',
                '--include=' + ','.join(packages), 'bookworm', rootfs] + sources
        blog = os.path.join(LOGS, 'plain-build.log')
        open(blog, 'w').close()
        log('plain: cold build: mmdebstrap of the same packages + initramfs-tools (%s)' % ' '.join(sources))
        started = time.monotonic()
        steps = [{'step': 'mmdebstrap (with the kernel\'s initramfs-tools initrd)', 'seconds': run(argv, blog)}]
        kernels = sorted(glob.glob(os.path.join(rootfs, 'boot', 'vmlinuz-*')))
        if len(kernels) != 1:
            raise BenchError('plain: expected one kernel in %s/boot, found %s' % (rootfs, kernels))
        kver = os.path.basename(kernels[0])[len('vmlinuz-'):]
        initrd = os.path.join(rootfs, 'boot', 'initrd.img-' + kver)
        t0 = time.monotonic()
        if not os.path.isfile(initrd):
            log('plain: update-initramfs in the chroot')
            run(['chroot', rootfs, 'update-initramfs', '-c', '-k', kver], blog)
        with open(os.path.join(rootfs, 'etc', 'hostname'), 'w') as handle:
            handle.write('plain\n')
        with open(os.path.join(rootfs, 'etc', 'fstab'), 'w') as handle:
            handle.write('PARTLABEL=%s / ext4 errors=remount-ro 0 1\n' % PLAIN_PARTLABEL)
        with open(os.path.join(rootfs, 'etc', 'systemd', 'system', 'plain-ready.service'), 'w') as handle:
            handle.write(PLAIN_READY_UNIT)
        os.makedirs(os.path.join(rootfs, 'etc', 'systemd', 'network'), exist_ok=True)
        with open(os.path.join(rootfs, 'etc', 'systemd', 'network', '80-dhcp.network'), 'w') as handle:
            handle.write(PLAIN_NETWORK)
        run(['chroot', rootfs, 'systemctl', 'enable', 'plain-ready.service', 'serial-getty@ttyS0.service',
             'systemd-networkd.service'], blog)
        steps.append({'step': 'configuration (hostname, fstab, plain-ready, serial getty, DHCP)',
                      'seconds': time.monotonic() - t0})
        plain['tree'] = tree_bytes(rootfs)
        log('plain: disk: ext4 (mkfs.ext4 -d) on GPT')
        t0 = time.monotonic()
        fs_mib = int(plain['tree'] * 1.25 / MIB) + 256
        ext4 = os.path.join(folder, 'root.ext4')
        run(['mkfs.ext4', '-q', '-L', 'plainroot', '-d', rootfs, ext4, '%dM' % fs_mib], blog)
        disk = os.path.join(folder, 'plain.img')
        with open(disk, 'wb') as handle:
            handle.truncate((fs_mib + 2) * MIB)
        table = ('label: gpt\nunit: sectors\nstart=2048, size=%d, type=%s, name=%s\n'
                 % (fs_mib * 2048, LINUX_GUID, PLAIN_PARTLABEL))
        proc = subprocess.run(['sfdisk', '--quiet', disk], input=table, text=True, capture_output=True, check=False)
        if proc.returncode != 0:
            raise BenchError('plain: sfdisk failed: %s' % proc.stderr)
        run(['dd', 'if=' + ext4, 'of=' + disk, 'bs=1M', 'seek=1', 'conv=notrunc,sparse', 'status=none'], blog)
        os.unlink(ext4)
        steps.append({'step': 'disk (mkfs.ext4 -d, sfdisk, dd)', 'seconds': time.monotonic() - t0})
        plain['cold_wall'] = time.monotonic() - started
        plain['steps'] = steps
        plain['kernel_path'] = kernels[0]
        plain['initrd_path'] = initrd
        plain['disk_path'] = disk
        plain['packages'] = len(output(['dpkg-query', '--admindir', os.path.join(rootfs, 'var', 'lib', 'dpkg'),
                                        '-W', '-f', '${Package}\n']).split())
        log('plain: cold build %.1f s' % plain['cold_wall'])
        squash = os.path.join(folder, 'root.squashfs')
        opts = fv_squash_opts(self.files)
        plain['squash_opts'] = ' '.join(opts)
        log('plain: squashfs of the tree with firmvisor\'s settings, %s (size only, not build time)' % ' '.join(opts))
        excludes = os.path.join(folder, 'squash.exclude')
        with open(excludes, 'w') as handle:
            for name in ('proc', 'sys', 'dev', 'run', 'tmp'):
                handle.write('%s/*\n%s/.*\n' % (name, name))
        plain['squash_seconds'] = run(['mksquashfs', rootfs, squash, '-noappend', '-quiet', '-no-progress']
                                      + opts + ['-wildcards', '-ef', excludes], blog)
        plain['sizes'] = {
            'slot': apparent(squash),
            'disk': apparent(disk),
            'disk_allocated': allocated(disk),
            'iso': None,
            'initrd': apparent(initrd),
            'kernel': apparent(kernels[0]),
        }
        os.unlink(squash)

    # -- the run --
    def run(self) -> None:
        self.preflight()
        self.snapshot_files()
        self.results['machine'] = self.machine()
        self.baseline_cpu()
        self.baseline_boot()
        if self.args.reuse_firmvisor:
            self.firmvisor_reuse()
        else:
            self.firmvisor_build()
        self.plain_build()
        seed = self.seed()
        self.boot_all(seed)
        if not self.args.no_faults:
            self.faults(seed)
        self.baseline_boot()
        self.baseline_cpu()

    def firmvisor_reuse(self) -> None:
        """--reuse-firmvisor (bench development): the build in --dest as it is, its manifest's times."""
        fv = self.results['firmvisor']
        with open(os.path.join(self.dest, 'manifest.json')) as handle:
            manifest = json.load(handle)
        fv['cold_wall'] = None
        fv['cold_module'] = manifest.get('build_seconds')
        fv['steps'] = manifest.get('steps', [])
        fv['packages'] = len(manifest.get('packages', {}))
        fv['cached_wall'], fv['cached_own'] = [], []
        for _unused in range(self.args.cached_runs):
            seconds, result = self.image_build(force=False)
            if result.get('changed'):
                raise BenchError('the cached rebuild reported changed=true (reason: %s)' % result.get('reason'))
            fv['cached_wall'].append(seconds)
            fv['cached_own'].append(self.own_time()[0])
        fv['tree'] = fv_tree_bytes(self.dest)
        fv['sizes'] = {
            'slot': apparent(os.path.join(self.dest, 'root.squashfs')),
            'disk': apparent(os.path.join(self.dest, 'firmvisor.img')),
            'disk_allocated': allocated(os.path.join(self.dest, 'firmvisor.img')),
            'iso': apparent(os.path.join(self.dest, 'firmvisor.iso')),
            'initrd': apparent(os.path.join(self.dest, 'initrd.img')),
            'kernel': apparent(os.path.join(self.dest, 'vmlinuz')),
        }

    def machine(self) -> Dict[str, str]:
        cpu = mem = 'unknown'
        try:
            with open('/proc/cpuinfo') as handle:
                cpu = next((line.split(':', 1)[1].strip() for line in handle if line.startswith('model name')), cpu)
            with open('/proc/meminfo') as handle:
                kib = int(next(line.split()[1] for line in handle if line.startswith('MemTotal')))
                mem = '%.1f GiB' % (kib / 1024 / 1024)
        except (OSError, StopIteration, ValueError):
            pass
        try:
            with open('/etc/debian_version') as handle:
                debian = 'Debian ' + handle.read().strip()
        except OSError:
            debian = 'unknown'
        if self.files == FILES:
            dirty = output(['git', '-C', ROOT, 'status', '--porcelain', '--', 'image'])
            source = 'commit %s, image/ from the working tree%s' % (
                self.commit, ' (with uncommitted changes)' if dirty else '')
        else:
            source = 'commit %s (image/ exactly as committed)' % self.commit
        return {
            'firmvisor source': source,
            'host CPUs (nproc)': str(os.cpu_count()),
            'CPU model': cpu,
            'memory': mem,
            'kernel': '%s %s' % (platform.system(), platform.release()),
            'distribution': debian,
            'QEMU': output(['qemu-system-x86_64', '--version']).splitlines()[0] + ' (TCG), SeaBIOS',
            'mmdebstrap': output(['mmdebstrap', '--version']),
            'load average at start': ' '.join(open('/proc/loadavg').read().split()[:3]),
            'date': datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec='seconds'),
        }

    def cleanup(self) -> None:
        for proc in list(CHILDREN):
            end(proc)
        if self.args.keep_scratch:
            log('kept %s' % self.scratch)
        elif os.path.isdir(self.scratch):
            shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(os.path.join(self.dest, '.work'), ignore_errors=True)


# ---- the report ----------------------------------------------------------------------------------

def median(values: List[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def secs(value: Optional[float], digits: int = 1) -> str:
    return '—' if value is None else '%.*f s' % (digits, value)


def times(value: Optional[float], base: Optional[float]) -> str:
    return '' if value is None or not base else '%.2fx' % (value / base)


def ratio(a: Optional[float], b: Optional[float]) -> str:
    return '—' if a is None or not b else '%.2f' % (a / b)


def met(ok: Optional[bool]) -> str:
    return '' if ok is None else ('yes' if ok else '**no**')


def render(results: Dict[str, Any]) -> str:
    fv, plain = results['firmvisor'], results['plain']
    cpu_base = median(results['baseline_cpu'])
    boot_base = median(results['baseline_boot'])
    fs, ps = fv['sizes'], plain['sizes']
    cached_wall = median(fv['cached_wall'])
    cached_own = median(fv['cached_own'])
    seconds = {(who, kind): [b['seconds'] for b in results[who][kind + '_boots']]
               for who in ('firmvisor', 'plain') for kind in BOOT_KINDS}
    lines = [BEGIN, '', '## The image: firmvisor beside plain Debian', '',
             'Generated by `tests/bench/image_bench.py` (`make bench` runs it after the VM bench; '
             '`BENCH_IMAGE=0` skips it). Everything below was measured in one run.', '',
             '### Machine', '', '| | |', '|---|---|']
    lines += ['| %s | %s |' % (k, v) for k, v in results['machine'].items()]
    lines += [
        '', '### Baselines (ratio bases, same run)', '',
        '| basis | runs (start, end) | median |', '|---|---|---:|',
        '| CPU-bound task: `mksquashfs %s` (zstd 19, 128 KiB blocks) — basis of the build figures | %s | %s |'
        % (CPU_TASK_TREE, ', '.join('%.1f' % v for v in results['baseline_cpu']), secs(cpu_base)),
        '| tiny guest under TCG to `firmvisor-guest bench booted` — basis of the boot figures | %s | %s |'
        % (', '.join('%.1f' % v for v in results['baseline_boot']), secs(boot_base)),
        '', '### Results', '',
        '"x base" is the figure divided by its baseline above; "fv / plain" is firmvisor divided by plain Debian.',
        '', '| figure | firmvisor | x base | plain Debian | x base | fv / plain | target | met |',
        '|---|---:|---:|---:|---:|---:|---|---|',
    ]

    def row(label: str, a: str, ab: str, b: str, bb: str, r: str, target: str = '', ok: Optional[bool] = None) -> None:
        lines.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (label, a, ab, b, bb, r, target, met(ok)))

    row('compressed root: the slot `root.squashfs` / plain tree as squashfs (`%s`, as firmvisor)'
        % plain.get('squash_opts', ''),
        mb(fs['slot']), '', mb(ps['slot']), '', ratio(fs['slot'], ps['slot']),
        '< 250 MB', fs['slot'] < TARGET_SLOT_BYTES)
    row('whole disk image, apparent (`firmvisor.img` / `plain.img`)', mb(fs['disk']), '', mb(ps['disk']), '',
        ratio(fs['disk'], ps['disk']))
    row('whole disk image, allocated (sparse)', mb(fs['disk_allocated']), '', mb(ps['disk_allocated']), '',
        ratio(fs['disk_allocated'], ps['disk_allocated']))
    row('ISO (`firmvisor.iso`)', mb(fs['iso']), '', '— (none)', '', '—')
    row('initrd', mb(fs['initrd']), '', mb(ps['initrd']), '', ratio(fs['initrd'], ps['initrd']))
    row('root tree, uncompressed (`du`; firmvisor: as build/rootfs.sh logs it, whole MiB)',
        mb(fv.get('tree')), '', mb(plain['tree']), '', ratio(fv.get('tree'), plain['tree']))
    row('packages installed', str(fv['packages']), '', str(plain['packages']), '', '—')
    row('cold build, wall (firmvisor: `ansible` … `image_build force=true`)', secs(fv['cold_wall']),
        times(fv['cold_wall'], cpu_base), secs(plain['cold_wall']), times(plain['cold_wall'], cpu_base),
        ratio(fv['cold_wall'], plain['cold_wall']))
    row('cold build, the module\'s own `build_seconds`', secs(fv['cold_module']), times(fv['cold_module'], cpu_base),
        '', '', '')
    row('cached rebuild, `ansible` wall (changed=false; median of %d)' % len(fv['cached_wall']),
        secs(cached_wall, 2), times(cached_wall, cpu_base), '— (no cache: a rebuild is a cold build)', '', '—',
        '< 5 s', None if cached_wall is None else cached_wall < TARGET_CACHED_SECONDS)
    row('cached rebuild, module code own time (`ensure_image`, median of %d)' % len(fv['cached_own']),
        secs(cached_own, 2), times(cached_own, cpu_base), '', '', '')
    for kind, what in (('first', ', each on a fresh overlay'), ('warm', ' after an ACPI power-off')):
        f, p = median(seconds['firmvisor', kind]), median(seconds['plain', kind])
        label = '%s boot: power-on to the ready line (direct kernel boot)%s (median of %d: firmvisor %s; plain %s)' \
            % (kind, what, len(seconds['firmvisor', kind]), ', '.join('%.1f' % v for v in seconds['firmvisor', kind]),
               ', '.join('%.1f' % v for v in seconds['plain', kind]))
        row(label, secs(f), times(f, boot_base), secs(p), times(p, boot_base), ratio(f, p),
            '≤ %.2fx plain, < 60 s' % TARGET_BOOT_RATIO,
            None if f is None or not p else f / p <= TARGET_BOOT_RATIO and f < TARGET_READY_SECONDS)
    grub = fv.get('grub_boot')
    if grub:
        row('GRUB boot: power-on to `firmvisor ready` through SeaBIOS + its own GRUB (state present)',
            secs(grub['seconds']), times(grub['seconds'], boot_base), '— (no boot loader)', '', '—',
            '< 60 s', grub['seconds'] < TARGET_READY_SECONDS)
    hang = fv.get('hang')
    if hang:
        row('recovery: a hang on a trial slot (systemd frozen) to the watchdog\'s reset (GRUB says the trial failed)',
            secs(hang['to_reset']), times(hang['to_reset'], boot_base), '—', '', '—')
        row('recovery: the hang to the old slot back and `firmvisor ready`', secs(hang['to_ready']),
            times(hang['to_ready'], boot_base), '—', '', '—')
    windows = fv.get('save_window')
    if windows:
        row('save on change: a domain defined to its state on the state partition (max of %d; median %s)'
            % (len(windows), secs(median(windows), 2)), secs(max(windows), 2), '', '— (nothing is saved)', '', '—')
    lines += ['', 'The plain column of the boot rows is power-on to `plain ready`.', '',
              '### Where a boot spends its time', '',
              'Wall seconds from QEMU\'s start to the first console sight of: the kernel\'s banner '
              '(SeaBIOS and the kernel and initrd loaded), `Run /init` (the kernel unpacked the initrd and '
              'started), systemd\'s banner (the initramfs found and switched to the root), and the ready line.',
              '', '| boot | kernel | /init | systemd | ready | of which systemd → ready |',
              '|---|---:|---:|---:|---:|---:|']
    boot_rows = [('%s, %s #%d' % (name, kind, i + 1), b)
                 for name, who in (('firmvisor', fv), ('plain Debian', plain))
                 for kind in BOOT_KINDS for i, b in enumerate(who[kind + '_boots'])]
    if grub:
        boot_rows.append(('firmvisor, through GRUB', grub))
    for label, b in boot_rows:
        ms = b.get('milestones', {})
        userspace = b['seconds'] - ms['systemd'] if 'systemd' in ms else None
        lines.append('| %s | %s | %s | %s | %s | %s |' % (label, secs(ms.get('kernel')), secs(ms.get('init')),
                                                          secs(ms.get('systemd')), secs(b['seconds']), secs(userspace)))
    lines += ['',
              '### Build steps', '', '| firmvisor step (manifest.json) | s | x base |', '|---|---:|---:|']
    lines += ['| %s | %.1f | %s |' % (s['step'], s['seconds'], times(s['seconds'], cpu_base)) for s in fv['steps']]
    lines += ['', '| plain Debian step | s | x base |', '|---|---:|---:|']
    lines += ['| %s | %.1f | %s |' % (s['step'], s['seconds'], times(s['seconds'], cpu_base)) for s in plain['steps']]
    lines += ['| (not build time) squashfs of the plain tree for the size figure | %.1f | %s |'
              % (plain['squash_seconds'], times(plain['squash_seconds'], cpu_base))]

    def shutdowns(who: Dict[str, Any]) -> str:
        return ', '.join('%s #%d %s%s' % (kind, i + 1, b['down'],
                                          ' (%.0f s)' % b['down_seconds'] if b['down_seconds'] else '')
                         for kind in BOOT_KINDS for i, b in enumerate(who[kind + '_boots']))

    downs = ['firmvisor: %s' % shutdowns(fv), 'plain: %s' % shutdowns(plain)]
    lines += [
        '', '### How each number was measured', '',
        '- **firmvisor build**: `.venv/bin/ansible localhost -m firmvisor.hypervisor.image_build` with '
        '`dest` %s, `files` image/ (by default a `git archive` snapshot of the commit named '
        'above, so that edits made in the working tree during the run do not count); the cold build with '
        '`force: true` (wall time of the whole '
        '`ansible` run; the module\'s `build_seconds` beside it), then the same call without `force`, '
        'which must return `changed: false`, %d times. The module code\'s own time is `ensure_image` '
        'called in-process with the same parameters in check mode (the inputs digest with `apt-cache policy`, '
        'the manifest and artifact checks: all a cached run does) without Ansible\'s start-up.'
        % (results['dest'], len(fv['cached_wall'])),
        '- **plain Debian build**: `mmdebstrap --mode=root --variant=minbase` of packages.list plus '
        '`initramfs-tools` through the same apt sources (%s), otherwise mmdebstrap\'s defaults (no '
        'recommends, like firmvisor; its default merged-/usr setup), with docs, '
        'man pages and locales, every kernel module and Debian\'s own initramfs (made by the kernel\'s '
        'postinst in the chroot); then hostname, fstab, a `plain-ready` unit (prints `plain ready` on '
        'ttyS0 once `virsh -c qemu:///system version` answers, `After=libvirtd.service`), '
        '`serial-getty@ttyS0`, DHCP through systemd-networkd (as firmvisor\'s seed default), and the disk: '
        '`mkfs.ext4 -d` of the tree, a GPT with one partition `%s` (sfdisk), `dd` of the file system into '
        'it (no loop devices, no mounts). Its build time is all of that; the squashfs of its tree (same '
        '`mksquashfs` options and excludes as firmvisor\'s slot) is made only for the compressed-size figure.'
        % (', '.join(plain['apt_sources']), PLAIN_PARTLABEL),
        '- **sizes**: bytes of the files (`st_size`), allocated bytes from `st_blocks` (the disk images are '
        'sparse). MB = 10^6 bytes; the 250 MB target is checked in those.',
        '- **boots**: `%s` (SeaBIOS, the default machine), each disk through a fresh qcow2 overlay '
        '(`-drive if=virtio`), the FVSEED seed ISO (`seed.json` with hostname `fvbench` and a throwaway '
        'ed25519 key) on a CD-ROM drive for both, `%s`, `-serial file:`. Both boot by **direct '
        'kernel boot**, so no boot loader is timed: firmvisor its `vmlinuz` + `initrd.img` with `%s`, plain '
        'Debian its kernel + Debian initrd with `%s`. The time runs from starting QEMU to the ready line '
        'on the console file (polled every 50 ms against a deadline). Each first boot is on a fresh '
        'overlay (firmvisor\'s does the first-boot work: SSH host keys, the seed imported into the state '
        'partition, libvirt\'s QEMU capability probe; so does plain Debian\'s probe); after each boot the '
        'machine is powered off with the ACPI button through QMP, and the warm boots boot the overlay of '
        'the last first boot. The two systems take turns throughout; each figure is the median of its '
        'boots (%s). '
        'The GRUB boot (firmvisor only) is the real firmware path: SeaBIOS loads GRUB from the disk, which '
        'boots slot A (GRUB\'s 2 s menu timeout included).'
        % (' '.join(QEMU), ' '.join(NIC), FV_APPEND, PLAIN_APPEND, '; '.join(downs)),
        '- **recovery**: a third firmvisor machine boots its disk through SeaBIOS and GRUB with an `i6300esb` '
        'watchdog, the seed and the ISO on CD-ROM drives and SSH forwarded on 127.0.0.1; over SSH it writes '
        'slot B from the ISO (`fvslot write`), adds a health check that, on slot B only, prints a line on the '
        'console and sends SIGSEGV to PID 1 (systemd freezes and stops petting the watchdog), and tries B '
        'once (`fvslot boot-once B --tries 1`). The hang figures run from that console line to GRUB\'s '
        '`slot B failed its trial` (the watchdog\'s reset: systemd\'s `RuntimeWatchdogSec=60s`) and to '
        '`firmvisor ready` of slot A. The save window: on slot A, a domain defined with `virsh define` on the '
        'host, timed from just before the define to the moment the slot\'s `config.tar` is replaced (its '
        'inode changes), then checked to hold the domain (`fv-state has`); the longest of the samples is what '
        'a power cut at the worst moment can lose.',
        '- **baselines**: the CPU-bound task and the tiny guest (`%s/{vmlinuz,initrd.img}`, '
        '`fv.name=bench console=ttyS0`, same QEMU options without disks or NIC) ran at the start and at the '
        'end; build figures are divided by the CPU task, boot figures by the guest boot. Other workers '
        'share the two cores, so the seconds move from run to run; the ratios move less.' % GUEST_DIR,
        '- Logs and consoles of the last run: `.cache/bench/image/` (not committed).',
        '', END]
    return '\n'.join(lines) + '\n'


def write_report(path: str, generated: str) -> None:
    replace_section(path, BEGIN, END, generated)


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dest', default='/var/tmp/fvemb-bench/firmvisor',
                        help='the firmvisor build (kept: the next run\'s cache)')
    parser.add_argument('--scratch', default='/var/tmp/fvemb-bench/scratch',
                        help='plain Debian, overlays, seed, consoles (removed at the end)')
    parser.add_argument('--report', default=os.path.join(ROOT, 'docs', 'performance.md'))
    parser.add_argument('--no-write', action='store_true', help='print the section instead of writing it')
    parser.add_argument('--boot-timeout', type=float, default=900, help='seconds per boot')
    parser.add_argument('--cached-runs', type=int, default=3)
    parser.add_argument('--first-boots', type=int, default=3,
                        help='first boots per system, each on a fresh overlay; the first-boot figure is their median')
    parser.add_argument('--warm-boots', type=int, default=3,
                        help='boots after the last first boot, per system; the warm figure is their median')
    parser.add_argument('--no-grub-boot', action='store_true', help='skip the firmvisor boot through GRUB')
    parser.add_argument('--no-faults', action='store_true', help='skip the recovery figures (hang, save window)')
    parser.add_argument('--save-samples', type=int, default=5, help='changes timed for the save window')
    parser.add_argument('--reuse-firmvisor', action='store_true',
                        help='bench development: skip the cold build, use the build in --dest')
    parser.add_argument('--keep-scratch', action='store_true')
    parser.add_argument('--working-tree', action='store_true',
                        help='build from image/ as it is now, not from a snapshot of HEAD')
    return parser.parse_args(argv)


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    os.makedirs(LOGS, exist_ok=True)
    if os.path.isdir(args.scratch):
        shutil.rmtree(args.scratch)
    os.makedirs(args.scratch)
    bench = Bench(args)
    bench.results['dest'] = args.dest
    open(bench.logfile, 'w').close()
    try:
        bench.run()
    except BenchError as exc:
        log('FAILED: %s' % exc)
        return 1
    except (KeyboardInterrupt, Terminated):
        log('interrupted')
        return 130
    finally:
        bench.cleanup()
        with open(os.path.join(LOGS, 'results.json'), 'w') as handle:
            json.dump(bench.results, handle, indent=2, sort_keys=True, default=str)
    generated = render(bench.results)
    if args.no_write:
        print(generated)
    else:
        write_report(args.report, generated)
        log('wrote the image section of %s' % args.report)
    print(generated.split('### Results', 1)[1].split('### Build steps', 1)[0])
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
