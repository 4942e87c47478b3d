# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a provisioning run knows a server is up: its image (a built image's manifest), the console
line the image prints once its health gate passed, and SSH answering on the management address."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError

READY = 'firmvisor ready'
DISK, ISO, MANIFEST = 'firmvisor.img', 'firmvisor.iso', 'manifest.json'


@dataclass(frozen=True)
class Image:
    """A built image: its version and the disk (and ISO) with their digests."""
    version: str
    disk: str
    disk_sha256: str
    disk_size: int
    iso: Optional[str]

    @property
    def volume(self) -> str:
        """The name of the image's base volume in a pool: the same bytes, the same name."""
        return 'firmvisor-%s-%s.img' % (self.version, self.disk_sha256[:12])


def load_image(path: str) -> Image:
    """A built image from its directory or its manifest.json; its disk must be there."""
    manifest = os.path.join(path, MANIFEST) if os.path.isdir(path) else path
    folder = os.path.dirname(manifest)
    try:
        with open(manifest) as handle:
            data = json.load(handle)
        artifact = data['artifacts'][DISK]
        image = Image(str(data['version']), os.path.join(folder, DISK), artifact['sha256'], int(artifact['size']),
                      os.path.join(folder, ISO) if ISO in data['artifacts'] else None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FvError('image %s: not a built firmvisor image (its manifest.json cannot be read: %s)' % (path, exc))
    if not os.path.isfile(image.disk) or os.path.getsize(image.disk) != image.disk_size:
        raise FvError('image %s: %s is missing or not the size its manifest says (%d bytes)'
                      % (path, image.disk, image.disk_size))
    return image


def volume_version(name: Optional[str]) -> Optional[str]:
    """The image version a base volume's name carries (firmvisor-<version>-<digest>.img)."""
    if not name or not name.startswith('firmvisor-') or not name.endswith('.img'):
        return None
    return name[len('firmvisor-'):-len('.img')].rsplit('-', 1)[0]


def console_says(path: Optional[str], line: str = READY) -> bool:
    """Whether the console log (truncated at each start) has the line."""
    if not path:
        return False
    try:
        with open(path, 'rb') as handle:
            return line.encode() in handle.read()
    except OSError:
        return False


def ssh_answers(address: str, port: int, timeout: float = 5.0) -> bool:
    """Whether an SSH server greets on address:port. A QEMU port forward accepts connections even
    when nothing listens behind it, so the greeting is what counts, not the connection."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(64).startswith(b'SSH-')
    except OSError:
        return False


def free_port(address: str = '127.0.0.1') -> int:
    """A TCP port nothing listens on now, on ``address``."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])
