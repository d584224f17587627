#!/usr/bin/env bash
# Bring a fresh Debian machine (root, Python 3.11) to a working checkout:
#   scripts/bootstrap.sh python   uv + the locked .venv
#   scripts/bootstrap.sh peers    + the real DICOM peers the integration tests talk to, and
#                                 podman/buildah/mmdebstrap for the image tests and `make image`
# Idempotent: it installs only what is missing, so `make demo` / `make test` can call it
# every time.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.9"
APT_PACKAGES=(dcmtk dicom3tools orthanc orthanc-dicomweb prometheus
    podman buildah skopeo runc mmdebstrap containernetworking-plugins
    shellcheck util-linux iproute2 uidmap)

need_python() {
    if ! command -v uv >/dev/null 2>&1 || [[ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]]; then
        python3 -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
    fi
    # --frozen: install exactly the lock, never re-resolve.
    uv sync --frozen --quiet
}

need_peers() {
    local missing=()
    for package in "${APT_PACKAGES[@]}"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if ((${#missing[@]})); then
        if [[ $(id -u) -ne 0 ]]; then
            echo "bootstrap: missing Debian packages ${missing[*]} and not root; install them" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    scripts/setup_podman.sh
}

case "${1:-python}" in
    python) need_python ;;
    peers) need_python; need_peers ;;
    *) echo "usage: $0 [python|peers]" >&2; exit 2 ;;
esac
