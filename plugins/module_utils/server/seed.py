# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A server's seed: who it is (hostname, authorized keys, management network, install disk), as
``seed.json`` on a small volume labelled FVSEED that the image's fv-state reads at first boot.

Two carriers, both built without mounting anything and byte-for-byte the same for the same seed:
an ISO 9660 image (xorriso) for a QEMU server's cdrom, and a 1.44 MB FAT floppy image (mkfs.fat
--invariant + mcopy) for a BMC's Floppy/USBStick virtual media slot. ``ensure_seed_image`` keeps a
digest beside the image and rebuilds only when the seed (or the carrier format) changed.

The keys and rules are the image's (fvstate.parse_seed); this module refuses what the image would
only warn about and replace by a default, so that a mistake fails the task instead of leaving a host
nobody can log in to.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError

SEED_LABEL = 'FVSEED'
SEED_FILE = 'seed.json'
SEED_KEYS = ('hostname', 'authorized_keys', 'network', 'install_to', 'install_force')
FORMATS = ('iso', 'floppy')
# Fixed timestamps (2025-01-01) so the same seed gives the same bytes.
EPOCH = 1735689600
FLOPPY_KIB = 1440
# Bump when the bytes a format produces change for the same seed (a new digest rebuilds old images).
FORMAT_VERSION = 1

HOSTNAME_RE = re.compile(r'^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)'
                         r'(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$')
KEY_RE = re.compile(r'^(?:[a-z0-9-]+(?:="[^"]*")?(?:,[a-z0-9-]+(?:="[^"]*")?)* )?'
                    r'(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|'
                    r'sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)(-cert-v01@openssh\.com)? '
                    r'[A-Za-z0-9+/]+={0,3}( [^\r\n]*)?$')
DEVICE_RE = re.compile(r'^/dev/[A-Za-z0-9._/:-]+$')


def build_seed(hostname: str, ssh_authorized_keys: Sequence[str], network: Optional[Mapping[str, Any]] = None,
               install_to: Optional[str] = None, install_force: bool = False) -> Dict[str, Any]:
    """The seed document, validated and normalized (keys in the image's form). FvError names the
    field and what is wrong with it."""
    if not isinstance(hostname, str) or not HOSTNAME_RE.match(hostname):
        raise FvError('seed: hostname %r is not a valid host name (letters, digits, hyphens; dots between labels)'
                      % (hostname,))
    if isinstance(ssh_authorized_keys, str):
        ssh_authorized_keys = [line for line in ssh_authorized_keys.splitlines() if line.strip()]
    keys: List[str] = []
    for index, key in enumerate(ssh_authorized_keys or []):
        if not isinstance(key, str) or not KEY_RE.match(key.strip()):
            raise FvError('seed: ssh_authorized_keys[%d] is not an SSH public key line (%s)'
                          % (index, _abbrev(key)))
        if key.strip() not in keys:
            keys.append(key.strip())
    if not keys:
        raise FvError('seed: ssh_authorized_keys is empty: nobody could log in to %s' % hostname)
    seed: Dict[str, Any] = {'hostname': hostname, 'authorized_keys': keys, 'network': normalize_network(network)}
    if install_to is not None:
        if not isinstance(install_to, str) or not DEVICE_RE.match(install_to) or '..' in install_to:
            raise FvError('seed: install_to must be a device path such as /dev/sda, not %r' % (install_to,))
        seed['install_to'] = install_to
    if not isinstance(install_force, bool):
        raise FvError('seed: install_force must be true or false, not %r' % (install_force,))
    if install_force:
        if install_to is None:
            raise FvError('seed: install_force without install_to means nothing')
        seed['install_force'] = True
    return seed


def normalize_network(network: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """{'mode': 'dhcp'} or {'mode': 'static', 'address': 'a.b.c.d/p', 'gateway'?, 'dns': [...]}."""
    if network is None:
        return {'mode': 'dhcp'}
    if not isinstance(network, Mapping):
        raise FvError('seed: network must be a mapping, not %s' % type(network).__name__)
    unknown = sorted(set(network) - {'mode', 'address', 'gateway', 'dns'})
    if unknown:
        raise FvError('seed: network: unknown key(s) %s (known: mode, address, gateway, dns)' % ', '.join(unknown))
    mode = network.get('mode') or ('static' if network.get('address') else 'dhcp')
    if mode == 'dhcp':
        extra = [k for k in ('address', 'gateway', 'dns') if network.get(k)]
        if extra:
            raise FvError('seed: network mode dhcp takes no %s' % ', '.join(extra))
        return {'mode': 'dhcp'}
    if mode != 'static':
        raise FvError('seed: network mode must be dhcp or static, not %r' % (mode,))
    address = network.get('address')
    try:
        if not isinstance(address, str) or '/' not in address:
            raise ValueError
        interface = ipaddress.ip_interface(address)
    except ValueError:
        raise FvError('seed: network address must be an address with a prefix such as 192.0.2.10/24, not %r'
                      % (address,)) from None
    result: Dict[str, Any] = {'mode': 'static', 'address': str(interface)}
    gateway = network.get('gateway')
    if gateway is not None:
        try:
            gateway_ip = ipaddress.ip_address(gateway) if isinstance(gateway, str) else None
        except ValueError:
            gateway_ip = None
        if gateway_ip is None:
            raise FvError('seed: network gateway must be an IP address, not %r' % (gateway,))
        if gateway_ip.version != interface.version:
            raise FvError('seed: network gateway %s is not of the address family of %s' % (gateway, address))
        result['gateway'] = str(gateway_ip)
    dns = network.get('dns') or []
    if isinstance(dns, str):
        dns = [dns]
    try:
        result['dns'] = [str(ipaddress.ip_address(d)) for d in dns if isinstance(d, str)]
        if len(result['dns']) != len(dns):
            raise ValueError
    except ValueError:
        raise FvError('seed: network dns must be a list of IP addresses, not %r' % (dns,)) from None
    return result


def seed_json(seed: Mapping[str, Any]) -> bytes:
    """seed.json as the image reads it; canonical (sorted keys), so the same seed gives the same bytes."""
    unknown = sorted(set(seed) - set(SEED_KEYS))
    if unknown:
        raise FvError('seed: unknown key(s) %s' % ', '.join(unknown))
    return (json.dumps(dict(seed), indent=2, sort_keys=True) + '\n').encode('utf-8')


def seed_digest(seed: Mapping[str, Any], fmt: str) -> str:
    """sha256 over the carrier format (and its version) and seed.json: what decides a rebuild."""
    _check_format(fmt)
    digest = hashlib.sha256()
    digest.update(b'firmvisor-seed %s %d\n' % (fmt.encode(), FORMAT_VERSION))
    digest.update(seed_json(seed))
    return digest.hexdigest()


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise FvError('seed: format %r: expected one of %s' % (fmt, ', '.join(FORMATS)))


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or next((p for p in ('/usr/sbin/' + name, '/sbin/' + name) if os.path.exists(p)), None)
    if not path:
        raise FvError('seed: %s is not installed (Debian package %s)' % (name, package))
    return path


def _run(argv: List[str], what: str) -> None:
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH), LC_ALL='C', MTOOLS_SKIP_CHECK='1')
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).decode('utf-8', 'replace').strip().splitlines()
        raise FvError('seed: %s failed (%s exited %d): %s' % (what, os.path.basename(argv[0]), result.returncode,
                                                              output[-1] if output else 'no output'))


def write_seed_iso(seed: Mapping[str, Any], dest: str) -> None:
    """An ISO 9660 (Joliet + Rock Ridge) image labelled FVSEED holding seed.json, at ``dest``."""
    xorriso = _tool('xorriso', 'xorriso')
    with tempfile.TemporaryDirectory(prefix='fvseed-') as work:
        tree = os.path.join(work, 'tree')
        os.mkdir(tree)
        _write_source(tree, seed)
        os.utime(tree, (EPOCH, EPOCH))
        _run([xorriso, '-as', 'mkisofs', '-quiet', '-V', SEED_LABEL, '-J', '-r', '-o', dest, tree],
             'building the seed ISO %s' % dest)


def write_seed_floppy(seed: Mapping[str, Any], dest: str) -> None:
    """A 1.44 MB FAT12 floppy image labelled FVSEED holding seed.json, at ``dest`` (no mounts)."""
    mkfs = _tool('mkfs.fat', 'dosfstools')
    mcopy = _tool('mcopy', 'mtools')
    data = seed_json(seed)
    if len(data) > 1024 * 1024:
        raise FvError('seed: seed.json is %d bytes, too large for a floppy' % len(data))
    with tempfile.TemporaryDirectory(prefix='fvseed-') as work:
        source = _write_source(work, seed)
        _unlink(dest)  # mkfs.fat -C refuses an existing file
        _run([mkfs, '-C', '-n', SEED_LABEL, '--invariant', dest, str(FLOPPY_KIB)],
             'formatting the seed floppy %s' % dest)
        _run([mcopy, '-m', '-i', dest, source, '::' + SEED_FILE], 'copying seed.json onto %s' % dest)


def _write_source(directory: str, seed: Mapping[str, Any]) -> str:
    path = os.path.join(directory, SEED_FILE)
    with open(path, 'wb') as handle:
        handle.write(seed_json(seed))
    os.chmod(path, 0o644)
    os.utime(path, (EPOCH, EPOCH))
    return path


WRITERS = {'iso': write_seed_iso, 'floppy': write_seed_floppy}


def digest_file(dest: str) -> str:
    return dest + '.sha256'


def current_digest(dest: str) -> Optional[str]:
    """The digest recorded beside ``dest`` when both exist, else None."""
    try:
        if not os.path.isfile(dest):
            return None
        with open(digest_file(dest)) as handle:
            return handle.read().split()[0]
    except (OSError, IndexError):
        return None


def needs_rebuild(seed: Mapping[str, Any], dest: str, fmt: str) -> bool:
    return current_digest(dest) != seed_digest(seed, fmt)


def ensure_seed_image(seed: Mapping[str, Any], dest: str, fmt: str, check_mode: bool = False) -> Tuple[bool, str]:
    """Build the seed image ``fmt`` at ``dest`` unless the digest beside it says it holds this very
    seed. Returns (changed, digest). The image is built beside ``dest`` and renamed over it, so a
    reader never sees half an image; the digest file is written last."""
    digest = seed_digest(seed, fmt)
    if current_digest(dest) == digest:
        return False, digest
    if check_mode:
        return True, digest
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        raise FvError('seed: directory %s does not exist' % directory)
    fd, temp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(dest), dir=directory)
    os.close(fd)
    try:
        # a stale digest must not vouch for a half-built image
        _unlink(digest_file(dest))
        WRITERS[fmt](seed, temp)
        os.chmod(temp, 0o644)
        os.replace(temp, dest)
        with open(digest_file(dest) + '.tmp', 'w') as handle:
            handle.write('%s  %s\n' % (digest, os.path.basename(dest)))
        os.replace(digest_file(dest) + '.tmp', digest_file(dest))
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return True, digest


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _abbrev(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + '...'
