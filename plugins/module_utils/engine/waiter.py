# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waits: a predicate, a clock and a timeout that names what was waited for.

Each resource keeps a table of named predicates (``{'running': ..., 'stopped': ...}``) and waits
through a :class:`Waiter`; check mode gets :class:`NoWait`, which never polls and never sleeps.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvTimeout

Predicate = Callable[[], Any]


class Waiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 progress: Optional[Callable[[str], None]] = None) -> None:
        self.clock, self.sleep, self.progress = clock, sleep, progress

    def wait(self, predicate: Predicate, timeout: float, what: str, interval: float = 0.25,
             report_every: float = 30.0) -> Any:
        """Poll ``predicate`` until it returns something true, and return that; raise FvTimeout
        naming ``what`` after ``timeout`` seconds."""
        start = self.clock()
        deadline, reported = start + timeout, start
        while True:
            value = predicate()
            if value:
                return value
            now = self.clock()
            if now >= deadline:
                raise FvTimeout('timed out after %ss waiting for %s' % (timeout, what))
            if self.progress is not None and now - reported >= report_every:
                reported = now
                self.progress('still waiting for %s (%ds of %ss)' % (what, now - start, timeout))
            self.sleep(min(interval, max(deadline - now, 0)))


class NoWait(Waiter):
    """Check mode: nothing happens, so there is nothing to wait for."""

    def wait(self, predicate: Predicate, timeout: float, what: str, interval: float = 0.25,
             report_every: float = 30.0) -> Any:
        return True


def waiter_for(check_mode: bool, progress: Optional[Callable[[str], None]] = None) -> Waiter:
    return NoWait() if check_mode else Waiter(progress=progress)
