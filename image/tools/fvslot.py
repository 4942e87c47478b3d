# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fvslot: the A/B system slots of a firmvisor host, and its health gate (stdlib only; on the host).

    fvslot status                     JSON: booted and known-good slot, trial, tries, versions, validity
    fvslot write --squashfs F --kernel K --initrd I --version V [--sha256 HEX]
                                      write the slot that is not the known-good one, and verify it
    fvslot boot-once [SLOT] [--tries N]
                                      try SLOT (default: the other one) at the next boots, N times at
                                      most (default 3), starting from the known-good slot's state
    fvslot cancel                     forget a trial that has not started
    fvslot mark-good                  make the running slot the known-good one (the health gate does)
    fvslot boot-failed WHY            systemd's emergency and rescue modes in the default image: say so
                                      on the console, reboot after 10 s (the boot counts against the slot)
    fvslot health [--gate] [--timeout S]
                                      run the health checks once (exit 0: all pass); with --gate, the
                                      boot's gate: wait up to S seconds (default 300) for all to pass,
                                      then mark the running slot good and say "firmvisor ready" on the
                                      console; a trial slot that fails reboots (its tries run out, and
                                      GRUB falls back to the known-good slot)

The slots' state is GRUB's environment block on the boot partition (docs/image.md, grub.cfg): fv_active
(known good), fv_next (on trial), fv_tries_A/B (boots left). A slot is valid while
/slots/<slot>/version exists: write removes it (and sets the slot's tries to 0) before anything else,
and writes it last, after the squashfs, kernel and initrd read back right. write never touches the
known-good slot and refuses while a trial is pending or running.

Health checks: libvirtd answers, fv-state applied the state (on a slot boot: mounted), the management
network is up (a networkd link with a routable address), sshd answers, the firewall's table is loaded,
and every executable in /etc/firmvisor/health.d/ (run with a 60 s limit: exit 0 passes, 1 is "not
yet", anything else fails at once).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time

from fvlib import (CHUNK, DEFAULT_TRIES, MAX_TRIES, PART_BOOT, PART_SLOT, SLOTS, HostError, Paths, active_slot,
                   atomic_write, boot_mode, booted, device_size, format_grubenv, fsync_dir, grub_decision,
                   other_slot, parse_grubenv, read_text, require_partition, run, say, sha256_file, state_mounted,
                   tries)

TYPE_CHECKING = False
if TYPE_CHECKING:  # hints only: no typing import at each start (fvlib says why)
    from typing import Dict, Iterator, List, Optional, Tuple

# One error type for every host tool (fvlib); the name says whose it is.
SlotError = HostError

SLOT_MANIFEST = 'manifest.json'    # /slots/<slot>/manifest.json: what the slot's pieces are (sha256, size)
VERSION = 'version'                 # /slots/<slot>/version: the slot is valid while it exists (written last)
START_FROM = 'start-from'           # fv-state's marker: the trial starts from the known-good slot's state
HEALTH_TIMEOUT = 300.0
CHECK_TIMEOUT = 60.0
LIBVIRT_WAIT = 90.0
PASS, WAIT, FAIL = 'pass', 'wait', 'fail'


# ---- GRUB environment block on the boot partition ---------------------------------------------------
def read_env(esp: str) -> Dict[str, str]:
    with open(os.path.join(esp, 'grub', 'grubenv'), 'rb') as handle:
        return parse_grubenv(handle.read())


def write_env(esp: str, values: Dict[str, str]) -> None:
    """Replace the block whole (GRUB's save_env rewrites it in place, at the same size)."""
    atomic_write(os.path.join(esp, 'grub', 'grubenv'), format_grubenv(values))


def booted_slot(cmdline: str) -> Optional[str]:
    mode, slot = boot_mode(cmdline)
    return slot if mode == 'slot' else None


def valid_slots(esp: str) -> List[str]:
    return [slot for slot in SLOTS if os.path.isfile(os.path.join(esp, 'slots', slot, VERSION))]


@contextlib.contextmanager
def esp_mounted(paths: Paths, writable: bool = False) -> Iterator[str]:
    """The boot disk's boot partition, mounted for the time of the block (unless it is already)."""
    if not paths.mount_esp or os.path.ismount(paths.esp_mount):
        yield paths.esp_mount
        return
    os.makedirs(paths.esp_mount, exist_ok=True)
    options = 'rw' if writable else 'ro'
    run(['mount', '-t', 'vfat', '-o', options, require_partition(paths, PART_BOOT), paths.esp_mount], check=True)
    try:
        yield paths.esp_mount
    finally:
        run(['umount', paths.esp_mount])


def running_slot(paths: Paths) -> str:
    slot = booted(paths)[1]
    if slot is None:
        raise SlotError('not booted from a slot (a live system): install first')
    return slot


# ---- status -----------------------------------------------------------------------------------------
def status(paths: Paths) -> Dict[str, object]:
    slot = booted(paths)[1]
    with esp_mounted(paths) as esp:
        env = read_env(esp)
        valid = valid_slots(esp)
        versions = {each: read_text(os.path.join(esp, 'slots', each, VERSION)).strip() or None for each in SLOTS}
    active = active_slot(env)
    return {
        'booted': slot or 'live',
        'active': active,
        'next': env.get('fv_next') or None,
        'trial': slot is not None and slot != active,
        'marked_good': slot is not None and slot == active,
        'next_boot': grub_decision(env, valid)[0],
        'tries': {each: tries(env, each) for each in SLOTS},
        'valid': {each: each in valid for each in SLOTS},
        'versions': versions,
    }


# ---- writing a slot ---------------------------------------------------------------------------------
def check_no_trial(env: Dict[str, str], slot: str) -> str:
    """The known-good slot, when nothing is on trial; SlotError otherwise."""
    active = active_slot(env)
    if slot != active:
        raise SlotError('slot %s is on trial (the known-good slot is %s): let its health gate pass, or let it '
                        'fall back, before writing a slot' % (slot, active))
    if env.get('fv_next'):
        raise SlotError('a trial of slot %s is pending (fvslot boot-once): run fvslot cancel first' % env['fv_next'])
    return active


def write_piece(source: str, target: str) -> str:
    """Copy a piece onto the boot partition (whole: write beside, fsync, rename) and read it back."""
    digest = sha256_file(source)
    with open(source, 'rb') as handle:
        atomic_write(target, handle.read())
    if sha256_file(target) != digest:
        raise SlotError('%s: read-back differs from %s' % (target, source))
    return digest


def write_slot(paths: Paths, squashfs: str, kernel: str, initrd: str, version: str,
               sha256: Optional[str] = None, log=print) -> Dict[str, object]:
    """Write the slot that is not the known-good one; it is invalid from the first byte written until
    everything reads back right and its version is written, last."""
    slot = running_slot(paths)
    size = os.path.getsize(squashfs)
    digest = sha256_file(squashfs)
    if sha256 and digest != sha256.lower():
        raise SlotError('%s: sha256 %s, expected %s' % (squashfs, digest, sha256))
    with esp_mounted(paths, writable=True) as esp:
        env = read_env(esp)
        target = other_slot(check_no_trial(env, slot))
        device = require_partition(paths, PART_SLOT[target])
        if size > device_size(device):
            raise SlotError('%s (%d bytes) does not fit slot %s (%d bytes)' % (squashfs, size, target,
                                                                               device_size(device)))
        folder = os.path.join(esp, 'slots', target)
        os.makedirs(folder, exist_ok=True)
        env['fv_tries_' + target] = '0'
        write_env(esp, env)
        for name in (VERSION, SLOT_MANIFEST):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
        fsync_dir(folder)
    log('fvslot: slot %s is invalid until it is written and verified' % target)
    log('fvslot: writing slot %s (%s, %d MiB) to %s' % (target, version, size >> 20, device))
    written = 0
    with open(squashfs, 'rb') as src, open(device, 'r+b') as dst:
        for block in iter(lambda: src.read(CHUNK), b''):
            dst.write(block)
            written += len(block)
            if written % (32 << 20) == 0:
                dst.flush()
                os.fsync(dst.fileno())
                log('fvslot: slot %s: %d MiB of %d MiB written' % (target, written >> 20, size >> 20))
        dst.flush()
        os.fsync(dst.fileno())
    if sha256_file(device, size) != digest:
        raise SlotError('slot %s: the read-back of %s differs from %s' % (target, device, squashfs))
    with esp_mounted(paths, writable=True) as esp:
        folder = os.path.join(esp, 'slots', target)
        pieces = {'squashfs': {'size': size, 'sha256': digest},
                  'kernel': {'sha256': write_piece(kernel, os.path.join(folder, 'vmlinuz'))},
                  'initrd': {'sha256': write_piece(initrd, os.path.join(folder, 'initrd.img'))}}
        atomic_write(os.path.join(folder, SLOT_MANIFEST),
                     (json.dumps(dict(pieces, version=version), indent=2, sort_keys=True) + '\n').encode())
        atomic_write(os.path.join(folder, VERSION), (version + '\n').encode())
    log('fvslot: slot %s written and verified (%s, sha256 %s)' % (target, version, digest))
    return {'slot': target, 'version': version, 'sha256': digest}


def verify_slot(paths: Paths, esp: str, slot: str) -> str:
    """The slot's version, when it is valid and every piece reads back as its manifest says."""
    folder = os.path.join(esp, 'slots', slot)
    version = read_text(os.path.join(folder, VERSION)).strip()
    if not version:
        raise SlotError('slot %s is not valid (never written, or its write did not finish): write it first' % slot)
    try:
        with open(os.path.join(folder, SLOT_MANIFEST)) as handle:
            manifest = json.load(handle)
        squashfs = manifest['squashfs']
        checks = [(os.path.join(folder, 'vmlinuz'), manifest['kernel']['sha256'], None),
                  (os.path.join(folder, 'initrd.img'), manifest['initrd']['sha256'], None),
                  (require_partition(paths, PART_SLOT[slot]), squashfs['sha256'], int(squashfs['size']))]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SlotError('slot %s has no usable %s: %s' % (slot, SLOT_MANIFEST, exc)) from None
    for path, expected, length in checks:
        if sha256_file(path, length) != expected:
            raise SlotError('slot %s: %s does not read back as written' % (slot, path))
    return version


def boot_once(paths: Paths, slot: Optional[str] = None, count: int = DEFAULT_TRIES) -> str:
    """Put ``slot`` (default: the other one) on trial: GRUB boots it at most ``count`` times, until its
    health gate passes; it starts from the known-good slot's state."""
    running = running_slot(paths)
    if not 1 <= count <= MAX_TRIES:
        raise SlotError('tries must be 1 to %d, not %d' % (MAX_TRIES, count))
    with esp_mounted(paths, writable=True) as esp:
        env = read_env(esp)
        active = active_slot(env)
        if running != active:
            raise SlotError('slot %s is on trial already' % running)
        slot = slot or other_slot(active)
        if slot not in SLOTS:
            raise SlotError('slot must be A or B, got %r' % slot)
        if slot == active:
            raise SlotError('slot %s is the known-good slot already' % slot)
        verify_slot(paths, esp, slot)
        mark_start_from(paths, slot, active)
        env['fv_next'], env['fv_tries_' + slot] = slot, str(count)
        write_env(esp, env)
    return slot


def mark_start_from(paths: Paths, slot: str, source: Optional[str]) -> None:
    """fv-state's marker on the state partition: the trial of ``slot`` starts from ``source``'s state."""
    if not state_mounted(paths):
        return
    folder = os.path.join(paths.state_mount, 'slots', slot)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    marker = os.path.join(folder, START_FROM)
    if source:
        atomic_write(marker, (source + '\n').encode(), 0o600)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)


def cancel(paths: Paths) -> Optional[str]:
    running = running_slot(paths)
    with esp_mounted(paths, writable=True) as esp:
        env = read_env(esp)
        pending = env.get('fv_next') or None
        if pending and running == active_slot(env):
            env['fv_next'] = ''
            write_env(esp, env)
            mark_start_from(paths, pending, None)
            return pending
    if pending:
        raise SlotError('slot %s is running its trial: it cannot be cancelled, only passed or failed' % running)
    return None


def mark_good(paths: Paths) -> str:
    """The running slot becomes the known-good one, with its tries back (the health gate's last step)."""
    running = running_slot(paths)
    with esp_mounted(paths, writable=True) as esp:
        env = read_env(esp)
        wanted = dict(env, fv_active=running, fv_next='')
        wanted['fv_tries_' + running] = str(DEFAULT_TRIES)
        if wanted != env:
            write_env(esp, wanted)
    return running


# ---- health -----------------------------------------------------------------------------------------
def check_libvirt(_paths: Paths) -> Tuple[str, str]:
    # One call that waits rather than a call every round: libvirtd.socket (listening before the gate
    # starts) holds the connection until libvirtd serves it. Each virsh costs the boot CPU time, and
    # under emulation a round of them competed with the very units the gate waits for.
    try:
        proc = run(['virsh', '-c', 'qemu:///system', 'version'], timeout=LIBVIRT_WAIT)
    except (HostError, subprocess.TimeoutExpired) as exc:
        return WAIT, 'virsh: %s' % exc
    return (PASS, 'answers') if proc.returncode == 0 else (WAIT, proc.stdout.strip()[-200:] or 'no answer')


def check_state(paths: Paths) -> Tuple[str, str]:
    try:
        applied = json.loads(read_text(os.path.join(paths.run, 'state.json')) or 'null')
    except ValueError:
        applied = None
    if not isinstance(applied, dict) or not applied.get('applied'):
        return WAIT, 'fv-state has not applied the state yet'
    if applied.get('mode') == 'slot':
        if not applied.get('stateful'):
            return FAIL, 'booted from a slot, but the state partition could not be used'
        if not state_mounted(paths):
            return FAIL, '%s is not mounted' % paths.state_mount
        return PASS, 'applied from %s' % (applied.get('restored_from') or 'the seed')
    return PASS, 'applied (stateless)'


def check_network(paths: Paths) -> Tuple[str, str]:
    """A link systemd-networkd manages (not a libvirt bridge or a guest's tap) with a routable address."""
    try:
        names = sorted(os.listdir(paths.netif_links))
    except OSError:
        return WAIT, 'systemd-networkd reports no links yet'
    seen = []
    for name in names:
        fields = dict(line.split('=', 1) for line in read_text(os.path.join(paths.netif_links, name)).splitlines()
                      if '=' in line)
        if not fields.get('NETWORK_FILE'):
            continue
        seen.append('%s %s' % (os.path.basename(fields['NETWORK_FILE']), fields.get('OPER_STATE', '?')))
        if fields.get('OPER_STATE') == 'routable':
            return PASS, 'link %s routable (%s)' % (name, os.path.basename(fields['NETWORK_FILE']))
    return WAIT, 'no managed link is routable yet (%s)' % (', '.join(seen) or 'none managed')


def check_sshd(paths: Paths) -> Tuple[str, str]:
    try:
        with socket.create_connection(('127.0.0.1', paths.ssh_port), timeout=5) as sock:
            banner = sock.recv(64)
    except OSError as exc:
        return WAIT, 'no answer on port %d: %s' % (paths.ssh_port, exc)
    return (PASS, 'answers') if banner.startswith(b'SSH-') else (WAIT, 'no SSH banner on port %d' % paths.ssh_port)


def dropin_checks(paths: Paths, passed: Optional[Dict[str, str]] = None) -> List[Tuple[str, str, str]]:
    """(name, outcome, detail) of each executable in the health.d directory (not run again when in
    ``passed``)."""
    folder = os.path.join(paths.root, paths.health_dir.lstrip('/'))
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    results = []
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith('.') or not os.path.isfile(path) or not os.access(path, os.X_OK):
            continue
        if 'health.d/' + name in (passed or {}):
            results.append(('health.d/' + name, PASS, passed['health.d/' + name]))
            continue
        try:
            proc = run([path], timeout=CHECK_TIMEOUT)
            outcome = {0: PASS, 1: WAIT}.get(proc.returncode, FAIL)
            detail = proc.stdout.strip()[-200:] or 'exit %d' % proc.returncode
        except subprocess.TimeoutExpired:
            outcome, detail = WAIT, 'did not finish within %d s' % CHECK_TIMEOUT
        except (HostError, OSError) as exc:
            outcome, detail = FAIL, str(exc)
        results.append(('health.d/' + name, outcome, detail))
    return results


def check_firewall(_paths: Paths) -> Tuple[str, str]:
    """nftables.service loaded /etc/nftables.conf (a bad drop-in would leave the host open)."""
    try:
        proc = run(['nft', 'list', 'table', 'inet', 'firmvisor'], timeout=20)
    except (HostError, subprocess.TimeoutExpired) as exc:
        return WAIT, str(exc)
    return (PASS, 'loaded') if proc.returncode == 0 else (WAIT, 'table inet firmvisor is not loaded '
                                                                '(systemctl status nftables)')


# libvirtd last: its check waits for the daemon, and the others' first round (the firewall's nft run
# above all) goes by while it starts.
BUILTIN_CHECKS = (('firewall', check_firewall), ('state', check_state), ('network', check_network),
                  ('sshd', check_sshd), ('libvirtd', check_libvirt))


def run_checks(paths: Paths, passed: Optional[Dict[str, str]] = None) -> List[Tuple[str, str, str]]:
    """Every check's (name, outcome, detail); those in ``passed`` (name -> detail) are not run again."""
    passed = passed or {}
    results = []
    for name, check in BUILTIN_CHECKS:
        outcome, detail = (PASS, passed[name]) if name in passed else check(paths)
        results.append((name, outcome, detail))
    return results + dropin_checks(paths, passed)


def gate(paths: Paths, timeout: float = HEALTH_TIMEOUT, reboot=None, clock=time.monotonic, pause=time.sleep,
         interval: float = 0.5) -> int:
    """The boot's health gate: all checks pass → the running slot is marked good, "firmvisor ready";
    a check fails for good or the time runs out → not ready, and a trial slot reboots. A check that
    passed is not run again (the boot is a matter of seconds), so each round waits only for the rest."""
    started = clock()
    mode, slot = booted(paths)
    passed: Dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if mode == 'slot':
            # The boot partition is mounted while the checks wait, so that marking the slot good is
            # a write, not a mount too (a second of the boot's end under emulation). Best effort:
            # mark_good mounts it itself otherwise. Unmounted (the mark on disk) before "ready".
            with contextlib.suppress(HostError, OSError):
                stack.enter_context(esp_mounted(paths, writable=True))
        while True:
            results = run_checks(paths, passed)
            passed.update((name, detail) for name, outcome, detail in results if outcome == PASS)
            if all(outcome == PASS for _name, outcome, _detail in results):
                break
            if any(outcome == FAIL for _name, outcome, _detail in results) or clock() - started >= timeout:
                return gate_failed(paths, results, mode, slot, timeout, reboot)
            pause(interval)
        if mode == 'slot':
            mark_good(paths)
    good = '; slot %s is good' % slot if slot else ''
    say('firmvisor: health: %d checks passed in %.0f s%s' % (len(results), clock() - started, good), paths)
    # The leading newline ends whatever systemd's ephemeral status line left on the terminal.
    say('\nfirmvisor ready', paths)
    return 0


def gate_failed(paths: Paths, results, mode: str, slot: Optional[str], timeout: float, reboot) -> int:
    for name, outcome, detail in results:
        if outcome != PASS:
            say('firmvisor: health: %s %s: %s' % (name, 'FAILED' if outcome == FAIL else 'not ready', detail), paths)
    trial = False
    if mode == 'slot':
        with contextlib.suppress(HostError, OSError):
            with esp_mounted(paths) as esp:
                env = read_env(esp)
                trial = slot != active_slot(env)
                left = tries(env, slot)
    if trial:
        say('firmvisor: health: slot %s failed its health checks (%d tries left): rebooting' % (slot, left), paths)
        (reboot or (lambda: run(['systemctl', 'reboot'])))()
    else:
        say('firmvisor: health: NOT ready (within %d s); see journalctl -u firmvisor-health' % timeout, paths)
    return 1


def boot_failed(paths: Paths, why: str, seconds: float = 10.0, pause=time.sleep) -> int:
    say('firmvisor: the boot failed (%s): rebooting in %.0f s (no shell: not a debug image)' % (why, seconds), paths,
        console=True)
    pause(seconds)
    return run(['systemctl', 'reboot', '--force']).returncode


def main(argv=None, paths: Optional[Paths] = None) -> int:
    parser = argparse.ArgumentParser(prog='fvslot', description=__doc__.split('\n', maxsplit=1)[0])
    commands = parser.add_subparsers(dest='command', required=True)
    commands.add_parser('status')
    write = commands.add_parser('write')
    for option in ('--squashfs', '--kernel', '--initrd', '--version'):
        write.add_argument(option, required=True)
    write.add_argument('--sha256')
    once = commands.add_parser('boot-once')
    once.add_argument('slot', nargs='?', choices=SLOTS)
    once.add_argument('--tries', type=int, default=DEFAULT_TRIES)
    commands.add_parser('cancel')
    commands.add_parser('mark-good')
    failed = commands.add_parser('boot-failed')
    failed.add_argument('why')
    health = commands.add_parser('health')
    health.add_argument('--gate', action='store_true')
    health.add_argument('--timeout', type=float, default=HEALTH_TIMEOUT)
    args = parser.parse_args(argv)
    paths = paths or Paths()
    try:
        if args.command == 'status':
            print(json.dumps(status(paths), indent=2, sort_keys=True))
        elif args.command == 'write':
            print(json.dumps(write_slot(paths, args.squashfs, args.kernel, args.initrd, args.version, args.sha256,
                                        log=lambda line: print(line, flush=True))))
        elif args.command == 'boot-once':
            slot = boot_once(paths, args.slot, args.tries)
            print('fvslot: slot %s is on trial from the next boot (%d tries)' % (slot, args.tries))
        elif args.command == 'cancel':
            pending = cancel(paths)
            print('fvslot: %s' % ('the trial of slot %s is cancelled' % pending if pending else 'no trial pending'))
        elif args.command == 'mark-good':
            print('fvslot: slot %s is the known-good slot' % mark_good(paths))
        elif args.command == 'boot-failed':
            return boot_failed(paths, args.why)
        elif args.command == 'health':
            if args.gate:
                return gate(paths, args.timeout)
            results = run_checks(paths)
            for name, outcome, detail in results:
                print('fvslot: health: %-20s %-4s %s' % (name, outcome, detail))
            return 0 if all(outcome == PASS for _n, outcome, _d in results) else 1
    except (HostError, OSError) as exc:
        print('fvslot: %s' % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
