# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cloud-init NoCloud seed of a VM: its files, their digest (kept in the domain's metadata so
an unchanged seed is not rebuilt) and the ISO, made when the plan is carried out."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any, Dict, Mapping, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.xmldoc import Document

CLOUD_INIT_SPEC = dict(
    user_data=dict(type='raw'),
    meta_data=dict(type='dict'),
    network_config=dict(type='dict'),
    pool=dict(type='str'),
)


def seed_files(name: str, spec: Mapping[str, Any]) -> Dict[str, str]:
    """The NoCloud seed's files; instance-id defaults to the VM name. ``user_data`` is a
    cloud-config document as a string (taken as it is) or a dict (written as #cloud-config)."""
    user_data = spec.get('user_data')
    if user_data is None:
        user_data = '#cloud-config\n{}\n'
    elif isinstance(user_data, dict):
        user_data = '#cloud-config\n' + json.dumps(user_data, indent=2, sort_keys=True) + '\n'
    elif not isinstance(user_data, str):
        raise FvError('cloud_init.user_data must be a string (a cloud-config document) or a dict, not a %s'
                      % type(user_data).__name__)
    meta = {'instance-id': name, 'local-hostname': name}
    meta.update(spec.get('meta_data') or {})
    files = {'user-data': user_data, 'meta-data': json.dumps(meta, indent=2, sort_keys=True) + '\n'}
    if spec.get('network_config'):
        files['network-config'] = json.dumps(spec['network_config'], indent=2, sort_keys=True) + '\n'
    return files


def seed_digest(files: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for key in sorted(files):
        digest.update(key.encode() + b'\0' + files[key].encode() + b'\0')
    return digest.hexdigest()


def iso_tool() -> str:
    tool = shutil.which('genisoimage') or shutil.which('mkisofs') or shutil.which('xorrisofs')
    if tool is None:
        raise FvError('cloud_init needs genisoimage, mkisofs or xorrisofs on the machine running the module')
    return tool


def build_iso(files: Mapping[str, str], dest: str, label: str = 'cidata') -> None:
    """An ISO 9660 (Joliet, Rock Ridge) image labelled ``label`` holding ``files``."""
    tool = iso_tool()
    workdir = tempfile.mkdtemp(prefix='firmvisor-seed-')
    try:
        for key, text in files.items():
            with open(os.path.join(workdir, key), 'w') as handle:
                handle.write(text)
        cmd = [tool, '-quiet', '-output', dest, '-volid', label, '-joliet', '-rock'] + \
              [os.path.join(workdir, key) for key in sorted(files)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise FvError('building the %s seed failed: %s' % (label, proc.stderr.strip()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def seed_name(vm: str) -> str:
    return '%s-cidata.iso' % vm


def read_seed(doc: Document) -> Optional[str]:
    """The digest of the seed the domain has (from its metadata)."""
    return doc.get_meta('cloud-init')
