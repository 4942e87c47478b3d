# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""End-to-end proof (a dev script, not a test): install the firmvisor image onto a blank QEMU box
through sushy-emulator with the collection's own Redfish client, and watch it come up from its own
disk. Every step is timed and written to a JSON report; the console log is kept beside it.

    flock /tmp/firmvisor-cpu.lock .venv/bin/python tests/redfish/e2e_install.py \
        [--image /var/lib/firmvisor/images/0.1.0] [--report /tmp/fvrf-e2e-report.json] [--keep]

Flow (what the provision role will do, plus observation):
  lab up -> connect (TLS via the lab's CA, Basic auth) -> inventory + capacity check + disk choice
  -> seed floppy (install_to) -> insert CD (the ISO) and Floppy (the seed) -> boot override Cd/Once
  -> power On -> console: live boot, installer, reboot -> what the box does next with the CD still
  inserted (the emulator reads Once back as Continuous) -> eject the CD, boot override to the disk,
  ForceRestart -> console: disk boot, seed import, "firmvisor ready" -> SSH with the seed's key ->
  eject the floppy, ForceRestart -> ready again from the disk alone (the state persisted).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, '.collections'))

from harness import Lab  # noqa: E402

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.redfish.bmc import Bmc, BmcAccess  # noqa: E402
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server import disks, seed  # noqa: E402
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError  # noqa: E402


class Run:
    def __init__(self, report: str) -> None:
        self.report = report
        self.start = time.monotonic()
        self.steps: List[Dict[str, Any]] = []
        self.notes: List[str] = []

    def step(self, name: str, func: Callable[[], Any]) -> Any:
        began = time.monotonic()
        print('e2e: %-58s ...' % name, flush=True)
        entry: Dict[str, Any] = {'step': name, 'at_s': round(began - self.start, 1)}
        try:
            result = func()
            entry['result'] = result if _jsonable(result) else repr(result)
            return result
        except BaseException as exc:
            entry['error'] = '%s: %s' % (type(exc).__name__, exc)
            raise
        finally:
            entry['seconds'] = round(time.monotonic() - began, 1)
            self.steps.append(entry)
            print('e2e: %-58s %6.1f s  %s' % (name, entry['seconds'],
                                              entry.get('error') or _short(entry.get('result'))), flush=True)
            self.save()

    def note(self, text: str) -> None:
        print('e2e: NOTE %s' % text, flush=True)
        self.notes.append(text)
        self.save()

    def save(self) -> None:
        with open(self.report, 'w') as handle:
            json.dump({'steps': self.steps, 'notes': self.notes,
                       'total_s': round(time.monotonic() - self.start, 1)}, handle, indent=2)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _short(value: Any) -> str:
    text = json.dumps(value) if _jsonable(value) else repr(value)
    return text if len(text) < 110 else text[:107] + '...'


class Console:
    """The box's serial log, read from where the last wait stopped."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> str:
        try:
            with open(self.path, 'rb') as handle:
                return handle.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def wait(self, pattern: str, timeout: float, what: str, fail: Optional[str] = None) -> str:
        regex = re.compile(pattern)
        bad = re.compile(fail) if fail else None
        deadline = time.monotonic() + timeout
        while True:
            text = self.read()
            match = regex.search(text, self.offset)
            if match:
                self.offset = match.end()
                return match.group(0).strip()
            if bad:
                failed = bad.search(text, self.offset)
                if failed:
                    raise RuntimeError('console shows %r while waiting for %s' % (failed.group(0), what))
            if time.monotonic() > deadline:
                tail = ' | '.join(text[self.offset:].strip().splitlines()[-8:])
                raise TimeoutError('timed out after %ss waiting for %s on the console (last lines: %s)'
                                   % (timeout, what, tail))
            time.sleep(1)


def ssh(key: str, port: int, command: str, timeout: float = 30) -> str:
    argv = ['ssh', '-i', key, '-p', str(port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
            '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR', 'root@127.0.0.1', command]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError('ssh %r exited %d: %s' % (command, result.returncode, result.stderr.strip()))
    return result.stdout.strip()


def wait_ssh(key: str, port: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    last = ''
    while time.monotonic() < deadline:
        try:
            return ssh(key, port, 'cat /etc/hostname; grep -o "fv.live=1" /proc/cmdline || echo disk-boot')
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            last = str(exc)
            time.sleep(3)
    raise TimeoutError('timed out after %ss waiting for SSH with the seed key on 127.0.0.1:%d (%s)'
                       % (timeout, port, last))


def watch_installer(key: str, port: int, timeout: float) -> str:
    """Follow the live system's installer journal over SSH (journalctl -f) until it has written and
    verified the disk. The stream carries the verify line before the reboot ends the session; when
    the session drops before that, reconnect (a second live boot that finds the disk installed after
    this watch saw the install start also means it is done)."""
    import select
    deadline = time.monotonic() + timeout
    seen_installing = False
    last = ''
    argv = ['ssh', '-i', key, '-p', str(port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
            '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR', '-o', 'ServerAliveInterval=5',
            '-o', 'ServerAliveCountMax=2', 'root@127.0.0.1',
            'journalctl -b -u firmvisor-install -o cat -f --no-pager -n all']
    while time.monotonic() < deadline:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert process.stdout is not None
            while time.monotonic() < deadline:
                ready = select.select([process.stdout], [], [], 2.0)[0]
                if not ready:
                    continue
                line = process.stdout.readline()
                if not line:
                    break  # the session ended (the reboot, or not up yet)
                last = line.strip()
                if 'installing firmvisor' in last:
                    seen_installing = True
                elif 'installed firmvisor' in last and 'verified' in last:
                    return last
                elif 'already holds' in last:
                    if seen_installing:
                        return 'installed (this watch saw it start; the next boot found it on the disk): ' + last
                    raise RuntimeError('installer: %s' % last)
                elif 'FAILED' in last or 'error' in last:
                    raise RuntimeError('installer: %s' % last)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        time.sleep(2)
    raise TimeoutError('timed out after %ss waiting for the installer to verify the disk (last: %s)'
                       % (timeout, last))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--image', default='/var/lib/firmvisor/images/0.1.0')
    parser.add_argument('--report', default='/tmp/fvrf-e2e-report.json')
    parser.add_argument('--name', default='e2e')
    parser.add_argument('--boot-timeout', type=float, default=900)
    parser.add_argument('--keep', action='store_true', help='leave the lab up (harness.py down removes it)')
    parser.add_argument('--flow', choices=('observe', 'watch'), default='observe',
                        help='observe: let the installer reboot and see what the box boots next (the console); '
                             'watch: what a role can do on real hardware too - SSH into the live system, watch '
                             'the installer there, and when it has verified the disk eject the CD, boot the '
                             'disk and ForceRestart at once')
    parser.add_argument('--restart-check', action=argparse.BooleanOptionalAction, default=True,
                        help='after the install, eject the floppy and restart once more (the state persisted)')
    args = parser.parse_args()
    iso = os.path.join(args.image, 'firmvisor.iso')
    flash = os.path.join(args.image, 'firmvisor.img')
    for path in (iso, flash):
        if not os.path.exists(path):
            print('e2e: %s is missing: build the image first (tests/redfish/build-image.yml)' % path)
            return 2
    run = Run(args.report)
    lab = Lab(args.name)
    console_copy = os.path.splitext(args.report)[0] + '-console.log'
    try:
        state = run.step('lab up (emulator, media server, blank box)', lab.up)
        console = Console(state['console_log'])
        key = os.path.join(lab.workdir, 'id_ed25519')
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'fvrf-e2e', '-f', key], check=True)
        with open(key + '.pub') as handle:
            pub = handle.read().strip()
        access = BmcAccess(state['bmc']['address'], state['username'], lab.password(), ca_path=state['bmc']['ca'])
        bmc = Bmc(access)
        run.step('connect to the BMC (TLS with the lab CA)', lambda: (bmc.connect(), bmc.auth_method)[1])
        system = run.step('find the system (the only one)', bmc.system)
        inventory = run.step('inventory', system.inventory)
        need = os.path.getsize(flash)
        run.step('capacity check (image %d MiB, 1024 MiB memory)' % (need >> 20),
                 lambda: disks.check_capacity(inventory, need, 1024, server=system.label) or 'fits')
        chosen = run.step('install disk: the smallest disk of 8 GiB or more',
                          lambda: disks.choose_install_disk(inventory['disks'], None, need_bytes=need))
        try:
            install_to = disks.install_path(chosen)
        except FvError as exc:
            run.note('install_path: %s -> the lab knows it is %s' % (exc, state['install_to']))
            install_to = state['install_to']
        www = state['http']['root']
        os.symlink(iso, os.path.join(www, 'firmvisor.iso'))
        seed_doc = seed.build_seed('fvrf-e2e', [pub], None, install_to=install_to)
        run.step('seed floppy (install_to %s)' % install_to,
                 lambda: seed.ensure_seed_image(seed_doc, os.path.join(www, 'seed.img'), 'floppy'))
        run.step('seed floppy again (digest: not rebuilt)',
                 lambda: seed.ensure_seed_image(seed_doc, os.path.join(www, 'seed.img'), 'floppy'))
        base = state['http']['url']
        run.step('insert CD: %d MiB ISO' % (os.path.getsize(iso) >> 20),
                 lambda: system.insert_media('cd', base + '/firmvisor.iso'))
        run.step('insert Floppy: the seed', lambda: system.insert_media('floppy', base + '/seed.img'))
        run.step('insert CD again (no change)', lambda: system.insert_media('cd', base + '/firmvisor.iso'))
        run.step('boot override Cd/Once', lambda: system.set_boot_override('Cd', 'Once'))
        readback = run.step('boot override read back', system.boot_override)
        if readback['enabled'] != 'Once':
            run.note('boot override Once reads back as %s' % readback['enabled'])
        run.step('power On', lambda: system.power('On', timeout=120))
        if args.flow == 'watch':
            run.step('SSH into the live system (seed key)', lambda: wait_ssh(key, state['ssh_port'], args.boot_timeout))
            run.step('watch the installer over SSH', lambda: watch_installer(key, state['ssh_port'],
                                                                             args.boot_timeout))
        else:
            run.step('console: live boot from the CD', lambda: console.wait(
                r'firmvisor: grub: booting live', 300, 'GRUB of the ISO'))
            run.step('console: installer starts', lambda: console.wait(
                r'firmvisor: install: installing firmvisor[^\r\n]*', args.boot_timeout, 'the installer',
                fail=r'firmvisor: install: (FAILED|error)[^\r\n]*|already holds[^\r\n]*'))
            run.step('console: installed and verified', lambda: console.wait(
                r'firmvisor: install: installed firmvisor[^\r\n]*', args.boot_timeout, 'the install to finish',
                fail=r'firmvisor: install: (FAILED|error)[^\r\n]*'))
            run.step('console: installer reboots', lambda: console.wait(
                r'firmvisor: install: rebooting[^\r\n]*', 120, 'the reboot'))
            # What the box boots next with the CD still in and the override read back as Continuous.
            after = run.step('console: first boot after the install', lambda: console.wait(
                r'firmvisor: grub: booting (live|slot [AB])', 300, 'GRUB after the reboot'))
            if 'live' in after:
                run.note('after the installer reboot the CD booted again (the emulator keeps the CD first: '
                         'BootSourceOverrideEnabled is always Continuous)')
                run.step('console: second live boot, installer leaves the disk alone', lambda: console.wait(
                    r'firmvisor: install: [^\r\n]*already holds[^\r\n]*', args.boot_timeout, 'the installer',
                    fail=r'firmvisor: install: installing[^\r\n]*'))
                run.step('console: live system ready', lambda: console.wait(
                    r'firmvisor ready', args.boot_timeout, 'firmvisor ready (live)'))
                run.step('SSH into the live system (seed key)', lambda: wait_ssh(key, state['ssh_port'], 180))
        run.step('eject CD', lambda: system.eject_media('cd'))
        run.step('clear boot override (to the disk)', system.clear_boot_override)
        run.step('boot override read back', system.boot_override)
        console.offset = len(console.read())  # from here on: the boot after the restart
        run.step('ForceRestart (the new config takes effect)', lambda: system.power('ForceRestart', timeout=120))
        run.step('console: boot from the disk', lambda: console.wait(
            r'firmvisor: grub: booting slot [AB]', 300, 'GRUB of the disk', fail=r'firmvisor: grub: booting live'))
        run.step('console: seed imported', lambda: console.wait(
            r'firmvisor: seed: importing[^\r\n]*', args.boot_timeout, 'the seed import'))
        run.step('console: firmvisor ready (from the disk)', lambda: console.wait(
            r'firmvisor ready', args.boot_timeout, 'firmvisor ready'))
        run.step('SSH with the seed key', lambda: wait_ssh(key, state['ssh_port'], 180))
        run.step('on the host: slots', lambda: ssh(key, state['ssh_port'], 'fvslot status', 60))
        run.step('eject Floppy', lambda: system.eject_media('floppy'))
        if args.restart_check:
            console.offset = len(console.read())
            run.step('ForceRestart without any media', lambda: system.power('ForceRestart', timeout=120))
            run.step('console: boot from the disk again', lambda: console.wait(
                r'firmvisor: grub: booting slot [AB]', 300, 'GRUB of the disk'))
            run.step('console: state restored, ready', lambda: console.wait(
                r'firmvisor ready', args.boot_timeout, 'firmvisor ready', fail=r'firmvisor: seed: importing'))
            run.step('SSH after the restart (state persisted)', lambda: wait_ssh(key, state['ssh_port'], 180))
        run.step('inventory after install', lambda: {k: v for k, v in system.inventory().items()
                                                     if k in ('power_state', 'boot', 'virtual_media')})
        run.step('power ForceOff', lambda: system.power('ForceOff', timeout=120))
        bmc.close()
        return 0
    finally:
        with open(console_copy, 'w') as handle:
            handle.write(Console(lab.console_log).read())
        if args.keep:
            print('e2e: lab kept: tests/redfish/harness.py down --name %s' % args.name)
        else:
            removed = lab.down()
            run.note('lab down removed: %s' % ', '.join(removed))
        run.save()
        print('e2e: report %s, console %s' % (args.report, console_copy))


if __name__ == '__main__':
    sys.exit(main())
