# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provision role's media server: serves the ISO and the seeds to the BMCs for one play.

    serve.py start --root DIR --address ADDR --port PORT    start it (or find it running); prints JSON
    serve.py stop  --root DIR                               stop the one serving DIR (if any)

Only the regular files at the top of DIR are served (GET and HEAD, single byte ranges, as BMCs
fetch virtual media in pieces); no listings, no subdirectories, no dot files. The server's pid
file and log are in DIR/.fvserve/ (a dot directory: never served). ``start`` returns once the
server answers; ``stop`` ends only a process whose command line is this server for this DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

STATE = '.fvserve'
CHUNK = 1 << 20
_RANGE = re.compile(r'^bytes=(\d*)-(\d*)$')


class MediaHandler(http.server.BaseHTTPRequestHandler):
    root = '.'
    server_version = 'fvserve/1'
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt: str, *args: Any) -> None:
        sys.stderr.write('%s %s\n' % (time.strftime('%Y-%m-%dT%H:%M:%S'), fmt % args))

    def _file(self) -> Optional[str]:
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip('/')
        if not name or '/' in name or '\\' in name or name.startswith('.'):
            return None
        path = os.path.join(self.root, name)
        return path if os.path.isfile(path) else None

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = self._file()
        if path is None:
            self.send_error(404, 'not served here')
            return
        size = os.path.getsize(path)
        span = byte_range(self.headers.get('Range'), size)
        if span == 'bad':
            self.send_response(416)
            self.send_header('Content-Range', 'bytes */%d' % size)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        start, end = span if isinstance(span, tuple) else (0, size - 1)
        self.send_response(206 if isinstance(span, tuple) else 200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Accept-Ranges', 'bytes')
        self.send_header('Content-Length', str(max(end - start + 1, 0)))
        if isinstance(span, tuple):
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, end, size))
        self.end_headers()
        if not body or size == 0:
            return
        with open(path, 'rb') as handle:
            handle.seek(start)
            left = end - start + 1
            while left > 0:
                data = handle.read(min(CHUNK, left))
                if not data:
                    break
                self.wfile.write(data)
                left -= len(data)


def byte_range(header: Optional[str], size: int) -> Any:
    """None (the whole file), (first, last) or 'bad' for a Range header; several ranges are served whole."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match:
        return None if header.strip().startswith('bytes=') and ',' in header else 'bad'
    first, last = match.group(1), match.group(2)
    if first == '' and last == '':
        return 'bad'
    if first == '':   # the last N bytes
        count = int(last)
        if count == 0:
            return 'bad'
        return (max(size - count, 0), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return 'bad'
    return (start, end)


# ---- start / stop -----------------------------------------------------------------------------------
def state_dir(root: str) -> str:
    return os.path.join(root, STATE)


def _alive(pid: int, root: str) -> bool:
    """Whether ``pid`` is this server for ``root`` (not a recycled pid)."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv = handle.read().decode('utf-8', 'replace').split('\0')
    except OSError:
        return False
    return any(arg.endswith('serve.py') for arg in argv) and 'run' in argv and os.path.abspath(root) in argv


def running(root: str) -> Optional[Dict[str, Any]]:
    try:
        with open(os.path.join(state_dir(root), 'server.json')) as handle:
            info = json.load(handle)
    except (OSError, ValueError):
        return None
    return info if _alive(int(info.get('pid', 0)), root) else None


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + '/', timeout=2):
            return True
    except urllib.error.HTTPError:
        return True   # 404 for / is an answer
    except (OSError, ValueError):
        return False


def start(root: str, address: str, port: int, timeout: float = 30.0) -> Tuple[bool, Dict[str, Any]]:
    """(started now, {url, pid, root, address, port}); a server already serving ``root`` on the same
    address and port is kept, one on another address or port is an error."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise SystemExit('serve.py: %s is not a directory' % root)
    found = running(root)
    if found:
        if (found['address'], found['port']) != (address, port):
            raise SystemExit('serve.py: %s is served on %s:%d already' % (root, found['address'], found['port']))
        return False, found
    os.makedirs(state_dir(root), mode=0o700, exist_ok=True)
    log = os.path.join(state_dir(root), 'server.log')
    with open(log, 'ab') as out:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), 'run', '--root', root, '--address', address,
                                 '--port', str(port)], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, close_fds=True)
    host = '[%s]' % address if ':' in address else address
    info = {'pid': proc.pid, 'root': root, 'address': address, 'port': port, 'url': 'http://%s:%d' % (host, port)}
    deadline = time.monotonic() + timeout
    while not answers(info['url']):
        if proc.poll() is not None:
            raise SystemExit('serve.py: the server exited (%s): %s' % (proc.returncode, _tail(log)))
        if time.monotonic() > deadline:
            stop_group(proc.pid)
            raise SystemExit('serve.py: no answer on %s within %ds: %s' % (info['url'], timeout, _tail(log)))
        time.sleep(0.1)
    with open(os.path.join(state_dir(root), 'server.json'), 'w') as handle:
        json.dump(info, handle)
    return True, info


def stop(root: str) -> bool:
    root = os.path.abspath(root)
    found = running(root)
    if found:
        stop_group(int(found['pid']))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(state_dir(root), 'server.json'))
    return found is not None


def gone(pid: int) -> bool:
    """The process has ended: reaped, or a zombie its (re)parent has not reaped yet (a container
    whose PID 1 does not reap)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except (OSError, IndexError):
        return True


def stop_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group of pid (started with start_new_session), SIGKILL after ``grace``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if gone(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _tail(path: str) -> str:
    try:
        with open(path, errors='replace') as handle:
            return ' | '.join(handle.read().strip().splitlines()[-5:])
    except OSError:
        return '(no log)'


def _interrupt(*_args: Any) -> None:
    raise KeyboardInterrupt()


def run(root: str, address: str, port: int) -> None:
    handler = type('Handler', (MediaHandler,), {'root': os.path.abspath(root)})
    server_class = http.server.ThreadingHTTPServer
    if ':' in address:
        import socket
        server_class = type('Server6', (http.server.ThreadingHTTPServer,), {'address_family': socket.AF_INET6})
    server = server_class((address, port), handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('action', choices=('start', 'stop', 'run'))
    parser.add_argument('--root', required=True)
    parser.add_argument('--address', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=0)
    args = parser.parse_args(argv)
    if args.action == 'run':
        run(args.root, args.address, args.port)
        return 0
    if args.action == 'start':
        if not args.port:
            parser.error('start needs --port')
        changed, info = start(args.root, args.address, args.port)
        print(json.dumps(dict(info, changed=changed)))
        return 0
    print(json.dumps({'changed': stop(args.root)}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
