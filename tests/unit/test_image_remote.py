# -*- coding: utf-8 -*-
"""image_build when the build host is not the controller: ansible-playbook builds, over SSH, on a host
whose sshd (127.0.0.1 only, key authentication, its own configuration) this test starts and stops. The
image tree is the fake one (image_fakes: steps that take no time), so what is proven is the shipping
of the tree, the step-by-step run with its progress lines, the cache and the clean-up, not the OS
build itself (molecule/embedded builds the real image)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from image_fakes import make_tree, ran_from

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def answers(port: int) -> bool:
    """sshd is up when it sends its banner."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=2) as sock:
            return sock.recv(64).startswith(b'SSH-')
    except OSError:
        return False


@pytest.fixture
def build_host():
    """An sshd on 127.0.0.1 that lets root in with a key made here; stopped and removed after."""
    work = tempfile.mkdtemp(prefix='fvemb-sshd-')
    proc = None
    try:
        for name in ('host', 'client'):
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'fvemb-' + name,
                            '-f', os.path.join(work, name)], check=True)
        shutil.copyfile(os.path.join(work, 'client.pub'), os.path.join(work, 'authorized_keys'))
        port = free_port()
        config = os.path.join(work, 'sshd_config')
        with open(config, 'w') as handle:
            handle.write('\n'.join([
                'ListenAddress 127.0.0.1:%d' % port, 'HostKey %s/host' % work, 'PidFile %s/sshd.pid' % work,
                'AuthorizedKeysFile %s/authorized_keys' % work, 'StrictModes no', 'UsePAM no',
                'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
                'Subsystem sftp internal-sftp', '']))
        os.makedirs('/run/sshd', mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        log = open(os.path.join(work, 'sshd.log'), 'w')
        proc = subprocess.Popen(['/usr/sbin/sshd', '-D', '-e', '-f', config], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while not answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(work, 'sshd.log')) as handle:
                    pytest.fail('sshd on 127.0.0.1:%d did not come up: %s' % (port, handle.read()))
            time.sleep(0.1)
        yield {'work': work, 'port': port, 'key': os.path.join(work, 'client')}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def playbook(build_host, tree, dest, *, check=False):
    work = build_host['work']
    inventory = os.path.join(work, 'inventory.ini')
    with open(inventory, 'w') as handle:
        handle.write('fvemb-buildhost ansible_host=127.0.0.1 ansible_port=%d ansible_user=root '
                     'ansible_ssh_private_key_file=%s ansible_python_interpreter=/usr/bin/python3 '
                     'ansible_remote_tmp=%s/remote-tmp '
                     'ansible_ssh_common_args="-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"\n'
                     % (build_host['port'], build_host['key'], work))
    play = os.path.join(work, 'build.yml')
    with open(play, 'w') as handle:
        handle.write('''---
- name: Build on a host reached over SSH
  hosts: fvemb-buildhost
  gather_facts: false
  tasks:
    - name: Build the image
      firmvisor.hypervisor.image_build:
        dest: %s
        files: %s
        packages: [dash]
        apt_sources: [%s]
      register: built
    - name: Show the result
      ansible.builtin.debug:
        msg: "RESULT {{ built | to_json }}"
''' % (dest, tree, os.path.join(work, 'sources.list')))
    with open(os.path.join(work, 'sources.list'), 'w') as handle:
        handle.write('deb file:/nowhere bookworm main\n')
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.collections'), ANSIBLE_HOME=os.path.join(work, 'home'),
               ANSIBLE_LOCAL_TEMP=os.path.join(work, 'local-tmp'), ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_STDOUT_CALLBACK='default')
    argv = [PLAYBOOK, '-i', inventory, play] + (['--check'] if check else [])
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=work, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if '"msg": "RESULT ' in line)
    result = json.loads(json.loads('{%s}' % line.strip())['msg'][len('RESULT '):])
    return result, proc.stdout


def test_build_on_a_host_reached_over_ssh(build_host, tmp_path):
    tree = make_tree(tmp_path / 'controller-image')
    dest = os.path.join(build_host['work'], 'images')

    planned, out = playbook(build_host, str(tree), dest, check=True)
    assert planned['changed'] and planned['reason'] == 'no manifest' and not os.path.exists(dest)

    built, out = playbook(build_host, str(tree), dest)
    assert built['changed'] and built['reason'] == 'no manifest'
    steps = [s['step'] for s in built['manifest']['steps']]
    assert steps == ['root filesystem', 'initramfs', 'squashfs', 'kernel', 'boot loaders', 'disk image', 'iso']
    for number, title in enumerate(steps, start=1):  # each step seen starting and finishing, with its time
        assert 'image_build [fvemb-buildhost]: step %d/7 %s: started' % (number, title) in out
        assert 'image_build [fvemb-buildhost]: step %d/7 %s: finished in ' % (number, title) in out
    with open(os.path.join(dest, 'build.log')) as handle:
        used = {os.path.dirname(path) for path in ran_from(handle.read())}
    remote_tmp = os.path.join(build_host['work'], 'remote-tmp')
    # the build ran from the copy shipped into the task's remote temporary directory, not from the
    # controller's tree, and that directory is gone again
    assert used and all(path.startswith(remote_tmp + '/') for path in used), used
    assert os.listdir(remote_tmp) == []
    assert sorted(os.listdir(dest)) == ['build.log', 'firmvisor.img', 'firmvisor.iso', 'initrd.img', 'manifest.json',
                                        'root.squashfs', 'vmlinuz']

    again, out = playbook(build_host, str(tree), dest)
    assert not again['changed'] and again['reason'] == 'current' and 'step 1/7' not in out
    assert again['manifest']['inputs']['digest'] == built['manifest']['inputs']['digest']
