# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kmodules.py: the kernel-module decisions of the image build (standard library only).

    kmodules.py prune MODDIR
        remove the modules a headless hypervisor does not need (DROP below) and every module that
        depends on one of them (rootfs.sh; depmod runs after).
    kmodules.py initramfs MODDIR OUT_MODDIR ORDER_FILE MODULE... -- LATER_MODULE...
        copy MODULE... and LATER_MODULE... with their dependencies and soft dependencies into
        OUT_MODDIR (decompressed), and write the load order: ORDER_FILE (loaded at once) and
        ORDER_FILE-later (loaded when the system is not found within a few seconds); and the
        watchdog drivers (WATCHDOGS) with theirs, listed in ORDER_FILE-watchdogs as
        "DEVICE PARAMETER MODULE..." lines (initramfs.sh; the initramfs's init arms the first whose
        device is there).
    kmodules.py is-static FILE
        exit 0 when FILE is a 64-bit ELF without a program interpreter (a static busybox).
"""

from __future__ import annotations

import lzma
import os
import shutil
import struct
import subprocess
import sys
from typing import Dict, Iterable, List, Set, Tuple

# Subtrees of kernel/ that a headless hypervisor does not need. Storage, network, virtio, kvm, vfio,
# bridge, tun, netfilter, overlay, squashfs, iso9660, vfat and the watchdogs stay.
DROP = tuple('kernel/%s/' % prefix for prefix in (
    'sound', 'drivers/gpu', 'drivers/media', 'drivers/staging', 'drivers/infiniband',
    'drivers/net/wireless', 'net/wireless', 'net/mac80211', 'drivers/bluetooth', 'net/bluetooth',
    'drivers/isdn', 'drivers/iio', 'drivers/input/joystick', 'drivers/input/touchscreen',
    'drivers/input/tablet', 'drivers/nfc', 'net/nfc', 'drivers/atm', 'net/atm', 'drivers/net/can',
    'net/can', 'drivers/net/ieee802154', 'net/ieee802154', 'net/mac802154', 'drivers/net/hamradio',
    'net/ax25', 'net/netrom', 'net/rose', 'drivers/net/wwan', 'drivers/pcmcia', 'drivers/memstick',
    'drivers/usb/gadget', 'drivers/video/fbdev', 'drivers/parport', 'drivers/net/arcnet',
    'drivers/net/fddi', 'drivers/net/plip', 'drivers/auxdisplay', 'drivers/gnss', 'drivers/w1',
    'drivers/greybus', 'drivers/most', 'drivers/misc/cardreader', 'drivers/input/mouse',
    'drivers/platform/chrome', 'drivers/platform/surface', 'drivers/hid/intel-ish-hid',
))


# The hardware watchdogs the initramfs arms: the first whose PCI device (vendor:device, or any) is
# there. The i6300ESB (QEMU's <watchdog model='i6300esb'>) goes before the chipset TCO timers, which
# QEMU's q35 also has but which do not reset it by default.
WATCHDOGS = (
    ('8086:25AB', 'heartbeat', ('i6300esb',)),
    ('any', 'heartbeat', ('lpc_ich', 'iTCO_wdt')),
    ('any', 'heartbeat', ('sp5100_tco',)),
)


def name_of(path: str) -> str:
    """The module name of a modules.dep path: kernel/fs/isofs/isofs.ko.xz → isofs (dashes → _)."""
    base = os.path.basename(path)
    for suffix in ('.xz', '.zst', '.gz'):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    return base[:-3].replace('-', '_') if base.endswith('.ko') else ''


def read_deps(moddir: str) -> Dict[str, List[str]]:
    """modules.dep: module path → the paths it depends on (the deepest dependency last)."""
    deps = {}
    with open(os.path.join(moddir, 'modules.dep')) as handle:
        for line in handle:
            mod, _unused, rest = line.partition(':')
            if mod.strip():
                deps[mod.strip()] = rest.split()
    return deps


def read_softdeps(moddir: str) -> Dict[str, List[str]]:
    """modules.softdep: module name → the names it wants loaded before it (pre:)."""
    soft: Dict[str, List[str]] = {}
    path = os.path.join(moddir, 'modules.softdep')
    if not os.path.exists(path):
        return soft
    with open(path) as handle:
        for line in handle:
            words = line.split()
            if len(words) > 2 and words[0] == 'softdep':
                pre, mode = [], None
                for word in words[2:]:
                    if word in ('pre:', 'post:'):
                        mode = word
                    elif mode == 'pre:':
                        pre.append(word.replace('-', '_'))
                soft[words[1].replace('-', '_')] = pre
    return soft


def prune_set(deps: Dict[str, List[str]], prefixes: Tuple[str, ...] = DROP) -> Set[str]:
    """The modules under ``prefixes`` and, transitively, every module that needs one of them."""
    drop = {mod for mod in deps if mod.startswith(prefixes)}
    changed = True
    while changed:
        changed = False
        for mod, needs in deps.items():
            if mod not in drop and any(need in drop for need in needs):
                drop.add(mod)
                changed = True
    return drop


def prune(moddir: str) -> Tuple[int, int]:
    deps = read_deps(moddir)
    drop = prune_set(deps)
    for mod in sorted(drop):
        os.unlink(os.path.join(moddir, mod))
    for folder, _dirs, _files in os.walk(os.path.join(moddir, 'kernel'), topdown=False):
        if not os.listdir(folder):
            os.rmdir(folder)
    return len(drop), len(deps)


def load_order(deps: Dict[str, List[str]], soft: Dict[str, List[str]], builtin: Set[str],
               groups: Iterable[List[str]]) -> Tuple[List[List[str]], List[str]]:
    """For each group of wanted module names, the module paths to load in order (dependencies and
    soft dependencies first, each module once, in the first group that needs it); and the names
    that are neither modules nor built in."""
    paths = {name_of(mod): mod for mod in deps}
    order: List[str] = []
    seen: Set[str] = set()
    missing: List[str] = []

    def visit(mod: str) -> None:
        if mod in seen:
            return
        seen.add(mod)
        for dep in reversed(deps[mod]):
            visit(dep)
        order.append(mod)

    def want(name: str) -> None:
        name = name.replace('-', '_')
        for pre in soft.get(name, []):
            if pre in paths:
                want(pre)
        if name in paths:
            visit(paths[name])
        elif name not in builtin:
            missing.append(name)

    result = []
    for group in groups:
        start = len(order)
        for name in group:
            want(name)
        result.append(order[start:])
    return result, missing


def copy_module(src: str, dst: str) -> None:
    """A module, decompressed (the initramfs's insmod takes plain .ko files)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if src.endswith('.xz'):
        with lzma.open(src) as fin, open(dst, 'wb') as fout:
            shutil.copyfileobj(fin, fout)
    elif src.endswith('.zst'):
        with open(dst, 'wb') as fout:
            subprocess.run(['zstd', '-dcq', src], stdout=fout, check=True)
    else:
        shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)


def plain_path(mod: str) -> str:
    return mod.rsplit('.ko', 1)[0] + '.ko'


def watchdog_lines(deps: Dict[str, List[str]], soft: Dict[str, List[str]], builtin: Set[str]) -> List[str]:
    """"DEVICE PARAMETER MODULE..." for each watchdog of WATCHDOGS this kernel has (its modules with
    their dependencies, in load order; the last one takes PARAMETER)."""
    lines = []
    for device, parameter, names in WATCHDOGS:
        (mods,), missing = load_order(deps, soft, builtin, [list(names)])
        if not missing and mods:
            lines.append(' '.join([device, parameter] + [plain_path(mod) for mod in mods]))
    return lines


def initramfs(moddir: str, out: str, order_file: str, wanted: List[str], later: List[str]) -> None:
    with open(os.path.join(moddir, 'modules.builtin')) as handle:
        builtin = {name_of(line.strip()) for line in handle}
    deps, soft = read_deps(moddir), read_softdeps(moddir)
    (first, second), missing = load_order(deps, soft, builtin, [wanted, later])
    if missing:
        print('initramfs:   not in this kernel (skipped): %s' % ' '.join(missing))
    watchdogs = watchdog_lines(deps, soft, builtin)
    extra = sorted({path for line in watchdogs for path in line.split()[2:]})
    for mod in first + second:
        copy_module(os.path.join(moddir, mod), os.path.join(out, plain_path(mod)))
    for mod in deps:
        if plain_path(mod) in extra:
            copy_module(os.path.join(moddir, mod), os.path.join(out, plain_path(mod)))
    for path, lines in ((order_file, [plain_path(mod) for mod in first]),
                        (order_file + '-later', [plain_path(mod) for mod in second]),
                        (order_file + '-watchdogs', watchdogs)):
        with open(path, 'w') as handle:
            handle.write(''.join(line + '\n' for line in lines))
    print('initramfs:   %d + %d modules (with dependencies), %d watchdogs' % (len(first), len(second), len(watchdogs)))


def is_static_elf(data: bytes) -> bool:
    """A 64-bit little-endian ELF whose program headers have no PT_INTERP (3)."""
    if data[:4] != b'\x7fELF' or len(data) < 64 or data[4] != 2:
        return False
    phoff, = struct.unpack_from('<Q', data, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', data, 0x36)
    if phoff + phnum * phentsize > len(data):
        return False
    types = [struct.unpack_from('<I', data, phoff + i * phentsize)[0] for i in range(phnum)]
    return 3 not in types


def main(argv: List[str]) -> int:
    if len(argv) >= 2 and argv[0] == 'prune':
        dropped, total = prune(argv[1])
        print('image:   %d of %d modules removed' % (dropped, total))
        return 0
    if len(argv) >= 4 and argv[0] == 'initramfs' and '--' in argv:
        split = argv.index('--')
        initramfs(argv[1], argv[2], argv[3], argv[4:split], argv[split + 1:])
        return 0
    if len(argv) == 2 and argv[0] == 'is-static':
        with open(argv[1], 'rb') as handle:
            return 0 if is_static_elf(handle.read(1 << 16)) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
