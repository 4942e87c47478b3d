# -*- coding: utf-8 -*-
"""The BMC client (plugins/module_utils/redfish/bmc.py) against an in-process fake BMC on 127.0.0.1:
session and Basic auth, wrong credentials, TLS verification, unreachable BMCs, missing systems and
slots, every operation and its failure; and that the password never shows."""

from __future__ import annotations

import base64
import logging
import socket
import threading

import pytest
from fakebmc import GIB, OTHER_UUID, ROOT, SYSTEM_UUID, FakeBmc, error_body, make_system, make_tls

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError, FvTimeout
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.redfish.bmc import (
    Bmc, BmcAccess, wait_until)

PASSWORD = 'Fv-S3cret-9Zq!'
BASIC = base64.b64encode(('admin:' + PASSWORD).encode()).decode()
SYSTEM = ROOT + '/Systems/' + SYSTEM_UUID
CD = ROOT + '/Managers/BMC/VirtualMedia/Cd'
ISO = 'http://127.0.0.1:8080/firmvisor.iso'


@pytest.fixture
def fake():
    with FakeBmc(users={'admin': PASSWORD}) as bmc:
        yield bmc


def access(fake_or_url, password=PASSWORD, **kwargs):
    url = fake_or_url if isinstance(fake_or_url, str) else fake_or_url.url
    kwargs.setdefault('timeout', 5.0)
    kwargs.setdefault('connect_timeout', 2.0)
    return BmcAccess(url, 'admin', password, **kwargs)


def fails(func, cls=FvError):
    with pytest.raises(cls) as info:
        func()
    return info.value


def no_secret(*texts):
    for text in texts:
        assert PASSWORD not in str(text)
        assert BASIC not in str(text)


# ---- address and access -------------------------------------------------------------------------
def test_address_forms():
    assert BmcAccess('10.0.0.5', 'u', 'p').url == 'https://10.0.0.5'
    assert BmcAccess('bmc.example:8443/', 'u', 'p').url == 'https://bmc.example:8443'
    assert BmcAccess('http://127.0.0.1:8000', 'u', 'p').url == 'http://127.0.0.1:8000'
    assert BmcAccess('h', 'u', 'p', validate_certs=False, ca_path='/x').verify is False
    assert BmcAccess('h', 'u', 'p', ca_path='/x').verify == '/x'
    assert BmcAccess('h', 'u', 'p').verify is True
    error = fails(lambda: BmcAccess('https://admin:' + PASSWORD + '@h', 'u', PASSWORD).url)
    assert 'not in the URL' in str(error)
    no_secret(error)
    assert 'ftp' in str(fails(lambda: BmcAccess('ftp://h', 'u', 'p').url))
    no_secret(repr(BmcAccess('h', 'admin', PASSWORD)))


# ---- authentication -----------------------------------------------------------------------------
def test_session_auth_logs_in_uses_the_token_and_logs_out(fake):
    with Bmc(access(fake)) as bmc:
        assert bmc.auth_method == 'session'
        assert [s['uuid'] for s in bmc.list_systems()] == [SYSTEM_UUID]
        assert len(fake.tokens) == 1
    assert fake.tokens == {}, 'close() deletes the session'
    logins = [r for r in fake.requests if r['method'] == 'POST' and r['path'].endswith('/Sessions')]
    assert len(logins) == 1
    authed = [r for r in fake.requests if r['path'] == ROOT + '/Systems']
    assert authed and all('X-Auth-Token' in r['headers'] and 'Authorization' not in r['headers'] for r in authed)


def test_basic_auth_when_the_bmc_has_no_sessions():
    with FakeBmc(users={'admin': PASSWORD}, sessions=False) as fake:
        with Bmc(access(fake)) as bmc:
            assert bmc.auth_method == 'basic'
            assert bmc.system().power_state() == 'Off'
        authed = [r for r in fake.requests if r['path'] == SYSTEM]
        assert authed and all(r['headers'].get('Authorization') == 'Basic ' + BASIC for r in authed)


@pytest.mark.parametrize('sessions', [True, False], ids=['session', 'basic'])
def test_wrong_credentials(sessions):
    with FakeBmc(users={'admin': 'the-right-one'}, sessions=sessions) as fake:
        error = fails(lambda: Bmc(access(fake)).connect())
    message = str(error)
    assert message.startswith('Redfish log in failed on BMC %s: ' % fake.url)
    assert "refused the credentials of user 'admin'" in message and 'HTTP 401' in message
    assert error.details['step'] == 'log in' and error.details['bmc'] == fake.url
    no_secret(message, error.details)


# ---- TLS ----------------------------------------------------------------------------------------
@pytest.fixture
def tls(tmp_path):
    return make_tls(str(tmp_path))


def test_tls_certificate_that_does_not_verify(tls):
    with FakeBmc(users={'admin': PASSWORD}, tls=(tls['cert'], tls['key'])) as fake:
        error = fails(lambda: Bmc(access(fake)).connect())
        assert fake.requests == [], 'nothing is sent over an unverified connection'
    message = str(error)
    assert message.startswith('Redfish connect failed on BMC https://127.0.0.1:')
    assert "TLS certificate does not verify" in message and 'certificate verify failed' in message
    assert 'ca_path' in message and 'validate_certs: false' in message
    no_secret(message)


def test_tls_trusted_through_the_ca_file(tls):
    with FakeBmc(users={'admin': PASSWORD}, tls=(tls['cert'], tls['key'])) as fake:
        with Bmc(access(fake, ca_path=tls['ca'])) as bmc:
            assert bmc.system().power_state() == 'Off'


def test_tls_with_a_ca_file_that_did_not_sign_it(tls):
    with FakeBmc(users={'admin': PASSWORD}, tls=(tls['cert'], tls['key'])) as fake:
        error = fails(lambda: Bmc(access(fake, ca_path=tls['other_ca'])).connect())
    assert 'does not verify' in str(error) and 'not signed by the CA in %s' % tls['other_ca'] in str(error)


def test_tls_without_verification_when_asked(tls):
    with FakeBmc(users={'admin': PASSWORD}, tls=(tls['cert'], tls['key'])) as fake:
        with Bmc(access(fake, validate_certs=False)) as bmc:
            assert bmc.auth_method == 'session'


def test_plain_http_client_against_a_tls_bmc(tls):
    with FakeBmc(users={'admin': PASSWORD}, tls=(tls['cert'], tls['key'])) as fake:
        error = fails(lambda: Bmc(access('http://' + fake.address)).connect())
    assert 'Redfish connect failed on BMC http://127.0.0.1:' in str(error)
    assert 'closed the connection' in str(error) or 'unreachable' in str(error)


# ---- unreachable --------------------------------------------------------------------------------
def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_connection_refused():
    url = 'https://127.0.0.1:%d' % free_port()
    error = fails(lambda: Bmc(access(url)).connect())
    assert str(error) == ('Redfish connect failed on BMC %s: the BMC is unreachable: connection refused '
                          '(nothing listens on %s)' % (url, url))


def test_bmc_that_never_completes_the_connection():
    # a listener whose accept queue is full: the kernel drops further SYNs, as a dead host would
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _filler in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(('127.0.0.1', port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        url = 'https://127.0.0.1:%d' % port
        error = fails(lambda: Bmc(access(url, connect_timeout=0.5)).connect())
        assert str(error) == ('Redfish connect failed on BMC %s: the BMC is unreachable: no connection within '
                              '0.5s (connect timeout)' % url)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_bmc_that_accepts_but_never_answers():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        url = 'http://127.0.0.1:%d' % listener.getsockname()[1]
        error = fails(lambda: Bmc(access(url, timeout=0.5)).connect())
        assert 'did not answer within 0.5s' in str(error)
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


# ---- systems ------------------------------------------------------------------------------------
def test_the_only_system_by_default_and_by_uuid_id_or_name(fake):
    with Bmc(access(fake)) as bmc:
        assert bmc.system().label == SYSTEM_UUID
        assert bmc.system(SYSTEM_UUID.upper()).label == SYSTEM_UUID
        assert bmc.system('fvrf-box').label == SYSTEM_UUID


def test_missing_system_lists_what_exists(fake):
    with Bmc(access(fake)) as bmc:
        error = fails(lambda: bmc.system('00000000-0000-0000-0000-000000000000'))
    assert str(error) == (
        'Redfish find system failed on BMC %s, system 00000000-0000-0000-0000-000000000000: no system '
        '00000000-0000-0000-0000-000000000000 on this BMC (it has: %s (UUID %s, name fvrf-box))'
        % (fake.url, SYSTEM_UUID, SYSTEM_UUID))


def test_several_systems_need_a_uuid():
    systems = [make_system(), make_system(OTHER_UUID, 'fvrf-other')]
    with FakeBmc(users={'admin': PASSWORD}, systems=systems) as fake:
        with Bmc(access(fake)) as bmc:
            error = fails(bmc.system)
            assert bmc.system(OTHER_UUID).label == OTHER_UUID
    assert 'the BMC has 2 systems, so name one by UUID' in str(error) and OTHER_UUID in str(error)


def test_no_system_at_all():
    with FakeBmc(users={'admin': PASSWORD}, systems=[]) as fake:
        with Bmc(access(fake)) as bmc:
            assert 'the BMC has 0 systems' in str(fails(bmc.system))


# ---- power --------------------------------------------------------------------------------------
def test_power_on_off_and_idempotence(fake):
    with Bmc(access(fake)) as bmc:
        system = bmc.system()
        assert system.power('On') is True
        assert system.power_state() == 'On'
        assert system.power('On') is False
        assert system.power('ForceOff') is True
        assert system.power('ForceOff') is False
        assert system.power('GracefulShutdown') is False
    resets = [r['body'] for r in fake.requests if r['path'].endswith('ComputerSystem.Reset')]
    assert resets == [b'{"ResetType": "On"}', b'{"ResetType": "ForceOff"}']


def test_force_restart_of_a_system_that_is_off_powers_it_on(fake):
    with Bmc(access(fake)) as bmc:
        assert bmc.system().power('ForceRestart') is True
    assert [r['body'] for r in fake.requests if r['path'].endswith('ComputerSystem.Reset')] == [
        b'{"ResetType": "On"}']
    assert fake.systems[SYSTEM_UUID]['power'] == 'On'


def test_power_waits_until_the_bmc_reports_the_state():
    with FakeBmc(users={'admin': PASSWORD}, power_delay_reads=3) as fake:
        with Bmc(access(fake)) as bmc:
            assert bmc.system().power('On', interval=0.01) is True
            assert fake.systems[SYSTEM_UUID]['power'] == 'On'


def test_power_wait_times_out_naming_what_it_waited_for():
    with FakeBmc(users={'admin': PASSWORD}, power_delay_reads=-1) as fake:
        with Bmc(access(fake)) as bmc:
            error = fails(lambda: bmc.system().power('On', timeout=0.3, interval=0.05), FvTimeout)
    assert str(error) == ('Redfish wait for power On (after power On) failed on BMC %s, system %s: timed out '
                          'after 0.3s waiting for PowerState On (last seen: PowerState Off)' % (fake.url, SYSTEM_UUID))
    assert error.details['waited_for'] == 'PowerState On'


def test_power_action_refused_by_the_bmc(fake):
    fake.fail('POST', SYSTEM + '/Actions/ComputerSystem.Reset', 409,
              error_body('Base.1.0.ResourceInUse', 'the system is busy'))
    with Bmc(access(fake)) as bmc:
        error = fails(lambda: bmc.system().power('On'))
    assert str(error) == ('Redfish power On failed on BMC %s, system %s: the BMC refused it (HTTP 409: the system '
                          'is busy)' % (fake.url, SYSTEM_UUID))


def test_power_action_the_bmc_does_not_offer(fake):
    fake.systems[SYSTEM_UUID]['reset_types'] = ['On', 'ForceOff']
    fake.systems[SYSTEM_UUID]['power'] = 'On'
    with Bmc(access(fake)) as bmc:
        error = fails(lambda: bmc.system().power('GracefulShutdown'))
        assert 'does not offer the reset type GracefulShutdown (it offers: ForceOff, On)' in str(error)
        assert 'expected one of On, ForceOff' in str(fails(lambda: bmc.system().power('Explode')))


# ---- virtual media ------------------------------------------------------------------------------
def test_insert_read_and_eject_media(fake):
    with Bmc(access(fake)) as bmc:
        system = bmc.system()
        assert system.inserted_media('cd') == {'id': 'Cd', 'name': 'Virtual CD', 'media_types': ['CD', 'DVD'],
                                               'inserted': False, 'image': None}
        assert system.insert_media('cd', ISO) is True
        assert system.insert_media('cd', ISO) is False
        assert system.inserted_media('cd')['image'] == ISO
        assert system.insert_media('floppy', 'http://127.0.0.1:8080/seed.img') is True
        assert [s['id'] for s in system.media_slots() if s['inserted']] == ['Cd', 'Floppy']
        # another image: the old one is ejected first
        assert system.insert_media('cd', ISO + '?v=2') is True
        assert system.inserted_media('cd')['image'] == ISO + '?v=2'
        assert system.eject_media('cd') is True
        assert system.eject_media('cd') is False
        assert system.inserted_media('cd')['inserted'] is False
    actions = [r['path'].rsplit('.', 1)[1] for r in fake.requests if '/Actions/VirtualMedia.' in r['path']]
    assert actions == ['InsertMedia', 'InsertMedia', 'EjectMedia', 'InsertMedia', 'EjectMedia']


def test_no_slot_for_floppy_media():
    with FakeBmc(users={'admin': PASSWORD}, slots=('Cd',)) as fake:
        with Bmc(access(fake)) as bmc:
            error = fails(lambda: bmc.system().insert_media('floppy', 'http://127.0.0.1/seed.img'))
    assert str(error) == ('Redfish insert virtual media (floppy from http://127.0.0.1/seed.img) failed on BMC %s, '
                          'system %s: no virtual media slot takes Floppy/USBStick media (slots: Cd [CD, DVD])'
                          % (fake.url, SYSTEM_UUID))


def test_insert_refused(fake):
    fake.fail('POST', CD + '/Actions/VirtualMedia.InsertMedia', 500,
              error_body('Base.1.0.InternalError', 'cannot fetch the image'))
    with Bmc(access(fake, retries=1)) as bmc:
        error = fails(lambda: bmc.system().insert_media('cd', ISO))
    assert 'Redfish insert virtual media (cd from %s) failed' % ISO in str(error)
    assert 'the BMC refused it (HTTP 500: cannot fetch the image)' in str(error)


def test_insert_that_does_not_stick(fake):
    original = fake.act

    def forgetful(method, path, body):
        result = original(method, path, body)
        if path.endswith('InsertMedia'):
            fake.media[SYSTEM_UUID]['Cd'].update(image=None, inserted=False)
        return result
    fake.act = forgetful
    with Bmc(access(fake)) as bmc:
        error = fails(lambda: bmc.system().insert_media('cd', ISO))
    assert 'accepted the request but the slot Cd reads back inserted=False image=None' in str(error)


def test_eject_refused(fake):
    fake.media[SYSTEM_UUID]['Cd'].update(image=ISO, inserted=True)
    fake.fail('POST', CD + '/Actions/VirtualMedia.EjectMedia', 403,
              error_body('Base.1.0.InsufficientPrivilege', 'operator may not eject'))
    with Bmc(access(fake)) as bmc:
        error = fails(lambda: bmc.system().eject_media('cd'))
    assert str(error).startswith('Redfish eject virtual media (cd) failed on BMC %s, system %s: '
                                 % (fake.url, SYSTEM_UUID))
    # sushy swallows a 403 on EjectMedia; the read-back catches it
    assert str(error).endswith('the slot Cd still reads inserted after EjectMedia (image %s)' % ISO)


def test_unknown_media_kind(fake):
    with Bmc(access(fake)) as bmc:
        assert "media kind 'usb': expected one of cd, floppy" in str(fails(lambda: bmc.system().eject_media('usb')))


# ---- boot override ------------------------------------------------------------------------------
def test_boot_once_to_cd_and_clear(fake):
    with Bmc(access(fake)) as bmc:
        system = bmc.system()
        assert system.boot_override() == {'target': 'Hdd', 'enabled': 'Continuous', 'mode': 'Legacy',
                                          'allowed_targets': ['Pxe', 'Cd', 'Hdd']}
        assert system.set_boot_override('Cd', 'Once') is True
        assert system.boot_override()['target'] == 'Cd' and system.boot_override()['enabled'] == 'Once'
        assert system.set_boot_override('Cd', 'Once') is False
        # the fake, like sushy-emulator, refuses BootSourceOverrideEnabled alone: the disk instead
        assert system.clear_boot_override() == 'target Hdd'
        assert system.boot_override()['target'] == 'Hdd'
    patches = [r['body'] for r in fake.requests if r['method'] == 'PATCH']
    assert patches == [b'{"Boot": {"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once"}}',
                       b'{"Boot": {"BootSourceOverrideEnabled": "Disabled"}}',
                       b'{"Boot": {"BootSourceOverrideTarget": "Hdd"}}']


def test_boot_once_read_back_as_continuous_is_sent_again():
    with FakeBmc(users={'admin': PASSWORD}, boot_once_reads_continuous=True) as fake:
        with Bmc(access(fake)) as bmc:
            system = bmc.system()
            assert system.set_boot_override('Cd', 'Once') is True
            assert system.boot_override()['enabled'] == 'Continuous'
            assert system.set_boot_override('Cd', 'Once') is True


def test_boot_target_the_bmc_does_not_offer(fake):
    with Bmc(access(fake)) as bmc:
        error = fails(lambda: bmc.system().set_boot_override('UsbCd', 'Once'))
    assert str(error) == ('Redfish set boot override (UsbCd, Once) failed on BMC %s, system %s: the BMC does not '
                          'offer the boot target UsbCd (it offers: Pxe, Cd, Hdd)' % (fake.url, SYSTEM_UUID))


def test_boot_override_refused(fake):
    fake.fail('PATCH', SYSTEM, 400, error_body('Base.1.0.PropertyValueNotInList', 'Cd is not allowed now'))
    with Bmc(access(fake)) as bmc:
        error = fails(lambda: bmc.system().set_boot_override('Cd', 'Once'))
    assert 'the BMC refused it (HTTP 400: Cd is not allowed now)' in str(error)


# ---- inventory ----------------------------------------------------------------------------------
def test_inventory(fake):
    fake.media[SYSTEM_UUID]['Cd'].update(image=ISO, inserted=True)
    with Bmc(access(fake)) as bmc:
        inventory = bmc.system().inventory()
    assert inventory['system'] == {'id': SYSTEM_UUID, 'uuid': SYSTEM_UUID, 'name': 'fvrf-box',
                                   'manufacturer': 'Sushy Emulator', 'model': None, 'serial': None}
    assert inventory['power_state'] == 'Off'
    assert inventory['cpus'] == {'count': 2, 'model': 'qemu64', 'sockets': 2, 'cores': 2, 'threads': 2}
    assert inventory['memory_mib'] == 4096
    assert inventory['nics'] == [
        {'id': '52:54:00:aa:bb:01', 'mac': '52:54:00:aa:bb:01', 'link': 'LinkUp', 'speed_mbps': 1000,
         'state': 'Enabled'},
        {'id': '52:54:00:aa:bb:02', 'mac': '52:54:00:aa:bb:02', 'link': 'LinkUp', 'speed_mbps': 1000,
         'state': 'Enabled'}]
    assert [(d['name'], d['size_bytes'], d['serial'], d['source']) for d in inventory['disks']] == [
        ('ssd0', 240 * GIB, 'S3F5NX0K100001', 'Storage'), ('hdd0', 4000 * GIB, 'ZC1A0001', 'Storage'),
        ('fvrf-box-disk.qcow2', 16 * GIB, None, 'SimpleStorage')]
    assert inventory['disks'][0]['wwn'] == '5002538c40000001'
    assert inventory['disks'][0]['model'] == 'SAMSUNG MZ7KM240'
    assert inventory['firmware'] == {'bios_version': '1.16.2', 'boot_mode': 'Legacy'}
    assert inventory['boot']['allowed_targets'] == ['Pxe', 'Cd', 'Hdd']
    assert [(m['id'], m['inserted'], m['image']) for m in inventory['virtual_media']] == [
        ('Cd', True, ISO), ('Floppy', False, None)]


def test_inventory_with_a_part_the_bmc_fails_to_serve(fake):
    # sushy-emulator answers 500 for Storage unless it is configured with fake drives
    fake.fail('GET', SYSTEM + '/Storage', 500, error_body('Base.1.0.InternalError', 'no storage collection'))
    with Bmc(access(fake)) as bmc:
        inventory = bmc.system().inventory()
    assert [d['source'] for d in inventory['disks']] == ['SimpleStorage']
    assert inventory['problems'] == ['Storage: the BMC failed to serve it (HTTP 500: no storage collection)']


def test_inventory_read_failure_names_the_step(fake):
    with Bmc(access(fake)) as bmc:
        system = bmc.system()
        system.power_state()   # the system as found is used once: the inventory reads it again
        fake.fail('GET', SYSTEM, 500)
        error = fails(system.inventory)
    assert str(error).startswith('Redfish read inventory failed on BMC %s, system %s: the BMC refused it (HTTP 500'
                                 % (fake.url, SYSTEM_UUID))


# ---- secrets ------------------------------------------------------------------------------------
def test_the_password_never_shows(fake, tls, caplog):
    """Every failure path, with sushy, urllib3 and requests logging at DEBUG: no password anywhere."""
    caplog.set_level(logging.DEBUG)
    errors = []
    with FakeBmc(users={'admin': 'other'}) as wrong:
        errors.append(fails(lambda: Bmc(access(wrong)).connect()))
    with FakeBmc(users={'admin': PASSWORD}, tls=(tls['cert'], tls['key'])) as secure:
        errors.append(fails(lambda: Bmc(access(secure)).connect()))
    errors.append(fails(lambda: Bmc(access('https://127.0.0.1:%d' % free_port())).connect()))
    # a BMC that echoes the request, password and all, in its error
    fake.fail('POST', CD + '/Actions/VirtualMedia.InsertMedia', 400,
              error_body('Base.1.0.GeneralError', 'bad request from admin/' + PASSWORD))
    with Bmc(access(fake)) as bmc:
        system = bmc.system()
        errors.append(fails(lambda: system.insert_media('cd', ISO)))
        errors.append(fails(lambda: bmc.system('nope')))
        system.power('On')
        system.set_boot_override('Cd', 'Once')
        system.inventory()
    for error in errors:
        no_secret(error, repr(error), error.details, error.args)
    assert '********' in str(errors[3])
    no_secret(caplog.text)
    assert 'HTTP request' in caplog.text  # sushy's debug log was captured, so the check above means something


def test_wait_until_with_a_fake_clock():
    now = [0.0]
    seen = iter([(False, 'a'), (False, 'b'), (True, 'c')])
    assert wait_until(lambda: next(seen), 10, 'c', interval=2, clock=lambda: now[0],
                      sleep=lambda s: now.__setitem__(0, now[0] + s)) == 'c'
    assert now[0] == 4
    now[0] = 0.0
    error = fails(lambda: wait_until(lambda: (False, 'still b'), 5, 'the thing', interval=2, clock=lambda: now[0],
                                     sleep=lambda s: now.__setitem__(0, now[0] + s)), FvTimeout)
    assert str(error) == 'timed out after 5s waiting for the thing (last seen: still b)'
