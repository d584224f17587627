#!/usr/bin/env bash
# Make podman usable as root on a build machine of this kind: runc (crun fails on its
# cgroup layout), cgroupfs, file events and explicit ulimits (containers/containers.conf).
# containers/podman.py and the tests point CONTAINERS_CONF at that file themselves; this
# installs it as the system default too, so that plain `podman run` works for people,
# unless the machine already has its own /etc/containers/containers.conf. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
target=/etc/containers/containers.conf
if [[ -e $target ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "setup_podman: not root; run podman with CONTAINERS_CONF=$PWD/containers/containers.conf" >&2
    exit 0
fi
install -D -m 0644 containers/containers.conf "$target"
