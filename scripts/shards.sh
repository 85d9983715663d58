# shellcheck shell=bash
# The local city shards, and how to start their parts: sourced by up.sh,
# down.sh and shard-chaos.sh (after lib.sh). One line per shard:
#
#   city  shard-code  redis-port  replica-ports  payment-gateway-port
#
# Each shard gets its own database (booking_<city>), its own redis-server
# (no persistence: it is rebuilt from Postgres), its own sandbox payment
# gateway (its webhooks go to the shard's first replica) and its replicas,
# named <city>-<n> (REGION_REPLICA_ID). State and logs live in
# .run/<city>/. scripts/add-city.sh adds lines to .run/shards.extra.

SHARD_TABLE="
mum MUM 6380 8080,8081 8090
nyc NYC 6381 8082,8083 8091
"
# Cities added with scripts/add-city.sh, one line each in the same form.
if [ -f "$REPO_ROOT/.run/shards.extra" ]; then
    SHARD_TABLE="$SHARD_TABLE$(cat "$REPO_ROOT/.run/shards.extra")
"
fi
SHARDS="$(awk 'NF { print $1 }' <<<"$SHARD_TABLE" | tr '\n' ' ')"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

shard_field() { awk -v c="$1" -v f="$2" '$1 == c { print $f }' <<<"$SHARD_TABLE"; }
shard_code() { shard_field "$1" 2; }
shard_redis_port() { shard_field "$1" 3; }
shard_replicas() { shard_field "$1" 4 | tr ',' '\n' | sed 's/^/127.0.0.1:/'; }
shard_gateway() { echo "127.0.0.1:$(shard_field "$1" 5)"; }
shard_db() { echo "booking_$1"; }

# The global catalog (`region-core catalog`): the titles every city shares
# and their search, in a database of its own; every replica and the edge
# are pointed at it (docs/adr/0018).
CATALOG_LISTEN="${CATALOG_LISTEN:-127.0.0.1:8070}"
CATALOG_DB=booking_global
# Every replica of every shard shares one local Postgres server (Debian's
# default max_connections is 100). A replica holds its request pool plus
# the path switch's 3, the group-commit writers' 4 and one LISTEN
# connection: six replicas (mum, nyc and a city add-city.sh adds) at the
# production default of 24 would ask for 192 under load, and the last to
# ask (an audit, a new replica) would wait out its acquire timeout. Eight
# each is more than two cores can use; REGION_DB_POOL_SIZE overrides it.
LOCAL_DB_POOL_SIZE="${REGION_DB_POOL_SIZE:-8}"
catalog_db_url() { echo "${PG_ADMIN_URL%/*}/$CATALOG_DB"; }

start_catalog() {
    local dir="$REPO_ROOT/.run" pid
    pid="$(start_service "$dir/catalog.pid" "$dir/catalog.log" env \
        CATALOG_LISTEN="$CATALOG_LISTEN" \
        CATALOG_DATABASE_URL="$(catalog_db_url)" \
        target/release/region-core catalog)"
    wait_ready "global catalog" "http://$CATALOG_LISTEN/healthz" "$pid" \
        "$dir/catalog.pid" "$dir/catalog.log" 60
    echo "ready: global catalog on $CATALOG_LISTEN (pid $pid, database $CATALOG_DB)"
}
shard_db_url() { echo "${PG_ADMIN_URL%/*}/$(shard_db "$1")"; }
shard_dir() { echo "$REPO_ROOT/.run/$1"; }

# Creates a database on the PG_ADMIN_URL server if it is missing.
ensure_database() {
    local name="$1"
    db_exists() {
        [ "$(psql "$PG_ADMIN_URL" -X -tA -c "SELECT 1 FROM pg_database WHERE datname = '$name'" </dev/null)" = "1" ]
    }
    if db_exists; then
        echo "database $name exists"
    else
        # A concurrent run may create it between the check and here.
        psql "$PG_ADMIN_URL" -X -q -c "CREATE DATABASE \"$name\"" </dev/null 2>/dev/null || db_exists ||
            die "could not create database $name via $PG_ADMIN_URL"
        echo "database $name created"
    fi
}

start_shard_redis() {
    local shard="$1" port dir pid
    port="$(shard_redis_port "$shard")"
    dir="$(shard_dir "$shard")"
    pid="$(start_service "$dir/redis.pid" "$dir/redis.log" redis-server \
        --port "$port" --bind 127.0.0.1 --save "" --appendonly no)"
    wait_port "$shard Redis" "127.0.0.1:$port" "$pid" "$dir/redis.pid" "$dir/redis.log" 30
    echo "ready: $shard Redis on 127.0.0.1:$port (pid $pid)"
}

start_shard_gateway() {
    local shard="$1" addr dir first pid
    addr="$(shard_gateway "$shard")"
    dir="$(shard_dir "$shard")"
    first="$(shard_replicas "$shard" | sed -n 1p)"
    pid="$(start_service "$dir/sandbox-gateway.pid" "$dir/sandbox-gateway.log" env \
        SANDBOX_LISTEN="$addr" \
        SANDBOX_WEBHOOK_URL="http://$first/v1/webhooks/payments" \
        target/release/sandbox-gateway)"
    wait_ready "$shard payment gateway" "http://$addr/healthz" "$pid" \
        "$dir/sandbox-gateway.pid" "$dir/sandbox-gateway.log" 30
    echo "ready: $shard payment gateway on $addr (pid $pid; webhooks to $first)"
}

# Starts replica number `i` (1-based) of a shard.
start_shard_replica() {
    local shard="$1" i="$2" addr dir pid
    addr="$(shard_replicas "$shard" | sed -n "${i}p")"
    dir="$(shard_dir "$shard")"
    pid="$(start_service "$dir/region-core-$i.pid" "$dir/region-core-$i.log" env \
        REGION_LISTEN="$addr" \
        REGION_DATABASE_URL="$(shard_db_url "$shard")" \
        REGION_REDIS_URL="redis://127.0.0.1:$(shard_redis_port "$shard")" \
        REGION_SHARD_CODE="$(shard_code "$shard")" \
        REGION_REPLICA_ID="$shard-$i" \
        REGION_GATEWAY_URL="http://$(shard_gateway "$shard")" \
        REGION_CATALOG_URL="http://$CATALOG_LISTEN" \
        REGION_DB_POOL_SIZE="$LOCAL_DB_POOL_SIZE" \
        target/release/region-core)"
    wait_ready "$shard replica $i" "http://$addr/readyz" "$pid" \
        "$dir/region-core-$i.pid" "$dir/region-core-$i.log" 60
    echo "ready: $shard-$i on $addr (pid $pid): $(curl -fsS --max-time 2 "http://$addr/readyz" || true)"
}

# The edge's REGIONS: each city -> its shard's replicas.
regions_json() {
    local out="" shard urls
    for shard in $SHARDS; do
        urls="$(shard_replicas "$shard" | sed 's|^|"http://|; s|$|"|' | paste -sd, -)"
        out="$out${out:+,}\"$shard\":[$urls]"
    done
    echo "{$out}"
}

# Stops every part of every shard (replicas first: they call the rest).
stop_shards() {
    local shard dir f
    for shard in $SHARDS; do
        dir="$(shard_dir "$shard")"
        for f in "$dir"/region-core-*.pid; do
            [ -e "$f" ] || continue
            stop_service "$shard replica $(basename "$f" .pid | sed 's/region-core-//')" region-core "$f"
        done
        stop_service "$shard payment gateway" sandbox-gateway "$dir/sandbox-gateway.pid"
        stop_service "$shard Redis" redis-server "$dir/redis.pid"
    done
    stop_service "global catalog" region-core "$REPO_ROOT/.run/catalog.pid"
}

# One line per running part, for up.sh's summary.
shards_summary() {
    local shard dir i addr
    printf '  %-28s http://%s  pid %s (database %s)\n' "the global catalog" "$CATALOG_LISTEN" \
        "$(cat "$REPO_ROOT/.run/catalog.pid" 2>/dev/null || echo '?')" "$CATALOG_DB"
    for shard in $SHARDS; do
        dir="$(shard_dir "$shard")"
        i=1
        for addr in $(shard_replicas "$shard"); do
            printf '  %-28s http://%s  pid %s\n' "$shard replica $i ($(shard_code "$shard"))" "$addr" \
                "$(cat "$dir/region-core-$i.pid" 2>/dev/null || echo '?')"
            i=$((i + 1))
        done
        printf '  %-28s 127.0.0.1:%s  pid %s (database %s)\n' "$shard Redis" "$(shard_redis_port "$shard")" \
            "$(cat "$dir/redis.pid" 2>/dev/null || echo '?')" "$(shard_db "$shard")"
        printf '  %-28s http://%s  pid %s\n' "$shard payment gateway" "$(shard_gateway "$shard")" \
            "$(cat "$dir/sandbox-gateway.pid" 2>/dev/null || echo '?')"
    done
}
