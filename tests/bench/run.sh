#!/usr/bin/env bash
# `make bench`: the performance benchmark of the vms/vm modules against community.libvirt and a
# plain libvirt-python floor, on the local libvirtd. Writes docs/performance.md.
#
# Environment (all optional):
#   ANSIBLE_PLAYBOOK   ansible-playbook of the project's environment (default: the one on PATH)
#   BENCH_URI          libvirt URI (default qemu:///system)
#   BENCH_SIZES        VM counts, comma separated (default 50,200,1000; the per-VM loops stop at 200)
#   BENCH_VENV         the bench's own virtualenv (default .cache/bench-venv)
#   BENCH_PYTHON       python used to create it (default python3)
#   BENCH_ARGS         extra arguments for bench.py (e.g. "--variants vms,floor --no-write")
#   BENCH_IMAGE=0      skip the image bench (image_bench.py)
#   BENCH_SERVER=0     skip the provisioning bench (server_bench.py: server, qemu and redfish; it holds
#                      /tmp/firmvisor-cpu.lock for its whole run unless run under flock of it already)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

# Pinned: the community `ansible` package whose ansible-core is 2.19.x (as the project's), and the
# libvirt bindings matching the local libvirt 9.0 (built from the sdist). lxml is what
# community.libvirt.virt imports.
ANSIBLE_PIN=ansible==12.3.0
LIBVIRT_PIN=libvirt-python==9.0.0
LXML_PIN=lxml==6.1.3

venv=${BENCH_VENV:-$root/.cache/bench-venv}
python=${BENCH_PYTHON:-python3}
pyver=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
stamp="$ANSIBLE_PIN $LIBVIRT_PIN $LXML_PIN python-$pyver"

if [[ ! -f "$venv/.bench-stamp" || "$(cat "$venv/.bench-stamp")" != "$stamp" ]]; then
    echo "bench: creating $venv ($stamp)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "$ANSIBLE_PIN" "$LIBVIRT_PIN" "$LXML_PIN"
    echo "$stamp" > "$venv/.bench-stamp"
else
    echo "bench: $venv is current ($stamp)"
fi

playbook=${ANSIBLE_PLAYBOOK:-$(command -v ansible-playbook || true)}
if [[ -z "$playbook" ]]; then
    echo "bench: no ansible-playbook on PATH and ANSIBLE_PLAYBOOK is not set (run make setup)" >&2
    exit 2
fi

# If bench.py is killed between its own cleanups, leave no fvbench-* domain behind.
cleanup() {
    "$venv/bin/python" "$here/bench.py" --cleanup-only --uri "${BENCH_URI:-qemu:///system}" || true
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# shellcheck disable=SC2086
"$venv/bin/python" "$here/bench.py" \
    --playbook "$playbook" \
    --community-playbook "$venv/bin/ansible-playbook" \
    --uri "${BENCH_URI:-qemu:///system}" \
    --sizes "${BENCH_SIZES:-50,200,1000}" \
    --report "$root/docs/performance.md" \
    ${BENCH_ARGS:-}
[[ "${BENCH_IMAGE:-1}" == 0 ]] || "$root/.venv/bin/python" "$here/image_bench.py" --report "$root/docs/performance.md"
[[ "${BENCH_SERVER:-1}" == 0 ]] || "$root/.venv/bin/python" "$here/server_bench.py" --report "$root/docs/performance.md"
