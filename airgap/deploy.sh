#!/usr/bin/env bash
# deploy.sh: install a signed MinIVess release bundle on one host, offline.
#
#   deploy.sh [options] BUNDLE.tar       verify, load, switch, health-check; roll back if unhealthy
#   deploy.sh --verify-only BUNDLE.tar   verify the signature and every checksum; change nothing
#   deploy.sh --rollback                 back to the previous release (health-checked)
#   deploy.sh --status                   what is installed, and whether it answers C-ECHO
#
# Needs bash, coreutils, python3 (standard library only) and podman (or docker). Options
# (environment variable, default):
#   --home DIR           site state: releases/, state.json, var/ (MINIVESS_HOME, /var/lib/minivess-appliance)
#   --public-key FILE    the pinned release public key (MINIVESS_PUBLIC_KEY, HOME/release-key.pub)
#   --allow-downgrade    install a release number that is not above the installed one
#   --engine NAME        podman or docker (MINIVESS_ENGINE, podman when installed)
#   --name NAME          the service container (MINIVESS_CONTAINER, minivess)
#   --env-file FILE      service settings, MINIVESS_*=... lines (MINIVESS_ENV_FILE, HOME/site.env)
#   --publish SPECS      ports to publish (MINIVESS_PUBLISH, "11112:11112 3000:3000")
#   --network host       use the host network instead (MINIVESS_NETWORK)
#   --health-timeout S   seconds for C-ECHO and /readyz (MINIVESS_HEALTH_TIMEOUT, 180)
#   --no-ready-check     skip /readyz even when the release has the HTTP sidecar
#   --audit-log FILE     (MINIVESS_AUDIT_LOG, HOME/var/audit/audit.jsonl: the service's log)
# Exit: 0 done; 2 usage; 3 verification failed, nothing changed; 4 refused (downgrade,
# another deploy running, site settings the new release does not accept), nothing changed; 5 unhealthy, the previous release is serving
# again (on a first install: nothing runs); 6 the rollback failed too: the appliance is DOWN.
set -Eeuo pipefail
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=(python3 -E -s -S) # the standard library only, whatever is installed on the site
HOME_DIR="${MINIVESS_HOME:-/var/lib/minivess-appliance}"
PUBLIC_KEY="${MINIVESS_PUBLIC_KEY:-}"
ENGINE="${MINIVESS_ENGINE:-}"
NAME="${MINIVESS_CONTAINER:-minivess}"
ENV_FILE="${MINIVESS_ENV_FILE:-}"
PUBLISH="${MINIVESS_PUBLISH:-11112:11112 3000:3000}"
NETWORK="${MINIVESS_NETWORK:-}"
HEALTH_TIMEOUT="${MINIVESS_HEALTH_TIMEOUT:-180}"
SMOKE_TIMEOUT="${MINIVESS_SMOKE_TIMEOUT:-600}"
AUDIT_LOG="${MINIVESS_AUDIT_LOG:-}"
IMAGE_REPO="${MINIVESS_IMAGE_REPO:-localhost/minivess-appliance}" # + :release-N tags
APP_UID=10001 # the image's user: owns the persistent var/ folder
MODE=install ALLOW_DOWNGRADE=false READY_CHECK=true BUNDLE="" HEALTH_PROBLEM="" SETTINGS_PROBLEM="" TEMPS=()

log() { printf 'deploy: %s\n' "$*" >&2; }
die() {
    local code=$1
    shift
    printf 'deploy: error: %s\n' "$*" >&2
    exit "$code"
}
cleanup() { if ((${#TEMPS[@]})); then rm -rf "${TEMPS[@]}"; fi; }
trap cleanup EXIT

while (($#)); do
    case $1 in
    --home) HOME_DIR=$2 && shift ;;
    --public-key) PUBLIC_KEY=$2 && shift ;;
    --allow-downgrade) ALLOW_DOWNGRADE=true ;;
    --engine) ENGINE=$2 && shift ;;
    --name) NAME=$2 && shift ;;
    --env-file) ENV_FILE=$2 && shift ;;
    --publish) PUBLISH=$2 && shift ;;
    --network) NETWORK=$2 && shift ;;
    --health-timeout) HEALTH_TIMEOUT=$2 && shift ;;
    --no-ready-check) READY_CHECK=false ;;
    --audit-log) AUDIT_LOG=$2 && shift ;;
    --verify-only) MODE=verify ;;
    --rollback) MODE=rollback ;;
    --status) MODE=status ;;
    -h | --help) sed -n '2,/^set -E/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    -*) die 2 "unknown option $1 (see --help)" ;;
    *)
        [[ -z $BUNDLE ]] || die 2 "one bundle at a time"
        BUNDLE=$1
        ;;
    esac
    shift
done
[[ $MODE == install || $MODE == verify ]] && [[ -z $BUNDLE ]] && die 2 "which bundle? (see --help)"
[[ $MODE == rollback || $MODE == status ]] && [[ -n $BUNDLE ]] && die 2 "--$MODE takes no bundle"
command -v python3 >/dev/null || die 2 "python3 not found"
if [[ -z $ENGINE ]]; then
    ENGINE=$(command -v podman || command -v docker || true)
    [[ -n $ENGINE ]] || die 2 "neither podman nor docker is installed"
fi
VAR_DIR="$HOME_DIR/var"
PUBLIC_KEY="${PUBLIC_KEY:-$HOME_DIR/release-key.pub}"
AUDIT_LOG="${AUDIT_LOG:-$VAR_DIR/audit/audit.jsonl}"
[[ -n $ENV_FILE || ! -f $HOME_DIR/site.env ]] || ENV_FILE="$HOME_DIR/site.env"
STATE="$HOME_DIR/state.json"
TOOL="deploy.sh@$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
OPERATOR="${SUDO_USER:-$(id -un)}@$(uname -n)"

sitectl() { "${PY[@]}" "$HERE/sitectl.py" "$@"; }
state() { sitectl get "$STATE" "$1"; }
engine() { "$ENGINE" "$@" 9>&-; } # the lock's fd must not live on in conmon
json() { # json KEY VALUE ...: a JSON object of strings (numbers stay numbers)
    "${PY[@]}" -c 'import json, sys
a = sys.argv[1:]
print(json.dumps({k: int(v) if v.isdigit() else v for k, v in zip(a[::2], a[1::2]) if v}))' "$@"
}
audit() { # audit ACTION OUTCOME RESOURCE KEY VALUE ...
    local action=$1 outcome=$2 resource=$3
    shift 3
    sitectl audit --log "$AUDIT_LOG" --action "$action" --outcome "$outcome" \
        --resource "$resource" --code-version "$TOOL" \
        --details "$(json operator "$OPERATOR" "$@")" >/dev/null
}
prepare_home() {
    mkdir -p "$HOME_DIR/releases" "$HOME_DIR/tmp" "$VAR_DIR/audit" "$(dirname "$AUDIT_LOG")"
    if [[ $(id -u) == 0 ]]; then chown "$APP_UID:$APP_UID" "$VAR_DIR" "$VAR_DIR/audit"; fi
}
lock() { # one deploy at a time: an flock on fd 9, held until this script exits
    exec 9>>"$HOME_DIR/.deploy.lock"
    "${PY[@]}" -c 'import fcntl; fcntl.flock(9, fcntl.LOCK_EX | fcntl.LOCK_NB)' 2>/dev/null ||
        die 4 "another deploy.sh is running on $HOME_DIR"
}

# ------------------------------------------------------------------------ verification

verify() { # verify BUNDLE DEST: check (and unpack into DEST, when given); sets REPORT
    local bundle=$1 dest=$2 work
    [[ -f $PUBLIC_KEY ]] || die 2 "no pinned release public key at $PUBLIC_KEY: install the" \
        "vendor's key, received out of band, there (or give --public-key)"
    work=$(mktemp -d "$HOME_DIR/tmp/verify.XXXXXX") && TEMPS+=("$work")
    REPORT="$work/report.json"
    local args=("$bundle" --public-key "$PUBLIC_KEY" --report "$REPORT")
    [[ -z $dest ]] || args+=(--extract-to "$dest")
    if ! "${PY[@]}" "$HERE/bundlecheck.py" "${args[@]}" >&2 2>"$work/err"; then
        local problem
        problem=$(grep '^REFUSED' "$work/err" | tail -n1 || true)
        problem=${problem:-$(tail -n1 "$work/err")}
        audit verify refused "bundle:$(basename "$bundle")" bundle "$(basename "$bundle")" \
            problem "$problem" || log "warning: could not write the audit log $AUDIT_LOG"
        die 3 "${problem#REFUSED: } (nothing was changed)"
    fi
    RELEASE=$(sitectl get "$REPORT" release)
    audit verify success "release:$RELEASE" bundle "$(basename "$bundle")" \
        version "$(sitectl get "$REPORT" version)" commit "$(sitectl get "$REPORT" git_commit)" \
        manifest_sha256 "$(sitectl get "$REPORT" manifest_sha256)" \
        key "$(sitectl get "$REPORT" key_hint)" ||
        die 4 "cannot write the audit log $AUDIT_LOG: refusing to go on unaudited"
}

# --------------------------------------------------------------------------- containers

load_image() { # load_image ARCHIVE ID RELEASE REPO
    local archive=$1 id=$2 release=$3 repo=$4 found
    if engine image inspect "$id" >/dev/null 2>&1; then
        log "image ${id:0:12} is already loaded"
    else
        log "loading image ${id:0:12} from $(basename "$archive") ..."
        engine load -i "$archive" >&2 || return 1
    fi
    found=$(engine image inspect --format '{{.Id}}' "$id" 2>/dev/null) || return 1
    [[ ${found#sha256:} == "$id" ]] || return 1
    engine tag "$id" "$repo:release-$release"
}
remove_container() {
    if engine container inspect "$NAME" >/dev/null 2>&1; then
        engine stop -t 60 "$NAME" >/dev/null 2>&1 || true
        engine rm -f "$NAME" >/dev/null 2>&1 || true
    fi
}
hardened() { printf '%s\n' --read-only --tmpfs /tmp:rw,size=1g --cap-drop ALL --security-opt no-new-privileges; }
start_release() { # start_release RELEASE IMAGE_ID: the service on the persistent var/
    local args
    mapfile -t args < <(hardened)
    args+=(--name "$NAME" --label "io.minivess.release=$1" --restart always -v "$VAR_DIR:/var/lib/minivess")
    [[ -z $ENV_FILE ]] || args+=(--env-file "$ENV_FILE")
    if [[ $NETWORK == host ]]; then
        args+=(--network host)
    else
        for port in $PUBLISH; do args+=(-p "$port"); done
    fi
    remove_container
    engine run -d "${args[@]}" "$2" serve >/dev/null
}
check_settings() { # check_settings IMAGE_ID: the site's settings as the new release reads them
    local args out rc=0
    mapfile -t args < <(hardened)
    [[ -z $ENV_FILE ]] || args+=(--env-file "$ENV_FILE")
    out=$(engine run --rm --network none "${args[@]}" "$1" settings 2>&1 >/dev/null) || rc=$?
    # 78 (EX_CONFIG): unknown, malformed or inconsistent MINIVESS_* values. Anything else
    # is left to the health checks, which roll a broken release back.
    ((rc == 78)) || return 0
    SETTINGS_PROBLEM=$(printf '%s' "$out" | tail -n 1)
    SETTINGS_PROBLEM=${SETTINGS_PROBLEM#error: }
    return 1
}
# shellcheck source-path=SCRIPTDIR source=health.sh
source "$HERE/health.sh" # healthy: C-ECHO, /readyz, smoke study
keep_logs() { engine logs --tail 200 "$NAME" >"$HOME_DIR/logs/release-$1-$(date -u +%Y%m%dT%H%M%SZ).log" 2>&1 || true; }

# ------------------------------------------------------------------------------ actions

restore_previous() { # after a failed switch: the release that was current, on the same var/
    local previous=$1 image=$2 what=$3
    if [[ -z $previous ]]; then
        remove_container
        audit rollback info "release:$what" problem "$HEALTH_PROBLEM" note "first install: nothing to roll back to"
        die 5 "release $what is unhealthy ($HEALTH_PROBLEM); nothing was installed before it, nothing runs"
    fi
    log "rolling back to release $previous ..."
    if ! { start_release "$previous" "$image" && healthy "$HOME_DIR/releases/$previous" "$image" quick; }; then
        audit rollback failure "release:$previous" from "$what" problem "$HEALTH_PROBLEM"
        die 6 "the rollback to release $previous failed too ($HEALTH_PROBLEM): the appliance is DOWN"
    fi
    audit rollback success "release:$previous" from "$what"
}
install() {
    prepare_home
    lock
    mkdir -p "$HOME_DIR/logs"
    local staging current previous_image dir image repo problem
    staging=$(mktemp -d "$HOME_DIR/tmp/bundle.XXXXXX") && TEMPS+=("$staging")
    verify "$BUNDLE" "$staging/files"
    cp "$REPORT" "$staging/files/report.json"
    current=$(state current.release || true)
    if [[ -n $current ]] && ((RELEASE <= current)) && [[ $ALLOW_DOWNGRADE != true ]]; then
        problem="release $RELEASE is not above the installed release $current (--allow-downgrade to force)"
        audit install refused "release:$RELEASE" installed "$current" problem "$problem"
        die 4 "$problem; nothing was changed"
    fi
    previous_image=$(state current.image_id || true)
    image=$(sitectl get "$REPORT" image.id)
    repo=$IMAGE_REPO
    audit install info "release:$RELEASE" step started installed "$current"
    dir="$HOME_DIR/releases/$RELEASE"
    local had_image=false had_tag=false # to leave the images as they were on a refusal
    ! engine image inspect "$image" >/dev/null 2>&1 || had_image=true
    ! engine image inspect "$repo:release-$RELEASE" >/dev/null 2>&1 || had_tag=true
    if ! load_image "$staging/files/$(sitectl get "$REPORT" image.archive)" "$image" "$RELEASE" "$repo"; then
        audit install failure "release:$RELEASE" problem "the image could not be loaded"
        die 5 "the image of release $RELEASE could not be loaded; the installed release is untouched"
    fi
    if ! check_settings "$image"; then
        if [[ $had_image == false ]]; then
            engine rmi -f "$image" >/dev/null 2>&1 || true
        elif [[ $had_tag == false ]]; then
            engine untag "$image" "$repo:release-$RELEASE" >/dev/null 2>&1 || true
        fi
        problem="release $RELEASE does not accept the site settings${ENV_FILE:+ in $ENV_FILE}: $SETTINGS_PROBLEM"
        audit install refused "release:$RELEASE" problem "$problem"
        die 4 "$problem; nothing was changed"
    fi
    [[ $RELEASE != "$current" ]] || mv "$dir" "$staging/replaced"
    rm -rf "$dir" && mv "$staging/files" "$dir" && chmod 0755 "$dir"
    log "starting release $RELEASE (image ${image:0:12}) on $VAR_DIR ..."
    if start_release "$RELEASE" "$image" && healthy "$dir" "$image"; then
        sitectl state install --home "$HOME_DIR" --report "$dir/report.json" --image-ref "$repo:release-$RELEASE"
        prune "$repo"
        rm -rf "${HOME_DIR:?}/bin" && cp -r "$dir/airgap" "$HOME_DIR/bin"
        audit install success "release:$RELEASE" previous "$current" image "$image"
        log "release $RELEASE is installed and healthy (previous: ${current:-none})"
        return 0
    fi
    log "release $RELEASE is unhealthy: $HEALTH_PROBLEM"
    keep_logs "$RELEASE"
    remove_container
    audit install failure "release:$RELEASE" problem "$HEALTH_PROBLEM"
    sitectl state note --home "$HOME_DIR" --action install --release "$RELEASE" --outcome failure --problem "$HEALTH_PROBLEM"
    if [[ $RELEASE != "$current" ]]; then
        rm -rf "$dir"
        engine rmi "$repo:release-$RELEASE" >/dev/null 2>&1 || true
    elif [[ -d $staging/replaced ]]; then # a reinstall of the same number: put it back
        rm -rf "$dir" && mv "$staging/replaced" "$dir"
    fi
    drop_image "$image"
    local failed_problem=$HEALTH_PROBLEM
    restore_previous "$current" "$previous_image" "$RELEASE"
    die 5 "release $RELEASE was unhealthy ($failed_problem); rolled back to release $current, which is serving"
}
prune() { # keep the current and the previous release (files and images) only
    local keep release image
    keep=" $(state current.release) $(state previous.release) "
    for dir in "$HOME_DIR"/releases/*; do
        release=$(basename "$dir")
        [[ $keep == *" $release "* ]] && continue
        image=$(sitectl get "$dir/report.json" image.id || true)
        rm -rf "$dir"
        engine rmi "$1:release-$release" >/dev/null 2>&1 || true
        [[ -z $image ]] || drop_image "$image"
    done
}
drop_image() { # remove an image that neither kept release uses: every tag, then the image
    local id=$1 tag
    [[ $id == "$(state current.image_id)" || $id == "$(state previous.image_id)" ]] && return 0
    for tag in $(engine image inspect --format '{{range .RepoTags}}{{.}} {{end}}' "$id" 2>/dev/null); do
        engine rmi "$tag" >/dev/null 2>&1 || true
    done
    engine rmi "$id" >/dev/null 2>&1 || true
}
rollback() {
    prepare_home
    lock
    mkdir -p "$HOME_DIR/logs"
    local current previous image current_image
    current=$(state current.release || true)
    previous=$(state previous.release || true)
    [[ -n $previous ]] || die 4 "no previous release to roll back to"
    image=$(state previous.image_id)
    current_image=$(state current.image_id)
    engine image inspect "$image" >/dev/null 2>&1 || load_image \
        "$HOME_DIR/releases/$previous/$(sitectl get "$HOME_DIR/releases/$previous/report.json" image.archive)" \
        "$image" "$previous" "$IMAGE_REPO" || die 5 "the image of release $previous is gone"
    audit rollback info "release:$previous" step started from "$current"
    if start_release "$previous" "$image" && healthy "$HOME_DIR/releases/$previous" "$image"; then
        sitectl state rollback --home "$HOME_DIR"
        audit rollback success "release:$previous" from "$current"
        log "rolled back from release $current to release $previous"
        return 0
    fi
    keep_logs "$previous"
    audit rollback failure "release:$previous" from "$current" problem "$HEALTH_PROBLEM"
    log "release $previous is unhealthy ($HEALTH_PROBLEM); restoring release $current ..."
    restore_previous "$current" "$current_image" "$previous"
    die 5 "the rollback to release $previous failed health checks; release $current is serving again"
}
status() {
    local current previous
    current=$(state current.release || true)
    previous=$(state previous.release || true)
    if [[ -z $current ]]; then
        echo "no release installed in $HOME_DIR"
        return 0
    fi
    echo "current:   release $current, version $(state current.version), commit $(state current.git_commit)"
    echo "           image $(state current.image_ref) ($(state current.image_id | cut -c1-12)), installed $(state current.installed_at)"
    echo "previous:  release ${previous:-none}"
    echo "container: $NAME $(engine container inspect --format '{{.State.Status}}, release {{index .Config.Labels "io.minivess.release"}}' "$NAME" 2>/dev/null || echo missing)"
    if engine exec "$NAME" python3 -c "$ECHO_PY" >/dev/null 2>&1; then echo "C-ECHO:    ok"; else echo "C-ECHO:    no answer"; fi
    echo "audit log: $AUDIT_LOG"
}

case $MODE in
verify)
    prepare_home
    verify "$BUNDLE" ""
    log "verified: release $RELEASE ($(sitectl get "$REPORT" version)); nothing was changed"
    ;;
install) install ;;
rollback) rollback ;;
status) status ;;
esac
