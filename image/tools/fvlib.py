# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fvlib: what the on-host tools share (standard library only; runs on the hypervisor and, for
assemble.py, on the build machine). One set of rules for:

* where things are (``Paths``: tests point it at a temporary tree),
* atomic writes (write beside, fsync, rename, fsync the directory),
* the GRUB environment block (exactly 1024 bytes, GRUB's own header),
* the slot GRUB boots and the tries it takes (``grub_decision``: grub.cfg's decision, in Python),
* the kernel command line (``fv.slot=``, ``fv.live=1``),
* block devices, the boot disk (whose identity GRUB passes as ``fv.esp=``), partitions by GPT name on
  it, and volume labels (ISO 9660 and FAT),
* the seed (``seed.json`` on a volume labelled FVSEED, on removable or virtual media or the boot
  disk): parsing, finding, reading,
* progress lines on the console.

fv-state (fvstate.py), fvslot (fvslot.py), fv-install (fvinstall.py) and assemble.py import it;
docs/image.md is the contract they implement.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import struct
import subprocess
import tempfile
import time

# The hints are for readers and checkers only: importing typing and dataclasses (inspect, ast) cost each
# start of a host tool a few tenths of a second of the boot's CPU under emulation.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar
    T = TypeVar('T')

SLOTS = ('A', 'B')
CHUNK = 4 << 20
SECTOR = 512

# GPT partition names (PARTLABEL) and volume labels: docs/image.md.
PART_BIOS, PART_BOOT, PART_STATE = 'fvbios', 'fvboot', 'fvstate'
PART_SLOT = {'A': 'fvslotA', 'B': 'fvslotB'}
FIRMVISOR_PARTS = (PART_BIOS, PART_BOOT, PART_SLOT['A'], PART_SLOT['B'], PART_STATE)
BOOT_LABEL, STATE_LABEL, ISO_LABEL, SEED_LABEL = 'FVBOOT', 'FVSTATE', 'FVISO', 'FVSEED'

GRUBENV_SIZE = 1024
GRUBENV_HEADER = '# GRUB Environment Block\n'
DEFAULT_TRIES = 3       # boots a slot gets (a trial's, and the known-good slot's again after each good boot)
MAX_TRIES = 9           # grub.cfg counts down from at most 9
BOOT_DISK = 'boot-disk'  # /run/firmvisor/boot-disk: the kernel name of the disk the system came from

BLKGETSIZE64 = 0x80081272


class HostError(Exception):
    """A firmvisor host tool cannot do what it was asked; the message says what, where and why."""


class Record:
    """A record whose fields are its class's annotated attributes, in order; a class value is the
    field's default (a list or dict copied for each record). What the tools used of dataclasses."""

    def __init__(self, *values: object, **named: object) -> None:
        kind, fields = type(self), list(type(self).__annotations__)
        if len(values) > len(fields):
            raise TypeError('%s takes at most %d fields' % (kind.__name__, len(fields)))
        given = dict(zip(fields, values))
        for name, value in named.items():
            if name not in fields or name in given:
                raise TypeError('%s: unknown or repeated field %r' % (kind.__name__, name))
            given[name] = value
        for name in fields:
            if name in given:
                value = given[name]
            elif hasattr(kind, name):
                value = getattr(kind, name)
                value = type(value)(value) if isinstance(value, (list, dict)) else value
            else:
                raise TypeError('%s needs %r' % (kind.__name__, name))
            setattr(self, name, value)

    def as_dict(self) -> Dict[str, object]:
        return {name: getattr(self, name) for name in type(self).__annotations__}

    def replace(self, **changes: object) -> Record:
        return type(self)(**dict(self.as_dict(), **changes))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return '%s(%s)' % (type(self).__name__, ', '.join('%s=%r' % item for item in self.as_dict().items()))


class Paths(Record):
    """Where the host tools look. The defaults are the running system's; tests use a temporary tree."""
    root: str = '/'
    cmdline: str = '/proc/cmdline'
    mounts: str = '/proc/self/mounts'
    sys_block: str = '/sys/class/block'
    sys_net: str = '/sys/class/net'
    sys_pci: str = '/sys/bus/pci/devices'
    dev: str = '/dev'
    run: str = '/run/firmvisor'
    runtime_network: str = '/run/systemd/network'
    state_mount: str = '/var/lib/firmvisor/state'
    esp_mount: str = '/run/firmvisor/esp'
    mount_esp: bool = True
    consoles: Tuple[str, ...] = ('/dev/console', '/dev/ttyS0')
    console_active: str = '/sys/class/tty/console/active'
    sys_acpi: str = '/sys/bus/acpi/devices'
    netif_links: str = '/run/systemd/netif/links'
    health_dir: str = '/etc/firmvisor/health.d'      # below root
    ssh_port: int = 22


# ---- files ------------------------------------------------------------------------------------------
def read_text(path: str, default: str = '') -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return default


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` whole: write a temporary file beside it, fsync it, rename it over ``path``,
    fsync the directory. A crash at any point leaves the old content or the new one, never a mix."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(dir=folder, prefix='.%s.' % os.path.basename(path))
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    # FAT (the boot partition) cannot fsync a directory everywhere; the rename is done either way.
    with contextlib.suppress(OSError):
        fsync_dir(folder)


def run(argv: Sequence[str], check: bool = False, env: Optional[Dict[str, str]] = None,
        timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """Run a command with its output (stdout and stderr together) captured as text. With ``check``,
    a failure raises HostError naming the command and what it said."""
    try:
        proc = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors='replace', env=env, timeout=timeout, check=False)
    except FileNotFoundError:
        raise HostError('%s is missing' % argv[0]) from None
    if check and proc.returncode != 0:
        raise HostError('%s failed (exit %d): %s' % (' '.join(argv[:2]), proc.returncode, proc.stdout.strip()[-400:]))
    return proc


def wait_for(probe: Callable[[], T], seconds: float, step: float = 0.25) -> T:
    """``probe()`` until it returns something true or ``seconds`` have passed; its last result."""
    deadline = time.monotonic() + seconds
    while True:
        result = probe()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(step)


def sha256_file(path: str, length: Optional[int] = None) -> str:
    """sha256 of a file's first ``length`` bytes (all of it by default); a short file is an error."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        remaining = length
        while remaining is None or remaining > 0:
            block = handle.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not block:
                if remaining:
                    raise HostError('%s ends %d bytes early' % (path, remaining))
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.hexdigest()


# ---- console ----------------------------------------------------------------------------------------
def console_targets(paths: Paths) -> List[str]:
    """/dev/console, and the other consoles too unless /dev/console is one of them (one line per
    boot on each terminal, never two)."""
    names = read_text(paths.console_active).split()
    current = names[-1] if names else None  # the last active console is what /dev/console is
    return [path for path in paths.consoles if path == '/dev/console' or os.path.basename(path) != current]


def say(message: str, paths: Optional[Paths] = None, console: Optional[bool] = None) -> None:
    """A progress line on stdout (the journal, or the terminal) and, under systemd (or when asked),
    on the console."""
    print(message, flush=True)
    if console is None:
        console = bool(os.environ.get('INVOCATION_ID'))
    if not console:
        return
    for target in console_targets(paths or Paths()):
        try:
            fd = os.open(target, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.write(fd, (message + '\n').encode('utf-8', 'replace'))
        except OSError:
            pass
        finally:
            os.close(fd)


# ---- GRUB environment block -------------------------------------------------------------------------
def format_grubenv(values: Dict[str, str]) -> bytes:
    body = GRUBENV_HEADER + ''.join('%s=%s\n' % (key, value) for key, value in values.items())
    data = body.encode()
    if len(data) > GRUBENV_SIZE:
        raise HostError('GRUB environment block overflow (%d bytes, at most %d)' % (len(data), GRUBENV_SIZE))
    return data + b'#' * (GRUBENV_SIZE - len(data))


def parse_grubenv(data: bytes) -> Dict[str, str]:
    text = data.decode('utf-8', 'replace')
    if len(data) != GRUBENV_SIZE or not text.startswith(GRUBENV_HEADER):
        raise HostError('not a %d-byte GRUB environment block' % GRUBENV_SIZE)
    values = {}
    for line in text[len(GRUBENV_HEADER):].split('\n'):
        if line and not line.startswith('#') and '=' in line:
            key, _unused, value = line.partition('=')
            values[key] = value
    return values


def tries(env: Dict[str, str], slot: str) -> int:
    """The boots ``slot`` has left, as grub.cfg reads them (A has 3, B none, when unset)."""
    value = env.get('fv_tries_' + slot, str(DEFAULT_TRIES) if slot == 'A' else '0')
    return int(value) if value.isdigit() and len(value) == 1 else 0


def active_slot(env: Dict[str, str]) -> str:
    return env.get('fv_active') if env.get('fv_active') in SLOTS else 'A'


def grub_decision(env: Dict[str, str], valid: Sequence[str]) -> Tuple[str, Dict[str, str], str]:
    """What image/grub/grub.cfg does at a boot, given the environment block and the valid slots (those
    with /slots/<slot>/version): (the slot it boots, the block it saves, what it says)."""
    env = dict(env)
    active = active_slot(env)
    other = other_slot(active)
    for slot in SLOTS:
        env['fv_tries_' + slot] = str(tries(env, slot))

    def take(slot: str) -> bool:
        if slot in valid and tries(env, slot) > 0:
            env['fv_tries_' + slot] = str(tries(env, slot) - 1)
            return True
        return False
    said = ''
    trial = env.get('fv_next', '')
    if trial:
        if trial == other and take(trial):
            return trial, env, 'trying slot %s (%s tries left; known-good slot: %s)' % (
                trial, env['fv_tries_' + trial], active)
        said = ('slot %s failed its trial: back to slot %s; ' % (trial, active) if trial == other
                else "fv_next='%s' is not the other slot, ignored; " % trial)
        env['fv_next'] = ''
    if take(active):
        return active, env, said + 'slot %s' % active
    if take(other):
        return other, env, said + 'slot %s failed: trying slot %s' % (active, other)
    env['fv_tries_A'] = env['fv_tries_B'] = str(DEFAULT_TRIES)
    for slot in (active, other):
        if take(slot):
            return slot, env, said + 'no slot has tries left: slot %s gets %d more' % (active, DEFAULT_TRIES)
    return active, env, said + 'no valid slot: slot %s anyway' % active


# ---- kernel command line ----------------------------------------------------------------------------
def boot_mode(cmdline: str) -> Tuple[str, Optional[str]]:
    """('live', None), ('slot', 'A'|'B') or ('other', None) from the kernel command line."""
    words = cmdline.split()
    if 'fv.live=1' in words:
        return 'live', None
    for word in words:
        if word.startswith('fv.slot='):
            slot = word.split('=', 1)[1]
            return ('slot', slot) if slot in SLOTS else ('other', None)
    return 'other', None


def booted(paths: Paths) -> Tuple[str, Optional[str]]:
    return boot_mode(read_text(paths.cmdline))


def other_slot(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(slot)]


# ---- block devices ----------------------------------------------------------------------------------
def uevent(paths: Paths, name: str) -> Dict[str, str]:
    text = read_text(os.path.join(paths.sys_block, name, 'uevent'))
    return dict(line.split('=', 1) for line in text.splitlines() if '=' in line)


def node(paths: Paths, name: str) -> str:
    """The /dev node of the kernel block device ``name``."""
    return os.path.join(paths.dev, uevent(paths, name).get('DEVNAME', name))


def block_devices(paths: Paths) -> List[str]:
    try:
        return sorted(os.listdir(paths.sys_block))
    except OSError:
        return []


def is_partition(paths: Paths, name: str) -> bool:
    return os.path.exists(os.path.join(paths.sys_block, name, 'partition'))


def whole_disk(paths: Paths, name: str) -> str:
    """The disk a partition belongs to (the name itself for a whole disk)."""
    if is_partition(paths, name):
        return os.path.basename(os.path.dirname(os.path.realpath(os.path.join(paths.sys_block, name))))
    return name


def partitions_of(paths: Paths, disk: str) -> List[str]:
    return [name for name in block_devices(paths)
            if name != disk and is_partition(paths, name) and whole_disk(paths, name) == disk]


def block_name(paths: Paths, device: str) -> str:
    """The kernel name (vda, sr0, sda1) of the block device node ``device``."""
    real = os.path.realpath(device)
    try:
        info = os.stat(real)
    except OSError:
        raise HostError('%s does not exist' % device) from None
    if not stat.S_ISBLK(info.st_mode):
        raise HostError('%s is not a block device' % device)
    wanted = '%d:%d' % (os.major(info.st_rdev), os.minor(info.st_rdev))
    for name in block_devices(paths):
        if read_text(os.path.join(paths.sys_block, name, 'dev')).strip() == wanted:
            return name
    raise HostError('%s (%s) is not in %s' % (device, wanted, paths.sys_block))


def is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def device_size(path: str) -> int:
    """Bytes of a block device (BLKGETSIZE64) or a file."""
    with open(path, 'rb') as handle:
        if is_block_device(path):
            return struct.unpack('<Q', fcntl.ioctl(handle.fileno(), BLKGETSIZE64, b'\0' * 8))[0]
        return handle.seek(0, os.SEEK_END)


def state_mounted(paths: Paths) -> bool:
    return os.path.ismount(paths.state_mount)


def boot_disk(paths: Paths) -> Optional[str]:
    """The kernel name of the disk the running system came from, as the initramfs found it (by the
    boot partition's GUID GRUB passed, or the only disk with the slot): None when unknown."""
    return read_text(os.path.join(paths.run, BOOT_DISK)).strip() or None


def find_partition(paths: Paths, partname: str, disk: Optional[str] = None) -> Optional[str]:
    """The /dev node of the partition whose GPT name is ``partname`` on ``disk`` (default: the boot
    disk; any disk only when the boot disk is unknown)."""
    disk = disk or boot_disk(paths)
    for name in block_devices(paths):
        fields = uevent(paths, name)
        if fields.get('PARTNAME') == partname and (disk is None or whole_disk(paths, name) == disk):
            return os.path.join(paths.dev, fields.get('DEVNAME', name))
    return None


def is_removable(paths: Paths, name: str) -> bool:
    """Removable or virtual media: a CD/DVD drive, a floppy, a USB stick, a BMC's virtual media."""
    disk = whole_disk(paths, name)
    return read_text(os.path.join(paths.sys_block, disk, 'removable')).strip() == '1'


def require_partition(paths: Paths, partname: str) -> str:
    device = find_partition(paths, partname)
    if device is None:
        raise HostError('no partition named %s' % partname)
    return device


# ---- volume labels ----------------------------------------------------------------------------------
LABEL_PROBE_BYTES = 0x8800


def volume_label(head: bytes) -> Optional[Tuple[str, str]]:
    """(fstype, label) of an ISO 9660 or FAT volume from its first 34 KiB, else None."""
    if len(head) >= 0x8048 and head[0x8000] == 1 and head[0x8001:0x8006] == b'CD001':
        return 'iso9660', head[0x8028:0x8048].decode('ascii', 'replace').strip()
    if len(head) >= 512 and head[510:512] == b'\x55\xaa' and head[0] in (0xEB, 0xE9):
        if head[0x52:0x5A] == b'FAT32   ':
            return 'vfat', head[0x47:0x52].decode('ascii', 'replace').strip()
        if head[0x36:0x39] == b'FAT' and head[0x26] == 0x29:
            return 'vfat', head[0x2B:0x36].decode('ascii', 'replace').strip()
    return None


def labelled(paths: Paths, label: str, unreadable: Optional[set] = None,
             allowed: Callable[[str], bool] = lambda name: True) -> List[Tuple[str, str, str]]:
    """(kernel name, device node, fstype) of every ISO 9660 or FAT volume labelled ``label`` on the
    devices ``allowed`` accepts: whole disks first, floppy drives last. Devices that cannot be read (an
    empty floppy or CD drive answers slowly, with an I/O error) are added to ``unreadable`` and
    skipped by later calls given the set."""
    unreadable = set() if unreadable is None else unreadable

    def order(name: str):
        return name.startswith('fd'), is_partition(paths, name), name
    found = []
    for name in sorted(block_devices(paths), key=order):
        if name.startswith(('loop', 'ram', 'zram', 'dm-')) or name in unreadable or not allowed(name):
            continue
        if read_text(os.path.join(paths.sys_block, name, 'size')).strip() == '0':
            continue
        device = node(paths, name)
        try:
            with open(device, 'rb') as handle:
                head = handle.read(LABEL_PROBE_BYTES)
        except OSError:
            unreadable.add(name)
            continue
        probed = volume_label(head)
        if probed and probed[1] == label:
            found.append((name, device, probed[0]))
    return found


# ---- the seed ---------------------------------------------------------------------------------------
DEFAULT_HOSTNAME = 'firmvisor'
SEED_KEYS = ('hostname', 'authorized_keys', 'network', 'install_to', 'install_force')
HOSTNAME_RE = re.compile(r'^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)'
                         r'(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$')
KEY_RE = re.compile(r'^(?:[a-z0-9-]+(?:="[^"]*")?(?:,[a-z0-9-]+(?:="[^"]*")?)* )?'
                    r'(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|'
                    r'sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)(-cert-v01@openssh\.com)? '
                    r'[A-Za-z0-9+/]+={0,3}( [^\r\n]*)?$')
DEVICE_RE = re.compile(r'^[A-Za-z0-9._/:-]+$')


class Seed(Record):
    hostname: str = DEFAULT_HOSTNAME
    authorized_keys: List[str] = []
    network: Dict[str, object] = {'mode': 'dhcp'}
    install_to: Optional[str] = None
    install_force: bool = False


def parse_seed(data, dev: str = '/dev') -> Tuple[Seed, List[str]]:
    """seed.json (bytes or str) -> (Seed, problems). Anything malformed is reported and replaced by
    its default: a broken file gives all defaults, a bad field that field's default. ``install_to``
    must name a device below ``dev``."""
    seed = Seed()
    problems: List[str] = []
    if isinstance(data, bytes):
        try:
            data = data.decode('utf-8')
        except UnicodeDecodeError as exc:
            return seed, ['seed.json is not UTF-8 (%s); using defaults' % exc]
    try:
        doc = json.loads(data)
    except ValueError as exc:
        return seed, ['seed.json is not valid JSON (%s); using defaults' % exc]
    if not isinstance(doc, dict):
        return seed, ['seed.json is a JSON %s, not an object; using defaults' % type(doc).__name__]
    for key in sorted(set(doc) - set(SEED_KEYS)):
        problems.append('unknown key %r ignored' % key)

    if 'hostname' in doc:
        value = doc['hostname']
        if not isinstance(value, str):
            problems.append('hostname must be a string, not %s; using %r' % (type(value).__name__, seed.hostname))
        elif not HOSTNAME_RE.match(value):
            problems.append('hostname %r is not a valid host name; using %r' % (value, seed.hostname))
        else:
            seed.hostname = value
    else:
        problems.append('no hostname; using %r' % seed.hostname)

    if 'authorized_keys' in doc:
        value = doc['authorized_keys']
        if isinstance(value, list):
            for index, key in enumerate(value):
                if isinstance(key, str) and KEY_RE.match(key.strip()):
                    seed.authorized_keys.append(key.strip())
                else:
                    problems.append('authorized_keys[%d] is not an SSH public key line; ignored' % index)
        else:
            problems.append('authorized_keys must be a list of strings, not %s; ignored' % type(value).__name__)
    if not seed.authorized_keys:
        problems.append('no authorized keys: nobody can log in over SSH')

    if 'network' in doc:
        network, problem = _parse_network(doc['network'])
        if problem:
            problems.append(problem + '; using DHCP on the first NIC')
        else:
            seed.network = network

    if doc.get('install_to') is not None:
        value = doc['install_to']
        prefix = dev.rstrip('/') + '/'
        if isinstance(value, str) and value.startswith(prefix) and DEVICE_RE.match(value[len(prefix):]) \
                and '..' not in value:
            seed.install_to = value
        else:
            problems.append('install_to must be a device path such as "/dev/sda", not %r; not installing' % (value,))
    if 'install_force' in doc:
        if isinstance(doc['install_force'], bool):
            seed.install_force = doc['install_force']
        else:
            problems.append('install_force must be true or false; using false')
    return seed, problems


def _parse_network(value) -> Tuple[Dict[str, object], Optional[str]]:
    if not isinstance(value, dict):
        return {}, 'network must be an object, not %s' % type(value).__name__
    mode = value.get('mode', 'dhcp')
    if mode == 'dhcp':
        return {'mode': 'dhcp'}, None
    if mode != 'static':
        return {}, 'network mode must be "dhcp" or "static", not %r' % (mode,)
    import ipaddress  # only here: its import builds tables that every boot of a DHCP host would pay for
    address = value.get('address')
    try:
        if not isinstance(address, str) or '/' not in address:
            raise ValueError
        interface = ipaddress.ip_interface(address)
    except ValueError:
        return {}, 'network address must be an address with a prefix such as "192.0.2.10/24", not %r' % (address,)
    network: Dict[str, object] = {'mode': 'static', 'address': str(interface), 'dns': []}
    gateway = value.get('gateway')
    if gateway is not None:
        try:
            if not isinstance(gateway, str):
                raise ValueError
            network['gateway'] = str(ipaddress.ip_address(gateway))
        except ValueError:
            return {}, 'network gateway must be an IP address, not %r' % (gateway,)
    dns = value.get('dns', [])
    if isinstance(dns, str):
        dns = [dns]
    try:
        if not isinstance(dns, list) or not all(isinstance(d, str) for d in dns):
            raise ValueError
        network['dns'] = [str(ipaddress.ip_address(d)) for d in dns]
    except ValueError:
        return {}, 'network dns must be a list of IP addresses, not %r' % (dns,)
    return network, None


def is_seed_name(name: str) -> bool:
    """seed.json as a file system shows it (ISO 9660 without Rock Ridge: SEED.JSON;1, SEED.JSO)."""
    return name.lower().split(';')[0] in ('seed.json', 'seed.jso')


@contextlib.contextmanager
def mounted(device: str, fstype: str, where: str, options: str = 'ro,nodev,nosuid,noexec') -> Iterator[str]:
    os.makedirs(where, exist_ok=True)
    run(['mount', '-t', fstype, '-o', options, device, where], check=True)
    try:
        yield where
    finally:
        run(['umount', where])


class SeedRead(Record):
    """What reading the seed found: the parsed seed (None: no seed volume), the problems, the device,
    whether seed.json was a JSON object (usable; its fields may still have been defaulted) and its
    bytes as they were."""
    seed: Optional[Seed]
    problems: List[str]
    device: Optional[str] = None
    usable: bool = False
    data: bytes = b''


def seed_from_bytes(data: bytes, device: Optional[str], dev: str = '/dev') -> SeedRead:
    seed, problems = parse_seed(data, dev)
    try:
        usable = isinstance(json.loads(data), dict)
    except ValueError:
        usable = False
    return SeedRead(seed, problems, device, usable, data)


def read_seed_volume(paths: Paths, device: str, fstype: str) -> SeedRead:
    """Mount the seed volume ``device`` read-only and read its seed.json."""
    try:
        with mounted(device, fstype, os.path.join(paths.run, 'seed')) as where:
            names = sorted(n for n in os.listdir(where) if is_seed_name(n))
            if not names:
                return SeedRead(Seed(), ['%s has no seed.json; using defaults' % device], device)
            with open(os.path.join(where, names[0]), 'rb') as handle:
                data = handle.read(1 << 20)
    except (OSError, HostError) as exc:
        return SeedRead(Seed(), ['%s; using defaults' % exc], device)
    return seed_from_bytes(data, device, paths.dev)


def seed_device_allowed(paths: Paths, name: str) -> bool:
    """A seed comes from removable or virtual media, or from the boot disk; never from any other disk
    (a stale install, a LUN, a VM's disk image)."""
    return is_removable(paths, name) or whole_disk(paths, name) == boot_disk(paths)


def load_floppy_driver(paths: Paths) -> bool:
    """The floppy driver, when the machine has a floppy controller (ACPI PNP0700: a BMC's Floppy virtual
    media slot) and no fd0 yet: udev loads it too, but maybe only after the seed was looked for."""
    try:
        controllers = [name for name in os.listdir(paths.sys_acpi) if name.startswith('PNP0700:')]
    except OSError:
        return False
    if not controllers or os.path.exists(os.path.join(paths.sys_block, 'fd0')):
        return False
    return run(['modprobe', 'floppy']).returncode == 0


def find_seed(paths: Paths, wait: float) -> SeedRead:
    """The volume labelled FVSEED on removable or virtual media or the boot disk (waiting up to
    ``wait`` seconds for it), mounted and read."""
    load_floppy_driver(paths)
    unreadable: set = set()
    found = wait_for(lambda: labelled(paths, SEED_LABEL, unreadable, lambda n: seed_device_allowed(paths, n)), wait)
    if not found:
        return SeedRead(None, [])
    _name, device, fstype = found[0]
    return read_seed_volume(paths, device, fstype)
