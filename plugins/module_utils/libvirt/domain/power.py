# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A domain's power: its states, the predicates waits poll, and the actions that move it."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvTimeout
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.plan import Action, Handle, Note
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.waiter import Waiter
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.libvirt.connection import flag, libvirt, mapped

# libvirt's domain states
RUNNING, BLOCKED, PAUSED, SHUTDOWN, SHUTOFF, CRASHED, PMSUSPENDED = 1, 2, 3, 4, 5, 6, 7
STATE_NAMES = {0: 'unknown', RUNNING: 'running', BLOCKED: 'running', PAUSED: 'paused', SHUTDOWN: 'running',
               SHUTOFF: 'stopped', CRASHED: 'crashed', PMSUSPENDED: 'suspended'}
DOWN = ('stopped', 'crashed')

# What each state waited for looks like.
PREDICATES: Dict[str, Callable[[Any], bool]] = {
    'running': lambda dom: dom.state()[0] in (RUNNING, BLOCKED),
    'paused': lambda dom: dom.state()[0] == PAUSED,
    'stopped': lambda dom: not dom.isActive(),
}


def is_active(state: str) -> bool:
    return state not in DOWN + ('absent',)


def _tolerant(call: Callable[[], Any], dom: Any) -> None:
    """Run a shutdown or destroy; an error because the guest went down meanwhile is no error."""
    try:
        call()
    except libvirt.libvirtError:
        if dom.isActive():
            raise


def undefine(dom: Any) -> None:
    flags = (flag('VIR_DOMAIN_UNDEFINE_NVRAM') | flag('VIR_DOMAIN_UNDEFINE_MANAGED_SAVE')
             | flag('VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA') | flag('VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA'))
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        # Drivers without NVRAM or checkpoints (the test driver) refuse those flags.
        if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
            raise
        dom.undefineFlags(flag('VIR_DOMAIN_UNDEFINE_MANAGED_SAVE') | flag('VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA'))


class Power:
    """The power actions of one domain: each one waits (where asked) through the waiter."""

    def __init__(self, handle: Handle, name: str, waiter: Waiter, params: Mapping[str, Any]) -> None:
        self.handle, self.name, self.waiter = handle, name, waiter
        self.wait = bool(params.get('wait', True))
        self.wait_timeout = params.get('wait_timeout') or 120
        self.shutdown_timeout = params.get('shutdown_timeout') or 120

    def _await(self, state: str, timeout: Optional[float] = None) -> None:
        dom = self.handle.obj
        self.waiter.wait(lambda: PREDICATES[state](dom), timeout or self.wait_timeout,
                         'vm %s to be %s' % (self.name, state))

    def _step(self, verb: str, method: str, state: str, undo: Callable[[], Any], undone: str,
              description: str = '') -> Action:
        """Call ``method`` on the domain, then wait (if asked) until it is ``state``."""
        def run() -> None:
            with mapped('vm %s: %s' % (self.name, verb)):
                getattr(self.handle.obj, method)()
            if self.wait:
                self._await(state)
        return Action(description or '%s %s' % (verb, self.name), run, undo, '%s %s' % (undone, self.name))

    def start(self, description: str = '') -> Action:
        return self._step('start', 'create', 'running', self.force_off, 'force off', description)

    def resume(self) -> Action:
        return self._step('resume', 'resume', 'running', self.handle.call('suspend'), 'pause again')

    def pause(self) -> Action:
        return self._step('pause', 'suspend', 'paused', self.handle.call('resume'), 'resume')

    def shut_down(self, description: str = '', paused: bool = False) -> Action:
        """Graceful shutdown (resuming a paused guest first), forced off after shutdown_timeout."""
        def run() -> Optional[Note]:
            dom = self.handle.obj
            with mapped('vm %s: shutdown' % self.name):
                if paused and dom.state()[0] == PAUSED:
                    dom.resume()
                _tolerant(dom.shutdown, dom)
            try:
                self._await('stopped', self.shutdown_timeout)
            except FvTimeout:
                with mapped('vm %s: force off' % self.name):
                    _tolerant(dom.destroy, dom)
                return Note('vm %s did not shut down within %ss: forced off' % (self.name, self.shutdown_timeout))
            return None
        return Action(description or 'shut down %s' % self.name, run, self.handle.call('create'),
                      'start %s again' % self.name)

    def force_off(self) -> None:
        dom = self.handle.obj
        with mapped('vm %s: force off' % self.name):
            _tolerant(dom.destroy, dom)

    def transitions(self, current: str, wanted: str) -> List[Action]:
        """The actions from ``current`` to ``wanted`` (present: none)."""
        actions: List[Action] = []
        if wanted == 'present' or wanted == current:
            return actions
        if wanted in ('running', 'paused') and current in DOWN:
            actions.append(self.start())
            current = 'running'
        if wanted == 'running' and current == 'paused':
            actions.append(self.resume())
        if wanted == 'paused' and current != 'paused':
            actions.append(self.pause())
        if wanted == 'stopped' and current not in DOWN:
            actions.append(self.shut_down(paused=current == 'paused'))
        return actions
