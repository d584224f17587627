# health.sh: the health checks of deploy.sh (sourced; uses its engine, sitectl, log).
#
#   healthy RELEASE_DIR IMAGE_ID [quick]   C-ECHO, then /readyz (when the release has the
#                                          HTTP sidecar), then the smoke study (not quick);
#                                          on failure HEALTH_PROBLEM says which and why.
# A container that is not running, or has restarted, is unhealthy at once; otherwise each
# check waits up to HEALTH_TIMEOUT seconds. C-ECHO and /readyz are asked from inside the
# container with the image's own Python (pynetdicom, urllib): no tool on the host needed.
# shellcheck shell=bash

ECHO_PY='import logging, os, sys
logging.disable(logging.CRITICAL)
from pynetdicom import AE
ae = AE(ae_title="DEPLOYCHECK")
ae.add_requested_context("1.2.840.10008.1.1")
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
host = os.environ.get("MINIVESS_DICOM_HOST", "0.0.0.0")
port = int(os.environ.get("MINIVESS_DICOM_PORT") or 11112)
assoc = ae.associate("127.0.0.1" if host == "0.0.0.0" else host, port,
                     ae_title=os.environ.get("MINIVESS_AE_TITLE") or "MINIVESS")
status = assoc.send_c_echo() if assoc.is_established else None
assoc.release() if assoc.is_established else None
sys.exit(0 if status is not None and status.Status == 0 else 1)'
READY_PY='import os, sys, urllib.parse, urllib.request
url = urllib.parse.urlsplit(sys.argv[1])
port = os.environ.get("MINIVESS_HTTP_PORT") or url.port
with urllib.request.urlopen(f"http://127.0.0.1:{port}{url.path}", timeout=5) as answer:
    sys.exit(0 if answer.status == 200 else 1)'
alive() { # the container runs and has not restarted (a crash loop is not healthy)
    local status
    status=$(engine container inspect --format '{{.State.Status}} {{.RestartCount}}' "$NAME" 2>/dev/null) || status="missing 0"
    [[ $status == "running 0" ]] || { HEALTH_PROBLEM="the container is ${status% *} (restarts: ${status##* })" && return 1; }
}
wait_for() { # wait_for WHAT COMMAND...: until COMMAND succeeds in the container, or fail
    local what=$1 deadline=$((SECONDS + HEALTH_TIMEOUT))
    shift
    until engine exec "$NAME" "$@" >/dev/null 2>&1; do
        alive || { HEALTH_PROBLEM="$what: $HEALTH_PROBLEM" && return 1; }
        ((SECONDS < deadline)) || { HEALTH_PROBLEM="$what: no answer within ${HEALTH_TIMEOUT}s" && return 1; }
        sleep 2
    done
    log "healthy: $what"
}
smoke() { # smoke RELEASE_DIR IMAGE_ID: the bundled study through the MAP gives a valid SEG
    local dir=$1 image=$2 out args seg errors
    out=$(mktemp -d "$HOME_DIR/tmp/smoke.XXXXXX") && TEMPS+=("$out")
    mkdir "$out/output" && { chown "$APP_UID:$APP_UID" "$out/output" 2>/dev/null || chmod 0777 "$out/output"; }
    mapfile -t args < <(hardened)
    args+=(--rm --name "$NAME-smoke" --network none -v "$dir/$(sitectl get "$dir/report.json" health.smoke_study):/var/holoscan/input:ro" -v "$out/output:/var/holoscan/output")
    engine rm -f "$NAME-smoke" >/dev/null 2>&1 || true
    if ! timeout "$SMOKE_TIMEOUT" "$ENGINE" run "${args[@]}" "$image" >"$out/map.log" 2>&1 9>&-; then
        engine rm -f "$NAME-smoke" >/dev/null 2>&1 || true
        HEALTH_PROBLEM="smoke study: the MAP failed ($(tail -n1 "$out/map.log"))" && return 1
    fi
    seg=$(sitectl check-seg "$out/output" | head -n1) || { HEALTH_PROBLEM="smoke study: no DICOM SEG written" && return 1; }
    if command -v dciodvfy >/dev/null; then
        errors=$(dciodvfy "$seg" 2>&1 | grep '^Error' || true)
        [[ -z $errors ]] || { HEALTH_PROBLEM="smoke study: the SEG fails dciodvfy: ${errors%%$'\n'*}" && return 1; }
        log "healthy: smoke study gave a SEG without dciodvfy errors"
    else
        log "healthy: smoke study gave a DICOM SEG (dciodvfy not installed: not IOD-checked)"
    fi
}
healthy() { # healthy RELEASE_DIR IMAGE_ID [quick]: C-ECHO, /readyz, smoke study
    local dir=$1 image=$2 ready
    HEALTH_PROBLEM=""
    wait_for "C-ECHO" python3 -c "$ECHO_PY" || return 1
    ready=$(sitectl get "$dir/report.json" health.ready_url)
    if [[ -n $ready && $READY_CHECK == true ]]; then
        wait_for "ready endpoint" python3 -c "$READY_PY" "$ready" || return 1
    fi
    [[ ${3:-} == quick ]] || smoke "$dir" "$image" || return 1
    alive
}
