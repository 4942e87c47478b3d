# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Redfish lab on 127.0.0.1: sushy-emulator (Basic auth, self-signed TLS) over the local libvirtd,
a blank QEMU box for it to manage, and a small HTTP server for virtual media. Everything it makes is
named <prefix>-<name>-* (prefix fvrf2 unless --prefix says otherwise) and recorded in
<workdir>/state.json; ``down`` removes all of it (also from a half-made lab, also without the state file).

    harness.py up   [--name lab] [--prefix fvrf2] [--workdir /tmp/fvrf2-lab] [--disk-gib 16] [--memory-mib 2048]
    harness.py down [--name lab] [--prefix fvrf2] [--workdir /tmp/fvrf2-lab]
    harness.py show [--name lab] [--prefix fvrf2] [--workdir /tmp/fvrf2-lab]
    harness.py record FILE [--name lab]   the emulator's replies (every document reachable from
                                          /redfish/v1/), for tests/unit/fixtures/sushy-emulator.json

``up`` prints the state as JSON: bmc {url, username, password_file, ca}, system uuid, http {url,
root}, ssh_port, console log, pool. From Python: ``with Lab('lab') as lab: ...``.

The box: machine pc (i440fx, so the emulator's Floppy slot has a controller), SeaBIOS, an empty
virtio disk (a volume in the lab's pool, so the emulator's SimpleStorage lists it) with serial
FVRF<name>, an empty IDE cdrom, a NIC for the inventory (a UDP tunnel between two ports on
127.0.0.1, PCI slot 0x11) and the management NIC: QEMU user networking with restrict=on and SSH
forwarded from 127.0.0.1 (PCI slot 0x10, so the image takes it as the first NIC).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'roles', 'provision', 'files'))
from serve import stop_group  # noqa: E402  (the media server's own: the same process groups)
URI = 'qemu:///system'
USER = 'fvrf-admin'
PREFIX = 'fvrf2'   # what every object of a lab is named after: <prefix>-<name>-...
CONSOLE_DIR = '/var/log/libvirt/qemu'
POOL_ROOT = '/var/lib/libvirt/images'


def log(message: str) -> None:
    print('harness: %s' % message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 - the last failure is reported on timeout
            result, last = None, exc
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError('timed out after %ss waiting for %s (last: %s)' % (timeout, what, last))
        time.sleep(interval)


def make_tls(directory: str, name: str) -> Dict[str, str]:
    sys.path.insert(0, os.path.join(HERE, '..', 'unit'))
    try:
        from fakebmc import make_tls as _make_tls  # the same CA + 127.0.0.1 certificate the unit tests use
    finally:
        sys.path.pop(0)
    return _make_tls(directory, name)


class Lab:
    """One lab. ``up()`` is all or nothing: a failure tears down what was made."""

    def __init__(self, name: str = 'lab', workdir: Optional[str] = None, disk_gib: int = 16,
                 memory_mib: int = 2048, vcpus: int = 2, prefix: str = PREFIX) -> None:
        for what, value in (('name', name), ('prefix', prefix)):
            if not value.replace('-', '').isalnum():
                raise ValueError('lab %s %r: letters, digits and hyphens only' % (what, value))
        self.name = name
        self.prefix = '%s-%s' % (prefix, name)
        self.workdir = workdir or '/tmp/%s' % self.prefix
        self.disk_gib = disk_gib
        self.memory_mib = memory_mib
        self.vcpus = vcpus
        self.state: Dict[str, Any] = {}

    # ---- names ----
    @property
    def domain_name(self) -> str:
        return self.prefix + '-box'

    @property
    def pool_name(self) -> str:
        return self.prefix

    @property
    def pool_path(self) -> str:
        return os.path.join(POOL_ROOT, self.prefix)

    @property
    def console_log(self) -> str:
        return os.path.join(CONSOLE_DIR, self.domain_name + '-serial.log')

    @property
    def state_file(self) -> str:
        return os.path.join(self.workdir, 'state.json')

    def save(self) -> None:
        with open(self.state_file + '.tmp', 'w') as handle:
            json.dump(self.state, handle, indent=2, sort_keys=True)
        os.replace(self.state_file + '.tmp', self.state_file)

    def load(self) -> Dict[str, Any]:
        try:
            with open(self.state_file) as handle:
                self.state = json.load(handle)
        except (OSError, ValueError):
            self.state = {}
        return self.state

    # ---- up ----
    def up(self) -> Dict[str, Any]:
        if os.path.exists(self.state_file):
            raise RuntimeError('%s exists: the lab %s is up (run down first)' % (self.state_file, self.name))
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)
        self.state = {'name': self.name, 'workdir': self.workdir, 'pids': {}}
        self.save()
        try:
            self._credentials()
            self._libvirt_objects()
            self._http_server()
            self._emulator()
        except BaseException:
            log('up failed: tearing down what was made')
            self.down()
            raise
        return self.state

    def _credentials(self) -> None:
        import bcrypt
        password = secrets.token_urlsafe(18)
        password_file = os.path.join(self.workdir, 'bmc-password')
        with open(os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as handle:
            handle.write(password + '\n')
        # sushy-emulator checks bcrypt on every request: a low cost keeps it quick (a test password)
        digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        htpasswd = os.path.join(self.workdir, 'htpasswd')
        with open(os.open(htpasswd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as handle:
            handle.write('%s:%s\n' % (USER, digest))
        tls = make_tls(self.workdir, self.prefix)
        self.state.update(username=USER, password_file=password_file, htpasswd=htpasswd, tls=tls)
        self.save()

    def _libvirt_objects(self) -> None:
        import libvirt
        conn = libvirt.open(URI)
        try:
            os.makedirs(self.pool_path, exist_ok=True)
            pool = conn.storagePoolDefineXML(
                "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>"
                % (self.pool_name, self.pool_path))
            self.state['pool'] = self.pool_name
            self.save()
            pool.create()
            disk = self.prefix + '-disk.qcow2'
            pool.createXML(
                "<volume><name>%s</name><capacity unit='GiB'>%d</capacity>"
                "<target><format type='qcow2'/></target></volume>" % (disk, self.disk_gib))
            ssh_port, udp_a, udp_b = free_port(), free_port(), free_port()
            xml = self.domain_xml(os.path.join(self.pool_path, disk), ssh_port, udp_a, udp_b)
            domain = conn.defineXML(xml)
            self.state.update(domain=self.domain_name, uuid=domain.UUIDString(), ssh_port=ssh_port,
                              console_log=self.console_log, disk=os.path.join(self.pool_path, disk),
                              install_to='/dev/vda')
            self.save()
        finally:
            conn.close()

    def domain_xml(self, disk: str, ssh_port: int, udp_a: int, udp_b: int) -> str:
        # The box's CPU offers no SVM/VMX, as the qemu driver's TCG servers (a kvm_amd on QEMU's emulated
        # SVM has locked up a server's CPU in libvirt's capability probe).
        serial = ('FVRF' + self.name.upper().replace('-', ''))[:20]
        return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{self.domain_name}</name>
  <metadata><fvrf xmlns='urn:firmvisor:fvrf'>redfish lab {self.name}</fvrf></metadata>
  <memory unit='MiB'>{self.memory_mib}</memory>
  <vcpu>{self.vcpus}</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/><apic/></features>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model>
    <feature policy='disable' name='svm'/><feature policy='disable' name='vmx'/></cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
      <serial>{serial}</serial>
      <boot order='1'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <interface type='udp'>
      <mac address='52:54:00:f5:00:01'/>
      <source address='127.0.0.1' port='{udp_a}'><local address='127.0.0.1' port='{udp_b}'/></source>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x11' function='0x0'/>
    </interface>
    <serial type='pty'><log file='{self.console_log}' append='on'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=mgmt,addr=0x10'/>
  </qemu:commandline>
</domain>
"""

    def _spawn(self, key: str, argv: List[str], logfile: str, env: Optional[Dict[str, str]] = None) -> int:
        with open(logfile, 'ab') as out:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=env, close_fds=True)
        self.state['pids'][key] = process.pid
        self.save()
        return process.pid

    def _http_server(self) -> None:
        root = os.path.join(self.workdir, 'www')
        os.makedirs(root, exist_ok=True)
        port = free_port()
        logfile = os.path.join(self.workdir, 'http.log')
        pid = self._spawn('http', [sys.executable, '-m', 'http.server', '--bind', '127.0.0.1', '--directory',
                                   root, str(port)], logfile)
        url = 'http://127.0.0.1:%d' % port
        self.state['http'] = {'url': url, 'root': root, 'log': logfile}
        self.save()
        wait_for(lambda: self._alive(pid, 'http') and urllib.request.urlopen(url + '/', timeout=2).status == 200,
                 30, 'the media HTTP server on %s' % url)

    def _emulator(self) -> None:
        port = free_port()
        statedir = os.path.join(self.workdir, 'emulator-state')
        tmpdir = os.path.join(self.workdir, 'tmp')
        os.makedirs(statedir, exist_ok=True)
        os.makedirs(tmpdir, exist_ok=True)
        tls = self.state['tls']
        config = os.path.join(self.workdir, 'emulator.conf')
        settings = {
            'SUSHY_EMULATOR_LISTEN_IP': '127.0.0.1',
            'SUSHY_EMULATOR_LISTEN_PORT': port,
            'SUSHY_EMULATOR_SSL_CERT': tls['cert'],
            'SUSHY_EMULATOR_SSL_KEY': tls['key'],
            'SUSHY_EMULATOR_AUTH_FILE': self.state['htpasswd'],
            'SUSHY_EMULATOR_LIBVIRT_URI': URI,
            'SUSHY_EMULATOR_STORAGE_POOL': self.pool_name,
            'SUSHY_EMULATOR_STATE_DIR': statedir,
            # only this lab's box: never another agent's domains
            'SUSHY_EMULATOR_ALLOWED_INSTANCES': [self.state['uuid']],
            'SUSHY_EMULATOR_VMEDIA_VERIFY_SSL': False,
        }
        with open(config, 'w') as handle:
            for key, value in settings.items():
                handle.write('%s = %r\n' % (key, value))
        emulator = os.path.join(os.path.dirname(sys.executable), 'sushy-emulator')
        if not os.path.exists(emulator):
            emulator = shutil.which('sushy-emulator') or emulator
        env = dict(os.environ, TMPDIR=tmpdir, PYTHONUNBUFFERED='1')
        logfile = os.path.join(self.workdir, 'emulator.log')
        pid = self._spawn('emulator', [emulator, '--config', config], logfile, env)
        url = 'https://127.0.0.1:%d' % port
        self.state['bmc'] = {'url': url, 'address': '127.0.0.1:%d' % port, 'username': USER,
                             'password_file': self.state['password_file'], 'ca': tls['ca'], 'log': logfile}
        self.save()
        context = ssl.create_default_context(cafile=tls['ca'])

        def answers() -> bool:
            if not self._alive(pid, 'sushy-emulator'):
                raise RuntimeError('sushy-emulator exited: %s' % _tail(logfile))
            return urllib.request.urlopen(url + '/redfish/v1/', timeout=2, context=context).status == 200
        try:
            wait_for(answers, 60, 'sushy-emulator to answer on %s' % url, interval=0.3)
        except TimeoutError as exc:
            raise TimeoutError('%s; its log: %s' % (exc, _tail(logfile))) from None
        log('up: BMC %s (system %s), media %s, SSH forward 127.0.0.1:%d' % (
            url, self.state['uuid'], self.state['http']['url'], self.state['ssh_port']))

    @staticmethod
    def _alive(pid: int, marker: str) -> bool:
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                cmdline = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')
            with open('/proc/%d/stat' % pid) as handle:
                if handle.read().split(')')[-1].split()[0] == 'Z':
                    return False
        except OSError:
            return False
        return marker in cmdline

    # ---- down ----
    def down(self) -> List[str]:
        """Remove everything of this lab; return what was removed. Never stops half-way."""
        self.load()
        removed: List[str] = []
        markers = {'emulator': 'sushy-emulator', 'http': 'http.server'}
        for key, pid in sorted((self.state.get('pids') or {}).items()):
            if self._alive(pid, markers.get(key, key)):
                stop_group(pid)
                removed.append('process %s (%d)' % (key, pid))
        removed += self._remove_libvirt()
        # the console log and libvirt's own QEMU log of the box
        for path in (self.console_log, os.path.join(CONSOLE_DIR, self.domain_name + '.log')):
            if os.path.exists(path):
                os.unlink(path)
                removed.append(path)
        if os.path.isdir(self.pool_path):
            shutil.rmtree(self.pool_path)
            removed.append(self.pool_path)
        if os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir)
            removed.append(self.workdir)
        self.state = {}
        return removed

    def _remove_libvirt(self) -> List[str]:
        import libvirt
        libvirt.registerErrorHandler(lambda *_: None, None)  # "not found" is the normal case here
        removed = []
        conn = libvirt.open(URI)
        try:
            with contextlib.suppress(libvirt.libvirtError):
                domain = conn.lookupByName(self.domain_name)
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
                removed.append('domain ' + self.domain_name)
            with contextlib.suppress(libvirt.libvirtError):
                pool = conn.storagePoolLookupByName(self.pool_name)
                if not pool.isActive():
                    with contextlib.suppress(libvirt.libvirtError):
                        pool.create()
                for volume in pool.listAllVolumes() if pool.isActive() else []:
                    volume.delete()
                    removed.append('volume ' + volume.name())
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
                removed.append('pool ' + self.pool_name)
        finally:
            conn.close()
        return removed

    def __enter__(self) -> 'Lab':
        self.up()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    # ---- helpers for callers ----
    def password(self) -> str:
        with open(self.state['password_file']) as handle:
            return handle.read().strip()


def record(lab: Lab, dest: str, limit: int = 300) -> Dict[str, Any]:
    """GET every document reachable from the service root (following @odata.id, not actions) and
    write {path: {status, body}} to ``dest``; the media server's port becomes 8080."""
    import base64
    import urllib.error
    state = lab.load()
    context = ssl.create_default_context(cafile=state['bmc']['ca'])
    token = base64.b64encode(('%s:%s' % (state['username'], lab.password())).encode()).decode()
    base = state['bmc']['url']
    seen: Dict[str, Any] = {}
    queue = ['/redfish/v1/']
    while queue and len(seen) < limit:
        path = queue.pop(0)
        if path in seen or '/Actions/' in path or '$metadata' in path or 'JsonSchemas' in path:
            continue
        request = urllib.request.Request(base + path, headers={'Authorization': 'Basic ' + token})
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as reply:
                status, raw = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode('utf-8', 'replace')
        seen[path] = {'status': status, 'body': body}
        queue.extend(_links(body))
    text = json.dumps(seen, indent=1, sort_keys=True).replace(state['http']['url'], 'http://127.0.0.1:8080')
    with open(dest, 'w') as handle:
        handle.write(text + '\n')
    return seen


def _links(doc: Any) -> List[str]:
    found: List[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == '@odata.id' and isinstance(value, str) and value.startswith('/redfish/'):
                found.append(value)
            elif key != 'Actions':
                found.extend(_links(value))
    elif isinstance(doc, list):
        for value in doc:
            found.extend(_links(value))
    return found


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors='replace') as handle:
            return ' | '.join(handle.read().strip().splitlines()[-lines:])
    except OSError:
        return '(no log)'


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('action', choices=('up', 'down', 'show', 'record'))
    parser.add_argument('file', nargs='?', help='record: where to write the replies')
    parser.add_argument('--name', default='lab')
    parser.add_argument('--prefix', default=PREFIX)
    parser.add_argument('--workdir')
    parser.add_argument('--disk-gib', type=int, default=16)
    parser.add_argument('--memory-mib', type=int, default=2048)
    args = parser.parse_args(argv)
    lab = Lab(args.name, args.workdir, args.disk_gib, args.memory_mib, prefix=args.prefix)
    if args.action == 'up':
        print(json.dumps(lab.up(), indent=2, sort_keys=True))
    elif args.action == 'record':
        if not args.file:
            parser.error('record needs a FILE')
        log('recorded %d documents into %s' % (len(record(lab, args.file)), args.file))
    elif args.action == 'show':
        print(json.dumps(lab.load(), indent=2, sort_keys=True))
    else:
        for item in lab.down():
            log('removed %s' % item)
    return 0


if __name__ == '__main__':
    sys.exit(main())
