# -*- coding: utf-8 -*-
"""fvslot, the on-host A/B tool: GRUB's boot counting (fvlib.grub_decision, the model of grub.cfg),
the order in which a slot is written (invalid first, version last, never the known-good slot), trials,
mark-good, and the health gate; on a fake /sys, /dev nodes as files and a boot partition directory."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading

import pytest
from image_tools import assemble, fvlib, fvslot

MIB = 1 << 20
SQUASH_A = b'hsqs' + os.urandom(300 * 1024)


def put_slot(esp, dev, slot, squashfs, version):
    """What assemble.py or fvslot write leave for a valid slot."""
    folder = esp / 'slots' / slot
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'vmlinuz').write_bytes(b'kernel ' + slot.encode())
    (folder / 'initrd.img').write_bytes(b'initrd ' + slot.encode())
    node = dev / ('vda%d' % (3 if slot == 'A' else 4))
    node.write_bytes(squashfs + node.read_bytes()[len(squashfs):])
    manifest = {'version': version, 'squashfs': {'size': len(squashfs), 'sha256': hashlib.sha256(squashfs).hexdigest()},
                'kernel': {'sha256': hashlib.sha256(b'kernel ' + slot.encode()).hexdigest()},
                'initrd': {'sha256': hashlib.sha256(b'initrd ' + slot.encode()).hexdigest()}}
    (folder / 'manifest.json').write_text(json.dumps(manifest))
    (folder / 'version').write_text(version + '\n')


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A host booted from slot A of vda: fake sysfs with the five partitions (and vdb, a stale
    install with the same names), /dev nodes as files, an ESP as assemble.py makes it."""
    sys_block, dev, esp, run = tmp_path / 'sys', tmp_path / 'dev', tmp_path / 'esp', tmp_path / 'run'
    dev.mkdir()
    for disk in ('vda', 'vdb'):
        (sys_block / disk).mkdir(parents=True)
        (sys_block / disk / 'uevent').write_text('DEVNAME=%s\nDEVTYPE=disk\n' % disk)
        for number, name in enumerate(['fvbios', 'fvboot', 'fvslotA', 'fvslotB', 'fvstate'], start=1):
            part = '%s%d' % (disk, number)
            entry = sys_block / disk / part
            entry.mkdir()
            (entry / 'partition').write_text('%d\n' % number)
            (entry / 'uevent').write_text('DEVNAME=%s\nDEVTYPE=partition\nPARTN=%d\nPARTNAME=%s\n' % (part, number, name))
            (sys_block / part).symlink_to(entry)
            (dev / part).write_bytes(b'\0' * MIB)
    run.mkdir()
    (run / 'boot-disk').write_text('vda\n')
    (esp / 'grub').mkdir(parents=True)
    (esp / 'grub' / 'grubenv').write_bytes(assemble.initial_grubenv())
    put_slot(esp, dev, 'A', SQUASH_A, '1.0.0')
    cmdline = tmp_path / 'cmdline'
    cmdline.write_text('console=ttyS0,115200 fv.slot=A fv.esp=x quiet\n')
    state = tmp_path / 'state'
    state.mkdir()
    paths = fvlib.Paths(cmdline=str(cmdline), sys_block=str(sys_block), dev=str(dev), esp_mount=str(esp),
                        run=str(run), state_mount=str(state), mount_esp=False, root=str(tmp_path / 'root'),
                        netif_links=str(run / 'netif'))
    monkeypatch.setattr(fvslot, 'state_mounted', lambda p: True)
    pieces = tmp_path / 'pieces'
    pieces.mkdir()
    (pieces / 'root.squashfs').write_bytes(b'hsqs' + os.urandom(700 * 1024))
    (pieces / 'vmlinuz').write_bytes(b'kernel new')
    (pieces / 'initrd.img').write_bytes(b'initrd new')
    return paths, tmp_path


def env(tmp):
    return fvslot.read_env(str(tmp / 'esp'))


def set_env(tmp, **changes):
    values = env(tmp)
    values.update(changes)
    fvslot.write_env(str(tmp / 'esp'), values)


def write(paths, tmp, version='2.0.0', **kwargs):
    pieces = tmp / 'pieces'
    return fvslot.write_slot(paths, str(pieces / 'root.squashfs'), str(pieces / 'vmlinuz'), str(pieces / 'initrd.img'),
                             version, log=lambda _line: None, **kwargs)


def boot(paths, tmp):
    """What GRUB does at the next boot (grub.cfg, as fvlib.grub_decision models it); the slot booted."""
    esp = str(tmp / 'esp')
    slot, saved, _said = fvlib.grub_decision(env(tmp), fvslot.valid_slots(esp))
    fvslot.write_env(esp, saved)
    (tmp / 'cmdline').write_text('fv.slot=%s\n' % slot)
    return slot


# ---- GRUB's boot counting (the model) ---------------------------------------------------------------
def decide(values, valid=('A', 'B')):
    return fvlib.grub_decision(values, list(valid))


def test_a_fresh_disk_boots_a_and_takes_a_try():
    slot, saved, _unused = decide(fvlib.parse_grubenv(assemble.initial_grubenv()), ['A'])
    assert slot == 'A' and saved['fv_tries_A'] == '2' and saved['fv_tries_B'] == '0'


def test_a_trial_runs_out_of_tries_then_falls_back():
    values = {'fv_active': 'A', 'fv_next': 'B', 'fv_tries_A': '3', 'fv_tries_B': '2'}
    slots = []
    for _unused in range(3):
        slot, values, said = decide(values)
        slots.append(slot)
    assert slots == ['B', 'B', 'A'] and 'failed its trial' in said
    assert values == {'fv_active': 'A', 'fv_next': '', 'fv_tries_A': '2', 'fv_tries_B': '0'}


def test_an_invalid_trial_slot_is_never_booted():
    slot, values, said = decide({'fv_active': 'A', 'fv_next': 'B', 'fv_tries_B': '3'}, ['A'])
    assert slot == 'A' and values['fv_next'] == '' and 'failed its trial' in said


def test_a_known_good_slot_out_of_tries_hands_over_to_the_other():
    slot, values, said = decide({'fv_active': 'A', 'fv_next': '', 'fv_tries_A': '0', 'fv_tries_B': '3'})
    assert slot == 'B' and values['fv_tries_B'] == '2' and 'slot A failed' in said
    assert decide({'fv_active': 'A', 'fv_tries_A': '0', 'fv_tries_B': '3'}, ['A'])[2].startswith('no slot has tries')
    slot, values, _unused = decide({'fv_active': 'B', 'fv_tries_A': '0', 'fv_tries_B': '0'})
    assert slot == 'B' and values['fv_tries_B'] == '2' and values['fv_tries_A'] == '3'  # never gives up


@pytest.mark.parametrize('values, slot', [
    ({'fv_active': 'A', 'fv_next': 'A', 'fv_tries_A': '3'}, 'A'),    # next is not the other slot
    ({'fv_active': 'Q', 'fv_tries_A': '1'}, 'A'),                    # not a slot: A
    ({'fv_active': 'B', 'fv_tries_B': '10', 'fv_tries_A': '3'}, 'A'),  # not a count: 0
    ({'fv_active': 'B', 'fv_tries_B': 'x', 'fv_tries_A': '3'}, 'A'),
])
def test_malformed_values(values, slot):
    assert decide(values)[0] == slot


# ---- writing a slot -----------------------------------------------------------------------------------
def test_write_then_trial_then_good(host):
    paths, tmp = host
    result = write(paths, tmp)
    assert result['slot'] == 'B'
    new = (tmp / 'pieces' / 'root.squashfs').read_bytes()
    assert (tmp / 'dev' / 'vda4').read_bytes()[:len(new)] == new
    assert (tmp / 'dev' / 'vdb4').read_bytes() == b'\0' * MIB  # the stale install's slot: untouched
    assert (tmp / 'esp' / 'slots' / 'B' / 'version').read_text() == '2.0.0\n'
    assert fvslot.boot_once(paths, count=2) == 'B'
    assert env(tmp)['fv_next'] == 'B' and env(tmp)['fv_tries_B'] == '2'
    assert (tmp / 'state' / 'slots' / 'B' / 'start-from').read_text() == 'A\n'
    assert boot(paths, tmp) == 'B'
    status = fvslot.status(paths)
    assert status['trial'] and not status['marked_good'] and status['tries'] == {'A': 3, 'B': 1}
    assert fvslot.mark_good(paths) == 'B'
    assert env(tmp) == {'fv_active': 'B', 'fv_next': '', 'fv_tries_A': '3', 'fv_tries_B': '3'}
    assert [boot(paths, tmp) for _unused in range(2)] == ['B', 'B']


def test_a_trial_never_marked_good_falls_back(host):
    paths, tmp = host
    write(paths, tmp)
    fvslot.boot_once(paths, count=2)
    assert [boot(paths, tmp) for _unused in range(3)] == ['B', 'B', 'A']
    status = fvslot.status(paths)
    assert status['booted'] == 'A' and status['marked_good'] and status['next'] is None


def test_write_invalidates_first_and_marks_valid_last(host, monkeypatch):
    paths, tmp = host
    write(paths, tmp, version='2.0.0')
    events = []
    real_write_env, real_atomic = fvslot.write_env, fvslot.atomic_write

    def record_env(esp, values):
        events.append(('grubenv', values.get('fv_tries_B')))
        real_write_env(esp, values)

    def record_file(path, data, mode=0o644):
        if os.path.basename(path) != 'grubenv':  # write_env's own
            events.append(('file', os.path.basename(path)))
        real_atomic(path, data, mode)
    monkeypatch.setattr(fvslot, 'write_env', record_env)
    monkeypatch.setattr(fvslot, 'atomic_write', record_file)
    real_open = open

    def record_open(path, mode='r', *args, **kwargs):
        if str(path).endswith('vda4') and ('w' in mode or '+' in mode):
            events.append(('device', os.path.basename(str(path)), os.path.exists(tmp / 'esp' / 'slots' / 'B' / 'version')))
        return real_open(path, mode, *args, **kwargs)
    monkeypatch.setattr('builtins.open', record_open)
    write(paths, tmp, version='3.0.0')
    monkeypatch.undo()
    assert events[0] == ('grubenv', '0')
    assert events[1] == ('device', 'vda4', False)  # the version is gone before the first byte
    assert [e[1] for e in events if e[0] == 'file'] == ['vmlinuz', 'initrd.img', 'manifest.json', 'version']


def test_a_write_cut_short_leaves_the_slot_invalid_and_a_booting(host, monkeypatch):
    """A power cut in the middle of the squashfs: the target reads as invalid, GRUB boots A."""
    paths, tmp = host
    write(paths, tmp)
    fvslot.boot_once(paths)
    fvslot.mark_good(paths)  # B (still A booted here: pretend B passed) ... then back to A
    fvslot.write_env(str(tmp / 'esp'), dict(env(tmp), fv_active='A', fv_next=''))
    a_before = (tmp / 'dev' / 'vda3').read_bytes(), sorted(os.listdir(tmp / 'esp' / 'slots' / 'A'))
    monkeypatch.setattr(fvslot, 'CHUNK', 128 * 1024)
    calls = {'n': 0}
    real = fvslot.sha256_file

    def cut(path, length=None):
        calls['n'] += 1
        if str(path).endswith('vda4'):
            raise OSError('power lost')
        return real(path, length)
    monkeypatch.setattr(fvslot, 'sha256_file', cut)
    with pytest.raises(OSError, match='power lost'):
        write(paths, tmp, version='4.0.0')
    monkeypatch.undo()
    status = fvslot.status(paths)
    assert status['valid'] == {'A': True, 'B': False} and status['versions']['B'] is None
    assert status['next_boot'] == 'A' and status['tries']['B'] == 0
    assert ((tmp / 'dev' / 'vda3').read_bytes(), sorted(os.listdir(tmp / 'esp' / 'slots' / 'A'))) == a_before
    with pytest.raises(fvslot.SlotError, match='not valid'):
        fvslot.boot_once(paths)
    assert boot(paths, tmp) == 'A'


def test_write_refuses_during_a_trial_and_never_touches_the_known_good_slot(host):
    paths, tmp = host
    write(paths, tmp)
    fvslot.boot_once(paths)
    with pytest.raises(fvslot.SlotError, match='trial of slot B is pending'):
        write(paths, tmp)
    assert boot(paths, tmp) == 'B'
    with pytest.raises(fvslot.SlotError, match='slot B is on trial'):
        write(paths, tmp)  # "the other slot" would be A: the known-good one
    with pytest.raises(fvslot.SlotError, match='on trial already'):
        fvslot.boot_once(paths, 'A')
    with pytest.raises(fvslot.SlotError, match='cannot be cancelled'):
        fvslot.cancel(paths)
    fvslot.mark_good(paths)
    a_before = (tmp / 'dev' / 'vda3').read_bytes()
    assert write(paths, tmp, version='5.0.0')['slot'] == 'A'  # B is known good now: A is written
    assert (tmp / 'dev' / 'vda3').read_bytes() != a_before


def test_boot_once_verifies_the_slot(host):
    paths, tmp = host
    with pytest.raises(fvslot.SlotError, match='slot B is not valid'):
        fvslot.boot_once(paths)
    with pytest.raises(fvslot.SlotError, match='known-good slot already'):
        fvslot.boot_once(paths, 'A')
    write(paths, tmp)
    node = tmp / 'dev' / 'vda4'
    data = bytearray(node.read_bytes())
    data[100] ^= 0xff  # the medium lost a bit after the write
    node.write_bytes(bytes(data))
    with pytest.raises(fvslot.SlotError, match='does not read back'):
        fvslot.boot_once(paths)
    with pytest.raises(fvslot.SlotError, match='tries must be'):
        fvslot.boot_once(paths, count=10)
    assert env(tmp)['fv_next'] == ''


def test_cancel_and_refusals(host):
    paths, tmp = host
    write(paths, tmp)
    fvslot.boot_once(paths)
    assert fvslot.cancel(paths) == 'B'
    assert env(tmp)['fv_next'] == '' and not (tmp / 'state' / 'slots' / 'B' / 'start-from').exists()
    assert fvslot.cancel(paths) is None
    big = tmp / 'pieces' / 'root.squashfs'
    big.write_bytes(b'x' * (2 * MIB))
    with pytest.raises(fvslot.SlotError, match='does not fit'):
        write(paths, tmp)
    with pytest.raises(fvslot.SlotError, match='expected'):
        write(paths, tmp, sha256='0' * 64)
    (tmp / 'cmdline').write_text('fv.live=1\n')
    with pytest.raises(fvslot.SlotError, match='live'):
        write(paths, tmp)


def test_status_and_cli(host, capsys):
    paths, _tmp = host
    assert fvslot.main(['status'], paths) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['booted'] == 'A' and out['marked_good'] and out['valid'] == {'A': True, 'B': False}
    assert out['versions'] == {'A': '1.0.0', 'B': None} and out['next_boot'] == 'A'
    assert fvslot.main(['boot-once', 'B'], paths) == 2
    assert 'not valid' in capsys.readouterr().err


# ---- the health gate --------------------------------------------------------------------------------
def fake_checks(monkeypatch, outcomes):
    """The built-in checks, answering from ``outcomes`` (name -> a list of outcomes, the last repeats);
    returns name -> how many times each ran."""
    calls = {name: 0 for name in outcomes}

    def make(name):
        def check(_paths):
            calls[name] += 1
            queue = outcomes[name]
            return (queue.pop(0) if len(queue) > 1 else queue[0]), name + ' detail'
        return check
    monkeypatch.setattr(fvslot, 'BUILTIN_CHECKS', tuple((name, make(name)) for name in outcomes))
    return calls


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def pause(self, seconds):
        self.now += seconds


def test_gate_passes_marks_good_and_says_ready(host, monkeypatch, capsys):
    paths, tmp = host
    write(paths, tmp)
    fvslot.boot_once(paths)
    assert boot(paths, tmp) == 'B'
    calls = fake_checks(monkeypatch, {'libvirtd': ['wait', 'wait', 'pass'], 'sshd': ['pass']})
    clock = Clock()
    assert fvslot.gate(paths, 300, reboot=lambda: pytest.fail('rebooted'), clock=clock, pause=clock.pause) == 0
    assert 'firmvisor ready' in capsys.readouterr().out and clock.now == 1.0
    assert calls == {'libvirtd': 3, 'sshd': 1}  # what passed is not asked again
    assert env(tmp)['fv_active'] == 'B' and env(tmp)['fv_tries_B'] == '3'


def test_gate_mounts_the_boot_partition_once_while_the_checks_wait(host, monkeypatch, capsys):
    paths, tmp = host
    paths = paths.replace(mount_esp=True)
    mounted, ran = set(), []

    def fake_run(argv, check=False, **_kwargs):
        ran.append(argv[0])
        (mounted.add if argv[0] == 'mount' else mounted.discard)(argv[-1])
        return subprocess.CompletedProcess(argv, 0, '')
    monkeypatch.setattr(fvslot, 'run', fake_run)
    real_ismount = os.path.ismount
    monkeypatch.setattr(fvslot.os.path, 'ismount', lambda path: path in mounted or real_ismount(path))
    seen = []

    def libvirtd(_paths):
        seen.append(paths.esp_mount in mounted)
        return ('pass' if len(seen) == 3 else 'wait'), 'libvirtd detail'
    monkeypatch.setattr(fvslot, 'BUILTIN_CHECKS', (('libvirtd', libvirtd),))
    clock = Clock()
    assert fvslot.gate(paths, 300, reboot=lambda: pytest.fail('rebooted'), clock=clock, pause=clock.pause) == 0
    assert seen == [True, True, True] and ran == ['mount', 'umount'] and not mounted
    assert 'firmvisor ready' in capsys.readouterr().out and env(tmp)['fv_active'] == 'A'


def test_a_failing_trial_reboots_and_runs_out_of_tries(host, monkeypatch, capsys):
    paths, tmp = host
    write(paths, tmp)
    fvslot.boot_once(paths, count=2)
    drop_ins = tmp / 'root' / 'etc' / 'firmvisor' / 'health.d'
    drop_ins.mkdir(parents=True)
    check = drop_ins / '50-on-b'
    check.write_text('#!/bin/sh\ngrep -q fv.slot=B %s && { echo "not on B"; exit 2; }\nexit 0\n' % paths.cmdline)
    check.chmod(0o755)
    fake_checks(monkeypatch, {'libvirtd': ['pass']})
    reboots = []
    for _unused in range(2):
        assert boot(paths, tmp) == 'B'
        assert fvslot.gate(paths, 300, reboot=lambda: reboots.append(1)) == 1
    out = capsys.readouterr().out
    assert 'health.d/50-on-b FAILED: not on B' in out and 'firmvisor ready' not in out
    assert 'slot B failed its health checks (0 tries left): rebooting' in out and len(reboots) == 2
    assert boot(paths, tmp) == 'A'
    assert fvslot.gate(paths, 300, reboot=lambda: pytest.fail('rebooted')) == 0  # A passes: it is not on B
    assert env(tmp) == {'fv_active': 'A', 'fv_next': '', 'fv_tries_A': '3', 'fv_tries_B': '0'}


def test_the_known_good_slot_is_never_rebooted_by_the_gate(host, monkeypatch, capsys):
    paths, tmp = host
    fake_checks(monkeypatch, {'libvirtd': ['wait'], 'sshd': ['pass']})
    clock = Clock()
    assert fvslot.gate(paths, 10, reboot=lambda: pytest.fail('rebooted'), clock=clock, pause=clock.pause) == 1
    out = capsys.readouterr().out
    assert 'libvirtd not ready: libvirtd detail' in out and 'NOT ready (within 10 s)' in out
    assert env(tmp)['fv_tries_A'] == '3'  # untouched (GRUB took one, the gate gave nothing back)


def test_builtin_checks(host, monkeypatch):
    paths, tmp = host
    run = tmp / 'run'
    assert fvslot.check_state(paths)[0] == 'wait'
    (run / 'state.json').write_text(json.dumps({'applied': True, 'mode': 'slot', 'stateful': True}))
    assert fvslot.check_state(paths)[0] == 'pass'
    (run / 'state.json').write_text(json.dumps({'applied': True, 'mode': 'slot', 'stateful': False}))
    assert fvslot.check_state(paths)[0] == 'fail'
    assert fvslot.check_network(paths)[0] == 'wait'
    (run / 'netif').mkdir()
    (run / 'netif' / '3').write_text('OPER_STATE=routable\nNETWORK_FILE=/run/systemd/network/10-fv-default.network\n')
    (run / 'netif' / '2').write_text('OPER_STATE=carrier\nNETWORK_FILE=/etc/systemd/network/10-fv-mgmt.network\n')
    assert fvslot.check_network(paths) == ('pass', 'link 3 routable (10-fv-default.network)')
    (run / 'netif' / '3').write_text('OPER_STATE=routable\n')  # routable, but not networkd's (a bridge)
    assert fvslot.check_network(paths)[0] == 'wait'
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    paths.ssh_port = server.getsockname()[1]

    def answer():
        conn, _unused = server.accept()
        conn.sendall(b'SSH-2.0-OpenSSH_9.2\r\n')
        conn.close()
    thread = threading.Thread(target=answer)
    thread.start()
    assert fvslot.check_sshd(paths) == ('pass', 'answers')
    thread.join()
    server.close()
    assert fvslot.check_sshd(paths)[0] == 'wait'


def test_dropin_outcomes(host):
    paths, tmp = host
    folder = tmp / 'root' / 'etc' / 'firmvisor' / 'health.d'
    folder.mkdir(parents=True)
    for name, code in (('10-pass', 0), ('20-later', 1), ('30-broken', 7)):
        (folder / name).write_text('#!/bin/sh\nexit %d\n' % code)
        (folder / name).chmod(0o755)
    (folder / '40-not-executable').write_text('#!/bin/sh\nexit 9\n')
    assert [(n, o) for n, o, _unused in fvslot.dropin_checks(paths)] == [
        ('health.d/10-pass', 'pass'), ('health.d/20-later', 'wait'), ('health.d/30-broken', 'fail')]


def test_grub_cfg_and_its_model_agree():
    """What grub.cfg and fvlib.grub_decision must share (image/dev/boot-disk.sh boots the real thing):
    the defaults before load_env, a count-down for every value up to MAX_TRIES, the locked menu."""
    with open(os.path.join(os.path.dirname(assemble.__file__), '..', 'grub', 'grub.cfg')) as handle:
        cfg = handle.read()
    assert 'set fv_tries_A=%d\n' % fvlib.tries({}, 'A') in cfg and 'set fv_tries_B=%d\n' % fvlib.tries({}, 'B') in cfg
    for have in range(1, fvlib.MAX_TRIES + 1):
        assert 'if [ "$fv_have" = %d ]; then set fv_left=%d' % (have, have - 1) in cfg \
            or 'elif [ "$fv_have" = %d ]; then set fv_left=%d' % (have, have - 1) in cfg
    assert 'set fv_tries_A=%d\n  set fv_tries_B=%d\n' % (fvlib.DEFAULT_TRIES, fvlib.DEFAULT_TRIES) in cfg
    assert 'set fv_debug=0\nif [ "$fv_debug" != 1 ]; then\n  set superusers=firmvisor\nfi' in cfg
    assert cfg.count('--unrestricted') == 3  # every entry boots; none can be edited


def test_libvirt_check_waits_in_one_call(host, monkeypatch):
    """virsh waits on libvirtd's socket for as long as libvirtd may take, instead of a virsh every
    round (each one CPU time taken from the boot it waits for); a timeout is a wait, not a failure."""
    paths, _tmp = host
    calls = []

    def answer(argv, timeout=None, **_kwargs):
        calls.append((argv, timeout))
        if len(calls) == 1:
            raise subprocess.TimeoutExpired(argv, timeout)
        return subprocess.CompletedProcess(argv, 0, 'Compiled against library: libvirt 9.0.0\n')
    monkeypatch.setattr(fvslot, 'run', answer)
    assert fvslot.check_libvirt(paths)[0] == fvslot.WAIT
    assert fvslot.check_libvirt(paths) == (fvslot.PASS, 'answers')
    assert [timeout for _argv, timeout in calls] == [fvslot.LIBVIRT_WAIT] * 2 and fvslot.LIBVIRT_WAIT >= 60
    assert calls[0][0] == ['virsh', '-c', 'qemu:///system', 'version']
