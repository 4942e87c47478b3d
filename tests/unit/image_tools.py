# -*- coding: utf-8 -*-
"""The on-host tools of image/tools/ (fvlib, fvstate, fvslot, fvinstall, assemble), imported as the
image imports them: by name, from one directory on sys.path."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
IMAGE = os.path.join(ROOT, 'image')
TOOLS = os.path.join(IMAGE, 'tools')
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)

fvlib = importlib.import_module('fvlib')
fvstate = importlib.import_module('fvstate')
fvslot = importlib.import_module('fvslot')
fvinstall = importlib.import_module('fvinstall')
assemble = importlib.import_module('assemble')


def load_file(name: str, path: str):
    """A module from a file that is not on sys.path (image/build/kmodules.py)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
