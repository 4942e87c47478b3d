# -*- coding: utf-8 -*-
"""A fake image source tree: the layout of image/ with build steps that take no time (the real build
runs in molecule/embedded). Each fake step notes in build.log where it ran from."""

from __future__ import annotations

import stat

FAKE_STEPS = {
    'build/rootfs.sh': ('mkdir -p "$1/boot" "$1/var/lib/dpkg"; echo kernel > "$1/boot/vmlinuz-6.1"\n'
                        'printf "Package: tiny\\nStatus: install ok installed\\nVersion: 1.0-1\\n\\n" > "$1/var/lib/dpkg/status"\n'),
    'build/initramfs.sh': 'echo initrd > "$2"\n',
    'build/squashfs.sh': 'echo squash > "$2"\n',
    'build/boot.sh': 'mkdir -p "$1"; for f in core.img boot.img BOOTX64.EFI; do echo $f > "$1/$f"; done\n',
    'build/iso.sh': 'echo iso > "$1"\n',
    'tools/assemble.py': ('import sys\nargs = sys.argv[1:]\nprint("ran from", __file__)\n'
                          'open(args[args.index("--out") + 1], "w").write("disk")\n'),
}


def make_tree(root, packages='tiny'):
    """The fake tree in ``root`` (a pathlib.Path); returns it."""
    (root / 'grub').mkdir(parents=True)
    (root / 'grub' / 'grub.cfg').write_text('menuentry x {}\n')
    (root / 'packages.list').write_text('# base\n%s\n' % packages)
    (root / 'dev').mkdir()
    (root / 'dev' / 'boot.sh').write_text('#!/bin/sh\necho a harness, never shipped\n')
    for name, body in FAKE_STEPS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith('.sh'):
            body = '#!/bin/sh\nset -e\necho "ran from $0"\n' + body
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return root


def ran_from(log_text):
    """The paths the fake steps say they ran from, in build.log."""
    return [line.split('ran from ', 1)[1].strip() for line in log_text.splitlines() if line.startswith('ran from ')]
