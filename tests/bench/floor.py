# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The floor: plain libvirt-python doing the calls a converge / no-op cannot do without.

    floor.py URI converge|noop DOMAINS.json

One connection. ``converge``: for each domain, lookupByName (a miss) and defineXML.
``noop``: for each domain, lookupByName and XMLDesc(INACTIVE) -- the reads a no-op needs.
Prints JSON: ``elapsed`` (seconds after connecting, as the vms module reports its own) and
``connect`` (seconds to connect).
"""

import json
import sys
import time

import libvirt


def main() -> None:
    uri, mode, path = sys.argv[1:4]
    with open(path) as handle:
        domains = json.load(handle)['bench_domains']
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    started = time.monotonic()
    conn = libvirt.open(uri)
    connected = time.monotonic()
    for domain in domains:
        if mode == 'converge':
            try:
                conn.lookupByName(domain['name'])
                raise SystemExit('floor: %s exists already' % domain['name'])
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
            conn.defineXML(domain['xml'])
        else:
            conn.lookupByName(domain['name']).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    done = time.monotonic()
    conn.close()
    print(json.dumps({'elapsed': round(done - connected, 4), 'connect': round(connected - started, 4)}))


if __name__ == '__main__':
    main()
