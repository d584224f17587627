#!/bin/sh
# Entrypoint of the MinIVess appliance image.
#   (no argument) | map [ARGS]   the MAP batch job: python -m map_app [ARGS] (HOLOSCAN_* paths)
#   -i IN -o OUT ...             the same, arguments passed to map_app
#   serve                        the service: DICOM gateway, worker, exporter, HTTP sidecar
#   worker                       the inference tier alone (scaled out: shared journal, spool)
#   jobs|show|retry-export|settings ...   the service's job commands
#   anything else                run as a command (e.g. python3 -m synthetic ...)
set -eu

# Holoscan wants a 32 MiB stack for its threads; thread stacks take their size from the
# limit at process start, so raise it here, before Python starts (the rule and its size:
# map_app/stack.py, STACK_BYTES).
if ! ulimit -s 32768 2>/dev/null; then
    echo "minivess-entrypoint: warning: cannot raise the stack limit to 32 MiB" \
        "(now $(ulimit -s)); start the container with --ulimit stack=33554432" >&2
fi

case "${1:-map}" in
    map)
        [ "$#" -gt 0 ] && shift
        exec python3 -m map_app "$@"
        ;;
    -*)
        exec python3 -m map_app "$@"
        ;;
    serve)
        shift
        exec python3 -m service serve "$@"
        ;;
    worker | jobs | show | retry-export | settings)
        exec python3 -m service "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
