# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline stand-in for pypa's get-pip.py, for ansible-test's pip bootstrap.

ansible-test bootstraps pip into each empty virtual environment it makes by running
``python get_pip_<version>.py [pip options] pip==<version> [--no-setuptools] [--no-wheel]``,
a script it downloads unless it finds one in ``~/.ansible/test/cache``. This machine cannot
download it, so ``scripts/sanity.py`` puts this file there instead. It does what get-pip does,
with the pip wheel that the interpreter's own ``ensurepip`` bundles in place of the one get-pip
embeds: it runs that pip from its wheel and installs the requested packages (the pins
ansible-test asked for) into the running interpreter's environment, from the package index the
machine's pip configuration names.

It runs under every Python that ansible-test tests (3.8 and later), so it keeps to their syntax.
"""

from __future__ import annotations

import glob
import os
import sys

# get-pip's own options, which pip does not know: each one turns off an extra package.
GET_PIP_OPTIONS = {'--no-setuptools': 'setuptools', '--no-wheel': 'wheel'}


def pip_install_args(argv):
    """Return pip's ``install`` arguments for get-pip's command line ``argv``.

    get-pip installs pip, setuptools and wheel unless told otherwise; the options that turn
    the extras off are get-pip's own and are dropped, everything else goes to pip unchanged.
    """
    extras = ['setuptools', 'wheel']
    args = []
    for arg in argv:
        if arg in GET_PIP_OPTIONS:
            extras.remove(GET_PIP_OPTIONS[arg])
        else:
            args.append(arg)
    named = [arg.split('=')[0].split('<')[0].split('>')[0].lower() for arg in args if not arg.startswith('-')]
    if 'pip' not in named:
        args.append('pip')
    args.extend(extra for extra in extras if extra not in named)
    return ['install'] + args


def bundled_pip_wheel():
    """Return the path of the pip wheel this interpreter's ensurepip would install."""
    import ensurepip  # pylint: disable=import-outside-toplevel

    version = ensurepip.version()
    folders = [os.path.join(os.path.dirname(ensurepip.__file__), '_bundled')]
    # Debian's and some other distributions' Pythons keep the wheels outside the stdlib.
    wheel_dir = getattr(ensurepip, '_WHEEL_PKG_DIR', None)
    if wheel_dir:
        folders.append(str(wheel_dir))
    for folder in folders:
        found = sorted(glob.glob(os.path.join(folder, 'pip-%s-*.whl' % version)))
        if found:
            return found[0]
    raise SystemExit('get_pip stand-in: no pip %s wheel from ensurepip in %s (%s)' % (version, ', '.join(folders), sys.executable))


def main():
    """Install the requested packages with the pip that ensurepip bundles."""
    wheel = bundled_pip_wheel()
    sys.path.insert(0, wheel)  # pip runs from its wheel, as get-pip runs it from its own zip
    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel,import-error

    return pip_main(pip_install_args(sys.argv[1:]))


if __name__ == '__main__':
    sys.exit(main())
