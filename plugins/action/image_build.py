# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action of firmvisor.hypervisor.image_build: build the image on the host the task runs on.

That host need not be the controller. The image source tree (``files``, by default the
collection's own ``image/``) lives on the controller: it is packed into a tar (without ``dev/``, the
developers' harnesses) and copied into the task's remote temporary directory, where the module
unpacks it. The module then runs once to plan (``step: plan``: is the image current? which steps?),
once per build step, and once to finish (artifacts and manifest), and each step is printed on the
controller as it starts and as it finishes, with its time, so that a user watching
``ansible-playbook`` sees the build move. The remote temporary directory goes at the end, whatever
happens.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import time
from typing import Any, Dict, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

MODULE = 'firmvisor.hypervisor.image_build'
# plugins/action/ -> the collection's root -> image/
DEFAULT_TREE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'image')
HARNESSES = 'dev'
INTERNAL = ('step', 'archive')
# Fixed metadata in the tar: its bytes depend on the tree's paths, modes and contents only.
TAR_MTIME = 1735689600


def pack_tree(tree: str, out: str) -> int:
    """A tar of ``tree`` (sorted; owner 0; fixed times; modes kept) without dev/ and bytecode;
    returns the number of files."""
    count = 0
    with tarfile.open(out, mode='w', format=tarfile.GNU_FORMAT) as tar:
        for folder, dirs, files in os.walk(tree):
            rel_folder = os.path.relpath(folder, tree)
            dirs[:] = sorted(d for d in dirs if d != '__pycache__' and not (rel_folder == '.' and d == HARNESSES))
            for name in sorted(dirs) + sorted(f for f in files if not f.endswith('.pyc')):
                path = os.path.join(folder, name)
                info = tar.gettarinfo(path, arcname=os.path.normpath(os.path.join(rel_folder, name)))
                if not (info.isdir() or info.isreg()):
                    raise AnsibleActionFail('image_build: %s is neither a file nor a directory' % path)
                info.uid = info.gid = 0
                info.uname = info.gname = 'root'
                info.mtime = TAR_MTIME
                if info.isreg():
                    with open(path, 'rb') as handle:
                        tar.addfile(info, handle)
                    count += 1
                else:
                    tar.addfile(info)
    return count


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp  # unused since ansible-core 2.10: the connection's tmpdir is used
        args = dict(self._task.args)
        host = (task_vars or {}).get('inventory_hostname', 'build host')
        for name in INTERNAL:
            if name in args:
                raise AnsibleActionFail('image_build: %s is set by the action plugin; leave it out' % name)
        tree = os.path.abspath(os.path.expanduser(args.get('files') or DEFAULT_TREE))
        if not os.path.isdir(os.path.join(tree, 'build')):
            raise AnsibleActionFail('image_build: files: %s on the controller is not an image source tree '
                                    '(no build/)' % tree)

        if self._connection._shell.tmpdir is None:
            self._make_tmp_path()
        remote_tmp = self._connection._shell.tmpdir
        remote_archive = self._connection._shell.join_path(remote_tmp, 'image.tar')
        remote_tree = self._connection._shell.join_path(remote_tmp, 'image')
        local = tempfile.NamedTemporaryFile(prefix='fv-image-', suffix='.tar', delete=False)
        local.close()
        try:
            count = pack_tree(tree, local.name)
            display.vv('image_build: copying the image tree %s (%d files) to %s:%s'
                       % (tree, count, host, remote_tree))
            self._transfer_file(local.name, remote_archive)
            self._fixup_perms2((remote_tmp, remote_archive))
            common = dict(args, files=remote_tree)
            planned = self._module(dict(common, step='plan', archive=remote_archive), task_vars)
            if planned.get('failed') or not planned.get('changed') or self._task.check_mode:
                result.update(planned)
                return result
            steps = planned['steps']
            display.display('image_build [%s]: building firmvisor %s in %s (%s): %d steps'
                            % (host, planned['manifest']['inputs']['version'], args.get('dest'),
                               planned['reason'], len(steps)))
            started = time.monotonic()
            for number, step in enumerate(steps, start=1):
                display.display('image_build [%s]: step %d/%d %s: started' % (host, number, len(steps), step['title']))
                done = self._module(dict(common, step=step['id']), task_vars)
                if done.get('failed'):
                    display.display('image_build [%s]: step %d/%d %s: FAILED after %s s'
                                    % (host, number, len(steps), step['title'], done.get('seconds', '?')))
                    result.update(done)
                    return result
                display.display('image_build [%s]: step %d/%d %s: finished in %.1f s'
                                % (host, number, len(steps), step['title'], done['seconds']))
            finished = self._module(dict(common, step='finish'), task_vars)
            if not finished.get('failed'):
                display.display('image_build [%s]: built in %.0f s' % (host, time.monotonic() - started))
            result.update(finished)
            return result
        finally:
            os.unlink(local.name)
            self._remove_tmp_path(self._connection._shell.tmpdir)

    def _module(self, module_args: Dict[str, Any], task_vars: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        return self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars)
