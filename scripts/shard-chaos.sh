#!/usr/bin/env bash
# Kills and restarts parts of a local shard started by scripts/up.sh, for
# the demo's outage step (and for trying it by hand):
#
#   scripts/shard-chaos.sh kill <city>      # SIGKILL its Redis and replica 2
#   scripts/shard-chaos.sh restore <city>   # start them again
#
# SIGKILL, not SIGTERM: a crash, with no goodbye to clients.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
# shellcheck source-path=SCRIPTDIR source=shards.sh
source "$REPO_ROOT/scripts/shards.sh"

action="${1:-}"
shard="${2:-}"
[ -n "$(shard_code "$shard")" ] || die "usage: $0 kill|restore <city> (cities: $SHARDS)"
dir="$(shard_dir "$shard")"

kill_pid_file() {
    local what="$1" comm="$2" file="$3" pid
    pid="$(cat "$file" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
        kill -KILL "$pid"
        rm -f "$file"
        echo "killed $what (pid $pid)"
    else
        echo "$what: not running"
    fi
}

case "$action" in
kill)
    kill_pid_file "$shard Redis" redis-server "$dir/redis.pid"
    kill_pid_file "$shard replica 2" region-core "$dir/region-core-2.pid"
    ;;
restore)
    port_open "127.0.0.1:$(shard_redis_port "$shard")" || start_shard_redis "$shard"
    port_open "$(shard_replicas "$shard" | sed -n 2p)" || start_shard_replica "$shard" 2
    ;;
*) die "usage: $0 kill|restore <city>" ;;
esac
