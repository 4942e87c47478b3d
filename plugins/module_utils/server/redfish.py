# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bare-metal server through its BMC (Redfish, on sushy): the image's ISO installs itself onto the
server's disk from virtual media, and the server comes up from that disk.

What is read: the BMC's system (power, the CD and floppy slots, the boot override) and the server
itself over SSH (``address``:``port`` with ``ssh_private_key``): ``/etc/firmvisor/version``,
whether ``/proc/cmdline`` has ``fv.live=1`` (the ISO's live system) and, when live, the installer's
journal. A server that runs the declared version from its disk is left alone. Otherwise the plan
goes on from where the server stands (``_start``):

    boot     write the seed floppy (seed_path, served at seed_url) -> insert the CD (image_url) and
             the floppy (seed_url) -> boot override Cd once -> power on (or force a restart)
             -> wait for the live system to answer SSH
    install  -> wait until the live installer says it wrote and verified the disk
    reboot   -> eject the CD -> boot override to the disk -> force a restart -> wait for SSH from the
             disk (not live) with the declared version -> eject the floppy (the first disk boot
             imported the seed) -> clear the boot override

A failure undoes this run's steps that can be undone, newest first (media ejected, the override
cleared), except that a CD the live installer is writing the disk from stays in (ejecting it would
break the install): the error says so, and a second run waits for that installer.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible.module_utils.urls import open_url

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError, FvTimeout
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import Action, Actual, Note, Plan
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import Resource, converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.waiter import Waiter
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.redfish.bmc import Bmc, BmcAccess, BmcSystem
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.disks import (
    MIN_MEMORY_MIB, check_capacity, choose_install_disk, describe_disk, install_path,
)
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.probe import Image, load_image, ssh_answers
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.seed import (
    build_seed, ensure_seed_image, needs_rebuild,
)

SEED_FORMAT = 'floppy'
SHOWN = ('power', 'cd', 'floppy', 'boot_override', 'host', 'version')
# the installed disk refusing the seed's key this long means its boot missed the seed: restart it
SEED_GRACE = 45.0
SEED_RETRIES = 2


# ---- what the live installer says: the one place that reads it ------------------------------------
# Lines of the firmvisor-install unit's journal. Both installers (image 0.1.0's fv-install and the
# reworked fvinstall.py) write "installed firmvisor <version> on <disk> and verified it" after the
# read-back of every region, and "FAILED: <why>" when they stop; a disk that already holds firmvisor
# is "already holds firmvisor <version>: not rewritten" (0.1.0) or "holds a firmvisor install (...):
# not installing" (reworked). systemd says "skipped because of an unmet condition" when the seed gave
# no install_to.
_INSTALLED = re.compile(r'installed firmvisor (\S+) on (\S+) and verified it')
_ON_DISK = re.compile(r'already holds firmvisor \S+: not rewritten|holds a firmvisor install.*: not installing')
_REFUSED = re.compile(r'holds .*: not installing|no install_to in the seed|skipped because of an unmet condition')
_FAILED = re.compile(r'(?:^|firmvisor: install: )(?:FAILED|error): ')
_STARTED = re.compile(r'installing firmvisor \S+')


def installer_outcome(lines: Iterable[str]) -> Tuple[str, str]:
    """(state, the line that says so): ``installed`` (written and verified), ``on_disk`` (the disk
    holds firmvisor already: left alone), ``failed`` (stopped, or refused the disk), ``installing``
    (started), ``idle`` (nothing yet)."""
    state, said = 'idle', ''
    for line in lines:
        if _INSTALLED.search(line):
            return 'installed', line
        if _ON_DISK.search(line):
            return 'on_disk', line
        if _FAILED.search(line) or _REFUSED.search(line):
            return 'failed', line
        if _STARTED.search(line):
            state, said = 'installing', line
    return state, said


# ---- the server over SSH ---------------------------------------------------------------------------
# One SSH call: the version, live or not and, live, the installer's journal of this boot.
PROBE = ('echo "version=$(cat /etc/firmvisor/version 2>/dev/null)"; '
         'case " $(cat /proc/cmdline) " in *" fv.live=1 "*) echo live=1; '
         'journalctl -b -u firmvisor-install -o cat --no-pager 2>/dev/null | tail -n 400 | sed "s/^/journal=/";; '
         '*) echo live=0;; esac')
FOLLOW = 'journalctl -b -u firmvisor-install -o cat -f --no-pager -n all'


def content_length(url: str) -> Optional[str]:
    """The Content-Length a HEAD of url answers (None when not given); urllib's errors as raised."""
    with open_url(url, method='HEAD', timeout=10) as reply:
        return reply.headers.get('Content-Length')


@dataclass(frozen=True)
class HostState:
    """What the server says over SSH; ``answers`` only when our key logged in."""
    answers: bool = False
    version: Optional[str] = None
    live: bool = False
    journal: Tuple[str, ...] = ()
    seen: str = 'not asked'
    greets: bool = False     # an SSH server greets (even when it does not let us in)

    @property
    def runs(self) -> Optional[str]:
        """'firmvisor' (from its disk), 'live' (the ISO's live system) or None (no answer)."""
        if not self.answers:
            return None
        return 'live' if self.live else 'firmvisor'

    @property
    def installer(self) -> Tuple[str, str]:
        return installer_outcome(self.journal) if self.live else ('idle', '')

    def describe(self) -> str:
        if self.runs == 'firmvisor':
            return 'firmvisor %s answers SSH from its disk' % (self.version or '(no version)')
        if self.runs == 'live':
            state, line = self.installer
            return 'the live system (firmvisor %s) answers SSH; its installer: %s%s' % (
                self.version or '?', state, ' (%s)' % _short(line) if line else '')
        return self.seen


def parse_probe(text: str) -> HostState:
    version, live, journal = None, False, []
    for line in text.splitlines():
        if line.startswith('version='):
            version = line[len('version='):].strip() or None
        elif line.startswith('live='):
            live = line.strip() == 'live=1'
        elif line.startswith('journal='):
            journal.append(line[len('journal='):])
    return HostState(True, version, live, tuple(journal), 'answered', greets=True)


class JournalFollower:
    """The live installer's journal, streamed over one SSH session (``journalctl -f``): its
    "installed ... and verified it" line comes seconds before the installer reboots the server, too
    late for a poll to be sure to see it. A dropped session is opened again (at most every few
    seconds); ``lines`` keeps every line seen."""

    def __init__(self, argv: Sequence[str], reconnect_after: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.argv = list(argv)
        self.reconnect_after = reconnect_after
        self.clock = clock
        self.lines: List[str] = []
        self._queue: 'queue.Queue[Optional[str]]' = queue.Queue()
        self._proc: Optional[subprocess.Popen] = None
        self._started = float('-inf')

    @property
    def connected(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def poll(self) -> List[str]:
        """New lines since the last call (the session opened again when it dropped)."""
        if not self.connected and self.clock() - self._started >= self.reconnect_after:
            self._start()
        new = []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                new.append(line)
        self.lines += new
        return new

    def _start(self) -> None:
        self.close()
        self._started = self.clock()
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, errors='replace')
        except OSError:
            return
        self._proc = proc
        threading.Thread(target=self._read, args=(proc,), daemon=True, name='fv-journal').start()

    def _read(self, proc: subprocess.Popen) -> None:
        if proc.stdout is None:
            return
        for line in proc.stdout:
            self._queue.put(line.rstrip('\n'))
        self._queue.put(None)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()


class SshHost:
    """The server's SSH, as root with ``key``. Host keys are not checked here: the live system and
    the installed one each make their own at boot, and this only reads the version; the provision
    role records the installed host's keys once it is ready."""

    def __init__(self, address: str, port: int = 22, key: Optional[str] = None, ssh: str = 'ssh',
                 connect_timeout: int = 10, command_timeout: float = 60.0, greeting_timeout: float = 5.0) -> None:
        self.address, self.port, self.key = address, port, key
        self.ssh = ssh
        self.greeting_timeout = greeting_timeout
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout

    @property
    def where(self) -> str:
        return '%s:%d' % (self.address, self.port)

    def argv(self, command: str, keepalive: bool = False) -> List[str]:
        argv = [self.ssh, '-p', str(self.port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
                '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
                '-o', 'ConnectTimeout=%d' % self.connect_timeout]
        if self.key:
            argv += ['-i', self.key, '-o', 'IdentitiesOnly=yes']
        if keepalive:
            argv += ['-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=2']
        return argv + ['root@%s' % self.address, command]

    def state(self) -> HostState:
        # a port forward (or a BMC's NAT) may accept connections with nothing behind: the greeting counts
        if not ssh_answers(self.address, self.port, timeout=self.greeting_timeout):
            return HostState(seen='no SSH greeting on %s' % self.where)
        try:
            done = subprocess.run(self.argv(PROBE), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors='replace', timeout=self.command_timeout, check=False)
        except subprocess.TimeoutExpired:
            return HostState(seen='SSH on %s did not answer within %ds' % (self.where, self.command_timeout))
        except OSError as exc:
            raise FvError('cannot run %s: %s' % (self.ssh, exc))
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ['exit %d' % done.returncode])[-1]
            return HostState(seen='SSH on %s greets but does not let us in (%s)' % (self.where, _short(why)),
                             greets=True)
        return parse_probe(done.stdout)

    def follow(self) -> JournalFollower:
        return JournalFollower(self.argv(FOLLOW, keepalive=True))


def management_address(params: Mapping[str, Any]) -> Optional[str]:
    """``address``, else the static address of ``network`` (without its prefix)."""
    if params.get('address'):
        return params['address']
    network = params.get('network') or {}
    if network.get('address'):
        return str(network['address']).split('/', 1)[0]
    return None


def libvirt_uri(address: str, port: int) -> str:
    return 'qemu+ssh://root@%s:%d/system' % (address, port)


# ---- the resource ----------------------------------------------------------------------------------
class RedfishServer(Resource):
    """``params`` are the server module's; ``host`` (tests) stands in for the server's SSH."""
    noun = 'server'

    def __init__(self, params: Mapping[str, Any], check_mode: bool = False, host: Any = None,
                 waiter: Optional[Waiter] = None, bmc: Optional[Bmc] = None) -> None:
        super().__init__(check_mode, waiter)
        self.params = params
        self._bmc = bmc
        self._host = host
        self._system: Optional[BmcSystem] = None
        self.timings: List[Dict[str, Any]] = []   # {phase, step, seconds} of every step run

    # ---- connections ------------------------------------------------------------------------------
    @property
    def bmc(self) -> Bmc:
        if self._bmc is None:
            self._bmc = Bmc(BmcAccess.from_options(self.params['bmc']))
        return self._bmc.connect()

    def system(self) -> BmcSystem:
        if self._system is None:
            self._system = self.bmc.system(self.params.get('system'))
        return self._system

    @property
    def host(self) -> Any:
        if self._host is None:
            address = management_address(self.params)
            if address:
                self._host = SshHost(address, self.params.get('port') or 22, self.params.get('ssh_private_key'))
        return self._host

    def close(self) -> None:
        if self._bmc is not None:
            self._bmc.close()

    def what(self, name: str) -> str:
        return 'server %s' % name

    # ---- reading ----------------------------------------------------------------------------------
    def read(self, keys: Sequence[Any]) -> Dict[Any, Optional[Actual]]:
        system = self.system()
        present = self.params.get('state', 'present') == 'present'
        power, boot = system.status()
        # A server that is on is asked over SSH beside the BMC's other reads (each a round trip to the
        # BMC): a re-run that finds everything in place costs the slower of the two, not their sum.
        asked = present and power != 'Off' and self.host is not None
        with ThreadPoolExecutor(max_workers=1) as pool:
            probe = pool.submit(self.host.state) if asked else None
            cd = system.inserted_media('cd')
            floppy = self._floppy_slot(system)
        answer = probe.result() if probe else None
        host = HostState(seen='not asked (state absent)')
        if present:
            if power == 'Off':
                host = HostState(seen='powered off')
            elif answer is None:
                host = HostState(seen='no management address')
            else:
                host = answer
        runtime = {
            'power': power,
            'cd': cd['image'] if cd['inserted'] else None,
            'floppy': floppy['image'] if floppy and floppy['inserted'] else None,
            'floppy_slot': floppy is not None,
            'boot_override': pending_override(boot),
            'host': host.runs,
            'version': host.version if host.runs == 'firmvisor' else None,
            'host_state': host,
        }
        return {key: Actual(system, runtime=runtime) for key in keys}

    @staticmethod
    def _floppy_slot(system: BmcSystem) -> Optional[Dict[str, Any]]:
        try:
            return system.inserted_media('floppy')
        except FvError as exc:
            if 'no virtual media slot' in str(exc):
                return None
            raise

    def view(self, key: Any, actual: Optional[Actual]) -> Dict[str, Any]:
        runtime = actual.runtime if actual is not None else {}
        address = management_address(self.params)
        port = self.params.get('port') or 22
        system = actual.obj.label if actual is not None else None
        return {
            'name': key, 'driver': 'redfish', 'bmc': self.bmc.access.url, 'system': system,
            'power': runtime.get('power'), 'cd': runtime.get('cd'), 'floppy': runtime.get('floppy'),
            'boot_override': runtime.get('boot_override'), 'host': runtime.get('host'),
            'version': runtime.get('version'), 'address': address, 'port': port,
            'uri': libvirt_uri(address, port) if address else None,
        }

    def result(self, plan: Plan, view: Mapping[str, Any], notes: Sequence[Note]) -> Dict[str, Any]:
        return {'server': dict(view), 'address': view.get('address'), 'port': view.get('port'),
                'version': view.get('version'), 'uri': view.get('uri')}

    # ---- planning ---------------------------------------------------------------------------------
    def plan(self, params: Mapping[str, Any], actual: Optional[Actual]) -> Plan:
        if actual is None:  # a BMC's system is always there (a missing one fails the read)
            raise FvError('server %s: nothing was read from the BMC' % params['name'])
        name = params['name']
        if params.get('state') == 'absent':
            return self._removal(name, actual)
        what = self.what(name)
        try:
            image = load_image(params['image'])
            self._require(params)
        except FvError as exc:
            raise FvError('%s: %s' % (what, exc))
        before = self.view(name, actual)
        host: HostState = actual.runtime['host_state']
        force = bool(params.get('install_force'))
        if host.runs == 'firmvisor' and host.version == image.version:
            return self._installed(name, actual, before)
        if host.runs == 'firmvisor' and not params.get('reflash'):
            warning = ('%s runs firmvisor %s from its disk, %s is declared: not reinstalled (reflash=true '
                       'installs the declared image over it, with a fresh state)' % (what, host.version, image.version))
            return Plan(self, name, what, before, before, SHOWN, warnings=(warning,),
                        facts={'reflash_required': True})
        if host.runs == 'firmvisor':
            force = True  # reflash: the installer refuses a disk that holds firmvisor without it
        try:
            return self._install(params, actual, before, image, force)
        except FvError as exc:
            if str(exc).startswith(what):
                raise
            raise FvError('%s: %s' % (what, exc), **exc.details) from None

    def _require(self, params: Mapping[str, Any]) -> None:
        for option, why in (('image_url', 'where the BMC downloads the ISO from'),
                            ('seed_url', 'where the BMC downloads the seed floppy from'),
                            ('seed_path', 'the local file served at seed_url that the seed floppy is written to')):
            if not params.get(option):
                raise FvError('%s is required with driver redfish (%s)' % (option, why))
        if not management_address(params):
            raise FvError('address is required with driver redfish: the management address the server answers '
                          'SSH on once it runs (or give a static network.address)')
        folder = os.path.dirname(os.path.abspath(params['seed_path']))
        if not os.path.isdir(folder):
            raise FvError('seed_path %s: directory %s does not exist' % (params['seed_path'], folder))

    def _start(self, host: HostState, version: str, seed_changes: bool) -> str:
        """Where the flow starts, from what the server is doing: ``boot`` (from the CD), ``install``
        (a live installer of this version is running: wait for it) or ``reboot`` (it has written
        the disk: boot that)."""
        if host.runs != 'live' or host.version != version:
            return 'boot'
        state, line = host.installer
        if state in ('installed', 'on_disk'):
            return 'reboot'
        if state == 'failed':
            if seed_changes:
                return 'boot'   # a new seed (install_force, another disk) gets another try
            raise FvError('the live installer on %s stopped: %s. Fix the cause (install_force: true installs over '
                          'a disk that holds data or another install) and run again'
                          % (self.host.where, line))
        return 'install'

    def _install(self, params: Mapping[str, Any], actual: Actual, before: Dict[str, Any], image: Image,
                 force: bool) -> Plan:
        name, what = params['name'], self.what(params['name'])
        system: BmcSystem = actual.obj
        runtime = actual.runtime
        host: HostState = runtime['host_state']
        if not runtime['floppy_slot']:
            raise FvError('the BMC offers no Floppy or USBStick virtual media slot for the seed')
        seed, disk = self._seed(params, system, image, force)
        seed_path, seed_url, image_url = params['seed_path'], params['seed_url'], params['image_url']
        warnings = self._check_url(image_url, image)
        seed_changes = needs_rebuild(seed, seed_path, SEED_FORMAT)
        floppy_ok = runtime['floppy'] == seed_url and not seed_changes
        start = self._start(host, image.version, seed_changes)
        timeout = params['wait_timeout']
        steps = _Steps(self, before)
        if start == 'boot':
            if seed_changes:
                chosen = '' if disk.get('source') == 'operator' else ': ' + describe_disk(disk)
                steps.add('media', 'write the seed floppy %s (install_to %s%s)' % (seed_path, seed['install_to'], chosen),
                          lambda: self._write_seed(seed, seed_path, seed_url))
            if runtime['cd'] != image_url:
                steps.add('media', 'insert the CD %s' % image_url, lambda: system.insert_media('cd', image_url),
                          undo=lambda: self._eject_cd(system), undo_description='eject the CD', cd=image_url)
            if not floppy_ok:
                steps.add('media', 'insert the floppy %s' % seed_url, lambda: self._insert_floppy(system, seed_url),
                          undo=lambda: system.eject_media('floppy'), undo_description='eject the floppy',
                          floppy=seed_url)
                floppy_ok = True
            if runtime['boot_override'] != 'Cd':
                steps.add('media', 'boot override: Cd, once', lambda: system.set_boot_override('Cd', 'Once'),
                          undo=system.clear_boot_override, undo_description='clear the boot override',
                          boot_override='Cd')
            if runtime['power'] == 'Off':
                steps.add('boot', 'power on', lambda: system.power('On', timeout=timeout), power='On')
            else:
                steps.add('boot', 'force a restart (power is %s)' % runtime['power'],
                          lambda: system.power('ForceRestart', timeout=timeout), power='On')
            steps.wait('boot', 'the live system (firmvisor %s) to answer SSH on %s' % (image.version, self.host.where),
                       lambda: self._wait_live(system, image.version, timeout), host='live')
        if start in ('boot', 'install'):
            steps.wait('install', 'the live installer to write and verify %s' % seed['install_to'],
                       lambda: self._wait_installer(system, timeout))
        if not floppy_ok:
            # the first boot from the disk imports the seed from the floppy
            if seed_changes:
                steps.add('reboot', 'write the seed floppy %s' % seed_path,
                          lambda: self._write_seed(seed, seed_path, seed_url))
            steps.add('reboot', 'insert the floppy %s' % seed_url, lambda: self._insert_floppy(system, seed_url),
                      undo=lambda: system.eject_media('floppy'), undo_description='eject the floppy',
                      floppy=seed_url)
        if start == 'boot' or runtime['cd'] is not None:
            steps.add('reboot', 'eject the CD (the disk is written)', lambda: system.eject_media('cd'), cd=None)
        steps.add('reboot', 'boot override: Hdd, once', lambda: system.set_boot_override('Hdd', 'Once'),
                  undo=system.clear_boot_override, undo_description='clear the boot override',
                  boot_override=None)
        steps.add('reboot', 'force a restart into the installed disk',
                  lambda: self._restart_into_disk(system, image.version, timeout))
        steps.wait('ready', 'firmvisor %s to answer SSH from the disk on %s' % (image.version, self.host.where),
                   lambda: self._wait_disk(system, image.version, timeout), host='firmvisor', version=image.version)
        steps.add('ready', 'eject the floppy (the seed is imported)', lambda: system.eject_media('floppy'),
                  floppy=None)
        steps.add('ready', 'clear the boot override', system.clear_boot_override, boot_override=None)
        actions, after = steps.done(params.get('wait', True))
        declared = ('power', 'cd', 'floppy', 'host', 'version') if params.get('wait', True) else ('power',)
        return Plan(self, name, what, before, after, SHOWN, runtime={key: after[key] for key in declared},
                    actions=tuple(actions), warnings=tuple(warnings),
                    facts={'reflash_required': False, 'install_to': seed['install_to']})

    def _installed(self, name: str, actual: Actual, before: Dict[str, Any]) -> Plan:
        """It runs the declared version from its disk: only this collection's leftovers of an earlier
        run (its media, a Cd override) are removed; nothing else is written."""
        params, runtime, system = self.params, actual.runtime, actual.obj
        steps = _Steps(self, before)
        if runtime['cd'] and runtime['cd'] == params.get('image_url'):
            steps.add('ready', 'eject the CD %s (left from an earlier run)' % runtime['cd'],
                      lambda: system.eject_media('cd'), cd=None)
        if runtime['floppy'] and runtime['floppy'] == params.get('seed_url'):
            steps.add('ready', 'eject the floppy %s (left from an earlier run)' % runtime['floppy'],
                      lambda: system.eject_media('floppy'), floppy=None)
        if runtime['boot_override'] == 'Cd':
            steps.add('ready', 'clear the boot override Cd (left from an earlier run)', system.clear_boot_override,
                      boot_override=None)
        actions, after = steps.done(True)
        return Plan(self, name, self.what(name), before, after, SHOWN,
                    runtime={key: after[key] for key in ('cd', 'floppy', 'host', 'version')},
                    actions=tuple(actions), facts={'reflash_required': False})

    def _removal(self, name: str, actual: Actual) -> Plan:
        """Eject every medium, clear the override, power off; the disks are never touched."""
        runtime, system = actual.runtime, actual.obj
        before = self.view(name, actual)
        steps = _Steps(self, before)
        if runtime['cd']:
            steps.add('media', 'eject the CD %s' % runtime['cd'], lambda: system.eject_media('cd'), cd=None)
        if runtime['floppy']:
            steps.add('media', 'eject the floppy %s' % runtime['floppy'], lambda: system.eject_media('floppy'),
                      floppy=None)
        if runtime['boot_override']:
            steps.add('media', 'clear the boot override %s' % runtime['boot_override'], system.clear_boot_override,
                      boot_override=None)
        if runtime['power'] != 'Off':
            steps.add('boot', 'power off', lambda: self._power_off(system), power='Off')
        actions, after = steps.done(True)
        return Plan(self, name, self.what(name), before, after, SHOWN,
                    runtime={key: after[key] for key in ('power', 'cd', 'floppy')}, actions=tuple(actions),
                    facts={'reflash_required': False})

    # ---- what planning reads --------------------------------------------------------------------
    def _seed(self, params: Mapping[str, Any], system: BmcSystem, image: Image,
              force: bool) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """The seed (with install_to) and the chosen disk: the inventory must take the image."""
        rule = {k: v for k, v in (params.get('install_disk') or {}).items() if v is not None} or None
        inventory = system.inventory()
        check_capacity(inventory, image.disk_size, MIN_MEMORY_MIB, rule, server='system %s' % system.label)
        disk = choose_install_disk(inventory.get('disks') or [], rule, need_bytes=image.disk_size)
        seed = build_seed(params.get('hostname') or params['name'], params.get('ssh_authorized_keys') or [],
                          params.get('network'), install_path(disk), install_force=force)
        return seed, disk

    @staticmethod
    def _check_url(url: str, image: Image) -> List[str]:
        """Refuses an image_url that is missing or serves another file than the image's ISO; one this
        host cannot reach is only a warning (the BMC may reach what the controller does not)."""
        try:
            length = content_length(url)
        except urllib.error.HTTPError as exc:
            raise FvError('image_url %s: HTTP %d (%s): nothing for the BMC to boot' % (url, exc.code, exc.reason))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return ['image_url %s: not reachable from here (%s); the BMC may still reach it'
                    % (url, getattr(exc, 'reason', exc))]
        if image.iso and os.path.isfile(image.iso) and length is not None and int(length) != os.path.getsize(image.iso):
            raise FvError('image_url %s serves %s bytes, but the image\'s ISO %s has %d: not the declared image'
                          % (url, length, image.iso, os.path.getsize(image.iso)))
        return []

    # ---- steps ------------------------------------------------------------------------------------
    def _write_seed(self, seed: Mapping[str, Any], path: str, url: str) -> None:
        ensure_seed_image(seed, path, SEED_FORMAT)
        try:
            length = content_length(url)
        except urllib.error.HTTPError as exc:
            raise FvError('seed_url %s: HTTP %d: it does not serve seed_path %s' % (url, exc.code, path))
        except (urllib.error.URLError, OSError, ValueError):
            return  # not reachable from here; the BMC may reach it
        if length is not None and int(length) != os.path.getsize(path):
            raise FvError('seed_url %s serves %s bytes, seed_path %s has %d: it does not serve that file'
                          % (url, length, path, os.path.getsize(path)))

    @staticmethod
    def _insert_floppy(system: BmcSystem, url: str) -> None:
        """Insert the seed, again if it was in already: the BMC copied the old seed when it was inserted."""
        system.eject_media('floppy')
        system.insert_media('floppy', url)

    def _eject_cd(self, system: BmcSystem) -> None:
        host = self.host.state() if self.host is not None else HostState()
        if host.runs == 'live' and host.installer[0] == 'installing':
            raise FvError('left in: the live installer is writing the disk from it (a second run waits for it)')
        system.eject_media('cd')

    def _power_off(self, system: BmcSystem) -> None:
        try:
            system.power('GracefulShutdown', timeout=self.params.get('shutdown_timeout') or 120)
        except FvError:
            system.power('ForceOff', timeout=self.params.get('wait_timeout') or 900)

    def _restart_into_disk(self, system: BmcSystem, version: str, timeout: float) -> None:
        host = self.host.state()
        if host.runs == 'firmvisor' and host.version == version:
            return  # the installer's own reboot already came up from the disk
        system.power('ForceRestart', timeout=timeout)

    def _waiting(self, system: BmcSystem, step: str, predicate: Callable[[], Any], timeout: float,
                 seen: Callable[[], str], interval: float) -> Any:
        """The engine's waiter, with errors that name the step, the BMC, the system and what was seen."""
        try:
            return self.waiter.wait(predicate, timeout, step, interval=interval)
        except FvTimeout:
            raise system.error('wait for %s' % step, 'timed out after %ss (last seen: %s)' % (_secs(timeout), seen()),
                               cls=FvTimeout) from None
        except FvError as exc:
            raise system.error('wait for %s' % step, str(exc)) from None

    def _wait_live(self, system: BmcSystem, version: str, timeout: float) -> None:
        last = _Last()

        def live() -> bool:
            last.state = self.host.state()
            return last.state.runs == 'live' and last.state.version == version
        self._waiting(system, 'the live system (firmvisor %s) to answer SSH on %s' % (version, self.host.where),
                      live, timeout, last, interval=2)

    def _wait_installer(self, system: BmcSystem, timeout: float) -> str:
        follower = self.host.follow()
        last = _Last()
        checked = [float('-inf')]

        def finished() -> Optional[str]:
            follower.poll()
            state, line = installer_outcome(follower.lines)
            if state == 'failed':
                raise FvError('the live installer stopped: %s' % line)
            if state in ('installed', 'on_disk'):
                return state
            now = self.waiter.clock()
            if now - checked[0] >= 15:
                # no word from the stream: the installer may have rebooted the server into its disk
                checked[0] = now
                last.state = self.host.state()
                if last.state.runs == 'firmvisor':
                    return 'rebooted into the disk'
                state, line = last.state.installer
                if state == 'failed':
                    raise FvError('the live installer stopped: %s' % line)
                if state in ('installed', 'on_disk'):
                    return state
            return None

        def seen() -> str:
            state, line = installer_outcome(follower.lines)
            return 'installer %s%s; %s' % (state, ' (%s)' % _short(line) if line else '', last())
        try:
            return self._waiting(system, 'the live installer to write and verify the disk', finished, timeout, seen,
                                 interval=1)
        finally:
            follower.close()

    def _wait_disk(self, system: BmcSystem, version: str, timeout: float) -> None:
        """Until the installed disk answers SSH with our key and the version. A disk system that greets
        but refuses the seed's key did not import the seed at that boot (image 0.1.0 may look for the
        floppy before its driver is up; it imports a seed at a later boot): it is restarted, up to
        SEED_RETRIES times, after SEED_GRACE seconds of refusals."""
        last = _Last()
        refused = {'since': None, 'restarts': 0}

        def ready() -> bool:
            last.state = self.host.state()
            if last.state.runs == 'firmvisor' and last.state.version != version:
                raise FvError('the disk boots firmvisor %s, not %s (reflash: true installs over it)'
                              % (last.state.version, version))
            if last.state.runs == 'firmvisor':
                return True
            now = self.waiter.clock()
            if not last.state.greets:
                refused['since'] = None
            elif refused['since'] is None:
                refused['since'] = now
            elif now - refused['since'] >= SEED_GRACE and refused['restarts'] < SEED_RETRIES:
                refused['since'], refused['restarts'] = None, refused['restarts'] + 1
                system.power('ForceRestart', timeout=timeout)
            return False
        self._waiting(system, 'firmvisor %s to answer SSH from the disk on %s' % (version, self.host.where),
                      ready, timeout, lambda: '%s%s' % (last(), '; restarted %d time(s) for the seed import'
                                                        % refused['restarts'] if refused['restarts'] else ''),
                      interval=2)


class _Last:
    """What a wait saw last (for its error)."""

    def __init__(self) -> None:
        self.state = HostState()

    def __call__(self) -> str:
        return self.state.describe()


class _Steps:
    """A plan's steps in order, each timed when it runs, and the view they lead to."""

    def __init__(self, server: RedfishServer, before: Mapping[str, Any]) -> None:
        self.server = server
        self.after = dict(before)
        self.actions: List[Action] = []
        self.first_wait: Optional[int] = None
        self.after_at_wait: Dict[str, Any] = {}

    def add(self, phase: str, description: str, run: Callable[[], Any], undo: Optional[Callable[[], Any]] = None,
            undo_description: str = '', **effects: Any) -> None:
        timings = self.server.timings

        def timed() -> Optional[Note]:
            began = time.monotonic()
            try:
                result = run()
            finally:
                timings.append({'phase': phase, 'step': description, 'seconds': time.monotonic() - began})
            return result if isinstance(result, Note) else None
        self.actions.append(Action(description, timed, undo, undo_description))
        self.after.update(effects)

    def wait(self, phase: str, what: str, run: Callable[[], Any], **effects: Any) -> None:
        if self.first_wait is None:
            self.first_wait = len(self.actions)
            self.after_at_wait = dict(self.after)
        self.add(phase, 'wait for %s' % what, run, **effects)

    def done(self, wait: bool) -> Tuple[List[Action], Dict[str, Any]]:
        """The actions (with wait false: up to the first wait) and the view after them."""
        if wait or self.first_wait is None:
            return self.actions, self.after
        return self.actions[:self.first_wait], self.after_at_wait


def pending_override(boot: Mapping[str, Any]) -> Optional[str]:
    """The boot override's target while one is set, other than the disk (None: the normal boot)."""
    if boot.get('enabled') in (None, 'Disabled') or boot.get('target') in (None, 'None', 'Hdd'):
        return None
    return str(boot['target'])


def _secs(value: float) -> str:
    return ('%d' % value) if float(value).is_integer() else ('%.1f' % value)


def _short(text: str, limit: int = 160) -> str:
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def provision(module: Any) -> Dict[str, Any]:
    """The server module with driver redfish: one server through the engine; the BMC session is
    closed at the end, whatever happens."""
    server = RedfishServer(module.params, module.check_mode)
    try:
        return converge_one(server, module.params)
    finally:
        server.close()
