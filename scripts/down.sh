#!/usr/bin/env bash
# Stops the region core that scripts/up.sh started (and only that one: it
# is found through .run/region-core.pid). PostgreSQL and Redis are left
# running: they may be shared with other work on this machine.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PID_FILE="$REPO_ROOT/.run/region-core.pid"

if [ ! -f "$PID_FILE" ]; then
    echo "region core: not running (no $PID_FILE)"
    exit 0
fi
pid="$(cat "$PID_FILE")"

# Only signal the pid if it is still a region-core process: after a reboot
# or a crash the number may belong to something else by now.
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null ||
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "region-core" ]; then
    echo "region core: not running (removing stale $PID_FILE)"
    rm -f "$PID_FILE"
    exit 0
fi

# SIGTERM: the region core stops accepting, drains in-flight requests and
# stops its background tasks (graceful shutdown). Give it 15 s.
kill -TERM "$pid"
for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid did not stop within 15 s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$PID_FILE"
echo "region core: stopped (pid $pid)"
