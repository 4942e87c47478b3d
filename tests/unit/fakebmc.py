# -*- coding: utf-8 -*-
"""A small in-process Redfish BMC on 127.0.0.1 for unit tests (HTTP or HTTPS, session and Basic auth).

The JSON follows what sushy-emulator serves (tests/redfish/ records it) and sushy's own test
samples: service root, SessionService, Systems (power, boot override, Reset action, processors,
ethernet interfaces, Storage and SimpleStorage), Managers with VirtualMedia Cd and Floppy slots.

    with FakeBmc(users={'admin': 'pw'}) as bmc:     # bmc.url: http://127.0.0.1:PORT
        bmc.fail('POST', '/redfish/v1/Managers/BMC/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia', 500)

State is plain attributes (``systems``, ``media``) so tests can look and change; ``requests`` records
every request (method, path, headers, body). ``replay`` serves GETs from sushy-emulator's recorded
replies (fixtures/sushy-emulator.json) instead. ``make_tls`` makes a CA and a server certificate.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import os
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = '/redfish/v1'
SYSTEM_UUID = '9e5bd0d2-2a53-4b4c-8f5e-1f0a3c6a7e01'
OTHER_UUID = '4a1c7f2e-58b0-4b55-9c1e-0d7be1b1c202'
GIB = 1024 ** 3


def make_system(uuid: str = SYSTEM_UUID, name: str = 'fvrf-box') -> Dict[str, Any]:
    """A system's state, as the emulator models a libvirt domain (plus Storage drives)."""
    return {
        'uuid': uuid, 'name': name, 'power': 'Off', 'boot_target': 'Hdd', 'boot_enabled': 'Continuous',
        'boot_mode': 'Legacy', 'cpus': 2, 'cpu_model': 'qemu64', 'memory_gib': 4, 'bios_version': '1.16.2',
        'macs': ['52:54:00:aa:bb:01', '52:54:00:aa:bb:02'],
        'drives': [
            {'Id': 'disk0', 'Name': 'ssd0', 'CapacityBytes': 240 * GIB, 'Model': 'SAMSUNG MZ7KM240',
             'SerialNumber': 'S3F5NX0K100001', 'MediaType': 'SSD', 'Protocol': 'SATA',
             'Identifiers': [{'DurableNameFormat': 'NAA', 'DurableName': '5002538C40000001'}]},
            {'Id': 'disk1', 'Name': 'hdd0', 'CapacityBytes': 4000 * GIB, 'Model': 'ST4000NM0035',
             'SerialNumber': 'ZC1A0001', 'MediaType': 'HDD', 'Protocol': 'SAS'},
        ],
        'simple': [{'Name': 'fvrf-box-disk.qcow2', 'CapacityBytes': 16 * GIB}],
        'reset_types': ['On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart', 'ForceRestart', 'Nmi', 'ForceOn'],
    }


class FakeBmc:
    """A Redfish service. ``users``: {name: password}; ``sessions``: offer SessionService login."""

    def __init__(self, users: Optional[Dict[str, str]] = None, sessions: bool = True,
                 tls: Optional[Tuple[str, str]] = None, systems: Optional[List[Dict[str, Any]]] = None,
                 boot_once_reads_continuous: bool = False, power_delay_reads: int = 0,
                 slots: Tuple[str, ...] = ('Cd', 'Floppy'),
                 replay: Optional[Dict[str, Dict[str, Any]]] = None,
                 on_reset: Optional[Callable[[str, str], None]] = None) -> None:
        self.users = dict(users or {'admin': 'secret'})
        self.sessions_enabled = sessions
        self.tls = tls
        self.systems = {s['uuid']: s for s in (systems if systems is not None else [make_system()])}
        self.slots = slots
        self.media = {uuid: {slot: {'image': None, 'inserted': False} for slot in slots} for uuid in self.systems}
        # recorded replies {path: {status, body}} (harness.py record): GETs are answered from them
        self.replay = replay
        self.boot_once_reads_continuous = boot_once_reads_continuous
        # called with (system UUID, ResetType) after a reset the BMC accepted (FakeMachine boots then)
        self.on_reset = on_reset
        # a power change shows only after this many GETs of the system (0: at once; -1: never)
        self.power_delay_reads = power_delay_reads
        self._pending: Dict[str, Tuple[str, int]] = {}
        self.tokens: Dict[str, str] = {}
        self.requests: List[Dict[str, Any]] = []
        self.failures: Dict[Tuple[str, str], Tuple[int, Any]] = {}
        self.lock = threading.Lock()
        self.server: Optional[ThreadingHTTPServer] = None
        self.thread: Optional[threading.Thread] = None

    # ---- life cycle ----
    def start(self) -> 'FakeBmc':
        handler = type('Handler', (_Handler,), {'bmc': self})
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
        self.server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self._address = '127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.05},
                                       name='fakebmc', daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> 'FakeBmc':
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """127.0.0.1:PORT (still known after stop, for messages)."""
        return self._address

    @property
    def url(self) -> str:
        return ('https://' if self.tls else 'http://') + self.address

    def fail(self, method: str, path: str, status: int, body: Any = None) -> None:
        """Answer ``method path`` with ``status`` (and a Redfish error body) from now on."""
        if body is None:
            body = error_body('Base.1.0.GeneralError', 'injected failure %d' % status)
        self.failures[(method, path)] = (status, body)

    # ---- documents ----
    def document(self, path: str) -> Optional[Dict[str, Any]]:
        path = path.rstrip('/') or '/'
        if path == ROOT:
            root = {
                '@odata.type': '#ServiceRoot.v1_5_0.ServiceRoot', '@odata.id': ROOT + '/', 'Id': 'RedfishService',
                'Name': 'Redfish Service', 'RedfishVersion': '1.5.0', 'UUID': '0a9d9d4c-0000-4000-8000-00000000beef',
                'Systems': {'@odata.id': ROOT + '/Systems'}, 'Managers': {'@odata.id': ROOT + '/Managers'},
            }
            if self.sessions_enabled:
                root['SessionService'] = {'@odata.id': ROOT + '/SessionService'}
                root['Links'] = {'Sessions': {'@odata.id': ROOT + '/SessionService/Sessions'}}
            return root
        if path == ROOT + '/SessionService' and self.sessions_enabled:
            return {'@odata.id': path, 'Id': 'SessionService', 'Name': 'Session Service', 'ServiceEnabled': True,
                    'SessionTimeout': 600, 'Sessions': {'@odata.id': path + '/Sessions'}}
        if path == ROOT + '/Systems':
            return _collection(path, 'ComputerSystemCollection', [path + '/' + u for u in self.systems])
        if path == ROOT + '/Managers':
            return _collection(path, 'ManagerCollection', [path + '/BMC'])
        if path == ROOT + '/Managers/BMC':
            return {'@odata.type': '#Manager.v1_3_1.Manager', '@odata.id': path, 'Id': 'BMC', 'Name': 'Manager',
                    'ManagerType': 'BMC', 'VirtualMedia': {'@odata.id': path + '/VirtualMedia'},
                    'Links': {'ManagerForServers': [{'@odata.id': ROOT + '/Systems/' + u} for u in self.systems]}}
        parts = path[len(ROOT) + 1:].split('/')
        if parts[0] == 'Managers' and len(parts) >= 3 and parts[2] == 'VirtualMedia':
            uuid = next(iter(self.systems))
            if len(parts) == 3:
                return _collection(path, 'VirtualMediaCollection', [path + '/' + slot for slot in self.slots])
            if len(parts) == 4 and parts[3] in self.slots:
                return self._media_doc(path, uuid, parts[3])
        if parts[0] == 'Systems' and len(parts) >= 2 and parts[1] in self.systems:
            return self._system_doc(parts[1], parts[2:])
        return None

    def _media_doc(self, path: str, uuid: str, slot: str) -> Dict[str, Any]:
        state = self.media[uuid][slot]
        return {
            '@odata.type': '#VirtualMedia.v1_4_0.VirtualMedia', '@odata.id': path, 'Id': slot,
            'Name': 'Virtual CD' if slot == 'Cd' else 'Virtual Removable Media',
            'MediaTypes': ['CD', 'DVD'] if slot == 'Cd' else ['Floppy', 'USBStick'],
            'Image': state['image'] or '', 'ImageName': os.path.basename(state['image'] or ''),
            'ConnectedVia': 'URI' if state['inserted'] else 'NotConnected', 'Inserted': state['inserted'],
            'WriteProtected': True,
            'Actions': {
                '#VirtualMedia.InsertMedia': {'target': path + '/Actions/VirtualMedia.InsertMedia'},
                '#VirtualMedia.EjectMedia': {'target': path + '/Actions/VirtualMedia.EjectMedia'},
            },
        }

    def _system_doc(self, uuid: str, rest: List[str]) -> Optional[Dict[str, Any]]:
        system = self.systems[uuid]
        base = ROOT + '/Systems/' + uuid
        if not rest:
            self._settle_power(uuid)
            enabled = system['boot_enabled']
            if enabled == 'Once' and self.boot_once_reads_continuous:
                enabled = 'Continuous'
            return {
                '@odata.type': '#ComputerSystem.v1_10_0.ComputerSystem', '@odata.id': base, 'Id': uuid,
                'Name': system['name'], 'UUID': uuid, 'Manufacturer': 'Sushy Emulator', 'PowerState': system['power'],
                'Status': {'State': 'Enabled', 'Health': 'OK'},
                'Boot': {'BootSourceOverrideEnabled': enabled, 'BootSourceOverrideTarget': system['boot_target'],
                         'BootSourceOverrideTarget@Redfish.AllowableValues': ['Pxe', 'Cd', 'Hdd'],
                         'BootSourceOverrideMode': system['boot_mode']},
                'ProcessorSummary': {'Count': system['cpus'], 'Status': {'State': 'Enabled'}},
                'MemorySummary': {'TotalSystemMemoryGiB': system['memory_gib'], 'Status': {'State': 'Enabled'}},
                'BiosVersion': system['bios_version'],
                'Processors': {'@odata.id': base + '/Processors'},
                'EthernetInterfaces': {'@odata.id': base + '/EthernetInterfaces'},
                'SimpleStorage': {'@odata.id': base + '/SimpleStorage'},
                'Storage': {'@odata.id': base + '/Storage'},
                'Links': {'ManagedBy': [{'@odata.id': ROOT + '/Managers/BMC'}]},
                'Actions': {'#ComputerSystem.Reset': {
                    'target': base + '/Actions/ComputerSystem.Reset',
                    'ResetType@Redfish.AllowableValues': list(system['reset_types'])}},
            }
        path = base + '/' + '/'.join(rest)
        if rest == ['Processors']:
            return _collection(path, 'ProcessorCollection', [path + '/CPU%d' % i for i in range(system['cpus'])])
        if len(rest) == 2 and rest[0] == 'Processors':
            return {'@odata.id': path, 'Id': rest[1], 'Socket': rest[1], 'ProcessorType': 'CPU',
                    'Model': system['cpu_model'], 'TotalCores': 1, 'TotalThreads': 1}
        if rest == ['EthernetInterfaces']:
            return _collection(path, 'EthernetInterfaceCollection', [path + '/' + m for m in system['macs']])
        if len(rest) == 2 and rest[0] == 'EthernetInterfaces' and rest[1] in system['macs']:
            return {'@odata.id': path, 'Id': rest[1], 'MACAddress': rest[1].upper(), 'LinkStatus': 'LinkUp',
                    'SpeedMbps': 1000, 'Status': {'State': 'Enabled', 'Health': 'OK'}}
        if rest == ['SimpleStorage']:
            return _collection(path, 'SimpleStorageCollection', [path + '/virtio'])
        if rest == ['SimpleStorage', 'virtio']:
            return {'@odata.id': path, 'Id': 'virtio', 'Name': 'virtio Controller',
                    'Devices': [dict(d, Status={'State': 'Enabled'}) for d in system['simple']]}
        if rest == ['Storage']:
            return _collection(path, 'StorageCollection', [path + '/1'])
        if rest == ['Storage', '1']:
            return {'@odata.id': path, 'Id': '1', 'Name': 'Local Storage Controller',
                    'Drives': [{'@odata.id': path + '/Drives/' + d['Id']} for d in system['drives']]}
        if len(rest) == 4 and rest[:3] == ['Storage', '1', 'Drives']:
            for drive in system['drives']:
                if drive['Id'] == rest[3]:
                    return dict(drive, **{'@odata.id': path})
        return None

    def _settle_power(self, uuid: str) -> None:
        pending = self._pending.get(uuid)
        if not pending:
            return
        state, reads = pending
        if reads == 0:
            self.systems[uuid]['power'] = state
            del self._pending[uuid]
        elif reads > 0:
            self._pending[uuid] = (state, reads - 1)

    def set_power(self, uuid: str, state: str) -> None:
        if self.power_delay_reads == 0:
            self.systems[uuid]['power'] = state
        else:
            self._pending[uuid] = (state, self.power_delay_reads)

    # ---- actions ----
    def act(self, method: str, path: str, body: Any) -> Tuple[int, Any, Dict[str, str]]:
        if method == 'POST' and path == ROOT + '/SessionService/Sessions' and self.sessions_enabled:
            name, password = body.get('UserName'), body.get('Password')
            if self.users.get(name) != password or name is None:
                return 401, error_body('Base.1.0.InsufficientPrivilege', 'Invalid username or password'), {}
            token = secrets.token_hex(16)
            session = ROOT + '/SessionService/Sessions/' + token[:8]
            self.tokens[token] = session
            return 201, {'@odata.id': session, 'Id': token[:8], 'UserName': name}, {
                'X-Auth-Token': token, 'Location': session}
        if method == 'DELETE' and path.startswith(ROOT + '/SessionService/Sessions/'):
            for token, session in list(self.tokens.items()):
                if session == path:
                    del self.tokens[token]
                    return 204, None, {}
            return 404, error_body('Base.1.0.ResourceMissingAtURI', 'no session'), {}
        parts = path[len(ROOT) + 1:].split('/')
        if parts[0] == 'Systems' and len(parts) >= 2 and parts[1] in self.systems:
            uuid, system = parts[1], self.systems[parts[1]]
            if method == 'PATCH' and len(parts) == 2:
                boot = (body or {}).get('Boot') or {}
                if 'BootSourceOverrideTarget' not in boot and 'BootSourceOverrideMode' not in boot:
                    # what sushy-emulator answers to BootSourceOverrideEnabled alone
                    return 400, 'Missing the BootSourceOverrideTarget and/or BootSourceOverrideMode', {}
                if boot.get('BootSourceOverrideTarget'):
                    if boot['BootSourceOverrideTarget'] not in ('Pxe', 'Cd', 'Hdd'):
                        return 400, error_body('Base.1.0.PropertyValueNotInList', 'bad target'), {}
                    system['boot_target'] = boot['BootSourceOverrideTarget']
                if boot.get('BootSourceOverrideEnabled'):
                    system['boot_enabled'] = boot['BootSourceOverrideEnabled']
                if boot.get('BootSourceOverrideMode'):
                    system['boot_mode'] = boot['BootSourceOverrideMode']
                return 204, None, {}
            if method == 'POST' and parts[2:] == ['Actions', 'ComputerSystem.Reset']:
                kind = (body or {}).get('ResetType')
                if kind in ('On', 'ForceOn'):
                    self.set_power(uuid, 'On')
                elif kind in ('ForceOff', 'GracefulShutdown'):
                    self.set_power(uuid, 'Off')
                elif kind in ('ForceRestart', 'GracefulRestart'):
                    if system['power'] == 'On':
                        self.set_power(uuid, 'On')
                else:
                    return 400, error_body('Base.1.0.ActionParameterNotSupported', 'bad reset %s' % kind), {}
                if self.on_reset is not None:
                    self.on_reset(uuid, kind)
                return 204, None, {}
        if (method == 'POST' and parts[0] == 'Managers' and len(parts) == 6
                and parts[2] == 'VirtualMedia' and parts[3] in self.slots):
            slot = self.media[next(iter(self.systems))][parts[3]]
            if parts[5] == 'VirtualMedia.InsertMedia':
                if slot['inserted']:
                    return 400, error_body('Base.1.0.ActionNotSupported', 'media already inserted'), {}
                slot.update(image=(body or {}).get('Image'), inserted=True)
                return 204, None, {}
            if parts[5] == 'VirtualMedia.EjectMedia':
                slot.update(image=None, inserted=False)
                return 204, None, {}
        return 405, error_body('Base.1.0.GeneralError', 'not supported: %s %s' % (method, path)), {}

    def authorized(self, headers: Any) -> bool:
        token = headers.get('X-Auth-Token')
        if token:
            return token in self.tokens
        auth = headers.get('Authorization') or ''
        if auth.startswith('Basic '):
            try:
                name, _sep, password = base64.b64decode(auth[6:]).decode().partition(':')
            except ValueError:
                return False
            return self.users.get(name) == password
        return False


def _collection(path: str, kind: str, members: List[str]) -> Dict[str, Any]:
    return {'@odata.type': '#%s.%s' % (kind, kind), '@odata.id': path, 'Name': kind,
            'Members@odata.count': len(members), 'Members': [{'@odata.id': m} for m in members]}


def error_body(code: str, message: str) -> Dict[str, Any]:
    return {'error': {'code': code, 'message': message,
                      '@Message.ExtendedInfo': [{'MessageId': code, 'Message': message, 'Severity': 'Warning'}]}}


class _Handler(BaseHTTPRequestHandler):
    bmc: FakeBmc
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _handle(self, method: str) -> None:
        bmc = self.bmc
        length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(length) if length else b''
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split('?')[0]
        with bmc.lock:
            bmc.requests.append({'method': method, 'path': path, 'headers': dict(self.headers), 'body': raw})
            failure = bmc.failures.get((method, path.rstrip('/'))) or bmc.failures.get((method, path))
            public = (method == 'GET' and path.rstrip('/') == ROOT) or (
                method == 'GET' and path.rstrip('/') == ROOT + '/SessionService' and bmc.sessions_enabled) or (
                method == 'POST' and path == ROOT + '/SessionService/Sessions')
            if failure:
                status, doc, headers = failure[0], failure[1], {}
            elif not public and not bmc.authorized(self.headers):
                status, doc, headers = 401, error_body('Base.1.0.NoValidSession', 'authentication required'), {
                    'WWW-Authenticate': 'Basic realm="fakebmc"'}
            elif method == 'GET' and bmc.replay is not None:
                recorded = bmc.replay.get(path) or bmc.replay.get(path.rstrip('/')) or bmc.replay.get(path + '/')
                if recorded is None:
                    status, doc, headers = 404, error_body('Base.1.0.ResourceMissingAtURI', 'not recorded'), {}
                else:
                    status, doc, headers = recorded['status'], recorded['body'], {}
            elif method == 'GET':
                doc, status, headers = bmc.document(path), 200, {}
                if doc is None:
                    status, doc = 404, error_body('Base.1.0.ResourceMissingAtURI', 'no resource at %s' % path)
            else:
                status, doc, headers = bmc.act(method, path, body)
            doc = copy.deepcopy(doc)
        data = b''
        if doc is not None:
            data = (json.dumps(doc) if not isinstance(doc, str) else doc).encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header('Content-Type', 'application/json' if not isinstance(doc, str) else 'text/html')
        self.send_header('Content-Length', str(len(data)))
        self.send_header('Connection', 'close')  # one request per connection, as sushy asks
        self.close_connection = True
        self.end_headers()
        if data:
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._handle('GET')

    def do_POST(self) -> None:  # noqa: N802
        self._handle('POST')

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle('PATCH')

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle('DELETE')


def make_tls(directory: str, name: str = 'fvrf-fakebmc') -> Dict[str, str]:
    """A CA and a server certificate for 127.0.0.1 signed by it, plus an unrelated CA:
    {ca, cert, key, other_ca} (PEM file paths)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def ca(common: str) -> Tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return key, cert

    ca_key, ca_cert = ca(name + ' test CA')
    other_cert = ca(name + ' other CA')[1]
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, '127.0.0.1')]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address('127.0.0.1')),
                                                        x509.DNSName('localhost')]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {k: os.path.join(directory, '%s-%s.pem' % (name, k)) for k in ('ca', 'cert', 'key', 'other_ca')}
    with open(paths['ca'], 'wb') as handle:
        handle.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(paths['other_ca'], 'wb') as handle:
        handle.write(other_cert.public_bytes(serialization.Encoding.PEM))
    with open(paths['cert'], 'wb') as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.open(paths['key'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'wb') as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return paths


# ---- the server behind the BMC, as its SSH shows it ------------------------------------------------
class FakeMachine:
    """A bare-metal box behind a FakeBmc, booted by its resets: the CD (the ISO at a URL of
    ``isos``, {url: version}) when the boot override says Cd and a CD is in, else its disk when that
    holds firmvisor, else nothing (a blank disk). Time is ``tick()``: every look at the machine (an
    SSH probe, a journal poll) is one. A live boot answers SSH after ``live_ticks``; its installer
    writes the disk in ``install_ticks`` (the journal lines fvinstall.py writes) and reboots the
    machine; a disk boot answers after ``disk_ticks``, with our key only once it imported a seed.
    The floppy's seed.json is read from the file ``files[url]`` (mtools), as the BMC would download it.

    ``installer``: 'ok', 'fail' (FAILED after the install started) or 'hang' (never ends);
    ``live_answers`` / ``disk_answers``: False makes a boot that never answers SSH."""

    def __init__(self, bmc: FakeBmc, isos: Dict[str, str], files: Dict[str, str], uuid: str = SYSTEM_UUID,
                 disk: Optional[Dict[str, Any]] = None) -> None:
        self.bmc, self.uuid, self.isos, self.files = bmc, uuid, isos, files
        self.disk = disk            # {'version', 'seed'} once firmvisor is on it
        self.boot: Optional[str] = None   # None (off), 'blank', 'live', 'disk'
        self.ticks = 0
        self.journal: List[str] = []
        self.boots: List[str] = []
        self.imported = bool(disk and disk.get('imported'))
        self.live_ticks, self.install_ticks, self.disk_ticks = 2, 3, 2
        self.installer = 'ok'
        self.live_answers = self.disk_answers = True
        self.live_version: Optional[str] = None
        self.step: Optional[str] = None   # the live installer: None, 'installing', 'rebooting', 'done'
        self.started = 0
        self.copies_seed = True           # the installer puts the seed on the disk (else only the floppy has it)
        self.seed_misses = 0              # disk boots that miss the floppy (image 0.1.0's race with its driver)
        self.missed = False               # this boot missed it
        self.seed: Dict[str, Any] = {}
        bmc.on_reset = self.reset

    # the BMC's side
    def reset(self, uuid: str, kind: str) -> None:
        if uuid != self.uuid:
            return
        if kind in ('ForceOff', 'GracefulShutdown'):
            self.boot = None
            return
        self.power_on()

    def media(self, slot: str) -> Optional[str]:
        state = self.bmc.media[self.uuid][slot]
        return state['image'] if state['inserted'] else None

    def power_on(self) -> None:
        system = self.bmc.systems[self.uuid]
        cd = self.media('Cd')
        self.ticks, self.journal, self.step, self.started = 0, [], None, 0
        if system['boot_target'] == 'Cd' and system['boot_enabled'] in ('Once', 'Continuous') and cd:
            if system['boot_enabled'] == 'Once' and not self.bmc.boot_once_reads_continuous:
                system['boot_enabled'] = 'Disabled'   # a real BMC: once means once
            self.boot, self.live_version = 'live', self.isos.get(cd)
            self.seed = self.read_seed()
        elif self.disk:
            self.boot = 'disk'
            self.missed = bool(self.seed_misses) and not self.imported
            if self.missed:
                self.seed_misses -= 1
        else:
            self.boot = 'blank'
        self.boots.append(self.boot)

    def read_seed(self) -> Dict[str, Any]:
        url = self.media('Floppy')
        if not url or url not in self.files:
            return {}
        import subprocess
        data = subprocess.run(['mtype', '-i', self.files[url], '::seed.json'], check=True, capture_output=True).stdout
        return json.loads(data)

    # time
    def tick(self) -> None:
        if self.boot is None:
            return
        self.ticks += 1
        if self.boot == 'live':
            self._installer_step()

    def _installer_step(self) -> None:
        target = self.seed.get('install_to')
        if self.ticks < self.live_ticks or not self.live_answers or self.step == 'done':
            return
        if self.step is None:
            self.step, self.started = 'installing', self.ticks
            if not target:
                self.step = 'done'
                self.journal.append('firmvisor: install: no install_to in the seed: nothing to install, '
                                    'the host stays live')
            elif self.disk and not self.seed.get('install_force'):
                self.step = 'done'
                self.journal.append('firmvisor: install: %s holds a firmvisor install (partitions fvboot, fvslotA, '
                                    'fvslotB, fvstate): not installing, so nothing on it is lost; the host stays live.'
                                    % target)
            else:
                self.journal.append('firmvisor: install: installing firmvisor %s from /run/firmvisor/medium onto %s '
                                    '(vda, 16384 MiB)' % (self.live_version, target))
        elif self.step == 'installing' and self.ticks >= self.started + self.install_ticks:
            if self.installer == 'fail':
                self.step = 'done'
                self.journal.append('firmvisor: install: FAILED: write error on %s; the host stays live' % target)
            elif self.installer == 'ok':
                self.step = 'rebooting'
                self.disk = {'version': self.live_version, 'seed': dict(self.seed) if self.copies_seed else None}
                self.imported = False
                self.journal.append('firmvisor: install: installed firmvisor %s on %s and verified it; its first '
                                    'boot imports the seed from its state partition' % (self.live_version, target))
                self.journal.append('firmvisor: install: rebooting into the installed system')
        elif self.step == 'rebooting':
            self.power_on()   # the installer's own reboot (the BMC's boot settings decide what comes up)

    # the SSH side
    @property
    def answers(self) -> bool:
        if self.boot == 'live':
            return self.live_answers and self.ticks >= self.live_ticks
        if self.boot == 'disk':
            if not self.disk_answers or self.ticks < self.disk_ticks:
                return False
            if self.missed:
                return False
            if not self.imported and self.media('Floppy'):
                self.imported = True   # the first disk boot imports the seed (the floppy, or its state copy)
            return self.imported or bool(self.disk and self.disk.get('seed'))
        return False

    @property
    def installing(self) -> bool:
        return self.boot == 'live' and self.step == 'installing'


class FakeHost:
    """What RedfishServer asks over SSH (SshHost's interface), answered by a FakeMachine."""

    where = '127.0.0.1:2222'

    def __init__(self, machine: FakeMachine) -> None:
        self.machine = machine
        self.probes = 0

    def state(self) -> Any:
        from ansible_collections.firmvisor.hypervisor.plugins.module_utils.server.redfish import HostState
        self.probes += 1
        machine = self.machine
        machine.tick()
        if not machine.answers:
            if machine.boot == 'disk' and machine.missed and machine.ticks >= machine.disk_ticks:
                return HostState(seen='SSH on %s greets but does not let us in (Permission denied (publickey))'
                                 % self.where, greets=True)
            return HostState(seen='no SSH greeting on %s (%s)' % (self.where, machine.boot or 'off'))
        if machine.boot == 'live':
            return HostState(True, machine.live_version, True, tuple(machine.journal), 'answered')
        return HostState(True, machine.disk['version'], False, (), 'answered')

    def follow(self) -> 'FakeFollower':
        return FakeFollower(self.machine)


class FakeFollower:
    """journalctl -f over SSH: the lines of the live boot it is connected to."""

    def __init__(self, machine: FakeMachine) -> None:
        self.machine = machine
        self.lines: List[str] = []
        self._boot = -1
        self._sent = 0
        self.closed = False

    @property
    def connected(self) -> bool:
        return self.machine.boot == 'live' and self.machine.answers

    def poll(self) -> List[str]:
        self.machine.tick()
        if not self.connected:
            return []
        if self._boot != len(self.machine.boots):
            self._boot, self._sent = len(self.machine.boots), 0
        new = self.machine.journal[self._sent:]
        self._sent = len(self.machine.journal)
        self.lines += new
        return new

    def close(self) -> None:
        self.closed = True
