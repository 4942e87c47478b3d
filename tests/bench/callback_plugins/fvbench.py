# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stdout callback of the benchmark: a line per task, and a JSON summary for bench.py.

The summary (written to ``$FVBENCH_RESULT``) holds, per task, whether it changed or failed, the
module's own ``elapsed`` when it reports one, and the play recap's per-host counters. The same
small callback is used for every variant, so output cost is the same for all of them.
"""

from __future__ import annotations

DOCUMENTATION = r'''
name: fvbench
type: stdout
short_description: firmvisor benchmark summary
description:
  - Writes a JSON summary of the task results and the recap to the file named by C(FVBENCH_RESULT).
options: {}
'''

import json
import os

from ansible.plugins.callback import CallbackBase


def _result(result):
    data = getattr(result, 'result', None)
    return data if isinstance(data, dict) else result._result


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'fvbench'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks = []

    def _record(self, result, status):
        data = _result(result)
        entry = {'task': result.task_name if hasattr(result, 'task_name') else result._task.get_name(),
                 'status': status, 'changed': bool(data.get('changed')), 'failed': status == 'failed'}
        if 'elapsed' in data:
            entry['elapsed'] = data['elapsed']
        if isinstance(data.get('results'), list):
            entry['items'] = len(data['results'])
            entry['items_changed'] = sum(1 for r in data['results'] if isinstance(r, dict) and r.get('changed'))
            failed = [r for r in data['results'] if isinstance(r, dict) and r.get('failed')]
            if failed:
                entry['msg'] = '%d item(s) failed, first: %s' % (len(failed), failed[0].get('msg'))
        if status in ('failed', 'unreachable') and 'msg' not in entry:
            entry['msg'] = data.get('msg') or data.get('stderr') or data.get('module_stderr')
        self.tasks.append(entry)
        self._display.display('%s: %s%s%s' % (
            entry['task'], status, ' changed' if entry['changed'] else '',
            ' (%s)' % entry['msg'] if entry.get('msg') else ''))

    def v2_runner_on_ok(self, result):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'failed')

    def v2_runner_on_unreachable(self, result):
        self._record(result, 'unreachable')

    def v2_runner_on_skipped(self, result):
        self._record(result, 'skipped')

    def v2_playbook_on_stats(self, stats):
        recap = {host: stats.summarize(host) for host in sorted(stats.processed)}
        self._display.display('recap: %s' % json.dumps(recap, sort_keys=True))
        path = os.environ.get('FVBENCH_RESULT')
        if path:
            with open(path, 'w') as handle:
                json.dump({'tasks': self.tasks, 'recap': recap}, handle, indent=1)
