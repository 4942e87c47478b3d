# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""assemble.py: write the firmvisor GPT disk (docs/image.md) from its pieces, and check it.

Standard library only: it runs on the build machine and, as part of the installer, on the
hypervisor itself. No loop devices and no mounts: the partition table is computed here, the boot
partition is a FAT file made with mkfs.vfat and filled with mtools, the state partition an ext4 file
made with ``mkfs.ext4 -d``, and the pieces are written at their offsets.

    assemble.py disk --out PATH --core core.img --boot-img boot.img --efi BOOTX64.EFI
                     --grub-cfg grub.cfg --kernel vmlinuz --initrd initrd.img --slot-a root.squashfs
                     [--version V] [--slot-b SQUASHFS --kernel-b K --initrd-b I [--version-b V]]
                     [--report REPORT.json] [--device [--no-verify]] [--unique] [--state-file NAME=PATH]
        PATH is a file (written beside, then renamed; sparse) or, with --device, a whole block device:
        its old partition tables are wiped first and the new ones written last, after everything
        else, so that a write cut short does not look like a disk to boot (read back and verified
        after writing, unless --no-verify). --unique gives the disk its own GUIDs (an install: two
        disks in one machine never share them); --state-file puts a file on the state partition (the
        installer's seed).
    assemble.py verify --device PATH --report REPORT.json
    assemble.py verify --device PATH --expect-sha256 HEX [--offset BYTES] [--length BYTES]
        read back what ``disk`` wrote and compare sha256 digests (exit 1 on a mismatch).
    assemble.py table [--size BYTES] [--version V] [--guid-of NAME]
        the partition table as JSON (or one partition's GUID, lower case, as GRUB's probe prints it)
    assemble.py env --disk PATH [--set NAME=VALUE ...]   show or edit /grub/grubenv inside a disk image

The same inputs give the same bytes: GUIDs derive from the version (unless --unique), the FAT volume id
and the ext4 UUIDs are fixed, and every timestamp is SOURCE_DATE_EPOCH (default 2025-01-01). Each slot
written gets /slots/<slot>/manifest.json (its pieces' sha256) and, last, /slots/<slot>/version: a slot
is valid while its version exists (docs/image.md, fvslot).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from fvlib import (BOOT_LABEL, CHUNK, DEFAULT_TRIES, PART_BIOS, PART_BOOT, PART_SLOT, PART_STATE,
                   SECTOR, SLOTS, STATE_LABEL, HostError, device_size, format_grubenv, is_block_device,
                   parse_grubenv, run, sha256_file)

MIB = 1 << 20
ALIGN = MIB
DEFAULT_EPOCH = 1735689600
NAMESPACE = uuid.UUID('7c3f4a52-5d0e-4c55-9c61-6669726d7669')  # firmvisor's GUID namespace

TYPE_BIOS = uuid.UUID('21686148-6449-6E6F-744E-656564454649')
TYPE_ESP = uuid.UUID('C12A7328-F81F-11D2-BA4B-00A0C93EC93B')
TYPE_LINUX = uuid.UUID('0FC63DAF-8483-4772-8E79-3D69D8477DE4')

# docs/image.md: name, type, size; in this order, 1 MiB aligned.
LAYOUT: Tuple[Tuple[str, uuid.UUID, int], ...] = (
    (PART_BIOS, TYPE_BIOS, 1 * MIB),
    (PART_BOOT, TYPE_ESP, 128 * MIB),
    (PART_SLOT['A'], TYPE_LINUX, 640 * MIB),
    (PART_SLOT['B'], TYPE_LINUX, 640 * MIB),
    (PART_STATE, TYPE_LINUX, 128 * MIB),
)
ESP_LABEL, ESP_VOLUME_ID = BOOT_LABEL, '46564254'

GPT_ENTRIES, GPT_ENTRY_SIZE = 128, 128
GPT_ENTRY_SECTORS = GPT_ENTRIES * GPT_ENTRY_SIZE // SECTOR  # 32
GPT_HEADER_SIZE = 92

# GRUB i386-pc offsets (include/grub/i386/pc/boot.h, grub-core/boot/i386/pc/boot.S, diskboot.S,
# util/setup.c).
BOOT_CODE_SIZE = 440            # MBR boot code; 0x1b8 on is the disk signature and partition table
BOOT_KERNEL_SECTOR = 0x5c       # boot.img: LBA of core.img's first sector, 8 bytes LE
BOOT_DRIVE = 0x64               # boot.img: 0xff = use the drive the BIOS booted from
BOOT_DRIVE_CHECK = 0x66         # boot.img: a short jmp grub-setup replaces by two nops on hard disks
CORE_BLOCKLIST = SECTOR - 12    # core.img (diskboot.img): first blocklist: start u64, len u16, seg u16
CORE_SEGMENT = 0x820            # GRUB_BOOT_I386_PC_KERNEL_SEG (0x800) + 512 >> 4
CORE_MAX = 448 * 1024           # loaded at 0x8000 in real mode: keep well below 640 KiB

BLKSSZGET = 0x1268
BLKFLSBUF = 0x1261
BLKRRPART = 0x125f


# One error type for every host tool (fvlib); the name says whose it is.
ImageError = HostError


def log(message: str) -> None:
    print('image: %s' % message, flush=True)


# ---- partition table (pure) -------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    number: int
    name: str
    type_guid: uuid.UUID
    guid: uuid.UUID
    first_lba: int
    last_lba: int

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


@dataclass(frozen=True)
class Table:
    disk_guid: uuid.UUID
    size: int                      # bytes of the whole disk
    partitions: Tuple[Partition, ...]

    @property
    def sectors(self) -> int:
        return self.size // SECTOR

    @property
    def first_usable(self) -> int:
        return 2 + GPT_ENTRY_SECTORS

    @property
    def last_usable(self) -> int:
        return self.sectors - 2 - GPT_ENTRY_SECTORS

    def by_name(self, name: str) -> Partition:
        for part in self.partitions:
            if part.name == name:
                return part
        raise KeyError(name)

    def as_dict(self) -> Dict[str, object]:
        return {
            'label': 'gpt', 'sector_size': SECTOR, 'size': self.size, 'disk_guid': str(self.disk_guid).upper(),
            'first_usable_lba': self.first_usable, 'last_usable_lba': self.last_usable,
            'partitions': [{
                'number': p.number, 'name': p.name, 'type': str(p.type_guid).upper(), 'guid': str(p.guid).upper(),
                'first_lba': p.first_lba, 'last_lba': p.last_lba, 'offset': p.offset, 'size': p.size,
            } for p in self.partitions],
        }


def guids(version: str, unique: bool = False) -> Tuple[uuid.UUID, Dict[str, uuid.UUID]]:
    """The disk GUID and the partition GUIDs: fixed for a version, so the same inputs give the same
    disk; with ``unique``, random (an install)."""
    if unique:
        return uuid.uuid4(), {name: uuid.uuid4() for name, _type, _size in LAYOUT}
    disk = uuid.uuid5(NAMESPACE, 'firmvisor/%s/disk' % version)
    return disk, {name: uuid.uuid5(NAMESPACE, 'firmvisor/%s/%s' % (version, name)) for name, _type, _size in LAYOUT}


def min_disk_size() -> int:
    """The smallest disk that holds the layout: 1 MiB in front, the partitions, 1 MiB behind."""
    return ALIGN + sum(size for _name, _type, size in LAYOUT) + ALIGN


def plan_table(size: Optional[int] = None, version: str = '0.0.0', unique: bool = False) -> Table:
    """The partition table of a disk of ``size`` bytes (default: the smallest that fits)."""
    size = min_disk_size() if size is None else size
    if size % SECTOR:
        raise ImageError('disk size %d is not a multiple of %d' % (size, SECTOR))
    if size < min_disk_size():
        raise ImageError('disk of %d MiB is too small: the layout needs %d MiB' % (size // MIB, min_disk_size() // MIB))
    disk_guid, part_guids = guids(version, unique)
    parts = []
    lba = ALIGN // SECTOR
    for number, (name, type_guid, part_size) in enumerate(LAYOUT, start=1):
        count = part_size // SECTOR
        parts.append(Partition(number, name, type_guid, part_guids[name], lba, lba + count - 1))
        lba += count
    table = Table(disk_guid, size, tuple(parts))
    if parts[-1].last_lba > table.last_usable:
        raise ImageError('the layout does not fit before the backup GPT')
    return table


def protective_mbr(table: Table, boot_code: bytes = b'') -> bytes:
    """Sector 0: boot code (at most 440 bytes), one 0xEE partition over the disk, 0x55AA."""
    if len(boot_code) > BOOT_CODE_SIZE:
        raise ImageError('MBR boot code is %d bytes, at most %d fit' % (len(boot_code), BOOT_CODE_SIZE))
    entry = struct.pack('<B3sB3sII', 0, b'\x00\x02\x00', 0xEE, b'\xff\xff\xff', 1,
                        min(table.sectors - 1, 0xFFFFFFFF))
    mbr = bytearray(SECTOR)
    mbr[:len(boot_code)] = boot_code
    mbr[0x1be:0x1be + 16] = entry
    mbr[0x1fe:0x200] = b'\x55\xaa'
    return bytes(mbr)


def gpt_entries(table: Table) -> bytes:
    data = bytearray(GPT_ENTRIES * GPT_ENTRY_SIZE)
    for index, part in enumerate(table.partitions):
        name = part.name.encode('utf-16-le')
        if len(name) > 72:
            raise ImageError('partition name %r is too long' % part.name)
        data[index * GPT_ENTRY_SIZE:(index + 1) * GPT_ENTRY_SIZE] = struct.pack(
            '<16s16sQQQ72s', part.type_guid.bytes_le, part.guid.bytes_le, part.first_lba, part.last_lba, 0, name)
    return bytes(data)


def gpt_header(table: Table, entries: bytes, backup: bool) -> bytes:
    current, other = (table.sectors - 1, 1) if backup else (1, table.sectors - 1)
    entries_lba = table.sectors - 1 - GPT_ENTRY_SECTORS if backup else 2
    fields = [b'EFI PART', 0x00010000, GPT_HEADER_SIZE, 0, 0, current, other, table.first_usable,
              table.last_usable, table.disk_guid.bytes_le, entries_lba, GPT_ENTRIES, GPT_ENTRY_SIZE,
              zlib.crc32(entries)]
    fmt = '<8sIIIIQQQQ16sQIII'
    header = struct.pack(fmt, *fields)
    fields[3] = zlib.crc32(header)
    header = struct.pack(fmt, *fields)
    return header + bytes(SECTOR - len(header))


def gpt_primary(table: Table, boot_code: bytes = b'') -> bytes:
    """LBA 0 to 33: the protective MBR, the primary header and the entries."""
    entries = gpt_entries(table)
    return protective_mbr(table, boot_code) + gpt_header(table, entries, backup=False) + entries


def gpt_backup(table: Table) -> bytes:
    """The last 33 sectors: the entries again and the backup header."""
    entries = gpt_entries(table)
    return entries + gpt_header(table, entries, backup=True)


def parse_gpt(head: bytes, sector_size: int = SECTOR, entries_lba: Optional[int] = None) -> Dict[str, object]:
    """Read a GPT back from the first 34 sectors (for checks and tests); raises on a bad CRC. With
    ``entries_lba``, the entries are at that sector of ``head`` whatever the header says (a backup
    GPT laid out as a primary one)."""
    header = head[sector_size:sector_size + GPT_HEADER_SIZE]
    (signature, revision, size, crc, _unused, current, backup, first, last, disk, header_entries_lba, count, entry_size,
     entries_crc) = struct.unpack('<8sIIIIQQQQ16sQIII', header)
    entries_lba = header_entries_lba if entries_lba is None else entries_lba
    if signature != b'EFI PART':
        raise ImageError('no GPT header')
    if zlib.crc32(header[:16] + b'\0\0\0\0' + header[20:size]) != crc:
        raise ImageError('GPT header CRC mismatch')
    entries = head[entries_lba * sector_size:entries_lba * sector_size + count * entry_size]
    if zlib.crc32(entries) != entries_crc:
        raise ImageError('GPT entries CRC mismatch')
    parts = []
    for index in range(count):
        raw = entries[index * entry_size:(index + 1) * entry_size]
        type_le, guid_le, first_lba, last_lba, attributes, name = struct.unpack('<16s16sQQQ72s', raw[:128])
        if type_le == bytes(16):
            continue
        parts.append({'number': index + 1, 'type': str(uuid.UUID(bytes_le=type_le)).upper(),
                      'guid': str(uuid.UUID(bytes_le=guid_le)).upper(), 'first_lba': first_lba,
                      'last_lba': last_lba, 'attributes': attributes,
                      'name': name.decode('utf-16-le').rstrip('\0')})
    return {'revision': revision, 'current_lba': current, 'backup_lba': backup, 'first_usable_lba': first,
            'last_usable_lba': last, 'disk_guid': str(uuid.UUID(bytes_le=disk)).upper(), 'partitions': parts}


# ---- GRUB for BIOS (pure) ---------------------------------------------------------------------------
def patch_boot_img(boot_img: bytes, core_lba: int) -> bytes:
    """The 440 bytes of MBR boot code: GRUB's boot.img loading core.img from ``core_lba``.

    What grub-setup does for a hard disk: kernel_sector = core.img's first LBA, boot_drive = 0xff
    (the drive the BIOS booted from), and the floppy-check jump replaced by two nops.
    """
    if len(boot_img) != SECTOR or boot_img[0x1fe:0x200] != b'\x55\xaa':
        raise ImageError('boot.img is not a 512-byte GRUB boot sector')
    code = bytearray(boot_img[:BOOT_CODE_SIZE])
    struct.pack_into('<Q', code, BOOT_KERNEL_SECTOR, core_lba)
    code[BOOT_DRIVE] = 0xff
    if code[BOOT_DRIVE_CHECK] == 0xeb:
        code[BOOT_DRIVE_CHECK:BOOT_DRIVE_CHECK + 2] = b'\x90\x90'
    elif code[BOOT_DRIVE_CHECK:BOOT_DRIVE_CHECK + 2] != b'\x90\x90':
        raise ImageError('boot.img has no drive-check jump at 0x%x: not GRUB 2 boot.img?' % BOOT_DRIVE_CHECK)
    return bytes(code)


def patch_core_img(core_img: bytes, core_lba: int) -> bytes:
    """core.img placed at ``core_lba``: its first blocklist names the rest of it (sectors after the first)."""
    if len(core_img) < 2 * SECTOR:
        raise ImageError('core.img is too small (%d bytes)' % len(core_img))
    if len(core_img) > CORE_MAX:
        raise ImageError('core.img is %d bytes; at most %d load below 640 KiB' % (len(core_img), CORE_MAX))
    sectors = -(-len(core_img) // SECTOR)
    core = bytearray(core_img + bytes(sectors * SECTOR - len(core_img)))
    _start, _length, segment = struct.unpack_from('<QHH', core, CORE_BLOCKLIST)
    if segment != CORE_SEGMENT:
        raise ImageError('core.img has no i386-pc diskboot blocklist (segment 0x%x)' % segment)
    if struct.unpack_from('<H', core, CORE_BLOCKLIST - 12 + 8)[0] != 0:
        raise ImageError('core.img: the blocklist after the first one is not empty')
    struct.pack_into('<QHH', core, CORE_BLOCKLIST, core_lba + 1, sectors - 1, CORE_SEGMENT)
    return bytes(core)


# ---- GRUB environment block (fvlib has its format) --------------------------------------------------
INITIAL_ENV = {'fv_active': 'A', 'fv_next': '', 'fv_tries_A': str(DEFAULT_TRIES), 'fv_tries_B': '0'}


def initial_grubenv() -> bytes:
    """Slot A known good with its tries, slot B with none (and invalid until it is written)."""
    return format_grubenv(INITIAL_ENV)


# ---- file systems -----------------------------------------------------------------------------------
def epoch() -> int:
    try:
        return int(os.environ.get('SOURCE_DATE_EPOCH', DEFAULT_EPOCH))
    except ValueError:
        return DEFAULT_EPOCH


def _tool_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.update({'SOURCE_DATE_EPOCH': str(epoch()), 'E2FSPROGS_FAKE_TIME': str(epoch()),
                'MTOOLS_SKIP_CHECK': '1', 'MTOOLS_NO_VFAT': '0', 'LC_ALL': 'C', 'TZ': 'UTC'})
    return env


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess:
    return run(argv, check=True, env=_tool_env())


def make_fat(path: str, size: int, label: str, volume_id: str, hidden_sectors: int,
             files: Dict[str, object], dirs: Iterable[str] = ()) -> None:
    """A FAT32 file system image in ``path``: ``files`` maps FAT paths to a source path or bytes."""
    with open(path, 'wb') as handle:
        handle.truncate(size)
    _run(['mkfs.vfat', '-F', '32', '-S', str(SECTOR), '--invariant', '-i', volume_id, '-n', label,
          '-h', str(hidden_sectors), '--mbr=n', path])
    wanted = set()
    for folder in list(dirs) + [os.path.dirname(name) for name in files]:
        while folder not in ('', '/'):
            wanted.add(folder)
            folder = os.path.dirname(folder)
    for folder in sorted(wanted, key=lambda f: (f.count('/'), f)):
        _run(['mmd', '-i', path, '::' + folder])
    with tempfile.TemporaryDirectory(prefix='fv-fat-') as temp:
        for name in sorted(files):
            source = files[name]
            if isinstance(source, (bytes, bytearray)):
                data_path = os.path.join(temp, 'data')
                with open(data_path, 'wb') as handle:
                    handle.write(source)
                source = data_path
            _run(['mcopy', '-i', path, '-D', 'o', str(source), '::' + name])


def make_ext4(path: str, size: int, label: str, version: str, unique: bool = False,
              files: Optional[Dict[str, str]] = None) -> None:
    """An ext4 file system image in ``path`` with fixed UUIDs (random when ``unique``) and times,
    holding ``files`` (name on it → path here) or nothing."""
    if unique:
        fs_uuid, seed = uuid.uuid4(), uuid.uuid4()
    else:
        fs_uuid = uuid.uuid5(NAMESPACE, 'firmvisor/%s/state-fs' % version)
        seed = uuid.uuid5(NAMESPACE, 'firmvisor/%s/state-hash' % version)
    with open(path, 'wb') as handle:
        handle.truncate(size)
    with tempfile.TemporaryDirectory(prefix='fv-state-') as content:
        os.chmod(content, 0o755)
        for name, source in sorted((files or {}).items()):
            target = os.path.join(content, name)
            with open(source, 'rb') as src, open(target, 'wb') as dst:
                dst.write(src.read())
            os.chmod(target, 0o600)
            os.utime(target, (epoch(), epoch()))
        os.utime(content, (epoch(), epoch()))
        _run(['mkfs.ext4', '-q', '-F', '-L', label, '-U', str(fs_uuid), '-b', '4096',
              '-E', 'hash_seed=%s,root_owner=0:0,nodiscard' % seed, '-d', content, path])


def slot_manifest(slot: Dict[str, str]) -> bytes:
    """/slots/<slot>/manifest.json: the slot's pieces as fvslot verifies them."""
    manifest = {'version': slot['version'],
                'squashfs': {'size': os.path.getsize(slot['squashfs']), 'sha256': sha256_file(slot['squashfs'])},
                'kernel': {'sha256': sha256_file(slot['kernel'])}, 'initrd': {'sha256': sha256_file(slot['initrd'])}}
    return (json.dumps(manifest, indent=2, sort_keys=True) + '\n').encode()


def esp_files(grub_cfg: str, efi: str, slots: Dict[str, Dict[str, str]]) -> Tuple[Dict[str, object], List[str]]:
    """The boot partition's files (a slot is valid while its version exists: a slot written here has one)."""
    files: Dict[str, object] = {
        '/EFI/BOOT/BOOTX64.EFI': efi,
        '/grub/grub.cfg': grub_cfg,
        '/grub/grubenv': initial_grubenv(),
    }
    for slot, pieces in slots.items():
        files['/slots/%s/vmlinuz' % slot] = pieces['kernel']
        files['/slots/%s/initrd.img' % slot] = pieces['initrd']
        files['/slots/%s/manifest.json' % slot] = slot_manifest(pieces)
        files['/slots/%s/version' % slot] = (pieces['version'] + '\n').encode()
    return files, ['/slots/%s' % slot for slot in SLOTS]


# ---- regions: what goes where -----------------------------------------------------------------------
@dataclass
class Region:
    """``length`` bytes at ``offset`` of the disk, from ``data`` or from the file ``path``."""
    name: str
    offset: int
    length: int
    data: Optional[bytes] = None
    path: Optional[str] = None
    sha256: str = ''

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            for start in range(0, self.length, CHUNK):
                yield self.data[start:start + CHUNK]
            return
        with open(self.path, 'rb') as handle:
            remaining = self.length
            while remaining:
                block = handle.read(min(CHUNK, remaining))
                if not block:
                    raise ImageError('%s: shorter than %d bytes' % (self.path, self.length))
                remaining -= len(block)
                yield block


@dataclass
class Pieces:
    core: str
    boot_img: str
    efi: str
    grub_cfg: str
    kernel: str
    initrd: str
    slot_a: str
    version: str = '0.0.0'
    slot_b: Optional[str] = None
    kernel_b: Optional[str] = None
    initrd_b: Optional[str] = None
    version_b: Optional[str] = None
    unique: bool = False
    state_files: Dict[str, str] = field(default_factory=dict)


def _read(path: str) -> bytes:
    with open(path, 'rb') as handle:
        return handle.read()


def build_regions(pieces: Pieces, table: Table, workdir: str) -> List[Region]:
    """Every byte range the disk needs, in disk order; FAT and ext4 images are made in ``workdir``."""
    bios, esp = table.by_name(PART_BIOS), table.by_name(PART_BOOT)
    slot_a, slot_b, state = table.by_name(PART_SLOT['A']), table.by_name(PART_SLOT['B']), table.by_name(PART_STATE)

    boot_code = patch_boot_img(_read(pieces.boot_img), bios.first_lba)
    core = patch_core_img(_read(pieces.core), bios.first_lba)
    if len(core) > bios.size:
        raise ImageError('core.img (%d bytes) does not fit fvbios (%d bytes)' % (len(core), bios.size))
    head = gpt_primary(table, boot_code)
    head += bytes(bios.offset - len(head))

    slots = {'A': {'kernel': pieces.kernel, 'initrd': pieces.initrd, 'version': pieces.version,
                   'squashfs': pieces.slot_a}}
    if pieces.kernel_b or pieces.initrd_b:
        if not (pieces.kernel_b and pieces.initrd_b):
            raise ImageError('slot B needs both --kernel-b and --initrd-b')
        if not pieces.slot_b:
            raise ImageError('slot B needs --slot-b with its kernel and initrd')
        slots['B'] = {'kernel': pieces.kernel_b, 'initrd': pieces.initrd_b,
                      'version': pieces.version_b or pieces.version, 'squashfs': pieces.slot_b}
    for slot in slots.values():
        for name in ('kernel', 'initrd'):
            if not os.path.isfile(slot[name]):
                raise ImageError('%s: no such file' % slot[name])
    files, dirs = esp_files(pieces.grub_cfg, pieces.efi, slots)
    log('boot partition: FAT32 %s, %d MiB (GRUB, grub.cfg, grubenv fv_active=A, slot%s %s)'
        % (ESP_LABEL, esp.size // MIB, 's' if len(slots) > 1 else '', ' '.join(sorted(slots))))
    esp_path = os.path.join(workdir, 'esp.img')
    make_fat(esp_path, esp.size, ESP_LABEL, ESP_VOLUME_ID, esp.first_lba, files, dirs)

    log('state partition: ext4 %s, %d MiB, empty' % (STATE_LABEL, state.size // MIB))
    state_path = os.path.join(workdir, 'state.img')
    make_ext4(state_path, state.size, STATE_LABEL, pieces.version, pieces.unique, pieces.state_files)

    regions = [
        Region('head', 0, len(head), data=head),
        Region(PART_BIOS, bios.offset, bios.size, data=core + bytes(bios.size - len(core))),
        Region(PART_BOOT, esp.offset, esp.size, path=esp_path),
    ]
    for part, squashfs in ((slot_a, pieces.slot_a), (slot_b, pieces.slot_b)):
        if squashfs:
            size = os.path.getsize(squashfs)
            if size > part.size:
                raise ImageError('%s (%d MiB) does not fit %s (%d MiB)' % (squashfs, size >> 20, part.name,
                                                                           part.size >> 20))
            regions.append(Region(part.name, part.offset, size, path=squashfs))
        else:
            # An empty slot: its first MiB zeroed, so no old file system is found there.
            regions.append(Region(part.name, part.offset, MIB, data=bytes(MIB)))
    regions.append(Region(PART_STATE, state.offset, state.size, path=state_path))
    tail = gpt_backup(table)
    regions.append(Region('gpt-backup', table.size - len(tail), len(tail), data=tail))
    return regions


def digest_chunks(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for block in chunks:
        digest.update(block)
    return digest.hexdigest()


# ---- devices ----------------------------------------------------------------------------------------
def logical_sector_size(path: str) -> int:
    if not is_block_device(path):
        return SECTOR
    with open(path, 'rb') as handle:
        return struct.unpack('<i', fcntl.ioctl(handle.fileno(), BLKSSZGET, b'\0' * 4))[0]


def _drop_cache(handle) -> None:
    """Forget the cached pages so that a read-back reads the medium."""
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    with contextlib.suppress(OSError):
        fcntl.ioctl(handle.fileno(), BLKFLSBUF, 0)


def write_regions(handle, regions: Sequence[Region], sparse: bool) -> None:
    """Write every region at its offset (skipping zero chunks into a fresh ``sparse`` file), taking
    the sha256 of what is written on the way: each source is read once."""
    for region in regions:
        handle.seek(region.offset)
        digest = hashlib.sha256()
        for block in region.chunks():
            digest.update(block)
            if sparse and block.count(0) == len(block):
                handle.seek(len(block), os.SEEK_CUR)
            else:
                handle.write(block)
        region.sha256 = digest.hexdigest()
        log('wrote %-10s %6d MiB at %6d MiB  sha256 %s'
            % (region.name, -(-region.length // MIB), region.offset // MIB, region.sha256[:16]))


def read_region(path: str, offset: int, length: int) -> str:
    with open(path, 'rb') as handle:
        _drop_cache(handle)
        handle.seek(offset)
        digest = hashlib.sha256()
        remaining = length
        while remaining:
            block = handle.read(min(CHUNK, remaining))
            if not block:
                raise ImageError('%s: ends before byte %d' % (path, offset + length))
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def verify_regions(path: str, regions: Iterable[Dict[str, object]]) -> List[str]:
    """Read every region back from ``path``; the names of those whose sha256 differs."""
    bad = []
    for region in regions:
        got = read_region(path, int(region['offset']), int(region['length']))
        ok = got == region['sha256']
        outcome = 'ok' if ok else 'MISMATCH (%s, expected %s)' % (got, region['sha256'])
        log('verify %-10s %s' % (region['name'], outcome))
        if not ok:
            bad.append(str(region['name']))
    return bad


_ZEROS = bytes(CHUNK)


def _sparse_chunks(handle) -> Iterator[bytes]:
    """The whole file in chunks; holes (SEEK_HOLE) are zeros without reading them."""
    size = handle.seek(0, os.SEEK_END)
    position = 0
    while position < size:
        try:
            data = os.lseek(handle.fileno(), position, os.SEEK_DATA)
        except OSError:           # ENXIO: only a hole is left
            data = size
        while position < data:
            step = min(CHUNK, data - position)
            yield _ZEROS[:step]
            position += step
        if position >= size:
            break
        hole = os.lseek(handle.fileno(), position, os.SEEK_HOLE)
        handle.seek(position)
        while position < hole:
            block = handle.read(min(CHUNK, hole - position))
            if not block:
                raise ImageError('short read at %d' % position)
            yield block
            position += len(block)


def file_sha256(path: str) -> str:
    with open(path, 'rb') as handle:
        if hasattr(os, 'SEEK_DATA') and not is_block_device(path):
            return digest_chunks(_sparse_chunks(handle))
        return digest_chunks(iter(lambda: handle.read(CHUNK), b''))


def write_device(path: str, table: Table, regions: Sequence[Region]) -> None:
    """Write a whole block device so that it never looks bootable half-written: the old partition
    tables (both GPT copies and the MBR) are wiped first, then the partitions are written, then the
    backup GPT, and the primary table with the boot code last, each step fsynced."""
    tables = ('head', 'gpt-backup')
    with open(path, 'r+b') as handle:
        wipe = SECTOR * (2 + GPT_ENTRY_SECTORS)
        for offset in (0, table.size - wipe):
            handle.seek(offset)
            handle.write(bytes(wipe))
        handle.flush()
        os.fsync(handle.fileno())
        log('wiped the old partition tables of %s' % path)
        for chosen in ([r for r in regions if r.name not in tables], [r for r in regions if r.name == 'gpt-backup'],
                       [r for r in regions if r.name == 'head']):
            write_regions(handle, chosen, sparse=False)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            fcntl.ioctl(handle.fileno(), BLKRRPART, 0)


# ---- the disk ---------------------------------------------------------------------------------------
def assemble(pieces: Pieces, out: str, device: bool = False, report: Optional[str] = None,
             verify: bool = True) -> Dict[str, object]:
    """Write the whole disk to ``out`` (a file, or with ``device`` a whole block device, read back
    and compared unless ``verify`` is false)."""
    if device:
        if not is_block_device(out):
            raise ImageError('%s is not a block device' % out)
        sector = logical_sector_size(out)
        if sector != SECTOR:
            raise ImageError('%s has %d-byte sectors; the layout needs %d' % (out, sector, SECTOR))
        size = device_size(out)
    else:
        if is_block_device(out):
            raise ImageError('%s is a block device: pass --device to overwrite it' % out)
        size = None
    table = plan_table(size, pieces.version, pieces.unique)
    log('disk %s: GPT, %d MiB, version %s' % (out, table.size // MIB, pieces.version))
    for part in table.partitions:
        log('  %d %-8s %5d MiB at %5d MiB' % (part.number, part.name, part.size // MIB, part.offset // MIB))
    with tempfile.TemporaryDirectory(prefix='fv-assemble-') as workdir:
        regions = build_regions(pieces, table, workdir)
        if device:
            write_device(out, table, regions)
            target = out
        else:
            folder = os.path.dirname(os.path.abspath(out))
            fd, target = tempfile.mkstemp(dir=folder, prefix='.%s.' % os.path.basename(out))
            try:
                with os.fdopen(fd, 'r+b') as handle:
                    handle.truncate(table.size)
                    write_regions(handle, regions, sparse=True)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(target, 0o644)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(target)
                raise
    result: Dict[str, object] = {
        'version': pieces.version, 'size': table.size, 'table': table.as_dict(),
        'regions': [{'name': r.name, 'offset': r.offset, 'length': r.length, 'sha256': r.sha256} for r in regions],
    }
    if device:
        if verify:
            bad = verify_regions(out, result['regions'])
            if bad:
                raise ImageError('%s: read-back differs in %s' % (out, ', '.join(bad)))
        log('disk %s written: %d MiB' % (out, table.size // MIB))
    else:
        os.replace(target, out)
        result['sha256'] = file_sha256(out)
        log('disk %s: %d MiB, sha256 %s' % (out, table.size // MIB, result['sha256']))
    if report:
        with open(report, 'w') as handle:
            json.dump(result, handle, indent=2, sort_keys=True)
            handle.write('\n')
    return result


# ---- grubenv inside a disk image (mtools, no mount) ---------------------------------------------------
def esp_spec(disk: str) -> str:
    """The mtools image spec of the boot partition inside the disk file ``disk``."""
    with open(disk, 'rb') as handle:
        head = handle.read(SECTOR * (2 + GPT_ENTRY_SECTORS))
    for part in parse_gpt(head)['partitions']:
        if part['name'] == PART_BOOT:
            return '%s@@%d' % (disk, part['first_lba'] * SECTOR)
    raise ImageError('%s has no fvboot partition' % disk)


def disk_env(disk: str, changes: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Read (and with ``changes``, rewrite) /grub/grubenv on the boot partition of a disk image."""
    spec = esp_spec(disk)
    with tempfile.TemporaryDirectory(prefix='fv-env-') as temp:
        path = os.path.join(temp, 'grubenv')
        _run(['mcopy', '-i', spec, '-n', '::/grub/grubenv', path])
        with open(path, 'rb') as handle:
            env = parse_grubenv(handle.read())
    if changes:
        env.update(changes)
        with tempfile.TemporaryDirectory(prefix='fv-env-') as temp:
            path = os.path.join(temp, 'grubenv')
            with open(path, 'wb') as handle:
                handle.write(format_grubenv(env))
            _run(['mcopy', '-i', spec, '-D', 'o', path, '::/grub/grubenv'])
    return env


# ---- command line -----------------------------------------------------------------------------------
def pair_argument(parser: argparse.ArgumentParser, item: str) -> Tuple[str, str]:
    key, sep, value = item.partition('=')
    if not sep or not key:
        parser.error('wanted NAME=VALUE, got %r' % item)
    return key, value


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='assemble.py', description=__doc__.split('\n', maxsplit=1)[0])
    commands = parser.add_subparsers(dest='command', required=True)
    disk = commands.add_parser('disk', help='write the GPT disk')
    disk.add_argument('--out', required=True)
    for option in ('--core', '--boot-img', '--efi', '--grub-cfg', '--kernel', '--initrd', '--slot-a'):
        disk.add_argument(option, required=True)
    disk.add_argument('--version', default='0.0.0')
    disk.add_argument('--slot-b')
    disk.add_argument('--kernel-b')
    disk.add_argument('--initrd-b')
    disk.add_argument('--version-b')
    disk.add_argument('--report', help='write the table and every region\'s sha256 here (JSON)')
    disk.add_argument('--device', action='store_true', help='--out is a whole block device: overwrite it')
    disk.add_argument('--no-verify', action='store_true', help='with --device: skip the read-back')
    disk.add_argument('--unique', action='store_true', help='random GUIDs and file system UUIDs (an install)')
    disk.add_argument('--state-file', action='append', default=[], metavar='NAME=PATH',
                      help='put the file PATH on the state partition as NAME')
    verify = commands.add_parser('verify', help='read back and compare')
    verify.add_argument('--device', required=True)
    verify.add_argument('--report')
    verify.add_argument('--expect-sha256')
    verify.add_argument('--offset', type=int, default=0)
    verify.add_argument('--length', type=int)
    table = commands.add_parser('table', help='print the partition table as JSON')
    table.add_argument('--size', type=int)
    table.add_argument('--version', default='0.0.0')
    table.add_argument('--guid-of', metavar='NAME', help='print only the GUID of partition NAME (as GRUB does)')
    env = commands.add_parser('env', help='show or edit /grub/grubenv inside a disk image')
    env.add_argument('--disk', required=True)
    env.add_argument('--set', action='append', default=[], metavar='NAME=VALUE')
    args = parser.parse_args(argv)
    try:
        if args.command == 'disk':
            pieces = Pieces(core=args.core, boot_img=args.boot_img, efi=args.efi, grub_cfg=args.grub_cfg,
                            kernel=args.kernel, initrd=args.initrd, slot_a=args.slot_a, version=args.version,
                            slot_b=args.slot_b, kernel_b=args.kernel_b, initrd_b=args.initrd_b,
                            version_b=args.version_b, unique=args.unique,
                            state_files=dict(pair_argument(parser, item) for item in args.state_file))
            for path in (args.core, args.boot_img, args.efi, args.grub_cfg, args.kernel, args.initrd, args.slot_a):
                if not os.path.isfile(path):
                    raise ImageError('%s: no such file' % path)
            assemble(pieces, args.out, device=args.device, report=args.report, verify=not args.no_verify)
        elif args.command == 'verify':
            if args.report:
                with open(args.report) as handle:
                    regions = json.load(handle)['regions']
                bad = verify_regions(args.device, regions)
                if bad:
                    log('%s: MISMATCH in %s' % (args.device, ', '.join(bad)))
                    return 1
                log('%s: every region matches' % args.device)
            elif args.expect_sha256:
                length = args.length if args.length is not None else device_size(args.device) - args.offset
                got = read_region(args.device, args.offset, length)
                if got != args.expect_sha256.lower():
                    log('%s: sha256 %s, expected %s' % (args.device, got, args.expect_sha256))
                    return 1
                log('%s: sha256 %s matches' % (args.device, got))
            else:
                parser.error('verify needs --report or --expect-sha256')
        elif args.command == 'table':
            planned = plan_table(args.size, args.version)
            if args.guid_of:
                print(str(planned.by_name(args.guid_of).guid).lower())
            else:
                print(json.dumps(planned.as_dict(), indent=2))
        elif args.command == 'env':
            changes = dict(pair_argument(parser, item) for item in args.set)
            for key, value in disk_env(args.disk, changes).items():
                print('%s=%s' % (key, value))
    except (ImageError, OSError) as exc:
        print('image: error: %s' % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
