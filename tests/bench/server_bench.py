# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provisioning benchmark: ``server`` from nothing to ready, and a no-op re-run, for both drivers.

Run with the project's python, as root (``.venv/bin/python tests/bench/server_bench.py``);
``tests/bench/run.sh`` runs it unless ``BENCH_SERVER=0``. It holds the CPU lock
(/tmp/firmvisor-cpu.lock) for the whole run, unless it runs under ``flock`` of that lock already.
Under TCG here it measures, in one run:

* the baseline: the tiny test guest booted under TCG to ``firmvisor-guest bench booted``, at the
  start and at the end (every figure is also given as a multiple of its median);
* ``driver: qemu``: a server (2 vCPUs, 2 GiB, a data disk) made from nothing on qemu:///system to
  ready (``firmvisor ready`` on its console and SSH answering), through the module's own code
  in-process, each step of its plan timed; then a no-op re-run, in-process and as an
  ``ansible-playbook`` task (what a user waits for, Ansible's start-up included);
* ``driver: redfish``: a blank QEMU box behind sushy-emulator on 127.0.0.1 (tests/redfish/harness.py:
  Basic auth, TLS with a CA of its own) installed through its BMC to ready, the media served by the
  provision role's serve.py, each step timed and summed per phase — media (seed, virtual media,
  boot override), boot (power on to the live system answering SSH), install (the live installer
  writing and verifying the disk), reboot (eject, boot override, restart), ready (the installed
  disk answering SSH, media ejected) — then the same no-op re-runs.

Writes the section between ``<!-- BEGIN SERVER BENCH -->`` and ``<!-- END SERVER BENCH -->`` of
docs/performance.md. Everything it makes is named fvrf2-bench* and removed in a ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
COLLECTIONS = os.path.join(ROOT, '.collections')
LOGS = os.path.join(ROOT, '.cache', 'bench', 'server')
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'redfish'))
sys.path.insert(0, COLLECTIONS)

import image_bench as ib  # noqa: E402  (the guest-boot baseline and QEMU helpers)
from bench import replace_section  # noqa: E402
from harness import Lab  # noqa: E402

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import Action, Plan  # noqa: E402
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import (  # noqa: E402
    converge_one, execute, plan_all)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import connect  # noqa: E402
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.options import SERVER_ARGSPEC  # noqa: E402
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.qemu import QemuServer  # noqa: E402
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.redfish import RedfishServer  # noqa: E402

BEGIN = '<!-- BEGIN SERVER BENCH -->'
END = '<!-- END SERVER BENCH -->'
LOCK = '/tmp/firmvisor-cpu.lock'
PREFIX = 'fvrf2-bench'
URI = 'qemu:///system'
POOL = PREFIX + '-pool'
POOL_PATH = '/var/lib/libvirt/images/' + POOL
IMAGE_DEST = '/var/lib/firmvisor/images/molecule'   # what molecule/embedded and molecule/redfish use
TARGET_QEMU_READY = 90.0
TARGET_REDFISH_READY = 300.0
TARGET_NOOP = 5.0
PHASES = ('media', 'boot', 'install', 'reboot', 'ready')


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print('server-bench %s: %s' % (time.strftime('%H:%M:%S'), message), flush=True)


# ---- the CPU lock ----------------------------------------------------------------------------------
def _under_flock(path: str) -> bool:
    """Whether an ancestor is ``flock PATH ...`` (then the lock is held for us already)."""
    pid = os.getppid()
    while pid > 1:
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                argv = handle.read().decode('utf-8', 'replace').split('\0')
            with open('/proc/%d/stat' % pid) as handle:
                pid = int(handle.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if argv and os.path.basename(argv[0]) == 'flock' and path in argv:
            return True
    return False


@contextlib.contextmanager
def cpu_lock(path: str = LOCK) -> Iterator[str]:
    if _under_flock(path):
        yield 'held by the flock this runs under'
        return
    with open(path, 'a') as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log('waiting for the CPU lock %s' % path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield 'taken by this bench'
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- timing a plan's steps -------------------------------------------------------------------------
def timed_plan(plan: Plan, record: List[Dict[str, Any]], phase_of: Callable[[Plan, str], str]) -> Plan:
    """The same plan with every action (its children's too) timed into ``record``."""
    def wrap(action: Action) -> Action:
        def run() -> Any:
            began = time.monotonic()
            try:
                return action.run()
            finally:
                record.append({'phase': phase_of(plan, action.description), 'step': action.description,
                               'seconds': time.monotonic() - began})
        return dataclasses.replace(action, run=run)
    return dataclasses.replace(plan, actions=tuple(wrap(a) for a in plan.actions),
                               children=tuple(timed_plan(c, record, phase_of) for c in plan.children))


def qemu_phase(plan: Plan, description: str) -> str:
    """media: the volumes (the image's import, the flash overlay, the seed ISO, data disks); boot: the
    domain defined and started; ready: until the console says firmvisor ready and SSH answers."""
    if plan.resource.noun == 'volume':
        return 'media'
    return 'ready' if description.startswith('wait') else 'boot'


def run_playbook(playbook: str, extra: Dict[str, Any], logfile: str) -> float:
    """ansible-playbook of ``playbook`` with ``extra`` vars (a file): its wall time."""
    os.makedirs(LOGS, exist_ok=True)
    vars_file = os.path.join(LOGS, 'vars-%d.json' % os.getpid())
    with open(os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as handle:
        json.dump(extra, handle)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
               ANSIBLE_HOME=os.path.join(ROOT, '.cache', 'ansible'), ANSIBLE_NOCOLOR='1',
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
            '-e', 'ansible_python_interpreter=%s' % sys.executable, '-e', '@' + vars_file, playbook]
    began = time.monotonic()
    try:
        with open(logfile, 'ab') as out:
            code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=3600,
                                  check=False).returncode
    finally:
        os.unlink(vars_file)
    seconds = time.monotonic() - began
    if code != 0:
        raise BenchError('%s failed (exit %d); the end of %s:\n%s' % (playbook, code, logfile, ib.tail(logfile)))
    return seconds


def noop_playbook(path: str) -> str:
    """A one-task playbook that runs ``server`` with the vars file's ``server_args`` and fails on a change."""
    with open(path, 'w') as handle:
        handle.write('- hosts: localhost\n  gather_facts: false\n  tasks:\n'
                     '    - firmvisor.hypervisor.server: "{{ server_args }}"\n'
                     '      register: again\n'
                     '      failed_when: again.failed or again.changed\n')
    return path


def params(**options: Any) -> Dict[str, Any]:
    result = {key: spec.get('default') for key, spec in SERVER_ARGSPEC.items()}
    result.update(options)
    return result


# ---- the bench -------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = os.path.join('/tmp', PREFIX)
        self.results: Dict[str, Any] = {'baseline': [], 'qemu': {}, 'redfish': {}}
        self.logfile = os.path.join(LOGS, 'bench.log')
        self.lab: Optional[Lab] = None
        self.media_root: Optional[str] = None

    def run(self) -> None:
        os.makedirs(self.work, exist_ok=True)
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', PREFIX, '-f',
                        os.path.join(self.work, 'id_ed25519')], check=True)
        with open(os.path.join(self.work, 'id_ed25519.pub')) as handle:
            self.pub = handle.read().strip()
        self.key = os.path.join(self.work, 'id_ed25519')
        self.image = self.ensure_image()
        self.baseline()
        if 'qemu' in self.args.drivers:
            self.qemu()
        if 'redfish' in self.args.drivers:
            self.redfish()
        self.baseline()

    def ensure_image(self) -> str:
        if self.args.image:
            return self.args.image
        log('image: the image role into %s (a build, or found current by its manifest)' % IMAGE_DEST)
        playbook = os.path.join(self.work, 'image.yml')
        with open(playbook, 'w') as handle:
            handle.write('- hosts: localhost\n  gather_facts: false\n  roles:\n'
                         '    - {role: firmvisor.hypervisor.image, image_dest: "%s"}\n' % IMAGE_DEST)
        seconds = run_playbook(playbook, {}, os.path.join(LOGS, 'image.log'))
        log('image: %.1f s' % seconds)
        return IMAGE_DEST

    def baseline(self) -> None:
        log('baseline: the tiny guest under TCG to "firmvisor-guest bench booted"')
        result = ib.boot('%s-guest-%d' % (PREFIX, len(self.results['baseline'])), self.work,
                         ['-kernel', os.path.join(ib.GUEST_DIR, 'vmlinuz'),
                          '-initrd', os.path.join(ib.GUEST_DIR, 'initrd.img'),
                          '-append', 'fv.name=bench console=ttyS0', '-net', 'none'],
                         ib.GUEST_READY, 300, powerdown=False)
        self.results['baseline'].append(result['seconds'])
        log('baseline: %.1f s' % result['seconds'])

    # -- qemu --
    def qemu(self) -> None:
        name = PREFIX + '-qemu'
        conn = connect(URI)
        try:
            self._pool(conn)
            spec = params(name=name, pool=POOL, image=self.image, ssh_authorized_keys=[self.pub], virt_type='qemu',
                          data_disks=[{'size': '4GiB', 'name': None, 'pool': None}], wait_timeout=900)
            log('qemu: %s from nothing to ready' % name)
            steps: List[Dict[str, Any]] = []
            began = time.monotonic()
            resource = QemuServer(conn)
            plans = [timed_plan(p, steps, qemu_phase) for p in plan_all(resource, [spec])]
            planned = time.monotonic() - began
            result = execute(plans, False)[0]
            total = time.monotonic() - began
            if not result['changed'] or result.get('port') is None:
                raise BenchError('qemu: the first run did not make a ready server: %s' % result)
            log('qemu: ready in %.1f s (port %s)' % (total, result['port']))
            noop = self._noop(lambda: converge_one(QemuServer(conn), spec), 'qemu')
            args = {k: v for k, v in spec.items() if v is not None}
            wall = self._noop_playbook(dict(args, uri=URI), 'qemu')
            self.results['qemu'] = {'total': total, 'plan': planned, 'steps': steps, 'noop': noop, 'noop_wall': wall}
        finally:
            with contextlib.suppress(Exception):
                converge_one(QemuServer(conn), params(name=name, state='absent', remove_disks=True, pool=POOL))
            self._pool_gone(conn)
            conn.close()

    def _pool(self, conn: Any) -> None:
        from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.pool import POOL_ARGSPEC, Pool
        spec = {key: value.get('default') for key, value in POOL_ARGSPEC.items()}
        spec.update(name=POOL, type='dir', path=POOL_PATH, state='active')
        converge_one(Pool(conn), spec)

    def _pool_gone(self, conn: Any) -> None:
        from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.pool import POOL_ARGSPEC, Pool
        spec = {key: value.get('default') for key, value in POOL_ARGSPEC.items()}
        spec.update(name=POOL, state='absent', delete_contents=True)
        with contextlib.suppress(Exception):
            converge_one(Pool(conn), spec)
        shutil.rmtree(POOL_PATH, ignore_errors=True)

    def _noop(self, run: Callable[[], Dict[str, Any]], what: str) -> List[float]:
        """Three in-process no-op re-runs (must not change anything): their seconds."""
        seconds = []
        for _run in range(3):
            began = time.monotonic()
            result = run()
            seconds.append(time.monotonic() - began)
            if result['changed']:
                raise BenchError('%s: a re-run changed something: %s' % (what, result['actions']))
        log('%s: no-op re-run (module code) %s s' % (what, ', '.join('%.2f' % s for s in seconds)))
        return seconds

    def _noop_playbook(self, args: Dict[str, Any], what: str) -> float:
        playbook = noop_playbook(os.path.join(self.work, 'noop.yml'))
        seconds = run_playbook(playbook, {'server_args': args}, os.path.join(LOGS, 'noop-%s.log' % what))
        log('%s: no-op re-run (ansible-playbook) %.2f s' % (what, seconds))
        return seconds

    # -- redfish --
    def redfish(self) -> None:
        self.lab = Lab('bench', prefix='fvrf2')
        log('redfish: lab up (sushy-emulator, a blank box)')
        state = self.lab.up()
        self.media_root = os.path.join(self.lab.workdir, 'media')
        os.makedirs(self.media_root)
        os.symlink(os.path.join(self.image, 'firmvisor.iso'), os.path.join(self.media_root, 'box.iso'))
        serve = os.path.join(ROOT, 'roles', 'provision', 'files', 'serve.py')
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        info = json.loads(subprocess.run([sys.executable, serve, 'start', '--root', self.media_root, '--port', str(port)],
                                         capture_output=True, text=True, check=True).stdout)
        spec = params(name=PREFIX + '-box', driver='redfish', image=self.image, ssh_authorized_keys=[self.pub],
                      bmc={'address': state['bmc']['address'], 'username': state['bmc']['username'],
                           'password': self.lab.password(), 'ca_path': state['bmc']['ca'], 'validate_certs': True,
                           'timeout': 120},
                      system=state['uuid'], image_url=info['url'] + '/box.iso', seed_url=info['url'] + '/box-seed.img',
                      seed_path=os.path.join(self.media_root, 'box-seed.img'), install_disk={'path': state['install_to']},
                      address='127.0.0.1', port=state['ssh_port'], ssh_private_key=self.key, wait_timeout=900)
        log('redfish: the blank box to installed and ready')
        began = time.monotonic()
        server = RedfishServer(spec)
        try:
            result = converge_one(server, spec)
        finally:
            server.close()
        total = time.monotonic() - began
        if not result['changed'] or result['version'] is None:
            raise BenchError('redfish: the first run did not install the box: %s' % result)
        log('redfish: ready in %.1f s: %s' % (total, ', '.join('%s %.1f' % (p, sum(
            t['seconds'] for t in server.timings if t['phase'] == p)) for p in PHASES)))

        def again() -> Dict[str, Any]:
            noop_server = RedfishServer(spec)
            try:
                return converge_one(noop_server, spec)
            finally:
                noop_server.close()
        noop = self._noop(again, 'redfish')
        wall = self._noop_playbook({k: v for k, v in spec.items() if v is not None}, 'redfish')
        self.results['redfish'] = {'total': total, 'steps': server.timings, 'noop': noop, 'noop_wall': wall,
                                   'plan': total - sum(t['seconds'] for t in server.timings)}

    def cleanup(self) -> None:
        for proc in list(ib.CHILDREN):
            ib.end(proc)
        if self.media_root:
            with contextlib.suppress(Exception):
                subprocess.run([sys.executable, os.path.join(ROOT, 'roles', 'provision', 'files', 'serve.py'), 'stop',
                                '--root', self.media_root], capture_output=True, check=False, timeout=60)
        lab = self.lab or Lab('bench', prefix='fvrf2')
        with contextlib.suppress(Exception):
            lab.down()
        with contextlib.suppress(Exception):
            conn = connect(URI)
            try:
                with contextlib.suppress(Exception):
                    converge_one(QemuServer(conn), params(name=PREFIX + '-qemu', state='absent', remove_disks=True,
                                                          pool=POOL))
                self._pool_gone(conn)
            finally:
                conn.close()
        shutil.rmtree(self.work, ignore_errors=True)


# ---- the report ------------------------------------------------------------------------------------
def median(values: List[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def render(results: Dict[str, Any]) -> str:
    base = median(results['baseline'])

    def x(value: Optional[float]) -> str:
        return '' if value is None or not base else '%.2fx' % (value / base)

    def met(value: Optional[float], target: float) -> str:
        return '' if value is None else ('yes' if value <= target else '**no**')

    lines = [BEGIN, '', '## Provisioning: `server` from nothing to ready', '',
             'Generated by `tests/bench/server_bench.py` (`make bench` runs it; `BENCH_SERVER=0` skips it). '
             'Everything below was measured in one run, holding the CPU lock; "x base" is the figure divided '
             'by the baseline.', '', '| | |', '|---|---|']
    lines += ['| %s | %s |' % (k, v) for k, v in results['machine'].items()]
    lines += ['', '| baseline | runs (start, end) | median |', '|---|---|---:|',
              '| the tiny test guest under TCG to `firmvisor-guest bench booted` | %s | %.1f s |'
              % (', '.join('%.1f' % v for v in results['baseline']), base or 0),
              '', '| figure | s | x base | target | met |', '|---|---:|---:|---|---|']
    qemu, redfish = results.get('qemu') or {}, results.get('redfish') or {}
    rows = []
    if qemu:
        rows += [('`driver: qemu` — nothing to ready (console `firmvisor ready`, SSH)', qemu['total'], TARGET_QEMU_READY),
                 ('`driver: qemu` — no-op re-run, module code (median of 3)', median(qemu['noop']), TARGET_NOOP),
                 ('`driver: qemu` — no-op re-run, `ansible-playbook` wall', qemu['noop_wall'], TARGET_NOOP)]
    if redfish:
        rows += [('`driver: redfish` — blank box to installed and ready', redfish['total'], TARGET_REDFISH_READY),
                 ('`driver: redfish` — no-op re-run, module code (median of 3)', median(redfish['noop']), TARGET_NOOP),
                 ('`driver: redfish` — no-op re-run, `ansible-playbook` wall', redfish['noop_wall'], TARGET_NOOP)]
    for label, value, target in rows:
        lines.append('| %s | %.1f | %s | ≤ %d s | %s |' % (label, value, x(value), target, met(value, target)))
    for driver, data in (('qemu', qemu), ('redfish', redfish)):
        if not data:
            continue
        lines += ['', '### Where `driver: %s` spends its time' % driver, '',
                  '| phase | s | share |', '|---|---:|---:|']
        total = data['total']
        lines.append('| read and plan (BMC or libvirt, inventory, checks) | %.1f | %.0f%% |'
                     % (data['plan'], 100 * data['plan'] / total))
        for phase in PHASES:
            seconds = sum(t['seconds'] for t in data['steps'] if t['phase'] == phase)
            if seconds or driver == 'redfish':
                lines.append('| %s | %.1f | %.0f%% |' % (phase, seconds, 100 * seconds / total))
        lines += ['', '<details><summary>every step</summary>', '', '| step | phase | s |', '|---|---|---:|']
        lines += ['| %s | %s | %.1f |' % (t['step'].replace('|', '/'), t['phase'], t['seconds']) for t in data['steps']]
        lines += ['', '</details>']
    lines += [
        '', '### How it was measured', '',
        '- **qemu**: `QemuServer` on qemu:///system, in-process (the module\'s code without Ansible\'s start-up): '
        '2 vCPUs, 2 GiB, a 4 GiB data disk, TCG, SeaBIOS; the image\'s base volume imported into a fresh pool, '
        'so the first run includes that import (media). Every action of the plan is timed: media = volumes, '
        'boot = define and start, ready = until the console says `firmvisor ready` and SSH answers.',
        '- **redfish**: `RedfishServer` in-process against sushy-emulator on 127.0.0.1 (HTTPS with its own CA, '
        'Basic auth) managing a blank box (machine pc, SeaBIOS, 2 vCPUs, 2 GiB, an empty 16 GiB disk, TCG), '
        'the ISO and the seed served by the provision role\'s `serve.py`. Phases: media = seed floppy, '
        'InsertMedia of both (the emulator downloads the ISO), boot override; boot = power on until the live '
        'system answers SSH with the seed\'s key; install = the installer\'s journal until it wrote and verified '
        'the disk; reboot = eject, override to the disk, forced restart; ready = until the disk answers SSH with '
        'the version (not live), floppy ejected, override cleared.',
        '- **no-op re-runs**: the same spec again: must report `changed: false`. "module code" runs '
        '`converge_one` in-process (read, plan, nothing to do); "`ansible-playbook` wall" is a one-task '
        'playbook with the module, Ansible\'s start-up included.',
        '- **baseline**: the tiny guest (`/var/cache/firmvisor/guest`) booted under TCG, before and after; the '
        'machine is shared, so seconds move from run to run and the ratios less.',
        '- Logs of the last run: `.cache/bench/server/` (not committed).', '', END]
    return '\n'.join(lines) + '\n'


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--report', default=os.path.join(ROOT, 'docs', 'performance.md'))
    parser.add_argument('--no-write', action='store_true')
    parser.add_argument('--image', help='a built image directory (default: the image role into %s)' % IMAGE_DEST)
    parser.add_argument('--drivers', default='qemu,redfish')
    args = parser.parse_args(argv)
    args.drivers = args.drivers.split(',')
    os.makedirs(LOGS, exist_ok=True)
    ib.LOGS = LOGS
    signal.signal(signal.SIGTERM, ib._on_sigterm)
    bench = Bench(args)
    with cpu_lock() as how:
        log('CPU lock %s: %s' % (LOCK, how))
        bench.results['machine'] = {
            'CPU': ib.output(['sh', '-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]).strip(),
            'cores': os.cpu_count(), 'load average at start': ' '.join(open('/proc/loadavg').read().split()[:3]),
            'date': datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec='seconds'),
            'commit': ib.output(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD']),
        }
        try:
            bench.run()
        except (BenchError, Exception) as exc:  # every failure ends the bench after the cleanup
            log('FAILED: %s: %s' % (type(exc).__name__, exc))
            return 1
        except (KeyboardInterrupt, ib.Terminated):
            log('interrupted')
            return 130
        finally:
            bench.cleanup()
            with open(os.path.join(LOGS, 'results.json'), 'w') as handle:
                json.dump(bench.results, handle, indent=2, default=str)
    generated = render(bench.results)
    if args.no_write:
        print(generated)
    else:
        replace_section(args.report, BEGIN, END, generated)
        log('wrote the server section of %s' % args.report)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
