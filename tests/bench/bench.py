# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The performance benchmark (``make bench``; ``tests/bench/run.sh`` sets it up and calls this).

For N defined (not started) VMs ``fvbench-NNN`` on the local libvirtd it measures the wall time of
``ansible-playbook`` for (a) the first converge and (b) a no-op re-run of

* ``vms``       one ``firmvisor.hypervisor.vms`` task,
* ``vm_loop``   a loop of ``firmvisor.hypervisor.vm``,
* ``community`` a loop of ``community.libvirt.virt`` ``command: define`` (the bench's own virtualenv),
* ``floor``     a plain libvirt-python script doing the same lookups and defines,

plus a baseline: ``ansible-playbook`` with one ``ping`` task on localhost. Every number is also
given as a ratio to that baseline, measured in the same run (machines are noisy).

Every variant starts and ends with no ``fvbench-*`` domain; they are removed in a ``finally`` too,
on failure or Ctrl-C. After each first converge the N domains must exist as declared, and each
no-op must report no change, or the bench fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional

import libvirt

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORK = os.path.join(ROOT, '.cache', 'bench')

PREFIX = 'fvbench-'
MEMORY_MIB = 64
VCPUS = 1
VIRT_TYPE = 'qemu'

VARIANTS = ('floor', 'vms', 'vm_loop', 'community')
LABELS = {
    'baseline': '`ansible-playbook`, one `ping` task (baseline)',
    'vms': '`firmvisor.hypervisor.vms`, one task',
    'vm_loop': '`firmvisor.hypervisor.vm`, loop',
    'community': '`community.libvirt.virt` `command: define`, loop',
    'floor': 'plain libvirt-python script (floor)',
}

BEGIN = '<!-- BEGIN GENERATED BENCH RESULTS (tests/bench/bench.py) -->'
END = '<!-- END GENERATED BENCH RESULTS -->'

TARGET_NOOP_SECONDS = 2.0
TARGET_SPEEDUP = 20.0
TARGET_FLOOR_FACTOR = 1.5
# The loops run one module per VM: beyond this size they take many minutes and measure nothing new.
LOOP_VARIANTS = ('vm_loop', 'community')


class BenchError(Exception):
    """The bench cannot go on: a run failed, or a result is wrong."""


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that the cleanups run."""


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise Terminated()


def log(message: str) -> None:
    print('[%s] %s' % (time.strftime('%H:%M:%S'), message), flush=True)


# ---- libvirt: cleanup and checks ------------------------------------------------------------------
def connect(uri: str, timeout: float = 60) -> Any:
    """Open ``uri``, waiting up to ``timeout`` s for a daemon that is (re)starting."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return libvirt.open(uri)
        except libvirt.libvirtError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1)


def bench_domains(conn: Any) -> Dict[str, Any]:
    return {dom.name(): dom for dom in conn.listAllDomains(0) if dom.name().startswith(PREFIX)}


def cleanup(uri: str) -> int:
    """Force off and undefine every fvbench-* domain (and nothing else)."""
    conn = connect(uri)
    try:
        domains = bench_domains(conn)
        for dom in domains.values():
            if dom.isActive():
                dom.destroy()
            try:
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            except libvirt.libvirtError:
                dom.undefine()
        left = bench_domains(conn)
        if left:
            raise BenchError('could not remove %s' % ', '.join(sorted(left)))
        return len(domains)
    finally:
        conn.close()


def check_defined(uri: str, names: List[str], variant: str) -> None:
    """The N domains exist, shut off, with the declared memory, vCPUs and type."""
    conn = connect(uri)
    try:
        domains = bench_domains(conn)
        if sorted(domains) != sorted(names):
            missing = sorted(set(names) - set(domains))
            extra = sorted(set(domains) - set(names))
            raise BenchError('%s: after the first converge, missing %d domain(s) %s, unexpected %s'
                             % (variant, len(missing), missing[:5], extra[:5]))
        for name, dom in domains.items():
            root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            memory = root.find('memory')
            kib = int(memory.text) * {'KiB': 1, 'MiB': 1024}.get(memory.get('unit', 'KiB'), 0)
            facts = (root.get('type'), int(root.findtext('vcpu')), kib // 1024, bool(dom.isActive()))
            if facts != (VIRT_TYPE, VCPUS, MEMORY_MIB, False):
                raise BenchError('%s: domain %s is (type, vcpus, MiB, active) = %r, expected %r'
                                 % (variant, name, facts, (VIRT_TYPE, VCPUS, MEMORY_MIB, False)))
    finally:
        conn.close()


# ---- the domain XML firmvisor defines (for community.libvirt and the floor) -----------------------
def domain_xml(name: str) -> str:
    """The document firmvisor's vm module defines for this bench's spec (its own table builds it)."""
    from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.options import (
        compare, desired_values, planned_document,
    )
    from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.domain.options import (
        VM_ARGSPEC, VM_OPTIONS, new_domain,
    )
    params = {key: spec.get('default') for key, spec in VM_ARGSPEC.items()}
    params.update(name=name, state='present', memory=MEMORY_MIB, vcpus=VCPUS, virt_type=VIRT_TYPE)
    context = {'name': name, 'default_pool': 'default', 'creating': True, 'virt_type': VIRT_TYPE}
    desired = desired_values(VM_OPTIONS, params, context, creating=True)
    return planned_document(new_domain(name), compare(VM_OPTIONS, desired, None), name).tostring()


def import_collection() -> str:
    """Make this working tree importable as ansible_collections.firmvisor.hypervisor."""
    tree = os.path.join(WORK, 'collections')
    link = os.path.join(tree, 'ansible_collections', 'firmvisor', 'hypervisor')
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.islink(link) and os.readlink(link) != ROOT:
        os.unlink(link)
    if not os.path.lexists(link):
        os.symlink(ROOT, link)
    sys.path.insert(0, tree)
    return tree


# ---- running things ------------------------------------------------------------------------------
def run(cmd: List[str], env: Dict[str, str], logfile: str) -> float:
    """Run ``cmd`` in its own process group; its wall time in seconds. Raises on failure.

    On Ctrl-C or SIGTERM the whole group (ansible-playbook and its module processes) is ended
    before the exception goes on to the cleanups.
    """
    with open(logfile, 'w') as out:
        out.write('$ %s\n' % ' '.join(cmd))
        out.flush()
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=WORK)
        try:
            code = proc.wait()
        except BaseException:
            _end_group(proc)
            raise
        elapsed = time.monotonic() - started
    if code != 0:
        with open(logfile) as handle:
            tail = handle.read()[-3000:]
        raise BenchError('%s exited with %d (log %s):\n%s' % (os.path.basename(cmd[0]), code, logfile, tail))
    return elapsed


def _end_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def interpreter_of(playbook: str) -> str:
    """The python an ansible-playbook script runs with (its shebang)."""
    with open(playbook, 'rb') as handle:
        first = handle.readline().decode(errors='replace').strip()
    if not first.startswith('#!'):
        raise BenchError('%s has no shebang; pass --python' % playbook)
    parts = first[2:].split()
    if os.path.basename(parts[0]) == 'env':
        found = shutil.which(parts[1])
        if not found:
            raise BenchError('cannot find %s for %s' % (parts[1], playbook))
        return found
    return parts[0]


def output(cmd: List[str], env: Optional[Dict[str, str]] = None) -> str:
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        return 'unknown (%s)' % exc


# ---- the bench -----------------------------------------------------------------------------------
PLAYBOOKS = {
    'baseline': '''\
- name: baseline
  hosts: localhost
  gather_facts: false
  tasks:
    - name: ping
      ansible.builtin.ping:
''',
    'vms': '''\
- name: vms
  hosts: localhost
  gather_facts: false
  tasks:
    - name: vms
      firmvisor.hypervisor.vms:
        uri: "{{ bench_uri }}"
        defaults: "{{ bench_defaults }}"
        vms: "{{ bench_vms }}"
''',
    'vm_loop': '''\
- name: vm loop
  hosts: localhost
  gather_facts: false
  tasks:
    - name: vm
      firmvisor.hypervisor.vm:
        uri: "{{ bench_uri }}"
        name: "{{ item }}"
        state: "{{ bench_defaults.state }}"
        memory: "{{ bench_defaults.memory }}"
        vcpus: "{{ bench_defaults.vcpus }}"
        virt_type: "{{ bench_defaults.virt_type }}"
      loop: "{{ bench_names }}"
''',
    'community': '''\
- name: community.libvirt loop
  hosts: localhost
  gather_facts: false
  tasks:
    - name: virt define
      community.libvirt.virt:
        uri: "{{ bench_uri }}"
        command: define
        xml: "{{ item.xml }}"
      loop: "{{ bench_domains }}"
      loop_control:
        label: "{{ item.name }}"
''',
}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.uri = args.uri
        self.python = args.python or interpreter_of(args.playbook)
        self.community_python = interpreter_of(args.community_playbook)
        os.makedirs(os.path.join(WORK, 'logs'), exist_ok=True)
        os.makedirs(os.path.join(WORK, 'empty-collections'), exist_ok=True)
        for name, text in PLAYBOOKS.items():
            with open(os.path.join(WORK, name + '.yml'), 'w') as handle:
                handle.write(text)
        self.inventories = {}
        for key, python in (('project', self.python), ('community', self.community_python)):
            path = os.path.join(WORK, 'inventory-%s.ini' % key)
            with open(path, 'w') as handle:
                handle.write('localhost ansible_connection=local ansible_python_interpreter=%s\n' % python)
            self.inventories[key] = path
        self.base_env = dict(os.environ)
        self.base_env.update(
            ANSIBLE_STDOUT_CALLBACK='fvbench',
            ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, 'callback_plugins'),
            ANSIBLE_LOCALHOST_WARNING='false',
            ANSIBLE_INVENTORY_UNPARSED_WARNING='false',
            ANSIBLE_RETRY_FILES_ENABLED='false',
            ANSIBLE_NOCOLOR='true',
        )
        self.results: Dict[str, Any] = {'baseline': [], 'runs': {}}
        self.counter = 0

    # -- one measurement --
    def playbook(self, variant: str, n: int, phase: str, vars_file: Optional[str]) -> Dict[str, Any]:
        community = variant == 'community'
        self.counter += 1
        tag = '%03d-%s-%s-%s' % (self.counter, variant, n, phase)
        result_file = os.path.join(WORK, 'logs', tag + '.json')
        if os.path.exists(result_file):
            os.unlink(result_file)
        env = dict(self.base_env, FVBENCH_RESULT=result_file)
        if community:
            # community.libvirt from the `ansible` package of the bench's virtualenv, nothing else.
            env['ANSIBLE_COLLECTIONS_PATH'] = os.path.join(WORK, 'empty-collections')
            env['ANSIBLE_PYTHON_INTERPRETER'] = self.community_python
        else:
            env['ANSIBLE_PYTHON_INTERPRETER'] = self.python
        cmd = [self.args.community_playbook if community else self.args.playbook,
               '-i', self.inventories['community' if community else 'project'],
               os.path.join(WORK, variant + '.yml')]
        if vars_file:
            cmd += ['-e', '@' + vars_file]
        seconds = run(cmd, env, os.path.join(WORK, 'logs', tag + '.log'))
        with open(result_file) as handle:
            summary = json.load(handle)
        failed = [t for t in summary['tasks'] if t['failed'] or t['status'] == 'unreachable']
        if failed:
            raise BenchError('%s %s N=%d: task failed: %s' % (variant, phase, n, failed[0].get('msg')))
        recap = summary['recap'].get('localhost') or {}
        task = summary['tasks'][-1] if summary['tasks'] else {}
        return {'seconds': seconds, 'changed': recap.get('changed', 0), 'task_changed': task.get('changed'),
                'elapsed': task.get('elapsed'), 'items': task.get('items'),
                'items_changed': task.get('items_changed')}

    def floor(self, n: int, phase: str, vars_file: str) -> Dict[str, Any]:
        self.counter += 1
        tag = '%03d-floor-%s-%s' % (self.counter, n, phase)
        logfile = os.path.join(WORK, 'logs', tag + '.log')
        seconds = run([self.python, os.path.join(HERE, 'floor.py'), self.uri,
                       'converge' if phase == 'converge' else 'noop', vars_file], dict(os.environ), logfile)
        with open(logfile) as handle:
            inner = json.loads(handle.read().strip().splitlines()[-1])
        return {'seconds': seconds, 'changed': None, 'elapsed': inner['elapsed'], 'connect': inner['connect']}

    def measure(self, variant: str, n: int, phase: str, vars_file: Optional[str]) -> Dict[str, Any]:
        if variant == 'floor':
            return self.floor(n, phase, vars_file)
        return self.playbook(variant, n, phase, vars_file)

    # -- the whole run --
    def baseline(self, count: int) -> None:
        for index in range(count):
            log('baseline: ansible-playbook with one ping task (%d/%d)' % (index + 1, count))
            result = self.playbook('baseline', 0, 'ping', None)
            self.results['baseline'].append(result['seconds'])
            log('  %.2f s' % result['seconds'])

    def write_vars(self, n: int) -> str:
        names = ['%s%03d' % (PREFIX, i) for i in range(1, n + 1)]
        data = {
            'bench_uri': self.uri,
            'bench_names': names,
            'bench_defaults': {'state': 'present', 'memory': MEMORY_MIB, 'vcpus': VCPUS, 'virt_type': VIRT_TYPE},
            'bench_vms': [{'name': name} for name in names],
            'bench_domains': [{'name': name, 'xml': domain_xml(name)} for name in names],
        }
        path = os.path.join(WORK, 'vars-%d.json' % n)
        with open(path, 'w') as handle:
            json.dump(data, handle)
        return path

    def variant(self, variant: str, n: int, vars_file: str, names: List[str]) -> None:
        removed = cleanup(self.uri)
        if removed:
            log('  removed %d leftover fvbench-* domain(s)' % removed)
        runs = self.results['runs'].setdefault('%s/%d' % (variant, n), {'converge': None, 'noop': []})
        log('%s N=%d: (a) first converge' % (variant, n))
        first = self.measure(variant, n, 'converge', vars_file)
        runs['converge'] = first
        log('  %.2f s%s' % (first['seconds'], self._inner(first)))
        if variant != 'floor' and not first['changed']:
            raise BenchError('%s N=%d: the first converge reported no change' % (variant, n))
        check_defined(self.uri, names, variant)
        repeats = self.args.repeat if variant in ('vms', 'floor') else self.args.repeat_loops
        for index in range(repeats):
            log('%s N=%d: (b) no-op re-run (%d/%d)' % (variant, n, index + 1, repeats))
            again = self.measure(variant, n, 'noop', vars_file)
            runs['noop'].append(again)
            log('  %.2f s%s' % (again['seconds'], self._inner(again)))
            if variant != 'floor' and (again['changed'] or again['task_changed'] or again.get('items_changed')):
                raise BenchError('%s N=%d: the no-op re-run reported changes (recap changed=%s, items changed=%s)'
                                 % (variant, n, again['changed'], again.get('items_changed')))
        removed = cleanup(self.uri)
        log('  removed the %d fvbench-* domains' % removed)

    @staticmethod
    def _inner(result: Dict[str, Any]) -> str:
        return '' if result.get('elapsed') is None else ' (own time %.3f s)' % result['elapsed']

    def run(self) -> None:
        self.results['started'] = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
        self.baseline(self.args.baseline_runs)
        for n in self.args.sizes:
            vars_file = self.write_vars(n)
            names = ['%s%03d' % (PREFIX, i) for i in range(1, n + 1)]
            for variant in self.args.variants:
                if variant in LOOP_VARIANTS and n > self.args.loop_max:
                    continue
                self.variant(variant, n, vars_file, names)
        self.baseline(self.args.baseline_runs)
        self.results['finished'] = datetime.datetime.now().astimezone().isoformat(timespec='seconds')

    # -- facts and report --
    def machine(self) -> Dict[str, str]:
        cpu = 'unknown'
        mem = 'unknown'
        try:
            with open('/proc/cpuinfo') as handle:
                cpu = next((line.split(':', 1)[1].strip() for line in handle if line.startswith('model name')), cpu)
            with open('/proc/meminfo') as handle:
                kib = int(next(line.split()[1] for line in handle if line.startswith('MemTotal')))
                mem = '%.1f GiB' % (kib / 1024 / 1024)
        except (OSError, StopIteration, ValueError):
            pass
        conn = connect(self.uri)
        try:
            lib = conn.getLibVersion()
            hv = conn.getVersion()
            hvtype = conn.getType()
        finally:
            conn.close()

        def version(v: int) -> str:
            return '%d.%d.%d' % (v // 1000000, v // 1000 % 1000, v % 1000)

        env = dict(self.base_env)
        core = _core_version(output([self.args.playbook, '--version']))
        community_core = _core_version(output([self.args.community_playbook, '--version']))
        site = output([self.community_python, '-c', 'import ansible_collections, os; '
                       'print(os.path.dirname(list(ansible_collections.__path__)[0]))'])
        manifest = os.path.join(site, 'ansible_collections', 'community', 'libvirt', 'MANIFEST.json')
        try:
            with open(manifest) as handle:
                community_libvirt = json.load(handle)['collection_info']['version']
        except (OSError, ValueError, KeyError):
            community_libvirt = 'unknown'
        ansible_pkg = output([self.community_python, '-c',
                              'import importlib.metadata as m; print(m.version("ansible"))'], env)
        head = output(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'])
        dirty = output(['git', '-C', ROOT, 'status', '--porcelain', '--', 'plugins'])
        return {
            'firmvisor source': 'commit %s%s' % (head, ' + uncommitted changes in plugins/' if dirty else ''),
            'host CPUs (nproc)': str(os.cpu_count()),
            'CPU model': cpu,
            'memory': mem,
            'kernel': '%s %s' % (platform.system(), platform.release()),
            'libvirt': 'libvirtd %s (%s %s), %s' % (version(lib), hvtype, version(hv), self.uri),
            'python': platform.python_version(),
            'firmvisor variants': 'ansible-core %s (%s), python %s' % (core, self.args.playbook, self.python),
            'community variant': 'ansible %s (ansible-core %s), community.libvirt %s, python %s' % (
                ansible_pkg, community_core, community_libvirt, self.community_python),
            'ANSIBLE_CONFIG': os.environ.get('ANSIBLE_CONFIG', '(none)'),
            'date': self.results.get('finished') or self.results.get('started', ''),
        }


def _core_version(text: str) -> str:
    match = re.search(r'core ([0-9][^\]\s]*)', text)
    return match.group(1) if match else text.splitlines()[0] if text else 'unknown'


def median(values: List[float]) -> float:
    return statistics.median(values) if values else float('nan')


def summarize(results: Dict[str, Any], sizes: List[int], variants: List[str]) -> Dict[str, Any]:
    base = median(results['baseline'])
    rows = []
    for n in sizes:
        for variant in variants:
            runs = results['runs'].get('%s/%d' % (variant, n))
            if not runs or runs['converge'] is None:
                continue
            noop = runs['noop']
            rows.append({
                'n': n, 'variant': variant,
                'converge': runs['converge']['seconds'],
                'converge_own': runs['converge'].get('elapsed'),
                'noop': median([r['seconds'] for r in noop]) if noop else None,
                'noop_own': (median([r['elapsed'] for r in noop]) if noop and noop[0].get('elapsed') is not None
                             else None),
                'noop_runs': len(noop),
            })
    return {'baseline': base, 'rows': rows}


def _row(summary: Dict[str, Any], n: int, variant: str) -> Optional[Dict[str, Any]]:
    return next((r for r in summary['rows'] if r['n'] == n and r['variant'] == variant), None)


def targets(summary: Dict[str, Any], sizes: List[int]) -> List[Dict[str, Any]]:
    n = max(sizes)
    vms = _row(summary, n, 'vms')
    checks = []
    if vms and vms['noop'] is not None:
        checks.append({'target': '`vms` no-op re-run of %d VMs within %.0f s of wall time' % (n, TARGET_NOOP_SECONDS),
                       'value': '%.2f s (%.2f x baseline)' % (vms['noop'], vms['noop'] / summary['baseline']),
                       'met': vms['noop'] <= TARGET_NOOP_SECONDS})
    # The speedup over the community loop at the largest size the loop ran.
    looped = [size for size in sizes if _row(summary, size, 'community')]
    vms, community = (_row(summary, max(looped), v) for v in ('vms', 'community')) if looped else (None, None)
    if vms and community and vms['noop'] and community['noop']:
        speedup = community['noop'] / vms['noop']
        checks.append({'target': '`vms` no-op (%d) at least %.0fx faster than the community.libvirt loop'
                                 % (max(looped), TARGET_SPEEDUP),
                       'value': '%.1fx (%.2f s vs %.2f s)' % (speedup, vms['noop'], community['noop']),
                       'met': speedup >= TARGET_SPEEDUP})
    for size in sizes:
        vms, floor = _row(summary, size, 'vms'), _row(summary, size, 'floor')
        if not vms or not floor:
            continue
        for phase, label in (('converge', 'first converge'), ('noop', 'no-op')):
            own, low = vms[phase + '_own'], floor[phase + '_own']
            if own is None or not low:
                continue
            checks.append({'target': '`vms` own time within %.1fx the floor, %s, N=%d' % (TARGET_FLOOR_FACTOR, label, size),
                           'value': '%.3f s vs %.3f s = %.2fx' % (own, low, own / low),
                           'met': own / low <= TARGET_FLOOR_FACTOR})
    return checks


def floor_own(results: Dict[str, Any], n: int, phase: str) -> Optional[float]:
    runs = results['runs'].get('floor/%d' % n)
    if not runs:
        return None
    if phase == 'converge':
        return runs['converge']['elapsed']
    return median([r['elapsed'] for r in runs['noop']])


def render(results: Dict[str, Any], machine: Dict[str, str], sizes: List[int], variants: List[str],
           repeat: int, repeat_loops: int) -> str:
    summary = summarize(results, sizes, variants)
    base = summary['baseline']
    # The floor's "own time" is its time after connecting, like the module's `elapsed`.
    for row in summary['rows']:
        if row['variant'] == 'floor':
            row['converge_own'] = floor_own(results, row['n'], 'converge')
            row['noop_own'] = floor_own(results, row['n'], 'noop')
    lines = [BEGIN, '', '## Machine', '', '| | |', '|---|---|']
    lines += ['| %s | %s |' % (key, value) for key, value in machine.items()]
    lines += [
        '', '## Results', '',
        'Baseline (`ansible-playbook` with one `ping` task on localhost, median of %d runs: '
        'before and after the variants): **%.2f s**. "x base" is wall time / baseline.'
        % (len(results['baseline']), base),
        '',
        '"Own time" is the time spent after connecting to libvirt: the `elapsed` that `vms` returns, '
        'and the floor script\'s own clock. No-op columns are the median of %d runs for `vms` and the '
        'floor, %d for the loops.' % (repeat, repeat_loops),
        '',
        '| N | variant | (a) converge s | x base | own s | (b) no-op s | x base | own s |',
        '|---:|---|---:|---:|---:|---:|---:|---:|',
    ]

    def fmt(v, spec='%.2f'):
        return '' if v is None else spec % v

    for row in summary['rows']:
        lines.append('| %d | %s | %s | %s | %s | %s | %s | %s |' % (
            row['n'], LABELS[row['variant']], fmt(row['converge']), fmt(row['converge'] / base),
            fmt(row['converge_own'], '%.3f'), fmt(row['noop']), fmt(row['noop'] and row['noop'] / base),
            fmt(row['noop_own'], '%.3f')))
    checks = targets(summary, sizes)
    lines += ['', '## Targets', '', '| target | measured | met |', '|---|---|---|']
    lines += ['| %s | %s | %s |' % (c['target'], c['value'], 'yes' if c['met'] else '**no**') for c in checks]
    lines += ['', 'Raw numbers: `.cache/bench/results.json` (not committed); run logs: `.cache/bench/logs/`.',
              '', END]
    return '\n'.join(lines) + '\n'


HEADER = '''# Performance

This report is generated by `make bench` (`tests/bench/run.sh`); see the top of that file.

''' + BEGIN + '\n' + END + '\n'


def replace_section(path: str, begin: str, end: str, generated: str, header: str = '') -> None:
    """Writes ``generated`` (which starts with ``begin``) in place of the report's section from ``begin``
    to ``end``; a report without that section gets it at its end (a new report starts with ``header``)."""
    text = header
    if os.path.exists(path):
        with open(path) as handle:
            text = handle.read()
    if begin not in text or end not in text:
        text = text.rstrip('\n') + '\n\n' + begin + '\n' + end + '\n'
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(path, 'w') as handle:
        handle.write(head + generated.rstrip('\n') + tail)


def write_report(path: str, generated: str) -> None:
    replace_section(path, BEGIN, END, generated, HEADER)


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--playbook', help='ansible-playbook of the project environment (firmvisor variants)')
    parser.add_argument('--python', help='python for the firmvisor modules and the floor '
                                         '(default: the interpreter of --playbook)')
    parser.add_argument('--community-playbook', help='ansible-playbook of the bench virtualenv')
    parser.add_argument('--uri', default='qemu:///system')
    parser.add_argument('--sizes', default='50,200,1000', type=lambda s: [int(x) for x in s.split(',') if x])
    parser.add_argument('--loop-max', type=int, default=200, help='largest N the one-module-per-VM loops run at')
    parser.add_argument('--variants', default=','.join(VARIANTS),
                        type=lambda s: [x for x in s.split(',') if x])
    parser.add_argument('--repeat', type=int, default=3, help='no-op runs of vms and the floor (median)')
    parser.add_argument('--repeat-loops', type=int, default=1, help='no-op runs of the loops (median)')
    parser.add_argument('--baseline-runs', type=int, default=3, help='baseline runs before and after')
    parser.add_argument('--report', default=os.path.join(ROOT, 'docs', 'performance.md'))
    parser.add_argument('--no-write', action='store_true', help='print the report instead of writing it')
    parser.add_argument('--cleanup-only', action='store_true', help='remove fvbench-* domains and exit')
    args = parser.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error('unknown variant(s): %s' % ', '.join(sorted(unknown)))
    if not args.cleanup_only and not (args.playbook and args.community_playbook):
        parser.error('--playbook and --community-playbook are required')
    return args


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    if args.cleanup_only:
        removed = cleanup(args.uri)
        if removed:
            print('bench: removed %d fvbench-* domain(s)' % removed)
        return 0
    signal.signal(signal.SIGTERM, _on_sigterm)
    # A background job of a non-interactive shell starts with SIGINT ignored: take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.makedirs(WORK, exist_ok=True)
    import_collection()
    bench = Bench(args)
    check = subprocess.run([bench.python, '-c', 'import libvirt'], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise BenchError('%s cannot import libvirt (the firmvisor modules need libvirt-python): %s'
                         % (bench.python, check.stderr.strip()))
    log('bench: firmvisor variants with %s (python %s); community variant with %s'
        % (args.playbook, bench.python, args.community_playbook))
    log('bench: sizes %s, variants %s, logs in %s' % (args.sizes, ', '.join(args.variants),
                                                      os.path.join(WORK, 'logs')))
    try:
        bench.run()
    finally:
        log('bench: final cleanup')
        cleanup(args.uri)
    with open(os.path.join(WORK, 'results.json'), 'w') as handle:
        json.dump(bench.results, handle, indent=1)
    report = render(bench.results, bench.machine(), args.sizes, args.variants, args.repeat, args.repeat_loops)
    print(report)
    if not args.no_write:
        write_report(args.report, report)
        log('bench: wrote %s' % args.report)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print('bench: FAILED: %s' % exc, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print('bench: interrupted; fvbench-* domains removed', file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print('bench: terminated; fvbench-* domains removed', file=sys.stderr)
        sys.exit(143)
