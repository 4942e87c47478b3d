# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fv-state: the persisted configuration of a firmvisor host (stdlib only; runs on the hypervisor).

    fv-state restore   mount the boot disk's state partition (GPT name fvstate) at
                       /var/lib/firmvisor/state and restore the booted slot's state
                       (slots/<slot>/config.tar) into /. A trial slot starts from the known-good slot's
                       state (fvslot boot-once leaves slots/<trial>/start-from). A live boot (fv.live=1)
                       is stateless: the disk's state is never touched.
    fv-state apply     the boot's work (firmvisor-state.service, before libvirtd, sshd and
                       systemd-networkd): restore (unless that has run), then with no state import the
                       seed; make the SSH host keys that are missing; save at once when anything changed.
    fv-state save      save the booted slot's state now: config.tar.new written and fsynced, the current
                       config.tar kept as config.tar.prev (a hard link), config.tar.new renamed over
                       config.tar, the directory fsynced. Exit 3: stateless.
    fv-state watch     the save-on-change service: every WATCH_INTERVAL seconds, compare what the state
                       holds (paths, sizes, times, inodes) with what was saved last and save on a change;
                       save once more when stopped.
    fv-state status    JSON: boot mode, state partition, each slot's saved state
    fv-state has PATH  exit 0 when PATH (relative to /) is in the booted slot's saved state

docs/image.md is the contract. What the state holds is PERSIST (plus the paths listed in
/etc/firmvisor/persist.list, one per line); a restore replaces each of those trees whole, so a file
deleted before the save stays deleted. A state file is a tar followed by a 512-byte trailer with the
tar's length, member count and sha256: a file cut short, even at a member boundary, is detected, and
the next candidate (config.tar.new, config.tar, config.tar.prev, newest first) is used. The pure parts
(the files a seed makes, the tar, the trailer, the atomic save, the restore) take their paths as
arguments, for the unit tests.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import fnmatch
import glob
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import stat
import struct
import sys
import tarfile
import time

from fvlib import (DEFAULT_HOSTNAME, PART_STATE, SEED_LABEL, SLOTS, HostError, Paths, Seed, SeedRead,
                   atomic_write, booted, find_partition, find_seed, fsync_dir, read_text, run, say,
                   seed_from_bytes, state_mounted, wait_for)

TYPE_CHECKING = False
if TYPE_CHECKING:  # hints only: no typing import at each start (fvlib says why)
    from typing import Dict, Iterator, List, Optional, Sequence, Tuple

CONFIG = 'config.tar'
NEW, PREV = CONFIG + '.new', CONFIG + '.prev'
SLOTS_DIR = 'slots'             # on the state partition: slots/<slot>/config.tar, one state per slot
START_FROM = 'start-from'       # slots/<trial>/start-from: the slot whose state the trial starts from
STATE_SEED = 'seed.json'        # on the state partition: the seed fv-install put there, imported once
MANIFEST_MEMBER = '.firmvisor-state.json'
FORMAT = 1
TRAILER_SIZE = 512
TRAILER_MAGIC = b'FVSTATE-TRAILER '
WATCH_INTERVAL = 1.0
APPLIED = 'state.json'          # /run/firmvisor/state.json: what apply did (the health gate reads it)
RESTORED = 'restore.json'       # /run/firmvisor/restore.json: what restore did (apply goes on from it)
SAVED_FINGERPRINT = 'saved.fingerprint'  # /run/firmvisor: what the last save held
# What the state holds (relative to /; shell patterns, one path component per pattern component).
PERSIST = (
    'etc/hostname',
    'etc/ssh/ssh_host_*',
    'root/.ssh',
    'etc/systemd/network',
    'etc/libvirt/qemu',         # domains (*.xml), autostart/, networks/ (+ autostart/)
    'etc/libvirt/storage',      # pools (+ autostart/)
    'etc/firmvisor',
)
# Never saved, never replaced by a restore: they belong to the image.
NEVER = ('etc/firmvisor/version',)
EXTRA_LIST = 'etc/firmvisor/persist.list'
# No RSA host key: making one takes many seconds under TCG at the first boot, and every client that
# talks to firmvisor (OpenSSH, libvirt's ssh transport, paramiko) speaks ed25519 and ECDSA.
HOST_KEY_TYPES = ('ed25519', 'ecdsa')
MGMT_NETWORK = 'etc/systemd/network/10-fv-mgmt.network'
DEFAULT_NETWORK = '10-fv-default.network'  # in /run/systemd/network: runtime, never saved
SEED_PENDING = 'seed-pending'
SEED_WAIT = 10.0
STATE_WAIT = 15.0
NIC_WAIT = 15.0

EXIT_STATELESS = 3

# libvirt's QEMU capabilities cache (probing QEMU takes ~12 s under TCG at every boot otherwise):
# kept on the state partition beside config.tar (a cache, not configuration: never in config.tar),
# used only by the image it was made by (same firmvisor version, kernel, QEMU and libvirt packages);
# libvirt checks each entry again itself.
CAPS_DIR = 'var/cache/libvirt/qemu/capabilities'
CAPS_CACHE = 'cache/libvirt-qemu-capabilities'
CAPS_STAMP_FILES = ('etc/firmvisor/version', 'var/lib/dpkg/info/qemu-system-*.md5sums',
                    'var/lib/dpkg/info/libvirt*.md5sums', 'var/lib/dpkg/info/seabios.md5sums',
                    'var/lib/dpkg/info/ovmf.md5sums', 'var/lib/dpkg/info/ipxe-qemu.md5sums')


# One error type for every host tool (fvlib); the name says whose it is.
StateError = HostError


def network_unit(network: Dict[str, object], nic: Optional[Dict[str, str]]) -> str:
    """A systemd-networkd .network for the management NIC (``nic``: path (udev's ID_PATH), or name,
    mac, permanent)."""
    lines = ['# firmvisor: the management network (fv-state)', '[Match]']
    if nic and nic.get('path'):
        lines.append('Path=%s' % nic['path'])
    elif nic and nic.get('mac'):
        lines.append('%s=%s' % ('PermanentMACAddress' if nic.get('permanent') else 'MACAddress', nic['mac']))
    elif nic and nic.get('name'):
        lines.append('Name=%s' % nic['name'])
    else:
        lines += ['Type=ether', 'Name=en* eth*']
    lines += ['', '[Network]']
    if network.get('mode') == 'static':
        lines.append('Address=%s' % network['address'])
        if network.get('gateway'):
            lines.append('Gateway=%s' % network['gateway'])
        lines += ['DNS=%s' % d for d in network.get('dns', [])]
    else:
        lines += ['DHCP=yes', '', '[DHCPv4]', '# stable across reboots (the machine ID is not)',
                  'ClientIdentifier=mac']
    return '\n'.join(lines) + '\n'


def seed_files(seed: Seed, nic: Optional[Dict[str, str]]) -> Dict[str, Tuple[str, int]]:
    """The files (relative path -> (content, mode)) that importing ``seed`` writes."""
    files = {
        'etc/hostname': (seed.hostname + '\n', 0o644),
        'root/.ssh/authorized_keys': (''.join(k + '\n' for k in seed.authorized_keys), 0o600),
        'etc/firmvisor/seed.json': (json.dumps(seed.as_dict(), indent=2, sort_keys=True) + '\n', 0o600),
    }
    if seed.network.get('mode') == 'static':
        files[MGMT_NETWORK] = (network_unit(seed.network, nic), 0o644)
    return files


def write_files(root: str, files: Dict[str, Tuple[str, int]]) -> None:
    for rel, (content, mode) in sorted(files.items()):
        path = os.path.join(root, rel)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700 if rel.startswith('root/') else 0o755)
        atomic_write(path, content.encode(), mode)


# ---- the state tar ----------------------------------------------------------------------------------
def _split(path: str) -> List[str]:
    return [part for part in path.strip('/').split('/') if part]


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    """rel is a path matched by one of the patterns, or below one (component by component)."""
    parts = _split(rel)
    for pattern in patterns:
        pparts = _split(pattern)
        if len(parts) >= len(pparts) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pparts)):
            return True
    return False


def read_extra_patterns(root: str) -> List[str]:
    """Extra paths to persist, from /etc/firmvisor/persist.list (absolute or relative, no '..')."""
    try:
        with open(os.path.join(root, EXTRA_LIST)) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    patterns = []
    for line in lines:
        line = line.split('#', 1)[0].strip()
        if line and '..' not in _split(line) and _split(line):
            patterns.append('/'.join(_split(line)))
    return patterns


def collect(root: str, patterns: Sequence[str], never: Sequence[str] = NEVER) -> List[str]:
    """Every file, directory and symlink below root that the patterns name, sorted (parents first)."""
    found = set()
    for pattern in patterns:
        for path in glob.glob(os.path.join(root, pattern)):
            rel = os.path.relpath(path, root)
            found.add(rel)
            if os.path.isdir(path) and not os.path.islink(path):
                for folder, dirs, files in os.walk(path):
                    dirs.sort()
                    for name in dirs + files:
                        found.add(os.path.relpath(os.path.join(folder, name), root))
    result = []
    for rel in sorted(found, key=_split):
        if _matches(rel, never):
            continue
        mode = os.lstat(os.path.join(root, rel)).st_mode
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
            result.append(rel)
    return result


def persisted_patterns(root: str) -> List[str]:
    return list(PERSIST) + read_extra_patterns(root)


def fingerprint(root: str, members: Sequence[str]) -> str:
    """What a save of ``members`` would hold, cheaply: each path with its type, mode, size, times and
    inode (libvirt and the tools replace files whole, so a change moves one of these)."""
    digest = hashlib.sha256()
    for rel in members:
        try:
            st = os.lstat(os.path.join(root, rel))
        except OSError:
            continue
        line = '%s\0%o\0%d\0%d\0%d\0%d\n' % (rel, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        digest.update(line.encode())
    return digest.hexdigest()


def build_tar(root: str, members: Sequence[str], patterns: Sequence[str], version: str = '') -> bytes:
    """The state tar of ``members`` below ``root`` (its first member the manifest)."""
    manifest = json.dumps({'format': FORMAT, 'roots': list(patterns), 'never': list(NEVER),
                           'version': version, 'saved': int(time.time())}, sort_keys=True).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w', format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST_MEMBER)
        info.size, info.mode, info.mtime = len(manifest), 0o600, int(time.time())
        tar.addfile(info, io.BytesIO(manifest))
        for rel in members:
            tar.add(os.path.join(root, rel), arcname=rel, recursive=False)
    return buffer.getvalue()


def trailer(data: bytes, members: int) -> bytes:
    """The last 512 bytes of a state file: the tar's length, member count and sha256."""
    fields = json.dumps({'format': FORMAT, 'length': len(data), 'members': members,
                         'sha256': hashlib.sha256(data).hexdigest()}, sort_keys=True).encode()
    block = TRAILER_MAGIC + fields + b'\n'
    return block + b' ' * (TRAILER_SIZE - len(block))


def split_trailer(blob: bytes, where: str) -> Tuple[bytes, int]:
    """(the tar, its member count) of a whole state file; StateError when it is cut short or altered."""
    if len(blob) < TRAILER_SIZE or not blob[-TRAILER_SIZE:].startswith(TRAILER_MAGIC):
        raise StateError('%s has no trailer (%d bytes): cut short' % (where, len(blob)))
    try:
        fields = json.loads(blob[-TRAILER_SIZE + len(TRAILER_MAGIC):].decode())
        length, members, digest = int(fields['length']), int(fields['members']), str(fields['sha256'])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise StateError('%s has an unreadable trailer' % where) from None
    data = blob[:-TRAILER_SIZE]
    if len(data) != length or hashlib.sha256(data).hexdigest() != digest:
        raise StateError('%s does not match its trailer (%d bytes, %d expected): cut short or damaged'
                         % (where, len(data), length))
    return data, members


def is_whole(path: str) -> bool:
    try:
        with open(path, 'rb') as handle:
            split_trailer(handle.read(), path)
        return True
    except (OSError, StateError):
        return False


def slot_folder(state_dir: str, slot: str) -> str:
    return os.path.join(state_dir, SLOTS_DIR, slot)


def write_state_file(folder: str, blob: bytes) -> str:
    """Atomic: config.tar.new written and fsynced; the current config.tar kept as config.tar.prev;
    config.tar.new renamed over config.tar; the directory fsynced. Power lost at any point leaves a
    whole config.tar (the old or the new one), and a whole previous one."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    final, new, prev = (os.path.join(folder, name) for name in (CONFIG, NEW, PREV))
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'wb') as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())
    if is_whole(final):  # a damaged config.tar never pushes out a whole previous one
        link = prev + '.link'
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.link(final, link)
        os.replace(link, prev)
    os.replace(new, final)
    fsync_dir(folder)
    return final


def save_state(root: str, folder: str, patterns: Optional[Sequence[str]] = None, version: str = '') -> Dict:
    """Save the state of ``root`` into ``folder`` (a slot's folder on the state partition)."""
    patterns = persisted_patterns(root) if patterns is None else list(patterns)
    members = collect(root, patterns)
    held = fingerprint(root, members)
    data = build_tar(root, members, patterns, version)
    path = write_state_file(folder, data + trailer(data, len(members) + 1))
    return {'path': path, 'members': len(members), 'bytes': len(data) + TRAILER_SIZE, 'fingerprint': held}


def read_state(path: str) -> Tuple[Dict, List[tarfile.TarInfo]]:
    """Open and check a state file: (manifest, members). StateError when it is not whole and valid."""
    try:
        with open(path, 'rb') as handle:
            blob = handle.read()
    except OSError as exc:
        raise StateError('%s is unreadable: %s' % (path, exc)) from exc
    data, count = split_trailer(blob, path)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode='r:') as tar:
            members = tar.getmembers()
            if not members or members[0].name != MANIFEST_MEMBER:
                raise StateError('%s has no firmvisor manifest' % path)
            manifest = json.loads(tar.extractfile(members[0]).read().decode())
    except (tarfile.TarError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise StateError('%s is unreadable: %s' % (path, exc)) from exc
    if len(members) != count:
        raise StateError('%s holds %d members, its trailer says %d' % (path, len(members), count))
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT or \
            not isinstance(manifest.get('roots'), list):
        raise StateError('%s has an unknown manifest' % path)
    roots = [r for r in manifest['roots'] if isinstance(r, str) and _split(r) and '..' not in _split(r)]
    manifest['roots'] = roots
    seen, links = set(), set()
    for member in members[1:]:
        name = member.name
        parts = _split(name)
        if name.startswith('/') or not parts or '..' in parts or '.' in parts:
            raise StateError('%s: unsafe member %r' % (path, name))
        if not (member.isreg() or member.isdir() or member.issym()):
            raise StateError('%s: member %r is not a file, directory or symlink' % (path, name))
        if not _matches(name, roots) or _matches(name, NEVER):
            raise StateError('%s: member %r is outside what the state holds' % (path, name))
        if name in seen or any('/'.join(parts[:i]) in links for i in range(1, len(parts))):
            raise StateError('%s: member %r is repeated or below a symlink' % (path, name))
        seen.add(name)
        if member.issym():
            links.add(name)
    return manifest, members[1:]


def newest_valid(folder: str) -> Tuple[Optional[str], List[str]]:
    """The newest whole state file in ``folder`` (config.tar.new, config.tar, config.tar.prev), and
    why each newer one was passed over."""
    problems = []
    for name in (NEW, CONFIG, PREV):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            continue
        try:
            read_state(path)
        except StateError as exc:
            problems.append(str(exc))
            continue
        return path, problems
    return None, problems


def restore_state(root: str, path: str) -> int:
    """Replace what the state holds under root by the contents of the state file ``path``; returns
    the member count."""
    manifest, members = read_state(path)
    with open(path, 'rb') as handle:
        data, _count = split_trailer(handle.read(), path)
    for pattern in manifest['roots']:
        for target in glob.glob(os.path.join(root, pattern)):
            _remove(root, target)
    kwargs = {'filter': 'fully_trusted'} if hasattr(tarfile, 'fully_trusted_filter') else {}
    with tarfile.open(fileobj=io.BytesIO(data), mode='r:') as tar:
        wanted = {m.name for m in members}
        tar.extractall(root, members=[m for m in tar.getmembers() if m.name in wanted],
                       numeric_owner=True, **kwargs)
    return len(members)


def start_trial_state(state_dir: str, slot: str) -> Optional[str]:
    """A trial's first boot: the slot it starts from (slots/<slot>/start-from) gives its newest whole
    state to the trial slot, and the marker goes. Returns the slot copied from, if any."""
    folder = slot_folder(state_dir, slot)
    marker = os.path.join(folder, START_FROM)
    source = read_text(marker).strip()
    if source not in SLOTS or source == slot:
        return None
    path, _problems = newest_valid(slot_folder(state_dir, source))
    if path:
        with open(path, 'rb') as handle:
            write_state_file(folder, handle.read())
    os.unlink(marker)
    fsync_dir(folder)
    return source if path else None


def _remove(root: str, path: str) -> None:
    """Remove path (a tree), keeping whatever NEVER names below it."""
    rel = os.path.relpath(path, root)
    if _matches(rel, NEVER):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        keep = any(_matches(never, [rel]) for never in NEVER)
        if not keep:
            shutil.rmtree(path)
            return
        for entry in os.listdir(path):
            _remove(root, os.path.join(path, entry))
        return
    os.unlink(path)


# ---- libvirt's QEMU capabilities cache -------------------------------------------------------------
def caps_stamp(root: str, kernel: str) -> str:
    digest = hashlib.sha256(('kernel %s\n' % kernel).encode())
    for pattern in CAPS_STAMP_FILES:
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            digest.update(os.path.relpath(path, root).encode() + b'\0')
            with open(path, 'rb') as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def restore_caps_cache(root: str, state_dir: str, kernel: str) -> int:
    """Put the saved capabilities back, when this very image saved them; returns the file count."""
    cache = os.path.join(state_dir, CAPS_CACHE)
    if read_text(os.path.join(cache, 'stamp')).strip() != caps_stamp(root, kernel):
        return 0
    target = os.path.join(root, CAPS_DIR)
    os.makedirs(target, mode=0o755, exist_ok=True)
    count = 0
    for path in sorted(glob.glob(os.path.join(cache, '*.xml'))):
        shutil.copyfile(path, os.path.join(target, os.path.basename(path)))
        os.chmod(os.path.join(target, os.path.basename(path)), 0o600)
        count += 1
    return count


def save_caps_cache(root: str, state_dir: str, kernel: str) -> int:
    """Keep libvirt's current capabilities (if any) for the next boot; returns the file count."""
    files = sorted(glob.glob(os.path.join(root, CAPS_DIR, '*.xml')))
    if not files:
        return 0
    cache = os.path.join(state_dir, CAPS_CACHE)
    new, old = cache + '.new', cache + '.old'
    for stale in (new, old):
        shutil.rmtree(stale, ignore_errors=True)
    os.makedirs(new, mode=0o700)
    for path in files:
        shutil.copyfile(path, os.path.join(new, os.path.basename(path)))
    with open(os.path.join(new, 'stamp'), 'w') as handle:
        handle.write(caps_stamp(root, kernel) + '\n')
    if os.path.exists(cache):
        os.rename(cache, old)
    os.rename(new, cache)
    shutil.rmtree(old, ignore_errors=True)
    return len(files)


# ---- network interfaces ------------------------------------------------------------------------------
def nics(paths: Paths) -> List[Dict[str, str]]:
    """Physical NICs (those with a device), in bus order."""
    found = []
    try:
        names = os.listdir(paths.sys_net)
    except OSError:
        return []
    for name in names:
        base = os.path.join(paths.sys_net, name)
        if not os.path.exists(os.path.join(base, 'device')):
            continue
        try:
            with open(os.path.join(base, 'address')) as handle:
                mac = handle.read().strip()
            with open(os.path.join(base, 'addr_assign_type')) as handle:
                permanent = handle.read().strip() == '0'
        except OSError:
            mac, permanent = '', False
        found.append({'name': name, 'mac': mac, 'permanent': permanent,
                      'bus': os.path.realpath(os.path.join(base, 'device'))})
    return sorted(found, key=lambda n: (n['bus'], n['name']))


EXT_MAGIC = 0xEF53
EXT_VALID, EXT_ERRORS = 0x1, 0x2


def needs_check(superblock: bytes, now: float) -> bool:
    """Whether ``e2fsck -p`` has work on an ext4 file system, from its superblock (the 1024 bytes at
    byte 1024): anything but a clean one with no error recorded and no check due. A journal left to
    replay after a power cut is the kernel's work at mount."""
    if len(superblock) < 0x48:
        return True
    mounts, max_mounts, magic, state = struct.unpack_from('<HhHH', superblock, 0x34)
    last_check, interval = struct.unpack_from('<II', superblock, 0x40)
    return (magic != EXT_MAGIC or not state & EXT_VALID or bool(state & EXT_ERRORS)
            or 0 < max_mounts <= mounts or (interval > 0 and now >= last_check + interval))


def read_superblock(device: str) -> bytes:
    try:
        with open(device, 'rb') as handle:
            handle.seek(1024)
            return handle.read(1024)
    except OSError:
        return b''


def mount_state(paths: Paths, wait: float) -> Optional[str]:
    """Mount the fvstate partition (e2fsck -p first when its superblock says there is work for it:
    the program costs the boot ~1 s under emulation); the device, or None (said why)."""
    if os.path.ismount(paths.state_mount):
        return 'mounted'
    device = wait_for(lambda: find_partition(paths, PART_STATE), wait)
    if not device:
        say('firmvisor: state: no partition named %s: running stateless' % PART_STATE, paths)
        return None
    check = run(['e2fsck', '-p', device]) if needs_check(read_superblock(device), time.time()) else None
    if check is not None and check.returncode >= 4:
        say('firmvisor: state: e2fsck %s failed (exit %d): %s' % (device, check.returncode,
                                                                  check.stdout.strip()[-200:]), paths)
    os.makedirs(paths.state_mount, exist_ok=True)
    mount = run(['mount', '-t', 'ext4', '-o', 'noatime,nodev,nosuid,noexec', device, paths.state_mount])
    if mount.returncode != 0:
        say('firmvisor: state: mounting %s failed: %s; running stateless' % (device, mount.stdout.strip()), paths)
        return None
    return device


@contextlib.contextmanager
def locked(paths: Paths) -> Iterator[None]:
    os.makedirs(paths.run, exist_ok=True)
    with open(os.path.join(paths.run, 'fv-state.lock'), 'w') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_host_keys(root: str, hostname: str) -> List[str]:
    """Make the SSH host keys that are missing; returns the types made."""
    made = []
    for kind in HOST_KEY_TYPES:
        key = os.path.join(root, 'etc', 'ssh', 'ssh_host_%s_key' % kind)
        if os.path.exists(key) and os.path.exists(key + '.pub'):
            continue
        for stale in (key, key + '.pub'):
            if os.path.exists(stale):
                os.unlink(stale)
        result = run(['ssh-keygen', '-q', '-N', '', '-t', kind, '-C', 'root@%s' % hostname, '-f', key])
        if result.returncode != 0:
            raise StateError('ssh-keygen -t %s failed: %s' % (kind, result.stdout.strip()))
        made.append(kind)
    return made


def key_fingerprint(line: str) -> str:
    """An ed25519 public key line as ``ssh-keygen -l`` prints it (without starting it at boot)."""
    kind, blob, *comment = line.split(None, 2)
    try:
        digest = hashlib.sha256(base64.b64decode(blob, validate=True)).digest()
    except ValueError:
        return 'unreadable (%s)' % kind
    fingerprint = base64.b64encode(digest).decode().rstrip('=')
    return '256 SHA256:%s %s (ED25519)' % (fingerprint, comment[0].strip() if comment else 'no comment')


def apply_hostname(root: str, name: str) -> None:
    hosts = os.path.join(root, 'etc', 'hosts')
    lines = [line for line in read_text(hosts).splitlines() if not line.startswith('127.0.1.1')]
    lines.insert(1 if lines else 0, '127.0.1.1\t%s' % name)
    atomic_write(hosts, ('\n'.join(lines) + '\n').encode(), 0o644)
    try:
        socket.sethostname(name)
    except OSError:
        pass


def has_network_config(root: str) -> bool:
    return bool(glob.glob(os.path.join(root, 'etc', 'systemd', 'network', '*.network')))


def pci_nics(paths: Paths) -> List[str]:
    """PCI addresses of the Ethernet controllers (class 0x0200), in bus order: known before any
    driver is loaded."""
    try:
        addresses = sorted(os.listdir(paths.sys_pci))
    except OSError:
        return []
    return [a for a in addresses if read_text(os.path.join(paths.sys_pci, a, 'class')).strip().startswith('0x0200')]


def first_nic(paths: Paths) -> Optional[Dict[str, str]]:
    """The first NIC: the first PCI Ethernet controller, matched by its path (udev's ID_PATH, e.g.
    pci-0000:00:10.0) without waiting for its driver; else (no PCI NIC, say USB only) the first NIC
    that appears, once udev has had its say, by its MAC address."""
    pci = pci_nics(paths)
    if pci:
        return {'name': pci[0], 'path': 'pci-%s' % pci[0]}
    found = wait_for(lambda: nics(paths), NIC_WAIT)
    if not found:
        return None
    run(['udevadm', 'settle', '--timeout=5'])
    return (nics(paths) or found)[0]


def image_version(root: str) -> str:
    return read_text(os.path.join(root, 'etc', 'firmvisor', 'version')).strip()


# ---- the seed's sources ------------------------------------------------------------------------------
def read_seed(paths: Paths, mode: str, state: bool) -> SeedRead:
    """The seed, from (in this order) the state partition (fv-install put the installer's seed there),
    the volume labelled FVSEED on removable or virtual media or the boot disk, or, on a live boot,
    seed.json on the live medium itself (an ISO made for one server)."""
    if state:
        path = os.path.join(paths.state_mount, STATE_SEED)
        if os.path.isfile(path):
            with open(path, 'rb') as handle:
                return seed_from_bytes(handle.read(1 << 20), 'the state partition (%s)' % STATE_SEED, paths.dev)
    found = find_seed(paths, SEED_WAIT)
    if found.seed is None and mode == 'live':
        medium = os.path.join(paths.run, 'medium', STATE_SEED)
        if os.path.isfile(medium):
            with open(medium, 'rb') as handle:
                return seed_from_bytes(handle.read(1 << 20), 'the live medium', paths.dev)
    return found


def import_seed(paths: Paths, mode: str, state: bool, restored: bool) -> bool:
    """Import the seed where one is due; True when something to save was written."""
    found = read_seed(paths, mode, state)
    seed, problems, device, usable = found.seed, found.problems, found.device, found.usable
    if usable:  # as it is, for fv-install
        atomic_write(os.path.join(paths.run, 'seed.json'), found.data, 0o600)
    if seed is None:
        say('firmvisor: seed: no volume labelled %s on removable media or the boot disk%s' % (
            SEED_LABEL, '' if restored else ': using defaults'), paths)
    else:
        say('firmvisor: seed: %s %s (hostname %s, %d authorized keys, network %s)'
            % ('importing' if usable else 'reading', device, seed.hostname, len(seed.authorized_keys),
               seed.network.get('mode')), paths)
    for problem in problems:
        say('firmvisor: seed: %s' % problem, paths)
    wrote = False
    if usable or not restored:
        seed = seed if usable else Seed()
        nic = first_nic(paths) if seed.network.get('mode') == 'static' else None
        write_files(paths.root, seed_files(seed, nic))
        wrote = True
        if seed.install_to and mode == 'live':
            atomic_write(os.path.join(paths.run, 'install_to'), (seed.install_to + '\n').encode(), 0o644)
            say('firmvisor: seed: install_to %s: the installer runs' % seed.install_to, paths)
        elif seed.install_to:
            say('firmvisor: seed: install_to ignored: this is not a live boot', paths)
    if state:
        pending = os.path.join(paths.state_mount, SEED_PENDING)
        state_seed = os.path.join(paths.state_mount, STATE_SEED)
        if usable and os.path.exists(state_seed):
            os.replace(state_seed, state_seed + '.imported')
        if usable and os.path.exists(pending):
            os.unlink(pending)
        elif not usable:
            atomic_write(pending, b'a usable seed is imported at the next boot that finds one\n', 0o644)
            say('firmvisor: seed: a usable seed will be imported at a later boot', paths)
    return wrote


# ---- the commands -------------------------------------------------------------------------------------
def note_saved(paths: Paths, result: Dict) -> None:
    atomic_write(os.path.join(paths.run, SAVED_FINGERPRINT), result['fingerprint'].encode(), 0o600)


def restore(paths: Paths) -> Dict[str, object]:
    """The first half of the boot's work, all libvirtd waits for: mount the boot disk's state partition
    (a slot boot only), start a trial from the known-good slot's state, restore the slot's newest whole
    state and libvirt's capabilities cache. What it did goes to /run/firmvisor/restore.json."""
    started = time.monotonic()
    mode, slot = booted(paths)
    root = paths.root
    os.makedirs(paths.run, exist_ok=True)
    say('firmvisor: state: %s boot%s' % (mode, ' (slot %s)' % slot if slot else ''), paths)
    # Only a boot from a slot has a state: a live boot (or anything else) never touches a disk's.
    state = mount_state(paths, STATE_WAIT) if mode == 'slot' else None
    folder = slot_folder(paths.state_mount, slot) if state and slot else None
    done: Dict[str, object] = {'mode': mode, 'slot': slot, 'stateful': bool(folder), 'restored_from': None}
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        source = start_trial_state(paths.state_mount, slot)
        if source:
            say('firmvisor: state: slot %s starts its trial from slot %s\'s state' % (slot, source), paths)
        path, problems = newest_valid(folder)
        for problem in problems:
            say('firmvisor: state: %s; passed over' % problem, paths)
        if path:
            count = restore_state(root, path)
            done['restored_from'] = os.path.basename(path)
            say('firmvisor: state: restored %d entries from slots/%s/%s' % (count, slot, done['restored_from']), paths)
            try:
                if restore_caps_cache(root, paths.state_mount, os.uname().release):
                    say('firmvisor: state: libvirt\'s QEMU capabilities from the cache', paths)
            except OSError as exc:
                say('firmvisor: state: the capabilities cache is unusable: %s' % exc, paths)
    done['seconds'] = round(time.monotonic() - started, 1)
    atomic_write(os.path.join(paths.run, RESTORED), json.dumps(done, sort_keys=True).encode(), 0o644)
    return done


def apply(paths: Paths) -> int:
    """The boot's work: restore (unless `fv-state restore` ran already), then what sshd and the
    network wait for: the seed where one is due, SSH host keys, the hostname, the default management
    network, a save when anything changed. /run/firmvisor/state.json says it is done."""
    started = time.monotonic()
    try:
        with open(os.path.join(paths.run, RESTORED)) as handle:
            done = json.load(handle)
    except (OSError, ValueError):
        done = restore(paths)
    mode, slot, root = done['mode'], done['slot'], paths.root
    folder = slot_folder(paths.state_mount, slot) if done['stateful'] else None
    restored = bool(done['restored_from'])
    save_now = restored and done['restored_from'] != CONFIG  # make the newest whole file config.tar again
    # The seed is imported at the first boot; when there was none, or it was unusable, the state
    # remembers that (SEED_PENDING) and a later boot that finds a usable seed imports it over the
    # restored state: a host is never locked out for good by a missing seed.
    pending = bool(folder) and os.path.exists(os.path.join(paths.state_mount, SEED_PENDING))
    if not restored or pending:
        save_now = import_seed(paths, mode, bool(folder), restored) or save_now
    hostname = read_text(os.path.join(root, 'etc', 'hostname')).strip() or DEFAULT_HOSTNAME
    made = ensure_host_keys(root, hostname)
    if made:
        say('firmvisor: state: made SSH host keys (%s)' % ', '.join(made), paths)
        save_now = True
    apply_hostname(root, hostname)
    if not has_network_config(root):
        nic = first_nic(paths)
        os.makedirs(paths.runtime_network, exist_ok=True)
        atomic_write(os.path.join(paths.runtime_network, DEFAULT_NETWORK),
                     network_unit({'mode': 'dhcp'}, nic).encode(), 0o644)
        say('firmvisor: state: DHCP on the first NIC (%s)' % (nic['name'] if nic else 'none found yet'), paths)
    if folder and save_now:
        result = save_state(root, folder, version=image_version(root))
        note_saved(paths, result)
        say('firmvisor: state: saved %d entries to %s' % (result['members'], result['path']), paths)
    elif folder:
        note_saved(paths, {'fingerprint': fingerprint(root, collect(root, persisted_patterns(root)))})
    for line in read_text(os.path.join(root, 'etc', 'ssh', 'ssh_host_ed25519_key.pub')).splitlines()[:1]:
        say('firmvisor: ssh host key %s' % key_fingerprint(line), paths)
    atomic_write(os.path.join(paths.run, APPLIED), json.dumps(dict(done, applied=True), sort_keys=True).encode(),
                 0o644)
    say('firmvisor: state: applied in %.1f s (%s)' % (time.monotonic() - started + float(done.get('seconds', 0)),
                                                      'stateful' if folder else 'stateless'), paths)
    return 0


def state_folder(paths: Paths) -> Optional[str]:
    """The booted slot's folder on the mounted state partition; None when this boot is stateless."""
    mode, slot = booted(paths)
    if mode != 'slot' or not state_mounted(paths):
        return None
    return slot_folder(paths.state_mount, slot)


def save(paths: Paths, quiet: bool = False) -> int:
    folder = state_folder(paths)
    if folder is None:
        say('firmvisor: state: stateless boot (live, or no state partition): nothing saved', paths)
        return EXIT_STATELESS
    result = save_state(paths.root, folder, version=image_version(paths.root))
    note_saved(paths, result)
    if not quiet:
        say('firmvisor: state: saved %d entries to %s (%d bytes)' % (result['members'], result['path'],
                                                                     result['bytes']), paths)
        try:
            save_caps_cache(paths.root, paths.state_mount, os.uname().release)
        except OSError as exc:
            say('firmvisor: state: the capabilities cache was not saved: %s' % exc, paths)
    return 0


def watch(paths: Paths, interval: float = WATCH_INTERVAL, rounds: Optional[int] = None) -> int:
    """Save whenever what the state holds changes (checked every ``interval`` seconds), and once
    more when stopped (SIGTERM waits, blocked, until a save in progress is done). ``rounds`` bounds
    the loop for the tests."""
    if state_folder(paths) is None:
        say('firmvisor: state: stateless boot: nothing to watch', paths)
        return EXIT_STATELESS
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    say('firmvisor: state: saving every change within %.0f s' % interval, paths, console=False)
    stopped = False
    while not stopped and (rounds is None or rounds > 0):
        rounds = None if rounds is None else rounds - 1
        stopped = signal.sigtimedwait([signal.SIGTERM], interval) is not None
        current = fingerprint(paths.root, collect(paths.root, persisted_patterns(paths.root)))
        if current != read_text(os.path.join(paths.run, SAVED_FINGERPRINT)):
            with locked(paths):
                save(paths, quiet=True)
            say('firmvisor: state: a change saved', paths, console=False)
    return 0


def slot_status(folder: str) -> Dict[str, object]:
    info: Dict[str, object] = {'path': os.path.join(folder, CONFIG)}
    path, problems = newest_valid(folder)
    if path:
        manifest, members = read_state(path)
        info.update({'file': os.path.basename(path), 'entries': len(members), 'saved': manifest.get('saved'),
                     'saved_by_version': manifest.get('version')})
    info['problems'] = problems
    info['trial_starts_from'] = read_text(os.path.join(folder, START_FROM)).strip() or None
    return info


def status(paths: Paths) -> Dict:
    mode, slot = booted(paths)
    info: Dict[str, object] = {'mode': mode, 'slot': slot, 'version': image_version(paths.root),
                               'state_partition': find_partition(paths, PART_STATE),
                               'mounted': state_mounted(paths), 'slots': {}}
    if info['mounted']:
        info['slots'] = {each: slot_status(slot_folder(paths.state_mount, each)) for each in SLOTS
                         if os.path.isdir(slot_folder(paths.state_mount, each))}
    return info


def has(paths: Paths, rel: str) -> bool:
    """Whether the booted slot's newest saved state holds ``rel``."""
    folder = state_folder(paths)
    path = newest_valid(folder)[0] if folder else None
    if not path:
        return False
    _manifest, members = read_state(path)
    return _split(rel) in [_split(m.name) for m in members]


USAGE = 'usage: fv-state restore | apply | save | watch | status | has PATH'


def main(argv: Optional[Sequence[str]] = None, paths: Optional[Paths] = None) -> int:
    # No argparse: this runs on the boot's critical path, and under TCG every import counts.
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (['-h'], ['--help']):
        print(USAGE + '\n\n' + __doc__.strip())
        return 0
    if not args or args[0] not in ('restore', 'apply', 'save', 'watch', 'status', 'has') \
            or len(args) != (2 if args[0] == 'has' else 1):
        print(USAGE, file=sys.stderr)
        return 2
    command = args[0]
    paths = paths or Paths()
    try:
        if command == 'watch':
            return watch(paths)
        if command == 'has':
            return 0 if has(paths, args[1]) else 1
        with locked(paths):
            if command == 'restore':
                restore(paths)
                return 0
            if command == 'apply':
                return apply(paths)
            if command == 'save':
                return save(paths)
            print(json.dumps(status(paths), indent=2, sort_keys=True))
            return 0
    except (StateError, OSError) as exc:
        say('firmvisor: state: error: %s' % exc, paths)
        return 1


if __name__ == '__main__':
    sys.exit(main())
