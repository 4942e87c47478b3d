# -*- coding: utf-8 -*-
"""assemble.py, the firmvisor disk writer: the GPT computed by a pure function (sizes, alignment,
types, names, CRCs, checked against sfdisk), the GRUB environment block, GRUB's boot.img/core.img
patching, and whole disks assembled from small dummy pieces (contents, verify, determinism)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import uuid
import zlib

import pytest

from image_tools import assemble, fvinstall as fv_install, fvlib

ASSEMBLE = assemble.__file__

MIB = 1 << 20
SECTOR = 512
# dosfstools, mtools, e2fsprogs, fdisk and grub-pc-bin come from scripts/setup-host.sh.
GRUB_PC = '/usr/lib/grub/i386-pc'


# ---- the partition table ----------------------------------------------------------------------------
def test_layout_is_the_contract():
    table = assemble.plan_table(version='1.0.0')
    got = [(p.number, p.name, p.type_guid, p.size) for p in table.partitions]
    assert got == [
        (1, 'fvbios', uuid.UUID('21686148-6449-6E6F-744E-656564454649'), 1 * MIB),
        (2, 'fvboot', uuid.UUID('C12A7328-F81F-11D2-BA4B-00A0C93EC93B'), 128 * MIB),
        (3, 'fvslotA', uuid.UUID('0FC63DAF-8483-4772-8E79-3D69D8477DE4'), 640 * MIB),
        (4, 'fvslotB', uuid.UUID('0FC63DAF-8483-4772-8E79-3D69D8477DE4'), 640 * MIB),
        (5, 'fvstate', uuid.UUID('0FC63DAF-8483-4772-8E79-3D69D8477DE4'), 128 * MIB),
    ]
    assert table.partitions[0].first_lba == 2048
    for before, after in zip(table.partitions, table.partitions[1:]):
        assert after.first_lba == before.last_lba + 1
    for part in table.partitions:
        assert part.offset % MIB == 0 and part.size % MIB == 0
    assert table.size == assemble.min_disk_size() == 1539 * MIB
    assert table.first_usable == 34
    assert table.last_usable == table.sectors - 34
    assert table.partitions[-1].last_lba <= table.last_usable


def test_bigger_disk_keeps_the_partitions_and_moves_the_backup():
    small, big = assemble.plan_table(), assemble.plan_table(4096 * MIB)
    assert [(p.first_lba, p.last_lba) for p in small.partitions] == [(p.first_lba, p.last_lba) for p in big.partitions]
    assert big.last_usable == 4096 * MIB // SECTOR - 34
    header = assemble.gpt_backup(big)[-SECTOR:]
    assert struct.unpack_from('<QQ', header, 24) == (big.sectors - 1, 1)


@pytest.mark.parametrize('size', [assemble.min_disk_size() - MIB, 1000 * MIB, assemble.min_disk_size() + 1])
def test_too_small_or_odd_disk_is_refused(size):
    with pytest.raises(assemble.ImageError):
        assemble.plan_table(size)


def test_guids_derive_from_the_version():
    one, again, other = (assemble.plan_table(version=v) for v in ('1.0.0', '1.0.0', '1.0.1'))
    assert one == again
    assert one.disk_guid != other.disk_guid
    guids = {p.guid for p in one.partitions} | {one.disk_guid}
    assert len(guids) == 6


def test_protective_mbr():
    table = assemble.plan_table()
    mbr = assemble.protective_mbr(table, b'\xfa' * 440)
    assert len(mbr) == SECTOR and mbr[:440] == b'\xfa' * 440 and mbr[0x1fe:] == b'\x55\xaa'
    status, _unused, kind, _unused, first, count = struct.unpack_from('<B3sB3sII', mbr, 0x1be)
    assert (status, kind, first, count) == (0, 0xEE, 1, table.sectors - 1)
    assert mbr[0x1ce:0x1fe] == bytes(48)
    with pytest.raises(assemble.ImageError):
        assemble.protective_mbr(table, bytes(441))


def test_gpt_headers_and_crcs():
    table = assemble.plan_table(version='2.0')
    head = assemble.gpt_primary(table)
    assert len(head) == 34 * SECTOR
    parsed = assemble.parse_gpt(head)
    assert parsed['current_lba'] == 1 and parsed['backup_lba'] == table.sectors - 1
    assert parsed['disk_guid'] == str(table.disk_guid).upper()
    assert [p['name'] for p in parsed['partitions']] == ['fvbios', 'fvboot', 'fvslotA', 'fvslotB', 'fvstate']
    assert [(p['first_lba'], p['last_lba']) for p in parsed['partitions']] == \
        [(p.first_lba, p.last_lba) for p in table.partitions]
    header = head[SECTOR:2 * SECTOR]
    assert header[:8] == b'EFI PART' and struct.unpack_from('<I', header, 8)[0] == 0x00010000
    crc = struct.unpack_from('<I', header, 16)[0]
    assert zlib.crc32(header[:16] + bytes(4) + header[20:92]) == crc
    assert zlib.crc32(head[2 * SECTOR:34 * SECTOR]) == struct.unpack_from('<I', header, 88)[0]
    # the backup: same entries, header in the last sector pointing back at LBA 1
    tail = assemble.gpt_backup(table)
    assert len(tail) == 33 * SECTOR and tail[:32 * SECTOR] == head[2 * SECTOR:]
    backup = tail[-SECTOR:]
    current, other, first, last = struct.unpack_from('<QQQQ', backup, 24)
    assert (current, other, first, last) == (table.sectors - 1, 1, 34, table.sectors - 34)
    assert struct.unpack_from('<Q', backup, 72)[0] == table.sectors - 33
    assert zlib.crc32(backup[:16] + bytes(4) + backup[20:92]) == struct.unpack_from('<I', backup, 16)[0]
    # a flipped bit is noticed
    broken = bytearray(head)
    broken[2 * SECTOR + 40] ^= 1
    with pytest.raises(assemble.ImageError, match='entries CRC'):
        assemble.parse_gpt(bytes(broken))


def test_table_command_prints_json(capsys):
    assert assemble.main(['table', '--version', '3.1']) == 0
    data = json.loads(capsys.readouterr().out)
    assert data['size'] == 1539 * MIB
    assert [p['name'] for p in data['partitions']] == ['fvbios', 'fvboot', 'fvslotA', 'fvslotB', 'fvstate']


# ---- the GRUB environment block -------------------------------------------------------------------
def test_grubenv_round_trip():
    block = assemble.format_grubenv({'fv_active': 'B', 'fv_next': ''})
    assert len(block) == 1024
    assert block.startswith(b'# GRUB Environment Block\nfv_active=B\nfv_next=\n#')
    assert block.endswith(b'#' * 100)
    assert assemble.parse_grubenv(block) == {'fv_active': 'B', 'fv_next': ''}
    initial = assemble.initial_grubenv()
    assert len(initial) == 1024 and assemble.parse_grubenv(initial) == {
        'fv_active': 'A', 'fv_next': '', 'fv_tries_A': '3', 'fv_tries_B': '0'}


def test_grubenv_limits():
    with pytest.raises(assemble.ImageError, match='overflow'):
        assemble.format_grubenv({'x': 'y' * 1024})
    with pytest.raises(assemble.ImageError):
        assemble.parse_grubenv(b'# GRUB Environment Block\nfv_active=A\n')  # not 1024 bytes
    with pytest.raises(assemble.ImageError):
        assemble.parse_grubenv(b'x' * 1024)


def test_grubenv_is_the_host_tools_format():
    """One format for the disk writer and the host tools: assemble.py's block is fvlib's."""
    values = {'fv_active': 'A', 'fv_next': 'B'}
    assert assemble.format_grubenv is fvlib.format_grubenv
    assert fvlib.parse_grubenv(assemble.initial_grubenv()) == assemble.INITIAL_ENV
    assert fvlib.parse_grubenv(fvlib.format_grubenv(values)) == values


# ---- GRUB for BIOS: boot.img and core.img -----------------------------------------------------------
def fake_boot_img():
    boot = bytearray(SECTOR)
    boot[0:2] = b'\xeb\x63'
    boot[0x5c:0x64] = struct.pack('<Q', 1)
    boot[0x64] = 0xff
    boot[0x66:0x68] = b'\xeb\x05'
    boot[0x1fe:] = b'\x55\xaa'
    return bytes(boot)


def fake_core_img(sectors=5):
    core = bytearray(os.urandom(sectors * SECTOR - 100))
    core[500:512] = struct.pack('<QHH', 2, 0, 0x820)
    core[488:500] = bytes(12)  # the next (empty) blocklist entry
    return bytes(core)


def real_or_fake_boot_img():
    path = os.path.join(GRUB_PC, 'boot.img')
    return open(path, 'rb').read() if os.path.exists(path) else fake_boot_img()


def test_boot_img_patch():
    boot = real_or_fake_boot_img()
    code = assemble.patch_boot_img(boot, 2048)
    assert len(code) == 440
    assert struct.unpack_from('<Q', code, 0x5c)[0] == 2048      # kernel_sector
    assert code[0x64] == 0xff                                   # boot_drive: the BIOS boot drive
    assert code[0x66:0x68] == b'\x90\x90'                       # floppy check jump → nops
    untouched = [i for i in range(440) if not (0x5c <= i < 0x64 or i in (0x64, 0x66, 0x67))]
    assert all(code[i] == boot[i] for i in untouched)


def test_boot_img_must_be_grub():
    with pytest.raises(assemble.ImageError):
        assemble.patch_boot_img(bytes(SECTOR), 2048)
    with pytest.raises(assemble.ImageError):
        assemble.patch_boot_img(fake_boot_img()[:400], 2048)


def test_core_img_patch():
    core = fake_core_img(5)
    patched = assemble.patch_core_img(core, 2048)
    assert len(patched) == 5 * SECTOR and patched[:500] == core[:500]
    assert struct.unpack_from('<QHH', patched, 500) == (2049, 4, 0x820)
    assert patched[512:len(core)] == core[512:]


def test_core_img_refusals():
    with pytest.raises(assemble.ImageError, match='blocklist'):
        assemble.patch_core_img(bytes(4 * SECTOR), 2048)
    with pytest.raises(assemble.ImageError, match='at most'):
        assemble.patch_core_img(fake_core_img(1000), 2048)
    with pytest.raises(assemble.ImageError, match='too small'):
        assemble.patch_core_img(bytes(100), 2048)


def test_real_core_img_patch(tmp_path):
    out = tmp_path / 'core.img'
    subprocess.run(['grub-mkimage', '-d', GRUB_PC, '-O', 'i386-pc', '-o', str(out), '-p', '(,gpt2)/grub',
                    'biosdisk', 'part_gpt', 'fat'], check=True)
    core = out.read_bytes()
    assert struct.unpack_from('<QHH', core, 500)[2] == 0x820
    sectors = -(-len(core) // SECTOR)
    assert struct.unpack_from('<QHH', assemble.patch_core_img(core, 2048), 500) == (2049, sectors - 1, 0x820)


# ---- whole disks --------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def pieces(tmp_path_factory):
    root = tmp_path_factory.mktemp('pieces')
    files = {
        'core.img': fake_core_img(40), 'boot.img': fake_boot_img(), 'BOOTX64.EFI': b'MZ' + b'\x01' * 5000,
        'vmlinuz': b'kernel A ' * 3000, 'initrd.img': b'initrd A ' * 2000, 'root.squashfs': b'hsqs' + b'A' * 300000,
        'vmlinuz-b': b'kernel B ' * 3000, 'initrd-b.img': b'initrd B ' * 2000,
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / 'grub.cfg').write_text('echo "firmvisor: grub: test"\n')
    return root


def disk_args(pieces, out, *extra):
    return ['disk', '--out', str(out), '--core', str(pieces / 'core.img'), '--boot-img', str(pieces / 'boot.img'),
            '--efi', str(pieces / 'BOOTX64.EFI'), '--grub-cfg', str(pieces / 'grub.cfg'),
            '--kernel', str(pieces / 'vmlinuz'), '--initrd', str(pieces / 'initrd.img'),
            '--slot-a', str(pieces / 'root.squashfs'), '--version', '9.8.7'] + list(extra)


@pytest.fixture(scope='module')
def disk(pieces, tmp_path_factory):
    out = tmp_path_factory.mktemp('disk') / 'disk.raw'
    report = out.parent / 'report.json'
    assert assemble.main(disk_args(pieces, out, '--report', str(report))) == 0
    return out, json.loads(report.read_text())


def sha256(path):
    return assemble.file_sha256(str(path))  # holes hashed as zeros without reading them


def read_at(path, offset, length):
    with open(path, 'rb') as handle:
        handle.seek(offset)
        return handle.read(length)


def mtype(disk_path, fat_path):
    offset = assemble.plan_table().by_name('fvboot').offset
    return subprocess.run(['mtype', '-i', '%s@@%d' % (disk_path, offset), '::' + fat_path], check=True,
                          capture_output=True, env=dict(os.environ, MTOOLS_SKIP_CHECK='1')).stdout


def test_disk_table_matches_sfdisk(disk):
    path, report = disk
    proc = subprocess.run(['sfdisk', '--json', str(path)], capture_output=True, text=True, check=True)
    table = json.loads(proc.stdout)['partitiontable']
    assert table['label'] == 'gpt' and table['sectorsize'] == 512
    assert table['id'] == report['table']['disk_guid']
    assert table['firstlba'] == 34 and table['lastlba'] == path.stat().st_size // 512 - 34
    assert [(p['name'], p['type'], p['uuid'], p['start'], p['size']) for p in table['partitions']] == \
        [(p['name'], p['type'], p['guid'], p['first_lba'], p['last_lba'] - p['first_lba'] + 1)
         for p in report['table']['partitions']]
    verify = subprocess.run(['sfdisk', '--verify', str(path)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0 and 'No errors detected' in verify.stdout


def test_disk_contents(disk, pieces):
    path, report = disk
    table = assemble.plan_table(version='9.8.7')
    size = path.stat().st_size
    assert size == 1539 * MIB
    head = read_at(path, 0, MIB)
    # MBR: GRUB boot code aimed at fvbios, protective partition, both GPTs valid
    assert struct.unpack_from('<Q', head, 0x5c)[0] == 2048 and head[0x1c2] == 0xEE
    assert assemble.parse_gpt(head[:34 * SECTOR])['partitions'][1]['name'] == 'fvboot'
    assert read_at(path, size - SECTOR, 8) == b'EFI PART'
    # core.img at fvbios with its blocklist
    core = (pieces / 'core.img').read_bytes()
    bios = read_at(path, table.by_name('fvbios').offset, MIB)
    assert struct.unpack_from('<QHH', bios, 500) == (2049, -(-len(core) // SECTOR) - 1, 0x820)
    assert bios[512:len(core)] == core[512:]
    # boot partition: FAT32 labelled FVBOOT with GRUB, grub.cfg, grubenv and slot A
    esp = read_at(path, table.by_name('fvboot').offset, SECTOR)
    assert esp[82:90] == b'FAT32   ' and esp[71:82] == b'FVBOOT     '
    assert mtype(path, '/grub/grubenv') == assemble.initial_grubenv()
    assert mtype(path, '/grub/grub.cfg') == (pieces / 'grub.cfg').read_bytes()
    assert mtype(path, '/EFI/BOOT/BOOTX64.EFI') == (pieces / 'BOOTX64.EFI').read_bytes()
    assert mtype(path, '/slots/A/vmlinuz') == (pieces / 'vmlinuz').read_bytes()
    assert mtype(path, '/slots/A/initrd.img') == (pieces / 'initrd.img').read_bytes()
    assert mtype(path, '/slots/A/version') == b'9.8.7\n'
    # slot A is the squashfs, slot B empty, state an ext4 labelled FVSTATE
    squashfs = (pieces / 'root.squashfs').read_bytes()
    slot_a, slot_b = table.by_name('fvslotA').offset, table.by_name('fvslotB').offset
    assert read_at(path, slot_a, len(squashfs)) == squashfs
    assert read_at(path, slot_b, MIB) == bytes(MIB)
    superblock = read_at(path, table.by_name('fvstate').offset + 1024, 1024)
    assert struct.unpack_from('<H', superblock, 56)[0] == 0xEF53
    assert superblock[120:136].rstrip(b'\0') == b'FVSTATE'
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:   # a plain read of every byte agrees with the sparse-aware digest
        for block in iter(lambda: handle.read(1 << 22), b''):
            digest.update(block)
    assert report['sha256'] == digest.hexdigest()
    assert [r['name'] for r in report['regions']] == ['head', 'fvbios', 'fvboot', 'fvslotA', 'fvslotB', 'fvstate',
                                                      'gpt-backup']


def test_same_pieces_same_disk(disk, pieces, tmp_path):
    path, report = disk
    for source in pieces.iterdir():   # the pieces' own times do not matter
        os.utime(source, (1e9, 1e9))
    again = tmp_path / 'again.raw'
    assert assemble.main(disk_args(pieces, again)) == 0
    assert sha256(again) == sha256(path) == report['sha256']


def test_verify_reads_back(disk, tmp_path, capsys):
    path, report = disk
    report_path = tmp_path / 'report.json'
    report_path.write_text(json.dumps(report))
    assert assemble.main(['verify', '--device', str(path), '--report', str(report_path)]) == 0
    assert assemble.main(['verify', '--device', str(path), '--expect-sha256', report['sha256']]) == 0
    region = report['regions'][3]
    assert assemble.main(['verify', '--device', str(path), '--expect-sha256', region['sha256'],
                          '--offset', str(region['offset']), '--length', str(region['length'])]) == 0
    with open(path, 'r+b') as handle:   # one byte of slot A changed, then put back
        handle.seek(region['offset'] + 100)
        original = handle.read(1)
        handle.seek(region['offset'] + 100)
        handle.write(b'X')
    try:
        capsys.readouterr()
        assert assemble.main(['verify', '--device', str(path), '--report', str(report_path)]) == 1
        assert 'MISMATCH in fvslotA' in capsys.readouterr().out
        assert assemble.main(['verify', '--device', str(path), '--expect-sha256', region['sha256'],
                              '--offset', str(region['offset']), '--length', str(region['length'])]) == 1
    finally:
        with open(path, 'r+b') as handle:
            handle.seek(region['offset'] + 100)
            handle.write(original)
    assert assemble.read_region(str(path), region['offset'], region['length']) == region['sha256']


def test_slot_b_and_env_editing(pieces, tmp_path):
    out = tmp_path / 'ab.raw'
    assert assemble.main(disk_args(pieces, out, '--slot-b', str(pieces / 'root.squashfs'),
                                   '--kernel-b', str(pieces / 'vmlinuz-b'), '--initrd-b', str(pieces / 'initrd-b.img'),
                                   '--version-b', '9.9.9')) == 0
    assert mtype(out, '/slots/B/vmlinuz') == (pieces / 'vmlinuz-b').read_bytes()
    assert mtype(out, '/slots/B/version') == b'9.9.9\n'
    manifest = json.loads(mtype(out, '/slots/B/manifest.json'))
    assert manifest['version'] == '9.9.9' and manifest['squashfs'] == {
        'size': 300004, 'sha256': hashlib.sha256((pieces / 'root.squashfs').read_bytes()).hexdigest()}
    assert manifest['kernel']['sha256'] == hashlib.sha256((pieces / 'vmlinuz-b').read_bytes()).hexdigest()
    assert assemble.disk_env(str(out)) == assemble.INITIAL_ENV
    assert assemble.disk_env(str(out), {'fv_next': 'B'}) == dict(assemble.INITIAL_ENV, fv_next='B')
    block = mtype(out, '/grub/grubenv')
    assert len(block) == 1024 and assemble.parse_grubenv(block) == dict(assemble.INITIAL_ENV, fv_next='B')


def test_refusals(pieces, tmp_path, capsys):
    # a regular file is not a device; a block device is not overwritten without --device
    assert assemble.main(disk_args(pieces, tmp_path / 'x.raw', '--device')) == 1
    assert 'not a block device' in capsys.readouterr().err
    if os.path.exists('/dev/null'):
        block = [p for p in ('/dev/loop0', '/dev/vda', '/dev/sda', '/dev/nvme0n1') if assemble.is_block_device(p)]
        if block:
            assert assemble.main(disk_args(pieces, block[0])) == 1
            assert 'pass --device' in capsys.readouterr().err
    big = tmp_path / 'big.squashfs'
    with open(big, 'wb') as handle:
        handle.truncate(641 * MIB)
    args = disk_args(pieces, tmp_path / 'y.raw')
    args[args.index('--slot-a') + 1] = str(big)
    assert assemble.main(args) == 1
    assert 'does not fit fvslotA' in capsys.readouterr().err
    assert not (tmp_path / 'y.raw').exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.y.raw')] == []


# ---- fv-install: the on-host installer's checks (fake /sys, /dev nodes as files) -----------------------
def iso_volume(label):
    data = bytearray(34816)
    data[32768:32774] = b'\x01CD001'
    data[32768 + 40:32768 + 72] = label.encode().ljust(32)
    return bytes(data)


def fat_volume(label, fat32=True):
    boot = bytearray(512)
    boot[0], boot[510:] = 0xEB, b'\x55\xaa'  # a jump, and the boot signature
    if fat32:
        boot[71:82], boot[82:90] = label.encode().ljust(11), b'FAT32   '
    else:
        boot[0x26], boot[43:54], boot[54:62] = 0x29, label.encode().ljust(11), b'FAT16   '
    return bytes(boot)


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """vda (4 GiB, empty), vdb (4 GiB) with vdb1, sdb (the ISO on a USB stick), sdc (FAT seed), sr0."""
    sys_block, dev = tmp_path / 'sys', tmp_path / 'dev'
    dev.mkdir()
    disks = {'vda': (4 << 30, b''), 'vdb': (4 << 30, b''), 'vdc': (1 << 30, b''), 'sdb': (1 << 30, iso_volume('FVISO')),
             'sdc': (1 << 20, fat_volume('FVSEED', fat32=False)), 'sr0': (0, b'')}
    for number, (name, (size, content)) in enumerate(disks.items()):
        entry = sys_block / name
        entry.mkdir(parents=True)
        (entry / 'dev').write_text('254:%d\n' % (number * 16))
        (entry / 'size').write_text('%d\n' % (size // 512))
        (entry / 'ro').write_text('0\n')
        (entry / 'holders').mkdir()
        (entry / 'uevent').write_text('DEVNAME=%s\nDEVTYPE=disk\n' % name)
        (dev / name).write_bytes(content)
    part = sys_block / 'vdb' / 'vdb1'
    part.mkdir()
    (part / 'partition').write_text('1\n')
    (part / 'dev').write_text('254:17\n')
    (part / 'size').write_text('2048\n')
    (part / 'uevent').write_text('DEVNAME=vdb1\nDEVTYPE=partition\n')
    (sys_block / 'vdb1').symlink_to(part)
    (dev / 'vdb1').write_bytes(b'')
    cmdline, mounts = tmp_path / 'cmdline', tmp_path / 'mounts'
    cmdline.write_text('BOOT_IMAGE=/boot/vmlinuz fv.live=1 console=ttyS0,115200\n')
    mounts.write_text('proc /proc proc rw 0 0\n/dev/vdb1 /mnt ext4 rw 0 0\n')
    monkeypatch.setattr(fv_install, 'block_name', lambda paths, device: os.path.basename(os.path.realpath(device)))
    paths = fvlib.Paths(cmdline=str(cmdline), mounts=str(mounts), sys_block=str(sys_block), dev=str(dev),
                        run=str(tmp_path / 'run'))
    return paths, tmp_path


def test_volume_labels(machine):
    paths, _unused = machine

    def label(name):
        with open(os.path.join(paths.dev, name), 'rb') as handle:
            return fvlib.volume_label(handle.read(fvlib.LABEL_PROBE_BYTES))
    assert label('sdb') == ('iso9660', 'FVISO')
    assert label('sdc') == ('vfat', 'FVSEED')
    assert label('vda') is None
    assert [found[0] for found in fvlib.labelled(paths, 'FVISO')] == ['sdb']
    assert [found[0] for found in fvlib.labelled(paths, 'FVSEED')] == ['sdc']


def test_target_checks(machine):
    paths, tmp = machine
    minimum = assemble.min_disk_size()
    dev = paths.dev
    assert fv_install.check_target(dev + '/vda', paths, {}, minimum) == ('vda', 4 << 30)
    refusals = [
        (dev + '/vdb1', {}, 'is a partition of vdb'),
        (dev + '/vdb', {}, 'in use: vdb1 mounted on /mnt'),
        (dev + '/vdc', {}, 'firmvisor needs 1539 MiB'),
        (dev + '/sr0', {}, 'not a disk to install onto'),
        (dev + '/vda', {'vda': 'the device the live system booted from (FVISO)'}, 'booted from'),
    ]
    for target, protected, message in refusals:
        with pytest.raises(fv_install.InstallError, match=message.replace('(', r'\(').replace(')', r'\)')):
            fv_install.check_target(target, paths, protected, minimum)
    (tmp / 'sys' / 'vda' / 'ro').write_text('1\n')
    with pytest.raises(fv_install.InstallError, match='read-only'):
        fv_install.check_target(dev + '/vda', paths, {}, minimum)
    (tmp / 'sys' / 'vda' / 'ro').write_text('0\n')
    (tmp / 'sys' / 'vda' / 'holders' / 'dm-0').mkdir()
    with pytest.raises(fv_install.InstallError, match='in use by dm-0'):
        fv_install.check_target(dev + '/vda', paths, {}, minimum)


@pytest.fixture
def medium(tmp_path):
    """An installer medium's tree: the pieces, and the real assemble.py."""
    root = tmp_path / 'iso'
    for relative in fv_install.PIECES.values():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b'piece')
    (root / 'install' / 'version').write_text('1.2.3\n')
    return root


def run_install(paths, *argv):
    return fv_install.main(list(argv), paths)


def test_install_refusals_write_nothing(machine, medium, capsys):
    paths, tmp = machine
    seed = tmp / 'seed.json'
    dev = paths.dev
    before = {name: os.path.getsize(os.path.join(dev, name)) for name in os.listdir(dev)}
    seed.write_text(json.dumps({'hostname': 'hv1'}))
    assert run_install(paths, '--seed', str(seed), '--source', str(medium)) == 0
    assert 'no install_to in the seed' in capsys.readouterr().out
    for target, message in ((dev + '/sdb', 'the device the live system booted from (FVISO)'),
                            (dev + '/sdc', 'the seed (FVSEED)'),
                            (dev + '/vdb1', 'is a partition'),
                            ('vda', 'install_to must be a device path')):
        seed.write_text(json.dumps({'install_to': target}))
        assert run_install(paths, '--seed', str(seed), '--source', str(medium)) == 1
        out = capsys.readouterr().out
        assert 'firmvisor: install: FAILED:' in out and message in out
    seed.write_text('{not json')
    assert run_install(paths, '--seed', str(seed), '--source', str(medium)) == 1
    assert 'not JSON' in capsys.readouterr().out
    with open(paths.cmdline, 'w') as handle:
        handle.write('BOOT_IMAGE=/slots/A/vmlinuz fv.slot=A\n')
    seed.write_text(json.dumps({'install_to': dev + '/vda'}))
    assert run_install(paths, '--seed', str(seed), '--source', str(medium)) == 0  # the installed host's boots
    assert 'not a live boot (no fv.live=1): nothing to install' in capsys.readouterr().out
    assert run_install(paths, '--seed', str(seed), '--source', str(medium), '--target', dev + '/vda') == 1
    assert 'FAILED: not a live boot' in capsys.readouterr().out
    assert before == {name: os.path.getsize(os.path.join(dev, name)) for name in os.listdir(dev)}


def test_install_dry_run(machine, medium, capsys):
    paths, tmp = machine
    seed = tmp / 'seed.json'
    seed.write_text(json.dumps({'install_to': paths.dev + '/vda'}))
    assert run_install(paths, '--seed', str(seed), '--source', str(medium), '--dry-run') == 0
    out = capsys.readouterr().out
    assert 'dry run: would install firmvisor 1.2.3' in out and '(vda, 4096 MiB)' in out
    assert os.path.getsize(os.path.join(paths.dev, 'vda')) == 0


def test_install_refuses_the_mounted_medium(machine, medium, capsys):
    paths, tmp = machine
    with open(paths.mounts, 'a') as handle:
        handle.write('/dev/vda %s iso9660 ro 0 0\n' % medium)
    assert fv_install.find_source(paths, print, str(medium)) == (str(medium), 'vda')
    assert run_install(paths, '--source', str(medium), '--target', paths.dev + '/vda') == 1
    assert 'the device the live system booted from' in capsys.readouterr().out


# ---- an install's own GUIDs, its seed, and the tables written last ----------------------------------
def test_unique_guids_and_a_state_file(pieces, tmp_path, disk):
    seed = tmp_path / 'seed.json'
    seed.write_text('{"hostname": "hv9"}\n')
    outs = []
    for name in ('one.raw', 'two.raw'):
        out = tmp_path / name
        assert assemble.main(disk_args(pieces, out, '--unique', '--state-file', 'seed.json=%s' % seed)) == 0
        outs.append(assemble.parse_gpt(read_at(out, 0, 34 * SECTOR)))
    fixed = assemble.parse_gpt(read_at(disk[0], 0, 34 * SECTOR))
    guids = [{p['guid'] for p in table['partitions']} | {table['disk_guid']} for table in outs + [fixed]]
    assert not guids[0] & guids[1] and not guids[0] & guids[2]  # nothing shared with another disk
    state = assemble.plan_table().by_name('fvstate')
    image = tmp_path / 'state.img'
    image.write_bytes(read_at(tmp_path / 'one.raw', state.offset, state.size))
    dumped = subprocess.run(['debugfs', '-R', 'cat /seed.json', str(image)], capture_output=True, check=True)
    assert dumped.stdout == b'{"hostname": "hv9"}\n'


def test_a_device_gets_its_tables_last(pieces, tmp_path, monkeypatch):
    """Writing over an old install: both old tables are gone before the first partition byte, and the
    new backup and primary tables come after every partition."""
    target = tmp_path / 'device.raw'
    assert assemble.main(disk_args(pieces, target)) == 0  # the old install, same size
    table = assemble.plan_table(None, '2.0.0', unique=True)
    seen = []
    real = assemble.write_regions

    def record(handle, regions, sparse):
        handle.flush()
        head, tail = read_at(target, 0, 34 * SECTOR), read_at(target, table.size - 33 * SECTOR, 33 * SECTOR)
        seen.append(([r.name for r in regions], head.count(0) == len(head), tail.count(0) == len(tail)))
        real(handle, regions, sparse)
    monkeypatch.setattr(assemble, 'write_regions', record)
    with assemble.tempfile.TemporaryDirectory() as work:
        regions = assemble.build_regions(assemble.Pieces(
            core=str(pieces / 'core.img'), boot_img=str(pieces / 'boot.img'), efi=str(pieces / 'BOOTX64.EFI'),
            grub_cfg=str(pieces / 'grub.cfg'), kernel=str(pieces / 'vmlinuz'), initrd=str(pieces / 'initrd.img'),
            slot_a=str(pieces / 'root.squashfs'), version='2.0.0', unique=True), table, work)
        assemble.write_device(str(target), table, regions)
    assert [step[0] for step in seen] == [['fvbios', 'fvboot', 'fvslotA', 'fvslotB', 'fvstate'],
                                          ['gpt-backup'], ['head']]
    assert seen[0][1:] == (True, True)  # the old tables were wiped first
    assert assemble.parse_gpt(read_at(target, 0, 34 * SECTOR))['disk_guid'] == str(table.disk_guid).upper()


def test_recognise_what_a_disk_holds(disk, tmp_path):
    path, _report = disk
    size = os.path.getsize(path)
    head, tail = read_at(path, 0, MIB), read_at(path, size - MIB, MIB)
    assert fv_install.recognise(bytes(MIB), bytes(MIB)) == []
    assert fv_install.recognise(head, tail) == ['a firmvisor install (partitions fvbios, fvboot, fvslotA, '
                                                'fvslotB, fvstate)']
    # an install cut short after the wipe, before the primary table: the backup still names it
    assert fv_install.recognise(bytes(MIB), tail)[0].startswith('a firmvisor install')
    ext4 = bytearray(MIB)
    ext4[1080:1082] = b'\x53\xef'
    assert fv_install.recognise(bytes(ext4), bytes(MIB)) == ['an ext2/3/4 file system']
    mbr = bytearray(MIB)
    mbr[510:512], mbr[446 + 4] = b'\x55\xaa', 0x83
    assert fv_install.recognise(bytes(mbr), bytes(MIB)) == ['an MBR partition table']
    lvm = bytearray(MIB)
    lvm[512:520] = b'LABELONE'
    assert fv_install.recognise(bytes(lvm), bytes(MIB)) == ['an LVM physical volume']
    noise = bytearray(MIB)
    noise[MIB - 1] = 1
    assert fv_install.recognise(bytes(MIB), bytes(noise)) == ['data (non-zero bytes in its first or last MiB)']


def test_install_refuses_a_disk_with_an_install_or_data(machine, medium, disk, capsys):
    paths, tmp = machine
    target = os.path.join(paths.dev, 'vda')
    with open(disk[0], 'rb') as src, open(target, 'wb') as dst:  # an installed (and maybe upgraded) host
        dst.write(src.read(MIB))
        dst.seek((4 << 30) - MIB)
        src.seek(os.path.getsize(disk[0]) - MIB)
        dst.write(src.read(MIB))
    seed = tmp / 'seed.json'
    seed.write_text(json.dumps({'install_to': target}))
    before = fvlib.sha256_file(target)
    assert run_install(paths, '--seed', str(seed), '--source', str(medium)) == 0
    out = capsys.readouterr().out
    assert 'holds a firmvisor install' in out and 'not installing, so nothing on it is lost' in out
    assert fvlib.sha256_file(target) == before
    seed.write_text(json.dumps({'install_to': target, 'install_force': True}))
    assert run_install(paths, '--seed', str(seed), '--source', str(medium), '--dry-run') == 0
    out = capsys.readouterr().out
    assert 'install_force: overwriting' in out and 'dry run: would install' in out
