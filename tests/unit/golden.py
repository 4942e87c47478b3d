# -*- coding: utf-8 -*-
"""Golden XML files of the unit tests."""

from __future__ import annotations

import os

XML_DIR = os.path.join(os.path.dirname(__file__), 'xml')


def read_xml(name: str) -> str:
    with open(os.path.join(XML_DIR, name)) as handle:
        return handle.read()
