# -*- coding: utf-8 -*-
"""The provision role's media server (roles/provision/files/serve.py): only the top-level files of
its directory, byte ranges, start and stop that find it again and end nothing else."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', 'roles', 'provision', 'files', 'serve.py')
spec = importlib.util.spec_from_file_location('fvserve', SCRIPT)
serve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(serve)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    root = tmp_path / 'www'
    root.mkdir()
    (root / 'firmvisor.iso').write_bytes(bytes(range(256)) * 16)
    (root / '.hidden').write_text('no')
    (root / 'sub').mkdir()
    (root / 'sub' / 'x').write_text('no')
    port = free_port()
    changed, info = serve.start(str(root), '127.0.0.1', port)
    assert changed and info['url'] == 'http://127.0.0.1:%d' % port
    yield root, info
    serve.stop(str(root))
    assert serve.running(str(root)) is None


def get(url, headers=None, method='GET'):
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), b''


def test_serves_its_files_whole_and_in_ranges(served):
    root, info = served
    data = (root / 'firmvisor.iso').read_bytes()
    status, headers, body = get(info['url'] + '/firmvisor.iso')
    assert status == 200 and body == data and headers['Accept-Ranges'] == 'bytes'
    status, headers, body = get(info['url'] + '/firmvisor.iso', method='HEAD')
    assert status == 200 and headers['Content-Length'] == str(len(data)) and body == b''
    status, headers, body = get(info['url'] + '/firmvisor.iso', {'Range': 'bytes=10-19'})
    assert status == 206 and body == data[10:20] and headers['Content-Range'] == 'bytes 10-19/%d' % len(data)
    assert get(info['url'] + '/firmvisor.iso', {'Range': 'bytes=-4'})[2] == data[-4:]
    assert get(info['url'] + '/firmvisor.iso', {'Range': 'bytes=4000-'})[2] == data[4000:]
    assert get(info['url'] + '/firmvisor.iso', {'Range': 'bytes=99999-'})[0] == 416


@pytest.mark.parametrize('path', ['/', '/.hidden', '/sub/x', '/sub', '/../www/firmvisor.iso', '/%2e%2e/etc/passwd',
                                  '/.fvserve/server.json', '/missing.iso'])
def test_nothing_else_is_served(served, path):
    assert get(served[1]['url'] + path)[0] == 404


def test_start_again_finds_it_and_stop_ends_only_it(served, tmp_path):
    root, info = served
    changed, again = serve.start(str(root), '127.0.0.1', info['port'])
    assert not changed and again['pid'] == info['pid']
    with pytest.raises(SystemExit, match='served on 127.0.0.1:%d already' % info['port']):
        serve.start(str(root), '127.0.0.1', info['port'] + 1)
    # a pid file that names another process is not obeyed
    other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])
    try:
        (root / '.fvserve' / 'server.json').write_text(json.dumps(dict(info, pid=other.pid)))
        assert serve.running(str(root)) is None and not serve.stop(str(root))
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
        (root / '.fvserve' / 'server.json').write_text(json.dumps(info))


def test_the_command_line(tmp_path):
    root = tmp_path / 'www'
    root.mkdir()
    port = free_port()
    out = subprocess.run([sys.executable, SCRIPT, 'start', '--root', str(root), '--port', str(port)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(out)['changed'] is True
    out = subprocess.run([sys.executable, SCRIPT, 'stop', '--root', str(root)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert json.loads(out) == {'changed': True}
    assert json.loads(subprocess.run([sys.executable, SCRIPT, 'stop', '--root', str(root)], capture_output=True,
                                     text=True, check=True, timeout=60).stdout) == {'changed': False}
    with socket.socket() as sock:
        assert sock.connect_ex(('127.0.0.1', port)) != 0
