# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The errors every layer raises: each message is fit for the user, naming the object and the cause."""

from __future__ import annotations


from typing import Any


class FvError(Exception):
    """An error with a message fit for the user: it names the object and the cause.

    ``details`` are extra result keys a failed module reports (what was done so far, say).
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class FvTimeout(FvError):
    """A wait ran out of time; the message names what was waited for."""
