# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A BMC client on sushy (the Redfish library Ironic and Metal3 use), for provisioning bare metal.

Knows nothing of AnsibleModule. Every failure is an FvError whose message names the step, the BMC
(its URL) and the system, and the cause in words (wrong credentials, unreachable, a certificate that
does not verify, a missing system or media slot, a refused action). The password is never part of a
message, an exception or a log line this module writes; sushy masks it in its own debug logs.

    with Bmc(BmcAccess('https://10.0.0.5', 'admin', secret, ca_path='/etc/pki/bmc.pem')) as bmc:
        system = bmc.system()                 # the only one, or bmc.system('<UUID>')
        system.insert_media('cd', 'http://server/firmvisor.iso')
        system.set_boot_override('Cd', 'Once')
        system.power('On')
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Set, Tuple
from urllib.parse import urlsplit

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError, FvTimeout
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.redfish.inventory import (
    boot as boot_view, slot_view as _slot_view, system_inventory)

try:
    import requests
    import sushy
    from sushy import auth as sushy_auth
    from sushy import exceptions as sushy_exc
    SUSHY_IMPORT_ERROR: Optional[str] = None
except ImportError as _exc:  # pragma: no cover - the set-up installs sushy
    sushy = None
    sushy_exc = None
    sushy_auth = None
    requests = None
    SUSHY_IMPORT_ERROR = str(_exc)

POWER_ACTIONS = ('On', 'ForceOff', 'ForceRestart', 'GracefulShutdown')
# What each action leaves the system in (the state a wait looks for).
POWER_RESULT = {'On': 'On', 'ForceOff': 'Off', 'ForceRestart': 'On', 'GracefulShutdown': 'Off'}
# Media kinds -> the Redfish MediaTypes a slot must accept for them.
MEDIA_TYPES = {'cd': ('CD', 'DVD'), 'floppy': ('Floppy', 'USBStick')}
MASK = '********'


# ---- waiting ----------------------------------------------------------------------------------------
def wait_until(check: Callable[[], Tuple[bool, Any]], timeout: float, what: str, interval: float = 1.0,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> Any:
    """Poll ``check`` (-> (done, what it saw)) until done; FvTimeout names ``what`` and the last sight."""
    deadline = clock() + timeout
    while True:
        done, seen = check()
        if done:
            return seen
        remaining = deadline - clock()
        if remaining <= 0:
            raise FvTimeout('timed out after %ss waiting for %s (last seen: %s)' % (_secs(timeout), what, seen),
                            waited_for=what, last_seen=seen)
        sleep(min(interval, remaining))


def power_view(system: Mapping[str, Any]) -> str:
    """'On', 'Off', 'PoweringOn', 'PoweringOff' or 'Paused'; 'Unknown' when the BMC does not say."""
    return str(system.get('PowerState') or 'Unknown')


def _secs(value: float) -> str:
    return ('%d' % value) if float(value).is_integer() else ('%.1f' % value)


# ---- access -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BmcAccess:
    """How to reach a BMC. ``address``: host[:port] or a URL (https unless it says http://)."""
    address: str
    username: str
    password: str = field(repr=False)
    validate_certs: bool = True
    ca_path: Optional[str] = None
    timeout: float = 60.0          # one request's read timeout (InsertMedia fetches the image inside it)
    connect_timeout: float = 10.0  # an unreachable BMC fails within this
    retries: int = 1               # attempts for a request that fails to connect or gets a 5xx on GET

    @classmethod
    def from_options(cls, bmc: Mapping[str, Any]) -> 'BmcAccess':
        """From the modules' ``bmc`` option (server, server_info)."""
        return cls(address=bmc['address'], username=bmc.get('username') or '', password=bmc.get('password') or '',
                   validate_certs=bmc.get('validate_certs', True), ca_path=bmc.get('ca_path'),
                   timeout=bmc.get('timeout') or 60)

    @property
    def url(self) -> str:
        """The BMC's base URL, as messages name it."""
        address = self.address.strip().rstrip('/')
        if '://' not in address:
            address = 'https://' + address
        parts = urlsplit(address)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise FvError('BMC address %r: expected host[:port] or an http(s):// URL' % (self.address,))
        if parts.username or parts.password:
            raise FvError('BMC address %s: give the user and password as username/password, not in the URL'
                          % (parts.hostname,))
        return '%s://%s' % (parts.scheme, parts.netloc)

    @property
    def verify(self) -> Any:
        """requests' verify: False, the CA file or directory, or True (the system's CAs)."""
        if not self.validate_certs:
            return False
        return self.ca_path or True


class _NoPublicDownloads:
    """sushy's connector for message registries published on the Internet: never used here."""

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError('firmvisor does not download Redfish registries from the Internet')

    request = get


class SecretFilter(logging.Filter):
    """Masks the password (and its Basic auth form) in every record of sushy, requests and urllib3
    while a Bmc is open: a BMC may echo a request, password and all, in an error sushy logs."""

    PREFIXES = ('sushy', 'requests', 'urllib3')

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self.secrets = [password]
        basic = base64.b64encode(('%s:%s' % (username, password)).encode('utf-8')).decode('ascii')
        self.secrets.append(basic)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is logging's business
            return True
        masked = text
        for secret in self.secrets:
            masked = masked.replace(secret, MASK)
        if masked != text:
            record.msg, record.args = masked, None
        return True

    def loggers(self) -> List[logging.Logger]:
        names = [n for n in list(logging.root.manager.loggerDict) if n.split('.')[0] in self.PREFIXES]
        return [logging.getLogger(n) for n in sorted(set(names) | set(self.PREFIXES))]

    def install(self) -> None:
        for logger in self.loggers():
            logger.addFilter(self)

    def remove(self) -> None:
        for logger in self.loggers():
            logger.removeFilter(self)


# ---- error mapping ----------------------------------------------------------------------------------
def describe(exc: BaseException, access: BmcAccess) -> str:
    """The cause of a sushy/requests failure in words a user acts on."""
    if sushy_exc is not None and isinstance(exc, sushy_exc.ConnectionError):
        inner = exc.__cause__ or exc.__context__
        return _describe_connection(inner if inner is not None else exc, access)
    if requests is not None and isinstance(exc, requests.exceptions.RequestException):
        return _describe_connection(exc, access)
    if sushy_exc is not None and isinstance(exc, sushy_exc.AccessError):
        if exc.status_code == 401:
            return ('the BMC refused the credentials of user %r (HTTP 401: wrong username or password)'
                    % access.username)
        return 'user %r is not allowed to do this (HTTP %s%s)' % (access.username, exc.status_code, _detail(exc))
    if sushy_exc is not None and isinstance(exc, sushy_exc.ResourceNotFoundError):
        return 'the BMC has no such resource (HTTP 404%s)' % _detail(exc)
    if sushy_exc is not None and isinstance(exc, sushy_exc.HTTPError):
        return 'the BMC refused it (HTTP %s%s)' % (exc.status_code, _detail(exc))
    if sushy_exc is not None and isinstance(exc, sushy_exc.InvalidParameterValueError):
        return 'the BMC does not allow it: %s' % exc
    if sushy_exc is not None and isinstance(exc, (sushy_exc.MissingActionError,
                                                  sushy_exc.MissingAttributeError)):
        return 'the BMC does not offer it: %s' % exc
    return '%s: %s' % (type(exc).__name__, exc)


def _detail(exc: Any) -> str:
    detail = getattr(exc, 'detail', None)
    code = getattr(exc, 'code', None)
    if detail:
        return ': %s' % detail
    if code and code != 'Base.1.0.GeneralError':
        return ': %s' % code
    return ''


def _describe_connection(exc: BaseException, access: BmcAccess) -> str:
    text = str(exc)
    if requests is not None and isinstance(exc, requests.exceptions.SSLError):
        reason = 'certificate verify failed'
        for marker in ('certificate verify failed', 'CERTIFICATE_VERIFY_FAILED', "doesn't match",
                       'hostname mismatch', 'wrong version number', 'unknown protocol'):
            index = text.find(marker)
            if index >= 0:
                reason = text[index:].split(')', 1)[0].split("'", 1)[0].strip()
                break
        if 'verify' in reason.lower() or 'match' in reason.lower():
            hint = ('; trust its CA with ca_path' if not access.ca_path
                    else '; it is not signed by the CA in %s' % access.ca_path)
            return "the BMC's TLS certificate does not verify (%s)%s, or set validate_certs: false" % (reason, hint)
        return 'TLS handshake with the BMC failed (%s)' % reason
    if requests is not None and isinstance(exc, requests.exceptions.ConnectTimeout):
        return 'the BMC is unreachable: no connection within %ss (connect timeout)' % _secs(access.connect_timeout)
    if requests is not None and isinstance(exc, requests.exceptions.ReadTimeout):
        return 'the BMC accepted the connection but did not answer within %ss' % _secs(access.timeout)
    if 'Connection refused' in text or 'ECONNREFUSED' in text:
        return 'the BMC is unreachable: connection refused (nothing listens on %s)' % access.url
    if 'Name or service not known' in text or 'nodename nor servname' in text or 'NameResolutionError' in text:
        return 'the BMC is unreachable: its name does not resolve'
    if 'No route to host' in text or 'Network is unreachable' in text:
        return 'the BMC is unreachable: no route to it'
    if 'RemoteDisconnected' in text or 'Connection aborted' in text or 'reset by peer' in text:
        return 'the BMC closed the connection without an answer (is it speaking %s?)' % urlsplit(access.url).scheme
    return 'the BMC is unreachable: %s' % text


# ---- the client ------------------------------------------------------------------------------------
class Bmc:
    """One BMC session: connect, find systems. Use as a context manager (logs out at the end)."""

    def __init__(self, access: BmcAccess, sushy_factory: Optional[Callable[..., Any]] = None) -> None:
        self.access = access
        self._factory = sushy_factory
        self._root: Any = None
        self._filter: Optional[SecretFilter] = None
        # The systems read while proving the credentials: the lookup that follows takes them instead
        # of reading them again (each read is a round trip to the BMC, and a slow one on many BMCs).
        self._members: Optional[List[Any]] = None

    # messages
    def _scrub(self, text: str) -> str:
        if self.access.password:
            text = text.replace(self.access.password, MASK)
        return text

    def error(self, step: str, cause: str, system: Optional[str] = None, cls: type = FvError,
              **details: Any) -> FvError:
        where = 'BMC %s' % self.access.url + (', system %s' % system if system else '')
        message = self._scrub('Redfish %s failed on %s: %s' % (step, where, cause))
        details = {k: (self._scrub(v) if isinstance(v, str) else v) for k, v in details.items()}
        return cls(message, step=step, bmc=self.access.url, system=system, **details)

    @contextlib.contextmanager
    def step(self, step: str, system: Optional[str] = None) -> Iterator[None]:
        """Map anything sushy or requests raises inside to an FvError naming step, BMC, system, cause."""
        try:
            yield
        except FvTimeout as exc:
            raise self.error(step, str(exc), system, cls=FvTimeout, **exc.details) from None
        except FvError as exc:
            if str(exc).startswith('Redfish '):
                raise
            raise self.error(step, str(exc), system, **exc.details) from None
        except Exception as exc:  # sushy, requests, urllib3, ssl: all become one clear error
            raise self.error(step, describe(exc, self.access), system) from None

    # connection
    def connect(self) -> 'Bmc':
        """Open the service root, authenticate (a session, else Basic) and prove the credentials."""
        if self._root is not None:
            return self
        if sushy is None and self._factory is None:
            raise FvError('Redfish needs the Python library sushy on the host that runs this '
                          '(pip install sushy): %s' % SUSHY_IMPORT_ERROR)
        url = self.access.url
        factory = self._factory or sushy.Sushy
        if self._filter is None and self.access.password:
            self._filter = SecretFilter(self.access.username, self.access.password)
            self._filter.install()
        try:
            self._open(url, factory)
        except BaseException:
            self.close()
            raise
        return self

    def _open(self, url: str, factory: Callable[..., Any]) -> None:
        with self.step('connect'):
            auth = sushy_auth.SessionOrBasicAuth(username=self.access.username, password=self.access.password)
            self._root = factory(
                url, auth=auth, verify=self.access.verify,
                read_timeout=self.access.timeout, connect_timeout=self.access.connect_timeout,
                server_side_retries=max(1, self.access.retries), server_side_retries_delay=1,
                public_connector=_NoPublicDownloads())
        # A refused session login falls back to Basic without a request: prove the credentials now.
        with self.step('log in'):
            self._members = list(self._root.get_system_collection().get_members())

    @property
    def root(self) -> Any:
        if self._root is None:
            self.connect()
        return self._root

    @property
    def auth_method(self) -> str:
        """'session' (X-Auth-Token) or 'basic'."""
        auth = getattr(self.root, '_auth', None)
        return 'session' if auth is not None and auth.can_refresh_session() else 'basic'

    def close(self) -> None:
        """Log out (delete the session, when there is one). Never raises."""
        root, self._root = self._root, None
        try:
            self._logout(root)
        finally:
            if self._filter is not None:
                self._filter.remove()
                self._filter = None

    @staticmethod
    def _logout(root: Any) -> None:
        if root is None:
            return
        auth = getattr(root, '_auth', None)
        try:
            if auth is not None:
                auth.close()
        except Exception:  # a BMC that fails a logout must not fail the task
            pass
        finally:
            root._auth = None
            with contextlib.suppress(Exception):
                root._conn.close()

    def __enter__(self) -> 'Bmc':
        return self.connect()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # systems
    def list_systems(self) -> List[Dict[str, Optional[str]]]:
        """Every system the BMC manages: [{id, uuid, name, path}]."""
        with self.step('list systems'):
            return [self._summary(s) for s in self._systems()]

    def _systems(self) -> List[Any]:
        members, self._members = self._members, None
        return members if members is not None else list(self.root.get_system_collection().get_members())

    @staticmethod
    def _summary(system: Any) -> Dict[str, Optional[str]]:
        return {'id': system.identity, 'uuid': system.uuid, 'name': system.name, 'path': system.path}

    def system(self, ident: Optional[str] = None) -> 'BmcSystem':
        """The system with this UUID (or Id, or name); without one, the only system there is."""
        with self.step('find system', ident):
            systems = self._systems()
            if ident is None:
                if len(systems) != 1:
                    raise FvError('the BMC has %d systems, so name one by UUID (%s)' % (
                        len(systems), _listing(systems)))
                return BmcSystem(self, systems[0])
            wanted = ident.strip().lower()
            for system in systems:
                if wanted in ((system.uuid or '').lower(), (system.identity or '').lower()):
                    return BmcSystem(self, system)
            for system in systems:
                if wanted == (system.name or '').lower():
                    return BmcSystem(self, system)
            raise FvError('no system %s on this BMC (it has: %s)' % (ident, _listing(systems)))


def _listing(systems: List[Any]) -> str:
    if not systems:
        return 'none'
    return ', '.join('%s (UUID %s, name %s)' % (s.identity, s.uuid, s.name) for s in systems)


class BmcSystem:
    """One computer system behind a BMC: power, virtual media, boot override, inventory."""

    def __init__(self, bmc: Bmc, system: Any) -> None:
        self.bmc = bmc
        self.raw = system
        self.label = system.uuid or system.identity
        self._media: Optional[List[Any]] = None
        # Resources read a moment ago and not looked at since: the first look takes them as they are,
        # every later one reads them again.
        self._fresh: Set[str] = {system.path}

    def step(self, step: str) -> Any:
        return self.bmc.step(step, self.label)

    def error(self, step: str, cause: str, **details: Any) -> FvError:
        return self.bmc.error(step, cause, self.label, **details)

    def refresh(self) -> None:
        self._fresh.discard(self.raw.path)
        self.raw.refresh(force=True)

    def _current(self, resource: Any) -> Any:
        """``resource`` as the BMC has it now: read again unless it was read a moment ago."""
        if resource.path in self._fresh:
            self._fresh.discard(resource.path)
        else:
            resource.refresh(force=True)
        return resource

    @property
    def summary(self) -> Dict[str, Optional[str]]:
        return Bmc._summary(self.raw)

    # ---- power ------------------------------------------------------------------------------
    def power_state(self) -> str:
        """The power state as ``power_view`` names it."""
        with self.step('read power state'):
            return power_view(self._current(self.raw).json)

    def status(self) -> Tuple[str, Dict[str, Any]]:
        """The power state and the boot override, from one read of the system."""
        with self.step('read power state and boot override'):
            system = self._current(self.raw).json
            return power_view(system), boot_view(system)

    def power(self, action: str, wait: bool = True, timeout: float = 300.0, interval: float = 1.0) -> bool:
        """Apply a power action when it changes something; wait until the state it leads to.

        On / ForceOff / GracefulShutdown do nothing on a system already in their end state (returns
        False). ForceRestart always restarts; on a system that is off it powers on instead (some BMCs
        ignore a restart of a system that is off).
        """
        if action not in POWER_ACTIONS:
            raise FvError('power action %r: expected one of %s' % (action, ', '.join(POWER_ACTIONS)))
        state = self.power_state()
        target = POWER_RESULT[action]
        send = action
        if action == 'ForceRestart' and state == 'Off':
            send = 'On'
        elif action != 'ForceRestart' and state == target:
            return False
        with self.step('power %s' % send):
            allowed = self._allowed_resets()
            if allowed is not None and send not in allowed:
                raise FvError('the BMC does not offer the reset type %s (it offers: %s)'
                              % (send, ', '.join(sorted(allowed)) or 'none'))
            self.raw.reset_system(sushy.ResetType(send))
        if wait:
            self.wait_power_state(target, timeout, interval, because='power %s' % send)
        return True

    def _allowed_resets(self) -> Optional[List[str]]:
        action = (self.raw.json.get('Actions') or {}).get('#ComputerSystem.Reset') or {}
        values = action.get('ResetType@Redfish.AllowableValues')
        return list(values) if values is not None else None

    def wait_power_state(self, state: str, timeout: float = 300.0, interval: float = 1.0,
                         because: str = 'power') -> str:
        def check() -> Tuple[bool, str]:
            self.refresh()
            seen = str(self.raw.json.get('PowerState') or 'Unknown')
            return seen == state, 'PowerState %s' % seen
        with self.step('wait for power %s (after %s)' % (state, because)):
            return wait_until(check, timeout, 'PowerState %s' % state, interval)

    # ---- virtual media ------------------------------------------------------------------------
    def _media_collection(self) -> List[Any]:
        if self._media is None:
            if self.raw.json.get('VirtualMedia'):
                collections = [self.raw.virtual_media]
            else:
                collections = [manager.virtual_media for manager in self.raw.managers]
            self._media = [slot for collection in collections for slot in collection.get_members()]
            self._fresh.update(slot.path for slot in self._media)
        return self._media

    def media_slots(self) -> List[Dict[str, Any]]:
        """Every virtual media slot: [{id, name, media_types, inserted, image}]."""
        with self.step('list virtual media'):
            return [_slot_view(self._current(slot)) for slot in self._media_collection()]

    def _slot(self, kind: str) -> Any:
        if kind not in MEDIA_TYPES:
            raise FvError('media kind %r: expected one of %s' % (kind, ', '.join(MEDIA_TYPES)))
        slots = self._media_collection()
        for wanted in MEDIA_TYPES[kind]:
            for slot in slots:
                if wanted in (slot.json.get('MediaTypes') or []):
                    return slot
        raise FvError('no virtual media slot takes %s media (slots: %s)' % (
            '/'.join(MEDIA_TYPES[kind]),
            ', '.join('%s [%s]' % (s.identity, ', '.join(s.json.get('MediaTypes') or [])) for s in slots)
            or 'none'))

    def inserted_media(self, kind: str) -> Dict[str, Any]:
        """What the slot for ``kind`` holds: {id, name, media_types, inserted, image}."""
        with self.step('read virtual media (%s)' % kind):
            return _slot_view(self._current(self._slot(kind)))

    def insert_media(self, kind: str, url: str, write_protected: bool = True) -> bool:
        """Insert the image at ``url`` into the slot for ``kind``; False when it is there already.
        Another image in the slot is ejected first."""
        step = 'insert virtual media (%s from %s)' % (kind, url)
        with self.step(step):
            slot = self._slot(kind)
            view = _slot_view(self._current(slot))
            if view['inserted'] and view['image'] == url:
                return False
            if view['inserted'] or view['image']:
                slot.eject_media()
            slot.insert_media(url, inserted=True, write_protected=write_protected)
            slot.refresh(force=True)
            view = _slot_view(slot)
            if not (view['inserted'] and view['image'] == url):
                raise FvError('the BMC accepted the request but the slot %s reads back inserted=%s image=%s'
                              % (view['id'], view['inserted'], view['image']))
            return True

    def eject_media(self, kind: str) -> bool:
        """Eject the slot for ``kind``; False when it was empty."""
        with self.step('eject virtual media (%s)' % kind):
            slot = self._slot(kind)
            view = _slot_view(self._current(slot))
            if not view['inserted'] and not view['image']:
                return False
            slot.eject_media()
            slot.refresh(force=True)
            view = _slot_view(slot)
            if view['inserted']:
                # sushy swallows some refusals of EjectMedia (403, 404): the read-back tells
                raise FvError('the slot %s still reads inserted after EjectMedia (image %s)'
                              % (view['id'], view['image']))
            return True

    # ---- boot override ------------------------------------------------------------------------
    def boot_override(self) -> Dict[str, Any]:
        """{target, enabled, mode, allowed_targets} as the BMC reads them back."""
        with self.step('read boot override'):
            return boot_view(self._current(self.raw).json)

    def set_boot_override(self, target: str = 'Cd', enabled: str = 'Once', mode: Optional[str] = None) -> bool:
        """Boot ``target`` (Cd, Hdd, Pxe, ...) ``enabled`` (Once, Continuous) at the next boot(s).
        False when the BMC already reads back exactly that. Note: some BMCs (sushy-emulator) read
        Once back as Continuous, so this call then always sends the request again."""
        step = 'set boot override (%s, %s)' % (target, enabled)
        with self.step(step):
            self._current(self.raw)
            view = boot_view(self.raw.json)
            if view['allowed_targets'] and target not in view['allowed_targets']:
                raise FvError('the BMC does not offer the boot target %s (it offers: %s)'
                              % (target, ', '.join(view['allowed_targets'])))
            if view['target'] == target and view['enabled'] == enabled and (mode is None or view['mode'] == mode):
                return False
            self.raw.set_system_boot_options(target=sushy.BootSource(target), enabled=enabled, mode=mode)
            return True

    def clear_boot_override(self, fallback_target: str = 'Hdd') -> Optional[str]:
        """End any boot override: BootSourceOverrideEnabled Disabled. A BMC that refuses that alone
        (sushy-emulator answers 400 without a target) gets ``fallback_target`` instead (the disk).
        Returns what was done: 'disabled', 'target <fallback>' or None (nothing to clear)."""
        with self.step('clear boot override'):
            self._current(self.raw)
            view = boot_view(self.raw.json)
            if view['enabled'] in (None, 'Disabled') or view['target'] in (None, 'None'):
                return None
            try:
                self.raw.set_system_boot_options(enabled='Disabled')
                return 'disabled'
            except sushy_exc.BadRequestError:
                if view['target'] == fallback_target:
                    return None
                self.raw.set_system_boot_options(target=sushy.BootSource(fallback_target))
                return 'target %s' % fallback_target

    # ---- inventory --------------------------------------------------------------------------
    def inventory(self) -> Dict[str, Any]:
        """What server_info returns for this system (see redfish/inventory.py)."""
        with self.step('read inventory'):
            self._current(self.raw)
            return system_inventory(self.raw, self._media_collection)
