#!/usr/bin/env bash
# Bring a fresh Debian 12 machine (Python 3.11) to a working checkout:
#   scripts/bootstrap.sh runtime  uv + the appliance runtime in .venv (no torch, no dev
#                                 tools): what `make demo` and `make serve` need
#   scripts/bootstrap.sh python   uv + the whole locked .venv (runtime and the builder, dev
#                                 and release groups; torch needs its CPU wheel, see below)
#   scripts/bootstrap.sh peers    python + the real DICOM peers the integration tests talk
#                                 to, and podman/buildah/mmdebstrap for the image tests
# Idempotent: it installs only what is missing, so `make demo` / `make test` call it every
# time (a second run takes about a second).
#
# uv (pinned) lives in its own venv, .tools/uv (git-ignored): never pip into the system
# Python (Debian refuses it, PEP 668). Making that venv needs Python's venv module, which
# stock Debian ships separately (python3-venv); as root it is installed here.
#
# torch: the lock pins the CPU build torch==2.13.0+cpu, found through `find-links` in
# wheels/ (pyproject.toml [tool.uv]); PyPI's torch of that version is a multi-GB CUDA
# build. The full environment needs TORCH_WHEEL in wheels/: it is linked from
# $MINIVESS_WHEEL_DIR (default /opt/wheels, where machines of this kind keep it), or put
# there by hand; without it the python and peers modes stop before installing anything.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.9"
UV_VENV=.tools/uv
UV="$PWD/$UV_VENV/bin/uv"
TORCH_WHEEL="torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
TORCH_INDEX="https://download.pytorch.org/whl/cpu/torch/"
APT_PACKAGES=(dcmtk dicom3tools orthanc orthanc-dicomweb prometheus
    podman buildah skopeo runc mmdebstrap containernetworking-plugins
    shellcheck util-linux iproute2 uidmap catatonit
    chromium chromium-driver postgresql)

die() {
    echo "bootstrap: $*" >&2
    exit 1
}

apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        die "missing Debian packages $*; not root, so install them first: apt-get install $*"
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

need_uv() {
    if [[ -x $UV && "$("$UV" --version 2>/dev/null | awk '{print $2}')" == "$UV_VERSION" ]]; then
        return
    fi
    command -v python3 >/dev/null 2>&1 || die "no python3: install Python 3.11 (apt-get install python3)"
    # Debian's python3 has the venv module but not ensurepip (package python3-venv), and
    # without ensurepip `python3 -m venv` cannot put pip into the new venv.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    echo "bootstrap: uv ${UV_VERSION} into ${UV_VENV}" >&2
    rm -rf "$UV_VENV"
    python3 -m venv "$UV_VENV"
    "$UV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
    [[ -x $UV ]] || die "pip installed uv ${UV_VERSION} but there is no $UV"
}

need_torch_wheel() {
    # Checked before any install: the full sync would otherwise fail only after minutes.
    local source="${MINIVESS_WHEEL_DIR:-/opt/wheels}/$TORCH_WHEEL"
    if [[ ! -f wheels/$TORCH_WHEEL && -f $source ]]; then
        ln -sfn "$(realpath "$source")" "wheels/$TORCH_WHEEL"
    fi
    if [[ ! -f wheels/$TORCH_WHEEL ]]; then
        die "the full environment (make test, make models) needs the CPU build of torch:
  $TORCH_WHEEL
not found in wheels/ nor in ${MINIVESS_WHEEL_DIR:-/opt/wheels} (MINIVESS_WHEEL_DIR).
Download it from the PyTorch CPU wheel index, $TORCH_INDEX
into $PWD/wheels/ (or into \$MINIVESS_WHEEL_DIR), then run this again.
(make demo needs no torch.)"
    fi
}

need_runtime() {
    need_uv
    # --no-default-groups: only the project's dependencies, the appliance runtime (no
    # torch, no dev tools). --inexact: add what is missing but remove nothing, so that
    # `make demo` in a full development environment (after `make test`) leaves torch and
    # the dev tools in place instead of uninstalling them on every demo run.
    "$UV" sync --frozen --quiet --no-default-groups --inexact
}

need_python() {
    need_torch_wheel
    need_uv
    # --frozen: install exactly the lock, never re-resolve. Every group (default-groups),
    # exact: packages the lock does not list are removed.
    "$UV" sync --frozen --quiet --all-groups
}

need_peers() {
    local missing=()
    for package in "${APT_PACKAGES[@]}"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    fi
    scripts/setup_podman.sh
}

case "${1:-python}" in
    runtime) need_runtime ;;
    python) need_python ;;
    peers) need_python; need_peers ;;
    *) echo "usage: $0 [runtime|python|peers]" >&2; exit 2 ;;
esac
