# -*- coding: utf-8 -*-
"""The Redfish driver of ``server`` (plugins/module_utils/server/redfish.py) against the fake BMC and
a simulated box behind it (fakebmc.FakeMachine, seen through FakeHost instead of SSH): the whole
flow step by step, each step's failure (what the error says, what is undone), check mode, a second
run that goes on from where the first stopped, a server left alone, bad input before any write, and
the password in no output of the module."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from fakebmc import SYSTEM_UUID, FakeBmc, FakeHost, FakeMachine, make_tls

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.runner import converge_one
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.waiter import Waiter
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server import redfish as rf
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.options import SERVER_ARGSPEC

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTIONS = os.path.abspath(os.path.join(HERE, '..', '..', '.collections'))
PASSWORD = 'Fv-Rf2-S3cret!q'
KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6lPBsEOBxTtXx8t/mnqGW3S0Tf6xUaE4b4L6YmhgvH test@fv'
VERSION = '0.2.0'
SESSION_CALLS = ('/SessionService/Sessions',)

FLOW = [
    'write the seed floppy',
    'insert the CD',
    'insert the floppy',
    'boot override: Cd, once',
    'power on',
    'wait for the live system (firmvisor 0.2.0) to answer SSH',
    'wait for the live installer to write and verify /dev/vda',
    'eject the CD (the disk is written)',
    'boot override: Hdd, once',
    'force a restart into the installed disk',
    'wait for firmvisor 0.2.0 to answer SSH from the disk',
    'eject the floppy (the seed is imported)',
    'clear the boot override',
]


class Clock:
    """The waiter's clock: sleeping moves it, nothing really sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.01)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def www(tmp_path):
    """A media server on 127.0.0.1 serving tmp_path/www: {root, url}."""
    root = tmp_path / 'www'
    root.mkdir()
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    yield {'root': str(root), 'url': 'http://127.0.0.1:%d' % server.server_address[1]}
    server.shutdown()
    server.server_close()


def make_image(folder, version=VERSION, iso=b'firmvisor iso ' * 64):
    folder.mkdir(exist_ok=True)
    disk = folder / 'firmvisor.img'
    with open(disk, 'wb') as handle:
        handle.write(b'firmvisor')
        handle.truncate(4 << 20)
    (folder / 'firmvisor.iso').write_bytes(iso)
    (folder / 'manifest.json').write_text(json.dumps({'version': version, 'artifacts': {
        'firmvisor.img': {'sha256': hashlib.sha256(b'firmvisor').hexdigest(), 'size': 4 << 20},
        'firmvisor.iso': {'sha256': hashlib.sha256(iso).hexdigest(), 'size': len(iso)}}}))
    return str(folder)


@pytest.fixture
def image(tmp_path, www):
    path = make_image(tmp_path / 'image')
    os.symlink(os.path.join(path, 'firmvisor.iso'), os.path.join(www['root'], 'firmvisor.iso'))
    return path


@pytest.fixture
def fake():
    with FakeBmc(users={'admin': PASSWORD}, boot_once_reads_continuous=True) as bmc:
        yield bmc


class Lab:
    """The fake BMC, the box behind it, the media server, and runs of the resource against them."""

    def __init__(self, fake, image, www):
        self.fake, self.image, self.www = fake, image, www
        self.iso_url = www['url'] + '/firmvisor.iso'
        self.seed_url = www['url'] + '/hv1-seed.img'
        self.seed_path = os.path.join(www['root'], 'hv1-seed.img')
        self.machine = FakeMachine(fake, {self.iso_url: VERSION}, {self.seed_url: self.seed_path})
        self.host = FakeHost(self.machine)
        self.clock = Clock()
        self.server = None

    def params(self, **options):
        result = {key: spec.get('default') for key, spec in SERVER_ARGSPEC.items()}
        result.update(name='hv1', driver='redfish', image=self.image, ssh_authorized_keys=[KEY],
                      bmc={'address': self.fake.url, 'username': 'admin', 'password': PASSWORD,
                           'validate_certs': True, 'ca_path': None, 'timeout': 5},
                      image_url=self.iso_url, seed_url=self.seed_url, seed_path=self.seed_path,
                      address='127.0.0.1', port=2222, install_disk={'path': '/dev/vda'}, wait_timeout=600)
        result.update(options)
        return result

    def run(self, check_mode=False, host=None, **options):
        self.fake.requests.clear()
        self.server = rf.RedfishServer(self.params(**options), check_mode, host=host or self.host,
                                       waiter=Waiter(clock=self.clock, sleep=self.clock.sleep))
        try:
            return converge_one(self.server, self.server.params)
        finally:
            self.server.close()

    def fails(self, cls=FvError, **options):
        with pytest.raises(cls) as info:
            self.run(**options)
        assert PASSWORD not in str(info.value)
        return str(info.value)

    def writes(self):
        """Every request of the last run that changes the BMC (logging in and out does not)."""
        return ['%s %s' % (r['method'], '/'.join(r['path'].split('/')[-2:]).replace(SYSTEM_UUID, 'SYSTEM'))
                for r in self.fake.requests if r['method'] != 'GET' and not r['path'].endswith(SESSION_CALLS)
                and '/SessionService/Sessions/' not in r['path']]

    @property
    def media(self):
        return {slot: state['image'] if state['inserted'] else None
                for slot, state in self.fake.media[SYSTEM_UUID].items()}

    @property
    def system(self):
        return self.fake.systems[SYSTEM_UUID]


@pytest.fixture
def lab(fake, image, www):
    return Lab(fake, image, www)


def steps(result):
    """The actions without their details (URLs, paths), to compare with FLOW."""
    return [a.split(' %s' % 'http')[0].split(' /tmp')[0].split(' on 127.0.0.1')[0].split(' (install_to')[0]
            for a in result['actions']]


def installed(lab):
    """The box as a first run leaves it: firmvisor on its disk, booted from it, no media."""
    lab.machine.disk = {'version': VERSION, 'seed': {'hostname': 'hv1'}}
    lab.machine.imported = True
    lab.system['power'] = 'On'
    lab.machine.power_on()
    lab.machine.ticks = 10   # booted long ago


# ---- the installer's journal ------------------------------------------------------------------------
@pytest.mark.parametrize('lines, state', [
    ([], 'idle'),
    (['firmvisor: install: installing firmvisor 0.2.0 from /run/firmvisor/medium onto /dev/vda (vda, 16384 MiB)',
      'firmvisor: install: writing slot A'], 'installing'),
    # image 0.1.0's fv-install and the reworked fvinstall.py write the same line after the read-back
    (['firmvisor: install: installed firmvisor 0.1.0 on /dev/vda and verified it; the seed stays attached for '
      'the first boot'], 'installed'),
    (['firmvisor: install: installed firmvisor 0.2.0 on /dev/vda and verified it; its first boot imports the '
      'seed from its state partition'], 'installed'),
    (['firmvisor: install: /dev/vda already holds firmvisor 0.1.0: not rewritten (its state is kept); the host '
      'stays live.'], 'on_disk'),
    (['firmvisor: install: /dev/vda holds a firmvisor install (partitions fvboot, fvslotA): not installing, so '
      'nothing on it is lost; the host stays live.'], 'on_disk'),
    (['firmvisor: install: install_force: overwriting /dev/vda, which holds a firmvisor install (partitions fvboot)',
      'firmvisor: install: installing firmvisor 0.2.0 from /run/firmvisor/medium onto /dev/vda'], 'installing'),
    (['firmvisor: install: /dev/sda holds an ext4 file system: not installing, so nothing on it is lost'], 'failed'),
    (['firmvisor: install: installing firmvisor 0.2.0 from x onto /dev/vda', 'firmvisor: install: FAILED: '
      '/dev/vda is in use: vda1 mounted on /mnt'], 'failed'),
    (['firmvisor: install: error: fv-install failed (exit 1); staying live'], 'failed'),
    (['firmvisor: install: no install_to in the seed: nothing to install, the host stays live'], 'failed'),
    (['firmvisor-install.service - firmvisor install was skipped because of an unmet condition check '
      '(ConditionPathExists=/run/firmvisor/install_to).'], 'failed'),
    (['image: verify: no errors in 12 regions'], 'idle'),
])
def test_installer_outcome_reads_both_installers(lines, state):
    assert rf.installer_outcome(lines)[0] == state


def test_installer_lines_are_the_ones_the_images_write():
    """The patterns follow the installer's own strings (image 0.1.0's, or the reworked fvinstall.py,
    whichever this tree has): a rewording there must fail here."""
    sources = []
    for path in ('roles/image/files/overlay/usr/lib/firmvisor/fv-install', 'image/tools/fvinstall.py'):
        full = os.path.join(HERE, '..', '..', path)
        if os.path.isfile(full):
            with open(full) as handle:
                sources.append(handle.read())
    assert sources
    for text in sources:
        assert "installed firmvisor %s on %s and verified it" in text
        assert "log('FAILED: %s" in text
        assert 'already holds firmvisor %s: not rewritten' in text or "holds %s: not installing" in text


def test_probe_output_is_parsed():
    state = rf.parse_probe('version=0.2.0\nlive=1\njournal=firmvisor: install: installing firmvisor 0.2.0 onto x\n')
    assert (state.runs, state.version, state.installer[0]) == ('live', '0.2.0', 'installing')
    state = rf.parse_probe('version=0.2.0\nlive=0\n')
    assert (state.runs, state.version, state.journal) == ('firmvisor', '0.2.0', ())
    assert rf.parse_probe('version=\nlive=0\n').version is None


# ---- the whole flow ----------------------------------------------------------------------------------
def test_a_blank_box_is_installed_step_by_step(lab):
    result = lab.run()
    assert result['changed']
    assert steps(result) == FLOW
    assert lab.machine.disk['version'] == VERSION and lab.machine.boot == 'disk'
    assert lab.machine.boots[0] == 'live' and lab.machine.boots[-1] == 'disk'
    assert lab.media == {'Cd': None, 'Floppy': None}
    assert lab.system['power'] == 'On' and lab.system['boot_target'] == 'Hdd'
    assert result['version'] == VERSION and result['address'] == '127.0.0.1' and result['port'] == 2222
    assert result['uri'] == 'qemu+ssh://root@127.0.0.1:2222/system'
    assert result['server']['host'] == 'firmvisor' and not result['reflash_required']
    assert result['install_to'] == '/dev/vda'
    assert result['diff']['before']['power'] == 'Off' and result['diff']['after']['version'] == VERSION
    assert result['warnings'] == []
    # the seed the live installer read: the declared host, key and disk
    assert lab.machine.seed == {'hostname': 'hv1', 'authorized_keys': [KEY], 'network': {'mode': 'dhcp'},
                                'install_to': '/dev/vda'}
    assert [t['phase'] for t in lab.server.timings] == [
        'media', 'media', 'media', 'media', 'boot', 'boot', 'install', 'reboot', 'reboot', 'reboot', 'ready',
        'ready', 'ready']
    insert, eject = 'POST Actions/VirtualMedia.InsertMedia', 'POST Actions/VirtualMedia.EjectMedia'
    boot, reset = 'PATCH Systems/SYSTEM', 'POST Actions/ComputerSystem.Reset'
    assert lab.writes() == [insert, insert, boot, reset, eject, boot, reset, eject,
                            boot]   # the emulator refuses "Disabled" alone: the target stays Hdd


def test_the_ssh_probe_runs_beside_the_bmc_reads(lab):
    """A re-run asks the host over SSH while it reads the BMC: the probe sees BMC requests arrive
    while it runs (one after the other, it would wait in vain: nothing reads the BMC after it)."""
    lab.run()
    during = []

    class Overlapping(FakeHost):
        def state(self):
            before, deadline = len(lab.fake.requests), time.monotonic() + 5
            while len(lab.fake.requests) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            during.append(len(lab.fake.requests) - before)
            return super().state()
    again = lab.run(host=Overlapping(lab.machine))
    assert not again['changed'] and again['version'] == VERSION
    assert len(during) == 1 and during[0] > 0


def test_a_second_run_reads_each_bmc_resource_once(lab):
    """Every request is a round trip to the BMC (a slow one on many): a re-run that finds everything in
    place reads the system, each media slot and everything else once."""
    lab.run()
    assert not lab.run()['changed']
    reads = [r['path'] for r in lab.fake.requests if r['method'] == 'GET']
    assert SYSTEM_UUID in ' '.join(reads) and any(path.endswith('/Cd') for path in reads)
    assert sorted(path for path in set(reads) if reads.count(path) > 1) == []


def test_a_second_run_changes_nothing_and_writes_nothing(lab):
    lab.run()
    again = lab.run()
    assert not again['changed'] and again['actions'] == [] and lab.writes() == []
    assert again['version'] == VERSION and again['diff']['before'] == again['diff']['after']
    assert not lab.run(check_mode=True)['changed']


def test_check_mode_plans_the_flow_and_writes_nothing(lab):
    result = lab.run(check_mode=True)
    assert result['changed'] and steps(result) == FLOW
    assert result['diff']['after'] == {'power': 'On', 'host': 'firmvisor', 'version': VERSION}
    assert lab.writes() == [] and lab.machine.boot is None and not os.path.exists(lab.seed_path)
    assert lab.host.probes == 0, 'a server that is off is not asked over SSH'


def test_a_real_bmc_that_forgets_a_once_override_after_one_boot(lab):
    lab.fake.boot_once_reads_continuous = False
    result = lab.run()
    assert steps(result) == FLOW and lab.machine.boot == 'disk' and lab.media == {'Cd': None, 'Floppy': None}


def test_a_server_that_is_on_running_something_else_is_restarted(lab):
    lab.system['power'] = 'On'
    lab.machine.power_on()   # a blank disk: it answers nothing
    result = lab.run()
    assert 'force a restart (power is On)' in result['actions'] and 'power on' not in result['actions']
    assert lab.machine.disk['version'] == VERSION


def test_the_install_stream_missed_the_installers_reboot(lab):
    """The installer rebooted into the disk before its verify line reached us: the disk answering
    from itself says it is installed."""
    lab.fake.boot_once_reads_continuous = False

    class Deaf(FakeHost):
        def follow(self):
            follower = super().follow()
            follower.poll = lambda: (self.machine.tick(), [])[1]
            return follower
    result = lab.run(host=Deaf(lab.machine))
    assert result['changed'] and lab.machine.boot == 'disk' and result['version'] == VERSION


def test_installed_server_is_left_alone(lab):
    installed(lab)
    result = lab.run()
    assert not result['changed'] and result['actions'] == [] and lab.writes() == []
    assert result['server']['host'] == 'firmvisor' and result['version'] == VERSION
    assert not os.path.exists(lab.seed_path)


def test_an_earlier_runs_leftovers_on_an_installed_server_are_removed(lab):
    installed(lab)
    lab.fake.media[SYSTEM_UUID]['Floppy'].update(image=lab.seed_url, inserted=True)
    lab.fake.media[SYSTEM_UUID]['Cd'].update(image='http://127.0.0.1:1/someone-elses.iso', inserted=True)
    result = lab.run()
    assert result['changed'] and result['actions'] == ['eject the floppy %s (left from an earlier run)'
                                                       % lab.seed_url]
    assert lab.media == {'Cd': 'http://127.0.0.1:1/someone-elses.iso', 'Floppy': None}


def test_another_version_is_reported_not_reinstalled(lab):
    installed(lab)
    lab.machine.disk['version'] = '0.1.0'
    result = lab.run()
    assert not result['changed'] and result['reflash_required'] and lab.writes() == []
    assert 'runs firmvisor 0.1.0 from its disk, 0.2.0 is declared' in result['warnings'][0]


def test_reflash_installs_over_another_version(lab):
    installed(lab)
    lab.machine.disk['version'] = '0.1.0'
    result = lab.run(reflash=True)
    assert result['changed'] and 'force a restart (power is On)' in result['actions']
    assert lab.machine.seed['install_force'] is True
    assert lab.machine.disk['version'] == VERSION and result['version'] == VERSION


def test_wait_false_stops_after_power_on_and_a_second_run_goes_on(lab):
    result = lab.run(wait=False)
    assert steps(result) == FLOW[:5]
    assert lab.media['Cd'] == lab.iso_url and lab.system['power'] == 'On'
    again = lab.run()
    assert 'insert the CD' not in steps(again) and 'power on' not in steps(again)
    assert lab.machine.disk['version'] == VERSION and lab.media == {'Cd': None, 'Floppy': None}


def test_the_floppy_is_inserted_again_when_the_seed_changed(lab):
    lab.run(wait=False)
    lab.machine.boot = None
    lab.system['power'] = 'Off'
    result = lab.run(hostname='hv1-renamed')
    assert steps(result)[:3] == ['write the seed floppy', 'insert the floppy', 'power on']
    assert lab.machine.seed['hostname'] == 'hv1-renamed'


# ---- each step's failure ---------------------------------------------------------------------------
def bmc_path(lab, tail):
    return '/redfish/v1/' + tail.replace('SYSTEM', 'Systems/' + SYSTEM_UUID)


def test_insert_cd_refused(lab):
    lab.fake.fail('POST', bmc_path(lab, 'Managers/BMC/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia'), 500)
    error = lab.fails()
    assert error.startswith('server hv1: Redfish insert virtual media (cd from %s) failed on BMC %s, system %s: '
                            'the BMC refused it (HTTP 500' % (lab.iso_url, lab.fake.url, SYSTEM_UUID))
    assert 'done and kept: write the seed floppy' in error
    assert lab.media == {'Cd': None, 'Floppy': None} and lab.machine.boot is None


def test_insert_floppy_refused_ejects_the_cd(lab):
    lab.fake.fail('POST', bmc_path(lab, 'Managers/BMC/VirtualMedia/Floppy/Actions/VirtualMedia.InsertMedia'), 500)
    error = lab.fails()
    assert 'Redfish insert virtual media (floppy from %s) failed' % lab.seed_url in error
    assert 'undone: eject the CD' in error
    assert lab.media == {'Cd': None, 'Floppy': None}


def test_boot_override_refused_ejects_both(lab):
    lab.fake.fail('PATCH', bmc_path(lab, 'SYSTEM'), 500)
    error = lab.fails()
    assert 'Redfish set boot override (Cd, Once) failed on BMC' in error
    assert 'undone: eject the floppy, eject the CD' in error
    assert lab.media == {'Cd': None, 'Floppy': None}


def test_power_on_refused_undoes_media_and_override(lab):
    lab.fake.fail('POST', bmc_path(lab, 'SYSTEM/Actions/ComputerSystem.Reset'), 500)
    error = lab.fails()
    assert 'Redfish power On failed on BMC %s, system %s' % (lab.fake.url, SYSTEM_UUID) in error
    assert 'undone: clear the boot override, eject the floppy, eject the CD' in error
    assert lab.media == {'Cd': None, 'Floppy': None} and lab.system['boot_target'] == 'Hdd'


def test_live_system_never_answers(lab):
    lab.machine.live_answers = False
    error = lab.fails()
    assert ('server hv1: Redfish wait for the live system (firmvisor 0.2.0) to answer SSH on 127.0.0.1:2222 failed '
            'on BMC %s, system %s: timed out after 600s' % (lab.fake.url, SYSTEM_UUID)) in error
    assert 'last seen: no SSH greeting on 127.0.0.1:2222 (live)' in error
    assert 'undone: clear the boot override, eject the floppy, eject the CD' in error
    assert 'done and kept: write the seed floppy' in error and 'power on' in error
    assert lab.media == {'Cd': None, 'Floppy': None}


def test_live_system_late_the_second_run_waits_for_its_installer(lab):
    lab.machine.live_answers = False
    lab.fails()
    lab.machine.live_answers = True
    result = lab.run()
    assert steps(result) == ['wait for the live installer to write and verify /dev/vda', 'insert the floppy'] + \
        FLOW[8:]
    assert lab.machine.disk['version'] == VERSION and lab.media == {'Cd': None, 'Floppy': None}


def test_installer_failure_names_its_line_and_undoes(lab):
    lab.machine.installer = 'fail'
    error = lab.fails()
    assert 'Redfish wait for the live installer to write and verify the disk failed on BMC' in error
    assert 'the live installer stopped: firmvisor: install: FAILED: write error on /dev/vda' in error
    assert 'undone: clear the boot override, eject the floppy, eject the CD' in error
    assert lab.media == {'Cd': None, 'Floppy': None}
    # the same seed would fail the same way: refused before any write, naming the installer's line
    again = lab.fails()
    assert 'the live installer on 127.0.0.1:2222 stopped: firmvisor: install: FAILED' in again
    assert lab.writes() == []
    # a new seed (install_force) is another try
    lab.machine.installer = 'ok'
    result = lab.run(install_force=True)
    assert 'force a restart (power is On)' in result['actions'] and lab.machine.disk['version'] == VERSION


def test_installer_that_hangs_keeps_its_cd_and_a_second_run_waits_for_it(lab):
    lab.machine.installer = 'hang'
    error = lab.fails()
    assert 'wait for the live installer to write and verify the disk failed' in error
    assert 'last seen: installer installing (firmvisor: install: installing firmvisor 0.2.0' in error
    assert ('could not undo: eject the CD (left in: the live installer is writing the disk from it '
            '(a second run waits for it))') in error
    assert 'undone: clear the boot override, eject the floppy' in error
    assert lab.media == {'Cd': lab.iso_url, 'Floppy': None}
    lab.machine.installer, lab.machine.started = 'ok', lab.machine.ticks   # it was slow, it goes on
    result = lab.run()
    assert steps(result)[:3] == ['wait for the live installer to write and verify /dev/vda', 'insert the floppy',
                                 'eject the CD (the disk is written)']
    assert lab.machine.disk['version'] == VERSION and lab.media == {'Cd': None, 'Floppy': None}


def test_installed_disk_never_answers(lab):
    lab.machine.disk_answers = False
    error = lab.fails()
    assert 'Redfish wait for firmvisor 0.2.0 to answer SSH from the disk on 127.0.0.1:2222 failed on BMC' in error
    assert 'undone: clear the boot override, clear the boot override, eject the floppy, eject the CD' in error
    assert 'done and kept: write the seed floppy' in error
    assert lab.media == {'Cd': None, 'Floppy': None}
    # it comes up after all: the second run finds it installed
    lab.machine.disk_answers = True
    result = lab.run()
    assert not result['changed'] and lab.writes() == []


def test_a_disk_boot_that_missed_the_seed_is_restarted(lab):
    """Image 0.1.0 may look for the floppy before its driver is up: the installed disk then refuses the
    seed's key, and another boot (the floppy still in) imports it."""
    lab.machine.copies_seed, lab.machine.seed_misses = False, 1
    result = lab.run()
    assert result['changed'] and result['version'] == VERSION and lab.machine.imported
    assert lab.machine.boots.count('disk') >= 2 and lab.media == {'Cd': None, 'Floppy': None}


def test_a_disk_that_never_takes_the_seed_is_restarted_twice_then_fails(lab):
    lab.machine.copies_seed, lab.machine.seed_misses = False, 99
    error = lab.fails()
    assert 'wait for firmvisor 0.2.0 to answer SSH from the disk' in error
    assert 'greets but does not let us in' in error and 'restarted 2 time(s) for the seed import' in error


def test_the_disk_boots_another_version(lab):
    lab.machine.isos[lab.iso_url] = VERSION
    lab.machine.disk = {'version': '0.1.0', 'seed': {}}   # powered off: nobody could ask it
    error = lab.fails()
    assert 'the disk boots firmvisor 0.1.0, not 0.2.0 (reflash: true installs over it)' in error
    result = lab.run(reflash=True)
    assert lab.machine.disk['version'] == VERSION and result['version'] == VERSION


def test_a_seed_url_that_serves_something_else_fails_before_the_bmc_is_touched(lab):
    error = lab.fails(seed_url=lab.www['url'] + '/elsewhere.img')
    assert 'seed_url %s/elsewhere.img: HTTP 404: it does not serve seed_path' % lab.www['url'] in error
    assert lab.writes() == []


# ---- bad input: refused before any write -----------------------------------------------------------
@pytest.mark.parametrize('options, message', [
    (dict(image='/nonexistent/image'), 'server hv1: image /nonexistent/image: not a built firmvisor image'),
    (dict(image_url='IMAGE/missing.iso'), 'server hv1: image_url IMAGE/missing.iso: HTTP 404'),
    (dict(image_url=None), 'server hv1: image_url is required with driver redfish'),
    (dict(seed_path=None), 'server hv1: seed_path is required with driver redfish'),
    (dict(seed_path='/nonexistent/dir/seed.img'), 'seed_path /nonexistent/dir/seed.img: directory /nonexistent/dir'),
    (dict(address=None), 'server hv1: address is required with driver redfish'),
    (dict(install_disk=None), "give install_disk.path (such as /dev/sda) for it"),
    (dict(install_disk={'serial': 'NOPE'}), 'no disk fits serial NOPE'),
    (dict(ssh_authorized_keys=['not a key']), 'ssh_authorized_keys[0] is not an SSH public key line'),
])
def test_bad_input_is_refused_before_any_write(lab, options, message):
    options = {k: (v.replace('IMAGE', lab.www['url']) if isinstance(v, str) else v) for k, v in options.items()}
    error = lab.fails(**options)
    assert message.replace('IMAGE', lab.www['url']) in error
    assert lab.writes() == [] and not os.path.exists(lab.seed_path)


def test_a_box_too_small_is_refused(lab):
    lab.system['memory_gib'] = 0.5
    error = lab.fails()
    assert 'cannot take the firmvisor image: it has 512 MiB of memory, the image needs at least 1024 MiB' in error
    assert lab.writes() == []


def test_install_disk_by_serial_becomes_a_stable_path(lab):
    result = lab.run(check_mode=True, install_disk={'serial': 'S3F5NX0K100001'})
    assert result['install_to'] == '/dev/disk/by-id/wwn-0x5002538c40000001'


def test_bad_credentials(lab):
    error = lab.fails(bmc=dict(lab.params()['bmc'], password='wrong-' + PASSWORD[::-1]))
    assert "Redfish log in failed on BMC %s: the BMC refused the credentials of user 'admin'" % lab.fake.url in error
    assert lab.writes() == []


def test_unreachable_bmc(lab):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    error = lab.fails(bmc=dict(lab.params()['bmc'], address='http://127.0.0.1:%d' % port))
    assert 'failed on BMC http://127.0.0.1:%d: the BMC is unreachable: connection refused' % port in error


def test_untrusted_tls_certificate(lab, tmp_path):
    tls = make_tls(str(tmp_path), 'fvrf2-unit')
    with FakeBmc(users={'admin': PASSWORD}, tls=(tls['cert'], tls['key'])) as secure:
        bmc = dict(lab.params()['bmc'], address=secure.url)
        error = lab.fails(bmc=bmc)
        assert "the BMC's TLS certificate does not verify" in error and 'trust its CA with ca_path' in error
        assert [r for r in secure.requests if r['method'] != 'GET'] == []
        # trusted through ca_path, it gets as far as reading the box
        lab.fake, lab.machine.bmc = secure, secure
        result = lab.run(check_mode=True, bmc=dict(bmc, ca_path=tls['ca']))
        assert result['changed']


def test_missing_system(lab):
    error = lab.fails(system='00000000-0000-0000-0000-000000000000')
    assert 'Redfish find system failed on BMC %s, system 00000000-0000-0000-0000-000000000000: no system' \
        % lab.fake.url in error
    assert lab.writes() == []


# ---- state absent ------------------------------------------------------------------------------------
def test_absent_ejects_clears_and_powers_off_never_the_disk(lab):
    lab.run(wait=False)
    result = lab.run(state='absent')
    assert result['changed'] and result['actions'] == [
        'eject the CD %s' % lab.iso_url, 'eject the floppy %s' % lab.seed_url, 'clear the boot override Cd',
        'power off']
    assert lab.media == {'Cd': None, 'Floppy': None} and lab.system['power'] == 'Off'
    again = lab.run(state='absent')
    assert not again['changed'] and lab.writes() == []


def test_absent_keeps_an_installed_disk(lab):
    lab.run()
    lab.run(state='absent')
    assert lab.machine.disk['version'] == VERSION and lab.system['power'] == 'Off'
    assert not lab.run(state='absent', check_mode=True)['changed']


# ---- SSH, for real processes -------------------------------------------------------------------------
@pytest.fixture
def fake_ssh(tmp_path):
    """An ``ssh`` that prints what the test puts in tmp_path/out (and its exit code in tmp_path/rc),
    behind an SSH greeting on 127.0.0.1 (what ssh_answers looks for)."""
    script = tmp_path / 'ssh'
    script.write_text('#!/bin/sh\necho "$@" >> %s/argv\ncat %s/out\nexit $(cat %s/rc)\n' % ((tmp_path,) * 3))
    script.chmod(0o755)
    (tmp_path / 'rc').write_text('0')
    (tmp_path / 'out').write_text('')
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(8)
    stop = threading.Event()

    def greet():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            with conn:
                conn.sendall(b'SSH-2.0-fake\r\n')
    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    yield {'ssh': str(script), 'port': server.getsockname()[1], 'dir': tmp_path}
    stop.set()
    thread.join()
    server.close()


def test_ssh_host_reads_the_server(fake_ssh):
    host = rf.SshHost('127.0.0.1', fake_ssh['port'], key='/keys/id', ssh=fake_ssh['ssh'])
    (fake_ssh['dir'] / 'out').write_text('version=0.2.0\nlive=1\njournal=firmvisor: install: installed firmvisor '
                                         '0.2.0 on /dev/vda and verified it\n')
    state = host.state()
    assert state.runs == 'live' and state.installer[0] == 'installed'
    argv = (fake_ssh['dir'] / 'argv').read_text()
    assert '-i /keys/id -o IdentitiesOnly=yes' in argv and 'BatchMode=yes' in argv and 'root@127.0.0.1' in argv
    (fake_ssh['dir'] / 'rc').write_text('255')
    (fake_ssh['dir'] / 'out').write_text('')
    state = host.state()
    assert not state.answers and 'greets but does not let us in' in state.seen


def test_ssh_host_without_a_greeting():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    state = rf.SshHost('127.0.0.1', port).state()
    assert not state.answers and state.seen == 'no SSH greeting on 127.0.0.1:%d' % port


def test_journal_follower_streams_and_reconnects(tmp_path):
    clock = Clock()
    follower = rf.JournalFollower([sys.executable, '-c', 'print("one"); print("two")'], clock=clock)
    try:
        lines = []
        for _poll in range(200):
            lines += follower.poll()
            if len(lines) >= 2 and not follower.connected:
                break
            threading.Event().wait(0.01)
        assert lines == ['one', 'two']
        clock.now += 5
        for _poll in range(200):
            if follower.poll() or len(follower.lines) >= 4:
                break
            threading.Event().wait(0.01)
        assert follower.lines[:4] == ['one', 'two', 'one', 'two'] or follower.lines[:3] == ['one', 'two', 'one']
    finally:
        follower.close()


# ---- the module's whole output has no password -------------------------------------------------------
def run_module(args, tmp_path, check_mode=False):
    path = tmp_path / 'args.json'
    path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': dict(args, _ansible_check_mode=check_mode,
                                                            _ansible_diff=True)}))
    module = os.path.join(COLLECTIONS, 'ansible_collections', 'firmvisor', 'hypervisor', 'plugins', 'modules',
                          'server.py')
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    done = subprocess.run([sys.executable, module, str(path)], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    return done.stdout + done.stderr, json.loads(done.stdout)


def test_the_password_is_in_no_output_of_the_module(lab, tmp_path):
    args = {k: v for k, v in lab.params().items() if v is not None and k in SERVER_ARGSPEC}
    args['port'] = 1   # nothing answers SSH there: the plan is the whole install
    text, result = run_module(args, tmp_path, check_mode=True)
    assert result.get('changed') is True, text
    assert PASSWORD not in text and result['invocation']['module_args']['bmc']['password'] != PASSWORD
    text, result = run_module(dict(args, bmc=dict(args['bmc'], password=PASSWORD + 'x')), tmp_path)
    assert result['failed'] and 'refused the credentials' in result['msg']
    assert PASSWORD not in text
    text, result = run_module(dict(args, image_url=lab.www['url'] + '/' + PASSWORD + '.iso'), tmp_path)
    assert result['failed'] and 'HTTP 404' in result['msg'] and PASSWORD not in text


@pytest.mark.parametrize('boot, pending', [
    ({'target': 'Cd', 'enabled': 'Once'}, 'Cd'), ({'target': 'Cd', 'enabled': 'Continuous'}, 'Cd'),
    ({'target': 'Pxe', 'enabled': 'Once'}, 'Pxe'), ({'target': 'Hdd', 'enabled': 'Continuous'}, None),
    ({'target': 'Cd', 'enabled': 'Disabled'}, None), ({'target': 'None', 'enabled': 'Once'}, None), ({}, None),
])
def test_pending_override(boot, pending):
    assert rf.pending_override(boot) == pending


def test_management_address():
    assert rf.management_address({'address': 'hv1.example', 'network': {'address': '192.0.2.7/24'}}) == 'hv1.example'
    assert rf.management_address({'address': None, 'network': {'address': '192.0.2.7/24'}}) == '192.0.2.7'
    assert rf.management_address({'address': None, 'network': None}) is None
